//! Loading a program into a fresh address space: ELF images, the initial
//! stack with argv, envp and the auxiliary vector.

pub mod elf;
pub mod program;
pub mod stack;
pub mod vdso;

pub use elf::{ElfError, ElfImage};
