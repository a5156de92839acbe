//! dnsperf's query-file format (`name type` per line, `;` comments) and the
//! hand-made wire encoding of each query, done once before the run so the
//! send loop only copies bytes and patches the ID.
//!
//! RFC 1035 §4.1 (header, question), RFC 6891 §6.1 (OPT record).

use std::io::BufRead;

use anyhow::{Context, Result, bail};

/// Largest encoded query we build (header + 255-byte name + question + OPT).
pub const MAX_QUERY: usize = 12 + 256 + 4 + 11;

/// EDNS settings applied to every query (dnsperf `-e`, `-D`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Edns {
    pub enabled: bool,
    pub dnssec_ok: bool,
    pub udp_size: u16,
}

/// All queries of the input, each already in wire format with ID 0.
#[derive(Debug, Default)]
pub struct QuerySet {
    pub wires: Vec<Vec<u8>>,
}

impl QuerySet {
    /// Reads a query file; `path` "-" reads stdin as dnsperf does.
    pub fn load(path: Option<&str>, edns: Edns) -> Result<Self> {
        match path {
            None | Some("-") => Self::parse(std::io::stdin().lock(), edns),
            Some(p) => {
                let f = std::fs::File::open(p).with_context(|| format!("opening {p}"))?;
                Self::parse(std::io::BufReader::new(f), edns).with_context(|| format!("in {p}"))
            }
        }
    }

    /// Parses dnsperf's format: blank lines and lines starting with `;` are
    /// skipped, the type defaults to A.
    pub fn parse(r: impl BufRead, edns: Edns) -> Result<Self> {
        let mut wires = Vec::new();
        for (n, line) in r.lines().enumerate() {
            let line = line?;
            let line = line.trim();
            if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
                continue;
            }
            let mut it = line.split_whitespace();
            let name = it.next().unwrap_or(".");
            let qtype = match it.next() {
                Some(t) => parse_type(t).with_context(|| format!("line {}", n + 1))?,
                None => 1,
            };
            let wire =
                encode_query(name, qtype, edns).with_context(|| format!("line {}", n + 1))?;
            wires.push(wire);
        }
        if wires.is_empty() {
            bail!("no queries in input");
        }
        Ok(Self { wires })
    }

    pub fn len(&self) -> usize {
        self.wires.len()
    }

    pub fn is_empty(&self) -> bool {
        self.wires.is_empty()
    }
}

const TYPES: &[(&str, u16)] = &[
    ("A", 1),
    ("NS", 2),
    ("CNAME", 5),
    ("SOA", 6),
    ("PTR", 12),
    ("HINFO", 13),
    ("MX", 15),
    ("TXT", 16),
    ("AAAA", 28),
    ("LOC", 29),
    ("SRV", 33),
    ("NAPTR", 35),
    ("DS", 43),
    ("SSHFP", 44),
    ("RRSIG", 46),
    ("NSEC", 47),
    ("DNSKEY", 48),
    ("NSEC3", 50),
    ("NSEC3PARAM", 51),
    ("TLSA", 52),
    ("CDS", 59),
    ("CDNSKEY", 60),
    ("SVCB", 64),
    ("HTTPS", 65),
    ("SPF", 99),
    ("IXFR", 251),
    ("AXFR", 252),
    ("ANY", 255),
    ("CAA", 257),
];

/// A type mnemonic or `TYPEnnn` (RFC 3597 §5).
pub fn parse_type(t: &str) -> Result<u16> {
    let up = t.to_ascii_uppercase();
    if let Some(&(_, v)) = TYPES.iter().find(|(n, _)| *n == up) {
        return Ok(v);
    }
    if let Some(num) = up.strip_prefix("TYPE") {
        return num.parse().with_context(|| format!("bad type {t}"));
    }
    bail!("unknown type {t}")
}

/// Encodes a presentation-format name (`\.` and `\DDD` escapes) into wire labels.
pub fn encode_name(name: &str, out: &mut Vec<u8>) -> Result<()> {
    let start = out.len();
    let b = name.as_bytes();
    if name != "." {
        let mut label: Vec<u8> = Vec::with_capacity(63);
        let mut i = 0;
        while i < b.len() {
            let c = b[i];
            if c == b'\\' && i + 3 < b.len() + 1 && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
                let digits = b.get(i + 1..i + 4).context("short \\DDD escape")?;
                let v: u16 = std::str::from_utf8(digits)?.parse()?;
                label.push(u8::try_from(v).context("\\DDD escape above 255")?);
                i += 4;
                continue;
            }
            if c == b'\\' {
                label.push(*b.get(i + 1).context("trailing backslash")?);
                i += 2;
                continue;
            }
            if c == b'.' {
                push_label(&label, out)?;
                label.clear();
                i += 1;
                continue;
            }
            label.push(c);
            i += 1;
        }
        if !label.is_empty() {
            push_label(&label, out)?;
        }
    }
    out.push(0);
    if out.len() - start > 255 {
        bail!("name longer than 255 octets: {name}");
    }
    Ok(())
}

fn push_label(label: &[u8], out: &mut Vec<u8>) -> Result<()> {
    if label.is_empty() {
        bail!("empty label");
    }
    if label.len() > 63 {
        bail!("label longer than 63 octets");
    }
    out.push(label.len() as u8);
    out.extend_from_slice(label);
    Ok(())
}

/// One query with ID 0 and RD set (as dnsperf sends), class IN.
pub fn encode_query(name: &str, qtype: u16, edns: Edns) -> Result<Vec<u8>> {
    let mut w = Vec::with_capacity(64);
    w.extend_from_slice(&[
        0,
        0,
        0x01,
        0x00,
        0,
        1,
        0,
        0,
        0,
        0,
        0,
        u8::from(edns.enabled),
    ]);
    encode_name(name, &mut w)?;
    w.extend_from_slice(&qtype.to_be_bytes());
    w.extend_from_slice(&1u16.to_be_bytes());
    if edns.enabled {
        // RFC 6891 §6.1.2: root owner, type OPT, class = payload size, TTL = ext-rcode/version/flags.
        w.push(0);
        w.extend_from_slice(&41u16.to_be_bytes());
        w.extend_from_slice(&edns.udp_size.to_be_bytes());
        let flags: u16 = if edns.dnssec_ok { 0x8000 } else { 0 };
        w.extend_from_slice(&[0, 0]);
        w.extend_from_slice(&flags.to_be_bytes());
        w.extend_from_slice(&[0, 0]);
    }
    Ok(w)
}

/// The header fields a response is judged by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RespHead {
    pub id: u16,
    pub qr: bool,
    pub tc: bool,
    pub rcode: u8,
}

/// Reads the 12-byte header (RFC 1035 §4.1.1); `None` if too short.
pub fn parse_head(b: &[u8]) -> Option<RespHead> {
    if b.len() < 12 {
        return None;
    }
    Some(RespHead {
        id: u16::from_be_bytes([b[0], b[1]]),
        qr: b[2] & 0x80 != 0,
        tc: b[2] & 0x02 != 0,
        rcode: b[3] & 0x0f,
    })
}

/// Rcode mnemonics as dnsperf prints them (RFC 6895 §2.3).
pub fn rcode_name(r: usize) -> String {
    const N: [&str; 11] = [
        "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN", "YXRRSET",
        "NXRRSET", "NOTAUTH", "NOTZONE",
    ];
    N.get(r)
        .map_or_else(|| format!("RCODE{r}"), |s| (*s).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_file_with_comments() {
        let text = "; comment\n\nexample.org A\nwww.example.org. AAAA\nexample.org\nx.example.org TYPE65\n";
        let q = QuerySet::parse(text.as_bytes(), Edns::default()).unwrap_or_default();
        assert_eq!(q.len(), 4);
        let w = &q.wires[1];
        assert_eq!(&w[12..29], b"\x03www\x07example\x03org\x00");
        assert_eq!(&w[29..33], &[0, 28, 0, 1]);
        let w3 = &q.wires[3];
        assert_eq!(&w3[w3.len() - 4..w3.len() - 2], &[0, 65]);
    }

    #[test]
    fn encodes_edns_do() {
        let e = Edns {
            enabled: true,
            dnssec_ok: true,
            udp_size: 4096,
        };
        let w = encode_query("example.org", 1, e).unwrap_or_default();
        assert_eq!(w[11], 1);
        assert_eq!(
            &w[w.len() - 11..],
            &[0, 0, 41, 0x10, 0, 0, 0, 0x80, 0, 0, 0]
        );
    }

    #[test]
    fn rejects_bad_input() {
        assert!(parse_type("BOGUS").is_err());
        assert!(encode_query("a..b", 1, Edns::default()).is_err());
        assert!(encode_query(&"a".repeat(64), 1, Edns::default()).is_err());
        assert!(QuerySet::parse("; only\n".as_bytes(), Edns::default()).is_err());
        assert_eq!(
            encode_query(".", 2, Edns::default())
                .map(|w| w.len())
                .unwrap_or(0),
            17
        );
        let w = encode_query("a\\.b\\065", 1, Edns::default()).unwrap_or_default();
        assert_eq!(&w[12..18], b"\x04a.bA\x00");
    }
}
