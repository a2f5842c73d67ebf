//! A guest thread: what Linux keeps per task rather than per process. The
//! process (`process.rs`) owns the address space, the signal dispositions,
//! the identity and the thread table; each thread has its own signal mask,
//! the signals sent to it alone, its alternate signal stack and the
//! syscall it is in. Today a process has one thread; the scheduler adds
//! more.

use super::signals::ThreadSignals;
use crate::hv::SyscallRequest;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thread {
    /// The thread id the program sees (gettid; the pid for the first thread).
    pub tid: u32,
    pub signals: ThreadSignals,
    /// The syscall the thread is in, from its entry until it returns.
    pub syscall: Option<SyscallRequest>,
}

impl Thread {
    pub fn new(tid: u32) -> Self {
        Thread { tid, signals: ThreadSignals::default(), syscall: None }
    }
}
