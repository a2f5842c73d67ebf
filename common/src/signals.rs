//! Linux signal names (x86_64 numbering, signal(7)), for every line that
//! names a signal: warpd's events and crash reports, warpctl's listings.

const NAMES: [&str; 31] = [
    "SIGHUP",
    "SIGINT",
    "SIGQUIT",
    "SIGILL",
    "SIGTRAP",
    "SIGABRT",
    "SIGBUS",
    "SIGFPE",
    "SIGKILL",
    "SIGUSR1",
    "SIGSEGV",
    "SIGUSR2",
    "SIGPIPE",
    "SIGALRM",
    "SIGTERM",
    "SIGSTKFLT",
    "SIGCHLD",
    "SIGCONT",
    "SIGSTOP",
    "SIGTSTP",
    "SIGTTIN",
    "SIGTTOU",
    "SIGURG",
    "SIGXCPU",
    "SIGXFSZ",
    "SIGVTALRM",
    "SIGPROF",
    "SIGWINCH",
    "SIGIO",
    "SIGPWR",
    "SIGSYS",
];

/// The name of signal `n`: `SIGSEGV`, `SIGRTMIN+3` for the real-time ones
/// (the kernel's SIGRTMIN, 32); None outside 1..=64.
pub fn name(n: i32) -> Option<String> {
    match n {
        1..=31 => Some(NAMES[(n - 1) as usize].to_string()),
        32 => Some("SIGRTMIN".into()),
        33..=64 => Some(format!("SIGRTMIN+{}", n - 32)),
        _ => None,
    }
}

/// [`name`], or `signal N` for a number that names none.
pub fn name_or_number(n: i32) -> String {
    name(n).unwrap_or_else(|| format!("signal {n}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_have_their_linux_names() {
        assert_eq!(name(9).as_deref(), Some("SIGKILL"));
        assert_eq!(name(11).as_deref(), Some("SIGSEGV"));
        assert_eq!(name(17).as_deref(), Some("SIGCHLD"));
        assert_eq!(name(31).as_deref(), Some("SIGSYS"));
        assert_eq!(name(32).as_deref(), Some("SIGRTMIN"));
        assert_eq!(name(34).as_deref(), Some("SIGRTMIN+2"));
        assert_eq!(name(64).as_deref(), Some("SIGRTMIN+32"));
        assert_eq!(name(0), None);
        assert_eq!(name(65), None);
        assert_eq!(name_or_number(99), "signal 99");
    }
}
