//! One recording: from an attached broker to the program's end.
//!
//! [`run`] stores the session, starts the broker link and the recorder,
//! has `builder` assemble the guest, steps it to its end (`drive`: each
//! fork's child is recorded on a thread of its own, as a session of its
//! own), and stores how it ended. `doctor` describes the backend.

use std::path::PathBuf;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

use warp_proto::trace::{
    Control, CpuidLeaf, Ending as TraceEnding, Identity as TraceIdentity, SessionMeta, Status, UnknownSyscall,
};
use warp_proto::warp::{Capability, DoctorReply, Failure, SessionEnd};

use crate::builder::{self, GuestSpec};
use crate::hv::{self, HvError};
use crate::kernel::outside::{Ending, OutsideError};
use crate::kernel::process::{Identity, Process, ProcessError};
use crate::link::{BrokerLink, LinkError};
use crate::machine::{Forked, Guest, Stop};
use crate::trace::record::{Live, Recorder};
use crate::trace::ring::RecordRing;
use crate::trace::store::Store;
use crate::trace::FORMAT_VERSION;

/// What the program is and who asked for it.
#[derive(Clone, Debug)]
pub struct SessionSpec {
    pub id: String,
    pub argv: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    /// The executable, resolved on the caller's `$PATH`; read through the broker.
    pub program: String,
    pub owner_uid: u32,
    /// Send notes (unknown syscalls, limitations met) to the caller.
    pub verbose: bool,
    /// How long a thread computes before another ready one gets the vCPU.
    pub slice: std::time::Duration,
    /// Chaos mode's seed.
    pub chaos: Option<u64>,
    /// Calls may take the exitless ring (where the host has a core for its poller).
    pub exitless: bool,
}

/// Daemon-wide settings a session needs.
#[derive(Clone, Debug)]
pub struct Config {
    /// Normally `/dev/kvm`; `WARP_KVM_DEVICE` overrides it (tests use that to
    /// check the message given when the device is missing).
    pub kvm_device: PathBuf,
    /// The most processes a recording may have alive at once
    /// (`WARP_MAX_PROCESSES`, else [`MAX_PROCESSES`]).
    pub max_processes: usize,
    /// The most recordings one user (not root) may have running at once
    /// (`WARP_MAX_SESSIONS`, else [`MAX_SESSIONS_PER_USER`]).
    pub max_sessions_per_user: usize,
    /// The most connections one user (not root) may hold open to warpd
    /// (`WARP_MAX_CONNECTIONS`, else [`MAX_CONNECTIONS_PER_USER`]).
    pub max_connections_per_user: usize,
}

pub const MAX_SESSIONS_PER_USER: usize = 64;
pub const MAX_CONNECTIONS_PER_USER: usize = 256;

/// A count from the environment variable `name` (at least 1), else `default`.
fn count_from_env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse::<usize>().ok()).filter(|&n| n >= 1).unwrap_or(default)
}

impl Default for Config {
    fn default() -> Self {
        let kvm_device =
            std::env::var_os("WARP_KVM_DEVICE").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/dev/kvm"));
        Config {
            kvm_device,
            max_processes: count_from_env("WARP_MAX_PROCESSES", MAX_PROCESSES),
            max_sessions_per_user: count_from_env("WARP_MAX_SESSIONS", MAX_SESSIONS_PER_USER),
            max_connections_per_user: count_from_env("WARP_MAX_CONNECTIONS", MAX_CONNECTIONS_PER_USER),
        }
    }
}

/// How a session went, for the caller and the session list.
#[derive(Clone, Debug)]
pub struct RunResult {
    pub end: SessionEnd,
    pub syscalls: u64,
    pub vm_exits: u64,
}

/// Why a session could not run the program to its end.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("{0}")]
    Hv(#[from] HvError),
    #[error("{0}")]
    Outside(#[from] OutsideError),
    #[error("{1}")]
    Failed(Failure, String),
}

impl From<ProcessError> for SessionError {
    fn from(e: ProcessError) -> Self {
        match e {
            ProcessError::Outside(o) => SessionError::Outside(o),
            ProcessError::Cpu(h) => SessionError::Hv(h),
            e @ ProcessError::Unhandled(_) => SessionError::Failed(Failure::Daemon, e.to_string()),
        }
    }
}

impl From<LinkError> for SessionError {
    fn from(e: LinkError) -> Self {
        SessionError::Outside(OutsideError::Link(e))
    }
}

fn end(failure: Failure, exit_code: i32, signal: i32, message: String) -> SessionEnd {
    SessionEnd { failure: failure as i32, exit_code, signal, message, crash: String::new(), crash_site: None }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// What a session counts while it runs.
#[derive(Default)]
pub(crate) struct Counters {
    pub syscalls: u64,
    pub exits: u64,
    /// See `Process::stderr_mid_line`.
    pub stderr_mid_line: bool,
}

/// Runs the session to its end, recording it into `store`. Blocking: call
/// it on a thread of its own. `notes` receives lines for the user (only
/// sent when `spec.verbose`).
pub fn run(
    spec: SessionSpec,
    link: BrokerLink,
    config: &Config,
    notes: Sender<String>,
    store: Arc<Store>,
) -> RunResult {
    let broker_pid = link.info().pid;
    let mut counters = Counters::default();
    let mut meta = initial_meta(&spec, link.info());
    let result = match store.create_session(&meta) {
        Ok(()) => run_inner(&spec, link, config, &notes, &mut counters, &store, &mut meta),
        Err(e) => Err(SessionError::Failed(Failure::Daemon, format!("cannot store the session: {e}"))),
    };
    let end = conclude(&store, &mut meta, result, &counters, broker_pid);
    if spec.verbose {
        let nl = if counters.stderr_mid_line { "\n" } else { "" };
        let _ = notes.send(format!("{nl}{} syscalls, {} vm exits", counters.syscalls, counters.exits));
    }
    RunResult { end, syscalls: counters.syscalls, vm_exits: counters.exits }
}

/// How a process's recording ended, stored in its metadata (status,
/// ending, counts): the store keeps it before anyone learns of the end.
fn conclude(
    store: &Store,
    meta: &mut SessionMeta,
    result: Result<SessionEnd, SessionError>,
    counters: &Counters,
    broker_pid: u32,
) -> SessionEnd {
    let end = match result {
        Ok(e) => e,
        Err(SessionError::Failed(f, m)) => end(f, 0, 0, m),
        Err(SessionError::Hv(e)) => end(Failure::Daemon, 0, 0, e.to_string()),
        Err(SessionError::Outside(OutsideError::Link(LinkError::Gone))) => {
            end(Failure::Broker, 0, 0, format!("the broker (pid {broker_pid}) died during the recording"))
        }
        Err(SessionError::Outside(OutsideError::Link(e))) => end(Failure::Broker, 0, 0, e.to_string()),
        Err(SessionError::Outside(e)) => end(Failure::Daemon, 0, 0, e.to_string()),
    };
    meta.end_ms = now_ms();
    meta.syscalls = counters.syscalls;
    meta.vm_exits = counters.exits;
    let failed = end.failure != Failure::None as i32;
    meta.status = if failed { Status::Incomplete as i32 } else { Status::Complete as i32 };
    meta.ending = Some(TraceEnding {
        exit_code: end.exit_code,
        signal: end.signal,
        failure: if failed { end.message.clone() } else { String::new() },
        crash: end.crash.clone(),
        crash_site: end.crash_site.clone(),
    });
    if let Err(e) = store.update_session(meta).and_then(|_| store.flush()) {
        tracing::error!(id = %meta.id, "cannot store the end of the session: {e}");
    }
    end
}

fn initial_meta(spec: &SessionSpec, info: &warp_proto::broker::BrokerInfo) -> SessionMeta {
    SessionMeta {
        format_version: FORMAT_VERSION,
        id: spec.id.clone(),
        argv: spec.argv.clone(),
        env: spec.env.clone(),
        cwd: spec.cwd.clone(),
        owner_uid: spec.owner_uid,
        start_ms: now_ms(),
        status: Status::Recording as i32,
        program: spec.program.clone(),
        cpuid: host_cpuid(),
        identity: Some(trace_identity(info)),
        ..Default::default()
    }
}

/// The broker's identity (the program's) as the trace keeps it.
fn trace_identity(info: &warp_proto::broker::BrokerInfo) -> TraceIdentity {
    TraceIdentity {
        pid: info.pid,
        ppid: info.ppid,
        uid: info.uid,
        gid: info.gid,
        euid: info.euid,
        egid: info.egid,
        reserved_fd_base: info.reserved_fd_base,
        fault_page: info.fault_page,
    }
}

pub(crate) fn identity_of(meta: &SessionMeta) -> Identity {
    let i = meta.identity.unwrap_or_default();
    Identity {
        pid: i.pid,
        ppid: i.ppid,
        uid: i.uid,
        gid: i.gid,
        euid: i.euid,
        egid: i.egid,
        reserved_fd_base: i.reserved_fd_base,
        fault_page: i.fault_page,
    }
}

/// Keeps the calling thread (the one that runs the vCPU) on one host CPU
/// while it lives, and gives it its old CPUs back when dropped: on a host
/// whose CPUID cannot be pinned, the guest reads the APIC ids of whatever
/// CPU it runs on, and a program's memory would differ between a
/// recording and its replay on the same host for that alone.
pub(crate) struct CpuPin {
    old: Option<libc::cpu_set_t>,
    cpu: Option<u32>,
}

impl CpuPin {
    /// Pins to `want` when this thread may run there, else to the CPU it
    /// is on now.
    pub(crate) fn new(want: Option<u32>) -> Self {
        // SAFETY: cpu_set_t is plain data; the calls get valid pointers and sizes.
        unsafe {
            let mut old: libc::cpu_set_t = std::mem::zeroed();
            let size = std::mem::size_of::<libc::cpu_set_t>();
            if libc::sched_getaffinity(0, size, &mut old) != 0 {
                return CpuPin { old: None, cpu: None };
            }
            let allowed = |c: u32| (c as usize) < libc::CPU_SETSIZE as usize && libc::CPU_ISSET(c as usize, &old);
            let cpu = match want.filter(|&c| allowed(c)) {
                Some(c) => c,
                None => match u32::try_from(libc::sched_getcpu()) {
                    Ok(c) if allowed(c) => c,
                    _ => return CpuPin { old: None, cpu: None },
                },
            };
            let mut one: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu as usize, &mut one);
            if libc::sched_setaffinity(0, size, &one) != 0 {
                return CpuPin { old: None, cpu: None };
            }
            CpuPin { old: Some(old), cpu: Some(cpu) }
        }
    }

    pub(crate) fn cpu(&self) -> Option<u32> {
        self.cpu
    }
}

impl Drop for CpuPin {
    fn drop(&mut self) {
        if let Some(old) = &self.old {
            // SAFETY: restores the mask read in `new`.
            unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), old) };
        }
    }
}

/// The CPUID leaves of this host, as the program sees them where CPUID
/// cannot be pinned (the architecture's list, in the trace's form).
pub(crate) fn host_cpuid() -> Vec<CpuidLeaf> {
    crate::arch::x86_64::cpu::host_cpuid()
        .into_iter()
        .map(|l| CpuidLeaf { function: l.function, index: l.index, eax: l.eax, ebx: l.ebx, ecx: l.ecx, edx: l.edx })
        .collect()
}

fn run_inner(
    spec: &SessionSpec,
    broker: BrokerLink,
    config: &Config,
    notes: &Sender<String>,
    counters: &mut Counters,
    store: &Arc<Store>,
    meta: &mut SessionMeta,
) -> Result<SessionEnd, SessionError> {
    let hv = hv::open(&config.kvm_device)?;
    let mut parts = builder::parts(hv.as_ref())?;
    meta.backend = parts.caps.backend.clone();
    meta.controls = vec![
        Control { name: "rdtsc".into(), controlled: false },
        Control { name: "cpuid".into(), controlled: false },
        Control { name: "syscalls".into(), controlled: true },
    ];
    let ident = identity_of(meta);
    let ring = record_ring(spec.exitless, &parts.mm);
    let link = broker.start(
        parts.mm.guest.fd(),
        builder::GUEST_MEMORY,
        parts.vcpu.kicker(),
        ring.as_ref().map(RecordRing::for_broker),
    )?;
    let mut rec = Recorder::new(link, store.clone(), &spec.id);
    rec.ring = ring;
    let live = Arc::new(Live {
        count: std::sync::atomic::AtomicUsize::new(1),
        max: config.max_processes,
        capped: Default::default(),
    });
    rec.live = Some(live.clone());
    let tree = Arc::new(Tree {
        live,
        spec: spec.clone(),
        config: config.clone(),
        notes: notes.clone(),
        store: store.clone(),
        template: meta.clone(),
        threads: Mutex::new(Vec::new()),
        limits_said: Mutex::new(Default::default()),
    });
    let mut crash_text = (String::new(), None);
    let crash = &mut crash_text;
    let outcome = (|| {
        let read = builder::read_program(&spec.program, &mut rec, &parts.mm)?;
        meta.exe_hash = blake3::hash(&read.images.exe).as_bytes().to_vec();
        meta.exe_size = read.images.exe.len() as u64;
        let mut random = [0u8; 16];
        // SAFETY: getrandom into a local buffer of the given length.
        unsafe { libc::getrandom(random.as_mut_ptr() as *mut libc::c_void, 16, 0) };
        meta.at_random = random.to_vec();
        store.update_session(meta).map_err(|e| SessionError::Failed(Failure::Daemon, e.to_string()))?;
        let gspec = GuestSpec {
            program: spec.program.clone(),
            argv: spec.argv.clone(),
            env: spec.env.clone(),
            cwd: spec.cwd.clone(),
            ident,
            random,
            chaos: spec.chaos,
            format: FORMAT_VERSION,
        };
        meta.chaos = spec.chaos.is_some();
        meta.chaos_seed = spec.chaos.unwrap_or(0);
        let mut guest = builder::build(&gspec, &read, parts)?;
        guest.preempt_every(spec.slice, spec.chaos)?;
        guest.exitless(rec.ring.is_some());
        if spec.verbose {
            guest.notes_to(notes.clone());
        }
        // Last, so that the helper threads started above keep every CPU.
        let pin = CpuPin::new(None);
        meta.vcpu_cpu = pin.cpu().map_or(0, |c| c + 1);
        if let Some(r) = &rec.ring {
            r.vcpu_cpu(pin.cpu());
        }
        let r = drive(&tree, &mut guest, &mut rec, &spec.id);
        drop(pin);
        tree.say_limits(&mut guest.process);
        if let Ok(Ending::Killed(sig)) = r {
            // A library's symbols: its file read now, outside the trace (the
            // ending keeps the place for a replay elsewhere).
            let mut files = |path: &str| {
                use warp_proto::broker::{request, ReadFile};
                let max_len = crate::trace::symbols::MAX_SYMBOL_FILE;
                let want = ReadFile { path: path.to_string(), max_len, readable: true };
                let reply = rec.link.call(request::Kind::ReadFile(want)).ok()?;
                (reply.ret >= 0).then_some(reply.file)
            };
            *crash = guest.crash_line(sig, &read.images.exe_path, &read.images.exe, &mut files);
        }
        tally(&guest, counters, meta);
        r
    })();
    store_counts(&rec, meta);
    rec.link.finish();
    // The recording ends with its last process.
    tree.join_all();
    if tree.live.capped.load(std::sync::atomic::Ordering::SeqCst) {
        let _ = notes.send(format!(
            "the program had {} processes alive at once, the most a recording may have: a fork beyond them got EAGAIN",
            config.max_processes
        ));
    }
    outcome.map(|ending| ended(ending, crash_text))
}

/// The most processes a recording may have alive at once: each holds a
/// VM (KVM's maps for its memory slot alone are ~16 MiB), a thread and a
/// broker in warpd's care.
pub const MAX_PROCESSES: usize = 128;

/// What every process of a recorded tree shares: the session's settings,
/// where its notes go, the store, the first process's metadata (which a
/// forked process's starts from), the threads recording the others.
pub(crate) struct Tree {
    live: Arc<Live>,
    spec: SessionSpec,
    config: Config,
    notes: Sender<String>,
    store: Arc<Store>,
    template: SessionMeta,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// The limits told the user (once a recording, whichever process met them).
    limits_said: Mutex<std::collections::BTreeSet<String>>,
}

impl Tree {
    /// The limits the process met, once each for the tree, after the
    /// program's own output (sent as they happened, they would land inside
    /// its lines).
    fn say_limits(&self, process: &mut Process) {
        for limit in std::mem::take(&mut process.limits) {
            if !self.limits_said.lock().unwrap_or_else(|e| e.into_inner()).insert(limit.clone()) {
                continue;
            }
            let nl = if std::mem::take(&mut process.stderr_mid_line) { "\n" } else { "" };
            let _ = self.notes.send(format!("{nl}{limit}"));
        }
    }

    /// Waits for every forked process's recording (those they fork too).
    fn join_all(&self) {
        loop {
            let next = self.threads.lock().unwrap_or_else(|e| e.into_inner()).pop();
            match next {
                Some(h) => {
                    let _ = h.join();
                }
                None => return,
            }
        }
    }
}

/// Steps a recorded process to its end; each fork it makes starts the
/// child's recording on a thread of its own (a vfork's parent waits until
/// the child executes a program or ends).
fn drive(tree: &Arc<Tree>, guest: &mut Guest, rec: &mut Recorder, id: &str) -> Result<Ending, SessionError> {
    let mut forks = 0u32;
    loop {
        let stop = guest.step(rec)?;
        if let Some(child) = guest.take_forked() {
            forks += 1;
            let link = rec
                .take_child()
                .ok_or_else(|| SessionError::Failed(Failure::Daemon, "a fork came without its broker".into()))?;
            let gate = child.vfork.clone();
            spawn_child(tree, format!("{id}.{forks}"), id, forks, child, link)?;
            if let Some(g) = gate {
                g.wait();
            }
        }
        match stop {
            Stop::Ended(e) => return Ok(e),
            Stop::Paused => return Err(SessionError::Failed(Failure::Daemon, "the program was stopped".into())),
            _ => {}
        }
    }
}

fn spawn_child(
    tree: &Arc<Tree>,
    id: String,
    parent: &str,
    index: u32,
    forked: Forked,
    link: BrokerLink,
) -> Result<(), SessionError> {
    let (t, parent) = (tree.clone(), parent.to_string());
    let gate = forked.vfork.clone();
    let h = std::thread::Builder::new()
        .name(format!("session-{id}"))
        .spawn(move || {
            record_child(&t, &id, &parent, index, forked, link);
            t.live.count.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            // A child that failed before it could run must not hold its parent.
            if let Some(g) = gate {
                g.open();
            }
        })
        .map_err(|e| {
            SessionError::Failed(Failure::Daemon, format!("cannot start a thread for a forked process: {e}"))
        })?;
    let mut threads = tree.threads.lock().unwrap_or_else(|e| e.into_inner());
    // Those that ended are joined now (a long shell loop must not keep
    // every finished thread's stack until the recording ends).
    let (done, running): (Vec<_>, Vec<_>) = std::mem::take(&mut *threads).into_iter().partition(|t| t.is_finished());
    *threads = running;
    threads.push(h);
    drop(threads);
    for t in done {
        let _ = t.join();
    }
    Ok(())
}

/// Records a forked process to its end, as a session of its own.
fn record_child(tree: &Arc<Tree>, id: &str, parent: &str, index: u32, forked: Forked, link: BrokerLink) {
    let info = *link.info();
    let mut meta = tree.template.clone();
    meta.id = id.to_string();
    meta.parent = parent.to_string();
    meta.root = tree.spec.id.clone();
    meta.fork_index = index;
    meta.argv = forked.process.proc_info.argv.clone();
    meta.program = forked.process.proc_info.exe.clone();
    meta.start_ms = now_ms();
    meta.status = Status::Recording as i32;
    meta.identity = Some(trace_identity(&info));
    let mut counters = Counters::default();
    let result = match tree.store.create_session(&meta) {
        Ok(()) => record_forked(tree, id, forked, link, &mut counters, &mut meta),
        Err(e) => Err(SessionError::Failed(Failure::Daemon, format!("cannot store a forked process's session: {e}"))),
    };
    let end = conclude(&tree.store, &mut meta, result, &counters, info.pid);
    if end.failure != Failure::None as i32 {
        tracing::warn!(id, "a forked process's recording failed: {}", end.message);
    }
}

fn record_forked(
    tree: &Arc<Tree>,
    id: &str,
    forked: Forked,
    link: BrokerLink,
    counters: &mut Counters,
    meta: &mut SessionMeta,
) -> Result<SessionEnd, SessionError> {
    let hv = hv::open(&tree.config.kvm_device)?;
    let mut guest = crate::machine::start_forked(hv.as_ref(), forked)?;
    let kicker = guest.kicker();
    let ring = record_ring(tree.spec.exitless, &guest.process.mm);
    let ring_fds = ring.as_ref().map(RecordRing::for_broker);
    let link = match link.start(guest.process.mm.guest.fd(), builder::GUEST_MEMORY, kicker, ring_fds) {
        Ok(l) => l,
        // Killed before it ran an instruction (a SIGKILL right after the
        // fork): its whole recording is that end.
        Err(LinkError::Io(e)) if matches!(e.raw_os_error(), Some(libc::EPIPE | libc::ECONNRESET)) => {
            let end_event = warp_proto::trace::Event {
                kind: Some(warp_proto::trace::event::Kind::End(warp_proto::trace::ProgramEnd {
                    exit_code: 0,
                    signal: crate::kernel::abi::SIGKILL,
                })),
            };
            let mut w = tree.store.writer(id);
            w.append(&end_event).map_err(|e| SessionError::Failed(Failure::Daemon, e.to_string()))?;
            let (events, bytes) = w.finish().map_err(|e| SessionError::Failed(Failure::Daemon, e.to_string()))?;
            meta.events = events;
            meta.trace_bytes = bytes;
            return Ok(end(Failure::None, 0, crate::kernel::abi::SIGKILL, String::new()));
        }
        Err(e) => return Err(e.into()),
    };
    let mut rec = Recorder::new(link, tree.store.clone(), id);
    rec.sigkill_on_loss = true;
    rec.ring = ring;
    rec.live = Some(tree.live.clone());
    let outcome = (|| {
        guest.preempt_every(tree.spec.slice, tree.spec.chaos)?;
        guest.exitless(rec.ring.is_some());
        if tree.spec.verbose {
            guest.notes_to(tree.notes.clone());
        }
        let pin = CpuPin::new(None);
        meta.vcpu_cpu = pin.cpu().map_or(0, |c| c + 1);
        if let Some(r) = &rec.ring {
            r.vcpu_cpu(pin.cpu());
        }
        let r = drive(tree, &mut guest, &mut rec, id);
        drop(pin);
        tree.say_limits(&mut guest.process);
        tally(&guest, counters, meta);
        // What it ran last (after an execve), for `warpctl ps`.
        meta.argv = guest.process.proc_info.argv.clone();
        meta.program = guest.process.proc_info.exe.clone();
        r
    })();
    store_counts(&rec, meta);
    // Its broker exits as the program did: the parent's wait4 sees that.
    match &outcome {
        Ok(Ending::Exited(code)) => rec.link.finish_as(*code, 0),
        Ok(Ending::Killed(sig)) => rec.link.finish_as(0, *sig),
        Err(_) => rec.link.finish_as(125, 0),
    }
    outcome.map(|ending| ended(ending, (String::new(), None)))
}

/// The exitless ring for a process's recording, when asked for and the
/// host has a CPU for its poller (a failure to make one is logged: the
/// process records without it).
fn record_ring(exitless: bool, mm: &crate::kernel::mm::Mm) -> Option<RecordRing> {
    if !exitless || !crate::trace::ring::host_allows() {
        return None;
    }
    RecordRing::new(&mm.kernel, &mm.guest).map_err(|e| tracing::warn!("no exitless ring for this recording: {e}")).ok()
}

/// A program's end as the session's end (`crash`: the line for a signal,
/// and its place as fields).
fn ended(ending: Ending, crash: (String, Option<warp_proto::trace::CrashSite>)) -> SessionEnd {
    match ending {
        Ending::Exited(code) => end(Failure::None, code, 0, String::new()),
        Ending::Killed(sig) => {
            SessionEnd { crash: crash.0, crash_site: crash.1, ..end(Failure::None, 0, sig, String::new()) }
        }
    }
}

/// What the process counted, into the counters and its metadata.
fn tally(guest: &Guest, counters: &mut Counters, meta: &mut SessionMeta) {
    counters.syscalls = guest.process.syscalls;
    counters.exits = guest.exits();
    counters.stderr_mid_line = guest.process.stderr_mid_line;
    record_unknown(&guest.process, meta);
}

/// What the recorder wrote, into the metadata (also when the program never
/// started: the reading of its executable is recorded).
fn store_counts(rec: &Recorder, meta: &mut SessionMeta) {
    let (events, bytes, logical) = rec.counts();
    meta.events = events;
    meta.trace_bytes = bytes;
    meta.logical_bytes = logical;
}

fn record_unknown(process: &Process, meta: &mut SessionMeta) {
    meta.unknown_syscalls = process
        .unknown
        .iter()
        .map(|(&nr, &count)| UnknownSyscall {
            nr,
            name: crate::kernel::names::name(nr).unwrap_or("").to_string(),
            count,
        })
        .collect();
}

/// What `warpctl doctor` shows: the backend and each capability.
pub fn doctor(config: &Config) -> DoctorReply {
    let cap = |name: &str, available: bool, consequence: &str| Capability {
        name: name.into(),
        available,
        consequence: consequence.into(),
    };
    let hv = match hv::open(&config.kvm_device) {
        Ok(h) => h,
        Err(e) => {
            return DoctorReply {
                backend: "none".into(),
                capabilities: vec![cap("kvm", false, &format!("recording is impossible: {e}"))],
            }
        }
    };
    let c = hv.capabilities();
    let untested = if c.untested_paths { " (this path is untested: our build hosts are PVM)" } else { "" };
    DoctorReply {
        backend: c.backend.clone(),
        capabilities: vec![
            cap("kvm", true, "programs run in a one-vCPU KVM virtual machine"),
            cap("syscall trap", true, &c.syscall_trap),
            cap(
                "sync regs",
                c.registers_with_exit,
                if c.registers_with_exit {
                    "registers come back with each exit, no extra ioctl"
                } else {
                    "two extra ioctls per syscall"
                },
            ),
            cap(
                "rdtsc trapping",
                c.trap_timestamp,
                &if c.trap_timestamp {
                    format!("rdtsc/rdtscp can be trapped and recorded{untested}")
                } else {
                    "rdtsc/rdtscp run natively and are not recorded: a program that reads the TSC directly may diverge on replay".into()
                },
            ),
            cap(
                "cpuid pinning",
                c.pin_cpuid,
                &if c.pin_cpuid {
                    format!("the guest's CPUID can be pinned to a table{untested}")
                } else {
                    "cpuid and rdrand run natively: the program sees this host's CPU; the trace keeps what warpd saw"
                        .into()
                },
            ),
            cap(
                "hardware breakpoints",
                c.hw_breakpoints > 0,
                &if c.hw_breakpoints > 0 {
                    format!("{} hardware breakpoints{untested}", c.hw_breakpoints)
                } else {
                    "none: debugger breakpoints are int3 patches".into()
                },
            ),
            cap(
                "kvm single-step",
                c.single_step,
                if c.single_step {
                    "KVM single-step available (untested here)"
                } else {
                    "broken on PVM: stepping uses the trap flag"
                },
            ),
            cap("dirty page log", c.dirty_log, "checkpoints can track written pages"),
            cap("immediate exit", c.prompt_interrupt, "signals interrupt a running program promptly"),
            {
                let on = crate::trace::ring::host_allows();
                cap(
                    "exitless syscalls",
                    on,
                    if on {
                        "a one-thread program's reads, writes and seeks that need not wait skip the VM exit: a poller on a second CPU serves them (--no-exitless, WARP_EXITLESS=0 turn it off)"
                    } else {
                        "off: warpd may use one CPU only, and the ring's poller needs a second; every syscall leaves the VM"
                    },
                )
            },
        ],
    }
}
