//! Crash-triggered capture: the rules that say which program's next runs
//! `warpctl exec` records, and what becomes of such a run when it ends.
//!
//! ```text
//!  crash reporter --ArmCapture--> rules (saved to the data directory; the
//!                                 `armed` marker beside the socket exists
//!                                 while any rule waits)
//!  warpctl exec: no marker --------------------------> exec natively
//!                marker --ClaimCapture--> no rule ----> exec natively
//!                                         a rule: claim (remaining - 1)
//!                --CreateSession{capture_rule}--> binds the claim
//!  session ends --> finish: a crash, or a rule keeping all: kept, flagged
//!                   `captured_by`, WatchCaptures told; else removed and
//!                   the run given back
//! ```
//!
//! A claim that no session binds within a minute (the launcher died) is
//! given back. Root's rules apply to every user's runs (a crash reporter
//! runs as root); a user's to that user's only.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prost::Message;
use tokio::sync::broadcast;
use tonic::Status;
use warp_proto::warp::{Capture, CaptureRule};

use super::sessions::now_ms;

/// How long a claimed run may take to become a session.
const CLAIM_TIMEOUT: Duration = Duration::from_secs(60);
/// The most rules one user may have.
const MAX_RULES_PER_USER: usize = 256;

#[derive(Default)]
struct State {
    rules: Vec<CaptureRule>,
    /// Claimed runs not yet bound to a session: rule id, uid, when.
    claims: Vec<(String, u32, Instant)>,
    /// Sessions recording for a rule: session id to rule id.
    bound: HashMap<String, String>,
}

pub struct Captures {
    file: PathBuf,
    marker: PathBuf,
    state: Mutex<State>,
    watchers: broadcast::Sender<Capture>,
}

/// Whether `rule` wants a run of `program` with `argv` by `uid`.
fn matches(rule: &CaptureRule, uid: u32, program: &str, argv: &[String]) -> bool {
    if rule.owner_uid != uid && rule.owner_uid != 0 {
        return false;
    }
    let base = |p: &str| p.rsplit('/').next().unwrap_or(p).to_string();
    let program_ok = if rule.program.contains('/') {
        rule.program == program
    } else {
        base(program) == rule.program || argv.first().is_some_and(|a0| base(a0) == rule.program)
    };
    program_ok && (rule.arg_contains.is_empty() || argv.iter().skip(1).any(|a| a.contains(&rule.arg_contains)))
}

impl Captures {
    /// The rules saved in `file` (none if it is missing or unreadable:
    /// said in the log); `marker` is made to say whether any wait.
    pub fn open(file: PathBuf, marker: PathBuf) -> Captures {
        let mut rules = Vec::new();
        match std::fs::read(&file) {
            Ok(bytes) => {
                let mut buf = &bytes[..];
                while !buf.is_empty() {
                    match CaptureRule::decode_length_delimited(&mut buf) {
                        Ok(mut rule) => {
                            rule.in_flight = 0;
                            rules.push(rule);
                        }
                        Err(e) => {
                            tracing::error!(file = %file.display(), error = %e, "capture rules damaged: the rest are dropped");
                            break;
                        }
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::error!(file = %file.display(), error = %e, "cannot read the capture rules"),
        }
        let captures = Captures {
            file,
            marker,
            state: Mutex::new(State { rules, ..State::default() }),
            watchers: broadcast::channel(256).0,
        };
        let mut state = captures.lock();
        captures.tidy(&mut state);
        captures.save(&state);
        drop(state);
        captures
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Drops expired and finished rules and claims nobody bound in time.
    fn tidy(&self, state: &mut State) {
        let now = now_ms();
        let stale: Vec<String> = state
            .claims
            .iter()
            .filter(|(_, _, at)| at.elapsed() > CLAIM_TIMEOUT)
            .map(|(rule, _, _)| rule.clone())
            .collect();
        state.claims.retain(|(_, _, at)| at.elapsed() <= CLAIM_TIMEOUT);
        for id in stale {
            if let Some(rule) = state.rules.iter_mut().find(|r| r.id == id) {
                rule.in_flight = rule.in_flight.saturating_sub(1);
                rule.remaining += 1;
            }
        }
        state.rules.retain(|r| r.in_flight > 0 || (r.remaining > 0 && (r.until_ms == 0 || r.until_ms > now)));
    }

    /// Writes the rules (a length-delimited `CaptureRule` after another, to
    /// a temporary file, synced, renamed) and the marker.
    fn save(&self, state: &State) {
        let mut bytes = Vec::new();
        for rule in &state.rules {
            let mut saved = rule.clone();
            saved.in_flight = 0;
            bytes.extend(saved.encode_length_delimited_to_vec());
        }
        let tmp = self.file.with_extension("tmp");
        let written = (|| {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.file)
        })();
        if let Err(e) = written {
            tracing::error!(file = %self.file.display(), error = %e, "cannot save the capture rules");
        }
        set_marker(&self.marker, !state.rules.is_empty());
    }

    /// Adds `rule` for `uid` (its id, owner and counts set here).
    pub fn arm(&self, mut rule: CaptureRule, uid: u32, unless_armed: bool) -> Result<CaptureRule, Status> {
        if rule.program.is_empty() {
            return Err(Status::invalid_argument("a rule needs a program (a path, or a name)"));
        }
        if rule.program.contains('/') && !rule.program.starts_with('/') {
            return Err(Status::invalid_argument(format!("{:?} is neither an absolute path nor a name", rule.program)));
        }
        if rule.program.contains('\0') || rule.arg_contains.contains('\0') {
            return Err(Status::invalid_argument("a rule cannot hold a NUL byte"));
        }
        if rule.until_ms != 0 && rule.until_ms <= now_ms() {
            return Err(Status::invalid_argument("the rule would end before it starts"));
        }
        let mut state = self.lock();
        self.tidy(&mut state);
        if unless_armed {
            let same = |r: &&CaptureRule| {
                r.owner_uid == uid
                    && r.program == rule.program
                    && r.arg_contains == rule.arg_contains
                    && r.crashes_only == rule.crashes_only
                    && r.remaining > 0
            };
            if let Some(existing) = state.rules.iter().find(same) {
                return Ok(existing.clone());
            }
        }
        if uid != 0 && state.rules.iter().filter(|r| r.owner_uid == uid).count() >= MAX_RULES_PER_USER {
            return Err(Status::resource_exhausted(format!(
                "you have {MAX_RULES_PER_USER} capture rules: disarm some first"
            )));
        }
        rule.id = super::secrets::new_id().map_err(|e| Status::internal(format!("cannot make a rule id: {e}")))?;
        rule.owner_uid = uid;
        rule.remaining = rule.remaining.max(1);
        rule.created_ms = now_ms();
        rule.captured = 0;
        rule.in_flight = 0;
        state.rules.push(rule.clone());
        self.save(&state);
        tracing::info!(rule = %rule.id, uid, program = %rule.program, remaining = rule.remaining, crashes_only = rule.crashes_only, "capture armed");
        Ok(rule)
    }

    /// The rules `uid` may see: its own (root: all), oldest first.
    pub fn list(&self, uid: u32) -> Vec<CaptureRule> {
        let mut state = self.lock();
        self.tidy(&mut state);
        state.rules.iter().filter(|r| uid == 0 || r.owner_uid == uid).cloned().collect()
    }

    /// Removes `ids` (or, with `all`, every rule `uid` may see); the ids
    /// removed. An id `uid` may not see is unknown.
    pub fn disarm(&self, ids: &[String], all: bool, uid: u32) -> Result<Vec<String>, Status> {
        let mut state = self.lock();
        let mine = |r: &CaptureRule| uid == 0 || r.owner_uid == uid;
        if let Some(unknown) = ids.iter().find(|id| !state.rules.iter().any(|r| &r.id == *id && mine(r))) {
            return Err(Status::not_found(format!("no capture rule {unknown}")));
        }
        let removed: Vec<String> =
            state.rules.iter().filter(|r| mine(r) && (all || ids.contains(&r.id))).map(|r| r.id.clone()).collect();
        state.rules.retain(|r| !removed.contains(&r.id));
        self.save(&state);
        if !removed.is_empty() {
            tracing::info!(uid, rules = ?removed, "capture disarmed");
        }
        Ok(removed)
    }

    /// The first rule that wants this run of `uid`'s, which it claims (one
    /// run fewer remaining until the run ends and is kept or given back).
    pub fn claim(&self, uid: u32, program: &str, argv: &[String]) -> Option<String> {
        let mut state = self.lock();
        self.tidy(&mut state);
        let rule = state.rules.iter_mut().find(|r| r.remaining > 0 && matches(r, uid, program, argv))?;
        rule.remaining -= 1;
        rule.in_flight += 1;
        let id = rule.id.clone();
        state.claims.push((id.clone(), uid, Instant::now()));
        self.save(&state);
        Some(id)
    }

    /// Binds `uid`'s claim of `rule` to `session` (CreateSession).
    pub fn bind(&self, rule: &str, uid: u32, session: &str) -> Result<(), Status> {
        let mut state = self.lock();
        let Some(at) = state.claims.iter().position(|(r, u, _)| r == rule && *u == uid) else {
            return Err(Status::failed_precondition(format!(
                "capture rule {rule} has no run claimed by you (ClaimCapture first; a claim lasts {} s)",
                CLAIM_TIMEOUT.as_secs()
            )));
        };
        state.claims.remove(at);
        state.bound.insert(session.to_string(), rule.to_string());
        Ok(())
    }

    /// `session` ended with `signal` (0: it exited): the rule it records
    /// for, and whether that rule keeps it.
    pub fn should_keep(&self, session: &str, signal: i32) -> Option<(String, bool)> {
        let state = self.lock();
        let rule_id = state.bound.get(session)?.clone();
        let keep = state.rules.iter().find(|r| r.id == rule_id).is_none_or(|r| !r.crashes_only || signal != 0);
        Some((rule_id, keep))
    }

    /// Settles `session`'s run: counted as a capture (`capture` to tell
    /// watchers) or given back to its rule.
    pub fn settle(&self, session: &str, capture: Option<Capture>) {
        let mut state = self.lock();
        let Some(rule_id) = state.bound.remove(session) else { return };
        if let Some(rule) = state.rules.iter_mut().find(|r| r.id == rule_id) {
            rule.in_flight = rule.in_flight.saturating_sub(1);
            if capture.is_some() {
                rule.captured += 1;
            } else {
                rule.remaining += 1;
            }
        }
        self.tidy(&mut state);
        self.save(&state);
        drop(state);
        if let Some(capture) = capture {
            tracing::info!(session, rule = %rule_id, signal = capture.signal, "captured");
            let _ = self.watchers.send(capture);
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Capture> {
        self.watchers.subscribe()
    }
}

/// Makes the marker file exist (readable by all: `warpctl exec` of every
/// user looks for it) or not.
fn set_marker(marker: &Path, armed: bool) {
    let result = if armed {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new().write(true).create(true).truncate(false).mode(0o644).open(marker).map(drop)
    } else {
        match std::fs::remove_file(marker) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    };
    if let Err(e) = result {
        tracing::error!(marker = %marker.display(), error = %e, "cannot update the capture marker");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(program: &str, crashes_only: bool) -> CaptureRule {
        CaptureRule { program: program.into(), remaining: 1, crashes_only, ..CaptureRule::default() }
    }

    fn fresh(tag: &str) -> (PathBuf, Captures) {
        let dir = std::env::temp_dir().join(format!("warp-captures-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let c = Captures::open(dir.join("rules"), dir.join("armed"));
        (dir, c)
    }

    #[test]
    fn rules_match_by_path_name_argument_and_owner() {
        let argv = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let mut r = rule("/usr/bin/crashy", true);
        r.owner_uid = 1000;
        assert!(matches(&r, 1000, "/usr/bin/crashy", &argv(&["crashy"])));
        assert!(!matches(&r, 1001, "/usr/bin/crashy", &argv(&["crashy"])), "another user's");
        assert!(!matches(&r, 1000, "/opt/crashy", &argv(&["crashy"])));
        r.owner_uid = 0;
        assert!(matches(&r, 1001, "/usr/bin/crashy", &argv(&["crashy"])), "root's apply to all");
        let mut n = rule("crashy", true);
        n.arg_contains = "--serve".into();
        assert!(matches(&n, 0, "/opt/crashy", &argv(&["crashy", "--serve=1"])));
        assert!(!matches(&n, 0, "/opt/crashy", &argv(&["crashy", "-x"])));
        assert!(!matches(&n, 0, "/opt/crashy", &argv(&["--serve"])), "argv[0] is not an argument");
    }

    #[test]
    fn claims_count_settle_persist_and_mark() {
        let (dir, c) = fresh("claims");
        assert!(!dir.join("armed").exists());
        let r = c.arm(rule("/bin/prog", true), 7, false).unwrap();
        assert!(dir.join("armed").exists(), "a waiting rule is marked");
        assert_eq!(c.arm(rule("/bin/prog", true), 7, true).unwrap().id, r.id, "unless_armed: the same rule");
        assert_eq!(c.claim(8, "/bin/prog", &[]), None, "not uid 8's");
        assert_eq!(c.claim(7, "/bin/prog", &[]), Some(r.id.clone()));
        assert_eq!(c.claim(7, "/bin/prog", &[]), None, "its one run is claimed");
        assert!(c.bind(&r.id, 8, "s1").is_err(), "only the claimer binds");
        c.bind(&r.id, 7, "s1").unwrap();
        // Exited normally: dropped, the run given back.
        assert_eq!(c.should_keep("s1", 0), Some((r.id.clone(), false)));
        c.settle("s1", None);
        assert_eq!(c.list(7)[0].remaining, 1);
        // Then a crash: kept, counted, and the rule (one run) is done.
        assert_eq!(c.claim(7, "/bin/prog", &[]), Some(r.id.clone()));
        c.bind(&r.id, 7, "s2").unwrap();
        assert_eq!(c.should_keep("s2", 11), Some((r.id.clone(), true)));
        let mut watch = c.subscribe();
        c.settle("s2", Some(Capture { session: "s2".into(), rule: r.id.clone(), signal: 11, ..Capture::default() }));
        assert_eq!(watch.try_recv().unwrap().session, "s2");
        assert!(c.list(7).is_empty(), "done: gone");
        assert!(!dir.join("armed").exists());
        // Saved: a new daemon has them.
        let r2 = c.arm(rule("name", false), 7, false).unwrap();
        drop(c);
        let again = Captures::open(dir.join("rules"), dir.join("armed"));
        assert_eq!(again.list(0).iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), [r2.id.as_str()]);
        assert!(again.disarm(&["nope".into()], false, 7).is_err());
        assert!(again.disarm(std::slice::from_ref(&r2.id), false, 8).is_err(), "another user's is unknown");
        assert_eq!(again.disarm(&[], true, 7).unwrap(), [r2.id]);
        assert!(!dir.join("armed").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_rules_are_refused() {
        let (dir, c) = fresh("bad");
        assert!(c.arm(rule("", true), 1, false).is_err());
        assert!(c.arm(rule("rel/path", true), 1, false).is_err());
        let mut past = rule("x", true);
        past.until_ms = 1;
        assert!(c.arm(past, 1, false).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
