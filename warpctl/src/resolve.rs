//! Finding PROGRAM as a shell does (POSIX "Command Search and Execution").
//!
//! A name with a `/` is used as it is; any other name is looked up in each
//! `$PATH` entry in turn (an empty entry is the current directory) and the
//! first executable regular file wins. A match that is not executable is
//! remembered: if nothing better turns up, the answer is "Permission
//! denied" (126), as in bash, rather than "command not found" (127).

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::unistd::{access, AccessFlags};

/// `$PATH` when it is unset (bash's built-in default, shortened).
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Why PROGRAM cannot be run. The message follows the shell's wording.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// No `$PATH` entry holds it.
    #[error("{0}: command not found")]
    CommandNotFound(String),
    /// A path with a `/` names nothing.
    #[error("{0}: No such file or directory")]
    NoSuchFile(String),
    /// It names a directory.
    #[error("{0}: Is a directory")]
    IsDirectory(String),
    /// It exists but the caller may not execute it.
    #[error("{0}: Permission denied")]
    NotExecutable(String),
    /// It cannot be looked at (a path component is not a directory, ...).
    #[error("{name}: {source}")]
    Inaccessible { name: String, source: io::Error },
}

impl ResolveError {
    /// The exit status a shell gives: 127 not found, 126 found but unusable.
    pub fn exit_code(&self) -> u8 {
        match self {
            ResolveError::CommandNotFound(_) | ResolveError::NoSuchFile(_) => 127,
            ResolveError::IsDirectory(_) | ResolveError::NotExecutable(_) | ResolveError::Inaccessible { .. } => 126,
        }
    }
}

fn is_executable(path: &Path) -> bool {
    access(path, AccessFlags::X_OK).is_ok()
}

/// Drops `.` components (`/home/ann/./prog` -> `/home/ann/prog`); `..` stays,
/// since it means something else after a symlink.
fn tidy(path: &Path) -> PathBuf {
    path.components().collect()
}

/// The executable `program` names, given `$PATH` (`None`: unset) and the
/// current directory; relative results are made absolute against `cwd`.
pub fn resolve(program: &OsStr, path_var: Option<&OsStr>, cwd: &Path) -> Result<PathBuf, ResolveError> {
    let name = program.to_string_lossy().into_owned();
    if program.is_empty() {
        return Err(ResolveError::CommandNotFound(name));
    }
    if program.as_bytes().contains(&b'/') {
        let path = cwd.join(program);
        return match std::fs::metadata(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(ResolveError::NoSuchFile(name)),
            Err(source) => Err(ResolveError::Inaccessible { name, source }),
            Ok(meta) if meta.is_dir() => Err(ResolveError::IsDirectory(name)),
            Ok(_) if !is_executable(&path) => Err(ResolveError::NotExecutable(name)),
            Ok(_) => Ok(tidy(&path)),
        };
    }
    let path_var: OsString = path_var.map(OsStr::to_owned).unwrap_or_else(|| DEFAULT_PATH.into());
    let mut not_executable = false;
    for dir in path_var.as_bytes().split(|&b| b == b':') {
        let dir = if dir.is_empty() { Path::new(".") } else { Path::new(OsStr::from_bytes(dir)) };
        let candidate = cwd.join(dir).join(program);
        match std::fs::metadata(&candidate) {
            Ok(meta) if meta.is_file() => {
                if is_executable(&candidate) {
                    return Ok(tidy(&candidate));
                }
                not_executable = true;
            }
            _ => {}
        }
    }
    if not_executable {
        Err(ResolveError::NotExecutable(name))
    } else {
        Err(ResolveError::CommandNotFound(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    /// A scratch directory with `bin1/` and `bin2/`, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let dir = std::env::temp_dir().join(format!("warpctl-resolve-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(dir.join("bin1")).unwrap();
            fs::create_dir_all(dir.join("bin2")).unwrap();
            Scratch(dir)
        }
        fn file(&self, rel: &str, mode: u32) -> PathBuf {
            let p = self.0.join(rel);
            fs::write(&p, "#!/bin/sh\n").unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
            p
        }
        fn path_var(&self) -> OsString {
            format!("{}:{}", self.0.join("bin1").display(), self.0.join("bin2").display()).into()
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn run(s: &Scratch, prog: &str) -> Result<PathBuf, ResolveError> {
        resolve(OsStr::new(prog), Some(&s.path_var()), &s.0)
    }

    #[test]
    fn first_executable_on_path_wins() {
        let s = Scratch::new("first");
        s.file("bin1/tool", 0o644);
        let exe = s.file("bin2/tool", 0o755);
        assert_eq!(run(&s, "tool").unwrap(), exe);
        let first = s.file("bin1/tool", 0o755);
        assert_eq!(run(&s, "tool").unwrap(), first);
    }

    #[test]
    fn missing_command_is_127() {
        let s = Scratch::new("missing");
        let e = run(&s, "nosuch").unwrap_err();
        assert_eq!(e.exit_code(), 127);
        assert_eq!(e.to_string(), "nosuch: command not found");
    }

    #[test]
    fn only_non_executable_matches_is_126() {
        let s = Scratch::new("noexec");
        s.file("bin2/tool", 0o644);
        let e = run(&s, "tool").unwrap_err();
        assert_eq!(e.exit_code(), 126);
        assert!(matches!(e, ResolveError::NotExecutable(_)));
    }

    #[test]
    fn directories_on_path_are_skipped() {
        let s = Scratch::new("dirskip");
        fs::create_dir(s.0.join("bin1/tool")).unwrap();
        let exe = s.file("bin2/tool", 0o755);
        assert_eq!(run(&s, "tool").unwrap(), exe);
    }

    #[test]
    fn slash_paths_are_used_as_given() {
        let s = Scratch::new("slash");
        let exe = s.file("prog", 0o755);
        assert_eq!(run(&s, "./prog").unwrap(), exe);
        assert_eq!(run(&s, "./prog").unwrap().to_str(), exe.to_str());
        assert_eq!(run(&s, exe.to_str().unwrap()).unwrap(), exe);
        // Not searched on PATH even though bin1/prog would match.
        s.file("bin1/other", 0o755);
        assert_eq!(run(&s, "./other").unwrap_err().exit_code(), 127);
    }

    #[test]
    fn slash_path_errors() {
        let s = Scratch::new("slasherr");
        s.file("plain", 0o644);
        assert!(matches!(run(&s, "./plain"), Err(ResolveError::NotExecutable(_))));
        assert!(matches!(run(&s, "./bin1"), Err(ResolveError::IsDirectory(_))));
        assert!(matches!(run(&s, "./none"), Err(ResolveError::NoSuchFile(_))));
        assert_eq!(run(&s, "./plain/x").unwrap_err().exit_code(), 126);
    }

    #[test]
    fn empty_path_entry_is_the_current_directory() {
        let s = Scratch::new("empty");
        let exe = s.file("here", 0o755);
        let path_var = OsString::from(format!("{}:", s.0.join("bin1").display()));
        let found = resolve(OsStr::new("here"), Some(&path_var), &s.0).unwrap();
        assert_eq!(found.to_str(), exe.to_str());
    }

    #[test]
    fn empty_program_is_not_found() {
        let s = Scratch::new("emptyprog");
        assert_eq!(run(&s, "").unwrap_err().exit_code(), 127);
    }
}
