//! The hot path per query: parse a query, answer it with whoami, scrub.

use std::net::SocketAddr;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use ringdns::chain::{Chain, Proto};
use ringdns::plugins::Plugin;
use ringdns::server::handle::{Dispatch, ListenerRt, Meta, handle};
use ringdns::server::route::Routes;

fn query() -> Vec<u8> {
    let mut m = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
    m.extend_from_slice(b"\x03www\x07example\x03org\x00\x00\x01\x00\x01");
    m.extend_from_slice(&[0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0]);
    m
}

fn wire(c: &mut Criterion) {
    let q = query();
    c.bench_function("wire/parse_query", |b| {
        b.iter(|| ringdns::wire::parse_query(std::hint::black_box(&q)).is_some_query())
    });
    let mut routes = Routes::default();
    routes.add(".", 0);
    let l = ListenerRt {
        tls: None,
        conn_limit: None,
        transport: corefile::keys::Transport::Dns,
        quic: None,
        h3: None,
        grpc: None,
        proxy: None,
        tracer: None,
        label: "dns://:53".into(),
        blocks: vec![0],
        disp: std::sync::Arc::new(Dispatch {
            label: "dns://:53".into(),
            routes,
            chains: vec![std::sync::Arc::new(Chain {
                plugins: vec![Plugin::Whoami],
                debug: false,
                rewrites: false,
                view: None,
                has_tsig: false,
            })],
            class_open: false,
            tsig: Vec::new(),
        }),
        timeouts: Default::default(),
    };
    let meta = Meta {
        proto: Proto::Udp,
        peer: SocketAddr::from(([127, 0, 0, 1], 5353)),
        local: SocketAddr::from(([0, 0, 0, 0], 53)),
        now: Instant::now(),
    };
    let (mut resp, mut scratch) = (Vec::with_capacity(4096), Vec::with_capacity(4096));
    c.bench_function("wire/handle whoami", |b| {
        b.iter(|| {
            let _ = handle(&l, std::hint::black_box(&q), meta, &mut resp, &mut scratch);
            resp.len()
        })
    });
}

criterion_group!(benches, wire);
criterion_main!(benches);
