//! The cache: time per hit (lookup + splice into the reply buffer, and the
//! whole server path), the hit ratio under a Zipf load at a fixed capacity,
//! and memory per entry for three reply shapes (as tinyufo's benches report
//! them). The ratios and sizes are printed; criterion times the hits.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use ringdns::chain::{Ctx, Flow, Proto};
use ringdns::config::{Input, Source};
use ringdns::plugins::cache::setup::CacheConfig;
use ringdns::plugins::cache::{Cache, Clock, shared};
use ringdns::server::Active;
use ringdns::server::handle::{Meta, handle};
use ringdns::wire::{Builder, Name, SectionKind, Verdict, parse_query};

fn query(name: &str, qtype: u16) -> Vec<u8> {
    let mut m = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
    m.extend_from_slice(Name::parse(name).expect("name").wire());
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&[0, 1, 0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
    m
}

/// Reply shapes for the memory bench.
#[derive(Clone, Copy, Debug)]
enum Shape {
    A,
    CnameChain,
    Negative,
}

/// One query through the cache; a miss is answered with `shape` and stored.
fn ask(
    cache: &Cache,
    server: &Arc<str>,
    q: &[u8],
    shape: Shape,
    resp: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
) -> bool {
    let Verdict::Query(req) = parse_query(q) else {
        return false;
    };
    let peer = SocketAddr::from(([127, 0, 0, 1], 5353));
    let mut ctx = Ctx::new(
        server,
        req,
        Proto::Udp,
        peer,
        peer,
        resp,
        scratch,
        Instant::now(),
    );
    match cache.serve(&mut ctx) {
        Flow::Return(_) => true,
        _ => {
            let owner = ctx.req.qname.to_name();
            let mut b = Builder::reply(ctx.resp, &ctx.req);
            match shape {
                Shape::A => b.rr(&owner, 1, 1, 300, &[192, 0, 2, 1]),
                Shape::CnameChain => {
                    let mut prev = owner.wire().to_vec();
                    for i in 0..4 {
                        let t = Name::parse(&format!("hop{i}.cdn.example.net.")).expect("name");
                        b.rr_wire(&prev, 5, 1, 300, t.wire());
                        prev = t.wire().to_vec();
                    }
                    b.rr_wire(&prev, 1, 1, 300, &[192, 0, 2, 1]);
                }
                Shape::Negative => {
                    b.set_rcode(3);
                    b.section(SectionKind::Authority);
                    let mut rd = Name::parse("ns.example.org.").expect("n").wire().to_vec();
                    rd.extend_from_slice(Name::parse("hostmaster.example.org.").expect("n").wire());
                    for v in [1u32, 7200, 3600, 1_209_600, 300] {
                        rd.extend_from_slice(&v.to_be_bytes());
                    }
                    b.rr_wire(
                        Name::parse("example.org.").expect("n").wire(),
                        6,
                        1,
                        300,
                        &rd,
                    );
                }
            }
            b.finish();
            ctx.written = true;
            let mut st = ringdns::chain::Status::rcode(0);
            cache.respond(&mut ctx, &mut st);
            false
        }
    }
}

fn cache_with(text: &str) -> Cache {
    let mut c = CacheConfig::new(vec!["dns://.:53".into()], vec![".".into()]);
    for opt in text.split(',').filter(|s| !s.is_empty()) {
        let (k, v) = opt.split_once('=').expect("k=v");
        match k {
            "pcap" => c.pcap = v.parse().expect("n"),
            "ncap" => c.ncap = v.parse().expect("n"),
            _ => panic!("option {k}"),
        }
    }
    Cache::with_shared(shared::private(&c), Clock::System)
}

fn hits(c: &mut Criterion) {
    let cache = cache_with("");
    let server: Arc<str> = Arc::from("dns://:53");
    let (mut resp, mut scratch) = (Vec::with_capacity(4096), Vec::with_capacity(4096));
    let q = query("www.example.org.", 1);
    assert!(!ask(&cache, &server, &q, Shape::A, &mut resp, &mut scratch));
    let hit = query("WWW.Example.org.", 1);
    let Verdict::Query(req) = parse_query(&hit) else {
        panic!("query")
    };
    let peer = SocketAddr::from(([127, 0, 0, 1], 5353));
    // The server reads the clock once per receive batch, not per query.
    let now = Instant::now();
    c.bench_function("cache/hit lookup+splice (A)", |b| {
        b.iter(|| {
            let mut ctx = Ctx::new(
                &server,
                req.clone(),
                Proto::Udp,
                peer,
                peer,
                &mut resp,
                &mut scratch,
                now,
            );
            let f = cache.serve(std::hint::black_box(&mut ctx));
            matches!(f, Flow::Return(_))
        })
    });
    let chain = query("chain.example.org.", 1);
    assert!(!ask(
        &cache,
        &server,
        &chain,
        Shape::CnameChain,
        &mut resp,
        &mut scratch
    ));
    let Verdict::Query(creq) = parse_query(&chain) else {
        panic!("query")
    };
    c.bench_function("cache/hit lookup+splice (5-record CNAME chain)", |b| {
        b.iter(|| {
            let mut ctx = Ctx::new(
                &server,
                creq.clone(),
                Proto::Udp,
                peer,
                peer,
                &mut resp,
                &mut scratch,
                now,
            );
            let f = cache.serve(std::hint::black_box(&mut ctx));
            matches!(f, Flow::Return(_))
        })
    });
    // The whole server path: parse, route, chain (cache hit), scrub.
    let input = Input {
        source: Source::File("Corefile".into()),
        filename: "Corefile".into(),
        text: ".:53 {\n cache\n whoami\n}\n".into(),
    };
    let active =
        Active::build(ringdns::config::build(input, "53").expect("config")).expect("active");
    let l = &active.listeners[0];
    let meta = Meta {
        proto: Proto::Udp,
        peer,
        local: SocketAddr::from(([0, 0, 0, 0], 53)),
        now: Instant::now(),
    };
    let _ = handle(l, &q, meta, &mut resp, &mut scratch);
    c.bench_function("cache/handle hit (parse, route, cache, scrub)", |b| {
        b.iter(|| {
            let _ = handle(l, std::hint::black_box(&q), meta, &mut resp, &mut scratch);
            resp.len()
        })
    });
}

/// A Zipf(s) sampler over `n` ranks (inverse CDF, binary search).
struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, s: f64) -> Self {
        let mut cdf = Vec::with_capacity(n);
        let mut sum = 0.0;
        for k in 1..=n {
            sum += 1.0 / (k as f64).powf(s);
            cdf.push(sum);
        }
        for v in &mut cdf {
            *v /= sum;
        }
        Self { cdf }
    }
    fn sample(&self) -> usize {
        let u = fastrand::f64();
        self.cdf.partition_point(|&c| c < u)
    }
}

fn hit_ratio() {
    let server: Arc<str> = Arc::from("dns://:53");
    let (mut resp, mut scratch) = (Vec::with_capacity(4096), Vec::with_capacity(4096));
    let names = 1_000_000;
    let queries: Vec<Vec<u8>> = (0..names)
        .map(|i| query(&format!("n{i}.example.org."), 1))
        .collect();
    println!(
        "cache/zipf hit ratio: 1M names, 2M queries (after 1M warm-up), default capacity (9984)"
    );
    for s in [0.8, 0.9, 1.0, 1.1] {
        fastrand::seed(7);
        let z = Zipf::new(names, s);
        let cache = cache_with("");
        for _ in 0..1_000_000 {
            ask(
                &cache,
                &server,
                &queries[z.sample()],
                Shape::A,
                &mut resp,
                &mut scratch,
            );
        }
        let (mut h, n) = (0usize, 2_000_000usize);
        for _ in 0..n {
            if ask(
                &cache,
                &server,
                &queries[z.sample()],
                Shape::A,
                &mut resp,
                &mut scratch,
            ) {
                h += 1;
            }
        }
        println!("  zipf s={s:.1}: hit ratio {:.3}", h as f64 / n as f64);
    }
}

fn memory() {
    let server: Arc<str> = Arc::from("dns://:53");
    let (mut resp, mut scratch) = (Vec::with_capacity(4096), Vec::with_capacity(4096));
    let n = 100_000;
    println!("cache/bytes per entry ({n} entries, names like n12345.example.org.):");
    for shape in [Shape::A, Shape::CnameChain, Shape::Negative] {
        let cache = cache_with("pcap=1000000,ncap=1000000");
        let empty = cache.shared().pcache.heap_bytes() + cache.shared().ncache.heap_bytes();
        for i in 0..n {
            let q = query(&format!("n{i}.example.org."), 1);
            ask(&cache, &server, &q, shape, &mut resp, &mut scratch);
        }
        let s = cache.shared();
        assert_eq!(s.pcache.len() + s.ncache.len(), n);
        let bytes = s.pcache.heap_bytes() + s.ncache.heap_bytes() - empty;
        let k = ringdns::plugins::cache::key(
            Name::parse("n7.example.org.").expect("n").borrowed(),
            1,
            1,
            false,
            false,
        );
        let msg = s
            .pcache
            .get(k, |i| i.msg().len())
            .or_else(|| s.ncache.get(k, |i| i.msg().len()));
        println!(
            "  {shape:?}: {} bytes per entry (stored message {} B)",
            bytes / n,
            msg.unwrap_or(0)
        );
    }
}

fn reports(c: &mut Criterion) {
    let _ = c;
    // `CACHE_BENCH_HITS_ONLY=1` skips the (slower) ratio and memory reports.
    if std::env::var_os("CACHE_BENCH_HITS_ONLY").is_some() {
        return;
    }
    hit_ratio();
    memory();
}

criterion_group!(benches, hits, reports);
criterion_main!(benches);
