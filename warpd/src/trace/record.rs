//! The recorder: the live broker, with every answer written to the trace.

use std::sync::Arc;

use warp_proto::broker::{request, Reply};
use warp_proto::trace::{
    event, BrokerCall, Completion, Event, Fault, Interrupt, MemoryWrite, ProgramEnd, RingCall, Schedule, Signals,
    SliceEnd, SyscallEntry, SyscallExit,
};
use warp_syscalls::ring;

use super::digest;
use super::ring::RecordRing;
use super::store::{EventWriter, Store};
use crate::hv::memory::MemFd;
use crate::hv::{GuestFault, SyscallRequest};
use crate::interrupts::{regs_to_words, thread_cpu_ns};
use crate::kernel::outside::{Arrival, Completed, Ending, InterruptPoint, Outside, OutsideError, RingAllow};
use crate::link::Link;

pub struct Recorder {
    pub link: Link,
    writer: EventWriter,
    _store: Arc<Store>,
    /// The exitless path, when this recording has it.
    pub ring: Option<RecordRing>,
    /// The broker of the process the last Fork made, attached.
    child: Option<crate::link::BrokerLink>,
    /// A forked process's recorder: the broker's end is its SIGKILL.
    pub sigkill_on_loss: bool,
    /// The recording's processes alive now, and how many it may have.
    pub live: Option<Arc<Live>>,
    /// When recording began: the base of the events' `time_us`.
    started: std::time::Instant,
}

/// How many processes of a recording are alive (each a VM, a thread and
/// a broker): a fork beyond `max` gets EAGAIN, as RLIMIT_NPROC would give.
pub struct Live {
    pub count: std::sync::atomic::AtomicUsize,
    pub max: usize,
    /// A fork was refused for it (said once at the end).
    pub capped: std::sync::atomic::AtomicBool,
}

/// How long a forked broker may take to attach.
const CHILD_ATTACH: std::time::Duration = std::time::Duration::from_secs(10);

fn trace_err(e: super::store::StoreError) -> OutsideError {
    OutsideError::Trace(e.to_string())
}

impl Recorder {
    /// A failure of the broker link, as the program sees it: for a forked
    /// process the broker's end is its death by SIGKILL.
    fn lost(&self, e: OutsideError) -> OutsideError {
        match e {
            OutsideError::Link(crate::link::LinkError::Gone) if self.sigkill_on_loss => OutsideError::Killed,
            e => e,
        }
    }

    pub fn new(link: Link, store: Arc<Store>, id: &str) -> Self {
        let writer = store.writer(id);
        Recorder {
            link,
            writer,
            _store: store,
            ring: None,
            child: None,
            sigkill_on_loss: false,
            live: None,
            started: std::time::Instant::now(),
        }
    }

    /// Microseconds since recording began (at least 1: 0 means none).
    fn now_us(&self) -> u64 {
        (self.started.elapsed().as_micros() as u64).max(1)
    }

    /// The forked process's broker, after a Fork answered with its pid.
    pub fn take_child(&mut self) -> Option<crate::link::BrokerLink> {
        self.child.take()
    }

    /// Asks the broker to fork; the child's broker attaches with a token
    /// of its own (which the trace does not keep: replay forks no broker).
    fn fork(&mut self) -> Result<Reply, OutsideError> {
        use std::sync::atomic::Ordering;
        if let Some(l) = &self.live {
            if l.count.load(Ordering::SeqCst) >= l.max {
                l.capped.store(true, Ordering::SeqCst);
                return Ok(Reply { ret: -(libc::EAGAIN as i64), ..Default::default() });
            }
        }
        let uid = self.link.peer_uid().map_err(|e| OutsideError::Link(e.into()))?;
        let (token, attached) = crate::link::expect_child(uid).map_err(|e| OutsideError::Link(e.into()))?;
        let reply = self.link.call(request::Kind::Fork(warp_proto::broker::Fork { token: token.clone() }));
        let reply = match reply {
            Ok(r) if r.ret > 0 => r,
            other => {
                crate::link::forget_child(&token);
                return Ok(other?);
            }
        };
        match attached.recv_timeout(CHILD_ATTACH) {
            Ok(link) => {
                self.child = Some(link);
                if let Some(l) = &self.live {
                    l.count.fetch_add(1, Ordering::SeqCst);
                }
                Ok(reply)
            }
            Err(_) => {
                crate::link::forget_child(&token);
                Err(OutsideError::Link(crate::link::LinkError::Protocol(format!(
                    "the broker of forked process {} did not attach within {} s",
                    reply.ret,
                    CHILD_ATTACH.as_secs()
                ))))
            }
        }
    }

    fn append(&mut self, kind: event::Kind) -> Result<(), OutsideError> {
        self.writer.append(&Event { kind: Some(kind) }).map_err(trace_err)?;
        Ok(())
    }

    /// Events written, the bytes they added to the store, and the bytes
    /// they take counting shared blobs.
    pub fn counts(&self) -> (u64, u64, u64) {
        let (e, b) = self.writer.counts();
        (e, b, self.writer.logical_bytes())
    }
}

impl Outside for Recorder {
    fn ring_arm(&mut self, allow: Option<&RingAllow>) {
        if let Some(r) = &self.ring {
            r.arm(allow);
        }
    }

    fn ring_collect(&mut self, thread: u32) -> Result<u64, OutsideError> {
        let Some(r) = &self.ring else { return Ok(0) };
        let served = r.take().map_err(|e| OutsideError::Trace(format!("the broker's ring log: {e}")))?;
        let mut events = Vec::with_capacity(served.len());
        // Each call's time: when the broker served it, by the clock it
        // shares with warpd, counted back from now.
        let (now_us, now_ns) = (self.now_us(), ring::monotonic_ns());
        for s in &served {
            let ago_us = now_ns.saturating_sub(s.when_ns) / 1000;
            let time_us = if s.when_ns == 0 { now_us } else { now_us.saturating_sub(ago_us) };
            let output = if s.output.is_empty() { None } else { Some(self.writer.data(&s.output).map_err(trace_err)?) };
            let write = matches!(ring::buffer(s.nr, &s.args), Some((_, _, false)));
            events.push(event::Kind::Ring(RingCall {
                nr: s.nr,
                args: s.args[..ring::arity(s.nr)].to_vec(),
                ret: s.ret,
                input: if write { s.input.to_vec() } else { Vec::new() },
                output,
                stream: s.stream,
                thread,
                time_us,
            }));
        }
        // One store write for them all.
        let events: Vec<Event> = events.into_iter().map(|k| Event { kind: Some(k) }).collect();
        self.writer.append_all(&events).map_err(trace_err)?;
        Ok(served.len() as u64)
    }

    fn call(&mut self, kind: request::Kind, memory: &MemFd) -> Result<Reply, OutsideError> {
        let request_digest = digest::request_digest(&kind, memory).to_vec();
        let reply = match &kind {
            // The vCPU runs on this thread: its CPU time is the program's.
            request::Kind::CpuTime(_) => {
                Reply { outputs: vec![thread_cpu_ns().to_le_bytes().to_vec()], ..Default::default() }
            }
            request::Kind::Fork(_) => self.fork().map_err(|e| self.lost(e))?,
            _ => self.link.call(kind.clone()).map_err(|e| self.lost(e.into()))?,
        };
        let mut writes = Vec::new();
        // A deferred call wrote nothing yet: its completion carries that.
        let written = if reply.pending { Vec::new() } else { digest::written(&kind, &reply, memory) };
        for (offset, bytes) in written {
            writes.push(MemoryWrite { offset, data: Some(self.writer.data(&bytes).map_err(trace_err)?) });
        }
        let mut outputs = Vec::new();
        for o in &reply.outputs {
            outputs.push(self.writer.data(o).map_err(trace_err)?);
        }
        let (nr, args) = match &kind {
            request::Kind::Syscall(c) => (c.nr, c.args.clone()),
            request::Kind::Fork(_) => (57, Vec::new()),
            _ => (0, Vec::new()),
        };
        let file = if matches!(kind, request::Kind::ReadFile(_)) && reply.ret >= 0 {
            Some(self.writer.data(&reply.file).map_err(trace_err)?)
        } else {
            None
        };
        let call = BrokerCall {
            request_digest,
            nr,
            ret: reply.ret,
            outputs,
            writes,
            signals: reply.signals.clone(),
            stream: reply.stream,
            file,
            args,
            inline_args: digest::inline_args(&kind),
            signals_pending: reply.signals_pending,
            pending: reply.pending,
            order: reply.order,
            signal_infos: reply.signal_infos.clone(),
            sent: if reply.sent.is_empty() { None } else { Some(self.writer.data(&reply.sent).map_err(trace_err)?) },
        };
        self.append(event::Kind::Call(call))?;
        Ok(reply)
    }

    fn take_completions(&mut self) -> Result<Vec<Completed>, OutsideError> {
        let mut out = Vec::new();
        for r in self.link.take_completions().map_err(|e| self.lost(e.into()))? {
            let mut detached = Vec::with_capacity(r.detached.len());
            for d in &r.detached {
                detached.push(self.writer.data(d).map_err(trace_err)?);
            }
            let mut outputs = Vec::with_capacity(r.outputs.len());
            for o in &r.outputs {
                outputs.push(self.writer.data(o).map_err(trace_err)?);
            }
            self.append(event::Kind::Completion(Completion {
                thread: r.thread,
                ret: r.ret,
                detached,
                seq: r.seq,
                outputs,
            }))?;
            out.push(Completed { thread: r.thread, seq: r.seq, ret: r.ret, detached: r.detached, outputs: r.outputs });
        }
        Ok(out)
    }

    fn completions_waiting(&self) -> bool {
        self.link.completions_waiting()
    }

    fn cancel(&mut self, thread: u32, seq: u64) -> Result<(), OutsideError> {
        Ok(self.link.cancel(thread, seq)?)
    }

    fn take_signals(&mut self) -> Result<Vec<Arrival>, OutsideError> {
        let s = self.link.take_signals();
        if !s.is_empty() {
            self.append(event::Kind::Signals(Signals {
                signos: s.iter().map(|a| a.signo).collect(),
                asynchronous: false,
                rip: 0,
                infos: s.iter().map(|a| a.info.clone()).collect(),
            }))?;
        }
        Ok(s)
    }

    fn interrupted(&mut self) -> Result<Vec<Arrival>, OutsideError> {
        let mut s = self.link.take_signals();
        // A forked process whose broker is gone was killed right here.
        if self.sigkill_on_loss && self.link.is_dead() {
            s.push(Arrival { signo: crate::kernel::abi::SIGKILL, info: Vec::new() });
        }
        Ok(s)
    }

    fn pending_async(&mut self) -> Result<Vec<i32>, OutsideError> {
        Ok(Vec::new())
    }

    fn interrupt(&mut self, p: &InterruptPoint) -> Result<(), OutsideError> {
        self.append(event::Kind::Interrupt(Interrupt {
            thread: p.thread,
            regs: regs_to_words(&p.regs),
            memory: p.memory.to_vec(),
            signals: p.signals.clone(),
            signal_infos: p.signal_infos.clone(),
            preempted: p.preempted,
            pages: p.pages,
            watch: p.watch.iter().flat_map(|&(a, v)| [a, v]).collect(),
            computed_us: p.computed_us,
            itimers: p.itimers,
        }))
    }

    fn next_interrupt(&mut self) -> Result<Option<InterruptPoint>, OutsideError> {
        Ok(None)
    }

    fn slice_over(&mut self, thread: u32, due: bool) -> Result<bool, OutsideError> {
        if due {
            self.append(event::Kind::SliceEnd(SliceEnd { thread }))?;
        }
        Ok(due)
    }

    fn is_dead(&self) -> bool {
        self.link.is_dead()
    }

    fn loss_is_sigkill(&self) -> bool {
        self.sigkill_on_loss
    }

    fn note(&mut self, text: String) {
        tracing::info!("{text}");
    }

    fn signals_waiting(&self) -> bool {
        self.link.signals_waiting() || (self.sigkill_on_loss && self.link.is_dead())
    }

    fn syscall_entry(&mut self, req: &SyscallRequest) -> Result<(), OutsideError> {
        self.append(event::Kind::Entry(SyscallEntry {
            nr: req.number,
            args: req.args.to_vec(),
            rip: req.rip,
            thread: req.thread,
            time_us: self.now_us(),
        }))
    }

    fn schedule(&mut self, thread: u32) -> Result<(), OutsideError> {
        self.append(event::Kind::Schedule(Schedule { thread }))
    }

    fn syscall_exit(&mut self, nr: u64, ret: i64, _rip: u64) -> Result<(), OutsideError> {
        let time_us = self.now_us();
        self.append(event::Kind::Exit(SyscallExit { nr, ret, time_us }))
    }

    fn fault(&mut self, f: &GuestFault, signal: i32) -> Result<(), OutsideError> {
        self.append(event::Kind::Fault(Fault {
            vector: f.vector,
            error_code: f.error_code,
            rip: f.rip,
            address: f.address,
            signal,
        }))
    }

    fn end(&mut self, ending: Ending, _rip: u64) -> Result<(), OutsideError> {
        let (exit_code, signal) = match ending {
            Ending::Exited(c) => (c, 0),
            Ending::Killed(s) => (0, s),
        };
        self.append(event::Kind::End(ProgramEnd { exit_code, signal }))
    }
}
