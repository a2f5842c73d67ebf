//! Process trees (issue 14): programs that fork, vfork, posix_spawn and
//! execute in children, shells with pipelines, make, python's subprocess.
//! Each runs natively and recorded with the same output and status, and
//! its recording replays to the same bytes ([`WarpHome::check`]); `warpctl
//! ps` lists the recorded processes with the pids and statuses the
//! programs saw; a tree is removed, exported and imported whole.

use std::path::Path;
use std::process::{Command, Output};

use warp_tests::json;
use warp_tests::{Flavour, Spec, Status, WarpHome, FLAVOURS};

const PATH: &str = "/usr/bin:/bin";

fn warpctl(home: &WarpHome, args: &[&str]) -> Output {
    home.warpctl().args(args).output().unwrap()
}

/// `warpctl ps --json ID`: one object per process, the first one first.
fn ps(home: &WarpHome, id: &str) -> Vec<json::Value> {
    let out = warpctl(home, &["ps", "--json", id]);
    assert!(out.status.success(), "ps {id}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| json::parse(l).unwrap()).collect()
}

fn num(v: &json::Value, k: &str) -> u64 {
    v.get(k).and_then(json::Value::as_u64).unwrap_or_else(|| panic!("{k} in {v:?}"))
}

fn text(v: &json::Value, k: &str) -> String {
    v.get(k).and_then(json::Value::as_str).unwrap_or_else(|| panic!("{k} in {v:?}")).to_string()
}

/// How a process ended, from its `ending` object: (exit code, signal).
fn ending(v: &json::Value) -> (u64, u64) {
    let e = v.get("ending").unwrap_or_else(|| panic!("ending in {v:?}"));
    (num(e, "exit_code"), num(e, "signal"))
}

fn sh(script: &str) -> Spec {
    Spec::new("/bin/sh").args(["-c", script]).env("PATH", PATH)
}

#[test]
fn forking_children_exec_and_wait_as_natively_and_replay() {
    let home = WarpHome::new("procs");
    for flavour in FLAVOURS {
        let spec = Spec::prog("procs", flavour);
        let native = home.check(&spec);
        assert_eq!(native.status, Status::Exited(0), "{}", native.stdout_str());
        let out = native.stdout_str();
        assert!(out.contains("pipe: 20 lines, 20 saw their parent"), "{out}");
        assert!(out.ends_with("EXIT-SUCCESS\n") && !out.contains("FAILED"), "{out}");
    }
    // One more recording, to look at its processes.
    let rec = home.record(&Spec::prog("procs", Flavour::Static), &[]);
    let id = rec.session_id().unwrap();
    let procs = ps(&home, &id);
    // The first process, its 20 pipe writers, 5 killed by signals, the
    // zombie, then fork+exec, vfork+exec and posix_spawn, a child and its
    // orphan, a pidfd's target.
    assert_eq!(procs.len(), 33, "{procs:?}");
    let root_pid = num(&procs[0], "pid");
    assert_eq!(text(&procs[0], "id"), id);
    for (i, p) in procs.iter().enumerate().skip(1).take(29) {
        assert_eq!(num(p, "ppid"), root_pid, "every child's parent is the first process: {p:?}");
        assert_eq!(text(p, "parent"), id);
        assert_eq!(text(p, "id"), format!("{id}.{i}"));
        assert_eq!(text(p, "status"), "complete");
    }
    for (i, p) in procs.iter().enumerate().skip(1).take(20) {
        assert_eq!(ending(p), (i as u64 - 1, 0), "pipe writer {i}");
    }
    assert_eq!(ending(&procs[21]), (0, 9), "SIGKILL");
    assert_eq!(ending(&procs[22]), (0, 11), "SIGSEGV");
    assert_eq!(ending(&procs[23]), (0, 15), "SIGTERM");
    assert_eq!(ending(&procs[24]), (0, 9), "SIGKILL, waiting");
    assert_eq!(ending(&procs[25]), (0, 9), "SIGKILL, computing");
    assert_eq!(ending(&procs[26]), (42, 0), "the zombie");
    assert_eq!(ending(&procs[27]), (5, 0), "fork and exec");
    assert_eq!(ending(&procs[28]), (6, 0), "vfork and exec");
    assert_eq!(ending(&procs[29]), (9, 0), "posix_spawn");
    let exec = procs[27].get("argv").and_then(json::Value::as_array).unwrap();
    assert_eq!(
        exec.iter().filter_map(json::Value::as_str).skip(1).collect::<Vec<_>>(),
        ["child", "5"],
        "argv after exec"
    );
    // `ls` lists the recording once, with its process count.
    let ls = warpctl(&home, &["ls", "--json"]);
    let rows: Vec<json::Value> = String::from_utf8_lossy(&ls.stdout).lines().map(|l| json::parse(l).unwrap()).collect();
    assert!(rows.iter().all(|r| !text(r, "id").contains('.')), "no forked process listed on its own: {rows:?}");
    let row = rows.iter().find(|r| text(r, "id") == id).expect("the recording is listed");
    assert_eq!(num(row, "processes"), 33);
    let orphan = procs.iter().find(|p| text(p, "id") == format!("{id}.30.1")).expect("the grandchild");
    assert_eq!(text(orphan, "parent"), format!("{id}.30"), "its session names the process that forked it");
    assert_eq!(ending(orphan), (3, 0));
}

/// `replay --pid N` replays one process of the tree (the ones it descends
/// from silently, up to its fork): its output and its status; `--gdb`
/// debugs it from its return from fork to its own exit.
#[test]
fn one_process_of_a_tree_is_replayed_and_debugged_by_its_pid() {
    let home = WarpHome::new("procs_pid");
    let rec = home.record(&Spec::prog("procs", Flavour::Static), &[]);
    assert_eq!(rec.outcome.status, Status::Exited(0), "{}", rec.warpctl_text());
    let id = rec.session_id().unwrap();
    let procs = ps(&home, &id);
    assert_eq!(procs.len(), 33, "{procs:?}");
    let pid = |i: usize| num(&procs[i], "pid").to_string();
    // The child that executed `procs child 5`: only its line, its status.
    let exec = home.replay(&id, &["--pid", &pid(27)]);
    assert_eq!(exec.outcome.status, Status::Exited(0), "{}", exec.warpctl_text());
    assert_eq!(exec.outcome.stdout_str(), "exec'd child says 5\n", "{}", exec.warpctl_text());
    // The first process's pid is the whole recording.
    let whole = home.replay(&id, &["--pid", &pid(0)]);
    assert_eq!(whole.outcome.stdout_str(), rec.outcome.stdout_str());
    // A pid the recording never had.
    let none = home.replay(&id, &["--pid", "1"]);
    assert_eq!(none.outcome.status, Status::Exited(2), "{}", none.warpctl_text());
    assert!(none.warpctl_text().contains("has no process 1"), "{}", none.warpctl_text());
    if Command::new("gdb").arg("--version").output().map_or(true, |o| !o.status.success()) {
        assert!(std::env::var_os("CI").is_none(), "CI must install gdb (.ci/run)");
        eprintln!("skipped the --gdb part: gdb is not installed (apt-get install gdb)");
        return;
    }
    // Pipe writer 3: stopped where it returns from fork, in main; it
    // calls _exit(3).
    let mut cmd = home.warpctl();
    cmd.args(["replay", &id, "--pid", &pid(4), "--gdb", "--", "-batch", "-nx"]);
    for c in ["bt", "break _exit", "continue", "print $rdi", "continue"] {
        cmd.arg("-ex").arg(c);
    }
    let gdb = warp_tests::run(cmd, "replay --pid --gdb", &warp_tests::Input::Null, None, warp_tests::default_timeout());
    let all = format!("{}{}", gdb.stdout_str(), gdb.stderr_str());
    assert!(all.contains(" main ("), "stopped in main's fork: {all}");
    assert!(all.contains("$1 = 3"), "{all}");
    assert!(all.contains("exited with code 03"), "{all}");
}

/// A recording may have so many processes alive at once
/// (`WARP_MAX_PROCESSES`, 128 by default): a fork beyond gets EAGAIN, as
/// RLIMIT_NPROC would give, warpctl says so once, and the replay agrees.
#[test]
fn forks_beyond_the_process_limit_get_eagain() {
    let home = WarpHome::new("fork_cap").with_env("WARP_MAX_PROCESSES", "4");
    let spec = Spec::prog("fork_many", Flavour::Static);
    let native = warp_tests::run_native(&spec);
    assert_eq!(native.stdout_str(), "forked 10, no failure; reaped 10\n");
    let rec = home.record(&spec, &[]);
    assert_eq!(rec.outcome.status, Status::Exited(0), "{}", rec.warpctl_text());
    assert_eq!(rec.outcome.stdout_str(), "forked 3, EAGAIN; reaped 3\n", "the first process and 3 children");
    let said: Vec<&String> = rec.warpctl_lines.iter().filter(|l| l.contains("processes alive at once")).collect();
    assert_eq!(said.len(), 1, "{}", rec.warpctl_text());
    home.assert_replays(&spec, &rec);
}

#[test]
fn shell_pipelines_and_statuses_as_natively() {
    let home = WarpHome::new("shells");
    for script in [
        "echo a | tr a b",
        "for i in 1 2 3; do echo $i; done | sort -r",
        // The writer gets SIGPIPE when its reader has gone.
        "yes | head -n 3; echo \"pipeline ${?}\"",
        // A child killed by a signal: the shell's 128+N.
        "sh -c 'kill -TERM $$'; echo \"status $?\"; (exit 7); echo \"subshell $?\"",
        "x=$(echo inner | tr a-z A-Z); echo \"got $x\"",
    ] {
        let native = home.check(&sh(script));
        assert_eq!(native.status, Status::Exited(0), "{script}: {}", native.stderr_str());
    }
    let bash =
        Spec::new("/bin/bash").args(["-c", "for i in 1 2 3; do echo $i; done | sort -r; exit 3"]).env("PATH", PATH);
    let native = home.check(&bash);
    assert_eq!((native.status, native.stdout_str().as_str()), (Status::Exited(3), "3\n2\n1\n"));
    let killed = home.check(&sh("echo before; kill -KILL $$"));
    assert_eq!(killed.status, Status::Signaled(9), "{}", killed.stdout_str());
}

#[test]
fn make_and_make_j2_build_as_natively() {
    let home = WarpHome::new("make");
    if !Path::new("/usr/bin/make").exists() {
        eprintln!("SKIPPED: make is not installed");
        return;
    }
    let dir = home.scratch("project");
    std::fs::write(
        dir.join("Makefile"),
        "all: a.txt b.txt\n\tcat a.txt b.txt | sort\n\na.txt:\n\techo alpha > a.txt\n\nb.txt:\n\techo beta > b.txt\n",
    )
    .unwrap();
    for jobs in ["-j1", "-j2"] {
        // -B: every target is made again, so the recorded run does what the native one did.
        let spec = Spec::new("/usr/bin/make").args(["-s", "-B", jobs]).cwd(&dir).env("PATH", PATH);
        let native = home.check(&spec);
        assert_eq!((native.status, native.stdout_str().as_str()), (Status::Exited(0), "alpha\nbeta\n"), "{jobs}");
    }
}

#[test]
fn python_subprocess_runs_as_natively() {
    let home = WarpHome::new("subprocess");
    let python = "/usr/bin/python3";
    if !Path::new(python).exists() {
        eprintln!("SKIPPED: {python} is not installed");
        return;
    }
    let dir = home.scratch("listing");
    for name in ["one", "two", "three"] {
        std::fs::write(dir.join(name), name).unwrap();
    }
    let script = format!(
        "import subprocess\nr = subprocess.run(['ls', '-1', '{}'], capture_output=True, text=True)\nprint(r.returncode, r.stdout.split())\nprint(subprocess.call(['sh', '-c', 'exit 4']))",
        dir.display()
    );
    let spec = Spec::new(python).args(["-c", &script]).env("PATH", PATH);
    let native = home.check(&spec);
    assert_eq!(native.stdout_str(), "0 ['one', 'three', 'two']\n4\n", "{}", native.stderr_str());
}

#[test]
fn a_tree_is_removed_exported_and_imported_whole() {
    let here = WarpHome::new("tree_here");
    let rec = here.record(&sh("echo a | tr a b; echo c"), &[]);
    assert_eq!(rec.outcome.stdout_str(), "b\nc\n");
    let id = rec.session_id().unwrap();
    assert_eq!(ps(&here, &id).len(), 3);
    // A forked process's session is part of its recording, not one of its own.
    let child = format!("{id}.1");
    let scratch = here.scratch("refused").join("child.warp");
    for verb in [&["replay"][..], &["export", "-o", scratch.to_str().unwrap()], &["rm"]] {
        let out = warpctl(&here, &[verb, &[child.as_str()]].concat());
        assert!(!out.status.success(), "{verb:?} {child} is refused");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("is a forked process") && err.contains(&id), "{verb:?}: {err}");
    }
    assert!(warpctl(&here, &["events", &child]).status.success(), "its events can be read");
    let file = here.scratch("out").join("tree.warp");
    let out = warpctl(&here, &["export", &id, "-o", file.to_str().unwrap()]);
    assert!(out.status.success(), "export: {}", String::from_utf8_lossy(&out.stderr));
    let there = WarpHome::new("tree_there");
    let out = warpctl(&there, &["import", file.to_str().unwrap()]);
    assert!(out.status.success(), "import: {}", String::from_utf8_lossy(&out.stderr));
    let new_id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let imported = ps(&there, &new_id);
    assert_eq!(imported.len(), 3, "{imported:?}");
    assert_eq!(text(&imported[2], "id"), format!("{new_id}.2"));
    assert_eq!(text(&imported[2], "parent"), new_id);
    let replay = there.replay(&new_id, &[]);
    assert_eq!(replay.outcome.status, Status::Exited(0), "{}", replay.warpctl_text());
    assert_eq!(replay.outcome.stdout_str(), "b\nc\n");
    // rm takes the whole tree.
    let out = warpctl(&here, &["rm", &id]);
    assert!(out.status.success(), "rm: {}", String::from_utf8_lossy(&out.stderr));
    for gone in [id.clone(), child] {
        assert!(!warpctl(&here, &["show", &gone]).status.success(), "{gone} is gone");
    }
}
