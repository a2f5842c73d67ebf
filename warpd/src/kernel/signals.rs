//! Signal state of the program: dispositions, the blocked mask and pending
//! signals. Delivery happens only at deterministic points: a handler runs
//! when the program is at a syscall boundary (so replay finds the same
//! point); a signal that arrives while the program computes kills it at
//! once when that is its action, else waits for the next syscall.

use super::abi;
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
    /// Run the program's handler.
    Handle(i32, SigAction),
}

#[derive(Debug)]
pub struct Signals {
    pub actions: [SigAction; NSIG],
    pub blocked: u64,
    pub pending: u64,
    pub altstack: [u8; 24],
}

impl Default for Signals {
    fn default() -> Self {
        // A new program has no alternate stack: SS_DISABLE (2) in ss_flags.
        let mut altstack = [0u8; 24];
        altstack[8] = 2;
        Signals { actions: [SigAction::default(); NSIG], blocked: 0, pending: 0, altstack }
    }
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

    pub fn raise(&mut self, sig: i32) {
        if (1..=NSIG as i32).contains(&sig) && !(self.is_ignored(sig) && self.blocked & bit(sig) == 0) {
            self.pending |= bit(sig);
        }
    }

    /// Takes the next deliverable signal and says what it does, or None
    /// when nothing pending may be delivered (or all of it is discarded).
    /// Without `handlers`, signals with a handler stay pending.
    pub fn deliver(&mut self, handlers: bool) -> Option<Delivery> {
        let mut skipped = 0u64;
        loop {
            let ready = self.pending & !self.blocked & !skipped;
            if ready == 0 {
                return None;
            }
            let sig = ready.trailing_zeros() as i32 + 1;
            let a = self.action(sig);
            if sig == abi::SIGKILL {
                self.pending &= !bit(sig);
                return Some(Delivery::Kill(sig));
            }
            match a.handler {
                SIG_IGN => self.pending &= !bit(sig),
                SIG_DFL => {
                    self.pending &= !bit(sig);
                    match default_action(sig) {
                        Default_::Terminate => return Some(Delivery::Kill(sig)),
                        // Job control is the terminal's business: the broker
                        // stops and continues itself; the program just runs on.
                        Default_::Ignore | Default_::Stop | Default_::Continue => {}
                    }
                }
                _ if !handlers => skipped |= bit(sig),
                _ => {
                    self.pending &= !bit(sig);
                    return Some(Delivery::Handle(sig, a));
                }
            }
        }
    }

    /// What the blocked mask becomes while a handler for `sig` runs.
    pub fn handler_mask(&self, sig: i32, a: &SigAction) -> u64 {
        let mut m = self.blocked | a.mask;
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
        FaultKind::Protection | FaultKind::Overflow => (abi::SIGSEGV, abi::SI_KERNEL),
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
    let n = match sig {
        abi::SIGHUP => "SIGHUP",
        abi::SIGINT => "SIGINT",
        abi::SIGQUIT => "SIGQUIT",
        abi::SIGILL => "SIGILL",
        abi::SIGTRAP => "SIGTRAP",
        abi::SIGABRT => "SIGABRT",
        abi::SIGBUS => "SIGBUS",
        abi::SIGFPE => "SIGFPE",
        abi::SIGKILL => "SIGKILL",
        abi::SIGUSR1 => "SIGUSR1",
        abi::SIGSEGV => "SIGSEGV",
        abi::SIGUSR2 => "SIGUSR2",
        abi::SIGPIPE => "SIGPIPE",
        abi::SIGALRM => "SIGALRM",
        abi::SIGTERM => "SIGTERM",
        _ => return format!("signal {sig}"),
    };
    n.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_terminate_and_ignore() {
        let mut s = Signals::default();
        s.raise(abi::SIGCHLD);
        assert_eq!(s.deliver(true), None);
        s.raise(abi::SIGINT);
        assert_eq!(s.deliver(true), Some(Delivery::Kill(abi::SIGINT)));
    }

    #[test]
    fn blocked_signals_wait() {
        let mut s = Signals { blocked: bit(abi::SIGABRT), ..Default::default() };
        s.raise(abi::SIGABRT);
        assert_eq!(s.deliver(true), None);
        s.blocked = 0;
        assert_eq!(s.deliver(true), Some(Delivery::Kill(abi::SIGABRT)));
    }

    #[test]
    fn ignored_and_handled() {
        let mut s = Signals::default();
        s.actions[(abi::SIGPIPE - 1) as usize].handler = SIG_IGN;
        s.raise(abi::SIGPIPE);
        assert_eq!(s.deliver(true), None);
        s.actions[(abi::SIGTERM - 1) as usize].handler = 0x401000;
        s.raise(abi::SIGTERM);
        // Without handlers (the program computes), it waits; then it runs.
        assert_eq!(s.deliver(false), None);
        assert_eq!(s.pending, bit(abi::SIGTERM));
        let a = s.action(abi::SIGTERM);
        assert_eq!(s.deliver(true), Some(Delivery::Handle(abi::SIGTERM, a)));
        assert_eq!(s.handler_mask(abi::SIGTERM, &a), bit(abi::SIGTERM));
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
