//! *grpc*: forwards queries to upstreams that speak CoreDNS's gRPC service
//! (`coredns.dns.DnsService/Query`, a unary call carrying the wire message), as
//! CoreDNS 1.14.7's plugin does (plugins.md D; `plugin/grpc/grpc.go`,
//! `proxy.go`, `setup.go`, `metrics.go`).
//!
//! A query for FROM (not below an `except` name) parks and tries the upstreams in
//! policy order within 5 seconds, each over one HTTP/2 connection per worker and
//! upstream (TLS with `tls`, cleartext otherwise). The first reply answers; a
//! reply whose question differs gives FORMERR; NOT_FOUND from the upstream is
//! NXDOMAIN; with `fallthrough` an NXDOMAIN reply, or no reply at all, goes to the
//! next plugin. When every upstream fails: SERVFAIL with the last error, as
//! grpc-go words it (or `no healthy gRPC proxies`).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use corefile::{Diagnostic, Dispenser};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http2;
use hyper::{Request, header};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use tokio::time::{Instant, timeout_at};
use tokio_rustls::TlsConnector;

use super::file::Fall;
use super::forward::doh::LocalExec;
use super::forward::tls;
use crate::chain::{Ctx, ErrorKind, Flow, PluginError, Status};
use crate::config::SetupCtx;
use crate::metrics::{Families, Hist, TIME_BUCKETS, add, add_hist, contribute};
use crate::wire::Name;
use crate::zone::in_zone;

/// CoreDNS's `max`: upstreams per stanza.
const MAX_TO: usize = 15;
/// CoreDNS's `defaultTimeout`: the whole attempt loop.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Instance ids.
static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Upstream connections a thread keeps before dropping other instances' ones.
const MAX_CONNS: usize = 256;
/// `dns.MaxMsgSize`: the largest message sent or accepted.
const MAX_MSG: usize = 65_535;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Policy {
    Random,
    RoundRobin,
    Sequential,
}

/// Where an upstream listens.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Tcp(SocketAddr),
    /// `unix:///path` (grpc-go's `unix` resolver).
    Unix(String),
}

/// The configuration and run-time plugin.
#[derive(Debug, Clone)]
pub struct Grpc {
    from: Name,
    ignored: Vec<Name>,
    /// Each upstream: its `to` label (`IP:port`, `unix:///path`) and address.
    to: Vec<(String, Target)>,
    tls: Option<Arc<ClientConfig>>,
    server_name: Option<String>,
    policy: Policy,
    fall: Fall,
    rr: Arc<AtomicUsize>,
    /// This instance (its connections are its own).
    id: u64,
}

fn plain(s: impl Into<String>) -> Diagnostic {
    Diagnostic::plain(s).in_plugin("grpc")
}

/// `grpc FROM TO... { except NAMES...; tls [CERT KEY [CA]]; tls_servername NAME;
/// policy random|round_robin|sequential; fallthrough [ZONES...] }`, once per block.
pub fn setup(d: &mut Dispenser, ctx: &SetupCtx<'_>) -> Result<Grpc, Diagnostic> {
    let w = |e: Diagnostic| e.in_plugin("grpc");
    let mut out = None;
    while d.next() {
        if out.is_some() {
            return Err(w(crate::config::err_once()));
        }
        out = Some(stanza(d, ctx)?);
    }
    let g = out.ok_or_else(|| w(d.arg_err()))?;
    if g.to.len() > MAX_TO {
        return Err(plain(format!(
            "more than {MAX_TO} TOs configured: {}",
            g.to.len()
        )));
    }
    Ok(g)
}

fn stanza(d: &mut Dispenser, ctx: &SetupCtx<'_>) -> Result<Grpc, Diagnostic> {
    let w = |e: Diagnostic| e.in_plugin("grpc");
    if !d.next_arg() {
        return Err(w(d.arg_err()));
    }
    let from_arg = d.val().to_owned();
    let from = super::forward::setup::normalize_exact(&from_arg)
        .into_iter()
        .next()
        .and_then(|z| Name::parse(&z))
        .ok_or_else(|| plain(format!("unable to normalize '{from_arg}'")))?;
    let to_args = d.remaining_args();
    if to_args.is_empty() {
        return Err(w(d.arg_err()));
    }
    let mut to = Vec::new();
    for h in &to_args {
        for a in super::forward::resolve::host_port_or_file_text(h).map_err(plain)? {
            let (tr, bare) = corefile::keys::split_transport(&a);
            match tr {
                corefile::keys::Transport::Dns => {
                    let addr = super::forward::resolve::socket_addr(bare).map_err(plain)?;
                    to.push((bare.to_owned(), Target::Tcp(addr)));
                }
                corefile::keys::Transport::Unix => {
                    to.push((a.clone(), Target::Unix(bare.to_owned())));
                }
                // grpc-go has no resolver for the others (CoreDNS passes them on and
                // every call fails).
                _ => {
                    return Err(plain(format!(
                        "upstreams with a transport prefix are not supported by ringdns's grpc yet: {a}"
                    )));
                }
            }
        }
    }
    if to.is_empty() {
        return Err(plain("no nameservers found"));
    }
    let mut g = Grpc {
        from,
        ignored: Vec::new(),
        to,
        tls: None,
        server_name: None,
        policy: Policy::Random,
        fall: Fall::default(),
        rr: Arc::new(AtomicUsize::new(0)),
        id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
    };
    while d.next_block() {
        match d.val() {
            "except" => {
                let names = d.remaining_args();
                if names.is_empty() {
                    return Err(w(d.arg_err()));
                }
                for n in &names {
                    for z in super::forward::setup::normalize_exact(n) {
                        if let Some(z) = Name::parse(&z) {
                            g.ignored.push(z);
                        }
                    }
                }
            }
            "tls" => {
                let mut args = d.remaining_args();
                if args.len() > 3 {
                    return Err(w(d.arg_err()));
                }
                for a in &mut args {
                    *a = crate::plugins::file::rooted_path(a, ctx.settings.root.as_deref());
                }
                g.tls = Some(tls::client_config(&args).map_err(plain)?);
            }
            "tls_servername" => {
                if !d.next_arg() {
                    return Err(w(d.arg_err()));
                }
                g.server_name = Some(d.val().to_owned());
            }
            "policy" => {
                if !d.next_arg() {
                    return Err(w(d.arg_err()));
                }
                g.policy = match d.val() {
                    "random" => Policy::Random,
                    "round_robin" => Policy::RoundRobin,
                    "sequential" => Policy::Sequential,
                    x => return Err(w(d.err(format!("unknown policy '{x}'")))),
                };
            }
            "fallthrough" => g.fall = Fall::from_args(&d.remaining_args()),
            x => return Err(w(d.err(format!("unknown property '{x}'")))),
        }
    }
    // A server name without `tls` makes a TLS configuration (CoreDNS: a new
    // tls.Config with only the name).
    if g.server_name.is_some() && g.tls.is_none() {
        g.tls = Some(tls::client_config(&[]).map_err(plain)?);
    }
    Ok(g)
}

/// Per `to`: requests, responses by rcode, and the duration histogram.
#[derive(Default)]
struct Counts {
    requests: u64,
    rcodes: BTreeMap<String, u64>,
    duration: Hist<16>,
}

static METRICS: Mutex<BTreeMap<String, Counts>> = Mutex::new(BTreeMap::new());

fn observe(to: &str, rcode: u16, secs: f64) {
    if let Ok(mut m) = METRICS.lock() {
        let c = m.entry(to.to_owned()).or_default();
        c.requests += 1;
        let rc =
            crate::wire::types::rcode_name(rcode).map_or_else(|| rcode.to_string(), str::to_owned);
        *c.rcodes.entry(rc).or_default() += 1;
        c.duration.observe(&TIME_BUCKETS, secs);
    }
    contribute(metrics);
}

fn metrics(f: &mut Families) {
    let Ok(m) = METRICS.lock() else { return };
    for (to, c) in m.iter() {
        add(
            f,
            "coredns_grpc_requests_total",
            "Counter of requests made per upstream.",
            "counter",
            "",
            &[("to", to)],
            c.requests as f64,
        );
        for (rc, n) in &c.rcodes {
            add(
                f,
                "coredns_grpc_responses_total",
                "Counter of requests made per upstream.",
                "counter",
                "",
                &[("rcode", rc), ("to", to)],
                *n as f64,
            );
        }
        let (buckets, sum, count) = c.duration.snapshot_pub();
        add_hist(
            f,
            "coredns_grpc_request_duration_seconds",
            "Histogram of the time each request took.",
            &[("to", to)],
            &TIME_BUCKETS,
            &buckets,
            sum,
            count,
        );
    }
}

type Sender = http2::SendRequest<Full<Bytes>>;

thread_local! {
    /// One HTTP/2 connection per plugin instance and upstream on this thread
    /// (grpc-go's one connection per proxy; an instance's TLS settings are its
    /// own, so instances never share one).
    static CONNS: RefCell<HashMap<(u64, usize), Sender>> = RefCell::new(HashMap::new());
}

/// `dial`: `tcp IP:PORT` or `unix PATH`.
fn unavailable(dial: &str, e: &std::io::Error) -> String {
    format!(
        "rpc error: code = Unavailable desc = connection error: desc = \"transport: Error while dialing: dial {dial}: connect: {}\"",
        crate::config::go_err(e)
    )
}

const DEADLINE: &str = "rpc error: code = DeadlineExceeded desc = context deadline exceeded";

impl Grpc {
    /// CoreDNS `match`: under FROM and not under an `except` name (FROM itself
    /// always matches).
    fn matches(&self, qname: &Name) -> bool {
        if !in_zone(qname.wire(), self.from.wire()) {
            return false;
        }
        qname.wire().eq_ignore_ascii_case(self.from.wire())
            || !self.ignored.iter().any(|z| in_zone(qname.wire(), z.wire()))
    }

    /// The request hook: queries for FROM park.
    pub fn serve(&self, ctx: &mut Ctx<'_>) -> Flow {
        if self.matches(&ctx.req.qname.to_lowercase()) {
            Flow::Park
        } else {
            Flow::Next
        }
    }

    fn order(&self) -> Vec<usize> {
        let n = self.to.len();
        let mut v: Vec<usize> = (0..n).collect();
        match self.policy {
            Policy::Sequential => {}
            Policy::Random => fastrand::shuffle(&mut v),
            Policy::RoundRobin => {
                // policy.go: the counter after its increment picks the first; the
                // others keep their order.
                let k = (self.rr.fetch_add(1, Ordering::Relaxed) + 1) % n.max(1);
                if k < n {
                    let first = v.remove(k);
                    v.insert(0, first);
                }
            }
        }
        v
    }

    /// The parked half (CoreDNS `ServeDNS`).
    /// `has_next`: a plugin follows (CoreDNS falls through only then).
    pub async fn serve_async(&self, ctx: &mut Ctx<'_>, has_next: bool) -> Flow {
        let qname = ctx.req.qname.to_lowercase();
        let deadline = Instant::now() + TIMEOUT;
        let mut last_err: Option<String> = None;
        for i in self.order() {
            if Instant::now() >= deadline {
                break;
            }
            let label = &self.to[i].0;
            let start = Instant::now();
            // NOT_FOUND is not counted (proxy.go returns before its metrics).
            let mut counted = true;
            let reply = match self.query(i, ctx.req.msg, deadline).await {
                Ok(Reply::Message(m)) => m,
                Ok(Reply::NotFound) => {
                    counted = false;
                    // grpc-go's NOT_FOUND: an empty NXDOMAIN reply.
                    let mut b = ctx.reply();
                    b.set_rcode(3);
                    b.finish();
                    let m = ctx.resp.clone();
                    ctx.resp.clear();
                    m
                }
                Err(e) => {
                    last_err = Some(e);
                    continue;
                }
            };
            let rcode = crate::wire::full_rcode(&reply);
            if counted {
                observe(label, rcode, start.elapsed().as_secs_f64());
            }
            if !super::forward::question_matches(&reply, ctx) {
                let mut b = ctx.reply();
                b.set_rcode(1);
                b.finish();
                ctx.written = true;
                return Flow::Return(Status::rcode(0));
            }
            if rcode == 3 && has_next && self.fall.through(&qname) {
                return Flow::Next;
            }
            ctx.resp.clear();
            ctx.resp.extend_from_slice(&reply);
            ctx.written = true;
            return Flow::Return(Status::rcode(0));
        }
        if has_next && self.fall.through(&qname) {
            return Flow::Next;
        }
        let text = last_err.unwrap_or_else(|| "no healthy gRPC proxies".to_owned());
        Flow::Return(Status {
            rcode: 2,
            err: Some(PluginError {
                plugin: "grpc",
                kind: ErrorKind::Upstream(Arc::from(text)),
            }),
        })
    }

    /// The `:authority` of upstream `i` (grpc-go's: the address, `localhost` for a
    /// Unix socket).
    fn authority(&self, i: usize) -> String {
        match &self.to[i].1 {
            Target::Tcp(a) => a.to_string(),
            Target::Unix(_) => "localhost".to_owned(),
        }
    }

    async fn connect(&self, i: usize, deadline: Instant) -> Result<Sender, String> {
        let key = (self.id, i);
        if let Some(tx) = CONNS.with(|c| c.borrow().get(&key).cloned()) {
            if !tx.is_closed() {
                return Ok(tx);
            }
        }
        let tx = match &self.to[i].1 {
            Target::Tcp(addr) => {
                let tcp = match timeout_at(deadline, tokio::net::TcpStream::connect(addr)).await {
                    Err(_) => return Err(DEADLINE.into()),
                    Ok(Err(e)) => return Err(unavailable(&format!("tcp {addr}"), &e)),
                    Ok(Ok(s)) => s,
                };
                let _ = tcp.set_nodelay(true);
                self.handshake(tcp, addr.ip().to_string(), deadline).await?
            }
            Target::Unix(path) => {
                let s = match timeout_at(deadline, tokio::net::UnixStream::connect(path)).await {
                    Err(_) => return Err(DEADLINE.into()),
                    Ok(Err(e)) => return Err(unavailable(&format!("unix {path}"), &e)),
                    Ok(Ok(s)) => s,
                };
                self.handshake(s, "localhost".to_owned(), deadline).await?
            }
        };
        CONNS.with(|c| {
            let mut c = c.borrow_mut();
            // Closed connections go; so, past a bound, do the other instances'
            // (those a reload replaced would otherwise stay open): a current
            // one dials again when it next needs its connection.
            c.retain(|_, t| !t.is_closed());
            if c.len() >= MAX_CONNS {
                c.retain(|k, _| k.0 == key.0);
            }
            c.insert(key, tx.clone());
        });
        Ok(tx)
    }

    /// TLS (when configured, verified against `tls_servername` or `host`) and HTTP/2
    /// over a new connection.
    async fn handshake<T>(&self, io: T, host: String, deadline: Instant) -> Result<Sender, String>
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + 'static,
    {
        let hs = |e: hyper::Error| {
            format!("rpc error: code = Unavailable desc = connection error: desc = \"{e}\"")
        };
        let tx = match &self.tls {
            Some(cfg) => {
                let name = self.server_name.clone().unwrap_or(host);
                let server = rustls::pki_types::ServerName::try_from(name)
                    .map_err(|e| format!("rpc error: code = Unavailable desc = {e}"))?;
                let mut c = (**cfg).clone();
                c.alpn_protocols = vec![b"h2".to_vec()];
                let s = match timeout_at(
                    deadline,
                    TlsConnector::from(Arc::new(c)).connect(server, io),
                )
                .await
                {
                    Err(_) => return Err(DEADLINE.into()),
                    Ok(Err(e)) => {
                        return Err(format!(
                            "rpc error: code = Unavailable desc = connection error: desc = \"transport: authentication handshake failed: {}\"",
                            tls::handshake_err(&e)
                        ));
                    }
                    Ok(Ok(s)) => s,
                };
                let (tx, conn) = http2::Builder::new(LocalExec)
                    .handshake(TokioIo::new(s))
                    .await
                    .map_err(hs)?;
                tokio::task::spawn_local(async move {
                    let _ = conn.await;
                });
                tx
            }
            None => {
                let (tx, conn) = http2::Builder::new(LocalExec)
                    .handshake(TokioIo::new(io))
                    .await
                    .map_err(hs)?;
                tokio::task::spawn_local(async move {
                    let _ = conn.await;
                });
                tx
            }
        };
        Ok(tx)
    }

    /// One unary call (CoreDNS `Proxy.query`).
    async fn query(&self, i: usize, msg: &[u8], deadline: Instant) -> Result<Reply, String> {
        if msg.len() > MAX_MSG {
            return Err(format!(
                "dns message exceeds size limit: {} bytes (limit {MAX_MSG})",
                msg.len()
            ));
        }
        let mut tx = self.connect(i, deadline).await?;
        let pb = crate::server::grpc::encode_packet(msg);
        let mut body = Vec::with_capacity(pb.len() + 5);
        body.push(0);
        body.extend_from_slice(&u32::try_from(pb.len()).unwrap_or(u32::MAX).to_be_bytes());
        body.extend_from_slice(&pb);
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let req = Request::post(format!(
            "{scheme}://{}{}",
            self.authority(i),
            crate::server::grpc::PATH
        ))
        .header(header::CONTENT_TYPE, "application/grpc")
        .header(header::TE, "trailers")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
        let call = async {
            tx.ready()
                .await
                .map_err(|e| format!("rpc error: code = Unavailable desc = {e}"))?;
            let resp = tx
                .send_request(req)
                .await
                .map_err(|e| format!("rpc error: code = Unavailable desc = {e}"))?;
            let (parts, body) = resp.into_parts();
            // grpc-go's receive limit (a message's prefix and 65,539 bytes).
            let collected = http_body_util::Limited::new(body, 5 + MAX_MSG + 4)
                .collect()
                .await
                .map_err(|_| {
                    "rpc error: code = ResourceExhausted desc = grpc: received message larger than max".to_owned()
                })?;
            Ok::<_, String>((parts, collected))
        };
        let (parts, collected) = match timeout_at(deadline, call).await {
            Err(_) => return Err(DEADLINE.into()),
            Ok(r) => r?,
        };
        let trailers = collected.trailers().cloned();
        let data = collected.to_bytes();
        if !parts.status.is_success() {
            return Err(format!(
                "rpc error: code = Unknown desc = unexpected HTTP status code received from server: {}",
                parts.status.as_u16()
            ));
        }
        let status = status(trailers.as_ref(), &parts.headers);
        match status {
            Some((0, _)) => {}
            Some((5, _)) => return Ok(Reply::NotFound),
            Some((code, msg)) => {
                return Err(format!(
                    "rpc error: code = {} desc = {msg}",
                    code_name(code)
                ));
            }
            None => {
                return Err("rpc error: code = Internal desc = server closed the stream without sending trailers".into());
            }
        }
        if data.len() < 5 {
            return Err(
                "rpc error: code = Internal desc = grpc: failed to unmarshal the received message"
                    .into(),
            );
        }
        let n = u32::from_be_bytes([data[1], data[2], data[3], data[4]]) as usize;
        let Some(pb) = data.get(5..5 + n) else {
            return Err(
                "rpc error: code = Internal desc = grpc: failed to unmarshal the received message"
                    .into(),
            );
        };
        let Some(m) = crate::server::grpc::decode_packet(pb) else {
            return Err(
                "rpc error: code = Internal desc = grpc: failed to unmarshal the received message"
                    .into(),
            );
        };
        if m.len() > MAX_MSG {
            return Err(format!(
                "dns message exceeds size limit: {} bytes (limit {MAX_MSG})",
                m.len()
            ));
        }
        super::forward::proxy::unpack(&m).map_err(|e| e.text().to_owned())?;
        Ok(Reply::Message(m))
    }
}

/// A reply's gRPC status (code, unescaped message): in the trailers, or in the
/// headers of a trailers-only reply.
pub(crate) fn status(
    trailers: Option<&hyper::HeaderMap>,
    headers: &hyper::HeaderMap,
) -> Option<(u32, String)> {
    let of = |h: &hyper::HeaderMap| {
        h.get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u32>().ok())
            .map(|code| {
                let msg = h
                    .get("grpc-message")
                    .and_then(|v| v.to_str().ok())
                    .map(crate::http::percent_decode)
                    .unwrap_or_default();
                (code, msg)
            })
    };
    trailers.and_then(of).or_else(|| of(headers))
}

enum Reply {
    Message(Vec<u8>),
    NotFound,
}

/// gRPC status code names as grpc-go prints them.
pub(crate) fn code_name(code: u32) -> String {
    const NAMES: [&str; 17] = [
        "OK",
        "Canceled",
        "Unknown",
        "InvalidArgument",
        "DeadlineExceeded",
        "NotFound",
        "AlreadyExists",
        "PermissionDenied",
        "ResourceExhausted",
        "FailedPrecondition",
        "Aborted",
        "OutOfRange",
        "Unimplemented",
        "Internal",
        "Unavailable",
        "DataLoss",
        "Unauthenticated",
    ];
    NAMES
        .get(code as usize)
        .map_or_else(|| format!("Code({code})"), |s| (*s).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BlockSettings;

    fn parse(text: &str) -> Result<Grpc, String> {
        let mut settings = BlockSettings::default();
        let keys = vec!["dns://.:53".to_owned()];
        let ctx = SetupCtx {
            keys: &keys,
            zones: vec![".".to_owned()],
            settings: &mut settings,
            filename: "Corefile",
        };
        setup(&mut Dispenser::from_text("Corefile", text), &ctx).map_err(|e| e.to_string())
    }

    #[test]
    fn setup_table() {
        let g = parse(
            "grpc Example.ORG 127.0.0.1:8053 [::1]:53 10.0.0.1 {\n except a.example.org B.example.org\n \
             policy round_robin\n fallthrough\n}",
        )
        .expect("valid");
        assert_eq!(g.from.to_string(), "example.org.");
        let to: Vec<&str> = g.to.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(to, vec!["127.0.0.1:8053", "[::1]:53", "10.0.0.1:53"]);
        // A Unix socket (grpc-go's `unix` resolver), labelled as written.
        let u = parse("grpc . unix:///run/dns.sock 127.0.0.1").expect("unix");
        assert_eq!(
            u.to,
            vec![
                (
                    "unix:///run/dns.sock".to_owned(),
                    Target::Unix("/run/dns.sock".into())
                ),
                (
                    "127.0.0.1:53".to_owned(),
                    Target::Tcp("127.0.0.1:53".parse().expect("addr"))
                ),
            ]
        );
        assert_eq!(u.authority(0), "localhost");
        assert_eq!(g.ignored.len(), 2);
        assert_eq!(g.policy, Policy::RoundRobin);
        assert!(g.tls.is_none());
        // A server name alone makes a TLS configuration.
        let g = parse("grpc . 127.0.0.1 {\n tls_servername dns.example\n}").expect("servername");
        assert!(g.tls.is_some());
        let many = format!(
            "grpc . {}",
            (1..=16)
                .map(|i| format!("10.0.0.{i}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let dir = std::env::temp_dir().join(format!("ringdns-grpc-setup-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let resolv = dir.join("resolv.conf");
        let _ = std::fs::write(&resolv, "search example.org\n");
        let empty = format!("grpc . {}", resolv.display());
        let pre = "plugin/grpc: Corefile:";
        for (text, want) in [
            (
                "grpc",
                format!(
                    "{pre}1 - Error during parsing: Wrong argument count or unexpected line ending after 'grpc'"
                ),
            ),
            (
                "grpc .",
                format!(
                    "{pre}1 - Error during parsing: Wrong argument count or unexpected line ending after '.'"
                ),
            ),
            (
                "grpc . dns.example",
                "plugin/grpc: not an IP address or file: \"dns.example\"".to_owned(),
            ),
            (
                "grpc . 127.0.0.1 {\n policy fastest\n}",
                format!("{pre}2 - Error during parsing: unknown policy 'fastest'"),
            ),
            (
                "grpc . 127.0.0.1 {\n bogus\n}",
                format!("{pre}2 - Error during parsing: unknown property 'bogus'"),
            ),
            (
                "grpc . 127.0.0.1 {\n except\n}",
                format!(
                    "{pre}2 - Error during parsing: Wrong argument count or unexpected line ending after 'except'"
                ),
            ),
            (
                "grpc . 127.0.0.1 {\n tls a b c d\n}",
                format!(
                    "{pre}2 - Error during parsing: Wrong argument count or unexpected line ending after 'd'"
                ),
            ),
            (
                "grpc . 127.0.0.1\ngrpc . 127.0.0.2",
                "plugin/grpc: this plugin can only be used once per Server Block".to_owned(),
            ),
            (
                many.as_str(),
                "plugin/grpc: more than 15 TOs configured: 16".to_owned(),
            ),
            (
                "grpc . tls://127.0.0.1",
                "plugin/grpc: upstreams with a transport prefix are not supported by ringdns's grpc yet: tls://127.0.0.1:853".to_owned(),
            ),
            (empty.as_str(), "plugin/grpc: no nameservers found".to_owned()),
        ] {
            assert_eq!(parse(text).err().as_deref(), Some(want.as_str()), "{text}");
        }
    }

    #[test]
    fn round_robin_as_policy_go() {
        let g =
            parse("grpc . 10.0.0.1 10.0.0.2 10.0.0.3 {\n policy round_robin\n}").expect("valid");
        assert_eq!(g.order(), vec![1, 0, 2]);
        assert_eq!(g.order(), vec![2, 0, 1]);
        assert_eq!(g.order(), vec![0, 1, 2]);
        let g = parse("grpc . 10.0.0.1 10.0.0.2 10.0.0.3 {\n policy sequential\n}").expect("valid");
        assert_eq!(g.order(), vec![0, 1, 2]);
    }

    #[test]
    fn grpc_go_texts() {
        assert_eq!(code_name(14), "Unavailable");
        assert_eq!(code_name(99), "Code(99)");
        assert_eq!(crate::http::percent_decode("no%20such%zz"), "no such%zz");
        // An escape cut by a multi-octet character is left as written (no panic).
        assert_eq!(crate::http::percent_decode("%aé%4"), "%aé%4");
    }
}
