//! `/proc/self/*` as the program should see it: itself, not the broker
//! that performs its calls. `exe` names the program; `cmdline`, `environ`,
//! `auxv`, `maps`, `status`, `stat`, `statm` and `comm` are generated from
//! the guest's own state and handed over as a sealed memfd opened by the
//! broker; `mem` is warpd's (reads and writes reach guest memory); `fd` and
//! `fdinfo` are the broker's with its reserved descriptors left out. What
//! the process shares with the broker (its namespaces, mounts, cgroup, cwd,
//! root, limits) passes through; whatever else would describe the broker
//! (smaps, pagemap, stack, task lists...) does not exist for the program
//! (ENOENT). The same holds for `/proc/thread-self`, `/proc/<pid>` and
//! `/proc/<tid>` of the program's own threads, and their `task/<tid>`.

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
    Statm,
    Comm,
}

/// What a path in the program's own `/proc` directory is to warpd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcPath {
    /// Generated from the guest's state.
    File(SelfFile),
    /// `mem`: warpd's, over guest memory.
    Mem,
    /// `fd` or `fdinfo` (`dir`), or an entry of one: descriptor `n`.
    Fd { dir: bool, n: Option<u32> },
    /// What the broker and the program share: passed through.
    Shared,
    /// It would describe the broker: no such file for the program.
    Hidden,
}

/// Classifies `path` if it is in the program's own `/proc` directory:
/// `/proc/self`, `/proc/thread-self`, `/proc/<pid>`, `/proc/<tid>` of one
/// of its threads, and `task/<tid>` below them. The directory itself and
/// `task` (which would list the broker's threads) are hidden.
pub fn classify(path: &[u8], pid: u32, tids: &[u32]) -> Option<ProcPath> {
    let path = std::str::from_utf8(path).ok()?;
    let rest = path.strip_prefix("/proc/")?;
    let ours = |who: &str| {
        who == "self" || who == "thread-self" || who.parse::<u32>().is_ok_and(|n| n == pid || tids.contains(&n))
    };
    let (who, rest) = match rest.split_once('/') {
        Some((w, r)) => (w, r),
        None => (rest, ""),
    };
    if !ours(who) {
        return None;
    }
    let rest = rest.trim_matches('/');
    let rest = match rest.strip_prefix("task") {
        Some("") => return Some(ProcPath::Hidden),
        Some(t) => {
            let t = t.strip_prefix('/')?;
            let (tid, r) = t.split_once('/').unwrap_or((t, ""));
            if !tid.parse::<u32>().is_ok_and(|n| n == pid || tids.contains(&n)) {
                return Some(ProcPath::Hidden);
            }
            r
        }
        None => rest,
    };
    let (first, sub) = rest.split_once('/').unwrap_or((rest, ""));
    Some(match first {
        "" => ProcPath::Hidden,
        "exe" if sub.is_empty() => ProcPath::File(SelfFile::Exe),
        "cmdline" if sub.is_empty() => ProcPath::File(SelfFile::Cmdline),
        "environ" if sub.is_empty() => ProcPath::File(SelfFile::Environ),
        "auxv" if sub.is_empty() => ProcPath::File(SelfFile::Auxv),
        "maps" if sub.is_empty() => ProcPath::File(SelfFile::Maps),
        "status" if sub.is_empty() => ProcPath::File(SelfFile::Status),
        "stat" if sub.is_empty() => ProcPath::File(SelfFile::Stat),
        "statm" if sub.is_empty() => ProcPath::File(SelfFile::Statm),
        "comm" if sub.is_empty() => ProcPath::File(SelfFile::Comm),
        "mem" if sub.is_empty() => ProcPath::Mem,
        "fd" | "fdinfo" => ProcPath::Fd {
            dir: first == "fd",
            n: match sub {
                "" => None,
                s => Some(s.parse::<u32>().unwrap_or(u32::MAX)),
            },
        },
        f if warp_syscalls::PROC_SHARED.contains(&f) => ProcPath::Shared,
        _ => ProcPath::Hidden,
    })
}

/// Recognises the program's own generated `/proc` files (see `classify`).
pub fn self_file(path: &[u8], pid: u32) -> Option<SelfFile> {
    match classify(path, pid, &[])? {
        ProcPath::File(f) => Some(f),
        _ => None,
    }
}

fn nul_joined(v: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    for s in v {
        out.extend_from_slice(s.as_bytes());
        out.push(0);
    }
    out
}

/// The name Linux gives a process running `exe` (its comm).
pub fn comm_of(exe: &str) -> String {
    comm(exe)
}

fn comm(exe: &str) -> String {
    let base = exe.rsplit('/').next().unwrap_or(exe);
    base.chars().take(15).collect()
}

/// The auxiliary vector as the kernel lays it out (`/proc/self/auxv`,
/// PR_GET_AUXV, a debugger's qXfer:auxv): (type, value) words.
pub fn auxv_bytes(auxv: &[(u64, u64)]) -> Vec<u8> {
    auxv.iter().flat_map(|&(k, v)| k.to_le_bytes().into_iter().chain(v.to_le_bytes())).collect()
}

/// The contents of a generated file (not `Exe`, which is a link), for a
/// process of `threads` threads.
pub fn contents(
    file: SelfFile,
    info: &ProcInfo,
    mm: &Mm,
    pid: u32,
    ppid: u32,
    ids: [u32; 4],
    threads: usize,
) -> Vec<u8> {
    match file {
        SelfFile::Exe => info.exe.clone().into_bytes(),
        SelfFile::Cmdline => nul_joined(&info.argv),
        SelfFile::Environ => nul_joined(&info.env),
        SelfFile::Auxv => auxv_bytes(&info.auxv),
        SelfFile::Maps => maps(mm).into_bytes(),
        SelfFile::Status => {
            let [uid, euid, gid, egid] = ids;
            let vm: u64 = mm.vmas().map(|(s, v)| v.end - s).sum::<u64>() / 1024;
            format!(
                "Name:\t{}\nUmask:\t0022\nState:\tR (running)\nTgid:\t{pid}\nNgid:\t0\nPid:\t{pid}\nPPid:\t{ppid}\nTracerPid:\t0\n\
                 Uid:\t{uid}\t{euid}\t{euid}\t{euid}\nGid:\t{gid}\t{egid}\t{egid}\t{egid}\nFDSize:\t64\nVmSize:\t{vm} kB\nThreads:\t{threads}\n",
                comm(&info.exe)
            )
            .into_bytes()
        }
        SelfFile::Stat => {
            let mut f = vec![format!("{pid}"), format!("({})", comm(&info.exe)), "R".into(), format!("{ppid}")];
            // The remaining 48 fields: zero but for the thread count (20th).
            for i in 5..=52 {
                f.push(if i == 20 { threads.to_string() } else { "0".into() });
            }
            format!("{}\n", f.join(" ")).into_bytes()
        }
        SelfFile::Statm => {
            let pages: u64 = mm.vmas().map(|(s, v)| v.end - s).sum::<u64>() / 4096;
            format!("{pages} 0 0 0 0 0 0\n").into_bytes()
        }
        SelfFile::Comm => format!("{}\n", comm(&info.exe)).into_bytes(),
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
            VmaKind::Vdso => "[vdso]".into(),
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
    fn what_would_describe_the_broker_is_hidden() {
        let c = |p: &str| classify(p.as_bytes(), 42, &[43]);
        assert_eq!(c("/proc/self/mem"), Some(ProcPath::Mem));
        assert_eq!(c("/proc/43/comm"), Some(ProcPath::File(SelfFile::Comm)), "a thread's own directory");
        assert_eq!(c("/proc/self/task/43/maps"), Some(ProcPath::File(SelfFile::Maps)));
        assert_eq!(c("/proc/self/task/99/maps"), Some(ProcPath::Hidden), "no such thread");
        assert_eq!(c("/proc/self/task"), Some(ProcPath::Hidden));
        for hidden in ["smaps", "numa_maps", "pagemap", "stack", "syscall", "map_files/400000-401000", "io", "wchan"] {
            assert_eq!(c(&format!("/proc/self/{hidden}")), Some(ProcPath::Hidden), "{hidden}");
        }
        assert_eq!(c("/proc/self/fd"), Some(ProcPath::Fd { dir: true, n: None }));
        assert_eq!(c("/proc/42/fdinfo/7"), Some(ProcPath::Fd { dir: false, n: Some(7) }));
        assert_eq!(c("/proc/self/fd/x"), Some(ProcPath::Fd { dir: true, n: Some(u32::MAX) }));
        assert_eq!(c("/proc/self/mountinfo"), Some(ProcPath::Shared));
        assert_eq!(c("/proc/self/ns/net"), Some(ProcPath::Shared));
        assert_eq!(c("/proc/44/maps"), None, "another process");
        assert_eq!(c("/proc/meminfo"), None);
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
        assert_eq!(contents(SelfFile::Cmdline, &info, &mm, 1, 0, [0; 4], 1), b"x\0-v\0");
        assert_eq!(contents(SelfFile::Comm, &info, &mm, 1, 0, [0; 4], 1), b"x\n");
        let auxv = contents(SelfFile::Auxv, &info, &mm, 1, 0, [0; 4], 1);
        assert_eq!(auxv.len(), 32);
        assert_eq!(&auxv[..8], &6u64.to_le_bytes());
        let stat = String::from_utf8(contents(SelfFile::Stat, &info, &mm, 7, 3, [0; 4], 1)).unwrap();
        assert!(stat.starts_with("7 (x) R 3 "));
        assert_eq!(stat.split_whitespace().count(), 52);
    }
}
