//! The warpd daemon binary: picks its places, takes its lock, opens its
//! store, binds its sockets and runs the server (`warpd::server`) until told
//! to stop or idle.

use std::fs::{self, File, OpenOptions};
use std::io::{self, IsTerminal};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixListener as StdUnixListener;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{ArgGroup, Parser};
use nix::fcntl::{Flock, FlockArg};
use warp_common::paths::{Mode, Paths, PathsError};
use warpd::config::{self, FileConfig};
use warpd::server::{self, Options, RemoteListener, ServerError};
use warpd::session::Config;
use warpd::trace::store::{Store, StoreError};

/// Default idle time before an embedded daemon exits.
const DEFAULT_IDLE_SECS: u64 = 300;

const ENV_HELP: &str = "\
Environment:
  WARP_HOME        keep the sockets, lock, log and store of an embedded daemon
                   in this directory (tests use it to run isolated daemons)
  WARP_IDLE_SECS   seconds without sessions or requests after which an
                   embedded daemon exits (default 300; 0: never)
  WARP_CHECKPOINT_MB
                   memory a debugged replay's reverse execution may keep in
                   checkpoints (default 256)
  WARP_IMPORT_MAX_BYTES
                   the most an imported trace file may decompress to
                   (default 32 GiB): more is refused as it is read
  WARP_KVM_DEVICE  the KVM device to open (default /dev/kvm)
  WARP_LOG         log filter, e.g. `debug` or `warpd=trace` (default info)
  WARP_MAX_CONNECTIONS
                   connections one user may hold open at once (default 256;
                   root is not limited): more are closed as they come
  WARP_MAX_PROCESSES
                   processes a recording may have alive at once (default 128)
  WARP_MAX_SESSIONS
                   recordings one user may have running at once (default 64;
                   root is not limited): more are refused
  WARP_POINT_TIMEOUT_SECS
                   the least time a replay gives the program to reach a
                   recorded interruption point before it calls it diverged
                   (default 60)
  WARP_STORE_RESERVE_MB
                   space warpd keeps free on the store's file system
                   (default 64): a recording that would leave less is
                   stopped and marked incomplete, an import refused

Without WARP_HOME the embedded daemon listens in $XDG_RUNTIME_DIR/warpspeed
(or /tmp/warpspeed-$UID) and keeps its store and log in $XDG_DATA_HOME/warpspeed
(or ~/.local/share/warpspeed). The system daemon listens on
/run/warpspeed/warpd.sock and keeps its store in /var/lib/warpspeed.

Configuration file (TOML; relative paths are from its directory; a mistake
is refused at start with its file, line and field):
  [remote]                    remote callers: gRPC over TLS on TCP, each
                              client authenticated by its certificate
  listen = \"0.0.0.0:7443\"     address and port (port 0: any; the log says)
  cert = \"server.pem\"         this daemon's certificate chain (PEM)
  key = \"server.key\"          its private key (PEM)
  client_ca = \"clients.pem\"   the CA that signs client certificates: others,
                              expired ones and plain-text clients are refused
  [[remote.client]]           one per certificate identity, first match wins:
  name = \"alice\"              a DNS subjectAltName of the client certificate
  uid = 1000                  acts as this user: sees, replays, exports and
                              removes that user's recordings only
  # role = \"operator\"         instead of uid: sees every user's recordings
  [retention]                 recordings removed after each one ends and
                              every 10 minutes, oldest first (never one
                              recording, a pinned one or the newest):
  max_size = \"20G\"            past this much data together (K, M, G, T)
  max_age = \"30d\"             ended longer ago than this (s, m, h, d)
Remote callers cannot record, collect garbage or stop the daemon.";

/// Warpspeed's daemon: records programs in virtual machines.
///
/// You rarely start it yourself: warpctl starts a private (embedded) daemon
/// when none answers, and the systemd unit or launchd plist runs the
/// system-wide one.
#[derive(Parser, Debug)]
#[command(name = "warpd", version, after_help = ENV_HELP)]
#[command(group(ArgGroup::new("mode").required(true).args(["embedded", "system"])))]
struct Args {
    /// Run as one user's private daemon (what warpctl starts): socket and
    /// store in the user's directories or $WARP_HOME; exits when idle.
    #[arg(long)]
    embedded: bool,
    /// Run as the machine's daemon (for systemd/launchd): socket
    /// /run/warpspeed/warpd.sock, open to every local user; never idles out.
    #[arg(long)]
    system: bool,
    /// Read this configuration file (TOML; see below). The system daemon
    /// reads /etc/warpspeed/warpd.toml when it exists; an embedded one
    /// reads none unless told.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

/// Why the daemon could not run.
#[derive(Debug, thiserror::Error)]
enum DaemonError {
    #[error("{0}")]
    Paths(#[from] PathsError),
    #[error("cannot open the lock file {}: {source}", path.display())]
    Lock { path: PathBuf, source: io::Error },
    #[error("cannot listen on {}: {source}", path.display())]
    Bind { path: PathBuf, source: io::Error },
    #[error("WARP_IDLE_SECS must be a whole number of seconds, not {0:?}")]
    Idle(String),
    #[error("cannot open the store in {}: {source}", path.display())]
    Store { path: PathBuf, source: StoreError },
    #[error("cannot start the async runtime: {0}")]
    Runtime(io::Error),
    #[error("{0}")]
    Server(#[from] ServerError),
    #[error("{0}")]
    Config(#[from] warpd::config::ConfigError),
    #[error("{0}")]
    Remote(#[from] warpd::server::remote::RemoteError),
    #[error("cannot listen for remote callers on {addr}: {source}")]
    Listen { addr: std::net::SocketAddr, source: io::Error },
}

fn main() -> ExitCode {
    warpd::server::memory::tune_allocator();
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("WARP_LOG")
        // gdbstub logs every packet it does not know at info.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,gdbstub=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_ansi(io::stderr().is_terminal())
        .init();

    let mode = if args.system { Mode::System } else { Mode::Embedded };
    raise_descriptor_limit();
    let code = match run(mode, args.config.as_deref()) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("{e}");
            1
        }
    };
    // The store is flushed (or could not be: `final_flush`). Leave without
    // the exit handlers and thread-local destructors: the last of sled's
    // memory can be freed there, and after an I/O error (a full disk) its
    // drop waits forever for a write that cannot be made.
    let _ = io::Write::flush(&mut io::stderr());
    // SAFETY: _exit ends the process at once; nothing after it runs.
    unsafe { libc::_exit(code) }
}

/// Each session holds a few descriptors and each client a connection: the
/// soft limit (often 1024) goes up to the hard one, so that one user's many
/// idle connections do not leave the others none. The brokers warpctl
/// starts are not warpd's children and keep the user's own limits.
fn raise_descriptor_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            let before = lim.rlim_cur;
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                tracing::info!(from = before, to = lim.rlim_max, "raised the descriptor limit");
            }
        }
    }
}

/// The configuration: the file named, or for the system daemon its
/// default one if it exists; none otherwise.
fn load_config(mode: Mode, named: Option<&Path>) -> Result<FileConfig, DaemonError> {
    let path = match (named, mode) {
        (Some(path), _) => path,
        (None, Mode::System) if Path::new(config::SYSTEM_CONFIG).exists() => Path::new(config::SYSTEM_CONFIG),
        (None, _) => return Ok(FileConfig::default()),
    };
    let loaded = config::load(path)?;
    tracing::info!(path = %path.display(), "configuration read");
    Ok(loaded)
}

fn run(mode: Mode, config_path: Option<&Path>) -> Result<(), DaemonError> {
    let file_config = load_config(mode, config_path)?;
    let remote_tls = match &file_config.remote {
        Some(remote) => Some((remote.listen, server::remote::tls_config(remote)?)),
        None => None,
    };
    let uid = nix::unistd::getuid().as_raw();
    let paths = match mode {
        Mode::System => Paths::system(),
        Mode::Embedded => Paths::embedded_for_this_process()?,
    };
    let idle_timeout = match mode {
        Mode::System => None,
        Mode::Embedded => idle_timeout()?,
    };
    paths.prepare_socket_dir(uid)?;
    paths.prepare_data_dir()?;

    // One daemon per socket: a second one (two warpctls starting daemons at
    // once) finds the lock held and leaves quietly; the first one serves both.
    let Some(_lock) = take_lock(&paths.lock)? else {
        tracing::debug!(lock = %paths.lock.display(), "another warpd holds the lock; exiting");
        return Ok(());
    };

    // We hold the lock, so the store is ours alone; sessions a dead daemon
    // left recording come back incomplete. Opened before the runtime
    // starts: sled blocks.
    let store = Store::open(&paths.store).map_err(|source| DaemonError::Store { path: paths.store.clone(), source })?;
    let recovered = store.recovered();
    if !recovered.is_empty() {
        tracing::warn!(sessions = ?recovered, "sessions left recording by a warpd that died are now incomplete");
    }
    let store = Arc::new(store);

    // We hold the lock, so any socket file left is a dead daemon's.
    let grpc_mode = match mode {
        Mode::System => 0o666,
        Mode::Embedded => 0o600,
    };
    let grpc = bind(&paths.socket, grpc_mode)?;
    // Brokers run as whichever user recorded; the token and peer uid decide.
    let broker = bind(&paths.broker_socket, 0o666)?;
    let remote = match remote_tls {
        Some((addr, tls)) => {
            let listener = std::net::TcpListener::bind(addr).map_err(|source| DaemonError::Listen { addr, source })?;
            listener.set_nonblocking(true).map_err(|source| DaemonError::Listen { addr, source })?;
            let bound = listener.local_addr().map_err(|source| DaemonError::Listen { addr, source })?;
            tracing::info!(addr = %bound, "listening for remote callers (TLS, client certificates)");
            Some((listener, tls, addr))
        }
        None => None,
    };

    let options = Options {
        mode,
        owner_uid: uid,
        socket: paths.socket.clone(),
        broker_socket: paths.broker_socket.clone(),
        store_dir: paths.store.clone(),
        idle_timeout,
        config: Config::default(),
        remote_clients: file_config.remote.map(|r| r.clients).unwrap_or_default(),
        capture_rules: paths.data_dir.join("capture-rules"),
        capture_marker: paths.socket_dir.join("armed"),
        retention: file_config.retention,
    };
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        pid = std::process::id(),
        mode = mode.as_str(),
        socket = %paths.socket.display(),
        idle_secs = idle_timeout.map(|d| d.as_secs()),
        "warpd listening"
    );

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(DaemonError::Runtime)?;
    let result = runtime.block_on(async {
        let grpc = tokio::net::UnixListener::from_std(grpc)
            .map_err(|source| DaemonError::Bind { path: paths.socket.clone(), source })?;
        let broker = tokio::net::UnixListener::from_std(broker)
            .map_err(|source| DaemonError::Bind { path: paths.broker_socket.clone(), source })?;
        let remote = match remote {
            Some((listener, tls, addr)) => Some(RemoteListener {
                listener: tokio::net::TcpListener::from_std(listener)
                    .map_err(|source| DaemonError::Listen { addr, source })?,
                tls,
            }),
            None => None,
        };
        server::serve(options, Arc::clone(&store), grpc, broker, remote, termination()).await?;
        Ok::<(), DaemonError>(())
    });
    let _ = fs::remove_file(&paths.socket);
    let _ = fs::remove_file(&paths.broker_socket);
    runtime.shutdown_timeout(Duration::from_secs(1));
    final_flush(store);
    tracing::info!("warpd stopped");
    // The daemon lock goes with the process (`_exit` in main), so whoever
    // waits for it (`warpctl daemon stop`, a new daemon) finds the store's
    // files let go too.
    std::mem::forget(_lock);
    result
}

/// How long the last flush of the store may take before warpd stops
/// without it.
const FINAL_FLUSH: Duration = Duration::from_secs(10);

/// Flushes the store on a thread of its own, waiting at most
/// [`FINAL_FLUSH`]: after an I/O error (a full disk) sled's flush can wait
/// forever, and a daemon asked to stop must stop. What was flushed before
/// stays (sled recovers from its log, as after a kill), and the store is
/// not dropped here then (its drop flushes again).
fn final_flush(store: Arc<Store>) {
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let flushing = std::thread::Builder::new().name("final-flush".into()).spawn(move || {
        let flushed = store.flush();
        // Dropped before the answer: sled's lock on its files goes with it.
        drop(store);
        let _ = done_tx.send(flushed);
    });
    if let Err(e) = flushing {
        tracing::error!("cannot start the store's last flush: {e}");
        return;
    }
    match done_rx.recv_timeout(FINAL_FLUSH) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!("cannot flush the store: {e}"),
        Err(_) => tracing::error!(
            "the store's last flush did not end within {}s (the disk full or failing?): stopping without it; \
             what was written before is kept",
            FINAL_FLUSH.as_secs()
        ),
    }
}

/// `WARP_IDLE_SECS`, or the default; `None` for 0 (never).
fn idle_timeout() -> Result<Option<Duration>, DaemonError> {
    let secs = match std::env::var("WARP_IDLE_SECS") {
        Ok(v) => v.trim().parse::<u64>().map_err(|_| DaemonError::Idle(v))?,
        Err(_) => DEFAULT_IDLE_SECS,
    };
    Ok((secs > 0).then(|| Duration::from_secs(secs)))
}

/// Takes the daemon lock; `None` if another process holds it.
fn take_lock(path: &Path) -> Result<Option<Flock<File>>, DaemonError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|source| DaemonError::Lock { path: path.to_owned(), source })?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(Some(lock)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, errno)) => Err(DaemonError::Lock { path: path.to_owned(), source: errno.into() }),
    }
}

/// Binds a unix socket at `path` (replacing a stale one) with `mode`.
fn bind(path: &Path, mode: u32) -> Result<StdUnixListener, DaemonError> {
    let err = |source| DaemonError::Bind { path: path.to_owned(), source };
    match fs::remove_file(path) {
        Ok(()) => tracing::debug!(path = %path.display(), "removed a stale socket"),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    let listener = StdUnixListener::bind(path).map_err(err)?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(err)?;
    listener.set_nonblocking(true).map_err(err)?;
    Ok(listener)
}

/// Completes on SIGTERM or SIGINT (systemd's stop, a Ctrl-C when run by hand).
async fn termination() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::warn!("cannot watch for SIGTERM/SIGINT; stop warpd with `warpctl daemon stop`");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM"),
        _ = int.recv() => tracing::info!("SIGINT"),
    }
}
