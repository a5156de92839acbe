//! *k8s_external*: the cluster's services under an external zone, from the
//! block's *kubernetes* (CoreDNS 1.14.7's `plugin/k8s_external`: `setup.go`,
//! `external.go`, `apex.go`, `msg_to_dns.go`, with *kubernetes*' `External` and
//! `ExternalAddress`): `SVC.NS.ZONE` A/AAAA → the service's external IPs (a load
//! balancer's host name → a CNAME and its target asked of the server),
//! `_PORT._PROTO.SVC.NS.ZONE` SRV, PTR of external IPs, with `headless` the
//! endpoints of headless services, the apex SOA/NS and `ns1.APEX.ZONE`.
//!
//! Zone transfers of the external zone (CoreDNS's `Transfer` with *transfer*) are
//! not built: *transfer* does not list *k8s_external* as a source.

use std::collections::HashSet;
use std::sync::Arc;

use corefile::{Diagnostic, Dispenser};

use super::answer::Upstream;
use super::answer::{self, ExtSvc, Lookup, Rr, addr_rr, fqdn, name_wire};
use super::{KubeShared, Lookups, answer_now, answer_parked, write_reply};
use crate::chain::{Ctx, Flow};
use crate::config::SetupCtx;
use crate::plugins::file::Fall;
use crate::wire::Name;

/// The configuration, and (once the chain is built) the block's *kubernetes*.
#[derive(Clone)]
pub struct K8sExternal {
    zones: Vec<String>,
    fall: Fall,
    apex: String,
    ttl: u32,
    headless: bool,
    /// Set when the chain is built (CoreDNS's OnStartup lookup of the handler).
    pub k8s: Option<Arc<KubeShared>>,
}

impl std::fmt::Debug for K8sExternal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("K8sExternal")
            .field("zones", &self.zones)
            .field("apex", &self.apex)
            .finish_non_exhaustive()
    }
}

/// Setup (CoreDNS `parse`).
pub fn setup(d: &mut Dispenser, ctx: &mut SetupCtx<'_>) -> Result<K8sExternal, Diagnostic> {
    let w = |e: Diagnostic| e.in_plugin("k8s_external");
    let mut e = K8sExternal {
        zones: Vec::new(),
        fall: Fall::default(),
        apex: "dns".into(),
        ttl: 5,
        headless: false,
        k8s: None,
    };
    while d.next() {
        let args = d.remaining_args();
        e.zones = ctx
            .origins(&args)
            .iter()
            .map(|z| z.to_ascii_lowercase())
            .collect();
        while d.next_block() {
            match d.val() {
                "ttl" => {
                    let a = d.remaining_args();
                    let Some(v) = a.first() else {
                        return Err(w(d.arg_err()));
                    };
                    let Some(t) = corefile::keys::go_atoi(v) else {
                        return Err(w(Diagnostic::plain(crate::config::go_atoi_err(v))));
                    };
                    if !(0..=3600).contains(&t) {
                        return Err(w(d.err(format!("ttl must be in range [0, 3600]: {t}"))));
                    }
                    e.ttl = t as u32;
                }
                "apex" => {
                    let a = d.remaining_args();
                    let Some(v) = a.first() else {
                        return Err(w(d.arg_err()));
                    };
                    e.apex = v.clone();
                }
                "headless" => e.headless = true,
                "fallthrough" => e.fall = Fall::from_args(&d.remaining_args()),
                other => return Err(w(d.err(format!("unknown property '{other}'")))),
            }
        }
    }
    Ok(e)
}

/// `dnsutil.Join`: labels joined under a fully qualified name.
fn join(parts: &[&str]) -> String {
    let mut s = parts
        .iter()
        .map(|p| p.trim_end_matches('.'))
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(".");
    s.push('.');
    s
}

/// The reply: rcode, answer, authority (the SOA or not), additional, TC.
struct Reply {
    rcode: u8,
    answer: Vec<Rr>,
    /// Whether the zone's SOA goes in authority.
    soa: bool,
    /// The zone's SOA.
    soa_rr: Rr,
    extra: Vec<Rr>,
    tc: bool,
}

impl Reply {
    fn new(soa_rr: Rr, soa: bool) -> Self {
        Self {
            rcode: 0,
            answer: Vec::new(),
            soa,
            soa_rr,
            extra: Vec::new(),
            tc: false,
        }
    }
}

impl K8sExternal {
    /// The request hook.
    pub fn serve(&self, ctx: &mut Ctx<'_>) -> Flow {
        answer_now(ctx, |c, up| self.reply(c, up), Self::write)
    }

    /// The parked half: a load balancer's host name the server must resolve.
    pub async fn serve_async(&self, ctx: &mut Ctx<'_>) -> Flow {
        answer_parked(ctx, |c, up| self.reply(c, up), Self::write).await
    }

    fn soa(&self, zone: &str, serial: u32) -> Rr {
        let mut rd = name_wire(&join(&["ns1", &self.apex, zone]));
        rd.extend_from_slice(&name_wire(&join(&["hostmaster", &self.apex, zone])));
        for v in [serial, 7200, 1800, 86400, self.ttl] {
            rd.extend_from_slice(&v.to_be_bytes());
        }
        Rr {
            owner: zone.to_owned(),
            rtype: 6,
            ttl: self.ttl,
            rdata: rd,
        }
    }

    /// CoreDNS's `ServeDNS`; `None` passes the query on.
    fn reply(&self, ctx: &Ctx<'_>, up: &mut Lookups) -> Option<Reply> {
        let k = self.k8s.as_ref()?;
        let qname = ctx.req.qname.to_name().to_string();
        let name = qname.to_ascii_lowercase();
        let zone = answer::longest_zone(&self.zones, &name)?.clone();
        let qtype = ctx.req.qtype;
        let snap = k.out.snap.load();
        let params = k.params();
        let l = Lookup {
            snap: &snap,
            p: &params,
        };
        let soa = self.soa(&zone, snap.modified_ext as u32);
        let mut r = Reply::new(soa.clone(), false);
        for z in &self.zones {
            if name == *z {
                // `serveApex`.
                match qtype {
                    6 => r.answer.push(soa),
                    2 => {
                        let ns = join(&["ns1", &self.apex, &zone]);
                        r.answer.push(Rr {
                            owner: zone.clone(),
                            rtype: 2,
                            ttl: self.ttl,
                            rdata: name_wire(&ns),
                        });
                        let owner = join(&["ns1", &self.apex, &qname]);
                        for (_, ip) in l.ns_addrs_mode(&zone, true, self.headless) {
                            r.extra.push(addr_rr(&owner, ip, self.ttl));
                        }
                    }
                    _ => r.soa = true,
                }
                return Some(r);
            }
            if answer::is_subdomain(&join(&[&self.apex, z]), &name) {
                return Some(self.sub_apex(&l, &qname, &name, &zone, qtype, soa));
            }
        }
        let (svcs, rcode) = l.external(&name, &zone, qtype, self.headless);
        if svcs.is_empty() {
            let lname = Name::parse(&name).unwrap_or_else(Name::root);
            if rcode == 3 && self.fall.through(&lname) {
                return None;
            }
            r.rcode = rcode;
            r.soa = true;
            return Some(r);
        }
        match qtype {
            1 | 28 => {
                let mut dup = HashSet::new();
                for s in &svcs {
                    match s.ip() {
                        None => {
                            r.answer.push(Rr {
                                owner: qname.clone(),
                                rtype: 5,
                                ttl: k.ttl,
                                rdata: name_wire(&fqdn(&s.host)),
                            });
                            if let Some((a, tc)) = up.lookup(&fqdn(&s.host), qtype) {
                                r.answer.extend(a);
                                r.tc |= tc;
                            }
                        }
                        Some(ip) if ip.is_ipv4() == (qtype == 1) && dup.insert(s.host.clone()) => {
                            r.answer.push(addr_rr(&qname, ip, self.ttl));
                        }
                        Some(_) => {}
                    }
                }
            }
            33 => self.srv(&svcs, &qname, &mut r, up),
            12 => {
                let mut dup = HashSet::new();
                for s in &svcs {
                    if dup.insert(s.host.clone()) {
                        let first = self.zones.first().map_or(".", String::as_str);
                        r.answer.push(Rr {
                            owner: qname.clone(),
                            rtype: 12,
                            ttl: self.ttl,
                            rdata: name_wire(&join(&[&s.host, first])),
                        });
                    }
                }
            }
            _ => {}
        }
        if r.answer.is_empty() {
            r.soa = true;
        }
        Some(r)
    }

    /// `serveSubApex`: names under `APEX.ZONE`.
    fn sub_apex(
        &self,
        l: &Lookup<'_>,
        qname: &str,
        name: &str,
        zone: &str,
        qtype: u16,
        soa: Rr,
    ) -> Reply {
        let base = answer::trim_zone(name, zone).unwrap_or("");
        let labels = if base.is_empty() {
            0
        } else {
            base.split('.').count()
        };
        let mut r = Reply::new(soa, true);
        match labels {
            1 => {}
            2 if base.split('.').next() == Some("ns1") => {
                for (_, ip) in l.ns_addrs_mode(zone, true, self.headless) {
                    if (qtype == 1 && ip.is_ipv4()) || (qtype == 28 && ip.is_ipv6()) {
                        r.answer.push(addr_rr(qname, ip, self.ttl));
                    }
                }
                r.soa = r.answer.is_empty();
            }
            _ => r.rcode = 3,
        }
        r
    }

    /// `srv`: SRV records (weights as every backend splits them) and addresses.
    fn srv(&self, svcs: &[ExtSvc], qname: &str, r: &mut Reply, up: &mut Lookups) {
        let weight = answer::srv_weight(svcs.len());
        let mut dup: HashSet<(String, u16, String)> = HashSet::new();
        for s in svcs {
            if s.port == -1 {
                continue;
            }
            let port = s.port as u16;
            let (target, ip) = match s.ip() {
                // A host name: the SRV points at it (CoreDNS's `NewSRV` of the host).
                None => (fqdn(&s.host), None),
                Some(ip) => (fqdn(&s.domain), Some(ip)),
            };
            if dup.insert((target.clone(), port, String::new())) {
                r.answer.push(Rr {
                    owner: qname.to_owned(),
                    rtype: 33,
                    ttl: self.k8s.as_ref().map_or(5, |k| k.ttl),
                    rdata: answer::srv_rdata(weight, port, &target),
                });
            }
            let addr = match ip {
                Some(_) => s.host.clone(),
                None => target.clone(),
            };
            if dup.insert((target.clone(), 0, addr)) {
                match ip {
                    Some(ip) => r.extra.push(addr_rr(&target, ip, self.ttl)),
                    None => {
                        for t in [1, 28] {
                            if let Some((a, _)) = up.lookup(&target, t) {
                                r.extra.extend(a);
                            }
                        }
                    }
                }
            }
        }
    }

    fn write(ctx: &mut Ctx<'_>, out: Option<Reply>) -> Flow {
        let Some(r) = out else {
            return Flow::Next;
        };
        let soa = r.soa.then_some(&r.soa_rr);
        write_reply(ctx, r.rcode, r.tc, &r.answer, soa, &r.extra)
    }
}
