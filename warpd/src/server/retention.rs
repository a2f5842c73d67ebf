//! Retention: which recordings go when the store keeps too much.
//!
//! A recording is a first process's session with its forked processes'.
//! Its size is the trace bytes its sessions added to the store (a blob
//! shared with another recording is counted where it was first stored, so
//! removing one recording frees at most its size). The daemon applies its
//! `[retention]` limits after each recording ends and every few minutes;
//! `warpctl gc` lists what they (or limits it names) would remove, and
//! removes it with `--yes`. The oldest go first, by when they ended;
//! never one being recorded, never a pinned one, and never the newest (the
//! one just made, even when it alone is over the size, can be replayed).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use warp_proto::trace::{SessionMeta, Status};
use warp_proto::warp::Expired;

use crate::config::Retention;

/// How often the daemon applies its limits besides after each recording.
pub const EVERY: Duration = Duration::from_secs(600);

/// The recordings that `limits` remove from `sessions` at `now_ms`, oldest
/// first; `live` are being recorded. Also the recordings' bytes together
/// before.
pub fn plan(sessions: &[SessionMeta], live: &HashSet<String>, limits: Retention, now_ms: u64) -> (Vec<Expired>, u64) {
    let mut size: HashMap<&str, u64> = HashMap::new();
    for m in sessions {
        let root = if m.root.is_empty() { &m.id } else { &m.root };
        *size.entry(root.as_str()).or_default() += m.trace_bytes;
    }
    let total: u64 = size.values().sum();
    let mut candidates: Vec<&SessionMeta> = sessions
        .iter()
        .filter(|m| m.root.is_empty() && !m.pinned && !live.contains(&m.id) && m.status != Status::Recording as i32)
        .collect();
    let ended = |m: &SessionMeta| if m.end_ms != 0 { m.end_ms } else { m.start_ms };
    candidates.sort_by_key(|m| (ended(m), m.id.clone()));
    let newest = sessions.iter().filter(|m| m.root.is_empty()).max_by_key(|m| (ended(m), m.id.clone()));
    if let Some(newest) = newest {
        candidates.retain(|m| m.id != newest.id);
    }
    let mut left = total;
    let mut out = Vec::new();
    for m in candidates {
        let bytes = size.get(m.id.as_str()).copied().unwrap_or(0);
        let too_old = limits.max_age.filter(|age| now_ms.saturating_sub(ended(m)) > age.as_millis() as u64);
        let too_big = limits.max_bytes.filter(|&max| left > max);
        let reason = match (too_old, too_big) {
            (Some(age), _) => format!("ended more than {} ago", human_duration(age)),
            (None, Some(max)) => format!("the recordings take more than {}", human_size(max)),
            (None, None) => continue,
        };
        left -= bytes;
        out.push(Expired {
            id: m.id.clone(),
            reason,
            trace_bytes: bytes,
            end_ms: ended(m),
            program: m.program.clone(),
        });
    }
    (out, total)
}

fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s % 86400 == 0 => format!("{}d", s / 86400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

fn human_size(b: u64) -> String {
    match b {
        b if b >= 1 << 40 && b % (1 << 40) == 0 => format!("{}T", b >> 40),
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{}G", b >> 30),
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{}M", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{}K", b >> 10),
        b => format!("{b}B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(id: &str, end_ms: u64, bytes: u64) -> SessionMeta {
        SessionMeta {
            id: id.into(),
            start_ms: end_ms.saturating_sub(5),
            end_ms,
            trace_bytes: bytes,
            status: Status::Complete as i32,
            ..SessionMeta::default()
        }
    }

    fn ids(e: &[Expired]) -> Vec<&str> {
        e.iter().map(|e| e.id.as_str()).collect()
    }

    #[test]
    fn the_oldest_go_first_until_under_the_size() {
        let mut all = vec![meta("c", 300, 100), meta("a", 100, 100), meta("b", 200, 100), meta("n", 400, 0)];
        // b's forked process counts with b.
        all.push(SessionMeta { root: "b".into(), parent: "b".into(), ..meta("b.1", 210, 50) });
        let limits = Retention { max_bytes: Some(200), max_age: None };
        let (gone, total) = plan(&all, &HashSet::new(), limits, 1000);
        assert_eq!(total, 350);
        assert_eq!(ids(&gone), ["a", "b"], "a leaves 250, b (150 with its child) leaves 100");
        assert_eq!(gone[1].trace_bytes, 150);
        assert!(gone[0].reason.contains("more than 200B"), "{}", gone[0].reason);
        // The newest stays even alone over the size.
        let (gone, _) = plan(&all[..3], &HashSet::new(), Retention { max_bytes: Some(1), max_age: None }, 1000);
        assert_eq!(ids(&gone), ["a", "b"], "c is the newest of the three");
        assert!(plan(&all, &HashSet::new(), Retention::default(), 1000).0.is_empty(), "no limits, nothing goes");
    }

    #[test]
    fn pinned_live_and_recording_ones_stay() {
        let mut all = vec![
            meta("a", 100, 100),
            meta("b", 200, 100),
            meta("c", 300, 100),
            meta("d", 400, 100),
            meta("newest", 500, 100),
        ];
        all[0].pinned = true;
        all[1].status = Status::Recording as i32;
        let live: HashSet<String> = ["c".to_string()].into();
        let limits = Retention { max_bytes: Some(1), max_age: None };
        assert_eq!(ids(&plan(&all, &live, limits, 1000).0), ["d"]);
        // Incomplete ones may go.
        all[3].status = Status::Incomplete as i32;
        assert_eq!(ids(&plan(&all, &live, limits, 1000).0), ["d"]);
    }

    #[test]
    fn age_counts_from_the_end() {
        let day = 86_400_000;
        let all = vec![meta("old", day, 10), meta("old2", 2 * day, 10), meta("new", 9 * day, 10)];
        let limits = Retention { max_bytes: None, max_age: Some(Duration::from_secs(7 * 86400)) };
        let (gone, _) = plan(&all, &HashSet::new(), limits, 10 * day);
        assert_eq!(ids(&gone), ["old", "old2"]);
        assert_eq!(gone[0].reason, "ended more than 7d ago");
    }
}
