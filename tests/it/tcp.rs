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
    let q = query(1, name, 1, 1, None);
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
