//! Interrupt points: where a program that computes (no syscall, no fault)
//! was stopped, so that a signal could be delivered there or another
//! thread could run, and how replay finds the same point again without a
//! performance counter.
//!
//! ```text
//!  record: SliceTimer kicks the vCPU -> Interrupted at rip in user code
//!          -> InterruptPoint { thread, registers, watched words, digest of pages written
//!             since the last reset + the SSE state } -> the trace
//!  replay: the next event is an Interrupt -> Probe planted at its rip
//!          -> each pass: registers and watched words compared (in the
//!             guest, by the stub); on a match the digest is checked
//!          -> at the point: the same signals, the same switch
//! ```
//!
//! The digest's base ("the last reset") is the start, the last interrupt
//! point and, while the process has more than one thread, the last syscall
//! boundary: places record and replay pass alike. Reading the log costs
//! about a tenth of a syscall (only the guest memory ever used is looked
//! at, in slots of 256 MiB), so single-threaded programs skip it at syscalls.
//!
//! The point is the first pass whose registers and watched words match;
//! the digest then verifies it. Where rdtsc and CPUID cannot be trapped
//! (PVM), a page written in the window can still hold bytes the program got
//! from them long before (ld.so keeps a TSC reading on the stack), so a
//! differing digest is reported to the user, not taken as a miss.

use std::collections::BTreeSet;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::arch::x86_64::{probe, GPA_PROBE, PAGE_SIZE};
use crate::arch::Regs;
use crate::hv::{FaultKind, GuestFault, HvError, Kicker, Vm};
use crate::kernel::errno::Errno;
use crate::kernel::mm::Mm;
use crate::kernel::sched::Rng;
use iced_x86::Instruction;

/// How long a thread runs before another ready thread gets the vCPU, when
/// the recording does not say.
pub const DEFAULT_SLICE: Duration = Duration::from_millis(10);

/// How soon a kick is repeated when the vCPU was stopped where no point can
/// be taken (inside warpd's guest-side stubs).
const RETRY: Duration = Duration::from_millis(1);

/// Where the program was stopped, as the trace keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterruptPoint {
    pub thread: u32,
    pub regs: Regs,
    /// blake3 of the pages written since the last reset and the SSE state.
    pub memory: [u8; 32],
    /// Pages in the digest.
    pub pages: u64,
    /// Signals from outside taken at this point, and the head of the
    /// siginfo each came with (empty: unknown).
    pub signals: Vec<i32>,
    pub signal_infos: Vec<Vec<u8>>,
    /// The thread's time slice ended here.
    pub preempted: bool,
    /// (address, value) of words the code around the point reads.
    pub watch: Vec<(u64, u64)>,
    /// How long the thread had computed since warpd last had control, in
    /// microseconds (replay's patience with the point follows from it).
    pub computed_us: u64,
    /// CPU-time itimers that expired here (bit 0 virtual, bit 1 prof).
    pub itimers: u32,
}

/// The CPU time of the calling thread (the vCPU's, when the session thread
/// asks), in nanoseconds.
pub fn thread_cpu_ns() -> u64 {
    cpu_ns(libc::CLOCK_THREAD_CPUTIME_ID)
}

fn cpu_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime into a local timespec.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// How long replay runs towards a recorded point before it reports that
/// the point was not found: a hundred times what the recording computed to
/// reach it, and at least a minute (`WARP_POINT_TIMEOUT_SECS` sets that
/// floor), since a replay stepping through a breakpoint is slower.
pub fn point_patience(computed_us: u64) -> Duration {
    let floor = std::env::var("WARP_POINT_TIMEOUT_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    Duration::from_secs(floor).max(Duration::from_micros(computed_us.saturating_mul(100)))
}

/// Replay's watchdog: kicks the vCPU twice a second, so that a replay that
/// runs on without finding its next point is noticed (see `point_patience`).
pub struct PointWatch {
    quit: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl PointWatch {
    pub fn new(kicker: Kicker) -> std::io::Result<Self> {
        let quit = Arc::new((Mutex::new(false), Condvar::new()));
        let q = quit.clone();
        let thread = std::thread::Builder::new().name("warp-point-watch".into()).spawn(move || {
            let (lock, cv) = &*q;
            let mut done = lock.lock().unwrap_or_else(|e| e.into_inner());
            while !*done {
                let (d, _) = cv.wait_timeout(done, Duration::from_millis(500)).unwrap_or_else(|e| e.into_inner());
                done = d;
                if !*done {
                    kicker.kick();
                }
            }
        })?;
        Ok(PointWatch { quit, thread: Some(thread) })
    }
}

impl Drop for PointWatch {
    fn drop(&mut self) {
        *self.quit.0.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.quit.1.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Whether the watched words hold the point's values now.
pub fn same_watched(mm: &Mm, watch: &[(u64, u64)]) -> bool {
    watch.iter().all(|&(addr, value)| mm.read_u64(addr) == Ok(value))
}

/// The words to watch at a point (`regs` at `rip`): those the code around
/// it reads, with their values now.
pub fn watch_words(mm: &Mm, regs: &Regs) -> Vec<(u64, u64)> {
    let read_code = |va: u64, n: usize| mm.peek_code(va, n);
    probe::watch_addresses(&read_code, regs)
        .into_iter()
        .filter_map(|addr| Some((addr, mm.read_u64(addr).ok()?)))
        .collect()
}

/// The flags a point compares: the arithmetic flags and DF (not RF, TF or
/// the reserved bit, which the CPU and warpd's stepping change).
pub const COMPARED_FLAGS: u64 = 0xcd5;

/// Whether `now` is the recorded register state (rip included).
pub fn same_registers(now: &Regs, recorded: &Regs) -> bool {
    let a = Regs { rflags: now.rflags & COMPARED_FLAGS, ..*now };
    let b = Regs { rflags: recorded.rflags & COMPARED_FLAGS, ..*recorded };
    a == b
}

/// The registers in the trace's order: rip, rflags, then rax .. r15.
pub fn regs_to_words(r: &Regs) -> Vec<u64> {
    vec![
        r.rip, r.rflags, r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rsp, r.rbp, r.r8, r.r9, r.r10, r.r11, r.r12,
        r.r13, r.r14, r.r15,
    ]
}

/// The registers from the trace's words; None unless there are 18.
pub fn regs_from_words(w: &[u64]) -> Option<Regs> {
    let w: &[u64; 18] = w.try_into().ok()?;
    Some(Regs {
        rip: w[0],
        rflags: w[1],
        rax: w[2],
        rbx: w[3],
        rcx: w[4],
        rdx: w[5],
        rsi: w[6],
        rdi: w[7],
        rsp: w[8],
        rbp: w[9],
        r8: w[10],
        r9: w[11],
        r10: w[12],
        r11: w[13],
        r12: w[14],
        r13: w[15],
        r14: w[16],
        r15: w[17],
    })
}

/// The pages the guest wrote since the last reset: what the backend's log
/// says, and what a checkpoint restored into a fresh VM (whose log began
/// empty) had before.
#[derive(Clone, Default)]
pub struct Written {
    carried: BTreeSet<u64>,
    logged: Vec<u64>,
}

/// How many written pages an interrupt point's digest reads (from format
/// 9): all their numbers, and the contents of this many spread evenly
/// over them.
pub const DIGEST_PAGES: usize = 64;

impl Written {
    /// Starts a new base: what was written so far no longer counts (the
    /// backend watches every page for writes again).
    pub fn reset(&mut self, vm: &mut dyn Vm, mm: &Mm) -> Result<(), HvError> {
        vm.written_pages(mm.high_water(), true)?;
        self.carried.clear();
        self.logged.clear();
        Ok(())
    }

    /// Takes in what the log holds now (before a checkpoint: its copy of
    /// this base is then complete).
    pub fn gather(&mut self, vm: &mut dyn Vm, mm: &Mm) -> Result<(), HvError> {
        self.logged = vm.written_pages(mm.high_water(), false)?;
        Ok(())
    }

    /// This base for a fresh VM: everything written so far is carried.
    pub fn carried_over(&self) -> Written {
        Written { carried: self.all().into_iter().collect(), logged: Vec::new() }
    }

    /// Every page written since the reset, in order.
    fn all(&self) -> Vec<u64> {
        if self.carried.is_empty() {
            return self.logged.clone();
        }
        let mut all = self.carried.clone();
        all.extend(&self.logged);
        all.into_iter().collect()
    }

    /// The digest of the pages written since the reset and of `fpu` (an
    /// XSAVE area: its legacy region's MXCSR and XMM registers), and the
    /// count of pages. Before format 9 every page's number and contents,
    /// in page order, with a reset at every point; from 9 (no reset at
    /// points, so that a slice's pages are not write-protected again for
    /// the next) every number and [`DIGEST_PAGES`] pages' contents.
    pub fn digest(&mut self, vm: &mut dyn Vm, mm: &Mm, fpu: &[u8], format: u32) -> Result<([u8; 32], u64), HvError> {
        self.logged = vm.written_pages(mm.high_water(), false)?;
        let pages = self.all();
        let guest = &mm.guest;
        let mut h = blake3::Hasher::new();
        let mut page = vec![0u8; PAGE_SIZE as usize];
        if format >= 9 {
            for p in &pages {
                h.update(&p.to_le_bytes());
            }
            let k = pages.len().min(DIGEST_PAGES);
            for i in 0..k {
                let p = pages[i * pages.len() / k];
                guest.read(p * PAGE_SIZE, &mut page);
                h.update(&page);
            }
        } else {
            for &p in &pages {
                guest.read(p * PAGE_SIZE, &mut page);
                h.update(&p.to_le_bytes());
                h.update(&page);
            }
        }
        // MXCSR at 24, XMM0-15 at 160..416 (Intel SDM, XSAVE legacy region).
        if fpu.len() >= 416 {
            h.update(&fpu[24..28]);
            h.update(&fpu[160..416]);
        }
        Ok((*h.finalize().as_bytes(), pages.len() as u64))
    }
}

struct TimerState {
    /// When the running thread's slice ends; None while no other thread waits.
    deadline: Option<Instant>,
    /// The slice ended (and stays ended until the next `disarm`).
    fired: bool,
    /// A point is wanted soon (signals arrived where none could be taken).
    retry: Option<Instant>,
    /// When the first timed wait of a waiting thread ends (its time comes
    /// while another computes), and whether that time came.
    wait_ends: Option<Instant>,
    wait_ended: bool,
    /// When the vCPU thread's CPU time reaches this (nanoseconds), a CPU-time
    /// itimer expires; and whether that was seen.
    cpu_deadline: Option<u64>,
    itimer_due: bool,
    /// The vCPU is in `run`: only then is it kicked.
    running: bool,
    quit: bool,
}

struct TimerShared {
    state: Mutex<TimerState>,
    wake: Condvar,
}

/// The recording's preemption timer: a host thread that kicks the vCPU when
/// the running thread's slice has ended while it computes.
pub struct SliceTimer {
    shared: Arc<TimerShared>,
    slice: Duration,
    /// Chaos mode: slice lengths drawn from this generator.
    chaos: Option<Mutex<Rng>>,
    thread: Option<JoinHandle<()>>,
}

/// The CPU-time clock of the calling thread, for another thread to read.
fn own_cpu_clock() -> libc::clockid_t {
    let mut clock: libc::clockid_t = libc::CLOCK_THREAD_CPUTIME_ID;
    // SAFETY: pthread_getcpuclockid of the calling thread into a local.
    if unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut clock) } != 0 {
        clock = libc::CLOCK_THREAD_CPUTIME_ID;
    }
    clock
}

impl SliceTimer {
    pub fn new(kicker: Kicker, slice: Duration, chaos: Option<u64>) -> std::io::Result<Self> {
        let shared = Arc::new(TimerShared {
            state: Mutex::new(TimerState {
                deadline: None,
                fired: false,
                retry: None,
                wait_ends: None,
                wait_ended: false,
                cpu_deadline: None,
                itimer_due: false,
                running: false,
                quit: false,
            }),
            wake: Condvar::new(),
        });
        let s = shared.clone();
        // Made on the thread that runs the vCPU: its CPU clock is the program's.
        let cpu_clock = own_cpu_clock();
        let thread =
            std::thread::Builder::new().name("warp-slice".into()).spawn(move || tick(&s, &kicker, cpu_clock))?;
        // Not the scheduler's stream: these draws need not be replayed
        // (the slices that result are in the trace).
        let chaos = chaos.map(|seed| Mutex::new(Rng::new(seed ^ 0x5a5a_5a5a_5a5a_5a5a)));
        Ok(SliceTimer { shared, slice, chaos, thread: Some(thread) })
    }

    /// The next slice: the setting, or in chaos mode a length drawn
    /// log-uniformly from a twentieth of it to four times it, so that both
    /// very short and long runs happen.
    fn next_slice(&self) -> Duration {
        match &self.chaos {
            None => self.slice,
            Some(rng) => {
                let u = rng.lock().unwrap_or_else(|e| e.into_inner()).unit();
                self.slice.mul_f64((1.0f64 / 20.0).powf(1.0 - u) * 4.0f64.powf(u))
            }
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, TimerState> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The vCPU is about to run: the slice starts now unless it already
    /// runs (`others_ready`: another thread waits for the vCPU; else no slice).
    /// The timer thread is woken only when it has something new to do (a
    /// slice began, or one ended while the vCPU was out), not at every run.
    pub fn enter(&self, others_ready: bool) {
        let mut s = self.state();
        let mut wake = false;
        if !others_ready {
            s.deadline = None;
            s.fired = false;
        } else if s.deadline.is_none() && !s.fired {
            s.deadline = Some(Instant::now() + self.next_slice());
            wake = true;
        }
        let now = Instant::now();
        wake |= s.deadline.is_some_and(|d| now >= d) || s.retry.is_some_and(|r| now >= r) || s.cpu_deadline.is_some();
        s.running = true;
        drop(s);
        if wake {
            self.shared.wake.notify_one();
        }
    }

    /// The vCPU stopped running.
    pub fn leave(&self) {
        self.state().running = false;
    }

    /// Whether the running thread's slice has ended.
    pub fn due(&self) -> bool {
        let s = self.state();
        s.fired || s.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// The vCPU changes threads: the next one gets a fresh slice.
    pub fn disarm(&self) {
        let mut s = self.state();
        s.deadline = None;
        s.fired = false;
        s.retry = None;
    }

    /// A waiting thread's timeout comes at `at` (None: no timed wait): the
    /// vCPU is kicked then, so that the wait ends although another thread
    /// computes.
    pub fn wait_ends_at(&self, at: Option<Instant>) {
        let mut s = self.state();
        if s.wait_ends == at {
            return;
        }
        s.wait_ends = at;
        if at.is_none() {
            s.wait_ended = false;
        }
        drop(s);
        self.shared.wake.notify_one();
    }

    /// A CPU-time itimer expires when the vCPU has used `at` nanoseconds
    /// (None: none is armed): the vCPU is kicked then.
    pub fn cpu_deadline(&self, at: Option<u64>) {
        self.state().cpu_deadline = at;
    }

    /// Whether a CPU-time itimer's time came (cleared by the look).
    pub fn take_itimer_due(&self) -> bool {
        std::mem::take(&mut self.state().itimer_due)
    }

    /// Whether a waiting thread's timeout came (cleared by the next look).
    pub fn take_wait_ended(&self) -> bool {
        std::mem::take(&mut self.state().wait_ended)
    }

    /// Kick again soon: the point wanted could not be taken where the vCPU stopped.
    pub fn retry(&self) {
        self.state().retry = Some(Instant::now() + RETRY);
        self.shared.wake.notify_one();
    }
}

impl Drop for SliceTimer {
    fn drop(&mut self) {
        self.state().quit = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn tick(shared: &TimerShared, kicker: &Kicker, cpu_clock: libc::clockid_t) {
    let mut s = shared.state.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if s.quit {
            return;
        }
        let now = Instant::now();
        // The vCPU's CPU time moves only while it runs (and no faster than
        // the clock on the wall): look again when it could have got there.
        let mut cpu_at = None;
        if let (Some(d), true) = (s.cpu_deadline, s.running) {
            let used = cpu_ns(cpu_clock);
            if used >= d {
                s.itimer_due = true;
                s.cpu_deadline = None;
                kicker.kick();
                continue;
            }
            cpu_at = Some(now + Duration::from_nanos(d - used));
        }
        let next = [s.deadline, s.retry, s.wait_ends, cpu_at].into_iter().flatten().min();
        match next {
            Some(at) if now >= at && s.running => {
                if s.deadline.is_some_and(|d| now >= d) {
                    s.fired = true;
                    // Until the machine takes the point, keep asking.
                    s.deadline = Some(now + RETRY);
                }
                if s.retry.is_some_and(|r| now >= r) {
                    s.retry = None;
                }
                if s.wait_ends.is_some_and(|w| now >= w) {
                    s.wait_ended = true;
                    s.wait_ends = Some(now + RETRY);
                }
                kicker.kick();
            }
            Some(at) if now < at => {
                s = shared.wake.wait_timeout(s, at - now).unwrap_or_else(|e| e.into_inner()).0;
            }
            _ => {
                s = shared.wake.wait(s).unwrap_or_else(|e| e.into_inner());
            }
        }
    }
}

/// Replay's search for a recorded point: the site's instruction replaced
/// by a jump to an in-guest stub that compares registers (see
/// `arch::x86_64::probe`), or, where no jump fits, a breakpoint whose every
/// hit the host compares. The first pass always stops (a breakpoint): the
/// registers that differ from the point's then tell the stub which one to
/// look at first, without touching the flags.
#[derive(Clone)]
pub struct Probe {
    pub point: InterruptPoint,
    mode: Mode,
    /// The site's instruction, where a jump can replace it, and the free
    /// address for the stub.
    plan: Option<(Instruction, u64)>,
    /// The site's bytes (as many as the longest patch).
    code: Vec<u8>,
    planted: bool,
}

/// How the probe stops the program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `int3` at the site, for the first pass (then a jump).
    Learning,
    /// `int3` at the site: an exit per pass.
    Breakpoint,
    /// A jump to the stub at `stub_va`: an exit only when the registers match.
    Jump { stub_va: u64, exit_at: u64, moved_at: u64, len: usize },
}

/// What the host does after a pass that was not the point.
pub enum Miss {
    /// Go on at these registers (the stub's moved instruction).
    Continue(Regs),
    /// Run the site's own instruction once, stepped, then plant again.
    Step(Regs),
}

/// `int3`.
const BREAKPOINT: u8 = 0xcc;
/// How far a rel32 jump reaches, with a margin for the stub's own length.
const REL32_REACH: u64 = (1 << 31) - (1 << 20);
const STUB_PAGES: u64 = 2;

impl Probe {
    /// Plants a probe for `point` in the program's code.
    pub fn new(point: InterruptPoint, mm: &mut Mm) -> Result<Self, Errno> {
        let site = point.regs.rip;
        let code = mm.peek_code(site, 15);
        if code.is_empty() {
            return Err(Errno::EFAULT);
        }
        let plan = probe::patchable(&code, site)
            .and_then(|ins| Some((ins, mm.free_near(site, STUB_PAGES * PAGE_SIZE, REL32_REACH)?)));
        let mode = if plan.is_some() { Mode::Learning } else { Mode::Breakpoint };
        let mut p = Probe { point, mode, plan, code, planted: false };
        p.plant(mm)?;
        Ok(p)
    }

    pub fn site(&self) -> u64 {
        self.point.regs.rip
    }

    /// The bytes the probe has replaced now: (site, length), if planted.
    pub fn patched(&self) -> Option<(u64, u64)> {
        let len = match self.mode {
            Mode::Learning | Mode::Breakpoint => 1,
            Mode::Jump { len, .. } => len as u64,
        };
        self.planted.then_some((self.site(), len))
    }

    /// Where the program is, for reports: inside the stub it is at the site.
    pub fn program_rip(&self, rip: u64) -> u64 {
        match self.mode {
            Mode::Jump { stub_va, .. } if (stub_va..stub_va + STUB_PAGES * PAGE_SIZE).contains(&rip) => self.site(),
            _ => rip,
        }
    }

    /// Whether the fault is this probe's stop.
    pub fn is_hit(&self, f: &GuestFault) -> bool {
        match self.mode {
            Mode::Learning | Mode::Breakpoint => {
                f.kind == FaultKind::Breakpoint && self.planted && f.rip == self.site() + 1
            }
            // PVM reports an `out` with rip after it, VMX/SVM at it.
            Mode::Jump { exit_at, .. } => {
                matches!(f.kind, FaultKind::PortIo { .. }) && (f.rip == exit_at || f.rip == exit_at + 2)
            }
        }
    }

    /// The bytes over the site now, and the program's own.
    fn patch_and_original(&self) -> (Vec<u8>, &[u8]) {
        match self.mode {
            Mode::Learning | Mode::Breakpoint => (vec![BREAKPOINT], &self.code[..1]),
            Mode::Jump { stub_va, len, .. } => {
                let mut patch = vec![BREAKPOINT; len];
                patch[0] = 0xe9;
                let rel = stub_va.wrapping_sub(self.site() + 5) as i32;
                patch[1..5].copy_from_slice(&rel.to_le_bytes());
                (patch, &self.code[..len])
            }
        }
    }

    /// Puts the jump or the breakpoint over the site.
    pub fn plant(&mut self, mm: &Mm) -> Result<(), Errno> {
        if !self.planted {
            mm.poke(self.site(), &self.patch_and_original().0)?;
            self.planted = true;
        }
        Ok(())
    }

    /// Puts the program's bytes back (the stub stays).
    pub fn unplant(&mut self, mm: &Mm) -> Result<(), Errno> {
        if self.planted {
            let original = self.patch_and_original().1.to_vec();
            mm.poke(self.site(), &original)?;
            self.planted = false;
        }
        Ok(())
    }

    /// After a pass (`regs`: the program's, at the site) that was not the
    /// point. The first one sets up the jump, its stub looking first at a
    /// register that moved.
    pub fn missed(&mut self, mm: &mut Mm, regs: Regs) -> Result<Miss, Errno> {
        if self.mode == Mode::Learning {
            self.unplant(mm)?;
            let pre = probe::moving_register(&regs, &self.point.regs);
            let built = self.plan.as_ref().and_then(|(ins, stub_va)| {
                let s = probe::build(ins, *stub_va, &self.point.regs, COMPARED_FLAGS, &self.point.watch, pre)?;
                Some((s, *stub_va, ins.len()))
            });
            self.mode = match built {
                Some((stub, stub_va, len)) => {
                    mm.kernel.write(GPA_PROBE, &stub.code);
                    mm.kernel.write(GPA_PROBE + PAGE_SIZE, &stub.data);
                    mm.map_stub(stub_va, GPA_PROBE, STUB_PAGES)?;
                    Mode::Jump { stub_va, exit_at: stub.exit_at, moved_at: stub.moved_at, len }
                }
                None => Mode::Breakpoint,
            };
        }
        match self.mode {
            Mode::Jump { moved_at, .. } => {
                self.plant(mm)?;
                Ok(Miss::Continue(Regs { rip: moved_at, ..regs }))
            }
            Mode::Learning | Mode::Breakpoint => {
                self.unplant(mm)?;
                Ok(Miss::Step(regs))
            }
        }
    }

    /// The point was found: the program's code as it was, the stub gone.
    pub fn release(mut self, mm: &mut Mm) -> Result<(), Errno> {
        self.unplant(mm)?;
        if let Mode::Jump { stub_va, .. } = self.mode {
            mm.unmap_stub(stub_va, GPA_PROBE, STUB_PAGES)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_go_through_the_trace_words() {
        let r = Regs {
            rax: 1,
            rbx: 2,
            rcx: 3,
            rdx: 4,
            rsi: 5,
            rdi: 6,
            rsp: 7,
            rbp: 8,
            r8: 9,
            r9: 10,
            r10: 11,
            r11: 12,
            r12: 13,
            r13: 14,
            r14: 15,
            r15: 16,
            rip: 17,
            rflags: 18,
        };
        assert_eq!(regs_from_words(&regs_to_words(&r)), Some(r));
        assert_eq!(regs_from_words(&[1, 2, 3]), None);
    }

    #[test]
    fn points_compare_flags_that_code_can_see() {
        let a = Regs { rip: 0x401000, rflags: 0x246, ..Default::default() };
        // RF and TF differ: still the same point.
        assert!(same_registers(&Regs { rflags: 0x246 | 0x1_0000 | 0x100, ..a }, &a));
        // ZF differs: not.
        assert!(!same_registers(&Regs { rflags: 0x206, ..a }, &a));
        assert!(!same_registers(&Regs { rax: 1, ..a }, &a));
    }
}
