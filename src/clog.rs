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

/// The debug plugin's hex dump of a message (CoreDNS `debug.Hexdumpf`): `msg`, then
/// lines `debug: OFFSET xx xx …` of 16 octets and a last `debug: LENGTH`, six hex
/// digits each, in one `[DEBUG]` entry. Nothing unless `[DEBUG]` output is on, or
/// for an empty message.
pub fn hexdump(plugin: &str, msg: &str, data: &[u8]) {
    if !debug_enabled() || data.is_empty() {
        return;
    }
    log(Level::Debug, Some(plugin), &hexdump_text(msg, data));
}

fn hexdump_text(msg: &str, data: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(msg.len() + data.len() * 4 + 32);
    out.push_str(msg);
    for (i, b) in data.iter().enumerate() {
        if i % 16 == 0 {
            let _ = write!(out, "\ndebug: {i:06x}");
        }
        let _ = write!(out, " {b:02x}");
    }
    let _ = write!(out, "\ndebug: {:06x}", data.len());
    out
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

#[cfg(test)]
mod tests {
    use super::hexdump_text;

    #[test]
    fn hexdump_lines_as_coredns_writes_them() {
        // 42 octets: two full lines, a line of 10, the length line (six hex digits).
        let data: Vec<u8> = (0u8..42).collect();
        let want = "Wrong reply for id: 7, a. 1\n\
debug: 000000 00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f\n\
debug: 000010 10 11 12 13 14 15 16 17 18 19 1a 1b 1c 1d 1e 1f\n\
debug: 000020 20 21 22 23 24 25 26 27 28 29\n\
debug: 00002a";
        assert_eq!(hexdump_text("Wrong reply for id: 7, a. 1", &data), want);
        assert_eq!(
            hexdump_text("m", &[0xff]),
            "m\ndebug: 000000 ff\ndebug: 000001"
        );
    }
}
