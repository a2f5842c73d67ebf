//! The exitless syscall path: calls the ring serves (read, write, lseek,
//! pread64, pwrite64, fstat and newfstatat of a descriptor, getdents64,
//! clock_gettime) give the program the
//! answers Linux gives, with the ring and without (`--no-exitless`); a
//! recording made either way replays either way (WARP_EXITLESS=0 turns it
//! off for replay) to the same bytes; with the ring, the calls leave the VM
//! far less often than once each; a program that scribbles over the ring's
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
        if two_cpus() {
            // 2,500 of its ~12,500 calls are fstat and clock_gettime: were
            // they to take the exit path, this would not hold.
            assert!(
                num(&m_on, "vm_exits") * 6 < num(&m_on, "syscalls"),
                "with the ring most calls do not leave the VM: {m_on:?}"
            );
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
    let m = show(&home, &child);
    if two_cpus() {
        assert!(
            num(&m, "vm_exits") * 4 < num(&m, "syscalls"),
            "the forked process's calls mostly stay in the VM: {m:?}"
        );
    } else {
        eprintln!("not checking the exit count: one CPU, so warpd turns the ring off");
    }
}
