//! The guest's address space: mappings (VMAs), the program break, page
//! tables and the frames behind them.
//!
//! Every user page with a frame has one in the guest memfd; page tables live
//! in the kernel memfd. Anonymous memory gets page-table entries at mmap
//! time pointing at frames the host allocates on first touch, so there is no
//! exit per page.
//!
//! Making leaf edits visible under shadow paging (HOST-KVM.md): when an
//! entry that was present changes, the frame it pointed at is dropped from
//! warpd's own mapping ([`MemFd::forget_mappings`]) or given back
//! ([`MemFd::punch_hole`]); either fires KVM's MMU notifier, which discards
//! the shadow entries for that frame, so the guest's next access walks the
//! edited tables. Entries that go from not-present to present need nothing.

use std::collections::BTreeMap;

use super::errno::Errno;
use super::frames::FrameAllocator;
use crate::arch::x86_64::paging::{leaf, PageTables};
use crate::arch::x86_64::{self as x86, PAGE_SIZE, USER_GPA_BASE, USER_TOP};
use crate::hv::memory::MemFd;

pub const PROT_READ: u32 = 1;
pub const PROT_WRITE: u32 = 2;
pub const PROT_EXEC: u32 = 4;

/// Lowest address mmap hands out (Linux's default vm.mmap_min_addr).
pub const MMAP_MIN_ADDR: u64 = 0x1_0000;
/// Where top-down mmap placement starts (Linux's layout without ASLR).
pub const MMAP_BASE: u64 = 0x7fff_f7ff_f000;
/// The initial stack: 8 MiB below the trampoline page.
pub const STACK_TOP: u64 = USER_TOP;
pub const STACK_SIZE: u64 = 8 << 20;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VmaKind {
    Anonymous,
    Heap,
    Stack,
    /// A segment of the executable.
    Image(String),
    /// The vDSO (`loader::vdso`).
    Vdso,
}

#[derive(Clone, Debug)]
pub struct Vma {
    pub end: u64,
    pub prot: u32,
    pub kind: VmaKind,
}

pub fn page_down(a: u64) -> u64 {
    a & !(PAGE_SIZE - 1)
}

pub fn page_up(a: u64) -> Option<u64> {
    a.checked_add(PAGE_SIZE - 1).map(page_down)
}

/// The leaf entry for a user page at `gpa` with protection `prot` (not 0).
fn user_leaf(gpa: u64, prot: u32) -> u64 {
    leaf::user(gpa, prot & PROT_WRITE != 0, prot & PROT_EXEC != 0)
}

/// Coalesces page-sized frame offsets into (offset, len) runs.
fn push_run(runs: &mut Vec<(u64, u64)>, off: u64, len: u64) {
    if let Some(last) = runs.last_mut() {
        if last.0 + last.1 == off {
            last.1 += len;
            return;
        }
    }
    runs.push((off, len));
}

#[derive(Clone)]
pub struct Mm {
    pub kernel: MemFd,
    pub guest: MemFd,
    /// Pages a debugger's watchpoints guard while the vCPU runs, with the
    /// entries they had ([`Mm::guard`]).
    guards: BTreeMap<u64, u64>,
    pt: PageTables,
    frames: FrameAllocator,
    vmas: BTreeMap<u64, Vma>,
    /// Pages of private file mappings wholly past the end of their file
    /// (start -> end): no frame, and an access is SIGBUS, as on Linux.
    past_eof: BTreeMap<u64, u64>,
    pub brk_start: u64,
    pub brk: u64,
}

impl Mm {
    pub fn new(kernel: MemFd, guest: MemFd) -> Self {
        let mut kernel = kernel;
        let pt = PageTables::new(kernel.as_mut_slice(), x86::GPA_PML4, x86::GPA_PT_POOL, x86::KERNEL_SLOT_SIZE);
        // The last page is the ring page's.
        let frames = FrameAllocator::new(guest.size() / PAGE_SIZE - 1);
        Mm {
            kernel,
            guest,
            guards: BTreeMap::new(),
            pt,
            frames,
            vmas: BTreeMap::new(),
            past_eof: BTreeMap::new(),
            brk_start: 0,
            brk: 0,
        }
    }

    pub fn cr3(&self) -> u64 {
        self.pt.root()
    }

    /// Maps a kernel-slot page into the guest's virtual space (ring-0 tables
    /// writable by ring 0 only; the trampoline readable and executable by
    /// the program). Used once while building the VM.
    pub fn map_kernel_page(&mut self, va: u64, gpa: u64) -> Result<(), Errno> {
        self.set_entry(va, leaf::kernel(gpa))?;
        Ok(())
    }

    /// Maps the ring page (the trampoline and the exitless path's slot,
    /// guest memory's last page, which no frame of the program's is) at `va`:
    /// the program runs it and writes its slot.
    pub fn map_ring_page(&mut self, va: u64, gpa: u64) -> Result<(), Errno> {
        self.set_entry(va, leaf::user(gpa, true, true))?;
        Ok(())
    }

    pub fn vmas(&self) -> impl Iterator<Item = (&u64, &Vma)> {
        self.vmas.iter()
    }

    /// One past the highest guest-memfd offset that ever held a frame.
    pub fn high_water(&self) -> u64 {
        self.frames.high_water() * PAGE_SIZE
    }

    /// Bytes of guest memory given out as frames.
    pub fn frames_in_use(&self) -> u64 {
        self.guest.size() / PAGE_SIZE - self.frames.free_count()
    }

    fn entry(&self, va: u64) -> u64 {
        // SAFETY-free: the kernel slot is only ever accessed by this thread.
        let mem = kernel_slice(&self.kernel);
        self.pt.entry(mem, va)
    }

    /// The first page at or after `va` that can have an entry (`va` when
    /// its last-level table exists): loops over huge, mostly empty ranges
    /// (a 1 TiB PROT_NONE reservation) skip what has no tables.
    fn next_entry(&self, va: u64) -> u64 {
        self.pt.next_possible(kernel_slice(&self.kernel), va)
    }

    fn set_entry(&mut self, va: u64, entry: u64) -> Result<u64, Errno> {
        let mem = self.kernel.as_mut_slice();
        self.pt.set_entry(mem, va, entry).map_err(|_| Errno::ENOMEM)
    }

    /// Splits the VMA containing `addr` (if any) so that one starts at `addr`.
    fn split_at(&mut self, addr: u64) {
        let found = self.vmas.range(..addr).next_back().map(|(&s, v)| (s, v.clone()));
        if let Some((start, vma)) = found {
            if start < addr && addr < vma.end {
                self.vmas.get_mut(&start).expect("present").end = addr;
                self.vmas.insert(addr, Vma { end: vma.end, ..vma });
            }
        }
    }

    fn overlaps(&self, start: u64, end: u64) -> bool {
        if let Some((_, v)) = self.vmas.range(..end).next_back() {
            return v.end > start;
        }
        false
    }

    /// True when every page of [start, end) belongs to some VMA.
    fn fully_mapped(&self, start: u64, end: u64) -> bool {
        let mut at = start;
        for (&s, v) in self.vmas.range(..end) {
            if v.end <= at {
                continue;
            }
            if s > at {
                return false;
            }
            at = v.end;
            if at >= end {
                return true;
            }
        }
        at >= end
    }

    /// The mapping that holds `va`, if any.
    pub fn vma_at(&self, va: u64) -> Option<&Vma> {
        self.vmas.range(..=va).next_back().map(|(_, v)| v).filter(|v| va < v.end)
    }

    /// Whether every page of [start, start+len) belongs to a mapping.
    pub fn is_mapped(&self, start: u64, len: u64) -> bool {
        self.fully_mapped(start, start + len)
    }

    /// The highest free range of `len` bytes below MMAP_BASE.
    fn find_free(&self, len: u64) -> Option<u64> {
        let mut hi = MMAP_BASE;
        for (&s, v) in self.vmas.range(..MMAP_BASE).rev() {
            if v.end <= hi && hi - v.end >= len {
                return Some(hi - len);
            }
            hi = hi.min(s);
        }
        if hi >= MMAP_MIN_ADDR + len {
            Some(hi - len)
        } else {
            None
        }
    }

    /// The lowest free range of `len` bytes in [lo, hi) (MAP_32BIT).
    pub fn place_within(&self, len: u64, lo: u64, hi: u64) -> Result<u64, Errno> {
        let mut at = lo;
        for (&s, v) in self.vmas.range(..hi) {
            if v.end <= at {
                continue;
            }
            if s >= at + len {
                break;
            }
            at = v.end;
        }
        match at.checked_add(len) {
            Some(end) if end <= hi => Ok(at),
            _ => Err(Errno::ENOMEM),
        }
    }

    /// Where the mapped part of [start, end) that begins at `start` ends:
    /// `start` itself when no mapping holds it, `end` when there is no hole.
    pub fn mapped_prefix(&self, start: u64, end: u64) -> u64 {
        let mut at = start;
        while at < end {
            match self.vma_at(at) {
                Some(v) => at = v.end,
                None => return at,
            }
        }
        end
    }

    /// Chooses where a new mapping goes: `addr` when fixed, the hint when it
    /// is free, else top-down.
    pub fn place(&self, addr: u64, len: u64, fixed: bool) -> Result<u64, Errno> {
        if fixed {
            return Ok(addr);
        }
        if addr >= MMAP_MIN_ADDR && addr.is_multiple_of(PAGE_SIZE) {
            if let Some(end) = addr.checked_add(len) {
                if end <= USER_TOP && !self.overlaps(addr, end) {
                    return Ok(addr);
                }
            }
        }
        self.find_free(len).ok_or(Errno::ENOMEM)
    }

    /// Maps fresh zeroed pages at [addr, addr+len) (page aligned, already
    /// free or replaced with MAP_FIXED semantics by the caller).
    pub fn map_anonymous(&mut self, addr: u64, len: u64, prot: u32, kind: VmaKind) -> Result<(), Errno> {
        let end = addr.checked_add(len).filter(|&e| e <= USER_TOP).ok_or(Errno::ENOMEM)?;
        self.unmap(addr, len)?;
        let pages = len / PAGE_SIZE;
        if prot != 0 {
            let runs = self.frames.alloc(pages).ok_or(Errno::ENOMEM)?;
            let mut va = addr;
            for (start, n) in runs {
                for f in start..start + n {
                    let gpa = USER_GPA_BASE + f * PAGE_SIZE;
                    if let Err(e) = self.set_entry(va, user_leaf(gpa, prot)) {
                        // Out of page-table memory: undo what was mapped.
                        self.vmas.insert(addr, Vma { end: va, prot, kind });
                        let _ = self.unmap(addr, va - addr);
                        self.frames.free(f, start + n - f);
                        return Err(e);
                    }
                    va += PAGE_SIZE;
                }
            }
        }
        self.vmas.insert(addr, Vma { end, prot, kind });
        Ok(())
    }

    /// Makes [start, end) of a file mapping the pages past its file's end:
    /// their frames go, and an access to them is SIGBUS ([`Mm::past_eof`]).
    pub fn mark_past_eof(&mut self, start: u64, end: u64) -> Result<(), Errno> {
        self.release_frames(start, end)?;
        self.past_eof.insert(start, end);
        Ok(())
    }

    /// Clears the entries of [start, end) and gives their frames back to
    /// the host (punching also drops KVM's mappings of them).
    fn release_frames(&mut self, start: u64, end: u64) -> Result<(), Errno> {
        let mut freed = Vec::new();
        let mut va = start;
        while va < end {
            let next = self.next_entry(va);
            if next > va {
                va = next;
                continue;
            }
            if let Some(frame) = leaf::frame(self.entry(va)) {
                self.set_entry(va, 0)?;
                push_run(&mut freed, frame - USER_GPA_BASE, PAGE_SIZE);
            }
            va += PAGE_SIZE;
        }
        for (off, len) in freed {
            self.frames.free(off / PAGE_SIZE, len / PAGE_SIZE);
            self.guest.punch_hole(off, len).map_err(|_| Errno::ENOMEM)?;
        }
        Ok(())
    }

    /// Whether `va` is in a page past the end of the file its mapping maps.
    pub fn past_eof(&self, va: u64) -> bool {
        self.past_eof.range(..=va).next_back().is_some_and(|(_, &end)| va < end)
    }

    /// Forgets the past-EOF pages in [start, end) (unmapped or moved).
    fn clear_past_eof(&mut self, start: u64, end: u64) {
        let hit: Vec<(u64, u64)> =
            self.past_eof.range(..end).filter(|(_, &e)| e > start).map(|(&s, &e)| (s, e)).collect();
        for (s, e) in hit {
            self.past_eof.remove(&s);
            if s < start {
                self.past_eof.insert(s, start);
            }
            if e > end {
                self.past_eof.insert(end, e);
            }
        }
    }

    /// Removes mappings in [addr, addr+len): frames go back to the host.
    pub fn unmap(&mut self, addr: u64, len: u64) -> Result<(), Errno> {
        let end = addr + len;
        self.clear_past_eof(addr, end);
        self.split_at(addr);
        self.split_at(end);
        let starts: Vec<u64> = self.vmas.range(addr..end).map(|(&s, _)| s).collect();
        for s in starts {
            let vma = self.vmas.remove(&s).expect("listed");
            self.release_frames(s, vma.end)?;
        }
        Ok(())
    }

    /// mprotect: every page of the range must be mapped (else ENOMEM).
    pub fn protect(&mut self, addr: u64, len: u64, prot: u32) -> Result<(), Errno> {
        let end = addr + len;
        if !self.fully_mapped(addr, end) {
            return Err(Errno::ENOMEM);
        }
        self.split_at(addr);
        self.split_at(end);
        let starts: Vec<u64> = self.vmas.range(addr..end).map(|(&s, _)| s).collect();
        let mut forget = Vec::new();
        for s in starts {
            let vma_end = {
                let v = self.vmas.get_mut(&s).expect("listed");
                v.prot = prot;
                v.end
            };
            let mut va = s;
            while va < vma_end {
                // No access and no table: nothing to change there.
                let next = if prot == 0 { self.next_entry(va) } else { va };
                if next > va {
                    va = next;
                    continue;
                }
                let old = self.entry(va);
                let frame = leaf::frame(old);
                let new = match (prot, frame) {
                    (0, Some(f)) => leaf::kept(f),
                    (0, None) => 0,
                    // Past the file's end: still no page.
                    (_, None) if self.past_eof(va) => 0,
                    (_, Some(f)) => user_leaf(f, prot),
                    (_, None) => {
                        let run = self.frames.alloc(1).ok_or(Errno::ENOMEM)?;
                        user_leaf(USER_GPA_BASE + run[0].0 * PAGE_SIZE, prot)
                    }
                };
                if new != old {
                    self.set_entry(va, new)?;
                    if let (true, Some(f)) = (leaf::present(old), frame) {
                        push_run(&mut forget, f - USER_GPA_BASE, PAGE_SIZE);
                    }
                }
                va += PAGE_SIZE;
            }
        }
        for (off, len) in forget {
            self.guest.forget_mappings(off, len).map_err(|_| Errno::ENOMEM)?;
        }
        Ok(())
    }

    /// madvise(MADV_DONTNEED): private anonymous pages read as zero afterwards.
    pub fn discard(&mut self, addr: u64, len: u64) -> Result<(), Errno> {
        let end = addr + len;
        let mut runs = Vec::new();
        let mut va = addr;
        while va < end {
            let next = self.next_entry(va);
            if next > va {
                va = next;
                continue;
            }
            if let Some(f) = leaf::frame(self.entry(va)) {
                push_run(&mut runs, f - USER_GPA_BASE, PAGE_SIZE);
            }
            va += PAGE_SIZE;
        }
        for (off, len) in runs {
            self.guest.punch_hole(off, len).map_err(|_| Errno::ENOMEM)?;
        }
        if self.fully_mapped(addr, end) {
            Ok(())
        } else {
            Err(Errno::ENOMEM)
        }
    }

    /// Removes every user mapping (execve): the frames go back to the host.
    pub fn reset(&mut self) {
        let all: Vec<(u64, u64)> = self.vmas.iter().map(|(&s, v)| (s, v.end)).collect();
        for (s, e) in all {
            // Unmapping whole, existing mappings only fails on a punch-hole
            // error, which leaves the frames mapped but unreachable.
            let _ = self.unmap(s, e - s);
        }
        self.brk_start = 0;
        self.brk = 0;
    }

    /// mremap without MREMAP_FIXED: shrink in place, grow in place when the
    /// pages after the mapping are free, else (with `may_move`) move the
    /// page-table entries to a new range, keeping the frames.
    pub fn remap(&mut self, old: u64, old_len: u64, new_len: u64, may_move: bool) -> Result<u64, Errno> {
        let old_end = old.checked_add(old_len).filter(|&e| e <= USER_TOP).ok_or(Errno::EFAULT)?;
        let Some((&start, vma)) = self.vmas.range(..=old).next_back() else { return Err(Errno::EFAULT) };
        if old_len == 0 || vma.end < old_end || start > old {
            return Err(Errno::EFAULT);
        }
        let (prot, kind) = (vma.prot, vma.kind.clone());
        if new_len <= old_len {
            self.unmap(old + new_len, old_len - new_len)?;
            return Ok(old);
        }
        let grow_end = old.checked_add(new_len).filter(|&e| e <= USER_TOP);
        if let Some(end) = grow_end {
            if !self.overlaps(old_end, end) {
                self.map_anonymous(old_end, end - old_end, prot, kind)?;
                self.merge_at(old_end);
                return Ok(old);
            }
        }
        if !may_move {
            return Err(Errno::ENOMEM);
        }
        let to = self.find_free(new_len).ok_or(Errno::ENOMEM)?;
        // Past-EOF pages move with their mapping.
        let moved: Vec<(u64, u64)> = self
            .past_eof
            .range(..old_end)
            .filter(|(_, &e)| e > old)
            .map(|(&s, &e)| (s.max(old) - old + to, e.min(old_end) - old + to))
            .collect();
        self.clear_past_eof(old, old_end);
        self.past_eof.extend(moved);
        let mut forget = Vec::new();
        for i in 0..old_len / PAGE_SIZE {
            let e = self.entry(old + i * PAGE_SIZE);
            if e != 0 {
                self.set_entry(to + i * PAGE_SIZE, e)?;
                self.set_entry(old + i * PAGE_SIZE, 0)?;
                if let (true, Some(f)) = (leaf::present(e), leaf::frame(e)) {
                    push_run(&mut forget, f - USER_GPA_BASE, PAGE_SIZE);
                }
            }
        }
        self.split_at(old);
        self.split_at(old_end);
        let starts: Vec<u64> = self.vmas.range(old..old_end).map(|(&s, _)| s).collect();
        for s in starts {
            self.vmas.remove(&s);
        }
        self.vmas.insert(to, Vma { end: to + old_len, prot, kind: kind.clone() });
        for (off, len) in forget {
            self.guest.forget_mappings(off, len).map_err(|_| Errno::ENOMEM)?;
        }
        self.map_anonymous(to + old_len, new_len - old_len, prot, kind)?;
        self.merge_at(to + old_len);
        Ok(to)
    }

    /// Joins the VMA ending at `addr` with the one starting there when they
    /// are alike, so that a grown mapping is one mapping again.
    fn merge_at(&mut self, addr: u64) {
        let Some(next) = self.vmas.get(&addr).cloned() else { return };
        if let Some((_, prev)) = self.vmas.range_mut(..addr).next_back() {
            if prev.end == addr && prev.prot == next.prot && prev.kind == next.kind {
                prev.end = next.end;
                self.vmas.remove(&addr);
            }
        }
    }

    /// brk(2): returns the new break, or the old one when it cannot move.
    pub fn set_brk(&mut self, want: u64) -> u64 {
        if want < self.brk_start || want > USER_TOP {
            return self.brk;
        }
        let (Some(old_top), Some(new_top)) = (page_up(self.brk), page_up(want)) else { return self.brk };
        if new_top > old_top {
            if self.overlaps(old_top, new_top) {
                return self.brk;
            }
            if self.map_anonymous(old_top, new_top - old_top, PROT_READ | PROT_WRITE, VmaKind::Heap).is_err() {
                return self.brk;
            }
        } else if new_top < old_top && self.unmap(new_top, old_top - new_top).is_err() {
            return self.brk;
        }
        self.brk = want;
        want
    }

    /// The guest-memfd ranges behind [va, va+len), checking that the guest
    /// may read (or, with `write`, write) every byte, as the CPU would.
    pub fn user_ranges(&self, va: u64, len: u64, write: bool) -> Result<Vec<(u64, u64)>, Errno> {
        let mut runs = Vec::new();
        if len == 0 {
            return Ok(runs);
        }
        let end = va.checked_add(len).filter(|&e| e <= USER_TOP).ok_or(Errno::EFAULT)?;
        let mut at = va;
        while at < end {
            let e = self.entry(page_down(at));
            let gpa = match leaf::frame(e) {
                Some(gpa) if leaf::user_access(e, write) && gpa >= USER_GPA_BASE => gpa,
                _ => return Err(Errno::EFAULT),
            };
            let in_page = at % PAGE_SIZE;
            let n = (PAGE_SIZE - in_page).min(end - at);
            push_run(&mut runs, gpa - USER_GPA_BASE + in_page, n);
            at += n;
        }
        Ok(runs)
    }

    /// The guest-memfd ranges behind the program's pages from `va` on, as
    /// far as they are mapped (at most `len` bytes), whatever their
    /// protection: what `/proc/self/mem` reaches (Linux's FOLL_FORCE).
    pub fn forced_ranges(&self, va: u64, len: u64) -> Vec<(u64, u64)> {
        let mut runs = Vec::new();
        let end = va.saturating_add(len).min(USER_TOP);
        let mut at = va;
        while at < end {
            let e = self.entry(page_down(at));
            let Some(gpa) = leaf::frame(e).filter(|&g| g >= USER_GPA_BASE && leaf::user_access(e, false)) else {
                break;
            };
            let in_page = at % PAGE_SIZE;
            let n = (PAGE_SIZE - in_page).min(end - at);
            push_run(&mut runs, gpa - USER_GPA_BASE + in_page, n);
            at += n;
        }
        runs
    }

    /// Reads from `va` on, whatever the protection of each readable page
    /// (a debugger's read, `/proc/self/mem`'s): how many bytes, up to the
    /// first page that is not mapped.
    pub fn read_forced(&self, va: u64, buf: &mut [u8]) -> usize {
        let mut done = 0usize;
        for (off, n) in self.forced_ranges(va, buf.len() as u64) {
            self.guest.read(off, &mut buf[done..done + n as usize]);
            done += n as usize;
        }
        done
    }

    /// Writes from `va` on into pages the program can read, read-only code
    /// too (a debugger's write): how many bytes.
    pub fn write_forced(&self, va: u64, data: &[u8]) -> usize {
        let mut done = 0usize;
        for (off, n) in self.forced_ranges(va, data.len() as u64) {
            self.guest.write(off, &data[done..done + n as usize]);
            done += n as usize;
        }
        done
    }

    /// Makes the program's writes to the page at `va` (with `reads`, any
    /// access) fault until [`Mm::unguard_all`]: a debugger's watchpoint,
    /// set only while the vCPU runs, so that warpd's own accesses see the
    /// real entries. False when the page has no present entry, or when
    /// the access faults already.
    pub fn guard(&mut self, va: u64, reads: bool) -> Result<bool, Errno> {
        let page = page_down(va);
        let old = self.guards.get(&page).copied().unwrap_or_else(|| self.entry(page));
        let Some(frame) = leaf::frame(old).filter(|_| leaf::present(old) && leaf::user_access(old, false)) else {
            return Ok(false);
        };
        let now = self.entry(page);
        let new = leaf::guarded(old, reads);
        if new == now {
            return Ok(new != old);
        }
        self.set_entry(page, new)?;
        self.guards.entry(page).or_insert(old);
        if leaf::present(now) {
            self.guest.forget_mappings(frame - USER_GPA_BASE, PAGE_SIZE).map_err(|_| Errno::ENOMEM)?;
        }
        Ok(true)
    }

    /// Puts back every entry [`Mm::guard`] changed.
    pub fn unguard_all(&mut self) {
        for (page, old) in std::mem::take(&mut self.guards) {
            let _ = self.set_entry(page, old);
        }
    }

    /// How many bytes from `va` on (at most `len`) the program may read (or,
    /// with `write`, write) before the first page it may not.
    pub fn accessible(&self, va: u64, len: u64, write: bool) -> u64 {
        let end = va.saturating_add(len).min(USER_TOP);
        let mut at = va;
        while at < end {
            let e = self.entry(page_down(at));
            if leaf::frame(e).is_none_or(|g| g < USER_GPA_BASE) || !leaf::user_access(e, write) {
                break;
            }
            at = (page_down(at) + PAGE_SIZE).min(end);
        }
        at.saturating_sub(va)
    }

    pub fn read_user(&self, va: u64, buf: &mut [u8]) -> Result<(), Errno> {
        let mut done = 0usize;
        for (off, len) in self.user_ranges(va, buf.len() as u64, false)? {
            self.guest.read(off, &mut buf[done..done + len as usize]);
            done += len as usize;
        }
        Ok(())
    }

    pub fn write_user(&self, va: u64, data: &[u8]) -> Result<(), Errno> {
        let mut done = 0usize;
        for (off, len) in self.user_ranges(va, data.len() as u64, true)? {
            self.guest.write(off, &data[done..done + len as usize]);
            done += len as usize;
        }
        Ok(())
    }

    /// A little-endian word of the program's (futex words, masks, list links).
    pub fn read_u32(&self, va: u64) -> Result<u32, Errno> {
        let mut b = [0u8; 4];
        self.read_user(va, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    pub fn read_u64(&self, va: u64) -> Result<u64, Errno> {
        let mut b = [0u8; 8];
        self.read_user(va, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Writes into guest memory ignoring page protections (the loader
    /// filling read-only segments, the initial stack).
    pub fn poke(&self, va: u64, data: &[u8]) -> Result<(), Errno> {
        let mut done = 0usize;
        let mut at = va;
        while done < data.len() {
            let e = self.entry(page_down(at));
            let gpa = match leaf::frame(e) {
                Some(gpa) if gpa >= USER_GPA_BASE => gpa,
                _ => return Err(Errno::EFAULT),
            };
            let in_page = at % PAGE_SIZE;
            let n = ((PAGE_SIZE - in_page) as usize).min(data.len() - done);
            self.guest.write(gpa - USER_GPA_BASE + in_page, &data[done..done + n]);
            done += n;
            at += n as u64;
        }
        Ok(())
    }

    /// A NUL-terminated string of at most `max` bytes (without the NUL).
    pub fn read_cstring(&self, va: u64, max: usize) -> Result<Vec<u8>, Errno> {
        let mut out = Vec::new();
        let mut at = va;
        loop {
            let in_page = (PAGE_SIZE - at % PAGE_SIZE) as usize;
            let mut chunk = vec![0u8; in_page.min(max + 1 - out.len())];
            self.read_user(at, &mut chunk)?;
            if let Some(nul) = chunk.iter().position(|&b| b == 0) {
                out.extend_from_slice(&chunk[..nul]);
                return Ok(out);
            }
            out.extend_from_slice(&chunk);
            if out.len() > max {
                return Err(Errno::ENAMETOOLONG);
            }
            at += chunk.len() as u64;
        }
    }

    /// A free range of `len` bytes (page aligned) as close to `va` as can
    /// be found, no further than `reach` from it: where replay's probe stub
    /// goes for the time it looks for a point (no syscall runs meanwhile).
    pub fn free_near(&self, va: u64, len: u64, reach: u64) -> Option<u64> {
        let lo = va.saturating_sub(reach).max(MMAP_MIN_ADDR);
        let hi = va.saturating_add(reach).min(USER_TOP);
        // Gaps between mappings, each as [start, end).
        let mut gaps = Vec::new();
        let mut at = MMAP_MIN_ADDR;
        for (&s, v) in &self.vmas {
            if s > at {
                gaps.push((at, s));
            }
            at = at.max(v.end);
        }
        gaps.push((at, USER_TOP));
        let mut best: Option<u64> = None;
        for (start, end) in gaps {
            let (start, end) = (start.max(lo), end.min(hi));
            if end <= start || end - start < len {
                continue;
            }
            // The end of the gap nearest `va`.
            let pick = if end <= va { end - len } else { start };
            let pick = page_down(pick);
            if pick < start || pick + len > end {
                continue;
            }
            if best.is_none_or(|b| pick.abs_diff(va) < b.abs_diff(va)) {
                best = Some(pick);
            }
        }
        best
    }

    /// Maps the probe stub's pages (kernel-region frames) at `va`.
    pub fn map_stub(&mut self, va: u64, gpa: u64, pages: u64) -> Result<(), Errno> {
        for i in 0..pages {
            self.set_entry(va + i * PAGE_SIZE, leaf::stub(gpa + i * PAGE_SIZE, i > 0))?;
        }
        Ok(())
    }

    /// Takes the stub's pages away again; the guest's cached translations
    /// of them are dropped (shadow paging, see the module's notes).
    pub fn unmap_stub(&mut self, va: u64, gpa: u64, pages: u64) -> Result<(), Errno> {
        for i in 0..pages {
            self.set_entry(va + i * PAGE_SIZE, 0)?;
        }
        self.kernel.forget_mappings(gpa, pages * PAGE_SIZE).map_err(|_| Errno::ENOMEM)
    }

    /// Reads code bytes at `va` for diagnostics (may be fewer when unmapped).
    pub fn peek_code(&self, va: u64, n: usize) -> Vec<u8> {
        let mut b = vec![0u8; n];
        match self.read_user(va, &mut b) {
            Ok(()) => b,
            Err(_) => Vec::new(),
        }
    }
}

/// The kernel slot as a shared slice, for page-table walks.
fn kernel_slice(m: &MemFd) -> &[u8] {
    // SAFETY: the kernel memfd is mapped for its whole size for the life of
    // `m`, and only the session thread reads or writes it.
    unsafe { std::slice::from_raw_parts(m.host_addr() as *const u8, m.size() as usize) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mm() -> Mm {
        let k = MemFd::create("k", x86::KERNEL_SLOT_SIZE).unwrap();
        let g = MemFd::create("g", 1 << 30).unwrap();
        Mm::new(k, g)
    }

    #[test]
    fn probe_stubs_go_in_the_nearest_free_range() {
        let mut m = mm();
        let code = 0x40_0000;
        m.map_anonymous(code, 16 * PAGE_SIZE, PROT_READ | PROT_EXEC, VmaKind::Anonymous).unwrap();
        m.map_anonymous(code - 2 * PAGE_SIZE, PAGE_SIZE, PROT_READ, VmaKind::Anonymous).unwrap();
        // The one-page hole just before the code is too small; below the
        // page under it is nearer than after the code's end.
        assert_eq!(m.free_near(code + PAGE_SIZE, 2 * PAGE_SIZE, 1 << 31), Some(code - 4 * PAGE_SIZE));
        assert_eq!(m.free_near(code + 15 * PAGE_SIZE, 2 * PAGE_SIZE, 1 << 31), Some(code + 16 * PAGE_SIZE));
        // Out of reach: nothing.
        assert_eq!(m.free_near(code + PAGE_SIZE, 2 * PAGE_SIZE, 0), None);
        // Mapped, then gone again without a trace in the mappings.
        let before: Vec<u64> = m.vmas().map(|(s, _)| *s).collect();
        m.map_stub(code + 16 * PAGE_SIZE, x86::GPA_PROBE, 2).unwrap();
        assert!(leaf::present(m.entry(code + 17 * PAGE_SIZE)));
        m.unmap_stub(code + 16 * PAGE_SIZE, x86::GPA_PROBE, 2).unwrap();
        assert!(!leaf::present(m.entry(code + 16 * PAGE_SIZE)));
        assert_eq!(m.vmas().map(|(s, _)| *s).collect::<Vec<_>>(), before);
    }

    #[test]
    fn anonymous_map_is_readable_and_writable() {
        let mut m = mm();
        let a = m.place(0, 3 * PAGE_SIZE, false).unwrap();
        assert_eq!(a, MMAP_BASE - 3 * PAGE_SIZE);
        m.map_anonymous(a, 3 * PAGE_SIZE, PROT_READ | PROT_WRITE, VmaKind::Anonymous).unwrap();
        m.write_user(a + 4090, b"crosses a page").unwrap();
        let mut b = [0u8; 14];
        m.read_user(a + 4090, &mut b).unwrap();
        assert_eq!(&b, b"crosses a page");
        // Frames are contiguous, so the range is one run.
        assert_eq!(m.user_ranges(a, 3 * PAGE_SIZE, true).unwrap().len(), 1);
        // The next mapping goes below.
        assert_eq!(m.place(0, PAGE_SIZE, false).unwrap(), a - PAGE_SIZE);
    }

    #[test]
    fn permissions_are_checked() {
        let mut m = mm();
        m.map_anonymous(0x40_0000, PAGE_SIZE, PROT_READ, VmaKind::Anonymous).unwrap();
        assert_eq!(m.write_user(0x40_0000, b"x"), Err(Errno::EFAULT));
        assert!(m.read_user(0x40_0000, &mut [0u8; 4]).is_ok());
        assert_eq!(m.read_user(0x40_0ffe, &mut [0u8; 4]), Err(Errno::EFAULT));
        assert_eq!(m.user_ranges(u64::MAX - 1, 4, false), Err(Errno::EFAULT));
        assert_eq!(m.user_ranges(USER_TOP, 1, false), Err(Errno::EFAULT));
    }

    #[test]
    fn partial_unmap_splits_and_frees() {
        let mut m = mm();
        let before = m.frames_in_use();
        m.map_anonymous(0x100_0000, 4 * PAGE_SIZE, PROT_READ | PROT_WRITE, VmaKind::Anonymous).unwrap();
        m.unmap(0x100_1000, PAGE_SIZE).unwrap();
        assert_eq!(m.frames_in_use(), before + 3);
        assert_eq!(m.vmas().count(), 2);
        assert!(m.read_user(0x100_1000, &mut [0u8; 1]).is_err());
        assert!(m.read_user(0x100_2000, &mut [0u8; 1]).is_ok());
    }

    #[test]
    fn protect_keeps_contents_through_prot_none() {
        let mut m = mm();
        m.map_anonymous(0x100_0000, 2 * PAGE_SIZE, PROT_READ | PROT_WRITE, VmaKind::Anonymous).unwrap();
        m.write_user(0x100_0000, b"data").unwrap();
        m.protect(0x100_0000, PAGE_SIZE, 0).unwrap();
        assert!(m.read_user(0x100_0000, &mut [0u8; 1]).is_err());
        m.protect(0x100_0000, PAGE_SIZE, PROT_READ).unwrap();
        let mut b = [0u8; 4];
        m.read_user(0x100_0000, &mut b).unwrap();
        assert_eq!(&b, b"data");
        assert_eq!(m.protect(0x200_0000, PAGE_SIZE, PROT_READ), Err(Errno::ENOMEM));
    }

    #[test]
    fn remap_grows_in_place_or_moves() {
        let mut m = mm();
        let a = m.place(0, PAGE_SIZE, false).unwrap();
        m.map_anonymous(a, PAGE_SIZE, PROT_READ | PROT_WRITE, VmaKind::Anonymous).unwrap();
        m.write_user(a, b"keep").unwrap();
        // A mapping right above leaves no room to grow: it must move.
        m.map_anonymous(a + PAGE_SIZE, PAGE_SIZE, PROT_READ, VmaKind::Anonymous).unwrap();
        let b = m.remap(a, PAGE_SIZE, 3 * PAGE_SIZE, true).unwrap();
        assert_ne!(a, b);
        let mut buf = [0u8; 4];
        m.read_user(b, &mut buf).unwrap();
        assert_eq!(&buf, b"keep");
        assert!(m.read_user(a, &mut buf).is_err());
        m.write_user(b + 2 * PAGE_SIZE, b"new").unwrap();
        assert_eq!(m.remap(b, 3 * PAGE_SIZE, PAGE_SIZE, false), Ok(b));
        assert!(m.read_user(b + PAGE_SIZE, &mut buf).is_err());
        assert_eq!(m.remap(0x1234_0000, PAGE_SIZE, 2 * PAGE_SIZE, true), Err(Errno::EFAULT));
    }

    fn allocated_bytes(m: &MemFd) -> u64 {
        use std::os::fd::AsRawFd;
        // SAFETY: fstat into a zeroed struct on a descriptor we own.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        assert_eq!(unsafe { libc::fstat(m.fd().as_raw_fd(), &mut st) }, 0);
        st.st_blocks as u64 * 512
    }

    #[test]
    fn a_sparse_gigabyte_costs_little_host_memory() {
        let k = MemFd::create("k", x86::KERNEL_SLOT_SIZE).unwrap();
        let g = MemFd::create("g", 4 << 30).unwrap();
        let mut m = Mm::new(k, g);
        let a = m.place(0, 1 << 30, false).unwrap();
        m.map_anonymous(a, 1 << 30, PROT_READ | PROT_WRITE, VmaKind::Anonymous).unwrap();
        for i in 0..16u64 {
            m.write_user(a + i * (64 << 20), &[1]).unwrap();
        }
        // 16 touched pages of data; page tables for 1 GiB are 2 MiB.
        assert!(allocated_bytes(&m.guest) <= 16 * 4096, "guest memory {}", allocated_bytes(&m.guest));
        assert!(allocated_bytes(&m.kernel) <= 3 << 20, "page tables {}", allocated_bytes(&m.kernel));
        m.unmap(a, 1 << 30).unwrap();
        assert_eq!(allocated_bytes(&m.guest), 0, "munmap gives the memory back");
    }

    #[test]
    fn brk_grows_and_shrinks() {
        let mut m = mm();
        m.brk_start = 0x60_0000;
        m.brk = 0x60_0000;
        assert_eq!(m.set_brk(0x60_2100), 0x60_2100);
        m.write_user(0x60_2000, b"heap").unwrap();
        assert_eq!(m.set_brk(0x60_1000), 0x60_1000);
        assert!(m.read_user(0x60_1000, &mut [0u8; 1]).is_err());
        assert_eq!(m.set_brk(0x10), 0x60_1000);
    }

    #[test]
    fn cstrings() {
        let mut m = mm();
        m.map_anonymous(0x100_0000, PAGE_SIZE, PROT_READ | PROT_WRITE, VmaKind::Anonymous).unwrap();
        m.write_user(0x100_0000, b"/etc/hosts\0").unwrap();
        assert_eq!(m.read_cstring(0x100_0000, 4096).unwrap(), b"/etc/hosts");
        m.write_user(0x100_0000, &[b'a'; 4096]).unwrap();
        assert_eq!(m.read_cstring(0x100_0000, 100), Err(Errno::ENAMETOOLONG));
        assert_eq!(m.read_cstring(0x100_0f00, 4096), Err(Errno::EFAULT));
    }
}
