//! Setup tables: CoreDNS's `setup_test.go` cases (and every error path of
//! `cacheParse`) as data, with the exact texts CoreDNS prints.

use corefile::Dispenser;

use super::setup::{self, CacheConfig, SEC, shard_size};
use crate::config::{BlockSettings, SetupCtx};

fn parse(input: &str) -> Result<CacheConfig, String> {
    let keys = vec!["dns://example.org.:53".to_owned()];
    let mut settings = BlockSettings::default();
    let ctx = SetupCtx {
        keys: &keys,
        zones: vec!["example.org.".into()],
        settings: &mut settings,
        filename: "Corefile",
    };
    let mut d = Dispenser::from_text("Corefile", input);
    setup::setup(&mut d, &ctx).map_err(|e| e.to_string())
}

/// The options that differ from CoreDNS's defaults, in a few words.
fn describe(c: &CacheConfig) -> String {
    let d = CacheConfig::new(c.keys.clone(), vec!["example.org.".into()]);
    let mut v = vec![format!("zones={}", c.zones.join(","))];
    let mut num = |name: &str, a: i64, b: i64| {
        if a != b {
            v.push(format!("{name}={a}"));
        }
    };
    num("pcap", c.pcap, d.pcap);
    num("pttl", c.pttl, d.pttl);
    num("minpttl", c.minpttl, d.minpttl);
    num("ncap", c.ncap, d.ncap);
    num("nttl", c.nttl, d.nttl);
    num("minnttl", c.minnttl, d.minnttl);
    num("failttl_ms", c.failttl / 1_000_000, d.failttl / 1_000_000);
    num("prefetch", c.prefetch, d.prefetch);
    num("window_s", c.prefetch_window / SEC, d.prefetch_window / SEC);
    num("pct", c.percentage, d.percentage);
    num("stale_s", c.stale_up_to / SEC, d.stale_up_to / SEC);
    num(
        "verify_ms",
        c.verify_timeout / 1_000_000,
        d.verify_timeout / 1_000_000,
    );
    num("stale_ttl_s", c.stale_ttl / SEC, d.stale_ttl / SEC);
    num(
        "recheck_ms",
        c.stale_recheck / 1_000_000,
        d.stale_recheck / 1_000_000,
    );
    if c.verify_stale {
        v.push("verify".into());
    }
    if c.prefer_positive {
        v.push("prefer_positive".into());
    }
    if !c.pexcept.is_empty() {
        v.push(format!("pexcept={}", c.pexcept.join(",")));
    }
    if !c.nexcept.is_empty() {
        v.push(format!("nexcept={}", c.nexcept.join(",")));
    }
    if c.keepttl {
        v.push("keepttl".into());
    }
    v.join(" ")
}

fn check(cases: &[(&str, &str)]) {
    let mut bad = Vec::new();
    for (input, want) in cases {
        let got = match parse(input) {
            Ok(c) => describe(&c),
            Err(e) => e,
        };
        if got != *want {
            bad.push(format!("{input:?}\n   want {want}\n    got {got}"));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

const ARG1: &str = "plugin/cache: Corefile:2 - Error during parsing: Wrong argument count or unexpected line ending after";

#[test]
fn setup_table() {
    let e = |after: &str| format!("{ARG1} '{after}'");
    let cases: Vec<(String, String)> = vec![
        // CoreDNS TestSetup.
        ("cache".into(), "zones=example.org.".into()),
        // `{}` is one token, an argument (a zone), as caddy lexes it.
        ("cache {}".into(), "zones={}.".into()),
        (
            "cache example.nl {\n success 10\n}".into(),
            "zones=example.nl. pcap=10".into(),
        ),
        (
            "cache example.nl {\n success 10 1800 30\n}".into(),
            "zones=example.nl. pcap=10 pttl=1800 minpttl=30".into(),
        ),
        (
            "cache example.nl {\n success 10\n denial 10 15\n}".into(),
            "zones=example.nl. pcap=10 ncap=10 nttl=15".into(),
        ),
        (
            "cache example.nl {\n success 10\n denial 10 15 2\n}".into(),
            "zones=example.nl. pcap=10 ncap=10 nttl=15 minnttl=2".into(),
        ),
        (
            "cache 25 example.nl {\n success 10\n denial 10 15\n}".into(),
            "zones=example.nl. pcap=10 pttl=25 ncap=10 nttl=15".into(),
        ),
        (
            "cache 25 example.nl {\n success 10\n denial 10 15 5\n}".into(),
            "zones=example.nl. pcap=10 pttl=25 ncap=10 nttl=15".into(),
        ),
        (
            "cache aaa example.nl".into(),
            "zones=aaa.,example.nl.".into(),
        ),
        (
            "cache\t{\n prefetch 10\n}".into(),
            "zones=example.org. prefetch=10".into(),
        ),
        (
            "cache 30".into(),
            "zones=example.org. pttl=30 nttl=30".into(),
        ),
        (
            "cache +30 Example.NET".into(),
            "zones=example.net. pttl=30 nttl=30".into(),
        ),
        (
            "cache 99999999999999999999 example.net".into(),
            "zones=99999999999999999999.,example.net.".into(),
        ),
        (
            "cache {\n success -5\n}".into(),
            "zones=example.org. pcap=-5".into(),
        ),
        (
            "cache {\n prefetch 2 10m 50%\n}".into(),
            "zones=example.org. prefetch=2 window_s=600 pct=50".into(),
        ),
        (
            "cache {\n prefetch 0 -1m\n}".into(),
            "zones=example.org. window_s=-60".into(),
        ),
        // CoreDNS TestSetup failures.
        (
            "cache example.nl {\n success\n denial 10 15\n}".into(),
            e("success"),
        ),
        (
            "cache example.nl {\n success 15\n denial aaa\n}".into(),
            "plugin/cache: strconv.Atoi: parsing \"aaa\": invalid syntax".into(),
        ),
        (
            "cache example.nl {\n positive 15\n negative aaa\n}".into(),
            e("positive"),
        ),
        (
            "cache 0 example.nl".into(),
            "plugin/cache: cache TTL can not be zero or negative: 0".into(),
        ),
        (
            "cache -1 example.nl".into(),
            "plugin/cache: cache TTL can not be zero or negative: -1".into(),
        ),
        ("cache 1 example.nl {\n positive 0\n}".into(), e("positive")),
        (
            "cache 1 example.nl {\n prefetch -1\n}".into(),
            "plugin/cache: prefetch amount should be positive: -1".into(),
        ),
        (
            "cache 1 example.nl {\n prefetch 0 blurp\n}".into(),
            "plugin/cache: time: invalid duration \"blurp\"".into(),
        ),
        (
            "cache\ncache".into(),
            "plugin/cache: this plugin can only be used once per Server Block".into(),
        ),
        // Every other error of cacheParse.
        (
            "cache {\n success 10 0\n}".into(),
            "plugin/cache: cache TTL can not be zero or negative: 0".into(),
        ),
        (
            "cache {\n denial 10 20 -1\n}".into(),
            "plugin/cache: cache min TTL can not be negative: -1".into(),
        ),
        (
            "cache {\n success 10 x\n}".into(),
            "plugin/cache: strconv.Atoi: parsing \"x\": invalid syntax".into(),
        ),
        (
            "cache {\n success 10 20 1.5\n}".into(),
            "plugin/cache: strconv.Atoi: parsing \"1.5\": invalid syntax".into(),
        ),
        (
            "cache {\n success 99999999999999999999\n}".into(),
            "plugin/cache: strconv.Atoi: parsing \"99999999999999999999\": value out of range"
                .into(),
        ),
        ("cache {\n prefetch\n}".into(), e("prefetch")),
        ("cache {\n prefetch 1 1m 10% x\n}".into(), e("x")),
        (
            "cache {\n prefetch 1 1m 10\n}".into(),
            "plugin/cache: last character of percentage should be `%`, but is: '0'".into(),
        ),
        (
            "cache {\n prefetch 1 1m 5%\n}".into(),
            "plugin/cache: percentage should fall in range [10, 90]: 5".into(),
        ),
        (
            "cache {\n prefetch 1 1m 91%\n}".into(),
            "plugin/cache: percentage should fall in range [10, 90]: 91".into(),
        ),
        (
            "cache {\n prefetch 1 1m x%\n}".into(),
            "plugin/cache: strconv.Atoi: parsing \"x\": invalid syntax".into(),
        ),
        (
            "cache {\n prefetch x\n}".into(),
            "plugin/cache: strconv.Atoi: parsing \"x\": invalid syntax".into(),
        ),
        ("cache {\n bogus\n}".into(), e("bogus")),
        ("cache {\n keepttl 1\n}".into(), e("1")),
        (
            "cache {\n keepttl\n}".into(),
            "zones=example.org. keepttl".into(),
        ),
    ];
    let cases: Vec<(&str, &str)> = cases
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    check(&cases);
}

#[test]
fn serve_stale_table() {
    let e = |after: &str| format!("{ARG1} '{after}'");
    let ok = |s: &str| format!("zones=example.org. {s}");
    let p = "plugin/cache: ";
    let cases: Vec<(String, String)> = vec![
        // CoreDNS TestServeStale.
        ("serve_stale".into(), ok("stale_s=3600")),
        ("serve_stale 20m".into(), ok("stale_s=1200")),
        ("serve_stale 1h20m".into(), ok("stale_s=4800")),
        ("serve_stale 0m".into(), "zones=example.org.".into()),
        ("serve_stale 0".into(), "zones=example.org.".into()),
        ("serve_stale 0 verify".into(), ok("verify")),
        (
            "serve_stale 0 immediate".into(),
            "zones=example.org.".into(),
        ),
        ("serve_stale 0 VERIFY".into(), ok("verify")),
        (
            "serve_stale 1h immediate 30s".into(),
            ok("stale_s=3600 stale_ttl_s=30"),
        ),
        (
            "serve_stale 1h immediate 30s 30s".into(),
            ok("stale_s=3600 stale_ttl_s=30 recheck_ms=30000"),
        ),
        (
            "serve_stale 1h immediate 4294967295s".into(),
            ok("stale_s=3600 stale_ttl_s=4294967295"),
        ),
        ("serve_stale 1h immediate 0".into(), ok("stale_s=3600")),
        (
            "serve_stale 1h verify 100ms".into(),
            ok("stale_s=3600 verify_ms=100 verify"),
        ),
        (
            "serve_stale 1h verify 100ms 30s".into(),
            ok("stale_s=3600 verify_ms=100 stale_ttl_s=30 verify"),
        ),
        (
            "serve_stale 1h verify 100ms 30s 30s".into(),
            ok("stale_s=3600 verify_ms=100 stale_ttl_s=30 recheck_ms=30000 verify"),
        ),
        ("serve_stale 1h verify 0".into(), ok("stale_s=3600 verify")),
        (
            "serve_stale 1h verify 0 1m".into(),
            ok("stale_s=3600 stale_ttl_s=60 verify"),
        ),
        (
            "serve_stale 1h VERIFY 250ms".into(),
            ok("stale_s=3600 verify_ms=250 verify"),
        ),
        (
            "serve_stale 1h verify 0 0 5m".into(),
            ok("stale_s=3600 recheck_ms=300000 verify"),
        ),
        (
            "serve_stale 1h verify 100ms 30s 250ms".into(),
            ok("stale_s=3600 verify_ms=100 stale_ttl_s=30 recheck_ms=250 verify"),
        ),
        (
            "serve_stale 20".into(),
            format!("{p}time: missing unit in duration \"20\""),
        ),
        (
            "serve_stale -20m".into(),
            format!("{p}invalid negative duration for serve_stale"),
        ),
        (
            "serve_stale aa".into(),
            format!("{p}time: invalid duration \"aa\""),
        ),
        (
            "serve_stale 1m nono".into(),
            format!("{p}invalid value for serve_stale refresh mode: nono"),
        ),
        (
            "serve_stale 0 after nono".into(),
            format!("{p}invalid value for serve_stale refresh mode: after"),
        ),
        (
            "serve_stale 1h immediate 100ms".into(),
            format!("{p}serve_stale response TTL must be a whole number of seconds"),
        ),
        (
            "serve_stale 1h immediate 4294967296s".into(),
            format!("{p}serve_stale response TTL exceeds the DNS TTL range"),
        ),
        (
            "serve_stale 1h immediate -1s".into(),
            format!("{p}invalid negative response TTL for serve_stale"),
        ),
        (
            "serve_stale 1h immediate garbage".into(),
            format!("{p}invalid serve_stale response TTL: time: invalid duration \"garbage\""),
        ),
        (
            "serve_stale 1h immediate 30s extra".into(),
            format!("{p}invalid serve_stale failure recheck: time: invalid duration \"extra\""),
        ),
        (
            "serve_stale 1h verify -1ms".into(),
            format!("{p}invalid negative timeout for serve_stale verify"),
        ),
        (
            "serve_stale 1h verify garbage".into(),
            format!("{p}invalid serve_stale verify timeout: time: invalid duration \"garbage\""),
        ),
        (
            "serve_stale 1h verify 100ms 500ms".into(),
            format!("{p}serve_stale response TTL must be a whole number of seconds"),
        ),
        (
            "serve_stale 1h verify 100ms -1s".into(),
            format!("{p}invalid negative response TTL for serve_stale"),
        ),
        (
            "serve_stale 1h verify 100ms garbage".into(),
            format!("{p}invalid serve_stale response TTL: time: invalid duration \"garbage\""),
        ),
        (
            "serve_stale 1h verify 100ms 30s extra".into(),
            format!("{p}invalid serve_stale failure recheck: time: invalid duration \"extra\""),
        ),
        // CoreDNS TestServeStaleFailureRecheck.
        ("serve_stale 1h immediate 0 0".into(), ok("stale_s=3600")),
        (
            "serve_stale 1h immediate 30s -1s".into(),
            format!("{p}invalid negative failure recheck for serve_stale"),
        ),
        (
            "serve_stale 1h immediate 30s 5m1s".into(),
            format!("{p}serve_stale failure recheck cannot exceed 5 minutes"),
        ),
        ("serve_stale 1h immediate 30s 30s extra".into(), e("extra")),
        (
            "serve_stale 1h verify 100ms 30s -1s".into(),
            format!("{p}invalid negative failure recheck for serve_stale"),
        ),
        (
            "serve_stale 1h verify 100ms 30s 30s extra".into(),
            e("extra"),
        ),
        // CoreDNS TestServeStalePolicy.
        (
            "serve_stale\nserve_stale_policy prefer_positive".into(),
            ok("stale_s=3600 prefer_positive"),
        ),
        (
            "serve_stale_policy PREFER_POSITIVE\nserve_stale".into(),
            ok("stale_s=3600 prefer_positive"),
        ),
        (
            "serve_stale_policy prefer_positive".into(),
            format!("{p}serve_stale_policy requires serve_stale"),
        ),
        (
            "serve_stale\nserve_stale_policy".into(),
            format!("{ARG1} 'serve_stale_policy'").replace("Corefile:2", "Corefile:3"),
        ),
        (
            "serve_stale\nserve_stale_policy prefer_positive extra".into(),
            format!("{ARG1} 'extra'").replace("Corefile:2", "Corefile:3"),
        ),
        (
            "serve_stale\nserve_stale_policy invalid".into(),
            format!("{p}invalid serve_stale_policy: invalid"),
        ),
        (
            "serve_stale\nserve_stale_policy prefer_positive\nserve_stale_policy prefer_positive"
                .into(),
            format!("{p}serve_stale_policy can only be specified once"),
        ),
        // CoreDNS TestServfail.
        ("servfail 1s".into(), ok("failttl_ms=1000")),
        ("servfail 5m".into(), ok("failttl_ms=300000")),
        ("servfail 0s".into(), ok("failttl_ms=0")),
        ("servfail 0".into(), ok("failttl_ms=0")),
        ("servfail".into(), e("servfail")),
        (
            "servfail 6m".into(),
            format!("{p}caching SERVFAIL responses over 5 minutes is not permitted"),
        ),
        (
            "servfail 20".into(),
            format!("{p}time: missing unit in duration \"20\""),
        ),
        (
            "servfail -1s".into(),
            format!("{p}invalid negative ttl for servfail"),
        ),
        (
            "servfail aa".into(),
            format!("{p}time: invalid duration \"aa\""),
        ),
        ("servfail 1m invalid".into(), e("invalid")),
        // CoreDNS TestDisable.
        (
            "disable denial example.com example.org".into(),
            ok("nexcept=example.com.,example.org."),
        ),
        (
            "disable success example.com example.org".into(),
            ok("pexcept=example.com.,example.org."),
        ),
        ("disable denial".into(), ok("nexcept=.")),
        ("disable success".into(), ok("pexcept=.")),
        (
            "disable denial example.com example.org\ndisable success Example.com example.org"
                .into(),
            ok("pexcept=example.com.,example.org. nexcept=example.com.,example.org."),
        ),
        ("disable".into(), e("disable")),
        (
            "disable invalid example.com example.org".into(),
            format!("{p}cache type for disable must be \"success\" or \"denial\""),
        ),
    ];
    let cases: Vec<(String, String)> = cases
        .into_iter()
        .map(|(a, b)| (format!("cache {{\n{a}\n}}"), b))
        .collect();
    let cases: Vec<(&str, &str)> = cases
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    check(&cases);
}

#[test]
fn capacity_rounding() {
    // 256 shards of max(cap/256, 4) entries.
    assert_eq!(shard_size(10_000) * 256, 9984);
    assert_eq!(shard_size(5000) * 256, 4864);
    assert_eq!(shard_size(10) * 256, 1024);
    assert_eq!(shard_size(-5) * 256, 1024);
    assert_eq!(shard_size(1_000_000) * 256, 999_936);
}
