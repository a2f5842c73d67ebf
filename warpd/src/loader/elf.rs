//! ELF64 x86_64 executables: static (`ET_EXEC`) and static-pie (`ET_DYN`
//! without `PT_INTERP`). Every field of a hostile file is bounds-checked.

use crate::arch::x86_64::{PAGE_SIZE, USER_TOP};
use crate::kernel::errno::Errno;
use crate::kernel::mm::{self, Mm, VmaKind, PROT_EXEC, PROT_READ, PROT_WRITE};

/// Where a position-independent executable is placed: Linux's
/// ELF_ET_DYN_BASE for x86_64 without randomisation.
pub const PIE_BASE: u64 = 0x5555_5555_4000;

const PT_LOAD: u32 = 1;
const PT_INTERP: u32 = 3;
const PT_PHDR: u32 = 6;
const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;
const EM_X86_64: u16 = 62;
const PF_X: u32 = 1;
const PF_W: u32 = 2;
const PF_R: u32 = 4;

/// Why a file cannot be run.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ElfError {
    /// No ELF magic.
    #[error("not an ELF executable")]
    NotElf,
    /// ELF, but for another machine or class.
    #[error("not an x86_64 program ({0})")]
    WrongMachine(String),
    /// ELF but not an executable (a relocatable object or core file).
    #[error("not an executable ELF file (e_type {0})")]
    NotExecutable(u16),
    /// Headers point outside the file or the address space.
    #[error("malformed ELF file: {0}")]
    Malformed(&'static str),
    /// The guest ran out of memory while loading.
    #[error("not enough guest memory to load the program")]
    NoMemory,
}

#[derive(Clone, Copy, Debug)]
struct Phdr {
    p_type: u32,
    flags: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
    memsz: u64,
}

/// A loaded image: what the auxiliary vector and the first registers need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElfImage {
    pub entry: u64,
    pub phdr: u64,
    pub phnum: u64,
    pub phent: u64,
    /// Load bias (0 for ET_EXEC).
    pub bias: u64,
    /// One past the highest loaded byte: where the program break starts.
    pub end: u64,
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"))
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"))
}

fn machine_name(m: u16) -> String {
    match m {
        3 => "i386".into(),
        40 => "ARM".into(),
        183 => "AArch64".into(),
        243 => "RISC-V".into(),
        8 => "MIPS".into(),
        20 | 21 => "PowerPC".into(),
        other => format!("machine {other}"),
    }
}

struct Parsed {
    e_type: u16,
    entry: u64,
    phoff: u64,
    phent: u64,
    phdrs: Vec<Phdr>,
}

fn parse(file: &[u8]) -> Result<Parsed, ElfError> {
    if file.len() < 4 || &file[..4] != b"\x7fELF" {
        return Err(ElfError::NotElf);
    }
    if file.len() < 64 {
        return Err(ElfError::Malformed("file shorter than the ELF header"));
    }
    let machine = u16_at(file, 18);
    if file[4] != 2 {
        return Err(ElfError::WrongMachine(format!("32-bit {}", machine_name(machine))));
    }
    if file[5] != 1 {
        return Err(ElfError::WrongMachine("big-endian".into()));
    }
    if machine != EM_X86_64 {
        return Err(ElfError::WrongMachine(machine_name(machine)));
    }
    let e_type = u16_at(file, 16);
    if e_type != ET_EXEC && e_type != ET_DYN {
        return Err(ElfError::NotExecutable(e_type));
    }
    let entry = u64_at(file, 24);
    let phoff = u64_at(file, 32);
    let phent = u16_at(file, 54) as u64;
    let phnum = u16_at(file, 56) as u64;
    if phent != 56 {
        return Err(ElfError::Malformed("program header size is not 56"));
    }
    if phnum == 0 || phnum > 256 {
        return Err(ElfError::Malformed("bad program header count"));
    }
    phoff
        .checked_add(phent * phnum)
        .filter(|&e| e <= file.len() as u64)
        .ok_or(ElfError::Malformed("program headers lie outside the file"))?;
    let mut phdrs = Vec::new();
    for i in 0..phnum {
        let o = (phoff + i * phent) as usize;
        phdrs.push(Phdr {
            p_type: u32_at(file, o),
            flags: u32_at(file, o + 4),
            offset: u64_at(file, o + 8),
            vaddr: u64_at(file, o + 16),
            filesz: u64_at(file, o + 32),
            memsz: u64_at(file, o + 40),
        });
    }
    Ok(Parsed { e_type, entry, phoff, phent, phdrs })
}

/// Checks that `file` is a program Warpspeed can run, without loading it;
/// returns the dynamic linker it names (PT_INTERP), if any.
pub fn check(file: &[u8]) -> Result<Option<String>, ElfError> {
    let p = parse(file)?;
    if !p.phdrs.iter().any(|h| h.p_type == PT_LOAD) {
        return Err(ElfError::Malformed("no loadable segment"));
    }
    match p.phdrs.iter().find(|h| h.p_type == PT_INTERP) {
        None => Ok(None),
        Some(interp) => {
            let end = interp
                .offset
                .checked_add(interp.filesz)
                .filter(|&e| e <= file.len() as u64 && interp.filesz > 1 && interp.filesz <= 4096)
                .ok_or(ElfError::Malformed("PT_INTERP lies outside the file"))?;
            let raw = &file[interp.offset as usize..end as usize];
            let name = raw.split(|&b| b == 0).next().unwrap_or_default();
            if name.is_empty() {
                return Err(ElfError::Malformed("empty PT_INTERP"));
            }
            Ok(Some(String::from_utf8_lossy(name).into_owned()))
        }
    }
}

/// Checks a dynamic linker: an ELF shared object for x86_64 that needs no
/// interpreter itself.
pub fn check_interpreter(file: &[u8]) -> Result<(), ElfError> {
    let p = parse(file)?;
    if p.e_type != ET_DYN {
        return Err(ElfError::Malformed("the dynamic linker is not a shared object"));
    }
    if check(file)?.is_some() {
        return Err(ElfError::Malformed("the dynamic linker asks for a dynamic linker"));
    }
    Ok(())
}

/// The page-aligned span of an image's PT_LOAD segments (lowest vaddr, size).
fn span(p: &Parsed) -> Result<(u64, u64), ElfError> {
    let mut lo = u64::MAX;
    let mut hi = 0u64;
    for h in p.phdrs.iter().filter(|h| h.p_type == PT_LOAD) {
        let end = h.vaddr.checked_add(h.memsz).ok_or(ElfError::Malformed("segment address overflows"))?;
        lo = lo.min(mm::page_down(h.vaddr));
        hi = hi.max(end);
    }
    let hi = mm::page_up(hi).ok_or(ElfError::Malformed("segment address overflows"))?;
    Ok((lo, hi.saturating_sub(lo)))
}

fn prot_of(flags: u32) -> u32 {
    let mut p = 0;
    if flags & PF_R != 0 {
        p |= PROT_READ;
    }
    if flags & PF_W != 0 {
        p |= PROT_WRITE;
    }
    if flags & PF_X != 0 {
        p |= PROT_EXEC;
    }
    p
}

/// Maps the PT_LOAD segments of the executable into `mm`: an ET_EXEC at
/// its addresses, a PIE at [`PIE_BASE`].
pub fn load(file: &[u8], name: &str, mm: &mut Mm) -> Result<ElfImage, ElfError> {
    check(file)?;
    let p = parse(file)?;
    let bias = if p.e_type == ET_DYN { PIE_BASE } else { 0 };
    load_at(file, &p, name, mm, bias)
}

/// Maps the dynamic linker where mmap would put it (top-down below the
/// stack), as Linux does without randomisation.
pub fn load_interpreter(file: &[u8], name: &str, mm: &mut Mm) -> Result<ElfImage, ElfError> {
    check_interpreter(file)?;
    let p = parse(file)?;
    let (lo, size) = span(&p)?;
    let base = mm.place(0, size, false).map_err(|_| ElfError::NoMemory)?;
    load_at(file, &p, name, mm, base - lo)
}

fn load_at(file: &[u8], p: &Parsed, name: &str, mm: &mut Mm, bias: u64) -> Result<ElfImage, ElfError> {
    let loads: Vec<Phdr> = p.phdrs.iter().copied().filter(|h| h.p_type == PT_LOAD).collect();

    // Validate every segment (and the entry point) before mapping any.
    if p.entry.wrapping_add(bias) >= USER_TOP {
        return Err(ElfError::Malformed("the entry point lies outside user space"));
    }
    let mut hi = 0u64;
    for h in &loads {
        if h.filesz > h.memsz {
            return Err(ElfError::Malformed("segment file size exceeds its memory size"));
        }
        if h.offset.checked_add(h.filesz).is_none_or(|e| e > file.len() as u64) {
            return Err(ElfError::Malformed("segment lies outside the file"));
        }
        if h.vaddr % PAGE_SIZE != h.offset % PAGE_SIZE {
            return Err(ElfError::Malformed("segment address and offset disagree modulo the page size"));
        }
        let start = h.vaddr.checked_add(bias).ok_or(ElfError::Malformed("segment address overflows"))?;
        let end = start
            .checked_add(h.memsz)
            .filter(|&e| e <= USER_TOP)
            .ok_or(ElfError::Malformed("segment lies outside user space"))?;
        if start < mm::MMAP_MIN_ADDR {
            return Err(ElfError::Malformed("segment below the lowest mappable address"));
        }
        hi = hi.max(end);
    }

    for h in &loads {
        let start = h.vaddr + bias;
        let page_start = mm::page_down(start);
        let page_end = mm::page_up(start + h.memsz).expect("checked");
        // Segments may share a page at their edges: map only the pages not yet
        // mapped, and widen the protection of a shared page.
        let mut va = page_start;
        while va < page_end {
            match mm.vma_at(va).map(|v| v.prot) {
                None => {
                    let mut run_end = va + PAGE_SIZE;
                    while run_end < page_end && mm.vma_at(run_end).is_none() {
                        run_end += PAGE_SIZE;
                    }
                    let kind = VmaKind::Image(name.to_string());
                    mm.map_anonymous(va, run_end - va, prot_of(h.flags) | PROT_READ, kind)
                        .map_err(|_| ElfError::NoMemory)?;
                    va = run_end;
                }
                Some(prot) => {
                    mm.protect(va, PAGE_SIZE, prot | prot_of(h.flags)).map_err(|_| ElfError::NoMemory)?;
                    va += PAGE_SIZE;
                }
            }
        }
        let bytes = &file[h.offset as usize..(h.offset + h.filesz) as usize];
        mm.poke(start, bytes).map_err(|_: Errno| ElfError::NoMemory)?;
    }

    let phdr = match p.phdrs.iter().find(|h| h.p_type == PT_PHDR) {
        Some(h) => h.vaddr + bias,
        None => loads
            .iter()
            .find(|h| h.offset <= p.phoff && p.phoff < h.offset + h.filesz)
            .map(|h| h.vaddr + bias + (p.phoff - h.offset))
            .unwrap_or(0),
    };
    Ok(ElfImage { entry: p.entry.wrapping_add(bias), phdr, phnum: p.phdrs.len() as u64, phent: p.phent, bias, end: hi })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(machine: u16, class: u8, e_type: u16) -> Vec<u8> {
        let mut f = vec![0u8; 64 + 56];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = class;
        f[5] = 1;
        f[16..18].copy_from_slice(&e_type.to_le_bytes());
        f[18..20].copy_from_slice(&machine.to_le_bytes());
        f[32..40].copy_from_slice(&64u64.to_le_bytes());
        f[54..56].copy_from_slice(&56u16.to_le_bytes());
        f[56..58].copy_from_slice(&1u16.to_le_bytes());
        f
    }

    #[test]
    fn refuses_what_it_cannot_run() {
        assert_eq!(check(b"#!/bin/sh\n"), Err(ElfError::NotElf));
        assert_eq!(check(&header(183, 2, 2)), Err(ElfError::WrongMachine("AArch64".into())));
        assert_eq!(check(&header(3, 1, 2)), Err(ElfError::WrongMachine("32-bit i386".into())));
        assert_eq!(check(&header(62, 2, 1)), Err(ElfError::NotExecutable(1)));
        let mut h = header(62, 2, 2);
        h[56..58].copy_from_slice(&100u16.to_le_bytes());
        assert!(matches!(check(&h), Err(ElfError::Malformed(_))));
    }

    #[test]
    fn dynamic_programs_name_their_interpreter() {
        let mut f = header(62, 2, 3);
        let interp = b"/lib64/ld-linux-x86-64.so.2\0";
        let off = f.len() as u64;
        f.extend_from_slice(interp);
        let o = 64;
        f[o..o + 4].copy_from_slice(&PT_INTERP.to_le_bytes());
        f[o + 8..o + 16].copy_from_slice(&off.to_le_bytes());
        f[o + 32..o + 40].copy_from_slice(&(interp.len() as u64).to_le_bytes());
        // A PT_LOAD is needed too; without one the file is malformed.
        assert!(matches!(check(&f), Err(ElfError::Malformed(_))));
        let mut with_load = f.clone();
        with_load[56..58].copy_from_slice(&2u16.to_le_bytes());
        with_load.truncate(64 + 56);
        let mut load = [0u8; 56];
        load[..4].copy_from_slice(&PT_LOAD.to_le_bytes());
        with_load.extend_from_slice(&load);
        with_load.extend_from_slice(interp);
        let off2 = (64 + 112) as u64;
        with_load[64 + 8..64 + 16].copy_from_slice(&off2.to_le_bytes());
        let _ = off;
        assert_eq!(check(&with_load), Ok(Some("/lib64/ld-linux-x86-64.so.2".into())));
    }

    #[test]
    fn truncated_files_are_malformed_not_panics() {
        let f = header(62, 2, 2);
        for n in 0..f.len() {
            let _ = check(&f[..n]);
        }
    }
}
