//! End-to-end test helpers: run a C test program natively and under
//! `warpctl record`, and compare what the two did.
//!
//! The shape is rr's test suite: small C programs (in `progs/`, built by
//! `build.rs` as `NAME.static`, `NAME.static-pie` and `NAME.dynamic`) that print
//! deterministic results and end with a known status. A test runs one
//! natively, runs it again as `warpctl record -- PROGRAM ARGS...`, and
//! requires (see [`WarpHome::check`]):
//!
//! - the same stdout bytes;
//! - the same stderr once warpctl's own lines (`warpctl: ...`) are removed;
//! - warpctl exiting with the program's status (128+N for signal N);
//! - exactly one `warpctl: session ID` line and no other warpctl line.
//!
//! Every test gets its own `WARP_HOME` ([`WarpHome`]), so each has its own
//! embedded daemon, stopped (`warpctl daemon stop`) and removed on drop.
//! Every child runs in its own process group with a timeout, after which the
//! whole group is killed and the test fails: a hang cannot stall CI.
//!
//! Environment knobs: `WARP_TEST_TIMEOUT` (seconds per run, default 60),
//! `WARP_TEST_BIN_DIR` (where warpctl, warpd and warp-broker are; default:
//! the cargo target directory the test executable is in),
//! `WARP_TEST_KEEP=1` (keep every `WARP_HOME`, not only failed tests').

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

pub mod json;
pub mod schema;

/// The prefix of every line warpctl itself writes to stderr.
pub const WARPCTL_PREFIX: &str = "warpctl: ";
/// The prefix of the line announcing the session id.
pub const SESSION_PREFIX: &str = "warpctl: session ";

/// How long a run may take before its process group is killed.
pub fn default_timeout() -> Duration {
    let secs = std::env::var("WARP_TEST_TIMEOUT").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    Duration::from_secs(secs)
}

// ---------------------------------------------------------------------------
// Test programs and product binaries

/// How a test program is linked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavour {
    /// `gcc -static`: ET_EXEC at fixed addresses.
    Static,
    /// `gcc -static-pie`: ET_DYN without an interpreter, relocates itself.
    StaticPie,
    /// Plain `gcc`: a PIE with a PT_INTERP naming the system's dynamic
    /// linker, which loads libc.so.
    Dynamic,
}

/// Every flavour: every program is tested in each.
pub const FLAVOURS: [Flavour; 3] = [Flavour::Static, Flavour::StaticPie, Flavour::Dynamic];

impl Flavour {
    pub fn suffix(self) -> &'static str {
        match self {
            Flavour::Static => "static",
            Flavour::StaticPie => "static-pie",
            Flavour::Dynamic => "dynamic",
        }
    }
}

/// The directory the build script compiled the C programs into.
pub fn progs_dir() -> PathBuf {
    PathBuf::from(env!("WARP_TEST_PROGS"))
}

/// The file name of a test program, e.g. `hello.static-pie`.
pub fn prog_name(name: &str, flavour: Flavour) -> String {
    format!("{name}.{}", flavour.suffix())
}

/// The absolute path of a test program.
pub fn prog(name: &str, flavour: Flavour) -> PathBuf {
    let path = progs_dir().join(prog_name(name, flavour));
    assert!(path.is_file(), "test program {} was not built (is progs/{name}.c there?)", path.display());
    path
}

/// Where the PT_INTERP string of a little-endian ELF64 file is: `(file
/// offset, p_filesz)` (the size counts the terminating NUL); `None` when the
/// file has no PT_INTERP. Panics on a file that is not ELF64 or whose
/// program headers lie outside it (test programs are well-formed).
pub fn pt_interp(elf: &[u8]) -> Option<(usize, usize)> {
    assert!(elf.len() >= 64 && &elf[..4] == b"\x7fELF", "not an ELF file");
    assert_eq!(elf[4], 2, "not ELF64");
    let u16_at = |o: usize| u16::from_le_bytes(elf[o..o + 2].try_into().unwrap());
    let u32_at = |o: usize| u32::from_le_bytes(elf[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().unwrap());
    let phoff = u64_at(0x20) as usize;
    let phentsize = u16_at(0x36) as usize;
    let phnum = u16_at(0x38) as usize;
    assert!(phentsize >= 56, "e_phentsize {phentsize}");
    assert!(phoff + phnum * phentsize <= elf.len(), "program headers outside the file");
    const PT_INTERP: u32 = 3;
    (0..phnum).map(|i| phoff + i * phentsize).find_map(|ph| {
        (u32_at(ph) == PT_INTERP).then(|| {
            let offset = u64_at(ph + 8) as usize;
            let filesz = u64_at(ph + 32) as usize;
            assert!(offset + filesz <= elf.len(), "PT_INTERP outside the file");
            (offset, filesz)
        })
    })
}

/// The directory holding warpctl, warpd and warp-broker.
///
/// Derived from the test executable (`target/<profile>/deps/NAME-HASH` ->
/// `target/<profile>`), unless `WARP_TEST_BIN_DIR` says otherwise.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("WARP_TEST_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("path of the test executable");
    let mut dir = exe.parent().expect("test executable has a directory").to_path_buf();
    if dir.file_name() == Some(OsStr::new("deps")) {
        dir.pop();
    }
    dir
}

/// The path of one of the product's binaries; panics with what to do when
/// it has not been built.
pub fn product_binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.is_file(),
        "{} does not exist: run `cargo build --workspace` before `cargo test` \
         (the end-to-end tests run the built warpctl, warpd and warp-broker)",
        path.display()
    );
    path
}

/// warpctl, after checking that warpd and warp-broker are beside it.
pub fn warpctl() -> PathBuf {
    product_binary("warpd");
    product_binary("warp-broker");
    product_binary("warpctl")
}

// ---------------------------------------------------------------------------
// What to run

/// Where a run's stdin comes from.
#[derive(Clone, Debug)]
pub enum Input {
    /// `/dev/null`.
    Null,
    /// These bytes through a pipe, which is then closed.
    Bytes(Arc<Vec<u8>>),
    /// This file, opened afresh for each run.
    File(PathBuf),
    /// A pipe the test keeps open (see [`Running::close_stdin`]).
    Held,
}

/// A program invocation, run the same way natively and recorded.
#[derive(Clone, Debug)]
pub struct Spec {
    /// Passed as given: a path, or a bare name looked up on `$PATH`.
    pub program: OsString,
    pub args: Vec<OsString>,
    /// Set on top of the test's environment (from which every `WARP_*`
    /// variable is removed).
    pub env: Vec<(OsString, OsString)>,
    pub cwd: Option<PathBuf>,
    pub stdin: Input,
    /// Send stdout to a file instead of a pipe: `PATH.native` and
    /// `PATH.recorded`. The file's contents become [`Outcome::stdout`].
    pub stdout_file: Option<PathBuf>,
    pub timeout: Duration,
}

impl Spec {
    pub fn new(program: impl AsRef<OsStr>) -> Spec {
        Spec {
            program: program.as_ref().to_os_string(),
            args: Vec::new(),
            env: Vec::new(),
            cwd: None,
            stdin: Input::Null,
            stdout_file: None,
            timeout: default_timeout(),
        }
    }

    /// A test program by name and flavour.
    pub fn prog(name: &str, flavour: Flavour) -> Spec {
        Spec::new(prog(name, flavour))
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Spec {
        self.args.push(arg.as_ref().to_os_string());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(mut self, args: I) -> Spec {
        self.args.extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Spec {
        self.env.push((key.as_ref().to_os_string(), value.as_ref().to_os_string()));
        self
    }

    pub fn cwd(mut self, dir: impl AsRef<Path>) -> Spec {
        self.cwd = Some(dir.as_ref().to_path_buf());
        self
    }

    pub fn stdin(mut self, input: Input) -> Spec {
        self.stdin = input;
        self
    }

    pub fn stdin_bytes(self, bytes: Vec<u8>) -> Spec {
        self.stdin(Input::Bytes(Arc::new(bytes)))
    }

    pub fn stdout_file(mut self, path: impl AsRef<Path>) -> Spec {
        self.stdout_file = Some(path.as_ref().to_path_buf());
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Spec {
        self.timeout = timeout;
        self
    }

    /// A short description for failure messages.
    pub fn describe(&self) -> String {
        let mut s = self.program.to_string_lossy().into_owned();
        for a in &self.args {
            s.push(' ');
            s.push_str(&a.to_string_lossy());
        }
        s
    }

    /// The program run natively.
    pub fn native_command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args);
        self.apply(&mut cmd);
        cmd
    }

    fn apply(&self, cmd: &mut Command) {
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("WARP_") {
                cmd.env_remove(key);
            }
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
    }
}

// ---------------------------------------------------------------------------
// What happened

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Exited(i32),
    Signaled(i32),
}

impl Status {
    fn from_exit(status: ExitStatus) -> Status {
        match (status.code(), status.signal()) {
            (Some(code), _) => Status::Exited(code),
            (None, Some(sig)) => Status::Signaled(sig),
            (None, None) => panic!("exit status {status:?} is neither a code nor a signal"),
        }
    }

    /// The status as a shell reports it in `$?`: 128+N for signal N.
    pub fn shell_code(self) -> i32 {
        match self {
            Status::Exited(code) => code,
            Status::Signaled(sig) => 128 + sig,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::Exited(code) => write!(f, "exit code {code}"),
            Status::Signaled(sig) => write!(f, "killed by signal {sig}"),
        }
    }
}

/// The result of one run.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub status: Status,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Outcome {
    /// Status, stdout and stderr, for failure messages.
    pub fn text(&self) -> String {
        format!("status {:?}\nstdout:\n{}stderr:\n{}", self.status, self.stdout_str(), self.stderr_str())
    }

    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// warpctl's line for a program a signal killed, and the signal's name
/// (`warpctl: program killed by SIGSEGV (address 0x0) at main (bug.c:37)`).
pub fn crash_lines(lines: &[String]) -> Vec<&str> {
    lines.iter().map(String::as_str).filter(|l| l.starts_with("warpctl: program killed by SIG")).collect()
}

/// The result of one `warpctl record` run, with stderr split into the
/// program's bytes and warpctl's own lines.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub outcome: Outcome,
    pub program_stderr: Vec<u8>,
    pub warpctl_lines: Vec<String>,
}

impl Recorded {
    /// Splits the stderr of a finished `warpctl record`.
    pub fn new(outcome: Outcome) -> Recorded {
        let (program_stderr, warpctl_lines) = split_stderr(&outcome.stderr);
        Recorded { outcome, program_stderr, warpctl_lines }
    }

    /// The session id, when exactly one well-formed `warpctl: session ID`
    /// line was printed.
    pub fn session_id(&self) -> Result<String, String> {
        let ids = session_ids(&self.warpctl_lines)?;
        match ids.as_slice() {
            [id] => Ok(id.clone()),
            [] => Err("no `warpctl: session ID` line".to_string()),
            _ => Err(format!("{} `warpctl: session` lines, expected one: {ids:?}", ids.len())),
        }
    }

    /// warpctl's own lines, one per line, for failure messages.
    pub fn warpctl_text(&self) -> String {
        if self.warpctl_lines.is_empty() {
            return "(none)".to_string();
        }
        self.warpctl_lines.join("\n")
    }
}

/// Splits captured stderr into the program's bytes (unchanged) and
/// warpctl's lines (those starting with `warpctl: `, without the newline).
/// A final line without a newline is judged the same way.
pub fn split_stderr(stderr: &[u8]) -> (Vec<u8>, Vec<String>) {
    let mut program = Vec::with_capacity(stderr.len());
    let mut warpctl = Vec::new();
    for line in stderr.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(WARPCTL_PREFIX.as_bytes()) {
            let text = line.strip_suffix(b"\n").unwrap_or(line);
            warpctl.push(String::from_utf8_lossy(text).into_owned());
        } else {
            program.extend_from_slice(line);
        }
    }
    (program, warpctl)
}

/// The ids of the `warpctl: session ID` lines among warpctl's lines; an
/// error when such a line is malformed (empty id, or more than one word).
pub fn session_ids(warpctl_lines: &[String]) -> Result<Vec<String>, String> {
    let mut ids = Vec::new();
    for line in warpctl_lines {
        if let Some(rest) = line.strip_prefix(SESSION_PREFIX) {
            let id = rest.trim_end_matches('\r');
            if id.is_empty() || id.split_whitespace().count() != 1 || id != id.trim() {
                return Err(format!("malformed session line {line:?}"));
            }
            ids.push(id.to_string());
        }
    }
    Ok(ids)
}

/// Says where two byte strings differ, briefly enough for a failure message
/// even when they are megabytes long.
pub fn describe_difference(what: &str, native: &[u8], recorded: &[u8]) -> String {
    if native.len() + recorded.len() <= 8192 {
        return format!(
            "{what} differs\n--- native ({} bytes):\n{}\n--- recorded ({} bytes):\n{}",
            native.len(),
            String::from_utf8_lossy(native),
            recorded.len(),
            String::from_utf8_lossy(recorded)
        );
    }
    let first = native.iter().zip(recorded).position(|(a, b)| a != b).unwrap_or(native.len().min(recorded.len()));
    let from = first.saturating_sub(32);
    let window = |b: &[u8]| format!("{:?}", String::from_utf8_lossy(&b[from.min(b.len())..(first + 64).min(b.len())]));
    format!(
        "{what} differs: native {} bytes, recorded {} bytes, first difference at byte {first}\n\
         native   near it: {}\nrecorded near it: {}",
        native.len(),
        recorded.len(),
        window(native),
        window(recorded)
    )
}

// ---------------------------------------------------------------------------
// Running processes

/// A child in its own process group, its stdout and stderr being read.
pub struct Running {
    what: String,
    child: Child,
    pgid: i32,
    stdin: Option<ChildStdin>,
    stdout: Option<Receiver<Option<Vec<u8>>>>,
    stdout_buf: Vec<u8>,
    stdout_eof: bool,
    stdout_file: Option<PathBuf>,
    stderr: Receiver<Vec<u8>>,
    deadline: Instant,
    timeout: Duration,
    finished: bool,
}

/// Spawns `cmd` in a new process group, with core dumps off, stdout and
/// stderr captured (stdout to `stdout_file` when given) and stdin as asked.
/// `what` names it in failure messages.
pub fn spawn(mut cmd: Command, what: &str, stdin: &Input, stdout_file: Option<&Path>, timeout: Duration) -> Running {
    cmd.process_group(0);
    // SAFETY: the closure runs in the child between fork and exec and only
    // calls setrlimit, which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            // Faulting test programs must not leave core files behind.
            let zero = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            libc::setrlimit(libc::RLIMIT_CORE, &zero);
            Ok(())
        });
    }
    match stdin {
        Input::Null => cmd.stdin(Stdio::null()),
        Input::Bytes(_) | Input::Held => cmd.stdin(Stdio::piped()),
        Input::File(path) => {
            let f = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
            cmd.stdin(f)
        }
    };
    match stdout_file {
        Some(path) => {
            let f = File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
            cmd.stdout(f)
        }
        None => cmd.stdout(Stdio::piped()),
    };
    cmd.stderr(Stdio::piped());

    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{what}: cannot start {cmd:?}: {e}"));
    let pgid = child.id() as i32;

    let mut stdin_pipe = child.stdin.take();
    if let Input::Bytes(bytes) = stdin {
        let mut pipe = stdin_pipe.take().expect("piped stdin");
        let bytes = Arc::clone(bytes);
        // The program may stop reading early; a write error is its business.
        thread::spawn(move || {
            let _ = pipe.write_all(&bytes);
        });
    }

    let stdout = child.stdout.take().map(|mut out| {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 16];
            loop {
                match out.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        let _ = tx.send(None);
                        break;
                    }
                    Ok(n) => {
                        if tx.send(Some(buf[..n].to_vec())).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        rx
    });
    let mut err = child.stderr.take().expect("piped stderr");
    let (tx, stderr) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err.read_to_end(&mut buf);
        let _ = tx.send(buf);
    });

    Running {
        what: what.to_string(),
        child,
        pgid,
        stdin: stdin_pipe,
        stdout,
        stdout_eof: stdout_file.is_some(),
        stdout_buf: Vec::new(),
        stdout_file: stdout_file.map(Path::to_path_buf),
        stderr,
        deadline: Instant::now() + timeout,
        timeout,
        finished: false,
    }
}

impl Running {
    /// The process group id (the child's pid).
    pub fn pgid(&self) -> i32 {
        self.pgid
    }

    /// Sends `sig` to the whole process group, as a terminal's Ctrl-C does.
    pub fn signal_group(&self, sig: i32) {
        // SAFETY: kill has no memory-safety preconditions.
        let r = unsafe { libc::kill(-self.pgid, sig) };
        assert_eq!(r, 0, "{}: kill(-{}, {sig}): {}", self.what, self.pgid, std::io::Error::last_os_error());
    }

    /// Closes a held stdin (the program then reads end of file).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Stdout read so far.
    pub fn stdout_so_far(&self) -> &[u8] {
        &self.stdout_buf
    }

    /// Waits until stdout contains `needle`; fails the test on timeout or
    /// when stdout ends (or the process exits) first.
    pub fn wait_for_stdout(&mut self, needle: &str) {
        while !contains(&self.stdout_buf, needle.as_bytes()) {
            if self.stdout_eof {
                let status = self.child.try_wait().ok().flatten();
                let stderr = self.stderr.try_recv().unwrap_or_default();
                self.kill_group();
                panic!(
                    "{}: stdout ended before {needle:?} appeared (status {status:?})\nstdout: {}\nstderr: {}",
                    self.what,
                    String::from_utf8_lossy(&self.stdout_buf),
                    String::from_utf8_lossy(&stderr)
                );
            }
            let rx = self.stdout.as_ref().expect("stdout is a pipe");
            let left = self.deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(Some(chunk)) => self.stdout_buf.extend_from_slice(&chunk),
                Ok(None) | Err(RecvTimeoutError::Disconnected) => self.stdout_eof = true,
                Err(RecvTimeoutError::Timeout) => {
                    self.kill_group();
                    panic!(
                        "{}: {needle:?} did not appear on stdout within {:?}; killed its process group\nstdout so far: {}",
                        self.what,
                        self.timeout,
                        String::from_utf8_lossy(&self.stdout_buf)
                    );
                }
            }
        }
    }

    fn kill_group(&mut self) {
        if !self.finished {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(-self.pgid, libc::SIGKILL) };
            let _ = self.child.kill();
            let _ = self.child.wait();
            self.finished = true;
        }
    }

    /// Waits for the process to end (failing the test after the timeout),
    /// for every other process of its group to go, and for its output.
    pub fn finish(mut self) -> Outcome {
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break Status::from_exit(status),
                Ok(None) => {}
                Err(e) => panic!("{}: wait: {e}", self.what),
            }
            if Instant::now() >= self.deadline {
                self.kill_group();
                let stderr = self.stderr.recv_timeout(Duration::from_secs(5)).unwrap_or_default();
                panic!(
                    "{}: still running after {:?}; killed its process group\nstdout so far: {}\nstderr: {}",
                    self.what,
                    self.timeout,
                    String::from_utf8_lossy(&self.stdout_buf),
                    String::from_utf8_lossy(&stderr)
                );
            }
            thread::sleep(Duration::from_millis(5));
        };
        self.stdin = None;
        self.finished = true;

        // Whatever the process started in its group (a broker) must go
        // with it; a daemon detaches into a session of its own.
        let grace = Instant::now() + Duration::from_secs(5);
        loop {
            let left = live_processes_in_group(self.pgid);
            if left.is_empty() {
                break;
            }
            if Instant::now() >= grace {
                // SAFETY: kill has no memory-safety preconditions.
                unsafe { libc::kill(-self.pgid, libc::SIGKILL) };
                panic!(
                    "{}: ended ({status}) but left processes running in its process group 5 s later: {left:?}",
                    self.what
                );
            }
            thread::sleep(Duration::from_millis(20));
        }

        // Output: a process that kept our pipes open would hang a caller
        // that reads to end of file (a shell's `$(...)`), so that fails too.
        let pipes_deadline = Instant::now() + Duration::from_secs(10);
        fn open_pipe(which: &str, what: &str, status: Status) -> ! {
            panic!(
                "{what}: ended ({status}) but its {which} was still open 10 s later: \
                 some process it started (the daemon?) kept it"
            )
        }
        if let Some(rx) = self.stdout.take() {
            while !self.stdout_eof {
                match rx.recv_timeout(pipes_deadline.saturating_duration_since(Instant::now())) {
                    Ok(Some(chunk)) => self.stdout_buf.extend_from_slice(&chunk),
                    Ok(None) | Err(RecvTimeoutError::Disconnected) => self.stdout_eof = true,
                    Err(RecvTimeoutError::Timeout) => open_pipe("stdout", &self.what, status),
                }
            }
        }
        let stderr = match self.stderr.recv_timeout(pipes_deadline.saturating_duration_since(Instant::now())) {
            Ok(bytes) => bytes,
            Err(_) => open_pipe("stderr", &self.what, status),
        };
        let stdout = match &self.stdout_file {
            Some(path) => fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display())),
            None => std::mem::take(&mut self.stdout_buf),
        };
        Outcome { status, stdout, stderr }
    }
}

impl Drop for Running {
    /// A test that fails half-way must not leave its processes behind.
    fn drop(&mut self) {
        if !self.finished {
            self.kill_group();
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// Processes (not zombies) whose process group is `pgid`, as "PID (COMM)".
pub fn live_processes_in_group(pgid: i32) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid pgrp ...": comm may contain anything.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let mut fields = stat[close + 1..].split_whitespace();
        let state = fields.next();
        let _ppid = fields.next();
        let pgrp = fields.next().and_then(|s| s.parse::<i32>().ok());
        if pgrp == Some(pgid) && state != Some("Z") && state != Some("X") {
            found.push(format!("{pid} ({})", &stat[open + 1..close]));
        }
    }
    found
}

/// Runs `cmd` to completion (see [`spawn`] and [`Running::finish`]).
pub fn run(cmd: Command, what: &str, stdin: &Input, stdout_file: Option<&Path>, timeout: Duration) -> Outcome {
    spawn(cmd, what, stdin, stdout_file, timeout).finish()
}

/// Runs a spec natively.
pub fn run_native(spec: &Spec) -> Outcome {
    let file = spec.stdout_file.as_ref().map(|p| with_suffix(p, "native"));
    run(spec.native_command(), &format!("native `{}`", spec.describe()), &spec.stdin, file.as_deref(), spec.timeout)
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(".");
    s.push(suffix);
    PathBuf::from(s)
}

// ---------------------------------------------------------------------------
// An isolated daemon home

static HOME_COUNTER: AtomicU32 = AtomicU32::new(0);

/// A private `WARP_HOME`: its own socket, store, log and embedded daemon.
/// On drop the daemon is stopped and the directory removed (kept, and its
/// path printed, when the test failed or `WARP_TEST_KEEP=1`).
pub struct WarpHome {
    dir: PathBuf,
    env: Vec<(OsString, OsString)>,
}

impl WarpHome {
    /// `tag` names the directory (shortened: the socket path inside must stay
    /// under the 108-byte limit of a unix socket address).
    pub fn new(tag: &str) -> WarpHome {
        let n = HOME_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tag: String = tag.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(16).collect();
        let dir = std::env::temp_dir().join(format!("warp-t{}-{n}-{tag}", std::process::id()));
        if dir.exists() {
            fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("remove stale {}: {e}", dir.display()));
        }
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        WarpHome { dir, env: Vec::new() }
    }

    /// A home in `dir` (made if missing; on a file system of the test's
    /// choosing), removed when dropped as [`WarpHome::new`]'s are.
    pub fn at(dir: &Path) -> WarpHome {
        fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        WarpHome { dir: dir.to_path_buf(), env: Vec::new() }
    }

    /// An environment variable for every warpctl started from this home
    /// (and so for the daemon it starts), e.g. `WARP_KVM_DEVICE`.
    pub fn with_env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> WarpHome {
        self.env.push((key.as_ref().to_os_string(), value.as_ref().to_os_string()));
        self
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// A fresh directory inside this home, for a program to work in.
    pub fn scratch(&self, name: &str) -> PathBuf {
        let dir = self.dir.join("scratch").join(name);
        if dir.exists() {
            fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("remove {}: {e}", dir.display()));
        }
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        dir
    }

    fn set_env(&self, cmd: &mut Command) {
        cmd.env("WARP_HOME", &self.dir);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
    }

    /// Runs `warpctl ARGS...` with this home's environment to its end.
    pub fn ctl(&self, args: &[&str]) -> Outcome {
        let mut cmd = self.warpctl();
        cmd.args(args);
        run(cmd, &format!("`warpctl {}`", args.join(" ")), &Input::Null, None, default_timeout())
    }

    /// `warpctl ARGS...` with this home's environment.
    pub fn warpctl(&self) -> Command {
        let mut cmd = Command::new(warpctl());
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("WARP_") {
                cmd.env_remove(key);
            }
        }
        self.set_env(&mut cmd);
        cmd
    }

    /// `warpctl ARGS` (a shell command line) on a pseudo-terminal of
    /// script(1), with `env` set (a None value unset): its exit status and
    /// what the terminal showed. None where script(1) is not installed.
    pub fn on_terminal(&self, args: &str, env: &[(&str, Option<&str>)]) -> Option<(ExitStatus, String)> {
        if !Path::new("/usr/bin/script").exists() {
            return None;
        }
        let cmd = self.warpctl();
        let warpctl = cmd.get_program().to_string_lossy().into_owned();
        let mut script = Command::new("/usr/bin/script");
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => script.env(k, v),
                None => script.env_remove(k),
            };
        }
        script.env("TERM", "xterm").args(["-qec", &format!("{warpctl} {args}"), "/dev/null"]);
        for (k, v) in env {
            match v {
                Some(v) => script.env(k, v),
                None => script.env_remove(k),
            };
        }
        let out = script.output().unwrap();
        Some((out.status, String::from_utf8_lossy(&out.stdout).into_owned()))
    }

    /// `warpctl record OPTIONS -- PROGRAM ARGS...` for a spec, not started.
    pub fn record_command(&self, spec: &Spec, options: &[&str]) -> Command {
        let mut cmd = Command::new(warpctl());
        cmd.arg("record").args(options).arg("--").arg(&spec.program).args(&spec.args);
        spec.apply(&mut cmd);
        self.set_env(&mut cmd);
        cmd
    }

    /// Starts `warpctl record OPTIONS -- spec` (for tests that interact).
    pub fn spawn_record(&self, spec: &Spec, options: &[&str]) -> Running {
        let file = spec.stdout_file.as_ref().map(|p| with_suffix(p, "recorded"));
        spawn(
            self.record_command(spec, options),
            &format!(
                "`warpctl record {}-- {}`",
                options.iter().map(|o| format!("{o} ")).collect::<String>(),
                spec.describe()
            ),
            &spec.stdin,
            file.as_deref(),
            spec.timeout,
        )
    }

    /// Runs `warpctl record OPTIONS -- spec` to completion.
    pub fn record(&self, spec: &Spec, options: &[&str]) -> Recorded {
        Recorded::new(self.spawn_record(spec, options).finish())
    }

    /// Runs the spec natively and recorded and asserts the two agree (see
    /// the module documentation); returns the native outcome for the test's
    /// own assertions about what the program should have done.
    ///
    /// Then it replays the recording and asserts that the replay reproduced
    /// it: status 0 and, byte for byte, the recording's stdout and stderr.
    pub fn check(&self, spec: &Spec) -> Outcome {
        let native = run_native(spec);
        let recorded = self.record(spec, &[]);
        self.assert_same(spec, &native, &recorded);
        self.assert_replays(spec, &recorded);
        native
    }

    /// `warpctl replay ID` with this home's environment, run to completion.
    pub fn replay(&self, id: &str, options: &[&str]) -> Recorded {
        let mut cmd = self.warpctl();
        cmd.arg("replay").args(options).arg(id);
        Recorded::new(run(cmd, &format!("`warpctl replay {id}`"), &Input::Null, None, default_timeout()))
    }

    /// Replays `recorded` and asserts that the replay reproduced it.
    pub fn assert_replays(&self, spec: &Spec, recorded: &Recorded) {
        let id = recorded.session_id().expect("a session id");
        let replayed = self.replay(&id, &[]);
        let context = || {
            format!(
                "\nprogram: {}\nsession {id}: replay {}\nwarpctl's lines:\n{}\n{}",
                spec.describe(),
                replayed.outcome.status,
                replayed.warpctl_text(),
                self.daemon_log_tail()
            )
        };
        if replayed.outcome.status != Status::Exited(0) {
            panic!("replay should reproduce the recording (exit 0){}", context());
        }
        if replayed.outcome.stdout != recorded.outcome.stdout {
            panic!(
                "{}{}",
                describe_difference("replayed stdout", &recorded.outcome.stdout, &replayed.outcome.stdout),
                context()
            );
        }
        if replayed.program_stderr != recorded.program_stderr {
            panic!(
                "{}{}",
                describe_difference("replayed stderr", &recorded.program_stderr, &replayed.program_stderr),
                context()
            );
        }
    }

    /// The assertions of [`check`](Self::check), for a recording made some
    /// other way.
    pub fn assert_same(&self, spec: &Spec, native: &Outcome, recorded: &Recorded) {
        let what = spec.describe();
        let context = || {
            format!(
                "\nprogram: {what}\nnative: {}\nrecorded: warpctl {}\nwarpctl's lines:\n{}\n{}",
                native.status,
                recorded.outcome.status,
                recorded.warpctl_text(),
                self.daemon_log_tail()
            )
        };
        match recorded.outcome.status {
            Status::Exited(code) if code == native.status.shell_code() => {}
            other => panic!(
                "warpctl should exit with the program's status {} ({}), but: {other}{}",
                native.status.shell_code(),
                native.status,
                context()
            ),
        }
        if native.stdout != recorded.outcome.stdout {
            panic!("{}{}", describe_difference("stdout", &native.stdout, &recorded.outcome.stdout), context());
        }
        if native.stderr != recorded.program_stderr {
            panic!(
                "{}{}",
                describe_difference("stderr (without warpctl's lines)", &native.stderr, &recorded.program_stderr),
                context()
            );
        }
        if let Err(e) = recorded.session_id() {
            panic!("{e}{}", context());
        }
        // Without -v: the session line, a line for each limit the program
        // met (programs that probe unknown syscalls do), and for a program
        // a signal killed, the line that says which and where.
        let rest: Vec<&String> = recorded.warpctl_lines[1..]
            .iter()
            .filter(|l| !l.contains("which Warpspeed does not support yet"))
            .collect();
        match (native.status, rest.as_slice()) {
            (Status::Signaled(_), [crash]) if crash.starts_with("warpctl: program killed by SIG") => {}
            (Status::Exited(_), []) => {}
            _ => panic!("warpctl printed other lines than its session line (and a crash's) without -v{}", context()),
        }
    }

    /// The last lines of any log file in this home, for failure messages.
    pub fn daemon_log_tail(&self) -> String {
        let mut out = String::new();
        let mut stack = vec![self.dir.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let Ok(ft) = entry.file_type() else { continue };
                if ft.is_dir() && !path.ends_with("scratch") {
                    stack.push(path);
                } else if ft.is_file() && path.file_name().is_some_and(|n| n.to_string_lossy().contains("log")) {
                    let text = fs::read(&path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
                    let lines: Vec<&str> = text.lines().collect();
                    let tail = &lines[lines.len().saturating_sub(30)..];
                    out.push_str(&format!("--- last lines of {}:\n{}\n", path.display(), tail.join("\n")));
                }
            }
        }
        if out.is_empty() {
            out.push_str("(no log file in WARP_HOME)");
        }
        out
    }

    /// Starts `warpd --embedded --config CONFIG` for this home (not through
    /// warpctl, which starts daemons without a configuration) and waits
    /// until its log has the line containing `ready` (the remote listener's
    /// line gives its port; "warpd listening" says the socket is bound).
    /// Its log is `warpd-config.log` in the home.
    pub fn start_daemon_with_config(&self, config: &Path, ready: &str) -> ConfiguredDaemon {
        let log = self.dir.join("warpd-config.log");
        let out = File::create(&log).unwrap();
        let mut cmd = Command::new(product_binary("warpd"));
        cmd.arg("--embedded").arg("--config").arg(config).env("WARP_IDLE_SECS", "0");
        self.set_env(&mut cmd);
        let child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(out).spawn().unwrap();
        let mut daemon = ConfiguredDaemon { child, line: String::new(), log: log.clone() };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = fs::read_to_string(&log).unwrap_or_default();
            if let Some(line) = text.lines().find(|l| l.contains(ready)) {
                daemon.line = line.to_string();
                return daemon;
            }
            if let Ok(Some(status)) = daemon.child.try_wait() {
                panic!("warpd exited {status} while starting:\n{text}");
            }
            assert!(Instant::now() < deadline, "warpd did not log {ready:?} within 20 s:\n{text}");
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// `warpctl daemon stop` for this home, bounded in time.
    pub fn stop_daemon(&self) {
        let ctl = bin_dir().join("warpctl");
        if !ctl.is_file() {
            return;
        }
        let mut cmd = Command::new(ctl);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("WARP_") {
                cmd.env_remove(key);
            }
        }
        self.set_env(&mut cmd);
        cmd.arg("daemon").arg("stop").stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        let Ok(mut child) = cmd.spawn() else { return };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Whether gdb is installed; where it is not, says the test skips it (CI
/// must install it: `.ci/run`).
pub fn gdb_present() -> bool {
    match Command::new("gdb").arg("--version").output() {
        Ok(o) if o.status.success() => true,
        _ => {
            assert!(std::env::var_os("CI").is_none(), "CI must install gdb (.ci/run)");
            eprintln!("skipped: gdb is not installed (apt-get install gdb)");
            false
        }
    }
}

/// A warpd started with a configuration file; killed when dropped.
pub struct ConfiguredDaemon {
    child: Child,
    /// The log line `start_daemon_with_config` waited for.
    pub line: String,
    pub log: PathBuf,
}

impl Drop for ConfiguredDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for WarpHome {
    fn drop(&mut self) {
        self.stop_daemon();
        let keep = std::env::var_os("WARP_TEST_KEEP").is_some_and(|v| v == "1");
        if thread::panicking() || keep {
            eprintln!("warp-tests: kept WARP_HOME {} for inspection", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn split_removes_only_warpctl_lines() {
        let (prog, ctl) = split_stderr(b"warpctl: session abc\nerr 0\nnot warpctl: x\nwarpctl: note\nerr 1\n");
        assert_eq!(prog, b"err 0\nnot warpctl: x\nerr 1\n");
        assert_eq!(ctl, lines(&["warpctl: session abc", "warpctl: note"]));
    }

    #[test]
    fn split_keeps_a_last_line_without_newline() {
        let (prog, ctl) = split_stderr(b"warpctl: session a\nlast line");
        assert_eq!(prog, b"last line");
        assert_eq!(ctl, lines(&["warpctl: session a"]));
        let (prog, ctl) = split_stderr(b"x\nwarpctl: killed");
        assert_eq!(prog, b"x\n");
        assert_eq!(ctl, lines(&["warpctl: killed"]));
    }

    #[test]
    fn split_needs_the_exact_prefix_at_line_start() {
        let input: &[u8] = b"warpctl:session x\nWarpctl: y\n warpctl: z\nwarpctl:\n";
        let (prog, ctl) = split_stderr(input);
        assert_eq!(prog, input);
        assert!(ctl.is_empty());
    }

    #[test]
    fn split_of_nothing_is_nothing() {
        let (prog, ctl) = split_stderr(b"");
        assert!(prog.is_empty() && ctl.is_empty());
        let (prog, ctl) = split_stderr(b"\n\n");
        assert_eq!(prog, b"\n\n");
        assert!(ctl.is_empty());
    }

    #[test]
    fn split_keeps_binary_program_bytes() {
        let input: &[u8] = b"\xff\x00warpctl: \n\xfe\nwarpctl: session q\n";
        let (prog, ctl) = split_stderr(input);
        assert_eq!(prog, b"\xff\x00warpctl: \n\xfe\n");
        assert_eq!(ctl, lines(&["warpctl: session q"]));
    }

    #[test]
    fn session_ids_are_found_and_checked() {
        assert_eq!(session_ids(&lines(&["warpctl: session 7f3a", "warpctl: other"])).unwrap(), vec!["7f3a"]);
        assert!(session_ids(&lines(&["warpctl: session "])).is_err());
        assert!(session_ids(&lines(&["warpctl: session a b"])).is_err());
        assert!(session_ids(&lines(&["warpctl: sessions 3"])).unwrap().is_empty());
    }

    #[test]
    fn recorded_session_id_needs_exactly_one_line() {
        let rec = |stderr: &[u8]| {
            Recorded::new(Outcome { status: Status::Exited(0), stdout: Vec::new(), stderr: stderr.to_vec() })
        };
        assert_eq!(rec(b"warpctl: session s1\nhello\n").session_id().unwrap(), "s1");
        assert!(rec(b"hello\n").session_id().is_err());
        assert!(rec(b"warpctl: session s1\nwarpctl: session s2\n").session_id().is_err());
    }

    #[test]
    fn shell_codes() {
        assert_eq!(Status::Exited(42).shell_code(), 42);
        assert_eq!(Status::Signaled(11).shell_code(), 139);
        assert_eq!(Status::Signaled(2).shell_code(), 130);
    }

    #[test]
    fn differences_are_located() {
        let a = vec![b'a'; 10000];
        let mut b = a.clone();
        b[5000] = b'b';
        let d = describe_difference("stdout", &a, &b);
        assert!(d.contains("first difference at byte 5000"), "{d}");
        let d = describe_difference("stdout", b"x\n", b"y\n");
        assert!(d.contains("native (2 bytes)"), "{d}");
    }

    #[test]
    fn bin_dir_is_the_profile_dir() {
        let dir = bin_dir();
        assert_ne!(dir.file_name(), Some(OsStr::new("deps")));
    }
}
