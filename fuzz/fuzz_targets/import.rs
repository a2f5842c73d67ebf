//! The import reader: a trace file from anywhere must be refused with an
//! error, leaving the store as it was, or stored whole. What is stored
//! exports and imports again to the same events.
//!
//! The first byte chooses how the rest is read: as a whole file, or (so
//! that the fuzzer gets past the checksum) as the records of a file that
//! this target frames, compresses and checksums itself; with its second
//! bit, four more bytes add a blob record long enough to be stored as it
//! is read (1 to 17 MiB of one byte, its hash right or wrong), after the
//! records or before them.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use warpd::trace::export::{export, import, import_from, MAGIC};
use warpd::trace::store::Store;
use warpd::trace::FORMAT_VERSION;

/// One store for the whole run, in `$TMPDIR/warp-fuzz-import.PID` (a
/// fuzzing process ends without running destructors, so each run first
/// removes the stores of runs whose process is gone).
fn store() -> &'static Store {
    static STORE: OnceLock<Store> = OnceLock::new();
    STORE.get_or_init(|| {
        let tmp = std::env::temp_dir();
        for e in std::fs::read_dir(&tmp).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix("warp-fuzz-import.") {
                if !std::path::Path::new("/proc").join(pid).exists() {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let dir = tmp.join(format!("warp-fuzz-import.{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Store::open(&dir).expect("open a store")
    })
}

/// A trace file whose records are `records`, correctly framed and summed.
fn wrapped(records: &[u8]) -> Vec<u8> {
    let mut file = MAGIC.to_vec();
    file.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    file.extend_from_slice(&zstd::encode_all(records, 1).expect("compress"));
    file.extend_from_slice(blake3::hash(records).as_bytes());
    file
}

/// A blob record of `len` bytes of `fill`, under its hash or a wrong one.
fn long_blob(len: usize, fill: u8, right: bool) -> Vec<u8> {
    use prost::Message;
    use warp_proto::trace::{export_record, ExportBlob, ExportRecord};
    let data = vec![fill; len];
    let mut hash = *blake3::hash(&data).as_bytes();
    if !right {
        hash[0] ^= 1;
    }
    let blob = ExportBlob { hash: hash.to_vec(), data };
    ExportRecord { kind: Some(export_record::Kind::Blob(blob)) }.encode_length_delimited_to_vec()
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let mut records = rest.to_vec();
    if mode & 2 != 0 {
        let Some((head, tail)) = rest.split_first_chunk::<4>() else { return };
        let len = (1 << 20) + (u32::from_le_bytes(*head) & 0xff_ffff) as usize;
        let blob = long_blob(len, head[3], head[3] & 1 == 0);
        records = if head[3] & 2 == 0 { [tail, &blob].concat() } else { [&blob, tail].concat() };
    }
    let file = if mode & 1 == 0 { records } else { wrapped(&records) };
    let store = store();
    let before = store.sessions().expect("sessions").len();
    // As a daemon with WARP_IMPORT_MAX_BYTES=64 MiB would: a small input
    // that decompresses to gigabytes is refused, not followed.
    let limit = 64 << 20;
    match import_from(store, std::io::Cursor::new(&file), file.len() as u64, "fuzzed", 1000, limit) {
        Err(_) => {
            assert_eq!(store.sessions().expect("sessions").len(), before, "a refused import left sessions behind");
        }
        Ok(meta) => {
            let events = store.events(&meta.id, 0).expect("the imported events");
            let mut again = Vec::new();
            export(store, &meta.id, &mut again).expect("an imported session exports");
            let copy = import(store, &again, "copied", 1000).expect("an exported session imports");
            assert_eq!(store.events(&copy.id, 0).expect("the copy's events"), events);
            for m in store.sessions().expect("sessions") {
                if m.id != "fuzzed" && m.id != "copied" && !m.id.starts_with("fuzzed.") && !m.id.starts_with("copied.")
                {
                    continue;
                }
                store.remove(&m.id).expect("remove");
            }
            assert_eq!(store.sessions().expect("sessions").len(), before);
        }
    }
    assert!(store.unreadable().expect("unreadable").is_empty(), "the store holds unreadable records");
});
