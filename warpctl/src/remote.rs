//! `--remote HOST:PORT`: which daemon, and the files that authenticate
//! both ends (flags, then environment, then `remote.toml`).

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A remote daemon and this client's credentials for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Remote {
    /// As given: `HOST:PORT`.
    pub addr: String,
    /// The name the daemon's certificate must be valid for.
    pub host: String,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// `remote.toml`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct File {
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    ca: Option<PathBuf>,
}

/// The commands a remote daemon serves (the others need this machine).
pub fn serves(command: &crate::cli::Command) -> Result<(), &'static str> {
    use crate::cli::Command as C;
    match command {
        C::Ls { .. } | C::Ps { .. } | C::Show { .. } | C::Events { .. } | C::Export { .. } | C::Import { .. } => Ok(()),
        C::Rm { .. } | C::Replay { .. } | C::Pin { .. } | C::Unpin { .. } => Ok(()),
        C::Record { .. } => Err("record runs the program on this machine: it takes no --remote"),
        C::Arms { .. } | C::Captures { .. } => Ok(()),
        C::Exec { .. } | C::Arm { .. } | C::Disarm { .. } | C::CrashHook { .. } => {
            Err("captures are armed and run on the program's machine: this command takes no --remote")
        }
        C::Pull { .. } => Err("pull names the daemon it copies from itself: it takes no --remote"),
        C::Gc { .. } => Err("gc is for the daemon's own machine: it takes no --remote"),
        C::Doctor { .. } => Err("doctor checks this machine: it takes no --remote"),
        C::Daemon { .. } => Err("daemon controls this machine's private daemon: it takes no --remote"),
        C::Completions { .. } | C::Man { .. } | C::Schema { .. } => {
            Err("completions, man and schema need no daemon: they take no --remote")
        }
    }
}

/// Splits `HOST:PORT` (`[v6]:PORT` for an IPv6 address).
fn host_of(addr: &str) -> Result<String, String> {
    let bad = || format!("--remote {addr:?}: expected HOST:PORT (e.g. build1.example.org:7443 or [::1]:7443)");
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    port.parse::<u16>().map_err(|_| bad())?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if host.is_empty() || host.contains(['/', ' ']) {
        return Err(bad());
    }
    Ok(host.to_string())
}

/// `$XDG_CONFIG_HOME/warpspeed/remote.toml` or `~/.config/...`.
fn config_file() -> Option<PathBuf> {
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    let base = var("XDG_CONFIG_HOME").or_else(|| var("HOME").map(|h| h.join(".config")))?;
    Some(base.join("warpspeed").join("remote.toml"))
}

fn read_file(path: &Path) -> Result<File, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(File::default()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let file: File = toml::from_str(&text).map_err(|e| {
        let at = e.span().map_or(0, |s| s.start).min(text.len());
        let line = text[..at].matches('\n').count() + 1;
        format!("{}:{line}: {}", path.display(), e.message().trim_end())
    })?;
    let dir = path.parent().unwrap_or(Path::new("."));
    Ok(File {
        cert: file.cert.map(|p| dir.join(p)),
        key: file.key.map(|p| dir.join(p)),
        ca: file.ca.map(|p| dir.join(p)),
    })
}

/// The remote daemon at `addr`, with the files from the flags given, the
/// environment or the configuration file, in that order.
pub fn settings(
    addr: &str,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    ca: Option<PathBuf>,
) -> Result<Remote, String> {
    let host = host_of(addr)?;
    let env = |name| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    let (cert, key, ca) = (
        cert.or_else(|| env("WARP_REMOTE_CERT")),
        key.or_else(|| env("WARP_REMOTE_KEY")),
        ca.or_else(|| env("WARP_REMOTE_CA")),
    );
    let file_path = config_file();
    let file = match (&cert, &key, &ca, &file_path) {
        (Some(_), Some(_), Some(_), _) | (_, _, _, None) => File::default(),
        (_, _, _, Some(path)) => read_file(path)?,
    };
    let from = file_path.as_ref().map_or("remote.toml".to_string(), |p| p.display().to_string());
    let need = |v: Option<PathBuf>, flag: &str, var: &str, key: &str| {
        v.ok_or_else(|| format!("--remote needs {flag} FILE (or {var}, or {key} = \"FILE\" in {from})"))
    };
    Ok(Remote {
        addr: addr.to_string(),
        host,
        cert: need(cert.or(file.cert), "--cert", "WARP_REMOTE_CERT", "cert")?,
        key: need(key.or(file.key), "--key", "WARP_REMOTE_KEY", "key")?,
        ca: need(ca.or(file.ca), "--ca", "WARP_REMOTE_CA", "ca")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_host_and_port() {
        assert_eq!(host_of("localhost:7443").unwrap(), "localhost");
        assert_eq!(host_of("[::1]:7443").unwrap(), "::1");
        assert_eq!(host_of("10.0.0.1:1").unwrap(), "10.0.0.1");
        for bad in ["localhost", "host:port", ":7443", "h:99999", "a/b:1"] {
            assert!(host_of(bad).unwrap_err().contains("expected HOST:PORT"), "{bad}");
        }
    }

    #[test]
    fn the_file_gives_what_flags_and_environment_do_not() {
        let dir = std::env::temp_dir().join(format!("warpctl-remote-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("remote.toml");
        std::fs::write(&path, "cert = \"me.pem\"\nkey = \"/k/me.key\"\nca = \"ca.pem\"\n").unwrap();
        let f = read_file(&path).unwrap();
        assert_eq!(f.cert.unwrap(), dir.join("me.pem"));
        assert_eq!(f.key.unwrap(), Path::new("/k/me.key"));
        std::fs::write(&path, "cert = \"a\"\ncerts = \"b\"\n").unwrap();
        let e = read_file(&path).err().unwrap();
        assert!(e.contains("remote.toml:2: ") && e.contains("unknown field `certs`"), "{e}");
        assert!(read_file(&dir.join("absent.toml")).is_ok(), "no file: nothing from it");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
