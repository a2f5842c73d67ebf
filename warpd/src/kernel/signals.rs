//! Signal state of the program: dispositions, the blocked mask and pending
//! signals. Delivery happens only at deterministic points: a handler runs
//! when the program is at a syscall boundary (so replay finds the same
//! point); a signal that arrives while the program computes kills it at
//! once when that is its action, else waits for the next syscall.

use std::collections::{BTreeMap, VecDeque};

use super::abi;
use crate::arch::x86_64::signal::SigInfo;
use crate::hv::FaultKind;

pub use abi::NSIG;
pub const SIG_DFL: u64 = 0;
pub const SIG_IGN: u64 = 1;

/// The kernel's `struct sigaction` for rt_sigaction on x86_64.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SigAction {
    pub handler: u64,
    pub flags: u64,
    pub restorer: u64,
    pub mask: u64,
}

impl SigAction {
    pub fn to_bytes(self) -> [u8; 32] {
        let mut b = [0u8; 32];
        for (i, w) in [self.handler, self.flags, self.restorer, self.mask].iter().enumerate() {
            b[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
        }
        b
    }
    pub fn from_bytes(b: &[u8; 32]) -> Self {
        let w = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        SigAction { handler: w(0), flags: w(1), restorer: w(2), mask: w(3) }
    }
}

/// What a signal does by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Default_ {
    Terminate,
    Ignore,
    Stop,
    Continue,
}

pub fn default_action(sig: i32) -> Default_ {
    match sig {
        abi::SIGCHLD | abi::SIGURG | abi::SIGWINCH => Default_::Ignore,
        abi::SIGSTOP | abi::SIGTSTP | abi::SIGTTIN | abi::SIGTTOU => Default_::Stop,
        abi::SIGCONT => Default_::Continue,
        _ => Default_::Terminate,
    }
}

pub fn bit(sig: i32) -> u64 {
    1u64 << (sig - 1)
}

/// What delivering the next signal means for the program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// The program dies of this signal.
    Kill(i32),
    /// Run the program's handler, with the siginfo the signal came with
    /// (None: the sender's default, SI_USER).
    Handle(i32, SigAction, Option<SigInfo>),
}

/// What a process holds of signals: the dispositions its threads share and
/// the signals sent to the process as a whole.
#[derive(Clone, Debug)]
pub struct Signals {
    pub actions: [SigAction; NSIG],
    /// Process-directed pending signals (kill, the terminal, the broker).
    pub pending: u64,
    /// The siginfo of those that came with one (timers, sigqueue, kill).
    pub info: BTreeMap<i32, SigInfo>,
    /// Realtime signals raised again while pending: queued, each with its
    /// siginfo (None: from outside), behind the one in `pending`/`info`.
    pub queued: BTreeMap<i32, VecDeque<Option<SigInfo>>>,
}

impl Default for Signals {
    fn default() -> Self {
        Signals { actions: [SigAction::default(); NSIG], pending: 0, info: BTreeMap::new(), queued: BTreeMap::new() }
    }
}

/// The first realtime signal: from here on, signals queue (signal(7)).
pub const SIGRTMIN: i32 = 32;
/// How many instances of realtime signals may wait in one queue (Linux's
/// RLIMIT_SIGPENDING is per user and larger; a bound is what matters).
const QUEUE_MAX: usize = 4096;

/// What a thread holds of signals: its mask, the signals sent to it alone
/// (tgkill, SIGPIPE, faults) and its alternate stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadSignals {
    pub blocked: u64,
    pub pending: u64,
    /// The siginfo of those that came with one.
    pub info: BTreeMap<i32, SigInfo>,
    /// Realtime signals queued behind the pending one (see `Signals::queued`).
    pub queued: BTreeMap<i32, VecDeque<Option<SigInfo>>>,
    /// The `stack_t` sigaltstack set (ss_sp, ss_flags, ss_size).
    pub altstack: [u8; 24],
}

impl Default for ThreadSignals {
    fn default() -> Self {
        // A new thread has no alternate stack: SS_DISABLE in ss_flags.
        let mut altstack = [0u8; 24];
        altstack[8] = abi::SS_DISABLE as u8;
        ThreadSignals { blocked: 0, pending: 0, info: BTreeMap::new(), queued: BTreeMap::new(), altstack }
    }
}

impl ThreadSignals {
    /// Sets the mask; SIGKILL and SIGSTOP cannot be blocked.
    pub fn set_blocked(&mut self, mask: u64) {
        self.blocked = mask & !(bit(abi::SIGKILL) | bit(abi::SIGSTOP));
    }
}

/// Who a signal is sent to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Process,
    Thread,
}

impl Signals {
    pub fn action(&self, sig: i32) -> SigAction {
        self.actions[(sig - 1) as usize]
    }

    /// Whether raising `sig` now would be discarded (ignored, explicitly or by default).
    pub fn is_ignored(&self, sig: i32) -> bool {
        let a = self.action(sig);
        a.handler == SIG_IGN || (a.handler == SIG_DFL && default_action(sig) == Default_::Ignore)
    }

    /// Makes `sig` pending for the process or for thread `t`; an ignored
    /// signal the thread does not block is discarded at once, as on Linux.
    pub fn raise(&mut self, sig: i32, to: Target, t: &mut ThreadSignals) {
        self.raise_info(sig, to, t, None);
    }

    /// As `raise`, with the siginfo it comes with. A standard signal
    /// already pending keeps the siginfo it came with first; a realtime one
    /// queues another instance.
    pub fn raise_info(&mut self, sig: i32, to: Target, t: &mut ThreadSignals, info: Option<SigInfo>) {
        if !(1..=NSIG as i32).contains(&sig) || (self.is_ignored(sig) && t.blocked & bit(sig) == 0) {
            return;
        }
        let (pending, infos, queued) = match to {
            Target::Process => (&mut self.pending, &mut self.info, &mut self.queued),
            Target::Thread => (&mut t.pending, &mut t.info, &mut t.queued),
        };
        if *pending & bit(sig) == 0 {
            *pending |= bit(sig);
            match info {
                Some(i) => infos.insert(sig, i),
                None => infos.remove(&sig),
            };
        } else if sig >= SIGRTMIN {
            let q = queued.entry(sig).or_default();
            if q.len() < QUEUE_MAX {
                q.push_back(info);
            }
        }
    }

    /// Takes pending `sig` from thread `t` or else the process: its siginfo
    /// (a queued instance of a realtime signal stays pending).
    pub fn take(&mut self, sig: i32, t: &mut ThreadSignals) -> Option<SigInfo> {
        let (pending, infos, queued) = if t.pending & bit(sig) != 0 {
            (&mut t.pending, &mut t.info, &mut t.queued)
        } else {
            (&mut self.pending, &mut self.info, &mut self.queued)
        };
        let taken = infos.remove(&sig);
        match queued.get_mut(&sig).and_then(|q| q.pop_front()) {
            Some(next) => {
                if let Some(i) = next {
                    infos.insert(sig, i);
                }
            }
            None => *pending &= !bit(sig),
        }
        taken
    }

    /// Whether a signal thread `t` does not block is pending for it.
    pub fn deliverable(&self, t: &ThreadSignals) -> bool {
        (self.pending | t.pending) & !t.blocked != 0
    }

    /// Forgets a pending `sig` everywhere (it became ignored).
    pub fn discard(&mut self, sig: i32, t: &mut ThreadSignals) {
        self.pending &= !bit(sig);
        t.pending &= !bit(sig);
        self.info.remove(&sig);
        t.info.remove(&sig);
        self.queued.remove(&sig);
        t.queued.remove(&sig);
    }

    /// Takes the next signal thread `t` may be given and says what it
    /// does, or None when nothing pending may be delivered (or all of it
    /// is discarded). Without `handlers`, signals with a handler stay
    /// pending. The thread's own signals come before the process's.
    pub fn deliver(&mut self, t: &mut ThreadSignals, handlers: bool) -> Option<Delivery> {
        let mut skipped = 0u64;
        loop {
            let own = t.pending & !t.blocked & !skipped;
            let shared = self.pending & !t.blocked & !skipped;
            let ready = if own != 0 { own } else { shared };
            if ready == 0 {
                return None;
            }
            let sig = ready.trailing_zeros() as i32 + 1;
            let take = |s: &mut Self, t: &mut ThreadSignals| s.take(sig, t);
            let a = self.action(sig);
            if sig == abi::SIGKILL {
                take(self, t);
                return Some(Delivery::Kill(sig));
            }
            match a.handler {
                SIG_IGN => {
                    take(self, t);
                }
                SIG_DFL => {
                    take(self, t);
                    match default_action(sig) {
                        Default_::Terminate => return Some(Delivery::Kill(sig)),
                        // Job control is the terminal's business: the broker
                        // stops and continues itself; the program just runs on.
                        Default_::Ignore | Default_::Stop | Default_::Continue => {}
                    }
                }
                _ if !handlers => skipped |= bit(sig),
                _ => {
                    let info = take(self, t);
                    return Some(Delivery::Handle(sig, a, info));
                }
            }
        }
    }

    /// What thread `t`'s mask becomes while a handler for `sig` runs.
    pub fn handler_mask(&self, t: &ThreadSignals, sig: i32, a: &SigAction) -> u64 {
        let mut m = t.blocked | a.mask;
        if a.flags & SA_NODEFER == 0 {
            m |= bit(sig);
        }
        m & !(bit(abi::SIGKILL) | bit(abi::SIGSTOP))
    }
}

pub use abi::{SA_NODEFER, SA_ONSTACK, SA_RESETHAND, SA_RESTART, SA_RESTORER, SA_SIGINFO};

/// The signal and si_code Linux sends for a CPU fault taken in user mode,
/// or None for one a user program cannot raise.
pub fn for_fault(kind: FaultKind) -> Option<(i32, i32)> {
    Some(match kind {
        FaultKind::Page { present: true, .. } => (abi::SIGSEGV, abi::SEGV_ACCERR),
        FaultKind::Page { present: false, .. } => (abi::SIGSEGV, abi::SEGV_MAPERR),
        FaultKind::Protection | FaultKind::Overflow | FaultKind::PortIo { .. } => (abi::SIGSEGV, abi::SI_KERNEL),
        FaultKind::InvalidOpcode => (abi::SIGILL, abi::ILL_ILLOPN),
        FaultKind::Divide => (abi::SIGFPE, abi::FPE_INTDIV),
        FaultKind::FloatingPoint => (abi::SIGFPE, abi::SI_KERNEL),
        FaultKind::Breakpoint => (abi::SIGTRAP, abi::SI_KERNEL),
        FaultKind::Debug => (abi::SIGTRAP, abi::TRAP_TRACE),
        FaultKind::Alignment => (abi::SIGBUS, abi::BUS_ADRALN),
        FaultKind::Stack => (abi::SIGBUS, abi::SI_KERNEL),
        FaultKind::Other(_) => return None,
    })
}

/// The name Linux gives a signal, for messages.
pub fn name(sig: i32) -> String {
    warp_common::signals::name_or_number(sig)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_terminate_and_ignore() {
        let (mut s, mut t) = (Signals::default(), ThreadSignals::default());
        s.raise(abi::SIGCHLD, Target::Process, &mut t);
        assert_eq!(s.deliver(&mut t, true), None);
        s.raise(abi::SIGINT, Target::Process, &mut t);
        assert_eq!(s.deliver(&mut t, true), Some(Delivery::Kill(abi::SIGINT)));
    }

    #[test]
    fn blocked_signals_wait() {
        let mut s = Signals::default();
        let mut t = ThreadSignals { blocked: bit(abi::SIGABRT), ..Default::default() };
        s.raise(abi::SIGABRT, Target::Thread, &mut t);
        assert_eq!(s.deliver(&mut t, true), None);
        assert!(!s.deliverable(&t));
        t.blocked = 0;
        assert!(s.deliverable(&t));
        assert_eq!(s.deliver(&mut t, true), Some(Delivery::Kill(abi::SIGABRT)));
    }

    #[test]
    fn ignored_and_handled() {
        let (mut s, mut t) = (Signals::default(), ThreadSignals::default());
        s.actions[(abi::SIGPIPE - 1) as usize].handler = SIG_IGN;
        s.raise(abi::SIGPIPE, Target::Thread, &mut t);
        assert_eq!(s.deliver(&mut t, true), None);
        s.actions[(abi::SIGTERM - 1) as usize].handler = 0x401000;
        s.raise(abi::SIGTERM, Target::Process, &mut t);
        // Without handlers (the program computes), it waits; then it runs.
        assert_eq!(s.deliver(&mut t, false), None);
        assert_eq!(s.pending, bit(abi::SIGTERM));
        let a = s.action(abi::SIGTERM);
        assert_eq!(s.deliver(&mut t, true), Some(Delivery::Handle(abi::SIGTERM, a, None)));
        assert_eq!(s.handler_mask(&t, abi::SIGTERM, &a), bit(abi::SIGTERM));
    }

    #[test]
    fn a_threads_own_signals_come_first_and_leave_the_processs() {
        let (mut s, mut t) = (Signals::default(), ThreadSignals::default());
        for sig in [abi::SIGUSR1, abi::SIGUSR2] {
            s.actions[(sig - 1) as usize].handler = 0x401000;
        }
        s.raise(abi::SIGUSR1, Target::Process, &mut t);
        s.raise(abi::SIGUSR2, Target::Thread, &mut t);
        assert_eq!((s.pending, t.pending), (bit(abi::SIGUSR1), bit(abi::SIGUSR2)));
        assert!(matches!(s.deliver(&mut t, true), Some(Delivery::Handle(sig, _, _)) if sig == abi::SIGUSR2));
        assert!(matches!(s.deliver(&mut t, true), Some(Delivery::Handle(sig, _, _)) if sig == abi::SIGUSR1));
        assert_eq!((s.pending, t.pending), (0, 0));
    }

    #[test]
    fn realtime_signals_queue_with_their_siginfo_and_standard_ones_do_not() {
        let (mut s, mut t) = (Signals::default(), ThreadSignals::default());
        let rt = SIGRTMIN + 2;
        for sig in [rt, abi::SIGUSR1] {
            s.actions[(sig - 1) as usize].handler = 0x401000;
        }
        for v in 1..=3u64 {
            s.raise_info(rt, Target::Process, &mut t, Some(SigInfo::timer(rt, 0, 0, v)));
            s.raise_info(abi::SIGUSR1, Target::Process, &mut t, Some(SigInfo::timer(abi::SIGUSR1, 0, 0, v)));
        }
        let mut got = Vec::new();
        while let Some(Delivery::Handle(sig, _, info)) = s.deliver(&mut t, true) {
            got.push((sig, info.map(|i| u64::from_le_bytes(i.fields[8..16].try_into().unwrap()))));
        }
        // SIGUSR1 (10) once, with the first value; the realtime one three times, in order.
        assert_eq!(got, [(abi::SIGUSR1, Some(1)), (rt, Some(1)), (rt, Some(2)), (rt, Some(3))]);
        assert_eq!(s.pending, 0);
    }

    #[test]
    fn faults_map_to_linux_signals() {
        assert_eq!(for_fault(FaultKind::Page { present: false, write: true, fetch: false }), Some((abi::SIGSEGV, 1)));
        assert_eq!(for_fault(FaultKind::Page { present: true, write: true, fetch: false }), Some((abi::SIGSEGV, 2)));
        assert_eq!(for_fault(FaultKind::InvalidOpcode).map(|f| f.0), Some(abi::SIGILL));
        assert_eq!(for_fault(FaultKind::Divide), Some((abi::SIGFPE, 1)));
        assert_eq!(for_fault(FaultKind::Breakpoint), Some((abi::SIGTRAP, 0x80)));
        assert_eq!(for_fault(FaultKind::Alignment).map(|f| f.0), Some(abi::SIGBUS));
        assert_eq!(for_fault(FaultKind::Other(2)), None);
    }

    #[test]
    fn sigaction_bytes_round_trip() {
        let a = SigAction { handler: 1, flags: 0x0400_0000, restorer: 3, mask: 4 };
        assert_eq!(SigAction::from_bytes(&a.to_bytes()), a);
    }
}
