//! *cache* end to end, on every backend: in front of erratic and whoami, of
//! forward to a programmable upstream that counts the queries it gets, and of
//! forward to a real nsd; prefetch, serve_stale (refreshes that park in
//! forward), the metrics text, and entries kept across a reload that leaves
//! the cache's configuration unchanged.

mod upstream;

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::util::*;
use upstream::{Mode, Up};

fn answers(out: &str) -> Vec<String> {
    section(out, "ANSWER")
}

/// The TTL of the first answer record.
fn ttl(out: &str) -> u32 {
    let a = answers(out);
    let first = a.first().unwrap_or_else(|| panic!("no answer: {out}"));
    first
        .split(' ')
        .nth(1)
        .and_then(|t| t.parse().ok())
        .expect("ttl")
}

#[test]
fn cache_in_front_of_erratic_and_whoami() {
    for be in backends() {
        let s = TestServer::start(".:{port} {\n cache 30\n erratic {\n  drop 0\n }\n}\n", be);
        let out = s.dig(&["Www.Example.org", "A"]);
        assert_eq!(
            answers(&out),
            ["Www.Example.org. 5 IN A 192.0.2.53"],
            "{be}: TTL 0 → 5 s"
        );
        let out = s.dig(&["+norec", "www.example.ORG", "A"]);
        assert_eq!(
            dig_flags(&out),
            "qr aa",
            "{be}: AA=1, RD from the query: {out}"
        );
        assert!(
            out.contains(";www.example.ORG.\t\tIN\tA"),
            "{be}: the client's case: {out}"
        );
        assert!(ttl(&out) <= 5, "{be}");
        assert!(
            answers(&out)[0].starts_with("Www.Example.org."),
            "{be}: owner as stored"
        );
        // AAAA and TCP.
        let out = s.dig(&["+tcp", "www.example.org", "AAAA"]);
        assert_eq!(
            answers(&out),
            ["www.example.org. 5 IN AAAA 2001:db8::53"],
            "{be}"
        );
        let out = s.kdig(&["www.example.org", "AAAA"]);
        assert!(out.contains("2001:db8::53"), "{be}: {out}");
        // No EDNS from the client: no OPT in the hit.
        let out = s.dig(&["+noedns", "www.example.org", "A"]);
        assert!(!out.contains("OPT PSEUDOSECTION"), "{be}: {out}");
    }
    for be in backends() {
        let s = TestServer::start(".:{port} {\n cache\n whoami\n}\n", be);
        let a = s.dig(&["example.org", "A"]);
        let b = s.dig(&["example.org", "A"]);
        assert_eq!(dig_status(&b), "NOERROR", "{be}");
        assert_eq!(
            section(&a, "ADDITIONAL").len(),
            section(&b, "ADDITIONAL").len(),
            "{be}"
        );
        assert!(
            section(&b, "ADDITIONAL")
                .iter()
                .all(|l| l.contains(" 5 IN ") || l.contains(" 4 IN ")),
            "{be}: {b}"
        );
    }
}

#[test]
fn cache_in_front_of_forward() {
    for be in backends() {
        let up = Up::start(Mode::Answer(300));
        let mport = free_port();
        let s = TestServer::start(
            &format!(
                ".:{{port}} {{\n prometheus 127.0.0.1:{mport}\n cache 30\n forward . 127.0.0.1:{}\n}}\n",
                up.port
            ),
            be,
        );
        let out = s.dig(&["www.example.org", "A"]);
        assert_eq!(
            answers(&out),
            ["www.example.org. 30 IN A 192.0.2.1"],
            "{be}: capped"
        );
        let out = s.dig(&["WWW.example.org", "A"]);
        assert_eq!(up.count(), 1, "{be}: the hit stays here");
        assert_eq!(dig_flags(&out), "qr aa rd ra", "{be}: {out}");
        assert!(out.contains(";WWW.example.org."), "{be}");
        // DO and CD are separate entries.
        s.dig(&["+dnssec", "www.example.org", "A"]);
        s.dig(&["+cdflag", "www.example.org", "A"]);
        assert_eq!(up.count(), 3, "{be}");
        // NXDOMAIN: the SOA's TTL, capped.
        up.set(Mode::Nx(25));
        let out = s.dig(&["nx.example.org", "A"]);
        assert_eq!(
            (dig_status(&out), section(&out, "AUTHORITY").len()),
            ("NXDOMAIN".into(), 1),
            "{be}"
        );
        assert!(
            section(&out, "AUTHORITY")[0].contains(" 25 IN SOA "),
            "{be}: {out}"
        );
        s.dig(&["nx.example.org", "A"]);
        assert_eq!(up.count(), 4, "{be}");
        // SERVFAIL: cached 5 s.
        up.set(Mode::Fail);
        assert_eq!(
            dig_status(&s.dig(&["fail.example.org", "A"])),
            "SERVFAIL",
            "{be}"
        );
        let out = s.dig(&["fail.example.org", "A"]);
        assert_eq!(
            (dig_status(&out), dig_flags(&out)),
            ("SERVFAIL".into(), "qr aa rd ra".into()),
            "{be}"
        );
        assert_eq!(up.count(), 5, "{be}");
        let body = scrape(mport);
        let label = format!("server=\"dns://:{}\"", s.port);
        for (fam, v) in [
            ("coredns_cache_requests_total{", 8),
            ("coredns_cache_misses_total{", 5),
            ("coredns_cache_hits_total{", 3),
        ] {
            let got: u64 = body
                .lines()
                .filter(|l| l.starts_with(fam) && l.contains(&label))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
                .sum();
            assert_eq!(got, v, "{be}: {fam}\n{body}");
        }
        let want =
            format!("coredns_cache_entries{{{label},type=\"success\",view=\"\",zones=\".\"}} 3");
        assert!(body.contains(&want), "{be}: {body}");
    }
}

#[test]
fn metrics_text_is_coredns() {
    let recorded_path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/compat/recorded/metrics-forward-cache.txt"
    );
    let Ok(recorded) = std::fs::read_to_string(recorded_path) else {
        println!("SKIP metrics_text_is_coredns: recorded metrics not found");
        return;
    };
    let up = Up::start(Mode::Answer(300));
    let mport = free_port();
    let s = TestServer::start(
        &format!(
            ".:{{port}} {{\n prometheus 127.0.0.1:{mport}\n cache 30\n forward . 127.0.0.1:{}\n}}\n",
            up.port
        ),
        "epoll",
    );
    s.dig(&["a.example.org", "A"]);
    s.dig(&["a.example.org", "A"]);
    up.set(Mode::Nx(60));
    s.dig(&["b.example.org", "A"]);
    let body = scrape(mport);
    // HELP and TYPE lines exactly as CoreDNS prints them, and the label sets.
    for l in recorded
        .lines()
        .filter(|l| l.starts_with("# ") && l.contains("coredns_cache_"))
    {
        assert!(body.lines().any(|b| b == l), "missing {l:?}\n{body}");
    }
    let shape = |l: &str| {
        let (m, _) = l.rsplit_once(' ').unwrap_or((l, ""));
        let (name, labels) = m.split_once('{').unwrap_or((m, ""));
        let keys: Vec<&str> = labels
            .split(',')
            .filter_map(|kv| kv.split_once('=').map(|x| x.0))
            .collect();
        format!("{name} {}", keys.join(","))
    };
    let rec: std::collections::BTreeSet<String> = recorded
        .lines()
        .filter(|l| l.starts_with("coredns_cache_"))
        .map(shape)
        .collect();
    let ours: std::collections::BTreeSet<String> = body
        .lines()
        .filter(|l| l.starts_with("coredns_cache_"))
        .map(shape)
        .collect();
    assert_eq!(rec, ours);
}

#[test]
fn prefetch_and_serve_stale_through_forward() {
    for be in backends() {
        // 90% of a 2 s TTL: the first hit is already in the prefetch window.
        let up = Up::start(Mode::Answer(2));
        let s = TestServer::start(
            &format!(
                ".:{{port}} {{\n cache 2 {{\n  prefetch 1 1m 90%\n }}\n forward . 127.0.0.1:{}\n}}\n",
                up.port
            ),
            be,
        );
        assert_eq!(
            answers(&s.dig(&["p.example.org", "A"])),
            ["p.example.org. 2 IN A 192.0.2.1"],
            "{be}"
        );
        let out = s.dig(&["p.example.org", "A"]);
        assert!(
            answers(&out)[0].ends_with("192.0.2.1"),
            "{be}: served from the cache"
        );
        assert!(
            wait_for(Duration::from_secs(3), || up.count() == 2),
            "{be}: one prefetch"
        );
        let out = s.dig(&["p.example.org", "A"]);
        assert!(
            answers(&out)[0].ends_with("192.0.2.2"),
            "{be}: the prefetched answer: {out}"
        );
    }
    for be in backends() {
        // serve_stale immediate: TTL 0 from the stale entry, refresh behind it.
        let up = Up::start(Mode::Answer(1));
        let s = TestServer::start(
            &format!(
                ".:{{port}} {{\n cache 1 {{\n  serve_stale\n }}\n forward . 127.0.0.1:{}\n}}\n",
                up.port
            ),
            be,
        );
        s.dig(&["s.example.org", "A"]);
        std::thread::sleep(Duration::from_millis(1100));
        up.set(Mode::Answer(60));
        let out = s.dig(&["s.example.org", "A"]);
        assert_eq!(
            answers(&out),
            ["s.example.org. 0 IN A 192.0.2.1"],
            "{be}: {out}"
        );
        assert!(
            wait_for(Duration::from_secs(3), || up.count() == 2),
            "{be}: refreshed"
        );
        let out = s.dig(&["s.example.org", "A"]);
        assert_eq!(
            answers(&out),
            ["s.example.org. 1 IN A 192.0.2.2"],
            "{be}: {out}"
        );
    }
    for be in backends() {
        // verify with a timeout: a dead upstream gives the stale entry quickly.
        let up = Up::start(Mode::Answer(1));
        let s = TestServer::start(
            &format!(
                ".:{{port}} {{\n cache 1 {{\n  serve_stale 1h verify 200ms 30s\n }}\n forward . 127.0.0.1:{}\n}}\n",
                up.port
            ),
            be,
        );
        s.dig(&["v.example.org", "A"]);
        std::thread::sleep(Duration::from_millis(1100));
        up.set(Mode::Drop);
        let t = Instant::now();
        let out = s.dig(&["v.example.org", "A"]);
        assert!(t.elapsed() < Duration::from_millis(1500), "{be}");
        assert_eq!(
            answers(&out),
            ["v.example.org. 30 IN A 192.0.2.1"],
            "{be}: {out}"
        );
        // Back up: verify answers with the fresh record.
        up.set(Mode::Answer(60));
        std::thread::sleep(Duration::from_millis(50));
        let out = s.dig(&["v.example.org", "A"]);
        assert!(answers(&out)[0].contains(" IN A 192.0.2."), "{be}: {out}");
    }
}

#[test]
fn reload_keeps_an_unchanged_cache() {
    for be in backends() {
        let up = Up::start(Mode::Answer(300));
        let conf = |extra: &str, ttl: u32| {
            format!(
                ".:{{port}} {{\n{extra} cache {ttl}\n forward . 127.0.0.1:{}\n}}\n",
                up.port
            )
        };
        let s = TestServer::start(&conf("", 30), be);
        let path = s.dir.0.join("Corefile");
        let port = s.port.to_string();
        s.dig(&["r.example.org", "A"]);
        assert_eq!(up.count(), 1);
        let reload = |text: String| {
            let before = s
                .lines()
                .iter()
                .filter(|l| l.contains("Reloading complete"))
                .count();
            std::fs::write(&path, text.replace("{port}", &port)).expect("write");
            s.signal(Signal::SIGUSR1);
            assert!(
                wait_for(Duration::from_secs(5), || {
                    s.lines()
                        .iter()
                        .filter(|l| l.contains("Reloading complete"))
                        .count()
                        > before
                }),
                "{be}: reload"
            );
        };
        // Another plugin changes, the cache does not: the entry survives.
        reload(conf(" log\n", 30));
        let out = s.dig(&["r.example.org", "A"]);
        assert_eq!(
            dig_flags(&out),
            "qr aa rd ra",
            "{be}: from the cache: {out}"
        );
        assert_eq!(up.count(), 1, "{be}");
        // The cache's configuration changes: a new, empty cache.
        reload(conf(" log\n", 31));
        s.dig(&["r.example.org", "A"]);
        assert_eq!(up.count(), 2, "{be}");
    }
}

#[test]
fn cache_in_front_of_nsd() {
    let Some(nsd) = Nsd::start(
        "$ORIGIN example.org.\n$TTL 300\n@ IN SOA ns1 host 1 3600 600 86400 8\n@ IN NS ns1\nns1 IN A 127.0.0.1\nwww IN A 192.0.2.1\nalias 120 IN CNAME www\n",
    ) else {
        println!("SKIP cache_in_front_of_nsd: nsd not installed (Debian package nsd)");
        return;
    };
    for be in backends() {
        let s = TestServer::start(
            &format!(
                ".:{{port}} {{\n cache 60\n forward . 127.0.0.1:{}\n}}\n",
                nsd.port
            ),
            be,
        );
        let out = s.dig(&["www.example.org", "A"]);
        assert_eq!(
            answers(&out),
            ["www.example.org. 60 IN A 192.0.2.1"],
            "{be}: {out}"
        );
        // The CNAME chain is flattened to one TTL (min(120, 300) capped at 60).
        let out = s.dig(&["alias.example.org", "A"]);
        assert_eq!(
            answers(&out),
            [
                "alias.example.org. 60 IN CNAME www.example.org.",
                "www.example.org. 60 IN A 192.0.2.1"
            ],
            "{be}: {out}"
        );
        std::thread::sleep(Duration::from_millis(1100));
        let out = s.dig(&["ALIAS.example.org", "A"]);
        let a = answers(&out);
        assert!(
            a[0].starts_with("alias.example.org. 59 IN CNAME")
                || a[0].starts_with("alias.example.org. 58 IN CNAME"),
            "{be}: {out}"
        );
        assert!(
            out.contains(";ALIAS.example.org."),
            "{be}: the client's case"
        );
        // NXDOMAIN: nsd sends the SOA with min(TTL, MINIMUM) = 8; the cache
        // uses that record's TTL.
        let out = s.dig(&["nope.example.org", "A"]);
        assert_eq!(dig_status(&out), "NXDOMAIN", "{be}");
        assert!(
            section(&out, "AUTHORITY")[0].contains(" 8 IN SOA "),
            "{be}: {out}"
        );
        let out = s.dig(&["nope.example.org", "A"]);
        assert_eq!(dig_flags(&out), "qr aa rd", "{be}: from the cache: {out}");
        // NODATA.
        let out = s.dig(&["+tcp", "www.example.org", "MX"]);
        assert_eq!(
            (dig_status(&out), answers(&out).len()),
            ("NOERROR".into(), 0),
            "{be}"
        );
        let out = s.dig(&["www.example.org", "MX"]);
        assert_eq!(dig_flags(&out), "qr aa rd", "{be}: {out}");
    }
}

/// A prefetch of a *file* answer whose CNAME target another block serves asks
/// the server for the target as the query did (it failed with SERVFAIL when
/// the background refresh had no server to ask).
#[test]
fn prefetch_of_a_cname_asks_the_server_for_the_target() {
    let dir = TempDir::new("cache-prefetch-cname");
    let org = dir.write(
        "db.example.org",
        "@ 3600 IN SOA ns1 admin 1 7200 3600 1209600 300\n@ 3600 IN NS ns1\n\
         www 2 IN CNAME www.example.net.\n",
    );
    let net = dir.write(
        "db.example.net",
        "@ 3600 IN SOA ns1 admin 1 7200 3600 1209600 300\n@ 3600 IN NS ns1\n\
         www 2 IN A 192.0.2.1\n",
    );
    for be in backends() {
        let s = TestServer::start(
            &format!(
                "example.org:{{port}} {{\n cache 2 {{\n  prefetch 1 1m 90%\n }}\n file {} example.org\n}}\n\
                 example.net:{{port}} {{\n log\n file {} example.net\n}}\n",
                org.display(),
                net.display()
            ),
            be,
        );
        let want = [
            "www.example.org. 2 IN CNAME www.example.net.",
            "www.example.net. 2 IN A 192.0.2.1",
        ];
        assert_eq!(answers(&s.dig(&["www.example.org", "A"])), want, "{be}");
        // The hit is in the prefetch window: the refresh asks for the target again.
        s.dig(&["www.example.org", "A"]);
        let asked = |s: &TestServer| {
            s.lines()
                .iter()
                .filter(|l| l.contains("\"A IN www.example.net. "))
                .count()
        };
        assert!(
            wait_for(Duration::from_secs(3), || asked(&s) == 2),
            "{be}: the prefetch's self-lookup: {:?}",
            s.lines()
        );
        std::thread::sleep(Duration::from_millis(100));
        let out = s.dig(&["www.example.org", "A"]);
        assert_eq!(dig_status(&out), "NOERROR", "{be}: {out}");
        assert_eq!(answers(&out).len(), 2, "{be}: {out}");
    }
}
