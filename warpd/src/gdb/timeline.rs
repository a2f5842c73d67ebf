//! Reverse execution: checkpoints taken along a debugged replay, and
//! searches forward from them.
//!
//! ```text
//!  forward:  a checkpoint at a syscall boundary now and then (the first at
//!            the program's first instruction), sharing the pages that did
//!            not change; they are thinned when together they hold more
//!            than the budget (WARP_CHECKPOINT_MB, 256)
//!  now:      where the program stands: the events behind it, the thread,
//!            its registers, a digest of memory and context
//!  bc:       from the last checkpoint before now, run forward with gdb's
//!            breakpoints and watchpoints (and one at now's rip) to now,
//!            noting each hit; the last one is the answer: from the same
//!            checkpoint, run to it again (a watchpoint stops before its
//!            access). No hit: the checkpoint before, up to that one's
//!            position; none at all: the start (replaylog begin).
//!  bs:       from the last checkpoint before now, step to now counting
//!            instructions (K); from it again, step K-1.
//! ```
//!
//! The replay is deterministic, so the same checkpoint and the same traps
//! meet the same stops in the same order, and counting them is enough to
//! find one again.

use std::time::{Duration, Instant};

use crate::arch::Regs;
use crate::machine::{Checkpoint, Stop, WatchKind};
use crate::session::SessionError;
use crate::trace::replay::ReplayerMark;

use super::Debuggee;

/// Checkpoints the timeline keeps, oldest first.
pub struct Timeline {
    marks: Vec<Mark>,
    budget: u64,
    last: Instant,
    /// The stops gdb saw since the last jump back, in order: a step back
    /// from one of them is a few instructions from the one before.
    trail: Vec<Mark>,
    trail_bytes: u64,
    /// During a reverse operation nothing is thinned: its searches find
    /// checkpoints again by position.
    frozen: bool,
}

/// The most stops the trail keeps.
const TRAIL: usize = 64;

/// How many instructions a step back steps from a trail stop before it
/// gives up on it (it was far back: the checkpoints are used instead).
const TRAIL_STEPS: u64 = 20_000;

struct Mark {
    at: ReplayerMark,
    checkpoint: Checkpoint,
}

/// How far apart checkpoints are taken: events (syscalls, switches,
/// points) and replay time, both.
const SPACING_EVENTS: usize = 4;
const SPACING: Duration = Duration::from_millis(2);

impl Timeline {
    pub fn new() -> Timeline {
        let mb = std::env::var("WARP_CHECKPOINT_MB").ok().and_then(|v| v.parse::<u64>().ok()).unwrap_or(256);
        Timeline {
            marks: Vec::new(),
            budget: mb.max(1) << 20,
            last: Instant::now(),
            trail: Vec::new(),
            trail_bytes: 0,
            frozen: false,
        }
    }

    /// The memory every checkpoint holds (the pages they share once).
    fn in_use(&self) -> u64 {
        self.marks.iter().chain(&self.trail).next().map_or(0, |m| m.checkpoint.memory_in_use())
    }

    /// Thins checkpoints until under budget: each time the one whose
    /// neighbours are closest (never the first, the start, nor the last).
    /// What one frees is the pages no other holds.
    fn thin(&mut self) {
        while self.in_use() > self.budget && self.marks.len() > 2 {
            let victim = (1..self.marks.len() - 1)
                .min_by_key(|&j| self.marks[j + 1].at.pos - self.marks[j - 1].at.pos)
                .unwrap_or(1);
            self.marks.remove(victim);
        }
    }

    fn freeze(&mut self, on: bool) {
        self.frozen = on;
        if !on {
            self.thin();
        }
    }

    /// The index of the checkpoint at `pos` (else the last before it).
    fn at(&self, pos: usize) -> usize {
        self.marks.iter().position(|m| m.at.pos == pos).unwrap_or_else(|| self.before(pos))
    }

    /// How many checkpoints it holds, and the memory they hold together.
    pub fn size(&self) -> (usize, u64) {
        (self.marks.len() + self.trail.len(), self.in_use())
    }

    fn push_trail(&mut self, at: ReplayerMark, checkpoint: Checkpoint) {
        self.trail_bytes += checkpoint.bytes();
        self.trail.push(Mark { at, checkpoint });
        while self.trail.len() > TRAIL || (self.trail_bytes > self.budget / 2 && self.trail.len() > 1) {
            let m = self.trail.remove(0);
            self.trail_bytes -= m.checkpoint.bytes();
        }
    }

    fn truncate_trail(&mut self, len: usize) {
        while self.trail.len() > len {
            if let Some(m) = self.trail.pop() {
                self.trail_bytes -= m.checkpoint.bytes();
            }
        }
    }

    /// Keeps `c`, taken at `at`, unless one is there already.
    fn add(&mut self, at: ReplayerMark, checkpoint: Checkpoint) {
        if self.marks.iter().any(|m| m.at.pos == at.pos) {
            return;
        }
        let i = self.marks.partition_point(|m| m.at.pos < at.pos);
        self.marks.insert(i, Mark { at, checkpoint });
        self.last = Instant::now();
        if !self.frozen {
            self.thin();
        }
    }

    /// Whether a checkpoint is due at a boundary at `pos` (forward, or on
    /// a search through a stretch with few).
    fn due(&self, pos: usize) -> bool {
        let prev = self.marks.get(self.before(pos)).map(|m| m.at.pos);
        let next = self.marks.get(self.marks.partition_point(|m| m.at.pos <= pos)).map(|m| m.at.pos);
        self.last.elapsed() >= SPACING
            && prev.is_none_or(|p| pos >= p + SPACING_EVENTS)
            && next.is_none_or(|n| n >= pos + SPACING_EVENTS)
    }

    /// The last checkpoint at or before `pos`.
    fn before(&self, pos: usize) -> usize {
        self.marks.partition_point(|m| m.at.pos <= pos).saturating_sub(1)
    }
}

/// Where the program stands, to be recognised on a search forward.
pub struct Now {
    pos: usize,
    thread: u32,
    regs: Regs,
    digest: [u8; 32],
    ended: bool,
}

/// The most registers that may differ for a moment to be taken for now.
const NEAR: u32 = 4;

fn not_again() -> SessionError {
    SessionError::Failed(
        warp_proto::warp::Failure::Daemon,
        "going back, the replay did not come to where it was again".into(),
    )
}

/// Registers as two passes over the same moment have them: the resume
/// flag is in the flags a fault saves, not in a trap's.
fn comparable(mut r: Regs) -> Regs {
    r.rflags &= !RFLAGS_RF;
    r
}

const RFLAGS_RF: u64 = 1 << 16;

/// Where a search forward stops.
enum Until<'n> {
    Now(&'n Now),
    /// Now, within this many stops (else the search gives up).
    NowWithin(&'n Now, u64),
    /// A checkpoint's position (the next checkpoint's, searching backwards).
    Pos(usize),
    /// The n-th stop (counted from 1).
    Nth(u64),
}

/// A stop a search meets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// A breakpoint, gdb's own (`true`) or the search's mark on now's rip.
    Break(bool),
    Watch(WatchKind, u64),
    Fault,
    Step,
    /// Now, found again.
    Now,
    /// Now, found again by its place and most of its registers (those the
    /// TSC gave differ from one run to the next; see `closeness`).
    Near,
    /// The position asked for.
    Reached,
    End,
}

/// How a reverse operation ended.
pub enum Reversed {
    At(Seen),
    /// Back at the start of the recording.
    Start,
}

impl Debuggee<'_, '_, '_> {
    /// Forward: a checkpoint at this syscall boundary, now and then.
    pub(super) fn checkpoint_here(&mut self) -> Result<(), SessionError> {
        let at = self.replayer.mark();
        if self.timeline.due(at.pos) {
            let c = self.guest.checkpoint()?;
            self.timeline.add(at, c);
        }
        Ok(())
    }

    /// Where gdb steps from goes on the trail.
    pub(super) fn remember_stop(&mut self) -> Result<(), SessionError> {
        let at = self.replayer.mark();
        let c = self.guest.checkpoint()?;
        self.timeline.push_trail(at, c);
        Ok(())
    }

    /// The first checkpoint: the program's first instruction.
    pub(super) fn checkpoint_start(&mut self) -> Result<(), SessionError> {
        let at = self.replayer.mark();
        let c = self.guest.checkpoint()?;
        self.timeline.add(at, c);
        Ok(())
    }

    fn now(&mut self) -> Result<Now, SessionError> {
        Ok(Now {
            pos: self.replayer.mark().pos,
            thread: self.guest.current_thread(),
            regs: self.guest.regs()?,
            digest: self.guest.state_digest()?,
            ended: self.ended.is_some(),
        })
    }

    fn is_now(&mut self, now: &Now) -> Result<bool, SessionError> {
        Ok(self.closeness(now)? == Some(0))
    }

    /// How far this moment is from now: None when it is at another place
    /// (events, thread, instruction, stack), else how many registers differ
    /// (and 1 more when the stack differs): 0 is now.
    fn closeness(&mut self, now: &Now) -> Result<Option<u32>, SessionError> {
        if now.ended || self.replayer.mark().pos != now.pos || self.guest.current_thread() != now.thread {
            return Ok(None);
        }
        let r = comparable(self.guest.regs()?);
        let w = comparable(now.regs);
        if r.rip != w.rip || r.rsp != w.rsp {
            return Ok(None);
        }
        let pairs = [
            (r.rax, w.rax),
            (r.rbx, w.rbx),
            (r.rcx, w.rcx),
            (r.rdx, w.rdx),
            (r.rsi, w.rsi),
            (r.rdi, w.rdi),
            (r.rbp, w.rbp),
            (r.r8, w.r8),
            (r.r9, w.r9),
            (r.r10, w.r10),
            (r.r11, w.r11),
            (r.r12, w.r12),
            (r.r13, w.r13),
            (r.r14, w.r14),
            (r.r15, w.r15),
            (r.rflags, w.rflags),
        ];
        let mut d = pairs.iter().filter(|(a, b)| a != b).count() as u32;
        if self.guest.state_digest()? != now.digest {
            d += 1;
        }
        Ok(Some(d))
    }

    fn go_to_trail(&mut self, j: usize) -> Result<(), SessionError> {
        self.restore(true, j)
    }

    /// To the checkpoint at `pos` (a mark's position).
    fn go_to_pos(&mut self, pos: usize) -> Result<(), SessionError> {
        self.go_to(self.timeline.at(pos))
    }

    fn go_to(&mut self, i: usize) -> Result<(), SessionError> {
        self.restore(false, i)
    }

    /// Back (or on) to checkpoint `i` of the trail or of the marks.
    fn restore(&mut self, trail: bool, i: usize) -> Result<(), SessionError> {
        let m = if trail { &self.timeline.trail[i] } else { &self.timeline.marks[i] };
        self.guest.restore(self.hv, &m.checkpoint)?;
        self.replayer.rewind(&m.at);
        self.ended = None;
        self.on_breakpoint = false;
        Ok(())
    }

    /// Runs forward (every instruction a stop with `single`) until `until`,
    /// calling `visit` with each stop and its number (from 1). The stop it
    /// ended at and how many it met.
    fn search(
        &mut self,
        until: Until<'_>,
        single: bool,
        visit: &mut dyn FnMut(u64, Seen),
    ) -> Result<(Seen, u64), SessionError> {
        let mut n = 0u64;
        // The closest moment to now so far (stops before it, distance).
        let mut near: Option<(u64, u32)> = None;
        let now_of = match until {
            Until::Now(now) | Until::NowWithin(now, _) => Some(now),
            _ => None,
        };
        let past = |d: &Self| now_of.is_some_and(|now| !now.ended && d.replayer.mark().pos > now.pos);
        self.guest.set_single_step(single)?;
        let result = loop {
            let stop = if std::mem::take(&mut self.on_breakpoint) {
                // Off the breakpoint the thread stands on: one instruction.
                let rip = self.guest.regs()?.rip;
                self.guest.skip_breakpoint_once(Some(rip));
                self.guest.set_single_step(true)?;
                let s = self.guest.step(self.replayer);
                self.guest.set_single_step(single)?;
                match s? {
                    Stop::SingleStep { .. } if !single => Stop::Interrupted,
                    other => other,
                }
            } else {
                self.guest.step(self.replayer)?
            };
            let seen = match stop {
                Stop::Ended(e) => {
                    self.ended = Some(e);
                    Seen::End
                }
                Stop::Breakpoint { rip } => {
                    self.on_breakpoint = true;
                    Seen::Break(self.user_breaks.contains(&rip))
                }
                Stop::Watch { kind, addr } => Seen::Watch(kind, addr),
                Stop::Faulting { .. } => Seen::Fault,
                Stop::SingleStep { .. } if single => Seen::Step,
                Stop::Paused => {
                    // The debugger's bytes wait until the search is done.
                    self.cancel.resume();
                    continue;
                }
                other => match self.guest.watch_changed() {
                    Some((kind, addr)) => Seen::Watch(kind, addr),
                    None => {
                        // Checkpoints where the timeline has few.
                        if matches!(other, Stop::Syscall { .. }) {
                            self.checkpoint_here()?;
                        }
                        if let Until::Pos(p) = until {
                            if self.replayer.mark().pos >= p {
                                break (Seen::Reached, n);
                            }
                        }
                        if past(self) {
                            match near {
                                Some((k, _)) => break (Seen::Near, k),
                                None => return Err(not_again()),
                            }
                        }
                        continue;
                    }
                },
            };
            if let Some(now) = now_of {
                if seen != Seen::End {
                    match self.closeness(now)? {
                        Some(0) => break (Seen::Now, n),
                        Some(d) if d <= NEAR && near.is_none_or(|(_, b)| d < b) => near = Some((n, d)),
                        _ => {}
                    }
                }
                if past(self) || (seen == Seen::End && !now.ended) {
                    match near {
                        Some((k, _)) => break (Seen::Near, k),
                        None => return Err(not_again()),
                    }
                }
            }
            if seen == Seen::End {
                break (Seen::End, n);
            }
            n += 1;
            visit(n, seen);
            match until {
                Until::Nth(k) if n >= k => break (seen, n),
                Until::NowWithin(_, k) if n >= k => break (seen, n),
                Until::Pos(p) if self.replayer.mark().pos >= p => break (Seen::Reached, n),
                _ => {}
            }
        };
        self.guest.set_single_step(false)?;
        Ok(result)
    }

    /// `monitor goto`: to the first syscall boundary at or after event
    /// `seq`, from the last checkpoint before it (forward or back), with no
    /// breakpoints in the way.
    pub(super) fn go_to_event(&mut self, seq: u64) -> Result<(), SessionError> {
        let target = self.replayer.index_of(seq);
        let traps = self.guest.take_traps();
        let result = (|| {
            let i = self.timeline.before(target);
            self.go_to(i)?;
            if self.replayer.mark().pos < target {
                self.search(Until::Pos(target), false, &mut |_, _| {})?;
            }
            Ok(())
        })();
        self.guest.put_traps_back(traps);
        self.timeline.truncate_trail(0);
        result
    }

    /// reverse-continue: back to the last breakpoint or watchpoint hit
    /// before now, or to the start.
    pub(super) fn reverse_continue(&mut self) -> Result<Reversed, SessionError> {
        let now = self.now()?;
        let mark = !self.guest.has_breakpoint(now.regs.rip) && !now.ended;
        if mark {
            self.guest.add_breakpoint(now.regs.rip);
        }
        let found = self.back_to_hit(&now);
        if mark {
            self.guest.remove_breakpoint(now.regs.rip);
        }
        // What the trail held is after where it landed.
        self.timeline.truncate_trail(0);
        found
    }

    /// The checkpoint `width` before the one at `pos` (its position), or
    /// None at the start.
    fn earlier(&self, pos: usize, width: usize) -> Option<usize> {
        let i = self.timeline.at(pos);
        (i > 0).then(|| self.timeline.marks[i.saturating_sub(width)].at.pos)
    }

    fn back_to_hit(&mut self, now: &Now) -> Result<Reversed, SessionError> {
        self.timeline.freeze(true);
        let found = self.back_to_hit_frozen(now);
        self.timeline.freeze(false);
        found
    }

    /// Searches back from now over spans of checkpoints that double each
    /// time (so a hit far back costs a few restores, not one per checkpoint).
    fn back_to_hit_frozen(&mut self, now: &Now) -> Result<Reversed, SessionError> {
        let mut lo = self.timeline.marks[self.timeline.before(now.pos)].at.pos;
        let mut end: Option<usize> = None;
        let mut width = 1;
        loop {
            self.go_to_pos(lo)?;
            if end.is_none() && self.is_now(now)? {
                let Some(earlier) = self.earlier(lo, 1) else { return Ok(Reversed::Start) };
                end = Some(lo);
                lo = earlier;
                continue;
            }
            let mut hits = Vec::new();
            let mut note = |n: u64, seen: Seen| {
                if matches!(seen, Seen::Break(true) | Seen::Watch(..)) {
                    hits.push((n, seen));
                }
            };
            let (_, before) = match end {
                None => self.search(Until::Now(now), false, &mut note)?,
                Some(p) => self.search(Until::Pos(p), false, &mut note)?,
            };
            // (A search that found now by closeness went on past it.)
            let last = hits.into_iter().rfind(|&(n, _)| n <= before);
            if let Some((n, seen)) = last {
                self.go_to_pos(lo)?;
                if n > 1 {
                    self.search(Until::Nth(n - 1), false, &mut |_, _| {})?;
                }
                // A watchpoint is met before its access, going backwards.
                self.guest.watch_before(matches!(seen, Seen::Watch(..)));
                let got = self.search(Until::Nth(1), false, &mut |_, _| {});
                self.guest.watch_before(false);
                let (at, _) = got?;
                return Ok(Reversed::At(at));
            }
            let Some(earlier) = self.earlier(lo, width) else {
                self.go_to(0)?;
                return Ok(Reversed::Start);
            };
            end = Some(lo);
            lo = earlier;
            width *= 2;
        }
    }

    /// reverse-stepi: one instruction back, or the start.
    pub(super) fn reverse_stepi(&mut self) -> Result<Reversed, SessionError> {
        let now = self.now()?;
        // Read while the program stands at now.
        let anchors = self.anchors(&now);
        let traps = self.guest.take_traps();
        let result = self.step_back(&now, &anchors);
        self.guest.put_traps_back(traps);
        result
    }

    fn step_back(&mut self, now: &Now, anchors: &[u64]) -> Result<Reversed, SessionError> {
        // From the stops gdb saw last, newest first: usually a few steps.
        while let Some(j) = self.timeline.trail.len().checked_sub(1) {
            self.go_to_trail(j)?;
            if self.is_now(now)? {
                self.timeline.truncate_trail(j);
                continue;
            }
            match self.search(Until::NowWithin(now, TRAIL_STEPS), true, &mut |_, _| {}) {
                Ok((Seen::Now, k)) => {
                    // k instructions from that stop come before now.
                    self.go_to_trail(j)?;
                    if k > 0 {
                        self.search(Until::Nth(k), true, &mut |_, _| {})?;
                    }
                    self.timeline.truncate_trail(j + 1);
                    return Ok(Reversed::At(Seen::Step));
                }
                // Too far, or not before now after all.
                _ => break,
            }
        }
        self.timeline.truncate_trail(0);
        self.step_back_from_checkpoints(now, anchors)
    }

    /// Instructions that ran shortly before now, to step from: now's own
    /// (the last time round a loop) and the calls whose return addresses
    /// are on the stack above (the call into this function, its caller's).
    /// Read at now.
    fn anchors(&mut self, now: &Now) -> Vec<u64> {
        use iced_x86::{Decoder, DecoderOptions, FlowControl};
        let mut out = vec![now.regs.rip];
        let mut words = vec![0u8; 8 * 256];
        let n = self.guest.read_memory(now.regs.rsp, &mut words);
        for w in words[..n - n % 8].chunks(8) {
            let ret = u64::from_le_bytes(w.try_into().expect("8 bytes"));
            let mut code = [0u8; 8];
            if ret < 8 || self.guest.read_memory(ret - 8, &mut code) != 8 {
                continue;
            }
            // A call of 2 to 7 bytes that ends at the return address.
            for len in 2..=7usize {
                let at = ret - len as u64;
                let insn = Decoder::with_ip(64, &code[8 - len..], at, DecoderOptions::NONE).decode();
                if insn.len() == len && matches!(insn.flow_control(), FlowControl::Call | FlowControl::IndirectCall) {
                    if !out.contains(&at) {
                        out.push(at);
                    }
                    break;
                }
            }
            if out.len() >= 9 {
                break;
            }
        }
        out
    }

    /// A step back from the checkpoints: the last visit before now of an
    /// instruction that ran shortly before it (see `anchors`) is found with
    /// breakpoints (fast), then the stretch from it to now is stepped.
    fn step_back_from_checkpoints(&mut self, now: &Now, anchors: &[u64]) -> Result<Reversed, SessionError> {
        self.timeline.freeze(true);
        let found = self.step_back_frozen(now, anchors);
        self.timeline.freeze(false);
        found
    }

    fn step_back_frozen(&mut self, now: &Now, anchors: &[u64]) -> Result<Reversed, SessionError> {
        let mut at = self.timeline.marks[self.timeline.before(now.pos)].at.pos;
        loop {
            self.go_to_pos(at)?;
            if self.is_now(now)? {
                // Now is this checkpoint: the instruction before is before it.
                let Some(earlier) = self.earlier(at, 1) else { return Ok(Reversed::Start) };
                at = earlier;
                continue;
            }
            for &a in anchors {
                self.guest.add_breakpoint(a);
            }
            let mut visits = Vec::new();
            let found = self.search(Until::Now(now), false, &mut |n, seen| {
                if seen == Seen::Break(false) {
                    visits.push(n);
                }
            });
            for &a in anchors {
                self.guest.remove_breakpoint(a);
            }
            let (_, before) = found?;
            // The last visit of any of them before now, or the checkpoint.
            let anchor = visits.into_iter().rfind(|&n| n <= before).unwrap_or(0);
            // To the anchor, then k instructions to the one before now.
            let to_anchor = |d: &mut Self| -> Result<(), SessionError> {
                d.go_to_pos(at)?;
                if anchor > 0 {
                    for &a in anchors {
                        d.guest.add_breakpoint(a);
                    }
                    let r = d.search(Until::Nth(anchor), false, &mut |_, _| {});
                    for &a in anchors {
                        d.guest.remove_breakpoint(a);
                    }
                    r?;
                }
                Ok(())
            };
            to_anchor(self)?;
            let (_, k) = self.search(Until::Now(now), true, &mut |_, _| {})?;
            tracing::debug!(from = at, anchors = ?anchors, anchor, before, k, "step back");
            to_anchor(self)?;
            if k > 0 {
                self.search(Until::Nth(k), true, &mut |_, _| {})?;
            }
            return Ok(Reversed::At(Seen::Step));
        }
    }
}
