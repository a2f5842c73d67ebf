//! How many connections one user may hold open to warpd at once: beyond
//! that, a new connection of theirs is closed as soon as it is accepted
//! (logged once a minute per user), so that one user's idle connections
//! cannot take the descriptors and the attention other users' calls need.
//! Root is not limited.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UnixStream;
use tonic::transport::server::{Connected, UdsConnectInfo};

#[derive(Default)]
struct Counts {
    open: HashMap<u32, usize>,
    said: HashMap<u32, Instant>,
}

/// Open connections per uid.
#[derive(Clone)]
pub struct Limiter {
    counts: Arc<Mutex<Counts>>,
    max: usize,
    /// The uid that is not limited (root's).
    exempt: Option<u32>,
}

impl Limiter {
    pub fn new(max: usize, exempt: Option<u32>) -> Limiter {
        Limiter { counts: Arc::default(), max, exempt }
    }

    /// The accepted `stream`, counted against its user; None (the stream
    /// is dropped, so closed) when that user has `max` open already or
    /// cannot be told.
    pub fn admit(&self, stream: UnixStream) -> Option<Counted> {
        let uid = stream.peer_cred().ok()?.uid();
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let open = c.open.entry(uid).or_default();
        if Some(uid) != self.exempt && *open >= self.max {
            let now = Instant::now();
            let say = c.said.get(&uid).is_none_or(|t| now.duration_since(*t) > Duration::from_secs(60));
            if say {
                c.said.insert(uid, now);
                tracing::warn!(uid, max = self.max, "a user holds the most connections allowed: new ones are closed");
            }
            return None;
        }
        *open += 1;
        Some(Counted { stream, uid, counts: Arc::clone(&self.counts) })
    }

    /// How many connections `uid` holds open now.
    #[cfg(test)]
    pub fn open(&self, uid: u32) -> usize {
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).open.get(&uid).copied().unwrap_or(0)
    }
}

/// An admitted connection: it gives its user's slot back when it closes.
pub struct Counted {
    stream: UnixStream,
    uid: u32,
    counts: Arc<Mutex<Counts>>,
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = c.open.get_mut(&self.uid) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.open.remove(&self.uid);
            }
        }
    }
}

impl Connected for Counted {
    type ConnectInfo = UdsConnectInfo;

    fn connect_info(&self) -> UdsConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for Counted {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_user_gets_so_many_connections_and_their_slots_back() {
        let me = nix::unistd::getuid().as_raw();
        let pair = || UnixStream::pair().unwrap().0;
        let exempt = Limiter::new(1, Some(me));
        assert!(exempt.admit(pair()).is_some() && exempt.admit(pair()).is_some(), "the exempt uid is not limited");
        let limiter = Limiter::new(2, None);
        let a = limiter.admit(pair());
        let b = limiter.admit(pair());
        let c = limiter.admit(pair());
        assert!(a.is_some() && b.is_some());
        assert!(c.is_none(), "the third is closed");
        assert_eq!(limiter.open(me), 2);
        drop(a);
        assert_eq!(limiter.open(me), 1);
        assert!(limiter.admit(pair()).is_some(), "a slot came back");
    }
}
