//! End-to-end tests of the io_uring engine over loopback sockets: UDP echo, multishot re-arm
//! after buffer exhaustion, TCP framing/ordering/limits/timeouts, send-slot exhaustion, the
//! notification fd and shutdown with operations in flight. Each test skips (with a printed
//! reason) where the probe says io_uring is unavailable.

use std::collections::HashSet;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

use uring::{ConnId, Engine, EngineConfig, EngineHandle, Event, SocketId};

fn engine(cfg: EngineConfig) -> Option<Engine> {
    if let Err(reason) = uring::probe() {
        println!("skipping: io_uring unavailable: {reason}");
        return None;
    }
    Some(Engine::new(cfg).expect("Engine::new"))
}

/// Datagram `i`: its index, then a pattern; 4 to 1403 bytes.
fn payload(i: u32) -> Vec<u8> {
    let len = 4 + (i as usize * 37) % 1400;
    let mut v = i.to_be_bytes().to_vec();
    v.extend((4..len).map(|j| (j as u32 ^ i) as u8));
    v
}

fn framed(msg: &[u8]) -> Vec<u8> {
    let mut v = (msg.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(msg);
    v
}

fn read_frame(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len)?;
    let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut msg)?;
    Ok(msg)
}

/// True if the peer closed `s` (end of file or reset) within its read timeout.
fn is_closed(mut s: &TcpStream) -> bool {
    let mut b = [0u8; 64];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// One round: submit, wait up to 10ms for a completion, dispatch events.
fn pump(e: &mut Engine, f: &mut dyn FnMut(&mut EngineHandle<'_>, Event<'_>)) {
    e.submit_and_wait(1, Some(Duration::from_millis(10)))
        .expect("submit_and_wait");
    e.poll_events(f);
}

/// Pumps until `done(engine)` or a deadline.
fn pump_until(
    e: &mut Engine,
    f: &mut dyn FnMut(&mut EngineHandle<'_>, Event<'_>),
    mut done: impl FnMut(&Engine) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done(e) {
        assert!(
            Instant::now() < deadline,
            "timed out; stats {:?}",
            e.stats()
        );
        pump(e, f);
    }
}

fn ignore(_: &mut EngineHandle<'_>, _: Event<'_>) {}

fn udp_pair(e: &mut Engine) -> (SocketId, SocketAddr, UdpSocket) {
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap();
    let sock = e.add_udp(server).unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    (sock, addr, client)
}

fn tcp_listener(e: &mut Engine) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    e.add_tcp_listener(l).unwrap();
    addr
}

#[test]
fn probe_reports() {
    match uring::probe() {
        Ok(()) => {
            let e = Engine::new(EngineConfig::default()).expect("Engine::new");
            println!("io_uring available: {}", e.mode());
        }
        Err(reason) => println!("skipping: io_uring unavailable: {reason}"),
    }
}

#[test]
fn udp_echo() {
    let Some(mut e) = engine(EngineConfig::default()) else {
        return;
    };
    let (_, addr, client) = udp_pair(&mut e);
    let client = thread::spawn(move || -> Result<HashSet<u32>, String> {
        let mut buf = [0u8; 2048];
        let mut seen = HashSet::new();
        let all: Vec<u32> = (0..1000).collect();
        for window in all.chunks(16) {
            for &i in window {
                client
                    .send_to(&payload(i), addr)
                    .map_err(|e| e.to_string())?;
            }
            for _ in window {
                let (n, from) = client
                    .recv_from(&mut buf)
                    .map_err(|e| format!("recv after {}: {e}", seen.len()))?;
                if from != addr || n < 4 {
                    return Err(format!("bad reply from {from}, {n} bytes"));
                }
                let i = u32::from_be_bytes(buf[..4].try_into().unwrap());
                if buf[..n] != payload(i)[..] {
                    return Err(format!("datagram {i} differs"));
                }
                seen.insert(i);
            }
        }
        Ok(seen)
    });
    let mut echo = |h: &mut EngineHandle<'_>, ev: Event<'_>| {
        if let Event::Udp {
            sock,
            peer,
            data,
            truncated,
        } = ev
        {
            assert!(!truncated);
            h.send_udp(sock, peer, data).unwrap();
        }
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !client.is_finished() {
        assert!(Instant::now() < deadline, "echo timed out: {:?}", e.stats());
        pump(&mut e, &mut echo);
    }
    let seen = client.join().unwrap().unwrap();
    assert_eq!(seen, (0..1000).collect::<HashSet<_>>());
    pump_until(&mut e, &mut echo, |e| e.stats().udp_sent == 1000);
    let s = e.stats();
    assert_eq!(s.udp_received, 1000);
    assert_eq!(s.udp_send_errors, 0);
    e.shutdown();
}

#[test]
fn multishot_rearms_after_buffer_exhaustion() {
    let cfg = EngineConfig {
        udp_buf_count: 8,
        ..EngineConfig::default()
    };
    let Some(mut e) = engine(cfg) else {
        return;
    };
    let (_, addr, client) = udp_pair(&mut e);
    e.submit().unwrap();
    // Five times more datagrams than buffers arrive before anything is reaped.
    for i in 0..40 {
        client.send_to(&payload(i % 50), addr).unwrap();
    }
    thread::sleep(Duration::from_millis(50));
    let mut got = 0u32;
    let mut count = |_: &mut EngineHandle<'_>, ev: Event<'_>| {
        if let Event::Udp { data, .. } = ev {
            assert_eq!(data, payload(got % 50));
            got += 1;
        }
    };
    pump_until(&mut e, &mut count, |e| e.stats().udp_received == 40);
    let s = e.stats();
    assert!(s.udp_rearms >= 1, "{s:?}");
    assert!(s.udp_no_buffers >= 1, "{s:?}");
    // And it keeps receiving afterwards.
    for i in 40..60 {
        client.send_to(&payload(i % 50), addr).unwrap();
    }
    pump_until(&mut e, &mut count, |e| e.stats().udp_received == 60);
    assert_eq!(got, 60);
}

#[test]
fn udp_truncation_is_flagged() {
    let cfg = EngineConfig {
        udp_buf_size: 512,
        ..EngineConfig::default()
    };
    let Some(mut e) = engine(cfg) else {
        return;
    };
    let (_, addr, client) = udp_pair(&mut e);
    client.send_to(&[7u8; 512], addr).unwrap();
    client.send_to(&[8u8; 600], addr).unwrap();
    let mut seen = Vec::new();
    let mut record = |_: &mut EngineHandle<'_>, ev: Event<'_>| {
        if let Event::Udp {
            data, truncated, ..
        } = ev
        {
            seen.push((data.len(), data[0], truncated));
        }
    };
    pump_until(&mut e, &mut record, |e| e.stats().udp_received == 2);
    assert_eq!(seen, [(512, 7, false), (512, 8, true)]);
    assert_eq!(e.stats().udp_truncated, 1);
}

/// Replies "re:" + message to every TCP message.
fn tcp_echo(h: &mut EngineHandle<'_>, ev: Event<'_>) {
    if let Event::TcpMessage { conn, data } = ev {
        let mut reply = b"re:".to_vec();
        reply.extend_from_slice(data);
        h.send_tcp(conn, &reply).unwrap();
    }
}

#[test]
fn tcp_framing_and_order() {
    let Some(mut e) = engine(EngineConfig::default()) else {
        return;
    };
    let addr = tcp_listener(&mut e);
    let long: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
    let long2 = long.clone();
    let client = thread::spawn(move || -> std::io::Result<Vec<Vec<u8>>> {
        let mut s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut batch = Vec::new();
        for m in [&b"one"[..], b"two", b"three"] {
            batch.extend(framed(m));
        }
        s.write_all(&batch)?;
        let f = framed(&long2);
        s.write_all(&f[..1])?;
        thread::sleep(Duration::from_millis(50));
        s.write_all(&f[1..100])?;
        thread::sleep(Duration::from_millis(50));
        s.write_all(&f[100..])?;
        (0..4).map(|_| read_frame(&mut s)).collect()
    });
    let mut accepted = Vec::new();
    let mut f = |h: &mut EngineHandle<'_>, ev: Event<'_>| {
        if let Event::Accepted { peer, local, .. } = &ev {
            accepted.push((*peer, *local));
        }
        tcp_echo(h, ev);
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !client.is_finished() {
        assert!(Instant::now() < deadline, "tcp test timed out");
        pump(&mut e, &mut f);
    }
    let replies = client.join().unwrap().unwrap();
    let mut want: Vec<Vec<u8>> = [&b"one"[..], b"two", b"three"]
        .iter()
        .map(|m| [&b"re:"[..], m].concat())
        .collect();
    want.push([&b"re:"[..], &long].concat());
    assert_eq!(replies, want);
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0].1, addr);
    assert_eq!(e.stats().tcp_messages, 4);
    assert_eq!(e.stats().tcp_malformed, 0);
}

#[test]
fn tcp_connection_cap() {
    let cfg = EngineConfig {
        max_tcp_conns: 4,
        ..EngineConfig::default()
    };
    let Some(mut e) = engine(cfg) else {
        return;
    };
    let addr = tcp_listener(&mut e);
    let clients: Vec<TcpStream> = (0..6).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let mut accepted = 0;
    let mut count = |_: &mut EngineHandle<'_>, ev: Event<'_>| {
        if let Event::Accepted { .. } = ev {
            accepted += 1;
        }
    };
    pump_until(&mut e, &mut count, |e| {
        let s = e.stats();
        s.tcp_accepted + s.tcp_refused == 6
    });
    assert_eq!(accepted, 4);
    assert_eq!(e.stats().tcp_refused, 2);
    let closed = clients
        .iter()
        .filter(|c| {
            c.set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            is_closed(c)
        })
        .count();
    assert_eq!(closed, 2);
}

#[test]
fn tcp_malformed_frames_close() {
    let cfg = EngineConfig {
        max_tcp_msg: 512,
        ..EngineConfig::default()
    };
    let Some(mut e) = engine(cfg) else {
        return;
    };
    let addr = tcp_listener(&mut e);
    let client = thread::spawn(move || -> std::io::Result<(bool, bool)> {
        let mut empty = TcpStream::connect(addr)?;
        empty.set_read_timeout(Some(Duration::from_secs(5)))?;
        empty.write_all(&[0, 0])?;
        let mut oversize = TcpStream::connect(addr)?;
        oversize.set_read_timeout(Some(Duration::from_secs(5)))?;
        oversize.write_all(&framed(&[1u8; 600]))?;
        Ok((is_closed(&empty), is_closed(&oversize)))
    });
    let mut closed = Vec::new();
    let mut f = |_: &mut EngineHandle<'_>, ev: Event<'_>| {
        if let Event::TcpClosed { conn } = ev {
            closed.push(conn);
        }
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !client.is_finished() {
        assert!(Instant::now() < deadline, "timed out");
        pump(&mut e, &mut f);
    }
    assert_eq!(client.join().unwrap().unwrap(), (true, true));
    assert_eq!(closed.len(), 2);
    assert_eq!(e.stats().tcp_malformed, 2);
    assert_eq!(e.stats().tcp_messages, 0);
}

#[test]
fn tcp_idle_timeout_closes() {
    let cfg = EngineConfig {
        tcp_idle_timeout: Duration::from_millis(200),
        ..EngineConfig::default()
    };
    let Some(mut e) = engine(cfg) else {
        return;
    };
    let addr = tcp_listener(&mut e);
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut closed = 0;
    let mut f = |_: &mut EngineHandle<'_>, ev: Event<'_>| {
        if let Event::TcpClosed { .. } = ev {
            closed += 1;
        }
    };
    pump_until(&mut e, &mut f, |e| e.stats().tcp_closed == 1);
    assert_eq!(closed, 1);
    assert_eq!(e.stats().tcp_timeouts, 1);
    assert!(is_closed(&s));
}

#[test]
fn tcp_close_flushes_queued_reply() {
    let Some(mut e) = engine(EngineConfig::default()) else {
        return;
    };
    let addr = tcp_listener(&mut e);
    let client = thread::spawn(move || -> std::io::Result<(Vec<u8>, bool)> {
        let mut s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(&framed(b"bye"))?;
        let reply = read_frame(&mut s)?;
        Ok((reply, is_closed(&s)))
    });
    let mut stale: Option<ConnId> = None;
    let mut events = 0;
    let mut f = |h: &mut EngineHandle<'_>, ev: Event<'_>| {
        events += 1;
        assert!(!matches!(ev, Event::TcpClosed { .. }));
        if let Event::TcpMessage { conn, data } = ev {
            h.send_tcp(conn, &[data, b"!"].concat()).unwrap();
            h.close_tcp(conn);
            let err = h.send_tcp(conn, b"late").unwrap_err();
            assert_eq!(err.kind(), ErrorKind::NotConnected);
            stale = Some(conn);
        }
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !client.is_finished() {
        assert!(Instant::now() < deadline, "timed out");
        pump(&mut e, &mut f);
    }
    let (reply, closed) = client.join().unwrap().unwrap();
    assert_eq!(reply, b"bye!");
    assert!(closed);
    assert!(stale.is_some());
    assert_eq!(events, 2); // Accepted, TcpMessage
    assert_eq!(e.stats().tcp_closed, 1);
}

#[test]
fn tcp_slow_reader_is_closed_on_queue_overflow() {
    let cfg = EngineConfig {
        max_tcp_queue: 128 * 1024,
        ..EngineConfig::default()
    };
    let Some(mut e) = engine(cfg) else {
        return;
    };
    let addr = tcp_listener(&mut e);
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(&framed(b"q")).unwrap();
    let mut conn = None;
    let mut first = |_: &mut EngineHandle<'_>, ev: Event<'_>| {
        if let Event::TcpMessage { conn: c, .. } = ev {
            conn = Some(c);
        }
    };
    pump_until(&mut e, &mut first, |e| e.stats().tcp_messages == 1);
    let conn = conn.unwrap();
    let mut closed = Vec::new();
    let mut f = |_: &mut EngineHandle<'_>, ev: Event<'_>| {
        if let Event::TcpClosed { conn } = ev {
            closed.push(conn);
        }
    };
    let big = vec![0x5a; 60_000];
    let mut aborted = false;
    for _ in 0..2000 {
        match e.send_tcp(conn, &big) {
            Ok(()) => pump(&mut e, &mut f),
            Err(err) => {
                assert_eq!(err.kind(), ErrorKind::ConnectionAborted);
                aborted = true;
                break;
            }
        }
    }
    assert!(aborted, "queue never overflowed: {:?}", e.stats());
    e.poll_events(&mut f);
    assert_eq!(closed, [conn]);
    assert_eq!(e.stats().tcp_overflow, 1);
    drop(s);
}

#[test]
fn send_slot_exhaustion_then_recovery() {
    let cfg = EngineConfig {
        send_slots: 4,
        ..EngineConfig::default()
    };
    let Some(mut e) = engine(cfg) else {
        return;
    };
    let (sock, _, client) = udp_pair(&mut e);
    let caddr = client.local_addr().unwrap();
    for i in 0..4 {
        e.send_udp(sock, caddr, &payload(i)).unwrap();
    }
    let err = e.send_udp(sock, caddr, &payload(4)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WouldBlock);
    assert_eq!(e.stats().udp_send_slot_exhausted, 1);
    pump_until(&mut e, &mut ignore, |e| e.stats().udp_sent == 4);
    for i in 4..8 {
        e.send_udp(sock, caddr, &payload(i)).unwrap();
    }
    pump_until(&mut e, &mut ignore, |e| e.stats().udp_sent == 8);
    let mut buf = [0u8; 2048];
    for i in 0..8 {
        let (n, _) = client.recv_from(&mut buf).unwrap();
        assert_eq!(buf[..n], payload(i)[..], "datagram {i}");
    }
    assert_eq!(e.stats().udp_send_slot_exhausted, 1);
}

#[test]
fn notify_fd_signals_pending_completions() {
    let Some(mut e) = engine(EngineConfig::default()) else {
        return;
    };
    let (_, addr, client) = udp_pair(&mut e);
    let fd = e.notify_fd();
    e.submit().unwrap();
    client.send_to(b"ping", addr).unwrap();
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `pfd` is one valid pollfd for the duration of the call.
    let n = unsafe { libc::poll(&mut pfd, 1, 5000) };
    assert_eq!(n, 1, "notify fd never became readable");
    let mut got = Vec::new();
    let delivered = e.poll_events(&mut |_, ev| {
        if let Event::Udp { data, .. } = ev {
            got.push(data.to_vec());
        }
    });
    assert_eq!(delivered, 1);
    assert_eq!(got, [b"ping".to_vec()]);
}

#[test]
fn udp_flood_with_small_pools_accounts_for_every_datagram() {
    let cfg = EngineConfig {
        udp_buf_count: 8,
        send_slots: 4,
        ..EngineConfig::default()
    };
    let Some(mut e) = engine(cfg) else {
        return;
    };
    let (_, addr, client) = udp_pair(&mut e);
    e.submit().unwrap();
    let blaster = thread::spawn(move || {
        for i in 0..20_000u32 {
            let _ = client.send_to(&payload(i % 100), addr);
        }
        client
    });
    let mut echo = |h: &mut EngineHandle<'_>, ev: Event<'_>| {
        if let Event::Udp {
            sock, peer, data, ..
        } = ev
        {
            match h.send_udp(sock, peer, data) {
                Ok(()) => {}
                Err(err) => assert_eq!(err.kind(), ErrorKind::WouldBlock),
            }
        }
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !blaster.is_finished() {
        assert!(Instant::now() < deadline, "flood timed out");
        pump(&mut e, &mut echo);
    }
    let client = blaster.join().unwrap();
    // Drain what is still queued, then every datagram was either sent back or dropped.
    let mut last = u64::MAX;
    while e.stats().udp_received != last {
        last = e.stats().udp_received;
        for _ in 0..20 {
            pump(&mut e, &mut echo);
        }
    }
    pump_until(&mut e, &mut echo, |e| {
        let s = e.stats();
        s.udp_sent + s.udp_send_slot_exhausted + s.udp_send_errors == s.udp_received
    });
    let s = e.stats();
    println!("flood: {s:?}");
    assert!(s.udp_received > 0 && s.udp_sent > 0, "{s:?}");
    assert!(s.udp_rearms >= s.udp_no_buffers, "{s:?}");
    // Still healthy: one more round trip.
    client
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = [0u8; 2048];
    while client.recv_from(&mut buf).is_ok() {}
    client.send_to(b"last", addr).unwrap();
    pump_until(&mut e, &mut echo, |e| e.stats().udp_sent == s.udp_sent + 1);
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let (n, _) = client.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"last");
}

#[test]
fn tcp_many_clients_pipelined_with_slot_reuse() {
    let cfg = EngineConfig {
        max_tcp_conns: 32,
        ..EngineConfig::default()
    };
    let Some(mut e) = engine(cfg) else {
        return;
    };
    let addr = tcp_listener(&mut e);
    let mut closed = HashSet::new();
    let mut seen = HashSet::new();
    for round in 0..3u32 {
        let clients: Vec<_> = (0..20u32)
            .map(|c| {
                thread::spawn(move || -> std::io::Result<()> {
                    let mut s = TcpStream::connect(addr)?;
                    s.set_read_timeout(Some(Duration::from_secs(5)))?;
                    let msgs: Vec<Vec<u8>> = (0..20u32)
                        .map(|q| format!("r{round} c{c} q{q}").into_bytes())
                        .collect();
                    s.write_all(&msgs.iter().flat_map(|m| framed(m)).collect::<Vec<u8>>())?;
                    for m in &msgs {
                        assert_eq!(read_frame(&mut s)?, [&b"re:"[..], m].concat());
                    }
                    Ok(())
                })
            })
            .collect();
        let mut f = |h: &mut EngineHandle<'_>, ev: Event<'_>| {
            match &ev {
                Event::Accepted { conn, .. } => assert!(seen.insert(*conn), "id reused"),
                Event::TcpClosed { conn } => assert!(closed.insert(*conn)),
                _ => {}
            }
            tcp_echo(h, ev);
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !clients.iter().all(|c| c.is_finished()) {
            assert!(Instant::now() < deadline, "round {round} timed out");
            pump(&mut e, &mut f);
        }
        for c in clients {
            c.join().unwrap().unwrap();
        }
        let want = u64::from(round + 1) * 20;
        pump_until(&mut e, &mut f, |e| e.stats().tcp_closed == want);
    }
    let s = e.stats();
    assert_eq!(
        (s.tcp_accepted, s.tcp_messages, s.tcp_refused),
        (60, 1200, 0)
    );
    assert_eq!(closed.len(), 60);
    assert_eq!(seen.len(), 60);
}

/// Sets up UDP and TCP traffic with receives, an accepted connection and sends in flight
/// (some submitted, some only queued).
fn busy_engine() -> Option<(Engine, SocketAddr, TcpStream)> {
    let cfg = EngineConfig {
        send_slots: 64,
        ..EngineConfig::default()
    };
    let mut e = engine(cfg)?;
    let (sock, uaddr, client) = udp_pair(&mut e);
    let taddr = tcp_listener(&mut e);
    let mut tcp = TcpStream::connect(taddr).unwrap();
    tcp.write_all(&[0, 9, 1, 2]).unwrap(); // a partial frame: the Recv stays armed
    for i in 0..50 {
        client.send_to(&payload(i), uaddr).unwrap();
    }
    pump_until(&mut e, &mut ignore, |e| e.stats().tcp_accepted == 1);
    let caddr = client.local_addr().unwrap();
    for i in 0..32 {
        e.send_udp(sock, caddr, &payload(i)).unwrap();
    }
    e.submit().unwrap();
    for i in 0..32 {
        e.send_udp(sock, caddr, &payload(i)).unwrap();
    }
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    Some((e, uaddr, tcp))
}

#[test]
fn shutdown_with_ops_in_flight() {
    let Some((e, uaddr, tcp)) = busy_engine() else {
        return;
    };
    let t = Instant::now();
    e.shutdown();
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert!(is_closed(&tcp));
    // The UDP socket was closed too.
    UdpSocket::bind(uaddr).unwrap();
}

#[test]
fn drop_with_ops_in_flight() {
    let Some((e, uaddr, tcp)) = busy_engine() else {
        return;
    };
    drop(e);
    assert!(is_closed(&tcp));
    UdpSocket::bind(uaddr).unwrap();
}

/// Upstream sockets: queries go out from the ring, every reply comes back as an event, an
/// ICMP port unreachable is reported once and the socket keeps working, a removed socket is
/// closed and its id never reaches the slot's next socket.
#[test]
fn upstream_sockets_send_receive_errors_and_removal() {
    let Some(mut e) = engine(EngineConfig::default()) else {
        return;
    };
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.connect(peer.local_addr().unwrap()).unwrap();
    let local = sock.local_addr().unwrap();
    let id = e.add_upstream_udp(sock).unwrap();
    // Queries out (one batch), replies in.
    for i in 0..20u32 {
        e.send_upstream_udp(id, &payload(i)).unwrap();
    }
    e.submit().unwrap();
    let mut buf = [0u8; 2048];
    for i in 0..20u32 {
        let (n, from) = peer.recv_from(&mut buf).unwrap();
        assert_eq!(from, local);
        assert_eq!(buf[..n], payload(i)[..]);
        peer.send_to(&buf[..n], from).unwrap();
    }
    let mut got = Vec::new();
    let mut errors = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.len() < 20 {
        assert!(Instant::now() < deadline, "replies lost: {}", got.len());
        pump(&mut e, &mut |_, ev| match ev {
            Event::UpstreamUdp { id: i, data } => {
                assert_eq!(i, id);
                got.push(data.to_vec());
            }
            Event::UpstreamError { .. } => errors += 1,
            _ => {}
        });
    }
    assert_eq!(errors, 0);
    assert_eq!(got, (0..20).map(payload).collect::<Vec<_>>());

    // A peer that is gone: the ICMP unreachable is reported once (ECONNREFUSED, not a send),
    // and the socket still works afterwards.
    let gone = UdpSocket::bind("127.0.0.1:0").unwrap();
    let gone_addr = gone.local_addr().unwrap();
    drop(gone);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.connect(gone_addr).unwrap();
    let dead = e.add_upstream_udp(sock).unwrap();
    e.send_upstream_udp(dead, b"hello").unwrap();
    let mut refused = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while refused.is_empty() {
        assert!(Instant::now() < deadline, "no error reported");
        pump(&mut e, &mut |_, ev| {
            if let Event::UpstreamError { id, error, write } = ev {
                refused.push((id, error.kind(), write));
            }
        });
    }
    // Still usable: a second send reaches the kernel (and is refused again).
    e.send_upstream_udp(dead, b"again").unwrap();
    assert_eq!(refused, vec![(dead, ErrorKind::ConnectionRefused, false)]);

    // Removal: no more events for the id, the socket is closed, the id is dead.
    e.remove_upstream_udp(id);
    e.submit().unwrap();
    peer.send_to(b"late", local).unwrap();
    let mut late = 0;
    let until = Instant::now() + Duration::from_millis(200);
    while Instant::now() < until {
        pump(&mut e, &mut |_, ev| {
            if matches!(ev, Event::UpstreamUdp { .. }) {
                late += 1;
            }
        });
    }
    assert_eq!(late, 0, "an event for a removed socket");
    assert_eq!(
        e.send_upstream_udp(id, b"x").unwrap_err().kind(),
        ErrorKind::NotConnected
    );
    // The closed socket's port can be bound again.
    UdpSocket::bind(local).expect("removed upstream socket still open");
    // Its slot is reused under a new id.
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.connect(peer.local_addr().unwrap()).unwrap();
    let again = e.add_upstream_udp(sock).unwrap();
    assert_ne!(again, id);
    e.shutdown();
}

#[test]
fn tcp_handoff_gives_the_connection_to_the_caller() {
    let Some(mut e) = engine(EngineConfig::default()) else {
        return;
    };
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let id = e.add_tcp_listener(l).unwrap();
    e.set_tcp_handoff(id, true);
    let mut client = TcpStream::connect(addr).unwrap();
    client.write_all(b"PROXY").unwrap();
    let mut got: Vec<TcpStream> = Vec::new();
    let mut accepted = 0;
    let mut f = |_: &mut EngineHandle<'_>, ev: Event<'_>| match ev {
        Event::Handoff { listener, stream } => {
            assert_eq!(listener, id);
            got.push(stream);
        }
        Event::Accepted { .. } => accepted += 1,
        _ => {}
    };
    pump_until(&mut e, &mut f, |e| e.stats().tcp_accepted == 1);
    assert_eq!(accepted, 0);
    // The engine read nothing of it: the caller reads the client's first octets.
    let mut s = got.pop().expect("handed over");
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut b = [0u8; 5];
    s.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"PROXY");
    s.write_all(b"ok").unwrap();
    let mut r = [0u8; 2];
    client.read_exact(&mut r).unwrap();
    assert_eq!(&r, b"ok");
    // Turned off: served by the engine again.
    e.set_tcp_handoff(id, false);
    let _second = TcpStream::connect(addr).unwrap();
    let mut seen = (0, 0);
    let mut g = |_: &mut EngineHandle<'_>, ev: Event<'_>| match ev {
        Event::Handoff { .. } => seen.0 += 1,
        Event::Accepted { .. } => seen.1 += 1,
        _ => {}
    };
    pump_until(&mut e, &mut g, |e| e.stats().tcp_accepted == 2);
    assert_eq!(seen, (0, 1));
}
