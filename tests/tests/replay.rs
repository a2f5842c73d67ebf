//! Replay: every recording replays to the same bytes with status 0 (the
//! program tests check that for each program through `WarpHome::check`);
//! here, programs whose output differs from run to run, a trace whose
//! recorded read was changed (divergence, status 1), damaged and missing
//! blobs (status 2), and unknown sessions.

use std::fs;

use prost::Message;
use warp_proto::trace::{data, event, Event};
use warp_tests::{Spec, Status, WarpHome, FLAVOURS};

/// Each recording of a time- and random-dependent program matches the
/// native run in form and replays to exactly its own output.
#[test]
fn nondeterministic_programs_replay_exactly() {
    let home = WarpHome::new("nondet");
    for flavour in FLAVOURS {
        let spec = Spec::prog("nondet", flavour);
        let native = warp_tests::run_native(&spec);
        let keys = |out: &str| out.lines().map(|l| l.split(' ').next().unwrap_or("").to_string()).collect::<Vec<_>>();
        let mut outputs = Vec::new();
        for _ in 0..3 {
            let recorded = home.record(&spec, &[]);
            assert_eq!(recorded.outcome.status, Status::Exited(0), "{}", recorded.warpctl_text());
            let out = recorded.outcome.stdout_str();
            assert_eq!(keys(&out), keys(&native.stdout_str()), "same form as native:\n{out}");
            home.assert_replays(&spec, &recorded);
            outputs.push(out);
        }
        let random = |o: &String| o.lines().find(|l| l.starts_with("random ")).unwrap().to_string();
        assert_ne!(random(&outputs[0]), random(&outputs[1]), "getrandom differs between recordings");
    }
}

/// Stops the home's daemon so the test may open its store.
fn stop_daemon(home: &WarpHome) {
    let out = home.warpctl().args(["daemon", "stop"]).output().unwrap();
    assert!(out.status.success(), "daemon stop: {}", String::from_utf8_lossy(&out.stderr));
}

/// The events of a session, as (key, event), from the store's sled trees.
fn events(db: &sled::Db, id: &str) -> Vec<(sled::IVec, Event)> {
    let mut prefix = id.as_bytes().to_vec();
    prefix.push(0);
    db.open_tree("events")
        .unwrap()
        .scan_prefix(&prefix)
        .map(|kv| {
            let (k, v) = kv.unwrap();
            (k, Event::decode(v.as_ref()).unwrap())
        })
        .collect()
}

fn record_echo(home: &WarpHome, contents: &[u8]) -> (Spec, String) {
    let file = home.scratch("echo").join("input");
    fs::write(&file, contents).unwrap();
    let spec = Spec::prog("echo_file", FLAVOURS[0]).arg(&file);
    // The exit path's events (the exitless ring's are tampered with in exitless.rs).
    let recorded = home.record(&spec, &["--no-exitless"]);
    assert_eq!(recorded.outcome.status, Status::Exited(0), "{}", recorded.warpctl_text());
    let mut want = contents.to_vec();
    want.extend_from_slice(b"EXIT-SUCCESS\n");
    assert_eq!(recorded.outcome.stdout, want);
    home.assert_replays(&spec, &recorded);
    (spec, recorded.session_id().unwrap())
}

#[test]
fn a_changed_read_diverges_at_the_write() {
    let home = WarpHome::new("tamper");
    let (_, id) = record_echo(&home, b"the bytes the read returned\n");
    stop_daemon(&home);
    {
        let db = open_store(&home);
        let tree = db.open_tree("events").unwrap();
        let (key, mut ev) = events(&db, &id)
            .into_iter()
            .find(|(_, e)| matches!(&e.kind, Some(event::Kind::Call(c)) if c.nr == 0 && !c.writes.is_empty()))
            .expect("a recorded read that wrote memory");
        let Some(event::Kind::Call(call)) = &mut ev.kind else { unreachable!() };
        let Some(data::Where::Inline(bytes)) = &mut call.writes[0].data.as_mut().unwrap().r#where else {
            panic!("a short read is stored inline")
        };
        bytes[0] ^= 0x20;
        tree.insert(key, ev.encode_to_vec()).unwrap();
        db.flush().unwrap();
    }
    let replayed = home.replay(&id, &[]);
    assert_eq!(replayed.outcome.status, Status::Exited(1), "{}", replayed.warpctl_text());
    let report = replayed.warpctl_text();
    eprintln!("divergence report:\n{report}");
    assert!(report.contains("diverged"), "{report}");
    assert!(report.contains("write"), "the divergence is at the write: {report}");
}

/// The events a stored value holds: one, or a chunk of the exitless
/// ring's (a 0xff byte, then length-delimited events).
fn decode_value(v: &[u8]) -> Vec<Event> {
    match v.split_first() {
        Some((0xff, mut rest)) => {
            let mut out = Vec::new();
            while !rest.is_empty() {
                out.push(Event::decode_length_delimited(&mut rest).unwrap());
            }
            out
        }
        _ => vec![Event::decode(v).unwrap()],
    }
}

fn encode_value(events: &[Event]) -> Vec<u8> {
    if let [one] = events {
        return one.encode_to_vec();
    }
    let mut v = vec![0xff];
    for e in events {
        e.encode_length_delimited(&mut v).unwrap();
    }
    v
}

/// The same tampering with a read the exitless ring served (a RingCall,
/// perhaps inside a chunk of them): the replay diverges at the write.
#[test]
fn a_changed_ring_read_diverges_at_the_write() {
    let home = WarpHome::new("tamper_ring");
    let file = home.scratch("ring").join("file");
    // Its reads of the file it wrote go into a checksum it prints.
    let spec = Spec::prog("ring_calls", FLAVOURS[0]).arg(&file);
    let recorded = home.record(&spec, &[]);
    assert_eq!(recorded.outcome.status, Status::Exited(0), "{}", recorded.warpctl_text());
    home.assert_replays(&spec, &recorded);
    let id = recorded.session_id().unwrap();
    stop_daemon(&home);
    let tampered = {
        let db = open_store(&home);
        let tree = db.open_tree("events").unwrap();
        let mut prefix = id.as_bytes().to_vec();
        prefix.push(0);
        let mut done = false;
        for kv in tree.scan_prefix(&prefix) {
            let (key, value) = kv.unwrap();
            let mut events = decode_value(&value);
            for e in &mut events {
                if let Some(event::Kind::Ring(r)) = &mut e.kind {
                    if let Some(data::Where::Inline(bytes)) = r.output.as_mut().and_then(|d| d.r#where.as_mut()) {
                        if r.nr == 0 && bytes.starts_with(b"line ") && !done {
                            bytes[0] ^= 0x20;
                            done = true;
                        }
                    }
                }
            }
            if done {
                tree.insert(key, encode_value(&events)).unwrap();
                break;
            }
        }
        db.flush().unwrap();
        done
    };
    if !tampered && std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        eprintln!("skipped: one CPU, so warpd turned the ring off (the exit path's reads are tampered with above)");
        return;
    }
    assert!(tampered, "a read of the file the ring served, in the trace");
    let replayed = home.replay(&id, &[]);
    assert_eq!(replayed.outcome.status, Status::Exited(1), "{}", replayed.warpctl_text());
    let report = replayed.warpctl_text();
    assert!(report.contains("diverged") && report.contains("write"), "the divergence is at a write: {report}");
}

#[test]
fn a_damaged_blob_is_refused_by_name() {
    let home = WarpHome::new("blob");
    let (_, id) = record_echo(&home, &vec![b'x'; 3000]);
    stop_daemon(&home);
    let hash_hex;
    {
        let db = open_store(&home);
        let blobs = db.open_tree("blobs").unwrap();
        // The 3000 bytes the read returned are a blob; damage that one.
        let (key, mut value) =
            blobs.iter().map(|kv| kv.unwrap()).find(|(_, v)| v.len() == 3000).expect("the read's blob");
        hash_hex = key.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let mut v = value.to_vec();
        v[100] ^= 1;
        value = v.into();
        blobs.insert(key, value).unwrap();
        db.flush().unwrap();
    }
    let replayed = home.replay(&id, &[]);
    assert_eq!(replayed.outcome.status, Status::Exited(2), "{}", replayed.warpctl_text());
    let text = replayed.warpctl_text();
    assert!(text.contains("blob") && text.contains(&hash_hex[..12]), "names the blob: {text}");
}

#[test]
fn a_missing_blob_is_refused() {
    let home = WarpHome::new("noblob");
    let (_, id) = record_echo(&home, &vec![b'y'; 4000]);
    stop_daemon(&home);
    {
        let db = open_store(&home);
        let blobs = db.open_tree("blobs").unwrap();
        let key = blobs.iter().map(|kv| kv.unwrap()).find(|(_, v)| v.len() == 4000).expect("the read's blob").0;
        blobs.remove(key).unwrap();
        db.flush().unwrap();
    }
    let replayed = home.replay(&id, &[]);
    assert_eq!(replayed.outcome.status, Status::Exited(2), "{}", replayed.warpctl_text());
    assert!(replayed.warpctl_text().contains("missing"), "{}", replayed.warpctl_text());
}

#[test]
fn corrupt_events_are_refused_and_the_daemon_goes_on() {
    let home = WarpHome::new("corrupt");
    let (spec, id) = record_echo(&home, b"first\n");
    let (_, other) = record_echo(&home, b"second\n");
    stop_daemon(&home);
    {
        let db = open_store(&home);
        let tree = db.open_tree("events").unwrap();
        let (key, ev) = events(&db, &id).into_iter().nth(3).unwrap();
        let bytes = ev.encode_to_vec();
        // A truncated event: not a valid encoding any more.
        tree.insert(key, &bytes[..bytes.len() / 2]).unwrap();
        db.flush().unwrap();
    }
    let replayed = home.replay(&id, &[]);
    assert_eq!(replayed.outcome.status, Status::Exited(2), "{}", replayed.warpctl_text());
    assert!(replayed.warpctl_text().contains("corrupt"), "{}", replayed.warpctl_text());
    // The other session still replays, from the same daemon.
    let ok = home.replay(&other, &[]);
    assert_eq!(ok.outcome.status, Status::Exited(0), "{}", ok.warpctl_text());
    let _ = spec;
}

#[test]
fn unknown_sessions_are_status_2() {
    let home = WarpHome::new("unknown");
    let replayed = home.replay("nosuchid", &[]);
    assert_eq!(replayed.outcome.status, Status::Exited(2));
    assert!(replayed.warpctl_text().contains("nosuchid"), "{}", replayed.warpctl_text());
}

/// Two programs recorded at the same time against one daemon both replay.
#[test]
fn concurrent_recordings_both_replay() {
    let home = WarpHome::new("concurrent");
    let a = Spec::prog("big_stdout", FLAVOURS[0]);
    let b = Spec::prog("nondet", FLAVOURS[1]);
    let ra = home.spawn_record(&a, &[]);
    let rb = home.spawn_record(&b, &[]);
    let (ra, rb) = (warp_tests::Recorded::new(ra.finish()), warp_tests::Recorded::new(rb.finish()));
    assert_eq!(ra.outcome.status, Status::Exited(0));
    assert_eq!(rb.outcome.status, Status::Exited(0));
    home.assert_replays(&a, &ra);
    home.assert_replays(&b, &rb);
}

/// A recording made on a host with other CPUID values: replay warns that
/// the program may take other paths, and says clearly which features this
/// host lacks (here: every bit of leaf 7 set on the "recording host").
#[test]
fn cpuid_differences_are_reported() {
    let home = WarpHome::new("cpuid");
    let spec = Spec::prog("hello", FLAVOURS[0]);
    let recorded = home.record(&spec, &[]);
    let id = recorded.session_id().unwrap();
    let clean = home.replay(&id, &[]);
    assert_eq!(clean.warpctl_lines.len(), 0, "same host, no warning: {}", clean.warpctl_text());
    stop_daemon(&home);
    {
        let db = open_store(&home);
        let sessions = db.open_tree("sessions").unwrap();
        let mut meta = warp_proto::trace::SessionMeta::decode(sessions.get(&id).unwrap().unwrap().as_ref()).unwrap();
        let leaf7 = meta.cpuid.iter_mut().find(|l| l.function == 7 && l.index == 0).expect("leaf 7 recorded");
        leaf7.ebx = u32::MAX;
        sessions.insert(id.as_bytes(), meta.encode_to_vec()).unwrap();
        db.flush().unwrap();
    }
    let replayed = home.replay(&id, &[]);
    assert_eq!(replayed.outcome.status, Status::Exited(0), "{}", replayed.warpctl_text());
    let text = replayed.warpctl_text();
    assert!(text.contains("CPUID differs"), "{text}");
    assert!(text.contains("lacks CPU features") && text.contains("leaf 0x7 ebx"), "{text}");
}

/// A session written by a newer warpd is refused with both versions named.
#[test]
fn a_newer_trace_format_is_refused() {
    let home = WarpHome::new("newer");
    let recorded = home.record(&Spec::prog("hello", FLAVOURS[0]), &[]);
    let id = recorded.session_id().unwrap();
    stop_daemon(&home);
    {
        let db = open_store(&home);
        let sessions = db.open_tree("sessions").unwrap();
        let mut meta = warp_proto::trace::SessionMeta::decode(sessions.get(&id).unwrap().unwrap().as_ref()).unwrap();
        meta.format_version += 1;
        sessions.insert(id.as_bytes(), meta.encode_to_vec()).unwrap();
        db.flush().unwrap();
    }
    let replayed = home.replay(&id, &[]);
    assert_eq!(replayed.outcome.status, Status::Exited(2), "{}", replayed.warpctl_text());
    assert!(replayed.warpctl_text().contains("format"), "{}", replayed.warpctl_text());
}

/// The home's store, opened by the test itself (its daemon stopped). No
/// background flusher, so dropping it releases the lock for the next daemon.
fn open_store(home: &WarpHome) -> sled::Db {
    sled::Config::new().path(home.path().join("store")).flush_every_ms(None).open().unwrap()
}

/// A replay whose client goes away (warpctl killed) is stopped in warpd,
/// not run on to the end: the daemon logs that it stopped it.
#[test]
fn a_replay_whose_client_goes_away_is_stopped() {
    let home = WarpHome::new("replay_cancel");
    // Long enough (a few seconds) that a replay left running would finish
    // well after the check below starts looking.
    let spec = Spec::prog("compute", warp_tests::Flavour::Static).arg("1500");
    let recorded = home.record(&spec, &[]);
    assert_eq!(recorded.outcome.status, Status::Exited(0), "{}", recorded.warpctl_text());
    let id = recorded.session_id().unwrap();
    let mut cmd = home.warpctl();
    cmd.args(["replay", &id]);
    let replay =
        warp_tests::spawn(cmd, "`warpctl replay`", &warp_tests::Input::Null, None, warp_tests::default_timeout());
    std::thread::sleep(std::time::Duration::from_millis(500));
    replay.signal_group(libc::SIGKILL);
    let log = home.path().join("warpd.log");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let text = fs::read_to_string(&log).unwrap_or_default();
        if text.contains("the replay was stopped") {
            assert!(!text.contains("replay reproduced the recording"), "the replay ran to its end:\n{text}");
            break;
        }
        assert!(
            !text.contains("replay reproduced the recording"),
            "the replay ran to its end although its client was gone:\n{text}"
        );
        assert!(std::time::Instant::now() < deadline, "no word of the replay in the log:\n{text}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = replay.finish();
}
