//! LOC RDATA (RFC 1876 §3): `D [M [S.sss]] N|S D [M [S.sss]] E|W ALT[m]
//! [SIZE[m] [HP[m] [VP[m]]]]`, defaults 1m, 10000m and 10m.

use super::rdata::{Fail, LocFields};

const LAT_MAX: f64 = 90.0;
const LON_MAX: f64 = 180.0;

/// Metres (with optional `m`) → centimetres.
fn cm(t: &[u8]) -> Option<f64> {
    let t = t
        .strip_suffix(b"m")
        .or_else(|| t.strip_suffix(b"M"))
        .unwrap_or(t);
    let v: f64 = std::str::from_utf8(t).ok()?.parse().ok()?;
    v.is_finite().then_some((v * 100.0).round())
}

/// Centimetres → RFC 1876 `mantissa << 4 | exponent`.
fn precision(v: f64) -> Option<u8> {
    if !(0.0..=9e9).contains(&v) {
        return None;
    }
    let mut v = v as u64;
    let mut e = 0u8;
    while v >= 10 {
        v /= 10;
        e += 1;
    }
    Some(((v as u8) << 4) | e)
}

/// Reads `D [M [S]] HEMI`, returning thousandths of arc-seconds (signed).
fn coord(f: &mut LocFields<'_, '_, '_>, pos: u8, neg: u8, max: f64) -> Result<i64, Fail> {
    let mut parts = Vec::new();
    loop {
        let Some(t) = f.next() else {
            return Err(f.fail("Coordinate"));
        };
        if t.len() == 1 && (t[0].eq_ignore_ascii_case(&pos) || t[0].eq_ignore_ascii_case(&neg)) {
            let sign = if t[0].eq_ignore_ascii_case(&neg) {
                -1.0
            } else {
                1.0
            };
            if parts.is_empty() {
                return Err(f.fail("Coordinate"));
            }
            let d = parts[0];
            let m = parts.get(1).copied().unwrap_or(0.0);
            let s = parts.get(2).copied().unwrap_or(0.0);
            if d > max || m >= 60.0 || s >= 60.0 {
                return Err(f.fail("Coordinate"));
            }
            let v = ((d * 3600.0 + m * 60.0 + s) * 1000.0).round() * sign;
            return Ok(v as i64);
        }
        if parts.len() == 3 {
            return Err(f.fail("Coordinate"));
        }
        let v: f64 = std::str::from_utf8(&t)
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|v: &f64| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| f.fail("Coordinate"))?;
        parts.push(v);
    }
}

/// Parses LOC into `out`.
pub(crate) fn parse(f: &mut LocFields<'_, '_, '_>, out: &mut Vec<u8>) -> Result<(), Fail> {
    let lat = coord(f, b'N', b'S', LAT_MAX)?;
    let lon = coord(f, b'E', b'W', LON_MAX)?;
    let alt = f
        .next()
        .and_then(|t| cm(&t))
        .ok_or_else(|| f.fail("Altitude"))?;
    let alt = alt + 10_000_000.0;
    if !(0.0..=f64::from(u32::MAX)).contains(&alt) {
        return Err(f.fail("Altitude"));
    }
    let mut prec = [precision(100.0), precision(1_000_000.0), precision(1000.0)];
    for p in &mut prec {
        match f.next() {
            Some(t) => {
                *p = Some(
                    cm(&t)
                        .and_then(precision)
                        .ok_or_else(|| f.fail("Precision"))?,
                )
            }
            None => break,
        }
    }
    out.push(0);
    for p in prec {
        out.push(p.ok_or_else(|| f.fail("Precision"))?);
    }
    let base = 1i64 << 31;
    out.extend_from_slice(&((base + lat) as u32).to_be_bytes());
    out.extend_from_slice(&((base + lon) as u32).to_be_bytes());
    out.extend_from_slice(&(alt as u32).to_be_bytes());
    Ok(())
}
