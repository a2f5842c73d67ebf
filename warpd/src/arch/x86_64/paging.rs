//! 4-level x86_64 page tables, built and edited by the host in the kernel
//! slot's memory: the entries' bits; the walk is `arch::tables`.

pub const PTE_PRESENT: u64 = 1;
pub const PTE_WRITE: u64 = 1 << 1;
pub const PTE_USER: u64 = 1 << 2;
pub const PTE_NX: u64 = 1 << 63;
pub const PTE_ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
/// An available bit we use while the entry is not present: the frame is
/// kept (PROT_NONE over memory that has contents).
const PTE_KEEP: u64 = 1 << 9;

/// Leaf entries by what they mean, so that the address space (`kernel::mm`)
/// never handles x86 bits itself.
pub mod leaf {
    use super::*;

    /// A user page at `gpa`, readable, writable and executable as asked.
    pub fn user(gpa: u64, write: bool, exec: bool) -> u64 {
        let mut e = gpa | PTE_PRESENT | PTE_USER;
        if write {
            e |= PTE_WRITE;
        }
        if !exec {
            e |= PTE_NX;
        }
        e
    }

    /// No access, but the frame at `gpa` stays with the page (PROT_NONE).
    pub fn kept(gpa: u64) -> u64 {
        gpa | PTE_KEEP
    }

    /// A page of warpd's guest-side kernel: ring-0 text and data.
    pub fn kernel(gpa: u64) -> u64 {
        gpa | PTE_PRESENT | PTE_WRITE
    }

    /// A page of replay's probe stub: the program's code jumps into it, so
    /// it is a user page (`write`: its data page, which it also writes).
    pub fn stub(gpa: u64, write: bool) -> u64 {
        gpa | PTE_PRESENT | PTE_USER | if write { PTE_WRITE | PTE_NX } else { 0 }
    }

    /// A debugger's watch over a present user entry: writes fault (and, with
    /// `reads`, every access: the entry is kept, not present).
    pub fn guarded(e: u64, reads: bool) -> u64 {
        match (reads, frame(e)) {
            (true, Some(f)) => kept(f),
            _ => e & !PTE_WRITE,
        }
    }

    /// The frame behind an entry, present or kept.
    pub fn frame(e: u64) -> Option<u64> {
        (e & (PTE_PRESENT | PTE_KEEP) != 0).then_some(e & PTE_ADDR_MASK)
    }

    /// Whether the hardware can use the entry (a change to it must be made
    /// visible to a shadow MMU).
    pub fn present(e: u64) -> bool {
        e & PTE_PRESENT != 0
    }

    /// Whether the program may read (and, with `write`, write) through it.
    pub fn user_access(e: u64, write: bool) -> bool {
        present(e) && e & PTE_USER != 0 && (!write || e & PTE_WRITE != 0)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn entries_mean_what_they_say() {
            let rw = user(0x1_0000_5000, true, false);
            assert!(user_access(rw, true) && present(rw));
            assert_eq!(frame(rw), Some(0x1_0000_5000));
            let rx = user(0x1_0000_6000, false, true);
            assert!(user_access(rx, false) && !user_access(rx, true));
            assert_eq!(rx & PTE_NX, 0);
            let none = kept(0x1_0000_7000);
            assert!(!present(none) && !user_access(none, false));
            assert_eq!(frame(none), Some(0x1_0000_7000));
            assert_eq!(frame(0), None);
            assert!(!user_access(kernel(0x3000), false));
        }
    }
}

pub use crate::arch::tables::{PagingError, TableMemory};

/// x86_64's entries to the walk.
#[derive(Clone, Copy, Debug)]
pub struct X86;

impl crate::arch::tables::Format for X86 {
    fn valid(e: u64) -> bool {
        e & PTE_PRESENT != 0
    }
    fn address(e: u64) -> u64 {
        e & PTE_ADDR_MASK
    }
    fn table(t: u64) -> u64 {
        // Intermediate entries allow everything; the leaf decides.
        t | PTE_PRESENT | PTE_WRITE | PTE_USER
    }
    fn needs_tables(e: u64) -> bool {
        e & PTE_PRESENT != 0
    }
}

/// The page-table tree rooted at one PML4.
pub type PageTables = crate::arch::tables::Tables<X86>;

impl PageTables {
    /// Maps the page at `va` to `pa` with `flags`; returns the entry it replaced.
    pub fn map(
        &mut self,
        mem: &mut (impl TableMemory + ?Sized),
        va: u64,
        pa: u64,
        flags: u64,
    ) -> Result<u64, PagingError> {
        self.set_entry(mem, va, (pa & PTE_ADDR_MASK) | flags | PTE_PRESENT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (Vec<u8>, PageTables) {
        let mut mem = vec![0u8; 1 << 20];
        let pt = PageTables::new(mem.as_mut_slice(), 0x1000, 0x2000, 1 << 20);
        (mem, pt)
    }

    #[test]
    fn map_and_look_up() {
        let (mut mem, mut pt) = setup();
        let m = mem.as_mut_slice();
        assert_eq!(pt.entry(m, 0x40_0000), 0);
        pt.map(m, 0x40_0000, 0x1_0000_5000, PTE_USER | PTE_WRITE).unwrap();
        let e = pt.entry(m, 0x40_0000);
        assert_eq!(e & PTE_ADDR_MASK, 0x1_0000_5000);
        assert_ne!(e & PTE_PRESENT, 0);
        assert_ne!(e & PTE_WRITE, 0);
        // A neighbour in the same table shares the tables: only 3 were made.
        pt.map(m, 0x40_1000, 0x1_0000_6000, PTE_USER).unwrap();
        assert_eq!(pt.pool_used(0x2000), 3 * 4096);
        // The PML4 entry is the 0th for a low address.
        assert_ne!(m.read_u64(0x1000) & PTE_PRESENT, 0);
    }

    #[test]
    fn high_addresses_use_their_own_indices() {
        let (mut mem, mut pt) = setup();
        let m = mem.as_mut_slice();
        pt.map(m, 0x7fff_ffff_f000, 0x30_0000, PTE_USER).unwrap();
        pt.map(m, 0xffff_ffff_8000_0000, 0, PTE_WRITE).unwrap();
        assert_eq!(pt.entry(m, 0x7fff_ffff_f000) & PTE_ADDR_MASK, 0x30_0000);
        assert_eq!(pt.entry(m, 0xffff_ffff_8000_0000) & PTE_USER, 0);
        assert_eq!(pt.entry(m, 0x7fff_ffff_e000), 0);
        assert_ne!(m.read_u64(0x1000 + 255 * 8), 0);
        assert_ne!(m.read_u64(0x1000 + 511 * 8), 0);
    }

    #[test]
    fn unmap_returns_the_old_entry() {
        let (mut mem, mut pt) = setup();
        let m = mem.as_mut_slice();
        pt.map(m, 0x1000, 0x9000, PTE_USER).unwrap();
        let old = pt.unmap(m, 0x1000);
        assert_eq!(old & PTE_ADDR_MASK, 0x9000);
        assert_eq!(pt.entry(m, 0x1000), 0);
        assert_eq!(pt.unmap(m, 0x5555_0000), 0);
    }

    #[test]
    fn empty_ranges_are_skipped_by_the_tables_they_lack() {
        let (mut mem, mut pt) = setup();
        let m = mem.as_mut_slice();
        // No PML4 entry: the next 512 GiB boundary.
        assert_eq!(pt.next_possible(m, 0x1234_5000), 1 << 39);
        pt.map(m, 0x40_0000, 0x9000, PTE_USER).unwrap();
        // Its table exists: the address itself, wherever in those 2 MiB.
        assert_eq!(pt.next_possible(m, 0x40_0000), 0x40_0000);
        assert_eq!(pt.next_possible(m, 0x5f_f000), 0x5f_f000);
        // The next 2 MiB have no page table: the end of them.
        assert_eq!(pt.next_possible(m, 0x60_1000), 0x80_0000);
        // No page directory for the next GiB.
        assert_eq!(pt.next_possible(m, 0x4000_1000), 0x8000_0000);
        assert_eq!(pt.next_possible(m, !0xfff), u64::MAX, "no overflow at the top");
    }

    #[test]
    fn pool_exhaustion_is_an_error() {
        let mut mem = vec![0u8; 0x5000];
        let mut pt = PageTables::new(mem.as_mut_slice(), 0x1000, 0x2000, 0x4000);
        assert_eq!(pt.map(mem.as_mut_slice(), 0x1000, 0x9000, 0), Err(PagingError::PoolExhausted));
    }
}
