//! One recording: from an attached broker to the program's end.
//!
//! [`run`] builds the VM (memory, tables, the loaded program and its
//! stack), then runs the exit loop:
//!
//! ```text
//!  KVM_RUN -> Syscall   -> kernel::Process::syscall -> resume | end
//!          -> Exception -> the signal Linux would send -> end (handlers come later)
//!          -> Interrupted (a signal from the broker, or the broker died)
//! ```

use std::path::PathBuf;
use std::sync::mpsc::Sender;

use std::sync::Arc;

use warp_proto::trace::{Control, CpuidLeaf, Ending, Identity as TraceIdentity, SessionMeta, Status, UnknownSyscall};
use warp_proto::warp::{Capability, DoctorReply, Failure, SessionEnd};

use crate::arch::x86_64::descriptors::{self, initial_system_state};
use crate::arch::x86_64::paging::{PTE_USER, PTE_WRITE};
use crate::arch::x86_64::signal::SigInfo;
use crate::arch::x86_64::{self as x86, ExceptionFrame, Regs};
use crate::hv::kvm::{self, KvmVm};
use crate::hv::memory::MemFd;
use crate::hv::{HvError, VmExit};
use crate::kernel::mm::Mm;
use crate::kernel::outside::{Ending as End_, Outside, OutsideError};
use crate::kernel::process::{Action, Identity, Process, ProcessError};
use crate::kernel::procfs::ProcInfo;
use crate::kernel::signals;
use crate::link::{BrokerLink, LinkError};
use crate::loader::{
    self,
    program::{ExecError, Images},
};
use crate::trace::record::Recorder;
use crate::trace::store::Store;
use crate::trace::FORMAT_VERSION;

/// Guest physical memory per session (sparse: only touched pages cost).
pub const GUEST_MEMORY: u64 = 8 << 30;

/// What the program is and who asked for it.
#[derive(Clone, Debug)]
pub struct SessionSpec {
    pub id: String,
    pub argv: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    /// The executable, resolved on the caller's `$PATH`; read through the broker.
    pub program: String,
    pub owner_uid: u32,
    /// Send notes (unknown syscalls, limitations met) to the caller.
    pub verbose: bool,
}

/// Daemon-wide settings a session needs.
#[derive(Clone, Debug)]
pub struct Config {
    /// Normally `/dev/kvm`; `WARP_KVM_DEVICE` overrides it (tests use that to
    /// check the message given when the device is missing).
    pub kvm_device: PathBuf,
}

impl Default for Config {
    fn default() -> Self {
        let kvm_device =
            std::env::var_os("WARP_KVM_DEVICE").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/dev/kvm"));
        Config { kvm_device }
    }
}

/// How a session went, for the caller and the session list.
#[derive(Clone, Debug)]
pub struct RunResult {
    pub end: SessionEnd,
    pub syscalls: u64,
    pub vm_exits: u64,
}

/// Why a session could not run the program to its end.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionError {
    #[error("{0}")]
    Hv(#[from] HvError),
    #[error("{0}")]
    Outside(#[from] OutsideError),
    #[error("{1}")]
    Failed(Failure, String),
}

impl From<ProcessError> for SessionError {
    fn from(e: ProcessError) -> Self {
        match e {
            ProcessError::Outside(o) => SessionError::Outside(o),
            ProcessError::Cpu(h) => SessionError::Hv(h),
        }
    }
}

impl From<LinkError> for SessionError {
    fn from(e: LinkError) -> Self {
        SessionError::Outside(OutsideError::Link(e))
    }
}

fn end(failure: Failure, exit_code: i32, signal: i32, message: String) -> SessionEnd {
    SessionEnd { failure: failure as i32, exit_code, signal, message }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// What a session counts while it runs.
#[derive(Default)]
pub(crate) struct Counters {
    pub syscalls: u64,
    pub exits: u64,
    /// See `Process::stderr_mid_line`.
    pub stderr_mid_line: bool,
}

/// Runs the session to its end, recording it into `store`. Blocking: call
/// it on a thread of its own. `notes` receives lines for the user (only
/// sent when `spec.verbose`).
pub fn run(
    spec: SessionSpec,
    link: BrokerLink,
    config: &Config,
    notes: Sender<String>,
    store: Arc<Store>,
) -> RunResult {
    let broker_pid = link.info().pid;
    let mut counters = Counters::default();
    let mut meta = initial_meta(&spec, link.info());
    let result = match store.create_session(&meta) {
        Ok(()) => run_inner(&spec, link, config, &notes, &mut counters, &store, &mut meta),
        Err(e) => Err(SessionError::Failed(Failure::Daemon, format!("cannot store the session: {e}"))),
    };
    let end = match result {
        Ok(e) => e,
        Err(SessionError::Failed(f, m)) => end(f, 0, 0, m),
        Err(SessionError::Hv(e)) => end(Failure::Daemon, 0, 0, e.to_string()),
        Err(SessionError::Outside(OutsideError::Link(LinkError::Gone))) => {
            end(Failure::Broker, 0, 0, format!("the broker (pid {broker_pid}) died during the recording"))
        }
        Err(SessionError::Outside(OutsideError::Link(e))) => end(Failure::Broker, 0, 0, e.to_string()),
        Err(SessionError::Outside(e)) => end(Failure::Daemon, 0, 0, e.to_string()),
    };
    meta.end_ms = now_ms();
    meta.syscalls = counters.syscalls;
    meta.vm_exits = counters.exits;
    let failed = end.failure != Failure::None as i32;
    meta.status = if failed { Status::Incomplete as i32 } else { Status::Complete as i32 };
    meta.ending = Some(Ending {
        exit_code: end.exit_code,
        signal: end.signal,
        failure: if failed { end.message.clone() } else { String::new() },
    });
    if let Err(e) = store.update_session(&meta).and_then(|_| store.flush()) {
        tracing::error!(id = %spec.id, "cannot store the end of the session: {e}");
    }
    if spec.verbose {
        let nl = if counters.stderr_mid_line { "\n" } else { "" };
        let _ = notes.send(format!("{nl}{} syscalls, {} vm exits", counters.syscalls, counters.exits));
    }
    RunResult { end, syscalls: counters.syscalls, vm_exits: counters.exits }
}

fn initial_meta(spec: &SessionSpec, info: &warp_proto::broker::BrokerInfo) -> SessionMeta {
    SessionMeta {
        format_version: FORMAT_VERSION,
        id: spec.id.clone(),
        argv: spec.argv.clone(),
        env: spec.env.clone(),
        cwd: spec.cwd.clone(),
        owner_uid: spec.owner_uid,
        start_ms: now_ms(),
        status: Status::Recording as i32,
        program: spec.program.clone(),
        cpuid: host_cpuid(),
        identity: Some(TraceIdentity {
            pid: info.pid,
            ppid: info.ppid,
            uid: info.uid,
            gid: info.gid,
            euid: info.euid,
            egid: info.egid,
            reserved_fd_base: info.reserved_fd_base,
        }),
        ..Default::default()
    }
}

pub(crate) fn identity_of(meta: &SessionMeta) -> Identity {
    let i = meta.identity.unwrap_or_default();
    Identity {
        pid: i.pid,
        ppid: i.ppid,
        uid: i.uid,
        gid: i.gid,
        euid: i.euid,
        egid: i.egid,
        reserved_fd_base: i.reserved_fd_base,
    }
}

/// The CPUID leaves of this host, as the program sees them on PVM (less
/// the per-CPU APIC ids).
pub(crate) fn host_cpuid() -> Vec<CpuidLeaf> {
    use std::arch::x86_64::__cpuid_count;
    let mut out = Vec::new();
    let mut leaf = |function: u32, index: u32| {
        let r = __cpuid_count(function, index);
        let mut l = CpuidLeaf { function, index, eax: r.eax, ebx: r.ebx, ecx: r.ecx, edx: r.edx };
        // Fields that name the CPU warpd happened to run on (APIC ids),
        // not the machine: zeroed, so one host always compares equal.
        match function {
            1 => l.ebx &= 0x00ff_ffff,
            0xb | 0x1f => l.edx = 0,
            0x8000_001e => (l.eax, l.ebx, l.ecx) = (0, 0, 0),
            _ => {}
        }
        out.push(l);
    };
    let max = __cpuid_count(0, 0).eax.min(0x20);
    for f in 0..=max {
        let subleaves = match f {
            4 | 0xb | 0x1f => 4,
            7 | 0x14 => 2,
            0xd => 8,
            _ => 1,
        };
        for i in 0..subleaves {
            leaf(f, i);
        }
    }
    let ext = __cpuid_count(0x8000_0000, 0).eax.min(0x8000_0020);
    for f in 0x8000_0000..=ext {
        leaf(f, 0);
    }
    out
}

fn run_inner(
    spec: &SessionSpec,
    broker: BrokerLink,
    config: &Config,
    notes: &Sender<String>,
    counters: &mut Counters,
    store: &Arc<Store>,
    meta: &mut SessionMeta,
) -> Result<SessionEnd, SessionError> {
    let (mut mm, mut vm) = new_vm(config)?;
    let caps = vm.capabilities().clone();
    meta.backend = caps.backend.clone();
    meta.controls = vec![
        Control { name: "rdtsc".into(), controlled: false },
        Control { name: "cpuid".into(), controlled: false },
        Control { name: "syscalls".into(), controlled: true },
    ];
    let ident = identity_of(meta);
    let link = broker.start(mm.guest.fd(), GUEST_MEMORY, vm.kicker())?;
    let mut rec = Recorder::new(link, store.clone(), &spec.id);
    let outcome = (|| {
        let images = read_program(&spec.program, &mut rec, &mm)?;
        meta.exe_hash = blake3::hash(&images.exe).as_bytes().to_vec();
        meta.exe_size = images.exe.len() as u64;
        let mut random = [0u8; 16];
        // SAFETY: getrandom into a local buffer of the given length.
        unsafe { libc::getrandom(random.as_mut_ptr() as *mut libc::c_void, 16, 0) };
        meta.at_random = random.to_vec();
        store.update_session(meta).map_err(|e| SessionError::Failed(Failure::Daemon, e.to_string()))?;
        let loaded = build_guest(&spec.argv, &spec.env, &images, &ident, random, &mut mm, &mut vm)?;
        let mut process = Process::new(mm, ident);
        process.proc_info = proc_info(&images.exe_path, &spec.cwd, &loaded.argv, &spec.env, loaded.auxv);
        let r = run_loop(&mut process, &mut vm, &mut rec, spec.verbose, notes, counters);
        record_unknown(&process, meta);
        r
    })();
    let (events, bytes, logical) = rec.counts();
    meta.events = events;
    meta.trace_bytes = bytes;
    meta.logical_bytes = logical;
    rec.link.finish();
    outcome.map(|action| match action {
        Action::Exit(code) => end(Failure::None, code, 0, String::new()),
        Action::Killed(sig) => end(Failure::None, 0, sig, String::new()),
        Action::Return(_) | Action::Exec(_) | Action::Jump { .. } => {
            unreachable!("the loop only ends on an ending action")
        }
    })
}

fn record_unknown(process: &Process, meta: &mut SessionMeta) {
    meta.unknown_syscalls = process
        .unknown
        .iter()
        .map(|(&nr, &count)| UnknownSyscall {
            nr,
            name: crate::kernel::names::name(nr).unwrap_or("").to_string(),
            count,
        })
        .collect();
}

/// A fresh address space and VM.
pub(crate) fn new_vm(config: &Config) -> Result<(Mm, KvmVm), SessionError> {
    let kvm = kvm::open(&config.kvm_device)?;
    let kernel = MemFd::create("warp-kernel", x86::KERNEL_SLOT_SIZE)?;
    let guest = MemFd::create("warp-guest", GUEST_MEMORY)?;
    let mm = Mm::new(kernel, guest);
    let vm = KvmVm::new(kvm, &mm.kernel, &mm.guest)?;
    Ok((mm, vm))
}

/// Reads the program through the broker; a refusal becomes the failure
/// warpctl reports (127 not found, 126 not runnable).
pub(crate) fn read_program(program: &str, outside: &mut dyn Outside, mm: &Mm) -> Result<Images, SessionError> {
    loader::program::read(program, outside, mm).map_err(|e| match e {
        ExecError::Outside(o) => SessionError::Outside(o),
        ExecError::Refused { errno, message, secondary } => {
            let failure = match errno.0 {
                libc::ENOENT | libc::ENOTDIR if !secondary => Failure::NotFound,
                libc::EACCES | libc::EPERM => Failure::NotExecutable,
                _ => Failure::Unsupported,
            };
            SessionError::Failed(failure, message)
        }
    })
}

/// Lays out the kernel tables and the program, and sets the first
/// registers; returns what the program was started with.
#[allow(clippy::too_many_arguments)]
pub(crate) fn build_guest(
    argv: &[String],
    env: &[String],
    images: &Images,
    ident: &Identity,
    random: [u8; 16],
    mm: &mut Mm,
    vm: &mut KvmVm,
) -> Result<loader::program::Loaded, SessionError> {
    let internal = |what: &str| SessionError::Failed(Failure::Daemon, format!("building the guest: {what}"));
    descriptors::write_tables(mm.kernel.as_mut_slice());
    mm.kernel.write(x86::GPA_TRAMPOLINE, &x86::trampoline_page());
    for gpa in (0..x86::KERNEL_MAPPED).step_by(x86::PAGE_SIZE as usize) {
        mm.map_kernel_page(x86::KBASE + gpa, gpa, PTE_WRITE).map_err(|_| internal("kernel mapping"))?;
    }
    mm.map_kernel_page(x86::TRAMPOLINE_VA, x86::GPA_TRAMPOLINE, PTE_USER).map_err(|_| internal("trampoline"))?;
    let loaded = loader::program::load(images, argv, env, ident, random, mm).map_err(|e| match e {
        ExecError::Outside(o) => SessionError::Outside(o),
        ExecError::Refused { message, .. } => SessionError::Failed(Failure::Unsupported, message),
    })?;
    let fsgsbase = kvm::host_fsgsbase();
    let xcr0 = kvm::guest_xcr0();
    let sys = initial_system_state(mm.cr3(), xcr0.is_some(), fsgsbase);
    vm.setup(&sys, &loaded.regs, xcr0.unwrap_or(0))?;
    Ok(loaded)
}

/// What `/proc/self` shows: the executable as an absolute path (lexically:
/// symbolic links are not resolved), argv, the environment, the auxv.
pub(crate) fn proc_info(program: &str, cwd: &str, argv: &[String], env: &[String], auxv: Vec<(u64, u64)>) -> ProcInfo {
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

/// Runs the program until it ends. The same loop records and replays; only
/// `outside` differs.
pub(crate) fn run_loop(
    process: &mut Process,
    vm: &mut KvmVm,
    outside: &mut dyn Outside,
    verbose: bool,
    notes: &Sender<String>,
    counters: &mut Counters,
) -> Result<Action, SessionError> {
    // A note that starts with a newline tells warpctl to end the program's
    // unfinished line first.
    let flush_notes = |p: &mut Process| {
        for n in p.notes.drain(..) {
            if verbose {
                let nl = if p.stderr_mid_line { "\n" } else { "" };
                p.stderr_mid_line = false;
                let _ = notes.send(format!("{nl}{n}"));
            }
        }
    };
    let ending = |outside: &mut dyn Outside, action: &Action, rip: u64| -> Result<(), SessionError> {
        match *action {
            Action::Exit(c) => outside.end(End_::Exited(c), rip)?,
            Action::Killed(s) => outside.end(End_::Killed(s), rip)?,
            Action::Return(_) | Action::Exec(_) | Action::Jump { .. } => {}
        }
        Ok(())
    };
    // Signals the recording took while the program computed are due before
    // it runs on (replay only). The recording ran a handler where the vCPU
    // stopped; replay runs it here, at the syscall boundary before that point.
    let due = |process: &mut Process,
               outside: &mut dyn Outside,
               vm: &mut KvmVm,
               boundary: &Regs|
     -> Result<Option<Action>, SessionError> {
        for s in outside.pending_async()? {
            process.signals.raise(s);
        }
        Ok(process.deliver_signals(Some((boundary, None, boundary.rax as i64)), vm)?)
    };
    let first = vm.regs_now()?;
    match due(process, outside, vm, &first)? {
        Some(Action::Jump { regs, .. }) => vm.set_regs(&regs)?,
        Some(a) => {
            ending(outside, &a, 0)?;
            return Ok(a);
        }
        None => {}
    }
    loop {
        let exit = vm.run();
        counters.exits = vm.exits;
        match exit {
            VmExit::Syscall => {
                let mut regs = vm.regs()?;
                let (nr, args) = regs.syscall_args();
                let rip = regs.rcx.wrapping_sub(2);
                outside.syscall_entry(nr, args, rip)?;
                let action = process.syscall(&regs, vm, outside)?;
                counters.syscalls = process.syscalls;
                flush_notes(process);
                counters.stderr_mid_line = process.stderr_mid_line;
                // Where the program resumes, unless a signal that was due
                // sends it into a handler first.
                let (resume, ret) = match action {
                    Action::Exec(new) => (new, 0),
                    Action::Jump { regs: new, ret } => (new, ret),
                    Action::Return(r) => {
                        regs.finish_syscall(r);
                        (regs, r)
                    }
                    other => {
                        ending(outside, &other, rip)?;
                        return Ok(other);
                    }
                };
                outside.syscall_exit(nr, ret, rip)?;
                let resume = match due(process, outside, vm, &resume)? {
                    Some(Action::Jump { regs: handler, .. }) => handler,
                    Some(a) => {
                        flush_notes(process);
                        ending(outside, &a, rip)?;
                        return Ok(a);
                    }
                    None => resume,
                };
                vm.set_regs(&resume)?;
                vm.return_to_user()?;
            }
            VmExit::Exception => {
                let frame = read_frame(&process.mm);
                let handled = exception(process, vm, outside, &frame)?;
                flush_notes(process);
                if let Some(action) = handled {
                    ending(outside, &action, frame.rip)?;
                    return Ok(action);
                }
            }
            VmExit::Interrupted => {
                if outside.is_dead() {
                    return Err(SessionError::Outside(OutsideError::Link(LinkError::Gone)));
                }
                let now = vm.regs_now()?;
                for s in outside.interrupted(now.rip)? {
                    process.signals.raise(s);
                }
                // In user code a handler runs right here, where the vCPU
                // stopped (the trace notes where); inside warpd's ring-0
                // stubs it waits for the next syscall.
                let at = (now.rip < x86::USER_TOP).then_some((&now, None, now.rax as i64));
                match process.deliver_signals(at, vm)? {
                    Some(Action::Jump { regs, .. }) => vm.set_regs(&regs)?,
                    Some(a) => {
                        flush_notes(process);
                        ending(outside, &a, now.rip)?;
                        return Ok(a);
                    }
                    None => {}
                }
            }
            VmExit::Failed(why) => {
                let rip = vm.regs().map(|r| r.rip).unwrap_or(0);
                return Err(SessionError::Failed(Failure::Daemon, format!("the VM stopped: {why} (rip {rip:#x})")));
            }
        }
    }
}

fn read_frame(mm: &Mm) -> ExceptionFrame {
    let base = x86::GPA_KSTACK_TOP - x86::EXCEPTION_FRAME_SIZE;
    let mut w = [0u64; 7];
    for (i, v) in w.iter_mut().enumerate() {
        *v = mm.kernel.read_u64(base + i as u64 * 8);
    }
    ExceptionFrame::from_words(w)
}

/// A CPU exception in the program: the signal Linux would send, which
/// (until signal handlers run) ends it.
fn exception(
    process: &mut Process,
    vm: &mut KvmVm,
    outside: &mut dyn Outside,
    f: &ExceptionFrame,
) -> Result<Option<Action>, SessionError> {
    if f.cs & 3 != 3 {
        return Err(SessionError::Failed(
            Failure::Daemon,
            format!("exception {} in warpd's guest kernel code at {:#x}", f.vector, f.rip),
        ));
    }
    let code = process.mm.peek_code(f.rip, 2);
    let address = if f.vector == 14 { vm.fault_address()? } else { 0 };
    if (f.vector == 6 || f.vector == 13) && x86::is_int80(&code) {
        process.notes.push(format!(
            "the program used int $0x80 (the 32-bit syscall ABI) at {:#x}, which Warpspeed does not support; it gets SIGSEGV as on a kernel without IA-32 emulation",
            f.rip
        ));
        outside.fault(f, address, libc::SIGSEGV)?;
        return Ok(Some(Action::Killed(libc::SIGSEGV)));
    }
    let Some(sig) = x86::exception_signal(f.vector) else {
        return Err(SessionError::Failed(
            Failure::Daemon,
            format!("unexpected exception vector {} at {:#x}", f.vector, f.rip),
        ));
    };
    outside.fault(f, address, sig)?;
    let detail = if f.vector == 14 { format!(" at address {address:#x}") } else { String::new() };
    process.notes.push(format!("{} (CPU exception {}){} at rip {:#x}", signals::name(sig), f.vector, detail, f.rip));

    // The program's handler, if it has one: entered through the IDT stub's
    // iretq, with the faulting context saved in its frame.
    let stub = vm.regs()?;
    let resume = Regs { rip: f.rip, rsp: f.rsp, rflags: f.rflags, ..stub };
    let info = SigInfo { signo: sig, code: fault_code(f), pid: 0, uid: 0, addr: Some(address) };
    match process.fault_handler(sig, info, &resume, vm)? {
        Some(Action::Jump { regs: entry, .. }) => {
            let base = x86::GPA_KSTACK_TOP - x86::EXCEPTION_FRAME_SIZE;
            process.mm.kernel.write(base + 16, &entry.rip.to_le_bytes());
            process.mm.kernel.write(base + 32, &entry.rflags.to_le_bytes());
            process.mm.kernel.write(base + 40, &entry.rsp.to_le_bytes());
            let regs = Regs { rdi: entry.rdi, rsi: entry.rsi, rdx: entry.rdx, rax: entry.rax, ..stub };
            vm.set_regs(&regs)?;
            Ok(None)
        }
        Some(other) => Ok(Some(other)),
        None => Ok(Some(Action::Killed(sig))),
    }
}

/// si_code for a CPU fault, as Linux reports it.
fn fault_code(f: &ExceptionFrame) -> i32 {
    match f.vector {
        14 if f.error_code & x86::pf::PRESENT != 0 => 2, // SEGV_ACCERR
        14 => 1,                                         // SEGV_MAPERR
        0 => 1,                                          // FPE_INTDIV
        6 => 2,                                          // ILL_ILLOPN
        3 => 0x80,                                       // SI_KERNEL (int3)
        1 => 2,                                          // TRAP_TRACE
        17 => 1,                                         // BUS_ADRALN
        _ => 0x80,                                       // SI_KERNEL (#GP and others)
    }
}

/// What `warpctl doctor` shows: the backend and each capability.
pub fn doctor(config: &Config) -> DoctorReply {
    let cap = |name: &str, available: bool, consequence: &str| Capability {
        name: name.into(),
        available,
        consequence: consequence.into(),
    };
    let kvm = match kvm::open(&config.kvm_device) {
        Ok(k) => k,
        Err(e) => {
            return DoctorReply {
                backend: "none".into(),
                capabilities: vec![cap("kvm", false, &format!("recording is impossible: {e}"))],
            }
        }
    };
    let c = kvm::probe(&kvm);
    let untested = if c.pvm { "" } else { " (this path is untested: our build hosts are PVM)" };
    DoctorReply {
        backend: c.backend.clone(),
        capabilities: vec![
            cap("kvm", true, "programs run in a one-vCPU KVM virtual machine"),
            cap(
                "syscall trap",
                true,
                if c.pvm {
                    "syscall stays at CPL3 on PVM: a user-page trampoline exits through an allowed I/O port"
                } else {
                    "the user-page trampoline runs at CPL0 on VMX/SVM; warpd restores the user segments (untested here)"
                },
            ),
            cap(
                "sync regs",
                c.sync_regs,
                if c.sync_regs {
                    "registers come back with each exit, no extra ioctl"
                } else {
                    "two extra ioctls per syscall"
                },
            ),
            cap(
                "rdtsc trapping",
                c.rdtsc_trapping,
                &if c.rdtsc_trapping {
                    format!("rdtsc/rdtscp can be trapped and recorded{untested}")
                } else {
                    "rdtsc/rdtscp run natively and are not recorded: a program that reads the TSC directly may diverge on replay".into()
                },
            ),
            cap(
                "cpuid pinning",
                c.cpuid_pinning,
                &if c.cpuid_pinning {
                    format!("the guest's CPUID can be pinned to a table{untested}")
                } else {
                    "cpuid and rdrand run natively: the program sees this host's CPU; the trace keeps what warpd saw"
                        .into()
                },
            ),
            cap(
                "hardware breakpoints",
                c.hw_breakpoints > 0,
                &if c.hw_breakpoints > 0 {
                    format!("{} hardware breakpoints{untested}", c.hw_breakpoints)
                } else {
                    "none: debugger breakpoints are int3 patches".into()
                },
            ),
            cap(
                "kvm single-step",
                c.kvm_single_step,
                if c.kvm_single_step {
                    "KVM single-step available (untested here)"
                } else {
                    "broken on PVM: stepping uses the trap flag"
                },
            ),
            cap("dirty page log", c.dirty_log, "checkpoints can track written pages"),
            cap("immediate exit", c.immediate_exit, "signals interrupt a running program promptly"),
        ],
    }
}
