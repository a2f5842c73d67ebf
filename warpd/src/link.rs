//! The warpd side of the broker protocol (`proto/broker.proto`).
//!
//! INTERFACE (stable for the server; body being written).

use std::os::unix::net::UnixStream;

use warp_proto::broker::Hello;

/// Why a broker connection could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The socket failed.
    #[error("broker connection failed: {0}")]
    Io(#[from] std::io::Error),
    /// The broker sent something that is not a valid message.
    #[error("broker sent an invalid message: {0}")]
    Protocol(String),
}

/// An attached broker.
pub struct BrokerLink {
    pub(crate) stream: UnixStream,
}

impl BrokerLink {
    /// Reads the broker's first message (its `Hello`, with the session token).
    /// The caller checks the token and the peer's uid before using the link.
    pub fn accept(stream: UnixStream) -> Result<(Hello, BrokerLink), LinkError> {
        let _ = stream;
        Err(LinkError::Protocol("not built yet".into()))
    }
}
