//! The store's memory alone, without a daemon around it: N sessions (a
//! 770 KB executable blob shared by all, 40 environment variables, 80
//! events each) written as the recorder writes them, with the process's
//! RSS at checkpoints. `bench/README.md` has its figures.
//!
//!   cargo run --release -p warpd --example store_memory -- DIR [N] [--chunked]
//!
//! `--chunked` stores each session's events as one chunk (as the exitless
//! path stores its batches) instead of one value per event. DIR is removed
//! first.

use warp_proto::trace::{event, Event, SessionMeta, Status, SyscallEntry, SyscallExit};
use warpd::trace::store::Store;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(dir) = args.first().map(std::path::PathBuf::from) else {
        eprintln!("usage: store_memory DIR [N] [--chunked]");
        std::process::exit(2);
    };
    let n: u32 = args.get(1).and_then(|v| v.parse().ok()).unwrap_or(1000);
    let chunked = args.iter().any(|a| a == "--chunked");
    let _ = std::fs::remove_dir_all(&dir);
    let store = Store::open(&dir).expect("open the store");
    let exe: Vec<u8> = (0..770_000u32).map(|i| (i % 251) as u8).collect();
    println!("{:>10} {:>10}", "sessions", "rss_kib");
    for i in 1..=n {
        let id = format!("s{i:06}");
        let meta = SessionMeta {
            id: id.clone(),
            argv: vec!["./short".into()],
            env: (0..40).map(|k| format!("VARIABLE_{k}=a value of some length, {k}")).collect(),
            cwd: "/tmp".into(),
            status: Status::Recording as i32,
            ..Default::default()
        };
        store.create_session(&meta).expect("create");
        let mut w = store.writer(&id);
        w.data(&exe).expect("blob");
        let mut events = Vec::new();
        for nr in 0..40u64 {
            let entry = SyscallEntry { nr, args: vec![1, 2, 3], rip: 0x40_1000, thread: 0, time_us: 1000 + nr * 40 };
            events.push(Event { kind: Some(event::Kind::Entry(entry)) });
            events.push(Event { kind: Some(event::Kind::Exit(SyscallExit { nr, ret: 0, time_us: 1020 + nr * 40 })) });
        }
        if chunked {
            w.append_all(&events).expect("events");
        } else {
            for e in &events {
                w.append(e).expect("event");
            }
        }
        w.finish().expect("finish");
        let mut meta = store.session(&id).expect("session");
        meta.status = Status::Complete as i32;
        store.update_session(&meta).expect("update");
        if [10, 100, 250, 500, 1000, 2000, 4000, 8000].contains(&i) || i == n {
            println!("{i:>10} {:>10}", rss_kib());
        }
    }
}
