//! The transfer client of *secondary*: AXFR in over TCP (RFC 5936) into a new
//! zone, and the SOA serial check against the primaries (RFC 1982 serial
//! arithmetic), as CoreDNS's `plugin/file/secondary.go` does with miekg's
//! `Transfer.In` and `Client.Exchange`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::wire::{HEADER_LEN, MsgIndex, Name, be32, hdr};
use crate::zone::parse::Record;
use crate::zone::{LoadError, Zone, ZoneBuilder, name_len};

/// miekg's dial and read timeouts.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Most DNS messages one transfer may take (a bound, not a CoreDNS limit).
const MAX_MESSAGES: usize = 1 << 20;

/// A failed transfer step, in miekg's words where it has them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum XfrError {
    /// Connecting or talking to the primary failed.
    Io(String),
    /// The primary answered with an error rcode.
    Rcode(u8),
    /// The first record was not a SOA.
    NoSoa,
    /// A message could not be parsed.
    Malformed,
    /// The records could not be inserted.
    Zone(String),
}

impl std::fmt::Display for XfrError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io(e) => f.write_str(e),
            Self::Rcode(rc) => write!(f, "dns: bad xfr rcode: {rc}"),
            Self::NoSoa => f.write_str("dns: no SOA"),
            Self::Malformed => f.write_str("dns: bad message"),
            Self::Zone(e) => f.write_str(e),
        }
    }
}

fn io(e: &std::io::Error, addr: &str) -> XfrError {
    XfrError::Io(format!("dial tcp {addr}: {}", crate::config::go_err(e)))
}

fn query(id: u16, zone: &Name, qtype: u16) -> Vec<u8> {
    let mut m = Vec::with_capacity(HEADER_LEN + zone.len() + 4);
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&0x0100u16.to_be_bytes());
    m.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    m.extend_from_slice(zone.wire());
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
    m
}

fn connect(addr: &str) -> Result<TcpStream, XfrError> {
    let sa: SocketAddr = addr
        .parse()
        .map_err(|_| XfrError::Io(format!("bad address {addr}")))?;
    let s = TcpStream::connect_timeout(&sa, TIMEOUT).map_err(|e| io(&e, addr))?;
    s.set_read_timeout(Some(TIMEOUT))
        .map_err(|e| io(&e, addr))?;
    s.set_write_timeout(Some(TIMEOUT))
        .map_err(|e| io(&e, addr))?;
    let _ = s.set_nodelay(true);
    Ok(s)
}

fn send(s: &mut TcpStream, msg: &[u8], addr: &str) -> Result<(), XfrError> {
    let mut framed = Vec::with_capacity(msg.len() + 2);
    framed.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    framed.extend_from_slice(msg);
    s.write_all(&framed)
        .map_err(|e| XfrError::Io(format!("write tcp {addr}: {e}")))
}

fn recv(s: &mut TcpStream, addr: &str) -> Result<Vec<u8>, XfrError> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len)
        .map_err(|e| XfrError::Io(format!("read tcp {addr}: {e}")))?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut buf)
        .map_err(|e| XfrError::Io(format!("read tcp {addr}: {e}")))?;
    Ok(buf)
}

/// The serial in SOA RDATA at `off..end` of `msg` (names may be compressed).
fn soa_serial(msg: &[u8], off: usize, end: usize) -> Option<u32> {
    let p = Name::skip(msg, off).ok()?;
    let p = Name::skip(msg, p).ok()?;
    (p + 20 <= end).then(|| be32(msg, p))
}

/// The primary's SOA serial (a SOA query over TCP), CoreDNS `shouldTransfer`'s probe.
pub fn primary_serial(addr: &str, zone: &Name) -> Result<Option<u32>, XfrError> {
    let mut s = connect(addr)?;
    let id = fastrand::u16(..);
    send(&mut s, &query(id, zone, 6), addr)?;
    let m = recv(&mut s, addr)?;
    if m.len() < HEADER_LEN || hdr::id(&m) != id {
        return Err(XfrError::Malformed);
    }
    if hdr::rcode(&m) != 0 {
        return Ok(None);
    }
    let idx = MsgIndex::parse(&m).ok_or(XfrError::Malformed)?;
    Ok(idx
        .section(1)
        .find(|r| r.rtype == 6)
        .and_then(|r| soa_serial(&m, r.rdata().start, r.end as usize)))
}

/// RFC 1982 `a < b` (CoreDNS `less`).
pub fn serial_less(a: u32, b: u32) -> bool {
    const MAX: u32 = 2_147_483_647;
    if a < b { b - a <= MAX } else { a - b > MAX }
}

/// Appends the uncompressed form of the name at `off` of `msg`; the offset after it.
fn name_into(msg: &[u8], off: usize, out: &mut Vec<u8>) -> Option<usize> {
    let (n, next) = Name::read(msg, off).ok()?;
    out.extend_from_slice(n.wire());
    Some(next)
}

/// RDATA with its names decompressed (the types whose names may be compressed
/// on the wire, RFC 3597 §4 and the older ones receivers must expect).
fn rdata_into(msg: &[u8], rtype: u16, start: usize, end: usize, out: &mut Vec<u8>) -> Option<()> {
    let (prefix, names) = match rtype {
        2 | 3 | 4 | 5 | 7 | 8 | 9 | 12 | 39 => (0, 1),
        6 => (0, 2),
        14 | 17 => (0, 2),
        15 | 18 | 21 | 36 => (2, 1),
        26 => (2, 2),
        33 => (6, 1),
        _ => {
            out.extend_from_slice(msg.get(start..end)?);
            return Some(());
        }
    };
    out.extend_from_slice(msg.get(start..start + prefix)?);
    let mut p = start + prefix;
    for _ in 0..names {
        p = name_into(msg, p, out)?;
        if p > end {
            return None;
        }
    }
    out.extend_from_slice(msg.get(p..end)?);
    Some(())
}

/// AXFR of `zone` from `addr` into a new zone (CoreDNS `TransferIn`'s body
/// for one primary): records are inserted as they arrive; the transfer ends
/// at the SOA that closes it. With `keep`, the records as received are kept
/// there too (a catalog's, for its parse).
pub fn axfr(
    addr: &str,
    zone: &Name,
    mut keep: Option<&mut Vec<super::catalog::Rec>>,
) -> Result<Zone, XfrError> {
    let mut s = connect(addr)?;
    let id = fastrand::u16(..);
    send(&mut s, &query(id, zone, 252), addr)?;
    let mut b = ZoneBuilder::new(zone, "transfer");
    let mut first = true;
    let (mut owner, mut rdata) = (Vec::with_capacity(256), Vec::with_capacity(512));
    for _ in 0..MAX_MESSAGES {
        let m = recv(&mut s, addr)?;
        if m.len() < HEADER_LEN || hdr::id(&m) != id {
            return Err(XfrError::Malformed);
        }
        let rc = hdr::rcode(&m);
        if rc != 0 {
            return Err(XfrError::Rcode(rc));
        }
        let idx = MsgIndex::parse(&m).ok_or(XfrError::Malformed)?;
        let mut done = false;
        for r in idx.section(1) {
            if first {
                if r.rtype != 6 {
                    return Err(XfrError::NoSoa);
                }
            } else if r.rtype == 6 {
                done = true;
            }
            first = false;
            owner.clear();
            rdata.clear();
            name_into(&m, r.start as usize, &mut owner).ok_or(XfrError::Malformed)?;
            rdata_into(&m, r.rtype, r.rdata().start, r.end as usize, &mut rdata)
                .ok_or(XfrError::Malformed)?;
            if rdata.len() > 65535 || name_len(&owner).is_none() {
                return Err(XfrError::Malformed);
            }
            let rec = Record {
                owner: &owner,
                rtype: r.rtype,
                class: r.class,
                ttl: r.ttl,
                rdata: &rdata,
                file: "transfer",
                line: 0,
            };
            b.insert(&rec)
                .map_err(|e: LoadError| XfrError::Zone(e.to_string()))?;
            if let Some(k) = keep.as_deref_mut() {
                k.push(super::catalog::Rec {
                    owner: owner.clone(),
                    rtype: r.rtype,
                    class: r.class,
                    ttl: r.ttl,
                    rdata: rdata.clone(),
                });
            }
        }
        if done {
            return b.finish().map_err(|e| XfrError::Zone(e.to_string()));
        }
    }
    Err(XfrError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_arithmetic() {
        assert!(serial_less(1, 2));
        assert!(!serial_less(2, 1));
        assert!(serial_less(u32::MAX, 1));
        assert!(!serial_less(1, 1));
        assert!(!serial_less(0, 2_147_483_648));
    }

    #[test]
    fn decompresses_rdata_names() {
        // A message: header, question example.org, then MX 10 mail.<ptr to example.org>.
        let mut m = vec![0u8; 12];
        m.extend_from_slice(b"\x07example\x03org\x00\x00\x0f\x00\x01");
        let rd_start = m.len();
        m.extend_from_slice(&[0, 10]);
        m.extend_from_slice(b"\x04mail\xc0\x0c");
        let mut out = Vec::new();
        rdata_into(&m, 15, rd_start, m.len(), &mut out).expect("rdata");
        assert_eq!(out, b"\x00\x0a\x04mail\x07example\x03org\x00");
    }
}
