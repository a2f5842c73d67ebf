//! The EL1 vector table and the code warpd puts in the guest for the
//! program, as instruction words (A64 encodings from the Arm ARM, C6).
//!
//! VBAR_EL1 points at a 2 KiB-aligned table of 16 entries of 128 bytes:
//! {current EL with SP_EL0, current EL with SP_ELx, lower EL in AArch64,
//! lower EL in AArch32} x {synchronous, IRQ, FIQ, SError}. Every entry
//! leaves to the host at once, saying which entry it is; the host reads
//! ESR_EL1, FAR_EL1, ELR_EL1 and SPSR_EL1, does what the exception asks
//! and resumes the program by setting PC and PSTATE itself (the vCPU never
//! returns from the vector with `eret`). Two ways to leave:
//!
//! - `hvc #entry`: where the backend forwards the call (Hypervisor.framework;
//!   Linux KVM 6.12 with the SMCCC filter forwarding it to user space).
//! - a store to a device page (`EXIT_PAGE_VA`): where `hvc` does not reach
//!   the host (Linux KVM before the filter answers an unknown `hvc` with
//!   -1 in x0). x0 is kept in TPIDR_EL1 first; the host puts it back.

/// The virtual address of the exit page (the store's target), at the top
/// of the 48-bit space, above anything the program can map.
pub const EXIT_PAGE_VA: u64 = 0x0000_ffff_ffff_e000;
pub const TABLE_SIZE: usize = 2048;
const ENTRY_SIZE: usize = 128;

/// The entries the host sees (index = offset / 128).
pub const SYNC_LOWER: u16 = 8;
pub const IRQ_LOWER: u16 = 9;

pub fn hvc(imm: u16) -> u32 {
    0xd400_0002 | (imm as u32) << 5
}

pub fn svc(imm: u16) -> u32 {
    0xd400_0001 | (imm as u32) << 5
}

/// `movz xd, #imm, lsl #(16 * hw)`.
pub fn movz(rd: u32, imm: u16, hw: u32) -> u32 {
    0xd280_0000 | hw << 21 | (imm as u32) << 5 | rd
}

/// `movk xd, #imm, lsl #(16 * hw)`.
pub fn movk(rd: u32, imm: u16, hw: u32) -> u32 {
    0xf280_0000 | hw << 21 | (imm as u32) << 5 | rd
}

/// `str xzr, [xn, #offset]` (an unsigned offset, a multiple of 8).
pub fn str_xzr(rn: u32, offset: u32) -> u32 {
    0xf900_0000 | (offset / 8) << 10 | rn << 5 | 31
}

/// `msr tpidr_el1, x0`.
pub const MSR_TPIDR_EL1_X0: u32 = 0xd518_d080;
/// `b .`: where the vCPU would spin if the host resumed it in a vector.
pub const BRANCH_SELF: u32 = 0x1400_0000;

/// How the vectors leave to the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Hvc,
    /// A store to `EXIT_PAGE_VA + 8 * entry`.
    Mmio,
}

/// The vector table, `TABLE_SIZE` bytes.
pub fn table(exit: Exit) -> Vec<u8> {
    let mut t = vec![0u8; TABLE_SIZE];
    for entry in 0..16u16 {
        let words: Vec<u32> = match exit {
            Exit::Hvc => vec![hvc(entry), BRANCH_SELF],
            Exit::Mmio => {
                let va = EXIT_PAGE_VA;
                vec![
                    MSR_TPIDR_EL1_X0,
                    movz(0, va as u16, 0),
                    movk(0, (va >> 16) as u16, 1),
                    movk(0, (va >> 32) as u16, 2),
                    movk(0, (va >> 48) as u16, 3),
                    str_xzr(0, entry as u32 * 8),
                    BRANCH_SELF,
                ]
            }
        };
        let at = entry as usize * ENTRY_SIZE;
        for (i, w) in words.iter().enumerate() {
            t[at + i * 4..at + i * 4 + 4].copy_from_slice(&w.to_le_bytes());
        }
    }
    t
}

/// Which entry an exit came from: the `hvc` immediate, or the exit page
/// offset of the store.
pub fn entry_of_store(offset_in_page: u64) -> Option<u16> {
    (offset_in_page.is_multiple_of(8) && offset_in_page < 16 * 8).then_some((offset_in_page / 8) as u16)
}

/// The code signal handlers return to when they have no SA_RESTORER
/// (as Linux's vDSO `__kernel_rt_sigreturn`): `mov x8, #139; svc #0`.
pub fn sigreturn_trampoline() -> [u32; 2] {
    const NR_RT_SIGRETURN: u16 = 139;
    [movz(8, NR_RT_SIGRETURN, 0), svc(0)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_match_the_assembler() {
        // What an assembler gives for each (llvm-mc -triple=aarch64 -show-encoding).
        assert_eq!(hvc(0), 0xd400_0002);
        assert_eq!(svc(0), 0xd400_0001);
        assert_eq!(svc(0x80), 0xd400_1001);
        assert_eq!(movz(0, 0x1234, 0), 0xd282_4680);
        assert_eq!(movz(8, 139, 0), 0xd280_1168);
        assert_eq!(movk(0, 0xffff, 1), 0xf2bf_ffe0);
        assert_eq!(str_xzr(0, 0), 0xf900_001f);
        assert_eq!(str_xzr(0, 64), 0xf900_201f);
    }

    #[test]
    fn every_entry_leaves_saying_which_it_is() {
        let t = table(Exit::Hvc);
        let word = |at: usize| u32::from_le_bytes(t[at..at + 4].try_into().unwrap());
        assert_eq!(word(0x400), hvc(SYNC_LOWER), "synchronous from EL0");
        assert_eq!(word(0x480), hvc(IRQ_LOWER));
        assert_eq!(word(0x404), BRANCH_SELF);
        let m = table(Exit::Mmio);
        let word = |at: usize| u32::from_le_bytes(m[at..at + 4].try_into().unwrap());
        assert_eq!(word(0x400), MSR_TPIDR_EL1_X0, "x0 kept before it is used");
        assert_eq!(word(0x400 + 20), str_xzr(0, 64));
        assert_eq!(entry_of_store(64), Some(SYNC_LOWER));
        assert_eq!(entry_of_store(65), None);
        // The address the four moves build.
        let mut x0 = 0u64;
        for i in 1..5 {
            let w = word(0x400 + i * 4);
            let imm = ((w >> 5) & 0xffff) as u64;
            let hw = (w >> 21) & 3;
            x0 = (x0 & !(0xffff << (16 * hw))) | imm << (16 * hw);
        }
        assert_eq!(x0, EXIT_PAGE_VA);
    }
}
