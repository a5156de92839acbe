//! The objects *kubernetes* answers from, as CoreDNS's informers keep them
//! (`plugin/kubernetes/object`): services, endpoints (one per EndpointSlice, ready
//! addresses only), namespaces and, for `pods verified`, pods. The watcher owns the
//! [`Objects`]; queries read an immutable [`Snapshot`] with CoreDNS's indexes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde_json::Value;

/// A service or endpoint port (`Port: -1` when the object lists none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Port {
    pub name: String,
    pub port: i32,
    pub protocol: String,
}

/// CoreDNS's `object.Service`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    pub version: String,
    pub name: String,
    pub namespace: String,
    /// `spec.type` (`ClusterIP` when unset).
    pub kind: String,
    pub external_name: String,
    pub cluster_ips: Vec<String>,
    pub ports: Vec<Port>,
    /// `spec.externalIPs`, then the load balancer's ingress IPs or host names.
    pub external_ips: Vec<String>,
}

impl Service {
    /// `clusterIP: None`.
    pub fn headless(&self) -> bool {
        self.cluster_ips.first().is_some_and(|c| c == "None")
    }

    /// `ExternalName` type.
    pub fn external(&self) -> bool {
        self.kind == "ExternalName"
    }

    /// The index key (`name.namespace`).
    pub fn key(&self) -> String {
        format!("{}.{}", self.name, self.namespace)
    }
}

/// One ready endpoint address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Address {
    pub ip: String,
    pub hostname: String,
    /// The target's name when it is shorter than 64 octets (CoreDNS's
    /// `TargetRefName`).
    pub target: String,
    /// Its topology zone, lower-cased (kept only with `zonal`).
    pub zone: Option<Box<str>>,
}

/// CoreDNS's `object.Endpoints` made from one EndpointSlice (one subset).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoints {
    pub version: String,
    pub name: String,
    pub namespace: String,
    /// `service-name.namespace` from the `kubernetes.io/service-name` label.
    pub index: String,
    pub addresses: Vec<Address>,
    pub ports: Vec<Port>,
    /// The `endpoints.kubernetes.io/last-change-trigger-time` annotation.
    pub trigger: Option<String>,
}

/// CoreDNS's `object.ServiceImport` (MCS API `multicluster.x-k8s.io/v1alpha1`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceImport {
    pub version: String,
    pub name: String,
    pub namespace: String,
    /// `spec.type`: `ClusterSetIP` or `Headless`.
    pub kind: String,
    /// `spec.ips`.
    pub ips: Vec<String>,
    /// `spec.ports` (no placeholder when empty, unlike a service's).
    pub ports: Vec<Port>,
}

impl ServiceImport {
    /// `Headless`.
    pub fn headless(&self) -> bool {
        self.kind == "Headless"
    }

    /// The index key (`name.namespace`).
    pub fn key(&self) -> String {
        format!("{}.{}", self.name, self.namespace)
    }
}

/// CoreDNS's `object.MultiClusterEndpoints`: an EndpointSlice labelled
/// `multicluster.kubernetes.io/service-name`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct McEndpoints {
    /// The slice as an ordinary one (its `index` from `kubernetes.io/service-name`,
    /// which only the programming latency reads).
    pub ep: Endpoints,
    /// `multicluster.kubernetes.io/source-cluster`.
    pub cluster: String,
    /// `SERVICE.NAMESPACE` from `multicluster.kubernetes.io/service-name`.
    pub index: String,
}

/// CoreDNS's `object.Pod`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pod {
    pub version: String,
    pub ip: String,
    pub name: String,
    pub namespace: String,
    /// The pod's labels (for `kubernetes/client-label/KEY`).
    pub labels: Vec<(String, String)>,
}

/// The resources watched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Services,
    Endpoints,
    Namespaces,
    Pods,
    /// `multicluster`: the MCS API's ServiceImports.
    ServiceImports,
    /// `multicluster`: EndpointSlices labelled `multicluster.kubernetes.io/service-name`.
    McEndpoints,
}

impl Kind {
    /// The API path that lists it in every namespace.
    pub fn path(self) -> &'static str {
        match self {
            Self::Services => "/api/v1/services",
            Self::Endpoints => "/apis/discovery.k8s.io/v1/endpointslices",
            Self::Namespaces => "/api/v1/namespaces",
            Self::Pods => "/api/v1/pods",
            Self::ServiceImports => "/apis/multicluster.x-k8s.io/v1alpha1/serviceimports",
            Self::McEndpoints => "/apis/discovery.k8s.io/v1/endpointslices",
        }
    }
}

/// A watched object, converted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Object {
    Service(Arc<Service>),
    Endpoints(Arc<Endpoints>),
    Namespace(String),
    Pod(Arc<Pod>),
    Import(Arc<ServiceImport>),
    McEndpoints(Arc<McEndpoints>),
}

fn s(v: &Value, path: &[&str]) -> String {
    let mut cur = v;
    for p in path {
        match cur.get(p) {
            Some(n) => cur = n,
            None => return String::new(),
        }
    }
    cur.as_str().unwrap_or("").to_owned()
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|x| x.as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The ports as listed, a missing port number as `missing`.
fn port_list(v: Option<&Value>, missing: i32) -> Vec<Port> {
    v.and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .map(|p| Port {
            name: s(p, &["name"]),
            port: p
                .get("port")
                .and_then(Value::as_i64)
                .and_then(|n| i32::try_from(n).ok())
                .unwrap_or(missing),
            protocol: s(p, &["protocol"]),
        })
        .collect()
}

/// A service's or EndpointSlice's ports: one with port -1 when none are listed
/// (CoreDNS's sentinel).
fn ports(v: Option<&Value>) -> Vec<Port> {
    let list = port_list(v, -1);
    if list.is_empty() {
        return vec![Port {
            name: String::new(),
            port: -1,
            protocol: String::new(),
        }];
    }
    list
}

/// The object's `namespace/name` (the store key).
pub fn key_of(v: &Value) -> String {
    let ns = s(v, &["metadata", "namespace"]);
    let name = s(v, &["metadata", "name"]);
    if ns.is_empty() {
        name
    } else {
        format!("{ns}/{name}")
    }
}

/// Converts an API object of `kind` (CoreDNS's `ToService`, `EndpointSliceToEndpoints`,
/// `ToNamespace`, `ToPod`). `None`: a pod being deleted (CoreDNS skips the event).
pub fn convert(kind: Kind, v: &Value, zonal: bool) -> Option<Object> {
    let version = s(v, &["metadata", "resourceVersion"]);
    let name = s(v, &["metadata", "name"]);
    let namespace = s(v, &["metadata", "namespace"]);
    Some(match kind {
        Kind::Services => {
            let spec = v.get("spec").unwrap_or(&Value::Null);
            let mut cluster_ips = strings(spec.get("clusterIPs"));
            if cluster_ips.is_empty() {
                cluster_ips = vec![s(spec, &["clusterIP"])];
            }
            let mut external_ips = strings(spec.get("externalIPs"));
            if let Some(ing) = v
                .pointer("/status/loadBalancer/ingress")
                .and_then(Value::as_array)
            {
                for i in ing {
                    let ip = s(i, &["ip"]);
                    external_ips.push(if ip.is_empty() {
                        s(i, &["hostname"])
                    } else {
                        ip
                    });
                }
            }
            let kind = match spec.get("type").and_then(Value::as_str) {
                Some(t) if !t.is_empty() => t.to_owned(),
                _ => "ClusterIP".to_owned(),
            };
            Object::Service(Arc::new(Service {
                version,
                name,
                namespace,
                kind,
                external_name: s(spec, &["externalName"]),
                cluster_ips,
                ports: ports(spec.get("ports")),
                external_ips,
            }))
        }
        Kind::ServiceImports => {
            let spec = v.get("spec").unwrap_or(&Value::Null);
            // As listed: no sentinel, a missing port is 0 (`mcs.ServicePort`).
            let ports = port_list(spec.get("ports"), 0);
            Object::Import(Arc::new(ServiceImport {
                version,
                name,
                namespace,
                kind: s(spec, &["type"]),
                ips: strings(spec.get("ips")),
                ports,
            }))
        }
        Kind::McEndpoints => {
            let Some(Object::Endpoints(ep)) = convert(Kind::Endpoints, v, false) else {
                return None;
            };
            let label = |k: &str| {
                v.pointer("/metadata/labels")
                    .map(|l| s(l, &[k]))
                    .unwrap_or_default()
            };
            Object::McEndpoints(Arc::new(McEndpoints {
                cluster: label("multicluster.kubernetes.io/source-cluster"),
                index: format!(
                    "{}.{}",
                    label("multicluster.kubernetes.io/service-name"),
                    ep.namespace
                ),
                ep: Arc::unwrap_or_clone(ep),
            }))
        }
        Kind::Endpoints => {
            let svc = v
                .pointer("/metadata/labels/kubernetes.io~1service-name")
                .and_then(Value::as_str)
                .unwrap_or("");
            let mut addresses = Vec::new();
            for e in v
                .get("endpoints")
                .and_then(Value::as_array)
                .map_or(&[][..], Vec::as_slice)
            {
                // A missing `ready` counts as ready.
                if e.pointer("/conditions/ready").and_then(Value::as_bool) == Some(false) {
                    continue;
                }
                let target = s(e, &["targetRef", "name"]);
                let zone = e
                    .get("zone")
                    .and_then(Value::as_str)
                    .filter(|_| zonal)
                    .map(|z| z.to_lowercase().into_boxed_str());
                for a in strings(e.get("addresses")) {
                    addresses.push(Address {
                        ip: a,
                        hostname: s(e, &["hostname"]),
                        target: if target.len() < 64 {
                            target.clone()
                        } else {
                            String::new()
                        },
                        zone: zone.clone(),
                    });
                }
            }
            Object::Endpoints(Arc::new(Endpoints {
                version,
                index: format!("{svc}.{namespace}"),
                name,
                namespace,
                addresses,
                ports: ports(v.get("ports")),
                trigger: v
                    .pointer(
                        "/metadata/annotations/endpoints.kubernetes.io~1last-change-trigger-time",
                    )
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            }))
        }
        Kind::Namespaces => Object::Namespace(name),
        Kind::Pods => {
            if v.pointer("/metadata/deletionTimestamp")
                .is_some_and(|t| !t.is_null())
            {
                return None;
            }
            let labels = v
                .pointer("/metadata/labels")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, l)| (k.clone(), l.as_str().unwrap_or("").to_owned()))
                        .collect()
                })
                .unwrap_or_default();
            Object::Pod(Arc::new(Pod {
                version,
                ip: s(v, &["status", "podIP"]),
                name,
                namespace,
                labels,
            }))
        }
    })
}

/// What the watcher holds, by store key per kind.
#[derive(Default)]
pub struct Objects {
    /// A change *k8s_external* answers could show happened (CoreDNS's
    /// `updateExtModified`); the watcher reads and clears it.
    pub ext_changed: bool,
    /// The same for the multicluster zones' answers (CoreDNS's
    /// `updateMultiClusterModified`: an import or its endpoints updated).
    pub mc_changed: bool,
    pub services: BTreeMap<String, Arc<Service>>,
    pub imports: BTreeMap<String, Arc<ServiceImport>>,
    pub mc_endpoints: BTreeMap<String, Arc<McEndpoints>>,
    pub endpoints: BTreeMap<String, Arc<Endpoints>>,
    pub namespaces: BTreeMap<String, String>,
    pub pods: BTreeMap<String, Arc<Pod>>,
}

/// What a change did to the answers (CoreDNS's `updateModified` and its
/// `detectChanges` rules).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// The answers may differ: the SOA serial moves.
    Modified,
    /// Nothing an answer shows changed.
    Same,
}

impl Objects {
    /// Adds or replaces the object at `key`.
    pub fn put(&mut self, key: String, o: Object) -> Change {
        match o {
            Object::Service(n) => {
                let old = self.services.insert(key, Arc::clone(&n));
                match old.as_deref() {
                    None => {
                        self.ext_changed |= !n.external_ips.is_empty();
                        Change::Modified
                    }
                    Some(o) if o.version == n.version => Change::Same,
                    Some(o) => {
                        let ports = o.ports != n.ports;
                        self.ext_changed |= ports || o.external_ips != n.external_ips;
                        if ports || o.external_name != n.external_name {
                            Change::Modified
                        } else {
                            Change::Same
                        }
                    }
                }
            }
            Object::Endpoints(n) => {
                let old = self.endpoints.insert(key, Arc::clone(&n));
                changed(old.as_deref(), &n, |a, b| {
                    a.version != b.version && !endpoints_equivalent(a, b)
                })
            }
            // An added import or slice moves the cluster zones' serial (CoreDNS's
            // `Add`), an update the multicluster zones' serial.
            Object::Import(n) => {
                let old = self.imports.insert(key, Arc::clone(&n));
                self.mc_update(old.map(|o| {
                    (
                        o.version == n.version,
                        o.kind == n.kind && o.ports == n.ports,
                    )
                }))
            }
            Object::McEndpoints(n) => {
                let old = self.mc_endpoints.insert(key, Arc::clone(&n));
                self.mc_update(old.map(|o| {
                    (
                        o.ep.version == n.ep.version,
                        endpoints_equivalent(&o.ep, &n.ep) && o.cluster == n.cluster,
                    )
                }))
            }
            Object::Namespace(name) => {
                // CoreDNS's namespace informer has no event handlers: namespaces
                // never move the SOA serial.
                self.namespaces.insert(key, name);
                Change::Same
            }
            Object::Pod(n) => {
                let old = self.pods.insert(key, Arc::clone(&n));
                changed(old.as_deref(), &n, |a, b| {
                    a.version != b.version && a.ip != b.ip
                })
            }
        }
    }

    /// Removes the object of `kind` at `key`.
    pub fn remove(&mut self, kind: Kind, key: &str) -> Change {
        let gone = match kind {
            Kind::Services => match self.services.remove(key) {
                Some(o) => {
                    self.ext_changed |= !o.external_ips.is_empty();
                    true
                }
                None => false,
            },
            Kind::Endpoints => self.endpoints.remove(key).is_some(),
            Kind::Namespaces => {
                self.namespaces.remove(key);
                false
            }
            Kind::Pods => self.pods.remove(key).is_some(),
            Kind::ServiceImports => self.imports.remove(key).is_some(),
            Kind::McEndpoints => self.mc_endpoints.remove(key).is_some(),
        };
        if gone { Change::Modified } else { Change::Same }
    }

    /// Replaces every object of `kind` (a relist). Modified when anything differs.
    pub fn replace(&mut self, kind: Kind, list: Vec<(String, Object)>) -> Change {
        fn stale<V>(m: &BTreeMap<String, V>, keep: &HashSet<String>) -> Vec<String> {
            m.keys().filter(|k| !keep.contains(*k)).cloned().collect()
        }
        let keep: HashSet<String> = list.iter().map(|(k, _)| k.clone()).collect();
        let mut ch = Change::Same;
        for (k, o) in list {
            if self.put(k, o) == Change::Modified {
                ch = Change::Modified;
            }
        }
        let gone = match kind {
            Kind::Services => stale(&self.services, &keep),
            Kind::Endpoints => stale(&self.endpoints, &keep),
            Kind::Namespaces => stale(&self.namespaces, &keep),
            Kind::Pods => stale(&self.pods, &keep),
            Kind::ServiceImports => stale(&self.imports, &keep),
            Kind::McEndpoints => stale(&self.mc_endpoints, &keep),
        };
        for k in gone {
            if self.remove(kind, &k) == Change::Modified {
                ch = Change::Modified;
            }
        }
        ch
    }

    /// A multicluster object put (CoreDNS's `detectChanges`): an addition moves
    /// the cluster zones' serial; an update at a new version that answers
    /// differently moves the multicluster serial. `old`: the object there
    /// before had the same version, and answered the same.
    fn mc_update(&mut self, old: Option<(bool, bool)>) -> Change {
        match old {
            None => Change::Modified,
            Some((same_version, same)) => {
                self.mc_changed |= !same_version && !same;
                Change::Same
            }
        }
    }

    /// The indexes queries read.
    pub fn snapshot(&self, synced: bool, modified: [i64; 3]) -> Snapshot {
        let [modified, modified_ext, modified_mc] = modified;
        let mut snap = Snapshot {
            synced,
            modified,
            modified_ext,
            modified_mc,
            ..Snapshot::default()
        };
        for i in self.imports.values() {
            snap.imports.entry(i.key()).or_default().push(Arc::clone(i));
        }
        for e in self.mc_endpoints.values() {
            snap.mc_ep
                .entry(e.index.clone())
                .or_default()
                .push(Arc::clone(e));
        }
        for svc in self.services.values() {
            snap.svc.entry(svc.key()).or_default().push(Arc::clone(svc));
            for ip in &svc.cluster_ips {
                if ip != "None" && !ip.is_empty() {
                    snap.svc_ip
                        .entry(ip.clone())
                        .or_default()
                        .push(Arc::clone(svc));
                }
            }
        }
        for ep in self.endpoints.values() {
            snap.ep
                .entry(ep.index.clone())
                .or_default()
                .push(Arc::clone(ep));
            let mut seen = HashSet::new();
            for a in &ep.addresses {
                if seen.insert(&a.ip) {
                    snap.ep_ip
                        .entry(a.ip.clone())
                        .or_default()
                        .push(Arc::clone(ep));
                }
            }
        }
        snap.namespaces = self.namespaces.values().cloned().collect();
        for p in self.pods.values() {
            if !p.ip.is_empty() {
                snap.pod_ip
                    .entry(p.ip.clone())
                    .or_default()
                    .push(Arc::clone(p));
            }
        }
        snap
    }
}

/// CoreDNS's `endpointsEquivalent` for one slice: the same addresses (IP,
/// hostname, zone) and ports.
fn endpoints_equivalent(a: &Endpoints, b: &Endpoints) -> bool {
    a.addresses
        .iter()
        .map(|x| (&x.ip, &x.hostname, &x.zone))
        .eq(b.addresses.iter().map(|x| (&x.ip, &x.hostname, &x.zone)))
        && a.ports == b.ports
}

fn changed<T>(old: Option<&T>, new: &T, differs: impl Fn(&T, &T) -> bool) -> Change {
    match old {
        None => Change::Modified,
        Some(o) if differs(o, new) => Change::Modified,
        Some(_) => Change::Same,
    }
}

/// CoreDNS's informer indexes, frozen.
#[derive(Default)]
pub struct Snapshot {
    /// Every watched resource has been listed once (CoreDNS's `HasSynced`).
    pub synced: bool,
    /// Unix time of the last change an answer could show (the SOA serial).
    pub modified: i64,
    /// The same for *k8s_external*'s answers (external IPs).
    pub modified_ext: i64,
    /// The same for the `multicluster` zones (0 until an import or its
    /// endpoints are updated, as in CoreDNS).
    pub modified_mc: i64,
    /// `name.namespace` → ServiceImports.
    pub imports: HashMap<String, Vec<Arc<ServiceImport>>>,
    /// `service.namespace` (the MCS label) → multicluster endpoints.
    pub mc_ep: HashMap<String, Vec<Arc<McEndpoints>>>,
    /// External IP → services.
    pub svc_ext_ip: HashMap<String, Vec<Arc<Service>>>,
    /// `name.namespace` → services.
    pub svc: HashMap<String, Vec<Arc<Service>>>,
    /// Cluster IP → services.
    pub svc_ip: HashMap<String, Vec<Arc<Service>>>,
    /// `service.namespace` → endpoints.
    pub ep: HashMap<String, Vec<Arc<Endpoints>>>,
    /// Address → endpoints holding it.
    pub ep_ip: HashMap<String, Vec<Arc<Endpoints>>>,
    /// Namespace names (those the `namespace_labels` selector keeps).
    pub namespaces: HashSet<String>,
    /// Pod IP → pods (`pods verified`).
    pub pod_ip: HashMap<String, Vec<Arc<Pod>>>,
}

/// Go's `time.Parse(time.RFC3339Nano, s)` as Unix seconds (with fraction).
pub fn parse_rfc3339(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    let mut i = 19;
    let mut frac = 0.0;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
        frac = format!("0.{}", &s[start..i]).parse().ok()?;
    }
    let offset = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        b'+' | b'-' if i + 6 == b.len() && b[i + 3] == b':' => {
            let o = num(i + 1..i + 3)? * 3600 + num(i + 4..i + 6)? * 60;
            if b[i] == b'+' { o } else { -o }
        }
        _ => return None,
    };
    let days = crate::zone::rdata::days_from_civil(y, mo, d);
    Some((days * 86400 + h * 3600 + mi * 60 + sec - offset) as f64 + frac)
}
