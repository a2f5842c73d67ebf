//! The exitless syscall path: calls the ring serves (read, write, lseek,
//! pread64, pwrite64, fstat and newfstatat of a descriptor, getdents64,
//! clock_gettime) give the program the
//! answers Linux gives, with the ring and without (`--no-exitless`); a
//! recording made either way replays either way (WARP_EXITLESS=0 turns it
//! off for replay) to the same bytes; with the ring, each of the frequent
//! calls is served in the VM (`events --json` says which), without it
//! none is; a program that scribbles over the ring's
//! page and posts requests of its own gets its answers and replays.

use std::process::Output;

use warp_tests::json;
use warp_tests::{Recorded, Spec, Status, WarpHome, FLAVOURS};

fn show(home: &WarpHome, id: &str) -> json::Value {
    let out = home.warpctl().args(["show", "--json", id]).output().unwrap();
    assert!(out.status.success(), "show {id}: {}", String::from_utf8_lossy(&out.stderr));
    json::parse(String::from_utf8_lossy(&out.stdout).trim()).unwrap()
}

fn num(m: &json::Value, k: &str) -> u64 {
    m.get(k).and_then(json::Value::as_u64).unwrap_or_else(|| panic!("{k} in {m:?}"))
}

/// Each syscall's name with how many calls it made and how many of them
/// the ring served (`events --json`'s `exitless`).
fn calls_by_name(home: &WarpHome, id: &str) -> std::collections::BTreeMap<String, (u64, u64)> {
    let out = home.warpctl().args(["events", "--json", id]).output().unwrap();
    assert!(out.status.success(), "events {id}: {}", String::from_utf8_lossy(&out.stderr));
    let mut by_name = std::collections::BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v = json::parse(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        if v.get("kind").and_then(json::Value::as_str) != Some("syscall") {
            continue;
        }
        let name = v.get("name").and_then(json::Value::as_str).unwrap().to_string();
        let exitless = match v.get("exitless") {
            Some(json::Value::Bool(b)) => *b,
            other => panic!("exitless is a boolean on every syscall line: {other:?} in {line}"),
        };
        let e = by_name.entry(name).or_insert((0, 0));
        e.0 += 1;
        e.1 += u64::from(exitless);
    }
    by_name
}

/// Checks what the ring served in a recording made with it: some of each
/// frequent call (those the program makes hundreds of times: were fstat or
/// clock_gettime to take the exit path, none would be served). How many
/// depends on the host's timing, not on us: the poller sleeps after 300 us
/// without a call, and a loaded machine stretches the gaps (on an idle
/// one the ring serves 99% of them; with two CPU hogs beside the test on
/// two cores, 2%, each call still answered rightly by the exit path). So
/// the share is printed, and the benchmark reports it.
fn assert_ring_served(home: &WarpHome, id: &str, frequent: &[&str]) {
    let by_name = calls_by_name(home, id);
    let (total, served) = by_name.values().fold((0, 0), |(t, s), &(n, e)| (t + n, s + e));
    eprintln!("{id}: the ring served {served} of {total} calls");
    for name in frequent {
        let (n, e) = by_name.get(*name).copied().unwrap_or_default();
        assert!(n >= 100 && e > 0, "{name}: {e} of {n} calls served by the ring: {by_name:?}");
    }
}

/// The ring needs a second CPU for its poller; with one, warpd turns it off.
fn two_cpus() -> bool {
    std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2)
}

/// The ring's poller and the program's vCPU each want a CPU; two
/// recordings at once on a two-core machine starve each other's ring and
/// its calls fall back to the exit path (correctly, but then the exit
/// counts below say nothing). The harness runs a file's tests on parallel
/// threads, so each test here holds this while it records.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn alone() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Replays `rec` with the ring off and checks it reproduces the recording.
fn replay_without_ring(home: &WarpHome, rec: &Recorded) {
    let id = rec.session_id().unwrap();
    let out: Output = home.warpctl().env("WARP_EXITLESS", "0").args(["replay", &id]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "replay without the ring: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, rec.outcome.stdout, "the same output without the ring");
}

#[test]
fn ring_calls_match_native_with_and_without_the_ring_and_replay_either_way() {
    let _alone = alone();
    let home = WarpHome::new("exitless");
    for flavour in FLAVOURS {
        let file = home.scratch("ring").join(format!("{flavour:?}"));
        let spec = Spec::prog("ring_calls", flavour).arg(&file);
        let native = warp_tests::run_native(&spec);
        assert_eq!(native.status, Status::Exited(0), "{}", native.stderr_str());
        assert!(native.stdout_str().contains("SIGPIPE caught 1 times"), "{}", native.stdout_str());
        let on = home.record(&spec, &[]);
        let off = home.record(&spec, &["--no-exitless"]);
        home.assert_same(&spec, &native, &on);
        home.assert_same(&spec, &native, &off);
        home.assert_replays(&spec, &on);
        home.assert_replays(&spec, &off);
        replay_without_ring(&home, &on);
        replay_without_ring(&home, &off);
        let (m_on, m_off) = (show(&home, &on.session_id().unwrap()), show(&home, &off.session_id().unwrap()));
        assert_eq!(num(&m_on, "syscalls"), num(&m_off, "syscalls"), "every call is counted: {m_on:?}");
        assert!(num(&m_off, "vm_exits") >= num(&m_off, "syscalls"), "without the ring each call exits: {m_off:?}");
        let off_served = calls_by_name(&home, &off.session_id().unwrap()).values().map(|&(_, e)| e).sum::<u64>();
        assert_eq!(off_served, 0, "--no-exitless: the ring served nothing");
        if two_cpus() {
            let frequent = ["read", "write", "fstat", "newfstatat", "clock_gettime"];
            assert_ring_served(&home, &on.session_id().unwrap(), &frequent);
            assert!(num(&m_on, "vm_exits") < num(&m_off, "vm_exits"), "the ring saves exits: {m_on:?}");
        } else {
            eprintln!("not checking the exit count: one CPU, so warpd turns the ring off");
        }
    }
}

#[test]
fn a_program_scribbling_over_the_ring_gets_linux_answers_and_replays() {
    let _alone = alone();
    let home = WarpHome::new("ring_hostile");
    for flavour in FLAVOURS {
        // Natively there is no ring page to scribble on.
        let native = warp_tests::run_native(&Spec::prog("ring_hostile", flavour));
        assert_eq!(native.status, Status::Exited(0), "{}", native.stderr_str());
        let spec = Spec::prog("ring_hostile", flavour).arg("scribble");
        let rec = home.record(&spec, &[]);
        assert_eq!(rec.outcome.status, Status::Exited(0), "{}", rec.warpctl_text());
        assert_eq!(rec.outcome.stdout_str(), native.stdout_str(), "the answers Linux gives");
        home.assert_replays(&spec, &rec);
        replay_without_ring(&home, &rec);
    }
    // The daemon and a new broker go on serving.
    let hello = Spec::prog("hello", FLAVOURS[0]);
    let after = home.record(&hello, &[]);
    assert_eq!(after.outcome.status, Status::Exited(0), "{}", after.warpctl_text());
}

/// A forked process gets a ring of its own: a shell's child running the
/// same calls leaves the VM far less often than once a call, prints what
/// it prints natively, and the tree replays with the ring and without.
#[test]
fn a_forked_process_takes_the_ring_too() {
    let _alone = alone();
    let home = WarpHome::new("exitless_fork");
    let file = home.scratch("ring").join("forked");
    let prog = warp_tests::prog("ring_calls", warp_tests::Flavour::Static);
    let spec = Spec::new("/bin/sh").args(["-c", &format!("{} {} | cat", prog.display(), file.display())]);
    let native = warp_tests::run_native(&spec);
    assert_eq!(native.status, Status::Exited(0), "{}", native.stderr_str());
    let rec = home.record(&spec, &[]);
    home.assert_same(&spec, &native, &rec);
    home.assert_replays(&spec, &rec);
    replay_without_ring(&home, &rec);
    let child = format!("{}.1", rec.session_id().unwrap());
    if two_cpus() {
        assert_ring_served(&home, &child, &["read", "write", "fstat", "clock_gettime"]);
    } else {
        eprintln!("not checking the exit count: one CPU, so warpd turns the ring off");
    }
}
