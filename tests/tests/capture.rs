//! Crash-triggered capture: `warpctl arm`, `warpctl exec` (the launcher a
//! service runs), `warpctl crash-hook` (what a crash reporter runs),
//! `warpctl arms`/`disarm` and `warpctl captures` (the watch). With nothing
//! armed, exec runs the program natively without a daemon; a crash under a
//! rule is kept, flagged and replays to the same crash; a run that exits
//! normally under a crashes-only rule is dropped; rules survive a restart.

use std::path::Path;

use warp_tests::{default_timeout, prog, spawn, Flavour, Input, Outcome, Status, WarpHome};

fn exec(home: &WarpHome, program: &Path) -> Outcome {
    home.ctl(&["exec", "--", program.to_str().unwrap()])
}

fn session_of(o: &Outcome) -> Option<String> {
    o.stderr_str().lines().find_map(|l| l.strip_prefix("warpctl: session ").map(|s| s.trim().to_string()))
}

#[test]
fn armed_runs_are_captured_and_the_rest_run_natively() {
    let home = WarpHome::new("capture");
    let hello = prog("hello", Flavour::Static);
    let crash = prog("null_deref", Flavour::Static);

    // Nothing armed: the program runs natively, and no daemon is started.
    let o = exec(&home, &hello);
    assert_eq!(o.status, Status::Exited(0), "{}", o.text());
    assert_eq!(o.stdout_str(), "Hello, world!\nEXIT-SUCCESS\n");
    assert!(o.stderr.is_empty(), "{}", o.text());
    assert!(!home.path().join("warpd.sock").exists(), "exec with nothing armed started a daemon");
    let o = exec(&home, &crash);
    assert_eq!(o.status, Status::Signaled(11), "natively: {}", o.text());
    let o = home.ctl(&["exec", "--", "/nonexistent/prog"]);
    assert_eq!(o.status, Status::Exited(127), "{}", o.text());

    // A crashes-only rule for hello: its run is recorded, then dropped.
    let o = home.ctl(&["arm", "hello.static"]);
    assert_eq!(o.status, Status::Exited(0), "{}", o.text());
    let hello_rule = o.stdout_str().trim().to_string();
    assert!(home.path().join("armed").exists(), "the marker exec looks for");
    let o = exec(&home, &hello);
    assert_eq!(o.status, Status::Exited(0), "{}", o.text());
    assert_eq!(o.stdout_str(), "Hello, world!\nEXIT-SUCCESS\n");
    let dropped = session_of(&o).unwrap_or_else(|| panic!("recorded: {}", o.text()));
    let o = home.ctl(&["show", &dropped]);
    assert_eq!(o.status, Status::Exited(2), "a run that did not crash is not kept: {}", o.text());
    let o = home.ctl(&["arms", "--json"]);
    assert!(o.stdout_str().contains(&format!("\"id\":\"{hello_rule}\"")), "{}", o.text());
    assert!(o.stdout_str().contains("\"remaining\":1,\"captured\":0"), "the run was given back: {}", o.text());

    // A rule for the crashing program (by path, as a crash hook arms it),
    // watched by a collector.
    let mut watch = home.warpctl();
    watch.args(["captures", "--json"]);
    let mut watcher = spawn(watch, "`warpctl captures`", &Input::Null, None, default_timeout());
    let hook_arg = crash.to_str().unwrap().replace('/', "!");
    let o = home.ctl(&["crash-hook", &hook_arg, "4321", "11"]);
    assert_eq!(o.status, Status::Exited(0), "{}", o.text());
    assert!(o.stderr_str().contains("(pid 4321 died of signal 11): capture rule "), "{}", o.text());
    // A crash loop calls the hook again and again: one rule.
    let again = home.ctl(&["crash-hook", &hook_arg]);
    assert_eq!(again.status, Status::Exited(0), "{}", again.text());
    let o = home.ctl(&["arms"]);
    assert_eq!(o.stdout_str().matches(crash.to_str().unwrap()).count(), 1, "{}", o.text());
    // Unrelated programs still run natively.
    let o = home.ctl(&["exec", "--", "/bin/echo", "plain"]);
    assert!(o.status == Status::Exited(0) && session_of(&o).is_none(), "{}", o.text());

    let o = exec(&home, &crash);
    assert_eq!(o.status, Status::Exited(139), "{}", o.text());
    assert!(o.stdout_str().contains("about to dereference NULL"), "{}", o.text());
    let captured = session_of(&o).unwrap_or_else(|| panic!("recorded: {}", o.text()));
    assert!(o.stderr_str().contains("killed by SIGSEGV"), "{}", o.text());
    watcher.wait_for_stdout(&captured);
    let seen = String::from_utf8_lossy(watcher.stdout_so_far()).into_owned();
    assert!(seen.contains("\"signal_name\":\"SIGSEGV\"") && seen.contains(crash.to_str().unwrap()), "{seen}");
    let o = home.ctl(&["show", "--json", &captured]);
    assert!(o.stdout_str().contains("\"captured_by\":\""), "{}", o.text());
    let r = home.replay(&captured, &[]);
    assert_eq!(r.outcome.status, Status::Exited(0), "the capture replays to the same crash: {}", r.warpctl_text());
    assert!(r.outcome.stdout_str().contains("about to dereference NULL"));
    // Its one run is kept: the rule is done, the next crash runs natively.
    let o = home.ctl(&["arms"]);
    assert!(!o.stdout_str().contains(crash.to_str().unwrap()), "{}", o.text());
    let o = exec(&home, &crash);
    assert!(o.status == Status::Signaled(11) && session_of(&o).is_none(), "{}", o.text());

    // Rules survive the daemon.
    home.stop_daemon();
    let o = home.ctl(&["arms", "--json"]);
    assert!(o.stdout_str().contains(&hello_rule), "{}", o.text());

    // Every run kept, twice, then the rule is gone.
    let o = home.ctl(&["disarm", &hello_rule]);
    assert_eq!(o.stdout_str().trim(), hello_rule, "{}", o.text());
    let o = home.ctl(&["arm", "--keep-all", "--runs", "2", "--for", "1h", hello.to_str().unwrap()]);
    assert_eq!(o.status, Status::Exited(0), "{}", o.text());
    for _ in 0..2 {
        let o = exec(&home, &hello);
        let id = session_of(&o).unwrap_or_else(|| panic!("recorded: {}", o.text()));
        let shown = home.ctl(&["show", &id]);
        assert!(shown.status == Status::Exited(0) && shown.stdout_str().contains("captured"), "{}", shown.text());
    }
    let o = exec(&home, &hello);
    assert!(session_of(&o).is_none(), "the rule had two runs: {}", o.text());
    assert!(!home.path().join("armed").exists(), "nothing armed: no marker");

    // Mistakes are refused.
    let o = home.ctl(&["arm", "--for", "soon", "x"]);
    assert_eq!(o.status, Status::Exited(2), "{}", o.text());
    let o = home.ctl(&["disarm", "nosuchrule"]);
    assert!(o.status == Status::Exited(2) && o.stderr_str().contains("no capture rule nosuchrule"), "{}", o.text());
    let o = home.ctl(&["crash-hook", "relative"]);
    assert_eq!(o.status, Status::Exited(2), "{}", o.text());
    drop(watcher);
}
