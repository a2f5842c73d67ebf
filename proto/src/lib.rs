//! Warpspeed's protocol definitions, generated from `proto/*.proto`.
//!
//! - [`warp`]: the public gRPC API that warpctl (and any client) speaks to warpd.
//! - [`broker`]: the private warpd <-> broker messages.

/// The public gRPC API (`warp.proto`).
pub mod warp {
    tonic::include_proto!("warp.v1");
}

/// The warpd <-> broker protocol (`broker.proto`).
pub mod broker {
    tonic::include_proto!("warp.broker.v1");
}
