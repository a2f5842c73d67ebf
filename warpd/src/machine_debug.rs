//! What a debugger does to a stopped [`Guest`]: breakpoints, memory and
//! registers by thread, fault stops. The exit loop plants the breakpoints
//! only around `Vcpu::run`, so warpd's own reads of the program's code
//! (interrupt points, digests, signal frames, `/proc/self/mem`) and the
//! debugger's see the program's bytes.

use super::{Guest, SessionError};
use crate::hv::{FaultKind, GuestFault, ThreadContext};

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

    pub fn has_breakpoint(&self, addr: u64) -> bool {
        self.breakpoints.contains_key(&addr)
    }

    /// Report each CPU exception of the program as [`super::Stop::Faulting`]
    /// before it is handled (a debugger shows the signal at the faulting
    /// instruction; the next step delivers it as the recording did).
    pub fn stop_at_faults(&mut self, on: bool) {
        self.fault_stops = on;
    }

    pub(super) fn is_breakpoint(&self, f: &GuestFault) -> bool {
        f.kind == FaultKind::Breakpoint && f.user && f.rip.checked_sub(1).is_some_and(|a| self.lifted.contains(&a))
    }

    /// Writes `int3` over every breakpoint but the one skipped (and any
    /// inside the bytes the replay's probe has replaced: no instruction
    /// starts there while its jump is in place).
    pub(super) fn plant_breakpoints(&mut self) {
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
