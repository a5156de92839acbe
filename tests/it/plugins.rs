//! Query-path plugins with real clients: *acl*.

use std::process::Command;
use std::time::Duration;

use crate::util::*;

/// `dig` to the server at `server` (an address of this host) from source `src`.
fn dig_from(s: &TestServer, server: &str, src: &str, args: &[&str]) -> String {
    let out = Command::new("dig")
        .arg(format!("@{server}"))
        .args(["-p", &s.port.to_string(), "-b", src, "+time=2", "+tries=1"])
        .args(args)
        .output()
        .expect("dig (install bind9-dnsutils)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The OPT pseudosection lines of dig output, whitespace normalised.
fn opt_lines(dig: &str) -> Vec<String> {
    let mut on = false;
    let mut v = Vec::new();
    for l in dig.lines() {
        if l.starts_with(";; OPT PSEUDOSECTION") {
            on = true;
            continue;
        }
        if on {
            if !l.starts_with("; ") {
                break;
            }
            v.push(l.split_whitespace().collect::<Vec<_>>().join(" "));
        }
    }
    v
}

/// (server address, source address, dig arguments, the reply's status, flags and
/// OPT lines; `None`: no reply).
type Case<'a> = (
    &'a str,
    &'a str,
    &'a [&'a str],
    Option<(&'a str, &'a str, &'a [&'a str])>,
);

#[test]
fn acl_allows_blocks_filters_and_drops_by_type_and_client() {
    for be in backends() {
        let mport = free_port();
        let s = TestServer::start(
            &format!(
                "example.org:{{port}} {{\n prometheus 127.0.0.1:{mport}\n \
                 acl {{\n  allow net 127.0.0.1\n  block type A net 127.0.0.0/8\n  \
                 filter type AAAA\n  drop type MX\n }}\n \
                 acl sub.example.org {{\n  block net 127.0.0.0/8\n }}\n whoami\n}}\n"
            ),
            be,
        );
        // Query → status, flags, OPT lines (None: no reply at all).
        let cases: [Case<'_>; 9] = [
            // 127.0.0.1 is allowed before any block, in every rule (allow ends the rules).
            (
                "127.0.0.1",
                "127.0.0.1",
                &["a.example.org", "A"],
                Some(("NOERROR", "qr aa rd", &[])),
            ),
            (
                "127.0.0.1",
                "127.0.0.1",
                &["x.sub.example.org", "TXT"],
                Some(("NOERROR", "qr aa rd", &[])),
            ),
            (
                "127.0.0.1",
                "127.0.0.2",
                &["a.example.org", "A"],
                Some((
                    "REFUSED",
                    "qr rd",
                    &[
                        "; EDNS: version: 0, flags: do; udp: 1232",
                        "; EDE: 15 (Blocked)",
                    ],
                )),
            ),
            // A client without EDNS gets the OPT all the same (CoreDNS).
            (
                "127.0.0.1",
                "127.0.0.2",
                &["+noedns", "a.example.org", "A"],
                Some((
                    "REFUSED",
                    "qr rd",
                    &[
                        "; EDNS: version: 0, flags: do; udp: 4096",
                        "; EDE: 15 (Blocked)",
                    ],
                )),
            ),
            (
                "127.0.0.1",
                "127.0.0.2",
                &["+tcp", "a.example.org", "AAAA"],
                Some((
                    "NOERROR",
                    "qr rd",
                    &[
                        "; EDNS: version: 0, flags: do; udp: 1232",
                        "; EDE: 17 (Filtered)",
                    ],
                )),
            ),
            ("127.0.0.1", "127.0.0.2", &["a.example.org", "MX"], None),
            // No policy of the first rule holds TXT; the second rule's zone does not
            // hold this name: allowed.
            (
                "127.0.0.1",
                "127.0.0.2",
                &["a.example.org", "TXT"],
                Some(("NOERROR", "qr aa rd", &[])),
            ),
            (
                "127.0.0.1",
                "127.0.0.2",
                &["x.sub.example.org", "TXT"],
                Some((
                    "REFUSED",
                    "qr rd",
                    &[
                        "; EDNS: version: 0, flags: do; udp: 1232",
                        "; EDE: 15 (Blocked)",
                    ],
                )),
            ),
            // An IPv6 client is in no IPv4 network: only the type policies hold it.
            (
                "::1",
                "::1",
                &["a.example.org", "A"],
                Some(("NOERROR", "qr aa rd", &[])),
            ),
        ];
        for (server, src, args, want) in cases {
            let out = dig_from(&s, server, src, args);
            match want {
                None => assert!(
                    out.contains("timed out") && !out.contains("status:"),
                    "{be} {src} {args:?}: dropped: {out}"
                ),
                Some((status, flags, opt)) => {
                    assert_eq!(dig_status(&out), status, "{be} {src} {args:?}: {out}");
                    assert_eq!(dig_flags(&out), flags, "{be} {src} {args:?}: {out}");
                    if !opt.is_empty() {
                        assert_eq!(opt_lines(&out), opt, "{be} {src} {args:?}: {out}");
                        assert!(section(&out, "ANSWER").is_empty(), "{be}: {out}");
                    }
                }
            }
        }
        let out = dig_from(&s, "::1", "::1", &["a.example.org", "AAAA"]);
        assert_eq!(dig_status(&out), "NOERROR", "{be}: {out}");
        assert_eq!(opt_lines(&out)[1], "; EDE: 17 (Filtered)", "{be}: {out}");
        std::thread::sleep(Duration::from_millis(100));
        let (_, _, body) = http(mport, "GET", "/metrics").expect("scrape");
        let p = s.port;
        let mut got: Vec<&str> = body
            .lines()
            .filter(|l| l.starts_with("coredns_acl_"))
            .collect();
        got.sort_unstable();
        let want = [
            format!("coredns_acl_allowed_requests_total{{server=\"dns://:{p}\",view=\"\"}} 4"),
            format!(
                "coredns_acl_blocked_requests_total{{server=\"dns://:{p}\",view=\"\",zone=\"example.org.\"}} 2"
            ),
            format!(
                "coredns_acl_blocked_requests_total{{server=\"dns://:{p}\",view=\"\",zone=\"sub.example.org.\"}} 1"
            ),
            format!(
                "coredns_acl_dropped_requests_total{{server=\"dns://:{p}\",view=\"\",zone=\"example.org.\"}} 1"
            ),
            format!(
                "coredns_acl_filtered_requests_total{{server=\"dns://:{p}\",view=\"\",zone=\"example.org.\"}} 2"
            ),
        ];
        assert_eq!(got, want, "{be}:\n{body}");
        for help in [
            "# HELP coredns_acl_allowed_requests_total Counter of DNS requests being allowed.",
            "# HELP coredns_acl_blocked_requests_total Counter of DNS requests being blocked.",
            "# TYPE coredns_acl_dropped_requests_total counter",
        ] {
            assert!(body.lines().any(|l| l == help), "{be}: {help}");
        }
        assert!(
            body.lines().any(|l| l
                == format!(
                    "coredns_dns_responses_total{{plugin=\"acl\",rcode=\"REFUSED\",server=\"dns://:{p}\",view=\"\",zone=\"example.org.\"}} 3"
                )),
            "{be}:\n{body}"
        );
    }
}

const REWRITE_ZONE: &str = "$ORIGIN example.org.
@ 3600 IN SOA ns1.example.org. admin.example.org. 1 7200 3600 1209600 3600
@ 3600 IN NS ns1.example.org.
ns1 3600 IN A 192.0.2.53
www 3600 IN A 192.0.2.1
multi 3600 IN A 192.0.2.2
alias 3600 IN CNAME www.example.org.
";

/// The question section line of dig output.
fn question(dig: &str) -> Vec<String> {
    section(dig, "QUESTION")
}

#[test]
fn rewrite_names_types_ttls_and_rcodes_both_ways() {
    let dir = TempDir::new("rewrite");
    let db = dir.write("db.example.org", REWRITE_ZONE);
    let db = db.display().to_string();
    for be in backends() {
        let s = TestServer::start(
            &format!(
                ".:{{port}} {{\n \
                 rewrite name exact foo.example.org www.example.org\n \
                 rewrite name suffix .old.example. .example.org. answer auto\n \
                 rewrite stop {{\n  name regex ^r-(.*)\\.example\\.net\\.$ {{1}}.example.org.\n  answer auto\n }}\n \
                 rewrite name regex ^q-(.*)\\.example\\.net\\.$ {{1}}.example.org.\n \
                 rewrite type HINFO A\n \
                 rewrite ttl multi.example.org 10\n \
                 rewrite rcode nope.example.org NXDOMAIN REFUSED\n \
                 file {db} example.org\n}}\n"
            ),
            be,
        );
        // exact: the answer's owner is the query's name, lower-cased; the question
        // as sent.
        let out = s.dig(&["FOO.example.org", "A"]);
        assert_eq!(dig_status(&out), "NOERROR", "{be}: {out}");
        assert_eq!(question(&out), [";FOO.example.org. IN A"], "{be}: {out}");
        assert_eq!(
            section(&out, "ANSWER"),
            ["foo.example.org. 3600 IN A 192.0.2.1"],
            "{be}: {out}"
        );
        assert_eq!(
            section(&out, "AUTHORITY"),
            ["example.org. 3600 IN NS ns1.example.org."],
            "{be}: {out}"
        );
        // suffix with answer auto: owners and RDATA names mapped back where the
        // suffix (with its leading dot) matches.
        let out = s.dig(&["www.old.example", "A"]);
        assert_eq!(question(&out), [";www.old.example. IN A"], "{be}: {out}");
        assert_eq!(
            section(&out, "ANSWER"),
            ["www.old.example. 3600 IN A 192.0.2.1"],
            "{be}: {out}"
        );
        assert_eq!(
            section(&out, "AUTHORITY"),
            ["example.org. 3600 IN NS ns1.old.example."],
            "{be}: {out}"
        );
        // regex with answer auto (the block form), over TCP.
        let out = s.dig(&["+tcp", "r-alias.example.net", "A"]);
        assert_eq!(
            section(&out, "ANSWER"),
            [
                "r-alias.example.net. 3600 IN CNAME www.example.org.",
                "www.example.org. 3600 IN A 192.0.2.1"
            ],
            "{be}: {out}"
        );
        // regex without answer auto: the question is restored (a stop rule
        // matched), the names are not.
        let out = s.dig(&["q-www.example.net", "A"]);
        assert_eq!(question(&out), [";q-www.example.net. IN A"], "{be}: {out}");
        assert_eq!(
            section(&out, "ANSWER"),
            ["www.example.org. 3600 IN A 192.0.2.1"],
            "{be}: {out}"
        );
        // type: the HINFO question is restored, the answer holds the A record.
        let out = s.dig(&["www.example.org", "HINFO"]);
        assert_eq!(
            question(&out),
            [";www.example.org. IN HINFO"],
            "{be}: {out}"
        );
        assert_eq!(
            section(&out, "ANSWER"),
            ["www.example.org. 3600 IN A 192.0.2.1"],
            "{be}: {out}"
        );
        // ttl: every record of the reply, authority included.
        let out = s.dig(&["multi.example.org", "A"]);
        assert_eq!(
            section(&out, "ANSWER"),
            ["multi.example.org. 10 IN A 192.0.2.2"],
            "{be}: {out}"
        );
        assert_eq!(
            section(&out, "AUTHORITY"),
            ["example.org. 10 IN NS ns1.example.org."],
            "{be}: {out}"
        );
        // rcode: REFUSED, with AA and the SOA kept.
        let out = s.dig(&["nope.example.org", "A"]);
        assert_eq!(dig_status(&out), "REFUSED", "{be}: {out}");
        assert_eq!(dig_flags(&out), "qr aa rd", "{be}: {out}");
        assert_eq!(section(&out, "AUTHORITY").len(), 1, "{be}: {out}");
    }
}

#[test]
fn rewrite_before_forward_resumes_rewritten() {
    let dir = TempDir::new("rewrite-fwd");
    let db = dir.write("db.example.org", REWRITE_ZONE);
    for be in backends() {
        let up = TestServer::start(
            &format!(
                "example.org:{{port}} {{\n file {} example.org\n}}\n",
                db.display()
            ),
            be,
        );
        let s = TestServer::start(
            &format!(
                ".:{{port}} {{\n rewrite name exact foo.example.org www.example.org\n \
                 rewrite name substring bad.example.org x..y\n \
                 errors\n log\n forward . 127.0.0.1:{}\n}}\n",
                up.port
            ),
            be,
        );
        for args in [
            &["Foo.Example.org", "A"][..],
            &["+tcp", "foo.example.org", "A"],
        ] {
            let out = s.dig(args);
            assert_eq!(dig_status(&out), "NOERROR", "{be}: {out}");
            assert_eq!(
                section(&out, "ANSWER"),
                ["foo.example.org. 3600 IN A 192.0.2.1"],
                "{be} {args:?}: {out}"
            );
        }
        // *log* (before *rewrite*) names the query as the client sent it.
        let line = s.wait_line(|l| l.contains("\"A IN ")).unwrap_or_default();
        assert!(
            line.contains("\"A IN foo.example.org. udp "),
            "{be}: {line}"
        );
        // A rewritten name that is not a name: SERVFAIL and CoreDNS's error.
        let out = s.dig(&["bad.example.org", "A"]);
        assert_eq!(dig_status(&out), "SERVFAIL", "{be}: {out}");
        let line = s.wait_line(|l| l.contains("invalid name after rewrite"));
        assert_eq!(
            line.as_deref(),
            Some("[ERROR] plugin/errors: 2 bad.example.org. A: invalid name after rewrite: x..y."),
            "{be}"
        );
    }
}

#[test]
fn server_error_reply_has_the_flags_plugins_set() {
    for be in backends() {
        // *header* clears RD on the query; nothing answers, so the server writes
        // SERVFAIL from the request as *header* left it (CoreDNS `SetRcode(r)`).
        let s = TestServer::start(".:{port} {\n header {\n  query clear rd\n }\n}\n", be);
        let out = s.dig(&["a.example", "A"]);
        assert_eq!(dig_status(&out), "SERVFAIL", "{be}: {out}");
        assert_eq!(dig_flags(&out), "qr", "{be}: {out}");
    }
}

/// *dns64* with *file* behind it and with *forward* behind it (the A lookup
/// parks too), as plugins.md's verified table: A-only names get AAAA in the
/// prefix without AA, native AAAA and NXDOMAIN pass, a name with neither is
/// NODATA without AA; IPv4 clients only with `allow_ipv4`; `translate_all`;
/// the translation counter.
#[test]
fn dns64_synthesises_aaaa_from_a() {
    let dir = TempDir::new("dns64");
    let db = dir.write(
        "db.example.org",
        "@ 3600 IN SOA ns1 admin 1 7200 3600 1209600 300\n\
         @ 3600 IN NS ns1\nns1 3600 IN A 192.0.2.53\nns2 3600 IN A 192.0.2.54\n\
         v6 3600 IN AAAA 2001:db8::1\nboth 600 IN A 192.0.2.55\nboth 600 IN AAAA 2001:db8::55\n\
         txt 3600 IN TXT \"x\"\nshort 60 IN A 198.51.100.1\n",
    );
    for be in backends() {
        let up = TestServer::start(
            &format!(
                "fwd.test:{{port}} {{\n file {} fwd.test\n}}\n",
                db.display()
            ),
            be,
        );
        let mport = free_port();
        let s = TestServer::start(
            &format!(
                "example.org:{{port}} {{\n prometheus 127.0.0.1:{mport}\n dns64 {{\n  allow_ipv4\n }}\n file {}\n}}\n\
                 example.net:{{port}} {{\n dns64\n file {} example.net\n}}\n\
                 fwd.test:{{port}} {{\n dns64 {{\n  prefix 64:ff9b:1::/48\n  translate_all\n  allow_ipv4\n }}\n \
                 forward . 127.0.0.1:{}\n}}\n",
                db.display(),
                db.display(),
                up.port
            ),
            be,
        );
        let ns = "example.org. 3600 IN NS ns1.example.org.";
        // file behind dns64, IPv4 client with allow_ipv4.
        let out = s.dig(&["ns2.example.org", "AAAA"]);
        assert_eq!(dig_status(&out), "NOERROR", "{be}: {out}");
        assert_eq!(dig_flags(&out), "qr rd", "{be}: {out}");
        assert_eq!(
            section(&out, "ANSWER"),
            vec!["ns2.example.org. 3600 IN AAAA 64:ff9b::c000:236"],
            "{be}"
        );
        assert_eq!(section(&out, "AUTHORITY"), vec![ns], "{be}");
        // The TTL is the lower of the A's and the SOA's.
        let out = s.dig(&["short.example.org", "AAAA"]);
        assert_eq!(
            section(&out, "ANSWER"),
            vec!["short.example.org. 60 IN AAAA 64:ff9b::c633:6401"],
            "{be}"
        );
        let out = s.dig(&["v6.example.org", "AAAA"]);
        assert_eq!(dig_flags(&out), "qr aa rd", "{be}: {out}");
        assert_eq!(
            section(&out, "ANSWER"),
            vec!["v6.example.org. 3600 IN AAAA 2001:db8::1"]
        );
        let out = s.dig(&["nope.example.org", "AAAA"]);
        assert_eq!(
            (dig_status(&out).as_str(), dig_flags(&out).as_str()),
            ("NXDOMAIN", "qr aa rd"),
            "{be}: {out}"
        );
        let out = s.dig(&["+dnssec", "txt.example.org", "AAAA"]);
        assert_eq!(dig_status(&out), "NOERROR", "{be}: {out}");
        assert_eq!(dig_flags(&out), "qr rd", "{be}: {out}");
        assert!(section(&out, "ANSWER").is_empty(), "{be}: {out}");
        assert_eq!(
            section(&out, "AUTHORITY"),
            vec![
                "example.org. 3600 IN SOA ns1.example.org. admin.example.org. 1 7200 3600 1209600 300"
            ],
            "{be}"
        );
        assert!(
            out.contains("; EDNS: version: 0, flags: do;"),
            "{be}: {out}"
        );
        // Without allow_ipv4 only IPv6 clients are translated.
        let out = s.dig(&["ns2.example.net", "AAAA"]);
        assert!(section(&out, "ANSWER").is_empty(), "{be}: {out}");
        let out = dig_from(&s, "::1", "::1", &["ns2.example.net", "AAAA"]);
        assert_eq!(
            section(&out, "ANSWER"),
            vec!["ns2.example.net. 3600 IN AAAA 64:ff9b::c000:236"],
            "{be}: {out}"
        );
        // forward behind dns64 (both lookups park), translate_all, a /48 prefix.
        for tcp in ["+notcp", "+tcp"] {
            let out = s.dig(&[tcp, "both.fwd.test", "AAAA"]);
            assert_eq!(
                section(&out, "ANSWER"),
                vec!["both.fwd.test. 600 IN AAAA 64:ff9b:1:c000:2:3700::"],
                "{be} {tcp}: {out}"
            );
        }
        let out = s.dig(&["ns1.fwd.test", "A"]);
        assert_eq!(
            section(&out, "ANSWER"),
            vec!["ns1.fwd.test. 3600 IN A 192.0.2.53"],
            "{be}: {out}"
        );
        std::thread::sleep(Duration::from_millis(100));
        let (_, _, body) = http(mport, "GET", "/metrics").expect("scrape");
        let p = s.port;
        let got: Vec<&str> = body
            .lines()
            .filter(|l| l.starts_with("coredns_dns64_"))
            .collect();
        assert_eq!(
            got,
            vec![format!(
                "coredns_dns64_requests_translated_total{{server=\"dns://:{p}\"}} 6"
            )],
            "{be}"
        );
    }
}

/// *rewrite*'s `cname` rule: a CNAME whose target it maps is pointed at the new
/// target, which the server looks up (here through *forward*, so the lookup
/// parks); replies without such a CNAME pass unchanged; with a name rule before
/// it, the names and question go back to the client's.
#[test]
fn rewrite_cname_rule_looks_up_the_new_target() {
    let dir = TempDir::new("rewrite-cname");
    let org = dir.write(
        "db.example.org",
        "@ 3600 IN SOA ns1 admin 1 7200 3600 1209600 300\n@ 3600 IN NS ns1\n\
         ns1 3600 IN A 192.0.2.53\nwww 3600 IN CNAME host.old.test.\n\
         other 3600 IN CNAME host.elsewhere.test.\n",
    );
    let old = dir.write(
        "db.old",
        "@ 3600 IN SOA ns1 admin 1 7200 3600 1209600 300\n@ 3600 IN NS ns1\n\
         host 60 IN A 192.0.2.1\n",
    );
    let new = dir.write(
        "db.new",
        "@ 3600 IN SOA ns1 admin 1 7200 3600 1209600 300\n@ 3600 IN NS ns1\n\
         host 30 IN A 198.51.100.2\n",
    );
    for be in backends() {
        let up = TestServer::start(
            &format!(
                "new.test:{{port}} {{\n file {} new.test\n}}\n",
                new.display()
            ),
            be,
        );
        let s = TestServer::start(
            &format!(
                "example.org:{{port}} {{\n rewrite cname suffix .old.test. .new.test.\n file {org}\n}}\n\
                 alias.test:{{port}} {{\n rewrite continue name suffix .alias.test. .example.org. answer auto\n \
                 rewrite cname exact host.old.test. host.new.test.\n file {org} example.org\n}}\n\
                 two.test:{{port}} {{\n rewrite continue cname suffix .old.test. .wrong.test.\n \
                 rewrite cname suffix .old.test. .new.test.\n file {org} two.test\n}}\n\
                 rel.test:{{port}} {{\n rewrite cname suffix .old.test. .new.test\n file {org} rel.test\n}}\n\
                 old.test:{{port}} {{\n file {} old.test\n}}\n\
                 new.test:{{port}} {{\n forward . 127.0.0.1:{}\n}}\n",
                old.display(),
                up.port,
                org = org.display(),
            ),
            be,
        );
        for tcp in ["+notcp", "+tcp"] {
            let out = s.dig(&[tcp, "www.example.org", "A"]);
            assert_eq!(dig_status(&out), "NOERROR", "{be} {tcp}: {out}");
            assert_eq!(dig_flags(&out), "qr aa rd", "{be} {tcp}: {out}");
            assert_eq!(
                section(&out, "ANSWER"),
                vec![
                    "www.example.org. 3600 IN CNAME host.new.test.",
                    "host.new.test. 30 IN A 198.51.100.2"
                ],
                "{be} {tcp}: {out}"
            );
        }
        // No CNAME the rule maps: the reply as it was.
        let out = s.dig(&["other.example.org", "A"]);
        assert_eq!(
            section(&out, "ANSWER"),
            vec!["other.example.org. 3600 IN CNAME host.elsewhere.test."],
            "{be}: {out}"
        );
        let out = s.dig(&["ns1.example.org", "A"]);
        assert_eq!(
            section(&out, "ANSWER"),
            vec!["ns1.example.org. 3600 IN A 192.0.2.53"],
            "{be}: {out}"
        );
        // Response rules run last first: the later rule's target wins.
        let out = s.dig(&["www.two.test", "A"]);
        assert_eq!(
            section(&out, "ANSWER"),
            vec![
                "www.two.test. 3600 IN CNAME host.new.test.",
                "host.new.test. 30 IN A 198.51.100.2"
            ],
            "{be}: {out}"
        );
        // A new target that is not fully qualified: miekg cannot pack the
        // reply, nothing is sent.
        let out = s.dig(&["www.rel.test", "A"]);
        assert!(out.contains("timed out"), "{be}: {out}");
        // A name rule first: the answer's owner and the question are the client's.
        let out = s.dig(&["www.alias.test", "A"]);
        assert_eq!(dig_status(&out), "NOERROR", "{be}: {out}");
        assert_eq!(
            section(&out, "ANSWER"),
            vec![
                "www.alias.test. 3600 IN CNAME host.new.test.",
                "host.new.test. 30 IN A 198.51.100.2"
            ],
            "{be}: {out}"
        );
    }
}

/// *autopath* with a resolv.conf search path in front of *file*: a name under
/// the first search domain is tried under each domain; the first answer that is
/// not NXDOMAIN comes back with a CNAME from the asked name put first; when all
/// fail, the first try's NXDOMAIN; names outside the first domain pass; the
/// success counter; `@PLUGIN` naming a plugin that gives no search path fails at
/// startup.
#[test]
fn autopath_walks_the_search_path() {
    let dir = TempDir::new("autopath");
    let resolv = dir.write(
        "resolv.conf",
        "nameserver 10.0.0.10\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n",
    );
    let db = dir.write(
        "db.cluster",
        "@ 30 IN SOA ns admin 1 7200 3600 1209600 30\n@ 30 IN NS ns\nns 30 IN A 10.0.0.53\n\
         web.svc 30 IN A 10.0.0.1\napi.default.svc 30 IN A 10.0.0.2\n",
    );
    for be in backends() {
        let mport = free_port();
        let s = TestServer::start(
            &format!(
                ".:{{port}} {{\n prometheus 127.0.0.1:{mport}\n autopath cluster.local {}\n file {} cluster.local\n}}\n",
                resolv.display(),
                db.display()
            ),
            be,
        );
        for tcp in ["+notcp", "+tcp"] {
            let out = s.dig(&[tcp, "web.default.svc.cluster.local", "A"]);
            assert_eq!(dig_status(&out), "NOERROR", "{be} {tcp}: {out}");
            assert!(
                out.contains(";web.default.svc.cluster.local.\tIN\tA"),
                "{be} {tcp}: the asked question: {out}"
            );
            assert_eq!(
                section(&out, "ANSWER"),
                vec![
                    "web.default.svc.cluster.local. 30 IN CNAME web.svc.cluster.local.",
                    "web.svc.cluster.local. 30 IN A 10.0.0.1"
                ],
                "{be} {tcp}: {out}"
            );
        }
        let out = s.dig(&["api.default.svc.cluster.local", "A"]);
        assert_eq!(
            section(&out, "ANSWER"),
            vec!["api.default.svc.cluster.local. 30 IN A 10.0.0.2"],
            "{be}: {out}"
        );
        let out = s.dig(&["nothing.default.svc.cluster.local", "A"]);
        assert_eq!(dig_status(&out), "NXDOMAIN", "{be}: {out}");
        assert!(section(&out, "ANSWER").is_empty(), "{be}: {out}");
        // Not under the first search domain: passed on as it is.
        let out = s.dig(&["web.cluster.local", "A"]);
        assert_eq!(dig_status(&out), "NXDOMAIN", "{be}: {out}");
        std::thread::sleep(Duration::from_millis(100));
        let (_, _, body) = http(mport, "GET", "/metrics").expect("scrape");
        let got: Vec<&str> = body
            .lines()
            .filter(|l| l.starts_with("coredns_autopath_"))
            .collect();
        assert_eq!(
            got,
            vec![format!(
                "coredns_autopath_success_total{{server=\"dns://:{}\"}} 3",
                s.port
            )],
            "{be}"
        );
    }
    // @PLUGIN: a plugin of the block without a search path fails at startup; one
    // not in the block leaves autopath idle.
    let conf = dir.write(
        "Corefile",
        &format!(".:{} {{\n autopath @whoami\n whoami\n}}\n", free_port()),
    );
    let out = Command::new(bin())
        .arg("-conf")
        .arg(&conf)
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("plugin/autopath: whoami does not implement the AutoPather interface"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = TestServer::start(".:{port} {\n autopath @kubernetes\n whoami\n}\n", "epoll");
    assert_eq!(dig_status(&s.dig(&["a.example", "A"])), "NOERROR");
}

/// *template*, query → answer as CoreDNS 1.14.7 gives them (plugins.md B,
/// verified points): `.Match`/`.Group`, the lower-cased `.Name`, `.Zone`,
/// `.Type`/`.Class` mnemonics, AA, `additional`, `rcode NXDOMAIN` with
/// `authority`, `ederror`, fallthrough to the next plugin, SERVFAIL for a zone
/// whose stanzas do not match, a CNAME answer followed through the server (also
/// over TCP, and into *forward*, which parks), a template error logged by
/// *errors*, and the three metric families.
#[test]
fn template_answers_from_go_templates() {
    let dir = TempDir::new("template");
    let db = dir.write(
        "db.fwd.test",
        "@ 3600 IN SOA ns1 admin 1 7200 3600 1209600 300\n@ 3600 IN NS ns1\n\
         ns1 3600 IN A 192.0.2.53\nhost 600 IN A 192.0.2.80\n",
    );
    for be in backends() {
        let up = TestServer::start(
            &format!("fwd.test:{{port}} {{\n file {}\n}}\n", db.display()),
            be,
        );
        let mport = free_port();
        let s = TestServer::start(
            &format!(
                "example.net:{{port}} {{\n prometheus 127.0.0.1:{mport}\n errors\n \
                 template IN A {{\n  match \"^ip-(?P<a>[0-9]+)-(?P<b>[0-9]+)-([0-9]+)-([0-9]+)[.]example[.]net[.]$\"\n  \
                 answer \"{{{{ .Name }}}} 60 IN A {{{{ .Group.a }}}}.{{{{ .Group.b }}}}.{{{{ index .Match 3 }}}}.{{{{ index .Match 4 }}}}\"\n  \
                 fallthrough\n }}\n \
                 template IN TXT {{\n  match ^info[.]\n  answer \"{{{{ .Name }}}} 30 IN TXT \\\"{{{{ .Zone }}}} {{{{ .Type }}}} {{{{ .Class }}}} {{{{ .Remote }}}}\\\"\"\n  \
                 additional \"extra.example.net. 30 IN A 192.0.2.9\"\n  ederror 15 \"by policy\"\n }}\n \
                 template ANY AAAA {{\n  rcode NXDOMAIN\n  authority \"example.net. 60 IN SOA ns.example.net. host.example.net. 1 2 3 4 5\"\n }}\n \
                 template IN MX {{\n  answer \"{{{{ index .Match 2 }}}}\"\n }}\n \
                 template IN CNAME {{\n  match ^never[.]\n }}\n \
                 template IN A cname.example.net {{\n  answer \"{{{{ .Name }}}} 60 IN CNAME host.fwd.test.\"\n }}\n \
                 whoami\n}}\n\
                 fwd.test:{{port}} {{\n forward . 127.0.0.1:{}\n}}\n",
                up.port
            ),
            be,
        );
        let out = s.dig(&["IP-10-1-2-3.Example.Net", "A"]);
        assert_eq!(dig_flags(&out), "qr aa rd", "{be}: {out}");
        assert_eq!(
            section(&out, "ANSWER"),
            vec!["ip-10-1-2-3.example.net. 60 IN A 10.1.2.3"],
            "{be}: {out}"
        );
        let out = s.dig(&["info.example.net", "TXT"]);
        assert_eq!(
            section(&out, "ANSWER"),
            vec!["info.example.net. 30 IN TXT \"example.net. TXT IN 127.0.0.1\""],
            "{be}: {out}"
        );
        assert_eq!(
            section(&out, "ADDITIONAL"),
            vec!["extra.example.net. 30 IN A 192.0.2.9"],
            "{be}: {out}"
        );
        assert!(
            out.contains("; EDE: 15 (Blocked): (by policy)"),
            "{be}: {out}"
        );
        assert!(
            out.contains("; EDNS: version: 0, flags: do;"),
            "{be}: {out}"
        );
        let out = s.dig(&["anything.example.net", "AAAA"]);
        assert_eq!(dig_status(&out), "NXDOMAIN", "{be}: {out}");
        assert_eq!(
            section(&out, "AUTHORITY"),
            vec!["example.net. 60 IN SOA ns.example.net. host.example.net. 1 2 3 4 5"],
            "{be}: {out}"
        );
        // No regex match: fallthrough goes on to whoami; without it, SERVFAIL.
        let out = s.dig(&["web.example.net", "A"]);
        assert_eq!(dig_status(&out), "NOERROR", "{be}: {out}");
        assert_eq!(section(&out, "ADDITIONAL").len(), 2, "{be}: {out}");
        let out = s.dig(&["other.example.net", "CNAME"]);
        assert_eq!(dig_status(&out), "SERVFAIL", "{be}: {out}");
        // A CNAME answer to an A query is followed through the server: the
        // target is forwarded (the lookup parks).
        for tcp in ["+notcp", "+tcp"] {
            let out = s.dig(&[tcp, "www.cname.example.net", "A"]);
            assert_eq!(
                section(&out, "ANSWER"),
                vec![
                    "www.cname.example.net. 60 IN CNAME host.fwd.test.",
                    "host.fwd.test. 600 IN A 192.0.2.80"
                ],
                "{be} {tcp}: {out}"
            );
        }
        // A template error: SERVFAIL, logged by errors.
        let out = s.dig(&["x.example.net", "MX"]);
        assert_eq!(dig_status(&out), "SERVFAIL", "{be}: {out}");
        let want = "[ERROR] plugin/errors: 2 x.example.net. MX: template: answer:1:3: executing \"answer\" at <index .Match 2>: error calling index: index out of range: 2";
        assert!(
            wait_for(Duration::from_secs(3), || s
                .lines()
                .iter()
                .any(|l| l == want)),
            "{be}: {:?}",
            s.lines()
        );
        std::thread::sleep(Duration::from_millis(100));
        let (_, _, body) = http(mport, "GET", "/metrics").expect("scrape");
        let p = s.port;
        let got: Vec<&str> = body
            .lines()
            .filter(|l| l.starts_with("coredns_template_"))
            .collect();
        assert_eq!(
            got,
            vec![
                format!(
                    "coredns_template_matches_total{{class=\"IN\",server=\"dns://:{p}\",type=\"A\",view=\"\",zone=\"cname.example.net.\"}} 2"
                ),
                format!(
                    "coredns_template_matches_total{{class=\"IN\",server=\"dns://:{p}\",type=\"A\",view=\"\",zone=\"example.net.\"}} 1"
                ),
                format!(
                    "coredns_template_matches_total{{class=\"IN\",server=\"dns://:{p}\",type=\"AAAA\",view=\"\",zone=\"example.net.\"}} 1"
                ),
                format!(
                    "coredns_template_matches_total{{class=\"IN\",server=\"dns://:{p}\",type=\"MX\",view=\"\",zone=\"example.net.\"}} 1"
                ),
                format!(
                    "coredns_template_matches_total{{class=\"IN\",server=\"dns://:{p}\",type=\"TXT\",view=\"\",zone=\"example.net.\"}} 1"
                ),
                format!(
                    "coredns_template_template_failures_total{{class=\"IN\",section=\"answer\",server=\"dns://:{p}\",template=\"{{{{index .Match 2}}}}\",type=\"MX\",view=\"\",zone=\"example.net.\"}} 1"
                ),
            ],
            "{be}: {body}"
        );
    }
}

/// CoreDNS 1.14.7's `plugin/template/template_test.go` cases (`TestHandler`), one
/// block per template, asked with dig: the answers it checks and the error texts
/// it expects (logged here by *errors*).
#[test]
fn template_coredns_handler_cases() {
    let be = backends()[0];
    let block = |zone: &str, body: &str| {
        format!("{zone}:{{port}} {{\n errors\n template ANY ANY {{\n{body}\n }}\n}}\n")
    };
    let corefile = [
        block(
            "ip.example",
            "  match \"(^|[.])ip-10-(?P<b>[0-9]*)-(?P<c>[0-9]*)-(?P<d>[0-9]*)[.]ip[.]example[.]$\"\n  \
             answer \"{{ .Name }} 60 IN A 10.{{ .Group.b }}.{{ .Group.c }}.{{ .Group.d }}\"\n  \
             additional \"ns0.example. IN A 203.0.113.8\"\n  authority \"example. IN NS ns0.example.com.\"",
        ),
        block(
            "hex.example",
            "  match \"^ip0a(?P<b>[a-f0-9]{2})(?P<c>[a-f0-9]{2})(?P<d>[a-f0-9]{2})[.]hex[.]example[.]$\"\n  \
             answer \"{{ .Name }} 60 IN A 10.{{ parseInt .Group.b 16 8 }}.{{ parseInt .Group.c 16 8 }}.{{ parseInt .Group.d 16 8 }}\"",
        ),
        block(
            "mx.example",
            "  match \"(^|[.])ip-10-(?P<b>[0-9]*)-(?P<c>[0-9]*)-(?P<d>[0-9]*)[.]mx[.]example[.]$\"\n  \
             answer \"{{ .Name }} 60 MX 10 {{ .Name }}\"\n  \
             additional \"{{ .Name }} 60 IN A 10.{{ .Group.b }}.{{ .Group.c }}.{{ .Group.d }}\"",
        ),
        block(
            "invalid",
            "  match \"[.]invalid[.]$\"\n  rcode NXDOMAIN\n  \
             answer \"invalid. 60 {{ .Class }} SOA a.invalid. b.invalid. (1 60 60 60 60)\"",
        ),
        block("servfail.test", "  rcode SERVFAIL"),
        block("broken.example", "  answer \"{{ .Name }} 60 IN TXT \\\"{{ index .Match 2 }}\\\"\""),
        block(
            "brokenint.example",
            "  answer \"{{ .Name }} 60 IN TXT \\\"{{ parseInt \\\"gg\\\" 16 8 }}\\\"\"",
        ),
        block("nonrr.example", "  answer \"{{ .Name }}\""),
        block("remote.example", "  answer \"{{ .Name }} 60 IN A {{ .Remote }}\""),
        block(
            "ede.test",
            "  rcode NXDOMAIN\n  \
             authority \"invalid. 60 {{ .Class }} SOA ns.invalid. hostmaster.invalid. (1 60 60 60 60)\"\n  \
             ederror 21 \"Blocked due to RFC2606\"",
        ),
    ]
    .concat();
    let s = TestServer::start(&corefile, be);
    let out = s.dig(&["ip-10-95-12-8.ip.example", "A"]);
    assert_eq!(
        section(&out, "ANSWER"),
        vec!["ip-10-95-12-8.ip.example. 60 IN A 10.95.12.8"],
        "{out}"
    );
    assert_eq!(
        section(&out, "AUTHORITY"),
        vec!["example. 3600 IN NS ns0.example.com."],
        "{out}"
    );
    assert_eq!(
        section(&out, "ADDITIONAL"),
        vec!["ns0.example. 3600 IN A 203.0.113.8"],
        "{out}"
    );
    let out = s.dig(&["ip0a5f0c09.hex.example", "A"]);
    assert_eq!(
        section(&out, "ANSWER"),
        vec!["ip0a5f0c09.hex.example. 60 IN A 10.95.12.9"],
        "{out}"
    );
    let out = s.dig(&["ip-10-95-12-8.mx.example", "MX"]);
    assert_eq!(
        section(&out, "ANSWER"),
        vec!["ip-10-95-12-8.mx.example. 60 IN MX 10 ip-10-95-12-8.mx.example."],
        "{out}"
    );
    assert_eq!(
        section(&out, "ADDITIONAL"),
        vec!["ip-10-95-12-8.mx.example. 60 IN A 10.95.12.8"],
        "{out}"
    );
    let out = s.dig(&["test.invalid", "A"]);
    assert_eq!(dig_status(&out), "NXDOMAIN", "{out}");
    assert_eq!(
        section(&out, "ANSWER"),
        vec!["invalid. 60 IN SOA a.invalid. b.invalid. 1 60 60 60 60"],
        "{out}"
    );
    let out = s.dig(&["test.servfail.test", "A"]);
    assert_eq!(dig_status(&out), "SERVFAIL", "{out}");
    // The client's address (ExampleIPMatch).
    let out = s.dig(&["test.remote.example", "A"]);
    assert_eq!(
        section(&out, "ANSWER"),
        vec!["test.remote.example. 60 IN A 127.0.0.1"],
        "{out}"
    );
    let out = s.dig(&["test.ede.test", "A"]);
    assert_eq!(dig_status(&out), "NXDOMAIN", "{out}");
    assert!(
        out.contains("; EDE: 21 (Not Supported): (Blocked due to RFC2606)"),
        "{out}"
    );
    // The error texts TestHandler expects.
    for (q, err) in [
        (
            "test.broken.example",
            "template: answer:1:26: executing \"answer\" at <index .Match 2>: error calling index: index out of range: 2",
        ),
        (
            "test.brokenint.example",
            "template: answer:1:26: executing \"answer\" at <parseInt \"gg\" 16 8>: error calling parseInt: strconv.ParseUint: parsing \"gg\": invalid syntax",
        ),
        (
            "test.nonrr.example",
            "dns: not a TTL: \"test.nonrr.example.\" at line: 1:19",
        ),
    ] {
        let out = s.dig(&[q, "TXT"]);
        assert_eq!(dig_status(&out), "SERVFAIL", "{q}: {out}");
        let want = format!("[ERROR] plugin/errors: 2 {q}. TXT: {err}");
        assert!(
            wait_for(Duration::from_secs(3), || s.lines().contains(&want)),
            "{q}: {:?}",
            s.lines()
        );
    }
}

/// *view*: blocks sharing a zone are tried in Corefile order and the first whose
/// expressions hold serves the query; a zone none of whose blocks passes leaves
/// the query to its parent zones. The view names the block's metrics and its
/// `view/name` metadata.
#[test]
fn view_routes_queries_between_blocks_of_one_zone() {
    for be in backends() {
        let mport = free_port();
        let s = TestServer::start(
            &format!(
                r#".:{{port}} {{
 view local2 {{
  expr incidr(client_ip(), '127.0.0.2/32')
 }}
 metadata
 log . "V {{/view/name}} {{type}} {{name}}"
 prometheus 127.0.0.1:{mport}
 hosts {{
  1.1.1.1 test
 }}
}}
.:{{port}} {{
 view v6 {{
  expr incidr(client_ip(), '::1/128')
 }}
 hosts {{
  2001:db8::1 test
 }}
}}
.:{{port}} {{
 view txt {{
  expr type() in ['MX', 'TXT']
  expr name() matches '^x\\.'
 }}
 cache 30
 whoami
}}
example.org:{{port}} {{
 view never {{
  expr proto() == 'tcp' && false
 }}
 whoami
}}
.:{{port}} {{
 prometheus 127.0.0.1:{mport}
 hosts {{
  3.3.3.3 test
  4.4.4.4 a.example.org
 }}
}}
meta.test:{{port}} {{
 metadata
 view selfnamed {{
  expr metadata('view/name') == 'selfnamed'
 }}
 hosts {{
  5.5.5.5 a.meta.test
 }}
}}
meta.test:{{port}} {{
 hosts {{
  6.6.6.6 a.meta.test
 }}
}}
"#
            ),
            be,
        );
        let answer = |server: &str, src: &str, args: &[&str]| {
            section(&dig_from(&s, server, src, args), "ANSWER")
        };
        // (server, source, query) → answer section.
        let cases: [(&str, &str, &[&str], &[&str]); 7] = [
            (
                "127.0.0.1",
                "127.0.0.2",
                &["test", "A"],
                &["test. 3600 IN A 1.1.1.1"],
            ),
            (
                "127.0.0.1",
                "127.0.0.1",
                &["test", "A"],
                &["test. 3600 IN A 3.3.3.3"],
            ),
            (
                "::1",
                "::1",
                &["test", "AAAA"],
                &["test. 3600 IN AAAA 2001:db8::1"],
            ),
            // Both expressions of *txt* must hold.
            ("127.0.0.1", "127.0.0.1", &["y.example.com", "TXT"], &[]),
            // The only example.org block never passes: the root blocks take it.
            (
                "127.0.0.1",
                "127.0.0.1",
                &["a.example.org", "A"],
                &["a.example.org. 3600 IN A 4.4.4.4"],
            ),
            ("127.0.0.1", "127.0.0.2", &["a.example.org", "A"], &[]),
            // The block's providers (here the view itself) publish before the view
            // runs, so `metadata()` sees them.
            (
                "127.0.0.1",
                "127.0.0.1",
                &["a.meta.test", "A"],
                &["a.meta.test. 3600 IN A 5.5.5.5"],
            ),
        ];
        for (server, src, q, want) in cases {
            assert_eq!(answer(server, src, q), want, "{be}: {src} {q:?}");
        }
        // *whoami* in the *txt* block answers x.example.com TXT.
        let out = dig_from(&s, "127.0.0.1", "127.0.0.1", &["x.example.com", "TXT"]);
        // (The *cache* of that block raises whoami's TTL 0 to its minimum, 5.)
        assert!(
            section(&out, "ADDITIONAL").contains(&"x.example.com. 5 IN A 127.0.0.1".to_owned()),
            "{be}: {out}"
        );
        let l = s
            .wait_line(|l| l.starts_with("[INFO] V "))
            .expect("log line");
        assert_eq!(l, "[INFO] V local2 A test.", "{be}");
        std::thread::sleep(Duration::from_millis(100));
        let (_, _, body) = http(mport, "GET", "/metrics").expect("scrape");
        let p = s.port;
        for line in [
            format!(
                "coredns_dns_requests_total{{family=\"1\",proto=\"udp\",server=\"dns://:{p}\",type=\"A\",view=\"local2\",zone=\".\"}} 2"
            ),
            format!(
                "coredns_dns_requests_total{{family=\"1\",proto=\"udp\",server=\"dns://:{p}\",type=\"A\",view=\"\",zone=\".\"}} 2"
            ),
            format!(
                "coredns_plugin_enabled{{name=\"hosts\",server=\"dns://:{p}\",view=\"v6\",zone=\".\"}} 1"
            ),
            format!(
                "coredns_plugin_enabled{{name=\"view\",server=\"dns://:{p}\",view=\"never\",zone=\"example.org.\"}} 1"
            ),
            format!(
                "coredns_cache_requests_total{{server=\"dns://:{p}\",view=\"txt\",zones=\".\"}} 1"
            ),
        ] {
            assert!(
                body.lines().any(|l| l == line),
                "{be}: no {line} in\n{body}"
            );
        }
    }
}

#[test]
fn geoip_labels_drive_a_view_and_the_log() {
    let dir = TempDir::new("geoip");
    let db = dir.write_bytes("city.mmdb", &crate::mmdb::sample_city_db());
    for be in backends() {
        let s = TestServer::start(
            &format!(
                r#"example.org:{{port}} {{
 metadata
 geoip {} {{
  edns-subnet
 }}
 view nl {{
  expr metadata('geoip/country/code') in ['NL', '']
 }}
 log . "G {{/geoip/city/name}} {{/geoip/country/code}} eu={{/geoip/country/is_in_european_union}} {{/geoip/latitude}} {{name}}"
 template IN A example.org {{
  answer "{{{{ .Name }}}} 60 IN A 192.0.2.31"
 }}
}}
example.org:{{port}} {{
 template IN A example.org {{
  answer "{{{{ .Name }}}} 60 IN A 192.0.2.99"
 }}
}}
"#,
                db.to_string_lossy()
            ),
            be,
        );
        // The subnet says Amsterdam: the view passes.
        let out = s.dig(&["+subnet=81.2.69.0/24", "www.example.org", "A"]);
        assert_eq!(
            section(&out, "ANSWER"),
            ["www.example.org. 60 IN A 192.0.2.31"],
            "{be}: {out}"
        );
        let line = s
            .wait_line(|l| l.contains("G Amsterdam"))
            .unwrap_or_else(|| panic!("{be}: {:?}", s.lines()));
        assert!(
            line.ends_with("G Amsterdam NL eu=true 52.3759 www.example.org."),
            "{be}: {line}"
        );
        // From 127.0.0.1 without a subnet: another country, the other block.
        let out = s.dig(&["www.example.org", "A"]);
        assert_eq!(
            section(&out, "ANSWER"),
            ["www.example.org. 60 IN A 192.0.2.99"],
            "{be}: {out}"
        );
        // An address the database does not hold: every label set, empty (not
        // `-`), so the view's `''` passes.
        let out = s.dig(&["+subnet=192.0.2.0/24", "nope.example.org", "A"]);
        assert_eq!(
            section(&out, "ANSWER"),
            ["nope.example.org. 60 IN A 192.0.2.31"],
            "{be}: {out}"
        );
        let line = s
            .wait_line(|l| l.contains("nope.example.org."))
            .unwrap_or_else(|| panic!("{be}: {:?}", s.lines()));
        assert!(
            line.ends_with("G   eu=false  nope.example.org."),
            "{be}: {line}"
        );
    }
}

/// A stand-in Nomad agent: `/v1/agent/self` and `/v1/service/NAME` from
/// `services`; every request line and token is recorded.
struct NomadAgent {
    port: u16,
    seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl NomadAgent {
    fn start(services: &'static [(&'static str, &'static str)]) -> Self {
        Self::start_tls(services, None)
    }

    /// The agent over TLS with `tls` (plain HTTP with `None`).
    fn start_tls(
        services: &'static [(&'static str, &'static str)],
        tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    ) -> Self {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = std::sync::Arc::clone(&seen);
        std::thread::spawn(move || {
            for c in l.incoming().take(500) {
                let Ok(c) = c else { continue };
                let log = std::sync::Arc::clone(&log);
                let tls = tls.clone();
                std::thread::spawn(move || match tls {
                    None => nomad_serve(c, services, &log),
                    Some(cfg) => {
                        if let Ok(conn) = rustls::ServerConnection::new(cfg) {
                            nomad_serve(rustls::StreamOwned::new(conn, c), services, &log);
                        }
                    }
                });
            }
        });
        Self { port, seen }
    }
}

/// One request to the stand-in agent: logged as `PATH token=TOKEN` (and ` auth=VALUE`
/// with an `Authorization` header), answered from `services`.
fn nomad_serve<S: std::io::Read + std::io::Write>(
    mut c: S,
    services: &[(&str, &str)],
    log: &std::sync::Mutex<Vec<String>>,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 2048];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match c.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if buf.len() > 65_536 {
            return;
        }
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let mut lines = text.split("\r\n");
    let first = lines.next().unwrap_or("");
    let (mut token, mut auth) = (String::new(), String::new());
    for h in lines.take_while(|h| !h.is_empty()) {
        if let Some(t) = h.strip_prefix("x-nomad-token: ") {
            token = t.trim().to_owned();
        }
        if let Some(a) = h.strip_prefix("authorization: ") {
            auth = a.trim().to_owned();
        }
    }
    let path = first.split(' ').nth(1).unwrap_or("").to_owned();
    let mut entry = format!("{path} token={token}");
    if !auth.is_empty() {
        entry.push_str(&format!(" auth={auth}"));
    }
    log.lock().expect("lock").push(entry);
    let body = if path == "/v1/agent/self" {
        Some("{}".to_owned())
    } else {
        path.strip_prefix("/v1/service/")
            .and_then(|p| p.split('?').next())
            .map(|name| {
                services
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map_or("[]".to_owned(), |(_, b)| (*b).to_owned())
            })
    };
    let resp = match body {
        Some(b) => format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        ),
        None => "HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found".to_owned(),
    };
    let _ = c.write_all(resp.as_bytes());
    let _ = c.flush();
}

#[test]
fn nomad_answers_from_the_service_catalogue() {
    let agent = NomadAgent::start(&[
        (
            "web",
            r#"[{"ServiceName":"web","Namespace":"default","Address":"192.0.2.10","Port":8080},{"ServiceName":"web","Namespace":"default","Address":"2001:db8::10","Port":8081}]"#,
        ),
        ("bad", r#"[{"Address":"not-an-ip","Port":1}]"#),
    ]);
    let dead = free_port();
    for be in backends() {
        let mport = free_port();
        let s = TestServer::start(
            &format!(
                "service.nomad:{{port}} {{\n prometheus 127.0.0.1:{mport}\n nomad {{\n  address http://127.0.0.1:{dead} http://127.0.0.1:{}\n  token s3cret\n  ttl 10\n }}\n}}\n\
                 down.nomad:{{port}} {{\n nomad down.nomad {{\n  address http://127.0.0.1:{dead}\n }}\n}}\n",
                agent.port
            ),
            be,
        );
        let out = s.dig(&["Web.default.service.nomad", "A"]);
        assert_eq!(dig_flags(&out), "qr aa rd", "{be}");
        assert_eq!(
            section(&out, "ANSWER"),
            ["Web.default.service.nomad. 10 IN A 192.0.2.10"],
            "{be}: {out}"
        );
        let out = s.dig(&["web.default.service.nomad", "AAAA"]);
        assert_eq!(
            section(&out, "ANSWER"),
            ["web.default.service.nomad. 10 IN AAAA 2001:db8::10"],
            "{be}"
        );
        let out = s.dig(&["web.default.service.nomad", "SRV"]);
        assert_eq!(
            section(&out, "ANSWER"),
            [
                "web.default.service.nomad. 10 IN SRV 10 10 8080 web.default.service.nomad.",
                "web.default.service.nomad. 10 IN SRV 10 10 8081 web.default.service.nomad."
            ],
            "{be}"
        );
        assert_eq!(
            section(&out, "ADDITIONAL"),
            [
                "web.default.service.nomad. 10 IN A 192.0.2.10",
                "web.default.service.nomad. 10 IN AAAA 2001:db8::10"
            ],
            "{be}: {out}"
        );
        // No registrations, another type, a bad address: NXDOMAIN with the SOA
        // in the answer section, as CoreDNS writes it.
        for (q, t) in [
            ("missing.prod", "A"),
            ("web.default", "TXT"),
            ("bad.default", "A"),
        ] {
            let out = s.dig(&[&format!("{q}.service.nomad"), t]);
            assert_eq!(dig_status(&out), "NXDOMAIN", "{be}: {q} {t}");
            assert_eq!(
                section(&out, "ANSWER"),
                [format!(
                    "{q}.service.nomad. 10 IN SOA ns1.{q}.service.nomad. hostmaster.service.nomad. 0 3600 600 86400 30"
                )],
                "{be}: {out}"
            );
        }
        // The dead first agent was skipped; the token and namespace went along.
        let seen = agent.seen.lock().expect("lock").clone();
        assert!(
            seen.iter()
                .any(|l| l == "/v1/service/web?namespace=default token=s3cret"),
            "{be}: {seen:?}"
        );
        assert!(
            seen.iter()
                .any(|l| l == "/v1/service/missing?namespace=prod token=s3cret")
        );
        // A single label below the zone is not the plugin's: no next plugin.
        assert_eq!(
            dig_status(&s.dig(&["web.service.nomad", "A"])),
            "SERVFAIL",
            "{be}"
        );
        // An agent that does not answer: an empty NOERROR and a warning.
        let out = s.dig(&["web.default.down.nomad", "A"]);
        assert_eq!(dig_status(&out), "NOERROR", "{be}: {out}");
        assert!(section(&out, "ANSWER").is_empty(), "{be}");
        let warn = format!(
            "[WARNING] plugin/nomad: Get \"http://127.0.0.1:{dead}/v1/service/web?namespace=default\": dial tcp 127.0.0.1:{dead}: connect: connection refused"
        );
        assert!(
            s.wait_line(|l| l == warn).is_some(),
            "{be}: {:?}",
            s.lines()
        );
        let m = scrape(mport);
        assert!(
            m.contains(
                "coredns_nomad_success_requests_total{namespace=\"default\",server=\"dns://:"
            ),
            "{be}: {m}"
        );
        assert!(
            m.contains("coredns_nomad_failed_requests_total{namespace=\"prod\",server=\"dns://:")
        );
    }
}

/// *nomad* over https://, with the Nomad API client's environment: the agent's CA
/// (`NOMAD_CACERT`), the name it is verified against (`NOMAD_TLS_SERVER_NAME`), a client
/// certificate the agent requires (`NOMAD_CLIENT_CERT`/`_KEY`), basic credentials
/// (`NOMAD_HTTP_AUTH`), `NOMAD_SKIP_VERIFY`, and the setup errors of a bad environment.
#[test]
fn nomad_agents_over_tls() {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use std::sync::Arc;
    let dir = TempDir::new("nomad-tls");
    let srv = rcgen::generate_simple_self_signed(vec!["nomad.example".to_owned()]).expect("cert");
    let cli = rcgen::generate_simple_self_signed(vec!["client.example".to_owned()]).expect("cert");
    let ca = dir.write("ca.pem", &srv.cert.pem());
    let ccert = dir.write("client.pem", &cli.cert.pem());
    let ckey = dir.write("client-key.pem", &cli.signing_key.serialize_pem());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cli.cert.der().clone()).expect("root");
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::clone(&provider),
    )
    .build()
    .expect("verifier");
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![CertificateDer::from(srv.cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(srv.signing_key.serialize_der())),
        )
        .expect("server config");
    let agent = NomadAgent::start_tls(
        &[(
            "web",
            r#"[{"ServiceName":"web","Namespace":"default","Address":"192.0.2.10","Port":8080}]"#,
        )],
        Some(Arc::new(cfg)),
    );
    let corefile = format!(
        "service.nomad:{{port}} {{\n nomad {{\n  address https://127.0.0.1:{}\n }}\n}}\n",
        agent.port
    );
    let (ca, ccert, ckey) = (
        ca.to_string_lossy().into_owned(),
        ccert.to_string_lossy().into_owned(),
        ckey.to_string_lossy().into_owned(),
    );
    let good = [
        ("NOMAD_CACERT", ca.as_str()),
        ("NOMAD_TLS_SERVER_NAME", "nomad.example"),
        ("NOMAD_CLIENT_CERT", ccert.as_str()),
        ("NOMAD_CLIENT_KEY", ckey.as_str()),
        ("NOMAD_HTTP_AUTH", "ops:pw"),
    ];
    let answer = ["web.default.service.nomad. 30 IN A 192.0.2.10"];
    for be in backends() {
        let s = TestServer::start_env(&corefile, be, &[], &good);
        let out = s.dig(&["web.default.service.nomad", "A"]);
        assert_eq!(
            section(&out, "ANSWER"),
            answer,
            "{be}: {out} {:?}",
            s.lines()
        );
        assert!(
            agent
                .seen
                .lock()
                .expect("lock")
                .iter()
                .any(|l| l == "/v1/service/web?namespace=default token= auth=Basic b3BzOnB3"),
            "{be}: {:?}",
            agent.seen.lock().expect("lock")
        );
        drop(s);
        // Verified against 127.0.0.1, which the certificate does not name: no answer, Go's
        // kind of error.
        let s = TestServer::start_env(&corefile, be, &[], &[good[0], good[2], good[3]]);
        let out = s.dig(&["web.default.service.nomad", "A"]);
        assert_eq!(dig_status(&out), "NOERROR", "{be}: {out}");
        assert!(section(&out, "ANSWER").is_empty(), "{be}: {out}");
        assert!(
            s.wait_line(|l| l.starts_with(&format!(
                "[WARNING] plugin/nomad: Get \"https://127.0.0.1:{}/v1/service/web?namespace=default\": tls: failed to verify certificate: x509: ",
                agent.port
            )))
            .is_some(),
            "{be}: {:?}",
            s.lines()
        );
        drop(s);
        // NOMAD_SKIP_VERIFY: any certificate; without the client certificate the agent
        // refuses the handshake.
        let s = TestServer::start_env(
            &corefile,
            be,
            &[],
            &[("NOMAD_SKIP_VERIFY", "true"), good[2], good[3]],
        );
        let out = s.dig(&["web.default.service.nomad", "A"]);
        assert_eq!(section(&out, "ANSWER"), answer, "{be}: {out}");
        drop(s);
        let s = TestServer::start_env(&corefile, be, &[], &[("NOMAD_SKIP_VERIFY", "1")]);
        let out = s.dig(&["web.default.service.nomad", "A"]);
        assert!(section(&out, "ANSWER").is_empty(), "{be}: {out}");
    }
    // A bad environment stops setup with the API client's error.
    let conf = dir.write("Corefile", ". {\n nomad\n}\n");
    let validate = |env: &[(&str, &str)]| {
        let out = std::process::Command::new(bin())
            .args(["-validate", "-conf"])
            .arg(&conf)
            .envs(env.iter().copied())
            .output()
            .expect("run");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        )
    };
    for (env, want) in [
        (
            vec![("NOMAD_CLIENT_CERT", ccert.as_str())],
            "plugin/nomad: Both client cert and client key must be provided".to_owned(),
        ),
        (
            vec![("NOMAD_CACERT", "/nonexistent/ca.pem")],
            "plugin/nomad: Error loading CA File: open /nonexistent/ca.pem: no such file or directory"
                .to_owned(),
        ),
        (
            vec![("NOMAD_CACERT", ckey.as_str())],
            format!("plugin/nomad: Error loading CA File: Couldn't parse PEM in: {ckey}"),
        ),
        (
            vec![("NOMAD_CAPATH", "/nonexistent")],
            "plugin/nomad: lstat /nonexistent: no such file or directory".to_owned(),
        ),
    ] {
        let (code, err) = validate(&env);
        assert_eq!(code, Some(1), "{env:?}");
        assert!(err.ends_with(&want), "{env:?}: {err}");
    }
}

/// `zone/wildcard`: *file* publishes the wildcard that synthesized an answer,
/// and *cache* publishes it again when it answers from the stored reply.
#[test]
fn zone_wildcard_metadata_from_file_and_cache() {
    for be in backends() {
        let dir = TempDir::new("wildmeta");
        let zone = dir.write(
            "db.example.org",
            "$ORIGIN example.org.\n@ 3600 IN SOA ns1 hostmaster 1 7200 3600 1209600 3600\n@ 3600 IN NS ns1\nns1 3600 IN A 192.0.2.53\nwww 3600 IN A 192.0.2.80\n*.w 3600 IN A 192.0.2.1\n",
        );
        let s = TestServer::start(
            &format!(
                "example.org:{{port}} {{\n metadata\n log . \"WILD {{name}} {{/zone/wildcard}}\"\n cache\n file {}\n}}\n",
                zone.display()
            ),
            be,
        );
        for name in ["a.w.example.org", "a.w.example.org", "www.example.org"] {
            let out = s.dig(&[name, "A"]);
            assert_eq!(dig_status(&out), "NOERROR", "{be}: {out}");
        }
        let wanted = [
            "WILD a.w.example.org. *.w.example.org.",
            "WILD a.w.example.org. *.w.example.org.",
            "WILD www.example.org. -",
        ];
        assert!(
            wait_for(Duration::from_secs(3), || {
                s.lines().iter().filter(|l| l.contains("WILD ")).count() >= 3
            }),
            "{be}: {:?}",
            s.lines()
        );
        let got: Vec<String> = s
            .lines()
            .into_iter()
            .filter_map(|l| l.find("WILD ").map(|i| l[i..].to_owned()))
            .collect();
        assert_eq!(got, wanted, "{be}");
    }
}
