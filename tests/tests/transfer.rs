//! Export and import: a session as one self-contained, checksummed,
//! compressed file that another daemon (another machine) can import and
//! replay without anything of the recording machine; damaged files are
//! refused and store nothing.

use std::fs;

use warp_tests::{Flavour, Spec, Status, WarpHome, FLAVOURS};

fn warpctl_ok(home: &WarpHome, args: &[&str]) -> String {
    let out = home.warpctl().args(args).output().unwrap();
    assert!(out.status.success(), "warpctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn warpctl_refused(home: &WarpHome, args: &[&str]) -> String {
    let out = home.warpctl().args(args).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "warpctl {args:?} should be refused with 2");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(err.lines().all(|l| l.starts_with("warpctl: ")), "{err}");
    err
}

#[test]
fn an_exported_session_replays_on_another_daemon() {
    let here = WarpHome::new("export_src");
    let there = WarpHome::new("export_dst");
    let file = here.scratch("out").join("session.trace");
    for flavour in FLAVOURS {
        let spec = Spec::prog("nondet", flavour);
        let recorded = here.record(&spec, &[]);
        assert_eq!(recorded.outcome.status, Status::Exited(0));
        let id = recorded.session_id().unwrap();
        // (The same file each time round: --force replaces it.)
        warpctl_ok(&here, &["export", &id, "-o", file.to_str().unwrap(), "--force"]);
        // The recording machine's copy goes: the file is all there is.
        warpctl_ok(&here, &["rm", &id]);
        // Recorded there after the exported one was recorded here: by start
        // time it is newer, but the import that follows is `latest`.
        let local = there.record(&Spec::prog("hello", flavour), &[]);
        assert_eq!(local.outcome.status, Status::Exited(0));
        let new_id = warpctl_ok(&there, &["import", file.to_str().unwrap()]).trim().to_string();
        assert!(!new_id.is_empty() && !new_id.contains(' '), "{new_id:?}");
        let replayed = there.replay(&new_id, &[]);
        assert_eq!(replayed.outcome.status, Status::Exited(0), "{}", replayed.warpctl_text());
        assert_eq!(replayed.outcome.stdout, recorded.outcome.stdout, "the replay prints what the recording printed");
        let show = warpctl_ok(&there, &["show", "--json", &new_id]);
        assert!(show.contains("\"status\":\"complete\""), "{show}");
        assert!(show.contains(&format!("\"imported_from\":\"{id}\"")), "where it came from: {show}");
        // The newest import is `latest`, though recorded before the sessions there.
        let latest = warpctl_ok(&there, &["show", "latest"]);
        assert!(latest.lines().next().is_some_and(|l| l.ends_with(&new_id)), "{latest}");
        assert!(latest.contains(&format!("it was session {id} where it was recorded")), "{latest}");
    }
    // `export -o -` into a reader that goes away (the file is far larger
    // than a pipe holds): quietly 141.
    let size = fs::metadata(&file).unwrap().len();
    assert!(size > 1 << 17, "the test needs an export larger than a pipe: {size} bytes");
    let script =
        format!("set -o pipefail; '{}' export latest -o - | head -c 10 >/dev/null", warp_tests::warpctl().display());
    let out =
        std::process::Command::new("bash").arg("-c").arg(&script).env("WARP_HOME", there.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(141), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "nothing said: {}", String::from_utf8_lossy(&out.stderr));
    // `import -` reads the file from standard input.
    let out = there.warpctl().args(["import", "-"]).stdin(fs::File::open(&file).unwrap()).output().unwrap();
    assert!(out.status.success(), "import -: {}", String::from_utf8_lossy(&out.stderr));
    let new_id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let replayed = there.replay(&new_id, &[]);
    assert_eq!(replayed.outcome.status, Status::Exited(0), "{}", replayed.warpctl_text());
}

#[test]
fn damaged_truncated_and_foreign_files_are_refused() {
    let here = WarpHome::new("import_bad");
    let dir = here.scratch("files");
    let recorded = here.record(&Spec::prog("hello", FLAVOURS[0]), &[]);
    let id = recorded.session_id().unwrap();
    let good = dir.join("good.trace");
    warpctl_ok(&here, &["export", &id, "-o", good.to_str().unwrap()]);
    let bytes = fs::read(&good).unwrap();
    let before = warpctl_ok(&here, &["ls", "--json"]).lines().count();

    let mut flipped = bytes.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x10;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("flipped.trace", flipped, "not a valid trace file"),
        ("truncated.trace", bytes[..bytes.len() * 2 / 3].to_vec(), "not a valid trace file"),
        ("short.trace", bytes[..10].to_vec(), "not a valid trace file"),
        ("foreign.trace", b"#!/bin/sh\necho not a trace\n".to_vec(), "header"),
    ];
    for (name, data, says) in cases {
        let path = dir.join(name);
        fs::write(&path, data).unwrap();
        let err = warpctl_refused(&here, &["import", path.to_str().unwrap()]);
        assert!(err.contains(name) && err.contains(says), "{err}");
    }
    assert_eq!(warpctl_ok(&here, &["ls", "--json"]).lines().count(), before, "nothing was stored");
    let missing = dir.join("missing.trace");
    warpctl_refused(&here, &["import", missing.to_str().unwrap()]);
    let out = dir.join("never.trace");
    warpctl_refused(&here, &["export", "nosuchid", "-o", out.to_str().unwrap()]);
    assert!(fs::read_dir(&dir).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().starts_with("never")));
}

/// A small file that decompresses to much more than the daemon allows (a
/// 64 MiB read of zeros, a few KiB exported) is refused as it is read, and
/// nothing of it stays in the store; within the limit it is imported a
/// piece at a time.
#[test]
fn a_file_that_decompresses_past_the_limit_is_refused() {
    let here = WarpHome::new("import_bomb");
    let dir = here.scratch("files");
    if !std::path::Path::new("/usr/bin/dd").exists() && !std::path::Path::new("/bin/dd").exists() {
        eprintln!("SKIPPED: dd is not installed");
        return;
    }
    let spec = Spec::new("dd").args(["if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"]).env("PATH", "/usr/bin:/bin");
    let recorded = here.record(&spec, &[]);
    assert_eq!(recorded.outcome.status, Status::Exited(0), "{}", recorded.warpctl_text());
    let id = recorded.session_id().unwrap();
    let file = dir.join("zeros.trace");
    warpctl_ok(&here, &["export", &id, "-o", file.to_str().unwrap()]);
    let size = fs::metadata(&file).unwrap().len();
    assert!(size < 4 << 20, "zeros compress: {size} bytes");
    let before = warpctl_ok(&here, &["ls", "--json"]).lines().count();
    // A daemon that takes at most 16 MiB decompressed.
    warpctl_ok(&here, &["daemon", "stop"]);
    let out = here
        .warpctl()
        .env("WARP_IMPORT_MAX_BYTES", "16777216")
        .args(["import", file.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "refused: {err}");
    assert!(err.contains("decompresses to more than 16777216 bytes"), "{err}");
    assert_eq!(warpctl_ok(&here, &["ls", "--json"]).lines().count(), before, "nothing stored");
    // The same file within the limit imports and replays; the daemon (a
    // fresh one) never held the 64 MiB blob: it was stored as it was read.
    warpctl_ok(&here, &["daemon", "stop"]);
    let new_id = warpctl_ok(&here, &["import", file.to_str().unwrap()]).trim().to_string();
    let status = warpctl_ok(&here, &["daemon", "status"]);
    let pid = status.split("(pid ").nth(1).and_then(|s| s.split(',').next()).expect("a pid in daemon status");
    let proc_status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let peak_kib: u64 = proc_status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    assert!(peak_kib < 64 << 10, "warpd peaked at {peak_kib} KiB importing a 64 MiB blob");
    let replayed = here.replay(&new_id, &[]);
    assert_eq!(replayed.outcome.status, Status::Exited(0), "{}", replayed.warpctl_text());
}

/// `export` does not replace a file unless told to (`--force`), and `-o -`
/// writes the same bytes to standard output; `rm` takes several sessions
/// and goes on past one it cannot remove.
#[test]
fn export_keeps_files_and_writes_to_stdout_and_rm_takes_several() {
    let here = WarpHome::new("export_force");
    let dir = here.scratch("files");
    let ids: Vec<String> = (0..3)
        .map(|_| {
            let r = here.record(&Spec::prog("hello", Flavour::Static), &[]);
            r.session_id().unwrap()
        })
        .collect();
    let file = dir.join("one.trace");
    warpctl_ok(&here, &["export", &ids[0], "-o", file.to_str().unwrap()]);
    let first = fs::read(&file).unwrap();
    let err = warpctl_refused(&here, &["export", &ids[1], "-o", file.to_str().unwrap()]);
    assert!(err.contains("exists; --force replaces it"), "{err}");
    assert_eq!(fs::read(&file).unwrap(), first, "the file is left as it was");
    warpctl_ok(&here, &["export", &ids[1], "-o", file.to_str().unwrap(), "--force"]);
    let out = here.warpctl().args(["export", &ids[1], "-o", "-"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, fs::read(&file).unwrap(), "-o - writes the same file to stdout");
    assert!(!dir.join("-").exists(), "no file named -");
    // Two removed, one unknown said: exit 2.
    let out = here.warpctl().args(["rm", &ids[0], "nosuchid", &ids[2]]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let ls = warpctl_ok(&here, &["ls"]);
    assert!(!ls.contains(&ids[0]) && !ls.contains(&ids[2]) && ls.contains(&ids[1]), "{ls}");
}

/// On a terminal, export, import, gc and a long replay (one of 16384
/// events or more, or of more than a second) show how far they are on stderr, and leave the same results;
/// elsewhere (a pipe, a file) they print nothing of it.
#[test]
fn long_operations_show_progress_on_a_terminal_only() {
    let home = WarpHome::new("progress");
    if home.on_terminal("--version", &[]).is_none() {
        eprintln!("not checking progress on a terminal: script(1) (util-linux) is not installed");
        return;
    }
    // About 19000 events: more than a replay shows progress from its start with.
    let script = "i=0; while [ $i -lt 700 ]; do i=$((i+1)); echo $i >/dev/null; done; echo done";
    let recorded = home.record(&Spec::new("/bin/sh").args(["-c", script]), &[]);
    assert_eq!(recorded.outcome.status, Status::Exited(0), "{}", recorded.warpctl_text());
    let id = recorded.session_id().unwrap();
    let (status, shown) = home.on_terminal(&format!("replay {id}"), &[]).unwrap();
    assert!(status.success(), "{shown}");
    assert!(shown.contains(&format!("warpctl: replaying {id} [")) && shown.contains(" events ("), "{shown:?}");
    assert!(shown.contains("done"), "the program's output is there too: {shown:?}");
    let plain = home.replay(&id, &[]);
    assert_eq!(plain.outcome.status, Status::Exited(0));
    assert!(plain.warpctl_lines.iter().all(|l| !l.contains("replaying")), "{:?}", plain.warpctl_lines);

    let dir = home.scratch("files");
    let (on_tty, piped) = (dir.join("tty.trace"), dir.join("piped.trace"));
    let (status, shown) = home.on_terminal(&format!("export {id} -o {}", on_tty.display()), &[]).unwrap();
    assert!(status.success() && shown.contains(&format!("warpctl: exporting {id}")), "{shown:?}");
    let out = home.warpctl().args(["export", &id, "-o"]).arg(&piped).output().unwrap();
    assert!(out.status.success() && out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(fs::read(&on_tty).unwrap(), fs::read(&piped).unwrap(), "the same file either way");

    let (status, shown) = home.on_terminal(&format!("import {}", on_tty.display()), &[]).unwrap();
    assert!(status.success() && shown.contains("warpctl: importing "), "{shown:?}");
    let out = home.warpctl().arg("import").arg(&piped).output().unwrap();
    assert!(out.status.success() && out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));

    let (status, shown) = home.on_terminal("gc", &[]).unwrap();
    assert!(status.success() && shown.contains("warpctl: looking"), "{shown:?}");
    let out = home.warpctl().arg("gc").output().unwrap();
    assert!(out.status.success() && out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
}
