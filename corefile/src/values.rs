//! Value grammars plugins share, Go-compatible (corefile-spec.md §10): durations as
//! Go's `time.ParseDuration` reads and `Duration.String` prints them.

use std::fmt::Write as _;
use std::time::Duration;

/// Go `time.ParseDuration`. Negative durations are returned as `Err` with Go's
/// message shape unless `allow_negative`; callers that accept them handle sign.
/// Returns nanoseconds (signed).
pub fn parse_go_duration_nanos(s: &str) -> Result<i128, String> {
    let orig = s;
    let err = || format!("time: invalid duration {}", go_quote(orig));
    let mut s = s;
    let mut neg = false;
    if let Some(r) = s.strip_prefix('-') {
        neg = true;
        s = r;
    } else if let Some(r) = s.strip_prefix('+') {
        s = r;
    }
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(err());
    }
    let mut total: i128 = 0;
    while !s.is_empty() {
        let int_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let int_part = &s[..int_end];
        s = &s[int_end..];
        let mut frac_part = "";
        if let Some(r) = s.strip_prefix('.') {
            let fe = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
            frac_part = &r[..fe];
            s = &r[fe..];
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(err());
        }
        let unit_end = s
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(s.len());
        let unit = &s[..unit_end];
        s = &s[unit_end..];
        let mult: i128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(format!("time: missing unit in duration {}", go_quote(orig))),
            u => {
                return Err(format!(
                    "time: unknown unit {} in duration {}",
                    go_quote(u),
                    go_quote(orig)
                ));
            }
        };
        let ip: i128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| err())?
        };
        // Go's bounds: each part and the sum at most 1<<63 (the magnitude of the
        // most negative duration), checked before anything is added to them.
        const LIMIT: i128 = 1 << 63;
        let mut v = ip.checked_mul(mult).ok_or_else(err)?;
        if v > LIMIT {
            return Err(err());
        }
        if !frac_part.is_empty() {
            let mut scale = mult;
            for d in frac_part.bytes().take(30) {
                scale /= 10;
                v += i128::from(d - b'0') * scale;
            }
            if v > LIMIT {
                return Err(err());
            }
        }
        total += v;
        if total > LIMIT || (!neg && total == LIMIT) {
            return Err(err());
        }
    }
    Ok(if neg { -total } else { total })
}

/// Go `time.ParseDuration` for the non-negative durations plugins take.
/// Negative values are an error with `what` naming the option.
pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let n = parse_go_duration_nanos(s)?;
    if n < 0 {
        return Err(format!("negative duration {s}"));
    }
    Ok(Duration::from_nanos(n as u64))
}

/// Go `time.Duration.String` (`1m0s`, `1.5s`, `100ms`, `0s`).
pub fn format_go_duration(d: Duration) -> String {
    let n = d.as_nanos();
    if n == 0 {
        return "0s".to_owned();
    }
    if n < 1_000 {
        return format!("{n}ns");
    }
    if n < 1_000_000 {
        return format!("{}µs", frac(n, 1_000));
    }
    if n < 1_000_000_000 {
        return format!("{}ms", frac(n, 1_000_000));
    }
    let secs = n / 1_000_000_000;
    let sub = n % 1_000_000_000;
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    let s_str = if sub == 0 {
        format!("{s}s")
    } else {
        let f = format!("{sub:09}");
        format!("{s}.{}s", f.trim_end_matches('0'))
    };
    if h > 0 {
        format!("{h}h{m}m{s_str}")
    } else if m > 0 {
        format!("{m}m{s_str}")
    } else {
        s_str
    }
}

fn frac(n: u128, unit: u128) -> String {
    let whole = n / unit;
    let rest = n % unit;
    if rest == 0 {
        return whole.to_string();
    }
    let width = unit.ilog10() as usize;
    let f = format!("{rest:0width$}");
    format!("{whole}.{}", f.trim_end_matches('0'))
}

/// Go's `%q` of a string (ASCII escapes as `strconv.Quote` writes them).
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if !go_printable(c) => {
                if (c as u32) < 0x1_0000 {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                } else {
                    let _ = write!(out, "\\U{:08x}", c as u32);
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `strconv.IsPrint` for the characters it refuses most often: C1 controls,
/// spaces other than U+0020, format characters, private use and specials
/// (unassigned code points are not known here).
fn go_printable(c: char) -> bool {
    !matches!(
        c as u32,
        0x80..=0xA0
            | 0xAD
            | 0x0600..=0x0605
            | 0x061C
            | 0x06DD
            | 0x070F
            | 0x1680
            | 0x180E
            | 0x2000..=0x200F
            | 0x2028..=0x202F
            | 0x205F..=0x206F
            | 0x3000
            | 0xE000..=0xF8FF
            | 0xFEFF
            | 0xFFF9..=0xFFFB
            | 0xFFFE..=0xFFFF
            | 0xE0001..=0xE007F
            | 0xF0000..
    )
}

/// Go `strconv.Atoi`, with its error texts (`invalid syntax`, `value out of range`).
pub fn strconv_atoi(s: &str) -> Result<i64, String> {
    strconv_int(s, "strconv.Atoi")
}

/// Go's decimal integer parse (64-bit) with the error texts of `func` (`strconv.Atoi`,
/// `strconv.ParseInt`).
pub fn strconv_int(s: &str, func: &str) -> Result<i64, String> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{func}: parsing {}: invalid syntax", go_quote(s)));
    }
    s.parse::<i64>()
        .map_err(|_| format!("{func}: parsing {}: value out of range", go_quote(s)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse() {
        let ok = |s: &str| parse_go_duration_nanos(s).ok();
        assert_eq!(ok("1h30m"), Some(5_400_000_000_000));
        assert_eq!(ok("1.5s"), Some(1_500_000_000));
        assert_eq!(ok("-2s"), Some(-2_000_000_000));
        assert_eq!(ok("0"), Some(0));
        assert_eq!(ok("5001ms"), Some(5_001_000_000));
        assert_eq!(ok(".5s"), Some(500_000_000));
        assert_eq!(ok("10"), None);
        assert_eq!(ok("1d"), None);
        assert_eq!(ok(""), None);
        assert_eq!(
            parse_go_duration_nanos("10").unwrap_err(),
            "time: missing unit in duration \"10\""
        );
        assert_eq!(
            parse_go_duration_nanos("1d").unwrap_err(),
            "time: unknown unit \"d\" in duration \"1d\""
        );
        assert_eq!(
            parse_go_duration_nanos("abc").unwrap_err(),
            "time: invalid duration \"abc\""
        );
    }

    #[test]
    fn parse_bounds_as_go() {
        let ok = |s: &str| parse_go_duration_nanos(s).ok();
        let max = i128::from(i64::MAX);
        assert_eq!(ok("9223372036854775807ns"), Some(max));
        assert_eq!(ok("2562047h47m16.854775807s"), Some(max));
        assert_eq!(ok("-9223372036854775808ns"), Some(-max - 1));
        for bad in [
            "9223372036854775808ns",
            "2562047h47m16.854775808s",
            "-9223372036854775809ns",
            "2562048h",
            "9223372036854775807ns1ns",
            // A part whose integer fits i128 but not Go's 1<<63, plus a fraction: was an
            // unchecked add (a debug-build panic, a wrapped value in release).
            "170141183460469231731687303715884105.99999999999999999999us",
            "-170141183460469231731687303715884105.99999999999999999999us",
            "99999999999999999999999999999999999999h",
        ] {
            assert_eq!(
                parse_go_duration_nanos(bad).unwrap_err(),
                format!("time: invalid duration {}", go_quote(bad)),
                "{bad}"
            );
        }
    }

    #[test]
    fn format() {
        let f = |n: u64| format_go_duration(Duration::from_nanos(n));
        assert_eq!(f(60_000_000_000), "1m0s");
        assert_eq!(f(1_000_000_000), "1s");
        assert_eq!(f(1_500_000_000), "1.5s");
        assert_eq!(f(100_000_000), "100ms");
        assert_eq!(f(5_400_000_000_000), "1h30m0s");
        assert_eq!(f(0), "0s");
        assert_eq!(f(1500), "1.5µs");
    }
}
