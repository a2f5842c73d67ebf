//! Programs killed by a signal: warpctl must exit with 128+N, as a shell
//! reports it, after the same output as natively. Includes Ctrl-C (SIGINT to
//! the whole process group, as a terminal sends it) while the program blocks
//! in read(), in pause(), and while it computes without any syscall.

use warp_tests::{spawn, Input, Spec, Status, WarpHome, FLAVOURS};

/// Checks `name args` in every flavour dies natively by `signal` after
/// printing `stdout`, and that recording agrees.
fn check_killed(tag: &str, name: &str, args: &[&str], signal: i32, stdout: &str) {
    let home = WarpHome::new(tag);
    for flavour in FLAVOURS {
        let native = home.check(&Spec::prog(name, flavour).args(args));
        assert_eq!(native.status, Status::Signaled(signal), "{name} {args:?} natively");
        assert_eq!(native.stdout_str(), stdout);
    }
}

#[test]
fn null_deref_is_sigsegv() {
    check_killed("null_deref", "null_deref", &[], libc::SIGSEGV, "about to dereference NULL\n");
}

#[test]
fn abort_is_sigabrt() {
    check_killed("abort", "abort", &[], libc::SIGABRT, "about to abort\n");
}

#[test]
fn ud2_is_sigill() {
    check_killed("ud2", "ud2", &[], libc::SIGILL, "about to execute ud2\n");
}

#[test]
fn divide_by_zero_is_sigfpe() {
    check_killed("divzero", "divzero", &[], libc::SIGFPE, "about to divide by zero\n");
}

#[test]
fn broken_pipe_is_sigpipe() {
    check_killed("sigpipe", "sigpipe", &["default"], libc::SIGPIPE, "writing to a pipe with no reader (default)\n");
}

const MPROTECT_HEAD: &str = "written, sum 24576\nread-only, sum 24576\n";
const MPROTECT_MID: &str = "second page writable again, byte 99\nthird page PROT_NONE, first page sum 6144\n";

#[test]
fn write_to_read_only_page_is_sigsegv() {
    check_killed("mprot_wro", "mprotect_test", &["write-ro"], libc::SIGSEGV, MPROTECT_HEAD);
}

#[test]
fn read_of_prot_none_page_is_sigsegv() {
    check_killed(
        "mprot_none",
        "mprotect_test",
        &["read-none"],
        libc::SIGSEGV,
        &format!("{MPROTECT_HEAD}{MPROTECT_MID}"),
    );
}

#[test]
fn access_after_munmap_is_sigsegv() {
    check_killed(
        "mprot_unmap",
        "mprotect_test",
        &["after-munmap"],
        libc::SIGSEGV,
        &format!("{MPROTECT_HEAD}{MPROTECT_MID}unmapped\n"),
    );
}

#[test]
fn executing_data_page_is_sigsegv() {
    check_killed("mprot_nx", "mprotect_test", &["exec-nx"], libc::SIGSEGV, &format!("{MPROTECT_HEAD}{MPROTECT_MID}"));
}

/// Starts `spec` natively and recorded, each in a process group of its own;
/// once it has printed "ready", sends SIGINT to the group. Natively the
/// program dies of SIGINT; recorded, warpctl must end with status 130 and
/// take every process of its group (the broker) with it.
fn interrupt(tag: &str, name: &str, args: &[&str], stdin: Input) {
    let home = WarpHome::new(tag);
    for flavour in FLAVOURS {
        let spec = Spec::prog(name, flavour).args(args).stdin(stdin.clone());

        let mut native =
            spawn(spec.native_command(), &format!("native {}", spec.describe()), &spec.stdin, None, spec.timeout);
        native.wait_for_stdout("ready\n");
        native.signal_group(libc::SIGINT);
        let native = native.finish();
        assert_eq!(native.status, Status::Signaled(libc::SIGINT), "{} natively", spec.describe());
        assert_eq!(native.stdout_str(), "ready\n");

        let mut running = home.spawn_record(&spec, &[]);
        running.wait_for_stdout("ready\n");
        running.signal_group(libc::SIGINT);
        let outcome = running.finish();
        let recorded = warp_tests::Recorded::new(outcome.clone());
        // 130 is what the contract asks for; a warpctl that re-raises SIGINT
        // on itself (so a calling shell loop stops too) shows the same $?.
        assert!(
            matches!(outcome.status, Status::Exited(130) | Status::Signaled(libc::SIGINT)),
            "{}: warpctl should end with status 130 after Ctrl-C, but: {}\nwarpctl's lines:\n{}\n{}",
            spec.describe(),
            outcome.status,
            recorded.warpctl_text(),
            home.daemon_log_tail()
        );
        assert_eq!(outcome.stdout, native.stdout, "stdout");
        assert_eq!(recorded.program_stderr, native.stderr, "program's stderr");
        recorded.session_id().unwrap();
        // The session line, and that SIGINT killed it.
        assert_eq!(recorded.warpctl_lines.len(), 2, "warpctl's lines: {:?}", recorded.warpctl_lines);
        assert!(
            recorded.warpctl_lines[1].starts_with("warpctl: program killed by SIGINT"),
            "{:?}",
            recorded.warpctl_lines
        );
    }
}

#[test]
fn ctrl_c_while_blocked_in_read() {
    interrupt("intr_read", "sleep_forever", &["read"], Input::Held);
}

#[test]
fn ctrl_c_while_blocked_in_pause() {
    interrupt("intr_pause", "sleep_forever", &["pause"], Input::Null);
}

#[test]
fn ctrl_c_while_threads_wait() {
    interrupt("intr_threads", "sleep_forever", &["threads"], Input::Null);
}

#[test]
fn ctrl_c_while_computing() {
    interrupt("intr_spin", "spin", &[], Input::Null);
}

/// The native side of the interrupt tests, kept honest: the blocking
/// program really blocks (it is still running a while after "ready").
#[test]
fn sleep_forever_blocks_until_eof() {
    for flavour in FLAVOURS {
        let spec = Spec::prog("sleep_forever", flavour).arg("read").stdin(Input::Held);
        let mut r = spawn(spec.native_command(), "native sleep_forever", &spec.stdin, None, spec.timeout);
        r.wait_for_stdout("ready\n");
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert_eq!(r.stdout_so_far(), b"ready\n");
        r.close_stdin();
        let out = r.finish();
        assert_eq!(out.status, Status::Exited(0));
        assert_eq!(out.stdout_str(), "ready\neof\n");
    }
}

/// Ctrl-C reaches the program's own SIGINT handler, natively and recorded
/// alike, and the recording replays: while the program is blocked in read
/// (the handler prints and exits 0), and while it computes without any
/// syscall (the handler sets a flag the loop watches; replay runs it at the
/// syscall boundary before the point where the recording took it).
fn ctrl_c_reaches_the_handler(tag: &str, mode: &str, want: &str) {
    let home = WarpHome::new(tag);
    for flavour in FLAVOURS {
        let spec = Spec::prog("sig_handlers", flavour).arg(mode).stdin(Input::Held);
        let run = |cmd| {
            let mut r = spawn(cmd, "sig_handlers", &spec.stdin, None, spec.timeout);
            r.wait_for_stdout("ready\n");
            std::thread::sleep(std::time::Duration::from_millis(100));
            r.signal_group(libc::SIGINT);
            r.finish()
        };
        let native = run(spec.native_command());
        assert_eq!(native.status, Status::Exited(0));
        assert_eq!(native.stdout_str(), want);
        let recorded = warp_tests::Recorded::new(run(home.record_command(&spec, &[])));
        assert_eq!(recorded.outcome.status, Status::Exited(0), "{}", recorded.warpctl_text());
        assert_eq!(recorded.outcome.stdout, native.stdout);
        home.assert_replays(&spec, &recorded);
    }
}

#[test]
fn ctrl_c_runs_the_programs_handler() {
    ctrl_c_reaches_the_handler("intr_handler", "wait", "ready\ncaught SIGINT\n");
}

#[test]
fn ctrl_c_runs_the_handler_of_a_computing_program() {
    ctrl_c_reaches_the_handler("intr_hspin", "spin", "ready\ncaught signal 2 while computing\n");
}

/// rt_sigreturn from a forged frame whose saved rip is not canonical:
/// SIGSEGV, as on Linux; warpd itself carries on.
/// Signals the host sends because of the program's own timers and
/// notifications (held by the broker, which performs those calls) reach
/// the program's handler instead of ending the recording.
#[test]
fn sigprof_and_sigio_from_the_programs_own_requests_reach_it() {
    let home = WarpHome::new("host_signals");
    for flavour in FLAVOURS {
        let native = home.check(&Spec::prog("host_signals", flavour).arg("prof"));
        assert_eq!(native.stdout_str(), "prof: SIGPROF handled\n");
        let dir = home.scratch(&format!("notify-{}", flavour.suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        let spec = Spec::prog("host_signals", flavour).arg("notify").arg(&dir);
        let _ = std::fs::remove_file(dir.join("made"));
        let native = warp_tests::run_native(&spec);
        assert_eq!(native.stdout_str(), "notify: SIGIO handled\n");
        std::fs::remove_file(dir.join("made")).unwrap();
        let recorded = home.record(&spec, &[]);
        home.assert_same(&spec, &native, &recorded);
        // The replay makes no file: the recording's answers stand in.
        std::fs::remove_file(dir.join("made")).unwrap();
        home.assert_replays(&spec, &recorded);
        assert!(!dir.join("made").exists());
    }
}

/// ITIMER_PROF and ITIMER_VIRTUAL count the program's CPU time (the
/// vCPU's): they fire while it computes with no syscalls, not while it
/// sleeps, and getitimer shows the time left.
#[test]
fn cpu_time_itimers_count_the_programs_time() {
    let home = WarpHome::new("itimers");
    for flavour in FLAVOURS {
        let native = home.check(&Spec::prog("host_signals", flavour).arg("cpu"));
        assert_eq!(native.status, Status::Exited(0));
        assert_eq!(
            native.stdout_str(),
            "prof: 3 or more SIGPROF while computing\nvirtual: no signal while sleeping, time left yes\n\
             virtual: SIGVTALRM after computing\nvirtual: disarmed after it fired yes\n"
        );
    }
}

/// A signal another process sends reaches the program's SA_SIGINFO handler
/// with the siginfo Linux gives it (SI_USER, the sender's pid, the uid),
/// natively and recorded, and replays with the same siginfo.
#[test]
fn a_signal_from_another_process_comes_with_its_siginfo() {
    let home = WarpHome::new("sender");
    let want = "SIGUSR1: code SI_USER, from another process, uid ours\n";
    // Waits for "pid N", sends SIGUSR1 to N, returns the rest of stdout.
    let run = |mut r: warp_tests::Running| {
        r.wait_for_stdout("\n");
        let out = String::from_utf8_lossy(r.stdout_so_far()).into_owned();
        let pid: i32 = out.trim().strip_prefix("pid ").and_then(|p| p.parse().ok()).expect("pid N");
        // SAFETY: kill has no memory-safety preconditions.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGUSR1) }, 0);
        r.finish()
    };
    for flavour in FLAVOURS {
        let spec = Spec::prog("host_signals", flavour).arg("sender");
        let native = run(spawn(spec.native_command(), "native sender", &spec.stdin, None, spec.timeout));
        assert!(native.stdout_str().ends_with(want), "{}", native.stdout_str());
        let outcome = run(home.spawn_record(&spec, &[]));
        let recorded = warp_tests::Recorded::new(outcome);
        assert_eq!(recorded.outcome.status, Status::Exited(0), "{}", recorded.warpctl_text());
        assert!(recorded.outcome.stdout_str().ends_with(want), "{}", recorded.outcome.stdout_str());
        home.assert_replays(&spec, &recorded);
    }
}

#[test]
fn sigreturn_to_garbage_is_sigsegv() {
    check_killed("sigret", "sigreturn_garbage", &[], libc::SIGSEGV, "about to return from a forged signal frame\n");
}
