//! The KVM backend (kvm-ioctls): one VM, one vCPU, two memory slots.
//!
//! The syscall path follows HOST-KVM.md: LSTAR points at a *user* page
//! holding `out %al, $PORT_SYSCALL`. On PVM (our build hosts) `syscall`
//! stays at CPL3 and the `out` exits through the TSS I/O bitmap; on VMX/SVM
//! the stub runs at CPL0 and the host must put the user CS/SS back when it
//! resumes the program (that path is written from the manuals and untested
//! until a VMX/SVM host runs the suite). Registers travel in `kvm_run`
//! (KVM_CAP_SYNC_REGS), saving two ioctls per exit.
//!
//! `mod.rs` opens and probes KVM and makes VMs; `vcpu.rs` runs the vCPU
//! and decodes its exits; `regs.rs` converts register structs.

mod regs;
mod vcpu;

use std::os::fd::AsRawFd;
use std::path::Path;

use kvm_bindings::{kvm_userspace_memory_region, KVM_MEM_LOG_DIRTY_PAGES};
use kvm_ioctls::{Cap, Kvm, VmFd};

use super::memory::MemFd;
use super::{Capabilities, HvError, Hypervisor, Vcpu, Vm};
use crate::arch::x86_64 as x86;
pub use vcpu::KvmVcpu;

const KVM_CAP_GUEST_DEBUG_HW_BPS: u64 = 119;

fn open_error(path: &Path, e: std::io::Error) -> HvError {
    let path = path.display().to_string();
    match e.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ENXIO) | Some(libc::ENODEV) => HvError::NoDevice { path },
        Some(libc::EACCES) | Some(libc::EPERM) => HvError::NoPermission { path },
        _ => HvError::Call { what: "opening the KVM device", source: e },
    }
}

fn host_has_hw_virt() -> bool {
    let leaf1 = std::arch::x86_64::__cpuid(1);
    let ext = std::arch::x86_64::__cpuid(0x8000_0001);
    leaf1.ecx & (1 << 5) != 0 || ext.ecx & (1 << 2) != 0
}

/// KVM, opened.
pub struct KvmHypervisor {
    kvm: Kvm,
    caps: Capabilities,
}

impl KvmHypervisor {
    /// Opens the KVM device (normally /dev/kvm) and probes it.
    pub fn open(device: &Path) -> Result<Self, HvError> {
        use std::os::unix::ffi::OsStrExt;
        let cpath = std::ffi::CString::new(device.as_os_str().as_bytes())
            .map_err(|_| HvError::call("opening the KVM device", std::io::ErrorKind::InvalidInput))?;
        let kvm = Kvm::new_with_path(cpath).map_err(|e| open_error(device, e.into()))?;
        let caps = probe(&kvm);
        Ok(KvmHypervisor { kvm, caps })
    }
}

/// What this host's KVM can do. PVM (no VMX/SVM flags on the host CPU) is
/// detected, and the controls HOST-KVM.md measured as ineffective there are
/// reported as unavailable.
fn probe(kvm: &Kvm) -> Capabilities {
    let pvm = !host_has_hw_virt();
    Capabilities {
        backend: if pvm { "kvm (PVM, software nested)".into() } else { "kvm (VMX/SVM)".into() },
        syscall_trap: if pvm {
            "syscall stays at CPL3 on PVM: a user-page trampoline exits through an allowed I/O port".into()
        } else {
            "the user-page trampoline runs at CPL0 on VMX/SVM; warpd restores the user segments (untested here)".into()
        },
        registers_with_exit: kvm.check_extension(Cap::SyncRegs),
        trap_timestamp: !pvm,
        pin_cpuid: !pvm,
        hw_breakpoints: if pvm { 0 } else { kvm.check_extension_raw(KVM_CAP_GUEST_DEBUG_HW_BPS as _).max(0) as u32 },
        single_step: !pvm,
        // KVM_MEM_LOG_DIRTY_PAGES is part of the base KVM API.
        dirty_log: true,
        prompt_interrupt: kvm.check_extension(Cap::ImmediateExit),
        untested_paths: !pvm,
    }
}

impl Hypervisor for KvmHypervisor {
    fn capabilities(&self) -> Capabilities {
        self.caps.clone()
    }

    /// The kernel region at GPA 0 and the guest region at `USER_GPA_BASE`.
    fn create_vm(&self, kernel: &MemFd, guest: &MemFd) -> Result<Box<dyn Vm>, HvError> {
        vcpu::install_kick_handler();
        let vm = again(|| self.kvm.create_vm()).map_err(|e| HvError::call("creating the VM", e))?;
        // The written-page log read without clearing it, so an interrupt
        // point's digest does not write-protect the pages again (every
        // later write of each would fault: a program writing megabytes per
        // time slice ran 15x slower). Cleared only where a base starts.
        let manual_protect =
            vm.check_extension_raw(u64::from(kvm_bindings::KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2)) & 1 != 0 && {
                let mut cap = kvm_bindings::kvm_enable_cap {
                    cap: kvm_bindings::KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
                    ..Default::default()
                };
                cap.args[0] = 1; // KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE, not INITIALLY_SET
                vm.enable_cap(&cap).is_ok()
            };
        // The guest region goes in slices of GUEST_SLOT bytes, so that
        // reading which pages were written looks only at the slices in use.
        let mut regions = vec![(0u32, 0u64, kernel.host_addr(), kernel.size(), 0)];
        let slices = guest.size().div_ceil(GUEST_SLOT);
        for i in 0..slices {
            let size = GUEST_SLOT.min(guest.size() - i * GUEST_SLOT);
            let addr = guest.host_addr() + i * GUEST_SLOT;
            regions.push((1 + i as u32, x86::USER_GPA_BASE + i * GUEST_SLOT, addr, size, KVM_MEM_LOG_DIRTY_PAGES));
        }
        for (slot, gpa, addr, size, flags) in regions {
            let region = kvm_userspace_memory_region {
                slot,
                // The guest slots log the pages the program writes: the
                // memory digest of an interrupt point (see `Vm::written_pages`).
                flags,
                guest_phys_addr: gpa,
                memory_size: size,
                userspace_addr: addr,
            };
            // SAFETY: the region maps memory owned by `kernel` or `guest`,
            // which the session keeps alive for as long as the VM exists.
            again(|| unsafe { vm.set_user_memory_region(region) })
                .map_err(|e| HvError::call("adding guest memory", e))?;
        }
        // The vCPU reads the exception frames the ring-0 stubs leave in the
        // kernel region through a mapping of its own.
        let frames = kernel.map_again()?;
        let supported = self
            .kvm
            .get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
            .map_err(|e| HvError::call("reading supported CPUID", e))?;
        Ok(Box::new(KvmVm {
            vm,
            caps: self.caps.clone(),
            frames: Some(frames),
            cpuid: supported,
            guest_size: guest.size(),
            manual_protect,
            unprotected: Default::default(),
        }))
    }
}

/// Runs a KVM call again when a signal interrupted it (EINTR): the kick
/// that stops a running vCPU can reach this thread while it builds a VM
/// (a debugger's restore of a checkpoint).
fn again<T>(mut call: impl FnMut() -> Result<T, kvm_ioctls::Error>) -> Result<T, kvm_ioctls::Error> {
    loop {
        match call() {
            Err(e) if e.errno() == libc::EINTR => continue,
            other => return other,
        }
    }
}

/// Bytes of the guest region per memory slot.
const GUEST_SLOT: u64 = 256 << 20;

/// A KVM VM with its memory slots.
struct KvmVm {
    vm: VmFd,
    caps: Capabilities,
    frames: Option<MemFd>,
    cpuid: kvm_bindings::CpuId,
    guest_size: u64,
    /// KVM_GET_DIRTY_LOG leaves the log as it is (KVM_CLEAR_DIRTY_LOG
    /// clears it); else every read clears it.
    manual_protect: bool,
    /// Without it: the pages the reads since the last clear returned.
    unprotected: std::collections::BTreeSet<u64>,
}

/// KVM_CLEAR_DIRTY_LOG: _IOWR(KVMIO, 0xc0, struct kvm_clear_dirty_log).
const KVM_CLEAR_DIRTY_LOG: libc::c_ulong = (3 << 30)
    | ((std::mem::size_of::<kvm_bindings::kvm_clear_dirty_log>() as libc::c_ulong) << 16)
    | (0xae << 8)
    | 0xc0;

impl Vm for KvmVm {
    fn create_vcpu(&mut self) -> Result<Box<dyn Vcpu>, HvError> {
        let frames = self.frames.take().ok_or(HvError::Unsupported("one vCPU per VM"))?;
        let vcpu = again(|| self.vm.create_vcpu(0)).map_err(|e| HvError::call("creating the vCPU", e))?;
        // The guest sees the host's CPUID (on PVM this call has no effect).
        again(|| vcpu.set_cpuid2(&self.cpuid)).map_err(|e| HvError::call("setting CPUID", e))?;
        Ok(Box::new(KvmVcpu::new(vcpu, self.caps.clone(), frames)))
    }

    fn written_pages(&mut self, below: u64, clear: bool) -> Result<Vec<u64>, HvError> {
        let mut pages = Vec::new();
        let below = below.min(self.guest_size);
        let mut i = 0;
        while i * GUEST_SLOT < below {
            let size = GUEST_SLOT.min(self.guest_size - i * GUEST_SLOT);
            let bitmap = self
                .vm
                .get_dirty_log(1 + i as u32, size as usize)
                .map_err(|e| HvError::call("reading the written-page log", e))?;
            if clear && self.manual_protect && bitmap.iter().any(|&w| w != 0) {
                let mut log = kvm_bindings::kvm_clear_dirty_log {
                    slot: 1 + i as u32,
                    num_pages: (size / x86::PAGE_SIZE) as u32,
                    first_page: 0,
                    ..Default::default()
                };
                log.__bindgen_anon_1.dirty_bitmap = bitmap.as_ptr() as *mut libc::c_void;
                // SAFETY: the bitmap covers the slot's pages and outlives the call.
                let r = unsafe { libc::ioctl(self.vm.as_raw_fd(), KVM_CLEAR_DIRTY_LOG, &log) };
                if r != 0 {
                    return Err(HvError::call("clearing the written-page log", std::io::Error::last_os_error()));
                }
            }
            let first = i * GUEST_SLOT / x86::PAGE_SIZE;
            for (w, word) in bitmap.iter().enumerate() {
                let mut bits = *word;
                while bits != 0 {
                    pages.push(first + w as u64 * 64 + bits.trailing_zeros() as u64);
                    bits &= bits - 1;
                }
            }
            i += 1;
        }
        if self.manual_protect {
            return Ok(pages);
        }
        // Each read cleared the log: what it said since the last clear is kept here.
        self.unprotected.extend(pages);
        let all = self.unprotected.iter().copied().collect();
        if clear {
            self.unprotected.clear();
        }
        Ok(all)
    }
}
