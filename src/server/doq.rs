//! `quic://` listeners: DNS over QUIC (RFC 9250) as CoreDNS 1.14.7's `ServerQUIC`
//! serves it, on quinn over tokio (the epoll worker, or an io_uring worker's side
//! worker), with the block's *tls* certificate.
//!
//! * ALPN `doq`, TLS 1.3 (QUIC's), 0-RTT accepted; the QUIC idle timeout is the
//!   server's idle timeout; at most `quic { max_streams }` streams per connection
//!   (default 256) and 200 connections per listener (more are accepted, then closed with
//!   code 0 `too many connections`).
//! * One query per bidirectional stream: a 2-octet length, then the message, read
//!   within the read timeout. A stream that breaks this, a message miekg would refuse,
//!   a message ID other than 0 or an edns-tcp-keepalive option closes the connection
//!   with DOQ_PROTOCOL_ERROR (2).
//! * The query runs through the chain as a UDP query (CoreDNS derives the protocol from
//!   the address: `udp` in logs and metrics, replies truncated to the client's EDNS
//!   size); the reply goes back length-prefixed and the stream is finished.
//! * At most `quic { worker_pool_size }` queries run at once per listener (default
//!   1,024); further streams wait.
//! * `coredns_dns_quic_responses_total{server,status}`: `0x0` per query served, `0x1`
//!   and `0x2` per connection closed for an internal or a protocol error.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::QuicServerConfig;
use quinn::{ConnectionError, VarInt};

use super::{Shared, canonical};
use crate::chain::Proto;
use crate::wire::request::{Verdict, parse_query};

/// DOQ_NO_ERROR, DOQ_INTERNAL_ERROR, DOQ_PROTOCOL_ERROR.
const NO_ERROR: u32 = 0;
const INTERNAL_ERROR: u32 = 1;
const PROTOCOL_ERROR: u32 = 2;

/// A QUIC listener's server settings (DoQ's and DoH3's), built once per
/// configuration.
#[derive(Clone)]
pub struct Quic {
    /// What each worker's endpoint serves with.
    pub server: quinn::ServerConfig,
    /// The rustls settings inside `server` (to see whether a reload changed them).
    tls: Arc<rustls::ServerConfig>,
}

impl Quic {
    /// The block's TLS settings with ALPN `alpn` and 0-RTT (quic-go's
    /// Allow0RTT), at most `streams` streams of each kind per connection (0:
    /// quinn's default), the idle timeout, and receive windows a query fits
    /// (128 KiB per stream; 2 MiB per connection bounds what unread streams hold).
    pub fn new(
        tls: &Arc<rustls::ServerConfig>,
        alpn: &[u8],
        streams: usize,
        idle: Duration,
    ) -> Result<Self, String> {
        let mut t = (**tls).clone();
        t.alpn_protocols = vec![alpn.to_vec()];
        t.max_early_data_size = u32::MAX;
        let t = Arc::new(t);
        let crypto =
            QuicServerConfig::try_from(Arc::clone(&t)).map_err(|e| format!("quic: {e}"))?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        let mut transport = quinn::TransportConfig::default();
        if streams > 0 {
            let n = VarInt::from_u64(streams as u64).unwrap_or(VarInt::MAX);
            transport
                .max_concurrent_bidi_streams(n)
                .max_concurrent_uni_streams(n);
        }
        transport
            .max_idle_timeout(quinn::IdleTimeout::try_from(idle).ok())
            .stream_receive_window(VarInt::from_u32(128 << 10))
            .receive_window(VarInt::from_u32(2 << 20));
        server.transport_config(Arc::new(transport));
        Ok(Self { server, tls: t })
    }
}

/// A `quic://` listener's settings.
#[derive(Clone)]
pub struct Config {
    pub quic: Quic,
    /// Queries served at once over all workers (`worker_pool_size`).
    pub workers: Arc<tokio::sync::Semaphore>,
}

impl Config {
    /// QUIC settings from the block's TLS settings and the `quic` limits.
    pub fn new(
        tls: &Arc<rustls::ServerConfig>,
        streams: usize,
        workers: usize,
        idle: Duration,
    ) -> Result<Self, String> {
        Ok(Self {
            quic: Quic::new(tls, b"doq", streams, idle)?,
            workers: Arc::new(tokio::sync::Semaphore::new(
                workers.min(tokio::sync::Semaphore::MAX_PERMITS),
            )),
        })
    }
}

/// `coredns_dns_quic_responses_total`.
static RESPONSES: crate::metrics::LabelCounts<2> = crate::metrics::LabelCounts::new(
    "coredns_dns_quic_responses_total",
    "Counter of DoQ responses per server and QUIC application code.",
    ["server", "status"],
);

fn count(server: &str, code: u32) {
    RESPONSES.inc([server.to_owned(), format!("0x{code:x}")]);
    crate::metrics::contribute(|f| RESPONSES.add_to(f));
}

/// Closes `conn` with a DoQ code, counting it unless it is DOQ_NO_ERROR.
fn close(conn: &quinn::Connection, label: &str, code: u32) {
    conn.close(VarInt::from_u32(code), b"");
    if code != NO_ERROR {
        count(label, code);
    }
}

/// Serves a `quic://` listener's socket on this worker until the listener goes away or
/// shutdown.
pub async fn serve(
    sock: std::net::UdpSocket,
    local: SocketAddr,
    label: std::sync::Arc<str>,
    shared: Arc<Shared>,
) {
    let endpoint = endpoints(
        sock,
        &label,
        &shared,
        |l| l.quic.clone(),
        |c| &c.quic,
        |incoming, cfg, limit, timeouts| {
            let ctx = Stream {
                label: label.clone(),
                shared: Arc::clone(&shared),
                local,
                workers: Arc::clone(&cfg.workers),
                timeouts,
            };
            tokio::task::spawn_local(connection(incoming, ctx, limit));
        },
    )
    .await;
    if let Some(endpoint) = endpoint {
        endpoint.close(VarInt::from_u32(NO_ERROR), b"");
    }
}

/// Runs a QUIC endpoint on `sock` for listener `label` until a reload removes
/// the listener (a quiet endpoint looks each second) or the server stops,
/// handing each incoming connection to `spawn` with the listener's settings of
/// the moment (`settings`), its connection limit and timeouts; a certificate a
/// reload changed serves the connections after it. Returns the endpoint, for
/// the caller to close.
pub(super) async fn endpoints<S: Clone>(
    sock: std::net::UdpSocket,
    label: &Arc<str>,
    shared: &Arc<Shared>,
    settings: impl Fn(&super::handle::ListenerRt) -> Option<S>,
    quic: fn(&S) -> &Quic,
    mut spawn: impl FnMut(
        quinn::Incoming,
        &S,
        Option<Arc<tokio::sync::Semaphore>>,
        crate::plugins::timeouts::Timeouts,
    ),
) -> Option<quinn::Endpoint> {
    let mut cfg = shared.active.load().find(label).and_then(&settings)?;
    let endpoint = match quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(quic(&cfg).server.clone()),
        sock,
        Arc::new(quinn::TokioRuntime),
    ) {
        Ok(e) => e,
        Err(e) => {
            crate::clog::error(&format!("quic endpoint {label}: {e}"));
            return None;
        }
    };
    loop {
        let incoming = tokio::select! {
            i = endpoint.accept() => match i {
                Some(i) => i,
                None => break,
            },
            () = tokio::time::sleep(GONE_CHECK) => {
                if shared.active.load().find(label).is_none() {
                    break;
                }
                continue;
            }
            () = shared.stopping() => break,
        };
        // The configuration of the moment: a reload may have removed the listener or
        // changed its certificate or limits.
        let (conn_limit, current, timeouts) = {
            let active = shared.active.load();
            let Some(l) = active.find(label) else { break };
            (l.conn_limit.clone(), settings(l), l.timeouts)
        };
        if let Some(c) = current {
            if !Arc::ptr_eq(&quic(&c).tls, &quic(&cfg).tls) {
                endpoint.set_server_config(Some(quic(&c).server.clone()));
            }
            cfg = c;
        }
        spawn(incoming, &cfg, conn_limit, timeouts);
    }
    Some(endpoint)
}

/// What a connection's streams share.
#[derive(Clone)]
struct Stream {
    label: Arc<str>,
    shared: Arc<Shared>,
    local: SocketAddr,
    workers: Arc<tokio::sync::Semaphore>,
    /// The listener's timeouts when the connection came.
    timeouts: crate::plugins::timeouts::Timeouts,
}

/// How often a quiet endpoint or connection looks whether a reload removed its listener.
const GONE_CHECK: Duration = Duration::from_secs(1);

impl Stream {
    fn gone(&self) -> bool {
        self.shared.active.load().find(&self.label).is_none()
    }
}

async fn connection(
    incoming: quinn::Incoming,
    ctx: Stream,
    limit: Option<Arc<tokio::sync::Semaphore>>,
) {
    // The QUIC handshake within the read timeout (quic-go's handshake timeout).
    let Ok(Ok(conn)) = tokio::time::timeout(ctx.timeouts.read, incoming).await else {
        return;
    };
    let _permit = match limit.map(tokio::sync::Semaphore::try_acquire_owned) {
        Some(Ok(p)) => Some(p),
        Some(Err(_)) => {
            conn.close(VarInt::from_u32(NO_ERROR), b"too many connections");
            return;
        }
        None => None,
    };
    let peer = canonical(conn.remote_address());
    loop {
        let accepted = tokio::select! {
            r = conn.accept_bi() => r,
            () = tokio::time::sleep(GONE_CHECK) => {
                if ctx.gone() {
                    conn.close(VarInt::from_u32(NO_ERROR), b"");
                    return;
                }
                continue;
            }
            () = ctx.shared.stopping() => {
                conn.close(VarInt::from_u32(NO_ERROR), b"");
                return;
            }
        };
        let (send, recv) = match accepted {
            Ok(s) => s,
            Err(e) => {
                // CoreDNS closes quietly on an idle timeout, its own close, a protocol
                // error's close and shutdown; anything else (a client's own close
                // included) is counted as an internal error.
                let expected = match &e {
                    ConnectionError::TimedOut | ConnectionError::LocallyClosed => true,
                    ConnectionError::ApplicationClosed(c) => {
                        c.error_code == VarInt::from_u32(PROTOCOL_ERROR)
                    }
                    _ => false,
                };
                if !expected {
                    close(&conn, &ctx.label, INTERNAL_ERROR);
                }
                return;
            }
        };
        let permit = tokio::select! {
            p = Arc::clone(&ctx.workers).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = conn.closed() => return,
        };
        let conn = conn.clone();
        let ctx = ctx.clone();
        tokio::task::spawn_local(async move {
            let _permit = permit;
            stream(send, recv, &conn, peer, &ctx).await;
        });
    }
}

/// Reads one length-prefixed message (RFC 9250 §4.2).
async fn read_message(recv: &mut quinn::RecvStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 2];
    recv.read_exact(&mut len).await.ok()?;
    let n = usize::from(u16::from_be_bytes(len));
    if n == 0 {
        return None;
    }
    let mut buf = vec![0u8; n];
    recv.read_exact(&mut buf).await.ok()?;
    Some(buf)
}

/// RFC 9250 §4.3.3 as CoreDNS checks it: message ID 0 and no edns-tcp-keepalive.
fn valid(msg: &[u8], v: &Verdict<'_>) -> bool {
    if crate::wire::be16(msg, 0) != 0 {
        return false;
    }
    match v {
        Verdict::Query(r) => r.opt.is_none_or(|o| !o.options().any(|o| o.code == 11)),
        _ => true,
    }
}

async fn stream(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    conn: &quinn::Connection,
    peer: SocketAddr,
    ctx: &Stream,
) {
    let read = tokio::time::timeout(ctx.timeouts.read, read_message(&mut recv)).await;
    if ctx.gone() {
        // A reload removed the listener: no protocol error, nothing counted.
        return conn.close(VarInt::from_u32(NO_ERROR), b"");
    }
    let Ok(Some(msg)) = read else {
        return close(conn, &ctx.label, PROTOCOL_ERROR);
    };
    // The client's FIN usually came with the query: take it, so that dropping the
    // receive side sends no STOP_SENDING (CoreDNS never stops the stream).
    let mut fin = [0u8; 1];
    let _ = tokio::time::timeout(Duration::ZERO, recv.read(&mut fin)).await;
    let v = parse_query(&msg);
    let accepted = match &v {
        Verdict::Query(_) => true,
        // A bare header unpacks to a message without a question: the server answers it.
        Verdict::Reject(r) => r.rcode == 2,
        Verdict::Ignore => false,
    };
    if !accepted || !valid(&msg, &v) {
        return close(conn, &ctx.label, PROTOCOL_ERROR);
    }
    drop(v);
    let reply = super::doh::answer(
        &msg,
        &ctx.label,
        &ctx.shared,
        super::handle::Meta {
            proto: Proto::Udp,
            peer,
            local: ctx.local,
            now: std::time::Instant::now(),
        },
        super::doh::Multi::First,
        None,
        0,
    )
    .await;
    if let Some(reply) = reply {
        if let Ok(len) = u16::try_from(reply.len()) {
            let mut out = Vec::with_capacity(reply.len() + 2);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&reply);
            // Bounded, so a client that grants no flow-control credit cannot hold a
            // worker slot.
            let written = tokio::time::timeout(ctx.timeouts.write, send.write_all(&out)).await;
            if matches!(written, Ok(Ok(()))) {
                let _ = send.finish();
            } else {
                let _ = send.reset(VarInt::from_u32(INTERNAL_ERROR));
            }
        }
    }
    count(&ctx.label, NO_ERROR);
}
