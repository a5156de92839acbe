//! DNS-over-HTTPS upstreams (RFC 8484): each query is an HTTP POST of the
//! wire message to `/dns-query` (or a GET with `?dns=`, base64url without
//! padding, with `doh_method GET`), message ID 0 (RFC 8484 §4.1), over TLS with
//! ALPN `h2` and `http/1.1`, HTTP/2 when the server negotiates it.
//!
//! Connections (per worker and upstream, in [`Local`]): an HTTP/2 connection
//! carries the worker's queries as multiplexed streams, as many at once as the
//! server's `SETTINGS_MAX_CONCURRENT_STREAMS` allows (read off the connection as
//! Go's transport keeps it: 100 until the server's first SETTINGS, 1,000 when
//! that names no limit). A query that finds every HTTP/2 connection full has
//! another dialed, as Go's transport does, up to [`MAX_H2_CONNS`]; a dial is made
//! once while concurrent queries wait for it, and connections are dropped when
//! closed or expired. Over HTTP/1.1 a connection carries one query at a time;
//! idle ones are pooled FIFO, at most `max_idle_conns` (0: Go's default of
//! 2). Each connection has a driver task on the worker's `LocalSet` (hyper's
//! connection future), which also closes it once it has been idle for
//! `expire` or is older than `max_age` with nothing in flight.
//!
//! An attempt (dial, TLS, request, reply body) is bounded by the 2 s of
//! CoreDNS's `http.Client`; `read_timeout` does not apply. A status other than
//! 200 fails the attempt; the body must unpack as a DNS message (at most
//! 65,536 octets). Errors read as Go's `http.Client` ones: `Post "URL": …`.
//!
//! CoreDNS: `plugin/pkg/proxy/connect.go` (`lookupDoH`), `plugin/pkg/doh/doh.go`,
//! `plugin/pkg/proxy/health.go` (`dohHc`), `plugin/forward/setup.go` (the client).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::client::conn::{http1, http2};
use hyper::{Method, Request, Response, StatusCode, Uri, header};
use hyper_util::rt::TokioIo;
use tokio::sync::Notify;
use tokio::time::{Instant, sleep_until, timeout_at};
use tokio_rustls::TlsConnector;

use super::httpproxy::Tunnel;
use super::metrics;
use super::proxy::{Fail, Local, Upstream, expired, unpack};
use super::setup::{DohMethod, UpstreamConfig};
use super::stream::{MAX_STREAMS, dial_tcp};
use crate::wire::hdr;

/// CoreDNS's `http.Client` timeout for DoH queries (whole attempt).
pub const TIMEOUT: Duration = Duration::from_secs(2);
/// CoreDNS `dohHc`: the health check's client timeout.
const HC_TIMEOUT: Duration = Duration::from_secs(1);
/// CoreDNS `doh.go` `maxDNSQuerySize`: the largest reply body read.
const MAX_BODY: usize = 65_536;
/// RFC 8484 §6: the path CoreDNS always uses.
const PATH: &str = "/dns-query";
/// RFC 8484 §6: the media type of requests and replies.
const MIME: &str = "application/dns-message";
/// Go's `DefaultMaxIdleConnsPerHost`, CoreDNS's HTTP/1.1 idle cap when
/// `max_idle_conns` is 0.
const IDLE_H1_DEFAULT: usize = 2;
/// HTTP/2 connections per upstream per worker; beyond, queries queue on the
/// least busy one (Go's transport has no bound).
pub const MAX_H2_CONNS: usize = 64;
/// Go's `initialMaxConcurrentStreams`: the streams a connection takes before the
/// server's first SETTINGS.
const H2_INITIAL_STREAMS: u32 = 100;
/// Go's `defaultMaxConcurrentStreams`: when the server's first SETTINGS names no
/// limit.
const H2_DEFAULT_STREAMS: u32 = 1000;

/// How an `https://` upstream is queried.
#[derive(Debug, Clone)]
pub struct DohInfo {
    /// `doh_method`.
    pub method: DohMethod,
    /// `Host` / `:authority`: the hostname when TO was one (with `:port`
    /// unless 443), else `IP:port` as Go's client sends it.
    pub authority: String,
}

impl DohInfo {
    /// The settings of upstream `cfg`.
    pub fn new(cfg: &UpstreamConfig, method: DohMethod) -> Self {
        let authority = match &cfg.host {
            Some(h) if cfg.addr.port() == 443 => h.clone(),
            Some(h) => format!("{h}:{}", cfg.addr.port()),
            None => cfg.label.clone(),
        };
        Self { method, authority }
    }
}

/// RFC 4648 §5 base64url without padding (RFC 8484 §4.1).
pub fn base64url(b: &[u8]) -> String {
    encode64(
        b,
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
        false,
    )
}

/// Standard base64 (RFC 4648 §4) with padding, as HTTP Basic credentials use.
pub fn base64(b: &[u8]) -> String {
    encode64(
        b,
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
        true,
    )
}

fn encode64(b: &[u8], alphabet: &[u8; 64], pad: bool) -> String {
    let mut s = String::with_capacity(b.len().div_ceil(3) * 4);
    for c in b.chunks(3) {
        let at = |i: usize| u32::from(c.get(i).copied().unwrap_or(0));
        let n = (at(0) << 16) | (at(1) << 8) | at(2);
        for i in 0..=c.len() {
            s.push(char::from(alphabet[(n >> (18 - 6 * i)) as usize & 63]));
        }
        if pad {
            for _ in c.len()..3 {
                s.push('=');
            }
        }
    }
    s
}

/// A request body of at most one chunk: the wire query (POST) or nothing (GET).
pub(super) struct Wire(Option<Bytes>);

impl Body for Wire {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Poll::Ready(self.0.take().map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.0.as_ref().map_or(0, |b| b.len() as u64))
    }
}

/// hyper's executor for HTTP/2 background work: the current `LocalSet`
/// (every worker, the detached-query thread and the health checks run one).
#[derive(Clone, Copy)]
pub(crate) struct LocalExec;

impl<F: Future<Output = ()> + 'static> hyper::rt::Executor<F> for LocalExec {
    fn execute(&self, fut: F) {
        tokio::task::spawn_local(fut);
    }
}

/// What the driver task and the pool know of one connection.
struct ConnState {
    created: Instant,
    used: Cell<Instant>,
    /// Queries in flight on it.
    busy: Cell<usize>,
    /// Wakes the driver when `busy` drops to 0.
    idle: Notify,
    /// HTTP/2: the server's `SETTINGS_MAX_CONCURRENT_STREAMS`, as Go keeps it.
    max_streams: Cell<u32>,
    /// Our end of the connection (*dnstap*).
    local: Option<std::net::SocketAddr>,
}

impl ConnState {
    /// An HTTP/2 connection with room for another stream.
    fn has_room(&self) -> bool {
        self.busy.get() < self.max_streams.get() as usize
    }
}

/// The server's half of an HTTP/2 connection, read as it passes to hyper for
/// its SETTINGS frames: `SETTINGS_MAX_CONCURRENT_STREAMS` into the connection's
/// state (RFC 9113 §4.1 frame layout, §6.5 SETTINGS).
#[derive(Default)]
struct FrameScan {
    /// The current frame's header, as much as has arrived.
    head: [u8; 9],
    have: usize,
    /// Payload octets of the current frame still to come.
    left: usize,
    /// The current frame is a SETTINGS frame (not an ACK).
    settings: bool,
    /// One setting (identifier and value), as much as has arrived.
    entry: [u8; 6],
    entry_len: usize,
    /// The current SETTINGS frame named the limit.
    saw_limit: bool,
    /// A SETTINGS frame has been read.
    seen_settings: bool,
}

impl FrameScan {
    fn feed(&mut self, mut b: &[u8], max_streams: &Cell<u32>) {
        while !b.is_empty() {
            if self.have < 9 {
                let n = (9 - self.have).min(b.len());
                self.head[self.have..self.have + n].copy_from_slice(&b[..n]);
                self.have += n;
                b = &b[n..];
                if self.have == 9 {
                    let h = self.head;
                    self.left =
                        usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
                    self.settings = h[3] == 0x4 && h[4] & 0x1 == 0;
                    self.entry_len = 0;
                    self.saw_limit = false;
                    if self.left == 0 {
                        self.end_frame(max_streams);
                    }
                }
                continue;
            }
            let n = self.left.min(b.len());
            if self.settings {
                for &x in &b[..n] {
                    self.entry[self.entry_len] = x;
                    self.entry_len += 1;
                    if self.entry_len == 6 {
                        self.entry_len = 0;
                        let e = self.entry;
                        if u16::from_be_bytes([e[0], e[1]]) == 0x3 {
                            max_streams.set(u32::from_be_bytes([e[2], e[3], e[4], e[5]]));
                            self.saw_limit = true;
                        }
                    }
                }
            }
            self.left -= n;
            b = &b[n..];
            if self.left == 0 {
                self.end_frame(max_streams);
            }
        }
    }

    fn end_frame(&mut self, max_streams: &Cell<u32>) {
        if self.settings && !self.seen_settings {
            // Go: a first SETTINGS without the limit lifts it to its default.
            if !self.saw_limit {
                max_streams.set(H2_DEFAULT_STREAMS);
            }
            self.seen_settings = true;
        }
        self.have = 0;
        self.settings = false;
    }
}

/// An HTTP/2 connection's stream with its incoming frames scanned ([`FrameScan`]).
struct Scanned<S> {
    io: S,
    scan: FrameScan,
    st: Rc<ConnState>,
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Scanned<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            this.scan
                .feed(&buf.filled()[before..], &this.st.max_streams);
        }
        r
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Scanned<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

enum Sender {
    H2(http2::SendRequest<Wire>),
    H1(http1::SendRequest<Wire>),
}

/// A connection, or (HTTP/2) a handle on the shared one.
struct Conn {
    tx: Sender,
    st: Rc<ConnState>,
}

impl Conn {
    fn closed(&self) -> bool {
        match &self.tx {
            Sender::H2(s) => s.is_closed(),
            Sender::H1(s) => s.is_closed(),
        }
    }

    fn is_h2(&self) -> bool {
        matches!(self.tx, Sender::H2(_))
    }

    fn h2_handle(&self) -> Option<Self> {
        match &self.tx {
            Sender::H2(s) => Some(Self {
                tx: Sender::H2(s.clone()),
                st: Rc::clone(&self.st),
            }),
            Sender::H1(_) => None,
        }
    }

    async fn send(&mut self, req: Request<Wire>) -> hyper::Result<Response<Incoming>> {
        match &mut self.tx {
            Sender::H2(s) => {
                s.ready().await?;
                s.send_request(req).await
            }
            Sender::H1(s) => {
                s.ready().await?;
                s.send_request(req).await
            }
        }
    }
}

/// One worker's DoH connections to one upstream.
#[derive(Default)]
pub struct DohLocal {
    pool: RefCell<Pool>,
    /// Wakes the queries waiting for an HTTP/2 dial.
    dialed: Notify,
}

#[derive(Default)]
struct Pool {
    /// HTTP/2 connections, oldest first.
    h2: Vec<Conn>,
    h1: VecDeque<Conn>,
    dialing: bool,
    /// The last dial negotiated HTTP/1.1: dial in parallel.
    h1_only: bool,
}

/// Marks a query in flight on a connection.
struct Busy(Rc<ConnState>);

impl Busy {
    fn new(st: &Rc<ConnState>) -> Self {
        st.busy.set(st.busy.get() + 1);
        st.used.set(Instant::now());
        Self(Rc::clone(st))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let st = &self.0;
        st.busy.set(st.busy.get().saturating_sub(1));
        st.used.set(Instant::now());
        if st.busy.get() == 0 {
            st.idle.notify_one();
        }
    }
}

/// Ends a single-flight dial (also when the query goes away mid-dial).
struct DialGuard<'a>(&'a DohLocal);

impl Drop for DialGuard<'_> {
    fn drop(&mut self) {
        self.0.pool.borrow_mut().dialing = false;
        self.0.dialed.notify_waiters();
    }
}

/// Runs hyper's connection future until it ends, or until the connection has
/// nothing in flight and is idle longer than `expire` or older than `max_age`
/// (dropping it closes the connection).
async fn drive<C: Future>(conn: C, st: Rc<ConnState>, expire: Duration, max_age: Duration) {
    tokio::pin!(conn);
    loop {
        if st.busy.get() > 0 {
            tokio::select! {
                _ = &mut conn => return,
                () = st.idle.notified() => continue,
            }
        }
        let mut at = st.used.get().checked_add(expire);
        if !max_age.is_zero() {
            if let Some(old) = st.created.checked_add(max_age) {
                at = Some(at.map_or(old, |a| a.min(old)));
            }
        }
        let Some(at) = at else {
            // Beyond the clock's range: never expires.
            let _ = conn.await;
            return;
        };
        tokio::select! {
            _ = &mut conn => return,
            () = sleep_until(at) => {}
            () = st.idle.notified() => continue,
        }
        let now = Instant::now();
        let idle_too_long = now.saturating_duration_since(st.used.get()) >= expire;
        let too_old = !max_age.is_zero() && now.saturating_duration_since(st.created) >= max_age;
        if st.busy.get() == 0 && (idle_too_long || too_old) {
            return;
        }
    }
}

/// Dials, handshakes TLS (ALPN h2, http/1.1) and HTTP, and starts the driver.
async fn dial(up: &Upstream, deadline: Instant) -> Result<Conn, Fail> {
    let Some(t) = &up.tls else {
        return Err(Fail::io("tls: no TLS configuration for an https upstream"));
    };
    // The caller's deadline (the HTTP client's timeout) ends a hung connect, not a
    // timeout of the connect's own: Go's transport gives up on a dial still pending
    // when the client's timeout fires with the request's deadline error, so the
    // caller's text (`context deadline exceeded (Client.Timeout …)`) is the one seen.
    let left = deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(1);
    // Through the `HTTPS_PROXY` (a tunnel) unless `NO_PROXY` or loopback.
    let tcp = match super::httpproxy::env().for_addr(up.cfg.addr) {
        None => Tunnel::Tcp(dial_tcp(up, left, false).await?.0),
        Some(p) => super::httpproxy::tunnel(up, p, left).await?,
    };
    let local = tcp.local_addr();
    let tls = TlsConnector::from(Arc::clone(&t.config))
        .connect(t.name.clone(), tcp)
        .await
        .map_err(|e| Fail::io(super::tls::handshake_err(&e)))?;
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
    let now = Instant::now();
    let st = Rc::new(ConnState {
        created: now,
        used: Cell::new(now),
        busy: Cell::new(0),
        idle: Notify::new(),
        max_streams: Cell::new(H2_INITIAL_STREAMS),
        local,
    });
    let (expire, max_age) = (up.opts.expire, up.opts.max_age);
    let hs_err = |e: hyper::Error| Fail::io(err_text(&e));
    let tx = if h2 {
        let io = TokioIo::new(Scanned {
            io: tls,
            scan: FrameScan::default(),
            st: Rc::clone(&st),
        });
        let (tx, conn) = http2::Builder::new(LocalExec)
            .handshake(io)
            .await
            .map_err(hs_err)?;
        tokio::task::spawn_local(drive(conn, Rc::clone(&st), expire, max_age));
        Sender::H2(tx)
    } else {
        let io = TokioIo::new(tls);
        let (tx, conn) = http1::handshake(io).await.map_err(hs_err)?;
        tokio::task::spawn_local(drive(conn, Rc::clone(&st), expire, max_age));
        Sender::H1(tx)
    };
    Ok(Conn { tx, st })
}

/// A pooled connection that is still usable: the first HTTP/2 one with room for
/// a stream (the least busy when all are full and no more may be dialed), else an
/// idle HTTP/1.1 one. `None`: dial one.
fn checkout(up: &Upstream, p: &mut Pool) -> Option<Conn> {
    let now = Instant::now();
    p.h2.retain(|c| !c.closed() && !expired(up, now, c.st.used.get(), c.st.created));
    if let Some(c) = p.h2.iter().find(|c| c.st.has_room()) {
        return c.h2_handle();
    }
    if p.h2.len() >= MAX_H2_CONNS {
        return p
            .h2
            .iter()
            .min_by_key(|c| c.st.busy.get())
            .and_then(Conn::h2_handle);
    }
    while let Some(c) = p.h1.pop_front() {
        if !c.closed() && !expired(up, now, c.st.used.get(), c.st.created) {
            return Some(c);
        }
    }
    None
}

/// A connection: pooled (`true`), or dialed — once for every waiting query
/// while the upstream speaks HTTP/2.
async fn connection(up: &Upstream, dl: &DohLocal, deadline: Instant) -> Result<(Conn, bool), Fail> {
    loop {
        let (wait, single) = {
            let mut p = dl.pool.borrow_mut();
            if let Some(c) = checkout(up, &mut p) {
                return Ok((c, true));
            }
            if p.h1_only {
                (false, false)
            } else if p.dialing {
                (true, false)
            } else {
                p.dialing = true;
                (false, true)
            }
        };
        if wait {
            // Nothing runs between the check above and this registration.
            dl.dialed.notified().await;
            continue;
        }
        let _guard = single.then_some(DialGuard(dl));
        let c = dial(up, deadline).await?;
        let mut p = dl.pool.borrow_mut();
        p.h1_only = !c.is_h2();
        if let Some(shared) = c.h2_handle() {
            p.h2.push(shared);
        }
        return Ok((c, false));
    }
}

/// Returns an HTTP/1.1 connection to the back of the idle pool (or closes it).
fn yield_h1(up: &Upstream, dl: &DohLocal, c: Conn) {
    let mut p = dl.pool.borrow_mut();
    let max = match up.opts.max_idle_conns {
        0 => IDLE_H1_DEFAULT,
        n => n,
    };
    if p.h1.len() < max {
        p.h1.push_back(c);
    }
}

/// Forgets a pooled HTTP/2 connection that failed a query.
fn forget_h2(dl: &DohLocal, c: &Conn) {
    dl.pool
        .borrow_mut()
        .h2
        .retain(|x| !Rc::ptr_eq(&x.st, &c.st));
}

/// The request for `q` (HTTP/2 form: absolute URI), and Go's prefix of its
/// errors (`Post "URL"`).
fn request(
    up: &Upstream,
    doh: &DohInfo,
    method: DohMethod,
    q: &[u8],
) -> Result<(Request<Wire>, String), Fail> {
    let (m, op, query, body) = match method {
        DohMethod::Post => (
            Method::POST,
            "Post",
            String::new(),
            Some(Bytes::copy_from_slice(q)),
        ),
        DohMethod::Get => (Method::GET, "Get", format!("?dns={}", base64url(q)), None),
    };
    // Go names the URL it built from the upstream's address.
    let prefix = format!("{op} \"https://{}{PATH}{query}\"", up.cfg.label);
    let req = Request::builder()
        .method(m)
        .uri(format!("https://{}{PATH}{query}", doh.authority))
        .header(header::CONTENT_TYPE, MIME)
        .header(header::ACCEPT, MIME)
        .body(Wire(body))
        .map_err(|e| Fail::io(format!("{prefix}: {e}")))?;
    Ok((req, prefix))
}

/// HTTP/1.1 form: origin-form target and a `Host` header.
fn to_h1(mut req: Request<Wire>) -> Request<Wire> {
    let uri = req.uri().clone();
    if let Some(pq) = uri.path_and_query() {
        if let Ok(u) = Uri::try_from(pq.as_str()) {
            *req.uri_mut() = u;
        }
    }
    if let Some(a) = uri.authority() {
        if let Ok(v) = header::HeaderValue::from_str(a.as_str()) {
            req.headers_mut().insert(header::HOST, v);
        }
    }
    req
}

/// An error with its causes, `: `-joined as Go wraps them.
fn err_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        let t = x.to_string();
        if !s.ends_with(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = x.source();
    }
    s
}

/// Reads the reply body (at most [`MAX_BODY`] octets).
async fn read_body(mut b: Incoming) -> Result<Vec<u8>, String> {
    let hint = usize::try_from(b.size_hint().lower()).unwrap_or(MAX_BODY);
    let mut out = Vec::with_capacity(hint.min(MAX_BODY));
    while let Some(f) = poll_fn(|cx| Pin::new(&mut b).poll_frame(cx)).await {
        let f = f.map_err(|e| err_text(&e))?;
        if let Ok(d) = f.into_data() {
            if out.len() + d.len() > MAX_BODY {
                return Err("http: request body too large".into());
            }
            out.extend_from_slice(&d);
        }
    }
    Ok(out)
}

/// A reply body that unpacks as a DNS message (miekg's texts otherwise).
fn check_reply(mut m: Vec<u8>) -> Result<Vec<u8>, Fail> {
    match unpack(&m) {
        Ok(u) => {
            u.fix(&mut m);
            Ok(m)
        }
        Err(e) => Err(Fail::io(e.text())),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    Headers,
    Body,
}

/// One query to a DoH upstream; the reply keeps ID 0 (the caller restores
/// the client's).
pub(super) async fn exchange(
    up: &Upstream,
    local: &Local,
    q: &mut [u8],
    laddr: &mut Option<std::net::SocketAddr>,
) -> Result<Vec<u8>, Fail> {
    let Some(doh) = &up.doh else {
        return Err(Fail::io("not a DNS-over-HTTPS upstream"));
    };
    if local.in_flight.streams.load(Ordering::Relaxed) >= MAX_STREAMS {
        metrics::PENDING_FULL.fetch_add(1, Ordering::Relaxed);
        return Err(Fail::Full);
    }
    let _busy = metrics::StreamGuard::new(&local.in_flight.streams);
    // RFC 8484 §4.1: ID 0 for cache friendliness.
    hdr::set_id(q, 0);
    let (req, p) = request(up, doh, doh.method, q)?;
    let stage = Cell::new(Stage::Headers);
    let deadline = Instant::now() + TIMEOUT;
    match timeout_at(
        deadline,
        attempt(up, &local.doh, req, &p, deadline, &stage, laddr),
    )
    .await
    {
        Ok(r) => r,
        Err(_) if stage.get() == Stage::Body => Err(Fail::io(
            "context deadline exceeded (Client.Timeout or context cancellation while reading body)",
        )),
        Err(_) => Err(Fail::io(format!(
            "{p}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
        ))),
    }
}

async fn attempt(
    up: &Upstream,
    dl: &DohLocal,
    req: Request<Wire>,
    p: &str,
    deadline: Instant,
    stage: &Cell<Stage>,
    laddr: &mut Option<std::net::SocketAddr>,
) -> Result<Vec<u8>, Fail> {
    let with_prefix = |f: Fail| match f {
        Fail::Io(t) => Fail::io(format!("{p}: {t}")),
        other => other,
    };
    let (mut c, cached) = connection(up, dl, deadline).await.map_err(with_prefix)?;
    *laddr = c.st.local;
    let is_h2 = c.is_h2();
    let req = if is_h2 { req } else { to_h1(req) };
    let busy = Busy::new(&c.st);
    let resp = match c.send(req).await {
        Ok(r) => r,
        Err(e) => {
            if c.closed() || e.is_closed() || e.is_canceled() || e.is_incomplete_message() {
                forget_h2(dl, &c);
                if cached {
                    // The pooled connection went away: retry on a new one, as
                    // Go's transport retries a request it could not send.
                    return Err(Fail::CachedClosed);
                }
            }
            return Err(Fail::io(format!("{p}: {}", err_text(&e))));
        }
    };
    stage.set(Stage::Body);
    let status = resp.status();
    if status != StatusCode::OK {
        return Err(Fail::io(format!("{p}: unexpected HTTP status {status}")));
    }
    let body = read_body(resp.into_body()).await.map_err(Fail::io)?;
    drop(busy);
    if !is_h2 {
        yield_h1(up, dl, c);
    }
    check_reply(body)
}

/// A health check (CoreDNS `dohHc`): the probe as a POST on a new
/// connection, 1 s in all; healthy when a 200 reply unpacks. Blocking: it runs
/// on the health-check thread with a runtime of its own.
pub fn check_blocking(up: &Upstream, q: &[u8]) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let r = local.block_on(&rt, async {
        let deadline = Instant::now() + HC_TIMEOUT;
        timeout_at(deadline, probe(up, q, deadline)).await
    });
    match r {
        Ok(Ok(())) => Ok(()),
        Ok(Err(f)) => Err(std::io::Error::other(f.text().to_string())),
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    }
}

async fn probe(up: &Upstream, q: &[u8], deadline: Instant) -> Result<(), Fail> {
    let Some(doh) = &up.doh else {
        return Err(Fail::io("not a DNS-over-HTTPS upstream"));
    };
    let (mut req, _) = request(up, doh, DohMethod::Post, q)?;
    let mut c = dial(up, deadline).await?;
    if !c.is_h2() {
        req = to_h1(req);
    }
    let resp = c.send(req).await.map_err(|e| Fail::io(err_text(&e)))?;
    if resp.status() != StatusCode::OK {
        return Err(Fail::io(format!(
            "unexpected HTTP status {}",
            resp.status()
        )));
    }
    let body = read_body(resp.into_body()).await.map_err(Fail::io)?;
    check_reply(body).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(ty: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let n = payload.len();
        let mut f = vec![
            (n >> 16) as u8,
            (n >> 8) as u8,
            n as u8,
            ty,
            flags,
            0,
            0,
            0,
            0,
        ];
        f.extend_from_slice(payload);
        f
    }

    fn setting(id: u16, v: u32) -> Vec<u8> {
        let mut e = id.to_be_bytes().to_vec();
        e.extend_from_slice(&v.to_be_bytes());
        e
    }

    /// Feeds `bytes` in pieces of `step` and returns the limit seen after each frame.
    fn scan(bytes: &[u8], step: usize) -> u32 {
        let (mut s, max) = (FrameScan::default(), Cell::new(H2_INITIAL_STREAMS));
        for piece in bytes.chunks(step) {
            s.feed(piece, &max);
        }
        max.get()
    }

    #[test]
    fn max_concurrent_streams_read_as_go_keeps_it() {
        // The server's first SETTINGS with the limit (among other settings).
        let mut p = setting(0x4, 65_535);
        p.extend(setting(0x3, 4));
        p.extend(setting(0x5, 16_384));
        let first = frame(0x4, 0, &p);
        for step in [1, 2, 5, 7, 1000] {
            assert_eq!(scan(&first, step), 4, "pieces of {step}");
        }
        // Without the limit: Go's default of 1,000; before any SETTINGS, 100.
        let bare = frame(0x4, 0, &setting(0x4, 65_535));
        assert_eq!(scan(&bare, 3), H2_DEFAULT_STREAMS);
        assert_eq!(scan(&[], 1), H2_INITIAL_STREAMS);
        // Later frames: a DATA payload that looks like a setting is not one; an
        // ACK carries none; a later SETTINGS changes the limit, and one without
        // the limit leaves it.
        let mut stream = bare;
        stream.extend(frame(0x0, 0, &setting(0x3, 7)));
        stream.extend(frame(0x4, 0x1, &[]));
        stream.extend(frame(0x1, 0x4, &[0x88; 40]));
        assert_eq!(scan(&stream, 4), H2_DEFAULT_STREAMS);
        stream.extend(frame(0x4, 0, &setting(0x3, 250)));
        stream.extend(frame(0x4, 0, &setting(0x4, 1)));
        stream.extend(frame(0x8, 0, &[0, 0, 0, 0]));
        assert_eq!(scan(&stream, 4), 250);
        assert_eq!(scan(&stream, 1), 250);
        // A limit of 0 is kept (the connection takes no new stream).
        assert_eq!(scan(&frame(0x4, 0, &setting(0x3, 0)), 2), 0);
    }
}
