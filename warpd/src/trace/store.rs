//! The sled store: one database per daemon.
//!
//! Trees:
//! - `sessions`: session id -> `SessionMeta` (protobuf)
//! - `events`: session id bytes ++ 0 ++ seq (u64 big-endian) -> `Event` (protobuf)
//! - `blobs`: blake3 hash -> bytes (content-addressed, stored once), or for
//!   a blob longer than `BLOB_FILE_MIN` a manifest (`WPC1` ++ length u64
//!   BE): its bytes are then the file `blob-files/<hex hash>` beside sled's
//!   (sled holds what it writes in memory for a while: a long blob in
//!   sled, even in pieces, costs its length in memory), written and read a
//!   buffer at a time, so that a blob can be stored from a stream (an
//!   import) and replayed or exported without the daemon holding it whole
//! - `blob_refs`: blake3 hash -> number of sessions using it (u64 BE)
//! - `session_blobs`: session id ++ 0 ++ hash -> () (which blobs a session uses)
//!
//! ```text
//!  recorder --EventWriter::append/data--> events, blobs (+ refs)
//!  replay, `warpctl events` <--events/load--  (wait_for_events for --follow)
//! ```
//!
//! Session ids never contain a NUL byte (`create_session` refuses them), so
//! `id ++ 0` is a prefix no other session's keys share.
//!
//! Durability. sled writes to its log at once; its background fsync thread
//! is off (it would hold the database, and its lock, for a while after the
//! store is dropped), so data is made durable by explicit flushes:
//! - a status change (`create_session`, an `update_session` that changes the
//!   status, crash recovery in `open`) and `remove` are flushed before they
//!   return;
//! - an `EventWriter` flushes after 4096 events or 1 s since its last flush
//!   (checked at each append, whichever comes first), on `finish` and on drop.
//!
//! Blob reference counts change only inside sled transactions covering
//! `blobs`, `blob_refs` and `session_blobs`, so two sessions recording (or a
//! recording and an `rm`) never race on a count, and a crash never leaves a
//! count that disagrees with `session_blobs`. A blob file is written (to a
//! temporary name, synced, then renamed) before its manifest is committed,
//! and deleted after the manifest is removed, under one lock, so no other
//! writer or `rm` sees it half done; files without a manifest (a crash
//! between the two) and temporary files are removed by `open`.
//!
//! Unreadable sessions (metadata that does not decode, or written in a newer
//! trace format) never stop `open`: they are left untouched. `sessions()`
//! leaves them out with a warning in the log, `unreadable()` names each with
//! its error, and `session(id)` / `events(id)` return that error (`Corrupt`
//! or `NewerFormat`). `remove(id)` still removes them.

use std::collections::HashSet;
use std::io::Read as _;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prost::Message;
use sled::transaction::{TransactionError, Transactional};
use warp_proto::trace::{data::Where, Data, Event, SessionMeta, Status};

use super::FORMAT_VERSION;

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
    /// Writing `needed` more bytes would leave the file system holding the
    /// store with less than the reserve free: refused before sled or a blob
    /// file meets a full disk (an I/O error leaves sled failing every
    /// operation until the daemon restarts).
    #[error(
        "the disk holding the store has {} free, and warpd keeps {} free (WARP_STORE_RESERVE_MB): stopped so that the store stays whole; free some space (`warpctl rm`, `warpctl gc`)",
        human(*available), human(*reserve)
    )]
    Full { available: u64, reserve: u64, needed: u64 },
    /// sled met a full disk (ENOSPC): a removal, which sled writes as new
    /// log records (it rewrites the tree nodes that held what goes, so a
    /// removal first takes about as much room as it will free), or a
    /// write past the reserve's checks.
    #[error(
        "store: {0}: the disk holding the store is full. sled, the store's database, needs room even to remove \
         (it writes about as much again as it removes before it frees anything) and fails every write after this \
         until warpd restarts: free space on that disk outside the store, then `warpctl daemon stop` and try again \
         (what was removed stays removed)"
    )]
    NoSpace(String),
}

/// Bytes in MiB for messages.
fn human(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1 << 20) as f64)
}

/// What warpd keeps free on the store's file system, in bytes
/// (`WARP_STORE_RESERVE_MB`, default 64 MiB); read once.
pub fn reserve() -> u64 {
    static RESERVE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *RESERVE.get_or_init(|| {
        let mb = std::env::var("WARP_STORE_RESERVE_MB").ok().and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(64);
        mb.saturating_mul(1 << 20)
    })
}

/// Free bytes (for an unprivileged user) on the file system holding `dir`;
/// `None` when it cannot be said.
fn free_bytes(dir: &Path) -> Option<u64> {
    let st = nix::sys::statvfs::statvfs(dir).ok()?;
    Some((st.blocks_available() as u64).saturating_mul(st.fragment_size() as u64))
}

/// How many bytes a writer stores between two looks at the free space.
const SPACE_CHECK_EVERY: u64 = 1 << 20;

pub type Result<T> = std::result::Result<T, StoreError>;

/// Bytes at most this long are stored inline in events; longer go to blobs.
pub const INLINE_MAX: usize = 256;

/// sled's page cache: small, so that many test daemons fit in memory.
const CACHE_BYTES: u64 = 8 << 20;

/// An `EventWriter` flushes after this many events...
const FLUSH_EVENTS: u64 = 4096;
/// ... or this long after its last flush, whichever comes first.
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// `wait_for_events` looks at the session's status this often (new events
/// wake it at once through a sled subscriber).
const STATUS_POLL: Duration = Duration::from_millis(100);

/// Events removed per sled batch by `remove`.
const REMOVE_BATCH: usize = 4096;
/// Blob uses a removal drops in one transaction.
const RELEASE_BATCH: usize = 1024;

/// `ending.failure` of a session that `open` found still recording.
pub const RECOVERED_FAILURE: &str = "warpd stopped while recording";

const BLOB_MISSING: &str = "missing";
/// Blobs longer than this are kept in files of their own.
pub const BLOB_FILE_MIN: usize = 1 << 20;
/// Bytes of a blob file read or written at a time.
const FILE_BUF: usize = 256 << 10;
/// The directory of blob files, in the store's.
const FILES_DIR: &str = "blob-files";
/// The start of a blob file's manifest (12 bytes: this, then the length).
const MANIFEST: &[u8; 4] = b"WPC1";
/// Held while a blob file is written or deleted.
static BLOB_FILES: std::sync::Mutex<()> = std::sync::Mutex::new(());
const BLOB_DAMAGED: &str = "damaged (its bytes do not match its hash)";

/// The store's trees; cheap to clone (sled handles are reference counted).
#[derive(Clone)]
struct Trees {
    db: sled::Db,
    sessions: sled::Tree,
    events: sled::Tree,
    blobs: sled::Tree,
    blob_refs: sled::Tree,
    session_blobs: sled::Tree,
    /// Where blob files are.
    files: std::sync::Arc<std::path::PathBuf>,
}

pub struct Store {
    trees: Trees,
    recovered: Vec<String>,
}

// Callers share one store between threads (behind an Arc) and move event
// writers onto recorder threads.
const _: () = {
    const fn shared<T: Send + Sync>() {}
    const fn movable<T: Send>() {}
    shared::<Store>();
    movable::<EventWriter>();
};

impl Store {
    /// Opens (creating) the store in `dir`, with a modest cache so many test
    /// daemons fit in memory. Sessions left `recording` by a daemon that died
    /// are marked incomplete (their ids are returned by `recovered`).
    pub fn open(dir: &Path) -> Result<Store> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Db(format!("cannot create {}: {e}", dir.display())))?;
        // sled's lock on the database outlives a dropped handle for a moment
        // (its flusher thread lets go last), and a daemon may start while
        // the previous one is still exiting: retry a lock conflict briefly.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let open_failed = |e: sled::Error| match db_err("cannot open the store")(e) {
            StoreError::Db(m) => StoreError::Db(format!("{m} (in {})", dir.display())),
            other => other,
        };
        // warpd holds its daemon lock by now: no other process of ours is
        // writing a snapshot here.
        remove_unfinished_snapshots(dir);
        let db = loop {
            // No background flusher: durability comes from the explicit
            // flushes (session start, end and status changes, every 4096
            // events or second), and without that thread holding the
            // database, dropping the store releases its lock at once.
            match sled::Config::new().path(dir).cache_capacity(CACHE_BYTES).flush_every_ms(None).open() {
                Ok(db) => break db,
                // sled reports the lock conflict as an Io error of kind Other
                // whose text carries the WouldBlock.
                Err(sled::Error::Io(e))
                    if (e.kind() == std::io::ErrorKind::WouldBlock
                        || e.to_string().contains("could not acquire lock"))
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => return Err(open_failed(e)),
            }
        };
        let files = dir.join(FILES_DIR);
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&files)
                .map_err(|e| StoreError::Db(format!("cannot create {}: {e}", files.display())))?;
        }
        let tree = |name: &str| {
            db.open_tree(name).map_err(|e| StoreError::Db(format!("cannot open tree {name} in {}: {e}", dir.display())))
        };
        let trees = Trees {
            sessions: tree("sessions")?,
            events: tree("events")?,
            blobs: tree("blobs")?,
            blob_refs: tree("blob_refs")?,
            session_blobs: tree("session_blobs")?,
            files: std::sync::Arc::new(files),
            db,
        };
        let mut store = Store { trees, recovered: Vec::new() };
        store.recovered = store.recover()?;
        store.remove_stray_files()?;
        Ok(store)
    }

    /// Marks every session still `recording` incomplete: no recorder can be
    /// writing it, since this process holds the database's lock.
    fn recover(&self) -> Result<Vec<String>> {
        let mut interrupted = Vec::new();
        for item in self.trees.sessions.iter() {
            let (key, value) = item.map_err(db_err("cannot read the sessions"))?;
            let Ok(id) = std::str::from_utf8(&key) else {
                tracing::warn!(key = %hex(&key), "session key is not UTF-8: skipped");
                continue;
            };
            let meta = match SessionMeta::decode(&value[..]) {
                Ok(meta) => meta,
                Err(e) => {
                    tracing::warn!(session = id, error = %e, "session metadata is corrupt: left as it is");
                    continue;
                }
            };
            if meta.status != Status::Recording as i32 {
                continue;
            }
            if meta.format_version > FORMAT_VERSION {
                // Re-encoding would drop the fields this warpd does not know.
                tracing::warn!(
                    session = id,
                    format = meta.format_version,
                    "session left recording by a newer warpd: left as it is"
                );
                continue;
            }
            interrupted.push((id.to_owned(), meta));
        }

        let mut ids = Vec::with_capacity(interrupted.len());
        for (id, mut meta) in interrupted {
            let events: usize = self
                .trees
                .events
                .scan_prefix(event_prefix(&id))
                .values()
                .filter_map(|v| v.ok())
                .map(|v| events_in(&v))
                .sum();
            meta.status = Status::Incomplete as i32;
            meta.end_ms = now_ms();
            meta.events = events as u64;
            let mut ending = meta.ending.take().unwrap_or_default();
            ending.failure = RECOVERED_FAILURE.to_owned();
            meta.ending = Some(ending);
            self.trees
                .sessions
                .insert(id.as_bytes(), meta.encode_to_vec())
                .map_err(db_err("cannot mark an interrupted session incomplete"))?;
            tracing::warn!(session = %id, events, "session was recording when warpd stopped: marked incomplete");
            ids.push(id);
        }
        if !ids.is_empty() {
            self.flush()?;
        }
        Ok(ids)
    }

    /// Ids of sessions that `open` found interrupted and marked incomplete.
    pub fn recovered(&self) -> Vec<String> {
        self.recovered.clone()
    }

    /// Stores new session metadata (status recording).
    ///
    /// A `format_version` of 0 is taken to mean this warpd's; an id that is
    /// empty, holds a NUL byte or is already used is refused.
    pub fn create_session(&self, meta: &SessionMeta) -> Result<()> {
        if !valid_id(&meta.id) {
            return Err(StoreError::Db(format!("session id {:?} is not valid (empty or holding a NUL byte)", meta.id)));
        }
        let value = encode_meta(meta)?;
        let swapped = self
            .trees
            .sessions
            .compare_and_swap(meta.id.as_bytes(), None::<&[u8]>, Some(value))
            .map_err(db_err("cannot store a new session"))?;
        if swapped.is_err() {
            return Err(StoreError::Db(format!("session {} already exists", meta.id)));
        }
        self.flush()
    }

    /// Replaces a session's metadata (progress counters, the end).
    ///
    /// Flushed before returning when the status changes.
    pub fn update_session(&self, meta: &SessionMeta) -> Result<()> {
        let id = meta.id.as_str();
        if !valid_id(id) {
            return Err(StoreError::NotFound(id.to_owned()));
        }
        let value = encode_meta(meta)?;
        // Compare-and-swap so that an update racing `remove` cannot bring
        // the session back.
        let status_changed = loop {
            let old = self
                .trees
                .sessions
                .get(id)
                .map_err(db_err("cannot read a session"))?
                .ok_or_else(|| StoreError::NotFound(id.to_owned()))?;
            let old_meta = SessionMeta::decode(&old[..]).ok();
            if let Some(old_meta) = &old_meta {
                if old_meta.format_version > FORMAT_VERSION {
                    return Err(newer_format(id, old_meta.format_version));
                }
            }
            let swapped = self
                .trees
                .sessions
                .compare_and_swap(id, Some(old), Some(value.as_slice()))
                .map_err(db_err("cannot update a session"))?;
            if swapped.is_ok() {
                break old_meta.map(|m| m.status) != Some(meta.status);
            }
        };
        if status_changed {
            self.flush()?;
        }
        Ok(())
    }

    pub fn session(&self, id: &str) -> Result<SessionMeta> {
        if !valid_id(id) {
            return Err(StoreError::NotFound(id.to_owned()));
        }
        let value = self
            .trees
            .sessions
            .get(id)
            .map_err(db_err("cannot read a session"))?
            .ok_or_else(|| StoreError::NotFound(id.to_owned()))?;
        decode_meta(id, &value)
    }

    /// Every session, oldest first (by start time, then id).
    ///
    /// Sessions that cannot be read (corrupt metadata, a newer format) are
    /// left out with a warning in the log; `unreadable` lists them.
    pub fn sessions(&self) -> Result<Vec<SessionMeta>> {
        let (mut readable, unreadable) = self.scan_sessions()?;
        for e in &unreadable {
            tracing::warn!(error = %e, "session left out of the list");
        }
        readable.sort_by(|a, b| a.start_ms.cmp(&b.start_ms).then_with(|| a.id.cmp(&b.id)));
        Ok(readable)
    }

    /// Why each session that `sessions` leaves out cannot be read (each
    /// error names its session).
    pub fn unreadable(&self) -> Result<Vec<StoreError>> {
        Ok(self.scan_sessions()?.1)
    }

    fn scan_sessions(&self) -> Result<(Vec<SessionMeta>, Vec<StoreError>)> {
        let mut readable = Vec::new();
        let mut unreadable = Vec::new();
        for item in self.trees.sessions.iter() {
            let (key, value) = item.map_err(db_err("cannot read the sessions"))?;
            let id = String::from_utf8_lossy(&key);
            match decode_meta(&id, &value) {
                Ok(meta) => readable.push(meta),
                Err(e) => unreadable.push(e),
            }
        }
        Ok((readable, unreadable))
    }

    /// An appender for a session's events.
    ///
    /// It continues after the session's last stored event. Errors (no such
    /// session, a store failure) come from its first `append` or `data`.
    pub fn writer(&self, id: &str) -> EventWriter {
        EventWriter {
            trees: self.trees.clone(),
            id: id.to_owned(),
            next: None,
            appended: 0,
            logical: 0,
            bytes: 0,
            unflushed: 0,
            last_flush: Instant::now(),
            referenced: HashSet::new(),
            since_space_check: 0,
        }
    }

    /// Events of a session from sequence `from` on, in order.
    pub fn events(&self, id: &str, from: u64) -> Result<Vec<(u64, Event)>> {
        self.iter_events(id, from)?.collect()
    }

    /// Like `events`, one at a time (for sessions too long to hold at once).
    /// The iterator ends after the first error.
    pub fn iter_events(&self, id: &str, from: u64) -> Result<EventIter> {
        self.session(id)?;
        // Event `from` may be inside a chunk stored under an earlier number.
        let start = match self.trees.events.range(event_prefix(id)..=event_key(id, from)).next_back() {
            Some(Ok((key, value))) if value.first() == Some(&CHUNK) => key.to_vec(),
            Some(Err(e)) => return Err(db_err("cannot read events")(e)),
            _ => event_key(id, from),
        };
        let first = start.get(id.len() + 1..).and_then(|b| b.try_into().ok()).map_or(from, u64::from_be_bytes);
        let inner = self.trees.events.range(start..events_end(id));
        Ok(EventIter {
            session: id.to_owned(),
            inner,
            key_len: id.len() + 9,
            expected: first,
            from,
            queued: std::collections::VecDeque::new(),
            done: false,
        })
    }

    /// Blocks until the session has an event at or after `from`, or its
    /// status is no longer recording, or `timeout` passes (for `--follow`).
    ///
    /// A timeout is not an error: the caller looks at `events` and waits
    /// again.
    pub fn wait_for_events(&self, id: &str, from: u64, timeout: std::time::Duration) -> Result<()> {
        let start = Instant::now();
        // Subscribe before looking, so an event appended in between wakes us.
        let mut appended = self.trees.events.watch_prefix(event_prefix(id));
        loop {
            let meta = self.session(id)?;
            if meta.status != Status::Recording as i32 {
                return Ok(());
            }
            let mut later = self.trees.events.range(event_key(id, from)..events_end(id));
            if later.next().transpose().map_err(db_err("cannot read events"))?.is_some() {
                return Ok(());
            }
            let Some(left) = timeout.checked_sub(start.elapsed()).filter(|d| !d.is_zero()) else {
                return Ok(());
            };
            let nap = left.min(STATUS_POLL);
            if let Err(std::sync::mpsc::RecvTimeoutError::Disconnected) = appended.next_timeout(nap) {
                // The subscription is gone; sleep instead of spinning.
                std::thread::sleep(nap);
            }
        }
    }

    /// The bytes behind `data` (inline or a blob), checked against its hash.
    ///
    /// A nonzero `len` must match the bytes; 0 means "not recorded" (proto3's
    /// default), so it is not checked.
    pub fn load(&self, session: &str, data: &Data) -> Result<Vec<u8>> {
        let corrupt = |what: &str, detail: String| StoreError::Corrupt {
            session: session.to_owned(),
            what: what.to_owned(),
            detail,
        };
        let check_len = |what: &str, found: usize| {
            if data.len != 0 && data.len != found as u64 {
                return Err(corrupt(what, format!("it holds {found} bytes but says {}", data.len)));
            }
            Ok(())
        };
        match &data.r#where {
            None if data.len == 0 => Ok(Vec::new()),
            None => Err(corrupt(
                "data reference",
                format!("it says {} bytes but holds neither bytes nor a blob hash", data.len),
            )),
            Some(Where::Inline(bytes)) => {
                check_len("inline data", bytes.len())?;
                Ok(bytes.clone())
            }
            Some(Where::Blob(hash)) => {
                // (A hash of the wrong length is refused by `read_blob`.)
                let mut bytes = Vec::new();
                self.read_blob(session, hash, &mut |piece| {
                    bytes.extend_from_slice(piece);
                    Ok(())
                })
                .map_err(|e| match e {
                    BlobStreamError::Store(e) => e,
                    BlobStreamError::Stream(e) => StoreError::Db(format!("cannot hold a blob: {e}")),
                })?;
                check_len("blob reference", bytes.len())?;
                Ok(bytes)
            }
        }
    }

    /// The first `n` bytes of blob `hash` (all of it when shorter), for
    /// showing: not checked against the hash, which covers all its bytes.
    pub fn blob_prefix(&self, session: &str, hash: &[u8], n: usize) -> Result<Vec<u8>> {
        let value = self.blob_value(session, hash)?;
        let Some(len) = manifest_len(&value) else {
            return Ok(value[..value.len().min(n)].to_vec());
        };
        let path = self.trees.blob_file(hash);
        let file =
            std::fs::File::open(&path).map_err(|e| StoreError::Db(format!("cannot open {}: {e}", path.display())))?;
        let mut bytes = Vec::with_capacity(n.min(len as usize));
        file.take(n as u64)
            .read_to_end(&mut bytes)
            .map_err(|e| StoreError::Db(format!("cannot read {}: {e}", path.display())))?;
        Ok(bytes)
    }

    /// The length of blob `hash`, used by `session`.
    pub fn blob_len(&self, session: &str, hash: &[u8]) -> Result<u64> {
        let value = self.blob_value(session, hash)?;
        Ok(manifest_len(&value).unwrap_or(value.len() as u64))
    }

    /// Passes blob `hash`'s bytes to `out` in order, a buffer at a time, and
    /// checks them against the hash as they pass: damage is found (and is
    /// an error) after the bytes before it were given.
    pub fn read_blob(
        &self,
        session: &str,
        hash: &[u8],
        out: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
    ) -> std::result::Result<(), BlobStreamError> {
        let blob_error = |problem: &str| StoreError::Blob {
            session: session.to_owned(),
            hash: hex(hash),
            problem: problem.to_owned(),
        };
        let value = self.blob_value(session, hash)?;
        let Some(len) = manifest_len(&value) else {
            if blake3::hash(&value).as_bytes()[..] != hash[..] {
                return Err(blob_error(BLOB_DAMAGED).into());
            }
            return out(&value).map_err(BlobStreamError::Stream);
        };
        let path = self.trees.blob_file(hash);
        let mut file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(blob_error(BLOB_MISSING).into()),
            Err(e) => return Err(StoreError::Db(format!("cannot open {}: {e}", path.display())).into()),
        };
        let cannot_read = |e: std::io::Error| StoreError::Db(format!("cannot read {}: {e}", path.display()));
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; FILE_BUF.min(len as usize)];
        let mut left = len;
        while left > 0 {
            let n = left.min(FILE_BUF as u64) as usize;
            match file.read_exact(&mut buf[..n]) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return Err(blob_error(BLOB_DAMAGED).into());
                }
                Err(e) => return Err(cannot_read(e).into()),
            }
            hasher.update(&buf[..n]);
            left -= n as u64;
            out(&buf[..n]).map_err(BlobStreamError::Stream)?;
        }
        let longer = file.read(&mut [0u8; 1]).map_err(cannot_read)? != 0;
        if longer || hasher.finalize().as_bytes()[..] != hash[..] {
            return Err(blob_error(BLOB_DAMAGED).into());
        }
        Ok(())
    }

    /// What `blobs` holds for `hash`: the bytes, or a blob file's manifest.
    fn blob_value(&self, session: &str, hash: &[u8]) -> Result<sled::IVec> {
        blob_hash(session, hash)?;
        self.trees.blobs.get(hash).map_err(db_err("cannot read a blob"))?.ok_or_else(|| StoreError::Blob {
            session: session.to_owned(),
            hash: hex(hash),
            problem: BLOB_MISSING.to_owned(),
        })
    }

    /// Removes blob files that no manifest names (written by a daemon that
    /// stopped before it committed them) and temporary ones.
    fn remove_stray_files(&self) -> Result<()> {
        let dir = &*self.trees.files;
        let entries =
            std::fs::read_dir(dir).map_err(|e| StoreError::Db(format!("cannot list {}: {e}", dir.display())))?;
        let mut removed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let stray = if name.starts_with(".tmp-") {
                true
            } else if let Some(hash) = unhex(name).filter(|h| h.len() == blake3::OUT_LEN) {
                let value = self.trees.blobs.get(&hash).map_err(db_err("cannot read a blob"))?;
                value.as_deref().and_then(manifest_len).is_none()
            } else {
                false
            };
            if stray && std::fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        if removed > 0 {
            tracing::warn!(
                files = removed,
                "blob files no session uses (a daemon stopped while storing them): removed"
            );
        }
        Ok(())
    }

    /// The hashes of the blobs a session uses.
    pub fn session_blob_hashes(&self, id: &str) -> Result<Vec<Vec<u8>>> {
        let prefix = event_prefix(id);
        let mut out = Vec::new();
        for kv in self.trees.session_blobs.scan_prefix(&prefix) {
            let (k, _) = kv.map_err(db_err("cannot list a session's blobs"))?;
            out.push(k[prefix.len()..].to_vec());
        }
        Ok(out)
    }

    /// Removes a session, its events, and every blob no other session uses.
    ///
    /// The metadata goes last, so an `rm` interrupted by a crash can simply
    /// be run again.
    pub fn remove(&self, id: &str) -> Result<()> {
        let exists = valid_id(id) && self.trees.sessions.contains_key(id).map_err(db_err("cannot read a session"))?;
        if !exists {
            return Err(StoreError::NotFound(id.to_owned()));
        }

        let prefix = event_prefix(id);
        loop {
            let mut batch = sled::Batch::default();
            let mut n = 0;
            for key in self.trees.events.scan_prefix(&prefix).keys().take(REMOVE_BATCH) {
                batch.remove(key.map_err(db_err("cannot read events"))?);
                n += 1;
            }
            if n == 0 {
                break;
            }
            self.trees.events.apply_batch(batch).map_err(db_err("cannot remove events"))?;
        }

        let used: Vec<sled::IVec> = self
            .trees
            .session_blobs
            .scan_prefix(&prefix)
            .keys()
            .collect::<std::result::Result<_, _>>()
            .map_err(db_err("cannot read the session's blobs"))?;
        for keys in used.chunks(RELEASE_BATCH) {
            self.release_blobs(id, keys, prefix.len())?;
        }

        self.trees.sessions.remove(id).map_err(db_err("cannot remove a session"))?;
        self.flush()
    }

    /// Drops session `id`'s uses `use_keys` (its prefix, `prefix` bytes
    /// long, then a blob's hash), and each blob with its last use: in one
    /// transaction, so that the tree nodes holding the blobs are rewritten
    /// once for them all, not once a blob (a node of large values
    /// rewritten a blob at a time took more space than the removal frees,
    /// which a nearly full disk did not have).
    fn release_blobs(&self, id: &str, use_keys: &[sled::IVec], prefix: usize) -> Result<()> {
        enum Released {
            NotUsed,
            StillUsed,
            /// Whether the blob had a file, which goes now.
            Deleted(bool),
            /// `blob_refs` holds no valid count: keep the blob rather than
            /// risk deleting one another session needs.
            BadCount,
        }
        let t = &self.trees;
        let _files = BLOB_FILES.lock().unwrap_or_else(|e| e.into_inner());
        let outcome = (&t.blobs, &t.blob_refs, &t.session_blobs).transaction(|(blobs, refs, uses)| {
            let mut released = Vec::with_capacity(use_keys.len());
            for use_key in use_keys {
                let hash = &use_key[prefix..];
                if uses.remove(use_key)?.is_none() {
                    released.push(Released::NotUsed);
                    continue;
                }
                let Some(count) = refs.get(hash)?.as_deref().and_then(read_count) else {
                    released.push(Released::BadCount);
                    continue;
                };
                if count <= 1 {
                    refs.remove(hash)?;
                    let old = blobs.remove(hash)?;
                    released.push(Released::Deleted(old.as_deref().and_then(manifest_len).is_some()));
                } else {
                    refs.insert(hash, &(count - 1).to_be_bytes())?;
                    released.push(Released::StillUsed);
                }
            }
            Ok(released)
        });
        for (use_key, released) in use_keys.iter().zip(tx_result(outcome, "cannot release a blob")?) {
            let hash = &use_key[prefix..];
            match released {
                Released::BadCount => {
                    tracing::warn!(session = id, blob = %hex(hash), "blob use count is missing or corrupt: blob kept");
                }
                Released::Deleted(true) => t.remove_blob_file(hash),
                Released::NotUsed | Released::StillUsed | Released::Deleted(_) => {}
            }
        }
        Ok(())
    }

    /// Reclaims what no session uses: blobs without a user (and their
    /// files), use counts that disagree with the uses, uses and events of
    /// sessions that are gone (an `rm` interrupted between its steps), and
    /// blob files no manifest names. Safe while recordings run: the counts
    /// are read before the uses are, and a blob or count is changed only in
    /// a transaction that finds its count as it was then (a use added or
    /// dropped since, or a blob stored since, has changed it: left for the
    /// next gc).
    pub fn gc(&self) -> Result<GcReport> {
        let t = &self.trees;
        let _files = BLOB_FILES.lock().unwrap_or_else(|e| e.into_inner());
        let mut report = GcReport { bytes_before: self.size_on_disk(), ..Default::default() };
        let exists = |id: &[u8]| t.sessions.contains_key(id).map_err(db_err("cannot read a session"));
        let counted: std::collections::HashMap<sled::IVec, sled::IVec> =
            t.blob_refs.iter().collect::<std::result::Result<_, _>>().map_err(db_err("cannot read use counts"))?;

        // Uses, counted per blob; those of missing sessions removed.
        let mut uses: std::collections::HashMap<Vec<u8>, u64> = std::collections::HashMap::new();
        for key in t.session_blobs.iter().keys() {
            let key = key.map_err(db_err("cannot read blob uses"))?;
            let Some(nul) = key.iter().position(|&b| b == 0) else { continue };
            if exists(&key[..nul])? {
                *uses.entry(key[nul + 1..].to_vec()).or_default() += 1;
            } else {
                t.session_blobs.remove(&key).map_err(db_err("cannot remove a blob use"))?;
                report.stray_uses += 1;
            }
        }
        // Events of missing sessions.
        let mut last: Option<(Vec<u8>, bool)> = None;
        for key in t.events.iter().keys() {
            let key = key.map_err(db_err("cannot read events"))?;
            let Some(nul) = key.iter().position(|&b| b == 0) else { continue };
            let id = &key[..nul];
            let live = match &last {
                Some((l, live)) if l.as_slice() == id => *live,
                _ => {
                    let live = exists(id)?;
                    last = Some((id.to_vec(), live));
                    live
                }
            };
            if !live {
                t.events.remove(&key).map_err(db_err("cannot remove an event"))?;
                report.stray_events += 1;
            }
        }
        // Blobs: without a user, removed; with a wrong count, counted again.
        for item in t.blobs.iter() {
            let (hash, value) = item.map_err(db_err("cannot read blobs"))?;
            let used = uses.get(hash.as_ref()).copied().unwrap_or(0);
            let seen = counted.get(&hash).cloned();
            if seen.as_deref().and_then(read_count) == Some(used) && used > 0 {
                continue;
            }
            let outcome = (&t.blobs, &t.blob_refs).transaction(|(blobs, refs)| {
                if refs.get(&hash)? != seen {
                    return Ok(false); // changed since the scan: left for the next gc
                }
                if used == 0 {
                    blobs.remove(&hash)?;
                    refs.remove(&hash)?;
                } else {
                    refs.insert(&hash, &used.to_be_bytes())?;
                }
                Ok(true)
            });
            if !tx_result(outcome, "cannot reclaim a blob")? {
                continue;
            }
            if used > 0 {
                report.counts_fixed += 1;
                continue;
            }
            report.blobs += 1;
            report.blob_bytes += manifest_len(&value).unwrap_or(value.len() as u64);
            if manifest_len(&value).is_some() {
                t.remove_blob_file(&hash);
            }
        }
        // Counts of blobs that are not there (and were not when counted).
        for (hash, count) in &counted {
            let outcome = (&t.blobs, &t.blob_refs).transaction(|(blobs, refs)| {
                if blobs.get(hash)?.is_none() && refs.get(hash)?.as_ref() == Some(count) {
                    refs.remove(hash)?;
                }
                Ok(())
            });
            tx_result(outcome, "cannot remove a use count")?;
        }
        // Under the lock: no blob file is being written.
        self.remove_stray_files()?;
        self.flush()?;
        report.bytes_after = self.size_on_disk();
        Ok(report)
    }

    /// The store's size on disk (sled's files and the blob files), 0 for
    /// what it cannot say.
    pub fn size_on_disk(&self) -> u64 {
        let files: u64 = std::fs::read_dir(&*self.trees.files)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum();
        self.trees.db.size_on_disk().unwrap_or(0) + files
    }

    /// Makes everything written so far durable.
    pub fn flush(&self) -> Result<()> {
        self.trees.db.flush().map_err(db_err("cannot flush"))?;
        Ok(())
    }
}

/// Events of one session in order, decoded one at a time (see
/// `Store::iter_events`).
pub struct EventIter {
    session: String,
    inner: sled::Iter,
    key_len: usize,
    /// The sequence number the next event must have: events are numbered
    /// from 0 without gaps, so a jump means events are missing.
    expected: u64,
    /// Events before this (in the first chunk) are skipped.
    from: u64,
    /// The rest of a chunk's events.
    queued: std::collections::VecDeque<(u64, Event)>,
    done: bool,
}

impl EventIter {
    fn corrupt(&self, what: String, detail: String) -> StoreError {
        StoreError::Corrupt { session: self.session.clone(), what, detail }
    }

    fn decode(&mut self, key: &[u8], value: &[u8]) -> Result<(u64, Event)> {
        let seq_bytes: [u8; 8] = key
            .get(self.key_len - 8..)
            .filter(|_| key.len() == self.key_len)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| {
                self.corrupt(
                    format!("the key after event {}", self.expected.wrapping_sub(1) as i64),
                    format!("{} is {} bytes long, not {}", hex(key), key.len(), self.key_len),
                )
            })?;
        let seq = u64::from_be_bytes(seq_bytes);
        if seq != self.expected {
            return Err(self.corrupt(
                format!("event {}", self.expected),
                format!("it is missing (the next stored event is {seq})"),
            ));
        }
        if value.first() == Some(&CHUNK) {
            let mut rest = &value[1..];
            let mut n = seq;
            while !rest.is_empty() {
                let e = Event::decode_length_delimited(&mut rest)
                    .map_err(|e| self.corrupt(format!("event {n} (in the chunk from {seq})"), e.to_string()))?;
                self.queued.push_back((n, e));
                n += 1;
            }
            self.expected = n;
            return self
                .queued
                .pop_front()
                .ok_or_else(|| self.corrupt(format!("event {seq}"), "an empty chunk".into()));
        }
        let event = Event::decode(value).map_err(|e| self.corrupt(format!("event {seq}"), e.to_string()))?;
        self.expected = seq.wrapping_add(1);
        Ok((seq, event))
    }
}

/// A stored value that holds several events (length-delimited), the
/// first numbered by its key: no Event encoding starts with this byte
/// (it would be field 31 with wire type 7).
const CHUNK: u8 = 0xff;

/// How many events a stored value holds.
fn events_in(value: &[u8]) -> usize {
    if value.first() != Some(&CHUNK) {
        return 1;
    }
    let mut rest = &value[1..];
    let mut n = 0;
    while let Ok(len) = prost::encoding::decode_varint(&mut rest) {
        let Some(r) = rest.get(len as usize..) else { break };
        rest = r;
        n += 1;
        if rest.is_empty() {
            break;
        }
    }
    n
}

impl Iterator for EventIter {
    type Item = Result<(u64, Event)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        loop {
            let result = match self.queued.pop_front() {
                Some(e) => Ok(e),
                None => match self.inner.next()? {
                    Ok((key, value)) => self.decode(&key, &value),
                    Err(e) => Err(db_err("cannot read events")(e)),
                },
            };
            if matches!(&result, Ok((seq, _)) if *seq < self.from) {
                continue;
            }
            self.done = result.is_err();
            return Some(result);
        }
    }
}

/// Appends one session's events; flushes at bounded intervals.
pub struct EventWriter {
    trees: Trees,
    id: String,
    /// The next sequence number, once the writer has looked at the store.
    next: Option<u64>,
    appended: u64,
    bytes: u64,
    /// Bytes of events and data, shared blobs included.
    logical: u64,
    /// Events and new blobs since the last flush.
    unflushed: u64,
    last_flush: Instant,
    /// Blobs this writer already counted as used by the session.
    referenced: HashSet<[u8; blake3::OUT_LEN]>,
    /// Bytes stored since the free space was last looked at.
    since_space_check: u64,
}

impl EventWriter {
    /// Refuses to store `n` more bytes when that would leave less than the
    /// reserve free (looked at every `SPACE_CHECK_EVERY` bytes, and for
    /// anything that large).
    fn room_for(&mut self, n: u64) -> Result<()> {
        self.since_space_check += n;
        if self.since_space_check < SPACE_CHECK_EVERY {
            return Ok(());
        }
        let Some(available) = free_bytes(&self.trees.files) else { return Ok(()) };
        // sled writes what it is given a second time when it compacts.
        let needed = self.since_space_check.saturating_mul(2);
        let reserve = reserve();
        if available < reserve.saturating_add(needed) {
            return Err(StoreError::Full { available, reserve, needed });
        }
        self.since_space_check = 0;
        Ok(())
    }

    /// Appends an event; returns its sequence number.
    pub fn append(&mut self, event: &Event) -> Result<u64> {
        let seq = self.next_seq()?;
        self.store_new(seq, &event.encode_to_vec(), 1)?;
        Ok(seq)
    }

    /// Stores `value` (holding `events` events) as the one at `seq`, which
    /// must not exist yet.
    /// `room_for` a blob of `len` bytes unless the store has it already
    /// (then only a use is counted).
    fn room_for_blob(&mut self, hash: &[u8], len: u64) -> Result<()> {
        if self.trees.blobs.contains_key(hash).map_err(db_err("cannot read blobs"))? {
            return Ok(());
        }
        self.room_for(len)
    }

    fn store_new(&mut self, seq: u64, value: &[u8], events: u64) -> Result<()> {
        self.room_for(value.len() as u64)?;
        let swapped = self
            .trees
            .events
            .compare_and_swap(event_key(&self.id, seq), None::<&[u8]>, Some(value))
            .map_err(db_err("cannot store an event"))?;
        if swapped.is_err() {
            return Err(StoreError::Db(format!(
                "session {}: event {seq} already exists (is another writer appending to this session?)",
                self.id
            )));
        }
        self.next = Some(seq + events);
        self.appended += events;
        self.bytes += value.len() as u64;
        self.logical += value.len() as u64;
        self.unflushed += events;
        self.flush_if_due()
    }

    /// Appends `events` as one stored value (a chunk): one store write for
    /// many small events (the exitless path's calls).
    pub fn append_all(&mut self, events: &[Event]) -> Result<()> {
        match events {
            [] => return Ok(()),
            [one] => return self.append(one).map(|_| ()),
            _ => {}
        }
        let seq = self.next_seq()?;
        let mut value = vec![CHUNK];
        for e in events {
            e.encode_length_delimited(&mut value).expect("a Vec grows");
        }
        self.store_new(seq, &value, events.len() as u64)
    }

    /// Bytes as `Data`: inline when short, else a blob (stored once,
    /// counted as used by this session).
    pub fn data(&mut self, bytes: &[u8]) -> Result<Data> {
        let len = bytes.len() as u64;
        if bytes.len() <= INLINE_MAX {
            return Ok(Data { r#where: Some(Where::Inline(bytes.to_vec())), len });
        }
        self.logical += len;
        let hash = *blake3::hash(bytes).as_bytes();
        if !self.referenced.contains(&hash) {
            self.next_seq()?;
            self.room_for_blob(&hash, len)?;
            let stored = self.reference_blob(&hash, bytes)?;
            self.referenced.insert(hash);
            if stored > 0 {
                self.bytes += stored;
                self.unflushed += 1;
            }
        }
        Ok(Data { r#where: Some(Where::Blob(hash.to_vec())), len })
    }

    /// Adds a blob given with its hash (an imported trace): refused unless
    /// the bytes hash to it.
    pub fn add_blob(&mut self, hash: &[u8], bytes: &[u8]) -> Result<()> {
        let hash = blob_hash(&self.id, hash)?;
        if blake3::hash(bytes).as_bytes() != &hash {
            return Err(self.damaged(&hash));
        }
        if !self.referenced.contains(&hash) {
            self.next_seq()?;
            self.room_for_blob(&hash, bytes.len() as u64)?;
            self.referenced.insert(hash);
            let stored = self.reference_blob(&hash, bytes)?;
            self.bytes += stored;
            self.unflushed += 1;
        }
        self.logical += bytes.len() as u64;
        Ok(())
    }

    /// Adds a blob of `len` bytes read from `input` (an imported trace, a
    /// buffer in memory at a time), given with its hash: refused, with
    /// nothing of it kept, unless the bytes hash to it.
    pub fn add_blob_from(
        &mut self,
        hash: &[u8],
        len: u64,
        input: &mut dyn std::io::Read,
    ) -> std::result::Result<(), BlobStreamError> {
        if len <= BLOB_FILE_MIN as u64 {
            let mut bytes = vec![0u8; len as usize];
            input.read_exact(&mut bytes).map_err(BlobStreamError::Stream)?;
            return Ok(self.add_blob(hash, &bytes)?);
        }
        let hash = blob_hash(&self.id, hash)?;
        if self.referenced.contains(&hash) {
            // Counted already: the bytes are only checked.
            let mut hasher = blake3::Hasher::new();
            let copied =
                std::io::copy(&mut std::io::Read::take(input, len), &mut hasher).map_err(BlobStreamError::Stream)?;
            if copied != len {
                return Err(BlobStreamError::Stream(std::io::ErrorKind::UnexpectedEof.into()));
            }
            if hasher.finalize().as_bytes() != &hash {
                return Err(self.damaged(&hash).into());
            }
        } else {
            self.next_seq()?;
            self.room_for_blob(&hash, len)?;
            let stored = self.reference_file(&hash, len, input)?;
            self.referenced.insert(hash);
            self.bytes += stored;
            self.unflushed += 1;
        }
        self.logical += len;
        Ok(())
    }

    fn damaged(&self, hash: &[u8]) -> StoreError {
        StoreError::Blob { session: self.id.clone(), hash: hex(hash), problem: BLOB_DAMAGED.into() }
    }

    /// Stores a blob longer than `BLOB_FILE_MIN`, read from `input`, as a
    /// file unless the store has it already (then its bytes are only
    /// checked), and counts this session as a user; returns the bytes
    /// stored. Bytes that do not match the hash leave nothing behind.
    fn reference_file(
        &self,
        hash: &[u8; blake3::OUT_LEN],
        len: u64,
        input: &mut dyn std::io::Read,
    ) -> std::result::Result<u64, BlobStreamError> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt;
        let t = &self.trees;
        let _files = BLOB_FILES.lock().unwrap_or_else(|e| e.into_inner());
        let path = t.blob_file(hash);
        let present = t.blobs.get(hash).map_err(db_err("cannot read a blob"))?;
        let whole = std::fs::metadata(&path).is_ok_and(|m| m.len() == len);
        let write = present.as_deref().and_then(manifest_len) != Some(len) || !whole;
        let fs_err =
            |what: &str, p: &Path, e: std::io::Error| StoreError::Db(format!("cannot {what} {}: {e}", p.display()));
        static TEMPORARY: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let temporary = t.files.join(format!(
            ".tmp-{}-{}",
            hex(hash),
            TEMPORARY.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let mut file = if write {
            let f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&temporary);
            Some(f.map_err(|e| fs_err("create", &temporary, e))?)
        } else {
            None
        };
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; FILE_BUF.min(len as usize)];
        let mut left = len;
        let outcome = (|| {
            while left > 0 {
                let n = left.min(FILE_BUF as u64) as usize;
                input.read_exact(&mut buf[..n]).map_err(BlobStreamError::Stream)?;
                hasher.update(&buf[..n]);
                left -= n as u64;
                if let Some(f) = file.as_mut() {
                    f.write_all(&buf[..n]).map_err(|e| fs_err("write", &temporary, e))?;
                }
            }
            if hasher.finalize().as_bytes() != hash {
                return Err(BlobStreamError::Store(self.damaged(hash)));
            }
            if let Some(f) = file.take() {
                // Durable under its name before a manifest names it.
                f.sync_all().map_err(|e| fs_err("sync", &temporary, e))?;
                std::fs::rename(&temporary, &path).map_err(|e| fs_err("rename", &temporary, e))?;
                if let Ok(dir) = std::fs::File::open(&*t.files) {
                    let _ = dir.sync_all();
                }
            }
            Ok(())
        })();
        if let Err(e) = outcome {
            if write {
                let _ = std::fs::remove_file(&temporary);
            }
            return Err(e);
        }
        let manifest = manifest(len);
        self.count_use(hash, write.then_some(&manifest[..]))?;
        Ok(if write { len } else { 0 })
    }

    /// Stores the blob if the store lacks it (or holds other bytes under its
    /// hash) and counts this session as a user; returns the bytes stored.
    fn reference_blob(&self, hash: &[u8; blake3::OUT_LEN], bytes: &[u8]) -> Result<u64> {
        if bytes.len() > BLOB_FILE_MIN {
            return self.reference_file(hash, bytes.len() as u64, &mut &bytes[..]).map_err(|e| match e {
                BlobStreamError::Store(e) => e,
                BlobStreamError::Stream(e) => StoreError::Db(format!("cannot read a blob from memory: {e}")),
            });
        }
        let stored = self.trees.blobs.get(hash).map_err(db_err("cannot read a blob"))?;
        let new = stored.as_deref() != Some(bytes);
        self.count_use(hash, new.then_some(bytes))?;
        Ok(if new { bytes.len() as u64 } else { 0 })
    }

    /// In one transaction: stores `value` as blob `hash`'s entry in `blobs`
    /// (when given) and counts this session as one of its users.
    fn count_use(&self, hash: &[u8; blake3::OUT_LEN], value: Option<&[u8]>) -> Result<()> {
        let use_key = session_blob_key(&self.id, hash);
        let t = &self.trees;
        let outcome = (&t.blobs, &t.blob_refs, &t.session_blobs).transaction(|(blobs, refs, uses)| {
            if let Some(value) = value {
                blobs.insert(&hash[..], value)?;
            }
            if uses.get(&use_key)?.is_none() {
                uses.insert(use_key.as_slice(), &[][..])?;
                match refs.get(hash)? {
                    None => {
                        refs.insert(&hash[..], &1u64.to_be_bytes())?;
                    }
                    Some(old) => {
                        // A corrupt count is left as it is: the blob is then
                        // never deleted, which is safe.
                        if let Some(count) = read_count(&old) {
                            refs.insert(&hash[..], &count.saturating_add(1).to_be_bytes())?;
                        }
                    }
                }
            }
            Ok(())
        });
        tx_result(outcome, "cannot store a blob")
    }

    /// Events appended so far, and the bytes they and their new blobs took.
    pub fn counts(&self) -> (u64, u64) {
        (self.appended, self.bytes)
    }

    /// Bytes of events and data counting every blob use, shared or not.
    pub fn logical_bytes(&self) -> u64 {
        self.logical
    }

    /// Makes this writer's events durable now.
    pub fn flush(&mut self) -> Result<()> {
        self.trees.db.flush().map_err(db_err("cannot flush events"))?;
        self.unflushed = 0;
        self.last_flush = Instant::now();
        Ok(())
    }

    /// Flushes and returns the final `counts`.
    pub fn finish(mut self) -> Result<(u64, u64)> {
        self.flush()?;
        Ok(self.counts())
    }

    fn flush_if_due(&mut self) -> Result<()> {
        if self.unflushed >= FLUSH_EVENTS || (self.unflushed > 0 && self.last_flush.elapsed() >= FLUSH_INTERVAL) {
            self.flush()?;
        }
        Ok(())
    }

    /// The next sequence number: on first use, after the session's last
    /// stored event (checking the session exists).
    fn next_seq(&mut self) -> Result<u64> {
        if let Some(next) = self.next {
            return Ok(next);
        }
        let exists = valid_id(&self.id)
            && self.trees.sessions.contains_key(&self.id).map_err(db_err("cannot read a session"))?;
        if !exists {
            return Err(StoreError::NotFound(self.id.clone()));
        }
        let last = self
            .trees
            .events
            .scan_prefix(event_prefix(&self.id))
            .keys()
            .next_back()
            .transpose()
            .map_err(db_err("cannot read events"))?;
        let next = match last {
            None => 0,
            Some(key) => {
                let seq: [u8; 8] = key.get(self.id.len() + 1..).and_then(|b| b.try_into().ok()).ok_or_else(|| {
                    StoreError::Corrupt {
                        session: self.id.clone(),
                        what: "the last event's key".to_owned(),
                        detail: format!("{} is {} bytes long, not {}", hex(&key), key.len(), self.id.len() + 9),
                    }
                })?;
                u64::from_be_bytes(seq) + 1
            }
        };
        self.next = Some(next);
        Ok(next)
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        if self.unflushed > 0 {
            if let Err(e) = self.flush() {
                tracing::warn!(session = %self.id, error = %e, "cannot flush events");
            }
        }
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && !id.as_bytes().contains(&0)
}

/// `id ++ 0`: the start of every `events` and `session_blobs` key of `id`.
fn event_prefix(id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(id.len() + 9);
    key.extend_from_slice(id.as_bytes());
    key.push(0);
    key
}

fn event_key(id: &str, seq: u64) -> Vec<u8> {
    let mut key = event_prefix(id);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// `id ++ 1`: just past every event key of `id`.
fn events_end(id: &str) -> Vec<u8> {
    let mut key = id.as_bytes().to_vec();
    key.push(1);
    key
}

fn session_blob_key(id: &str, hash: &[u8]) -> Vec<u8> {
    let mut key = event_prefix(id);
    key.extend_from_slice(hash);
    key
}

/// What `gc` reclaimed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Blobs no session used, and their bytes.
    pub blobs: u64,
    pub blob_bytes: u64,
    /// Use counts set to the number of uses.
    pub counts_fixed: u64,
    /// Uses and events of sessions that are gone.
    pub stray_uses: u64,
    pub stray_events: u64,
    /// The store's size on disk before and after.
    pub bytes_before: u64,
    pub bytes_after: u64,
}

/// Why a blob could not pass between the store and a stream: the store,
/// or the stream (the input it was read from, the output it went to).
#[derive(Debug, thiserror::Error)]
pub enum BlobStreamError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Stream(std::io::Error),
}

fn manifest(len: u64) -> [u8; 12] {
    let mut m = [0u8; 12];
    m[..4].copy_from_slice(MANIFEST);
    m[4..].copy_from_slice(&len.to_be_bytes());
    m
}

/// The length a blob file's manifest gives; None for a blob's own bytes
/// (which are longer than `INLINE_MAX`, never 12 bytes).
fn manifest_len(value: &[u8]) -> Option<u64> {
    if value.len() != 12 || &value[..4] != MANIFEST {
        return None;
    }
    let len = u64::from_be_bytes(value[4..].try_into().expect("8 bytes"));
    (len > BLOB_FILE_MIN as u64).then_some(len)
}

impl Trees {
    /// The file of blob `hash` (a 32-byte hash).
    fn blob_file(&self, hash: &[u8]) -> std::path::PathBuf {
        self.files.join(hex(hash))
    }

    /// Removes blob `hash`'s file once its manifest is gone; one that
    /// cannot be removed is left for the next `open` (a stray then).
    fn remove_blob_file(&self, hash: &[u8]) {
        if hash.len() != blake3::OUT_LEN {
            return;
        }
        let path = self.blob_file(hash);
        if let Err(e) = std::fs::remove_file(&path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(file = %path.display(), error = %e, "cannot remove a blob file");
            }
        }
    }
}

/// `hash` as a blob's hash; one of another length is a corrupt reference
/// (of `session`).
fn blob_hash(session: &str, hash: &[u8]) -> Result<[u8; blake3::OUT_LEN]> {
    hash.try_into().map_err(|_| StoreError::Corrupt {
        session: session.to_owned(),
        what: "blob reference".into(),
        detail: format!("its hash is {} bytes long, not {}", hash.len(), blake3::OUT_LEN),
    })
}

/// The bytes a lower-case hex string spells; None for anything else.
fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok()).collect()
}

fn read_count(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

fn encode_meta(meta: &SessionMeta) -> Result<Vec<u8>> {
    if meta.format_version > FORMAT_VERSION {
        return Err(newer_format(&meta.id, meta.format_version));
    }
    if meta.format_version == 0 {
        let mut meta = meta.clone();
        meta.format_version = FORMAT_VERSION;
        return Ok(meta.encode_to_vec());
    }
    Ok(meta.encode_to_vec())
}

fn decode_meta(id: &str, value: &[u8]) -> Result<SessionMeta> {
    let corrupt = |detail: String| StoreError::Corrupt { session: id.to_owned(), what: "metadata".to_owned(), detail };
    let meta = SessionMeta::decode(value).map_err(|e| corrupt(e.to_string()))?;
    if meta.format_version > FORMAT_VERSION {
        return Err(newer_format(id, meta.format_version));
    }
    if meta.id != id {
        return Err(corrupt(format!("it names session {:?}", meta.id)));
    }
    Ok(meta)
}

fn newer_format(id: &str, found: u32) -> StoreError {
    StoreError::NewerFormat { session: id.to_owned(), found, supported: FORMAT_VERSION }
}

/// Removes the snapshots sled began and never finished (`snap.N.generating`,
/// renamed `snap.N` once written): an open on a full disk leaves an empty
/// one, which every later open took for a corrupt snapshot and refused the
/// whole store for. Its log holds everything the snapshot would have.
fn remove_unfinished_snapshots(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => tracing::warn!(file = %entry.path().display(), "removed a snapshot sled never finished"),
                Err(e) => {
                    tracing::warn!(file = %entry.path().display(), error = %e, "cannot remove an unfinished snapshot")
                }
            }
        }
    }
}

fn db_err(what: &'static str) -> impl Fn(sled::Error) -> StoreError {
    move |e| match &e {
        // sled passes the OS error on, or wraps it in one of its own kind.
        sled::Error::Io(io)
            if io.raw_os_error() == Some(libc::ENOSPC) || io.kind() == std::io::ErrorKind::StorageFull =>
        {
            StoreError::NoSpace(format!("{what}: {e}"))
        }
        _ => StoreError::Db(format!("{what}: {e}")),
    }
}

/// A transaction's outcome; our closures never abort.
fn tx_result<T>(outcome: std::result::Result<T, TransactionError<()>>, what: &'static str) -> Result<T> {
    outcome.map_err(|e| match e {
        TransactionError::Storage(e) => db_err(what)(e),
        TransactionError::Abort(()) => StoreError::Db(format!("{what}: transaction aborted")),
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    use warp_proto::trace::{
        event::Kind, BrokerCall, Ending, InlineArg, MemoryWrite, ProgramEnd, SyscallEntry, SyscallExit,
    };

    use super::*;

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            static COUNTER: AtomicU32 = AtomicU32::new(0);
            let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
            let dir = std::env::temp_dir().join(format!(
                "warpd-store-{name}-{}-{}-{nanos}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn meta(id: &str, start_ms: u64) -> SessionMeta {
        SessionMeta {
            format_version: FORMAT_VERSION,
            id: id.to_owned(),
            argv: vec!["/bin/echo".into(), "hi".into()],
            env: vec!["PATH=/bin".into()],
            cwd: "/tmp".into(),
            owner_uid: 1000,
            start_ms,
            status: Status::Recording as i32,
            program: "/bin/echo".into(),
            exe_hash: vec![7; 32],
            exe_size: 4096,
            ..Default::default()
        }
    }

    fn entry(nr: u64) -> Event {
        Event {
            kind: Some(Kind::Entry(SyscallEntry { nr, args: vec![1, 2, 3], rip: 0x401000, thread: 0, time_us: 0 })),
        }
    }

    /// A nested event with every kind of field, for the corruption tests.
    fn sample_call() -> Event {
        let data = |b: &[u8]| Data { r#where: Some(Where::Inline(b.to_vec())), len: b.len() as u64 };
        Event {
            kind: Some(Kind::Call(BrokerCall {
                request_digest: vec![0xab; 32],
                nr: 0,
                ret: 12,
                outputs: vec![data(b"hello world\n")],
                writes: vec![MemoryWrite { offset: 0x7fff_0000, data: Some(data(b"abcdefgh")) }],
                signals: vec![-1, 17],
                stream: 1,
                file: Some(Data { r#where: Some(Where::Blob(vec![0x5a; 32])), len: 100_000 }),
                args: vec![3, 0x7fff_0000, 4096, u64::MAX],
                inline_args: vec![InlineArg { arg: 0, value: b"/etc/passwd".to_vec() }],
                signals_pending: true,
                pending: true,
                sent: None,
                signal_infos: vec![vec![1; 32]],
                order: 7,
            })),
        }
    }

    fn big(seed: u8, len: usize) -> Vec<u8> {
        (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
    }

    #[test]
    fn metadata_and_events_round_trip() {
        let dir = TempDir::new("round-trip");
        let store = Store::open(&dir.0).unwrap();
        assert!(store.recovered().is_empty());
        store.create_session(&meta("bbbb", 20)).unwrap();
        let mut first = meta("aaaa", 20);
        first.format_version = 0; // stored as this warpd's format
        store.create_session(&first).unwrap();
        store.create_session(&meta("cccc", 10)).unwrap();
        assert!(
            matches!(store.create_session(&meta("aaaa", 1)), Err(StoreError::Db(m)) if m.contains("already exists"))
        );
        assert!(store.create_session(&meta("", 1)).is_err());
        assert!(store.create_session(&meta("a\0b", 1)).is_err());

        let mut w = store.writer("aaaa");
        let small = w.data(b"short").unwrap();
        assert!(matches!(small.r#where, Some(Where::Inline(_))));
        let edge = w.data(&big(1, INLINE_MAX)).unwrap();
        assert!(matches!(edge.r#where, Some(Where::Inline(_))));
        let large_bytes = big(2, INLINE_MAX + 1);
        let large = w.data(&large_bytes).unwrap();
        assert_eq!(large.len, (INLINE_MAX + 1) as u64);
        assert!(matches!(&large.r#where, Some(Where::Blob(h)) if h.len() == 32));
        let mut call = sample_call();
        if let Some(Kind::Call(c)) = &mut call.kind {
            c.outputs = vec![small.clone(), large.clone()];
        }
        let written = [entry(0), call, Event { kind: Some(Kind::Exit(SyscallExit { nr: 0, ret: 5, time_us: 0 })) }];
        for (i, e) in written.iter().enumerate() {
            assert_eq!(w.append(e).unwrap(), i as u64);
        }
        let event_bytes: u64 = written.iter().map(|e| e.encoded_len() as u64).sum();
        assert_eq!(w.counts(), (3, event_bytes + large_bytes.len() as u64));
        assert_eq!(w.finish().unwrap(), (3, event_bytes + large_bytes.len() as u64));

        let read = store.events("aaaa", 0).unwrap();
        assert_eq!(read, written.iter().cloned().enumerate().map(|(i, e)| (i as u64, e)).collect::<Vec<_>>());
        assert_eq!(store.events("aaaa", 2).unwrap(), vec![(2, written[2].clone())]);
        assert!(store.events("aaaa", 3).unwrap().is_empty());
        assert!(store.events("bbbb", 0).unwrap().is_empty());
        assert_eq!(store.load("aaaa", &small).unwrap(), b"short");
        assert_eq!(store.load("aaaa", &large).unwrap(), large_bytes);
        assert_eq!(store.load("aaaa", &Data::default()).unwrap(), Vec::<u8>::new());

        let mut ended = store.session("aaaa").unwrap();
        assert_eq!(ended, {
            let mut m = first.clone();
            m.format_version = FORMAT_VERSION;
            m
        });
        ended.status = Status::Complete as i32;
        ended.end_ms = 30;
        ended.events = 3;
        ended.ending = Some(Ending { exit_code: 3, ..Default::default() });
        store.update_session(&ended).unwrap();
        assert!(matches!(store.update_session(&meta("zzzz", 1)), Err(StoreError::NotFound(_))));

        let ids: Vec<String> = store.sessions().unwrap().into_iter().map(|m| m.id).collect();
        assert_eq!(ids, ["cccc", "aaaa", "bbbb"]);
        drop(store);

        // Everything survives a reopen, and a new writer continues the numbering.
        let store = Store::open(&dir.0).unwrap();
        assert_eq!(store.session("aaaa").unwrap(), ended);
        let mut w = store.writer("aaaa");
        assert_eq!(w.append(&entry(60)).unwrap(), 3);
        // The blob is already stored and already counted for this session.
        let again = w.data(&large_bytes).unwrap();
        assert_eq!(again, large);
        assert_eq!(w.counts(), (1, entry(60).encoded_len() as u64));
        drop(w);
        assert_eq!(store.events("aaaa", 0).unwrap().len(), 4);
        assert_eq!(store.trees.blob_refs.get(again_hash(&again)).unwrap().as_deref(), Some(&1u64.to_be_bytes()[..]));
    }

    fn again_hash(d: &Data) -> Vec<u8> {
        match &d.r#where {
            Some(Where::Blob(h)) => h.clone(),
            _ => panic!("not a blob: {d:?}"),
        }
    }

    fn blob_data(hash: &[u8], len: usize) -> Data {
        Data { r#where: Some(Where::Blob(hash.to_vec())), len: len as u64 }
    }

    fn files_in(dir: &Path) -> Vec<(String, u64)> {
        let mut v: Vec<_> = std::fs::read_dir(dir.join(FILES_DIR))
            .unwrap()
            .map(|e| e.unwrap())
            .map(|e| (e.file_name().to_string_lossy().into_owned(), e.metadata().unwrap().len()))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_long_blob_is_kept_in_a_file_and_removed_with_its_last_user() {
        let dir = TempDir::new("files");
        let store = Store::open(&dir.0).unwrap();
        let bytes = big(7, 3 * BLOB_FILE_MIN + 123);
        store.create_session(&meta("one", 1)).unwrap();
        store.create_session(&meta("two", 2)).unwrap();
        let mut w1 = store.writer("one");
        let d1 = w1.data(&bytes).unwrap();
        assert_eq!(w1.counts().1, bytes.len() as u64);
        drop(w1);
        let hash = again_hash(&d1);
        assert_eq!(store.trees.blobs.get(&hash).unwrap().as_deref(), Some(&manifest(bytes.len() as u64)[..]));
        assert_eq!(files_in(&dir.0), vec![(hex(&hash), bytes.len() as u64)]);
        assert_eq!(store.load("one", &d1).unwrap(), bytes);
        assert_eq!(store.blob_len("one", &hash).unwrap(), bytes.len() as u64);
        let mut passed = Vec::new();
        store
            .read_blob("one", &hash, &mut |buf| {
                assert!(buf.len() <= FILE_BUF);
                passed.extend_from_slice(buf);
                Ok(())
            })
            .unwrap();
        assert_eq!(passed, bytes);

        // A second user, from a stream: counted, nothing stored again.
        let mut w2 = store.writer("two");
        w2.add_blob_from(&hash, bytes.len() as u64, &mut &bytes[..]).unwrap();
        assert_eq!(w2.counts().1, 0);
        drop(w2);
        assert_eq!(store.trees.blob_refs.get(&hash).unwrap().as_deref(), Some(&2u64.to_be_bytes()[..]));
        store.remove("one").unwrap();
        assert_eq!(store.load("two", &d1).unwrap(), bytes);
        store.remove("two").unwrap();
        assert!(store.trees.blobs.is_empty() && store.trees.blob_refs.is_empty());
        assert_eq!(files_in(&dir.0), vec![]);
    }

    #[test]
    fn a_streamed_blob_that_does_not_match_its_hash_leaves_nothing() {
        let dir = TempDir::new("files-bad");
        let store = Store::open(&dir.0).unwrap();
        store.create_session(&meta("one", 1)).unwrap();
        let bytes = big(8, 2 * BLOB_FILE_MIN + 5);
        let hash = *blake3::hash(&bytes).as_bytes();
        let mut wrong = bytes.clone();
        wrong[BLOB_FILE_MIN + 1] ^= 1;
        let len = bytes.len() as u64;
        let mut w = store.writer("one");
        let e = w.add_blob_from(&hash, len, &mut &wrong[..]).unwrap_err();
        assert!(
            matches!(e, BlobStreamError::Store(StoreError::Blob { ref problem, .. }) if problem == BLOB_DAMAGED),
            "{e}"
        );
        let e = w.add_blob_from(&hash, len, &mut &bytes[..BLOB_FILE_MIN + 7]).unwrap_err();
        assert!(matches!(e, BlobStreamError::Stream(_)), "{e}");
        let e = w.add_blob_from(&hash[..5], len, &mut &bytes[..]).unwrap_err();
        assert!(matches!(e, BlobStreamError::Store(StoreError::Corrupt { .. })), "{e}");
        assert!(
            store.trees.blobs.is_empty() && store.trees.session_blobs.is_empty() && store.trees.blob_refs.is_empty()
        );
        assert_eq!(files_in(&dir.0), vec![], "no file, not even a temporary one");
        // The right bytes are then stored.
        w.add_blob_from(&hash, len, &mut &bytes[..]).unwrap();
        drop(w);
        assert_eq!(store.load("one", &blob_data(&hash, bytes.len())).unwrap(), bytes);
    }

    #[test]
    fn a_damaged_or_missing_blob_file_is_reported_and_stray_files_go_at_open() {
        let dir = TempDir::new("files-damaged");
        let bytes = big(9, 2 * BLOB_FILE_MIN + 1);
        let hash = *blake3::hash(&bytes).as_bytes();
        let stray = hex(&[0x5a; blake3::OUT_LEN]);
        let files = dir.0.join(FILES_DIR);
        {
            let store = Store::open(&dir.0).unwrap();
            store.create_session(&meta("one", 1)).unwrap();
            let mut w = store.writer("one");
            w.data(&bytes).unwrap();
            drop(w);
            let data = blob_data(&hash, bytes.len());
            let path = files.join(hex(&hash));
            let mut damaged = bytes.clone();
            damaged[5] ^= 0x80;
            std::fs::write(&path, &damaged).unwrap();
            assert!(
                matches!(store.load("one", &data), Err(StoreError::Blob { problem, .. }) if problem == BLOB_DAMAGED)
            );
            std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
            assert!(
                matches!(store.load("one", &data), Err(StoreError::Blob { problem, .. }) if problem == BLOB_DAMAGED)
            );
            let mut longer = bytes.clone();
            longer.push(0);
            std::fs::write(&path, &longer).unwrap();
            assert!(
                matches!(store.load("one", &data), Err(StoreError::Blob { problem, .. }) if problem == BLOB_DAMAGED)
            );
            std::fs::write(&path, &bytes).unwrap();
            assert_eq!(store.load("one", &data).unwrap(), bytes);
            std::fs::remove_file(&path).unwrap();
            assert!(
                matches!(store.load("one", &data), Err(StoreError::Blob { problem, .. }) if problem == BLOB_MISSING)
            );
            std::fs::write(&path, &bytes).unwrap();
            // A daemon that stopped between a blob's file and its manifest,
            // or while writing the file; and a file that is not ours.
            std::fs::write(files.join(&stray), b"stray").unwrap();
            std::fs::write(files.join(".tmp-x-1"), b"half").unwrap();
            std::fs::write(files.join("README"), b"not a blob").unwrap();
        }
        let _store = Store::open(&dir.0).unwrap();
        assert_eq!(
            files_in(&dir.0),
            vec![("README".to_string(), 10), (hex(&hash), bytes.len() as u64)],
            "the manifest's file stays, strays go"
        );
    }

    #[test]
    fn gc_reclaims_what_no_session_uses_and_nothing_else() {
        let dir = TempDir::new("gc");
        let store = Store::open(&dir.0).unwrap();
        store.create_session(&meta("one", 1)).unwrap();
        store.create_session(&meta("two", 2)).unwrap();
        let small = big(1, 5_000);
        let long = big(2, BLOB_FILE_MIN + 10);
        let mut w = store.writer("one");
        let d_small = w.data(&small).unwrap();
        let d_long = w.data(&long).unwrap();
        w.append(&entry(1)).unwrap();
        drop(w);
        let mut w = store.writer("two");
        w.data(&small).unwrap();
        drop(w);
        let clean = store.gc().unwrap();
        assert_eq!((clean.blobs, clean.counts_fixed, clean.stray_uses, clean.stray_events), (0, 0, 0, 0), "{clean:?}");

        let h_small = again_hash(&d_small);
        // A blob and a blob file no session uses; a count that is wrong; a
        // use and an event of a session that is gone.
        let orphan = big(3, 4_000);
        let h_orphan = *blake3::hash(&orphan).as_bytes();
        store.trees.blobs.insert(h_orphan, orphan.as_slice()).unwrap();
        store.trees.blob_refs.insert(h_orphan, &1u64.to_be_bytes()).unwrap();
        let orphan_file = big(4, BLOB_FILE_MIN + 1);
        let h_file = *blake3::hash(&orphan_file).as_bytes();
        store.trees.blobs.insert(h_file, &manifest(orphan_file.len() as u64)).unwrap();
        std::fs::write(dir.0.join(FILES_DIR).join(hex(&h_file)), &orphan_file).unwrap();
        store.trees.blob_refs.insert(&h_small[..], &5u64.to_be_bytes()).unwrap();
        store.trees.session_blobs.insert(session_blob_key("ghost", &h_small), &[][..]).unwrap();
        store.trees.events.insert(event_key("ghost", 0), entry(9).encode_to_vec()).unwrap();

        let r = store.gc().unwrap();
        assert_eq!(r.blobs, 2, "{r:?}");
        assert_eq!(r.blob_bytes, (orphan.len() + orphan_file.len()) as u64, "{r:?}");
        assert_eq!((r.counts_fixed, r.stray_uses, r.stray_events), (1, 1, 1), "{r:?}");
        assert!(
            store.trees.blobs.get(h_orphan).unwrap().is_none()
                && store.trees.blob_refs.get(h_orphan).unwrap().is_none()
        );
        assert!(!dir.0.join(FILES_DIR).join(hex(&h_file)).exists());
        assert_eq!(store.trees.blob_refs.get(&h_small).unwrap().as_deref(), Some(&2u64.to_be_bytes()[..]));
        // What the sessions use is all there.
        assert_eq!(store.load("one", &d_small).unwrap(), small);
        assert_eq!(store.load("one", &d_long).unwrap(), long);
        assert_eq!(store.load("two", &d_small).unwrap(), small);
        assert_eq!(store.events("one", 0).unwrap(), vec![(0, entry(1))]);
        let again = store.gc().unwrap();
        assert_eq!((again.blobs, again.counts_fixed, again.stray_uses, again.stray_events), (0, 0, 0, 0));
        // And a later rm still frees everything.
        store.remove("one").unwrap();
        store.remove("two").unwrap();
        assert!(store.trees.blobs.is_empty() && store.trees.blob_refs.is_empty() && files_in(&dir.0).is_empty());
    }

    #[test]
    fn blobs_are_stored_once_and_removed_with_their_last_user() {
        let dir = TempDir::new("blobs");
        let store = Store::open(&dir.0).unwrap();
        let shared_bytes = big(3, 10_000);
        let own_bytes = big(4, 5_000);
        store.create_session(&meta("one", 1)).unwrap();
        store.create_session(&meta("two", 2)).unwrap();

        let mut w1 = store.writer("one");
        let d1 = w1.data(&shared_bytes).unwrap();
        let own = w1.data(&own_bytes).unwrap();
        w1.data(&shared_bytes).unwrap(); // a second use in one session counts once
        w1.append(&entry(1)).unwrap();
        assert_eq!(w1.counts().1, (shared_bytes.len() + own_bytes.len() + entry(1).encoded_len()) as u64);
        drop(w1);

        let mut w2 = store.writer("two");
        let d2 = w2.data(&shared_bytes).unwrap();
        w2.append(&entry(2)).unwrap();
        // The blob was already there: this session added only its event.
        assert_eq!(w2.counts(), (1, entry(2).encoded_len() as u64));
        drop(w2);

        assert_eq!(d1, d2);
        let hash = again_hash(&d1);
        assert_eq!(store.trees.blobs.len(), 2);
        assert_eq!(store.trees.blob_refs.get(&hash).unwrap().as_deref(), Some(&2u64.to_be_bytes()[..]));

        store.remove("one").unwrap();
        assert!(matches!(store.session("one"), Err(StoreError::NotFound(_))));
        assert!(matches!(store.events("one", 0), Err(StoreError::NotFound(_))));
        assert_eq!(store.load("two", &d2).unwrap(), shared_bytes);
        assert!(matches!(store.load("one", &own), Err(StoreError::Blob { problem, .. }) if problem == "missing"));
        assert_eq!(store.trees.blob_refs.get(&hash).unwrap().as_deref(), Some(&1u64.to_be_bytes()[..]));
        assert_eq!(store.events("two", 0).unwrap(), vec![(0, entry(2))]);

        store.remove("two").unwrap();
        assert!(matches!(store.remove("two"), Err(StoreError::NotFound(_))));
        for tree in [
            &store.trees.sessions,
            &store.trees.events,
            &store.trees.blobs,
            &store.trees.blob_refs,
            &store.trees.session_blobs,
        ] {
            assert!(tree.is_empty(), "{:?} not empty", std::str::from_utf8(&tree.name()));
        }
    }

    #[test]
    fn chunks_of_events_read_as_events_from_anywhere() {
        let dir = TempDir::new("chunks");
        let store = Store::open(&dir.0).unwrap();
        store.create_session(&meta("chnk", 1)).unwrap();
        let mut w = store.writer("chnk");
        w.append(&entry(0)).unwrap();
        w.append_all(&[entry(1), entry(2), entry(3)]).unwrap();
        w.append(&entry(4)).unwrap();
        w.append_all(&[entry(5), entry(6)]).unwrap();
        assert_eq!(w.finish().unwrap().0, 7);
        for from in 0..8u64 {
            let events = store.events("chnk", from).unwrap();
            let want: Vec<(u64, Event)> = (from..7).map(|n| (n, entry(n))).collect();
            assert_eq!(events, want, "from {from}");
        }
        drop(store);
        // Recovery counts the events a chunk holds.
        let store = Store::open(&dir.0).unwrap();
        assert_eq!(store.session("chnk").unwrap().events, 7);
    }

    #[test]
    fn interrupted_recordings_are_marked_incomplete_on_open() {
        let dir = TempDir::new("recovery");
        let done = {
            let store = Store::open(&dir.0).unwrap();
            let mut done = meta("done", 1);
            store.create_session(&done).unwrap();
            let mut w = store.writer("done");
            w.append(&entry(0)).unwrap();
            w.append(&Event { kind: Some(Kind::End(ProgramEnd { exit_code: 0, signal: 0 })) }).unwrap();
            drop(w);
            done.status = Status::Complete as i32;
            done.end_ms = 2;
            done.events = 2;
            done.ending = Some(Ending::default());
            store.update_session(&done).unwrap();

            store.create_session(&meta("live", 3)).unwrap();
            let mut w = store.writer("live");
            for nr in 0..5 {
                w.append(&entry(nr)).unwrap();
            }
            // The "crash": the writer and the store go away without the
            // recorder ever writing the end.
            drop(w);
            done
        };

        let store = Store::open(&dir.0).unwrap();
        assert_eq!(store.recovered(), ["live"]);
        let live = store.session("live").unwrap();
        assert_eq!(live.status, Status::Incomplete as i32);
        assert_eq!(live.ending.as_ref().map(|e| e.failure.as_str()), Some(RECOVERED_FAILURE));
        assert!(live.end_ms >= live.start_ms && live.end_ms > 0);
        assert_eq!(live.events, 5);
        assert_eq!(store.events("live", 0).unwrap().len(), 5);
        assert_eq!(store.session("done").unwrap(), done);
        assert_eq!(store.events("done", 0).unwrap().len(), 2);
        drop(store);

        // Nothing is left to recover the next time.
        let store = Store::open(&dir.0).unwrap();
        assert!(store.recovered().is_empty());
        assert_eq!(store.session("live").unwrap(), live);
    }

    #[test]
    fn corrupt_metadata_does_not_stop_open_and_is_reported() {
        let dir = TempDir::new("corrupt-meta");
        {
            let store = Store::open(&dir.0).unwrap();
            store.create_session(&meta("good", 1)).unwrap();
            store.trees.sessions.insert("bad", &[0xff, 0xff, 0xff][..]).unwrap();
            let mut wrong_id = meta("other", 1);
            wrong_id.status = Status::Complete as i32;
            store.trees.sessions.insert("misfiled", wrong_id.encode_to_vec()).unwrap();
            store.flush().unwrap();
        }
        let store = Store::open(&dir.0).unwrap();
        assert_eq!(store.recovered(), ["good"]);
        let ids: Vec<String> = store.sessions().unwrap().into_iter().map(|m| m.id).collect();
        assert_eq!(ids, ["good"]);
        match store.session("bad") {
            Err(e @ StoreError::Corrupt { .. }) => {
                let StoreError::Corrupt { session, what, .. } = &e else { unreachable!() };
                assert_eq!((session.as_str(), what.as_str()), ("bad", "metadata"));
                assert!(e.to_string().starts_with("session bad: metadata is corrupt: "), "{e}");
            }
            other => panic!("expected corrupt metadata, got {other:?}"),
        }
        assert!(matches!(store.events("bad", 0), Err(StoreError::Corrupt { .. })));
        assert!(
            matches!(store.session("misfiled"), Err(StoreError::Corrupt { detail, .. }) if detail.contains("other"))
        );
        let unreadable: Vec<String> = store.unreadable().unwrap().iter().map(|e| e.to_string()).collect();
        assert_eq!(unreadable.len(), 2);
        assert!(unreadable.iter().any(|m| m.starts_with("session bad:")));
        // An unreadable session can still be removed.
        store.remove("bad").unwrap();
        assert_eq!(store.unreadable().unwrap().len(), 1);
    }

    #[test]
    fn decoding_damaged_event_bytes_never_panics() {
        let bytes = sample_call().encode_to_vec();
        let mut errors = 0;
        for len in 0..bytes.len() {
            errors += Event::decode(&bytes[..len]).is_err() as usize;
        }
        for bit in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            if let Ok(e) = Event::decode(&flipped[..]) {
                // Whatever decodes re-encodes and decodes to itself.
                assert_eq!(Event::decode(&e.encode_to_vec()[..]).unwrap(), e);
            } else {
                errors += 1;
            }
        }
        assert!(errors > 0);
        for len in 0..bytes.len() {
            let _ = SessionMeta::decode(&bytes[..len]);
        }
    }

    #[test]
    fn corrupt_events_are_named() {
        let dir = TempDir::new("corrupt-events");
        let store = Store::open(&dir.0).unwrap();
        store.create_session(&meta("s", 1)).unwrap();
        let mut w = store.writer("s");
        for e in [entry(0), sample_call(), entry(1)] {
            w.append(&e).unwrap();
        }
        drop(w);
        let good = sample_call().encode_to_vec();
        let key = event_key("s", 1);

        let check = |value: &[u8]| -> bool {
            store.trees.events.insert(&key, value).unwrap();
            match store.events("s", 0) {
                Ok(events) => {
                    assert_eq!(events.len(), 3);
                    false
                }
                Err(StoreError::Corrupt { session, what, detail }) => {
                    assert_eq!((session.as_str(), what.as_str()), ("s", "event 1"), "{detail}");
                    true
                }
                Err(e) => panic!("unexpected error {e}"),
            }
        };
        let mut corrupt = 0;
        for len in 0..good.len() {
            corrupt += check(&good[..len]) as usize;
        }
        assert!(corrupt > good.len() / 2, "only {corrupt} of {} truncations detected", good.len());
        let mut corrupt = 0;
        for bit in (0..good.len() * 8).step_by(3) {
            let mut flipped = good.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            corrupt += check(&flipped) as usize;
        }
        assert!(corrupt > 0);

        // Events from 2 on do not read event 1.
        assert_eq!(store.events("s", 2).unwrap(), vec![(2, entry(1))]);

        // A lost event and a key of the wrong length are corrupt too.
        store.trees.events.remove(&key).unwrap();
        assert!(matches!(store.events("s", 0), Err(StoreError::Corrupt { what, detail, .. })
            if what == "event 1" && detail.contains("missing")));
        let mut short = event_prefix("s");
        short.extend_from_slice(&[0, 1]);
        store.trees.events.insert(&short, good.as_slice()).unwrap();
        assert!(matches!(store.events("s", 0), Err(StoreError::Corrupt { .. })));
        // The iterator stops after its error.
        let mut it = store.iter_events("s", 0).unwrap();
        assert!(it.next().unwrap().is_ok());
        assert!(it.next().unwrap().is_err());
        assert!(it.next().is_none());
    }

    #[test]
    fn damaged_missing_and_malformed_blobs_are_refused() {
        let dir = TempDir::new("damaged-blob");
        let store = Store::open(&dir.0).unwrap();
        store.create_session(&meta("s", 1)).unwrap();
        let mut w = store.writer("s");
        let bytes = big(5, 4000);
        let data = w.data(&bytes).unwrap();
        drop(w);
        let hash = again_hash(&data);

        let mut damaged = bytes.clone();
        damaged[1234] ^= 0x10;
        store.trees.blobs.insert(&hash, damaged).unwrap();
        let e = store.load("s", &data).unwrap_err();
        assert!(matches!(&e, StoreError::Blob { problem, .. } if problem == BLOB_DAMAGED));
        assert!(e.to_string().contains(&hex(&hash)), "{e}");

        store.trees.blobs.remove(&hash).unwrap();
        assert!(matches!(store.load("s", &data), Err(StoreError::Blob { problem, .. }) if problem == BLOB_MISSING));

        // Storing the bytes again repairs the blob.
        let mut w = store.writer("s");
        w.data(&bytes).unwrap();
        drop(w);
        assert_eq!(store.load("s", &data).unwrap(), bytes);
        assert_eq!(store.trees.blob_refs.get(&hash).unwrap().as_deref(), Some(&1u64.to_be_bytes()[..]));

        let short_hash = Data { r#where: Some(Where::Blob(vec![1; 31])), len: 4000 };
        assert!(
            matches!(store.load("s", &short_hash), Err(StoreError::Corrupt { what, .. }) if what == "blob reference")
        );
        let wrong_len = Data { len: 3999, ..data.clone() };
        assert!(matches!(store.load("s", &wrong_len), Err(StoreError::Corrupt { .. })));
        let inline_wrong_len = Data { r#where: Some(Where::Inline(b"abc".to_vec())), len: 4 };
        assert!(
            matches!(store.load("s", &inline_wrong_len), Err(StoreError::Corrupt { what, .. }) if what == "inline data")
        );
        let inline_no_len = Data { r#where: Some(Where::Inline(b"abc".to_vec())), len: 0 };
        assert_eq!(store.load("s", &inline_no_len).unwrap(), b"abc");
        let nothing = Data { r#where: None, len: 9 };
        assert!(matches!(store.load("s", &nothing), Err(StoreError::Corrupt { .. })));
    }

    #[test]
    fn newer_formats_are_refused_by_version() {
        let dir = TempDir::new("newer");
        let newer = FORMAT_VERSION + 1;
        {
            let store = Store::open(&dir.0).unwrap();
            store.create_session(&meta("old", 1)).unwrap();
            let mut future = meta("future", 2);
            future.format_version = newer;
            assert!(matches!(store.create_session(&future), Err(StoreError::NewerFormat { .. })));
            // Written by a newer warpd, left recording when it died.
            store.trees.sessions.insert("future", future.encode_to_vec()).unwrap();
        }
        let store = Store::open(&dir.0).unwrap();
        // Recovery re-encodes metadata, so it leaves a newer session alone.
        assert_eq!(store.recovered(), ["old"]);
        let e = store.session("future").unwrap_err();
        assert!(
            matches!(e, StoreError::NewerFormat { found, supported, .. } if found == newer && supported == FORMAT_VERSION)
        );
        let message = e.to_string();
        assert!(
            message.contains(&format!("format {newer}")) && message.contains(&format!("up to {FORMAT_VERSION}")),
            "{message}"
        );
        assert!(matches!(store.events("future", 0), Err(StoreError::NewerFormat { .. })));
        let raw = store.trees.sessions.get("future").unwrap().unwrap();
        assert_eq!(SessionMeta::decode(&raw[..]).unwrap().status, Status::Recording as i32);
        let ids: Vec<String> = store.sessions().unwrap().into_iter().map(|m| m.id).collect();
        assert_eq!(ids, ["old"]);
        assert!(
            matches!(&store.unreadable().unwrap()[..], [StoreError::NewerFormat { session, .. }] if session == "future")
        );
    }

    #[test]
    fn unknown_sessions_are_not_found() {
        let dir = TempDir::new("unknown");
        let store = Store::open(&dir.0).unwrap();
        for id in ["nope", "", "a\0b"] {
            assert!(matches!(store.session(id), Err(StoreError::NotFound(_))));
            assert!(matches!(store.events(id, 0), Err(StoreError::NotFound(_))));
            assert!(matches!(store.remove(id), Err(StoreError::NotFound(_))));
            assert!(matches!(store.wait_for_events(id, 0, Duration::from_secs(5)), Err(StoreError::NotFound(_))));
            let mut w = store.writer(id);
            assert!(matches!(w.append(&entry(0)), Err(StoreError::NotFound(_))));
            assert!(matches!(w.data(&big(0, 1000)), Err(StoreError::NotFound(_))));
            assert_eq!(w.counts(), (0, 0));
        }
        assert!(store.trees.events.is_empty() && store.trees.blobs.is_empty());
        assert_eq!(StoreError::NotFound("nope".into()).to_string(), "no session nope");
    }

    #[test]
    fn wait_for_events_wakes_on_append_status_and_timeout() {
        let dir = TempDir::new("wait");
        let store = Arc::new(Store::open(&dir.0).unwrap());
        store.create_session(&meta("s", 1)).unwrap();

        // Times out when nothing happens.
        let start = Instant::now();
        store.wait_for_events("s", 0, Duration::from_millis(300)).unwrap();
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(300) && waited < Duration::from_secs(3), "{waited:?}");

        // Wakes when another thread appends.
        let appender = {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(200));
                let mut w = store.writer("s");
                w.append(&entry(0)).unwrap();
                w.finish().unwrap();
            })
        };
        let start = Instant::now();
        store.wait_for_events("s", 0, Duration::from_secs(30)).unwrap();
        assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());
        appender.join().unwrap();
        assert_eq!(store.events("s", 0).unwrap().len(), 1);

        // An existing event returns at once; a later one is waited for.
        let start = Instant::now();
        store.wait_for_events("s", 0, Duration::from_secs(30)).unwrap();
        assert!(start.elapsed() < Duration::from_secs(1));

        // Wakes when the session ends.
        let ender = {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(200));
                let mut m = store.session("s").unwrap();
                m.status = Status::Complete as i32;
                store.update_session(&m).unwrap();
            })
        };
        let start = Instant::now();
        store.wait_for_events("s", 1, Duration::from_secs(30)).unwrap();
        assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());
        ender.join().unwrap();
        let start = Instant::now();
        store.wait_for_events("s", 1, Duration::from_secs(30)).unwrap();
        assert!(start.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn two_sessions_record_at_once() {
        let dir = TempDir::new("concurrent");
        let store = Arc::new(Store::open(&dir.0).unwrap());
        let shared_bytes = big(9, 3000);
        let threads: Vec<_> = ["left", "right"]
            .into_iter()
            .map(|id| {
                let store = Arc::clone(&store);
                let shared_bytes = shared_bytes.clone();
                store.create_session(&meta(id, 1)).unwrap();
                std::thread::spawn(move || {
                    let mut w = store.writer(id);
                    for i in 0..2000u32 {
                        let mut call = sample_call();
                        if let Some(Kind::Call(c)) = &mut call.kind {
                            c.nr = i;
                            c.outputs =
                                vec![w.data(&shared_bytes).unwrap(), w.data(&big(i as u8, 300 + i as usize)).unwrap()];
                        }
                        assert_eq!(w.append(&call).unwrap(), i as u64);
                    }
                    w.finish().unwrap()
                })
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap().0, 2000);
        }
        for id in ["left", "right"] {
            let events = store.events(id, 0).unwrap();
            assert_eq!(events.len(), 2000);
            for (i, (seq, e)) in events.iter().enumerate() {
                let Some(Kind::Call(c)) = &e.kind else { panic!("event {seq}: {e:?}") };
                assert_eq!((*seq, c.nr), (i as u64, i as u32));
                assert_eq!(store.load(id, &c.outputs[0]).unwrap(), shared_bytes);
                assert_eq!(store.load(id, &c.outputs[1]).unwrap(), big(i as u8, 300 + i));
            }
        }
        // Every blob counted once per session using it.
        for item in store.trees.blob_refs.iter() {
            let (_, count) = item.unwrap();
            assert_eq!(read_count(&count), Some(2));
        }
        store.remove("left").unwrap();
        store.remove("right").unwrap();
        assert!(store.trees.blobs.is_empty() && store.trees.blob_refs.is_empty());
    }
}
