//! Finding a daemon to talk to, and starting one when none answers.
//!
//! Order: the system daemon's socket (only without `$WARP_HOME`), then this
//! user's (or this `$WARP_HOME`'s) socket; if neither answers, warpctl
//! starts `warpd --embedded` detached from itself and waits for it. Two
//! warpctls doing this at once are safe: the daemon takes a lock, and the
//! one that does not get it exits quietly while the other serves both.

use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity, Uri};
use warp_common::paths::{Paths, PathsError};
use warp_proto::warp::warp_client::WarpClient;
use warp_proto::warp::{HelloReply, HelloRequest};

use crate::remote::Remote;

/// The remote daemon this run talks to (`--remote`), set once at start.
static REMOTE: OnceLock<Remote> = OnceLock::new();

/// Makes every connection of this run go to `remote`.
pub fn use_remote(remote: Remote) {
    let _ = REMOTE.set(remote);
}

/// How long a freshly started daemon gets to answer.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a daemon gets to answer Hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// Why no daemon could be reached.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("{0}")]
    Paths(#[from] PathsError),
    /// Connecting failed for a reason other than "nobody listens".
    #[error("cannot connect to warpd at {}: {source}", socket.display())]
    Socket { socket: PathBuf, source: io::Error },
    /// Something listens but does not speak the protocol in time.
    #[error("warpd at {} does not answer: {reason}", socket.display())]
    NoAnswer { socket: PathBuf, reason: String },
    /// The `warpd` binary is not where it should be.
    #[error("cannot start warpd ({}): {source}; set WARP_DAEMON to the warpd binary", path.display())]
    DaemonBinary { path: PathBuf, source: io::Error },
    /// The log file for the daemon's output cannot be opened.
    #[error("cannot open the daemon log {}: {source}", path.display())]
    Log { path: PathBuf, source: io::Error },
    /// The daemon started but exited with an error.
    #[error("warpd exited ({status}) while starting; see {}", log.display())]
    DaemonFailed { status: ExitStatus, log: PathBuf },
    /// Another daemon holds the lock but no socket answers.
    #[error("another warpd holds {} but does not answer on {} (is it stopping?); try again shortly", lock.display(), socket.display())]
    LockHeld { lock: PathBuf, socket: PathBuf },
    /// A remote daemon's credentials cannot be read.
    #[error("cannot read {what} {}: {source}", path.display())]
    Credentials { what: &'static str, path: PathBuf, source: io::Error },
    /// The remote daemon cannot be reached or refused us.
    #[error("warpd at {addr}: {reason}")]
    Remote { addr: String, reason: String },
    /// The daemon did not answer in time.
    #[error("warpd did not answer on {} within {} s; see {}", socket.display(), START_TIMEOUT.as_secs(), log.display())]
    StartTimeout { socket: PathBuf, log: PathBuf },
}

/// A daemon that answered Hello.
pub struct Daemon {
    pub client: WarpClient<Channel>,
    pub hello: HelloReply,
    pub socket: PathBuf,
}

/// Connects to the daemon that serves this user, starting one if needed.
pub async fn connect_or_start(verbose: bool) -> Result<Daemon, ConnectError> {
    if let Some(remote) = REMOTE.get() {
        return connect_remote(remote).await;
    }
    if std::env::var_os("WARP_HOME").is_none_or(|v| v.is_empty()) {
        let system = Paths::system();
        match try_socket(&system.socket).await {
            Ok(Some(daemon)) => {
                say_ignored_settings(&daemon);
                return Ok(daemon);
            }
            Ok(None) => {}
            Err(e) if verbose => say!("not using the system daemon: {e}"),
            Err(_) => {}
        }
    }
    let paths = Paths::embedded_for_this_process()?;
    // A daemon killed a moment ago can still hold its socket open while it
    // exits: connections to it are reset. Ask again until the socket is
    // refused (nobody there: start one) or answers, for a short while.
    let deadline = Instant::now() + DYING_GRACE;
    loop {
        match try_socket(&paths.socket).await {
            Ok(Some(daemon)) => {
                say_ignored_settings(&daemon);
                return Ok(daemon);
            }
            Ok(None) => break,
            Err(e) if e.may_be_dying() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e),
        }
    }
    start(&paths, verbose).await
}

/// Says, for each variable set here that the running daemon (started
/// earlier, with another environment) does not have, that it is ignored.
fn say_ignored_settings(daemon: &Daemon) {
    let theirs: Vec<(String, String)> =
        daemon.hello.settings.iter().map(|s| (s.name.clone(), s.value.clone())).collect();
    let mine = warp_common::settings::current();
    for (name, value, their) in warp_common::settings::ignored(&mine, &theirs) {
        let their = their.map_or("without it".to_string(), |v| format!("with {name}={v}"));
        say!(
            "{name}={value} is ignored: the running warpd (pid {}) was started {their}; `warpctl daemon stop` and run again to start one with yours",
            daemon.hello.pid
        );
    }
}

/// How long a daemon that resets connections may take to be gone.
const DYING_GRACE: Duration = Duration::from_secs(3);

impl ConnectError {
    /// Whether this is what a daemon that is exiting (killed) looks like:
    /// its connections reset or fail in transport, rather than an answer.
    fn may_be_dying(&self) -> bool {
        match self {
            ConnectError::Socket { source, .. } => {
                matches!(source.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe)
            }
            ConnectError::NoAnswer { reason, .. } => !reason.starts_with("no reply within"),
            _ => false,
        }
    }
}

/// Connects to this user's (or this `$WARP_HOME`'s) embedded daemon, if one
/// runs; never starts one.
pub async fn connect_existing() -> Result<Option<Daemon>, ConnectError> {
    let paths = Paths::embedded_for_this_process()?;
    try_socket(&paths.socket).await
}

/// How long a remote daemon gets to accept the connection and handshake.
const REMOTE_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to `remote` over TLS, presenting this client's certificate,
/// and says Hello.
pub async fn connect_remote(remote: &Remote) -> Result<Daemon, ConnectError> {
    let read = |what, path: &Path| {
        std::fs::read(path).map_err(|source| ConnectError::Credentials { what, path: path.to_owned(), source })
    };
    let (cert, key, ca) = (
        read("the client certificate", &remote.cert)?,
        read("the client key", &remote.key)?,
        read("the CA", &remote.ca)?,
    );
    let failed = |reason: String| ConnectError::Remote { addr: remote.addr.clone(), reason };
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .identity(Identity::from_pem(cert, key))
        .domain_name(remote.host.clone());
    let endpoint = Endpoint::from_shared(format!("https://{}", remote.addr))
        .map_err(|e| failed(chain(&e)))?
        .connect_timeout(REMOTE_CONNECT_TIMEOUT)
        .tls_config(tls)
        .map_err(|e| failed(format!("the TLS settings are refused: {}", chain(&e))))?;
    let channel = endpoint.connect().await.map_err(|e| failed(chain(&e)))?;
    let mut client = WarpClient::new(channel);
    let hello = match tokio::time::timeout(HELLO_TIMEOUT, client.hello(HelloRequest {})).await {
        Err(_) => return Err(failed(format!("no reply within {} s", HELLO_TIMEOUT.as_secs()))),
        Ok(Err(status)) => {
            let detail = match std::error::Error::source(&status) {
                Some(source) => chain(source),
                None => status.message().to_string(),
            };
            // TLS 1.3 finishes the client's side of the handshake before
            // the daemon has checked the client's certificate: a refusal
            // then looks like a connection closed.
            let closed =
                matches!(status.code(), tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled);
            return Err(failed(if closed {
                format!(
                    "the connection was closed after the TLS handshake: the daemon did not accept the certificate {} (not signed by its client CA, expired or not yet valid; its log says which) ({detail})",
                    remote.cert.display()
                )
            } else {
                detail
            }));
        }
        Ok(Ok(reply)) => reply.into_inner(),
    };
    Ok(Daemon { client, hello, socket: PathBuf::from(&remote.addr) })
}

/// `e` and its sources, joined (transport errors say little alone).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        next = s.source();
    }
    text
}

/// Whether a connect error means "no daemon here" rather than a problem.
fn nobody_listens(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused)
}

/// Connects to `socket` and says Hello. `None` when nobody listens there
/// or the daemon is on its way out.
pub async fn try_socket(socket: &Path) -> Result<Option<Daemon>, ConnectError> {
    let stream = match UnixStream::connect(socket).await {
        Ok(stream) => stream,
        Err(e) if nobody_listens(&e) => return Ok(None),
        Err(source) => return Err(ConnectError::Socket { socket: socket.to_owned(), source }),
    };
    // The first connection is the one just made (so errors above are
    // classified exactly); should the channel reconnect, it dials again.
    let first = Arc::new(Mutex::new(Some(stream)));
    let path = socket.to_owned();
    let connector = tower::service_fn(move |_: Uri| {
        let first = Arc::clone(&first);
        let path = path.clone();
        async move {
            let ready = first.lock().unwrap_or_else(|e| e.into_inner()).take();
            let stream = match ready {
                Some(stream) => stream,
                None => UnixStream::connect(&path).await?,
            };
            Ok::<_, io::Error>(TokioIo::new(stream))
        }
    });
    let no_answer = |reason: String| ConnectError::NoAnswer { socket: socket.to_owned(), reason };
    let channel = Endpoint::from_static("http://localhost")
        .connect_with_connector(connector)
        .await
        .map_err(|e| no_answer(e.to_string()))?;
    let mut client = WarpClient::new(channel);
    let hello = match tokio::time::timeout(HELLO_TIMEOUT, client.hello(HelloRequest {})).await {
        Err(_) => return Err(no_answer(format!("no reply within {} s", HELLO_TIMEOUT.as_secs()))),
        Ok(Err(status)) if status.code() == tonic::Code::Unavailable => return Ok(None),
        Ok(Err(status)) => return Err(no_answer(status.message().to_owned())),
        Ok(Ok(reply)) => reply.into_inner(),
    };
    Ok(Some(Daemon { client, hello, socket: socket.to_owned() }))
}

/// The warpd binary: `$WARP_DAEMON`, or `warpd` beside warpctl.
fn daemon_binary() -> Result<PathBuf, ConnectError> {
    if let Some(path) = std::env::var_os("WARP_DAEMON").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    sibling_binary("warpd").map_err(|source| ConnectError::DaemonBinary { path: "warpd".into(), source })
}

/// `name` in the directory of warpctl's own executable.
pub fn sibling_binary(name: &str) -> io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().ok_or_else(|| io::Error::other("warpctl's own path has no directory"))?;
    Ok(dir.join(name))
}

/// Starts an embedded daemon and waits until it answers.
async fn start(paths: &Paths, verbose: bool) -> Result<Daemon, ConnectError> {
    let binary = daemon_binary()?;
    let log = paths.log.clone().unwrap_or_else(|| paths.data_dir.join("warpd.log"));
    paths.prepare_data_dir()?;
    let deadline = Instant::now() + START_TIMEOUT;
    let mut child = spawn_daemon(&binary, paths, &log)?;
    if verbose {
        say!("started warpd (pid {}); its log is {}", child.id(), log.display());
    }
    let mut spawned_at = Instant::now();
    let mut lock_was_held = false;
    loop {
        if let Some(daemon) = try_socket(&paths.socket).await? {
            return Ok(daemon);
        }
        match child.try_wait() {
            Ok(Some(status)) if !status.success() => {
                return Err(ConnectError::DaemonFailed { status, log });
            }
            Ok(Some(_)) if spawned_at.elapsed() >= Duration::from_millis(500) => {
                // It found the lock held: another daemon is starting (its
                // socket will answer soon) or stopping (it will release the
                // lock soon). Try again.
                lock_was_held = true;
                child = spawn_daemon(&binary, paths, &log)?;
                spawned_at = Instant::now();
            }
            _ => {}
        }
        if Instant::now() >= deadline {
            return Err(if lock_was_held {
                ConnectError::LockHeld { lock: paths.lock.clone(), socket: paths.socket.clone() }
            } else {
                ConnectError::StartTimeout { socket: paths.socket.clone(), log }
            });
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Spawns `warpd --embedded` in a session of its own, with stdin from
/// /dev/null and stdout/stderr appended to `log`, so that nothing of the
/// caller's (terminal, pipes a test is reading) is held open by it.
fn spawn_daemon(binary: &Path, paths: &Paths, log: &Path) -> Result<Child, ConnectError> {
    let log_err = |source| ConnectError::Log { path: log.to_owned(), source };
    let out = OpenOptions::new().create(true).append(true).mode(0o600).open(log).map_err(log_err)?;
    let err = out.try_clone().map_err(log_err)?;
    let mut command = Command::new(binary);
    command.arg("--embedded").stdin(Stdio::null()).stdout(out).stderr(err).current_dir("/");
    if std::env::var_os("WARP_HOME").is_some_and(|v| !v.is_empty()) {
        // It may have been relative to our directory; the daemon runs in /.
        command.env("WARP_HOME", &paths.socket_dir);
    }
    // SAFETY: the closure runs in the child between fork and exec and only
    // makes async-signal-safe system calls (setsid, close_range/fcntl).
    unsafe {
        command.pre_exec(|| {
            nix::unistd::setsid().map_err(io::Error::from)?;
            close_inherited_descriptors();
            Ok(())
        });
    }
    command.spawn().map_err(|source| ConnectError::DaemonBinary { path: binary.to_owned(), source })
}

/// Marks every descriptor above stderr close-on-exec, so the daemon does not
/// keep the caller's extra descriptors (`warpctl record ... 3>pipe`) open
/// for its whole life. Close-on-exec rather than close: the standard
/// library's exec-error pipe must survive until exec.
fn close_inherited_descriptors() {
    #[cfg(target_os = "linux")]
    {
        const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
        // SAFETY: close_range only changes descriptor flags; no memory is passed.
        let done = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, CLOSE_RANGE_CLOEXEC) } == 0;
        if done {
            return;
        }
    }
    // Older kernels (and macOS): one descriptor at a time.
    for fd in 3..4096 {
        // SAFETY: fcntl on a descriptor that may not exist just fails (EBADF).
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
}
