//! *forward* end to end: the daemon in front of a real authoritative server
//! (nsd, started here on a free port) and in front of a programmable upstream
//! (`Fake`: drops, delays, wrong IDs and questions, garbage, TC, TCP-only,
//! rcodes, DoT) and a DNS-over-HTTPS upstream (`DohServer`), queried with dig
//! and kdig on every backend.

mod doh;
mod proxies;
mod upstreams;

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::util::*;
use doh::{DohMode, DohServer, doh_tls};
use proxies::{ProxyKind, TunnelProxy};
use upstreams::{Fake, Mode, Seen};

fn answers(out: &str) -> Vec<String> {
    section(out, "ANSWER")
}

#[test]
fn forward_to_nsd_udp_tcp_dig_kdig() {
    let Some(nsd) = Nsd::start(
        "$ORIGIN example.org.\n$TTL 300\n@ IN SOA ns1 host 1 3600 600 86400 300\n@ IN NS ns1\nns1 IN A 127.0.0.1\nwww IN A 192.0.2.1\nwww IN AAAA 2001:db8::1\n",
    ) else {
        println!("SKIP forward_to_nsd_udp_tcp_dig_kdig: nsd not installed (Debian package nsd)");
        return;
    };
    for be in backends() {
        let s = TestServer::start(
            &format!(
                ".:{{port}} {{\n errors\n log\n forward . 127.0.0.1:{}\n}}\n",
                nsd.port
            ),
            be,
        );
        let out = s.dig(&["www.example.org", "A"]);
        assert_eq!(dig_status(&out), "NOERROR", "{be}: {out}");
        assert_eq!(
            answers(&out),
            ["www.example.org. 300 IN A 192.0.2.1"],
            "{be}"
        );
        assert_eq!(dig_flags(&out), "qr aa rd", "{be}: {out}");
        assert!(out.contains("udp: 1232"), "{be}: {out}");
        let out = s.dig(&["+tcp", "WWW.example.org", "AAAA"]);
        assert_eq!(
            answers(&out),
            ["WWW.example.org. 300 IN AAAA 2001:db8::1"],
            "{be}: {out}"
        );
        let out = s.kdig(&["www.example.org", "AAAA"]);
        assert!(out.contains("2001:db8::1"), "{be}: {out}");
        let out = s.kdig(&["+tcp", "www.example.org", "A"]);
        assert!(out.contains("192.0.2.1"), "{be}: {out}");
        let out = s.dig(&["nope.example.org", "A"]);
        assert_eq!(dig_status(&out), "NXDOMAIN", "{be}: {out}");
        assert_eq!(section(&out, "AUTHORITY").len(), 1, "{be}: {out}");
        // RD=0 is forwarded as is.
        let out = s.dig(&["+norec", "www.example.org", "A"]);
        assert_eq!(dig_flags(&out), "qr aa", "{be}: {out}");
        // No errors line for any of these.
        std::thread::sleep(Duration::from_millis(100));
        assert!(!s.lines().iter().any(|l| l.starts_with("[ERROR]")), "{be}");
    }
}

#[test]
fn forward_closed_port_matches_recorded_errors() {
    let dead = free_port();
    let re_udp = regex::Regex::new(&format!(
        r"^\[ERROR\] plugin/errors: 2 example\.com\. A: read udp 127\.0\.0\.1:\d+->127\.0\.0\.1:{dead}: read: connection refused$"
    ))
    .expect("re");
    for be in backends() {
        let s = TestServer::start(
            &format!(".:{{port}} {{\n    errors\n    log\n    forward . 127.0.0.1:{dead}\n}}\n"),
            be,
        );
        let t0 = Instant::now();
        let r = s
            .udp_raw(
                &query(1000, "example.com", 1, 1, Some((1232, 0, &[]))),
                Duration::from_secs(3),
            )
            .expect("reply");
        assert!(
            t0.elapsed() < Duration::from_secs(1),
            "{be}: refused is immediate"
        );
        // The recorded shape: qr rd, SERVFAIL, question, OPT udp 1232, 40 octets.
        assert_eq!(r.len(), 40, "{be}");
        assert_eq!((r[2], r[3]), (0x81, 0x02), "{be}");
        assert_eq!(&r[4..12], &[0, 1, 0, 0, 0, 0, 0, 1], "{be}");
        let l = s
            .wait_line(|l| l.starts_with("[ERROR]"))
            .expect("errors line");
        assert!(re_udp.is_match(&l), "{be}: {l}");
        let out = s.dig(&["+tcp", "example.net", "AAAA"]);
        assert_eq!(dig_status(&out), "SERVFAIL", "{be}: {out}");
        assert_eq!(dig_flags(&out), "qr rd", "{be}: {out}");
        let want = format!(
            "[ERROR] plugin/errors: 2 example.net. AAAA: dial tcp 127.0.0.1:{dead}: connect: connection refused"
        );
        assert!(
            s.wait_line(|l| l == want).is_some(),
            "{be}: {:?}",
            s.lines()
        );
        // The log line comes before its errors line.
        let lines = s.lines();
        let log = lines
            .iter()
            .position(|l| l.contains("\"AAAA IN example.net. tcp "))
            .expect("log");
        let err = lines.iter().position(|l| *l == want).expect("err");
        assert!(log < err, "{be}");
        assert!(
            lines[log].contains("SERVFAIL qr,rd 29 "),
            "{be}: {}",
            lines[log]
        );
    }
}

#[test]
fn forward_black_hole_times_out_after_two_attempts() {
    for be in backends() {
        let f = Fake::start(Mode::Drop, 1);
        let (conf, mport) = with_metrics(&format!(
            ".:{{port}} {{\n errors\n forward . {}\n}}\n",
            f.addr()
        ));
        let s = TestServer::start(&conf, be);
        let t0 = Instant::now();
        let out = s.dig(&["+time=8", "example.org", "A"]);
        let took = t0.elapsed();
        assert_eq!(dig_status(&out), "SERVFAIL", "{be}: {out}");
        assert!(
            took >= Duration::from_millis(3900) && took < Duration::from_millis(5500),
            "{be}: {took:?}"
        );
        let re = regex::Regex::new(&format!(
            r"^\[ERROR\] plugin/errors: 2 example\.org\. A: read udp 127\.0\.0\.1:\d+->127\.0\.0\.1:{}: i/o timeout$",
            f.port
        ))
        .expect("re");
        let l = s.wait_line(|l| l.starts_with("[ERROR]")).expect("line");
        assert!(re.is_match(&l), "{be}: {l}");
        // Two attempts, random IDs, the health check probes `. IN NS` with RD.
        let q = f.queries();
        assert_eq!(q.len(), 2, "{be}");
        assert_ne!(q[0].id(), q[1].id(), "{be}");
        let hc: Vec<Seen> = f
            .seen()
            .into_iter()
            .filter(|s| s.question() == (".".into(), 2))
            .collect();
        assert!(!hc.is_empty() && hc.iter().all(Seen::rd), "{be}: {hc:?}");
        assert_nothing_in_flight(mport, be);
    }
}

#[test]
fn forward_debug_dumps_a_wrong_reply() {
    // CoreDNS's debug.Hexdumpf: the reply packed again (names uncompressed) with the
    // client's ID, after a [DEBUG] line naming the query as sent.
    let dump = [
        "debug: 000000 12 34 81 80 00 01 00 01 00 00 00 00 05 77 72 6f",
        "debug: 000010 6e 67 07 65 78 61 6d 70 6c 65 00 00 01 00 01 05",
        "debug: 000020 77 72 6f 6e 67 07 65 78 61 6d 70 6c 65 00 00 01",
        "debug: 000030 00 01 00 00 00 3c 00 04 c0 00 02 07",
        "debug: 00003c",
    ];
    for be in backends() {
        let f = Fake::start(Mode::WrongQuestion, 7);
        let s = TestServer::start(
            &format!(
                ".:{{port}} {{\n debug\n forward . {} {{\n  max_fails 0\n }}\n}}\n",
                f.addr()
            ),
            be,
        );
        let r = s
            .udp_raw(
                &query(0x1234, "C.example.org", 1, 1, None),
                Duration::from_secs(2),
            )
            .expect("reply");
        assert_eq!(r[3] & 0x0f, 1, "{be}: FORMERR");
        let head = "[DEBUG] plugin/forward: Wrong reply for id: 4660, C.example.org. 1";
        // One entry, read line by line: wait for its last line.
        assert!(
            s.wait_line(|l| l == "debug: 00003c").is_some(),
            "{be}: {:?}",
            s.lines()
        );
        let lines = s.lines();
        let at = lines.iter().position(|l| l == head).expect("head");
        assert_eq!(lines[at + 1..at + 1 + dump.len()], dump, "{be}");
    }
}

#[test]
fn forward_dial_errors_name_the_source_address() {
    // Go's dialer puts a set local address (port 0) in its error text.
    let dead = free_port();
    for be in backends() {
        let s = TestServer::start(
            &format!(
                ".:{{port}} {{\n errors\n forward . 127.0.0.1:{dead} {{\n  force_tcp\n  source_address 127.0.0.1\n }}\n}}\n"
            ),
            be,
        );
        let out = s.dig(&["example.net", "A"]);
        assert_eq!(dig_status(&out), "SERVFAIL", "{be}: {out}");
        let want = format!(
            "[ERROR] plugin/errors: 2 example.net. A: dial tcp 127.0.0.1:0->127.0.0.1:{dead}: connect: connection refused"
        );
        assert!(
            s.wait_line(|l| l == want).is_some(),
            "{be}: {:?}",
            s.lines()
        );
        // A source address of the other family: Go's dial finds no remote address to
        // pair with it and fails before any socket.
        let s = TestServer::start(
            &format!(
                "udp.example:{{port}} {{\n errors\n forward . 127.0.0.1:{dead} {{\n  source_address ::1\n }}\n}}\n\
                 tcp.example:{{port}} {{\n errors\n forward . 127.0.0.1:{dead} {{\n  force_tcp\n  source_address ::1\n }}\n}}\n"
            ),
            be,
        );
        for net in ["udp", "tcp"] {
            let out = s.dig(&[&format!("x.{net}.example"), "A"]);
            assert_eq!(dig_status(&out), "SERVFAIL", "{be}: {out}");
            let want = format!(
                "[ERROR] plugin/errors: 2 x.{net}.example. A: dial {net}: address [::1]:0: no suitable address found"
            );
            assert!(
                s.wait_line(|l| l == want).is_some(),
                "{be}: {:?}",
                s.lines()
            );
        }
    }
}

/// A query whose counts promise records it does not carry (the message ends after
/// the question) is served, as miekg unpacks it (it stops at the end and corrects the
/// counts), and goes upstream with the counts corrected; a record cut short is FORMERR.
#[test]
fn forward_query_with_counts_past_its_end() {
    for be in backends() {
        let f = Fake::start(Mode::Answer, 5);
        let s = TestServer::start(&format!(".:{{port}} {{\n forward . {}\n}}\n", f.addr()), be);
        let mut q = query(77, "lie.example", 1, 1, None);
        q[11] = 2;
        let r = s.udp_raw(&q, Duration::from_secs(2)).expect("reply");
        assert_eq!(r[3] & 0x0f, 0, "{be}: rcode");
        assert_eq!(&r[6..8], &[0, 1], "{be}: one answer");
        let seen = f.queries();
        assert_eq!(seen.len(), 1, "{be}");
        assert_eq!(&seen[0].msg[4..12], &[0, 1, 0, 0, 0, 0, 0, 0], "{be}");
        q.extend_from_slice(&[0, 0, 41]);
        let r = s.udp_raw(&q, Duration::from_secs(2)).expect("reply");
        assert_eq!(r[3] & 0x0f, 1, "{be}: FORMERR");
        assert_eq!(f.queries().len(), 1, "{be}");
    }
}

#[test]
fn forward_fault_modes_client_view() {
    for be in backends() {
        let f = Fake::start(Mode::Answer, 7);
        let (conf, mport) = with_metrics(&format!(
            ".:{{port}} {{\n errors\n forward . {} {{\n  read_timeout 300ms\n  max_fails 0\n }}\n}}\n",
            f.addr()
        ));
        let s = TestServer::start(&conf, be);
        let out = s.dig(&["a.example.org", "A"]);
        assert_eq!(
            answers(&out),
            ["a.example.org. 60 IN A 192.0.2.7"],
            "{be}: {out}"
        );
        // The client's ID comes back; upstream saw another one.
        let r = s
            .udp_raw(
                &query(4242, "b.example.org", 1, 1, None),
                Duration::from_secs(2),
            )
            .expect("reply");
        assert_eq!(u16::from_be_bytes([r[0], r[1]]), 4242);
        assert_ne!(
            f.queries().last().expect("seen").id(),
            4242,
            "{be}: upstream IDs are random"
        );
        // Class CH is forwarded; an unknown EDNS option goes upstream but is not
        // echoed back to the client (plugins.md, verified against CoreDNS).
        let out = s.dig(&["+ednsopt=65001:abcd", "CH", "b2.example.org", "A"]);
        assert_eq!(dig_status(&out), "NOERROR", "{be}: {out}");
        let up = f.queries().last().expect("seen").clone();
        assert_eq!(up.question(), ("b2.example.org.".into(), 1), "{be}");
        assert_eq!(up.qclass(), 3, "{be}");
        assert!(
            up.msg
                .windows(6)
                .any(|w| w == [0xfd, 0xe9, 0, 2, 0xab, 0xcd]),
            "{be}: the option goes upstream: {:02x?}",
            up.msg
        );
        assert!(out.contains("; EDNS: version: 0"), "{be}: {out}");
        assert!(
            !out.lines()
                .filter(|l| !l.contains("<<>>"))
                .any(|l| l.contains("65001")),
            "{be}: not echoed: {out}"
        );
        f.set(Mode::WrongQuestion);
        let out = s.dig(&["c.example.org", "A"]);
        assert_eq!(dig_status(&out), "FORMERR", "{be}: {out}");
        assert_eq!(
            section(&out, "QUESTION"),
            [";c.example.org. IN A"],
            "{be}: {out}"
        );
        // The class is compared too (CoreDNS 1.14.7's Request.Match).
        f.set(Mode::WrongClass);
        let out = s.dig(&["c2.example.org", "A"]);
        assert_eq!(dig_status(&out), "FORMERR", "{be}: {out}");
        assert_eq!(
            section(&out, "QUESTION"),
            [";c2.example.org. IN A"],
            "{be}: {out}"
        );
        f.set(Mode::WrongId);
        let out = s.dig(&["d.example.org", "A"]);
        assert_eq!(
            dig_status(&out),
            "SERVFAIL",
            "{be}: wrong IDs are ignored: {out}"
        );
        f.set(Mode::Garbage);
        let out = s.dig(&["e.example.org", "A"]);
        assert_eq!(dig_status(&out), "SERVFAIL", "{be}: {out}");
        f.set(Mode::Rcode(2));
        let n = s
            .lines()
            .iter()
            .filter(|l| l.starts_with("[ERROR]"))
            .count();
        let out = s.dig(&["f.example.org", "A"]);
        assert_eq!(dig_status(&out), "SERVFAIL", "{be}: {out}");
        f.set(Mode::Rcode(5));
        let out = s.dig(&["g.example.org", "A"]);
        assert_eq!(dig_status(&out), "REFUSED", "{be}: {out}");
        std::thread::sleep(Duration::from_millis(100));
        let m = s
            .lines()
            .iter()
            .filter(|l| l.starts_with("[ERROR]"))
            .count();
        assert_eq!(n, m, "{be}: upstream rcodes pass without an errors line");
        // TC over UDP reaches a UDP client as TC (no TCP retry without prefer_udp).
        f.set(Mode::Tc);
        let out = s.dig(&["+ignore", "h.example.org", "A"]);
        assert!(dig_flags(&out).contains("tc"), "{be}: {out}");
        assert!(f.queries().iter().all(|q| !q.tcp), "{be}");
        // A TCP client is forwarded over TCP.
        let out = s.dig(&["+tcp", "i.example.org", "A"]);
        assert_eq!(
            answers(&out),
            ["i.example.org. 60 IN A 192.0.2.7"],
            "{be}: {out}"
        );
        assert!(f.queries().last().expect("q").tcp, "{be}");
        // A header alone unpacks in CoreDNS too; it has no question: FORMERR, over
        // UDP and TCP alike (not TC, not SERVFAIL).
        f.set(Mode::HeaderOnly(5));
        let out = s.dig(&["g2.example.org", "A"]);
        assert_eq!(dig_status(&out), "FORMERR", "{be}: {out}");
        let out = s.dig(&["+tcp", "g3.example.org", "A"]);
        assert_eq!(dig_status(&out), "FORMERR", "{be}: {out}");
        // Over TCP a message that does not unpack ends the exchange at once (miekg's
        // ReadMsg), whatever its ID; before, one with another ID was read past
        // until the read timeout (300 ms here, twice).
        f.set(Mode::Garbage);
        let t0 = Instant::now();
        let out = s.dig(&["+tcp", "g5.example.org", "A"]);
        assert_eq!(dig_status(&out), "SERVFAIL", "{be}: {out}");
        assert!(
            t0.elapsed() < Duration::from_millis(450),
            "{be}: {:?}",
            t0.elapsed()
        );
        // Counts the records do not fill: what is there, with the counts corrected (as
        // CoreDNS packs the message again).
        f.set(Mode::CountsLie);
        for tcp in ["+notcp", "+tcp"] {
            let out = s.dig(&[tcp, "g4.example.org", "A"]);
            assert_eq!(
                answers(&out),
                ["g4.example.org. 60 IN A 192.0.2.7"],
                "{be} {tcp}: {out}"
            );
            assert!(
                out.contains("ANSWER: 1, AUTHORITY: 0,"),
                "{be} {tcp}: {out}"
            );
        }
        // Every mode above, the dropped wrong-ID and garbage replies included, left
        // nothing in the pending tables.
        assert_nothing_in_flight(mport, be);
    }
}

#[test]
fn forward_tolerates_slow_upstream() {
    for be in backends() {
        let f = Fake::start(Mode::Delay(Duration::from_millis(1500)), 3);
        let (conf, mport) = with_metrics(&format!(".:{{port}} {{\n forward . {}\n}}\n", f.addr()));
        let s = TestServer::start(&conf, be);
        let out = s.dig(&["+time=5", "slow.example.org", "A"]);
        assert_eq!(
            answers(&out),
            ["slow.example.org. 60 IN A 192.0.2.3"],
            "{be}: {out}"
        );
        assert_eq!(f.queries().len(), 1, "{be}");
        assert_nothing_in_flight(mport, be);
    }
}

#[test]
fn forward_prefer_udp_force_tcp() {
    for be in backends() {
        let f = Fake::start(Mode::Tc, 4);
        let (conf, mport) = with_metrics(&format!(
            "a.example:{{port}} {{\n errors\n forward . {0} {{\n  prefer_udp\n }}\n}}\nb.example:{{port}} {{\n forward . {0} {{\n  force_tcp\n }}\n}}\n",
            f.addr()
        ));
        // One worker: the socket-reuse check below counts one pool's sockets.
        let s = TestServer::start_env(&conf, be, &[], &[("GOMAXPROCS", "1")]);
        // prefer_udp: UDP even for a TCP client; TC → the same upstream over TCP.
        let out = s.dig(&["+tcp", "x.a.example", "A"]);
        assert_eq!(
            answers(&out),
            ["x.a.example. 60 IN A 192.0.2.4"],
            "{be}: {out}"
        );
        let q = f.queries();
        assert_eq!(
            q.iter().map(|s| s.tcp).collect::<Vec<_>>(),
            [false, true],
            "{be}"
        );
        let out = s.dig(&["x.a.example", "A"]);
        assert!(!dig_flags(&out).contains("tc"), "{be}: {out}");
        // A TCP query too long for a datagram fails its attempts with the kernel's
        // error, as Go's write fails; the socket (and the queries on it) is kept.
        let before = f.queries().len();
        let pad = vec![0u8; 65_470];
        let mut opt = Vec::new();
        opt.extend_from_slice(&12u16.to_be_bytes());
        opt.extend_from_slice(&(pad.len() as u16).to_be_bytes());
        opt.extend_from_slice(&pad);
        let big = query(7, "big.a.example", 1, 1, Some((1232, 0, &opt)));
        let udp_misses = || {
            scrape_metrics(mport)
                .lines()
                .find(|l| {
                    l.starts_with("coredns_proxy_conn_cache_misses_total{")
                        && l.contains("proto=\"udp\"")
                })
                .and_then(|l| l.rsplit_once(' ')?.1.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let misses = udp_misses();
        assert!(misses > 0, "{be}: the UDP socket's miss is counted");
        assert!(big.len() > 65_507 && big.len() <= 65_535, "{}", big.len());
        let r = tcp_exchange(s.port, &big).expect("a reply");
        assert_eq!(r[3] & 0x0f, 2, "{be}: SERVFAIL");
        let line = s
            .wait_line(|l| l.contains("big.a.example"))
            .unwrap_or_default();
        assert!(
            line.starts_with("[ERROR] plugin/errors: 2 big.a.example. A: write udp 127.0.0.1:")
                && line.ends_with(&format!("->{}: write: message too long", f.addr())),
            "{be}: {line}"
        );
        assert_eq!(f.queries().len(), before, "{be}: nothing sent");
        let out = s.dig(&["+tcp", "after.a.example", "A"]);
        assert_eq!(
            answers(&out),
            ["after.a.example. 60 IN A 192.0.2.4"],
            "{be}: {out}"
        );
        assert_eq!(udp_misses(), misses, "{be}: the socket was kept");
        // force_tcp: TCP even for a UDP client.
        let before = f.queries().len();
        let out = s.dig(&["y.b.example", "A"]);
        assert_eq!(
            answers(&out),
            ["y.b.example. 60 IN A 192.0.2.4"],
            "{be}: {out}"
        );
        let q = f.queries();
        assert_eq!(q.len(), before + 1, "{be}");
        assert!(q[before].tcp, "{be}");
        // The TCP connection is reused.
        s.dig(&["z.b.example", "A"]);
        assert!(f.queries().last().expect("q").tcp, "{be}");
        assert_nothing_in_flight(mport, be);
    }
}

#[test]
fn forward_next_failover_and_stanzas() {
    for be in backends() {
        let nx = Fake::start(Mode::Rcode(3), 1);
        let sf = Fake::start(Mode::Rcode(2), 2);
        let good = Fake::start(Mode::Answer, 3);
        let nodata = Fake::start(Mode::Nodata, 4);
        let (conf, mport) = with_metrics(&format!(
            "next.example:{{port}} {{\n forward . {nx} {{\n  next NXDOMAIN\n }}\n forward . {good}\n}}\n\
                 nonext.example:{{port}} {{\n forward . {nx}\n}}\n\
                 fo.example:{{port}} {{\n forward . {sf} {nx} {good} {{\n  policy sequential\n  failover SERVFAIL NXDOMAIN\n }}\n}}\n\
                 nofo.example:{{port}} {{\n forward . {sf} {good} {{\n  policy sequential\n }}\n}}\n\
                 nodata.example:{{port}} {{\n forward . {nodata} {{\n  next_on_nodata\n }}\n forward . {good}\n}}\n\
                 sub.example:{{port}} {{\n forward sub.example {nx} {{\n  except a.sub.example sub.example\n }}\n forward . {good}\n}}\n",
            nx = nx.addr(),
            sf = sf.addr(),
            good = good.addr(),
            nodata = nodata.addr()
        ));
        let s = TestServer::start(&conf, be);
        let out = s.dig(&["x.next.example", "A"]);
        assert_eq!(
            answers(&out),
            ["x.next.example. 60 IN A 192.0.2.3"],
            "{be}: {out}"
        );
        let out = s.dig(&["x.nonext.example", "A"]);
        assert_eq!(
            dig_status(&out),
            "NXDOMAIN",
            "{be}: next only to another forward: {out}"
        );
        let out = s.dig(&["x.fo.example", "A"]);
        assert_eq!(
            answers(&out),
            ["x.fo.example. 60 IN A 192.0.2.3"],
            "{be}: {out}"
        );
        let out = s.dig(&["x.nofo.example", "A"]);
        assert_eq!(dig_status(&out), "SERVFAIL", "{be}: {out}");
        let out = s.dig(&["x.nodata.example", "A"]);
        assert_eq!(
            answers(&out),
            ["x.nodata.example. 60 IN A 192.0.2.3"],
            "{be}: {out}"
        );
        // except: names under a.sub.example go to the next stanza; FROM itself
        // is always forwarded even when listed.
        let out = s.dig(&["b.a.sub.example", "A"]);
        assert_eq!(dig_status(&out), "NOERROR", "{be}: {out}");
        let out = s.dig(&["sub.example", "A"]);
        assert_eq!(dig_status(&out), "NXDOMAIN", "{be}: {out}");
        let out = s.dig(&["c.sub.example", "A"]);
        assert_eq!(
            dig_status(&out),
            "NOERROR",
            "{be}: sub.example in except: {out}"
        );
        assert_nothing_in_flight(mport, be);
    }
}

#[test]
fn forward_one_dead_upstream_health_check_and_recovery() {
    for be in backends() {
        let dead = Fake::start(Mode::Drop, 1);
        let good = Fake::start(Mode::Answer, 2);
        let (conf, mport) = with_metrics(&format!(
            ".:{{port}} {{\n forward . {} {} {{\n  policy sequential\n  read_timeout 300ms\n  max_fails 1\n  health_check 100ms\n }}\n}}\n",
            dead.addr(),
            good.addr()
        ));
        let s = TestServer::start(&conf, be);
        let t0 = Instant::now();
        let out = s.dig(&["a.example.org", "A"]);
        assert_eq!(
            answers(&out),
            ["a.example.org. 60 IN A 192.0.2.2"],
            "{be}: {out}"
        );
        assert!(
            t0.elapsed() >= Duration::from_millis(300),
            "{be}: tried the dead one first"
        );
        // Failed checks (1 s timeout each) mark it down after max_fails + 1.
        let deadline = Instant::now() + Duration::from_secs(6);
        loop {
            let hc = dead
                .seen()
                .iter()
                .filter(|q| q.question() == (".".into(), 2))
                .count();
            if hc >= 3 || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(200));
        let n = dead.queries().len();
        let t0 = Instant::now();
        let out = s.dig(&["b.example.org", "A"]);
        assert_eq!(
            answers(&out),
            ["b.example.org. 60 IN A 192.0.2.2"],
            "{be}: {out}"
        );
        assert!(
            t0.elapsed() < Duration::from_millis(250),
            "{be}: down upstream skipped"
        );
        assert_eq!(dead.queries().len(), n, "{be}");
        // It comes back: the next check succeeds and it is used again.
        dead.set(Mode::Answer);
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut back = false;
        while Instant::now() < deadline && !back {
            std::thread::sleep(Duration::from_millis(200));
            let out = s.dig(&["c.example.org", "A"]);
            back = answers(&out) == ["c.example.org. 60 IN A 192.0.2.1"];
        }
        assert!(back, "{be}: recovered");
        let metrics = dead.seen();
        assert!(
            metrics
                .iter()
                .any(|q| q.question() == (".".into(), 2) && q.rd()),
            "{be}"
        );
        assert_nothing_in_flight(mport, be);
    }
}

#[test]
fn forward_max_concurrent_refuses() {
    let re = regex::Regex::new(
        r"^\[ERROR\] plugin/errors: 5 q[23]\.example\.org\. A: concurrent queries exceeded maximum 2$",
    )
    .expect("re");
    for be in backends() {
        let f = Fake::start(Mode::Delay(Duration::from_millis(800)), 5);
        let (conf, mport) = with_metrics(&format!(
            ".:{{port}} {{\n errors\n forward . {} {{\n  max_concurrent 2\n }}\n}}\n",
            f.addr()
        ));
        let s = TestServer::start(&conf, be);
        let port = s.port;
        let handles: Vec<_> = (0..4)
            .map(|i| {
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(i * 50));
                    let out = Command::new("dig")
                        .args([
                            "@127.0.0.1",
                            "-p",
                            &port.to_string(),
                            "+time=3",
                            "+tries=1",
                            &format!("q{i}.example.org"),
                            "A",
                        ])
                        .output()
                        .expect("dig");
                    dig_status(&String::from_utf8_lossy(&out.stdout))
                })
            })
            .collect();
        let mut st: Vec<String> = handles
            .into_iter()
            .map(|h| h.join().expect("join"))
            .collect();
        st.sort();
        assert_eq!(st, ["NOERROR", "NOERROR", "REFUSED", "REFUSED"], "{be}");
        let l = s
            .wait_line(|l| l.contains("concurrent queries exceeded maximum 2"))
            .expect("errors line");
        assert!(re.is_match(&l), "{be}: {l}");
        assert_nothing_in_flight(mport, be);
    }
}

fn tls_server(name: &str) -> (Arc<rustls::ServerConfig>, String) {
    let ck = rcgen::generate_simple_self_signed(vec![name.to_owned()]).expect("cert");
    let cert_pem = ck.cert.pem();
    let der = ck.cert.der().clone();
    let key =
        rustls::pki_types::PrivateKeyDer::try_from(ck.signing_key.serialize_der()).expect("key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![der], key)
        .expect("server config");
    (Arc::new(cfg), cert_pem)
}

#[test]
fn forward_dns_over_tls() {
    let (cfg, pem) = tls_server("dns.example.test");
    for be in backends() {
        let f = Fake::start_tls(Mode::Answer, 9, Some(Arc::clone(&cfg)));
        let dir = TempDir::new("dot");
        dir.write("ca.pem", &pem);
        let (conf, mport) = with_metrics(
            &format!(
                "good.example:{{port}} {{\n forward . tls://127.0.0.1%dns.example.test:{p} {{\n  tls ca.pem\n }}\n}}\n\
                 wrongname.example:{{port}} {{\n errors\n forward . tls://127.0.0.1:{p} {{\n  tls ca.pem\n  tls_servername other.example.test\n  max_fails 0\n }}\n}}\n\
                 noca.example:{{port}} {{\n errors\n forward . tls://127.0.0.1%dns.example.test:{p} {{\n  max_fails 0\n }}\n}}\n\
                 neither.example:{{port}} {{\n errors\n forward . tls://127.0.0.1:{p} {{\n  max_fails 0\n }}\n}}\n",
                p = f.port
            )
            .replace("ca.pem", &dir.0.join("ca.pem").to_string_lossy()),
        );
        let s = TestServer::start(&conf, be);
        let out = s.dig(&["x.good.example", "A"]);
        assert_eq!(
            answers(&out),
            ["x.good.example. 60 IN A 192.0.2.9"],
            "{be}: {out}"
        );
        let out = s.dig(&["y.good.example", "A"]);
        assert_eq!(dig_status(&out), "NOERROR", "{be}: {out}");
        assert!(f.queries().iter().all(|q| q.tcp), "{be}");
        // Verification failures read as Go's crypto/tls and x509 word them, the name
        // named before the chain as Go's Verify does (neither: an unknown issuer and a
        // certificate without the IP).
        for (zone, err) in [
            (
                "wrongname",
                "x509: certificate is valid for dns.example.test, not other.example.test",
            ),
            ("noca", "x509: certificate signed by unknown authority"),
            (
                "neither",
                "x509: cannot validate certificate for 127.0.0.1 because it doesn't contain any IP SANs",
            ),
        ] {
            let out = s.dig(&[&format!("x.{zone}.example"), "A"]);
            assert_eq!(dig_status(&out), "SERVFAIL", "{be}: {out}");
            let l = s
                .wait_line(|l| l.starts_with("[ERROR]") && l.contains(&format!(".{zone}.")))
                .expect("line");
            assert_eq!(
                l,
                format!(
                    "[ERROR] plugin/errors: 2 x.{zone}.example. A: tls: failed to verify certificate: {err}"
                ),
                "{be}"
            );
        }
        // The DoT upstream's series is labelled tcp-tls.
        assert!(
            in_flight(mport)
                .iter()
                .any(|(l, _)| l.contains("proto=\"tcp-tls\"")),
            "{be}: {:?}",
            in_flight(mport)
        );
        assert_nothing_in_flight(mport, be);
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("VmRSS:")
                    .map(|v| v.trim().trim_end_matches(" kB").trim().parse().unwrap_or(0))
            })
        })
        .unwrap_or(0)
}

#[test]
fn forward_flood_to_dead_upstream_is_bounded_and_recovers() {
    for be in backends() {
        let dead = Fake::start(Mode::Drop, 1);
        let good = Fake::start(Mode::Answer, 2);
        let (conf, mport) = with_metrics(&format!(
            "dead.example:{{port}} {{\n forward . {} {{\n  read_timeout 500ms\n }}\n}}\nlive.example:{{port}} {{\n forward . {}\n}}\n",
            dead.addr(),
            good.addr()
        ));
        let s = TestServer::start(&conf, be);
        let rss0 = rss_kib(s.child.id());
        let flood = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let target: SocketAddr = s.addr();
        let t0 = Instant::now();
        let mut sent = 0u32;
        let mut live_ok = 0;
        // 3 s of flood (bounded), checking the other zone meanwhile.
        while t0.elapsed() < Duration::from_secs(3) {
            for i in 0..2000u32 {
                let q = query(
                    (sent.wrapping_add(i)) as u16,
                    &format!("q{}.dead.example", sent + i),
                    1,
                    1,
                    None,
                );
                let _ = flood.send_to(&q, target);
            }
            sent += 2000;
            let t = Instant::now();
            let out = s.dig(&["x.live.example", "A"]);
            if answers(&out) == ["x.live.example. 60 IN A 192.0.2.2"]
                && t.elapsed() < Duration::from_secs(1)
            {
                live_ok += 1;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            live_ok >= 3,
            "{be}: other zones keep answering during the flood ({live_ok})"
        );
        // Queries are waiting on the dead upstream, within the bound (4,096 per
        // upstream per worker). A last burst, read at once: on a loaded machine the
        // live-zone check above can outlast the earlier bursts' attempts.
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        for i in 0..2000u32 {
            let q = query(i as u16, &format!("last{i}.dead.example"), 1, 1, None);
            let _ = flood.send_to(&q, target);
        }
        let t = Instant::now();
        let mut waiting: f64 = 0.0;
        while waiting == 0.0 && t.elapsed() < Duration::from_secs(3) {
            waiting = in_flight(mport).iter().map(|(_, v)| v).sum();
            if waiting == 0.0 {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        assert!(
            waiting > 0.0 && waiting <= (4096 * workers) as f64,
            "{be}: {waiting} in flight"
        );
        let rss1 = rss_kib(s.child.id());
        assert!(
            rss1 < rss0 + 200 * 1024,
            "{be}: memory bounded: {rss0} KiB -> {rss1} KiB after {sent} queries"
        );
        // The upstream returns: the zone answers again.
        dead.set(Mode::Answer);
        let deadline = Instant::now() + Duration::from_secs(8);
        let mut ok = false;
        while Instant::now() < deadline && !ok {
            let out = s.dig(&["back.dead.example", "A"]);
            ok = answers(&out) == ["back.dead.example. 60 IN A 192.0.2.1"];
        }
        assert!(ok, "{be}: recovered");
        assert_nothing_in_flight(mport, be);
        let full = scrape_metrics(mport).lines().find_map(|l| {
            l.strip_prefix("ringdns_forward_in_flight_full_total ")?
                .parse::<f64>()
                .ok()
        });
        println!(
            "{be}: flood of {sent} queries, rss {rss0} KiB -> {rss1} KiB, live answers {live_ok}, \
             {waiting} in flight mid-flood, {full:?} attempts refused at the bound"
        );
    }
}

/// `max_idle_conns` bounds idle upstream sockets, not queries in flight: 600 slow
/// queries at once from one client (one worker) are all answered.
#[test]
fn forward_max_idle_conns_does_not_cap_queries_in_flight() {
    for be in backends() {
        let slow = Fake::start(Mode::Delay(Duration::from_millis(600)), 5);
        let (conf, mport) = with_metrics(&format!(
            ".:{{port}} {{\n forward . {} {{\n  max_idle_conns 1\n }}\n}}\n",
            slow.addr()
        ));
        let s = TestServer::start(&conf, be);
        // The server is up (and the socket pool warm) before the burst.
        let out = s.dig(&["warm.example.org", "A"]);
        assert_eq!(dig_status(&out), "NOERROR", "{be}: {out}");
        let c = UdpSocket::bind("127.0.0.1:0").expect("bind");
        c.set_read_timeout(Some(Duration::from_secs(3))).ok();
        let n = 600u16;
        // In steps of 50 (the server's socket buffer holds ~250 datagrams), all well
        // within the upstream's delay, so all 600 are in flight together.
        for i in 0..n {
            let q = query(i, &format!("b{i}.example.org"), 1, 1, None);
            c.send_to(&q, s.addr()).expect("send");
            if i % 50 == 49 {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let mut rcodes = std::collections::BTreeMap::new();
        let mut buf = [0u8; 512];
        for _ in 0..n {
            let Ok(len) = c.recv(&mut buf) else { break };
            assert!(len >= 12);
            *rcodes.entry(buf[3] & 0x0f).or_insert(0u32) += 1;
        }
        assert_eq!(
            rcodes.get(&0).copied(),
            Some(u32::from(n)),
            "{be}: rcodes {rcodes:?}"
        );
        assert_nothing_in_flight(mport, be);
    }
}

#[test]
fn forward_setup_errors_at_startup() {
    let dir = TempDir::new("fwsetup");
    let cases = [
        (
            ".:1053 {\n forward . 127.0.0.1 {\n  max_idle_conns -1\n }\n}\n",
            "plugin/forward: max_idle_conns can't be negative: -1",
        ),
        (
            ".:1053 {\n forward . 127.0.0.1 {\n  read_timeout 0s\n }\n}\n",
            "plugin/forward: read_timeout must be positive: 0s",
        ),
        (
            ".:1053 {\n forward . 127.0.0.1 {\n  bogus\n }\n}\n",
            "plugin/forward: CF:3 - Error during parsing: unknown property 'bogus'",
        ),
        (
            ".:1053 {\n forward . https://127.0.0.1 {\n  doh_method PUT\n }\n}\n",
            "plugin/forward: doh_method must be either POST or GET",
        ),
    ];
    for (text, want) in cases {
        let c = dir.write("CF", text);
        let out = Command::new(bin())
            .arg("-conf")
            .arg(&c)
            .arg("-validate")
            .current_dir(&dir.0)
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        let want = want.replace("CF:", &format!("{}:", c.display()));
        assert_eq!(out.status.code(), Some(1), "{text}");
        assert_eq!(err.trim_end(), want, "{text}");
    }
}

/// Writes the DoH upstream's CA; the path for the Corefile.
fn ca_file(dir: &TempDir, pem: &str) -> String {
    dir.write("ca.pem", pem).to_string_lossy().into_owned()
}

/// Queries `names` (A) one after the other from one UDP socket, so one worker
/// forwards them all; the replies (`None`: no reply within 5 s).
fn from_one_socket(s: &TestServer, first_id: u16, names: &[String]) -> Vec<Option<Vec<u8>>> {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut buf = vec![0u8; 65535];
    names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            sock.send_to(&query(first_id + i as u16, n, 1, 1, None), s.addr())
                .expect("send");
            let n = sock.recv(&mut buf).ok()?;
            Some(buf[..n].to_vec())
        })
        .collect()
}

/// An upstream reply's extended rcode (in its OPT) is the reply's rcode everywhere, as
/// miekg unpacks it: the client sees it, *log* and `coredns_dns_responses_total` name it
/// (16 is BADSIG in miekg's table), and *cache* does not store it as a NOERROR answer.
#[test]
fn forward_extended_rcode_logged_counted_and_not_cached() {
    for be in backends() {
        let f = Fake::start(Mode::ExtRcode(16), 4);
        let (conf, mport) = with_metrics(&format!(
            ".:{{port}} {{\n log\n cache 30\n forward . {}\n}}\n",
            f.addr()
        ));
        let s = TestServer::start(&conf, be);
        for _ in 0..2 {
            let out = s.dig(&["x.ext.example", "A"]);
            assert_eq!(dig_status(&out), "BADVERS", "{be}: {out}");
        }
        assert_eq!(f.queries().len(), 2, "{be}: cached as an answer");
        let l = s
            .wait_line(|l| l.contains("x.ext.example."))
            .expect("log line");
        assert!(l.contains("\" BADSIG qr,rd,ra "), "{be}: {l}");
        let text = scrape_metrics(mport);
        let counted: Vec<&str> = text
            .lines()
            .filter(|x| x.starts_with("coredns_dns_responses_total{"))
            .collect();
        assert!(
            counted
                .iter()
                .any(|x| x.contains("rcode=\"BADSIG\"") && x.ends_with("} 2")),
            "{be}: {counted:?}"
        );
        assert!(
            !counted.iter().any(|x| x.contains("rcode=\"NOERROR\"")),
            "{be}: {counted:?}"
        );
    }
}

/// `conf` with a `prometheus` listener (on a free port, returned) in its first block.
fn with_metrics(conf: &str) -> (String, u16) {
    let mport = free_port();
    let i = conf.find("{\n").expect("a block") + 2;
    let conf = format!(
        "{} prometheus 127.0.0.1:{mport}\n{}",
        &conf[..i],
        &conf[i..]
    );
    (conf, mport)
}

/// Every `ringdns_forward_queries_in_flight` series on the `prometheus` listener on
/// `port`: (labels, value).
fn in_flight(port: u16) -> Vec<(String, f64)> {
    scrape_metrics(port)
        .lines()
        .filter_map(|l| l.strip_prefix("ringdns_forward_queries_in_flight{"))
        .filter_map(|l| {
            let (labels, v) = l.rsplit_once("} ")?;
            Some((labels.to_owned(), v.parse().ok()?))
        })
        .collect()
}

/// Nothing leaks: within 7 s (a query's 5 s budget, the deadline sweep) every
/// upstream's pending table (the slab) and stream count is back to 0, on every
/// worker.
fn assert_nothing_in_flight(port: u16, what: &str) {
    let until = Instant::now() + Duration::from_secs(7);
    loop {
        let series = in_flight(port);
        if !series.is_empty() && series.iter().all(|(_, v)| *v == 0.0) {
            return;
        }
        assert!(
            Instant::now() < until,
            "{what}: queries left in flight: {series:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The Prometheus text of the `prometheus` listener on `port`.
fn scrape_metrics(port: u16) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
    let _ = write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf
}

#[test]
fn forward_doh_post_http2_one_connection() {
    let (tls, pem) = doh_tls(&["dns.example.test", "127.0.0.1"], false);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    for be in backends() {
        let up = DohServer::start(DohMode::Dns(Mode::Answer), 5, Arc::clone(&tls), false);
        let dir = TempDir::new("doh");
        let ca = ca_file(&dir, &pem);
        let (conf, mport) = with_metrics(&format!(
            ".:{{port}} {{\n errors\n forward . https://127.0.0.1:{} {{\n  tls {ca}\n }}\n}}\n",
            up.port
        ));
        let s = TestServer::start(&conf, be);
        // One client socket: one worker, one HTTP/2 connection for all.
        let names: Vec<String> = (0..10).map(|i| format!("q{i}.example.org")).collect();
        for (i, r) in from_one_socket(&s, 4200, &names).iter().enumerate() {
            let r = r.as_ref().unwrap_or_else(|| panic!("{be}: no reply {i}"));
            assert_eq!(
                u16::from_be_bytes([r[0], r[1]]),
                4200 + i as u16,
                "{be}: the client's ID comes back"
            );
            assert_eq!(r[3] & 0x0f, 0, "{be}: NOERROR");
            assert_eq!(&r[r.len() - 4..], &[192, 0, 2, 5], "{be}");
        }
        assert_eq!(up.accepted(), 1, "{be}: one connection for ten queries");
        let seen = up.queries();
        assert_eq!(seen.len(), 10, "{be}: {seen:?}");
        for x in &seen {
            assert_eq!(x.method, "POST", "{be}");
            assert_eq!(x.target, "/dns-query", "{be}");
            assert_eq!(x.version, "HTTP/2.0", "{be}");
            assert_eq!(x.content_type, "application/dns-message", "{be}");
            assert_eq!(x.accept, "application/dns-message", "{be}");
            assert_eq!(x.host, format!("127.0.0.1:{}", up.port), "{be}");
            assert_eq!(x.dns().id(), 0, "{be}: DoH queries carry ID 0");
            assert_eq!(x.body_len, x.msg.len(), "{be}");
            assert_eq!(x.conn, 1, "{be}");
        }
        assert_eq!(
            seen.iter()
                .map(|x| x.dns().question().0)
                .collect::<Vec<_>>(),
            names.iter().map(|n| format!("{n}.")).collect::<Vec<_>>(),
            "{be}"
        );
        // dig over UDP and TCP; at most one connection per worker.
        for i in 0..6 {
            let tcp = if i % 2 == 0 { "+notcp" } else { "+tcp" };
            let out = s.dig(&[tcp, &format!("d{i}.example.org"), "A"]);
            assert_eq!(
                answers(&out),
                [format!("d{i}.example.org. 60 IN A 192.0.2.5")],
                "{be}: {out}"
            );
        }
        assert!(up.accepted() <= cpus, "{be}: {} connections", up.accepted());
        // A reply about another question: FORMERR, as over UDP.
        up.set(DohMode::Dns(Mode::WrongQuestion));
        let out = s.dig(&["w.example.org", "A"]);
        assert_eq!(dig_status(&out), "FORMERR", "{be}: {out}");
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            !s.lines().iter().any(|l| l.starts_with("[ERROR]")),
            "{be}: {:?}",
            s.lines()
        );
        let series = in_flight(mport);
        assert!(
            !series.is_empty() && series.iter().all(|(l, _)| l.contains("proto=\"https\"")),
            "{be}: a DoH upstream's queries are counted as https: {series:?}"
        );
        assert_nothing_in_flight(mport, be);
    }
}

#[test]
fn forward_doh_get() {
    let (tls, pem) = doh_tls(&["127.0.0.1"], false);
    for be in backends() {
        let up = DohServer::start(DohMode::Dns(Mode::Answer), 7, Arc::clone(&tls), false);
        let dir = TempDir::new("doh");
        let ca = ca_file(&dir, &pem);
        let s = TestServer::start(
            &format!(
                ".:{{port}} {{\n forward . https://127.0.0.1:{} {{\n  tls {ca}\n  doh_method GET\n }}\n}}\n",
                up.port
            ),
            be,
        );
        let out = s.dig(&["+tcp", "Get.Example.org", "A"]);
        assert_eq!(
            answers(&out),
            ["Get.Example.org. 60 IN A 192.0.2.7"],
            "{be}: {out}"
        );
        let seen = up.queries();
        assert_eq!(seen.len(), 1, "{be}: {seen:?}");
        let x = &seen[0];
        assert_eq!(x.method, "GET", "{be}");
        let b64 = x
            .target
            .strip_prefix("/dns-query?dns=")
            .unwrap_or_else(|| panic!("{be}: {}", x.target));
        assert!(
            !b64.contains('=') && !b64.contains('+') && !b64.contains('/'),
            "{be}: base64url without padding: {b64}"
        );
        assert_eq!(x.body_len, 0, "{be}");
        assert_eq!(x.content_type, "application/dns-message", "{be}");
        assert_eq!(x.accept, "application/dns-message", "{be}");
        assert_eq!(x.dns().id(), 0, "{be}");
        assert_eq!(x.dns().question(), ("get.example.org.".into(), 1), "{be}");
    }
}

#[test]
fn forward_doh_tls_servername_and_http1_fallback() {
    // No IP in the certificate, and a server that speaks only HTTP/1.1.
    let (tls, pem) = doh_tls(&["dns.example.test"], true);
    for be in backends() {
        let up = DohServer::start(DohMode::Dns(Mode::Answer), 8, Arc::clone(&tls), false);
        let dir = TempDir::new("doh");
        let ca = ca_file(&dir, &pem);
        let (conf, mport) = with_metrics(&format!(
            "good.example:{{port}} {{\n forward . https://127.0.0.1:{p} {{\n  tls {ca}\n  tls_servername dns.example.test\n }}\n}}\n\
                 pct.example:{{port}} {{\n forward . https://127.0.0.1%dns.example.test:{p} {{\n  tls {ca}\n }}\n}}\n\
                 bad.example:{{port}} {{\n errors\n forward . https://127.0.0.1:{p} {{\n  tls {ca}\n  max_fails 0\n }}\n}}\n",
            p = up.port
        ));
        let s = TestServer::start(&conf, be);
        let names: Vec<String> = (0..5).map(|i| format!("q{i}.good.example")).collect();
        for r in from_one_socket(&s, 1, &names) {
            let r = r.expect("reply");
            assert_eq!(&r[r.len() - 4..], &[192, 0, 2, 8], "{be}");
        }
        assert_eq!(
            up.accepted(),
            1,
            "{be}: an HTTP/1.1 connection is kept for the next query"
        );
        let seen = up.queries();
        assert_eq!(seen.len(), 5, "{be}");
        assert!(
            seen.iter().all(|x| x.version == "HTTP/1.1"
                && x.target == "/dns-query"
                && x.host == format!("127.0.0.1:{}", up.port)
                && x.dns().id() == 0),
            "{be}: {seen:?}"
        );
        let out = s.dig(&["x.pct.example", "A"]);
        assert_eq!(
            answers(&out),
            ["x.pct.example. 60 IN A 192.0.2.8"],
            "{be}: {out}"
        );
        // Verified against the IP without a server name: refused.
        let out = s.dig(&["x.bad.example", "A"]);
        assert_eq!(dig_status(&out), "SERVFAIL", "{be}: {out}");
        let l = s.wait_line(|l| l.starts_with("[ERROR]")).expect("line");
        let want = format!(
            "[ERROR] plugin/errors: 2 x.bad.example. A: Post \"https://127.0.0.1:{}/dns-query\": \
             tls: failed to verify certificate: x509: cannot validate certificate for 127.0.0.1 \
             because it doesn't contain any IP SANs",
            up.port
        );
        assert_eq!(l, want, "{be}");
        assert_nothing_in_flight(mport, be);
    }
}

#[test]
fn forward_doh_http_error_failover_health_check_metrics() {
    let (tls, pem) = doh_tls(&["127.0.0.1"], false);
    for be in backends() {
        let bad = DohServer::start(DohMode::Status(500), 1, Arc::clone(&tls), false);
        let good = DohServer::start(DohMode::Dns(Mode::Answer), 2, Arc::clone(&tls), false);
        let dir = TempDir::new("doh");
        let ca = ca_file(&dir, &pem);
        let mport = free_port();
        let s = TestServer::start(
            &format!(
                "one.example:{{port}} {{\n errors\n forward . https://127.0.0.1:{b} {{\n  tls {ca}\n }}\n}}\n\
                 two.example:{{port}} {{\n prometheus 127.0.0.1:{mport}\n forward . https://127.0.0.1:{b} https://127.0.0.1:{g} {{\n  tls {ca}\n  policy sequential\n }}\n}}\n",
                b = bad.port,
                g = good.port
            ),
            be,
        );
        let t0 = Instant::now();
        let out = s.dig(&["x.one.example", "A"]);
        assert_eq!(dig_status(&out), "SERVFAIL", "{be}: {out}");
        assert!(t0.elapsed() < Duration::from_secs(1), "{be}");
        let want = format!(
            "[ERROR] plugin/errors: 2 x.one.example. A: Post \"https://127.0.0.1:{}/dns-query\": unexpected HTTP status 500 Internal Server Error",
            bad.port
        );
        assert!(
            s.wait_line(|l| l == want).is_some(),
            "{be}: {:?}",
            s.lines()
        );
        // The failure started health checks: `. IN NS` POSTs.
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut hc = Vec::new();
        while hc.is_empty() && Instant::now() < deadline {
            hc = bad
                .seen()
                .into_iter()
                .filter(|x| x.dns().question() == (".".into(), 2))
                .collect();
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(!hc.is_empty(), "{be}: no health check");
        assert!(
            hc.iter().all(|x| x.method == "POST" && x.dns().rd()),
            "{be}: {hc:?}"
        );
        // Two upstreams: the error moves the query on to the good one.
        let out = s.dig(&["y.two.example", "A"]);
        assert_eq!(
            answers(&out),
            ["y.two.example. 60 IN A 192.0.2.2"],
            "{be}: {out}"
        );
        assert!(
            bad.queries()
                .iter()
                .any(|x| x.dns().question().0 == "y.two.example."),
            "{be}: sequential tries the failing one first"
        );
        // Metrics are labelled with the upstream's IP:port; no connection
        // cache series for DoH (CoreDNS counts none).
        let m = scrape_metrics(mport);
        let g = format!("to=\"127.0.0.1:{}\"", good.port);
        let b = format!("to=\"127.0.0.1:{}\"", bad.port);
        assert!(
            m.lines().any(
                |l| l.starts_with("coredns_proxy_request_duration_seconds_count{")
                    && l.contains(&g)
                    && l.contains("rcode=\"NOERROR\"")
            ),
            "{be}: {m}"
        );
        assert!(
            m.lines().any(
                |l| l.starts_with("coredns_proxy_healthcheck_failures_total{") && l.contains(&b)
            ),
            "{be}: {m}"
        );
        assert!(
            !m.lines()
                .any(|l| l.contains("conn_cache") && (l.contains(&g) || l.contains(&b))),
            "{be}: {m}"
        );
        assert_nothing_in_flight(mport, be);
    }
}

#[test]
fn forward_doh_unreachable_and_hung_upstreams() {
    let (tls, pem) = doh_tls(&["127.0.0.1"], false);
    for be in backends() {
        let dead = free_port();
        let hung = DohServer::start(
            DohMode::Delay(Duration::from_secs(5)),
            3,
            Arc::clone(&tls),
            false,
        );
        let (_hole, _queued, black) = black_hole_tcp();
        let dir = TempDir::new("doh");
        let ca = ca_file(&dir, &pem);
        let (conf, mport) = with_metrics(&format!(
            "dead.example:{{port}} {{\n errors\n forward . https://127.0.0.1:{dead} {{\n  tls {ca}\n }}\n}}\n\
                 hung.example:{{port}} {{\n errors\n forward . https://127.0.0.1:{h} {{\n  tls {ca}\n  max_connect_attempts 1\n }}\n}}\n\
                 black.example:{{port}} {{\n errors\n forward . https://127.0.0.1:{black} {{\n  tls {ca}\n  max_connect_attempts 1\n }}\n}}\n",
            h = hung.port
        ));
        let s = TestServer::start(&conf, be);
        let t0 = Instant::now();
        let out = s.dig(&["x.dead.example", "A"]);
        assert_eq!(dig_status(&out), "SERVFAIL", "{be}: {out}");
        assert!(
            t0.elapsed() < Duration::from_secs(1),
            "{be}: refused is immediate"
        );
        let want = format!(
            "[ERROR] plugin/errors: 2 x.dead.example. A: Post \"https://127.0.0.1:{dead}/dns-query\": dial tcp 127.0.0.1:{dead}: connect: connection refused"
        );
        assert!(
            s.wait_line(|l| l == want).is_some(),
            "{be}: {:?}",
            s.lines()
        );
        // A hung upstream, and a connect that never completes: the HTTP client's 2 s,
        // then SERVFAIL with the client's text (for the connect too: Go's transport
        // returns the request's deadline error, not the dial's).
        for (zone, port) in [("hung", hung.port), ("black", black)] {
            let t0 = Instant::now();
            let out = s.dig(&["+time=6", &format!("x.{zone}.example"), "A"]);
            let took = t0.elapsed();
            assert_eq!(dig_status(&out), "SERVFAIL", "{be} {zone}: {out}");
            assert!(
                took >= Duration::from_millis(1900) && took < Duration::from_secs(3),
                "{be} {zone}: {took:?}"
            );
            let want = format!(
                "[ERROR] plugin/errors: 2 x.{zone}.example. A: Post \"https://127.0.0.1:{port}/dns-query\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
            );
            assert!(
                s.wait_line(|l| l == want).is_some(),
                "{be}: {:?}",
                s.lines()
            );
        }
        // The hung upstream's streams ended with their queries.
        assert_nothing_in_flight(mport, be);
    }
}

#[test]
fn forward_doh_through_https_proxy() {
    // HTTPS_PROXY as Go's transport reads it: a CONNECT tunnel to the upstream's
    // IP:port with Basic credentials from the proxy URL, TLS inside. The test proxy
    // on loopback stands in for every target (nothing leaves 127.0.0.1); a target
    // it refuses gets 407 and the client's error is the status text.
    let (tls, pem) = doh_tls(&["192.0.2.1", "192.0.2.8"], false);
    for be in backends() {
        let up = DohServer::start(DohMode::Dns(Mode::Answer), 9, Arc::clone(&tls), false);
        let proxy = TunnelProxy::start(ProxyKind::Http, up.port, "192.0.2.7:443");
        let dir = TempDir::new("doh");
        let ca = ca_file(&dir, &pem);
        let s = TestServer::start_env(
            &format!(
                "good.example:{{port}} {{\n errors\n forward . https://192.0.2.1 {{\n  tls {ca}\n }}\n}}\n\
                 refused.example:{{port}} {{\n errors\n forward . https://192.0.2.7 {{\n  tls {ca}\n  max_fails 0\n }}\n}}\n\
                 lf.example:{{port}} {{\n errors\n forward . https://192.0.2.8 {{\n  tls {ca}\n }}\n}}\n"
            ),
            be,
            &[],
            &[
                (
                    "HTTPS_PROXY",
                    &format!("http://dns%2Dclient:s3cret@127.0.0.1:{}", proxy.port),
                ),
                ("NO_PROXY", "192.0.2.99,.example.net"),
            ],
        );
        let out = s.dig(&["x.good.example", "A"]);
        assert_eq!(
            answers(&out),
            ["x.good.example. 60 IN A 192.0.2.9"],
            "{be}: {out}"
        );
        let heads = proxy.heads();
        assert_eq!(
            heads.first().map(String::as_str),
            Some(
                "CONNECT 192.0.2.1:443 HTTP/1.1\r\nHost: 192.0.2.1:443\r\nProxy-Authorization: Basic ZG5zLWNsaWVudDpzM2NyZXQ=\r\n\r\n"
            ),
            "{be}"
        );
        let out = s.dig(&["x.lf.example", "A"]);
        assert_eq!(
            answers(&out),
            ["x.lf.example. 60 IN A 192.0.2.9"],
            "{be}: a reply head with bare LF line ends: {out}"
        );
        let out = s.dig(&["x.refused.example", "A"]);
        assert_eq!(dig_status(&out), "SERVFAIL", "{be}: {out}");
        let want = "[ERROR] plugin/errors: 2 x.refused.example. A: Post \"https://192.0.2.7:443/dns-query\": Proxy Authentication Required";
        assert!(
            s.wait_line(|l| l == want).is_some(),
            "{be}: {:?}",
            s.lines()
        );
        // A proxy that cannot be reached (written without a scheme: http://):
        // Go's `proxyconnect tcp: dial tcp …`.
        let dead = free_port();
        let s = TestServer::start_env(
            &format!(
                ".:{{port}} {{\n errors\n forward . https://192.0.2.1 {{\n  tls {ca}\n  max_fails 0\n }}\n}}\n"
            ),
            be,
            &[],
            &[("https_proxy", &format!("127.0.0.1:{dead}"))],
        );
        let out = s.dig(&["x.example.org", "A"]);
        assert_eq!(dig_status(&out), "SERVFAIL", "{be}: {out}");
        let want = format!(
            "[ERROR] plugin/errors: 2 x.example.org. A: Post \"https://192.0.2.1:443/dns-query\": proxyconnect tcp: dial tcp 127.0.0.1:{dead}: connect: connection refused"
        );
        assert!(
            s.wait_line(|l| l == want).is_some(),
            "{be}: {:?}",
            s.lines()
        );
    }
}

#[test]
fn forward_doh_through_socks5_and_https_proxies() {
    // HTTPS_PROXY=socks5://… (username/password from the URL, RFC 1929) and
    // https://… (TLS to the proxy, verified with the stanza's CA as Go clones the
    // DoH transport's TLS configuration, then CONNECT): the upstream's TLS runs in
    // the tunnel. Refusals and failures in Go's words.
    let (tls, pem) = doh_tls(&["192.0.2.1", "192.0.2.7", "127.0.0.1"], false);
    let (other_tls, _) = doh_tls(&["127.0.0.1"], true);
    for be in backends() {
        let up = DohServer::start(DohMode::Dns(Mode::Answer), 9, Arc::clone(&tls), false);
        let socks = TunnelProxy::start(
            ProxyKind::Socks5 {
                user: b"dns",
                pass: b"s3cret",
            },
            up.port,
            "192.0.2.7:443",
        );
        let dir = TempDir::new("doh");
        let ca = ca_file(&dir, &pem);
        let corefile = format!(
            "good.example:{{port}} {{\n errors\n forward . https://192.0.2.1 {{\n  tls {ca}\n }}\n}}\n\
             refused.example:{{port}} {{\n errors\n forward . https://192.0.2.7 {{\n  tls {ca}\n  max_fails 0\n }}\n}}\n"
        );
        let start = |proxy_url: &str| {
            TestServer::start_env(&corefile, be, &[], &[("HTTPS_PROXY", proxy_url)])
        };
        let s = start(&format!("socks5://dns:s3cret@127.0.0.1:{}", socks.port));
        let out = s.dig(&["x.good.example", "A"]);
        assert_eq!(
            answers(&out),
            ["x.good.example. 60 IN A 192.0.2.9"],
            "{be}: {out}"
        );
        let mut want: Vec<u8> = vec![5, 2, 0, 2, 1, 3];
        want.extend_from_slice(b"dns");
        want.push(6);
        want.extend_from_slice(b"s3cret");
        want.extend_from_slice(&[5, 1, 0, 1, 192, 0, 2, 1, 1, 187]);
        assert_eq!(socks.seen().first(), Some(&want), "{be}");
        let out = s.dig(&["x.refused.example", "A"]);
        assert_eq!(dig_status(&out), "SERVFAIL", "{be}: {out}");
        let want = format!(
            "[ERROR] plugin/errors: 2 x.refused.example. A: Post \"https://192.0.2.7:443/dns-query\": socks connect tcp 127.0.0.1:{}->192.0.2.7:443: unknown error connection not allowed by ruleset",
            socks.port
        );
        assert!(
            s.wait_line(|l| l == want).is_some(),
            "{be}: {:?}",
            s.lines()
        );
        drop(s);
        // Wrong credentials (socks5h: the same for an IP target).
        let s = start(&format!("socks5h://dns:wrong@127.0.0.1:{}", socks.port));
        let out = s.dig(&["x.refused.example", "A"]);
        assert_eq!(dig_status(&out), "SERVFAIL", "{be}: {out}");
        let want = format!(
            "[ERROR] plugin/errors: 2 x.refused.example. A: Post \"https://192.0.2.7:443/dns-query\": socks connect tcp 127.0.0.1:{}->192.0.2.7:443: username/password authentication failed",
            socks.port
        );
        assert!(
            s.wait_line(|l| l == want).is_some(),
            "{be}: {:?}",
            s.lines()
        );
        drop(s);

        let https =
            TunnelProxy::start(ProxyKind::Https(Arc::clone(&tls)), up.port, "192.0.2.7:443");
        let s = start(&format!("https://dns:s3cret@127.0.0.1:{}", https.port));
        let out = s.dig(&["x.good.example", "A"]);
        assert_eq!(
            answers(&out),
            ["x.good.example. 60 IN A 192.0.2.9"],
            "{be}: {out}"
        );
        assert_eq!(
            https.heads().first().map(String::as_str),
            Some(
                "CONNECT 192.0.2.1:443 HTTP/1.1\r\nHost: 192.0.2.1:443\r\nProxy-Authorization: Basic ZG5zOnMzY3JldA==\r\n\r\n"
            ),
            "{be}"
        );
        drop(s);
        // A proxy whose certificate the stanza's CA did not sign.
        let untrusted = TunnelProxy::start(ProxyKind::Https(Arc::clone(&other_tls)), up.port, "");
        let s = start(&format!("https://127.0.0.1:{}", untrusted.port));
        let out = s.dig(&["x.refused.example", "A"]);
        assert_eq!(dig_status(&out), "SERVFAIL", "{be}: {out}");
        let want = "[ERROR] plugin/errors: 2 x.refused.example. A: Post \"https://192.0.2.7:443/dns-query\": proxyconnect tcp: tls: failed to verify certificate: x509: certificate signed by unknown authority";
        assert!(
            s.wait_line(|l| l == want).is_some(),
            "{be}: {:?}",
            s.lines()
        );
        assert!(
            untrusted.seen().is_empty(),
            "{be}: nothing sent to an unverified proxy"
        );
    }
}

/// A loopback TCP port whose connects hang: a listener with a backlog of 0 that never
/// accepts, its queue filled, so the kernel drops further SYNs. Held while the values live.
fn black_hole_tcp() -> (socket2::Socket, Vec<std::net::TcpStream>, u16) {
    use socket2::{Domain, Socket, Type};
    let l = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    l.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .expect("bind");
    l.listen(0).expect("listen");
    let addr = l.local_addr().expect("addr").as_socket().expect("inet");
    let mut queued = Vec::new();
    for _ in 0..8 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            Ok(c) => queued.push(c),
            Err(_) => return (l, queued, addr.port()),
        }
    }
    panic!("the listen queue never filled");
}

#[test]
fn forward_doh_hostname_host_header_and_idle_expiry() {
    let (tls, pem) = doh_tls(&["localhost", "127.0.0.1", "::1"], false);
    for be in backends() {
        let up = DohServer::start(DohMode::Dns(Mode::Answer), 6, Arc::clone(&tls), true);
        let dir = TempDir::new("doh");
        let ca = ca_file(&dir, &pem);
        let s = TestServer::start(
            &format!(
                ".:{{port}} {{\n forward . https://localhost:{} {{\n  tls {ca}\n  expire 500ms\n }}\n}}\n",
                up.port
            ),
            be,
        );
        // One client socket, so one worker and its connection.
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        sock.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let ask = |id: u16, name: &str| {
            sock.send_to(&query(id, name, 1, 1, None), s.addr())
                .expect("send");
            let mut buf = [0u8; 512];
            let n = sock.recv(&mut buf).expect("reply");
            buf[..n].to_vec()
        };
        let r = ask(1, "h.example.org");
        assert_eq!(&r[r.len() - 4..], &[192, 0, 2, 6], "{be}");
        let seen = up.queries();
        assert!(!seen.is_empty(), "{be}");
        assert!(
            seen.iter()
                .all(|x| x.host == format!("localhost:{}", up.port)),
            "{be}: the Host is the name written in TO: {seen:?}"
        );
        // Idle longer than `expire`: closed by its driver, no query needed
        // (io_uring workers run their tasks between batches too).
        wait_for(Duration::from_secs(3), || up.open() == 0);
        assert_eq!(up.open(), 0, "{be}: idle connection closed");
        let before = up.accepted();
        let r = ask(2, "i.example.org");
        assert_eq!(&r[r.len() - 4..], &[192, 0, 2, 6], "{be}");
        assert_eq!(up.accepted(), before + 1, "{be}: not reused after expire");
        wait_for(Duration::from_secs(3), || up.open() <= 1);
        assert_eq!(up.open(), 1, "{be}: only the new connection is open");
    }
}

#[test]
fn forward_doh_burst_shares_one_connection() {
    let (tls, pem) = doh_tls(&["127.0.0.1"], false);
    for be in backends() {
        let up = DohServer::start(DohMode::Dns(Mode::Answer), 4, Arc::clone(&tls), false);
        let dir = TempDir::new("doh");
        let ca = ca_file(&dir, &pem);
        let s = TestServer::start(
            &format!(
                ".:{{port}} {{\n forward . https://127.0.0.1:{} {{\n  tls {ca}\n }}\n}}\n",
                up.port
            ),
            be,
        );
        // 40 queries at once from one socket (one worker) before any
        // connection exists: one dial, the rest wait for it and multiplex.
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        sock.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        for i in 0..40u16 {
            sock.send_to(
                &query(i, &format!("b{i}.example.org"), 1, 1, None),
                s.addr(),
            )
            .expect("send");
        }
        let mut ids = Vec::new();
        let mut buf = [0u8; 512];
        for _ in 0..40 {
            let n = sock.recv(&mut buf).expect("reply");
            assert_eq!(&buf[n - 4..n], &[192, 0, 2, 4], "{be}");
            ids.push(u16::from_be_bytes([buf[0], buf[1]]));
        }
        ids.sort_unstable();
        assert_eq!(ids, (0..40).collect::<Vec<u16>>(), "{be}");
        assert_eq!(up.accepted(), 1, "{be}: one connection for the burst");
        assert_eq!(up.queries().len(), 40, "{be}");
    }
}

#[test]
fn forward_doh_more_http2_connections_when_streams_run_out() {
    // A server allowing 4 streams at once, answering after 800 ms. As Go's
    // transport: a connection takes up to 100 streams until the server's SETTINGS
    // are read, then no more than the server's limit; a query finding every
    // connection full has another dialed (once, while others wait for it).
    let (tls, pem) = doh_tls(&["127.0.0.1"], false);
    for be in backends() {
        let up = DohServer::start(
            DohMode::Delay(Duration::from_millis(800)),
            6,
            Arc::clone(&tls),
            false,
        );
        up.set_max_streams(4);
        let dir = TempDir::new("doh");
        let ca = ca_file(&dir, &pem);
        let (conf, mport) = with_metrics(&format!(
            ".:{{port}} {{\n forward . https://127.0.0.1:{} {{\n  tls {ca}\n }}\n}}\n",
            up.port
        ));
        let s = TestServer::start(&conf, be);
        // One socket: one worker, one pool.
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        sock.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let burst = |first: u16, n: u16| {
            for i in first..first + n {
                sock.send_to(
                    &query(i, &format!("m{i}.example.org"), 1, 1, None),
                    s.addr(),
                )
                .expect("send");
            }
            let mut buf = [0u8; 512];
            let mut ids = Vec::new();
            for _ in 0..n {
                let len = sock.recv(&mut buf).expect("reply");
                assert_eq!(&buf[len - 4..len], &[192, 0, 2, 6], "{be}");
                ids.push(u16::from_be_bytes([buf[0], buf[1]]));
            }
            ids.sort_unstable();
            assert_eq!(ids, (first..first + n).collect::<Vec<u16>>(), "{be}");
        };
        burst(0, 1);
        assert_eq!(up.accepted(), 1, "{be}");
        // The first connection's SETTINGS are in: 4 streams there, the fifth
        // query dials, and the rest share the new connection while its SETTINGS
        // are not read yet, or fill it and dial again: at most 4 for 12.
        burst(100, 12);
        let n = up.accepted();
        assert!((2..=4).contains(&n), "{be}: {n} connections for 12 queries");
        // Every connection now known to take 4: 12 at once need 3, and none
        // carries more than 4 of them.
        burst(200, 12);
        let m = up.accepted();
        assert!(m == n.max(3), "{be}: {m} connections after {n}");
        let mut per_conn = std::collections::BTreeMap::new();
        for q in up
            .queries()
            .iter()
            .filter(|q| q.dns().question().0.starts_with("m2"))
        {
            *per_conn.entry(q.conn).or_insert(0) += 1;
        }
        assert_eq!(per_conn.values().sum::<i32>(), 12, "{be}: {per_conn:?}");
        assert!(per_conn.values().all(|&k| k <= 4), "{be}: {per_conn:?}");
        assert_eq!(up.queries().len(), 25, "{be}");
        assert_nothing_in_flight(mport, be);
    }
}

#[test]
fn parked_queries_finish_across_a_reload_that_removes_their_listener() {
    for be in backends() {
        let slow = Fake::start(Mode::Delay(Duration::from_millis(1500)), 5);
        let s = TestServer::start(
            &format!(".:{{port}} {{\n forward . {}\n}}\n", slow.addr()),
            be,
        );
        // A query waits 1.5 s for its upstream...
        let port = s.port.to_string();
        let dig = std::thread::spawn(move || {
            let out = Command::new("dig")
                .args([
                    "@127.0.0.1",
                    "-p",
                    &port,
                    "+time=5",
                    "+tries=1",
                    "x.example",
                    "A",
                ])
                .output()
                .expect("dig");
            String::from_utf8_lossy(&out.stdout).into_owned()
        });
        std::thread::sleep(Duration::from_millis(400));
        assert_eq!(slow.queries().len(), 1, "{be}: the query is parked");
        // ...while a reload replaces its server block by one on another port.
        let conf = s.dir.0.join("Corefile");
        std::fs::write(&conf, format!(".:{} {{\n whoami\n}}\n", free_port())).expect("write");
        s.signal(nix::sys::signal::Signal::SIGUSR1);
        s.wait_line(|l| l == "[INFO] Reloading complete")
            .expect("reload");
        // A datagram to the removed listener (it stops answering at once; on epoll this
        // ends the socket's loop, which then drains its parked queries).
        let late = s.dig(&["+time=1", "late.example", "A"]);
        assert!(!late.contains("ANSWER SECTION"), "{be}: {late}");
        let out = dig.join().expect("dig thread");
        assert_eq!(
            answers(&out),
            ["x.example. 60 IN A 192.0.2.5"],
            "{be}: the parked query is still answered: {out}"
        );
    }
}

/// One DNS message over a new TCP connection to 127.0.0.1:`port`: the reply.
fn tcp_exchange(port: u16, msg: &[u8]) -> Option<Vec<u8>> {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut framed = (msg.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(msg);
    c.write_all(&framed).ok()?;
    let mut len = [0u8; 2];
    c.read_exact(&mut len).ok()?;
    let mut r = vec![0u8; usize::from(u16::from_be_bytes(len))];
    c.read_exact(&mut r).ok()?;
    Some(r)
}

#[test]
fn rewrite_edns0_local_reaches_the_upstream() {
    for be in backends() {
        let f = Fake::start(Mode::Answer, 4);
        let s = TestServer::start(
            &format!(
                ".:{{port}} {{\n rewrite continue edns0 local set 0xffee {{client_ip}}\n \
                 rewrite edns0 subnet set 24 56\n forward . {}\n}}\n",
                f.addr()
            ),
            be,
        );
        let out = s.dig(&["+noedns", "x.example", "A"]);
        assert_eq!(
            answers(&out),
            ["x.example. 60 IN A 192.0.2.4"],
            "{be}: {out}"
        );
        let q = f.queries();
        let m = &q.last().expect("a query").msg;
        // The query arrived with an OPT (UDP 4096) holding the client's address
        // in option 0xffee and an ECS option for 127.0.0.0/24.
        let tail: Vec<u8> = [
            &[0u8, 0, 41, 16, 0, 0, 0, 0, 0, 0, 19][..],
            &[0xff, 0xee, 0, 4, 127, 0, 0, 1][..],
            &[0, 8, 0, 7, 0, 1, 24, 0, 127, 0, 0][..],
        ]
        .concat();
        assert!(m.ends_with(&tail), "{be}: {m:02x?}");
        assert_eq!(u16::from_be_bytes([m[10], m[11]]), 1, "{be}: ARCOUNT");
    }
}

#[test]
fn rewrite_edns0_revert_echoes_the_clients_options() {
    for be in backends() {
        // The fake upstream answers without an OPT: the server echoes the query's
        // options, which CoreDNS reverts first.
        let f = Fake::start(Mode::Answer, 4);
        let s = TestServer::start(
            &format!(
                ".:{{port}} {{\n rewrite edns0 local set 0xffee 0xabcdef revert\n forward . {}\n}}\n",
                f.addr()
            ),
            be,
        );
        let out = s.dig(&["+ednsopt=65518:111111", "x.example", "A"]);
        assert_eq!(
            answers(&out),
            ["x.example. 60 IN A 192.0.2.4"],
            "{be}: {out}"
        );
        let m = &f.queries().last().expect("a query").msg.clone();
        assert!(
            m.ends_with(&[0xff, 0xee, 0, 3, 0xab, 0xcd, 0xef]),
            "{be}: {m:02x?}"
        );
        assert!(out.contains("; OPT=65518: 11 11 11"), "{be}: {out}");
        let out = s.dig(&["x.example", "A"]);
        assert!(!out.contains("OPT=65518"), "{be}: {out}");
        assert!(out.contains("udp: 1232"), "{be}: {out}");
    }
}

/// *grpc*: queries go to a gRPC upstream (here ringdns's own `grpc://`
/// listener in front of *file*) over HTTP/2, on both engines and both client
/// transports; `except` names and other zones go to the next plugin; an
/// NXDOMAIN reply with `fallthrough` too; a dead upstream gives SERVFAIL with
/// grpc-go's error text; the three metric families count per upstream.
#[test]
fn grpc_plugin_forwards_over_grpc() {
    let dir = TempDir::new("grpc-plugin");
    let db = dir.write(
        "db.example.org",
        "$ORIGIN example.org.\n@ 3600 IN SOA ns1 admin 1 7200 3600 1209600 300\n@ 3600 IN NS ns1\n\
         ns1 3600 IN A 192.0.2.53\nwww 300 IN A 192.0.2.80\n",
    );
    for be in backends() {
        let up = TestServer::start(
            &format!(
                "grpc://example.org:{{port}} {{\n file {}\n}}\n",
                db.display()
            ),
            be,
        );
        let dead = free_port();
        let mport = free_port();
        let s = TestServer::start(
            &format!(
                ".:{{port}} {{\n errors\n prometheus 127.0.0.1:{mport}\n grpc example.org 127.0.0.1:{up} {{\n  except skip.example.org\n }}\n whoami\n}}\n\
                 nx.example.org:{{port}} {{\n grpc . 127.0.0.1:{up} {{\n  fallthrough\n }}\n whoami\n}}\n\
                 last.example.org:{{port}} {{\n grpc . 127.0.0.1:{up} {{\n  fallthrough\n }}\n}}\n\
                 dead.test:{{port}} {{\n errors\n grpc . 127.0.0.1:{dead}\n}}\n",
                up = up.port
            ),
            be,
        );
        for tcp in ["+notcp", "+tcp"] {
            let out = s.dig(&[tcp, "www.example.org", "A"]);
            assert_eq!(
                section(&out, "ANSWER"),
                vec!["www.example.org. 300 IN A 192.0.2.80"],
                "{be} {tcp}: {out}"
            );
            assert_eq!(dig_flags(&out), "qr aa rd", "{be} {tcp}: {out}");
        }
        let out = s.dig(&["nope.example.org", "A"]);
        assert_eq!(dig_status(&out), "NXDOMAIN", "{be}: {out}");
        assert_eq!(
            section(&out, "AUTHORITY"),
            vec![
                "example.org. 3600 IN SOA ns1.example.org. admin.example.org. 1 7200 3600 1209600 300"
            ],
            "{be}: {out}"
        );
        // except, and a name outside FROM: whoami answers (no answer section, two additional records).
        for q in ["skip.example.org", "example.net"] {
            let out = s.dig(&[q, "A"]);
            assert_eq!(dig_status(&out), "NOERROR", "{be} {q}: {out}");
            assert_eq!(section(&out, "ADDITIONAL").len(), 2, "{be} {q}: {out}");
        }
        // fallthrough on NXDOMAIN.
        let out = s.dig(&["a.nx.example.org", "A"]);
        assert_eq!(dig_status(&out), "NOERROR", "{be}: {out}");
        assert_eq!(section(&out, "ADDITIONAL").len(), 2, "{be}: {out}");
        // With no plugin after grpc, fallthrough keeps the NXDOMAIN (CoreDNS's
        // TestGRPCFallthroughNoNext).
        let out = s.dig(&["a.last.example.org", "A"]);
        assert_eq!(dig_status(&out), "NXDOMAIN", "{be}: {out}");
        let out = s.dig(&["x.dead.test", "A"]);
        assert_eq!(dig_status(&out), "SERVFAIL", "{be}: {out}");
        let want = format!(
            "[ERROR] plugin/errors: 2 x.dead.test. A: rpc error: code = Unavailable desc = connection error: desc = \"transport: Error while dialing: dial tcp 127.0.0.1:{dead}: connect: connection refused\""
        );
        assert!(
            wait_for(Duration::from_secs(3), || s.lines().contains(&want)),
            "{be}: {:?}",
            s.lines()
        );
        std::thread::sleep(Duration::from_millis(100));
        let (_, _, body) = http(mport, "GET", "/metrics").expect("scrape");
        let to = format!("127.0.0.1:{}", up.port);
        for line in [
            format!("coredns_grpc_requests_total{{to=\"{to}\"}} 5"),
            format!("coredns_grpc_responses_total{{rcode=\"NOERROR\",to=\"{to}\"}} 2"),
            format!("coredns_grpc_responses_total{{rcode=\"NXDOMAIN\",to=\"{to}\"}} 3"),
            format!("coredns_grpc_request_duration_seconds_count{{to=\"{to}\"}} 5"),
        ] {
            assert!(body.lines().any(|l| l == line), "{be}: {line} in {body}");
        }
    }
}
