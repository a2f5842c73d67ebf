//! Colour on a terminal: `--color auto|always|never`, NO_COLOR honoured
//! (no-color.org: set and not empty means none) for `auto`, which also
//! wants the output to be a terminal and TERM not `dumb`. Styles are
//! anstyle's; nothing is written when colour is off.

use std::io::IsTerminal;

use anstyle::{AnsiColor, Style};
use warp_proto::warp::EventLine;

pub use crate::cli::ColorWhen as When;

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
}
