//! What the cache makes of a reply, on wire bytes: CoreDNS's response type
//! with the cache's refinements (expired signatures, CNAME chains that do not
//! answer the question), whether a reply answers its question, and the
//! minimum TTL that bounds how long it is kept.
//!
//! CoreDNS: `plugin/cache/cache.go` (`key`, `cacheResponseType`,
//! `answersQuestion`, `canonicalName`, `isNODATA`), `plugin/pkg/response/typify.go`,
//! `plugin/pkg/dnsutil/ttl.go` (`MinimalTTLWithMaximum`).

use crate::plugins::log::{RespType, typify_with};
use crate::wire::{HEADER_LEN, MsgIndex, Name, NameRef, be16, flags, hdr};

/// The reply's question: (name, qtype, qclass), if it has exactly one we can read.
pub fn question(m: &[u8]) -> Option<(Name, u16, u16)> {
    if m.len() < HEADER_LEN || hdr::counts(m)[0] != 1 {
        return None;
    }
    let (n, end) = Name::read(m, HEADER_LEN).ok()?;
    if end + 4 > m.len() {
        return None;
    }
    Some((n, be16(m, end), be16(m, end + 2)))
}

/// CoreDNS `cacheResponseType`: `response.Typify` (with its expired-signature
/// rule for DO replies) and CNAME-only answers with an SOA reclassified as NODATA.
pub fn cache_type(m: &[u8], idx: &MsgIndex, unix: impl FnOnce() -> i64) -> RespType {
    let t = typify_with(m, idx, unix);
    if t == RespType::NoError && has_soa(idx) && is_nodata(m, idx) {
        return RespType::NoData;
    }
    t
}

/// An SOA in the authority section.
pub fn has_soa(idx: &MsgIndex) -> bool {
    idx.section(2).any(|r| r.rtype == 6)
}

/// CoreDNS `isNODATA`: a non-empty answer that does not answer the question.
pub fn is_nodata(m: &[u8], idx: &MsgIndex) -> bool {
    idx.count(1) > 0 && !answers_question(m, idx)
}

fn class_matches(rr: u16, q: u16) -> bool {
    q == 255 || rr == q
}

fn owner(m: &[u8], start: u32) -> Option<Name> {
    Name::read(m, start as usize).ok().map(|(n, _)| n)
}

/// CoreDNS `uniqueCNAMETarget`: `Ok(None)` when `name` has no CNAME, `Err` when
/// it has two distinct targets (RFC 2181 §10.1).
fn cname_target(m: &[u8], idx: &MsgIndex, name: &Name, qclass: u16) -> Result<Option<Name>, ()> {
    let mut target: Option<Name> = None;
    for r in idx.section(1) {
        if r.rtype != 5 || !class_matches(r.class, qclass) {
            continue;
        }
        if !owner(m, r.start).is_some_and(|o| o.eq_ignore_case(name)) {
            continue;
        }
        let Ok((t, _)) = Name::read(m, r.rdata().start) else {
            continue;
        };
        match &target {
            Some(prev) if !prev.eq_ignore_case(&t) => return Err(()),
            _ => target = Some(t),
        }
    }
    Ok(target)
}

/// CoreDNS `answersQuestion`: NOERROR, and the answer holds the queried type at
/// the end of the CNAME chain that starts at the question name (RFC 1034 §3.6.2).
pub fn answers_question(m: &[u8], idx: &MsgIndex) -> bool {
    if hdr::rcode(m) != 0 || idx.count(1) == 0 {
        return false;
    }
    let Some((qname, qtype, qclass)) = question(m) else {
        return false;
    };
    match qtype {
        255 => idx.section(1).any(|r| {
            class_matches(r.class, qclass)
                && owner(m, r.start).is_some_and(|o| o.eq_ignore_case(&qname))
        }),
        5 => matches!(cname_target(m, idx, &qname, qclass), Ok(Some(_))),
        _ => {
            // Follow the chain; a revisited owner is a loop (fail closed).
            let mut name = qname;
            let mut visited: Vec<Name> = Vec::new();
            loop {
                if visited.iter().any(|v| v.eq_ignore_case(&name)) {
                    return false;
                }
                match cname_target(m, idx, &name, qclass) {
                    Err(()) => return false,
                    Ok(None) => break,
                    Ok(Some(t)) => {
                        visited.push(name);
                        name = t;
                    }
                }
            }
            idx.section(1).any(|r| {
                r.rtype == qtype
                    && class_matches(r.class, qclass)
                    && owner(m, r.start).is_some_and(|o| o.eq_ignore_case(&name))
            })
        }
    }
}

/// CoreDNS `MinimalTTLWithMaximum` in nanoseconds (Go's `time.Duration`): the lowest
/// TTL of every record but OPT, at most `max_ns`; 5 s for types other than
/// NOERROR/NXDOMAIN/NODATA and for replies without records.
pub fn minimal_ttl(idx: &MsgIndex, t: RespType, max_ns: i64) -> i64 {
    const SEC: i64 = 1_000_000_000;
    let short = super::setup::MIN_TTL * SEC;
    if !matches!(
        t,
        RespType::NoError | RespType::NameError | RespType::NoData
    ) {
        return short;
    }
    let extra = idx.count(3);
    let only_opt = extra == 1 && idx.section(3).all(|r| r.rtype == 41);
    if idx.count(1) + idx.count(2) == 0 && (extra == 0 || only_opt) {
        return short;
    }
    // Go compares against `uint32(minTTL.Seconds())`: whole seconds, truncated to
    // 32 bits as Go's conversion does on amd64.
    let mut min = max_ns;
    for r in &idx.rrs {
        if r.rtype == 41 && r.section == 3 {
            continue;
        }
        if r.ttl < (min / SEC) as u32 {
            min = i64::from(r.ttl) * SEC;
        }
    }
    min
}

/// miekg `Msg.Response` and `request.Match`: a response whose single question
/// is the request's (name case-insensitively, type, class).
pub fn matches_request(m: &[u8], qname: NameRef<'_>, qtype: u16, qclass: u16) -> bool {
    if m.len() < HEADER_LEN || hdr::flags(m) & flags::QR == 0 {
        return false;
    }
    question(m).is_some_and(|(n, t, c)| t == qtype && c == qclass && qname.eq_ignore_case(&n))
}
