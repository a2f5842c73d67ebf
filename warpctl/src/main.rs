//! warpctl: Warpspeed's command-line interface.
//!
//! Every line warpctl itself writes to stderr starts with `warpctl: `;
//! its own failures exit 125 (126/127 for a program that cannot be run or
//! found), as `env` and `timeout` do. See DESIGN.md, "Command-line contract".

/// Writes one line of warpctl's own to stderr, `warpctl: ` first, in a
/// single write: the program's output shares the stream and must not land
/// inside it.
macro_rules! say {
    ($($t:tt)*) => {
        $crate::say_line("", &format!($($t)*))
    };
}

/// `say!` with `before` (a newline that ends the program's unfinished line)
/// ahead of the prefix.
pub fn say_line(before: &str, text: &str) {
    use std::io::Write;
    let line = format!("{before}warpctl: {text}\n");
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

mod admin;
mod connect;
mod debug;
mod json;
mod record;
mod replay;
mod resolve;
mod transfer;
mod view;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

const ENV_HELP: &str = "\
Environment:
  WARP_HOME       keep the daemon's socket, store and log in this directory
                  (and skip the system daemon): isolated daemons for tests
  WARP_DAEMON     the warpd binary to start (default: warpd beside warpctl)
  WARP_BROKER     the warp-broker binary (default: warp-broker beside warpctl)
  WARP_IDLE_SECS  passed to a daemon warpctl starts: idle seconds before it
                  exits (default 300; 0: never)

warpctl talks to the system daemon (/run/warpspeed/warpd.sock) when it runs
and WARP_HOME is unset; otherwise to a private daemon that it starts on
demand. Exit status: the program's own (128+N for signal N); 125 when
warpctl or warpd failed, 126 when the program cannot be run, 127 when it is
not found.";

/// Record programs and replay them exactly.
#[derive(Parser, Debug)]
#[command(name = "warpctl", version, after_help = ENV_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run PROGRAM and record it.
    ///
    /// PROGRAM is found on $PATH as a shell would; it gets warpctl's
    /// standard input and output, environment, working directory and
    /// inherited descriptors. warpctl prints `warpctl: session ID` on
    /// stderr before the program starts and exits with the program's status.
    #[command(after_help = "Example:\n  warpctl record -- ls -l /tmp")]
    Record {
        /// Print notes while the program runs (unknown syscalls, limits met).
        #[arg(short, long)]
        verbose: bool,
        /// Also write the session id (and a newline) to FILE.
        #[arg(long, value_name = "FILE")]
        id_file: Option<PathBuf>,
        /// How long a thread may compute while others are ready before the
        /// scheduler gives the vCPU to another (default 10).
        #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u32).range(1..=10_000))]
        slice_ms: Option<u32>,
        /// Chaos mode: the scheduler picks a random ready thread and random
        /// slice lengths, so that rare interleavings show up in a few
        /// recordings; the seed is stored in the trace and every recording
        /// replays exactly (`warpctl show` prints the seed).
        #[arg(long)]
        chaos: bool,
        /// The chaos-mode seed (default: a random one).
        #[arg(long, value_name = "N", requires = "chaos")]
        seed: Option<u64>,
        /// The program and its arguments (argv[0] is passed as given).
        #[arg(value_name = "PROGRAM [ARGS]", required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<OsString>,
    },
    /// Replay a session from its trace and check it reproduces the recording.
    ///
    /// Re-emits what the program wrote to its stdout and stderr. Exit
    /// status: 0 when the replay reproduced the recording, 1 when it
    /// diverged (a report follows on stderr), 2 for an unknown session or a
    /// trace that cannot be replayed.
    ///
    /// With `--gdb`, gdb debugs the replay (as `rr replay` does): it starts
    /// stopped at the program's first instruction, with breakpoints,
    /// watchpoints, stepping, the program's threads and reverse execution
    /// (reverse-continue, reverse-step...); GDB_ARGS after `--` go to gdb
    /// (`-batch -x cmds.gdb`, `-ex ...`), and warpctl exits with gdb's
    /// status. `--gdbserver ADDR` serves the GDB remote protocol for one
    /// debugger (gdb's `target remote ADDR`, lldb's `gdb-remote ADDR`, an
    /// IDE) on a loopback HOST:PORT (`:PORT` for 127.0.0.1; port 0 picks
    /// one, printed) or a unix socket path.
    Replay {
        /// The session (default: `latest`, your newest).
        #[arg(value_name = "ID|latest", default_value = "latest")]
        id: String,
        /// Do not re-emit the program's output.
        #[arg(short, long)]
        quiet: bool,
        /// Start gdb on the replay.
        #[arg(long, conflicts_with = "gdbserver")]
        gdb: bool,
        /// Serve the GDB remote protocol on ADDR for a debugger to connect.
        #[arg(long, value_name = "ADDR")]
        gdbserver: Option<String>,
        /// Arguments for gdb (with --gdb).
        #[arg(value_name = "GDB_ARGS", last = true, requires = "gdb")]
        gdb_args: Vec<OsString>,
    },
    /// List your sessions, oldest first (root: everyone's).
    Ls {
        /// One JSON object per session, one per line.
        #[arg(long)]
        json: bool,
    },
    /// Show everything recorded about a session.
    Show {
        #[arg(value_name = "ID|latest")]
        id: String,
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Print a session's events, one line per syscall (strace-like).
    Events {
        #[arg(value_name = "ID|latest")]
        id: String,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// Keep printing events as they are recorded, until the recording ends.
        #[arg(short, long)]
        follow: bool,
    },
    /// Write a session as one self-contained trace file (checksummed,
    /// compressed), to replay on another machine with `warpctl import`.
    Export {
        #[arg(value_name = "ID|latest")]
        id: String,
        /// The file to write.
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
    },
    /// Store a trace file as a new session of yours; prints its id.
    ///
    /// A damaged, truncated or foreign file is refused (exit status 2) and
    /// nothing is stored.
    Import {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Remove a session and its trace (prints nothing when it worked).
    Rm {
        #[arg(value_name = "ID|latest")]
        id: String,
    },
    /// Show what the hypervisor can and cannot do on this machine.
    Doctor {
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Control the private daemon that serves this user (or this WARP_HOME).
    Daemon {
        #[command(subcommand)]
        action: DaemonAction,
    },
}

#[derive(Subcommand, Debug)]
enum DaemonAction {
    /// Stop it once its running sessions end; exit 0 also when none runs.
    Stop {
        /// Say which daemon is being stopped.
        #[arg(short, long)]
        verbose: bool,
    },
    /// Print which daemons answer (the system one too, without WARP_HOME);
    /// exit 1 when none runs.
    Status,
}

/// Prints warpctl's message for `error` and gives its exit status.
fn fail(error: impl std::fmt::Display, code: u8) -> u8 {
    say!("{error}");
    code
}

/// Parses the command line; a usage error is printed with every line
/// prefixed `warpctl: ` (the contract for warpctl's stderr) and exits 2.
fn parse() -> Result<Cli, ExitCode> {
    match Cli::try_parse() {
        Ok(cli) => Ok(cli),
        Err(e) if !e.use_stderr() => {
            // --help, --version: on stdout, as asked.
            let _ = e.print();
            Err(ExitCode::SUCCESS)
        }
        Err(e) => {
            let text = e.render().to_string();
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                say!("{line}");
            }
            Err(ExitCode::from(2))
        }
    }
}

fn main() -> ExitCode {
    let cli = match parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => return ExitCode::from(fail(format_args!("cannot start the async runtime: {e}"), 125)),
    };
    let code = runtime.block_on(async {
        match cli.command {
            Command::Record { verbose, id_file, slice_ms, chaos, seed, command } => {
                let args =
                    record::RecordArgs { verbose, id_file, slice_ms: slice_ms.unwrap_or(0), chaos, seed, command };
                record::run(args).await.unwrap_or_else(|e| fail(&e, e.exit_code()))
            }
            Command::Replay { id, quiet, gdb: true, gdb_args, .. } => {
                debug::gdb(id, quiet, gdb_args).await.unwrap_or_else(|e| fail(&e, e.exit_code()))
            }
            Command::Replay { id, quiet, gdbserver: Some(addr), .. } => {
                debug::serve(id, quiet, addr).await.unwrap_or_else(|e| fail(&e, e.exit_code()))
            }
            Command::Replay { id, quiet, .. } => {
                replay::run(id, quiet).await.unwrap_or_else(|e| fail(&e, e.exit_code()))
            }
            Command::Ls { json } => view::ls(json).await.unwrap_or_else(|e| fail(&e, e.exit_code())),
            Command::Show { id, json } => view::show(id, json).await.unwrap_or_else(|e| fail(&e, e.exit_code())),
            Command::Events { id, json, follow } => {
                view::events(id, json, follow).await.unwrap_or_else(|e| fail(&e, e.exit_code()))
            }
            Command::Rm { id } => view::rm(id).await.unwrap_or_else(|e| fail(&e, e.exit_code())),
            Command::Export { id, output } => {
                transfer::export(id, output).await.unwrap_or_else(|e| fail(&e, e.exit_code()))
            }
            Command::Import { file } => transfer::import(file).await.unwrap_or_else(|e| fail(&e, e.exit_code())),
            Command::Doctor { json } => admin::doctor(json).await.unwrap_or_else(|e| fail(e, 125)),
            Command::Daemon { action: DaemonAction::Stop { verbose } } => {
                admin::daemon_stop(verbose).await.unwrap_or_else(|e| fail(e, 125))
            }
            Command::Daemon { action: DaemonAction::Status } => {
                admin::daemon_status().await.unwrap_or_else(|e| fail(e, 125))
            }
        }
    });
    // Do not wait for the gRPC channel's background tasks.
    runtime.shutdown_background();
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn record_takes_everything_after_the_program() {
        let cli = Cli::try_parse_from(["warpctl", "record", "-v", "--", "ls", "-v", "--id-file", "x"]).unwrap();
        let Command::Record { verbose, id_file, command, slice_ms, chaos, seed } = cli.command else { panic!() };
        assert!(verbose);
        assert!(id_file.is_none());
        assert!(slice_ms.is_none() && !chaos && seed.is_none());
        assert_eq!(command, ["ls", "-v", "--id-file", "x"]);

        let cli = Cli::try_parse_from(["warpctl", "record", "--id-file", "f", "prog", "-x"]).unwrap();
        let Command::Record { id_file, command, .. } = cli.command else { panic!() };
        assert_eq!(id_file.as_deref(), Some(std::path::Path::new("f")));
        assert_eq!(command, ["prog", "-x"]);

        assert!(Cli::try_parse_from(["warpctl", "record"]).is_err());

        let cli = Cli::try_parse_from(["warpctl", "record", "--slice-ms", "3", "prog"]).unwrap();
        let Command::Record { slice_ms, .. } = cli.command else { panic!() };
        assert_eq!(slice_ms, Some(3));
        assert!(Cli::try_parse_from(["warpctl", "record", "--slice-ms", "10001", "prog"]).is_err());
        let cli = Cli::try_parse_from(["warpctl", "record", "--chaos", "--seed", "9", "prog"]).unwrap();
        let Command::Record { chaos, seed, .. } = cli.command else { panic!() };
        assert!(chaos && seed == Some(9));
        // A seed means chaos mode.
        assert!(Cli::try_parse_from(["warpctl", "record", "--seed", "9", "prog"]).is_err());
    }

    #[test]
    fn replay_defaults_to_latest() {
        let cli = Cli::try_parse_from(["warpctl", "replay"]).unwrap();
        let Command::Replay { id, quiet, .. } = cli.command else { panic!() };
        assert_eq!((id.as_str(), quiet), ("latest", false));
        let cli = Cli::try_parse_from(["warpctl", "replay", "abc", "--quiet"]).unwrap();
        let Command::Replay { id, quiet, .. } = cli.command else { panic!() };
        assert_eq!((id.as_str(), quiet), ("abc", true));
        assert!(Cli::try_parse_from(["warpctl", "show"]).is_err());
        assert!(Cli::try_parse_from(["warpctl", "events", "x", "--follow", "--json"]).is_ok());
    }
}
