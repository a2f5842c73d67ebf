//! warpctl's command line, as clap sees it: the commands, their options
//! and their help. Its own file so that the build script renders the man
//! page from the same definition (`build.rs`).

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub const ENV_HELP: &str = "\
Environment:
  WARP_HOME       keep the daemon's socket, store and log in this directory
                  (and skip the system daemon): isolated daemons for tests
  WARP_DAEMON     the warpd binary to start (default: warpd beside warpctl)
  WARP_BROKER     the warp-broker binary (default: warp-broker beside warpctl)
  WARP_IDLE_SECS  passed to a daemon warpctl starts: idle seconds before it
                  exits (default 300; 0: never)
  WARP_GDB        the gdb `replay --gdb` starts (default: gdb on $PATH)
  WARP_EXITLESS   0, off or no: record and replay without the exitless ring
  WARP_CHECKPOINT_MB  memory reverse execution may keep (default 256)
  WARP_KVM_DEVICE, WARP_LOG, WARP_MAX_CONNECTIONS, WARP_MAX_PROCESSES,
  WARP_MAX_SESSIONS, WARP_IMPORT_MAX_BYTES, WARP_POINT_TIMEOUT_SECS,
  WARP_STORE_RESERVE_MB
                  passed to a daemon warpctl starts (`warpd --help` says
                  what each does); a daemon already running keeps the
                  values it started with, and warpctl says when yours differ

warpctl talks to the system daemon (/run/warpspeed/warpd.sock) when it runs
and WARP_HOME is unset; otherwise to a private daemon that it starts on
demand; with --remote, to that daemon only.

Remote access (--remote HOST:PORT): the daemon's certificate must be valid
for HOST and signed by the CA given; this client presents its own
certificate, which the daemon maps to a user (or an operator). The three
files come from --cert, --key and --ca, else WARP_REMOTE_CERT,
WARP_REMOTE_KEY and WARP_REMOTE_CA, else the keys cert, key and ca of
$XDG_CONFIG_HOME/warpspeed/remote.toml (~/.config/warpspeed/remote.toml;
relative paths are from its directory).

Progress: export, import, pull, gc and a long replay (16384 events or
more, or running past a second) show how far they are on stderr when it
is a terminal, and nothing otherwise.

Exit status:
  record   the program's own (128+N for signal N); 125 when warpctl or
           warpd failed or the command line is wrong; 126 when the program
           cannot be run; 127 when it is not found
  replay   0 reproduced; 1 diverged; 2 unknown session or a trace that
           cannot be replayed; 125 when warpctl or warpd failed or the
           command line is wrong (with --gdb: gdb's own status)
  doctor   0 this machine can record; 1 it cannot (the lines say why)
  others   0 done; 2 refused (unknown session, a wrong command line,
           an unreadable file); 125 when warpctl or warpd failed;
           export -o - 141 when the reader of its output went away";

/// Record programs and replay them exactly.
#[derive(Parser, Debug)]
#[command(name = "warpctl", version, after_help = ENV_HELP)]
pub struct Cli {
    /// Colour `events` lines, the status columns of `ls` and `ps`, and
    /// warpctl's error lines: auto (on a terminal, unless NO_COLOR is set
    /// and not empty, or TERM is dumb), always, never.
    #[arg(long, global = true, value_enum, value_name = "WHEN", default_value_t = ColorWhen::Auto)]
    pub color: ColorWhen,
    /// Talk to the warpd listening at HOST:PORT over TLS (its [remote]
    /// section) instead of a local one. ls, ps, show, events, export,
    /// import, rm and replay (--gdb too: gdb runs here) work remotely;
    /// recording needs the machine the program runs on.
    #[arg(long, value_name = "HOST:PORT")]
    pub remote: Option<String>,
    /// With --remote or pull: this client's certificate chain (PEM).
    #[arg(long, value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// With --remote or pull: this client's private key (PEM).
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// With --remote or pull: the CA that signed the daemon's certificate (PEM).
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
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
        /// Every syscall leaves the VM (the exit path), none takes the
        /// exitless ring (also with WARP_EXITLESS=0): for comparing, or
        /// where the second core its poller spins on is not free.
        #[arg(long)]
        no_exitless: bool,
        /// The program and its arguments (argv[0] is passed as given).
        // A program whose name starts with `-` comes after `--`; before it,
        // such a word is one of warpctl's options (or refused).
        #[arg(value_name = "PROGRAM [ARGS]", required = true, trailing_var_arg = true)]
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
    ///
    /// A recording of several processes replays whole, every process in a
    /// VM of its own, their output in the order it was recorded. `--pid N`
    /// replays process N instead (`warpctl ps` lists them): the processes
    /// it descends from replay silently up to the fork that made it, the
    /// others not at all; the output, the outcome and, with `--gdb` or
    /// `--gdbserver`, the debugger are that process's (gdb starts where it
    /// returns from its fork).
    Replay {
        /// The session (default: `latest`, your newest).
        #[arg(value_name = "ID|latest", default_value = "latest")]
        id: String,
        /// Do not re-emit the program's output.
        #[arg(short, long)]
        quiet: bool,
        /// Replay (or debug) the recording's process with this pid.
        #[arg(long, value_name = "PID")]
        pid: Option<u32>,
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
    /// List a recording's processes: the first one, then those it forked
    /// (and they forked), with pid, parent pid, the session that holds each
    /// one's events (`warpctl events SESSION`), how it ended and the
    /// command it ran last.
    Ps {
        #[arg(value_name = "ID|latest")]
        id: String,
        /// One JSON object per process, one per line.
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
        /// One JSON object per line: seq, last_seq, thread, kind (syscall,
        /// load, signals, fault, interrupt, end) and text; a syscall's also
        /// name, nr, args, ret (null if it never returned), time_us and
        /// duration_us (null where the trace has none), exitless (the ring
        /// served it without leaving the VM) and decoded (args and ret as
        /// the text shows them); a fault's signal, rip and address; the
        /// end's exit_code or signal. The schema: `warpctl schema events`.
        #[arg(long)]
        json: bool,
        /// Keep printing events as they are recorded, until the recording ends.
        #[arg(short, long)]
        follow: bool,
        /// Which syscalls to print, as strace's `-e trace=SET`: names and
        /// classes (%file, %desc, %network, %memory, %signal, %process,
        /// %ipc, %clock), comma-separated, `all`, or `!SET` for all but
        /// those. Other events (signals, faults, the end) are printed still.
        #[arg(short = 'e', value_name = "trace=SET")]
        expr: Vec<String>,
        /// Print a summary instead, as strace -c: each syscall's time,
        /// calls and errors, most called first.
        #[arg(short = 'c', long)]
        summary: bool,
        /// Start each line with the time of day the call was made, as
        /// strace: -t seconds, -tt microseconds, -ttt unix time. Times are
        /// the recording machine's; a call the exitless ring served has the
        /// time warpd collected it; traces recorded before times were kept
        /// have none.
        #[arg(short = 't', action = clap::ArgAction::Count)]
        clock: u8,
        /// End each line with the time the call took (`<0.000012>`), as
        /// strace -T (not for calls the exitless ring served).
        #[arg(short = 'T')]
        durations: bool,
        /// Write to FILE instead of standard output.
        #[arg(short = 'o', long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Show up to N bytes of what each read, pread64, readlink and
        /// getcwd put in its buffer, as a string (strace's -s; default 32).
        /// The bytes are the trace's; what a write sent is not in the trace
        /// (replay computes it again), so a write's buffer is its address.
        #[arg(short = 's', long = "string-limit", value_name = "N")]
        string_limit: Option<u32>,
    },
    /// Write a session as one self-contained trace file (checksummed,
    /// compressed), to replay on another machine with `warpctl import`.
    Export {
        #[arg(value_name = "ID|latest")]
        id: String,
        /// The file to write (`-`: standard output); an existing file is
        /// refused unless --force.
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Store a trace file as a new session of yours; prints its id.
    ///
    /// A damaged, truncated or foreign file is refused (exit status 2) and
    /// nothing is stored. FILE `-` is standard input.
    Import {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Copy a recording from a remote daemon into this machine's store, to
    /// replay here offline; prints its id here.
    ///
    /// SOURCE is the HOST:PORT of a warpd's [remote] listener; the
    /// certificates are found as for --remote. The trace comes in chunks
    /// into $XDG_CACHE_HOME/warpspeed/pull (~/.cache/warpspeed/pull): a
    /// pull cut short goes on from where it stopped when run again. The
    /// whole file is checked against the daemon's BLAKE3 digest, then
    /// imported (every blob checked against its hash).
    #[command(after_help = "Example:\n  warpctl --cert me.pem --key me.key --ca ca.pem pull build1:7443 latest")]
    Pull {
        #[arg(value_name = "HOST:PORT")]
        source: String,
        /// The recording there (an id, a unique prefix of one, or latest).
        #[arg(value_name = "ID")]
        id: String,
    },
    /// Remove sessions and their traces (prints nothing when it worked).
    ///
    /// Each one named is removed; one that cannot be (unknown, still
    /// recording) is said and the others still go: exit status 2 then.
    /// `--all-incomplete` removes every recording of yours that is
    /// incomplete (interrupted by a crash or a kill), printing their ids.
    Rm {
        #[arg(value_name = "ID|latest", required_unless_present = "all_incomplete", num_args = 1..)]
        ids: Vec<String>,
        /// Remove all your incomplete recordings.
        #[arg(long)]
        all_incomplete: bool,
    },
    /// Run PROGRAM: recorded when a capture rule wants this run, else
    /// natively (exec'd in place of warpctl).
    ///
    /// The launcher a service definition uses in place of PROGRAM
    /// (`ExecStart=/usr/local/bin/warpctl exec -- /usr/bin/mydaemon ...`).
    /// With no rule armed on this machine it costs one file check before
    /// the exec. A recorded run prints `warpctl: session ID` and exits with
    /// the program's status; a rule that keeps only crashes drops the
    /// recording of a run that exits normally.
    #[command(after_help = "Example:\n  warpctl arm /usr/bin/mydaemon && warpctl exec -- /usr/bin/mydaemon --serve")]
    Exec {
        // As record's: a program whose name starts with `-` comes after `--`.
        #[arg(required = true, trailing_var_arg = true, value_name = "PROGRAM")]
        command: Vec<OsString>,
    },
    /// Capture the next runs of PROGRAM that `warpctl exec` starts; prints
    /// the rule's id.
    ///
    /// PROGRAM is a path (that executable) or a name (any executable of
    /// that name). By default one run that crashes (a fatal signal, an
    /// abort) is kept, within 7 days; runs that exit normally are recorded
    /// and dropped. Root's rules apply to every user's runs.
    Arm {
        #[arg(value_name = "PROGRAM")]
        program: String,
        /// How many runs to keep.
        #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
        runs: u32,
        /// Keep every run, not only those that crash.
        #[arg(long)]
        keep_all: bool,
        /// Only runs one of whose arguments contains TEXT.
        #[arg(long, value_name = "TEXT")]
        arg_contains: Option<String>,
        /// How long the rule waits: 90s, 30m, 12h, 7d (default 7d; 0: no end).
        #[arg(long = "for", value_name = "DURATION", default_value = "7d")]
        duration: String,
    },
    /// List the capture rules (yours; root: all).
    Arms {
        #[arg(long)]
        json: bool,
    },
    /// Remove capture rules.
    Disarm {
        #[arg(value_name = "RULE", required_unless_present = "all")]
        ids: Vec<String>,
        /// Every rule of yours (root: every rule).
        #[arg(long, conflicts_with = "ids")]
        all: bool,
    },
    /// Arm a capture for a program that just crashed: for a crash
    /// reporter to run.
    ///
    /// EXE is the crashed executable's path, as core_pattern's %E gives it
    /// (`!` for `/`) or as a plain path. Arms one kept crash of it within 7
    /// days, unless such a rule waits already. Standard input (a core dump
    /// piped by the kernel) is not read. Set-up, as root:
    ///   echo '|/usr/local/bin/warpctl crash-hook %E %p %s' > /proc/sys/kernel/core_pattern
    /// (this replaces the machine's crash handler: systemd-coredump and apport
    /// users call it from their own hooks instead).
    CrashHook {
        #[arg(value_name = "EXE")]
        exe: String,
        /// The crashed process's pid and signal (%p %s), for the log.
        #[arg(value_name = "PID")]
        pid: Option<String>,
        #[arg(value_name = "SIGNAL")]
        signal: Option<String>,
    },
    /// Print each capture as it is kept, until interrupted: one line (or
    /// JSON object) per captured run, for a fleet collector.
    Captures {
        #[arg(long)]
        json: bool,
    },
    /// Apply retention and reclaim what no session uses. Only the daemon's
    /// owner (or root).
    ///
    /// Lists the recordings past the retention limits (the daemon's
    /// [retention] section, or --max-size/--max-age), oldest first with
    /// why; --yes removes them. Never one being recorded, never a pinned
    /// one. Then reclaims what no recording uses (blobs without a user,
    /// wrong use counts, what an interrupted `rm` left) and prints it with
    /// the store's size before and after.
    Gc {
        /// Remove the recordings listed (without it: a dry run).
        #[arg(long)]
        yes: bool,
        /// Keep the recordings' data under SIZE (e.g. 20G) for this run.
        #[arg(long, value_name = "SIZE")]
        max_size: Option<String>,
        /// Keep recordings that ended within DURATION (e.g. 30d) for this run.
        #[arg(long, value_name = "DURATION")]
        max_age: Option<String>,
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Keep recordings whatever the retention limits.
    Pin {
        #[arg(value_name = "ID", required = true)]
        ids: Vec<String>,
    },
    /// Let retention remove recordings again.
    Unpin {
        #[arg(value_name = "ID", required = true)]
        ids: Vec<String>,
    },
    /// Show what the hypervisor can and cannot do on this machine.
    ///
    /// Exits 1 when this machine cannot record at all (no usable KVM), with
    /// what to do about it.
    Doctor {
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Print a completion script for a shell.
    ///
    /// bash: `warpctl completions bash >
    /// ~/.local/share/bash-completion/completions/warpctl`; zsh: `warpctl
    /// completions zsh > ~/.zfunc/_warpctl` (with ~/.zfunc in $fpath); fish:
    /// `warpctl completions fish > ~/.config/fish/completions/warpctl.fish`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the JSON Schema of a `--json` output, for scripts that read it.
    ///
    /// `events`: the lines of `warpctl events --json`; `summary`: those of
    /// `warpctl events -c --json`; `session`: those of `warpctl ls --json`
    /// and `warpctl ps --json`.
    Schema {
        #[arg(value_enum)]
        output: SchemaOf,
    },
    /// Print the man page (roff), made from this help when warpctl was built.
    ///
    /// Install it: `warpctl man > ~/.local/share/man/man1/warpctl.1` (root:
    /// /usr/local/share/man/man1/warpctl.1), then `man warpctl`. With a
    /// command, that command's page (`warpctl man replay`).
    Man {
        /// A command of warpctl's (record, replay, ...).
        #[arg(value_name = "COMMAND")]
        command: Option<String>,
    },
    /// Control the private daemon that serves this user (or this WARP_HOME).
    Daemon {
        #[command(subcommand)]
        action: DaemonAction,
    },
}

#[derive(Subcommand, Debug)]
pub enum DaemonAction {
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

/// The `--json` outputs whose schema `warpctl schema` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SchemaOf {
    Events,
    Summary,
    Session,
}

impl SchemaOf {
    /// The schema's text (the files in warpctl/schema/).
    pub fn text(self) -> &'static str {
        match self {
            SchemaOf::Events => include_str!("../schema/events.schema.json"),
            SchemaOf::Summary => include_str!("../schema/summary.schema.json"),
            SchemaOf::Session => include_str!("../schema/session.schema.json"),
        }
    }
}

/// When to colour (`--color`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorWhen {
    /// On a terminal, unless NO_COLOR is set or TERM is dumb.
    #[default]
    Auto,
    Always,
    Never,
}
