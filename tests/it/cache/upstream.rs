//! Upstreams for the cache tests: `Up`, a UDP and TCP responder on 127.0.0.1
//! that counts the queries it answers (the real nsd is `util::Nsd`).

use std::io::{Read, Write};
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::util::*;

/// What the upstream answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `NAME TTL A 192.0.2.N` (N counts the queries).
    Answer(u32),
    /// NXDOMAIN with an SOA of this TTL.
    Nx(u32),
    /// SERVFAIL without records.
    Fail,
    /// Nothing.
    Drop,
}

/// A UDP upstream on 127.0.0.1 that counts queries.
pub struct Up {
    pub port: u16,
    mode: Arc<Mutex<Mode>>,
    count: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Up {
    /// UDP and TCP on one port (forward refreshes for the cache look like TCP
    /// clients, so they go upstream over TCP, as in CoreDNS).
    pub fn start(mode: Mode) -> Self {
        let (sock, tcp) = loop {
            let port = free_port();
            let u = UdpSocket::bind(("127.0.0.1", port));
            let t = std::net::TcpListener::bind(("127.0.0.1", port));
            if let (Ok(u), Ok(t)) = (u, t) {
                break (u, t);
            }
        };
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        tcp.set_nonblocking(true).expect("nonblocking");
        let port = sock.local_addr().expect("addr").port();
        let up = Self {
            port,
            mode: Arc::new(Mutex::new(mode)),
            count: Arc::new(AtomicUsize::new(0)),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let (mode, count, stop) = (
            Arc::clone(&up.mode),
            Arc::clone(&up.count),
            Arc::clone(&up.stop),
        );
        let answer = move |q: &[u8]| {
            // Health checks (`. IN NS`) are answered, not counted.
            let n = if q.get(12) == Some(&0) {
                0
            } else {
                count.fetch_add(1, Ordering::Relaxed) + 1
            };
            let m = *mode.lock().expect("lock");
            reply(q, m, n)
        };
        let answer = Arc::new(answer);
        let (a2, stop2) = (Arc::clone(&answer), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !stop2.load(Ordering::Relaxed) {
                let Ok((n, peer)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                if let Some(r) = a2(&buf[..n]) {
                    let _ = sock.send_to(&r, peer);
                }
            }
        });
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let Ok((mut c, _)) = tcp.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let answer = Arc::clone(&answer);
                std::thread::spawn(move || {
                    let _ = c.set_nonblocking(false);
                    let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
                    let mut len = [0u8; 2];
                    while c.read_exact(&mut len).is_ok() {
                        let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
                        if c.read_exact(&mut q).is_err() {
                            return;
                        }
                        if let Some(r) = answer(&q) {
                            let mut out = (r.len() as u16).to_be_bytes().to_vec();
                            out.extend_from_slice(&r);
                            let _ = c.write_all(&out);
                        }
                    }
                });
            }
        });
        up
    }

    pub fn set(&self, m: Mode) {
        *self.mode.lock().expect("lock") = m;
    }

    pub fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn reply(q: &[u8], mode: Mode, n: usize) -> Option<Vec<u8>> {
    if q.len() < 12 {
        return None;
    }
    let mut p = 12;
    while q[p] != 0 {
        p += 1 + q[p] as usize;
    }
    let qend = p + 5;
    let mut r = q[..qend].to_vec();
    r[2] = 0x80 | (q[2] & 0x01) | 0x04;
    r[3] = 0x80;
    r[6..12].copy_from_slice(&[0, 0, 0, 0, 0, 0]);
    match mode {
        Mode::Drop => return None,
        Mode::Fail => r[3] |= 2,
        Mode::Answer(ttl) => {
            r[7] = 1;
            r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
            r.extend_from_slice(&ttl.to_be_bytes());
            r.extend_from_slice(&[0, 4, 192, 0, 2, n as u8]);
        }
        Mode::Nx(ttl) => {
            r[3] |= 3;
            r[9] = 1;
            r.extend_from_slice(&[0xc0, 12, 0, 6, 0, 1]);
            r.extend_from_slice(&ttl.to_be_bytes());
            let rd = b"\x02ns\xc0\x0c\x0ahostmaster\xc0\x0c\x00\x00\x00\x01\x00\x00\x0e\x10\x00\x00\x02\x58\x00\x01\x51\x80\x00\x00\x00\x08";
            r.extend_from_slice(&(rd.len() as u16).to_be_bytes());
            r.extend_from_slice(rd);
        }
    }
    Some(r)
}
