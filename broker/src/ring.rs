//! The broker's side of the exitless syscall path (recording): a thread
//! that polls the ring page the program's trampoline posts to, performs
//! the calls that need no decision of warpd's (reads and writes that do
//! not wait, lseek) in guest memory, and appends each to the log warpd
//! records from. Anything else is declined and takes the exit path.
//!
//! What the page says is the program's: the request is copied out once,
//! its buffer is found by walking the page tables (a read-only view of
//! warpd's kernel memory) with the CPU's checks, and only calls of
//! `ring::CALLS` on the program's own descriptors are performed.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use warp_syscalls::ring::{self, Log, Request, Served, Slot};

use crate::perform::GuestMemory;
use crate::BrokerError;

/// Bumped by the request loop for every request warpd sends: descriptors
/// may have changed (opened, closed, duplicated), so what the ring knows
/// about them is forgotten.
pub static FD_EPOCH: AtomicU64 = AtomicU64::new(0);

/// How long the poller spins for the next request before it sleeps.
const SPIN_WINDOW: Duration = Duration::from_micros(300);

/// Linux's PIPE_BUF: a write of at most this much to a pipe is whole or
/// not at all, so one that does not wait is the write the program asked for.
const PIPE_BUF: u64 = 4096;

/// A read-only mapping of warpd's kernel memory (the page tables).
struct Tables {
    base: *const u8,
    size: u64,
}

// SAFETY: a read-only shared mapping that lives as long as the process.
unsafe impl Send for Tables {}

impl Tables {
    fn map(fd: &OwnedFd, size: u64) -> Result<Tables, BrokerError> {
        // SAFETY: a read-only shared mapping of the descriptor warpd sent; checked.
        let p = unsafe {
            libc::mmap(std::ptr::null_mut(), size as usize, libc::PROT_READ, libc::MAP_SHARED, fd.as_raw_fd(), 0)
        };
        if p == libc::MAP_FAILED {
            return Err(crate::os_err("mapping the page tables"));
        }
        crate::tree::note_mapping(p, size as usize);
        Ok(Tables { base: p as *const u8, size })
    }

    fn word(&self, gpa: u64) -> Option<u64> {
        if !gpa.is_multiple_of(8) || gpa.checked_add(8)? > self.size {
            return None;
        }
        // SAFETY: inside the mapping (checked), aligned.
        Some(unsafe { std::ptr::read_volatile(self.base.add(gpa as usize) as *const u64) })
    }
}

/// What a descriptor is, for whether a call on it may wait.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A regular file or a memory device (null, zero, full, random,
    /// urandom): calls complete without waiting on anyone.
    Prompt,
    /// Anything else: only a call that need not wait (RWF_NOWAIT) is taken.
    Other,
}

#[derive(Default)]
struct Fds {
    epoch: u64,
    known: std::collections::HashMap<i32, (Kind, u32)>,
}

impl Fds {
    /// The descriptor's kind and the stream (1, 2) it is, None when it is not open.
    fn get(&mut self, fd: i32) -> Option<(Kind, u32)> {
        let epoch = FD_EPOCH.load(Ordering::Acquire);
        if epoch != self.epoch {
            self.known.clear();
            self.epoch = epoch;
        }
        if let Some(k) = self.known.get(&fd) {
            return Some(*k);
        }
        // SAFETY: fstat into a local struct.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        if unsafe { libc::fstat(fd, &mut st) } != 0 {
            return None;
        }
        let dev = |major: u32, minor: u32| libc::makedev(major, minor) == st.st_rdev;
        let kind = match st.st_mode & libc::S_IFMT {
            libc::S_IFREG => Kind::Prompt,
            libc::S_IFCHR if dev(1, 3) || dev(1, 5) || dev(1, 7) || dev(1, 8) || dev(1, 9) => Kind::Prompt,
            _ => Kind::Other,
        };
        let stream = crate::perform::stream_of_fd(fd);
        self.known.insert(fd, (kind, stream));
        Some((kind, stream))
    }
}

struct Ring {
    guest: Arc<GuestMemory>,
    tables: Tables,
    log: Log,
    slot: Slot,
    _log_map: *mut u8,
}

// SAFETY: the mappings are shared memory used only through atomics and
// bounds-checked copies.
unsafe impl Send for Ring {}

/// Maps the log and the page tables and starts the poller.
pub fn start(guest: Arc<GuestMemory>, tables: OwnedFd, tables_size: u64, log: OwnedFd) -> Result<(), BrokerError> {
    let tables = Tables::map(&tables, tables_size)?;
    // SAFETY: a shared mapping of the log warpd sent; checked.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            ring::LOG_SIZE as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            log.as_raw_fd(),
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(crate::os_err("mapping the ring log"));
    }
    crate::tree::note_mapping(p, ring::LOG_SIZE as usize);
    let page = guest
        .ptr(ring::page_offset(guest.size()), ring::PAGE)
        .ok_or(BrokerError::Protocol("guest memory too small for the ring page".into()))?;
    // SAFETY: the log mapping and the ring page live as long as the process.
    let r =
        unsafe { Ring { guest, tables, log: Log::new(p as *mut u8), slot: Slot::new(page), _log_map: p as *mut u8 } };
    // Signals for the program go to the threads that pass them on (and
    // that a signal must interrupt), never to the poller: it starts with
    // every signal blocked (a thread inherits the mask).
    // SAFETY: sigset operations on locals; the old mask is restored below.
    let old = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut old);
        old
    };
    // A poller that failed would leave the program spinning on a claimed
    // request: the broker ends instead (warpd then ends the session, 125).
    let spawned = std::thread::Builder::new().name("ring".into()).spawn(move || {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| r.run()));
        std::process::abort();
    });
    // SAFETY: restoring the mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    spawned.map_err(|e| BrokerError::Os("starting the ring poller", e))?;
    Ok(())
}

impl Ring {
    fn run(self) {
        let mut fds = Fds::default();
        let mut kept_off = None;
        // Sharing the vCPU's CPU, the poller would get it only when the
        // guest's spin has given up.
        let mut keep_off = || {
            let cpu = self.log.vcpu_cpu();
            if cpu != kept_off {
                if let Some(c) = cpu {
                    ring::keep_off_cpu(c);
                }
                kept_off = cpu;
            }
        };
        loop {
            // The process's end ends the thread.
            self.slot.wait_posted(SPIN_WINDOW, &|| false, &|| false, &mut keep_off);
            let Some(req) = self.slot.claim() else { continue };
            let (state, ret) = self.serve(&req, &mut fds).unwrap_or((ring::DECLINED, 0));
            self.slot.answer(state, ret);
        }
    }

    /// Performs one claimed request: (DONE or FINISH, result), or None to
    /// decline it (the exit path then has it, with the same registers).
    fn serve(&self, req: &Request, fds: &mut Fds) -> Option<(u32, i64)> {
        let root = self.log.allowed()?;
        if !ring::CALLS.contains(&req.nr) || req.args[0] > i32::MAX as u64 {
            return None;
        }
        if !ring::on_fd(req.nr) {
            return self.clock(req, root);
        }
        let fd = req.args[0] as i32;
        if fd >= crate::RESERVED_BASE.load(Ordering::Relaxed) || self.log.excluded(fd) {
            return None;
        }
        let (kind, stream) = fds.get(fd)?;
        if req.nr == 8 {
            // SAFETY: lseek on one of the program's descriptors.
            let r = unsafe { libc::lseek(fd, req.args[1] as i64, req.args[2] as i32) };
            return self.log_it(req, result(r), 0, [0; 32], &[], false);
        }
        let (addr, len, out) = ring::buffer(req.nr, &req.args)?;
        if len > ring::MAX_DATA || (!out && kind == Kind::Other && len > PIPE_BUF) {
            return None;
        }
        if req.nr == 262 && !self.empty_path(req, root) {
            return None;
        }
        if matches!(req.nr, 5 | 217 | 262) {
            return self.fill_guest(req, root, addr, len, |buf| {
                // SAFETY: fstat or getdents64 on the program's descriptor
                // into a local buffer of `buf.len()` bytes.
                result(unsafe {
                    if req.nr != 217 {
                        libc::fstat(fd, buf.as_mut_ptr() as *mut libc::stat) as i64
                    } else {
                        libc::syscall(libc::SYS_getdents64, fd, buf.as_mut_ptr(), buf.len()) as i64
                    }
                })
            });
        }
        // Once the program has forked, writes to the terminal take the exit
        // path, where the tree's output order numbers them.
        if !out && stream != 0 && crate::tree::forked() {
            return None;
        }
        let offset = match req.nr {
            17 | 18 => i64::try_from(req.args[3]).ok()?,
            _ => -1,
        };
        let table = |gpa: u64| self.tables.word(gpa);
        let ranges = ring::user_ranges(table, root, self.guest.size(), addr, len, out)?;
        if !self.log.has_room(if out { len } else { 0 }) {
            return None;
        }
        let mut iov = Vec::with_capacity(ranges.len());
        for &(off, n) in &ranges {
            iov.push(libc::iovec { iov_base: self.guest.ptr(off, n)? as *mut libc::c_void, iov_len: n as usize });
        }
        let mut input = [0u8; 32];
        if !out {
            let mut h = blake3::Hasher::new();
            for v in &iov {
                // SAFETY: the iovec points into guest memory (checked ranges).
                h.update(unsafe { std::slice::from_raw_parts(v.iov_base as *const u8, v.iov_len) });
            }
            input = *h.finalize().as_bytes();
        }
        let flags = if kind == Kind::Other { libc::RWF_NOWAIT } else { 0 };
        let ret = loop {
            // SAFETY: vectored I/O on the program's descriptor into guest
            // memory the page tables give the program (checked above).
            let r = unsafe {
                if out {
                    libc::preadv2(fd, iov.as_ptr(), iov.len() as i32, offset, flags)
                } else {
                    libc::pwritev2(fd, iov.as_ptr(), iov.len() as i32, offset, flags)
                }
            };
            if r >= 0 {
                break r as i64;
            }
            match errno() {
                libc::EINTR => continue,
                // It would wait (or cannot say): the exit path waits as Linux does.
                libc::EAGAIN | libc::EOPNOTSUPP if kind == Kind::Other => return None,
                e => break -(e as i64),
            }
        };
        let stream = if !out && ret > 0 { stream } else { 0 };
        self.log_it(req, ret, stream, input, &iov, out)
    }

    /// Whether a newfstatat asks about its descriptor itself: allowed flags
    /// with AT_EMPTY_PATH, and a path whose first byte is its end.
    fn empty_path(&self, req: &Request, root: u64) -> bool {
        if !ring::fstatat_flags_ok(req.args[3]) {
            return false;
        }
        let table = |gpa: u64| self.tables.word(gpa);
        let Some(ranges) = ring::user_ranges(table, root, self.guest.size(), req.args[1], 1, false) else {
            return false;
        };
        let Some(&(off, _)) = ranges.first() else { return false };
        // SAFETY: one byte of guest memory the program's tables give it.
        self.guest.ptr(off, 1).is_some_and(|p| unsafe { std::ptr::read_volatile(p) } == 0)
    }

    /// clock_gettime of one of the clocks the ring reads.
    fn clock(&self, req: &Request, root: u64) -> Option<(u32, i64)> {
        if !ring::CLOCKS.contains(&req.args[0]) {
            return None;
        }
        let (addr, len, _) = ring::buffer(req.nr, &req.args)?;
        self.fill_guest(req, root, addr, len, |buf| {
            let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
            // SAFETY: clock_gettime into a local timespec.
            if unsafe { libc::clock_gettime(req.args[0] as libc::clockid_t, &mut ts) } != 0 {
                return -(errno() as i64);
            }
            buf[..8].copy_from_slice(&ts.tv_sec.to_le_bytes());
            buf[8..16].copy_from_slice(&ts.tv_nsec.to_le_bytes());
            0
        })
    }

    /// A call that fills a buffer of `len` bytes at `addr`: `call` fills a
    /// local one and returns the result; what it wrote
    /// ([`ring::written`]) is copied into the program's memory and logged.
    fn fill_guest(
        &self,
        req: &Request,
        root: u64,
        addr: u64,
        len: u64,
        call: impl FnOnce(&mut [u8]) -> i64,
    ) -> Option<(u32, i64)> {
        let table = |gpa: u64| self.tables.word(gpa);
        let ranges = ring::user_ranges(table, root, self.guest.size(), addr, len, true)?;
        if !self.log.has_room(len) {
            return None;
        }
        let mut iov = Vec::with_capacity(ranges.len());
        for &(off, n) in &ranges {
            iov.push(libc::iovec { iov_base: self.guest.ptr(off, n)? as *mut libc::c_void, iov_len: n as usize });
        }
        let mut buf = vec![0u8; len as usize];
        let ret = call(&mut buf);
        let n = ring::written(req.nr, ret, len) as usize;
        let mut at = 0usize;
        for v in &iov {
            if at >= n {
                break;
            }
            let take = v.iov_len.min(n - at);
            // SAFETY: the iovec points into guest memory (checked ranges).
            unsafe { std::ptr::copy_nonoverlapping(buf[at..].as_ptr(), v.iov_base as *mut u8, take) };
            at += take;
        }
        self.log_it(req, ret, 0, [0; 32], &iov, true)
    }

    /// Appends the served call to the log; a write that found no reader
    /// (EPIPE) is finished by warpd, which sends the program its SIGPIPE.
    fn log_it(
        &self,
        req: &Request,
        ret: i64,
        stream: u32,
        input: [u8; 32],
        iov: &[libc::iovec],
        out: bool,
    ) -> Option<(u32, i64)> {
        let len: u64 = iov.iter().map(|v| v.iov_len as u64).sum();
        let out_len = if out { ring::written(req.nr, ret, len) } else { 0 };
        let served = Served { nr: req.nr, args: req.args, ret, stream, input, output: Vec::new(), when_ns: 0 };
        self.log.append(&served, out_len, |dst| {
            let mut at = 0usize;
            for v in iov {
                if at == dst.len() {
                    break;
                }
                let n = v.iov_len.min(dst.len() - at);
                // SAFETY: the iovec points into guest memory (checked).
                dst[at..at + n].copy_from_slice(unsafe { std::slice::from_raw_parts(v.iov_base as *const u8, n) });
                at += n;
            }
        });
        let state = if ring::finishes(req.nr, ret) { ring::FINISH } else { ring::DONE };
        Some((state, ret))
    }
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

/// A libc call's result as a syscall's: -errno when it failed.
fn result(r: i64) -> i64 {
    if r < 0 {
        -(errno() as i64)
    } else {
        r
    }
}
