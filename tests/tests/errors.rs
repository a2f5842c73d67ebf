//! warpctl's own failures, with the exit codes of `env` and `timeout`:
//! 127 when the program is not found, 126 when it is found but cannot be
//! run (not executable, not ELF, not x86_64, a dynamic linker that does not
//! exist), 125 when warpctl or the daemon fails (/dev/kvm missing).
//! Always with a message on lines starting `warpctl: `, and the program
//! never runs.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use warp_tests::{Flavour, Recorded, Spec, Status, WarpHome, FLAVOURS};

/// Asserts warpctl failed on its own with `code`, printed only lines of its
/// own, wrote nothing on stdout, and said something containing every one of
/// `mentions` (case-insensitively) on one of its lines.
fn assert_own_failure(home: &WarpHome, rec: &Recorded, code: i32, mentions: &[&str]) {
    let context = format!("\nstderr:\n{}\n{}", String::from_utf8_lossy(&rec.outcome.stderr), home.daemon_log_tail());
    assert_eq!(rec.outcome.status, Status::Exited(code), "warpctl's exit status{context}");
    assert!(rec.outcome.stdout.is_empty(), "nothing should reach stdout: {:?}{context}", rec.outcome.stdout_str());
    assert!(rec.program_stderr.is_empty(), "every stderr line should start with `warpctl: `{context}");
    let messages: Vec<&String> =
        rec.warpctl_lines.iter().filter(|l| !l.starts_with(warp_tests::SESSION_PREFIX)).collect();
    assert!(!messages.is_empty(), "warpctl should say why it failed{context}");
    for m in mentions {
        assert!(
            messages.iter().any(|l| l.to_lowercase().contains(&m.to_lowercase())),
            "warpctl's message should mention {m:?}{context}"
        );
    }
}

fn executable(path: &Path, bytes: &[u8]) -> PathBuf {
    fs::write(path, bytes).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
    path.to_path_buf()
}

#[test]
fn not_found_on_path_is_127() {
    let home = WarpHome::new("notfound");
    let name = "warp-test-no-such-program-5c1d";
    let rec = home.record(&Spec::new(name), &[]);
    assert_own_failure(&home, &rec, 127, &[name]);
}

#[test]
fn missing_path_is_127() {
    let home = WarpHome::new("notfound_path");
    let path = home.path().join("no-such-dir/no-such-program");
    let rec = home.record(&Spec::new(&path), &[]);
    assert_own_failure(&home, &rec, 127, &["no-such-program"]);
}

#[test]
fn file_without_execute_permission_is_126() {
    let home = WarpHome::new("noexec");
    let path = home.path().join("hello-not-executable");
    fs::copy(warp_tests::prog("hello", FLAVOURS[0]), &path).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    let rec = home.record(&Spec::new(&path), &[]);
    assert_own_failure(&home, &rec, 126, &["hello-not-executable"]);
}

#[test]
fn directory_is_126() {
    let home = WarpHome::new("directory");
    let dir = home.scratch("a-directory");
    let rec = home.record(&Spec::new(&dir), &[]);
    assert_own_failure(&home, &rec, 126, &["a-directory"]);
}

/// A `#!` script runs as a shell would run it: its interpreter gets the
/// script's path and arguments (and replay reproduces it). A script whose
/// interpreter is missing is refused with 126, naming the interpreter.
#[test]
fn scripts_run_through_their_interpreter() {
    let home = WarpHome::new("script");
    let path = executable(&home.path().join("a-script.sh"), b"#!/bin/sh -e\necho \"script ran: $0 $1\"\nexit 3\n");
    let native = home.check(&Spec::new(&path).arg("first"));
    assert_eq!(native.status, Status::Exited(3));
    assert_eq!(native.stdout_str(), format!("script ran: {} first\n", path.display()));

    let broken = executable(&home.path().join("broken.sh"), b"#!/nonexistent/interpreter\n");
    let rec = home.record(&Spec::new(&broken), &[]);
    assert_own_failure(&home, &rec, 126, &["broken.sh", "/nonexistent/interpreter"]);
}

#[test]
fn executable_that_is_not_elf_is_126() {
    let home = WarpHome::new("not_elf");
    let path = executable(&home.path().join("garbage"), b"\x00\x01\x02\x03 this is no ELF file\n");
    let rec = home.record(&Spec::new(&path), &[]);
    assert_own_failure(&home, &rec, 126, &["garbage"]);
}

/// A minimal ELF executable: header, one PT_LOAD covering the file, code.
fn elf(class64: bool, machine: u16, code: &[u8]) -> Vec<u8> {
    let (ehsize, phsize) = if class64 { (64u16, 56u16) } else { (52, 32) };
    let total = ehsize as u64 + phsize as u64 + code.len() as u64;
    let base = 0x40_0000u64;
    let entry = base + ehsize as u64 + phsize as u64;
    let mut v = Vec::new();
    v.extend_from_slice(b"\x7fELF");
    v.extend_from_slice(&[if class64 { 2 } else { 1 }, 1, 1, 0]); // class, LSB, version, SysV
    v.extend_from_slice(&[0; 8]);
    v.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    v.extend_from_slice(&machine.to_le_bytes());
    v.extend_from_slice(&1u32.to_le_bytes());
    let word = |v: &mut Vec<u8>, x: u64| {
        if class64 {
            v.extend_from_slice(&x.to_le_bytes())
        } else {
            v.extend_from_slice(&(x as u32).to_le_bytes())
        }
    };
    word(&mut v, entry);
    word(&mut v, ehsize as u64); // e_phoff
    word(&mut v, 0); // e_shoff
    v.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    v.extend_from_slice(&ehsize.to_le_bytes());
    v.extend_from_slice(&phsize.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes()); // e_phnum
    v.extend_from_slice(&(if class64 { 64u16 } else { 40 }).to_le_bytes());
    v.extend_from_slice(&[0; 4]); // e_shnum, e_shstrndx
    assert_eq!(v.len(), ehsize as usize);
    let (pt_load, rx) = (1u32, 5u32);
    if class64 {
        v.extend_from_slice(&pt_load.to_le_bytes());
        v.extend_from_slice(&rx.to_le_bytes());
        for x in [0, base, base, total, total, 0x1000] {
            v.extend_from_slice(&x.to_le_bytes());
        }
    } else {
        v.extend_from_slice(&pt_load.to_le_bytes());
        for x in [0, base, base, total, total] {
            v.extend_from_slice(&(x as u32).to_le_bytes());
        }
        v.extend_from_slice(&rx.to_le_bytes());
        v.extend_from_slice(&0x1000u32.to_le_bytes());
    }
    assert_eq!(v.len(), ehsize as usize + phsize as usize);
    v.extend_from_slice(code);
    v
}

#[test]
fn aarch64_elf_is_126() {
    let home = WarpHome::new("aarch64");
    // mov x0, #0; mov x8, #93 (exit); svc #0
    let code = [0x00, 0x00, 0x80, 0xd2, 0xa8, 0x0b, 0x80, 0xd2, 0x01, 0x00, 0x00, 0xd4];
    const EM_AARCH64: u16 = 183;
    let path = executable(&home.path().join("arm64-prog"), &elf(true, EM_AARCH64, &code));
    let rec = home.record(&Spec::new(&path), &[]);
    assert_own_failure(&home, &rec, 126, &["arm64-prog"]);
}

#[test]
fn i386_elf_is_126() {
    let home = WarpHome::new("i386");
    // mov eax, 1 (exit); xor ebx, ebx; int 0x80
    let code = [0xb8, 0x01, 0x00, 0x00, 0x00, 0x31, 0xdb, 0xcd, 0x80];
    const EM_386: u16 = 3;
    let path = executable(&home.path().join("i386-prog"), &elf(false, EM_386, &code));
    let rec = home.record(&Spec::new(&path), &[]);
    assert_own_failure(&home, &rec, 126, &["i386-prog"]);
}

/// A dynamically linked program whose PT_INTERP names a dynamic linker
/// that does not exist (the dynamic `hello` with its interpreter path
/// overwritten in place by a shorter one): found, but it cannot be run, so
/// 126, naming the missing path.
#[test]
fn missing_dynamic_linker_is_126() {
    let home = WarpHome::new("no_interp");
    let mut bytes = fs::read(warp_tests::prog("hello", Flavour::Dynamic)).unwrap();
    let (offset, size) = warp_tests::pt_interp(&bytes).expect("the dynamic hello has a PT_INTERP");
    let missing = b"/nonexistent/ld-x.so.2";
    assert!(missing.len() < size, "PT_INTERP of {size} bytes is too short for {:?}", String::from_utf8_lossy(missing));
    let interp = &mut bytes[offset..offset + size];
    interp.fill(0);
    interp[..missing.len()].copy_from_slice(missing);
    let path = executable(&home.path().join("hello-bad-interp"), &bytes);
    assert!(!Path::new("/nonexistent").exists());

    let rec = home.record(&Spec::new(&path), &[]);
    assert_own_failure(&home, &rec, 126, &["/nonexistent/ld-x.so.2"]);
}

/// The daemon cannot open its KVM device: 125, saying so, with no session
/// left behind (none is made); `doctor` says so too and exits 1.
/// WARP_KVM_DEVICE must reach the daemon, so this home is fresh: its
/// warpctl starts a new daemon with it.
#[test]
fn missing_kvm_is_125() {
    let home = WarpHome::new("no_kvm").with_env("WARP_KVM_DEVICE", "/nonexistent");
    for flavour in FLAVOURS {
        let rec = home.record(&Spec::prog("hello", flavour), &[]);
        assert_own_failure(&home, &rec, 125, &["/dev/kvm"]);
        assert!(rec.session_id().is_err(), "no session id is given: {:?}", rec.warpctl_lines);
    }
    let ls = home.warpctl().args(["ls", "--json"]).output().unwrap();
    assert!(ls.status.success());
    assert_eq!(
        String::from_utf8_lossy(&ls.stdout).lines().filter(|l| l.contains("\"id\"")).count(),
        0,
        "no session stored"
    );
    let doctor = home.warpctl().arg("doctor").output().unwrap();
    assert_eq!(doctor.status.code(), Some(1), "doctor on a machine that cannot record");
    let said = String::from_utf8_lossy(&doctor.stdout);
    assert!(said.contains("backend: none") && said.contains("/dev/kvm"), "{said}");
    // Which daemon answered, and where its store is.
    let first = said.lines().next().unwrap_or_default();
    assert!(first.starts_with("daemon: warpd ") && first.contains("embedded daemon of uid"), "{said}");
    assert!(first.ends_with(&format!("; store {}", home.path().join("store").display())), "{said}");
}

/// A variable the running daemon was started without is ignored by it,
/// and warpctl says so (with what to do); a daemon started with it is not
/// warned about.
#[test]
fn a_setting_the_running_daemon_lacks_is_reported() {
    let home = WarpHome::new("settings");
    let rec = home.record(&Spec::prog("hello", FLAVOURS[0]), &[]);
    assert_eq!(rec.outcome.status, Status::Exited(0));
    let ls = home.warpctl().env("WARP_MAX_SESSIONS", "3").args(["ls"]).output().unwrap();
    assert!(ls.status.success());
    let said = String::from_utf8_lossy(&ls.stderr).into_owned();
    assert!(
        said.lines().any(|l| l.starts_with("warpctl: WARP_MAX_SESSIONS=3 is ignored: the running warpd (pid ")
            && l.contains("was started without it")
            && l.contains("warpctl daemon stop")),
        "{said}"
    );
    let stop = home.warpctl().args(["daemon", "stop"]).output().unwrap();
    assert!(stop.status.success());
    // Started with it (warpctl passes its environment on): nothing to say.
    for _ in 0..2 {
        let ls = home.warpctl().env("WARP_MAX_SESSIONS", "3").args(["ls"]).output().unwrap();
        assert!(ls.status.success());
        assert!(!String::from_utf8_lossy(&ls.stderr).contains("ignored"), "{}", String::from_utf8_lossy(&ls.stderr));
    }
    // And the other way round: the daemon has it, this caller sets another value.
    let ls = home.warpctl().env("WARP_MAX_SESSIONS", "4").args(["ls"]).output().unwrap();
    let said = String::from_utf8_lossy(&ls.stderr).into_owned();
    assert!(said.contains("WARP_MAX_SESSIONS=4 is ignored") && said.contains("with WARP_MAX_SESSIONS=3"), "{said}");
}

/// Where a call has two things wrong, the error Linux checks first: the
/// same natively, recorded and replayed.
#[test]
fn errors_come_in_linuxs_order() {
    let home = WarpHome::new("check_order");
    for flavour in FLAVOURS {
        let native = home.check(&Spec::prog("check_order", flavour));
        assert_eq!(native.status, Status::Exited(0));
        let out = native.stdout_str();
        for want in [
            "ioctl closed fd unknown req: -1 EBADF",
            "fcntl closed fd unknown cmd: -1 EBADF",
            "execve missing bad argv: -1 ENOENT",
            "kill missing pid bad sig: -1 ESRCH",
            "madvise over a hole: -1 ENOMEM",
        ] {
            assert!(out.contains(want), "{want} in\n{out}");
        }
    }
}

/// A wrong command line: 125 for record and replay (their 1 and 2 are the
/// program's, or "diverged" and "unreadable"), 2 for the others; an unknown
/// option before `--` is refused, not run as the program; a program whose
/// name starts with `-` comes after `--`.
#[test]
fn usage_errors_have_exit_statuses_that_compose() {
    let home = WarpHome::new("usage");
    let run = |args: &[&str]| {
        let out = home.warpctl().args(args).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned(), out.stdout.is_empty())
    };
    for (args, code) in [
        (&["record", "--bogus", "--", "true"][..], 125),
        (&["record"][..], 125),
        (&["replay", "--bogus"][..], 125),
        (&["replay", "x", "--gdb", "--gdbserver", ":1"][..], 125),
        (&["ls", "--bogus"][..], 2),
        (&["show"][..], 2),
    ] {
        let (status, err, quiet) = run(args);
        assert_eq!(status, Some(code), "{args:?}: {err}");
        assert!(quiet, "{args:?}: nothing on stdout");
        assert!(err.lines().all(|l| l.starts_with("warpctl: ")), "{args:?}: {err}");
        assert!(err.contains("Usage:") || err.contains("usage"), "{args:?}: a usage line: {err}");
    }
    let (status, err, _) = run(&["record", "--", "-no-such-program"]);
    assert_eq!(status, Some(127), "after --, a name starting with - is the program: {err}");
    assert!(err.contains("-no-such-program"), "{err}");
}
