//! The emulated kernel: what Linux would do for the program, answered from
//! the VM's own state or handed to the broker.

pub mod abi;
pub mod errno;
pub mod frames;
pub mod mm;
pub mod names;
pub mod outside;
pub mod process;
pub mod procfs;
pub mod signals;
pub mod table;
