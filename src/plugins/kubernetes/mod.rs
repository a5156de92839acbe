//! *kubernetes*: cluster DNS from the Kubernetes API (plugins.md "kubernetes",
//! the Kubernetes DNS specification 1.1.0), as CoreDNS 1.14.7's plugin answers it:
//! services (cluster IPs, headless endpoints, ExternalName CNAMEs), SRV for named
//! ports, pods (`insecure`/`verified`), PTR for cluster IPs and endpoints,
//! `dns-version`, the apex SOA and NS, NXDOMAIN/NODATA with the SOA, SERVFAIL
//! until the API is listed, and `fallthrough`.
//!
//! The watcher ([`client`]) lists and watches services, EndpointSlices, namespaces
//! and (for `pods verified`) pods, and publishes a [`store::Snapshot`]; queries
//! read it without locks. Startup waits for the first lists up to
//! `startup_timeout`, logging as CoreDNS does.
//!
//! `zonal` answers zone-scoped names of headless services
//! (`ZONE.pin|prefer._zone.SERVICE.NS.svc.ZONE`) from the endpoints' zones and
//! publishes `kubernetes/zone`. `multicluster` zones answer from the MCS API's
//! ServiceImports and imported EndpointSlices. With *transfer* in the block,
//! the zones can be transferred (CoreDNS's `xfr.go`).
//!
//! CoreDNS: `plugin/kubernetes/{setup,kubernetes,handler,parse,reverse,ns,local,xfr}.go`,
//! `plugin/kubernetes/object`, `plugin/backend_lookup.go`.

pub mod answer;
pub mod client;
pub mod exec;
pub mod external;
pub mod kubeconfig;
pub mod selector;
pub mod store;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use corefile::values::parse_go_duration_nanos;
use corefile::{Diagnostic, Dispenser};

use self::answer::{Lookup, NameError, Params, PodMode, Rr, Upstream};
use self::client::{ApiConfig, Published, WatchSet};
use self::store::{Kind, Snapshot};
use super::file::Fall;
use super::transfer::link::{self, Outgoing, XfrRecord, ZoneSource};
use crate::chain::{Ctx, Flow, Status};
use crate::clog::{self, Level};
use crate::config::{SetupCtx, err_once, go_atoi_err};
use crate::wire::SectionKind;
use crate::wire::{Name, flags};

/// The MCS API's label naming an imported EndpointSlice's service.
const MCS_SERVICE_NAME: &str = "multicluster.kubernetes.io/service-name";

/// The parsed plugin and its watcher's output.
pub struct KubeShared {
    /// The zones, normalised (lower case, fully qualified).
    zones: Vec<String>,
    primary: String,
    namespaces: HashSet<String>,
    pods: PodMode,
    endpoint_pod_names: bool,
    ignore_empty_service: bool,
    /// `multicluster` zones (normalised).
    multicluster: Vec<String>,
    ttl: u32,
    fall: Fall,
    startup_timeout: Duration,
    api: ApiConfig,
    set: WatchSet,
    out: Arc<Published>,
    started: AtomicBool,
    local_ips: Vec<IpAddr>,
    /// `/etc/resolv.conf`'s search list (for `autopath @kubernetes`).
    resolv_search: Vec<Name>,
}

impl Drop for KubeShared {
    fn drop(&mut self) {
        // CoreDNS's OnShutdown: the controller stops.
        self.out.stop.notify_one();
    }
}

/// *kubernetes*' configuration.
#[derive(Clone)]
pub struct KubernetesConfig {
    shared: Arc<KubeShared>,
}

impl std::fmt::Debug for KubernetesConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesConfig")
            .field("zones", &self.shared.zones)
            .finish_non_exhaustive()
    }
}

/// `dnsutil.IsReverse`: a name below `in-addr.arpa.` or `ip6.arpa.` (those two
/// themselves are not).
fn is_reverse_zone(z: &str) -> bool {
    answer::is_reverse(z)
}

/// CoreDNS's `boundIPs`: every interface's addresses without loopback ones. With
/// `bind`, none: CoreDNS reads the bind hosts with `net.ParseCIDR`, which refuses a
/// plain address, so the apex NS falls back to no address at all.
fn bound_ips(listen: &[String]) -> Vec<IpAddr> {
    let mut hosts: Vec<IpAddr> = Vec::new();
    if listen.is_empty() || listen[0].is_empty() {
        if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
            for a in addrs {
                let Some(sa) = a.address else { continue };
                if let Some(v4) = sa.as_sockaddr_in() {
                    hosts.push(IpAddr::V4(v4.ip()));
                } else if let Some(v6) = sa.as_sockaddr_in6() {
                    hosts.push(IpAddr::V6(v6.ip()));
                }
            }
        }
    }
    hosts.into_iter().filter(|ip| !ip.is_loopback()).collect()
}

/// Setup (CoreDNS `kubernetesParse`, `ParseStanza` and `InitKubeCache`).
pub fn setup(d: &mut Dispenser, ctx: &mut SetupCtx<'_>) -> Result<KubernetesConfig, Diagnostic> {
    let w = |e: Diagnostic| e.in_plugin("kubernetes");
    let plain = |m: String| Diagnostic::plain(m).in_plugin("kubernetes");
    let mut seen = false;
    let mut zones = Vec::new();
    let mut namespaces = HashSet::new();
    let mut pods = PodMode::Disabled;
    let mut endpoint_pod_names = false;
    let mut ignore_empty_service = false;
    let mut ttl = 5u32;
    let mut fall = Fall::default();
    let mut startup_timeout = Duration::from_secs(5);
    let mut endpoint: Option<String> = None;
    let mut tls_files: Option<[String; 3]> = None;
    let mut labels = None;
    let mut namespace_labels = None;
    let mut noendpoints = false;
    let mut zonal = false;
    let mut multicluster: Vec<String> = Vec::new();
    let mut qps = 0f32;
    let mut burst = 0usize;
    let mut max_inflight = 0usize;
    let mut kubeconfig: Option<(String, Option<String>)> = None;
    while d.next() {
        if seen {
            return Err(w(err_once()));
        }
        seen = true;
        let args = d.remaining_args();
        zones = ctx.origins(&args);
        if !zones.iter().any(|z| !is_reverse_zone(z)) {
            return Err(plain("non-reverse zone name must be used".into()));
        }
        while d.next_block() {
            let opt = d.val().to_owned();
            match opt.as_str() {
                "endpoint_pod_names" => {
                    if !d.remaining_args().is_empty() {
                        return Err(w(d.arg_err()));
                    }
                    endpoint_pod_names = true;
                }
                "pods" => {
                    let a = d.remaining_args();
                    if a.len() != 1 {
                        return Err(w(d.arg_err()));
                    }
                    pods = match a[0].as_str() {
                        "disabled" => PodMode::Disabled,
                        "insecure" => PodMode::Insecure,
                        "verified" => PodMode::Verified,
                        v => {
                            return Err(plain(format!(
                                "wrong value for pods: {v},  must be one of: disabled, verified, insecure"
                            )));
                        }
                    };
                }
                "namespaces" => {
                    let a = d.remaining_args();
                    if a.is_empty() {
                        return Err(w(d.arg_err()));
                    }
                    namespaces.extend(a);
                }
                "endpoint" => {
                    let a = d.remaining_args();
                    if a.is_empty() {
                        return Err(w(d.arg_err()));
                    }
                    if a.len() > 1 {
                        clog::log(
                            Level::Warning,
                            Some("kubernetes"),
                            &format!(
                                "Multiple endpoints have been deprecated, only the first specified endpoint '{}' is used",
                                a[0]
                            ),
                        );
                    }
                    endpoint = Some(a[0].clone());
                }
                "tls" => {
                    let a = d.remaining_args();
                    if a.len() != 3 {
                        return Err(w(d.arg_err()));
                    }
                    tls_files = Some([a[0].clone(), a[1].clone(), a[2].clone()]);
                }
                "labels" | "namespace_labels" => {
                    let a = d.remaining_args();
                    if a.is_empty() {
                        return Err(w(d.arg_err()));
                    }
                    let s = a.join(" ");
                    let norm = selector::normalize(&s).map_err(|e| {
                        let what = if opt == "labels" {
                            "label"
                        } else {
                            "namespace_label"
                        };
                        plain(format!("unable to parse {what} selector value: '{s}': {e}"))
                    })?;
                    if opt == "labels" {
                        labels = Some(norm);
                    } else {
                        namespace_labels = Some(norm);
                    }
                }
                "fallthrough" => fall = Fall::from_args(&d.remaining_args()),
                "ttl" => {
                    let a = d.remaining_args();
                    let Some(v) = a.first() else {
                        return Err(w(d.arg_err()));
                    };
                    let Some(t) = corefile::keys::go_atoi(v) else {
                        return Err(plain(go_atoi_err(v)));
                    };
                    if !(0..=3600).contains(&t) {
                        return Err(w(d.err(format!("ttl must be in range [0, 3600]: {t}"))));
                    }
                    ttl = t as u32;
                }
                "noendpoints" => {
                    if !d.remaining_args().is_empty() {
                        return Err(w(d.arg_err()));
                    }
                    noendpoints = true;
                }
                "ignore" => {
                    let a = d.remaining_args();
                    if let Some(v) = a.first() {
                        if v != "empty_service" {
                            return Err(plain(format!("unable to parse ignore value: '{v}'")));
                        }
                        ignore_empty_service = true;
                    }
                }
                "startup_timeout" => {
                    let a = d.remaining_args();
                    let Some(v) = a.first() else {
                        return Err(w(d.arg_err()));
                    };
                    match parse_go_duration_nanos(v) {
                        Ok(n) => startup_timeout = Duration::from_nanos(n.max(0) as u64),
                        Err(e) => {
                            return Err(plain(format!(
                                "failed to parse startup_timeout: {v}, {e}"
                            )));
                        }
                    }
                }
                "apiserver_qps" => {
                    let a = d.remaining_args();
                    if a.len() != 1 {
                        return Err(w(d.arg_err()));
                    }
                    let v: f32 = a[0].parse().map_err(|_| {
                        w(d.err(format!(
                            "invalid apiserver_qps {}: strconv.ParseFloat: parsing {}: invalid syntax",
                            corefile::values::go_quote(&a[0]),
                            corefile::values::go_quote(&a[0])
                        )))
                    })?;
                    if !v.is_finite() {
                        // Go's ParseFloat(s, 32) refuses what overflows a float32.
                        return Err(w(d.err(format!(
                            "invalid apiserver_qps {}: strconv.ParseFloat: parsing {}: value out of range",
                            corefile::values::go_quote(&a[0]),
                            corefile::values::go_quote(&a[0])
                        ))));
                    }
                    if v < 0.0 {
                        return Err(w(d.err("apiserver_qps must be >= 0")));
                    }
                    qps = v;
                }
                "apiserver_burst" | "apiserver_max_inflight" => {
                    let a = d.remaining_args();
                    if a.len() != 1 {
                        return Err(w(d.arg_err()));
                    }
                    let Some(v) = corefile::keys::go_atoi(&a[0]) else {
                        return Err(w(d.err(format!(
                            "invalid {opt} {}: {}",
                            corefile::values::go_quote(&a[0]),
                            go_atoi_err(&a[0])
                        ))));
                    };
                    if v < 0 {
                        return Err(w(d.err(format!("{opt} must be >= 0"))));
                    }
                    if opt == "apiserver_burst" {
                        burst = v as usize;
                    } else {
                        max_inflight = v as usize;
                    }
                }
                "kubeconfig" => {
                    let a = d.remaining_args();
                    if a.len() != 1 && a.len() != 2 {
                        return Err(w(d.arg_err()));
                    }
                    kubeconfig = Some((a[0].clone(), a.get(1).cloned()));
                }
                "zonal" => {
                    if !d.remaining_args().is_empty() {
                        return Err(w(d.arg_err()));
                    }
                    zonal = true;
                }
                "multicluster" => {
                    // `OriginsFromArgsOrServerBlock(args, [])`: none without arguments.
                    let a = d.remaining_args();
                    multicluster = if a.is_empty() {
                        Vec::new()
                    } else {
                        ctx.origins(&a)
                    };
                }
                other => return Err(w(d.err(format!("unknown property '{other}'")))),
            }
        }
    }
    if !namespaces.is_empty() && namespace_labels.is_some() {
        return Err(w(
            d.err("namespaces and namespace_labels cannot both be set")
        ));
    }
    if let Some(z) = multicluster.iter().find(|z| !zones.contains(z)) {
        return Err(w(d.err(format!(
            "is not authoritative for the multicluster zone {z} (authoritative zones: [{}])",
            zones.join(" ")
        ))));
    }
    if zonal && noendpoints {
        return Err(w(
            d.err("zonal requires the endpoint cache; remove noendpoints")
        ));
    }
    let zones: Vec<String> = zones.iter().map(|z| z.to_ascii_lowercase()).collect();
    let primary = zones
        .iter()
        .find(|z| !is_reverse_zone(z))
        .cloned()
        .unwrap_or_default();
    // A kubeconfig takes precedence over `endpoint` and `tls` (CoreDNS's
    // `getClientConfig`).
    let mut api = match (&kubeconfig, &endpoint) {
        (Some((file, context)), _) => match kubeconfig::load(file, context.as_deref()) {
            Ok(a) => a,
            // An empty configuration inside a pod: the in-cluster one (client-go's
            // deferred loading).
            Err(e) if e == kubeconfig::EMPTY => in_cluster().map_err(|_| plain(e))?,
            Err(e) => return Err(plain(e)),
        },
        (None, Some(url)) => {
            let mut a = ApiConfig::from_url(url, tls_files.is_some()).map_err(plain)?;
            if a.https {
                let args: Vec<String> = tls_files.iter().flatten().cloned().collect();
                a.tls = Some(super::forward::tls::client_config(&args).map_err(|e| {
                    plain(format!(
                        "failed to create kubernetes notification controller: {e:?}"
                    ))
                })?);
            }
            a
        }
        (None, None) => in_cluster().map_err(plain)?,
    };
    if qps > 0.0 {
        api.qps = qps;
    }
    if burst > 0 {
        api.burst = burst;
    }
    api.max_inflight = max_inflight;
    let mut kinds = vec![Kind::Services];
    if !noendpoints {
        kinds.push(Kind::Endpoints);
    }
    if pods == PodMode::Verified {
        kinds.push(Kind::Pods);
    }
    kinds.push(Kind::Namespaces);
    if !multicluster.is_empty() {
        kinds.push(Kind::ServiceImports);
        kinds.push(Kind::McEndpoints);
    }
    let mc_labels = match &labels {
        Some(l) => selector::normalize(&format!("{l},{MCS_SERVICE_NAME}"))
            .unwrap_or_else(|_| MCS_SERVICE_NAME.to_owned()),
        None => MCS_SERVICE_NAME.to_owned(),
    };
    let shared = Arc::new(KubeShared {
        zones,
        primary,
        namespaces,
        pods,
        endpoint_pod_names,
        ignore_empty_service,
        multicluster: multicluster
            .iter()
            .map(|z| z.to_ascii_lowercase())
            .collect(),
        ttl,
        fall,
        startup_timeout,
        api,
        set: WatchSet {
            kinds,
            labels,
            namespace_labels,
            zonal,
            mc_labels,
        },
        out: Arc::new(Published {
            snap: ArcSwap::from_pointee(Snapshot::default()),
            stop: tokio::sync::Notify::new(),
        }),
        started: AtomicBool::new(false),
        local_ips: bound_ips(&ctx.settings.listen_hosts),
        resolv_search: resolv_search(),
    });
    crate::metrics::contribute(client::metrics);
    let src: Arc<dyn ZoneSource> = shared.clone();
    link::for_block(ctx).add_source(Arc::downgrade(&src));
    Ok(KubernetesConfig { shared })
}

/// CoreDNS's `searchFromResolvConf`: `/etc/resolv.conf`'s search list, normalised
/// (nothing when it cannot be read).
fn resolv_search() -> Vec<Name> {
    let mut v = super::autopath::search_path("/etc/resolv.conf").unwrap_or_default();
    // `search_path` ends the list with the root (the walk's last try); the
    // kubernetes list gets its own.
    if v.last().is_some_and(Name::is_root) {
        v.pop();
    }
    v
}

impl ZoneSource for KubeShared {
    /// CoreDNS's `Transfer`: any name in the plugin's zones.
    fn transfer_zone(&self, zone: &Name, serial: u32) -> Option<Result<Outgoing, ()>> {
        let zone = zone.to_string();
        answer::longest_zone(&self.zones, &zone)?;
        let snap = self.out.snap.load();
        let params = self.params();
        let l = Lookup {
            snap: &snap,
            p: &params,
        };
        let records = l.transfer(&zone, serial).into_iter().map(|r| XfrRecord {
            owner: answer::name_wire(&r.owner),
            rtype: r.rtype,
            ttl: r.ttl,
            rdata: r.rdata,
        });
        Some(Ok(Outgoing::Records(records.collect())))
    }
}

impl KubeShared {
    /// What answers depend on.
    fn params(&self) -> Params<'_> {
        Params {
            primary_zone: &self.primary,
            namespaces: &self.namespaces,
            pods: self.pods,
            endpoint_pod_names: self.endpoint_pod_names,
            ignore_empty_service: self.ignore_empty_service,
            ttl: self.ttl,
            local_ips: &self.local_ips,
            zonal: self.set.zonal,
            multicluster: &self.multicluster,
        }
    }

    /// CoreDNS's `Metadata` (for *metadata* in the block; it checks its zones
    /// first): the client pod's namespace and name (`pods verified`), and the
    /// query name's parts when it is in this plugin's zones.
    pub fn publish_metadata(&self, ctx: &mut Ctx<'_>) {
        let name = ctx.req.qname.to_name().to_string().to_ascii_lowercase();
        if self.pods == PodMode::Verified {
            let ip = crate::server::canonical(ctx.peer).ip().to_string();
            let snap = self.out.snap.load();
            if let Some(pod) = snap.pod_ip.get(&ip).and_then(|p| p.first()) {
                let (ns, pn) = (pod.namespace.clone(), pod.name.clone());
                ctx.set_meta("kubernetes/client-namespace", || ns);
                ctx.set_meta("kubernetes/client-pod-name", || pn);
                // A pod's label keys are unique and no other provider sets
                // these: appended without a search.
                if let Some(m) = &mut ctx.meta {
                    for (k, v) in &pod.labels {
                        m.push((format!("kubernetes/client-label/{k}").into(), v.clone()));
                    }
                }
            }
        }
        let Some(zone) = answer::longest_zone(&self.zones, &name) else {
            return;
        };
        // CoreDNS asks which zone is multicluster with the empty zone of the
        // request *metadata* makes: only a multicluster root holds it, so a
        // cluster ID is published only then.
        let multicluster = self.multicluster.iter().any(|z| z == ".");
        match answer::parse_request(&name, zone, multicluster, self.set.zonal) {
            Err(_) => ctx.set_meta("kubernetes/parse-error", || "invalid query name".to_owned()),
            Ok(r) => {
                if multicluster {
                    ctx.set_meta("kubernetes/cluster", || r.cluster.clone());
                }
                if self.set.zonal {
                    ctx.set_meta("kubernetes/zone", || r.zone.clone());
                }
                ctx.set_meta("kubernetes/port-name", || r.port);
                ctx.set_meta("kubernetes/protocol", || r.protocol);
                ctx.set_meta("kubernetes/endpoint", || r.endpoint);
                ctx.set_meta("kubernetes/service", || r.service);
                ctx.set_meta("kubernetes/namespace", || r.namespace);
                ctx.set_meta("kubernetes/kind", || r.pod_or_svc);
            }
        }
    }
}

/// The search path *autopath* `@kubernetes` asks *kubernetes* for (CoreDNS's
/// `AutoPath`): by the client's pod.
#[derive(Clone)]
pub struct AutoPathSource(Arc<KubeShared>);

impl PartialEq for AutoPathSource {
    fn eq(&self, o: &Self) -> bool {
        Arc::ptr_eq(&self.0, &o.0)
    }
}

impl Eq for AutoPathSource {}

impl std::fmt::Debug for AutoPathSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AutoPathSource")
    }
}

impl AutoPathSource {
    /// `NS.svc.ZONE`, `svc.ZONE`, `ZONE`, resolv.conf's search list, then the root;
    /// empty (autopath passes the query on) when the name is outside the plugin's
    /// zones, pods are not `verified`, or no pod has the client's address.
    pub fn search(&self, qname: &Name, client: IpAddr) -> Vec<Name> {
        let k = &*self.0;
        let name = qname.to_string().to_ascii_lowercase();
        let Some(zone) = answer::longest_zone(&k.zones, &name) else {
            return Vec::new();
        };
        if k.pods != PodMode::Verified {
            return Vec::new();
        }
        let snap = k.out.snap.load();
        let Some(pod) = snap.pod_ip.get(&client.to_string()).and_then(|p| p.first()) else {
            return Vec::new();
        };
        let names = if zone == "." {
            [
                format!("{}.svc.", pod.namespace),
                "svc.".to_owned(),
                ".".to_owned(),
            ]
        } else {
            [
                format!("{}.svc.{zone}", pod.namespace),
                format!("svc.{zone}"),
                zone.clone(),
            ]
        };
        let mut out: Vec<Name> = names.iter().filter_map(|n| Name::parse(n)).collect();
        out.extend(k.resolv_search.iter().cloned());
        out.push(Name::root());
        out
    }
}

/// client-go's `InClusterConfig`.
fn in_cluster() -> Result<ApiConfig, String> {
    let host = std::env::var("KUBERNETES_SERVICE_HOST").unwrap_or_default();
    let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_default();
    if host.is_empty() || port.is_empty() {
        return Err("unable to load in-cluster configuration, KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be defined".into());
    }
    let token = std::path::Path::new(client::SA_DIR).join("token");
    std::fs::metadata(&token)
        .map_err(|e| format!("open {}: {}", token.display(), crate::config::go_err(&e)))?;
    let hostport = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut api = ApiConfig::from_url(&format!("https://{hostport}"), true)?;
    let ca = std::path::Path::new(client::SA_DIR).join("ca.crt");
    let ca_s = ca.to_string_lossy().into_owned();
    let tls = match super::forward::tls::client_config(std::slice::from_ref(&ca_s)) {
        Ok(c) => c,
        Err(e) => {
            clog::log(
                Level::Error,
                Some("kubernetes"),
                &format!("Expected to load root CA config from {ca_s}, but got err: {e}"),
            );
            super::forward::tls::client_config(&[])?
        }
    };
    api.tls = Some(tls);
    api.token_file = Some(token);
    Ok(api)
}

impl KubeShared {
    /// CoreDNS's OnStartup: runs the controller and waits for its first lists.
    fn start(&self) {
        if self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Err(e) = client::spawn(self.api.clone(), self.set.clone(), Arc::clone(&self.out)) {
            clog::log(Level::Error, Some("kubernetes"), &e);
            return;
        }
        let start = Instant::now();
        let mut next_log = start + Duration::from_millis(500);
        loop {
            if self.out.snap.load().synced {
                return;
            }
            let now = Instant::now();
            if now >= start + self.startup_timeout {
                clog::log(
                    Level::Warning,
                    Some("kubernetes"),
                    "starting server with unsynced Kubernetes API",
                );
                return;
            }
            if now >= next_log {
                clog::log(
                    Level::Info,
                    Some("kubernetes"),
                    "waiting for Kubernetes API before starting server",
                );
                next_log += Duration::from_millis(500);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The running plugin.
pub struct Kubernetes {
    shared: Arc<KubeShared>,
}

/// The outcome of a query (CoreDNS's `ServeDNS` after the lookups).
enum Outcome {
    /// Records (answer, additional) and TC.
    Answer(Vec<Rr>, Vec<Rr>, bool),
    /// `BackendError` with this rcode: the SOA in authority.
    Backend(u8, Rr),
    /// Pass the query on.
    Next,
    /// An unwritten rcode.
    Rcode(u8),
}

/// Self-lookups: the sync pass records the ones it needs; the parked pass has
/// their replies.
#[derive(Default)]
struct Lookups {
    done: HashMap<(String, u16), Option<answer::Fetched>>,
    wanted: Vec<(String, u16)>,
}

impl Lookups {
    /// Asks the server every lookup the last pass wanted (the parked half).
    async fn fetch(&mut self, ctx: &Ctx<'_>) {
        for (name, qtype) in std::mem::take(&mut self.wanted) {
            let res = match Name::parse(&name).ok_or(()).and_then(|n| {
                crate::server::reentry::prepare(ctx, &n, qtype, ctx.st.depth + 1).map_err(drop)
            }) {
                Ok(l) => l.run().await.as_deref().and_then(answers_of),
                Err(()) => None,
            };
            self.done.insert((name, qtype), res);
        }
    }
}

/// Writes a reply (CoreDNS's `SetReply` with AA): TC, `rcode`, the answer, the SOA
/// in authority when given, and the additional records.
pub(crate) fn write_reply(
    ctx: &mut Ctx<'_>,
    rcode: u8,
    tc: bool,
    answer: &[Rr],
    soa: Option<&Rr>,
    extra: &[Rr],
) -> Flow {
    let mut b = ctx.reply();
    b.set_flags(flags::AA);
    if tc {
        b.set_flags(flags::TC);
    }
    b.set_rcode(rcode);
    for r in answer {
        b.rr_wire(&answer::name_wire(&r.owner), r.rtype, 1, r.ttl, &r.rdata);
    }
    if let Some(s) = soa {
        b.section(SectionKind::Authority);
        b.rr_wire(&answer::name_wire(&s.owner), s.rtype, 1, s.ttl, &s.rdata);
    }
    b.section(SectionKind::Additional);
    for r in extra {
        b.rr_wire(&answer::name_wire(&r.owner), r.rtype, 1, r.ttl, &r.rdata);
    }
    b.finish();
    ctx.written = true;
    Flow::Return(Status::rcode(0))
}

/// A request hook that may need self-lookups: `run` computes the outcome (noting
/// the lookups it lacks); with none missing, `write` answers, else the query parks.
fn answer_now<O>(
    ctx: &mut Ctx<'_>,
    run: impl Fn(&Ctx<'_>, &mut Lookups) -> O,
    write: impl Fn(&mut Ctx<'_>, O) -> Flow,
) -> Flow {
    let mut up = Lookups::default();
    let out = run(ctx, &mut up);
    if up.wanted.is_empty() {
        write(ctx, out)
    } else {
        Flow::Park
    }
}

/// The parked half of [`answer_now`]: asks the server the missing lookups and
/// runs again (at most three rounds).
async fn answer_parked<O>(
    ctx: &mut Ctx<'_>,
    run: impl Fn(&Ctx<'_>, &mut Lookups) -> O,
    write: impl Fn(&mut Ctx<'_>, O) -> Flow,
) -> Flow {
    let mut up = Lookups::default();
    for _ in 0..3 {
        let out = run(ctx, &mut up);
        if up.wanted.is_empty() {
            return write(ctx, out);
        }
        up.fetch(ctx).await;
    }
    Flow::Return(Status::rcode(2))
}

impl Upstream for Lookups {
    fn lookup(&mut self, name: &str, qtype: u16) -> Option<(Vec<Rr>, bool)> {
        let key = (name.to_owned(), qtype);
        match self.done.get(&key) {
            Some(r) => r.clone(),
            None => {
                if !self.wanted.contains(&key) {
                    self.wanted.push(key);
                }
                None
            }
        }
    }
}

/// The answer records of a self-lookup's reply, and its TC bit.
pub(crate) fn answers_of(reply: &[u8]) -> Option<(Vec<Rr>, bool)> {
    let idx = crate::wire::MsgIndex::parse(reply)?;
    let tc = crate::wire::hdr::flags(reply) & flags::TC != 0;
    let order: Vec<usize> = (0..idx.rrs.len())
        .filter(|&i| idx.rrs[i].section == 1)
        .collect();
    let mut full = Vec::new();
    crate::wire::index::rebuild(
        reply,
        &idx,
        &order,
        crate::wire::index::Rebuild {
            compress: false,
            limit: None,
            reserve: 0,
        },
        &mut full,
    );
    let fidx = crate::wire::MsgIndex::parse(&full)?;
    let mut out = Vec::new();
    for r in &fidx.rrs {
        let owner = Name::from_wire(&full[r.start as usize..r.fixed as usize]).ok()?;
        let rdata = full.get(r.fixed as usize + 10..r.end as usize)?;
        out.push(Rr {
            owner: owner.to_string(),
            rtype: r.rtype,
            ttl: r.ttl,
            rdata: rdata.to_vec(),
        });
    }
    Some((out, tc))
}

impl Kubernetes {
    /// Builds it; the first build starts the watcher and waits for it.
    pub fn new(c: &KubernetesConfig) -> Self {
        c.shared.start();
        Self {
            shared: Arc::clone(&c.shared),
        }
    }

    /// The shared state *k8s_external* reads.
    pub fn shared(&self) -> Arc<KubeShared> {
        Arc::clone(&self.shared)
    }

    /// The search path source for *autopath* `@kubernetes`.
    pub fn autopath_source(&self) -> AutoPathSource {
        AutoPathSource(Arc::clone(&self.shared))
    }

    /// Readiness for *ready*: the API has been listed.
    pub fn ready(&self) -> bool {
        self.shared.out.snap.load().synced
    }

    /// The request hook.
    pub fn serve(&self, ctx: &mut Ctx<'_>) -> Flow {
        answer_now(ctx, |c, up| self.outcome(c, up), Self::write)
    }

    /// The parked half: an ExternalName target the server must resolve.
    pub async fn serve_async(&self, ctx: &mut Ctx<'_>) -> Flow {
        answer_parked(ctx, |c, up| self.outcome(c, up), Self::write).await
    }

    fn outcome(&self, ctx: &Ctx<'_>, up: &mut Lookups) -> Outcome {
        let k = &*self.shared;
        let qname = ctx.req.qname.to_name().to_string();
        let name = qname.to_ascii_lowercase();
        let Some(z) = answer::longest_zone(&k.zones, &name) else {
            return Outcome::Next;
        };
        // The zone as the client wrote it.
        let zone = qname[qname.len() - z.len()..].to_owned();
        let snap = k.out.snap.load();
        let params = k.params();
        let l = Lookup {
            snap: &snap,
            p: &params,
        };
        let qtype = ctx.req.qtype;
        let res: Result<(Vec<Rr>, Vec<Rr>, bool), NameError> = match qtype {
            1 | 28 => l
                .address(&qname, &name, &zone, qtype, &[], up)
                .map(|(r, tc)| (r, Vec::new(), tc)),
            16 => l.txt(&qname, &name, &zone).map(|r| (r, Vec::new(), false)),
            5 => l
                .cname(&qname, &name, &zone)
                .map(|r| (r, Vec::new(), false)),
            12 => l.ptr(&qname, &name, &zone).map(|r| (r, Vec::new(), false)),
            15 => l.mx(&name, &zone).map(|()| (Vec::new(), Vec::new(), false)),
            33 => l.srv(&qname, &name, &zone).map(|(r, e)| (r, e, false)),
            6 => Ok((
                if qname == zone {
                    vec![l.soa(&zone)]
                } else {
                    Vec::new()
                },
                Vec::new(),
                false,
            )),
            251 | 252 => return Outcome::Rcode(5),
            2 if name == zone => {
                let (r, e) = l.ns(&qname, &zone);
                Ok((r, e, false))
            }
            _ => l
                .address(&qname, &name, &zone, 1, &[], up)
                .map(|_| (Vec::new(), Vec::new(), false)),
        };
        match res {
            Err(NameError) => {
                if k.fall.through(&ctx.req.qname.name().to_lowercase()) {
                    return Outcome::Next;
                }
                let rcode = if snap.synced { 3 } else { 2 };
                Outcome::Backend(rcode, l.soa(&zone))
            }
            Ok((r, _, _)) if r.is_empty() => Outcome::Backend(0, l.soa(&zone)),
            Ok((r, e, tc)) => Outcome::Answer(r, e, tc),
        }
    }

    fn write(ctx: &mut Ctx<'_>, out: Outcome) -> Flow {
        match out {
            Outcome::Next => Flow::Next,
            Outcome::Rcode(rc) => Flow::Return(Status::rcode(u16::from(rc))),
            Outcome::Answer(a, e, tc) => write_reply(ctx, 0, tc, &a, None, &e),
            Outcome::Backend(rc, soa) => write_reply(ctx, rc, false, &[], Some(&soa), &[]),
        }
    }
}

#[cfg(test)]
mod tests;
