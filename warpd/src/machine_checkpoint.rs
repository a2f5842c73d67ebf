//! Checkpoints of a stopped [`Guest`]: everything the replay needs to go on
//! from here again, later, after it has gone further (reverse execution).
//!
//! A checkpoint holds the emulated kernel's state (a clone of `Process`),
//! the thread's CPU context, the exit loop's own state (the replay's probe,
//! the written-pages base) and a copy of the data in both memory slots.
//! Restoring builds a fresh VM and vCPU from it, so that nothing the
//! hypervisor caches about the old one (shadow page tables) outlives it.
//! A checkpoint is only taken where the program stands at an instruction
//! boundary in user code: a syscall answered, a stop reported to a debugger.

use std::sync::Arc;
use std::time::Instant;

use warp_proto::warp::Failure;

use super::{Guest, SessionError};
use crate::arch;
use crate::builder;
use crate::hv::memory::MemFd;
use crate::hv::{GuestFault, Hypervisor, ThreadContext};
use crate::interrupts::{Probe, Written};
use crate::kernel::process::Process;

/// A copy of a memory slot's data: (offset, bytes) for each extent.
struct Extents(Vec<(u64, Vec<u8>)>);

impl Extents {
    fn copy(m: &MemFd) -> Result<Extents, SessionError> {
        let extents = m.data_extents().map_err(|e| failed(format!("reading guest memory for a checkpoint: {e}")))?;
        let mut out = Vec::with_capacity(extents.len());
        for (off, len) in extents {
            let mut bytes = vec![0u8; len as usize];
            m.read(off, &mut bytes);
            // All-zero pages need no copy: the fresh slot reads zero there.
            let mut start = 0usize;
            for (i, page) in bytes.chunks(4096).enumerate() {
                if page.iter().all(|&b| b == 0) {
                    if start < i * 4096 {
                        out.push((off + start as u64, bytes[start..i * 4096].to_vec()));
                    }
                    start = (i + 1) * 4096;
                }
            }
            if start < bytes.len() {
                out.push((off + start as u64, bytes[start..].to_vec()));
            }
        }
        Ok(Extents(out))
    }

    fn bytes(&self) -> u64 {
        self.0.iter().map(|(_, b)| b.len() as u64).sum()
    }

    fn write_into(&self, m: &MemFd) {
        for (off, bytes) in &self.0 {
            m.write(*off, bytes);
        }
    }
}

fn failed(message: String) -> SessionError {
    SessionError::Failed(Failure::Daemon, message)
}

/// A stopped guest, kept to go back to.
pub struct Checkpoint {
    process: Process,
    context: ThreadContext,
    started: bool,
    probe: Option<Probe>,
    probe_step: bool,
    memory_differed: u64,
    deferred: u32,
    written: Written,
    held_fault: Option<GuestFault>,
    kernel: Extents,
    guest: Extents,
}

impl Checkpoint {
    /// The memory it holds.
    pub fn bytes(&self) -> u64 {
        self.kernel.bytes() + self.guest.bytes()
    }
}

impl Guest {
    /// A digest of the running thread's context and the stack around its
    /// stack pointer (the red zone, the frame, its callers'): with the same
    /// events behind them, two moments of a replay with the same digest are
    /// taken for the same moment. Not the whole memory: what the program
    /// got from the untrappable TSC (ld.so keeps readings) differs from one
    /// run to the next of the same replay.
    pub fn state_digest(&mut self) -> Result<[u8; 32], SessionError> {
        let mut h = blake3::Hasher::new();
        let mut c = self.vcpu.context()?;
        let mut stack = vec![0u8; 128 + 4096];
        let n = self.process.mm.read_forced(c.regs.rsp.wrapping_sub(128), &mut stack);
        h.update(&stack[..n]);
        // The resume flag is in the flags a fault saves, not in a trap's.
        c.regs.rflags &= !(1 << 16);
        h.update(format!("{:?} {} {}", c.regs, c.fs_base, c.gs_base).as_bytes());
        h.update(&self.process.thread().tid.to_le_bytes());
        Ok(*h.finalize().as_bytes())
    }

    /// A checkpoint of this guest as it stands (between steps).
    pub fn checkpoint(&mut self) -> Result<Checkpoint, SessionError> {
        self.written.gather(self.vm.as_mut(), &self.process.mm)?;
        // The copy names no live memory: holding this VM's slots would keep
        // their pages after the VM is gone.
        let mut process = self.process.clone();
        let placeholder = MemFd::create("warp-checkpoint", 4096)?;
        process.mm.kernel = placeholder.clone();
        process.mm.guest = placeholder;
        Ok(Checkpoint {
            process,
            context: self.vcpu.context()?,
            started: self.started,
            probe: self.probe.clone(),
            probe_step: self.probe_step,
            memory_differed: self.memory_differed,
            deferred: self.deferred,
            written: self.written.clone(),
            held_fault: self.held_fault,
            kernel: Extents::copy(&self.process.mm.kernel)?,
            guest: Extents::copy(&self.process.mm.guest)?,
        })
    }

    /// This guest as it was at `c`, in a fresh VM from `hv`. What the
    /// debugger set (breakpoints, watchpoints, fault stops), the pause and
    /// the replay's watchdog carry over.
    pub fn restore(&mut self, hv: &dyn Hypervisor, c: &Checkpoint) -> Result<(), SessionError> {
        let parts = builder::parts(hv)?;
        c.kernel.write_into(&parts.mm.kernel);
        c.guest.write_into(&parts.mm.guest);
        let mut process = c.process.clone();
        process.mm.kernel = parts.mm.kernel.clone();
        process.mm.guest = parts.mm.guest.clone();
        let mut vcpu = parts.vcpu;
        vcpu.setup(&arch::initial_cpu(process.mm.cr3()), &c.context.regs)?;
        vcpu.set_context(&c.context)?;
        let mut fresh = Guest::new(process, parts.vm, vcpu, parts.caps);
        fresh.started = c.started;
        fresh.probe = c.probe.clone();
        fresh.probe_step = c.probe_step;
        // A restored base is the checkpoint's; a digest that differs at the
        // next point was said once already, or is this restore's doing.
        fresh.memory_differed = c.memory_differed.max(1);
        fresh.deferred = c.deferred;
        fresh.written = c.written.clone();
        fresh.held_fault = c.held_fault;
        fresh.breakpoints = std::mem::take(&mut self.breakpoints);
        for saved in fresh.breakpoints.values_mut() {
            *saved = None;
        }
        fresh.watches = std::mem::take(&mut self.watches);
        fresh.fault_stops = self.fault_stops;
        fresh.notes = self.notes.take();
        let cancel: Option<Arc<super::Cancel>> = self.cancel.take();
        let watching = self.point_watch.is_some();
        // The old VM goes before the new one runs.
        *self = fresh;
        if let Some(c) = cancel {
            self.cancel_with(c);
        }
        if watching {
            self.watch_points()?;
        }
        self.probe_since = Instant::now();
        self.boundary_at = Instant::now();
        Ok(())
    }
}
