//! Where a program died, in words: `at main (bug.c:37)` from the recorded
//! executable's DWARF line tables (addr2line/gimli), its symbol table when
//! it has no debug information, or `libc.so.6+0x1234` for an address in
//! another mapped file. The executable comes from the trace, so this works
//! on a machine that does not have it.

use std::borrow::Cow;

use addr2line::gimli;
use object::{Object, ObjectSection};

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
        let symbols = obj.symbol_map();
        let s = symbols.get(addr)?;
        let name = addr2line::demangle_auto(Cow::Borrowed(s.name()), None).into_owned();
        Some(Place { symbol: Some((name, addr - s.address())), ..Place::default() })
    })
}

/// Where an address is: the mapped file (its name) and the offset from
/// its first mapping, and what the executable's symbols say of it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Site {
    pub module: String,
    pub offset: u64,
    pub place: Option<Place>,
}

impl std::fmt::Display for Site {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.place {
            Some(p) => write!(f, "{p}"),
            None => write!(f, "{}+{:#x}", self.module, self.offset),
        }
    }
}

/// Where `rip` is: the executable's function and line, else the mapped
/// file and the offset from its first mapping (None outside any file).
pub fn locate(rip: u64, program: &Program<'_>, mm: &Mm) -> Option<Site> {
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
            return Some(Site { module: name, offset: rip - base, place: Some(place) });
        }
    }
    Some(Site { module: name, offset: rip - base, place: None })
}

/// The line for a program that a signal killed: the signal, the faulting
/// address for memory faults, and where it was.
/// With it, the same as fields (none when there is no place to give).
pub fn crash_line(
    signal: i32,
    fault: Option<(u64, Option<u64>)>,
    program: &Program<'_>,
    mm: &Mm,
) -> (String, Option<CrashSite>) {
    let mut line = format!("program killed by {}", signals::name(signal));
    let Some((rip, address)) = fault else { return (line, None) };
    if let Some(a) = address {
        line.push_str(&format!(" (address {a:#x})"));
    }
    let site = locate(rip, program, mm);
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
