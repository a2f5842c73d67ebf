//! The guest model on aarch64: the program at EL0, everything else at EL1
//! built by the host (Arm ARM, "The AArch64 Application Level Programmers'
//! Model" and D8 "The AArch64 Virtual Memory System Architecture").
//!
//! - `paging`: stage-1 tables for TTBR0_EL1 (4 KiB granule, 48-bit VA).
//! - `vectors`: the EL1 vector table, each entry leaving to the host (an
//!   `hvc`, or a store to a device page where the backend does not forward
//!   `hvc`), and the `rt_sigreturn` trampoline signal handlers return to.
//! - `esr`: what an exception was (ESR_EL1, FAR_EL1), the neutral fault
//!   kinds and the signal Linux on arm64 sends for each.
//! - `signal`: arm64 Linux signal frames and what `rt_sigreturn` accepts.
//! - the system registers the backend sets (below) and the syscall ABIs of
//!   the two personalities: Linux (`svc #0`, number in x8, result in x0)
//!   and XNU (`svc #0x80`, number in x16, the carry flag for errors).
//!
//! Compiled and unit-tested on every host; the KVM-on-aarch64 and
//! Hypervisor.framework backends that run it come with issue 16's next
//! slices. The counter is a source warpd controls on this architecture:
//! CNTKCTL_EL1 traps EL0's reads of CNTVCT_EL0, CNTPCT_EL0 and CNTFRQ_EL0
//! (ESR class 0x18), which are answered and recorded like syscalls.

pub mod esr;
pub mod paging;
pub mod signal;
pub mod vectors;

/// The program's general registers at EL0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Regs {
    /// x0-x30 (x29 the frame pointer, x30 the link register).
    pub x: [u64; 31],
    pub sp: u64,
    pub pc: u64,
    pub pstate: u64,
}

/// The FP/SIMD registers: v0-v31, FPSR, FPCR.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FpSimd {
    pub v: [u128; 32],
    pub fpsr: u32,
    pub fpcr: u32,
}

/// The carry flag, which XNU's BSD calls set on an error.
pub const PSTATE_C: u64 = 1 << 29;

impl Regs {
    /// A Linux arm64 system call (`svc #0`): the number in x8, the
    /// arguments in x0-x5.
    pub fn linux_syscall(&self) -> (u64, [u64; 6]) {
        (self.x[8], [self.x[0], self.x[1], self.x[2], self.x[3], self.x[4], self.x[5]])
    }

    /// Its result: x0 (a -errno on failure); every other register is kept.
    pub fn finish_linux(&mut self, ret: i64) {
        self.x[0] = ret as u64;
    }

    /// An XNU call (`svc #0x80`): the number in x16 (negative: a Mach
    /// trap), the arguments in x0-x7.
    pub fn xnu_syscall(&self) -> (i64, [u64; 8]) {
        let mut a = [0u64; 8];
        a.copy_from_slice(&self.x[..8]);
        (self.x[16] as i64, a)
    }

    /// A BSD call's result: x0 and x1 with the carry clear, or the errno
    /// in x0 with the carry set (libsystem's stubs branch on it).
    pub fn finish_bsd(&mut self, result: Result<(u64, u64), i32>) {
        match result {
            Ok((r0, r1)) => {
                self.x[0] = r0;
                self.x[1] = r1;
                self.pstate &= !PSTATE_C;
            }
            Err(errno) => {
                self.x[0] = errno as u64;
                self.pstate |= PSTATE_C;
            }
        }
    }

    /// A Mach trap's result: a kern_return_t in x0 (no carry convention).
    pub fn finish_mach(&mut self, kr: i32) {
        self.x[0] = kr as u32 as u64;
    }
}

/// MAIR_EL1: attribute 0 Normal memory, inner and outer write-back
/// read/write-allocate (0xff); attribute 1 Device-nGnRE (0x04).
pub const MAIR_EL1: u64 = 0x04ff;

/// TCR_EL1: T0SZ 16 (48-bit VA from TTBR0), inner and outer write-back
/// walks, inner shareable, 4 KiB granule; TTBR1 walks off (EPD1); a 48-bit
/// physical space (IPS 0b101); the top byte of EL0 addresses ignored
/// (TBI0), as Linux sets it for user space.
pub const TCR_EL1: u64 = 16 | (1 << 8) | (1 << 10) | (3 << 12) | (1 << 23) | (5 << 32) | (1 << 37);

/// SCTLR_EL1: the MMU and caches on; SP alignment checks at EL1 and EL0;
/// EL0 may read CTR_EL0, use DC ZVA, clean caches and execute WFI/WFE
/// without trapping (as Linux allows user space); PSTATE.PAN left alone on
/// exceptions; exception entry and return synchronising; the ARMv8.0 RES1 bits.
pub const SCTLR_EL1: u64 = {
    let m = 1 << 0;
    let c = 1 << 2;
    let sa = 1 << 3;
    let sa0 = 1 << 4;
    let eos = 1 << 11;
    let i = 1 << 12;
    let dze = 1 << 14;
    let uct = 1 << 15;
    let ntwi = 1 << 16;
    let ntwe = 1 << 18;
    let res1 = (1 << 20) | (1 << 28) | (1 << 29);
    let eis = 1 << 22;
    let span = 1 << 23;
    let uci = 1 << 26;
    m | c | sa | sa0 | eos | i | dze | uct | ntwi | ntwe | res1 | eis | span | uci
};

/// CNTKCTL_EL1: EL0 reads of the virtual and physical counters and of
/// the timers all trap (EL0VCTEN, EL0PCTEN, EL0VTEN, EL0PTEN clear).
pub const CNTKCTL_EL1: u64 = 0;

/// CPACR_EL1: FP and Advanced SIMD at EL0 and EL1 untrapped (FPEN 0b11).
pub const CPACR_EL1: u64 = 3 << 20;

/// PSTATE for the program's first instruction: EL0t, nothing masked.
pub const PSTATE_EL0: u64 = signal::PSR_MODE_EL0T;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_registers_have_the_fields_named() {
        assert_eq!(TCR_EL1 & 0x3f, 16, "T0SZ: 2^48 bytes");
        assert_eq!((TCR_EL1 >> 14) & 3, 0, "TG0: 4 KiB");
        assert_eq!((TCR_EL1 >> 32) & 7, 5, "IPS: 48 bits");
        assert_ne!(TCR_EL1 & (1 << 23), 0, "EPD1");
        assert_eq!(MAIR_EL1 & 0xff, 0xff);
        assert_eq!((MAIR_EL1 >> 8) & 0xff, 0x04);
        assert_eq!(SCTLR_EL1 & 1, 1, "the MMU");
        assert_eq!(SCTLR_EL1 & (1 << 1), 0, "no alignment checks of ordinary accesses (A)");
        assert_eq!(SCTLR_EL1 & (1 << 19), 0, "no WXN: the program may map W+X as on Linux");
        assert_eq!(SCTLR_EL1 & (1 << 25 | 1 << 24), 0, "little-endian at EL1 and EL0");
        assert_eq!(CNTKCTL_EL1 & 0b11, 0, "counter reads trap");
    }

    #[test]
    fn syscall_abis_of_the_two_personalities() {
        let mut r = Regs::default();
        r.x[8] = 64; // write
        r.x[0] = 1;
        r.x[1] = 0x1000;
        r.x[2] = 5;
        assert_eq!(r.linux_syscall(), (64, [1, 0x1000, 5, 0, 0, 0]));
        r.finish_linux(-9);
        assert_eq!(r.x[0] as i64, -9);
        assert_eq!(r.x[1], 0x1000, "only x0 changes");

        let mut m = Regs::default();
        m.x[16] = 4; // BSD write
        m.x[0] = 1;
        assert_eq!(m.xnu_syscall().0, 4);
        m.x[16] = -31i64 as u64; // a Mach trap (mach_msg_trap)
        assert_eq!(m.xnu_syscall().0, -31);
        m.finish_bsd(Err(9));
        assert_eq!((m.x[0], m.pstate & PSTATE_C), (9, PSTATE_C), "EBADF with the carry set");
        m.finish_bsd(Ok((5, 0)));
        assert_eq!((m.x[0], m.pstate & PSTATE_C), (5, 0));
        m.finish_mach(0x10000003u32 as i32);
        assert_eq!(m.x[0], 0x1000_0003);
    }
}
