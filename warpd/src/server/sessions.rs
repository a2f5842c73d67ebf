//! The daemon's live sessions: those awaiting their broker or running.
//! What a session is once recorded lives in the store; this table holds only
//! what the store does not: tokens, notes for `WaitSession`, and the
//! session until its end has been published.
//!
//! A session goes through three phases:
//!
//! ```text
//!  CreateSession --> awaiting broker --(broker presents token)--> running --> ended
//!                          |                                                   ^
//!                          +----(no broker within 30 s, or shutdown)-----------+
//! ```
//!
//! An ended session leaves the table ([`Sessions::remove`]); streams that
//! follow it keep their `Arc` and still see its end. Notes and the end are
//! published through a `watch` channel, so any number of `WaitSession`
//! streams can follow a session, including ones that start late (they get
//! the notes so far, then the rest).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::{watch, Notify};
use warp_proto::trace::{Ending, SessionMeta, Status};
use warp_proto::warp::{Failure, SessionEnd};

use super::secrets;
use crate::session::{RunResult, SessionSpec};
use crate::trace::FORMAT_VERSION;

/// Notes kept per session; past this they are counted, not kept, so a
/// program that makes a million unknown syscalls cannot exhaust warpd.
const MAX_NOTES: usize = 10_000;

/// Why a broker's token was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// No session is waiting for this token (wrong, already used, or expired).
    #[error("the token matches no session waiting for a broker")]
    UnknownToken,
    /// The token is right but the connecting process runs as another user.
    #[error("session {id} belongs to uid {owner}, but the broker runs as uid {peer}")]
    WrongUser { id: String, owner: u32, peer: u32 },
}

/// Why a session could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// The kernel's random source failed.
    #[error("cannot read random bytes for the session id and token: {0}")]
    Random(#[from] std::io::Error),
    /// The user has so many sessions recording already.
    #[error("you have {0} recordings running, the most warpd takes from one user at once (WARP_MAX_SESSIONS); wait for one to end")]
    TooMany(usize),
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

enum Phase {
    AwaitingBroker { token: String },
    Running,
    Ended(RunResult),
}

struct State {
    phase: Phase,
    notes: Vec<String>,
    dropped_notes: u64,
    end_ms: u64,
}

/// One session.
pub struct Session {
    pub spec: SessionSpec,
    pub start_ms: u64,
    seq: u64,
    state: Mutex<State>,
    /// Bumped whenever a note or the end is added.
    changed: watch::Sender<()>,
}

/// What a `WaitSession` stream has not sent yet.
pub struct Progress {
    pub notes: Vec<String>,
    pub end: Option<SessionEnd>,
}

impl Session {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn id(&self) -> &str {
        &self.spec.id
    }

    /// A receiver that wakes whenever the session changes.
    pub fn subscribe(&self) -> watch::Receiver<()> {
        self.changed.subscribe()
    }

    /// Notes from index `from` on, and the end if the session has ended.
    pub fn progress(&self, from: usize) -> Progress {
        let state = self.state();
        let notes = state.notes.get(from..).map(<[String]>::to_vec).unwrap_or_default();
        let end = match &state.phase {
            Phase::Ended(result) => Some(result.end.clone()),
            _ => None,
        };
        Progress { notes, end }
    }

    /// Records a note for the user. The session sends notes only when it
    /// is verbose, and the lines about limits met in any case.
    pub fn push_note(&self, note: String) {
        {
            let mut state = self.state();
            if state.notes.len() < MAX_NOTES {
                state.notes.push(note);
            } else {
                state.dropped_notes += 1;
            }
        }
        self.changed.send_replace(());
    }

    /// Whether a broker has attached and the session has not ended.
    pub fn is_running(&self) -> bool {
        matches!(self.state().phase, Phase::Running)
    }

    /// Whether the session has not ended yet (awaiting its broker or running).
    pub fn is_active(&self) -> bool {
        !matches!(self.state().phase, Phase::Ended(_))
    }

    /// Ends the session with `result`. Returns false if it had already ended.
    pub fn finish(&self, result: RunResult) -> bool {
        {
            let mut state = self.state();
            if matches!(state.phase, Phase::Ended(_)) {
                return false;
            }
            if state.dropped_notes > 0 {
                let n = state.dropped_notes;
                state.notes.push(format!("{n} more notes were not kept"));
            }
            state.phase = Phase::Ended(result);
            state.end_ms = now_ms();
        }
        self.changed.send_replace(());
        true
    }

    /// Ends the session with `end` only if no broker has attached yet.
    pub fn fail_if_awaiting_broker(&self, failure: Failure, message: &str) -> bool {
        if !matches!(self.state().phase, Phase::AwaitingBroker { .. }) {
            return false;
        }
        self.finish(RunResult { end: failure_end(failure, message), syscalls: 0, vm_exits: 0 })
    }

    /// The session's metadata as far as the daemon knows it without the
    /// store: for a session that has not reached the recorder (or never
    /// will: the broker did not come).
    pub fn meta(&self) -> SessionMeta {
        let state = self.state();
        let (status, ending, syscalls, vm_exits) = match &state.phase {
            Phase::AwaitingBroker { .. } | Phase::Running => (Status::Recording, None, 0, 0),
            Phase::Ended(r) => {
                let status = if r.end.failure == Failure::None as i32 { Status::Complete } else { Status::Incomplete };
                (status, Some(ending(&r.end)), r.syscalls, r.vm_exits)
            }
        };
        SessionMeta {
            format_version: FORMAT_VERSION,
            id: self.spec.id.clone(),
            argv: self.spec.argv.clone(),
            env: self.spec.env.clone(),
            cwd: self.spec.cwd.clone(),
            owner_uid: self.spec.owner_uid,
            start_ms: self.start_ms,
            end_ms: state.end_ms,
            status: status as i32,
            ending,
            program: self.spec.program.clone(),
            syscalls,
            vm_exits,
            ..SessionMeta::default()
        }
    }
}

/// A `SessionEnd` for a failure.
pub fn failure_end(failure: Failure, message: &str) -> SessionEnd {
    SessionEnd {
        failure: failure as i32,
        exit_code: 0,
        signal: 0,
        message: message.into(),
        crash: String::new(),
        crash_site: None,
    }
}

/// How a session ended, as the store keeps it: the failure's message (or
/// its kind, when it has none) names which part failed and why.
pub fn ending(end: &SessionEnd) -> Ending {
    let failure = match Failure::try_from(end.failure) {
        Ok(Failure::None) => String::new(),
        _ if !end.message.is_empty() => end.message.clone(),
        Ok(f) => f.as_str_name().trim_start_matches("FAILURE_").to_ascii_lowercase().replace('_', " "),
        Err(_) => format!("failure {}", end.failure),
    };
    Ending {
        exit_code: end.exit_code,
        signal: end.signal,
        failure,
        crash: end.crash.clone(),
        crash_site: end.crash_site.clone(),
    }
}

/// The end `WaitSession` reports for a session known only from the store.
pub fn end_from_meta(meta: &SessionMeta) -> SessionEnd {
    let ending = meta.ending.clone().unwrap_or_default();
    if meta.status == Status::Complete as i32 {
        SessionEnd {
            failure: Failure::None as i32,
            exit_code: ending.exit_code,
            signal: ending.signal,
            message: String::new(),
            crash: ending.crash,
            crash_site: ending.crash_site,
        }
    } else {
        let message = if ending.failure.is_empty() { "the recording was interrupted".into() } else { ending.failure };
        failure_end(Failure::Daemon, &message)
    }
}

/// All sessions of this daemon.
#[derive(Default)]
pub struct Sessions {
    table: Mutex<Table>,
    /// Signalled whenever a session ends (shutdown and the idle timer wait on it).
    ended: Notify,
}

#[derive(Default)]
struct Table {
    by_id: HashMap<String, Arc<Session>>,
    next_seq: u64,
}

impl Sessions {
    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates a session awaiting its broker; returns it and its token.
    /// `spec.id` is replaced by a fresh id that no live session has and
    /// for which `taken` (the store) says no. Refused when its owner has
    /// `max` live sessions already.
    pub fn create(
        &self,
        mut spec: SessionSpec,
        taken: impl Fn(&str) -> bool,
        max: Option<usize>,
    ) -> Result<(Arc<Session>, String), CreateError> {
        let token = secrets::new_token()?;
        let mut table = self.table();
        if let Some(max) = max {
            if table.by_id.values().filter(|s| s.spec.owner_uid == spec.owner_uid).count() >= max {
                return Err(CreateError::TooMany(max));
            }
        }
        let id = loop {
            let id = secrets::new_id()?;
            if !table.by_id.contains_key(&id) && !taken(&id) {
                break id;
            }
        };
        spec.id = id.clone();
        let seq = table.next_seq;
        table.next_seq += 1;
        let (changed, _) = watch::channel(());
        let session = Arc::new(Session {
            spec,
            start_ms: now_ms(),
            seq,
            state: Mutex::new(State {
                phase: Phase::AwaitingBroker { token: token.clone() },
                notes: Vec::new(),
                dropped_notes: 0,
                end_ms: 0,
            }),
            changed,
        });
        table.by_id.insert(id, Arc::clone(&session));
        Ok((session, token))
    }

    pub fn get(&self, id: &str) -> Option<Arc<Session>> {
        self.table().by_id.get(id).cloned()
    }

    /// Forgets an ended session (the store has it from now on) and wakes
    /// whoever waits for sessions to end.
    pub fn remove(&self, id: &str) {
        self.table().by_id.remove(id);
        self.notify_ended();
    }

    /// The sessions `uid` may see (all of them for `None`), oldest first.
    pub fn list(&self, uid: Option<u32>) -> Vec<Arc<Session>> {
        let mut list: Vec<_> =
            self.table().by_id.values().filter(|s| uid.is_none_or(|u| s.spec.owner_uid == u)).cloned().collect();
        list.sort_by_key(|s| s.seq);
        list
    }

    /// Sessions awaiting a broker or running, or ended but not yet stored
    /// (shutdown waits for those too).
    pub fn active(&self) -> usize {
        self.table().by_id.len()
    }

    /// Finds the session waiting for `token` and, if the broker runs as its
    /// owner, moves it to running: the token is used up. Every waiting
    /// session's token is compared, each in constant time.
    pub fn claim(&self, token: &str, peer_uid: u32) -> Result<Arc<Session>, ClaimError> {
        let table = self.table();
        let mut found = None;
        for session in table.by_id.values() {
            let state = session.state();
            if let Phase::AwaitingBroker { token: expected } = &state.phase {
                if secrets::constant_time_eq(expected.as_bytes(), token.as_bytes()) {
                    found = Some(Arc::clone(session));
                }
            }
        }
        let session = found.ok_or(ClaimError::UnknownToken)?;
        if session.spec.owner_uid != peer_uid {
            return Err(ClaimError::WrongUser {
                id: session.spec.id.clone(),
                owner: session.spec.owner_uid,
                peer: peer_uid,
            });
        }
        let mut state = session.state();
        // Still awaiting: the table lock keeps other claims out, and the
        // attach timer only ends sessions in this phase.
        if !matches!(state.phase, Phase::AwaitingBroker { .. }) {
            return Err(ClaimError::UnknownToken);
        }
        state.phase = Phase::Running;
        drop(state);
        Ok(session)
    }

    /// Ends every session still awaiting its broker (at shutdown); returns
    /// those it ended.
    pub fn fail_all_awaiting(&self, failure: Failure, message: &str) -> Vec<Arc<Session>> {
        let failed: Vec<_> =
            self.list(None).into_iter().filter(|s| s.fail_if_awaiting_broker(failure, message)).collect();
        if !failed.is_empty() {
            self.notify_ended();
        }
        failed
    }

    /// Wakes whoever waits in [`Sessions::wait_ended`].
    pub fn notify_ended(&self) {
        self.ended.notify_waiters();
    }

    /// Waits until no session is active.
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.ended.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.active() == 0 {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(uid: u32, verbose: bool) -> SessionSpec {
        SessionSpec {
            id: String::new(),
            argv: vec!["true".into()],
            env: vec![],
            cwd: "/".into(),
            program: "/bin/true".into(),
            owner_uid: uid,
            verbose,
            slice: crate::interrupts::DEFAULT_SLICE,
            chaos: None,
            exitless: false,
        }
    }

    fn result(code: i32) -> RunResult {
        RunResult {
            end: SessionEnd {
                failure: Failure::None as i32,
                exit_code: code,
                signal: 0,
                message: String::new(),
                crash: String::new(),
                crash_site: None,
            },
            syscalls: 3,
            vm_exits: 4,
        }
    }

    #[test]
    fn token_is_good_once_and_only_for_the_owner() {
        let sessions = Sessions::default();
        let (s, token) = sessions.create(spec(1000, false), |_| false, None).unwrap();
        assert!(matches!(sessions.claim("nope", 1000), Err(ClaimError::UnknownToken)));
        assert!(matches!(sessions.claim(&token, 1001), Err(ClaimError::WrongUser { .. })));
        let claimed = sessions.claim(&token, 1000).unwrap();
        assert_eq!(claimed.id(), s.id());
        assert!(matches!(sessions.claim(&token, 1000), Err(ClaimError::UnknownToken)));
        assert_eq!(s.meta().status, Status::Recording as i32);
    }

    #[test]
    fn ended_sessions_cannot_be_claimed_or_ended_again() {
        let sessions = Sessions::default();
        let (s, token) = sessions.create(spec(1000, false), |_| false, None).unwrap();
        assert!(s.fail_if_awaiting_broker(Failure::Broker, "the broker never connected"));
        assert!(matches!(sessions.claim(&token, 1000), Err(ClaimError::UnknownToken)));
        assert!(!s.finish(result(0)));
        let meta = s.meta();
        assert_eq!(meta.status, Status::Incomplete as i32);
        assert_eq!(meta.ending.unwrap().failure, "the broker never connected");
        assert!(meta.end_ms >= meta.start_ms);
    }

    #[test]
    fn list_is_per_user_and_oldest_first() {
        let sessions = Sessions::default();
        let (a, _) = sessions.create(spec(1000, false), |_| false, None).unwrap();
        let (_b, _) = sessions.create(spec(1001, false), |_| false, None).unwrap();
        let (c, _) = sessions.create(spec(1000, false), |_| false, None).unwrap();
        let mine: Vec<_> = sessions.list(Some(1000)).iter().map(|s| s.id().to_owned()).collect();
        assert_eq!(mine, vec![a.id().to_owned(), c.id().to_owned()]);
        assert_eq!(sessions.list(None).len(), 3);
        assert_eq!(sessions.active(), 3);
        c.finish(result(0));
        // Ended but not yet stored: still counted, so shutdown waits for it.
        assert_eq!(sessions.active(), 3);
        assert_eq!(c.meta().status, Status::Complete as i32);
        assert_eq!(c.meta().syscalls, 3);
        sessions.remove(c.id());
        assert_eq!(sessions.active(), 2);
        assert_eq!(sessions.list(None).len(), 2);
    }

    #[test]
    fn ids_taken_in_the_store_are_not_reused() {
        let sessions = Sessions::default();
        let calls = std::cell::Cell::new(0);
        // The first two ids drawn are "taken".
        let (s, _) = sessions
            .create(
                spec(1000, false),
                |_| {
                    calls.set(calls.get() + 1);
                    calls.get() <= 2
                },
                None,
            )
            .unwrap();
        assert_eq!(calls.get(), 3);
        assert_eq!(s.id().len(), secrets::ID_LEN);
    }

    #[test]
    fn a_user_gets_so_many_live_sessions() {
        let sessions = Sessions::default();
        let (a, _) = sessions.create(spec(1000, false), |_| false, Some(2)).unwrap();
        sessions.create(spec(1000, false), |_| false, Some(2)).unwrap();
        let refused = sessions.create(spec(1000, false), |_| false, Some(2)).err().unwrap();
        assert!(matches!(refused, CreateError::TooMany(2)), "{refused}");
        assert!(refused.to_string().contains("WARP_MAX_SESSIONS"));
        // Another user is not held back; an ended session gives its slot back.
        sessions.create(spec(1001, false), |_| false, Some(2)).unwrap();
        sessions.remove(a.id());
        sessions.create(spec(1000, false), |_| false, Some(2)).unwrap();
    }

    #[test]
    fn endings_for_the_store_and_back() {
        let e = ending(&failure_end(Failure::Broker, "the broker never connected"));
        assert_eq!((e.exit_code, e.signal, e.failure.as_str()), (0, 0, "the broker never connected"));
        assert_eq!(ending(&failure_end(Failure::NotFound, "")).failure, "not found");
        assert_eq!(ending(&result(4).end).failure, "");

        let meta =
            SessionMeta { status: Status::Complete as i32, ending: Some(ending(&result(4).end)), ..Default::default() };
        let end = end_from_meta(&meta);
        assert_eq!((end.failure, end.exit_code), (Failure::None as i32, 4));
        let meta = SessionMeta { status: Status::Incomplete as i32, ending: Some(e), ..Default::default() };
        let end = end_from_meta(&meta);
        assert_eq!(end.failure, Failure::Daemon as i32);
        assert_eq!(end.message, "the broker never connected");
    }

    #[test]
    fn notes_then_end() {
        let sessions = Sessions::default();
        let (s, _) = sessions.create(spec(1000, true), |_| false, None).unwrap();
        s.push_note("one".into());
        s.push_note("two".into());
        let p = s.progress(0);
        assert_eq!(p.notes, vec!["one", "two"]);
        assert!(p.end.is_none());
        s.finish(result(7));
        let p = s.progress(2);
        assert!(p.notes.is_empty());
        assert_eq!(p.end.unwrap().exit_code, 7);
    }

    #[test]
    fn quiet_sessions_keep_the_notes_they_are_sent() {
        // (The runner sends a quiet session only the lines about limits.)
        let sessions = Sessions::default();
        let (s, _) = sessions.create(spec(1000, false), |_| false, None).unwrap();
        s.push_note("a limit".into());
        assert_eq!(s.progress(0).notes, vec!["a limit"]);
    }

    #[test]
    fn notes_are_capped() {
        let sessions = Sessions::default();
        let (s, _) = sessions.create(spec(1000, true), |_| false, None).unwrap();
        for i in 0..MAX_NOTES + 5 {
            s.push_note(format!("{i}"));
        }
        s.finish(result(0));
        let p = s.progress(0);
        assert_eq!(p.notes.len(), MAX_NOTES + 1);
        assert_eq!(p.notes.last().unwrap(), "5 more notes were not kept");
    }
}
