//! *timeouts*: TCP read/write/idle timeouts and `maxtcpqueries` of the block's
//! listeners (plugins.md A).
//!
//! CoreDNS: `plugin/timeouts/timeouts.go`.

use std::time::Duration;

use corefile::values::{format_go_duration, parse_go_duration_nanos};
use corefile::{Diagnostic, Dispenser};

use crate::config::SetupCtx;

/// Connection timeouts (CoreDNS defaults: read 3 s, write 5 s, idle 10 s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// First-read timeout of a TCP connection.
    pub read: Duration,
    /// Write timeout.
    pub write: Duration,
    /// Idle time allowed between queries.
    pub idle: Duration,
    /// Queries per TCP connection (-1 unlimited).
    pub max_tcp_queries: i64,
}

/// [`crate::config::BlockSettings::timeouts_set`] bits.
pub const READ: u8 = 1;
/// `write`.
pub const WRITE: u8 = 2;
/// `idle`.
pub const IDLE: u8 = 4;
/// `maxtcpqueries`.
pub const MAX_TCP_QUERIES: u8 = 8;

impl Timeouts {
    /// A listener's timeouts from its blocks' settings, in Corefile order: CoreDNS's
    /// `NewServer` takes each field from the last block that sets it (defaults
    /// otherwise).
    pub fn merged<'a>(blocks: impl IntoIterator<Item = &'a crate::config::BlockSettings>) -> Self {
        let mut t = Self::default();
        for b in blocks {
            let (s, v) = (b.timeouts_set, &b.timeouts);
            if s & READ != 0 {
                t.read = v.read;
            }
            if s & WRITE != 0 {
                t.write = v.write;
            }
            if s & IDLE != 0 {
                t.idle = v.idle;
            }
            if s & MAX_TCP_QUERIES != 0 {
                t.max_tcp_queries = v.max_tcp_queries;
            }
        }
        t
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            read: Duration::from_secs(3),
            write: Duration::from_secs(5),
            idle: Duration::from_secs(10),
            max_tcp_queries: -1,
        }
    }
}

/// CoreDNS `durations.NewDurationFromArg`: a Go duration, else the text with `s`
/// appended (a bare number is seconds); signed nanoseconds.
fn duration_from_arg(s: &str) -> Result<i128, String> {
    parse_go_duration_nanos(s)
        .or_else(|_| parse_go_duration_nanos(&format!("{s}s")))
        .map_err(|_| format!("failed to parse duration '{s}'"))
}

/// Go's `Duration.String` of signed nanoseconds.
fn format_signed(n: i128) -> String {
    let d = Duration::from_nanos(u64::try_from(n.unsigned_abs()).unwrap_or(u64::MAX));
    if n < 0 {
        format!("-{}", format_go_duration(d))
    } else {
        format_go_duration(d)
    }
}

/// Setup (CoreDNS `parseTimeouts`).
pub fn setup(d: &mut Dispenser, ctx: &mut SetupCtx<'_>) -> Result<(), Diagnostic> {
    let w = |e: Diagnostic| e.in_plugin("timeouts");
    while d.next() {
        if !d.remaining_args().is_empty() {
            return Err(w(w(d.arg_err())));
        }
        let mut b = 0;
        while d.next_block() {
            let block = d.val().to_owned();
            let args = d.remaining_args();
            if args.len() != 1 {
                return Err(w(d.arg_err()));
            }
            if block == "maxtcpqueries" {
                let n = corefile::values::strconv_atoi(&args[0]).map_err(|e| {
                    w(d.err(format!(
                        "invalid value for maxtcpqueries '{}': {e}",
                        args[0]
                    )))
                })?;
                if n == 0 || n < -1 {
                    return Err(w(d.err(format!(
                        "maxtcpqueries provided '{n}' needs to be -1 (unlimited) or a positive integer"
                    ))));
                }
                ctx.settings.timeouts.max_tcp_queries = n;
                ctx.settings.timeouts_set |= MAX_TCP_QUERIES;
                b += 1;
                continue;
            }
            let n = duration_from_arg(&args[0]).map_err(|e| w(d.err(e)))?;
            let sec = 1_000_000_000i128;
            if n < sec || n > 24 * 3600 * sec {
                return Err(w(d.err(format!(
                    "timeout provided '{}' needs to be between 1 second and 24 hours",
                    format_signed(n)
                ))));
            }
            let t = Duration::from_nanos(u64::try_from(n).unwrap_or(u64::MAX));
            let (slot, bit) = match block.as_str() {
                "read" => (&mut ctx.settings.timeouts.read, READ),
                "write" => (&mut ctx.settings.timeouts.write, WRITE),
                "idle" => (&mut ctx.settings.timeouts.idle, IDLE),
                other => return Err(w(d.err(format!("unknown option: '{other}'")))),
            };
            *slot = t;
            ctx.settings.timeouts_set |= bit;
            b += 1;
        }
        if b == 0 {
            return Err(w(w(d.err("timeouts block with no timeouts specified"))));
        }
    }
    Ok(())
}
