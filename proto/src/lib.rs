//! Warpspeed's protocol definitions, generated from `proto/*.proto`.
//!
//! - [`warp`]: the public gRPC API that warpctl (and any client) speaks to warpd.
//! - [`broker`]: the private warpd <-> broker messages.
//! - [`trace`]: recorded events and session metadata.
//! - [`frame`]: the length-delimited framing the broker protocol and trace
//!   files use.

pub mod frame;

/// The public gRPC API (`warp.proto`).
pub mod warp {
    tonic::include_proto!("warp.v1");
}

/// The warpd <-> broker protocol (`broker.proto`).
pub mod broker {
    tonic::include_proto!("warp.broker.v1");

    /// On the signal channel, beside signal records: a deferred call's
    /// completion is on the socket.
    pub const COMPLETION_BYTE: u8 = 0xff;

    /// On the signal channel: a signal that reached the broker, as its
    /// number (1..=64) and the first 32 bytes of the siginfo_t it came with
    /// (si_signo, si_errno, si_code and the sender's pid and uid, or what
    /// else the code puts there).
    pub const SIGNAL_RECORD: usize = 33;

    /// The record for signal `signo` with `info` (32 bytes, or fewer: zeros).
    pub fn signal_record(signo: i32, info: &[u8]) -> [u8; SIGNAL_RECORD] {
        let mut r = [0u8; SIGNAL_RECORD];
        r[0] = signo as u8;
        let n = info.len().min(SIGNAL_RECORD - 1);
        r[1..1 + n].copy_from_slice(&info[..n]);
        r
    }
}

/// Trace events and session metadata (`trace.proto`).
#[allow(clippy::large_enum_variant)] // an export record is a whole SessionMeta
pub mod trace {
    tonic::include_proto!("warp.trace.v1");
}
