//! Where a program died, in words: `at main (bug.c:37)` from the recorded
//! executable's DWARF line tables (addr2line/gimli), its symbol table when
//! it has no debug information, or `libc.so.6+0x1234` for an address in
//! another mapped file. The executable comes from the trace, so this works
//! on a machine that does not have it.

use std::borrow::Cow;

use addr2line::gimli;
use object::{Object, ObjectSection};

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

/// `function (file:line)` for `addr` in the ELF `image` (an address of the
/// image's own, the load bias taken off), or the nearest symbol.
pub fn symbolise(image: &[u8], addr: u64) -> Option<String> {
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
        let place = frame.location.as_ref().and_then(|l| {
            let file = l.file?.rsplit('/').next()?;
            Some(match l.line {
                Some(line) => format!("{file}:{line}"),
                None => file.to_string(),
            })
        });
        match (function, place) {
            (Some(f), Some(p)) => Some(format!("{f} ({p})")),
            (Some(f), None) => Some(f),
            (None, Some(p)) => Some(format!("?? ({p})")),
            (None, None) => None,
        }
    });
    from_dwarf.or_else(|| {
        let symbols = obj.symbol_map();
        let s = symbols.get(addr)?;
        let name = addr2line::demangle_auto(Cow::Borrowed(s.name()), None).into_owned();
        Some(format!("{name}+{:#x}", addr - s.address()))
    })
}

/// Where `rip` is: the executable's function and line, else the mapped
/// file and the offset from its first mapping.
pub fn locate(rip: u64, program: &Program<'_>, mm: &Mm) -> Option<String> {
    let vma = mm.vma_at(rip)?;
    let VmaKind::Image(path) = &vma.kind else {
        return Some(format!("{rip:#x}"));
    };
    let base = mm.vmas().filter(|(_, v)| v.kind == vma.kind).map(|(&s, _)| s).min().unwrap_or(rip);
    if path == program.exe_path {
        // The load bias: where the entry point is against where the image says.
        let entry = program.auxv.iter().find(|&&(k, _)| k == AT_ENTRY).map(|&(_, v)| v);
        let image_entry = object::File::parse(program.exe).ok().map(|o| o.entry());
        let bias = match (entry, image_entry) {
            (Some(e), Some(i)) => e.wrapping_sub(i),
            _ => 0,
        };
        if let Some(s) = symbolise(program.exe, rip.wrapping_sub(bias)) {
            return Some(s);
        }
    }
    let name = path.rsplit('/').next().unwrap_or(path);
    Some(format!("{name}+{:#x}", rip - base))
}

/// The line for a program that a signal killed: the signal, the faulting
/// address for memory faults, and where it was.
pub fn crash_line(signal: i32, fault: Option<(u64, Option<u64>)>, program: &Program<'_>, mm: &Mm) -> String {
    let mut line = format!("program killed by {}", signals::name(signal));
    if let Some((rip, address)) = fault {
        if let Some(a) = address {
            line.push_str(&format!(" (address {a:#x})"));
        }
        match locate(rip, program, mm) {
            Some(at) => line.push_str(&format!(" at {at}")),
            None => line.push_str(&format!(" at {rip:#x}")),
        }
    }
    line
}
