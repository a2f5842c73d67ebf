//! Replay: re-executes a recorded session in a fresh VM from the trace
//! alone (no broker, no file of the recording machine), comparing every
//! syscall with the trace.
//!
//! INTERFACE: signatures are stable; bodies are being written.

use std::sync::mpsc::Sender;

use super::store::Store;
use crate::session::Config;

/// What a replay sends while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayOutput {
    /// Bytes the program wrote to its original stdout / stderr.
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    /// A line for the user (warnings such as a CPUID difference).
    Note(String),
}

/// Where replay and recording parted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Divergence {
    /// Sequence number of the event that did not match.
    pub event: u64,
    pub thread: u32,
    pub expected: String,
    pub actual: String,
    pub rip: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayOutcome {
    /// The replay reproduced the recording, ending as it did.
    Reproduced { exit_code: i32, signal: i32 },
    /// The replay diverged (exit status 1).
    Diverged(Divergence),
    /// The trace cannot be replayed: unknown id, corrupt or truncated
    /// events, a missing or damaged blob, a newer format, an incomplete
    /// session (exit status 2). The message names what and where.
    Unreadable(String),
    /// warpd itself failed (KVM...).
    Failed(String),
}

/// Replays session `id`. Blocking: run it on a thread of its own.
pub fn replay(store: &Store, id: &str, config: &Config, out: &Sender<ReplayOutput>) -> ReplayOutcome {
    let _ = (store, id, config, out);
    ReplayOutcome::Failed("replay is being written".into())
}
