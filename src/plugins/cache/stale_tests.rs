//! serve_stale on the manual clock: immediate, verify (blocking and with a
//! timeout), response TTLs, failure recheck, prefer_positive, and a stale
//! denial replaced by a positive refresh. CoreDNS's `cache_test.go` cases.

use super::*;

const MIN: f64 = 60.0;

#[test]
fn immediate_serves_stale_and_refreshes_in_the_background() {
    let h = H::new("cache {\n serve_stale\n}");
    h.ask(q("cached.org."), &up_a(60));
    for (t, served) in [(30.0 * MIN, true), (60.0 * MIN, true), (70.0 * MIN, false)] {
        h.at(t);
        let before = h.calls.get();
        let o = h.ask(q("cached.org."), &|_| None);
        assert_eq!(o.msg.is_some(), served, "at {t}");
        assert_eq!(
            h.calls.get(),
            before + 1,
            "a background refresh or the miss"
        );
        if served {
            assert_eq!((o.rcode(), o.ttls(), o.st.rcode), (0, vec![0], 0));
        }
    }
    assert_eq!(h.counter("coredns_cache_served_stale_total", ""), 2);
    assert_eq!(h.counter("coredns_cache_prefetch_total", ""), 2);
    assert_eq!(h.counter("coredns_cache_hits_total", "success"), 2);
    assert_eq!(h.counter("coredns_cache_misses_total", ""), 2);
    assert_eq!(h.counter("coredns_cache_requests_total", ""), 4);
    // A successful refresh replaces the entry.
    let h = H::new("cache {\n serve_stale\n}");
    h.ask(q("cached.org."), &up_a(60));
    h.at(2.0 * MIN);
    assert_eq!(h.ask(q("cached.org."), &up_a(90)).ttls(), vec![0]);
    h.at(2.0 * MIN + 10.0);
    assert_eq!(h.ask(q("cached.org."), &up_a(90)).ttls(), vec![80]);
}

#[test]
fn stale_response_ttl() {
    let nx = |_: &Request<'_>| rc(3, vec![soa("example.org.", 60, 60)]);
    let pos = up_a(60);
    for (conf, negative, advance, want) in [
        ("serve_stale 1h immediate", false, 2.0 * MIN, 0),
        ("serve_stale 1h immediate 30s", false, 2.0 * MIN, 30),
        ("serve_stale 1h immediate 30s", false, MIN, 30),
        ("serve_stale 1h immediate 25s", true, 2.0 * MIN, 25),
        ("serve_stale 1h verify 0 45s", false, 2.0 * MIN, 45),
        (
            "serve_stale 1h immediate 17s\nkeepttl",
            false,
            2.0 * MIN,
            17,
        ),
        ("serve_stale 1h immediate\nkeepttl", false, 2.0 * MIN, 60),
        ("serve_stale 1h immediate 30s", false, 10.0, 50),
    ] {
        let h = H::new(&format!("cache {{\n{conf}\n}}"));
        let prime: Upstream<'_> = if negative { &nx } else { &pos };
        h.ask(q("cached.org."), prime);
        h.at(advance);
        let fail = |_: &Request<'_>| rc(2, vec![soa("example.org.", 60, 60)]);
        let o = h.ask(q("cached.org."), &fail);
        let want_rc = if negative { 3 } else { 0 };
        assert_eq!(
            (o.rcode(), o.ttls()),
            (want_rc, vec![want]),
            "{conf} after {advance}"
        );
    }
}

#[test]
fn verify_refreshes_synchronously() {
    let h = H::new("cache {\n serve_stale 1h verify\n}");
    h.ask(q("cached.org."), &up_a(120));
    // Still fresh: served from the cache.
    h.at(MIN);
    assert_eq!(h.ask(q("cached.org."), &up_a(200)).ttls(), vec![60]);
    // Stale, upstream fine: the client gets the upstream's answer.
    h.at(3.0 * MIN);
    let o = h.ask(q("cached.org."), &up_a(200));
    assert_eq!((o.ttls(), h.calls.get()), (vec![200], 2));
    // Stale again, upstream fails: the stale entry, TTL 0.
    h.at(7.0 * MIN);
    let fail = |_: &Request<'_>| rc(2, vec![soa("example.org.", 200, 60)]);
    let o = h.ask(q("cached.org."), &fail);
    assert_eq!((o.rcode(), o.ttls(), o.st.rcode), (0, vec![0], 0));
    assert_eq!(h.lens(), (1, 0), "the failed refresh is not cached");
    // No reply at all: the stale entry too.
    let o = h.ask(q("cached.org."), &|_| None);
    assert_eq!((o.rcode(), o.ttls(), o.st.rcode), (0, vec![0], 0));
    // NXDOMAIN is a valid refresh (RFC 8767 §4).
    h.at(8.0 * MIN);
    let nx = |_: &Request<'_>| rc(3, vec![soa("example.org.", 150, 60)]);
    let o = h.ask(q("cached.org."), &nx);
    assert_eq!((o.rcode(), o.ttls(), o.st.rcode), (3, vec![150], 3));
    assert_eq!(h.counter("coredns_cache_served_stale_total", ""), 2);
}

#[test]
fn verify_with_a_timeout() {
    // The refresh is slow: the stale entry after the timeout; the refresh
    // lands later and is served fresh afterwards.
    let h = H::new("cache {\n serve_stale 1h verify 30ms 30s\n}");
    h.ask(q("cached.org."), &up_a(120));
    h.at(3.0 * MIN);
    h.hold.set(true);
    let t = Instant::now();
    let o = h.ask(q("cached.org."), &up_a(60));
    assert!(t.elapsed() < Duration::from_secs(2));
    assert_eq!((o.ttls(), o.st.rcode), (vec![30], 0));
    h.hold.set(false);
    h.flush(&up_a(60));
    h.at(3.0 * MIN + 5.0);
    assert_eq!(h.ask(q("cached.org."), &up_a(60)).ttls(), vec![55]);
    // A fast refresh is served fresh, shaped as a cache reply.
    let h = H::new("cache {\n serve_stale 1h verify 500ms\n}");
    h.ask(q("cached.org."), &up_a(120));
    h.at(3.0 * MIN);
    let o = h.ask(q("cached.org."), &up_a(200));
    assert_eq!(o.ttls(), vec![200]);
    assert!(o.flag(flags::AA));
    // An uncacheable but valid refresh (NXDOMAIN without SOA) is relayed.
    let h = H::new("cache {\n serve_stale 1h verify 1s\n}");
    h.ask(q("cached.org."), &up_a(60));
    h.at(2.0 * MIN);
    let o = h.ask(q("cached.org."), &|_| rc(3, vec![]));
    assert_eq!((o.rcode(), o.st.rcode, hdr::id(o.m())), (3, 0, 0x1234));
}

#[test]
fn failure_recheck_delays_the_next_refresh() {
    let h = H::new("cache {\n serve_stale 1h immediate 0 30s\n}");
    h.ask(q("cached.org."), &up_a(60));
    let calls = |t: f64| {
        h.at(t);
        let before = h.calls.get();
        let o = h.ask(q("cached.org."), &|_| None);
        assert_eq!(o.ttls(), vec![0]);
        h.calls.get() - before
    };
    assert_eq!(calls(120.0), 1, "refresh, fails");
    assert_eq!(calls(130.0), 0, "within the recheck delay");
    assert_eq!(calls(149.0), 0);
    assert_eq!(calls(151.0), 1, "after it");
}

#[test]
fn stale_denial_is_replaced_by_a_positive_refresh() {
    let h = H::new("cache {\n serve_stale 10m\n}");
    let nx = |_: &Request<'_>| rc(3, vec![soa("example.org.", 60, 60)]);
    assert_eq!(h.ask(q("cached.org."), &nx).rcode(), 3);
    assert_eq!(h.lens(), (0, 1));
    assert_eq!(
        h.ask(q("cached.org."), &|_| None).rcode(),
        3,
        "from the denial cache"
    );
    h.at(5.0 * MIN);
    assert_eq!(
        h.ask(q("cached.org."), &up_a(303)).rcode(),
        3,
        "stale denial"
    );
    assert_eq!(h.lens(), (1, 0), "the refresh removed the denial");
    let o = h.ask(q("cached.org."), &|_| None);
    assert_eq!((o.rcode(), o.ttls()), (0, vec![303]));
}

#[test]
fn prefer_positive_keeps_the_last_known_good_answer() {
    // verify: non-answers are cached but the stale positive answer is served.
    let fail = |_: &Request<'_>| rc(2, vec![]);
    let nx = |_: &Request<'_>| rc(3, vec![soa("example.org.", 300, 300)]);
    let nodata = |_: &Request<'_>| rc(0, vec![soa("example.org.", 300, 300)]);
    for up in [&nx as Upstream<'_>, &nodata, &fail] {
        let h = H::new("cache {\n serve_stale 1h verify\n serve_stale_policy prefer_positive\n}");
        h.ask(q("cached.org."), &up_a(60));
        h.at(2.0 * MIN);
        let o = h.ask(q("cached.org."), up);
        assert_eq!(
            (o.rcode(), o.ttls(), o.last_octets()),
            (0, vec![0], vec![1])
        );
        assert_eq!(h.lens().1, 1, "the non-answer is in the denial cache");
    }
    // immediate: an empty NOERROR refresh keeps the answer as last known good.
    let h = H::new("cache {\n serve_stale 1h immediate\n serve_stale_policy prefer_positive\n}");
    h.ask(q("cached.org."), &up_a(60));
    h.at(2.0 * MIN);
    let empty = |_: &Request<'_>| ok(vec![]);
    h.ask(q("cached.org."), &empty);
    assert_eq!(h.lens(), (1, 0));
    h.at(2.0 * MIN + 1.0);
    let o = h.ask(q("cached.org."), &|_| None);
    assert_eq!((o.last_octets(), o.ttls()), (vec![1], vec![0]));
    // Outside the stale window the current entry (NXDOMAIN) wins.
    let h = H::new("cache {\n serve_stale 1h\n serve_stale_policy prefer_positive\n}");
    h.ask(q("cached.org."), &up_a(60));
    h.at(2.0 * 3600.0);
    h.ask(q("cached.org."), &nx);
    let o = h.ask(q("cached.org."), &|_| None);
    assert_eq!(o.rcode(), 3);
}
