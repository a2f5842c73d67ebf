//! What recording and replay agree on about a broker request: its digest
//! (the request itself plus every byte of guest memory the call reads) and
//! the guest memory it wrote.

use prost::Message;
use warp_proto::broker::{buffer, request, Reply};

use crate::hv::memory::MemFd;

/// The (offset, len) ranges of a memory buffer.
fn ranges(b: &warp_proto::broker::Buffer) -> Option<Vec<(u64, u64)>> {
    match &b.data {
        Some(buffer::Data::Memory(r)) => Some(r.offset.iter().copied().zip(r.len.iter().copied()).collect()),
        _ => None,
    }
}

/// Bytes of guest memory copied out at a time for a request's digest.
const DIGEST_CHUNK: u64 = 1 << 20;

/// blake3 of the request and of the guest bytes it reads.
pub fn request_digest(kind: &request::Kind, memory: &MemFd) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    let req = warp_proto::broker::Request { id: 0, kind: Some(kind.clone()) };
    h.update(&req.encode_to_vec());
    if let request::Kind::Syscall(call) = kind {
        // Copied out a bounded piece at a time (the broker may be writing
        // guest memory): a long write is never copied whole.
        let mut chunk = Vec::new();
        for b in &call.buffers {
            if b.out && !b.inout {
                continue;
            }
            for (off, len) in ranges(b).unwrap_or_default() {
                let mut done = 0;
                while done < len {
                    let n = (len - done).min(DIGEST_CHUNK);
                    chunk.resize(n as usize, 0);
                    memory.read(off + done, &mut chunk);
                    h.update(&chunk);
                    done += n;
                }
            }
        }
    }
    *h.finalize().as_bytes()
}

/// The guest memory a completed call wrote: (offset, bytes) runs.
///
/// A call that fails may still have written its fixed-size outputs first
/// (`getresuid(&r, &e, bad)` writes r and e, then fails with EFAULT), so
/// those are kept whatever the result; a buffer the result measures
/// (`read`) holds nothing from a failed call.
pub fn written(kind: &request::Kind, reply: &Reply, memory: &MemFd) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    let request::Kind::Syscall(call) = kind else { return out };
    for b in &call.buffers {
        if !b.out || (reply.ret < 0 && b.written_by_ret) {
            continue;
        }
        let rs = ranges(b).unwrap_or_default();
        let total: u64 = rs.iter().map(|r| r.1).sum();
        let mut left = if b.written_by_ret { (reply.ret as u64).min(total) } else { total };
        for (off, len) in rs {
            if left == 0 {
                break;
            }
            let n = len.min(left);
            let mut bytes = vec![0u8; n as usize];
            memory.read(off, &mut bytes);
            out.push((off, bytes));
            left -= n;
        }
    }
    out
}

/// The bytes a write-like call sent (its read-only buffers, in order), at
/// most `n`: what replay re-emits to the original stdout or stderr.
pub fn sent_bytes(kind: &request::Kind, n: u64, memory: &MemFd) -> Vec<u8> {
    let mut out = Vec::new();
    let request::Kind::Syscall(call) = kind else { return out };
    for b in &call.buffers {
        if b.out {
            continue;
        }
        for (off, len) in ranges(b).unwrap_or_default() {
            let take = len.min(n - out.len() as u64);
            let start = out.len();
            out.resize(start + take as usize, 0);
            memory.read(off, &mut out[start..]);
            if out.len() as u64 >= n {
                return out;
            }
        }
    }
    out
}

/// The paths and names warpd copied into a request, by argument.
pub fn inline_args(kind: &request::Kind) -> Vec<warp_proto::trace::InlineArg> {
    if let request::Kind::ReadFile(rf) = kind {
        // The file the loader read (the executable, its interpreter).
        return vec![warp_proto::trace::InlineArg { arg: 0, value: rf.path.clone().into_bytes() }];
    }
    let request::Kind::Syscall(call) = kind else { return Vec::new() };
    call.buffers
        .iter()
        .filter_map(|b| match &b.data {
            Some(buffer::Data::Bytes(v)) if !v.is_empty() => {
                Some(warp_proto::trace::InlineArg { arg: b.arg, value: v.strip_suffix(&[0]).unwrap_or(v).to_vec() })
            }
            _ => None,
        })
        .collect()
}
