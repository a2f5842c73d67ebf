//! The warpd side of the broker protocol (`proto/broker.proto`).
//!
//! Framing: each message is a varint length and the encoded message. The
//! guest-memory memfd and the broker's end of the signal channel go once, as
//! SCM_RIGHTS on a single byte sent right after the broker's `Hello` has been
//! accepted, followed by `Welcome`.
//!
//! The session thread reads each reply itself. Signals (Ctrl-C at the
//! terminal, a `kill` of the program's pid) come on a socket pair whose other
//! end the broker holds; a watcher thread queues them and kicks the vCPU so that
//! they are delivered promptly even while the program computes. The broker is
//! untrusted: every message is size-limited and decoded defensively.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use prost::Message;
use warp_proto::broker::{
    broker_message, request, BrokerMessage, Cancel, Hello, Reply, Request, Welcome, COMPLETION_BYTE, SIGNAL_RECORD,
};

use crate::hv::Kicker;

/// Largest message accepted from the broker (an executable image is the
/// largest thing it sends).
pub const MAX_MESSAGE: u64 = 1 << 30;

/// Why a broker connection could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The socket failed.
    #[error("broker connection failed: {0}")]
    Io(#[from] std::io::Error),
    /// The broker sent something that is not a valid message.
    #[error("broker sent an invalid message: {0}")]
    Protocol(String),
    /// The broker went away.
    #[error("the broker exited")]
    Gone,
}

/// Reads one length-delimited message; Ok(None) on a clean EOF before it.
pub fn read_frame(r: &mut impl Read, max: u64) -> Result<Option<Vec<u8>>, LinkError> {
    warp_proto::frame::read(r, max).map_err(|e| match e.kind() {
        std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof => LinkError::Protocol(e.to_string()),
        _ => LinkError::Io(e),
    })
}

pub fn write_frame(w: &mut impl Write, msg: &impl Message) -> std::io::Result<()> {
    let buf = msg.encode_length_delimited_to_vec();
    w.write_all(&buf)
}

/// The brokers of forked processes not attached yet, by the token their
/// fork gave them, with the uid they must run as: the broker socket hands
/// each to the recording thread of the process that forked.
type Waiting = std::collections::BTreeMap<String, (u32, std::sync::mpsc::SyncSender<BrokerLink>)>;
static CHILDREN: Mutex<Waiting> = Mutex::new(std::collections::BTreeMap::new());

/// A forked broker with this token (a fresh secret), running as `uid`,
/// will come to the receiver; [`forget_child`] when it will not.
pub fn expect_child(uid: u32) -> std::io::Result<(String, std::sync::mpsc::Receiver<BrokerLink>)> {
    let token = crate::server::secrets::new_token()?;
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    CHILDREN.lock().unwrap_or_else(|e| e.into_inner()).insert(token.clone(), (uid, tx));
    Ok((token, rx))
}

pub fn forget_child(token: &str) {
    CHILDREN.lock().unwrap_or_else(|e| e.into_inner()).remove(token);
}

/// Hands a connection that said Hello with `token` to the process waiting
/// for its forked broker: Err gives the link back when no fork expects it
/// (or the peer runs as another user). Tokens are compared in constant time.
pub fn child_arrived(token: &str, peer_uid: u32, link: BrokerLink) -> Result<(), BrokerLink> {
    let mut waiting = CHILDREN.lock().unwrap_or_else(|e| e.into_inner());
    let hit =
        waiting.keys().find(|t| crate::server::secrets::constant_time_eq(t.as_bytes(), token.as_bytes())).cloned();
    match hit {
        Some(t) if waiting[&t].0 == peer_uid => {
            let (_, tx) = waiting.remove(&t).expect("found");
            tx.try_send(link).map_err(|e| match e {
                std::sync::mpsc::TrySendError::Full(l) | std::sync::mpsc::TrySendError::Disconnected(l) => l,
            })
        }
        _ => Err(link),
    }
}

/// An attached broker, before the session starts using it.
pub struct BrokerLink {
    stream: UnixStream,
    info: warp_proto::broker::BrokerInfo,
}

impl BrokerLink {
    /// Reads the broker's first message (its `Hello`, with the session token).
    /// The caller checks the token and the peer's uid before using the link.
    pub fn accept(stream: UnixStream) -> Result<(Hello, BrokerLink), LinkError> {
        stream.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
        let mut s = &stream;
        let frame = read_frame(&mut s, 64 << 10)?.ok_or(LinkError::Gone)?;
        let msg = BrokerMessage::decode(frame.as_slice()).map_err(|e| LinkError::Protocol(e.to_string()))?;
        stream.set_read_timeout(None)?;
        match msg.kind {
            Some(broker_message::Kind::Hello(h)) => {
                let info = h.info.ok_or_else(|| LinkError::Protocol("Hello without BrokerInfo".into()))?;
                Ok((h, BrokerLink { stream, info }))
            }
            _ => Err(LinkError::Protocol("the first message is not a Hello".into())),
        }
    }

    /// The broker's identity, which the program will see as its own.
    pub fn info(&self) -> &warp_proto::broker::BrokerInfo {
        &self.info
    }

    /// The uid of the process at the other end (SO_PEERCRED).
    pub fn peer_uid(&self) -> std::io::Result<u32> {
        peer_uid(&self.stream)
    }

    /// Hands the broker the guest memory and the write end of a signal
    /// channel (a socket pair), and starts the thread that watches it.
    ///
    /// Replies are read by the session thread itself (one thread hop less
    /// per syscall); signals travel on the channel so that they arrive while
    /// the program computes, and its end of file says the broker died.
    /// With `ring` (the exitless path: the page tables, read-only, their
    /// size, and the ring log), the broker starts its poller.
    pub fn start(
        self,
        memfd: BorrowedFd<'_>,
        size: u64,
        kicker: Kicker,
        ring: Option<(BorrowedFd<'_>, u64, BorrowedFd<'_>)>,
    ) -> Result<Link, LinkError> {
        // A socket pair rather than a pipe: the watcher blocks on it while
        // the session thread can still drain it without blocking.
        let (sig_read, sig_write) = nix::sys::socket::socketpair(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::Stream,
            None,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| LinkError::Io(e.into()))?;
        let mut fds = vec![memfd.as_raw_fd(), sig_write.as_raw_fd()];
        if let Some((tables, _, log)) = ring {
            fds.extend([tables.as_raw_fd(), log.as_raw_fd()]);
        }
        let iov = [std::io::IoSlice::new(b"W")];
        let cmsg = [nix::sys::socket::ControlMessage::ScmRights(&fds)];
        nix::sys::socket::sendmsg::<()>(
            self.stream.as_raw_fd(),
            &iov,
            &cmsg,
            nix::sys::socket::MsgFlags::empty(),
            None,
        )
        .map_err(|e| LinkError::Io(e.into()))?;
        // The broker now holds the only other end: its exit closes the channel.
        drop(sig_write);
        let mut w = &self.stream;
        let ring_tables_size = ring.map_or(0, |r| r.1);
        write_frame(&mut w, &Welcome { guest_memory_size: size, ring_tables_size })?;

        let signals = Arc::new(Mutex::new(SignalQueue::default()));
        let dead = Arc::new(AtomicBool::new(false));
        let notified = Arc::new(AtomicU64::new(0));
        let (sig2, dead2, notified2) = (signals.clone(), dead.clone(), notified.clone());
        let channel = UnixStream::from(sig_read);
        let watched = channel.try_clone()?;
        std::thread::Builder::new().name("broker-signals".into()).spawn(move || {
            // Waits for bytes, then reads them under the queue's lock, as
            // `drain_channel` does: records split across reads stay in order.
            loop {
                let mut p = libc::pollfd { fd: watched.as_raw_fd(), events: libc::POLLIN, revents: 0 };
                // SAFETY: poll on one pollfd of ours.
                let r = unsafe { libc::poll(&mut p, 1, -1) };
                if r < 0 {
                    if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                        continue;
                    }
                    tracing::warn!("the broker's signal channel failed: {}", std::io::Error::last_os_error());
                    break;
                }
                match read_channel(&watched, &sig2, &notified2) {
                    Some(0) => break,
                    Some(_) => kicker.kick(),
                    None => {}
                }
            }
            dead2.store(true, Ordering::SeqCst);
            kicker.kick();
        })?;
        Link::new(self.stream, channel, signals, dead, notified)
    }
}

/// A signal that reached the broker: its number and the head of the
/// siginfo_t it came with (`SIGNAL_RECORD` - 1 bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Arrival {
    pub signo: i32,
    pub info: Vec<u8>,
}

/// Signals read off the channel, and the start of a record not yet whole.
#[derive(Default)]
pub struct SignalQueue {
    arrived: Vec<Arrival>,
    partial: Vec<u8>,
}

/// Reads what the channel holds now, without waiting, into the queue:
/// Some(bytes read) (0: the broker is gone), None when nothing was there.
fn read_channel(channel: &UnixStream, signals: &Mutex<SignalQueue>, notified: &AtomicU64) -> Option<usize> {
    let mut q = signals.lock().expect("signal queue");
    let mut buf = [0u8; 1024];
    let mut total = 0;
    loop {
        // SAFETY: recv into a local buffer from our own socket.
        let n = unsafe {
            libc::recv(channel.as_raw_fd(), buf.as_mut_ptr() as *mut libc::c_void, buf.len(), libc::MSG_DONTWAIT)
        };
        if n == 0 {
            return Some(0);
        }
        if n < 0 {
            return (total > 0).then_some(total);
        }
        total += n as usize;
        channel_bytes(&buf[..n as usize], &mut q, notified);
    }
}

/// What came on the signal channel: signal records, and completion bytes
/// (a deferred call's completion is on the socket).
fn channel_bytes(bytes: &[u8], q: &mut SignalQueue, notified: &AtomicU64) {
    q.partial.extend_from_slice(bytes);
    let mut at = 0;
    while at < q.partial.len() {
        if q.partial[at] == COMPLETION_BYTE {
            notified.fetch_add(1, Ordering::SeqCst);
            at += 1;
            continue;
        }
        if q.partial.len() - at < SIGNAL_RECORD {
            break;
        }
        let signo = q.partial[at] as i32;
        let info = q.partial[at + 1..at + SIGNAL_RECORD].to_vec();
        q.arrived.push(Arrival { signo, info });
        at += SIGNAL_RECORD;
    }
    q.partial.drain(..at);
}

fn peer_uid(s: &UnixStream) -> std::io::Result<u32> {
    let cred =
        nix::sys::socket::getsockopt(s, nix::sys::socket::sockopt::PeerCredentials).map_err(std::io::Error::from)?;
    Ok(cred.uid())
}

/// A running broker connection.
///
/// Requests carry ids; more than one may be in flight (a guest thread
/// waiting in the broker must not stop another's calls), and replies come
/// back in the order the broker finishes them: [`Link::wait`] returns the
/// one asked for and keeps the others until they are asked for. A reply to
/// no request in flight is a protocol error.
pub struct Link {
    stream: UnixStream,
    reader: std::io::BufReader<UnixStream>,
    /// The signal channel, drained here when a reply says signals are on it.
    channel: UnixStream,
    signals: Arc<Mutex<SignalQueue>>,
    dead: Arc<AtomicBool>,
    next_id: u64,
    /// Requests sent and not yet taken by `wait`.
    in_flight: std::collections::BTreeSet<u64>,
    /// Replies read while waiting for another.
    arrived: std::collections::BTreeMap<u64, Reply>,
    /// Deferred calls (answered `pending`) whose completion has not come.
    deferred: std::collections::BTreeSet<u64>,
    /// Completions read and not yet taken, in the order they came.
    completed: std::collections::VecDeque<Reply>,
    /// Completions the broker announced on the channel, and read so far.
    notified: Arc<AtomicU64>,
    completions_read: u64,
}

/// The id of a request in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RequestId(u64);

impl Link {
    fn new(
        stream: UnixStream,
        channel: UnixStream,
        signals: Arc<Mutex<SignalQueue>>,
        dead: Arc<AtomicBool>,
        notified: Arc<AtomicU64>,
    ) -> Result<Link, LinkError> {
        let reader = std::io::BufReader::new(stream.try_clone()?);
        Ok(Link {
            stream,
            reader,
            signals,
            dead,
            next_id: 1,
            channel,
            in_flight: Default::default(),
            arrived: Default::default(),
            deferred: Default::default(),
            completed: Default::default(),
            notified,
            completions_read: 0,
        })
    }

    /// A link over a connected broker socket and its signal channel, with
    /// no watcher thread: the channel is read when a reply says signals are
    /// pending, or on [`Link::poll_channel`]. For tests and the fuzz target,
    /// which play the broker themselves.
    pub fn without_watcher(stream: UnixStream, channel: UnixStream) -> Result<Link, LinkError> {
        Link::new(stream, channel, Default::default(), Default::default(), Default::default())
    }

    /// Reads what the signal channel holds now, without waiting.
    pub fn poll_channel(&mut self) {
        self.drain_channel();
    }

    /// Sends a request and waits for its reply.
    pub fn call(&mut self, kind: request::Kind) -> Result<Reply, LinkError> {
        let id = self.send(kind)?;
        let reply = self.wait(id)?;
        if reply.pending {
            self.deferred.insert(reply.id);
        }
        Ok(reply)
    }

    /// Completions of deferred calls that came since the last look (read
    /// off the socket as the channel announces them).
    pub fn take_completions(&mut self) -> Result<Vec<Reply>, LinkError> {
        while self.completions_read < self.notified.load(Ordering::SeqCst) {
            let reply = self.read_reply()?;
            self.sort(reply)?;
        }
        Ok(self.completed.drain(..).collect())
    }

    /// Whether a completion waits to be taken.
    pub fn completions_waiting(&self) -> bool {
        !self.completed.is_empty() || self.completions_read < self.notified.load(Ordering::SeqCst)
    }

    /// Asks the broker to end thread `thread`'s deferred call (no reply:
    /// its completion comes as usual, with EINTR if it was waiting).
    pub fn cancel(&mut self, thread: u32, seq: u64) -> Result<(), LinkError> {
        let mut w = &self.stream;
        write_frame(&mut w, &Request { id: 0, kind: Some(request::Kind::Cancel(Cancel { thread, seq })) })
            .map_err(|_| LinkError::Gone)
    }

    /// Files a reply that is not the one being waited for: a completion,
    /// or the reply to another request in flight.
    fn sort(&mut self, reply: Reply) -> Result<(), LinkError> {
        if reply.completion && self.deferred.remove(&reply.id) {
            self.completions_read += 1;
            self.completed.push_back(reply);
            return Ok(());
        }
        if !self.in_flight.contains(&reply.id) || self.arrived.contains_key(&reply.id) {
            self.dead.store(true, Ordering::SeqCst);
            return Err(LinkError::Protocol(format!("reply {} to no request in flight", reply.id)));
        }
        self.arrived.insert(reply.id, reply);
        Ok(())
    }

    /// Sends a request without waiting for its reply.
    pub fn send(&mut self, kind: request::Kind) -> Result<RequestId, LinkError> {
        if self.dead.load(Ordering::SeqCst) {
            return Err(LinkError::Gone);
        }
        let id = self.next_id;
        self.next_id += 1;
        let mut w = &self.stream;
        if write_frame(&mut w, &Request { id, kind: Some(kind) }).is_err() {
            self.dead.store(true, Ordering::SeqCst);
            return Err(LinkError::Gone);
        }
        self.in_flight.insert(id);
        Ok(RequestId(id))
    }

    /// The reply to request `id`, reading (and keeping) others until it comes.
    pub fn wait(&mut self, RequestId(id): RequestId) -> Result<Reply, LinkError> {
        if !self.in_flight.remove(&id) {
            return Err(LinkError::Protocol(format!("no request {id} is waiting for a reply")));
        }
        if let Some(r) = self.arrived.remove(&id) {
            return Ok(r);
        }
        loop {
            let reply = self.read_reply()?;
            if reply.id == id && !reply.completion {
                return Ok(reply);
            }
            self.sort(reply)?;
        }
    }

    fn read_reply(&mut self) -> Result<Reply, LinkError> {
        let frame = match read_frame(&mut self.reader, MAX_MESSAGE) {
            Ok(Some(f)) => f,
            Ok(None) => {
                self.dead.store(true, Ordering::SeqCst);
                return Err(LinkError::Gone);
            }
            Err(e) => {
                self.dead.store(true, Ordering::SeqCst);
                return Err(e);
            }
        };
        // A broker that sends what is not a reply is not trusted again.
        let msg = BrokerMessage::decode(frame.as_slice()).map_err(|e| {
            self.dead.store(true, Ordering::SeqCst);
            LinkError::Protocol(e.to_string())
        })?;
        let Some(broker_message::Kind::Reply(reply)) = msg.kind else {
            self.dead.store(true, Ordering::SeqCst);
            return Err(LinkError::Protocol("expected a reply".into()));
        };
        if reply.signals_pending {
            self.drain_channel();
        }
        Ok(reply)
    }

    /// Moves what is on the signal channel to the queue now (the broker
    /// wrote it before its reply, so it is all there), without waiting for
    /// the watcher thread.
    fn drain_channel(&mut self) {
        read_channel(&self.channel, &self.signals, &self.notified);
    }

    /// Signals that arrived since the last call.
    pub fn take_signals(&mut self) -> Vec<Arrival> {
        std::mem::take(&mut self.signals.lock().expect("signal queue").arrived)
    }

    /// Whether signals wait to be taken.
    pub fn signals_waiting(&self) -> bool {
        !self.signals.lock().expect("signal queue").arrived.is_empty()
    }

    pub fn is_dead(&self) -> bool {
        self.dead.load(Ordering::SeqCst)
    }

    /// Tells the broker to exit; errors are irrelevant at this point.
    pub fn finish(&mut self) {
        let mut w = &self.stream;
        let _ = write_frame(&mut w, &Request { id: 0, kind: Some(request::Kind::Finish(Default::default())) });
    }

    /// Tells a forked process's broker to exit as its program ended (its
    /// parent's wait4 sees that status): killed by `signal`, or `code`.
    pub fn finish_as(&mut self, code: i32, signal: i32) {
        let mut w = &self.stream;
        let finish = warp_proto::broker::Finish { mirror: true, exit_code: code, signal };
        let _ = write_frame(&mut w, &Request { id: 0, kind: Some(request::Kind::Finish(finish)) });
    }

    /// The uid of the broker (SO_PEERCRED).
    pub fn peer_uid(&self) -> std::io::Result<u32> {
        peer_uid(&self.stream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link() -> (Link, UnixStream, UnixStream) {
        let (ours, broker) = UnixStream::pair().unwrap();
        let (channel, broker_channel) = UnixStream::pair().unwrap();
        (Link::without_watcher(ours, channel).unwrap(), broker, broker_channel)
    }

    fn reply(to: &UnixStream, id: u64, ret: i64) {
        let mut w = to;
        let msg = BrokerMessage { kind: Some(broker_message::Kind::Reply(Reply { id, ret, ..Default::default() })) };
        write_frame(&mut w, &msg).unwrap();
    }

    fn request_ids(from: &UnixStream, n: usize) -> Vec<u64> {
        let mut r = from;
        (0..n).map(|_| Request::decode(read_frame(&mut r, 1 << 20).unwrap().unwrap().as_slice()).unwrap().id).collect()
    }

    #[test]
    fn replies_are_matched_to_requests_whatever_their_order() {
        let (mut link, broker, _ch) = link();
        let a = link.send(request::Kind::Finish(Default::default())).unwrap();
        let b = link.send(request::Kind::Finish(Default::default())).unwrap();
        let c = link.send(request::Kind::Finish(Default::default())).unwrap();
        let ids = request_ids(&broker, 3);
        // The broker finishes them in the order c, a, b.
        reply(&broker, ids[2], 30);
        reply(&broker, ids[0], 10);
        reply(&broker, ids[1], 20);
        assert_eq!(link.wait(b).unwrap().ret, 20);
        assert_eq!(link.wait(a).unwrap().ret, 10);
        assert_eq!(link.wait(c).unwrap().ret, 30);
        // Each reply is taken once.
        assert!(matches!(link.wait(c), Err(LinkError::Protocol(_))));
    }

    #[test]
    fn a_reply_to_no_request_is_refused() {
        let (mut link, broker, _ch) = link();
        let a = link.send(request::Kind::Finish(Default::default())).unwrap();
        request_ids(&broker, 1);
        reply(&broker, 999, 0);
        assert!(matches!(link.wait(a), Err(LinkError::Protocol(m)) if m.contains("999")));
        assert!(link.is_dead());
    }

    #[test]
    fn a_broker_that_sends_no_reply_is_not_asked_again() {
        for bad in [
            BrokerMessage { kind: Some(broker_message::Kind::Hello(Default::default())) }
                .encode_length_delimited_to_vec(),
            vec![3, 0xff, 0xff, 0xff],
        ] {
            let (mut link, broker, _ch) = link();
            let a = link.send(request::Kind::Finish(Default::default())).unwrap();
            request_ids(&broker, 1);
            (&broker).write_all(&bad).unwrap();
            assert!(matches!(link.wait(a), Err(LinkError::Protocol(_))));
            assert!(link.is_dead());
            assert!(matches!(link.send(request::Kind::Finish(Default::default())), Err(LinkError::Gone)));
        }
    }

    #[test]
    fn frames_round_trip_and_reject_garbage() {
        let mut buf = Vec::new();
        write_frame(&mut buf, &Welcome { guest_memory_size: 42, ring_tables_size: 0 }).unwrap();
        let f = read_frame(&mut buf.as_slice(), 100).unwrap().unwrap();
        assert_eq!(Welcome::decode(f.as_slice()).unwrap().guest_memory_size, 42);
        assert!(read_frame(&mut &[][..], 100).unwrap().is_none());
        // Too long, truncated, and a never-ending varint.
        assert!(read_frame(&mut &[0xff, 0x01][..], 100).is_err());
        assert!(read_frame(&mut &[5, 1, 2][..], 100).is_err());
        assert!(read_frame(&mut &[0x80; 12][..], 100).is_err());
    }
}
