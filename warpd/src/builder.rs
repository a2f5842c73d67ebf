//! Assembles a guest in one place, for recording and replay alike: guest
//! memory, the VM and its vCPU, warpd's guest-side kernel (tables, stubs,
//! trampoline), the program read through `outside` and loaded with its
//! stack, and the first thread's registers.
//!
//! ```text
//!  GuestSpec + Hypervisor + Outside (broker+recorder, or trace)
//!    -> memory (kernel + guest memfds) -> Vm -> Vcpu
//!    -> install_kernel -> read_program (through outside) -> load (ELF, stack, auxv)
//!    -> Vcpu::setup(initial_cpu, first regs) -> Process -> Guest
//! ```

use warp_proto::warp::Failure;

use crate::arch;
use crate::hv::memory::MemFd;
use crate::hv::{Capabilities, Hypervisor};
use crate::kernel::errno::Errno;
use crate::kernel::mm::Mm;
use crate::kernel::outside::{Arrival, Outside};
use crate::kernel::process::{Identity, Process};
use crate::kernel::procfs::ProcInfo;
use crate::loader::program::{self, ExecError, Images};

use crate::machine::Guest;
use crate::session::SessionError;

/// Guest physical memory per session (sparse: only touched pages cost).
pub const GUEST_MEMORY: u64 = 8 << 30;

/// What a guest is started with: the same for a recording and its replays.
#[derive(Clone, Debug)]
pub struct GuestSpec {
    /// The executable, as resolved on the caller's `$PATH`.
    pub program: String,
    pub argv: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    /// The broker's identity, which the program sees as its own.
    pub ident: Identity,
    /// AT_RANDOM's bytes.
    pub random: [u8; 16],
    /// Chaos mode's seed: the scheduler draws its picks from it.
    pub chaos: Option<u64>,
    /// The trace format the session is (or was) recorded in.
    pub format: u32,
}

/// Guest memory and a VM with its vCPU, before anything is loaded.
pub struct Parts {
    pub mm: Mm,
    pub vm: Box<dyn crate::hv::Vm>,
    pub vcpu: Box<dyn crate::hv::Vcpu>,
    pub caps: Capabilities,
}

/// Fresh guest memory, a VM over it and its vCPU.
pub fn parts(hv: &dyn Hypervisor) -> Result<Parts, SessionError> {
    let kernel = MemFd::create("warp-kernel", arch::x86_64::KERNEL_SLOT_SIZE)?;
    let guest = MemFd::create("warp-guest", GUEST_MEMORY)?;
    let mm = Mm::new(kernel, guest);
    let mut vm = hv.create_vm(&mm.kernel, &mm.guest)?;
    let vcpu = vm.create_vcpu()?;
    Ok(Parts { mm, vm, vcpu, caps: hv.capabilities() })
}

/// What was read before the program starts: its images, and the signals
/// that came with the broker's replies meanwhile (raised once the process
/// exists).
pub struct Read {
    pub images: Images,
    pub signals: Vec<Arrival>,
}

/// Reads the program through `outside`; a refusal becomes the failure
/// warpctl reports (127 not found, 126 not runnable).
pub fn read_program(program: &str, outside: &mut dyn Outside, mm: &Mm) -> Result<Read, SessionError> {
    let mut signals = Vec::new();
    let mut broker = |kind| {
        let reply = outside.call(kind, &mm.guest)?;
        for (i, &signo) in reply.signals.iter().enumerate() {
            signals.push(Arrival { signo, info: reply.signal_infos.get(i).cloned().unwrap_or_default() });
        }
        if reply.signals_pending {
            signals.extend(outside.take_signals()?);
        }
        Ok(reply)
    };
    let images = program::read(program, &mut broker).map_err(|e| match e {
        ExecError::Outside(o) => SessionError::Outside(o),
        ExecError::Refused { errno, message, secondary } => {
            let failure = match errno {
                Errno::ENOENT | Errno::ENOTDIR if !secondary => Failure::NotFound,
                Errno::EACCES | Errno::EPERM => Failure::NotExecutable,
                _ => Failure::Unsupported,
            };
            SessionError::Failed(failure, message)
        }
    })?;
    Ok(Read { images, signals })
}

/// Lays out the kernel, loads the read program and sets up the vCPU:
/// the guest is ready to run its first instruction.
pub fn build(spec: &GuestSpec, read: &Read, parts: Parts) -> Result<Guest, SessionError> {
    let images = &read.images;
    let Parts { mut mm, vm, mut vcpu, caps } = parts;
    let internal = |what: &str| SessionError::Failed(Failure::Daemon, format!("building the guest: {what}"));
    for (va, gpa) in arch::x86_64::install_kernel(&mut mm.kernel) {
        mm.map_kernel_page(va, gpa).map_err(|_| internal("kernel mapping"))?;
    }
    arch::x86_64::install_ring(&mut mm).map_err(|_| internal("ring page"))?;
    let loaded = program::load(images, &spec.argv, &spec.env, &spec.ident, spec.random, spec.format >= 10, &mut mm)
        .map_err(|e| match e {
            ExecError::Outside(o) => SessionError::Outside(o),
            ExecError::Refused { message, .. } => SessionError::Failed(Failure::Unsupported, message),
        })?;
    vcpu.setup(&arch::initial_cpu(mm.cr3()), &loaded.regs)?;
    let mut process = Process::new(mm, spec.ident.clone());
    process.legacy_eintr = spec.format < 3;
    process.format = spec.format;
    if let Some(seed) = spec.chaos {
        process.sched = crate::kernel::sched::Scheduler::chaos(seed);
    }
    process.proc_info = proc_info(&images.exe_path, &spec.cwd, &loaded.argv, &spec.env, loaded.auxv);
    for s in &read.signals {
        process.raise_outside(s);
    }
    Ok(Guest::new(process, vm, vcpu, caps))
}

/// What `/proc/self` shows: the executable as an absolute path (lexically:
/// symbolic links are not resolved), argv, the environment, the auxv.
pub fn proc_info(program: &str, cwd: &str, argv: &[String], env: &[String], auxv: Vec<(u64, u64)>) -> ProcInfo {
    let exe = if program.starts_with('/') {
        program.to_string()
    } else {
        let mut p = std::path::PathBuf::from(cwd);
        for c in std::path::Path::new(program).components() {
            match c {
                std::path::Component::CurDir => {}
                std::path::Component::ParentDir => {
                    p.pop();
                }
                other => p.push(other),
            }
        }
        p.to_string_lossy().into_owned()
    };
    ProcInfo { exe, argv: argv.to_vec(), env: env.to_vec(), auxv }
}
