//! The etcd v3 client *etcd* needs: `KV.Range`, `Lease.LeaseTimeToLive` and
//! `Auth.Authenticate`, unary gRPC calls over HTTP/2 (TLS when the endpoint
//! asks for it), one connection per worker thread and endpoint.
//!
//! Behaviour follows go.etcd.io/etcd/client/v3 (3.6) as CoreDNS configures it:
//! endpoints taken in turn (its round-robin balancer), a call that cannot reach
//! an endpoint retried every 25 ms (±10 %) up to 100 times within the request's
//! deadline, the password exchanged for a token on first use and again when the
//! server calls the token invalid, and etcd's own error texts
//! (`etcdserver: …`) passed through as `rpctypes` passes them.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http2;
use hyper::{Request, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::time::{Instant, timeout_at};
use tokio_rustls::TlsConnector;

use crate::plugins::forward::doh::LocalExec;

/// The largest reply read (grpc-go's default would take 2 GiB).
pub const MAX_REPLY: usize = 4 << 20;
/// Calls in flight per client (over all workers); more wait within their deadline,
/// so replies held at once stay bounded.
const MAX_CALLS: usize = 64;
/// `defaultUnaryMaxRetries`.
const MAX_ATTEMPTS: u32 = 100;
/// `defaultBackoffWaitBetween`.
const BACKOFF: Duration = Duration::from_millis(25);
/// Connections kept per thread (all instances).
const MAX_CONNS: usize = 256;
/// `DialKeepAliveTime` as CoreDNS sets it, and grpc-go's keepalive timeout.
const KEEPALIVE: Duration = Duration::from_secs(5);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a refused authentication is answered from memory.
const AUTH_RETRY: Duration = Duration::from_secs(1);

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

type Sender = http2::SendRequest<Full<Bytes>>;
/// A cached connection, with its client's liveness.
type Cached = (Weak<()>, Sender);

thread_local! {
    /// Each entry holds its client's liveness: those of clients a reload dropped go.
    static CONNS: RefCell<HashMap<(u64, usize), Cached>> = RefCell::new(HashMap::new());
}

/// Where an endpoint is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addr {
    /// `HOST:PORT`.
    Tcp(String),
    /// A Unix socket path.
    Unix(String),
}

/// One endpoint as `endpoint.Interpret` reads it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub addr: Addr,
    /// TLS, and the name the certificate is checked against.
    pub tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
}

/// Reads `ep` (`http://`, `https://`, `unix://`, `unixs://` or a bare
/// `HOST:PORT`): TLS for `https`/`unixs`, and for a bare address when `tls`
/// is configured (`CredsRequire`, `CredsDrop`, `CredsOptional`).
pub fn endpoint(
    ep: &str,
    tls: Option<&Arc<ClientConfig>>,
    default_tls: &dyn Fn() -> Result<Arc<ClientConfig>, String>,
) -> Result<Endpoint, String> {
    let (addr, secure) = if let Some(rest) = ep.strip_prefix("http://") {
        (Addr::Tcp(host_port(rest)), Some(false))
    } else if let Some(rest) = ep.strip_prefix("https://") {
        (Addr::Tcp(host_port(rest)), Some(true))
    } else if let Some(rest) = ep.strip_prefix("unixs://") {
        (Addr::Unix(rest.to_owned()), Some(true))
    } else if let Some(rest) = ep.strip_prefix("unix://") {
        (Addr::Unix(rest.to_owned()), Some(false))
    } else if let Some(rest) = ep.strip_prefix("unix:") {
        (Addr::Unix(rest.to_owned()), Some(false))
    } else {
        (Addr::Tcp(ep.to_owned()), None)
    };
    let cfg = match (secure, tls) {
        (Some(false), _) | (None, None) => None,
        (_, Some(t)) => Some(Arc::clone(t)),
        (Some(true), None) => Some(default_tls()?),
    };
    let tls = match cfg {
        None => None,
        Some(c) => {
            let host = match &addr {
                Addr::Tcp(hp) => split_host(hp).to_owned(),
                Addr::Unix(_) => "localhost".to_owned(),
            };
            let name = ServerName::try_from(host.clone()).map_err(|_| {
                format!(
                    "TLS server name '{host}' is not a DNS name or an IP address, which ringdns's TLS (rustls) needs"
                )
            })?;
            Some((c, name))
        }
    };
    Ok(Endpoint { addr, tls })
}

/// The authority of a URL's remainder (path dropped).
fn host_port(rest: &str) -> String {
    rest.split('/').next().unwrap_or("").to_owned()
}

/// The host of `HOST:PORT` (brackets removed).
fn split_host(hp: &str) -> &str {
    let h = match hp.rfind(':') {
        Some(i) if !hp[..i].is_empty() && (hp.starts_with('[') || !hp[..i].contains(':')) => {
            &hp[..i]
        }
        _ => hp,
    };
    h.trim_start_matches('[').trim_end_matches(']')
}

/// A failed call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RpcError {
    /// The endpoint could not be reached (retried).
    Unavailable(String),
    /// The request's deadline passed.
    Deadline,
    /// The server answered with a gRPC status.
    Status(u32, String),
    /// Anything else (not retried).
    Other(String),
}

impl RpcError {
    /// The text CoreDNS's error would carry.
    pub fn text(&self) -> String {
        match self {
            Self::Unavailable(t) | Self::Other(t) => t.clone(),
            Self::Deadline => "context deadline exceeded".to_owned(),
            // rpctypes: etcd's own errors are their description.
            Self::Status(_, m) if m.starts_with("etcdserver: ") => m.clone(),
            Self::Status(c, m) => format!(
                "rpc error: code = {} desc = {m}",
                crate::plugins::grpc::code_name(*c)
            ),
        }
    }
}

/// One key and its value (`mvccpb.KeyValue`, the fields read).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyValue {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub lease: i64,
}

/// The client of one plugin instance.
pub struct Client {
    id: u64,
    endpoints: Vec<Endpoint>,
    creds: Option<(String, String)>,
    /// The auth token: `None` until fetched, `Some("")` when auth is off.
    token: Mutex<Option<String>>,
    /// [`MAX_CALLS`] permits.
    calls: tokio::sync::Semaphore,
    /// One authentication at a time; a refusal is kept for [`AUTH_RETRY`].
    auth: tokio::sync::Mutex<Option<(Instant, RpcError)>>,
    next: AtomicUsize,
    /// Dropped with the client (its cached connections then go).
    alive: Arc<()>,
}

impl Client {
    /// A client over `endpoints`, with `creds` (user, password) if given.
    pub fn new(endpoints: Vec<Endpoint>, creds: Option<(String, String)>) -> Self {
        Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            endpoints,
            creds,
            token: Mutex::new(None),
            calls: tokio::sync::Semaphore::new(MAX_CALLS),
            auth: tokio::sync::Mutex::new(None),
            next: AtomicUsize::new(0),
            alive: Arc::new(()),
        }
    }

    /// `Get(key)`, or with `prefix` every key starting with `key`.
    pub async fn range(
        &self,
        key: &str,
        prefix: bool,
        deadline: Instant,
    ) -> Result<Vec<KeyValue>, RpcError> {
        let mut req = Vec::new();
        put_bytes(&mut req, 1, key.as_bytes());
        if prefix {
            put_bytes(&mut req, 2, &prefix_end(key.as_bytes()));
        }
        let resp = self.call("/etcdserverpb.KV/Range", &req, deadline).await?;
        let mut kvs = Vec::new();
        for (field, v) in Fields::new(&resp) {
            if let (2, Val::Bytes(b)) = (field, v) {
                kvs.push(key_value(b).ok_or_else(malformed)?);
            }
        }
        Ok(kvs)
    }

    /// `TimeToLive(lease)`: the lease's remaining seconds.
    pub async fn time_to_live(&self, lease: i64, deadline: Instant) -> Result<i64, RpcError> {
        let mut req = Vec::new();
        put_varint_field(&mut req, 1, lease as u64);
        let resp = self
            .call("/etcdserverpb.Lease/LeaseTimeToLive", &req, deadline)
            .await?;
        let mut ttl = 0;
        for (field, v) in Fields::new(&resp) {
            if let (3, Val::Varint(x)) = (field, v) {
                ttl = x as i64;
            }
        }
        Ok(ttl)
    }

    /// The next endpoint in turn.
    fn pick(&self) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed) % self.endpoints.len().max(1)
    }

    /// A call with the token (fetched first when credentials are set), retried
    /// while no endpoint can be reached.
    async fn call(&self, path: &str, req: &[u8], deadline: Instant) -> Result<Bytes, RpcError> {
        let Ok(Ok(_permit)) = timeout_at(deadline, self.calls.acquire()).await else {
            return Err(RpcError::Deadline);
        };
        let mut last: Option<RpcError> = None;
        let mut refreshed = false;
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                let jitter = BACKOFF.as_secs_f64() * 0.1 * (fastrand::f64() * 2.0 - 1.0);
                let wait = BACKOFF.as_secs_f64() + jitter;
                if Instant::now() + Duration::from_secs_f64(wait) >= deadline {
                    tokio::time::sleep_until(deadline).await;
                    return Err(RpcError::Deadline);
                }
                tokio::time::sleep(Duration::from_secs_f64(wait)).await;
            }
            let token = if self.creds.is_some() {
                let cached = self.token.lock().map(|t| t.clone()).unwrap_or(None);
                match cached {
                    Some(t) => Some(t),
                    None => match self.authenticate(deadline).await {
                        Ok(t) => Some(t),
                        Err(e @ RpcError::Unavailable(_)) => {
                            last = Some(e);
                            continue;
                        }
                        Err(e) => return Err(e),
                    },
                }
            } else {
                None
            };
            match self
                .unary(self.pick(), path, req, token.as_deref(), deadline)
                .await
            {
                Ok(b) => return Ok(b),
                Err(e @ RpcError::Unavailable(_)) => last = Some(e),
                Err(RpcError::Status(c, m))
                    if self.creds.is_some()
                        && !refreshed
                        && (m == "etcdserver: invalid auth token"
                            || m == "etcdserver: revision of auth store is old"
                            || m == "etcdserver: user name is empty") =>
                {
                    // `shouldRefreshToken`: fetch a new token and try again.
                    refreshed = true;
                    if let Ok(mut t) = self.token.lock() {
                        *t = None;
                    }
                    last = Some(RpcError::Status(c, m));
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(RpcError::Deadline))
    }

    /// `Auth.Authenticate`: the token for the credentials (empty when the
    /// cluster has auth off).
    async fn authenticate(&self, deadline: Instant) -> Result<String, RpcError> {
        let Some((user, pass)) = &self.creds else {
            return Ok(String::new());
        };
        let Ok(mut refused) = timeout_at(deadline, self.auth.lock()).await else {
            return Err(RpcError::Deadline);
        };
        // Another query may have fetched it meanwhile, or been refused just now.
        if let Some(t) = self.token.lock().ok().and_then(|t| t.clone()) {
            return Ok(t);
        }
        if let Some((at, e)) = refused.as_ref() {
            if at.elapsed() < AUTH_RETRY {
                return Err(e.clone());
            }
        }
        let mut req = Vec::new();
        put_bytes(&mut req, 1, user.as_bytes());
        put_bytes(&mut req, 2, pass.as_bytes());
        let token = match self
            .unary(
                self.pick(),
                "/etcdserverpb.Auth/Authenticate",
                &req,
                None,
                deadline,
            )
            .await
        {
            Ok(resp) => {
                let mut token = String::new();
                for (field, v) in Fields::new(&resp) {
                    if let (2, Val::Bytes(b)) = (field, v) {
                        token = String::from_utf8_lossy(b).into_owned();
                    }
                }
                token
            }
            Err(RpcError::Status(_, m)) if m == "etcdserver: authentication is not enabled" => {
                String::new()
            }
            Err(e) => {
                if matches!(e, RpcError::Status(..)) {
                    *refused = Some((Instant::now(), e.clone()));
                }
                return Err(e);
            }
        };
        *refused = None;
        if let Ok(mut t) = self.token.lock() {
            *t = Some(token.clone());
        }
        Ok(token)
    }

    async fn connect(&self, i: usize, deadline: Instant) -> Result<Sender, RpcError> {
        let key = (self.id, i);
        if let Some((_, tx)) = CONNS.with(|c| c.borrow().get(&key).cloned()) {
            if !tx.is_closed() {
                return Ok(tx);
            }
        }
        let ep = self
            .endpoints
            .get(i)
            .ok_or_else(|| RpcError::Other("no endpoints".into()))?;
        let tx = match &ep.addr {
            Addr::Tcp(hp) => {
                let s =
                    match timeout_at(deadline, tokio::net::TcpStream::connect(hp.as_str())).await {
                        Err(_) => return Err(RpcError::Deadline),
                        Ok(Err(e)) => return Err(dial_error(&format!("tcp {hp}"), &e)),
                        Ok(Ok(s)) => s,
                    };
                let _ = s.set_nodelay(true);
                handshake(s, ep, deadline).await?
            }
            Addr::Unix(p) => {
                let s = match timeout_at(deadline, tokio::net::UnixStream::connect(p)).await {
                    Err(_) => return Err(RpcError::Deadline),
                    Ok(Err(e)) => return Err(dial_error(&format!("unix {p}"), &e)),
                    Ok(Ok(s)) => s,
                };
                handshake(s, ep, deadline).await?
            }
        };
        CONNS.with(|c| {
            let mut c = c.borrow_mut();
            c.retain(|_, (alive, t)| !t.is_closed() && alive.strong_count() > 0);
            if c.len() >= MAX_CONNS {
                c.retain(|k, _| k.0 == key.0);
            }
            c.insert(key, (Arc::downgrade(&self.alive), tx.clone()));
        });
        Ok(tx)
    }

    /// One unary call to endpoint `i`.
    async fn unary(
        &self,
        i: usize,
        path: &str,
        msg: &[u8],
        token: Option<&str>,
        deadline: Instant,
    ) -> Result<Bytes, RpcError> {
        let mut tx = self.connect(i, deadline).await?;
        let ep = &self.endpoints[i];
        let authority = match &ep.addr {
            Addr::Tcp(hp) => hp.clone(),
            Addr::Unix(_) => "localhost".to_owned(),
        };
        let scheme = if ep.tls.is_some() { "https" } else { "http" };
        let mut body = Vec::with_capacity(msg.len() + 5);
        body.push(0);
        body.extend_from_slice(&u32::try_from(msg.len()).unwrap_or(u32::MAX).to_be_bytes());
        body.extend_from_slice(msg);
        let mut req = Request::post(format!("{scheme}://{authority}{path}"))
            .header(header::CONTENT_TYPE, "application/grpc")
            .header(header::TE, "trailers");
        if let Some(t) = token.filter(|t| !t.is_empty()) {
            req = req.header("token", t);
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| RpcError::Other(e.to_string()))?;
        let unavailable = |e: hyper::Error| {
            RpcError::Unavailable(format!(
                "rpc error: code = Unavailable desc = connection error: desc = \"{e}\""
            ))
        };
        let call = async {
            tx.ready().await.map_err(unavailable)?;
            let resp = tx.send_request(req).await.map_err(unavailable)?;
            let (parts, body) = resp.into_parts();
            let collected = http_body_util::Limited::new(body, 5 + MAX_REPLY)
                .collect()
                .await
                .map_err(|_| {
                    RpcError::Status(8, "grpc: received message larger than max".to_owned())
                })?;
            Ok::<_, RpcError>((parts, collected))
        };
        let (parts, collected) = match timeout_at(deadline, call).await {
            Ok(Ok(r)) => r,
            failed => {
                // A connection that timed out or broke is not asked again.
                CONNS.with(|c| c.borrow_mut().remove(&(self.id, i)));
                return Err(match failed {
                    Ok(Err(e)) => e,
                    _ => RpcError::Deadline,
                });
            }
        };
        let trailers = collected.trailers().cloned();
        let data = collected.to_bytes();
        if !parts.status.is_success() {
            return Err(RpcError::Status(
                2,
                format!(
                    "unexpected HTTP status code received from server: {}",
                    parts.status.as_u16()
                ),
            ));
        }
        match crate::plugins::grpc::status(trailers.as_ref(), &parts.headers) {
            Some((0, _)) => {}
            Some((14, m)) => {
                // rpctypes: etcd's own errors are their description.
                return Err(RpcError::Unavailable(if m.starts_with("etcdserver: ") {
                    m
                } else {
                    format!("rpc error: code = Unavailable desc = {m}")
                }));
            }
            Some((c, m)) => return Err(RpcError::Status(c, m)),
            None => {
                return Err(RpcError::Status(
                    13,
                    "server closed the stream without sending trailers".into(),
                ));
            }
        }
        let n = match data.get(1..5) {
            Some(b) => u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize,
            None => return Err(malformed()),
        };
        if data.len() < 5 + n {
            return Err(malformed());
        }
        Ok(data.slice(5..5 + n))
    }
}

fn malformed() -> RpcError {
    RpcError::Status(
        13,
        "grpc: failed to unmarshal the received message".to_owned(),
    )
}

/// grpc-go's text for an endpoint it cannot dial.
fn dial_error(dial: &str, e: &std::io::Error) -> RpcError {
    RpcError::Unavailable(format!(
        "rpc error: code = Unavailable desc = connection error: desc = \"transport: Error while dialing: dial {dial}: connect: {}\"",
        crate::config::go_err(e)
    ))
}

/// HTTP/2 with grpc-go's keepalive as CoreDNS configures etcd's client: a PING
/// every 5 s while calls are open, the connection closed without an answer in 20 s.
fn h2() -> http2::Builder<LocalExec> {
    let mut b = http2::Builder::new(LocalExec);
    b.timer(TokioTimer::new())
        .keep_alive_interval(KEEPALIVE)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT);
    b
}

/// TLS when the endpoint has it, then HTTP/2.
async fn handshake<T>(io: T, ep: &Endpoint, deadline: Instant) -> Result<Sender, RpcError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + 'static,
{
    match &ep.tls {
        Some((cfg, name)) => {
            let mut c = (**cfg).clone();
            c.alpn_protocols = vec![b"h2".to_vec()];
            let s = match timeout_at(
                deadline,
                TlsConnector::from(Arc::new(c)).connect(name.clone(), io),
            )
            .await
            {
                Err(_) => return Err(RpcError::Deadline),
                Ok(Err(e)) => {
                    return Err(RpcError::Unavailable(format!(
                        "rpc error: code = Unavailable desc = connection error: desc = \"transport: authentication handshake failed: {}\"",
                        crate::plugins::forward::tls::handshake_err(&e)
                    )));
                }
                Ok(Ok(s)) => s,
            };
            h2_over(s, deadline).await
        }
        None => h2_over(io, deadline).await,
    }
}

/// HTTP/2 over `io`, its connection driven on this worker.
async fn h2_over<T>(io: T, deadline: Instant) -> Result<Sender, RpcError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + 'static,
{
    let (tx, conn) = timeout_at(deadline, h2().handshake(TokioIo::new(io)))
        .await
        .map_err(|_| RpcError::Deadline)?
        .map_err(|e| {
            RpcError::Unavailable(format!(
                "rpc error: code = Unavailable desc = connection error: desc = \"{e}\""
            ))
        })?;
    tokio::task::spawn_local(async move {
        let _ = conn.await;
    });
    Ok(tx)
}

/// `GetPrefixRangeEnd`: the key after every key starting with `key` (`\0` when
/// there is none: the whole key space).
pub fn prefix_end(key: &[u8]) -> Vec<u8> {
    let mut end = key.to_vec();
    while let Some(last) = end.last_mut() {
        if *last < 0xff {
            *last += 1;
            return end;
        }
        end.pop();
    }
    vec![0]
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_varint_field(out: &mut Vec<u8>, field: u32, v: u64) {
    put_varint(out, u64::from(field) << 3);
    put_varint(out, v);
}

fn put_bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    put_varint(out, (u64::from(field) << 3) | 2);
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// A protobuf field's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Val<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

/// The fields of a protobuf message; iteration stops at the first malformed one.
pub struct Fields<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Fields<'a> {
    pub fn new(b: &'a [u8]) -> Self {
        Self { b, pos: 0 }
    }

    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.b.get(self.pos)?;
            self.pos += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = (u64, Val<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.b.len() {
            return None;
        }
        let tag = self.varint()?;
        let v = match tag & 7 {
            0 => Val::Varint(self.varint()?),
            1 => {
                self.pos = self.pos.checked_add(8).filter(|&p| p <= self.b.len())?;
                Val::Fixed
            }
            2 => {
                let n = usize::try_from(self.varint()?).ok()?;
                let end = self.pos.checked_add(n).filter(|&e| e <= self.b.len())?;
                let s = &self.b[self.pos..end];
                self.pos = end;
                Val::Bytes(s)
            }
            5 => {
                self.pos = self.pos.checked_add(4).filter(|&p| p <= self.b.len())?;
                Val::Fixed
            }
            _ => {
                self.pos = self.b.len();
                return None;
            }
        };
        Some((tag >> 3, v))
    }
}

/// `mvccpb.KeyValue`: key (1), value (5), lease (6).
pub fn key_value(b: &[u8]) -> Option<KeyValue> {
    let mut kv = KeyValue::default();
    for (f, v) in Fields::new(b) {
        match (f, v) {
            (1, Val::Bytes(x)) => kv.key = x.to_vec(),
            (5, Val::Bytes(x)) => kv.value = x.to_vec(),
            (6, Val::Varint(x)) => kv.lease = x as i64,
            _ => {}
        }
    }
    Some(kv)
}
