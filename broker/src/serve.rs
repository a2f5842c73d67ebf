//! Answering warpd: requests are read on the main thread and most are
//! performed there; a call that sleeps until an event (pause, nanosleep,
//! poll, wait4...: `waits` in the shared table) is performed on a worker
//! thread of its own, so that the requests warpd sends meanwhile (for
//! other guest threads) are answered. Replies carry the request's id and
//! go out in the order calls finish.
//!
//! Signals (Ctrl-C, a `kill` of the program's pid) reach the main thread
//! only: workers block them. While no worker has a call in progress the
//! main thread passes each to warpd on the signal channel (which also stops
//! a program that computes). While one has, it keeps them for that
//! worker's reply, as a call on the main thread carries the signals that
//! ended it, and kicks every such worker, so that its call ends with EINTR
//! as the main thread's would. A kick that lands just before a worker's
//! call starts would be lost, so the main thread kicks again every 10 ms
//! until that worker has answered.
//!
//! A call warpd marks deferrable (its process has other threads) and that
//! would wait is answered `pending` at once and performed on a worker with
//! private copies of its buffers; its completion is a second reply, and a
//! byte on the signal channel tells warpd it is there. Signals go to warpd
//! at once while such calls wait (warpd decides which thread takes them and
//! asks, with Cancel, for the call of one it interrupts to end). warpd's
//! idle wait also ends when a deferred call completes.
//!
//! Fork: the main thread forks the broker (`tree.rs` says what the child
//! forgets of its parent); the parent answers the child's pid, the child
//! returns `Served::Forked` and attaches to warpd again. A write that may
//! reach the original stdout or stderr is numbered in the tree's output
//! order (`tree::Ordered`) while it runs.

use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::thread::JoinHandleExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use prost::Message;
use warp_proto::broker::{broker_message, request, BrokerMessage, Reply, Request};

use crate::{os_err, perform, BrokerError};

/// How often a worker owed a signal is kicked until it answers.
const REKICK_MS: i32 = 10;

fn kick_signal() -> i32 {
    libc::SIGRTMIN() + 4
}

extern "C" fn on_kick(_: i32) {}

/// Installs the (empty) handler for the worker kick, without SA_RESTART,
/// so that a kicked call returns EINTR. Once per process.
pub fn install_kick_handler() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: a zeroed sigaction with a valid handler and no SA_RESTART.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_kick as *const () as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(kick_signal(), &sa, std::ptr::null_mut());
        }
    });
}

/// Signals that arrived while a worker had a call in progress: they go in
/// the first worker reply (under the same lock as `busy`, so none is
/// left behind when the last worker answers).
#[derive(Default)]
struct Held {
    busy: usize,
    signals: Vec<Sig>,
    /// How many were ever held: a worker that started before the last one
    /// is owed a kick.
    count: u64,
}

/// A call in progress on a worker thread.
struct Worker {
    /// Kept (not detached) until the worker is done and joined, so that its
    /// pthread_t stays valid for the kicks.
    handle: std::thread::JoinHandle<()>,
    /// `Held::count` when the call started: a signal since is owed to it.
    started: u64,
    done: Arc<AtomicBool>,
    /// A deferred call: the guest thread it is for (0: not deferred) and
    /// warpd's number for it.
    thread: u32,
    seq: u64,
    /// warpd asked for it to end (Cancel): kicked until it does.
    cancelled: bool,
    /// warpd's idle wait: completions warpd had seen when it sent it (one
    /// more sent since is owed a kick).
    idle: Option<u64>,
}

impl Worker {
    /// Whether it is owed a kick now.
    fn owed(&self, signals_held: u64, completions: u64) -> bool {
        if self.thread != 0 {
            return self.cancelled;
        }
        self.started < signals_held || self.idle.is_some_and(|seen| completions > seen)
    }
}

/// How serving ended.
pub enum Served {
    /// warpd said Finish (how to exit).
    Finished(warp_proto::broker::Finish),
    /// This is the child of a Fork: it attaches again with this token.
    Forked(String),
}

/// Serves requests until warpd says Finish, or a fork's child returns.
pub fn serve(
    stream: &UnixStream,
    sig_read: RawFd,
    to_warpd: RawFd,
    memory: Arc<perform::GuestMemory>,
) -> Result<Served, BrokerError> {
    let writer = Arc::new(Mutex::new(writer_of(stream)?));
    // Signals passed to warpd on the channel since the last request: warpd
    // may already have sent its next one, and if that may block it must
    // not start (it would block past the signal meant to end it).
    let mut unreported = false;
    let held = Arc::new(Mutex::new(Held::default()));
    // Deferred calls' completions sent so far.
    let completions = Arc::new(AtomicU64::new(0));
    let mut workers: Vec<Worker> = Vec::new();
    loop {
        let (finished, running): (Vec<Worker>, Vec<Worker>) =
            workers.drain(..).partition(|w| w.done.load(Ordering::SeqCst));
        workers = running;
        for w in finished {
            let _ = w.handle.join();
        }
        let count = held.lock().unwrap_or_else(|e| e.into_inner()).count;
        let sent = completions.load(Ordering::SeqCst);
        let owed: Vec<libc::pthread_t> =
            workers.iter().filter(|w| w.owed(count, sent)).map(|w| w.handle.as_pthread_t()).collect();
        // A completion wakes this loop (a byte on the signal pipe) to kick
        // an idle wait; the timeout covers a pipe that is not there (tests).
        let idle_waits = workers.iter().any(|w| w.idle.is_some()) && workers.iter().any(|w| w.thread != 0);
        for &t in &owed {
            // SAFETY: the thread is not joined yet (its handle is held), so
            // its pthread_t is valid even if it has just ended; a kick that
            // arrives after its call ended runs an empty handler.
            unsafe { libc::pthread_kill(t, kick_signal()) };
        }
        let mut fds = [
            libc::pollfd { fd: stream.as_raw_fd(), events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: sig_read, events: libc::POLLIN, revents: 0 },
        ];
        let timeout = if owed.is_empty() && !idle_waits { -1 } else { REKICK_MS };
        // SAFETY: poll on a valid array of two pollfds.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout) };
        if r < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(os_err("poll"));
        }
        if fds[1].revents != 0 {
            let signals = drain_signals(sig_read);
            let mut h = held.lock().unwrap_or_else(|e| e.into_inner());
            if h.busy > 0 {
                h.count += signals.len() as u64;
                h.signals.extend(signals);
            } else {
                for sig in signals {
                    let rec = warp_proto::broker::signal_record(sig.signo, &sig.info);
                    // SAFETY: one write of a local record to our channel descriptor.
                    if unsafe { libc::write(to_warpd, rec.as_ptr() as *const libc::c_void, rec.len()) }
                        != rec.len() as isize
                    {
                        return Err(os_err("passing a signal to warpd"));
                    }
                    unreported = true;
                }
            }
        }
        if fds[0].revents == 0 {
            continue;
        }
        let req = Request::decode(crate::read_message(stream)?.as_slice())
            .map_err(|e| BrokerError::Protocol(e.to_string()))?;
        let mut reply = Reply { id: req.id, ..Default::default() };
        // The call may change the program's descriptors.
        crate::ring::FD_EPOCH.fetch_add(1, Ordering::Release);
        match req.kind {
            // A signal is waiting (here, unreported, or in warpd) and the
            // call would wait: EINTR instead, the signal announced if new.
            Some(request::Kind::Syscall(call))
                if call.may_block
                    && (unreported || call.signal_pending)
                    && perform::would_block(call.nr, &call.args) =>
            {
                reply.ret = -(libc::EINTR as i64);
                reply.signals_pending = unreported;
                unreported = false;
            }
            // warpd's idle wait, with a completion it has not read yet.
            Some(request::Kind::Syscall(call))
                if call.ends_on_completion && completions.load(Ordering::SeqCst) > call.completions_seen =>
            {
                reply.ret = -(libc::EINTR as i64);
            }
            Some(request::Kind::Syscall(call))
                if call.deferred_thread != 0
                    && perform::worth_deferring(call.nr, &call.args)
                    && !perform::to_original_stream(&call) =>
            {
                unreported = false;
                match perform::Detached::new(&call, &memory) {
                    Some(detached) => {
                        reply.pending = true;
                        send(&writer, &reply)?;
                        let w = defer(
                            req.id,
                            (call.deferred_thread, call.deferred_seq),
                            detached,
                            to_warpd,
                            &writer,
                            &completions,
                        )?;
                        workers.push(w);
                        continue;
                    }
                    None => reply.ret = -(libc::EFAULT as i64),
                }
            }
            Some(request::Kind::Syscall(call))
                if call.may_block && warp_syscalls::lookup(call.nr as u64).is_some_and(|d| d.waits) =>
            {
                unreported = false;
                let idle = call.ends_on_completion.then_some(call.completions_seen);
                let mut w = spawn(req.id, call, &memory, &writer, &held)?;
                w.idle = idle;
                workers.push(w);
                continue;
            }
            Some(request::Kind::Cancel(c)) => {
                let hit = |w: &Worker| w.thread == c.thread && c.thread != 0 && (c.seq == 0 || w.seq == c.seq);
                for w in workers.iter_mut().filter(|w| hit(w)) {
                    w.cancelled = true;
                }
                continue;
            }
            Some(request::Kind::Syscall(call)) => {
                unreported = false;
                // A write that may reach the terminal takes its place in
                // the tree's output order while it runs.
                let ordered = perform::to_original_stream(&call).then(crate::tree::Ordered::lock).flatten();
                let done = perform::perform(&call, &memory);
                reply.order = ordered.map_or(0, |o| o.number());
                reply.ret = done.ret;
                // Its signal is still in the pipe: announced now, put on
                // the channel when the loop comes round.
                reply.signals_pending = done.signal_waits;
                reply.outputs = done.outputs;
                reply.stream = perform::stream_of(&call, done.ret);
                reply.sent = done.sent;
            }
            Some(request::Kind::ReadFile(rf)) => match perform::read_file(&rf.path, rf.max_len, !rf.readable) {
                Ok(bytes) => reply.file = bytes,
                Err(errno) => reply.ret = -(errno as i64),
            },
            Some(request::Kind::CloseOnExec(_)) => reply.ret = perform::close_on_exec(),
            // warpd answers this itself; the broker has no CPU time of the program's.
            Some(request::Kind::CpuTime(_)) => reply.ret = -(libc::ENOSYS as i64),
            Some(request::Kind::Finish(f)) => return Ok(Served::Finished(f)),
            Some(request::Kind::Fork(f)) => {
                crate::tree::mark_forked();
                // SAFETY: fork; the child runs only this thread, which
                // forgets the parent's connection and attaches anew.
                let pid = unsafe { libc::fork() };
                if pid == 0 {
                    crate::SIGNAL_PIPE.store(-1, Ordering::SeqCst);
                    crate::NUDGE_TIMER.store(0, Ordering::SeqCst);
                    // Their threads do not exist here: nothing of them is
                    // joined, kicked or dropped.
                    std::mem::forget(workers);
                    std::mem::forget(writer);
                    std::mem::forget(memory);
                    return Ok(Served::Forked(f.token));
                }
                reply.ret = if pid < 0 {
                    -(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EAGAIN) as i64)
                } else {
                    pid as i64
                };
            }
            None => return Err(BrokerError::Protocol("empty request".into())),
        }
        put_signals(&mut reply, drain_signals(sig_read));
        send(&writer, &reply)?;
    }
}

/// A second handle on the socket for the threads that write replies, in
/// the reserved range like every descriptor of the broker's own (the
/// program must neither see it nor close it on exec).
fn writer_of(stream: &UnixStream) -> Result<UnixStream, BrokerError> {
    use std::os::fd::FromRawFd;
    let fd = crate::dup_reserved(stream.as_raw_fd(), crate::RESERVED_BASE.load(Ordering::Relaxed))?;
    // SAFETY: a fresh descriptor we own.
    Ok(unsafe { UnixStream::from_raw_fd(fd) })
}

fn send(writer: &Mutex<UnixStream>, reply: &Reply) -> Result<(), BrokerError> {
    let stream = writer.lock().unwrap_or_else(|e| e.into_inner());
    crate::send(&stream, &BrokerMessage { kind: Some(broker_message::Kind::Reply(reply.clone())) })
}

/// Starts `call` on a worker thread that blocks the main thread's signals
/// (they are inherited from the mask in force here) and takes kicks.
fn spawn(
    id: u64,
    call: warp_proto::broker::Syscall,
    memory: &Arc<perform::GuestMemory>,
    writer: &Arc<Mutex<UnixStream>>,
    held: &Arc<Mutex<Held>>,
) -> Result<Worker, BrokerError> {
    let started = {
        let mut h = held.lock().unwrap_or_else(|e| e.into_inner());
        h.busy += 1;
        h.count
    };
    let done = Arc::new(AtomicBool::new(false));
    let (memory, writer, mine, finished) = (memory.clone(), writer.clone(), held.clone(), done.clone());
    let handle = spawn_blocking_signals(move || {
        let perform::Performed { ret, outputs, sent, signal_waits } = perform::perform(&call, &memory);
        // The signals that came while it ran go with its reply.
        let signals = {
            let mut h = mine.lock().unwrap_or_else(|e| e.into_inner());
            h.busy -= 1;
            std::mem::take(&mut h.signals)
        };
        let mut reply = Reply { id, ret, outputs, stream: perform::stream_of(&call, ret), sent, ..Default::default() };
        // Not started for a signal the main thread has not passed on yet:
        // warpd asks again rather than take the EINTR for the program's.
        reply.signals_pending = signal_waits && signals.is_empty();
        put_signals(&mut reply, signals);
        // warpd may have gone; the main thread notices that itself.
        let _ = send(&writer, &reply);
        finished.store(true, Ordering::SeqCst);
    });
    let handle = match handle {
        Ok(h) => h,
        Err(e) => {
            held.lock().unwrap_or_else(|e| e.into_inner()).busy -= 1;
            return Err(e);
        }
    };
    Ok(Worker { handle, started, done, thread: 0, seq: 0, cancelled: false, idle: None })
}

/// Runs a thread the main thread's signals do not reach (they are
/// inherited from the mask in force here), which takes kicks.
fn spawn_blocking_signals(f: impl FnOnce() + Send + 'static) -> Result<std::thread::JoinHandle<()>, BrokerError> {
    // SAFETY: sigset operations on locals; the old mask is restored below.
    let old = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in crate::main_thread_signals() {
            libc::sigaddset(&mut set, s);
        }
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
        old
    };
    let handle = std::thread::Builder::new().name("broker-wait".into()).spawn(f);
    // SAFETY: restoring the mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    handle.map_err(|e| BrokerError::Os("starting a worker thread", e))
}

/// Performs a deferred call on a worker: its completion goes to warpd as a
/// reply with the request's id, then a byte on the signal channel says so.
fn defer(
    id: u64,
    (thread, seq): (u32, u64),
    call: perform::Detached,
    to_warpd: RawFd,
    writer: &Arc<Mutex<UnixStream>>,
    completions: &Arc<AtomicU64>,
) -> Result<Worker, BrokerError> {
    let done = Arc::new(AtomicBool::new(false));
    let (writer, completions, finished) = (writer.clone(), completions.clone(), done.clone());
    let handle = spawn_blocking_signals(move || {
        let (ret, detached, outputs) = call.perform();
        let reply = Reply { id, ret, completion: true, thread, seq, detached, outputs, ..Default::default() };
        if send(&writer, &reply).is_ok() {
            completions.fetch_add(1, Ordering::SeqCst);
            let b = warp_proto::broker::COMPLETION_BYTE;
            // SAFETY: a one-byte write from a local to the channel.
            unsafe { libc::write(to_warpd, &b as *const u8 as *const libc::c_void, 1) };
            crate::wake_main();
        }
        finished.store(true, Ordering::SeqCst);
    })?;
    Ok(Worker { handle, started: u64::MAX, done, thread, seq, cancelled: false, idle: None })
}

/// A signal the handler saw: its number and the head of its siginfo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sig {
    pub signo: i32,
    pub info: Vec<u8>,
}

/// Signals in a reply: numbers, and their siginfo beside them.
fn put_signals(reply: &mut Reply, signals: Vec<Sig>) {
    for s in signals {
        reply.signals.push(s.signo);
        reply.signal_infos.push(s.info);
    }
}

/// What the signal handler wrote to the pipe since the last look: whole
/// records (each was one write under PIPE_BUF, and the pipe is read dry).
pub fn drain_signals(fd: RawFd) -> Vec<Sig> {
    crate::SIGNAL_SEEN.store(false, Ordering::SeqCst);
    crate::nudge(false);
    let mut bytes = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        // SAFETY: read into a local buffer from our non-blocking pipe.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
        if n <= 0 {
            break;
        }
        bytes.extend_from_slice(&buf[..n as usize]);
    }
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        // A zero byte only woke the main loop (a deferred call completed).
        if bytes[at] == 0 {
            at += 1;
            continue;
        }
        let end = (at + warp_proto::broker::SIGNAL_RECORD).min(bytes.len());
        out.push(Sig { signo: bytes[at] as i32, info: bytes[at + 1..end].to_vec() });
        at = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use warp_proto::broker::Syscall;

    fn syscall(id: u64, nr: u32, args: Vec<u64>, may_block: bool) -> Request {
        Request {
            id,
            kind: Some(request::Kind::Syscall(Syscall {
                nr,
                args,
                buffers: Vec::new(),
                may_block,
                ..Default::default()
            })),
        }
    }

    fn write(s: &UnixStream, r: &Request) {
        use std::io::Write;
        (&*s).write_all(&r.encode_length_delimited_to_vec()).unwrap();
    }

    fn read(s: &UnixStream) -> Reply {
        let f = crate::read_message(s).unwrap();
        match BrokerMessage::decode(f.as_slice()).unwrap().kind {
            Some(broker_message::Kind::Reply(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    /// The signal flag is the process's: tests that serve calls take turns.
    fn alone() -> std::sync::MutexGuard<'static, ()> {
        static TURN: Mutex<()> = Mutex::new(());
        TURN.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A broker serving one end of a socket pair, with its signal pipes.
    fn broker() -> (UnixStream, [RawFd; 2], std::thread::JoinHandle<Result<Served, BrokerError>>) {
        install_kick_handler();
        let (ours, theirs) = UnixStream::pair().unwrap();
        let mut sig = [0; 2];
        let mut chan = [0; 2];
        // SAFETY: pipe2 into valid arrays.
        unsafe {
            assert_eq!(libc::pipe2(sig.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK), 0);
            assert_eq!(libc::pipe2(chan.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK), 0);
        }
        let memfd = {
            // SAFETY: memfd_create with a valid name; checked.
            let fd = unsafe { libc::memfd_create(c"test".as_ptr(), libc::MFD_CLOEXEC) };
            assert!(fd >= 0);
            // SAFETY: our own descriptor.
            assert_eq!(unsafe { libc::ftruncate(fd, 1 << 20) }, 0);
            // SAFETY: a fresh descriptor we own.
            unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) }
        };
        let memory = Arc::new(perform::GuestMemory::map(memfd, 1 << 20).unwrap());
        let (sig_read, to_warpd) = (sig[0], chan[1]);
        let t = std::thread::spawn(move || serve(&theirs, sig_read, to_warpd, memory));
        (ours, [sig[1], chan[0]], t)
    }

    #[test]
    fn a_waiting_call_does_not_hold_up_the_next_request() {
        let _alone = alone();
        let (s, _pipes, t) = broker();
        // nanosleep(NULL, NULL) fails at once with EFAULT, so use poll with a
        // 300 ms timeout on no descriptors: it waits, on a worker.
        write(&s, &syscall(1, 7, vec![0, 0, 300, 0, 0, 0], true));
        write(&s, &syscall(2, 102, vec![0; 6], false));
        let first = read(&s);
        // SAFETY: getuid has no preconditions.
        let uid = unsafe { libc::getuid() } as i64;
        assert_eq!((first.id, first.ret), (2, uid), "getuid answered while poll waits");
        let second = read(&s);
        assert_eq!((second.id, second.ret), (1, 0), "poll timed out");
        write(&s, &Request { id: 0, kind: Some(request::Kind::Finish(Default::default())) });
        assert!(matches!(t.join().unwrap().unwrap(), Served::Finished(_)));
    }

    /// read(fd, guest[0x100..0x110]) marked deferrable for thread 7.
    fn deferred_read(id: u64, fd: i32, seq: u64) -> Request {
        use warp_proto::broker::{buffer, Buffer, Ranges};
        let buf = Buffer {
            arg: 1,
            data: Some(buffer::Data::Memory(Ranges { offset: vec![0x100], len: vec![16] })),
            out: true,
            written_by_ret: true,
            ..Default::default()
        };
        Request {
            id,
            kind: Some(request::Kind::Syscall(Syscall {
                nr: 0,
                args: vec![fd as u64, 0, 16, 0, 0, 0],
                buffers: vec![buf],
                may_block: true,
                deferred_thread: 7,
                deferred_seq: seq,
                ..Default::default()
            })),
        }
    }

    #[test]
    fn a_call_that_would_wait_is_deferred_and_completes_later() {
        let _alone = alone();
        let (s, [_sig_write, channel], t) = broker();
        let mut p = [0i32; 2];
        // SAFETY: pipe into a local array.
        assert_eq!(unsafe { libc::pipe(p.as_mut_ptr()) }, 0);
        write(&s, &deferred_read(1, p[0], 5));
        let first = read(&s);
        assert!(first.pending && !first.completion && first.id == 1, "pending at once: {first:?}");
        write(&s, &syscall(2, 102, vec![0; 6], false));
        assert_eq!(read(&s).id, 2, "other calls are answered meanwhile");
        // SAFETY: a write from a local to our pipe.
        assert_eq!(unsafe { libc::write(p[1], b"hello".as_ptr() as *const libc::c_void, 5) }, 5);
        let done = read(&s);
        assert_eq!((done.id, done.completion, done.thread, done.seq, done.ret), (1, true, 7, 5, 5));
        assert_eq!(done.detached, vec![b"hello".to_vec()], "the bytes come in the completion");
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut got = [0u8; 4];
        // SAFETY: a read into a local from our pipe.
        let n = unsafe { libc::read(channel, got.as_mut_ptr() as *mut libc::c_void, 4) };
        assert_eq!((n, got[0]), (1, warp_proto::broker::COMPLETION_BYTE), "and the channel says so");

        // A read that would not wait is performed at once, in place.
        // SAFETY: a write from a local to our pipe.
        assert_eq!(unsafe { libc::write(p[1], b"now".as_ptr() as *const libc::c_void, 3) }, 3);
        write(&s, &deferred_read(3, p[0], 6));
        let r = read(&s);
        assert_eq!((r.id, r.pending, r.completion, r.ret), (3, false, false, 3));

        // Cancel ends a deferred call that waits, with EINTR.
        write(&s, &deferred_read(4, p[0], 7));
        assert!(read(&s).pending);
        write(
            &s,
            &Request { id: 0, kind: Some(request::Kind::Cancel(warp_proto::broker::Cancel { thread: 7, seq: 0 })) },
        );
        let r = read(&s);
        assert_eq!((r.id, r.completion, r.ret), (4, true, -(libc::EINTR as i64)));
        assert_eq!(r.detached, vec![Vec::<u8>::new()]);

        // The idle wait ends with EINTR when a completion it has not seen
        // was sent already.
        let mut idle = syscall(5, 34, vec![0; 6], true);
        if let Some(request::Kind::Syscall(c)) = &mut idle.kind {
            c.ends_on_completion = true;
            c.completions_seen = 1;
        }
        write(&s, &idle);
        assert_eq!(read(&s).ret, -(libc::EINTR as i64));
        write(&s, &Request { id: 0, kind: Some(request::Kind::Finish(Default::default())) });
        assert!(matches!(t.join().unwrap().unwrap(), Served::Finished(_)));
        // SAFETY: closing our own descriptors.
        unsafe {
            libc::close(p[0]);
            libc::close(p[1]);
        }
    }

    #[test]
    fn a_signal_ends_a_waiting_call_and_is_passed_on() {
        let _alone = alone();
        let (s, [sig_write, channel], t) = broker();
        // pause() on a worker; then the signal handler's byte (SIGINT) arrives.
        write(&s, &syscall(1, 34, vec![0; 6], true));
        std::thread::sleep(std::time::Duration::from_millis(50));
        let rec = warp_proto::broker::signal_record(libc::SIGINT, &[7; 32]);
        // SAFETY: a write of a local record to our pipe.
        assert_eq!(unsafe { libc::write(sig_write, rec.as_ptr() as *const libc::c_void, rec.len()) }, 33);
        let r = read(&s);
        assert_eq!((r.id, r.ret, r.signals), (1, -(libc::EINTR as i64), vec![libc::SIGINT]), "the reply carries it");
        assert_eq!(r.signal_infos, vec![vec![7u8; 32]], "with its siginfo");
        let mut got = [0u8; 33];
        // SAFETY: a read into a local from our pipe.
        let n = unsafe { libc::read(channel, got.as_mut_ptr() as *mut libc::c_void, 1) };
        assert_eq!(n, -1, "and it is not also on the channel");
        // With no call in progress, a signal goes on the channel, as a record.
        // SAFETY: a write of a local record to our pipe.
        assert_eq!(unsafe { libc::write(sig_write, rec.as_ptr() as *const libc::c_void, rec.len()) }, 33);
        std::thread::sleep(std::time::Duration::from_millis(100));
        // SAFETY: a read into a local from our pipe.
        assert_eq!(unsafe { libc::read(channel, got.as_mut_ptr() as *mut libc::c_void, 33) }, 33);
        assert_eq!(got, rec);
        write(&s, &Request { id: 0, kind: Some(request::Kind::Finish(Default::default())) });
        assert!(matches!(t.join().unwrap().unwrap(), Served::Finished(_)));
    }

    /// A signal the handler has seen but the loop has not passed on yet
    /// stops a call that would wait, and the reply says signals are pending
    /// (else warpd would give the program an EINTR no signal explains): on
    /// the main thread and on a worker.
    #[test]
    fn a_call_stopped_for_a_signal_not_yet_passed_on_says_so() {
        let _alone = alone();
        let (s, _pipes, t) = broker();
        let mut p = [0i32; 2];
        // SAFETY: pipe into a local array.
        assert_eq!(unsafe { libc::pipe(p.as_mut_ptr()) }, 0);
        // read of an empty pipe (main thread), poll for 50 ms (a worker).
        for (id, nr, args) in [(1, 0, vec![p[0] as u64, 0x1000, 1]), (2, 7, vec![0, 0, 50])] {
            crate::SIGNAL_SEEN.store(true, Ordering::SeqCst);
            write(&s, &syscall(id, nr, args, true));
            let r = read(&s);
            assert_eq!((r.id, r.ret), (id, -(libc::EINTR as i64)), "not performed");
            assert!(r.signals_pending, "call {nr}: the reply must say a signal is on its way");
            crate::SIGNAL_SEEN.store(false, Ordering::SeqCst);
        }
        write(&s, &Request { id: 0, kind: Some(request::Kind::Finish(Default::default())) });
        assert!(matches!(t.join().unwrap().unwrap(), Served::Finished(_)));
        // SAFETY: closing our own descriptors.
        unsafe {
            libc::close(p[0]);
            libc::close(p[1]);
        }
    }
}
