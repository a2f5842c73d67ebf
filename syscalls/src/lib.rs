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

/// strace's classes of calls (`-e trace=%file` and the rest), from the
/// table: %file takes a path, %desc a descriptor; the others are named.
pub const CLASSES: &[&str] = &["file", "desc", "network", "net", "memory", "signal", "process", "ipc", "clock"];

/// Whether call `name` is in class `class` (without its `%`); None for a
/// class strace does not have.
pub fn in_class(name: &str, class: &str) -> Option<bool> {
    let desc = x86_64::TABLE.iter().find(|d| d.name == name);
    let has = |a: Arg| desc.is_some_and(|d| d.args.contains(&a));
    Some(match class {
        // memfd_create's "path" is a name, not a file's.
        "file" => has(Arg::Path) && name != "memfd_create",
        "desc" => {
            has(Arg::Fd)
                || has(Arg::DirFd)
                || matches!(
                    name,
                    "pipe"
                        | "pipe2"
                        | "eventfd"
                        | "eventfd2"
                        | "epoll_create"
                        | "epoll_create1"
                        | "memfd_create"
                        | "timerfd_create"
                        | "signalfd"
                        | "signalfd4"
                        | "inotify_init"
                        | "inotify_init1"
                        | "select"
                        | "pselect6"
                        | "poll"
                        | "ppoll"
                )
        }
        "network" | "net" => matches!(
            name,
            "socket"
                | "connect"
                | "accept"
                | "accept4"
                | "sendto"
                | "recvfrom"
                | "sendmsg"
                | "recvmsg"
                | "sendmmsg"
                | "recvmmsg"
                | "shutdown"
                | "bind"
                | "listen"
                | "getsockname"
                | "getpeername"
                | "socketpair"
                | "setsockopt"
                | "getsockopt"
        ),
        "memory" => matches!(
            name,
            "mmap"
                | "mprotect"
                | "munmap"
                | "brk"
                | "mremap"
                | "msync"
                | "mincore"
                | "madvise"
                | "mlock"
                | "munlock"
                | "mlockall"
                | "munlockall"
                | "mlock2"
                | "mbind"
                | "get_mempolicy"
                | "set_mempolicy"
                | "remap_file_pages"
                | "pkey_mprotect"
                | "membarrier"
        ),
        "signal" => {
            name.starts_with("rt_sig")
                || matches!(
                    name,
                    "kill"
                        | "tkill"
                        | "tgkill"
                        | "sigaltstack"
                        | "signalfd"
                        | "signalfd4"
                        | "pause"
                        | "pidfd_send_signal"
                )
        }
        "process" => matches!(
            name,
            "clone"
                | "clone3"
                | "fork"
                | "vfork"
                | "execve"
                | "execveat"
                | "exit"
                | "exit_group"
                | "wait4"
                | "waitid"
                | "kill"
                | "tkill"
                | "tgkill"
                | "pidfd_open"
                | "pidfd_send_signal"
                | "rt_sigqueueinfo"
                | "rt_tgsigqueueinfo"
        ),
        "ipc" => matches!(
            name,
            "shmget"
                | "shmat"
                | "shmdt"
                | "shmctl"
                | "semget"
                | "semop"
                | "semctl"
                | "msgget"
                | "msgsnd"
                | "msgrcv"
                | "msgctl"
        ),
        "clock" => matches!(
            name,
            "clock_gettime"
                | "clock_settime"
                | "clock_getres"
                | "clock_nanosleep"
                | "clock_adjtime"
                | "gettimeofday"
                | "settimeofday"
                | "time"
                | "adjtimex"
                | "nanosleep"
                | "times"
        ),
        _ => return None,
    })
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_as_strace_has_them() {
        for (name, class, is) in [
            ("openat", "file", true),
            ("newfstatat", "file", true),
            ("memfd_create", "file", false),
            ("read", "file", false),
            ("read", "desc", true),
            ("pipe2", "desc", true),
            ("sendto", "network", true),
            ("sendto", "net", true),
            ("mmap", "memory", true),
            ("rt_sigaction", "signal", true),
            ("execve", "process", true),
            ("clock_gettime", "clock", true),
            ("getpid", "file", false),
        ] {
            assert_eq!(in_class(name, class), Some(is), "{name} in %{class}");
        }
        assert_eq!(in_class("read", "bogus"), None);
        for c in CLASSES {
            assert!(in_class("read", c).is_some());
        }
    }
}
