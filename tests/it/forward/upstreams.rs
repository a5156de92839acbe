//! Upstreams for the forward tests: `Fake`, a programmable UDP/TCP (and DoT)
//! responder on 127.0.0.1 (the real nsd is `util::Nsd`).

use std::io::{Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::util::*;
/// What the fake upstream does with a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `NAME A 192.0.2.TAG`.
    Answer,
    /// Nothing.
    Drop,
    /// Answer after this long.
    Delay(Duration),
    /// Answer with another message ID.
    WrongId,
    /// Answer about another name.
    WrongQuestion,
    /// Answer with the question's class changed to CH.
    WrongClass,
    /// 40 bytes of noise (random ID).
    Garbage,
    /// TC set over UDP (no records); the answer over TCP.
    Tc,
    /// Rcode only, no records.
    Rcode(u8),
    /// NOERROR without records.
    Nodata,
    /// The 12-byte header alone with this rcode (its question count still 1), as some
    /// public resolvers answer REFUSED.
    HeaderOnly(u8),
    /// The answer, its header claiming 3 answers and 2 additional records.
    CountsLie,
    /// The answer with this full rcode: its low 4 bits in the header, the rest in an
    /// OPT record's extended-rcode octet (BADVERS/BADSIG is 16).
    ExtRcode(u16),
}

/// One query the fake saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub tcp: bool,
    pub msg: Vec<u8>,
}

impl Seen {
    pub fn id(&self) -> u16 {
        u16::from_be_bytes([self.msg[0], self.msg[1]])
    }
    pub fn rd(&self) -> bool {
        self.msg[2] & 1 != 0
    }
    /// (name in lowercase presentation, qtype).
    pub fn question(&self) -> (String, u16) {
        let (name, end) = read_name(&self.msg, 12);
        (name, u16::from_be_bytes([self.msg[end], self.msg[end + 1]]))
    }
    pub fn qclass(&self) -> u16 {
        let end = read_name(&self.msg, 12).1;
        u16::from_be_bytes([self.msg[end + 2], self.msg[end + 3]])
    }
}

fn read_name(m: &[u8], mut p: usize) -> (String, usize) {
    let mut s = String::new();
    loop {
        let l = m[p] as usize;
        if l == 0 {
            if s.is_empty() {
                s.push('.');
            }
            return (s.to_lowercase(), p + 1);
        }
        s.push_str(&String::from_utf8_lossy(&m[p + 1..p + 1 + l]));
        s.push('.');
        p += 1 + l;
    }
}

fn question_end(m: &[u8]) -> usize {
    read_name(m, 12).1 + 4
}

/// A programmable upstream on 127.0.0.1 (UDP and TCP on one port).
pub struct Fake {
    pub port: u16,
    pub mode: Arc<Mutex<Mode>>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
}

impl Fake {
    pub fn start(mode: Mode, tag: u8) -> Self {
        Self::start_tls(mode, tag, None)
    }

    /// With `tls`, TCP connections are DNS over TLS.
    pub fn start_tls(mode: Mode, tag: u8, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let (udp, tcp) = loop {
            let port = free_port();
            let u = UdpSocket::bind(("127.0.0.1", port));
            let t = TcpListener::bind(("127.0.0.1", port));
            if let (Ok(u), Ok(t)) = (u, t) {
                break (u, t);
            }
        };
        let port = udp.local_addr().expect("addr").port();
        let f = Self {
            port,
            mode: Arc::new(Mutex::new(mode)),
            seen: Arc::new(Mutex::new(Vec::new())),
            stop: Arc::new(AtomicBool::new(false)),
        };
        udp.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let (mode, seen, stop) = (f.mode.clone(), f.seen.clone(), f.stop.clone());
        std::thread::spawn(move || {
            let udp = Arc::new(udp);
            let mut buf = vec![0u8; 65535];
            while !stop.load(Ordering::Relaxed) {
                let Ok((n, peer)) = udp.recv_from(&mut buf) else {
                    continue;
                };
                let q = buf[..n].to_vec();
                seen.lock().expect("lock").push(Seen {
                    tcp: false,
                    msg: q.clone(),
                });
                let m = *mode.lock().expect("lock");
                let u = Arc::clone(&udp);
                let send = move |r: Vec<u8>| {
                    let _ = u.send_to(&r, peer);
                };
                match m {
                    Mode::Drop => {}
                    Mode::Delay(d) => {
                        std::thread::spawn(move || {
                            std::thread::sleep(d);
                            send(reply(&q, Mode::Answer, false, tag));
                        });
                    }
                    m => send(reply(&q, m, false, tag)),
                }
            }
        });
        tcp.set_nonblocking(true).expect("nonblocking");
        let (mode, seen, stop) = (f.mode.clone(), f.seen.clone(), f.stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let Ok((s, _)) = tcp.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                let (mode, seen, stop, tls) =
                    (mode.clone(), seen.clone(), stop.clone(), tls.clone());
                std::thread::spawn(move || {
                    let _ = s.set_nonblocking(false);
                    let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
                    match tls {
                        None => serve_stream(s, &mode, &seen, &stop, tag),
                        Some(cfg) => {
                            let Ok(conn) = rustls::ServerConnection::new(cfg) else {
                                return;
                            };
                            let st = rustls::StreamOwned::new(conn, s);
                            serve_stream(st, &mode, &seen, &stop, tag);
                        }
                    }
                });
            }
        });
        f
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn set(&self, m: Mode) {
        *self.mode.lock().expect("lock") = m;
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    /// Queries seen other than health checks (`. IN NS`).
    pub fn queries(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.question() != (".".into(), 2))
            .collect()
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve_stream(
    mut s: impl Read + Write,
    mode: &Mutex<Mode>,
    seen: &Mutex<Vec<Seen>>,
    stop: &AtomicBool,
    tag: u8,
) {
    let mut idle = 0;
    while !stop.load(Ordering::Relaxed) && idle < 100 {
        let mut len = [0u8; 2];
        match s.read_exact(&mut len) {
            Ok(()) => idle = 0,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                idle += 1;
                continue;
            }
            Err(_) => return,
        }
        let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
        if s.read_exact(&mut q).is_err() {
            return;
        }
        seen.lock().expect("lock").push(Seen {
            tcp: true,
            msg: q.clone(),
        });
        let m = *mode.lock().expect("lock");
        let r = match m {
            Mode::Drop => continue,
            Mode::Delay(d) => {
                std::thread::sleep(d);
                reply(&q, Mode::Answer, true, tag)
            }
            m => reply(&q, m, true, tag),
        };
        let mut frame = (r.len() as u16).to_be_bytes().to_vec();
        frame.extend_from_slice(&r);
        if s.write_all(&frame).and_then(|()| s.flush()).is_err() {
            return;
        }
    }
}

/// The fake's reply to `q`.
pub fn reply(q: &[u8], m: Mode, tcp: bool, tag: u8) -> Vec<u8> {
    if m == Mode::Garbage {
        return (0..40)
            .map(|i| (i * 37 + 11) as u8 ^ fastrand::u8(..))
            .collect();
    }
    let qend = question_end(q);
    let mut r = q[..2].to_vec();
    if m == Mode::WrongId {
        r[0] ^= 0xff;
    }
    let rd = q[2] & 1;
    let (tc, rcode) = match m {
        Mode::Tc if !tcp => (0x02, 0),
        Mode::Rcode(rc) | Mode::HeaderOnly(rc) => (0, rc),
        Mode::ExtRcode(rc) => (0, (rc & 0x0f) as u8),
        _ => (0, 0),
    };
    r.push(0x80 | tc | rd);
    r.push(0x80 | rcode);
    if matches!(m, Mode::HeaderOnly(_)) {
        r.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
        return r;
    }
    let answer = matches!(
        m,
        Mode::Answer
            | Mode::WrongQuestion
            | Mode::WrongClass
            | Mode::Delay(_)
            | Mode::CountsLie
            | Mode::ExtRcode(_)
    ) || (m == Mode::Tc && tcp);
    if m == Mode::CountsLie {
        r.extend_from_slice(&[0, 1, 0, 3, 0, 0, 0, 2]);
    } else if let Mode::ExtRcode(_) = m {
        r.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 1]);
    } else {
        r.extend_from_slice(&[0, 1, 0, u8::from(answer), 0, 0, 0, 0]);
    }
    if m == Mode::WrongQuestion {
        r.extend_from_slice(b"\x05wrong\x07example\x00");
        r.extend_from_slice(&q[qend - 4..qend]);
    } else if m == Mode::WrongClass {
        r.extend_from_slice(&q[12..qend - 2]);
        r.extend_from_slice(&3u16.to_be_bytes());
    } else {
        r.extend_from_slice(&q[12..qend]);
    }
    if answer {
        r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, tag]);
    }
    if let Mode::ExtRcode(rc) = m {
        // OPT: root owner, 1232 octets, extended rcode, version 0, no flags, no data.
        r.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, (rc >> 4) as u8, 0, 0, 0, 0, 0]);
    }
    r
}
