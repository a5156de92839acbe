//! A DNS-over-HTTPS upstream for the forward tests: hyper's server over
//! tokio-rustls on 127.0.0.1 (and ::1 on the same port when asked), answering
//! `/dns-query` POST and GET with the `Fake`'s replies, and recording each
//! request (method, target, version, headers, the DNS message) and the TCP
//! connections it accepted.

use std::convert::Infallible;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::Duration;

use hyper::body::{Body, Bytes, Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use super::upstreams::{Mode, Seen, reply};

/// What the DoH upstream answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DohMode {
    /// A DNS reply as the `Fake` builds it, status 200.
    Dns(Mode),
    /// This HTTP status with a text body.
    Status(u16),
    /// `NAME A 192.0.2.TAG` after this long.
    Delay(Duration),
}

/// One request the upstream saw.
#[derive(Debug, Clone)]
pub struct DohSeen {
    pub method: String,
    /// Path and query.
    pub target: String,
    /// `HTTP/2.0` or `HTTP/1.1`.
    pub version: String,
    pub content_type: String,
    pub accept: String,
    /// `:authority` (HTTP/2) or `Host` (HTTP/1.1).
    pub host: String,
    /// Length of the request body.
    pub body_len: usize,
    /// The DNS query (from the body or `?dns=`).
    pub msg: Vec<u8>,
    /// Number of the TCP connection it came on (1, 2, ...).
    pub conn: usize,
}

impl DohSeen {
    pub fn dns(&self) -> Seen {
        Seen {
            tcp: true,
            msg: self.msg.clone(),
        }
    }
}

struct State {
    mode: Mutex<DohMode>,
    seen: Mutex<Vec<DohSeen>>,
    accepted: AtomicUsize,
    open: AtomicUsize,
    tag: u8,
    /// HTTP/2 `SETTINGS_MAX_CONCURRENT_STREAMS` for new connections (0: hyper's).
    max_streams: AtomicU32,
}

/// The DoH upstream; stops (closing every connection) when dropped.
pub struct DohServer {
    pub port: u16,
    st: Arc<State>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// A self-signed certificate for `names` (IP strings become IP SANs) and a
/// server configuration offering `h2` (unless `h1_only`) and `http/1.1`.
pub fn doh_tls(names: &[&str], h1_only: bool) -> (Arc<rustls::ServerConfig>, String) {
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let ck = rcgen::generate_simple_self_signed(names).expect("cert");
    let pem = ck.cert.pem();
    let der = ck.cert.der().clone();
    let key =
        rustls::pki_types::PrivateKeyDer::try_from(ck.signing_key.serialize_der()).expect("key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![der], key)
        .expect("server config");
    cfg.alpn_protocols = if h1_only {
        vec![b"http/1.1".to_vec()]
    } else {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    };
    (Arc::new(cfg), pem)
}

impl DohServer {
    /// Listens on 127.0.0.1 (and `[::1]` on the same port with `v6`, if it can).
    pub fn start(mode: DohMode, tag: u8, tls: Arc<rustls::ServerConfig>, v6: bool) -> Self {
        let l4 = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l4.local_addr().expect("addr").port();
        let mut ls = vec![l4];
        if v6 {
            if let Ok(l6) = std::net::TcpListener::bind(("::1", port)) {
                ls.push(l6);
            }
        }
        for l in &ls {
            l.set_nonblocking(true).expect("nonblocking");
        }
        let st = Arc::new(State {
            mode: Mutex::new(mode),
            seen: Mutex::new(Vec::new()),
            accepted: AtomicUsize::new(0),
            open: AtomicUsize::new(0),
            tag,
            max_streams: AtomicU32::new(0),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let (st2, stop2) = (Arc::clone(&st), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, async move {
                for l in ls {
                    let l = tokio::net::TcpListener::from_std(l).expect("listener");
                    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(&tls));
                    tokio::task::spawn_local(accept_loop(l, acceptor, Arc::clone(&st2)));
                }
                while !stop2.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            });
        });
        Self {
            port,
            st,
            stop,
            thread: Some(thread),
        }
    }

    /// The streams each new HTTP/2 connection allows at once.
    pub fn set_max_streams(&self, n: u32) {
        self.st.max_streams.store(n, Ordering::Relaxed);
    }

    pub fn set(&self, m: DohMode) {
        *self.st.mode.lock().expect("lock") = m;
    }

    pub fn seen(&self) -> Vec<DohSeen> {
        self.st.seen.lock().expect("lock").clone()
    }

    /// Requests other than health checks (`. IN NS`).
    pub fn queries(&self) -> Vec<DohSeen> {
        self.seen()
            .into_iter()
            .filter(|s| s.dns().question() != (".".into(), 2))
            .collect()
    }

    /// TCP connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.st.accepted.load(Ordering::Relaxed)
    }

    /// TCP connections open now.
    pub fn open(&self) -> usize {
        self.st.open.load(Ordering::Relaxed)
    }
}

impl Drop for DohServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[derive(Clone, Copy)]
struct LocalExec;

impl<F: std::future::Future + 'static> hyper::rt::Executor<F> for LocalExec {
    fn execute(&self, fut: F) {
        tokio::task::spawn_local(fut);
    }
}

/// A response body of at most one chunk.
struct One(Option<Bytes>);

impl Body for One {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.take().map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_none()
    }
}

struct OpenGuard(Arc<State>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn accept_loop(
    l: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    st: Arc<State>,
) {
    loop {
        let Ok((tcp, _)) = l.accept().await else {
            continue;
        };
        let conn = st.accepted.fetch_add(1, Ordering::Relaxed) + 1;
        st.open.fetch_add(1, Ordering::Relaxed);
        let guard = OpenGuard(Arc::clone(&st));
        let (acceptor, st) = (acceptor.clone(), Arc::clone(&st));
        tokio::task::spawn_local(async move {
            let _guard = guard;
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
            let io = TokioIo::new(tls);
            let st2 = Arc::clone(&st);
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let st = Arc::clone(&st);
                async move { Ok::<_, Infallible>(handle(req, &st, conn).await) }
            });
            if h2 {
                let mut b = hyper::server::conn::http2::Builder::new(LocalExec);
                match st2.max_streams.load(Ordering::Relaxed) {
                    0 => {}
                    n => {
                        b.max_concurrent_streams(n);
                    }
                }
                let _ = b.serve_connection(io, svc).await;
            } else {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, svc)
                    .await;
            }
        });
    }
}

/// RFC 4648 §5 base64url, padding optional.
fn unbase64url(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        } as u32)
    };
    let s = s.trim_end_matches('=').as_bytes();
    let mut out = Vec::new();
    for c in s.chunks(4) {
        let mut n = 0u32;
        for (i, b) in c.iter().enumerate() {
            n |= val(*b)? << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..c.len()]);
    }
    Some(out)
}

fn text(code: u16) -> Response<One> {
    Response::builder()
        .status(StatusCode::from_u16(code).expect("status"))
        .header("content-type", "text/plain")
        .body(One(Some(Bytes::from_static(b"no DNS here\n"))))
        .expect("response")
}

async fn handle(req: Request<Incoming>, st: &State, conn: usize) -> Response<One> {
    let (parts, mut body) = req.into_parts();
    let mut data = Vec::new();
    while let Some(f) = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let Ok(f) = f else { break };
        if let Ok(d) = f.into_data() {
            data.extend_from_slice(&d);
        }
    }
    let header = |n: &str| {
        parts
            .headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let msg = if parts.method == Method::GET {
        parts
            .uri
            .query()
            .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("dns=")))
            .and_then(unbase64url)
            .unwrap_or_default()
    } else {
        data.clone()
    };
    st.seen.lock().expect("lock").push(DohSeen {
        method: parts.method.to_string(),
        target: parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        version: format!("{:?}", parts.version),
        content_type: header("content-type"),
        accept: header("accept"),
        host: parts
            .uri
            .authority()
            .map(|a| a.to_string())
            .unwrap_or_else(|| header("host")),
        body_len: data.len(),
        msg: msg.clone(),
        conn,
    });
    if parts.uri.path() != "/dns-query" || msg.len() < 12 {
        return text(400);
    }
    let m = *st.mode.lock().expect("lock");
    let r = match m {
        DohMode::Status(code) => return text(code),
        DohMode::Delay(d) => {
            tokio::time::sleep(d).await;
            reply(&msg, Mode::Answer, true, st.tag)
        }
        DohMode::Dns(m) => reply(&msg, m, true, st.tag),
    };
    Response::builder()
        .header("content-type", "application/dns-message")
        .body(One(Some(Bytes::from(r))))
        .expect("response")
}
