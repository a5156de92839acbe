//! Answers from the snapshot, as CoreDNS's `kubernetes.go` (`Records`,
//! `findServices`, `findPods`, `Services`), `reverse.go`, `ns.go` and the shared
//! `plugin/backend_lookup.go` (A, AAAA, SRV, TXT, PTR, NS, SOA, CNAME) make them.
//!
//! Names are strings in presentation form, fully qualified. As in CoreDNS,
//! `name` is the query name in lower case and `zone` the query's own suffix for
//! the plugin's zone (its case kept): owners are written as the client asked,
//! targets under the zone with the zone as the client wrote it.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;

use super::store::{Address, Endpoints, Port, Service, ServiceImport, Snapshot};

/// CoreDNS's `DNSSchemaVersion`.
pub const SCHEMA_VERSION: &str = "1.1.0";
const MAX_CNAME_CHAIN: usize = 10;

/// What *kubernetes* was configured with that answers depend on.
pub struct Params<'a> {
    pub primary_zone: &'a str,
    /// `namespaces` (empty: all).
    pub namespaces: &'a HashSet<String>,
    pub pods: PodMode,
    pub endpoint_pod_names: bool,
    pub ignore_empty_service: bool,
    pub ttl: u32,
    /// The server's own non-loopback addresses (CoreDNS's `boundIPs`).
    pub local_ips: &'a [IpAddr],
    /// `zonal`: zone-scoped names of headless services.
    pub zonal: bool,
    /// `multicluster`: the zones answered from ServiceImports.
    pub multicluster: &'a [String],
}

/// `pods`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodMode {
    Disabled,
    Insecure,
    Verified,
}

/// A record: owner, type, TTL and RDATA (names uncompressed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rr {
    pub owner: String,
    pub rtype: u16,
    pub ttl: u32,
    pub rdata: Vec<u8>,
}

/// CoreDNS's `msg.Service`, as far as *kubernetes* fills it.
#[derive(Clone, Debug)]
struct Svc {
    host: String,
    port: i32,
    ttl: u32,
    text: Option<&'static str>,
    /// `msg.Domain(Key)`: the name the record stands for.
    domain: String,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Host {
    Cname,
    Txt,
    A(IpAddr),
    Aaaa(IpAddr),
}

impl Svc {
    fn new(host: String, port: i32, ttl: u32, domain: String) -> Self {
        Self {
            host,
            port,
            ttl,
            text: None,
            domain,
        }
    }

    /// `HostType`.
    fn host_type(&self) -> Host {
        match go_parse_ip(&self.host) {
            None if self.text.is_some() => Host::Txt,
            None => Host::Cname,
            Some(ip @ IpAddr::V4(_)) => Host::A(ip),
            Some(ip @ IpAddr::V6(_)) => Host::Aaaa(ip),
        }
    }
}

/// Go's `net.ParseIP` (no zones, no brackets), an IPv4-mapped address as IPv4
/// (what `To4` makes of it: an A record, as CoreDNS writes it).
pub fn go_parse_ip(s: &str) -> Option<IpAddr> {
    let ip: IpAddr = s.parse().ok()?;
    Some(match ip {
        IpAddr::V6(a) => a.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 @ IpAddr::V4(_) => v4,
    })
}

/// A name error (CoreDNS's `errNoItems`, `errNsNotExposed`, `errInvalidRequest`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameError;

/// A self-lookup's answer records and TC bit.
pub type Fetched = (Vec<Rr>, bool);

/// A self-lookup the answer needs (CoreDNS's `Upstream.Lookup`), or its reply.
pub trait Upstream {
    /// The answer records and TC bit of the server's reply to `name`/`qtype`;
    /// `None` when the lookup failed or is not done yet.
    fn lookup(&mut self, name: &str, qtype: u16) -> Option<(Vec<Rr>, bool)>;
}

/// The parsed query name (CoreDNS's `recordRequest`).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Request {
    pub port: String,
    pub protocol: String,
    pub endpoint: String,
    /// The cluster ID of `ENDPOINT.CLUSTER.SERVICE.NS.svc` in a multicluster zone.
    pub cluster: String,
    pub service: String,
    pub namespace: String,
    pub pod_or_svc: String,
    /// `zonal`: the topology zone of a zone-scoped name
    /// (`ZONE.pin|prefer._zone.SERVICE.NS.svc.…`).
    pub zone: String,
    /// The `prefer` directive: a zone without endpoints means all of them.
    pub zone_prefer: bool,
}

/// Labels of `name` (fully qualified) before `zone`'s, or `None` when `name` is
/// not below `zone` (CoreDNS's `TrimZone` error).
pub fn trim_zone<'n>(name: &'n str, zone: &str) -> Option<&'n str> {
    let zl = count_labels(zone);
    let nl = count_labels(name);
    if nl <= zl {
        return None;
    }
    // The first `nl - zl` labels: up to the dot that ends the last of them.
    let keep = nl - zl;
    let end = name
        .match_indices('.')
        .nth(keep - 1)
        .map_or(name.len(), |(i, _)| i);
    Some(&name[..end])
}

/// The name without its final dot (the labels joined by dots; empty for the root).
fn trimmed(name: &str) -> &str {
    name.strip_suffix('.').unwrap_or(name)
}

fn count_labels(name: &str) -> usize {
    let t = trimmed(name);
    if t.is_empty() {
        0
    } else {
        t.bytes().filter(|&b| b == b'.').count() + 1
    }
}

pub fn fqdn(s: &str) -> String {
    if s.ends_with('.') {
        s.to_owned()
    } else {
        format!("{s}.")
    }
}

/// CoreDNS's `plugin.Zones.Matches`: the longest of `zones` holding `name`.
pub fn longest_zone<'z>(zones: &'z [String], name: &str) -> Option<&'z String> {
    zones
        .iter()
        .filter(|z| is_subdomain(z, name))
        .max_by_key(|z| z.len())
}

/// `dns.IsSubDomain(parent, child)`.
pub fn is_subdomain(parent: &str, child: &str) -> bool {
    let (p, c) = (trimmed(parent), trimmed(child));
    if p.is_empty() {
        return true;
    }
    count_labels(parent) <= count_labels(child)
        && p.rsplit('.')
            .zip(c.rsplit('.'))
            .all(|(a, b)| a.eq_ignore_ascii_case(b))
}

/// CoreDNS's `parseRequest`: in a `multicluster` zone two labels before the
/// service are an endpoint and its cluster (unless either starts with `_`);
/// `zonal` names when `zonal` (never in a multicluster zone).
pub fn parse_request(
    name: &str,
    zone: &str,
    multicluster: bool,
    zonal: bool,
) -> Result<Request, NameError> {
    let mut r = Request::default();
    let Some(base) = trim_zone(name, zone) else {
        return Ok(r);
    };
    if base.is_empty() || base == "svc" || base == "pod" {
        return Ok(r);
    }
    // From the right: pod/svc, namespace, service, then an endpoint or port and
    // protocol.
    let mut segs = base.rsplit('.');
    r.pod_or_svc = segs.next().unwrap_or("").to_owned();
    if r.pod_or_svc != "pod" && r.pod_or_svc != "svc" {
        return Err(NameError);
    }
    let Some(ns) = segs.next() else {
        return Ok(r);
    };
    r.namespace = ns.to_owned();
    let Some(svc) = segs.next() else {
        return Ok(r);
    };
    r.service = svc.to_owned();
    match (segs.next(), segs.next(), segs.next()) {
        (None, _, _) => {}
        (Some(ep), None, _) => r.endpoint = ep.to_owned(),
        (Some(proto), Some(port), None)
            if !multicluster || proto.starts_with('_') || port.starts_with('_') =>
        {
            r.protocol = strip_underscore(proto).to_owned();
            r.port = strip_underscore(port).to_owned();
        }
        (Some(cluster), Some(ep), None) => {
            r.cluster = cluster.to_owned();
            r.endpoint = ep.to_owned();
        }
        // A zone-scoped name: the zone is every label left of the directive
        // (zone label values may hold dots); anything else is too long.
        (Some("_zone"), Some(directive), Some(_))
            if zonal && !multicluster && r.pod_or_svc == "svc" =>
        {
            match directive {
                "pin" => {}
                "prefer" => r.zone_prefer = true,
                _ => return Err(NameError),
            }
            // `ZONE.DIRECTIVE._zone.SERVICE.NS.svc`: all left of the fifth dot from the right.
            r.zone = base.rsplitn(6, '.').nth(5).unwrap_or("").to_owned();
        }
        _ => return Err(NameError),
    }
    Ok(r)
}

fn strip_underscore(s: &str) -> &str {
    s.strip_prefix('_').unwrap_or(s)
}

fn matches(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

fn port_proto(a_port: &str, b_port: &str, a_proto: &str, b_proto: &str) -> bool {
    (a_port.is_empty() || matches(a_port, b_port))
        && (a_proto.is_empty() || matches(a_proto, b_proto))
}

/// CoreDNS's `endpointHostname`.
pub fn endpoint_hostname(a: &Address, pod_names: bool) -> String {
    if !a.hostname.is_empty() {
        return a.hostname.clone();
    }
    if pod_names && !a.target.is_empty() {
        return a.target.clone();
    }
    if a.ip.contains('.') {
        return a.ip.replace('.', "-");
    }
    if a.ip.contains(':') {
        let h = a.ip.replace(':', "-");
        if h.ends_with('-') {
            return h + "0";
        }
        return h;
    }
    String::new()
}

/// `dnsutil.IsReverse`: the name ends in `.in-addr.arpa.` or `.ip6.arpa.` (the
/// two zones themselves are not reverse names).
pub fn is_reverse(name: &str) -> bool {
    let ends = |suffix: &str| {
        name.len() >= suffix.len()
            && name.as_bytes()[name.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
    };
    ends(".in-addr.arpa.") || ends(".ip6.arpa.")
}

/// The lookups over one snapshot.
pub struct Lookup<'a> {
    pub snap: &'a Snapshot,
    pub p: &'a Params<'a>,
}

impl Lookup<'_> {
    fn ns_exposed(&self, ns: &str) -> bool {
        (self.p.namespaces.is_empty() || self.p.namespaces.contains(ns))
            && self.snap.namespaces.contains(ns)
    }

    /// `Records`.
    fn records(&self, name: &str, zone: &str) -> Result<Vec<Svc>, NameError> {
        self.records_with(name, zone, true)
    }

    /// `Records`; without `domains` the records' `domain` (which only SRV
    /// answers read) is left empty instead of built per record.
    fn records_with(&self, name: &str, zone: &str, domains: bool) -> Result<Vec<Svc>, NameError> {
        let multicluster = self.multicluster(zone);
        let r = parse_request(name, zone, multicluster, self.p.zonal)?;
        if r.pod_or_svc.is_empty() {
            return Ok(Vec::new());
        }
        if is_reverse(name) {
            return Err(NameError);
        }
        if !self.ns_exposed(&r.namespace) {
            return Err(NameError);
        }
        if r.pod_or_svc == "pod" {
            return self.find_pods(&r, zone);
        }
        if multicluster {
            return self.find_imports(&r, zone, domains);
        }
        self.find_services(&r, zone, domains)
    }

    /// `isMultiClusterZone`: `zone` (a plugin zone) is in a multicluster zone.
    pub fn multicluster(&self, zone: &str) -> bool {
        !self.p.multicluster.is_empty()
            && longest_zone(self.p.multicluster, &zone.to_ascii_lowercase()).is_some()
    }

    /// `findMultiClusterServices`: a ServiceImport's cluster-set IPs, or the
    /// endpoints of every cluster for a headless import or an endpoint name
    /// (`ENDPOINT.CLUSTER.SERVICE...`, whose records are named so).
    fn find_imports(&self, r: &Request, zone: &str, domains: bool) -> Result<Vec<Svc>, NameError> {
        if r.service.is_empty() {
            return Ok(Vec::new());
        }
        let idx = format!("{}.{}", r.service, r.namespace);
        let eps = self.snap.mc_ep.get(&idx).map_or(&[][..], Vec::as_slice);
        let mut found = false;
        let mut out = Vec::new();
        for svc in self.snap.imports.get(&idx).map_or(&[][..], Vec::as_slice) {
            if !matches(&r.namespace, &svc.namespace) || !matches(&r.service, &svc.name) {
                continue;
            }
            if self.p.ignore_empty_service
                && !svc.headless()
                && eps.iter().all(|e| e.ep.addresses.is_empty())
            {
                continue;
            }
            if svc.headless() || !r.endpoint.is_empty() {
                let key = svc.key();
                for ep in eps.iter().filter(|e| e.index == key) {
                    for a in &ep.ep.addresses {
                        let host = endpoint_hostname(a, self.p.endpoint_pod_names);
                        if !r.endpoint.is_empty()
                            && (!matches(&r.cluster, &ep.cluster) || !matches(&r.endpoint, &host))
                        {
                            continue;
                        }
                        for p in &ep.ep.ports {
                            if !port_proto(&r.port, &p.name, &r.protocol, &p.protocol) {
                                continue;
                            }
                            let (c, n, ns) = (&ep.cluster, &svc.name, &svc.namespace);
                            let domain = match (domains, host.is_empty()) {
                                (false, _) => String::new(),
                                (true, true) => format!("{c}.{n}.{ns}.svc.{zone}"),
                                (true, false) => format!("{host}.{c}.{n}.{ns}.svc.{zone}"),
                            };
                            found = true;
                            out.push(Svc::new(a.ip.clone(), p.port, self.p.ttl, domain));
                        }
                    }
                }
                continue;
            }
            let domain = if domains {
                format!("{}.{}.svc.{zone}", svc.name, svc.namespace)
            } else {
                String::new()
            };
            for p in &svc.ports {
                if !port_proto(&r.port, &p.name, &r.protocol, &p.protocol) {
                    continue;
                }
                found = true;
                for ip in &svc.ips {
                    out.push(Svc::new(ip.clone(), p.port, self.p.ttl, domain.clone()));
                }
            }
        }
        if found { Ok(out) } else { Err(NameError) }
    }

    fn find_pods(&self, r: &Request, zone: &str) -> Result<Vec<Svc>, NameError> {
        if self.p.pods == PodMode::Disabled {
            return Err(NameError);
        }
        let podname = &r.service;
        if podname.is_empty() {
            return Ok(Vec::new());
        }
        let domain = format!("{podname}.{}.pod.{zone}", r.namespace);
        let ip = if podname.matches('-').count() == 3 && !podname.contains("--") {
            podname.replace('-', ".")
        } else {
            podname.replace('-', ":")
        };
        if self.p.pods == PodMode::Insecure {
            if go_parse_ip(&ip).is_none() {
                return Err(NameError);
            }
            return Ok(vec![Svc::new(ip, 0, self.p.ttl, domain)]);
        }
        let mut out = Vec::new();
        for p in self.snap.pod_ip.get(&ip).map_or(&[][..], Vec::as_slice) {
            if p.ip == ip && matches(&r.namespace, &p.namespace) {
                out.push(Svc::new(ip.clone(), 0, self.p.ttl, domain.clone()));
            }
        }
        if out.is_empty() {
            return Err(NameError);
        }
        Ok(out)
    }

    fn find_services(&self, r: &Request, zone: &str, domains: bool) -> Result<Vec<Svc>, NameError> {
        if r.service.is_empty() {
            return Ok(Vec::new());
        }
        let idx = format!("{}.{}", r.service, r.namespace);
        let mut found = false;
        let mut out = Vec::new();
        let eps = self.snap.ep.get(&idx).map_or(&[][..], Vec::as_slice);
        for svc in self.snap.svc.get(&idx).map_or(&[][..], Vec::as_slice) {
            if !matches(&r.namespace, &svc.namespace) || !matches(&r.service, &svc.name) {
                continue;
            }
            let domain = if domains {
                format!("{}.{}.svc.{zone}", svc.name, svc.namespace)
            } else {
                String::new()
            };
            if self.p.ignore_empty_service
                && !svc.external()
                && !svc.headless()
                && eps.iter().all(|e| e.addresses.is_empty())
            {
                continue;
            }
            // Zone-scoped names are defined for headless services only.
            if !r.zone.is_empty() && !svc.headless() {
                continue;
            }
            if svc.external() {
                if !r.endpoint.is_empty() || !r.port.is_empty() || !r.protocol.is_empty() {
                    continue;
                }
                let s = Svc::new(svc.external_name.clone(), 0, self.p.ttl, domain);
                if s.host_type() == Host::Cname {
                    out.push(s);
                    found = true;
                }
                continue;
            }
            if svc.headless() || !r.endpoint.is_empty() {
                // A zone-scoped name of a headless service exists whatever its
                // zone holds: no endpoints there is NODATA.
                found |= !r.zone.is_empty();
                let before = out.len();
                self.add_endpoints(r, svc, eps, &r.zone, &domain, domains, &mut out);
                if out.len() == before && r.zone_prefer {
                    self.add_endpoints(r, svc, eps, "", &domain, domains, &mut out);
                }
                found |= out.len() > before;
                continue;
            }
            for p in &svc.ports {
                if !port_proto(&r.port, &p.name, &r.protocol, &p.protocol) {
                    continue;
                }
                found = true;
                for ip in &svc.cluster_ips {
                    out.push(Svc::new(ip.clone(), p.port, self.p.ttl, domain.clone()));
                }
            }
        }
        if found { Ok(out) } else { Err(NameError) }
    }

    /// The endpoint records of `svc` the request selects, in `topo` only when
    /// it is not empty (CoreDNS's `addForZone`).
    #[allow(clippy::too_many_arguments)]
    fn add_endpoints(
        &self,
        r: &Request,
        svc: &super::store::Service,
        eps: &[std::sync::Arc<super::store::Endpoints>],
        topo: &str,
        domain: &str,
        domains: bool,
        out: &mut Vec<Svc>,
    ) {
        for ep in eps {
            if ep.index != svc.key() {
                continue;
            }
            for a in &ep.addresses {
                if !topo.is_empty() && a.zone.as_deref() != Some(topo) {
                    continue;
                }
                // The host name is needed to match an endpoint query or to
                // build the record's domain.
                let host = if domains || !r.endpoint.is_empty() {
                    endpoint_hostname(a, self.p.endpoint_pod_names)
                } else {
                    String::new()
                };
                if !r.endpoint.is_empty() && !matches(&r.endpoint, &host) {
                    continue;
                }
                for p in &ep.ports {
                    if !port_proto(&r.port, &p.name, &r.protocol, &p.protocol) {
                        continue;
                    }
                    let d = if domains {
                        format!("{host}.{domain}")
                    } else {
                        String::new()
                    };
                    out.push(Svc::new(a.ip.clone(), p.port, self.p.ttl, d));
                }
            }
        }
    }

    /// `Services` for `qtype`.
    fn services(&self, name: &str, zone: &str, qtype: u16) -> Result<Vec<Svc>, NameError> {
        match qtype {
            16 => {
                let t = trim_zone(name, zone).unwrap_or("");
                if t == "dns-version" {
                    let mut s = Svc::new(String::new(), 0, 28800, name.to_owned());
                    s.text = Some(SCHEMA_VERSION);
                    return Ok(vec![s]);
                }
                return match self.records(name, zone) {
                    Ok(v) if !v.is_empty() => Ok(Vec::new()),
                    // A zone-scoped name that exists is NODATA for every type.
                    Ok(_)
                        if self.p.zonal
                            && parse_request(name, zone, self.multicluster(zone), true)
                                .is_ok_and(|r| !r.zone.is_empty()) =>
                    {
                        Ok(Vec::new())
                    }
                    _ => Err(NameError),
                };
            }
            2 => {
                return Ok(self
                    .ns_addrs(zone)
                    .into_iter()
                    .map(|(n, ip)| Svc::new(ip.to_string(), 0, self.p.ttl, n))
                    .collect());
            }
            _ => {}
        }
        if is_default_ns(name, zone) {
            return Ok(self
                .ns_addrs(zone)
                .into_iter()
                .filter(|(_, ip)| ip.is_ipv4() == (qtype == 1) && matches!(qtype, 1 | 28))
                .map(|(_, ip)| Svc::new(ip.to_string(), 0, self.p.ttl, name.to_owned()))
                .collect());
        }
        let s = self.records_with(name, zone, qtype == 33)?;
        if qtype != 33 {
            return Ok(s);
        }
        Ok(s.into_iter()
            .filter(|v| v.host_type() != Host::Cname)
            .collect())
    }

    /// `nsAddrs` (internal names): the names and addresses of the services whose
    /// endpoints hold this server's addresses, else `ns.dns.ZONE` for each.
    fn ns_addrs(&self, zone: &str) -> Vec<(String, IpAddr)> {
        self.ns_addrs_mode(zone, false, false)
    }

    /// `nsAddrs(external, headless, zone)`: with `external`, the services' external
    /// IPs (endpoint addresses of headless ones with `headless`) under `SVC.NS.ZONE`.
    pub fn ns_addrs_mode(
        &self,
        zone: &str,
        external: bool,
        headless: bool,
    ) -> Vec<(String, IpAddr)> {
        let mut out = Vec::new();
        let mut found = false;
        for lip in self.p.local_ips {
            for ep in self
                .snap
                .ep_ip
                .get(&lip.to_string())
                .map_or(&[][..], Vec::as_slice)
            {
                found = true;
                for svc in self.snap.svc.get(&ep.index).map_or(&[][..], Vec::as_slice) {
                    let svc_name = if external {
                        format!("{}.{}.{zone}", svc.name, svc.namespace)
                    } else {
                        format!("{}.{}.svc.{zone}", svc.name, svc.namespace)
                    };
                    if svc.headless() && (headless || !external) {
                        for a in &ep.addresses {
                            if let Some(ip) = go_parse_ip(&a.ip) {
                                let host = endpoint_hostname(a, self.p.endpoint_pod_names);
                                out.push((format!("{host}.{svc_name}"), ip));
                            }
                        }
                        continue;
                    }
                    let ips = if external {
                        &svc.external_ips
                    } else {
                        &svc.cluster_ips
                    };
                    for x in ips {
                        if let Some(ip) = go_parse_ip(x) {
                            out.push((svc_name.clone(), ip));
                        }
                    }
                }
            }
        }
        if !found {
            for lip in self.p.local_ips {
                out.push((format!("ns.dns.{zone}"), *lip));
            }
        }
        out
    }

    /// `checkForApex` then A or AAAA (`plugin.A`/`plugin.AAAA`).
    pub fn address(
        &self,
        qname: &str,
        name: &str,
        zone: &str,
        qtype: u16,
        previous: &[Rr],
        up: &mut dyn Upstream,
    ) -> Result<(Vec<Rr>, bool), NameError> {
        let services = if name == zone {
            match self.services(&format!("apex.dns.{zone}"), zone, qtype) {
                Ok(s) => s,
                Err(_) => self.services(name, zone, qtype)?,
            }
        } else {
            self.services(name, zone, qtype)?
        };
        let mut records = Vec::new();
        let mut tc = false;
        let mut dup: Vec<&str> = Vec::new();
        for serv in &services {
            match serv.host_type() {
                Host::Cname => {
                    let target = fqdn(&serv.host);
                    if is_subdomain(name, &target) {
                        continue;
                    }
                    let cname = Rr {
                        owner: qname.to_owned(),
                        rtype: 5,
                        ttl: serv.ttl,
                        rdata: name_wire(&target),
                    };
                    if previous.len() > MAX_CNAME_CHAIN
                        || previous.iter().any(|p| {
                            p.rtype == 5
                                && p.owner.eq_ignore_ascii_case(&cname.owner)
                                && p.rdata == cname.rdata
                        })
                    {
                        continue;
                    }
                    if is_subdomain(zone, &target) {
                        let mut prev = previous.to_vec();
                        prev.push(cname.clone());
                        let lower = target.to_ascii_lowercase();
                        if let Ok((next, t)) = self.address(&target, &lower, zone, qtype, &prev, up)
                        {
                            if !next.is_empty() {
                                records.push(cname);
                                records.extend(next);
                            }
                            tc |= t;
                        }
                        continue;
                    }
                    let Some((answer, t)) = up.lookup(&target, qtype) else {
                        continue;
                    };
                    tc |= t;
                    records.push(cname);
                    records.extend(answer);
                }
                Host::A(ip) | Host::Aaaa(ip)
                    if (qtype == 1) == ip.is_ipv4() && !dup.contains(&serv.host.as_str()) =>
                {
                    dup.push(&serv.host);
                    records.push(addr_rr(qname, ip, serv.ttl));
                }
                _ => {}
            }
        }
        Ok((records, tc))
    }

    /// `plugin.TXT`.
    pub fn txt(&self, qname: &str, name: &str, zone: &str) -> Result<Vec<Rr>, NameError> {
        let services = self.services(name, zone, 16)?;
        let mut out = Vec::new();
        let mut dup = HashSet::new();
        for s in &services {
            if let (Host::Txt, Some(t)) = (s.host_type(), s.text) {
                if dup.insert(t) {
                    let mut rd = vec![t.len() as u8];
                    rd.extend_from_slice(t.as_bytes());
                    out.push(Rr {
                        owner: qname.to_owned(),
                        rtype: 16,
                        ttl: s.ttl,
                        rdata: rd,
                    });
                }
            }
        }
        Ok(out)
    }

    /// `plugin.SRV`: records and their addresses.
    pub fn srv(
        &self,
        qname: &str,
        name: &str,
        zone: &str,
    ) -> Result<(Vec<Rr>, Vec<Rr>), NameError> {
        let services = self.services(name, zone, 33)?;
        // Every service has priority 0 and weight 0 (counted as 100).
        let weight = srv_weight(services.len());
        let (mut records, mut extra) = (Vec::new(), Vec::new());
        let mut dup: HashSet<(String, u16, String)> = HashSet::new();
        for s in &services {
            if s.port == -1 {
                continue;
            }
            let (Host::A(ip) | Host::Aaaa(ip)) = s.host_type() else {
                continue;
            };
            let target = fqdn(&s.domain);
            let port = s.port as u16;
            if dup.insert((target.clone(), port, String::new())) {
                records.push(Rr {
                    owner: qname.to_owned(),
                    rtype: 33,
                    ttl: s.ttl,
                    rdata: srv_rdata(weight, port, &target),
                });
            }
            if dup.insert((target.clone(), 0, s.host.clone())) {
                extra.push(addr_rr(&target, ip, s.ttl));
            }
        }
        Ok((records, extra))
    }

    /// `plugin.PTR` over `Reverse`.
    pub fn ptr(&self, qname: &str, name: &str, zone: &str) -> Result<Vec<Rr>, NameError> {
        let rev = crate::wire::Name::parse(name)
            .as_ref()
            .and_then(crate::plugins::hosts::address_from_reverse);
        let Some(ip) = rev else {
            self.records(name, zone)?;
            return Ok(Vec::new());
        };
        let hosts = self.service_record_for_ip(&ip.to_string());
        if hosts.is_empty() {
            return Err(NameError);
        }
        let mut out = Vec::new();
        let mut dup = HashSet::new();
        for h in hosts {
            if go_parse_ip(&h).is_none() && dup.insert(h.clone()) {
                out.push(Rr {
                    owner: qname.to_owned(),
                    rtype: 12,
                    ttl: self.p.ttl,
                    rdata: name_wire(&fqdn(&h)),
                });
            }
        }
        Ok(out)
    }

    fn service_record_for_ip(&self, ip: &str) -> Vec<String> {
        let zone = self.p.primary_zone;
        let filter = |ns: &str| !self.p.namespaces.is_empty() && !self.ns_exposed(ns);
        if let Some(svc) = self
            .snap
            .svc_ip
            .get(ip)
            .into_iter()
            .flatten()
            .find(|s| !filter(&s.namespace))
        {
            return vec![format!("{}.{}.svc.{zone}", svc.name, svc.namespace)];
        }
        let mut out = Vec::new();
        for ep in self.snap.ep_ip.get(ip).map_or(&[][..], Vec::as_slice) {
            if filter(&ep.namespace) {
                continue;
            }
            for a in &ep.addresses {
                if a.ip == ip {
                    out.push(format!(
                        "{}.{}.svc.{zone}",
                        endpoint_hostname(a, self.p.endpoint_pod_names),
                        ep.index
                    ));
                }
            }
        }
        out
    }

    /// `plugin.NS` at the apex: NS records and their addresses.
    pub fn ns(&self, qname: &str, zone: &str) -> (Vec<Rr>, Vec<Rr>) {
        let (mut records, mut extra) = (Vec::new(), Vec::new());
        let mut seen = HashSet::new();
        for (n, ip) in self.ns_addrs(zone) {
            let target = fqdn(&n);
            extra.push(addr_rr(&target, ip, self.p.ttl));
            if seen.insert(target.clone()) {
                records.push(Rr {
                    owner: qname.to_owned(),
                    rtype: 2,
                    ttl: self.p.ttl,
                    rdata: name_wire(&target),
                });
            }
        }
        (records, extra)
    }

    /// `plugin.CNAME`.
    pub fn cname(&self, qname: &str, name: &str, zone: &str) -> Result<Vec<Rr>, NameError> {
        let s = self.services(name, zone, 5)?;
        Ok(match s.first() {
            Some(f) if go_parse_ip(&f.host).is_none() => vec![Rr {
                owner: qname.to_owned(),
                rtype: 5,
                ttl: f.ttl,
                rdata: name_wire(&fqdn(&f.host)),
            }],
            _ => Vec::new(),
        })
    }

    /// `plugin.MX` (no *kubernetes* record is a mail record): only its error.
    pub fn mx(&self, name: &str, zone: &str) -> Result<(), NameError> {
        self.services(name, zone, 15).map(drop)
    }

    /// The SOA record of `zone` (`plugin.SOA`); its serial is the time of the
    /// last change, of the imports' in a multicluster zone (`Serial`).
    pub fn soa(&self, zone: &str) -> Rr {
        let serial = if self.multicluster(zone) {
            self.snap.modified_mc
        } else {
            self.snap.modified
        };
        self.soa_serial(zone, serial as u32)
    }

    /// The SOA record of `zone` with `serial`.
    fn soa_serial(&self, zone: &str, serial: u32) -> Rr {
        let ttl = self.p.ttl;
        // `ns.dns.ZONE` and `hostmaster.ZONE`: the labels put before the zone's
        // wire form (parsed once), or parsed whole when that would be too long.
        let zw = crate::wire::Name::parse(zone);
        let prefixed = |labels: &[u8], whole: &dyn Fn() -> String| match &zw {
            Some(z) if z.len() + labels.len() <= 255 => {
                let mut v = labels.to_vec();
                v.extend_from_slice(z.wire());
                v
            }
            _ => name_wire(&whole()),
        };
        let mut rd = prefixed(b"\x02ns\x03dns", &|| format!("ns.dns.{zone}"));
        rd.extend_from_slice(&prefixed(b"\x0ahostmaster", &|| {
            format!("hostmaster.{zone}")
        }));
        for v in [serial, 7200, 1800, 86400, ttl] {
            rd.extend_from_slice(&v.to_be_bytes());
        }
        Rr {
            owner: zone.to_owned(),
            rtype: 6,
            ttl: ttl.min(300),
            rdata: rd,
        }
    }
}

impl Lookup<'_> {
    /// CoreDNS's `Transfer` (xfr.go) of `zone` (fully qualified, lower case; any
    /// name in the plugin's zones): the SOA, the apex NS records and their
    /// addresses (TTL 0, as `nsAddrs` leaves them), every exposed service's
    /// records in name order, the SOA again. The SOA alone when `serial` is the
    /// current one (IXFR). A multicluster zone lists its ServiceImports; its
    /// SOA still carries the cluster zones' serial (CoreDNS asks `Serial` with
    /// no zone).
    pub fn transfer(&self, zone: &str, serial: u32) -> Vec<Rr> {
        // `isMultiClusterZone("")`: only the root holds the empty name.
        let no_zone_mc = self.p.multicluster.iter().any(|z| z == ".");
        let current = if no_zone_mc {
            self.snap.modified_mc
        } else {
            self.snap.modified
        } as u32;
        let soa = self.soa_serial(zone, current);
        if serial != 0 && current == serial {
            return vec![soa];
        }
        let ttl = self.p.ttl;
        let mut out = vec![soa.clone()];
        let addrs = self.ns_addrs(zone);
        let mut seen = HashSet::new();
        for (n, _) in &addrs {
            if seen.insert(n.as_str()) {
                out.push(Rr {
                    owner: zone.to_owned(),
                    rtype: 2,
                    ttl,
                    rdata: name_wire(&fqdn(n)),
                });
            }
        }
        for (n, ip) in &addrs {
            out.push(addr_rr(&fqdn(n), *ip, 0));
        }
        if self.multicluster(zone) {
            let mut imports: Vec<&Arc<ServiceImport>> =
                self.snap.imports.values().flatten().collect();
            imports.sort_by(|a, b| (&a.name, &a.namespace).cmp(&(&b.name, &b.namespace)));
            for i in imports {
                if self.ns_exposed(&i.namespace) {
                    self.transfer_import(i, zone, &mut out);
                }
            }
        } else {
            let mut services: Vec<&Arc<Service>> = self.snap.svc.values().flatten().collect();
            services.sort_by(|a, b| (&a.name, &a.namespace).cmp(&(&b.name, &b.namespace)));
            for svc in services {
                if self.ns_exposed(&svc.namespace) {
                    self.transfer_service(svc, zone, &mut out);
                }
            }
        }
        out.push(soa);
        out
    }

    /// One service's records (`transferServices`): its cluster IPs with an SRV
    /// record per port, a headless service's endpoints, an ExternalName CNAME.
    fn transfer_service(&self, svc: &Service, zone: &str, out: &mut Vec<Rr>) {
        let base = format!("{}.{}.svc.{zone}", svc.name, svc.namespace);
        match svc.kind.as_str() {
            "ClusterIP" | "NodePort" | "LoadBalancer" => {
                if svc
                    .cluster_ips
                    .first()
                    .and_then(|c| go_parse_ip(c))
                    .is_some()
                {
                    self.transfer_ips(out, &base, &svc.cluster_ips, &svc.ports);
                    return;
                }
                for ep in self.snap.ep.get(&svc.key()).map_or(&[][..], Vec::as_slice) {
                    self.transfer_endpoints(out, &base, ep);
                }
            }
            "ExternalName" if go_parse_ip(&svc.external_name).is_none() => out.push(Rr {
                owner: base,
                rtype: 5,
                ttl: self.p.ttl,
                rdata: name_wire(&fqdn(&svc.external_name)),
            }),
            _ => {}
        }
    }

    /// One ServiceImport's records (`transferMultiClusterServices`): its
    /// cluster-set IPs and SRV records, or for a headless import the endpoints
    /// of every cluster, named as a service's are (no cluster label, unlike the
    /// answers).
    fn transfer_import(&self, svc: &ServiceImport, zone: &str, out: &mut Vec<Rr>) {
        let base = format!("{}.{}.svc.{zone}", svc.name, svc.namespace);
        if svc.ips.first().and_then(|c| go_parse_ip(c)).is_some() {
            self.transfer_ips(out, &base, &svc.ips, &svc.ports);
            return;
        }
        for ep in self
            .snap
            .mc_ep
            .get(&svc.key())
            .map_or(&[][..], Vec::as_slice)
        {
            self.transfer_endpoints(out, &base, &ep.ep);
        }
    }

    /// A record per address at `base`, then an SRV record per port (and one
    /// under `_PORT._PROTO` for a named port) to the address records' name.
    fn transfer_ips(&self, out: &mut Vec<Rr>, base: &str, ips: &[String], ports: &[Port]) {
        let mut host = String::new();
        for ip in ips {
            host = self.emit(out, base, ip);
        }
        for p in ports {
            out.push(self.srv_rr(base.to_owned(), 100, p.port, &host));
            // Unnamed ports have no SRV name of their own.
            if !p.name.is_empty() {
                out.push(self.srv_rr(named_port(base, p), 100, p.port, &host));
            }
        }
    }

    /// An EndpointSlice's addresses: each at `base` and at its endpoint name,
    /// with an SRV record per named port (weights split over the slice).
    fn transfer_endpoints(&self, out: &mut Vec<Rr>, base: &str, ep: &Endpoints) {
        let weight = srv_weight(ep.addresses.len());
        for a in &ep.addresses {
            self.emit(out, base, &a.ip);
            let h = endpoint_hostname(a, self.p.endpoint_pod_names);
            let owner = if h.is_empty() {
                base.to_owned()
            } else {
                format!("{h}.{base}")
            };
            let host = self.emit(out, &owner, &a.ip);
            for p in ep.ports.iter().filter(|p| !p.name.is_empty()) {
                out.push(self.srv_rr(named_port(base, p), weight, p.port, &host));
            }
        }
    }

    /// `emitAddressRecord`: an A or AAAA record when `host` is an address; the
    /// owner is what an SRV record then points to ("" otherwise).
    fn emit(&self, out: &mut Vec<Rr>, owner: &str, host: &str) -> String {
        match go_parse_ip(host) {
            Some(ip) => {
                out.push(addr_rr(owner, ip, self.p.ttl));
                owner.to_owned()
            }
            None => String::new(),
        }
    }

    fn srv_rr(&self, owner: String, weight: u16, port: i32, target: &str) -> Rr {
        Rr {
            owner,
            rtype: 33,
            ttl: self.p.ttl,
            rdata: srv_rdata(weight, port as u16, &fqdn(target)),
        }
    }
}

/// `_PORT._PROTO.BASE` in lower case.
fn named_port(base: &str, p: &Port) -> String {
    format!(
        "_{}._{}.{base}",
        p.name.to_lowercase(),
        p.protocol.to_lowercase()
    )
}

/// A record source for *k8s_external* (CoreDNS's `msg.Service` as `External`
/// fills it): host (an address or a name), port, and the name it stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtSvc {
    pub host: String,
    pub port: i32,
    pub domain: String,
}

impl ExtSvc {
    /// The address, when the host is one (else it is a name: a CNAME).
    pub fn ip(&self) -> Option<IpAddr> {
        go_parse_ip(&self.host)
    }
}

impl Lookup<'_> {
    /// CoreDNS's `Kubernetes.External`: the services (or, for a reverse PTR, the
    /// `NAME.NAMESPACE` hosts) behind `name` in *k8s_external*'s `zone`, and the rcode.
    pub fn external(
        &self,
        name: &str,
        zone: &str,
        qtype: u16,
        headless: bool,
    ) -> (Vec<ExtSvc>, u8) {
        if qtype == 12 {
            let rev = crate::wire::Name::parse(name)
                .as_ref()
                .and_then(crate::plugins::hosts::address_from_reverse);
            if let Some(ip) = rev {
                let ip = ip.to_string();
                let out: Vec<ExtSvc> = self
                    .snap
                    .svc_ext_ip
                    .get(&ip)
                    .into_iter()
                    .flatten()
                    .filter(|s| self.p.namespaces.is_empty() || self.ns_exposed(&s.namespace))
                    .map(|s| ExtSvc {
                        host: format!("{}.{}", s.name, s.namespace),
                        port: 0,
                        domain: String::new(),
                    })
                    .collect();
                let rc = if out.is_empty() { 3 } else { 0 };
                return (out, rc);
            }
        }
        let base = trim_zone(name, zone).unwrap_or("");
        let segs: Vec<&str> = if base.is_empty() {
            Vec::new()
        } else {
            base.split('.').collect()
        };
        let mut last = segs.len() as isize - 1;
        if last < 0 {
            return (Vec::new(), 2);
        }
        let namespace = segs[last as usize];
        if !self.ns_exposed(namespace) {
            return (Vec::new(), 3);
        }
        last -= 1;
        if last < 0 {
            return (Vec::new(), 0);
        }
        let service = segs[last as usize];
        last -= 1;
        let (mut port, mut protocol, mut endpoint) = ("", "", "");
        match last {
            0 => {
                endpoint = strip_underscore(segs[0]);
                last -= 1;
            }
            1 => {
                protocol = strip_underscore(segs[1]);
                port = strip_underscore(segs[0]);
                last -= 2;
            }
            _ => {}
        }
        if last != -1 {
            return (Vec::new(), 3);
        }
        let idx = format!("{service}.{namespace}");
        let mut rcode = 3;
        let mut out = Vec::new();
        for svc in self.snap.svc.get(&idx).map_or(&[][..], Vec::as_slice) {
            if namespace != svc.namespace || service != svc.name {
                continue;
            }
            if headless && svc.external_ips.is_empty() && (svc.headless() || !endpoint.is_empty()) {
                for ep in self.snap.ep.get(&idx).map_or(&[][..], Vec::as_slice) {
                    if ep.index != svc.key() {
                        continue;
                    }
                    for a in &ep.addresses {
                        let host = endpoint_hostname(a, self.p.endpoint_pod_names);
                        if !endpoint.is_empty() && !matches(endpoint, &host) {
                            continue;
                        }
                        for p in &ep.ports {
                            if !port_proto(port, &p.name, protocol, &p.protocol) {
                                continue;
                            }
                            rcode = 0;
                            out.push(ExtSvc {
                                host: a.ip.clone(),
                                port: p.port,
                                domain: format!("{host}.{}.{}.{zone}", svc.name, svc.namespace),
                            });
                        }
                    }
                }
                continue;
            }
            for ip in &svc.external_ips {
                for p in &svc.ports {
                    if !port_proto(port, &p.name, protocol, &p.protocol) {
                        continue;
                    }
                    rcode = 0;
                    out.push(ExtSvc {
                        host: ip.clone(),
                        port: p.port,
                        domain: format!("{}.{}.{zone}", svc.name, svc.namespace),
                    });
                }
            }
        }
        if qtype == 12 {
            return (Vec::new(), rcode);
        }
        (out, rcode)
    }
}

/// `isDefaultNS`: `name` is `ns.dns.` followed by `zone` (as written).
fn is_default_ns(name: &str, zone: &str) -> bool {
    name.starts_with("ns.dns.") && name.find(zone) == Some(7)
}

/// The weight every one of `n` records of priority 0 and weight 0 (counted as
/// 100) gets: `floor(100 / (100 n) * 100)`, at least 1 (`backend_lookup.go`).
pub fn srv_weight(n: usize) -> u16 {
    let total = 100 * n.max(1);
    (((100.0 / total as f64) * 100.0).floor() as u16).max(1)
}

/// SRV RDATA: priority 0, `weight`, `port`, `target`.
pub fn srv_rdata(weight: u16, port: u16, target: &str) -> Vec<u8> {
    let mut rd = Vec::with_capacity(6 + target.len() + 2);
    rd.extend_from_slice(&0u16.to_be_bytes());
    rd.extend_from_slice(&weight.to_be_bytes());
    rd.extend_from_slice(&port.to_be_bytes());
    rd.extend_from_slice(&name_wire(target));
    rd
}

pub fn addr_rr(owner: &str, ip: IpAddr, ttl: u32) -> Rr {
    match ip {
        IpAddr::V4(a) => Rr {
            owner: owner.to_owned(),
            rtype: 1,
            ttl,
            rdata: a.octets().to_vec(),
        },
        IpAddr::V6(a) => Rr {
            owner: owner.to_owned(),
            rtype: 28,
            ttl,
            rdata: a.octets().to_vec(),
        },
    }
}

/// The wire form of a name; a name that does not parse becomes the root (never
/// reached with API data, which the API server validates).
pub fn name_wire(s: &str) -> Vec<u8> {
    crate::wire::Name::parse(s).map_or_else(|| vec![0], |n| n.wire().to_vec())
}
