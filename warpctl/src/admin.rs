//! The commands that ask the daemon about itself: `ls`, `doctor`,
//! `daemon stop`, `daemon status`.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use warp_common::paths::Paths;
use warp_proto::warp::{
    DoctorReply, DoctorRequest, Failure, ListSessionsRequest, SessionEnd, SessionInfo, ShutdownRequest,
};

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
}

fn rpc(status: tonic::Status) -> AdminError {
    AdminError::Rpc(status.message().to_owned())
}

/// Writes `text` to stdout; a reader that went away (`| head`) is not an error.
fn emit(text: &str) -> Result<(), AdminError> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(AdminError::Output(e)),
        _ => Ok(()),
    }
}

/// `warpctl ls [--json]`.
pub async fn ls(json: bool) -> Result<u8, AdminError> {
    let mut daemon = connect::connect_or_start(false).await?;
    let reply = daemon.client.list_sessions(ListSessionsRequest {}).await.map_err(rpc)?.into_inner();
    let mut text = String::new();
    if json {
        for s in &reply.sessions {
            text.push_str(&session_json(s));
            text.push('\n');
        }
    } else {
        text.push_str(&format!("{:<8}  {:<10}  {:<15}  {:<19}  COMMAND\n", "ID", "STATUS", "ENDED", "STARTED"));
        for s in &reply.sessions {
            text.push_str(&format!(
                "{:<8}  {:<10}  {:<15}  {:<19}  {}\n",
                s.id,
                s.status,
                ended(s),
                local_time(s.start_ms),
                shell_words(&s.argv)
            ));
        }
    }
    emit(&text)?;
    Ok(0)
}

/// How a session ended, in a few words for the listing.
pub fn ended(s: &SessionInfo) -> String {
    let Some(end) = &s.end else { return "-".into() };
    match Failure::try_from(end.failure) {
        Ok(Failure::None) if end.signal != 0 => format!("signal {}", end.signal),
        Ok(Failure::None) => format!("exit {}", end.exit_code),
        Ok(Failure::Unsupported) => "unsupported".into(),
        Ok(Failure::Daemon) => "warpd failed".into(),
        Ok(Failure::Broker) => "broker failed".into(),
        Ok(Failure::NotFound) => "not found".into(),
        Ok(Failure::NotExecutable) => "not executable".into(),
        Err(_) => format!("failure {}", end.failure),
    }
}

/// A failure's name in JSON output: `none`, `daemon`, `broker`, ...
fn failure_name(failure: i32) -> String {
    match Failure::try_from(failure) {
        Ok(f) => f.as_str_name().trim_start_matches("FAILURE_").to_ascii_lowercase(),
        Err(_) => failure.to_string(),
    }
}

fn end_json(end: &SessionEnd) -> String {
    json::Object::new()
        .str("failure", &failure_name(end.failure))
        .num("exit_code", end.exit_code)
        .num("signal", end.signal)
        .str("message", &end.message)
        .finish()
}

/// One session as a JSON object (one line of `ls --json`).
pub fn session_json(s: &SessionInfo) -> String {
    json::Object::new()
        .str("id", &s.id)
        .str("status", &s.status)
        .strs("argv", &s.argv)
        .num("owner_uid", s.owner_uid)
        .num("start_ms", s.start_ms)
        .num("end_ms", s.end_ms)
        .raw("end", &s.end.as_ref().map(end_json).unwrap_or_else(|| "null".into()))
        .num("syscalls", s.syscalls)
        .num("vm_exits", s.vm_exits)
        .finish()
}

/// argv as a shell would need it typed: words with anything but safe
/// characters in single quotes.
pub fn shell_words(argv: &[String]) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c);
    argv.iter()
        .map(|w| {
            if !w.is_empty() && w.chars().all(safe) {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Unix milliseconds as local `YYYY-MM-DD HH:MM:SS`.
fn local_time(ms: u64) -> String {
    let secs = (ms / 1000) as libc::time_t;
    // SAFETY: `tm` is plain data (integers and a pointer that may be null).
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are to live locals; localtime_r is thread-safe.
    if unsafe { libc::localtime_r(&secs, &mut tm) }.is_null() {
        return format!("@{secs}");
    }
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

/// `warpctl doctor [--json]`.
pub async fn doctor(json: bool) -> Result<u8, AdminError> {
    let mut daemon = connect::connect_or_start(false).await?;
    let reply = daemon.client.doctor(DoctorRequest {}).await.map_err(rpc)?.into_inner();
    emit(&if json { doctor_json(&reply) + "\n" } else { doctor_text(&reply) })?;
    Ok(0)
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
        eprintln!("warpctl: no daemon running");
        Ok(1)
    }
}

/// `warpctl daemon stop`: asks this `$WARP_HOME`'s daemon to stop and waits
/// until it has (after its running sessions end). 0 also when none runs.
pub async fn daemon_stop(verbose: bool) -> Result<u8, AdminError> {
    let Some(mut daemon) = connect::connect_existing().await? else {
        eprintln!("warpctl: no daemon running");
        return Ok(0);
    };
    if verbose {
        eprintln!("warpctl: stopping {}", describe(&daemon));
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
            eprintln!("warpctl: waiting for warpd (pid {}) to finish its running sessions", daemon.hello.pid);
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

    fn info(end: Option<SessionEnd>) -> SessionInfo {
        SessionInfo {
            id: "abcd2345".into(),
            argv: vec!["echo".into(), "hi there".into()],
            owner_uid: 1000,
            status: "complete".into(),
            start_ms: 1_700_000_000_000,
            end_ms: 1_700_000_001_000,
            end,
            syscalls: 12,
            vm_exits: 30,
        }
    }

    fn end(failure: Failure, exit_code: i32, signal: i32) -> SessionEnd {
        SessionEnd { failure: failure as i32, exit_code, signal, message: "m".into() }
    }

    #[test]
    fn ended_column() {
        assert_eq!(ended(&info(None)), "-");
        assert_eq!(ended(&info(Some(end(Failure::None, 3, 0)))), "exit 3");
        assert_eq!(ended(&info(Some(end(Failure::None, 0, 9)))), "signal 9");
        assert_eq!(ended(&info(Some(end(Failure::Broker, 0, 0)))), "broker failed");
    }

    #[test]
    fn shell_quoting() {
        let words = |v: &[&str]| shell_words(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(words(&["ls", "-l", "/tmp"]), "ls -l /tmp");
        assert_eq!(words(&["echo", "a b", ""]), "echo 'a b' ''");
        assert_eq!(words(&["it's"]), r"'it'\''s'");
    }

    #[test]
    fn session_as_json() {
        let j = session_json(&info(Some(end(Failure::None, 0, 0))));
        assert_eq!(
            j,
            r#"{"id":"abcd2345","status":"complete","argv":["echo","hi there"],"owner_uid":1000,"start_ms":1700000000000,"end_ms":1700000001000,"end":{"failure":"none","exit_code":0,"signal":0,"message":"m"},"syscalls":12,"vm_exits":30}"#
        );
        assert!(session_json(&info(None)).contains(r#""end":null"#));
        assert!(session_json(&info(Some(end(Failure::NotExecutable, 0, 0)))).contains(r#""failure":"not_executable""#));
    }

    #[test]
    fn doctor_outputs() {
        let reply = DoctorReply {
            backend: "kvm".into(),
            capabilities: vec![Capability { name: "tsc trap".into(), available: false, consequence: "rdtsc \"uncontrolled\"".into() }],
        };
        assert_eq!(doctor_text(&reply), "backend: kvm\n  no   tsc trap: rdtsc \"uncontrolled\"\n");
        assert_eq!(
            doctor_json(&reply),
            r#"{"backend":"kvm","capabilities":[{"name":"tsc trap","available":false,"consequence":"rdtsc \"uncontrolled\""}]}"#
        );
    }
}
