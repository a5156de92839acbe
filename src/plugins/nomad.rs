//! *nomad*: answers `SERVICE.NAMESPACE.ZONE` from Nomad's service catalogue
//! (plugins.md §nomad): A, AAAA and SRV from `GET /v1/service/SERVICE`, asked
//! per query as CoreDNS's plugin asks it.
//!
//! CoreDNS: `plugin/nomad/` (`setup.go`, `nomad.go`, `helpers.go`), with the
//! Nomad API client's defaults (`NOMAD_ADDR`, `NOMAD_TOKEN`, `NOMAD_REGION`, the TLS
//! settings `NOMAD_CACERT`, `NOMAD_CAPATH`, `NOMAD_CLIENT_CERT`, `NOMAD_CLIENT_KEY`,
//! `NOMAD_TLS_SERVER_NAME`, `NOMAD_SKIP_VERIFY`, and `NOMAD_HTTP_AUTH`).

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use corefile::{Diagnostic, Dispenser};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper::client::conn::http1;
use hyper::{Request, header};
use hyper_util::rt::TokioIo;

use crate::chain::{Ctx, Flow, Status};
use crate::clog::{self, Level};
use crate::metrics::{Families, LabelCounts, contribute};
use crate::wire::{Builder, MAX_NAME, Name, SectionKind, flags};
use crate::zone::in_zone;

#[cfg(test)]
mod tests;

/// `defaultTTL`.
const DEFAULT_TTL: u32 = 30;
/// The longest a catalogue request may take (the Go client sets none).
const TIMEOUT: Duration = Duration::from_secs(5);
/// Largest catalogue answer read.
const MAX_BODY: usize = 16 << 20;

/// Where a Nomad agent listens.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Endpoint {
    /// `http://HOST:PORT` or `https://…` (the URL without its user, the authority
    /// dialled, and for https the name the certificate is verified against).
    Http {
        base: String,
        authority: String,
        tls: Option<rustls::pki_types::ServerName<'static>>,
        /// The URL's own `user:password` (Go prefers it to `NOMAD_HTTP_AUTH`).
        user: Option<String>,
    },
    /// `unix:///path`.
    Unix(String),
}

/// Parsed configuration.
#[derive(Debug, Clone)]
pub struct NomadConfig {
    /// The zone as configured (`service.nomad`).
    zone: String,
    zone_name: Name,
    ttl: u32,
    filter: Option<String>,
    token: Option<String>,
    region: Option<String>,
    clients: Vec<Endpoint>,
    /// The API client's TLS settings (built for every agent, as Go's client does).
    tls: Arc<rustls::ClientConfig>,
    /// `Authorization` for `NOMAD_HTTP_AUTH`.
    http_auth: Option<String>,
}

fn env(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.is_empty())
}

/// Setup (CoreDNS's `parse`, reading the API client's environment).
pub fn setup(d: &mut Dispenser) -> Result<NomadConfig, Diagnostic> {
    let plugin = |e: Diagnostic| e.in_plugin("nomad");
    if !d.next() {
        return Err(plugin(d.err("expected 'nomad' token")));
    }
    let args = d.remaining_args();
    let zone = args
        .first()
        .cloned()
        .unwrap_or_else(|| "service.nomad".into());
    let mut ttl = DEFAULT_TTL;
    let mut filter = None;
    let mut token = None;
    let mut addresses: Vec<String> = Vec::new();
    while d.next_block() {
        let selector = d.val().to_lowercase();
        let args = d.remaining_args();
        match selector.as_str() {
            "address" => {
                if args.is_empty() {
                    return Err(plugin(d.err("at least one address is required")));
                }
                addresses.extend(args);
            }
            "filter" => {
                let [f] = args.as_slice() else {
                    return Err(plugin(d.err("exactly one filter is required")));
                };
                filter = Some(f.clone());
            }
            "token" => {
                let [t] = args.as_slice() else {
                    return Err(plugin(d.err("exactly one token is required")));
                };
                token = Some(t.clone());
            }
            "ttl" => {
                let [t] = args.as_slice() else {
                    return Err(plugin(d.err("exactly one ttl value is required")));
                };
                let n: i64 = t.parse().map_err(|_| {
                    plugin(d.err(format!(
                        "error parsing ttl: {}",
                        crate::config::go_atoi_err(t)
                    )))
                })?;
                if !(0..=3600).contains(&n) {
                    return Err(plugin(
                        d.err(format!("ttl must be in range [0, 3600]: {n}")),
                    ));
                }
                ttl = n as u32;
            }
            _ => {
                return Err(plugin(d.err(format!("unknown property '{selector}'"))));
            }
        }
    }
    // The API client's `ConfigureTLS`, which runs for every address (its errors stop
    // setup even for http:// agents).
    let tls = client_tls().map_err(|e| plugin(Diagnostic::plain(e)))?;
    let http_auth = env("NOMAD_HTTP_AUTH").map(|a| basic_auth(&a));
    let server_name = env("NOMAD_TLS_SERVER_NAME");
    if addresses.is_empty() {
        addresses.push(String::new());
    }
    let mut clients = Vec::new();
    for a in &addresses {
        let a = if a.is_empty() {
            env("NOMAD_ADDR").unwrap_or_else(|| "http://127.0.0.1:4646".into())
        } else {
            a.clone()
        };
        clients.push(
            endpoint(&a, server_name.as_deref())
                .map_err(|e| plugin(Diagnostic::plain(e).in_plugin("nomad")))?,
        );
    }
    let fqdn = if zone.ends_with('.') {
        zone.clone()
    } else {
        format!("{zone}.")
    };
    let zone_name = Name::parse(&fqdn.to_lowercase())
        .ok_or_else(|| plugin(Diagnostic::plain(format!("invalid zone {zone:?}"))))?;
    Ok(NomadConfig {
        zone,
        zone_name,
        ttl,
        filter,
        token: token.or_else(|| env("NOMAD_TOKEN")),
        region: env("NOMAD_REGION"),
        clients,
        tls,
        http_auth,
    })
}

/// `Basic` credentials from `user[:password]`.
fn basic_auth(userinfo: &str) -> String {
    let (u, p) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let mut s = String::from("Basic ");
    crate::zone::text::b64(&mut s, format!("{u}:{p}").as_bytes());
    s
}

/// The Nomad API client's TLS configuration from its environment: the client
/// certificate and key (both or neither), the roots (`NOMAD_CACERT`, else the PEM
/// files under `NOMAD_CAPATH`, else the system's), and `NOMAD_SKIP_VERIFY`; the errors
/// are go-rootcerts' and Go's `crypto/tls`'s.
fn client_tls() -> Result<Arc<rustls::ClientConfig>, String> {
    use crate::plugins::forward::tls;
    let id = match (env("NOMAD_CLIENT_CERT"), env("NOMAD_CLIENT_KEY")) {
        (None, None) => None,
        (Some(c), Some(k)) => Some(tls::identity_pem(&tls::read(&c)?, &tls::read(&k)?)?),
        _ => return Err("Both client cert and client key must be provided".into()),
    };
    let store = if let Some(f) = env("NOMAD_CACERT") {
        let pem = tls::read(&f).map_err(|e| format!("Error loading CA File: {e}"))?;
        let mut store = rustls::RootCertStore::empty();
        if add_pem(&mut store, &pem) == 0 {
            return Err(format!("Error loading CA File: Couldn't parse PEM in: {f}"));
        }
        store
    } else if let Some(dir) = env("NOMAD_CAPATH") {
        let mut store = rustls::RootCertStore::empty();
        ca_path(&dir, &mut store)?;
        store
    } else {
        tls::roots(None)?
    };
    let insecure = env("NOMAD_SKIP_VERIFY")
        .and_then(|v| crate::cli::parse_bool(&v))
        .unwrap_or(false);
    tls::build_with(store, id, insecure)
}

/// Adds the certificates of PEM text; how many were added (Go's
/// `AppendCertsFromPEM` fails with none).
fn add_pem(store: &mut rustls::RootCertStore, pem: &[u8]) -> usize {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .flatten()
        .filter(|c| store.add(c.clone()).is_ok())
        .count()
}

/// go-rootcerts' `LoadCAPath`: every file under `path` (Go's `filepath.Walk`, in
/// lexical order, symbolic links not followed into directories) must hold PEM
/// certificates.
fn ca_path(path: &str, store: &mut rustls::RootCertStore) -> Result<(), String> {
    let meta = std::fs::symlink_metadata(path)
        .map_err(|e| format!("lstat {path}: {}", crate::config::go_err(&e)))?;
    if meta.is_dir() {
        let mut names: Vec<String> = std::fs::read_dir(path)
            .map_err(|e| format!("open {path}: {}", crate::config::go_err(&e)))?
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for n in names {
            ca_path(&format!("{}/{n}", path.trim_end_matches('/')), store)?;
        }
        return Ok(());
    }
    let pem = crate::plugins::forward::tls::read(path)
        .map_err(|e| format!("Error loading file from CAPath: {e}"))?;
    if add_pem(store, &pem) == 0 {
        return Err(format!(
            "Error loading CA Path: Couldn't parse PEM in: {path}"
        ));
    }
    Ok(())
}

/// The agent address as the API client reads it; `server_name` is
/// `NOMAD_TLS_SERVER_NAME` (else an https agent is verified against its host).
fn endpoint(a: &str, server_name: Option<&str>) -> Result<Endpoint, String> {
    if let Some(path) = a.strip_prefix("unix://") {
        return Ok(Endpoint::Unix(path.to_owned()));
    }
    let (https, rest) = match (a.strip_prefix("http://"), a.strip_prefix("https://")) {
        (Some(r), _) => (false, r),
        (_, Some(r)) => (true, r),
        _ => {
            return Err(format!(
                "parse {}: first path segment in URL cannot contain colon",
                corefile::values::go_quote(a)
            ));
        }
    };
    let (rest, user) = match rest.split('/').next().and_then(|h| h.rsplit_once('@')) {
        Some((u, _)) => (&rest[u.len() + 1..], Some(basic_auth(&userinfo(a, u)?))),
        None => (rest, None),
    };
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() {
        return Err(format!(
            "parse {}: missing host",
            corefile::values::go_quote(a)
        ));
    }
    // `HOST[:PORT]` (an IPv6 host in brackets).
    let (bare, has_port) = match host.rsplit_once(':') {
        Some((h, p)) if !p.contains(']') => (h, true),
        _ => (host, false),
    };
    let authority = if has_port {
        host.to_owned()
    } else {
        format!("{host}:{}", if https { 443 } else { 80 })
    };
    let tls = if https {
        let name = server_name.unwrap_or(bare.trim_start_matches('[').trim_end_matches(']'));
        Some(
            rustls::pki_types::ServerName::try_from(name.to_owned()).map_err(|_| {
                format!(
                    "invalid TLS server name {}",
                    corefile::values::go_quote(name)
                )
            })?,
        )
    } else {
        None
    };
    let scheme = if https { "https" } else { "http" };
    Ok(Endpoint::Http {
        base: format!("{scheme}://{}", rest.trim_end_matches('/')),
        authority,
        tls,
        user,
    })
}

/// Go's `Username()` and `Password()` of a URL's user information, unescaped and
/// joined by `:`; a malformed escape fails as `url.Parse` fails it in the API
/// client's `NewClient`.
fn userinfo(url: &str, u: &str) -> Result<String, String> {
    let (n, p) = u.split_once(':').unwrap_or((u, ""));
    let un = |s: &str| crate::server::doh::unescape(s, false);
    if let (Some(n), Some(p)) = (un(n), un(p)) {
        return Ok(format!(
            "{}:{}",
            String::from_utf8_lossy(&n),
            String::from_utf8_lossy(&p)
        ));
    }
    // Go names the escape: `%` and at most two octets after it.
    let b = u.as_bytes();
    let i = (0..b.len())
        .find(|&i| {
            b[i] == b'%'
                && !(b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                    && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
        })
        .unwrap_or(0);
    let bad = String::from_utf8_lossy(&b[i..(i + 3).min(b.len())]).into_owned();
    Err(format!(
        "invalid address '{url}': parse {}: invalid URL escape {}",
        corefile::values::go_quote(url),
        corefile::values::go_quote(&bad)
    ))
}

/// An HTTP/1.1 client over `io`, its connection driven on the worker.
async fn open<T>(io: T, url: &str) -> Result<http1::SendRequest<Empty<Bytes>>, String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + 'static,
{
    let (tx, conn) = http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("Get {}: {e}", corefile::values::go_quote(url)))?;
    tokio::task::spawn_local(async move {
        let _ = conn.await;
    });
    Ok(tx)
}

/// The runtime plugin.
pub struct Nomad {
    cfg: Arc<NomadConfig>,
    /// The agent last answering (CoreDNS's `current`).
    current: AtomicUsize,
    /// Whether the last probe or lookup found an agent (for *ready*).
    up: AtomicBool,
}

static SUCCESS: LabelCounts<2> = LabelCounts::new(
    "coredns_nomad_success_requests_total",
    "Counter of DNS requests handled successfully.",
    ["server", "namespace"],
);
static FAILED: LabelCounts<2> = LabelCounts::new(
    "coredns_nomad_failed_requests_total",
    "Counter of DNS requests failed.",
    ["server", "namespace"],
);

fn metrics(f: &mut Families) {
    SUCCESS.add_to(f);
    FAILED.add_to(f);
}

/// One service registration as the catalogue lists it.
struct Registration {
    address: String,
    port: i64,
}

impl Nomad {
    /// Builds it.
    pub fn new(c: &NomadConfig) -> Self {
        contribute(metrics);
        Self {
            cfg: Arc::new(c.clone()),
            current: AtomicUsize::new(0),
            up: AtomicBool::new(true),
        }
    }

    /// Readiness: an agent answered last (always, with one agent, as CoreDNS).
    pub fn ready(&self) -> bool {
        self.cfg.clients.len() == 1 || self.up.load(Ordering::Relaxed)
    }

    /// `SERVICE.NAMESPACE` below the zone (the zone itself and single labels go on).
    fn split(&self, qname: &[u8]) -> Option<(String, String)> {
        let z = self.cfg.zone_name.wire();
        if !in_zone(qname, z) || qname.len() == z.len() {
            return None;
        }
        let base = &qname[..qname.len() - z.len()];
        let mut labels = Vec::new();
        let mut p = 0;
        while p < base.len() {
            let l = usize::from(base[p]);
            labels.push(&base[p + 1..p + 1 + l]);
            p += 1 + l;
        }
        if labels.len() < 2 {
            return None;
        }
        let text = |b: &[u8]| {
            let mut s = String::new();
            let mut w = vec![u8::try_from(b.len()).unwrap_or(0)];
            w.extend_from_slice(b);
            w.push(0);
            if let Ok(n) = Name::from_wire(&w) {
                n.write_presentation(&mut s);
            }
            s.trim_end_matches('.').to_ascii_lowercase()
        };
        Some((text(labels[0]), text(labels[1])))
    }

    /// The request hook: names in the zone park for the catalogue.
    pub fn serve(&self, ctx: &mut Ctx<'_>) -> Flow {
        match self.split(ctx.req.qname.wire()) {
            Some(_) => Flow::Park,
            None => Flow::Next,
        }
    }

    /// The parked half (CoreDNS's `ServeDNS`).
    pub async fn serve_async(&self, ctx: &mut Ctx<'_>) -> Flow {
        let Some((service, namespace)) = self.split(ctx.req.qname.wire()) else {
            return Flow::Next;
        };
        clog::log(
            Level::Debug,
            Some("nomad"),
            &format!("Looking up record for svc: {service} namespace: {namespace}"),
        );
        let server = ctx.server.to_string();
        let regs = match self.lookup(&service, &namespace).await {
            Ok(r) => r,
            Err(e) => {
                clog::log(Level::Warning, Some("nomad"), &e);
                // An empty NOERROR (the plugin returns SERVFAIL with the reply written).
                let mut b = ctx.reply();
                b.set_flags(flags::AA);
                b.finish();
                ctx.written = true;
                FAILED.inc([server, namespace]);
                return Flow::Return(Status::rcode(2));
            }
        };
        let qtype = ctx.req.qtype;
        let qname = ctx.req.qname.wire().to_vec();
        let lower = ctx.req.qname.to_lowercase();
        let ttl = self.cfg.ttl;
        let mut answers: Vec<(Vec<u8>, u16, Vec<u8>)> = Vec::new();
        let mut extra: Vec<(u16, Vec<u8>)> = Vec::new();
        let mut failed = regs.is_empty();
        for r in &regs {
            let Ok(addr) = r.address.parse::<IpAddr>() else {
                failed = true;
                break;
            };
            let (rtype, bytes) = match addr {
                IpAddr::V4(a) => (1u16, a.octets().to_vec()),
                IpAddr::V6(a) => match a.to_ipv4_mapped() {
                    Some(v4) => (1, v4.octets().to_vec()),
                    None => (28, a.octets().to_vec()),
                },
            };
            match qtype {
                1 | 28 if rtype == qtype => answers.push((qname.clone(), qtype, bytes)),
                1 | 28 => {}
                33 => {
                    let mut rd = vec![0, 10, 0, 10];
                    rd.extend_from_slice(&(r.port as u16).to_be_bytes());
                    rd.extend_from_slice(lower.wire());
                    answers.push((qname.clone(), 33, rd));
                    extra.push((rtype, bytes));
                }
                _ => {
                    failed = true;
                    break;
                }
            }
        }
        let mut b = Builder::reply_flags(ctx.resp, &ctx.req, ctx.st.flags);
        b.set_flags(flags::AA);
        for (owner, t, rd) in &answers {
            b.rr_wire(owner, *t, 1, ttl, rd);
        }
        if failed {
            // `handleResponseError`: NXDOMAIN with an SOA in the answer section.
            b.set_rcode(3);
            if let Some(soa) = soa_rdata(&lower, &self.cfg.zone) {
                b.rr_wire(lower.wire(), 6, 1, ttl, &soa);
            }
            b.finish();
            ctx.written = true;
            FAILED.inc([server, namespace]);
            return Flow::Return(Status::rcode(0));
        }
        b.section(SectionKind::Additional);
        for (t, rd) in &extra {
            b.rr_wire(lower.wire(), *t, 1, ttl, rd);
        }
        b.finish();
        ctx.written = true;
        SUCCESS.inc([server, namespace]);
        Flow::Return(Status::rcode(0))
    }

    /// `getClient` then `Services().Get`: the registrations of `service`.
    async fn lookup(&self, service: &str, namespace: &str) -> Result<Vec<Registration>, String> {
        let n = self.cfg.clients.len();
        let ep = if n == 1 {
            &self.cfg.clients[0]
        } else {
            let start = self.current.load(Ordering::Relaxed);
            let mut found = None;
            for i in 0..n {
                let idx = (start + i) % n;
                if self
                    .get(&self.cfg.clients[idx], "/v1/agent/self")
                    .await
                    .is_ok()
                {
                    self.current.store(idx, Ordering::Relaxed);
                    found = Some(idx);
                    break;
                }
            }
            self.up.store(found.is_some(), Ordering::Relaxed);
            match found {
                Some(i) => &self.cfg.clients[i],
                None => return Err("no Nomad client available".into()),
            }
        };
        let mut path = format!(
            "/v1/service/{}?namespace={}",
            url_escape(service),
            url_escape(namespace)
        );
        if let Some(f) = &self.cfg.filter {
            path.push_str(&format!("&filter={}", url_escape(f)));
        }
        if let Some(r) = &self.cfg.region {
            path.push_str(&format!("&region={}", url_escape(r)));
        }
        let body = self.get(ep, &path).await?;
        let v: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| format!("error decoding response: {e}"))?;
        let Some(list) = v.as_array() else {
            return Ok(Vec::new());
        };
        Ok(list
            .iter()
            .map(|r| Registration {
                address: r["Address"].as_str().unwrap_or("").to_owned(),
                port: r["Port"].as_i64().unwrap_or(0),
            })
            .collect())
    }

    /// One `GET` to the agent, with the token; the body of a 200.
    async fn get(&self, ep: &Endpoint, path: &str) -> Result<Vec<u8>, String> {
        let url = match ep {
            Endpoint::Http { base, .. } => format!("{base}{path}"),
            Endpoint::Unix(p) => format!("http://{p}{path}"),
        };
        let fut = async {
            let (mut tx, host, user) = match ep {
                Endpoint::Http {
                    authority,
                    tls,
                    user,
                    ..
                } => {
                    let s = tokio::net::TcpStream::connect(authority.as_str())
                        .await
                        .map_err(|e| dial_err(&url, "tcp", authority, &e))?;
                    let tx = match tls {
                        None => open(s, &url).await?,
                        Some(name) => {
                            let t = tokio_rustls::TlsConnector::from(Arc::clone(&self.cfg.tls))
                                .connect(name.clone(), s)
                                .await
                                .map_err(|e| {
                                    format!(
                                        "Get {}: {}",
                                        corefile::values::go_quote(&url),
                                        crate::plugins::forward::tls::handshake_err(&e)
                                    )
                                })?;
                            open(t, &url).await?
                        }
                    };
                    (tx, authority.clone(), user.as_ref())
                }
                Endpoint::Unix(p) => {
                    let s = tokio::net::UnixStream::connect(p)
                        .await
                        .map_err(|e| dial_err(&url, "unix", p, &e))?;
                    (open(s, &url).await?, "localhost".to_owned(), None)
                }
            };
            let mut req = Request::get(path).header(header::HOST, host);
            if let Some(a) = user.or(self.cfg.http_auth.as_ref()) {
                req = req.header(header::AUTHORIZATION, a.as_str());
            }
            if let Some(t) = &self.cfg.token {
                req = req.header("X-Nomad-Token", t.as_str());
            }
            let req = req
                .body(Empty::<Bytes>::new())
                .map_err(|e| format!("Get {}: {e}", corefile::values::go_quote(&url)))?;
            let resp = tx
                .send_request(req)
                .await
                .map_err(|e| format!("Get {}: {e}", corefile::values::go_quote(&url)))?;
            let status = resp.status().as_u16();
            let body = Limited::new(resp.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| format!("Get {}: {e}", corefile::values::go_quote(&url)))?
                .to_bytes()
                .to_vec();
            if status != 200 {
                return Err(format!(
                    "Unexpected response code: {status} ({})",
                    String::from_utf8_lossy(&body)
                ));
            }
            Ok(body)
        };
        match tokio::time::timeout(TIMEOUT, fut).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "Get {}: context deadline exceeded",
                corefile::values::go_quote(&url)
            )),
        }
    }
}

/// Go's `net/http` text for a failed dial.
fn dial_err(url: &str, net: &str, addr: &str, e: &std::io::Error) -> String {
    let what = match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connect: connection refused".to_owned(),
        std::io::ErrorKind::NotFound => "connect: no such file or directory".to_owned(),
        _ => crate::config::go_err(e),
    };
    format!(
        "Get {}: dial {net} {addr}: {what}",
        corefile::values::go_quote(url)
    )
}

/// Query-string escaping (Go's `url.QueryEscape`).
fn url_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `createSOARecord`'s RDATA: `ns1.QNAME hostmaster.ZONE 0 3600 600 86400 30`.
fn soa_rdata(qname: &Name, zone: &str) -> Option<Vec<u8>> {
    let ns = qname.prepend(b"ns1")?;
    let z = if zone.ends_with('.') {
        zone.to_owned()
    } else {
        format!("{zone}.")
    };
    let mbox = Name::parse(&format!("hostmaster.{z}"))?;
    if ns.len() > MAX_NAME || mbox.len() > MAX_NAME {
        return None;
    }
    let mut rd = ns.wire().to_vec();
    rd.extend_from_slice(mbox.wire());
    for v in [0u32, 3600, 600, 86400, 30] {
        rd.extend_from_slice(&v.to_be_bytes());
    }
    Some(rd)
}
