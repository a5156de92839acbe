//! Wire → presentation format (miekg `RR.String()` layout: owner, TTL, class,
//! type, RDATA separated by tabs), for tests, diagnostics and logs. Types
//! without a presentation writer here use RFC 3597's `\# LEN HEX`.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::wire::types::{class_to_string, type_to_string};
use crate::wire::{Name, be16, be32};

/// A name in wire form at `off` of `rd` (uncompressed) and the offset after it.
fn name_at(rd: &[u8], off: usize) -> Option<(Name, usize)> {
    Name::read(rd, off).ok()
}

fn cstr(out: &mut String, s: &[u8]) {
    out.push('"');
    for &c in s {
        match c {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(c as char);
            }
            0x20..=0x7e => out.push(c as char),
            _ => {
                let _ = write!(out, "\\{c:03}");
            }
        }
    }
    out.push('"');
}

/// Standard base64 with padding.
pub(crate) fn b64(out: &mut String, d: &[u8]) {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for c in d.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
}

fn hexs(out: &mut String, d: &[u8]) {
    for b in d {
        let _ = write!(out, "{b:02X}");
    }
}

fn bitmap(out: &mut String, mut d: &[u8]) -> Option<()> {
    while d.len() >= 2 {
        let (win, len) = (u16::from(d[0]), d[1] as usize);
        let bits = d.get(2..2 + len)?;
        for (i, &b) in bits.iter().enumerate() {
            for j in 0..8 {
                if b & (0x80 >> j) != 0 {
                    out.push(' ');
                    type_to_string((win << 8) | (i * 8 + j) as u16, out);
                }
            }
        }
        d = &d[2 + len..];
    }
    d.is_empty().then_some(())
}

fn sig_time(out: &mut String, t: u32) {
    let secs = i64::from(t);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let _ = write!(
        out,
        "{y:04}{m:02}{d:02}{:02}{:02}{:02}",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    );
}

/// Writes RDATA of `rtype`; `None` when it is malformed for its type.
fn rdata(out: &mut String, rtype: u16, rd: &[u8]) -> Option<()> {
    match rtype {
        1 => {
            let o: [u8; 4] = rd.try_into().ok()?;
            let _ = write!(out, "{}", Ipv4Addr::from(o));
        }
        28 => {
            let o: [u8; 16] = rd.try_into().ok()?;
            let _ = write!(out, "{}", Ipv6Addr::from(o));
        }
        2 | 3 | 4 | 5 | 7 | 8 | 9 | 12 | 39 => {
            let (n, end) = name_at(rd, 0)?;
            (end == rd.len()).then_some(())?;
            n.write_presentation(out);
        }
        6 => {
            let (a, p) = name_at(rd, 0)?;
            let (b, p) = name_at(rd, p)?;
            (rd.len() == p + 20).then_some(())?;
            a.write_presentation(out);
            out.push(' ');
            b.write_presentation(out);
            for i in 0..5 {
                let _ = write!(out, " {}", be32(rd, p + 4 * i));
            }
        }
        15 | 18 | 21 | 36 => {
            (rd.len() > 2).then_some(())?;
            let (n, end) = name_at(rd, 2)?;
            (end == rd.len()).then_some(())?;
            let _ = write!(out, "{} ", be16(rd, 0));
            n.write_presentation(out);
        }
        16 | 99 => {
            let mut p = 0;
            let mut first = true;
            while p < rd.len() {
                let l = rd[p] as usize;
                let s = rd.get(p + 1..p + 1 + l)?;
                if !first {
                    out.push(' ');
                }
                first = false;
                cstr(out, s);
                p += 1 + l;
            }
        }
        33 => {
            (rd.len() > 6).then_some(())?;
            let (n, end) = name_at(rd, 6)?;
            (end == rd.len()).then_some(())?;
            let _ = write!(out, "{} {} {} ", be16(rd, 0), be16(rd, 2), be16(rd, 4));
            n.write_presentation(out);
        }
        43 | 59 => {
            (rd.len() >= 4).then_some(())?;
            let _ = write!(out, "{} {} {} ", be16(rd, 0), rd[2], rd[3]);
            hexs(out, &rd[4..]);
        }
        48 | 60 => {
            (rd.len() >= 4).then_some(())?;
            let _ = write!(out, "{} {} {} ", be16(rd, 0), rd[2], rd[3]);
            b64(out, &rd[4..]);
        }
        46 => {
            (rd.len() > 18).then_some(())?;
            type_to_string(be16(rd, 0), out);
            let _ = write!(out, " {} {} {} ", rd[2], rd[3], be32(rd, 4));
            sig_time(out, be32(rd, 8));
            out.push(' ');
            sig_time(out, be32(rd, 12));
            let _ = write!(out, " {} ", be16(rd, 16));
            let (n, end) = name_at(rd, 18)?;
            n.write_presentation(out);
            out.push(' ');
            b64(out, &rd[end..]);
        }
        47 => {
            let (n, end) = name_at(rd, 0)?;
            n.write_presentation(out);
            bitmap(out, &rd[end..])?;
        }
        64 | 65 => {
            (rd.len() > 2).then_some(())?;
            let (n, mut p) = name_at(rd, 2)?;
            let _ = write!(out, "{} ", be16(rd, 0));
            n.write_presentation(out);
            while p < rd.len() {
                let key = be16(rd.get(p..p + 2)?, 0);
                let len = be16(rd.get(p + 2..p + 4)?, 0) as usize;
                let v = rd.get(p + 4..p + 4 + len)?;
                out.push(' ');
                match super::svcb::key_name(key) {
                    Some(k) => out.push_str(k),
                    None => {
                        let _ = write!(out, "key{key}");
                    }
                }
                match key {
                    2 | 8 if v.is_empty() => {}
                    1 => {
                        out.push('=');
                        let mut q = 0;
                        while q < v.len() {
                            let l = v[q] as usize;
                            if q > 0 {
                                out.push(',');
                            }
                            out.push_str(&String::from_utf8_lossy(v.get(q + 1..q + 1 + l)?));
                            q += 1 + l;
                        }
                    }
                    3 if v.len() == 2 => {
                        let _ = write!(out, "={}", be16(v, 0));
                    }
                    4 => {
                        out.push('=');
                        for (i, c) in v.chunks_exact(4).enumerate() {
                            if i > 0 {
                                out.push(',');
                            }
                            let _ = write!(out, "{}", Ipv4Addr::new(c[0], c[1], c[2], c[3]));
                        }
                    }
                    6 => {
                        out.push('=');
                        for (i, c) in v.chunks_exact(16).enumerate() {
                            if i > 0 {
                                out.push(',');
                            }
                            let o: [u8; 16] = c.try_into().ok()?;
                            let _ = write!(out, "{}", Ipv6Addr::from(o));
                        }
                    }
                    5 => {
                        out.push('=');
                        b64(out, v);
                    }
                    _ => {
                        out.push('=');
                        cstr(out, v);
                    }
                }
                p += 4 + len;
            }
        }
        257 => {
            (rd.len() >= 2).then_some(())?;
            let tl = rd[1] as usize;
            let tag = rd.get(2..2 + tl)?;
            let _ = write!(out, "{} {} ", rd[0], String::from_utf8_lossy(tag));
            cstr(out, &rd[2 + tl..]);
        }
        _ => return None,
    }
    Some(())
}

/// Presentation of RDATA alone.
pub fn rdata_to_string(rtype: u16, rd: &[u8]) -> String {
    let mut s = String::new();
    if rdata(&mut s, rtype, rd).is_none() {
        s.clear();
        let _ = write!(s, "\\# {} ", rd.len());
        hexs(&mut s, rd);
        if rd.is_empty() {
            s.pop();
        }
    }
    s
}

/// A whole record: `owner TTL CLASS TYPE RDATA`, single-space separated.
pub fn rr_to_string(owner: &Name, rtype: u16, class: u16, ttl: u32, rd: &[u8]) -> String {
    let mut s = String::new();
    owner.write_presentation(&mut s);
    let _ = write!(s, " {ttl} ");
    class_to_string(class, &mut s);
    s.push(' ');
    type_to_string(rtype, &mut s);
    s.push(' ');
    s.push_str(&rdata_to_string(rtype, rd));
    s
}

/// Every record of a message section by section (`;ANSWER` …), for tests.
pub fn message_sections(msg: &[u8]) -> Option<[Vec<String>; 3]> {
    let idx = crate::wire::MsgIndex::parse(msg)?;
    let mut out: [Vec<String>; 3] = Default::default();
    for r in &idx.rrs {
        let (owner, _) = Name::read(msg, r.start as usize).ok()?;
        let rd = &msg[r.rdata()];
        out[r.section as usize - 1].push(rr_to_string(&owner, r.rtype, r.class, r.ttl, rd));
    }
    Some(out)
}
