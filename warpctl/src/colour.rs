//! Colour on a terminal: `--color auto|always|never`, NO_COLOR honoured
//! (no-color.org: set and not empty means none) for `auto`, which also
//! wants the output to be a terminal and TERM not `dumb`. Styles are
//! anstyle's; nothing is written when colour is off.

use std::io::IsTerminal;

use anstyle::{AnsiColor, Style};
use warp_proto::warp::EventLine;

pub use crate::cli::ColorWhen as When;

/// The command line's `--color`, for the output made far from it (ls's
/// columns, warpctl's error lines); never until set.
static CHOSEN: std::sync::OnceLock<When> = std::sync::OnceLock::new();

pub fn choose(when: When) {
    let _ = CHOSEN.set(when);
}

fn chosen() -> When {
    CHOSEN.get().copied().unwrap_or(When::Never)
}

/// Paints text, or leaves it as it is when colour is off.
#[derive(Clone, Copy, Debug)]
pub struct Paint {
    on: bool,
}

impl Paint {
    /// Whether `when` colours an output that `is_terminal` or not.
    pub fn new(when: When, is_terminal: bool) -> Paint {
        let on = match when {
            When::Always => true,
            When::Never => false,
            When::Auto => {
                is_terminal
                    && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                    && std::env::var_os("TERM").is_none_or(|t| t != "dumb")
            }
        };
        Paint { on }
    }

    /// For standard output.
    pub fn stdout(when: When) -> Paint {
        Paint::new(when, std::io::stdout().is_terminal())
    }

    /// For standard output, as the command line chose.
    pub fn chosen_stdout() -> Paint {
        Paint::stdout(chosen())
    }

    /// For standard error (warpctl's own lines), as the command line chose.
    pub fn chosen_stderr() -> Paint {
        Paint::new(chosen(), std::io::stderr().is_terminal())
    }

    /// A session's status padded to `width`, then painted: complete
    /// green, incomplete red, recording bold.
    pub fn status(&self, status: &str, width: usize) -> String {
        let padded = format!("{status:<width$}");
        let style = match status {
            "complete" => Style::new().fg_color(Some(AnsiColor::Green.into())),
            "incomplete" => Style::new().fg_color(Some(AnsiColor::Red.into())),
            "recording" => Style::new().bold(),
            _ => return padded,
        };
        // The padding stays outside the colour.
        format!("{}{}", self.wrap(style, status), &padded[status.len()..])
    }

    /// How a session ended, padded: a killing signal red.
    pub fn ended(&self, ended: &str, signalled: bool, width: usize) -> String {
        let padded = format!("{ended:<width$}");
        if !signalled {
            return padded;
        }
        format!("{}{}", self.wrap(Style::new().fg_color(Some(AnsiColor::Red.into())), ended), &padded[ended.len()..])
    }

    /// One of warpctl's error lines (after its `warpctl: ` prefix): red.
    pub fn error(&self, text: &str) -> String {
        self.wrap(Style::new().fg_color(Some(AnsiColor::Red.into())), text)
    }

    #[cfg(test)]
    fn off() -> Paint {
        Paint { on: false }
    }

    fn wrap(&self, style: Style, text: &str) -> String {
        if self.on && !text.is_empty() {
            format!("{}{text}{}", style.render(), style.render_reset())
        } else {
            text.to_string()
        }
    }

    /// An event's line: the syscall's name bold and a failed result red,
    /// a fault red, signals yellow, the end green for exit 0 and red for
    /// a signal, the rest as it is.
    pub fn event(&self, line: &EventLine) -> String {
        let text = line.text.as_str();
        if !self.on {
            return text.to_string();
        }
        let red = Style::new().fg_color(Some(AnsiColor::Red.into()));
        match line.kind.as_str() {
            "syscall" => {
                let prefix = format!("[{}] ", line.thread);
                let Some(rest) = text.strip_prefix(&prefix).and_then(|t| t.strip_prefix(&line.name)) else {
                    return text.to_string();
                };
                let name = self.wrap(Style::new().bold(), &line.name);
                let failed = line.ret.is_some_and(|r| r < 0) && !line.ret_text.is_empty();
                match rest.strip_suffix(&line.ret_text).filter(|_| failed) {
                    Some(body) => format!("{prefix}{name}{body}{}", self.wrap(red, &line.ret_text)),
                    None => format!("{prefix}{name}{rest}"),
                }
            }
            "fault" => self.wrap(red.bold(), text),
            "signals" => self.wrap(Style::new().fg_color(Some(AnsiColor::Yellow.into())), text),
            "end" if line.signal != 0 => self.wrap(red.bold(), text),
            "end" if line.exit_code == Some(0) => self.wrap(Style::new().fg_color(Some(AnsiColor::Green.into())), text),
            "end" => self.wrap(Style::new().bold(), text),
            _ => text.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(kind: &str, text: &str) -> EventLine {
        EventLine { kind: kind.into(), text: text.into(), thread: 7, ..Default::default() }
    }

    #[test]
    fn off_leaves_every_line_as_it_is() {
        let l = EventLine {
            name: "close".into(),
            ret: Some(-9),
            ret_text: "-1 EBADF".into(),
            ..line("syscall", "[7] close(9) = -1 EBADF")
        };
        assert_eq!(Paint::off().event(&l), l.text);
        assert_eq!(Paint::new(When::Never, true).event(&l), l.text);
        assert_eq!(Paint::new(When::Auto, false).event(&l), l.text, "auto: not a terminal");
    }

    #[test]
    fn a_failed_call_shows_its_name_bold_and_its_result_red() {
        let on = Paint::new(When::Always, false);
        let l = EventLine {
            name: "close".into(),
            ret: Some(-9),
            ret_text: "-1 EBADF".into(),
            ..line("syscall", "[7] close(9) = -1 EBADF")
        };
        assert_eq!(on.event(&l), "[7] \x1b[1mclose\x1b[0m(9) = \x1b[31m-1 EBADF\x1b[0m");
        let ok = EventLine { ret: Some(0), ret_text: "0".into(), ..line("syscall", "[7] close(9) = 0") };
        let ok = EventLine { name: "close".into(), ..ok };
        assert_eq!(on.event(&ok), "[7] \x1b[1mclose\x1b[0m(9) = 0");
        assert_eq!(on.event(&line("load", "[7] -- read")), "[7] -- read");
    }

    #[test]
    fn statuses_are_padded_outside_their_colour() {
        let on = Paint::new(When::Always, false);
        assert_eq!(on.status("complete", 10), "\x1b[32mcomplete\x1b[0m  ");
        assert_eq!(on.status("incomplete", 10), "\x1b[31mincomplete\x1b[0m");
        assert_eq!(Paint::off().status("complete", 10), "complete  ");
        assert_eq!(on.ended("SIGSEGV", true, 11), "\x1b[31mSIGSEGV\x1b[0m    ");
        assert_eq!(on.ended("exit 0", false, 11), "exit 0     ");
        assert_eq!(on.error("no"), "\x1b[31mno\x1b[0m");
    }
}
