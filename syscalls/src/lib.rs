//! The one table of syscall descriptions, shared by warpd (dispatch,
//! marshalling, signals, the event printer, replay's checks) and the broker
//! (what it may perform, which calls take iovecs, which send bytes to a
//! file), so that none of them keeps a list of its own.
//!
//! A guest architecture has its own numbers: `x86_64` is the Linux x86_64
//! table, `aarch64` the Linux arm64 one (the asm-generic numbers, each
//! call described once, in the x86_64 table, with arm64's layouts where
//! they differ); the root re-exports the table of the architecture warpd
//! runs guests of (the host's).

pub mod aarch64;
pub mod names_aarch64;
pub mod names_x86_64;
pub mod names_xnu;
pub mod ring;
pub mod x86_64;
pub mod xnu;

pub use x86_64::*;

/// The name Linux gives syscall `nr`, if it has one.
pub fn name(nr: u64) -> Option<&'static str> {
    names_x86_64::name(nr)
}

/// Entries of a process's `/proc` directory that are the same for the
/// broker and the program (namespaces, mounts, identity files of the
/// session), or about the files they share: warpd passes their paths
/// through, and the broker lets the program open them however the path
/// got there; the rest of the broker's `/proc` directory describes the
/// broker, not the program.
pub const PROC_SHARED: &[&str] = &[
    "cwd",
    "root",
    "mounts",
    "mountinfo",
    "mountstats",
    "cgroup",
    "ns",
    "net",
    "uid_map",
    "gid_map",
    "setgroups",
    "projid_map",
    "loginuid",
    "sessionid",
    "attr",
    "limits",
    "personality",
    "oom_score",
    "oom_score_adj",
    "oom_adj",
    "cpuset",
    "autogroup",
];
