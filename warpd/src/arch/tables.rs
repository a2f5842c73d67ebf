//! A tree of 4 KiB translation tables of 512 entries, built and edited by
//! the host in guest memory: the walk (nine address bits a level, four
//! levels, the root first), the bump allocator of table pages and the
//! edits of leaf entries, shared by the formats whose walk that is
//! (x86_64's 4-level tables, aarch64's stage-1 tables with a 4 KiB
//! granule and a 48-bit space). A [`Format`] says what its entries are.
//!
//! Intermediate tables are never freed: on a shadow-paging host (PVM) KVM
//! keeps shadow pages keyed by guest page-table pages, and a host edit of a
//! live entry is not seen by the guest (HOST-KVM.md). Keeping intermediate
//! tables means their entries only ever go from invalid to valid; leaf
//! edits are made visible by the memory manager (see `kernel::mm`).

use std::marker::PhantomData;

/// Why a mapping could not be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PagingError {
    /// Every page of the page-table pool is in use.
    #[error("out of page-table memory")]
    PoolExhausted,
}

/// Memory holding the page tables, addressed by guest-physical address.
pub trait TableMemory {
    fn read_u64(&self, gpa: u64) -> u64;
    fn write_u64(&mut self, gpa: u64, value: u64);
    fn zero_page(&mut self, gpa: u64);
}

impl TableMemory for [u8] {
    fn read_u64(&self, gpa: u64) -> u64 {
        let i = gpa as usize;
        u64::from_le_bytes(self[i..i + 8].try_into().expect("8 bytes"))
    }
    fn write_u64(&mut self, gpa: u64, value: u64) {
        let i = gpa as usize;
        self[i..i + 8].copy_from_slice(&value.to_le_bytes());
    }
    fn zero_page(&mut self, gpa: u64) {
        let i = gpa as usize;
        self[i..i + 4096].fill(0);
    }
}

/// What one architecture's entries mean to the walk.
pub trait Format {
    /// Whether the walk follows a table entry.
    fn valid(e: u64) -> bool;
    /// The address an entry points at.
    fn address(e: u64) -> u64;
    /// The entry pointing at table `t`, restricting nothing (the leaf decides).
    fn table(t: u64) -> u64;
    /// Whether setting leaf entry `e` needs its tables made.
    fn needs_tables(e: u64) -> bool;
}

/// The tree under one root table.
#[derive(Clone, Debug)]
pub struct Tables<F> {
    root: u64,
    next_free: u64,
    pool_end: u64,
    format: PhantomData<F>,
}

/// The index of `va` in a table at `depth` (0: the root, 3: the leaves).
fn index(va: u64, depth: u32) -> u64 {
    (va >> (12 + 9 * (3 - depth))) & 511
}

impl<F: Format> Tables<F> {
    /// A fresh tree: zeroes the root page; tables come from `[pool_start, pool_end)`.
    pub fn new(mem: &mut (impl TableMemory + ?Sized), root: u64, pool_start: u64, pool_end: u64) -> Self {
        mem.zero_page(root);
        Tables { root, next_free: pool_start, pool_end, format: PhantomData }
    }

    pub fn root(&self) -> u64 {
        self.root
    }

    /// Bytes of page-table pool used so far.
    pub fn pool_used(&self, pool_start: u64) -> u64 {
        self.next_free - pool_start
    }

    fn alloc_table(&mut self, mem: &mut (impl TableMemory + ?Sized)) -> Result<u64, PagingError> {
        if self.next_free + 4096 > self.pool_end {
            return Err(PagingError::PoolExhausted);
        }
        let t = self.next_free;
        self.next_free += 4096;
        mem.zero_page(t);
        Ok(t)
    }

    /// The address of the leaf entry for `va`, creating tables on the way
    /// when `create` is set.
    fn leaf_slot(
        &mut self,
        mem: &mut (impl TableMemory + ?Sized),
        va: u64,
        create: bool,
    ) -> Result<Option<u64>, PagingError> {
        let mut table = self.root;
        for depth in 0..3 {
            let slot = table + index(va, depth) * 8;
            let entry = mem.read_u64(slot);
            if !F::valid(entry) {
                if !create {
                    return Ok(None);
                }
                let t = self.alloc_table(mem)?;
                mem.write_u64(slot, F::table(t));
                table = t;
            } else {
                table = F::address(entry);
            }
        }
        Ok(Some(table + index(va, 3) * 8))
    }

    /// Replaces the leaf entry for `va` as is; returns the old one.
    pub fn set_entry(
        &mut self,
        mem: &mut (impl TableMemory + ?Sized),
        va: u64,
        entry: u64,
    ) -> Result<u64, PagingError> {
        match self.leaf_slot(mem, va, F::needs_tables(entry))? {
            Some(slot) => {
                let old = mem.read_u64(slot);
                mem.write_u64(slot, entry);
                Ok(old)
            }
            None => Ok(0),
        }
    }

    /// Removes the mapping of the page at `va`; returns the old entry (0 if none).
    pub fn unmap(&mut self, mem: &mut (impl TableMemory + ?Sized), va: u64) -> u64 {
        match self.leaf_slot(mem, va, false) {
            Ok(Some(slot)) => {
                let old = mem.read_u64(slot);
                mem.write_u64(slot, 0);
                old
            }
            _ => 0,
        }
    }

    /// The leaf entry for `va` (0 when nothing is mapped there).
    pub fn entry(&self, mem: &(impl TableMemory + ?Sized), va: u64) -> u64 {
        let mut table = self.root;
        for depth in 0..3 {
            let entry = mem.read_u64(table + index(va, depth) * 8);
            if !F::valid(entry) {
                return 0;
            }
            table = F::address(entry);
        }
        mem.read_u64(table + index(va, 3) * 8)
    }

    /// The first address at or after `va` whose leaf entry can be set: `va`
    /// when its last-level table exists, else the end of the range the
    /// first missing table would cover.
    pub fn next_possible(&self, mem: &(impl TableMemory + ?Sized), va: u64) -> u64 {
        let mut table = self.root;
        for depth in 0..3 {
            let entry = mem.read_u64(table + index(va, depth) * 8);
            if !F::valid(entry) {
                let span = 1u64 << (12 + 9 * (3 - depth));
                return (va & !(span - 1)).saturating_add(span);
            }
            table = F::address(entry);
        }
        va
    }
}
