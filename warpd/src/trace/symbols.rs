//! Where a program died, in words: `at main (bug.c:37)` from the recorded
//! executable's DWARF line tables (addr2line/gimli), its symbol table when
//! it has no debug information, or `libc.so.6+0x1234` for an address in
//! another mapped file. The executable comes from the trace, so this works
//! on a machine that does not have it. A library is read when the
//! recording ends (through the broker, with the user's rights), checked
//! against the bytes the program had mapped, and symbolised the same way
//! (`at lib_fn (lib.c:12) in libfoo.so`), with its separate debug file
//! under /usr/lib/debug/.build-id when it has one; the place is kept in
//! the session's ending, which a replay elsewhere gives back.

use std::borrow::Cow;

use addr2line::gimli;
use object::{Object, ObjectSection, ObjectSegment, ObjectSymbol, ObjectSymbolTable, SymbolKind};

use warp_proto::trace::CrashSite;

use crate::kernel::mm::{Mm, VmaKind};
use crate::kernel::signals;

/// The auxv entry holding the program's entry point.
const AT_ENTRY: u64 = 9;

/// What the program ran: the executable image and where it was loaded.
pub struct Program<'a> {
    pub exe_path: &'a str,
    pub exe: &'a [u8],
    pub auxv: &'a [(u64, u64)],
}

/// A file's bytes by its path, for the symbols of a library (None: not
/// readable, or no way to read files, as in a replay).
pub type Files<'a> = dyn FnMut(&str) -> Option<Vec<u8>> + 'a;

/// The most of a library (or its debug file) read for its symbols.
pub const MAX_SYMBOL_FILE: u64 = 512 << 20;

/// How many bytes at the crash must be the file's for its symbols to count.
const CHECKED_BYTES: usize = 64;

/// What an address of an image is: its function, file and line from the
/// DWARF, or the nearest symbol and the offset from it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Place {
    pub function: Option<String>,
    pub file: Option<String>,
    pub line: Option<u32>,
    pub symbol: Option<(String, u64)>,
}

impl std::fmt::Display for Place {
    /// `function (file:line)`, or `symbol+0xoffset`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let place = self.file.as_ref().map(|file| match self.line {
            Some(line) => format!("{file}:{line}"),
            None => file.clone(),
        });
        match (&self.function, place, &self.symbol) {
            (Some(func), Some(p), _) => write!(f, "{func} ({p})"),
            (Some(func), None, _) => write!(f, "{func}"),
            (None, Some(p), _) => write!(f, "?? ({p})"),
            (None, None, Some((name, off))) => write!(f, "{name}+{off:#x}"),
            (None, None, None) => write!(f, "??"),
        }
    }
}

/// `function (file:line)` for `addr` in the ELF `image` (an address of the
/// image's own, the load bias taken off), or the nearest symbol.
pub fn symbolise(image: &[u8], addr: u64) -> Option<Place> {
    let obj = object::File::parse(image).ok()?;
    let endian = if obj.is_little_endian() { gimli::RunTimeEndian::Little } else { gimli::RunTimeEndian::Big };
    let load = |id: gimli::SectionId| -> Result<Cow<'_, [u8]>, gimli::Error> {
        Ok(obj.section_by_name(id.name()).and_then(|s| s.uncompressed_data().ok()).unwrap_or(Cow::Borrowed(&[])))
    };
    let sections = gimli::DwarfSections::load(load).ok();
    let from_dwarf = sections.as_ref().and_then(|sections| {
        let dwarf = sections.borrow(|s| gimli::EndianSlice::new(s, endian));
        let ctx = addr2line::Context::from_dwarf(dwarf).ok()?;
        let mut frames = ctx.find_frames(addr).skip_all_loads().ok()?;
        let frame = frames.next().ok()??;
        let function = frame.function.as_ref().and_then(|f| f.demangle().ok().map(|n| n.into_owned()));
        let file = frame.location.as_ref().and_then(|l| Some(l.file?.rsplit('/').next()?.to_string()));
        let line = frame.location.as_ref().and_then(|l| l.line).filter(|_| file.is_some());
        (function.is_some() || file.is_some()).then_some(Place { function, file, line, symbol: None })
    });
    from_dwarf.or_else(|| {
        let (name, start) = enclosing_symbol(&obj, addr)?;
        let name = addr2line::demangle_auto(Cow::Borrowed(name), None).into_owned();
        Some(Place { symbol: Some((name, addr - start)), ..Place::default() })
    })
}

/// The function symbol `addr` is in: the symbol table's, else the dynamic
/// one's (a stripped library keeps that). The nearest one below it, but
/// not one whose size says it ends before `addr` (a static function of a
/// stripped library is no part of its exported neighbour).
fn enclosing_symbol<'d>(obj: &object::File<'d>, addr: u64) -> Option<(&'d str, u64)> {
    let table = obj.symbol_table().or_else(|| obj.dynamic_symbol_table())?;
    let mut best: Option<(&'d str, u64, u64)> = None;
    for s in table.symbols() {
        if !s.is_definition() || s.kind() != SymbolKind::Text || s.address() > addr {
            continue;
        }
        let Ok(name) = s.name() else { continue };
        if name.is_empty() {
            continue;
        }
        // Of several at one address, the one with a size, then the first.
        let better = match best {
            None => true,
            Some((_, a, size)) => s.address() > a || (s.address() == a && size == 0 && s.size() > 0),
        };
        if better {
            best = Some((name, s.address(), s.size()));
        }
    }
    let (name, start, size) = best?;
    (size == 0 || addr < start + size).then_some((name, start))
}

/// What `rip` in a library mapped from `file` at `base` (its lowest
/// mapping) is: its place from the file's DWARF or symbols, or from its
/// separate debug file. None when the file is not what the program had
/// mapped there (the bytes at `rip` differ), or says nothing of it.
fn library_place(file: &[u8], rip: u64, base: u64, mm: &Mm, files: &mut Files<'_>) -> Option<Place> {
    let obj = object::File::parse(file).ok()?;
    let lowest = obj.segments().map(|s| s.address()).min()?;
    let vaddr = rip.checked_sub(base)?.checked_add(crate::kernel::mm::page_down(lowest))?;
    // The segment whose file bytes hold `vaddr`, and the bytes there.
    let at = obj.segments().find_map(|s| {
        let (off, size) = s.file_range();
        let into = vaddr.checked_sub(s.address())?;
        (into < size).then(|| (off + into, size - into))
    })?;
    let n = (at.1 as usize).min(CHECKED_BYTES);
    let theirs = file.get(at.0 as usize..at.0 as usize + n)?;
    let mut mapped = vec![0u8; n];
    if mm.read_forced(rip, &mut mapped) != n || mapped != theirs {
        tracing::debug!("{rip:#x}: the library file's bytes are not what the program had mapped");
        return None;
    }
    let place = symbolise(file, vaddr);
    if place.as_ref().is_some_and(|p| p.function.is_some() || p.file.is_some()) {
        return place;
    }
    debug_file(&obj, files).and_then(|debug| symbolise(&debug, vaddr)).or(place)
}

/// A library's separate debug information, where distributions keep it:
/// `/usr/lib/debug/.build-id/ab/cdef....debug` by its build ID.
fn debug_file(obj: &object::File<'_>, files: &mut Files<'_>) -> Option<Vec<u8>> {
    let id = obj.build_id().ok()??;
    if id.len() < 2 {
        return None;
    }
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let debug = files(&format!("/usr/lib/debug/.build-id/{}/{}.debug", &hex[..2], &hex[2..]))?;
    // The same build: its ID must match.
    let same = object::File::parse(&*debug).ok()?.build_id().ok()?? == id;
    same.then_some(debug)
}

/// Where an address is: the mapped file (its name) and the offset from
/// its first mapping, and what the file's symbols say of it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Site {
    pub module: String,
    pub offset: u64,
    pub place: Option<Place>,
    /// In a file other than the executable (its name follows the place).
    pub library: bool,
}

impl std::fmt::Display for Site {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.place {
            Some(p) if self.library => write!(f, "{p} in {}", self.module),
            Some(p) => write!(f, "{p}"),
            None => write!(f, "{}+{:#x}", self.module, self.offset),
        }
    }
}

/// Where `rip` is: the executable's or a library's function and line,
/// else the mapped file and the offset from its first mapping (None
/// outside any file). `files` reads a library.
pub fn locate(rip: u64, program: &Program<'_>, mm: &Mm, files: &mut Files<'_>) -> Option<Site> {
    let vma = mm.vma_at(rip)?;
    let VmaKind::Image(path) = &vma.kind else {
        return None;
    };
    let name = path.rsplit('/').next().unwrap_or(path).to_string();
    let base = mm.vmas().filter(|(_, v)| v.kind == vma.kind).map(|(&s, _)| s).min().unwrap_or(rip);
    if path == program.exe_path {
        // The load bias: where the entry point is against where the image says.
        let entry = program.auxv.iter().find(|&&(k, _)| k == AT_ENTRY).map(|&(_, v)| v);
        let image_entry = object::File::parse(program.exe).ok().map(|o| o.entry());
        let bias = match (entry, image_entry) {
            (Some(e), Some(i)) => e.wrapping_sub(i),
            _ => 0,
        };
        if let Some(place) = symbolise(program.exe, rip.wrapping_sub(bias)) {
            return Some(Site { module: name, offset: rip - base, place: Some(place), library: false });
        }
    } else if let Some(file) = files(path) {
        let place = library_place(&file, rip, base, mm, files);
        return Some(Site { module: name, offset: rip - base, library: place.is_some(), place });
    }
    Some(Site { module: name, offset: rip - base, place: None, library: false })
}

/// The line for a program that a signal killed: the signal, the faulting
/// address for memory faults, and where it was.
/// With it, the same as fields (none when there is no place to give).
pub fn crash_line(
    signal: i32,
    fault: Option<(u64, Option<u64>)>,
    program: &Program<'_>,
    mm: &Mm,
    files: &mut Files<'_>,
) -> (String, Option<CrashSite>) {
    let mut line = format!("program killed by {}", signals::name(signal));
    let Some((rip, address)) = fault else { return (line, None) };
    if let Some(a) = address {
        line.push_str(&format!(" (address {a:#x})"));
    }
    let site = locate(rip, program, mm, files);
    match &site {
        Some(at) => line.push_str(&format!(" at {at}")),
        None => line.push_str(&format!(" at {rip:#x}")),
    }
    let site = site.unwrap_or_default();
    let place = site.place.unwrap_or_default();
    let (symbol, symbol_offset) = place.symbol.unwrap_or_default();
    let crash = CrashSite {
        rip,
        address,
        function: place.function.unwrap_or_default(),
        file: place.file.unwrap_or_default(),
        line: place.line.unwrap_or(0),
        symbol,
        symbol_offset,
        module: site.module,
        offset: site.offset,
    };
    (line, Some(crash))
}
