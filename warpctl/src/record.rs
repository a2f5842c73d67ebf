//! `warpctl record -- PROGRAM [ARGS...]`.
//!
//! ```text
//!  resolve PROGRAM on $PATH (126/127 here, before any daemon is involved)
//!  connect (or start warpd) --CreateSession--> id, token, broker socket
//!  print "warpctl: session ID" (and --id-file)
//!  WaitSession stream opened, then the broker spawned: it inherits our
//!  stdio, cwd, environment and descriptors, and presents the token
//!  notes (-v) ... end --> exit with the program's status
//! ```
//!
//! While the program runs warpctl ignores SIGINT and SIGQUIT (the terminal
//! sends them to the whole foreground process group: the broker receives
//! them too and hands them to the program) and passes SIGTERM and SIGHUP
//! on to the broker.

use std::ffi::OsString;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use nix::sys::signal::{self, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::unistd::Pid;
use tokio::signal::unix::{signal as watch_signal, SignalKind};
use warp_proto::warp::{session_update, CreateSessionRequest, Failure, SessionEnd, WaitSessionRequest};

use crate::connect::{self, ConnectError};
use crate::resolve::{self, ResolveError};

/// After the broker exits without an end from warpd: how long to wait for it.
const END_AFTER_BROKER_EXIT: Duration = Duration::from_secs(5);
/// After the end: how long the broker gets to exit by itself.
const BROKER_EXIT_AFTER_END: Duration = Duration::from_secs(5);
/// After a failure (or warpd's death): the same, but shorter.
const BROKER_EXIT_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// What `record` needs from the command line.
pub struct RecordArgs {
    pub verbose: bool,
    /// The time slice in milliseconds (0: warpd's default).
    pub slice_ms: u32,
    /// Chaos mode, with this seed or a random one.
    pub chaos: bool,
    pub seed: Option<u64>,
    /// Calls may take the exitless ring.
    pub exitless: bool,
    pub id_file: Option<PathBuf>,
    pub command: Vec<OsString>,
    /// The capture rule that claimed this run (`warpctl exec`); empty: none.
    pub capture_rule: String,
}

/// Why a recording could not be made (warpctl's own failures).
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("{0}")]
    Resolve(#[from] ResolveError),
    #[error("{0}")]
    Connect(#[from] ConnectError),
    /// gRPC carries text: a non-UTF-8 argument or variable cannot be sent yet.
    #[error("{0} is not valid UTF-8; warpd cannot record it")]
    NotUtf8(String),
    #[error("cannot read the current directory: {0}")]
    Cwd(io::Error),
    #[error("warpd refused the recording: {0}")]
    Create(String),
    #[error("cannot follow the session: {0}")]
    Wait(String),
    #[error("cannot write the session id to {}: {source}", path.display())]
    IdFile { path: PathBuf, source: io::Error },
    #[error("cannot start the broker ({}): {source}; set WARP_BROKER to the warp-broker binary", path.display())]
    Broker { path: PathBuf, source: io::Error },
    #[error("cannot set up signal handling: {0}")]
    Signals(io::Error),
    /// The gRPC stream broke or ended without the session's end.
    #[error("warpd died during the recording")]
    WarpdDied,
    /// The broker exited and warpd reported no end.
    #[error("the broker exited ({0}) before the recording ended")]
    BrokerDied(String),
}

impl RecordError {
    pub fn exit_code(&self) -> u8 {
        match self {
            RecordError::Resolve(e) => e.exit_code(),
            _ => 125,
        }
    }
}

/// The exit status for a session's end, and the message to print (for
/// failures).
pub fn exit_status(end: &SessionEnd) -> (u8, Option<&str>) {
    let failure = Failure::try_from(end.failure).unwrap_or(Failure::Daemon);
    let message = Some(end.message.as_str()).filter(|m| !m.is_empty());
    match failure {
        Failure::None if end.signal != 0 => ((128 + end.signal) as u8, None),
        Failure::None => (end.exit_code as u8, None),
        Failure::Unsupported | Failure::NotExecutable => (126, message.or(Some("the program cannot be run"))),
        Failure::NotFound => (127, message.or(Some("the program was not found"))),
        Failure::Daemon => (125, message.or(Some("warpd failed"))),
        Failure::Broker => (125, message.or(Some("the broker failed"))),
    }
}

fn utf8(s: OsString, what: impl FnOnce() -> String) -> Result<String, RecordError> {
    s.into_string().map_err(|_| RecordError::NotUtf8(what()))
}

/// The warp-broker binary: `$WARP_BROKER`, or `warp-broker` beside warpctl.
fn broker_binary() -> Result<PathBuf, RecordError> {
    if let Some(path) = std::env::var_os("WARP_BROKER").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    connect::sibling_binary("warp-broker").map_err(|source| RecordError::Broker { path: "warp-broker".into(), source })
}

/// Builds the request: argv as given, the whole environment in order, cwd.
fn request(args: &RecordArgs, program: &Path) -> Result<CreateSessionRequest, RecordError> {
    let argv = args
        .command
        .iter()
        .enumerate()
        .map(|(i, a)| utf8(a.clone(), || format!("argument {i} ({})", a.to_string_lossy())))
        .collect::<Result<Vec<_>, _>>()?;
    let env = std::env::vars_os()
        .map(|(k, v)| {
            let name = k.to_string_lossy().into_owned();
            let mut entry = k;
            entry.push("=");
            entry.push(v);
            utf8(entry, || format!("environment variable {name}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let cwd = std::env::current_dir().map_err(RecordError::Cwd)?;
    let cwd = utf8(cwd.into_os_string(), || "the current directory".into())?;
    let program = utf8(program.as_os_str().to_owned(), || format!("the program path {}", program.display()))?;
    Ok(CreateSessionRequest {
        argv,
        env,
        cwd,
        program,
        verbose: args.verbose,
        slice_us: args.slice_ms * 1000,
        chaos: args.chaos,
        chaos_seed_set: args.seed.is_some(),
        chaos_seed: args.seed.unwrap_or(0),
        no_exitless: !args.exitless,
        capture_rule: args.capture_rule.clone(),
    })
}

/// Ignores `sig` in warpctl; returns what it was, for the broker to restore.
fn ignore(sig: Signal) -> Result<SigAction, RecordError> {
    let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    // SAFETY: installs SIG_IGN, which runs no code of ours.
    unsafe { signal::sigaction(sig, &ignore) }.map_err(|e| RecordError::Signals(e.into()))
}

/// How the loop in [`follow`] ended.
enum Outcome {
    End(Box<SessionEnd>),
    WarpdDied,
    BrokerDied(ExitStatus),
}

/// Runs `record`; returns the exit status.
pub async fn run(args: RecordArgs) -> Result<u8, RecordError> {
    let cwd = std::env::current_dir().map_err(RecordError::Cwd)?;
    let program = resolve::resolve(&args.command[0], std::env::var_os("PATH").as_deref(), &cwd)?;
    let request = request(&args, &program)?;
    let broker = broker_binary()?;

    let mut daemon = connect::connect_or_start(args.verbose).await?;
    let created = match daemon.client.create_session(request.clone()).await {
        Ok(reply) => reply.into_inner(),
        // The daemon was on its way out (idle): reach or start a new one.
        Err(status) if status.code() == tonic::Code::Unavailable => {
            tokio::time::sleep(Duration::from_millis(200)).await;
            daemon = connect::connect_or_start(args.verbose).await?;
            daemon
                .client
                .create_session(request)
                .await
                .map_err(|s| RecordError::Create(s.message().to_owned()))?
                .into_inner()
        }
        Err(status) => return Err(RecordError::Create(status.message().to_owned())),
    };
    let id = created.id;
    if let Some(path) = &args.id_file {
        std::fs::write(path, format!("{id}\n")).map_err(|source| RecordError::IdFile { path: path.clone(), source })?;
    }
    say!("session {id}");

    // Follow first, so nothing the session says is missed.
    let mut updates = daemon
        .client
        .wait_session(WaitSessionRequest { id: id.clone() })
        .await
        .map_err(|s| RecordError::Wait(s.message().to_owned()))?
        .into_inner();

    let mut term = watch_signal(SignalKind::terminate()).map_err(RecordError::Signals)?;
    let mut hup = watch_signal(SignalKind::hangup()).map_err(RecordError::Signals)?;
    let old_int = ignore(Signal::SIGINT)?;
    let old_quit = ignore(Signal::SIGQUIT)?;

    // The session's token goes to the broker through a pipe it inherits,
    // never on its command line (which every user can read in /proc).
    let token_fd = token_pipe(&created.token).map_err(|source| RecordError::Broker { path: broker.clone(), source })?;
    let token_raw = token_fd.as_raw_fd();
    let mut command = tokio::process::Command::new(&broker);
    command.arg("--socket").arg(&created.broker_socket).arg("--token-fd").arg(token_raw.to_string());
    // SAFETY: runs in the child between fork and exec; sigaction and fcntl
    // are async-signal-safe. The program must see SIGINT/SIGQUIT as the
    // caller left them, not as warpctl set them for itself; the token's
    // pipe is kept open across exec (the broker reads and closes it first).
    unsafe {
        command.pre_exec(move || {
            signal::sigaction(Signal::SIGINT, &old_int).map_err(io::Error::from)?;
            signal::sigaction(Signal::SIGQUIT, &old_quit).map_err(io::Error::from)?;
            if libc::fcntl(token_raw, libc::F_SETFD, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let spawned = command.spawn();
    drop(token_fd);
    let mut child = spawned.map_err(|source| RecordError::Broker { path: broker.clone(), source })?;
    let broker_pid = child.id().map(|p| Pid::from_raw(p as i32));

    let mut broker_status: Option<ExitStatus> = None;
    let outcome = loop {
        let broker_grace = async {
            match broker_status {
                Some(_) => tokio::time::sleep(END_AFTER_BROKER_EXIT).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            message = updates.message() => match message {
                Ok(Some(update)) => match update.update {
                    // A leading newline: the program left its stderr mid-line,
                    // and warpctl's own line must start on a fresh one.
                    // (warpd sends notes only with -v, but the lines about
                    // limits met, which are said once each in any case.)
                    Some(session_update::Update::Note(note)) => match note.strip_prefix('\n') {
                        Some(rest) => crate::say_line("\n", rest),
                        None => say!("{note}"),
                    },
                    Some(session_update::Update::End(end)) => break Outcome::End(Box::new(end)),
                    _ => {}
                },
                Ok(None) | Err(_) => break Outcome::WarpdDied,
            },
            status = child.wait(), if broker_status.is_none() => {
                broker_status = Some(status.map_err(RecordError::Signals)?);
            }
            _ = broker_grace => {
                if let Some(status) = broker_status {
                    break Outcome::BrokerDied(status);
                }
            }
            _ = term.recv() => forward(broker_pid, broker_status, Signal::SIGTERM),
            _ = hup.recv() => forward(broker_pid, broker_status, Signal::SIGHUP),
        }
    };

    // Reap the broker: after an end it leaves by itself; give it a moment.
    if broker_status.is_none() {
        // After a clean end warpd has told the broker to finish; after a
        // failure it may never have connected, so do not wait long.
        let grace = match &outcome {
            Outcome::End(end) if end.failure == Failure::None as i32 => BROKER_EXIT_AFTER_END,
            _ => BROKER_EXIT_AFTER_FAILURE,
        };
        if tokio::time::timeout(grace, child.wait()).await.is_err() {
            let _ = child.kill().await;
        }
    }

    match outcome {
        Outcome::End(end) => {
            let (code, message) = exit_status(&end);
            if let Some(message) = message {
                say!("{message}");
            }
            // A signal killed the program: which, and where.
            if end.signal != 0 && !end.crash.is_empty() {
                say!("{}", end.crash);
            }
            Ok(code)
        }
        Outcome::WarpdDied => Err(RecordError::WarpdDied),
        Outcome::BrokerDied(status) => Err(RecordError::BrokerDied(describe(&status))),
    }
}

/// Passes `sig` on to the broker, unless it has already been reaped (its
/// pid may be someone else's by now).
fn forward(pid: Option<Pid>, reaped: Option<ExitStatus>, sig: Signal) {
    if let (Some(pid), None) = (pid, reaped) {
        let _ = signal::kill(pid, sig);
    }
}

/// How a broker's exit status reads in a message.
pub fn describe(status: &ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("status {code}"),
        (None, Some(sig)) => format!("killed by {}", warp_common::signals::name_or_number(sig)),
        _ => status.to_string(),
    }
}

/// A pipe holding `token` (then closed for writing): its read end, for the
/// broker to inherit.
fn token_pipe(token: &str) -> io::Result<std::os::fd::OwnedFd> {
    use std::io::Write;
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)?;
    std::fs::File::from(write).write_all(token.as_bytes())?;
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end(failure: Failure, exit_code: i32, signal: i32, message: &str) -> SessionEnd {
        SessionEnd {
            failure: failure as i32,
            exit_code,
            signal,
            message: message.into(),
            crash: String::new(),
            crash_site: None,
        }
    }

    #[test]
    fn exit_statuses_follow_the_contract() {
        assert_eq!(exit_status(&end(Failure::None, 0, 0, "")), (0, None));
        assert_eq!(exit_status(&end(Failure::None, 3, 0, "")), (3, None));
        assert_eq!(exit_status(&end(Failure::None, 0, 11, "")), (139, None));
        assert_eq!(exit_status(&end(Failure::Unsupported, 0, 0, "not ELF")), (126, Some("not ELF")));
        assert_eq!(exit_status(&end(Failure::NotExecutable, 0, 0, "x")).0, 126);
        assert_eq!(exit_status(&end(Failure::NotFound, 0, 0, "x")).0, 127);
        assert_eq!(exit_status(&end(Failure::Daemon, 0, 0, "kvm")), (125, Some("kvm")));
        assert_eq!(exit_status(&end(Failure::Broker, 0, 0, "")), (125, Some("the broker failed")));
    }
}
