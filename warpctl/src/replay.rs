//! `warpctl replay [ID|latest] [--quiet]`.
//!
//! Re-emits what the program wrote to its stdout and stderr as it arrives
//! (not with `--quiet`), prints warpd's notes as `warpctl: ...` lines, and
//! exits 0 when the replay reproduced the recording, 1 on divergence (with
//! a report), 2 for an unknown session or a trace that cannot be replayed,
//! 125 when warpctl or warpd failed.

use std::io::{self, Write};

use warp_proto::warp::{replay_end, replay_update, Divergence, ReplayRequest};

use crate::connect;
use crate::progress::Progress;
use crate::view::{rpc, ViewError};

/// Why a replay could not be run, or how it ended other than reproduced.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{0}")]
    View(#[from] ViewError),
    /// The trace cannot be replayed (exit status 2).
    #[error("cannot replay session {id}: {message}")]
    Unreadable { id: String, message: String },
    /// warpd failed while replaying (exit status 125).
    #[error("the replay of session {id} failed: {message}")]
    Failed { id: String, message: String },
    /// The stream ended without an outcome (exit status 125).
    #[error("warpd stopped answering during the replay")]
    NoOutcome,
}

impl ReplayError {
    pub fn exit_code(&self) -> u8 {
        match self {
            ReplayError::View(e) => e.exit_code(),
            ReplayError::Unreadable { .. } => 2,
            ReplayError::Failed { .. } | ReplayError::NoOutcome => 125,
        }
    }
}

/// Where the program's output goes; remembers whether stderr is in the
/// middle of a line, so warpctl's own lines start on a fresh one.
pub(crate) struct Output {
    pub(crate) stderr_mid_line: bool,
    /// Set once stdout's reader has gone: keep replaying, stop writing.
    pub(crate) stdout_closed: bool,
}

impl Output {
    pub(crate) fn stdout(&mut self, bytes: &[u8]) {
        if self.stdout_closed {
            return;
        }
        let mut out = io::stdout().lock();
        if out.write_all(bytes).and_then(|()| out.flush()).is_err() {
            self.stdout_closed = true;
        }
    }

    pub(crate) fn stderr(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let mut err = io::stderr().lock();
        let _ = err.write_all(bytes).and_then(|()| err.flush());
        self.stderr_mid_line = bytes.last() != Some(&b'\n');
    }

    /// Ends the program's unfinished stderr line, so that warpctl's next
    /// line starts on its own.
    pub(crate) fn fresh_line(&mut self) {
        if self.stderr_mid_line {
            let _ = io::stderr().lock().write_all(b"\n");
            self.stderr_mid_line = false;
        }
    }

    /// Lines of warpctl's own, prefixed, on a fresh line.
    pub(crate) fn say(&mut self, text: &str) {
        self.fresh_line();
        let mut err = io::stderr().lock();
        for line in text.lines() {
            let _ = writeln!(err, "warpctl: {line}");
        }
    }
}

/// The divergence report: a headline, then what the trace expected and
/// what the replay did (every line prefixed by the caller).
pub fn divergence_report(d: &Divergence) -> String {
    let mut report = format!("replay diverged at event {} (thread {}, rip {:#x})\n", d.event, d.thread, d.rip);
    let mut part = |label: &str, text: &str| {
        let mut lines = text.lines();
        report.push_str(&format!("  {label} {}\n", lines.next().unwrap_or("")));
        for line in lines {
            report.push_str(&format!("  {:width$} {line}\n", "", width = label.len()));
        }
    };
    part("expected:", &d.expected);
    part("actual:  ", &d.actual);
    report
}

/// `warpctl replay`.
pub async fn run(id: String, pid: u32, quiet: bool) -> Result<u8, ReplayError> {
    let mut daemon = connect::connect_or_start(false).await.map_err(ViewError::from)?;
    let request = ReplayRequest { id: id.clone(), quiet, no_exitless: !crate::exitless_from_env(), pid };
    let mut stream = daemon.client.replay(request).await.map_err(rpc)?.into_inner();
    let mut out = Output { stderr_mid_line: false, stdout_closed: false };
    // A bar once the replay says how far it is (one of many events, or
    // past its first second), where stderr is a terminal; the program's
    // output and warpctl's lines are written with it out of the way.
    let mut bar = Progress::hidden();
    while let Some(update) = stream.message().await.map_err(rpc)? {
        match update.update {
            Some(replay_update::Update::Stdout(bytes)) => bar.suspend(|| out.stdout(&bytes)),
            Some(replay_update::Update::Stderr(bytes)) => bar.suspend(|| out.stderr(&bytes)),
            Some(replay_update::Update::Note(note)) => bar.suspend(|| out.say(&note)),
            Some(replay_update::Update::Gdb(_)) => {}
            Some(replay_update::Update::Progress(p)) => {
                if !bar.shown() && !out.stderr_mid_line && Progress::wanted() {
                    let what = if id == "latest" { "replaying".to_string() } else { format!("replaying {id}") };
                    bar = Progress::steps(what, p.total, "events");
                }
                bar.set(p.done, p.total);
            }
            Some(replay_update::Update::End(end)) => {
                drop(std::mem::replace(&mut bar, Progress::hidden()));
                return match end.outcome {
                    Some(replay_end::Outcome::Reproduced(r)) => {
                        // As the recording said it: which signal, and where.
                        if r.signal != 0 && !r.crash.is_empty() {
                            out.say(&r.crash);
                        }
                        Ok(0)
                    }
                    Some(replay_end::Outcome::Diverged(d)) => {
                        out.say(&divergence_report(&d));
                        Ok(1)
                    }
                    Some(replay_end::Outcome::Unreadable(message)) => {
                        out.fresh_line();
                        Err(ReplayError::Unreadable { id, message })
                    }
                    Some(replay_end::Outcome::Failed(message)) => {
                        out.fresh_line();
                        Err(ReplayError::Failed { id, message })
                    }
                    Some(replay_end::Outcome::LeftAt(_)) | None => Err(ReplayError::NoOutcome),
                };
            }
            None => {}
        }
    }
    Err(ReplayError::NoOutcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_names_event_thread_and_rip() {
        let d = Divergence {
            event: 12,
            thread: 4242,
            rip: 0x401a2b,
            expected: "write(1, ..., 6)".into(),
            actual: "write(1, ..., 7)\nbytes differ".into(),
        };
        assert_eq!(
            divergence_report(&d),
            "replay diverged at event 12 (thread 4242, rip 0x401a2b)\n  expected: write(1, ..., 6)\n  actual:   write(1, ..., 7)\n            bytes differ\n"
        );
    }
}
