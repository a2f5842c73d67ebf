//! The hypervisor boundary: a [`Hypervisor`] that opens and probes the
//! backend, a [`Vm`] that owns guest memory, and its one [`Vcpu`] that runs
//! guest code and says why it stopped in backend-neutral terms ([`VmExit`]).
//!
//! Everything above this module sees these traits and `arch`'s register
//! types; KVM calls live only in `kvm/` (Linux, x86_64). The macOS backend
//! (Hypervisor.framework) will sit beside it, behind the same traits.
//!
//! ```text
//!  Hypervisor::open -> capabilities() -> create_vm(kernel, guest) -> Vm
//!  Vm::create_vcpu -> Vcpu: setup(initial) ; loop { run() -> VmExit ; context / set_regs }
//!                          kicker() -> Kicker (another thread stops run())
//! ```

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub mod kvm;
pub mod memory;

use std::sync::Arc;

use crate::arch::{InitialCpu, Regs};
use memory::MemFd;

/// A syscall as the guest asked for it, decoded from the exit (today) or
/// from a shared ring (the fast path): the same struct feeds one dispatcher.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyscallRequest {
    /// The guest thread that asked; the backend does not know threads, the
    /// exit loop fills it in.
    pub thread: u32,
    /// The whole number register (rax on x86_64): the personality decides
    /// which bits select the call.
    pub number: u64,
    pub args: [u64; 6],
    /// The address of the syscall instruction.
    pub rip: u64,
    /// The exitless path performed the call and left it for the exit loop
    /// to end (its result is in the ring slot): the backend saw the
    /// trampoline's finishing `out`.
    pub finish: bool,
}

/// What kind of CPU exception the guest took, independent of the
/// architecture's vector numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// A page fault: the access and whether a mapping was present.
    Page { present: bool, write: bool, fetch: bool },
    /// A general-protection fault (privileged instruction, non-canonical address...).
    Protection,
    /// An undefined or invalid instruction.
    InvalidOpcode,
    /// Integer divide error.
    Divide,
    /// x87 or SIMD floating-point exception.
    FloatingPoint,
    /// A breakpoint instruction the program itself executed (`int3`).
    Breakpoint,
    /// A debug trap (the trap flag, a hardware breakpoint) the debugger did not ask for.
    Debug,
    /// A misaligned access with alignment checking on.
    Alignment,
    /// An `in` or `out` the program executed itself (only warpd's syscall
    /// trampoline may use the port the guest can reach): Linux gives user
    /// mode no port I/O, so it is a general-protection fault there.
    /// `rip_is_after`: the backend saw the address after the instruction
    /// (PVM), not the instruction itself.
    PortIo { rip_is_after: bool },
    /// A stack-segment fault.
    Stack,
    /// Overflow or bound-range instructions.
    Overflow,
    /// Anything else, with the architecture's number.
    Other(u32),
}

/// A CPU exception taken by the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestFault {
    pub kind: FaultKind,
    /// The architecture's exception number and error code, kept for the trace.
    pub vector: u32,
    pub error_code: u64,
    /// The faulting address for memory faults, else 0.
    pub address: u64,
    /// Where the guest was: the faulting instruction.
    pub rip: u64,
    /// Whether the guest was running the program (not warpd's guest-side stubs).
    pub user: bool,
}

/// Why the vCPU stopped running guest code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VmExit {
    /// The program asked for a syscall.
    Syscall(SyscallRequest),
    /// The program raised a CPU exception; `Vcpu::regs` now shows the
    /// faulting context, and `set_regs` says where it resumes.
    Fault(GuestFault),
    /// A single step the debugger asked for ([`Vcpu::set_single_step`]) is done.
    SingleStep { rip: u64 },
    /// Another thread asked the vCPU to stop (a signal arrived, the broker
    /// died, a debugger wants to pause).
    Interrupted,
    /// The VM cannot continue (triple fault, entry failure, emulation error).
    Failed(String),
}

/// What the backend can and cannot do on this host, found by a probe at
/// start-up, shown by `warpctl doctor` and stored with every recording.
/// Each field says what it allows; the backend's name is data.
#[derive(Debug, Clone, Default)]
pub struct Capabilities {
    /// The backend and the flavour of it ("kvm (PVM, software nested)").
    pub backend: String,
    /// How a syscall reaches warpd on this host, in words.
    pub syscall_trap: String,
    /// Registers come back with each exit without an extra call.
    pub registers_with_exit: bool,
    /// `rdtsc`/`rdtscp` can be made to trap (and so be recorded).
    pub trap_timestamp: bool,
    /// The guest's CPUID can be pinned to a table.
    pub pin_cpuid: bool,
    /// Hardware breakpoints available to the debugger.
    pub hw_breakpoints: u32,
    /// The backend's own single-step works (else stepping uses the trap flag).
    pub single_step: bool,
    /// Written pages can be logged (checkpoints).
    pub dirty_log: bool,
    /// Another thread can stop a running vCPU promptly.
    pub prompt_interrupt: bool,
    /// The paths above that differ from our PVM build hosts are written from
    /// the manuals and have not run here: doctor says so.
    pub untested_paths: bool,
}

/// Why the hypervisor could not be used.
#[derive(Debug, thiserror::Error)]
pub enum HvError {
    /// The hypervisor device is missing.
    #[error("cannot open {path}: no such device; Warpspeed needs KVM (/dev/kvm): load the kvm_intel or kvm_amd module, or run on a machine with virtualisation enabled")]
    NoDevice { path: String },
    /// The hypervisor device exists but the user may not open it.
    #[error("cannot open {path}: permission denied; Warpspeed needs KVM (/dev/kvm): add yourself to the kvm group (usermod -aG kvm $USER, then log in again)")]
    NoPermission { path: String },
    /// No backend exists for this operating system or CPU.
    #[error("no hypervisor backend for this platform ({0})")]
    Unsupported(&'static str),
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
/// registers (arch_prctl's FS/GS bases, signal frames' FPU state).
pub trait CpuState {
    fn fs_base(&self) -> Result<u64, HvError>;
    fn set_fs_base(&mut self, base: u64) -> Result<(), HvError>;
    fn gs_base(&self) -> Result<u64, HvError>;
    fn set_gs_base(&mut self, base: u64) -> Result<(), HvError>;
    /// The FPU/SSE/AVX state in XSAVE standard format (4 KiB).
    fn xsave(&self) -> Result<Vec<u8>, HvError>;
    fn set_xsave(&mut self, area: &[u8]) -> Result<(), HvError>;
}

/// Everything a guest thread's CPU holds that warpd saves and restores:
/// what a thread switch, a checkpoint or a debugger's register write needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ThreadContext {
    pub regs: Regs,
    pub fs_base: u64,
    pub gs_base: u64,
    /// FPU/SSE/AVX state, XSAVE standard format.
    pub fpu: Vec<u8>,
}

/// Stops a running vCPU from another thread. Cheap to clone; harmless
/// after the vCPU is gone.
#[derive(Clone)]
pub struct Kicker(Arc<dyn Kick>);

/// How a backend stops its vCPU.
pub trait Kick: Send + Sync {
    fn kick(&self);
}

impl Kicker {
    pub fn new(k: Arc<dyn Kick>) -> Self {
        Kicker(k)
    }
    pub fn kick(&self) {
        self.0.kick()
    }
}

/// A guest CPU.
pub trait Vcpu: CpuState + Send {
    /// Puts the CPU in the state the architecture's guest model starts in
    /// (`arch::initial_cpu`), with these first registers.
    fn setup(&mut self, initial: &InitialCpu, regs: &Regs) -> Result<(), HvError>;
    /// Runs guest code until the next exit that needs warpd.
    fn run(&mut self) -> VmExit;
    /// The guest thread's registers as of the last exit: at a syscall, the
    /// registers of the `syscall`; after a fault, the faulting context.
    fn regs(&self) -> Result<Regs, HvError>;
    /// Where the guest resumes on the next `run`.
    fn set_regs(&mut self, regs: &Regs) -> Result<(), HvError>;
    /// Step one instruction on the next `run` (the exit is `SingleStep`).
    fn set_single_step(&mut self, on: bool) -> Result<(), HvError>;
    /// A handle that stops `run` from another thread. Call it on the thread
    /// that will call `run`.
    fn kicker(&mut self) -> Kicker;
    /// Exits taken so far.
    fn exits(&self) -> u64;
    /// The parts of the context the emulated kernel edits in place.
    fn cpu(&mut self) -> &mut dyn CpuState;

    /// The whole thread context.
    fn context(&self) -> Result<ThreadContext, HvError> {
        Ok(ThreadContext { regs: self.regs()?, fs_base: self.fs_base()?, gs_base: self.gs_base()?, fpu: self.xsave()? })
    }
    fn set_context(&mut self, c: &ThreadContext) -> Result<(), HvError> {
        self.set_regs(&c.regs)?;
        self.set_fs_base(c.fs_base)?;
        self.set_gs_base(c.gs_base)?;
        self.set_xsave(&c.fpu)
    }
}

/// A VM: guest memory and its vCPU.
pub trait Vm: Send {
    /// Creates the VM's one vCPU.
    fn create_vcpu(&mut self) -> Result<Box<dyn Vcpu>, HvError>;
    /// The guest-region pages (offsets in the guest memfd, in pages) the
    /// guest wrote since the log was last cleared, in order; with `clear`,
    /// the log then starts again (the pages are watched for writes anew,
    /// which costs the guest a fault at its next write of each). A backend
    /// that cannot read its log without clearing it clears it on every
    /// read, so callers gather what the reads return. Writes by the host
    /// (warpd, the broker) through their own mappings are not seen.
    /// Only offsets below `below` are looked at (nothing above was ever
    /// mapped), which keeps the cost to the memory in use.
    fn written_pages(&mut self, below: u64, clear: bool) -> Result<Vec<u64>, HvError>;
}

/// A hypervisor backend.
pub trait Hypervisor: Send + Sync {
    /// What this backend can do on this host.
    fn capabilities(&self) -> Capabilities;
    /// A VM with the kernel region (tables, stubs; warpd's own) and the
    /// guest region (the program's memory; shared with the broker) at the
    /// addresses the architecture's layout gives them.
    fn create_vm(&self, kernel: &MemFd, guest: &MemFd) -> Result<Box<dyn Vm>, HvError>;
}

/// Opens this platform's hypervisor (normally `/dev/kvm` on Linux).
pub fn open(device: &std::path::Path) -> Result<Box<dyn Hypervisor>, HvError> {
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    {
        Ok(Box::new(kvm::KvmHypervisor::open(device)?))
    }
    #[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
    {
        let _ = device;
        Err(HvError::Unsupported("only Linux on x86_64 has a backend today"))
    }
}
