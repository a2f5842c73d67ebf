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

use warp_proto::broker::{request, ReadFile};
use warp_proto::warp::{Capability, DoctorReply, Failure, SessionEnd};

use crate::arch::x86_64::descriptors::{self, initial_system_state};
use crate::arch::x86_64::paging::{PTE_USER, PTE_WRITE};
use crate::arch::x86_64::{self as x86, ExceptionFrame, Regs};
use crate::hv::kvm::{self, KvmVm};
use crate::hv::memory::MemFd;
use crate::hv::{HvError, VmExit};
use crate::kernel::mm::{self, Mm, VmaKind, PROT_READ, PROT_WRITE};
use crate::kernel::process::{Action, Identity, Process, ProcessError};
use crate::kernel::signals;
use crate::link::{BrokerLink, Link, LinkError};
use crate::loader::{elf, stack};

/// Guest physical memory per session (sparse: only touched pages cost).
pub const GUEST_MEMORY: u64 = 8 << 30;
/// The largest executable the loader reads.
const MAX_EXECUTABLE: u64 = 1 << 30;

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
        let kvm_device = std::env::var_os("WARP_KVM_DEVICE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/dev/kvm"));
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
enum SessionError {
    #[error("{0}")]
    Hv(#[from] HvError),
    #[error("{0}")]
    Link(#[from] LinkError),
    #[error("{1}")]
    Failed(Failure, String),
}

impl From<ProcessError> for SessionError {
    fn from(e: ProcessError) -> Self {
        match e {
            ProcessError::Link(l) => SessionError::Link(l),
            ProcessError::Cpu(h) => SessionError::Hv(h),
        }
    }
}

fn end(failure: Failure, exit_code: i32, signal: i32, message: String) -> SessionEnd {
    SessionEnd { failure: failure as i32, exit_code, signal, message }
}

/// Runs the session to its end. Blocking: call it on a thread of its own.
/// `notes` receives lines for the user (only sent when `spec.verbose`).
pub fn run(spec: SessionSpec, link: BrokerLink, config: &Config, notes: Sender<String>) -> RunResult {
    let broker_pid = link.info().pid;
    let mut counters = Counters::default();
    let result = run_inner(&spec, link, config, &notes, &mut counters);
    let end = match result {
        Ok(e) => e,
        Err(SessionError::Failed(f, m)) => end(f, 0, 0, m),
        Err(SessionError::Hv(e)) => end(Failure::Daemon, 0, 0, e.to_string()),
        Err(SessionError::Link(LinkError::Gone)) => {
            end(Failure::Broker, 0, 0, format!("the broker (pid {broker_pid}) died during the recording"))
        }
        Err(SessionError::Link(e)) => end(Failure::Broker, 0, 0, e.to_string()),
    };
    if spec.verbose {
        let nl = if counters.stderr_mid_line { "\n" } else { "" };
        let _ = notes.send(format!("{nl}{} syscalls, {} vm exits", counters.syscalls, counters.exits));
    }
    RunResult { end, syscalls: counters.syscalls, vm_exits: counters.exits }
}

/// What a session counts while it runs.
#[derive(Default)]
struct Counters {
    syscalls: u64,
    exits: u64,
    /// See `Process::stderr_mid_line`.
    stderr_mid_line: bool,
}

fn run_inner(
    spec: &SessionSpec,
    broker: BrokerLink,
    config: &Config,
    notes: &Sender<String>,
    counters: &mut Counters,
) -> Result<SessionEnd, SessionError> {
    let kvm = kvm::open(&config.kvm_device)?;
    let kernel = MemFd::create("warp-kernel", x86::KERNEL_SLOT_SIZE)?;
    let guest = MemFd::create("warp-guest", GUEST_MEMORY)?;
    let mut mm = Mm::new(kernel, guest);
    let mut vm = KvmVm::new(kvm, &mm.kernel, &mm.guest)?;
    let info = broker.info().clone();
    let ident = Identity {
        pid: info.pid,
        ppid: info.ppid,
        uid: info.uid,
        gid: info.gid,
        euid: info.euid,
        egid: info.egid,
        reserved_fd_base: info.reserved_fd_base,
    };
    let mut link = broker.start(mm.guest.fd(), GUEST_MEMORY, vm.kicker())?;
    let outcome = (|| {
        let image = read_program(spec, &mut link)?;
        let regs = build_guest(spec, &image, &ident, &mut mm, &mut vm)?;
        let mut process = Process::new(mm, ident);
        run_loop(spec, &mut process, &mut vm, &mut link, regs, notes, counters)
    })();
    link.finish();
    outcome
}

/// Reads the executable through the broker (the user's rights) and checks it.
fn read_program(spec: &SessionSpec, link: &mut Link) -> Result<Vec<u8>, SessionError> {
    let reply = link.call(request::Kind::ReadFile(ReadFile { path: spec.program.clone(), max_len: MAX_EXECUTABLE }))?;
    let name = &spec.program;
    if reply.ret < 0 {
        let errno = (-reply.ret) as i32;
        let text = std::io::Error::from_raw_os_error(errno);
        return Err(match errno {
            libc::ENOENT | libc::ENOTDIR => SessionError::Failed(Failure::NotFound, format!("{name}: {text}")),
            libc::EFBIG => SessionError::Failed(Failure::Unsupported, format!("{name}: larger than {} MiB", MAX_EXECUTABLE >> 20)),
            _ => SessionError::Failed(Failure::NotExecutable, format!("{name}: {text}")),
        });
    }
    elf::check(&reply.file).map_err(|e| SessionError::Failed(Failure::Unsupported, format!("{name}: {e}")))?;
    Ok(reply.file)
}

/// Lays out the kernel tables, the program and its stack; returns the first registers.
fn build_guest(spec: &SessionSpec, image: &[u8], ident: &Identity, mm: &mut Mm, vm: &mut KvmVm) -> Result<Regs, SessionError> {
    let internal = |what: &str| SessionError::Failed(Failure::Daemon, format!("building the guest: {what}"));
    descriptors::write_tables(mm.kernel.as_mut_slice());
    mm.kernel.write(x86::GPA_TRAMPOLINE, &x86::trampoline_page());
    for gpa in (0..x86::KERNEL_MAPPED).step_by(x86::PAGE_SIZE as usize) {
        mm.map_kernel_page(x86::KBASE + gpa, gpa, PTE_WRITE).map_err(|_| internal("kernel mapping"))?;
    }
    mm.map_kernel_page(x86::TRAMPOLINE_VA, x86::GPA_TRAMPOLINE, PTE_USER).map_err(|_| internal("trampoline"))?;

    let loaded = elf::load(image, &spec.program, mm)
        .map_err(|e| SessionError::Failed(Failure::Unsupported, format!("{}: {e}", spec.program)))?;
    mm.brk_start = mm::page_up(loaded.end).unwrap_or(loaded.end);
    mm.brk = mm.brk_start;

    mm.map_anonymous(mm::STACK_TOP - mm::STACK_SIZE, mm::STACK_SIZE, PROT_READ | PROT_WRITE, VmaKind::Stack)
        .map_err(|_| internal("stack"))?;
    let fsgsbase = kvm::host_fsgsbase();
    let xcr0 = kvm::guest_xcr0();
    let hwcap = std::arch::x86_64::__cpuid(1).edx as u64;
    let mut random = [0u8; 16];
    // SAFETY: getrandom into a local buffer of the given length.
    unsafe { libc::getrandom(random.as_mut_ptr() as *mut libc::c_void, 16, 0) };
    let argv: Vec<Vec<u8>> = spec.argv.iter().map(|s| s.as_bytes().to_vec()).collect();
    let envp: Vec<Vec<u8>> = spec.env.iter().map(|s| s.as_bytes().to_vec()).collect();
    let st = stack::StackSpec {
        argv: &argv,
        envp: &envp,
        execfn: spec.program.as_bytes(),
        random,
        auxv: vec![
            (stack::AT_HWCAP, hwcap),
            (stack::AT_PAGESZ, x86::PAGE_SIZE),
            (stack::AT_CLKTCK, 100),
            (stack::AT_PHDR, loaded.phdr),
            (stack::AT_PHENT, loaded.phent),
            (stack::AT_PHNUM, loaded.phnum),
            (stack::AT_BASE, 0),
            (stack::AT_FLAGS, 0),
            (stack::AT_ENTRY, loaded.entry),
            (stack::AT_UID, ident.uid as u64),
            (stack::AT_EUID, ident.euid as u64),
            (stack::AT_GID, ident.gid as u64),
            (stack::AT_EGID, ident.egid as u64),
            (stack::AT_SECURE, 0),
            (stack::AT_HWCAP2, if fsgsbase { 2 } else { 0 }),
        ],
    };
    let img = stack::build(&st, mm::STACK_TOP);
    if img.bytes.len() as u64 > mm::STACK_SIZE / 4 {
        return Err(SessionError::Failed(Failure::Unsupported, "argument list too long".into()));
    }
    mm.poke(img.start, &img.bytes).map_err(|_| internal("initial stack"))?;

    let regs = Regs { rip: loaded.entry, rsp: img.rsp, rflags: 0x202, ..Default::default() };
    let sys = initial_system_state(mm.cr3(), xcr0.is_some(), fsgsbase);
    vm.setup(&sys, &regs, xcr0.unwrap_or(0))?;
    Ok(regs)
}

fn run_loop(
    spec: &SessionSpec,
    process: &mut Process,
    vm: &mut KvmVm,
    link: &mut Link,
    _first: Regs,
    notes: &Sender<String>,
    counters: &mut Counters,
) -> Result<SessionEnd, SessionError> {
    // A note that starts with a newline tells warpctl to end the program's
    // unfinished line first.
    let flush_notes = |p: &mut Process| {
        for n in p.notes.drain(..) {
            if spec.verbose {
                let nl = if p.stderr_mid_line { "\n" } else { "" };
                p.stderr_mid_line = false;
                let _ = notes.send(format!("{nl}{n}"));
            }
        }
    };
    let action = loop {
        let exit = vm.run();
        counters.exits = vm.exits;
        match exit {
            VmExit::Syscall => {
                let mut regs = vm.regs()?;
                let action = process.syscall(&regs, vm, link)?;
                counters.syscalls = process.syscalls;
                flush_notes(process);
                counters.stderr_mid_line = process.stderr_mid_line;
                match action {
                    Action::Return(r) => {
                        regs.finish_syscall(r);
                        vm.set_regs(&regs)?;
                        vm.return_to_user()?;
                    }
                    other => break other,
                }
            }
            VmExit::Exception => {
                let frame = read_frame(&process.mm);
                let action = exception(process, vm, &frame)?;
                flush_notes(process);
                break action;
            }
            VmExit::Interrupted => {
                if link.is_dead() {
                    return Err(SessionError::Link(LinkError::Gone));
                }
                for s in link.take_signals() {
                    process.signals.raise(s);
                }
                if let Some(a) = process.deliver_signals() {
                    flush_notes(process);
                    break a;
                }
            }
            VmExit::Failed(why) => {
                let rip = vm.regs().map(|r| r.rip).unwrap_or(0);
                return Err(SessionError::Failed(Failure::Daemon, format!("the VM stopped: {why} (rip {rip:#x})")));
            }
        }
    };
    Ok(match action {
        Action::Exit(code) => end(Failure::None, code, 0, String::new()),
        Action::Killed(sig) => end(Failure::None, 0, sig, String::new()),
        Action::Return(_) => unreachable!("the loop only breaks on an ending action"),
    })
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
fn exception(process: &mut Process, vm: &mut KvmVm, f: &ExceptionFrame) -> Result<Action, SessionError> {
    if f.cs & 3 != 3 {
        return Err(SessionError::Failed(
            Failure::Daemon,
            format!("exception {} in warpd's guest kernel code at {:#x}", f.vector, f.rip),
        ));
    }
    let code = process.mm.peek_code(f.rip, 2);
    if (f.vector == 6 || f.vector == 13) && x86::is_int80(&code) {
        process.notes.push(format!(
            "the program used int $0x80 (the 32-bit syscall ABI) at {:#x}, which Warpspeed does not support; it gets SIGSEGV as on a kernel without IA-32 emulation",
            f.rip
        ));
        return Ok(Action::Killed(libc::SIGSEGV));
    }
    let Some(sig) = x86::exception_signal(f.vector) else {
        return Err(SessionError::Failed(Failure::Daemon, format!("unexpected exception vector {} at {:#x}", f.vector, f.rip)));
    };
    let detail = if f.vector == 14 { format!(" at address {:#x}", vm.fault_address()?) } else { String::new() };
    process.notes.push(format!("{} (CPU exception {}){} at rip {:#x}", signals::name(sig), f.vector, detail, f.rip));
    let handler = process.signals.action(sig).handler;
    if handler > signals::SIG_IGN {
        process.notes.push(format!(
            "the program's {} handler cannot run yet (signal handlers are not supported); it takes the default action",
            signals::name(sig)
        ));
    }
    Ok(Action::Killed(sig))
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
            cap("sync regs", c.sync_regs, if c.sync_regs { "registers come back with each exit, no extra ioctl" } else { "two extra ioctls per syscall" }),
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
                    "cpuid and rdrand run natively: the program sees this host's CPU; the trace keeps what warpd saw".into()
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
                if c.kvm_single_step { "KVM single-step available (untested here)" } else { "broken on PVM: stepping uses the trap flag" },
            ),
            cap("dirty page log", c.dirty_log, "checkpoints can track written pages"),
            cap("immediate exit", c.immediate_exit, "signals interrupt a running program promptly"),
        ],
    }
}
