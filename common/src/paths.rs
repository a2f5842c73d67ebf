//! Where a daemon's sockets, store, log and lock live.
//!
//! One function decides this for both binaries, so that warpctl looks for
//! the daemon exactly where warpd listens:
//!
//! | what | `$WARP_HOME` set | per-user default | system daemon |
//! |---|---|---|---|
//! | gRPC socket | `$WARP_HOME/warpd.sock` | `RUN/warpd.sock` | `/run/warpspeed/warpd.sock` (*) |
//! | broker socket | `$WARP_HOME/broker.sock` | `RUN/broker.sock` | `/run/warpspeed/broker.sock` |
//! | lock | `$WARP_HOME/warpd.lock` | `RUN/warpd.lock` | `/run/warpspeed/warpd.lock` |
//! | store | `$WARP_HOME/store` | `DATA/store` | `/var/lib/warpspeed/store` |
//! | log | `$WARP_HOME/warpd.log` | `DATA/warpd.log` | stderr (the journal) |
//!
//! (*) On macOS the system daemon uses `/var/run/warpspeed` and
//! `/Library/Application Support/Warpspeed` instead.
//!
//! `RUN` is `$XDG_RUNTIME_DIR/warpspeed`, or `/tmp/warpspeed-$UID` without
//! it; `DATA` is `$XDG_DATA_HOME/warpspeed`, or `~/.local/share/warpspeed`.
//! Relative `$XDG_*` values are ignored, as the XDG specification says; a
//! relative `$WARP_HOME` is taken from the current directory.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The system daemon's runtime directory (systemd's `RuntimeDirectory=warpspeed`).
#[cfg(not(target_os = "macos"))]
pub const SYSTEM_RUN_DIR: &str = "/run/warpspeed";
/// The system daemon's state directory (systemd's `StateDirectory=warpspeed`).
#[cfg(not(target_os = "macos"))]
pub const SYSTEM_DATA_DIR: &str = "/var/lib/warpspeed";
/// The system daemon's runtime directory (macOS has no `/run`).
#[cfg(target_os = "macos")]
pub const SYSTEM_RUN_DIR: &str = "/var/run/warpspeed";
/// The system daemon's state directory.
#[cfg(target_os = "macos")]
pub const SYSTEM_DATA_DIR: &str = "/Library/Application Support/Warpspeed";

/// Longest path a unix socket address can hold, without the final NUL.
#[cfg(target_os = "linux")]
pub const MAX_SOCKET_PATH: usize = 107;
/// Longest path a unix socket address can hold, without the final NUL.
#[cfg(not(target_os = "linux"))]
pub const MAX_SOCKET_PATH: usize = 103;

/// Which kind of daemon the paths are for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Private to one user (or one `$WARP_HOME`), started by warpctl on demand.
    Embedded,
    /// One per machine, started by systemd or launchd.
    System,
}

impl Mode {
    /// The name `HelloReply.mode` uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Embedded => "embedded",
            Mode::System => "system",
        }
    }
}

/// Why the daemon's places cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PathsError {
    /// Neither the data home nor the home directory is known.
    #[error("cannot tell where to keep recordings: neither $XDG_DATA_HOME nor $HOME is set, and uid {0} has no home directory; set WARP_HOME")]
    NoHome(u32),
    /// A unix socket address cannot hold the path.
    #[error("socket path {} is {len} bytes long, more than a unix socket allows ({max}); use a shorter WARP_HOME", path.display(), max = MAX_SOCKET_PATH)]
    SocketPathTooLong { path: PathBuf, len: usize },
    /// The current directory is needed for a relative `$WARP_HOME`.
    #[error("WARP_HOME is relative and the current directory cannot be read: {0}")]
    NoCwd(io::Error),
    /// A directory could not be created or inspected.
    #[error("cannot create directory {}: {source}", path.display())]
    CreateDir { path: PathBuf, source: io::Error },
    /// Someone else owns the private directory (or it is a symlink): using it
    /// would let them see or replace the daemon's socket.
    #[error("{} is not a directory owned by uid {uid} (owner {owner}); remove it or set WARP_HOME", path.display())]
    NotOurs { path: PathBuf, uid: u32, owner: u32 },
    /// The private directory is writable by other users.
    #[error("{} is writable by other users (mode {mode:o}); run `chmod 700` on it", path.display())]
    Insecure { path: PathBuf, mode: u32 },
}

/// The environment the paths are derived from: a snapshot, so that the
/// decision is a pure function (and testable).
#[derive(Clone, Debug, Default)]
pub struct Env {
    pub warp_home: Option<OsString>,
    pub xdg_runtime_dir: Option<OsString>,
    pub xdg_data_home: Option<OsString>,
    pub home: Option<OsString>,
    pub uid: u32,
    /// Only needed for a relative `$WARP_HOME`.
    pub cwd: Option<PathBuf>,
}

impl Env {
    /// This process's environment. An empty variable counts as unset.
    pub fn from_process() -> Env {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        let uid = nix::unistd::getuid().as_raw();
        let home = var("HOME").or_else(|| {
            nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)).ok().flatten().map(|u| u.dir.into_os_string())
        });
        Env {
            warp_home: var("WARP_HOME"),
            xdg_runtime_dir: var("XDG_RUNTIME_DIR"),
            xdg_data_home: var("XDG_DATA_HOME"),
            home,
            uid,
            cwd: std::env::current_dir().ok(),
        }
    }
}

/// Where warpctl keeps files it made for the user (recorded executables a
/// debugger reads): `$WARP_HOME/cache`, else `$XDG_CACHE_HOME/warpspeed`,
/// else `~/.cache/warpspeed`, else under the temporary directory.
pub fn cache_dir() -> PathBuf {
    let env = Env::from_process();
    let absolute = |v: &Option<OsString>| v.as_ref().map(PathBuf::from).filter(|p| p.is_absolute());
    if let Some(home) = &env.warp_home {
        let home = PathBuf::from(home);
        let home = if home.is_relative() { env.cwd.clone().unwrap_or_default().join(home) } else { home };
        return home.join("cache");
    }
    let xdg = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty());
    match (absolute(&xdg), absolute(&env.home)) {
        (Some(dir), _) => dir.join("warpspeed"),
        (None, Some(home)) => home.join(".cache/warpspeed"),
        (None, None) => std::env::temp_dir().join(format!("warpspeed-cache-{}", env.uid)),
    }
}

/// Every place a daemon uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Paths {
    pub mode: Mode,
    /// Holds the sockets and the lock.
    pub socket_dir: PathBuf,
    /// gRPC (warpctl and other clients).
    pub socket: PathBuf,
    /// Brokers present their session token here.
    pub broker_socket: PathBuf,
    /// Held (flock) by the running daemon.
    pub lock: PathBuf,
    /// Holds the store and the log.
    pub data_dir: PathBuf,
    pub store: PathBuf,
    /// Where an embedded daemon's stdout and stderr go; `None` for the
    /// system daemon, which logs to its service manager.
    pub log: Option<PathBuf>,
    /// Whether `socket_dir` must be private to the user (checked by
    /// [`Paths::prepare`]); not for `$WARP_HOME`, which the user chose.
    private_run_dir: bool,
}

impl Paths {
    /// The system daemon's places.
    pub fn system() -> Paths {
        let run = PathBuf::from(SYSTEM_RUN_DIR);
        let data = PathBuf::from(SYSTEM_DATA_DIR);
        Paths {
            mode: Mode::System,
            socket: run.join("warpd.sock"),
            broker_socket: run.join("broker.sock"),
            lock: run.join("warpd.lock"),
            socket_dir: run,
            store: data.join("store"),
            data_dir: data,
            log: None,
            private_run_dir: false,
        }
    }

    /// The embedded daemon's places for this process's user and `$WARP_HOME`.
    pub fn embedded_for_this_process() -> Result<Paths, PathsError> {
        Paths::embedded(&Env::from_process())
    }

    /// The embedded daemon's places for `env` (see the module table).
    pub fn embedded(env: &Env) -> Result<Paths, PathsError> {
        let absolute = |v: &Option<OsString>| v.as_ref().map(PathBuf::from).filter(|p| p.is_absolute());
        let (run, data, private_run_dir) = match &env.warp_home {
            Some(home) => {
                let mut home = PathBuf::from(home);
                if home.is_relative() {
                    let cwd =
                        env.cwd.clone().ok_or_else(|| PathsError::NoCwd(io::Error::from(io::ErrorKind::NotFound)))?;
                    home = cwd.join(home);
                }
                (home.clone(), home, false)
            }
            None => {
                let run = match absolute(&env.xdg_runtime_dir) {
                    Some(dir) => dir.join("warpspeed"),
                    None => PathBuf::from(format!("/tmp/warpspeed-{}", env.uid)),
                };
                let data = match (absolute(&env.xdg_data_home), absolute(&env.home)) {
                    (Some(dir), _) => dir.join("warpspeed"),
                    (None, Some(home)) => home.join(".local/share/warpspeed"),
                    (None, None) => return Err(PathsError::NoHome(env.uid)),
                };
                (run, data, true)
            }
        };
        let paths = Paths {
            mode: Mode::Embedded,
            socket: run.join("warpd.sock"),
            broker_socket: run.join("broker.sock"),
            lock: run.join("warpd.lock"),
            socket_dir: run,
            store: data.join("store"),
            log: Some(data.join("warpd.log")),
            data_dir: data,
            private_run_dir,
        };
        paths.check_socket_lengths()?;
        Ok(paths)
    }

    fn check_socket_lengths(&self) -> Result<(), PathsError> {
        for path in [&self.socket, &self.broker_socket] {
            let len = path.as_os_str().len();
            if len > MAX_SOCKET_PATH {
                return Err(PathsError::SocketPathTooLong { path: path.clone(), len });
            }
        }
        Ok(())
    }

    /// Creates the socket directory (mode 0700 for a per-user daemon, 0755
    /// for the system one) and, for the per-user default under `/tmp` or
    /// `$XDG_RUNTIME_DIR`, checks that it belongs to `uid` and no one else
    /// can write to it.
    pub fn prepare_socket_dir(&self, uid: u32) -> Result<(), PathsError> {
        let mode = match self.mode {
            Mode::Embedded => 0o700,
            Mode::System => 0o755,
        };
        create_dir(&self.socket_dir, mode)?;
        if self.private_run_dir {
            check_private(&self.socket_dir, uid)?;
        }
        Ok(())
    }

    /// Creates the data directory (store and log), mode 0700.
    pub fn prepare_data_dir(&self) -> Result<(), PathsError> {
        create_dir(&self.data_dir, 0o700)
    }
}

/// `mkdir -p`, with `mode` for the directories it creates.
fn create_dir(path: &Path, mode: u32) -> Result<(), PathsError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .map_err(|source| PathsError::CreateDir { path: path.to_owned(), source })
}

fn check_private(path: &Path, uid: u32) -> Result<(), PathsError> {
    let meta = fs::symlink_metadata(path).map_err(|source| PathsError::CreateDir { path: path.to_owned(), source })?;
    if !meta.is_dir() || meta.uid() != uid {
        return Err(PathsError::NotOurs { path: path.to_owned(), uid, owner: meta.uid() });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(PathsError::Insecure { path: path.to_owned(), mode });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Env {
        Env {
            warp_home: None,
            xdg_runtime_dir: None,
            xdg_data_home: None,
            home: Some("/home/ann".into()),
            uid: 1000,
            cwd: Some("/work".into()),
        }
    }

    #[test]
    fn warp_home_holds_everything() {
        let p = Paths::embedded(&Env { warp_home: Some("/t/w".into()), ..env() }).unwrap();
        assert_eq!(p.socket, Path::new("/t/w/warpd.sock"));
        assert_eq!(p.broker_socket, Path::new("/t/w/broker.sock"));
        assert_eq!(p.lock, Path::new("/t/w/warpd.lock"));
        assert_eq!(p.store, Path::new("/t/w/store"));
        assert_eq!(p.log.as_deref(), Some(Path::new("/t/w/warpd.log")));
        assert!(!p.private_run_dir);
    }

    #[test]
    fn relative_warp_home_is_taken_from_cwd() {
        let p = Paths::embedded(&Env { warp_home: Some("w".into()), ..env() }).unwrap();
        assert_eq!(p.socket, Path::new("/work/w/warpd.sock"));
    }

    #[test]
    fn warp_home_wins_over_xdg() {
        let p = Paths::embedded(&Env {
            warp_home: Some("/t/w".into()),
            xdg_runtime_dir: Some("/run/user/1000".into()),
            xdg_data_home: Some("/d".into()),
            ..env()
        })
        .unwrap();
        assert_eq!(p.socket_dir, Path::new("/t/w"));
        assert_eq!(p.data_dir, Path::new("/t/w"));
    }

    #[test]
    fn xdg_dirs_when_set() {
        let p = Paths::embedded(&Env {
            xdg_runtime_dir: Some("/run/user/1000".into()),
            xdg_data_home: Some("/d".into()),
            ..env()
        })
        .unwrap();
        assert_eq!(p.socket, Path::new("/run/user/1000/warpspeed/warpd.sock"));
        assert_eq!(p.store, Path::new("/d/warpspeed/store"));
        assert_eq!(p.log.as_deref(), Some(Path::new("/d/warpspeed/warpd.log")));
        assert!(p.private_run_dir);
    }

    #[test]
    fn fallbacks_without_xdg() {
        let p = Paths::embedded(&env()).unwrap();
        assert_eq!(p.socket, Path::new("/tmp/warpspeed-1000/warpd.sock"));
        assert_eq!(p.lock, Path::new("/tmp/warpspeed-1000/warpd.lock"));
        assert_eq!(p.store, Path::new("/home/ann/.local/share/warpspeed/store"));
    }

    #[test]
    fn relative_xdg_values_are_ignored() {
        let p =
            Paths::embedded(&Env { xdg_runtime_dir: Some("run".into()), xdg_data_home: Some("data".into()), ..env() })
                .unwrap();
        assert_eq!(p.socket_dir, Path::new("/tmp/warpspeed-1000"));
        assert_eq!(p.data_dir, Path::new("/home/ann/.local/share/warpspeed"));
    }

    #[test]
    fn no_home_is_an_error() {
        let e = Paths::embedded(&Env { home: None, ..env() }).unwrap_err();
        assert!(matches!(e, PathsError::NoHome(1000)));
    }

    #[test]
    fn long_socket_paths_are_refused() {
        let long = format!("/{}", "x".repeat(120));
        let e = Paths::embedded(&Env { warp_home: Some(long.into()), ..env() }).unwrap_err();
        assert!(matches!(e, PathsError::SocketPathTooLong { .. }));
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn system_paths() {
        let p = Paths::system();
        assert_eq!(p.socket, Path::new("/run/warpspeed/warpd.sock"));
        assert_eq!(p.mode.as_str(), "system");
        assert!(p.log.is_none());
    }

    #[test]
    fn private_dir_is_created_and_checked() {
        let base = std::env::temp_dir().join(format!("warp-common-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let run = base.join("run");
        let mut p = Paths::embedded(&Env { warp_home: Some(run.clone().into()), ..env() }).unwrap();
        p.private_run_dir = true;
        let uid = nix::unistd::getuid().as_raw();
        p.prepare_socket_dir(uid).unwrap();
        let mode = fs::metadata(&run).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        fs::set_permissions(&run, fs::Permissions::from_mode(0o777)).unwrap();
        assert!(matches!(p.prepare_socket_dir(uid), Err(PathsError::Insecure { .. })));
        assert!(matches!(p.prepare_socket_dir(uid + 1), Err(PathsError::NotOurs { .. })));
        fs::remove_dir_all(&base).unwrap();
    }
}
