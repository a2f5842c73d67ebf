//! warpd's face: the gRPC service, the broker socket, the session table and
//! who may do what.
//!
//! ```text
//!  warpctl --gRPC--> service (CreateSession) --> sessions: awaiting broker
//!  broker  --------> broker socket: Hello{token}, SO_PEERCRED uid
//!                       --> sessions::claim --> thread: session::run --> sessions: ended
//!                                                  | (metadata, events)
//!                                                  v
//!  warpctl <--------- service: ListSessions, GetSession, StreamEvents,  <-- store (sled)
//!                     RemoveSession, Replay (thread: trace::replay)
//!  warpctl <--------- service (WaitSession): notes, then the end
//! ```
//!
//! Sessions live in the store: the recorder writes their metadata and
//! events; the server writes metadata itself only for a session that never
//! reached the recorder (no broker came, the daemon stopped first). Memory
//! holds only the live: tokens, notes, running sessions. sled is only
//! called from threads, never on the async runtime's workers.
//!
//! Authorisation: every gRPC caller is identified by the peer uid of its
//! unix socket connection (SO_PEERCRED), or, on the TLS listener, by the
//! uid or operator role its client certificate is given (`remote`). A user sees, follows, replays and
//! removes only their own sessions (root: everyone's), and another user's
//! session id is answered as unknown; a broker must present a session's
//! one-time token *and* run as that session's owner; only the daemon's own
//! uid or root may stop it.

mod broker;
pub mod captures;
mod conn_limit;
mod events;
mod lookup;
pub mod memory;
pub mod remote;
mod replay;
pub mod retention;
pub mod secrets;
mod service;
pub mod sessions;

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::UnixListener;
use tokio::sync::watch;
use tokio_stream::wrappers::UnixListenerStream;
use warp_common::paths::Mode;
use warp_proto::warp::warp_server::WarpServer;
use warp_proto::warp::Failure;

use crate::session::{Config, RunResult};
use crate::trace::store::Store;
use sessions::{Session, Sessions};

/// How long a created session waits for its broker.
pub const BROKER_ATTACH_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a connection may take to send its broker `Hello`.
const BROKER_HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// After shutdown, how long open connections get to finish before warpd
/// exits anyway.
const GRACE: Duration = Duration::from_secs(5);

/// What the server needs to know about the daemon it runs in.
#[derive(Clone, Debug)]
pub struct Options {
    pub mode: Mode,
    /// The uid the daemon runs as (may stop it, besides root).
    pub owner_uid: u32,
    /// The gRPC socket's path: removed as soon as the daemon starts
    /// stopping, so that a new warpctl starts a new daemon instead of
    /// talking to one on its way out.
    pub socket: PathBuf,
    /// The store's directory (Hello says it).
    pub store_dir: PathBuf,
    /// The broker socket's path, as told to clients in `CreateSession`.
    pub broker_socket: PathBuf,
    /// Exit after this long with no session and no request; `None`: never.
    pub idle_timeout: Option<Duration>,
    pub config: Config,
    /// The configured remote clients (`[[remote.client]]`): what a TLS
    /// caller's certificate may do.
    pub remote_clients: Vec<crate::config::Client>,
    /// Where the capture rules are saved, and the marker file that exists
    /// while any waits (`warpctl exec` looks for it before anything else).
    pub capture_rules: PathBuf,
    pub capture_marker: PathBuf,
    /// The configured `[retention]` limits (none: keep everything).
    pub retention: crate::config::Retention,
}

/// Where remote callers connect: a bound TCP listener and its TLS settings.
pub struct RemoteListener {
    pub listener: tokio::net::TcpListener,
    pub tls: Arc<rustls::ServerConfig>,
}

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// tonic's server failed.
    #[error("the gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// Why the daemon is stopping (for the log).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// A client called `Shutdown`.
    Requested,
    /// No session and no request for the idle timeout.
    Idle,
    /// SIGTERM or SIGINT.
    Signal,
}

/// State shared by the gRPC service, the broker socket and session threads.
pub(crate) struct Shared {
    pub options: Options,
    pub store: Arc<Store>,
    pub sessions: Sessions,
    pub captures: captures::Captures,
    /// Set once the daemon starts stopping: no new sessions from then on.
    stop: watch::Sender<Option<StopReason>>,
    last_activity: Mutex<Instant>,
    in_flight: AtomicUsize,
}

impl Shared {
    fn new(options: Options, store: Arc<Store>) -> Shared {
        let captures = captures::Captures::open(options.capture_rules.clone(), options.capture_marker.clone());
        Shared {
            options,
            store,
            sessions: Sessions::default(),
            captures,
            stop: watch::channel(None).0,
            last_activity: Mutex::new(Instant::now()),
            in_flight: AtomicUsize::new(0),
        }
    }

    /// Starts stopping (the first reason given wins).
    pub fn request_stop(&self, reason: StopReason) {
        self.stop.send_if_modified(|current| {
            if current.is_none() {
                *current = Some(reason);
                true
            } else {
                false
            }
        });
    }

    pub fn stopping(&self) -> bool {
        self.stop.borrow().is_some()
    }

    fn touch(&self) {
        *self.last_activity.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    /// Marks a request in progress until the guard is dropped.
    pub fn busy(self: &Arc<Self>) -> BusyGuard {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.touch();
        BusyGuard(Arc::clone(self))
    }

    fn idle_for(&self) -> Option<Duration> {
        if self.in_flight.load(Ordering::SeqCst) > 0 || self.sessions.active() > 0 {
            return None;
        }
        Some(self.last_activity.lock().unwrap_or_else(|e| e.into_inner()).elapsed())
    }

    /// Ends `session` with `result`: publishes the end, forgets the live
    /// session, wakes shutdown and the idle timer, logs it.
    pub fn end_session(&self, session: &Session, result: RunResult) {
        let end = result.end.clone();
        if session.finish(result) {
            self.touch();
            self.sessions.remove(session.id());
            log_end(session.id(), &end);
        }
    }

    /// Makes sure the store holds `session` as ended with `result`: the
    /// recorder writes its own metadata, but a session that never reached
    /// it (no broker, shutdown, a thread that could not start) would be
    /// missing, and one whose recorder crashed left `recording`. Blocking
    /// (sled).
    pub fn store_end(&self, session: &Session, result: &RunResult) {
        use crate::trace::store::StoreError;
        use warp_proto::trace::Status;
        let ending = sessions::ending(&result.end);
        let failed = result.end.failure != Failure::None as i32;
        let outcome = match self.store.session(session.id()) {
            Ok(stored) if stored.status != Status::Recording as i32 => return,
            Ok(mut stored) => {
                // The recorder stopped without writing the end: keep what
                // it wrote, with the end the server knows.
                stored.status = if failed { Status::Incomplete } else { Status::Complete } as i32;
                stored.end_ms = sessions::now_ms().max(stored.start_ms);
                stored.ending = Some(ending);
                self.store.update_session(&stored)
            }
            Err(StoreError::NotFound(_)) => {
                let mut meta = session.meta();
                meta.status = if failed { Status::Incomplete } else { Status::Complete } as i32;
                meta.end_ms = sessions::now_ms().max(meta.start_ms);
                meta.ending = Some(ending);
                meta.syscalls = result.syscalls;
                meta.vm_exits = result.vm_exits;
                self.store.create_session(&meta)
            }
            Err(e) => Err(e),
        };
        if let Err(e) = outcome.and_then(|()| self.store.flush()) {
            tracing::error!(id = session.id(), error = %e, "cannot store the session's end");
        }
    }

    /// The recordings `limits` remove now, oldest first, and the
    /// recordings' bytes before; removed when `remove` (each with its
    /// forked processes; one that cannot be is logged and left). Blocking.
    pub fn apply_retention(
        &self,
        limits: crate::config::Retention,
        remove: bool,
    ) -> Result<(Vec<warp_proto::warp::Expired>, u64), crate::trace::store::StoreError> {
        let all = self.store.sessions()?;
        let live: std::collections::HashSet<String> =
            self.sessions.list(None).iter().map(|s| s.id().to_string()).collect();
        let (expired, total) = retention::plan(&all, &live, limits, sessions::now_ms());
        if remove {
            for e in &expired {
                // Between the plan and now it may have been pinned or removed.
                match self.store.session(&e.id) {
                    Ok(m) if !m.pinned => {}
                    _ => continue,
                }
                let forked: Vec<&str> = all.iter().filter(|m| m.root == e.id).map(|m| m.id.as_str()).collect();
                let removed = forked
                    .iter()
                    .rev()
                    .try_for_each(|id| self.store.remove(id))
                    .and_then(|()| self.store.remove(&e.id));
                match removed {
                    Ok(()) => {
                        tracing::info!(id = %e.id, reason = %e.reason, bytes = e.trace_bytes, "retention removed a recording")
                    }
                    Err(err) => tracing::error!(id = %e.id, error = %err, "retention cannot remove a recording"),
                }
            }
            if !expired.is_empty() {
                self.store.flush()?;
            }
        }
        Ok((expired, total))
    }

    /// Applies the configured retention limits, if any (logged). Blocking.
    pub fn enforce_retention(&self) {
        let limits = self.options.retention;
        if limits.max_bytes.is_none() && limits.max_age.is_none() {
            return;
        }
        if let Err(e) = self.apply_retention(limits, true) {
            tracing::error!(error = %e, "cannot apply the retention limits");
        }
    }

    /// A captured run has ended (stored): kept and flagged if its rule
    /// wants it (a crash, or every run), else removed with its processes;
    /// an incomplete recording is never a capture. Blocking (sled).
    pub fn settle_capture(&self, session: &Session, result: &RunResult) {
        let id = session.id();
        let Some((rule, keep)) = self.captures.should_keep(id, result.end.signal) else { return };
        let complete = result.end.failure == Failure::None as i32;
        let kept = complete && keep && {
            let flagged = self.store.session(id).and_then(|mut meta| {
                meta.captured_by = rule.clone();
                self.store.update_session(&meta)?;
                self.store.flush()
            });
            if let Err(e) = &flagged {
                tracing::error!(id, error = %e, "cannot flag the capture");
            }
            flagged.is_ok()
        };
        if !kept {
            let forked: Vec<String> = match self.store.sessions() {
                Ok(all) => all.into_iter().filter(|m| m.root == id).map(|m| m.id).collect(),
                Err(_) => Vec::new(),
            };
            for child in forked.iter().rev() {
                let _ = self.store.remove(child);
            }
            if let Err(e) = self.store.remove(id).and_then(|()| self.store.flush()) {
                tracing::error!(id, error = %e, "cannot remove a run its capture rule does not keep");
            }
            tracing::info!(id, rule = %rule, "run not kept: its rule keeps only crashes");
            self.captures.settle(id, None);
            return;
        }
        let capture = warp_proto::warp::Capture {
            session: id.to_string(),
            rule,
            program: session.spec.program.clone(),
            signal: result.end.signal,
            exit_code: result.end.exit_code,
            end_ms: sessions::now_ms(),
            owner_uid: session.spec.owner_uid,
        };
        self.captures.settle(id, Some(capture));
    }

    /// Ends `session` if it is still awaiting its broker, and stores it as
    /// incomplete. Blocking (sled).
    pub fn fail_awaiting(&self, session: &Session, failure: Failure, message: &str) -> bool {
        if !session.fail_if_awaiting_broker(failure, message) {
            return false;
        }
        let result = RunResult { end: sessions::failure_end(failure, message), syscalls: 0, vm_exits: 0 };
        self.store_end(session, &result);
        self.settle_capture(session, &result);
        self.sessions.remove(session.id());
        self.touch();
        tracing::info!(id = session.id(), reason = message, "session incomplete");
        true
    }
}

fn log_end(id: &str, end: &warp_proto::warp::SessionEnd) {
    if end.failure == Failure::None as i32 {
        tracing::info!(id, exit_code = end.exit_code, signal = end.signal, "session complete");
    } else {
        let failure = Failure::try_from(end.failure).map(|f| f.as_str_name()).unwrap_or("?");
        tracing::info!(id, failure, reason = %end.message, "session incomplete");
    }
}

/// Decrements the in-flight request count when dropped.
pub(crate) struct BusyGuard(Arc<Shared>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Serves gRPC on `grpc` and brokers on `broker` until a client calls
/// `Shutdown`, the idle timeout passes, or `external_stop` completes (the
/// daemon's signal handler). Stopping refuses new sessions, fails those
/// still waiting for a broker, waits for running ones to end, then returns.
pub async fn serve(
    options: Options,
    store: Arc<Store>,
    grpc: UnixListener,
    broker: UnixListener,
    remote: Option<RemoteListener>,
    external_stop: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let shared = Arc::new(Shared::new(options, store));

    let broker_task = tokio::spawn(broker::accept_loop(Arc::clone(&shared), broker));

    {
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            external_stop.await;
            shared.request_stop(StopReason::Signal);
        });
    }
    if let Some(idle) = shared.options.idle_timeout {
        tokio::spawn(idle_timer(Arc::clone(&shared), idle));
    }
    {
        // Retention at start and every few minutes (and after each recording).
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            loop {
                let s = Arc::clone(&shared);
                let _ = tokio::task::spawn_blocking(move || s.enforce_retention()).await;
                tokio::time::sleep(retention::EVERY).await;
            }
        });
    }

    // Resolves once stopping was asked for and every session has ended.
    let drained = {
        let shared = Arc::clone(&shared);
        async move {
            let mut stop = shared.stop.subscribe();
            let reason = match stop.wait_for(Option::is_some).await {
                Ok(reason) => reason.unwrap_or(StopReason::Requested),
                Err(_) => StopReason::Requested,
            };
            tracing::info!(?reason, "stopping: no new sessions");
            let _ = std::fs::remove_file(&shared.options.socket);
            let failed =
                shared.sessions.fail_all_awaiting(Failure::Daemon, "warpd stopped before the broker connected");
            if !failed.is_empty() {
                let shared = Arc::clone(&shared);
                let _ = tokio::task::spawn_blocking(move || {
                    for session in failed {
                        let end = sessions::failure_end(Failure::Daemon, "warpd stopped before the broker connected");
                        let result = RunResult { end, syscalls: 0, vm_exits: 0 };
                        shared.store_end(&session, &result);
                        shared.settle_capture(&session, &result);
                        shared.sessions.remove(session.id());
                    }
                })
                .await;
            }
            let running = shared.sessions.active();
            if running > 0 {
                tracing::info!(running, "waiting for running sessions to end");
            }
            shared.sessions.wait_idle().await;
        }
    };
    let (drained_tx, drained_rx) = watch::channel(false);
    tokio::spawn(async move {
        drained.await;
        let _ = drained_tx.send(true);
    });
    let once_drained = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|done| *done).await;
    };

    let service = service::WarpService::new(Arc::clone(&shared));
    let local = tonic::transport::Server::builder().add_service(WarpServer::new(service)).serve_with_incoming_shutdown(
        admitted(
            UnixListenerStream::new(grpc),
            conn_limit::Limiter::new(shared.options.config.max_connections_per_user, Some(0)),
        ),
        once_drained(drained_rx.clone()),
    );
    let remote = async {
        let Some(RemoteListener { listener, tls }) = remote else {
            return Ok(());
        };
        let service = service::WarpService::new(Arc::clone(&shared));
        let incoming = remote::incoming(
            listener,
            tls,
            shared.options.remote_clients.clone(),
            shared.options.config.max_connections_per_user,
        );
        tonic::transport::Server::builder()
            .add_service(WarpServer::new(service))
            .serve_with_incoming_shutdown(incoming, once_drained(drained_rx.clone()))
            .await
    };
    // Both end once drained, each when its connections have closed.
    let server = async { tokio::try_join!(local, remote).map(|_| ()) };

    // tonic's graceful shutdown waits for every connection to close; give
    // clients a moment, then go regardless.
    let outcome = tokio::select! {
        result = server => result,
        _ = async {
            once_drained(drained_rx.clone()).await;
            tokio::time::sleep(GRACE).await;
        } => Ok(()),
    };
    broker_task.abort();
    outcome.map_err(ServerError::from)
}

/// The accepted connections, each counted against its user's bound; one
/// beyond it is closed at once ([`conn_limit`]).
fn admitted(
    incoming: UnixListenerStream,
    limiter: conn_limit::Limiter,
) -> impl tokio_stream::Stream<Item = std::io::Result<conn_limit::Counted>> {
    use tokio_stream::StreamExt;
    incoming.filter_map(move |accepted| match accepted {
        Ok(stream) => limiter.admit(stream).map(Ok),
        Err(e) => Some(Err(e)),
    })
}

/// Asks the daemon to stop once it has had no session and no request for
/// `idle`.
async fn idle_timer(shared: Arc<Shared>, idle: Duration) {
    let tick = (idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        tokio::time::sleep(tick).await;
        if shared.stopping() {
            return;
        }
        if shared.idle_for().is_some_and(|d| d >= idle) {
            tracing::info!(idle_secs = idle.as_secs_f64(), "idle: stopping");
            shared.request_stop(StopReason::Idle);
            return;
        }
    }
}
