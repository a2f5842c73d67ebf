//! The guest's ABI: Linux x86_64's numbers for signals, sigaction flags and
//! the open flags the emulated kernel interprets, from the Linux UAPI
//! headers and man pages. Our own constants, so that the guest's ABI does
//! not silently become the host's (a macOS or aarch64 host's libc has other
//! values). Error numbers are [`Errno`]'s constants.

pub use super::errno::Errno;

pub const SIGHUP: i32 = 1;
pub const SIGINT: i32 = 2;
pub const SIGQUIT: i32 = 3;
pub const SIGILL: i32 = 4;
pub const SIGTRAP: i32 = 5;
pub const SIGABRT: i32 = 6;
pub const SIGBUS: i32 = 7;
pub const SIGFPE: i32 = 8;
pub const SIGKILL: i32 = 9;
pub const SIGUSR1: i32 = 10;
pub const SIGSEGV: i32 = 11;
pub const SIGUSR2: i32 = 12;
pub const SIGPIPE: i32 = 13;
pub const SIGALRM: i32 = 14;
pub const SIGTERM: i32 = 15;
pub const SIGSTKFLT: i32 = 16;
pub const SIGCHLD: i32 = 17;
pub const SIGCONT: i32 = 18;
pub const SIGSTOP: i32 = 19;
pub const SIGTSTP: i32 = 20;
pub const SIGTTIN: i32 = 21;
pub const SIGTTOU: i32 = 22;
pub const SIGURG: i32 = 23;
pub const SIGXCPU: i32 = 24;
pub const SIGXFSZ: i32 = 25;
pub const SIGVTALRM: i32 = 26;
pub const SIGPROF: i32 = 27;
pub const SIGWINCH: i32 = 28;
pub const SIGIO: i32 = 29;
pub const SIGPWR: i32 = 30;
pub const SIGSYS: i32 = 31;
/// Signals 1..=NSIG exist (realtime ones from 32).
pub const NSIG: usize = 64;

/// sigaction's sa_flags.
pub const SA_NOCLDSTOP: u64 = 0x1;
pub const SA_NOCLDWAIT: u64 = 0x2;
pub const SA_SIGINFO: u64 = 0x4;
pub const SA_RESTORER: u64 = 0x0400_0000;
pub const SA_ONSTACK: u64 = 0x0800_0000;
pub const SA_RESTART: u64 = 0x1000_0000;
pub const SA_NODEFER: u64 = 0x4000_0000;
pub const SA_RESETHAND: u64 = 0x8000_0000;

/// sigaltstack's ss_flags.
pub const SS_ONSTACK: i32 = 1;
pub const SS_DISABLE: i32 = 2;

/// open flags the emulated kernel looks at.
pub const O_ACCMODE: u64 = 0o3;
pub const O_CLOEXEC: u64 = 0o2000000;

/// si_code values for faults (siginfo(2)).
pub const SI_KERNEL: i32 = 0x80;
pub const SEGV_MAPERR: i32 = 1;
pub const SEGV_ACCERR: i32 = 2;
pub const FPE_INTDIV: i32 = 1;
pub const ILL_ILLOPN: i32 = 2;
pub const TRAP_TRACE: i32 = 2;
pub const BUS_ADRALN: i32 = 1;
pub const BUS_ADRERR: i32 = 2;

#[cfg(test)]
mod tests {
    use super::*;

    /// The published Linux x86_64 values (signal(7), errno(3),
    /// asm-generic/errno-base.h and errno.h), written out independently.
    #[test]
    fn signals_and_errnos_are_linux_x86_64s() {
        let signals = [
            (SIGHUP, 1),
            (SIGINT, 2),
            (SIGQUIT, 3),
            (SIGILL, 4),
            (SIGTRAP, 5),
            (SIGABRT, 6),
            (SIGBUS, 7),
            (SIGFPE, 8),
            (SIGKILL, 9),
            (SIGUSR1, 10),
            (SIGSEGV, 11),
            (SIGUSR2, 12),
            (SIGPIPE, 13),
            (SIGALRM, 14),
            (SIGTERM, 15),
            (SIGCHLD, 17),
            (SIGCONT, 18),
            (SIGSTOP, 19),
            (SIGTSTP, 20),
            (SIGTTIN, 21),
            (SIGTTOU, 22),
            (SIGURG, 23),
            (SIGWINCH, 28),
            (SIGIO, 29),
            (SIGSYS, 31),
        ];
        for (ours, linux) in signals {
            assert_eq!(ours, linux);
        }
        let errnos = [
            (Errno::EPERM, 1),
            (Errno::ENOENT, 2),
            (Errno::ESRCH, 3),
            (Errno::EINTR, 4),
            (Errno::E2BIG, 7),
            (Errno::ENOEXEC, 8),
            (Errno::EBADF, 9),
            (Errno::EAGAIN, 11),
            (Errno::ENOMEM, 12),
            (Errno::EACCES, 13),
            (Errno::EFAULT, 14),
            (Errno::EEXIST, 17),
            (Errno::ENODEV, 19),
            (Errno::ENOTDIR, 20),
            (Errno::EINVAL, 22),
            (Errno::EMFILE, 24),
            (Errno::ENOTTY, 25),
            (Errno::EFBIG, 27),
            (Errno::ESPIPE, 29),
            (Errno::EPIPE, 32),
            (Errno::ERANGE, 34),
            (Errno::ENAMETOOLONG, 36),
            (Errno::ENOSYS, 38),
            (Errno::EOPNOTSUPP, 95),
            (Errno::ETIMEDOUT, 110),
        ];
        for (ours, linux) in errnos {
            assert_eq!(ours.0, linux);
        }
        assert_eq!(
            (SA_RESTART, SA_SIGINFO, SA_ONSTACK, SA_NODEFER, SA_RESETHAND),
            (0x1000_0000, 4, 0x0800_0000, 0x4000_0000, 0x8000_0000)
        );
        assert_eq!((O_CLOEXEC, SS_DISABLE), (0x80000, 2));
    }

    /// Where the host is Linux x86_64 its libc must agree (a check on the
    /// table above, not its source).
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    #[test]
    fn the_hosts_libc_agrees_here() {
        assert_eq!(SIGSEGV, libc::SIGSEGV);
        assert_eq!(SIGCHLD, libc::SIGCHLD);
        assert_eq!(SIGSTOP, libc::SIGSTOP);
        assert_eq!(SIGWINCH, libc::SIGWINCH);
        assert_eq!(SA_RESTART, libc::SA_RESTART as u64);
        assert_eq!(SA_ONSTACK, libc::SA_ONSTACK as u64);
        assert_eq!(O_CLOEXEC, libc::O_CLOEXEC as u64);
        assert_eq!(Errno::ETIMEDOUT.0, libc::ETIMEDOUT);
        assert_eq!(Errno::EOPNOTSUPP.0, libc::EOPNOTSUPP);
    }
}
