//! *loadbalance*: shuffles address records of NOERROR replies (plugins.md B),
//! optionally moving addresses in `prefer` subnets first.
//!
//! CoreDNS: `plugin/loadbalance/loadbalance.go`, `prefer.go`, `setup.go`.
//! `weighted`: a weight file (`name` lines, then `ip weight` lines, 1–255)
//! picks one address per answer by weight and moves it to the top; the file
//! is re-read every `reload` interval when its contents change.

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
    /// `weighted FILE` (root-joined) and its reload interval.
    pub weighted: Option<(String, std::time::Duration)>,
}

/// Setup (CoreDNS `loadbalance.parse`).
pub fn setup(d: &mut Dispenser, ctx: &mut SetupCtx<'_>) -> Result<LoadbalanceConfig, Diagnostic> {
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
                    let mut file = args[1].clone();
                    if let Some(root) = &ctx.settings.root {
                        if !std::path::Path::new(&file).is_absolute() && !root.is_empty() {
                            file = std::path::Path::new(root)
                                .join(&file)
                                .to_string_lossy()
                                .into_owned();
                        }
                    }
                    let mut reload = std::time::Duration::from_secs(30);
                    while d.next_block() {
                        match d.val() {
                            "reload" => {
                                let t = d.remaining_args();
                                if t.is_empty() {
                                    return Err(w(d.err("reload duration value is missing")));
                                }
                                if t.len() > 1 {
                                    return Err(w(d.err("unexpected argument")));
                                }
                                reload =
                                    corefile::values::parse_go_duration(&t[0]).map_err(|_| {
                                        w(d.err(format!("invalid reload duration '{}'", t[0])))
                                    })?;
                            }
                            other => return Err(w(d.err(format!("unknown property '{other}'")))),
                        }
                    }
                    c.weighted = Some((file, reload));
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
    weighted: Option<std::sync::Arc<Weights>>,
}

/// CoreDNS's `errOpen`.
const ERR_OPEN: &str = "weight file open error";

/// Weights by owner name, swapped whole on reload.
pub struct Weights {
    file: String,
    domains: arc_swap::ArcSwap<std::collections::HashMap<String, Vec<(IpAddr, u8)>>>,
    last: std::sync::Mutex<Vec<u8>>,
}

impl Weights {
    /// Re-reads the file; `Ok(true)` when it changed. Errors are CoreDNS's texts.
    fn update(&self) -> Result<bool, String> {
        let bytes = std::fs::read(&self.file).map_err(|_| ERR_OPEN.to_owned())?;
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *last == bytes {
            return Ok(false);
        }
        // The contents count as seen before they parse (CoreDNS stores the md5 first):
        // a bad file is reported once, not on every tick.
        *last = bytes;
        let domains = parse_weights(&String::from_utf8_lossy(&last), &self.file)?;
        self.domains.store(std::sync::Arc::new(domains));
        crate::clog::log(
            crate::clog::Level::Info,
            Some("loadbalance"),
            &format!("Successfully reloaded weight file {}", self.file),
        );
        Ok(true)
    }
}

/// Weights per owner name.
type WeightMap = std::collections::HashMap<String, Vec<(IpAddr, u8)>>;

/// CoreDNS `parseWeights`.
fn parse_weights(text: &str, file: &str) -> Result<WeightMap, String> {
    let mut domains: WeightMap = std::collections::HashMap::new();
    let mut dname = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            [name] => {
                if name.parse::<IpAddr>().is_ok() {
                    return Err(format!(
                        "wrong domain name:\"{name}\" in weight file {file}. (Maybe a missing weight value?)"
                    ));
                }
                dname = if name.ends_with('.') {
                    (*name).to_owned()
                } else {
                    format!("{name}.")
                };
                domains.entry(dname.clone()).or_default();
            }
            [ip, weight] => {
                let ip: IpAddr = ip
                    .parse()
                    .map_err(|_| format!("wrong IP address:\"{ip}\" in weight file {file}"))?;
                let wv: u8 = match weight.parse::<u8>() {
                    Ok(v) if v > 0 => v,
                    _ => {
                        return Err(format!(
                            "wrong weight value:\"{weight}\" in weight file {file}"
                        ));
                    }
                };
                if dname.is_empty() {
                    return Err(format!("missing domain name in weight file {file}"));
                }
                domains.entry(dname.clone()).or_default().push((ip, wv));
            }
            _ => {
                return Err(format!(
                    "could not parse weight line:\"{line}\" in weight file {file}"
                ));
            }
        }
    }
    Ok(domains)
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

/// Splits a section's records into CNAMEs, addresses (A/AAAA), MX and the
/// rest, in order (the grouping every CoreDNS loadbalance policy uses).
fn partition(idx: &MsgIndex, list: &[usize]) -> (Vec<usize>, Vec<usize>, Vec<usize>, Vec<usize>) {
    let (mut cname, mut addr, mut mx, mut rest) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for &i in list {
        match idx.rrs[i].rtype {
            5 => cname.push(i),
            1 | 28 => addr.push(i),
            15 => mx.push(i),
            _ => rest.push(i),
        }
    }
    (cname, addr, mx, rest)
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
        let weighted =
            match &c.weighted {
                None => None,
                Some((file, reload)) => {
                    let w = std::sync::Arc::new(Weights {
                        file: file.clone(),
                        domains: arc_swap::ArcSwap::from_pointee(std::collections::HashMap::new()),
                        last: std::sync::Mutex::new(Vec::new()),
                    });
                    match w.update() {
                        Ok(_) => {}
                        Err(e) if e == ERR_OPEN && !reload.is_zero() => {
                            crate::clog::log(
                                crate::clog::Level::Warning,
                                Some("loadbalance"),
                                &format!(
                                    "Failed to open weight file:{e}. Will try again in {}",
                                    corefile::values::format_go_duration(*reload)
                                ),
                            );
                        }
                        Err(e) => return Err(format!("plugin/loadbalance: {e}")),
                    }
                    if !reload.is_zero() {
                        let weak = std::sync::Arc::downgrade(&w);
                        let every = *reload;
                        let _ = std::thread::Builder::new().name("lb-weights".into()).spawn(
                            move || loop {
                                std::thread::sleep(every);
                                let Some(w) = weak.upgrade() else { return };
                                if let Err(e) = w.update() {
                                    crate::clog::log(
                                        crate::clog::Level::Error,
                                        Some("loadbalance"),
                                        &e,
                                    );
                                }
                            },
                        );
                    }
                    Some(w)
                }
            };
        Ok(Self {
            prefer: c.prefer.clone(),
            weighted,
        })
    }

    /// CoreDNS `weightedRoundRobin` for one section.
    fn weighted_order(w: &Weights, msg: &[u8], idx: &MsgIndex, list: &[usize]) -> Vec<usize> {
        let (mut cname, mut addr, mx, rest) = partition(idx, list);
        if addr.is_empty() {
            return list.to_vec();
        }
        let domains = w.domains.load();
        let mut weighted: Vec<(usize, u8)> = addr
            .iter()
            .enumerate()
            .map(|(k, &i)| {
                let owner = crate::wire::Name::read(msg, idx.rrs[i].start as usize)
                    .map(|n| n.0.to_string())
                    .unwrap_or_default();
                let ip = Self::ip_of(msg, idx, i);
                let wt = domains
                    .get(&owner)
                    .and_then(|ws| ws.iter().find(|(a, _)| Some(*a) == ip).map(|(_, v)| *v))
                    .unwrap_or(1);
                (k, wt)
            })
            .collect();
        let sum: u32 = weighted.iter().map(|(_, w)| u32::from(*w)).sum();
        weighted.sort_by_key(|w| std::cmp::Reverse(w.1));
        let v = fastrand::u32(..sum.max(1));
        let mut psum = 0u32;
        if let Some(&(top, _)) = weighted.iter().find(|(_, wt)| {
            psum += u32::from(*wt);
            v < psum
        }) {
            addr.swap(0, top);
        }
        cname.extend(rest);
        cname.extend(addr);
        cname.extend(mx);
        cname
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
        let (mut cname, mut addr, mut mx, rest) = partition(idx, list);
        shuffle(&mut addr);
        shuffle(&mut mx);
        cname.extend(rest);
        cname.extend(addr);
        cname.extend(mx);
        cname
    }

    /// CoreDNS `reorderRecords` for `prefer`.
    fn prefer(&self, msg: &[u8], idx: &MsgIndex, list: &[usize]) -> Vec<usize> {
        let (mut cname, addr, mx, rest) = partition(idx, list);
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
            let mut out = match &self.weighted {
                Some(w) if matches!(ctx.req.qtype, 1 | 28 | 33) && s != 2 => {
                    Self::weighted_order(w, ctx.resp, &idx, &list)
                }
                Some(_) => list.clone(),
                None => Self::round_robin(&idx, &list),
            };
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Builder, Name};

    #[test]
    fn weight_file_parse_errors() {
        let ok = parse_weights(
            "# c\nw.example\n192.0.2.1 100\n192.0.2.2 1\n\nv.example.\n2001:db8::1 5\n",
            "wf",
        )
        .expect("ok");
        assert_eq!(ok["w.example."].len(), 2);
        assert_eq!(ok["v.example."][0].1, 5);
        assert_eq!(
            parse_weights("192.0.2.1\n", "wf").expect_err("e"),
            "wrong domain name:\"192.0.2.1\" in weight file wf. (Maybe a missing weight value?)"
        );
        assert_eq!(
            parse_weights("192.0.2.1 3\n", "wf").expect_err("e"),
            "missing domain name in weight file wf"
        );
        assert_eq!(
            parse_weights("a.\nx 3\n", "wf").expect_err("e"),
            "wrong IP address:\"x\" in weight file wf"
        );
        assert_eq!(
            parse_weights("a.\n192.0.2.1 0\n", "wf").expect_err("e"),
            "wrong weight value:\"0\" in weight file wf"
        );
        assert_eq!(
            parse_weights("a.\n192.0.2.1 300\n", "wf").expect_err("e"),
            "wrong weight value:\"300\" in weight file wf"
        );
        assert_eq!(
            parse_weights("a b c\n", "wf").expect_err("e"),
            "could not parse weight line:\"a b c\" in weight file wf"
        );
    }

    #[test]
    fn heavy_address_comes_first() {
        let w = Weights {
            file: "wf".into(),
            domains: arc_swap::ArcSwap::from_pointee(
                parse_weights(
                    "w.example.\n192.0.2.1 255\n192.0.2.2 1\n192.0.2.3 1\n",
                    "wf",
                )
                .expect("ok"),
            ),
            last: std::sync::Mutex::new(Vec::new()),
        };
        let mut q = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        q.extend_from_slice(Name::parse("w.example.").expect("n").wire());
        q.extend_from_slice(&[0, 1, 0, 1]);
        let crate::wire::Verdict::Query(req) = crate::wire::parse_query(&q) else {
            panic!("query")
        };
        let mut buf = Vec::new();
        let mut b = Builder::reply(&mut buf, &req);
        for last in [3u8, 2, 1] {
            b.rr_wire(req.qname.wire(), 1, 1, 60, &[192, 0, 2, last]);
        }
        b.finish();
        let idx = MsgIndex::parse(&buf).expect("idx");
        let list: Vec<usize> = (0..3).collect();
        let mut first_is_heavy = 0;
        for _ in 0..500 {
            let order = Loadbalance::weighted_order(&w, &buf, &idx, &list);
            if Loadbalance::ip_of(&buf, &idx, order[0]) == Some(IpAddr::from([192, 0, 2, 1])) {
                first_is_heavy += 1;
            }
        }
        // Expected 255/257 of the time.
        assert!(first_is_heavy > 470, "{first_is_heavy}");
    }
}
