use super::*;
use crate::config::tests::{build_str, err};

const C: &str = "127.0.0.1:5555";

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("address")
}

/// A v2 header: command, family, the address block and TLVs (`extra`).
fn v2(cmd: u8, family: u8, addrs: &[u8], extra: &[u8]) -> Vec<u8> {
    let mut h = SIG_V2.to_vec();
    h.push(cmd);
    h.push(family);
    let len = (addrs.len() + extra.len()) as u16;
    h.extend_from_slice(&len.to_be_bytes());
    h.extend_from_slice(addrs);
    h.extend_from_slice(extra);
    h
}

/// IPv4 addresses: 192.0.2.7:4242 → 198.51.100.1:53.
fn v4_addrs() -> Vec<u8> {
    let mut a = vec![192, 0, 2, 7, 198, 51, 100, 1];
    a.extend_from_slice(&4242u16.to_be_bytes());
    a.extend_from_slice(&53u16.to_be_bytes());
    a
}

/// IPv6 addresses: 2001:db8::7 port 4242 → 2001:db8::1 port 53.
fn v6_addrs() -> Vec<u8> {
    let mut a = Vec::new();
    a.extend_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().expect("v6").octets());
    a.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().expect("v6").octets());
    a.extend_from_slice(&4242u16.to_be_bytes());
    a.extend_from_slice(&53u16.to_be_bytes());
    a
}

const QUERY: &[u8] = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x01";

fn pp(text: &str) -> Arc<ProxyProto> {
    let cfg = build_str(text).expect("config");
    cfg.blocks[0]
        .settings
        .proxyproto
        .clone()
        .expect("proxyproto set")
}

#[test]
fn setup_errors_as_coredns() {
    let cases: &[(&str, &str)] = &[
        (". {\n proxyproto\n}", "ok"),
        (
            ". {\n proxyproto {\n  allow 10.0.0.0/8 ::1/128\n  default reject\n  udp_session_tracking 28s 100\n }\n}",
            "ok",
        ),
        (
            ". {\n proxyproto x\n}",
            "plugin/proxyproto: Corefile:2 - Error during parsing: Wrong argument count or unexpected line ending after 'x'",
        ),
        (
            ". {\n proxyproto {\n  allow 10.0.0.0/33\n }\n}",
            "plugin/proxyproto: 10.0.0.0/33: invalid CIDR address: 10.0.0.0/33",
        ),
        (
            ". {\n proxyproto {\n  allow 10.0.0.1\n }\n}",
            "plugin/proxyproto: 10.0.0.1: invalid CIDR address: 10.0.0.1",
        ),
        (
            ". {\n proxyproto {\n  default\n }\n}",
            "plugin/proxyproto: Corefile:3 - Error during parsing: Wrong argument count or unexpected line ending after 'default'",
        ),
        (
            ". {\n proxyproto {\n  default maybe\n }\n}",
            "plugin/proxyproto: Corefile:3 - Error during parsing: Wrong argument count or unexpected line ending after 'maybe'",
        ),
        (". {\n proxyproto {\n  default SKIP\n }\n}", "ok"),
        (
            ". {\n proxyproto {\n  udp_session_tracking\n }\n}",
            "plugin/proxyproto: Corefile:3 - Error during parsing: Wrong argument count or unexpected line ending after 'udp_session_tracking'",
        ),
        (
            ". {\n proxyproto {\n  udp_session_tracking 1s 2 3\n }\n}",
            "plugin/proxyproto: Corefile:3 - Error during parsing: Wrong argument count or unexpected line ending after '3'",
        ),
        (
            ". {\n proxyproto {\n  udp_session_tracking soon\n }\n}",
            "plugin/proxyproto: udp_session_tracking: invalid duration \"soon\": time: invalid duration \"soon\"",
        ),
        (
            ". {\n proxyproto {\n  udp_session_tracking 30s 0\n }\n}",
            "plugin/proxyproto: udp_session_tracking: invalid max sessions \"0\": must be a positive integer",
        ),
        (
            ". {\n proxyproto {\n  udp_session_tracking 30s many\n }\n}",
            "plugin/proxyproto: udp_session_tracking: invalid max sessions \"many\": must be a positive integer",
        ),
        (
            ". {\n proxyproto {\n  trusted 10.0.0.0/8\n }\n}",
            "Corefile:3 - Error during parsing: unknown option 'trusted'",
        ),
        (
            "quic://.:8853 {\n tls cert.pem key.pem\n proxyproto\n whoami\n}",
            "plugin/proxyproto: PROXY protocol on quic:// listeners is not supported by ringdns yet",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(err(text), *want, "{text}");
    }
}

#[test]
fn policy_as_coredns() {
    let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
    // No allow list: everyone's headers are used, unless `default` says otherwise.
    assert_eq!(
        pp(". {\n proxyproto\n}").policy(ip("203.0.113.9")),
        Policy::Use
    );
    let p = pp(". {\n proxyproto {\n  default skip\n }\n}");
    assert_eq!(p.policy(ip("203.0.113.9")), Policy::Skip);
    // An allow list: its members USE, the rest `default` (IGNORE when unset).
    let p = pp(". {\n proxyproto {\n  allow 10.0.0.0/8 2001:db8::/32\n }\n}");
    assert_eq!(p.policy(ip("10.1.2.3")), Policy::Use);
    assert_eq!(p.policy(ip("2001:db8::5")), Policy::Use);
    assert_eq!(p.policy(ip("11.0.0.1")), Policy::Ignore);
    let p = pp(". {\n proxyproto {\n  allow 10.0.0.0/8\n  default reject\n }\n}");
    assert_eq!(p.policy(ip("11.0.0.1")), Policy::Reject);
    // Two stanzas: the allow lists add up.
    let p =
        pp(". {\n proxyproto {\n  allow 10.0.0.0/8\n }\n proxyproto {\n  allow 11.0.0.0/8\n }\n}");
    assert_eq!(p.policy(ip("11.0.0.1")), Policy::Use);
    assert_eq!(p.policy(ip("10.0.0.1")), Policy::Use);
}

#[test]
fn listener_takes_the_last_block_with_proxyproto() {
    let cfg = build_str(
        "a.example:1053 {\n proxyproto {\n  default skip\n }\n whoami\n}\nb.example:1053 {\n proxyproto {\n  default reject\n }\n whoami\n}\nc.example:1053 {\n whoami\n}",
    )
    .expect("config");
    let active = crate::server::Active::build(cfg).expect("active");
    let l = &active.listeners[0];
    let p = l.proxy.as_ref().expect("proxy");
    assert_eq!(p.policy("192.0.2.1".parse().expect("ip")), Policy::Reject);
}

#[test]
fn v2_headers_parse() {
    let mut m = v2(PROXY, 0x12, &v4_addrs(), &[]);
    m.extend_from_slice(QUERY);
    let Parsed::Header(h) = parse(&m, true) else {
        panic!("{:?}", parse(&m, true));
    };
    assert_eq!(h.len, 28);
    assert_eq!(h.version, 2);
    assert_eq!(h.src, Some(sa("192.0.2.7:4242")));
    assert_eq!(h.dst, Some(sa("198.51.100.1:53")));
    // IPv6 with a TLV after the addresses.
    let m = v2(PROXY, 0x21, &v6_addrs(), &[0x04, 0, 1, 9]);
    let Parsed::Header(h) = parse(&m, true) else {
        panic!("v6");
    };
    assert_eq!(h.len, 16 + 36 + 4);
    assert_eq!(h.src, Some(sa("[2001:db8::7]:4242")));
    // LOCAL with no addresses.
    let Parsed::Header(h) = parse(&v2(LOCAL, 0, &[], &[]), true) else {
        panic!("local");
    };
    assert!(h.local && h.src.is_none() && h.len == 16);
    // LOCAL with a short address block is read as UNSPEC.
    let Parsed::Header(h) = parse(&v2(LOCAL, 0x11, &[1, 2, 3], &[]), true) else {
        panic!("local short");
    };
    assert_eq!((h.family, h.len), (0, 19));
}

#[test]
fn v2_errors_are_go_proxyprotos() {
    let sig = SIG_V2.to_vec();
    let with = |b: &[u8]| {
        let mut m = sig.clone();
        m.extend_from_slice(b);
        m
    };
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            sig.clone(),
            "proxyproto: can't read proxy protocol version and command: EOF",
        ),
        (
            with(&[0x22]),
            "proxyproto: unsupported proxy protocol version and command",
        ),
        (
            with(&[0x21]),
            "proxyproto: can't read address family or protocol: EOF",
        ),
        (
            with(&[0x21, 0x13]),
            "proxyproto: unsupported address family and protocol",
        ),
        (
            with(&[0x21, 0x00]),
            "proxyproto: unsupported address family and protocol",
        ),
        (with(&[0x21, 0x11]), "proxyproto: can't read length: EOF"),
        (
            with(&[0x21, 0x11, 0]),
            "proxyproto: can't read length: unexpected EOF",
        ),
        (with(&[0x21, 0x11, 0, 11]), "proxyproto: invalid length"),
        (
            with(&[0x20, 0x11, 0, 11, 1]),
            "proxyproto: invalid length: EOF",
        ),
        (
            with(&[0x21, 0x11, 0x10, 0x01]),
            "proxyproto: invalid length",
        ),
        (
            with(&[0x21, 0x11, 0, 12]),
            "proxyproto: invalid address: EOF",
        ),
        (
            with(&[0x21, 0x11, 0, 12, 1, 2]),
            "proxyproto: invalid address: unexpected EOF",
        ),
        (
            with(&[0x21, 0x11, 0, 14, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]),
            "proxyproto: invalid length",
        ),
        (
            with(&[0x21, 0x11, 0, 14, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]),
            "unexpected EOF",
        ),
    ];
    for (m, want) in cases {
        assert_eq!(parse(&m, true), Parsed::Err(want.to_owned()), "{m:?}");
    }
    // A stream waits for what a datagram would lack.
    assert_eq!(
        parse(&with(&[0x21, 0x11, 0, 12, 1, 2]), false),
        Parsed::Need
    );
    assert_eq!(parse(&sig[..7], false), Parsed::Need);
    assert_eq!(parse(&sig[..7], true), Parsed::None);
    assert_eq!(parse(b"\r\n\r\nxyzwvuts", false), Parsed::None);
}

#[test]
fn v1_headers_parse() {
    let m = b"PROXY TCP4 192.0.2.7 198.51.100.1 4242 53\r\n\x00\x11rest";
    let Parsed::Header(h) = parse(m, false) else {
        panic!("v1");
    };
    assert_eq!((h.version, h.len), (1, 43));
    assert_eq!(h.src, Some(sa("192.0.2.7:4242")));
    assert_eq!(h.dst, Some(sa("198.51.100.1:53")));
    let Parsed::Header(h) = parse(b"PROXY TCP6 2001:db8::7 2001:db8::1 4242 53\r\n", false) else {
        panic!("v1 tcp6");
    };
    assert_eq!(h.src, Some(sa("[2001:db8::7]:4242")));
    let Parsed::Header(h) = parse(b"PROXY UNKNOWN whatever\r\n", false) else {
        panic!("unknown");
    };
    assert!(h.local && h.src.is_none());
    let cases: &[(&[u8], &str)] = &[
        (
            b"PROXY TCP4 192.0.2.7 198.51.100.1 4242 53",
            "proxyproto: can't read version 1 header",
        ),
        (
            b"PROXY TCP4 192.0.2.7 198.51.100.1 4242 53\n",
            "proxyproto: version 1 header is invalid, must end with \\r\\n",
        ),
        (
            b"PROXY\r\n",
            "proxyproto: can't read address family or protocol",
        ),
        (
            b"PROXYjunk TCP4 1.2.3.4 1.2.3.4 1 2\r\n",
            "proxyproto: can't read version 1 header",
        ),
        (
            b"PROXY UDP4 1.2.3.4 1.2.3.4 1 2\r\n",
            "proxyproto: can't read address family or protocol",
        ),
        (
            b"PROXY TCP4 1.2.3.4 1.2.3.4 1\r\n",
            "proxyproto: can't read address family or protocol",
        ),
        (
            b"PROXY TCP4 2001:db8::1 1.2.3.4 1 2\r\n",
            "proxyproto: invalid address",
        ),
        (
            b"PROXY TCP4 1.2.3 1.2.3.4 1 2\r\n",
            "proxyproto: invalid address: ParseAddr(\"1.2.3\"): unable to parse IP",
        ),
        (
            b"PROXY TCP4 1.2.3.4 1.2.3.4 01 2\r\n",
            "proxyproto: invalid port number",
        ),
        (
            b"PROXY TCP4 1.2.3.4 1.2.3.4 70000 2\r\n",
            "proxyproto: invalid port number: strconv.ParseUint: parsing \"70000\": value out of range",
        ),
        (
            b"PROXY TCP4 1.2.3.4 1.2.3.4 x 2\r\n",
            "proxyproto: invalid port number: strconv.ParseUint: parsing \"x\": invalid syntax",
        ),
    ];
    for (m, want) in cases {
        assert_eq!(
            parse(m, false),
            Parsed::Err((*want).to_owned()),
            "{}",
            String::from_utf8_lossy(m)
        );
    }
    let long = format!("PROXY TCP4 {}\r\n", "1".repeat(120));
    assert_eq!(
        parse(long.as_bytes(), false),
        Parsed::Err("proxyproto: version 1 header must be 107 bytes or less".to_owned())
    );
    // Not a header: a DNS message over TCP starts with its length.
    assert_eq!(parse(b"\x00\x11\x12\x34", false), Parsed::None);
    assert_eq!(parse(b"PRO", false), Parsed::Need);
    assert_eq!(parse(b"PRO", true), Parsed::None);
    assert_eq!(parse(b"PRAXY", false), Parsed::None);
}

#[test]
fn datagrams_as_coredns_reads_them() {
    let peer = sa(C);
    let mut with_header = v2(PROXY, 0x12, &v4_addrs(), &[]);
    with_header.extend_from_slice(QUERY);
    let p = pp(". {\n proxyproto\n}");
    assert_eq!(
        p.udp(&with_header, peer),
        Datagram::Serve {
            skip: 28,
            client: sa("192.0.2.7:4242")
        }
    );
    // No header: the datagram as it came.
    assert_eq!(
        p.udp(QUERY, peer),
        Datagram::Serve {
            skip: 0,
            client: peer
        }
    );
    // A header-only datagram without session tracking: an empty message (miekg drops it).
    let only = v2(PROXY, 0x12, &v4_addrs(), &[]);
    assert_eq!(
        p.udp(&only, peer),
        Datagram::Serve {
            skip: 28,
            client: sa("192.0.2.7:4242")
        }
    );
    // A TCP-family header, a v1 header, a malformed one: dropped with CoreDNS's reason.
    let tcp = v2(PROXY, 0x11, &v4_addrs(), &[]);
    assert_eq!(
        p.udp(&tcp, peer),
        Datagram::Drop(Some(
            "PROXY Protocol header is not UDP type (transport protocol: 0x11)".into()
        ))
    );
    assert_eq!(
        p.udp(b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2\r\n", peer),
        Datagram::Drop(Some(
            "unsupported Proxy Protocol version 1 (only v2 supported for UDP)".into()
        ))
    );
    assert_eq!(
        p.udp(&v2(LOCAL, 0, &[], &[]), peer),
        Datagram::Drop(Some(
            "PROXY Protocol header is not UDP type (transport protocol: 0x0)".into()
        ))
    );
    let bad = with_header[..14].to_vec();
    assert_eq!(
        p.udp(&bad, peer),
        Datagram::Drop(Some(
            "parsing Proxy Protocol header (packet size: 14): proxyproto: can't read length: EOF"
                .into()
        ))
    );
    // IGNORE strips the header and keeps the sender; REJECT drops; SKIP passes all.
    let p = pp(". {\n proxyproto {\n  allow 10.0.0.0/8\n }\n}");
    assert_eq!(
        p.udp(&with_header, peer),
        Datagram::Serve {
            skip: 28,
            client: peer
        }
    );
    let p = pp(". {\n proxyproto {\n  allow 10.0.0.0/8\n  default reject\n }\n}");
    assert_eq!(
        p.udp(&with_header, peer),
        Datagram::Drop(Some(
            "connection rejected by Proxy Protocol connection policy".into()
        ))
    );
    assert_eq!(
        p.udp(QUERY, peer),
        Datagram::Serve {
            skip: 0,
            client: peer
        }
    );
    let p = pp(". {\n proxyproto {\n  default skip\n }\n}");
    assert_eq!(
        p.udp(&bad, peer),
        Datagram::Serve {
            skip: 0,
            client: peer
        }
    );
    // `datagram` gives the payload the chain sees.
    let p = pp(". {\n proxyproto\n}");
    assert_eq!(
        datagram(Some(&p), &with_header, peer),
        Some((QUERY, sa("192.0.2.7:4242")))
    );
    assert_eq!(
        datagram(None, &with_header, peer),
        Some((&with_header[..], peer))
    );
    assert_eq!(datagram(Some(&p), &tcp, peer), None);
}

#[test]
fn udp_sessions_name_the_headerless_datagrams() {
    let p = ProxyProto::new(Vec::new(), None, Some((Duration::from_millis(300), 2)));
    let spectrum = sa(C);
    let only = v2(PROXY, 0x12, &v4_addrs(), &[]);
    // The header-only datagram starts the session and is not answered.
    assert_eq!(p.udp(&only, spectrum), Datagram::Drop(None));
    assert_eq!(
        p.udp(QUERY, spectrum),
        Datagram::Serve {
            skip: 0,
            client: sa("192.0.2.7:4242")
        }
    );
    // Another remote has no session.
    assert_eq!(
        p.udp(QUERY, sa("127.0.0.1:6666")),
        Datagram::Serve {
            skip: 0,
            client: sa("127.0.0.1:6666")
        }
    );
    // A v4-mapped client reads as IPv4.
    let mut mapped = vec![0u8; 10];
    mapped.extend_from_slice(&[0xff, 0xff, 192, 0, 2, 9]);
    mapped.extend_from_slice(&[0u8; 16]);
    mapped.extend_from_slice(&[0x10, 0x92, 0, 53]);
    let mut m = v2(PROXY, 0x22, &mapped, &[]);
    m.extend_from_slice(QUERY);
    assert_eq!(
        ProxyProto::new(Vec::new(), None, None).udp(&m, sa("127.0.0.9:1")),
        Datagram::Serve {
            skip: 52,
            client: sa("192.0.2.9:4242")
        }
    );
    // At most 2 sessions: the least recently used goes.
    let s = p.sessions.as_ref().expect("sessions");
    s.store(sa("127.0.0.2:1"), sa("192.0.2.8:1"));
    assert_eq!(s.lookup(spectrum), Some(sa("192.0.2.7:4242")));
    s.store(sa("127.0.0.3:1"), sa("192.0.2.9:1"));
    assert_eq!(s.len(), 2);
    assert_eq!(s.lookup(sa("127.0.0.2:1")), None);
    assert_eq!(s.lookup(spectrum), Some(sa("192.0.2.7:4242")));
    // Sessions end `ttl` after their last use.
    std::thread::sleep(Duration::from_millis(350));
    assert_eq!(s.lookup(spectrum), None);
    assert_eq!(
        p.udp(QUERY, spectrum),
        Datagram::Serve {
            skip: 0,
            client: spectrum
        }
    );
}

#[test]
fn cidrs_as_go_reads_them() {
    let c = Cidr::parse("::ffff:10.0.0.0/104").expect("mapped");
    assert!(c.contains("10.1.2.3".parse().expect("ip")));
    assert!(!c.contains("11.1.2.3".parse().expect("ip")));
    assert!(Cidr::parse("10.0.0.0/08").is_err());
    // net.ParseCIDR (proxyproto's `allow`) takes leading zeros.
    let c = Cidr::parse_net("10.0.0.0/008").expect("leading zeros");
    assert!(c.contains("10.9.9.9".parse().expect("ip")));
    assert!(!c.contains("11.0.0.1".parse().expect("ip")));
    assert!(Cidr::parse_net("10.0.0.0/033").is_err());
    assert!(Cidr::parse_net("10.0.0.0/").is_err());
    assert!(Cidr::parse("10.0.0.0/-1").is_err());
    let c = Cidr::parse("0.0.0.0/0").expect("all");
    assert!(c.contains("203.0.113.1".parse().expect("ip")));
    assert!(!c.contains("2001:db8::1".parse().expect("ip")));
}

#[tokio::test(flavor = "current_thread")]
async fn tcp_headers_are_taken_exactly() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    let p = pp(". {\n proxyproto\n}");
    let wait = Duration::from_secs(2);
    // v1, v2 (sent in two pieces: v1's line must come whole, as go-proxyproto reads it
    // from one buffer fill) and none: the octets after the header are the client's.
    let heads: Vec<Vec<u8>> = vec![
        b"PROXY TCP4 192.0.2.7 198.51.100.1 4242 53\r\n".to_vec(),
        v2(PROXY, 0x11, &v4_addrs(), &[1, 0, 0]),
        Vec::new(),
    ];
    for head in heads {
        let mut c = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (mut s, peer) = l.accept().await.expect("accept");
        let split = if head.starts_with(b"PROXY") {
            head.len()
        } else {
            head.len().min(10)
        };
        c.write_all(&head[..split]).await.expect("write");
        let rest = head[split..].to_vec();
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            c.write_all(&rest).await.expect("write");
            c.write_all(b"\x00\x11DNS").await.expect("write");
            c
        });
        let local = s.local_addr().expect("local");
        let got = p.tcp(&mut s, peer, local, wait).await.expect("header");
        if head.is_empty() {
            assert_eq!(got, (peer, local));
        } else {
            assert_eq!(got, (sa("192.0.2.7:4242"), sa("198.51.100.1:53")));
        }
        let mut b = [0u8; 5];
        s.read_exact(&mut b).await.expect("read");
        assert_eq!(&b, b"\x00\x11DNS");
        drop(writer.await);
    }
    // A malformed header, a v1 line cut short, or a header REJECT refuses closes the
    // connection.
    let reject = pp(". {\n proxyproto {\n  allow 10.0.0.0/8\n  default reject\n }\n}");
    for (pol, head) in [
        (&p, b"PROXY TCP4 1.2.3.4 1.2.3.4 01 2\r\n".to_vec()),
        (&p, b"PROXY TCP4 1.2.3.4 1.2".to_vec()),
        (&reject, b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2\r\n".to_vec()),
    ] {
        let mut c = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (mut s, peer) = l.accept().await.expect("accept");
        c.write_all(&head).await.expect("write");
        let local = s.local_addr().expect("local");
        assert!(pol.tcp(&mut s, peer, local, wait).await.is_err());
    }
    // A client that sends half a signature and stops: closed after the wait.
    let mut c = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut s, peer) = l.accept().await.expect("accept");
    c.write_all(b"PRO").await.expect("write");
    let local = s.local_addr().expect("local");
    let t = std::time::Instant::now();
    assert!(
        p.tcp(&mut s, peer, local, Duration::from_millis(100))
            .await
            .is_err()
    );
    assert!(t.elapsed() < Duration::from_secs(1));
}
