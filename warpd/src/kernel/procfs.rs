//! `/proc/self/*` as the program should see it: itself, not the broker
//! that performs its calls. `exe` names the program; `cmdline`, `environ`,
//! `auxv`, `maps`, `status` and `stat` are generated from the guest's own
//! state and handed over as a sealed memfd opened by the broker. Other
//! `/proc` paths pass through (the broker's descriptors are the program's,
//! so `/proc/self/fd/N` already answers for it).

use super::mm::{Mm, VmaKind, PROT_EXEC, PROT_READ, PROT_WRITE};

/// What the generated files describe.
#[derive(Clone, Debug, Default)]
pub struct ProcInfo {
    /// The executable's absolute path.
    pub exe: String,
    pub argv: Vec<String>,
    pub env: Vec<String>,
    /// The auxiliary vector as (type, value) pairs, AT_NULL included.
    pub auxv: Vec<(u64, u64)>,
}

/// A `/proc` path that names the program itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelfFile {
    Exe,
    Cmdline,
    Environ,
    Auxv,
    Maps,
    Status,
    Stat,
}

/// Recognises `/proc/self/X`, `/proc/thread-self/X` and `/proc/<pid>/X`
/// (and `/proc/<pid>/task/<pid>/X`) for the program's own pid.
pub fn self_file(path: &[u8], pid: u32) -> Option<SelfFile> {
    let path = std::str::from_utf8(path).ok()?;
    let rest = path.strip_prefix("/proc/")?;
    let (who, rest) = rest.split_once('/')?;
    let pid_s = pid.to_string();
    if who != "self" && who != "thread-self" && who != pid_s {
        return None;
    }
    let rest = match rest.strip_prefix("task/") {
        Some(t) => t.strip_prefix(&format!("{pid_s}/"))?,
        None => rest,
    };
    Some(match rest.trim_end_matches('/') {
        "exe" => SelfFile::Exe,
        "cmdline" => SelfFile::Cmdline,
        "environ" => SelfFile::Environ,
        "auxv" => SelfFile::Auxv,
        "maps" => SelfFile::Maps,
        "status" => SelfFile::Status,
        "stat" => SelfFile::Stat,
        _ => return None,
    })
}

fn nul_joined(v: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    for s in v {
        out.extend_from_slice(s.as_bytes());
        out.push(0);
    }
    out
}

fn comm(exe: &str) -> String {
    let base = exe.rsplit('/').next().unwrap_or(exe);
    base.chars().take(15).collect()
}

/// The contents of a generated file (not `Exe`, which is a link).
pub fn contents(file: SelfFile, info: &ProcInfo, mm: &Mm, pid: u32, ppid: u32, ids: [u32; 4]) -> Vec<u8> {
    match file {
        SelfFile::Exe => info.exe.clone().into_bytes(),
        SelfFile::Cmdline => nul_joined(&info.argv),
        SelfFile::Environ => nul_joined(&info.env),
        SelfFile::Auxv => {
            info.auxv.iter().flat_map(|&(k, v)| k.to_le_bytes().into_iter().chain(v.to_le_bytes())).collect()
        }
        SelfFile::Maps => maps(mm).into_bytes(),
        SelfFile::Status => {
            let [uid, euid, gid, egid] = ids;
            let vm: u64 = mm.vmas().map(|(s, v)| v.end - s).sum::<u64>() / 1024;
            format!(
                "Name:\t{}\nUmask:\t0022\nState:\tR (running)\nTgid:\t{pid}\nNgid:\t0\nPid:\t{pid}\nPPid:\t{ppid}\nTracerPid:\t0\n\
                 Uid:\t{uid}\t{euid}\t{euid}\t{euid}\nGid:\t{gid}\t{egid}\t{egid}\t{egid}\nFDSize:\t64\nVmSize:\t{vm} kB\nThreads:\t1\n",
                comm(&info.exe)
            )
            .into_bytes()
        }
        SelfFile::Stat => {
            let mut f = vec![format!("{pid}"), format!("({})", comm(&info.exe)), "R".into(), format!("{ppid}")];
            // The remaining 48 fields: zero but for the thread count (20th).
            for i in 5..=52 {
                f.push(if i == 20 { "1".into() } else { "0".into() });
            }
            format!("{}\n", f.join(" ")).into_bytes()
        }
    }
}

/// `/proc/self/maps` from the guest's mappings (the syscall trampoline is
/// not a mapping and does not appear).
pub fn maps(mm: &Mm) -> String {
    let mut out = String::new();
    for (&start, v) in mm.vmas() {
        let p = |bit: u32, c: char| if v.prot & bit != 0 { c } else { '-' };
        let name = match &v.kind {
            VmaKind::Anonymous => String::new(),
            VmaKind::Heap => "[heap]".into(),
            VmaKind::Stack => "[stack]".into(),
            VmaKind::Image(path) => path.clone(),
        };
        let line = format!(
            "{start:08x}-{:08x} {}{}{}p 00000000 00:00 0",
            v.end,
            p(PROT_READ, 'r'),
            p(PROT_WRITE, 'w'),
            p(PROT_EXEC, 'x')
        );
        if name.is_empty() {
            out.push_str(&line);
            out.push('\n');
        } else {
            out.push_str(&format!("{line:<73}{name}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_the_programs_own_paths() {
        assert_eq!(self_file(b"/proc/self/exe", 42), Some(SelfFile::Exe));
        assert_eq!(self_file(b"/proc/42/maps", 42), Some(SelfFile::Maps));
        assert_eq!(self_file(b"/proc/thread-self/status", 42), Some(SelfFile::Status));
        assert_eq!(self_file(b"/proc/42/task/42/stat", 42), Some(SelfFile::Stat));
        assert_eq!(self_file(b"/proc/43/maps", 42), None);
        assert_eq!(self_file(b"/proc/self/fd/3", 42), None);
        assert_eq!(self_file(b"/proc/uptime", 42), None);
        assert_eq!(self_file(b"/etc/self/exe", 42), None);
    }

    #[test]
    fn cmdline_and_auxv_layouts() {
        let info = ProcInfo {
            exe: "/bin/x".into(),
            argv: vec!["x".into(), "-v".into()],
            env: vec![],
            auxv: vec![(6, 4096), (0, 0)],
        };
        let k = crate::hv::memory::MemFd::create("k", crate::arch::x86_64::KERNEL_SLOT_SIZE).unwrap();
        let g = crate::hv::memory::MemFd::create("g", 1 << 20).unwrap();
        let mm = Mm::new(k, g);
        assert_eq!(contents(SelfFile::Cmdline, &info, &mm, 1, 0, [0; 4]), b"x\0-v\0");
        let auxv = contents(SelfFile::Auxv, &info, &mm, 1, 0, [0; 4]);
        assert_eq!(auxv.len(), 32);
        assert_eq!(&auxv[..8], &6u64.to_le_bytes());
        let stat = String::from_utf8(contents(SelfFile::Stat, &info, &mm, 7, 3, [0; 4])).unwrap();
        assert!(stat.starts_with("7 (x) R 3 "));
        assert_eq!(stat.split_whitespace().count(), 52);
    }
}
