//! The environment variables warpd reads. A daemon reads them when it
//! starts (it inherits warpctl's environment when warpctl starts it) and
//! keeps those values for its life; it reports them in its `Hello`, so that
//! warpctl can say when the caller's differ from the running daemon's.

/// Every `WARP_*` variable warpd reads.
pub const DAEMON_SETTINGS: &[&str] = &[
    "WARP_CHECKPOINT_MB",
    "WARP_IDLE_SECS",
    "WARP_IMPORT_MAX_BYTES",
    "WARP_KVM_DEVICE",
    "WARP_LOG",
    "WARP_MAX_CONNECTIONS",
    "WARP_MAX_PROCESSES",
    "WARP_MAX_SESSIONS",
    "WARP_POINT_TIMEOUT_SECS",
    "WARP_STORE_RESERVE_MB",
];

/// Each of [`DAEMON_SETTINGS`] with its value here, None when unset.
pub fn current() -> Vec<(&'static str, Option<String>)> {
    DAEMON_SETTINGS.iter().map(|&name| (name, std::env::var(name).ok())).collect()
}

/// The variables set (non-empty) here whose value the daemon does not
/// have, with the daemon's value (None: unset there): what `mine` asks for
/// and `theirs` (the variables the daemon had, as its Hello lists them)
/// ignores.
pub fn ignored<'a>(
    mine: &'a [(&'static str, Option<String>)],
    theirs: &'a [(String, String)],
) -> Vec<(&'static str, &'a str, Option<&'a str>)> {
    mine.iter()
        .filter_map(|(name, value)| {
            let value = value.as_deref().filter(|v| !v.is_empty())?;
            let their = theirs.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
            (their != Some(value)).then_some((*name, value, their))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_is_set_here_and_differs_is_ignored() {
        let mine = vec![
            ("WARP_KVM_DEVICE", Some("/dev/other".to_string())),
            ("WARP_LOG", Some("debug".to_string())),
            ("WARP_MAX_SESSIONS", None),
            ("WARP_IDLE_SECS", Some(String::new())),
            ("WARP_MAX_PROCESSES", Some("9".to_string())),
        ];
        // WARP_KVM_DEVICE: not set there.
        let theirs = vec![
            ("WARP_LOG".to_string(), "debug".to_string()),
            ("WARP_MAX_SESSIONS".to_string(), "3".to_string()),
            ("WARP_MAX_PROCESSES".to_string(), "8".to_string()),
        ];
        assert_eq!(
            ignored(&mine, &theirs),
            vec![("WARP_KVM_DEVICE", "/dev/other", None), ("WARP_MAX_PROCESSES", "9", Some("8"))]
        );
    }
}
