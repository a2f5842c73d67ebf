//! Arguments by their names, as strace prints them: the access mode of
//! `access`, `arch_prctl`'s code, a resource limit, `AT_*` flags, `lseek`'s
//! whence, `fcntl`'s command, a clock, a signal and the `how` of a signal
//! mask, common `ioctl` requests, `madvise` advice, a socket's domain and
//! type. Values (Linux x86_64) are from the man pages and the uapi headers.

/// Argument `i` of syscall `nr` with value `v`, by name; None for an
/// argument this module does not name (the printer's default then).
pub fn argument(nr: u64, i: usize, v: u64) -> Option<String> {
    Some(match (nr, i) {
        (21, 1) | (269, 2) | (439, 2) => access_mode(v),
        (439, 3) => at_flags(v, &[(0x200, "AT_EACCESS"), (0x100, "AT_SYMLINK_NOFOLLOW"), (0x1000, "AT_EMPTY_PATH")]),
        (158, 0) => named(v, ARCH_CODES)?,
        // Addresses the table counts as integers: arch_prctl's, and the
        // thread-id and robust-list pointers.
        (158, 1) | (218, 0) | (273, 0) => address(v),
        (97, 0) | (160, 0) | (302, 1) => named(v, RLIMITS)?,
        (262, 3) | (332, 2) | (280, 3) | (260, 4) => at_flags(v, AT_FLAGS),
        (263, 2) => at_flags(v, &[(0x200, "AT_REMOVEDIR")]),
        (265, 4) => at_flags(v, &[(0x400, "AT_SYMLINK_FOLLOW"), (0x1000, "AT_EMPTY_PATH")]),
        (8, 2) => named(v, WHENCE)?,
        (72, 1) => named(v, FCNTL)?,
        (228, 0) | (229, 0) | (230, 0) | (227, 0) => named(v, CLOCKS)?,
        (230, 1) => at_flags(v, &[(1, "TIMER_ABSTIME")]),
        (14, 0) => named(v, HOW)?,
        (13, 0) | (62, 1) | (200, 1) | (234, 2) => signal(v)?,
        (16, 1) => named(v & 0xffff_ffff, IOCTLS)?,
        (28, 2) => named(v, ADVICE)?,
        (41, 0) | (53, 0) => named(v, DOMAINS)?,
        (41, 1) | (53, 1) => socket_type(v)?,
        _ => return None,
    })
}

fn address(v: u64) -> String {
    if v == 0 {
        "NULL".into()
    } else {
        format!("{v:#x}")
    }
}

fn named(v: u64, names: &[(u64, &str)]) -> Option<String> {
    names.iter().find(|(n, _)| *n == v).map(|(_, s)| (*s).to_string())
}

/// Names for the set bits of `v`, `|`-joined, leftover bits in hex; `0`
/// when none is set.
fn at_flags(v: u64, names: &[(u64, &str)]) -> String {
    super::print::flag_names(v, names, "0")
}

fn access_mode(v: u64) -> String {
    if v == 0 {
        return "F_OK".into();
    }
    at_flags(v, &[(4, "R_OK"), (2, "W_OK"), (1, "X_OK")])
}

fn signal(v: u64) -> Option<String> {
    warp_common::signals::name(i32::try_from(v).ok()?)
}

fn socket_type(v: u64) -> Option<String> {
    let base = named(v & 0xf, TYPES)?;
    let flags = at_flags(v & !0xf, &[(0o2000000, "SOCK_CLOEXEC"), (0o4000, "SOCK_NONBLOCK")]);
    Some(if flags == "0" { base } else { format!("{base}|{flags}") })
}

const AT_FLAGS: &[(u64, &str)] = &[
    (0x100, "AT_SYMLINK_NOFOLLOW"),
    (0x800, "AT_NO_AUTOMOUNT"),
    (0x1000, "AT_EMPTY_PATH"),
    (0x2000, "AT_STATX_FORCE_SYNC"),
    (0x4000, "AT_STATX_DONT_SYNC"),
];

const ARCH_CODES: &[(u64, &str)] = &[
    (0x1001, "ARCH_SET_GS"),
    (0x1002, "ARCH_SET_FS"),
    (0x1003, "ARCH_GET_FS"),
    (0x1004, "ARCH_GET_GS"),
    (0x1011, "ARCH_GET_CPUID"),
    (0x1012, "ARCH_SET_CPUID"),
    (0x1021, "ARCH_GET_XCOMP_SUPP"),
    (0x1022, "ARCH_GET_XCOMP_PERM"),
    (0x1023, "ARCH_REQ_XCOMP_PERM"),
];

const RLIMITS: &[(u64, &str)] = &[
    (0, "RLIMIT_CPU"),
    (1, "RLIMIT_FSIZE"),
    (2, "RLIMIT_DATA"),
    (3, "RLIMIT_STACK"),
    (4, "RLIMIT_CORE"),
    (5, "RLIMIT_RSS"),
    (6, "RLIMIT_NPROC"),
    (7, "RLIMIT_NOFILE"),
    (8, "RLIMIT_MEMLOCK"),
    (9, "RLIMIT_AS"),
    (10, "RLIMIT_LOCKS"),
    (11, "RLIMIT_SIGPENDING"),
    (12, "RLIMIT_MSGQUEUE"),
    (13, "RLIMIT_NICE"),
    (14, "RLIMIT_RTPRIO"),
    (15, "RLIMIT_RTTIME"),
];

const WHENCE: &[(u64, &str)] = &[(0, "SEEK_SET"), (1, "SEEK_CUR"), (2, "SEEK_END"), (3, "SEEK_DATA"), (4, "SEEK_HOLE")];

const FCNTL: &[(u64, &str)] = &[
    (0, "F_DUPFD"),
    (1, "F_GETFD"),
    (2, "F_SETFD"),
    (3, "F_GETFL"),
    (4, "F_SETFL"),
    (5, "F_GETLK"),
    (6, "F_SETLK"),
    (7, "F_SETLKW"),
    (8, "F_SETOWN"),
    (9, "F_GETOWN"),
    (10, "F_SETSIG"),
    (11, "F_GETSIG"),
    (1024, "F_SETLEASE"),
    (1025, "F_GETLEASE"),
    (1026, "F_NOTIFY"),
    (1030, "F_DUPFD_CLOEXEC"),
    (1031, "F_SETPIPE_SZ"),
    (1032, "F_GETPIPE_SZ"),
    (1033, "F_ADD_SEALS"),
    (1034, "F_GET_SEALS"),
];

const CLOCKS: &[(u64, &str)] = &[
    (0, "CLOCK_REALTIME"),
    (1, "CLOCK_MONOTONIC"),
    (2, "CLOCK_PROCESS_CPUTIME_ID"),
    (3, "CLOCK_THREAD_CPUTIME_ID"),
    (4, "CLOCK_MONOTONIC_RAW"),
    (5, "CLOCK_REALTIME_COARSE"),
    (6, "CLOCK_MONOTONIC_COARSE"),
    (7, "CLOCK_BOOTTIME"),
    (8, "CLOCK_REALTIME_ALARM"),
    (9, "CLOCK_BOOTTIME_ALARM"),
    (11, "CLOCK_TAI"),
];

const HOW: &[(u64, &str)] = &[(0, "SIG_BLOCK"), (1, "SIG_UNBLOCK"), (2, "SIG_SETMASK")];

const IOCTLS: &[(u64, &str)] = &[
    (0x5401, "TCGETS"),
    (0x5402, "TCSETS"),
    (0x5403, "TCSETSW"),
    (0x5404, "TCSETSF"),
    (0x540f, "TIOCGPGRP"),
    (0x5410, "TIOCSPGRP"),
    (0x5413, "TIOCGWINSZ"),
    (0x5414, "TIOCSWINSZ"),
    (0x541b, "FIONREAD"),
    (0x5421, "FIONBIO"),
    (0x5450, "FIONCLEX"),
    (0x5451, "FIOCLEX"),
    (0x5452, "FIOASYNC"),
    (0x80045430, "TIOCGPTN"),
    (0x40045431, "TIOCSPTLCK"),
];

const ADVICE: &[(u64, &str)] = &[
    (0, "MADV_NORMAL"),
    (1, "MADV_RANDOM"),
    (2, "MADV_SEQUENTIAL"),
    (3, "MADV_WILLNEED"),
    (4, "MADV_DONTNEED"),
    (8, "MADV_FREE"),
    (9, "MADV_REMOVE"),
    (10, "MADV_DONTFORK"),
    (11, "MADV_DOFORK"),
    (12, "MADV_MERGEABLE"),
    (13, "MADV_UNMERGEABLE"),
    (14, "MADV_HUGEPAGE"),
    (15, "MADV_NOHUGEPAGE"),
    (16, "MADV_DONTDUMP"),
    (17, "MADV_DODUMP"),
    (18, "MADV_WIPEONFORK"),
    (19, "MADV_KEEPONFORK"),
    (20, "MADV_COLD"),
    (21, "MADV_PAGEOUT"),
    (100, "MADV_HWPOISON"),
];

const DOMAINS: &[(u64, &str)] =
    &[(0, "AF_UNSPEC"), (1, "AF_UNIX"), (2, "AF_INET"), (10, "AF_INET6"), (16, "AF_NETLINK"), (17, "AF_PACKET")];

const TYPES: &[(u64, &str)] = &[
    (1, "SOCK_STREAM"),
    (2, "SOCK_DGRAM"),
    (3, "SOCK_RAW"),
    (4, "SOCK_RDM"),
    (5, "SOCK_SEQPACKET"),
    (10, "SOCK_PACKET"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_named_as_strace_names_them() {
        assert_eq!(argument(21, 1, 4).as_deref(), Some("R_OK"));
        assert_eq!(argument(21, 1, 0).as_deref(), Some("F_OK"));
        assert_eq!(argument(269, 2, 6).as_deref(), Some("R_OK|W_OK"));
        assert_eq!(argument(158, 0, 0x1002).as_deref(), Some("ARCH_SET_FS"));
        assert_eq!(argument(158, 0, 0x9999), None, "unknown codes stay numbers");
        assert_eq!(argument(302, 1, 3).as_deref(), Some("RLIMIT_STACK"));
        assert_eq!(argument(262, 3, 0x1000).as_deref(), Some("AT_EMPTY_PATH"));
        assert_eq!(argument(262, 3, 0x1100).as_deref(), Some("AT_SYMLINK_NOFOLLOW|AT_EMPTY_PATH"));
        assert_eq!(argument(262, 3, 0).as_deref(), Some("0"));
        assert_eq!(argument(262, 3, 0x8001).as_deref(), Some("0x8001"));
        assert_eq!(argument(263, 2, 0x200).as_deref(), Some("AT_REMOVEDIR"));
        assert_eq!(argument(8, 2, 2).as_deref(), Some("SEEK_END"));
        assert_eq!(argument(72, 1, 1030).as_deref(), Some("F_DUPFD_CLOEXEC"));
        assert_eq!(argument(228, 0, 1).as_deref(), Some("CLOCK_MONOTONIC"));
        assert_eq!(argument(14, 0, 2).as_deref(), Some("SIG_SETMASK"));
        assert_eq!(argument(62, 1, 9).as_deref(), Some("SIGKILL"));
        assert_eq!(argument(62, 1, 0), None, "signal 0 is a number");
        assert_eq!(argument(16, 1, 0x5401).as_deref(), Some("TCGETS"));
        assert_eq!(argument(28, 2, 4).as_deref(), Some("MADV_DONTNEED"));
        assert_eq!(argument(41, 0, 1).as_deref(), Some("AF_UNIX"));
        assert_eq!(argument(41, 1, 1 | 0o2000000).as_deref(), Some("SOCK_STREAM|SOCK_CLOEXEC"));
        assert_eq!(argument(1, 0, 1), None, "write's fd is not named");
        assert_eq!(argument(218, 0, 0x7fff_f7dd_a000).as_deref(), Some("0x7ffff7dda000"));
    }
}
