//! An index over a complete message's records, and the rebuild that plugins and
//! the server use to drop, reorder, truncate or compress records. Works on any
//! message, compressed or not: names are expanded and re-emitted.

use super::name::Name;
use super::{HEADER_LEN, be16, be32, hdr};

/// One record of an indexed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RrRef {
    /// Section: 1 answer, 2 authority, 3 additional.
    pub section: u8,
    /// Offset of the owner name.
    pub start: u32,
    /// Offset of the TYPE field (just past the owner name).
    pub fixed: u32,
    /// Offset just past the record.
    pub end: u32,
    /// TYPE.
    pub rtype: u16,
    /// CLASS.
    pub class: u16,
    /// TTL.
    pub ttl: u32,
}

impl RrRef {
    /// Offset of the TTL field.
    pub fn ttl_offset(&self) -> usize {
        self.fixed as usize + 4
    }
    /// RDATA range.
    pub fn rdata(&self) -> std::ops::Range<usize> {
        self.fixed as usize + 10..self.end as usize
    }
}

/// Records of a message, in order, with the question's end.
#[derive(Debug, Clone, Default)]
pub struct MsgIndex {
    /// Offset past the question section.
    pub question_end: usize,
    /// Records in message order.
    pub rrs: Vec<RrRef>,
}

impl MsgIndex {
    /// Indexes `msg`; `None` if it is malformed.
    pub fn parse(msg: &[u8]) -> Option<Self> {
        let mut idx = Self::default();
        Self::parse_into(msg, &mut idx)?;
        Some(idx)
    }

    /// Indexes into an existing value (reusing its allocation).
    pub fn parse_into(msg: &[u8], idx: &mut Self) -> Option<()> {
        idx.rrs.clear();
        if msg.len() < HEADER_LEN {
            return None;
        }
        let [qd, an, ns, ar] = hdr::counts(msg);
        let mut pos = HEADER_LEN;
        for _ in 0..qd {
            pos = Name::skip(msg, pos).ok()? + 4;
            if pos > msg.len() {
                return None;
            }
        }
        idx.question_end = pos;
        for (section, n) in [(1u8, an), (2, ns), (3, ar)] {
            for _ in 0..n {
                let start = pos;
                let fixed = Name::skip(msg, pos).ok()?;
                if fixed + 10 > msg.len() {
                    return None;
                }
                let rdlen = be16(msg, fixed + 8) as usize;
                let end = fixed + 10 + rdlen;
                if end > msg.len() {
                    return None;
                }
                idx.rrs.push(RrRef {
                    section,
                    start: start as u32,
                    fixed: fixed as u32,
                    end: end as u32,
                    rtype: be16(msg, fixed),
                    class: be16(msg, fixed + 2),
                    ttl: be32(msg, fixed + 4),
                });
                pos = end;
            }
        }
        Some(())
    }

    /// Runs `f` on the index of `msg`, reusing a per-thread index (no
    /// allocation at steady state). `None` if `msg` is malformed.
    pub fn with<R>(msg: &[u8], f: impl FnOnce(&Self) -> R) -> Option<R> {
        thread_local! {
            static IDX: std::cell::RefCell<MsgIndex> = std::cell::RefCell::new(MsgIndex::default());
        }
        IDX.with(|cell| match cell.try_borrow_mut() {
            Ok(mut idx) => {
                Self::parse_into(msg, &mut idx)?;
                Some(f(&idx))
            }
            // Re-entered (an index inside `f`): fall back to a fresh one.
            Err(_) => Self::parse(msg).map(|idx| f(&idx)),
        })
    }

    /// Records of one section.
    pub fn section(&self, s: u8) -> impl Iterator<Item = &RrRef> {
        self.rrs.iter().filter(move |r| r.section == s)
    }

    /// Number of records in a section.
    pub fn count(&self, s: u8) -> usize {
        self.section(s).count()
    }

    /// The rcode of message `m` (indexed here) as miekg unpacks it: the header's 4 bits
    /// with the extended bits of the last OPT record (see [`super::full_rcode`]).
    pub fn full_rcode(&self, m: &[u8]) -> u16 {
        let base = u16::from(super::hdr::rcode(m));
        self.section(3)
            .filter(|r| r.rtype == 41)
            .last()
            .map_or(base, |r| base | ((r.ttl >> 24) as u16) << 4)
    }
}

/// Layout of names inside RDATA, for types whose names may be compressed.
enum RdataNames {
    None,
    /// `prefix` fixed octets, then `names` names, then the rest verbatim.
    Names {
        prefix: usize,
        names: usize,
        compress: bool,
    },
}

/// Whether records of `rtype` carry names in their RDATA that [`rebuild`] expands.
pub fn rdata_has_names(rtype: u16) -> bool {
    matches!(rdata_names(rtype), RdataNames::Names { .. })
}

fn rdata_names(rtype: u16) -> RdataNames {
    use RdataNames::*;
    match rtype {
        // NS MD MF CNAME MB MG MR PTR: one name, compressible (RFC 3597 §4).
        2 | 3 | 4 | 5 | 7 | 8 | 9 | 12 => Names {
            prefix: 0,
            names: 1,
            compress: true,
        },
        6 | 14 => Names {
            prefix: 0,
            names: 2,
            compress: true,
        }, // SOA, MINFO
        15 => Names {
            prefix: 2,
            names: 1,
            compress: true,
        }, // MX
        39 => Names {
            prefix: 0,
            names: 1,
            compress: false,
        }, // DNAME
        17 => Names {
            prefix: 0,
            names: 2,
            compress: false,
        }, // RP
        18 | 21 | 36 => Names {
            prefix: 2,
            names: 1,
            compress: false,
        }, // AFSDB RT KX
        26 => Names {
            prefix: 2,
            names: 2,
            compress: false,
        }, // PX
        33 => Names {
            prefix: 6,
            names: 1,
            compress: false,
        }, // SRV
        47 => Names {
            prefix: 0,
            names: 1,
            compress: false,
        }, // NSEC
        _ => None,
    }
}

/// A compression dictionary of names already written (wire offsets of suffixes).
struct Dict {
    entries: Vec<(Name, u16)>,
}

impl Dict {
    fn find(&self, n: &Name, from: usize) -> Option<u16> {
        // `from` is the offset of the suffix within `n`.
        let suffix = &n.wire()[from..];
        self.entries
            .iter()
            .find(|(e, _)| e.wire().eq_ignore_ascii_case(suffix))
            .map(|(_, o)| *o)
    }
}

/// Writes `n` at the end of `out`, compressing against `dict` when `compress`.
fn write_name(out: &mut Vec<u8>, n: &Name, dict: &mut Dict, compress: bool) {
    let w = n.wire();
    let offsets: Vec<usize> = n.suffix_offsets().collect();
    for &o in &offsets {
        if compress {
            if let Some(ptr) = dict.find(n, o) {
                out.extend_from_slice(&(0xC000 | ptr).to_be_bytes());
                return;
            }
        }
        let here = out.len();
        if here < 0x3FFF {
            if let Ok(s) = Name::from_wire(&w[o..]) {
                dict.entries.push((s, here as u16));
            }
        }
        let l = w[o] as usize;
        out.extend_from_slice(&w[o..o + 1 + l]);
    }
    out.push(0);
}

/// Options of [`rebuild`].
#[derive(Debug, Clone, Copy)]
pub struct Rebuild {
    /// Compress names (owner names and RFC 1035 RDATA names).
    pub compress: bool,
    /// Size limit; records that don't fit are dropped (miekg `Truncate`), with
    /// `reserve` octets kept free (for the OPT appended afterwards).
    pub limit: Option<usize>,
    /// Octets reserved under `limit`.
    pub reserve: usize,
}

/// Rewrites `msg` into `out` with every record, every name written in full.
pub fn expand(msg: &[u8], idx: &MsgIndex, out: &mut Vec<u8>) {
    let order: Vec<usize> = (0..idx.rrs.len()).collect();
    let opts = Rebuild {
        compress: false,
        limit: None,
        reserve: 0,
    };
    rebuild(msg, idx, &order, opts, out);
}

/// Sets the UDP payload size in the last OPT record of `m`, if it has one.
pub fn set_opt_size(m: &mut [u8], size: u16) {
    let Some(idx) = MsgIndex::parse(m) else {
        return;
    };
    if let Some(rr) = idx
        .rrs
        .iter()
        .rev()
        .find(|r| r.section == 3 && r.rtype == 41)
    {
        let at = rr.fixed as usize + 2;
        m[at..at + 2].copy_from_slice(&size.to_be_bytes());
    }
}

/// Rewrites `msg` into `out` keeping the records `order` lists (indices into
/// `idx.rrs`, section order preserved by the caller). Returns whether records
/// were dropped for the size limit. On malformed RDATA names the record is
/// copied with its RDATA verbatim.
pub fn rebuild(
    msg: &[u8],
    idx: &MsgIndex,
    order: &[usize],
    opts: Rebuild,
    out: &mut Vec<u8>,
) -> bool {
    out.clear();
    out.extend_from_slice(&msg[..HEADER_LEN]);
    let mut dict = Dict {
        entries: Vec::new(),
    };
    // Question(s).
    let mut pos = HEADER_LEN;
    while pos < idx.question_end {
        let Ok((n, next)) = Name::read(msg, pos) else {
            break;
        };
        write_name(out, &n, &mut dict, opts.compress);
        out.extend_from_slice(&msg[next..next + 4]);
        pos = next + 4;
    }
    let size = opts.limit.map(|l| l.saturating_sub(opts.reserve));
    let mut counts = [0u16; 3];
    let mut dropped = false;
    for &i in order {
        let rr = idx.rrs[i];
        let mark = out.len();
        let dict_mark = dict.entries.len();
        let Ok((owner, _)) = Name::read(msg, rr.start as usize) else {
            continue;
        };
        write_name(out, &owner, &mut dict, opts.compress);
        let f = rr.fixed as usize;
        out.extend_from_slice(&msg[f..f + 8]);
        let len_at = out.len();
        out.extend_from_slice(&[0, 0]);
        let rd = rr.rdata();
        match rdata_names(rr.rtype) {
            RdataNames::Names {
                prefix,
                names,
                compress,
            } if rd.len() >= prefix => {
                let mut p = rd.start;
                out.extend_from_slice(&msg[p..p + prefix]);
                p += prefix;
                let mut ok = true;
                for _ in 0..names {
                    match Name::read(msg, p) {
                        Ok((n, next)) if next <= rd.end => {
                            write_name(out, &n, &mut dict, opts.compress && compress);
                            p = next;
                        }
                        _ => {
                            ok = false;
                            break;
                        }
                    }
                }
                if ok {
                    out.extend_from_slice(&msg[p..rd.end]);
                }
                // Names expanded past what RDLENGTH can say: the data as it came.
                if !ok || out.len() - len_at - 2 > usize::from(u16::MAX) {
                    out.truncate(len_at + 2);
                    out.extend_from_slice(&msg[rd.clone()]);
                }
            }
            _ => out.extend_from_slice(&msg[rd.clone()]),
        }
        let n = u16::try_from(out.len() - len_at - 2).unwrap_or(u16::MAX);
        out[len_at..len_at + 2].copy_from_slice(&n.to_be_bytes());
        if let Some(size) = size {
            if out.len() > size {
                out.truncate(mark);
                dict.entries.truncate(dict_mark);
                dropped = true;
                break;
            }
        }
        counts[rr.section as usize - 1] += 1;
    }
    hdr::set_count(out, 1, counts[0]);
    hdr::set_count(out, 2, counts[1]);
    hdr::set_count(out, 3, counts[2]);
    dropped
}
