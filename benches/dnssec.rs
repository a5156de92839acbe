//! *dnssec*: the cost of signing one reply (an A RRset and the apex NS in the
//! authority section), with the signatures in the cache (the steady state for
//! a popular name) and made afresh (a name not signed before: an ECDSA P-256
//! or Ed25519 signature per RRset), and of a black-lie NXDOMAIN.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use ringdns::plugins::dnssec::{Dnssec, parse_key_files};

fn key(base: &str) -> ringdns::plugins::dnssec::Key {
    let d = format!("{}/tests/data/dnssec/{base}", env!("CARGO_MANIFEST_DIR"));
    parse_key_files(&format!("{d}.key"), &format!("{d}.private")).expect("key")
}

fn name(s: &str) -> Vec<u8> {
    let mut w = Vec::new();
    for l in s.trim_end_matches('.').split('.') {
        w.push(l.len() as u8);
        w.extend_from_slice(l.as_bytes());
    }
    w.push(0);
    w
}

fn rr(owner: &str, t: u16, ttl: u32, rd: &[u8]) -> Vec<u8> {
    let mut r = name(owner);
    r.extend_from_slice(&t.to_be_bytes());
    r.extend_from_slice(&1u16.to_be_bytes());
    r.extend_from_slice(&ttl.to_be_bytes());
    r.extend_from_slice(&(rd.len() as u16).to_be_bytes());
    r.extend_from_slice(rd);
    r
}

/// A reply for `q`: NOERROR with two A records and the apex NS, or NXDOMAIN
/// with the SOA.
fn reply(q: &str, nx: bool) -> Vec<u8> {
    let mut m = vec![0x12, 0x34, 0x84, if nx { 3 } else { 0 }, 0, 1];
    let (an, ns): (Vec<Vec<u8>>, Vec<Vec<u8>>) = if nx {
        let mut soa = name("ns1.example.org");
        soa.extend_from_slice(&name("hostmaster.example.org"));
        for v in [1u32, 7200, 3600, 1_209_600, 300] {
            soa.extend_from_slice(&v.to_be_bytes());
        }
        (vec![], vec![rr("example.org", 6, 300, &soa)])
    } else {
        (
            vec![rr(q, 1, 60, &[192, 0, 2, 1]), rr(q, 1, 60, &[192, 0, 2, 2])],
            vec![rr("example.org", 2, 3600, &name("ns1.example.org"))],
        )
    };
    for n in [an.len(), ns.len(), 0] {
        m.extend_from_slice(&(n as u16).to_be_bytes());
    }
    m.extend_from_slice(&name(q));
    m.extend_from_slice(&[0, 1, 0, 1]);
    for r in an.iter().chain(&ns) {
        m.extend_from_slice(r);
    }
    m
}

fn bench(c: &mut Criterion) {
    for (label, base) in [
        ("ecdsa-p256", "Kexample.org.+013+21055"),
        ("ed25519", "Kexample.org.+015+38960"),
    ] {
        let d = Dnssec::with_keys(&["example.org."], vec![key(base)], 1 << 20);
        let hit = reply("www.example.org", false);
        d.sign_reply(&hit, "b").expect("signs");
        c.bench_function(&format!("dnssec/{label}/answer cached"), |b| {
            b.iter(|| black_box(d.sign_reply(black_box(&hit), "b")))
        });
        let mut i = 0u64;
        c.bench_function(&format!("dnssec/{label}/answer signed afresh"), |b| {
            b.iter(|| {
                i += 1;
                let m = reply(&format!("h{i}.example.org"), false);
                black_box(d.sign_reply(&m, "b"))
            })
        });
        let mut j = 0u64;
        c.bench_function(&format!("dnssec/{label}/nxdomain black lie"), |b| {
            b.iter(|| {
                j += 1;
                let m = reply(&format!("nx{j}.example.org"), true);
                black_box(d.sign_reply(&m, "b"))
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
