//! Health checks: started only by a failed exchange, at most one loop per
//! upstream; each round sends `. IN NS` (RD unless `no_rec`, another name
//! with `domain`) over UDP, TCP with `force_tcp`, TLS for `tls://` upstreams,
//! or a DoH POST for `https://` ones ([`super::doh::check_blocking`]): 2 s to
//! connect (and, over TLS, to finish the handshake), then 1 s for the exchange
//! (one deadline for all its reads and writes, as Go's). A reply is judged as
//! CoreDNS's `dnsHc.send` judges
//! miekg's `Exchange` result ([`verdict`]): one with our ID that unpacks is
//! healthy whatever its rcode; one that does not unpack, or over TCP/TLS one with
//! another ID, is healthy when it says it is a response (QR) or a query (opcode
//! 0); over UDP another ID that unpacks is skipped (read on); a datagram
//! shorter than a header fails. Healthy: the failure count goes
//! back to 0 and the loop ends. A failure counts
//! `coredns_proxy_healthcheck_failures_total`, raises the count and sleeps the
//! interval. The loop runs on its own short-lived thread (blocking sockets),
//! so a probe never waits on a worker, and stops when the plugin is dropped.
//!
//! CoreDNS: `plugin/pkg/proxy/health.go`, `plugin/pkg/up/up.go`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::proxy::{Upstream, random_id};
use super::setup::Scheme;
use crate::wire::{HEADER_LEN, hdr};

const IO_TIMEOUT: Duration = Duration::from_secs(1);
const DIAL_TIMEOUT: Duration = Duration::from_secs(2);

/// Starts a check loop for `up` unless one runs (CoreDNS `Healthcheck`).
pub fn trigger(up: &Arc<Upstream>) {
    if up.stopped.load(Ordering::Relaxed) || up.probing.swap(true, Ordering::AcqRel) {
        return;
    }
    let u = Arc::clone(up);
    let spawned = std::thread::Builder::new()
        .name("forward-hc".into())
        .spawn(move || {
            probe_loop(&u);
            u.probing.store(false, Ordering::Release);
        });
    if spawned.is_err() {
        up.probing.store(false, Ordering::Release);
    }
}

fn probe_loop(up: &Upstream) {
    loop {
        if up.stopped.load(Ordering::Relaxed) {
            return;
        }
        if check(up).is_ok() {
            up.fails.store(0, Ordering::Relaxed);
            return;
        }
        up.metrics.hc_failures.fetch_add(1, Ordering::Relaxed);
        let _ = up
            .fails
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |f| f.checked_add(1));
        // Sleep the interval in slices so a stop is noticed soon.
        let until = Instant::now() + up.opts.hc.interval;
        loop {
            let now = Instant::now();
            if now >= until || up.stopped.load(Ordering::Relaxed) {
                break;
            }
            std::thread::sleep((until - now).min(Duration::from_millis(50)));
        }
    }
}

/// The probe message.
pub fn probe_query(up: &Upstream, id: u16) -> Vec<u8> {
    let mut q = Vec::with_capacity(32);
    q.extend_from_slice(&id.to_be_bytes());
    q.push(if up.opts.hc.rd { 0x01 } else { 0x00 });
    q.extend_from_slice(&[0, 0, 1, 0, 0, 0, 0, 0, 0]);
    q.extend_from_slice(up.opts.hc.domain.wire());
    q.extend_from_slice(&2u16.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    q
}

/// One health check; `Err` on any failure.
pub fn check(up: &Upstream) -> std::io::Result<()> {
    let id = random_id();
    let q = probe_query(up, id);
    if up.cfg.scheme == Scheme::Https {
        // CoreDNS `dohHc`: any reply that unpacks, whatever its ID.
        return super::doh::check_blocking(up, &q);
    }
    if up.cfg.scheme == Scheme::Tls {
        check_tls(up, &q)
    } else if up.opts.hc.tcp {
        let mut s = Deadline::after(dial_tcp(up)?, IO_TIMEOUT);
        stream_exchange(&mut s, &q, id)
    } else {
        check_udp(up, &q, id)
    }
}

fn bind_addr(up: &Upstream) -> SocketAddr {
    let r = up.cfg.addr;
    let ip = up.opts.source.unwrap_or(if r.is_ipv4() {
        std::net::IpAddr::from([0u8; 4])
    } else {
        std::net::IpAddr::from([0u16; 8])
    });
    SocketAddr::new(ip, 0)
}

/// What a health check makes of one message it read.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Healthy,
    Unhealthy,
    /// Over UDP: a reply to another query; read on.
    Skip,
}

/// miekg's `Exchange` (its UDP loop skips replies with another ID that unpack;
/// over a stream the first message is the answer, `ErrId` when its ID differs)
/// followed by CoreDNS's check: an error with a message still counts as healthy
/// when the message is a response or a query.
pub fn verdict(m: &[u8], id: u16, stream: bool) -> Verdict {
    if m.len() < HEADER_LEN {
        return Verdict::Unhealthy;
    }
    let unpacks = super::proxy::unpack(m).is_ok();
    if unpacks && hdr::id(m) == id {
        return Verdict::Healthy;
    }
    if unpacks && !stream {
        return Verdict::Skip;
    }
    let f = hdr::flags(m);
    if f & crate::wire::flags::QR != 0 || (f >> 11) & 0xf == 0 {
        Verdict::Healthy
    } else {
        Verdict::Unhealthy
    }
}

fn check_udp(up: &Upstream, q: &[u8], id: u16) -> std::io::Result<()> {
    let s = UdpSocket::bind(bind_addr(up))?;
    s.connect(up.cfg.addr)?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.send(q)?;
    let deadline = Instant::now() + IO_TIMEOUT;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = s.recv(&mut buf)?;
        match verdict(&buf[..n], id, false) {
            Verdict::Healthy => return Ok(()),
            Verdict::Unhealthy => return Err(std::io::ErrorKind::InvalidData.into()),
            Verdict::Skip => {}
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        s.set_read_timeout(Some(left))?;
    }
}

fn dial_tcp(up: &Upstream) -> std::io::Result<TcpStream> {
    let r = up.cfg.addr;
    let s = match up.opts.source {
        None => TcpStream::connect_timeout(&r, DIAL_TIMEOUT)?,
        Some(_) => {
            let sock = socket2::Socket::new(
                socket2::Domain::for_address(r),
                socket2::Type::STREAM,
                Some(socket2::Protocol::TCP),
            )?;
            sock.bind(&bind_addr(up).into())?;
            sock.connect_timeout(&r.into(), DIAL_TIMEOUT)?;
            sock.into()
        }
    };
    Ok(s)
}

/// A connection whose reads and writes all end at one deadline, as Go's
/// `SetReadDeadline`/`SetWriteDeadline` (miekg sets both to now + 1 s before it
/// writes the query): a server that trickles its reply fails the check at the
/// deadline, where a timeout per call would wait on.
struct Deadline {
    s: TcpStream,
    at: Instant,
}

impl Deadline {
    fn after(s: TcpStream, d: Duration) -> Self {
        Self {
            s,
            at: Instant::now() + d,
        }
    }

    /// Time left, or `TimedOut` when none is.
    fn left(&self) -> std::io::Result<Duration> {
        let left = self.at.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        Ok(left)
    }
}

impl Read for Deadline {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.s.set_read_timeout(Some(self.left()?))?;
        self.s.read(buf)
    }
}

impl Write for Deadline {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.s.set_write_timeout(Some(self.left()?))?;
        self.s.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.s.flush()
    }
}

fn stream_exchange(s: &mut impl ReadWrite, q: &[u8], id: u16) -> std::io::Result<()> {
    let len =
        u16::try_from(q.len()).map_err(|_| std::io::Error::other("dns: message too large"))?;
    let mut frame = len.to_be_bytes().to_vec();
    frame.extend_from_slice(q);
    s.write_all(&frame)?;
    s.flush()?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len)?;
    let mut m = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut m)?;
    match verdict(&m, id, true) {
        Verdict::Healthy => Ok(()),
        _ => Err(std::io::ErrorKind::InvalidData.into()),
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

fn check_tls(up: &Upstream, q: &[u8]) -> std::io::Result<()> {
    let Some(t) = &up.tls else {
        return Err(std::io::ErrorKind::InvalidInput.into());
    };
    // Go's tls.Dialer: connecting and the handshake share the dial timeout; the
    // exchange then has its own deadline.
    let start = Instant::now();
    let mut tcp = Deadline {
        s: dial_tcp(up)?,
        at: start + DIAL_TIMEOUT,
    };
    let mut conn = rustls::ClientConnection::new(Arc::clone(&t.config), t.name.clone())
        .map_err(std::io::Error::other)?;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp)?;
    }
    tcp.at = Instant::now() + IO_TIMEOUT;
    let mut s = rustls::StreamOwned::new(conn, tcp);
    let id = hdr::id(q);
    stream_exchange(&mut s, q, id)
}
