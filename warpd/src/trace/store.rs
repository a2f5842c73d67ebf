//! The sled store: one database per daemon.
//!
//! Trees:
//! - `sessions`: session id -> `SessionMeta` (protobuf)
//! - `events`: session id bytes ++ 0 ++ seq (u64 big-endian) -> `Event` (protobuf)
//! - `blobs`: blake3 hash -> bytes (content-addressed, stored once)
//! - `blob_refs`: blake3 hash -> number of sessions using it (u64 BE)
//! - `session_blobs`: session id ++ 0 ++ hash -> () (which blobs a session uses)
//!
//! INTERFACE: signatures are stable; bodies are being written.

use std::path::Path;

use warp_proto::trace::{Data, Event, SessionMeta};

/// Why the store could not do something. Messages name what and where.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled or the file system failed.
    #[error("store: {0}")]
    Db(String),
    /// No session with this id (or not visible to the caller).
    #[error("no session {0}")]
    NotFound(String),
    /// A record does not decode: which session, which record.
    #[error("session {session}: {what} is corrupt: {detail}")]
    Corrupt { session: String, what: String, detail: String },
    /// Written by a newer warpd.
    #[error("session {session} was written in trace format {found}; this warpd reads up to {supported}")]
    NewerFormat { session: String, found: u32, supported: u32 },
    /// A blob an event refers to is missing or its bytes do not match its hash.
    #[error("session {session}: blob {hash} is {problem}")]
    Blob { session: String, hash: String, problem: String },
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Bytes at most this long are stored inline in events; longer go to blobs.
pub const INLINE_MAX: usize = 256;

pub struct Store {
    _db: sled::Db,
}

impl Store {
    /// Opens (creating) the store in `dir`, with a modest cache so many test
    /// daemons fit in memory. Sessions left `recording` by a daemon that died
    /// are marked incomplete (their ids are returned by `recovered`).
    pub fn open(dir: &Path) -> Result<Store> {
        let _ = dir;
        todo!("store being written")
    }

    /// Ids of sessions that `open` found interrupted and marked incomplete.
    pub fn recovered(&self) -> Vec<String> {
        todo!()
    }

    /// Stores new session metadata (status recording).
    pub fn create_session(&self, meta: &SessionMeta) -> Result<()> {
        let _ = meta;
        todo!()
    }

    /// Replaces a session's metadata (progress counters, the end).
    pub fn update_session(&self, meta: &SessionMeta) -> Result<()> {
        let _ = meta;
        todo!()
    }

    pub fn session(&self, id: &str) -> Result<SessionMeta> {
        let _ = id;
        todo!()
    }

    /// Every session, oldest first (by start time, then id).
    pub fn sessions(&self) -> Result<Vec<SessionMeta>> {
        todo!()
    }

    /// An appender for a session's events.
    pub fn writer(&self, id: &str) -> EventWriter {
        let _ = id;
        todo!()
    }

    /// Events of a session from sequence `from` on, in order.
    pub fn events(&self, id: &str, from: u64) -> Result<Vec<(u64, Event)>> {
        let _ = (id, from);
        todo!()
    }

    /// Blocks until the session has an event at or after `from`, or its
    /// status is no longer recording, or `timeout` passes (for `--follow`).
    pub fn wait_for_events(&self, id: &str, from: u64, timeout: std::time::Duration) -> Result<()> {
        let _ = (id, from, timeout);
        todo!()
    }

    /// The bytes behind `data` (inline or a blob), checked against its hash.
    pub fn load(&self, session: &str, data: &Data) -> Result<Vec<u8>> {
        let _ = (session, data);
        todo!()
    }

    /// Removes a session, its events, and every blob no other session uses.
    pub fn remove(&self, id: &str) -> Result<()> {
        let _ = id;
        todo!()
    }

    /// Makes everything written so far durable.
    pub fn flush(&self) -> Result<()> {
        todo!()
    }
}

/// Appends one session's events; flushes at bounded intervals.
pub struct EventWriter {
    _next: u64,
}

impl EventWriter {
    /// Appends an event; returns its sequence number.
    pub fn append(&mut self, event: &Event) -> Result<u64> {
        let _ = event;
        todo!()
    }

    /// Bytes as `Data`: inline when short, else a blob (stored once,
    /// counted as used by this session).
    pub fn data(&mut self, bytes: &[u8]) -> Result<Data> {
        let _ = bytes;
        todo!()
    }

    /// Events appended so far, and the bytes they and their new blobs took.
    pub fn counts(&self) -> (u64, u64) {
        todo!()
    }
}
