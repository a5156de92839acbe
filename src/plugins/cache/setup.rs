//! `cache` setup: Corefile tokens → [`CacheConfig`], with CoreDNS's error texts
//! (plugins.md C, `cache`).
//!
//! CoreDNS: `plugin/cache/setup.go` (`cacheParse`, `parseServeStaleTTL`,
//! `parseServeStaleRecheck`), `plugin/cache/cache.go` (defaults).

use corefile::keys::{go_atoi, normalize_name};
use corefile::values::{parse_go_duration_nanos, strconv_atoi};
use corefile::{Diagnostic, Dispenser};

use crate::config::{SetupCtx, err_once};

/// Nanoseconds per second.
pub const SEC: i64 = 1_000_000_000;

/// CoreDNS `defaultCap`.
pub const DEFAULT_CAP: i64 = 10_000;
/// `dnsutil.MaximumDefaultTTL` (success max TTL), seconds.
pub const MAX_TTL: i64 = 3600;
/// Denial max TTL (`MaximumDefaultTTL / 2`), seconds.
pub const MAX_NTTL: i64 = 1800;
/// `dnsutil.MinimalDefaultTTL`, seconds.
pub const MIN_TTL: i64 = 5;

/// The parsed `cache` stanza. Durations are Go durations in nanoseconds (they
/// may carry fractions of a second where CoreDNS allows it); TTLs are seconds.
/// Equal configurations of the same server block share their entries across
/// reloads (see `registry`), so everything that shapes the cache is in here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    /// The server block's keys (part of the reload identity).
    pub keys: Vec<String>,
    /// Zones the cache answers for (normalised).
    pub zones: Vec<String>,
    /// Success capacity as configured (Go int).
    pub pcap: i64,
    /// Success max TTL, seconds.
    pub pttl: i64,
    /// Success min TTL, seconds.
    pub minpttl: i64,
    /// Denial capacity as configured.
    pub ncap: i64,
    /// Denial max TTL, seconds.
    pub nttl: i64,
    /// Denial min TTL, seconds.
    pub minnttl: i64,
    /// How long SERVFAIL/NOTIMP replies are cached (ns; 0 disables).
    pub failttl: i64,
    /// `prefetch AMOUNT` (0 = off).
    pub prefetch: i64,
    /// `prefetch` popularity window (ns; Go allows negative).
    pub prefetch_window: i64,
    /// `prefetch` remaining-TTL percentage (10–90).
    pub percentage: i64,
    /// `serve_stale` window (ns; 0 = off).
    pub stale_up_to: i64,
    /// `serve_stale … verify`.
    pub verify_stale: bool,
    /// `verify` timeout (ns; 0 = wait for the upstream).
    pub verify_timeout: i64,
    /// TTL of stale replies (ns, whole seconds; 0 = legacy TTL 0).
    pub stale_ttl: i64,
    /// Delay after a failed stale refresh (ns, ≤ 5m; 0 = none).
    pub stale_recheck: i64,
    /// `serve_stale_policy prefer_positive`.
    pub prefer_positive: bool,
    /// `disable success` zones.
    pub pexcept: Vec<String>,
    /// `disable denial` zones.
    pub nexcept: Vec<String>,
    /// `keepttl`.
    pub keepttl: bool,
}

impl CacheConfig {
    /// CoreDNS `New()` with the block's zones.
    pub fn new(keys: Vec<String>, zones: Vec<String>) -> Self {
        Self {
            keys,
            zones,
            pcap: DEFAULT_CAP,
            pttl: MAX_TTL,
            minpttl: MIN_TTL,
            ncap: DEFAULT_CAP,
            nttl: MAX_NTTL,
            minnttl: MIN_TTL,
            failttl: MIN_TTL * SEC,
            prefetch: 0,
            prefetch_window: 60 * SEC,
            percentage: 10,
            stale_up_to: 0,
            verify_stale: false,
            verify_timeout: 0,
            stale_ttl: 0,
            stale_recheck: 0,
            prefer_positive: false,
            pexcept: Vec::new(),
            nexcept: Vec::new(),
            keepttl: false,
        }
    }

    /// The `zones` metric label: the zones joined with commas.
    pub fn zones_label(&self) -> String {
        self.zones.join(",")
    }
}

/// Go `time.ParseDuration` (nanoseconds, clamped to i64).
fn duration(s: &str) -> Result<i64, String> {
    parse_go_duration_nanos(s).map(|n| n.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64)
}

/// Go's `%q` of a byte (a rune literal), as in the percentage error.
fn go_quote_byte(b: u8) -> String {
    match b {
        b'\'' => "'\\''".into(),
        b'\\' => "'\\\\'".into(),
        0x07 => "'\\a'".into(),
        0x08 => "'\\b'".into(),
        0x0c => "'\\f'".into(),
        b'\n' => "'\\n'".into(),
        b'\r' => "'\\r'".into(),
        b'\t' => "'\\t'".into(),
        0x0b => "'\\v'".into(),
        0x20..=0x7e => format!("'{}'", b as char),
        0x00..=0x7f => format!("'\\x{b:02x}'"),
        0x80..=0xa0 | 0xad => format!("'\\u{b:04x}'"),
        _ => format!("'{}'", char::from(b)),
    }
}

fn parse_stale_ttl(v: &str) -> Result<i64, String> {
    let ttl = duration(v).map_err(|e| format!("invalid serve_stale response TTL: {e}"))?;
    if ttl < 0 {
        return Err("invalid negative response TTL for serve_stale".into());
    }
    if ttl % SEC != 0 {
        return Err("serve_stale response TTL must be a whole number of seconds".into());
    }
    if ttl / SEC > i64::from(u32::MAX) {
        return Err("serve_stale response TTL exceeds the DNS TTL range".into());
    }
    Ok(ttl)
}

fn parse_stale_recheck(v: &str) -> Result<i64, String> {
    let r = duration(v).map_err(|e| format!("invalid serve_stale failure recheck: {e}"))?;
    if r < 0 {
        return Err("invalid negative failure recheck for serve_stale".into());
    }
    if r > 300 * SEC {
        return Err("serve_stale failure recheck cannot exceed 5 minutes".into());
    }
    Ok(r)
}

/// `success|denial CAPACITY [TTL [MINTTL]]` → (cap, ttl, minttl) updates.
fn cap_ttl(args: &[String], cap: &mut i64, ttl: &mut i64, min: &mut i64) -> Result<(), String> {
    *cap = strconv_atoi(&args[0])?;
    if let Some(t) = args.get(1) {
        let t = strconv_atoi(t)?;
        if t <= 0 {
            return Err(format!("cache TTL can not be zero or negative: {t}"));
        }
        *ttl = t;
        if let Some(m) = args.get(2) {
            let m = strconv_atoi(m)?;
            if m < 0 {
                return Err(format!("cache min TTL can not be negative: {m}"));
            }
            *min = m;
        }
    }
    Ok(())
}

/// Parses every `cache` stanza of a block (CoreDNS `cacheParse`).
pub fn setup(d: &mut Dispenser, ctx: &SetupCtx<'_>) -> Result<CacheConfig, Diagnostic> {
    let plain = |m: String| Diagnostic::plain(m).in_plugin("cache");
    let mut c = CacheConfig::new(ctx.keys.to_vec(), ctx.zones.clone());
    let mut seen = false;
    while d.next() {
        if seen {
            return Err(err_once().in_plugin("cache"));
        }
        seen = true;
        let mut args = d.remaining_args();
        if let Some(first) = args.first() {
            // The first argument is the TTL when it is an integer, else a zone.
            if let Some(ttl) = go_atoi(first) {
                if ttl <= 0 {
                    return Err(plain(format!(
                        "cache TTL can not be zero or negative: {ttl}"
                    )));
                }
                c.pttl = ttl;
                c.nttl = ttl;
                args.remove(0);
            }
        }
        c.zones = ctx.origins(&args);
        let mut stale_seen = false;
        let mut policy_seen = false;
        while d.next_block() {
            let opt = d.val().to_owned();
            match opt.as_str() {
                "success" | "denial" => {
                    let args = d.remaining_args();
                    if args.is_empty() {
                        return Err(d.arg_err().in_plugin("cache"));
                    }
                    let r = if opt == "success" {
                        cap_ttl(&args, &mut c.pcap, &mut c.pttl, &mut c.minpttl)
                    } else {
                        cap_ttl(&args, &mut c.ncap, &mut c.nttl, &mut c.minnttl)
                    };
                    r.map_err(plain)?;
                }
                "prefetch" => {
                    let args = d.remaining_args();
                    if args.is_empty() || args.len() > 3 {
                        return Err(d.arg_err().in_plugin("cache"));
                    }
                    let amount = strconv_atoi(&args[0]).map_err(plain)?;
                    if amount < 0 {
                        return Err(plain(format!(
                            "prefetch amount should be positive: {amount}"
                        )));
                    }
                    c.prefetch = amount;
                    if let Some(w) = args.get(1) {
                        c.prefetch_window = duration(w).map_err(plain)?;
                    }
                    if let Some(pct) = args.get(2) {
                        let last = pct.as_bytes().last().copied().unwrap_or(0);
                        if last != b'%' {
                            return Err(plain(format!(
                                "last character of percentage should be `%`, but is: {}",
                                go_quote_byte(last)
                            )));
                        }
                        let num = strconv_atoi(&pct[..pct.len() - 1]).map_err(plain)?;
                        if !(10..=90).contains(&num) {
                            return Err(plain(format!(
                                "percentage should fall in range [10, 90]: {num}"
                            )));
                        }
                        c.percentage = num;
                    }
                }
                "serve_stale" => {
                    stale_seen = true;
                    let args = d.remaining_args();
                    if args.len() > 5 {
                        return Err(d.arg_err().in_plugin("cache"));
                    }
                    c.stale_up_to = 3600 * SEC;
                    c.stale_ttl = 0;
                    c.stale_recheck = 0;
                    if let Some(v) = args.first() {
                        let v = duration(v).map_err(plain)?;
                        if v < 0 {
                            return Err(plain("invalid negative duration for serve_stale".into()));
                        }
                        c.stale_up_to = v;
                    }
                    c.verify_stale = false;
                    c.verify_timeout = 0;
                    if let Some(mode) = args.get(1) {
                        let mode = mode.to_lowercase();
                        if mode != "immediate" && mode != "verify" {
                            return Err(plain(format!(
                                "invalid value for serve_stale refresh mode: {mode}"
                            )));
                        }
                        c.verify_stale = mode == "verify";
                    }
                    if args.len() > 2 {
                        if c.verify_stale {
                            let t = duration(&args[2]).map_err(|e| {
                                plain(format!("invalid serve_stale verify timeout: {e}"))
                            })?;
                            if t < 0 {
                                return Err(plain(
                                    "invalid negative timeout for serve_stale verify".into(),
                                ));
                            }
                            c.verify_timeout = t;
                            if let Some(v) = args.get(3) {
                                c.stale_ttl = parse_stale_ttl(v).map_err(plain)?;
                            }
                            if let Some(v) = args.get(4) {
                                c.stale_recheck = parse_stale_recheck(v).map_err(plain)?;
                            }
                        } else {
                            if args.len() > 4 {
                                return Err(d.arg_err().in_plugin("cache"));
                            }
                            c.stale_ttl = parse_stale_ttl(&args[2]).map_err(plain)?;
                            if let Some(v) = args.get(3) {
                                c.stale_recheck = parse_stale_recheck(v).map_err(plain)?;
                            }
                        }
                    }
                }
                "serve_stale_policy" => {
                    if policy_seen {
                        return Err(plain(
                            "serve_stale_policy can only be specified once".into(),
                        ));
                    }
                    policy_seen = true;
                    let args = d.remaining_args();
                    if args.len() != 1 {
                        return Err(d.arg_err().in_plugin("cache"));
                    }
                    if args[0].to_lowercase() != "prefer_positive" {
                        return Err(plain(format!("invalid serve_stale_policy: {}", args[0])));
                    }
                    c.prefer_positive = true;
                }
                "servfail" => {
                    let args = d.remaining_args();
                    if args.len() != 1 {
                        return Err(d.arg_err().in_plugin("cache"));
                    }
                    let v = duration(&args[0]).map_err(plain)?;
                    if v < 0 {
                        return Err(plain("invalid negative ttl for servfail".into()));
                    }
                    // RFC 2308 §7.1: SERVFAIL must not be cached for over 5 minutes.
                    if v > 300 * SEC {
                        return Err(plain(
                            "caching SERVFAIL responses over 5 minutes is not permitted".into(),
                        ));
                    }
                    c.failttl = v;
                }
                "disable" => {
                    let args = d.remaining_args();
                    if args.is_empty() {
                        return Err(d.arg_err().in_plugin("cache"));
                    }
                    let zones: Vec<String> = if args.len() > 1 {
                        args[1..].iter().map(|z| normalize_name(z)).collect()
                    } else {
                        vec![".".into()]
                    };
                    match args[0].as_str() {
                        "denial" => c.nexcept = zones,
                        "success" => c.pexcept = zones,
                        _ => {
                            return Err(plain(
                                "cache type for disable must be \"success\" or \"denial\"".into(),
                            ));
                        }
                    }
                }
                "keepttl" => {
                    if !d.remaining_args().is_empty() {
                        return Err(d.arg_err().in_plugin("cache"));
                    }
                    c.keepttl = true;
                }
                _ => return Err(d.arg_err().in_plugin("cache")),
            }
        }
        if policy_seen && !stale_seen {
            return Err(plain("serve_stale_policy requires serve_stale".into()));
        }
    }
    Ok(c)
}

/// Entries per shard for a configured capacity (CoreDNS `cache.New`: 256
/// shards of `max(cap/256, 4)`).
pub fn shard_size(cap: i64) -> usize {
    usize::try_from((cap / 256).max(4)).unwrap_or(4)
}
