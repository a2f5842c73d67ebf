//! A full disk during a recording: the store lives on a small tmpfs (this
//! needs root, to mount it); a program that reads more random bytes than
//! fit is stopped with a message, its session is incomplete (not left
//! "recording", not corrupt), the recording made before it still replays,
//! and the daemon goes on serving; removing a recording on that disk says
//! plainly why it cannot, the daemon still stops when asked, and with room
//! the store opens whole again.

use std::path::PathBuf;
use std::process::Command;

use warp_tests::{Spec, Status, WarpHome};

/// A tmpfs mounted for the test, unmounted (lazily) when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(size: &str) -> Result<Tmpfs, String> {
        let dir = std::env::temp_dir().join(format!("warp-full-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            let _ = std::fs::remove_dir(&dir);
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(Tmpfs(dir))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn a_full_disk_stops_that_recording_and_harms_no_other() {
    let fs = match Tmpfs::mount("48m") {
        Ok(fs) => fs,
        Err(why) => {
            eprintln!("skipped: cannot mount a small tmpfs for the store here ({why}); needs root with CAP_SYS_ADMIN");
            return;
        }
    };
    // The home (socket, store, log) on the small file system; 8 MiB kept free (sled needs a few MiB of its own to go on: with 2 it met ENOSPC in a removal after the stop).
    let home = WarpHome::at(&fs.0.join("home")).with_env("WARP_STORE_RESERVE_MB", "8");
    let first = home.record(&Spec::new("/bin/echo").arg("before the disk filled"), &[]);
    assert_eq!(first.outcome.status, Status::Exited(0), "{}", first.warpctl_text());
    let first = first.session_id().unwrap();

    // 96 MB of random bytes read: more than the disk holds.
    let big = home.record(&Spec::new("/usr/bin/head").args(["-c", "96000000", "/dev/urandom"]), &[]);
    let said = big.warpctl_text();
    assert_eq!(big.outcome.status, Status::Exited(125), "{said}");
    assert!(
        said.contains("the disk holding the store has") && said.contains("stopped so that the store stays whole"),
        "{said}"
    );
    let stopped = big.session_id().unwrap();

    let o = home.ctl(&["show", "--json", &stopped]);
    assert!(
        o.stdout_str().contains("\"status\":\"incomplete\""),
        "marked incomplete: {}{}",
        o.stdout_str(),
        o.stderr_str()
    );
    let r = home.replay(&first, &[]);
    assert_eq!(r.outcome.status, Status::Exited(0), "the earlier recording still replays: {}", r.warpctl_text());
    assert_eq!(r.outcome.stdout_str(), "before the disk filled\n");
    // The daemon still records what fits.
    let after = home.record(&Spec::new("/bin/echo").arg("after"), &[]);
    assert_eq!(after.outcome.status, Status::Exited(0), "{}", after.warpctl_text());
    // Removing the stopped recording with only the reserve left: sled
    // writes a removal before it frees anything (about as much again as
    // the session holds), so on this disk it meets ENOSPC. It must say so
    // plainly; the daemon must still stop when asked, and once there is
    // room the store opens whole, the removal goes through and the
    // earlier recording replays.
    let o = home.ctl(&["rm", &stopped]);
    let said = format!("{}{}", o.stdout_str(), o.stderr_str());
    eprintln!("rm with {} bytes free: {:?}: {said}", free_bytes(&fs.0), o.status);
    if o.status != Status::Exited(0) {
        assert!(said.contains("the disk holding the store is full") && said.contains("warpctl daemon stop"), "{said}");
        let started = std::time::Instant::now();
        let stop = home.ctl(&["daemon", "stop"]);
        assert_eq!(stop.status, Status::Exited(0), "{}", stop.stderr_str());
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "the daemon stopped: {:?}", started.elapsed());
        let grown = Command::new("mount").args(["-o", "remount,size=160m"]).arg(&fs.0).status().unwrap();
        assert!(grown.success(), "remount the tmpfs larger");
        let o = home.ctl(&["rm", &stopped]);
        assert_eq!(o.status, Status::Exited(0), "rm with room: {}{}", o.stdout_str(), o.stderr_str());
    }
    let o = home.ctl(&["ls"]);
    assert!(!o.stdout_str().contains(&stopped) && o.stdout_str().contains(&first), "{}", o.stdout_str());
    let again = home.record(&Spec::new("/bin/echo").arg("again"), &[]);
    assert_eq!(again.outcome.status, Status::Exited(0), "{}", again.warpctl_text());
    let r = home.replay(&first, &[]);
    assert_eq!(r.outcome.status, Status::Exited(0), "{}", r.warpctl_text());
    assert_eq!(r.outcome.stdout_str(), "before the disk filled\n");
    home.stop_daemon();
}

/// Bytes free to an unprivileged writer on the file system holding `path`.
fn free_bytes(path: &std::path::Path) -> u64 {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a zeroed statvfs is a valid value of it (plain integers).
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: statvfs with a valid C string and a struct to fill.
    let r = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    assert_eq!(r, 0, "statvfs {}", path.display());
    st.f_bavail as u64 * st.f_frsize as u64
}
