//! `Replay`: runs `trace::replay` on a thread of its own and streams what
//! it sends (output in chunks of at most 1 MiB, notes), then its outcome.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use tokio::sync::mpsc as async_mpsc;
use tonic::Status;
use warp_proto::warp::{replay_end, replay_update, Divergence, ReplayEnd, ReplayUpdate, Reproduced};

use super::Shared;
use crate::gdb::GdbLink;
use crate::trace::replay::{self, ReplayOutcome, ReplayOutput};

/// The executable session `id` ran, from its trace (`RecordedExecutable`).
pub fn image(shared: &Shared, id: &str) -> Result<(String, Vec<u8>), String> {
    crate::trace::replay::recorded_executable(&shared.store, id)
}

/// Largest output chunk in one message.
pub const CHUNK: usize = 1 << 20;

type Sender = async_mpsc::Sender<Result<ReplayUpdate, Status>>;

fn update(u: replay_update::Update) -> ReplayUpdate {
    ReplayUpdate { update: Some(u) }
}

/// Replays session `id` and forwards everything to `tx`. Blocking: run it
/// on a blocking thread. `quiet` drops the program's output here rather
/// than sending it. With `gdb` a debugger drives the replay; its `cancel`
/// is the replay's. With `exitless`, calls recorded on the exitless ring
/// are answered through it again.
/// With `process` (a forked process's session), that process is replayed.
pub fn run(
    shared: Arc<Shared>,
    id: String,
    process: Option<String>,
    quiet: bool,
    exitless: bool,
    tx: Sender,
    gdb: Option<GdbLink>,
) {
    let _busy = shared.busy();
    let (out_tx, out_rx) = mpsc::channel::<ReplayOutput>();
    let cancel = gdb.as_ref().map(|g| Arc::clone(&g.cancel)).unwrap_or_default();
    let worker = {
        let shared = Arc::clone(&shared);
        let id = id.clone();
        let cancel = Arc::clone(&cancel);
        thread::Builder::new().name(format!("replay-{id}")).spawn(move || {
            let config = &shared.options.config;
            replay::replay(&shared.store, &id, config, exitless, &out_tx, Some(&cancel), gdb, process.as_deref())
        })
    };
    let worker = match worker {
        Ok(worker) => worker,
        Err(e) => {
            let end = replay_end::Outcome::Failed(format!("warpd cannot start a thread for the replay: {e}"));
            let _ = tx.blocking_send(Ok(update(replay_update::Update::End(ReplayEnd { outcome: Some(end) }))));
            return;
        }
    };
    // Once the client has gone, the replay is stopped; what it still sends
    // is drained and dropped.
    let client = std::cell::Cell::new(true);
    let forward = |output: ReplayOutput| {
        if !client.get() {
            return;
        }
        for u in updates(output, quiet) {
            if tx.blocking_send(Ok(u)).is_err() {
                client.set(false);
                tracing::debug!(id, "replay client went away: stopping the replay");
                cancel.cancel();
                return;
            }
        }
    };
    // Until the replay returns. Its sender normally goes with it, but a
    // clone kept elsewhere must not hold the stream open: check the thread.
    loop {
        match out_rx.recv_timeout(Duration::from_millis(200)) {
            Ok(output) => forward(output),
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) if worker.is_finished() => break,
            Err(RecvTimeoutError::Timeout) => {
                if client.get() && tx.is_closed() {
                    client.set(false);
                    tracing::debug!(id, "replay client went away: stopping the replay");
                    cancel.cancel();
                }
            }
        }
    }
    while let Ok(output) = out_rx.try_recv() {
        forward(output);
    }
    let outcome = match worker.join() {
        Ok(outcome) => outcome,
        Err(_) => ReplayOutcome::Failed("warpd's replayer crashed; see warpd's log".into()),
    };
    log(&id, &outcome);
    let end = ReplayEnd { outcome: Some(outcome_message(outcome)) };
    let _ = tx.blocking_send(Ok(update(replay_update::Update::End(end))));
}

fn log(id: &str, outcome: &ReplayOutcome) {
    match outcome {
        ReplayOutcome::Reproduced { .. } => tracing::info!(id, "replay reproduced the recording"),
        ReplayOutcome::Diverged(d) => tracing::info!(id, event = d.event, "replay diverged"),
        ReplayOutcome::Unreadable(m) => tracing::info!(id, reason = %m, "replay: unreadable trace"),
        ReplayOutcome::Failed(m) => tracing::warn!(id, reason = %m, "replay failed"),
        ReplayOutcome::Left { event } => tracing::info!(id, event, "the debugger left the replay"),
    }
}

/// The messages for one piece of replay output: output split into chunks
/// of at most [`CHUNK`] bytes (none with `quiet`).
pub fn updates(output: ReplayOutput, quiet: bool) -> Vec<ReplayUpdate> {
    let chunks = |bytes: Vec<u8>, wrap: fn(Vec<u8>) -> replay_update::Update| -> Vec<ReplayUpdate> {
        if quiet {
            return Vec::new();
        }
        bytes.chunks(CHUNK).map(|c| update(wrap(c.to_vec()))).collect()
    };
    match output {
        ReplayOutput::Stdout(bytes) => chunks(bytes, replay_update::Update::Stdout),
        ReplayOutput::Stderr(bytes) => chunks(bytes, replay_update::Update::Stderr),
        ReplayOutput::Note(note) => vec![update(replay_update::Update::Note(note))],
        ReplayOutput::Gdb(bytes) => vec![update(replay_update::Update::Gdb(bytes))],
        ReplayOutput::Progress { done, total } => {
            vec![update(replay_update::Update::Progress(warp_proto::warp::ReplayProgress { done, total }))]
        }
    }
}

pub fn outcome_message(outcome: ReplayOutcome) -> replay_end::Outcome {
    match outcome {
        ReplayOutcome::Reproduced { exit_code, signal, crash } => {
            replay_end::Outcome::Reproduced(Reproduced { exit_code, signal, crash })
        }
        ReplayOutcome::Diverged(d) => replay_end::Outcome::Diverged(Divergence {
            event: d.event,
            thread: d.thread,
            rip: d.rip,
            expected: d.expected,
            actual: d.actual,
        }),
        ReplayOutcome::Unreadable(m) => replay_end::Outcome::Unreadable(m),
        ReplayOutcome::Failed(m) => replay_end::Outcome::Failed(m),
        ReplayOutcome::Left { event } => replay_end::Outcome::LeftAt(event),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_chunked_and_quiet_drops_it() {
        let big = vec![7u8; 2 * CHUNK + 5];
        let u = updates(ReplayOutput::Stdout(big), false);
        let sizes: Vec<usize> = u
            .iter()
            .map(|u| match &u.update {
                Some(replay_update::Update::Stdout(b)) => b.len(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(sizes, [CHUNK, CHUNK, 5]);
        assert!(updates(ReplayOutput::Stderr(vec![1; 10]), true).is_empty());
        assert_eq!(updates(ReplayOutput::Note("n".into()), true).len(), 1);
    }
}
