//! warpd's configuration file: TOML, named by `--config` (the system
//! daemon reads `/etc/warpspeed/warpd.toml` when it exists).
//!
//! ```toml
//! [remote]                      # remote callers: gRPC over TLS on TCP
//! listen = "0.0.0.0:7443"
//! cert = "server.pem"           # this daemon's certificate chain (PEM)
//! key = "server.key"            # its private key (PEM)
//! client_ca = "clients-ca.pem"  # the CA that signs client certificates
//!
//! [[remote.client]]             # a certificate whose DNS name is "alice"
//! name = "alice"                # acts as uid 1000: sees its sessions only
//! uid = 1000
//!
//! [[remote.client]]
//! name = "fleet-ops"            # sees every user's sessions
//! role = "operator"
//!
//! [retention]                   # the daemon removes recordings past these
//! max_size = "20G"              # the recordings' data, all together
//! max_age = "30d"               # since a recording ended
//! ```
//!
//! Relative paths are taken from the file's directory. A mistake is
//! refused with the file, line, column and field, before anything starts.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

/// Where the system daemon looks when no `--config` is given.
pub const SYSTEM_CONFIG: &str = "/etc/warpspeed/warpd.toml";

/// What the file says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileConfig {
    pub remote: Option<Remote>,
    pub retention: Retention,
}

/// `[retention]`: what the daemon keeps. The oldest complete or incomplete
/// recordings go first; never one being recorded, never a pinned one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    /// The recordings' data together (each one's trace bytes), at most.
    pub max_bytes: Option<u64>,
    /// How long after it ended a recording is kept.
    pub max_age: Option<std::time::Duration>,
}

/// `[remote]`: who may call over the network, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Remote {
    pub listen: SocketAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: PathBuf,
    pub clients: Vec<Client>,
}

/// One `[[remote.client]]`: a certificate's DNS name and what it may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Client {
    pub name: String,
    pub access: Access,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Acts as this local uid: sees, replays, exports and removes its
    /// sessions only, as that user would on the unix socket.
    Uid(u32),
    /// Sees every user's sessions (as root does locally).
    Operator,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{}:{line}:{column}: {message}", path.display())]
    Invalid { path: PathBuf, line: usize, column: usize, message: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    remote: Option<Spanned<RawRemote>>,
    retention: Option<RawRetention>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetention {
    max_size: Option<Spanned<String>>,
    max_age: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRemote {
    listen: Spanned<String>,
    cert: PathBuf,
    key: PathBuf,
    client_ca: PathBuf,
    #[serde(default)]
    client: Vec<Spanned<RawClient>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClient {
    name: Spanned<String>,
    uid: Option<u32>,
    role: Option<Spanned<String>>,
}

/// Reads and checks the file at `path`.
pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
    parse(&text, path)
}

/// Checks `text`, the contents of `path` (for messages and relative paths).
pub fn parse(text: &str, path: &Path) -> Result<FileConfig, ConfigError> {
    let invalid = |at: usize, message: String| {
        let (line, column) = line_and_column(text, at);
        ConfigError::Invalid { path: path.to_owned(), line, column, message }
    };
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let at = e.span().map_or(0, |s| s.start);
        let message = e.message().trim_end().to_string();
        match field_at(text, at) {
            // "unknown field `x`" names it already.
            Some(field) if !message.contains(&format!("`{}`", field.rsplit('.').next().unwrap_or(&field))) => {
                invalid(at, format!("{field}: {message}"))
            }
            _ => invalid(at, message),
        }
    })?;
    let mut retention = Retention::default();
    if let Some(r) = raw.retention {
        if let Some(size) = r.max_size {
            retention.max_bytes = warp_common::units::parse_size(size.get_ref())
                .map_err(|e| invalid(size.span().start, format!("retention.max_size: {e}")))?;
        }
        if let Some(age) = r.max_age {
            retention.max_age = warp_common::units::parse_duration(age.get_ref())
                .map_err(|e| invalid(age.span().start, format!("retention.max_age: {e}")))?;
        }
    }
    let Some(remote) = raw.remote else { return Ok(FileConfig { remote: None, retention }) };
    let remote_at = remote.span().start;
    let remote = remote.into_inner();
    let listen = remote.listen.get_ref().parse::<SocketAddr>().map_err(|_| {
        invalid(
            remote.listen.span().start,
            format!(
                "remote.listen: {:?} is not an address and port (e.g. \"127.0.0.1:7443\" or \"[::]:7443\")",
                remote.listen.get_ref()
            ),
        )
    })?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut clients: Vec<Client> = Vec::new();
    for client in remote.client {
        let at = client.span().start;
        let client = client.into_inner();
        let name = client.name.get_ref().clone();
        let name_at = client.name.span().start;
        if rustls_pki_types::DnsName::try_from(name.as_str()).is_err() {
            return Err(invalid(
                name_at,
                format!("remote.client.name: {name:?} is not a DNS name (a client certificate's subjectAltName)"),
            ));
        }
        if clients.iter().any(|c| c.name.eq_ignore_ascii_case(&name)) {
            return Err(invalid(name_at, format!("remote.client.name: {name:?} is named twice")));
        }
        let access = match (client.uid, client.role) {
            (Some(uid), None) => Access::Uid(uid),
            (None, Some(role)) if role.get_ref() == "operator" => Access::Operator,
            (None, Some(role)) => {
                return Err(invalid(
                    role.span().start,
                    format!("remote.client.role: {:?} is not a role (the one role is \"operator\")", role.get_ref()),
                ))
            }
            (Some(_), Some(_)) => {
                return Err(invalid(at, format!("remote.client {name:?}: give either uid or role, not both")))
            }
            (None, None) => {
                return Err(invalid(
                    at,
                    format!(
                    "remote.client {name:?}: say what it may do: uid = N (that user's sessions) or role = \"operator\""
                ),
                ))
            }
        };
        clients.push(Client { name, access });
    }
    if clients.is_empty() {
        return Err(invalid(
            remote_at,
            "remote: no [[remote.client]]: no certificate could do anything, so nothing would listen".into(),
        ));
    }
    Ok(FileConfig {
        retention,
        remote: Some(Remote {
            listen,
            cert: dir.join(remote.cert),
            key: dir.join(remote.key),
            client_ca: dir.join(remote.client_ca),
            clients,
        }),
    })
}

/// 1-based line and column of byte `at` in `text`.
fn line_and_column(text: &str, at: usize) -> (usize, usize) {
    let at = at.min(text.len());
    let before = &text.as_bytes()[..at];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let start = before.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
    let column = String::from_utf8_lossy(&before[start..]).chars().count() + 1;
    (line, column)
}

/// The dotted name of the field whose line holds byte `at` (`remote.listen`),
/// for a message that names only the value's problem.
fn field_at(text: &str, at: usize) -> Option<String> {
    let at = at.min(text.len());
    let start = text[..at].rfind('\n').map_or(0, |p| p + 1);
    let line = text[start..].lines().next()?;
    let key = line.split_once('=')?.0.trim();
    if key.is_empty() || key.starts_with('[') || key.starts_with('#') {
        return None;
    }
    let table = text[..start].lines().rev().map(str::trim).find(|l| l.starts_with('['));
    let table = table.map(|t| t.trim_matches(|c| c == '[' || c == ']').trim());
    Some(match table {
        Some(t) if !t.is_empty() => format!("{t}.{key}"),
        _ => key.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[remote]
listen = "127.0.0.1:0"
cert = "server.pem"
key = "/abs/server.key"
client_ca = "ca.pem"

[[remote.client]]
name = "alice"
uid = 1000

[[remote.client]]
name = "ops.example.org"
role = "operator"
"#;

    fn refused(text: &str) -> String {
        match parse(text, Path::new("/etc/w/warpd.toml")) {
            Err(e) => e.to_string(),
            Ok(c) => panic!("accepted: {c:?}"),
        }
    }

    #[test]
    fn a_good_file_is_read_with_paths_from_its_directory() {
        let c = parse(GOOD, Path::new("/etc/w/warpd.toml")).unwrap();
        let r = c.remote.unwrap();
        assert_eq!(r.listen, "127.0.0.1:0".parse().unwrap());
        assert_eq!(r.cert, Path::new("/etc/w/server.pem"));
        assert_eq!(r.key, Path::new("/abs/server.key"));
        assert_eq!(r.client_ca, Path::new("/etc/w/ca.pem"));
        assert_eq!(
            r.clients,
            [
                Client { name: "alice".into(), access: Access::Uid(1000) },
                Client { name: "ops.example.org".into(), access: Access::Operator }
            ]
        );
        assert_eq!(parse("", Path::new("x")).unwrap(), FileConfig::default());
    }

    #[test]
    fn mistakes_are_refused_with_file_line_and_field() {
        let e = refused(&GOOD.replace("listen =", "lisen ="));
        assert!(e.starts_with("/etc/w/warpd.toml:3:1: unknown field `lisen`, expected one of"), "{e}");
        let e = refused(&GOOD.replace("\"127.0.0.1:0\"", "\"localhost\""));
        assert!(e.starts_with("/etc/w/warpd.toml:3:10: remote.listen: \"localhost\" is not an address"), "{e}");
        let e = refused(&GOOD.replace("uid = 1000", "uid = \"alice\""));
        assert!(e.starts_with("/etc/w/warpd.toml:10:7: remote.client.uid: "), "{e}");
        let e = refused(&GOOD.replace("uid = 1000", "uid = -1"));
        assert!(e.contains(":10:7: remote.client.uid: "), "{e}");
        let e = refused(&GOOD.replace("\"operator\"", "\"admin\""));
        assert!(e.contains(":14:8: remote.client.role: \"admin\" is not a role"), "{e}");
        let e = refused(&GOOD.replace("uid = 1000", "uid = 1000\nrole = \"operator\""));
        assert!(e.contains(":8:1: remote.client \"alice\": give either uid or role"), "{e}");
        let e = refused(&GOOD.replace("uid = 1000", ""));
        assert!(e.contains("remote.client \"alice\": say what it may do"), "{e}");
        let e = refused(&GOOD.replace("ops.example.org", "Alice"));
        assert!(e.contains(":13:8: remote.client.name: \"Alice\" is named twice"), "{e}");
        let e = refused(&GOOD.replace("\"alice\"", "\"not a name\""));
        assert!(e.contains(":9:8: remote.client.name: \"not a name\" is not a DNS name"), "{e}");
        let e = refused(&GOOD.replace("cert = \"server.pem\"\n", ""));
        assert!(e.contains("missing field `cert`"), "{e}");
        let only_remote = GOOD.split("[[remote.client]]").next().unwrap();
        let e = refused(only_remote);
        assert!(e.contains(":2:1: remote: no [[remote.client]]"), "{e}");
        let e = refused("[remote\n");
        assert!(e.starts_with("/etc/w/warpd.toml:1:"), "{e}");
        let e = refused("[fleet]\nstore = 1\n");
        assert!(e.contains("unknown field `fleet`"), "{e}");
        let e = refused("[retention]\nmax_size = \"lots\"\n");
        assert!(e.contains(":2:12: retention.max_size: \"lots\" is not a size"), "{e}");
        let e = refused("[retention]\nmax_age = \"1w\"\n");
        assert!(e.contains(":2:11: retention.max_age: \"1w\" is not a duration"), "{e}");
        let r = parse("[retention]\nmax_size = \"2G\"\nmax_age = \"30d\"\n", Path::new("x")).unwrap().retention;
        assert_eq!(r.max_bytes, Some(2 << 30));
        assert_eq!(r.max_age, Some(std::time::Duration::from_secs(30 * 86400)));
    }

    #[test]
    fn an_unreadable_file_says_which() {
        let e = load(Path::new("/nonexistent/warpd.toml")).unwrap_err().to_string();
        assert!(e.starts_with("cannot read the configuration /nonexistent/warpd.toml: "), "{e}");
    }
}
