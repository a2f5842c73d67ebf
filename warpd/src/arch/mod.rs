//! Guest CPU support. Only x86_64 today; aarch64 arrives with the macOS
//! backend. Nothing outside `arch/` knows about page-table formats,
//! descriptor tables or trampolines.

pub mod x86_64;
