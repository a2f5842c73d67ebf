//! The service definitions in `launchd/`: the systemd unit passes
//! `systemd-analyze verify` (with the built warpd in place of the installed
//! path), and the launchd plist is a well-formed property list that starts
//! `warpd --system` (Python's plistlib reads it: plutil exists only on macOS).

use std::path::PathBuf;
use std::process::Command;

use warp_tests::product_binary;

fn launchd_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("launchd")
}

#[test]
fn the_systemd_unit_verifies() {
    if Command::new("systemd-analyze").arg("--version").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "CI must install systemd-analyze (package systemd, .ci/run)");
        eprintln!("skipped: systemd-analyze is not installed (apt-get install systemd)");
        return;
    }
    let unit = std::fs::read_to_string(launchd_dir().join("warpd.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/warpd --system\n"), "{unit}");
    for needed in ["DeviceAllow=/dev/kvm rw", "NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes"] {
        assert!(unit.contains(needed), "the unit lacks {needed}");
    }
    let warpd = product_binary("warpd");
    let dir = std::env::temp_dir().join(format!("warp-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("warpd.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/warpd", warpd.to_str().unwrap())).unwrap();
    let out = Command::new("systemd-analyze").arg("verify").arg(&path).output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(out.status.success(), "systemd-analyze verify: {said}");
    // Warnings about the unit itself (an unknown key, a bad value) name its file.
    assert!(!said.contains("warpd.service:"), "systemd-analyze verify: {said}");
}

#[test]
fn the_launchd_plist_is_well_formed() {
    let plist = launchd_dir().join("com.warpspeed.warpd.plist");
    let check = "import plistlib, sys\n\
                 p = plistlib.load(open(sys.argv[1], 'rb'))\n\
                 assert p['Label'] == 'com.warpspeed.warpd', p\n\
                 assert p['ProgramArguments'] == ['/usr/local/bin/warpd', '--system'], p\n\
                 print('ok')\n";
    let out = Command::new("/usr/bin/python3").arg("-c").arg(check).arg(&plist).output().unwrap();
    assert!(
        out.status.success() && out.stdout == b"ok\n",
        "{}: {}",
        plist.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}
