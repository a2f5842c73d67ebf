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

    /// On the signal channel, beside signal numbers (1..=64): a deferred
    /// call's completion is on the socket.
    pub const COMPLETION_BYTE: u8 = 0xff;
}

/// Trace events and session metadata (`trace.proto`).
#[allow(clippy::large_enum_variant)] // an export record is a whole SessionMeta
pub mod trace {
    tonic::include_proto!("warp.trace.v1");
}
