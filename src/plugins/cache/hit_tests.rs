//! Hits, misses and what is cached, on the manual clock: TTL decrement and
//! flattening, caps and floors, denial and SERVFAIL caching, DO/CD/AD, EDNS,
//! signatures, eviction, `disable`, `keepttl`, prefetch and the key.

use super::*;

#[test]
fn ttl_decrements_and_the_miss_is_flattened() {
    let h = H::new("cache 30");
    let up = |_: &Request<'_>| ok(vec![a("Example.ORG.", 300, 1)]);
    let o = h.ask(q("example.org."), &up);
    assert_eq!(o.ttls(), vec![30], "first reply capped to 30");
    assert!(!o.flag(flags::AA), "the miss keeps the upstream's flags");
    assert_eq!(
        hdr::counts(o.m())[3],
        0,
        "OPT removed (the server adds the client's)"
    );
    h.at(10.7);
    let o = h.ask(q("eXample.org."), &up);
    assert_eq!(h.calls.get(), 1);
    assert_eq!(o.ttls(), vec![20], "whole seconds elapsed, truncated");
    assert!(o.flag(flags::AA) && o.flag(flags::RA) && o.flag(flags::RD));
    assert_eq!(
        &o.m()[12..12 + 13],
        &wire("eXample.org.")[..],
        "question in the client's case"
    );
    assert_eq!(
        &o.m()[12 + 17..12 + 30],
        &wire("Example.ORG.")[..],
        "owner as stored"
    );
    assert_eq!(hdr::id(o.m()), 0x1234);
    h.at(30.0);
    h.ask(q("example.org."), &up);
    assert_eq!(h.calls.get(), 2, "expired at the TTL");
}

#[test]
fn min_and_max_ttl() {
    for (conf, up_ttl, want, cached) in [
        ("cache", 2, 5, true),
        ("cache", 0, 5, true),
        ("cache", 7200, 3600, true),
        ("cache 10", 1800, 10, true),
        ("cache {\n success 100 3600 0\n}", 0, 0, false),
        ("cache {\n success 100 7200 0\n}", 86_400, 7200, true),
        // TTLs past what a Go duration holds wrap as CoreDNS's `time.Duration(ttl) *
        // time.Second` does (an overflow before, a panic in debug builds): 2e10 s is
        // 1553255926.29 s once wrapped; 1e10 s wraps negative (never cached; the reply's
        // TTLs are set to the low 32 bits of its seconds, 143190519); 5e9 s fits but its
        // seconds do not fit 32 bits (705032704, as Go's uint32 conversion on amd64).
        ("cache 20000000000", 4_294_967_295, 1_553_255_926, true),
        ("cache 20000000000", 300, 300, true),
        ("cache 10000000000", 300, 143_190_519, false),
        ("cache 5000000000", 4_294_967_295, 705_032_704, true),
        (
            "cache {\n success 100 20000000000 20000000000\n}",
            300,
            1_553_255_926,
            true,
        ),
    ] {
        let h = H::new(conf);
        let o = h.ask(q("example.org."), &up_a(up_ttl));
        assert_eq!(o.ttls(), vec![want], "{conf} upstream {up_ttl}");
        assert_eq!(h.lens().0 == 1, cached, "{conf} upstream {up_ttl}");
    }
}

#[test]
fn cname_chain_flattened_to_the_minimum() {
    let h = H::new("cache 300");
    let up = |_: &Request<'_>| {
        ok(vec![
            cname("www.example.org.", 300, "a.example.net."),
            a("a.example.net.", 20, 9),
        ])
    };
    assert_eq!(h.ask(q("www.example.org."), &up).ttls(), vec![20, 20]);
    h.at(5.0);
    assert_eq!(h.ask(q("www.example.org."), &up).ttls(), vec![15, 15]);
    assert_eq!(h.calls.get(), 1);
}

#[test]
fn negative_caching_uses_the_soa_ttl() {
    let h = H::new("cache 30");
    let nx = |_: &Request<'_>| rc(3, vec![soa("example.org.", 25, 8)]);
    let o = h.ask(q("nx.example.org."), &nx);
    assert_eq!(
        (o.rcode(), o.ttls()),
        (3, vec![25]),
        "SOA RR TTL, not MINIMUM"
    );
    h.at(5.0);
    let o = h.ask(q("nx.example.org."), &nx);
    assert_eq!((o.rcode(), o.ttls(), h.calls.get()), (3, vec![20], 1));
    assert!(o.flag(flags::AA));
    assert_eq!(h.lens(), (0, 1));
    // NXDOMAIN without SOA is passed through, not cached.
    let bare = |_: &Request<'_>| rc(3, vec![]);
    h.ask(q("bare.example.org."), &bare);
    h.ask(q("bare.example.org."), &bare);
    assert_eq!(h.calls.get(), 3);
    // NODATA (SOA, NOERROR) goes to the denial cache, capped by the denial max.
    let nodata = |_: &Request<'_>| rc(0, vec![soa("example.org.", 3600, 300)]);
    let o = h.ask(q("nodata.example.org."), &nodata);
    assert_eq!(o.ttls(), vec![30]);
    assert_eq!(h.lens(), (0, 2));
    // A CNAME that does not reach the type: not cached without SOA, NODATA with it.
    let dangling = |_: &Request<'_>| ok(vec![cname("alias.example.org.", 60, "x.example.net.")]);
    h.ask(q("alias.example.org."), &dangling);
    assert_eq!(h.lens(), (0, 2));
    let dangling_soa = |_: &Request<'_>| {
        ok(vec![
            cname("alias.example.org.", 60, "x.example.net."),
            soa("example.net.", 60, 60),
        ])
    };
    h.ask(q("alias.example.org."), &dangling_soa);
    assert_eq!(h.lens(), (0, 3));
}

#[test]
fn servfail_is_cached_for_its_duration() {
    let h = H::new("cache");
    let fail = |_: &Request<'_>| rc(2, vec![]);
    h.ask(q("example.org."), &fail);
    h.at(4.9);
    let o = h.ask(q("example.org."), &fail);
    assert_eq!(
        (o.rcode(), h.calls.get()),
        (2, 1),
        "repeat within 5 s from the cache"
    );
    assert!(o.flag(flags::AA));
    h.at(5.0);
    h.ask(q("example.org."), &fail);
    assert_eq!(h.calls.get(), 2);
    // servfail 0 disables; a failure without a reply is never cached.
    let h = H::new("cache {\n servfail 0\n}");
    h.ask(q("example.org."), &fail);
    assert_eq!(h.lens(), (0, 0));
    let h = H::new("cache");
    let o = h.ask(q("example.org."), &|_| None);
    assert!(o.msg.is_none() && o.st.rcode == 2);
    assert_eq!(h.lens(), (0, 0));
}

#[test]
fn servfail_does_not_shadow_a_positive_entry() {
    let k = key(
        Name::parse("example.org.").expect("n").borrowed(),
        1,
        1,
        false,
        false,
    );
    let fail = |_: &Request<'_>| rc(2, vec![]);
    let hs = H::new("cache");
    hs.ask(q("example.org."), &fail);
    let failed = hs.cache.s.ncache.remove(k).expect("servfail item");
    let h = H::new("cache");
    h.ask(q("example.org."), &up_a(120));
    h.cache.s.ncache.insert(failed, |_, _| {});
    h.at(1.0);
    let o = h.ask(q("example.org."), &fail);
    assert_eq!((o.rcode(), o.ttls(), h.calls.get()), (0, vec![119], 1));
}

#[test]
fn truncated_and_mismatched_replies_are_not_cached() {
    let h = H::new("cache");
    let tc = |_: &Request<'_>| {
        Some(Up {
            flags: flags::TC,
            rrs: vec![a("example.org.", 60, 1)],
            ..Up::default()
        })
    };
    h.ask(q("example.org."), &tc);
    assert_eq!(h.lens(), (0, 0));
    let spoof = |_: &Request<'_>| {
        Some(Up {
            qname: Some("evil.example."),
            rrs: vec![a("evil.example.", 60, 1)],
            ..Up::default()
        })
    };
    h.ask(q("example.org."), &spoof);
    assert_eq!(h.lens(), (0, 0));
    assert_eq!(h.counter("coredns_cache_drops_total", ""), 1);
}

#[test]
fn do_and_cd_split_the_cache_ad_follows_the_client() {
    let h = H::new("cache");
    let up = |_: &Request<'_>| {
        Some(Up {
            flags: flags::RA | flags::AD,
            rrs: vec![a("example.org.", 60, 1)],
            ..Up::default()
        })
    };
    let o = h.ask(q("example.org."), &up);
    assert!(
        h.up_flags.get() & flags::AD != 0,
        "the upstream is asked with AD"
    );
    assert!(!o.flag(flags::AD), "AD cleared for a client without DO/AD");
    let o = h.ask(q("example.org."), &up);
    assert!(!o.flag(flags::AD) && h.calls.get() == 1);
    let o = h.ask(
        Q {
            ad: true,
            ..q("example.org.")
        },
        &up,
    );
    assert!(
        o.flag(flags::AD) && h.calls.get() == 1,
        "AD kept for an AD client"
    );
    let o = h.ask(
        Q {
            do_bit: true,
            ..q("example.org.")
        },
        &up,
    );
    assert!(
        o.flag(flags::AD) && h.calls.get() == 2,
        "DO is a separate entry"
    );
    h.ask(
        Q {
            cd: true,
            ..q("example.org.")
        },
        &up,
    );
    h.ask(
        Q {
            cd: true,
            do_bit: true,
            ..q("example.org.")
        },
        &up,
    );
    assert_eq!(h.calls.get(), 4);
    assert_eq!(h.lens(), (4, 0));
    h.ask(
        Q {
            cd: true,
            ..q("EXAMPLE.org.")
        },
        &up,
    );
    assert_eq!(h.calls.get(), 4, "0x20 case shares entries");
}

#[test]
fn edns_options_of_the_upstream_are_dropped() {
    let h = H::new("cache");
    let up = |_: &Request<'_>| {
        Some(Up {
            opt: Some(false),
            rrs: vec![a("example.org.", 60, 1)],
            ..Up::default()
        })
    };
    let o = h.ask(q("example.org."), &up);
    assert_eq!(hdr::counts(o.m())[3], 0);
    let o = h.ask(q("example.org."), &up);
    assert_eq!(hdr::counts(o.m())[3], 0);
}

#[test]
fn expired_signatures_are_not_cached_for_do() {
    let h = H::new("cache");
    // Valid 2017-04-21 .. 2017-05-21 (T0 is inside).
    let (inc, exp) = (1_492_743_181u32, 1_495_335_181u32);
    let good = move |_: &Request<'_>| {
        Some(Up {
            opt: Some(true),
            rrs: vec![
                a("example.org.", 60, 1),
                rrsig("example.org.", 60, exp, inc),
            ],
            ..Up::default()
        })
    };
    h.ask(
        Q {
            do_bit: true,
            ..q("example.org.")
        },
        &good,
    );
    assert_eq!(h.lens(), (1, 0));
    let old = move |_: &Request<'_>| {
        Some(Up {
            opt: Some(true),
            rrs: vec![
                a("miek.nl.", 60, 1),
                rrsig("miek.nl.", 60, inc - 2_592_000, inc - 5_184_000),
            ],
            ..Up::default()
        })
    };
    h.ask(
        Q {
            do_bit: true,
            ..q("miek.nl.")
        },
        &old,
    );
    assert_eq!(h.lens(), (1, 0), "expired RRSIG under DO");
}

#[test]
fn empty_noerror_with_additional_records_is_cached() {
    // whoami's shape: data in the additional section, TTL 0 → 5 s.
    let h = H::new("cache");
    let up = |_: &Request<'_>| {
        let mut r = a("example.org.", 0, 1);
        r.section = SectionKind::Additional;
        ok(vec![r])
    };
    assert_eq!(h.ask(q("example.org."), &up).ttls(), vec![5]);
    h.at(4.0);
    assert_eq!(h.ask(q("example.org."), &up).ttls(), vec![1]);
    assert_eq!(h.calls.get(), 1);
}

#[test]
fn capacity_is_enforced_by_random_eviction() {
    let h = H::new("cache {\n success 1\n}");
    assert_eq!(h.cache.s.pcache.capacity(), 1024);
    let names: Vec<&'static str> = (0..3000)
        .map(|i| &*Box::leak(format!("n{i}.example.org.").into_boxed_str()))
        .collect();
    for n in &names {
        h.ask(q(n), &up_a(60));
    }
    let len = h.lens().0;
    assert!(len <= 1024 && len > 900, "{len}");
    let n = h.counter("coredns_cache_evictions_total", "success");
    assert_eq!(n as usize, 3000 - len);
}

#[test]
fn disable_is_a_zone_match() {
    let h = H::new("cache {\n disable denial sub.example.org\n disable success pos.example.org\n}");
    let nx = |_: &Request<'_>| rc(3, vec![soa("example.org.", 60, 60)]);
    h.ask(q("a.sub.example.org."), &nx);
    h.ask(q("sub.example.org."), &nx);
    assert_eq!(h.lens(), (0, 0));
    h.ask(q("a.sub.example.org."), &up_a(60));
    assert_eq!(h.lens(), (1, 0), "positive answers still cached");
    h.ask(q("x.pos.example.org."), &up_a(60));
    h.ask(q("x.pos.example.org."), &nx);
    assert_eq!(h.lens(), (1, 1));
}

#[test]
fn keepttl_serves_the_original_ttl() {
    let h = H::new("cache {\n keepttl\n}");
    h.ask(q("cached.org."), &up_a(60));
    for t in [0.0, 30.0, 59.9] {
        h.at(t);
        assert_eq!(h.ask(q("cached.org."), &up_a(60)).ttls(), vec![60]);
    }
    assert_eq!(h.calls.get(), 1);
}

/// A prefetch test: (seconds, expected "TTL last-octet", upstream called?).
fn prefetch_case(conf: &str, ttl: u32, steps: &[(f64, Q, u32, u8, bool)]) {
    let h = H::new(conf);
    let n = Cell::new(0u8);
    let up = move |r: &Request<'_>| {
        n.set(n.get() + 1);
        let owner: &'static str = Box::leak(r.qname.to_string().into_boxed_str());
        ok(vec![a(owner, ttl, n.get())])
    };
    for (i, (t, query, want_ttl, want_ip, fetch)) in steps.iter().enumerate() {
        h.at(*t);
        let before = h.calls.get();
        let o = h.ask(*query, &up);
        assert_eq!(
            (o.ttls(), o.last_octets()),
            (vec![*want_ttl], vec![*want_ip]),
            "{conf} step {i}"
        );
        assert_eq!(h.calls.get() > before, *fetch, "{conf} step {i}: fetch");
    }
}

#[test]
fn prefetch_by_popularity_and_remaining_ttl() {
    let name = "hits.reset.example.org.";
    prefetch_case(
        "cache {\n prefetch 1\n}",
        80,
        &[
            (0.0, q(name), 80, 1, true),
            (73.0, q(name), 7, 1, true),
            (80.0, q(name), 73, 2, false),
        ],
    );
    prefetch_case(
        "cache {\n prefetch 1\n}",
        5,
        &[
            (0.0, q(name), 5, 1, true),
            (1.0, q(name), 4, 1, false),
            (4.0, q(name), 1, 1, true),
            (5.0, q(name), 4, 2, false),
        ],
    );
    prefetch_case(
        "cache",
        30,
        &[
            (0.0, q(name), 30, 1, true),
            (15.0, q(name), 15, 1, false),
            (29.0, q(name), 1, 1, false),
            (30.0, q(name), 30, 2, true),
        ],
    );
    let d = Q {
        do_bit: true,
        ..q(name)
    };
    prefetch_case(
        "cache {\n prefetch 1\n}",
        80,
        &[
            (0.0, d, 80, 1, true),
            (73.0, d, 7, 1, true),
            (80.0, d, 73, 2, false),
            (80.0, q(name), 80, 3, true),
        ],
    );
    let c = Q {
        cd: true,
        ..q(name)
    };
    prefetch_case(
        "cache {\n prefetch 1\n}",
        80,
        &[
            (0.0, c, 80, 1, true),
            (73.0, c, 7, 1, true),
            (80.0, c, 73, 2, false),
            (80.0, q(name), 80, 3, true),
        ],
    );
    // Popularity: 3 hits within the window are needed; a gap resets the count.
    prefetch_case(
        "cache {\n prefetch 3 10s\n}",
        100,
        &[
            (0.0, q(name), 100, 1, true),
            (91.0, q(name), 9, 1, false),
            (95.0, q(name), 5, 1, false),
            (96.0, q(name), 4, 1, true),
        ],
    );
    prefetch_case(
        "cache {\n prefetch 3 10s\n}",
        100,
        &[
            (0.0, q(name), 100, 1, true),
            (70.0, q(name), 30, 1, false),
            (91.0, q(name), 9, 1, false),
            (95.0, q(name), 5, 1, false),
        ],
    );
}

#[test]
fn prefetch_runs_once_per_item() {
    for conf in ["cache {\n prefetch 1 1m 50%\n}", "cache {\n serve_stale\n}"] {
        let h = H::new(conf);
        h.ask(q("dedup.example.org."), &up_a(100));
        h.hold.set(true);
        h.at(if conf.contains("stale") { 110.0 } else { 70.0 });
        for _ in 0..200 {
            h.ask(q("dedup.example.org."), &up_a(100));
        }
        assert_eq!(h.held.borrow().len(), 1, "{conf}");
        h.flush(&up_a(100));
        assert_eq!(h.calls.get(), 2, "{conf}");
    }
}

#[test]
fn key_lowercases_ascii_only_and_splits_do_cd() {
    let n = |s: &str| Name::parse(s).expect("name");
    for c in 0u8..=255 {
        let x = u64::from_le_bytes([c; 8]);
        assert_eq!(
            super::lower8(x),
            u64::from_le_bytes([c.to_ascii_lowercase(); 8]),
            "{c}"
        );
    }
    let a = key(n("WWW.Example.ORG.").borrowed(), 1, 1, false, false);
    assert_eq!(a, key(n("www.example.org.").borrowed(), 1, 1, false, false));
    assert_ne!(
        a,
        key(n("www.example.org.").borrowed(), 28, 1, false, false)
    );
    assert_ne!(a, key(n("www.example.org.").borrowed(), 1, 3, false, false));
    assert_ne!(a, key(n("www.example.org.").borrowed(), 1, 1, true, false));
    assert_ne!(a, key(n("www.example.org.").borrowed(), 1, 1, false, true));
    assert_ne!(
        a,
        key(n("www.example.org.x.").borrowed(), 1, 1, false, false)
    );
    // Shards are evenly used.
    let mut shards = [0u32; 256];
    for i in 0..25_600 {
        shards[(key(
            n(&format!("h{i}.example.org.")).borrowed(),
            1,
            1,
            false,
            false,
        ) & 255) as usize] += 1;
    }
    assert!(shards.iter().all(|&c| (50..150).contains(&c)), "{shards:?}");
}

#[test]
fn prefetch_through_the_chain_runs_the_plugins_after_the_cache() {
    use crate::config::{Input, Source};
    use crate::server::Active;
    use crate::server::handle::{Meta, handle};
    let text = ".:53 {\n cache 2 {\n  prefetch 1 1m 90%\n }\n erratic {\n  drop 0\n }\n}\n";
    let input = Input {
        source: Source::File("Corefile".into()),
        filename: "Corefile".into(),
        text: text.into(),
    };
    let active = Active::build(crate::config::build(input, "53").expect("config")).expect("active");
    let l = &active.listeners[0];
    let Some(crate::plugins::Plugin::Cache(cache)) = l.disp.chains[0].plugins.first() else {
        panic!("cache first");
    };
    let peer = SocketAddr::from(([127, 0, 0, 1], 5353));
    let meta = Meta {
        proto: Proto::Udp,
        peer,
        local: peer,
        now: Instant::now(),
    };
    let msg = q("prefetch.example.org.").msg();
    let (mut resp, mut scratch) = (Vec::new(), Vec::new());
    let k = key(
        Name::parse("prefetch.example.org.").expect("n").borrowed(),
        1,
        1,
        false,
        false,
    );
    let _ = handle(l, &msg, meta, &mut resp, &mut scratch);
    let first = cache.shared().pcache.get(k, |i| i.stored).expect("stored");
    std::thread::sleep(Duration::from_millis(5));
    // A hit inside the prefetch window: the reply comes from the cache and
    // erratic (after the cache) is asked again, synchronously.
    let _ = handle(l, &msg, meta, &mut resp, &mut scratch);
    assert!(hdr::flags(&resp) & flags::AA != 0);
    let second = cache
        .shared()
        .pcache
        .get(k, |i| (i.stored, i.hits()))
        .expect("stored");
    assert!(second.0 > first, "refreshed by the detached query");
    assert_eq!(second.1, 1, "the popularity is inherited");
}
