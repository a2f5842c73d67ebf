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
use std::time::{Duration, Instant};

use warp_proto::warp::Failure;

use crate::arch::x86_64::cpu::RFLAGS_TF;
use crate::arch::x86_64::probe::{patchable, repeated_string};
use crate::arch::x86_64::signal::SigInfo;
use crate::arch::x86_64::{port_io_start, software_interrupt, USER_TOP};
use crate::arch::Regs;
use crate::hv::{Capabilities, FaultKind, GuestFault, Kicker, SyscallRequest, Vcpu, Vm, VmExit};
use crate::interrupts::{
    point_patience, same_registers, same_watched, thread_cpu_ns, watch_words, InterruptPoint, Miss, PointWatch, Probe,
    SliceTimer, Written,
};
use crate::kernel::errno::Errno;
use crate::kernel::outside::{Arrival, Ending, Outside, OutsideError};
use crate::kernel::process::{Action, Process};
use crate::kernel::signals;
use crate::link::LinkError;
use crate::session::SessionError;

/// How many instructions recording steps on, at most, to reach one that
/// replay can put a jump over.
const SEEK_STEPS: usize = 32;

/// How many times in a row recording puts a point off (about a millisecond
/// each) before it takes one where replay needs a breakpoint.
const DEFER_POINTS: u32 = 50;

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
    /// A debugger's breakpoint ([`Guest::add_breakpoint`]) at `rip`: the
    /// thread stands at that instruction, not yet executed.
    Breakpoint { rip: u64 },
    /// With [`Guest::stop_at_faults`]: the program's instruction at `rip`
    /// raised a CPU exception that sends it `signal`; the next `step`
    /// handles it (the program's handler, or its end).
    Faulting { signal: i32, rip: u64 },
    /// A debugger's watchpoint on `addr` ([`Guest::add_watch`]) caught an
    /// access, just made.
    Watch { kind: WatchKind, addr: u64 },
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
    // Field order is drop order: the timers (which kick the vCPU) go
    // first, the vCPU before its VM, both before memory.
    timer: Option<SliceTimer>,
    point_watch: Option<PointWatch>,
    vcpu: Box<dyn Vcpu>,
    vm: Box<dyn Vm>,
    pub process: Process,
    caps: Capabilities,
    started: bool,
    single_step: bool,
    cancel: Option<Arc<Cancel>>,
    notes: Option<Sender<String>>,
    /// Pages written since the digest's last base (see `interrupts`).
    written: Written,
    /// Replay: the recorded interrupt point being looked for.
    probe: Option<Probe>,
    /// Replay: stepping over the probe's instruction after a pass that was
    /// not the point.
    probe_step: bool,
    /// Replay: points found whose memory digest differed from the recording's.
    memory_differed: u64,
    /// Recording: points put off in a row because no jump fit where the
    /// vCPU stopped.
    deferred: u32,
    /// When warpd last had control (a syscall, a fault, a point, a
    /// switch): how long a thread computed to reach a point.
    boundary_at: Instant,
    /// Replay: when the search for the current probe's point began.
    probe_since: Instant,
    /// A debugger's breakpoints, and the program's bytes under them while
    /// they are planted (only while the vCPU runs: everything else sees
    /// the program's own code).
    breakpoints: std::collections::BTreeMap<u64, Option<u8>>,
    /// The breakpoints the last run had planted.
    lifted: Vec<u64>,
    /// The breakpoint the next run leaves out (the thread stands on it).
    skip_breakpoint: Option<u64>,
    /// A debugger's watchpoints, and the pages the last run guarded for them.
    watches: Vec<debug::Watch>,
    guarded: Vec<u64>,
    /// Watchpoints stop before the access ([`Guest::watch_before`]).
    watch_first: bool,
    /// Report CPU exceptions before handling them (a debugger's stop).
    fault_stops: bool,
    /// The exception reported that the next `step` handles.
    held_fault: Option<GuestFault>,
    /// What the next checkpoint shares its pages with.
    snapshots: checkpoint::Snapshots,
    /// The last CPU exception of the program: where, the address for a
    /// memory fault, the signal it sent.
    last_fault: Option<(u64, Option<u64>, i32)>,
    /// Where the program was when it ended.
    end_rip: u64,
    /// The program's calls may take the exitless ring when nothing of the
    /// exit loop's needs them (`Outside::ring_arm`).
    exitless: bool,
    /// The last exit was a call of the ring's (its poller is then woken).
    ring_call_exited: bool,
    /// The child the last step's fork made, for the driver to run.
    forked: Option<fork::Forked>,
    /// A vfork's child: the gate its parent waits on.
    vfork_parent: Option<Arc<fork::VforkGate>>,
}

impl Guest {
    pub(crate) fn new(process: Process, vm: Box<dyn Vm>, vcpu: Box<dyn Vcpu>, caps: Capabilities) -> Self {
        Guest {
            timer: None,
            point_watch: None,
            vcpu,
            vm,
            process,
            caps,
            started: false,
            single_step: false,
            cancel: None,
            notes: None,
            written: Written::default(),
            probe: None,
            probe_step: false,
            memory_differed: 0,
            deferred: 0,
            boundary_at: Instant::now(),
            probe_since: Instant::now(),
            breakpoints: Default::default(),
            skip_breakpoint: None,
            lifted: Vec::new(),
            watches: Vec::new(),
            guarded: Vec::new(),
            watch_first: false,
            fault_stops: false,
            held_fault: None,
            snapshots: Default::default(),
            last_fault: None,
            end_rip: 0,
            exitless: false,
            ring_call_exited: false,
            forked: None,
            vfork_parent: None,
        }
    }

    /// Lets the program's calls take the exitless ring (the `Outside` has one).
    pub fn exitless(&mut self, on: bool) {
        self.exitless = on;
    }

    /// What the ring may serve in the next run: nothing while a debugger
    /// stops the program at instructions, watches memory or its faults
    /// (every call is then the exit loop's), else what the process allows.
    fn ring_allow(&self) -> Option<crate::kernel::outside::RingAllow> {
        let debugging = self.single_step
            || self.fault_stops
            || !self.breakpoints.is_empty()
            || !self.watches.is_empty()
            || self.probe_step;
        if !self.exitless || debugging {
            return None;
        }
        let mut allow = self.process.ring_allow()?;
        allow.wake = self.ring_call_exited;
        Some(allow)
    }

    /// Replay: a recorded point the program does not reach within
    /// `interrupts::point_patience` is reported as a divergence (a watchdog
    /// kicks the vCPU to check). Call it on the thread that steps the guest.
    pub fn watch_points(&mut self) -> Result<(), SessionError> {
        let w = PointWatch::new(self.vcpu.kicker())
            .map_err(|e| SessionError::Failed(Failure::Daemon, format!("starting the replay watchdog: {e}")))?;
        self.point_watch = Some(w);
        Ok(())
    }

    /// Recording: a thread that computes while others are ready loses the
    /// vCPU after `slice` (a timer kicks it). Call it on the thread that
    /// steps the guest.
    /// With `chaos`, each slice's length is drawn at random around it.
    pub fn preempt_every(&mut self, slice: Duration, chaos: Option<u64>) -> Result<(), SessionError> {
        let timer = SliceTimer::new(self.vcpu.kicker(), slice, chaos)
            .map_err(|e| SessionError::Failed(Failure::Daemon, format!("starting the slice timer: {e}")))?;
        self.timer = Some(timer);
        Ok(())
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

    /// The line for a program a signal killed (`program killed by SIGSEGV
    /// (address 0x0) at main (bug.c:37)`), where it was when a CPU
    /// exception sent that signal, and the same place as fields. `exe` is
    /// the executable image as read; `files` reads a library's.
    pub fn crash_line(
        &self,
        signal: i32,
        exe_path: &str,
        exe: &[u8],
        files: &mut crate::trace::symbols::Files<'_>,
    ) -> (String, Option<warp_proto::trace::CrashSite>) {
        // A CPU exception's signal: where it was raised; else (a signal
        // sent) where the program was when it came.
        let fault = match self.last_fault.filter(|f| f.2 == signal) {
            Some((rip, address, _)) => Some((rip, address)),
            None => (self.end_rip != 0).then_some((self.end_rip, None)),
        };
        let program = crate::trace::symbols::Program { exe_path, exe, auxv: &self.process.proc_info.auxv };
        crate::trace::symbols::crash_line(signal, fault, &program, &self.process.mm, files)
    }

    /// What stops the vCPU from another thread (call it on the thread
    /// that steps the guest: kicks are aimed at it).
    pub fn kicker(&mut self) -> Kicker {
        self.vcpu.kicker()
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

    fn cancelled(&self) -> bool {
        self.cancel.as_ref().is_some_and(|c| c.is_cancelled())
    }

    /// What a step that ran nothing of the program's to its end says.
    fn interrupted_stop(&self) -> Stop {
        if self.cancelled() {
            Stop::Paused
        } else {
            Stop::Interrupted
        }
    }

    /// Recording: the running thread's slice is over and another may run.
    fn slice_due(&self) -> bool {
        self.timer.as_ref().is_some_and(|t| t.due()) && self.process.sched.others_ready()
    }

    /// Runs the guest until the next exit and handles it.
    pub fn step(&mut self, outside: &mut dyn Outside) -> Result<Stop, SessionError> {
        match self.step_once(outside) {
            // A forked process killed from outside (its broker gone), in
            // whatever call it was making: recorded, and replayed, as its end.
            Err(SessionError::Outside(OutsideError::Killed)) => {
                let rip = self.vcpu.regs().map(|r| r.rip).unwrap_or(0);
                self.end(outside, Action::Killed(crate::kernel::abi::SIGKILL), rip)
            }
            other => other,
        }
    }

    fn step_once(&mut self, outside: &mut dyn Outside) -> Result<Stop, SessionError> {
        if !self.started {
            self.started = true;
            self.written.reset(self.vm.as_mut(), &self.process.mm)?;
            let first = self.vcpu.regs()?;
            let due = self.due(outside, &first, None, first.rax as i64)?;
            if let Err(stop) = self.resume(outside, due, first, 0)? {
                return Ok(stop);
            }
        }
        if self.cancelled() {
            return Ok(Stop::Paused);
        }
        if let Some(f) = self.held_fault.take() {
            return self.handle_fault(outside, &f);
        }
        // Replay: the next recorded event is a point inside computation.
        if self.probe.is_none() {
            if let Some(point) = outside.next_interrupt()? {
                self.probe_since = Instant::now();
                self.probe = Some(Probe::new(point, &mut self.process.mm).map_err(|_| {
                    SessionError::Outside(OutsideError::Trace(
                        "an interrupt point of the recording is not in the program's code".into(),
                    ))
                })?);
            }
        }
        if let Some(t) = &self.timer {
            // A waiting thread's timeout comes while this one computes.
            let ends = if self.process.format >= 4 && self.process.has_timed_waits() {
                self.process.deadlines().filter_map(|d| host_instant(d.clock, d.secs, d.nanos)).min()
            } else {
                None
            };
            t.wait_ends_at(ends);
            t.cpu_deadline(if self.process.format >= 4 { self.process.itimer_deadline() } else { None });
            t.enter(self.process.sched.others_ready());
        }
        self.plant_breakpoints();
        outside.ring_arm(self.ring_allow().as_ref());
        let exit = self.vcpu.run();
        self.lift_breakpoints();
        // The calls the ring served come before whatever this exit is.
        self.process.syscalls += outside.ring_collect(self.process.thread().tid)?;
        self.ring_call_exited = matches!(&exit, VmExit::Syscall(r) if warp_syscalls::ring::CALLS.contains(&r.number));
        if let Some(t) = &self.timer {
            t.leave();
        }
        if self.probe_step {
            if let Some(stop) = self.probe_stepped(&exit)? {
                return Ok(stop);
            }
        }
        self.dispatch(outside, exit)
    }

    fn handle_fault(&mut self, outside: &mut dyn Outside, f: &GuestFault) -> Result<Stop, SessionError> {
        let handled = self.fault(f, outside)?;
        self.flush_notes();
        match handled {
            Some(action) => self.end(outside, action, f.rip),
            None => Ok(Stop::Fault),
        }
    }

    /// Handles one exit of the vCPU.
    fn dispatch(&mut self, outside: &mut dyn Outside, exit: VmExit) -> Result<Stop, SessionError> {
        match exit {
            VmExit::Syscall(req) if req.finish => self.ring_finish(outside, req),
            VmExit::Syscall(mut req) => {
                if let Some(stop) = self.exitless_recorded(outside, &req)? {
                    return Ok(stop);
                }
                self.boundary_at = Instant::now();
                req.thread = self.process.thread().tid;
                let mut regs = self.vcpu.regs()?;
                if self.single_step {
                    // `syscall` saved the flags in r11 with our trap flag:
                    // the program's r11 is what it would be unstepped.
                    regs.r11 &= !RFLAGS_TF;
                }
                outside.syscall_entry(&req)?;
                let action = self.process.syscall(&req, &regs, self.vcpu.cpu(), outside)?;
                self.flush_notes();
                // Where the program resumes, unless a signal that was due
                // sends it into a handler first.
                let (resume, ret) = match action {
                    Action::Exec(new) => {
                        self.release_vfork_parent();
                        (new, 0)
                    }
                    Action::Fork(spec) => {
                        self.fork_child(&spec, &regs)?;
                        regs.finish_syscall(spec.pid as i64);
                        (regs, spec.pid as i64)
                    }
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
                // At the end of a slice, or when the thread yields, waits that
                // have timed out end and another thread may get the vCPU
                // (stepped or not: the schedule is the same).
                let tick = self.process.sched.tick();
                let slice_over = outside.slice_over(req.thread, self.slice_due())?;
                if tick || slice_over || matches!(action, Action::Yield(_)) {
                    if self.process.has_timed_waits() {
                        self.process.expire_timeouts(outside)?;
                    }
                    if self.process.sched.others_ready() {
                        let context = self.vcpu.context()?;
                        self.process.switch_out(context);
                        return self.switch(outside);
                    }
                }
                // Stepping over `syscall` ends where the program resumes.
                if self.single_step {
                    return Ok(Stop::SingleStep { rip: resume.rip });
                }
                Ok(Stop::Syscall { number: req.number })
            }
            VmExit::Fault(f) if self.is_guard_fault(&f) => self.step_guarded(outside, &f),
            VmExit::Fault(f) if self.is_breakpoint(&f) => {
                let mut regs = self.vcpu.regs()?;
                regs.rip = f.rip - 1;
                self.vcpu.set_regs(&regs)?;
                Ok(Stop::Breakpoint { rip: regs.rip })
            }
            VmExit::Fault(f) if self.probe.as_ref().is_some_and(|p| p.is_hit(&f)) => self.probe_hit(outside),
            VmExit::Fault(f) if self.fault_stops && f.user => {
                let signal = self.fault_signal(&f);
                self.held_fault = Some(f);
                Ok(Stop::Faulting { signal, rip: f.rip })
            }
            VmExit::Fault(f) => self.handle_fault(outside, &f),
            VmExit::SingleStep { rip } => Ok(Stop::SingleStep { rip }),
            VmExit::Interrupted => {
                // A forked process's broker gone: SIGKILL arrives here (`interrupted`).
                if outside.is_dead() && !outside.loss_is_sigkill() {
                    return Err(SessionError::Outside(OutsideError::Link(LinkError::Gone)));
                }
                let now = self.vcpu.regs()?;
                if let Some(p) = &self.probe {
                    let waited = self.probe_since.elapsed();
                    if waited > point_patience(p.point.computed_us) {
                        let (point, rip) = (p.point.clone(), p.program_rip(now.rip));
                        return Err(SessionError::Outside(outside.point_not_found(&point, rip, waited.as_secs())));
                    }
                }
                let preempt = self.slice_due();
                if now.rip >= USER_TOP {
                    // Inside warpd's guest-side stubs no point is taken: the
                    // signals wait, the timer kicks again soon.
                    if let Some(t) = &self.timer {
                        t.retry();
                    }
                    return Ok(self.interrupted_stop());
                }
                // A deferred call that completed wakes its thread here, and
                // it gets the vCPU (as Linux lets a woken thread preempt).
                let completion = outside.completions_waiting();
                let wait_ended = self.timer.as_ref().is_some_and(|t| t.take_wait_ended());
                let itimers = match self.timer.as_ref().is_some_and(|t| t.take_itimer_due()) {
                    true => self.process.itimers_due(thread_cpu_ns()),
                    false => 0,
                };
                if !preempt && !outside.signals_waiting() && !completion && !wait_ended && itimers == 0 {
                    return Ok(self.interrupted_stop());
                }
                // Replay finds the point fastest at an instruction a jump
                // can replace: step on to one (a few instructions at most).
                let mut now = now;
                let mut steps = 0;
                let mut repeating = false;
                let fits = loop {
                    let code = self.process.mm.peek_code(now.rip, 15);
                    if repeated_string(&code, now.rip) {
                        // Stepping runs one iteration at a time: the point
                        // is put off until the instruction has ended.
                        repeating = true;
                        break false;
                    }
                    if patchable(&code, now.rip).is_some() {
                        break true;
                    }
                    if steps == SEEK_STEPS {
                        break false;
                    }
                    steps += 1;
                    self.vcpu.set_single_step(true)?;
                    let exit = self.vcpu.run();
                    self.vcpu.set_single_step(self.single_step)?;
                    match exit {
                        VmExit::SingleStep { .. } => now = self.vcpu.regs()?,
                        // The program made a syscall or faulted first: that
                        // exit as any other (the point waits for the next kick).
                        other => {
                            self.clear_own_trap_flag(&other)?;
                            if let Some(t) = &self.timer {
                                t.retry();
                            }
                            return self.dispatch(outside, other);
                        }
                    }
                };
                // Where no jump fits (a loop of short instructions only),
                // replay would stop at every pass: take the point a little
                // later, somewhere else, unless that keeps failing.
                if !fits && (self.deferred < DEFER_POINTS || repeating) {
                    self.deferred += 1;
                    if let Some(t) = &self.timer {
                        t.retry();
                    }
                    return Ok(self.interrupted_stop());
                }
                self.deferred = 0;
                let arrived = outside.interrupted()?;
                // A handler runs, or another thread gets the vCPU, right
                // here: the point is recorded exactly enough for replay to
                // stop at it again.
                let fpu = self.vcpu.xsave()?;
                let (memory, pages) =
                    self.written.digest(self.vm.as_mut(), &self.process.mm, &fpu, self.process.format)?;
                let point = InterruptPoint {
                    thread: self.process.thread().tid,
                    regs: now,
                    memory,
                    pages,
                    signals: arrived.iter().map(|a| a.signo).collect(),
                    signal_infos: arrived.into_iter().map(|a| a.info).collect(),
                    preempted: preempt || completion || wait_ended,
                    watch: watch_words(&self.process.mm, &now),
                    computed_us: self.boundary_at.elapsed().as_micros() as u64,
                    itimers,
                };
                outside.interrupt(&point)?;
                self.at_point(outside, point)
            }
            VmExit::Failed(why) => {
                let rip = self.vcpu.regs().map(|r| r.rip).unwrap_or(0);
                Err(SessionError::Failed(Failure::Daemon, format!("the VM stopped: {why} (rip {rip:#x})")))
            }
        }
    }

    /// Replay: a call the ring served while recording, met on the exit path:
    /// answered as the ring did, with nothing of the exit path's (no
    /// signal delivered, no scheduling decision), as then; a write that
    /// found no reader ends as the ring's did (`ring_finish`).
    fn exitless_recorded(
        &mut self,
        outside: &mut dyn Outside,
        req: &SyscallRequest,
    ) -> Result<Option<Stop>, SessionError> {
        let Some(ret) = outside.ring_replayed(req, &self.process.mm)? else { return Ok(None) };
        self.boundary_at = Instant::now();
        self.process.syscalls += 1;
        let mut regs = self.vcpu.regs()?;
        if self.single_step {
            regs.r11 &= !RFLAGS_TF;
        }
        if warp_syscalls::ring::finishes(req.number, ret) {
            return Ok(Some(self.end_ring_call(outside, req, regs, ret)?));
        }
        regs.finish_syscall(ret);
        self.vcpu.set_regs(&regs)?;
        Ok(Some(Stop::Syscall { number: req.number }))
    }

    /// A call the exitless path performed and left to warpd (recorded, or
    /// answered, with the ring's other calls): its result goes back, with
    /// what it raises (SIGPIPE) and what is due at a syscall boundary.
    fn ring_finish(&mut self, outside: &mut dyn Outside, mut req: SyscallRequest) -> Result<Stop, SessionError> {
        self.boundary_at = Instant::now();
        req.thread = self.process.thread().tid;
        let ret = self.process.ring_result();
        let regs = self.vcpu.regs()?;
        self.end_ring_call(outside, &req, regs, ret)
    }

    /// The end of a ring call left to warpd (`regs` as at its `out`): its
    /// result back, the SIGPIPE it raises, what is due at the boundary.
    fn end_ring_call(
        &mut self,
        outside: &mut dyn Outside,
        req: &SyscallRequest,
        mut regs: Regs,
        ret: i64,
    ) -> Result<Stop, SessionError> {
        regs.finish_syscall(ret);
        self.process.sigpipe_if_broken(req.number, ret);
        let due = self.due(outside, &regs, None, ret)?;
        Ok(self.resume(outside, due, regs, req.rip)?.err().unwrap_or(Stop::Syscall { number: req.number }))
    }

    /// What happens at an interrupt point, recorded or found again: the
    /// signals taken there are delivered (handlers run from here), then the
    /// thread whose slice ended gives the vCPU up. The vCPU holds the
    /// point's registers.
    fn at_point(&mut self, outside: &mut dyn Outside, point: InterruptPoint) -> Result<Stop, SessionError> {
        self.boundary_at = Instant::now();
        // Before format 9 each point began a new base.
        if self.process.format < 9 {
            self.written.reset(self.vm.as_mut(), &self.process.mm)?;
        }
        self.process.poll_outside(outside)?;
        if point.itimers != 0 {
            self.process.itimers_fired(point.itimers);
        }
        for (i, &signo) in point.signals.iter().enumerate() {
            let info = point.signal_infos.get(i).cloned().unwrap_or_default();
            self.process.raise_outside(&Arrival { signo, info });
        }
        let regs = point.regs;
        let due = self.deliver(Some((&regs, None, regs.rax as i64)))?;
        if let Err(stop) = self.resume(outside, due, regs, regs.rip)? {
            return Ok(stop);
        }
        // A slice's end, a completion, or a waiting thread's timeout: waits
        // whose time has come end here, and the scheduler picks again.
        if point.preempted && self.process.format >= 4 && self.process.has_timed_waits() {
            self.process.expire_timeouts(outside)?;
        }
        if point.preempted && self.process.sched.others_ready() {
            let context = self.vcpu.context()?;
            self.process.switch_out(context);
            return self.switch(outside);
        }
        Ok(self.interrupted_stop())
    }

    /// Replay: the program passed the probe's instruction. The point when
    /// its registers and watched words are the recorded ones (the memory
    /// digest is then checked, a difference noted); else the program goes
    /// on through the stub, or runs the instruction once, stepped, without
    /// the breakpoint, and the probe waits for the next pass.
    fn probe_hit(&mut self, outside: &mut dyn Outside) -> Result<Stop, SessionError> {
        let Some(probe) = self.probe.as_mut() else {
            return Ok(Stop::Interrupted);
        };
        let mut regs = self.vcpu.regs()?;
        regs.rip = probe.site();
        if same_registers(&regs, &probe.point.regs) && same_watched(&self.process.mm, &probe.point.watch) {
            // The digest sees the program's own bytes at the site.
            probe.unplant(&self.process.mm).map_err(probe_lost)?;
            let fpu = self.vcpu.xsave()?;
            let (memory, pages) = self.written.digest(self.vm.as_mut(), &self.process.mm, &fpu, self.process.format)?;
            let probe = self.probe.take().expect("probed");
            let point = probe.point.clone();
            probe.release(&mut self.process.mm).map_err(probe_lost)?;
            if memory != point.memory {
                // Pages written since the last boundary can hold older
                // bytes the program got from the untrappable TSC or CPUID
                // (ld.so keeps a TSC reading on the stack): the point is
                // the first pass whose registers and watched words match,
                // and the difference is reported once.
                self.memory_differed += 1;
                if self.memory_differed == 1 {
                    outside.note(format!(
                        "at an interrupt point (thread {}, rip {:#x}) the memory written since the last boundary ({pages} pages) differs from the recording's: the point was found by its registers and the words its code reads. This host cannot trap rdtsc or CPUID, whose results programs keep in memory",
                        point.thread, point.regs.rip
                    ));
                }
            }
            self.vcpu.set_regs(&point.regs)?;
            outside.interrupt(&point)?;
            return self.at_point(outside, point);
        }
        match probe.missed(&mut self.process.mm, regs).map_err(probe_lost)? {
            Miss::Continue(regs) => self.vcpu.set_regs(&regs)?,
            Miss::Step(regs) => {
                self.vcpu.set_regs(&regs)?;
                self.vcpu.set_single_step(true)?;
                self.probe_step = true;
            }
        }
        Ok(Stop::Interrupted)
    }

    /// After warpd's own single step ended with another exit (the
    /// instruction made a syscall, faulted, or the vCPU was kicked first):
    /// the trap flag warpd set is not the program's, wherever it went.
    fn clear_own_trap_flag(&mut self, exit: &VmExit) -> Result<(), SessionError> {
        let mut r = self.vcpu.regs()?;
        let before = r;
        r.rflags &= !RFLAGS_TF;
        if matches!(exit, VmExit::Syscall(_)) {
            // `syscall` saved the flags, trap flag and all, in r11.
            r.r11 &= !RFLAGS_TF;
        }
        if r != before {
            self.vcpu.set_regs(&r)?;
        }
        Ok(())
    }

    /// Replay: the step over the probe's instruction ended with `exit`: the
    /// breakpoint goes back. A step that ended otherwise (the instruction
    /// faulted) is handled as that exit, without the trap flag.
    fn probe_stepped(&mut self, exit: &VmExit) -> Result<Option<Stop>, SessionError> {
        self.probe_step = false;
        self.vcpu.set_single_step(self.single_step)?;
        if let Some(p) = self.probe.as_mut() {
            p.plant(&self.process.mm).map_err(probe_lost)?;
        }
        match exit {
            // A debugger's step was this one too.
            VmExit::SingleStep { rip } if self.single_step => Ok(Some(Stop::SingleStep { rip: *rip })),
            VmExit::SingleStep { .. } => Ok(Some(Stop::Interrupted)),
            other => {
                self.clear_own_trap_flag(other)?;
                Ok(None)
            }
        }
    }

    /// Gives the vCPU to the next thread that can run (waiting outside
    /// when none can); a thread woken from a wait returns from its call
    /// there, with what is due at that boundary.
    fn switch(&mut self, outside: &mut dyn Outside) -> Result<Stop, SessionError> {
        if let Some(t) = &self.timer {
            t.disarm();
        }
        loop {
            // Waits whose deadline has passed end before anyone is picked.
            if self.process.has_timed_waits() && self.process.sched.others_ready() {
                self.process.expire_timeouts(outside)?;
            }
            // Deferred calls that completed: their threads can run.
            self.process.poll_outside(outside)?;
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
            self.boundary_at = Instant::now();
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
        // The base of the next interrupt point's memory digest, where a
        // preemption may come (a reset costs about a tenth of a syscall).
        if self.process.thread_count() > 1 {
            self.written.reset(self.vm.as_mut(), &self.process.mm)?;
        }
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
        self.end_rip = rip;
        self.release_vfork_parent();
        let ending = match action {
            Action::Exit(c) => Ending::Exited(c),
            Action::Killed(s) => Ending::Killed(s),
            Action::Return(_)
            | Action::Exec(_)
            | Action::Jump { .. }
            | Action::Wait
            | Action::ThreadExit
            | Action::Fork(_)
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
        let mut f = *f;
        let kind = self.fault_kind(&f);
        let signal = self.fault_signal_code(kind, f.address);
        let process = &mut self.process;
        if matches!(f.kind, FaultKind::InvalidOpcode | FaultKind::Protection)
            && software_interrupt(&process.mm.peek_code(f.rip, 2)) == Some(0x80)
        {
            process.limit(
                "int 0x80",
                format!(
                    "the program used int $0x80 (the 32-bit syscall ABI) at {:#x}, which Warpspeed does not support: it gets SIGSEGV as on a kernel without IA-32 emulation",
                    f.rip
                ),
            );
        }
        f.kind = kind;
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
        let Some((sig, code)) = signal else {
            return Err(SessionError::Failed(
                Failure::Daemon,
                format!("unexpected exception vector {} at {:#x}", f.vector, f.rip),
            ));
        };
        outside.fault(f, sig)?;
        let address = matches!(f.kind, FaultKind::Page { .. }).then_some(f.address);
        self.last_fault = Some((f.rip, address, sig));
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
        let info = SigInfo::fault(sig, code, f.address);
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

impl Guest {
    /// The kind of a user fault as Linux has it: `int n` faults whatever
    /// the backend reported (`int3` a breakpoint, the others a protection
    /// fault: there is no IA-32 emulation); from format 7, a page of a
    /// mapping the access may not use (PROT_NONE: its entries are not
    /// present) is an access error (SEGV_ACCERR), only an address no
    /// mapping holds is unmapped (SEGV_MAPERR).
    fn fault_kind(&self, f: &GuestFault) -> FaultKind {
        let p = &self.process;
        match f.kind {
            FaultKind::Page { present: false, write, fetch } if p.format >= 7 && p.mm.vma_at(f.address).is_some() => {
                FaultKind::Page { present: true, write, fetch }
            }
            FaultKind::InvalidOpcode | FaultKind::Protection => match software_interrupt(&p.mm.peek_code(f.rip, 2)) {
                Some(3) => FaultKind::Breakpoint,
                Some(_) => FaultKind::Protection,
                None => f.kind,
            },
            kind => kind,
        }
    }

    /// The signal and si_code a user fault of `kind` at `address` sends:
    /// Linux's for the kind, but SIGBUS (BUS_ADRERR) for a page of a file
    /// mapping past the file's end (from format 7); None for a fault a
    /// program cannot raise.
    fn fault_signal_code(&self, kind: FaultKind, address: u64) -> Option<(i32, i32)> {
        let p = &self.process;
        if matches!(kind, FaultKind::Page { .. }) && p.format >= 7 && p.mm.past_eof(address) {
            return Some((crate::kernel::abi::SIGBUS, crate::kernel::abi::BUS_ADRERR));
        }
        signals::for_fault(kind)
    }

    /// The signal a user fault sends the program.
    fn fault_signal(&self, f: &GuestFault) -> i32 {
        self.fault_signal_code(self.fault_kind(f), f.address).map_or(crate::kernel::abi::SIGSEGV, |(sig, _)| sig)
    }
}

/// When a time on host clock `clock` comes, as an instant (now if past).
fn host_instant(clock: u64, secs: i64, nanos: i64) -> Option<Instant> {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime into a local timespec.
    if unsafe { libc::clock_gettime(clock as libc::clockid_t, &mut now) } != 0 {
        return None;
    }
    let left = (secs as i128 - now.tv_sec as i128) * 1_000_000_000 + (nanos as i128 - now.tv_nsec as i128);
    Some(Instant::now() + Duration::from_nanos(left.clamp(0, u64::MAX as i128) as u64))
}

fn probe_lost(e: Errno) -> SessionError {
    SessionError::Failed(Failure::Daemon, format!("the replay's breakpoint could not be written ({e:?})"))
}

#[path = "machine_checkpoint.rs"]
mod checkpoint;
pub use checkpoint::Checkpoint;
#[path = "machine_debug.rs"]
mod debug;
#[path = "machine_fork.rs"]
mod fork;
pub use debug::WatchKind;
pub use fork::{start_forked, Forked};

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
