//! *loadbalance*: shuffles address records of NOERROR replies (plugins.md B),
//! optionally moving addresses in `prefer` subnets first.
//!
//! CoreDNS: `plugin/loadbalance/loadbalance.go`, `prefer.go`, `setup.go`.
//! The `weighted` policy is not implemented yet and fails at startup.

use std::net::IpAddr;

use corefile::keys::parse_cidr;
use corefile::{Diagnostic, Dispenser};

use crate::chain::Ctx;
use crate::config::SetupCtx;
use crate::wire::index::{Rebuild, rebuild};
use crate::wire::{MsgIndex, hdr};

/// Parsed configuration.
#[derive(Debug, Clone, Default)]
pub struct LoadbalanceConfig {
    /// `prefer` subnets, in order.
    pub prefer: Vec<(IpAddr, u8)>,
}

/// Setup (CoreDNS `loadbalance.parse`).
pub fn setup(d: &mut Dispenser, _ctx: &mut SetupCtx<'_>) -> Result<LoadbalanceConfig, Diagnostic> {
    let w = |e: Diagnostic| e.in_plugin("loadbalance");
    let mut c = LoadbalanceConfig::default();
    while d.next() {
        let args = d.remaining_args();
        if let Some(policy) = args.first() {
            match policy.as_str() {
                "round_robin" => {
                    if args.len() > 1 {
                        return Err(w(d.err(format!("unknown property for {policy}"))));
                    }
                }
                "weighted" => {
                    if args.len() < 2 {
                        return Err(w(d.err("missing weight file argument")));
                    }
                    if args.len() > 2 {
                        return Err(w(d.err("unexpected argument(s)")));
                    }
                    return Err(w(d.err("weighted policy not supported by ringdns yet")));
                }
                other => return Err(w(Diagnostic::plain(format!("unknown policy: {other}")))),
            }
        }
        while d.next_block() {
            match d.val() {
                "prefer" => {
                    for cidr in d.remaining_args() {
                        let Some(net) = parse_cidr(&cidr) else {
                            return Err(w(d.err(format!(
                                "invalid CIDR {cidr:?}: invalid CIDR address: {cidr}"
                            ))));
                        };
                        c.prefer.push(net);
                    }
                }
                other => return Err(w(d.err(format!("unknown property '{other}'")))),
            }
        }
    }
    Ok(c)
}

/// The runtime plugin.
pub struct Loadbalance {
    prefer: Vec<(IpAddr, u8)>,
}

fn contains(net: (IpAddr, u8), ip: IpAddr) -> bool {
    match (net.0, ip) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let m = if net.1 == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(net.1))
            };
            u32::from(n) & m == u32::from(a) & m
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let m = if net.1 == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(net.1))
            };
            u128::from(n) & m == u128::from(a) & m
        }
        _ => false,
    }
}

/// miekg `dns.Id()`-style random 16-bit value.
fn rand_id() -> usize {
    usize::from(fastrand::u16(..))
}

/// CoreDNS `roundRobinShuffle`.
fn shuffle(v: &mut [usize]) {
    let l = v.len();
    match l {
        0 | 1 => {}
        2 => {
            if rand_id() % 2 == 0 {
                v.swap(0, 1);
            }
        }
        _ => {
            for j in 0..l {
                let p = j + rand_id() % (l - j);
                v.swap(j, p);
            }
        }
    }
}

impl Loadbalance {
    /// Builds it.
    pub fn new(c: &LoadbalanceConfig) -> Result<Self, String> {
        Ok(Self {
            prefer: c.prefer.clone(),
        })
    }

    fn ip_of(msg: &[u8], idx: &MsgIndex, i: usize) -> Option<IpAddr> {
        let r = idx.rrs[i];
        let rd = &msg[r.rdata()];
        match (r.rtype, rd.len()) {
            (1, 4) => Some(IpAddr::from([rd[0], rd[1], rd[2], rd[3]])),
            (28, 16) => <[u8; 16]>::try_from(rd).ok().map(IpAddr::from),
            _ => None,
        }
    }

    /// Reorders a section's record indices (CoreDNS `roundRobin`).
    fn round_robin(idx: &MsgIndex, list: &[usize]) -> Vec<usize> {
        if list.len() <= 1 {
            return list.to_vec();
        }
        let t = idx.rrs[list[0]].rtype;
        if (t == 1 || t == 28) && list.iter().all(|&i| idx.rrs[i].rtype == t) {
            let mut out = list.to_vec();
            shuffle(&mut out);
            return out;
        }
        let (mut cname, mut addr, mut mx, mut rest) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for &i in list {
            match idx.rrs[i].rtype {
                5 => cname.push(i),
                1 | 28 => addr.push(i),
                15 => mx.push(i),
                _ => rest.push(i),
            }
        }
        shuffle(&mut addr);
        shuffle(&mut mx);
        cname.extend(rest);
        cname.extend(addr);
        cname.extend(mx);
        cname
    }

    /// CoreDNS `reorderRecords` for `prefer`.
    fn prefer(&self, msg: &[u8], idx: &MsgIndex, list: &[usize]) -> Vec<usize> {
        let (mut cname, mut addr, mut mx, mut rest) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for &i in list {
            match idx.rrs[i].rtype {
                5 => cname.push(i),
                1 | 28 => addr.push(i),
                15 => mx.push(i),
                _ => rest.push(i),
            }
        }
        let mut seen = vec![false; addr.len()];
        let mut sorted = Vec::with_capacity(addr.len());
        for &net in &self.prefer {
            for (k, &i) in addr.iter().enumerate() {
                if !seen[k] && Self::ip_of(msg, idx, i).is_some_and(|ip| contains(net, ip)) {
                    sorted.push(i);
                    seen[k] = true;
                }
            }
        }
        for (k, &i) in addr.iter().enumerate() {
            if !seen[k] {
                sorted.push(i);
            }
        }
        cname.extend(sorted);
        cname.extend(mx);
        cname.extend(rest);
        cname
    }

    /// Shuffles the written reply.
    pub fn respond(&self, ctx: &mut Ctx<'_>) {
        if !ctx.written || hdr::rcode(ctx.resp) != 0 {
            return;
        }
        if ctx.req.qtype == 252 || ctx.req.qtype == 251 {
            return;
        }
        let Some(idx) = MsgIndex::parse(ctx.resp) else {
            return;
        };
        if idx.rrs.len() < 2 {
            return;
        }
        let mut order = Vec::with_capacity(idx.rrs.len());
        for s in 1..=3u8 {
            let list: Vec<usize> = (0..idx.rrs.len())
                .filter(|&i| idx.rrs[i].section == s)
                .collect();
            let mut out = Self::round_robin(&idx, &list);
            if !self.prefer.is_empty() && s != 2 {
                out = self.prefer(ctx.resp, &idx, &out);
            }
            order.extend(out);
        }
        rebuild(
            ctx.resp,
            &idx,
            &order,
            Rebuild {
                compress: false,
                limit: None,
                reserve: 0,
            },
            ctx.scratch,
        );
        std::mem::swap(ctx.resp, ctx.scratch);
    }
}
