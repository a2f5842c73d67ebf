//! The emulated kernel: what Linux would do for the program, answered from
//! the VM's own state or handed to the broker.

pub mod abi;
pub mod errno;
#[cfg(test)]
pub mod fake;
pub mod frames;
pub mod mm;
pub mod outside;
pub mod process;
pub mod procfs;
pub mod sched;
pub mod signals;
pub mod thread;
/// The syscall table (the `warp-syscalls` crate, shared with the broker).
pub use warp_syscalls as table;
/// Syscall names by number.
pub mod names {
    pub use warp_syscalls::name;
}
