//! warpd: the Warpspeed daemon.
//!
//! It hosts one single-vCPU virtual machine per recorded process, runs the
//! program in it at its own virtual addresses, and answers every syscall the
//! program makes: by emulating it (memory, threads, signals: the VM's own
//! state) or by asking that session's broker to perform it as the user.
//!
//! ```text
//!  guest exit -> hv (decoded VmExit) -> kernel (policy) -> link (broker) -> resume
//! ```
//!
//! Module map: `hv` wraps the hypervisor, `arch` builds the guest CPU state,
//! `loader` maps ELF programs, `kernel` is the emulated Linux, `link` speaks
//! to the broker, `session` runs one recording, `server` is the gRPC face.

pub mod arch;
pub mod builder;
pub mod config;
pub mod gdb;
pub mod hv;
pub mod interrupts;
pub mod kernel;
pub mod link;
pub mod loader;
pub mod machine;
pub mod server;
pub mod session;
pub mod trace;
