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
            };
            if let Some(n) = &u.server_name {
                t.push('%');
                t.push_str(n);
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

/// CoreDNS `TestSetup`, `TestSetupTLS`, `TestSetupPolicy` and friends, plus
/// every option's errors. Expected: the description, or `ERR` and the exact text.
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
    assert_eq!(
        run(&format!("forward . {}", p("resolv.conf"))),
        "from=. to=10.10.255.252:53,10.10.255.253:53"
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

/// A one-shot DNS responder answering A/AAAA queries for `name`.
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
                b.rr(&req.qname, 1, 1, 60, &[127, 0, 0, 1]);
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
    let orders: Vec<Vec<usize>> = (0..4).map(|_| rr.order()).collect();
    // CoreDNS: [p[i], p[0..i), p(i..)] for i = 1, 2, 0, 1.
    assert_eq!(
        orders,
        [vec![1, 0, 2], vec![2, 0, 1], vec![0, 1, 2], vec![1, 0, 2]]
    );
    assert_eq!(f("sequential", 3).order(), [0, 1, 2]);
    let r2 = f("random", 2);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..200 {
        seen.insert(r2.order());
    }
    assert_eq!(seen.len(), 2);
    let r4 = f("random", 4);
    let mut s = r4.order();
    s.sort_unstable();
    assert_eq!(s, [0, 1, 2, 3]);
}

#[test]
fn matching_from_and_except() {
    let n = |s: &str| Name::parse(s).expect("name");
    let cfg = parse("forward example.org 127.0.0.1 {\nexcept sub.example.org\n}").expect("ok");
    let st = Stanza::new(&cfg[0]).expect("stanza");
    assert!(st.matches(&n("www.Example.ORG.")));
    assert!(st.matches(&n("example.org.")));
    assert!(!st.matches(&n("a.sub.example.org.")));
    assert!(!st.matches(&n("sub.example.org.")));
    assert!(!st.matches(&n("example.com.")));
    assert!(!st.matches(&n("notexample.org.")));
    // FROM itself is always taken, even when an except covers it.
    let cfg = parse("forward example.org 127.0.0.1 {\nexcept example.org\n}").expect("ok");
    let st = Stanza::new(&cfg[0]).expect("stanza");
    assert!(st.matches(&n("EXAMPLE.org.")));
    assert!(!st.matches(&n("www.example.org.")));
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
    let r = msg(1, 0x8180, "a.example.", 1, &[[192, 0, 2, 1]], None);
    assert_eq!(
        reply_info(&r),
        ReplyInfo {
            rcode: 0,
            answers: 1
        }
    );
    assert_eq!(proxy::unpack(&r), Ok(Some(27)));
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
        Err(Fail::io("dns: too many compression pointers"))
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

fn upstream(
    addr: SocketAddr,
    read_timeout: Duration,
    max_idle: usize,
    expire: Duration,
) -> Upstream {
    let cfg = UpstreamConfig {
        addr,
        label: addr.to_string(),
        scheme: Scheme::Dns,
        server_name: None,
    };
    let opts = PoolOpts {
        expire,
        max_age: Duration::ZERO,
        max_idle_conns: max_idle,
        read_timeout,
        source: None,
        hc: HcOpts {
            interval: Duration::from_millis(100),
            rd: true,
            domain: Name::root(),
            tcp: false,
        },
    };
    Upstream::new(cfg, opts, None)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Collects `n` queries, then answers them in reverse order (A = 10.0.x.y from the ID).
fn reverse_responder(n: usize) -> (SocketAddr, std::thread::JoinHandle<usize>) {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("t");
    let addr = s.local_addr().expect("addr");
    let h = std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = [0u8; 512];
        while got.len() < n {
            let Ok((len, peer)) = s.recv_from(&mut buf) else {
                break;
            };
            got.push((buf[..len].to_vec(), peer));
        }
        let ports: std::collections::HashSet<u16> = got.iter().map(|g| g.1.port()).collect();
        for (q, peer) in got.iter().rev() {
            let mut r = q.clone();
            r[2] |= 0x80;
            r[7] = 1;
            r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 0, q[0], q[1]]);
            let _ = s.send_to(&r, peer);
        }
        ports.len()
    });
    (addr, h)
}

#[test]
fn udp_sockets_are_shared_and_replies_matched_by_id() {
    // Small enough that the responder's socket buffer holds every query.
    const N: usize = 100;
    let (addr, h) = reverse_responder(N);
    let up = Rc::new(upstream(
        addr,
        Duration::from_secs(3),
        0,
        Duration::from_secs(10),
    ));
    let local = Rc::new(Local::default());
    let set = tokio::task::LocalSet::new();
    let results = set.block_on(&rt(), async {
        let mut hs = Vec::new();
        for i in 0..N {
            let (up, local) = (Rc::clone(&up), Rc::clone(&local));
            hs.push(tokio::task::spawn_local(async move {
                let mut q = msg(0, 0x0100, &format!("q{i}.example."), 1, &[], None);
                let r = proxy::exchange(&up, &local, &mut q, Net::Udp, 512).await;
                (q, r)
            }));
        }
        let mut out = Vec::new();
        for h in hs {
            out.push(h.await.expect("join"));
        }
        out
    });
    let ports = h.join().expect("join");
    for (q, r) in &results {
        let r = r.as_ref().expect("reply");
        // Same ID as sent, and the answer derived from that ID.
        assert_eq!(r[..2], q[..2]);
        assert_eq!(r[r.len() - 2..], q[..2]);
    }
    assert!(ports <= proxy::UDP_SOCKETS, "{ports} sockets");
    let (hits, misses) = up.metrics.conn_cache(metrics::ConnProto::Udp);
    assert_eq!(hits + misses, N as u64);
    assert_eq!(misses as usize, ports);
}

#[test]
fn udp_pending_table_is_bounded() {
    // A black hole: every slot fills, the rest fail at once.
    let hole = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = hole.local_addr().expect("addr");
    let up = Rc::new(upstream(
        addr,
        Duration::from_millis(300),
        0,
        Duration::from_secs(10),
    ));
    let local = Rc::new(Local::default());
    let total = proxy::UDP_SOCKETS * udp::SLOTS_PER_SOCKET + 100;
    let before = metrics::PENDING_FULL.load(Ordering::Relaxed);
    let set = tokio::task::LocalSet::new();
    let (full, timeouts) = set.block_on(&rt(), async {
        let mut hs = Vec::new();
        for _ in 0..total {
            let (up, local) = (Rc::clone(&up), Rc::clone(&local));
            hs.push(tokio::task::spawn_local(async move {
                let mut q = msg(0, 0x0100, "x.example.", 1, &[], None);
                proxy::exchange(&up, &local, &mut q, Net::Udp, 512).await
            }));
        }
        let (mut full, mut to) = (0, 0);
        for h in hs {
            match h.await.expect("join") {
                Err(Fail::Full) => full += 1,
                Err(Fail::Io(t)) if t.ends_with("i/o timeout") => to += 1,
                other => panic!("{other:?}"),
            }
        }
        (full, to)
    });
    assert_eq!(timeouts, proxy::UDP_SOCKETS * udp::SLOTS_PER_SOCKET);
    assert_eq!(full, 100);
    assert!(metrics::PENDING_FULL.load(Ordering::Relaxed) >= before + 100);
    drop(hole);
}

#[test]
fn udp_connection_refused_is_immediate() {
    let closed = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = closed.local_addr().expect("addr");
    drop(closed);
    let up = upstream(addr, Duration::from_secs(2), 0, Duration::from_secs(10));
    let local = Local::default();
    let t0 = Instant::now();
    let r = rt().block_on(async {
        let mut q = msg(0, 0x0100, "x.example.", 1, &[], None);
        proxy::exchange(&up, &local, &mut q, Net::Udp, 512).await
    });
    assert!(t0.elapsed() < Duration::from_millis(500));
    let Err(Fail::Io(t)) = r else { panic!("{r:?}") };
    assert!(t.starts_with("read udp 127.0.0.1:"), "{t}");
    assert!(
        t.ends_with(&format!("->{addr}: read: connection refused")),
        "{t}"
    );
}

/// TCP responder: answers every framed query on every connection; counts connections.
fn tcp_responder() -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    let conns = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c2 = Arc::clone(&conns);
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            c2.fetch_add(1, Ordering::Relaxed);
            std::thread::spawn(move || {
                loop {
                    let mut len = [0u8; 2];
                    if s.read_exact(&mut len).is_err() {
                        return;
                    }
                    let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
                    if s.read_exact(&mut q).is_err() {
                        return;
                    }
                    q[2] |= 0x80;
                    let mut f = (q.len() as u16).to_be_bytes().to_vec();
                    f.extend_from_slice(&q);
                    if s.write_all(&f).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, conns)
}

#[test]
fn tcp_connections_are_reused_and_expire() {
    let (addr, conns) = tcp_responder();
    let up = upstream(addr, Duration::from_secs(2), 0, Duration::from_millis(300));
    let local = Local::default();
    let rt = rt();
    for _ in 0..3 {
        let r = rt.block_on(async {
            let mut q = msg(0, 0x0100, "x.example.", 1, &[], None);
            proxy::exchange(&up, &local, &mut q, Net::Tcp, 512).await
        });
        assert!(r.is_ok(), "{r:?}");
    }
    assert_eq!(conns.load(Ordering::Relaxed), 1);
    assert_eq!(up.metrics.conn_cache(metrics::ConnProto::Tcp), (2, 1));
    assert_eq!(local.counts().1, 1);
    // Idle longer than `expire`: closed instead of reused.
    std::thread::sleep(Duration::from_millis(400));
    let r = rt.block_on(async {
        let mut q = msg(0, 0x0100, "x.example.", 1, &[], None);
        proxy::exchange(&up, &local, &mut q, Net::Tcp, 512).await
    });
    assert!(r.is_ok());
    assert_eq!(conns.load(Ordering::Relaxed), 2);
}

#[test]
fn dial_timeout_adapts() {
    let up = upstream(
        "127.0.0.1:9".parse().expect("a"),
        Duration::from_secs(2),
        0,
        Duration::from_secs(10),
    );
    // The average starts at 15 s: the first dial may take 30 s.
    assert_eq!(up.dial_timeout(), Duration::from_secs(30));
}

#[test]
fn metrics_text() {
    let m = metrics::upstream("198.51.100.7:53");
    m.observe(0, Duration::from_millis(3));
    m.observe(3, Duration::from_micros(100));
    m.hit(metrics::ConnProto::Udp);
    m.miss(metrics::ConnProto::Udp);
    m.hc_failures.fetch_add(2, Ordering::Relaxed);
    let t = metrics::render();
    for line in [
        "# HELP coredns_proxy_request_duration_seconds Histogram of the time each request took.",
        "# TYPE coredns_proxy_request_duration_seconds histogram",
        "coredns_proxy_request_duration_seconds_bucket{proxy_name=\"forward\",rcode=\"NOERROR\",to=\"198.51.100.7:53\",le=\"0.002\"} 0",
        "coredns_proxy_request_duration_seconds_bucket{proxy_name=\"forward\",rcode=\"NOERROR\",to=\"198.51.100.7:53\",le=\"0.004\"} 1",
        "coredns_proxy_request_duration_seconds_bucket{proxy_name=\"forward\",rcode=\"NOERROR\",to=\"198.51.100.7:53\",le=\"+Inf\"} 1",
        "coredns_proxy_request_duration_seconds_sum{proxy_name=\"forward\",rcode=\"NOERROR\",to=\"198.51.100.7:53\"} 0.003",
        "coredns_proxy_request_duration_seconds_count{proxy_name=\"forward\",rcode=\"NXDOMAIN\",to=\"198.51.100.7:53\"} 1",
        "coredns_proxy_conn_cache_hits_total{proto=\"udp\",proxy_name=\"forward\",to=\"198.51.100.7:53\"} 1",
        "coredns_proxy_conn_cache_misses_total{proto=\"udp\",proxy_name=\"forward\",to=\"198.51.100.7:53\"} 1",
        "coredns_proxy_healthcheck_failures_total{proxy_name=\"forward\",to=\"198.51.100.7:53\"} 2",
        "# TYPE coredns_forward_healthcheck_broken_total counter",
        "# HELP coredns_forward_max_concurrent_rejects_total Counter of the number of queries rejected because the concurrent queries were at maximum.",
    ] {
        assert!(t.lines().any(|l| l == line), "missing {line}\n{t}");
    }
    // Families in name order.
    let fams: Vec<&str> = t
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .collect();
    let mut sorted = fams.clone();
    sorted.sort_unstable();
    assert_eq!(fams, sorted);
}

#[test]
fn health_probe_message() {
    let up = upstream(
        "127.0.0.1:9".parse().expect("a"),
        Duration::from_secs(2),
        0,
        Duration::from_secs(10),
    );
    let q = health::probe_query(&up, 0x1234);
    assert_eq!(q, [0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 1]);
}

#[test]
fn health_check_marks_down_and_recovers() {
    // A black hole for the checks (1 s timeout each is too slow here: use a
    // closed port, which fails at once).
    let closed = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = closed.local_addr().expect("addr");
    drop(closed);
    let up = Arc::new(upstream(
        addr,
        Duration::from_secs(2),
        0,
        Duration::from_secs(10),
    ));
    health::trigger(&up);
    let t0 = Instant::now();
    while !up.down(2) && t0.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(up.down(2), "three failed checks");
    assert!(up.metrics.hc_failures.load(Ordering::Relaxed) >= 3);
    // The upstream comes back: the loop ends with fails = 0.
    let s = UdpSocket::bind(addr).expect("rebind");
    std::thread::spawn(move || {
        let mut b = [0u8; 512];
        if let Ok((n, p)) = s.recv_from(&mut b) {
            b[2] |= 0x80;
            let _ = s.send_to(&b[..n], p);
        }
    });
    let t0 = Instant::now();
    while up.fails.load(Ordering::Relaxed) != 0 && t0.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(up.fails.load(Ordering::Relaxed), 0);
    assert!(!up.down(2));
    up.stopped.store(true, Ordering::Relaxed);
}
