//! A guest thread: what Linux keeps per task rather than per process. The
//! process (`process.rs`) owns the address space, the signal dispositions,
//! the identity and the thread table; each thread has its own signal mask,
//! the signals sent to it alone, its alternate signal stack, the syscall
//! it is in, and, while another thread has the vCPU, its saved context.

use warp_proto::broker::Buffer;

use super::signals::ThreadSignals;
use crate::hv::{SyscallRequest, ThreadContext};

/// Why a thread is not runnable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wait {
    /// FUTEX_WAIT(_BITSET) on `addr` for the bits `bitset`, until `deadline`.
    Futex { addr: u64, bitset: u32, deadline: Option<Deadline> },
    /// rt_sigtimedwait for a signal in `set`; its siginfo goes to `info`
    /// (0: none) when one is taken. `signalfd`: a read of a signalfd
    /// (a signalfd_siginfo goes there, and the read returns its size).
    Signal { set: u64, info: u64, deadline: Option<Deadline>, signalfd: bool },
    /// rt_sigsuspend: with its temporary mask, for any signal it may take.
    Suspend,
    /// FUTEX_LOCK_PI(2) on `addr`: the lock is handed to it at an unlock.
    PiLock { addr: u64, deadline: Option<Deadline> },
    /// futex_waitv: on any of `addrs`; the call returns the index of the
    /// one woken.
    FutexV { addrs: Vec<u64>, deadline: Option<Deadline> },
    /// A call the broker performs on its own while other threads run
    /// (deferred): number `seq`, with the buffers the request named (what
    /// the completion writes goes there). `cancelled`: warpd asked for it
    /// to end (a signal came for the thread).
    Broker { seq: u64, buffers: Vec<Buffer>, cancelled: bool },
}

impl Wait {
    pub fn deadline(&self) -> Option<Deadline> {
        match self {
            Wait::Futex { deadline, .. }
            | Wait::Signal { deadline, .. }
            | Wait::PiLock { deadline, .. }
            | Wait::FutexV { deadline, .. } => *deadline,
            Wait::Suspend | Wait::Broker { .. } => None,
        }
    }

    /// What the waiting call returns when its deadline passes.
    pub fn timed_out(&self) -> i64 {
        match self {
            Wait::Futex { .. } | Wait::PiLock { .. } | Wait::FutexV { .. } => -110, // ETIMEDOUT
            Wait::Signal { .. } => -11,                                             // EAGAIN
            Wait::Suspend | Wait::Broker { .. } => -4,                              // EINTR (never: no deadline)
        }
    }
}

/// When a wait times out: a time on `clock` (a relative timeout is made
/// absolute when the wait begins).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    pub clock: u64,
    pub secs: i64,
    pub nanos: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thread {
    /// The thread id the program sees (gettid; the pid for the first thread).
    pub tid: u32,
    pub signals: ThreadSignals,
    /// The syscall the thread is in, from its entry until it returns
    /// (while it waits, too).
    pub syscall: Option<SyscallRequest>,
    /// Its registers and FPU state while it is off the vCPU.
    pub saved: Option<ThreadContext>,
    /// Set while it waits.
    pub wait: Option<Wait>,
    /// When its wait began, among all the process's waits (FIFO wake-ups).
    pub wait_order: u64,
    /// The result its waiting syscall returns once it is woken.
    pub woken: Option<i64>,
    /// CLONE_CHILD_CLEARTID / set_tid_address: cleared and woken at exit.
    pub clear_tid: u64,
    /// set_robust_list: the head of its list of robust futexes held.
    pub robust_list: u64,
    /// rt_sigsuspend: the mask to restore, which the first handler's
    /// frame saves (or which comes back at once if none runs).
    pub suspended_mask: Option<u64>,
    /// Its name (prctl PR_SET_NAME: at most 15 bytes), when it was given
    /// one; else the executable's.
    pub name: Option<Vec<u8>>,
}

impl Thread {
    pub fn new(tid: u32) -> Self {
        Thread {
            tid,
            signals: ThreadSignals::default(),
            syscall: None,
            saved: None,
            wait: None,
            wait_order: 0,
            woken: None,
            clear_tid: 0,
            robust_list: 0,
            suspended_mask: None,
            name: None,
        }
    }

    pub fn runnable(&self) -> bool {
        self.wait.is_none()
    }
}
