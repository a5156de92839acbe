//! TCP and DNS-over-TLS exchanges with one upstream: the per-worker FIFO pool
//! of idle connections (one query per connection at a time, as CoreDNS),
//! dialing with the adaptive timeout, framing, and Go's error texts.
//!
//! CoreDNS: `plugin/pkg/proxy/connect.go` (`Dial`, `lookupDNS`),
//! `persistent.go` (`Yield`, expiry).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{Instant, timeout, timeout_at};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::metrics;
use super::proxy::{Fail, Local, Upstream, expired, go_op_err, random_id, unpack};
use crate::wire::{HEADER_LEN, hdr};

/// CoreDNS `maxTimeout`: the write deadline.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// TCP/TLS exchanges in flight per upstream per worker (each holds a connection).
pub const MAX_STREAMS: usize = 1024;

pub(super) enum Stream {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    async fn write_all(&mut self, b: &[u8]) -> io::Result<()> {
        match self {
            Self::Tcp(s) => s.write_all(b).await,
            Self::Tls(s) => {
                s.write_all(b).await?;
                s.flush().await
            }
        }
    }

    async fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Tcp(s) => s.read(b).await,
            Self::Tls(s) => s.read(b).await,
        }
    }
}

/// An idle or checked-out connection.
pub(super) struct Pooled {
    s: Stream,
    local: SocketAddr,
    created: Instant,
    used: Instant,
}

fn checkout_tcp(up: &Upstream, local: &Local) -> Option<Pooled> {
    let now = Instant::now();
    let mut pool = local.tcp.borrow_mut();
    while let Some(pc) = pool.pop_front() {
        if expired(up, now, pc.used, pc.created) {
            continue;
        }
        return Some(pc);
    }
    None
}

fn yield_tcp(up: &Upstream, local: &Local, mut pc: Pooled) {
    pc.used = Instant::now();
    let mut pool = local.tcp.borrow_mut();
    let max = up.opts.max_idle_conns;
    if max > 0 && pool.len() >= max {
        return;
    }
    pool.push_back(pc);
}

/// The start of Go's dial error (`net.OpError`): `dial tcp DST`, or with a local
/// address set (`source_address`, port 0) `dial tcp SRC:0->DST`.
pub(super) fn dial_text(net: &str, source: Option<std::net::IpAddr>, r: SocketAddr) -> String {
    match source {
        Some(src) => format!("dial {net} {}->{r}", SocketAddr::new(src, 0)),
        None => format!("dial {net} {r}"),
    }
}

/// Go's dial error when `source_address` and the upstream are of different address
/// families: `resolveAddrList` keeps no remote address for the local one, so the dial
/// fails before any socket (`dial udp: address [::1]:0: no suitable address found`).
pub(super) fn family_mismatch(
    net: &str,
    source: Option<std::net::IpAddr>,
    r: SocketAddr,
) -> Option<String> {
    let src = source?;
    let v4 = |ip: std::net::IpAddr| match ip {
        std::net::IpAddr::V4(_) => true,
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().is_some(),
    };
    (v4(src) != v4(r.ip())).then(|| {
        format!(
            "dial {net}: address {}: no suitable address found",
            SocketAddr::new(src, 0)
        )
    })
}

/// Connects to the upstream (from `source_address` when set) within `limit`,
/// feeding the dial-time average unless `tls` (the caller feeds it after the
/// handshake, which Go's dial includes); Go's `dial tcp` texts on failure.
pub(super) async fn dial_tcp(
    up: &Upstream,
    limit: Duration,
    tls: bool,
) -> Result<(TcpStream, SocketAddr), Fail> {
    dial_tcp_to(up, up.cfg.addr, limit, tls).await
}

/// [`dial_tcp`] to `r`, the upstream's address or its proxy's.
pub(super) async fn dial_tcp_to(
    up: &Upstream,
    r: SocketAddr,
    limit: Duration,
    tls: bool,
) -> Result<(TcpStream, SocketAddr), Fail> {
    let start = Instant::now();
    if let Some(e) = family_mismatch("tcp", up.opts.source, r) {
        return Err(Fail::io(e));
    }
    let dial = dial_text("tcp", up.opts.source, r);
    let sock = if r.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(|e| Fail::io(format!("{dial}: {}", go_op_err("socket", &e))))?;
    if let Some(src) = up.opts.source {
        sock.bind(SocketAddr::new(src, 0))
            .map_err(|e| Fail::io(format!("{dial}: {}", go_op_err("bind", &e))))?;
    }
    let res = timeout(limit, sock.connect(r)).await;
    if !tls {
        up.update_dial(start.elapsed());
    }
    let tcp = match res {
        Err(_) => return Err(Fail::io(format!("{dial}: i/o timeout"))),
        Ok(Err(e)) => return Err(Fail::io(format!("{dial}: {}", go_op_err("connect", &e)))),
        Ok(Ok(s)) => s,
    };
    let _ = tcp.set_nodelay(true);
    let local = tcp.local_addr().unwrap_or(r);
    Ok((tcp, local))
}

async fn dial_stream(up: &Upstream) -> Result<Pooled, Fail> {
    let start = Instant::now();
    let limit = up.dial_timeout();
    let (s, local) = match &up.tls {
        None => {
            let (tcp, local) = dial_tcp(up, limit, false).await?;
            (Stream::Tcp(tcp), local)
        }
        Some(t) => {
            // miekg dials with `tls.Dialer`: the dial time CoreDNS averages
            // includes the handshake, and a handshake past the dial timeout ends
            // with the context's error.
            let tls = async {
                let (tcp, local) = dial_tcp(up, limit, true).await?;
                let conn = TlsConnector::from(Arc::clone(&t.config));
                let left = limit.saturating_sub(start.elapsed());
                match timeout(left, conn.connect(t.name.clone(), tcp)).await {
                    Err(_) => Err(Fail::io("context deadline exceeded")),
                    Ok(Err(e)) => Err(Fail::io(super::tls::handshake_err(&e))),
                    Ok(Ok(s)) => Ok((Stream::Tls(Box::new(s)), local)),
                }
            }
            .await;
            up.update_dial(start.elapsed());
            tls?
        }
    };
    let now = Instant::now();
    Ok(Pooled {
        s,
        local,
        created: now,
        used: now,
    })
}

enum ReadErr {
    Eof,
    UnexpectedEof,
    Io(io::Error),
}

async fn read_full(s: &mut Stream, buf: &mut [u8]) -> Result<(), ReadErr> {
    let mut got = 0;
    while got < buf.len() {
        match s.read(&mut buf[got..]).await {
            Ok(0) => {
                return Err(if got == 0 {
                    ReadErr::Eof
                } else {
                    ReadErr::UnexpectedEof
                });
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && got == 0 => {
                return Err(ReadErr::Eof);
            }
            Err(e) => return Err(ReadErr::Io(e)),
        }
    }
    Ok(())
}

async fn read_msg(s: &mut Stream) -> Result<Vec<u8>, ReadErr> {
    let mut len = [0u8; 2];
    read_full(s, &mut len).await?;
    let mut m = vec![0u8; usize::from(u16::from_be_bytes(len))];
    // Go's io.ReadFull: EOF before any byte of the message is `EOF` (on a pooled
    // connection, CoreDNS's silent retry), after some of it `unexpected EOF`.
    read_full(s, &mut m).await?;
    Ok(m)
}

fn peer_closed(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset | io::ErrorKind::UnexpectedEof
    )
}

/// One query over TCP or TLS.
pub(super) async fn exchange_stream(
    up: &Upstream,
    local: &Local,
    q: &mut [u8],
    laddr: &mut Option<SocketAddr>,
) -> Result<Vec<u8>, Fail> {
    if local.in_flight.streams.load(Ordering::Relaxed) >= MAX_STREAMS {
        metrics::PENDING_FULL.fetch_add(1, Ordering::Relaxed);
        return Err(Fail::Full);
    }
    let _busy = metrics::StreamGuard::new(&local.in_flight.streams);
    let proto = up.conn_proto();
    let (mut pc, cached) = match checkout_tcp(up, local) {
        Some(pc) => {
            up.metrics.hit(proto);
            (pc, true)
        }
        None => {
            up.metrics.miss(proto);
            (dial_stream(up).await?, false)
        }
    };
    let (l, r) = (pc.local, up.cfg.addr);
    *laddr = Some(l);
    let id = random_id();
    hdr::set_id(q, id);
    // miekg's `Conn.Write` refuses a message a length prefix cannot carry.
    let Ok(len) = u16::try_from(q.len()) else {
        return Err(Fail::io("dns: message too large"));
    };
    let mut frame = Vec::with_capacity(q.len() + 2);
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(q);
    match timeout(WRITE_TIMEOUT, pc.s.write_all(&frame)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) if cached && peer_closed(&e) => return Err(Fail::CachedClosed),
        Ok(Err(e)) => {
            return Err(Fail::io(format!(
                "write tcp {l}->{r}: {}",
                go_op_err("write", &e)
            )));
        }
        Err(_) => return Err(Fail::io(format!("write tcp {l}->{r}: i/o timeout"))),
    }
    let deadline = Instant::now() + up.opts.read_timeout;
    loop {
        let m = match timeout_at(deadline, read_msg(&mut pc.s)).await {
            Err(_) => return Err(Fail::io(format!("read tcp {l}->{r}: i/o timeout"))),
            Ok(Err(ReadErr::Eof)) if cached => return Err(Fail::CachedClosed),
            Ok(Err(ReadErr::Eof)) => return Err(Fail::io("EOF")),
            Ok(Err(ReadErr::UnexpectedEof)) => return Err(Fail::io("unexpected EOF")),
            Ok(Err(ReadErr::Io(e))) if cached && peer_closed(&e) => {
                return Err(Fail::CachedClosed);
            }
            Ok(Err(ReadErr::Io(e))) => {
                return Err(Fail::io(format!(
                    "read tcp {l}->{r}: {}",
                    go_op_err("read", &e)
                )));
            }
            Ok(Ok(m)) => m,
        };
        if m.len() < HEADER_LEN {
            return Err(Fail::io("dns: short read"));
        }
        // As miekg's ReadMsg: a message that does not unpack is an error whatever its
        // ID; one that does, with another ID, is an out-of-order reply (read on).
        let u = unpack(&m).map_err(|e| Fail::io(e.text()))?;
        if hdr::id(&m) != id {
            continue;
        }
        yield_tcp(up, local, pc);
        let mut m = m;
        u.fix(&mut m);
        return Ok(m);
    }
}
