//! TCP under abuse: many idle connections and a client dribbling one byte a
//! second must not keep others from being served.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::util::*;

fn raise_nofile() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

fn tcp_query(port: u16, name: &str) -> Option<Vec<u8>> {
    let mut s =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    ask(&mut s, 1, name)
}

/// One query on an open connection: `Some(reply)`, or `None` once the server closed it.
fn ask(s: &mut TcpStream, id: u16, name: &str) -> Option<Vec<u8>> {
    let q = query(id, name, 1, 1, None);
    let mut framed = (q.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&q);
    s.write_all(&framed).ok()?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len).ok()?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut buf).ok()?;
    Some(buf)
}

#[test]
fn ten_thousand_idle_connections_and_a_slow_client() {
    raise_nofile();
    let limit = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(1024, |(s, _)| s);
    let n = 10_000usize.min(limit.saturating_sub(200) as usize);
    if n < 10_000 {
        eprintln!("open-file limit {limit}: testing {n} idle connections instead of 10000");
    }
    for be in backends() {
        let s = TestServer::start(".:{port} {\n whoami\n}\n", be);
        let t0 = Instant::now();
        let mut idle = Vec::with_capacity(n);
        for _ in 0..n {
            match TcpStream::connect(("127.0.0.1", s.port)) {
                Ok(c) => idle.push(c),
                Err(e) => panic!("{be}: connect #{} failed: {e}", idle.len()),
            }
        }
        eprintln!(
            "{be}: {} idle connections in {:?}",
            idle.len(),
            t0.elapsed()
        );
        // A slow client: one byte a second.
        let port = s.port;
        let slow = std::thread::spawn(move || {
            let mut c = TcpStream::connect(("127.0.0.1", port)).expect("slow connect");
            let q = query(2, "slow.example", 1, 1, None);
            let mut framed = (q.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(&q);
            let mut sent = 0;
            for b in framed.iter().take(4) {
                if c.write_all(&[*b]).is_err() {
                    break;
                }
                sent += 1;
                std::thread::sleep(Duration::from_secs(1));
            }
            sent
        });
        // Others are served meanwhile, over UDP and TCP.
        for i in 0..5 {
            let r = tcp_query(s.port, &format!("t{i}.example"))
                .unwrap_or_else(|| panic!("{be}: TCP query {i}"));
            assert_eq!(r[3] & 0x0f, 0);
            let r = s.udp_raw(&query(3, "u.example", 1, 1, None), Duration::from_secs(2));
            assert!(r.is_some(), "{be}: UDP query {i}");
            std::thread::sleep(Duration::from_millis(300));
        }
        let _ = slow.join();
        drop(idle);
    }
}

/// A TCP connection to 127.0.0.1:`port` with a 5 s read timeout.
fn connect_5s(port: u16) -> TcpStream {
    let c = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    c
}

/// CoreDNS's TCP timeouts on both engines: a connection must send its first query
/// within the read timeout, later ones within the idle timeout (`timeouts` plugin:
/// read 1s, idle 3s here; 3 s and 10 s by default).
#[test]
fn tcp_first_read_and_idle_timeouts() {
    for be in backends() {
        let s = TestServer::start(
            ".:{port} {\n timeouts {\n  read 1s\n  idle 3s\n }\n whoami\n}\n",
            be,
        );
        let connect = || connect_5s(s.port);
        // Silent past the read timeout: closed.
        let mut c = connect();
        std::thread::sleep(Duration::from_millis(1600));
        assert!(
            ask(&mut c, 1, "t.example").is_none(),
            "{be}: first read timeout"
        );
        // A query at once, then quiet longer than the read timeout but within the idle
        // one: still open; quiet past the idle timeout: closed.
        let mut c = connect();
        assert!(ask(&mut c, 2, "t.example").is_some(), "{be}");
        std::thread::sleep(Duration::from_millis(1600));
        assert!(
            ask(&mut c, 3, "t.example").is_some(),
            "{be}: idle timeout after the first query"
        );
        let t0 = Instant::now();
        std::thread::sleep(Duration::from_millis(3600));
        assert!(
            ask(&mut c, 4, "t.example").is_none(),
            "{be}: idle timeout ({:?})",
            t0.elapsed()
        );
    }
}

/// A listener's TCP timeouts come from the last of its blocks that sets each one,
/// as CoreDNS's `NewServer` merges them (here `read` from the second block and
/// `idle` from the third; the first block's `idle 5s` is overridden).
#[test]
fn tcp_timeouts_from_the_last_block_that_sets_them() {
    for be in backends() {
        let s = TestServer::start(
            "a.example:{port} {\n timeouts {\n  idle 5s\n }\n whoami\n}\nb.example:{port} {\n timeouts {\n  read 1s\n }\n whoami\n}\nc.example:{port} {\n timeouts {\n  idle 2s\n }\n whoami\n}\n",
            be,
        );
        let connect = || connect_5s(s.port);
        let mut c = connect();
        std::thread::sleep(Duration::from_millis(1600));
        assert!(
            ask(&mut c, 1, "t.a.example").is_none(),
            "{be}: read 1s from the second block"
        );
        let mut c = connect();
        assert!(ask(&mut c, 2, "t.a.example").is_some(), "{be}");
        std::thread::sleep(Duration::from_millis(2600));
        assert!(
            ask(&mut c, 3, "t.a.example").is_none(),
            "{be}: idle 2s from the third block"
        );
    }
}
