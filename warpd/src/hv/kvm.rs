//! The KVM backend (kvm-ioctls): one VM, one vCPU, two memory slots.
//!
//! The syscall path follows HOST-KVM.md: LSTAR points at a *user* page
//! holding `out %al, $PORT_SYSCALL`. On PVM (our build hosts) `syscall`
//! stays at CPL3 and the `out` exits through the TSS I/O bitmap; on VMX/SVM
//! the stub runs at CPL0 and the host must put the user CS/SS back when it
//! resumes the program (that path is written from the manuals and untested
//! until a VMX/SVM host runs the suite). Registers travel in `kvm_run`
//! (KVM_CAP_SYNC_REGS), saving two ioctls per exit.

use std::os::fd::AsRawFd;
use std::path::Path;

use kvm_bindings::{
    kvm_fpu, kvm_msr_entry, kvm_regs, kvm_segment, kvm_userspace_memory_region, kvm_xcrs, Msrs, KVM_MAX_CPUID_ENTRIES,
};
use kvm_ioctls::{Cap, Kvm, SyncReg, VcpuExit, VcpuFd, VmFd};

use super::memory::MemFd;
use super::{Capabilities, HvError, VmExit};
use crate::arch::x86_64::descriptors::{Segment, SystemState};
use crate::arch::x86_64::{self as x86, Regs};

const KVM_CAP_GUEST_DEBUG_HW_BPS: u64 = 119;

/// The signal used to interrupt KVM_RUN from another thread.
fn kick_signal() -> i32 {
    libc::SIGRTMIN() + 1
}

extern "C" fn ignore_kick(_: i32) {}

/// Installs the (empty) handler for the kick signal once per process, so
/// that its delivery makes KVM_RUN return EINTR instead of killing warpd.
fn install_kick_handler() {
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

fn open_error(path: &Path, e: std::io::Error) -> HvError {
    let path = path.display().to_string();
    match e.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ENXIO) | Some(libc::ENODEV) => HvError::NoDevice { path },
        Some(libc::EACCES) | Some(libc::EPERM) => HvError::NoPermission { path },
        _ => HvError::Call { what: "opening the KVM device", source: e },
    }
}

/// Opens the KVM device (normally /dev/kvm).
pub fn open(device: &Path) -> Result<Kvm, HvError> {
    use std::os::unix::ffi::OsStrExt;
    let cpath = std::ffi::CString::new(device.as_os_str().as_bytes())
        .map_err(|_| HvError::call("opening the KVM device", std::io::ErrorKind::InvalidInput))?;
    Kvm::new_with_path(cpath).map_err(|e| open_error(device, e.into()))
}

fn host_has_hw_virt() -> bool {
    let leaf1 = std::arch::x86_64::__cpuid(1);
    let ext = std::arch::x86_64::__cpuid(0x8000_0001);
    leaf1.ecx & (1 << 5) != 0 || ext.ecx & (1 << 2) != 0
}

/// What this host's KVM can do. PVM (no VMX/SVM flags on the host CPU) is
/// detected, and the controls HOST-KVM.md measured as ineffective there are
/// reported as unavailable.
pub fn probe(kvm: &Kvm) -> Capabilities {
    let pvm = !host_has_hw_virt();
    Capabilities {
        backend: if pvm { "kvm (PVM, software nested)".into() } else { "kvm (VMX/SVM)".into() },
        sync_regs: kvm.check_extension(Cap::SyncRegs),
        rdtsc_trapping: !pvm,
        cpuid_pinning: !pvm,
        hw_breakpoints: if pvm { 0 } else { kvm.check_extension_raw(KVM_CAP_GUEST_DEBUG_HW_BPS as _).max(0) as u32 },
        kvm_single_step: !pvm,
        pvm,
        // KVM_MEM_LOG_DIRTY_PAGES is part of the base KVM API.
        dirty_log: true,
        immediate_exit: kvm.check_extension(Cap::ImmediateExit),
    }
}

/// A handle another thread uses to stop the vCPU (a signal arrived, the
/// broker died).
///
/// It is live only while the VM is: [`KvmVm`] disarms it when dropped, so a
/// late kick (the broker's reader noticing EOF after the session ended)
/// touches neither a freed kvm_run page nor a finished thread.
#[derive(Clone)]
pub struct Kicker {
    target: std::sync::Arc<std::sync::Mutex<Option<KickTarget>>>,
}

struct KickTarget {
    immediate_exit: *mut u8,
    thread: libc::pthread_t,
}

// SAFETY: the pointer targets the vCPU's kvm_run page and is only used
// while the mutex holds Some, which KvmVm clears before unmapping it.
unsafe impl Send for KickTarget {}

impl Kicker {
    pub fn kick(&self) {
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

/// A VM with one vCPU.
pub struct KvmVm {
    _kvm: Kvm,
    _vm: VmFd,
    vcpu: VcpuFd,
    caps: Capabilities,
    /// Whether the trampoline runs at CPL0 (VMX/SVM); found at the first syscall.
    cpl0_trampoline: Option<bool>,
    regs_dirty: bool,
    pub exits: u64,
    kicker: Option<Kicker>,
}

impl Drop for KvmVm {
    fn drop(&mut self) {
        if let Some(k) = &self.kicker {
            *k.target.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
    }
}

fn to_kvm_segment(s: &Segment) -> kvm_segment {
    kvm_segment {
        base: s.base,
        limit: s.limit,
        selector: s.selector,
        type_: s.type_,
        present: s.present as u8,
        dpl: s.dpl,
        db: s.db as u8,
        s: s.s as u8,
        l: s.l as u8,
        g: s.g as u8,
        avl: 0,
        unusable: s.unusable as u8,
        padding: 0,
    }
}

fn to_kvm_regs(r: &Regs) -> kvm_regs {
    kvm_regs {
        rax: r.rax,
        rbx: r.rbx,
        rcx: r.rcx,
        rdx: r.rdx,
        rsi: r.rsi,
        rdi: r.rdi,
        rsp: r.rsp,
        rbp: r.rbp,
        r8: r.r8,
        r9: r.r9,
        r10: r.r10,
        r11: r.r11,
        r12: r.r12,
        r13: r.r13,
        r14: r.r14,
        r15: r.r15,
        rip: r.rip,
        rflags: r.rflags,
    }
}

fn from_kvm_regs(r: &kvm_regs) -> Regs {
    Regs {
        rax: r.rax,
        rbx: r.rbx,
        rcx: r.rcx,
        rdx: r.rdx,
        rsi: r.rsi,
        rdi: r.rdi,
        rsp: r.rsp,
        rbp: r.rbp,
        r8: r.r8,
        r9: r.r9,
        r10: r.r10,
        r11: r.r11,
        r12: r.r12,
        r13: r.r13,
        r14: r.r14,
        r15: r.r15,
        rip: r.rip,
        rflags: r.rflags,
    }
}

impl KvmVm {
    /// Creates the VM with the kernel region at GPA 0 and the guest region
    /// at `USER_GPA_BASE`.
    pub fn new(kvm: Kvm, kernel: &MemFd, guest: &MemFd) -> Result<Self, HvError> {
        install_kick_handler();
        let caps = probe(&kvm);
        let vm = kvm.create_vm().map_err(|e| HvError::call("creating the VM", e))?;
        for (slot, gpa, mem) in [(0u32, 0u64, kernel), (1, x86::USER_GPA_BASE, guest)] {
            let region = kvm_userspace_memory_region {
                slot,
                flags: 0,
                guest_phys_addr: gpa,
                memory_size: mem.size(),
                userspace_addr: mem.host_addr(),
            };
            // SAFETY: the region maps memory owned by `mem`, which the session
            // keeps alive for as long as the VM exists.
            unsafe { vm.set_user_memory_region(region) }.map_err(|e| HvError::call("adding guest memory", e))?;
        }
        let mut vcpu = vm.create_vcpu(0).map_err(|e| HvError::call("creating the vCPU", e))?;
        // The guest sees the host's CPUID (on PVM this call has no effect).
        let cpuid =
            kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES).map_err(|e| HvError::call("reading supported CPUID", e))?;
        vcpu.set_cpuid2(&cpuid).map_err(|e| HvError::call("setting CPUID", e))?;
        if caps.sync_regs {
            vcpu.set_sync_valid_reg(SyncReg::Register);
        }
        Ok(KvmVm { _kvm: kvm, _vm: vm, vcpu, caps, cpl0_trampoline: None, regs_dirty: false, exits: 0, kicker: None })
    }

    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// Puts the vCPU in long mode at CPL3 with `regs`, the syscall MSRs
    /// pointing at the trampoline, and a clean FPU/SSE/AVX state.
    pub fn setup(&mut self, sys: &SystemState, regs: &Regs, xcr0: u64) -> Result<(), HvError> {
        let mut sregs = self.vcpu.get_sregs().map_err(|e| HvError::call("reading sregs", e))?;
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
        self.vcpu.set_sregs(&sregs).map_err(|e| HvError::call("setting sregs", e))?;

        let entries = [
            (x86::MSR_STAR, x86::STAR_VALUE),
            (x86::MSR_LSTAR, x86::TRAMPOLINE_VA),
            (x86::MSR_CSTAR, x86::TRAMPOLINE_VA),
            (x86::MSR_SFMASK, x86::SFMASK_VALUE),
            (x86::MSR_KERNEL_GS_BASE, 0),
        ]
        .map(|(index, data)| kvm_msr_entry { index, data, ..Default::default() });
        let msrs = Msrs::from_entries(&entries)
            .map_err(|_| HvError::call("building MSRs", std::io::ErrorKind::InvalidInput))?;
        let n = self.vcpu.set_msrs(&msrs).map_err(|e| HvError::call("setting MSRs", e))?;
        if n != entries.len() {
            return Err(HvError::call(
                "setting MSRs",
                std::io::Error::other(format!("only {n} of {} accepted", entries.len())),
            ));
        }

        if sys.cr4 & crate::arch::x86_64::descriptors::CR4_OSXSAVE != 0 {
            let mut xcrs = kvm_xcrs { nr_xcrs: 1, ..Default::default() };
            xcrs.xcrs[0].xcr = 0;
            xcrs.xcrs[0].value = xcr0;
            self.vcpu.set_xcrs(&xcrs).map_err(|e| HvError::call("setting XCR0", e))?;
        }
        // The state Linux gives a new process: x87 control word 0x37f, MXCSR 0x1f80.
        let fpu = kvm_fpu { fcw: 0x37f, mxcsr: 0x1f80, ..Default::default() };
        self.vcpu.set_fpu(&fpu).map_err(|e| HvError::call("setting the FPU", e))?;
        self.vcpu.set_regs(&to_kvm_regs(regs)).map_err(|e| HvError::call("setting registers", e))?;
        Ok(())
    }

    /// A handle to interrupt `run` from another thread; call on the thread
    /// that will call `run`.
    pub fn kicker(&mut self) -> Kicker {
        if let Some(k) = &self.kicker {
            return k.clone();
        }
        let run = self.vcpu.get_kvm_run();
        let target = KickTarget {
            immediate_exit: &mut run.immediate_exit as *mut u8,
            // SAFETY: pthread_self has no preconditions.
            thread: unsafe { libc::pthread_self() },
        };
        let k = Kicker { target: std::sync::Arc::new(std::sync::Mutex::new(Some(target))) };
        self.kicker = Some(k.clone());
        k
    }

    /// Runs the guest until the next exit that needs warpd.
    pub fn run(&mut self) -> VmExit {
        if self.regs_dirty && self.caps.sync_regs {
            self.vcpu.set_sync_dirty_reg(SyncReg::Register);
        }
        self.regs_dirty = false;
        self.exits += 1;
        match self.vcpu.run() {
            Ok(VcpuExit::IoOut(port, _)) if port == x86::PORT_SYSCALL => VmExit::Syscall,
            Ok(VcpuExit::IoOut(port, _)) if port == x86::PORT_EXCEPTION => VmExit::Exception,
            Ok(VcpuExit::Intr) => {
                self.vcpu.set_kvm_immediate_exit(0);
                VmExit::Interrupted
            }
            Ok(VcpuExit::Shutdown) => VmExit::Failed("the guest CPU shut down (triple fault)".into()),
            Ok(VcpuExit::FailEntry(reason, _)) => {
                VmExit::Failed(format!("VM entry failed (hardware reason {reason:#x})"))
            }
            Ok(VcpuExit::InternalError) => VmExit::Failed("KVM internal error (instruction emulation failed)".into()),
            Ok(VcpuExit::Hlt) => VmExit::Failed("the guest halted".into()),
            Ok(other) => VmExit::Failed(format!("unexpected VM exit: {other:?}")),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                self.vcpu.set_kvm_immediate_exit(0);
                VmExit::Interrupted
            }
            Err(e) => VmExit::Failed(format!("KVM_RUN failed: {e}")),
        }
    }

    /// The registers as of the last exit.
    pub fn regs(&self) -> Result<Regs, HvError> {
        if self.caps.sync_regs {
            Ok(from_kvm_regs(&self.vcpu.sync_regs().regs))
        } else {
            self.vcpu.get_regs().map(|r| from_kvm_regs(&r)).map_err(|e| HvError::call("reading registers", e))
        }
    }

    /// The registers read with an ioctl, whatever the exit (an interrupted
    /// KVM_RUN included).
    pub fn regs_now(&self) -> Result<Regs, HvError> {
        self.vcpu.get_regs().map(|r| from_kvm_regs(&r)).map_err(|e| HvError::call("reading registers", e))
    }

    pub fn set_regs(&mut self, regs: &Regs) -> Result<(), HvError> {
        if self.caps.sync_regs {
            self.vcpu.sync_regs_mut().regs = to_kvm_regs(regs);
            self.regs_dirty = true;
            Ok(())
        } else {
            self.vcpu.set_regs(&to_kvm_regs(regs)).map_err(|e| HvError::call("setting registers", e))
        }
    }

    /// Finishes a syscall exit: on VMX/SVM the trampoline ran at CPL0, so
    /// the user segments are restored as `sysret` would.
    pub fn return_to_user(&mut self) -> Result<(), HvError> {
        let cpl0 = match self.cpl0_trampoline {
            Some(v) => v,
            None => {
                let s = self.vcpu.get_sregs().map_err(|e| HvError::call("reading sregs", e))?;
                let v = s.cs.dpl == 0;
                self.cpl0_trampoline = Some(v);
                v
            }
        };
        if cpl0 {
            let mut s = self.vcpu.get_sregs().map_err(|e| HvError::call("reading sregs", e))?;
            let (cs, ss) = crate::arch::x86_64::descriptors::user_segments();
            s.cs = to_kvm_segment(&cs);
            s.ss = to_kvm_segment(&ss);
            self.vcpu.set_sregs(&s).map_err(|e| HvError::call("setting sregs", e))?;
        }
        Ok(())
    }

    /// CR2 of the last page fault.
    pub fn fault_address(&self) -> Result<u64, HvError> {
        Ok(self.vcpu.get_sregs().map_err(|e| HvError::call("reading sregs", e))?.cr2)
    }

    pub fn vcpu_fd(&self) -> i32 {
        self.vcpu.as_raw_fd()
    }
}

impl super::CpuState for KvmVm {
    fn xsave(&self) -> Result<Vec<u8>, HvError> {
        let x = self.vcpu.get_xsave().map_err(|e| HvError::call("reading the FPU state", e))?;
        Ok(x.region.iter().flat_map(|w| w.to_le_bytes()).collect())
    }

    fn set_xsave(&mut self, area: &[u8]) -> Result<(), HvError> {
        let mut x = self.vcpu.get_xsave().map_err(|e| HvError::call("reading the FPU state", e))?;
        for (i, w) in x.region.iter_mut().enumerate() {
            let at = i * 4;
            if at + 4 <= area.len() {
                *w = u32::from_le_bytes(area[at..at + 4].try_into().expect("4 bytes"));
            }
        }
        // SAFETY: a kvm_xsave taken from this vCPU with some bytes replaced;
        // KVM validates the header and refuses what it cannot load.
        unsafe { self.vcpu.set_xsave(&x) }.map_err(|e| HvError::call("setting the FPU state", e))
    }

    fn fs_base(&self) -> Result<u64, HvError> {
        Ok(self.vcpu.get_sregs().map_err(|e| HvError::call("reading sregs", e))?.fs.base)
    }

    fn set_fs_base(&mut self, base: u64) -> Result<(), HvError> {
        let mut s = self.vcpu.get_sregs().map_err(|e| HvError::call("reading sregs", e))?;
        s.fs.base = base;
        self.vcpu.set_sregs(&s).map_err(|e| HvError::call("setting sregs", e))
    }

    fn gs_base(&self) -> Result<u64, HvError> {
        Ok(self.vcpu.get_sregs().map_err(|e| HvError::call("reading sregs", e))?.gs.base)
    }

    fn set_gs_base(&mut self, base: u64) -> Result<(), HvError> {
        let mut s = self.vcpu.get_sregs().map_err(|e| HvError::call("reading sregs", e))?;
        s.gs.base = base;
        self.vcpu.set_sregs(&s).map_err(|e| HvError::call("setting sregs", e))
    }
}

/// The XCR0 value for the guest: x87, SSE and AVX where the host has them.
/// AVX-512 state is left off so that recordings replay on hosts without it.
pub fn guest_xcr0() -> Option<u64> {
    let leaf1 = std::arch::x86_64::__cpuid(1);
    if leaf1.ecx & (1 << 26) == 0 {
        return None; // no XSAVE
    }
    let leaf_d = std::arch::x86_64::__cpuid_count(0xd, 0);
    Some(leaf_d.eax as u64 & 0x7)
}

/// Whether the host CPU supports wrfsbase & co.
pub fn host_fsgsbase() -> bool {
    let leaf7 = std::arch::x86_64::__cpuid_count(7, 0);
    leaf7.ebx & 1 != 0
}
