//! A borrowed view of a query: header, question and OPT, validated the way
//! miekg/dns accepts and unpacks messages (corefile-spec.md §8.1).

use super::name::{Labels, Name, NameRef};
use super::{HEADER_LEN, be16, be32, flags, hdr};

/// EDNS options CoreDNS keeps when it echoes the client's OPT (NSID, EXPIRE,
/// COOKIE, TCP-KEEPALIVE, PADDING).
pub const SUPPORTED_OPTIONS: [u16; 5] = [3, 9, 10, 11, 12];

/// Option codes added to [`SUPPORTED_OPTIONS`] at run time (*rewrite*'s `edns0
/// local` codes, CoreDNS `edns.SetSupportedOption`): one bit per code.
static EXTRA_SUPPORTED: [std::sync::atomic::AtomicU64; 1024] =
    [const { std::sync::atomic::AtomicU64::new(0) }; 1024];

/// Adds `code` to the options echoed and counted as supported.
pub fn add_supported_option(code: u16) {
    let c = usize::from(code);
    EXTRA_SUPPORTED[c / 64].fetch_or(1 << (c % 64), std::sync::atomic::Ordering::Relaxed);
}

/// Whether CoreDNS's server keeps option `code` (built in or added).
#[inline]
pub fn option_supported(code: u16) -> bool {
    let c = usize::from(code);
    SUPPORTED_OPTIONS.contains(&code)
        || EXTRA_SUPPORTED[c / 64].load(std::sync::atomic::Ordering::Relaxed) & (1 << (c % 64)) != 0
}

/// The client's OPT record.
#[derive(Debug, Clone, Copy)]
pub struct Opt<'a> {
    /// Advertised UDP payload size.
    pub udp_size: u16,
    /// Upper 8 bits of the extended rcode.
    pub ext_rcode: u8,
    /// EDNS version.
    pub version: u8,
    /// The 16 flag bits (DO is 0x8000).
    pub flags: u16,
    /// Raw option data (RDATA of the OPT RR).
    pub rdata: &'a [u8],
}

impl<'a> Opt<'a> {
    /// The DO bit.
    pub fn do_bit(&self) -> bool {
        self.flags & 0x8000 != 0
    }

    /// Iterates options (code, data); malformed tails were rejected at parse time.
    pub fn options(&self) -> impl Iterator<Item = OptOption<'a>> + 'a {
        let d = self.rdata;
        let mut pos = 0usize;
        std::iter::from_fn(move || {
            if pos + 4 > d.len() {
                return None;
            }
            let code = be16(d, pos);
            let len = be16(d, pos + 2) as usize;
            let data = d.get(pos + 4..pos + 4 + len)?;
            pos += 4 + len;
            Some(OptOption { code, data })
        })
    }

    /// Bytes of options CoreDNS drops when echoing (unsupported codes).
    pub fn unsupported_len(&self) -> usize {
        self.options()
            .filter(|o| !option_supported(o.code))
            .map(|o| 4 + o.data.len())
            .sum()
    }
}

/// One EDNS option.
#[derive(Debug, Clone, Copy)]
pub struct OptOption<'a> {
    /// Option code.
    pub code: u16,
    /// Option data.
    pub data: &'a [u8],
}

/// The question name: borrowed from the message, or (for the odd question
/// whose name holds a compression pointer) decompressed into its own box.
#[derive(Clone)]
pub enum QName<'a> {
    /// Uncompressed in the message (every real client's question).
    Wire(NameRef<'a>),
    /// Decompressed.
    Owned(Box<Name>),
}

impl QName<'_> {
    /// The name.
    #[inline]
    pub fn name(&self) -> NameRef<'_> {
        match self {
            Self::Wire(n) => *n,
            Self::Owned(n) => n.borrowed(),
        }
    }
    /// Wire bytes, terminating zero included.
    pub fn wire(&self) -> &[u8] {
        self.name().wire()
    }
    /// Length in octets on the wire.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.name().len()
    }
    /// An owned copy.
    pub fn to_name(&self) -> Name {
        self.name().to_name()
    }
    /// ASCII-lowercased owned copy.
    pub fn to_lowercase(&self) -> Name {
        self.name().to_lowercase()
    }
    /// Iterates labels, leftmost first.
    pub fn labels(&self) -> Labels<'_> {
        self.name().labels()
    }
    /// Offsets of each label start, leftmost first.
    pub fn suffix_offsets(&self) -> impl Iterator<Item = usize> + '_ {
        self.name().suffix_offsets()
    }
    /// True if the name equals `zone` or is below it, case-insensitively.
    pub fn is_subdomain_of(&self, zone: &Name) -> bool {
        self.name().is_subdomain_of(zone)
    }
    /// Case-insensitive equality.
    pub fn eq_ignore_case(&self, o: &Name) -> bool {
        self.name().eq_ignore_case(o)
    }
    /// Writes presentation format.
    pub fn write_presentation(&self, out: &mut String) {
        self.name().write_presentation(out);
    }
}

impl std::fmt::Display for QName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.name().fmt(f)
    }
}

impl std::fmt::Debug for QName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.name().fmt(f)
    }
}

/// A query that passed the accept filter and unpacked.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// The message bytes as parsed (octets after the message are not included).
    pub msg: &'a [u8],
    /// The question name as sent (case preserved, decompressed).
    pub qname: QName<'a>,
    /// Question type.
    pub qtype: u16,
    /// Question class.
    pub qclass: u16,
    /// Offset just past the question.
    pub question_end: usize,
    /// The OPT record, if any (the last one, as miekg's `IsEdns0`).
    pub opt: Option<Opt<'a>>,
    /// Records read in the answer, authority and additional sections: the header's
    /// counts, or fewer when the message ends before them (miekg stops there and
    /// corrects the counts; see [`parse_query`]).
    pub counts: [u16; 3],
    /// A name may be compressed: the question's or a record owner's holds a
    /// compression pointer, or a record's type carries names in its RDATA.
    pub compressed: bool,
}

impl Request<'_> {
    /// Message ID.
    pub fn id(&self) -> u16 {
        hdr::id(self.msg)
    }
    /// Flags word.
    pub fn flags(&self) -> u16 {
        hdr::flags(self.msg)
    }
    /// Opcode.
    pub fn opcode(&self) -> u8 {
        hdr::opcode(self.msg)
    }
    /// DO bit of the OPT.
    pub fn do_bit(&self) -> bool {
        self.opt.is_some_and(|o| o.do_bit())
    }
    /// Question bytes as sent (name + type + class).
    pub fn question_wire(&self) -> &[u8] {
        &self.msg[HEADER_LEN..self.question_end]
    }
    /// Length CoreDNS reports as the request size: the parsed message minus
    /// the EDNS options it strips (log `{size}`).
    pub fn size(&self) -> usize {
        self.msg.len() - self.opt.map_or(0, |o| o.unsupported_len())
    }
}

/// How the server must answer a message that is not a plain query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reject {
    /// FORMERR (1), NOTIMP (4), or SERVFAIL (2) for a message without a question.
    pub rcode: u8,
    /// Offset past the question when the question was unpacked (it is echoed).
    pub question_end: Option<usize>,
}

/// The result of the accept filter and unpack (no allocation on the hot path).
#[derive(Debug, Clone)]
pub enum Verdict<'a> {
    /// A query to route.
    Query(Request<'a>),
    /// Drop silently (short header, or QR=1).
    Ignore,
    /// Answer with a bare FORMERR/NOTIMP built by [`Reject::write`].
    Reject(Reject),
}

impl Verdict<'_> {
    /// True for a query to route.
    pub fn is_some_query(&self) -> bool {
        matches!(self, Self::Query(_))
    }
}

/// Why a message failed to unpack (counted, never a panic).
#[derive(Debug)]
struct Unpack;

/// Applies miekg's accept filter and unpacks `msg` (already cut to the UDP read
/// limit by the caller).
#[inline]
pub fn parse_query(msg: &[u8]) -> Verdict<'_> {
    if msg.len() < HEADER_LEN {
        return Verdict::Ignore;
    }
    let f = hdr::flags(msg);
    if f & flags::QR != 0 {
        return Verdict::Ignore;
    }
    let opcode = hdr::opcode(msg);
    if opcode != 0 && opcode != 4 {
        return Verdict::Reject(Reject {
            rcode: 4,
            question_end: None,
        });
    }
    let [qd, an, ns, ar] = hdr::counts(msg);
    if qd != 1 || an > 1 || ns > 1 || ar > 2 {
        return Verdict::Reject(Reject {
            rcode: 1,
            question_end: None,
        });
    }
    if msg.len() == HEADER_LEN {
        // miekg unpacks a bare header as a message with no sections, whatever its
        // counts; CoreDNS's server answers a message without a question SERVFAIL.
        return Verdict::Reject(Reject {
            rcode: 2,
            question_end: None,
        });
    }
    let formerr = |q: Option<usize>| {
        Verdict::Reject(Reject {
            rcode: 1,
            question_end: q,
        })
    };
    let (qname, qend) = match Name::scan_ref(msg, HEADER_LEN) {
        Ok((Some(n), end)) => (QName::Wire(n), end),
        Ok((None, _)) => match Name::read(msg, HEADER_LEN) {
            Ok((n, end)) => (QName::Owned(Box::new(n)), end),
            Err(_) => return formerr(None),
        },
        Err(_) => return formerr(None),
    };
    if qend + 4 > msg.len() {
        return formerr(None);
    }
    let qtype = be16(msg, qend);
    let qclass = be16(msg, qend + 2);
    let question_end = qend + 4;
    let mut pos = question_end;
    let mut opt = None;
    let mut counts = [0u16; 3];
    let mut compressed = matches!(qname, QName::Owned(_));
    for i in 0..(an as usize + ns as usize + ar as usize) {
        // A message that ends before its counts say: miekg reads no further (a record
        // that does not advance the offset ends the section: "l is a lie") and
        // accepts what it has.
        if pos == msg.len() {
            break;
        }
        let in_additional = i >= an as usize + ns as usize;
        let section = if in_additional {
            2
        } else {
            usize::from(i >= an as usize)
        };
        counts[section] += 1;
        match read_rr(msg, pos) {
            Ok((next, rtype, class, ttl, rdata, owner_compressed)) => {
                compressed |= owner_compressed || super::index::rdata_has_names(rtype);
                if in_additional && rtype == 41 {
                    if check_options(rdata).is_err() {
                        return formerr(Some(question_end));
                    }
                    opt = Some(Opt {
                        udp_size: class,
                        ext_rcode: (ttl >> 24) as u8,
                        version: (ttl >> 16) as u8,
                        flags: ttl as u16,
                        rdata,
                    });
                }
                pos = next;
            }
            Err(Unpack) => return formerr(Some(question_end)),
        }
    }
    Verdict::Query(Request {
        msg: &msg[..pos],
        qname,
        qtype,
        qclass,
        question_end,
        opt,
        counts,
        compressed,
    })
}

/// Past the record, TYPE, CLASS, TTL, RDATA, and whether the owner name is compressed.
type Rr<'a> = (usize, u16, u16, u32, &'a [u8], bool);

fn read_rr(msg: &[u8], pos: usize) -> Result<Rr<'_>, Unpack> {
    let p = Name::skip(msg, pos).map_err(|_| Unpack)?;
    // Validate the owner name fully (pointers, loops, length) as miekg does.
    let (_, owner_compressed) = Name::scan(msg, pos).map_err(|_| Unpack)?;
    if p + 10 > msg.len() {
        return Err(Unpack);
    }
    let rtype = be16(msg, p);
    let class = be16(msg, p + 2);
    let ttl = be32(msg, p + 4);
    let rdlen = be16(msg, p + 8) as usize;
    let rdata = msg.get(p + 10..p + 10 + rdlen).ok_or(Unpack)?;
    // miekg unpacks RDATA per type; the fixed-size ones fail on a wrong length.
    let fixed = match rtype {
        1 => Some(4),
        28 => Some(16),
        _ => None,
    };
    if let Some(n) = fixed {
        if rdlen != n && rdlen != 0 {
            return Err(Unpack);
        }
    }
    Ok((p + 10 + rdlen, rtype, class, ttl, rdata, owner_compressed))
}

fn check_options(d: &[u8]) -> Result<(), Unpack> {
    let mut pos = 0;
    while pos < d.len() {
        if pos + 4 > d.len() {
            return Err(Unpack);
        }
        let len = be16(d, pos + 2) as usize;
        pos += 4 + len;
        if pos > d.len() {
            return Err(Unpack);
        }
    }
    Ok(())
}

impl Reject {
    /// Writes the reply miekg sends for a rejected message: the request header
    /// with QR set, AA and Z cleared, TC/RD/RA/AD/CD echoed, opcode QUERY for
    /// FORMERR (kept for NOTIMP), and the question if it was unpacked.
    pub fn write(&self, msg: &[u8], out: &mut Vec<u8>) {
        out.clear();
        let f = hdr::flags(msg);
        if self.rcode == 2 {
            // No question: miekg's `SetRcode` (`SetReply`): ID, QR, the opcode, and
            // RD and CD only for a QUERY; no sections.
            let opcode = hdr::opcode(msg);
            let copied = if opcode == 0 {
                f & (flags::RD | flags::CD)
            } else {
                0
            };
            let nf = flags::QR | (u16::from(opcode) << 11) | copied | 2;
            out.extend_from_slice(&msg[0..2]);
            out.extend_from_slice(&nf.to_be_bytes());
            out.extend_from_slice(&[0; 8]);
            return;
        }
        let keep = flags::TC | flags::RD | flags::RA | flags::AD | flags::CD;
        let opcode = if self.rcode == 4 {
            u16::from(hdr::opcode(msg))
        } else {
            0
        };
        let nf = flags::QR | (opcode << 11) | (f & keep) | u16::from(self.rcode);
        out.extend_from_slice(&msg[0..2]);
        out.extend_from_slice(&nf.to_be_bytes());
        let qd: u16 = u16::from(self.question_end.is_some());
        out.extend_from_slice(&qd.to_be_bytes());
        out.extend_from_slice(&[0; 6]);
        if let Some(end) = self.question_end {
            out.extend_from_slice(&msg[HEADER_LEN..end]);
        }
    }
}
