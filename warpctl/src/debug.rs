//! `warpctl replay [ID|latest] --gdb [-- GDB_ARGS...]` and
//! `warpctl replay [ID|latest] --gdbserver ADDR`.
//!
//! warpd runs the replay and its GDB remote protocol target; warpctl, as
//! the user, owns the socket the debugger talks to and carries the bytes
//! both ways over the `Debug` stream. With `--gdb` the socket is a unix
//! socket in a directory only the user can enter, and warpctl starts gdb on
//! it; with `--gdbserver` it is the address given: loopback TCP or a unix
//! socket path, never another host (whoever reaches the port reads the
//! program's memory).
//!
//! The program's output is re-emitted as by `warpctl replay`, between
//! gdb's own lines.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};
use tokio_stream::wrappers::ReceiverStream;
use warp_proto::trace::{SessionMeta, Status};
use warp_proto::warp::{
    debug_input, replay_end, replay_update, DebugInput, GetSessionRequest, ListSessionsRequest, ReplayRequest,
};

use crate::connect::{self, Daemon};
use crate::replay::{divergence_report, Output, ReplayError};
use crate::view::{rpc, ViewError};

/// Where the debugger connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

/// Parses `--gdbserver ADDR`: `HOST:PORT` on a loopback host (`:PORT` is
/// 127.0.0.1), or a unix socket path (`unix:PATH`, or any path with a `/`).
pub fn parse_listen(addr: &str) -> Result<Listen, String> {
    if let Some(path) = addr.strip_prefix("unix:") {
        return Ok(Listen::Unix(PathBuf::from(path)));
    }
    if addr.contains('/') {
        return Ok(Listen::Unix(PathBuf::from(addr)));
    }
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err(format!("{addr:?} is neither HOST:PORT nor a unix socket path"));
    };
    let port: u16 = port.parse().map_err(|_| format!("{port:?} in {addr:?} is not a port number"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip: std::net::IpAddr = match host {
        "" | "localhost" => std::net::Ipv4Addr::LOCALHOST.into(),
        h => h.parse().map_err(|_| format!("{h:?} is not an IP address (give 127.0.0.1, ::1 or localhost)"))?,
    };
    if !ip.is_loopback() {
        return Err(format!(
            "{ip} is not a loopback address: the gdb server listens only on this machine (127.0.0.1, ::1) or on a unix socket, because whoever can connect reads the program's memory"
        ));
    }
    Ok(Listen::Tcp(SocketAddr::new(ip, port)))
}

/// A listening socket of either kind.
enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

trait Socket: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Socket for T {}

impl Listener {
    async fn bind(at: &Listen) -> Result<Listener, String> {
        match at {
            Listen::Tcp(a) => {
                TcpListener::bind(a).await.map(Listener::Tcp).map_err(|e| format!("cannot listen on {a}: {e}"))
            }
            Listen::Unix(p) => {
                if p.exists() {
                    return Err(format!("{} already exists; give a path that does not", p.display()));
                }
                UnixListener::bind(p)
                    .map(|l| Listener::Unix(l, p.clone()))
                    .map_err(|e| format!("cannot listen on {}: {e}", p.display()))
            }
        }
    }

    /// What to tell gdb (`target remote WHAT`).
    fn name(&self) -> String {
        match self {
            Listener::Tcp(l) => l.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            Listener::Unix(_, p) => p.display().to_string(),
        }
    }

    async fn accept(&self) -> std::io::Result<Box<dyn Socket>> {
        Ok(match self {
            Listener::Tcp(l) => {
                let (s, _) = l.accept().await?;
                let _ = s.set_nodelay(true);
                Box::new(s)
            }
            Listener::Unix(l, _) => Box::new(l.accept().await?.0),
        })
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, p) = self {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// A directory only the user can enter, removed when dropped.
struct PrivateDir(PathBuf);

impl PrivateDir {
    fn new() -> std::io::Result<PrivateDir> {
        let base = std::env::var_os("XDG_RUNTIME_DIR")
            .filter(|d| !d.is_empty() && Path::new(d).is_dir())
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let template = base.join("warpctl-gdb-XXXXXX");
        let dir = nix::unistd::mkdtemp(&template).map_err(std::io::Error::from)?;
        Ok(PrivateDir(dir))
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// How the debugged replay ended, as warpd said.
enum Ended {
    Reproduced,
    Diverged,
    Left,
}

/// The session to debug, checked before anything is started (with its
/// process `pid`, unless 0).
async fn session(daemon: &mut Daemon, id: &str, pid: u32) -> Result<SessionMeta, ReplayError> {
    let reply = daemon.client.get_session(GetSessionRequest { id: id.to_string() }).await.map_err(rpc)?.into_inner();
    let meta = reply.meta.ok_or_else(|| ViewError::Rpc("the daemon sent no session".into()))?;
    if meta.status != Status::Complete as i32 {
        return Err(ReplayError::Unreadable {
            id: meta.id.clone(),
            message: "only complete recordings can be replayed".into(),
        });
    }
    if pid != 0 {
        let tree = ListSessionsRequest { tree: meta.id.clone() };
        let reply = daemon.client.list_sessions(tree).await.map_err(rpc)?.into_inner();
        let message = match reply.sessions.iter().find(|s| s.pid == pid) {
            None => format!("it has no process {pid} (`warpctl ps {}` lists its processes)", meta.id),
            Some(s) if s.status != "complete" => format!("its process {pid} (session {}) is {}", s.id, s.status),
            Some(_) => return Ok(meta),
        };
        return Err(ReplayError::Unreadable { id: meta.id.clone(), message });
    }
    Ok(meta)
}

/// The executable the recording ran, as a debugger should load it: None
/// when the file at its recorded path on this machine is that one; else a
/// copy of the recorded image in the cache (said, with why).
async fn recorded_image(daemon: &mut Daemon, meta: &SessionMeta, out: &mut Output, gdb: bool) -> Option<PathBuf> {
    // The session knows its executable's hash: when the file at its path
    // here has it, there is nothing to fetch.
    let program = Path::new(&meta.cwd).join(&meta.program);
    if !meta.exe_hash.is_empty()
        && std::fs::read(&program).is_ok_and(|b| blake3::hash(&b).as_bytes().as_slice() == meta.exe_hash.as_slice())
    {
        return None;
    }
    let request = GetSessionRequest { id: meta.id.clone() };
    let fetched: Result<(String, Vec<u8>), String> = async {
        let mut stream =
            daemon.client.recorded_executable(request).await.map_err(|s| s.message().to_string())?.into_inner();
        let (mut path, mut bytes) = (String::new(), Vec::new());
        while let Some(chunk) = stream.message().await.map_err(|s| s.message().to_string())? {
            if path.is_empty() {
                path = chunk.path;
            }
            bytes.extend_from_slice(&chunk.data);
        }
        Ok((path, bytes))
    }
    .await;
    let (path, image) = match fetched {
        Ok(f) => f,
        Err(e) => {
            out.say(&format!(
                "cannot have the recorded executable from warpd ({e}): gdb reads the file on this machine"
            ));
            return None;
        }
    };
    let local = Path::new(&meta.cwd).join(&path);
    let why = match std::fs::read(&local) {
        Ok(bytes) if bytes == image => return None,
        Ok(_) => "differs from",
        Err(_) => "is not",
    };
    let hash = blake3::hash(&image).to_hex();
    let name = local.file_name().map(|n| n.to_os_string()).unwrap_or_else(|| "executable".into());
    let cache = warp_common::paths::cache_dir().join("images").join(&hash.as_str()[..32]);
    let copy = cache.join(name);
    if !copy.exists() {
        let written = std::fs::create_dir_all(&cache).and_then(|()| {
            let tmp = cache.join(".partial");
            std::fs::write(&tmp, &image)?;
            std::fs::rename(&tmp, &copy)
        });
        if let Err(e) = written {
            out.say(&format!(
                "{} on this machine {why} the executable the recording ran, and the recorded one cannot be kept in {} ({e}): gdb's symbols may not match the code",
                local.display(),
                cache.display()
            ));
            return None;
        }
    }
    let what = if gdb {
        format!("gdb reads the recorded one, kept at {}", copy.display())
    } else {
        format!(
            "load the recorded one, kept at {0}, in the debugger (gdb: file {0}; lldb: target create {0})",
            copy.display()
        )
    };
    out.say(&format!("{} on this machine {why} the executable the recording ran: {what}", local.display()));
    Some(copy)
}

/// Carries the debugger's bytes to warpd and back until the replay ends.
async fn bridge(
    daemon: &mut Daemon,
    id: &str,
    pid: u32,
    quiet: bool,
    sock: Box<dyn Socket>,
    out: &mut Output,
) -> Result<Ended, ReplayError> {
    let (mut rd, mut wr) = tokio::io::split(sock);
    let (tx, rx) = tokio::sync::mpsc::channel::<DebugInput>(64);
    let start = DebugInput {
        input: Some(debug_input::Input::Start(ReplayRequest { id: id.to_string(), quiet, no_exitless: true, pid })),
    };
    let _ = tx.send(start).await;
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let m = DebugInput { input: Some(debug_input::Input::Gdb(buf[..n].to_vec())) };
                    if tx.send(m).await.is_err() {
                        break;
                    }
                }
            }
        }
    });
    let mut stream = daemon.client.debug(ReceiverStream::new(rx)).await.map_err(rpc)?.into_inner();
    let mut debugger = true;
    let ended = loop {
        let Some(update) = stream.message().await.map_err(rpc)? else { break Err(ReplayError::NoOutcome) };
        match update.update {
            // A debugger that has gone reads nothing more; the replay ends
            // once warpd sees its input end.
            Some(replay_update::Update::Gdb(bytes)) if debugger => {
                debugger = wr.write_all(&bytes).await.is_ok() && wr.flush().await.is_ok();
            }
            Some(replay_update::Update::Gdb(_)) | Some(replay_update::Update::Progress(_)) => {}
            Some(replay_update::Update::Stdout(bytes)) => out.stdout(&bytes),
            Some(replay_update::Update::Stderr(bytes)) => out.stderr(&bytes),
            Some(replay_update::Update::Note(note)) => out.say(&note),
            Some(replay_update::Update::End(end)) => {
                break match end.outcome {
                    Some(replay_end::Outcome::Reproduced(_)) => Ok(Ended::Reproduced),
                    Some(replay_end::Outcome::LeftAt(_)) => Ok(Ended::Left),
                    Some(replay_end::Outcome::Diverged(d)) => {
                        out.say(&divergence_report(&d));
                        Ok(Ended::Diverged)
                    }
                    Some(replay_end::Outcome::Unreadable(message)) => {
                        Err(ReplayError::Unreadable { id: id.to_string(), message })
                    }
                    Some(replay_end::Outcome::Failed(message)) => {
                        Err(ReplayError::Failed { id: id.to_string(), message })
                    }
                    None => Err(ReplayError::NoOutcome),
                };
            }
            None => {}
        }
    };
    reader.abort();
    let _ = wr.shutdown().await;
    out.fresh_line();
    ended
}

/// `--gdbserver ADDR`: serves one debugger connection. Exit status 0 when
/// the program ran to the end it had or the debugger left, 1 when the
/// replay diverged.
pub async fn serve(id: String, pid: u32, quiet: bool, addr: String) -> Result<u8, ReplayError> {
    let at = parse_listen(&addr).map_err(ViewError::Refused)?;
    let mut daemon = connect::connect_or_start(false).await.map_err(ViewError::from)?;
    let meta = session(&mut daemon, &id, pid).await?;
    let mut out = Output { stderr_mid_line: false, stdout_closed: false };
    recorded_image(&mut daemon, &meta, &mut out, false).await;
    let listener = Listener::bind(&at).await.map_err(ViewError::Refused)?;
    out.say(&format!(
        "session {}: gdb server listening on {} (gdb: target remote {}; lldb: gdb-remote {})",
        meta.id,
        listener.name(),
        listener.name(),
        listener.name()
    ));
    let sock = listener.accept().await.map_err(|e| ViewError::Local(format!("accepting the debugger: {e}")))?;
    drop(listener);
    match bridge(&mut daemon, &meta.id, pid, quiet, sock, &mut out).await? {
        Ended::Diverged => Ok(1),
        Ended::Reproduced | Ended::Left => Ok(0),
    }
}

/// `--gdb`: starts gdb on the replay and exits with gdb's status.
pub async fn gdb(id: String, pid: u32, quiet: bool, gdb_args: Vec<OsString>) -> Result<u8, ReplayError> {
    let mut daemon = connect::connect_or_start(false).await.map_err(ViewError::from)?;
    let meta = session(&mut daemon, &id, pid).await?;
    let mut out = Output { stderr_mid_line: false, stdout_closed: false };
    let image = recorded_image(&mut daemon, &meta, &mut out, true).await;
    let dir =
        PrivateDir::new().map_err(|e| ViewError::Local(format!("cannot make a directory for gdb's socket: {e}")))?;
    let listener = Listener::bind(&Listen::Unix(dir.0.join("gdb.sock"))).await.map_err(ViewError::Local)?;
    let gdb = std::env::var_os("WARP_GDB").unwrap_or_else(|| "gdb".into());
    let mut cmd = tokio::process::Command::new(&gdb);
    cmd.arg("-q");
    if let Some(copy) = &image {
        // The recorded image, not the one the target names by path.
        cmd.arg("-ex").arg("set exec-file-mismatch off").arg("-ex").arg(format!("file {}", copy.display()));
    }
    cmd.arg("-ex").arg(format!("target remote {}", listener.name())).args(&gdb_args);
    let mut child = cmd.spawn().map_err(|e| {
        ViewError::Local(format!("cannot start {} ({e}); install gdb or set WARP_GDB", Path::new(&gdb).display()))
    })?;
    // Ctrl-C is gdb's (it interrupts the program); warpctl stays.
    let mut interrupts = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok();
    let ignore_interrupts = async {
        match interrupts.as_mut() {
            Some(s) => while s.recv().await.is_some() {},
            None => std::future::pending().await,
        }
    };
    tokio::pin!(ignore_interrupts);
    let sock = tokio::select! {
        s = listener.accept() => Some(s.map_err(|e| ViewError::Local(format!("accepting gdb: {e}")))?),
        _ = child.wait() => None,
    };
    drop(listener);
    if let Some(sock) = sock {
        let bridged = tokio::select! {
            r = bridge(&mut daemon, &meta.id, pid, quiet, sock, &mut out) => r,
            _ = &mut ignore_interrupts => unreachable!("the interrupt stream does not end"),
        };
        if let Err(e) = bridged {
            out.say(&e.to_string());
        }
    }
    let status = tokio::select! {
        s = child.wait() => s,
        _ = &mut ignore_interrupts => unreachable!("the interrupt stream does not end"),
    };
    let status = status.map_err(|e| ViewError::Local(format!("waiting for gdb: {e}")))?;
    use std::os::unix::process::ExitStatusExt;
    Ok(match (status.code(), status.signal()) {
        (Some(c), _) => c as u8,
        (None, Some(s)) => 128 + s as u8,
        _ => 125,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        assert_eq!(parse_listen(":1234"), Ok(Listen::Tcp("127.0.0.1:1234".parse().unwrap())));
        assert_eq!(parse_listen("localhost:0"), Ok(Listen::Tcp("127.0.0.1:0".parse().unwrap())));
        assert_eq!(parse_listen("[::1]:9"), Ok(Listen::Tcp("[::1]:9".parse().unwrap())));
        assert_eq!(parse_listen("/tmp/g.sock"), Ok(Listen::Unix("/tmp/g.sock".into())));
        assert_eq!(parse_listen("unix:g.sock"), Ok(Listen::Unix("g.sock".into())));
        assert!(parse_listen("0.0.0.0:1234").unwrap_err().contains("not a loopback address"));
        assert!(parse_listen("10.1.2.3:1").unwrap_err().contains("not a loopback address"));
        assert!(parse_listen("127.0.0.1:99999").unwrap_err().contains("not a port number"));
        assert!(parse_listen("nonsense").is_err());
    }
}
