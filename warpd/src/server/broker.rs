//! The broker socket: brokers attach here to the session whose token they
//! present, and each attached session then runs on threads of its own.
//!
//! Anyone on the machine can connect (the socket is mode 0666); what lets a
//! connection in is the token *and* its SO_PEERCRED uid matching the
//! session's owner. A rejected connection is closed and logged; the session
//! keeps waiting for its real broker.

use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use tokio::net::UnixListener;
use warp_proto::warp::Failure;

use super::sessions::{failure_end, Session};
use super::{Shared, BROKER_HELLO_TIMEOUT};
use crate::link::BrokerLink;
use crate::session::{self, RunResult};

/// Accepts broker connections until the task is aborted.
pub(crate) async fn accept_loop(shared: Arc<Shared>, listener: UnixListener) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Typically EMFILE: back off rather than spin.
                tracing::warn!(error = %e, "cannot accept a broker connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let cred = match stream.peer_cred() {
            Ok(cred) => cred,
            Err(e) => {
                tracing::warn!(error = %e, "broker connection without peer credentials: closed");
                continue;
            }
        };
        let stream = match stream.into_std().and_then(|s| s.set_nonblocking(false).map(|()| s)) {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "cannot use a broker connection");
                continue;
            }
        };
        let shared = Arc::clone(&shared);
        let uid = cred.uid();
        let pid = cred.pid();
        let spawned =
            thread::Builder::new().name("broker-attach".into()).spawn(move || attach(shared, stream, uid, pid));
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start a thread for a broker connection");
        }
    }
}

/// Reads the broker's Hello, claims its session and runs it. Blocking.
fn attach(shared: Arc<Shared>, stream: UnixStream, peer_uid: u32, peer_pid: Option<i32>) {
    // A connection that never says Hello must not hold a thread forever. The
    // clone shares the socket, so it can lift the timeout once Hello is in.
    let control = stream.try_clone();
    let _ = stream.set_read_timeout(Some(BROKER_HELLO_TIMEOUT));
    let (hello, link) = match BrokerLink::accept(stream) {
        Ok(accepted) => accepted,
        Err(e) => {
            tracing::warn!(peer_uid, ?peer_pid, error = %e, "broker connection rejected");
            return;
        }
    };
    if let Ok(control) = control {
        let _ = control.set_read_timeout(None);
    }
    // A forked process's broker: the recording of its parent takes it.
    let link = match crate::link::child_arrived(&hello.token, peer_uid, link) {
        Ok(()) => {
            tracing::info!(?peer_pid, "a forked process's broker attached");
            return;
        }
        Err(link) => link,
    };
    let session = match shared.sessions.claim(&hello.token, peer_uid) {
        Ok(session) => session,
        Err(e) => {
            tracing::warn!(peer_uid, ?peer_pid, error = %e, "broker connection rejected");
            return;
        }
    };
    let broker_pid = hello.info.as_ref().map(|i| i.pid);
    tracing::info!(id = session.id(), ?broker_pid, "broker attached");
    let result = run(&shared, &session, link);
    // Stored before it is published: whoever learns of the end and then
    // asks the store finds it there.
    shared.store_end(&session, &result);
    shared.settle_capture(&session, &result);
    shared.end_session(&session, result);
    shared.enforce_retention();
    super::memory::release_freed();
}

/// Runs the session on a thread of its own and forwards its notes until it
/// returns.
fn run(shared: &Shared, session: &Arc<Session>, link: BrokerLink) -> RunResult {
    let (notes_tx, notes_rx) = mpsc::channel::<String>();
    let spec = session.spec.clone();
    let config = shared.options.config.clone();
    let store = Arc::clone(&shared.store);
    let worker = thread::Builder::new()
        .name(format!("session-{}", session.id()))
        .spawn(move || session::run(spec, link, &config, notes_tx, store));
    let worker = match worker {
        Ok(worker) => worker,
        Err(e) => {
            return daemon_failure(&format!("warpd cannot start a thread for the session: {e}"));
        }
    };
    // Until the runner returns. Its sender normally goes with it, but a
    // clone kept elsewhere must not hold the session open: check the thread.
    loop {
        match notes_rx.recv_timeout(Duration::from_millis(200)) {
            Ok(note) => session.push_note(note),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) if worker.is_finished() => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
    }
    while let Ok(note) = notes_rx.try_recv() {
        session.push_note(note);
    }
    match worker.join() {
        Ok(result) => result,
        Err(_) => daemon_failure("warpd's session runner crashed; see warpd's log"),
    }
}

fn daemon_failure(message: &str) -> RunResult {
    RunResult { end: failure_end(Failure::Daemon, message), syscalls: 0, vm_exits: 0 }
}
