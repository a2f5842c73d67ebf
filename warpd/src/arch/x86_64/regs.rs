//! The general registers of a guest thread, independent of the hypervisor.

/// General-purpose registers, rip and rflags, plus the FS/GS bases that
/// user code sets with arch_prctl.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Regs {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rsp: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub rip: u64,
    pub rflags: u64,
}

impl Regs {
    /// The syscall number and its six arguments, in the Linux x86_64 ABI.
    pub fn syscall_args(&self) -> (u64, [u64; 6]) {
        (self.rax, [self.rdi, self.rsi, self.rdx, self.r10, self.r8, self.r9])
    }

    /// Completes a `syscall` that trapped to the trampoline: the result in
    /// rax, and the program resumes where `syscall` left it (rcx, r11).
    pub fn finish_syscall(&mut self, ret: i64) {
        self.rax = ret as u64;
        self.rip = self.rcx;
        self.rflags = self.r11;
    }
}
