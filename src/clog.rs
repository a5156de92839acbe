//! Process output in CoreDNS's format (cli-and-ops.md §2.4): every line goes to
//! stdout as `[LEVEL] MESSAGE`, plugin messages as `[LEVEL] plugin/NAME: MESSAGE`,
//! no timestamps. `[DEBUG]` lines appear only when some block enables *debug*.
//!
//! A line is written with one `write` call while holding the stdout lock, so lines
//! from different workers never interleave.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static DEBUG: AtomicBool = AtomicBool::new(false);

/// Log levels CoreDNS prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// `[DEBUG]`.
    Debug,
    /// `[INFO]`.
    Info,
    /// `[WARNING]`.
    Warning,
    /// `[ERROR]`.
    Error,
    /// `[FATAL]`.
    Fatal,
}

impl Level {
    fn tag(self) -> &'static str {
        match self {
            Self::Debug => "[DEBUG] ",
            Self::Info => "[INFO] ",
            Self::Warning => "[WARNING] ",
            Self::Error => "[ERROR] ",
            Self::Fatal => "[FATAL] ",
        }
    }
}

/// Turns `[DEBUG]` output on or off (the *debug* plugin).
pub fn set_debug(on: bool) {
    DEBUG.store(on, Ordering::Relaxed);
}

/// Whether `[DEBUG]` output is on.
pub fn debug_enabled() -> bool {
    DEBUG.load(Ordering::Relaxed)
}

/// Writes a raw line (a newline is appended).
pub fn raw(line: &str) {
    let mut out = std::io::stdout().lock();
    let mut buf = Vec::with_capacity(line.len() + 1);
    buf.extend_from_slice(line.as_bytes());
    buf.push(b'\n');
    let _ = out.write_all(&buf);
    let _ = out.flush();
}

/// Writes `[LEVEL] [plugin/NAME: ]msg`.
pub fn log(level: Level, plugin: Option<&str>, msg: &str) {
    if level == Level::Debug && !debug_enabled() {
        return;
    }
    let mut line = String::with_capacity(msg.len() + 32);
    line.push_str(level.tag());
    if let Some(p) = plugin {
        line.push_str("plugin/");
        line.push_str(p);
        line.push_str(": ");
    }
    line.push_str(msg);
    raw(&line);
}

/// `[INFO] msg`.
pub fn info(msg: &str) {
    log(Level::Info, None, msg);
}

/// `[WARNING] msg`.
pub fn warning(msg: &str) {
    log(Level::Warning, None, msg);
}

/// `[ERROR] msg`.
pub fn error(msg: &str) {
    log(Level::Error, None, msg);
}
