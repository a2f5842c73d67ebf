//! Durations and sizes as people write them on command lines and in
//! configuration files: `90s`, `30m`, `12h`, `7d`; `512K`, `20G`.

use std::time::Duration;

/// `90s`, `30m`, `12h`, `7d` or plain seconds; `0` is `None` (no limit).
pub fn parse_duration(text: &str) -> Result<Option<Duration>, String> {
    let bad = || format!("{text:?} is not a duration (e.g. 90s, 30m, 12h, 7d; 0 for none)");
    let (number, unit) = match text.char_indices().last() {
        Some((at, c)) if c.is_ascii_alphabetic() => (&text[..at], c),
        _ => (text, 's'),
    };
    let n: u64 = number.parse().map_err(|_| bad())?;
    let secs = match unit {
        's' => Some(n),
        'm' => n.checked_mul(60),
        'h' => n.checked_mul(3600),
        'd' => n.checked_mul(86400),
        _ => None,
    }
    .ok_or_else(bad)?;
    Ok((secs > 0).then(|| Duration::from_secs(secs)))
}

/// Bytes, with an optional binary suffix: `4096`, `512K`, `20M`, `10G`,
/// `1T`; `0` is `None` (no limit).
pub fn parse_size(text: &str) -> Result<Option<u64>, String> {
    let bad = || format!("{text:?} is not a size (e.g. 500M, 20G, 1T; 0 for none)");
    let (number, shift) = match text.char_indices().last() {
        Some((at, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(bad()),
            };
            (&text[..at], shift)
        }
        _ => (text, 0),
    };
    let n: u64 = number.parse().map_err(|_| bad())?;
    let bytes = n.checked_mul(1 << shift).ok_or_else(bad)?;
    Ok((bytes > 0).then_some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s").unwrap(), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m").unwrap(), Some(Duration::from_secs(1800)));
        assert_eq!(parse_duration("7d").unwrap(), Some(Duration::from_secs(7 * 86400)));
        assert_eq!(parse_duration("45").unwrap(), Some(Duration::from_secs(45)));
        assert_eq!(parse_duration("0").unwrap(), None);
        for bad in ["", "h", "1w", "-1s", "1.5h", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096").unwrap(), Some(4096));
        assert_eq!(parse_size("512K").unwrap(), Some(512 << 10));
        assert_eq!(parse_size("20m").unwrap(), Some(20 << 20));
        assert_eq!(parse_size("10G").unwrap(), Some(10 << 30));
        assert_eq!(parse_size("0").unwrap(), None);
        for bad in ["", "G", "1X", "1.5G", "-1", "99999999999T"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
