//! In-process DNS responders on 127.0.0.1 port 0 for the load tests: a UDP
//! one that can drop every Nth query, rate-limit, set rcodes and TC; and a
//! TCP one that only answers once several queries are pipelined.
#![allow(dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Default)]
pub struct Behaviour {
    /// Drop every Nth query (0: none).
    pub drop_every: u64,
    /// Drop everything.
    pub silent: bool,
    /// Answer at most this many queries per second (0: no limit).
    pub rate_limit: f64,
}

pub struct Responder {
    pub addr: SocketAddr,
    pub received: Arc<AtomicU64>,
    /// TCP: the most queries seen pending on one connection at once.
    pub max_pending: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Turns a query into its answer: QR set, NXDOMAIN for names whose first
/// label starts with `x`, TC for type TXT.
fn answer(q: &mut [u8]) {
    q[2] |= 0x80;
    if q.len() > 13 && q[13] == b'x' {
        q[3] = (q[3] & 0xf0) | 3;
    }
    let mut i = 12;
    while i < q.len() && q[i] != 0 {
        i += usize::from(q[i]) + 1;
    }
    if q.get(i + 1..i + 3) == Some(&[0, 16]) {
        q[2] |= 0x02;
    }
}

/// Burst size of the rate limiter: large enough that a responder thread
/// descheduled for a few milliseconds does not look like a rate limit.
const BUCKET: f64 = 100.0;

pub fn udp(b: Behaviour) -> Responder {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
    sock.set_read_timeout(Some(Duration::from_millis(20))).ok();
    let addr = sock.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let (st, rc) = (stop.clone(), received.clone());
    let handle = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        let start = Instant::now();
        let (mut tokens, mut last) = (BUCKET, 0.0f64);
        while !st.load(Ordering::Relaxed) {
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                continue;
            };
            let k = rc.fetch_add(1, Ordering::Relaxed) + 1;
            if b.silent || (b.drop_every > 0 && k % b.drop_every == 0) || n < 12 {
                continue;
            }
            if b.rate_limit > 0.0 {
                // Token bucket: bursts up to BUCKET queries pass.
                let now = start.elapsed().as_secs_f64();
                tokens = (tokens + (now - last) * b.rate_limit).min(BUCKET);
                last = now;
                if tokens < 1.0 {
                    continue;
                }
                tokens -= 1.0;
            }
            answer(&mut buf[..n]);
            let _ = sock.send_to(&buf[..n], from);
        }
    });
    Responder {
        addr,
        received,
        max_pending: Arc::new(AtomicU64::new(0)),
        stop,
        handle: Some(handle),
    }
}

/// TCP responder that holds answers until `hold` queries are pending on a
/// connection (or 20 ms pass), then answers them in reverse order: a client
/// that does not pipeline, or matches by order instead of ID, fails.
pub fn tcp(hold: usize) -> Responder {
    let l = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
    l.set_nonblocking(true).ok();
    let addr = l.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let max_pending = Arc::new(AtomicU64::new(0));
    let (st, rc, mp) = (stop.clone(), received.clone(), max_pending.clone());
    let handle = std::thread::spawn(move || {
        let mut conns = Vec::new();
        while !st.load(Ordering::Relaxed) {
            match l.accept() {
                Ok((mut s, _)) => {
                    let (st, rc, mp) = (st.clone(), rc.clone(), mp.clone());
                    conns.push(std::thread::spawn(move || {
                        s.set_read_timeout(Some(Duration::from_millis(20))).ok();
                        let mut inb: Vec<u8> = Vec::new();
                        let mut pending: Vec<Vec<u8>> = Vec::new();
                        let mut buf = [0u8; 8192];
                        while !st.load(Ordering::Relaxed) {
                            let timed_out = match s.read(&mut buf) {
                                Ok(0) => return,
                                Ok(n) => {
                                    inb.extend_from_slice(&buf[..n]);
                                    false
                                }
                                Err(_) => true,
                            };
                            while inb.len() >= 2 {
                                let len = usize::from(u16::from_be_bytes([inb[0], inb[1]]));
                                if inb.len() < 2 + len {
                                    break;
                                }
                                pending.push(inb[2..2 + len].to_vec());
                                inb.drain(..2 + len);
                                rc.fetch_add(1, Ordering::Relaxed);
                            }
                            mp.fetch_max(pending.len() as u64, Ordering::Relaxed);
                            if pending.len() >= hold || (timed_out && !pending.is_empty()) {
                                let mut out = Vec::new();
                                for mut q in pending.drain(..).rev() {
                                    answer(&mut q);
                                    out.extend_from_slice(&(q.len() as u16).to_be_bytes());
                                    out.extend_from_slice(&q);
                                }
                                if s.write_all(&out).is_err() {
                                    return;
                                }
                            }
                        }
                    }));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        for c in conns {
            let _ = c.join();
        }
    });
    Responder {
        addr,
        received,
        max_pending,
        stop,
        handle: Some(handle),
    }
}

/// A query file of `n` names; every 5th is `x…` (NXDOMAIN), every 7th TXT (TC).
pub fn query_file(n: usize) -> String {
    (0..n)
        .map(|i| {
            let name = if i % 5 == 0 {
                format!("x{i}.example.org")
            } else {
                format!("n{i}.example.org")
            };
            let t = if i % 7 == 0 { "TXT" } else { "A" };
            format!("{name} {t}\n")
        })
        .collect()
}
