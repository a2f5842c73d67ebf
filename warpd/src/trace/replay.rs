//! Replay: re-executes a recorded session in a fresh VM from the trace
//! alone (no broker, no file of the recording machine), comparing every
//! syscall with the trace.
//!
//! The [`Replayer`] stands in for the broker: it answers each request with
//! the recorded reply and writes the recorded bytes into guest memory,
//! after checking that the request is the one recorded (its digest covers
//! the bytes the call reads, so a write of different data diverges). The
//! guest is built and driven as the recording's was (`builder`, `machine`).

use std::sync::mpsc::Sender;
use std::sync::Arc;

use warp_proto::broker::{request, Reply};
use warp_proto::trace::{event, CrashSite, Event, SessionMeta, Status};
use warp_syscalls::ring as ringabi;

use super::digest;
use super::merge::Merger;
use super::ring::{apply_recorded, Planned, ReplayRing, Unlike};
use super::store::Store;
use super::FORMAT_VERSION;
use crate::builder::{self, GuestSpec};
use crate::gdb::{Debugged, GdbLink};
use crate::hv::memory::MemFd;
use crate::hv::{GuestFault, SyscallRequest};
use crate::interrupts::regs_from_words;
use crate::kernel::mm::Mm;
use crate::kernel::outside::{Arrival, Completed, Ending, InterruptPoint, Outside, OutsideError, RingAllow};
use crate::machine::{Cancel, Stop};
use crate::session::{self, Config, SessionError};

/// What a replay sends while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayOutput {
    /// Bytes the program wrote to its original stdout / stderr.
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    /// A line for the user (warnings such as a CPUID difference).
    Note(String),
    /// Bytes of the GDB remote protocol for the debugger (a debugged replay).
    Gdb(Vec<u8>),
    /// How far the replay is: events replayed, and in all (the first
    /// process's; a few times a second at most, from its first second on,
    /// or from the start with many events).
    Progress {
        done: u64,
        total: u64,
    },
}

/// A replay that runs this long, or has this many events, says how far it
/// is, this often.
const PROGRESS_AFTER: std::time::Duration = std::time::Duration::from_secs(1);
const PROGRESS_EVENTS: usize = 16384;
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

impl ReplayOutput {
    /// What a write sent to stream 1 (stdout) or 2 (stderr).
    fn of_stream(stream: u32, bytes: Vec<u8>) -> Self {
        if stream == 1 {
            ReplayOutput::Stdout(bytes)
        } else {
            ReplayOutput::Stderr(bytes)
        }
    }
}

/// Where replay and recording parted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Divergence {
    /// Sequence number of the event that did not match.
    pub event: u64,
    pub thread: u32,
    pub expected: String,
    pub actual: String,
    pub rip: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayOutcome {
    /// The replay reproduced the recording, ending as it did.
    /// `crash`: with a signal, the line that says where it killed the program.
    Reproduced { exit_code: i32, signal: i32, crash: String },
    /// The replay diverged (exit status 1).
    Diverged(Divergence),
    /// The trace cannot be replayed: unknown id, corrupt or truncated
    /// events, a missing or damaged blob, a newer format, an incomplete
    /// session (exit status 2). The message names what and where.
    Unreadable(String),
    /// warpd itself failed (KVM...).
    Failed(String),
    /// A debugged replay: the debugger left before the program's end, with
    /// `event` the next event of the trace.
    Left { event: u64 },
}

/// `name(arg, ...)` for messages.
fn describe(number: u64, args: &[u64]) -> String {
    let nr = crate::kernel::table::number(number);
    let name = crate::kernel::names::name(nr).map(str::to_string).unwrap_or_else(|| format!("syscall {nr}"));
    // As many arguments as the call takes, where the table knows.
    let arity = crate::kernel::table::lookup(nr).map(|d| d.args.len()).unwrap_or(args.len()).min(args.len());
    let a: Vec<String> =
        args[..arity].iter().map(|a| if *a > 0xffff { format!("{a:#x}") } else { a.to_string() }).collect();
    format!("{name}({})", a.join(", "))
}

fn describe_event(e: &Event) -> String {
    match &e.kind {
        Some(event::Kind::Entry(x)) if x.thread != 0 => format!("[{}] {}", x.thread, describe(x.nr, &x.args)),
        Some(event::Kind::Entry(x)) => describe(x.nr, &x.args),
        Some(event::Kind::Exit(x)) => format!("{} returning {}", describe(x.nr, &[]), x.ret),
        Some(event::Kind::Call(c)) if c.nr == 0 && c.args.is_empty() => "reading the executable".into(),
        Some(event::Kind::Call(c)) => format!("broker call {}", describe(c.nr as u64, &c.args)),
        Some(event::Kind::Signals(s)) => format!("signals {:?}", s.signos),
        Some(event::Kind::Fault(f)) => format!("CPU exception {} at {:#x}", f.vector, f.rip),
        Some(event::Kind::End(p)) if p.signal != 0 => {
            format!("the program killed by {}", warp_common::signals::name_or_number(p.signal))
        }
        Some(event::Kind::End(p)) => format!("the program exiting with {}", p.exit_code),
        Some(event::Kind::Schedule(s)) => format!("thread {} getting the vCPU", s.thread),
        Some(event::Kind::Interrupt(i)) => format!(
            "[{}] stopped at {:#x} with {} pages written (digest {}){}",
            i.thread,
            i.regs.first().copied().unwrap_or(0),
            i.pages,
            hex8(&i.memory),
            if i.preempted { ", its slice over" } else { "" }
        ),
        Some(event::Kind::SliceEnd(s)) => format!("[{}] the end of its time slice", s.thread),
        Some(event::Kind::Completion(c)) => format!("[{}] its waiting call completing with {}", c.thread, c.ret),
        Some(event::Kind::Ring(r)) => format!("{} returning {}", describe(r.nr, &r.args), r.ret),
        None => "an empty event".into(),
    }
}

fn describe_point(p: &InterruptPoint) -> String {
    format!(
        "[{}] stopped at {:#x} with {} pages written (digest {}){}",
        p.thread,
        p.regs.rip,
        p.pages,
        hex8(&p.memory),
        if p.preempted { ", its slice over" } else { "" }
    )
}

/// The first bytes of a digest, in hex.
fn hex8(d: &[u8]) -> String {
    d.iter().take(4).map(|b| format!("{b:02x}")).collect()
}

/// Whether the request matches the recorded digest once its `may_block`
/// hint is flipped. The hint tells the broker whether a pending signal may
/// end the call; it is no input of the program's, and warpd's own calls
/// (filling an mmap, naming a descriptor) stopped setting it in format 2,
/// so recordings made before still replay.
fn same_but_blocking_hint(kind: &request::Kind, recorded: &[u8], memory: &MemFd) -> bool {
    let request::Kind::Syscall(c) = kind else { return false };
    let mut flipped = c.clone();
    flipped.may_block = !flipped.may_block;
    recorded == digest::request_digest(&request::Kind::Syscall(flipped), memory)
}

pub struct Replayer<'a> {
    store: &'a Store,
    id: String,
    events: Vec<(u64, Event)>,
    pos: usize,
    out: &'a Sender<ReplayOutput>,
    rip: u64,
    /// The thread whose events come now (for divergence reports).
    thread: u32,
    /// Events before this were replayed once already (a debugger went
    /// back): their output and notes are not sent again.
    seen: usize,
    /// The exitless path's poller, when this replay has it.
    pub ring: Option<ReplayRing>,
    /// A process tree's replay: output goes through the merger, as this
    /// process (`proc`), in the tree's recorded order.
    merge: Option<(Arc<Merger>, usize)>,
    /// Forks replayed so far (the n-th child's session is `{id}.{n}`).
    forks: u32,
    /// Replayed only on the way to another process (`--pid`): its output is
    /// not sent.
    silent: bool,
    /// Says how far it is (the first process of a replay no debugger drives).
    progress: bool,
    /// When progress is next said, and calls since it was last looked at.
    progress_at: std::time::Instant,
    calls: u32,
}

/// Where a replayer stands, to go back to ([`Replayer::rewind`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplayerMark {
    pub pos: usize,
    rip: u64,
    thread: u32,
}

impl<'a> Replayer<'a> {
    fn new(store: &'a Store, id: &str, events: Vec<(u64, Event)>, out: &'a Sender<ReplayOutput>, thread: u32) -> Self {
        let id = id.to_string();
        let wait = if events.len() >= PROGRESS_EVENTS { std::time::Duration::ZERO } else { PROGRESS_AFTER };
        let progress_at = std::time::Instant::now() + wait;
        Replayer {
            store,
            id,
            events,
            pos: 0,
            out,
            rip: 0,
            thread,
            seen: 0,
            ring: None,
            merge: None,
            forks: 0,
            silent: false,
            progress: false,
            progress_at,
            calls: 0,
        }
    }

    /// Says how far the replay is, now and then, where `progress` is set:
    /// the first process's replay (no other process's, nor one a debugger
    /// drives: its events come again when it goes back).
    fn tick(&mut self) {
        self.calls = self.calls.wrapping_add(1);
        if !self.calls.is_multiple_of(64) || !self.progress {
            return;
        }
        let now = std::time::Instant::now();
        if now < self.progress_at {
            return;
        }
        self.progress_at = now + PROGRESS_EVERY;
        let _ = self.out.send(ReplayOutput::Progress { done: self.pos as u64, total: self.events.len() as u64 });
    }

    /// Sends what a write sent to stream 1 or 2 (`order`: its place in the
    /// tree's order, 0 for none; no bytes: a numbered call that sent nothing).
    fn emit(&self, order: u64, stream: u32, bytes: Option<Vec<u8>>) {
        if self.silent {
            return;
        }
        let output = bytes.map(|b| ReplayOutput::of_stream(stream, b));
        match &self.merge {
            Some((m, proc)) => m.put(*proc, order, output),
            None => {
                if let Some(o) = output {
                    let _ = self.out.send(o);
                }
            }
        }
    }

    /// The session of the child the last replayed fork made.
    pub fn child_id(&self) -> String {
        format!("{}.{}", self.id, self.forks)
    }

    fn diverged(&self, expected: String, actual: String) -> OutsideError {
        let event = self.events.get(self.pos).map(|e| e.0).unwrap_or(self.events.len() as u64);
        OutsideError::Diverged(crate::kernel::outside::Divergence { event, expected, actual, rip: self.rip })
    }

    /// The next event, which must exist: the program doing `actual` past
    /// the end of the recording is a divergence.
    fn next(&mut self, actual: impl FnOnce() -> String) -> Result<Event, OutsideError> {
        match self.events.get(self.pos) {
            Some((_, e)) => {
                self.pos += 1;
                Ok(e.clone())
            }
            None => Err(self.diverged("the end of the recording".into(), actual())),
        }
    }

    fn peek(&self) -> Option<&Event> {
        self.events.get(self.pos).map(|e| &e.1)
    }

    fn load(&self, data: &Option<warp_proto::trace::Data>) -> Result<Vec<u8>, OutsideError> {
        match data {
            None => Ok(Vec::new()),
            Some(d) => self.store.load(&self.id, d).map_err(|e| OutsideError::Trace(e.to_string())),
        }
    }

    /// Puts what the broker wrote into guest memory there again: a blob
    /// a piece at a time, as the store reads it (a long read's bytes are
    /// never all in warpd's memory at once), its hash checked at the end.
    fn write_into(&self, w: &warp_proto::trace::MemoryWrite, memory: &MemFd, seq: u64) -> Result<(), OutsideError> {
        use warp_proto::trace::data::Where;
        let outside = || OutsideError::Trace(format!("session {}: event {seq} writes outside guest memory", self.id));
        let trace = |e: String| OutsideError::Trace(e);
        let fits = |len: u64| w.offset.checked_add(len).is_some_and(|end| end <= memory.size());
        let Some(Where::Blob(hash)) = w.data.as_ref().and_then(|d| d.r#where.as_ref()) else {
            let bytes = self.load(&w.data)?;
            if !fits(bytes.len() as u64) {
                return Err(outside());
            }
            memory.write(w.offset, &bytes);
            return Ok(());
        };
        let len = self.store.blob_len(&self.id, hash).map_err(|e| trace(e.to_string()))?;
        let said = w.data.as_ref().map_or(0, |d| d.len);
        if said != 0 && said != len {
            return Err(trace(format!(
                "session {}: event {seq}: a blob reference says {said} bytes but the blob holds {len}",
                self.id
            )));
        }
        if !fits(len) {
            return Err(outside());
        }
        let mut at = w.offset;
        self.store
            .read_blob(&self.id, hash, &mut |piece| {
                memory.write(at, piece);
                at += piece.len() as u64;
                Ok(())
            })
            .map_err(|e| trace(e.to_string()))
    }

    /// Where it stands now.
    pub fn mark(&self) -> ReplayerMark {
        ReplayerMark { pos: self.pos, rip: self.rip, thread: self.thread }
    }

    /// Goes back to `m` (a checkpoint's): what comes again is not sent again.
    pub fn rewind(&mut self, m: &ReplayerMark) {
        self.seen = self.seen.max(self.pos);
        self.pos = m.pos;
        self.rip = m.rip;
        self.thread = m.thread;
    }

    /// Whether the events from here on are replayed for the first time.
    fn first_time(&self) -> bool {
        self.pos >= self.seen
    }

    /// A line for the user, whether or not this stretch was replayed before.
    pub fn say(&self, text: String) {
        let _ = self.out.send(ReplayOutput::Note(text));
    }

    /// The sequence number of the next event to replay.
    pub fn position(&self) -> u64 {
        self.events.get(self.pos).map(|e| e.0).unwrap_or_else(|| self.events.last().map(|e| e.0 + 1).unwrap_or(0))
    }

    /// How many events the recording has.
    pub fn events(&self) -> usize {
        self.events.len()
    }

    /// The events with indexes in `range` (sequence number, event).
    pub fn events_in(&self, range: std::ops::Range<usize>) -> &[(u64, Event)] {
        let end = range.end.min(self.events.len());
        &self.events[range.start.min(end)..end]
    }

    /// The index of the first event with sequence number `seq` or after.
    pub fn index_of(&self, seq: u64) -> usize {
        self.events.partition_point(|e| e.0 < seq)
    }

    /// Whether every recorded event was replayed.
    pub fn finished(&self) -> bool {
        self.pos == self.events.len()
    }
}

/// The RingCalls from event index `from` on, up to the next other event
/// (at most a batch's worth), for the replay poller.
fn plan(r: &Replayer<'_>, from: usize) -> Vec<Planned> {
    const MAX_CALLS: usize = 256;
    const MAX_BYTES: usize = 8 << 20;
    let mut out = Vec::new();
    let mut bytes = 0;
    for (i, (_, e)) in r.events.iter().enumerate().skip(from).take(MAX_CALLS) {
        let Some(event::Kind::Ring(c)) = &e.kind else {
            // A point comes after the last of these calls: replay plants its
            // probe when it has control, so that call takes the exit path
            // (as the ring answered it) and the program runs on from there
            // with the probe in place.
            if matches!(e.kind, Some(event::Kind::Interrupt(_))) {
                out.pop();
            }
            break;
        };
        // A damaged blob: the exit path meets the call and says so.
        let Ok(output) = r.load(&c.output) else { break };
        bytes += output.len();
        if bytes > MAX_BYTES && !out.is_empty() {
            break;
        }
        let mut args = [0u64; 6];
        for (a, v) in args.iter_mut().zip(&c.args) {
            *a = *v;
        }
        out.push(Planned {
            nr: c.nr,
            args,
            ret: c.ret,
            input: c.input.clone(),
            output,
            stream: c.stream,
            emit: i >= r.seen,
        });
    }
    out
}

impl Outside for Replayer<'_> {
    fn ring_arm(&mut self, allow: Option<&RingAllow>) {
        let Some(ring) = &self.ring else { return };
        ring.arm(allow, self.pos, |from| plan(self, from));
    }

    fn ring_collect(&mut self, _thread: u32) -> Result<u64, OutsideError> {
        let Some(ring) = &self.ring else { return Ok(0) };
        let (n, emitted) = ring.collect();
        self.pos += n;
        self.tick();
        for (stream, bytes) in emitted {
            self.emit(0, stream, Some(bytes));
        }
        Ok(n as u64)
    }

    fn ring_replayed(&mut self, req: &SyscallRequest, mm: &Mm) -> Result<Option<i64>, OutsideError> {
        let Some(event::Kind::Ring(rc)) = self.peek().and_then(|e| e.kind.clone()) else { return Ok(None) };
        let n = ringabi::arity(rc.nr);
        if rc.nr != req.number || req.args.get(..n) != rc.args.get(..n) {
            return Ok(None);
        }
        self.rip = req.rip;
        self.thread = req.thread;
        let recorded = || describe_event(&Event { kind: Some(event::Kind::Ring(rc.clone())) });
        let actual = || format!("[{}] {}", req.thread, describe(req.number, &req.args));
        if let Some((addr, len, out)) = ringabi::buffer(rc.nr, &req.args) {
            let Ok(ranges) = mm.user_ranges(addr, len, out) else {
                return Err(self.diverged(recorded(), format!("{} with a buffer it cannot reach", actual())));
            };
            let output = if out { self.load(&rc.output)? } else { Vec::new() };
            match apply_recorded(&mm.guest, &ranges, out, &output, &rc.input, rc.ret) {
                Ok(sent) => {
                    if !sent.is_empty() && matches!(rc.stream, 1 | 2) && self.first_time() {
                        self.emit(0, rc.stream, Some(sent));
                    }
                }
                Err(Unlike::Smaller) => {
                    return Err(self.diverged(recorded(), format!("{} with a smaller buffer", actual())));
                }
                Err(Unlike::OtherData) => {
                    return Err(
                        self.diverged(recorded(), format!("{} with other data in the buffer it reads", actual()))
                    );
                }
            }
        }
        self.pos += 1;
        Ok(Some(rc.ret))
    }

    fn call(&mut self, kind: request::Kind, memory: &MemFd) -> Result<Reply, OutsideError> {
        let actual = || match &kind {
            request::Kind::Syscall(c) => format!("broker call {}", describe(c.nr as u64, &c.args)),
            request::Kind::Fork(_) => format!("broker call {}", describe(57, &[])),
            _ => "reading the executable".into(),
        };
        self.tick();
        let before = self.pos;
        // The process was killed (SIGKILL) during this call: its broker went.
        if matches!(self.peek(), Some(Event { kind: Some(event::Kind::End(p)) }) if p.signal == crate::kernel::abi::SIGKILL)
        {
            return Err(OutsideError::Killed);
        }
        let e = self.next(actual)?;
        let Some(event::Kind::Call(call)) = e.kind else {
            self.pos = before;
            return Err(self.diverged(describe_event(&e), actual()));
        };
        if call.request_digest != digest::request_digest(&kind, memory)
            && !same_but_blocking_hint(&kind, &call.request_digest, memory)
        {
            self.pos = before;
            let mut actual = actual();
            if let request::Kind::Syscall(c) = &kind {
                if c.nr as u64 == call.nr as u64 && c.args == call.args {
                    actual.push_str(" with other data in the buffers it reads");
                }
            }
            return Err(self.diverged(describe_event(&Event { kind: Some(event::Kind::Call(call)) }), actual));
        }
        for w in &call.writes {
            self.write_into(w, memory, self.events[before].0)?;
        }
        let mut outputs = Vec::new();
        for o in &call.outputs {
            outputs.push(self.load(&Some(o.clone()))?);
        }
        let file = self.load(&call.file)?;
        // (`pos` is past this call's event.)
        if call.ret > 0 && (call.stream == 1 || call.stream == 2) && self.pos > self.seen {
            // What came from a file (sendfile) is in the trace; the rest is
            // the program's memory the call read.
            let bytes = match &call.sent {
                Some(_) => self.load(&call.sent)?,
                None => digest::sent_bytes(&kind, call.ret as u64, memory),
            };
            self.emit(call.order, call.stream, Some(bytes));
        } else if call.order != 0 && self.pos > self.seen {
            self.emit(call.order, 0, None);
        }
        if matches!(kind, request::Kind::Fork(_)) && call.ret > 0 {
            self.forks += 1;
        }
        Ok(Reply {
            id: 0,
            ret: call.ret,
            outputs,
            file,
            signals: call.signals,
            stream: call.stream,
            signals_pending: call.signals_pending,
            pending: call.pending,
            signal_infos: call.signal_infos,
            ..Default::default()
        })
    }

    fn take_completions(&mut self) -> Result<Vec<Completed>, OutsideError> {
        let mut out = Vec::new();
        while let Some(Event { kind: Some(event::Kind::Completion(c)) }) = self.peek() {
            let c = c.clone();
            self.pos += 1;
            let mut detached = Vec::with_capacity(c.detached.len());
            for d in &c.detached {
                detached.push(self.load(&Some(d.clone()))?);
            }
            let mut outputs = Vec::with_capacity(c.outputs.len());
            for o in &c.outputs {
                outputs.push(self.load(&Some(o.clone()))?);
            }
            out.push(Completed { thread: c.thread, seq: c.seq, ret: c.ret, detached, outputs });
        }
        Ok(out)
    }

    fn completions_waiting(&self) -> bool {
        false
    }

    fn cancel(&mut self, _thread: u32, _seq: u64) -> Result<(), OutsideError> {
        Ok(())
    }

    fn point_not_found(&mut self, p: &InterruptPoint, rip: u64, secs: u64) -> OutsideError {
        self.thread = p.thread;
        self.rip = rip;
        self.diverged(
            describe_point(p),
            format!("[{}] still computing after {secs} s without reaching that point (now at rip {rip:#x})", p.thread),
        )
    }

    fn take_signals(&mut self) -> Result<Vec<Arrival>, OutsideError> {
        if let Some(Event { kind: Some(event::Kind::Signals(s)) }) = self.peek() {
            if !s.asynchronous {
                let info = |i: usize| s.infos.get(i).cloned().unwrap_or_default();
                let v = s.signos.iter().enumerate().map(|(i, &signo)| Arrival { signo, info: info(i) }).collect();
                self.pos += 1;
                return Ok(v);
            }
        }
        Ok(Vec::new())
    }

    fn interrupted(&mut self) -> Result<Vec<Arrival>, OutsideError> {
        Ok(Vec::new())
    }

    fn interrupt(&mut self, p: &InterruptPoint) -> Result<(), OutsideError> {
        self.thread = p.thread;
        self.rip = p.regs.rip;
        let recorded = self.next_interrupt()?;
        if recorded.as_ref() == Some(p) {
            self.pos += 1;
            return Ok(());
        }
        let e = self.next(|| describe_point(p))?;
        self.pos -= 1;
        Err(self.diverged(describe_event(&e), describe_point(p)))
    }

    fn next_interrupt(&mut self) -> Result<Option<InterruptPoint>, OutsideError> {
        let Some(Event { kind: Some(event::Kind::Interrupt(i)) }) = self.peek() else {
            return Ok(None);
        };
        let (Some(regs), Ok(memory)) = (regs_from_words(&i.regs), <[u8; 32]>::try_from(i.memory.as_slice())) else {
            let seq = self.events[self.pos].0;
            return Err(OutsideError::Trace(format!(
                "session {}: event {seq} is an interrupt point without its 18 registers and 32-byte memory digest",
                self.id
            )));
        };
        Ok(Some(InterruptPoint {
            thread: i.thread,
            regs,
            memory,
            pages: i.pages,
            signals: i.signals.clone(),
            signal_infos: i.signal_infos.clone(),
            preempted: i.preempted,
            watch: i.watch.chunks_exact(2).map(|w| (w[0], w[1])).collect(),
            computed_us: i.computed_us,
            itimers: i.itimers,
        }))
    }

    fn slice_over(&mut self, thread: u32, _due: bool) -> Result<bool, OutsideError> {
        if let Some(Event { kind: Some(event::Kind::SliceEnd(s)) }) = self.peek() {
            if s.thread == thread {
                self.pos += 1;
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn pending_async(&mut self) -> Result<Vec<i32>, OutsideError> {
        let mut v = Vec::new();
        while let Some(Event { kind: Some(event::Kind::Signals(s)) }) = self.peek() {
            if !s.asynchronous {
                break;
            }
            let note = format!(
                "the recording took signal(s) {:?} while the program computed (at rip {:#x}); replay delivers them at the syscall boundary before that point",
                s.signos, s.rip
            );
            v.extend(s.signos.iter().copied());
            if self.first_time() {
                let _ = self.out.send(ReplayOutput::Note(note));
            }
            self.pos += 1;
        }
        Ok(v)
    }

    fn is_dead(&self) -> bool {
        false
    }

    fn note(&mut self, text: String) {
        if self.first_time() {
            let _ = self.out.send(ReplayOutput::Note(text));
        }
    }

    fn signals_waiting(&self) -> bool {
        false
    }

    fn syscall_entry(&mut self, req: &SyscallRequest) -> Result<(), OutsideError> {
        let (nr, args, rip) = (req.number, req.args, req.rip);
        self.rip = rip;
        self.thread = req.thread;
        // As many arguments as the call takes: what else the registers hold
        // is no input of the call. Traces from before threads name no thread.
        let arity = crate::kernel::table::lookup(crate::kernel::table::number(nr)).map_or(6, |d| d.args.len());
        self.expect(
            |k| {
                matches!(k, event::Kind::Entry(x) if x.nr == nr && x.args.get(..arity) == args.get(..arity)
                    && (x.thread == 0 || x.thread == req.thread))
            },
            || format!("[{}] {}", req.thread, describe(nr, &args)),
        )
    }

    fn schedule(&mut self, thread: u32) -> Result<(), OutsideError> {
        self.thread = thread;
        self.expect(
            |k| matches!(k, event::Kind::Schedule(s) if s.thread == thread),
            || format!("thread {thread} getting the vCPU"),
        )
    }

    fn syscall_exit(&mut self, nr: u64, ret: i64, _rip: u64) -> Result<(), OutsideError> {
        self.expect(
            |k| matches!(k, event::Kind::Exit(x) if x.nr == nr && x.ret == ret),
            || format!("{} returning {ret}", describe(nr, &[])),
        )
    }

    fn fault(&mut self, f: &GuestFault, _signal: i32) -> Result<(), OutsideError> {
        self.rip = f.rip;
        self.expect(
            |k| matches!(k, event::Kind::Fault(x) if x.vector == f.vector && x.rip == f.rip),
            || format!("CPU exception {} at {:#x}", f.vector, f.rip),
        )
    }

    fn end(&mut self, ending: Ending, rip: u64) -> Result<(), OutsideError> {
        self.rip = rip;
        let (code, sig) = match ending {
            Ending::Exited(c) => (c, 0),
            Ending::Killed(s) => (0, s),
        };
        self.expect(
            |k| matches!(k, event::Kind::End(p) if p.exit_code == code && p.signal == sig),
            || {
                describe_event(&Event {
                    kind: Some(event::Kind::End(warp_proto::trace::ProgramEnd { exit_code: code, signal: sig })),
                })
            },
        )
    }
}

impl Replayer<'_> {
    /// Consumes the next event when `matches` accepts it; otherwise the
    /// replay diverged here (the event stays, for the report).
    fn expect(
        &mut self,
        matches: impl Fn(&event::Kind) -> bool,
        actual: impl Fn() -> String,
    ) -> Result<(), OutsideError> {
        let before = self.pos;
        let e = self.next(&actual)?;
        if e.kind.as_ref().is_some_and(matches) {
            return Ok(());
        }
        self.pos = before;
        Err(self.diverged(describe_event(&e), actual()))
    }
}

/// Notes about CPUID: what differs between the recording host and this one.
fn cpuid_notes(meta: &SessionMeta) -> Vec<String> {
    let now = session::host_cpuid();
    let mut notes = Vec::new();
    let differing = meta.cpuid.iter().filter(|r| !now.iter().any(|n| n == *r)).count()
        + now.iter().filter(|n| !meta.cpuid.iter().any(|r| r.function == n.function && r.index == n.index)).count();
    if differing > 0 {
        notes.push(format!(
            "this host's CPUID differs from the recording host's in {differing} leaves: the program may take other paths (CPUID cannot be pinned on this host)"
        ));
    }
    let mut missing = Vec::new();
    for (f, i, regs) in crate::arch::x86_64::cpu::FEATURE_LEAVES {
        let (Some(r), Some(n)) = (
            meta.cpuid.iter().find(|l| l.function == f && l.index == i),
            now.iter().find(|l| l.function == f && l.index == i),
        ) else {
            continue;
        };
        for (reg, a, b) in [("ebx", r.ebx, n.ebx), ("ecx", r.ecx, n.ecx), ("edx", r.edx, n.edx)] {
            if regs.contains(&reg) && a & !b != 0 {
                missing.push(format!("leaf {f:#x} {reg} bits {:#x}", a & !b));
            }
        }
    }
    if !missing.is_empty() {
        notes.push(format!(
            "this host lacks CPU features the recording host had ({}): the replay may diverge where the program uses them",
            missing.join(", ")
        ));
    }
    notes
}

/// The executable session `id` ran (for a script, its interpreter), as its
/// recording read it: its path and bytes, from the trace alone.
pub fn recorded_executable(store: &Store, id: &str) -> Result<(String, Vec<u8>), String> {
    let meta = store.session(id).map_err(|e| e.to_string())?;
    let events = store.events(id, 0).map_err(|e| e.to_string())?;
    let (discard, _) = std::sync::mpsc::channel();
    let ident = session::identity_of(&meta);
    let mut rp = Replayer::new(store, id, events, &discard, ident.pid);
    let memory = |name: &str, size: u64| MemFd::create(name, size).map_err(|e| e.to_string());
    let mm = crate::kernel::mm::Mm::new(
        memory("warp-kernel", crate::arch::x86_64::KERNEL_SLOT_SIZE)?,
        memory("warp-guest", builder::GUEST_MEMORY)?,
    );
    let read = builder::read_program(&meta.program, &mut rp, &mm).map_err(|e| e.to_string())?;
    Ok((read.images.exe_path, read.images.exe))
}

/// A session's metadata and events, if it can be replayed.
fn replayable(store: &Store, id: &str) -> Result<(SessionMeta, Vec<(u64, Event)>), ReplayOutcome> {
    let meta = store.session(id).map_err(|e| ReplayOutcome::Unreadable(e.to_string()))?;
    if meta.format_version > FORMAT_VERSION {
        return Err(ReplayOutcome::Unreadable(format!(
            "session {id} was written in trace format {}; this warpd reads up to {FORMAT_VERSION}",
            meta.format_version
        )));
    }
    if meta.status != Status::Complete as i32 {
        let why = meta.ending.as_ref().map(|e| e.failure.clone()).unwrap_or_default();
        let state = if meta.status == Status::Recording as i32 { "still recording" } else { "incomplete" };
        return Err(ReplayOutcome::Unreadable(format!(
            "session {id} is {state}{}; only complete recordings can be replayed",
            if why.is_empty() { String::new() } else { format!(" ({why})") }
        )));
    }
    let events = store.events(id, 0).map_err(|e| ReplayOutcome::Unreadable(e.to_string()))?;
    Ok((meta, events))
}

/// The crash line of a replay: its own, or the recording's where that
/// named the place (a library's symbols, read from its file when the
/// recording ended) and the replay, with no file to read, can only give
/// `module+offset` for the same instruction.
fn recorded_place(meta: &SessionMeta, (line, site): (String, Option<CrashSite>)) -> String {
    let named = |s: &CrashSite| !s.function.is_empty() || !s.symbol.is_empty();
    let recorded = meta.ending.as_ref().filter(|e| !e.crash.is_empty());
    match (recorded, site) {
        (Some(e), Some(here))
            if !named(&here) && e.crash_site.as_ref().is_some_and(|r| r.rip == here.rip && named(r)) =>
        {
            e.crash.clone()
        }
        _ => line,
    }
}

/// What a replay's run came to: `ended` is the program's end (Err(None):
/// stopped; Err(Some(event)): a debugger left there).
fn outcome_of(
    result: Result<Result<Ending, Option<u64>>, SessionError>,
    rp: &Replayer<'_>,
    id: &str,
    crash: String,
) -> ReplayOutcome {
    match result {
        Ok(Err(None)) => ReplayOutcome::Failed("the replay was stopped".into()),
        Ok(Err(Some(event))) => ReplayOutcome::Left { event },
        Ok(Ok(ending)) => {
            if !rp.finished() {
                let seq = rp.events.get(rp.pos).map(|e| e.0).unwrap_or(0);
                return ReplayOutcome::Unreadable(format!(
                    "session {id}: the program ended but the recording goes on at event {seq}"
                ));
            }
            match ending {
                Ending::Exited(c) => ReplayOutcome::Reproduced { exit_code: c, signal: 0, crash },
                Ending::Killed(s) => ReplayOutcome::Reproduced { exit_code: 0, signal: s, crash },
            }
        }
        Err(SessionError::Outside(OutsideError::Diverged(d))) => ReplayOutcome::Diverged(Divergence {
            event: d.event,
            thread: rp.thread,
            expected: d.expected,
            actual: d.actual,
            rip: d.rip,
        }),
        Err(SessionError::Outside(OutsideError::Trace(m))) => ReplayOutcome::Unreadable(m),
        Err(e) => ReplayOutcome::Failed(e.to_string()),
    }
}

/// What the replays of a process tree share: each forked process replays
/// on a scoped thread of its own, its output through the merger.
struct TreeReplay<'e> {
    store: &'e Store,
    config: &'e Config,
    out: &'e Sender<ReplayOutput>,
    merger: Arc<Merger>,
    /// Forked processes replay with the exitless ring too.
    exitless: bool,
    /// Processes numbered so far (0 is the first).
    procs: std::sync::atomic::AtomicUsize,
    /// Forked processes that did not reproduce their recording: session, pid, why.
    failures: std::sync::Mutex<Vec<(String, u32, ReplayOutcome)>>,
    /// One process selected (`--pid`): only it and the processes it
    /// descends from replay, and only its output is sent.
    selected: Option<Selected>,
}

/// The process a replay is of, when it is not the first one.
struct Selected {
    /// Its session.
    id: String,
    /// The sessions of the processes it descends from, the first excepted.
    ancestors: std::collections::HashSet<String>,
    /// The debugger, for this process.
    gdb: std::sync::Mutex<Option<GdbLink>>,
    /// How its replay went, once it has.
    outcome: std::sync::Mutex<Option<ReplayOutcome>>,
}

impl Selected {
    /// Whether no debugger is meant for it.
    fn gdb_less(&self) -> bool {
        self.gdb.lock().unwrap_or_else(|e| e.into_inner()).is_none()
    }

    /// Session `id` of recording `root`'s tree, with the chain of parents
    /// that leads to it from the store.
    fn new(store: &Store, root: &str, id: &str, gdb: Option<GdbLink>) -> Result<Selected, ReplayOutcome> {
        let mut ancestors = std::collections::HashSet::new();
        let mut at = store.session(id).map_err(|e| ReplayOutcome::Unreadable(e.to_string()))?;
        if at.root != root {
            return Err(ReplayOutcome::Unreadable(format!("session {id} is not a process of recording {root}")));
        }
        while at.parent != root {
            if at.parent.is_empty() || !ancestors.insert(at.parent.clone()) {
                return Err(ReplayOutcome::Unreadable(format!(
                    "session {id}: its chain of parent processes does not lead to recording {root}"
                )));
            }
            at = store.session(&at.parent).map_err(|e| ReplayOutcome::Unreadable(e.to_string()))?;
        }
        Ok(Selected { id: id.to_string(), ancestors, gdb: std::sync::Mutex::new(gdb), outcome: Default::default() })
    }
}

impl<'e> TreeReplay<'e> {
    /// Replays the child `forked` (session `id`) on a thread of the scope.
    fn spawn<'s>(&'e self, s: &'s std::thread::Scope<'s, 'e>, id: String, forked: crate::machine::Forked) {
        if let Some(sel) = &self.selected {
            if sel.id != id && !sel.ancestors.contains(&id) {
                return;
            }
        }
        let proc = self.procs.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        let pid = forked.pid;
        s.spawn(move || {
            let outcome = self.replay_forked(s, &id, proc, forked);
            if let Some(sel) = self.selected.as_ref().filter(|sel| sel.id == id) {
                *sel.outcome.lock().unwrap_or_else(|e| e.into_inner()) = Some(outcome);
                return;
            }
            if !matches!(outcome, ReplayOutcome::Reproduced { .. }) {
                self.failures.lock().unwrap_or_else(|e| e.into_inner()).push((id, pid, outcome));
            }
        });
    }

    fn replay_forked<'s>(
        &'e self,
        s: &'s std::thread::Scope<'s, 'e>,
        id: &str,
        proc: usize,
        forked: crate::machine::Forked,
    ) -> ReplayOutcome {
        let (meta, events) = match replayable(self.store, id) {
            Ok(r) => r,
            Err(o) => return o,
        };
        // Killed before it ran (a SIGKILL right after the fork): that end is all.
        if let [(_, Event { kind: Some(event::Kind::End(p)) })] = events.as_slice() {
            if p.signal == crate::kernel::abi::SIGKILL {
                return ReplayOutcome::Reproduced { exit_code: 0, signal: p.signal, crash: String::new() };
            }
        }
        // The poller starts before the vCPU's thread is pinned (it keeps every CPU).
        let ring = match self.exitless && crate::trace::ring::host_allows() {
            true => {
                ReplayRing::start(&forked.process.mm.kernel, &forked.process.mm.guest, meta.vcpu_cpu.checked_sub(1))
                    .map_err(|e| tracing::warn!("no exitless ring for a forked process's replay: {e}"))
                    .ok()
            }
            false => None,
        };
        let _pin = session::CpuPin::new(meta.vcpu_cpu.checked_sub(1));
        let hv = match crate::hv::open(&self.config.kvm_device) {
            Ok(h) => h,
            Err(e) => return ReplayOutcome::Failed(e.to_string()),
        };
        let mut rp = Replayer::new(self.store, id, events, self.out, forked.pid);
        let selected = self.selected.as_ref().filter(|sel| sel.id == id);
        match &self.selected {
            None => rp.merge = Some((self.merger.clone(), proc)),
            Some(_) => rp.silent = selected.is_none(),
        }
        let gdb = selected.and_then(|sel| sel.gdb.lock().unwrap_or_else(|e| e.into_inner()).take());
        if gdb.is_none() {
            rp.ring = ring;
        }
        let result = (|| {
            let mut guest = crate::machine::start_forked(hv.as_ref(), forked)?;
            guest.exitless(rp.ring.is_some());
            guest.watch_points()?;
            if let Some(link) = gdb {
                let exe = guest.process.proc_info.exe.clone();
                let auxv = guest.process.proc_info.auxv.clone();
                return match crate::gdb::serve(hv.as_ref(), &mut guest, &mut rp, link, self.out, &exe, &auxv)? {
                    Debugged::Ended(e) => Ok(Ok(e)),
                    Debugged::Left { event } => Ok(Err(Some(event))),
                };
            }
            Ok(self.drive(s, &mut guest, &mut rp)?.map_err(|()| None))
        })();
        outcome_of(result, &rp, id, String::new())
    }

    /// Steps a replayed process to its end, replaying each child it forks.
    fn drive<'s>(
        &'e self,
        s: &'s std::thread::Scope<'s, 'e>,
        guest: &mut crate::machine::Guest,
        rp: &mut Replayer<'e>,
    ) -> Result<Result<Ending, ()>, SessionError> {
        loop {
            let stop = guest.step(rp)?;
            if let Some(child) = guest.take_forked() {
                self.spawn(s, rp.child_id(), child);
            }
            match stop {
                Stop::Ended(e) => return Ok(Ok(e)),
                Stop::Paused => return Ok(Err(())),
                _ => {}
            }
        }
    }
}

/// Replays session `id`. Blocking: run it on a thread of its own. `cancel`
/// stops it (its outcome is then `Failed`). With `gdb`, the replay stops at
/// the program's first instruction and a debugger drives it (`crate::gdb`).
/// A process tree replays whole, each process in a VM of its own, its
/// output in the order it was recorded; the outcome is the first process's
/// unless a forked one did not reproduce its recording. With `process` (a
/// forked process's session) that process is the replay's: the processes
/// it descends from replay silently up to it, the others not at all, and
/// the debugger (`gdb`), its output and the outcome are its.
#[allow(clippy::too_many_arguments)]
pub fn replay(
    store: &Store,
    id: &str,
    config: &Config,
    exitless: bool,
    out: &Sender<ReplayOutput>,
    cancel: Option<&Arc<Cancel>>,
    gdb: Option<GdbLink>,
    process: Option<&str>,
) -> ReplayOutcome {
    let (meta, events) = match replayable(store, id) {
        Ok(r) => r,
        Err(o) => return o,
    };
    let (selected, gdb) = match process {
        Some(p) => match Selected::new(store, id, p, gdb) {
            Ok(s) => (Some(s), None),
            Err(o) => return o,
        },
        None => (None, gdb),
    };
    // The debugger's bytes pause whichever process it debugs: not this one.
    let cancel = cancel.filter(|_| selected.as_ref().is_none_or(|s| s.gdb_less()));
    if meta.at_random.len() != 16 {
        return ReplayOutcome::Unreadable(format!("session {id}: its metadata lacks the 16 AT_RANDOM bytes"));
    }
    for n in cpuid_notes(&meta) {
        let _ = out.send(ReplayOutput::Note(n));
    }
    let ident = session::identity_of(&meta);
    let _pin = session::CpuPin::new(meta.vcpu_cpu.checked_sub(1));
    let pin_cpu = _pin.cpu();
    let hv = match crate::hv::open(&config.kvm_device) {
        Ok(h) => h,
        Err(e) => return ReplayOutcome::Failed(e.to_string()),
    };
    let parts = match builder::parts(hv.as_ref()) {
        Ok(p) => p,
        Err(e) => return ReplayOutcome::Failed(e.to_string()),
    };
    let tree = TreeReplay {
        store,
        config,
        out,
        merger: Arc::new(Merger::new(out.clone())),
        exitless,
        procs: Default::default(),
        failures: Default::default(),
        selected,
    };
    let mut rp = Replayer::new(store, id, events, out, ident.pid);
    if tree.selected.is_some() {
        rp.silent = true;
    } else if gdb.is_none() {
        rp.merge = Some((tree.merger.clone(), 0));
        rp.progress = true;
    }
    let mut random = [0u8; 16];
    random.copy_from_slice(&meta.at_random);
    let mut crash = String::new();
    let result = std::thread::scope(|s| {
        let tree = &tree;
        let rp = &mut rp;
        let crash = &mut crash;
        (|| {
            let read = builder::read_program(&meta.program, rp, &parts.mm)?;
            if !meta.exe_hash.is_empty()
                && blake3::hash(&read.images.exe).as_bytes().as_slice() != meta.exe_hash.as_slice()
            {
                return Err(SessionError::Outside(OutsideError::Trace(format!(
                    "session {id}: the recorded executable does not match its hash"
                ))));
            }
            let spec = GuestSpec {
                program: meta.program.clone(),
                argv: meta.argv.clone(),
                env: meta.env.clone(),
                cwd: meta.cwd.clone(),
                ident: ident.clone(),
                random,
                chaos: meta.chaos.then_some(meta.chaos_seed),
                format: meta.format_version,
            };
            // The poller starts before the vCPU's thread is pinned (it keeps every CPU).
            if exitless && gdb.is_none() && crate::trace::ring::host_allows() {
                match ReplayRing::start(&parts.mm.kernel, &parts.mm.guest, pin_cpu) {
                    Ok(r) => rp.ring = Some(r),
                    Err(e) => tracing::warn!("no exitless ring for this replay: {e}"),
                }
            }
            let mut guest = builder::build(&spec, &read, parts)?;
            guest.exitless(rp.ring.is_some());
            guest.watch_points()?;
            if let Some(c) = cancel {
                guest.cancel_with(c.clone());
            }
            let ended = if let Some(link) = gdb {
                let auxv = guest.process.proc_info.auxv.clone();
                match crate::gdb::serve(hv.as_ref(), &mut guest, rp, link, out, &read.images.exe_path, &auxv)? {
                    Debugged::Ended(e) => Ok(e),
                    Debugged::Left { event } => Err(Some(event)),
                }
            } else {
                tree.drive(s, &mut guest, rp)?.map_err(|()| None)
            };
            if let Ok(Ending::Killed(sig)) = ended {
                let here = guest.crash_line(sig, &read.images.exe_path, &read.images.exe, &mut |_| None);
                *crash = recorded_place(&meta, here);
            }
            Ok(ended)
        })()
    });
    tree.merger.flush();
    let outcome = outcome_of(result, &rp, id, crash);
    let failed = tree.failures.into_inner().unwrap_or_else(|e| e.into_inner()).into_iter().next();
    if let Some(sel) = tree.selected {
        // The selected process's outcome; or why its replay never began.
        if let Some(o) = sel.outcome.into_inner().unwrap_or_else(|e| e.into_inner()) {
            return o;
        }
        return match (outcome, failed) {
            (ReplayOutcome::Reproduced { .. }, Some((child, pid, why))) => {
                let _ = out.send(ReplayOutput::Note(format!(
                    "process {pid} (session {child}), on the way to session {}, did not replay as recorded",
                    sel.id
                )));
                why
            }
            (ReplayOutcome::Reproduced { .. }, None) => ReplayOutcome::Unreadable(format!(
                "the replay of recording {id} did not reach the fork that made session {}",
                sel.id
            )),
            (other, _) => other,
        };
    }
    match (outcome, failed) {
        (ReplayOutcome::Reproduced { .. }, Some((child, pid, why))) => {
            let _ = out.send(ReplayOutput::Note(format!(
                "process {pid} of the recording (session {child}) did not replay as recorded"
            )));
            match why {
                ReplayOutcome::Unreadable(m) => ReplayOutcome::Unreadable(format!("process {pid}: {m}")),
                ReplayOutcome::Failed(m) => ReplayOutcome::Failed(format!("process {pid}: {m}")),
                other => other,
            }
        }
        (outcome, _) => outcome,
    }
}
