//! Unit tests: setup tables (CoreDNS's `setup_test.go`, `setup_policy_test.go`
//! and `resolve_test.go` cases as data, with our exact texts), policies, wire
//! helpers, metrics text, and the UDP/TCP pool against in-process upstreams.

use std::net::{SocketAddr, UdpSocket};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use corefile::Dispenser;

use super::proxy::{self, Fail, HcOpts, Local, Net, PoolOpts, Upstream};
use super::resolve::{self, ToEntry};
use super::setup::{self, ForwardConfig, Scheme, UpstreamConfig, split_zone};
use super::*;
use crate::chain::{Ctx, Proto};
use crate::config::{BlockSettings, SetupCtx};
use crate::wire::{Verdict, parse_query};

fn parse_with(input: &str, root: Option<&str>) -> Result<Vec<ForwardConfig>, String> {
    let keys = vec!["dns://.:53".to_owned()];
    let mut settings = BlockSettings {
        root: root.map(str::to_owned),
        ..BlockSettings::default()
    };
    let ctx = SetupCtx {
        keys: &keys,
        zones: vec![".".into()],
        settings: &mut settings,
        filename: "Corefile",
    };
    let mut d = Dispenser::from_text("Corefile", input);
    setup::setup(&mut d, &ctx).map_err(|e| e.to_string())
}

fn parse(input: &str) -> Result<Vec<ForwardConfig>, String> {
    parse_with(input, None)
}

/// A stanza in a few words: FROM, upstreams, then every non-default option.
fn describe(f: &ForwardConfig) -> String {
    let mut s = format!("from={}", f.from);
    let to: Vec<String> = f
        .upstreams
        .iter()
        .map(|u| {
            let mut t = match u.scheme {
                Scheme::Dns => u.label.clone(),
                Scheme::Tls => format!("tls:{}", u.label),
                Scheme::Https => format!("https:{}", u.label),
            };
            if let Some(n) = &u.server_name {
                t.push('%');
                t.push_str(n);
            }
            if let Some(h) = &u.host {
                t.push_str(" host=");
                t.push_str(h);
            }
            t
        })
        .collect();
    s.push_str(&format!(" to={}", to.join(",")));
    if !f.ignored.is_empty() {
        s.push_str(&format!(" except={}", f.ignored.join(",")));
    }
    if f.max_fails != 2 {
        s.push_str(&format!(" max_fails={}", f.max_fails));
    }
    if f.policy != Policy::Random {
        s.push_str(&format!(" policy={}", f.policy.as_str()));
    }
    for (on, name) in [
        (f.force_tcp, "force_tcp"),
        (f.prefer_udp, "prefer_udp"),
        (!f.hc_recursion_desired, "no_rec"),
        (f.next_on_nodata, "next_on_nodata"),
        (f.failfast, "failfast"),
    ] {
        if on {
            s.push(' ');
            s.push_str(name);
        }
    }
    if f.hc_domain != "." {
        s.push_str(&format!(" hc_domain={}", f.hc_domain));
    }
    if f.hc_interval != Duration::from_millis(500) {
        s.push_str(&format!(" hc={:?}", f.hc_interval));
    }
    if f.expire != Duration::from_secs(10) {
        s.push_str(&format!(" expire={:?}", f.expire));
    }
    if !f.max_age.is_zero() {
        s.push_str(&format!(" max_age={:?}", f.max_age));
    }
    if f.read_timeout != Duration::from_secs(2) {
        s.push_str(&format!(" read_timeout={:?}", f.read_timeout));
    }
    if f.max_idle_conns != 0 {
        s.push_str(&format!(" max_idle_conns={}", f.max_idle_conns));
    }
    if f.max_concurrent != 0 {
        s.push_str(&format!(" max_concurrent={}", f.max_concurrent));
    }
    if let Some(n) = f.max_connect_attempts {
        s.push_str(&format!(" max_connect_attempts={n}"));
    }
    if !f.next_rcodes.is_empty() {
        s.push_str(&format!(" next={:?}", f.next_rcodes));
    }
    if !f.failover_rcodes.is_empty() {
        s.push_str(&format!(" failover={:?}", f.failover_rcodes));
    }
    if let Some(a) = f.source_address {
        s.push_str(&format!(" source={a}"));
    }
    if let Some(n) = &f.tls_servername {
        s.push_str(&format!(" tls_servername={n}"));
    }
    if f.doh_method != setup::DohMethod::Post {
        s.push_str(" doh_method=GET");
    }
    if f.tls.is_some() {
        s.push_str(" tls");
    }
    s
}

/// Corefile → every stanza described, or the error text.
fn run(input: &str) -> String {
    match parse(input) {
        Ok(v) => v.iter().map(describe).collect::<Vec<_>>().join(" | "),
        Err(e) => format!("ERR {e}"),
    }
}

/// The setup cases (`testdata/setup.txt`): Corefile text → description or error.
const SETUP: &str = include_str!("testdata/setup.txt");

fn setup_cases() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut input: Option<String> = None;
    for line in SETUP.lines() {
        if let Some(i) = line.strip_prefix("== ") {
            input = Some(i.to_owned());
        } else if let Some(want) = line.strip_prefix("-> ") {
            out.push((input.take().expect("input before ->"), want.to_owned()));
        } else if let Some(i) = input.as_mut() {
            i.push('\n');
            i.push_str(line);
        }
    }
    out
}

#[test]
fn setup_table() {
    let mut bad = Vec::new();
    let cases = setup_cases();
    assert!(cases.len() > 100, "{}", cases.len());
    for (input, want) in &cases {
        let got = run(input);
        if got != *want {
            bad.push(format!("{input:?}\n   want {want}\n   got  {got}"));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn setup_defaults() {
    let f = &parse("forward . 127.0.0.1").expect("ok")[0];
    assert_eq!(f.max_fails, 2);
    assert_eq!(f.expire, Duration::from_secs(10));
    assert_eq!(f.read_timeout, Duration::from_secs(2));
    assert_eq!(f.hc_interval, Duration::from_millis(500));
    assert!(f.hc_recursion_desired);
    assert_eq!(f.policy, Policy::Random);
    assert_eq!(f.max_connect_attempts, None);
    assert_eq!(f.to_entries, 1);
    let f = &parse("forward . 127.0.0.1 {\nmax_concurrent 0100\n}").expect("ok")[0];
    assert_eq!(
        f.max_concurrent_text, "0100",
        "the error quotes the value as written"
    );
}

#[test]
fn setup_tls_relative_to_root() {
    let dir = std::env::temp_dir().join(format!("ringdns-fwtls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let ck = rcgen::generate_simple_self_signed(vec!["dns.example".to_owned()]).expect("cert");
    std::fs::write(dir.join("ca.pem"), ck.cert.pem()).expect("write");
    std::fs::write(dir.join("junk.pem"), "nothing here").expect("write");
    let root = dir.to_string_lossy().into_owned();
    let r = parse_with("forward . tls://127.0.0.1 {\ntls ca.pem\n}", Some(&root));
    assert!(r.is_ok(), "{r:?}");
    let e = parse_with("forward . tls://127.0.0.1 {\ntls junk.pem\n}", Some(&root))
        .expect_err("bad CA");
    assert_eq!(e, "plugin/forward: could not read root certs: %!s(<nil>)");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn setup_resolv_conf_files() {
    let dir = std::env::temp_dir().join(format!("ringdns-fwresolv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let p = |n: &str| dir.join(n).to_string_lossy().into_owned();
    std::fs::write(
        p("resolv.conf"),
        "nameserver 10.10.255.252\nnameserver 10.10.255.253",
    )
    .expect("w");
    std::fs::write(
        p("resolv-ipv6.conf"),
        "nameserver 0388:d254:7aec:6892:9f7f:e93b:5806:1b0f%en0",
    )
    .expect("w");
    std::fs::write(
        p("empty.conf"),
        "# nameserver 1.1.1.1\n# nameserver 1.0.0.1",
    )
    .expect("w");
    std::fs::write(p("null.conf"), "").expect("w");
    // A byte that is not UTF-8 (Latin-1 in a comment) does not hide the file's servers.
    std::fs::write(
        p("latin1.conf"),
        b"# r\xe9solveur du bureau\nnameserver 10.0.0.9\n".as_slice(),
    )
    .expect("w");
    assert_eq!(
        run(&format!("forward . {}", p("resolv.conf"))),
        "from=. to=10.10.255.252:53,10.10.255.253:53"
    );
    assert_eq!(
        run(&format!("forward . {}", p("latin1.conf"))),
        "from=. to=10.0.0.9:53"
    );
    // A directory reads as an empty file (Go's scanner stops at the read error).
    std::fs::create_dir_all(p("conf.d")).expect("mkdir");
    assert_eq!(
        run(&format!("forward . {} 127.0.0.1", p("conf.d"))),
        "from=. to=127.0.0.1:53"
    );
    assert_eq!(
        run(&format!("forward . {}", p("null.conf"))),
        "ERR plugin/forward: no valid upstream addresses found"
    );
    assert_eq!(
        run(&format!("forward . {}", p("resolv-ipv6.conf"))),
        "from=. to=[388:d254:7aec:6892:9f7f:e93b:5806:1b0f]:53".replace("[388", "[0388")
    );
    assert_eq!(
        run(&format!("forward . {} 127.0.0.1", p("empty.conf"))),
        "from=. to=127.0.0.1:53"
    );
    // A file counts as one TO entry; an empty one not at all.
    let f = &parse(&format!(
        "forward . {} {} 127.0.0.1",
        p("resolv.conf"),
        p("empty.conf")
    ))
    .expect("ok")[0];
    assert_eq!(f.to_entries, 2);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A one-shot DNS responder answering A/AAAA queries for `name`; its AAAA reply
/// carries an A record (127.0.0.2), which CoreDNS does not take as an address.
fn tiny_resolver(name: &'static str) -> (SocketAddr, std::thread::JoinHandle<()>) {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.set_read_timeout(Some(Duration::from_secs(3))).expect("t");
    let addr = s.local_addr().expect("addr");
    let h = std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        for _ in 0..2 {
            let Ok((n, peer)) = s.recv_from(&mut buf) else {
                return;
            };
            let q = &buf[..n];
            let Verdict::Query(req) = parse_query(q) else {
                return;
            };
            let mut out = Vec::new();
            let mut b = crate::wire::Builder::reply(&mut out, &req);
            let mut qn = String::new();
            req.qname.write_presentation(&mut qn);
            if qn == name && req.qtype == 1 {
                b.rr_wire(req.qname.wire(), 1, 1, 60, &[127, 0, 0, 1]);
            }
            if qn == name && req.qtype == 28 {
                b.rr_wire(req.qname.wire(), 1, 1, 60, &[127, 0, 0, 2]);
            }
            b.finish();
            let _ = s.send_to(&out, peer);
        }
    });
    (addr, h)
}

#[test]
fn setup_hostnames_through_resolver() {
    let (addr, h) = tiny_resolver("dns.example.test.");
    let got = run(&format!(
        "forward . tls://dns.example.test%sni.example:8853 127.0.0.1:8853 {{\nresolver {addr}\n}}"
    ));
    assert_eq!(
        got, "from=. to=tls:127.0.0.1:8853%sni.example tls",
        "dedup keeps the first"
    );
    h.join().expect("join");
    // An https hostname keeps its name for the Host header (with the port
    // unless 443); the TLS name stays the IP, as CoreDNS's.
    let (addr, h) = tiny_resolver("doh.example.test.");
    let cfg = parse(&format!(
        "forward . https://doh.example.test:8443 {{\nresolver {addr}\n}}"
    ))
    .expect("ok");
    h.join().expect("join");
    assert_eq!(
        describe(&cfg[0]),
        "from=. to=https:127.0.0.1:8443 host=doh.example.test tls"
    );
    let fw = Forward::new(&cfg).expect("build");
    let up = &fw.upstreams(0)[0];
    let doh = up.doh.as_ref().expect("doh");
    assert_eq!(doh.authority, "doh.example.test:8443");
    assert_eq!(
        up.tls.as_ref().expect("tls").name,
        rustls::pki_types::ServerName::IpAddress(std::net::IpAddr::from([127, 0, 0, 1]).into())
    );
    // No answer: the lookup error names the resolver exchange.
    let dead = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = dead.local_addr().expect("a").port();
    drop(dead);
    let got = run(&format!(
        "forward . a27.0.0.1 {{\nresolver 127.0.0.1:{port}\n}}"
    ));
    assert!(
        got.starts_with(
            "ERR plugin/forward: failed to resolve \"a27.0.0.1\": no addresses found for \"a27.0.0.1\": read udp 127.0.0.1:"
        ) && got.ends_with(&format!("->127.0.0.1:{port}: read: connection refused")),
        "{got}"
    );
    // A resolver port Go's dial rejects fails that resolver with the dial's text.
    assert_eq!(
        run("forward . a27.0.0.1 {\nresolver 127.0.0.1:abc\n}"),
        "ERR plugin/forward: failed to resolve \"a27.0.0.1\": no addresses found for \"a27.0.0.1\": dial udp: lookup udp/abc: unknown port"
    );
}

/// `resolver` ports as Go's UDP dial reads them (the IP is checked at setup).
#[test]
fn resolver_addr_table() {
    use resolve::resolver_addr as r;
    let ok = |s: &str, want: &str| assert_eq!(r(s), Ok(want.parse().expect("addr")), "{s}");
    ok("127.0.0.1:53", "127.0.0.1:53");
    ok("[::1]:5353", "[::1]:5353");
    ok("127.0.0.1:+53", "127.0.0.1:53");
    ok("127.0.0.1:0053", "127.0.0.1:53");
    // Go's own table knows `domain` even without /etc/services.
    ok("127.0.0.1:DOMAIN", "127.0.0.1:53");
    ok("127.0.0.1:-0", "127.0.0.1:0");
    ok("127.0.0.1:+", "127.0.0.1:0");
    let err = |s: &str, want: &str| assert_eq!(r(s), Err(want.to_string()), "{s}");
    err("127.0.0.1:abc", "dial udp: lookup udp/abc: unknown port");
    err("127.0.0.1:99999", "dial udp: address 99999: invalid port");
    err("127.0.0.1:-1", "dial udp: address -1: invalid port");
    err("127.0.0.1:65536", "dial udp: address 65536: invalid port");
    // Past 2^30 Go stops reading digits: no lookup for what follows.
    err(
        "127.0.0.1:99999999999x",
        "dial udp: address 99999999999x: invalid port",
    );
    err("127.0.0.1:5x", "dial udp: lookup udp/5x: unknown port");
}

/// Service names from an /etc/services text: UDP entries and their aliases, any case;
/// `domain` from Go's own table when the file lacks it.
#[test]
fn resolver_service_ports() {
    use resolve::service_port as p;
    let text = "# comment\nfoo 7000/tcp\nfoo 7001/udp bar # alias\nBaz\t7002/udp\nqux 70000/udp\n";
    assert_eq!(p("foo", Some(text)), Some(7001));
    assert_eq!(p("BAR", Some(text)), Some(7001));
    assert_eq!(p("baz", Some(text)), Some(7002));
    assert_eq!(p("qux", Some(text)), None);
    assert_eq!(p("comment", Some(text)), None);
    assert_eq!(p("domain", Some(text)), Some(53));
    assert_eq!(p("domain", None), Some(53));
    assert_eq!(p("nope", None), None);
}

#[test]
fn split_zone_table() {
    let cases = [
        (
            "tls://127.0.0.1%example.net:854",
            "tls://127.0.0.1:854",
            "example.net",
        ),
        (
            "tls://127.0.0.1%example.net",
            "tls://127.0.0.1",
            "example.net",
        ),
        (
            "https://127.0.0.1%example.net:443",
            "https://127.0.0.1:443",
            "example.net",
        ),
        (
            "https://127.0.0.1%example.net",
            "https://127.0.0.1",
            "example.net",
        ),
        ("tls://127.0.0.1:854", "tls://127.0.0.1:854", ""),
        ("https://127.0.0.1:443", "https://127.0.0.1:443", ""),
        ("dns://127.0.0.1", "dns://127.0.0.1", ""),
        ("foo%bar:baz", "foo:baz", "bar"),
        (
            "tls://[::1%example.net]:853",
            "tls://[::1]:853",
            "example.net",
        ),
        (
            "https://[::1%example.net]:443",
            "https://[::1]:443",
            "example.net",
        ),
    ];
    for (input, host, zone) in cases {
        assert_eq!(
            split_zone(input),
            (host.to_owned(), zone.to_owned()),
            "{input}"
        );
    }
}

#[test]
fn go_split_host_port_table() {
    use resolve::go_split_host_port as s;
    assert_eq!(s("127.0.0.1:53"), Ok(("127.0.0.1", "53")));
    assert_eq!(s("[::1]:53"), Ok(("::1", "53")));
    assert_eq!(s("::1"), Err("too many colons in address"));
    assert_eq!(s("127.0.0.1"), Err("missing port in address"));
    assert_eq!(s("[::1]"), Err("missing port in address"));
    assert_eq!(s("[::1"), Err("missing ']' in address"));
    assert_eq!(s("a]:1"), Err("unexpected ']' in address"));
}

#[test]
fn classify_table() {
    let c = |v: &[&str]| {
        resolve::classify(&v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()).map(|e| {
            let st = e.iter().filter(|x| matches!(x, ToEntry::Static(_))).count();
            (st, e.len() - st)
        })
    };
    assert_eq!(c(&["127.0.0.1"]), Ok((1, 0)));
    assert_eq!(c(&["127.0.0.1:8053"]), Ok((1, 0)));
    assert_eq!(c(&["::1"]), Ok((1, 0)));
    assert_eq!(c(&["tls://127.0.0.1"]), Ok((1, 0)));
    assert_eq!(c(&["dns.example.com"]), Ok((0, 1)));
    assert_eq!(c(&["dns.example.com:5353"]), Ok((0, 1)));
    assert_eq!(c(&["tls://dns.example.com"]), Ok((0, 1)));
    assert_eq!(c(&["https://dns.example.com"]), Ok((0, 1)));
    assert_eq!(c(&["rbldnsd.rbldnsd.svc.cluster.local"]), Ok((0, 1)));
    assert_eq!(c(&["127.0.0.1", "dns.example.com", "10.0.0.1"]), Ok((2, 1)));
    assert_eq!(
        c(&["dns://"]),
        Err("invalid address: \"dns://\"".to_owned())
    );
    let e = resolve::classify(&["tls://dns.example.com%sni:5353".to_owned()]).expect("ok");
    assert_eq!(
        e,
        [ToEntry::Host(resolve::HostEntry {
            hostname: "dns.example.com".into(),
            port: "5353".into(),
            transport: corefile::keys::Transport::Tls,
            zone: "sni".into(),
        })]
    );
}

#[test]
fn policies() {
    let f = |p: &str, n: usize| {
        let to: Vec<String> = (1..=n).map(|i| format!("127.0.0.{i}")).collect();
        let cfg = parse(&format!("forward . {} {{\npolicy {p}\n}}", to.join(" "))).expect("ok");
        Stanza::new(&cfg[0]).expect("stanza")
    };
    let rr = f("round_robin", 3);
    let orders: Vec<Vec<usize>> = (0..4).map(|_| rr.order().to_vec()).collect();
    // CoreDNS: [p[i], p[0..i), p(i..)] for i = 1, 2, 0, 1.
    assert_eq!(
        orders,
        [vec![1, 0, 2], vec![2, 0, 1], vec![0, 1, 2], vec![1, 0, 2]]
    );
    assert_eq!(f("sequential", 3).order().to_vec(), [0, 1, 2]);
    let r2 = f("random", 2);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..200 {
        seen.insert(r2.order().to_vec());
    }
    assert_eq!(seen.len(), 2);
    let r4 = f("random", 4);
    let mut s = r4.order().to_vec();
    s.sort_unstable();
    assert_eq!(s, [0, 1, 2, 3]);
    // Beyond the inline size (a resolv.conf file can list more upstreams than TOs).
    for n in [16, 17, 40] {
        let mut o = Order::identity(n);
        assert_eq!(o.to_vec(), (0..n).collect::<Vec<_>>());
        o.move_to_front(n - 1);
        let want: Vec<usize> = std::iter::once(n - 1).chain(0..n - 1).collect();
        assert_eq!(o.to_vec(), want);
        o.shuffle();
        let mut v = o.to_vec();
        v.sort_unstable();
        assert_eq!(v, (0..n).collect::<Vec<_>>());
    }
}

#[test]
fn matching_from_and_except() {
    let n = |s: &str| Name::parse(s).expect("name");
    let cfg = parse("forward example.org 127.0.0.1 {\nexcept sub.example.org\n}").expect("ok");
    let st = Stanza::new(&cfg[0]).expect("stanza");
    assert!(st.matches(n("www.Example.ORG.").borrowed()));
    assert!(st.matches(n("example.org.").borrowed()));
    assert!(!st.matches(n("a.sub.example.org.").borrowed()));
    assert!(!st.matches(n("sub.example.org.").borrowed()));
    assert!(!st.matches(n("example.com.").borrowed()));
    assert!(!st.matches(n("notexample.org.").borrowed()));
    // FROM itself is always taken, even when an except covers it.
    let cfg = parse("forward example.org 127.0.0.1 {\nexcept example.org\n}").expect("ok");
    let st = Stanza::new(&cfg[0]).expect("stanza");
    assert!(st.matches(n("EXAMPLE.org.").borrowed()));
    assert!(!st.matches(n("www.example.org.").borrowed()));
}

fn msg(
    id: u16,
    flags: u16,
    qname: &str,
    qtype: u16,
    an: &[[u8; 4]],
    opt: Option<(u16, u8)>,
) -> Vec<u8> {
    let name = Name::parse(qname).expect("name");
    let mut m = Vec::new();
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&flags.to_be_bytes());
    m.extend_from_slice(&[0, 1, 0, an.len() as u8, 0, 0, 0, u8::from(opt.is_some())]);
    m.extend_from_slice(name.wire());
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
    for a in an {
        m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        m.extend_from_slice(a);
    }
    if let Some((size, ext)) = opt {
        m.push(0);
        m.extend_from_slice(&41u16.to_be_bytes());
        m.extend_from_slice(&size.to_be_bytes());
        m.extend_from_slice(&[ext, 0, 0, 0, 0, 0]);
    }
    m
}

#[test]
fn reply_helpers() {
    let r = msg(1, 0x8180 | 3, "a.example.", 1, &[], Some((1232, 1)));
    assert_eq!(
        reply_info(&r),
        ReplyInfo {
            rcode: 16 + 3,
            answers: 0
        }
    );
    // Two OPT records (malformed): miekg takes the extended bits from the last.
    let mut two = msg(1, 0x8180 | 3, "a.example.", 1, &[], Some((1232, 2)));
    two[11] = 2;
    two.extend_from_slice(&[0, 0, 41, 4, 0xd0, 1, 0, 0, 0, 0, 0]);
    assert_eq!(reply_info(&two).rcode, 16 + 3);
    let r = msg(1, 0x8180, "a.example.", 1, &[[192, 0, 2, 1]], None);
    assert_eq!(
        reply_info(&r),
        ReplyInfo {
            rcode: 0,
            answers: 1
        }
    );
    let whole = proxy::Unpacked {
        first_question: Some(27),
        end: r.len(),
        counts: [1, 1, 0, 0],
        pad: 0,
    };
    assert_eq!(proxy::unpack(&r), Ok(whole));
    assert!(!whole.needs_fixing(&r));
    // A header alone unpacks (miekg: resolvers answer REFUSED so); the question check
    // then fails it (FORMERR), as in CoreDNS.
    let refused = msg(1, 0x8180 | 5, "a.example.", 1, &[], None)[..12].to_vec();
    let got = proxy::check_udp_reply(&refused).expect("header only");
    assert_eq!(&got[..4], &refused[..4]);
    assert_eq!(
        crate::wire::hdr::counts(&got),
        [0, 0, 0, 0],
        "as CoreDNS packs it again"
    );
    // Counts the message ends before are a lie: the records read are kept and the
    // counts corrected; so are bytes after the last record dropped.
    let mut lie = r.clone();
    crate::wire::hdr::set_count(&mut lie, 1, 3);
    crate::wire::hdr::set_count(&mut lie, 3, 2);
    let u = proxy::unpack(&lie).expect("lie");
    assert_eq!(u.counts, [1, 1, 0, 0]);
    assert!(u.needs_fixing(&lie));
    let fixed = proxy::check_udp_reply(&lie).expect("fixed");
    assert_eq!(&fixed[..], &r[..]);
    // Lying counts in an earlier section: the later sections are empty.
    let mut lie2 = msg(1, 0x8180, "a.example.", 1, &[], None);
    crate::wire::hdr::set_count(&mut lie2, 2, 1);
    crate::wire::hdr::set_count(&mut lie2, 3, 1);
    assert_eq!(proxy::unpack(&lie2).map(|u| u.counts), Ok([1, 0, 0, 0]));
    let mut trailing = r.clone();
    trailing.extend_from_slice(&[1, 2, 3]);
    let fixed = proxy::check_udp_reply(&trailing).expect("trailing");
    assert_eq!(&fixed[..], &r[..]);
    // A question cut after its name or its type at the end of the message unpacks,
    // and is completed with zeros (type 0, class 0), as CoreDNS packs it again.
    let q_only = msg(1, 0x8180, "a.example.", 1, &[], None);
    let mut cut_q = q_only[..q_only.len() - 4].to_vec();
    assert_eq!(
        proxy::unpack(&cut_q).map(|u| (u.end, u.pad)),
        Ok((cut_q.len(), 4))
    );
    let fixed = proxy::check_udp_reply(&cut_q).expect("cut question");
    assert_eq!(&fixed[..cut_q.len()], &cut_q[..]);
    assert_eq!(&fixed[cut_q.len()..], &[0, 0, 0, 0]);
    cut_q.extend_from_slice(&[0, 1]);
    assert_eq!(
        proxy::unpack(&cut_q).map(|u| (u.end, u.pad)),
        Ok((cut_q.len(), 2))
    );
    let fixed = proxy::check_udp_reply(&cut_q).expect("cut question");
    assert_eq!(&fixed[cut_q.len() - 2..], &[0, 1, 0, 0]);
    // One byte of a type is an overflow (a cut reply), with miekg's wrapped text.
    cut_q.truncate(cut_q.len() - 1);
    assert_eq!(
        proxy::unpack(&cut_q),
        Err(proxy::Malformed::Overflow(
            "bad question qtype: dns: overflow unpacking uint16"
        ))
    );
    // A record's data past the end.
    assert_eq!(
        proxy::unpack(&r[..r.len() - 1]),
        Err(proxy::Malformed::Overflow("dns: overflowing header size"))
    );
    // Shorter than a header: miekg names the field it could not read.
    assert_eq!(
        proxy::unpack(&r[..1]),
        Err(proxy::Malformed::Overflow(
            "bad header id: dns: overflow unpacking uint16"
        ))
    );
    assert_eq!(
        proxy::unpack(&r[..5]),
        Err(proxy::Malformed::Overflow(
            "bad header question count: dns: overflow unpacking uint16"
        ))
    );
    assert_eq!(
        proxy::unpack(&r[..11]),
        Err(proxy::Malformed::Overflow(
            "bad header extra count: dns: overflow unpacking uint16"
        ))
    );
    // A record's name past the end: miekg's ErrBuf, a cut reply.
    assert_eq!(
        proxy::unpack(&r[..28]),
        Err(proxy::Malformed::Overflow("dns: buffer size too small"))
    );
    // The question's name past the end: miekg wraps ErrBuf, which CoreDNS then does
    // not take for a cut reply: the attempt fails with the text.
    assert_eq!(
        proxy::check_udp_reply(&r[..15]),
        Err(Fail::io("bad question name: dns: buffer size too small"))
    );
    // Cut short: an empty reply with TC and the question.
    let cut = &r[..r.len() - 3];
    let tc = proxy::check_udp_reply(cut).expect("tc");
    assert_eq!(tc.len(), 27);
    assert_eq!(crate::wire::hdr::flags(&tc), 0x8180 | 0x0200);
    assert_eq!(crate::wire::hdr::counts(&tc), [1, 0, 0, 0]);
    // A pointer loop is an error, not a truncation.
    let mut bad = r[..12].to_vec();
    bad.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    assert_eq!(
        proxy::check_udp_reply(&bad),
        Err(Fail::io(
            "bad question name: dns: too many compression pointers"
        ))
    );
}

fn with_ctx<T>(q: &[u8], proto: Proto, f: impl FnOnce(&mut Ctx<'_>) -> T) -> T {
    let Verdict::Query(req) = parse_query(q) else {
        panic!("query")
    };
    let server: Arc<str> = Arc::from("dns://:53");
    let (mut resp, mut scratch) = (Vec::new(), Vec::new());
    let peer: SocketAddr = "127.0.0.1:5000".parse().expect("addr");
    let mut ctx = Ctx::new(
        &server,
        req,
        proto,
        peer,
        peer,
        &mut resp,
        &mut scratch,
        Instant::now(),
    );
    f(&mut ctx)
}

#[test]
fn question_check_and_upstream_query() {
    let q = msg(7, 0x0100, "www.example.org.", 28, &[], Some((4096, 0)));
    with_ctx(&q, Proto::Udp, |ctx| {
        let ok = msg(9, 0x8180, "WWW.example.ORG.", 28, &[], None);
        assert!(question_matches(&ok, ctx));
        assert!(
            !question_matches(&msg(9, 0x0180, "www.example.org.", 28, &[], None), ctx),
            "QR"
        );
        assert!(
            !question_matches(&msg(9, 0x8180, "www.example.org.", 1, &[], None), ctx),
            "type"
        );
        assert!(!question_matches(
            &msg(9, 0x8180, "xxx.example.org.", 28, &[], None),
            ctx
        ));
        // CoreDNS 1.14.7's Match compares the class too (CH against IN: FORMERR).
        let mut ch = ok.clone();
        let at = ch.len() - 2;
        ch[at..].copy_from_slice(&3u16.to_be_bytes());
        assert!(!question_matches(&ch, ctx), "class");
        // A question cut after its type reads class 0 (miekg): no match.
        assert!(!question_matches(&ok[..ok.len() - 2], ctx), "cut class");
        // A header alone (REFUSED, as some resolvers send it) has no question.
        assert!(!question_matches(&ok[..12], ctx), "header only");
        // bufsize lowered the EDNS size and header cleared RD: the upstream sees both.
        ctx.st.udp_size = Some(1232);
        ctx.st.flags = 0;
        let u = Stanza::upstream_query(ctx);
        assert_eq!(u.len(), q.len());
        assert_eq!(crate::wire::hdr::flags(&u), 0);
        let idx = crate::wire::MsgIndex::parse(&u).expect("index");
        assert_eq!(idx.rrs[0].class, 1232);
    });
}

#[test]
fn upstream_query_names_written_out_as_coredns_packs_them() {
    // Authority NS with its owner and RDATA name compressed, an additional A with
    // a compressed owner, then an OPT: CoreDNS re-packs what it unpacked, without
    // compression, so the upstream sees every name in full.
    let qname = b"\x03www\x07example\x03org\x00";
    let header = |ns: u8, ar: u8| vec![0, 7, 1, 0, 0, 1, 0, 0, 0, ns, 0, ar];
    let mut q = header(1, 2);
    q.extend_from_slice(qname);
    q.extend_from_slice(&[0, 1, 0, 1]);
    q.extend_from_slice(&[0xc0, 12, 0, 2, 0, 1, 0, 0, 0, 60, 0, 2, 0xc0, 16]);
    q.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]);
    q.extend_from_slice(&[0, 0, 41, 16, 0, 0, 0, 0, 0, 0, 0]);
    let mut want = header(1, 2);
    want.extend_from_slice(qname);
    want.extend_from_slice(&[0, 1, 0, 1]);
    want.extend_from_slice(qname);
    want.extend_from_slice(&[0, 2, 0, 1, 0, 0, 0, 60, 0, 13]);
    want.extend_from_slice(&qname[4..]);
    want.extend_from_slice(qname);
    want.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]);
    want.extend_from_slice(&[0, 0, 41, 16, 0, 0, 0, 0, 0, 0, 0]);
    with_ctx(&q, Proto::Udp, |ctx| {
        assert!(ctx.req.compressed);
        assert_eq!(&Stanza::upstream_query(ctx)[..], &want[..]);
    });
    // Written out already: the rebuild gives the same bytes.
    with_ctx(&want, Proto::Udp, |ctx| {
        assert!(
            ctx.req.compressed,
            "an NS record's RDATA may hold a pointer"
        );
        assert_eq!(&Stanza::upstream_query(ctx)[..], &want[..]);
    });
    let plain = msg(7, 0x0100, "www.example.org.", 28, &[], Some((4096, 0)));
    with_ctx(&plain, Proto::Udp, |ctx| assert!(!ctx.req.compressed));
    // Counts promising more than the message carries (the OPT is missing):
    // corrected, then written out.
    let short = &q[..q.len() - 11];
    let mut want_short = want[..want.len() - 11].to_vec();
    want_short[11] = 1;
    with_ctx(short, Proto::Udp, |ctx| {
        assert_eq!(&Stanza::upstream_query(ctx)[..], &want_short[..]);
    });
    // One that would grow past the largest UDP payload goes as it came: a
    // 253-octet question name, pointed at by every owner and by the NS RDATA,
    // and a TXT answer of 252 strings (64,823 octets in all, 65,827 written out).
    let mut long = vec![0, 7, 1, 0, 0, 1, 0, 1, 0, 1, 0, 1];
    for _ in 0..4 {
        long.push(62);
        long.extend_from_slice(&[b'a'; 62]);
    }
    long.extend_from_slice(&[0, 0, 1, 0, 1]);
    long.extend_from_slice(&[0xc0, 12, 0, 16, 0, 1, 0, 0, 0, 60]);
    long.extend_from_slice(&(252u16 * 256).to_be_bytes());
    for _ in 0..252 {
        long.push(255);
        long.extend_from_slice(&[b't'; 255]);
    }
    long.extend_from_slice(&[0xc0, 12, 0, 2, 0, 1, 0, 0, 0, 60, 0, 2, 0xc0, 12]);
    long.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]);
    assert_eq!(long.len(), 64_823);
    with_ctx(&long, Proto::Tcp, |ctx| {
        assert!(ctx.req.compressed);
        assert_eq!(&Stanza::upstream_query(ctx)[..], &long[..]);
    });
    // 20 strings fewer: written out.
    let mut shorter = long.clone();
    let cut = 12 + 253 + 4 + 10;
    shorter[cut..cut + 2].copy_from_slice(&(232u16 * 256).to_be_bytes());
    shorter.drain(cut + 2..cut + 2 + 20 * 256);
    with_ctx(&shorter, Proto::Tcp, |ctx| {
        let u = Stanza::upstream_query(ctx);
        assert_eq!(u.len(), shorter.len() + 4 * 251);
    });
    // A TSIG-signed query goes as it came: its MAC covers the bytes.
    let mut signed = header(0, 2);
    signed.extend_from_slice(qname);
    signed.extend_from_slice(&[0, 1, 0, 1]);
    signed.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]);
    signed.extend_from_slice(&[0xc0, 12, 0, 250, 0, 255, 0, 0, 0, 0, 0, 0]);
    with_ctx(&signed, Proto::Udp, |ctx| {
        assert!(ctx.req.compressed);
        assert_eq!(&Stanza::upstream_query(ctx)[..], &signed[..]);
    });
}

mod pool;

/// Reads one length-prefixed query from a TCP stream and returns its echo (QR
/// set), framed: what a minimal TCP upstream answers. `None` at EOF or error.
fn tcp_echo_frame(s: &mut impl std::io::Read) -> Option<Vec<u8>> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len).ok()?;
    let mut f = len.to_vec();
    f.resize(2 + usize::from(u16::from_be_bytes(len)), 0);
    s.read_exact(&mut f[2..]).ok()?;
    f[4] |= 0x80;
    Some(f)
}

/// Answers `n` UDP queries by echoing them with QR set.
fn echo_upstream(n: usize) -> SocketAddr {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.set_read_timeout(Some(Duration::from_secs(3))).expect("t");
    let addr = s.local_addr().expect("addr");
    std::thread::spawn(move || {
        let mut b = [0u8; 512];
        for _ in 0..n {
            let Ok((len, p)) = s.recv_from(&mut b) else {
                return;
            };
            b[2] |= 0x80;
            let _ = s.send_to(&b[..len], p);
        }
    });
    addr
}

fn forward_once(fw: &Forward, q: &[u8]) -> (Flow, Vec<u8>) {
    with_ctx(q, Proto::Udp, |ctx| {
        assert!(matches!(fw.serve(ctx), Flow::Park));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        let flow = rt.block_on(fw.serve_async(ctx));
        let resp = if ctx.written {
            ctx.resp.clone()
        } else {
            Vec::new()
        };
        (flow, resp)
    })
}

#[test]
fn all_upstreams_down() {
    let q = msg(7, 0x0100, "a.example.", 1, &[], None);
    // failfast: SERVFAIL at once with "no healthy proxies".
    let cfg = parse("forward . 127.0.0.1:9 {\nfailfast_all_unhealthy_upstreams\n}").expect("ok");
    let fw = Forward::new(&cfg).expect("build");
    fw.upstreams(0)[0].fails.store(10, Ordering::Relaxed);
    let before = metrics::HEALTHCHECK_BROKEN.load(Ordering::Relaxed);
    let (flow, _) = forward_once(&fw, &q);
    let Flow::Return(st) = flow else {
        panic!("{flow:?}")
    };
    assert_eq!(st.rcode, 2);
    assert_eq!(st.err.expect("err").to_string(), "no healthy proxies");
    assert!(metrics::HEALTHCHECK_BROKEN.load(Ordering::Relaxed) > before);
    // Without it: health checking looks broken, a random upstream is tried.
    let up = echo_upstream(1);
    let cfg = parse(&format!("forward . {up}")).expect("ok");
    let fw = Forward::new(&cfg).expect("build");
    fw.upstreams(0)[0].fails.store(10, Ordering::Relaxed);
    let (flow, resp) = forward_once(&fw, &q);
    assert!(
        matches!(flow, Flow::Return(ref s) if s.rcode == 0 && s.err.is_none()),
        "{flow:?}"
    );
    assert_eq!(
        crate::wire::hdr::id(&resp),
        7,
        "the client's ID is restored"
    );
    assert_eq!(resp.len(), q.len());
}

#[test]
fn next_stanza_and_no_match() {
    let q = msg(9, 0x0100, "www.example.org.", 1, &[], None);
    // Only the second stanza matches; a name under neither goes to the next plugin.
    let up = echo_upstream(1);
    let cfg = parse(&format!(
        "forward example.com 127.0.0.1:9\nforward example.org {up}"
    ))
    .expect("ok");
    let fw = Forward::new(&cfg).expect("build");
    let (flow, resp) = forward_once(&fw, &q);
    assert!(
        matches!(flow, Flow::Return(ref s) if s.rcode == 0),
        "{flow:?}"
    );
    assert_eq!(crate::wire::hdr::id(&resp), 9);
    let other = msg(9, 0x0100, "www.example.net.", 1, &[], None);
    with_ctx(&other, Proto::Udp, |ctx| {
        assert!(matches!(fw.serve(ctx), Flow::Next))
    });
}

#[test]
fn five_second_budget_caps_the_attempt_loop() {
    // Three black holes, no attempt cap: 300 ms attempts until 5 s have passed.
    let holes: Vec<UdpSocket> = (0..3)
        .map(|_| UdpSocket::bind("127.0.0.1:0").expect("bind"))
        .collect();
    let to: Vec<String> = holes
        .iter()
        .map(|h| h.local_addr().expect("a").to_string())
        .collect();
    let cfg = parse(&format!(
        "forward . {} {{\nmax_connect_attempts 0\nread_timeout 300ms\nmax_fails 0\n}}",
        to.join(" ")
    ))
    .expect("ok");
    let fw = Forward::new(&cfg).expect("build");
    let q = msg(3, 0x0100, "slow.example.", 1, &[], None);
    let t0 = Instant::now();
    let (flow, _) = forward_once(&fw, &q);
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_secs(5) && took < Duration::from_millis(5600),
        "{took:?}"
    );
    let Flow::Return(st) = flow else {
        panic!("{flow:?}")
    };
    assert_eq!(st.rcode, 2);
    assert!(
        st.err.expect("err").to_string().ends_with(": i/o timeout"),
        "the last upstream error"
    );
    let mut b = [0u8; 512];
    let mut n = 0;
    for h in &holes {
        h.set_nonblocking(true).expect("nb");
        while h.recv(&mut b).is_ok() {
            n += 1;
        }
    }
    assert!((16..=18).contains(&n), "{n} attempts");
}

#[test]
fn doh_settings() {
    // RFC 8484 §4.1.1's GET example: www.example.com A, ID 0.
    let q = msg(0, 0x0100, "www.example.com.", 1, &[], None);
    assert_eq!(
        doh::base64url(&q),
        "AAABAAABAAAAAAAAA3d3dwdleGFtcGxlA2NvbQAAAQAB"
    );
    assert_eq!(doh::base64url(b""), "");
    assert_eq!(doh::base64url(b"\xfb"), "-w");
    assert_eq!(doh::base64url(b"\xfb\xff"), "-_8");
    assert_eq!(doh::base64url(b"\xfb\xff\xbf"), "-_-_");
    let cfg = parse(
        "forward . https://127.0.0.1 tls://127.0.0.1 https://[::1]:8443 {\ndoh_method GET\n}",
    )
    .expect("ok");
    let fw = Forward::new(&cfg).expect("build");
    let ups = fw.upstreams(0);
    let doh = ups[0].doh.as_ref().expect("doh");
    // Go's client sends the URL's host, port included.
    assert_eq!(doh.authority, "127.0.0.1:443");
    assert_eq!(doh.method, setup::DohMethod::Get);
    assert_eq!(ups[2].doh.as_ref().expect("doh").authority, "[::1]:8443");
    assert!(ups[1].doh.is_none());
    // ALPN h2, http/1.1 for DoH only.
    let alpn = |u: &Upstream| u.tls.as_ref().expect("tls").config.alpn_protocols.clone();
    assert_eq!(alpn(&ups[0]), [b"h2".to_vec(), b"http/1.1".to_vec()]);
    assert!(alpn(&ups[1]).is_empty());
    // Health checks of an https upstream never use plain TCP.
    let cfg = parse("forward . https://127.0.0.1 {\nforce_tcp\n}").expect("ok");
    let fw = Forward::new(&cfg).expect("build");
    assert!(!fw.upstreams(0)[0].opts.hc.tcp);
}

/// Health-check replies as CoreDNS judges miekg's `Exchange` result.
#[test]
fn health_check_verdicts() {
    use super::health::{Verdict as V, verdict};
    let ok = msg(7, 0x8180, "a.example.", 2, &[], None);
    // Our ID and it unpacks: healthy, whatever the rcode.
    assert_eq!(verdict(&ok, 7, false), V::Healthy);
    let servfail = msg(7, 0x8182, "a.example.", 2, &[], None);
    assert_eq!(verdict(&servfail, 7, true), V::Healthy);
    // Another ID: over UDP a reply to another query (read on); over a stream
    // miekg's ErrId, with a message that is a response: healthy.
    assert_eq!(verdict(&ok, 8, false), V::Skip);
    assert_eq!(verdict(&ok, 8, true), V::Healthy);
    // Not a response and not a query (opcode 2, QR clear), another ID: unhealthy.
    let status = msg(9, 0x1000, "a.example.", 2, &[], None);
    assert_eq!(verdict(&status, 7, true), V::Unhealthy);
    // Does not unpack (a record cut short): judged by its header alone, whatever its ID.
    let cut = msg(9, 0x8180, "a.example.", 1, &[[192, 0, 2, 1]], None);
    let cut = &cut[..cut.len() - 2];
    assert_eq!(verdict(cut, 7, false), V::Healthy);
    let mut cut_status = cut.to_vec();
    cut_status[2] = 0x10;
    assert_eq!(verdict(&cut_status, 7, false), V::Unhealthy);
    // Shorter than a header: a failed read.
    assert_eq!(verdict(&ok[..11], 7, false), V::Unhealthy);
}

/// A TCP health check has one deadline for its whole exchange (miekg sets the
/// connection's read and write deadlines to now + 1 s): a server that trickles a
/// good reply a byte at a time fails the check at ~1 s; sent at once it passes.
#[test]
fn health_check_over_tcp_has_one_deadline() {
    use std::io::Write;
    fn server(trickle: bool) -> SocketAddr {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        std::thread::spawn(move || {
            let Ok((mut s, _)) = l.accept() else { return };
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let Some(frame) = tcp_echo_frame(&mut s) else {
                return;
            };
            if !trickle {
                let _ = s.write_all(&frame);
                return;
            }
            for b in frame {
                if s.write_all(&[b]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(150));
            }
        });
        addr
    }
    for trickle in [false, true] {
        let cfg = parse(&format!("forward . {} {{\nforce_tcp\n}}", server(trickle))).expect("ok");
        let fw = Forward::new(&cfg).expect("build");
        let t0 = Instant::now();
        let r = super::health::check(&fw.upstreams(0)[0]);
        let took = t0.elapsed();
        if trickle {
            // 19 bytes at 150 ms each would take ~2.8 s.
            assert!(r.is_err(), "a trickled reply passed the check");
            assert!(took < Duration::from_millis(1500), "{took:?}");
        } else {
            assert!(r.is_ok(), "{r:?}");
        }
    }
}

/// Upstream replies mutated at random (octets flipped, cut, inserted; counts,
/// lengths and compression pointers hit too) go through what forward and the server
/// do with a UDP reply: miekg's unpack rules and the fix, the rcode read, the debug
/// dump's uncompressed rebuild, the question check, and the scrub for UDP clients of
/// 512/1232/4096 octets (IPv4 and IPv6) and TCP. Nothing panics (debug builds check arithmetic overflow
/// too), and every reply that passes leaves as an indexable message within the UDP
/// client's size.
#[test]
fn mutated_upstream_replies_never_panic_and_fit_the_client() {
    use crate::server::scrub;
    use crate::wire::MsgIndex;

    let mut seed = 0x9e37_79b9_u32;
    let mut rnd = move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        seed as usize % n.max(1)
    };
    // A reply worth truncating: a CNAME, 70 A records under it (compressed owners),
    // NS in authority, an OPT.
    let base = {
        let mut m = msg(7, 0x8180, "www.example.org.", 1, &[], None);
        let cname_at = m.len();
        m.extend_from_slice(&[0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 6]);
        m.extend_from_slice(b"\x03cdn\xc0\x10");
        for i in 0..70u8 {
            m.extend_from_slice(&[0xc0, (cname_at + 12) as u8, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
            m.extend_from_slice(&[192, 0, 2, i]);
        }
        m.extend_from_slice(&[0xc0, 16, 0, 2, 0, 1, 0, 0, 0, 60, 0, 5]);
        m.extend_from_slice(b"\x02ns\xc0\x10");
        m.extend_from_slice(&[0, 0, 41, 0x10, 0, 0, 0, 0x80, 0, 0, 0]);
        crate::wire::hdr::set_count(&mut m, 1, 71);
        crate::wire::hdr::set_count(&mut m, 2, 1);
        crate::wire::hdr::set_count(&mut m, 3, 1);
        m
    };
    assert!(MsgIndex::parse(&base).is_some_and(|i| i.rrs.len() == 73));
    let queries: Vec<Vec<u8>> = [None, Some((512, 0)), Some((1232, 0)), Some((4096, 0))]
        .into_iter()
        .map(|opt| msg(7, 0x0100, "www.example.org.", 1, &[], opt))
        .collect();
    let (mut passed, mut matched) = (0u32, 0u32);
    let mut resp = Vec::new();
    let mut scratch = Vec::new();
    for round in 0..6000 {
        let mut m = base.clone();
        for _ in 0..1 + rnd(4) {
            match rnd(6) {
                0 | 1 => {
                    let i = rnd(m.len());
                    if let Some(b) = m.get_mut(i) {
                        *b ^= 1 << rnd(8);
                    }
                }
                2 => {
                    // A count, a length or a pointer: the fields that steer parsing.
                    let i = [5, 7, 9, 11, 12 + rnd(m.len().saturating_sub(12))][rnd(5)];
                    if i < m.len() {
                        m[i] = rnd(256) as u8;
                    }
                }
                3 => m.truncate(rnd(m.len() + 1)),
                4 => {
                    let i = rnd(m.len() + 1);
                    m.insert(i, rnd(256) as u8);
                }
                _ => {
                    let i = rnd(m.len().saturating_sub(2));
                    if i + 1 < m.len() {
                        m[i] = 0xc0 | rnd(4) as u8;
                        m[i + 1] = rnd(256) as u8;
                    }
                }
            }
        }
        let Ok(fixed) = proxy::check_udp_reply(&m) else {
            continue;
        };
        passed += 1;
        let _ = reply_info(&fixed);
        if let Some(idx) = MsgIndex::parse(&fixed) {
            let order: Vec<usize> = (0..idx.rrs.len()).collect();
            let plain = crate::wire::index::Rebuild {
                compress: false,
                limit: None,
                reserve: 0,
            };
            let mut out = Vec::new();
            crate::wire::index::rebuild(&fixed, &idx, &order, plain, &mut out);
        }
        for q in &queries {
            // A reply about another question is not passed on (FORMERR from the query).
            if !with_ctx(q, Proto::Udp, |ctx| question_matches(&fixed, ctx)) {
                continue;
            }
            matched += 1;
            let Verdict::Query(req) = parse_query(q) else {
                panic!("query");
            };
            for (proto, v6) in [(Proto::Udp, false), (Proto::Udp, true), (Proto::Tcp, false)] {
                resp.clear();
                resp.extend_from_slice(&fixed);
                let size = req.opt.map(|o| o.udp_size);
                scrub::scrub(&mut resp, &mut scratch, &req, size, proto, v6);
                let idx = MsgIndex::parse(&resp);
                assert!(
                    idx.is_some(),
                    "round {round}: the scrubbed reply does not index: {m:02x?}"
                );
                if proto == Proto::Udp {
                    let limit = usize::from(size.unwrap_or(512).max(512));
                    assert!(
                        resp.len() <= limit,
                        "round {round}: {} octets to a {limit}-octet client: {m:02x?}",
                        resp.len()
                    );
                }
            }
        }
    }
    println!("{passed} of 6000 mutated replies passed, {matched} scrubbed");
    // The mutations leave enough replies whole for the scrub to be exercised.
    assert!(
        passed > 1000 && matched > 1000,
        "{passed} replies passed, {matched} scrubbed"
    );
}
