//! Progress on long operations (export, import, pull, gc, a long replay):
//! a bar on stderr when stderr is a terminal (indicatif), nothing at all
//! otherwise, so that scripts and logs see only the result.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a bar is redrawn at most, and a spinner turns.
const TICK: Duration = Duration::from_millis(120);

/// A bar, or nothing where stderr is no terminal.
pub struct Progress(Option<ProgressBar>);

impl Progress {
    /// Whether bars are drawn: stderr is a terminal that can redraw a line.
    pub fn wanted() -> bool {
        std::io::stderr().is_terminal() && std::env::var_os("TERM").is_none_or(|t| t != "dumb")
    }

    /// No bar (yet).
    pub fn hidden() -> Self {
        Progress(None)
    }

    /// Whether a bar is drawn.
    pub fn shown(&self) -> bool {
        self.0.is_some()
    }

    fn new(len: Option<u64>, template: &str, what: String) -> Self {
        if !Self::wanted() {
            return Progress(None);
        }
        let style = ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar());
        let bar = ProgressBar::with_draw_target(len, ProgressDrawTarget::stderr_with_hz(8))
            .with_style(style.progress_chars("=> "))
            .with_prefix(what);
        // Drawn at once, so that even a short operation shows what it was.
        bar.tick();
        bar.enable_steady_tick(TICK);
        Progress(Some(bar))
    }

    /// Bytes moved, `what` before them; with the total when it is known.
    pub fn bytes(what: String, total: Option<u64>) -> Self {
        match total {
            Some(t) => Self::new(
                Some(t),
                "warpctl: {prefix} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta} left)",
                what,
            ),
            None => Self::new(None, "warpctl: {prefix} {spinner} {bytes} ({bytes_per_sec})", what),
        }
    }

    /// Steps of a known number (a replay's events).
    pub fn steps(what: String, total: u64, unit: &str) -> Self {
        let template = format!("warpctl: {{prefix}} [{{bar:30}}] {{pos}}/{{len}} {unit} ({{percent}}%, {{eta}} left)");
        Self::new(Some(total), &template, what)
    }

    /// Work of no known size (the daemon's answer awaited): a spinner and
    /// the time it has taken.
    pub fn waiting(what: String) -> Self {
        Self::new(None, "warpctl: {prefix} {spinner} {elapsed}", what)
    }

    /// A counter for another thread (an upload's chunk reader).
    pub fn counter(&self) -> impl Fn(u64) + Send + Sync + 'static {
        let bar = self.0.clone();
        move |n| {
            if let Some(b) = &bar {
                b.inc(n);
            }
        }
    }

    pub fn add(&self, n: u64) {
        if let Some(b) = &self.0 {
            b.inc(n);
        }
    }

    pub fn set(&self, pos: u64, total: u64) {
        if let Some(b) = &self.0 {
            b.set_length(total);
            b.set_position(pos);
        }
    }

    /// Runs `f` (which writes to the terminal) with the bar out of its way.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.0 {
            Some(b) => b.suspend(f),
            None => f(),
        }
    }
}

impl Drop for Progress {
    /// A finished (or abandoned) operation's bar leaves no line behind.
    fn drop(&mut self) {
        if let Some(b) = self.0.take() {
            b.finish_and_clear();
        }
    }
}
