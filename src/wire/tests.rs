//! Wire-layer tests: accept filter, reject shapes, builder, rebuild/truncation.

use super::index::{Rebuild, rebuild};
use super::*;

/// A query for `name`/`qtype` with optional EDNS (size, flags, options).
pub(crate) fn query(id: u16, name: &str, qtype: u16, edns: Option<(u16, u16, &[u8])>) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&0x0100u16.to_be_bytes());
    m.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, u8::from(edns.is_some())]);
    m.extend_from_slice(Name::parse(name).expect("name").wire());
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
    if let Some((size, fl, opts)) = edns {
        m.push(0);
        m.extend_from_slice(&41u16.to_be_bytes());
        m.extend_from_slice(&size.to_be_bytes());
        m.extend_from_slice(&[0, 0]);
        m.extend_from_slice(&fl.to_be_bytes());
        m.extend_from_slice(&(opts.len() as u16).to_be_bytes());
        m.extend_from_slice(opts);
    }
    m
}

#[test]
fn parses_plain_query() {
    let q = query(
        7,
        "Www.Example.org",
        1,
        Some((4096, 0x8000, &[0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8])),
    );
    let Verdict::Query(r) = parse_query(&q) else {
        panic!("not a query")
    };
    assert_eq!(r.id(), 7);
    assert_eq!(r.qname.to_string(), "Www.Example.org.");
    assert_eq!(r.qtype, 1);
    assert!(r.do_bit());
    assert_eq!(r.opt.map(|o| o.udp_size), Some(4096));
    assert_eq!(r.size(), q.len());
}

#[test]
fn accept_filter() {
    let mut q = query(1, "a.", 1, None);
    q[2] |= 0x80; // QR
    assert!(matches!(parse_query(&q), Verdict::Ignore));
    assert!(matches!(parse_query(&q[..11]), Verdict::Ignore));
    let mut q = query(1, "a.", 1, None);
    q[2] = (5 << 3) | 0x03; // UPDATE, TC|RD
    let Verdict::Reject(r) = parse_query(&q) else {
        panic!()
    };
    assert_eq!(r.rcode, 4);
    let mut out = Vec::new();
    r.write(&q, &mut out);
    assert_eq!(out.len(), 12);
    assert_eq!(hdr::opcode(&out), 5);
    assert_eq!(
        hdr::flags(&out) & (flags::TC | flags::RD | flags::QR),
        flags::TC | flags::RD | flags::QR
    );
    let mut q = query(1, "a.", 1, None);
    q[5] = 2; // QDCOUNT 2
    let Verdict::Reject(r) = parse_query(&q) else {
        panic!()
    };
    assert_eq!((r.rcode, r.question_end), (1, None));
    // A bare header that passes the filter (QDCOUNT 1) unpacks as a message without a
    // question: SERVFAIL as CoreDNS's `SetRcode` builds it (RD and CD copied for a
    // QUERY only, the opcode kept, no sections).
    let q = [0x11, 0x11, 0x01 | 0x04, 0x10 | 0x20, 0, 1, 0, 0, 0, 0, 0, 1];
    let Verdict::Reject(r) = parse_query(&q) else {
        panic!()
    };
    let mut out = Vec::new();
    r.write(&q, &mut out);
    assert_eq!(out, [0x11, 0x11, 0x81, 0x12, 0, 0, 0, 0, 0, 0, 0, 0]);
    let notify = [0x11, 0x12, (4 << 3) | 0x01, 0x10, 0, 1, 0, 0, 0, 0, 0, 0];
    let Verdict::Reject(r) = parse_query(&notify) else {
        panic!()
    };
    r.write(&notify, &mut out);
    assert_eq!(
        out,
        [0x11, 0x12, 0x80 | (4 << 3), 0x02, 0, 0, 0, 0, 0, 0, 0, 0]
    );
    // QDCOUNT 0 stays FORMERR (the accept filter).
    let mut zero = q;
    zero[5] = 0;
    assert!(matches!(
        parse_query(&zero),
        Verdict::Reject(Reject { rcode: 1, .. })
    ));
}

#[test]
fn unpack_failure_keeps_question() {
    let mut q = query(1, "www.example.org", 1, None);
    q[11] = 1; // ARCOUNT 1 and a record cut after its type
    q.extend_from_slice(&[0, 0, 41]);
    let Verdict::Reject(r) = parse_query(&q) else {
        panic!()
    };
    let mut out = Vec::new();
    r.write(&q, &mut out);
    assert_eq!(out.len(), 33);
    assert_eq!(hdr::counts(&out), [1, 0, 0, 0]);
}

#[test]
fn garbage_never_panics() {
    let mut seed = 0x1234_5678u32;
    for len in 0..600usize {
        let mut b = vec![0u8; len % 300];
        for x in b.iter_mut() {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            *x = seed as u8;
        }
        if b.len() > 12 {
            b[2] &= 0x07;
            b[4] = 0;
            b[5] = 1;
        }
        let _ = parse_query(&b);
        let _ = MsgIndex::parse(&b);
    }
    // Compression loop in the question.
    let mut q = query(1, "a.", 1, None);
    q.truncate(12);
    q.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1]);
    assert!(matches!(parse_query(&q), Verdict::Reject(_)));
}

#[test]
fn question_name_borrowed_or_decompressed() {
    // Uncompressed (every real client): borrowed from the message.
    let q = query(1, "WWW.example.org", 1, None);
    let Verdict::Query(r) = parse_query(&q) else {
        panic!("query");
    };
    assert!(matches!(r.qname, crate::wire::QName::Wire(_)));
    assert_eq!(r.qname.to_string(), "WWW.example.org.");
    assert_eq!(r.qname.to_lowercase().to_string(), "www.example.org.");
    // A pointer into the header (QDCOUNT's high octet, 0: the root) is legal
    // for miekg: decompressed into an owned name, the question echoed as sent.
    let mut q = query(1, "a.", 1, None);
    q.truncate(12);
    q.extend_from_slice(&[0xC0, 4, 0, 1, 0, 1]);
    let Verdict::Query(r) = parse_query(&q) else {
        panic!("compressed query");
    };
    assert!(matches!(r.qname, crate::wire::QName::Owned(_)));
    assert_eq!(r.qname.to_string(), ".");
    assert_eq!(r.question_wire(), &[0xC0, 4, 0, 1, 0, 1]);
}

/// `Name::scan` accepts and rejects exactly what `Name::read` does, at the same offsets.
#[test]
fn scan_agrees_with_read() {
    let mut seed = 0x1234_5678u32;
    for i in 0..20_000 {
        let len = 1 + (i % 64);
        let mut b = vec![0u8; len];
        for x in &mut b {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            // Mostly short labels, some pointers and zeros.
            *x = match seed % 8 {
                0 => 0,
                1 => 0xC0,
                2..=4 => (seed >> 8) as u8 % 8,
                _ => (seed >> 8) as u8,
            };
        }
        let read = Name::read(&b, 0).map(|(n, end)| (n.wire().to_vec(), end));
        let scan = Name::scan(&b, 0);
        match (read, scan) {
            (Ok((w, end)), Ok((send, compressed))) => {
                assert_eq!(end, send, "{b:?}");
                if !compressed {
                    assert_eq!(&b[..end], &w[..], "{b:?}");
                }
            }
            (Err(e), Err(f)) => assert_eq!(e, f, "{b:?}"),
            (r, s) => panic!("{b:?}: read {r:?} scan {s:?}"),
        }
    }
}

#[test]
fn truncation_keeps_whole_rrs() {
    let q = query(1, "big.example.org", 1, None);
    let Verdict::Query(r) = parse_query(&q) else {
        panic!()
    };
    let mut buf = Vec::new();
    let mut b = Builder::reply(&mut buf, &r);
    for i in 0..40u8 {
        b.rr_wire(r.qname.wire(), 1, 1, 300, &[192, 0, 2, i]);
    }
    b.finish();
    let idx = MsgIndex::parse(&buf).expect("index");
    let order: Vec<usize> = (0..idx.rrs.len()).collect();
    let mut out = Vec::new();
    let dropped = rebuild(
        &buf,
        &idx,
        &order,
        Rebuild {
            compress: true,
            limit: Some(512),
            reserve: 0,
        },
        &mut out,
    );
    assert!(dropped);
    assert_eq!(hdr::counts(&out)[1], 29);
    assert!(out.len() <= 512);
    let again = MsgIndex::parse(&out).expect("reindex");
    assert_eq!(again.rrs.len(), 29);
}

#[test]
fn builder_leaves_out_what_a_message_cannot_carry() {
    use super::builder::{Builder, SectionKind};
    let q = query(7, "big.test.", 1, None);
    let Verdict::Query(r) = parse_query(&q) else {
        panic!("query");
    };
    let mut buf = Vec::new();
    let mut b = Builder::reply(&mut buf, &r);
    b.section(SectionKind::Answer);
    let owner = r.question_wire();
    let owner = &owner[..owner.len() - 4];
    // One more record than a 16-bit count holds: the last is left out (the count
    // overflowed before: a panic in debug builds, a wrapped count in release).
    for i in 0..=u32::from(u16::MAX) {
        b.rr_wire(owner, 1, 1, 60, &i.to_be_bytes());
    }
    // RDATA longer than RDLENGTH holds, either way a record is written: left out.
    b.section(SectionKind::Additional);
    b.rr_wire(owner, 16, 1, 60, &vec![0; 65_536]);
    b.rr_parts(&[owner], 16, 1, 60, &vec![0; 65_536]);
    b.rr_with(owner, 16, 1, 60, |v| v.resize(v.len() + 65_536, 0));
    b.rr_with(owner, 16, 1, 60, |v| v.extend_from_slice(b"\x02ok"));
    let len = b.finish();
    assert_eq!(hdr::counts(&buf), [1, u16::MAX, 0, 1]);
    let rec = owner.len() + 10;
    assert_eq!(len, q.len() + usize::from(u16::MAX) * (rec + 4) + rec + 3);
    assert_eq!(&buf[len - 3..], b"\x02ok");
}

#[test]
fn counts_past_the_end_of_the_message_are_what_was_read() {
    // miekg stops at the end of the message and corrects the counts; a record
    // that is cut off is still a FORMERR.
    let mut q = query(7, "a.example.", 1, None);
    q[11] = 2;
    let Verdict::Query(r) = parse_query(&q) else {
        panic!("accepted");
    };
    assert_eq!(r.counts, [0, 0, 0]);
    let mut q = query(7, "a.example.", 1, Some((1232, 0, &[])));
    q[7] = 1;
    q[11] = 2;
    let Verdict::Query(r) = parse_query(&q) else {
        panic!("accepted");
    };
    // The OPT is read as the answer record the counts announce first.
    assert_eq!(r.counts, [1, 0, 0]);
    let q = query(7, "a.example.", 1, Some((1232, 0, &[])));
    let Verdict::Query(r) = parse_query(&q) else {
        panic!("accepted");
    };
    assert_eq!(
        (r.counts, r.opt.map(|o| o.udp_size)),
        ([0, 0, 1], Some(1232))
    );
    let mut cut = query(7, "a.example.", 1, Some((1232, 0, &[])));
    cut.pop();
    assert!(matches!(parse_query(&cut), Verdict::Reject(_)));
}
