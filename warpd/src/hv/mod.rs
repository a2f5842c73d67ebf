//! The hypervisor boundary: guest memory, the VM and its one vCPU, exits,
//! and what the backend can control.
//!
//! Everything above this module sees backend-neutral types ([`VmExit`],
//! [`Capabilities`], `arch::x86_64::Regs`); KVM calls live only in
//! `kvm.rs`. The macOS backend (Hypervisor.framework) will sit beside it.

#[cfg(target_os = "linux")]
pub mod kvm;
pub mod memory;

/// Why the vCPU stopped running guest code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmExit {
    /// The program executed `syscall`: registers hold the request.
    Syscall,
    /// The program raised a CPU exception; the frame is on the ring-0 stack.
    Exception,
    /// Another thread asked the vCPU to stop (a signal arrived, the broker died).
    Interrupted,
    /// The VM cannot continue (triple fault, entry failure, emulation error).
    Failed(String),
}

/// What the backend can and cannot do on this host, found by a probe at
/// start-up and stored with every recording.
#[derive(Debug, Clone, Default)]
pub struct Capabilities {
    pub backend: String,
    /// Registers come back with each exit without an ioctl.
    pub sync_regs: bool,
    /// `rdtsc`/`rdtscp` trap (CR4.TSD honoured).
    pub rdtsc_trapping: bool,
    /// KVM_SET_CPUID2 changes what the guest's `cpuid` returns.
    pub cpuid_pinning: bool,
    /// Hardware breakpoints available to the debugger.
    pub hw_breakpoints: u32,
    /// KVM's own single-step (KVM_SET_GUEST_DEBUG) delivers to the host.
    pub kvm_single_step: bool,
    /// Nested paging-free shadow MMU (PVM): `syscall` stays at CPL3.
    pub pvm: bool,
    pub dirty_log: bool,
    pub immediate_exit: bool,
}

/// Why the hypervisor could not be used.
#[derive(Debug, thiserror::Error)]
pub enum HvError {
    /// The KVM device is missing.
    #[error("cannot open {path}: no such device; Warpspeed needs KVM (/dev/kvm): load the kvm_intel or kvm_amd module, or run on a machine with virtualisation enabled")]
    NoDevice { path: String },
    /// The KVM device exists but the user may not open it.
    #[error("cannot open {path}: permission denied; Warpspeed needs KVM (/dev/kvm): add yourself to the kvm group (usermod -aG kvm $USER, then log in again)")]
    NoPermission { path: String },
    /// Any other failure of a hypervisor call.
    #[error("{what}: {source}")]
    Call { what: &'static str, source: std::io::Error },
}

impl HvError {
    pub fn call(what: &'static str, source: impl Into<std::io::Error>) -> Self {
        HvError::Call { what, source: source.into() }
    }
}

/// Per-thread CPU state the emulated kernel changes besides the general
/// registers (arch_prctl's FS/GS bases).
pub trait CpuState {
    fn fs_base(&self) -> Result<u64, HvError>;
    fn set_fs_base(&mut self, base: u64) -> Result<(), HvError>;
    fn gs_base(&self) -> Result<u64, HvError>;
    fn set_gs_base(&mut self, base: u64) -> Result<(), HvError>;
    /// The FPU/SSE/AVX state in XSAVE standard format (4 KiB).
    fn xsave(&self) -> Result<Vec<u8>, HvError>;
    fn set_xsave(&mut self, area: &[u8]) -> Result<(), HvError>;
}
