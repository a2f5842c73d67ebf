//! Preemption without a performance counter: a thread that computes is
//! stopped by a timer so that others run, and a signal is delivered while
//! the program computes; the recording keeps each such point (thread,
//! registers, a digest of memory written since the last boundary), and
//! replay stops at exactly that point again (an in-guest probe compares
//! registers at native speed). Programs from `progs/preempt.c`.

use warp_tests::{Flavour, Spec, Status, WarpHome, FLAVOURS};

/// The lines of `warpctl events ID`.
fn events(home: &WarpHome, id: &str) -> String {
    let out = home.warpctl().args(["events", id]).output().unwrap();
    assert!(out.status.success(), "events: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A thread spins on a volatile flag that only another thread sets: on one
/// vCPU it ends only because the spinner's slice runs out.
#[test]
fn a_spin_wait_is_released_by_a_preempted_thread() {
    let home = WarpHome::new("preempt_spin");
    for flavour in FLAVOURS {
        let spec = Spec::prog("preempt", flavour).arg("spin");
        let native = home.check(&spec);
        assert_eq!(native.status, Status::Exited(0));
        assert_eq!(native.stdout_str(), "spin: released\n");
        let recorded = home.record(&spec, &[]);
        let text = events(&home, &recorded.session_id().unwrap());
        assert!(
            text.lines().any(|l| l.contains("--- stopped at rip") && l.contains("time slice over")),
            "a preemption point is in the trace:\n{text}"
        );
    }
}

/// Two threads add to a counter with no lock: a lost update happens only
/// where a thread was stopped between its load and its store. Every
/// recording replays to its own total, whatever it was.
#[test]
fn a_racy_counter_replays_exactly_over_twenty_recordings() {
    let home = WarpHome::new("preempt_race");
    let spec = Spec::prog("preempt", Flavour::Static).arg("race");
    let mut totals = Vec::new();
    let mut points = 0;
    for _ in 0..20 {
        let recorded = home.record(&spec, &["--slice-ms", "3"]);
        assert_eq!(recorded.outcome.status, Status::Exited(0), "{}", recorded.warpctl_text());
        let out = recorded.outcome.stdout_str();
        assert!(out.starts_with("race: total ") && out.ends_with(" of 40000000\n"), "{out}");
        home.assert_replays(&spec, &recorded);
        points += events(&home, &recorded.session_id().unwrap()).matches("--- stopped at rip").count();
        totals.push(out);
    }
    assert!(points > 0, "some recording preempted an adder: {totals:?}");
}

/// SIGALRM from an interval timer lands while the program computes; the
/// handler samples the loop's counter, so the printed value says where it
/// ran. Replay runs each handler at the same instruction, with the same
/// counter.
#[test]
fn signal_handlers_run_where_the_recording_ran_them() {
    let home = WarpHome::new("preempt_alarm");
    for flavour in FLAVOURS {
        let spec = Spec::prog("preempt", flavour).arg("alarm");
        let recorded = home.record(&spec, &[]);
        assert_eq!(recorded.outcome.status, Status::Exited(0), "{}", recorded.warpctl_text());
        let out = recorded.outcome.stdout_str();
        assert!(out.starts_with("alarm: ") && out.contains(" handlers while computing, samples "), "{out}");
        home.assert_replays(&spec, &recorded);
        let text = events(&home, &recorded.session_id().unwrap());
        let points = text.lines().filter(|l| l.contains("--- stopped at rip") && l.contains("SIGALRM")).count();
        assert!(points >= 10, "each alarm taken at a point while computing ({points}):\n{text}");
    }
}

/// The slice is a setting: out-of-range values are refused by warpctl
/// (a wrong command line of record: 125).
#[test]
fn the_time_slice_is_checked() {
    let home = WarpHome::new("preempt_slice");
    let out = home.warpctl().args(["record", "--slice-ms", "0", "--", "true"]).output().unwrap();
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--slice-ms"), "{err}");
}

/// Chaos mode finds a planted order-dependent bug (main assumes its helper
/// has run) in a bounded number of recordings, where the default schedule
/// never shows it; the failing recording replays to the same failure.
#[test]
fn chaos_mode_finds_an_order_dependent_bug_and_replays_it() {
    let home = WarpHome::new("preempt_chaos");
    let spec = Spec::prog("order_bug", Flavour::Static);
    for _ in 0..3 {
        let plain = home.record(&spec, &[]);
        assert_eq!(plain.outcome.status, Status::Exited(0), "default schedule: {}", plain.outcome.stdout_str());
    }
    let mut found = None;
    for attempt in 0..60u64 {
        let seed = (1000 + attempt).to_string();
        let recorded = home.record(&spec, &["--chaos", "--seed", &seed]);
        if recorded.outcome.status == Status::Exited(1) {
            found = Some((recorded, seed));
            break;
        }
        assert_eq!(recorded.outcome.status, Status::Exited(0), "{}", recorded.warpctl_text());
    }
    let (recorded, seed) = found.expect("chaos mode shows the bug within 60 recordings");
    assert_eq!(recorded.outcome.stdout_str(), "bug: the helper had not run yet\n");
    home.assert_replays(&spec, &recorded);
    let id = recorded.session_id().unwrap();
    let show = home.warpctl().args(["show", &id]).output().unwrap();
    let text = String::from_utf8_lossy(&show.stdout);
    assert!(text.contains(&format!("chaos, seed {seed}")), "{text}");
}

/// A replay that cannot find its next recorded point (here the point's
/// registers were changed in the store, so no pass matches) reports a
/// divergence after its patience runs out instead of computing forever.
#[test]
fn a_point_replay_cannot_reach_is_a_divergence() {
    use prost::Message;
    use warp_proto::trace::{event, Event};
    let home = WarpHome::new("preempt_lost");
    let spec = Spec::prog("preempt", Flavour::Static).arg("spin");
    let recorded = home.record(&spec, &[]);
    assert_eq!(recorded.outcome.status, Status::Exited(0), "{}", recorded.warpctl_text());
    let id = recorded.session_id().unwrap();
    let out = home.warpctl().args(["daemon", "stop"]).output().unwrap();
    assert!(out.status.success(), "daemon stop: {}", String::from_utf8_lossy(&out.stderr));
    {
        let db = sled::Config::new().path(home.path().join("store")).flush_every_ms(None).open().unwrap();
        let tree = db.open_tree("events").unwrap();
        let mut prefix = id.as_bytes().to_vec();
        prefix.push(0);
        let (key, mut ev) = tree
            .scan_prefix(&prefix)
            .map(|kv| kv.unwrap())
            .map(|(k, v)| (k, Event::decode(v.as_ref()).unwrap()))
            .find(|(_, e)| matches!(&e.kind, Some(event::Kind::Interrupt(_))))
            .expect("the spinner's preemption point");
        let Some(event::Kind::Interrupt(i)) = &mut ev.kind else { unreachable!() };
        // r15 (the last of the 18 words): a value the spin loop never has.
        i.regs[17] ^= 0x5a5a_0000_0000_0000;
        tree.insert(key, ev.encode_to_vec()).unwrap();
        db.flush().unwrap();
    }
    let out = home.warpctl().env("WARP_POINT_TIMEOUT_SECS", "2").args(["replay", &id]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "a divergence: {text}");
    eprintln!("{text}");
    assert!(text.contains("without reaching that point"), "says why: {text}");
}
