//! The Linux x86_64 syscall table.
//!
//! Each entry says how warpd handles the call (emulated, proxied to the
//! broker, or not supported), what each argument is (descriptor, path,
//! buffer in or out and its length) and so how to check and marshal it,
//! what Linux does around it (restart after a handler, SIGPIPE on EPIPE,
//! descriptors it returns, bytes it sends to a file), and how to print it.
//! Dispatch, the broker, recording, replay and the event printer all read
//! this table, so they cannot disagree.

/// How warpd answers a syscall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// The VM's own state: memory, threads, signals, identity of the guest.
    Emulated,
    /// Performed by the broker with the user's rights.
    Proxied,
    /// Proxied, and may block (the broker waits; a signal interrupts it).
    Blocking,
    /// Known to Linux, not supported yet: -ENOSYS, with a note.
    Unsupported(&'static str),
}

/// The length of a buffer argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Len {
    /// The value of argument i.
    Of(usize),
    /// A fixed structure size.
    Fixed(u64),
    /// Argument i times a size (arrays).
    ArgTimes(usize, u64),
    /// An fd_set for `nfds` in argument i: ceil(nfds / 64) * 8 bytes.
    FdSet(usize),
    /// The socklen_t that argument i points to (an address buffer's size;
    /// 0 when that pointer is null or unreadable: the call itself reports it).
    At(usize),
}

/// What one argument is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arg {
    /// A plain value.
    Int,
    /// A file descriptor (the broker's reserved range is refused with EBADF).
    Fd,
    /// A directory descriptor or AT_FDCWD.
    DirFd,
    /// A NUL-terminated path (or name) the call reads.
    Path,
    /// A buffer the call reads.
    In(Len),
    /// A buffer the call writes.
    Out(Len),
    /// A buffer the call reads and writes.
    InOut(Len),
    /// A guest iovec array (count in the next argument) the call fills.
    IovOut,
    /// A guest iovec array (count in the next argument) the call reads.
    IovIn,
    /// A `struct msghdr` whose name, iovec array and control buffer the
    /// call writes (recvmsg) or reads (sendmsg, `MsgIn`).
    MsgOut,
    MsgIn,
    /// An array of `struct mmsghdr` (count in the next argument), each as
    /// `MsgOut`/`MsgIn`; the call writes each one's msg_len.
    MmsgOut,
    MmsgIn,
}

/// What a successful call returns, where warpd must check it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Returns {
    Value,
    /// A new descriptor, which must stay below the reserved range.
    NewFd,
}

#[derive(Clone, Copy, Debug)]
pub struct Desc {
    pub nr: u64,
    pub name: &'static str,
    pub class: Class,
    pub args: &'static [Arg],
    pub returns: Returns,
    /// Linux restarts it after a handler with SA_RESTART (it returns
    /// -ERESTARTSYS when a signal interrupts it); others return EINTR.
    pub restartable: bool,
    /// EPIPE from it raises SIGPIPE (writes to a pipe or socket).
    pub epipe_sigpipe: bool,
    /// On success it has written two new descriptors into this argument
    /// (pipe, socketpair), which must stay below the reserved range.
    pub fd_pair: Option<usize>,
    /// The bytes it sends reach the file behind its first argument: replay
    /// re-emits them when that file was the program's stdout or stderr.
    pub sends_bytes: bool,
    /// The broker performs it on warpd's behalf although warpd emulates it
    /// for the program (another process's limits or signals, closing ranges).
    pub for_warpd: bool,
    /// It sleeps until an event, a timeout or a signal (pause, nanosleep,
    /// poll, wait4...): the broker performs it off its main thread, so that
    /// the calls of other guest threads are not held up behind it.
    pub waits: bool,
    /// The trace format from which warpd answers it (0: every one): a
    /// replay of an older recording, where the program got ENOSYS for it,
    /// gives ENOSYS again.
    pub since: u32,
}

impl Desc {
    /// Whether the broker may perform this call at all.
    pub fn brokered(&self) -> bool {
        matches!(self.class, Class::Proxied | Class::Blocking) || self.for_warpd
    }

    /// Whether what it returns is how much it wrote into a buffer measured
    /// by an argument (`Out(Of(i))`: read, getxattr, readlink...); not
    /// sched_getattr, which fills the size it is given and returns 0.
    pub fn returns_count(&self) -> bool {
        self.nr != 315
    }

    /// Whether an argument is a guest iovec array.
    pub fn vectored(&self) -> bool {
        self.args.iter().any(|a| matches!(a, Arg::IovIn | Arg::IovOut))
    }

    const fn restart(mut self) -> Self {
        self.restartable = true;
        self
    }
    const fn sigpipe(mut self) -> Self {
        self.epipe_sigpipe = true;
        self
    }
    const fn sends(mut self) -> Self {
        self.sends_bytes = true;
        self
    }
    const fn pair(mut self, arg: usize) -> Self {
        self.fd_pair = Some(arg);
        self
    }
    const fn warpd(mut self) -> Self {
        self.for_warpd = true;
        self
    }
    const fn waits(mut self) -> Self {
        self.waits = true;
        self
    }
    const fn since(mut self, format: u32) -> Self {
        self.since = format;
        self
    }
}

use Arg::*;
use Class::*;
use Len::*;
use Returns::*;

const fn d(nr: u64, name: &'static str, class: Class, args: &'static [Arg]) -> Desc {
    Desc {
        nr,
        name,
        class,
        args,
        returns: Value,
        restartable: false,
        epipe_sigpipe: false,
        fd_pair: None,
        sends_bytes: false,
        for_warpd: false,
        waits: false,
        since: 0,
    }
}
const fn fd(nr: u64, name: &'static str, class: Class, args: &'static [Arg]) -> Desc {
    let mut x = d(nr, name, class, args);
    x.returns = NewFd;
    x
}

const STAT: u64 = 144;
const STATFS: u64 = 120;
const TIMESPEC: u64 = 16;
/// struct timex (adjtimex, clock_adjtime).
const TIMEX: u64 = 208;

/// Every syscall warpd knows, in number order.
pub static TABLE: &[Desc] = &[
    d(0, "read", Blocking, &[Fd, Out(Of(2)), Int]).restart(),
    d(1, "write", Blocking, &[Fd, In(Of(2)), Int]).restart().sigpipe().sends(),
    fd(2, "open", Proxied, &[Path, Int, Int]).restart(),
    d(3, "close", Proxied, &[Fd]),
    d(4, "stat", Proxied, &[Path, Out(Fixed(STAT))]),
    d(5, "fstat", Proxied, &[Fd, Out(Fixed(STAT))]),
    d(6, "lstat", Proxied, &[Path, Out(Fixed(STAT))]),
    d(7, "poll", Blocking, &[InOut(ArgTimes(1, 8)), Int, Int]).waits(),
    d(8, "lseek", Proxied, &[Fd, Int, Int]),
    d(9, "mmap", Emulated, &[Int, Int, Int, Int, Fd, Int]),
    d(10, "mprotect", Emulated, &[Int, Int, Int]),
    d(11, "munmap", Emulated, &[Int, Int]),
    d(12, "brk", Emulated, &[Int]),
    d(13, "rt_sigaction", Emulated, &[Int, In(Fixed(32)), Out(Fixed(32)), Int]),
    d(14, "rt_sigprocmask", Emulated, &[Int, In(Fixed(8)), Out(Fixed(8)), Int]),
    d(15, "rt_sigreturn", Emulated, &[]),
    d(16, "ioctl", Proxied, &[Fd, Int, Int]).restart(),
    d(17, "pread64", Blocking, &[Fd, Out(Of(2)), Int, Int]).restart(),
    d(18, "pwrite64", Blocking, &[Fd, In(Of(2)), Int, Int]).restart().sigpipe().sends(),
    d(19, "readv", Blocking, &[Fd, IovOut, Int]).restart(),
    d(20, "writev", Blocking, &[Fd, IovIn, Int]).restart().sigpipe().sends(),
    d(21, "access", Proxied, &[Path, Int]),
    d(22, "pipe", Proxied, &[Out(Fixed(8))]).pair(0),
    d(23, "select", Blocking, &[Int, InOut(FdSet(0)), InOut(FdSet(0)), InOut(FdSet(0)), InOut(Fixed(TIMESPEC))])
        .waits(),
    d(24, "sched_yield", Emulated, &[]),
    d(25, "mremap", Emulated, &[Int, Int, Int, Int, Int]),
    d(26, "msync", Emulated, &[Int, Int, Int]).since(8),
    d(27, "mincore", Emulated, &[Int, Int, Out(Fixed(0))]),
    d(28, "madvise", Emulated, &[Int, Int, Int]),
    fd(32, "dup", Proxied, &[Fd]),
    d(33, "dup2", Proxied, &[Fd, Fd]),
    d(34, "pause", Blocking, &[]).waits(),
    d(35, "nanosleep", Blocking, &[In(Fixed(TIMESPEC)), Out(Fixed(TIMESPEC))]).waits(),
    d(36, "getitimer", Emulated, &[Int, Out(Fixed(32))]).warpd(),
    d(37, "alarm", Proxied, &[Int]),
    d(38, "setitimer", Emulated, &[Int, In(Fixed(32)), Out(Fixed(32))]).warpd(),
    d(39, "getpid", Emulated, &[]),
    d(40, "sendfile", Blocking, &[Fd, Fd, InOut(Fixed(8)), Int]).sigpipe().sends(),
    fd(41, "socket", Proxied, &[Int, Int, Int]),
    d(42, "connect", Blocking, &[Fd, In(Of(2)), Int]).restart(),
    fd(43, "accept", Blocking, &[Fd, Out(At(2)), InOut(Fixed(4))]).restart(),
    d(44, "sendto", Blocking, &[Fd, In(Of(2)), Int, Int, In(Of(5)), Int]).restart().sigpipe().sends(),
    d(45, "recvfrom", Blocking, &[Fd, Out(Of(2)), Int, Int, Out(At(5)), InOut(Fixed(4))]).restart(),
    d(46, "sendmsg", Blocking, &[Fd, MsgIn, Int]).restart().sigpipe().sends(),
    d(47, "recvmsg", Blocking, &[Fd, MsgOut, Int]).restart(),
    d(48, "shutdown", Proxied, &[Fd, Int]),
    d(49, "bind", Proxied, &[Fd, In(Of(2)), Int]),
    d(50, "listen", Proxied, &[Fd, Int]),
    d(51, "getsockname", Proxied, &[Fd, Out(At(2)), InOut(Fixed(4))]),
    d(52, "getpeername", Proxied, &[Fd, Out(At(2)), InOut(Fixed(4))]),
    d(53, "socketpair", Proxied, &[Int, Int, Int, Out(Fixed(8))]).pair(3),
    d(54, "setsockopt", Proxied, &[Fd, Int, Int, In(Of(4)), Int]),
    d(55, "getsockopt", Proxied, &[Fd, Int, Int, Out(At(4)), InOut(Fixed(4))]),
    d(56, "clone", Emulated, &[Int, Int, Int, Int, Int]),
    d(57, "fork", Emulated, &[]),
    d(58, "vfork", Emulated, &[]),
    d(59, "execve", Emulated, &[Path, Int, Int]),
    d(60, "exit", Emulated, &[Int]),
    d(61, "wait4", Blocking, &[Int, Out(Fixed(4)), Int, Out(Fixed(STAT))]).restart().waits(),
    d(62, "kill", Emulated, &[Int, Int]).warpd(),
    d(63, "uname", Proxied, &[Out(Fixed(390))]),
    d(72, "fcntl", Proxied, &[Fd, Int, Int]).restart(),
    d(73, "flock", Blocking, &[Fd, Int]).restart().waits(),
    d(74, "fsync", Proxied, &[Fd]),
    d(75, "fdatasync", Proxied, &[Fd]),
    d(76, "truncate", Proxied, &[Path, Int]),
    d(77, "ftruncate", Proxied, &[Fd, Int]),
    d(78, "getdents", Proxied, &[Fd, Out(Of(2)), Int]),
    d(79, "getcwd", Proxied, &[Out(Of(1)), Int]),
    d(80, "chdir", Proxied, &[Path]),
    d(81, "fchdir", Proxied, &[Fd]),
    d(82, "rename", Proxied, &[Path, Path]),
    d(83, "mkdir", Proxied, &[Path, Int]),
    d(84, "rmdir", Proxied, &[Path]),
    fd(85, "creat", Proxied, &[Path, Int]),
    d(86, "link", Proxied, &[Path, Path]),
    d(87, "unlink", Proxied, &[Path]),
    d(88, "symlink", Proxied, &[Path, Path]),
    d(89, "readlink", Proxied, &[Path, Out(Of(2)), Int]),
    d(90, "chmod", Proxied, &[Path, Int]),
    d(91, "fchmod", Proxied, &[Fd, Int]),
    d(92, "chown", Proxied, &[Path, Int, Int]),
    d(93, "fchown", Proxied, &[Fd, Int, Int]),
    d(94, "lchown", Proxied, &[Path, Int, Int]),
    d(95, "umask", Proxied, &[Int]),
    d(96, "gettimeofday", Proxied, &[Out(Fixed(16)), Out(Fixed(8))]),
    d(97, "getrlimit", Emulated, &[Int, Out(Fixed(16))]),
    d(98, "getrusage", Proxied, &[Int, Out(Fixed(144))]),
    d(99, "sysinfo", Proxied, &[Out(Fixed(112))]),
    d(100, "times", Proxied, &[Out(Fixed(32))]),
    d(102, "getuid", Proxied, &[]),
    d(104, "getgid", Proxied, &[]),
    d(105, "setuid", Proxied, &[Int]),
    d(106, "setgid", Proxied, &[Int]),
    d(107, "geteuid", Proxied, &[]),
    d(108, "getegid", Proxied, &[]),
    d(109, "setpgid", Proxied, &[Int, Int]),
    d(110, "getppid", Emulated, &[]).warpd(),
    d(111, "getpgrp", Proxied, &[]),
    d(112, "setsid", Proxied, &[]),
    d(113, "setreuid", Proxied, &[Int, Int]),
    d(114, "setregid", Proxied, &[Int, Int]),
    d(115, "getgroups", Proxied, &[Int, Out(ArgTimes(0, 4))]),
    d(116, "setgroups", Proxied, &[Int, In(ArgTimes(0, 4))]),
    d(117, "setresuid", Proxied, &[Int, Int, Int]),
    d(118, "getresuid", Proxied, &[Out(Fixed(4)), Out(Fixed(4)), Out(Fixed(4))]),
    d(119, "setresgid", Proxied, &[Int, Int, Int]),
    d(120, "getresgid", Proxied, &[Out(Fixed(4)), Out(Fixed(4)), Out(Fixed(4))]),
    d(121, "getpgid", Proxied, &[Int]),
    d(124, "getsid", Proxied, &[Int]),
    d(125, "capget", Proxied, &[InOut(Fixed(8)), Out(Fixed(24))]).since(7),
    d(126, "capset", Proxied, &[In(Fixed(8)), In(Fixed(24))]).since(7),
    d(127, "rt_sigpending", Emulated, &[Int, Int]),
    d(128, "rt_sigtimedwait", Emulated, &[Int, Int, Int, Int]),
    d(129, "rt_sigqueueinfo", Emulated, &[Int, Int, In(Fixed(128))]).warpd(),
    d(130, "rt_sigsuspend", Emulated, &[Int, Int]),
    d(131, "sigaltstack", Emulated, &[In(Fixed(24)), Out(Fixed(24))]),
    d(132, "utime", Proxied, &[Path, In(Fixed(16))]),
    d(133, "mknod", Proxied, &[Path, Int, Int]),
    d(135, "personality", Proxied, &[Int]).since(7),
    d(137, "statfs", Proxied, &[Path, Out(Fixed(STATFS))]),
    d(138, "fstatfs", Proxied, &[Fd, Out(Fixed(STATFS))]),
    d(140, "getpriority", Proxied, &[Int, Int]),
    d(141, "setpriority", Proxied, &[Int, Int, Int]),
    d(142, "sched_setparam", Proxied, &[Int, In(Fixed(4))]).since(7),
    d(143, "sched_getparam", Proxied, &[Int, Out(Fixed(4))]).since(7),
    d(144, "sched_setscheduler", Proxied, &[Int, Int, In(Fixed(4))]).since(7),
    d(145, "sched_getscheduler", Proxied, &[Int]).since(7),
    d(146, "sched_get_priority_max", Proxied, &[Int]).since(7),
    d(147, "sched_get_priority_min", Proxied, &[Int]).since(7),
    d(148, "sched_rr_get_interval", Proxied, &[Int, Out(Fixed(TIMESPEC))]).since(7),
    d(149, "mlock", Emulated, &[Int, Int]).since(7),
    d(150, "munlock", Emulated, &[Int, Int]).since(7),
    d(151, "mlockall", Emulated, &[Int]).since(7),
    d(152, "munlockall", Emulated, &[]).since(7),
    d(157, "prctl", Emulated, &[Int, Int, Int, Int, Int]).warpd(),
    d(158, "arch_prctl", Emulated, &[Int, Int]),
    d(159, "adjtimex", Proxied, &[InOut(Fixed(TIMEX))]).since(7),
    d(160, "setrlimit", Emulated, &[Int, In(Fixed(16))]),
    d(162, "sync", Proxied, &[]),
    d(163, "acct", Proxied, &[Path]).since(7),
    d(186, "gettid", Emulated, &[]),
    d(188, "setxattr", Proxied, &[Path, Path, In(Of(3)), Int, Int]).since(7),
    d(189, "lsetxattr", Proxied, &[Path, Path, In(Of(3)), Int, Int]).since(7),
    d(190, "fsetxattr", Proxied, &[Fd, Path, In(Of(3)), Int, Int]).since(7),
    d(191, "getxattr", Proxied, &[Path, Path, Out(Of(3)), Int]),
    d(192, "lgetxattr", Proxied, &[Path, Path, Out(Of(3)), Int]),
    d(193, "fgetxattr", Proxied, &[Fd, Path, Out(Of(3)), Int]),
    d(194, "listxattr", Proxied, &[Path, Out(Of(2)), Int]),
    d(195, "llistxattr", Proxied, &[Path, Out(Of(2)), Int]),
    d(196, "flistxattr", Proxied, &[Fd, Out(Of(2)), Int]),
    d(197, "removexattr", Proxied, &[Path, Path]).since(7),
    d(198, "lremovexattr", Proxied, &[Path, Path]).since(7),
    d(199, "fremovexattr", Proxied, &[Fd, Path]).since(7),
    d(200, "tkill", Emulated, &[Int, Int]),
    d(201, "time", Proxied, &[Out(Fixed(8))]),
    d(202, "futex", Emulated, &[Int, Int, Int, Int, Int, Int]).restart(),
    // The program has one CPU, the vCPU (warpd answers).
    d(203, "sched_setaffinity", Emulated, &[Int, Int, Int]),
    d(204, "sched_getaffinity", Emulated, &[Int, Int, Int]),
    fd(213, "epoll_create", Proxied, &[Int]),
    d(217, "getdents64", Proxied, &[Fd, Out(Of(2)), Int]),
    d(218, "set_tid_address", Emulated, &[Int]),
    d(221, "fadvise64", Proxied, &[Fd, Int, Int, Int]),
    d(222, "timer_create", Emulated, &[Int, In(Fixed(64)), Out(Fixed(4))]),
    d(223, "timer_settime", Emulated, &[Int, Int, In(Fixed(32)), Out(Fixed(32))]),
    d(224, "timer_gettime", Emulated, &[Int, Out(Fixed(32))]),
    d(225, "timer_getoverrun", Emulated, &[Int]),
    d(226, "timer_delete", Emulated, &[Int]),
    d(227, "clock_settime", Proxied, &[Int, In(Fixed(TIMESPEC))]).since(7),
    d(228, "clock_gettime", Proxied, &[Int, Out(Fixed(TIMESPEC))]),
    d(229, "clock_getres", Proxied, &[Int, Out(Fixed(TIMESPEC))]),
    d(230, "clock_nanosleep", Blocking, &[Int, Int, In(Fixed(TIMESPEC)), Out(Fixed(TIMESPEC))]).waits(),
    d(231, "exit_group", Emulated, &[Int]),
    d(232, "epoll_wait", Blocking, &[Fd, Out(ArgTimes(2, 12)), Int, Int]).waits(),
    d(233, "epoll_ctl", Proxied, &[Fd, Int, Fd, In(Fixed(12))]),
    d(234, "tgkill", Emulated, &[Int, Int, Int]).warpd(),
    d(235, "utimes", Proxied, &[Path, In(Fixed(32))]),
    // siginfo_t (128 bytes), then struct rusage.
    d(247, "waitid", Blocking, &[Int, Int, Out(Fixed(128)), Int, Out(Fixed(STAT))]).restart().waits(),
    d(251, "ioprio_set", Proxied, &[Int, Int, Int]).since(7),
    d(252, "ioprio_get", Proxied, &[Int, Int]).since(7),
    fd(253, "inotify_init", Proxied, &[]).since(7),
    d(254, "inotify_add_watch", Proxied, &[Fd, Path, Int]).since(7),
    d(255, "inotify_rm_watch", Proxied, &[Fd, Int]).since(7),
    fd(257, "openat", Proxied, &[DirFd, Path, Int, Int]).restart(),
    d(258, "mkdirat", Proxied, &[DirFd, Path, Int]),
    d(259, "mknodat", Proxied, &[DirFd, Path, Int, Int]),
    d(260, "fchownat", Proxied, &[DirFd, Path, Int, Int, Int]),
    d(261, "futimesat", Proxied, &[DirFd, Path, In(Fixed(32))]),
    d(262, "newfstatat", Proxied, &[DirFd, Path, Out(Fixed(STAT)), Int]),
    d(263, "unlinkat", Proxied, &[DirFd, Path, Int]),
    d(264, "renameat", Proxied, &[DirFd, Path, DirFd, Path]),
    d(265, "linkat", Proxied, &[DirFd, Path, DirFd, Path, Int]),
    d(266, "symlinkat", Proxied, &[Path, DirFd, Path]),
    d(267, "readlinkat", Proxied, &[DirFd, Path, Out(Of(3)), Int]),
    d(268, "fchmodat", Proxied, &[DirFd, Path, Int]),
    d(269, "faccessat", Proxied, &[DirFd, Path, Int]),
    // The sixth argument points to {sigmask pointer, size}: warpd passes
    // only a null mask on (a mask to wait with is not supported yet).
    d(
        270,
        "pselect6",
        Blocking,
        &[Int, InOut(FdSet(0)), InOut(FdSet(0)), InOut(FdSet(0)), InOut(Fixed(TIMESPEC)), Int],
    )
    .waits(),
    d(271, "ppoll", Blocking, &[InOut(ArgTimes(1, 8)), Int, In(Fixed(TIMESPEC)), In(Fixed(8)), Int]).waits(),
    d(273, "set_robust_list", Emulated, &[Int, Int]),
    d(274, "get_robust_list", Emulated, &[Int, Out(Fixed(8)), Out(Fixed(8))]).since(8),
    d(277, "sync_file_range", Proxied, &[Fd, Int, Int, Int]).since(7),
    d(278, "vmsplice", Blocking, &[Fd, IovIn, Int, Int]).sigpipe().sends().since(7),
    d(280, "utimensat", Proxied, &[DirFd, Path, In(Fixed(32)), Int]),
    d(281, "epoll_pwait", Blocking, &[Fd, Out(ArgTimes(2, 12)), Int, Int, In(Fixed(8)), Int]).waits(),
    d(282, "signalfd", Emulated, &[Int, In(Fixed(8)), Int]),
    fd(283, "timerfd_create", Proxied, &[Int, Int]),
    fd(284, "eventfd", Proxied, &[Int]),
    d(285, "fallocate", Proxied, &[Fd, Int, Int, Int]),
    d(286, "timerfd_settime", Proxied, &[Fd, Int, In(Fixed(32)), Out(Fixed(32))]),
    d(287, "timerfd_gettime", Proxied, &[Fd, Out(Fixed(32))]),
    fd(288, "accept4", Blocking, &[Fd, Out(At(2)), InOut(Fixed(4)), Int]).restart(),
    d(289, "signalfd4", Emulated, &[Int, In(Fixed(8)), Int, Int]),
    fd(290, "eventfd2", Proxied, &[Int, Int]),
    fd(291, "epoll_create1", Proxied, &[Int]),
    d(292, "dup3", Proxied, &[Fd, Fd, Int]),
    d(293, "pipe2", Proxied, &[Out(Fixed(8)), Int]).pair(0),
    fd(294, "inotify_init1", Proxied, &[Int]).since(7),
    d(295, "preadv", Blocking, &[Fd, IovOut, Int, Int, Int]).restart(),
    d(296, "pwritev", Blocking, &[Fd, IovIn, Int, Int, Int]).restart().sigpipe().sends(),
    d(297, "rt_tgsigqueueinfo", Emulated, &[Int, Int, Int, In(Fixed(128))]).warpd(),
    d(299, "recvmmsg", Blocking, &[Fd, MmsgOut, Int, Int, InOut(Fixed(TIMESPEC))]),
    d(302, "prlimit64", Emulated, &[Int, Int, In(Fixed(16)), Out(Fixed(16))]).warpd(),
    d(305, "clock_adjtime", Proxied, &[Int, InOut(Fixed(TIMEX))]).since(7),
    d(306, "syncfs", Proxied, &[Fd]),
    d(307, "sendmmsg", Blocking, &[Fd, MmsgIn, Int, Int]).sigpipe().sends(),
    d(309, "getcpu", Proxied, &[Out(Fixed(4)), Out(Fixed(4)), Int]).since(7),
    d(315, "sched_getattr", Proxied, &[Int, Out(Of(2)), Int, Int]).since(7),
    d(316, "renameat2", Proxied, &[DirFd, Path, DirFd, Path, Int]),
    d(318, "getrandom", Blocking, &[Out(Of(1)), Int, Int]),
    fd(319, "memfd_create", Proxied, &[Path, Int]),
    d(322, "execveat", Unsupported("execve is not supported yet"), &[]),
    d(324, "membarrier", Emulated, &[Int, Int, Int]).since(7),
    d(325, "mlock2", Emulated, &[Int, Int, Int]).since(7),
    d(
        326,
        "copy_file_range",
        Unsupported(
            "copies that bypass the program's memory are not replayable yet; programs fall back to read and write",
        ),
        &[],
    ),
    d(327, "preadv2", Blocking, &[Fd, IovOut, Int, Int, Int, Int]).restart().since(7),
    d(328, "pwritev2", Blocking, &[Fd, IovIn, Int, Int, Int, Int]).restart().sigpipe().sends().since(7),
    d(332, "statx", Proxied, &[DirFd, Path, Int, Int, Out(Fixed(256))]),
    d(334, "rseq", Unsupported("restartable sequences are not provided (glibc falls back)"), &[]),
    // Of the broker's pid (the program's): its signals reach the program as a kill's.
    d(424, "pidfd_send_signal", Proxied, &[Fd, Int, In(Fixed(128)), Int]),
    fd(434, "pidfd_open", Proxied, &[Int, Int]),
    d(435, "clone3", Emulated, &[In(Of(1)), Int]),
    d(436, "close_range", Emulated, &[Int, Int, Int]).warpd(),
    fd(437, "openat2", Proxied, &[DirFd, Path, In(Of(3)), Int]).restart().since(7),
    d(439, "faccessat2", Proxied, &[DirFd, Path, Int, Int]),
    d(449, "futex_waitv", Emulated, &[Int, Int, Int, Int, Int]),
];

/// The call a number register selects: Linux x86_64 takes its low 32 bits
/// (`syscall(-1)` is call 0xffffffff, which does not exist; 2^32 + 39 is
/// getpid), so warpd dispatches, checks and prints by this number while the
/// trace keeps the whole register.
pub fn number(register: u64) -> u64 {
    register as u32 as u64
}

/// The description of syscall `nr`, if warpd knows it.
pub fn lookup(nr: u64) -> Option<&'static Desc> {
    TABLE.binary_search_by_key(&nr, |d| d.nr).ok().map(|i| &TABLE[i])
}

/// FIGETBSZ, which every file answers (Linux's common ioctls).
pub const FIGETBSZ: u64 = 2;

/// ioctl requests warpd lets through, and what their argument is. Any
/// other request gets ENOTTY, as for a descriptor that has no such request.
pub fn ioctl_arg(request: u64) -> Option<Arg> {
    const TERMIOS: u64 = 36;
    Some(match request {
        0x5401 => Out(Fixed(TERMIOS)),         // TCGETS
        0x5402..=0x5404 => In(Fixed(TERMIOS)), // TCSETS, TCSETSW, TCSETSF
        0x5409..=0x540b => Int,                // TCSBRK, TCXONC, TCFLSH
        0x540f => Out(Fixed(4)),               // TIOCGPGRP
        0x5410 => In(Fixed(4)),                // TIOCSPGRP
        0x5413 => Out(Fixed(8)),               // TIOCGWINSZ
        0x5414 => In(Fixed(8)),                // TIOCSWINSZ
        0x541b => Out(Fixed(4)),               // FIONREAD
        0x5421 | 0x5452 => In(Fixed(4)),       // FIONBIO, FIOASYNC
        0x5429 => Out(Fixed(4)),               // TIOCGSID
        0x5450 | 0x5451 => Int,                // FIONCLEX, FIOCLEX
        FIGETBSZ => Out(Fixed(4)),             // the block size of the file's filesystem (format 8)
        _ => return None,
    })
}

/// fcntl commands warpd lets through, and their argument.
pub fn fcntl_arg(cmd: u64) -> Option<Arg> {
    const FLOCK: u64 = 32;
    Some(match cmd {
        0 | 1030 => Int,                     // F_DUPFD, F_DUPFD_CLOEXEC (checked by the caller)
        1..=4 | 8..=11 => Int,               // F_GETFD F_SETFD F_GETFL F_SETFL F_SETOWN F_GETOWN F_SETSIG F_GETSIG
        5 | 36 => InOut(Fixed(FLOCK)),       // F_GETLK, F_OFD_GETLK
        6 | 7 | 37 | 38 => In(Fixed(FLOCK)), // F_SETLK(W), F_OFD_SETLK(W)
        1024..=1026 | 1031..=1034 => Int,    // leases, notify, pipe size, seals
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_unique_and_named_as_linux_names_it() {
        for w in TABLE.windows(2) {
            assert!(w[0].nr < w[1].nr, "{} before {}", w[0].name, w[1].name);
        }
        for d in TABLE {
            assert_eq!(crate::names_x86_64::name(d.nr), Some(d.name), "nr {}", d.nr);
            assert!(d.args.len() <= 6);
        }
    }

    #[test]
    fn glibc_legacy_calls_are_known() {
        for name in [
            "open", "stat", "lstat", "access", "rename", "unlink", "mkdir", "rmdir", "pipe", "dup2", "readlink",
            "poll", "select",
        ] {
            assert!(TABLE.iter().any(|d| d.name == name), "{name}");
        }
        assert_eq!(lookup(257).map(|d| d.name), Some("openat"));
        assert!(lookup(1000).is_none());
    }

    #[test]
    fn what_linux_does_around_a_call_is_in_the_entry() {
        let with = |f: fn(&Desc) -> bool| TABLE.iter().filter(|d| f(d)).map(|d| d.name).collect::<Vec<_>>();
        // signal(7): the calls SA_RESTART restarts, of those in the table.
        assert_eq!(
            with(|d| d.restartable),
            [
                "read", "write", "open", "ioctl", "pread64", "pwrite64", "readv", "writev", "connect", "accept",
                "sendto", "recvfrom", "sendmsg", "recvmsg", "wait4", "fcntl", "flock", "futex", "waitid", "openat",
                "accept4", "preadv", "pwritev", "preadv2", "pwritev2", "openat2"
            ]
        );
        let senders = [
            "write", "pwrite64", "writev", "sendfile", "sendto", "sendmsg", "vmsplice", "pwritev", "sendmmsg",
            "pwritev2",
        ];
        assert_eq!(with(|d| d.epipe_sigpipe), senders);
        assert_eq!(with(|d| d.sends_bytes), senders);
        assert_eq!(with(|d| d.vectored()), ["readv", "writev", "vmsplice", "preadv", "pwritev", "preadv2", "pwritev2"]);
        assert_eq!(
            with(|d| d.waits),
            [
                "poll",
                "select",
                "pause",
                "nanosleep",
                "wait4",
                "flock",
                "clock_nanosleep",
                "epoll_wait",
                "waitid",
                "pselect6",
                "ppoll",
                "epoll_pwait"
            ]
        );
        assert!(TABLE.iter().filter(|d| d.waits).all(|d| d.class == Class::Blocking));
        assert_eq!(lookup(22).unwrap().fd_pair, Some(0));
        assert_eq!(lookup(293).unwrap().fd_pair, Some(0));
        assert_eq!(lookup(53).unwrap().fd_pair, Some(3));
        // The broker performs what is proxied, plus the few emulated calls
        // warpd itself sends it; never memory, signal state, exec or exit.
        assert_eq!(
            with(|d| d.for_warpd),
            [
                "getitimer",
                "setitimer",
                "kill",
                "getppid",
                "rt_sigqueueinfo",
                "prctl",
                "tgkill",
                "rt_tgsigqueueinfo",
                "prlimit64",
                "close_range"
            ]
        );
        // mlock and its kin name the program's memory, which the broker's
        // addresses are not.
        for nr in [9, 10, 11, 12, 13, 14, 15, 25, 28, 56, 57, 58, 59, 60, 131, 149, 150, 151, 152, 158, 231, 325, 435] {
            assert!(!lookup(nr).unwrap().brokered(), "{nr}");
        }
        assert!(lookup(0).unwrap().brokered() && lookup(257).unwrap().brokered());
    }

    #[test]
    fn the_number_is_the_registers_low_half() {
        assert_eq!(number(39), 39);
        assert_eq!(number((1 << 32) + 39), 39);
        assert_eq!(number(u64::MAX), 0xffff_ffff);
        assert!(lookup(number(u64::MAX)).is_none());
    }

    #[test]
    fn unknown_ioctls_are_refused() {
        assert_eq!(ioctl_arg(0x5401), Some(Out(Fixed(36))));
        assert_eq!(ioctl_arg(0xdead), None);
        assert_eq!(fcntl_arg(5), Some(InOut(Fixed(32))));
        assert_eq!(fcntl_arg(999), None);
    }
}
