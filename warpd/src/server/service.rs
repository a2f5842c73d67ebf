//! The `warp.v1.Warp` gRPC service.

use std::pin::Pin;
use std::sync::Arc;

use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::transport::server::UdsConnectInfo;
use tonic::{Request, Response, Status};
use warp_proto::warp::warp_server::Warp;
use warp_proto::warp::{
    debug_input, session_update, ArmCaptureRequest, Capture, CaptureRule, ClaimCaptureReply, ClaimCaptureRequest,
    CreateSessionReply, CreateSessionRequest, DebugInput, DisarmReply, DisarmRequest, DoctorReply, DoctorRequest,
    EventBatch, ExportChunk, ExportRequest, Failure, GcReply, GcRequest, GetSessionReply, GetSessionRequest,
    HelloReply, HelloRequest, ImageChunk, ImportChunk, ImportReply, ListCaptureRulesReply, ListCaptureRulesRequest,
    ListSessionsReply, ListSessionsRequest, PinReply, PinRequest, RemoveSessionReply, RemoveSessionRequest,
    ReplayRequest, ReplayUpdate, SessionUpdate, ShutdownReply, ShutdownRequest, StreamEventsRequest,
    WaitSessionRequest, WatchCapturesRequest,
};

use super::lookup::{self, blocking};
use super::remote::{self, RemoteCaller};
use super::sessions::{self as live, Session};
use super::{events, replay, Shared, StopReason, BROKER_ATTACH_TIMEOUT};
use crate::config::Access;
use crate::gdb::GdbLink;
use crate::machine::Cancel;
use crate::session::{self, SessionSpec};
use crate::trace::print::DEFAULT_STRINGS;

/// Upper bound on argv + environment, in bytes (Linux allows 2 MiB with
/// the default stack limit; this leaves room and stays below tonic's 4 MiB
/// message limit).
const MAX_ARGS_BYTES: usize = 3 << 20;

/// The uid of the process at the other end of the caller's unix socket.
fn peer_uid<T>(request: &Request<T>) -> Result<u32, Status> {
    request
        .extensions()
        .get::<UdsConnectInfo>()
        .and_then(|info| info.peer_cred)
        .map(|cred| cred.uid())
        .ok_or_else(|| Status::unauthenticated("warpd cannot tell who is calling (no SO_PEERCRED on the connection)"))
}

/// Checks a `CreateSession` request; the message says what is wrong.
pub fn validate(req: &CreateSessionRequest) -> Result<(), String> {
    if req.argv.is_empty() {
        return Err("argv is empty: at least argv[0] is needed".into());
    }
    if req.program.is_empty() {
        return Err("no program given".into());
    }
    if !req.cwd.starts_with('/') {
        return Err(format!("the working directory {:?} is not an absolute path", req.cwd));
    }
    let strings = || req.argv.iter().chain(&req.env).chain([&req.cwd, &req.program]);
    if let Some(s) = strings().find(|s| s.contains('\0')) {
        return Err(format!("{s:?} contains a NUL byte, which a program cannot receive"));
    }
    if req.slice_us > 10_000_000 {
        return Err(format!("a time slice of {} us is longer than the 10 s warpd accepts", req.slice_us));
    }
    let total: usize = req.argv.iter().chain(&req.env).map(|s| s.len() + 1).sum();
    if total > MAX_ARGS_BYTES {
        return Err(format!(
            "the arguments and environment take {total} bytes, more than the {MAX_ARGS_BYTES} warpd accepts"
        ));
    }
    Ok(())
}

/// Whole recordings only: a forked process's session is part of one.
fn recording(meta: &warp_proto::trace::SessionMeta) -> Result<(), Status> {
    if meta.root.is_empty() {
        Ok(())
    } else {
        Err(lookup::part_of(meta))
    }
}

/// A seed for chaos mode when the caller named none.
fn fresh_seed() -> u64 {
    let mut b = [0u8; 8];
    // SAFETY: getrandom into a local buffer of its length.
    unsafe { libc::getrandom(b.as_mut_ptr() as *mut libc::c_void, 8, 0) };
    u64::from_le_bytes(b)
}

pub struct WarpService {
    shared: Arc<Shared>,
}

impl WarpService {
    pub(crate) fn new(shared: Arc<Shared>) -> WarpService {
        WarpService { shared }
    }

    /// A remote caller's configured client; `None` for a local caller.
    fn remote<T>(&self, request: &Request<T>) -> Result<Option<RemoteCaller>, Status> {
        remote::caller(request).transpose()
    }

    /// The uid a request acts as: its unix socket peer's, or the one its
    /// client certificate is given (an operator sees sessions as root does).
    fn caller_uid<T>(&self, request: &Request<T>) -> Result<u32, Status> {
        match self.remote(request)? {
            Some(RemoteCaller { access: Access::Uid(uid), .. }) => Ok(uid),
            Some(RemoteCaller { access: Access::Operator, .. }) => Ok(0),
            None => peer_uid(request),
        }
    }

    /// The uid of a local caller; a remote one is refused what it asked
    /// (`what`, for the message).
    fn local_uid<T>(&self, request: &Request<T>, what: &str) -> Result<u32, Status> {
        if let Some(caller) = self.remote(request)? {
            return Err(Status::permission_denied(format!(
                "{what} only on this machine's socket, not as a remote caller ({})",
                caller.name
            )));
        }
        peer_uid(request)
    }

    /// Refuses `uid` unless it runs this warpd or is root: what only they
    /// may do to the whole daemon (`what`, for the message).
    fn owner_or_root(&self, uid: u32, what: &str) -> Result<(), Status> {
        let owner = self.shared.options.owner_uid;
        if uid != owner && uid != 0 {
            return Err(Status::permission_denied(format!(
                "only uid {owner} (who runs this warpd) or root may {what}"
            )));
        }
        Ok(())
    }

    /// The live session `id` if `uid` may see it.
    fn live_session(&self, id: &str, uid: u32) -> Option<Arc<Session>> {
        self.shared.sessions.get(id).filter(|s| uid == 0 || s.spec.owner_uid == uid)
    }

    /// Resolves `id` (or `latest`) for `uid` from the store (NotFound for
    /// an unknown id or another user's session).
    async fn resolve(&self, id: String, uid: u32) -> Result<warp_proto::trace::SessionMeta, Status> {
        let shared = Arc::clone(&self.shared);
        blocking(move || lookup::resolve(&shared, &id, uid)).await
    }

    /// The session of recording `meta`'s process `pid` (None: its first).
    async fn process_of(
        &self,
        meta: &warp_proto::trace::SessionMeta,
        pid: u32,
        uid: u32,
    ) -> Result<Option<String>, Status> {
        let shared = Arc::clone(&self.shared);
        let meta = meta.clone();
        blocking(move || lookup::process(&shared, &meta, pid, uid)).await
    }
}

type UpdateStream = Pin<Box<dyn Stream<Item = Result<SessionUpdate, Status>> + Send>>;
type EventStream = Pin<Box<dyn Stream<Item = Result<EventBatch, Status>> + Send>>;
type ReplayStream = Pin<Box<dyn Stream<Item = Result<ReplayUpdate, Status>> + Send>>;
type ExportStream = Pin<Box<dyn Stream<Item = Result<ExportChunk, Status>> + Send>>;
type ImageStream = Pin<Box<dyn Stream<Item = Result<ImageChunk, Status>> + Send>>;
type CaptureStream = Pin<Box<dyn Stream<Item = Result<Capture, Status>> + Send>>;

/// The most bytes of a read buffer an event line shows (`events -s`).
const MAX_STRINGS: usize = 1 << 20;

/// Export chunks: under tonic's 4 MiB message limit.
const EXPORT_CHUNK: usize = 1 << 20;
/// The largest trace file accepted by Import (held in memory while checked).
const MAX_IMPORT: u64 = 8 << 30;

/// Most bytes an imported trace file may decompress to (records, blobs
/// included): `WARP_IMPORT_MAX_BYTES`, else 32 GiB.
fn import_limit() -> u64 {
    std::env::var("WARP_IMPORT_MAX_BYTES").ok().and_then(|v| v.parse().ok()).unwrap_or(32 << 30)
}

/// An unlinked temporary file for an import in progress (O_TMPFILE in the
/// temporary directory: nothing is left behind, and no other user sees it).
fn spool_file() -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = std::env::temp_dir();
    let unnamed =
        std::fs::OpenOptions::new().read(true).write(true).custom_flags(libc::O_TMPFILE).mode(0o600).open(&dir);
    match unnamed {
        Ok(f) => Ok(f),
        // A file system without O_TMPFILE: a new file, unlinked at once.
        Err(_) => {
            let name = crate::server::secrets::new_id()?;
            let path = dir.join(format!("warp-import-{name}"));
            let f = std::fs::OpenOptions::new().read(true).write(true).create_new(true).mode(0o600).open(&path)?;
            std::fs::remove_file(&path)?;
            Ok(f)
        }
    }
}

/// Sends what is written to it as ExportChunks of at most EXPORT_CHUNK
/// bytes, leaving out the first `skip`; hashes all of it for the digest
/// the last message carries. Once the client has gone, writing fails.
struct ChunkWriter {
    buf: Vec<u8>,
    tx: tokio::sync::mpsc::Sender<Result<ExportChunk, Status>>,
    gone: bool,
    skip: u64,
    written: u64,
    hasher: blake3::Hasher,
}

impl ChunkWriter {
    fn new(tx: tokio::sync::mpsc::Sender<Result<ExportChunk, Status>>, skip: u64) -> ChunkWriter {
        ChunkWriter {
            buf: Vec::with_capacity(EXPORT_CHUNK),
            tx,
            gone: false,
            skip,
            written: 0,
            hasher: blake3::Hasher::new(),
        }
    }

    fn send(&mut self, digest: Vec<u8>) -> std::io::Result<()> {
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(EXPORT_CHUNK));
        if self.tx.blocking_send(Ok(ExportChunk { data, digest })).is_err() {
            self.gone = true;
            return Err(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away"));
        }
        Ok(())
    }

    /// The rest, and the digest; an offset past the end is refused.
    fn finish(&mut self) {
        if self.gone {
            return;
        }
        if self.skip > 0 {
            let (len, offset) = (self.written, self.written + self.skip);
            let _ = self.tx.blocking_send(Err(Status::out_of_range(format!(
                "the export is {len} bytes: offset {offset} is past its end"
            ))));
            return;
        }
        let digest = self.hasher.finalize().as_bytes().to_vec();
        let _ = self.send(digest);
    }
}

impl std::io::Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.gone {
            return Err(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away"));
        }
        if self.skip > 0 {
            let n = data.len().min(usize::try_from(self.skip).unwrap_or(usize::MAX));
            self.hasher.update(&data[..n]);
            self.skip -= n as u64;
            self.written += n as u64;
            return Ok(n);
        }
        let n = data.len().min(EXPORT_CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        self.hasher.update(&data[..n]);
        self.written += n as u64;
        if self.buf.len() == EXPORT_CHUNK {
            self.send(Vec::new())?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tonic::async_trait]
impl Warp for WarpService {
    async fn hello(&self, request: Request<HelloRequest>) -> Result<Response<HelloReply>, Status> {
        let _busy = self.shared.busy();
        self.caller_uid(&request)?;
        Ok(Response::new(HelloReply {
            version: env!("CARGO_PKG_VERSION").into(),
            pid: std::process::id(),
            mode: self.shared.options.mode.as_str().into(),
            owner_uid: self.shared.options.owner_uid,
            store: self.shared.options.store_dir.to_string_lossy().into_owned(),
            settings: warp_common::settings::current()
                .into_iter()
                .filter_map(|(name, value)| Some(warp_proto::warp::Setting { name: name.into(), value: value? }))
                .collect(),
        }))
    }

    async fn create_session(
        &self,
        request: Request<CreateSessionRequest>,
    ) -> Result<Response<CreateSessionReply>, Status> {
        let _busy = self.shared.busy();
        // The program runs as the caller, which a certificate is not.
        let uid = self.local_uid(&request, "a program is recorded")?;
        if self.shared.stopping() {
            return Err(Status::unavailable("warpd is shutting down"));
        }
        let req = request.into_inner();
        validate(&req).map_err(Status::invalid_argument)?;
        let capture_rule = req.capture_rule.clone();
        let spec = SessionSpec {
            id: String::new(),
            argv: req.argv,
            env: req.env,
            cwd: req.cwd,
            program: req.program,
            owner_uid: uid,
            verbose: req.verbose,
            slice: match req.slice_us {
                0 => crate::interrupts::DEFAULT_SLICE,
                us => std::time::Duration::from_micros(us.into()),
            },
            chaos: req.chaos.then(|| if req.chaos_seed_set { req.chaos_seed } else { fresh_seed() }),
            exitless: !req.no_exitless,
        };
        // The id must be new to the store too (a sled look-up: off the runtime).
        let shared = Arc::clone(&self.shared);
        let (session, token) = blocking(move || {
            // A machine that cannot run a VM gets no session: it is refused
            // before one exists, with what to do about it.
            crate::hv::open(&shared.options.config.kvm_device)
                .map_err(|e| Status::failed_precondition(e.to_string()))?;
            let taken = |id: &str| shared.store.session(id).is_ok();
            // Root is not bounded.
            let max = (spec.owner_uid != 0).then_some(shared.options.config.max_sessions_per_user);
            shared.sessions.create(spec, taken, max).map_err(|e| match e {
                crate::server::sessions::CreateError::TooMany(_) => Status::resource_exhausted(e.to_string()),
                e => Status::internal(e.to_string()),
            })
        })
        .await?;
        if !capture_rule.is_empty() {
            if let Err(e) = self.shared.captures.bind(&capture_rule, uid, session.id()) {
                let shared = Arc::clone(&self.shared);
                let s = Arc::clone(&session);
                let message = e.message().to_string();
                blocking(move || {
                    shared.fail_awaiting(&s, Failure::Daemon, &message);
                    Ok(())
                })
                .await?;
                return Err(e);
            }
        }
        tracing::info!(id = session.id(), uid, program = %session.spec.program, capture = %capture_rule, "session created");

        // The timer holds the session weakly: one that attached and ended
        // within the timeout is freed when it ends, not 30 s later.
        let shared = Arc::clone(&self.shared);
        let waiting = Arc::downgrade(&session);
        tokio::spawn(async move {
            tokio::time::sleep(BROKER_ATTACH_TIMEOUT).await;
            let Some(waiting) = waiting.upgrade() else { return };
            let failed = tokio::task::spawn_blocking(move || {
                let failed = shared.fail_awaiting(&waiting, Failure::Broker, "the broker never connected");
                if failed {
                    tracing::warn!(id = waiting.id(), "no broker attached in time");
                }
            });
            let _ = failed.await;
        });

        Ok(Response::new(CreateSessionReply {
            id: session.id().to_owned(),
            token,
            broker_socket: self.shared.options.broker_socket.to_string_lossy().into_owned(),
        }))
    }

    type WaitSessionStream = UpdateStream;

    async fn wait_session(
        &self,
        request: Request<WaitSessionRequest>,
    ) -> Result<Response<Self::WaitSessionStream>, Status> {
        let _busy = self.shared.busy();
        let uid = self.caller_uid(&request)?;
        let id = request.into_inner().id;
        let Some(session) = self.live_session(&id, uid) else {
            // Ended already: the store knows how.
            let meta = self.resolve(id, uid).await?;
            let end = live::end_from_meta(&meta);
            let update = SessionUpdate { update: Some(session_update::Update::End(end)) };
            return Ok(Response::new(Box::pin(tokio_stream::once(Ok(update)))));
        };
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            let mut changed = session.subscribe();
            let mut sent = 0;
            loop {
                changed.borrow_and_update();
                let progress = session.progress(sent);
                sent += progress.notes.len();
                for note in progress.notes {
                    let update = SessionUpdate { update: Some(session_update::Update::Note(note)) };
                    if tx.send(Ok(update)).await.is_err() {
                        return; // the caller went away
                    }
                }
                if let Some(end) = progress.end {
                    let _ = tx.send(Ok(SessionUpdate { update: Some(session_update::Update::End(end)) })).await;
                    return;
                }
                if changed.changed().await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn list_sessions(
        &self,
        request: Request<ListSessionsRequest>,
    ) -> Result<Response<ListSessionsReply>, Status> {
        let _busy = self.shared.busy();
        let uid = self.caller_uid(&request)?;
        let shared = Arc::clone(&self.shared);
        let tree = request.into_inner().tree;
        let (sessions, store_bytes) = blocking(move || {
            if !tree.is_empty() {
                return Ok((lookup::tree(&shared, &tree, uid)?.iter().map(lookup::info).collect(), 0));
            }
            let sessions = lookup::recordings(&shared, uid)?
                .into_iter()
                .map(|(meta, processes)| warp_proto::warp::SessionInfo { processes, ..lookup::info(&meta) })
                .collect();
            Ok((sessions, shared.store.size_on_disk()))
        })
        .await?;
        Ok(Response::new(ListSessionsReply { sessions, store_bytes }))
    }

    async fn get_session(&self, request: Request<GetSessionRequest>) -> Result<Response<GetSessionReply>, Status> {
        let _busy = self.shared.busy();
        let uid = self.caller_uid(&request)?;
        let meta = self.resolve(request.into_inner().id, uid).await?;
        Ok(Response::new(GetSessionReply { meta: Some(meta) }))
    }

    type StreamEventsStream = EventStream;

    async fn stream_events(
        &self,
        request: Request<StreamEventsRequest>,
    ) -> Result<Response<Self::StreamEventsStream>, Status> {
        let _busy = self.shared.busy();
        let uid = self.caller_uid(&request)?;
        let req = request.into_inner();
        let meta = self.resolve(req.id, uid).await?;
        // Awaiting its broker: no events yet, and none in the store to wait on.
        if self.shared.sessions.get(&meta.id).is_some_and(|s| !s.is_running()) && !req.follow {
            let batch = EventBatch { identity: meta.identity, ..Default::default() };
            return Ok(Response::new(Box::pin(tokio_stream::once(Ok(batch)))));
        }
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let shared = Arc::clone(&self.shared);
        tokio::task::spawn_blocking(move || {
            let _busy = shared.busy();
            let strings = req.string_limit.map_or(DEFAULT_STRINGS, |n| (n as usize).min(MAX_STRINGS));
            events::stream(Arc::clone(&shared), meta.id, req.from, req.follow, strings, tx)
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn remove_session(
        &self,
        request: Request<RemoveSessionRequest>,
    ) -> Result<Response<RemoveSessionReply>, Status> {
        let _busy = self.shared.busy();
        let uid = self.caller_uid(&request)?;
        let meta = self.resolve(request.into_inner().id, uid).await?;
        recording(&meta)?;
        if self.shared.sessions.get(&meta.id).is_some() {
            return Err(Status::failed_precondition(format!(
                "session {} is still recording; remove it once it has ended",
                meta.id
            )));
        }
        let shared = Arc::clone(&self.shared);
        let id = meta.id.clone();
        blocking(move || {
            // Its forked processes first: a failure leaves the recording
            // listed, to be removed again.
            let tree = lookup::tree(&shared, &id, uid)?;
            for m in tree.iter().skip(1).rev() {
                shared.store.remove(&m.id).map_err(lookup::status)?;
            }
            shared.store.remove(&id).and_then(|()| shared.store.flush()).map_err(lookup::status)
        })
        .await?;
        tracing::info!(id = %meta.id, uid, "session removed");
        Ok(Response::new(RemoveSessionReply {}))
    }

    type ReplayStream = ReplayStream;

    async fn replay(&self, request: Request<ReplayRequest>) -> Result<Response<Self::ReplayStream>, Status> {
        let _busy = self.shared.busy();
        let uid = self.caller_uid(&request)?;
        let req = request.into_inner();
        let meta = self.resolve(req.id, uid).await?;
        recording(&meta)?;
        if self.shared.sessions.get(&meta.id).is_some() {
            return Err(Status::failed_precondition(format!(
                "session {} is still recording; replay it once it has ended",
                meta.id
            )));
        }
        let process = self.process_of(&meta, req.pid, uid).await?;
        tracing::info!(id = %meta.id, uid, process = ?process, "replay");
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let shared = Arc::clone(&self.shared);
        let exitless = !req.no_exitless;
        tokio::task::spawn_blocking(move || replay::run(shared, meta.id, process, req.quiet, exitless, tx, None));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type RecordedExecutableStream = ImageStream;

    async fn recorded_executable(
        &self,
        request: Request<GetSessionRequest>,
    ) -> Result<Response<Self::RecordedExecutableStream>, Status> {
        let _busy = self.shared.busy();
        let uid = self.caller_uid(&request)?;
        let meta = self.resolve(request.into_inner().id, uid).await?;
        let shared = Arc::clone(&self.shared);
        let (path, bytes) =
            blocking(move || replay::image(&shared, &meta.id).map_err(Status::failed_precondition)).await?;
        let mut chunks: Vec<Result<ImageChunk, Status>> = bytes
            .chunks(super::replay::CHUNK)
            .map(|c| Ok(ImageChunk { path: String::new(), data: c.to_vec() }))
            .collect();
        match chunks.first_mut() {
            Some(Ok(first)) => first.path = path,
            _ => chunks.push(Ok(ImageChunk { path, data: Vec::new() })),
        }
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }

    type DebugStream = ReplayStream;

    async fn debug(
        &self,
        request: Request<tonic::Streaming<DebugInput>>,
    ) -> Result<Response<Self::DebugStream>, Status> {
        let _busy = self.shared.busy();
        let uid = self.caller_uid(&request)?;
        let mut input = request.into_inner();
        let Some(DebugInput { input: Some(debug_input::Input::Start(req)) }) = input.message().await? else {
            return Err(Status::invalid_argument("a debug stream starts with the session to replay"));
        };
        let meta = self.resolve(req.id, uid).await?;
        recording(&meta)?;
        if self.shared.sessions.get(&meta.id).is_some() {
            return Err(Status::failed_precondition(format!(
                "session {} is still recording; debug it once it has ended",
                meta.id
            )));
        }
        let process = self.process_of(&meta, req.pid, uid).await?;
        tracing::info!(id = %meta.id, uid, process = ?process, "debug");
        let cancel = Cancel::new();
        let (bytes_tx, bytes_rx) = std::sync::mpsc::channel::<Vec<u8>>();
        // The debugger's bytes, each chunk a pause of the vCPU so that the
        // replay reads it (Ctrl-C, a packet while the program runs). The
        // sender goes when the stream ends: the replay sees the debugger gone.
        let kick = Arc::clone(&cancel);
        tokio::spawn(async move {
            while let Ok(Some(m)) = input.message().await {
                let Some(debug_input::Input::Gdb(bytes)) = m.input else { continue };
                if bytes_tx.send(bytes).is_err() {
                    break;
                }
                kick.cancel();
            }
            drop(bytes_tx);
            kick.cancel();
        });
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let shared = Arc::clone(&self.shared);
        let link = GdbLink { input: bytes_rx, cancel };
        tokio::task::spawn_blocking(move || replay::run(shared, meta.id, process, req.quiet, false, tx, Some(link)));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type ExportStream = ExportStream;

    async fn export(&self, request: Request<ExportRequest>) -> Result<Response<Self::ExportStream>, Status> {
        let _busy = self.shared.busy();
        let uid = self.caller_uid(&request)?;
        let ExportRequest { id, offset } = request.into_inner();
        let meta = self.resolve(id, uid).await?;
        recording(&meta)?;
        tracing::info!(id = %meta.id, uid, offset, "export");
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let shared = Arc::clone(&self.shared);
        tokio::task::spawn_blocking(move || {
            let mut out = ChunkWriter::new(tx.clone(), offset);
            let result = crate::trace::export::export(&shared.store, &meta.id, &mut out).map(|()| out.finish());
            if let Err(e) = result {
                let status = match e {
                    crate::trace::export::ExportError::Store(s) => lookup::status(s),
                    other => Status::failed_precondition(other.to_string()),
                };
                let _ = tx.blocking_send(Err(status));
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn import(&self, request: Request<tonic::Streaming<ImportChunk>>) -> Result<Response<ImportReply>, Status> {
        let _busy = self.shared.busy();
        let uid = match self.remote(&request)? {
            Some(RemoteCaller { access: Access::Operator, name }) => {
                return Err(Status::permission_denied(format!(
                "an operator ({name}) has no uid to own an imported recording: import with a certificate given a uid"
            )))
            }
            _ => self.caller_uid(&request)?,
        };
        let mut stream = request.into_inner();
        // The file goes to disk as it comes (an unlinked temporary file), so
        // that memory holds a chunk, then a record, at a time.
        let mut file = spool_file().map_err(|e| Status::internal(format!("cannot hold the trace file: {e}")))?;
        let mut len = 0u64;
        while let Some(chunk) = stream.message().await? {
            len += chunk.data.len() as u64;
            if len > MAX_IMPORT {
                return Err(Status::invalid_argument(format!(
                    "the trace file is larger than {} GiB",
                    MAX_IMPORT >> 30
                )));
            }
            std::io::Write::write_all(&mut file, &chunk.data)
                .map_err(|e| Status::internal(format!("cannot hold the trace file: {e}")))?;
        }
        let id =
            crate::server::secrets::new_id().map_err(|e| Status::internal(format!("cannot make a session id: {e}")))?;
        let shared = Arc::clone(&self.shared);
        let new_id = id.clone();
        let limit = import_limit();
        let meta = blocking(move || {
            // One import at a time: each holds up to a record in memory.
            static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
            let _one = ONE.lock().unwrap_or_else(|e| e.into_inner());
            crate::trace::export::import_from(&shared.store, &mut file, len, &new_id, uid, limit).map_err(|e| match e {
                crate::trace::export::ExportError::Store(s) => lookup::status(s),
                other => Status::data_loss(other.to_string()),
            })
        })
        .await?;
        tracing::info!(id = %meta.id, uid, events = meta.events, "imported");
        Ok(Response::new(ImportReply { id }))
    }

    async fn doctor(&self, request: Request<DoctorRequest>) -> Result<Response<DoctorReply>, Status> {
        let _busy = self.shared.busy();
        self.caller_uid(&request)?;
        let config = self.shared.options.config.clone();
        // The probe opens the hypervisor device: keep it off the async threads.
        let reply = tokio::task::spawn_blocking(move || session::doctor(&config))
            .await
            .map_err(|e| Status::internal(format!("the capability probe failed: {e}")))?;
        Ok(Response::new(reply))
    }

    async fn shutdown(&self, request: Request<ShutdownRequest>) -> Result<Response<ShutdownReply>, Status> {
        let _busy = self.shared.busy();
        let uid = self.local_uid(&request, "warpd is stopped")?;
        self.owner_or_root(uid, "stop it")?;
        tracing::info!(uid, "shutdown requested");
        self.shared.request_stop(StopReason::Requested);
        Ok(Response::new(ShutdownReply {}))
    }

    async fn pin(&self, request: Request<PinRequest>) -> Result<Response<PinReply>, Status> {
        let _busy = self.shared.busy();
        let uid = self.caller_uid(&request)?;
        let PinRequest { id, pinned } = request.into_inner();
        let mut meta = self.resolve(id, uid).await?;
        recording(&meta)?;
        let shared = Arc::clone(&self.shared);
        let id = meta.id.clone();
        blocking(move || {
            meta.pinned = pinned;
            shared.store.update_session(&meta).and_then(|()| shared.store.flush()).map_err(lookup::status)
        })
        .await?;
        tracing::info!(id = %id, uid, pinned, "pin");
        Ok(Response::new(PinReply { id }))
    }

    async fn arm_capture(&self, request: Request<ArmCaptureRequest>) -> Result<Response<CaptureRule>, Status> {
        let _busy = self.shared.busy();
        let uid = self.local_uid(&request, "a capture is armed")?;
        let ArmCaptureRequest { rule, unless_armed } = request.into_inner();
        let rule = rule.ok_or_else(|| Status::invalid_argument("no rule given"))?;
        Ok(Response::new(self.shared.captures.arm(rule, uid, unless_armed)?))
    }

    async fn list_capture_rules(
        &self,
        request: Request<ListCaptureRulesRequest>,
    ) -> Result<Response<ListCaptureRulesReply>, Status> {
        let _busy = self.shared.busy();
        let uid = self.caller_uid(&request)?;
        Ok(Response::new(ListCaptureRulesReply { rules: self.shared.captures.list(uid) }))
    }

    async fn disarm(&self, request: Request<DisarmRequest>) -> Result<Response<DisarmReply>, Status> {
        let _busy = self.shared.busy();
        let uid = self.local_uid(&request, "a capture is disarmed")?;
        let DisarmRequest { ids, all } = request.into_inner();
        Ok(Response::new(DisarmReply { removed: self.shared.captures.disarm(&ids, all, uid)? }))
    }

    async fn claim_capture(
        &self,
        request: Request<ClaimCaptureRequest>,
    ) -> Result<Response<ClaimCaptureReply>, Status> {
        let _busy = self.shared.busy();
        let uid = self.local_uid(&request, "a run is captured")?;
        if self.shared.stopping() {
            return Ok(Response::new(ClaimCaptureReply::default()));
        }
        let ClaimCaptureRequest { program, argv } = request.into_inner();
        let rule = self.shared.captures.claim(uid, &program, &argv).unwrap_or_default();
        Ok(Response::new(ClaimCaptureReply { rule }))
    }

    type WatchCapturesStream = CaptureStream;

    async fn watch_captures(
        &self,
        request: Request<WatchCapturesRequest>,
    ) -> Result<Response<Self::WatchCapturesStream>, Status> {
        let _busy = self.shared.busy();
        let uid = self.caller_uid(&request)?;
        let mut captures = self.shared.captures.subscribe();
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            loop {
                let capture = match captures.recv().await {
                    Ok(c) => c,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        let _ = tx
                            .send(Err(Status::data_loss(format!("{n} captures went by unsent (a slow reader)"))))
                            .await;
                        return;
                    }
                    Err(_) => return,
                };
                if (uid == 0 || capture.owner_uid == uid) && tx.send(Ok(capture)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn gc(&self, request: Request<GcRequest>) -> Result<Response<GcReply>, Status> {
        let _busy = self.shared.busy();
        let uid = self.local_uid(&request, "the store's garbage is collected")?;
        self.owner_or_root(uid, "collect its store's garbage")?;
        let req = request.into_inner();
        let configured = self.shared.options.retention;
        let limits = crate::config::Retention {
            max_bytes: if req.max_bytes > 0 { Some(req.max_bytes) } else { configured.max_bytes },
            max_age: if req.max_age_secs > 0 {
                Some(std::time::Duration::from_secs(req.max_age_secs))
            } else {
                configured.max_age
            },
        };
        let shared = Arc::clone(&self.shared);
        let (expired, total, r) = blocking(move || {
            let (expired, total) = shared.apply_retention(limits, req.yes).map_err(lookup::status)?;
            let r = shared.store.gc().map_err(lookup::status)?;
            Ok((expired, total, r))
        })
        .await?;
        tracing::info!(
            uid,
            blobs = r.blobs,
            counts_fixed = r.counts_fixed,
            expired = expired.len(),
            removed = req.yes,
            "gc"
        );
        let gone: u64 = if req.yes { expired.iter().map(|e| e.trace_bytes).sum() } else { 0 };
        Ok(Response::new(GcReply {
            recordings_bytes: total,
            recordings_bytes_after: total - gone,
            expired,
            removed: req.yes,
            blobs: r.blobs,
            blob_bytes: r.blob_bytes,
            counts_fixed: r.counts_fixed,
            stray_uses: r.stray_uses,
            stray_events: r.stray_events,
            bytes_before: r.bytes_before,
            bytes_after: r.bytes_after,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> CreateSessionRequest {
        CreateSessionRequest {
            argv: vec!["ls".into(), "-l".into()],
            env: vec!["A=b".into()],
            cwd: "/home".into(),
            program: "/bin/ls".into(),
            verbose: false,
            slice_us: 0,
            chaos: false,
            chaos_seed_set: false,
            chaos_seed: 0,
            no_exitless: false,
            capture_rule: String::new(),
        }
    }

    #[test]
    fn a_normal_request_passes() {
        assert_eq!(validate(&req()), Ok(()));
    }

    #[test]
    fn bad_requests_are_refused() {
        let cases: [fn(&mut CreateSessionRequest); 6] = [
            |r| r.argv.clear(),
            |r| r.program.clear(),
            |r| r.cwd = "home".into(),
            |r| r.argv[1] = "a\0b".into(),
            |r| r.env[0] = "A=\0".into(),
            |r| r.env.push("X".repeat(MAX_ARGS_BYTES)),
        ];
        for (i, case) in cases.iter().enumerate() {
            let mut r = req();
            case(&mut r);
            assert!(validate(&r).is_err(), "case {i} passed");
        }
    }
}
