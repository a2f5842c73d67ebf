//! Everything that reaches the program from outside the VM: the broker's
//! answers and signals. While recording they come from the live broker and
//! are written to the trace; on replay they are read back from the trace.
//! The emulated kernel sees only this trait, so record and replay run the
//! same code (DESIGN: "replay swaps the broker and the recorder for the
//! trace reader, nothing else").

use warp_proto::broker::{request, Reply};

use crate::hv::memory::MemFd;
use crate::hv::{GuestFault, SyscallRequest};
pub use crate::interrupts::InterruptPoint;
pub use crate::link::Arrival;
use crate::link::LinkError;

/// Where a replay parted from its recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Divergence {
    /// Sequence number of the event that did not match.
    pub event: u64,
    pub expected: String,
    pub actual: String,
    pub rip: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum OutsideError {
    /// The live broker failed or went away.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// Writing or reading the trace failed.
    #[error("{0}")]
    Trace(String),
    /// Replay: the program did something the recording did not.
    #[error("replay diverged at event {}: expected {}, got {}", .0.event, .0.expected, .0.actual)]
    Diverged(Divergence),
    /// A forked process was killed by SIGKILL from outside: its broker (the
    /// process its parent and the host know) went away; replay: the
    /// recording ends there with that death. The exit loop ends the
    /// program with SIGKILL.
    #[error("the process was killed: its broker is gone")]
    Killed,
}

/// How the program ended, as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Exited(i32),
    Killed(i32),
}

/// A deferred call's completion, as it reaches the program: the thread
/// whose call it is, the result, and the bytes the call wrote per memory
/// buffer it writes (broker `Reply.detached`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completed {
    pub thread: u32,
    /// warpd's number for the call (`Syscall.deferred_seq`).
    pub seq: u64,
    pub ret: i64,
    pub detached: Vec<Vec<u8>>,
    /// Its out_len outputs (a timer read's expiry count).
    pub outputs: Vec<Vec<u8>>,
}

/// What the exit loop lets the exitless path serve until the next exit:
/// the page tables to find buffers with, and the descriptors warpd
/// answers for itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingAllow {
    pub root: u64,
    pub excluded: Vec<i32>,
    /// Wake a sleeping poller: the exit was a call the ring could have
    /// served (more are likely to follow). Woken at every exit, a poller
    /// would spin beside the exit path's own work for nothing.
    pub wake: bool,
}

pub trait Outside {
    /// Before the vCPU runs: what the exitless path may serve until the
    /// next exit (None: nothing, every call takes the exit path).
    fn ring_arm(&mut self, allow: Option<&RingAllow>) {
        let _ = allow;
    }
    /// After the vCPU ran: the calls the exitless path served meanwhile,
    /// by thread `thread`, recorded (replay: answered from the trace and
    /// consumed); how many.
    fn ring_collect(&mut self, thread: u32) -> Result<u64, OutsideError> {
        let _ = thread;
        Ok(0)
    }
    /// Replay: the call the program makes on the exit path was served by
    /// the ring while recording (the ring is off now, or did not claim it
    /// in time): answered as the ring answers it (what it read checked,
    /// what it got written through `mm`), nothing else of the exit path's
    /// done, as nothing was then. Its result; None when the next event is
    /// not that call's (recording: always).
    fn ring_replayed(&mut self, req: &SyscallRequest, mm: &crate::kernel::mm::Mm) -> Result<Option<i64>, OutsideError> {
        let _ = (req, mm);
        Ok(None)
    }

    /// One broker request and its answer. `memory` is the guest memory the
    /// request's ranges point into.
    fn call(&mut self, kind: request::Kind, memory: &MemFd) -> Result<Reply, OutsideError>;
    /// Signals that arrived since the last look, at a syscall boundary.
    fn take_signals(&mut self) -> Result<Vec<Arrival>, OutsideError>;
    /// Signals that arrived while the program computed (the vCPU was
    /// kicked); they are recorded with the interrupt point they are
    /// delivered at. Replay: none (they come with the recorded point).
    fn interrupted(&mut self) -> Result<Vec<Arrival>, OutsideError>;
    /// Replay of traces from before format 3: signals the recording took
    /// while the program computed, due before the program runs on (at the
    /// boundary before that point). Recording: none.
    fn pending_async(&mut self) -> Result<Vec<i32>, OutsideError>;
    /// The program was stopped at `point` while it computed: recorded, or
    /// on replay checked against the recorded point (and consumed).
    fn interrupt(&mut self, point: &InterruptPoint) -> Result<(), OutsideError>;
    /// Replay: the recorded point the program is to be stopped at next,
    /// when the next event is one. Recording: None.
    fn next_interrupt(&mut self) -> Result<Option<InterruptPoint>, OutsideError>;
    /// At a syscall boundary of thread `thread`: whether its time slice
    /// ends here. Recording: `due` (the timer's word), recorded when true;
    /// replay: whether the recording's did.
    fn slice_over(&mut self, thread: u32, due: bool) -> Result<bool, OutsideError>;
    /// Whether the broker is gone (recording only).
    fn is_dead(&self) -> bool;
    /// Recording a forked process: its broker's end is the program's death
    /// by SIGKILL (a `kill -9` of the pid the program's parent knows), not
    /// a failure of the recording.
    fn loss_is_sigkill(&self) -> bool {
        false
    }
    /// A line for the user about this run (replay: a note beside the output).
    fn note(&mut self, text: String);
    /// Whether signals from outside wait to be taken (recording only).
    fn signals_waiting(&self) -> bool;
    /// Deferred calls that completed since the last look: recorded, or on
    /// replay the recorded ones that come next.
    fn take_completions(&mut self) -> Result<Vec<Completed>, OutsideError>;
    /// Whether a completion waits to be taken (recording only).
    fn completions_waiting(&self) -> bool;
    /// Asks for `thread`'s deferred call to end (a signal came for it);
    /// its completion comes as usual. Replay: nothing to do.
    fn cancel(&mut self, thread: u32, seq: u64) -> Result<(), OutsideError>;
    /// Replay: the program computed for `secs` towards the recorded `point`
    /// without reaching it (it is at `rip`): the divergence to report.
    fn point_not_found(&mut self, point: &InterruptPoint, rip: u64, secs: u64) -> OutsideError {
        let _ = (rip, secs);
        OutsideError::Trace(format!("interrupt point at {:#x} not found (not a replay)", point.regs.rip))
    }

    /// A syscall as the program made it (its number is the whole register).
    fn syscall_entry(&mut self, req: &SyscallRequest) -> Result<(), OutsideError>;
    fn syscall_exit(&mut self, number: u64, ret: i64, rip: u64) -> Result<(), OutsideError>;
    fn fault(&mut self, fault: &GuestFault, signal: i32) -> Result<(), OutsideError>;
    fn end(&mut self, ending: Ending, rip: u64) -> Result<(), OutsideError>;
    /// The scheduler gives the vCPU to thread `tid`: recorded, or on replay
    /// checked against the recorded decision.
    fn schedule(&mut self, tid: u32) -> Result<(), OutsideError>;
}
