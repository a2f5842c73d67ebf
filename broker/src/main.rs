//! warp-broker: performs a recorded program's system calls with the user's
//! own rights.
//!
//! warpctl starts it as the user, so it inherits the user's credentials,
//! terminal, working directory, environment and any descriptors passed in
//! (`prog 3<file`). It connects to warpd, presents the session token, maps
//! the guest memory it is given, then answers requests until told to finish.
//! Its own descriptors sit in a reserved range at the top of its fd limit;
//! warpd keeps the program away from them.
//!
//! The broker never decides anything about the program; warpd does. It
//! refuses the few calls that would change the broker itself (memory, exec,
//! signal dispositions) as a second line of defence.

mod perform;
mod ring;
mod serve;
mod tree;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use prost::Message;
use warp_proto::broker::{broker_message, BrokerInfo, BrokerMessage, Hello, Welcome};

/// How many descriptors at the top of the fd limit the broker keeps: its
/// own (the socket and its second handle, the signal pipe, warpd's signal
/// channel, the original stdout and stderr, the process tree's order page)
/// and the timerfds behind the program's POSIX timers, which warpd puts here.
pub const RESERVED_FDS: u64 = 32;
/// The first descriptor of the reserved range (set once at start).
pub static RESERVED_BASE: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

#[derive(Debug, thiserror::Error)]
enum BrokerError {
    #[error("usage: warp-broker --socket PATH --token-fd FD (started by warpctl, not by hand)")]
    Usage,
    #[error("cannot connect to warpd at {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("{0}: {1}")]
    Os(&'static str, std::io::Error),
    #[error("warpd sent an invalid message: {0}")]
    Protocol(String),
    /// warpd ended the session (it reports why to warpctl itself).
    #[error("warpd closed the connection")]
    Closed,
}

/// Signals forwarded to the program. Written by the handler, read by the loop.
pub(crate) static SIGNAL_PIPE: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);
/// Set by the handler, cleared when the pipe is drained: a call about to
/// start while a signal is waiting returns EINTR instead of blocking on
/// (pause, read) past the signal meant to end it.
pub static SIGNAL_SEEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whatever the program's own calls can make the host send the broker
/// (timers, descriptor notifications, limits) is forwarded too: left at
/// their defaults, SIGPROF, SIGVTALRM, SIGIO, SIGXCPU and SIGXFSZ would end
/// the broker and with it the recording. ITIMER_PROF and ITIMER_VIRTUAL
/// count the broker's CPU time, not the program's (which runs in the VM).
const FORWARDED: [i32; 17] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGALRM,
    libc::SIGWINCH,
    libc::SIGCONT,
    libc::SIGPROF,
    libc::SIGVTALRM,
    libc::SIGIO,
    libc::SIGURG,
    libc::SIGPWR,
    libc::SIGXCPU,
    libc::SIGXFSZ,
    // A forked process's broker ending: the program's child exited.
    libc::SIGCHLD,
];

/// A timer that keeps interrupting the broker while a forwarded signal
/// waits to be reported: a signal that lands between the last check and the
/// start of a blocking call must not leave that call blocked forever.
pub(crate) static NUDGE_TIMER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
const NUDGE_NS: i64 = 10_000_000;

fn nudge_signal() -> i32 {
    libc::SIGRTMIN() + 3
}

extern "C" fn on_nudge(_: i32) {}

/// The signals the broker forwards to the program, and its nudge timer's:
/// worker threads block them so that they reach the main thread.
pub(crate) fn main_thread_signals() -> Vec<i32> {
    let mut v = FORWARDED.to_vec();
    v.push(nudge_signal());
    v
}

/// Arms (every 10 ms) or disarms the nudge timer. Async-signal-safe.
pub(crate) fn nudge(on: bool) {
    let t = NUDGE_TIMER.load(std::sync::atomic::Ordering::Relaxed);
    if t == 0 {
        return;
    }
    let ns = if on { NUDGE_NS } else { 0 };
    let spec = libc::itimerspec {
        it_interval: libc::timespec { tv_sec: 0, tv_nsec: ns },
        it_value: libc::timespec { tv_sec: 0, tv_nsec: ns },
    };
    // SAFETY: timer_settime is async-signal-safe; the timer lives for the
    // whole process.
    unsafe { libc::timer_settime(t as libc::timer_t, 0, &spec, std::ptr::null_mut()) };
}

/// Writes the signal's record (its number and the head of its siginfo) to
/// the pipe: one write, under PIPE_BUF, so records never interleave.
extern "C" fn on_signal(signo: i32, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    SIGNAL_SEEN.store(true, std::sync::atomic::Ordering::SeqCst);
    let fd = SIGNAL_PIPE.load(std::sync::atomic::Ordering::Relaxed);
    if fd >= 0 {
        let mut head = [0u8; warp_proto::broker::SIGNAL_RECORD - 1];
        if !info.is_null() {
            // SAFETY: the kernel passes a valid siginfo_t (128 bytes) to an
            // SA_SIGINFO handler; its first 32 bytes are copied.
            unsafe { std::ptr::copy_nonoverlapping(info as *const u8, head.as_mut_ptr(), head.len()) };
        }
        let rec = warp_proto::broker::signal_record(signo, &head);
        // SAFETY: write(2) is async-signal-safe; the pipe is non-blocking.
        unsafe { libc::write(fd, rec.as_ptr() as *const libc::c_void, rec.len()) };
    }
    nudge(true);
}

/// Wakes the main thread's poll (a zero byte on the signal pipe, which is
/// not a signal): a deferred call completed and an idle wait may be owed a kick.
pub(crate) fn wake_main() {
    let fd = SIGNAL_PIPE.load(std::sync::atomic::Ordering::Relaxed);
    if fd >= 0 {
        let b = 0u8;
        // SAFETY: a one-byte write from a local to our non-blocking pipe.
        unsafe { libc::write(fd, &b as *const u8 as *const libc::c_void, 1) };
    }
}

pub(crate) fn os_err(what: &'static str) -> BrokerError {
    BrokerError::Os(what, std::io::Error::last_os_error())
}

/// A duplicate of `fd` in the reserved range (at or above `base`),
/// close-on-exec; `fd` stays open.
pub(crate) fn dup_reserved(fd: RawFd, base: RawFd) -> Result<RawFd, BrokerError> {
    // SAFETY: fcntl on a descriptor we own.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, base) };
    if new < 0 {
        return Err(os_err("moving a descriptor into the reserved range"));
    }
    Ok(new)
}

/// Moves `fd` into the reserved range (at or above `base`), close-on-exec.
pub(crate) fn reserve(fd: RawFd, base: RawFd) -> Result<RawFd, BrokerError> {
    let new = dup_reserved(fd, base)?;
    // SAFETY: closing our own original descriptor.
    unsafe { libc::close(fd) };
    Ok(new)
}

/// The socket path, and the session token read (and closed) from the
/// descriptor warpctl passed: the token is never on the command line.
fn parse_args() -> Result<(String, String), BrokerError> {
    let mut socket = None;
    let mut token_fd = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--socket" => socket = args.next(),
            "--token-fd" => token_fd = args.next().and_then(|f| f.parse::<RawFd>().ok()),
            _ => return Err(BrokerError::Usage),
        }
    }
    let fd = token_fd.filter(|&f| f >= 0).ok_or(BrokerError::Usage)?;
    // SAFETY: the descriptor warpctl left open for us, taken over (and so
    // closed) here, before the program could see it.
    let mut pipe = unsafe { std::fs::File::from_raw_fd(fd) };
    let mut token = String::new();
    use std::io::Read as _;
    (&mut pipe).take(4096).read_to_string(&mut token).map_err(|e| BrokerError::Os("reading the session token", e))?;
    drop(pipe);
    Ok((socket.ok_or(BrokerError::Usage)?, token))
}

fn main() {
    match run() {
        Ok(()) => std::process::exit(0),
        Err(BrokerError::Closed) => std::process::exit(125),
        Err(e) => {
            eprintln!("warpctl: broker: {e}");
            std::process::exit(125);
        }
    }
}

fn run() -> Result<(), BrokerError> {
    let (socket_path, mut token) = parse_args()?;
    // SAFETY: plain getters and prctl with integer arguments.
    let parent = unsafe { libc::getppid() };
    // SAFETY: as above.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    // SAFETY: as above.
    if unsafe { libc::getppid() } != parent {
        return Ok(()); // warpctl died before we could tie ourselves to it
    }

    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit into a valid struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(os_err("getrlimit"));
    }
    if lim.rlim_cur < 64 {
        return Err(BrokerError::Os(
            "the open-file limit is below 64",
            std::io::Error::from_raw_os_error(libc::EMFILE),
        ));
    }
    let soft = lim.rlim_cur.min(1 << 20);
    let base = (soft - RESERVED_FDS) as RawFd;
    RESERVED_BASE.store(base, std::sync::atomic::Ordering::Relaxed);

    // Duplicates of the original stdout and stderr, so that a write through
    // any descriptor for the same open file counts as output (for replay).
    // A forked broker keeps its parent's.
    let keep = |fd: RawFd| -> Option<RawFd> {
        // SAFETY: fcntl on a descriptor that may or may not be open; checked.
        let d = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, base) };
        (d >= 0).then_some(d)
    };
    let _ = perform::STREAMS.set((keep(1), keep(2)));
    tree::init(base)?;
    // SAFETY: installing handlers (no SA_RESTART, so a blocked call returns
    // EINTR and the signal reaches the program at this syscall) and ignoring
    // SIGPIPE (the program gets EPIPE and warpd raises its SIGPIPE).
    unsafe {
        for s in FORWARDED {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(s, &sa, std::ptr::null_mut());
        }
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_nudge as *const () as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(nudge_signal(), &sa, std::ptr::null_mut());
        serve::install_kick_handler();
    }
    loop {
        let attached = attach(&socket_path, std::mem::take(&mut token), base, &lim)?;
        match serve::serve(&attached.stream, attached.sig_read, attached.to_warpd, attached.memory)? {
            serve::Served::Finished(f) if f.mirror => tree::exit_as(f.exit_code, f.signal),
            serve::Served::Finished(_) => return Ok(()),
            serve::Served::Forked(child_token) => {
                // This is the child of the program's fork: everything of the
                // parent's connection goes (closed by number, not dropped).
                std::mem::forget(attached.stream);
                tree::forget_parent(base, soft);
                token = child_token;
            }
        }
    }
}

/// The broker's page that faults, reserved once (a forked broker inherits
/// it): as low as the host allows, so that it and a length that fits in
/// user space from the program's pointer fit from it too, as the host's
/// `access_ok` sees them. 0 if none could be made.
fn fault_page() -> u64 {
    static PAGE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *PAGE.get_or_init(|| {
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
        for hint in [0x10000usize, 0x100000, 0x1000_0000, 0] {
            let fixed = if hint == 0 { 0 } else { libc::MAP_FIXED_NOREPLACE };
            // SAFETY: a new PROT_NONE mapping where nothing is (NOREPLACE); checked.
            let p = unsafe { libc::mmap(hint as *mut libc::c_void, 4096, libc::PROT_NONE, flags | fixed, -1, 0) };
            if p != libc::MAP_FAILED {
                return p as u64;
            }
        }
        0
    })
}

/// A broker attached to its session: the socket, its signal pipe's read
/// end, its end of warpd's signal channel, guest memory.
struct Attached {
    stream: UnixStream,
    sig_read: RawFd,
    to_warpd: RawFd,
    memory: std::sync::Arc<perform::GuestMemory>,
}

/// Connects to warpd, presents the token, and takes the guest memory (and
/// with the exitless path the ring) it is given. A forked broker does
/// this again with the token of its child session.
fn attach(socket_path: &str, token: String, base: RawFd, lim: &libc::rlimit) -> Result<Attached, BrokerError> {
    let stream = UnixStream::connect(socket_path).map_err(|e| BrokerError::Connect(socket_path.to_string(), e))?;
    let sock_fd = reserve(std::os::fd::IntoRawFd::into_raw_fd(stream), base)?;
    // SAFETY: sock_fd is a socket descriptor we own (moved above).
    let stream = unsafe { UnixStream::from_raw_fd(sock_fd) };

    let mut pipe = [0; 2];
    // SAFETY: pipe2 into a valid array.
    if unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return Err(os_err("pipe2"));
    }
    let sig_read = reserve(pipe[0], base)?;
    let sig_write = reserve(pipe[1], base)?;
    SIGNAL_PIPE.store(sig_write, std::sync::atomic::Ordering::SeqCst);
    SIGNAL_SEEN.store(false, std::sync::atomic::Ordering::SeqCst);
    // A timer is not inherited across fork: each broker makes its own.
    // SAFETY: timer_create into a local; the id is kept for the process's life.
    unsafe {
        let mut ev: libc::sigevent = std::mem::zeroed();
        ev.sigev_notify = libc::SIGEV_SIGNAL;
        ev.sigev_signo = nudge_signal();
        let mut timer: libc::timer_t = std::ptr::null_mut();
        let t = if libc::timer_create(libc::CLOCK_MONOTONIC, &mut ev, &mut timer) == 0 { timer as usize } else { 0 };
        NUDGE_TIMER.store(t, std::sync::atomic::Ordering::SeqCst);
    }

    // SAFETY: plain getters.
    let info = unsafe {
        BrokerInfo {
            pid: libc::getpid() as u32,
            ppid: libc::getppid() as u32,
            uid: libc::getuid(),
            gid: libc::getgid(),
            euid: libc::geteuid(),
            egid: libc::getegid(),
            reserved_fd_base: base,
            fault_page: fault_page(),
            nofile_soft: lim.rlim_cur,
            nofile_hard: lim.rlim_max,
        }
    };
    send(&stream, &BrokerMessage { kind: Some(broker_message::Kind::Hello(Hello { token, info: Some(info) })) })?;

    let (memfd, to_warpd, ring_fds) = receive_fds(&stream)?;
    let to_warpd = reserve(std::os::fd::IntoRawFd::into_raw_fd(to_warpd), base)?;
    let welcome =
        Welcome::decode(read_message(&stream)?.as_slice()).map_err(|e| BrokerError::Protocol(e.to_string()))?;
    let memory = std::sync::Arc::new(perform::GuestMemory::map(memfd, welcome.guest_memory_size)?);
    if let (Some((tables, log)), size) = (ring_fds, welcome.ring_tables_size) {
        if size > 0 {
            ring::start(memory.clone(), tables, size, log)?;
        }
    }
    Ok(Attached { stream, sig_read, to_warpd, memory })
}

pub(crate) fn send(stream: &UnixStream, msg: &BrokerMessage) -> Result<(), BrokerError> {
    use std::io::Write;
    let buf = msg.encode_length_delimited_to_vec();
    let mut s = stream;
    s.write_all(&buf).map_err(|e| BrokerError::Os("writing to warpd", e))
}

/// One length-delimited message from warpd.
pub(crate) fn read_message(stream: &UnixStream) -> Result<Vec<u8>, BrokerError> {
    let mut s = stream;
    match warp_proto::frame::read(&mut s, 256 << 20) {
        Ok(Some(buf)) => Ok(buf),
        // warpd went away, or ended the session mid-message.
        Ok(None) => Err(BrokerError::Closed),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(BrokerError::Closed),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Err(BrokerError::Protocol(e.to_string())),
        Err(e) => Err(BrokerError::Os("reading from warpd", e)),
    }
}

/// The guest memory and the broker's end of the signal channel, sent
/// beside one byte; with the exitless path, the page tables and the ring log.
type Received = (OwnedFd, OwnedFd, Option<(OwnedFd, OwnedFd)>);

fn receive_fds(stream: &UnixStream) -> Result<Received, BrokerError> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut byte = [0u8; 1];
    let mut iov = [std::io::IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([RawFd; 4]);
    loop {
        match recvmsg::<()>(stream.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC) {
            Ok(msg) => {
                let mut got = Vec::new();
                for c in msg.cmsgs().map_err(|e| BrokerError::Os("reading the memory descriptor", e.into()))? {
                    if let ControlMessageOwned::ScmRights(fds) = c {
                        // SAFETY: the kernel just gave us these descriptors.
                        got.extend(fds.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
                    }
                }
                if msg.bytes == 0 {
                    return Err(BrokerError::Closed);
                }
                let mut it = got.into_iter();
                return match (it.next(), it.next()) {
                    (Some(mem), Some(sig)) => Ok((mem, sig, it.next().zip(it.next()))),
                    _ => Err(BrokerError::Protocol("the guest memory and signal descriptors did not arrive".into())),
                };
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(BrokerError::Os("receiving guest memory", e.into())),
        }
    }
}
