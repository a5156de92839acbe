//! RDATA in presentation format → wire, per type (RFC 1035 §3.3, RFC 3596,
//! RFC 2782, RFC 4034, RFC 5155, RFC 6844, RFC 9460, …), and RFC 3597's
//! `\# LENGTH HEX` for any type. Names inside RDATA are written uncompressed,
//! relative ones completed with the current origin.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::lex::{Lexer, Tok};
use super::parse::{ErrorKind, name_to_wire, parse_ttl, type_code};

/// A failed field: the error and the index of the token it is about.
pub(crate) type Fail = (ErrorKind, usize);

struct F<'a, 's> {
    lx: &'a Lexer<'s>,
    toks: &'a [Tok],
    i: usize,
    origin: &'a [u8],
    rtype: u16,
}

impl<'s> F<'_, 's> {
    fn fail(&self, field: &'static str) -> Fail {
        (
            ErrorKind::BadRdata {
                rtype: self.rtype,
                field,
            },
            self.i.min(self.toks.len().saturating_sub(1)),
        )
    }

    fn next(&mut self, field: &'static str) -> Result<(Tok, &'s [u8]), Fail> {
        let Some(t) = self.toks.get(self.i) else {
            return Err(self.fail(field));
        };
        self.i += 1;
        Ok((*t, self.lx.text(t)))
    }

    fn word(&mut self, field: &'static str) -> Result<&'s [u8], Fail> {
        let (t, s) = self.next(field)?;
        if t.quoted {
            self.i -= 1;
            return Err(self.fail(field));
        }
        Ok(s)
    }

    fn done(&self) -> bool {
        self.i >= self.toks.len()
    }

    fn end(&self) -> Result<(), Fail> {
        if self.done() {
            Ok(())
        } else {
            Err((ErrorKind::Garbage, self.i))
        }
    }

    fn num<T: std::str::FromStr>(&mut self, field: &'static str) -> Result<T, Fail> {
        let s = self.word(field)?;
        if !s.iter().all(u8::is_ascii_digit) {
            self.i -= 1;
            return Err(self.fail(field));
        }
        match std::str::from_utf8(s).ok().and_then(|s| s.parse().ok()) {
            Some(v) => Ok(v),
            None => {
                self.i -= 1;
                Err(self.fail(field))
            }
        }
    }

    fn u8(&mut self, f: &'static str, out: &mut Vec<u8>) -> Result<u8, Fail> {
        let v: u8 = self.num(f)?;
        out.push(v);
        Ok(v)
    }

    fn u16(&mut self, f: &'static str, out: &mut Vec<u8>) -> Result<u16, Fail> {
        let v: u16 = self.num(f)?;
        out.extend_from_slice(&v.to_be_bytes());
        Ok(v)
    }

    fn u32(&mut self, f: &'static str, out: &mut Vec<u8>) -> Result<(), Fail> {
        let v: u32 = self.num(f)?;
        out.extend_from_slice(&v.to_be_bytes());
        Ok(())
    }

    /// A TTL-like value (`1h`, `3600`).
    fn period(&mut self, f: &'static str, out: &mut Vec<u8>) -> Result<(), Fail> {
        let s = self.word(f)?;
        let Some(v) = parse_ttl(s) else {
            self.i -= 1;
            return Err(self.fail(f));
        };
        out.extend_from_slice(&v.to_be_bytes());
        Ok(())
    }

    fn name(&mut self, f: &'static str, out: &mut Vec<u8>) -> Result<(), Fail> {
        let s = self.word(f)?;
        name_to_wire(s, self.origin, out).map_err(|()| {
            self.i -= 1;
            self.fail(f)
        })
    }

    /// An algorithm number or mnemonic (RFC 8624).
    fn alg(&mut self, f: &'static str, out: &mut Vec<u8>) -> Result<(), Fail> {
        let s = self.word(f)?;
        let v = std::str::from_utf8(s)
            .ok()
            .and_then(|s| s.parse::<u8>().ok().or_else(|| alg_code(s)));
        match v {
            Some(v) => {
                out.push(v);
                Ok(())
            }
            None => {
                self.i -= 1;
                Err(self.fail(f))
            }
        }
    }

    /// One character string (≤ 255 octets after unescaping).
    fn cstring(&mut self, f: &'static str, out: &mut Vec<u8>) -> Result<(), Fail> {
        let (_, s) = self.next(f)?;
        let at = out.len();
        out.push(0);
        unescape(s, out).map_err(|()| {
            self.i -= 1;
            self.fail(f)
        })?;
        let n = out.len() - at - 1;
        if n > 255 {
            self.i -= 1;
            return Err(self.fail(f));
        }
        out[at] = n as u8;
        Ok(())
    }

    /// The remaining tokens concatenated, decoded with `dec`.
    fn rest(
        &mut self,
        f: &'static str,
        out: &mut Vec<u8>,
        allow_empty: bool,
        dec: fn(&[u8], &mut Vec<u8>) -> Result<(), ()>,
    ) -> Result<(), Fail> {
        if self.done() && !allow_empty {
            return Err(self.fail(f));
        }
        while !self.done() {
            let s = self.word(f)?;
            dec(s, out).map_err(|()| {
                self.i -= 1;
                self.fail(f)
            })?;
        }
        Ok(())
    }

    /// Type bitmap of the remaining mnemonics (RFC 4034 §4.1.2).
    fn bitmap(&mut self, out: &mut Vec<u8>) -> Result<(), Fail> {
        let mut types = Vec::new();
        while !self.done() {
            let s = self.word("TypeBitMap")?;
            match type_code(s).or_else(|| {
                if s.eq_ignore_ascii_case(b"ANY") {
                    Some(255)
                } else {
                    None
                }
            }) {
                Some(t) => types.push(t),
                None => {
                    self.i -= 1;
                    return Err(self.fail("TypeBitMap"));
                }
            }
        }
        write_bitmap(&mut types, out);
        Ok(())
    }
}

/// Writes RFC 4034 §4.1.2 windows for `types` (sorted and deduplicated here).
pub(crate) fn write_bitmap(types: &mut Vec<u16>, out: &mut Vec<u8>) {
    types.sort_unstable();
    types.dedup();
    let mut i = 0;
    while i < types.len() {
        let win = types[i] >> 8;
        let mut bits = [0u8; 32];
        let mut len = 0;
        while i < types.len() && types[i] >> 8 == win {
            let lo = (types[i] & 0xff) as usize;
            bits[lo / 8] |= 0x80 >> (lo % 8);
            len = lo / 8 + 1;
            i += 1;
        }
        out.push(win as u8);
        out.push(len as u8);
        out.extend_from_slice(&bits[..len]);
    }
}

/// DNSSEC algorithm mnemonics.
fn alg_code(s: &str) -> Option<u8> {
    Some(match s.to_ascii_uppercase().as_str() {
        "RSAMD5" => 1,
        "DH" => 2,
        "DSA" => 3,
        "RSASHA1" => 5,
        "DSA-NSEC3-SHA1" => 6,
        "RSASHA1-NSEC3-SHA1" => 7,
        "RSASHA256" => 8,
        "RSASHA512" => 10,
        "ECC-GOST" => 12,
        "ECDSAP256SHA256" => 13,
        "ECDSAP384SHA384" => 14,
        "ED25519" => 15,
        "ED448" => 16,
        "INDIRECT" => 252,
        "PRIVATEDNS" => 253,
        "PRIVATEOID" => 254,
        _ => return None,
    })
}

/// `\X` and `\DDD` escapes → bytes.
pub(crate) fn unescape(s: &[u8], out: &mut Vec<u8>) -> Result<(), ()> {
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        if c != b'\\' {
            out.push(c);
            i += 1;
            continue;
        }
        let d = &s[i + 1..];
        if d.len() >= 3 && d[..3].iter().all(u8::is_ascii_digit) {
            let v =
                u32::from(d[0] - b'0') * 100 + u32::from(d[1] - b'0') * 10 + u32::from(d[2] - b'0');
            out.push(u8::try_from(v).map_err(|_| ())?);
            i += 4;
        } else if let Some(&x) = d.first() {
            out.push(x);
            i += 2;
        } else {
            return Err(());
        }
    }
    Ok(())
}

/// Hex digits (whitespace already split off by the lexer).
pub(crate) fn hex(s: &[u8], out: &mut Vec<u8>) -> Result<(), ()> {
    if s.len() % 2 != 0 {
        return Err(());
    }
    for p in s.chunks_exact(2) {
        let h = |c: u8| match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'a'..=b'f' => Ok(c - b'a' + 10),
            b'A'..=b'F' => Ok(c - b'A' + 10),
            _ => Err(()),
        };
        out.push(h(p[0])? << 4 | h(p[1])?);
    }
    Ok(())
}

/// Standard base64 with padding (one token at a time; padding may end a token).
pub(crate) fn base64(s: &[u8], out: &mut Vec<u8>) -> Result<(), ()> {
    let mut acc = 0u32;
    let mut bits = 0;
    let mut pad = 0;
    for &c in s {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                pad += 1;
                continue;
            }
            _ => return Err(()),
        };
        if pad > 0 {
            return Err(());
        }
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    if pad > 2 {
        return Err(());
    }
    Ok(())
}

/// Base32 with the extended hex alphabet, no padding (RFC 4648 §7, NSEC3).
pub(crate) fn base32hex(s: &[u8], out: &mut Vec<u8>) -> Result<(), ()> {
    let mut acc = 0u64;
    let mut bits = 0;
    for &c in s {
        let v = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'v' => c - b'a' + 10,
            b'A'..=b'V' => c - b'A' + 10,
            b'=' => continue,
            _ => return Err(()),
        };
        acc = (acc << 5) | u64::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Ok(())
}

/// `YYYYMMDDHHmmSS` (UTC) or seconds → serial-arithmetic seconds (RFC 4034 §3.2).
fn sig_time(s: &[u8]) -> Option<u32> {
    if s.len() == 14 && s.iter().all(u8::is_ascii_digit) {
        let n = |a: usize, b: usize| -> i64 {
            s[a..b]
                .iter()
                .fold(0i64, |acc, &c| acc * 10 + i64::from(c - b'0'))
        };
        let (y, mo, d, h, mi, se) = (n(0, 4), n(4, 6), n(6, 8), n(8, 10), n(10, 12), n(12, 14));
        if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
            return None;
        }
        let days = days_from_civil(y, mo, d);
        let t = days * 86_400 + h * 3600 + mi * 60 + se;
        return Some(t.rem_euclid(1 << 32) as u32);
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// Days since 1970-01-01 (Howard Hinnant's algorithm).
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses RDATA of `rtype` from `toks` (non-empty) into `out`.
pub(crate) fn parse(
    rtype: u16,
    lx: &Lexer<'_>,
    toks: &[Tok],
    origin: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), Fail> {
    let mut f = F {
        lx,
        toks,
        i: 0,
        origin,
        rtype,
    };
    if !toks[0].quoted && lx.text(&toks[0]) == b"\\#" {
        f.i = 1;
        let len: usize = f.num("RFC3597 length")?;
        f.rest("RFC3597 data", out, len == 0, hex)?;
        if out.len() != len {
            return Err((
                ErrorKind::BadRdata {
                    rtype,
                    field: "RFC3597 length",
                },
                1,
            ));
        }
        return Ok(());
    }
    match rtype {
        1 => {
            let s = f.word("A")?;
            let ip = std::str::from_utf8(s)
                .ok()
                .and_then(|s| s.parse::<Ipv4Addr>().ok());
            let Some(ip) = ip else {
                f.i -= 1;
                return Err(f.fail("A"));
            };
            out.extend_from_slice(&ip.octets());
        }
        28 => {
            let s = f.word("AAAA")?;
            let ip = std::str::from_utf8(s)
                .ok()
                .filter(|s| s.contains(':'))
                .and_then(|s| s.parse::<Ipv6Addr>().ok());
            let Some(ip) = ip else {
                f.i -= 1;
                return Err(f.fail("AAAA"));
            };
            out.extend_from_slice(&ip.octets());
        }
        2 => f.name("Ns", out)?,
        5 => f.name("Target", out)?,
        12 => f.name("Ptr", out)?,
        39 => f.name("Target", out)?,
        3 | 4 | 7 | 8 | 9 => f.name("Name", out)?,
        6 => {
            f.name("Ns", out)?;
            f.name("Mbox", out)?;
            f.u32("zone parameter", out)?;
            for _ in 0..4 {
                f.period("zone parameter", out)?;
            }
        }
        14 | 17 => {
            f.name("Mbox", out)?;
            f.name("Txt", out)?;
        }
        58 => {
            f.name("PreviousName", out)?;
            f.name("NextName", out)?;
        }
        15 | 18 | 21 | 36 => {
            f.u16("Pref", out)?;
            f.name("Mx", out)?;
        }
        107 => {
            f.u16("Preference", out)?;
            f.name("Fqdn", out)?;
        }
        26 => {
            f.u16("Preference", out)?;
            f.name("Map822", out)?;
            f.name("Mapx400", out)?;
        }
        16 | 99 | 56 => {
            while !f.done() {
                let (_, s) = f.next("Txt")?;
                let mut buf = Vec::with_capacity(s.len());
                unescape(s, &mut buf).map_err(|()| {
                    f.i -= 1;
                    f.fail("Txt")
                })?;
                if buf.is_empty() {
                    out.push(0);
                }
                for chunk in buf.chunks(255) {
                    out.push(chunk.len() as u8);
                    out.extend_from_slice(chunk);
                }
            }
        }
        13 => {
            f.cstring("Cpu", out)?;
            if f.done() {
                out.push(0);
            } else {
                f.cstring("Os", out)?;
            }
        }
        33 => {
            f.u16("Priority", out)?;
            f.u16("Weight", out)?;
            f.u16("Port", out)?;
            f.name("Target", out)?;
        }
        35 => {
            f.u16("Order", out)?;
            f.u16("Preference", out)?;
            f.cstring("Flags", out)?;
            f.cstring("Service", out)?;
            f.cstring("Regexp", out)?;
            f.name("Replacement", out)?;
        }
        37 => {
            let s = f.word("Type")?;
            let ct = std::str::from_utf8(s).ok().and_then(|s| {
                s.parse::<u16>()
                    .ok()
                    .or(match s.to_ascii_uppercase().as_str() {
                        "PKIX" => Some(1),
                        "SPKI" => Some(2),
                        "PGP" => Some(3),
                        "IPKIX" => Some(4),
                        "ISPKI" => Some(5),
                        "IPGP" => Some(6),
                        "ACPKIX" => Some(7),
                        "IACPKIX" => Some(8),
                        "URI" => Some(253),
                        "OID" => Some(254),
                        _ => None,
                    })
            });
            let Some(ct) = ct else {
                f.i -= 1;
                return Err(f.fail("Type"));
            };
            out.extend_from_slice(&ct.to_be_bytes());
            f.u16("KeyTag", out)?;
            f.alg("Algorithm", out)?;
            f.rest("Certificate", out, false, base64)?;
        }
        43 | 59 | 32768 | 32769 => {
            f.u16("KeyTag", out)?;
            f.alg("Algorithm", out)?;
            f.u8("DigestType", out)?;
            f.rest("Digest", out, false, hex)?;
        }
        44 => {
            f.u8("Algorithm", out)?;
            f.u8("Type", out)?;
            f.rest("Fingerprint", out, false, hex)?;
        }
        24 | 46 => {
            let s = f.word("TypeCovered")?;
            let Some(t) = type_code(s) else {
                f.i -= 1;
                return Err(f.fail("TypeCovered"));
            };
            out.extend_from_slice(&t.to_be_bytes());
            f.alg("Algorithm", out)?;
            f.u8("Labels", out)?;
            f.period("OrigTtl", out)?;
            for field in ["Expiration", "Inception"] {
                let s = f.word(field)?;
                let Some(v) = sig_time(s) else {
                    f.i -= 1;
                    return Err(f.fail(field));
                };
                out.extend_from_slice(&v.to_be_bytes());
            }
            f.u16("KeyTag", out)?;
            f.name("SignerName", out)?;
            f.rest("Signature", out, false, base64)?;
        }
        47 => {
            f.name("NextDomain", out)?;
            f.bitmap(out)?;
        }
        25 | 48 | 60 | 57 => {
            f.u16("Flags", out)?;
            f.u8("Protocol", out)?;
            f.alg("Algorithm", out)?;
            f.rest("PublicKey", out, false, base64)?;
        }
        50 | 51 => {
            f.u8("Hash", out)?;
            f.u8("Flags", out)?;
            f.u16("Iterations", out)?;
            let salt = f.word("Salt")?;
            let at = out.len();
            out.push(0);
            if salt != b"-" {
                hex(salt, out).map_err(|()| {
                    f.i -= 1;
                    f.fail("Salt")
                })?;
            }
            let n = out.len() - at - 1;
            if n > 255 {
                return Err(f.fail("Salt"));
            }
            out[at] = n as u8;
            if rtype == 50 {
                let next = f.word("NextDomain")?;
                let at = out.len();
                out.push(0);
                base32hex(next, out).map_err(|()| {
                    f.i -= 1;
                    f.fail("NextDomain")
                })?;
                let n = out.len() - at - 1;
                if n == 0 || n > 255 {
                    return Err(f.fail("NextDomain"));
                }
                out[at] = n as u8;
                f.bitmap(out)?;
            }
        }
        52 | 53 => {
            f.u8("Usage", out)?;
            f.u8("Selector", out)?;
            f.u8("MatchingType", out)?;
            f.rest("Certificate", out, false, hex)?;
        }
        61 => f.rest("PublicKey", out, false, base64)?,
        49 => f.rest("Digest", out, false, base64)?,
        62 => {
            f.u32("Serial", out)?;
            f.u16("Flags", out)?;
            f.bitmap(out)?;
        }
        63 => {
            f.u32("Serial", out)?;
            f.u8("Scheme", out)?;
            f.u8("Hash", out)?;
            f.rest("Digest", out, false, hex)?;
        }
        64 | 65 => super::svcb::parse(&mut SvcbFields { f: &mut f }, out)?,
        104 | 106 => {
            f.u16("Preference", out)?;
            let s = f.word("Locator")?;
            let mut groups = 0;
            for g in s.split(|&c| c == b':') {
                let v = std::str::from_utf8(g)
                    .ok()
                    .filter(|g| g.len() == 4)
                    .and_then(|g| u16::from_str_radix(g, 16).ok());
                let Some(v) = v else {
                    f.i -= 1;
                    return Err(f.fail("Locator"));
                };
                out.extend_from_slice(&v.to_be_bytes());
                groups += 1;
            }
            if groups != 4 {
                f.i -= 1;
                return Err(f.fail("Locator"));
            }
        }
        105 => {
            f.u16("Preference", out)?;
            let s = f.word("Locator")?;
            let Some(ip) = std::str::from_utf8(s)
                .ok()
                .and_then(|s| s.parse::<Ipv4Addr>().ok())
            else {
                f.i -= 1;
                return Err(f.fail("Locator"));
            };
            out.extend_from_slice(&ip.octets());
        }
        108 | 109 => {
            let s = f.word("Address")?;
            let want = if rtype == 108 { 6 } else { 8 };
            let mut n = 0;
            for g in s.split(|&c| c == b'-') {
                if g.len() != 2 || hex(g, out).is_err() {
                    f.i -= 1;
                    return Err(f.fail("Address"));
                }
                n += 1;
            }
            if n != want {
                f.i -= 1;
                return Err(f.fail("Address"));
            }
        }
        100 => f.cstring("Uinfo", out)?,
        101 | 102 => f.u32("Id", out)?,
        256 => {
            f.u16("Priority", out)?;
            f.u16("Weight", out)?;
            let (_, s) = f.next("Target")?;
            unescape(s, out).map_err(|()| {
                f.i -= 1;
                f.fail("Target")
            })?;
        }
        257 => {
            f.u8("Flag", out)?;
            let tag = f.word("Tag")?;
            if tag.is_empty() || tag.len() > 255 || !tag.iter().all(u8::is_ascii_alphanumeric) {
                f.i -= 1;
                return Err(f.fail("Tag"));
            }
            out.push(tag.len() as u8);
            out.extend_from_slice(tag);
            let (_, v) = f.next("Value")?;
            unescape(v, out).map_err(|()| {
                f.i -= 1;
                f.fail("Value")
            })?;
        }
        29 => super::loc::parse(&mut LocFields { f: &mut f }, out)?,
        t => return Err((ErrorKind::UnsupportedPresentation(t), 0)),
    }
    f.end()
}

/// An SVCB parameter: key and value (escapes left in place).
pub(crate) type Param = (Vec<u8>, Option<Vec<u8>>);

/// What the SVCB parser needs of the field reader.
pub(crate) struct SvcbFields<'a, 'b, 's> {
    f: &'a mut F<'b, 's>,
}

impl SvcbFields<'_, '_, '_> {
    pub(crate) fn priority(&mut self, out: &mut Vec<u8>) -> Result<(), Fail> {
        self.f.u16("Priority", out).map(|_| ())
    }
    pub(crate) fn target(&mut self, out: &mut Vec<u8>) -> Result<(), Fail> {
        self.f.name("Target", out)
    }
    /// The next parameter: `key` and its value if any (`key=value`,
    /// `key="value"`, escapes left in place).
    pub(crate) fn param(&mut self) -> Result<Option<Param>, Fail> {
        if self.f.done() {
            return Ok(None);
        }
        let (t, s) = self.f.next("Value")?;
        if t.quoted {
            self.f.i -= 1;
            return Err(self.f.fail("Key"));
        }
        match s.iter().position(|&c| c == b'=') {
            None => Ok(Some((s.to_vec(), None))),
            Some(p) if p + 1 < s.len() => Ok(Some((s[..p].to_vec(), Some(s[p + 1..].to_vec())))),
            Some(p) => {
                // `key=` followed by a quoted value right after it.
                let key = s[..p].to_vec();
                match self.f.toks.get(self.f.i) {
                    Some(n) if n.quoted && n.start == t.end + 1 => {
                        self.f.i += 1;
                        Ok(Some((key, Some(self.f.lx.text(n).to_vec()))))
                    }
                    _ => Ok(Some((key, Some(Vec::new())))),
                }
            }
        }
    }
    pub(crate) fn fail(&self, field: &'static str) -> Fail {
        let mut e = self.f.fail(field);
        e.1 = self.f.i.saturating_sub(1);
        e
    }
}

/// What the LOC parser needs of the field reader.
pub(crate) struct LocFields<'a, 'b, 's> {
    f: &'a mut F<'b, 's>,
}

impl LocFields<'_, '_, '_> {
    /// The next token, if any.
    pub(crate) fn next(&mut self) -> Option<Vec<u8>> {
        if self.f.done() {
            return None;
        }
        self.f.word("Loc").ok().map(<[u8]>::to_vec)
    }
    pub(crate) fn fail(&self, field: &'static str) -> Fail {
        let mut e = self.f.fail(field);
        e.1 = self.f.i.saturating_sub(1);
        e
    }
}
