//! warpd's side of the exitless syscall path (`warp_syscalls::ring` has
//! the page, the protocol and the log).
//!
//! ```text
//!  record: the broker's poller serves the program's calls; before each
//!          run of the vCPU warpd says what it may (RecordRing::arm: on or
//!          off, the page-table root, warpd's own descriptors); after each
//!          exit it takes the log (RecordRing::take) and records one
//!          RingCall per call, before anything else of that exit
//!  replay: a thread of warpd's (ReplayRing) answers from a batch of the
//!          RingCalls that come next in the trace, checking each request
//!          (number, arguments, the digest of what a write reads) and
//!          writing what a read got; anything else is declined and the
//!          exit path meets the event, as a divergence if it is one
//! ```

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use warp_syscalls::ring::{self, Log, Request, Served, Slot};

use crate::hv::memory::MemFd;
use crate::kernel::outside::RingAllow;

/// How long a poller spins for the next request before it sleeps.
const SPIN_WINDOW: Duration = Duration::from_micros(300);

/// Whether this host can give a poller a core of its own: the vCPU takes
/// one, the poller spins on another (with one CPU it would take the
/// vCPU's time, and a call would cost milliseconds).
/// (The process's CPUs are its main thread's: a session's vCPU thread may
/// be pinned already.)
pub fn host_allows() -> bool {
    // SAFETY: CPU_COUNT reads a set sched_getaffinity filled.
    process_cpus().is_some_and(|set| unsafe { libc::CPU_COUNT(&set) } >= 2)
}

fn process_cpus() -> Option<libc::cpu_set_t> {
    // SAFETY: sched_getaffinity of the main thread into a zeroed set of ours.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        let r = libc::sched_getaffinity(libc::getpid(), std::mem::size_of::<libc::cpu_set_t>(), &mut set);
        (r == 0).then_some(set)
    }
}

fn slot_of(guest: &MemFd) -> Slot {
    let base = guest.host_addr() + ring::page_offset(guest.size());
    // SAFETY: the ring page is inside the guest mapping, which the caller
    // keeps (a MemFd clone) as long as the slot.
    unsafe { Slot::new(base as *mut u8) }
}

/// Recording: the log the broker appends to, and the page's slot.
pub struct RecordRing {
    log_mem: MemFd,
    log: Log,
    slot: Slot,
    tables: OwnedFd,
    tables_size: u64,
    _guest: MemFd,
}

impl RecordRing {
    /// The log, and a read-only descriptor of warpd's kernel memory for the
    /// broker (it walks the page tables in it and can change nothing).
    pub fn new(kernel: &MemFd, guest: &MemFd) -> std::io::Result<RecordRing> {
        let log_mem = MemFd::create("warp-ring-log", ring::LOG_SIZE).map_err(std::io::Error::other)?;
        // SAFETY: the mapping is LOG_SIZE bytes and lives in log_mem, kept here.
        let log = unsafe { Log::new(log_mem.host_addr() as *mut u8) };
        let path = std::ffi::CString::new(format!("/proc/self/fd/{}", kernel.fd().as_raw_fd())).expect("no NUL");
        // SAFETY: open with a valid path; the result is checked.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor of ours.
        let tables = unsafe { OwnedFd::from_raw_fd(fd) };
        let slot = slot_of(guest);
        Ok(RecordRing { log_mem, log, slot, tables, tables_size: kernel.size(), _guest: guest.clone() })
    }

    /// What the broker gets (`BrokerLink::start`): the page tables
    /// (read-only), their size, and the log.
    pub fn for_broker(&self) -> (BorrowedFd<'_>, u64, BorrowedFd<'_>) {
        (self.tables.as_fd(), self.tables_size, self.log_mem.fd())
    }

    /// The host CPU the vCPU's thread is pinned to: the broker's poller
    /// keeps off it.
    pub fn vcpu_cpu(&self, cpu: Option<u32>) {
        self.log.set_vcpu_cpu(cpu);
    }

    pub fn arm(&self, allow: Option<&RingAllow>) {
        match allow {
            Some(a) => {
                self.log.allow(true, a.root, &a.excluded);
                self.slot.enable(true);
                if a.wake {
                    self.slot.wake();
                }
            }
            None => {
                self.log.allow(false, 0, &[]);
                self.slot.enable(false);
            }
        }
    }

    /// The calls the broker served since the last take, checked: the log is
    /// the broker's, so an entry no ring call could have left is refused.
    pub fn take(&self) -> Result<Vec<Served>, String> {
        let served = self.log.take()?;
        for s in &served {
            let plausible = ring::CALLS.contains(&s.nr)
                && match ring::buffer(s.nr, &s.args) {
                    Some((_, len, true)) => {
                        let len = len.min(ring::MAX_DATA);
                        // A count no larger than the buffer, or a whole structure.
                        s.output.len() as u64 == ring::written(s.nr, s.ret, len)
                            && (s.ret <= len as i64 || ring::fills_whole(s.nr))
                    }
                    _ => s.output.is_empty(),
                };
            if !plausible {
                return Err(format!("an entry for syscall {} returning {} is not one the ring serves", s.nr, s.ret));
            }
        }
        Ok(served)
    }
}

/// A RingCall of the trace, ready for the replay poller.
#[derive(Clone, Debug, Default)]
pub struct Planned {
    pub nr: u64,
    pub args: [u64; 6],
    pub ret: i64,
    /// blake3 of what a write reads (empty otherwise).
    pub input: Vec<u8>,
    pub output: Vec<u8>,
    pub stream: u32,
    /// Replayed for the first time: a write to a stream is re-emitted.
    pub emit: bool,
}

#[derive(Default)]
struct Batch {
    allowed: bool,
    root: u64,
    /// The index of the first planned call's event.
    start: usize,
    planned: Vec<Planned>,
    served: usize,
    /// What writes sent to the original stdout (1) or stderr (2).
    emitted: Vec<(u32, Vec<u8>)>,
}

struct Shared {
    slot: Slot,
    kernel: MemFd,
    guest: MemFd,
    batch: Mutex<Batch>,
    quit: AtomicBool,
    /// The batch holds a call the ring is to answer next.
    pending: AtomicBool,
}

/// Replay: the poller thread and the batch it answers from.
pub struct ReplayRing {
    shared: Arc<Shared>,
    poller: Option<std::thread::JoinHandle<()>>,
}

impl ReplayRing {
    /// `vcpu_cpu`: the host CPU the vCPU's thread is pinned to (the poller keeps off it).
    pub fn start(kernel: &MemFd, guest: &MemFd, vcpu_cpu: Option<u32>) -> std::io::Result<ReplayRing> {
        let slot = slot_of(guest);
        let shared = Arc::new(Shared {
            slot,
            kernel: kernel.clone(),
            guest: guest.clone(),
            batch: Mutex::new(Batch::default()),
            quit: AtomicBool::new(false),
            pending: AtomicBool::new(false),
        });
        let sh = shared.clone();
        let poller = std::thread::Builder::new().name("ring-replay".into()).spawn(move || {
            // Not on the vCPU's CPU (this thread inherited the pin).
            if let Some(set) = process_cpus() {
                // SAFETY: sets this thread's affinity to a set read above.
                unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
            }
            if let Some(c) = vcpu_cpu {
                ring::keep_off_cpu(c);
            }
            while !sh.quit.load(Ordering::Acquire) {
                let quit = || sh.quit.load(Ordering::Acquire);
                sh.slot.wait_posted(SPIN_WINDOW, &quit, &|| sh.pending.load(Ordering::Acquire), &mut || {});
                let Some(req) = sh.slot.claim() else { continue };
                let (state, ret) = answer(&sh, &req).unwrap_or((ring::DECLINED, 0));
                sh.slot.answer(state, ret);
            }
        })?;
        Ok(ReplayRing { shared, poller: Some(poller) })
    }

    /// Before the vCPU runs: the ring answers the RingCalls from event
    /// index `pos` on (`plan(from)` gives those from `from`, up to the
    /// next other event), or nothing.
    pub fn arm(&self, allow: Option<&RingAllow>, pos: usize, plan: impl FnOnce(usize) -> Vec<Planned>) {
        let mut b = self.shared.batch.lock().unwrap_or_else(|e| e.into_inner());
        if b.start != pos || b.served != 0 {
            b.planned.clear();
            b.served = 0;
            b.start = pos;
        }
        match allow {
            Some(a) => {
                if b.planned.len() < 64 {
                    let from = b.start + b.planned.len();
                    let more = plan(from);
                    b.planned.extend(more);
                }
                b.root = a.root;
                b.allowed = !b.planned.is_empty();
            }
            None => b.allowed = false,
        }
        let on = b.allowed;
        drop(b);
        self.shared.pending.store(on, Ordering::Release);
        self.shared.slot.enable(on);
        // The trace says the next call is the ring's: the poller waits for it.
        if on {
            self.shared.slot.wake();
        }
    }

    /// After an exit: how many calls the ring answered, and what they sent
    /// to the original stdout and stderr.
    pub fn collect(&self) -> (usize, Vec<(u32, Vec<u8>)>) {
        let mut b = self.shared.batch.lock().unwrap_or_else(|e| e.into_inner());
        let n = b.served;
        b.planned.drain(..n);
        b.start += n;
        b.served = 0;
        (n, std::mem::take(&mut b.emitted))
    }
}

impl Drop for ReplayRing {
    fn drop(&mut self) {
        self.shared.quit.store(true, Ordering::Release);
        self.shared.slot.enable(false);
        ring::futex_wake(self.shared.slot.poller());
        if let Some(p) = self.poller.take() {
            let _ = p.join();
        }
    }
}

/// Why a recorded ring call does not fit what the program does now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unlike {
    /// The read's buffer is smaller than what the recording's read got.
    Smaller,
    /// The write's buffer holds other bytes than the recording's did.
    OtherData,
}

/// A recorded ring call's effect on its buffer, the guest-memory runs
/// `ranges`: a read's `output` written there, or a write's bytes read and
/// checked against `input` (their blake3). The bytes a write sent (at
/// most `ret`), for re-emitting; empty for a read.
pub fn apply_recorded(
    guest: &MemFd,
    ranges: &[(u64, u64)],
    out: bool,
    output: &[u8],
    input: &[u8],
    ret: i64,
) -> Result<Vec<u8>, Unlike> {
    if out {
        if ranges.iter().map(|r| r.1).sum::<u64>() < output.len() as u64 {
            return Err(Unlike::Smaller);
        }
        let mut at = 0usize;
        for &(off, n) in ranges {
            let take = (n as usize).min(output.len() - at);
            guest.write(off, &output[at..at + take]);
            at += take;
        }
        return Ok(Vec::new());
    }
    let mut bytes = Vec::new();
    for &(off, n) in ranges {
        let start = bytes.len();
        bytes.resize(start + n as usize, 0);
        guest.read(off, &mut bytes[start..]);
    }
    if blake3::hash(&bytes).as_bytes()[..] != input[..] {
        return Err(Unlike::OtherData);
    }
    bytes.truncate(ret.max(0) as usize);
    Ok(bytes)
}

fn table_word(kernel: &MemFd, gpa: u64) -> Option<u64> {
    (gpa.is_multiple_of(8) && gpa.checked_add(8)? <= kernel.size()).then(|| kernel.read_u64(gpa))
}

/// The recorded answer to a request, when it is the next planned call's.
fn answer(sh: &Shared, req: &Request) -> Option<(u32, i64)> {
    let mut b = sh.batch.lock().unwrap_or_else(|e| e.into_inner());
    if !b.allowed {
        return None;
    }
    let p = b.planned.get(b.served)?.clone();
    let n = ring::arity(p.nr);
    if req.nr != p.nr || req.args[..n] != p.args[..n] {
        return None;
    }
    if let Some((addr, len, out)) = ring::buffer(req.nr, &req.args) {
        let ranges = ring::user_ranges(|g| table_word(&sh.kernel, g), b.root, sh.guest.size(), addr, len, out)?;
        let sent = apply_recorded(&sh.guest, &ranges, out, &p.output, &p.input, p.ret).ok()?;
        if p.emit && !sent.is_empty() && matches!(p.stream, 1 | 2) {
            b.emitted.push((p.stream, sent));
        }
    }
    b.served += 1;
    Some((if ring::finishes(p.nr, p.ret) { ring::FINISH } else { ring::DONE }, p.ret))
}
