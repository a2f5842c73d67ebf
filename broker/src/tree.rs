//! What the brokers of one recorded process tree share, and what a forked
//! broker leaves behind of its parent's.
//!
//! Every process of a recording has its own broker, and the brokers form
//! the same tree as the programs (the first one is warpctl's child; each
//! fork of the program is a fork of its broker), so descriptors, pipes,
//! wait4, SIGCHLD, process groups and pids are the host's own.
//!
//! Output order: the writes of all the tree's processes to the original
//! stdout and stderr are numbered by one counter in a page every broker
//! maps (the first creates it; forks inherit it), taken under a POSIX
//! record lock on that page's memfd (per process, released if a broker
//! dies), so that the numbers follow the order the bytes reached the
//! terminal and replay can print them in that order.
//!
//! A forked broker ([`forget_parent`]) unmaps the parent's guest memory
//! and ring, closes the parent's reserved descriptors (keeping the
//! original streams and the order page) and attaches to warpd again.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::{os_err, BrokerError};

/// The order page's memfd (reserved range) and its mapping.
static ORDER_FD: AtomicI32 = AtomicI32::new(-1);
static ORDER_PAGE: AtomicUsize = AtomicUsize::new(0);

/// Mappings of warpd's memory (guest memory, page tables, the ring log):
/// a forked broker unmaps its parent's.
static MAPPINGS: Mutex<Vec<(usize, usize)>> = Mutex::new(Vec::new());

/// Notes a mapping of warpd's memory made by this broker.
pub(crate) fn note_mapping(addr: *mut libc::c_void, len: usize) {
    MAPPINGS.lock().unwrap_or_else(|e| e.into_inner()).push((addr as usize, len));
}

/// Creates the order page (the first broker of a recording).
pub(crate) fn init(base: RawFd) -> Result<(), BrokerError> {
    // SAFETY: memfd_create with a valid name; checked.
    let fd = unsafe { libc::memfd_create(c"warp-order".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(os_err("creating the output order page"));
    }
    // SAFETY: our own new descriptor.
    if unsafe { libc::ftruncate(fd, 4096) } != 0 {
        return Err(os_err("sizing the output order page"));
    }
    let fd = crate::reserve(fd, base)?;
    // SAFETY: a shared mapping of our memfd; checked.
    let p =
        unsafe { libc::mmap(std::ptr::null_mut(), 4096, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0) };
    if p == libc::MAP_FAILED {
        return Err(os_err("mapping the output order page"));
    }
    ORDER_FD.store(fd, Ordering::SeqCst);
    ORDER_PAGE.store(p as usize, Ordering::SeqCst);
    Ok(())
}

/// The order page's flag word (after the counter): the tree has forked.
const FORKED: usize = 8;

/// Notes that the program forked (before the broker does): from now on
/// every broker of the tree leaves writes to the original streams to the
/// exit path, which numbers them.
pub(crate) fn mark_forked() {
    let page = ORDER_PAGE.load(Ordering::SeqCst);
    if page != 0 {
        // SAFETY: the page is mapped for the process's life; an aligned word.
        unsafe { (*((page + FORKED) as *const std::sync::atomic::AtomicU64)).store(1, Ordering::SeqCst) };
    }
}

/// Whether any process of the tree has forked.
pub(crate) fn forked() -> bool {
    let page = ORDER_PAGE.load(Ordering::SeqCst);
    // SAFETY: as in `mark_forked`.
    page != 0 && unsafe { (*((page + FORKED) as *const std::sync::atomic::AtomicU64)).load(Ordering::SeqCst) } != 0
}

/// The order lock, held while a write that may reach the original streams
/// runs; [`Ordered::number`] takes its place in the tree's order.
pub(crate) struct Ordered {
    fd: RawFd,
}

fn lock(fd: RawFd, kind: i32) -> bool {
    // SAFETY: flock is plain data; all-zero is a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as i16;
    fl.l_whence = libc::SEEK_SET as i16;
    loop {
        // SAFETY: fcntl with a valid flock structure on our descriptor.
        let r = unsafe { libc::fcntl(fd, if kind == libc::F_UNLCK { libc::F_SETLK } else { libc::F_SETLKW }, &fl) };
        if r == 0 {
            return true;
        }
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return false;
        }
    }
}

impl Ordered {
    /// Takes the lock (None without an order page: its calls get no number).
    pub(crate) fn lock() -> Option<Ordered> {
        let fd = ORDER_FD.load(Ordering::SeqCst);
        (fd >= 0 && lock(fd, libc::F_WRLCK)).then_some(Ordered { fd })
    }

    /// The next number of the tree's order (from 1).
    pub(crate) fn number(&self) -> u64 {
        let page = ORDER_PAGE.load(Ordering::SeqCst);
        if page == 0 {
            return 0;
        }
        // SAFETY: the page is mapped for the process's life; the record
        // lock makes this broker the only one changing the counter now.
        unsafe {
            let counter = page as *mut u64;
            let n = std::ptr::read_volatile(counter) + 1;
            std::ptr::write_volatile(counter, n);
            n
        }
    }
}

impl Drop for Ordered {
    fn drop(&mut self) {
        lock(self.fd, libc::F_UNLCK);
    }
}

/// In a forked broker, before it attaches: what was the parent's goes.
/// Only the calling thread exists now; the parent's other threads' state
/// (workers, the ring poller) is dead memory, never touched.
pub(crate) fn forget_parent(base: RawFd, soft: u64) {
    let maps = std::mem::take(&mut *MAPPINGS.lock().unwrap_or_else(|e| e.into_inner()));
    for (addr, len) in maps {
        // SAFETY: a mapping this process made of warpd's memory, which
        // nothing in this process uses any more.
        unsafe { libc::munmap(addr as *mut libc::c_void, len) };
    }
    let mut keep = vec![ORDER_FD.load(Ordering::SeqCst)];
    if let Some(&(out, err)) = crate::perform::STREAMS.get() {
        keep.extend(out);
        keep.extend(err);
    }
    for fd in base..soft as RawFd {
        if !keep.contains(&fd) {
            // SAFETY: closing a descriptor of the parent's reserved range;
            // the objects that owned them were forgotten, not dropped.
            unsafe { libc::close(fd) };
        }
    }
}

/// Exits as the program ended: killed by `signal` (no core file), or with
/// `code`. A forked process's parent sees this status in wait4.
pub(crate) fn exit_as(code: i32, signal: i32) -> ! {
    if signal > 0 && signal < 65 {
        // SAFETY: plain calls with valid arguments; the default action of
        // a fatal signal ends the process here.
        unsafe {
            let none = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            let mut old = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            libc::getrlimit(libc::RLIMIT_CORE, &mut old);
            libc::setrlimit(libc::RLIMIT_CORE, &libc::rlimit { rlim_max: old.rlim_max, ..none });
            libc::signal(signal, libc::SIG_DFL);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, signal);
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            libc::raise(signal);
            libc::_exit(128 + signal);
        }
    }
    std::process::exit(code)
}
