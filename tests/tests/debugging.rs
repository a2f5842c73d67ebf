//! Debugging a replay: scripted `gdb -batch` sessions through `warpctl
//! replay --gdb`, asserting on what gdb prints (breakpoints, locals and
//! globals, backtraces, finish, conditional breakpoints, stepping, a fault
//! stopped at its instruction, threads, a dynamically linked program's
//! libc frames, a change by the user reported as such), and the GDB remote
//! protocol spoken directly to `--gdbserver` (Ctrl-C while the program
//! computes, refusal of a non-loopback address).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use warp_tests::{default_timeout, gdb_present, run, Flavour, Input, Outcome, Spec, Status, WarpHome};

/// Records `spec` (which must exit with `code`) and returns its session id.
fn record(home: &WarpHome, spec: &Spec, code: i32) -> String {
    let recorded = home.record(spec, &[]);
    assert_eq!(recorded.outcome.status, Status::Exited(code), "{}", recorded.warpctl_text());
    recorded.session_id().expect("a session id")
}

/// `warpctl replay ID --gdb -- -batch -nx -ex CMD...`.
fn gdb(home: &WarpHome, id: &str, commands: &[&str]) -> Outcome {
    let mut cmd = home.warpctl();
    cmd.args(["replay", id, "--gdb", "--", "-batch", "-nx"]);
    for c in commands {
        cmd.arg("-ex").arg(c);
    }
    run(cmd, &format!("`warpctl replay {id} --gdb`"), &Input::Null, None, default_timeout())
}

/// Everything gdb and warpctl printed, for assertions and failure messages.
fn text(o: &Outcome) -> String {
    format!("{}{}", o.stdout_str(), o.stderr_str())
}

fn assert_has(all: &str, needle: &str) {
    assert!(all.contains(needle), "expected {needle:?} in gdb's session:\n{all}");
}

#[test]
fn break_print_backtrace_finish_and_run_to_the_end() {
    if !gdb_present() {
        return;
    }
    let home = WarpHome::new("gdb_basic");
    for flavour in [Flavour::Static, Flavour::Dynamic] {
        let id = record(&home, &Spec::prog("debugme", flavour), 6);
        let o = gdb(
            &home,
            &id,
            &[
                "break square",
                "continue",
                "bt",
                "print x",
                "print counter",
                "finish",
                "next",
                "next",
                "print counter",
                "continue",
                "print x",
                "delete",
                "continue",
            ],
        );
        let all = text(&o);
        assert_eq!(o.status, Status::Exited(0), "{all}");
        // Stopped at the first instruction, symbols loaded from the file.
        assert_has(&all, "Reading symbols from");
        assert_has(&all, "Breakpoint 1, square (x=0) at");
        assert_has(&all, "in fill (n=6) at");
        assert_has(&all, "in main (argc=1,");
        assert_has(&all, "$1 = 0");
        assert_has(&all, "$2 = 0");
        assert_has(&all, "Value returned is $3 = 0");
        // The second `next` ran `counter += 1`.
        assert_has(&all, "$4 = 1");
        assert_has(&all, "Breakpoint 1, square (x=1) at");
        assert_has(&all, "$5 = 1");
        // The program's output, then its end as recorded.
        assert_has(&all, "sum of squares below 6: 55");
        assert_has(&all, "exited with code 06]");
        assert!(!all.contains("warpctl: replay diverged"), "{all}");
    }
}

#[test]
fn a_conditional_breakpoint_stops_only_when_true() {
    if !gdb_present() {
        return;
    }
    let home = WarpHome::new("gdb_cond");
    let id = record(&home, &Spec::prog("debugme", Flavour::Static), 6);
    let o = gdb(
        &home,
        &id,
        &["break square if x == 4", "continue", "print x", "print counter", "print squares[3]", "continue"],
    );
    let all = text(&o);
    assert_has(&all, "square (x=4) at");
    assert_has(&all, "$1 = 4");
    assert_has(&all, "$2 = 4");
    assert_has(&all, "$3 = 9");
    assert!(!all.contains("square (x=3)"), "{all}");
    assert_has(&all, "exited with code 06]");
}

#[test]
fn watchpoints_catch_writes_and_reads_of_globals_and_locals() {
    if !gdb_present() {
        return;
    }
    let home = WarpHome::new("gdb_watch");
    let id = record(&home, &Spec::prog("debugme", Flavour::Static), 6);
    let o = gdb(
        &home,
        &id,
        &[
            "watch counter",
            "continue",
            "continue",
            "delete",
            // A local, until its function returns.
            "break square if x == 4",
            "continue",
            "watch result",
            "continue",
            "continue",
            "delete",
            // Read in main's sum after fill wrote it.
            "rwatch squares[2]",
            "continue",
            "print i",
            "delete",
            "continue",
        ],
    );
    let all = text(&o);
    assert_has(
        &all,
        "Hardware watchpoint 1: counter

Old value = 0
New value = 1
",
    );
    assert_has(
        &all,
        "Old value = 1
New value = 2
",
    );
    assert_has(
        &all,
        "Hardware watchpoint 3: result

Old value = 9
New value = 16
",
    );
    assert_has(&all, "Watchpoint 3 deleted because the program has left the block");
    assert_has(
        &all,
        "Hardware read watchpoint 4: squares[2]

Value = 4
",
    );
    assert_has(&all, "in main (argc=1,");
    assert_has(&all, "$1 = 2");
    assert_has(&all, "exited with code 06]");
    assert!(!all.contains("warpctl: replay diverged"), "{all}");
}

#[test]
fn stepi_moves_one_instruction_and_registers_follow() {
    if !gdb_present() {
        return;
    }
    let home = WarpHome::new("gdb_stepi");
    let id = record(&home, &Spec::prog("debugme", Flavour::Static), 6);
    // _start begins `xor %ebp,%ebp` (2 bytes) then `mov %rdx,%r9` (3).
    let o = gdb(
        &home,
        &id,
        &["info symbol $pc", "stepi", "info symbol $pc", "stepi", "info symbol $pc", "print $rbp", "kill"],
    );
    let all = text(&o);
    assert_has(&all, "_start in section .text");
    assert_has(&all, "_start + 2 in section .text");
    assert_has(&all, "_start + 5 in section .text");
    assert_has(&all, "$1 = (void *) 0x0");
}

#[test]
fn a_fault_stops_at_the_faulting_instruction_before_its_signal() {
    if !gdb_present() {
        return;
    }
    let home = WarpHome::new("gdb_segv");
    let spec = Spec::prog("debugme", Flavour::Static).arg("crash");
    let recorded = home.record(&spec, &[]);
    assert_eq!(recorded.outcome.status, Status::Exited(128 + 11), "{}", recorded.warpctl_text());
    let id = recorded.session_id().unwrap();
    let o = gdb(&home, &id, &["continue", "bt 2", "x/i $pc", "print nowhere", "continue"]);
    let all = text(&o);
    assert_has(&all, "Program received signal SIGSEGV, Segmentation fault.");
    assert_has(&all, "crash () at");
    assert_has(&all, "in main (argc=2,");
    assert_has(&all, "=> 0x");
    assert_has(&all, "$1 = (volatile int *) 0x0");
    assert_has(&all, "Program terminated with signal SIGSEGV, Segmentation fault.");
    assert!(!all.contains("warpctl: replay diverged"), "{all}");
}

#[test]
fn every_thread_is_listed_with_its_own_backtrace() {
    if !gdb_present() {
        return;
    }
    let home = WarpHome::new("gdb_threads");
    let id = record(&home, &Spec::prog("threads", Flavour::Static), 0);
    // The fourth worker to start: by then the others exist too. Main may
    // still be in its clone of that worker (the recording's schedule may
    // run the new thread first): eight frames reach main from there too.
    let o = gdb(
        &home,
        &id,
        &["break worker if (long)arg == 3", "continue", "info threads", "thread apply all bt 8", "delete", "continue"],
    );
    let all = text(&o);
    // Main and four workers.
    let listed = all.lines().filter(|l| l.contains("Thread 1.")).filter(|l| !l.contains("apply")).count();
    assert!(listed >= 5, "five threads in `info threads` and the backtraces:\n{all}");
    assert_has(&all, "worker (arg=0x3) at");
    assert_has(&all, "in main () at");
    assert_has(&all, "counter 8000 (expected 8000)");
    assert_has(&all, "exited normally]");
}

#[test]
fn a_dynamic_programs_backtrace_goes_through_libc() {
    if !gdb_present() {
        return;
    }
    let home = WarpHome::new("gdb_dynamic");
    let id = record(&home, &Spec::prog("debugme", Flavour::Dynamic), 6);
    let o = gdb(&home, &id, &["break write", "continue", "bt", "info sharedlibrary", "continue"]);
    let all = text(&o);
    assert_has(&all, "write (fd=1,");
    assert_has(&all, "in main (argc=1,");
    assert_has(&all, "libc.so.6");
    assert_has(&all, "exited with code 06]");
}

#[test]
fn a_change_by_the_user_is_reported_and_so_is_the_divergence_it_causes() {
    if !gdb_present() {
        return;
    }
    let home = WarpHome::new("gdb_change");
    let id = record(&home, &Spec::prog("debugme", Flavour::Static), 6);
    let o = gdb(&home, &id, &["break write", "continue", "set var counter = 40", "continue"]);
    let all = text(&o);
    assert_has(&all, "warpctl: the debugger changed the program's memory");
    // exit_group(40) is not the recorded exit_group(6).
    assert_has(&all, "not a fault of the recording");
    assert_has(&all, "warpctl: replay diverged at event");
}

// ---------------------------------------------------------------------------
// The remote protocol spoken directly to --gdbserver

/// `$data#checksum`.
fn packet(data: &str) -> Vec<u8> {
    let sum = data.bytes().fold(0u8, |a, b| a.wrapping_add(b));
    format!("${data}#{sum:02x}").into_bytes()
}

/// Reads one packet's data (acknowledging it), skipping acks.
fn read_packet(s: &mut TcpStream) -> String {
    let mut data = Vec::new();
    let mut byte = [0u8];
    loop {
        s.read_exact(&mut byte).expect("a reply from the gdb server");
        if byte[0] == b'$' {
            break;
        }
    }
    loop {
        s.read_exact(&mut byte).unwrap();
        if byte[0] == b'#' {
            let mut sum = [0u8; 2];
            s.read_exact(&mut sum).unwrap();
            s.write_all(b"+").unwrap();
            return String::from_utf8_lossy(&data).into_owned();
        }
        data.push(byte[0]);
    }
}

/// Expands the protocol's run-length encoding (`X*n`: X repeated n-29 more times).
fn unrle(data: &str) -> String {
    let b = data.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'*' && i + 1 < b.len() {
            let last = *out.last().expect("a run repeats something");
            out.extend(std::iter::repeat_n(last, (b[i + 1] - 29) as usize));
            i += 2;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

fn ask(s: &mut TcpStream, data: &str) -> String {
    s.write_all(&packet(data)).unwrap();
    read_packet(s)
}

#[test]
fn gdbserver_is_interrupted_by_ctrl_c_while_the_program_computes() {
    let home = WarpHome::new("gdbserver");
    let id = record(&home, &Spec::prog("compute", Flavour::Static).arg("3000"), 0);
    let (mut child, mut err, addr) = start_gdbserver(&home, &id);
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(default_timeout())).unwrap();
    assert!(ask(&mut s, "qSupported:swbreak+").contains("PacketSize="));
    assert!(ask(&mut s, "?").starts_with('T'), "stopped at the first instruction");
    // The program computes for seconds with no syscall; \x03 stops it.
    s.write_all(&packet("vCont;c")).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let sent = Instant::now();
    s.write_all(&[3]).unwrap();
    let stop = read_packet(&mut s);
    assert!(stop.starts_with("T02"), "SIGINT stop reply, got {stop:?}");
    assert!(sent.elapsed() < Duration::from_secs(5), "stopped promptly");
    let regs = unrle(&ask(&mut s, "g"));
    assert!(regs.len() > 16 * 16, "registers: {regs}");
    // Memory at rip reads (the program's own code, not a breakpoint).
    let rip = u64::from_str_radix(
        &regs.as_bytes()[16 * 16..17 * 16].chunks(2).rev().map(|c| std::str::from_utf8(c).unwrap()).collect::<String>(),
        16,
    )
    .unwrap();
    assert!(!ask(&mut s, &format!("m{rip:x},4")).starts_with('E'));
    s.write_all(&packet("k")).unwrap();
    drop(s);
    let status = child.wait().unwrap();
    let mut rest = String::new();
    err.read_to_string(&mut rest).unwrap();
    assert_eq!(status.code(), Some(0), "{rest}");
}

#[test]
fn gdbserver_refuses_an_address_other_hosts_can_reach() {
    let home = WarpHome::new("gdbserver_any");
    let id = record(&home, &Spec::prog("hello", Flavour::Static), 0);
    let mut cmd = home.warpctl();
    cmd.args(["replay", &id, "--gdbserver", "0.0.0.0:1234"]);
    let o = run(cmd, "`warpctl replay --gdbserver 0.0.0.0:1234`", &Input::Null, None, default_timeout());
    assert_eq!(o.status, Status::Exited(2), "{}", o.stderr_str());
    assert!(o.stderr_str().contains("warpctl: 0.0.0.0 is not a loopback address"), "{}", o.stderr_str());
}

/// Starts `warpctl replay ID --gdbserver 127.0.0.1:0`: the child and the
/// address it listens on (from its first line).
fn start_gdbserver(home: &WarpHome, id: &str) -> (std::process::Child, BufReader<std::process::ChildStderr>, String) {
    let mut server = home.warpctl();
    server.args(["replay", id, "--gdbserver", "127.0.0.1:0"]).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = server.spawn().unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    let addr = line
        .split("listening on ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("the listening line: {line:?}"))
        .to_string();
    (child, err, addr)
}

#[test]
fn lldb_breaks_prints_and_backtraces_forward() {
    if !Command::new("lldb").arg("--version").output().is_ok_and(|o| o.status.success()) {
        assert!(std::env::var_os("CI").is_none(), "CI must install lldb (.ci/run)");
        eprintln!("skipped: lldb is not installed (apt-get install lldb)");
        return;
    }
    let home = WarpHome::new("lldb");
    let spec = Spec::prog("debugme", Flavour::Static);
    let id = record(&home, &spec, 6);
    let (mut child, _err, addr) = start_gdbserver(&home, &id);
    // Breakpoints first: lldb resumes a process it finds at its entry.
    let mut lldb = Command::new("lldb");
    lldb.arg("-b").arg(&spec.program);
    for c in [
        "breakpoint set -n square",
        &format!("gdb-remote {addr}"),
        "frame variable x",
        "bt",
        "continue",
        "frame variable x",
        "process kill",
    ] {
        lldb.arg("-o").arg(c);
    }
    let o = run(lldb, "lldb", &Input::Null, None, default_timeout());
    let all = text(&o);
    assert_has(&all, "stop reason = breakpoint 1.1");
    assert_has(&all, "(int) x = 0");
    assert_has(&all, "`fill(n=6) at debugme.c");
    assert_has(&all, "`main(argc=1, argv=");
    assert_has(&all, "(int) x = 1");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{all}");
}

// ---------------------------------------------------------------------------
// Reverse execution

#[test]
fn reverse_continue_returns_to_earlier_hits_and_to_the_start() {
    if !gdb_present() {
        return;
    }
    let home = WarpHome::new("gdb_rc");
    let id = record(&home, &Spec::prog("debugme", Flavour::Static), 6);
    let o = gdb(
        &home,
        &id,
        &[
            "break square",
            "continue",
            "continue",
            "continue",
            "print x",
            "reverse-continue",
            "print x",
            "print counter",
            "reverse-continue",
            "print x",
            "reverse-continue",
            "info symbol $pc",
            "continue",
            "print x",
            "delete",
            "continue",
        ],
    );
    let all = text(&o);
    let hits: Vec<&str> = all.lines().filter(|l| l.starts_with("Breakpoint 1, square (x=")).collect();
    assert_eq!(
        hits.iter().map(|l| &l[24..25]).collect::<Vec<_>>(),
        ["0", "1", "2", "1", "0", "0"],
        "forward three hits, back two, forward one:\n{all}"
    );
    for value in ["$1 = 2", "$2 = 1", "$3 = 1", "$4 = 0"] {
        assert_has(&all, value);
    }
    assert_has(&all, "No more reverse-execution history.");
    assert_has(&all, "_start in section .text");
    assert_has(&all, "$5 = 0");
    // The program's output once, though parts of it ran three times.
    assert_eq!(all.matches("sum of squares below 6: 55").count(), 1, "{all}");
    assert_has(&all, "exited with code 06]");
}

/// `info registers` lines of the named registers, in order.
fn registers(all: &str, names: &[&str]) -> Vec<Vec<String>> {
    let mut sets = Vec::new();
    let mut current = Vec::new();
    for line in all.lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        if names.contains(&name) {
            current.push(line.to_string());
            if current.len() == names.len() {
                sets.push(std::mem::take(&mut current));
            }
        }
    }
    sets
}

#[test]
fn reverse_stepi_then_stepi_comes_back_to_the_same_registers() {
    if !gdb_present() {
        return;
    }
    let home = WarpHome::new("gdb_rsi");
    let id = record(&home, &Spec::prog("debugme", Flavour::Static), 6);
    let regs = "info registers rip rsp rax rdi eflags";
    let o = gdb(
        &home,
        &id,
        &[
            "break square if x == 2",
            "continue",
            "delete",
            "stepi 9",
            regs,
            "reverse-stepi 6",
            regs,
            "stepi 6",
            regs,
            // Back across the call into square, and forward again.
            "reverse-stepi 12",
            "bt 1",
            "stepi 12",
            regs,
        ],
    );
    let all = text(&o);
    let sets = registers(&all, &["rip", "rsp", "rax", "rdi", "eflags"]);
    assert_eq!(sets.len(), 4, "{all}");
    assert_eq!(sets[0], sets[2], "reverse-stepi 6 then stepi 6:\n{all}");
    assert_eq!(sets[0], sets[3], "reverse-stepi 12 then stepi 12:\n{all}");
    assert_ne!(sets[0][0], sets[1][0], "reverse-stepi moved the pc:\n{all}");
    // Twelve back from fill, after square returned: inside square.
    assert_has(&all, "#0  square (");
    assert!(!all.contains("cannot go on"), "{all}");
}

#[test]
fn a_watchpoint_is_hit_backwards_before_the_write() {
    if !gdb_present() {
        return;
    }
    let home = WarpHome::new("gdb_rwatch");
    let id = record(&home, &Spec::prog("debugme", Flavour::Static), 6);
    let o = gdb(
        &home,
        &id,
        &[
            "break main",
            "continue",
            "next",
            "next",
            "watch counter",
            "reverse-continue",
            "reverse-continue",
            "print counter",
            "continue",
            "print counter",
        ],
    );
    let all = text(&o);
    // Backwards the value goes from new to old: 6 before the last write was 5.
    assert_has(&all, "Old value = 6\nNew value = 5\n");
    assert_has(&all, "Old value = 5\nNew value = 4\n");
    assert_has(&all, "$1 = 4");
    // Forward again, the same write.
    assert_has(&all, "Old value = 4\nNew value = 5\n");
    assert_has(&all, "$2 = 5");
    assert_has(&all, "counter += 1;");
}

#[test]
fn reverse_finish_next_and_step_go_back_through_calls() {
    if !gdb_present() {
        return;
    }
    let home = WarpHome::new("gdb_rnext");
    let id = record(&home, &Spec::prog("debugme", Flavour::Static), 6);
    let o = gdb(
        &home,
        &id,
        &[
            "break square if x == 4",
            "continue",
            "reverse-finish",
            "print i",
            // To the start of line 21, the loop's increment, the previous
            // round's `counter += 1`.
            "reverse-next",
            "reverse-next",
            "reverse-next",
            "print i",
            "reverse-step",
            "bt 2",
            "delete",
            "continue",
        ],
    );
    let all = text(&o);
    assert_has(&all, "in fill (n=6) at");
    assert_has(&all, "$1 = 4");
    assert_has(&all, "$2 = 3");
    assert_has(&all, "22\t        counter += 1;");
    // Back into the previous round's call, at its end.
    assert_has(&all, "#0  square (x=3) at");
    assert_has(&all, "#1  0x");
    assert_has(&all, "exited with code 06]");
}

#[test]
fn reverse_execution_follows_the_recorded_schedule_of_threads() {
    if !gdb_present() {
        return;
    }
    let home = WarpHome::new("gdb_rthreads");
    let id = record(&home, &Spec::prog("threads", Flavour::Static), 0);
    let o = gdb(
        &home,
        &id,
        &[
            "break worker",
            "continue",
            "continue",
            "continue",
            "print (long)arg",
            "reverse-continue",
            "print (long)arg",
            "reverse-stepi",
            "stepi",
            "print (long)arg",
            "delete",
            "continue",
        ],
    );
    let all = text(&o);
    assert_has(&all, "$1 = 2");
    assert_has(&all, "$2 = 1");
    assert_has(&all, "$3 = 1");
    assert_has(&all, "counter 8000 (expected 8000)");
    assert_eq!(all.matches("EXIT-SUCCESS").count(), 1, "{all}");
    assert_has(&all, "exited normally]");
    assert!(!all.contains("cannot go on"), "{all}");
}

#[test]
fn reverse_execution_in_a_dynamically_linked_program() {
    if !gdb_present() {
        return;
    }
    let home = WarpHome::new("gdb_rdyn");
    let id = record(&home, &Spec::prog("debugme", Flavour::Dynamic), 6);
    let o = gdb(
        &home,
        &id,
        &[
            "break square",
            "continue",
            "continue",
            "continue",
            "reverse-continue",
            "print x",
            "reverse-stepi",
            "reverse-stepi",
            "stepi",
            "stepi",
            "print x",
            "delete",
            "break write",
            "continue",
            "break square",
            "reverse-continue",
            "print x",
            "delete",
            "continue",
        ],
    );
    let all = text(&o);
    assert_has(&all, "$1 = 1");
    assert_has(&all, "$2 = 1");
    // From write back to the last square: x = 5.
    assert_has(&all, "$3 = 5");
    assert_eq!(all.matches("sum of squares below 6: 55").count(), 1, "{all}");
    assert_has(&all, "exited with code 06]");
}

#[test]
fn monitor_commands_say_where_the_replay_is_and_jump_in_the_trace() {
    if !gdb_present() {
        return;
    }
    let home = WarpHome::new("gdb_monitor");
    let id = record(&home, &Spec::prog("debugme", Flavour::Static), 6);
    let o = gdb(
        &home,
        &id,
        &[
            "break fill",
            "continue",
            "monitor when",
            "monitor events 2",
            "monitor goto 3",
            "maintenance flush register-cache",
            "monitor when",
            "monitor goto 100000",
            "monitor checkpoints",
            "continue",
            "monitor when",
        ],
    );
    let all = text(&o);
    // Before fill, the program has made its start-up syscalls; the next
    // event is the write of its line, marked.
    assert!(all.lines().any(|l| l.starts_with("event ") && l.contains(" of ")), "{all}");
    assert!(all.lines().any(|l| l.starts_with("=>") && l.contains("write(1, ")), "{all}");
    assert_has(&all, "at event 3, thread");
    assert_has(&all, "is past the recording's last");
    assert!(all.lines().any(|l| l.ends_with("KiB of memory")), "{all}");
    // From event 3, forward to fill again.
    assert_has(&all, "Breakpoint 1, fill (n=6)");
    assert_eq!(all.matches("Breakpoint 1, fill (n=6)").count(), 2, "{all}");
    assert_eq!(all.matches("sum of squares below 6: 55").count(), 0, "stopped before the write:\n{all}");
}

/// A trace debugged where its executable is not (another machine, a
/// rebuilt program): gdb reads the recorded image, so its symbols match.
#[test]
fn gdb_reads_the_recorded_executable_when_the_local_one_is_gone_or_differs() {
    if !gdb_present() {
        return;
    }
    let home = WarpHome::new("gdb_image");
    let dir = home.scratch("image");
    let exe = dir.join("victim");
    std::fs::copy(warp_tests::prog("debugme", Flavour::Static), &exe).unwrap();
    let id = record(&home, &Spec::new(&exe), 6);
    let script = ["break square", "continue", "bt 2", "info symbol $pc", "kill"];
    std::fs::remove_file(&exe).unwrap();
    let gone = text(&gdb(&home, &id, &script));
    // Another program at the same path.
    std::fs::copy(warp_tests::prog("hello", Flavour::Static), &exe).unwrap();
    let other = text(&gdb(&home, &id, &script));
    for (all, why) in [(&gone, "is not"), (&other, "differs from")] {
        assert_has(all, &format!("on this machine {why} the executable the recording ran: gdb reads the recorded one"));
        assert_has(all, "Breakpoint 1, square (x=0) at");
        assert_has(all, "in fill (n=6) at");
        assert_has(all, "square + 7 in section .text");
    }
    // The same file: nothing said.
    std::fs::copy(warp_tests::prog("debugme", Flavour::Static), &exe).unwrap();
    let same = text(&gdb(&home, &id, &script));
    assert!(!same.contains("the executable the recording ran"), "{same}");
    assert_has(&same, "Breakpoint 1, square (x=0) at");
}

#[test]
fn info_threads_shows_thread_names() {
    if !gdb_present() {
        return;
    }
    let home = WarpHome::new("gdb_names");
    let id = record(&home, &Spec::prog("thread_names", Flavour::Static), 0);
    let o = gdb(&home, &id, &["break names_ready", "continue", "info threads", "delete", "continue"]);
    let all = text(&o);
    let listed: Vec<&str> = all.lines().filter(|l| l.contains("Thread 1.") && !l.starts_with('[')).collect();
    assert_eq!(listed.len(), 3, "{all}");
    assert!(listed.iter().any(|l| l.contains("a-name-longer-t")), "{all}");
    assert!(listed.iter().any(|l| l.contains("worker-0")), "{all}");
    assert!(listed.iter().any(|l| l.contains("worker-1")), "{all}");
    assert_has(&all, "exited normally]");
}

/// Checkpoints share the pages that did not change: a program that keeps
/// 8 MiB and changes a page per syscall fits dozens of them in a 32 MiB
/// budget (copied whole, four would), and going back restores each
/// moment's own bytes from the shared pages.
#[test]
fn checkpoints_share_unchanged_pages_and_restore_each_moments_bytes() {
    if !gdb_present() {
        return;
    }
    let home = WarpHome::new("gdb_shared_pages").with_env("WARP_CHECKPOINT_MB", "32");
    let id = record(&home, &Spec::prog("ckpt_pages", Flavour::Static), 0);
    let o = gdb(
        &home,
        &id,
        &[
            "break done",
            "continue",
            "monitor checkpoints",
            "break mark",
            "reverse-continue",
            "print i",
            "print (int)mem[150*4096]",
            "print (int)mem[151*4096]",
            "reverse-continue",
            "print i",
            "print (int)mem[50*4096]",
            "print (int)mem[150*4096]",
            "continue",
            "continue",
            "print (int)mem[199*4096]",
            "continue",
        ],
    );
    let all = text(&o);
    let line = all.lines().find(|l| l.ends_with("KiB of memory")).unwrap_or_else(|| panic!("no count:\n{all}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let (n, kib): (u64, u64) = (words[0].parse().unwrap(), words[2].parse().unwrap());
    assert!(n >= 20, "with pages shared, many checkpoints fit the budget: {line}\n{all}");
    assert!(kib <= 32 << 10, "within the budget: {line}");
    assert!(kib >= 8 << 10, "the program's 8 MiB are held once: {line}");
    // Back to mark(150): its page written, the next not yet ('Z' is 90).
    assert_has(&all, "$1 = 150");
    assert_has(&all, "$2 = 150");
    assert_has(&all, "$3 = 90");
    // Back again to mark(50): page 150 not yet written.
    assert_has(&all, "$4 = 50");
    assert_has(&all, "$5 = 50");
    assert_has(&all, "$6 = 90");
    // Forward past mark(150) to done: the last page written.
    assert_has(&all, "$7 = 199");
    assert_eq!(all.matches("changed 200 pages").count(), 1, "output once:\n{all}");
    assert_has(&all, "exited normally");
}
