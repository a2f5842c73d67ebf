//! Reading and loading a whole program: the executable (or, for a `#!`
//! script, its interpreter), the dynamic linker it names, the stack. Used
//! when a session starts and by execve.

use warp_proto::broker::{request, ReadFile, Reply};

use super::{elf, stack};
use crate::arch::x86_64::{self as x86, Regs};
use crate::kernel::errno::Errno;
use crate::kernel::mm::{self, Mm, VmaKind, PROT_READ, PROT_WRITE};
use crate::kernel::outside::OutsideError;
use crate::kernel::process::Identity;

/// The largest executable the loader reads.
pub const MAX_EXECUTABLE: u64 = 1 << 30;
/// Linux's limit on a `#!` line (BINPRM_BUF_SIZE).
const SHEBANG_MAX: usize = 256;

/// Why a program cannot be run: the errno execve would give, and words.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// `secondary`: the program was found, but its interpreter or dynamic
    /// linker was not (execve still says ENOENT; warpctl says 126).
    #[error("{message}")]
    Refused { errno: Errno, message: String, secondary: bool },
    #[error(transparent)]
    Outside(#[from] OutsideError),
}

fn refused(errno: Errno, message: String) -> ExecError {
    ExecError::Refused { errno, message, secondary: false }
}

fn secondary(e: ExecError, what: impl FnOnce(String) -> String) -> ExecError {
    match e {
        ExecError::Refused { errno, message, .. } => {
            ExecError::Refused { errno, message: what(message), secondary: true }
        }
        other => other,
    }
}

/// What was read for a program.
pub struct Images {
    /// The file to run: the executable, or a script's interpreter.
    pub exe: Vec<u8>,
    /// Its path (the interpreter's for a script).
    pub exe_path: String,
    /// The dynamic linker it names, and its bytes.
    pub interp: Option<(String, Vec<u8>)>,
    /// For a `#!` script: the interpreter, its optional argument and the
    /// script path, which come before the script's own arguments.
    pub script_argv: Option<Vec<String>>,
}

/// How the loader asks the broker for a file: the caller's one way to it,
/// which also takes care of the signals a reply carries.
pub type Broker<'a> = dyn FnMut(request::Kind) -> Result<Reply, OutsideError> + 'a;

fn read_file(path: &str, broker: &mut Broker<'_>) -> Result<Vec<u8>, ExecError> {
    let reply =
        broker(request::Kind::ReadFile(ReadFile { path: path.to_string(), max_len: MAX_EXECUTABLE, readable: false }))?;
    if reply.ret < 0 {
        let errno = Errno((-reply.ret) as i32);
        let text = std::io::Error::from_raw_os_error(errno.0);
        let errno = if errno == Errno::EFBIG { Errno::ENOMEM } else { errno };
        return Err(refused(errno, format!("{path}: {text}")));
    }
    Ok(reply.file)
}

/// Parses `#!interpreter [arg]` as Linux does: one optional argument,
/// everything after the interpreter's name.
fn shebang(file: &[u8]) -> Option<(String, Option<String>)> {
    let line = file.strip_prefix(b"#!")?;
    let line = &line[..line.len().min(SHEBANG_MAX - 2)];
    let line = line.split(|&b| b == b'\n').next().unwrap_or(line);
    let text = String::from_utf8_lossy(line);
    let text = text.trim_matches([' ', '\t']);
    let (interp, arg) = match text.find([' ', '\t']) {
        Some(i) => (&text[..i], Some(text[i..].trim_matches([' ', '\t']).to_string()).filter(|a| !a.is_empty())),
        None => (text, None),
    };
    (!interp.is_empty()).then(|| (interp.to_string(), arg))
}

/// Reads the program at `path` through the broker (the user's rights) and
/// checks it: an ELF executable, or a `#!` script whose interpreter is one.
pub fn read(path: &str, broker: &mut Broker<'_>) -> Result<Images, ExecError> {
    let file = read_file(path, broker)?;
    let (exe, exe_path, script_argv) = match shebang(&file) {
        None => (file, path.to_string(), None),
        Some((interp, arg)) => {
            let image =
                read_file(&interp, broker).map_err(|e| secondary(e, |m| format!("{path}: its interpreter {m}")))?;
            if shebang(&image).is_some() {
                return Err(refused(
                    Errno::ENOEXEC,
                    format!("{path}: its interpreter {interp} is itself a script, which is not supported"),
                ));
            }
            let mut argv = vec![interp.clone()];
            argv.extend(arg);
            argv.push(path.to_string());
            (image, interp, Some(argv))
        }
    };
    let noexec = |name: &str, e: elf::ElfError| refused(Errno::ENOEXEC, format!("{name}: {e}"));
    let interp = match elf::check(&exe).map_err(|e| noexec(&exe_path, e))? {
        None => None,
        Some(ld) => {
            let image =
                read_file(&ld, broker).map_err(|e| secondary(e, |m| format!("{exe_path}: its dynamic linker {m}")))?;
            elf::check_interpreter(&image).map_err(|e| noexec(&ld, e))?;
            Some((ld, image))
        }
    };
    Ok(Images { exe, exe_path, interp, script_argv })
}

/// A loaded program: its first registers and its auxiliary vector.
pub struct Loaded {
    pub regs: Regs,
    pub auxv: Vec<(u64, u64)>,
    /// argv as the program got it (a script's interpreter line first).
    pub argv: Vec<String>,
}

/// Maps the images (and, with `vdso`, the vDSO) into an empty address
/// space and builds the stack.
pub fn load(
    images: &Images,
    argv: &[String],
    env: &[String],
    ident: &Identity,
    random: [u8; 16],
    vdso: bool,
    mm: &mut Mm,
) -> Result<Loaded, ExecError> {
    let name = &images.exe_path;
    let loaded = elf::load(&images.exe, name, mm).map_err(|e| refused(Errno::ENOEXEC, format!("{name}: {e}")))?;
    mm.brk_start = mm::page_up(loaded.end).unwrap_or(loaded.end);
    mm.brk = mm.brk_start;
    // A dynamically linked program starts in its dynamic linker, which
    // finds the program through AT_PHDR/AT_ENTRY and itself through AT_BASE.
    let (start, interp_base) = match &images.interp {
        None => (loaded.entry, 0),
        Some((path, image)) => {
            let l =
                elf::load_interpreter(image, path, mm).map_err(|e| refused(Errno::ENOEXEC, format!("{path}: {e}")))?;
            (l.entry, l.bias)
        }
    };
    mm.map_anonymous(mm::STACK_TOP - mm::STACK_SIZE, mm::STACK_SIZE, PROT_READ | PROT_WRITE, VmaKind::Stack)?;
    let mut first_auxv = Vec::new();
    if vdso {
        let image = super::vdso::image(super::vdso::VDSO_VA);
        mm.map_anonymous(super::vdso::VDSO_VA, x86::PAGE_SIZE, PROT_READ | PROT_WRITE, VmaKind::Vdso)?;
        mm.write_forced(super::vdso::VDSO_VA, &image);
        mm.protect(super::vdso::VDSO_VA, x86::PAGE_SIZE, PROT_READ | mm::PROT_EXEC)?;
        // First, where Linux puts it.
        first_auxv.push((stack::AT_SYSINFO_EHDR, super::vdso::VDSO_VA));
    }

    let argv: Vec<String> = match &images.script_argv {
        None => argv.to_vec(),
        Some(pre) => pre.iter().cloned().chain(argv.iter().skip(1).cloned()).collect(),
    };
    let (hwcap, hwcap2) = x86::cpu::hwcaps();
    let argv_b: Vec<Vec<u8>> = argv.iter().map(|s| s.as_bytes().to_vec()).collect();
    let envp_b: Vec<Vec<u8>> = env.iter().map(|s| s.as_bytes().to_vec()).collect();
    let st = stack::StackSpec {
        argv: &argv_b,
        envp: &envp_b,
        execfn: name.as_bytes(),
        random,
        auxv: first_auxv
            .into_iter()
            .chain([
                (stack::AT_HWCAP, hwcap),
                (stack::AT_PAGESZ, x86::PAGE_SIZE),
                (stack::AT_CLKTCK, 100),
                (stack::AT_PHDR, loaded.phdr),
                (stack::AT_PHENT, loaded.phent),
                (stack::AT_PHNUM, loaded.phnum),
                (stack::AT_BASE, interp_base),
                (stack::AT_FLAGS, 0),
                (stack::AT_ENTRY, loaded.entry),
                (stack::AT_UID, ident.uid as u64),
                (stack::AT_EUID, ident.euid as u64),
                (stack::AT_GID, ident.gid as u64),
                (stack::AT_EGID, ident.egid as u64),
                (stack::AT_SECURE, 0),
                (stack::AT_HWCAP2, hwcap2),
            ])
            .collect(),
    };
    let img = stack::build(&st, mm::STACK_TOP);
    if img.bytes.len() as u64 > mm::STACK_SIZE / 4 {
        return Err(refused(Errno::E2BIG, "argument list too long".into()));
    }
    mm.poke(img.start, &img.bytes)?;
    Ok(Loaded { regs: Regs { rip: start, rsp: img.rsp, rflags: 0x202, ..Default::default() }, auxv: img.auxv, argv })
}

impl From<Errno> for ExecError {
    fn from(e: Errno) -> Self {
        refused(e, format!("loading the program: {}", std::io::Error::from_raw_os_error(e.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shebang_lines_as_linux_reads_them() {
        assert_eq!(shebang(b"#!/bin/sh\necho"), Some(("/bin/sh".into(), None)));
        assert_eq!(
            shebang(b"#! /usr/bin/env  python3 -u \n"),
            Some(("/usr/bin/env".into(), Some("python3 -u".into())))
        );
        assert_eq!(shebang(b"#!\n"), None);
        assert_eq!(shebang(b"\x7fELF"), None);
    }
}
