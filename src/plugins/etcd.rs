//! *etcd*: SkyDNS service discovery from etcd v3 (plugins.md §etcd), asked per
//! query as CoreDNS's plugin asks it (no watch, no cache of its own).
//!
//! A name's services are the JSON values under `/PATH/<labels reversed>`: the
//! keys below it (a prefix read), else the key itself; `*` and `any` labels
//! match any key segment. The answers are CoreDNS's `plugin/backend_lookup.go`
//! over those services (A/AAAA with CNAME chains, TXT, SRV and MX with their
//! addresses, PTR, NS, SOA), names outside the zone resolved through the server
//! (CoreDNS's `upstream`).
//!
//! CoreDNS: `plugin/etcd/` (`setup.go`, `etcd.go`, `handler.go`, `xfr.go`,
//! `msg/`), `plugin/backend_lookup.go`.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use corefile::{Diagnostic, Dispenser};
use tokio::time::Instant;

use self::client::{Client, KeyValue, RpcError};
use self::msg::fqdn;
use self::msg::{Host, Service};
use super::file::Fall;
use super::kubernetes::answer::{Rr, addr_rr, is_subdomain, longest_zone};
use crate::chain::{Ctx, ErrorKind, Flow, PluginError, Status};
use crate::config::SetupCtx;
use crate::wire::Name;

pub mod client;
pub mod msg;
#[cfg(test)]
mod tests;

/// `etcdTimeout`: each read's deadline.
const TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_PRIORITY: i64 = 10;
const DEFAULT_TTL: u32 = 300;
const DEFAULT_MIN_LEASE: u32 = 30;
const DEFAULT_MAX_LEASE: u32 = 86_400;
/// `maxCnameChainLength`.
const MAX_CNAME_CHAIN: usize = 10;
const DEFAULT_ENDPOINT: &str = "http://localhost:2379";

/// The setup result.
#[derive(Clone)]
pub struct EtcdConfig {
    zones: Vec<String>,
    /// `zones` in wire form, for the request hook.
    zone_names: Vec<Name>,
    prefix: String,
    fall: Fall,
    min_lease: u32,
    max_lease: u32,
    client: Arc<Client>,
    /// The endpoints as configured (for tests).
    endpoints: Vec<String>,
}

impl std::fmt::Debug for EtcdConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdConfig")
            .field("zones", &self.zones)
            .field("prefix", &self.prefix)
            .field("min_lease", &self.min_lease)
            .field("max_lease", &self.max_lease)
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

/// `parseTTL`: seconds, bare or as a Go duration.
fn parse_ttl(s: &str) -> Result<u32, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(0);
    }
    // `strconv.ParseUint`: digits only (no sign).
    let text = if s.bytes().all(|b| b.is_ascii_digit()) && s.parse::<u64>().is_ok() {
        format!("{s}s")
    } else {
        s.to_owned()
    };
    let nanos = corefile::values::parse_go_duration_nanos(&text).map_err(|_| {
        "invalid TTL format, use format like '30', '30s', '5m', '1h', or '2h30m'".to_owned()
    })?;
    let secs = nanos as f64 / 1e9;
    if secs < 0.0 {
        return Err("TTL must be non-negative".into());
    }
    if secs > 4_294_967_295.0 {
        return Err("TTL too large, maximum is 4294967295 seconds".into());
    }
    Ok(secs as u32)
}

/// Setup (CoreDNS's `etcdParse`). Only the first `etcd` of a block is read, as
/// CoreDNS reads it.
pub fn setup(d: &mut Dispenser, ctx: &SetupCtx<'_>) -> Result<EtcdConfig, Diagnostic> {
    let plugin = |e: Diagnostic| e.in_plugin("etcd");
    let mut prefix = "skydns".to_owned();
    let mut min_lease = DEFAULT_MIN_LEASE;
    let mut max_lease = DEFAULT_MAX_LEASE;
    let mut fall = Fall::default();
    let mut endpoints = vec![DEFAULT_ENDPOINT.to_owned()];
    let mut tls = None;
    let mut creds: Option<(String, String)> = None;
    if !d.next() {
        return Err(plugin(d.err("expected 'etcd' token")));
    }
    let zones = ctx.origins(&d.remaining_args());
    while d.next_block() {
        match d.val() {
            "stubzones" | "debug" => {}
            "fallthrough" => fall = Fall::from_args(&d.remaining_args()),
            "path" => {
                if !d.next_arg() {
                    return Err(plugin(d.arg_err()));
                }
                prefix = d.val().to_owned();
            }
            "endpoint" => {
                let args = d.remaining_args();
                if args.is_empty() {
                    return Err(plugin(d.arg_err()));
                }
                endpoints = args;
            }
            "upstream" => {
                d.remaining_args();
            }
            "tls" => {
                let args: Vec<String> = d
                    .remaining_args()
                    .iter()
                    .map(|a| crate::plugins::file::rooted_path(a, ctx.settings.root.as_deref()))
                    .collect();
                tls = Some(
                    super::forward::tls::client_config(&args)
                        .map_err(|e| plugin(Diagnostic::plain(e)))?,
                );
            }
            "credentials" => {
                let args = d.remaining_args();
                if args.is_empty() {
                    return Err(plugin(d.arg_err()));
                }
                let [u, p] = args.as_slice() else {
                    return Err(plugin(
                        d.err("credentials requires 2 arguments, username and password"),
                    ));
                };
                creds = Some((u.clone(), p.clone()));
            }
            "min-lease-ttl" | "max-lease-ttl" => {
                let which = d.val().to_owned();
                if !d.next_arg() {
                    return Err(plugin(d.arg_err()));
                }
                let v = parse_ttl(d.val())
                    .map_err(|e| plugin(d.err(format!("invalid {which} value: {e}"))))?;
                if which == "min-lease-ttl" {
                    min_lease = v;
                } else {
                    max_lease = v;
                }
            }
            "}" => {}
            other => {
                let msg = format!("unknown property '{other}'");
                return Err(plugin(d.err(msg)));
            }
        }
    }
    // Go's client takes a user and password only when both are non-empty.
    let creds = creds.filter(|(u, p)| !u.is_empty() && !p.is_empty());
    let default_tls = || super::forward::tls::client_config(&[]);
    let mut eps = Vec::with_capacity(endpoints.len());
    for ep in &endpoints {
        eps.push(
            client::endpoint(ep, tls.as_ref(), &default_tls)
                .map_err(|e| plugin(Diagnostic::plain(e)))?,
        );
    }
    Ok(EtcdConfig {
        zone_names: zones.iter().filter_map(|z| Name::parse(z)).collect(),
        zones,
        prefix,
        fall,
        min_lease,
        max_lease,
        client: Arc::new(Client::new(eps, creds)),
        endpoints,
    })
}

/// A backend failure: the name has no services (`errKeyNotFound`), or another
/// error (its text).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fail {
    NotFound,
    Err(String),
}

impl From<RpcError> for Fail {
    fn from(e: RpcError) -> Self {
        Self::Err(e.text())
    }
}

/// A question as the lookup functions see it (CoreDNS's `request.Request`):
/// the name as asked, lower-cased, and the type.
struct Q {
    qname: String,
    name: String,
    qtype: u16,
}

impl Q {
    fn new(name: &str, qtype: u16) -> Self {
        let qname = fqdn(name);
        Self {
            name: qname.to_ascii_lowercase(),
            qname,
            qtype,
        }
    }
}

/// The runtime plugin.
pub struct Etcd {
    cfg: Arc<EtcdConfig>,
}

/// What one query needs while it is answered.
struct Look<'c, 'a> {
    cfg: &'c EtcdConfig,
    ctx: &'c Ctx<'a>,
    zone: &'c str,
    /// Lease TTLs already asked during this query.
    leases: RefCell<HashMap<i64, Option<i64>>>,
}

type Answer = (Vec<Rr>, Vec<Rr>, bool);

impl Etcd {
    /// Builds it.
    pub fn new(c: &EtcdConfig) -> Self {
        Self {
            cfg: Arc::new(c.clone()),
        }
    }

    /// The request hook: names in the zones park for etcd.
    pub fn serve(&self, ctx: &mut Ctx<'_>) -> Flow {
        let q = ctx.req.qname.to_lowercase();
        if self
            .cfg
            .zone_names
            .iter()
            .any(|z| crate::zone::in_zone(q.wire(), z.wire()))
        {
            Flow::Park
        } else {
            Flow::Next
        }
    }

    /// The parked half (CoreDNS's `ServeDNS`).
    pub async fn serve_async(&self, ctx: &mut Ctx<'_>) -> Flow {
        let q = Q::new(&ctx.req.qname.to_name().to_string(), ctx.req.qtype);
        let Some(zone) = longest_zone(&self.cfg.zones, &q.name).cloned() else {
            return Flow::Next;
        };
        let res = {
            let l = Look {
                cfg: &self.cfg,
                ctx: &*ctx,
                zone: &zone,
                leases: RefCell::new(HashMap::new()),
            };
            l.answer(&q).await
        };
        let soa = soa(&zone);
        match res {
            Err(Fail::NotFound) => {
                if self.cfg.fall.through(&ctx.req.qname.to_lowercase()) {
                    return Flow::Next;
                }
                super::kubernetes::write_reply(ctx, 3, false, &[], Some(&soa), &[])
            }
            Err(Fail::Err(text)) => {
                super::kubernetes::write_reply(ctx, 2, false, &[], Some(&soa), &[]);
                Flow::Return(Status {
                    rcode: 0,
                    err: Some(PluginError {
                        plugin: "etcd",
                        kind: ErrorKind::Upstream(Arc::from(text)),
                    }),
                })
            }
            Ok((r, _, _)) if r.is_empty() => {
                super::kubernetes::write_reply(ctx, 0, false, &[], Some(&soa), &[])
            }
            Ok((r, e, tc)) => super::kubernetes::write_reply(ctx, 0, tc, &r, None, &e),
        }
    }
}

/// CoreDNS's `SOA`: `ns.dns.ZONE hostmaster.ZONE`, the time as serial, minimum
/// TTL 30.
fn soa(zone: &str) -> Rr {
    let mut rd = super::kubernetes::answer::name_wire(&msg::join(&["ns.dns", zone]));
    rd.extend_from_slice(&super::kubernetes::answer::name_wire(&msg::join(&[
        "hostmaster",
        zone,
    ])));
    let serial = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32);
    for v in [serial, 7200, 1800, 86400, 30] {
        rd.extend_from_slice(&v.to_be_bytes());
    }
    Rr {
        owner: zone.to_owned(),
        rtype: 6,
        ttl: 30,
        rdata: rd,
    }
}

/// A name's wire form, or `None` when it is not a valid name.
fn wire(s: &str) -> Option<Vec<u8>> {
    Name::parse(s).map(|n| n.wire().to_vec())
}

fn rr(owner: &str, rtype: u16, ttl: u32, rdata: Vec<u8>) -> Rr {
    Rr {
        owner: owner.to_owned(),
        rtype,
        ttl,
        rdata,
    }
}

/// `isDuplicate`'s key: a name with a port, or a name with an address.
#[derive(Hash, PartialEq, Eq)]
struct Item(String, u16, String);

fn is_duplicate(m: &mut HashSet<Item>, name: &str, addr: &str, port: u16) -> bool {
    let k = if addr.is_empty() {
        Item(name.to_owned(), port, String::new())
    } else {
        Item(name.to_owned(), 0, addr.to_owned())
    };
    !m.insert(k)
}

impl Look<'_, '_> {
    /// `ServeDNS`'s switch on the type.
    async fn answer(&self, q: &Q) -> Result<Answer, Fail> {
        let zone = self.zone;
        match q.qtype {
            1 | 28 | 16 => self
                .chase(q, Vec::new(), q.qtype)
                .await
                .map(|(r, tc)| (r, Vec::new(), tc)),
            5 => self.cname(q).await.map(|r| (r, Vec::new(), false)),
            12 => self.ptr(q).await.map(|r| (r, Vec::new(), false)),
            15 => self.mx(q).await.map(|(r, e)| (r, e, false)),
            33 => self.srv(q).await.map(|(r, e)| (r, e, false)),
            6 => Ok((vec![soa(zone)], Vec::new(), false)),
            2 if q.name == zone => self.ns(q).await.map(|(r, e)| (r, e, false)),
            _ => self
                .chase(q, Vec::new(), 1)
                .await
                .map(|_| (Vec::new(), Vec::new(), false)),
        }
    }

    /// `Services`: the services of `name`, grouped.
    async fn services(&self, name: &str, qtype: u16, exact: bool) -> Result<Vec<Service>, Fail> {
        Ok(msg::group(self.records(name, qtype, exact).await?))
    }

    /// `Records`.
    async fn records(&self, name: &str, qtype: u16, exact: bool) -> Result<Vec<Service>, Fail> {
        let (path, star) = msg::path_with_wildcard(name, &self.cfg.prefix);
        let kvs = self.get(&path, !exact).await?;
        let full = msg::path(name, &self.cfg.prefix);
        let segments: Vec<&str> = full.split('/').collect();
        self.loop_nodes(&kvs, &segments, star, qtype).await
    }

    /// `get`: with `recursive`, the keys below `path/`, else `path` itself (both
    /// reads within one 5 s, as CoreDNS's one context).
    async fn get(&self, path: &str, recursive: bool) -> Result<Vec<KeyValue>, Fail> {
        let c = &self.cfg.client;
        let deadline = Instant::now() + TIMEOUT;
        if recursive {
            let dir = if path.ends_with('/') {
                path.to_owned()
            } else {
                format!("{path}/")
            };
            let kvs = c.range(&dir, true, deadline).await?;
            if !kvs.is_empty() {
                return Ok(kvs);
            }
            let key = dir.strip_suffix('/').unwrap_or(&dir);
            let kvs = c.range(key, false, deadline).await?;
            if kvs.is_empty() {
                return Err(Fail::NotFound);
            }
            return Ok(kvs);
        }
        let kvs = c.range(path, false, deadline).await?;
        if kvs.is_empty() {
            return Err(Fail::NotFound);
        }
        Ok(kvs)
    }

    /// `loopNodes`: the services of the keys (wildcard segments matched), their
    /// TTLs and default priority set, those with a host (or text, for TXT) kept.
    async fn loop_nodes(
        &self,
        kvs: &[KeyValue],
        name_parts: &[&str],
        star: bool,
        qtype: u16,
    ) -> Result<Vec<Service>, Fail> {
        let mut seen: HashSet<Service> = HashSet::new();
        let mut out = Vec::new();
        // The leases of one read are asked within one 5 s (CoreDNS asks each
        // without a deadline).
        let lease_deadline = Instant::now() + TIMEOUT;
        'nodes: for kv in kvs {
            let key = String::from_utf8_lossy(&kv.key).into_owned();
            if star {
                let key_parts: Vec<&str> = key.split('/').collect();
                for (i, n) in name_parts.iter().enumerate() {
                    if i + 1 > key_parts.len() {
                        continue 'nodes;
                    }
                    if *n == "*" || *n == "any" {
                        continue;
                    }
                    if key_parts[i] != *n {
                        continue 'nodes;
                    }
                }
            }
            let mut serv = msg::decode(&kv.value).map_err(|e| Fail::Err(format!("{key}: {e}")))?;
            serv.key = key;
            if !seen.insert(serv.clone()) {
                continue;
            }
            serv.ttl = self.ttl(kv, &serv, lease_deadline).await;
            if serv.priority == 0 {
                serv.priority = DEFAULT_PRIORITY;
            }
            if (qtype == 16 && !serv.text.is_empty()) || !serv.host.is_empty() {
                out.push(serv);
            }
        }
        Ok(out)
    }

    /// `TTL`: the smaller of the service's TTL and its lease's remaining time
    /// (clamped to the lease bounds), 300 when neither is set.
    /// Each lease is asked once per query.
    async fn ttl(&self, kv: &KeyValue, serv: &Service, deadline: Instant) -> u32 {
        let mut lease_ttl = 0u32;
        if kv.lease != 0 {
            let known = self.leases.borrow().get(&kv.lease).copied();
            let t = match known {
                Some(t) => t,
                None => {
                    let t = self.cfg.client.time_to_live(kv.lease, deadline).await.ok();
                    self.leases.borrow_mut().insert(kv.lease, t);
                    t
                }
            };
            if let Some(t) = t.filter(|t| *t > 0) {
                lease_ttl = ttl_from_lease(t, self.cfg.min_lease, self.cfg.max_lease);
            }
        }
        combine_ttl(lease_ttl, serv.ttl)
    }

    /// A self-lookup through the server (CoreDNS's `Upstream.Lookup`): its
    /// answer records and TC bit.
    async fn lookup(&self, name: &str, qtype: u16) -> Option<(Vec<Rr>, bool)> {
        let n = Name::parse(&fqdn(name))?;
        let l = crate::server::reentry::prepare(self.ctx, &n, qtype, self.ctx.st.depth + 1).ok()?;
        let reply = l.run().await?;
        super::kubernetes::answers_of(&reply)
    }

    /// `checkForApex`: at the zone's apex, `apex.dns.ZONE`'s services if it
    /// has any.
    async fn apex_services(&self, q: &Q) -> Result<Vec<Service>, Fail> {
        if q.name != self.zone {
            return self.services(&q.name, q.qtype, false).await;
        }
        let apex = msg::join(&["apex.dns", self.zone]);
        match self.services(&apex, q.qtype, false).await {
            Ok(s) => Ok(s),
            Err(_) => self.services(&q.name, q.qtype, false).await,
        }
    }

    /// A CNAME to `host` that `A`, `AAAA` and `TXT` would follow, and its
    /// target (`None`: skip the service: a loop to the question, a chain too
    /// long, a repeat).
    fn chain_link(q: &Q, serv: &Service, prev: &[Rr]) -> Option<(Rr, String)> {
        let target = fqdn(&serv.host);
        if is_subdomain(&q.name, &target) {
            return None;
        }
        let rec = rr(&q.qname, 5, serv.ttl, wire(&target)?);
        if prev.len() > MAX_CNAME_CHAIN {
            return None;
        }
        if prev.iter().any(|p| p.rtype == 5 && p.rdata == rec.rdata) {
            return None;
        }
        Some((rec, target))
    }

    /// `A` and `AAAA` (`want` 1 or 28, the apex from `apex.dns`) and `TXT`
    /// (`want` 16): the services' records, CNAMEs followed through the
    /// backend in the zone and through the server outside it.
    async fn chase(&self, q: &Q, prev: Vec<Rr>, want: u16) -> Result<(Vec<Rr>, bool), Fail> {
        let services = if want == 16 {
            self.services(&q.name, q.qtype, false).await?
        } else {
            self.apex_services(q).await?
        };
        // Hosts (addresses) or texts already answered.
        let mut dup = HashSet::new();
        let mut records = Vec::new();
        let mut truncated = false;
        for serv in &services {
            match serv.host_type() {
                Host::Cname => {
                    let Some((link, target)) = Self::chain_link(q, serv, &prev) else {
                        continue;
                    };
                    if is_subdomain(self.zone, &target) {
                        let q1 = Q::new(&serv.host, q.qtype);
                        let mut p = prev.clone();
                        p.push(link.clone());
                        if let Ok((next, tc)) = Box::pin(self.chase(&q1, p, want)).await {
                            if !next.is_empty() {
                                records.push(link);
                                records.extend(next);
                            }
                            truncated |= tc;
                        }
                        continue;
                    }
                    let Some((answers, tc)) = self.lookup(&target, q.qtype).await else {
                        continue;
                    };
                    // CoreDNS's TXT does not pass the lookup's TC on.
                    truncated |= tc && want != 16;
                    records.push(link);
                    records.extend(answers);
                }
                Host::A(ip) | Host::Aaaa(ip)
                    if want == if ip.is_ipv4() { 1 } else { 28 }
                        && dup.insert(serv.host.clone()) =>
                {
                    records.push(addr_rr(&q.qname, ip, serv.ttl));
                }
                Host::Txt if want == 16 && dup.insert(serv.text.clone()) => {
                    let mut rd = Vec::new();
                    for part in msg::split255(&serv.text) {
                        rd.push(part.len() as u8);
                        rd.extend_from_slice(part);
                    }
                    records.push(rr(&q.qname, 16, serv.ttl, rd));
                }
                _ => {}
            }
        }
        Ok((records, truncated))
    }

    /// The addresses of an out-of-zone target (A, then AAAA without CNAMEs),
    /// or of an in-zone one (A, through the backend).
    async fn target_addresses(&self, target: &str, extra: &mut Vec<Rr>) {
        if !is_subdomain(self.zone, target) {
            if let Some((a, _)) = self.lookup(target, 1).await {
                extra.extend(a);
            }
            if let Some((a, _)) = self.lookup(target, 28).await {
                extra.extend(a.into_iter().filter(|r| r.rtype != 5));
            }
            return;
        }
        let q1 = Q::new(target, 1);
        if let Ok((a, _)) = Box::pin(self.chase(&q1, Vec::new(), 1)).await {
            extra.extend(a);
        }
    }

    /// `SRV` and `MX`: a record of `rtype` per service, its RDATA `head` then
    /// the target, and the targets' addresses in the additional section. A
    /// service with an address stands for its key's name; `port` tells its
    /// records apart, and MX (`at_domain`) owns its address at the unstripped
    /// name.
    async fn with_targets(
        &self,
        q: &Q,
        rtype: u16,
        services: Vec<(&Service, Vec<u8>, u16)>,
        at_domain: bool,
    ) -> (Vec<Rr>, Vec<Rr>) {
        let mut dup = HashSet::new();
        let mut looked = HashSet::new();
        let (mut records, mut extra) = (Vec::new(), Vec::new());
        for (serv, head, port) in services {
            let rdata = |target: &str| -> Option<Vec<u8>> {
                let mut rd = head.clone();
                rd.extend_from_slice(&wire(target)?);
                Some(rd)
            };
            match serv.host_type() {
                Host::Cname => {
                    let target = serv.target();
                    let Some(rd) = rdata(&target) else {
                        continue;
                    };
                    records.push(rr(&q.qname, rtype, serv.ttl, rd));
                    if looked.insert(target.clone()) {
                        self.target_addresses(&target, &mut extra).await;
                    }
                }
                Host::A(ip) | Host::Aaaa(ip) => {
                    let domain = msg::domain(&serv.key);
                    let target = serv.stripped(&domain);
                    let Some(rd) = rdata(&target) else {
                        continue;
                    };
                    if !is_duplicate(&mut dup, &target, "", port) {
                        records.push(rr(&q.qname, rtype, serv.ttl, rd));
                    }
                    let owner = if at_domain { &domain } else { &target };
                    if !is_duplicate(&mut dup, owner, &serv.host, 0) {
                        extra.push(addr_rr(owner, ip, serv.ttl));
                    }
                }
                Host::Txt => {}
            }
        }
        (records, extra)
    }

    /// `SRV`: weights shared within a priority.
    async fn srv(&self, q: &Q) -> Result<(Vec<Rr>, Vec<Rr>), Fail> {
        let services = self.services(&q.name, q.qtype, false).await?;
        let mut w: HashMap<i64, i64> = HashMap::new();
        for serv in &services {
            let weight = if serv.weight == 0 { 100 } else { serv.weight };
            let e = w.entry(serv.priority).or_insert(0);
            *e = e.saturating_add(weight);
        }
        let mut items = Vec::with_capacity(services.len());
        for serv in services.iter().filter(|s| s.port != -1) {
            let total = w.get(&serv.priority).copied().unwrap_or(100);
            let mut w1 = 100.0 / total as f64;
            w1 *= if serv.weight == 0 {
                100.0
            } else {
                serv.weight as f64
            };
            let weight = go_uint16(w1.floor()).max(1);
            let port = serv.port as u16;
            let mut head = (serv.priority as u16).to_be_bytes().to_vec();
            head.extend_from_slice(&weight.to_be_bytes());
            head.extend_from_slice(&port.to_be_bytes());
            items.push((serv, head, port));
        }
        Ok(self.with_targets(q, 33, items, false).await)
    }

    /// `MX`: the mail services, the priority as preference.
    async fn mx(&self, q: &Q) -> Result<(Vec<Rr>, Vec<Rr>), Fail> {
        let services = self.services(&q.name, q.qtype, false).await?;
        let items = services
            .iter()
            .filter(|s| s.mail)
            .map(|s| {
                let pref = s.priority as u16;
                (s, pref.to_be_bytes().to_vec(), pref)
            })
            .collect();
        Ok(self.with_targets(q, 15, items, true).await)
    }

    /// `CNAME`: the first service of the exact name, when its host is a name.
    async fn cname(&self, q: &Q) -> Result<Vec<Rr>, Fail> {
        let services = self.services(&q.name, q.qtype, true).await?;
        let mut out = Vec::new();
        if let Some(serv) = services.first() {
            if serv.host.parse::<IpAddr>().is_err() {
                if let Some(rd) = wire(&fqdn(&serv.host)) {
                    out.push(rr(&q.qname, 5, serv.ttl, rd));
                }
            }
        }
        Ok(out)
    }

    /// `PTR`: the exact name's services whose host is a name.
    async fn ptr(&self, q: &Q) -> Result<Vec<Rr>, Fail> {
        let services = self.services(&q.name, q.qtype, true).await?;
        let mut dup = HashSet::new();
        let mut out = Vec::new();
        for serv in &services {
            if serv.host.parse::<IpAddr>().is_err() && dup.insert(serv.host.clone()) {
                if let Some(rd) = wire(&fqdn(&serv.host)) {
                    out.push(rr(&q.qname, 12, serv.ttl, rd));
                }
            }
        }
        Ok(out)
    }

    /// `NS` at the apex: the services of `ns.dns.ZONE`, which must be addresses.
    async fn ns(&self, q: &Q) -> Result<(Vec<Rr>, Vec<Rr>), Fail> {
        let name = msg::join(&["ns.dns.", self.zone]);
        let services = self.services(&name, q.qtype, false).await?;
        let mut seen = HashSet::new();
        let (mut records, mut extra) = (Vec::new(), Vec::new());
        for serv in &services {
            match serv.host_type() {
                Host::Cname => {
                    return Err(Fail::Err(format!(
                        "NS record must be an IP address: {}",
                        serv.host
                    )));
                }
                Host::Txt => {}
                Host::A(ip) | Host::Aaaa(ip) => {
                    let target = serv.stripped(&msg::domain(&serv.key));
                    extra.push(addr_rr(&target, ip, serv.ttl));
                    if !seen.insert(target.clone()) {
                        continue;
                    }
                    if let Some(rd) = wire(&target) {
                        records.push(rr(&q.qname, 2, serv.ttl, rd));
                    }
                }
            }
        }
        Ok((records, extra))
    }
}

/// Go's `uint16(f)` for the non-negative weights computed here (saturating
/// where Go's conversion is implementation-defined).
fn go_uint16(f: f64) -> u16 {
    if f.is_nan() || f <= 0.0 {
        0
    } else if f >= 65535.0 {
        65535
    } else {
        f as u16
    }
}

/// A lease's remaining seconds clamped to `[min, max]` (0 meaning the defaults).
fn ttl_from_lease(t: i64, min: u32, max: u32) -> u32 {
    let min = if min == 0 { DEFAULT_MIN_LEASE } else { min };
    let max = if max == 0 { DEFAULT_MAX_LEASE } else { max };
    let t = if t < i64::from(min) {
        i64::from(min)
    } else if t > i64::from(max) {
        i64::from(max)
    } else {
        t
    };
    t as u32
}

/// The record TTL from a lease's (0: none) and the service's own (0: none).
fn combine_ttl(lease: u32, own: u32) -> u32 {
    match (lease, own) {
        (0, 0) => DEFAULT_TTL,
        (0, o) => o,
        (l, 0) => l,
        (l, o) => l.min(o),
    }
}

/// The fuzz target's body (panics are bugs): `data` as a stored value, as a
/// Range reply, and (as text) as a name and a key through the path, domain,
/// target-strip and TXT-split functions.
pub fn fuzz_one(data: &[u8]) {
    if let Ok(s) = msg::decode(data) {
        let _ = s.host_type();
        let _ = s.target();
        let _ = msg::split255(&s.text);
        let _ = msg::target_strip(&s.host, s.target_strip);
    }
    for (_, v) in client::Fields::new(data) {
        if let client::Val::Bytes(b) = v {
            let _ = client::key_value(b);
        }
    }
    let text = String::from_utf8_lossy(data);
    let _ = msg::path_with_wildcard(&text, "skydns");
    let _ = msg::path(&text, "skydns");
    let d = msg::domain(&text);
    assert!(d.ends_with('.'), "a domain is qualified");
    let _ = msg::target_strip(&text, i64::from(data.first().copied().unwrap_or(0)));
    let _ = msg::group(vec![
        Service {
            key: text.clone().into_owned(),
            group: "g".into(),
            ..Service::default()
        },
        Service {
            key: format!("{text}/x"),
            ..Service::default()
        },
    ]);
    let _ = client::prefix_end(data);
}
