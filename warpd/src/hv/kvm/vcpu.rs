//! The vCPU: runs the guest, decodes exits into neutral [`VmExit`]s, and
//! keeps the register state honest across the different kinds of exit.

use std::sync::{Arc, Mutex};

use kvm_bindings::{kvm_fpu, kvm_msr_entry, kvm_xcrs, Msrs};
use kvm_ioctls::{SyncReg, VcpuExit, VcpuFd};

use super::regs::{from_kvm_regs, to_kvm_regs, to_kvm_segment};
use crate::arch::x86_64::cpu::{decode_fault, read_exception_frame, set_exception_return, RFLAGS_TF};
use crate::arch::x86_64::descriptors::{user_segments, CR4_OSXSAVE};
use crate::arch::x86_64::{self as x86, InitialCpu, Regs};
use crate::hv::memory::MemFd;
use crate::hv::{Capabilities, CpuState, FaultKind, GuestFault, HvError, Kick, Kicker, SyscallRequest, Vcpu, VmExit};
use warp_syscalls::ring::{EXIT_SITE, FINISH_SITE};

/// The signal used to interrupt KVM_RUN from another thread.
fn kick_signal() -> i32 {
    libc::SIGRTMIN() + 1
}

extern "C" fn ignore_kick(_: i32) {}

/// Installs the (empty) handler for the kick signal once per process, so
/// that its delivery makes KVM_RUN return EINTR instead of killing warpd.
pub(super) fn install_kick_handler() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: a zeroed sigaction with a valid handler and no SA_RESTART.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = ignore_kick as *const () as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(kick_signal(), &sa, std::ptr::null_mut());
        }
    });
}

/// Stops KVM_RUN on the vCPU's thread.
///
/// It is live only while the vCPU is: [`KvmVcpu`] disarms it when dropped,
/// so a late kick (the broker's reader noticing EOF after the session
/// ended) touches neither a freed kvm_run page nor a finished thread.
struct KvmKick {
    target: Mutex<Option<KickTarget>>,
}

struct KickTarget {
    immediate_exit: *mut u8,
    thread: libc::pthread_t,
}

// SAFETY: the pointer targets the vCPU's kvm_run page and is only used
// while the mutex holds Some, which KvmVcpu clears before unmapping it.
unsafe impl Send for KickTarget {}

impl Kick for KvmKick {
    fn kick(&self) {
        let guard = self.target.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = guard.as_ref() {
            // SAFETY: see KickTarget; a volatile byte store that KVM_RUN reads
            // on entry, then a signal that interrupts a running KVM_RUN. The
            // thread is alive: it clears the target before it ends.
            unsafe {
                std::ptr::write_volatile(t.immediate_exit, 1);
                libc::pthread_kill(t.thread, kick_signal());
            }
        }
    }
}

/// What the last exit left the vCPU in, which decides where `regs` and
/// `set_regs` find the guest's registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stopped {
    /// Not run yet, or interrupted: the registers are read with an ioctl.
    Anywhere,
    /// At the syscall trampoline's `out`: sync regs are valid.
    Syscall,
    /// In a ring-0 exception stub: the general registers are the program's,
    /// rip/rsp/rflags are in the frame the stub's `iretq` returns through.
    Fault,
}

/// The one vCPU of a KVM VM.
pub struct KvmVcpu {
    vcpu: VcpuFd,
    caps: Capabilities,
    /// The kernel region, where exception stubs leave their frames.
    frames: MemFd,
    stopped: Stopped,
    /// Whether the trampoline runs at CPL0 (VMX/SVM); found at the first syscall.
    cpl0_trampoline: Option<bool>,
    regs_dirty: bool,
    /// A syscall exit was resumed: the user segments may need restoring.
    resume_syscall: bool,
    stepping: bool,
    /// The trap flag was armed for a step whose #DB has not come back yet.
    /// A kick can stop the vCPU inside the ring-0 #DB stub (emulated, so
    /// slow, on PVM): that #DB is still warpd's when it arrives later,
    /// even if stepping was turned off meanwhile.
    step_armed: bool,
    exits: u64,
    kick: Option<Arc<KvmKick>>,
}

impl Drop for KvmVcpu {
    fn drop(&mut self) {
        if let Some(k) = &self.kick {
            *k.target.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
    }
}

/// Whether an `out` exit at `rip` is the ring page's `out` at `site` (PVM
/// reports the address after it, VMX/SVM the `out` itself).
fn at_out(rip: u64, site: u64) -> bool {
    rip == x86::TRAMPOLINE_VA + site + 2 || rip == x86::TRAMPOLINE_VA + site
}

fn err(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> HvError {
    move |e| HvError::call(what, e)
}

impl KvmVcpu {
    pub(super) fn new(vcpu: VcpuFd, caps: Capabilities, frames: MemFd) -> Self {
        let mut v = KvmVcpu {
            vcpu,
            caps,
            frames,
            stopped: Stopped::Anywhere,
            cpl0_trampoline: None,
            regs_dirty: false,
            resume_syscall: false,
            stepping: false,
            step_armed: false,
            exits: 0,
            kick: None,
        };
        if v.caps.registers_with_exit {
            v.vcpu.set_sync_valid_reg(SyncReg::Register);
        }
        v
    }

    fn raw_regs(&self) -> Result<Regs, HvError> {
        if self.caps.registers_with_exit && (self.stopped != Stopped::Anywhere || self.regs_dirty) {
            Ok(from_kvm_regs(&self.vcpu.sync_regs().regs))
        } else {
            self.vcpu.get_regs().map(|r| from_kvm_regs(&r)).map_err(err("reading registers"))
        }
    }

    fn set_raw_regs(&mut self, regs: &Regs) -> Result<(), HvError> {
        if self.caps.registers_with_exit {
            self.vcpu.sync_regs_mut().regs = to_kvm_regs(regs);
            self.regs_dirty = true;
            Ok(())
        } else {
            self.vcpu.set_regs(&to_kvm_regs(regs)).map_err(err("setting registers"))
        }
    }

    /// Finishes a syscall exit: on VMX/SVM the trampoline ran at CPL0, so
    /// the user segments are restored as `sysret` would.
    fn return_to_user(&mut self) -> Result<(), HvError> {
        let cpl0 = match self.cpl0_trampoline {
            Some(v) => v,
            None => {
                let s = self.vcpu.get_sregs().map_err(err("reading sregs"))?;
                let v = s.cs.dpl == 0;
                self.cpl0_trampoline = Some(v);
                v
            }
        };
        if cpl0 {
            let mut s = self.vcpu.get_sregs().map_err(err("reading sregs"))?;
            let (cs, ss) = user_segments();
            s.cs = to_kvm_segment(&cs);
            s.ss = to_kvm_segment(&ss);
            self.vcpu.set_sregs(&s).map_err(err("setting sregs"))?;
        }
        Ok(())
    }

    /// Sets the trap flag in the rflags the guest resumes with: the
    /// registers, or after a fault the frame the stub's `iretq` pops.
    fn arm_trap_flag(&mut self) -> Result<(), HvError> {
        if self.stopped == Stopped::Fault {
            let mut f = self.regs()?;
            if f.rflags & RFLAGS_TF == 0 {
                f.rflags |= RFLAGS_TF;
                set_exception_return(&self.frames, &f);
            }
        } else {
            let mut r = self.raw_regs()?;
            if r.rflags & RFLAGS_TF == 0 {
                r.rflags |= RFLAGS_TF;
                self.set_raw_regs(&r)?;
            }
        }
        Ok(())
    }

    /// Port I/O by the program's own code: the fault Linux would raise.
    /// The registers are the program's; it resumes where `set_regs` says
    /// (KVM does not advance a rip that was changed).
    fn stray_io(&mut self, regs: Regs, rip_is_after: bool) -> VmExit {
        // KVM finishes the I/O on the next KVM_RUN (an `in` writes rax and
        // moves rip), whatever registers are set meanwhile: let it finish
        // now without entering the guest, then put the program's back.
        self.vcpu.set_kvm_immediate_exit(1);
        let settled = raw(self.vcpu.run());
        self.vcpu.set_kvm_immediate_exit(0);
        self.exits += 1;
        match settled {
            Raw::Interrupted => {}
            Raw::Failed(why) => return VmExit::Failed(why),
            Raw::Out(_) | Raw::In => return VmExit::Failed("the guest ran while warpd finished its port I/O".into()),
        }
        self.stopped = Stopped::Anywhere;
        self.regs_dirty = false;
        if let Err(e) = self.vcpu.set_regs(&to_kvm_regs(&regs)) {
            return VmExit::Failed(HvError::call("setting registers", e).to_string());
        }
        let rip = regs.rip;
        VmExit::Fault(GuestFault {
            kind: FaultKind::PortIo { rip_is_after },
            vector: 13,
            error_code: 0,
            address: 0,
            rip,
            user: true,
        })
    }

    /// Decodes an exception exit; a #DB the debugger asked for is a step.
    fn fault_exit(&mut self) -> Result<VmExit, HvError> {
        let mut frame = read_exception_frame(&self.frames);
        if frame.vector == 1 && (self.stepping || self.step_armed) && frame.rflags & RFLAGS_TF != 0 {
            self.step_armed = false;
            // The program's own flags come back without the trap flag; the
            // next resume arms it again while stepping lasts.
            frame.rflags &= !RFLAGS_TF;
            set_exception_return(
                &self.frames,
                &Regs { rip: frame.rip, rflags: frame.rflags, rsp: frame.rsp, ..Default::default() },
            );
            return Ok(VmExit::SingleStep { rip: frame.rip });
        }
        let cr2 = if frame.vector == 14 { self.vcpu.get_sregs().map_err(err("reading sregs"))?.cr2 } else { 0 };
        Ok(VmExit::Fault(decode_fault(&frame, cr2)))
    }

    fn decode(&mut self, exit: Raw) -> VmExit {
        match exit {
            Raw::Out(port) if port == x86::PORT_SYSCALL => {
                self.stopped = Stopped::Syscall;
                match self.raw_regs() {
                    // Only the trampoline's `out` is a syscall (PVM reports
                    // the address after it, VMX/SVM the `out` itself).
                    Ok(r) if [EXIT_SITE, FINISH_SITE].iter().any(|&s| at_out(r.rip, s)) => {
                        let (number, args) = r.syscall_args();
                        // rcx holds the address after the 2-byte `syscall`.
                        let rip = r.rcx.wrapping_sub(2);
                        VmExit::Syscall(SyscallRequest {
                            thread: 0,
                            number,
                            args,
                            rip,
                            finish: at_out(r.rip, FINISH_SITE),
                        })
                    }
                    // PVM reports an `out` with rip past it, VMX/SVM at it.
                    Ok(r) => self.stray_io(r, !self.caps.untested_paths),
                    Err(e) => VmExit::Failed(e.to_string()),
                }
            }
            Raw::In => {
                self.stopped = Stopped::Syscall;
                match self.raw_regs() {
                    // An `in` comes with rip at it on both (measured on PVM).
                    Ok(r) => self.stray_io(r, false),
                    Err(e) => VmExit::Failed(e.to_string()),
                }
            }
            Raw::Out(port) if port == x86::PORT_EXCEPTION => {
                self.stopped = Stopped::Fault;
                self.fault_exit().unwrap_or_else(|e| VmExit::Failed(e.to_string()))
            }
            Raw::Out(port) => VmExit::Failed(format!("the guest wrote to I/O port {port:#x}")),
            Raw::Interrupted => {
                self.vcpu.set_kvm_immediate_exit(0);
                VmExit::Interrupted
            }
            Raw::Failed(why) => VmExit::Failed(why),
        }
    }
}

/// A KVM exit with what it borrowed from `kvm_run` copied out.
enum Raw {
    Out(u16),
    /// An `in`: its data reads as zeros should the guest resume through it.
    In,
    Interrupted,
    Failed(String),
}

fn raw(exit: Result<VcpuExit<'_>, kvm_ioctls::Error>) -> Raw {
    match exit {
        Ok(VcpuExit::IoOut(port, _)) => Raw::Out(port),
        Ok(VcpuExit::IoIn(_, data)) => {
            data.fill(0);
            Raw::In
        }
        Ok(VcpuExit::Intr) => Raw::Interrupted,
        Ok(VcpuExit::Shutdown) => Raw::Failed("the guest CPU shut down (triple fault)".into()),
        Ok(VcpuExit::FailEntry(reason, _)) => Raw::Failed(format!("VM entry failed (hardware reason {reason:#x})")),
        Ok(VcpuExit::InternalError) => Raw::Failed("KVM internal error (instruction emulation failed)".into()),
        Ok(VcpuExit::Hlt) => Raw::Failed("the guest halted".into()),
        Ok(other) => Raw::Failed(format!("unexpected VM exit: {other:?}")),
        Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => Raw::Interrupted,
        Err(e) => Raw::Failed(format!("KVM_RUN failed: {e}")),
    }
}

impl Vcpu for KvmVcpu {
    /// Long mode at CPL3 with `regs`, the syscall MSRs pointing at the
    /// trampoline, and a clean FPU/SSE/AVX state.
    fn setup(&mut self, initial: &InitialCpu, regs: &Regs) -> Result<(), HvError> {
        let sys = &initial.sys;
        let mut sregs = self.vcpu.get_sregs().map_err(err("reading sregs"))?;
        sregs.cs = to_kvm_segment(&sys.cs);
        sregs.ss = to_kvm_segment(&sys.ss);
        let data = to_kvm_segment(&sys.data);
        sregs.ds = data;
        sregs.es = data;
        sregs.fs = data;
        sregs.gs = data;
        sregs.tr = to_kvm_segment(&sys.tr);
        sregs.ldt = to_kvm_segment(&sys.ldt);
        sregs.gdt.base = sys.gdt_base;
        sregs.gdt.limit = sys.gdt_limit;
        sregs.idt.base = sys.idt_base;
        sregs.idt.limit = sys.idt_limit;
        sregs.cr0 = sys.cr0;
        sregs.cr3 = sys.cr3;
        sregs.cr4 = sys.cr4;
        sregs.efer = sys.efer;
        self.vcpu.set_sregs(&sregs).map_err(err("setting sregs"))?;

        let entries = [
            (x86::MSR_STAR, x86::STAR_VALUE),
            (x86::MSR_LSTAR, x86::TRAMPOLINE_VA + warp_syscalls::ring::ENTRY),
            (x86::MSR_CSTAR, x86::TRAMPOLINE_VA),
            (x86::MSR_SFMASK, x86::SFMASK_VALUE),
            (x86::MSR_KERNEL_GS_BASE, 0),
        ]
        .map(|(index, data)| kvm_msr_entry { index, data, ..Default::default() });
        let msrs = Msrs::from_entries(&entries)
            .map_err(|_| HvError::call("building MSRs", std::io::ErrorKind::InvalidInput))?;
        let n = self.vcpu.set_msrs(&msrs).map_err(err("setting MSRs"))?;
        if n != entries.len() {
            return Err(HvError::call(
                "setting MSRs",
                std::io::Error::other(format!("only {n} of {} accepted", entries.len())),
            ));
        }
        if sys.cr4 & CR4_OSXSAVE != 0 {
            let mut xcrs = kvm_xcrs { nr_xcrs: 1, ..Default::default() };
            xcrs.xcrs[0].xcr = 0;
            xcrs.xcrs[0].value = initial.xcr0.unwrap_or(3);
            self.vcpu.set_xcrs(&xcrs).map_err(err("setting XCR0"))?;
        }
        // The state Linux gives a new process: x87 control word 0x37f, MXCSR 0x1f80.
        let fpu = kvm_fpu { fcw: 0x37f, mxcsr: 0x1f80, ..Default::default() };
        self.vcpu.set_fpu(&fpu).map_err(err("setting the FPU"))?;
        self.vcpu.set_regs(&to_kvm_regs(regs)).map_err(err("setting registers"))?;
        self.stopped = Stopped::Anywhere;
        Ok(())
    }

    fn run(&mut self) -> VmExit {
        if self.resume_syscall {
            self.resume_syscall = false;
            if let Err(e) = self.return_to_user() {
                return VmExit::Failed(e.to_string());
            }
        }
        // A kick can stop the vCPU inside warpd's exception stubs or the
        // trampoline (ring 0, or code that is not the program's): the trap
        // flag is not armed there, the stub runs on to its exit, which
        // says what it was delivering (the step it was reporting, say).
        let in_stubs =
            self.stepping && self.stopped == Stopped::Anywhere && self.raw_regs().is_ok_and(|r| r.rip >= x86::USER_TOP);
        if self.stepping && !in_stubs {
            if let Err(e) = self.arm_trap_flag() {
                return VmExit::Failed(e.to_string());
            }
            self.step_armed = true;
        }
        if self.regs_dirty && self.caps.registers_with_exit {
            self.vcpu.set_sync_dirty_reg(SyncReg::Register);
        }
        self.regs_dirty = false;
        self.exits += 1;
        // A kick that came while the vCPU was stopped at a syscall or an
        // exception makes this run return at once, without entering the
        // guest: it is still stopped there (the frame, the trap flag's
        // place, the syscall's return), not anywhere.
        let before = self.stopped;
        let at = match before {
            Stopped::Anywhere => None,
            _ => self.raw_regs().ok().map(|r| r.rip),
        };
        self.stopped = Stopped::Anywhere;
        let exit = raw(self.vcpu.run());
        if matches!(exit, Raw::Interrupted) && at.is_some() {
            let now = self.vcpu.get_regs().ok().map(|r| r.rip);
            if now == at {
                self.stopped = before;
            }
        }
        self.decode(exit)
    }

    fn regs(&self) -> Result<Regs, HvError> {
        let r = self.raw_regs()?;
        if self.stopped == Stopped::Fault {
            let f = read_exception_frame(&self.frames);
            return Ok(Regs { rip: f.rip, rsp: f.rsp, rflags: f.rflags, ..r });
        }
        Ok(r)
    }

    fn set_regs(&mut self, regs: &Regs) -> Result<(), HvError> {
        // The program's own state without the trap flag: no step of
        // warpd's is in flight any more.
        if regs.rip < x86::USER_TOP && regs.rflags & RFLAGS_TF == 0 {
            self.step_armed = false;
        }
        match self.stopped {
            Stopped::Fault => {
                // The stub's own rip/rsp/rflags stay; the program resumes
                // through its iretq with the frame's.
                set_exception_return(&self.frames, regs);
                let stub = self.raw_regs()?;
                self.set_raw_regs(&Regs { rip: stub.rip, rsp: stub.rsp, rflags: stub.rflags, ..*regs })
            }
            Stopped::Syscall => {
                self.resume_syscall = true;
                // The trap flag the program had when it made the call came
                // back through r11; while stepping, `run` arms it itself.
                let mut r = *regs;
                if self.stepping {
                    r.rflags &= !RFLAGS_TF;
                }
                self.set_raw_regs(&r)
            }
            Stopped::Anywhere => self.set_raw_regs(regs),
        }
    }

    /// TF-based on every KVM (KVM_SET_GUEST_DEBUG stepping is broken on PVM,
    /// HOST-KVM.md): the trap flag is set on each resume while stepping and
    /// the #DB that follows the instruction comes back as `SingleStep`.
    fn set_single_step(&mut self, on: bool) -> Result<(), HvError> {
        self.stepping = on;
        Ok(())
    }

    fn kicker(&mut self) -> Kicker {
        if let Some(k) = &self.kick {
            return Kicker::new(k.clone());
        }
        let run = self.vcpu.get_kvm_run();
        let target = KickTarget {
            immediate_exit: &mut run.immediate_exit as *mut u8,
            // SAFETY: pthread_self has no preconditions.
            thread: unsafe { libc::pthread_self() },
        };
        let k = Arc::new(KvmKick { target: Mutex::new(Some(target)) });
        self.kick = Some(k.clone());
        Kicker::new(k)
    }

    fn exits(&self) -> u64 {
        self.exits
    }

    fn cpu(&mut self) -> &mut dyn CpuState {
        self
    }
}

impl CpuState for KvmVcpu {
    fn xsave(&self) -> Result<Vec<u8>, HvError> {
        let x = self.vcpu.get_xsave().map_err(err("reading the FPU state"))?;
        Ok(x.region.iter().flat_map(|w| w.to_le_bytes()).collect())
    }

    fn set_xsave(&mut self, area: &[u8]) -> Result<(), HvError> {
        let mut x = self.vcpu.get_xsave().map_err(err("reading the FPU state"))?;
        for (i, w) in x.region.iter_mut().enumerate() {
            let at = i * 4;
            if at + 4 <= area.len() {
                *w = u32::from_le_bytes(area[at..at + 4].try_into().expect("4 bytes"));
            }
        }
        // SAFETY: a kvm_xsave taken from this vCPU with some bytes replaced;
        // KVM validates the header and refuses what it cannot load.
        unsafe { self.vcpu.set_xsave(&x) }.map_err(err("setting the FPU state"))
    }

    fn fs_base(&self) -> Result<u64, HvError> {
        Ok(self.vcpu.get_sregs().map_err(err("reading sregs"))?.fs.base)
    }

    fn set_fs_base(&mut self, base: u64) -> Result<(), HvError> {
        let mut s = self.vcpu.get_sregs().map_err(err("reading sregs"))?;
        s.fs.base = base;
        self.vcpu.set_sregs(&s).map_err(err("setting sregs"))
    }

    fn gs_base(&self) -> Result<u64, HvError> {
        Ok(self.vcpu.get_sregs().map_err(err("reading sregs"))?.gs.base)
    }

    fn set_gs_base(&mut self, base: u64) -> Result<(), HvError> {
        let mut s = self.vcpu.get_sregs().map_err(err("reading sregs"))?;
        s.gs.base = base;
        self.vcpu.set_sregs(&s).map_err(err("setting sregs"))
    }
}
