#![allow(unreachable_pub)]
//! Integration tests: the `ringdns` binary with real Corefiles and real clients
//! (`dig`, `kdig`), on every available backend.

mod auth;
mod cache;
mod dnstap;
mod etcd;
mod forward;
mod k8s;
#[path = "../mmdb/writer.rs"]
#[allow(dead_code)]
mod mmdb;
mod ops;
mod plugins;
mod proxyproto;
mod tcp;
mod tls;
mod trace;
mod util;

use std::time::Duration;

use nix::sys::signal::Signal;
use util::*;

#[test]
fn whoami_udp_tcp_dig_kdig() {
    for be in backends() {
        let s = TestServer::start(".:{port} {\n whoami\n}\n", be);
        let out = s.dig(&["Example.COM", "AAAA"]);
        assert_eq!(dig_status(&out), "NOERROR", "{be}: {out}");
        assert_eq!(dig_flags(&out), "qr aa rd", "{be}");
        let add = section(&out, "ADDITIONAL");
        assert_eq!(add[0], "Example.COM. 0 IN A 127.0.0.1", "{be}: {out}");
        assert!(
            add[1].starts_with("_udp.Example.COM. 0 IN SRV 0 0 "),
            "{be}: {out}"
        );
        assert!(
            out.contains("udp: 1232"),
            "{be}: OPT echoes the client's size: {out}"
        );
        let out = s.dig(&["+tcp", "example.org", "A"]);
        let add = section(&out, "ADDITIONAL");
        assert!(
            add[1].starts_with("_tcp.example.org. 0 IN SRV 0 0 "),
            "{be}: {out}"
        );
        let out = s.kdig(&["+tcp", "example.net", "TXT"]);
        assert!(out.contains("NOERROR"), "{be}: {out}");
        assert!(out.contains("_tcp.example.net."), "{be}: {out}");
        let out = s.kdig(&["example.net", "TXT"]);
        assert!(out.contains("_udp.example.net."), "{be}: {out}");
    }
}

#[test]
fn default_config_banner_and_log_line() {
    // [INFO] 127.0.0.1:PORT - ID "A IN a.example.org. udp 52 false 1232" NOERROR qr,aa,rd 93 0.000123s
    let re = regex::Regex::new(
        r#"^\[INFO\] 127\.0\.0\.1:\d+ - \d+ "A IN a\.example\.org\. udp \d+ false 1232" NOERROR qr,aa,rd \d+ \d+\.\d+(e-\d+)?s$"#,
    )
    .expect("re");
    for be in backends() {
        let port = free_port();
        let dir = TempDir::new("default");
        let child = std::process::Command::new(bin())
            .args(["-dns.port", &port.to_string()])
            .current_dir(&dir.0)
            .env("RINGDNS_BACKEND", be)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        std::thread::sleep(Duration::from_millis(300));
        let out = std::process::Command::new("dig")
            .args([
                "@127.0.0.1",
                "-p",
                &port.to_string(),
                "+time=2",
                "+tries=1",
                "a.example.org",
                "A",
            ])
            .output()
            .expect("dig");
        assert!(String::from_utf8_lossy(&out.stdout).contains("NOERROR"));
        std::thread::sleep(Duration::from_millis(100));
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            Signal::SIGTERM,
        );
        let output = child.wait_with_output().expect("wait");
        assert_eq!(output.status.code(), Some(0));
        let text = String::from_utf8_lossy(&output.stdout);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "maxprocs: Leaving GOMAXPROCS=2: CPU quota undefined".replace(
                '2',
                &std::thread::available_parallelism()
                    .map_or(1, |n| n.get())
                    .to_string()
            )
        );
        assert!(lines.contains(&format!(".:{port}").as_str()), "{text}");
        assert!(lines.contains(&"CoreDNS-1.14.7"), "{text}");
        let log = lines
            .iter()
            .find(|l| l.contains("\"A IN a.example.org. udp "))
            .expect("log line");
        assert!(re.is_match(log), "{log}");
        assert_eq!(
            lines.last(),
            Some(&"[INFO] SIGTERM: Shutting down servers then terminating")
        );
    }
}

#[test]
fn log_formats_match_recorded() {
    for be in backends() {
        let s = TestServer::start(
            "example.net:{port} {\n log . {combined}\n whoami\n}\nexample.com:{port} {\n log . \"{type}|{class}|{name}|{proto}|{size}|{>do}|{>bufsize}|{rcode}|{>rflags}|{rsize}|{>id}|{>opcode}|{remote}|{local}|{/unset}|{unknown}\"\n whoami\n}\n",
            be,
        );
        s.dig(&["x.example.net", "A"]);
        let l = s
            .wait_line(|l| l.contains("x.example.net."))
            .expect("combined line");
        assert!(l.ends_with(" \"0\""), "{l}");
        s.dig(&["+tcp", "+noedns", "B.Example.COM", "MX"]);
        let l = s
            .wait_line(|l| l.starts_with("[INFO] MX|"))
            .expect("custom line");
        let f: Vec<&str> = l.trim_start_matches("[INFO] ").split('|').collect();
        assert_eq!(&f[..4], ["MX", "IN", "b.example.com.", "tcp"], "{l}");
        assert_eq!(
            &f[5..10],
            ["false", "65535", "NOERROR", "qr,aa,rd", f[9]],
            "{l}"
        );
        assert_eq!(f[11], "0");
        assert_eq!(f[12], "127.0.0.1");
        assert_eq!(&f[14..], ["-", "{unknown}"], "{l}");
    }
}

#[test]
fn chaos_any_and_class_gate() {
    for be in backends() {
        let s = TestServer::start(
            ".:{port} {\n chaos\n any\n whoami\n}\nexample.org:{port} {\n whoami\n}\n",
            be,
        );
        let out = s.dig(&["CH", "TXT", "VERSION.BIND"]);
        assert_eq!(
            section(&out, "ANSWER"),
            ["VERSION.BIND. 0 CH TXT \"CoreDNS-1.14.7\""],
            "{be}: {out}"
        );
        assert_eq!(dig_flags(&out), "qr rd", "{be}");
        let out = s.dig(&["CH", "TXT", "authors.bind"]);
        assert_eq!(section(&out, "ANSWER").len(), 29, "{be}: {out}");
        let out = s.dig(&["www.example.net", "ANY"]);
        assert_eq!(
            section(&out, "ANSWER"),
            ["www.example.net. 8482 IN HINFO \"ANY obsoleted\" \"See RFC 8482\""],
            "{be}: {out}"
        );
        // Chaos on the listener opens CH for every block on it: whoami answers
        // (with a CH-class A record, which dig cannot parse: check the raw reply).
        let r = s
            .udp_raw(
                &query(5, "www.example.org", 1, 3, None),
                Duration::from_secs(2),
            )
            .expect("reply");
        assert_eq!(r[3] & 0x0f, 0, "{be}");
        assert_eq!(r[2] & 0x04, 0x04, "{be}: AA from whoami");
        // A listener without chaos refuses CH.
        let s2 = TestServer::start("example.org:{port} {\n whoami\n}\n", be);
        let out = s2.dig(&["CH", "TXT", "version.bind"]);
        assert_eq!(dig_status(&out), "REFUSED", "{be}: {out}");
        let out = s2.dig(&["www.example.net", "A"]);
        assert_eq!(dig_status(&out), "REFUSED", "{be}: {out}");
        assert_eq!(dig_flags(&out), "qr rd", "{be}: {out}");
    }
}

#[test]
fn no_next_plugin_is_servfail_with_errors_line() {
    for be in backends() {
        let s = TestServer::start(".:{port} {\n errors\n log\n chaos\n}\n", be);
        let out = s.dig(&["example.org", "A"]);
        assert_eq!(dig_status(&out), "SERVFAIL", "{be}: {out}");
        let l = s
            .wait_line(|l| l.starts_with("[ERROR]"))
            .expect("errors line");
        assert_eq!(
            l,
            "[ERROR] plugin/errors: 2 example.org. A: plugin/chaos: no next plugin found"
        );
        let lines = s.lines();
        let log_at = lines
            .iter()
            .position(|l| l.contains("SERVFAIL qr,rd"))
            .expect("log line first");
        let err_at = lines
            .iter()
            .position(|l| l.starts_with("[ERROR]"))
            .expect("err");
        assert!(log_at < err_at, "log line before the errors line");
    }
}

#[test]
fn malformed_input_gets_formerr_or_is_dropped() {
    for be in backends() {
        let s = TestServer::start(".:{port} {\n whoami\n}\n", be);
        let t = Duration::from_millis(300);
        // Short header: dropped.
        assert!(s.udp_raw(&[1, 2, 3], t).is_none(), "{be}");
        // QR set: ignored.
        let mut q = query(7, "a.org", 1, 1, None);
        q[2] |= 0x80;
        assert!(s.udp_raw(&q, t).is_none(), "{be}");
        // UPDATE opcode: NOTIMP, 12 octets, TC/RD echoed.
        let mut q = query(7, "a.org", 1, 1, None);
        q[2] = (5 << 3) | 0x03;
        let r = s.udp_raw(&q, t).expect("notimp");
        assert_eq!(r.len(), 12, "{be}");
        assert_eq!(r[3] & 0x0f, 4);
        assert_eq!(r[2] & 0x03, 0x03);
        // QDCOUNT 2: FORMERR header only.
        let mut q = query(7, "a.org", 1, 1, None);
        q[5] = 2;
        let r = s.udp_raw(&q, t).expect("formerr");
        assert_eq!((r.len(), r[3] & 0x0f), (12, 1), "{be}");
        // Counts beyond the end of the packet: miekg (v1.1.72) stops at the end and
        // corrects the counts, so the query is answered (whoami: NOERROR, 2 extra).
        let mut q = query(7, "www.example.org", 1, 1, None);
        q[11] = 1;
        let r = s.udp_raw(&q, t).expect("answer");
        assert_eq!((r[3] & 0x0f, r[5], r[11]), (0, 1, 2), "{be}");
        // A record cut short: FORMERR with the question.
        q.extend_from_slice(&[0, 0, 41]);
        let r = s.udp_raw(&q, t).expect("formerr");
        assert_eq!((r.len(), r[3] & 0x0f, r[5]), (33, 1, 1), "{be}");
        // 513 octets over UDP: cut at 512, FORMERR.
        let mut q = query(7, "www.example.org", 1, 1, None);
        q[11] = 1;
        q.extend_from_slice(&[0, 0, 16, 0, 1, 0, 0, 0, 0]);
        let pad = 513 - q.len() - 2;
        q.extend_from_slice(&(pad as u16).to_be_bytes());
        q.extend(std::iter::repeat_n(b'x', pad));
        assert_eq!(q.len(), 513);
        let r = s.udp_raw(&q, t).expect("formerr 513");
        assert_eq!(r[3] & 0x0f, 1, "{be}");
        // Compression loop in the question: FORMERR.
        let mut q = query(7, "a", 1, 1, None);
        q.truncate(12);
        q.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1]);
        let r = s.udp_raw(&q, t).expect("loop");
        assert_eq!(r[3] & 0x0f, 1, "{be}");
        // Random garbage: never a crash.
        let mut seed = 0x9e37_79b9u32;
        for i in 0..2000 {
            let len = 12 + (i % 300);
            let mut b = vec![0u8; len];
            for x in &mut b {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                *x = seed as u8;
            }
            b[2] &= 0x7f;
            let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
            let _ = sock.send_to(&b, s.addr());
        }
        // A padded valid query is still answered (octets after the message ignored).
        let mut q = query(9, "www.example.org", 1, 1, None);
        q.extend(std::iter::repeat_n(0u8, 400));
        let r = (0..10)
            .find_map(|_| s.udp_raw(&q, Duration::from_millis(500)))
            .expect("alive");
        assert_eq!(r[3] & 0x0f, 0, "{be}");
    }
}

#[test]
fn edns_badvers_cookie_and_unknown_options() {
    for be in backends() {
        let s = TestServer::start(".:{port} {\n whoami\n}\n", be);
        let t = Duration::from_secs(2);
        // Version 1 → BADVERS: rcode 0 in the header, extended rcode 1, UDP size 0.
        let mut q = query(3, "a.org", 1, 1, Some((4096, 0, &[])));
        let n = q.len();
        q[n - 5] = 1; // version byte of the OPT TTL
        let r = s.udp_raw(&q, t).expect("badvers");
        let idx = ringdns::wire::MsgIndex::parse(&r).expect("index");
        let opt = idx.rrs.iter().find(|x| x.rtype == 41).expect("opt");
        assert_eq!(r[3] & 0x0f, 0);
        assert_eq!(opt.class, 0, "{be}");
        assert_eq!(opt.ttl >> 24, 1, "{be}");
        // COOKIE echoed alone, unknown option 65001 dropped, Z flag 0x4000 kept, 0x0080 cleared.
        let opts = [
            0u8, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8, 0xfd, 0xe9, 0, 2, 9, 9,
        ];
        let q = query(4, "a.org", 1, 1, Some((4096, 0x4080, &opts)));
        let r = s.udp_raw(&q, t).expect("reply");
        let idx = ringdns::wire::MsgIndex::parse(&r).expect("index");
        let opt = idx.rrs.iter().find(|x| x.rtype == 41).expect("opt");
        assert_eq!(opt.ttl & 0xffff, 0x4000, "{be}");
        assert_eq!(&r[opt.rdata()], &opts[..12], "{be}");
        assert_eq!(opt.class, 4096);
    }
}

/// Setup and reload lines carry the plugin's name as CoreDNS's loggers do; a bad
/// weight file is reported once, not on every reload tick (CoreDNS stores the
/// file's checksum before parsing it).
#[test]
fn loadbalance_and_root_log_lines() {
    let dir = TempDir::new("lbw");
    let w = dir.write("w.txt", "www.example.org\n172.16.0.4 10\n");
    let s = TestServer::start(
        &format!(
            ".:{{port}} {{\n root /nonexistent-ringdns-root\n loadbalance weighted {} {{\n  reload 1s\n }}\n whoami\n}}\nexample.net:{{port}} {{\n loadbalance weighted {}/missing.txt {{\n  reload 1s\n }}\n whoami\n}}\n",
            w.display(),
            dir.0.display()
        ),
        "epoll",
    );
    // A bad file at startup fails the setup; one that goes bad later is logged.
    write_atomic(&w, "www.example.org\n172.16.0.4 0\n").expect("write");
    let bad = format!(
        "[ERROR] plugin/loadbalance: wrong weight value:\"0\" in weight file {}",
        w.display()
    );
    assert!(
        s.wait_line_for(Duration::from_secs(5), |l| l == bad)
            .is_some(),
        "{:?}",
        s.lines()
    );
    std::thread::sleep(Duration::from_millis(2500));
    let lines = s.lines();
    assert_eq!(lines.iter().filter(|l| **l == bad).count(), 1, "{lines:?}");
    for want in [
        "[WARNING] plugin/root: Root path does not exist: /nonexistent-ringdns-root",
        "[WARNING] plugin/loadbalance: Failed to open weight file:weight file open error. Will try again in 1s",
        "[ERROR] plugin/loadbalance: weight file open error",
    ] {
        assert!(lines.iter().any(|l| l == want), "no {want}: {lines:?}");
    }
}

/// erratic's AXFR (CoreDNS `xfr`): a small zone at the query name in one message;
/// with `truncate`, the closing SOA is left out so the transfer is incomplete.
#[test]
fn erratic_axfr() {
    for be in backends() {
        let s = TestServer::start(
            "example.org:{port} {\n erratic {\n  drop 0\n }\n}\nexample.net:{port} {\n erratic {\n  truncate 1\n }\n}\n",
            be,
        );
        let out = s.dig(&["+nocmd", "+nostats", "Example.org", "AXFR"]);
        let want = [
            "Example.org. 0 IN SOA sns.dns.icann.org. noc.dns.icann.org. 2018050825 7200 3600 1209600 3600",
            "Example.org. 0 IN NS b.Example.org.",
            "Example.org. 0 IN NS a.Example.org.",
            "a.Example.org. 0 IN AAAA 2001:bd8::53",
            "b.Example.org. 0 IN AAAA 2001:500::54",
            "Example.org. 0 IN SOA sns.dns.icann.org. noc.dns.icann.org. 2018050825 7200 3600 1209600 3600",
        ];
        let got: Vec<String> = out
            .lines()
            .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        assert_eq!(got, want, "{be}: {out}");
        // The first query (number 0) is truncated: five records, no closing SOA.
        let out = s.kdig(&["example.net", "AXFR"]);
        assert!(!out.contains("6 records"), "{be}: {out}");
        assert!(out.contains("2001:500::54"), "{be}: {out}");
    }
}

#[test]
fn truncation_and_parking_with_erratic() {
    for be in backends() {
        let s = TestServer::start(
            "large.example:{port} {\n erratic {\n  large\n  drop 0\n }\n}\nslow.example:{port} {\n erratic {\n  delay 1 300ms\n }\n}\n",
            be,
        );
        // 30 A records fit 512 octets once compressed (miekg Truncate compresses
        // first): no TC for a short name.
        let out = s.dig(&["+noedns", "+ignore", "large.example", "A"]);
        assert_eq!(dig_flags(&out), "qr aa rd", "{be}: {out}");
        assert_eq!(section(&out, "ANSWER").len(), 30, "{be}: {out}");
        // A longer name: 12 + 37 + 28 x 16 octets fit, the rest is cut, TC set.
        let out = s.dig(&[
            "+noedns",
            "+ignore",
            "a-much-longer-name.large.example",
            "A",
        ]);
        assert!(dig_flags(&out).contains("tc"), "{be}: {out}");
        assert_eq!(section(&out, "ANSWER").len(), 28, "{be}: {out}");
        let out = s.dig(&["+bufsize=4096", "large.example", "A"]);
        assert_eq!(section(&out, "ANSWER").len(), 30, "{be}: {out}");
        // Parking: a delayed answer doesn't block another query on the same worker.
        let port = s.port;
        let slow = std::thread::spawn(move || {
            let t0 = std::time::Instant::now();
            let out = std::process::Command::new("dig")
                .args([
                    "@127.0.0.1",
                    "-p",
                    &port.to_string(),
                    "+time=3",
                    "+tries=1",
                    "slow.example",
                    "A",
                ])
                .output()
                .expect("dig");
            (
                t0.elapsed(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
            )
        });
        std::thread::sleep(Duration::from_millis(50));
        let t0 = std::time::Instant::now();
        let out = s.dig(&["large.example", "AAAA"]);
        assert!(
            t0.elapsed() < Duration::from_millis(250),
            "{be}: not blocked by the parked query"
        );
        assert_eq!(dig_status(&out), "NOERROR");
        let (took, out) = slow.join().expect("join");
        assert!(took >= Duration::from_millis(290), "{be}: delayed {took:?}");
        assert_eq!(
            section(&out, "ANSWER"),
            ["slow.example. 0 IN A 192.0.2.53"],
            "{be}: {out}"
        );
    }
}

#[test]
fn routing_longest_match_and_ds() {
    for be in backends() {
        let s = TestServer::start(
            "example.org:{port} {\n chaos one\n}\nsub.example.org:{port} {\n chaos two\n}\n.:{port} {\n chaos root\n}\nempty.example.org:{port} {\n}\n",
            be,
        );
        // The chaos versions tell which block answered: qname version.bind won't match,
        // so use whoami-less SERVFAIL vs REFUSED... instead query CH TXT version.bind
        // routed by the root block.
        let out = s.dig(&["CH", "TXT", "version.bind"]);
        assert_eq!(
            section(&out, "ANSWER"),
            ["version.bind. 0 CH TXT \"root\""],
            "{be}: {out}"
        );
        let out = s.dig(&["empty.example.org", "DS"]);
        assert_eq!(dig_status(&out), "REFUSED", "{be}: {out}");
        let out = s.dig(&["www.empty.example.org", "A"]);
        assert_eq!(dig_status(&out), "REFUSED", "{be}: {out}");
        // Reached a block with chaos but not CH TXT: SERVFAIL (no next plugin).
        let out = s.dig(&["www.sub.example.org", "A"]);
        assert_eq!(dig_status(&out), "SERVFAIL", "{be}: {out}");
    }
}

#[test]
fn minimal_header_local_nsid_bufsize() {
    for be in backends() {
        let s = TestServer::start(
            ".:{port} {\n nsid ringdns-test\n bufsize 1232\n header {\n  response set ra\n }\n local\n minimal\n whoami\n}\n",
            be,
        );
        let out = s.dig(&["localhost", "A"]);
        assert_eq!(
            section(&out, "ANSWER"),
            ["localhost. 604800 IN A 127.0.0.1"],
            "{be}: {out}"
        );
        // local (26) answers before header (36) runs: no RA, as in CoreDNS.
        assert_eq!(dig_flags(&out), "qr rd", "{be}: {out}");
        let out = s.dig(&["www.example.org", "A"]);
        assert_eq!(dig_flags(&out), "qr aa rd ra", "{be}: {out}");
        // minimal (39) strips whoami's additional records.
        assert!(section(&out, "ADDITIONAL").is_empty(), "{be}: {out}");
        let out = s.dig(&["foo.localhost", "AAAA"]);
        assert_eq!(
            section(&out, "ANSWER"),
            ["foo.localhost. 604800 IN AAAA ::1"],
            "{be}: {out}"
        );
        let out = s.dig(&["nope.127.in-addr.arpa", "PTR"]);
        assert_eq!(dig_status(&out), "NXDOMAIN", "{be}: {out}");
        let out = s.dig(&["1.0.0.127.in-addr.arpa", "PTR"]);
        assert_eq!(
            section(&out, "ANSWER"),
            ["1.0.0.127.in-addr.arpa. 604800 IN PTR localhost."],
            "{be}: {out}"
        );
        let out = s.dig(&["+nsid", "+bufsize=4096", "example.org", "A"]);
        assert!(
            out.contains("NSID: 72 69 6e 67 64 6e 73 2d 74 65 73 74"),
            "{be}: {out}"
        );
        assert!(
            out.contains("udp: 1232"),
            "bufsize lowers the echoed size: {be}: {out}"
        );
    }
}

#[test]
fn cli_texts_and_exit_codes() {
    let run = |args: &[&str]| {
        let o = std::process::Command::new(bin())
            .args(args)
            .output()
            .expect("run");
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, out, err) = run(&["-version"]);
    assert_eq!(code, Some(0));
    assert!(out.starts_with("CoreDNS-1.14.7\nlinux/"), "{out}");
    assert!(err.is_empty());
    let (code, out, _) = run(&["-plugins"]);
    assert_eq!(code, Some(0));
    assert!(out.ends_with("whoami\n\n"), "{out}");
    let (code, _, err) = run(&["-bogus"]);
    assert_eq!(code, Some(2));
    assert!(
        err.starts_with("flag provided but not defined: -bogus\nUsage of "),
        "{err}"
    );
    let (code, _, err) = run(&["-h"]);
    assert_eq!(code, Some(0));
    assert!(err.contains("  -dns.port string\n    \tDefault port (default \"53\")\n"));
    let (code, _, err) = run(&["foo"]);
    assert_eq!(code, Some(1));
    let re = regex::Regex::new(
        r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d extra command line arguments: \[foo\]\n$",
    )
    .expect("re");
    assert!(re.is_match(&err), "{err}");
    let (code, out, err) = run(&["-conf", "/nonexistent/Corefile"]);
    assert_eq!(code, Some(1));
    assert_eq!(
        err,
        "loading Caddyfile via flag: open /nonexistent/Corefile: no such file or directory\n"
    );
    assert!(out.starts_with("maxprocs: "), "{out}");
    let dir = TempDir::new("cli");
    let c = dir.write("unknown.Corefile", ".:1053 {\n whoami\n bogus\n}\n");
    let (code, _, err) = run(&["-conf", &c.to_string_lossy()]);
    assert_eq!(code, Some(1));
    assert_eq!(
        err,
        format!(
            "{}:3 - Error during parsing: Unknown directive 'bogus'\n",
            c.display()
        )
    );
    let c = dir.write("ok.Corefile", ".:1053 {\n whoami\n}\n");
    let (code, out, _) = run(&["-conf", &c.to_string_lossy(), "-validate"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("Configuration OK"));
}

#[test]
fn signals_pidfile_and_reload() {
    for be in backends() {
        let dir = TempDir::new("sig");
        let pidfile = dir.0.join("ringdns.pid");
        let pf = pidfile.to_string_lossy().into_owned();
        let mut s = TestServer::start_args(".:{port} {\n chaos one\n}\n", be, &["-pidfile", &pf]);
        let pid = std::fs::read_to_string(&pidfile).expect("pidfile");
        assert_eq!(pid, format!("{}\n", s.child.id()));
        // SIGHUP is ignored.
        s.signal(Signal::SIGHUP);
        // Reload with a changed Corefile.
        let conf = s.dir.0.join("Corefile");
        std::fs::write(&conf, format!(".:{} {{\n chaos two\n}}\n", s.port)).expect("write");
        s.signal(Signal::SIGUSR1);
        s.wait_line(|l| l == "[INFO] Reloading complete")
            .expect("reloaded");
        let out = s.dig(&["CH", "TXT", "version.bind"]);
        assert_eq!(
            section(&out, "ANSWER"),
            ["version.bind. 0 CH TXT \"two\""],
            "{be}: {out}"
        );
        // A broken Corefile: the error is logged and the old config keeps serving.
        std::fs::write(
            &conf,
            format!(".:{} {{\n chaos three\n bogus\n}}\n", s.port),
        )
        .expect("write");
        s.signal(Signal::SIGUSR1);
        let l = s
            .wait_line(|l| l.starts_with("[ERROR] Restart failed:"))
            .expect("failed");
        assert!(
            l.ends_with("Corefile:3 - Error during parsing: Unknown directive 'bogus'"),
            "{l}"
        );
        let out = s.dig(&["CH", "TXT", "version.bind"]);
        assert_eq!(
            section(&out, "ANSWER"),
            ["version.bind. 0 CH TXT \"two\""],
            "{be}: {out}"
        );
        // A reload that adds a listener.
        let port2 = free_port();
        std::fs::write(
            &conf,
            format!(
                ".:{} {{\n chaos two\n}}\n.:{port2} {{\n chaos three\n}}\n",
                s.port
            ),
        )
        .expect("write");
        s.signal(Signal::SIGUSR1);
        let n = s
            .lines()
            .iter()
            .filter(|l| *l == "[INFO] Reloading complete")
            .count();
        assert!(
            s.wait_line(|_| s
                .lines()
                .iter()
                .filter(|l| *l == "[INFO] Reloading complete")
                .count()
                > n)
                .is_some()
                || n >= 2
        );
        std::thread::sleep(Duration::from_millis(200));
        let out = std::process::Command::new("dig")
            .args([
                "@127.0.0.1",
                "-p",
                &port2.to_string(),
                "+time=2",
                "+tries=1",
                "CH",
                "TXT",
                "version.bind",
            ])
            .output()
            .expect("dig");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("\"three\""),
            "{be}"
        );
        s.signal(Signal::SIGTERM);
        assert_eq!(s.wait_exit(Duration::from_secs(8)), Some(0));
        assert!(!pidfile.exists(), "pidfile removed");
        let lines = s.lines();
        assert!(lines.contains(&"[INFO] SIGUSR1: Reloading".to_owned()));
    }
}

#[test]
fn sigquit_and_double_sigint() {
    for be in backends() {
        let mut s = TestServer::start(".:{port} {\n whoami\n}\n", be);
        s.signal(Signal::SIGQUIT);
        assert_eq!(s.wait_exit(Duration::from_secs(5)), Some(0));
        assert!(
            s.lines()
                .contains(&"[INFO] SIGQUIT: Quitting process immediately".to_owned())
        );
        let mut s = TestServer::start(".:{port} {\n whoami\n}\n", be);
        s.signal(Signal::SIGINT);
        assert_eq!(s.wait_exit(Duration::from_secs(5)), Some(0));
        assert!(
            s.lines()
                .contains(&"[INFO] SIGINT: Shutting down".to_owned())
        );
        // SIGINT runs the shutdown callbacks too: health's lameduck, DNS answering
        // meanwhile; a second SIGINT then forces the exit (status 2).
        let hport = free_port();
        let mut s = TestServer::start(
            &format!(
                ".:{{port}} {{\n health 127.0.0.1:{hport} {{\n  lameduck 3s\n }}\n whoami\n}}\n"
            ),
            be,
        );
        s.signal(Signal::SIGINT);
        s.wait_line(|l| l == "[INFO] plugin/health: Going into lameduck mode for 3s")
            .expect("lameduck on SIGINT");
        assert_eq!(dig_status(&s.dig(&["x.example", "A"])), "NOERROR", "{be}");
        s.signal(Signal::SIGINT);
        assert_eq!(s.wait_exit(Duration::from_secs(5)), Some(2), "{be}");
        assert!(
            s.lines().contains(&"[INFO] SIGINT: Force quit".to_owned()),
            "{be}: {:?}",
            s.lines()
        );
        // Without a second signal the lameduck runs out and the exit status is 0.
        let mut s = TestServer::start(
            &format!(
                ".:{{port}} {{\n health 127.0.0.1:{} {{\n  lameduck 1s\n }}\n whoami\n}}\n",
                free_port()
            ),
            be,
        );
        let t0 = std::time::Instant::now();
        s.signal(Signal::SIGINT);
        assert_eq!(s.wait_exit(Duration::from_secs(5)), Some(0), "{be}");
        assert!(
            t0.elapsed() >= Duration::from_millis(900),
            "{be}: {:?}",
            t0.elapsed()
        );
    }
}

/// *errors* writes a pending `consolidate` summary when its instance shuts down: on
/// SIGTERM, and for the old instance on a reload (CoreDNS's OnShutdown callback).
#[test]
fn errors_consolidate_summary_flushed_on_shutdown_and_reload() {
    for be in backends() {
        let dead = free_port();
        let mut s = TestServer::start(
            &format!(
                ".:{{port}} {{\n errors {{\n  consolidate 30s \".* connection refused$\"\n }}\n forward . 127.0.0.1:{dead}\n}}\n"
            ),
            be,
        );
        let want =
            "[ERROR] plugin/errors: 2 errors like '.* connection refused$' occurred in last 30s";
        for n in ["a.example", "b.example"] {
            assert_eq!(dig_status(&s.dig(&[n, "A"])), "SERVFAIL", "{be}");
        }
        // A reload ends the old instance: its summary is written then.
        s.signal(Signal::SIGUSR1);
        s.wait_line(|l| l == "[INFO] Reloading complete")
            .expect("reload");
        assert!(
            s.wait_line(|l| l == want).is_some(),
            "{be}: {:?}",
            s.lines()
        );
        for n in ["c.example", "d.example"] {
            assert_eq!(dig_status(&s.dig(&[n, "A"])), "SERVFAIL", "{be}");
        }
        s.signal(Signal::SIGTERM);
        assert_eq!(s.wait_exit(Duration::from_secs(8)), Some(0), "{be}");
        let n = s.lines().iter().filter(|l| *l == want).count();
        assert_eq!(n, 2, "{be}: {:?}", s.lines());
    }
}

/// The banner's RFC 1035 warning quotes the zone as Go's %q does; a name merely
/// ending in "in-addr.arpa." is not a reverse zone.
#[test]
fn banner_warnings_quote_as_go() {
    let s = TestServer::start(
        "a\u{7f}b.org:{port} a\u{ad}b.org:{port} 9in-addr.arpa:{port} 0.10.in-addr.arpa:{port} {\n whoami\n}\n",
        "epoll",
    );
    let lines = s.lines();
    for want in [
        "Warning: Domain \"a\\x7fb.org.\" does not follow RFC1035 preferred syntax",
        "Warning: Domain \"a\\u00adb.org.\" does not follow RFC1035 preferred syntax",
        "Warning: Domain \"9in-addr.arpa.\" does not follow RFC1035 preferred syntax",
    ] {
        assert!(lines.iter().any(|l| l == want), "no {want}: {lines:?}");
    }
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("Domain \"0.10.in-addr.arpa.\"")),
        "{lines:?}"
    );
}

#[test]
fn bad_corefiles_fail_fast_with_clear_errors() {
    let dir = TempDir::new("bad");
    let run = |conf: &std::path::Path| {
        let t0 = std::time::Instant::now();
        let o = std::process::Command::new(bin())
            .arg("-conf")
            .arg(conf)
            .arg("-validate")
            .output()
            .expect("run");
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
            t0.elapsed(),
        )
    };
    // 100 MB Corefile.
    let big = dir.0.join("big.Corefile");
    std::fs::File::create(&big)
        .expect("create")
        .set_len(100 << 20)
        .expect("size");
    let (code, err, took) = run(&big);
    assert_eq!(code, Some(1));
    assert_eq!(
        err,
        format!(
            "loading Caddyfile via flag: read {}: file is larger than 16 MiB\n",
            big.display()
        )
    );
    assert!(took < Duration::from_secs(5));
    // A port out of range: Go's ResolveTCPAddr text while grouping listeners.
    let c = dir.write("port.Corefile", ".:99999 {\n whoami\n}\n");
    let o = std::process::Command::new(bin())
        .arg("-conf")
        .arg(&c)
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "address 99999: invalid port\n"
    );
    // `-dns.port` may name a service, looked up as Go's resolver does (here one
    // that does not exist). A Corefile key's port is a number or part of the zone.
    let c = dir.write("service.Corefile", ". {\n whoami\n}\n");
    let o = std::process::Command::new(bin())
        .args(["-dns.port", "nosuchservice", "-conf"])
        .arg(&c)
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "lookup tcp/nosuchservice: unknown port\n"
    );
    // An import cycle.
    dir.write("a.conf", "import b.conf\n");
    dir.write("b.conf", "import a.conf\n");
    let c = dir.write("cycle.Corefile", ".:1053 {\n import a.conf\n}\n");
    let (code, err, took) = run(&c);
    assert_eq!(code, Some(1));
    assert!(
        err.ends_with("Error during parsing: maximum file import depth (10000) exceeded\n"),
        "{err}"
    );
    assert!(took < Duration::from_secs(5));
    // An import of /dev/zero.
    let c = dir.write("zero.Corefile", ".:1053 {\n import /dev/zero\n}\n");
    let (code, err, _) = run(&c);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("Could not read tokens while importing /dev/zero: file is larger than 16 MiB"),
        "{err}"
    );
    // 10,000-deep nesting in a directive block is fine.
    let mut deep = String::from(".:1053 {\n log . {\n");
    deep.push_str(&"x {\n".repeat(10_000));
    deep.push_str(&"}\n".repeat(10_000));
    deep.push_str(" }\n whoami\n}\n");
    let c = dir.write("deep.Corefile", &deep);
    let (code, err, took) = run(&c);
    assert_eq!(
        code,
        Some(1),
        "log rejects the unknown property, after parsing the nesting"
    );
    assert!(err.starts_with("plugin/log: "), "{err}");
    assert!(took < Duration::from_secs(5));
}

#[test]
fn metadata_labels_in_log_lines() {
    for be in backends() {
        let up = TestServer::start(".:{port} {\n whoami\n}\n", be);
        let s = TestServer::start(
            &format!(
                "with.example:{{port}} {{\n metadata\n log . \"M {{/log/type}} {{/log/class}} {{/forward/upstream}} {{/nope}}\"\n forward . 127.0.0.1:{}\n}}\nwithout.example:{{port}} {{\n log . \"W {{/log/type}}\"\n whoami\n}}\n",
                up.port
            ),
            be,
        );
        s.dig(&["a.with.example", "A"]);
        s.dig(&["a.without.example", "A"]);
        let l = s
            .wait_line(|l| l.starts_with("[INFO] M "))
            .expect("metadata line");
        assert_eq!(
            l,
            format!("[INFO] M NOERROR success 127.0.0.1:{} -", up.port),
            "{be}"
        );
        let l = s
            .wait_line(|l| l.starts_with("[INFO] W "))
            .expect("no-metadata line");
        assert_eq!(l, "[INFO] W -", "{be}: without metadata every label is -");
    }
}
