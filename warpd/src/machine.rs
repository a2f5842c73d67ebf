//! The exit loop as a value: a built [`Guest`] that whoever drives it (a
//! recording, a replay, later a scheduler or a gdb stub) runs one exit at a
//! time with [`Guest::step`], and stops from another thread with a
//! [`Cancel`].
//!
//! ```text
//!  step: Vcpu::run -> Syscall(req) -> Outside::syscall_entry -> Process::syscall
//!                                   -> Outside::syscall_exit -> signals due -> resume | end
//!                  -> Fault(f)     -> the signal Linux sends -> handler | end
//!                  -> Interrupted  -> signals from outside -> handler | end | paused
//!                  -> SingleStep   -> the driver's
//! ```
//!
//! Recording and replay run this same loop; only the `Outside` differs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

use warp_proto::warp::Failure;

use crate::arch::x86_64::signal::SigInfo;
use crate::arch::x86_64::{port_io_start, software_interrupt, USER_TOP};
use crate::arch::Regs;
use crate::hv::{Capabilities, FaultKind, GuestFault, Kicker, SyscallRequest, Vcpu, Vm, VmExit};
use crate::kernel::errno::Errno;
use crate::kernel::outside::{Ending, Outside, OutsideError};
use crate::kernel::process::{Action, Process};
use crate::kernel::signals;
use crate::link::LinkError;
use crate::session::SessionError;

/// Why [`Guest::step`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// A syscall was answered (the number as the program passed it) and the
    /// program resumes.
    Syscall { number: u64 },
    /// A CPU fault went to the program's handler.
    Fault,
    /// The vCPU was interrupted (a signal was taken, or nothing happened).
    Interrupted,
    /// The single step asked for with [`Guest::set_single_step`] is done.
    SingleStep { rip: u64 },
    /// [`Cancel::cancel`] was called; stepping again resumes.
    Paused,
    /// The scheduler gave the vCPU to thread `tid`.
    Switched { tid: u32 },
    /// The program ended.
    Ended(Ending),
}

/// Stops a running guest from another thread: the next `step` returns
/// [`Stop::Paused`] (at once if the vCPU is running; after the exit it is
/// handling otherwise).
#[derive(Default)]
pub struct Cancel {
    flag: AtomicBool,
    kicker: Mutex<Option<Kicker>>,
}

impl Cancel {
    pub fn new() -> Arc<Self> {
        Arc::new(Cancel::default())
    }

    pub fn cancel(&self) {
        self.flag.store(true, Ordering::SeqCst);
        if let Some(k) = self.kicker.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            k.kick();
        }
    }

    pub fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Clears a pause so that stepping goes on.
    pub fn resume(&self) {
        self.flag.store(false, Ordering::SeqCst);
    }

    fn arm(&self, k: Kicker) {
        *self.kicker.lock().unwrap_or_else(|e| e.into_inner()) = Some(k);
    }
}

/// A guest ready to run, or running: the process and its vCPU.
pub struct Guest {
    // Field order is drop order: the vCPU goes before its VM, both before memory.
    vcpu: Box<dyn Vcpu>,
    _vm: Box<dyn Vm>,
    pub process: Process,
    caps: Capabilities,
    started: bool,
    single_step: bool,
    cancel: Option<Arc<Cancel>>,
    notes: Option<Sender<String>>,
}

impl Guest {
    pub(crate) fn new(process: Process, vm: Box<dyn Vm>, vcpu: Box<dyn Vcpu>, caps: Capabilities) -> Self {
        Guest { vcpu, _vm: vm, process, caps, started: false, single_step: false, cancel: None, notes: None }
    }

    /// What the backend can do (the recording stores it).
    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// Lets `cancel` stop this guest. Call it on the thread that steps it.
    pub fn cancel_with(&mut self, cancel: Arc<Cancel>) {
        cancel.arm(self.vcpu.kicker());
        self.cancel = Some(cancel);
    }

    /// Sends the kernel's notes for the user (unknown syscalls, limits met) here.
    pub fn notes_to(&mut self, notes: Sender<String>) {
        self.notes = Some(notes);
    }

    /// VM exits so far.
    pub fn exits(&self) -> u64 {
        self.vcpu.exits()
    }

    /// The current thread's registers.
    pub fn regs(&self) -> Result<Regs, SessionError> {
        Ok(self.vcpu.regs()?)
    }

    /// Step one instruction on the next `step` (TF where the backend has no
    /// single-step of its own).
    pub fn set_single_step(&mut self, on: bool) -> Result<(), SessionError> {
        self.single_step = on;
        Ok(self.vcpu.set_single_step(on)?)
    }

    /// Runs the guest to its end.
    pub fn run(&mut self, outside: &mut dyn Outside) -> Result<Ending, SessionError> {
        loop {
            match self.step(outside)? {
                Stop::Ended(e) => return Ok(e),
                Stop::Paused => {
                    return Err(SessionError::Failed(Failure::Daemon, "the program was stopped".into()));
                }
                _ => {}
            }
        }
    }

    fn cancelled(&self) -> bool {
        self.cancel.as_ref().is_some_and(|c| c.is_cancelled())
    }

    /// Runs the guest until the next exit and handles it.
    pub fn step(&mut self, outside: &mut dyn Outside) -> Result<Stop, SessionError> {
        if !self.started {
            self.started = true;
            let first = self.vcpu.regs()?;
            let due = self.due(outside, &first, None, first.rax as i64)?;
            if let Err(stop) = self.resume(outside, due, first, 0)? {
                return Ok(stop);
            }
        }
        if self.cancelled() {
            return Ok(Stop::Paused);
        }
        match self.vcpu.run() {
            VmExit::Syscall(mut req) => {
                req.thread = self.process.thread().tid;
                let mut regs = self.vcpu.regs()?;
                outside.syscall_entry(&req)?;
                let action = self.process.syscall(&req, &regs, self.vcpu.cpu(), outside)?;
                self.flush_notes();
                // Where the program resumes, unless a signal that was due
                // sends it into a handler first.
                let (resume, ret) = match action {
                    Action::Exec(new) => (new, 0),
                    Action::Jump { regs: new, ret } => (new, ret),
                    Action::Return(r) | Action::Yield(r) => {
                        regs.finish_syscall(r);
                        (regs, r)
                    }
                    Action::Wait => {
                        // The thread waits in its call; its result goes in
                        // rax when it is woken.
                        regs.finish_syscall(0);
                        let mut context = self.vcpu.context()?;
                        context.regs = regs;
                        self.process.switch_out(context);
                        return self.switch(outside);
                    }
                    Action::ThreadExit => return self.switch(outside),
                    other => return self.end(outside, other, req.rip),
                };
                // A call a signal interrupted may start again after the handler.
                let interruptible = matches!(action, Action::Return(_));
                let resume = match self.return_from(outside, &req, resume, ret, interruptible)? {
                    Ok(resume) => resume,
                    Err(stop) => return Ok(stop),
                };
                // Stepping over `syscall` ends where the program resumes.
                if self.single_step {
                    return Ok(Stop::SingleStep { rip: resume.rip });
                }
                // At the end of a slice, or when the thread yields, waits that
                // have timed out end and another thread may get the vCPU.
                if self.process.sched.tick() || matches!(action, Action::Yield(_)) {
                    if self.process.has_timed_waits() {
                        self.process.expire_timeouts(outside)?;
                    }
                    if self.process.sched.others_ready() {
                        let context = self.vcpu.context()?;
                        self.process.switch_out(context);
                        return self.switch(outside);
                    }
                }
                Ok(Stop::Syscall { number: req.number })
            }
            VmExit::Fault(f) => {
                let handled = self.fault(&f, outside)?;
                self.flush_notes();
                match handled {
                    Some(action) => self.end(outside, action, f.rip),
                    None => Ok(Stop::Fault),
                }
            }
            VmExit::SingleStep { rip } => Ok(Stop::SingleStep { rip }),
            VmExit::Interrupted => {
                if outside.is_dead() {
                    return Err(SessionError::Outside(OutsideError::Link(LinkError::Gone)));
                }
                let now = self.vcpu.regs()?;
                for s in outside.interrupted(now.rip)? {
                    self.process.raise(s);
                }
                // In user code a handler runs right here, where the vCPU
                // stopped (the trace notes where); inside warpd's guest-side
                // stubs it waits for the next syscall.
                let at = (now.rip < USER_TOP).then_some((&now, None, now.rax as i64));
                let due = self.deliver(at)?;
                if let Err(stop) = self.resume(outside, due, now, now.rip)? {
                    return Ok(stop);
                }
                Ok(if self.cancelled() { Stop::Paused } else { Stop::Interrupted })
            }
            VmExit::Failed(why) => {
                let rip = self.vcpu.regs().map(|r| r.rip).unwrap_or(0);
                Err(SessionError::Failed(Failure::Daemon, format!("the VM stopped: {why} (rip {rip:#x})")))
            }
        }
    }

    /// Gives the vCPU to the next thread that can run (waiting outside
    /// when none can); a thread woken from a wait returns from its call
    /// there, with what is due at that boundary.
    fn switch(&mut self, outside: &mut dyn Outside) -> Result<Stop, SessionError> {
        loop {
            // Waits whose deadline has passed end before anyone is picked.
            if self.process.has_timed_waits() && self.process.sched.others_ready() {
                self.process.expire_timeouts(outside)?;
            }
            let Some(tid) = self.process.sched.pick() else {
                self.process.idle(outside)?;
                self.flush_notes();
                continue;
            };
            let Some((context, resumed)) = self.process.switch_in(tid) else {
                return Err(SessionError::Failed(
                    Failure::Daemon,
                    format!("thread {tid} was scheduled but cannot run"),
                ));
            };
            outside.schedule(tid)?;
            self.vcpu.set_context(&context)?;
            // The thread returns to user mode here: from its waiting call
            // if it was woken, else where it left off; what is due for it
            // (signals sent while it was off the vCPU) is delivered first.
            let regs = context.regs;
            let resumed = match resumed {
                Some((req, ret)) => self.return_from(outside, &req, Regs { rax: ret as u64, ..regs }, ret, true)?,
                None => {
                    let due = self.due(outside, &regs, None, regs.rax as i64)?;
                    self.resume(outside, due, regs, regs.rip)?
                }
            };
            return Ok(match resumed {
                Ok(_) => Stop::Switched { tid },
                Err(stop) => stop,
            });
        }
    }

    /// A syscall returns `ret` with the program resuming at `resume`: the
    /// exit is recorded, then what is due at that boundary decides where
    /// it goes on (`interruptible`: an EINTR may restart the call).
    fn return_from(
        &mut self,
        outside: &mut dyn Outside,
        req: &SyscallRequest,
        resume: Regs,
        ret: i64,
        interruptible: bool,
    ) -> Result<Result<Regs, Stop>, SessionError> {
        outside.syscall_exit(req.number, ret, req.rip)?;
        let interrupted = (interruptible && ret == Errno::EINTR.ret()).then_some(req.number);
        let due = self.due(outside, &resume, interrupted, ret)?;
        self.resume(outside, due, resume, req.rip)
    }

    /// Goes on as what was due decided: into a handler, to the program's
    /// end (recorded, with `rip` where it was), or at `resume`. The
    /// registers the program resumes with, or why it stopped.
    fn resume(
        &mut self,
        outside: &mut dyn Outside,
        due: Option<Action>,
        resume: Regs,
        rip: u64,
    ) -> Result<Result<Regs, Stop>, SessionError> {
        let regs = match due {
            Some(Action::Jump { regs, .. }) => regs,
            Some(a) => return Ok(Err(self.end(outside, a, rip)?)),
            None => resume,
        };
        self.vcpu.set_regs(&regs)?;
        Ok(Ok(regs))
    }

    /// Records the end and says how the program ended.
    fn end(&mut self, outside: &mut dyn Outside, action: Action, rip: u64) -> Result<Stop, SessionError> {
        self.flush_notes();
        let ending = match action {
            Action::Exit(c) => Ending::Exited(c),
            Action::Killed(s) => Ending::Killed(s),
            Action::Return(_)
            | Action::Exec(_)
            | Action::Jump { .. }
            | Action::Wait
            | Action::ThreadExit
            | Action::Yield(_) => {
                return Err(SessionError::Failed(Failure::Daemon, "the program ended mid-syscall".into()))
            }
        };
        outside.end(ending, rip)?;
        Ok(Stop::Ended(ending))
    }

    /// What is due at a syscall boundary (`boundary`: the registers the
    /// program resumes with; `interrupted`: the number register of a call a
    /// signal interrupted; `ret`: its result), decided in one place for
    /// every boundary. Signals the recording took while the program
    /// computed come first (replay only): the recording ran a handler where
    /// the vCPU stopped; replay runs it here, at the boundary before that point.
    fn due(
        &mut self,
        outside: &mut dyn Outside,
        boundary: &Regs,
        interrupted: Option<u64>,
        ret: i64,
    ) -> Result<Option<Action>, SessionError> {
        for s in outside.pending_async()? {
            self.process.raise(s);
        }
        self.deliver(Some((boundary, interrupted, ret)))
    }

    /// Delivers every deliverable signal, as Linux does on the way back to
    /// user mode: each handler's frame goes on top of the last (only the
    /// first can restart the interrupted call). `at` as for
    /// `Process::deliver_signals`.
    fn deliver(&mut self, at: Option<(&Regs, Option<u64>, i64)>) -> Result<Option<Action>, SessionError> {
        let Some((first, mut interrupted, ret)) = at else {
            return Ok(self.process.deliver_signals(None, self.vcpu.cpu())?);
        };
        let mut resume = *first;
        let mut entered = None;
        loop {
            match self.process.deliver_signals(Some((&resume, interrupted, ret)), self.vcpu.cpu())? {
                None => return Ok(entered),
                Some(Action::Jump { regs, ret }) => {
                    resume = regs;
                    interrupted = None;
                    entered = Some(Action::Jump { regs, ret });
                }
                Some(other) => return Ok(Some(other)),
            }
        }
    }

    /// A note that starts with a newline tells warpctl to end the program's
    /// unfinished line first.
    fn flush_notes(&mut self) {
        let p = &mut self.process;
        for n in p.notes.drain(..) {
            if let Some(tx) = &self.notes {
                let nl = if p.stderr_mid_line { "\n" } else { "" };
                p.stderr_mid_line = false;
                let _ = tx.send(format!("{nl}{n}"));
            }
        }
    }

    /// A CPU exception in the program: the signal Linux would send, to the
    /// program's handler or as its end. None when a handler runs.
    fn fault(&mut self, f: &GuestFault, outside: &mut dyn Outside) -> Result<Option<Action>, SessionError> {
        if !f.user {
            return Err(SessionError::Failed(
                Failure::Daemon,
                format!("exception {} in warpd's guest kernel code at {:#x}", f.vector, f.rip),
            ));
        }
        let process = &mut self.process;
        // `int n` faults as Linux has it whatever the backend reported.
        let mut f = *f;
        if matches!(f.kind, FaultKind::InvalidOpcode | FaultKind::Protection) {
            match software_interrupt(&process.mm.peek_code(f.rip, 2)) {
                Some(3) => f.kind = FaultKind::Breakpoint,
                Some(0x80) => {
                    process.notes.push(format!(
                        "the program used int $0x80 (the 32-bit syscall ABI) at {:#x}, which Warpspeed does not support; it gets SIGSEGV as on a kernel without IA-32 emulation",
                        f.rip
                    ));
                    f.kind = FaultKind::Protection;
                }
                Some(_) => f.kind = FaultKind::Protection,
                None => {}
            }
        }
        // Port I/O: the fault is at the instruction, wherever the backend saw it.
        let mut at = None;
        if let FaultKind::PortIo { rip_is_after: true } = f.kind {
            let code = process.mm.peek_code(f.rip.wrapping_sub(3), 3);
            let before = [
                code.first().copied().unwrap_or(0),
                code.get(1).copied().unwrap_or(0),
                code.get(2).copied().unwrap_or(0),
            ];
            f.rip = port_io_start(f.rip, before);
            at = Some(f.rip);
        }
        let f = &f;
        let Some((sig, code)) = signals::for_fault(f.kind) else {
            return Err(SessionError::Failed(
                Failure::Daemon,
                format!("unexpected exception vector {} at {:#x}", f.vector, f.rip),
            ));
        };
        outside.fault(f, sig)?;
        let detail = if matches!(f.kind, FaultKind::Page { .. }) {
            format!(" at address {:#x}", f.address)
        } else {
            String::new()
        };
        process.notes.push(format!(
            "{} (CPU exception {}){} at rip {:#x}",
            signals::name(sig),
            f.vector,
            detail,
            f.rip
        ));

        // The program's handler, if it has one, with the faulting context
        // saved in its frame.
        let mut resume = self.vcpu.regs()?;
        if let Some(rip) = at {
            resume.rip = rip;
        }
        let info = SigInfo { signo: sig, code, pid: 0, uid: 0, addr: Some(f.address) };
        match self.process.fault_handler(sig, info, &resume, self.vcpu.cpu())? {
            Some(Action::Jump { regs: entry, .. }) => {
                self.vcpu.set_regs(&entry)?;
                Ok(None)
            }
            Some(other) => Ok(Some(other)),
            None => Ok(Some(Action::Killed(sig))),
        }
    }
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
