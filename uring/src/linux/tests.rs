//! Engine tests that need private access: configuration clamping, and one UDP + TCP exchange
//! under every ring setup fallback (deferred task work with and without the task-run flag,
//! cooperative task work, plain), so older kernels' paths run here too (`SendMsg` replies
//! included).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

use super::*;

#[test]
fn normalize_clamps() {
    let cfg = normalize(EngineConfig {
        entries: 1,
        udp_buf_count: 3000,
        udp_buf_size: 0,
        send_slots: 0,
        max_tcp_msg: 1 << 20,
        max_tcp_queue: 0,
        ..EngineConfig::default()
    });
    assert_eq!(cfg.entries, 8);
    assert_eq!(cfg.udp_buf_count, 4096);
    assert_eq!(cfg.udp_buf_size, 1);
    assert_eq!(cfg.send_slots, 1);
    assert_eq!(cfg.max_tcp_msg, 65535);
    assert_eq!(cfg.max_tcp_queue, 65537);
    assert_eq!(normalize(EngineConfig::default()), EngineConfig::default());
    let big = normalize(EngineConfig {
        udp_buf_count: u16::MAX,
        ..EngineConfig::default()
    });
    assert_eq!(big.udp_buf_count, 32768);
}

/// An engine on ring setup `first` (see `ring::build`), sending with `SendMsg` from setup 2
/// on (as kernels before 6.0 must) and with quiet sends or a completion per send; `None`
/// (printed) where the kernel lacks what that needs.
fn setup_engine(cfg: EngineConfig, first: u8, quiet: bool) -> Option<Engine> {
    let mut e = Engine::with_setup(cfg, first).expect("engine");
    if first >= 2 {
        e.core.send_to = false;
    }
    if quiet && !e.core.quiet_sends {
        println!("skipping: the kernel has no IOSQE_CQE_SKIP_SUCCESS");
        return None;
    }
    e.core.quiet_sends = quiet;
    Some(e)
}

/// Echoes UDP and TCP until the client thread is done; the client checks every reply.
fn exchange(first: u8, quiet: bool) {
    if let Err(reason) = probe() {
        println!("skipping: io_uring unavailable: {reason}");
        return;
    }
    let cfg = EngineConfig {
        udp_buf_count: 16,
        ..EngineConfig::default()
    };
    let Some(mut e) = setup_engine(cfg, first, quiet) else {
        return;
    };
    println!(
        "setup {first}: {}, send_to {}, quiet sends {}",
        e.mode(),
        e.core.send_to,
        e.core.quiet_sends
    );
    let fd = e.notify_fd();
    let u = UdpSocket::bind("127.0.0.1:0").unwrap();
    let uaddr = u.local_addr().unwrap();
    e.add_udp(u).unwrap();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let taddr = l.local_addr().unwrap();
    e.add_tcp_listener(l).unwrap();
    e.submit().unwrap();

    let client = thread::spawn(move || {
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 512];
        for i in 0..200u32 {
            let msg = [&i.to_be_bytes()[..], &[i as u8; 40]].concat();
            c.send_to(&msg, uaddr).unwrap();
            let (n, _) = c.recv_from(&mut buf).unwrap();
            assert_eq!(buf[..n], msg[..]);
        }
        let mut t = TcpStream::connect(taddr).unwrap();
        t.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        t.write_all(&[0, 2, b'h', b'i', 0, 1, b'!']).unwrap();
        let mut reply = [0u8; 7];
        t.read_exact(&mut reply).unwrap();
        assert_eq!(&reply, &[0, 2, b'h', b'i', 0, 1, b'!']);
    });

    let mut echo = |h: &mut EngineHandle<'_>, ev: Event<'_>| match ev {
        Event::Udp {
            sock, peer, data, ..
        } => h.send_udp(sock, peer, data).unwrap(),
        Event::TcpMessage { conn, data } => h.send_tcp(conn, data).unwrap(),
        _ => {}
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut idle = 0;
    while !client.is_finished() {
        assert!(Instant::now() < deadline, "setup {first}: timed out");
        // Wait the way the daemon does: on the eventfd, then reap and submit.
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: `pfd` is one valid pollfd for the duration of the call.
        if unsafe { libc::poll(&mut pfd, 1, 50) } == 0 {
            idle += 1;
        }
        e.poll_events(&mut echo);
        e.submit().unwrap();
    }
    client.join().unwrap();
    // Each of the 200 round trips would time out if the eventfd did not signal.
    assert!(idle < 20, "setup {first}: {idle} waits timed out");
    let s = e.stats();
    assert_eq!(s.udp_received, 200);
    assert_eq!(s.tcp_messages, 2);
    e.shutdown();
}

#[test]
fn exchange_defer_taskrun_with_flag() {
    exchange(0, true);
    exchange(0, false);
}

#[test]
fn exchange_defer_taskrun() {
    exchange(1, true);
    exchange(1, false);
}

#[test]
fn exchange_coop_taskrun() {
    exchange(2, true);
    exchange(2, false);
}

#[test]
fn exchange_plain() {
    exchange(3, true);
    exchange(3, false);
}

#[test]
fn exchange_no_submit_all() {
    exchange(4, true);
    exchange(4, false);
}

/// Sends that fail in the kernel (a reply to port 0: `EINVAL`; an upstream query too long
/// for IPv4: `EMSGSIZE`) are counted, the upstream one is reported as a write error, their
/// slots come back, the good sends between them arrive intact and in order, and nothing is
/// left in flight but the two receives. Run with quiet sends and with a completion per send.
fn failed_sends(first: u8, quiet: bool) {
    if let Err(reason) = probe() {
        println!("skipping: io_uring unavailable: {reason}");
        return;
    }
    let cfg = EngineConfig {
        send_slots: 4,
        udp_send_size: 65535,
        ..EngineConfig::default()
    };
    let Some(mut e) = setup_engine(cfg, first, quiet) else {
        return;
    };
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sock = e.add_udp(server).unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let caddr = client.local_addr().unwrap();
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let up = UdpSocket::bind("127.0.0.1:0").unwrap();
    up.connect(peer.local_addr().unwrap()).unwrap();
    let id = e.add_upstream_udp(up).unwrap();
    let port0: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    let too_long = vec![0u8; 65535];
    let mut write_errors = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    for i in 0..10u8 {
        e.send_udp(sock, port0, b"nowhere").unwrap();
        e.send_udp(sock, caddr, &[b'r', i]).unwrap();
        e.send_upstream_udp(id, &too_long).unwrap();
        e.send_upstream_udp(id, &[b'q', i]).unwrap();
        let want = 4 * (u64::from(i) + 1);
        loop {
            let s = e.stats();
            if s.udp_sent + s.udp_send_errors == want && s.udp_send_errors == want / 2 {
                break;
            }
            assert!(Instant::now() < deadline, "quiet {quiet}: stuck at {s:?}");
            e.submit_and_wait(1, Some(Duration::from_millis(10)))
                .unwrap();
            e.poll_events(&mut |_, ev| {
                if let Event::UpstreamError {
                    id: from,
                    error,
                    write,
                } = ev
                {
                    write_errors.push((from, error.raw_os_error(), write));
                }
            });
        }
    }
    let s = e.stats();
    assert_eq!((s.udp_sent, s.udp_send_errors), (20, 20), "{s:?}");
    assert_eq!(s.udp_send_slot_exhausted, 0, "{s:?}");
    assert_eq!(write_errors, vec![(id, Some(libc::EMSGSIZE), true); 10]);
    let mut buf = [0u8; 64];
    for i in 0..10u8 {
        let (n, _) = client.recv_from(&mut buf).unwrap();
        assert_eq!(buf[..n], [b'r', i]);
        let (n, _) = peer.recv_from(&mut buf).unwrap();
        assert_eq!(buf[..n], [b'q', i]);
    }
    assert!(e.core.unconfirmed.is_empty());
    assert_eq!(e.core.inflight, 2, "only the two multishot receives");
    e.shutdown();
}

#[test]
fn failed_sends_quiet() {
    for first in 0..5 {
        failed_sends(first, true);
    }
}

#[test]
fn failed_sends_with_completions() {
    for first in 0..5 {
        failed_sends(first, false);
    }
}

/// A submission queue that fills while quiet sends are queued: the submit `push` makes for
/// room also frees their slots, so more sends than slots go out without a caller's submit,
/// intact and in order.
#[test]
fn quiet_sends_confirmed_when_the_queue_fills() {
    if let Err(reason) = probe() {
        println!("skipping: io_uring unavailable: {reason}");
        return;
    }
    let cfg = EngineConfig {
        entries: 8,
        send_slots: 12,
        ..EngineConfig::default()
    };
    let mut e = Engine::new(cfg).expect("engine");
    if !e.core.quiet_sends {
        println!("skipping: the kernel has no IOSQE_CQE_SKIP_SUCCESS");
        return;
    }
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sock = e.add_udp(server).unwrap();
    e.submit().unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let caddr = client.local_addr().unwrap();
    for i in 0..40u8 {
        e.send_udp(sock, caddr, &[b'x', i]).unwrap();
    }
    assert!(
        e.core.unconfirmed.len() <= 8,
        "{}",
        e.core.unconfirmed.len()
    );
    e.submit().unwrap();
    assert!(e.core.unconfirmed.is_empty());
    let s = e.stats();
    assert_eq!((s.udp_sent, s.udp_send_slot_exhausted), (40, 0), "{s:?}");
    let mut buf = [0u8; 16];
    for i in 0..40u8 {
        let (n, _) = client.recv_from(&mut buf).unwrap();
        assert_eq!(buf[..n], [b'x', i]);
    }
    assert_eq!(e.core.inflight, 1, "only the receive");
    e.shutdown();
}

/// Whether `fd` is readable right now.
fn readable(fd: RawFd) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `pfd` is one valid pollfd for the duration of the call.
    unsafe { libc::poll(&mut pfd, 1, 0) > 0 }
}

/// While the caller waits in the ring (`set_notify(false)`) the eventfd stays quiet; turning
/// it on again makes it readable once, so nothing that arrived meanwhile is missed.
fn notify_toggle(first: u8) {
    if let Err(reason) = probe() {
        println!("skipping: io_uring unavailable: {reason}");
        return;
    }
    let mut e = Engine::with_setup(EngineConfig::default(), first).expect("engine");
    let fd = e.notify_fd();
    let u = UdpSocket::bind("127.0.0.1:0").unwrap();
    let uaddr = u.local_addr().unwrap();
    e.add_udp(u).unwrap();
    e.submit().unwrap();
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut echo = |h: &mut EngineHandle<'_>, ev: Event<'_>| {
        if let Event::Udp {
            sock, peer, data, ..
        } = ev
        {
            h.send_udp(sock, peer, data).unwrap();
        }
    };
    let mut buf = [0u8; 64];
    for round in 0..3u8 {
        e.set_notify(false);
        while readable(fd) {
            e.poll_events(&mut echo);
            let mut n = [0u8; 8];
            let _ = (&e.core.notify).read(&mut n);
        }
        c.send_to(&[round; 12], uaddr).unwrap();
        let mut got = 0;
        let deadline = Instant::now() + Duration::from_secs(5);
        while got == 0 {
            assert!(Instant::now() < deadline, "setup {first}: no datagram");
            e.submit_and_wait(1, Some(Duration::from_millis(50)))
                .unwrap();
            got = e.poll_events(&mut echo);
        }
        e.submit().unwrap();
        let (n, _) = c.recv_from(&mut buf).unwrap();
        assert_eq!(buf[..n], [round; 12]);
        assert!(!readable(fd), "setup {first}: eventfd signalled while off");
        // A datagram arriving while off must still wake an eventfd waiter once it is on.
        c.send_to(&[round + 100; 12], uaddr).unwrap();
        thread::sleep(Duration::from_millis(20));
        e.set_notify(true);
        assert!(
            readable(fd),
            "setup {first}: eventfd not readable after turning on"
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while e.poll_events(&mut echo) == 0 {
            assert!(Instant::now() < deadline, "setup {first}: datagram lost");
            e.submit_and_wait(1, Some(Duration::from_millis(50)))
                .unwrap();
        }
        e.submit().unwrap();
        let (n, _) = c.recv_from(&mut buf).unwrap();
        assert_eq!(buf[..n], [round + 100; 12]);
    }
    e.shutdown();
}

#[test]
fn notify_toggle_defer_taskrun() {
    notify_toggle(0);
}

#[test]
fn notify_toggle_plain() {
    notify_toggle(3);
}

#[test]
fn send_to_probe() {
    if probe().is_err() {
        println!("skipping: io_uring unavailable");
        return;
    }
    // `uname -r` >= 6.0 must have it; older kernels must not claim it.
    let release = fs_release();
    let major: u32 = release
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    assert_eq!(probe::send_to_supported(), major >= 6, "kernel {release}");
}

fn fs_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default()
}

/// A removed upstream socket is closed only after what was queued on it has been submitted:
/// its descriptor number cannot be taken by another socket under a queued `Send`.
#[test]
fn removed_upstream_closes_after_submit() {
    if let Err(reason) = probe() {
        println!("skipping: io_uring unavailable: {reason}");
        return;
    }
    let mut e = Engine::new(EngineConfig::default()).expect("engine");
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.connect(peer.local_addr().unwrap()).unwrap();
    let local = sock.local_addr().unwrap();
    let id = e.add_upstream_udp(sock).unwrap();
    e.submit().unwrap();
    // As during a back-off after a receive error: no receive armed, so removal frees at once.
    e.core.upstreams[0].armed = false;
    e.send_upstream_udp(id, b"queued").unwrap();
    e.remove_upstream_udp(id);
    assert_eq!(e.core.to_close.len(), 1);
    assert!(UdpSocket::bind(local).is_err(), "closed with a send queued");
    e.submit().unwrap();
    assert!(e.core.to_close.is_empty());
    let mut buf = [0u8; 16];
    let (n, from) = peer.recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], from), (&b"queued"[..], local));
    // (The descriptor is closed now; the port stays bound until the receive this test
    // pretended was not armed ends at shutdown.)
    e.shutdown();
}

/// UDP sockets are named by registered-file slots where the kernel has a sparse table
/// (Linux 5.19): a removed upstream socket's slot is emptied once it is closed, and reused.
#[test]
fn udp_sockets_take_fixed_file_slots() {
    if let Err(reason) = probe() {
        println!("skipping: io_uring unavailable: {reason}");
        return;
    }
    let mut e = Engine::new(EngineConfig::default()).expect("engine");
    if e.core.fixed_free.is_empty() {
        println!(
            "skipping: no registered-file table on this kernel ({})",
            fs_release()
        );
        return;
    }
    let all = e.core.fixed_free.len();
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 16];
    for round in 0..3u8 {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.connect(peer.local_addr().unwrap()).unwrap();
        let local = sock.local_addr().unwrap();
        let id = e.add_upstream_udp(sock).unwrap();
        let slot = e.core.upstreams[0].fixed;
        assert!(slot.is_some());
        assert_eq!(e.core.fixed_free.len(), all - 1);
        // A query goes out through the slot.
        e.send_upstream_udp(id, &[round; 4]).unwrap();
        e.submit().unwrap();
        let (n, from) = peer.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from), (&[round; 4][..], local));
        // Removed with no receive armed (as in a back-off): freed, then closed after the
        // next submit, which empties the slot.
        e.core.upstreams[0].armed = false;
        e.remove_upstream_udp(id);
        e.submit().unwrap();
        assert!(e.core.to_close.is_empty());
        assert_eq!(e.core.fixed_free.len(), all);
        assert_eq!(
            e.core.fixed_free.last().copied(),
            slot,
            "the slot is reused next"
        );
    }
    e.shutdown();
}
