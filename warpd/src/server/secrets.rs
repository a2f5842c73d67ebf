//! Session ids and broker tokens: randomness, encoding, comparison.
//!
//! An id names a session for its owner (printed, typed, listed); it is not a
//! secret. A token lets one broker attach to one session: 256 random bits,
//! compared in constant time, good once.

use std::fs::File;
use std::io::{self, Read};

/// Lowercase Crockford base32: no `i`, `l`, `o` or `u`, so an id read aloud
/// or retyped is hard to get wrong.
const ID_ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// Characters in a session id (5 random bytes, 40 bits).
pub const ID_LEN: usize = 8;

/// Fills `buf` from the kernel's random source.
pub fn fill_random(buf: &mut [u8]) -> io::Result<()> {
    File::open("/dev/urandom")?.read_exact(buf)
}

/// A new session id: [`ID_LEN`] characters from [`ID_ALPHABET`]. The caller
/// makes it unique by drawing again on a collision.
pub fn new_id() -> io::Result<String> {
    let mut bytes = [0u8; 5];
    fill_random(&mut bytes)?;
    Ok(encode_id(bytes))
}

/// 40 bits as eight base32 digits, most significant first.
fn encode_id(bytes: [u8; 5]) -> String {
    let mut n = bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
    let mut out = [0u8; ID_LEN];
    for slot in out.iter_mut().rev() {
        *slot = ID_ALPHABET[(n & 31) as usize];
        n >>= 5;
    }
    out.iter().map(|&c| char::from(c)).collect()
}

/// A new broker token: 32 random bytes as 64 lowercase hex digits.
pub fn new_token() -> io::Result<String> {
    let mut bytes = [0u8; 32];
    fill_random(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Compares two secrets without an early exit, so the time taken does not
/// tell how much of a guess was right. (Lengths are not secret: every token
/// has the same.)
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // black_box keeps the optimiser from turning the fold into a
    // short-circuiting comparison.
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_eight_base32_characters() {
        for _ in 0..100 {
            let id = new_id().unwrap();
            assert_eq!(id.len(), ID_LEN);
            assert!(id.bytes().all(|c| ID_ALPHABET.contains(&c)), "{id}");
        }
    }

    #[test]
    fn id_encoding_is_exact() {
        assert_eq!(encode_id([0; 5]), "00000000");
        assert_eq!(encode_id([0xff; 5]), "zzzzzzzz");
        // 0x0000000021 = 33 = 1*32 + 1
        assert_eq!(encode_id([0, 0, 0, 0, 0x21]), "00000011");
    }

    #[test]
    fn ids_differ() {
        let ids: HashSet<String> = (0..1000).map(|_| new_id().unwrap()).collect();
        assert!(ids.len() > 995);
    }

    #[test]
    fn tokens_are_64_hex_digits_and_differ() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }
}
