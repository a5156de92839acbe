//! The DNS wire layer of the hot path: a borrowed view of a query
//! ([`Request`]), a response builder that writes into a reusable buffer
//! ([`Builder`]), an index over a finished message's records ([`MsgIndex`]) for
//! the plugins that inspect or reshape answers, and the mnemonic tables.
//!
//! Parsing follows miekg/dns as CoreDNS 1.14.7 uses it (corefile-spec.md §8):
//! the accept filter, FORMERR/NOTIMP shapes, the 512-byte UDP read limit.

mod builder;
pub mod index;
mod name;
pub mod request;
pub mod types;

pub use builder::{Builder, SectionKind, bare_reply};
pub use index::{MsgIndex, RrRef};
pub use name::{MAX_NAME, Name, NameError, NameRef};
pub use request::{Opt, OptOption, QName, Reject, Request, Verdict, parse_query};

/// DNS header length.
pub const HEADER_LEN: usize = 12;
/// Largest UDP query CoreDNS reads (miekg's default `UDPSize`).
pub const UDP_READ_LIMIT: usize = 512;

/// A UDP datagram as miekg's server reads it: at most [`UDP_READ_LIMIT`] octets.
#[inline]
pub fn udp_read(data: &[u8]) -> &[u8] {
    &data[..data.len().min(UDP_READ_LIMIT)]
}
/// Smallest reply size a client can be limited to.
pub const MIN_MSG_SIZE: u16 = 512;
/// Largest DNS message.
pub const MAX_MSG_SIZE: u16 = 65535;

/// Header flag bits (in the 16-bit flags word).
pub mod flags {
    /// Query/response.
    pub const QR: u16 = 1 << 15;
    /// Authoritative answer.
    pub const AA: u16 = 1 << 10;
    /// Truncated.
    pub const TC: u16 = 1 << 9;
    /// Recursion desired.
    pub const RD: u16 = 1 << 8;
    /// Recursion available.
    pub const RA: u16 = 1 << 7;
    /// The Z bit.
    pub const Z: u16 = 1 << 6;
    /// Authentic data.
    pub const AD: u16 = 1 << 5;
    /// Checking disabled.
    pub const CD: u16 = 1 << 4;
}

/// Reads a big-endian u16 at `off` (callers bound-check).
#[inline]
pub fn be16(b: &[u8], off: usize) -> u16 {
    u16::from_be_bytes([b[off], b[off + 1]])
}

/// Reads a big-endian u32 at `off` (callers bound-check).
#[inline]
pub fn be32(b: &[u8], off: usize) -> u32 {
    u32::from_be_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// Header accessors over any message buffer of at least 12 bytes.
pub mod hdr {
    use super::be16;

    /// Message ID.
    pub fn id(m: &[u8]) -> u16 {
        be16(m, 0)
    }
    /// Flags word.
    pub fn flags(m: &[u8]) -> u16 {
        be16(m, 2)
    }
    /// Low 4 bits of the rcode.
    pub fn rcode(m: &[u8]) -> u8 {
        m[3] & 0x0f
    }
    /// Opcode.
    pub fn opcode(m: &[u8]) -> u8 {
        (m[2] >> 3) & 0x0f
    }
    /// Section counts (qd, an, ns, ar).
    #[inline]
    pub fn counts(m: &[u8]) -> [u16; 4] {
        // One bounds check for the four words (this runs several times per query).
        let c = &m[4..12];
        [
            u16::from_be_bytes([c[0], c[1]]),
            u16::from_be_bytes([c[2], c[3]]),
            u16::from_be_bytes([c[4], c[5]]),
            u16::from_be_bytes([c[6], c[7]]),
        ]
    }
    /// Sets the ID.
    pub fn set_id(m: &mut [u8], id: u16) {
        m[0..2].copy_from_slice(&id.to_be_bytes());
    }
    /// Sets the flags word.
    pub fn set_flags(m: &mut [u8], f: u16) {
        m[2..4].copy_from_slice(&f.to_be_bytes());
    }
    /// Sets the low 4 rcode bits.
    pub fn set_rcode(m: &mut [u8], rc: u8) {
        m[3] = (m[3] & 0xf0) | (rc & 0x0f);
    }
    /// Sets one section count (0 = qd … 3 = ar).
    pub fn set_count(m: &mut [u8], section: usize, n: u16) {
        let o = 4 + section * 2;
        m[o..o + 2].copy_from_slice(&n.to_be_bytes());
    }
}

#[cfg(test)]
mod tests;

/// Walks the records after the question section of `m`, calling `f(i, start, fixed,
/// end)` for each whole record (`i` counts from the first answer; `fixed` is the
/// offset of its TYPE). Stops at the first record that does not fit in the message
/// and returns false; true when every record the counts announce was walked.
pub fn walk_records(m: &[u8], mut f: impl FnMut(usize, usize, usize, usize)) -> bool {
    if m.len() < HEADER_LEN {
        return false;
    }
    let [qd, an, ns, ar] = hdr::counts(m);
    let mut pos = HEADER_LEN;
    for _ in 0..qd {
        match Name::skip(m, pos) {
            Ok(p) => pos = p + 4,
            Err(_) => return false,
        }
    }
    for i in 0..(usize::from(an) + usize::from(ns) + usize::from(ar)) {
        let Ok(fixed) = Name::skip(m, pos) else {
            return false;
        };
        if fixed + 10 > m.len() {
            return false;
        }
        let end = fixed + 10 + usize::from(be16(m, fixed + 8));
        if end > m.len() {
            return false;
        }
        f(i, pos, fixed, end);
        pos = end;
    }
    true
}

/// The rcode miekg's `Unpack` gives a message: the header's 4 bits with the extended
/// bits of the last OPT record of the additional section (`IsEdns0`) above them, so
/// an upstream's BADVERS/BADSIG (16) or BADCOOKIE (23) is read whole. Records that do
/// not parse end the scan with what was read.
pub fn full_rcode(m: &[u8]) -> u16 {
    if m.len() < HEADER_LEN {
        return 0;
    }
    let [_, an, ns, ar] = hdr::counts(m);
    let base = u16::from(hdr::rcode(m));
    if ar == 0 {
        return base;
    }
    let first_additional = usize::from(an) + usize::from(ns);
    let mut rcode = base;
    walk_records(m, |i, _, fixed, _| {
        if i >= first_additional && be16(m, fixed) == 41 {
            rcode = base | u16::from(m[fixed + 4]) << 4;
        }
    });
    rcode
}
