//! The broker protocol as warpd reads it: whatever a broker sends on its
//! socket and its signal channel, in whatever order warpd asks, the link
//! must not panic or hang, must hand each reply to the request it answers
//! (and a completion only for a call that was answered `pending`), must
//! keep signal records whole, and once it has refused something it must
//! treat the broker as gone.
//!
//! Input: two little-endian u16 lengths (of the operations and of the
//! channel bytes), the operations, the channel bytes, then the socket bytes.
#![no_main]

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;

use libfuzzer_sys::fuzz_target;
use warp_proto::broker::{request, SIGNAL_RECORD};
use warpd::link::{Link, LinkError};

fn split(data: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    if data.len() < 4 {
        return None;
    }
    let rest = &data[4..];
    let ops = (u16::from_le_bytes([data[0], data[1]]) as usize).min(rest.len());
    let (ops, rest) = rest.split_at(ops);
    let channel = (u16::from_le_bytes([data[2], data[3]]) as usize).min(rest.len());
    let (channel, stream) = rest.split_at(channel);
    Some((ops, channel, stream))
}

fn finish() -> request::Kind {
    request::Kind::Finish(Default::default())
}

fuzz_target!(|data: &[u8]| {
    let Some((ops, channel_bytes, stream_bytes)) = split(data) else { return };
    // Written before the link reads: kept within a socket's buffer.
    let stream_bytes = &stream_bytes[..stream_bytes.len().min(64 << 10)];
    // Both sockets hold everything the broker will ever send (inputs are
    // far below a socket's buffer), and its ends stop writing: the link
    // reads an end of file after them, never waits for more. The broker's
    // ends stay open so that the link's requests never meet a closed socket,
    // and its requests are read (and dropped) after every operation, as a
    // broker would, so that they never fill the socket.
    let (ours, broker) = UnixStream::pair().expect("socket pair");
    let (channel, broker_channel) = UnixStream::pair().expect("socket pair");
    (&broker).write_all(stream_bytes).expect("socket buffer");
    (&broker_channel).write_all(channel_bytes).expect("socket buffer");
    broker.shutdown(Shutdown::Write).expect("shutdown");
    broker_channel.shutdown(Shutdown::Write).expect("shutdown");
    broker.set_nonblocking(true).expect("nonblocking");
    let drain = || {
        let mut sink = [0u8; 4096];
        while matches!((&broker).read(&mut sink), Ok(n) if n > 0) {}
    };
    let mut link = Link::without_watcher(ours, channel).expect("link");

    let mut sent = Vec::new();
    let mut pending = BTreeSet::new();
    let mut completed = BTreeSet::new();
    let mut ops = ops.iter();
    while let Some(op) = ops.next() {
        let failed = match op % 6 {
            0 => match link.send(finish()) {
                Ok(id) => {
                    sent.push(id);
                    None
                }
                Err(e) => Some(e),
            },
            1 if !sent.is_empty() => {
                let k = *ops.next().unwrap_or(&0) as usize % sent.len();
                match link.wait(sent.remove(k)) {
                    Ok(r) => {
                        assert!(!r.completion, "a completion was taken as a reply");
                        None
                    }
                    Err(e) => Some(e),
                }
            }
            2 => match link.call(finish()) {
                Ok(r) => {
                    assert!(!r.completion, "a completion was taken as a reply");
                    if r.pending {
                        assert!(pending.insert(r.id), "two calls answered with id {}", r.id);
                    }
                    None
                }
                Err(e) => Some(e),
            },
            3 => match link.take_completions() {
                Ok(done) => {
                    for r in done {
                        assert!(r.completion);
                        assert!(pending.contains(&r.id), "a completion of {} which was not deferred", r.id);
                        assert!(completed.insert(r.id), "two completions of {}", r.id);
                    }
                    None
                }
                Err(e) => Some(e),
            },
            4 => {
                for s in link.take_signals() {
                    assert_eq!(s.info.len(), SIGNAL_RECORD - 1, "a signal record cut short");
                    assert_ne!(s.signo, 0xff, "a completion byte taken as a signal");
                }
                None
            }
            _ => {
                link.poll_channel();
                None
            }
        };
        drain();
        if let Some(e) = failed {
            // Nothing after a refusal is believed: the broker is gone.
            assert!(link.is_dead(), "an error that left the link alive: {e}");
            assert!(matches!(link.send(finish()), Err(LinkError::Gone)));
        }
    }
    drop(link);
    drop((broker, broker_channel));
});
