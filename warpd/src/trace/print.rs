//! The event printer: a session's events as strace-like lines.
//!
//! A syscall's entry, the broker calls made for it and its exit fold into
//! one line; signals, faults, the program's end and broker calls outside a
//! syscall (the executable read at start) get lines of their own:
//!
//! ```text
//! [4242] -- read the executable "/bin/true" (14328 bytes)
//! [4242] openat(AT_FDCWD, "/etc/hosts", O_RDONLY|O_CLOEXEC) = 3
//! [4242] read(3, "127.0.0.1\tlocalhost\n::1\tlocal"..., 4096) = 220
//! [4242] open("/nope", O_RDONLY) = -1 ENOENT (No such file or directory)
//! [4242] +++ exited with 0 +++
//! ```
//!
//! Names and argument kinds come from the one syscall table
//! (`kernel::table`); paths are the bytes warpd copied into the broker
//! request (`BrokerCall::inline_args`), so an emulated call or one that
//! failed before reaching the broker shows its pointer instead. What a
//! read, pread64, readlink(at) or getcwd put in its buffer is shown as a
//! string, its first bytes (`-s N`, 32 by default as strace's) from the
//! trace; what a write sent is not in the trace (replay computes it again),
//! so its buffer is a pointer.

use warp_proto::trace::data::Where;
use warp_proto::trace::{
    event, BrokerCall, Event, Fault, Interrupt, MemoryWrite, ProgramEnd, Signals, SyscallEntry, SyscallExit,
};

use crate::kernel::table::{self, Arg};
use crate::kernel::{names, signals};

/// Longest path or name printed in full; longer ones end in `...`.
const MAX_STRING: usize = 256;
/// Bytes of a buffer shown unless told otherwise (strace's `-s`).
pub const DEFAULT_STRINGS: usize = 32;

/// The first `n` bytes of blob `hash`, for a printer that shows buffers
/// held in blobs; None when they cannot be had.
pub type BlobPrefix = Box<dyn Fn(&[u8], usize) -> Option<Vec<u8>> + Send>;

const O_CREAT: u64 = 0o100;
const O_TMPFILE: u64 = 0o20000000;

/// What a printed line stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Syscall,
    /// A broker call outside any syscall (the executable image).
    Load,
    Signals,
    Fault,
    End,
    /// The program stopped while it computed (a preemption, signals).
    Interrupt,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Syscall => "syscall",
            Kind::Load => "load",
            Kind::Signals => "signals",
            Kind::Fault => "fault",
            Kind::End => "end",
            Kind::Interrupt => "interrupt",
        }
    }
}

/// One printed line and what it was made of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// Sequence numbers of the first and last event folded into the line.
    pub first: u64,
    pub last: u64,
    pub thread: u32,
    pub kind: Kind,
    /// For syscalls: the number, its name, the raw arguments and the result
    /// (`None` when the trace ends before the exit).
    pub nr: Option<u64>,
    pub name: String,
    pub args: Vec<u64>,
    pub ret: Option<i64>,
    /// The whole line, `[thread] ` prefix included, without a newline.
    pub text: String,
    /// For syscalls: when it was made (microseconds since the recording
    /// began) and how long it took, where the trace has them.
    pub time_us: Option<u64>,
    pub duration_us: Option<u64>,
    /// A syscall the exitless ring served while recording.
    pub exitless: bool,
    /// For syscalls: each argument as the text shows it (None for a call
    /// resumed after the trace began), and the result (None before it
    /// returned).
    pub decoded_args: Option<Vec<String>>,
    pub decoded_ret: Option<String>,
    /// For a fault or the end: the signal (0: none); a fault's vector, rip
    /// and (page faults) address; the end's exit status.
    pub signal: i32,
    pub vector: Option<u32>,
    pub rip: Option<u64>,
    pub address: Option<u64>,
    pub exit_code: Option<i32>,
}

/// Folds a stream of events into lines. Feed events in sequence order with
/// [`push`](Printer::push); call [`finish`](Printer::finish) at the end of
/// the trace for a syscall whose exit never came.
pub struct Printer {
    thread: u32,
    pending: Option<Pending>,
    /// Bytes of a read buffer shown, and where a blob's come from (without
    /// it, a buffer held in a blob is a pointer).
    strings: usize,
    blobs: Option<BlobPrefix>,
}

struct Pending {
    first: u64,
    last: u64,
    entry: Option<SyscallEntry>,
    calls: Vec<BrokerCall>,
}

impl Printer {
    /// `thread` is the id printed on every line (the session's identity pid).
    pub fn new(thread: u32) -> Printer {
        Printer { thread, pending: None, strings: DEFAULT_STRINGS, blobs: None }
    }

    /// Shows `strings` bytes of each read buffer, those held in blobs from
    /// `blobs`.
    pub fn with_strings(mut self, strings: usize, blobs: Option<BlobPrefix>) -> Printer {
        self.strings = strings;
        self.blobs = blobs;
        self
    }

    /// Takes the next event; returns the lines it completes (none while a
    /// syscall is open, two when an unfinished one is cut short).
    pub fn push(&mut self, seq: u64, ev: &Event) -> Vec<Line> {
        let mut out = Vec::new();
        match &ev.kind {
            Some(event::Kind::Entry(entry)) => {
                out.extend(self.finish());
                self.pending = Some(Pending { first: seq, last: seq, entry: Some(entry.clone()), calls: Vec::new() });
            }
            Some(event::Kind::Call(call)) => match &mut self.pending {
                Some(p) => {
                    p.calls.push(call.clone());
                    p.last = seq;
                }
                None => out.push(self.line(seq, seq, Kind::Load, load(call))),
            },
            Some(event::Kind::Exit(exit)) => {
                let (first, entry, calls) = match self.pending.take() {
                    Some(p) => (p.first, p.entry, p.calls),
                    None => (seq, None, Vec::new()),
                };
                let calls: Vec<&BrokerCall> = calls.iter().collect();
                out.push(self.syscall_line(first, seq, entry.as_ref(), &calls, Some(exit)));
            }
            Some(event::Kind::Signals(s)) => {
                out.extend(self.finish());
                out.push(self.line(seq, seq, Kind::Signals, signals_text(s)));
            }
            Some(event::Kind::Fault(f)) => {
                out.extend(self.finish());
                let line = self.line(seq, seq, Kind::Fault, fault_text(f));
                out.push(Line {
                    signal: f.signal,
                    vector: Some(f.vector),
                    rip: Some(f.rip),
                    address: (f.vector == 14).then_some(f.address),
                    ..line
                });
            }
            Some(event::Kind::End(e)) => {
                out.extend(self.finish());
                let line = self.line(seq, seq, Kind::End, end_text(e));
                out.push(Line { signal: e.signal, exit_code: (e.signal == 0).then_some(e.exit_code), ..line });
            }
            Some(event::Kind::Schedule(s)) => {
                // The running thread's call, if it waits, ends later (as
                // strace shows it: unfinished, then resumed); the lines
                // after this are the next thread's.
                if let Some(mut line) = self.finish() {
                    line.text = format!("{} <unfinished ...>", line.text.trim_end_matches(" = ?"));
                    out.push(line);
                }
                self.thread = s.thread;
            }
            Some(event::Kind::Interrupt(i)) => {
                out.extend(self.finish());
                out.push(self.line(seq, seq, Kind::Interrupt, interrupt_text(i)));
            }
            // A call the exitless path served: one line, as any call's.
            Some(event::Kind::Ring(r)) => {
                out.extend(self.finish());
                let entry =
                    SyscallEntry { nr: r.nr, args: r.args.clone(), rip: 0, thread: r.thread, time_us: r.time_us };
                // A read's bytes, as a broker call's write into memory.
                let writes = r.output.iter().map(|d| MemoryWrite { offset: 0, data: Some(d.clone()) }).collect();
                let call =
                    BrokerCall { nr: r.nr as u32, ret: r.ret, args: r.args.clone(), writes, ..Default::default() };
                // No exit time: the ring's calls have no duration.
                let exit = SyscallExit { nr: r.nr, ret: r.ret, time_us: 0 };
                let line = self.syscall_line(seq, seq, Some(&entry), &[&call], Some(&exit));
                out.push(Line { exitless: true, ..line });
            }
            // The switch that follows shows it; a completion shows as the
            // waiting call's `resumed` line when its thread runs again.
            Some(event::Kind::SliceEnd(_)) | Some(event::Kind::Completion(_)) => {}
            None => {
                out.extend(self.finish());
                out.push(self.line(seq, seq, Kind::End, "--- an event of a kind this warpd does not know ---".into()));
            }
        }
        out
    }

    /// The open syscall, if any, printed without its result (`= ?`).
    pub fn finish(&mut self) -> Option<Line> {
        let p = self.pending.take()?;
        let calls: Vec<&BrokerCall> = p.calls.iter().collect();
        Some(self.syscall_line(p.first, p.last, p.entry.as_ref(), &calls, None))
    }

    fn line(&self, first: u64, last: u64, kind: Kind, body: String) -> Line {
        Line {
            first,
            last,
            thread: self.thread,
            kind,
            nr: None,
            name: kind.as_str().into(),
            args: Vec::new(),
            ret: None,
            text: format!("[{}] {body}", self.thread),
            time_us: None,
            duration_us: None,
            exitless: false,
            decoded_args: None,
            decoded_ret: None,
            signal: 0,
            vector: None,
            rip: None,
            address: None,
            exit_code: None,
        }
    }

    fn syscall_line(
        &self,
        first: u64,
        last: u64,
        entry: Option<&SyscallEntry>,
        calls: &[&BrokerCall],
        exit: Option<&SyscallExit>,
    ) -> Line {
        let nr = entry.map(|e| e.nr).or(exit.map(|e| e.nr)).unwrap_or(0);
        let buffer = self.read_buffer(table::number(nr), calls, exit);
        let time_us = entry.map(|e| e.time_us).filter(|&t| t > 0);
        let ended = exit.map(|e| e.time_us).filter(|&t| t > 0);
        let duration_us = time_us.zip(ended).map(|(a, b)| b.saturating_sub(a));
        let (decoded_args, decoded_ret) = syscall_parts(entry, calls, exit, buffer);
        let body = showing(nr, decoded_args.as_deref(), decoded_ret.as_deref());
        Line {
            time_us,
            duration_us,
            decoded_args,
            decoded_ret,
            nr: Some(nr),
            name: syscall_name(nr),
            args: entry.map(|e| e.args.clone()).unwrap_or_default(),
            ret: exit.map(|e| e.ret),
            ..self.line(first, last, Kind::Syscall, body)
        }
    }

    /// For a call that read into a buffer: which argument it is and its
    /// first bytes as a string (what the broker wrote there, in order).
    fn read_buffer(&self, nr: u64, calls: &[&BrokerCall], exit: Option<&SyscallExit>) -> Option<(usize, String)> {
        let arg = match nr {
            0 | 17 | 89 => 1, // read, pread64, readlink
            267 => 2,         // readlinkat
            79 => 0,          // getcwd
            _ => return None,
        };
        let ret = exit?.ret;
        if ret < 0 {
            return None;
        }
        let call = calls.last()?;
        let mut bytes = Vec::new();
        for w in &call.writes {
            if bytes.len() >= self.strings {
                break;
            }
            let want = self.strings - bytes.len();
            match w.data.as_ref()?.r#where.as_ref() {
                Some(Where::Inline(b)) => bytes.extend_from_slice(&b[..b.len().min(want)]),
                Some(Where::Blob(hash)) => bytes.extend((self.blobs.as_ref()?)(hash, want)?),
                None => {}
            }
        }
        // getcwd's result counts its NUL; readlink's has none.
        let total = if nr == 79 { (ret as usize).saturating_sub(1) } else { ret as usize };
        bytes.truncate(total.min(self.strings));
        Some((arg, buffer_string(&bytes, total > bytes.len())))
    }
}

/// The name of syscall `nr`, or `syscall_NR` for one Linux does not have.
/// `nr` is the whole number register; the low 32 bits select the call.
pub fn syscall_name(register: u64) -> String {
    let nr = table::number(register);
    table::lookup(nr).map(|d| d.name).or_else(|| names::name(nr)).map(str::to_owned).unwrap_or_else(|| {
        if register == nr {
            format!("syscall_{nr}")
        } else {
            format!("syscall_{register:#x}")
        }
    })
}

/// One syscall as `name(args) = result`. `entry` is `None` when the trace
/// starts after it (`<... name resumed>`); `exit` is `None` when it ends
/// before the result (`= ?`).
pub fn syscall(entry: Option<&SyscallEntry>, calls: &[&BrokerCall], exit: Option<&SyscallExit>) -> String {
    syscall_showing(entry, calls, exit, None)
}

/// As [`syscall`], with argument `buffer.0` shown as `buffer.1`.
fn syscall_showing(
    entry: Option<&SyscallEntry>,
    calls: &[&BrokerCall],
    exit: Option<&SyscallExit>,
    buffer: Option<(usize, String)>,
) -> String {
    let register = entry.map(|e| e.nr).or(exit.map(|e| e.nr)).unwrap_or(0);
    let (args, ret) = syscall_parts(entry, calls, exit, buffer);
    showing(register, args.as_deref(), ret.as_deref())
}

/// `name(args) = result` from the parts [`syscall_parts`] gives.
fn showing(register: u64, args: Option<&[String]>, ret: Option<&str>) -> String {
    let name = syscall_name(register);
    let head = match args {
        Some(args) => format!("{name}({})", args.join(", ")),
        None => format!("<... {name} resumed>"),
    };
    format!("{head} = {}", ret.unwrap_or("?"))
}

/// A syscall's arguments as printed (None without its entry) and its
/// result (None without its exit).
fn syscall_parts(
    entry: Option<&SyscallEntry>,
    calls: &[&BrokerCall],
    exit: Option<&SyscallExit>,
    buffer: Option<(usize, String)>,
) -> (Option<Vec<String>>, Option<String>) {
    let register = entry.map(|e| e.nr).or(exit.map(|e| e.nr)).unwrap_or(0);
    let nr = table::number(register);
    let args = entry.map(|e| {
        let mut args = arguments(e, calls);
        if let Some((i, shown)) = buffer.filter(|(i, _)| *i < args.len()) {
            args[i] = shown;
        }
        args
    });
    (args, exit.map(|x| result(nr, x.ret)))
}

/// The arguments of a syscall, each as the table says to show it.
fn arguments(entry: &SyscallEntry, calls: &[&BrokerCall]) -> Vec<String> {
    let nr = table::number(entry.nr);
    let arg = |i: usize| entry.args.get(i).copied().unwrap_or(0);
    // Calls whose arguments need more than their kind: flags, addresses.
    match nr {
        // mmap(addr, length, prot, flags, fd, offset)
        9 => {
            return vec![
                pointer(arg(0)),
                arg(1).to_string(),
                prot(arg(2)),
                mmap_flags(arg(3)),
                (arg(4) as i32).to_string(),
                format!("{:#x}", arg(5)),
            ]
        }
        // mprotect(addr, len, prot)
        10 => return vec![pointer(arg(0)), arg(1).to_string(), prot(arg(2))],
        // munmap(addr, len), madvise(addr, len, advice)
        11 | 28 => {
            let mut v = vec![pointer(arg(0)), arg(1).to_string()];
            if nr == 28 {
                v.push(super::symbolic::argument(nr, 2, arg(2)).unwrap_or_else(|| arg(2).to_string()));
            }
            return v;
        }
        // brk(addr)
        12 => return vec![pointer(arg(0))],
        _ => {}
    }
    let Some(desc) = table::lookup(nr) else {
        // Unknown to warpd: six raw values, as the ABI passes them.
        return (0..entry.args.len().min(6)).map(|i| format!("{:#x}", arg(i))).collect();
    };
    let open_flags_at = match nr {
        2 => Some(1),   // open(path, flags, mode)
        257 => Some(2), // openat(dirfd, path, flags, mode)
        _ => None,
    };
    // As strace: open's mode only matters (and is only shown) when the
    // flags create a file.
    let shown = match open_flags_at {
        Some(at) if arg(at) & (O_CREAT | O_TMPFILE) == 0 => at + 1,
        _ => desc.args.len(),
    };
    desc.args[..shown]
        .iter()
        .enumerate()
        .map(|(i, kind)| {
            let v = arg(i);
            if open_flags_at == Some(i) {
                return open_flags(v);
            }
            if let Some(named) = super::symbolic::argument(nr, i, v) {
                return named;
            }
            if (nr == 2 && i == 2) || (nr == 257 && i == 3) || (nr == 83 && i == 1) || (nr == 258 && i == 2) {
                return if v == 0 { "0".into() } else { format!("0{v:o}") }; // a mode
            }
            match kind {
                Arg::Int => (v as i64).to_string(),
                Arg::Fd => (v as i32).to_string(),
                Arg::DirFd => dirfd(v),
                Arg::Path => inline_arg(calls, i).map(|b| c_string(&b)).unwrap_or_else(|| pointer(v)),
                Arg::In(_)
                | Arg::Out(_)
                | Arg::InOut(_)
                | Arg::IovIn
                | Arg::IovOut
                | Arg::MsgIn
                | Arg::MsgOut
                | Arg::MmsgIn
                | Arg::MmsgOut => pointer(v),
            }
        })
        .collect()
}

/// The bytes warpd copied into the first broker request that carries
/// argument `i`.
fn inline_arg(calls: &[&BrokerCall], i: usize) -> Option<Vec<u8>> {
    calls.iter().flat_map(|c| c.inline_args.iter()).find(|a| a.arg as usize == i).map(|a| a.value.clone())
}

fn pointer(v: u64) -> String {
    if v == 0 {
        "NULL".into()
    } else {
        format!("{v:#x}")
    }
}

fn dirfd(v: u64) -> String {
    match v as i32 {
        -100 => "AT_FDCWD".into(),
        fd => fd.to_string(),
    }
}

/// Bytes as a C string literal: printable ASCII as is, the rest escaped; a
/// trailing NUL dropped.
pub fn c_string(bytes: &[u8]) -> String {
    let bytes = bytes.strip_suffix(&[0]).unwrap_or(bytes);
    let shown = &bytes[..bytes.len().min(MAX_STRING)];
    buffer_string(shown, bytes.len() > shown.len())
}

/// A buffer's bytes as a C string literal, escaped as [`c_string`]'s, with
/// `...` after it when `cut` (more bytes than are shown).
pub fn buffer_string(shown: &[u8], cut: bool) -> String {
    let mut s = String::with_capacity(shown.len() + 5);
    s.push('"');
    for &b in shown {
        match b {
            b'"' => s.push_str("\\\""),
            b'\\' => s.push_str("\\\\"),
            b'\n' => s.push_str("\\n"),
            b'\t' => s.push_str("\\t"),
            b'\r' => s.push_str("\\r"),
            0x20..=0x7e => s.push(char::from(b)),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    s.push('"');
    if cut {
        s.push_str("...");
    }
    s
}

/// Names for the set bits of `v`, `|`-joined; leftover bits in hex.
pub(crate) fn flag_names(mut v: u64, names: &[(u64, &str)], zero: &str) -> String {
    let mut parts: Vec<String> = Vec::new();
    for &(bit, name) in names {
        if bit != 0 && v & bit == bit {
            parts.push(name.into());
            v &= !bit;
        }
    }
    if v != 0 {
        parts.push(format!("{v:#x}"));
    }
    if parts.is_empty() {
        zero.into()
    } else {
        parts.join("|")
    }
}

/// open(2) flags: the access mode, then the other flags.
pub fn open_flags(v: u64) -> String {
    const FLAGS: &[(u64, &str)] = &[
        (0o100, "O_CREAT"),
        (0o200, "O_EXCL"),
        (0o400, "O_NOCTTY"),
        (0o1000, "O_TRUNC"),
        (0o2000, "O_APPEND"),
        (0o4000, "O_NONBLOCK"),
        (0o4010000, "O_SYNC"),
        (0o10000, "O_DSYNC"),
        (0o40000, "O_DIRECT"),
        (0o20000000, "O_TMPFILE"),
        (0o200000, "O_DIRECTORY"),
        (0o400000, "O_NOFOLLOW"),
        (0o1000000, "O_NOATIME"),
        (0o2000000, "O_CLOEXEC"),
        (0o10000000, "O_PATH"),
        (0o100000, "O_LARGEFILE"),
    ];
    let access = match v & 3 {
        0 => "O_RDONLY",
        1 => "O_WRONLY",
        2 => "O_RDWR",
        _ => "O_ACCMODE",
    };
    let rest = flag_names(v & !3, FLAGS, "");
    if rest.is_empty() {
        access.into()
    } else {
        format!("{access}|{rest}")
    }
}

/// mmap/mprotect protection bits.
pub fn prot(v: u64) -> String {
    flag_names(v, &[(1, "PROT_READ"), (2, "PROT_WRITE"), (4, "PROT_EXEC"), (0x100_0000, "PROT_GROWSDOWN")], "PROT_NONE")
}

/// mmap flags.
pub fn mmap_flags(v: u64) -> String {
    const FLAGS: &[(u64, &str)] = &[
        (0x03, "MAP_SHARED_VALIDATE"),
        (0x01, "MAP_SHARED"),
        (0x02, "MAP_PRIVATE"),
        (0x10, "MAP_FIXED"),
        (0x20, "MAP_ANONYMOUS"),
        (0x100, "MAP_GROWSDOWN"),
        (0x800, "MAP_DENYWRITE"),
        (0x1000, "MAP_EXECUTABLE"),
        (0x2000, "MAP_LOCKED"),
        (0x4000, "MAP_NORESERVE"),
        (0x8000, "MAP_POPULATE"),
        (0x10000, "MAP_NONBLOCK"),
        (0x20000, "MAP_STACK"),
        (0x40000, "MAP_HUGETLB"),
        (0x100000, "MAP_FIXED_NOREPLACE"),
    ];
    flag_names(v, FLAGS, "0")
}

/// A syscall's result: `-1 ENAME (message)` for an error, an address in
/// hex for the calls that return one, a number otherwise.
pub fn result(nr: u64, ret: i64) -> String {
    if (-4095..0).contains(&ret) {
        let e = (-ret) as i32;
        let text = std::io::Error::from_raw_os_error(e).to_string();
        let text = text.split(" (os error").next().unwrap_or(&text).to_owned();
        return format!("-1 {} ({text})", errno_name(e));
    }
    match nr {
        9 | 12 | 25 => format!("{:#x}", ret as u64), // mmap, brk, mremap
        _ => ret.to_string(),
    }
}

/// The symbolic name of a Linux errno (`E123` for one not listed).
pub fn errno_name(e: i32) -> String {
    let name = match e {
        1 => "EPERM",
        2 => "ENOENT",
        3 => "ESRCH",
        4 => "EINTR",
        5 => "EIO",
        6 => "ENXIO",
        7 => "E2BIG",
        8 => "ENOEXEC",
        9 => "EBADF",
        10 => "ECHILD",
        11 => "EAGAIN",
        12 => "ENOMEM",
        13 => "EACCES",
        14 => "EFAULT",
        16 => "EBUSY",
        17 => "EEXIST",
        18 => "EXDEV",
        19 => "ENODEV",
        20 => "ENOTDIR",
        21 => "EISDIR",
        22 => "EINVAL",
        23 => "ENFILE",
        24 => "EMFILE",
        25 => "ENOTTY",
        26 => "ETXTBSY",
        27 => "EFBIG",
        28 => "ENOSPC",
        29 => "ESPIPE",
        30 => "EROFS",
        31 => "EMLINK",
        32 => "EPIPE",
        33 => "EDOM",
        34 => "ERANGE",
        35 => "EDEADLK",
        36 => "ENAMETOOLONG",
        38 => "ENOSYS",
        39 => "ENOTEMPTY",
        40 => "ELOOP",
        61 => "ENODATA",
        75 => "EOVERFLOW",
        88 => "ENOTSOCK",
        95 => "EOPNOTSUPP",
        97 => "EAFNOSUPPORT",
        98 => "EADDRINUSE",
        104 => "ECONNRESET",
        110 => "ETIMEDOUT",
        111 => "ECONNREFUSED",
        115 => "EINPROGRESS",
        512 => "ERESTARTSYS",
        _ => return format!("E{e}"),
    };
    name.into()
}

fn load(call: &BrokerCall) -> String {
    let len = call.file.as_ref().map(|d| d.len).unwrap_or(0);
    let path = call.inline_args.first().map(|a| format!(" {}", c_string(&a.value))).unwrap_or_default();
    if call.file.is_some() {
        format!("-- read the executable{path} ({len} bytes)")
    } else {
        format!(
            "-- broker call {} outside a syscall = {}",
            syscall_name(u64::from(call.nr)),
            result(u64::from(call.nr), call.ret)
        )
    }
}

fn signals_text(s: &Signals) -> String {
    let names: Vec<String> = s.signos.iter().map(|&n| signals::name(n)).collect();
    let when =
        if s.asynchronous { format!("while computing, rip {:#x}", s.rip) } else { "at a syscall boundary".into() };
    format!("--- {} ({when}) ---", names.join(", "))
}

fn interrupt_text(i: &Interrupt) -> String {
    let mut why = Vec::new();
    if i.preempted {
        why.push("time slice over".to_string());
    }
    why.extend(i.signals.iter().map(|&n| signals::name(n)));
    format!("--- stopped at rip {:#x} ({}) ---", i.regs.first().copied().unwrap_or(0), why.join(", "))
}

fn fault_text(f: &Fault) -> String {
    let what = match f.vector {
        0 => "divide error",
        1 => "debug",
        3 => "breakpoint",
        6 => "invalid opcode",
        13 => "general protection",
        14 => "page fault",
        17 => "alignment check",
        _ => "exception",
    };
    let address = if f.vector == 14 { format!(", address {:#x}", f.address) } else { String::new() };
    format!(
        "--- {} ({what}, vector {}) at rip {:#x}{address}, error code {:#x} ---",
        signals::name(f.signal),
        f.vector,
        f.rip,
        f.error_code
    )
}

fn end_text(e: &ProgramEnd) -> String {
    if e.signal != 0 {
        format!("+++ killed by {} +++", signals::name(e.signal))
    } else {
        format!("+++ exited with {} +++", e.exit_code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warp_proto::trace::{Data, InlineArg};

    fn entry(nr: u64, args: &[u64]) -> Event {
        Event {
            kind: Some(event::Kind::Entry(SyscallEntry {
                nr,
                args: args.to_vec(),
                rip: 0x401000,
                thread: 0,
                time_us: 0,
            })),
        }
    }

    fn exit(nr: u64, ret: i64) -> Event {
        Event { kind: Some(event::Kind::Exit(SyscallExit { nr, ret, time_us: 0 })) }
    }

    fn call(nr: u32, ret: i64, inline: &[(u32, &[u8])]) -> Event {
        Event {
            kind: Some(event::Kind::Call(BrokerCall {
                nr,
                ret,
                inline_args: inline.iter().map(|(arg, v)| InlineArg { arg: *arg, value: v.to_vec() }).collect(),
                ..Default::default()
            })),
        }
    }

    fn print(events: &[Event]) -> Vec<String> {
        let mut p = Printer::new(77);
        let mut lines: Vec<String> = Vec::new();
        for (i, e) in events.iter().enumerate() {
            lines.extend(p.push(i as u64, e).into_iter().map(|l| l.text));
        }
        lines.extend(p.finish().map(|l| l.text));
        lines
    }

    #[test]
    fn openat_folds_into_one_line_with_its_path() {
        let lines = print(&[
            entry(257, &[(-100i64) as u64, 0x7000, 0o2000000, 0]),
            call(257, 3, &[(1, b"/etc/hosts\0")]),
            exit(257, 3),
        ]);
        assert_eq!(lines, ["[77] openat(AT_FDCWD, \"/etc/hosts\", O_RDONLY|O_CLOEXEC) = 3"]);
    }

    #[test]
    fn errors_are_named() {
        let lines = print(&[entry(2, &[0x5000, 0o101, 0o644]), call(2, -2, &[(0, b"/no/such")]), exit(2, -2)]);
        assert_eq!(lines, ["[77] open(\"/no/such\", O_WRONLY|O_CREAT, 0644) = -1 ENOENT (No such file or directory)"]);
    }

    #[test]
    fn buffers_are_pointers_and_fds_numbers() {
        let lines = print(&[entry(1, &[1, 0x7ffd_0000, 6]), call(1, 6, &[]), exit(1, 6)]);
        assert_eq!(lines, ["[77] write(1, 0x7ffd0000, 6) = 6"]);
        let lines = print(&[entry(0, &[3, 0, 10]), exit(0, -9)]);
        assert_eq!(lines, ["[77] read(3, NULL, 10) = -1 EBADF (Bad file descriptor)"]);
    }

    /// A broker call that wrote `pieces` (inline bytes, or a blob's hash)
    /// into memory.
    fn read_call(nr: u32, ret: i64, pieces: &[Where]) -> Event {
        let writes = pieces
            .iter()
            .map(|w| MemoryWrite { offset: 0x1000, data: Some(Data { r#where: Some(w.clone()), len: 0 }) })
            .collect();
        Event { kind: Some(event::Kind::Call(BrokerCall { nr, ret, writes, ..Default::default() })) }
    }

    #[test]
    fn a_call_has_its_time_and_duration_where_the_trace_has_them() {
        let timed = |nr: u64, at: u64| Event {
            kind: Some(event::Kind::Entry(SyscallEntry { nr, args: vec![0], rip: 0, thread: 0, time_us: at })),
        };
        let done = |nr: u64, at: u64| Event { kind: Some(event::Kind::Exit(SyscallExit { nr, ret: 0, time_us: at })) };
        let ring = Event {
            kind: Some(event::Kind::Ring(warp_proto::trace::RingCall {
                nr: 8,
                args: vec![0, 0, 0],
                time_us: 900,
                ..Default::default()
            })),
        };
        let mut p = Printer::new(1);
        let mut lines = Vec::new();
        for (i, e) in [timed(39, 100), done(39, 350), entry(39, &[]), exit(39, 0), ring].iter().enumerate() {
            lines.extend(p.push(i as u64, e));
        }
        let times: Vec<(Option<u64>, Option<u64>)> = lines.iter().map(|l| (l.time_us, l.duration_us)).collect();
        assert_eq!(times, [(Some(100), Some(250)), (None, None), (Some(900), None)], "an older trace has none");
    }

    fn lines_of(p: &mut Printer, events: &[Event]) -> Vec<String> {
        let mut lines: Vec<String> = Vec::new();
        for (i, e) in events.iter().enumerate() {
            lines.extend(p.push(i as u64, e).into_iter().map(|l| l.text));
        }
        lines
    }

    #[test]
    fn what_a_read_read_is_shown_as_a_string_cut_at_the_limit() {
        let hello = Where::Inline(b"hello\tworld\n\0\x7f".to_vec());
        let lines = print(&[entry(0, &[3, 0x7ffd_0000, 4096]), read_call(0, 14, &[hello]), exit(0, 14)]);
        assert_eq!(lines, [r#"[77] read(3, "hello\tworld\n\x00\x7f", 4096) = 14"#]);
        // Cut: the first N bytes and `...`; a buffer in two pieces reads on.
        let mut p = Printer::new(77).with_strings(7, None);
        let two = [Where::Inline(b"hell".to_vec()), Where::Inline(b"o, world".to_vec())];
        let events = [entry(17, &[3, 0x7ffd_0000, 100, 0]), read_call(17, 12, &two), exit(17, 12)];
        assert_eq!(lines_of(&mut p, &events), [r#"[77] pread64(3, "hello, "..., 100, 0) = 12"#]);
        // Nothing read, an error, and a buffer in a blob without a store.
        let lines = print(&[entry(0, &[3, 0x7ffd_0000, 10]), read_call(0, 0, &[]), exit(0, 0)]);
        assert_eq!(lines, [r#"[77] read(3, "", 10) = 0"#]);
        let lines = print(&[entry(0, &[3, 0x7ffd_0000, 10]), read_call(0, -4, &[]), exit(0, -4)]);
        assert_eq!(lines, ["[77] read(3, 0x7ffd0000, 10) = -1 EINTR (Interrupted system call)"]);
        let blob = Where::Blob(vec![7; 32]);
        let events = [entry(0, &[3, 0x7ffd_0000, 4096]), read_call(0, 300, &[blob]), exit(0, 300)];
        assert_eq!(print(&events), ["[77] read(3, 0x7ffd0000, 4096) = 300"]);
        // With the store's bytes, as many as asked for.
        let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = asked.clone();
        let blobs: BlobPrefix = Box::new(move |hash, n| {
            assert_eq!(hash, [7; 32]);
            seen.store(n, std::sync::atomic::Ordering::SeqCst);
            Some(vec![b'z'; n])
        });
        let mut p = Printer::new(77).with_strings(4, Some(blobs));
        assert_eq!(lines_of(&mut p, &events), [r#"[77] read(3, "zzzz"..., 4096) = 300"#]);
        assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 4);
        // getcwd's count includes its NUL; a write's bytes are not in the trace.
        let cwd = Where::Inline(b"/tmp\0".to_vec());
        let lines = print(&[entry(79, &[0x7ffd_0000, 4096]), read_call(79, 5, &[cwd]), exit(79, 5)]);
        assert_eq!(lines, [r#"[77] getcwd("/tmp", 4096) = 5"#]);
        let lines = print(&[entry(1, &[1, 0x7ffd_0000, 6]), read_call(1, 6, &[]), exit(1, 6)]);
        assert_eq!(lines, ["[77] write(1, 0x7ffd0000, 6) = 6"]);
    }

    #[test]
    fn a_path_without_broker_bytes_is_a_pointer() {
        let lines = print(&[entry(21, &[0x1234, 4]), exit(21, -13)]);
        assert_eq!(lines, ["[77] access(0x1234, R_OK) = -1 EACCES (Permission denied)"]);
    }

    #[test]
    fn mmap_flags_and_address_result() {
        let lines = print(&[entry(9, &[0, 8192, 3, 0x22, u64::MAX, 0]), exit(9, 0x7f00_0000_0000)]);
        assert_eq!(
            lines,
            ["[77] mmap(NULL, 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0x0) = 0x7f0000000000"]
        );
        assert_eq!(prot(0), "PROT_NONE");
        assert_eq!(prot(5), "PROT_READ|PROT_EXEC");
        assert_eq!(open_flags(0o2 | 0o4000 | 0o40000000), "O_RDWR|O_NONBLOCK|0x800000");
    }

    #[test]
    fn constants_are_named_in_lines() {
        let lines = print(&[entry(158, &[0x1002, 0x4c_8380]), exit(158, 0)]);
        assert!(lines[0].starts_with("[77] arch_prctl(ARCH_SET_FS, "), "{lines:?}");
        let lines = print(&[entry(21, &[0x40_0000, 4]), call(21, -2, &[(0, b"/etc/ld.so.preload\0")]), exit(21, -2)]);
        assert_eq!(lines, [r#"[77] access("/etc/ld.so.preload", R_OK) = -1 ENOENT (No such file or directory)"#]);
        let lines = print(&[entry(302, &[0, 3, 0, 0x7ffd_0000]), exit(302, 0)]);
        assert_eq!(lines, ["[77] prlimit64(0, RLIMIT_STACK, NULL, 0x7ffd0000) = 0"]);
        let lines = print(&[entry(262, &[3, 0x4000, 0x7ffd_0000, 0x1000]), exit(262, 0)]);
        assert!(lines[0].ends_with(", AT_EMPTY_PATH) = 0"), "{lines:?}");
        let lines = print(&[entry(28, &[0x7f00_0000_0000, 4096, 4]), exit(28, 0)]);
        assert_eq!(lines, ["[77] madvise(0x7f0000000000, 4096, MADV_DONTNEED) = 0"]);
    }

    #[test]
    fn other_events_have_lines_of_their_own() {
        let read_exe = Event {
            kind: Some(event::Kind::Call(BrokerCall {
                file: Some(Data { r#where: None, len: 4096 }),
                inline_args: vec![InlineArg { arg: 0, value: b"/bin/prog".to_vec() }],
                ..Default::default()
            })),
        };
        let lines = print(&[
            read_exe,
            Event {
                kind: Some(event::Kind::Signals(Signals {
                    signos: vec![2],
                    asynchronous: false,
                    rip: 0,
                    infos: Vec::new(),
                })),
            },
            Event {
                kind: Some(event::Kind::Fault(Fault {
                    vector: 14,
                    error_code: 6,
                    rip: 0x401234,
                    address: 0,
                    signal: 11,
                })),
            },
            Event { kind: Some(event::Kind::End(ProgramEnd { exit_code: 0, signal: 11 })) },
        ]);
        assert_eq!(
            lines,
            [
                "[77] -- read the executable \"/bin/prog\" (4096 bytes)",
                "[77] --- SIGINT (at a syscall boundary) ---",
                "[77] --- SIGSEGV (page fault, vector 14) at rip 0x401234, address 0x0, error code 0x6 ---",
                "[77] +++ killed by SIGSEGV +++",
            ]
        );
        let lines = print(&[Event { kind: Some(event::Kind::End(ProgramEnd { exit_code: 3, signal: 0 })) }]);
        assert_eq!(lines, ["[77] +++ exited with 3 +++"]);
    }

    #[test]
    fn unfinished_and_resumed_syscalls() {
        // The trace ends inside a read; a later read's entry cuts an
        // earlier one short.
        let lines = print(&[entry(0, &[0, 0x1000, 5]), entry(39, &[])]);
        assert_eq!(lines, ["[77] read(0, 0x1000, 5) = ?", "[77] getpid() = ?"]);
        // Events taken from the middle: an exit without its entry.
        let lines = print(&[exit(0, 5)]);
        assert_eq!(lines, ["[77] <... read resumed> = 5"]);
    }

    #[test]
    fn lines_know_what_they_fold() {
        let mut p = Printer::new(5);
        assert!(p.push(10, &entry(3, &[4])).is_empty());
        assert!(p.push(11, &call(3, 0, &[])).is_empty());
        let lines = p.push(12, &exit(3, 0));
        assert_eq!(lines.len(), 1);
        let l = &lines[0];
        assert_eq!(
            (l.first, l.last, l.kind, l.nr, l.name.as_str(), l.ret),
            (10, 12, Kind::Syscall, Some(3), "close", Some(0))
        );
        assert_eq!(l.args, [4]);
        assert_eq!(l.text, "[5] close(4) = 0");
    }

    #[test]
    fn unknown_syscalls_show_raw_arguments() {
        let lines = print(&[entry(1000, &[1, 2]), exit(1000, -38)]);
        assert_eq!(lines, ["[77] syscall_1000(0x1, 0x2) = -1 ENOSYS (Function not implemented)"]);
    }

    #[test]
    fn strings_are_escaped_and_cut() {
        assert_eq!(c_string(b"a\"b\\\n\x01\0"), r#""a\"b\\\n\x01""#);
        let long = vec![b'x'; MAX_STRING + 5];
        assert!(c_string(&long).ends_with("\"..."));
    }
}
