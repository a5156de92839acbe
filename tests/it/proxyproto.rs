//! *proxyproto*: PROXY headers before UDP datagrams and TCP streams, on both
//! backends; the client the chain sees is the header's (whoami answers with it, log
//! prints it), the reply goes to the sender.

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::Duration;

use crate::util::*;

/// v2 header: PROXY command, `family`, then `addrs`.
fn v2(family: u8, addrs: &[u8]) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(0x21);
    h.push(family);
    h.extend_from_slice(&(addrs.len() as u16).to_be_bytes());
    h.extend_from_slice(addrs);
    h
}

/// 192.0.2.7:4242 → 198.51.100.1:53, for family 0x11 (TCP) or 0x12 (UDP).
fn v2_v4(family: u8) -> Vec<u8> {
    v2(family, &[192, 0, 2, 7, 198, 51, 100, 1, 0x10, 0x92, 0, 53])
}

/// 2001:db8::7 port 4242 → 2001:db8::1 port 53, TCP.
fn v2_v6() -> Vec<u8> {
    let mut a = Vec::new();
    a.extend_from_slice(
        &"2001:db8::7"
            .parse::<std::net::Ipv6Addr>()
            .expect("v6")
            .octets(),
    );
    a.extend_from_slice(
        &"2001:db8::1"
            .parse::<std::net::Ipv6Addr>()
            .expect("v6")
            .octets(),
    );
    a.extend_from_slice(&[0x10, 0x92, 0, 53]);
    v2(0x21, &a)
}

fn skip_name(m: &[u8], mut p: usize) -> usize {
    while p < m.len() {
        let l = m[p];
        if l & 0xC0 == 0xC0 {
            return p + 2;
        }
        if l == 0 {
            return p + 1;
        }
        p += 1 + usize::from(l);
    }
    p
}

/// The records after the question: (type, RDATA).
fn records(m: &[u8]) -> Vec<(u16, Vec<u8>)> {
    let count = |i: usize| usize::from(u16::from_be_bytes([m[4 + 2 * i], m[5 + 2 * i]]));
    let mut p = skip_name(m, 12) + 4;
    let mut out = Vec::new();
    for _ in 0..count(1) + count(2) + count(3) {
        p = skip_name(m, p);
        let t = u16::from_be_bytes([m[p], m[p + 1]]);
        let len = usize::from(u16::from_be_bytes([m[p + 8], m[p + 9]]));
        out.push((t, m[p + 10..p + 10 + len].to_vec()));
        p += 10 + len;
    }
    out
}

/// whoami's view of the client: its address (A or AAAA RDATA) and port (SRV).
fn whoami(m: &[u8]) -> (std::net::IpAddr, u16) {
    let rrs = records(m);
    let ip = rrs
        .iter()
        .find_map(|(t, r)| match (t, r.len()) {
            (1, 4) => Some(std::net::IpAddr::from([r[0], r[1], r[2], r[3]])),
            (28, 16) => {
                let mut a = [0u8; 16];
                a.copy_from_slice(r);
                Some(std::net::IpAddr::from(a))
            }
            _ => None,
        })
        .expect("address record");
    let port = rrs
        .iter()
        .find_map(|(t, r)| (*t == 33).then(|| u16::from_be_bytes([r[4], r[5]])))
        .expect("SRV");
    (ip, port)
}

fn udp(s: &UdpSocket, port: u16, msg: &[u8]) -> Option<Vec<u8>> {
    s.send_to(msg, ("127.0.0.1", port)).expect("send");
    let mut buf = vec![0u8; 4096];
    let n = s.recv(&mut buf).ok()?;
    buf.truncate(n);
    Some(buf)
}

fn udp_socket() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.set_read_timeout(Some(Duration::from_millis(700)))
        .expect("timeout");
    s
}

/// A TCP query after `head`: the reply, or `None` when the server closed.
fn tcp(port: u16, head: &[u8], name: &str) -> Option<Vec<u8>> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(1500))).ok()?;
    let q = query(7, name, 1, 1, None);
    let mut out = head.to_vec();
    out.extend_from_slice(&(q.len() as u16).to_be_bytes());
    out.extend_from_slice(&q);
    s.write_all(&out).ok()?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len).ok()?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut buf).ok()?;
    Some(buf)
}

fn ip(s: &str) -> std::net::IpAddr {
    s.parse().expect("ip")
}

#[test]
fn udp_and_tcp_clients_are_the_headers() {
    for be in backends() {
        let s = TestServer::start(".:{port} {\n proxyproto\n log\n whoami\n}\n", be);
        let q = query(0x1234, "example.org.", 1, 1, None);
        // UDP: a v2 header names the client; the reply comes back to our socket.
        let sock = udp_socket();
        let mut m = v2_v4(0x12);
        m.extend_from_slice(&q);
        let r = udp(&sock, s.port, &m).expect("reply");
        assert_eq!(whoami(&r), (ip("192.0.2.7"), 4242), "{be}");
        assert!(
            s.wait_line(|l| l.starts_with("[INFO] 192.0.2.7:4242 - 4660 \"A IN example.org. udp "))
                .is_some(),
            "{be}: {:?}",
            s.lines()
        );
        // No header: the socket's address.
        let r = udp(&sock, s.port, &q).expect("reply");
        let mine = sock.local_addr().expect("addr");
        assert_eq!(whoami(&r), (mine.ip(), mine.port()), "{be}");
        // A TCP-family header over UDP: dropped, with CoreDNS's warning.
        let mut m = v2_v4(0x11);
        m.extend_from_slice(&q);
        assert!(udp(&sock, s.port, &m).is_none(), "{be}");
        let want = format!(
            "[WARNING] dropping invalid Proxy Protocol packet from {mine}: PROXY Protocol header is not UDP type (transport protocol: 0x11)"
        );
        assert!(
            s.wait_line(|l| l == want).is_some(),
            "{be}: {:?}",
            s.lines()
        );
        // TCP: v1 and v2 (IPv6) headers; without one, the socket's address.
        let r = tcp(
            s.port,
            b"PROXY TCP4 192.0.2.7 198.51.100.1 4242 53\r\n",
            "example.org.",
        )
        .expect("v1");
        assert_eq!(whoami(&r), (ip("192.0.2.7"), 4242), "{be}");
        let r = tcp(s.port, &v2_v6(), "example.org.").expect("v2");
        assert_eq!(whoami(&r), (ip("2001:db8::7"), 4242), "{be}");
        let r = tcp(s.port, b"", "example.org.").expect("plain");
        assert_eq!(whoami(&r).0, ip("127.0.0.1"), "{be}");
        // A malformed header closes the connection unanswered.
        assert!(
            tcp(
                s.port,
                b"PROXY TCP4 192.0.2.7 x 4242 53\r\n",
                "example.org."
            )
            .is_none(),
            "{be}"
        );
        assert!(
            s.wait_line(|l| l.contains("192.0.2.7:4242 - 7 \"A IN example.org. tcp "))
                .is_some(),
            "{be}: {:?}",
            s.lines()
        );
    }
}

#[test]
fn allow_default_and_udp_sessions() {
    for be in backends() {
        let s = TestServer::start(
            ".:{port} {\n proxyproto {\n  allow 10.0.0.0/8\n  default reject\n }\n whoami\n}\n",
            be,
        );
        let q = query(1, "example.org.", 1, 1, None);
        let sock = udp_socket();
        // 127.0.0.1 is outside `allow`: a header is refused, a plain query served.
        let mut m = v2_v4(0x12);
        m.extend_from_slice(&q);
        assert!(udp(&sock, s.port, &m).is_none(), "{be}");
        assert!(
            s.wait_line(
                |l| l.ends_with(": connection rejected by Proxy Protocol connection policy")
            )
            .is_some(),
            "{be}"
        );
        assert!(udp(&sock, s.port, &q).is_some(), "{be}");
        assert!(tcp(s.port, &v2_v4(0x11), "example.org.").is_none(), "{be}");
        assert!(tcp(s.port, b"", "example.org.").is_some(), "{be}");
        drop(s);

        // Spectrum: a header-only datagram, then headerless ones from the same address.
        let s = TestServer::start(
            ".:{port} {\n proxyproto {\n  udp_session_tracking 30s\n }\n whoami\n}\n",
            be,
        );
        let sock = udp_socket();
        assert!(udp(&sock, s.port, &v2_v4(0x12)).is_none(), "{be}");
        let r = udp(&sock, s.port, &q).expect("reply");
        assert_eq!(whoami(&r), (ip("192.0.2.7"), 4242), "{be}");
        let other = udp_socket();
        let r = udp(&other, s.port, &q).expect("reply");
        assert_eq!(whoami(&r).0, ip("127.0.0.1"), "{be}");
    }
}

#[test]
fn a_reload_turns_tcp_headers_on_and_off() {
    // On io_uring a listener's TCP connections move to the side worker while its blocks
    // have proxyproto; a reload that adds or removes it moves them.
    for be in backends() {
        let plain = ".:{port} {\n whoami\n}\n";
        let s = TestServer::start(plain, be);
        let conf = s.dir.0.join("Corefile");
        let with = ".:{port} {\n proxyproto\n whoami\n}\n".replace("{port}", &s.port.to_string());
        let head = b"PROXY TCP4 192.0.2.7 198.51.100.1 4242 53\r\n";
        assert!(tcp(s.port, b"", "example.org.").is_some(), "{be}");
        write_atomic(&conf, &with).expect("write");
        s.signal(nix::sys::signal::Signal::SIGUSR1);
        assert!(
            wait_for(Duration::from_secs(5), || {
                tcp(s.port, head, "example.org.").is_some_and(|r| whoami(&r).0 == ip("192.0.2.7"))
            }),
            "{be}: {:?}",
            s.lines()
        );
        write_atomic(&conf, plain.replace("{port}", &s.port.to_string())).expect("write");
        s.signal(nix::sys::signal::Signal::SIGUSR1);
        assert!(
            wait_for(Duration::from_secs(5), || tcp(s.port, head, "example.org.")
                .is_none()),
            "{be}"
        );
        let r = tcp(s.port, b"", "example.org.").expect("plain");
        assert_eq!(whoami(&r).0, ip("127.0.0.1"), "{be}");
    }
}
