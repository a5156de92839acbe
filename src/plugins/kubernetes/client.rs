//! The API client: list and watch each resource *kubernetes* needs, as client-go's
//! reflectors do (list with `resourceVersion=0`, then watch from the list's version
//! with bookmarks; a watch that ends is resumed, a `410 Gone` lists again, failures
//! back off from 1 to 30 s), over HTTP/1.1 or HTTPS (rustls) with the service
//! account's bearer token. One thread with its own small runtime runs every watch;
//! it owns the objects and publishes an immutable snapshot after each burst of
//! events. It stops when the plugin's configuration is dropped (reload, shutdown).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Notify, Semaphore, mpsc};

use super::store::{Change, Kind, Object, Objects, Snapshot, convert, key_of};
use crate::clog::{self, Level};
use crate::metrics::{Families, Hist, LabelCounts, add_hist};

/// client-go's request metrics as CoreDNS registers them.
static REQUESTS: LabelCounts<3> = LabelCounts::new(
    "coredns_kubernetes_rest_client_requests_total",
    "Number of HTTP requests, partitioned by status code, method, and host.",
    ["code", "host", "method"],
);
/// Prometheus's `DefBuckets`.
const DEF_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
type Hists = std::collections::BTreeMap<(String, String), Hist<11>>;
/// (host, verb) → request latency, and rate limiter wait.
static LATENCY: Mutex<Hists> = Mutex::new(std::collections::BTreeMap::new());
static LIMITER: Mutex<Hists> = Mutex::new(std::collections::BTreeMap::new());

fn observe(h: &Mutex<Hists>, host: &str, v: f64) {
    h.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry((host.to_owned(), "GET".to_owned()))
        .or_default()
        .observe(&DEF_BUCKETS, v);
}

/// Adds the REST client families and the programming latency.
pub fn metrics(f: &mut Families) {
    REQUESTS.add_to(f);
    for (kind, hist) in PROGRAMMING
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
    {
        let (b, sum, count) = hist.snapshot_pub();
        add_hist(
            f,
            "coredns_kubernetes_dns_programming_duration_seconds",
            "Histogram of the time (in seconds) it took to program a dns instance.",
            &[("service_kind", kind)],
            &PROGRAMMING_BUCKETS,
            &b,
            sum,
            count,
        );
    }
    for (h, name, help) in [
        (
            &LATENCY,
            "coredns_kubernetes_rest_client_request_duration_seconds",
            "Request latency in seconds. Broken down by verb and host.",
        ),
        (
            &LIMITER,
            "coredns_kubernetes_rest_client_rate_limiter_duration_seconds",
            "Client side rate limiter latency in seconds. Broken down by verb and host.",
        ),
    ] {
        let m = h.lock().unwrap_or_else(PoisonError::into_inner);
        for ((host, verb), hist) in m.iter() {
            let (b, sum, count) = hist.snapshot_pub();
            add_hist(
                f,
                name,
                help,
                &[("host", host), ("verb", verb)],
                &DEF_BUCKETS,
                &b,
                sum,
                count,
            );
        }
    }
}

/// Largest list page or watch event read (bounded memory against a bad server).
const MAX_BODY: usize = 256 << 20;
const MAX_EVENT: usize = 16 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// client-go's `/var/run/secrets/kubernetes.io/serviceaccount`.
pub const SA_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Where and how to reach the API server.
#[derive(Clone)]
pub struct ApiConfig {
    pub https: bool,
    pub host: String,
    pub port: u16,
    /// Path prefix of the server URL (usually empty).
    pub prefix: String,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// In-cluster: the token file, read before each request (tokens rotate).
    pub token_file: Option<PathBuf>,
    /// A kubeconfig's static bearer token.
    pub token: Option<String>,
    /// A kubeconfig's credential plugin (bearer token and/or client certificate).
    pub exec: Option<Arc<super::exec::ExecAuth>>,
    /// The name to verify the server's certificate for (a kubeconfig's
    /// `tls-server-name`; else the host).
    pub server_name: Option<String>,
    /// `apiserver_qps` / `apiserver_burst` (client-go's defaults 5 and 10).
    pub qps: f32,
    pub burst: usize,
    /// `apiserver_max_inflight` (0: no limit).
    pub max_inflight: usize,
}

impl ApiConfig {
    /// client-go's `DefaultServerURL`: a URL without a scheme gets `https://` when
    /// TLS files are given, else `http://`.
    pub fn from_url(url: &str, tls_files: bool) -> Result<Self, String> {
        let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else if url.contains("://") {
            return Err(format!("host must be a URL or a host:port pair: {url:?}"));
        } else {
            (tls_files, url)
        };
        let (auth, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let default_port = if https { 443 } else { 80 };
        let (host, port) = if let Some(r) = auth.strip_prefix('[') {
            let (h, after) = r
                .split_once(']')
                .ok_or_else(|| format!("host must be a URL or a host:port pair: {url:?}"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| format!("invalid port in {url:?}"))?,
                None => default_port,
            };
            (h.to_owned(), port)
        } else {
            match auth.rsplit_once(':') {
                Some((h, p)) => (
                    h.to_owned(),
                    p.parse().map_err(|_| format!("invalid port in {url:?}"))?,
                ),
                None => (auth.to_owned(), default_port),
            }
        };
        if host.is_empty() {
            return Err(format!("host must be a URL or a host:port pair: {url:?}"));
        }
        Ok(Self {
            https,
            host,
            port,
            prefix: prefix.to_owned(),
            tls: None,
            token_file: None,
            token: None,
            exec: None,
            server_name: None,
            qps: 5.0,
            burst: 10,
            max_inflight: 0,
        })
    }

    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    fn url(&self, path: &str) -> String {
        format!(
            "{}://{}{}{path}",
            if self.https { "https" } else { "http" },
            self.authority(),
            self.prefix
        )
    }
}

/// What the watcher publishes.
pub struct Published {
    pub snap: ArcSwap<Snapshot>,
    pub stop: Notify,
}

/// What to watch.
#[derive(Clone)]
pub struct WatchSet {
    pub kinds: Vec<Kind>,
    /// `labels` (services and endpoint slices; pods too, as CoreDNS).
    pub labels: Option<String>,
    /// `namespace_labels` (namespaces).
    pub namespace_labels: Option<String>,
    /// `zonal`: endpoint slices keep their endpoints' zones.
    pub zonal: bool,
    /// The label selector of the multicluster EndpointSlices: `labels` and
    /// `multicluster.kubernetes.io/service-name` (exists).
    pub mc_labels: String,
}

enum Event {
    Listed(Kind, Vec<(String, Object)>),
    Put(String, Object),
    /// The object as the DELETED event carried it (for the programming latency).
    Del(Kind, String, Option<Object>),
}

/// Starts the watcher thread.
pub fn spawn(cfg: ApiConfig, set: WatchSet, out: Arc<Published>) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    std::thread::Builder::new()
        .name("ringdns-k8s".into())
        .spawn(move || rt.block_on(run(cfg, set, out)))
        .map(drop)
        .map_err(|e| e.to_string())
}

async fn run(cfg: ApiConfig, set: WatchSet, out: Arc<Published>) {
    let (tx, mut rx) = mpsc::channel::<Event>(256);
    let limits = Arc::new(Limits::new(&cfg));
    let cfg = Arc::new(cfg);
    let mut tasks = Vec::new();
    for &kind in &set.kinds {
        let sel = match kind {
            // CoreDNS lists ServiceImports with the namespace selector.
            Kind::Namespaces | Kind::ServiceImports => set.namespace_labels.clone(),
            Kind::McEndpoints => Some(set.mc_labels.clone()),
            _ => set.labels.clone(),
        };
        tasks.push(tokio::spawn(reflect(
            Arc::clone(&cfg),
            Arc::clone(&limits),
            kind,
            sel,
            set.zonal,
            tx.clone(),
        )));
    }
    drop(tx);
    let mut objs = Objects::default();
    let mut listed: HashSet<Kind> = HashSet::new();
    let mut modified = [0i64; 3];
    loop {
        let ev = tokio::select! {
            () = out.stop.notified() => break,
            ev = rx.recv() => match ev { Some(e) => e, None => break },
        };
        let mut ch = apply(&mut objs, &mut listed, ev);
        while let Ok(ev) = rx.try_recv() {
            if apply(&mut objs, &mut listed, ev) == Change::Modified {
                ch = Change::Modified;
            }
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        if ch == Change::Modified {
            modified[0] = now;
        }
        if std::mem::take(&mut objs.ext_changed) {
            modified[1] = now;
        }
        if std::mem::take(&mut objs.mc_changed) {
            modified[2] = now;
        }
        let synced = set.kinds.iter().all(|k| listed.contains(k));
        out.snap.store(Arc::new(objs.snapshot(synced, modified)));
    }
    for t in tasks {
        t.abort();
    }
}

fn apply(objs: &mut Objects, listed: &mut HashSet<Kind>, ev: Event) -> Change {
    match ev {
        Event::Listed(k, items) => {
            listed.insert(k);
            for (key, o) in &items {
                if !unchanged(objs, key, o) {
                    programming_latency(objs, o);
                }
            }
            objs.replace(k, items)
        }
        Event::Put(key, o) => {
            if !unchanged(objs, &key, &o) {
                programming_latency(objs, &o);
            }
            objs.put(key, o)
        }
        Event::Del(k, key, o) => {
            if let Some(o) = &o {
                programming_latency(objs, o);
            }
            objs.remove(k, &key)
        }
    }
}

/// An EndpointSlice the store already has at the same resource version (a relist after
/// a watch ended): CoreDNS's `detectChanges` returns before it records any latency.
fn unchanged(objs: &Objects, key: &str, o: &Object) -> bool {
    match o {
        Object::Endpoints(n) => objs
            .endpoints
            .get(key)
            .is_some_and(|e| e.version == n.version),
        Object::McEndpoints(n) => objs
            .mc_endpoints
            .get(key)
            .is_some_and(|e| e.ep.version == n.ep.version),
        _ => false,
    }
}

/// `coredns_kubernetes_dns_programming_duration_seconds`: ExponentialBuckets(0.001, 2, 20).
const PROGRAMMING_BUCKETS: [f64; 20] = {
    let mut b = [0.0; 20];
    let mut i = 0;
    let mut v = 0.001;
    while i < 20 {
        b[i] = v;
        v *= 2.0;
        i += 1;
    }
    b
};
/// By service kind (`cluster_ip`, `headless_with_selector`).
static PROGRAMMING: Mutex<std::collections::BTreeMap<&'static str, Hist<20>>> =
    Mutex::new(std::collections::BTreeMap::new());

/// CoreDNS's `EndpointLatencyRecorder`: for an EndpointSlice event whose
/// `last-change-trigger-time` annotation is set and whose service is known (exactly
/// one), the time from that change until now.
fn programming_latency(objs: &Objects, o: &Object) {
    let ep = match o {
        Object::Endpoints(ep) => &**ep,
        // Found through `kubernetes.io/service-name` as well.
        Object::McEndpoints(m) => &m.ep,
        _ => return,
    };
    let Some(trigger) = &ep.trigger else { return };
    let Some(tt) = super::store::parse_rfc3339(trigger) else {
        clog::log(
            Level::Warning,
            Some("kubernetes"),
            &format!(
                "DnsProgrammingLatency cannot be calculated for Endpoints '{}/{}'; invalid \"endpoints.kubernetes.io/last-change-trigger-time\" annotation RFC3339 value of {}",
                ep.namespace,
                ep.name,
                corefile::values::go_quote(trigger)
            ),
        );
        return;
    };
    let mut svcs = objs.services.values().filter(|s| s.key() == ep.index);
    let (Some(svc), None) = (svcs.next(), svcs.next()) else {
        return;
    };
    let kind = if svc.headless() {
        "headless_with_selector"
    } else {
        "cluster_ip"
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    PROGRAMMING
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(kind)
        .or_default()
        .observe(&PROGRAMMING_BUCKETS, now - tt);
}

/// client-go's client-side rate limiter (token bucket) and `apiserver_max_inflight`.
struct Limits {
    bucket: Mutex<(f64, Instant)>,
    qps: f64,
    burst: f64,
    inflight: Option<Semaphore>,
}

impl Limits {
    fn new(cfg: &ApiConfig) -> Self {
        Self {
            bucket: Mutex::new((cfg.burst as f64, Instant::now())),
            qps: f64::from(cfg.qps),
            burst: cfg.burst.max(1) as f64,
            inflight: (cfg.max_inflight > 0).then(|| Semaphore::new(cfg.max_inflight)),
        }
    }

    /// Waits for a token.
    async fn take(&self) {
        loop {
            let wait = {
                let mut b = self.bucket.lock().unwrap_or_else(PoisonError::into_inner);
                let now = Instant::now();
                b.0 = (b.0 + now.duration_since(b.1).as_secs_f64() * self.qps).min(self.burst);
                b.1 = now;
                if b.0 >= 1.0 || self.qps <= 0.0 {
                    b.0 -= 1.0;
                    None
                } else {
                    Some(Duration::from_secs_f64((1.0 - b.0) / self.qps))
                }
            };
            match wait {
                None => return,
                Some(d) => tokio::time::sleep(d).await,
            }
        }
    }
}

/// The Go type name client-go's messages use.
fn type_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Services => "*v1.Service",
        Kind::Endpoints => "*v1.EndpointSlice",
        Kind::Namespaces => "*v1.Namespace",
        Kind::Pods => "*v1.Pod",
        Kind::ServiceImports => "*v1alpha1.ServiceImport",
        Kind::McEndpoints => "*v1.EndpointSlice",
    }
}

/// One resource's list-and-watch loop.
async fn reflect(
    cfg: Arc<ApiConfig>,
    limits: Arc<Limits>,
    kind: Kind,
    sel: Option<String>,
    zonal: bool,
    tx: mpsc::Sender<Event>,
) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let rv = match list(&cfg, &limits, kind, sel.as_deref(), zonal).await {
            Ok((items, rv)) => {
                if tx.send(Event::Listed(kind, items)).await.is_err() {
                    return;
                }
                backoff = Duration::from_secs(1);
                rv
            }
            Err(e) => {
                clog::log(
                    Level::Error,
                    Some("kubernetes"),
                    &format!(
                        "Failed to watch {}: failed to list {}: {e}",
                        type_name(kind),
                        type_name(kind)
                    ),
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        let mut rv = rv;
        loop {
            match watch(&cfg, &limits, kind, sel.as_deref(), zonal, &mut rv, &tx).await {
                // The server ended the watch (its timeout): resume it.
                Ok(()) => backoff = Duration::from_secs(1),
                Err(WatchEnd::Gone) => break,
                Err(WatchEnd::Closed) => return,
                Err(WatchEnd::Failed(e)) => {
                    clog::log(
                        Level::Error,
                        Some("kubernetes"),
                        &format!("Failed to watch {}: {e}", type_name(kind)),
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }
}

fn query(sel: Option<&str>, kind: Kind, extra: &[(&str, &str)]) -> String {
    let mut q: Vec<String> = extra
        .iter()
        .map(|(k, v)| format!("{k}={}", enc(v)))
        .collect();
    if let Some(s) = sel {
        q.push(format!("labelSelector={}", enc(s)));
    }
    if kind == Kind::Pods {
        // CoreDNS's pod list and watch skip finished pods.
        q.push(format!(
            "fieldSelector={}",
            enc("status.phase!=Succeeded,status.phase!=Failed,status.phase!=Unknown")
        ));
    }
    q.join("&")
}

/// Percent-encodes a query value.
fn enc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

async fn list(
    cfg: &ApiConfig,
    limits: &Limits,
    kind: Kind,
    sel: Option<&str>,
    zonal: bool,
) -> Result<(Vec<(String, Object)>, String), String> {
    let mut items = Vec::new();
    let mut cont = String::new();
    loop {
        let q = if cont.is_empty() {
            query(sel, kind, &[("limit", "500"), ("resourceVersion", "0")])
        } else {
            query(sel, kind, &[("limit", "500"), ("continue", &cont)])
        };
        let path = format!("{}?{q}", kind.path());
        let resp = get(cfg, limits, &path).await?;
        let status = resp.status();
        let body = read_all(resp.into_body()).await?;
        let v: Value = serde_json::from_slice(&body)
            .map_err(|e| format!("decoding the list from {}: {e}", cfg.url(&path)))?;
        if !status.is_success() {
            return Err(status_error(&v, status.as_u16()));
        }
        for it in v
            .get("items")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice)
        {
            if let Some(o) = convert(kind, it, zonal) {
                items.push((key_of(it), o));
            }
        }
        let rv = v
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        match v.pointer("/metadata/continue").and_then(Value::as_str) {
            Some(c) if !c.is_empty() => cont = c.to_owned(),
            _ => return Ok((items, rv)),
        }
    }
}

enum WatchEnd {
    Gone,
    Closed,
    Failed(String),
}

async fn watch(
    cfg: &ApiConfig,
    limits: &Limits,
    kind: Kind,
    sel: Option<&str>,
    zonal: bool,
    rv: &mut String,
    tx: &mpsc::Sender<Event>,
) -> Result<(), WatchEnd> {
    // client-go picks a timeout between 5 and 10 minutes.
    let secs = (300 + fastrand::u32(0..300)).to_string();
    let q = query(
        sel,
        kind,
        &[
            ("allowWatchBookmarks", "true"),
            ("resourceVersion", rv),
            ("timeoutSeconds", &secs),
            ("watch", "true"),
        ],
    );
    let path = format!("{}?{q}", kind.path());
    let resp = get(cfg, limits, &path).await.map_err(WatchEnd::Failed)?;
    let status = resp.status();
    let mut body = resp.into_body();
    if status.as_u16() == 410 {
        return Err(WatchEnd::Gone);
    }
    if !status.is_success() {
        let b = read_all(body).await.map_err(WatchEnd::Failed)?;
        let v: Value = serde_json::from_slice(&b).unwrap_or(Value::Null);
        return Err(WatchEnd::Failed(status_error(&v, status.as_u16())));
    }
    let mut buf: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| WatchEnd::Failed(e.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buf.extend_from_slice(&data);
        while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            event(kind, zonal, &line, rv, tx).await?;
        }
        if buf.len() > MAX_EVENT {
            return Err(WatchEnd::Failed("watch event too large".into()));
        }
    }
    if !buf.is_empty() {
        event(kind, zonal, &buf, rv, tx).await?;
    }
    Ok(())
}

async fn event(
    kind: Kind,
    zonal: bool,
    line: &[u8],
    rv: &mut String,
    tx: &mpsc::Sender<Event>,
) -> Result<(), WatchEnd> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    let v: Value = serde_json::from_slice(line)
        .map_err(|e| WatchEnd::Failed(format!("decoding a watch event: {e}")))?;
    let typ = v.get("type").and_then(Value::as_str).unwrap_or("");
    let obj = v.get("object").unwrap_or(&Value::Null);
    if typ == "ERROR" {
        if obj.get("code").and_then(Value::as_i64) == Some(410) {
            return Err(WatchEnd::Gone);
        }
        return Err(WatchEnd::Failed(status_error(obj, 0)));
    }
    if let Some(r) = obj
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
    {
        r.clone_into(rv);
    }
    let key = key_of(obj);
    let ev = match typ {
        "ADDED" | "MODIFIED" => match convert(kind, obj, zonal) {
            Some(o) => Event::Put(key, o),
            // A terminating pod: CoreDNS's processor skips the event (the pod
            // stays as it was until it is deleted).
            None => return Ok(()),
        },
        "DELETED" => Event::Del(kind, key, convert(kind, obj, zonal)),
        _ => return Ok(()), // BOOKMARK
    };
    tx.send(ev).await.map_err(|_| WatchEnd::Closed)
}

/// The text of a `Status` object (its message), else the HTTP status.
fn status_error(v: &Value, code: u16) -> String {
    match v.get("message").and_then(Value::as_str) {
        Some(m) if !m.is_empty() => m.to_owned(),
        _ => format!("the server responded with the status code {code}"),
    }
}

async fn read_all(mut body: Incoming) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while let Some(f) = body.frame().await {
        let f = f.map_err(|e| e.to_string())?;
        if let Ok(d) = f.into_data() {
            if out.len() + d.len() > MAX_BODY {
                return Err("response too large".into());
            }
            out.extend_from_slice(&d);
        }
    }
    Ok(out)
}

/// One GET on a new connection (a watch keeps its connection to itself).
async fn get(cfg: &ApiConfig, limits: &Limits, path: &str) -> Result<Response<Incoming>, String> {
    let host = cfg.authority();
    let waited = Instant::now();
    limits.take().await;
    observe(&LIMITER, &host, waited.elapsed().as_secs_f64());
    let started = Instant::now();
    let res = get_once(cfg, limits, path).await;
    observe(&LATENCY, &host, started.elapsed().as_secs_f64());
    // client-go counts a request that got no response under code "<error>".
    let code = res.as_ref().map_or_else(
        |_| "<error>".to_owned(),
        |r| r.status().as_u16().to_string(),
    );
    REQUESTS.inc([code, host, "GET".to_owned()]);
    res
}

async fn get_once(
    cfg: &ApiConfig,
    limits: &Limits,
    path: &str,
) -> Result<Response<Incoming>, String> {
    let _permit = match &limits.inflight {
        Some(s) => Some(s.acquire().await.map_err(|e| e.to_string())?),
        None => None,
    };
    let url = cfg.url(path);
    let fail = |e: String| format!("Get {url:?}: {e}");
    // A credential plugin runs before the connection (its certificate is the
    // handshake's).
    let creds = match &cfg.exec {
        Some(x) => Some(
            x.get()
                .await
                .map_err(|e| fail(format!("getting credentials: {e}")))?,
        ),
        None => None,
    };
    let tcp = tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio::net::TcpStream::connect((cfg.host.as_str(), cfg.port)),
    )
    .await
    .map_err(|_| fail(format!("dial tcp {}: i/o timeout", cfg.authority())))?
    .map_err(|e| {
        fail(format!(
            "dial tcp {}: {}",
            cfg.authority(),
            crate::config::go_err(&e)
        ))
    })?;
    let _ = tcp.set_nodelay(true);
    let mut req = Request::get(format!("{}{path}", cfg.prefix))
        .header(hyper::header::HOST, cfg.authority())
        .header(hyper::header::ACCEPT, "application/json")
        .header(
            hyper::header::USER_AGENT,
            concat!("ringdns/", env!("CARGO_PKG_VERSION")),
        );
    if let Some(t) = &cfg.token {
        req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
    } else if let Some(f) = &cfg.token_file {
        let t = std::fs::read_to_string(f).map_err(|e| fail(e.to_string()))?;
        req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {}", t.trim()));
    } else if let Some(c) = creds.as_ref().filter(|c| !c.token.is_empty()) {
        req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {}", c.token));
    }
    let req = req
        .body(Empty::<Bytes>::new())
        .map_err(|e| fail(e.to_string()))?;
    if cfg.https {
        let tls = cfg
            .tls
            .clone()
            .ok_or_else(|| fail("no TLS configuration".into()))?;
        let name = rustls::pki_types::ServerName::try_from(
            cfg.server_name.clone().unwrap_or_else(|| cfg.host.clone()),
        )
        .map_err(|e| fail(e.to_string()))?;
        let s = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .map_err(|e| fail(super::super::forward::tls::handshake_err(&e)))?;
        let res = send(s, req).await.map_err(fail)?;
        // client-go's exec round tripper: a 401 runs the plugin again.
        if res.status() == hyper::StatusCode::UNAUTHORIZED {
            if let (Some(x), Some(c)) = (&cfg.exec, &creds) {
                x.unauthorized(c).await;
            }
        }
        Ok(res)
    } else {
        send(tcp, req).await.map_err(fail)
    }
}

async fn send<I>(io: I, req: Request<Empty<Bytes>>) -> Result<Response<Incoming>, String>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut tx, conn) = http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    tx.send_request(req).await.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relisted_endpointslice_at_its_version_is_unchanged() {
        let ep = |v: &str| {
            Object::Endpoints(Arc::new(super::super::store::Endpoints {
                version: v.into(),
                name: "e".into(),
                namespace: "ns".into(),
                index: "svc.ns".into(),
                addresses: Vec::new(),
                ports: Vec::new(),
                trigger: Some("2026-01-01T00:00:00Z".into()),
            }))
        };
        let mut objs = Objects::default();
        assert!(!unchanged(&objs, "ns/e", &ep("300")));
        objs.put("ns/e".into(), ep("300"));
        assert!(unchanged(&objs, "ns/e", &ep("300")));
        assert!(!unchanged(&objs, "ns/e", &ep("301")));
        assert!(!unchanged(&objs, "ns/f", &ep("300")));
    }

    #[test]
    fn server_urls() {
        let c = ApiConfig::from_url("https://10.0.0.1:6443", false).expect("url");
        assert!(c.https);
        assert_eq!((c.host.as_str(), c.port), ("10.0.0.1", 6443));
        let c = ApiConfig::from_url("http://[::1]:8080/prefix/", false).expect("url");
        assert_eq!(
            (c.host.as_str(), c.port, c.prefix.as_str()),
            ("::1", 8080, "/prefix")
        );
        assert_eq!(c.url("/api"), "http://[::1]:8080/prefix/api");
        let c = ApiConfig::from_url("k8s.local", true).expect("url");
        assert!(c.https && c.port == 443);
        let c = ApiConfig::from_url("k8s.local:8080", false).expect("url");
        assert!(!c.https && c.port == 8080);
        assert!(ApiConfig::from_url("ftp://x", false).is_err());
    }

    #[test]
    fn query_strings() {
        assert_eq!(
            query(Some("app in (a,b)"), Kind::Services, &[("limit", "500")]),
            "limit=500&labelSelector=app%20in%20%28a%2Cb%29"
        );
        assert!(
            query(None, Kind::Pods, &[]).starts_with("fieldSelector=status.phase%21%3DSucceeded")
        );
    }
}
