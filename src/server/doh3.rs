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
/// How long requests in progress may finish once the listener goes (as DoH's).
const GRACE: Duration = Duration::from_secs(1);
/// What a request stream may carry: the headers, the largest body and framing.
const REQUEST_STREAM_BYTES: usize = MAX_HEADER_BYTES as usize + MAX_QUERY + 1024;
/// What a control, QPACK or unknown stream may carry over its life.
const UNI_STREAM_BYTES: usize = 64 << 10;
/// Request streams that end before their headers, after which the connection
/// is closed (`h3` keeps each one's ID for the connection's life).
const MAX_UNRESOLVED: u32 = 256;
/// An `https3://` listener's settings (ALPN `h3`).
pub type Config = super::doq::Quic;

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

/// The QUIC connection under HTTP/3, its streams capped.
type Conn = super::h3cap::CappedConn<h3_quinn::Connection>;

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
    let endpoint = super::doq::endpoints(
        sock,
        &label,
        &shared,
        |l| l.h3.clone(),
        |c| c,
        |incoming, _, limit, timeouts| {
            let ctx = Ctx {
                label: label.clone(),
                shared: Arc::clone(&shared),
                local,
                timeouts,
            };
            tokio::task::spawn_local(connection(incoming, ctx, limit));
        },
    )
    .await;
    let Some(endpoint) = endpoint else {
        return;
    };
    // Connections end their requests in progress (each within GRACE of seeing the
    // listener go, which takes up to GONE_CHECK), then the endpoint closes.
    endpoint.set_server_config(None);
    let _ = tokio::time::timeout(GONE_CHECK + GRACE * 2, endpoint.wait_idle()).await;
    endpoint.close(VarInt::from_u32(NO_ERROR), b"");
}

async fn connection(
    incoming: quinn::Incoming,
    ctx: Ctx,
    limit: Option<Arc<tokio::sync::Semaphore>>,
) {
    // The QUIC handshake within the read timeout (quic-go's handshake timeout).
    let Ok(Ok(conn)) = tokio::time::timeout(ctx.timeouts.read, incoming).await else {
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
            .build::<_, Bytes>(super::h3cap::CappedConn::new(
                h3_quinn::Connection::new(conn),
                REQUEST_STREAM_BYTES,
                UNI_STREAM_BYTES,
            )),
    )
    .await;
    let Ok(Ok(mut h3c)) = built else {
        quic.close(VarInt::from_u32(NO_ERROR), b"");
        return;
    };
    let unresolved = std::rc::Rc::new(std::cell::Cell::new(0u32));
    loop {
        let accepted = tokio::select! {
            r = h3c.accept() => r,
            () = tokio::time::sleep(GONE_CHECK) => {
                if !ctx.gone() {
                    continue;
                }
                break;
            }
            () = ctx.shared.stopping() => break,
        };
        if unresolved.get() >= MAX_UNRESOLVED {
            quic.close(VarInt::from_u32(EXCESSIVE_LOAD), b"");
            return;
        }
        // Otherwise the client's GOAWAY, its close, an idle timeout or a protocol error.
        let Ok(Some(resolver)) = accepted else {
            return;
        };
        tokio::task::spawn_local(request(
            resolver,
            peer,
            ctx.clone(),
            std::rc::Rc::clone(&unresolved),
        ));
    }
    // The listener went or the server stops: GOAWAY, then the requests in
    // progress get GRACE to finish (CoreDNS's `http3.Server.Shutdown`).
    let drain = async {
        if h3c.shutdown(0).await.is_ok() {
            while let Ok(Some(_)) = h3c.accept().await {}
        }
    };
    let _ = tokio::time::timeout(GRACE, drain).await;
    quic.close(VarInt::from_u32(NO_ERROR), b"");
}

/// Reads one request, answers it and counts the response; a stream that ends
/// before its headers is counted in `unresolved`.
async fn request(
    resolver: h3::server::RequestResolver<Conn, Bytes>,
    peer: SocketAddr,
    ctx: Ctx,
    unresolved: std::rc::Rc<std::cell::Cell<u32>>,
) {
    let Ok(Ok((req, mut stream))) =
        tokio::time::timeout(ctx.timeouts.read, resolver.resolve_request()).await
    else {
        unresolved.set(unresolved.get() + 1);
        return;
    };
    let reply = respond(&req, &mut stream, peer, &ctx).await;
    let status = reply.as_ref().err().copied().unwrap_or(StatusCode::OK);
    count(&ctx.label, status.as_u16());
    let resp = Response::builder().status(status).header(
        http::header::DATE,
        httpdate::fmt_http_date(std::time::SystemTime::now()),
    );
    let (resp, data) = match reply {
        Ok(r) => (
            resp.header(http::header::CONTENT_TYPE, "application/dns-message")
                .header(
                    http::header::CACHE_CONTROL,
                    format!("max-age={}", super::doh::max_age(&r)),
                )
                .header(http::header::CONTENT_LENGTH, r.len()),
            Bytes::from(r),
        ),
        Err(status) => {
            let text = error_text(status);
            (
                resp.header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
                    .header(http::header::X_CONTENT_TYPE_OPTIONS, "nosniff")
                    .header(http::header::CONTENT_LENGTH, text.len()),
                Bytes::from_static(text.as_bytes()),
            )
        }
    };
    let Ok(resp) = resp.body(()) else {
        return;
    };
    // A HEAD request gets the headers alone, as Go's server sends them.
    let head = req.method() == Method::HEAD;
    let send = async {
        stream.send_response(resp).await.ok()?;
        if !head {
            stream.send_data(data).await.ok()?;
        }
        stream.finish().await.ok()
    };
    let _ = tokio::time::timeout(ctx.timeouts.write, send).await;
}

/// The reply to one request, or the status of its failure (CoreDNS's `ServeHTTP`).
async fn respond<S>(
    req: &http::Request<()>,
    stream: &mut h3::server::RequestStream<S, Bytes>,
    peer: SocketAddr,
    ctx: &Ctx,
) -> Result<Vec<u8>, StatusCode>
where
    S: h3::quic::BidiStream<Bytes>,
{
    if unescape(req.uri().path(), false).as_deref() != Some(PATH.as_bytes()) {
        return Err(StatusCode::NOT_FOUND);
    }
    let parent = super::doh::b3_parent(req.headers());
    let Some(msg) = request_message(req, stream, ctx.timeouts.read).await else {
        return Err(StatusCode::BAD_REQUEST);
    };
    // CoreDNS's DoH3 writer has a UDP remote address.
    let meta = Meta {
        proto: Proto::Udp,
        peer,
        local: ctx.local,
        now: Instant::now(),
    };
    answer(&msg, &ctx.label, &ctx.shared, meta, Multi::Last, parent, 0)
        .await
        .ok_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// Go's `http.Error` text of a failure status, as CoreDNS writes each.
fn error_text(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "invalid request\n",
        StatusCode::INTERNAL_SERVER_ERROR => "No response\n",
        _ => "\n",
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
