//! A fork's child: made from the parent [`Guest`] at the fork (its kernel
//! state and a copy of both memory slots), then given a VM of its own on
//! the thread that will run it ([`start_forked`]: a vCPU belongs to the
//! thread that runs it, which its kicks are aimed at).
//!
//! ```text
//!  parent: Process::fork_process -> the broker forks -> Action::Fork
//!          -> Guest::fork_child: memory copied, Process::forked, the
//!             child's registers (rax 0, its stack) -> Guest::take_forked
//!  driver (session / replay): a thread for the child -> start_forked
//!          -> its own Outside (broker link + recorder, or its events)
//! ```
//!
//! The copy is of the data the parent's memory holds (pages never
//! touched, and all-zero ones, stay holes). Copy-on-write is not done yet.

use std::sync::{Arc, Condvar, Mutex};

use super::{Guest, SessionError};
use crate::arch;
use crate::hv::memory::MemFd;
use crate::hv::{Hypervisor, ThreadContext};
use crate::kernel::process::{ForkSpec, Process};

/// A vfork's parent waits on this until its child executes a program or
/// ends (recording only: a replay takes every answer from the trace).
#[derive(Default)]
pub struct VforkGate {
    open: Mutex<bool>,
    opened: Condvar,
}

impl VforkGate {
    pub fn open(&self) {
        *self.open.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.opened.notify_all();
    }

    pub fn wait(&self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        while !*open {
            open = self.opened.wait(open).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// A child made at a fork, before it has a VM.
pub struct Forked {
    pub pid: u32,
    pub process: Process,
    pub context: ThreadContext,
    /// A vfork: the gate its parent waits on.
    pub vfork: Option<Arc<VforkGate>>,
}

impl Guest {
    /// Makes the child of the fork `spec` from this guest as it stands in
    /// the fork call (`regs`: the parent's registers at the call).
    pub(super) fn fork_child(&mut self, spec: &ForkSpec, regs: &crate::arch::Regs) -> Result<(), SessionError> {
        let copy = |m: &MemFd, name: &str| -> Result<MemFd, SessionError> {
            let fresh = MemFd::create(name, m.size())?;
            fresh.copy_from(m).map_err(|e| {
                SessionError::Failed(warp_proto::warp::Failure::Daemon, format!("copying memory for a fork: {e}"))
            })?;
            Ok(fresh)
        };
        let kernel = copy(&self.process.mm.kernel, "warp-kernel")?;
        let guest = copy(&self.process.mm.guest, "warp-guest")?;
        // The child has no ring poller (yet): its trampoline takes the exit path.
        let ring = warp_syscalls::ring::page_offset(guest.size());
        guest.write(ring + warp_syscalls::ring::ENABLED, &0u32.to_le_bytes());
        guest.write(ring + warp_syscalls::ring::POLLER, &warp_syscalls::ring::ASLEEP.to_le_bytes());
        guest.write(ring + warp_syscalls::ring::STATE, &warp_syscalls::ring::IDLE.to_le_bytes());
        let mut mm = self.process.mm.clone();
        mm.kernel = kernel;
        mm.guest = guest;
        let process = self.process.forked(spec, mm);
        let mut context = self.vcpu.context()?;
        context.regs = *regs;
        context.regs.finish_syscall(0);
        if spec.stack != 0 {
            context.regs.rsp = spec.stack;
        }
        if let Some(fs) = spec.fs_base() {
            context.fs_base = fs;
        }
        let vfork = spec.vfork().then(|| Arc::new(VforkGate::default()));
        self.forked = Some(Forked { pid: spec.pid, process, context, vfork });
        Ok(())
    }

    /// The child the last step made, if it forked.
    pub fn take_forked(&mut self) -> Option<Forked> {
        self.forked.take()
    }

    /// A vfork's child: its parent goes on once it has executed a program
    /// or ended.
    pub(super) fn release_vfork_parent(&mut self) {
        if let Some(g) = self.vfork_parent.take() {
            g.open();
        }
    }
}

/// The child's guest, in a VM of its own from `hv`. Call it on the thread
/// that will step it.
pub fn start_forked(hv: &dyn Hypervisor, f: Forked) -> Result<Guest, SessionError> {
    let mut vm = hv.create_vm(&f.process.mm.kernel, &f.process.mm.guest)?;
    let mut vcpu = vm.create_vcpu()?;
    vcpu.setup(&arch::initial_cpu(f.process.mm.cr3()), &f.context.regs)?;
    vcpu.set_context(&f.context)?;
    let mut guest = Guest::new(f.process, vm, vcpu, hv.capabilities());
    guest.vfork_parent = f.vfork;
    Ok(guest)
}
