//! Crash-triggered capture from the command line: `exec` (the launcher),
//! `arm`, `arms`, `disarm`, `crash-hook` and `captures` (the watch).

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use warp_common::paths::Paths;
use warp_proto::warp::{
    ArmCaptureRequest, CaptureRule, ClaimCaptureRequest, DisarmRequest, ListCaptureRulesRequest, WatchCapturesRequest,
};

use crate::connect;
use crate::json;
use crate::view::{rpc, ViewError};

/// How long a crash hook's rule waits for the next crash.
const HOOK_WAITS: Duration = Duration::from_secs(7 * 24 * 3600);

/// The marker files a daemon keeps while a rule waits: this WARP_HOME's,
/// or the system daemon's and this user's.
fn markers() -> Vec<PathBuf> {
    let mut all = Vec::new();
    if std::env::var_os("WARP_HOME").is_none_or(|v| v.is_empty()) {
        all.push(Paths::system().socket_dir.join("armed"));
    }
    if let Ok(paths) = Paths::embedded_for_this_process() {
        all.push(paths.socket_dir.join("armed"));
    }
    all
}

/// Replaces warpctl with the program, as `exec` in a shell; returns only
/// when that fails (the status to exit with).
pub fn exec_native(command: &[OsString]) -> u8 {
    let error = std::process::Command::new(&command[0]).arg0(&command[0]).args(&command[1..]).exec();
    let code = if error.kind() == std::io::ErrorKind::NotFound { 127 } else { 126 };
    say!("cannot run {}: {error}", command[0].to_string_lossy());
    code
}

/// `warpctl exec`, before anything else: with no rule armed on this
/// machine, the program replaces warpctl at once. Returns only when a
/// rule may want the run.
pub fn exec_unless_armed(command: &[OsString]) -> Option<u8> {
    if markers().iter().any(|m| m.exists()) {
        return None;
    }
    Some(exec_native(command))
}

/// `warpctl exec` when a rule may want the run: asks the daemon; records
/// the run it claims, else runs the program natively. A daemon that
/// cannot be asked never stops the program from running.
pub async fn exec(command: Vec<OsString>, exitless: bool) -> u8 {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let Ok(program) = crate::resolve::resolve(&command[0], std::env::var_os("PATH").as_deref(), &cwd) else {
        return exec_native(&command);
    };
    let argv: Vec<String> = command.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    let claimed = async {
        let mut daemon = connect::connect_or_start(false).await.map_err(|e| e.to_string())?;
        let request = ClaimCaptureRequest { program: program.to_string_lossy().into_owned(), argv };
        let reply = daemon.client.claim_capture(request).await.map_err(|s| s.message().to_string())?;
        Ok::<String, String>(reply.into_inner().rule)
    }
    .await;
    let rule = match claimed {
        Ok(rule) if !rule.is_empty() => rule,
        Ok(_) => return exec_native(&command),
        Err(e) => {
            say!("not capturing ({e}): running the program natively");
            return exec_native(&command);
        }
    };
    let args = crate::record::RecordArgs {
        verbose: false,
        slice_ms: 0,
        chaos: false,
        seed: None,
        exitless,
        id_file: None,
        command,
        capture_rule: rule,
    };
    crate::record::run(args).await.unwrap_or_else(|e| {
        say!("{e}");
        e.exit_code()
    })
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// A program as a rule names it: a name as given, a path made absolute.
fn rule_program(program: &str) -> String {
    if !program.contains('/') {
        return program.to_string();
    }
    let path = Path::new(program);
    let absolute = std::fs::canonicalize(path)
        .unwrap_or_else(|_| std::env::current_dir().map(|d| d.join(path)).unwrap_or_else(|_| path.to_path_buf()));
    absolute.to_string_lossy().into_owned()
}

/// `warpctl arm`: prints the rule's id.
pub async fn arm(
    program: String,
    runs: u32,
    keep_all: bool,
    arg_contains: Option<String>,
    duration: String,
) -> Result<u8, ViewError> {
    let until = warp_common::units::parse_duration(&duration).map_err(ViewError::Refused)?;
    let rule = CaptureRule {
        program: rule_program(&program),
        arg_contains: arg_contains.unwrap_or_default(),
        remaining: runs,
        until_ms: until.map_or(0, |d| now_ms() + d.as_millis() as u64),
        crashes_only: !keep_all,
        ..CaptureRule::default()
    };
    let mut daemon = connect::connect_or_start(false).await?;
    let rule = daemon.client.arm_capture(ArmCaptureRequest { rule: Some(rule), unless_armed: false }).await;
    println!("{}", rule.map_err(rpc)?.into_inner().id);
    Ok(0)
}

/// `warpctl crash-hook EXE [PID] [SIGNAL]`.
pub async fn crash_hook(exe: String, pid: Option<String>, signal: Option<String>) -> Result<u8, ViewError> {
    // core_pattern's %E writes the path with '!' for '/'.
    let path = if exe.starts_with('!') { exe.replace('!', "/") } else { rule_program(&exe) };
    if !path.starts_with('/') {
        return Err(ViewError::Refused(format!("{exe:?} is not an executable's path (core_pattern's %E)")));
    }
    let rule = CaptureRule {
        program: path.clone(),
        remaining: 1,
        until_ms: now_ms() + HOOK_WAITS.as_millis() as u64,
        crashes_only: true,
        ..CaptureRule::default()
    };
    let mut daemon = connect::connect_or_start(false).await?;
    let rule = daemon
        .client
        .arm_capture(ArmCaptureRequest { rule: Some(rule), unless_armed: true })
        .await
        .map_err(rpc)?
        .into_inner();
    let crashed = match (pid, signal) {
        (Some(p), Some(s)) => format!(" (pid {p} died of signal {s})"),
        (Some(p), None) => format!(" (pid {p})"),
        _ => String::new(),
    };
    say!("{path} crashed{crashed}: capture rule {} keeps its next crashing run under `warpctl exec`", rule.id);
    Ok(0)
}

/// When a rule ends, in local words.
fn ends(rule: &CaptureRule) -> String {
    if rule.until_ms == 0 {
        return "never".into();
    }
    let left = rule.until_ms.saturating_sub(now_ms()) / 1000;
    // Rounded: a rule for 7 days is "in 7d" a moment after it is armed.
    let round = |unit: u64| (left + unit / 2) / unit;
    match left {
        s if s >= 86400 => format!("in {}d", round(86400)),
        s if s >= 3600 => format!("in {}h", round(3600)),
        s if s >= 60 => format!("in {}m", round(60)),
        s => format!("in {s}s"),
    }
}

/// `warpctl arms`.
pub async fn arms(json_out: bool) -> Result<u8, ViewError> {
    let mut daemon = connect::connect_or_start(false).await?;
    let rules = daemon.client.list_capture_rules(ListCaptureRulesRequest {}).await.map_err(rpc)?.into_inner().rules;
    let mut out = String::new();
    if json_out {
        for r in &rules {
            let o = json::Object::new()
                .str("id", &r.id)
                .num("owner_uid", r.owner_uid)
                .str("program", &r.program)
                .str("arg_contains", &r.arg_contains)
                .bool("crashes_only", r.crashes_only)
                .num("remaining", r.remaining)
                .num("captured", r.captured)
                .num("in_flight", r.in_flight)
                .num("created_ms", r.created_ms)
                .num("until_ms", r.until_ms);
            out.push_str(&o.finish());
            out.push('\n');
        }
    } else {
        out.push_str(&format!(
            "{:<8}  {:<9}  {:>4}  {:>8}  {:>9}  {:<9}  PROGRAM\n",
            "RULE", "KEEPS", "LEFT", "CAPTURED", "RECORDING", "ENDS"
        ));
        for r in &rules {
            let keeps = if r.crashes_only { "crashes" } else { "every run" };
            let mut program = r.program.clone();
            if !r.arg_contains.is_empty() {
                program.push_str(&format!(" (an argument containing {:?})", r.arg_contains));
            }
            out.push_str(&format!(
                "{:<8}  {:<9}  {:>4}  {:>8}  {:>9}  {:<9}  {program}\n",
                r.id,
                keeps,
                r.remaining,
                r.captured,
                r.in_flight,
                ends(r)
            ));
        }
    }
    print!("{out}");
    Ok(0)
}

/// `warpctl disarm`: prints the ids removed.
pub async fn disarm(ids: Vec<String>, all: bool) -> Result<u8, ViewError> {
    let mut daemon = connect::connect_or_start(false).await?;
    let removed = daemon.client.disarm(DisarmRequest { ids, all }).await.map_err(rpc)?.into_inner().removed;
    for id in removed {
        println!("{id}");
    }
    Ok(0)
}

/// `warpctl captures`: each capture as it is kept.
pub async fn watch(json_out: bool) -> Result<u8, ViewError> {
    use std::io::Write;
    let mut daemon = connect::connect_or_start(false).await?;
    let mut stream = daemon.client.watch_captures(WatchCapturesRequest {}).await.map_err(rpc)?.into_inner();
    while let Some(c) = stream.message().await.map_err(rpc)? {
        let line = if json_out {
            json::Object::new()
                .str("session", &c.session)
                .str("rule", &c.rule)
                .str("program", &c.program)
                .num("signal", c.signal)
                .str(
                    "signal_name",
                    &if c.signal != 0 { warp_common::signals::name_or_number(c.signal) } else { String::new() },
                )
                .num("exit_code", c.exit_code)
                .num("end_ms", c.end_ms)
                .num("owner_uid", c.owner_uid)
                .finish()
        } else {
            let how = if c.signal != 0 {
                format!("killed by {}", warp_common::signals::name_or_number(c.signal))
            } else {
                format!("exit {}", c.exit_code)
            };
            format!("{}  rule {}  {how}  {}", c.session, c.rule, c.program)
        };
        let mut out = std::io::stdout().lock();
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            return Ok(0);
        }
    }
    Ok(0)
}
