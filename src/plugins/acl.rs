//! *acl*: allows, blocks (REFUSED), filters (empty NOERROR) or drops queries by
//! query type and client address, per zone (plugins.md B).
//!
//! Rules (each `acl` line) run in Corefile order. In a rule whose zones hold the
//! query name, the first policy whose type set and address set both hold the query
//! decides; a rule with no matching policy passes the query to the next rule, and a
//! query no rule decides is allowed. Block and filter replies carry an OPT (4096,
//! DO set) with an Extended DNS Error (15 Blocked, 17 Filtered), also for a client
//! that sent no OPT, as CoreDNS writes them.
//!
//! CoreDNS: `plugin/acl/acl.go`, `setup.go`, `metrics.go`; addresses are matched
//! as `go-trees/iptree` does (an IPv4 client against IPv4 networks only, an IPv6
//! client against IPv6 networks only).

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use corefile::values::go_quote;
use corefile::{Diagnostic, Dispenser};

use crate::chain::{Ctx, Flow, Status};
use crate::config::SetupCtx;
use crate::metrics::{Families, add};
use crate::wire::{Name, SectionKind};

/// What a policy does with a query it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The rest of the chain answers.
    Allow,
    /// REFUSED with EDE 15.
    Block,
    /// Empty NOERROR with EDE 17.
    Filter,
    /// No reply at all.
    Drop,
}

/// Client networks of a policy (`go-trees/iptree`: IPv4 and IPv6 kept apart).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Nets {
    /// `net *` or no `net` section: every address.
    pub all: bool,
    /// IPv4 networks: (address, prefix length).
    pub v4: Vec<(u32, u8)>,
    /// IPv6 networks (IPv4-mapped ones included: they match no IPv4 client).
    pub v6: Vec<(u128, u8)>,
}

impl Nets {
    fn contains(&self, ip: IpAddr) -> bool {
        if self.all {
            return true;
        }
        // Go's `To4`: an IPv4-mapped IPv6 address is an IPv4 address.
        let ip = match ip {
            IpAddr::V6(a) => a.to_ipv4_mapped().map_or(IpAddr::V6(a), IpAddr::V4),
            v4 => v4,
        };
        match ip {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                self.v4.iter().any(|&(n, bits)| masked32(a, bits) == n)
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                self.v6.iter().any(|&(n, bits)| masked128(a, bits) == n)
            }
        }
    }
}

fn masked32(a: u32, bits: u8) -> u32 {
    if bits == 0 {
        0
    } else {
        a & (u32::MAX << (32 - u32::from(bits)))
    }
}

fn masked128(a: u128, bits: u8) -> u128 {
    if bits == 0 {
        0
    } else {
        a & (u128::MAX << (128 - u32::from(bits)))
    }
}

/// One line of an `acl` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// What it does.
    pub action: Action,
    /// Query types it applies to; `None` = every type (`type *`, `type None` or no
    /// `type` section: miekg's `TypeNone`, 0).
    pub qtypes: Option<Vec<u16>>,
    /// Client networks it applies to.
    pub nets: Nets,
}

/// One `acl` directive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Normalised zones (the block's keys when none are given).
    pub zones: Vec<String>,
    /// Policies in order.
    pub policies: Vec<Policy>,
}

/// Parsed configuration: every `acl` directive of the block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AclConfig {
    /// Rules in Corefile order.
    pub rules: Vec<Rule>,
}

fn is_section(t: &str) -> bool {
    t.eq_ignore_ascii_case("type") || t.eq_ignore_ascii_case("net")
}

/// Go's `net.ParseCIDR` of a token (after CoreDNS's `normalize`), as an IPv4 or
/// IPv6 network; `None` where Go returns an error.
fn parse_cidr(s: &str) -> Option<Result<(u32, u8), (u128, u8)>> {
    let (addr, mask) = s.split_once('/')?;
    // Go's `dtoi`: decimal digits only, at least one; leading zeros allowed
    // (it gives up at 0xFFFFFF).
    if mask.is_empty() || !mask.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut n: u32 = 0;
    for b in mask.bytes() {
        n = n * 10 + u32::from(b - b'0');
        if n >= 0xFF_FFFF {
            return None;
        }
    }
    // netip.ParseAddr: no zones; IPv4 without leading zeros (std refuses them too).
    if let Ok(a) = addr.parse::<Ipv4Addr>() {
        let bits = u8::try_from(n).ok().filter(|b| *b <= 32)?;
        return Some(Ok((masked32(u32::from(a), bits), bits)));
    }
    let a: Ipv6Addr = addr.parse().ok()?;
    let bits = u8::try_from(n).ok().filter(|b| *b <= 128)?;
    Some(Err((masked128(u128::from(a), bits), bits)))
}

/// CoreDNS's `normalize`: a bare address becomes a /32 or /128.
fn normalize(raw: &str) -> String {
    if raw.contains('/') {
        raw.to_owned()
    } else if raw.contains(':') {
        format!("{raw}/128")
    } else {
        format!("{raw}/32")
    }
}

/// Setup (CoreDNS `acl.parse`): every `acl` directive of the block is a rule.
pub fn setup(d: &mut Dispenser, ctx: &SetupCtx<'_>) -> Result<AclConfig, Diagnostic> {
    let w = |e: Diagnostic| e.in_plugin("acl");
    let mut c = AclConfig::default();
    while d.next() {
        let args = d.remaining_args();
        let zones = ctx.origins(&args);
        let mut policies = Vec::new();
        while d.next_block() {
            let action = match d.val().to_ascii_lowercase().as_str() {
                "allow" => Action::Allow,
                "block" => Action::Block,
                "filter" => Action::Filter,
                "drop" => Action::Drop,
                _ => {
                    return Err(w(d.err(format!(
                        "unexpected token {}; expect 'allow', 'block', 'filter' or 'drop'",
                        go_quote(d.val())
                    ))));
                }
            };
            let mut qtypes: Option<Vec<u16>> = Some(Vec::new());
            let mut nets = Nets::default();
            let (mut has_type, mut has_net) = (false, false);
            let rest = d.remaining_args();
            let mut i = 0;
            while i < rest.len() {
                if !is_section(&rest[i]) {
                    return Err(w(d.err(format!(
                        "unexpected token {}; expect 'type | net'",
                        go_quote(&rest[i])
                    ))));
                }
                let section = rest[i].to_ascii_lowercase();
                let mut j = i + 1;
                while j < rest.len() && !is_section(&rest[j]) {
                    j += 1;
                }
                let tokens = &rest[i + 1..j];
                i = j;
                if tokens.is_empty() {
                    return Err(w(d.err(format!(
                        "no token specified in {} section",
                        go_quote(&section)
                    ))));
                }
                if section == "type" {
                    has_type = true;
                    for t in tokens {
                        // `*` ends the section: the tokens after it are not read.
                        if t == "*" {
                            qtypes = None;
                            break;
                        }
                        let Some(code) = crate::wire::types::miekg_type_from_str(t) else {
                            return Err(w(d.err(format!(
                                "unexpected token {}; expect legal QTYPE",
                                go_quote(t)
                            ))));
                        };
                        if code == 0 {
                            qtypes = None;
                        } else if let Some(v) = qtypes.as_mut() {
                            v.push(code);
                        }
                    }
                } else {
                    has_net = true;
                    for t in tokens {
                        if t == "*" {
                            nets.all = true;
                            break;
                        }
                        let t = normalize(t);
                        match parse_cidr(&t) {
                            Some(Ok(n)) => nets.v4.push(n),
                            Some(Err(n)) => nets.v6.push(n),
                            None => {
                                return Err(w(
                                    d.err(format!("illegal CIDR notation {}", go_quote(&t)))
                                ));
                            }
                        }
                    }
                }
            }
            if !has_type {
                qtypes = None;
            }
            if !has_net {
                nets.all = true;
            }
            policies.push(Policy {
                action,
                qtypes,
                nets,
            });
        }
        c.rules.push(Rule { zones, policies });
    }
    Ok(c)
}

/// A rule at run time: its zones as names, each with its metrics label index.
struct RuleRt {
    zones: Vec<(Name, usize, usize)>,
    policies: Vec<Policy>,
}

/// The runtime plugin.
pub struct Acl {
    rules: Vec<RuleRt>,
    /// Zone labels, one per (rule, zone); also the key of this instance's counters.
    labels: Arc<[Arc<str>]>,
}

impl Acl {
    /// Builds it.
    pub fn new(c: &AclConfig) -> Self {
        crate::metrics::contribute(families);
        let mut labels: Vec<Arc<str>> = Vec::new();
        let rules = c
            .rules
            .iter()
            .map(|r| RuleRt {
                zones: r
                    .zones
                    .iter()
                    .filter_map(|z| {
                        let n = Name::parse(z)?;
                        labels.push(Arc::from(z.as_str()));
                        Some((n, z.len(), labels.len() - 1))
                    })
                    .collect(),
                policies: r.policies.clone(),
            })
            .collect();
        Self {
            rules,
            labels: labels.into(),
        }
    }

    /// CoreDNS `matchWithPolicies`: the first policy holding the query's type and
    /// client decides; `None` when none does.
    fn decide(policies: &[Policy], ip: IpAddr, qtype: u16) -> Option<Action> {
        policies
            .iter()
            .find(|p| p.qtypes.as_ref().is_none_or(|t| t.contains(&qtype)) && p.nets.contains(ip))
            .map(|p| p.action)
    }

    /// Request hook.
    pub fn serve(&self, ctx: &mut Ctx<'_>) -> Flow {
        let ip = ctx.peer.ip();
        let qtype = ctx.req.qtype;
        for r in &self.rules {
            // `plugin.Zones.Matches`: the longest zone holding the name (the first of
            // equal length).
            let mut zone: Option<(usize, usize)> = None;
            for (n, len, label) in &r.zones {
                if ctx.req.qname.name().is_subdomain_of(n) && zone.is_none_or(|(l, _)| *len > l) {
                    zone = Some((*len, *label));
                }
            }
            let Some((_, label)) = zone else { continue };
            match Self::decide(&r.policies, ip, qtype) {
                None => {}
                Some(Action::Allow) => break,
                Some(Action::Drop) => {
                    self.count(ctx, |c| &c.zones[label][DROPPED]);
                    return Flow::Return(Status::rcode(0));
                }
                Some(a @ (Action::Block | Action::Filter)) => {
                    let (rcode, ede, which) = if a == Action::Block {
                        (5, 15u16, BLOCKED)
                    } else {
                        (0, 17u16, FILTERED)
                    };
                    let mut b = ctx.reply();
                    b.set_rcode(rcode);
                    b.section(SectionKind::Additional);
                    // OPT: root owner, UDP size 4096, DO set; one EDE option
                    // (code 15) holding the info code and no text.
                    let mut rdata = [0u8; 6];
                    rdata[..2].copy_from_slice(&15u16.to_be_bytes());
                    rdata[2..4].copy_from_slice(&2u16.to_be_bytes());
                    rdata[4..].copy_from_slice(&ede.to_be_bytes());
                    b.rr_wire(b"\x00", 41, 4096, 0x8000, &rdata);
                    b.finish();
                    ctx.written = true;
                    self.count(ctx, |c| &c.zones[label][which]);
                    return Flow::Return(Status::rcode(0));
                }
            }
        }
        self.count(ctx, |c| &c.allowed);
        Flow::Next
    }

    fn count(&self, ctx: &Ctx<'_>, f: impl FnOnce(&Counters) -> &AtomicU64) {
        with(ctx.server, &self.labels, ctx.view, |c| {
            f(c).fetch_add(1, Ordering::Relaxed);
        });
    }
}

const BLOCKED: usize = 0;
const FILTERED: usize = 1;
const DROPPED: usize = 2;

/// One thread's counters for one (server, instance).
struct Counters {
    /// The `view` label.
    view: Arc<str>,
    /// `coredns_acl_allowed_requests_total`.
    allowed: AtomicU64,
    /// Blocked, filtered and dropped, per zone label.
    zones: Vec<[AtomicU64; 3]>,
}

type Entry = (Arc<str>, Arc<[Arc<str>]>, Arc<Counters>);

static REGISTRY: Mutex<Vec<Entry>> = Mutex::new(Vec::new());

thread_local! {
    static LOCAL: RefCell<Vec<(usize, usize, Arc<Counters>)>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on this thread's counters for (`server`, the instance whose zone labels
/// are `labels`), registering them on first use. The registry keeps both `Arc`s,
/// so their addresses stay unique keys.
fn with(server: &Arc<str>, labels: &Arc<[Arc<str>]>, view: &Arc<str>, f: impl FnOnce(&Counters)) {
    let key = (
        Arc::as_ptr(server) as *const u8 as usize,
        Arc::as_ptr(labels) as *const u8 as usize,
    );
    LOCAL.with(|l| {
        if let Ok(l) = l.try_borrow() {
            if let Some(e) = l.iter().find(|e| (e.0, e.1) == key) {
                f(&e.2);
                return;
            }
        }
        let c = Arc::new(Counters {
            view: Arc::clone(view),
            allowed: AtomicU64::new(0),
            zones: labels.iter().map(|_| Default::default()).collect(),
        });
        REGISTRY
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((Arc::clone(server), Arc::clone(labels), Arc::clone(&c)));
        if let Ok(mut l) = l.try_borrow_mut() {
            l.push((key.0, key.1, Arc::clone(&c)));
        }
        f(&c);
    });
}

const H_BLOCKED: &str = "Counter of DNS requests being blocked.";
const H_FILTERED: &str = "Counter of DNS requests being filtered.";
const H_ALLOWED: &str = "Counter of DNS requests being allowed.";
const H_DROPPED: &str = "Counter of DNS requests being dropped.";

/// Adds the acl families (a `metrics::contribute` callback): series that were
/// counted at least once, as CoreDNS's vectors create them on first use.
fn families(f: &mut Families) {
    let reg = REGISTRY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let mut allowed: Vec<(String, String, u64)> = Vec::new();
    let mut zoned: Vec<(usize, String, String, String, u64)> = Vec::new();
    for (server, labels, c) in &reg {
        let n = c.allowed.load(Ordering::Relaxed);
        if n > 0 {
            match allowed
                .iter_mut()
                .find(|e| *e.0 == **server && *e.1 == *c.view)
            {
                Some(e) => e.2 += n,
                None => allowed.push((server.to_string(), c.view.to_string(), n)),
            }
        }
        for (z, counts) in labels.iter().zip(&c.zones) {
            for (which, a) in counts.iter().enumerate() {
                let n = a.load(Ordering::Relaxed);
                if n == 0 {
                    continue;
                }
                match zoned
                    .iter_mut()
                    .find(|e| e.0 == which && *e.1 == **server && *e.2 == *c.view && *e.3 == **z)
                {
                    Some(e) => e.4 += n,
                    None => zoned.push((
                        which,
                        server.to_string(),
                        c.view.to_string(),
                        z.to_string(),
                        n,
                    )),
                }
            }
        }
    }
    for (server, view, n) in &allowed {
        let l = [("server", server.as_str()), ("view", view.as_str())];
        add(
            f,
            "coredns_acl_allowed_requests_total",
            H_ALLOWED,
            "counter",
            "",
            &l,
            *n as f64,
        );
    }
    for (which, server, view, zone, n) in &zoned {
        let (name, help) = match *which {
            BLOCKED => ("coredns_acl_blocked_requests_total", H_BLOCKED),
            FILTERED => ("coredns_acl_filtered_requests_total", H_FILTERED),
            _ => ("coredns_acl_dropped_requests_total", H_DROPPED),
        };
        let l = [
            ("server", server.as_str()),
            ("view", view.as_str()),
            ("zone", zone.as_str()),
        ];
        add(f, name, help, "counter", "", &l, *n as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BlockSettings;

    fn parse(keys: &[&str], text: &str) -> Result<AclConfig, String> {
        let mut settings = BlockSettings::default();
        let zones: Vec<String> = keys
            .iter()
            .map(|k| corefile::keys::normalize_name(k))
            .collect();
        let keys: Vec<String> = keys.iter().map(|k| format!("dns://{k}:53")).collect();
        let ctx = SetupCtx {
            keys: &keys,
            zones,
            settings: &mut settings,
            filename: "Corefile",
        };
        setup(&mut Dispenser::from_text("Corefile", text), &ctx).map_err(|e| e.to_string())
    }

    fn err(text: &str) -> String {
        match parse(&["example.org"], text) {
            Ok(_) => "ok".into(),
            Err(e) => e,
        }
    }

    #[test]
    fn setup_errors_as_coredns_words_them() {
        let e = |l: u32, m: &str| format!("plugin/acl: Corefile:{l} - Error during parsing: {m}");
        for (text, want) in [
            ("acl", "ok".to_owned()),
            ("acl {\n block\n}", "ok".into()),
            ("acl {\n Allow type A net 10.0.0.0/8\n}", "ok".into()),
            ("acl {\n block TYPE A NET 10.0.0.1 ::1\n}", "ok".into()),
            ("acl {\n block type * BOGUS\n}", "ok".into()),
            ("acl {\n block net * 300.1.1.1\n}", "ok".into()),
            ("acl {\n block net 10.0.0.0/000008\n}", "ok".into()),
            ("acl {\n block type NSAP-PTR None Reserved\n}", "ok".into()),
            (
                "acl {\n deny\n}",
                e(
                    2,
                    "unexpected token \"deny\"; expect 'allow', 'block', 'filter' or 'drop'",
                ),
            ),
            (
                "acl {\n block A\n}",
                e(2, "unexpected token \"A\"; expect 'type | net'"),
            ),
            (
                "acl {\n block type\n}",
                e(2, "no token specified in \"type\" section"),
            ),
            (
                "acl {\n block NET type A\n}",
                e(2, "no token specified in \"net\" section"),
            ),
            (
                "acl {\n block type a\n}",
                e(2, "unexpected token \"a\"; expect legal QTYPE"),
            ),
            (
                "acl {\n block type TYPE65\n}",
                e(2, "unexpected token \"TYPE65\"; expect legal QTYPE"),
            ),
            (
                "acl {\n block type NSAPPTR\n}",
                e(2, "unexpected token \"NSAPPTR\"; expect legal QTYPE"),
            ),
            (
                "acl {\n block net 10.0.0.0/33\n}",
                e(2, "illegal CIDR notation \"10.0.0.0/33\""),
            ),
            (
                "acl {\n block net 10.0.0.01\n}",
                e(2, "illegal CIDR notation \"10.0.0.01/32\""),
            ),
            (
                "acl {\n block net fe80::1%eth0\n}",
                e(2, "illegal CIDR notation \"fe80::1%eth0/128\""),
            ),
            (
                "acl {\n block net 10.0.0.0/+8\n}",
                e(2, "illegal CIDR notation \"10.0.0.0/+8\""),
            ),
            (
                "acl {\n block net 10.0.0.0/\n}",
                e(2, "illegal CIDR notation \"10.0.0.0/\""),
            ),
        ] {
            assert_eq!(err(text), want, "{text}");
        }
    }

    #[test]
    fn rules_zones_and_policies() {
        let c = parse(
            &["example.org"],
            "acl {\n block type A AAAA net 192.168.1.0/24 2001:db8::/32\n filter\n}\n\
             acl Sub.Example.ORG other.net {\n drop net 10.0.0.1/8 ::ffff:10.0.0.0/104\n allow type * x\n}\n\
             acl {\n}",
        )
        .expect("parses");
        assert_eq!(c.rules.len(), 3);
        assert_eq!(c.rules[0].zones, ["example.org."]);
        assert_eq!(c.rules[1].zones, ["sub.example.org.", "other.net."]);
        assert!(c.rules[2].policies.is_empty());
        let p = &c.rules[0].policies;
        assert_eq!(p[0].action, Action::Block);
        assert_eq!(p[0].qtypes, Some(vec![1, 28]));
        assert_eq!(p[0].nets.v4, [(0xc0a8_0100, 24)]);
        assert_eq!(p[0].nets.v6, [(0x2001_0db8u128 << 96, 32)]);
        assert_eq!(p[1].action, Action::Filter);
        assert_eq!(p[1].qtypes, None);
        assert!(p[1].nets.all);
        let p = &c.rules[1].policies;
        // Host bits are masked off, as Go's ParseCIDR does.
        assert_eq!(p[0].nets.v4, [(0x0a00_0000, 8)]);
        assert_eq!(p[0].nets.v6.len(), 1, "a mapped network stays IPv6");
        assert_eq!(p[1].qtypes, None);
    }

    #[test]
    fn networks_match_as_iptree_does() {
        let c = parse(
            &["."],
            "acl {\n block net 10.1.0.0/16 ::ffff:192.0.2.0/120 2001:db8::/126 0.0.0.0/0\n}",
        )
        .expect("parses");
        let n = &c.rules[0].policies[0].nets;
        for (ip, want) in [
            ("10.1.2.3", true),
            ("192.0.2.1", true), // by 0.0.0.0/0, not the mapped network
            ("::ffff:10.9.9.9", true),
            ("2001:db8::3", true),
            ("2001:db8::4", false),
            ("::1", false),
        ] {
            let ip: IpAddr = ip.parse().expect("ip");
            assert_eq!(n.contains(ip), want, "{ip}");
        }
        let c = parse(&["."], "acl {\n block net ::ffff:192.0.2.0/120\n}").expect("parses");
        let n = &c.rules[0].policies[0].nets;
        assert!(!n.contains("192.0.2.1".parse().expect("ip")));
        assert!(!n.contains("::ffff:192.0.2.1".parse().expect("ip")));
    }

    #[test]
    fn first_matching_policy_decides() {
        let c = parse(
            &["."],
            "acl {\n allow type A net 127.0.0.1\n block type A\n filter net 10.0.0.0/8\n}",
        )
        .expect("parses");
        let p = &c.rules[0].policies;
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert_eq!(Acl::decide(p, ip("127.0.0.1"), 1), Some(Action::Allow));
        assert_eq!(Acl::decide(p, ip("127.0.0.2"), 1), Some(Action::Block));
        assert_eq!(Acl::decide(p, ip("10.0.0.2"), 1), Some(Action::Block));
        assert_eq!(Acl::decide(p, ip("10.0.0.2"), 28), Some(Action::Filter));
        assert_eq!(Acl::decide(p, ip("::1"), 28), None);
    }
}
