//! `https3://` listeners: DNS over HTTPS over HTTP/3 as CoreDNS 1.14.7's
//! `ServerHTTPS3` serves it, on the `h3` crate over quinn (tokio: the epoll worker,
//! or an io_uring worker's side worker), with the block's *tls* certificate.
//!
//! * ALPN `h3`, 0-RTT accepted, the QUIC idle timeout is the server's idle timeout;
//!   at most `https3 { max_streams }` streams per connection (default 256; 0: QUIC's
//!   default) and `https3 { max_connections }` connections per listener (default
//!   200; 0: no limit). A connection beyond the limit is closed with
//!   H3_EXCESSIVE_LOAD (`too many connections`). Request headers up to 16 KiB.
//! * Requests as on `https://`: only the path `/dns-query` (else 404); `GET ?dns=`
//!   (base64url without padding) or `POST` with the message as the body (at most
//!   65,536 octets); anything else, or a message miekg's accept filter refuses, is
//!   400 `invalid request`; no reply is 500 `No response`; a reply is 200 with
//!   `application/dns-message`, `Cache-Control: max-age=` its minimal TTL and its
//!   `Content-Length`.
//! * The query runs through the chain as a UDP query (CoreDNS gives the writer a
//!   UDP remote address: `udp` in logs and metrics, replies truncated to the
//!   client's EDNS size).
//! * `coredns_dns_https3_responses_total{server,status}` counts every response.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use hyper::http::{self, Method, Response, StatusCode};
use quinn::VarInt;
use quinn::crypto::rustls::QuicServerConfig;

use super::Shared;
use super::doh::{MAX_BASE64, MAX_QUERY, Multi, PATH, answer, base64url_decode, unescape};
use super::handle::Meta;
use crate::chain::Proto;
use crate::wire::request::{Verdict, parse_query};

/// `DefaultHTTPS3MaxHeaderBytes`.
const MAX_HEADER_BYTES: u64 = 16 << 10;
/// HTTP/3's H3_EXCESSIVE_LOAD.
const EXCESSIVE_LOAD: u32 = 0x107;
/// HTTP/3's H3_NO_ERROR.
const NO_ERROR: u32 = 0x100;
/// How often a quiet endpoint or connection looks whether a reload removed its listener.
const GONE_CHECK: Duration = Duration::from_secs(1);

/// An `https3://` listener's settings, built once per configuration.
#[derive(Clone)]
pub struct Config {
    /// What each worker's endpoint serves with.
    pub server: quinn::ServerConfig,
    /// The rustls settings inside `server` (to see whether a reload changed them).
    tls: Arc<rustls::ServerConfig>,
}

impl Config {
    /// QUIC settings from the block's TLS settings and the `https3` stream limit
    /// (0: quinn's default, as 0 leaves quic-go's).
    pub fn new(
        tls: &Arc<rustls::ServerConfig>,
        streams: usize,
        idle: Duration,
    ) -> Result<Self, String> {
        let mut t = (**tls).clone();
        t.alpn_protocols = vec![b"h3".to_vec()];
        // quic-go's Allow0RTT.
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
        transport.max_idle_timeout(quinn::IdleTimeout::try_from(idle).ok());
        server.transport_config(Arc::new(transport));
        Ok(Self { server, tls: t })
    }
}

/// `coredns_dns_https3_responses_total`.
static RESPONSES: crate::metrics::LabelCounts<2> = crate::metrics::LabelCounts::new(
    "coredns_dns_https3_responses_total",
    "Counter of DoH3 responses per server and http status code.",
    ["server", "status"],
);

fn count(server: &str, status: u16) {
    RESPONSES.inc([server.to_owned(), status.to_string()]);
    crate::metrics::contribute(|f| RESPONSES.add_to(f));
}

/// What a connection's requests share.
#[derive(Clone)]
struct Ctx {
    label: Arc<str>,
    shared: Arc<Shared>,
    local: SocketAddr,
    timeouts: crate::plugins::timeouts::Timeouts,
}

impl Ctx {
    fn gone(&self) -> bool {
        self.shared.active.load().find(&self.label).is_none()
    }
}

/// Serves an `https3://` listener's socket on this worker until the listener goes
/// away or shutdown.
pub async fn serve(
    sock: std::net::UdpSocket,
    local: SocketAddr,
    label: Arc<str>,
    shared: Arc<Shared>,
) {
    let Some(mut cfg) = shared.active.load().find(&label).and_then(|l| l.h3.clone()) else {
        return;
    };
    let endpoint = match quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(cfg.server.clone()),
        sock,
        Arc::new(quinn::TokioRuntime),
    ) {
        Ok(e) => e,
        Err(e) => {
            crate::clog::error(&format!("quic endpoint {label}: {e}"));
            return;
        }
    };
    loop {
        let incoming = tokio::select! {
            i = endpoint.accept() => match i {
                Some(i) => i,
                None => break,
            },
            () = tokio::time::sleep(GONE_CHECK) => {
                if shared.active.load().find(&label).is_none() {
                    break;
                }
                continue;
            }
            () = shared.stopping() => break,
        };
        let (conn_limit, current, timeouts) = {
            let active = shared.active.load();
            let Some(l) = active.find(&label) else { break };
            (l.conn_limit.clone(), l.h3.clone(), l.timeouts)
        };
        if let Some(c) = current {
            if !Arc::ptr_eq(&c.tls, &cfg.tls) {
                endpoint.set_server_config(Some(c.server.clone()));
            }
            cfg = c;
        }
        let ctx = Ctx {
            label: label.clone(),
            shared: Arc::clone(&shared),
            local,
            timeouts,
        };
        tokio::task::spawn_local(connection(incoming, ctx, conn_limit));
    }
    endpoint.close(VarInt::from_u32(NO_ERROR), b"");
}

async fn connection(
    incoming: quinn::Incoming,
    ctx: Ctx,
    limit: Option<Arc<tokio::sync::Semaphore>>,
) {
    let Ok(conn) = incoming.await else {
        return;
    };
    let _permit = match limit.map(tokio::sync::Semaphore::try_acquire_owned) {
        Some(Ok(p)) => Some(p),
        Some(Err(_)) => {
            conn.close(VarInt::from_u32(EXCESSIVE_LOAD), b"too many connections");
            return;
        }
        None => None,
    };
    let peer = super::canonical(conn.remote_address());
    let quic = conn.clone();
    let built = tokio::time::timeout(
        ctx.timeouts.read,
        h3::server::builder()
            .max_field_section_size(MAX_HEADER_BYTES)
            .build::<_, Bytes>(h3_quinn::Connection::new(conn)),
    )
    .await;
    let Ok(Ok(mut h3c)) = built else {
        quic.close(VarInt::from_u32(NO_ERROR), b"");
        return;
    };
    loop {
        let accepted = tokio::select! {
            r = h3c.accept() => r,
            () = tokio::time::sleep(GONE_CHECK) => {
                if ctx.gone() {
                    quic.close(VarInt::from_u32(NO_ERROR), b"");
                    return;
                }
                continue;
            }
            () = ctx.shared.stopping() => {
                quic.close(VarInt::from_u32(NO_ERROR), b"");
                return;
            }
        };
        // Otherwise the client's GOAWAY, its close, an idle timeout or a protocol error.
        let Ok(Some(resolver)) = accepted else {
            return;
        };
        let ctx = ctx.clone();
        tokio::task::spawn_local(async move {
            let read = ctx.timeouts.read;
            let Ok(Ok((req, mut stream))) =
                tokio::time::timeout(read, resolver.resolve_request()).await
            else {
                return;
            };
            let (status, body, reply) = respond(&req, &mut stream, peer, &ctx).await;
            count(&ctx.label, status.as_u16());
            let mut resp = Response::builder().status(status);
            match &reply {
                Some(r) => {
                    resp = resp
                        .header(http::header::CONTENT_TYPE, "application/dns-message")
                        .header(
                            http::header::CACHE_CONTROL,
                            format!("max-age={}", super::doh::max_age(r)),
                        )
                        .header(http::header::CONTENT_LENGTH, r.len());
                }
                None => {
                    resp = resp
                        .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
                        .header(http::header::X_CONTENT_TYPE_OPTIONS, "nosniff");
                }
            }
            let Ok(resp) = resp.body(()) else {
                return;
            };
            let data = reply.map_or_else(|| Bytes::from(body), Bytes::from);
            let send = async {
                stream.send_response(resp).await.ok()?;
                stream.send_data(data).await.ok()?;
                stream.finish().await.ok()
            };
            let _ = tokio::time::timeout(ctx.timeouts.write, send).await;
        });
    }
}

/// The status, an error body, and the reply of one request (CoreDNS's `ServeHTTP`).
async fn respond<S>(
    req: &http::Request<()>,
    stream: &mut h3::server::RequestStream<S, Bytes>,
    peer: SocketAddr,
    ctx: &Ctx,
) -> (StatusCode, String, Option<Vec<u8>>)
where
    S: h3::quic::BidiStream<Bytes>,
{
    if unescape(req.uri().path(), false).as_deref() != Some(PATH.as_bytes()) {
        return (StatusCode::NOT_FOUND, "\n".to_owned(), None);
    }
    let Some(msg) = request_message(req, stream, ctx.timeouts.read).await else {
        return (
            StatusCode::BAD_REQUEST,
            "invalid request\n".to_owned(),
            None,
        );
    };
    // CoreDNS's DoH3 writer has a UDP remote address.
    let meta = Meta {
        proto: Proto::Udp,
        peer,
        local: ctx.local,
        now: Instant::now(),
    };
    match answer(&msg, &ctx.label, &ctx.shared, meta, Multi::Last).await {
        Some(reply) => (StatusCode::OK, String::new(), Some(reply)),
        None => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "No response\n".to_owned(),
            None,
        ),
    }
}

/// The DNS message of a request (`doh.RequestToMsgWire`), if miekg would accept it.
async fn request_message<S>(
    req: &http::Request<()>,
    stream: &mut h3::server::RequestStream<S, Bytes>,
    read_timeout: Duration,
) -> Option<Vec<u8>>
where
    S: h3::quic::BidiStream<Bytes>,
{
    let msg = match *req.method() {
        Method::GET => {
            let values = super::doh::query_values(req.uri().query().unwrap_or(""), "dns");
            let [b64] = values.as_slice() else {
                return None;
            };
            if b64.len() > MAX_BASE64 {
                return None;
            }
            base64url_decode(b64)?
        }
        Method::POST => {
            let body = async {
                let mut body = Vec::new();
                while let Some(mut chunk) = stream.recv_data().await.ok()? {
                    if body.len() + chunk.remaining() > MAX_QUERY {
                        return None;
                    }
                    while chunk.has_remaining() {
                        let c = chunk.chunk();
                        body.extend_from_slice(c);
                        let n = c.len();
                        chunk.advance(n);
                    }
                }
                Some(body)
            };
            tokio::time::timeout(read_timeout, body).await.ok()??
        }
        _ => return None,
    };
    match parse_query(&msg) {
        Verdict::Query(_) => Some(msg),
        Verdict::Reject(r) if r.rcode == 2 => Some(msg),
        _ => None,
    }
}
