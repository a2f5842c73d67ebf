//! What a debugger does to a stopped [`Guest`]: breakpoints, memory and
//! registers by thread, fault stops. The exit loop plants the breakpoints
//! only around `Vcpu::run`, so warpd's own reads of the program's code
//! (interrupt points, digests, signal frames, `/proc/self/mem`) and the
//! debugger's see the program's bytes.

use super::{Guest, SessionError, Stop};
use crate::arch::x86_64::probe::value_of;
use crate::arch::x86_64::PAGE_SIZE;
use crate::hv::{FaultKind, GuestFault, ThreadContext, VmExit};
use crate::kernel::outside::Outside;

/// What a watchpoint catches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchKind {
    Write,
    Read,
    Access,
}

/// A debugger's watchpoint: `len` bytes at `addr`, and their value when
/// last looked at.
#[derive(Clone, Debug)]
pub struct Watch {
    pub addr: u64,
    pub len: u64,
    pub kind: WatchKind,
    value: Vec<u8>,
}

impl Watch {
    /// Whether one of `accesses` (address, size, reads, writes) is one this
    /// watch catches: whether that access writes.
    fn hit_by(&self, accesses: &[(u64, u64, bool, bool)]) -> Option<bool> {
        accesses.iter().find_map(|&(a, n, reads, writes)| {
            let overlaps = a < self.addr + self.len && a.saturating_add(n) > self.addr;
            let kind = match self.kind {
                WatchKind::Read => reads,
                WatchKind::Write => writes,
                WatchKind::Access => true,
            };
            (overlaps && kind).then_some(writes)
        })
    }
}

/// The memory an instruction at `rip` accesses with these registers:
/// (address, size, reads, writes), from its decoding.
fn accesses(code: &[u8], rip: u64, c: &ThreadContext) -> Vec<(u64, u64, bool, bool)> {
    use iced_x86::{Decoder, DecoderOptions, InstructionInfoFactory, OpAccess, Register};
    let insn = Decoder::with_ip(64, code, rip, DecoderOptions::NONE).decode();
    let mut factory = InstructionInfoFactory::new();
    let info = factory.info(&insn);
    let value = |reg: Register, _: usize, _: usize| -> Option<u64> {
        let full = match reg.full_register() {
            Register::RIP => insn.next_ip(),
            Register::FS => c.fs_base,
            Register::GS => c.gs_base,
            full => value_of(full, &c.regs)?,
        };
        Some(match reg.size() {
            4 if !reg.is_segment_register() => full & 0xffff_ffff,
            _ => full,
        })
    };
    info.used_memory()
        .iter()
        .filter_map(|m| {
            let addr = m.virtual_address(0, value)?;
            let (reads, writes) = match m.access() {
                OpAccess::Read | OpAccess::CondRead => (true, false),
                OpAccess::Write | OpAccess::CondWrite => (false, true),
                OpAccess::ReadWrite | OpAccess::ReadCondWrite => (true, true),
                _ => return None,
            };
            Some((addr, m.memory_size().size().max(1) as u64, reads, writes))
        })
        .collect()
}

/// x86's one-byte breakpoint instruction.
const INT3: u8 = 0xcc;

impl Guest {
    /// Stops at `addr` whenever a thread is about to execute it
    /// ([`super::Stop::Breakpoint`]). False when already set.
    pub fn add_breakpoint(&mut self, addr: u64) -> bool {
        if self.breakpoints.contains_key(&addr) {
            return false;
        }
        self.breakpoints.insert(addr, None);
        true
    }

    /// False when no breakpoint was at `addr`.
    pub fn remove_breakpoint(&mut self, addr: u64) -> bool {
        self.breakpoints.remove(&addr).is_some()
    }

    /// The next run leaves out the breakpoint at `addr` (where the thread
    /// stands: it is stepped over once).
    pub fn skip_breakpoint_once(&mut self, addr: Option<u64>) {
        self.skip_breakpoint = addr;
    }

    /// The debugger lets the program go on after a stop: the time it
    /// stood still does not count against finding the next recorded point.
    pub fn resumed_by_debugger(&mut self) {
        self.probe_since = std::time::Instant::now();
        self.boundary_at = std::time::Instant::now();
    }

    /// With `on`, a watchpoint stops before the access that hits it (going
    /// backwards, the moment before the write is the one gdb wants).
    pub fn watch_before(&mut self, on: bool) {
        self.watch_first = on;
    }

    /// Takes every breakpoint and watchpoint out (a search that steps
    /// needs none); `put_traps_back` returns them.
    pub fn take_traps(&mut self) -> (Vec<u64>, Vec<Watch>) {
        let b = std::mem::take(&mut self.breakpoints).into_keys().collect();
        (b, std::mem::take(&mut self.watches))
    }

    pub fn put_traps_back(&mut self, traps: (Vec<u64>, Vec<Watch>)) {
        for b in traps.0 {
            self.breakpoints.insert(b, None);
        }
        let mut watches = traps.1;
        for w in watches.iter_mut() {
            w.value = self.watched_value(w.addr, w.len);
        }
        self.watches = watches;
    }

    pub fn has_breakpoint(&self, addr: u64) -> bool {
        self.breakpoints.contains_key(&addr)
    }

    /// Report each CPU exception of the program as [`super::Stop::Faulting`]
    /// before it is handled (a debugger shows the signal at the faulting
    /// instruction; the next step delivers it as the recording did).
    pub fn stop_at_faults(&mut self, on: bool) {
        self.fault_stops = on;
    }

    /// Stops when the program writes (reads, or either) `len` bytes at
    /// `addr` ([`Stop::Watch`], after the access). Without debug registers
    /// the pages are guarded while the vCPU runs and the faulting access is
    /// stepped. False when already set.
    pub fn add_watch(&mut self, addr: u64, len: u64, kind: WatchKind) -> bool {
        if len == 0 || self.watches.iter().any(|w| w.addr == addr && w.len == len && w.kind == kind) {
            return false;
        }
        let value = self.watched_value(addr, len);
        self.watches.push(Watch { addr, len, kind, value });
        true
    }

    pub fn remove_watch(&mut self, addr: u64, len: u64, kind: WatchKind) -> bool {
        let before = self.watches.len();
        self.watches.retain(|w| !(w.addr == addr && w.len == len && w.kind == kind));
        self.watches.len() != before
    }

    fn watched_value(&self, addr: u64, len: u64) -> Vec<u8> {
        let mut v = vec![0u8; len.min(4096) as usize];
        let n = self.process.mm.read_forced(addr, &mut v);
        v.truncate(n);
        v
    }

    /// A write watch whose bytes changed since last looked at (a syscall
    /// wrote them, or an access the guard did not see), its value updated.
    pub fn watch_changed(&mut self) -> Option<(WatchKind, u64)> {
        for i in 0..self.watches.len() {
            let w = &self.watches[i];
            if w.kind == WatchKind::Read {
                continue;
            }
            let now = self.watched_value(w.addr, w.len);
            if now != self.watches[i].value {
                self.watches[i].value = now;
                return Some((WatchKind::Write, self.watches[i].addr));
            }
        }
        None
    }

    /// The page fault is a guard's (the page was guarded for this run).
    pub(super) fn is_guard_fault(&self, f: &GuestFault) -> bool {
        matches!(f.kind, FaultKind::Page { .. }) && f.user && self.guarded.contains(&(f.address & !(PAGE_SIZE - 1)))
    }

    /// The program touched a guarded page: the access is stepped with the
    /// pages as they are, then the watches it hit (by value for writes, by
    /// address for reads) stop the program; else it goes on.
    pub(super) fn step_guarded(&mut self, outside: &mut dyn Outside, f: &GuestFault) -> Result<Stop, SessionError> {
        let write = matches!(f.kind, FaultKind::Page { write: true, .. });
        let context = self.vcpu.context()?;
        let mut touched = accesses(&self.process.mm.peek_code(f.rip, 15), f.rip, &context);
        if touched.is_empty() {
            // Not decoded (or an access it does not list): the fault's.
            touched.push((f.address, 1, !write, write));
        }
        if self.watch_first {
            if let Some(w) = self.watches.iter().find(|w| w.hit_by(&touched).is_some()) {
                return Ok(Stop::Watch { kind: w.kind, addr: w.addr });
            }
        }
        self.vcpu.set_single_step(true)?;
        let exit = self.vcpu.run();
        self.vcpu.set_single_step(self.single_step)?;
        let rip = match exit {
            VmExit::SingleStep { rip } => rip,
            other => {
                // The access faults for real, or something else came first.
                self.clear_own_trap_flag(&other)?;
                return self.dispatch(outside, other);
            }
        };
        if let Some((kind, addr)) = self.watch_changed() {
            return Ok(Stop::Watch { kind, addr });
        }
        for w in &self.watches {
            if let Some(writes) = w.hit_by(&touched) {
                let kind = if w.kind == WatchKind::Access && writes { WatchKind::Write } else { w.kind };
                return Ok(Stop::Watch { kind, addr: w.addr });
            }
        }
        if self.single_step {
            return Ok(Stop::SingleStep { rip });
        }
        Ok(Stop::Interrupted)
    }

    /// Guards the pages of every watch for the coming run.
    fn plant_guards(&mut self) {
        self.guarded.clear();
        let mut pages: std::collections::BTreeMap<u64, bool> = Default::default();
        for w in &self.watches {
            let mut page = w.addr & !(PAGE_SIZE - 1);
            while page < w.addr.saturating_add(w.len) {
                *pages.entry(page).or_default() |= w.kind != WatchKind::Write;
                page += PAGE_SIZE;
            }
        }
        for (page, reads) in pages {
            if self.process.mm.guard(page, reads).unwrap_or(false) {
                self.guarded.push(page);
            }
        }
    }

    pub(super) fn is_breakpoint(&self, f: &GuestFault) -> bool {
        f.kind == FaultKind::Breakpoint && f.user && f.rip.checked_sub(1).is_some_and(|a| self.lifted.contains(&a))
    }

    /// Writes `int3` over every breakpoint but the one skipped (and any
    /// inside the bytes the replay's probe has replaced: no instruction
    /// starts there while its jump is in place).
    pub(super) fn plant_breakpoints(&mut self) {
        if !self.watches.is_empty() {
            self.plant_guards();
        }
        if self.breakpoints.is_empty() {
            return;
        }
        let skip = self.skip_breakpoint.take();
        let patched = self.probe.as_ref().and_then(|p| p.patched());
        let mm = &self.process.mm;
        for (&addr, saved) in self.breakpoints.iter_mut() {
            if Some(addr) == skip || patched.is_some_and(|(site, len)| addr > site && addr < site + len) {
                continue;
            }
            let mut b = [0u8];
            if mm.read_forced(addr, &mut b) == 1 && mm.write_forced(addr, &[INT3]) == 1 {
                *saved = Some(b[0]);
            }
        }
    }

    /// Puts the program's bytes back. A byte the program itself changed
    /// while it ran (no longer our `int3`) is the program's now.
    pub(super) fn lift_breakpoints(&mut self) {
        if !self.guarded.is_empty() {
            self.process.mm.unguard_all();
        }
        self.lifted.clear();
        let mm = &self.process.mm;
        for (&addr, saved) in self.breakpoints.iter_mut() {
            let Some(original) = saved.take() else { continue };
            self.lifted.push(addr);
            let mut b = [0u8];
            if mm.read_forced(addr, &mut b) == 1 && b[0] == INT3 {
                mm.write_forced(addr, &[original]);
            }
        }
    }

    /// Reads the program's memory at `va` as `/proc/self/mem` would
    /// (whatever the protection of a readable page): how many bytes.
    pub fn read_memory(&self, va: u64, buf: &mut [u8]) -> usize {
        self.process.mm.read_forced(va, buf)
    }

    /// Writes the program's memory at `va` as a debugger does (read-only
    /// code too): how many bytes.
    pub fn write_memory(&mut self, va: u64, data: &[u8]) -> usize {
        self.process.mm.write_forced(va, data)
    }

    /// The thread on the vCPU.
    pub fn current_thread(&self) -> u32 {
        self.process.thread().tid
    }

    /// Every thread of the program.
    pub fn threads(&self) -> Vec<u32> {
        self.process.thread_ids()
    }

    /// A thread's registers, FPU state and segment bases.
    pub fn thread_context(&mut self, tid: u32) -> Result<Option<ThreadContext>, SessionError> {
        if tid == self.current_thread() {
            return Ok(Some(self.vcpu.context()?));
        }
        Ok(self.process.saved_context(tid).cloned())
    }

    /// Sets a thread's context (a debugger's register write).
    pub fn set_thread_context(&mut self, tid: u32, c: &ThreadContext) -> Result<bool, SessionError> {
        if tid == self.current_thread() {
            self.vcpu.set_context(c)?;
            return Ok(true);
        }
        match self.process.saved_context(tid) {
            Some(saved) => {
                *saved = c.clone();
                Ok(true)
            }
            None => Ok(false),
        }
    }
}
