//! Looking at recorded sessions: `ls`, `show`, `events`, `rm`, `replay`
//! from the command line, against the contract in DESIGN.md: listings in
//! text and one JSON object per line, exit status 2 with a `warpctl: `
//! message for an unknown session, and each user seeing only their own
//! sessions.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::Command;

use warp_tests::json::{self, Value};
use warp_tests::{default_timeout, run, Input, Outcome, Spec, Status, WarpHome, FLAVOURS, WARPCTL_PREFIX};

/// `warpctl ARGS...` in `home`, run to completion (with the harness's
/// timeout and process-group cleanup).
fn ctl(home: &WarpHome, args: &[&str]) -> Outcome {
    ctl_with(home.warpctl(), args)
}

fn ctl_with(mut cmd: Command, args: &[&str]) -> Outcome {
    cmd.args(args);
    let out = run(cmd, &format!("`warpctl {}`", args.join(" ")), &Input::Null, None, default_timeout());
    assert_prefixed(&out, args);
    out
}

/// Every line warpctl writes to stderr starts with `warpctl: ` (a replay
/// also re-emits the program's stderr: its tests split that off).
fn assert_prefixed(out: &Outcome, args: &[&str]) {
    if args.first() == Some(&"replay") {
        return;
    }
    for line in out.stderr_str().lines() {
        assert!(
            line.starts_with(WARPCTL_PREFIX),
            "`warpctl {}` wrote an unprefixed stderr line: {line:?}",
            args.join(" ")
        );
    }
}

/// Asserts success and returns stdout.
fn ok(home: &WarpHome, args: &[&str]) -> String {
    let out = ctl(home, args);
    assert_eq!(
        out.status,
        Status::Exited(0),
        "`warpctl {}` failed:\n{}\n{}",
        args.join(" "),
        out.stderr_str(),
        home.daemon_log_tail()
    );
    out.stdout_str()
}

/// Asserts exit status 2 with a message on stderr and nothing on stdout.
fn refused(out: &Outcome, what: &str) -> String {
    assert_eq!(
        out.status,
        Status::Exited(2),
        "{what}: expected exit 2\nstdout: {}\nstderr: {}",
        out.stdout_str(),
        out.stderr_str()
    );
    assert!(out.stdout.is_empty(), "{what}: printed on stdout: {}", out.stdout_str());
    let err = out.stderr_str();
    assert!(!err.trim().is_empty(), "{what}: exit 2 without a message");
    err
}

/// Records `spec` and returns its session id, checking it ran as natively.
fn record(home: &WarpHome, spec: &Spec) -> String {
    let native = warp_tests::run_native(spec);
    let recorded = home.record(spec, &[]);
    home.assert_same(spec, &native, &recorded);
    recorded.session_id().unwrap()
}

fn parse_line(line: &str) -> Value {
    let v = json::parse(line).unwrap_or_else(|e| panic!("not JSON: {e}\n{line}"));
    assert!(matches!(v, Value::Object(_)), "not a JSON object: {line}");
    v
}

fn field<'a>(v: &'a Value, key: &str) -> &'a Value {
    v.get(key).unwrap_or_else(|| panic!("no {key:?} in {v:?}"))
}

#[test]
fn ls_shows_a_recorded_session_complete_with_its_exit() {
    let home = WarpHome::new("ls_text");
    let id = record(&home, &Spec::prog("exit_codes", FLAVOURS[0]).arg("3"));
    let listing = ok(&home, &["ls"]);
    let mut lines = listing.lines();
    let header = lines.next().expect("a header line");
    for column in ["ID", "STATUS", "STARTED", "DURATION", "ENDED", "EVENTS", "BYTES", "COMMAND"] {
        assert!(header.contains(column), "{column} in {header:?}");
    }
    let line = lines.find(|l| l.starts_with(&id)).unwrap_or_else(|| panic!("{id} not in ls:\n{listing}"));
    assert!(line.contains("complete"), "{line}");
    assert!(line.contains("exit 3"), "{line}");
    assert!(line.contains("exit_codes.static 3"), "the command: {line}");
    let footer = listing.lines().last().unwrap();
    assert!(footer.starts_with("1 recording (1 process), ") && footer.ends_with(" in the store"), "{footer}");
}

#[test]
fn ls_json_is_one_object_per_line() {
    let home = WarpHome::new("ls_json");
    let a = record(&home, &Spec::prog("exit_codes", FLAVOURS[0]).arg("0"));
    let b = record(&home, &Spec::prog("exit_codes", FLAVOURS[1]).arg("7"));
    let text = ok(&home, &["ls", "--json"]);
    let sessions: Vec<Value> = text.lines().map(parse_line).collect();
    let ids: Vec<&str> = sessions.iter().map(|s| field(s, "id").as_str().unwrap()).collect();
    assert_eq!(ids, [a.as_str(), b.as_str()], "oldest first");
    for (s, code) in sessions.iter().zip([0, 7]) {
        assert_eq!(field(s, "status").as_str(), Some("complete"));
        let ending = field(s, "ending");
        assert_eq!(field(ending, "exit_code").as_i64(), Some(code), "{s:?}");
        assert_eq!(field(ending, "signal").as_i64(), Some(0));
        assert!(field(s, "program").as_str().unwrap().contains("exit_codes"));
        assert!(field(s, "events").as_u64().unwrap() > 0, "{s:?}");
        assert!(field(s, "trace_bytes").as_u64().unwrap() > 0, "{s:?}");
        let (start, end) = (field(s, "start_ms").as_u64().unwrap(), field(s, "end_ms").as_u64().unwrap());
        assert!(end >= start && start > 0, "{s:?}");
        assert_eq!(field(s, "duration_ms").as_u64(), Some(end - start));
    }
}

#[test]
fn show_json_has_argv_and_the_executable_hash() {
    let home = WarpHome::new("show_json");
    let spec = Spec::prog("exit_codes", FLAVOURS[0]).arg("5");
    let id = record(&home, &spec);
    let v = parse_line(ok(&home, &["show", &id, "--json"]).trim_end());
    assert_eq!(field(&v, "id").as_str(), Some(id.as_str()));
    let argv: Vec<&str> = field(&v, "argv").as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    let program = spec.program.to_str().unwrap();
    assert_eq!(argv, [program, "5"]);
    let hash = field(&v, "exe_blake3").as_str().unwrap();
    assert!(hash.len() == 64 && hash.bytes().all(|c| c.is_ascii_hexdigit()), "blake3 hex: {hash:?}");
    let size = fs::metadata(program).unwrap().len();
    assert_eq!(field(&v, "exe_size").as_u64(), Some(size));
    assert_eq!(field(field(&v, "ending"), "exit_code").as_i64(), Some(5));
    assert!(field(&v, "env").as_array().is_some());
    assert!(field(&v, "cpuid_leaves").as_u64().is_some());
    assert!(field(&v, "syscalls").as_u64().unwrap() > 0);

    // The text form names the same things, and `latest` is this session.
    let text = ok(&home, &["show", "latest"]);
    assert!(text.contains(&id) && text.contains(hash) && text.contains("exited with 5"), "{text}");
}

#[test]
fn events_print_the_open_and_the_write() {
    let home = WarpHome::new("events");
    let file = home.scratch("events").join("input.txt");
    fs::write(&file, b"some bytes\n").unwrap();
    let path = file.to_str().unwrap();
    let id = record(&home, &Spec::prog("echo_file", FLAVOURS[0]).arg(path));

    let text = ok(&home, &["events", &id]);
    let open = format!("openat(AT_FDCWD, \"{path}\", O_RDONLY) = 3");
    let opened = text.lines().find(|l| l.contains(&open)).unwrap_or_else(|| panic!("no {open:?} in:\n{text}"));
    assert!(opened.starts_with('['), "a thread id first: {opened}");
    // What the read read, from the trace (strace's -s, 32 bytes by default).
    assert!(text.lines().any(|l| l.ends_with(r#"] read(3, "some bytes\n", 4096) = 11"#)), "{text}");
    let cut = ok(&home, &["events", &id, "-s", "4", "-e", "trace=read"]);
    assert!(cut.lines().any(|l| l.ends_with(r#"] read(3, "some"..., 4096) = 11"#)), "{cut}");
    assert!(text.lines().any(|l| l.contains("write(1, ") && l.ends_with(", 11) = 11")), "{text}");
    assert!(text.lines().last().is_some_and(|l| l.ends_with("+++ exited with 0 +++")), "{text}");

    // JSON: one object per line, the same lines.
    let json_text = ok(&home, &["events", "latest", "--json"]);
    let objects: Vec<Value> = json_text.lines().map(parse_line).collect();
    assert_eq!(objects.len(), text.lines().count());
    let open_obj = objects
        .iter()
        .find(|o| o.get("name").and_then(Value::as_str) == Some("openat"))
        .unwrap_or_else(|| panic!("no openat object in:\n{json_text}"));
    assert_eq!(field(open_obj, "kind").as_str(), Some("syscall"));
    assert_eq!(field(open_obj, "ret").as_i64(), Some(3));
    assert_eq!(field(open_obj, "nr").as_u64(), Some(257));
    assert!(field(open_obj, "text").as_str().unwrap().contains(&open));
    let seqs: Vec<u64> = objects.iter().map(|o| field(o, "seq").as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order: {seqs:?}");

    // A read too long to sit in its event (its bytes are a blob): the same.
    let long = home.scratch("events").join("long.txt");
    let bytes: Vec<u8> = (0..3000u32).map(|i| b"abcdefghij"[(i % 10) as usize]).collect();
    fs::write(&long, &bytes).unwrap();
    let id = record(&home, &Spec::prog("echo_file", FLAVOURS[0]).arg(long.to_str().unwrap()));
    let text = ok(&home, &["events", &id, "-e", "trace=read", "-s", "12"]);
    assert!(text.lines().any(|l| l.ends_with(r#"] read(3, "abcdefghijab"..., 4096) = 3000"#)), "{text}");
}

/// `events -t`, `-tt`, `-ttt` and `-T`, as strace prints them: every
/// syscall of a recording without the ring has its time of day and its
/// duration, in order; `--json` has them as numbers.
#[test]
fn events_show_when_each_call_was_made_and_how_long_it_took() {
    let home = WarpHome::new("events_times");
    let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let recorded = home.record(&Spec::prog("hello", FLAVOURS[0]), &["--no-exitless"]);
    assert_eq!(recorded.outcome.status, Status::Exited(0));
    let id = recorded.session_id().unwrap();
    // Calls that returned (exit_group's line ends `= ?`, with no duration).
    let syscalls = |text: &str| {
        text.lines().filter(|l| l.contains(") = ") && !l.contains("= ?")).map(str::to_string).collect::<Vec<_>>()
    };
    let tt = syscalls(&ok(&home, &["events", &id, "-tt", "-T"]));
    assert!(tt.len() > 3, "{tt:?}");
    let mut last = String::new();
    for line in &tt {
        let (clock, rest) = line.split_once(' ').unwrap();
        let b = clock.as_bytes();
        assert!(clock.len() == 15 && b[2] == b':' && b[5] == b':' && b[8] == b'.', "HH:MM:SS.uuuuuu: {line}");
        assert!(clock >= last.as_str() || last.starts_with("23"), "in order: {line} after {last}");
        last = clock.to_string();
        assert!(rest.starts_with('['), "{line}");
        let took =
            line.rsplit_once(" <").map(|(_, t)| t.trim_end_matches('>')).unwrap_or_else(|| panic!("no -T: {line}"));
        assert!(took.len() == 8 && took.as_bytes()[1] == b'.', "<S.uuuuuu>: {line}");
    }
    let t = syscalls(&ok(&home, &["events", &id, "-t"]));
    assert!(t.iter().all(|l| l.as_bytes()[8] == b' ' && !l.contains(" <")), "{t:?}");
    let ttt = syscalls(&ok(&home, &["events", &id, "-ttt"]));
    let first: f64 = ttt[0].split_whitespace().next().unwrap().parse().unwrap();
    assert!(first >= before as f64 && first < before as f64 + 600.0, "unix time: {}", ttt[0]);
    let json = ok(&home, &["events", &id, "--json"]);
    let v = json.lines().map(parse_line).find(|v| field(v, "kind").as_str() == Some("syscall")).unwrap();
    assert!(field(&v, "time_us").as_u64().is_some_and(|t| t > 0), "{v:?}");
    assert!(field(&v, "duration_us").as_u64().is_some(), "{v:?}");

    // With the ring: each call it served has the time the broker served
    // it, not the time warpd collected the batch it came in.
    let file = home.scratch("events_times").join("ring");
    let id = record(&home, &Spec::prog("ring_calls", FLAVOURS[0]).arg(file.to_str().unwrap()));
    let json = ok(&home, &["events", &id, "--json"]);
    let calls: Vec<(bool, u64)> = json
        .lines()
        .map(parse_line)
        .filter(|v| field(v, "kind").as_str() == Some("syscall"))
        .filter_map(|v| Some((field(&v, "exitless").as_bool()?, field(&v, "time_us").as_u64()?)))
        .collect();
    assert!(calls.windows(2).all(|w| w[0].1 <= w[1].1), "in order");
    let together: Vec<_> = calls.windows(2).filter(|w| w[0].0 && w[1].0).collect();
    if together.is_empty() {
        eprintln!("no two ring calls in a row here (the ring took none, or every one alone): times not compared");
    } else {
        assert!(together.iter().any(|w| w[0].1 < w[1].1), "ring calls of one batch have their own times");
    }
}

/// `events -e trace=SET`, `-c` and `-o`, as strace's: the calls of
/// ring_calls the program itself makes are counted exactly, with their
/// errors; a class selects its calls; a bad expression is refused.
#[test]
fn events_filter_and_summarise_as_strace_does() {
    let home = WarpHome::new("events_filter");
    let file = home.scratch("events_filter").join("ring");
    let id = record(&home, &Spec::prog("ring_calls", FLAVOURS[0]).arg(file.to_str().unwrap()));

    // 500 fstat calls and 3 failing ones; 2001 readings of the clock,
    // four more, two of them failing (ring_calls.c).
    let summary = ok(&home, &["events", &id, "-e", "trace=fstat,clock_gettime", "-c"]);
    // Columns: seconds (of the calls the trace has durations for), calls,
    // errors, name.
    let row =
        |name: &str| summary.lines().find(|l| l.ends_with(&format!(" {name}"))).map(|l| l.split_whitespace().skip(1));
    let fstat: Vec<&str> = row("fstat").unwrap_or_else(|| panic!("{summary}")).collect();
    assert_eq!(fstat, ["503", "3", "fstat"], "{summary}");
    let clock: Vec<&str> = row("clock_gettime").unwrap_or_else(|| panic!("{summary}")).collect();
    assert_eq!(clock, ["2005", "2", "clock_gettime"], "{summary}");
    assert!(
        summary.lines().last().is_some_and(|l| l.split_whitespace().skip(1).eq(["2508", "5", "total"])),
        "{summary}"
    );
    assert!(summary.lines().next().is_some_and(|l| l.split_whitespace().eq(["seconds", "calls", "errors", "syscall"])));
    assert!(row("read").is_none(), "only the selected calls: {summary}");

    // The lines themselves, to a file; a class; all but a set.
    let out = home.scratch("events_filter").join("events.txt");
    ok(&home, &["events", &id, "-e", "trace=%clock", "-o", out.to_str().unwrap()]);
    let text = fs::read_to_string(&out).unwrap();
    let calls: Vec<&str> = text.lines().filter(|l| l.contains(") = ")).collect();
    assert_eq!(calls.len(), 2005, "{}", &text[..text.len().min(2000)]);
    assert!(calls.iter().all(|l| l.contains("] clock_gettime(")), "{}", &text[..text.len().min(2000)]);
    assert!(text.lines().last().is_some_and(|l| l.ends_with("+++ exited with 0 +++")), "other events still");
    let json_summary = ok(&home, &["events", &id, "-e", "trace=!read,write,clock_gettime", "-c", "--json"]);
    let names: Vec<String> =
        json_summary.lines().map(|l| field(&parse_line(l), "syscall").as_str().unwrap().to_string()).collect();
    assert!(
        names.contains(&"fstat".to_string()) && !names.iter().any(|n| n == "read" || n == "clock_gettime"),
        "{names:?}"
    );

    for bad in ["trace=nosuchcall", "trace=%bogus", "signal=SIGSEGV"] {
        let refused = ctl(&home, &["events", &id, "-e", bad]);
        assert_eq!(refused.status, Status::Exited(2), "-e {bad}: {}", refused.stderr_str());
        assert!(refused.stderr_str().contains("-e"), "{}", refused.stderr_str());
    }
}

#[test]
fn events_follow_a_running_recording_to_its_end() {
    let home = WarpHome::new("follow");
    let spec = Spec::prog("sleep_forever", FLAVOURS[0]).arg("read").stdin(Input::Held);
    let id_file = home.path().join("id");
    let mut recording = home.spawn_record(&spec, &["--id-file", id_file.to_str().unwrap()]);
    recording.wait_for_stdout("ready\n");
    let id = fs::read_to_string(&id_file).unwrap().trim().to_string();

    let mut follow = home.warpctl();
    follow.args(["events", &id, "--follow"]);
    let follower = warp_tests::spawn(follow, "`warpctl events --follow`", &Input::Null, None, default_timeout());
    std::thread::sleep(std::time::Duration::from_millis(300));
    recording.close_stdin();
    let recorded = warp_tests::Recorded::new(recording.finish());
    assert_eq!(recorded.outcome.status, Status::Exited(0), "{}", recorded.warpctl_text());

    // The follower ends by itself once the recording has ended.
    let followed = follower.finish();
    assert_prefixed(&followed, &["events", "--follow"]);
    assert_eq!(followed.status, Status::Exited(0), "{}", followed.stderr_str());
    let text = followed.stdout_str();
    assert!(text.lines().any(|l| l.contains("read(0, ") && l.ends_with(" = 0")), "the read that ended:\n{text}");
    assert!(text.lines().last().is_some_and(|l| l.ends_with("+++ exited with 0 +++")), "{text}");
    assert_eq!(text, ok(&home, &["events", &id]), "following shows what a later listing shows");
}

/// `gc` on a store with nothing to reclaim reclaims nothing and keeps the
/// sessions replayable; `--json` says the same as one object.
#[test]
fn gc_keeps_what_sessions_use() {
    let home = WarpHome::new("gc");
    let id = record(&home, &Spec::prog("hello", FLAVOURS[0]));
    let text = ok(&home, &["gc"]);
    assert!(text.starts_with("no recording is past the retention limits\n"), "{text}");
    assert!(text.contains("\nremoved 0 blobs no session used (0B), fixed 0 use counts"), "{text}");
    assert!(text.contains("store: ") && text.contains(" before, "), "{text}");
    let json = parse_line(ok(&home, &["gc", "--json"]).trim());
    assert_eq!(field(&json, "blobs").as_u64(), Some(0));
    assert!(field(&json, "bytes_after").as_u64().is_some_and(|b| b > 0), "{json:?}");
    let replayed = home.replay(&id, &[]);
    assert_eq!(replayed.outcome.status, Status::Exited(0), "{}", replayed.warpctl_text());
}

#[test]
fn rm_removes_a_session() {
    let home = WarpHome::new("rm");
    let keep = record(&home, &Spec::prog("hello", FLAVOURS[0]));
    let gone = record(&home, &Spec::prog("hello", FLAVOURS[1]));
    let out = ctl(&home, &["rm", &gone]);
    assert_eq!(out.status, Status::Exited(0), "{}", out.stderr_str());
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "rm prints nothing: {out:?}");

    let err = refused(&ctl(&home, &["show", &gone]), "show after rm");
    assert!(err.contains(&gone), "names the session: {err}");
    let listing = ok(&home, &["ls"]);
    assert!(!listing.contains(&gone) && listing.contains(&keep), "{listing}");
    // What stays still replays.
    assert_eq!(ctl(&home, &["replay", &keep, "--quiet"]).status, Status::Exited(0));
    refused(&ctl(&home, &["rm", &gone]), "rm twice");
}

#[test]
fn unknown_ids_exit_2_with_a_message() {
    let home = WarpHome::new("unknown");
    for args in [
        &["show", "nosuch00"][..],
        &["events", "nosuch00"],
        &["rm", "nosuch00"],
        &["replay", "nosuch00"],
        &["show", "latest"],
        &["replay"],
    ] {
        let out = ctl(&home, args);
        let err = refused(&out, &args.join(" "));
        assert!(err.starts_with("warpctl: "), "{err}");
        if args.contains(&"nosuch00") {
            assert!(err.contains("no session nosuch00"), "{args:?}: {err}");
        }
    }
    // Usage errors are 2 as well, and prefixed too.
    refused(&ctl(&home, &["show"]), "show without an id");
}

#[test]
fn replay_latest_reemits_the_output_and_quiet_does_not() {
    let home = WarpHome::new("replay_latest");
    let spec = Spec::prog("stderr_out", FLAVOURS[0]);
    let native = warp_tests::run_native(&spec);
    let recorded = home.record(&spec, &[]);
    home.assert_same(&spec, &native, &recorded);

    let replayed = ctl(&home, &["replay"]);
    assert_eq!(replayed.status, Status::Exited(0), "{}", replayed.stderr_str());
    assert_eq!(replayed.stdout, recorded.outcome.stdout);
    let (program_stderr, own) = warp_tests::split_stderr(&replayed.stderr);
    assert_eq!(program_stderr, recorded.program_stderr);
    assert!(own.iter().all(|l| !l.contains("diverged")), "{own:?}");

    let quiet = ctl(&home, &["replay", "latest", "--quiet"]);
    assert_eq!(quiet.status, Status::Exited(0), "{}", quiet.stderr_str());
    assert!(quiet.stdout.is_empty(), "--quiet printed: {}", quiet.stdout_str());
    assert!(warp_tests::split_stderr(&quiet.stderr).0.is_empty(), "--quiet printed on stderr");
}

/// The uid the cross-user test runs warpctl as: one no account on a test
/// machine is expected to have.
const OTHER_UID: u32 = 4242;

/// A second user cannot see, read, replay or remove the first user's
/// sessions; to them those ids do not exist.
///
/// How: the test runs as root. Root's daemon for this `WARP_HOME` records a
/// session; then its gRPC socket, which an embedded daemon keeps to its
/// owner (0600), is opened to everyone (0666, as the system daemon's is),
/// and warpctl runs as uid 4242 with the same `WARP_HOME`. It reaches root's
/// daemon, which identifies it by SO_PEERCRED, exactly as the system daemon
/// identifies each local user. Not root: the test cannot switch users and
/// says so.
#[test]
fn another_user_cannot_see_or_replay_the_sessions() {
    if unsafe_getuid() != 0 {
        eprintln!(
            "another_user_cannot_see_or_replay_the_sessions: skipped (needs root to run warpctl as uid {OTHER_UID})"
        );
        return;
    }
    let warpctl = warp_tests::warpctl();
    if let Some(dir) = closed_to_others(&warpctl) {
        eprintln!(
            "another_user_cannot_see_or_replay_the_sessions: skipped ({} is not reachable by other users, so uid {OTHER_UID} cannot run warpctl)",
            dir.display()
        );
        return;
    }
    let home = WarpHome::new("two_users");
    let id = record(&home, &Spec::prog("hello", FLAVOURS[0]));

    let other = open_to_other(&home);

    // The other user reaches the same daemon...
    let status = ctl_with(other(), &["daemon", "status"]);
    assert_eq!(status.status, Status::Exited(0), "uid {OTHER_UID} cannot reach the daemon: {}", status.stderr_str());
    // ...and sees none of root's sessions.
    let listing = ctl_with(other(), &["ls", "--json"]);
    assert_eq!(listing.status, Status::Exited(0), "{}", listing.stderr_str());
    assert!(listing.stdout.is_empty(), "uid {OTHER_UID} sees: {}", listing.stdout_str());
    let listing = ctl_with(other(), &["ls"]);
    assert!(!listing.stdout_str().contains(&id), "{}", listing.stdout_str());

    for args in [
        &["show", id.as_str()][..],
        &["events", &id],
        &["replay", &id],
        &["rm", &id],
        &["show", "latest"],
        &["replay", "latest"],
    ] {
        let err = refused(&ctl_with(other(), args), &format!("uid {OTHER_UID}: {}", args.join(" ")));
        if args.contains(&id.as_str()) {
            assert!(err.contains(&format!("no session {id}")), "answered as unknown: {err}");
        }
    }

    // Root still has it (the rm above did nothing) and sees it.
    assert!(ok(&home, &["ls"]).contains(&id));
    assert_eq!(ctl(&home, &["replay", &id, "--quiet"]).status, Status::Exited(0));
}

/// One user's idle connections are bounded (`WARP_MAX_CONNECTIONS`): past
/// the bound their new ones are closed, other users' calls go on, and the
/// slots come back when the connections close. Root is not limited, so the
/// bounded user is uid 4242 on root's daemon, as above.
#[test]
fn a_users_idle_connections_are_bounded() {
    if unsafe_getuid() != 0 {
        eprintln!("a_users_idle_connections_are_bounded: skipped (needs root to run as uid {OTHER_UID})");
        return;
    }
    let warpctl = warp_tests::warpctl();
    if let Some(dir) =
        closed_to_others(&warpctl).or_else(|| closed_to_others(&warp_tests::prog("hold_conns", FLAVOURS[0])))
    {
        eprintln!(
            "a_users_idle_connections_are_bounded: skipped ({} is not reachable by uid {OTHER_UID})",
            dir.display()
        );
        return;
    }
    let home = WarpHome::new("conn_limit").with_env("WARP_MAX_CONNECTIONS", "3");
    record(&home, &Spec::prog("hello", FLAVOURS[0]));
    let socket = home.path().join("warpd.sock");
    let other = open_to_other(&home);
    assert_eq!(ctl_with(other(), &["daemon", "status"]).status, Status::Exited(0), "before: uid {OTHER_UID} is served");

    // Three idle connections of uid 4242's: its fourth is closed.
    /// Killed however the test ends (its output pipe would keep the harness waiting).
    struct Holder(std::process::Child);
    impl Drop for Holder {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut holder = Holder(
        Command::new(warp_tests::prog("hold_conns", FLAVOURS[0]))
            .arg(&socket)
            .arg("3")
            .uid(OTHER_UID)
            .gid(OTHER_UID)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(holder.0.stdout.take().unwrap()), &mut line).unwrap();
    assert_eq!(line, "held 3\n");
    let refused = ctl_with(other(), &["daemon", "status"]);
    assert_ne!(
        refused.status,
        Status::Exited(0),
        "uid {OTHER_UID}'s fourth connection is closed: {}",
        refused.stdout_str()
    );
    // Root, another user, is served meanwhile.
    assert!(ok(&home, &["ls"]).lines().count() >= 2);

    // Its connections closed, its slots come back.
    drop(holder);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let mut cmd = other();
        cmd.args(["daemon", "status"]);
        let status = run(cmd, "daemon status", &Input::Null, None, default_timeout());
        if status.status == Status::Exited(0) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "uid {OTHER_UID} is not served again: {}", status.stderr_str());
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// Opens root's daemon of `home` to uid 4242 (its socket 0666, its
/// directory searchable, as a system daemon's); returns how to run warpctl
/// as that user.
fn open_to_other(home: &WarpHome) -> impl Fn() -> Command + '_ {
    fs::set_permissions(home.path().join("warpd.sock"), fs::Permissions::from_mode(0o666)).unwrap();
    fs::set_permissions(home.path(), fs::Permissions::from_mode(0o755)).unwrap();
    move || {
        let mut cmd = home.warpctl();
        cmd.uid(OTHER_UID).gid(OTHER_UID).env("HOME", "/nonexistent").current_dir("/");
        cmd
    }
}

/// The first of `path` and its directories that other users cannot
/// execute or search, if any.
fn closed_to_others(path: &std::path::Path) -> Option<std::path::PathBuf> {
    path.ancestors()
        .find(|p| fs::metadata(p).map(|m| m.permissions().mode() & 0o001 == 0).unwrap_or(true))
        .map(std::path::Path::to_path_buf)
}

fn unsafe_getuid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// Every line of `events --json` fits the schema `warpctl schema events`
/// prints (the file in warpctl/schema/), for a plain program, one that
/// crashes and one whose calls ride the exitless ring; the decoded
/// arguments and result are what the text shows; a fault and the end
/// carry their signal, rip and address as fields. `-c --json` fits the
/// summary's schema.
#[test]
fn events_json_fits_its_schema_and_decodes_what_the_text_shows() {
    let home = WarpHome::new("events_schema");
    let schema_of = |name: &str| {
        let printed = ok(&home, &["schema", name]);
        let file =
            fs::read_to_string(format!("{}/../warpctl/schema/{name}.schema.json", env!("CARGO_MANIFEST_DIR"))).unwrap();
        assert_eq!(printed, file, "warpctl schema {name} prints the repository's file");
        json::parse(&printed).unwrap_or_else(|e| panic!("the {name} schema is not JSON: {e}"))
    };
    let (events, summary, session) = (schema_of("events"), schema_of("summary"), schema_of("session"));
    let ids = [
        record(&home, &Spec::new("/bin/cat").arg("/etc/hostname")),
        record(&home, &Spec::prog("null_deref", FLAVOURS[0])),
        record(&home, &Spec::prog("ring_calls", FLAVOURS[0]).arg(home.scratch("ring").join("f"))),
    ];
    let mut seen = std::collections::BTreeSet::new();
    for id in &ids {
        for line in ok(&home, &["events", "--json", "-s", "64", id]).lines() {
            let v = parse_line(line);
            warp_tests::schema::check(&events, &v).unwrap_or_else(|e| panic!("{e}\n{line}"));
            let kind = field(&v, "kind").as_str().unwrap().to_string();
            let text = field(&v, "text").as_str().unwrap();
            if kind == "syscall" {
                let decoded = field(&v, "decoded");
                let name = field(&v, "name").as_str().unwrap();
                if let Some(args) = field(decoded, "args").as_array() {
                    let args: Vec<&str> = args.iter().map(|a| a.as_str().unwrap()).collect();
                    assert!(text.contains(&format!("{name}({})", args.join(", "))), "{line}");
                }
                if let Some(ret) = field(decoded, "ret").as_str() {
                    assert!(text.ends_with(&format!(" = {ret}")), "{line}");
                }
                if field(&v, "exitless") == &Value::Bool(true) {
                    seen.insert("exitless".to_string());
                }
            }
            if kind == "fault" {
                assert_eq!(field(&v, "signal").as_str(), Some("SIGSEGV"), "{line}");
                assert_eq!(field(&v, "signo").as_u64(), Some(11), "{line}");
                assert_eq!(field(&v, "vector").as_u64(), Some(14), "{line}");
                assert_eq!(field(&v, "address").as_u64(), Some(0), "a NULL write: {line}");
                assert!(text.contains(&format!("{:#x}", field(&v, "rip").as_u64().unwrap())), "{line}");
            }
            if kind == "end" {
                let signal = field(&v, "signal").as_str().map(str::to_string);
                seen.insert(format!("end {:?} {:?}", signal, field(&v, "exit_code").as_i64()));
            }
            seen.insert(kind);
        }
        for line in ok(&home, &["events", "-c", "--json", id]).lines() {
            warp_tests::schema::check(&summary, &parse_line(line)).unwrap_or_else(|e| panic!("{e}\n{line}"));
        }
    }
    for want in ["syscall", "fault", "end", "load", "exitless", "end None Some(0)", "end Some(\"SIGSEGV\") None"] {
        assert!(seen.contains(want), "{want} among the lines seen: {seen:?}");
    }
    // ls and ps: one session a line, the crash's with its site.
    let mut sites = 0;
    let listed = ok(&home, &["ls", "--json"]);
    assert_eq!(listed.lines().count(), ids.len(), "{listed}");
    for id in &ids {
        for line in listed.lines().chain(ok(&home, &["ps", "--json", id]).lines().collect::<Vec<_>>()) {
            let v = parse_line(line);
            warp_tests::schema::check(&session, &v).unwrap_or_else(|e| panic!("{e}\n{line}"));
            sites += usize::from(matches!(field(field(&v, "ending"), "crash_site"), Value::Object(_)));
        }
    }
    assert_eq!(sites, ids.len() + 1, "the crash's site, in ls (three times over) and ps");
}

/// `--color`: `always` paints a failed call's result red and names bold,
/// and stripped of its escapes is the plain text; `never` and a pipe
/// (auto) paint nothing; on a terminal (script(1) gives one) auto paints,
/// unless NO_COLOR is set.
#[test]
fn events_are_coloured_on_a_terminal_or_when_asked() {
    let home = WarpHome::new("events_colour");
    let spec = Spec::new("/bin/cat").arg("/nonexistent/warp");
    let recorded = home.record(&spec, &[]);
    assert_eq!(recorded.outcome.status, Status::Exited(1), "{}", recorded.warpctl_text());
    let id = recorded.session_id().unwrap();
    let plain = ok(&home, &["events", &id]);
    assert!(!plain.contains('\x1b'), "a pipe gets no colour:\n{plain}");
    assert_eq!(ok(&home, &["events", "--color", "never", &id]), plain);
    let painted = ok(&home, &["events", "--color=always", &id]);
    let failed = painted.lines().find(|l| l.contains("/nonexistent/warp")).expect("the open of the missing file");
    assert!(failed.contains("\x1b[1mopenat\x1b[0m"), "{failed:?}");
    assert!(failed.contains("\x1b[31m-1 ENOENT (No such file or directory)\x1b[0m"), "{failed:?}");
    let strip = |s: &str| {
        let mut out = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                for c in chars.by_ref() {
                    if c == 'm' {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    };
    assert_eq!(strip(&painted), plain, "the same text under the colour");
    // ls and ps: the status column (complete green), the same table under it.
    for view in [vec!["ls"], vec!["ps", id.as_str()]] {
        let plain = ok(&home, &view);
        assert!(!plain.contains('\x1b'), "{plain}");
        let painted = ok(&home, &[&["--color", "always"][..], &view].concat());
        assert!(painted.contains("\x1b[32mcomplete\x1b[0m  "), "{painted:?}");
        assert_eq!(strip(&painted), plain, "{view:?}: the same table under the colour");
    }
    // warpctl's own error lines: red, after the prefix.
    let refused = home.warpctl().args(["--color", "always", "show", "nosuchid"]).output().unwrap();
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && err.starts_with("warpctl: \x1b[31m"), "{err:?}");
    let refused = home.warpctl().args(["show", "nosuchid"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&refused.stderr).contains('\x1b'), "a pipe gets no colour");
    // On a terminal: script(1) runs warpctl on a pseudo-terminal.
    if home.on_terminal("--version", &[]).is_some() {
        let on_tty = |no_color: Option<&str>| {
            let (status, shown) = home.on_terminal(&format!("events {id}"), &[("NO_COLOR", no_color)]).unwrap();
            assert!(status.success(), "{shown}");
            shown
        };
        assert!(on_tty(None).contains("\x1b[31m-1 ENOENT"), "auto on a terminal paints");
        assert!(!on_tty(Some("1")).contains('\x1b'), "NO_COLOR=1 on a terminal: none");
        assert!(on_tty(Some("")).contains("\x1b[31m"), "an empty NO_COLOR does not count");
    } else {
        eprintln!("not checking auto on a terminal: script(1) (util-linux) is not installed");
    }
}
