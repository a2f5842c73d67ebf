//! Trace size: a library mapped by many sessions is stored once. Two
//! recordings of the same dynamically linked program share their blobs
//! (ld.so, libc); removing one keeps the other replayable, and removing
//! both leaves no blob behind.

use std::path::Path;

use warp_tests::json;
use warp_tests::{Spec, Status, WarpHome};

fn show(home: &WarpHome, id: &str) -> json::Value {
    let out = home.warpctl().args(["show", "--json", id]).output().unwrap();
    assert!(out.status.success(), "show {id}: {}", String::from_utf8_lossy(&out.stderr));
    json::parse(String::from_utf8_lossy(&out.stdout).trim()).unwrap()
}

#[test]
fn libraries_are_stored_once_and_removed_with_their_last_user() {
    let program = Path::new("/usr/bin/true");
    if !program.exists() {
        eprintln!("skipped: /usr/bin/true is not installed");
        return;
    }
    let home = WarpHome::new("sharing");
    let spec = Spec::new(program);
    let first = home.record(&spec, &[]);
    let second = home.record(&spec, &[]);
    assert_eq!(first.outcome.status, Status::Exited(0), "{}", first.warpctl_text());
    let (a, b) = (first.session_id().unwrap(), second.session_id().unwrap());
    let (ma, mb) = (show(&home, &a), show(&home, &b));
    let num =
        |m: &json::Value, k: &str| m.get(k).and_then(json::Value::as_u64).unwrap_or_else(|| panic!("{k} in {m:?}"));
    // Alone, each session holds ld.so and libc: more than a megabyte.
    assert!(num(&mb, "logical_bytes") > 1 << 20, "{mb:?}");
    // The second added little: the images were already stored.
    assert!(num(&mb, "trace_bytes") * 10 < num(&mb, "logical_bytes"), "{mb:?}");
    assert!(num(&ma, "trace_bytes") > 1 << 20, "the first stored the images: {ma:?}");

    let rm = |id: &str| {
        let out = home.warpctl().args(["rm", id]).output().unwrap();
        assert!(out.status.success(), "rm {id}: {}", String::from_utf8_lossy(&out.stderr));
    };
    rm(&a);
    home.assert_replays(&spec, &second);
    rm(&b);
    let out = home.warpctl().args(["daemon", "stop"]).output().unwrap();
    assert!(out.status.success());
    let db = open_store(&home);
    assert_eq!(db.open_tree("blobs").unwrap().len(), 0, "no blob outlives its last session");
    assert_eq!(db.open_tree("events").unwrap().len(), 0);
}

/// The home's store, opened by the test itself (its daemon stopped). No
/// background flusher, so dropping it releases the lock for the next daemon.
fn open_store(home: &WarpHome) -> sled::Db {
    sled::Config::new().path(home.path().join("store")).flush_every_ms(None).open().unwrap()
}
