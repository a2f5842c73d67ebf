//! The vDSO every program gets (trace format 10 on): one page of ours,
//! built here, not the host's. Its functions (`__vdso_clock_gettime`,
//! `__vdso_gettimeofday`, `__vdso_time`, `__vdso_getcpu`,
//! `__vdso_clock_getres`, each also under its plain name, weak, as Linux's
//! has them) are the system call and nothing else, so their results come
//! through the syscall path and are recorded like any call's. The image
//! is a shared object as the kernel's is: a dynamic symbol table with a
//! SysV hash, version definitions (`LINUX_2.6`, the version the C
//! libraries ask for), a soname (`linux-vdso.so.1`) and section headers
//! for tools. It is linked at the address it is mapped at, so a loader
//! relocates nothing in it (its dynamic section is read-only). The program
//! finds it through AT_SYSINFO_EHDR; `/proc/self/maps` shows `[vdso]`.

use crate::arch::x86_64::PAGE_SIZE;

/// Where the vDSO is mapped: between the mmap area's top and the stack.
pub const VDSO_VA: u64 = 0x7fff_f800_0000;

/// Its functions: the syscall each makes, and its name.
pub const FUNCTIONS: &[(u32, &str)] =
    &[(228, "clock_gettime"), (96, "gettimeofday"), (201, "time"), (309, "getcpu"), (229, "clock_getres")];

const SONAME: &str = "linux-vdso.so.1";
const VERSION: &str = "LINUX_2.6";

/// Bytes each function's code takes (`mov eax, NR; syscall; ret`, then int3s).
const STUB: usize = 16;

const SHT_PROGBITS: u32 = 1;
const SHT_STRTAB: u32 = 3;
const SHT_HASH: u32 = 5;
const SHT_DYNAMIC: u32 = 6;
const SHT_DYNSYM: u32 = 11;
const SHT_GNU_VERDEF: u32 = 0x6fff_fffd;
const SHT_GNU_VERSYM: u32 = 0x6fff_ffff;
const SHF_ALLOC: u64 = 2;
const SHF_EXECINSTR: u64 = 4;

const DT_NULL: u64 = 0;
const DT_HASH: u64 = 4;
const DT_STRTAB: u64 = 5;
const DT_SYMTAB: u64 = 6;
const DT_STRSZ: u64 = 10;
const DT_SYMENT: u64 = 11;
const DT_SONAME: u64 = 14;
const DT_VERSYM: u64 = 0x6fff_fff0;
const DT_VERDEF: u64 = 0x6fff_fffc;
const DT_VERDEFNUM: u64 = 0x6fff_fffd;

/// The System V ELF hash of a symbol or version name.
fn elf_hash(name: &[u8]) -> u32 {
    let mut h: u32 = 0;
    for &c in name {
        h = (h << 4).wrapping_add(c as u32);
        let g = h & 0xf000_0000;
        if g != 0 {
            h ^= g >> 24;
        }
        h &= !g;
    }
    h
}

/// A byte buffer written at increasing offsets.
#[derive(Default)]
struct Image(Vec<u8>);

impl Image {
    fn align(&mut self, to: usize) -> usize {
        while !self.0.len().is_multiple_of(to) {
            self.0.push(0);
        }
        self.0.len()
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn put_u64(&mut self, at: usize, v: u64) {
        self.0[at..at + 8].copy_from_slice(&v.to_le_bytes());
    }
    fn put_u16(&mut self, at: usize, v: u16) {
        self.0[at..at + 2].copy_from_slice(&v.to_le_bytes());
    }
}

/// A string table being built: offsets of the names put in it.
struct Strings(Vec<u8>);

impl Strings {
    fn new() -> Self {
        Strings(vec![0])
    }
    fn add(&mut self, s: &str) -> u32 {
        let at = self.0.len() as u32;
        self.0.extend_from_slice(s.as_bytes());
        self.0.push(0);
        at
    }
}

/// One section header's fields.
struct Section {
    name: u32,
    kind: u32,
    flags: u64,
    offset: usize,
    size: usize,
    link: u32,
    info: u32,
    align: u64,
    entsize: u64,
}

/// The vDSO image, linked at `base` (at most a page).
pub fn image(base: u64) -> Vec<u8> {
    let mut img = Image::default();
    // ELF header, filled in at the end; two program headers after it.
    img.0.resize(64 + 2 * 56, 0);

    // Names.
    let mut dynstr = Strings::new();
    let soname = dynstr.add(SONAME);
    let version = dynstr.add(VERSION);
    // Symbols: the null one, then per function `__vdso_NAME` (global) and `NAME` (weak).
    let mut symbols: Vec<(u32, u8, usize)> = Vec::new(); // name, info, function index
    for (i, &(_, name)) in FUNCTIONS.iter().enumerate() {
        symbols.push((dynstr.add(&format!("__vdso_{name}")), (1 << 4) | 2, i));
        symbols.push((dynstr.add(name), (2 << 4) | 2, i));
    }
    let nsyms = symbols.len() + 1;
    let names: Vec<Vec<u8>> = std::iter::once(Vec::new())
        .chain(symbols.iter().map(|&(n, _, _)| {
            let s = &dynstr.0[n as usize..];
            s[..s.iter().position(|&b| b == 0).unwrap_or(s.len())].to_vec()
        }))
        .collect();

    // .hash: nbucket, nchain, buckets, chains.
    let hash_off = img.align(8);
    let nbucket = 3usize;
    let mut buckets = vec![0u32; nbucket];
    let mut chains = vec![0u32; nsyms];
    for (i, name) in names.iter().enumerate().skip(1) {
        let b = elf_hash(name) as usize % nbucket;
        chains[i] = buckets[b];
        buckets[b] = i as u32;
    }
    img.u32(nbucket as u32);
    img.u32(nsyms as u32);
    for b in buckets {
        img.u32(b);
    }
    for c in chains {
        img.u32(c);
    }
    let hash_len = img.0.len() - hash_off;

    // .dynsym (values filled once .text's place is known).
    let dynsym_off = img.align(8);
    img.0.resize(dynsym_off + 24 * nsyms, 0);

    // .dynstr
    let dynstr_off = img.0.len();
    img.0.extend_from_slice(&dynstr.0);

    // .gnu.version: the null symbol local (0), the rest LINUX_2.6 (2).
    let versym_off = img.align(2);
    img.u16(0);
    for _ in &symbols {
        img.u16(2);
    }

    // .gnu.version_d: the object itself (base), then LINUX_2.6.
    let verdef_off = img.align(4);
    for (ndx, (flags, name, name_at, next)) in
        [(1u16, SONAME, soname, 28u32), (0u16, VERSION, version, 0u32)].into_iter().enumerate()
    {
        img.u16(1); // vd_version
        img.u16(flags); // VER_FLG_BASE for the first
        img.u16(ndx as u16 + 1);
        img.u16(1); // one name
        img.u32(elf_hash(name.as_bytes()));
        img.u32(20); // its Verdaux follows
        img.u32(next);
        img.u32(name_at);
        img.u32(0);
    }
    let verdef_len = img.0.len() - verdef_off;

    // .text
    let text_off = img.align(STUB);
    for &(nr, _) in FUNCTIONS {
        let mut code = vec![0xb8];
        code.extend_from_slice(&nr.to_le_bytes());
        code.extend_from_slice(&[0x0f, 0x05, 0xc3]);
        code.resize(STUB, 0xcc);
        img.0.extend_from_slice(&code);
    }
    let text_len = img.0.len() - text_off;

    // Symbols, now that the code's place is known.
    for (k, &(name, info, func)) in symbols.iter().enumerate() {
        let at = dynsym_off + 24 * (k + 1);
        img.0[at..at + 4].copy_from_slice(&name.to_le_bytes());
        img.0[at + 4] = info;
        img.0[at + 5] = 0; // default visibility
        img.put_u16(at + 6, 6); // .text's section index
        img.put_u64(at + 8, base + (text_off + func * STUB) as u64);
        img.put_u64(at + 16, 8);
    }

    // .dynamic
    let dynamic_off = img.align(8);
    let at = |off: usize| base + off as u64;
    for (tag, value) in [
        (DT_HASH, at(hash_off)),
        (DT_STRTAB, at(dynstr_off)),
        (DT_SYMTAB, at(dynsym_off)),
        (DT_STRSZ, dynstr.0.len() as u64),
        (DT_SYMENT, 24),
        (DT_SONAME, soname as u64),
        (DT_VERSYM, at(versym_off)),
        (DT_VERDEF, at(verdef_off)),
        (DT_VERDEFNUM, 2),
        (DT_NULL, 0),
    ] {
        img.u64(tag);
        img.u64(value);
    }
    let dynamic_len = img.0.len() - dynamic_off;
    let loaded_len = img.0.len();

    // Section names and headers (not loaded, but in the page all the same).
    let mut shstr = Strings::new();
    let sections = [
        Section { name: 0, kind: 0, flags: 0, offset: 0, size: 0, link: 0, info: 0, align: 0, entsize: 0 },
        Section {
            name: shstr.add(".hash"),
            kind: SHT_HASH,
            flags: SHF_ALLOC,
            offset: hash_off,
            size: hash_len,
            link: 2,
            info: 0,
            align: 8,
            entsize: 4,
        },
        Section {
            name: shstr.add(".dynsym"),
            kind: SHT_DYNSYM,
            flags: SHF_ALLOC,
            offset: dynsym_off,
            size: 24 * nsyms,
            link: 3,
            info: 1,
            align: 8,
            entsize: 24,
        },
        Section {
            name: shstr.add(".dynstr"),
            kind: SHT_STRTAB,
            flags: SHF_ALLOC,
            offset: dynstr_off,
            size: dynstr.0.len(),
            link: 0,
            info: 0,
            align: 1,
            entsize: 0,
        },
        Section {
            name: shstr.add(".gnu.version"),
            kind: SHT_GNU_VERSYM,
            flags: SHF_ALLOC,
            offset: versym_off,
            size: 2 * nsyms,
            link: 2,
            info: 0,
            align: 2,
            entsize: 2,
        },
        Section {
            name: shstr.add(".gnu.version_d"),
            kind: SHT_GNU_VERDEF,
            flags: SHF_ALLOC,
            offset: verdef_off,
            size: verdef_len,
            link: 3,
            info: 2,
            align: 4,
            entsize: 0,
        },
        Section {
            name: shstr.add(".text"),
            kind: SHT_PROGBITS,
            flags: SHF_ALLOC | SHF_EXECINSTR,
            offset: text_off,
            size: text_len,
            link: 0,
            info: 0,
            align: STUB as u64,
            entsize: 0,
        },
        Section {
            name: shstr.add(".dynamic"),
            kind: SHT_DYNAMIC,
            flags: SHF_ALLOC,
            offset: dynamic_off,
            size: dynamic_len,
            link: 3,
            info: 0,
            align: 8,
            entsize: 16,
        },
        Section {
            name: shstr.add(".shstrtab"),
            kind: SHT_STRTAB,
            flags: 0,
            offset: 0,
            size: 0,
            link: 0,
            info: 0,
            align: 1,
            entsize: 0,
        },
    ];
    let shstr_off = img.0.len();
    img.0.extend_from_slice(&shstr.0);
    let shoff = img.align(8);
    for (i, s) in sections.iter().enumerate() {
        let (offset, size) = if i == sections.len() - 1 { (shstr_off, shstr.0.len()) } else { (s.offset, s.size) };
        img.u32(s.name);
        img.u32(s.kind);
        img.u64(s.flags);
        img.u64(if s.flags & SHF_ALLOC != 0 { at(offset) } else { 0 });
        img.u64(offset as u64);
        img.u64(size as u64);
        img.u32(s.link);
        img.u32(s.info);
        img.u64(s.align);
        img.u64(s.entsize);
    }
    let total = img.0.len();

    // The ELF header and the program headers.
    let mut head = Image::default();
    head.0.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
    head.0.resize(16, 0);
    head.u16(3); // ET_DYN
    head.u16(62); // EM_X86_64
    head.u32(1);
    head.u64(0); // no entry point
    head.u64(64); // program headers
    head.u64(shoff as u64);
    head.u32(0);
    head.u16(64);
    head.u16(56);
    head.u16(2);
    head.u16(64);
    head.u16(sections.len() as u16);
    head.u16(sections.len() as u16 - 1);
    // PT_LOAD, read and execute, the whole image.
    head.u32(1);
    head.u32(5);
    head.u64(0);
    head.u64(base);
    head.u64(base);
    head.u64(total as u64);
    head.u64(total as u64);
    head.u64(PAGE_SIZE);
    // PT_DYNAMIC, read only.
    head.u32(2);
    head.u32(4);
    head.u64(dynamic_off as u64);
    head.u64(at(dynamic_off));
    head.u64(at(dynamic_off));
    head.u64(dynamic_len as u64);
    head.u64(dynamic_len as u64);
    head.u64(8);
    img.0[..head.0.len()].copy_from_slice(&head.0);
    debug_assert!(loaded_len <= total && total as u64 <= PAGE_SIZE);
    img.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use object::{Object, ObjectSection, ObjectSymbol};

    #[test]
    fn the_image_is_a_shared_object_with_its_functions() {
        let img = image(VDSO_VA);
        assert!(img.len() as u64 <= PAGE_SIZE, "{} bytes", img.len());
        let obj = object::File::parse(&*img).expect("an ELF file");
        assert_eq!(obj.kind(), object::ObjectKind::Dynamic);
        let text = obj.section_by_name(".text").expect(".text");
        for &(nr, name) in FUNCTIONS {
            for sym in [format!("__vdso_{name}"), name.to_string()] {
                let s = obj.dynamic_symbols().find(|s| s.name() == Ok(sym.as_str())).unwrap_or_else(|| panic!("{sym}"));
                assert!(s.address() >= VDSO_VA && s.size() == 8, "{sym}");
                let at = (s.address() - text.address()) as usize;
                let code = &text.data().unwrap()[at..at + 8];
                let mut want = vec![0xb8];
                want.extend_from_slice(&nr.to_le_bytes());
                want.extend_from_slice(&[0x0f, 0x05, 0xc3]);
                assert_eq!(code, want, "{sym}");
            }
        }
        let versions = obj.section_by_name(".gnu.version_d").expect("version definitions");
        assert!(versions.data().unwrap().len() == 56);
        assert!(obj.section_by_name(".dynamic").is_some());
    }

    #[test]
    fn elf_hash_is_the_system_v_one() {
        // Values from the gABI's algorithm, as readelf shows them.
        assert_eq!(elf_hash(b""), 0);
        assert_eq!(elf_hash(b"LINUX_2.6"), 0x3ae75f6);
        assert_eq!(elf_hash(b"printf"), 0x077905a6);
    }
}
