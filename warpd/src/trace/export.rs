//! Exported trace files: one self-contained, checksummed, compressed file
//! per session, which `warpctl import` on another machine can replay.
//!
//! ```text
//!  "WARPTRC\0"  format version (u32 LE)  zstd( ExportRecord* )  blake3(records) (32 bytes)
//! ```
//!
//! The records (length-delimited protobuf, `trace.proto`) are the session's
//! metadata, its events in order, then every blob they use; a process
//! tree (format 6) has the same again for each forked process after the
//! first one's, parents before their children. The hash covers
//! the uncompressed records, so truncation, bit flips and a missing tail are
//! all refused before anything reaches the store.

use std::io::{Read, Seek, SeekFrom, Write};

use prost::Message;
use warp_proto::trace::{export_record, ExportRecord, SessionMeta, Status};

use super::store::{BlobStreamError, Store, StoreError};
use super::FORMAT_VERSION;

pub const MAGIC: &[u8; 8] = b"WARPTRC\0";
/// Largest single record accepted on import (a blob: an executable image or
/// one big read).
const MAX_RECORD: u64 = 1 << 31;
/// Records up to this long are read whole; a longer one (only a blob is)
/// is stored as it is read, a piece at a time.
const WHOLE_RECORD: u64 = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("writing the trace file: {0}")]
    Write(std::io::Error),
    /// The file is not a trace, or it is damaged: what and where.
    #[error("not a valid trace file: {0}")]
    Invalid(String),
    #[error("the trace file was written in format {found}; this warpd reads up to {supported}")]
    NewerFormat { found: u32, supported: u32 },
}

/// A writer that hashes what passes through it.
struct Hashing<W: Write> {
    inner: W,
    hash: blake3::Hasher,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes recording `id` (with every process of its tree) as a trace file to `out`.
pub fn export(store: &Store, id: &str, out: impl Write) -> Result<(), ExportError> {
    let meta = store.session(id)?;
    if !meta.root.is_empty() {
        return Err(ExportError::Invalid(format!(
            "session {id} is a forked process of recording {}; export {} (with all its processes)",
            meta.root, meta.root
        )));
    }
    let mut tree = vec![meta];
    let mut forked: Vec<SessionMeta> = store.sessions()?.into_iter().filter(|m| m.root == id).collect();
    // Parents before their children: a child's id extends its parent's.
    forked.sort_by(|a, b| (a.id.matches('.').count(), &a.id).cmp(&(b.id.matches('.').count(), &b.id)));
    tree.extend(forked);
    for m in &tree {
        if m.status != Status::Complete as i32 {
            return Err(ExportError::Invalid(format!(
                "session {} is not complete; only complete recordings are exported",
                m.id
            )));
        }
    }
    let mut out = out;
    out.write_all(MAGIC).map_err(ExportError::Write)?;
    out.write_all(&FORMAT_VERSION.to_le_bytes()).map_err(ExportError::Write)?;
    let encoder = zstd::Encoder::new(out, 3).map_err(ExportError::Write)?;
    let mut w = Hashing { inner: encoder, hash: blake3::Hasher::new() };
    let put = |w: &mut Hashing<_>, kind: export_record::Kind| {
        let rec = ExportRecord { kind: Some(kind) };
        w.write_all(&rec.encode_length_delimited_to_vec()).map_err(ExportError::Write)
    };
    for meta in tree {
        let id = meta.id.clone();
        put(&mut w, export_record::Kind::Meta(meta))?;
        for (_, event) in store.events(&id, 0)? {
            put(&mut w, export_record::Kind::Event(event))?;
        }
        for hash in store.session_blob_hashes(&id)? {
            put_blob(&mut w, store, &id, &hash)?;
        }
    }
    let digest = w.hash.finalize();
    let mut out = w.inner.finish().map_err(ExportError::Write)?;
    out.write_all(digest.as_bytes()).map_err(ExportError::Write)?;
    out.flush().map_err(ExportError::Write)?;
    Ok(())
}

/// Writes blob `hash` as an `ExportRecord`, its bytes passed on from the
/// store a piece at a time (the encoding prost gives the message whole).
fn put_blob(w: &mut impl Write, store: &Store, id: &str, hash: &[u8]) -> Result<(), ExportError> {
    use prost::encoding::{encode_varint, encoded_len_varint};
    let len = store.blob_len(id, hash)?;
    let hash_len = hash.len() as u64;
    let inner = 1 + encoded_len_varint(hash_len) as u64 + hash_len + 1 + encoded_len_varint(len) as u64 + len;
    let record = 1 + encoded_len_varint(inner) as u64 + inner;
    let mut head = Vec::with_capacity(64);
    encode_varint(record, &mut head);
    head.push(0x1a); // ExportRecord.blob = 3, length-delimited
    encode_varint(inner, &mut head);
    head.push(0x0a); // ExportBlob.hash = 1
    encode_varint(hash_len, &mut head);
    head.extend_from_slice(hash);
    head.push(0x12); // ExportBlob.data = 2
    encode_varint(len, &mut head);
    w.write_all(&head).map_err(ExportError::Write)?;
    store.read_blob(id, hash, &mut |piece| w.write_all(piece)).map_err(|e| match e {
        BlobStreamError::Store(e) => ExportError::Store(e),
        BlobStreamError::Stream(e) => ExportError::Write(e),
    })
}

/// A reader that hashes what passes through it.
struct HashingReader<R: Read> {
    inner: R,
    hash: blake3::Hasher,
    /// Bytes read so far, and how many may be (a trace file that
    /// decompresses to more is refused as it goes).
    read: u64,
    limit: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.limit {
            return Err(std::io::Error::new(
                std::io::ErrorKind::FileTooLarge,
                format!("it decompresses to more than {} bytes, the limit of this warpd", self.limit),
            ));
        }
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

/// A record as it is read: whole, or a long blob with its bytes still to read.
enum Next {
    Record(Box<ExportRecord>),
    Blob { hash: Vec<u8>, len: u64 },
}

/// What a failed read of record `n` means.
fn read_error(n: u64, e: std::io::Error) -> ExportError {
    let bad = |what: String| ExportError::Invalid(format!("record {n}: {what}"));
    match e.kind() {
        std::io::ErrorKind::FileTooLarge => ExportError::Invalid(e.to_string()),
        std::io::ErrorKind::UnexpectedEof => bad(format!("the file ends inside a record ({e})")),
        std::io::ErrorKind::InvalidData => bad(e.to_string()),
        _ => bad(format!("the compressed data is damaged or cut short ({e})")),
    }
}

/// Reads one length-delimited record; None at the clean end of the stream.
/// A record longer than `WHOLE_RECORD` must be a blob as `export` writes it
/// (its hash, then its bytes): its head is read and its bytes are left to
/// the caller.
fn next(r: &mut impl Read, n: u64) -> Result<Option<Next>, ExportError> {
    let bad = |what: &str| ExportError::Invalid(format!("record {n}: {what}"));
    let Some(len) = warp_proto::frame::read_len(r, MAX_RECORD).map_err(|e| read_error(n, e))? else {
        return Ok(None);
    };
    if len <= WHOLE_RECORD {
        let buf = warp_proto::frame::read_body(r, len).map_err(|e| read_error(n, e))?;
        let rec = ExportRecord::decode(buf.as_slice()).map_err(|e| bad(&format!("it does not decode: {e}")))?;
        return Ok(Some(Next::Record(Box::new(rec))));
    }
    use prost::encoding::encoded_len_varint;
    let not_a_blob = || bad("a long record that is not a blob as warpd writes it");
    let byte = |r: &mut dyn Read| -> Result<u8, ExportError> {
        let mut b = [0u8; 1];
        r.read_exact(&mut b).map_err(|e| read_error(n, e))?;
        Ok(b[0])
    };
    let varint = |mut r: &mut dyn Read| -> Result<u64, ExportError> {
        warp_proto::frame::read_len(&mut r, u64::MAX)
            .map_err(|e| read_error(n, e))?
            .ok_or_else(|| read_error(n, std::io::ErrorKind::UnexpectedEof.into()))
    };
    if byte(r)? != 0x1a {
        return Err(not_a_blob());
    }
    let inner = varint(r)?;
    if inner.checked_add(1 + encoded_len_varint(inner) as u64) != Some(len) || byte(r)? != 0x0a {
        return Err(not_a_blob());
    }
    if varint(r)? != blake3::OUT_LEN as u64 {
        return Err(not_a_blob());
    }
    let mut hash = vec![0u8; blake3::OUT_LEN];
    r.read_exact(&mut hash).map_err(|e| read_error(n, e))?;
    if byte(r)? != 0x12 {
        return Err(not_a_blob());
    }
    let data = varint(r)?;
    let head = 1 + 1 + blake3::OUT_LEN as u64 + 1 + encoded_len_varint(data) as u64;
    if head.checked_add(data) != Some(inner) {
        return Err(not_a_blob());
    }
    Ok(Some(Next::Blob { hash, len: data }))
}

/// Reads a trace file and stores it as a new session `new_id` owned by
/// `owner_uid` (see `import_from`).
pub fn import(store: &Store, input: &[u8], new_id: &str, owner_uid: u32) -> Result<SessionMeta, ExportError> {
    let limit = u64::MAX;
    import_from(store, std::io::Cursor::new(input), input.len() as u64, new_id, owner_uid, limit)
}

/// Reads a trace file of `len` bytes from `input` and stores it as a new
/// session `new_id` owned by `owner_uid`, streaming: each record is checked
/// and stored as it is decompressed (a blob against its hash), so memory
/// holds one record at a time, and more than `limit` decompressed bytes
/// are refused. The session is stored as recording until the whole file's
/// checksum has been checked; anything refused removes what was stored.
pub fn import_from<R: Read + Seek>(
    store: &Store,
    mut input: R,
    len: u64,
    new_id: &str,
    owner_uid: u32,
    limit: u64,
) -> Result<SessionMeta, ExportError> {
    let head_len = MAGIC.len() as u64 + 4;
    let io = |e: std::io::Error| ExportError::Invalid(format!("cannot read it: {e}"));
    let mut head = [0u8; 12];
    input.seek(SeekFrom::Start(0)).map_err(io)?;
    if len < head_len + 32 || input.read_exact(&mut head).is_err() || &head[..MAGIC.len()] != MAGIC {
        return Err(ExportError::Invalid("it does not start with a Warpspeed trace header".into()));
    }
    let version = u32::from_le_bytes(head[8..12].try_into().expect("4 bytes"));
    if version > FORMAT_VERSION {
        return Err(ExportError::NewerFormat { found: version, supported: FORMAT_VERSION });
    }
    let mut trailer = [0u8; 32];
    input.seek(SeekFrom::Start(len - 32)).map_err(io)?;
    input.read_exact(&mut trailer).map_err(io)?;
    input.seek(SeekFrom::Start(head_len)).map_err(io)?;
    let body = input.take(len - head_len - 32);
    let decoder = zstd::Decoder::new(body).map_err(|e| ExportError::Invalid(format!("cannot decompress: {e}")))?;
    let mut reader = HashingReader { inner: decoder, hash: blake3::Hasher::new(), read: 0, limit };

    let out_of_place = || ExportError::Invalid("record 0 is out of place".into());
    let mut meta = match next(&mut reader, 0)? {
        Some(Next::Record(rec)) => match rec.kind {
            Some(export_record::Kind::Meta(m)) => m,
            _ => return Err(out_of_place()),
        },
        Some(Next::Blob { .. }) => return Err(out_of_place()),
        None => return Err(ExportError::Invalid("it holds no session".into())),
    };
    if meta.format_version > FORMAT_VERSION {
        return Err(ExportError::NewerFormat { found: meta.format_version, supported: FORMAT_VERSION });
    }
    if meta.status != Status::Complete as i32 {
        return Err(ExportError::Invalid("the session in it is not complete".into()));
    }
    if !meta.root.is_empty() {
        return Err(ExportError::Invalid("its first session is a forked process, not a recording".into()));
    }
    let old_id = std::mem::replace(&mut meta.id, new_id.to_string());
    meta.owner_uid = owner_uid;
    meta.imported_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(1);
    meta.imported_from = old_id.clone();
    let mut recording = meta.clone();
    recording.status = Status::Recording as i32;
    store.create_session(&recording)?;
    let mut created = vec![new_id.to_string()];
    let mut writer = store.writer(new_id);
    let first = meta.clone();
    // The sessions of a tree's forked processes take the new id in place
    // of the old one (`old.1.2` -> `new.1.2`).
    let renamed = |id: &str| -> Result<String, ExportError> {
        match id.strip_prefix(old_id.as_str()).filter(|rest| rest.starts_with('.')) {
            Some(rest) => Ok(format!("{new_id}{rest}")),
            None => Err(ExportError::Invalid(format!("session {id} in it is not a process of recording {old_id}"))),
        }
    };
    let stored = (|| {
        let mut n = 1u64;
        while let Some(rec) = next(&mut reader, n)? {
            let rec = match rec {
                Next::Record(rec) => *rec,
                Next::Blob { hash, len } => {
                    writer.add_blob_from(&hash, len, &mut reader).map_err(|e| match e {
                        BlobStreamError::Store(StoreError::Blob { .. }) => {
                            ExportError::Invalid(format!("blob {} does not match its hash", hex(&hash)))
                        }
                        BlobStreamError::Store(e) => e.into(),
                        BlobStreamError::Stream(e) => read_error(n, e),
                    })?;
                    n += 1;
                    continue;
                }
            };
            match rec.kind {
                Some(export_record::Kind::Event(e)) => {
                    writer.append(&e)?;
                }
                Some(export_record::Kind::Meta(mut next)) => {
                    // The session before is whole: the next process's begins.
                    finish(store, &mut writer, &mut meta)?;
                    if next.root != old_id || next.status != Status::Complete as i32 {
                        return Err(ExportError::Invalid(format!("record {n}: a session out of place")));
                    }
                    next.id = renamed(&next.id)?;
                    next.parent = renamed(&next.parent).or_else(|_| {
                        (next.parent == old_id).then(|| new_id.to_string()).ok_or_else(|| {
                            ExportError::Invalid(format!("record {n}: a process whose parent is not in the recording"))
                        })
                    })?;
                    next.root = new_id.to_string();
                    next.owner_uid = owner_uid;
                    let mut recording = next.clone();
                    recording.status = Status::Recording as i32;
                    store.create_session(&recording)?;
                    created.push(next.id.clone());
                    writer = store.writer(&next.id);
                    meta = next;
                }
                Some(export_record::Kind::Blob(b)) => {
                    if blake3::hash(&b.data).as_bytes().as_slice() != b.hash.as_slice() {
                        return Err(ExportError::Invalid(format!("blob {} does not match its hash", hex(&b.hash))));
                    }
                    writer.add_blob(&b.hash, &b.data)?;
                }
                _ => return Err(ExportError::Invalid(format!("record {n} is out of place"))),
            }
            n += 1;
        }
        if reader.hash.finalize().as_bytes() != &trailer {
            return Err(ExportError::Invalid("its checksum does not match its contents (damaged or truncated)".into()));
        }
        finish(store, &mut writer, &mut meta)
    })();
    if let Err(e) = stored {
        for id in created.iter().rev() {
            let _ = store.remove(id);
        }
        return Err(e);
    }
    store.flush()?;
    // The first process's, as complete (its counts were stored by `finish`).
    Ok(store.session(new_id).unwrap_or(first))
}

/// Stores an imported session's end: its events flushed, its counts, complete.
fn finish(store: &Store, writer: &mut super::store::EventWriter, meta: &mut SessionMeta) -> Result<(), ExportError> {
    writer.flush()?;
    let (events, bytes) = writer.counts();
    meta.events = events;
    meta.trace_bytes = bytes;
    meta.logical_bytes = writer.logical_bytes();
    store.update_session(meta)?;
    Ok(())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
