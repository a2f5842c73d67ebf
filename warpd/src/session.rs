//! One recording: from an attached broker to the program's end.
//!
//! INTERFACE (stable for the server; body being written): the server calls
//! [`run`] on a thread of its own once the broker has presented its token.

use std::path::PathBuf;
use std::sync::mpsc::Sender;

use warp_proto::warp::{Failure, SessionEnd};

use crate::link::BrokerLink;

/// What the program is and who asked for it.
#[derive(Clone, Debug)]
pub struct SessionSpec {
    pub id: String,
    pub argv: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    /// The executable, resolved on the caller's `$PATH`; read through the broker.
    pub program: String,
    pub owner_uid: u32,
    /// Send notes (unknown syscalls, limitations met) to the caller.
    pub verbose: bool,
}

/// Daemon-wide settings a session needs.
#[derive(Clone, Debug)]
pub struct Config {
    /// Normally `/dev/kvm`; `WARP_KVM_DEVICE` overrides it (tests use that to
    /// check the message given when the device is missing).
    pub kvm_device: PathBuf,
}

impl Default for Config {
    fn default() -> Self {
        let kvm_device = std::env::var_os("WARP_KVM_DEVICE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/dev/kvm"));
        Config { kvm_device }
    }
}

/// How a session went, for the caller and the session list.
#[derive(Clone, Debug)]
pub struct RunResult {
    pub end: SessionEnd,
    pub syscalls: u64,
    pub vm_exits: u64,
}

/// Runs the session to its end. Blocking: call it on a thread of its own.
/// `notes` receives lines for the user (only sent when `spec.verbose`).
pub fn run(spec: SessionSpec, link: BrokerLink, config: &Config, notes: Sender<String>) -> RunResult {
    let _ = (spec, link, config, notes);
    RunResult {
        end: SessionEnd {
            failure: Failure::Daemon as i32,
            exit_code: 0,
            signal: 0,
            message: "the session runner is not built yet".into(),
        },
        syscalls: 0,
        vm_exits: 0,
    }
}

/// What `warpctl doctor` shows: the backend and each capability.
pub fn doctor(config: &Config) -> warp_proto::warp::DoctorReply {
    let _ = config;
    warp_proto::warp::DoctorReply { backend: "kvm".into(), capabilities: vec![] }
}
