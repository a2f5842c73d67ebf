//! The commands that look at recorded sessions: `ls`, `show`, `events`,
//! `rm`.
//!
//! Exit status: 0; 2 for an unknown session (or another user's), a trace
//! that cannot be read, or a session that cannot be removed yet; 125 when
//! warpctl or warpd failed.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use warp_proto::trace::{Ending, SessionMeta, Status};
use warp_proto::warp::{
    EventLine, GetSessionRequest, ListSessionsRequest, RemoveSessionRequest, SessionInfo, StreamEventsRequest,
};

use crate::connect::{self, ConnectError};
use crate::json;

/// Why a viewing command failed.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error("{0}")]
    Connect(#[from] ConnectError),
    /// The daemon refused: unknown session, unreadable trace, still
    /// recording (exit status 2).
    #[error("{0}")]
    Refused(String),
    /// The daemon failed (exit status 125).
    #[error("warpd: {0}")]
    Rpc(String),
    /// warpctl itself failed (a socket, a process to start: exit status 125).
    #[error("{0}")]
    Local(String),
    /// Writing the output failed (other than a closed pipe).
    #[error("cannot write the output: {0}")]
    Output(io::Error),
}

impl ViewError {
    pub fn exit_code(&self) -> u8 {
        match self {
            ViewError::Refused(_) => 2,
            _ => 125,
        }
    }
}

/// A gRPC status as warpctl reports it: what the user asked for cannot be
/// had (2), or something failed (125).
pub fn rpc(status: tonic::Status) -> ViewError {
    use tonic::Code;
    match status.code() {
        Code::NotFound | Code::InvalidArgument | Code::FailedPrecondition | Code::DataLoss => {
            ViewError::Refused(status.message().to_owned())
        }
        _ => ViewError::Rpc(status.message().to_owned()),
    }
}

/// Writes to stdout; a reader that went away (`| head`) is not an error,
/// and is reported as `Ok(false)` so that a long listing can stop.
fn emit(out: &mut impl Write, text: &str) -> Result<bool, ViewError> {
    match out.write_all(text.as_bytes()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(ViewError::Output(e)),
    }
}

fn flush(out: &mut impl Write) -> Result<(), ViewError> {
    match out.flush() {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(ViewError::Output(e)),
        _ => Ok(()),
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

// ---------------------------------------------------------------------------
// ls

/// `warpctl ls [--json]`.
pub async fn ls(json: bool) -> Result<u8, ViewError> {
    let mut daemon = connect::connect_or_start(false).await?;
    let reply = daemon.client.list_sessions(ListSessionsRequest::default()).await.map_err(rpc)?.into_inner();
    print_listing(&reply.sessions, json, &ls_header(), ls_line)?;
    if !json {
        let mut out = io::stdout().lock();
        emit(&mut out, &ls_footer(&reply.sessions, reply.store_bytes))?;
        flush(&mut out)?;
    }
    Ok(0)
}

/// The line under `ls`'s table: how many recordings and processes, and
/// the store's size on disk (everyone's sessions and the blobs they share).
fn ls_footer(sessions: &[SessionInfo], store_bytes: u64) -> String {
    let processes: u64 = sessions.iter().map(|s| u64::from(s.processes.max(1))).sum();
    let count = |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    format!(
        "{} ({}), {} in the store\n",
        count(sessions.len() as u64, "recording", "recordings"),
        count(processes, "process", "processes"),
        bytes(store_bytes)
    )
}

/// Sessions one JSON object a line, or a table under `header`.
fn print_listing(
    sessions: &[SessionInfo],
    json: bool,
    header: &str,
    line: fn(&SessionInfo, u64) -> String,
) -> Result<u8, ViewError> {
    let now = now_ms();
    let mut text = String::new();
    if json {
        for s in sessions {
            text.push_str(&session_json(s, now));
            text.push('\n');
        }
    } else {
        text.push_str(header);
        for s in sessions {
            text.push_str(&line(s, now));
        }
    }
    let mut out = io::stdout().lock();
    emit(&mut out, &text)?;
    flush(&mut out)?;
    Ok(0)
}

/// `warpctl ps ID [--json]`: the processes of a recording.
pub async fn ps(id: String, json: bool) -> Result<u8, ViewError> {
    let mut daemon = connect::connect_or_start(false).await?;
    let reply = daemon.client.list_sessions(ListSessionsRequest { tree: id }).await.map_err(rpc)?.into_inner();
    let header = format!(
        "{:>8}  {:>8}  {:<12}  {:<10}  {:<11}  {:>7}  COMMAND\n",
        "PID", "PPID", "SESSION", "STATUS", "ENDED", "EVENTS"
    );
    print_listing(&reply.sessions, json, &header, ps_line)
}

/// A session's status and ending, padded for the tables and painted as
/// the command line chose.
fn status_columns(s: &SessionInfo) -> (String, String) {
    let paint = crate::colour::Paint::chosen_stdout();
    let signalled = s.status == "complete" && s.ending.as_ref().is_some_and(|e| e.signal != 0);
    (paint.status(&s.status, 10), paint.ended(&ended(s), signalled, 11))
}

fn ps_line(s: &SessionInfo, _now: u64) -> String {
    let (status, ended) = status_columns(s);
    format!(
        "{:>8}  {:>8}  {:<12}  {}  {}  {:>7}  {}\n",
        s.pid,
        s.ppid,
        s.id,
        status,
        ended,
        s.events,
        shell_words(&s.argv)
    )
}

fn ls_header() -> String {
    format!(
        "{:<8}  {:<10}  {:<19}  {:>9}  {:<11}  {:>7}  {:>8}  COMMAND\n",
        "ID", "STATUS", "STARTED", "DURATION", "ENDED", "EVENTS", "BYTES"
    )
}

fn ls_line(s: &SessionInfo, now: u64) -> String {
    let (status, ended) = status_columns(s);
    format!(
        "{:<8}  {}  {:<19}  {:>9}  {}  {:>7}  {:>8}  {}{}\n",
        s.id,
        status,
        local_time(s.start_ms),
        duration(duration_ms(s, now)),
        ended,
        s.events,
        bytes(s.trace_bytes),
        shell_words(&s.argv),
        if s.processes > 1 { format!("  ({} processes)", s.processes) } else { String::new() }
    )
}

/// How long the recording took (so far, while it records).
fn duration_ms(s: &SessionInfo, now: u64) -> u64 {
    let end = if s.end_ms == 0 { now } else { s.end_ms };
    end.saturating_sub(s.start_ms)
}

/// Milliseconds as `850ms`, `12.3s`, `4m05s`, `2h07m`.
pub fn duration(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms}ms"),
        1000..=59_999 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..=3_599_999 => format!("{}m{:02}s", ms / 60_000, ms / 1000 % 60),
        _ => format!("{}h{:02}m", ms / 3_600_000, ms / 60_000 % 60),
    }
}

/// A byte count as `512B`, `12.0K`, `3.4M`, `1.2G`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["K", "M", "G", "T"];
    if n < 1024 {
        return format!("{n}B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1}{}", UNITS[unit])
}

/// How a session ended, in a few words for the listing.
pub fn ended(s: &SessionInfo) -> String {
    match s.status.as_str() {
        "recording" => "-".into(),
        "complete" => match &s.ending {
            Some(e) if e.signal != 0 => warp_common::signals::name_or_number(e.signal),
            Some(e) => format!("exit {}", e.exit_code),
            None => "?".into(),
        },
        _ => "interrupted".into(),
    }
}

fn ending_json(e: Option<&Ending>) -> String {
    match e {
        None => "null".into(),
        Some(e) => {
            let o =
                json::Object::new().num("exit_code", e.exit_code).num("signal", e.signal).str("failure", &e.failure);
            let name = warp_common::signals::name(e.signal).filter(|_| e.signal != 0);
            let o = o.str_or_null("signal_name", name.as_deref());
            // Where a signal killed the program, when it did.
            let o = if e.crash.is_empty() { o } else { o.str("crash", &e.crash) };
            o.raw("crash_site", &e.crash_site.as_ref().map_or_else(|| "null".into(), crash_site_json)).finish()
        }
    }
}

/// Where a signal killed the program, as fields: null for what is not known.
fn crash_site_json(c: &warp_proto::trace::CrashSite) -> String {
    fn known(s: &str) -> Option<&str> {
        Some(s).filter(|s| !s.is_empty())
    }
    json::Object::new()
        .num("rip", c.rip)
        .num_or_null("address", c.address)
        .str_or_null("function", known(&c.function))
        .str_or_null("file", known(&c.file))
        .num_or_null("line", Some(c.line).filter(|&l| l != 0))
        .str_or_null("symbol", known(&c.symbol))
        .num_or_null("symbol_offset", Some(c.symbol_offset).filter(|_| !c.symbol.is_empty()))
        .str_or_null("module", known(&c.module))
        .num_or_null("offset", Some(c.offset).filter(|_| !c.module.is_empty()))
        .finish()
}

/// One session as a JSON object (one line of `ls --json`).
pub fn session_json(s: &SessionInfo, now: u64) -> String {
    json::Object::new()
        .str("id", &s.id)
        .str("status", &s.status)
        .str("program", &s.program)
        .strs("argv", &s.argv)
        .num("owner_uid", s.owner_uid)
        .num("start_ms", s.start_ms)
        .num("end_ms", s.end_ms)
        .num("duration_ms", duration_ms(s, now))
        .raw("ending", &ending_json(s.ending.as_ref()))
        .num("events", s.events)
        .num("trace_bytes", s.trace_bytes)
        .num("syscalls", s.syscalls)
        .num("vm_exits", s.vm_exits)
        .num("pid", s.pid)
        .num("ppid", s.ppid)
        .str("parent", &s.parent)
        .num("processes", s.processes)
        .finish()
}

/// argv as a shell would need it typed: words with anything but safe
/// characters in single quotes, and words with control characters (a
/// newline would break a listing's line) in bash's `$'...'` with escapes.
pub fn shell_words(argv: &[String]) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c);
    argv.iter()
        .map(|w| {
            if !w.is_empty() && w.chars().all(safe) {
                w.clone()
            } else if w.chars().any(char::is_control) {
                ansi_c_quoted(w)
            } else {
                format!("'{}'", w.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `$'...'`: what bash reads back as `w`, with no control character left.
fn ansi_c_quoted(w: &str) -> String {
    let mut s = String::from("$'");
    for c in w.chars() {
        match c {
            '\n' => s.push_str("\\n"),
            '\t' => s.push_str("\\t"),
            '\r' => s.push_str("\\r"),
            '\\' => s.push_str("\\\\"),
            '\'' => s.push_str("\\'"),
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    s.push_str(&format!("\\x{b:02x}"));
                }
            }
            c => s.push(c),
        }
    }
    s.push('\'');
    s
}

/// Unix milliseconds as local `YYYY-MM-DD HH:MM:SS`.
pub fn local_time(ms: u64) -> String {
    let secs = (ms / 1000) as libc::time_t;
    // SAFETY: `tm` is plain data (integers and a pointer that may be null).
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are to live locals; localtime_r is thread-safe.
    if unsafe { libc::localtime_r(&secs, &mut tm) }.is_null() {
        return format!("@{secs}");
    }
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

// ---------------------------------------------------------------------------
// show

/// `warpctl show ID|latest [--json]`.
pub async fn show(id: String, json: bool) -> Result<u8, ViewError> {
    let mut daemon = connect::connect_or_start(false).await?;
    let reply = daemon.client.get_session(GetSessionRequest { id }).await.map_err(rpc)?.into_inner();
    let meta = reply.meta.ok_or_else(|| ViewError::Rpc("the daemon sent no session".into()))?;
    let now = now_ms();
    let text = if json { show_json(&meta, now) + "\n" } else { show_text(&meta, now) };
    let mut out = io::stdout().lock();
    emit(&mut out, &text)?;
    flush(&mut out)?;
    Ok(0)
}

fn status_name(status: i32) -> &'static str {
    match Status::try_from(status) {
        Ok(Status::Recording) => "recording",
        Ok(Status::Complete) => "complete",
        Ok(Status::Incomplete) => "incomplete",
        Err(_) => "unknown",
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// How the session ended, as a sentence fragment.
fn ending_text(meta: &SessionMeta) -> String {
    let e = meta.ending.clone().unwrap_or_default();
    match Status::try_from(meta.status) {
        Ok(Status::Recording) => "still recording".into(),
        // "program killed by SIGSEGV (address 0x0) at main (bug.c:37)"
        Ok(Status::Complete) if e.signal != 0 && !e.crash.is_empty() => {
            e.crash.strip_prefix("program ").unwrap_or(&e.crash).to_string()
        }
        Ok(Status::Complete) if e.signal != 0 => {
            format!("killed by {}", warp_common::signals::name_or_number(e.signal))
        }
        Ok(Status::Complete) => format!("exited with {}", e.exit_code),
        _ if e.failure.is_empty() => "interrupted".into(),
        _ => format!("interrupted: {}", e.failure),
    }
}

fn end_ms(meta: &SessionMeta, now: u64) -> u64 {
    if meta.end_ms == 0 {
        now
    } else {
        meta.end_ms
    }
}

/// Every field of a session, one per line.
pub fn show_text(meta: &SessionMeta, now: u64) -> String {
    let mut t = String::new();
    let mut field = |name: &str, value: String| {
        let _ = writeln!(t, "{name:<18}{value}");
    };
    field("session", meta.id.clone());
    field("status", status_name(meta.status).into());
    field("ended", ending_text(meta));
    field("program", meta.program.clone());
    if meta.exe_hash.is_empty() {
        field("executable", "(not read)".into());
    } else {
        field("executable", format!("blake3 {}, {} bytes", hex(&meta.exe_hash), meta.exe_size));
    }
    field("argv", shell_words(&meta.argv));
    field("cwd", meta.cwd.clone());
    field("environment", format!("{} variables (`show --json` lists them)", meta.env.len()));
    field("owner", format!("uid {}", meta.owner_uid));
    if let Some(i) = &meta.identity {
        field(
            "identity",
            format!("pid {}, ppid {}, uid {}, gid {}, euid {}, egid {}", i.pid, i.ppid, i.uid, i.gid, i.euid, i.egid),
        );
    }
    field("started", local_time(meta.start_ms));
    if meta.end_ms != 0 {
        field("finished", local_time(meta.end_ms));
    }
    if meta.imported_ms != 0 {
        field(
            "imported",
            format!("{} (it was session {} where it was recorded)", local_time(meta.imported_ms), meta.imported_from),
        );
    }
    if meta.pinned {
        field("pinned", "yes: retention keeps it (`warpctl unpin` lets it go)".to_string());
    }
    if !meta.captured_by.is_empty() {
        field("captured", format!("by capture rule {} (`warpctl exec`)", meta.captured_by));
    }
    field("duration", duration(end_ms(meta, now).saturating_sub(meta.start_ms)));
    if !meta.backend.is_empty() {
        field("backend", meta.backend.clone());
    }
    let controls: Vec<String> = meta
        .controls
        .iter()
        .map(|c| format!("{} {}", c.name, if c.controlled { "controlled" } else { "uncontrolled" }))
        .collect();
    field("controls", if controls.is_empty() { "-".into() } else { controls.join(", ") });
    field("cpuid leaves", meta.cpuid.len().to_string());
    field("schedule", if meta.chaos { format!("chaos, seed {}", meta.chaos_seed) } else { "default".into() });
    if meta.unknown_syscalls.is_empty() {
        field("unknown syscalls", "none".into());
    } else {
        let list: Vec<String> =
            meta.unknown_syscalls.iter().map(|u| format!("{} ({}) x {}", u.name, u.nr, u.count)).collect();
        field("unknown syscalls", list.join(", "));
    }
    field("events", meta.events.to_string());
    field("trace bytes", format!("{} ({}) added to the store", meta.trace_bytes, bytes(meta.trace_bytes)));
    field(
        "unshared",
        format!("{} ({}) counting blobs other sessions share", meta.logical_bytes, bytes(meta.logical_bytes)),
    );
    field("syscalls", meta.syscalls.to_string());
    field("vm exits", meta.vm_exits.to_string());
    t
}

/// Every field of a session as one JSON object.
pub fn show_json(meta: &SessionMeta, now: u64) -> String {
    let identity = match &meta.identity {
        None => "null".into(),
        Some(i) => json::Object::new()
            .num("pid", i.pid)
            .num("ppid", i.ppid)
            .num("uid", i.uid)
            .num("gid", i.gid)
            .num("euid", i.euid)
            .num("egid", i.egid)
            .finish(),
    };
    let controls: Vec<String> = meta
        .controls
        .iter()
        .map(|c| json::Object::new().str("name", &c.name).bool("controlled", c.controlled).finish())
        .collect();
    let unknown: Vec<String> = meta
        .unknown_syscalls
        .iter()
        .map(|u| json::Object::new().num("nr", u.nr).str("name", &u.name).num("count", u.count).finish())
        .collect();
    json::Object::new()
        .str("id", &meta.id)
        .str("status", status_name(meta.status))
        .raw("ending", &ending_json(meta.ending.as_ref()))
        .str("program", &meta.program)
        .str("exe_blake3", &hex(&meta.exe_hash))
        .num("exe_size", meta.exe_size)
        .strs("argv", &meta.argv)
        .strs("env", &meta.env)
        .str("cwd", &meta.cwd)
        .num("owner_uid", meta.owner_uid)
        .raw("identity", &identity)
        .num("start_ms", meta.start_ms)
        .num("end_ms", meta.end_ms)
        .num("duration_ms", end_ms(meta, now).saturating_sub(meta.start_ms))
        .num("imported_ms", meta.imported_ms)
        .str("imported_from", &meta.imported_from)
        .str("captured_by", &meta.captured_by)
        .bool("pinned", meta.pinned)
        .str("backend", &meta.backend)
        .raw("controls", &json::array(&controls))
        .num("cpuid_leaves", meta.cpuid.len() as u64)
        .num_or_null("chaos_seed", Some(meta.chaos_seed).filter(|_| meta.chaos))
        .raw("unknown_syscalls", &json::array(&unknown))
        .num("events", meta.events)
        .num("trace_bytes", meta.trace_bytes)
        .num("logical_bytes", meta.logical_bytes)
        .num("syscalls", meta.syscalls)
        .num("vm_exits", meta.vm_exits)
        .num("format_version", meta.format_version)
        .finish()
}

// ---------------------------------------------------------------------------
// events

/// `warpctl events ID|latest [--json] [--follow]`.
/// What `warpctl events` prints and where.
pub struct EventsOptions {
    pub json: bool,
    pub follow: bool,
    /// strace's `-e` expressions (`trace=SET` only).
    pub expr: Vec<String>,
    pub summary: bool,
    pub output: Option<std::path::PathBuf>,
    /// Bytes of each read buffer shown (strace's `-s`; None: the daemon's 32).
    pub string_limit: Option<u32>,
    /// strace's `-t` given this many times (0: no time of day).
    pub clock: u8,
    /// strace's `-T`: each call's duration.
    pub durations: bool,
    /// `--color`.
    pub colour: crate::colour::When,
}

/// The syscalls `-e trace=SET` selects.
#[derive(Debug, Default)]
pub struct Selection {
    names: std::collections::BTreeSet<String>,
    classes: Vec<String>,
    all: bool,
    negated: bool,
}

impl Selection {
    /// Parses the `-e` expressions (none: every call); later `trace=`
    /// expressions add to earlier ones, as strace's do.
    pub fn parse(exprs: &[String]) -> Result<Selection, String> {
        let mut s = Selection { all: exprs.is_empty(), ..Default::default() };
        for e in exprs {
            let Some(set) = e.strip_prefix("trace=") else {
                return Err(format!(
                    "-e {e:?}: only trace=SET is supported (names and %classes, comma-separated; !SET for all but those)"
                ));
            };
            let set = match set.strip_prefix('!') {
                Some(rest) => {
                    s.negated = true;
                    rest
                }
                None => set,
            };
            for item in set.split(',').filter(|i| !i.is_empty()) {
                if item == "all" {
                    s.all = true;
                } else if let Some(class) = item.strip_prefix('%') {
                    if !warp_syscalls::CLASSES.contains(&class) {
                        return Err(format!(
                            "-e trace: no class %{class} (there are %{})",
                            warp_syscalls::CLASSES.join(", %")
                        ));
                    }
                    s.classes.push(class.to_string());
                } else if warp_syscalls::names_x86_64::NAMES.contains(&item) {
                    s.names.insert(item.to_string());
                } else {
                    return Err(format!("-e trace: {item:?} is not the name of a Linux x86_64 syscall"));
                }
            }
        }
        Ok(s)
    }

    /// Whether the call `name` is selected.
    pub fn selects(&self, name: &str) -> bool {
        let named = self.all
            || self.names.contains(name)
            || self.classes.iter().any(|c| warp_syscalls::in_class(name, c) == Some(true));
        named != self.negated
    }
}

/// Calls and errors per syscall, for `-c`.
#[derive(Default)]
struct Summary {
    /// Per syscall: calls, errors, and the microseconds of those whose
    /// duration the trace has.
    counts: std::collections::BTreeMap<String, (u64, u64, u64)>,
}

impl Summary {
    fn add(&mut self, line: &EventLine) {
        let c = self.counts.entry(line.name.clone()).or_default();
        c.0 += 1;
        // A result Linux gives as an error: -4095..-1.
        if line.ret.is_some_and(|r| (-4095..0).contains(&r)) {
            c.1 += 1;
        }
        c.2 += line.duration_us.unwrap_or(0);
    }

    fn render(&self, json: bool) -> String {
        let mut rows: Vec<(&String, &(u64, u64, u64))> = self.counts.iter().collect();
        rows.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then(a.0.cmp(b.0)));
        let mut out = String::new();
        if json {
            for (name, (calls, errors, us)) in rows {
                let o = json::Object::new().str("syscall", name).num("calls", *calls).num("errors", *errors);
                out.push_str(&o.num("usecs", *us).finish());
                out.push('\n');
            }
            return out;
        }
        let secs = |us: u64| format!("{}.{:06}", us / 1_000_000, us % 1_000_000);
        let _ = writeln!(out, "{:>11} {:>9} {:>9} syscall", "seconds", "calls", "errors");
        let _ = writeln!(out, "{:->11} {:->9} {:->9} ----------------", "", "", "");
        let (mut calls, mut errors, mut total) = (0, 0, 0);
        for (name, (c, e, us)) in rows {
            let shown = if *e > 0 { e.to_string() } else { String::new() };
            let _ = writeln!(out, "{:>11} {c:>9} {shown:>9} {name}", secs(*us));
            calls += c;
            errors += e;
            total += us;
        }
        let _ = writeln!(out, "{:->11} {:->9} {:->9} ----------------", "", "", "");
        let _ = writeln!(out, "{:>11} {calls:>9} {errors:>9} total", secs(total));
        out
    }
}

/// `-t`/`-tt`/`-ttt` and `-T` as strace prints them, around a line.
fn timed(text: &str, line: &EventLine, start_ms: u64, clock: u8, durations: bool) -> String {
    let mut out = String::new();
    if clock > 0 {
        match line.time_us {
            Some(us) => {
                let at_us = start_ms.saturating_mul(1000).saturating_add(us);
                let (secs, micros) = (at_us / 1_000_000, at_us % 1_000_000);
                if clock >= 3 {
                    let _ = write!(out, "{secs}.{micros:06} ");
                } else {
                    let hms = local_hms(secs);
                    if clock == 2 {
                        let _ = write!(out, "{hms}.{micros:06} ");
                    } else {
                        let _ = write!(out, "{hms} ");
                    }
                }
            }
            // Not recorded (an older trace, or no syscall): as wide, blank.
            None => out.push_str(&" ".repeat(match clock {
                1 => 9,
                2 => 16,
                _ => 18,
            })),
        }
    }
    out.push_str(text);
    if durations {
        if let Some(us) = line.duration_us {
            let _ = write!(out, " <{}.{:06}>", us / 1_000_000, us % 1_000_000);
        }
    }
    out
}

/// `HH:MM:SS` of unix time `secs` in local time.
fn local_hms(secs: u64) -> String {
    let t = secs as libc::time_t;
    // SAFETY: localtime_r fills the tm given from the time given; both are locals.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
        return format!("{:02}:{:02}:{:02}", secs / 3600 % 24, secs / 60 % 60, secs % 60);
    }
    format!("{:02}:{:02}:{:02}", tm.tm_hour, tm.tm_min, tm.tm_sec)
}

pub async fn events(id: String, opts: EventsOptions) -> Result<u8, ViewError> {
    let selection = Selection::parse(&opts.expr).map_err(ViewError::Refused)?;
    let mut daemon = connect::connect_or_start(false).await?;
    let request = StreamEventsRequest { id, follow: opts.follow, from: 0, string_limit: opts.string_limit };
    let mut stream = daemon.client.stream_events(request).await.map_err(rpc)?.into_inner();
    // A file given with -o is no terminal: coloured only with --color always.
    let paint = match &opts.output {
        Some(_) => crate::colour::Paint::new(opts.colour, false),
        None => crate::colour::Paint::stdout(opts.colour),
    };
    let sink: Box<dyn Write> = match &opts.output {
        Some(path) => Box::new(
            std::fs::File::create(path)
                .map_err(|e| ViewError::Local(format!("cannot write {}: {e}", path.display())))?,
        ),
        None => Box::new(io::stdout().lock()),
    };
    let mut out = io::BufWriter::new(sink);
    let mut summary = Summary::default();
    let mut start_ms = 0;
    while let Some(batch) = stream.message().await.map_err(rpc)? {
        if batch.start_ms != 0 {
            start_ms = batch.start_ms;
        }
        let mut text = String::new();
        for line in &batch.lines {
            if line.kind == "syscall" && !selection.selects(&line.name) {
                continue;
            }
            if opts.summary {
                if line.kind == "syscall" {
                    summary.add(line);
                }
                continue;
            }
            if opts.json {
                text.push_str(&line_json(line));
            } else if opts.clock > 0 || opts.durations {
                text.push_str(&timed(&paint.event(line), line, start_ms, opts.clock, opts.durations));
            } else {
                text.push_str(&paint.event(line));
            }
            text.push('\n');
        }
        if !emit(&mut out, &text)? {
            return Ok(0); // the reader went away
        }
        if opts.follow {
            flush(&mut out)?;
        }
    }
    if opts.summary && !emit(&mut out, &summary.render(opts.json))? {
        return Ok(0);
    }
    flush(&mut out)?;
    Ok(0)
}

/// One printed event line as a JSON object.
pub fn line_json(line: &EventLine) -> String {
    let mut o = json::Object::new()
        .num("seq", line.first_seq)
        .num("last_seq", line.last_seq)
        .num("thread", line.thread)
        .str("kind", &line.kind);
    if line.kind == "syscall" {
        let args: Vec<String> = line.args.iter().map(u64::to_string).collect();
        o = o
            .str("name", &line.name)
            .num("nr", line.nr)
            .raw("args", &json::array(&args))
            .num_or_null("ret", line.ret)
            .num_or_null("time_us", line.time_us)
            .num_or_null("duration_us", line.duration_us)
            .bool("exitless", line.exitless);
        let args: Vec<String> = line.arg_text.iter().map(|a| json::string(a)).collect();
        let decoded = json::Object::new()
            .raw("args", &if line.has_args { json::array(&args) } else { "null".into() })
            .str_or_null("ret", line.ret.map(|_| line.ret_text.as_str()))
            .finish();
        o = o.raw("decoded", &decoded);
    }
    let signal = |o: json::Object| {
        let s = Some(line.signal).filter(|&s| s != 0);
        o.str_or_null("signal", s.map(warp_common::signals::name_or_number).as_deref()).num_or_null("signo", s)
    };
    if line.kind == "fault" {
        o = signal(o)
            .num_or_null("vector", line.vector)
            .num_or_null("rip", line.rip)
            .num_or_null("address", line.address);
    }
    if line.kind == "end" {
        o = signal(o.num_or_null("exit_code", line.exit_code));
    }
    o.str("text", &line.text).finish()
}

// ---------------------------------------------------------------------------
// rm

/// `warpctl rm ID`: prints nothing when it worked.
/// `warpctl rm ID...`: each one, the others still when one is refused.
/// With `all_incomplete`, every incomplete recording of the caller's too,
/// whose ids go to stdout, one a line.
pub async fn rm(mut ids: Vec<String>, all_incomplete: bool) -> Result<u8, ViewError> {
    let mut daemon = connect::connect_or_start(false).await?;
    let mut code = 0;
    let mut listed = Vec::new();
    if all_incomplete {
        let reply = daemon.client.list_sessions(ListSessionsRequest::default()).await.map_err(rpc)?.into_inner();
        listed = reply.sessions.into_iter().filter(|s| s.status == "incomplete").map(|s| s.id).collect();
        ids.extend(listed.iter().cloned());
    }
    for id in ids {
        match daemon.client.remove_session(RemoveSessionRequest { id: id.clone() }).await.map_err(rpc) {
            Ok(_) => {}
            Err(ViewError::Refused(why)) => {
                say!("{why}");
                code = 2;
            }
            Err(e) => return Err(e),
        }
    }
    let mut out = io::stdout().lock();
    for id in &listed {
        if !emit(&mut out, &format!("{id}\n"))? {
            break;
        }
    }
    flush(&mut out)?;
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use warp_proto::trace::{Control, Identity};

    #[test]
    fn the_ls_footer_counts_recordings_processes_and_the_store() {
        let one = SessionInfo { processes: 0, ..Default::default() };
        let tree = SessionInfo { processes: 3, ..Default::default() };
        assert_eq!(ls_footer(&[], 0), format!("0 recordings (0 processes), {} in the store\n", bytes(0)));
        assert_eq!(
            ls_footer(std::slice::from_ref(&one), 1 << 20),
            format!("1 recording (1 process), {} in the store\n", bytes(1 << 20))
        );
        assert_eq!(ls_footer(&[one, tree], 5), format!("2 recordings (4 processes), {} in the store\n", bytes(5)));
    }

    #[test]
    fn trace_sets_select_as_straces_do() {
        let sel = |e: &[&str]| Selection::parse(&e.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let all = sel(&[]).unwrap();
        assert!(all.selects("read") && all.selects("openat"));
        let some = sel(&["trace=read,%file"]).unwrap();
        assert!(some.selects("read") && some.selects("openat") && some.selects("newfstatat"));
        assert!(!some.selects("write") && !some.selects("mmap"));
        let not = sel(&["trace=!read,write"]).unwrap();
        assert!(!not.selects("read") && !not.selects("write") && not.selects("openat"));
        let two = sel(&["trace=read", "trace=%memory"]).unwrap();
        assert!(two.selects("read") && two.selects("mmap") && !two.selects("write"));
        assert!(sel(&["trace=all"]).unwrap().selects("getpid"));
        assert!(sel(&["trace=nosuch"]).unwrap_err().contains("nosuch"));
        assert!(sel(&["trace=%bogus"]).unwrap_err().contains("%file"));
        assert!(sel(&["abbrev=none"]).unwrap_err().contains("only trace="));
    }

    fn info(status: &str, ending: Option<Ending>) -> SessionInfo {
        SessionInfo {
            id: "abcd2345".into(),
            argv: vec!["echo".into(), "hi there".into()],
            owner_uid: 1000,
            status: status.into(),
            start_ms: 1_700_000_000_000,
            end_ms: 1_700_000_001_500,
            end: None,
            syscalls: 12,
            vm_exits: 30,
            program: "/bin/echo".into(),
            events: 40,
            trace_bytes: 5000,
            ending,
            ..Default::default()
        }
    }

    fn exit(code: i32, signal: i32) -> Option<Ending> {
        Some(Ending { exit_code: code, signal, ..Default::default() })
    }

    #[test]
    fn ended_column() {
        assert_eq!(ended(&info("recording", None)), "-");
        assert_eq!(ended(&info("complete", exit(3, 0))), "exit 3");
        assert_eq!(ended(&info("complete", exit(0, 9))), "SIGKILL");
        let broken = Some(Ending { failure: "the broker died".into(), ..Default::default() });
        assert_eq!(ended(&info("incomplete", broken)), "interrupted");
    }

    #[test]
    fn ls_line_has_every_column() {
        let line = ls_line(&info("complete", exit(0, 0)), 0);
        for part in ["abcd2345", "complete", "1.5s", "exit 0", "40", "4.9K", "echo 'hi there'"] {
            assert!(line.contains(part), "{part} in {line}");
        }
        assert_eq!(ls_header().split_whitespace().count(), 8);
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(bytes(10), "10B");
        assert_eq!(bytes(1536), "1.5K");
        assert_eq!(bytes(3 << 20), "3.0M");
        assert_eq!(duration(850), "850ms");
        assert_eq!(duration(12_340), "12.3s");
        assert_eq!(duration(245_000), "4m05s");
        assert_eq!(duration(7_620_000), "2h07m");
    }

    #[test]
    fn shell_quoting() {
        let words = |v: &[&str]| shell_words(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(words(&["ls", "-l", "/tmp"]), "ls -l /tmp");
        assert_eq!(words(&["echo", "a b", ""]), "echo 'a b' ''");
        assert_eq!(words(&["it's"]), r"'it'\''s'");
        assert_eq!(words(&["echo", "a\nb"]), r"echo $'a\nb'");
        assert_eq!(words(&["x\u{1b}[31m'\\"]), r"$'x\x1b[31m\'\\'");
    }

    #[test]
    fn session_as_json() {
        let j = session_json(&info("complete", exit(0, 0)), 0);
        assert_eq!(
            j,
            r#"{"id":"abcd2345","status":"complete","program":"/bin/echo","argv":["echo","hi there"],"owner_uid":1000,"start_ms":1700000000000,"end_ms":1700000001500,"duration_ms":1500,"ending":{"exit_code":0,"signal":0,"failure":"","signal_name":null,"crash_site":null},"events":40,"trace_bytes":5000,"syscalls":12,"vm_exits":30,"pid":0,"ppid":0,"parent":"","processes":0}"#
        );
        assert!(session_json(&info("recording", None), 0).contains(r#""ending":null"#));
    }

    fn meta() -> SessionMeta {
        SessionMeta {
            id: "s1".into(),
            argv: vec!["prog".into(), "x".into()],
            env: vec!["A=1".into(), "B=2".into()],
            cwd: "/tmp".into(),
            owner_uid: 1000,
            start_ms: 1_000,
            end_ms: 3_000,
            status: Status::Complete as i32,
            ending: exit(0, 0),
            program: "/bin/prog".into(),
            exe_hash: vec![0xab, 0x01],
            exe_size: 100,
            controls: vec![Control { name: "rdtsc".into(), controlled: false }],
            identity: Some(Identity { pid: 42, ..Default::default() }),
            events: 7,
            ..Default::default()
        }
    }

    #[test]
    fn show_has_all_metadata() {
        let t = show_text(&meta(), 0);
        for part in [
            "s1",
            "exited with 0",
            "blake3 ab01, 100 bytes",
            "prog x",
            "/tmp",
            "2 variables",
            "uid 1000",
            "pid 42",
            "2.0s",
            "rdtsc uncontrolled",
            "cpuid leaves      0",
            "unknown syscalls",
        ] {
            assert!(t.contains(part), "{part:?} in\n{t}");
        }
        let j = show_json(&meta(), 0);
        assert!(j.contains(r#""exe_blake3":"ab01""#), "{j}");
        assert!(j.contains(r#""env":["A=1","B=2"]"#), "{j}");
        assert!(j.contains(r#""argv":["prog","x"]"#), "{j}");
    }

    #[test]
    fn event_lines_as_json() {
        let line = EventLine {
            first_seq: 3,
            last_seq: 5,
            thread: 42,
            kind: "syscall".into(),
            name: "close".into(),
            nr: 3,
            args: vec![4],
            ret: Some(0),
            text: "[42] close(4) = 0".into(),
            time_us: Some(120),
            duration_us: None,
            exitless: false,
            has_args: true,
            arg_text: vec!["4".into()],
            ret_text: "0".into(),
            ..Default::default()
        };
        assert_eq!(
            line_json(&line),
            r#"{"seq":3,"last_seq":5,"thread":42,"kind":"syscall","name":"close","nr":3,"args":[4],"ret":0,"time_us":120,"duration_us":null,"exitless":false,"decoded":{"args":["4"],"ret":"0"},"text":"[42] close(4) = 0"}"#
        );
        let fault = EventLine {
            kind: "fault".into(),
            text: "[42] --- SIGSEGV ---".into(),
            signal: 11,
            vector: Some(14),
            rip: Some(0x401000),
            address: Some(0),
            ..line.clone()
        };
        assert_eq!(
            line_json(&fault),
            r#"{"seq":3,"last_seq":5,"thread":42,"kind":"fault","signal":"SIGSEGV","signo":11,"vector":14,"rip":4198400,"address":0,"text":"[42] --- SIGSEGV ---"}"#
        );
        let end =
            EventLine { kind: "end".into(), text: "[42] +++ exited with 0 +++".into(), exit_code: Some(0), ..line };
        assert_eq!(
            line_json(&end),
            r#"{"seq":3,"last_seq":5,"thread":42,"kind":"end","exit_code":0,"signal":null,"signo":null,"text":"[42] +++ exited with 0 +++"}"#
        );
    }

    #[test]
    fn refusals_exit_2_and_failures_125() {
        assert_eq!(rpc(tonic::Status::not_found("no session x")).exit_code(), 2);
        assert_eq!(rpc(tonic::Status::data_loss("corrupt")).exit_code(), 2);
        assert_eq!(rpc(tonic::Status::internal("boom")).exit_code(), 125);
    }
}
