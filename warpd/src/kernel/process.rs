//! One guest process: its address space, signal state and identity, and
//! the syscall dispatcher that answers its calls from the table.
//!
//! ```text
//!  syscall exit -> table lookup -> emulate (here) | marshal -> broker -> result
//!               -> SIGPIPE and other raised signals -> delivery -> resume or end
//! ```

use std::collections::BTreeMap;

use warp_proto::broker::{buffer, request, Buffer, Ranges, Reply, Syscall};

use super::abi;
use super::errno::{Errno, SysResult};
use super::mm::{self, Mm, VmaKind, PROT_EXEC, PROT_READ, PROT_WRITE};
use super::outside::{Arrival, Completed, Outside, OutsideError, RingAllow};
use super::procfs::{self, ProcInfo, ProcPath, SelfFile};
use super::sched::Scheduler;
use super::signals::{self, Delivery, SigAction, Signals, Target, ThreadSignals};
use super::table::{self, Arg, Class, Desc, Len, Returns};
use super::thread::{Deadline, Thread, Wait};
use crate::arch::x86_64::signal::{SigInfo, SI_TKILL};
use crate::arch::x86_64::{Regs, PAGE_SIZE, USER_TOP};
use crate::hv::{CpuState, SyscallRequest, ThreadContext};

/// A pointer that faults in the broker: a bad guest pointer is passed on as
/// this, so the host kernel itself answers EFAULT, in the order Linux checks.
pub const FAULT_ADDR: u64 = 0xffff_ffff_ffff_f000;

/// The arguments of an emulated call as Linux's entry code hands them on:
/// those it declares `int` are the low 32 bits sign-extended, `unsigned
/// int` ones the low 32 bits (getitimer(0x1_0000_0000, ...) is
/// ITIMER_REAL's). The broker's calls need none of this: the host does it.
fn narrow_ints(nr: u64, a: &[u64; 6]) -> [u64; 6] {
    // (call, its int arguments, its unsigned int arguments), as bit masks.
    let (int, uint): (u8, u8) = match nr {
        9 => (0b11100, 0),        // mmap: prot, flags, fd
        13 | 14 => (0b1, 0),      // rt_sigaction's sig, rt_sigprocmask's how
        26 | 28 => (0b100, 0),    // msync: flags; madvise: behavior
        274 => (0b1, 0),          // get_robust_list: pid
        36 | 38 => (0b1, 0),      // getitimer, setitimer: which
        62 => (0b11, 0),          // kill: pid, sig
        200 => (0b11, 0),         // tkill
        234 => (0b111, 0),        // tgkill
        157 | 158 => (0b1, 0),    // prctl, arch_prctl: option
        202 => (0b10, 0b100100),  // futex: op; val, val3
        222 => (0b1, 0),          // timer_create: clock
        223 => (0b11, 0),         // timer_settime: id, flags
        224..=226 => (0b1, 0),    // timer_gettime, _getoverrun, _delete
        282 => (0b1, 0),          // signalfd: fd
        289 => (0b1001, 0),       // signalfd4: fd, flags
        203 | 204 => (0b1, 0b10), // sched_{set,get}affinity: pid; len
        97 | 160 => (0, 0b1),     // getrlimit, setrlimit: resource
        302 => (0b1, 0b10),       // prlimit64: pid; resource
        436 => (0, 0b111),        // close_range
        325 => (0b100, 0),        // mlock2: flags
        151 => (0b1, 0),          // mlockall: flags
        324 => (0b101, 0b10),     // membarrier: cmd, cpu_id; flags
        129 => (0b11, 0),         // rt_sigqueueinfo: pid, sig
        297 => (0b111, 0),        // rt_tgsigqueueinfo
        449 => (0b10000, 0b110),  // futex_waitv: clockid; nr, flags
        _ => return *a,
    };
    let mut out = *a;
    for (i, v) in out.iter_mut().enumerate() {
        if int & (1 << i) != 0 {
            *v = *v as i32 as i64 as u64;
        } else if uint & (1 << i) != 0 {
            *v = *v as u32 as u64;
        }
    }
    out
}

/// Whether Linux (6.x) has this prctl option: 1 to 78, PR_SET_PTRACER,
/// PR_GET_AUXV and PR_SET_VMA. Any other is EINVAL there.
fn linux_prctl_option(option: u64) -> bool {
    matches!(option, 1..=78 | 0x5961_6d61 | 0x4155_5856 | 0x5356_4d41)
}

/// Whether `len` bytes at `ptr` pass Linux's `access_ok`: they end below
/// the top of user space.
fn in_user_space(ptr: u64, len: u64) -> bool {
    ptr.checked_add(len).is_some_and(|end| end <= USER_TOP)
}

/// A descriptor number no process has open (above any RLIMIT_NOFILE the
/// host allows): what the broker gets for one of its own reserved ones.
const NOT_OPEN_FD: u64 = i32::MAX as u64;
/// Linux's limit on one read or write (MAX_RW_COUNT).
const MAX_RW_COUNT: u64 = 0x7fff_f000;
const IOV_MAX: u64 = 1024;
const PATH_MAX: usize = 4096;
const AT_FDCWD: i32 = -100;

/// The broker's identity, which the program sees as its own.
#[derive(Clone, Debug, Default)]
pub struct Identity {
    pub pid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub euid: u32,
    pub egid: u32,
    /// Descriptors at or above this are the broker's own.
    pub reserved_fd_base: i32,
    /// The broker's page that always faults (0: none; traces before 8).
    pub fault_page: u64,
}

/// What the session does after a syscall.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Resume the program with this return value.
    Return(i64),
    /// execve replaced the program: start the new one with these registers.
    Exec(Regs),
    /// Resume with these registers (a signal handler's entry, or the state
    /// rt_sigreturn restored); `ret` is what the syscall itself returned.
    Jump { regs: Regs, ret: i64 },
    /// The program exited with this status.
    Exit(i32),
    /// The program died of this signal.
    Killed(i32),
    /// The current thread waits (a futex) with its syscall in progress;
    /// another thread gets the vCPU.
    Wait,
    /// The current thread ended (exit with other threads left).
    ThreadExit,
    /// The call returned this value and the thread offers the vCPU to
    /// another (sched_yield).
    Yield(i64),
    /// A new process (fork, vfork, clone without CLONE_THREAD): the broker
    /// forked; the parent's call returns the child's pid, and the exit
    /// loop makes the child (`Process::forked`, a copy of its memory).
    Fork(ForkSpec),
}

/// Why the dispatcher could not go on (not the program's fault).
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error(transparent)]
    Outside(#[from] OutsideError),
    #[error("{0}")]
    Cpu(#[from] crate::hv::HvError),
    /// The table says warpd emulates this call, and nothing does.
    #[error("syscall {0} is marked emulated in the table but nothing handles it (a warpd bug)")]
    Unhandled(u64),
}

/// A guest process: its address space, signal dispositions, identity and
/// threads. Per-thread state (mask, thread-directed signals, alternate
/// stack, the syscall in progress) lives in [`Thread`].
#[derive(Clone)]
pub struct Process {
    pub mm: Mm,
    /// Dispositions and process-directed pending signals.
    pub signals: Signals,
    pub ident: Identity,
    /// The thread table, by tid, and the thread on the vCPU.
    threads: BTreeMap<u32, Thread>,
    current: u32,
    /// The tid the next thread gets (the pid plus how many came before).
    next_tid: u32,
    /// Waits begun so far: wakers take waiters in this order.
    waits_begun: u64,
    pub sched: Scheduler,
    /// Resource limits the program set (never applied to the broker).
    rlimits: BTreeMap<u64, (u64, u64)>,
    /// Syscalls answered with ENOSYS: number -> count.
    pub unknown: BTreeMap<u64, u64>,
    /// Lines for the user (sent with -v).
    pub notes: Vec<String>,
    pub syscalls: u64,
    /// The program's last write to fd 2 did not end a line: warpctl's own
    /// lines must start on a new one.
    pub stderr_mid_line: bool,
    /// What `/proc/self` describes.
    pub proc_info: ProcInfo,
    /// Replaying a recording from before format 3: a signal pending when a
    /// blocking call starts made warpd answer EINTR without asking the broker.
    pub legacy_eintr: bool,
    /// The trace format this run follows (a replay of an older recording
    /// keeps its rules). From 4: calls that would wait are deferred while
    /// other threads run, waits time out at interrupt points, CPU-time
    /// itimers are warpd's.
    pub format: u32,
    /// Deferred calls begun so far (each one's number).
    deferred_begun: u64,
    /// Completions delivered so far (the idle wait tells the broker).
    completions_taken: u64,
    /// Threads whose deferred call is to be cancelled (a signal came for them).
    cancels: Vec<u32>,
    /// POSIX timers, by id.
    timers: BTreeMap<i32, PosixTimer>,
    /// The note about timers on CPU-time clocks was given.
    cpu_clock_noted: bool,
    /// The id the next timer gets (if free).
    next_timer_id: i32,
    /// signalfd descriptors, by number.
    signalfds: BTreeMap<i32, SignalFd>,
    /// ITIMER_VIRTUAL and ITIMER_PROF, on the vCPU's CPU time.
    itimers: [Option<CpuTimer>; 2],
    /// `/proc/self/mem` descriptors, and open `/proc/self/fd` (`fdinfo`)
    /// directories, by number.
    memfiles: BTreeMap<i32, MemFile>,
    fd_dirs: std::collections::BTreeSet<i32>,
    /// The membarrier registrations made (MEMBARRIER_CMD_REGISTER_*).
    membarrier_registered: u64,
    /// prctl options met that are not emulated (each noted once).
    prctl_noted: std::collections::BTreeSet<u64>,
    /// PR_SET_DUMPABLE's flag (1 from the start and after execve).
    dumpable: bool,
    /// Lines for the user about what Warpspeed does not do yet, said at
    /// the end even without -v, each once a session (the keys said so far).
    pub limits: Vec<String>,
    limits_said: std::collections::BTreeSet<String>,
}

/// The futex word of a PI or robust lock: the owner's tid and two flags.
const FUTEX_WAITERS: u32 = 0x8000_0000;
const FUTEX_OWNER_DIED: u32 = 0x4000_0000;
const FUTEX_TID_MASK: u32 = 0x3fff_ffff;

/// What `proxy` returns for a call the broker deferred: the thread waits
/// for its completion (no syscall returns this: results are above -4096).
const PENDING: i64 = i64::MIN;

fn len_of(len: Len, a: &[u64; 6]) -> u64 {
    match len {
        Len::Of(i) => a[i],
        Len::Fixed(n) => n,
        Len::ArgTimes(i, n) => a[i].saturating_mul(n),
        Len::FdSet(i) => ((a[i] as i32).clamp(0, 1 << 20) as u64).div_ceil(64) * 8,
        Len::At(_) => 0, // read from guest memory by the caller
    }
}

/// A buffer of bytes warpd copies in (a path, a structure of its own).
fn bytes_in(arg: usize, bytes: Vec<u8>) -> Buffer {
    Buffer { arg: arg as u32, data: Some(buffer::Data::Bytes(bytes)), inout: false, out: false, written_by_ret: false }
}

/// A buffer of guest memory for the broker. `out`: the call writes it;
/// `inout`: it also reads it; `by_ret`: it writes only `ret` bytes.
fn memory(ranges: Vec<(u64, u64)>, arg: usize, out: bool, inout: bool, by_ret: bool) -> Buffer {
    let (offset, len) = ranges.into_iter().unzip();
    Buffer {
        arg: arg as u32,
        data: Some(buffer::Data::Memory(Ranges { offset, len })),
        inout,
        out,
        written_by_ret: by_ret,
    }
}

#[path = "fork.rs"]
mod fork;
pub use fork::ForkSpec;
#[path = "procmem.rs"]
mod procmem;
use procmem::MemFile;
#[path = "signalfd.rs"]
mod signalfd;
use signalfd::SignalFd;
#[path = "timers.rs"]
mod timers;
use timers::{CpuTimer, PosixTimer, TIMER_THREAD};

#[cfg(test)]
#[path = "process_tests.rs"]
mod tests;

/// On whose behalf a broker call is made, which decides how a signal ends it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Caller {
    /// The program's own call: a signal the current thread may take ends a
    /// blocking one.
    Program,
    /// The program's own call as `Program`, which the broker may defer
    /// (perform while other threads run) if it would wait.
    Thread,
    /// warpd's, while it emulates a call: never interrupted.
    Warpd,
    /// Waiting while no thread can run: a signal that wakes any thread ends it.
    Idle,
    /// warpd's read of a timer's timerfd (`timers`), deferred as number `.0`.
    Timer(u64),
}

/// What `/proc/self` handling decided for a path call.
enum SelfPath {
    /// Answered here, with this result.
    Answered(i64),
    /// Send path argument `.0` as `.1` instead.
    Instead(usize, String),
    /// Not warpd's: the broker performs the call as it is.
    Pass,
    /// Opening `/proc/self/fd` or `fdinfo`: performed as it is, and the
    /// descriptor remembered (its listings leave the broker's out).
    FdDir,
}

/// A raw broker result as a SysResult.
fn result_of(r: i64) -> SysResult {
    if r < 0 {
        Err(Errno(-r as i32))
    } else {
        Ok(r as u64)
    }
}

fn ret_of(r: SysResult) -> i64 {
    match r {
        Ok(v) => v as i64,
        Err(e) => e.ret(),
    }
}

impl Process {
    pub fn new(mm: Mm, ident: Identity) -> Self {
        Process {
            mm,
            signals: Signals::default(),
            threads: BTreeMap::from([(ident.pid, Thread::new(ident.pid))]),
            current: ident.pid,
            next_tid: ident.pid + 1,
            waits_begun: 0,
            sched: Scheduler::default(),
            ident,
            rlimits: BTreeMap::new(),
            unknown: BTreeMap::new(),
            notes: Vec::new(),
            syscalls: 0,
            stderr_mid_line: false,
            legacy_eintr: false,
            proc_info: ProcInfo::default(),
            format: crate::trace::FORMAT_VERSION,
            deferred_begun: 0,
            completions_taken: 0,
            cancels: Vec::new(),
            timers: BTreeMap::new(),
            cpu_clock_noted: false,
            next_timer_id: 0,
            signalfds: BTreeMap::new(),
            itimers: [None; 2],
            memfiles: BTreeMap::new(),
            fd_dirs: Default::default(),
            membarrier_registered: 0,
            prctl_noted: Default::default(),
            dumpable: true,
            limits: Vec::new(),
            limits_said: Default::default(),
        }
    }

    /// The thread on the vCPU.
    pub fn thread(&self) -> &Thread {
        self.threads.get(&self.current).expect("the current thread is in the table")
    }

    pub fn thread_mut(&mut self) -> &mut Thread {
        self.threads.get_mut(&self.current).expect("the current thread is in the table")
    }

    /// The dispositions and the current thread's signal state, together.
    fn signal_state(&mut self) -> (&mut Signals, &mut ThreadSignals) {
        let t = self.threads.get_mut(&self.current).expect("the current thread is in the table");
        (&mut self.signals, &mut t.signals)
    }

    /// Whether a signal the current thread does not block is pending.
    fn signal_deliverable(&self) -> bool {
        self.signals.deliverable(&self.thread().signals)
    }

    /// Says once a session, even without -v, that the program met
    /// something Warpspeed does not do yet (`key` tells repeats apart).
    pub fn limit(&mut self, key: &str, text: String) {
        if self.limits_said.insert(key.to_string()) {
            self.limits.push(text);
        }
    }

    /// An unsupported syscall's limit line, unless the call is one that C
    /// libraries probe for and do without (rseq: glibc registers with it
    /// when the kernel has it).
    fn unsupported(&mut self, nr: u64, name: &str) {
        const QUIET: [u64; 1] = [334];
        if !QUIET.contains(&nr) {
            self.limit(
                &format!("syscall {nr}"),
                format!("the program called {name}, which Warpspeed does not support yet: it got ENOSYS"),
            );
        }
    }

    fn note(&mut self, s: String) {
        if self.notes.len() < 1000 {
            self.notes.push(s);
        }
    }

    /// What the broker gets in place of a pointer of the program's to
    /// `len` bytes that fault: its own page that faults when the range is
    /// in user space (the host then checks all it checks before touching
    /// the buffer, as Linux does for the program), else an address no
    /// user range contains (the host's `access_ok` fails at once, as
    /// Linux's would).
    fn fault_for(&self, ptr: u64, len: u64) -> u64 {
        if self.format >= 8 && self.ident.fault_page != 0 && in_user_space(ptr, len) {
            self.ident.fault_page
        } else {
            FAULT_ADDR
        }
    }

    fn reserved(&self, fd: u64) -> bool {
        let fd = fd as i32;
        fd >= self.ident.reserved_fd_base
    }

    /// Handles the syscall `req` (made with registers `regs`) and says what
    /// happens next.
    pub fn syscall(
        &mut self,
        req: &SyscallRequest,
        regs: &Regs,
        cpu: &mut dyn CpuState,
        link: &mut dyn Outside,
    ) -> Result<Action, ProcessError> {
        self.syscalls += 1;
        self.poll_outside(link)?;
        self.thread_mut().syscall = Some(*req);
        let action = self.dispatch(req, regs, cpu, link);
        // A waiting thread's call stays in progress; an exited one is gone.
        if !matches!(action, Ok(Action::Wait | Action::ThreadExit)) {
            self.thread_mut().syscall = None;
        }
        action
    }

    fn dispatch(
        &mut self,
        req: &SyscallRequest,
        regs: &Regs,
        cpu: &mut dyn CpuState,
        link: &mut dyn Outside,
    ) -> Result<Action, ProcessError> {
        let nr = table::number(req.number);
        let a = req.args;
        let fd = a[0] as i32;
        if self.memfiles.contains_key(&fd) {
            match nr {
                0 => return Ok(Action::Return(self.mem_io(fd, a[1], a[2], None, false))),
                1 => return Ok(Action::Return(self.mem_io(fd, a[1], a[2], None, true))),
                17 => return Ok(Action::Return(self.mem_io(fd, a[1], a[2], Some(a[3]), false))),
                18 => return Ok(Action::Return(self.mem_io(fd, a[1], a[2], Some(a[3]), true))),
                8 => return Ok(Action::Return(self.mem_lseek(fd, a[1], a[2]))),
                _ => {}
            }
        }
        if !self.memfiles.is_empty() || !self.fd_dirs.is_empty() {
            match nr {
                3 => {
                    self.memfiles.remove(&fd);
                    self.fd_dirs.remove(&fd);
                }
                33 | 292 if a[0] != a[1] => {
                    self.memfiles.remove(&(a[1] as i32));
                    self.fd_dirs.remove(&(a[1] as i32));
                }
                436 => {
                    self.memfiles.retain(|&f, _| !(a[0]..=a[1]).contains(&(f as u64)));
                    self.fd_dirs.retain(|&f| !(a[0]..=a[1]).contains(&(f as u64)));
                }
                _ => {}
            }
        }
        if !self.signalfds.is_empty() {
            match nr {
                0 if self.signalfds.contains_key(&(a[0] as i32)) => {
                    return self.signalfd_read(a[0] as i32, a[1], a[2].min(MAX_RW_COUNT), link);
                }
                // Closing one, or putting another descriptor in its place.
                3 => self.forget_signalfd(a[0] as i32),
                33 | 292 if a[0] != a[1] => self.forget_signalfd(a[1] as i32),
                436 => self.signalfds.retain(|&fd, _| !(a[0]..=a[1]).contains(&(fd as u64))),
                _ => {}
            }
        }
        // A call this warpd answers but the recording's did not: ENOSYS, as then.
        let ret = match table::lookup(nr).filter(|d| self.format >= d.since) {
            None => {
                *self.unknown.entry(nr).or_default() += 1;
                let name = super::names::name(nr).map(str::to_string).unwrap_or_else(|| format!("syscall {nr}"));
                self.note(format!("unknown syscall {name} ({nr}) returned ENOSYS"));
                self.unsupported(nr, &name);
                Errno::ENOSYS.ret()
            }
            Some(desc) => match desc.class {
                Class::Unsupported(why) => {
                    *self.unknown.entry(nr).or_default() += 1;
                    self.note(format!("{} ({nr}) returned ENOSYS: {why}", desc.name));
                    self.unsupported(nr, desc.name);
                    Errno::ENOSYS.ret()
                }
                Class::Emulated => match self.emulate(nr, &a, regs, cpu, link)? {
                    Action::Return(r) => r,
                    other => return Ok(other),
                },
                Class::Proxied | Class::Blocking => match self.proxy(desc, a, link)? {
                    PENDING => return Ok(Action::Wait),
                    r if matches!(nr, 78 | 217) && self.fd_dirs.contains(&fd) => self.filter_fd_dir(a[1], r, nr == 217),
                    r if r >= 0 && self.owns_fd(fd) => {
                        const O_CLOEXEC: u64 = 0o2000000;
                        const F_DUPFD: u64 = 0;
                        const F_DUPFD_CLOEXEC: u64 = 1030;
                        match nr {
                            32 => self.duplicated(fd, r as i32, false),
                            33 => self.duplicated(fd, a[1] as i32, false),
                            292 => self.duplicated(fd, a[1] as i32, a[2] & O_CLOEXEC != 0),
                            72 if matches!(a[1], F_DUPFD | F_DUPFD_CLOEXEC) => {
                                self.duplicated(fd, r as i32, a[1] == F_DUPFD_CLOEXEC)
                            }
                            _ => {}
                        }
                        r
                    }
                    r => r,
                },
            },
        };
        if ret > 0 && a[0] == 2 && matches!(nr, 1 | 20) {
            self.track_stderr(nr, &a, ret as u64);
        }
        self.sigpipe_if_broken(nr, ret);
        Ok(Action::Return(ret))
    }

    /// The one door for signals into the process: from the broker (at a
    /// boundary, in a reply, while the program computed), from the program
    /// itself (kill, tgkill, raise) and from the kernel (SIGPIPE).
    pub fn raise(&mut self, sig: i32) {
        self.raise_info(sig, None);
    }

    /// A signal that reached the broker, with the siginfo it came there
    /// with (the sender's pid and uid, or the kernel's code).
    pub fn raise_outside(&mut self, a: &Arrival) {
        self.raise_info(a.signo, SigInfo::from_host(a.signo, &a.info));
    }

    /// As `raise`, with the siginfo it comes with (None: a sender outside,
    /// SI_USER).
    fn raise_info(&mut self, sig: i32, info: Option<SigInfo>) {
        // A thread waiting for it in rt_sigtimedwait takes it first.
        let waiter = self
            .threads
            .values()
            .filter(|t| matches!(&t.wait, Some(Wait::Signal { set, .. }) if set & signals::bit(sig) != 0))
            .min_by_key(|t| t.wait_order)
            .map(|t| t.tid);
        if let Some(tid) = waiter {
            if (1..=64).contains(&sig) {
                self.hand_waited(tid, sig, info);
                return;
            }
        }
        let (s, t) = self.signal_state();
        s.raise_info(sig, Target::Process, t, info);
        // A thread that blocks it leaves it to one that waits and does not:
        // that thread's wait ends, as on Linux.
        if self.thread().signals.blocked & signals::bit(sig) != 0 {
            let taker = self
                .threads
                .values()
                .find(|t| !t.runnable() && t.signals.blocked & signals::bit(sig) == 0)
                .map(|t| t.tid);
            if let Some(tid) = taker {
                self.interrupt_wait(tid);
            }
        }
    }

    /// Gives `sig` to thread `tid`, which waits for it in rt_sigtimedwait:
    /// its siginfo is written and the call returns the number.
    fn hand_waited(&mut self, tid: u32, sig: i32, with: Option<SigInfo>) {
        let Some(Wait::Signal { info, signalfd, .. }) = self.threads.get(&tid).and_then(|t| t.wait.clone()) else {
            return;
        };
        let with = with.unwrap_or_else(|| self.outside_info(sig));
        let ret = if signalfd {
            match self.mm.write_user(info, &with.to_signalfd()) {
                Ok(()) => 128,
                Err(e) => e.ret(),
            }
        } else {
            match self.write_siginfo(info, &with) {
                Ok(()) => sig as i64,
                Err(e) => e.ret(),
            }
        };
        self.wake(tid, ret);
    }

    /// The siginfo of a signal from outside (the terminal, another
    /// process, the host kernel through the broker): SI_USER with the
    /// user's uid, as the broker passes on only the number.
    fn outside_info(&self, sig: i32) -> SigInfo {
        SigInfo::sent(sig, 0, 0, self.ident.uid)
    }

    /// The siginfo of a signal the program sent itself (kill: SI_USER,
    /// tgkill: SI_TKILL), from its own pid.
    fn own_info(&self, sig: i32, code: i32) -> SigInfo {
        SigInfo::sent(sig, code, self.ident.pid, self.ident.uid)
    }

    /// Writes `info` as a siginfo_t at `at` (0: nowhere).
    fn write_siginfo(&self, at: u64, info: &SigInfo) -> Result<(), Errno> {
        if at == 0 {
            return Ok(());
        }
        self.mm.write_user(at, &info.to_bytes())
    }

    /// rt_sigpending: the signals pending for the thread or the process
    /// that its mask holds back (the others would have been delivered).
    fn sigpending(&self, set: u64, size: u64) -> SysResult {
        if size > 8 {
            return Err(Errno::EINVAL);
        }
        let t = &self.thread().signals;
        let pending = (t.pending | self.signals.pending) & t.blocked;
        self.mm.write_user(set, &pending.to_le_bytes()[..size as usize])?;
        Ok(0)
    }

    /// rt_sigsuspend(mask, sigsetsize): waits with `mask` for a signal it
    /// may take; returns EINTR once one arrives, its handler having run
    /// with the mask from before the call saved in its frame.
    fn sigsuspend(&mut self, mask: u64, size: u64) -> Result<Action, ProcessError> {
        if size != 8 {
            return Ok(Action::Return(Errno::EINVAL.ret()));
        }
        let new = match self.mm.read_u64(mask) {
            Ok(m) => m,
            Err(e) => return Ok(Action::Return(e.ret())),
        };
        let old = self.thread().signals.blocked;
        self.thread_mut().signals.set_blocked(new);
        self.thread_mut().suspended_mask = Some(old);
        if self.signal_deliverable() {
            return Ok(Action::Return(Errno::EINTR.ret()));
        }
        self.begin_wait(Wait::Suspend);
        Ok(Action::Wait)
    }

    /// rt_sigtimedwait(set, info, timeout, sigsetsize): takes a pending
    /// signal of `set` (the thread's own first, the lowest number first), or
    /// waits for one until the timeout (EAGAIN; a zero timeout polls). A
    /// signal outside the set that the thread may take ends it with EINTR.
    fn sigtimedwait(&mut self, a: &[u64; 6], link: &mut dyn Outside) -> Result<Action, ProcessError> {
        const CLOCK_MONOTONIC: u64 = 1;
        let ret = |r: SysResult| Ok(Action::Return(ret_of(r)));
        let (set_at, info, timeout, size) = (a[0], a[1], a[2], a[3]);
        if size != 8 {
            return ret(Err(Errno::EINVAL));
        }
        let set = match self.mm.read_u64(set_at) {
            Ok(s) => s & !(signals::bit(abi::SIGKILL) | signals::bit(abi::SIGSTOP)),
            Err(e) => return ret(Err(e)),
        };
        let deadline = match timeout {
            0 => None,
            at => match self.read_timespec(at) {
                Ok(t) => Some(t),
                Err(e) => return ret(Err(e)),
            },
        };
        let t = &self.thread().signals;
        let own = t.pending & set;
        let shared = self.signals.pending & set;
        if own | shared != 0 {
            let ready = if own != 0 { own } else { shared };
            let sig = ready.trailing_zeros() as i32 + 1;
            let (s, t) = self.signal_state();
            let with = s.take(sig, t).unwrap_or_else(|| self.outside_info(sig));
            return ret(self.write_siginfo(info, &with).map(|_| sig as u64));
        }
        if deadline == Some((0, 0)) {
            return ret(Err(Errno::EAGAIN));
        }
        if self.signal_deliverable() {
            return ret(Err(Errno::EINTR));
        }
        let deadline = match deadline {
            None => None,
            Some((secs, nanos)) => match self.deadline_after(link, CLOCK_MONOTONIC, secs, nanos)? {
                Some(d) => Some(d),
                None => return ret(Err(Errno::EINVAL)),
            },
        };
        self.begin_wait(Wait::Signal { set, info, deadline, signalfd: false });
        Ok(Action::Wait)
    }

    /// A signal for the current thread alone (SIGPIPE).
    pub fn raise_thread(&mut self, sig: i32) {
        self.raise_to(self.current, sig);
    }

    /// A signal for thread `tid` alone (SIGPIPE: the kernel's, SI_USER).
    fn raise_to(&mut self, tid: u32, sig: i32) {
        let info = self.own_info(sig, 0);
        self.raise_to_info(tid, sig, info);
    }

    /// A signal for thread `tid` alone, with its siginfo (tgkill, a timer).
    fn raise_to_info(&mut self, tid: u32, sig: i32, info: SigInfo) {
        let Some(t) = self.threads.get_mut(&tid) else { return };
        if matches!(&t.wait, Some(Wait::Signal { set, .. }) if set & signals::bit(sig) != 0) && (1..=64).contains(&sig)
        {
            self.hand_waited(tid, sig, Some(info));
            return;
        }
        self.signals.raise_info(sig, Target::Thread, &mut t.signals, Some(info));
        // A waiting thread that may take it stops waiting.
        let wakes = !t.runnable() && t.signals.pending & !t.signals.blocked & signals::bit(sig) != 0;
        if wakes {
            self.interrupt_wait(tid);
        }
    }

    /// Remembers whether the last byte the program wrote to fd 2 ended a line.
    fn track_stderr(&mut self, nr: u64, a: &[u64; 6], written: u64) {
        let last = if nr == 1 {
            Some(a[1] + written - 1)
        } else {
            // writev: find the iovec holding byte `written - 1`.
            let mut left = written;
            let mut at = None;
            for i in 0..a[2].min(IOV_MAX) {
                let mut iov = [0u8; 16];
                if self.mm.read_user(a[1] + i * 16, &mut iov).is_err() {
                    break;
                }
                let base = u64::from_le_bytes(iov[..8].try_into().expect("8"));
                let len = u64::from_le_bytes(iov[8..].try_into().expect("8"));
                if left <= len {
                    at = Some(base + left - 1);
                    break;
                }
                left -= len;
            }
            at
        };
        let mut b = [0u8; 1];
        if let Some(p) = last {
            if self.mm.read_user(p, &mut b).is_ok() {
                self.stderr_mid_line = b[0] != b'\n';
            }
        }
    }

    /// Delivers what is deliverable: the one place that decides. `at` is the
    /// syscall boundary the program stands at (registers it resumes with,
    /// the syscall's number register if it was interrupted, its result);
    /// handlers run only there. Some when the program dies or enters a
    /// handler.
    pub fn deliver_signals(
        &mut self,
        at: Option<(&Regs, Option<u64>, i64)>,
        cpu: &mut dyn CpuState,
    ) -> Result<Option<Action>, ProcessError> {
        let handlers = at.is_some();
        let (s, t) = self.signal_state();
        match s.deliver(t, handlers) {
            None => {
                // After rt_sigsuspend with no handler to run, the mask from
                // before the call comes back at once.
                if handlers {
                    if let Some(old) = self.thread_mut().suspended_mask.take() {
                        self.thread_mut().signals.set_blocked(old);
                    }
                }
                Ok(None)
            }
            Some(Delivery::Kill(sig)) => Ok(Some(Action::Killed(sig))),
            Some(Delivery::Handle(sig, act, info)) => {
                let (resume, interrupted, ret) = at.expect("handlers run only at a syscall boundary");
                let mut resume = *resume;
                // An interrupted call starts again after the handler when
                // SA_RESTART says so and the call allows it, as on Linux.
                if let Some(number) = interrupted {
                    if act.flags & signals::SA_RESTART != 0
                        && table::lookup(table::number(number)).is_some_and(|d| d.restartable)
                    {
                        resume.rax = number;
                        resume.rip = resume.rip.wrapping_sub(2);
                    }
                }
                let info = info.unwrap_or_else(|| self.outside_info(sig));
                Ok(Some(self.enter_handler(sig, act, info, &resume, ret, cpu)?))
            }
        }
    }

    /// Builds the signal frame and returns the handler's entry.
    fn enter_handler(
        &mut self,
        sig: i32,
        act: SigAction,
        info: SigInfo,
        resume: &Regs,
        ret: i64,
        cpu: &mut dyn CpuState,
    ) -> Result<Action, ProcessError> {
        // After rt_sigsuspend the frame saves the mask from before the call.
        let old_mask = match self.thread_mut().suspended_mask.take() {
            Some(m) => m,
            None => self.thread().signals.blocked,
        };
        let xcr0 = crate::arch::x86_64::cpu::frame_xcr0();
        let mut xsave = cpu.xsave()?;
        xsave.truncate(crate::arch::x86_64::signal::xsave_len(xcr0));
        let alt = self.thread().signals.altstack;
        let ss_sp = u64::from_le_bytes(alt[..8].try_into().expect("8"));
        let ss_flags = i32::from_le_bytes(alt[8..12].try_into().expect("4"));
        let ss_size = u64::from_le_bytes(alt[16..24].try_into().expect("8"));
        let on_alt_now = ss_flags & 2 == 0 && resume.rsp.wrapping_sub(ss_sp) < ss_size;
        let use_alt = act.flags & signals::SA_ONSTACK != 0 && ss_flags & 2 == 0 && !on_alt_now;
        let frame = crate::arch::x86_64::signal::build(&crate::arch::x86_64::signal::FrameSpec {
            resume,
            handler: act.handler,
            restorer: if act.flags & signals::SA_RESTORER != 0 { act.restorer } else { 0 },
            info,
            old_mask,
            xsave: &xsave,
            xcr0,
            altstack: (ss_sp, if on_alt_now { 1 } else { ss_flags }, ss_size),
            on_altstack: use_alt,
        });
        if self.mm.write_user(frame.addr, &frame.bytes).is_err() {
            // No room for the frame: Linux kills the program with SIGSEGV.
            self.note(format!("no room on the stack for a {} frame: SIGSEGV", signals::name(sig)));
            return Ok(Action::Killed(abi::SIGSEGV));
        }
        let mask = self.signals.handler_mask(&self.thread().signals, sig, &act);
        self.thread_mut().signals.blocked = mask;
        if act.flags & signals::SA_RESETHAND != 0 {
            self.signals.actions[(sig - 1) as usize] = SigAction::default();
        }
        Ok(Action::Jump { regs: frame.regs, ret })
    }

    /// A CPU fault the program handles: the handler's entry, or None when
    /// the signal takes its default action (no handler; and, as Linux does
    /// for faults, a blocked or ignored fault signal is not left pending).
    pub fn fault_handler(
        &mut self,
        sig: i32,
        info: SigInfo,
        resume: &Regs,
        cpu: &mut dyn CpuState,
    ) -> Result<Option<Action>, ProcessError> {
        let act = self.signals.action(sig);
        if act.handler <= signals::SIG_IGN || self.thread().signals.blocked & signals::bit(sig) != 0 {
            return Ok(None);
        }
        self.enter_handler(sig, act, info, resume, 0, cpu).map(Some)
    }

    /// rt_sigreturn: the registers, mask and FPU state the frame holds.
    fn rt_sigreturn(&mut self, regs: &Regs, cpu: &mut dyn CpuState) -> Result<Action, ProcessError> {
        use crate::arch::x86_64::signal;
        // The handler's `ret` popped the restorer's address: the ucontext
        // is where rsp points now (any rsp: the program chooses it).
        let mut uc = vec![0u8; signal::UCONTEXT_LEN];
        if self.mm.read_user(regs.rsp, &mut uc).is_err() {
            self.note("rt_sigreturn found no signal frame on the stack: SIGSEGV".into());
            return Ok(Action::Killed(abi::SIGSEGV));
        }
        let r = signal::restore(&uc, regs.r11);
        // Returning to a non-canonical address faults in the return itself;
        // some hypervisors refuse to enter the guest that way, so warpd
        // gives the SIGSEGV Linux gives without trying.
        let canonical = |a: u64| !(0x8000_0000_0000..0xffff_8000_0000_0000).contains(&a);
        if !canonical(r.regs.rip) || !canonical(r.regs.rsp) {
            self.note(format!("rt_sigreturn to a non-canonical address {:#x}: SIGSEGV", r.regs.rip));
            return Ok(Action::Killed(abi::SIGSEGV));
        }
        if r.fpstate != 0 {
            let xcr0 = crate::arch::x86_64::cpu::frame_xcr0();
            let mut area = vec![0u8; signal::xsave_len(xcr0)];
            if self.mm.read_user(r.fpstate, &mut area).is_err() {
                return Ok(Action::Killed(abi::SIGSEGV));
            }
            if cpu.set_xsave(&area).is_err() {
                // A frame whose FPU state the CPU refuses: as Linux, SIGSEGV.
                return Ok(Action::Killed(abi::SIGSEGV));
            }
        }
        self.thread_mut().signals.set_blocked(r.mask);
        // rt_sigreturn "returns" the restored rax, which says nothing about the
        // call itself (and differs where replay ran the handler elsewhere): 0.
        let ret = 0;
        // Signals unblocked by the restored mask are due now: the caller
        // delivers them where the program resumes.
        Ok(Action::Jump { regs: r.regs, ret })
    }

    // ---- proxied calls -------------------------------------------------

    /// Marshals a call for the broker from its table entry.
    fn proxy(&mut self, desc: &Desc, a: [u64; 6], link: &mut dyn Outside) -> Result<i64, ProcessError> {
        // Registers past the call's arguments are no input of it: the broker
        // gets zeros there (so the trace does not record leftovers).
        let mut a = a;
        for v in a.iter_mut().skip(desc.args.len()) {
            *v = 0;
        }
        let mut args = a;
        let mut kinds: Vec<Arg> = desc.args.to_vec();
        match desc.nr {
            // ioctl: the request decides the argument.
            // A request warpd does not know: EBADF first for a descriptor
            // that is not open, as Linux looks it up before the request.
            16 => match table::ioctl_arg(a[1]).filter(|_| self.format >= 8 || a[1] != table::FIGETBSZ) {
                Some(k) => kinds[2] = k,
                None if !self.fd_open(a[0], link)? => return Ok(Errno::EBADF.ret()),
                None => return Ok(Errno::ENOTTY.ret()),
            },
            72 => match table::fcntl_arg(a[1]) {
                Some(k) => {
                    kinds[2] = k;
                    let dup = matches!(a[1], 0 | 1030);
                    if dup && (a[2] as i32) >= self.ident.reserved_fd_base {
                        return Ok(Errno::EINVAL.ret());
                    }
                }
                None if !self.fd_open(a[0], link)? => return Ok(Errno::EBADF.ret()),
                None => return Ok(Errno::EINVAL.ret()),
            },
            0 | 1 | 17 | 18 => args[2] = a[2].min(MAX_RW_COUNT),
            _ => {}
        }
        // ppoll, pselect6, epoll_pwait: the mask to wait with is the
        // thread's for the call (warpd's signals), not the broker's.
        let wait_mask = match self.wait_mask(desc.nr, &a) {
            Ok(Some((mask, arg))) => {
                a[arg] = 0;
                args[arg] = 0;
                Some(mask)
            }
            Ok(None) => None,
            Err(e) => return Ok(e.ret()),
        };
        // pselect6's {sigmask, size} holds a pointer of the program's: it
        // never goes to the broker (a mask in it is applied here).
        if desc.nr == 270 {
            a[5] = 0;
            args[5] = 0;
        }
        let mut fd_dir = false;
        let mut path_override = match self.proc_self(desc.nr, &a, link)? {
            SelfPath::Answered(r) => return Ok(r),
            SelfPath::Instead(i, p) => Some((i, p)),
            SelfPath::Pass => None,
            SelfPath::FdDir => {
                fd_dir = true;
                None
            }
        };
        let mut buffers = Vec::new();
        for (i, kind) in kinds.iter().enumerate() {
            match *kind {
                Arg::Int => {}
                // One of the broker's own descriptors is, to the program,
                // one that is not open: the host answers for one that is
                // not, in Linux's order (flags and pointers may come first).
                Arg::Fd | Arg::DirFd if self.reserved(a[i]) && (*kind == Arg::Fd || (a[i] as i32) != AT_FDCWD) => {
                    if self.format < 8 {
                        return Ok(Errno::EBADF.ret());
                    }
                    args[i] = NOT_OPEN_FD;
                }
                Arg::Fd | Arg::DirFd => {}
                Arg::Path => {
                    if let Some((_, p)) = path_override.take_if(|(j, _)| *j == i) {
                        let mut s = p.into_bytes();
                        s.push(0);
                        buffers.push(bytes_in(i, s));
                        continue;
                    }
                    if a[i] == 0 {
                        continue;
                    }
                    match self.mm.read_cstring(a[i], PATH_MAX - 1) {
                        Ok(mut s) => {
                            s.push(0);
                            buffers.push(bytes_in(i, s));
                        }
                        Err(Errno::ENAMETOOLONG) => return Ok(Errno::ENAMETOOLONG.ret()),
                        Err(_) => args[i] = FAULT_ADDR,
                    }
                }
                Arg::In(len) | Arg::Out(len) | Arg::InOut(len) => {
                    // The calls that check the whole buffer's place first
                    // (Linux's access_ok), with the length they check:
                    // read, write, pread64 and pwrite64 as given, sendto and
                    // recvfrom up to MAX_RW_COUNT, getrandom up to INT_MAX.
                    let checked = match (len, desc.nr) {
                        (Len::Of(j), 0 | 1 | 17 | 18) => Some(a[j]),
                        (Len::Of(j), 44 | 45) => Some(a[j].min(MAX_RW_COUNT)),
                        (Len::Of(j), 318) => Some(a[j].min(i32::MAX as u64)),
                        _ => None,
                    };
                    if let Some(whole) = checked.filter(|_| self.format >= 8) {
                        if !in_user_space(a[i], whole) {
                            args[i] = FAULT_ADDR;
                            continue;
                        }
                    }
                    if a[i] == 0 {
                        continue;
                    }
                    let n = match len {
                        // Linux reads the length first and fails with EFAULT
                        // or EINVAL itself: the broker's call does that.
                        Len::At(j) => match self.mm.read_u32(a[j]) {
                            Ok(v) if (v as i32) >= 0 => v as u64,
                            _ => 0,
                        },
                        _ => len_of(len, &args),
                    };
                    // readlink refuses a length that is not positive as an
                    // int before it looks at anything.
                    let not_positive = matches!(len, Len::Of(j) if matches!(desc.nr, 89 | 267) && (a[j] as i32) <= 0);
                    if self.format >= 8 && not_positive {
                        args[i] = self.fault_for(a[i], 0);
                        continue;
                    }
                    let write = !matches!(kind, Arg::In(_));
                    // Only a call that returns how much of this buffer it
                    // moved stops short at a fault (from format 8; the
                    // others, connect's address say, fail whole).
                    let counted = self.format < 8
                        || match kind {
                            Arg::In(_) => desc.sends_bytes,
                            _ => desc.returns_count(),
                        };
                    match self.mm.user_ranges(a[i], n, write) {
                        Ok(r) if n == 0 => {
                            let _ = r;
                            buffers.push(bytes_in(i, Vec::new()));
                        }
                        Ok(r) => buffers.push(memory(
                            r,
                            i,
                            write,
                            matches!(kind, Arg::InOut(_)),
                            matches!(kind, Arg::Out(Len::Of(_))) && desc.returns_count(),
                        )),
                        Err(_) => {
                            // A buffer measured by an argument (read, write,
                            // getrandom...) that runs into unmapped memory:
                            // Linux copies up to the first fault and returns
                            // that much (EFAULT when it is nothing).
                            let prefix = match kind {
                                Arg::Out(Len::Of(_)) | Arg::In(Len::Of(_)) if counted => {
                                    self.mm.accessible(a[i], n, write)
                                }
                                _ => 0,
                            };
                            match (len, self.mm.user_ranges(a[i], prefix, write)) {
                                (Len::Of(j), Ok(r)) if prefix > 0 => {
                                    args[j] = prefix;
                                    buffers.push(memory(r, i, write, false, write));
                                }
                                _ => args[i] = self.fault_for(a[i], checked.unwrap_or(n)),
                            }
                        }
                    }
                }
                Arg::MsgOut | Arg::MsgIn | Arg::MmsgOut | Arg::MmsgIn => match self.msghdr_buffers(
                    a[i],
                    i,
                    matches!(kind, Arg::MsgOut | Arg::MmsgOut),
                    matches!(kind, Arg::MmsgOut | Arg::MmsgIn).then(|| a[i + 1]),
                )? {
                    Ok(Some(mut b)) => buffers.append(&mut b),
                    Ok(None) => args[i] = FAULT_ADDR,
                    Err(e) => return Ok(e.ret()),
                },
                Arg::IovOut | Arg::IovIn => {
                    // Linux counts the vector in an unsigned int.
                    let count = if self.format >= 8 { a[i + 1] as u32 as u64 } else { a[i + 1] };
                    // From format 8 an invalid vector goes to the host as one
                    // that is invalid the same way, so that the descriptor's
                    // checks come first, as in Linux's readv.
                    if count > IOV_MAX {
                        if self.format < 8 {
                            return Ok(Errno::EINVAL.ret());
                        }
                        args[i] = self.fault_for(a[i], 0);
                        continue;
                    }
                    match self.iov_ranges(a[i], count, matches!(kind, Arg::IovOut)) {
                        Ok(r) => {
                            let out = matches!(kind, Arg::IovOut);
                            buffers.push(memory(r, i, out, false, out))
                        }
                        Err(Errno::EINVAL) if self.format < 8 => return Ok(Errno::EINVAL.ret()),
                        Err(Errno::EINVAL) => {
                            // A length beyond ssize_t: one such iovec.
                            let mut iov = self.fault_for(0, 0).to_le_bytes().to_vec();
                            iov.extend_from_slice(&(1u64 << 63).to_le_bytes());
                            buffers.push(bytes_in(i, iov));
                            args[i + 1] = 1;
                        }
                        Err(_) => args[i] = self.fault_for(a[i], count * 16),
                    }
                }
            }
        }
        // RLIMIT_FSIZE, which the program set for itself (never the broker):
        // a write to a regular file stops at the limit, and one that starts
        // there fails with EFBIG and SIGXFSZ, as Linux does.
        if matches!(desc.nr, 1 | 18 | 20 | 296 | 328) {
            if let Err(e) = self.file_size_limit(desc.nr, &a, &mut args, &mut buffers, link)? {
                return Ok(e.ret());
            }
        }
        if let Some(mask) = wait_mask {
            // Back after the call, or, if a handler runs, when it returns
            // (its frame keeps the mask from before), as rt_sigsuspend's.
            let t = self.thread_mut();
            t.suspended_mask = Some(t.signals.blocked);
            t.signals.set_blocked(mask);
        }
        let ret = self.broker(link, desc.nr, args, buffers, Caller::Thread)?.ret;
        if ret == PENDING {
            return Ok(PENDING);
        }
        let ret = self.check_new_fds(desc, &a, ret, link)?;
        if fd_dir && ret >= 0 {
            self.fd_dirs.insert(ret as i32);
        }
        Ok(ret)
    }

    /// Applies the program's RLIMIT_FSIZE to a write-like call on `a[0]`:
    /// trims what it sends (`args`, the buffer of argument 1) to what the
    /// limit leaves, or, at the limit already, EFBIG with SIGXFSZ.
    fn file_size_limit(
        &mut self,
        nr: u64,
        a: &[u64; 6],
        args: &mut [u64; 6],
        buffers: &mut [Buffer],
        link: &mut dyn Outside,
    ) -> Result<Result<(), Errno>, ProcessError> {
        const RLIMIT_FSIZE: u64 = 1;
        const S_IFMT: u32 = 0o170000;
        const S_IFREG: u32 = 0o100000;
        const O_APPEND: i64 = 0o2000;
        let Some(&(limit, _)) = self.rlimits.get(&RLIMIT_FSIZE) else { return Ok(Ok(())) };
        if limit == u64::MAX {
            return Ok(Ok(()));
        }
        let Some(b) = buffers.iter_mut().find(|b| b.arg == 1) else { return Ok(Ok(())) };
        let Some(buffer::Data::Memory(r)) = &mut b.data else { return Ok(Ok(())) };
        let count: u64 = r.len.iter().sum();
        if count == 0 {
            return Ok(Ok(()));
        }
        let (st, stat) = self.call_with_output(link, 5, [a[0], 0, 0, 0, 0, 0], 1, 144)?;
        if st < 0 || stat.len() < 56 {
            return Ok(Ok(())); // the call itself reports a bad descriptor
        }
        let mode = u32::from_le_bytes(stat[24..28].try_into().expect("4"));
        if mode & S_IFMT != S_IFREG {
            return Ok(Ok(()));
        }
        let size = i64::from_le_bytes(stat[48..56].try_into().expect("8")).max(0) as u64;
        let pos = match nr {
            18 | 296 => a[3],
            // pwritev2 at offset -1: the file's position, as writev.
            328 if a[3] as i64 != -1 => a[3],
            _ => {
                let fl = self.internal(link, 72, [a[0], 3, 0, 0, 0, 0], Vec::new())?; // F_GETFL
                if fl >= 0 && fl & O_APPEND != 0 {
                    size
                } else {
                    let at = self.internal(link, 8, [a[0], 0, 1, 0, 0, 0], Vec::new())?; // lseek(fd, 0, SEEK_CUR)
                    if at < 0 {
                        return Ok(Ok(()));
                    }
                    at as u64
                }
            }
        };
        if pos >= limit {
            self.raise_thread(abi::SIGXFSZ);
            return Ok(Err(Errno::EFBIG));
        }
        let allowed = limit - pos;
        if count > allowed {
            // Keep the first `allowed` bytes of the buffer.
            let mut left = allowed;
            let mut keep = 0;
            for len in r.len.iter_mut() {
                if left == 0 {
                    break;
                }
                *len = (*len).min(left);
                left -= *len;
                keep += 1;
            }
            r.len.truncate(keep);
            r.offset.truncate(keep);
            if matches!(nr, 1 | 18) {
                args[2] = allowed;
            }
        }
        Ok(Ok(()))
    }

    /// The signal mask ppoll, pselect6 or epoll_pwait waits with, and the
    /// argument that names it (pselect6's is the pointer in its sixth
    /// argument's {sigmask, size}); None without one. The size must be 8.
    fn wait_mask(&self, nr: u64, a: &[u64; 6]) -> Result<Option<(u64, usize)>, Errno> {
        let (at, size, arg) = match nr {
            271 => (a[3], a[4], 3),
            281 => (a[4], a[5], 4),
            270 if a[5] != 0 => {
                let mut b = [0u8; 16];
                self.mm.read_user(a[5], &mut b)?;
                let w = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().expect("8"));
                (w(0), w(8), 5)
            }
            _ => return Ok(None),
        };
        if at == 0 {
            return Ok(None);
        }
        if size != 8 {
            return Err(Errno::EINVAL);
        }
        let mask = self.mm.read_u64(at)?;
        Ok(Some((mask, arg)))
    }

    /// `/proc/self/...` for open, openat, readlink and readlinkat, and for
    /// any path call on `/proc/self/exe`: answered here, sent with another
    /// path (the executable instead of the link), or passed on.
    fn proc_self(&mut self, nr: u64, a: &[u64; 6], link: &mut dyn Outside) -> Result<SelfPath, ProcessError> {
        let Some(path_arg) = table::lookup(nr).and_then(|d| d.args.iter().position(|k| *k == Arg::Path)) else {
            return Ok(SelfPath::Pass);
        };
        if a[path_arg] == 0 {
            return Ok(SelfPath::Pass);
        }
        let Ok(path) = self.mm.read_cstring(a[path_arg], PATH_MAX - 1) else { return Ok(SelfPath::Pass) };
        if !path.starts_with(b"/proc/") {
            return Ok(SelfPath::Pass);
        }
        let tids: Vec<u32> = self.threads.keys().copied().collect();
        let Some(kind) = procfs::classify(&path, self.ident.pid, &tids) else { return Ok(SelfPath::Pass) };
        let readlink = matches!(nr, 89 | 267);
        let open = matches!(nr, 2 | 257 | 437);
        let base = self.ident.reserved_fd_base as u32;
        let file = match kind {
            ProcPath::Shared => return Ok(SelfPath::Pass),
            // Nothing of the broker's exists for the program.
            ProcPath::Hidden => return Ok(SelfPath::Answered(Errno::ENOENT.ret())),
            ProcPath::Fd { n: Some(n), .. } if n >= base => return Ok(SelfPath::Answered(Errno::ENOENT.ret())),
            ProcPath::Fd { n: None, .. } if open => return Ok(SelfPath::FdDir),
            ProcPath::Fd { .. } => return Ok(SelfPath::Pass),
            ProcPath::Mem if open => {
                let Some(flags) = self.open_flags(nr, a) else { return Ok(SelfPath::Pass) };
                return Ok(SelfPath::Answered(self.open_mem(flags, link)?));
            }
            ProcPath::Mem if readlink => return Ok(SelfPath::Answered(Errno::EINVAL.ret())),
            ProcPath::Mem => return Ok(SelfPath::Pass),
            ProcPath::File(f) => f,
        };
        if file == SelfFile::Exe && readlink {
            let (buf, size) = if nr == 89 { (a[1], a[2]) } else { (a[2], a[3]) };
            if (size as i64) <= 0 {
                return Ok(SelfPath::Answered(Errno::EINVAL.ret()));
            }
            let target = self.proc_info.exe.clone().into_bytes();
            let n = target.len().min(size as usize);
            return Ok(SelfPath::Answered(match self.mm.write_user(buf, &target[..n]) {
                Ok(()) => n as i64,
                Err(e) => e.ret(),
            }));
        }
        if file == SelfFile::Exe {
            // Other calls that follow the link reach the executable itself;
            // lstat and AT_SYMLINK_NOFOLLOW look at the link (passed through).
            const AT_SYMLINK_NOFOLLOW: u64 = 0x100;
            let nofollow = nr == 6
                || (nr == 262 && a[3] & AT_SYMLINK_NOFOLLOW != 0)
                || (nr == 332 && a[2] & AT_SYMLINK_NOFOLLOW != 0);
            if !nofollow {
                return Ok(SelfPath::Instead(path_arg, self.proc_info.exe.clone()));
            }
            return Ok(SelfPath::Pass);
        }
        if readlink {
            return Ok(SelfPath::Answered(Errno::EINVAL.ret())); // not links
        }
        if !open {
            return Ok(SelfPath::Pass);
        }
        let Some(flags) = self.open_flags(nr, a) else { return Ok(SelfPath::Pass) };
        if flags & 3 != 0 {
            return Ok(SelfPath::Answered(Errno::EACCES.ret()));
        }
        let ids = [self.ident.uid, self.ident.euid, self.ident.gid, self.ident.egid];
        let threads = self.threads.len();
        let bytes = procfs::contents(file, &self.proc_info, &self.mm, self.ident.pid, self.ident.ppid, ids, threads);
        Ok(SelfPath::Answered(self.synthetic_fd(&bytes, flags & abi::O_CLOEXEC != 0, link)?))
    }

    /// The flags of open, openat or openat2 (its `struct open_how`; None
    /// when that cannot be read: the broker's call reports it).
    fn open_flags(&self, nr: u64, a: &[u64; 6]) -> Option<u64> {
        const OPEN_HOW_SIZE_VER0: u64 = 24;
        match nr {
            2 => Some(a[1]),
            437 if a[3] < OPEN_HOW_SIZE_VER0 => None,
            437 => self.mm.read_u64(a[2]).ok(),
            _ => Some(a[2]),
        }
    }

    /// A read-only descriptor with `bytes` as its contents: a sealed memfd
    /// the broker creates, fills and rewinds (three recorded calls).
    fn synthetic_fd(&mut self, bytes: &[u8], cloexec: bool, link: &mut dyn Outside) -> Result<i64, ProcessError> {
        const MFD_CLOEXEC: u64 = 1;
        const MFD_ALLOW_SEALING: u64 = 2;
        let name = bytes_in(0, b"warp-proc\0".to_vec());
        let flags = MFD_ALLOW_SEALING | if cloexec { MFD_CLOEXEC } else { 0 };
        let fd = self.internal(link, 319, [0, flags, 0, 0, 0, 0], vec![name])?;
        if fd < 0 {
            return Ok(fd);
        }
        if fd >= self.ident.reserved_fd_base as i64 {
            self.internal(link, 3, [fd as u64, 0, 0, 0, 0, 0], Vec::new())?;
            return Ok(Errno::EMFILE.ret());
        }
        let data = bytes_in(1, bytes.to_vec());
        self.internal(link, 1, [fd as u64, 0, bytes.len() as u64, 0, 0, 0], vec![data])?;
        self.internal(link, 8, [fd as u64, 0, 0, 0, 0, 0], Vec::new())?; // lseek(fd, 0, SEEK_SET)
                                                                         // F_ADD_SEALS: no writes, no resizing, as a /proc file refuses them.
        const F_ADD_SEALS: u64 = 1033;
        const SEALS: u64 = 0x8 | 0x4 | 0x2; // F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK
        self.internal(link, 72, [fd as u64, F_ADD_SEALS, SEALS, 0, 0, 0], Vec::new())?;
        Ok(fd)
    }

    /// The buffers of a `struct msghdr` at `at` (argument `arg`) for the
    /// broker, or of an array of `vlen` `struct mmsghdr` (`mmsg`: Linux takes
    /// at most UIO_MAXIOV): the headers' own bytes, then per message k its
    /// name (10 + 3k), its iovec array's memory (11 + 3k) and its control
    /// buffer (12 + 3k), written by a receive (`recv`) or read by a send.
    /// None: the headers are unreadable (the call gets a faulting pointer
    /// and says EFAULT). A descriptor of the broker's own in an SCM_RIGHTS
    /// message is EBADF.
    #[allow(clippy::type_complexity)]
    fn msghdr_buffers(
        &mut self,
        at: u64,
        arg: usize,
        recv: bool,
        mmsg: Option<u64>,
    ) -> Result<Result<Option<Vec<Buffer>>, Errno>, ProcessError> {
        const UIO_MAXIOV: u64 = 1024;
        let (count, stride) = match mmsg {
            None => (1u64, 56u64),
            Some(vlen) => (vlen.min(UIO_MAXIOV), 64),
        };
        let mut heads = vec![0u8; (count * stride) as usize];
        if self.mm.read_user(at, &mut heads).is_err() {
            return Ok(Ok(None));
        }
        // The mmsg calls write each message's msg_len, sends too.
        let written = recv || mmsg.is_some();
        let Ok(own) = self.mm.user_ranges(at, count * stride, written) else { return Ok(Ok(None)) };
        let mut out = vec![memory(own, arg, written, written, false)];
        for k in 0..count as usize {
            let h = &heads[k * stride as usize..];
            let word = |o: usize| u64::from_le_bytes(h[o..o + 8].try_into().expect("8"));
            let (name, namelen) = (word(0), u32::from_le_bytes(h[8..12].try_into().expect("4")) as u64);
            let (iov, iovlen, control, controllen) = (word(16), word(24), word(32), word(40));
            let part = |j: usize| 10 + 3 * k + j;
            if iovlen > UIO_MAXIOV {
                return Ok(Err(Errno(90))); // EMSGSIZE
            }
            if name != 0 && namelen > 0 {
                match self.mm.user_ranges(name, namelen.min(128), recv) {
                    Ok(r) => out.push(memory(r, part(0), recv, false, false)),
                    Err(e) => return Ok(Err(e)),
                }
            }
            match self.iov_ranges(iov, iovlen, recv) {
                // recvmsg's result is its byte count; recvmmsg's a message count.
                Ok(r) => out.push(memory(r, part(1), recv, false, recv && mmsg.is_none())),
                Err(e) => return Ok(Err(e)),
            }
            if control != 0 && controllen > 0 {
                let len = controllen.min(MAX_RW_COUNT);
                if !recv {
                    let mut c = vec![0u8; len as usize];
                    if let Err(e) = self.mm.read_user(control, &mut c) {
                        return Ok(Err(e));
                    }
                    if self.passes_reserved_fd(&c) {
                        return Ok(Err(Errno::EBADF));
                    }
                }
                match self.mm.user_ranges(control, len, recv) {
                    Ok(r) => out.push(memory(r, part(2), recv, false, false)),
                    Err(e) => return Ok(Err(e)),
                }
            }
        }
        Ok(Ok(Some(out)))
    }

    /// Whether control messages `c` pass (SCM_RIGHTS) a descriptor of the
    /// broker's own: the program must not hand those to anyone.
    fn passes_reserved_fd(&self, c: &[u8]) -> bool {
        const SOL_SOCKET: i32 = 1;
        const SCM_RIGHTS: i32 = 1;
        let mut at = 0usize;
        while at + 16 <= c.len() {
            let len = u64::from_le_bytes(c[at..at + 8].try_into().expect("8")) as usize;
            let level = i32::from_le_bytes(c[at + 8..at + 12].try_into().expect("4"));
            let kind = i32::from_le_bytes(c[at + 12..at + 16].try_into().expect("4"));
            if len < 16 || at + len > c.len() {
                break;
            }
            if level == SOL_SOCKET && kind == SCM_RIGHTS {
                let fds = c[at + 16..at + len].chunks_exact(4);
                if fds.map(|f| i32::from_le_bytes(f.try_into().expect("4"))).any(|fd| self.reserved(fd as u64)) {
                    return true;
                }
            }
            at += len.div_ceil(8) * 8;
        }
        false
    }

    /// The guest-memory ranges behind an iovec array, in order.
    fn iov_ranges(&self, iov: u64, count: u64, write: bool) -> Result<Vec<(u64, u64)>, Errno> {
        let mut raw = vec![0u8; (count * 16) as usize];
        self.mm.read_user(iov, &mut raw)?;
        let word = |c: &[u8], at: usize| u64::from_le_bytes(c[at..at + 8].try_into().expect("8"));
        // Every length is checked before anything moves, as Linux's import_iovec.
        if raw.chunks_exact(16).any(|c| word(c, 8) > isize::MAX as u64) {
            return Err(Errno::EINVAL);
        }
        let mut ranges = Vec::new();
        let mut total: u64 = 0;
        for c in raw.chunks_exact(16) {
            let (base, len) = (word(c, 0), word(c, 8));
            total = total.saturating_add(len);
            let len = len.min(MAX_RW_COUNT.saturating_sub(total - len));
            match self.mm.user_ranges(base, len, write) {
                Ok(r) => ranges.extend(r),
                Err(e) if !write => return Err(e),
                Err(e) => {
                    // A read: Linux copies until the first fault, the buffers
                    // up to it (and the part of this one before it) are the
                    // call's; EFAULT only when nothing could move. (A pipe's
                    // read that reaches the fault is EFAULT on Linux; writes
                    // differ by file type too, and stay EFAULT here.)
                    let prefix = self.mm.accessible(base, len, write);
                    if prefix > 0 {
                        ranges.extend(self.mm.user_ranges(base, prefix, write)?);
                    }
                    if ranges.is_empty() {
                        return Err(e);
                    }
                    break;
                }
            }
        }
        Ok(ranges)
    }

    /// The program's own call, performed by the broker: its result. A
    /// blocking one ends early with EINTR on a deliverable signal.
    fn call(
        &mut self,
        link: &mut dyn Outside,
        nr: u64,
        args: [u64; 6],
        buffers: Vec<Buffer>,
    ) -> Result<i64, ProcessError> {
        Ok(self.broker(link, nr, args, buffers, Caller::Program)?.ret)
    }

    /// A call warpd makes while it emulates another (filling an mmap,
    /// naming a descriptor, closing one the program must not get): never
    /// interrupted, since the program's call would not be.
    fn internal(
        &mut self,
        link: &mut dyn Outside,
        nr: u64,
        args: [u64; 6],
        buffers: Vec<Buffer>,
    ) -> Result<i64, ProcessError> {
        Ok(self.broker(link, nr, args, buffers, Caller::Warpd)?.ret)
    }

    /// The one way to the broker: every request goes through here, so the
    /// signals that arrive before it, with its reply or beside it reach the
    /// program, and an interrupted call is handled as Linux does.
    fn broker(
        &mut self,
        link: &mut dyn Outside,
        nr: u64,
        args: [u64; 6],
        buffers: Vec<Buffer>,
        caller: Caller,
    ) -> Result<Reply, ProcessError> {
        let interruptible = !matches!(caller, Caller::Warpd | Caller::Timer(_));
        // fcntl waits only to take a record lock (F_SETLKW, F_OFD_SETLKW).
        let waits_for_lock = nr == 72 && matches!(args[1], 7 | 38);
        let may_block =
            interruptible && (waits_for_lock || table::lookup(nr).is_some_and(|d| d.class == Class::Blocking));
        // Waiting for any thread: a signal that woke one of them ends it.
        let ended = |p: &Self| match caller {
            // A thread in a deferred call takes its signal once the call's
            // completion (asked for with a cancel) comes: that ends the wait.
            Caller::Idle => {
                p.sched.others_ready()
                    || (p.signal_deliverable() && !matches!(p.thread().wait, Some(Wait::Broker { .. })))
            }
            _ => p.signal_deliverable(),
        };
        let mut call = Syscall { nr: nr as u32, args: args.to_vec(), buffers, may_block, ..Default::default() };
        // Other threads can run while this one waits in the outside world.
        if caller == Caller::Thread && may_block && self.format >= 4 && self.threads.len() > 1 {
            self.deferred_begun += 1;
            call.deferred_thread = self.current;
            call.deferred_seq = self.deferred_begun;
        }
        if let Caller::Timer(seq) = caller {
            call.deferred_thread = TIMER_THREAD;
            call.deferred_seq = seq;
        }
        if caller == Caller::Idle && self.has_deferred() {
            call.ends_on_completion = true;
            call.completions_seen = self.completions_taken;
        }
        loop {
            for s in link.take_signals()? {
                self.raise_outside(&s);
            }
            // A signal pending when a blocking call would wait ends it at
            // once, as on Linux; a call that need not wait (a ready
            // descriptor, a file) completes, and the signal comes after.
            // The broker knows which (recordings before format 3: warpd
            // answered EINTR itself).
            if may_block && ended(self) {
                if self.legacy_eintr || caller == Caller::Idle {
                    return Ok(Reply { ret: Errno::EINTR.ret(), ..Default::default() });
                }
                call.signal_pending = true;
            }
            let mut reply = self.request(link, request::Kind::Syscall(call.clone()))?;
            if reply.pending && call.deferred_thread == self.current {
                self.begin_wait(Wait::Broker { seq: call.deferred_seq, buffers: call.buffers, cancelled: false });
                reply.ret = PENDING;
                return Ok(reply);
            }
            // A signal the program ignores (or blocks) does not interrupt the
            // call on Linux, nor one that arrives during warpd's own calls:
            // the broker's EINTR is not the program's.
            if reply.ret == Errno::EINTR.ret()
                && (!reply.signals.is_empty() || reply.signals_pending)
                && (!interruptible || !ended(self))
            {
                continue;
            }
            return Ok(reply);
        }
    }

    /// One request to the broker and its reply, with the signals the reply
    /// carries or announces raised.
    fn request(&mut self, link: &mut dyn Outside, kind: request::Kind) -> Result<Reply, OutsideError> {
        let reply = link.call(kind, &self.mm.guest)?;
        for (i, &signo) in reply.signals.iter().enumerate() {
            let info = reply.signal_infos.get(i).cloned().unwrap_or_default();
            self.raise_outside(&Arrival { signo, info });
        }
        if reply.signals_pending {
            for s in link.take_signals()? {
                self.raise_outside(&s);
            }
        }
        Ok(reply)
    }

    /// Whether `fd` is one of the program's open descriptors (asked of the
    /// broker: F_GETFD).
    fn fd_open(&mut self, fd: u64, link: &mut dyn Outside) -> Result<bool, ProcessError> {
        if self.reserved(fd) || fd > i32::MAX as u64 {
            return Ok(false);
        }
        Ok(self.internal(link, 72, [fd, 1, 0, 0, 0, 0], Vec::new())? >= 0)
    }

    /// New descriptors must not land in the broker's reserved range.
    fn check_new_fds(
        &mut self,
        desc: &Desc,
        a: &[u64; 6],
        ret: i64,
        link: &mut dyn Outside,
    ) -> Result<i64, ProcessError> {
        if ret < 0 {
            return Ok(ret);
        }
        let base = self.ident.reserved_fd_base as i64;
        let dup_fcntl = desc.nr == 72 && matches!(a[1], 0 | 1030);
        if (desc.returns == Returns::NewFd || dup_fcntl) && ret >= base {
            self.internal(link, 3, [ret as u64, 0, 0, 0, 0, 0], Vec::new())?;
            return Ok(Errno::EMFILE.ret());
        }
        let pair_arg = desc.fd_pair;
        if let Some(i) = pair_arg {
            let mut b = [0u8; 8];
            if self.mm.read_user(a[i], &mut b).is_ok() {
                let f0 = i32::from_le_bytes(b[..4].try_into().expect("4")) as i64;
                let f1 = i32::from_le_bytes(b[4..].try_into().expect("4")) as i64;
                if f0 >= base || f1 >= base {
                    for f in [f0, f1] {
                        self.internal(link, 3, [f as u64, 0, 0, 0, 0, 0], Vec::new())?;
                    }
                    return Ok(Errno::EMFILE.ret());
                }
            }
        }
        Ok(ret)
    }

    // ---- emulated calls ------------------------------------------------

    /// An emulated call: what happened. Every emulated entry of the table
    /// has an arm here (a test checks it); one without is warpd's bug.
    fn emulate(
        &mut self,
        nr: u64,
        a: &[u64; 6],
        regs: &Regs,
        cpu: &mut dyn CpuState,
        link: &mut dyn Outside,
    ) -> Result<Action, ProcessError> {
        let narrowed;
        let a = if self.format >= 8 {
            narrowed = narrow_ints(nr, a);
            &narrowed
        } else {
            a
        };
        let r = match nr {
            15 => return self.rt_sigreturn(regs, cpu),
            231 => return Ok(Action::Exit((a[0] & 0xff) as i32)),
            60 => return self.exit_thread((a[0] & 0xff) as i32),
            56 => return self.clone_thread(a, regs, cpu, 56, link),
            57 => return self.fork_process(abi::SIGCHLD as u64, [0; 4], 57, link),
            58 => return self.fork_process(0x4100 | abi::SIGCHLD as u64, [0; 4], 58, link),
            435 => return self.clone3_thread(a, regs, cpu, link),
            59 => return self.execve(a, cpu, link),
            9 => self.mmap(a, link)?,
            10 => self.mprotect(a[0], a[1], a[2]),
            11 => self.munmap(a[0], a[1]),
            12 => Ok(self.mm.set_brk(a[0])),
            13 => self.rt_sigaction(a),
            14 => self.rt_sigprocmask(a),
            24 => return Ok(Action::Yield(0)),
            25 => self.mremap(a),
            26 => self.msync(a[0], a[1], a[2]),
            27 => self.mincore(a[0], a[1], a[2]),
            28 => self.madvise(a[0], a[1], a[2]),
            39 => Ok(self.ident.pid as u64),
            186 => Ok(self.current as u64),
            // The broker's parent is the program's: it changes when that one
            // ends and the host re-parents the broker (from format 6, asked).
            110 if self.format >= 6 => result_of(self.call(link, 110, [0; 6], Vec::new())?),
            110 => Ok(self.ident.ppid as u64),
            62 => self.kill(a[0] as i32, a[1] as i32, link)?,
            200 => self.kill_thread(a[0] as i32, a[1] as i32),
            234 => {
                if a[0] as i32 != self.ident.pid as i32 && a[0] as i32 > 0 {
                    return Ok(Action::Return(self.call(link, 234, *a, Vec::new())?));
                }
                self.kill_thread(a[1] as i32, a[2] as i32)
            }
            131 => self.sigaltstack(a),
            157 => self.prctl(a, link)?,
            158 => self.arch_prctl(a[0], a[1], cpu)?,
            218 => {
                self.thread_mut().clear_tid = a[0];
                Ok(self.current as u64)
            }
            273 => {
                if a[1] == 24 {
                    self.thread_mut().robust_list = a[0];
                    Ok(0)
                } else {
                    Err(Errno::EINVAL)
                }
            }
            274 => self.get_robust_list(a[0] as i32, a[1], a[2]),
            202 => return self.futex(a, link),
            127 => self.sigpending(a[0], a[1]),
            129 => self.sigqueueinfo(a[0] as i32, None, a[1] as i32, a[2], link)?,
            449 => return self.futex_waitv(a),
            297 => self.sigqueueinfo(a[0] as i32, Some(a[1] as i32), a[2] as i32, a[3], link)?,
            222 => self.timer_create(a, link)?,
            223 => self.timer_settime(a, link)?,
            224 => self.timer_gettime(a[0] as i32, a[1], link)?,
            225 => self.timer_getoverrun(a[0] as i32),
            36 | 38 => {
                let desc = table::lookup(nr).expect("in the table");
                self.itimer(desc, a, nr == 38, link)?
            }
            282 => self.signalfd(a, 0, link)?,
            289 => self.signalfd(a, a[3], link)?,
            226 => self.timer_delete(a[0] as i32, link)?,
            130 => return self.sigsuspend(a[0], a[1]),
            128 => return self.sigtimedwait(a, link),
            203 => self.set_affinity(a[0], a[1], a[2]),
            204 => self.get_affinity(a[0], a[1], a[2]),
            // A NULL limit is EFAULT for these two (prlimit64 skips it).
            97 | 160 if self.format >= 8 && a[1] == 0 && a[0] < 16 => Err(Errno::EFAULT),
            97 => self.prlimit(0, a[0], 0, a[1], link)?,
            160 => self.prlimit(0, a[0], a[1], 0, link)?,
            302 => {
                if a[0] != 0 && a[0] as u32 != self.ident.pid {
                    // Another process's limits: the broker asks the host.
                    let desc = table::lookup(302).expect("prlimit64 is in the table");
                    return Ok(Action::Return(self.proxy(desc, *a, link)?));
                }
                self.prlimit(0, a[1], a[2], a[3], link)?
            }
            436 => self.close_range(a, link)?,
            149 => self.mlock(a[0], a[1], 0, link)?,
            325 => self.mlock(a[0], a[1], a[2], link)?,
            150 => self.munlock(a[0], a[1]),
            151 => self.mlockall(a[0], link)?,
            152 => Ok(0),
            324 => self.membarrier(a[0], a[1], a[2]),
            _ => return Err(ProcessError::Unhandled(nr)),
        };
        Ok(Action::Return(ret_of(r)))
    }

    /// A NULL-terminated array of string pointers (argv, envp), as execve
    /// reads it: EFAULT for a bad pointer, E2BIG past Linux's limits.
    fn read_strings(&self, at: u64) -> Result<Vec<String>, Errno> {
        const MAX_ARG_STRINGS: usize = 0x7fff_ffff;
        const MAX_TOTAL: usize = 2 << 20; // what fits a default 8 MiB stack's quarter
        let mut out = Vec::new();
        if at == 0 {
            return Ok(out);
        }
        let mut total = 0usize;
        for i in 0.. {
            if i >= MAX_ARG_STRINGS {
                return Err(Errno::E2BIG);
            }
            let mut p = [0u8; 8];
            self.mm.read_user(at + i as u64 * 8, &mut p)?;
            let ptr = u64::from_le_bytes(p);
            if ptr == 0 {
                break;
            }
            let s = self.mm.read_cstring(ptr, 128 << 10).map_err(|e| {
                if e == Errno::ENAMETOOLONG {
                    Errno::E2BIG
                } else {
                    e
                }
            })?;
            total += s.len() + 1;
            if total > MAX_TOTAL {
                return Err(Errno::E2BIG);
            }
            out.push(String::from_utf8_lossy(&s).into_owned());
        }
        Ok(out)
    }

    /// execve: the new image is read through the broker (as the user) and
    /// checked before anything of the old one is touched; after that point
    /// a failure kills the program with SIGSEGV, as on Linux.
    fn execve(&mut self, a: &[u64; 6], cpu: &mut dyn CpuState, link: &mut dyn Outside) -> Result<Action, ProcessError> {
        let fail = |e: Errno| Ok(Action::Return(e.ret()));
        let path = match self.mm.read_cstring(a[0], PATH_MAX - 1) {
            Ok(p) => String::from_utf8_lossy(&p).into_owned(),
            Err(e) => return fail(e),
        };
        let (argv, envp) = match (self.read_strings(a[1]), self.read_strings(a[2])) {
            (Ok(v), Ok(e)) => (v, e),
            (Err(e), _) | (_, Err(e)) => {
                // Linux opens the file before it copies the arguments: a
                // missing or forbidden one is what the call says first.
                let mut p = path.clone().into_bytes();
                p.push(0);
                let r = self.internal(link, 21, [0, 1, 0, 0, 0, 0], vec![bytes_in(0, p)])?; // access(path, X_OK)
                return fail(if r < 0 && !path.is_empty() { Errno(-r as i32) } else { e });
            }
        };
        if path.is_empty() {
            return fail(Errno::ENOENT);
        }
        // /proc/self/exe is the program, not the broker that would open it.
        let path = match procfs::self_file(path.as_bytes(), self.ident.pid) {
            Some(SelfFile::Exe) => self.proc_info.exe.clone(),
            _ => path,
        };
        let images = match crate::loader::program::read(&path, &mut |k| self.request(link, k)) {
            Ok(i) => i,
            Err(crate::loader::program::ExecError::Refused { errno, .. }) => return fail(errno),
            Err(crate::loader::program::ExecError::Outside(o)) => return Err(o.into()),
        };
        // AT_RANDOM for the new image comes from the host, through the broker,
        // so that replay gets the same bytes.
        let (_, bytes) = self.call_with_output(link, 318, [0, 16, 0, 0, 0, 0], 0, 16)?;
        let mut random = [0u8; 16];
        if bytes.len() == 16 {
            random.copy_from_slice(&bytes);
        }
        self.request(link, request::Kind::CloseOnExec(Default::default()))?;
        // warpd's descriptors that close-on-exec closed are gone.
        let mine: Vec<i32> = self.memfiles.keys().chain(self.fd_dirs.iter()).copied().collect();
        for fd in mine {
            if self.internal(link, 72, [fd as u64, 1, 0, 0, 0, 0], Vec::new())? < 0 {
                self.memfiles.remove(&fd);
                self.fd_dirs.remove(&fd);
            }
        }

        // The point of no return: the old image goes (and the name it gave).
        self.mm.reset();
        self.thread_mut().name = None;
        let loaded = match crate::loader::program::load(
            &images,
            &argv,
            &envp,
            &self.ident,
            random,
            self.format >= 10,
            &mut self.mm,
        ) {
            Ok(l) => l,
            Err(e) => {
                self.note(format!(
                    "execve of {path} failed after the old program was gone ({e}); it dies of SIGSEGV as on Linux"
                ));
                return Ok(Action::Killed(abi::SIGSEGV));
            }
        };
        cpu.set_fs_base(0)?;
        cpu.set_gs_base(0)?;
        // The other threads end (their deferred calls with them); the one
        // that called execve goes on as the process's only thread, with the
        // pid as its tid (execve(2)). Timers are not kept across exec.
        let waiting: Vec<(u32, u64)> = self
            .threads
            .values()
            .filter_map(|t| match &t.wait {
                Some(Wait::Broker { seq, .. }) => Some((t.tid, *seq)),
                _ => None,
            })
            .collect();
        for (tid, seq) in waiting {
            link.cancel(tid, seq)?;
        }
        self.delete_timers(link)?;
        self.signalfds_at_exec();
        let mut me = self.threads.remove(&self.current).expect("the current thread is in the table");
        me.tid = self.ident.pid;
        me.clear_tid = 0;
        self.threads = BTreeMap::from([(me.tid, me)]);
        self.current = self.ident.pid;
        self.sched.clear();
        // Handlers do not survive exec; ignored signals stay ignored.
        for act in self.signals.actions.iter_mut() {
            if act.handler > signals::SIG_IGN {
                *act = SigAction::default();
            }
        }
        self.thread_mut().signals.altstack = ThreadSignals::default().altstack;
        self.membarrier_registered = 0;
        self.dumpable = true;
        self.proc_info =
            ProcInfo { exe: images.exe_path.clone(), argv: loaded.argv.clone(), env: envp, auxv: loaded.auxv.clone() };
        Ok(Action::Exec(loaded.regs))
    }

    fn mmap(&mut self, a: &[u64; 6], link: &mut dyn Outside) -> Result<SysResult, ProcessError> {
        const MAP_SHARED: u64 = 0x01;
        const MAP_PRIVATE: u64 = 0x02;
        const MAP_SHARED_VALIDATE: u64 = 0x03;
        const MAP_FIXED: u64 = 0x10;
        const MAP_ANONYMOUS: u64 = 0x20;
        const MAP_FIXED_NOREPLACE: u64 = 0x10_0000;
        let (addr, len, prot, flags, fd, off) = (a[0], a[1], a[2], a[3], a[4] as i32, a[5]);
        if len == 0 || prot & !(7 | 0x0100_0000 | 0x0200_0000) != 0 {
            return Ok(Err(Errno::EINVAL));
        }
        let kind = flags & 3;
        if kind != MAP_SHARED && kind != MAP_PRIVATE && kind != MAP_SHARED_VALIDATE {
            return Ok(Err(Errno::EINVAL));
        }
        let Some(len) = mm::page_up(len) else { return Ok(Err(Errno::ENOMEM)) };
        if len > USER_TOP {
            return Ok(Err(Errno::ENOMEM));
        }
        if off % PAGE_SIZE != 0 {
            return Ok(Err(Errno::EINVAL));
        }
        let fixed = flags & (MAP_FIXED | MAP_FIXED_NOREPLACE) != 0;
        if fixed && (addr % PAGE_SIZE != 0 || !in_user_space(addr, len)) {
            return Ok(Err(if addr % PAGE_SIZE != 0 { Errno::EINVAL } else { Errno::ENOMEM }));
        }
        if fixed && addr < mm::MMAP_MIN_ADDR {
            return Ok(Err(Errno::EPERM));
        }
        if flags & MAP_FIXED_NOREPLACE != 0
            && flags & MAP_FIXED == 0
            && self.mm.vmas().any(|(&s, v)| s < addr + len && v.end > addr)
        {
            return Ok(Err(Errno::EEXIST));
        }
        let anonymous = flags & MAP_ANONYMOUS != 0;
        if !anonymous {
            if self.reserved(fd as u64) || fd < 0 {
                return Ok(Err(Errno::EBADF));
            }
            if kind != MAP_PRIVATE && prot & PROT_WRITE as u64 != 0 {
                self.note("a writable MAP_SHARED file mapping was refused (ENODEV): not supported yet".into());
                self.limit(
                    "shared mapping",
                    "the program mapped a file shared and writable, which Warpspeed does not support yet: mmap gave it ENODEV".into(),
                );
                return Ok(Err(Errno::ENODEV));
            }
        }
        const MAP_32BIT: u64 = 0x40;
        let placed = if flags & MAP_32BIT != 0 && !fixed && self.format >= 7 {
            // x86_64 Linux puts MAP_32BIT mappings in [1 GiB, 2 GiB), lowest first.
            self.mm.place_within(len, 0x4000_0000, 0x8000_0000)
        } else {
            self.mm.place(addr, len, fixed)
        };
        let at = match placed {
            Ok(at) => at,
            Err(e) => return Ok(Err(e)),
        };
        let prot = prot as u32 & (PROT_READ | PROT_WRITE | PROT_EXEC);
        if !anonymous {
            // Map writable to fill, read the file through the broker, then
            // protect. The mapping carries the file's name for /proc/self/maps.
            let kind = self.fd_path(fd, link)?.map(VmaKind::Image).unwrap_or(VmaKind::Anonymous);
            if let Err(e) = self.mm.map_anonymous(at, len, PROT_READ | PROT_WRITE, kind) {
                return Ok(Err(e));
            }
            let ranges = self.mm.user_ranges(at, len, true).expect("just mapped");
            let r =
                self.internal(link, 17, [fd as u64, 0, len, off, 0, 0], vec![memory(ranges, 1, true, false, true)])?;
            if r < 0 {
                let _ = self.mm.unmap(at, len);
                let e = if r == -(Errno::ESPIPE.0 as i64) { Errno::ENODEV } else { Errno(-r as i32) };
                return Ok(Err(e));
            }
            // Pages wholly past the file's end have nothing behind them.
            let data_end = at + mm::page_up(r as u64).unwrap_or(len).min(len);
            if self.format >= 7 && data_end < at + len {
                if let Err(e) = self.mm.mark_past_eof(data_end, at + len) {
                    return Ok(Err(e));
                }
            }
            if let Err(e) = self.mm.protect(at, len, prot) {
                return Ok(Err(e));
            }
            return Ok(Ok(at));
        }
        Ok(self.mm.map_anonymous(at, len, prot, VmaKind::Anonymous).map(|_| at))
    }

    /// The path behind a descriptor, as the broker's /proc/self/fd shows it
    /// (the broker's descriptors are the program's).
    fn fd_path(&mut self, fd: i32, link: &mut dyn Outside) -> Result<Option<String>, ProcessError> {
        let path = format!("/proc/self/fd/{fd}\0").into_bytes();
        let buffers = vec![
            bytes_in(0, path),
            Buffer { arg: 1, data: Some(buffer::Data::OutLen(4096)), inout: false, out: true, written_by_ret: false },
        ];
        let reply = self.broker(link, 89, [0, 0, 4096, 0, 0, 0], buffers, Caller::Warpd)?;
        if reply.ret <= 0 {
            return Ok(None);
        }
        let out = reply.outputs.into_iter().next().unwrap_or_default();
        let n = (reply.ret as usize).min(out.len());
        Ok(Some(String::from_utf8_lossy(&out[..n]).into_owned()))
    }

    fn munmap(&mut self, addr: u64, len: u64) -> SysResult {
        if !addr.is_multiple_of(PAGE_SIZE) || len == 0 {
            return Err(Errno::EINVAL);
        }
        let len = mm::page_up(len).ok_or(Errno::EINVAL)?;
        if !in_user_space(addr, len) {
            return Err(Errno::EINVAL);
        }
        self.mm.unmap(addr, len).map(|_| 0)
    }

    fn mprotect(&mut self, addr: u64, len: u64, prot: u64) -> SysResult {
        if !addr.is_multiple_of(PAGE_SIZE) || prot & !(7 | 0x0100_0000 | 0x0200_0000) != 0 {
            return Err(Errno::EINVAL);
        }
        let len = mm::page_up(len).ok_or(Errno::ENOMEM)?;
        if len == 0 {
            return Ok(0);
        }
        if !in_user_space(addr, len) {
            return Err(Errno::ENOMEM);
        }
        let prot = prot as u32 & 7;
        if self.format < 7 {
            return self.mm.protect(addr, len, prot).map(|_| 0);
        }
        // Linux changes the mapped pages up to the first hole, then says
        // ENOMEM (nothing when the range starts in one).
        let mapped = self.mm.mapped_prefix(addr, addr + len);
        if mapped > addr {
            self.mm.protect(addr, mapped - addr, prot)?;
        }
        if mapped < addr + len {
            return Err(Errno::ENOMEM);
        }
        Ok(0)
    }

    /// mincore: every mapped page counts as resident (guest memory is never
    /// swapped out from the program's point of view).
    fn mincore(&mut self, addr: u64, len: u64, vec: u64) -> SysResult {
        if !addr.is_multiple_of(PAGE_SIZE) {
            return Err(Errno::EINVAL);
        }
        let len = mm::page_up(len).ok_or(Errno::ENOMEM)?;
        if !in_user_space(addr, len) {
            return Err(Errno::ENOMEM);
        }
        let pages = (len / PAGE_SIZE) as usize;
        // Linux checks the vector's place before it looks at the mappings.
        if self.format >= 8 && !in_user_space(vec, pages as u64) {
            return Err(Errno::EFAULT);
        }
        if self.format >= 8 && pages == 0 {
            return Ok(0);
        }
        if self.format >= 8 {
            // Linux answers for the mapped pages from the start (EFAULT if
            // it cannot write that), then ENOMEM at the first hole.
            let mapped = (self.mm.mapped_prefix(addr, addr + len) - addr) / PAGE_SIZE;
            if mapped == 0 {
                return Err(Errno::ENOMEM);
            }
            self.mm.write_user(vec, &vec![1u8; mapped as usize])?;
            return if mapped < pages as u64 { Err(Errno::ENOMEM) } else { Ok(0) };
        }
        if !self.mm.is_mapped(addr, len) {
            return Err(Errno::ENOMEM);
        }
        self.mm.write_user(vec, &vec![1u8; pages])?;
        Ok(0)
    }

    fn madvise(&mut self, addr: u64, len: u64, advice: u64) -> SysResult {
        if self.format >= 8 {
            return self.madvise_as_linux(addr, len, advice);
        }
        if !addr.is_multiple_of(PAGE_SIZE) {
            return Err(Errno::EINVAL);
        }
        let len = mm::page_up(len).ok_or(Errno::EINVAL)?;
        if !in_user_space(addr, len) {
            return Err(Errno::EINVAL);
        }
        const MADV_REMOVE: u64 = 9;
        if advice == MADV_REMOVE && self.format >= 7 {
            return self.madv_remove(addr);
        }
        match advice {
            4 | 8 | 9 => self.mm.discard(addr, len).map(|_| 0), // DONTNEED, FREE, REMOVE
            0..=3 | 10..=23 | 100 | 101 => Ok(0),
            _ => Err(Errno::EINVAL),
        }
    }

    /// msync as Linux checks it (the program has no writable shared file
    /// mapping, so there is nothing to write back): the flags, alignment,
    /// the length's rounding, then ENOMEM for a hole in the range (MS_ASYNC
    /// stops at the first, the others look on), found as Linux walks it.
    fn msync(&mut self, start: u64, len: u64, flags: u64) -> SysResult {
        const MS_ASYNC: u64 = 1;
        const MS_INVALIDATE: u64 = 2;
        const MS_SYNC: u64 = 4;
        if flags & !(MS_ASYNC | MS_INVALIDATE | MS_SYNC) != 0
            || !start.is_multiple_of(PAGE_SIZE)
            || (flags & MS_ASYNC != 0 && flags & MS_SYNC != 0)
        {
            return Err(Errno::EINVAL);
        }
        let len = mm::page_up(len).unwrap_or(0);
        let end = start.checked_add(len).ok_or(Errno::ENOMEM)?;
        let mut at = start;
        let mut unmapped = false;
        while at < end {
            let Some((&vstart, v)) = self.mm.vmas().find(|(_, v)| v.end > at) else {
                return Err(Errno::ENOMEM);
            };
            if at < vstart {
                if flags == MS_ASYNC || vstart >= end {
                    return Err(Errno::ENOMEM);
                }
                unmapped = true;
            }
            at = v.end;
        }
        if unmapped {
            Err(Errno::ENOMEM)
        } else {
            Ok(0)
        }
    }

    /// get_robust_list: a thread of the program's (0: the caller) and the
    /// head it registered; another process's is ESRCH here (the program
    /// sees no other process's threads). The size goes out first, as Linux.
    fn get_robust_list(&mut self, pid: i32, head_at: u64, len_at: u64) -> SysResult {
        let tid = if pid == 0 { self.current } else { pid as u32 };
        let head = match self.threads.get(&tid) {
            Some(t) if pid >= 0 => t.robust_list,
            _ => return Err(Errno::ESRCH),
        };
        self.mm.write_user(len_at, &24u64.to_le_bytes())?;
        self.mm.write_user(head_at, &head.to_le_bytes())?;
        Ok(0)
    }

    /// MADV_REMOVE: only a writable shared file mapping can have its pages
    /// removed (none exists here): EACCES for another file mapping, EINVAL
    /// for anonymous memory, ENOMEM where nothing is mapped, as Linux.
    fn madv_remove(&self, addr: u64) -> SysResult {
        match self.mm.vma_at(addr) {
            None => Err(Errno::ENOMEM),
            Some(v) if matches!(v.kind, VmaKind::Image(_)) => Err(Errno::EACCES),
            Some(_) => Err(Errno::EINVAL),
        }
    }

    /// madvise in Linux's order (from format 8): the advice, the start's
    /// alignment, the length's rounding and overflow, an empty range (0,
    /// wherever it is), then the advice on what is mapped and ENOMEM if
    /// anything in the range is not.
    fn madvise_as_linux(&mut self, addr: u64, len: u64, advice: u64) -> SysResult {
        const MADV_DONTNEED: u64 = 4;
        const MADV_FREE: u64 = 8;
        const MADV_REMOVE: u64 = 9;
        const MADV_HWPOISON: u64 = 100;
        const MADV_SOFT_OFFLINE: u64 = 101;
        let valid = matches!(advice, 0..=4 | 8..=25 | 100..=103);
        if !valid || !addr.is_multiple_of(PAGE_SIZE) {
            return Err(Errno::EINVAL);
        }
        // PAGE_ALIGN wraps a length within a page of 2^64 to 0.
        let rounded = mm::page_up(len).unwrap_or(0);
        if len != 0 && rounded == 0 {
            return Err(Errno::EINVAL);
        }
        let end = addr.checked_add(rounded).ok_or(Errno::EINVAL)?;
        if end == addr {
            return Ok(0);
        }
        if matches!(advice, MADV_HWPOISON | MADV_SOFT_OFFLINE) {
            // CAP_SYS_ADMIN, which a program here never has over the host.
            return Err(Errno::EPERM);
        }
        if advice == MADV_REMOVE {
            return self.madv_remove(addr);
        }
        let pieces: Vec<(u64, u64)> = self
            .mm
            .vmas()
            .filter(|(&start, v)| start < end && v.end > addr)
            .map(|(&start, v)| (start.max(addr), v.end.min(end)))
            .collect();
        let covered: u64 = pieces.iter().map(|(s, e)| e - s).sum();
        if matches!(advice, MADV_DONTNEED | MADV_FREE) {
            for (s, e) in pieces {
                self.mm.discard(s, e - s)?;
            }
        }
        if covered < end - addr {
            return Err(Errno::ENOMEM);
        }
        Ok(0)
    }

    /// The range mlock and munlock act on: whole pages around [addr,
    /// addr+len), None when empty (Linux returns 0 at once).
    fn lock_range(addr: u64, len: u64) -> Result<Option<(u64, u64)>, Errno> {
        let start = mm::page_down(addr);
        let len = mm::page_up(len.checked_add(addr - start).ok_or(Errno::EINVAL)?).ok_or(Errno::EINVAL)?;
        if start.checked_add(len).is_none() {
            return Err(Errno::EINVAL);
        }
        Ok((len != 0).then_some((start, len)))
    }

    /// How much the program may lock: RLIMIT_MEMLOCK as it has it, None
    /// when it may lock beyond (CAP_IPC_LOCK: here, an effective uid of
    /// 0), EPERM when the limit is 0 and it may not.
    fn memlock_allowance(&mut self, link: &mut dyn Outside) -> Result<Result<Option<u64>, Errno>, ProcessError> {
        const RLIMIT_MEMLOCK: u64 = 8;
        let limit = match self.rlimit(RLIMIT_MEMLOCK, link)? {
            Ok((cur, _)) => cur,
            Err(e) => return Ok(Err(e)),
        };
        Ok(match (limit, self.ident.euid == 0) {
            (_, true) => Ok(None),
            (0, false) => Err(Errno::EPERM),
            (l, false) => Ok(Some(l)),
        })
    }

    /// mlock and mlock2: every page of the program's memory is resident
    /// already (warpd never pages it out), so locking is Linux's checks:
    /// the flags, the lock limit (EPERM when it is 0, ENOMEM beyond it,
    /// counted for this call's range alone), and ENOMEM for a range with
    /// unmapped pages.
    fn mlock(&mut self, addr: u64, len: u64, flags: u64, link: &mut dyn Outside) -> Result<SysResult, ProcessError> {
        const MLOCK_ONFAULT: u64 = 1;
        if flags & !MLOCK_ONFAULT != 0 {
            return Ok(Err(Errno::EINVAL));
        }
        let limit = match self.memlock_allowance(link)? {
            Ok(l) => l,
            Err(e) => return Ok(Err(e)),
        };
        let Some((start, len)) = (match Self::lock_range(addr, len) {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        }) else {
            return Ok(Ok(0));
        };
        if limit.is_some_and(|l| len > l) {
            return Ok(Err(Errno::ENOMEM));
        }
        // Linux faults the pages in (unless MLOCK_ONFAULT), which a
        // PROT_NONE page refuses: ENOMEM.
        let end = start + len;
        let inaccessible = self.format >= 8
            && flags & MLOCK_ONFAULT == 0
            && self
                .mm
                .vmas()
                .any(|(&s, v)| s < end && v.end > start && v.prot & (PROT_READ | PROT_WRITE | PROT_EXEC) == 0);
        Ok(if self.mm.is_mapped(start, len) && !inaccessible { Ok(0) } else { Err(Errno::ENOMEM) })
    }

    fn munlock(&mut self, addr: u64, len: u64) -> SysResult {
        match Self::lock_range(addr, len)? {
            Some((start, len)) if !self.mm.is_mapped(start, len) => Err(Errno::ENOMEM),
            _ => Ok(0),
        }
    }

    /// mlockall: the flags as Linux checks them, then the lock limit
    /// against all the memory mapped now (MCL_CURRENT).
    fn mlockall(&mut self, flags: u64, link: &mut dyn Outside) -> Result<SysResult, ProcessError> {
        const MCL_CURRENT: u64 = 1;
        const MCL_FUTURE: u64 = 2;
        const MCL_ONFAULT: u64 = 4;
        if flags == 0 || flags & !(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) != 0 || flags == MCL_ONFAULT {
            return Ok(Err(Errno::EINVAL));
        }
        let limit = match self.memlock_allowance(link)? {
            Ok(l) => l,
            Err(e) => return Ok(Err(e)),
        };
        let total: u64 = self.mm.vmas().map(|(&start, v)| v.end - start).sum();
        if flags & MCL_CURRENT != 0 && limit.is_some_and(|l| total > l) {
            return Ok(Err(Errno::ENOMEM));
        }
        Ok(Ok(0))
    }

    /// membarrier on one vCPU: every barrier is already one (the program's
    /// threads never run at once), so the commands Linux offers succeed,
    /// the private expedited ones once registered, as Linux requires.
    fn membarrier(&mut self, cmd: u64, flags: u64, _cpu_id: u64) -> SysResult {
        const QUERY: u64 = 0;
        const GLOBAL: u64 = 1;
        const GLOBAL_EXPEDITED: u64 = 2;
        const REGISTER_GLOBAL_EXPEDITED: u64 = 4;
        const PRIVATE_EXPEDITED: u64 = 8;
        const REGISTER_PRIVATE_EXPEDITED: u64 = 16;
        const PRIVATE_EXPEDITED_SYNC_CORE: u64 = 32;
        const REGISTER_PRIVATE_EXPEDITED_SYNC_CORE: u64 = 64;
        const RSEQ: u64 = 128;
        const REGISTER_RSEQ: u64 = 256;
        const GET_REGISTRATIONS: u64 = 512;
        const SUPPORTED: u64 = GLOBAL
            | GLOBAL_EXPEDITED
            | REGISTER_GLOBAL_EXPEDITED
            | PRIVATE_EXPEDITED
            | REGISTER_PRIVATE_EXPEDITED
            | PRIVATE_EXPEDITED_SYNC_CORE
            | REGISTER_PRIVATE_EXPEDITED_SYNC_CORE;
        const FLAG_CPU: u64 = 1;
        if (cmd != PRIVATE_EXPEDITED && flags != 0) || flags & !FLAG_CPU != 0 {
            return Err(Errno::EINVAL);
        }
        let registered = &mut self.membarrier_registered;
        match cmd {
            QUERY if self.format >= 8 => Ok(SUPPORTED | RSEQ | REGISTER_RSEQ | GET_REGISTRATIONS),
            QUERY => Ok(SUPPORTED),
            REGISTER_RSEQ if self.format >= 8 => {
                *registered |= cmd;
                Ok(0)
            }
            RSEQ if self.format >= 8 && *registered & REGISTER_RSEQ != 0 => Ok(0),
            RSEQ if self.format >= 8 => Err(Errno::EPERM),
            GLOBAL => Ok(0),
            GET_REGISTRATIONS => Ok(*registered),
            REGISTER_GLOBAL_EXPEDITED | REGISTER_PRIVATE_EXPEDITED | REGISTER_PRIVATE_EXPEDITED_SYNC_CORE => {
                *registered |= cmd;
                Ok(0)
            }
            GLOBAL_EXPEDITED => Ok(0),
            PRIVATE_EXPEDITED if *registered & REGISTER_PRIVATE_EXPEDITED != 0 => Ok(0),
            PRIVATE_EXPEDITED_SYNC_CORE if *registered & REGISTER_PRIVATE_EXPEDITED_SYNC_CORE != 0 => Ok(0),
            PRIVATE_EXPEDITED | PRIVATE_EXPEDITED_SYNC_CORE => Err(Errno::EPERM),
            _ => Err(Errno::EINVAL),
        }
    }

    fn mremap(&mut self, a: &[u64; 6]) -> SysResult {
        const MREMAP_MAYMOVE: u64 = 1;
        const MREMAP_FIXED: u64 = 2;
        let (old, old_len, new_len, flags) = (a[0], a[1], a[2], a[3]);
        if old % PAGE_SIZE != 0 || flags & !7 != 0 || new_len == 0 {
            return Err(Errno::EINVAL);
        }
        if flags & MREMAP_FIXED != 0 {
            self.note("mremap with MREMAP_FIXED returned ENOSYS: not supported yet".into());
            return Err(Errno::ENOSYS);
        }
        let old_len = mm::page_up(old_len).ok_or(Errno::EINVAL)?;
        let new_len = mm::page_up(new_len).ok_or(Errno::ENOMEM)?;
        self.mm.remap(old, old_len, new_len, flags & MREMAP_MAYMOVE != 0)
    }

    fn rt_sigaction(&mut self, a: &[u64; 6]) -> SysResult {
        let (sig, act, oact, size) = (a[0] as i32, a[1], a[2], a[3]);
        if size != 8 || !(1..=signals::NSIG as i32).contains(&sig) {
            return Err(Errno::EINVAL);
        }
        if act != 0 && (sig == abi::SIGKILL || sig == abi::SIGSTOP) {
            return Err(Errno::EINVAL);
        }
        let mut new = None;
        if act != 0 {
            let mut b = [0u8; 32];
            self.mm.read_user(act, &mut b)?;
            new = Some(SigAction::from_bytes(&b));
        }
        if oact != 0 {
            self.mm.write_user(oact, &self.signals.action(sig).to_bytes())?;
        }
        if let Some(mut n) = new {
            n.mask &= !(signals::bit(abi::SIGKILL) | signals::bit(abi::SIGSTOP));
            self.signals.actions[(sig - 1) as usize] = n;
            if self.signals.is_ignored(sig) {
                let (s, t) = self.signal_state();
                s.discard(sig, t);
            }
        }
        Ok(0)
    }

    fn rt_sigprocmask(&mut self, a: &[u64; 6]) -> SysResult {
        let (how, set, oset, size) = (a[0], a[1], a[2], a[3]);
        if size != 8 {
            return Err(Errno::EINVAL);
        }
        let mut new = None;
        if set != 0 {
            let s = self.mm.read_u64(set)?;
            new = Some(match how {
                0 => self.thread().signals.blocked | s,
                1 => self.thread().signals.blocked & !s,
                2 => s,
                _ => return Err(Errno::EINVAL),
            });
        }
        if oset != 0 {
            self.mm.write_user(oset, &self.thread().signals.blocked.to_le_bytes())?;
        }
        if let Some(m) = new {
            self.thread_mut().signals.set_blocked(m);
        }
        Ok(0)
    }

    fn sigaltstack(&mut self, a: &[u64; 6]) -> SysResult {
        let mut new = None;
        if a[0] != 0 {
            let mut b = [0u8; 24];
            self.mm.read_user(a[0], &mut b)?;
            let flags = i32::from_le_bytes(b[8..12].try_into().expect("4"));
            let size = u64::from_le_bytes(b[16..24].try_into().expect("8"));
            if flags & !(2 | (1 << 31)) != 0 {
                return Err(Errno::EINVAL);
            }
            if flags & 2 == 0 && size < 2048 {
                return Err(Errno::ENOMEM);
            }
            new = Some(b);
        }
        if a[1] != 0 {
            self.mm.write_user(a[1], &self.thread().signals.altstack)?;
        }
        if let Some(b) = new {
            self.thread_mut().signals.altstack = b;
        }
        Ok(0)
    }

    fn kill(&mut self, pid: i32, sig: i32, link: &mut dyn Outside) -> Result<SysResult, ProcessError> {
        if pid == self.ident.pid as i32 {
            if !(0..=signals::NSIG as i32).contains(&sig) {
                return Ok(Err(Errno::EINVAL));
            }
            if sig != 0 {
                self.raise_info(sig, Some(self.own_info(sig, 0)));
            }
            return Ok(Ok(0));
        }
        // Other processes (and process groups, which include the broker
        // itself and so the program) are the broker's business; the host
        // kernel checks the signal after the process, as for ours (a
        // missing pid is ESRCH whatever the signal).
        Ok(result_of(self.call(link, 62, [pid as u64, sig as u32 as u64, 0, 0, 0, 0], Vec::new())?))
    }

    fn kill_thread(&mut self, tid: i32, sig: i32) -> SysResult {
        if tid <= 0 || !(0..=signals::NSIG as i32).contains(&sig) {
            return Err(Errno::EINVAL);
        }
        if !self.threads.contains_key(&(tid as u32)) {
            return Err(Errno::ESRCH);
        }
        if sig != 0 {
            self.raise_to_info(tid as u32, sig, self.own_info(sig, SI_TKILL));
        }
        Ok(0)
    }

    /// A thread's name as Linux keeps it (its comm: at most 15 bytes).
    pub fn thread_name(&self, tid: u32) -> Option<Vec<u8>> {
        let t = self.threads.get(&tid)?;
        Some(t.name.clone().unwrap_or_else(|| procfs::comm_of(&self.proc_info.exe).into_bytes()))
    }

    /// prctl: the thread's name (PR_SET_NAME, PR_GET_NAME); the other
    /// options are not emulated yet (ENOSYS, noted).
    fn prctl(&mut self, a: &[u64; 6], link: &mut dyn Outside) -> Result<SysResult, ProcessError> {
        const PR_SET_PDEATHSIG: u64 = 1;
        const PR_GET_PDEATHSIG: u64 = 2;
        const PR_SET_CHILD_SUBREAPER: u64 = 36;
        const PR_GET_CHILD_SUBREAPER: u64 = 37;
        Ok(match a[0] {
            // The broker is the process the host's tree knows: its parent's
            // death signals it (a signal it forwards), and orphans below a
            // subreaper broker become its children, which wait4 sees.
            PR_SET_PDEATHSIG | PR_SET_CHILD_SUBREAPER => {
                result_of(self.call(link, 157, [a[0], a[1], 0, 0, 0, 0], Vec::new())?)
            }
            PR_GET_PDEATHSIG | PR_GET_CHILD_SUBREAPER => {
                let (ret, out) = self.call_with_output(link, 157, [a[0], 0, 0, 0, 0, 0], 1, 4)?;
                match result_of(ret) {
                    Ok(_) if out.len() == 4 => self.mm.write_user(a[1], &out).map(|()| 0),
                    Ok(_) => Err(Errno::EFAULT),
                    Err(e) => Err(e),
                }
            }
            _ => self.prctl_local(a),
        })
    }

    /// The prctl options warpd answers itself.
    fn prctl_local(&mut self, a: &[u64; 6]) -> SysResult {
        const PR_GET_DUMPABLE: u64 = 3;
        const PR_SET_DUMPABLE: u64 = 4;
        const PR_SET_NAME: u64 = 15;
        const PR_GET_NAME: u64 = 16;
        const PR_GET_TID_ADDRESS: u64 = 40;
        const PR_GET_AUXV: u64 = 0x4155_5856;
        match a[0] {
            PR_GET_AUXV if self.format >= 7 => {
                // Linux keeps the auxiliary vector in a fixed array
                // (mm->saved_auxv: 50 words on x86_64 since 6.4, zeros after
                // AT_NULL) and gives as much of it as fits, returning its size.
                const SAVED_AUXV: usize = 50 * 8;
                if a[3] != 0 || a[4] != 0 {
                    return Err(Errno::EINVAL);
                }
                let mut saved = procfs::auxv_bytes(&self.proc_info.auxv);
                saved.resize(SAVED_AUXV, 0);
                let n = (a[2] as usize).min(SAVED_AUXV);
                if n > 0 {
                    self.mm.write_user(a[1], &saved[..n])?;
                }
                Ok(SAVED_AUXV as u64)
            }
            PR_SET_NAME => {
                // Linux copies at most 15 bytes, up to a NUL.
                let mut b = vec![0u8; self.mm.accessible(a[1], 16, false).min(16) as usize];
                if b.is_empty() {
                    return Err(Errno::EFAULT);
                }
                self.mm.read_user(a[1], &mut b)?;
                let end = b.iter().position(|&c| c == 0).unwrap_or(b.len()).min(15);
                if end == b.len() && b.len() < 15 {
                    // The string runs into a page the program cannot read.
                    return Err(Errno::EFAULT);
                }
                b.truncate(end);
                self.thread_mut().name = Some(b);
                Ok(0)
            }
            PR_GET_NAME => {
                let tid = self.thread().tid;
                let mut name = self.thread_name(tid).unwrap_or_default();
                name.resize(16, 0);
                self.mm.write_user(a[1], &name)?;
                Ok(0)
            }
            PR_GET_DUMPABLE if self.format >= 8 => Ok(self.dumpable as u64),
            PR_SET_DUMPABLE if self.format >= 8 => match a[1] {
                0 | 1 => {
                    self.dumpable = a[1] == 1;
                    Ok(0)
                }
                _ => Err(Errno::EINVAL),
            },
            PR_GET_TID_ADDRESS if self.format >= 8 => {
                let at = self.thread().clear_tid;
                self.mm.write_user(a[1], &at.to_le_bytes()).map(|()| 0)
            }
            // An option Linux does not have.
            option if self.format >= 8 && !linux_prctl_option(option) => Err(Errno::EINVAL),
            option => {
                if self.prctl_noted.insert(option) {
                    self.note(format!("prctl option {option} is not supported yet: ENOSYS"));
                }
                Err(Errno::ENOSYS)
            }
        }
    }

    fn arch_prctl(&mut self, code: u64, addr: u64, cpu: &mut dyn CpuState) -> Result<SysResult, ProcessError> {
        const ARCH_SET_GS: u64 = 0x1001;
        const ARCH_SET_FS: u64 = 0x1002;
        const ARCH_GET_FS: u64 = 0x1003;
        const ARCH_GET_GS: u64 = 0x1004;
        Ok(match code {
            ARCH_SET_FS | ARCH_SET_GS => {
                if addr >= USER_TOP {
                    return Ok(Err(Errno::EPERM));
                }
                if code == ARCH_SET_FS {
                    cpu.set_fs_base(addr)?
                } else {
                    cpu.set_gs_base(addr)?
                }
                Ok(0)
            }
            ARCH_GET_FS | ARCH_GET_GS => {
                let v = if code == ARCH_GET_FS { cpu.fs_base()? } else { cpu.gs_base()? };
                self.mm.write_user(addr, &v.to_le_bytes()).map(|_| 0)
            }
            _ => Err(Errno::EINVAL),
        })
    }

    /// futex between the program's own threads (never forwarded): WAIT and
    /// WAIT_BITSET park the thread, WAKE and WAKE_BITSET make waiters
    /// runnable in the order they came.
    fn futex(&mut self, a: &[u64; 6], link: &mut dyn Outside) -> Result<Action, ProcessError> {
        const FUTEX_WAIT: u64 = 0;
        const FUTEX_WAKE: u64 = 1;
        const FUTEX_REQUEUE: u64 = 3;
        const FUTEX_CMP_REQUEUE: u64 = 4;
        const FUTEX_WAKE_OP: u64 = 5;
        const FUTEX_LOCK_PI: u64 = 6;
        const FUTEX_UNLOCK_PI: u64 = 7;
        const FUTEX_TRYLOCK_PI: u64 = 8;
        const FUTEX_WAIT_BITSET: u64 = 9;
        const FUTEX_WAKE_BITSET: u64 = 10;
        const FUTEX_LOCK_PI2: u64 = 13;
        const FUTEX_PRIVATE_FLAG: u64 = 128;
        const FUTEX_CLOCK_REALTIME: u64 = 256;
        const CLOCK_REALTIME: u64 = 0;
        const CLOCK_MONOTONIC: u64 = 1;
        let ret = |r: SysResult| Ok(Action::Return(ret_of(r)));
        let (addr, op, val, timeout) = (a[0], a[1] & !(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME), a[2] as u32, a[3]);
        let realtime = a[1] & FUTEX_CLOCK_REALTIME != 0;
        if addr % 4 != 0 {
            return ret(Err(Errno::EINVAL));
        }
        match op {
            FUTEX_WAKE | FUTEX_WAKE_BITSET => {
                let bitset = if op == FUTEX_WAKE { u32::MAX } else { a[5] as u32 };
                if bitset == 0 {
                    return ret(Err(Errno::EINVAL));
                }
                ret(Ok(self.futex_wake(addr, bitset, val as i32 as i64)))
            }
            FUTEX_REQUEUE | FUTEX_CMP_REQUEUE => {
                // val: how many to wake; the timeout slot: how many to move
                // to uaddr2 (a[4]); CMP_ checks *uaddr == val3 (a[5]) first.
                let (wake, requeue, to) = (val as i32, a[3] as u32 as i32, a[4]);
                if wake < 0 || requeue < 0 || to % 4 != 0 {
                    return ret(Err(Errno::EINVAL));
                }
                if op == FUTEX_CMP_REQUEUE {
                    if let Err(e) = self.futex_holds(addr, a[5] as u32) {
                        return ret(Err(e));
                    }
                }
                let woken = self.futex_wake(addr, u32::MAX, wake.into());
                let moved = self.futex_requeue(addr, to, requeue.into());
                ret(Ok(if op == FUTEX_CMP_REQUEUE { woken + moved } else { woken }))
            }
            FUTEX_WAKE_OP => ret(self.futex_wake_op(addr, val as i32, a[3] as u32 as i32, a[4], a[5] as u32)),
            FUTEX_WAIT | FUTEX_WAIT_BITSET => {
                let bitset = if op == FUTEX_WAIT { u32::MAX } else { a[5] as u32 };
                if bitset == 0 || (realtime && op == FUTEX_WAIT) {
                    // FUTEX_CLOCK_REALTIME means nothing to a relative wait: ENOSYS, as Linux.
                    return ret(Err(if bitset == 0 { Errno::EINVAL } else { Errno::ENOSYS }));
                }
                if let Err(e) = self.futex_holds(addr, val) {
                    return ret(Err(e));
                }
                // A signal it may take is already pending: the wait ends
                // before it begins (restarted after a handler with SA_RESTART).
                if self.signal_deliverable() {
                    return ret(Err(Errno::EINTR));
                }
                let deadline = if timeout == 0 {
                    None
                } else {
                    let (secs, nanos) = match self.read_timespec(timeout) {
                        Ok(t) => t,
                        Err(e) => return ret(Err(e)),
                    };
                    let clock = if realtime { CLOCK_REALTIME } else { CLOCK_MONOTONIC };
                    if op == FUTEX_WAIT_BITSET {
                        Some(Deadline { clock, secs, nanos })
                    } else {
                        match self.deadline_after(link, clock, secs, nanos)? {
                            Some(d) => Some(d),
                            None => return ret(Err(Errno::EINVAL)),
                        }
                    }
                };
                self.begin_wait(Wait::Futex { addr, bitset, deadline });
                Ok(Action::Wait)
            }
            FUTEX_LOCK_PI | FUTEX_LOCK_PI2 | FUTEX_TRYLOCK_PI => {
                let deadline = if timeout == 0 || op == FUTEX_TRYLOCK_PI {
                    None
                } else {
                    match self.read_timespec(timeout) {
                        // LOCK_PI's timeout is on CLOCK_REALTIME; LOCK_PI2's
                        // on CLOCK_MONOTONIC unless the flag says otherwise.
                        Ok((secs, nanos)) if (0..1_000_000_000).contains(&nanos) && secs >= 0 => {
                            let clock = if realtime || op == FUTEX_LOCK_PI { CLOCK_REALTIME } else { CLOCK_MONOTONIC };
                            Some(Deadline { clock, secs, nanos })
                        }
                        Ok(_) => return ret(Err(Errno::EINVAL)),
                        Err(e) => return ret(Err(e)),
                    }
                };
                self.futex_lock_pi(addr, op == FUTEX_TRYLOCK_PI, deadline)
            }
            FUTEX_UNLOCK_PI => ret(self.futex_unlock_pi(addr)),
            _ => {
                self.note(format!("futex operation {op} returned ENOSYS: not supported yet"));
                ret(Err(Errno::ENOSYS))
            }
        }
    }

    /// FUTEX_LOCK_PI(2) and FUTEX_TRYLOCK_PI: the word holds the owner's
    /// tid (FUTEX_WAITERS when others wait, FUTEX_OWNER_DIED after a robust
    /// owner died). A free word is taken; the caller's own is EDEADLK; a tid
    /// that is no thread of the process is ESRCH; else the caller marks the
    /// word and waits until an unlock hands the lock over (trylock:
    /// EWOULDBLOCK). Priority inheritance is moot on one vCPU: waiters get
    /// the lock in the order they came. A signal does not end the wait.
    fn futex_lock_pi(&mut self, addr: u64, trylock: bool, deadline: Option<Deadline>) -> Result<Action, ProcessError> {
        let ret = |r: SysResult| Ok(Action::Return(ret_of(r)));
        let v = match self.mm.read_u32(addr) {
            Ok(v) => v,
            Err(e) => return ret(Err(e)),
        };
        let me = self.current;
        let owner = v & FUTEX_TID_MASK;
        if owner == 0 {
            // Free (perhaps after its owner died): ours, the flag kept.
            let new = me | (v & FUTEX_OWNER_DIED) | if self.pi_waiters(addr) > 0 { FUTEX_WAITERS } else { 0 };
            return ret(self.mm.write_user(addr, &new.to_le_bytes()).map(|_| 0));
        }
        if owner == me {
            return ret(Err(Errno::EDEADLK));
        }
        if !self.threads.contains_key(&owner) {
            return ret(Err(Errno::ESRCH));
        }
        if trylock {
            return ret(Err(Errno::EAGAIN));
        }
        if let Err(e) = self.mm.write_user(addr, &(v | FUTEX_WAITERS).to_le_bytes()) {
            return ret(Err(e));
        }
        self.begin_wait(Wait::PiLock { addr, deadline });
        Ok(Action::Wait)
    }

    /// How many threads wait for PI lock `addr`.
    fn pi_waiters(&self, addr: u64) -> usize {
        self.threads.values().filter(|t| matches!(t.wait, Some(Wait::PiLock { addr: a, .. }) if a == addr)).count()
    }

    /// FUTEX_UNLOCK_PI: only the owner may; the first waiter gets the lock
    /// (its tid in the word, FUTEX_WAITERS if more wait), else it is free.
    fn futex_unlock_pi(&mut self, addr: u64) -> SysResult {
        let v = self.mm.read_u32(addr)?;
        if v & FUTEX_TID_MASK != self.current {
            return Err(Errno::EPERM);
        }
        self.pi_hand_over(addr, 0)?;
        Ok(0)
    }

    /// Gives PI lock `addr` to its first waiter, with `flags` (OWNER_DIED
    /// after a robust owner's death) kept; free when nobody waits.
    fn pi_hand_over(&mut self, addr: u64, flags: u32) -> Result<(), Errno> {
        let next = self
            .threads
            .values()
            .filter(|t| matches!(t.wait, Some(Wait::PiLock { addr: a, .. }) if a == addr))
            .min_by_key(|t| t.wait_order)
            .map(|t| t.tid);
        let new = match next {
            Some(tid) => tid | flags | if self.pi_waiters(addr) > 1 { FUTEX_WAITERS } else { 0 },
            None => flags,
        };
        self.mm.write_user(addr, &new.to_le_bytes())?;
        if let Some(tid) = next {
            self.wake(tid, 0);
        }
        Ok(())
    }

    /// Whether the futex word at `addr` still holds `val`: EAGAIN if not,
    /// EFAULT if it cannot be read (what a wait checks before it begins).
    fn futex_holds(&self, addr: u64, val: u32) -> Result<(), Errno> {
        match self.mm.read_u32(addr)? {
            v if v != val => Err(Errno::EAGAIN),
            _ => Ok(()),
        }
    }

    /// Wakes up to `n` threads waiting on `addr` for any of `bitset`, in
    /// the order they began to wait; how many woke.
    fn futex_wake(&mut self, addr: u64, bitset: u32, n: i64) -> u64 {
        // (order, tid, what its call returns: 0, or futex_waitv's index)
        let mut waiting: Vec<(u64, u32, i64)> = self
            .threads
            .values()
            .filter_map(|t| match &t.wait {
                Some(Wait::Futex { addr: a, bitset: b, .. }) if *a == addr && b & bitset != 0 => {
                    Some((t.wait_order, t.tid, 0))
                }
                Some(Wait::FutexV { addrs, .. }) => {
                    addrs.iter().position(|&a| a == addr).map(|i| (t.wait_order, t.tid, i as i64))
                }
                _ => None,
            })
            .collect();
        waiting.sort();
        waiting.truncate(n.max(0) as usize);
        for &(_, tid, ret) in &waiting {
            self.wake(tid, ret);
        }
        waiting.len() as u64
    }

    /// futex_waitv(waiters, nr, flags, timeout, clockid): waits on up to
    /// 128 futexes at once (each `struct futex_waitv`: value, address,
    /// flags FUTEX2_SIZE_U32 and maybe FUTEX2_PRIVATE, a zero); EAGAIN when
    /// one already differs from its value; woken by a wake on any, it
    /// returns that one's index; the timeout is absolute on `clockid`.
    fn futex_waitv(&mut self, a: &[u64; 6]) -> Result<Action, ProcessError> {
        const FUTEX2_SIZE_U32: u32 = 2;
        const FUTEX2_PRIVATE: u32 = 128;
        const MAX: u64 = 128;
        let ret = |r: SysResult| Ok(Action::Return(ret_of(r)));
        let (at, nr, flags, timeout, clock) = (a[0], a[1], a[2], a[3], a[4]);
        if flags != 0 || nr == 0 || nr > MAX {
            return ret(Err(Errno::EINVAL));
        }
        let deadline = if timeout == 0 {
            None
        } else {
            if clock != 0 && clock != 1 {
                return ret(Err(Errno::EINVAL));
            }
            match self.read_timespec(timeout) {
                Ok((secs, nanos)) => Some(Deadline { clock, secs, nanos }),
                Err(e) => return ret(Err(e)),
            }
        };
        let mut raw = vec![0u8; (nr * 24) as usize];
        if let Err(e) = self.mm.read_user(at, &mut raw) {
            return ret(Err(e));
        }
        let mut addrs = Vec::with_capacity(nr as usize);
        let mut vals = Vec::with_capacity(nr as usize);
        for w in raw.chunks_exact(24) {
            let val = u64::from_le_bytes(w[..8].try_into().expect("8"));
            let addr = u64::from_le_bytes(w[8..16].try_into().expect("8"));
            let f = u32::from_le_bytes(w[16..20].try_into().expect("4"));
            let reserved = u32::from_le_bytes(w[20..24].try_into().expect("4"));
            if reserved != 0 || f & !FUTEX2_PRIVATE != FUTEX2_SIZE_U32 || addr % 4 != 0 || val > u32::MAX as u64 {
                return ret(Err(Errno::EINVAL));
            }
            addrs.push(addr);
            vals.push(val as u32);
        }
        for (&addr, &val) in addrs.iter().zip(&vals) {
            if let Err(e) = self.futex_holds(addr, val) {
                return ret(Err(e));
            }
        }
        if self.signal_deliverable() {
            return ret(Err(Errno::EINTR));
        }
        self.begin_wait(Wait::FutexV { addrs, deadline });
        Ok(Action::Wait)
    }

    /// The thread `pid` names for the affinity calls: 0 is the caller; a
    /// thread of the process; anything else is no process the program can see.
    fn affinity_target(&self, pid: u64) -> Result<(), Errno> {
        let pid = pid as i32;
        if pid < 0 {
            // Linux finds no process by a negative pid (format 8).
            return Err(if self.format >= 8 { Errno::ESRCH } else { Errno::EINVAL });
        }
        if pid == 0 || self.threads.contains_key(&(pid as u32)) {
            Ok(())
        } else {
            Err(Errno::ESRCH)
        }
    }

    /// sched_getaffinity: the program runs on one CPU, the vCPU (CPU 0).
    /// As Linux with one CPU: the size must be a multiple of a long and
    /// hold a bit per CPU; the kernel's mask is one long, which it returns.
    fn get_affinity(&self, pid: u64, len: u64, mask: u64) -> SysResult {
        const MASK_BYTES: u64 = 8;
        // Linux: (len * 8 < nr_cpu_ids), in unsigned int arithmetic.
        let too_short = if self.format >= 8 { (len as u32).wrapping_mul(8) == 0 } else { len == 0 };
        if too_short || !len.is_multiple_of(MASK_BYTES) {
            return Err(Errno::EINVAL);
        }
        self.affinity_target(pid)?;
        self.mm.write_user(mask, &1u64.to_le_bytes())?;
        Ok(MASK_BYTES)
    }

    /// sched_setaffinity: a mask without CPU 0 leaves no CPU to run on (EINVAL).
    /// In Linux's order: the mask is read (EFAULT), the thread found
    /// (ESRCH), then the mask checked.
    fn set_affinity(&self, pid: u64, len: u64, mask: u64) -> SysResult {
        let mut first = [0u8; 1];
        if len > 0 {
            self.mm.read_user(mask, &mut first)?;
        }
        self.affinity_target(pid)?;
        if first[0] & 1 == 0 {
            return Err(Errno::EINVAL);
        }
        Ok(0)
    }

    /// Moves up to `n` threads waiting on `from` to wait on `to`, behind
    /// those already there (FUTEX_REQUEUE); how many moved.
    fn futex_requeue(&mut self, from: u64, to: u64, n: i64) -> u64 {
        let mut waiting: Vec<(u64, u32)> = self
            .threads
            .values()
            .filter_map(|t| match &t.wait {
                Some(Wait::Futex { addr, .. }) if *addr == from => Some((t.wait_order, t.tid)),
                _ => None,
            })
            .collect();
        waiting.sort();
        waiting.truncate(n.max(0) as usize);
        for &(_, tid) in &waiting {
            self.waits_begun += 1;
            let order = self.waits_begun;
            if let Some(t) = self.threads.get_mut(&tid) {
                if let Some(Wait::Futex { addr, .. }) = &mut t.wait {
                    *addr = to;
                }
                t.wait_order = order;
            }
        }
        waiting.len() as u64
    }

    /// FUTEX_WAKE_OP (futex(2)): changes the word at `addr2` as `encoded`
    /// says, wakes up to `n` waiters on `addr` and, when the old value
    /// passes the comparison, up to `n2` on `addr2`; how many woke.
    fn futex_wake_op(&mut self, addr: u64, n: i32, n2: i32, addr2: u64, encoded: u32) -> SysResult {
        const OPARG_SHIFT: u32 = 8;
        if !addr2.is_multiple_of(4) {
            return Err(Errno::EINVAL);
        }
        let sign12 = |v: u32| ((v << 20) as i32) >> 20;
        let mut op = (encoded >> 28) & 0xf;
        let cmp = (encoded >> 24) & 0xf;
        let mut oparg = sign12((encoded >> 12) & 0xfff);
        let cmparg = sign12(encoded & 0xfff);
        if op & OPARG_SHIFT != 0 {
            op &= !OPARG_SHIFT;
            oparg = 1i32.wrapping_shl((oparg & 31) as u32);
        }
        let old = self.mm.read_u32(addr2)? as i32;
        let new = match op {
            0 => oparg,
            1 => old.wrapping_add(oparg),
            2 => old | oparg,
            3 => old & !oparg,
            4 => old ^ oparg,
            _ => return Err(Errno::ENOSYS),
        };
        let passes = match cmp {
            0 => old == cmparg,
            1 => old != cmparg,
            2 => old < cmparg,
            3 => old <= cmparg,
            4 => old > cmparg,
            5 => old >= cmparg,
            _ => return Err(Errno::ENOSYS),
        };
        self.mm.write_user(addr2, &new.to_le_bytes())?;
        let mut woken = self.futex_wake(addr, u32::MAX, n.into());
        if passes {
            woken += self.futex_wake(addr2, u32::MAX, n2.into());
        }
        Ok(woken)
    }

    /// A signal `tid` may take ends its wait: with EINTR at once, or, for
    /// a deferred call, once the broker has ended it (its completion says
    /// how: EINTR, or what it did if it was done first).
    fn interrupt_wait(&mut self, tid: u32) {
        let Some(t) = self.threads.get_mut(&tid) else { return };
        match &mut t.wait {
            Some(Wait::Broker { cancelled, .. }) if !*cancelled => {
                *cancelled = true;
                self.cancels.push(tid);
            }
            // A PI lock's wait goes on after the handler (Linux restarts it
            // whatever SA_RESTART says); warpd lets it wait for the lock.
            Some(Wait::Broker { .. }) | Some(Wait::PiLock { .. }) => {}
            Some(_) => self.wake(tid, Errno::EINTR.ret()),
            None => {}
        }
    }

    /// Whether `fd` is one of warpd's own descriptors (a signalfd, a
    /// `/proc/self/mem`, a `/proc/self/fd` listing).
    fn owns_fd(&self, fd: i32) -> bool {
        self.signalfds.contains_key(&fd) || self.memfiles.contains_key(&fd) || self.fd_dirs.contains(&fd)
    }

    /// Whether some thread waits for a deferred call.
    pub fn has_deferred(&self) -> bool {
        self.threads.values().any(|t| matches!(t.wait, Some(Wait::Broker { .. })))
            || self.timers.values().any(|t| t.reading.is_some())
    }

    /// Asks for the cancellations due and delivers the deferred calls'
    /// completions that came: at syscall boundaries, interrupt points and
    /// switches, recorded where they happen (replay takes them at the same
    /// places).
    pub fn poll_outside(&mut self, link: &mut dyn Outside) -> Result<(), ProcessError> {
        for tid in std::mem::take(&mut self.cancels) {
            if let Some(Wait::Broker { seq, .. }) = self.threads.get(&tid).and_then(|t| t.wait.as_ref()) {
                link.cancel(tid, *seq)?;
            }
        }
        if self.has_deferred() {
            for c in link.take_completions()? {
                self.completions_taken += 1;
                self.complete(c, link)?;
            }
        }
        if !self.signalfds.is_empty() {
            self.sync_signalfds(link)?;
        }
        Ok(())
    }

    /// A deferred call's completion: what it wrote goes into the thread's
    /// buffers now, its result is checked as a call's that returned at once
    /// (new descriptors, EPIPE), and the thread can run. One for a call no
    /// longer waiting (its thread ended by execve) is dropped.
    fn complete(&mut self, c: Completed, link: &mut dyn Outside) -> Result<(), ProcessError> {
        if c.thread == TIMER_THREAD {
            return self.timer_completed(&c, link);
        }
        let Some(t) = self.threads.get(&c.thread) else { return Ok(()) };
        let Some(Wait::Broker { seq, buffers, .. }) = &t.wait else { return Ok(()) };
        if *seq != c.seq {
            return Ok(());
        }
        let Some(req) = t.syscall else { return Ok(()) };
        let mut detached = c.detached.iter();
        for b in buffers.iter().filter(|b| b.out) {
            let Some(buffer::Data::Memory(r)) = &b.data else { continue };
            let Some(bytes) = detached.next() else { break };
            let mut at = 0usize;
            for (&off, &len) in r.offset.iter().zip(r.len.iter()) {
                if at >= bytes.len() {
                    break;
                }
                let n = (len as usize).min(bytes.len() - at);
                if off.checked_add(n as u64).is_some_and(|end| end <= self.mm.guest.size()) {
                    self.mm.guest.write(off, &bytes[at..at + n]);
                }
                at += n;
            }
        }
        let nr = table::number(req.number);
        let mut ret = c.ret;
        let mut sigpipe = false;
        if let Some(desc) = table::lookup(nr) {
            let mut a = req.args;
            for v in a.iter_mut().skip(desc.args.len()) {
                *v = 0;
            }
            ret = self.check_new_fds(desc, &a, ret, link)?;
            sigpipe = ret == Errno::EPIPE.ret() && desc.epipe_sigpipe;
        }
        self.wake(c.thread, ret);
        if sigpipe {
            self.raise_to(c.thread, abi::SIGPIPE);
        }
        Ok(())
    }

    /// The current thread starts to wait (its call stays in progress); wakers
    /// take waiters in the order their waits began.
    fn begin_wait(&mut self, wait: Wait) {
        self.waits_begun += 1;
        let order = self.waits_begun;
        let t = self.thread_mut();
        t.wait = Some(wait);
        t.wait_order = order;
    }

    /// Ends `tid`'s wait: its syscall returns `ret` when it next runs.
    fn wake(&mut self, tid: u32, ret: i64) {
        if let Some(t) = self.threads.get_mut(&tid) {
            t.wait = None;
            t.woken = Some(ret);
            self.sched.ready(tid);
        }
    }

    /// clone for a new thread of this process (CLONE_VM | CLONE_THREAD |
    /// CLONE_SIGHAND, as pthread_create and std::thread make them); new
    /// processes are not supported yet.
    /// clone3 (x86_64: the `struct clone_args` at a[0], its size in a[1]),
    /// for threads as clone; its extra fields must be unused.
    fn clone3_thread(
        &mut self,
        a: &[u64; 6],
        regs: &Regs,
        cpu: &mut dyn CpuState,
        link: &mut dyn Outside,
    ) -> Result<Action, ProcessError> {
        const VER0: u64 = 64; // CLONE_ARGS_SIZE_VER0
        const KNOWN: u64 = 88; // up to and with `cgroup`
        let ret = |e: Errno| Ok(Action::Return(e.ret()));
        let (at, size) = (a[0], a[1]);
        if !(VER0..=PAGE_SIZE).contains(&size) {
            return ret(if size > PAGE_SIZE { Errno::E2BIG } else { Errno::EINVAL });
        }
        let mut args = vec![0u8; size as usize];
        if let Err(e) = self.mm.read_user(at, &mut args) {
            return ret(e);
        }
        // Fields a newer program knows and this kernel does not must be zero.
        if args.get(KNOWN as usize..).is_some_and(|rest| rest.iter().any(|&b| b != 0)) {
            return ret(Errno::E2BIG);
        }
        args.resize(KNOWN as usize, 0);
        let f = |i: usize| u64::from_le_bytes(args[i * 8..i * 8 + 8].try_into().expect("8"));
        let (flags, pidfd, child_tid, parent_tid, exit_signal) = (f(0), f(1), f(2), f(3), f(4));
        let (stack, stack_size, tls, set_tid_size, cgroup) = (f(5), f(6), f(7), f(9), f(10));
        const CLONE_PIDFD: u64 = 0x1000;
        const CLONE_THREAD: u64 = 0x1_0000;
        const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
        if flags & CLONE_THREAD != 0 && exit_signal != 0 {
            return ret(Errno::EINVAL);
        }
        if flags & 0xff != 0 {
            return ret(Errno::EINVAL); // the exit signal has its own field
        }
        if (stack == 0) != (stack_size == 0) || exit_signal > 64 {
            return ret(Errno::EINVAL);
        }
        if flags & (CLONE_PIDFD | CLONE_INTO_CGROUP) != 0 || set_tid_size != 0 || pidfd != 0 || cgroup != 0 {
            self.note("clone3 with a pidfd, a cgroup or chosen tids returned ENOSYS: not supported yet".into());
            return ret(Errno::ENOSYS);
        }
        // The new thread's stack pointer is the top of the area given.
        let top = stack.wrapping_add(stack_size);
        if flags & CLONE_THREAD == 0 {
            return self.fork_process(flags | exit_signal, [top, parent_tid, child_tid, tls], 435, link);
        }
        self.clone_thread(&[flags, top, parent_tid, child_tid, tls, 0], regs, cpu, 435, link)
    }

    fn clone_thread(
        &mut self,
        a: &[u64; 6],
        regs: &Regs,
        cpu: &mut dyn CpuState,
        nr: u64,
        link: &mut dyn Outside,
    ) -> Result<Action, ProcessError> {
        const CLONE_VM: u64 = 0x100;
        const CLONE_SIGHAND: u64 = 0x800;
        const CLONE_VFORK: u64 = 0x4000;
        const CLONE_THREAD: u64 = 0x1_0000;
        const CLONE_SETTLS: u64 = 0x8_0000;
        const CLONE_PARENT_SETTID: u64 = 0x10_0000;
        const CLONE_CHILD_CLEARTID: u64 = 0x20_0000;
        const CLONE_CHILD_SETTID: u64 = 0x100_0000;
        let (flags, stack, ptid, ctid, tls) = (a[0], a[1], a[2], a[3], a[4]);
        let ret = |e: Errno| Ok(Action::Return(e.ret()));
        if flags & CLONE_THREAD == 0 {
            return self.fork_process(flags, [stack, ptid, ctid, tls], nr, link);
        }
        if flags & CLONE_VM == 0 {
            return ret(Errno::EINVAL); // CLONE_THREAD requires CLONE_SIGHAND, which requires CLONE_VM
        }
        if flags & CLONE_VFORK != 0 {
            *self.unknown.entry(nr).or_default() += 1;
            self.note(format!("clone ({nr}) of a thread with CLONE_VFORK returned ENOSYS: not supported yet"));
            return ret(Errno::ENOSYS);
        }
        if flags & CLONE_SIGHAND == 0 {
            return ret(Errno::EINVAL); // CLONE_THREAD requires CLONE_SIGHAND
        }
        if flags & CLONE_SETTLS != 0 && tls >= USER_TOP {
            return ret(Errno::EPERM); // as arch_prctl(ARCH_SET_FS)
        }
        let tid = self.next_tid;
        self.next_tid += 1;
        // Linux creates the thread even when these writes fault.
        if flags & CLONE_PARENT_SETTID != 0 {
            let _ = self.mm.write_user(ptid, &tid.to_le_bytes());
        }
        if flags & CLONE_CHILD_SETTID != 0 {
            let _ = self.mm.write_user(ctid, &tid.to_le_bytes());
        }
        // The new thread returns 0 from the same syscall, on its own stack.
        let mut start = *regs;
        start.finish_syscall(0);
        if stack != 0 {
            start.rsp = stack;
        }
        let context = ThreadContext {
            regs: start,
            fs_base: if flags & CLONE_SETTLS != 0 { tls } else { cpu.fs_base()? },
            gs_base: cpu.gs_base()?,
            fpu: cpu.xsave()?,
        };
        let mut t = Thread::new(tid);
        // The name is the creator's, as Linux copies comm.
        t.name = self.thread().name.clone();
        // The mask is inherited; a thread starts without the alternate stack.
        t.signals.blocked = self.thread().signals.blocked;
        t.saved = Some(context);
        if flags & CLONE_CHILD_CLEARTID != 0 {
            t.clear_tid = ctid;
        }
        self.threads.insert(tid, t);
        self.sched.ready(tid);
        Ok(Action::Return(tid as i64))
    }

    /// exit of one thread: with others left, it goes (its clear_tid word is
    /// zeroed and waiters on it woken, as pthread_join expects); the last
    /// thread's exit ends the process.
    fn exit_thread(&mut self, code: i32) -> Result<Action, ProcessError> {
        if self.threads.len() == 1 {
            return Ok(Action::Exit(code));
        }
        self.release_robust_futexes();
        let clear = self.thread().clear_tid;
        if clear != 0 && self.mm.write_user(clear, &0u32.to_le_bytes()).is_ok() {
            self.futex_wake(clear, u32::MAX, 1);
        }
        let tid = self.current;
        self.threads.remove(&tid);
        self.sched.remove(tid);
        // Until the scheduler picks the next one, the process acts through
        // a thread that exists (waiting outside needs one).
        self.current = *self.threads.keys().next().expect("other threads are left");
        Ok(Action::ThreadExit)
    }

    /// The exiting thread's robust futexes (set_robust_list(2)): each word
    /// it still owns gets FUTEX_OWNER_DIED, and one waiter, if any, is
    /// woken to find it so (the next locker of a robust mutex gets
    /// EOWNERDEAD). The list is the program's memory: a bad pointer ends
    /// the walk, a cycle stops at Linux's limit of 2048 entries.
    fn release_robust_futexes(&mut self) {
        const LIMIT: usize = 2048;
        let head = self.thread().robust_list;
        if head == 0 {
            return;
        }
        let tid = self.current;
        // struct robust_list_head { next; long futex_offset; list_op_pending; }
        let (Ok(first), Ok(offset), Ok(pending)) =
            (self.mm.read_u64(head), self.mm.read_u64(head + 8), self.mm.read_u64(head + 16))
        else {
            return;
        };
        let mut entries = Vec::new();
        let mut at = first;
        while at != head && entries.len() < LIMIT {
            entries.push(at);
            match self.mm.read_u64(at & !1) {
                Ok(next) => at = next,
                Err(_) => break,
            }
        }
        if pending != 0 {
            entries.push(pending);
        }
        for entry in entries {
            // Bit 0 marks a PI futex: its first waiter gets the lock, with
            // FUTEX_OWNER_DIED; a plain one's first waiter is woken.
            let pi = entry & 1 != 0;
            let word = (entry & !1).wrapping_add(offset);
            if !word.is_multiple_of(4) {
                continue;
            }
            let Ok(v) = self.mm.read_u32(word) else { continue };
            if v & FUTEX_TID_MASK != tid {
                continue;
            }
            if pi || self.pi_waiters(word) > 0 {
                let _ = self.pi_hand_over(word, FUTEX_OWNER_DIED);
                continue;
            }
            let new = (v & FUTEX_WAITERS) | FUTEX_OWNER_DIED;
            if self.mm.write_user(word, &new.to_le_bytes()).is_ok() && v & FUTEX_WAITERS != 0 {
                self.futex_wake(word, u32::MAX, 1);
            }
        }
    }

    /// Saves the running thread's context and, if it can still run, puts
    /// it back in the queue.
    pub fn switch_out(&mut self, context: ThreadContext) {
        let tid = self.current;
        if let Some(t) = self.threads.get_mut(&tid) {
            let runnable = t.runnable();
            t.saved = Some(context);
            if runnable {
                self.sched.ready(tid);
            }
        }
    }

    /// Makes `tid` the running thread; its saved context, and the result
    /// its waiting syscall returns (with that syscall), if it was woken.
    pub fn switch_in(&mut self, tid: u32) -> Option<(ThreadContext, Option<(SyscallRequest, i64)>)> {
        let t = self.threads.get_mut(&tid)?;
        if !t.runnable() {
            return None;
        }
        let context = t.saved.take()?;
        let resumed = t.woken.take().and_then(|r| t.syscall.take().map(|req| (req, r)));
        self.current = tid;
        Some((context, resumed))
    }

    /// The waits with a deadline: (tid, deadline), by tid.
    fn timed_waits(&self) -> impl Iterator<Item = (u32, Deadline)> + '_ {
        self.threads.values().filter_map(|t| Some((t.tid, t.wait.as_ref()?.deadline()?)))
    }

    /// Whether some thread waits with a deadline (asked at every switch).
    pub fn has_timed_waits(&self) -> bool {
        self.timed_waits().next().is_some()
    }

    /// The deadlines of the timed waits (for the recording's timer).
    pub fn deadlines(&self) -> impl Iterator<Item = Deadline> + '_ {
        self.timed_waits().map(|(_, d)| d)
    }

    /// Ends, with ETIMEDOUT, the waits whose deadline has passed (the
    /// clocks are read through the broker, so replay sees the same times).
    pub fn expire_timeouts(&mut self, link: &mut dyn Outside) -> Result<(), ProcessError> {
        let mut waits: Vec<_> = self.timed_waits().collect();
        waits.sort_by_key(|(tid, _)| self.threads.get(tid).map(|t| t.wait_order));
        let mut now: BTreeMap<u64, Option<(i64, i64)>> = BTreeMap::new();
        for (tid, d) in waits {
            let t = match now.get(&d.clock) {
                Some(t) => *t,
                None => {
                    let t = self.clock_now(link, d.clock)?;
                    now.insert(d.clock, t);
                    t
                }
            };
            if t.is_some_and(|t| t >= (d.secs, d.nanos)) {
                let ret = self
                    .threads
                    .get(&tid)
                    .and_then(|t| t.wait.as_ref())
                    .map_or(Errno::ETIMEDOUT.ret(), |w| w.timed_out());
                self.wake(tid, ret);
            }
        }
        Ok(())
    }

    /// A `struct timespec` of the program's: EFAULT, or EINVAL when it is
    /// negative or its nanoseconds out of range.
    fn read_timespec(&self, at: u64) -> Result<(i64, i64), Errno> {
        let mut t = [0u8; 16];
        self.mm.read_user(at, &mut t)?;
        let secs = i64::from_le_bytes(t[..8].try_into().expect("8"));
        let nanos = i64::from_le_bytes(t[8..].try_into().expect("8"));
        if secs < 0 || !(0..1_000_000_000).contains(&nanos) {
            return Err(Errno::EINVAL);
        }
        Ok((secs, nanos))
    }

    /// The time `secs`/`nanos` from now on `clock` (a recorded clock
    /// read), as a wait's deadline; None when the clock cannot be read.
    fn deadline_after(
        &mut self,
        link: &mut dyn Outside,
        clock: u64,
        secs: i64,
        nanos: i64,
    ) -> Result<Option<Deadline>, ProcessError> {
        let Some((s, n)) = self.clock_now(link, clock)? else {
            return Ok(None);
        };
        let total = n + nanos;
        Ok(Some(Deadline {
            clock,
            secs: s.saturating_add(secs).saturating_add(total / 1_000_000_000),
            nanos: total % 1_000_000_000,
        }))
    }

    /// clock_gettime(clock) through the broker: (seconds, nanoseconds).
    fn clock_now(&mut self, link: &mut dyn Outside, clock: u64) -> Result<Option<(i64, i64)>, ProcessError> {
        let (r, b) = self.call_with_output(link, 228, [clock, 0, 0, 0, 0, 0], 1, 16)?;
        if r < 0 || b.len() != 16 {
            return Ok(None);
        }
        Ok(Some((i64::from_le_bytes(b[..8].try_into().expect("8")), i64::from_le_bytes(b[8..].try_into().expect("8")))))
    }

    /// Whether a thread exists with this tid.
    /// How many threads the process has.
    /// Every thread's id, in order.
    pub fn thread_ids(&self) -> Vec<u32> {
        self.threads.keys().copied().collect()
    }

    /// A thread's saved context (one off the vCPU).
    pub fn saved_context(&mut self, tid: u32) -> Option<&mut ThreadContext> {
        self.threads.get_mut(&tid)?.saved.as_mut()
    }

    pub fn thread_count(&self) -> usize {
        self.threads.len()
    }

    /// What the exitless path may serve now: for a process of one thread
    /// (with several, every call is where the scheduler may pick), not in
    /// chaos mode, whose writes no RLIMIT_FSIZE of its own limits, recorded
    /// in a format that has the ring. The descriptors warpd answers for
    /// itself (signalfds, `/proc/self/mem`, fd directory listings) and
    /// stderr (whose last byte warpd follows for its notes) stay on the
    /// exit path.
    pub fn ring_allow(&self) -> Option<RingAllow> {
        const RLIMIT_FSIZE: u64 = 1;
        let limited = self.rlimits.get(&RLIMIT_FSIZE).is_some_and(|l| l.0 != u64::MAX);
        if self.format < 5 || self.threads.len() != 1 || self.sched.is_chaos() || limited {
            return None;
        }
        let mut excluded = vec![2];
        excluded.extend(self.signalfds.keys().chain(self.memfiles.keys()).chain(self.fd_dirs.iter()));
        Some(RingAllow { root: self.mm.cr3(), excluded, wake: false })
    }

    /// Writing to a pipe nobody reads raises SIGPIPE, as Linux does: after
    /// a proxied call, and after one the exitless path left to warpd.
    pub fn sigpipe_if_broken(&mut self, nr: u64, ret: i64) {
        if ret == Errno::EPIPE.ret() && table::lookup(nr).is_some_and(|d| d.epipe_sigpipe) {
            self.raise_thread(abi::SIGPIPE);
        }
    }

    /// The result the exitless path left in the ring slot.
    pub fn ring_result(&self) -> i64 {
        let off = warp_syscalls::ring::page_offset(self.mm.guest.size()) + warp_syscalls::ring::RET;
        self.mm.guest.read_u64(off) as i64
    }

    pub fn has_thread(&self, tid: u32) -> bool {
        self.threads.contains_key(&tid)
    }

    /// No thread can run: waits in the outside world until one can. A timed
    /// futex wait times out (the broker sleeps to its deadline); otherwise
    /// the broker waits for a signal, which interrupts the first waiting
    /// thread that does not block it (EINTR, or a restart with SA_RESTART).
    pub fn idle(&mut self, link: &mut dyn Outside) -> Result<(), ProcessError> {
        const TIMER_ABSTIME: u64 = 1;
        const CLOCK_MONOTONIC: u64 = 1;
        // The earliest deadline (of the monotonic ones first: deadlines on
        // different clocks do not compare).
        let timed =
            self.timed_waits().min_by_key(|(_, d)| (d.clock != CLOCK_MONOTONIC, d.secs, d.nanos)).map(|(_, d)| d);
        let r = match timed {
            Some(d) => {
                // The timespec goes to the broker as bytes of our own.
                let mut ts = Vec::with_capacity(16);
                ts.extend_from_slice(&d.secs.to_le_bytes());
                ts.extend_from_slice(&d.nanos.to_le_bytes());
                let buf = bytes_in(2, ts);
                self.broker(link, 230, [d.clock, TIMER_ABSTIME, 0, 0, 0, 0], vec![buf], Caller::Idle)?.ret
            }
            None => self.broker(link, 34, [0; 6], Vec::new(), Caller::Idle)?.ret,
        };
        if r == Errno::EINTR.ret() {
            let pending = self.signals.pending;
            let target = self
                .threads
                .values()
                .find(|t| !t.runnable() && (pending | t.signals.pending) & !t.signals.blocked != 0)
                .map(|t| t.tid);
            // Unless raising it woke a thread already; a signal nobody may
            // take yet leaves the waits as they are.
            if let (false, Some(tid)) = (self.sched.others_ready(), target) {
                self.interrupt_wait(tid);
            }
            return Ok(());
        }
        // The deadline passed (pause returns only when interrupted; a broker
        // that says otherwise is asked again).
        if timed.is_some() {
            self.expire_timeouts(link)?;
        }
        Ok(())
    }

    /// The program's limit `res` (soft, hard): the one it set, else the
    /// broker's, the descriptor limit kept below the reserved range.
    fn rlimit(&mut self, res: u64, link: &mut dyn Outside) -> Result<Result<(u64, u64), Errno>, ProcessError> {
        const RLIMIT_NOFILE: u64 = 7;
        if let Some(&v) = self.rlimits.get(&res) {
            return Ok(Ok(v));
        }
        let mut out = [0u8; 16];
        let r = self.prlimit_of_broker(res, &mut out, link)?;
        if r < 0 {
            return Ok(Err(Errno(-r as i32)));
        }
        let mut cur = u64::from_le_bytes(out[..8].try_into().expect("8"));
        let mut max = u64::from_le_bytes(out[8..].try_into().expect("8"));
        if res == RLIMIT_NOFILE {
            let base = self.ident.reserved_fd_base as u64;
            cur = cur.min(base);
            max = max.min(base);
        }
        Ok(Ok((cur, max)))
    }

    /// getrlimit/setrlimit/prlimit64 for the program itself. Limits it sets
    /// are kept here, never applied to the broker; RLIMIT_NOFILE reads
    /// below the broker's reserved range.
    fn prlimit(
        &mut self,
        _pid: u64,
        res: u64,
        new: u64,
        old: u64,
        link: &mut dyn Outside,
    ) -> Result<SysResult, ProcessError> {
        const RLIMIT_NOFILE: u64 = 7;
        const RLIM_NLIMITS: u64 = 16;
        if res >= RLIM_NLIMITS {
            return Ok(Err(Errno::EINVAL));
        }
        let current = match self.rlimit(res, link)? {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        let mut next = None;
        if new != 0 {
            let mut b = [0u8; 16];
            if let Err(e) = self.mm.read_user(new, &mut b) {
                return Ok(Err(e));
            }
            let cur = u64::from_le_bytes(b[..8].try_into().expect("8"));
            let max = u64::from_le_bytes(b[8..].try_into().expect("8"));
            if cur > max {
                return Ok(Err(Errno::EINVAL));
            }
            if max > current.1 && self.ident.euid != 0 {
                return Ok(Err(Errno::EPERM));
            }
            if res == RLIMIT_NOFILE && max > self.ident.reserved_fd_base as u64 {
                return Ok(Err(Errno::EPERM));
            }
            next = Some((cur, max));
        }
        if old != 0 {
            let mut b = [0u8; 16];
            b[..8].copy_from_slice(&current.0.to_le_bytes());
            b[8..].copy_from_slice(&current.1.to_le_bytes());
            if let Err(e) = self.mm.write_user(old, &b) {
                return Ok(Err(e));
            }
        }
        if let Some(v) = next {
            self.rlimits.insert(res, v);
        }
        Ok(Ok(0))
    }

    fn prlimit_of_broker(&mut self, res: u64, out: &mut [u8; 16], link: &mut dyn Outside) -> Result<i64, ProcessError> {
        let (ret, bytes) = self.call_with_output(link, 302, [0, res, 0, 0, 0, 0], 3, 16)?;
        if bytes.len() == 16 {
            out.copy_from_slice(&bytes);
        }
        Ok(ret)
    }

    /// A broker call whose argument `arg` is an output structure of `len`
    /// bytes warpd wants back (the host's limits, random bytes).
    fn call_with_output(
        &mut self,
        link: &mut dyn Outside,
        nr: u64,
        args: [u64; 6],
        arg: u32,
        len: u32,
    ) -> Result<(i64, Vec<u8>), ProcessError> {
        let out = Buffer { arg, data: Some(buffer::Data::OutLen(len)), inout: false, out: true, written_by_ret: false };
        let reply = self.broker(link, nr, args, vec![out], Caller::Warpd)?;
        Ok((reply.ret, reply.outputs.into_iter().next().unwrap_or_default()))
    }

    fn close_range(&mut self, a: &[u64; 6], link: &mut dyn Outside) -> Result<SysResult, ProcessError> {
        let (first, last, flags) = (a[0] as u32, a[1] as u32, a[2]);
        if first > last {
            return Ok(Err(Errno::EINVAL));
        }
        let base = self.ident.reserved_fd_base as u32;
        if first >= base {
            return Ok(Ok(0));
        }
        let last = last.min(base - 1);
        Ok(result_of(self.call(link, 436, [first as u64, last as u64, flags, 0, 0, 0], Vec::new())?))
    }
}
