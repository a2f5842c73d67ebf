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
mod capture;
mod cli;
mod colour;
mod connect;
mod debug;
mod json;
mod progress;
mod record;
mod remote;
mod replay;
mod resolve;
mod transfer;
mod view;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use cli::{Cli, Command, DaemonAction};

/// The man pages rendered at build time (`build.rs`).
const MAN_PAGE: &str = include_str!(concat!(env!("OUT_DIR"), "/warpctl.1"));
const COMMAND_PAGES: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/man_pages.rs"));

/// `warpctl man [COMMAND]`: the page on stdout.
fn man(command: Option<&str>) -> u8 {
    use std::io::Write;
    let page = match command {
        None => MAN_PAGE,
        Some(c) => match COMMAND_PAGES.iter().find(|(name, _)| *name == c) {
            Some((_, page)) => page,
            None => {
                let names: Vec<&str> = COMMAND_PAGES.iter().map(|(n, _)| *n).collect();
                say!("no command {c:?}; the commands are {}", names.join(", "));
                return 2;
            }
        },
    };
    let mut out = std::io::stdout().lock();
    match out.write_all(page.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => fail(format_args!("cannot write the page: {e}"), 125),
        _ => 0,
    }
}

/// Prints warpctl's message for `error` and gives its exit status.
/// WARP_EXITLESS=0 (or off, no) turns the exitless ring off for record and replay.
fn exitless_from_env() -> bool {
    !matches!(std::env::var("WARP_EXITLESS").as_deref(), Ok("0" | "off" | "no"))
}

/// warpctl's own failure: its line red on a terminal (as --color says).
fn fail(error: impl std::fmt::Display, code: u8) -> u8 {
    let paint = colour::Paint::chosen_stderr();
    for line in error.to_string().lines() {
        say!("{}", paint.error(line));
    }
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
            Err(ExitCode::from(usage_status(std::env::args().skip(1))))
        }
    }
}

/// The exit status of a wrong command line: 125 for record and replay,
/// whose 1 and 2 are the program's or mean "diverged" and "unreadable"; 2
/// for the others.
fn usage_status(args: impl Iterator<Item = String>) -> u8 {
    // The values of warpctl's own options (`--remote HOST:PORT`) come first.
    let mut args = args.into_iter();
    let mut command = None;
    while let Some(a) = args.next() {
        if matches!(a.as_str(), "--remote" | "--cert" | "--key" | "--ca" | "--color") {
            args.next();
        } else if !a.starts_with('-') {
            command = Some(a);
            break;
        }
    }
    match command.as_deref() {
        Some("record" | "replay") => 125,
        _ => 2,
    }
}

fn main() -> ExitCode {
    let cli = match parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    colour::choose(cli.color);
    let credentials = cli.cert.is_some() || cli.key.is_some() || cli.ca.is_some();
    if credentials && cli.remote.is_none() && !matches!(cli.command, Command::Pull { .. }) {
        let code = if matches!(cli.command, Command::Record { .. } | Command::Replay { .. }) { 125 } else { 2 };
        return ExitCode::from(fail("--cert, --key and --ca go with --remote or pull", code));
    }
    if let Some(addr) = &cli.remote {
        let code = if matches!(cli.command, Command::Record { .. } | Command::Replay { .. }) { 125 } else { 2 };
        if let Err(why) = remote::serves(&cli.command) {
            return ExitCode::from(fail(why, code));
        }
        match remote::settings(addr, cli.cert.clone(), cli.key.clone(), cli.ca.clone()) {
            Ok(r) => connect::use_remote(r),
            Err(why) => return ExitCode::from(fail(why, code)),
        }
    }
    // The launcher's one check, before anything else is set up.
    if let Command::Exec { command } = &cli.command {
        if let Some(code) = capture::exec_unless_armed(command) {
            return ExitCode::from(code);
        }
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => return ExitCode::from(fail(format_args!("cannot start the async runtime: {e}"), 125)),
    };
    let code = runtime.block_on(async {
        match cli.command {
            Command::Record { verbose, id_file, slice_ms, chaos, seed, no_exitless, command } => {
                let exitless = !no_exitless && exitless_from_env();
                let slice_ms = slice_ms.unwrap_or(0);
                let capture_rule = String::new();
                let args =
                    record::RecordArgs { verbose, id_file, slice_ms, chaos, seed, exitless, command, capture_rule };
                record::run(args).await.unwrap_or_else(|e| fail(&e, e.exit_code()))
            }
            Command::Replay { id, quiet, pid, gdb: true, gdb_args, .. } => {
                let pid = pid.unwrap_or(0);
                debug::gdb(id, pid, quiet, gdb_args).await.unwrap_or_else(|e| fail(&e, e.exit_code()))
            }
            Command::Replay { id, quiet, pid, gdbserver: Some(addr), .. } => {
                let pid = pid.unwrap_or(0);
                debug::serve(id, pid, quiet, addr).await.unwrap_or_else(|e| fail(&e, e.exit_code()))
            }
            Command::Replay { id, quiet, pid, .. } => {
                replay::run(id, pid.unwrap_or(0), quiet).await.unwrap_or_else(|e| fail(&e, e.exit_code()))
            }
            Command::Ls { json } => view::ls(json).await.unwrap_or_else(|e| fail(&e, e.exit_code())),
            Command::Ps { id, json } => view::ps(id, json).await.unwrap_or_else(|e| fail(&e, e.exit_code())),
            Command::Show { id, json } => view::show(id, json).await.unwrap_or_else(|e| fail(&e, e.exit_code())),
            Command::Events { id, json, follow, expr, summary, output, string_limit, clock, durations } => {
                let opts = view::EventsOptions {
                    json,
                    follow,
                    expr,
                    summary,
                    output,
                    string_limit,
                    clock,
                    durations,
                    colour: cli.color,
                };
                view::events(id, opts).await.unwrap_or_else(|e| fail(&e, e.exit_code()))
            }
            Command::Rm { ids, all_incomplete } => {
                view::rm(ids, all_incomplete).await.unwrap_or_else(|e| fail(&e, e.exit_code()))
            }
            Command::Export { id, output, force } => {
                transfer::export(id, output, force).await.unwrap_or_else(|e| fail(&e, e.exit_code()))
            }
            Command::Exec { command } => capture::exec(command, exitless_from_env()).await,
            Command::Arm { program, runs, keep_all, arg_contains, duration } => {
                capture::arm(program, runs, keep_all, arg_contains, duration)
                    .await
                    .unwrap_or_else(|e| fail(&e, e.exit_code()))
            }
            Command::Arms { json } => capture::arms(json).await.unwrap_or_else(|e| fail(&e, e.exit_code())),
            Command::Disarm { ids, all } => capture::disarm(ids, all).await.unwrap_or_else(|e| fail(&e, e.exit_code())),
            Command::CrashHook { exe, pid, signal } => {
                capture::crash_hook(exe, pid, signal).await.unwrap_or_else(|e| fail(&e, e.exit_code()))
            }
            Command::Captures { json } => capture::watch(json).await.unwrap_or_else(|e| fail(&e, e.exit_code())),
            Command::Import { file } => transfer::import(file).await.unwrap_or_else(|e| fail(&e, e.exit_code())),
            Command::Pull { source, id } => match remote::settings(&source, cli.cert, cli.key, cli.ca) {
                Ok(remote) => transfer::pull(remote, id).await.unwrap_or_else(|e| fail(&e, e.exit_code())),
                Err(why) => fail(why, 2),
            },
            Command::Doctor { json } => admin::doctor(json).await.unwrap_or_else(|e| fail(e, 125)),
            Command::Gc { json, yes, max_size, max_age } => {
                admin::gc(json, yes, max_size, max_age).await.unwrap_or_else(|e| fail(&e, e.exit_code()))
            }
            Command::Pin { ids } => admin::pin(ids, true).await.unwrap_or_else(|e| fail(&e, e.exit_code())),
            Command::Unpin { ids } => admin::pin(ids, false).await.unwrap_or_else(|e| fail(&e, e.exit_code())),
            Command::Completions { shell } => {
                let mut out = std::io::stdout().lock();
                clap_complete::generate(shell, &mut Cli::command(), "warpctl", &mut out);
                0
            }
            Command::Man { command } => man(command.as_deref()),
            Command::Schema { output } => {
                print!("{}", output.text());
                0
            }
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

    fn commands() -> Vec<String> {
        Cli::command().get_subcommands().map(|c| c.get_name().to_string()).collect()
    }

    #[test]
    fn completions_name_every_command_in_each_shell() {
        for shell in [clap_complete::Shell::Bash, clap_complete::Shell::Zsh, clap_complete::Shell::Fish] {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "warpctl", &mut script);
            let script = String::from_utf8(script).unwrap();
            for c in commands() {
                assert!(script.contains(&c), "{shell:?} completions lack {c}");
            }
            assert!(script.contains("gdbserver"), "{shell:?}: options too");
        }
    }

    #[test]
    fn the_man_pages_name_every_command_and_their_options() {
        assert!(MAN_PAGE.starts_with(".ie") || MAN_PAGE.contains(".TH warpctl"), "roff: {}", &MAN_PAGE[..80]);
        for c in commands() {
            // roff writes a name's hyphens as `\-`.
            let roff = c.replace('-', "\\-");
            assert!(MAN_PAGE.contains(&c) || MAN_PAGE.contains(&roff), "warpctl.1 lacks {c}");
            let page = COMMAND_PAGES.iter().find(|(n, _)| *n == c).unwrap_or_else(|| panic!("no page for {c}")).1;
            assert!(
                page.contains(&format!("warpctl\\-{roff}")) || page.contains(&format!("warpctl-{c}")),
                "{c}: {page}"
            );
        }
        let replay = COMMAND_PAGES.iter().find(|(n, _)| *n == "replay").unwrap().1;
        assert!(replay.contains("gdbserver") && replay.contains("GDB_ARGS"), "{replay}");
    }

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn record_takes_everything_after_the_program() {
        let cli = Cli::try_parse_from(["warpctl", "record", "-v", "--", "ls", "-v", "--id-file", "x"]).unwrap();
        let Command::Record { verbose, id_file, command, slice_ms, chaos, seed, no_exitless } = cli.command else {
            panic!()
        };
        assert!(verbose);
        assert!(id_file.is_none());
        assert!(slice_ms.is_none() && !chaos && seed.is_none() && !no_exitless);
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
