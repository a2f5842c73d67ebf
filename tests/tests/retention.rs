//! Retention: `warpctl gc` lists the recordings past the limits (a dry run)
//! and removes them with `--yes`, oldest first, never a pinned one or the
//! newest; a
//! daemon with `[retention]` in its configuration applies it by itself
//! after each recording.

use warp_tests::{default_timeout, run, Flavour, Input, Outcome, Spec, Status, WarpHome};

fn ctl(home: &WarpHome, args: &[&str]) -> Outcome {
    let mut cmd = home.warpctl();
    cmd.args(args);
    run(cmd, &format!("`warpctl {}`", args.join(" ")), &Input::Null, None, default_timeout())
}

fn text(o: &Outcome) -> String {
    format!("status {:?}\nstdout:\n{}stderr:\n{}", o.status, o.stdout_str(), o.stderr_str())
}

fn record(home: &WarpHome) -> String {
    let r = home.record(&Spec::prog("hello", Flavour::Static), &[]);
    assert_eq!(r.outcome.status, Status::Exited(0), "{}", r.warpctl_text());
    r.session_id().unwrap()
}

#[test]
fn gc_lists_then_removes_the_oldest_and_keeps_the_pinned() {
    let home = WarpHome::new("retention");
    let (a, b, c, d) = (record(&home), record(&home), record(&home), record(&home));
    let o = ctl(&home, &["pin", &b]);
    assert_eq!((o.status, o.stdout_str()), (Status::Exited(0), format!("{b}\n")), "{}", text(&o));
    let o = ctl(&home, &["show", &b]);
    assert!(o.stdout_str().contains("pinned"), "{}", text(&o));

    // A dry run: listed, oldest first, nothing removed.
    let o = ctl(&home, &["gc", "--max-size", "1"]);
    assert_eq!(o.status, Status::Exited(0), "{}", text(&o));
    let out = o.stdout_str();
    assert!(out.starts_with("would remove (--yes removes them) 2 recordings past the retention limits"), "{out}");
    let (at_a, at_c) = (out.find(&a).unwrap(), out.find(&c).unwrap());
    assert!(at_a < at_c && !out.contains(&b), "oldest first, the pinned one stays: {out}");
    assert!(!out.contains(&d), "the newest stays: {out}");
    assert!(out.contains("(the recordings take more than 1B)"), "{out}");
    let ls = ctl(&home, &["ls"]).stdout_str();
    assert!(ls.contains(&a) && ls.contains(&b) && ls.contains(&c) && ls.contains(&d), "{ls}");

    // --yes removes them; the pinned one still replays.
    let o = ctl(&home, &["gc", "--max-size", "1", "--yes", "--json"]);
    assert_eq!(o.status, Status::Exited(0), "{}", text(&o));
    assert!(
        o.stdout_str().contains("\"removed\":true") && o.stdout_str().contains(&format!("\"id\":\"{a}\"")),
        "{}",
        text(&o)
    );
    let ls = ctl(&home, &["ls"]).stdout_str();
    assert!(!ls.contains(&a) && ls.contains(&b) && !ls.contains(&c) && ls.contains(&d), "{ls}");
    let r = home.replay(&b, &[]);
    assert_eq!(r.outcome.status, Status::Exited(0), "{}", r.warpctl_text());

    // Unpinned, it goes by age.
    ctl(&home, &["unpin", &b]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let o = ctl(&home, &["gc", "--max-age", "1s"]);
    assert!(o.stdout_str().contains(&b) && o.stdout_str().contains("(ended more than 1s ago)"), "{}", text(&o));
    let o = ctl(&home, &["gc", "--max-age", "a while"]);
    assert_eq!(o.status, Status::Exited(2), "{}", text(&o));
    let o = ctl(&home, &["pin", "nosuch"]);
    assert_eq!(o.status, Status::Exited(2), "{}", text(&o));
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
    let ls = ctl(&home, &["ls"]).stdout_str();
    assert!(!ls.contains(&first) && ls.contains(&second), "{ls}");
    let log = std::fs::read_to_string(&daemon.log).unwrap();
    assert!(log.contains("retention removed a recording") && log.contains(&first), "{log}");
    let r = home.replay(&second, &[]);
    assert_eq!(r.outcome.status, Status::Exited(0), "what stays replays: {}", r.warpctl_text());
}
