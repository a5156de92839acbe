//! The per-worker pool against in-process upstreams: UDP sharing and its
//! bound, ICMP errors, TCP reuse and expiry, dial timeouts, health checks and
//! the metrics text.

use super::*;

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
        host: None,
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

/// One exchange with a 512-byte client limit, starting now.
async fn exchange(
    up: &proxy::Upstream,
    local: &proxy::Local,
    q: &mut [u8],
    net: Net,
) -> Result<crate::server::bufpool::Buf, proxy::Fail> {
    proxy::exchange(up, local, q, net, 512, tokio::time::Instant::now()).await
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
    let local = Rc::new(Local::new(&up));
    let set = tokio::task::LocalSet::new();
    let results = set.block_on(&rt(), async {
        let mut hs = Vec::new();
        for i in 0..N {
            let (up, local) = (Rc::clone(&up), Rc::clone(&local));
            hs.push(tokio::task::spawn_local(async move {
                let mut q = msg(0, 0x0100, &format!("q{i}.example."), 1, &[], None);
                let r = exchange(&up, &local, &mut q, Net::Udp).await;
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
    assert_eq!(local.in_flight(), (0, 0), "every slot released");
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
    let local = Rc::new(Local::new(&up));
    let total = proxy::UDP_SOCKETS * udp::SLOTS_PER_SOCKET + 100;
    let before = metrics::PENDING_FULL.load(Ordering::Relaxed);
    let set = tokio::task::LocalSet::new();
    let (full, timeouts) = set.block_on(&rt(), async {
        let mut hs = Vec::new();
        for _ in 0..total {
            let (up, local) = (Rc::clone(&up), Rc::clone(&local));
            hs.push(tokio::task::spawn_local(async move {
                let mut q = msg(0, 0x0100, "x.example.", 1, &[], None);
                exchange(&up, &local, &mut q, Net::Udp).await
            }));
        }
        // Every query has taken its slot (or been refused); none has timed out yet.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(local.in_flight(), (proxy::k_max(), 0));
        let gauge = format!(
            "ringdns_forward_queries_in_flight{{proto=\"udp\",proxy_name=\"forward\",to=\"{addr}\"}} {}",
            proxy::k_max()
        );
        let t = metrics::render();
        assert!(t.lines().any(|l| l == gauge), "missing {gauge}\n{t}");
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
    assert_eq!(local.in_flight(), (0, 0), "every slot released");
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
        exchange(&up, &local, &mut q, Net::Udp).await
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
    use std::io::Write;
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    let conns = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c2 = Arc::clone(&conns);
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            c2.fetch_add(1, Ordering::Relaxed);
            std::thread::spawn(move || {
                while let Some(f) = super::tcp_echo_frame(&mut s) {
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
    let local = Local::new(&up);
    let rt = rt();
    for _ in 0..3 {
        let r = rt.block_on(async {
            let mut q = msg(0, 0x0100, "x.example.", 1, &[], None);
            exchange(&up, &local, &mut q, Net::Tcp).await
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
        exchange(&up, &local, &mut q, Net::Tcp).await
    });
    assert!(r.is_ok());
    assert_eq!(conns.load(Ordering::Relaxed), 2);
    assert_eq!(local.in_flight(), (0, 0));
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
    // Two workers' counters are summed; a dropped one (its worker's pools gone)
    // no longer counts.
    let (w1, w2, w3) = (m.in_flight("tcp"), m.in_flight("tcp"), m.in_flight("tcp"));
    metrics::inc(&w1.udp);
    metrics::inc(&w1.udp);
    metrics::inc(&w2.udp);
    metrics::inc(&w2.streams);
    metrics::inc(&w3.udp);
    drop(w3);
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
        "# TYPE ringdns_forward_queries_in_flight gauge",
        "ringdns_forward_queries_in_flight{proto=\"udp\",proxy_name=\"forward\",to=\"198.51.100.7:53\"} 3",
        "ringdns_forward_queries_in_flight{proto=\"tcp\",proxy_name=\"forward\",to=\"198.51.100.7:53\"} 1",
        "# TYPE ringdns_forward_in_flight_full_total counter",
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
    metrics::dec(&w1.udp);
    metrics::dec(&w2.streams);
    let t = metrics::render();
    assert!(t.lines().any(|l| l == "ringdns_forward_queries_in_flight{proto=\"udp\",proxy_name=\"forward\",to=\"198.51.100.7:53\"} 2"), "{t}");
    drop((w1, w2));
    let t = metrics::render();
    assert!(
        !t.lines()
            .any(|l| l.starts_with("ringdns_forward_queries_in_flight{")
                && l.contains("198.51.100.7:53")),
        "no worker uses the upstream: no series\n{t}"
    );
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

/// Echoes one UDP query (QR set) and reports the client's address.
fn echo_once(bind: &str) -> Option<(SocketAddr, std::thread::JoinHandle<Option<SocketAddr>>)> {
    let s = UdpSocket::bind(bind).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    let addr = s.local_addr().ok()?;
    let h = std::thread::spawn(move || {
        let mut b = [0u8; 512];
        let (n, p) = s.recv_from(&mut b).ok()?;
        b[2] |= 0x80;
        s.send_to(&b[..n], p).ok()?;
        Some(p)
    });
    Some((addr, h))
}

#[test]
fn ipv6_upstream_and_source_address() {
    let rt = rt();
    // IPv6 loopback, where available.
    if let Some((addr, h)) = echo_once("[::1]:0") {
        let up = upstream(addr, Duration::from_secs(2), 0, Duration::from_secs(10));
        let local = Local::default();
        let r = rt.block_on(async {
            let mut q = msg(0, 0x0100, "v6.example.", 28, &[], None);
            exchange(&up, &local, &mut q, Net::Udp).await
        });
        assert!(r.is_ok(), "{r:?}");
        assert!(h.join().expect("join").expect("peer").is_ipv6());
    } else {
        println!("no IPv6 loopback: skipping the [::1] upstream");
    }
    // source_address: queries leave from that address.
    let (addr, h) = echo_once("127.0.0.1:0").expect("bind");
    let mut up = upstream(addr, Duration::from_secs(2), 0, Duration::from_secs(10));
    up.opts.source = Some("127.0.0.2".parse().expect("ip"));
    let local = Local::default();
    let r = rt.block_on(async {
        let mut q = msg(0, 0x0100, "src.example.", 1, &[], None);
        exchange(&up, &local, &mut q, Net::Udp).await
    });
    assert!(r.is_ok(), "{r:?}");
    let peer = h.join().expect("join").expect("peer");
    assert_eq!(peer.ip().to_string(), "127.0.0.2");
}

/// The dial time a DoT upstream's adaptive timeout averages includes the TLS
/// handshake, as Go's `tls.Dialer` dial does: an upstream that takes 400 ms to
/// answer the handshake (here: then closes) moves the average by ~100 ms
/// (a quarter), where the TCP connect alone would move it by ~0.
#[test]
fn dot_dial_time_includes_the_handshake() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    let server = std::thread::spawn(move || {
        if let Ok((s, _)) = l.accept() {
            std::thread::sleep(Duration::from_millis(400));
            drop(s);
        }
    });
    let cfg = parse(&format!(
        "forward . tls://{addr} {{\ntls_servername dns.example\n}}"
    ))
    .expect("config");
    let fw = Forward::new(&cfg).expect("build");
    let up = &fw.upstreams(0)[0];
    // From 15 s, one dial of d moves the average to 11.25 s + d/4; the timeout is twice it.
    let base = Duration::from_millis(22_500);
    let local = Local::default();
    let mut q = super::msg(5, 0x0100, "a.example.", 1, &[], None);
    let r = rt().block_on(exchange(up, &local, &mut q, Net::Tcp));
    assert!(r.is_err(), "no TLS server: {r:?}");
    let t = up.dial_timeout();
    assert!(t >= base + Duration::from_millis(180), "{t:?}");
    assert!(t < base + Duration::from_secs(2), "{t:?}");
    let _ = server.join();
}

/// A pooled TCP connection the upstream closes after sending only a reply's length:
/// Go's io.ReadFull reads no byte of the message, so `EOF`, and CoreDNS retries on a
/// new connection without counting an attempt (`ErrCachedClosed`); a fresh
/// connection doing the same fails with `EOF`, and one cut inside the message
/// with `unexpected EOF`.
#[test]
fn tcp_length_then_close_reads_as_eof() {
    use std::io::Write;
    // Per connection: answer one query whole, then cut the next after `cut` bytes of
    // its message (its 2-byte length first).
    fn server(cut: usize) -> SocketAddr {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        std::thread::spawn(move || {
            for (i, s) in l.incoming().enumerate() {
                let Ok(mut s) = s else { return };
                std::thread::spawn(move || {
                    for n in 0.. {
                        let Some(f) = super::tcp_echo_frame(&mut s) else {
                            return;
                        };
                        if n == 1 || (i == 1 && n == 0) {
                            let _ = s.write_all(&f[..2 + cut]);
                            return;
                        }
                        if s.write_all(&f).is_err() {
                            return;
                        }
                    }
                });
                if i > 1 {
                    return;
                }
            }
        });
        addr
    }
    let rt = rt();
    let q = || msg(0, 0x0100, "x.example.", 1, &[], None);
    for (cut, fresh) in [(0, "EOF"), (3, "unexpected EOF")] {
        let up = upstream(
            server(cut),
            Duration::from_secs(2),
            0,
            Duration::from_secs(10),
        );
        let local = Local::default();
        let r = rt.block_on(exchange(&up, &local, &mut q(), Net::Tcp));
        assert!(r.is_ok(), "{r:?}");
        // The pooled connection is cut after the length (or inside the message).
        let r = rt.block_on(exchange(&up, &local, &mut q(), Net::Tcp));
        let want = if cut == 0 {
            Fail::CachedClosed
        } else {
            Fail::io(fresh)
        };
        assert_eq!(r.err(), Some(want), "cut {cut}: pooled");
        // A fresh connection (the second) cut the same way.
        let r = rt.block_on(exchange(&up, &local, &mut q(), Net::Tcp));
        assert_eq!(r.err(), Some(Fail::io(fresh)), "cut {cut}: fresh");
    }
}
