//! The commands that ask the daemon about itself: `doctor`, `gc`, `daemon
//! stop`, `daemon status`.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use warp_common::paths::Paths;
use warp_proto::warp::{DoctorReply, DoctorRequest, GcReply, GcRequest, ShutdownRequest};

use crate::connect::{self, ConnectError, Daemon};
use crate::json;

/// Why an admin command failed (exit status 125).
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Connect(#[from] ConnectError),
    /// The daemon answered with an error.
    #[error("warpd: {0}")]
    Rpc(String),
    /// Writing the output failed (other than a closed pipe).
    #[error("cannot write the output: {0}")]
    Output(io::Error),
    /// A wrong argument, or the daemon refused (unknown session): status 2.
    #[error("{0}")]
    Refused(String),
}

impl AdminError {
    pub fn exit_code(&self) -> u8 {
        match self {
            AdminError::Refused(_) => 2,
            _ => 125,
        }
    }
}

pub fn rpc(status: tonic::Status) -> AdminError {
    AdminError::Rpc(status.message().to_owned())
}

/// Writes `text` to stdout; a reader that went away (`| head`) is not an error.
pub fn emit(text: &str) -> Result<(), AdminError> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(AdminError::Output(e)),
        _ => Ok(()),
    }
}

/// `warpctl doctor [--json]`.
pub async fn doctor(json: bool) -> Result<u8, AdminError> {
    let mut daemon = connect::connect_or_start(false).await?;
    let reply = daemon.client.doctor(DoctorRequest {}).await.map_err(rpc)?.into_inner();
    // Which daemon answered: the system one, or this user's.
    let h = &daemon.hello;
    emit(&if json {
        let about = json::Object::new()
            .str("version", &h.version)
            .num("pid", h.pid)
            .str("mode", &h.mode)
            .num("owner_uid", h.owner_uid)
            .str("socket", &daemon.socket.to_string_lossy())
            .str("store", &h.store)
            .finish();
        let all = doctor_json(&reply);
        format!("{{\"daemon\":{about},{}\n", &all[1..])
    } else {
        format!("daemon: {}; store {}\n{}", describe(&daemon), h.store, doctor_text(&reply))
    })?;
    // Scripts can ask whether this machine records at all.
    Ok(if reply.backend == "none" { 1 } else { 0 })
}

/// `warpctl gc [--json]`.
pub async fn gc(json: bool, yes: bool, max_size: Option<String>, max_age: Option<String>) -> Result<u8, AdminError> {
    let max_bytes = match max_size {
        Some(s) => warp_common::units::parse_size(&s).map_err(AdminError::Refused)?.unwrap_or(0),
        None => 0,
    };
    let max_age_secs = match max_age {
        Some(s) => warp_common::units::parse_duration(&s).map_err(AdminError::Refused)?.map_or(0, |d| d.as_secs()),
        None => 0,
    };
    let mut daemon = connect::connect_or_start(false).await?;
    let waiting = crate::progress::Progress::waiting(if yes { "removing" } else { "looking" }.to_string());
    let reply = daemon.client.gc(GcRequest { yes, max_bytes, max_age_secs }).await.map_err(rpc)?.into_inner();
    drop(waiting);
    emit(&if json { gc_json(&reply) + "\n" } else { gc_text(&reply) })?;
    Ok(0)
}

/// `warpctl pin|unpin ID...`: prints each id done; goes on past one it
/// cannot do (exit 2 then).
pub async fn pin(ids: Vec<String>, pinned: bool) -> Result<u8, AdminError> {
    let mut daemon = connect::connect_or_start(false).await?;
    let mut code = 0;
    for id in ids {
        match daemon.client.pin(warp_proto::warp::PinRequest { id, pinned }).await {
            Ok(reply) => emit(&format!("{}\n", reply.into_inner().id))?,
            Err(s) if matches!(s.code(), tonic::Code::NotFound | tonic::Code::InvalidArgument) => {
                say!("{}", s.message());
                code = 2;
            }
            Err(s) => return Err(rpc(s)),
        }
    }
    Ok(code)
}

pub fn gc_text(r: &GcReply) -> String {
    let size = crate::view::bytes;
    let mut text = String::new();
    if r.expired.is_empty() {
        text.push_str("no recording is past the retention limits\n");
    } else {
        let what = if r.removed { "removed" } else { "would remove (--yes removes them)" };
        let n = r.expired.len();
        let noun = if n == 1 { "recording" } else { "recordings" };
        text.push_str(&format!(
            "{what} {n} {noun} past the retention limits (never the newest, a pinned one or one recording):\n"
        ));
        for e in &r.expired {
            text.push_str(&format!(
                "  {}  ended {}  {:>8}  {}  ({})\n",
                e.id,
                crate::view::local_time(e.end_ms),
                size(e.trace_bytes),
                e.program,
                e.reason
            ));
        }
    }
    text.push_str(&format!(
        "recordings: {} of data{}\n",
        size(r.recordings_bytes),
        if r.removed { format!(", {} now", size(r.recordings_bytes_after)) } else { String::new() }
    ));
    text + &format!(
        "removed {} blobs no session used ({}), fixed {} use counts, removed {} uses and {} events of sessions that are gone\nstore: {} before, {} after\n",
        r.blobs,
        size(r.blob_bytes),
        r.counts_fixed,
        r.stray_uses,
        r.stray_events,
        size(r.bytes_before),
        size(r.bytes_after)
    )
}

fn expired_json(e: &warp_proto::warp::Expired) -> String {
    json::Object::new()
        .str("id", &e.id)
        .str("reason", &e.reason)
        .num("trace_bytes", e.trace_bytes)
        .num("end_ms", e.end_ms)
        .str("program", &e.program)
        .finish()
}

pub fn gc_json(r: &GcReply) -> String {
    json::Object::new()
        .num("blobs", r.blobs)
        .num("blob_bytes", r.blob_bytes)
        .num("counts_fixed", r.counts_fixed)
        .num("stray_uses", r.stray_uses)
        .num("stray_events", r.stray_events)
        .num("bytes_before", r.bytes_before)
        .num("bytes_after", r.bytes_after)
        .raw("expired", &json::array(&r.expired.iter().map(expired_json).collect::<Vec<_>>()))
        .bool("removed", r.removed)
        .num("recordings_bytes", r.recordings_bytes)
        .num("recordings_bytes_after", r.recordings_bytes_after)
        .finish()
}

pub fn doctor_text(reply: &DoctorReply) -> String {
    let mut text = format!("backend: {}\n", reply.backend);
    if reply.capabilities.is_empty() {
        text.push_str("  (no capabilities reported)\n");
    }
    for c in &reply.capabilities {
        let mark = if c.available { "yes" } else { "no " };
        text.push_str(&format!("  {mark}  {}: {}\n", c.name, c.consequence));
    }
    text
}

pub fn doctor_json(reply: &DoctorReply) -> String {
    let caps: Vec<String> = reply
        .capabilities
        .iter()
        .map(|c| {
            json::Object::new()
                .str("name", &c.name)
                .bool("available", c.available)
                .str("consequence", &c.consequence)
                .finish()
        })
        .collect();
    json::Object::new().str("backend", &reply.backend).raw("capabilities", &json::array(&caps)).finish()
}

fn describe(daemon: &Daemon) -> String {
    let h = &daemon.hello;
    format!(
        "warpd {} (pid {}, {} daemon of uid {}) on {}",
        h.version,
        h.pid,
        h.mode,
        h.owner_uid,
        daemon.socket.display()
    )
}

/// `warpctl daemon status`: a line on stdout for each daemon warpctl could
/// use (the system one, unless `$WARP_HOME` is set, and this user's); exit
/// 1 when none answers.
pub async fn daemon_status() -> Result<u8, AdminError> {
    let mut found = false;
    if std::env::var_os("WARP_HOME").is_none_or(|v| v.is_empty()) {
        if let Ok(Some(daemon)) = connect::try_socket(&Paths::system().socket).await {
            emit(&format!("{}\n", describe(&daemon)))?;
            found = true;
        }
    }
    if let Some(daemon) = connect::connect_existing().await? {
        emit(&format!("{}\n", describe(&daemon)))?;
        found = true;
    }
    if found {
        Ok(0)
    } else {
        say!("no daemon running");
        Ok(1)
    }
}

/// `warpctl daemon stop`: asks this `$WARP_HOME`'s daemon to stop and waits
/// until it has (after its running sessions end). 0 also when none runs.
pub async fn daemon_stop(verbose: bool) -> Result<u8, AdminError> {
    let Some(mut daemon) = connect::connect_existing().await? else {
        say!("no daemon running");
        return Ok(0);
    };
    if verbose {
        say!("stopping {}", describe(&daemon));
    }
    daemon.client.shutdown(ShutdownRequest {}).await.map_err(rpc)?;
    drop(daemon.client);
    let lock = Paths::embedded_for_this_process().map_err(ConnectError::from)?.lock;
    let started = Instant::now();
    let mut told = false;
    // Stopped when its lock is free: that is what a new daemon needs (and,
    // unlike the pid, it is released even if the process lingers as a zombie).
    while lock_held(&lock) {
        if !told && started.elapsed() > Duration::from_secs(2) {
            say!("waiting for warpd (pid {}) to finish its running sessions", daemon.hello.pid);
            told = true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(0)
}

/// Whether some process holds the daemon lock at `path`.
fn lock_held(path: &Path) -> bool {
    let Ok(file) = File::open(path) else { return false };
    match Flock::lock(file, FlockArg::LockSharedNonblock) {
        Ok(_) => false,
        Err((_, errno)) => errno == Errno::EWOULDBLOCK,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warp_proto::warp::Capability;

    #[test]
    fn doctor_outputs() {
        let reply = DoctorReply {
            backend: "kvm".into(),
            capabilities: vec![Capability {
                name: "tsc trap".into(),
                available: false,
                consequence: "rdtsc \"uncontrolled\"".into(),
            }],
        };
        assert_eq!(doctor_text(&reply), "backend: kvm\n  no   tsc trap: rdtsc \"uncontrolled\"\n");
        assert_eq!(
            doctor_json(&reply),
            r#"{"backend":"kvm","capabilities":[{"name":"tsc trap","available":false,"consequence":"rdtsc \"uncontrolled\""}]}"#
        );
    }
}
