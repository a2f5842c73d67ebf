//! The `warp.v1.Warp` gRPC service.

use std::pin::Pin;
use std::sync::Arc;

use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::transport::server::UdsConnectInfo;
use tonic::{Request, Response, Status};
use warp_proto::warp::warp_server::Warp;
use warp_proto::warp::{
    session_update, CreateSessionReply, CreateSessionRequest, DoctorReply, DoctorRequest, Failure,
    HelloReply, HelloRequest, ListSessionsReply, ListSessionsRequest, SessionUpdate, ShutdownReply,
    ShutdownRequest, WaitSessionRequest,
};

use super::sessions::Session;
use super::{Shared, StopReason, BROKER_ATTACH_TIMEOUT};
use crate::session::{self, SessionSpec};

/// Upper bound on argv + environment, in bytes (Linux allows 2 MiB with
/// the default stack limit; this leaves room and stays below tonic's 4 MiB
/// message limit).
const MAX_ARGS_BYTES: usize = 3 << 20;

/// The uid of the process at the other end of the caller's unix socket.
fn caller_uid<T>(request: &Request<T>) -> Result<u32, Status> {
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
    let total: usize = req.argv.iter().chain(&req.env).map(|s| s.len() + 1).sum();
    if total > MAX_ARGS_BYTES {
        return Err(format!(
            "the arguments and environment take {total} bytes, more than the {MAX_ARGS_BYTES} warpd accepts"
        ));
    }
    Ok(())
}

pub struct WarpService {
    shared: Arc<Shared>,
}

impl WarpService {
    pub(crate) fn new(shared: Arc<Shared>) -> WarpService {
        WarpService { shared }
    }

    /// The session `id` if `uid` may see it; otherwise (or if there is
    /// none) NotFound, so that other users' ids are not revealed.
    fn visible_session(&self, id: &str, uid: u32) -> Result<Arc<Session>, Status> {
        match self.shared.sessions.get(id) {
            Some(s) if uid == 0 || s.spec.owner_uid == uid => Ok(s),
            _ => Err(Status::not_found(format!("no session {id}"))),
        }
    }
}

type UpdateStream = Pin<Box<dyn Stream<Item = Result<SessionUpdate, Status>> + Send>>;

#[tonic::async_trait]
impl Warp for WarpService {
    async fn hello(&self, request: Request<HelloRequest>) -> Result<Response<HelloReply>, Status> {
        let _busy = self.shared.busy();
        caller_uid(&request)?;
        Ok(Response::new(HelloReply {
            version: env!("CARGO_PKG_VERSION").into(),
            pid: std::process::id(),
            mode: self.shared.options.mode.as_str().into(),
            owner_uid: self.shared.options.owner_uid,
        }))
    }

    async fn create_session(
        &self,
        request: Request<CreateSessionRequest>,
    ) -> Result<Response<CreateSessionReply>, Status> {
        let _busy = self.shared.busy();
        let uid = caller_uid(&request)?;
        if self.shared.stopping() {
            return Err(Status::unavailable("warpd is shutting down"));
        }
        let req = request.into_inner();
        validate(&req).map_err(Status::invalid_argument)?;
        let spec = SessionSpec {
            id: String::new(),
            argv: req.argv,
            env: req.env,
            cwd: req.cwd,
            program: req.program,
            owner_uid: uid,
            verbose: req.verbose,
        };
        let (session, token) = self
            .shared
            .sessions
            .create(spec)
            .map_err(|e| Status::internal(e.to_string()))?;
        tracing::info!(id = session.id(), uid, program = %session.spec.program, "session created");

        let shared = Arc::clone(&self.shared);
        let waiting = Arc::clone(&session);
        tokio::spawn(async move {
            tokio::time::sleep(BROKER_ATTACH_TIMEOUT).await;
            if waiting.is_active() && waiting.fail_if_awaiting_broker(Failure::Broker, "the broker never connected") {
                shared.sessions.notify_ended();
                tracing::warn!(id = waiting.id(), "no broker attached in time");
            }
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
        let uid = caller_uid(&request)?;
        let session = self.visible_session(&request.get_ref().id, uid)?;
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
        let uid = caller_uid(&request)?;
        let filter = (uid != 0).then_some(uid);
        let sessions = self.shared.sessions.list(filter).iter().map(|s| s.info()).collect();
        Ok(Response::new(ListSessionsReply { sessions }))
    }

    async fn doctor(&self, request: Request<DoctorRequest>) -> Result<Response<DoctorReply>, Status> {
        let _busy = self.shared.busy();
        caller_uid(&request)?;
        let config = self.shared.options.config.clone();
        // The probe opens the hypervisor device: keep it off the async threads.
        let reply = tokio::task::spawn_blocking(move || session::doctor(&config))
            .await
            .map_err(|e| Status::internal(format!("the capability probe failed: {e}")))?;
        Ok(Response::new(reply))
    }

    async fn shutdown(&self, request: Request<ShutdownRequest>) -> Result<Response<ShutdownReply>, Status> {
        let _busy = self.shared.busy();
        let uid = caller_uid(&request)?;
        let owner = self.shared.options.owner_uid;
        if uid != owner && uid != 0 {
            return Err(Status::permission_denied(format!(
                "only uid {owner} (who runs this warpd) or root may stop it"
            )));
        }
        tracing::info!(uid, "shutdown requested");
        self.shared.request_stop(StopReason::Requested);
        Ok(Response::new(ShutdownReply {}))
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
