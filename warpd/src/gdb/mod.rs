//! Debugging a replay with gdb: a gdbstub target over a [`Guest`] replayed
//! from its trace.
//!
//! ```text
//!  warpctl (gdb's socket) --Debug stream--> input bytes -> Conn -> GdbStub
//!                                           each chunk kicks the vCPU (Cancel)
//!  GdbStub -> Debuggee: registers, memory (the program's bytes, never our
//!             int3), breakpoints, resume -> Guest::step until a stop gdb
//!             wants: a breakpoint, a step done, a fault (before its signal is
//!             delivered), the end, or bytes from gdb (Ctrl-C)
//!  Conn -> ReplayOutput::Gdb -> the stream -> warpctl -> gdb
//! ```
//!
//! Debugging does not change what is replayed: breakpoints are planted only
//! while the vCPU runs, reads see the program's bytes, and every syscall is
//! still checked against the trace. What the user changes (memory or
//! registers) is said once, and a divergence after it is reported as
//! caused by that change.

mod arch;
mod timeline;

use std::collections::{BTreeSet, VecDeque};
use std::marker::PhantomData;
use std::num::NonZeroUsize;
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::sync::Arc;

use gdbstub::common::{Signal, Tid};
use gdbstub::conn::{Connection, ConnectionExt};
use gdbstub::stub::run_blocking::{BlockingEventLoop, Event, WaitForStopReasonError};
use gdbstub::stub::{GdbStub, MultiThreadStopReason};
use gdbstub::target::ext::auxv::{Auxv, AuxvOps};
use gdbstub::target::ext::base::multithread::{
    MultiThreadBase, MultiThreadResume, MultiThreadResumeOps, MultiThreadSchedulerLocking,
    MultiThreadSchedulerLockingOps, MultiThreadSingleStep, MultiThreadSingleStepOps,
};
use gdbstub::target::ext::base::reverse_exec::{
    ReplayLogPosition, ReverseCont, ReverseContOps, ReverseStep, ReverseStepOps,
};
use gdbstub::target::ext::base::BaseOps;
use gdbstub::target::ext::breakpoints::{
    self, Breakpoints, BreakpointsOps, HwWatchpoint, HwWatchpointOps, SwBreakpoint, SwBreakpointOps,
};
use gdbstub::target::ext::exec_file::{ExecFile, ExecFileOps};
use gdbstub::target::ext::monitor_cmd::{outputln, ConsoleOutput, MonitorCmd, MonitorCmdOps};
use gdbstub::target::ext::thread_extra_info::{ThreadExtraInfo, ThreadExtraInfoOps};
use gdbstub::target::{Target, TargetError, TargetResult};

use crate::hv::Hypervisor;
use crate::kernel::abi;
use crate::kernel::outside::Ending;
use crate::machine::{Cancel, Guest, Stop, WatchKind};
use crate::session::SessionError;
use crate::trace::replay::{ReplayOutput, Replayer};
use arch::{X86Regs, X86_64Linux};
use timeline::{Reversed, Seen, Timeline};

/// What gdb asked to run backwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reverse {
    Continue,
    Step,
}

/// The debugger's side of a replay: its bytes, and the pause that each
/// chunk of them sets (the vCPU stops so they are read).
pub struct GdbLink {
    pub input: Receiver<Vec<u8>>,
    pub cancel: Arc<Cancel>,
}

/// How a debugged replay ended.
pub enum Debugged {
    /// The program ran to its end.
    Ended(Ending),
    /// The debugger left first; the next event of the trace.
    Left { event: u64 },
}

/// gdb's bytes in, ours out as [`ReplayOutput::Gdb`].
struct Conn<'o> {
    input: Receiver<Vec<u8>>,
    buf: VecDeque<u8>,
    out: &'o Sender<ReplayOutput>,
    pending: Vec<u8>,
}

fn gone() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "the debugger went away")
}

impl Connection for Conn<'_> {
    type Error = std::io::Error;

    fn write(&mut self, byte: u8) -> Result<(), Self::Error> {
        self.pending.push(byte);
        Ok(())
    }

    fn write_all(&mut self, buf: &[u8]) -> Result<(), Self::Error> {
        self.pending.extend_from_slice(buf);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Self::Error> {
        if !self.pending.is_empty() {
            let bytes = std::mem::take(&mut self.pending);
            self.out.send(ReplayOutput::Gdb(bytes)).map_err(|_| gone())?;
        }
        Ok(())
    }
}

impl ConnectionExt for Conn<'_> {
    fn read(&mut self) -> Result<u8, Self::Error> {
        loop {
            if let Some(b) = self.buf.pop_front() {
                return Ok(b);
            }
            let chunk = self.input.recv().map_err(|_| gone())?;
            self.buf.extend(chunk);
        }
    }

    fn peek(&mut self) -> Result<Option<u8>, Self::Error> {
        while self.buf.is_empty() {
            match self.input.try_recv() {
                Ok(chunk) => self.buf.extend(chunk),
                Err(TryRecvError::Empty) => return Ok(None),
                Err(TryRecvError::Disconnected) => return Err(gone()),
            }
        }
        Ok(self.buf.front().copied())
    }
}

/// The replay as gdb sees it.
struct Debuggee<'g, 'r, 'a> {
    guest: &'g mut Guest,
    /// For the fresh VMs that checkpoints are restored into.
    hv: &'g dyn Hypervisor,
    timeline: Timeline,
    /// gdb's breakpoints (the guest also has the searches' own).
    user_breaks: BTreeSet<u64>,
    /// A search stopped on a breakpoint: its next step leaves it.
    on_breakpoint: bool,
    /// A reverse operation gdb asked for, done on the next wait.
    reverse: Option<Reverse>,
    replayer: &'r mut Replayer<'a>,
    cancel: Arc<Cancel>,
    /// The thread gdb asked to step, if any (else every thread continues).
    step: Option<u32>,
    /// The first run after a resume: a thread standing on a breakpoint
    /// steps over it.
    fresh: bool,
    /// Continuing: stepping off a breakpoint first.
    stepping_over: bool,
    ended: Option<Ending>,
    /// The replay's own failure (a divergence, a damaged trace).
    failed: Option<SessionError>,
    /// The debugger changed memory or registers.
    changed: bool,
    exe: Vec<u8>,
    auxv: Vec<u8>,
}

fn tid(t: u32) -> Tid {
    NonZeroUsize::new(t as usize).unwrap_or(NonZeroUsize::MIN)
}

fn target_error(e: SessionError) -> TargetError<String> {
    TargetError::Fatal(e.to_string())
}

impl Debuggee<'_, '_, '_> {
    fn note(&mut self, text: String) {
        self.replayer.say(text);
    }

    fn ending_reason(e: Ending) -> MultiThreadStopReason<u64> {
        match e {
            Ending::Exited(c) => MultiThreadStopReason::Exited(c as u8),
            Ending::Killed(s) => MultiThreadStopReason::Terminated(Signal(s as u8)),
        }
    }

    /// The replay cannot go on: said, kept, and reported to gdb as the end.
    fn failure(&mut self, e: SessionError) -> Option<MultiThreadStopReason<u64>> {
        let cause = if self.changed {
            " (after the debugger changed the program's memory or registers: not a fault of the recording)"
        } else {
            ""
        };
        self.note(format!("the replay cannot go on: {e}{cause}"));
        self.failed = Some(e);
        Some(MultiThreadStopReason::Terminated(Signal(abi::SIGKILL as u8)))
    }

    /// Runs backwards as gdb asked: the stop to report.
    fn run_reverse(&mut self, how: Reverse) -> Option<MultiThreadStopReason<u64>> {
        let started = std::time::Instant::now();
        let result = match how {
            Reverse::Continue => self.reverse_continue(),
            Reverse::Step => self.reverse_stepi(),
        };
        tracing::debug!(?how, ms = started.elapsed().as_millis() as u64, "reverse");
        let now = tid(self.guest.current_thread());
        match result {
            Err(e) => self.failure(e),
            Ok(Reversed::Start) => {
                Some(MultiThreadStopReason::ReplayLog { tid: Some(now), pos: ReplayLogPosition::Begin })
            }
            Ok(Reversed::At(seen)) => Some(match seen {
                Seen::Watch(kind, addr) => MultiThreadStopReason::Watch { tid: now, kind: gdb_watch(kind), addr },
                Seen::Break(_) => MultiThreadStopReason::SwBreak(now),
                _ => MultiThreadStopReason::SignalWithThread { tid: now, signal: Signal(abi::SIGTRAP as u8) },
            }),
        }
    }

    /// One wait of gdb's: backwards as asked, else forward.
    fn run_once(&mut self) -> Option<MultiThreadStopReason<u64>> {
        if let Some(how) = self.reverse.take() {
            if self.failed.is_none() {
                return self.run_reverse(how);
            }
        }
        self.run_forward()
    }

    /// Runs the guest forward to its next exit: the stop to report, if gdb
    /// wants one.
    fn run_forward(&mut self) -> Option<MultiThreadStopReason<u64>> {
        if let Some(e) = self.ended {
            return Some(Self::ending_reason(e));
        }
        if self.failed.is_some() {
            return Some(MultiThreadStopReason::Terminated(Signal(abi::SIGKILL as u8)));
        }
        if std::mem::take(&mut self.fresh) {
            if let Ok(regs) = self.guest.regs() {
                if self.guest.has_breakpoint(regs.rip) {
                    self.guest.skip_breakpoint_once(Some(regs.rip));
                    if self.step.is_none() {
                        self.stepping_over = self.guest.set_single_step(true).is_ok();
                    }
                }
            }
        }
        let now = tid(self.guest.current_thread());
        match self.guest.step(self.replayer) {
            Err(e) => self.failure(e),
            Ok(Stop::Ended(e)) => {
                self.ended = Some(e);
                Some(Self::ending_reason(e))
            }
            Ok(Stop::Breakpoint { .. }) => {
                self.end_step_over();
                Some(MultiThreadStopReason::SwBreak(now))
            }
            Ok(Stop::Faulting { signal, .. }) => {
                self.end_step_over();
                Some(MultiThreadStopReason::SignalWithThread { tid: now, signal: Signal(signal as u8) })
            }
            Ok(Stop::Watch { kind, addr }) => {
                self.end_step_over();
                Some(MultiThreadStopReason::Watch { tid: now, kind: gdb_watch(kind), addr })
            }
            Ok(Stop::SingleStep { .. }) if self.step.is_some() => {
                Some(MultiThreadStopReason::SignalWithThread { tid: now, signal: Signal(abi::SIGTRAP as u8) })
            }
            Ok(stop) => {
                if matches!(stop, Stop::SingleStep { .. }) {
                    self.end_step_over();
                }
                if matches!(stop, Stop::Syscall { .. }) {
                    if let Err(e) = self.checkpoint_here() {
                        return self.failure(e);
                    }
                }
                // A syscall (or a completion) wrote watched bytes.
                let (kind, addr) = self.guest.watch_changed()?;
                Some(MultiThreadStopReason::Watch { tid: now, kind: gdb_watch(kind), addr })
            }
        }
    }

    fn end_step_over(&mut self) {
        if std::mem::take(&mut self.stepping_over) {
            let _ = self.guest.set_single_step(false);
        }
    }

    /// The printer's lines for the events around the next one, the line
    /// that holds it marked `=>`.
    fn events_near(&self, around: usize) -> Vec<String> {
        let here = self.replayer.mark().pos;
        // From a few events earlier, so that a syscall's entry is in.
        let from = here.saturating_sub(around * 4);
        let events = self.replayer.events_in(from..here + around * 4 + 1);
        let mut printer = crate::trace::print::Printer::new(self.guest.process.ident.pid);
        let mut lines = Vec::new();
        for (seq, ev) in events {
            lines.extend(printer.push(*seq, ev));
        }
        lines.extend(printer.finish());
        let next = self.replayer.position();
        let at = lines.iter().position(|l| l.last >= next).unwrap_or(lines.len());
        let lo = at.saturating_sub(around);
        let hi = (at + around + 1).min(lines.len());
        let mut out: Vec<String> = lines[lo..hi]
            .iter()
            .enumerate()
            .map(|(i, l)| format!("{} {:>6} {}", if lo + i == at { "=>" } else { "  " }, l.first, l.text))
            .collect();
        if at == lines.len() {
            out.push(format!("=> {next:>6} (the end of the recording)"));
        }
        out
    }

    fn changed_by_user(&mut self, what: &str) {
        if !self.changed {
            self.changed = true;
            self.note(format!(
                "the debugger changed the program's {what}: from here the replay may part from the recording, which would not be a fault of the recording"
            ));
        }
    }
}

impl Target for Debuggee<'_, '_, '_> {
    type Arch = X86_64Linux;
    type Error = String;

    fn base_ops(&mut self) -> BaseOps<'_, Self::Arch, Self::Error> {
        BaseOps::MultiThread(self)
    }

    fn support_breakpoints(&mut self) -> Option<BreakpointsOps<'_, Self>> {
        Some(self)
    }

    fn support_exec_file(&mut self) -> Option<ExecFileOps<'_, Self>> {
        Some(self)
    }

    fn support_auxv(&mut self) -> Option<AuxvOps<'_, Self>> {
        Some(self)
    }

    fn support_monitor_cmd(&mut self) -> Option<MonitorCmdOps<'_, Self>> {
        Some(self)
    }

    // gdb itself steps over its breakpoints with ours removed; the
    // replay's own patches are never its business.
    fn guard_rail_implicit_sw_breakpoints(&self) -> bool {
        true
    }
}

impl MultiThreadBase for Debuggee<'_, '_, '_> {
    fn read_registers(&mut self, regs: &mut X86Regs, t: Tid) -> TargetResult<(), Self> {
        match self.guest.thread_context(t.get() as u32).map_err(target_error)? {
            Some(c) => {
                *regs = X86Regs::from_context(&c);
                Ok(())
            }
            None => Err(TargetError::NonFatal),
        }
    }

    fn write_registers(&mut self, regs: &X86Regs, t: Tid) -> TargetResult<(), Self> {
        let t = t.get() as u32;
        let Some(mut c) = self.guest.thread_context(t).map_err(target_error)? else {
            return Err(TargetError::NonFatal);
        };
        let before = c.clone();
        regs.to_context(&mut c);
        if c != before {
            self.guest.set_thread_context(t, &c).map_err(target_error)?;
            self.changed_by_user("registers");
        }
        Ok(())
    }

    fn read_addrs(&mut self, start: u64, data: &mut [u8], _t: Tid) -> TargetResult<usize, Self> {
        let n = self.guest.read_memory(start, data);
        if n == 0 && !data.is_empty() {
            return Err(TargetError::Errno(14));
        }
        Ok(n)
    }

    fn write_addrs(&mut self, start: u64, data: &[u8], _t: Tid) -> TargetResult<(), Self> {
        let mut old = vec![0u8; data.len()];
        let had = self.guest.read_memory(start, &mut old);
        if had < data.len() {
            return Err(TargetError::Errno(14));
        }
        if old != data {
            self.guest.write_memory(start, data);
            self.changed_by_user("memory");
        }
        Ok(())
    }

    fn list_active_threads(&mut self, active: &mut dyn FnMut(Tid)) -> Result<(), Self::Error> {
        if self.ended.is_none() {
            for t in self.guest.threads() {
                active(tid(t));
            }
        }
        Ok(())
    }

    fn support_resume(&mut self) -> Option<MultiThreadResumeOps<'_, Self>> {
        Some(self)
    }

    fn support_thread_extra_info(&mut self) -> Option<ThreadExtraInfoOps<'_, Self>> {
        Some(self)
    }
}

impl ThreadExtraInfo for Debuggee<'_, '_, '_> {
    // The thread's name (prctl PR_SET_NAME, as `info threads` shows it).
    fn thread_extra_info(&self, t: Tid, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let name = self.guest.process.thread_name(t.get() as u32).unwrap_or_default();
        Ok(window(&name, 0, buf.len(), buf))
    }
}

impl MultiThreadResume for Debuggee<'_, '_, '_> {
    fn resume(&mut self) -> Result<(), Self::Error> {
        // Where gdb steps from is where a step back starts from (stepi,
        // step, next are steps); a continue keeps none (a conditional
        // breakpoint's hits would each cost a copy of memory).
        if self.step.is_some() && self.failed.is_none() && self.ended.is_none() {
            if let Err(e) = self.remember_stop() {
                self.failure(e);
            }
        }
        self.guest.set_single_step(self.step.is_some()).map_err(|e| e.to_string())?;
        self.guest.resumed_by_debugger();
        self.fresh = true;
        Ok(())
    }

    fn clear_resume_actions(&mut self) -> Result<(), Self::Error> {
        self.step = None;
        Ok(())
    }

    // The signal gdb would pass is not the replay's to choose: signals
    // arrive as they were recorded.
    fn set_resume_action_continue(&mut self, _tid: Tid, _signal: Option<Signal>) -> Result<(), Self::Error> {
        Ok(())
    }

    fn support_single_step(&mut self) -> Option<MultiThreadSingleStepOps<'_, Self>> {
        Some(self)
    }

    fn support_scheduler_locking(&mut self) -> Option<MultiThreadSchedulerLockingOps<'_, Self>> {
        Some(self)
    }

    fn support_reverse_cont(&mut self) -> Option<ReverseContOps<'_, Tid, Self>> {
        Some(self)
    }

    fn support_reverse_step(&mut self) -> Option<ReverseStepOps<'_, Tid, Self>> {
        Some(self)
    }
}

impl ReverseCont<Tid> for Debuggee<'_, '_, '_> {
    fn reverse_cont(&mut self) -> Result<(), Self::Error> {
        self.reverse = Some(Reverse::Continue);
        Ok(())
    }
}

impl ReverseStep<Tid> for Debuggee<'_, '_, '_> {
    // The thread on the vCPU steps back (the schedule is the recording's).
    fn reverse_step(&mut self, _tid: Tid) -> Result<(), Self::Error> {
        self.reverse = Some(Reverse::Step);
        Ok(())
    }
}

impl MultiThreadSchedulerLocking for Debuggee<'_, '_, '_> {
    // gdb resumes one thread only (`finish`, `step` with scheduler-locking
    // on, or in a replay): the schedule is the recording's, so the other
    // threads run when they ran then. Stops are reported for the thread
    // that stopped.
    fn set_resume_action_scheduler_lock(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

impl MultiThreadSingleStep for Debuggee<'_, '_, '_> {
    // One vCPU and the recorded schedule: the thread on the vCPU steps.
    fn set_resume_action_step(&mut self, t: Tid, _signal: Option<Signal>) -> Result<(), Self::Error> {
        self.step = Some(t.get() as u32);
        Ok(())
    }
}

impl Breakpoints for Debuggee<'_, '_, '_> {
    fn support_sw_breakpoint(&mut self) -> Option<SwBreakpointOps<'_, Self>> {
        Some(self)
    }

    // "Hardware" to gdb: page guards and a step of each access to a
    // watched page (debug registers where a backend has them, later).
    fn support_hw_watchpoint(&mut self) -> Option<HwWatchpointOps<'_, Self>> {
        Some(self)
    }
}

fn our_watch(kind: breakpoints::WatchKind) -> WatchKind {
    match kind {
        breakpoints::WatchKind::Write => WatchKind::Write,
        breakpoints::WatchKind::Read => WatchKind::Read,
        breakpoints::WatchKind::ReadWrite => WatchKind::Access,
    }
}

fn gdb_watch(kind: WatchKind) -> breakpoints::WatchKind {
    match kind {
        WatchKind::Write => breakpoints::WatchKind::Write,
        WatchKind::Read => breakpoints::WatchKind::Read,
        WatchKind::Access => breakpoints::WatchKind::ReadWrite,
    }
}

impl HwWatchpoint for Debuggee<'_, '_, '_> {
    fn add_hw_watchpoint(&mut self, addr: u64, len: u64, kind: breakpoints::WatchKind) -> TargetResult<bool, Self> {
        if len == 0 || len > 4096 || addr.checked_add(len).is_none() {
            return Ok(false);
        }
        self.guest.add_watch(addr, len, our_watch(kind));
        Ok(true)
    }

    fn remove_hw_watchpoint(&mut self, addr: u64, len: u64, kind: breakpoints::WatchKind) -> TargetResult<bool, Self> {
        Ok(self.guest.remove_watch(addr, len, our_watch(kind)))
    }
}

impl SwBreakpoint for Debuggee<'_, '_, '_> {
    fn add_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        let mut b = [0u8];
        if self.guest.read_memory(addr, &mut b) != 1 {
            return Ok(false);
        }
        self.guest.add_breakpoint(addr);
        self.user_breaks.insert(addr);
        Ok(true)
    }

    fn remove_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        self.user_breaks.remove(&addr);
        Ok(self.guest.remove_breakpoint(addr))
    }
}

fn window(data: &[u8], offset: u64, length: usize, buf: &mut [u8]) -> usize {
    let start = (offset as usize).min(data.len());
    let n = length.min(buf.len()).min(data.len() - start);
    buf[..n].copy_from_slice(&data[start..start + n]);
    n
}

impl ExecFile for Debuggee<'_, '_, '_> {
    fn get_exec_file(
        &self,
        _pid: Option<gdbstub::common::Pid>,
        offset: u64,
        length: usize,
        buf: &mut [u8],
    ) -> TargetResult<usize, Self> {
        Ok(window(&self.exe, offset, length, buf))
    }
}

impl Auxv for Debuggee<'_, '_, '_> {
    fn get_auxv(&self, offset: u64, length: usize, buf: &mut [u8]) -> TargetResult<usize, Self> {
        Ok(window(&self.auxv, offset, length, buf))
    }
}

impl MonitorCmd for Debuggee<'_, '_, '_> {
    fn handle_monitor_cmd(&mut self, cmd: &[u8], mut out: ConsoleOutput<'_>) -> Result<(), Self::Error> {
        let cmd = String::from_utf8_lossy(cmd);
        match cmd.trim() {
            "when" => {
                outputln!(
                    out,
                    "event {} of {}, thread {}",
                    self.replayer.position(),
                    self.replayer.events(),
                    self.guest.current_thread()
                );
            }
            "checkpoints" => {
                let (n, bytes) = self.timeline.size();
                outputln!(out, "{n} checkpoints, {} KiB of memory", bytes >> 10);
            }
            c if c == "events" || c.starts_with("events ") => {
                let around = c["events".len()..].trim().parse::<usize>().unwrap_or(5).min(200);
                for line in self.events_near(around) {
                    outputln!(out, "{line}");
                }
            }
            c if c.starts_with("goto ") => match c["goto ".len()..].trim().parse::<u64>() {
                Ok(seq) if self.replayer.index_of(seq) >= self.replayer.events() => {
                    outputln!(out, "event {seq} is past the recording's last ({} events)", self.replayer.events());
                }
                Ok(seq) => match self.go_to_event(seq) {
                    Ok(()) => outputln!(
                        out,
                        "at event {}, thread {}: `maintenance flush register-cache` makes gdb read the registers again",
                        self.replayer.position(),
                        self.guest.current_thread()
                    ),
                    Err(e) => {
                        let _ = self.failure(e);
                        outputln!(out, "the replay cannot go on");
                    }
                },
                Err(_) => outputln!(out, "goto takes an event number (`monitor when`, `monitor events`)"),
            },
            "" | "help" => {
                outputln!(
                    out,
                    "monitor when         the next event of the trace (of how many) and the thread on the vCPU"
                );
                outputln!(out, "monitor events [N]   the N recorded events before and after here (default 5), as `warpctl events` prints them");
                outputln!(out, "monitor goto EVENT   to the syscall boundary at or after event EVENT, forward or back");
                outputln!(out, "monitor checkpoints  how many checkpoints reverse execution has, and their memory");
            }
            other => outputln!(out, "unknown monitor command {other:?}; `monitor help` lists them"),
        }
        Ok(())
    }
}

struct Loop<'g, 'r, 'a, 'o>(PhantomData<(&'g (), &'r (), &'a (), &'o ())>);

impl<'g, 'r, 'a: 'r, 'o> BlockingEventLoop for Loop<'g, 'r, 'a, 'o> {
    type Target = Debuggee<'g, 'r, 'a>;
    type Connection = Conn<'o>;
    type StopReason = MultiThreadStopReason<u64>;

    fn wait_for_stop_reason(
        target: &mut Self::Target,
        conn: &mut Self::Connection,
    ) -> Result<Event<Self::StopReason>, WaitForStopReasonError<String, std::io::Error>> {
        loop {
            // Cleared before looking, so that bytes that come after the
            // look stop the run that follows.
            target.cancel.resume();
            if conn.peek().map_err(WaitForStopReasonError::Connection)?.is_some() {
                return Ok(Event::IncomingData(conn.read().map_err(WaitForStopReasonError::Connection)?));
            }
            if let Some(stop) = target.run_once() {
                return Ok(Event::TargetStopped(stop));
            }
        }
    }

    fn on_interrupt(target: &mut Self::Target) -> Result<Option<Self::StopReason>, String> {
        Ok(Some(MultiThreadStopReason::SignalWithThread {
            tid: tid(target.guest.current_thread()),
            signal: Signal(abi::SIGINT as u8),
        }))
    }
}

/// Serves gdb on `link` until it leaves or the program ends (and gdb has
/// been told). The guest stands at the program's first instruction;
/// checkpoints are restored into fresh VMs from `hv`.
pub fn serve(
    hv: &dyn Hypervisor,
    guest: &mut Guest,
    replayer: &mut Replayer<'_>,
    link: GdbLink,
    out: &Sender<ReplayOutput>,
    exe_path: &str,
    auxv: &[(u64, u64)],
) -> Result<Debugged, SessionError> {
    guest.stop_at_faults(true);
    guest.cancel_with(link.cancel.clone());
    let conn = Conn { input: link.input, buf: VecDeque::new(), out, pending: Vec::new() };
    let mut target = Debuggee {
        guest,
        hv,
        timeline: Timeline::new(),
        user_breaks: BTreeSet::new(),
        on_breakpoint: false,
        reverse: None,
        replayer,
        cancel: link.cancel,
        step: None,
        fresh: false,
        stepping_over: false,
        ended: None,
        failed: None,
        changed: false,
        exe: exe_path.as_bytes().to_vec(),
        auxv: crate::kernel::procfs::auxv_bytes(auxv),
    };
    target.checkpoint_start()?;
    let result = GdbStub::new(conn).run_blocking::<Loop<'_, '_, '_, '_>>(&mut target);
    if let Some(e) = target.failed.take() {
        return Err(e);
    }
    if let Some(e) = target.ended {
        return Ok(Debugged::Ended(e));
    }
    match result {
        Ok(why) => tracing::debug!(?why, "the debugger left"),
        Err(e) => tracing::warn!(error = %e, "the debugger's session ended with an error"),
    }
    Ok(Debugged::Left { event: target.replayer.position() })
}
