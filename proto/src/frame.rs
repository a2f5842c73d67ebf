//! Length-delimited framing: a varint length, then that many bytes (the
//! form prost's `encode_length_delimited` writes). One reader for the
//! broker protocol on both sides and for exported trace files.

use std::io::{self, ErrorKind, Read};

/// The most a frame's buffer holds before its bytes arrive.
const FIRST_CHUNK: u64 = 64 << 10;

/// Reads one frame of at most `max` bytes. `Ok(None)` at a clean end of
/// input (before any byte of a frame). A frame cut short is
/// `UnexpectedEof`; a bad or oversized length is `InvalidData`. A read
/// interrupted by a signal is retried without losing a byte.
///
/// The buffer grows as the bytes come (from at most `FIRST_CHUNK`), so a
/// length that promises more than the input holds costs no more memory
/// than what was actually sent.
pub fn read(r: &mut impl Read, max: u64) -> io::Result<Option<Vec<u8>>> {
    let Some(len) = read_len(r, max)? else { return Ok(None) };
    read_body(r, len).map(Some)
}

/// Reads the `len` bytes of a frame whose length [`read_len`] gave, the
/// buffer growing as they come; fewer is `UnexpectedEof`.
pub fn read_body(r: &mut impl Read, len: u64) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(len.min(FIRST_CHUNK) as usize);
    // read_to_end retries interrupted reads itself.
    r.by_ref().take(len).read_to_end(&mut buf)?;
    if (buf.len() as u64) < len {
        return Err(io::Error::new(ErrorKind::UnexpectedEof, "the input ends inside a message"));
    }
    Ok(buf)
}

/// Reads a frame's length (at most `max`), leaving its bytes to the caller:
/// `Ok(None)` at a clean end of input. Errors as [`read`]'s.
pub fn read_len(r: &mut impl Read, max: u64) -> io::Result<Option<u64>> {
    let mut len: u64 = 0;
    for i in 0..10 {
        let mut b = [0u8; 1];
        let n = loop {
            match r.read(&mut b) {
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                other => break other?,
            }
        };
        if n == 0 {
            if i == 0 {
                return Ok(None);
            }
            return Err(io::Error::new(ErrorKind::UnexpectedEof, "the input ends inside a length"));
        }
        len |= ((b[0] & 0x7f) as u64) << (7 * i);
        if b[0] & 0x80 == 0 {
            if len > max {
                return Err(io::Error::new(
                    ErrorKind::InvalidData,
                    format!("a message of {len} bytes exceeds the limit of {max}"),
                ));
            }
            return Ok(Some(len));
        }
    }
    Err(io::Error::new(ErrorKind::InvalidData, "a message length is not a valid varint"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader whose every other call is interrupted, as a thread's reads
    /// are by signals.
    struct Interrupting<'a> {
        data: &'a [u8],
        flip: bool,
    }

    impl Read for Interrupting<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.flip = !self.flip;
            if self.flip {
                return Err(ErrorKind::Interrupted.into());
            }
            let n = buf.len().min(self.data.len()).min(1);
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn frames_round_trip_even_when_interrupted() {
        let mut input = vec![3, b'a', b'b', b'c'];
        input.extend_from_slice(&[0x81, 0x01]); // 129: a two-byte length
        input.extend(std::iter::repeat_n(7u8, 129));
        let mut r = Interrupting { data: &input, flip: false };
        assert_eq!(read(&mut r, 1000).unwrap().unwrap(), b"abc");
        assert_eq!(read(&mut r, 1000).unwrap().unwrap().len(), 129);
        assert!(read(&mut r, 1000).unwrap().is_none());
    }

    /// A reader that gives `n` bytes and then an endless run of end of files,
    /// counting the bytes it was asked to fill.
    struct Short {
        n: usize,
        asked: usize,
    }

    impl Read for Short {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.asked = self.asked.max(buf.len());
            let k = buf.len().min(self.n);
            buf[..k].fill(1);
            self.n -= k;
            Ok(k)
        }
    }

    #[test]
    fn a_length_that_promises_more_than_comes_costs_only_what_came() {
        // 1 GiB promised (a varint of 0x4000_0000), 10 bytes sent.
        let mut input = vec![0x80, 0x80, 0x80, 0x80, 0x04];
        input.extend_from_slice(&[9; 10]);
        let e = read(&mut &input[..], u64::MAX).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::UnexpectedEof);
        // The buffer offered to the reader never passes the first chunk
        // plus what arrived.
        let mut r = Short { n: 1000, asked: 0 };
        let mut framed = std::io::Cursor::new(vec![0x80, 0x80, 0x80, 0x80, 0x04]).chain(&mut r);
        assert_eq!(read(&mut framed, u64::MAX).unwrap_err().kind(), ErrorKind::UnexpectedEof);
        assert!(r.asked <= FIRST_CHUNK as usize, "asked to fill {} bytes", r.asked);
    }

    #[test]
    fn garbage_is_refused() {
        assert_eq!(read(&mut &[0xff, 0x01][..], 100).unwrap_err().kind(), ErrorKind::InvalidData);
        assert_eq!(read(&mut &[5, 1, 2][..], 100).unwrap_err().kind(), ErrorKind::UnexpectedEof);
        assert_eq!(read(&mut &[0x80][..], 100).unwrap_err().kind(), ErrorKind::UnexpectedEof);
        assert_eq!(read(&mut &[0x80; 12][..], u64::MAX).unwrap_err().kind(), ErrorKind::InvalidData);
    }
}
