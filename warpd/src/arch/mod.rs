//! Guest CPU support: page-table formats, descriptor tables, trampolines,
//! exception frames, signal frames and what the host CPU offers.
//! x86_64 runs; aarch64 (`arch::aarch64`) is built and unit-tested on
//! every host, its backends to come. Nothing outside
//! `arch/` knows page-table bits, vectors, CPUID, XCR0 or frame offsets.
//!
//! The guest's architecture is the host's (hardware virtualisation), so
//! the names re-exported here are the current architecture's.

pub mod aarch64;
pub mod tables;
pub mod x86_64;

pub use self::x86_64::cpu::{initial_cpu, CpuidValue};
pub use self::x86_64::{InitialCpu, Regs};
