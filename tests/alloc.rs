//! Zero heap allocations per query on the steady-state paths (ARCHITECTURE:
//! "a counting-allocator test proves it"): whoami, chaos, and a minimal answer,
//! through the whole server path (parse, route, chain, scrub).

use std::net::SocketAddr;
use std::time::Instant;

use ringdns::chain::Proto;
use ringdns::config::{Input, Source};
use ringdns::server::Active;
use ringdns::server::handle::{Meta, Outcome, handle};

#[global_allocator]
static GLOBAL: uring::CountingAlloc = uring::CountingAlloc;

fn query(name: &str, qtype: u16, qclass: u16, edns: bool) -> Vec<u8> {
    let mut m = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(edns)];
    for l in name.split('.').filter(|l| !l.is_empty()) {
        m.push(l.len() as u8);
        m.extend_from_slice(l.as_bytes());
    }
    m.push(0);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&qclass.to_be_bytes());
    if edns {
        m.extend_from_slice(&[
            0, 0, 41, 0x10, 0, 0, 0, 0x80, 0, 0, 12, 0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8,
        ]);
    }
    m
}

fn allocs_per_query(corefile: &str, q: &[u8]) -> usize {
    allocs_in(corefile, q, 1000) / 1000
}

/// Allocations made by `n` queries after a warm-up.
fn allocs_in(corefile: &str, q: &[u8], n: usize) -> usize {
    let input = Input {
        source: Source::File("Corefile".into()),
        filename: "Corefile".into(),
        text: corefile.into(),
    };
    let cfg = ringdns::config::build(input, "53").expect("config");
    let active = Active::build(cfg).expect("active");
    let l = &active.listeners[0];
    let meta = Meta {
        proto: Proto::Udp,
        peer: SocketAddr::from(([127, 0, 0, 1], 40000)),
        local: SocketAddr::from(([0, 0, 0, 0], 53)),
        now: Instant::now(),
    };
    let (mut resp, mut scratch) = (Vec::with_capacity(65536), Vec::with_capacity(65536));
    // Warm up (thread-locals, lazily sized buffers).
    for _ in 0..10 {
        assert!(matches!(
            handle(l, q, meta, &mut resp, &mut scratch),
            Outcome::Reply
        ));
    }
    let before = uring::allocations();
    for _ in 0..n {
        let _ = handle(l, q, meta, &mut resp, &mut scratch);
    }
    uring::allocations() - before
}

#[test]
fn zero_allocations_per_query() {
    let whoami = ".:53 {\n whoami\n}\n";
    assert_eq!(
        allocs_per_query(whoami, &query("www.example.org", 1, 1, false)),
        0,
        "whoami"
    );
    assert_eq!(
        allocs_per_query(whoami, &query("www.example.org", 28, 1, true)),
        0,
        "whoami + EDNS"
    );
    let chaos = ".:53 {\n chaos ringdns-test\n}\n";
    assert_eq!(
        allocs_per_query(chaos, &query("version.bind", 16, 3, true)),
        0,
        "chaos"
    );
    let minimal = ".:53 {\n minimal\n whoami\n}\n";
    assert_eq!(
        allocs_per_query(minimal, &query("www.example.org", 1, 1, true)),
        0,
        "minimal"
    );
    // A cache hit copies the stored reply and patches it in place: not one
    // allocation in 1000 hits (whoami's reply is cached for 5 s).
    let cache = ".:53 {\n cache\n whoami\n}\n";
    for (q, what) in [
        (query("www.example.org", 1, 1, false), "cache hit"),
        (
            query("WWW.Example.org", 28, 1, true),
            "cache hit + EDNS + 0x20",
        ),
    ] {
        assert_eq!(allocs_in(cache, &q, 1000), 0, "{what}");
    }
    let hits: f64 = ringdns::metrics::gather()["coredns_cache_hits_total"]
        .samples
        .iter()
        .map(|s| s.2.parse::<f64>().unwrap_or(0.0))
        .sum();
    assert!(hits >= 2000.0, "the cached queries were hits: {hits}");
}
