//! The scrub writer every reply passes through (corefile-spec.md §8.3): the
//! client's OPT echoed (normalised) or the reply's OPT normalised, truncation
//! to the client's buffer with TC, and compression when a UDP reply would
//! fragment. Works on wire bytes in place; no allocation on the common path.

use crate::chain::Proto;
use crate::wire::index::{Rebuild, rebuild};
use crate::wire::request::option_supported;
use crate::wire::{HEADER_LEN, MsgIndex, Request, be16, flags, hdr};

/// Location of the last OPT record of the additional section (none when a record
/// does not parse).
fn find_opt(m: &[u8]) -> Option<(usize, usize, usize)> {
    let [_, an, ns, _] = hdr::counts(m);
    let first_additional = usize::from(an) + usize::from(ns);
    let mut found = None;
    let whole = crate::wire::walk_records(m, |i, start, fixed, end| {
        if i >= first_additional && be16(m, fixed) == 41 {
            found = Some((start, fixed, end));
        }
    });
    found.filter(|_| whole)
}

/// CoreDNS `SizeAndDo`: makes the reply's EDNS match the request's.
pub fn size_and_do(resp: &mut Vec<u8>, req: &Request<'_>, udp_size: Option<u16>) {
    let Some(opt) = req.opt else { return };
    let size = udp_size.unwrap_or(opt.udp_size);
    let client_ttl =
        (u32::from(opt.ext_rcode) << 24) | (u32::from(opt.version) << 16) | u32::from(opt.flags);
    match find_opt(resp) {
        Some((start, fixed, end)) => {
            // The OPT's owner is the root (miekg writes `.`): an upstream's other name
            // is replaced when the OPT ends the message (nothing after it can point
            // into its owner).
            let fixed = if fixed - start != 1 && end == resp.len() {
                resp.splice(start..fixed, [0]);
                start + 1
            } else {
                fixed
            };
            resp[fixed + 2..fixed + 4].copy_from_slice(&size.to_be_bytes());
            // Version 0 and the request's DO; the extended rcode stays (CoreDNS clears
            // it here, then miekg's Pack writes the message's full rcode back).
            let mut ttl = crate::wire::be32(resp, fixed + 4) & 0xff00_ff00;
            if opt.do_bit() {
                ttl |= 0x8000;
            }
            resp[fixed + 4..fixed + 8].copy_from_slice(&ttl.to_be_bytes());
        }
        None => {
            resp.push(0);
            resp.extend_from_slice(&41u16.to_be_bytes());
            resp.extend_from_slice(&size.to_be_bytes());
            resp.extend_from_slice(&(client_ttl & 0xff00).to_be_bytes());
            let len_at = resp.len();
            resp.extend_from_slice(&[0, 0]);
            for o in opt.options() {
                if option_supported(o.code) {
                    resp.extend_from_slice(&o.code.to_be_bytes());
                    resp.extend_from_slice(&(o.data.len() as u16).to_be_bytes());
                    resp.extend_from_slice(o.data);
                }
            }
            let n = (resp.len() - len_at - 2) as u16;
            resp[len_at..len_at + 2].copy_from_slice(&n.to_be_bytes());
            let ar = hdr::counts(resp)[3];
            hdr::set_count(resp, 3, ar.saturating_add(1));
        }
    }
}

/// The scrub: `SizeAndDo`, then `Truncate(size)`, then the fragmentation rule.
pub fn scrub(
    resp: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
    req: &Request<'_>,
    udp_size: Option<u16>,
    proto: Proto,
    v6: bool,
) {
    if resp.len() < HEADER_LEN {
        return;
    }
    size_and_do(resp, req, udp_size);
    let size = match proto {
        Proto::Tcp => 65535usize,
        Proto::Udp => usize::from(udp_size.unwrap_or(0).max(512)),
    };
    let frag_limit = if v6 { 1220 } else { 1480 };
    let needs_truncation = resp.len() > size;
    let needs_compression = proto == Proto::Udp && resp.len() > frag_limit;
    if !needs_truncation && !needs_compression {
        return;
    }
    let Some(idx) = MsgIndex::parse(resp) else {
        return;
    };
    let opt = idx
        .rrs
        .iter()
        .rposition(|r| r.section == 3 && r.rtype == 41);
    let order: Vec<usize> = (0..idx.rrs.len()).filter(|&i| Some(i) != opt).collect();
    let reserve = opt.map_or(0, |i| (idx.rrs[i].end - idx.rrs[i].start) as usize);
    let limit = needs_truncation.then_some(size);
    let dropped = rebuild(
        resp,
        &idx,
        &order,
        Rebuild {
            compress: true,
            limit,
            reserve,
        },
        scratch,
    );
    if let Some(i) = opt {
        let r = idx.rrs[i];
        scratch.extend_from_slice(&resp[r.start as usize..r.end as usize]);
        let ar = hdr::counts(scratch)[3];
        hdr::set_count(scratch, 3, ar + 1);
    }
    if dropped {
        let f = hdr::flags(scratch) | flags::TC;
        hdr::set_flags(scratch, f);
    }
    std::mem::swap(resp, scratch);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Verdict, parse_query};

    fn with_opt(mut m: Vec<u8>, size: u16, ttl: u32) -> Vec<u8> {
        m.push(0);
        m.extend_from_slice(&41u16.to_be_bytes());
        m.extend_from_slice(&size.to_be_bytes());
        m.extend_from_slice(&ttl.to_be_bytes());
        m.extend_from_slice(&[0, 0]);
        let ar = hdr::counts(&m)[3];
        hdr::set_count(&mut m, 3, ar + 1);
        m
    }

    fn message(flags: u16) -> Vec<u8> {
        let mut m = vec![0, 7];
        m.extend_from_slice(&flags.to_be_bytes());
        m.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
        m.extend_from_slice(b"\x01a\x07example\x00\x00\x01\x00\x01");
        m
    }

    /// The reply's OPT gets the client's size, version 0 and the client's DO bit;
    /// its extended rcode stays (an upstream's BADCOOKIE is still BADCOOKIE).
    #[test]
    fn size_and_do_keeps_the_extended_rcode() {
        let q = with_opt(message(0x0100), 1232, 0x0000_8000);
        let Verdict::Query(req) = parse_query(&q) else {
            panic!("query")
        };
        // BADCOOKIE (23): header rcode 7, extended bits 1; the upstream said version 1.
        let mut resp = with_opt(message(0x8187), 4096, 0x0101_0000);
        size_and_do(&mut resp, &req, None);
        let (_, fixed, _) = find_opt(&resp).expect("opt");
        assert_eq!(be16(&resp, fixed + 2), 1232, "the client's size");
        assert_eq!(
            crate::wire::be32(&resp, fixed + 4),
            0x0100_8000,
            "ext 1, version 0, DO"
        );
        assert_eq!(hdr::rcode(&resp), 7);
        // No OPT in the reply: the client's is appended, extended rcode 0.
        let mut resp = message(0x8180);
        size_and_do(&mut resp, &req, None);
        let (_, fixed, _) = find_opt(&resp).expect("opt");
        assert_eq!(crate::wire::be32(&resp, fixed + 4), 0x0000_8000);
        // An upstream's OPT owned by another name than the root: owned by `.` after
        // (as miekg writes every OPT), the rest unchanged.
        let mut resp = message(0x8180);
        resp.extend_from_slice(b"\x01x\x00\x00\x29\x10\x00\x00\x00\x00\x00\x00\x00");
        hdr::set_count(&mut resp, 3, 1);
        let before = resp.len();
        size_and_do(&mut resp, &req, None);
        let (start, fixed, end) = find_opt(&resp).expect("opt");
        assert_eq!(
            (fixed - start, end, resp.len()),
            (1, before - 2, before - 2)
        );
        assert_eq!(resp[start], 0);
        assert_eq!(be16(&resp, fixed + 2), 1232);
    }
}
