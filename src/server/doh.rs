//! `https://` listeners: DNS over HTTPS (RFC 8484) as CoreDNS 1.14.7's `ServerHTTPS`
//! serves it, on hyper over tokio (the epoll worker, or an io_uring worker's side
//! worker).
//!
//! * HTTP/2 or HTTP/1.1 as the TLS session's ALPN says (`h2`, `http/1.1`); without a
//!   *tls* plugin, plain HTTP/1.1 (Go's server offers no cleartext HTTP/2).
//! * Only the path `/dns-query` (else 404); `GET ?dns=` (base64url without padding)
//!   or `POST` with the message as the body (at most 65,536 octets); anything else, or
//!   a message miekg's accept filter or unpacking refuses, is 400 `invalid request`.
//! * The query runs through the listener's chain as a TCP query; no reply is 500
//!   `No response`; a reply is 200 with `application/dns-message` and
//!   `Cache-Control: max-age=` the reply's minimal TTL (`dnsutil.MinimalTTL`).
//! * Every response is counted in `coredns_dns_https_responses_total{server,status}`.
//! * At most `https { max_connections }` connections are served at once per listener
//!   (default 200); the rest wait, as behind Go's `LimitListener`.
//! * Go's server timeouts: the TLS handshake and the first request within the read
//!   timeout, a request's body too; a connection with no request in progress is closed
//!   after the idle timeout.

use std::cell::Cell;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};

use super::Shared;
use super::handle::{Meta, Outcome, resume, scrub_more};
use crate::chain::Proto;
use crate::wire::request::{Verdict, parse_query};

/// CoreDNS's `doh.Path`.
pub const PATH: &str = "/dns-query";
/// CoreDNS's `maxDNSQuerySize`: the POST body limit.
pub(super) const MAX_QUERY: usize = 65_536;
/// CoreDNS's `maxBase64Len`: the longest `dns` parameter.
pub(super) const MAX_BASE64: usize = (MAX_QUERY * 8).div_ceil(6);

/// `coredns_dns_https_responses_total`.
static RESPONSES: crate::metrics::LabelCounts<2> = crate::metrics::LabelCounts::new(
    "coredns_dns_https_responses_total",
    "Counter of DoH responses per server and http status code.",
    ["server", "status"],
);

fn count(server: &str, status: u16) {
    RESPONSES.inc([server.to_owned(), status.to_string()]);
    crate::metrics::contribute(|f| RESPONSES.add_to(f));
}

/// A response body: at most one data frame, then (gRPC) trailers.
pub(super) struct Reply {
    data: Option<Bytes>,
    trailers: Option<hyper::HeaderMap>,
}

impl Reply {
    /// A body of `data` alone.
    pub(super) fn data(data: Bytes) -> Self {
        Self {
            data: Some(data),
            trailers: None,
        }
    }

    /// No body at all (a gRPC trailers-only response: the status is in the headers).
    pub(super) fn empty() -> Self {
        Self {
            data: None,
            trailers: None,
        }
    }

    /// A body of `data`, then `trailers`.
    pub(super) fn with_trailers(data: Bytes, trailers: hyper::HeaderMap) -> Self {
        Self {
            data: Some(data),
            trailers: Some(trailers),
        }
    }
}

impl hyper::body::Body for Reply {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        let frame = match (this.data.take(), this.trailers.take()) {
            (Some(d), t) => {
                this.trailers = t;
                Some(Ok(hyper::body::Frame::data(d)))
            }
            (None, Some(t)) => Some(Ok(hyper::body::Frame::trailers(t))),
            (None, None) => None,
        };
        std::task::Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        // An exact size (hyper writes it as Content-Length) only for a plain body: gRPC
        // responses carry none.
        match (&self.data, &self.trailers) {
            (Some(d), None) => hyper::body::SizeHint::with_exact(d.len() as u64),
            _ => hyper::body::SizeHint::default(),
        }
    }
}

/// What a connection's requests share.
struct ConnCtx {
    label: Arc<str>,
    shared: Arc<Shared>,
    peer: SocketAddr,
    local: SocketAddr,
    read_timeout: Duration,
    /// gRPC (`grpc://`) rather than DoH.
    grpc: bool,
    /// Requests in progress, and when the last one ended (the idle clock).
    active: Cell<usize>,
    last: Cell<Instant>,
    /// Whether a request has started: until then the connection waits the read timeout
    /// (Go's deadline for the first request), after that the idle timeout.
    served: Cell<bool>,
    /// When the first octet of a request not yet handed to the service arrived: from
    /// then on the request must be read within the read timeout (Go sets its read
    /// deadline at a request's first octet).
    pending: Cell<Option<Instant>>,
}

/// A request in progress on a connection; its end restarts the idle clock.
struct Active<'a>(&'a ConnCtx);

impl<'a> Active<'a> {
    fn new(c: &'a ConnCtx) -> Self {
        c.active.set(c.active.get() + 1);
        c.served.set(true);
        c.pending.set(None);
        Self(c)
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.active.set(self.0.active.get().saturating_sub(1));
        self.0.last.set(Instant::now());
    }
}

/// A connection's byte stream, noting when a new request starts to arrive.
struct Watched<S> {
    inner: S,
    ctx: Rc<ConnCtx>,
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Watched<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        let c = &self.ctx;
        if buf.filled().len() > before && c.active.get() == 0 && c.pending.get().is_none() {
            c.pending.set(Some(Instant::now()));
        }
        r
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Runs hyper's HTTP/2 streams on the worker's own thread (the chain is not `Send`).
#[derive(Clone, Copy)]
struct LocalExec;

impl<F: std::future::Future + 'static> hyper::rt::Executor<F> for LocalExec {
    fn execute(&self, fut: F) {
        tokio::task::spawn_local(fut);
    }
}

/// Go's `looksLikeHTTP`: the first octets of a plain HTTP request.
fn looks_like_http(b: &[u8]) -> bool {
    [&b"GET /"[..], b"HEAD ", b"POST ", b"PUT /", b"OPTIO"].contains(&b)
}

/// Serves one accepted connection of an `https://` listener, or of a `grpc://` one
/// when `grpc` is set (to its HTTP/2 stream limit, `None` for none). `_permit` is the
/// connection's slot under `max_connections`, taken before the accept.
pub async fn conn(
    stream: tokio::net::TcpStream,
    (peer, local): (SocketAddr, SocketAddr),
    label: Arc<str>,
    shared: Arc<Shared>,
    tls: Option<Arc<rustls::ServerConfig>>,
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
    grpc: Option<Option<u32>>,
) {
    let _ = stream.set_nodelay(true);
    let timeouts = {
        let active = shared.active.load();
        active.find(&label).map(|l| l.timeouts).unwrap_or_default()
    };
    let ctx = Rc::new(ConnCtx {
        label,
        shared: Arc::clone(&shared),
        peer,
        local,
        read_timeout: timeouts.read,
        grpc: grpc.is_some(),
        active: Cell::new(0),
        last: Cell::new(Instant::now()),
        served: Cell::new(false),
        pending: Cell::new(None),
    });
    // gRPC is HTTP/2 only (cleartext with prior knowledge); DoH's cleartext is HTTP/1.1.
    // HTTP/2 streams per connection: `grpc_server { max_streams }` (0: no limit), or
    // Go's HTTP/2 server default of 250 for DoH.
    let streams = grpc.unwrap_or(Some(250));
    let Some(cfg) = tls else {
        let h2 = grpc.is_some();
        let io = Watched {
            inner: stream,
            ctx: Rc::clone(&ctx),
        };
        serve(TokioIo::new(io), h2, ctx, timeouts.idle, streams).await;
        return;
    };
    let start = Instant::now();
    // grpc-go sets none of the server's timeouts: its own 120 s for the handshake.
    let handshake = if grpc.is_some() {
        Duration::from_secs(120)
    } else {
        timeouts.read
    };
    if grpc.is_none() {
        // Go's HTTPS server answers plain HTTP on its TLS port.
        let mut head = [0u8; 5];
        let peeked = tokio::select! {
            r = tokio::time::timeout(timeouts.read, stream.peek(&mut head)) => r,
            () = shared.stopping() => return,
        };
        if let Ok(Ok(5)) = peeked {
            if looks_like_http(&head) {
                let mut stream = stream;
                let _ = tokio::time::timeout(
                    timeouts.write,
                    tokio::io::AsyncWriteExt::write_all(
                        &mut stream,
                        b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n",
                    ),
                )
                .await;
                return;
            }
        }
    }
    let accept = tokio_rustls::TlsAcceptor::from(cfg).accept(stream);
    let budget = handshake.saturating_sub(start.elapsed());
    let session = tokio::select! {
        r = tokio::time::timeout(budget, accept) => match r {
            Ok(Ok(s)) => s,
            _ => return,
        },
        () = shared.stopping() => return,
    };
    let h2 = grpc.is_some() || session.get_ref().1.alpn_protocol() == Some(b"h2");
    ctx.last.set(Instant::now());
    let io = Watched {
        inner: session,
        ctx: Rc::clone(&ctx),
    };
    serve(TokioIo::new(io), h2, ctx, timeouts.idle, streams).await;
}

/// Go's `http.DefaultMaxHeaderBytes`: the largest request head (a GET's `dns=` value
/// can be 87,382 characters).
const MAX_HEADER_BYTES: usize = 1 << 20;

/// Runs HTTP/1.1 or HTTP/2 on `io` until the client leaves, the connection idles past
/// `idle`, or shutdown.
async fn serve<I>(io: I, h2: bool, ctx: Rc<ConnCtx>, idle: Duration, streams: Option<u32>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + 'static,
{
    let c = Rc::clone(&ctx);
    let svc = hyper::service::service_fn(move |req| {
        let c = Rc::clone(&c);
        async move {
            // Counted out however the request ends (an HTTP/2 stream the client resets
            // drops this future).
            let _active = Active::new(&c);
            let resp = if c.grpc {
                super::grpc::respond(req, &c.label, &c.shared, c.peer, c.local).await
            } else {
                respond(req, &c).await
            };
            Ok::<_, Infallible>(resp)
        }
    });
    let shared = Arc::clone(&ctx.shared);
    // gRPC connections have no idle or read deadline (grpc-go's defaults).
    let idle = (!ctx.grpc).then_some(idle);
    if h2 {
        let conn = hyper::server::conn::http2::Builder::new(LocalExec)
            .timer(TokioTimer::new())
            .max_concurrent_streams(streams)
            // x/net/http2's limit: MaxHeaderBytes + 32.
            .max_header_list_size(u32::try_from(MAX_HEADER_BYTES + 32).unwrap_or(u32::MAX))
            .serve_connection(io, svc);
        drive(conn, &ctx, &shared, idle, true, |c| c.graceful_shutdown()).await;
    } else {
        // No header read timeout of hyper's: it runs from the end of one response, where
        // Go waits the idle timeout for the next request (`drive`).
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(None)
            .max_buf_size(MAX_HEADER_BYTES + 4096)
            .serve_connection(io, svc);
        drive(conn, &ctx, &shared, idle, false, |c| c.graceful_shutdown()).await;
    }
}

/// What `drive` does at a deadline.
#[derive(Clone, Copy, PartialEq, Eq)]
enum AtDeadline {
    /// Look again (a request is in progress).
    Recheck,
    /// Close now (Go's read deadline passed, or the grace after a shutdown).
    Drop,
    /// Shut down gracefully (idle; HTTP/2 sends GOAWAY).
    Shutdown,
}

/// Polls a hyper connection with Go's deadlines: before its first request (HTTP/1.1) the
/// read timeout, a request that has started to arrive the read timeout from its first
/// octet, then the idle timeout with no request in progress (HTTP/2 counts only
/// streams); with no `idle` (gRPC) none of these. An idle connection, one whose listener
/// a reload removed, or any at shutdown is shut down gracefully and dropped a second
/// later.
async fn drive<C, E>(
    conn: C,
    ctx: &ConnCtx,
    shared: &Shared,
    idle: Option<Duration>,
    h2: bool,
    shutdown: impl Fn(std::pin::Pin<&mut C>),
) where
    C: std::future::Future<Output = Result<(), E>>,
{
    const GRACE: Duration = Duration::from_secs(1);
    tokio::pin!(conn);
    let mut closing: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if closing.is_none() && shared.active.load().find(&ctx.label).is_none() {
            shutdown(conn.as_mut());
            closing = Some(now);
        }
        let (at, what) = if let Some(t) = closing {
            (t + GRACE, AtDeadline::Drop)
        } else if ctx.active.get() > 0 {
            (now + ctx.read_timeout.min(GRACE * 10), AtDeadline::Recheck)
        } else if idle.is_none() {
            // No deadline: look again now and then for a removed listener.
            (now + GRACE * 5, AtDeadline::Recheck)
        } else if let (false, Some(t)) = (h2, ctx.pending.get()) {
            (t + ctx.read_timeout, AtDeadline::Drop)
        } else if !h2 && !ctx.served.get() {
            (ctx.last.get() + ctx.read_timeout, AtDeadline::Drop)
        } else {
            (ctx.last.get() + idle.unwrap_or(GRACE), AtDeadline::Shutdown)
        };
        if at <= now {
            match what {
                AtDeadline::Drop => return,
                AtDeadline::Shutdown => {
                    shutdown(conn.as_mut());
                    closing = Some(now);
                }
                AtDeadline::Recheck => {}
            }
            continue;
        }
        tokio::select! {
            _ = conn.as_mut() => return,
            () = tokio::time::sleep_until(at.into()) => {}
            () = shared.stopping(), if closing.is_none() => {
                shutdown(conn.as_mut());
                closing = Some(Instant::now());
            }
        }
    }
}

/// Go's `http.Error`: a text body with a newline, `nosniff`.
fn http_error(status: StatusCode, msg: &str) -> Response<Reply> {
    let mut r = Response::new(Reply::data(Bytes::from(format!("{msg}\n"))));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(
        hyper::header::X_CONTENT_TYPE_OPTIONS,
        hyper::header::HeaderValue::from_static("nosniff"),
    );
    r
}

async fn respond(req: Request<Incoming>, c: &ConnCtx) -> Response<Reply> {
    if unescape(req.uri().path(), false).as_deref() != Some(PATH.as_bytes()) {
        count(&c.label, 404);
        return http_error(StatusCode::NOT_FOUND, "");
    }
    let parent = b3_parent(req.headers());
    let Some(msg) = request_message(req, c.read_timeout).await else {
        count(&c.label, 400);
        return http_error(StatusCode::BAD_REQUEST, "invalid request");
    };
    // A TCP query to the chain: CoreDNS's DoH writer has a TCP remote address.
    let meta = Meta {
        proto: Proto::Tcp,
        peer: c.peer,
        local: c.local,
        now: Instant::now(),
    };
    match answer(&msg, &c.label, &c.shared, meta, Multi::Last, parent, 0).await {
        Some(reply) => {
            count(&c.label, 200);
            ok(reply)
        }
        None => {
            count(&c.label, 500);
            http_error(StatusCode::INTERNAL_SERVER_ERROR, "No response")
        }
    }
}

/// The DNS message of a request (`doh.RequestToMsgWire`), if miekg would accept and
/// unpack it (`dnsutil.UnpackRequest`).
async fn request_message(req: Request<Incoming>, read_timeout: Duration) -> Option<Vec<u8>> {
    let msg = match *req.method() {
        Method::GET => {
            let values = query_values(req.uri().query().unwrap_or(""), "dns");
            let [b64] = values.as_slice() else {
                return None;
            };
            if b64.len() > MAX_BASE64 {
                return None;
            }
            base64url_decode(b64)?
        }
        Method::POST => {
            let body = Limited::new(req.into_body(), MAX_QUERY);
            let collected = tokio::time::timeout(read_timeout, body.collect())
                .await
                .ok()?
                .ok()?;
            collected.to_bytes().to_vec()
        }
        _ => return None,
    };
    match parse_query(&msg) {
        // A bare header unpacks to a message without a question: the server answers it.
        Verdict::Query(_) => Some(msg),
        Verdict::Reject(r) if r.rcode == 2 => Some(msg),
        _ => None,
    }
}

/// The B3 trace context of a request's headers, for *trace*.
pub(super) fn b3_parent(h: &hyper::HeaderMap) -> Option<crate::plugins::trace::Parent> {
    crate::plugins::trace::b3(|k| h.get(k)?.to_str().ok().map(str::to_owned))
}

/// Which message of a multi-message reply (a zone transfer) a transport sends.
pub(super) enum Multi {
    /// DoQ: the writer finishes the stream after the first.
    First,
    /// DoH: the writer keeps only the last.
    Last,
}

/// Runs `msg` through the listener `label`'s chain: the reply, if any.
pub(super) async fn answer(
    msg: &[u8],
    label: &Arc<str>,
    shared: &Arc<Shared>,
    meta: Meta,
    multi: Multi,
    parent: Option<crate::plugins::trace::Parent>,
    traced: u32,
) -> Option<Vec<u8>> {
    let mut resp = Vec::with_capacity(512);
    let mut scratch = Vec::new();
    let parked = {
        let active = shared.active.load();
        let l = active.find(label)?;
        let out = crate::plugins::trace::with_http_parent(parent, || {
            // A query inside a gRPC call's span runs as a self-lookup would.
            super::handle::dispatch(&l.disp, msg, meta, (0, traced, 0), &mut resp, &mut scratch)
        });
        match out {
            Outcome::Reply => return Some(resp),
            Outcome::Drop => return None,
            Outcome::Stream(more) => {
                let Some(mut last) = more
                    .into_iter()
                    .last()
                    .filter(|_| matches!(multi, Multi::Last))
                else {
                    return Some(resp);
                };
                scrub_more(msg, &mut last);
                return Some(last);
            }
            Outcome::Parked { block, at, st } => (Arc::clone(&l.disp), block, at, st),
        }
    };
    let (disp, block, at, st) = parked;
    match resume(&disp, block, msg, &meta, at, st, &mut resp, &mut scratch).await {
        Outcome::Reply => Some(resp),
        _ => None,
    }
}

/// A 200 with the reply and CoreDNS's headers.
fn ok(reply: Vec<u8>) -> Response<Reply> {
    let age = max_age(&reply);
    let len = reply.len();
    let mut r = Response::new(Reply::data(Bytes::from(reply)));
    let h = r.headers_mut();
    h.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/dns-message"),
    );
    if let Ok(v) = hyper::header::HeaderValue::from_str(&format!("max-age={age}")) {
        h.insert(hyper::header::CACHE_CONTROL, v);
    }
    h.insert(
        hyper::header::CONTENT_LENGTH,
        hyper::header::HeaderValue::from(len),
    );
    r
}

/// `uint32(dnsutil.MinimalTTLWithMaximum(reply, response.Typify(reply), 1h).Seconds())`.
pub(super) fn max_age(reply: &[u8]) -> u32 {
    const SEC: i64 = 1_000_000_000;
    let Some(idx) = crate::wire::index::MsgIndex::parse(reply) else {
        return 5;
    };
    let t = crate::plugins::log::typify(reply, &idx);
    let ns = crate::plugins::cache::classify::minimal_ttl(&idx, t, 3600 * SEC);
    u32::try_from(ns / SEC).unwrap_or(0)
}

/// The values of `key` in a raw query string, as Go's `url.ParseQuery` reads them:
/// `&`-separated pairs, a pair holding `;` skipped, keys and values unescaped (`+` is a
/// space), pairs that fail to unescape skipped.
pub fn query_values(raw: &str, key: &str) -> Vec<String> {
    let mut out = Vec::new();
    for pair in raw.split('&') {
        if pair.is_empty() || pair.contains(';') {
            continue;
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (Some(k), Some(v)) = (unescape(k, true), unescape(v, true)) else {
            continue;
        };
        if k == key.as_bytes() {
            out.push(String::from_utf8_lossy(&v).into_owned());
        }
    }
    out
}

/// Go's `url.QueryUnescape` (`plus`) or path and user-information unescaping: `%XX`
/// sequences decoded; `None` for a malformed escape.
pub(crate) fn unescape(s: &str, plus: bool) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let h = |c: u8| (c as char).to_digit(16);
                let hi = h(*b.get(i + 1)?)?;
                let lo = h(*b.get(i + 2)?)?;
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            b'+' if plus => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Some(out)
}

/// Go's `base64.RawURLEncoding.DecodeString`: the URL alphabet without padding (a `=`
/// is an error), CR and LF ignored, non-zero trailing bits accepted.
pub fn base64url_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    let mut n = 0usize;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            b'\r' | b'\n' => continue,
            _ => return None,
        };
        n += 1;
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // One character alone cannot make an octet.
    if n % 4 == 1 {
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_as_go() {
        assert_eq!(base64url_decode("").as_deref(), Some(&b""[..]));
        assert_eq!(base64url_decode("AAE").as_deref(), Some(&[0u8, 1][..]));
        assert_eq!(base64url_decode("-_8").as_deref(), Some(&[0xfb, 0xff][..]));
        assert_eq!(base64url_decode("AA\r\nE").as_deref(), Some(&[0u8, 1][..]));
        // Padding, the standard alphabet and a lone sextet are errors.
        assert_eq!(base64url_decode("AAE="), None);
        assert_eq!(base64url_decode("+/8"), None);
        assert_eq!(base64url_decode("AAAAA"), None);
        // Non-strict: trailing bits need not be zero.
        assert_eq!(base64url_decode("AAF").as_deref(), Some(&[0u8, 1][..]));
    }

    #[test]
    fn query_values_as_go() {
        assert_eq!(query_values("dns=AAE", "dns"), ["AAE"]);
        assert_eq!(query_values("a=1&dns=A%41E&b", "dns"), ["AAE"]);
        assert_eq!(query_values("dns=a&dns=b", "dns"), ["a", "b"]);
        assert_eq!(query_values("dns=a+b", "dns"), ["a b"]);
        assert_eq!(query_values("d%6Es=x", "dns"), ["x"]);
        // A pair with a semicolon or a bad escape is skipped.
        assert!(query_values("dns=a;b", "dns").is_empty());
        assert!(query_values("dns=%zz", "dns").is_empty());
        assert_eq!(query_values("dns", "dns"), [""]);
    }

    #[test]
    fn max_age_is_the_minimal_ttl() {
        // NOERROR with an answer of TTL 300 and an OPT (ignored).
        let mut m = vec![0, 1, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 1];
        m.extend_from_slice(b"\x07example\x03org\x00\x00\x01\x00\x01");
        m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 127, 0, 0, 1]);
        m.extend_from_slice(&[0, 0, 41, 16, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(max_age(&m), 300);
        // SERVFAIL: 5 s.
        m[3] = 0x82;
        assert_eq!(max_age(&m), 5);
        // No records but the OPT: 5 s.
        let mut e = vec![0, 1, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 1];
        e.extend_from_slice(b"\x07example\x03org\x00\x00\x01\x00\x01");
        e.extend_from_slice(&[0, 0, 41, 16, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(max_age(&e), 5);
    }
}
