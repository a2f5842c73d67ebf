//! A part dying mid-recording: the broker, warpd, or warpctl itself. The
//! guest must stop, warpctl (if alive) must exit 125 naming the part that
//! failed, nothing may be left running, and the daemon must say the session
//! is incomplete.

use std::fs;
use std::time::{Duration, Instant};

use warp_tests::{live_processes_in_group, Flavour, Input, Spec, Status, WarpHome, FLAVOURS};

/// Pids of processes whose command line starts with a program named `name`
/// and whose environment has `WARP_HOME=home`.
fn pids_of(name: &str, home: &WarpHome) -> Vec<i32> {
    let want = format!("WARP_HOME={}", home.path().display());
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else { continue };
        let argv0 = cmdline.split(|&b| b == 0).next().unwrap_or_default();
        if !String::from_utf8_lossy(argv0).ends_with(name) {
            continue;
        }
        let Ok(environ) = fs::read(entry.path().join("environ")) else { continue };
        if environ.split(|&b| b == 0).any(|v| v == want.as_bytes()) {
            found.push(pid);
        }
    }
    found
}

fn broker_pid(pgid: i32) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let procs = live_processes_in_group(pgid);
        if let Some(p) = procs.iter().find(|p| p.contains("(warp-broker)")) {
            return p.split(' ').next().unwrap().parse().unwrap();
        }
        assert!(Instant::now() < deadline, "no broker in process group {pgid}: {procs:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn kill(pid: i32, sig: i32) {
    // SAFETY: kill has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "kill {pid}: {}", std::io::Error::last_os_error());
}

/// SIGKILLs this home's one daemon.
fn kill_warpd(home: &WarpHome) {
    let daemons = pids_of("warpd", home);
    assert_eq!(daemons.len(), 1, "one daemon for this home: {daemons:?}");
    kill(daemons[0], libc::SIGKILL);
}

fn blocked_program(flavour: warp_tests::Flavour) -> Spec {
    Spec::prog("sleep_forever", flavour).arg("read").stdin(Input::Held)
}

/// `warpctl ls` in this home, as text.
fn ls(home: &WarpHome) -> String {
    let out = home.warpctl().arg("ls").output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Records a complete session first, so each test can check that a crash
/// later leaves it intact and replayable.
fn earlier_session(home: &WarpHome) -> (Spec, warp_tests::Recorded) {
    let spec = Spec::prog("hello", FLAVOURS[0]);
    let rec = home.record(&spec, &[]);
    assert_eq!(rec.outcome.status, Status::Exited(0), "{}", rec.warpctl_text());
    (spec, rec)
}

#[test]
fn broker_killed_mid_run_is_125_and_incomplete() {
    let home = WarpHome::new("kill_broker");
    let (spec, earlier) = earlier_session(&home);
    let mut incomplete = Vec::new();
    for flavour in FLAVOURS {
        let mut r = home.spawn_record(&blocked_program(flavour), &[]);
        r.wait_for_stdout("ready\n");
        kill(broker_pid(r.pgid()), libc::SIGKILL);
        let out = warp_tests::Recorded::new(r.finish());
        let id = assert_broker_loss(&home, &out);
        let replayed = home.replay(&id, &[]);
        assert_eq!(replayed.outcome.status, Status::Exited(2), "an incomplete session does not replay");
        incomplete.push(id);
    }
    // `rm --all-incomplete` takes those, names them, and leaves the complete one.
    let out = home.warpctl().args(["rm", "--all-incomplete"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut removed: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
    removed.sort();
    incomplete.sort();
    assert_eq!(removed, incomplete);
    let listing = ls(&home);
    assert!(!listing.contains("incomplete") && listing.contains(&earlier.session_id().unwrap()), "{listing}");
    home.assert_replays(&spec, &earlier);
}

/// The broker dies while its ring poller serves a program that does
/// nothing but ring calls: the program ends with 125, the session is
/// incomplete, the earlier one intact.
#[test]
fn broker_killed_while_its_ring_serves_is_125_and_incomplete() {
    let home = WarpHome::new("kill_ring_broker");
    let (spec, earlier) = earlier_session(&home);
    let mut r = home.spawn_record(&Spec::prog("ring_calls", FLAVOURS[0]).arg("loop"), &[]);
    r.wait_for_stdout("ready\n");
    std::thread::sleep(Duration::from_millis(100));
    kill(broker_pid(r.pgid()), libc::SIGKILL);
    let out = warp_tests::Recorded::new(r.finish());
    assert_broker_loss(&home, &out);
    home.assert_replays(&spec, &earlier);
}

/// A recording whose broker was killed: 125, a message naming the broker,
/// the session listed incomplete; its id.
fn assert_broker_loss(home: &WarpHome, out: &warp_tests::Recorded) -> String {
    assert_eq!(out.outcome.status, Status::Exited(125), "{}", out.warpctl_text());
    assert!(out.warpctl_text().contains("broker"), "the message names the broker:\n{}", out.warpctl_text());
    let id = out.session_id().unwrap();
    let listing = ls(home);
    let line = listing.lines().find(|l| l.contains(&id)).unwrap_or_else(|| panic!("{id} not in ls:\n{listing}"));
    assert!(line.contains("incomplete"), "{line}");
    id
}

#[test]
fn warpd_killed_mid_run_is_125_and_the_store_survives() {
    let home = WarpHome::new("kill_warpd");
    let (spec, earlier) = earlier_session(&home);
    for flavour in FLAVOURS {
        let mut r = home.spawn_record(&blocked_program(flavour), &[]);
        r.wait_for_stdout("ready\n");
        kill_warpd(&home);
        // finish() also checks that the broker went away with the daemon.
        let out = warp_tests::Recorded::new(r.finish());
        assert_eq!(out.outcome.status, Status::Exited(125), "{}", out.warpctl_text());
        assert!(out.warpctl_text().contains("warpd"), "the message names warpd:\n{}", out.warpctl_text());
        // A new daemon reopens the store: the interrupted session is
        // incomplete, the earlier one intact.
        let id = out.session_id().unwrap();
        let listing = ls(&home);
        let line = listing.lines().find(|l| l.contains(&id)).unwrap_or_else(|| panic!("{id} not in ls:\n{listing}"));
        assert!(line.contains("incomplete"), "{line}");
    }
    home.assert_replays(&spec, &earlier);
}

/// The same with a process tree: every process's broker goes with warpd,
/// and each process's session is incomplete, none lost or corrupt.
#[test]
fn warpd_killed_while_a_tree_records_marks_every_process_incomplete() {
    let home = WarpHome::new("kill_warpd_tree");
    let prog = warp_tests::prog("sleep_forever", Flavour::Static);
    let spec = Spec::new("/bin/sh").args(["-c", &format!("{} read | cat", prog.display())]).stdin(Input::Held);
    let mut r = home.spawn_record(&spec, &[]);
    r.wait_for_stdout("ready\n");
    kill_warpd(&home);
    // finish() also checks that no broker of the tree is left running.
    let out = warp_tests::Recorded::new(r.finish());
    assert_eq!(out.outcome.status, Status::Exited(125), "{}", out.warpctl_text());
    let id = out.session_id().unwrap();
    let ps = home.warpctl().args(["ps", &id]).output().unwrap();
    let text = String::from_utf8_lossy(&ps.stdout).into_owned();
    let rows: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(rows.len(), 3, "the shell and both sides of its pipe:\n{text}");
    assert!(rows.iter().all(|l| l.contains("incomplete")), "{text}");
}

#[test]
fn warpctl_killed_mid_run_takes_the_broker_and_marks_the_session_incomplete() {
    let home = WarpHome::new("kill_warpctl");
    let (spec, earlier) = earlier_session(&home);
    let mut r = home.spawn_record(&blocked_program(FLAVOURS[0]), &[]);
    r.wait_for_stdout("ready\n");
    let pgid = r.pgid();
    broker_pid(pgid);
    kill(pgid, libc::SIGKILL); // warpctl leads its process group
    let out = warp_tests::Recorded::new(r.finish());
    assert_eq!(out.outcome.status, Status::Signaled(libc::SIGKILL));
    let id = out.session_id().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let listing = ls(&home);
        if listing.lines().any(|l| l.contains(&id) && l.contains("incomplete")) {
            break;
        }
        assert!(Instant::now() < deadline, "{id} never became incomplete:\n{listing}");
        std::thread::sleep(Duration::from_millis(50));
    }
    home.assert_replays(&spec, &earlier);
}

/// The session's token reaches the broker through a pipe, not its command
/// line, which every user on the machine can read in /proc.
#[test]
fn the_brokers_command_line_holds_no_token() {
    let home = WarpHome::new("token");
    let mut running = home.spawn_record(&blocked_program(FLAVOURS[0]), &[]);
    let pid = broker_pid(running.pgid());
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let args: Vec<String> = cmdline.split(|&b| b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
    running.close_stdin();
    let outcome = running.finish();
    assert_eq!(outcome.status, Status::Exited(0));
    assert!(args.iter().any(|a| a == "--token-fd"), "{args:?}");
    assert!(!args.iter().any(|a| a == "--token"), "{args:?}");
    // The socket path, the flag, a descriptor number: nothing else.
    assert_eq!(args.iter().filter(|a| !a.is_empty()).count(), 5, "{args:?}");
}

/// After warpd is killed (SIGKILL), the very next warpctl call starts a
/// fresh daemon and works, even while the dead one's socket still resets
/// connections; every session recorded before is there. Twenty times.
#[test]
fn the_first_call_after_warpd_is_killed_works() {
    let home = WarpHome::new("restart");
    let spec = Spec::prog("hello", FLAVOURS[0]);
    for round in 1..=20 {
        let rec = home.record(&spec, &[]);
        assert_eq!(rec.outcome.status, Status::Exited(0), "round {round}: {}", rec.warpctl_text());
        for pid in pids_of("warpd", &home) {
            kill(pid, libc::SIGKILL);
        }
        let out = home.warpctl().arg("ls").output().unwrap();
        assert!(out.status.success(), "round {round}: {}", String::from_utf8_lossy(&out.stderr));
        let listed = String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.contains("complete")).count();
        assert_eq!(listed, round, "round {round}: every earlier session is listed");
    }
}

/// warpd raises its descriptor limit to the hard one, so that one user's
/// many connections do not run it out of descriptors at 1024.
#[test]
fn warpd_runs_with_its_hard_descriptor_limit() {
    use std::os::unix::process::CommandExt;
    let home = WarpHome::new("nofile");
    // Started by a warpctl whose soft limit is low, as a login shell's is.
    let mut ls = home.warpctl();
    ls.arg("ls");
    // SAFETY: between fork and exec, getrlimit/setrlimit on a local struct.
    unsafe {
        ls.pre_exec(|| {
            let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
            lim.rlim_cur = 256.min(lim.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            Ok(())
        });
    }
    let out = ls.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let pid = *pids_of("warpd", &home).first().expect("the daemon runs");
    let limits = fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).expect("a descriptor limit");
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields[3], fields[4], "soft = hard: {line}");
}

/// A program a signal kills: warpctl says which and where, symbolised
/// from the recorded executable (function and line with -g, a library and
/// offset inside libc), under record and again under replay; `show` says
/// it too, and `show --json` gives it as fields.
#[test]
fn a_crash_is_explained_with_its_function_and_line() {
    let home = WarpHome::new("crash_line");
    for flavour in FLAVOURS {
        let spec = Spec::prog("debugme", flavour).arg("crash");
        let recorded = home.record(&spec, &[]);
        assert_eq!(recorded.outcome.status, Status::Exited(139), "{}", recorded.warpctl_text());
        let want = "warpctl: program killed by SIGSEGV (address 0x0) at crash (debugme.c:29)";
        assert_eq!(warp_tests::crash_lines(&recorded.warpctl_lines), [want], "{:?}", flavour);
        let id = recorded.session_id().unwrap();
        let replayed = home.replay(&id, &[]);
        assert_eq!(replayed.outcome.status, Status::Exited(0));
        assert_eq!(warp_tests::crash_lines(&replayed.warpctl_lines), [want], "replay, {:?}", flavour);
        let show = home.warpctl().args(["show", &id]).output().unwrap();
        let show = String::from_utf8_lossy(&show.stdout);
        assert!(show.contains("killed by SIGSEGV (address 0x0) at crash (debugme.c:29)"), "{show}");
        let json = home.warpctl().args(["show", "--json", &id]).output().unwrap();
        let meta = warp_tests::json::parse(String::from_utf8_lossy(&json.stdout).trim()).unwrap();
        let ending = meta.get("ending").unwrap();
        let site = ending.get("crash_site").unwrap();
        let text = |v: &warp_tests::json::Value, k: &str| v.get(k).and_then(|v| v.as_str()).map(str::to_string);
        assert_eq!(text(ending, "signal_name").as_deref(), Some("SIGSEGV"), "{ending:?}");
        assert_eq!(text(site, "function").as_deref(), Some("crash"), "{site:?}");
        assert_eq!(text(site, "file").as_deref(), Some("debugme.c"), "{site:?}");
        assert_eq!(site.get("line").and_then(|v| v.as_u64()), Some(29), "{site:?}");
        assert_eq!(site.get("address").and_then(|v| v.as_u64()), Some(0), "{site:?}");
        assert!(text(site, "module").is_some_and(|m| m.starts_with("debugme")), "{site:?}");
        assert!(site.get("rip").and_then(|v| v.as_u64()).is_some_and(|r| r > 0), "{site:?}");
    }
    // A signal sent, not a fault: where the program was when it came, in
    // the C library (stripped: its function and line only where its debug
    // file is installed, as libc6-dbg does, else the offset).
    let recorded = home.record(&Spec::prog("abort", Flavour::Dynamic), &[]);
    let lines = warp_tests::crash_lines(&recorded.warpctl_lines);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let id = recorded.session_id().unwrap();
    let site = crash_site(&home, &id);
    assert_eq!(site.get("module").and_then(|v| v.as_str()), Some("libc.so.6"), "{site:?}");
    assert!(site.get("address").is_some_and(|a| a.is_null()), "a signal sent has no fault address: {site:?}");
    let offset = site.get("offset").and_then(|v| v.as_u64()).unwrap();
    let function = site.get("function").and_then(|v| v.as_str());
    let libc = recorded_library(&home, &id, "libc.so.6");
    if let Some(debug) = libc.as_deref().and_then(debug_file_of) {
        eprintln!("the C library's debug file is {}: its function and line are named", debug.display());
        let (function, file) = (function.unwrap_or_default(), site.get("file").and_then(|v| v.as_str()));
        assert!(!function.is_empty() && file.is_some(), "{site:?}");
        let want = format!("warpctl: program killed by SIGABRT at {function} ({}:", file.unwrap());
        assert!(lines[0].starts_with(&want) && lines[0].ends_with(" in libc.so.6"), "{lines:?} {site:?}");
    } else {
        eprintln!("no debug file for the C library here: its offset is named");
        assert_eq!(lines[0], format!("warpctl: program killed by SIGABRT at libc.so.6+{offset:#x}"), "{site:?}");
    }
    // The replay says the same.
    let replayed = home.replay(&id, &[]);
    assert_eq!(warp_tests::crash_lines(&replayed.warpctl_lines), lines, "{}", replayed.warpctl_text());
}

/// `show --json`'s crash site of a session.
fn crash_site(home: &WarpHome, id: &str) -> warp_tests::json::Value {
    let json = home.warpctl().args(["show", "--json", id]).output().unwrap();
    let meta = warp_tests::json::parse(String::from_utf8_lossy(&json.stdout).trim()).unwrap();
    meta.get("ending").and_then(|e| e.get("crash_site")).cloned().unwrap_or_else(|| panic!("no crash site: {meta:?}"))
}

/// The file a recording's program had mapped as `name`, as the host has it.
fn recorded_library(home: &WarpHome, id: &str, name: &str) -> Option<std::path::PathBuf> {
    let out = home.warpctl().args(["events", id]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter(|l| l.contains("openat(") && l.contains(&format!("/{name}\"")) && !l.contains(" = -1 "))
        .find_map(|l| l.split('"').nth(1).map(std::path::PathBuf::from))
}

/// A library's separate debug file by its build ID, where it is installed.
fn debug_file_of(lib: &std::path::Path) -> Option<std::path::PathBuf> {
    let out = std::process::Command::new("readelf").arg("-n").arg(lib).output().ok()?;
    let notes = String::from_utf8_lossy(&out.stdout);
    let id = notes.lines().find_map(|l| l.trim().strip_prefix("Build ID: "))?.trim().to_string();
    let path = std::path::PathBuf::from(format!("/usr/lib/debug/.build-id/{}/{}.debug", &id[..2], &id[2..]));
    path.is_file().then_some(path)
}

/// A crash inside a shared library with debug information names the
/// library's function and line, read from its file when the recording
/// ended; a replay gives the same line where the file is gone (another
/// machine); and a file that is no longer what the program had mapped is
/// not believed: the line gives the offset.
#[test]
fn a_crash_in_a_library_names_its_function_and_line() {
    let home = WarpHome::new("crash_lib");
    let dir = home.scratch("lib");
    for f in ["lib_crash.dynamic", "libwarpcrash.so"] {
        fs::copy(warp_tests::progs_dir().join(f), dir.join(f)).unwrap();
    }
    let prog = dir.join("lib_crash.dynamic");
    // A file just copied can be busy for a moment: another test's child,
    // forked while the copy was open, holds it until it execs.
    let native = (0..100)
        .find_map(|_| match std::process::Command::new(&prog).arg("crash").output() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                std::thread::sleep(std::time::Duration::from_millis(20));
                None
            }
            other => Some(other.unwrap()),
        })
        .expect("the copied program runs");
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&native.status), Some(11));
    let recorded = home.record(&Spec::new(&prog).arg("crash"), &[]);
    assert_eq!(recorded.outcome.status, Status::Exited(139), "{}", recorded.warpctl_text());
    let want =
        "warpctl: program killed by SIGSEGV (address 0x0) at warpcrash_store (libwarpcrash.c:10) in libwarpcrash.so";
    assert_eq!(warp_tests::crash_lines(&recorded.warpctl_lines), [want], "{}", recorded.warpctl_text());
    let id = recorded.session_id().unwrap();
    let site = crash_site(&home, &id);
    let text = |k: &str| site.get(k).and_then(|v| v.as_str()).map(str::to_string);
    assert_eq!(text("function").as_deref(), Some("warpcrash_store"), "{site:?}");
    assert_eq!(text("file").as_deref(), Some("libwarpcrash.c"), "{site:?}");
    assert_eq!(site.get("line").and_then(|v| v.as_u64()), Some(10), "{site:?}");
    assert_eq!(text("module").as_deref(), Some("libwarpcrash.so"), "{site:?}");
    fs::remove_file(dir.join("libwarpcrash.so")).unwrap();
    let replayed = home.replay(&id, &[]);
    assert_eq!(replayed.outcome.status, Status::Exited(0), "{}", replayed.warpctl_text());
    assert_eq!(warp_tests::crash_lines(&replayed.warpctl_lines), [want], "replay without the library's file");

    // The program renames another file over its library before it crashes.
    fs::copy(warp_tests::progs_dir().join("libwarpcrash.so"), dir.join("libwarpcrash.so")).unwrap();
    fs::copy(&prog, dir.join("other")).unwrap();
    let (from, to) = (dir.join("other"), dir.join("libwarpcrash.so"));
    let recorded = home.record(&Spec::new(&prog).arg("crash").arg(&from).arg(&to), &[]);
    assert_eq!(recorded.outcome.status, Status::Exited(139), "{}", recorded.warpctl_text());
    let lines = warp_tests::crash_lines(&recorded.warpctl_lines);
    let id = recorded.session_id().unwrap();
    let offset = crash_site(&home, &id).get("offset").and_then(|v| v.as_u64()).unwrap();
    let want = format!("warpctl: program killed by SIGSEGV (address 0x0) at libwarpcrash.so+{offset:#x}");
    assert_eq!(lines, [want], "a file that is not the one mapped is not read for symbols");
}

/// What Warpspeed does not do yet is said once, plainly, even without -v,
/// and once for a whole process tree: two processes of a shell meet the
/// same two unknown syscalls.
#[test]
fn a_limit_met_is_said_once_without_verbose() {
    let home = WarpHome::new("limits");
    let prog = warp_tests::prog("unknown_syscall", Flavour::Static);
    let spec = Spec::new("/bin/sh").args(["-c", &format!("{0}; {0} | cat", prog.display())]);
    let recorded = home.record(&spec, &[]);
    let limits: Vec<&String> = recorded.warpctl_lines.iter().filter(|l| l.contains("does not support yet")).collect();
    assert_eq!(limits.len(), 2, "{}", recorded.warpctl_text());
    assert!(limits[0].contains("syscall 1000,") && limits[1].contains("syscall 100000,"), "{limits:?}");
    // A program that meets none says nothing but its session line.
    let quiet = home.record(&Spec::prog("hello", Flavour::Static), &[]);
    assert_eq!(quiet.warpctl_lines.len(), 1, "{}", quiet.warpctl_text());
}
