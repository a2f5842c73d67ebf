//! warpd's face: the gRPC service, the broker socket, the session table and
//! who may do what.
//!
//! ```text
//!  warpctl --gRPC--> service (CreateSession) --> sessions: awaiting broker
//!  broker  --------> broker socket: Hello{token}, SO_PEERCRED uid
//!                       --> sessions::claim --> thread: session::run --> sessions: ended
//!  warpctl <--------- service (WaitSession): notes, then the end
//! ```
//!
//! Authorisation: every gRPC caller is identified by the peer uid of its
//! unix socket connection (SO_PEERCRED). A user sees and follows only their
//! own sessions (root sees all); a broker must present a session's one-time
//! token *and* run as that session's owner; only the daemon's own uid or
//! root may stop it.

mod broker;
pub mod secrets;
pub mod sessions;
mod service;

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
    /// The broker socket's path, as told to clients in `CreateSession`.
    pub broker_socket: PathBuf,
    /// Exit after this long with no session and no request; `None`: never.
    pub idle_timeout: Option<Duration>,
    pub config: Config,
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
    pub sessions: Sessions,
    /// Set once the daemon starts stopping: no new sessions from then on.
    stop: watch::Sender<Option<StopReason>>,
    last_activity: Mutex<Instant>,
    in_flight: AtomicUsize,
}

impl Shared {
    fn new(options: Options) -> Shared {
        Shared {
            options,
            sessions: Sessions::default(),
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

    /// Ends `session` with `result`: publishes the end, wakes shutdown and
    /// the idle timer, logs it.
    pub fn end_session(&self, session: &Session, result: RunResult) {
        let end = result.end.clone();
        if session.finish(result) {
            self.touch();
            self.sessions.notify_ended();
            if end.failure == Failure::None as i32 {
                tracing::info!(id = session.id(), exit_code = end.exit_code, signal = end.signal, "session complete");
            } else {
                let failure = Failure::try_from(end.failure).map(|f| f.as_str_name()).unwrap_or("?");
                tracing::info!(id = session.id(), failure, reason = %end.message, "session incomplete");
            }
        }
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
    grpc: UnixListener,
    broker: UnixListener,
    external_stop: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let shared = Arc::new(Shared::new(options));

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
            shared.sessions.fail_all_awaiting(Failure::Daemon, "warpd stopped before the broker connected");
            let running = shared.sessions.active();
            if running > 0 {
                tracing::info!(running, "waiting for running sessions to end");
            }
            shared.sessions.wait_idle().await;
        }
    };
    let (drained_tx, drained_rx) = tokio::sync::oneshot::channel::<()>();
    let drained = async move {
        drained.await;
        let _ = drained_tx.send(());
    };

    let service = service::WarpService::new(Arc::clone(&shared));
    let server = tonic::transport::Server::builder()
        .add_service(WarpServer::new(service))
        .serve_with_incoming_shutdown(UnixListenerStream::new(grpc), drained);

    // tonic's graceful shutdown waits for every connection to close; give
    // clients a moment, then go regardless.
    let outcome = tokio::select! {
        result = server => result,
        _ = async {
            let _ = drained_rx.await;
            tokio::time::sleep(GRACE).await;
        } => Ok(()),
    };
    broker_task.abort();
    outcome.map_err(ServerError::from)
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
