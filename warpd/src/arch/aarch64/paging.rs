//! Stage-1 translation tables for a program at EL0 (Arm ARM D8: the
//! VMSAv8-64 translation system), built by the host: 4 KiB granule, a
//! 48-bit virtual address space walked from TTBR0_EL1 in four levels (0 to
//! 3, 9 bits each), 4 KiB pages only.
//! The entries' bits; the walk is `arch::tables`, as x86_64's (a leaf edit
//! is made visible by a TLB invalidation on this architecture).

/// Bits [1:0] of a valid descriptor: a table (levels 0-2) or a page (level 3).
pub const DESC_VALID: u64 = 1;
pub const DESC_TABLE_OR_PAGE: u64 = 0b11;
/// Lower attributes of a page descriptor.
pub const ATTR_INDX_SHIFT: u32 = 2;
/// AP[2:1] at bits [7:6]: bit 6 gives EL0 access, bit 7 makes it read-only.
pub const AP_EL0: u64 = 1 << 6;
pub const AP_RO: u64 = 1 << 7;
/// Inner shareable.
pub const SH_INNER: u64 = 0b11 << 8;
/// The access flag: set, so that no access-flag fault is ever taken.
pub const AF: u64 = 1 << 10;
/// Not global: the translation belongs to the current ASID.
pub const NG: u64 = 1 << 11;
/// Privileged execute-never and unprivileged (EL0) execute-never.
pub const PXN: u64 = 1 << 53;
pub const UXN: u64 = 1 << 54;
/// A software-reserved bit (bits [58:55] are ignored by the walk) that we
/// use while the entry is invalid: the frame is kept (PROT_NONE).
const KEEP: u64 = 1 << 55;
pub const ADDR_MASK: u64 = 0x0000_ffff_ffff_f000;

/// MAIR_EL1 attribute indices (`super::MAIR_EL1` holds the attributes).
pub const ATTR_NORMAL: u64 = 0;
pub const ATTR_DEVICE: u64 = 1;

/// Leaf entries by what they mean, as `arch::x86_64::paging::leaf`.
pub mod leaf {
    use super::*;

    fn page(pa: u64, attr: u64) -> u64 {
        (pa & ADDR_MASK) | DESC_TABLE_OR_PAGE | (attr << ATTR_INDX_SHIFT) | AF | SH_INNER
    }

    /// A user page at `pa`, readable, writable and executable as asked.
    /// Never executable at EL1 (PXN).
    pub fn user(pa: u64, write: bool, exec: bool) -> u64 {
        let mut e = page(pa, ATTR_NORMAL) | AP_EL0 | PXN | NG;
        if !write {
            e |= AP_RO;
        }
        if !exec {
            e |= UXN;
        }
        e
    }

    /// No access, but the frame at `pa` stays with the page (PROT_NONE).
    pub fn kept(pa: u64) -> u64 {
        (pa & ADDR_MASK) | KEEP
    }

    /// warpd's EL1 code (the vector table): read-only, executable at EL1 only.
    pub fn kernel_text(pa: u64) -> u64 {
        page(pa, ATTR_NORMAL) | AP_RO | UXN
    }

    /// warpd's EL1 data: read-write at EL1, never executable.
    pub fn kernel_data(pa: u64) -> u64 {
        page(pa, ATTR_NORMAL) | UXN | PXN
    }

    /// The page the vectors write to leave to the host where `hvc` cannot
    /// (a KVM without the SMCCC filter): device memory, so that the write
    /// is not merged, cached or speculated, and so always exits.
    pub fn exit_mmio(pa: u64) -> u64 {
        page(pa, ATTR_DEVICE) | UXN | PXN
    }

    /// The frame behind an entry, valid or kept.
    pub fn frame(e: u64) -> Option<u64> {
        (e & (DESC_VALID | KEEP) != 0).then_some(e & ADDR_MASK)
    }

    pub fn present(e: u64) -> bool {
        e & DESC_VALID != 0
    }

    /// Whether the program at EL0 may read (and, with `write`, write) through it.
    pub fn user_access(e: u64, write: bool) -> bool {
        present(e) && e & AP_EL0 != 0 && (!write || e & AP_RO == 0)
    }

    /// Whether the program at EL0 may execute from it.
    pub fn user_exec(e: u64) -> bool {
        present(e) && e & AP_EL0 != 0 && e & UXN == 0
    }

    /// A debugger's watch over a valid user entry: writes fault (with
    /// `reads`, every access: the entry is kept, invalid).
    pub fn guarded(e: u64, reads: bool) -> u64 {
        match (reads, frame(e)) {
            (true, Some(f)) => kept(f),
            _ => e | AP_RO,
        }
    }
}

pub use crate::arch::tables::{PagingError, TableMemory};

/// aarch64's stage-1 descriptors to the walk.
#[derive(Clone, Copy, Debug)]
pub struct Stage1;

impl crate::arch::tables::Format for Stage1 {
    fn valid(e: u64) -> bool {
        e & DESC_VALID != 0
    }
    fn address(e: u64) -> u64 {
        e & ADDR_MASK
    }
    fn table(t: u64) -> u64 {
        // Table descriptors restrict nothing (APTable, XNTable 0): the leaf decides.
        t | DESC_TABLE_OR_PAGE
    }
    fn needs_tables(e: u64) -> bool {
        leaf::frame(e).is_some()
    }
}

/// The table tree under TTBR0_EL1's level-0 table.
pub type PageTables = crate::arch::tables::Tables<Stage1>;

impl PageTables {
    /// What the hardware walk gives for `va` from EL0: the physical address
    /// and whether it may write and execute; None for a translation fault.
    /// (The same walk as the MMU's, for tests and for the debugger.)
    pub fn translate(&self, mem: &(impl TableMemory + ?Sized), va: u64) -> Option<(u64, bool, bool)> {
        if va >> 48 != 0 {
            return None; // beyond T0SZ = 16: a level-0 translation fault
        }
        let e = self.entry(mem, va);
        leaf::user_access(e, false)
            .then(|| ((e & ADDR_MASK) | (va & 0xfff), leaf::user_access(e, true), leaf::user_exec(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_page_has_the_bits_the_architecture_defines() {
        let e = leaf::user(0x1234_5000, true, false);
        assert_eq!(e & 0b11, 0b11, "a level-3 page descriptor");
        assert_eq!((e >> 6) & 0b11, 0b01, "AP[2:1] = 01: EL0 and EL1 read-write");
        assert_ne!(e & AF, 0);
        assert_eq!((e >> 8) & 0b11, 0b11, "inner shareable");
        assert_eq!((e >> 2) & 0b111, ATTR_NORMAL);
        assert_ne!(e & UXN, 0, "not executable");
        assert_ne!(e & PXN, 0, "never executable at EL1");
        assert_eq!(e & ADDR_MASK, 0x1234_5000);
        let ro = leaf::user(0x1000, false, true);
        assert_eq!((ro >> 6) & 0b11, 0b11, "AP[2:1] = 11: read-only at both");
        assert_eq!(ro & UXN, 0);
        assert!(leaf::user_access(ro, false) && !leaf::user_access(ro, true) && leaf::user_exec(ro));
        let k = leaf::kernel_text(0x2000);
        assert!(!leaf::user_access(k, false), "EL0 cannot touch warpd's code");
        assert_eq!(k & PXN, 0);
        assert_eq!((leaf::exit_mmio(0x3000) >> 2) & 0b111, ATTR_DEVICE);
    }

    #[test]
    fn kept_and_guarded_entries_fault_but_keep_their_frame() {
        let e = leaf::user(0x5000, true, false);
        let w = leaf::guarded(e, false);
        assert!(leaf::user_access(w, false) && !leaf::user_access(w, true));
        let all = leaf::guarded(e, true);
        assert!(!leaf::present(all));
        assert_eq!(leaf::frame(all), Some(0x5000));
        assert_eq!(leaf::frame(0), None);
    }

    #[test]
    fn the_walk_uses_four_levels_of_nine_bits() {
        let mut mem = vec![0u8; 64 * 4096];
        let mut pt = PageTables::new(&mut mem[..], 0, 4096, 64 * 4096);
        let va = 0x0000_7fff_f7a3_5000u64;
        pt.set_entry(&mut mem[..], va, leaf::user(0x3f000, true, true)).unwrap();
        // The root's entry for bits [47:39], then [38:30], [29:21], [20:12].
        let l0 = mem[..].read_u64((va >> 39 & 511) * 8);
        assert_eq!(l0 & 0b11, 0b11, "a table descriptor");
        let l1 = mem[..].read_u64((l0 & ADDR_MASK) + (va >> 30 & 511) * 8);
        let l2 = mem[..].read_u64((l1 & ADDR_MASK) + (va >> 21 & 511) * 8);
        let l3 = mem[..].read_u64((l2 & ADDR_MASK) + (va >> 12 & 511) * 8);
        assert_eq!(l3 & ADDR_MASK, 0x3f000);
        assert_eq!(pt.translate(&mem[..], va + 0x123), Some((0x3f123, true, true)));
        assert_eq!(pt.translate(&mem[..], va + 4096), None);
        assert_eq!(pt.translate(&mem[..], 1 << 48), None, "beyond the 48-bit space");
        // A neighbour shares the three tables.
        pt.set_entry(&mut mem[..], va + 4096, leaf::user(0x40000, false, false)).unwrap();
        assert_eq!(pt.pool_used(4096), 3 * 4096, "three tables under the root");
        assert_eq!(pt.translate(&mem[..], va + 4096), Some((0x40000, false, false)));
        assert_eq!(pt.unmap(&mut mem[..], va) & ADDR_MASK, 0x3f000);
        assert_eq!(pt.translate(&mem[..], va), None);
        // A kept entry for an unmapped address makes no tables.
        let before = pt.pool_used(4096);
        pt.set_entry(&mut mem[..], 0x1000_0000_0000, 0).unwrap();
        assert_eq!(pt.pool_used(4096), before);
    }

    #[test]
    fn the_pool_runs_out_cleanly() {
        let mut mem = vec![0u8; 3 * 4096];
        let mut pt = PageTables::new(&mut mem[..], 0, 4096, 3 * 4096);
        assert_eq!(pt.set_entry(&mut mem[..], 0x1000, leaf::user(0, true, false)), Err(PagingError::PoolExhausted));
    }
}
