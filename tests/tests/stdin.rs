//! The program's stdin is the caller's: a pipe with 1 MiB in it, a regular
//! file, /dev/null. The program prints the byte count and an FNV-1a
//! checksum, which the test computes too.

use warp_tests::{Input, Spec, Status, WarpHome, FLAVOURS};

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

fn data(len: usize) -> Vec<u8> {
    let mut x: u32 = 7;
    (0..len)
        .map(|_| {
            x = x.wrapping_mul(1664525).wrapping_add(1013904223);
            (x >> 24) as u8
        })
        .collect()
}

fn expected(bytes: &[u8]) -> String {
    format!("stdin: {} bytes, checksum {:016x}\nEXIT-SUCCESS\n", bytes.len(), fnv1a(bytes))
}

#[test]
fn one_mib_through_a_pipe() {
    let home = WarpHome::new("stdin_pipe");
    let bytes = data(1 << 20);
    for flavour in FLAVOURS {
        let native = home.check(&Spec::prog("stdin_pipe", flavour).stdin_bytes(bytes.clone()));
        assert_eq!(native.status, Status::Exited(0));
        assert_eq!(native.stdout_str(), expected(&bytes));
    }
}

#[test]
fn from_a_file() {
    let home = WarpHome::new("stdin_file");
    let bytes = data((1 << 20) + 12345);
    let file = home.path().join("input.bin");
    std::fs::write(&file, &bytes).unwrap();
    for flavour in FLAVOURS {
        let native = home.check(&Spec::prog("stdin_pipe", flavour).stdin(Input::File(file.clone())));
        assert_eq!(native.status, Status::Exited(0));
        assert_eq!(native.stdout_str(), expected(&bytes));
    }
}

#[test]
fn from_dev_null() {
    let home = WarpHome::new("stdin_null");
    for flavour in FLAVOURS {
        let native = home.check(&Spec::prog("stdin_pipe", flavour).stdin(Input::Null));
        assert_eq!(native.stdout_str(), expected(b""));
    }
}
