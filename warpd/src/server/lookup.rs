//! Finding sessions for a caller: the store's sessions plus the live ones
//! it does not hold yet, filtered by owner, and `latest`.
//!
//! Everything here calls sled and so blocks: the service runs it through
//! [`blocking`].

use tonic::Status;
use warp_proto::trace::{SessionMeta, Status as TraceStatus};
use warp_proto::warp::{Failure, SessionEnd, SessionInfo};

use super::Shared;
use crate::trace::store::StoreError;

/// The name that stands for the caller's newest session.
pub const LATEST: &str = "latest";

/// Runs blocking work (sled) on tokio's blocking threads.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, Status> + Send + 'static) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("warpd failed while reading the store: {e}")))?
}

/// A store error as the status a client sees. Corrupt data is DATA_LOSS
/// (warpctl reports it as an unreadable trace), a missing session NOT_FOUND.
pub fn status(e: StoreError) -> Status {
    match e {
        StoreError::NotFound(_) => Status::not_found(e.to_string()),
        StoreError::Corrupt { .. } | StoreError::NewerFormat { .. } | StoreError::Blob { .. } => {
            Status::data_loss(e.to_string())
        }
        StoreError::Db(_) => Status::internal(e.to_string()),
        StoreError::Full { .. } | StoreError::NoSpace(_) => Status::resource_exhausted(e.to_string()),
    }
}

fn visible(meta: &SessionMeta, uid: u32) -> bool {
    uid == 0 || meta.owner_uid == uid
}

/// Every recording `uid` may see (root: all), oldest first: the store's,
/// plus live sessions the recorder has not stored yet. A recording is its
/// first process's session; its forked processes' are left out.
pub fn list(shared: &Shared, uid: u32) -> Result<Vec<SessionMeta>, Status> {
    let mut all = every(shared, uid)?;
    all.retain(|m| m.root.is_empty());
    Ok(all)
}

/// Every recording `uid` may see, as `list`, with how many processes it
/// has (one reading of the store).
pub fn recordings(shared: &Shared, uid: u32) -> Result<Vec<(SessionMeta, u32)>, Status> {
    let all = every(shared, uid)?;
    let mut counts = std::collections::BTreeMap::<&str, u32>::new();
    for m in all.iter().filter(|m| !m.root.is_empty()) {
        *counts.entry(m.root.as_str()).or_insert(1) += 1;
    }
    let with = |m: &SessionMeta| counts.get(m.id.as_str()).copied().unwrap_or(1);
    Ok(all.iter().filter(|m| m.root.is_empty()).map(|m| (m.clone(), with(m))).collect())
}

/// Recording `id`'s processes: its first process, then the ones it forked
/// in the order it forked them, each followed by those it forked (ids
/// `ID.N`, `ID.N.M`: by their numbers). Not by start time: children forked
/// within a millisecond, each started on a thread of its own, can start
/// in either order.
pub fn tree(shared: &Shared, id: &str, uid: u32) -> Result<Vec<SessionMeta>, Status> {
    let first = resolve(shared, id, uid)?;
    if !first.root.is_empty() {
        return Err(part_of(&first));
    }
    let mut all = every(shared, uid)?;
    all.retain(|m| m.root == first.id);
    let numbers = |m: &SessionMeta| -> Vec<u64> {
        let rest = m.id.strip_prefix(first.id.as_str()).unwrap_or(&m.id);
        rest.split('.').filter(|s| !s.is_empty()).map(|s| s.parse().unwrap_or(u64::MAX)).collect()
    };
    all.sort_by_cached_key(numbers);
    let mut out = vec![first];
    out.extend(all);
    Ok(out)
}

/// The session of recording `root`'s process `pid` (`--pid`): None for its
/// first process (or pid 0). A pid that two processes of the recording had
/// in turn names the first of them.
pub fn process(shared: &Shared, root: &SessionMeta, pid: u32, uid: u32) -> Result<Option<String>, Status> {
    if pid == 0 || root.identity.is_some_and(|i| i.pid == pid) {
        return Ok(None);
    }
    let all = tree(shared, &root.id, uid)?;
    let had_it = all.iter().filter(|m| m.identity.is_some_and(|i| i.pid == pid));
    match had_it.min_by_key(|m| m.start_ms) {
        Some(m) => Ok(Some(m.id.clone())),
        None => Err(Status::not_found(format!(
            "recording {} has no process {pid} (`warpctl ps {}` lists its processes)",
            root.id, root.id
        ))),
    }
}

/// The refusal for a forked process's session where a recording's is meant.
pub fn part_of(meta: &SessionMeta) -> Status {
    Status::failed_precondition(format!(
        "session {} is a forked process (pid {}) of recording {}: use {} (`warpctl ps {}` lists its processes)",
        meta.id,
        meta.identity.map_or(0, |i| i.pid),
        meta.root,
        meta.root,
        meta.root
    ))
}

/// Every session `uid` may see, forked processes' too.
fn every(shared: &Shared, uid: u32) -> Result<Vec<SessionMeta>, Status> {
    let mut all = shared.store.sessions().map_err(status)?;
    for live in shared.sessions.list(None) {
        if !all.iter().any(|m| m.id == live.id()) {
            all.push(live.meta());
        }
    }
    all.retain(|m| visible(m, uid));
    // Stable: the store's order (start time, then id) among equal starts.
    all.sort_by_key(|m| m.start_ms);
    Ok(all)
}

/// The session `id` (or `latest`: the caller's own newest, recorded or
/// imported) if `uid` may see
/// it. Another user's session is answered exactly as an unknown one, so
/// that ids are not revealed.
pub fn resolve(shared: &Shared, id: &str, uid: u32) -> Result<SessionMeta, Status> {
    if id == LATEST {
        let mine = list(shared, uid)?.into_iter().filter(|m| m.owner_uid == uid);
        return mine
            .max_by_key(|m| m.start_ms.max(m.imported_ms))
            .ok_or_else(|| Status::not_found("you have no sessions yet, so there is no latest one"));
    }
    if id.is_empty() {
        return Err(Status::invalid_argument("no session id given"));
    }
    let unknown = || Status::not_found(format!("no session {id}"));
    let meta = match shared.store.session(id) {
        Ok(meta) => meta,
        Err(StoreError::NotFound(_)) => shared.sessions.get(id).map(|s| s.meta()).ok_or_else(unknown)?,
        Err(e) => return Err(status(e)),
    };
    if visible(&meta, uid) {
        Ok(meta)
    } else {
        Err(unknown())
    }
}

/// A status name as `ls` shows it.
pub fn status_name(status: i32) -> &'static str {
    match TraceStatus::try_from(status) {
        Ok(TraceStatus::Recording) => "recording",
        Ok(TraceStatus::Complete) => "complete",
        Ok(TraceStatus::Incomplete) => "incomplete",
        Err(_) => "unknown",
    }
}

/// What `ListSessions` shows of a session.
pub fn info(meta: &SessionMeta) -> SessionInfo {
    let ending = meta.ending.clone();
    let end = (meta.status == TraceStatus::Complete as i32).then(|| {
        let e = ending.clone().unwrap_or_default();
        SessionEnd {
            failure: Failure::None as i32,
            exit_code: e.exit_code,
            signal: e.signal,
            message: String::new(),
            crash: e.crash,
            crash_site: e.crash_site,
        }
    });
    SessionInfo {
        id: meta.id.clone(),
        argv: meta.argv.clone(),
        owner_uid: meta.owner_uid,
        status: status_name(meta.status).into(),
        start_ms: meta.start_ms,
        end_ms: meta.end_ms,
        end,
        syscalls: meta.syscalls,
        vm_exits: meta.vm_exits,
        program: meta.program.clone(),
        events: meta.events,
        trace_bytes: meta.trace_bytes,
        ending,
        parent: meta.parent.clone(),
        pid: meta.identity.map_or(0, |i| i.pid),
        ppid: meta.identity.map_or(0, |i| i.ppid),
        processes: 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warp_proto::trace::Ending;

    #[test]
    fn info_shows_how_it_ended() {
        let meta = SessionMeta {
            id: "abc".into(),
            status: TraceStatus::Complete as i32,
            ending: Some(Ending { exit_code: 3, ..Default::default() }),
            events: 9,
            trace_bytes: 1000,
            program: "/bin/x".into(),
            ..Default::default()
        };
        let i = info(&meta);
        assert_eq!(i.status, "complete");
        assert_eq!(i.end.unwrap().exit_code, 3);
        assert_eq!((i.events, i.trace_bytes, i.program.as_str()), (9, 1000, "/bin/x"));

        let meta = SessionMeta {
            status: TraceStatus::Incomplete as i32,
            ending: Some(Ending { failure: "the broker died".into(), ..Default::default() }),
            ..meta
        };
        let i = info(&meta);
        assert_eq!(i.status, "incomplete");
        assert!(i.end.is_none());
        assert_eq!(i.ending.unwrap().failure, "the broker died");
    }

    #[test]
    fn store_errors_map_to_statuses() {
        assert_eq!(status(StoreError::NotFound("x".into())).code(), tonic::Code::NotFound);
        let corrupt = StoreError::Corrupt { session: "s".into(), what: "event 3".into(), detail: "bad".into() };
        assert_eq!(status(corrupt).code(), tonic::Code::DataLoss);
        assert_eq!(status(StoreError::Db("io".into())).code(), tonic::Code::Internal);
    }
}
