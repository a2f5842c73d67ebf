//! Retention: `warpctl gc` lists the recordings past the limits (a dry run)
//! and removes them with `--yes`, oldest first, never a pinned one or the
//! newest; a
//! daemon with `[retention]` in its configuration applies it by itself
//! after each recording.

use warp_tests::{Flavour, Spec, Status, WarpHome};

fn record(home: &WarpHome) -> String {
    let r = home.record(&Spec::prog("hello", Flavour::Static), &[]);
    assert_eq!(r.outcome.status, Status::Exited(0), "{}", r.warpctl_text());
    r.session_id().unwrap()
}

#[test]
fn gc_lists_then_removes_the_oldest_and_keeps_the_pinned() {
    let home = WarpHome::new("retention");
    let (a, b, c, d) = (record(&home), record(&home), record(&home), record(&home));
    let o = home.ctl(&["pin", &b]);
    assert_eq!((o.status, o.stdout_str()), (Status::Exited(0), format!("{b}\n")), "{}", o.text());
    let o = home.ctl(&["show", &b]);
    assert!(o.stdout_str().contains("pinned"), "{}", o.text());

    // A dry run: listed, oldest first, nothing removed.
    let o = home.ctl(&["gc", "--max-size", "1"]);
    assert_eq!(o.status, Status::Exited(0), "{}", o.text());
    let out = o.stdout_str();
    assert!(out.starts_with("would remove (--yes removes them) 2 recordings past the retention limits"), "{out}");
    let (at_a, at_c) = (out.find(&a).unwrap(), out.find(&c).unwrap());
    assert!(at_a < at_c && !out.contains(&b), "oldest first, the pinned one stays: {out}");
    assert!(!out.contains(&d), "the newest stays: {out}");
    assert!(out.contains("(the recordings take more than 1B)"), "{out}");
    let ls = home.ctl(&["ls"]).stdout_str();
    assert!(ls.contains(&a) && ls.contains(&b) && ls.contains(&c) && ls.contains(&d), "{ls}");

    // --yes removes them; the pinned one still replays.
    let o = home.ctl(&["gc", "--max-size", "1", "--yes", "--json"]);
    assert_eq!(o.status, Status::Exited(0), "{}", o.text());
    assert!(
        o.stdout_str().contains("\"removed\":true") && o.stdout_str().contains(&format!("\"id\":\"{a}\"")),
        "{}",
        o.text()
    );
    let ls = home.ctl(&["ls"]).stdout_str();
    assert!(!ls.contains(&a) && ls.contains(&b) && !ls.contains(&c) && ls.contains(&d), "{ls}");
    let r = home.replay(&b, &[]);
    assert_eq!(r.outcome.status, Status::Exited(0), "{}", r.warpctl_text());

    // Unpinned, it goes by age.
    home.ctl(&["unpin", &b]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let o = home.ctl(&["gc", "--max-age", "1s"]);
    assert!(o.stdout_str().contains(&b) && o.stdout_str().contains("(ended more than 1s ago)"), "{}", o.text());
    let o = home.ctl(&["gc", "--max-age", "a while"]);
    assert_eq!(o.status, Status::Exited(2), "{}", o.text());
    let o = home.ctl(&["pin", "nosuch"]);
    assert_eq!(o.status, Status::Exited(2), "{}", o.text());
}

#[test]
fn a_configured_limit_is_applied_after_each_recording() {
    let home = WarpHome::new("retention_cfg");
    let config = home.scratch("cfg").join("warpd.toml");
    // The first recording stores the executable (~750K): over 100K, but
    // the newest stays. The second shares it and adds ~1K: the first goes
    // when the second ends.
    std::fs::write(&config, "[retention]\nmax_size = \"100K\"\n").unwrap();
    let daemon = home.start_daemon_with_config(&config, "warpd listening");
    let first = record(&home);
    let second = record(&home);
    let ls = home.ctl(&["ls"]).stdout_str();
    assert!(!ls.contains(&first) && ls.contains(&second), "{ls}");
    let log = std::fs::read_to_string(&daemon.log).unwrap();
    assert!(log.contains("retention removed a recording") && log.contains(&first), "{log}");
    let r = home.replay(&second, &[]);
    assert_eq!(r.outcome.status, Status::Exited(0), "what stays replays: {}", r.warpctl_text());
}
