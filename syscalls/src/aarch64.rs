//! The Linux arm64 syscall table: the asm-generic numbers
//! (`names_aarch64`), each call described by its x86_64 entry (one
//! description of what a call does, how its arguments are checked and
//! marshalled), with arm64's own layouts where they differ: `struct stat`
//! is 128 bytes (asm-generic), `struct epoll_event` 16 (not packed). The
//! legacy calls x86_64 keeps (open, stat, fork, poll, pipe, dup2...) do not
//! exist on arm64; `clone` takes (flags, stack, parent_tid, tls,
//! child_tid), the tls before the child's tid, which its emulation reads.

use std::sync::OnceLock;

use crate::names_aarch64;
use crate::x86_64::{self, Arg, Desc, Len};

const STAT: u64 = 128;
const EPOLL_EVENT: u64 = 16;

static NEWFSTATAT: &[Arg] = &[Arg::DirFd, Arg::Path, Arg::Out(Len::Fixed(STAT)), Arg::Int];
static FSTAT: &[Arg] = &[Arg::Fd, Arg::Out(Len::Fixed(STAT))];
static EPOLL_CTL: &[Arg] = &[Arg::Fd, Arg::Int, Arg::Fd, Arg::In(Len::Fixed(EPOLL_EVENT))];
static EPOLL_PWAIT: &[Arg] =
    &[Arg::Fd, Arg::Out(Len::ArgTimes(2, EPOLL_EVENT)), Arg::Int, Arg::Int, Arg::In(Len::Fixed(8)), Arg::Int];

/// arm64's argument layout for the call `name`, where it is not x86_64's.
fn arm64_args(name: &str) -> Option<&'static [Arg]> {
    Some(match name {
        "newfstatat" => NEWFSTATAT,
        "fstat" => FSTAT,
        "epoll_ctl" => EPOLL_CTL,
        "epoll_pwait" => EPOLL_PWAIT,
        _ => return None,
    })
}

/// The table, sorted by arm64 number.
pub fn table() -> &'static [Desc] {
    static TABLE: OnceLock<Vec<Desc>> = OnceLock::new();
    TABLE.get_or_init(|| {
        names_aarch64::NAMES
            .iter()
            .enumerate()
            .filter(|(_, n)| !n.is_empty())
            .filter_map(|(nr, &name)| {
                let x86 = x86_64::TABLE.iter().find(|d| d.name == name)?;
                let mut d = *x86;
                d.nr = nr as u64;
                if let Some(args) = arm64_args(name) {
                    d.args = args;
                }
                Some(d)
            })
            .collect()
    })
}

/// The call an arm64 `svc #0` with `x8 = register` makes: Linux takes
/// the low 32 bits, as on x86_64.
pub fn number(register: u64) -> u64 {
    register as u32 as u64
}

pub fn lookup(nr: u64) -> Option<&'static Desc> {
    let t = table();
    t.binary_search_by_key(&nr, |d| d.nr).ok().map(|i| &t[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generic_numbers_and_nothing_legacy() {
        let nr = |name: &str| table().iter().find(|d| d.name == name).map(|d| d.nr);
        assert_eq!(nr("read"), Some(63));
        assert_eq!(nr("write"), Some(64));
        assert_eq!(nr("openat"), Some(56));
        assert_eq!(nr("exit_group"), Some(94));
        assert_eq!(nr("rt_sigreturn"), Some(139));
        assert_eq!(nr("mmap"), Some(222));
        assert_eq!(nr("clone3"), Some(435));
        for legacy in
            ["open", "stat", "lstat", "fork", "vfork", "poll", "select", "pipe", "dup2", "access", "epoll_wait"]
        {
            assert_eq!(nr(legacy), None, "{legacy} does not exist on arm64");
        }
        for w in table().windows(2) {
            assert!(w[0].nr < w[1].nr);
        }
        for d in table() {
            assert_eq!(names_aarch64::name(d.nr), Some(d.name));
        }
    }

    #[test]
    fn every_described_call_arm64_has_is_in_its_table() {
        for d in x86_64::TABLE {
            if let Some(nr) = names_aarch64::NAMES.iter().position(|&n| n == d.name) {
                let a = lookup(nr as u64).unwrap_or_else(|| panic!("{}", d.name));
                assert_eq!(
                    (a.class, a.restartable, a.sends_bytes, a.waits),
                    (d.class, d.restartable, d.sends_bytes, d.waits)
                );
            }
        }
    }

    #[test]
    fn arm64_layouts_where_they_differ() {
        assert_eq!(lookup(80).unwrap().args[1], Arg::Out(Len::Fixed(128)), "fstat: asm-generic struct stat");
        assert_eq!(lookup(79).unwrap().args[2], Arg::Out(Len::Fixed(128)));
        assert_eq!(lookup(22).unwrap().args[1], Arg::Out(Len::ArgTimes(2, 16)), "epoll_pwait: unpacked events");
        assert_eq!(lookup(21).unwrap().args[3], Arg::In(Len::Fixed(16)));
        assert_eq!(lookup(63).unwrap().args, x86_64::lookup(0).unwrap().args, "read as on x86_64");
        assert_eq!(number((1 << 32) | 172), 172, "getpid");
        assert!(lookup(244).is_none() && lookup(100000).is_none());
    }
}
