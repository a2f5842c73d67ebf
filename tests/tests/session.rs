//! The session id (`warpctl: session ID`, `--id-file`), `$PATH` lookup and
//! `-v`.

use std::fs;
use std::time::Duration;

use warp_tests::{progs_dir, Input, Spec, Status, WarpHome, FLAVOURS};

fn read_id_file(path: &std::path::Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("read --id-file {}: {e}", path.display()));
    text.strip_suffix('\n').unwrap_or(&text).to_string()
}

#[test]
fn id_file_holds_the_printed_id() {
    let home = WarpHome::new("id_file");
    for flavour in FLAVOURS {
        let spec = Spec::prog("hello", flavour);
        let id_file = home.path().join(format!("id-{}", flavour.suffix()));
        let id_arg = id_file.to_str().unwrap();
        let recorded = home.record(&spec, &["--id-file", id_arg]);
        let native = warp_tests::run_native(&spec);
        home.assert_same(&spec, &native, &recorded);
        let printed = recorded.session_id().unwrap();
        assert_eq!(read_id_file(&id_file), printed);
    }
}

/// The id is known before the program starts: the file exists while the
/// program is still blocked in its first read().
#[test]
fn id_file_is_written_before_the_program_runs() {
    let home = WarpHome::new("id_early");
    for flavour in FLAVOURS {
        let spec = Spec::prog("sleep_forever", flavour).arg("read").stdin(Input::Held);
        let id_file = home.path().join(format!("id-{}", flavour.suffix()));
        let mut running = home.spawn_record(&spec, &["--id-file", id_file.to_str().unwrap()]);
        running.wait_for_stdout("ready\n");
        let early = read_id_file(&id_file);
        assert!(!early.is_empty(), "--id-file is empty while the program runs");
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(running.stdout_so_far(), b"ready\n", "the program should be blocked in read()");
        running.close_stdin();
        let recorded = warp_tests::Recorded::new(running.finish());
        assert_eq!(recorded.outcome.status, Status::Exited(0), "warpctl's lines:\n{}", recorded.warpctl_text());
        assert_eq!(recorded.outcome.stdout_str(), "ready\neof\n");
        assert_eq!(recorded.session_id().unwrap(), early);
    }
}

#[test]
fn session_ids_are_unique() {
    let home = WarpHome::new("unique_ids");
    let spec = Spec::prog("hello", FLAVOURS[0]);
    let a = home.record(&spec, &[]).session_id().unwrap();
    let b = home.record(&spec, &[]).session_id().unwrap();
    assert_ne!(a, b);
}

/// A bare program name is looked up on $PATH, as a shell does, and argv[0]
/// is passed as given.
#[test]
fn program_is_found_on_path() {
    let home = WarpHome::new("path_lookup");
    let path = std::env::join_paths(
        std::iter::once(progs_dir()).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
    )
    .unwrap();
    for flavour in FLAVOURS {
        let name = warp_tests::prog_name("args_env", flavour);
        let spec = Spec::new(&name).arg("x").env("PATH", &path);
        let native = home.check(&spec);
        assert_eq!(native.status, Status::Exited(0));
        assert!(native.stdout_str().starts_with(&format!("argc=2\nargv[0]=[{name}]\nargv[1]=[x]\n")));
    }
}

/// With -v warpctl may say more, but only on lines of its own: the
/// program's output is untouched.
#[test]
fn verbose_output_is_all_prefixed() {
    let home = WarpHome::new("verbose");
    for flavour in FLAVOURS {
        for name in ["unknown_syscall", "stderr_out"] {
            let spec = Spec::prog(name, flavour);
            let native = warp_tests::run_native(&spec);
            let recorded = home.record(&spec, &["-v"]);
            assert_eq!(
                recorded.outcome.status,
                Status::Exited(native.status.shell_code()),
                "warpctl's lines:\n{}",
                recorded.warpctl_text()
            );
            assert_eq!(recorded.outcome.stdout, native.stdout);
            // When the program leaves its stderr mid-line, warpctl ends that
            // line before its own closing line, so that every warpctl line
            // starts a line: that one newline is warpctl's, not the program's.
            let mut want = native.stderr_str();
            if !want.is_empty() && !want.ends_with('\n') {
                want.push('\n');
            }
            assert_eq!(String::from_utf8_lossy(&recorded.program_stderr), want, "stderr without warpctl's lines");
            recorded.session_id().unwrap();
        }
    }
}
