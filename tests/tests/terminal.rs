//! A program whose stdin and stdout are a terminal (a pseudo-terminal the
//! test drives): isatty, the window size, termios and a line typed at the
//! terminal behave the same natively and recorded, and the recording
//! replays.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use warp_tests::{Spec, WarpHome, FLAVOURS};

/// Runs `cmd` with a new pseudo-terminal as its stdin, stdout and stderr;
/// types `input` once it printed `prompt`; returns everything it printed and
/// its exit status.
fn on_terminal(mut cmd: Command, prompt: &str, input: &[u8]) -> (String, i32) {
    let (mut m, mut s) = (-1, -1);
    let ws = libc::winsize { ws_row: 33, ws_col: 101, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: openpty with valid out-pointers and a window size.
    let r = unsafe { libc::openpty(&mut m, &mut s, std::ptr::null_mut(), std::ptr::null(), &ws) };
    assert_eq!(r, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened and are owned here.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(m), OwnedFd::from_raw_fd(s)) };
    let io = |fd: &OwnedFd| Stdio::from(fd.try_clone().unwrap());
    cmd.stdin(io(&slave)).stdout(io(&slave)).stderr(io(&slave));
    let mut child = cmd.spawn().unwrap();
    drop(slave);
    let mut file = std::fs::File::from(master);
    // SAFETY: fcntl on our own descriptor.
    unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
    let mut out = Vec::new();
    let mut typed = false;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut buf = [0u8; 4096];
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if let Ok(Some(_)) = child.try_wait() {
                    // Drain what is left, then stop.
                    std::thread::sleep(Duration::from_millis(50));
                    if let Ok(n) = file.read(&mut buf) {
                        out.extend_from_slice(&buf[..n]);
                    }
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(_) => break, // EIO: the last holder of the terminal is gone
        }
        if !typed && String::from_utf8_lossy(&out).contains(prompt) {
            file.write_all(input).unwrap();
            typed = true;
        }
        assert!(Instant::now() < deadline, "no end on the terminal: {}", String::from_utf8_lossy(&out));
    }
    let status = child.wait().unwrap();
    (String::from_utf8_lossy(&out).into_owned(), status.code().unwrap_or(-1))
}

#[test]
fn a_terminal_is_the_programs_terminal() {
    let home = WarpHome::new("tty");
    for flavour in FLAVOURS {
        let spec = Spec::prog("tty_check", flavour);
        let (native, ncode) = on_terminal(spec.native_command(), "canonical", b"typed at the terminal\n");
        assert_eq!(ncode, 0, "{native}");
        assert!(native.contains("stdin tty 1, stdout tty 1"), "{native}");
        assert!(native.contains("window 101x33"), "{native}");
        assert!(native.contains("read: typed at the terminal"), "{native}");

        let (recorded, rcode) = on_terminal(home.record_command(&spec, &[]), "canonical", b"typed at the terminal\n");
        assert_eq!(rcode, 0, "{recorded}");
        // warpctl's own line is on the same terminal; the rest is the program's.
        let program: String = recorded.split_inclusive('\n').filter(|l| !l.starts_with("warpctl: ")).collect();
        assert_eq!(program, native);
        let id = recorded
            .lines()
            .find_map(|l| l.strip_prefix("warpctl: session "))
            .map(|s| s.trim().to_string())
            .expect("a session line");
        // Replay needs no terminal: the answers come from the trace.
        let replayed = home.replay(&id, &[]);
        assert_eq!(replayed.outcome.status, warp_tests::Status::Exited(0), "{}", replayed.warpctl_text());
        assert!(replayed.outcome.stdout_str().contains("read: typed at the terminal"));
    }
}
