//! The exitless syscall path's shared knowledge: the layout of the ring
//! page the guest's trampoline posts to, the states a request goes
//! through, which calls may take it, the log a recording's broker appends
//! the calls it served to, and the page-table walk both pollers use to
//! find the program's buffers (x86_64 4-level tables).
//!
//! ```text
//!  guest (trampoline, CPL3)          poller (broker: record; warpd: replay)
//!   IDLE -> POSTED (nr, args)  ----->  CAS POSTED -> CLAIMED
//!   spin; after SPIN_POLLS:            perform / answer from the trace
//!     CAS POSTED -> CANCELLED          ret, then DONE, FINISH or DECLINED
//!     (won: the exit path)
//!   DONE: rax = ret, back to the program
//!   FINISH: the `out` at FINISH_SITE (warpd ends the call: SIGPIPE)
//!   DECLINED / CANCELLED: the ordinary exit path with the same registers
//! ```
//!
//! The page is the program's to scribble on: everything a poller reads
//! from it is checked as a syscall's arguments are, and a poller copies
//! the request out once before using it.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

pub const PAGE: u64 = 4096;

/// Offsets in the ring page (mapped at the trampoline's address).
/// `out %al, $port`: the exit path (rip after it: `EXIT_SITE + 2`).
pub const EXIT_SITE: u64 = 0;
/// `out %al, $port`: a call the poller performed that warpd must end.
pub const FINISH_SITE: u64 = 4;
/// Where `syscall` lands (LSTAR).
pub const ENTRY: u64 = 0x10;
/// The request slot.
pub const STATE: u64 = 0x800;
/// The poller's futex word: AWAKE or ASLEEP (it then takes no request).
pub const POLLER: u64 = 0x804;
/// Set by warpd before each run: whether the trampoline tries the ring.
pub const ENABLED: u64 = 0x808;
pub const NR: u64 = 0x810;
pub const ARGS: u64 = 0x818;
pub const RET: u64 = 0x848;
pub const SAVE_RCX: u64 = 0x850;
pub const SAVE_RSP: u64 = 0x858;
/// 512 bits: the numbers the trampoline posts (the rest take the exit).
pub const BITMAP: u64 = 0x900;
/// Top of the few bytes of stack the trampoline needs to restore rflags.
pub const STACK_TOP: u64 = 0x1000;

pub const IDLE: u32 = 0;
pub const POSTED: u32 = 1;
pub const CLAIMED: u32 = 2;
pub const DONE: u32 = 3;
pub const CANCELLED: u32 = 4;
pub const DECLINED: u32 = 5;
pub const FINISH: u32 = 6;

pub const AWAKE: u32 = 0;
pub const ASLEEP: u32 = 1;

/// Pauses the guest spins for a claim before it takes the exit path.
pub const SPIN_POLLS: u32 = 4000;

/// How long a replay's poller spins while the trace says the ring served
/// the next call (a program that posts by itself and gives up on its own
/// clock then finds it claimed, as in the recording).
pub const LONG_WINDOW: std::time::Duration = std::time::Duration::from_millis(50);

/// The largest buffer a ring call moves (larger ones take the exit path).
pub const MAX_DATA: u64 = 1 << 20;

/// The calls the ring serves: read, write, fstat, lseek, pread64,
/// pwrite64, getdents64, clock_gettime, and newfstatat of a descriptor
/// (an empty path with AT_EMPTY_PATH: how glibc's fstat asks).
pub const CALLS: &[u64] = &[0, 1, 5, 8, 17, 18, 217, 228, 262];

pub const AT_EMPTY_PATH: u64 = 0x1000;
const AT_SYMLINK_NOFOLLOW: u64 = 0x100;
const AT_NO_AUTOMOUNT: u64 = 0x800;

/// Whether a newfstatat's flags are ones the ring takes (the path must
/// also be empty, which the poller reads).
pub fn fstatat_flags_ok(flags: u64) -> bool {
    flags & AT_EMPTY_PATH != 0 && flags & !(AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT) == 0
}

/// `struct stat` and `struct timespec`, as x86_64 Linux writes them.
const STAT: u64 = 144;
const TIMESPEC: u64 = 16;

/// The clocks the ring reads (the others, the CPU-time ones and those of
/// descriptors, take the exit path): REALTIME, MONOTONIC,
/// MONOTONIC_RAW, REALTIME_COARSE, MONOTONIC_COARSE, BOOTTIME, TAI.
pub const CLOCKS: &[u64] = &[0, 1, 4, 5, 6, 7, 11];

/// Whether the call's first argument is a descriptor (all but clock_gettime).
pub fn on_fd(nr: u64) -> bool {
    nr != 228
}

/// The buffer of a ring call: (argument with the address, bytes, whether
/// the call writes it). The length of a read is an upper bound: the
/// result says how much was written ([`written`]).
pub fn buffer(nr: u64, args: &[u64; 6]) -> Option<(u64, u64, bool)> {
    match nr {
        0 | 17 | 217 => Some((args[1], args[2], true)),
        1 | 18 => Some((args[1], args[2], false)),
        5 => Some((args[1], STAT, true)),
        262 => Some((args[2], STAT, true)),
        228 => Some((args[1], TIMESPEC, true)),
        _ => None,
    }
}

/// Whether a served call fills its whole structure when it succeeds
/// (fstat, newfstatat, clock_gettime), rather than returning a count.
pub fn fills_whole(nr: u64) -> bool {
    matches!(nr, 5 | 228 | 262)
}

/// How many bytes of its buffer (`len`) a served call wrote, by its result:
/// the count for reads, the whole structure for fstat and clock_gettime
/// when they succeed.
pub fn written(nr: u64, ret: i64, len: u64) -> u64 {
    match fills_whole(nr) {
        true if ret == 0 => len,
        true => 0,
        false => (ret.max(0) as u64).min(len),
    }
}

/// How many arguments a ring call takes (the rest are not its input).
pub fn arity(nr: u64) -> usize {
    match nr {
        5 | 228 => 2,
        0 | 1 | 8 | 217 => 3,
        _ => 4, // pread64, pwrite64, newfstatat
    }
}

/// Whether a served call is left to warpd to end (FINISH): a write that
/// found no reader, whose SIGPIPE warpd raises.
pub fn finishes(nr: u64, ret: i64) -> bool {
    ret == -(libc::EPIPE as i64) && matches!(nr, 1 | 18)
}

/// The ring page's offset in guest memory of `size` bytes: its last page.
pub fn page_offset(guest_size: u64) -> u64 {
    guest_size - PAGE
}

/// The bitmap words for [`CALLS`].
pub fn bitmap() -> [u64; 8] {
    let mut b = [0u64; 8];
    for &nr in CALLS {
        b[(nr / 64) as usize] |= 1 << (nr % 64);
    }
    b
}

/// The word at `off` of a shared page mapped at `base`.
///
/// # Safety
/// `base + off` must be a 4-aligned address inside a live shared mapping.
pub unsafe fn word32<'a>(base: *mut u8, off: u64) -> &'a AtomicU32 {
    // SAFETY: the caller guarantees the address; atomics tolerate the other
    // side's concurrent access.
    unsafe { AtomicU32::from_ptr(base.add(off as usize) as *mut u32) }
}

/// # Safety
/// As [`word32`], 8-aligned.
pub unsafe fn word64<'a>(base: *mut u8, off: u64) -> &'a AtomicU64 {
    // SAFETY: as above.
    unsafe { AtomicU64::from_ptr(base.add(off as usize) as *mut u64) }
}

/// A request as a poller copied it out of the page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    pub nr: u64,
    pub args: [u64; 6],
}

/// The request slot of a ring page mapped at `base`, as a poller sees it.
pub struct Slot {
    base: *mut u8,
}

// SAFETY: the page is shared memory with no thread affinity; every access
// is atomic.
unsafe impl Send for Slot {}
// SAFETY: as above.
unsafe impl Sync for Slot {}

impl Slot {
    /// # Safety
    /// `base` must be a ring page mapping that outlives the value.
    pub unsafe fn new(base: *mut u8) -> Slot {
        Slot { base }
    }

    fn w32(&self, off: u64) -> &AtomicU32 {
        // SAFETY: `base` is a live page (new's contract) and `off` one of the
        // aligned offsets above.
        unsafe { word32(self.base, off) }
    }

    fn w64(&self, off: u64) -> &AtomicU64 {
        // SAFETY: as above.
        unsafe { word64(self.base, off) }
    }

    pub fn state(&self) -> u32 {
        self.w32(STATE).load(Ordering::Acquire)
    }

    /// Takes the posted request, unless the guest cancelled it first.
    pub fn claim(&self) -> Option<Request> {
        self.w32(STATE).compare_exchange(POSTED, CLAIMED, Ordering::AcqRel, Ordering::Acquire).ok()?;
        let nr = self.w64(NR).load(Ordering::Relaxed);
        let mut args = [0u64; 6];
        for (i, a) in args.iter_mut().enumerate() {
            *a = self.w64(ARGS + 8 * i as u64).load(Ordering::Relaxed);
        }
        Some(Request { nr, args })
    }

    /// Answers the claimed request: `DONE`/`FINISH` with `ret`, or `DECLINED`.
    pub fn answer(&self, state: u32, ret: i64) {
        self.w64(RET).store(ret as u64, Ordering::Relaxed);
        self.w32(STATE).store(state, Ordering::Release);
    }

    pub fn poller(&self) -> &AtomicU32 {
        self.w32(POLLER)
    }

    /// The poller's wait for a posted request: it spins for `window`
    /// after the last one (`awake()` lengthens that to `LONG_WINDOW`),
    /// then sleeps (the guest takes the exit path meanwhile) until
    /// [`Slot::wake`], or a second passes, or `quit`.
    /// `tick` runs every few hundred polls (the broker's poller moves off
    /// the vCPU's CPU there as soon as warpd says which it is).
    pub fn wait_posted(
        &self,
        window: std::time::Duration,
        quit: &dyn Fn() -> bool,
        awake: &dyn Fn() -> bool,
        tick: &mut dyn FnMut(),
    ) {
        let mut since = std::time::Instant::now();
        let mut polls = 0u32;
        loop {
            if self.state() == POSTED {
                return;
            }
            std::hint::spin_loop();
            polls = polls.wrapping_add(1);
            if !polls.is_multiple_of(256) {
                continue;
            }
            // Whoever else wants this CPU (the broker's own thread doing an
            // exit-path call, warpd's) gets it: a spin must not slow them.
            std::thread::yield_now();
            tick();
            if quit() {
                return;
            }
            if since.elapsed() > window && (!awake() || since.elapsed() > LONG_WINDOW) {
                let word = self.poller();
                word.store(ASLEEP, Ordering::SeqCst);
                if self.state() != POSTED {
                    futex_wait(word, ASLEEP, std::time::Duration::from_secs(1));
                }
                word.store(AWAKE, Ordering::SeqCst);
                since = std::time::Instant::now();
            }
        }
    }

    /// Wakes a sleeping poller (warpd, before the program runs on). The
    /// word changes first, so a poller between saying it sleeps and
    /// sleeping does not sleep (its wait finds the word changed), and the
    /// program posts again at once.
    pub fn wake(&self) {
        if self.poller().swap(AWAKE, Ordering::SeqCst) == ASLEEP {
            futex_wake(self.poller());
        }
    }

    pub fn enable(&self, on: bool) {
        self.w32(ENABLED).store(on as u32, Ordering::Release);
    }
}

/// Waits on a futex word of a shared mapping while it holds `value`, at
/// most `timeout`.
pub fn futex_wait(word: &AtomicU32, value: u32, timeout: std::time::Duration) {
    let ts = libc::timespec { tv_sec: timeout.as_secs() as libc::time_t, tv_nsec: timeout.subsec_nanos() as i64 };
    // SAFETY: FUTEX_WAIT on a live, aligned word with a valid timespec.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAIT, value, &ts as *const libc::timespec);
    }
}

/// Keeps the calling thread off host CPU `cpu` (on the others it may use).
pub fn keep_off_cpu(cpu: u32) {
    // SAFETY: affinity calls on this thread with a set of ours.
    unsafe {
        let size = std::mem::size_of::<libc::cpu_set_t>();
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(libc::getpid(), size, &mut set) != 0 || (cpu as usize) >= libc::CPU_SETSIZE as usize
        {
            return;
        }
        libc::CPU_CLR(cpu as usize, &mut set);
        if libc::CPU_COUNT(&set) > 0 {
            libc::sched_setaffinity(0, size, &set);
        }
    }
}

/// Wakes whoever waits on a futex word of a shared mapping.
pub fn futex_wake(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE on a live, aligned word.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, i32::MAX);
    }
}

// ---- the page-table walk ----

const PTE_PRESENT: u64 = 1;
const PTE_WRITE: u64 = 2;
const PTE_USER: u64 = 4;
const PTE_ADDR: u64 = 0x000f_ffff_ffff_f000;
/// One past the highest address a user buffer may reach (Linux's TASK_SIZE).
pub const USER_TOP: u64 = 0x7fff_ffff_f000;
/// The first guest-physical address of guest memory.
pub const USER_GPA_BASE: u64 = 1 << 32;

/// The guest-memory ranges (offset, len) behind [va, va+len) when the
/// program may read (with `write`, write) all of it, as the CPU checks;
/// `table(gpa)` reads a page-table word (None: not a page-table address).
pub fn user_ranges(
    table: impl Fn(u64) -> Option<u64>,
    root: u64,
    guest_size: u64,
    va: u64,
    len: u64,
    write: bool,
) -> Option<Vec<(u64, u64)>> {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    let end = va.checked_add(len).filter(|&e| e <= USER_TOP)?;
    let mut at = va;
    while at < end {
        let mut t = root;
        for level in (1..=3).rev() {
            let e = table(t + ((at >> (12 + 9 * level)) & 511) * 8)?;
            if e & PTE_PRESENT == 0 {
                return None;
            }
            t = e & PTE_ADDR;
        }
        let e = table(t + ((at >> 12) & 511) * 8)?;
        let ok = e & PTE_PRESENT != 0 && e & PTE_USER != 0 && (!write || e & PTE_WRITE != 0);
        let gpa = e & PTE_ADDR;
        // The ring page is not the program's memory.
        if !ok || gpa < USER_GPA_BASE || gpa - USER_GPA_BASE >= page_offset(guest_size) {
            return None;
        }
        let in_page = at % PAGE;
        let n = (PAGE - in_page).min(end - at);
        let off = gpa - USER_GPA_BASE + in_page;
        match runs.last_mut() {
            Some(last) if last.0 + last.1 == off => last.1 += n,
            _ => runs.push((off, n)),
        }
        at += n;
    }
    Some(runs)
}

// ---- the log a recording's broker keeps for warpd ----

/// Bytes of the log memfd: a header page, then the entries' ring.
pub const LOG_SIZE: u64 = PAGE + LOG_DATA;
pub const LOG_DATA: u64 = 8 << 20;
/// Header words: bytes appended (broker), bytes taken (warpd), whether
/// warpd lets the broker serve, the page-table root, the descriptors the
/// ring must not serve (warpd's own: signalfds, /proc/self/mem...).
pub const LOG_HEAD: u64 = 0;
pub const LOG_TAIL: u64 = 8;
pub const LOG_ALLOWED: u64 = 16;
pub const LOG_ROOT: u64 = 24;
pub const LOG_EXCLUDED_COUNT: u64 = 32;
pub const LOG_EXCLUDED: u64 = 40;
/// The host CPU the vCPU's thread is pinned to, plus one (0: none): the
/// poller keeps off it (sharing the vCPU's CPU, a call costs a time slice).
pub const LOG_VCPU_CPU: u64 = 1024;
pub const MAX_EXCLUDED: usize = 64;

/// An entry: its size, the call, its result, the stream (1 stdout, 2
/// stderr) a write reached, the blake3 of the bytes it read, when it was
/// served (CLOCK_MONOTONIC, ns), then the bytes it wrote (`out_len`),
/// padded to 8.
pub const ENTRY_HEAD: u64 = 8 + 8 + 48 + 8 + 8 + 32 + 8;

/// CLOCK_MONOTONIC in nanoseconds: when a ring call was served (one clock
/// for the broker and warpd, which turns it into the recording's time).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime into a local timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(ts.tv_nsec as u64)
}
const WRAP: u32 = 0xffff_ffff;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Served {
    pub nr: u64,
    pub args: [u64; 6],
    pub ret: i64,
    pub stream: u32,
    pub input: [u8; 32],
    pub output: Vec<u8>,
    /// When it was served ([`monotonic_ns`]); `append` stamps it.
    pub when_ns: u64,
}

fn padded(n: u64) -> u64 {
    n.div_ceil(8) * 8
}

/// The log over a shared mapping of [`LOG_SIZE`] bytes at `base`.
pub struct Log {
    base: *mut u8,
}

// SAFETY: shared memory; the head and tail are atomics and each side only
// touches the bytes the counters give it.
unsafe impl Send for Log {}
// SAFETY: as above.
unsafe impl Sync for Log {}

impl Log {
    /// # Safety
    /// `base` must map [`LOG_SIZE`] bytes for the life of the value.
    pub unsafe fn new(base: *mut u8) -> Log {
        Log { base }
    }

    fn w64(&self, off: u64) -> &AtomicU64 {
        // SAFETY: header offsets inside the mapping (new's contract).
        unsafe { word64(self.base, off) }
    }

    fn w32(&self, off: u64) -> &AtomicU32 {
        // SAFETY: as above.
        unsafe { word32(self.base, off) }
    }

    fn data(&self, at: u64, len: u64) -> *mut u8 {
        debug_assert!(at + len <= LOG_DATA);
        // SAFETY: inside the data ring (callers keep at + len <= LOG_DATA).
        unsafe { self.base.add((PAGE + at) as usize) }
    }

    // warpd's side.

    /// What warpd lets the broker do until it changes it.
    pub fn allow(&self, on: bool, root: u64, excluded: &[i32]) {
        let n = excluded.len().min(MAX_EXCLUDED);
        for (i, fd) in excluded[..n].iter().enumerate() {
            self.w32(LOG_EXCLUDED + 4 * i as u64).store(*fd as u32, Ordering::Relaxed);
        }
        self.w64(LOG_EXCLUDED_COUNT).store(n as u64, Ordering::Relaxed);
        self.w64(LOG_ROOT).store(root, Ordering::Relaxed);
        self.w64(LOG_ALLOWED).store((on && excluded.len() <= MAX_EXCLUDED) as u64, Ordering::Release);
    }

    /// Where the vCPU runs, for the poller to keep off (`None`: anywhere).
    pub fn set_vcpu_cpu(&self, cpu: Option<u32>) {
        self.w64(LOG_VCPU_CPU).store(cpu.map_or(0, |c| c as u64 + 1), Ordering::Release);
    }

    pub fn vcpu_cpu(&self) -> Option<u32> {
        (self.w64(LOG_VCPU_CPU).load(Ordering::Acquire) as u32).checked_sub(1)
    }

    /// The entries appended since the last take. The broker's bytes are
    /// checked: an entry that does not fit ends the take (Err).
    pub fn take(&self) -> Result<Vec<Served>, String> {
        let head = self.w64(LOG_HEAD).load(Ordering::Acquire);
        let mut tail = self.w64(LOG_TAIL).load(Ordering::Relaxed);
        let mut out = Vec::new();
        if head.wrapping_sub(tail) > LOG_DATA {
            return Err(format!("the ring log's head {head} is not within reach of its tail {tail}"));
        }
        while tail < head {
            let at = tail % LOG_DATA;
            let mut w = [0u8; ENTRY_HEAD as usize];
            let room = LOG_DATA - at;
            // SAFETY: reading within the data ring.
            let size = unsafe { std::ptr::read_volatile(self.data(at, 4) as *const u32) };
            if size == WRAP {
                tail += room;
                continue;
            }
            let size = size as u64;
            if size < ENTRY_HEAD || size > room || size > head - tail || !size.is_multiple_of(8) {
                return Err(format!("a ring log entry of {size} bytes at {tail} is malformed"));
            }
            // SAFETY: within the data ring (size <= room).
            unsafe { std::ptr::copy_nonoverlapping(self.data(at, ENTRY_HEAD), w.as_mut_ptr(), w.len()) };
            let u = |i: usize| u64::from_le_bytes(w[i..i + 8].try_into().expect("8 bytes"));
            let out_len = u(8) >> 32;
            if ENTRY_HEAD + out_len > size {
                return Err(format!("a ring log entry at {tail} claims {out_len} bytes it does not hold"));
            }
            let mut output = vec![0u8; out_len as usize];
            // SAFETY: within the entry (checked above).
            unsafe {
                std::ptr::copy_nonoverlapping(self.data(at + ENTRY_HEAD, out_len), output.as_mut_ptr(), output.len())
            };
            let mut args = [0u64; 6];
            for (i, a) in args.iter_mut().enumerate() {
                *a = u(24 + 8 * i);
            }
            out.push(Served {
                nr: u(16),
                args,
                ret: u(72) as i64,
                stream: (u(8) & 0xffff_ffff) as u32,
                input: w[80..112].try_into().expect("32 bytes"),
                output,
                when_ns: u(112),
            });
            tail += size;
        }
        self.w64(LOG_TAIL).store(tail, Ordering::Release);
        Ok(out)
    }

    // The broker's side.

    /// Whether warpd lets the broker serve, the root to walk, and whether
    /// descriptor `fd` is one warpd keeps for itself.
    pub fn allowed(&self) -> Option<u64> {
        (self.w64(LOG_ALLOWED).load(Ordering::Acquire) == 1).then(|| self.w64(LOG_ROOT).load(Ordering::Relaxed))
    }

    pub fn excluded(&self, fd: i32) -> bool {
        let n = (self.w64(LOG_EXCLUDED_COUNT).load(Ordering::Relaxed) as usize).min(MAX_EXCLUDED);
        (0..n).any(|i| self.w32(LOG_EXCLUDED + 4 * i as u64).load(Ordering::Relaxed) as i32 == fd)
    }

    /// Whether an entry with `out_len` bytes fits now.
    pub fn has_room(&self, out_len: u64) -> bool {
        let head = self.w64(LOG_HEAD).load(Ordering::Relaxed);
        let tail = self.w64(LOG_TAIL).load(Ordering::Acquire);
        let size = padded(ENTRY_HEAD + out_len);
        let at = head % LOG_DATA;
        let wrap = if LOG_DATA - at < size { LOG_DATA - at } else { 0 };
        LOG_DATA - head.wrapping_sub(tail) >= size + wrap
    }

    /// Appends an entry (check [`Log::has_room`] first); `output` is the
    /// bytes the call wrote, read through `copy` (into the entry).
    pub fn append(&self, s: &Served, out_len: u64, copy: impl FnOnce(&mut [u8])) {
        let mut head = self.w64(LOG_HEAD).load(Ordering::Relaxed);
        let size = padded(ENTRY_HEAD + out_len);
        let mut at = head % LOG_DATA;
        if LOG_DATA - at < size {
            // SAFETY: a marker at an 8-aligned place with room for 8 bytes.
            unsafe { std::ptr::write_volatile(self.data(at, 4) as *mut u32, WRAP) };
            head += LOG_DATA - at;
            at = 0;
        }
        let mut w = [0u8; ENTRY_HEAD as usize];
        w[0..8].copy_from_slice(&size.to_le_bytes());
        w[8..16].copy_from_slice(&((out_len << 32) | s.stream as u64).to_le_bytes());
        w[16..24].copy_from_slice(&s.nr.to_le_bytes());
        for (i, a) in s.args.iter().enumerate() {
            w[24 + 8 * i..32 + 8 * i].copy_from_slice(&a.to_le_bytes());
        }
        w[72..80].copy_from_slice(&(s.ret as u64).to_le_bytes());
        w[80..112].copy_from_slice(&s.input);
        w[112..120].copy_from_slice(&monotonic_ns().to_le_bytes());
        // SAFETY: the entry fits at `at` (has_room, and the wrap above).
        unsafe {
            std::ptr::copy_nonoverlapping(w.as_ptr(), self.data(at, ENTRY_HEAD), w.len());
            copy(std::slice::from_raw_parts_mut(self.data(at + ENTRY_HEAD, out_len), out_len as usize));
        }
        self.w64(LOG_HEAD).store(head + size, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitmap_has_the_calls() {
        let b = bitmap();
        for nr in 0..512u64 {
            let set = b[(nr / 64) as usize] & (1 << (nr % 64)) != 0;
            assert_eq!(set, CALLS.contains(&nr), "{nr}");
        }
    }

    #[test]
    fn what_a_served_call_wrote_is_by_its_result() {
        let args = [3, 0x1000, 64, 0, 0, 0];
        assert_eq!(buffer(0, &args), Some((0x1000, 64, true)));
        assert_eq!(written(0, 10, 64), 10, "a read: its count");
        assert_eq!(written(0, -9, 64), 0);
        assert_eq!(buffer(5, &args), Some((0x1000, 144, true)), "fstat: a whole struct stat");
        assert_eq!(written(5, 0, 144), 144);
        assert_eq!(written(5, -14, 144), 0);
        assert_eq!(buffer(228, &[1, 0x2000, 0, 0, 0, 0]), Some((0x2000, 16, true)));
        assert_eq!(written(228, 0, 16), 16);
        assert_eq!((arity(5), arity(228), arity(217)), (2, 2, 3));
        assert!(!on_fd(228) && on_fd(217));
        assert_eq!(buffer(262, &[3, 0x500, 0x3000, AT_EMPTY_PATH, 0, 0]), Some((0x3000, 144, true)));
        assert_eq!((written(262, 0, 144), arity(262)), (144, 4));
        assert!(fstatat_flags_ok(AT_EMPTY_PATH) && fstatat_flags_ok(AT_EMPTY_PATH | 0x100));
        assert!(!fstatat_flags_ok(0) && !fstatat_flags_ok(AT_EMPTY_PATH | 0x200), "AT_REMOVEDIR is not fstatat's");
        assert!(!CLOCKS.contains(&2) && !CLOCKS.contains(&3), "CPU-time clocks take the exit path");
    }

    #[test]
    fn log_entries_round_trip_and_wrap() {
        let mut mem = vec![0u64; (LOG_SIZE / 8) as usize];
        // SAFETY: the vector is LOG_SIZE bytes and outlives the log.
        let log = unsafe { Log::new(mem.as_mut_ptr() as *mut u8) };
        let mut want = Vec::new();
        for i in 0..40u64 {
            let out_len = (i * 50_000) % (MAX_DATA + 1);
            assert!(log.has_room(out_len));
            let s = Served {
                nr: i % 2,
                args: [i, 2, 3, 4, 5, 6],
                ret: i as i64,
                stream: (i % 3) as u32,
                input: [i as u8; 32],
                output: vec![i as u8; out_len as usize],
                when_ns: 0,
            };
            log.append(&s, out_len, |b| b.fill(i as u8));
            want.push(s);
            // Each entry has the time it was appended; otherwise as it went in.
            let unstamped = |taken: Vec<Served>| {
                taken
                    .into_iter()
                    .map(|s| {
                        assert!(s.when_ns > 0);
                        Served { when_ns: 0, ..s }
                    })
                    .collect::<Vec<_>>()
            };
            if i % 7 == 6 {
                assert_eq!(unstamped(log.take().unwrap()), std::mem::take(&mut want));
            }
        }
        assert_eq!(log.take().unwrap().into_iter().map(|s| Served { when_ns: 0, ..s }).collect::<Vec<_>>(), want);
        assert!(log.take().unwrap().is_empty());
    }

    #[test]
    fn a_full_log_says_so() {
        let mut mem = vec![0u64; (LOG_SIZE / 8) as usize];
        // SAFETY: as above.
        let log = unsafe { Log::new(mem.as_mut_ptr() as *mut u8) };
        let s = Served { nr: 0, args: [0; 6], ret: 0, stream: 0, input: [0; 32], output: Vec::new(), when_ns: 0 };
        let mut n = 0;
        while log.has_room(MAX_DATA) {
            log.append(&s, MAX_DATA, |_| {});
            n += 1;
        }
        assert_eq!(n, 7);
        assert_eq!(log.take().unwrap().len(), 7);
        assert!(log.has_room(MAX_DATA));
    }

    #[test]
    fn damaged_log_is_refused() {
        let mut mem = vec![0u64; (LOG_SIZE / 8) as usize];
        // SAFETY: as above.
        let log = unsafe { Log::new(mem.as_mut_ptr() as *mut u8) };
        let s = Served { nr: 0, args: [0; 6], ret: 0, stream: 0, input: [0; 32], output: Vec::new(), when_ns: 0 };
        log.append(&s, 16, |_| {});
        mem[(PAGE / 8) as usize] = 3; // size smaller than an entry's head
                                      // SAFETY: as above.
        let log = unsafe { Log::new(mem.as_mut_ptr() as *mut u8) };
        assert!(log.take().is_err());
    }

    #[test]
    fn walk_follows_four_levels_and_checks_access() {
        // Tables at 0x1000.. (PML4, PDPT, PD, PT), a user page at GPA base.
        let mut t = std::collections::HashMap::new();
        let va = 0x40_0000u64;
        t.insert(0x1000 + ((va >> 39) & 511) * 8, 0x2000 | 7);
        t.insert(0x2000 + ((va >> 30) & 511) * 8, 0x3000 | 7);
        t.insert(0x3000 + ((va >> 21) & 511) * 8, 0x4000 | 7);
        t.insert(0x4000 + ((va >> 12) & 511) * 8, (USER_GPA_BASE + 0x5000) | 5); // read-only
        t.insert(0x4000 + (((va >> 12) + 1) & 511) * 8, (USER_GPA_BASE + 0x6000) | 7);
        let table = |gpa: u64| Some(t.get(&gpa).copied().unwrap_or(0));
        let size = 1 << 30;
        assert_eq!(user_ranges(table, 0x1000, size, va + 10, 100, false), Some(vec![(0x500a, 100)]));
        assert_eq!(user_ranges(table, 0x1000, size, va + 10, 100, true), None);
        assert_eq!(user_ranges(table, 0x1000, size, va + 4090, 10, false), Some(vec![(0x5ffa, 10)]));
        assert_eq!(user_ranges(table, 0x1000, size, va + 8190, 10, false), None);
        assert_eq!(user_ranges(table, 0x1000, size, USER_TOP - 1, 2, false), None);
        assert_eq!(user_ranges(table, 0x1000, size, va, 0, false), Some(vec![]));
    }
}
