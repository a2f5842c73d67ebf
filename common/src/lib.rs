//! Pieces shared by `warpd` and `warpctl`.
//!
//! warpctl must not link warpd (warpd pulls in the hypervisor), and
//! `warp-proto` is only the protocols; what both binaries must agree on
//! besides the protocol lives here: [`paths`], where the daemon's sockets,
//! store, log and lock are; [`settings`], the environment warpd reads;
//! [`signals`], signal names.

pub mod paths;
pub mod settings;
pub mod signals;
pub mod units;
