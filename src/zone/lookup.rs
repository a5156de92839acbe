//! The *file* plugin's lookup, rule for rule (CoreDNS `plugin/file/lookup.go`):
//! apex SOA/NS, the walk from the apex down (DNAME substitution, referrals with
//! glue, DS at the parent side), CNAME chasing inside the zone, wildcards
//! (RFC 4592, with CoreDNS's handling of empty non-terminals), NODATA and
//! NXDOMAIN with the SOA, NSEC records of pre-signed zones for DO queries, and
//! additional A/AAAA for in-zone MX/SRV/SVCB/HTTPS targets.
//!
//! The result is a [`Plan`]: references into the zone, written later by
//! [`Plan::write`]. Plans are reused, so a lookup allocates nothing once its
//! vectors have grown.
//!
//! CoreDNS's "self-lookup" of CNAME targets (re-entering the server) is
//! emulated for targets inside the zones the caller can resolve. A target
//! elsewhere needs the server: the lookup leaves it in [`Plan::wanted`], the
//! caller asks the server ([`crate::server::reentry`]) and runs the lookup
//! again with the reply in [`Plan::fetched`].

use std::sync::Arc;

use super::{Zone, in_zone, name_len};
use crate::wire::{Builder, Name, SectionKind, be16};

/// CoreDNS's lookup `Result`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Res {
    /// An answer (possibly empty for an empty non-terminal).
    Success,
    /// NXDOMAIN.
    NameError,
    /// A referral.
    Delegation,
    /// NODATA.
    NoData,
    /// SERVFAIL.
    ServerFailure,
}

/// A piece of a section: records of one zone, or a synthesised CNAME.
#[derive(Debug, Clone, Copy)]
pub enum Entry {
    /// Records `start..end` of a node (or of the apex list).
    Rrs {
        /// Zone: 0 the primary, `k` = `Plan::others[k - 1]`.
        z: u8,
        /// The records are apex records.
        apex: bool,
        /// Node (tree records).
        node: u32,
        /// First record.
        start: u32,
        /// Past the last record.
        end: u32,
        /// Only RRSIGs covering this type (0: every record).
        covered: u16,
        /// Owner override: 0 = stored owner, `k` = `Plan::names[k - 1]`.
        owner: u16,
    },
    /// The answer records of [`Plan::fetched`].
    Fetched,
    /// A CNAME synthesised from a DNAME (RFC 6672 §3.1).
    Cname {
        /// Owner (`Plan::names` index).
        owner: u16,
        /// Target (`Plan::names` index).
        target: u16,
        /// TTL of the DNAME.
        ttl: u32,
    },
}

/// A looked-up answer: the three sections as references, and the result.
#[derive(Debug, Default)]
pub struct Plan {
    /// Answer section.
    pub answer: Vec<Entry>,
    /// Authority section.
    pub ns: Vec<Entry>,
    /// Additional section.
    pub extra: Vec<Entry>,
    /// Names the entries refer to.
    pub names: Vec<Name>,
    /// Other zones the entries refer to (CNAME targets in sibling zones).
    pub others: Vec<Arc<Zone>>,
    /// A self-lookup the lookup needed and did not have in `fetched`: its
    /// name, type and nesting depth. The result is then a placeholder.
    pub wanted: Option<(Name, u16, u8)>,
    /// The server's reply to a self-lookup, set by the caller before it runs
    /// the lookup again (kept by [`Plan::clear`]).
    pub fetched: Option<Fetched>,
    /// The wildcard that synthesized the answer, if one did (CoreDNS's
    /// `zone/wildcard` metadata; the last one of a CNAME chain).
    pub wildcard: Option<Name>,
    seen: Vec<Name>,
}

/// The server's reply to a self-lookup, as CoreDNS's `doLookup` uses it: the
/// answer records and the rcode.
#[derive(Debug)]
pub struct Fetched {
    name: Name,
    qtype: u16,
    /// Answer records only, names in full (`None`: the server wrote nothing).
    msg: Option<Vec<u8>>,
    rcode: u16,
}

impl Fetched {
    /// The reply `reply` to the self-lookup of `name` (lowercase) and `qtype`.
    pub fn new(name: Name, qtype: u16, reply: Option<&[u8]>) -> Self {
        let mut msg = None;
        let mut rcode = 0;
        if let Some(m) = reply {
            if let Some(idx) = crate::wire::MsgIndex::parse(m) {
                rcode = idx.full_rcode(m);
                let order: Vec<usize> = (0..idx.rrs.len())
                    .filter(|&i| idx.rrs[i].section == 1)
                    .collect();
                let opts = crate::wire::index::Rebuild {
                    compress: false,
                    limit: None,
                    reserve: 0,
                };
                let mut out = Vec::with_capacity(m.len());
                crate::wire::index::rebuild(m, &idx, &order, opts, &mut out);
                msg = Some(out);
            } else {
                // A reply that does not parse counts as no reply.
                rcode = 2;
            }
        }
        Self {
            name,
            qtype,
            msg,
            rcode,
        }
    }

    /// A self-lookup that could not be asked (CoreDNS's `Lookup` error).
    pub fn failed(name: Name, qtype: u16) -> Self {
        Self {
            name,
            qtype,
            msg: None,
            rcode: 2,
        }
    }

    fn is_for(&self, name: &Name, qtype: u16) -> bool {
        self.qtype == qtype && self.name == *name
    }

    fn each(&self, f: &mut RrVisitor<'_>) {
        let Some(m) = &self.msg else { return };
        let Some(idx) = crate::wire::MsgIndex::parse(m) else {
            return;
        };
        for rr in idx.section(1) {
            let own = &m[rr.start as usize..rr.fixed as usize];
            f(own, rr.rtype, rr.class, rr.ttl, &m[rr.rdata()]);
        }
    }
}

/// Finds the zone that serves a name, for CNAME targets outside the zone
/// being looked up (CoreDNS re-enters the server for them).
pub type Resolver<'a> = &'a dyn Fn(&Name) -> Option<Arc<Zone>>;

/// What a lookup carries down its nested lookups.
#[derive(Clone, Copy)]
struct Cx<'a> {
    /// The zone the query was for (entry zone 0).
    root: &'a Zone,
    resolve: Resolver<'a>,
    qtype: u16,
    do_: bool,
}

/// Called with each record: owner, type, class, TTL, RDATA.
type RrVisitor<'a> = dyn FnMut(&[u8], u16, u16, u32, &[u8]) + 'a;

/// Deepest nested lookup (CoreDNS's `loop > 8` check).
const MAX_DEPTH: u8 = 8;

impl Plan {
    /// Empties the plan for a new lookup, keeping its memory.
    pub fn clear(&mut self) {
        self.answer.clear();
        self.ns.clear();
        self.extra.clear();
        self.names.clear();
        self.others.clear();
        self.wanted = None;
        self.wildcard = None;
        self.seen.clear();
    }

    fn name(&mut self, n: Name) -> u16 {
        self.names.push(n);
        self.names.len() as u16
    }

    fn zone<'a>(&'a self, primary: &'a Zone, z: u8) -> &'a Zone {
        if z == 0 {
            primary
        } else {
            &self.others[z as usize - 1]
        }
    }

    /// Calls `f(owner, rr, rdata)` for each record of `e`.
    fn each(&self, primary: &Zone, e: &Entry, f: &mut RrVisitor<'_>) {
        match *e {
            Entry::Rrs {
                z,
                apex,
                node,
                start,
                end,
                covered,
                owner,
            } => {
                let zone = self.zone(primary, z);
                for i in start..end {
                    let (own, rr) = if apex {
                        let a = &zone.apex[i as usize];
                        let o = &zone.arena
                            [a.owner_off as usize..a.owner_off as usize + a.owner_len as usize];
                        (o, &a.rr)
                    } else {
                        let rr = zone.rr(i);
                        (zone.rr_owner(&zone.nodes[node as usize], rr), rr)
                    };
                    let rd = zone.rr_rdata(rr);
                    if covered != 0 && (rd.len() < 2 || be16(rd, 0) != covered) {
                        continue;
                    }
                    let own = if owner == 0 {
                        own
                    } else {
                        self.names[owner as usize - 1].wire()
                    };
                    f(own, rr.rtype, rr.class, rr.ttl, rd);
                }
            }
            Entry::Cname { owner, target, ttl } => {
                let o = self.names[owner as usize - 1].wire();
                let t = self.names[target as usize - 1].wire();
                f(o, 5, 1, ttl, t);
            }
            Entry::Fetched => {
                if let Some(fe) = &self.fetched {
                    fe.each(f);
                }
            }
        }
    }

    /// Number of records in `entries`.
    pub fn count(&self, primary: &Zone, entries: &[Entry]) -> usize {
        let mut n = 0;
        for e in entries {
            self.each(primary, e, &mut |_, _, _, _, _| n += 1);
        }
        n
    }

    /// Writes the three sections into `b`.
    pub fn write(&self, primary: &Zone, b: &mut Builder<'_>) {
        for (sec, list) in [
            (SectionKind::Answer, &self.answer),
            (SectionKind::Authority, &self.ns),
            (SectionKind::Additional, &self.extra),
        ] {
            b.section(sec);
            for e in list {
                self.each(primary, e, &mut |o, t, c, ttl, rd| {
                    b.rr_wire(o, t, c, ttl, rd)
                });
            }
        }
    }

    /// Every record as text (tests).
    pub fn sections_text(&self, primary: &Zone) -> [Vec<String>; 3] {
        let mut out: [Vec<String>; 3] = Default::default();
        for (k, list) in [&self.answer, &self.ns, &self.extra]
            .into_iter()
            .enumerate()
        {
            for e in list {
                self.each(primary, e, &mut |o, t, c, ttl, rd| {
                    let owner = Name::from_wire(o).unwrap_or_default();
                    out[k].push(super::text::rr_to_string(&owner, t, c, ttl, rd));
                });
            }
        }
        out
    }
}

/// The lowercase wire name `*.` + `parent`, if it fits.
fn wildcard_of(parent: &[u8]) -> Option<Name> {
    let mut w = [0u8; 255];
    if parent.len() + 2 > 255 {
        return None;
    }
    w[0] = 1;
    w[1] = b'*';
    w[2..2 + parent.len()].copy_from_slice(parent);
    Name::from_wire(&w[..2 + parent.len()]).ok()
}

/// The name without its leftmost label.
fn parent(w: &[u8]) -> &[u8] {
    if w.first().is_none_or(|&l| l == 0) {
        w
    } else {
        &w[1 + w[0] as usize..]
    }
}

impl Zone {
    fn entry(&self, z: u8, node: u32, rtype: u16) -> Option<Entry> {
        let (start, end) = self.type_range(node, rtype);
        (start < end).then_some(Entry::Rrs {
            z,
            apex: false,
            node,
            start,
            end,
            covered: 0,
            owner: 0,
        })
    }

    fn sigs(&self, z: u8, node: u32, covered: u16) -> Option<Entry> {
        let (start, end) = self.type_range(node, 46);
        (start < end).then_some(Entry::Rrs {
            z,
            apex: false,
            node,
            start,
            end,
            covered,
            owner: 0,
        })
    }

    fn apex_entry(z: u8, (start, end): (usize, usize)) -> Option<Entry> {
        (start < end).then_some(Entry::Rrs {
            z,
            apex: true,
            node: 0,
            start: start as u32,
            end: end as u32,
            covered: 0,
            owner: 0,
        })
    }

    /// CoreDNS `Apex.soa(do)`.
    fn soa_entries(&self, z: u8, do_: bool, out: &mut Vec<Entry>) {
        if let Some(s) = self.soa {
            out.extend(Self::apex_entry(z, (s, s + 1)));
        }
        if do_ {
            out.extend(Self::apex_entry(z, self.sig_soa));
        }
    }

    /// CoreDNS `Apex.ns(do)`.
    fn ns_entries(&self, z: u8, do_: bool, out: &mut Vec<Entry>) {
        out.extend(Self::apex_entry(z, self.ns));
        if do_ {
            out.extend(Self::apex_entry(z, self.sig_ns));
        }
    }

    /// CoreDNS `Zone.authority`: the SOA for negative results, else the NS.
    fn authority(&self, z: u8, do_: bool, res: Res, out: &mut Vec<Entry>) {
        match res {
            Res::NameError | Res::NoData => self.soa_entries(z, do_, out),
            _ => self.ns_entries(z, do_, out),
        }
    }

    /// `typeFromElem`: records of `rtype` at `node` and, with DO, their RRSIGs.
    fn type_from_elem(&self, z: u8, node: u32, rtype: u16, do_: bool, out: &mut Vec<Entry>) {
        out.extend(self.entry(z, node, rtype));
        if do_ {
            out.extend(self.sigs(z, node, rtype));
        }
    }

    /// A then AAAA (with their RRSIGs when DO) of each target, in order.
    fn addresses(&self, z: u8, p: &mut Plan, start: usize, do_: bool) {
        for k in start..p.seen.len() {
            if let Some(n) = self.search(p.seen[k].wire()) {
                for addr in [1u16, 28] {
                    if let Some(e) = self.entry(z, n, addr) {
                        p.extra.push(e);
                        if do_ {
                            p.extra.extend(self.sigs(z, n, addr));
                        }
                    }
                }
            }
        }
        p.seen.truncate(start);
    }

    /// CoreDNS `tree.Glue` over `list[range]`: addresses of each NS target
    /// below the NS owner, in NS order, not deduplicated.
    fn glue(&self, cx: Cx<'_>, z: u8, p: &mut Plan, range: std::ops::Range<usize>, in_ns: bool) {
        let mut seen = std::mem::take(&mut p.seen);
        let start = seen.len();
        let list = if in_ns { &p.ns } else { &p.answer };
        for e in &list[range] {
            p.each(cx.root, e, &mut |owner, t, _, _, rd| {
                if t == 2 && in_zone(rd, owner) {
                    if let Ok(n) = Name::from_wire(rd) {
                        seen.push(n.to_lowercase());
                    }
                }
            });
        }
        p.seen = seen;
        self.addresses(z, p, start, cx.do_);
    }

    /// CoreDNS `additionalProcessing` over `p.answer[from..]`: addresses of
    /// in-zone MX/SRV/SVCB/HTTPS targets, each target once.
    fn additional(&self, cx: Cx<'_>, z: u8, p: &mut Plan, from: usize) {
        let mut seen = std::mem::take(&mut p.seen);
        let start = seen.len();
        let origin = self.origin.wire();
        for e in &p.answer[from..] {
            p.each(cx.root, e, &mut |_, t, _, _, rd| {
                let off = match t {
                    15 | 64 | 65 => 2,
                    33 => 6,
                    _ => return,
                };
                let Some(w) = rd.get(off..) else { return };
                let Some(l) = name_len(w) else { return };
                let w = &w[..l];
                if !in_zone(w, origin) {
                    return;
                }
                let Ok(n) = Name::from_wire(w) else { return };
                let n = n.to_lowercase();
                if !seen[start..].contains(&n) {
                    seen.push(n);
                }
            });
        }
        p.seen = seen;
        self.addresses(z, p, start, cx.do_);
    }

    /// CoreDNS `delegationFromElem`: NS at `node` (not a DS query for the cut
    /// itself) → referral NS (+DS and its RRSIGs with DO) and glue.
    fn delegation_from(&self, cx: Cx<'_>, z: u8, p: &mut Plan, node: u32, qname: &[u8]) -> bool {
        let Some(ns) = self.entry(z, node, 2) else {
            return false;
        };
        if cx.qtype == 43 && self.node_name(node) == qname {
            return false;
        }
        let at = p.ns.len();
        p.ns.push(ns);
        self.glue(cx, z, p, at..at + 1, true);
        if cx.do_ {
            self.type_from_elem(z, node, 43, true, &mut p.ns);
        }
        true
    }

    /// CoreDNS `nameFromRight`: the origin plus `i` more labels of `q` (the
    /// rightmost labels of `q`), or `None` past the whole name.
    fn name_from_right<'q>(&self, q: &'q [u8], i: usize) -> Option<&'q [u8]> {
        let mut offs = [0u8; 128];
        let n = super::label_offsets(q, &mut offs);
        let want = self.origin_labels + i;
        if want > n {
            return None;
        }
        if want == 0 {
            return Some(&q[q.len() - 1..]);
        }
        Some(&q[offs[n - want] as usize..])
    }

    /// CoreDNS `findDelegation`: the first zone cut between the apex and `qname`.
    fn find_delegation(
        &self,
        cx: Cx<'_>,
        z: u8,
        p: &mut Plan,
        qname: &[u8],
        exact: Option<u32>,
    ) -> bool {
        for i in 1.. {
            let Some(name) = self.name_from_right(qname, i) else {
                return false;
            };
            if name == qname {
                return exact.is_some_and(|n| self.delegation_from(cx, z, p, n, qname));
            }
            if let Some(n) = self.search(name) {
                if self.delegation_from(cx, z, p, n, qname) {
                    return true;
                }
            }
        }
        false
    }

    /// CoreDNS `closerENTExists`: an empty non-terminal strictly between the
    /// wildcard's parent and `qname` (the qname itself is not checked).
    fn closer_ent_exists(&self, qname: &[u8], wildcard: &[u8]) -> bool {
        let par = parent(wildcard);
        let mut name = qname;
        loop {
            let next = parent(name);
            // miekg's NextLabel stops at the last label: the root is never visited.
            if next == name || next == [0] {
                return false;
            }
            name = next;
            if name == par || !in_zone(name, par) {
                return false;
            }
            if self.has_descendant(name) {
                return true;
            }
        }
    }

    /// CoreDNS `ClosestEncloser`.
    fn closest_encloser(&self, qname: &[u8]) -> Option<u32> {
        let mut q = qname;
        while q.first().is_some_and(|&l| l != 0) && parent(q) != [0] {
            if let Some(n) = self.search(q) {
                return Some(n);
            }
            q = parent(q);
        }
        self.search(self.origin.wire())
    }

    /// Looks up `qname` (lowercase) and `qtype` into `p` (cleared first).
    /// `resolve` finds the zone for CNAME targets outside this one.
    pub fn lookup(
        &self,
        p: &mut Plan,
        qname: &Name,
        qtype: u16,
        do_: bool,
        resolve: Resolver<'_>,
        depth: u8,
    ) -> Res {
        p.clear();
        let cx = Cx {
            root: self,
            resolve,
            qtype,
            do_,
        };
        self.lookup_in(cx, 0, p, qname, depth)
    }

    fn lookup_in(&self, cx: Cx<'_>, z: u8, p: &mut Plan, qname: &Name, depth: u8) -> Res {
        let (qtype, do_) = (cx.qtype, cx.do_);
        if self.soa.is_none() {
            return Res::ServerFailure;
        }
        let q = qname.wire();
        if q == self.origin.wire() {
            match qtype {
                6 => {
                    self.soa_entries(z, do_, &mut p.answer);
                    self.ns_entries(z, do_, &mut p.ns);
                    return Res::Success;
                }
                2 => {
                    let at = p.answer.len();
                    self.ns_entries(z, do_, &mut p.answer);
                    let end = p.answer.len();
                    self.glue(cx, z, p, at..end, false);
                    return Res::Success;
                }
                _ => {}
            }
        }
        if depth > MAX_DEPTH {
            return Res::ServerFailure;
        }
        let mut found: Option<u32> = None;
        let mut wild: Option<(Option<u32>, Name)> = None;
        let mut i = 0;
        while let Some(parts) = self.name_from_right(q, i) {
            i += 1;
            let Some(n) = self.search(parts) else {
                found = None;
                // The first name is the origin: the wildcard of its parent is
                // outside the zone, never found and with nothing below it.
                if parts != [0] && i > 1 {
                    if let Some(w) = wildcard_of(parent(parts)) {
                        if let Some(wn) = self.search(w.wire()) {
                            wild = Some((Some(wn), w));
                        } else if self.has_descendant(w.wire()) {
                            wild = Some((None, w));
                        }
                    }
                }
                continue;
            };
            found = Some(n);
            let (ds, de) = self.type_range(n, 39);
            if ds < de && parts != q {
                let drr = *self.rr(ds);
                // RFC 6672 §2.2: the owner's labels of the qname become the target.
                let prefix = &q[..q.len() - parts.len()];
                let mut w = [0u8; 512];
                let dt = self.rr_rdata(&drr);
                let tl = prefix.len() + dt.len();
                if tl > w.len() {
                    return Res::ServerFailure;
                }
                w[..prefix.len()].copy_from_slice(prefix);
                w[prefix.len()..tl].copy_from_slice(dt);
                let Ok(target) = Name::from_wire(&w[..tl]) else {
                    return Res::ServerFailure;
                };
                if target.eq_ignore_case(qname) {
                    return Res::ServerFailure;
                }
                p.answer.push(Entry::Rrs {
                    z,
                    apex: false,
                    node: n,
                    start: ds,
                    end: de,
                    covered: 0,
                    owner: 0,
                });
                if do_ {
                    p.answer.extend(self.sigs(z, n, 39));
                }
                let owner = p.name(qname.clone());
                let target = p.name(target);
                let cname = Entry::Cname {
                    owner,
                    target,
                    ttl: drr.ttl,
                };
                if qtype == 5 {
                    p.answer.push(cname);
                    self.ns_entries(z, do_, &mut p.ns);
                    return Res::Success;
                }
                return self.external(cx, z, p, n, cname, depth + 1);
            }
            if self.delegation_from(cx, z, p, n, q) {
                return Res::Delegation;
            }
        }

        if let Some(n) = found {
            if qtype != 5 {
                if let Some(c) = self.entry(z, n, 5) {
                    return self.external(cx, z, p, n, c, depth + 1);
                }
            }
            let Some(rrs) = self.entry(z, n, qtype) else {
                self.soa_entries(z, do_, &mut p.ns);
                if do_ {
                    self.type_from_elem(z, n, 47, true, &mut p.ns);
                }
                return Res::NoData;
            };
            let from = p.answer.len();
            p.answer.push(rrs);
            self.additional(cx, z, p, from);
            if do_ {
                p.answer.extend(self.sigs(z, n, qtype));
            }
            self.ns_entries(z, do_, &mut p.ns);
            return Res::Success;
        }

        if let Some((wnode, wname)) = wild {
            if !self.closer_ent_exists(q, wname.wire()) {
                let Some(w) = wnode else {
                    self.soa_entries(z, do_, &mut p.ns);
                    return Res::NoData;
                };
                p.wildcard = Some(wname);
                let qn = p.name(qname.clone());
                let as_q = |e: Option<Entry>| {
                    e.map(|mut e| {
                        if let Entry::Rrs { owner, .. } = &mut e {
                            *owner = qn;
                        }
                        e
                    })
                };
                if qtype != 5 {
                    if let Some(c) = as_q(self.entry(z, w, 5)) {
                        return self.external(cx, z, p, w, c, depth + 1);
                    }
                }
                let Some(rrs) = as_q(self.entry(z, w, qtype)) else {
                    self.soa_entries(z, do_, &mut p.ns);
                    if do_ {
                        self.type_from_elem(z, w, 47, true, &mut p.ns);
                    }
                    return Res::NoData;
                };
                let from = p.answer.len();
                p.answer.push(rrs);
                self.additional(cx, z, p, from);
                self.ns_entries(z, do_, &mut p.ns);
                if do_ {
                    if let Some(deny) = self.floor(q) {
                        self.type_from_elem(z, deny, 47, true, &mut p.ns);
                    }
                    p.answer.extend(as_q(self.sigs(z, w, qtype)));
                }
                return Res::Success;
            }
        }

        // Not found. A name with names below it is an empty non-terminal:
        // NOERROR with the same authority (CoreDNS's "hacky" ENT handling).
        let rcode = if self.has_descendant(q) {
            Res::Success
        } else {
            Res::NameError
        };
        self.soa_entries(z, do_, &mut p.ns);
        if do_ {
            if let Some(deny) = self.floor(q) {
                self.type_from_elem(z, deny, 47, true, &mut p.ns);
                if rcode == Res::NameError {
                    let ss = self
                        .closest_encloser(q)
                        .and_then(|ce| wildcard_of(self.node_name(ce)))
                        .and_then(|w| self.floor(w.wire()));
                    if let Some(ss) = ss {
                        if self.node_name(ss) != self.node_name(deny) {
                            self.type_from_elem(z, ss, 47, true, &mut p.ns);
                        }
                    }
                }
            }
        }
        rcode
    }

    /// The target of the first CNAME of `e`.
    fn cname_target(cx: Cx<'_>, p: &Plan, e: &Entry) -> Option<Name> {
        let mut t = None;
        p.each(cx.root, e, &mut |_, rt, _, _, rd| {
            if rt == 5 && t.is_none() {
                t = Name::from_wire(rd).ok();
            }
        });
        t
    }

    /// One step of the chase: the node of `target`, or the final result when
    /// the target is delegated or must be looked up anew.
    fn chase_step(
        &self,
        cx: Cx<'_>,
        z: u8,
        p: &mut Plan,
        target: &Name,
        from: usize,
        depth: u8,
    ) -> Result<u32, Res> {
        let tl = target.to_lowercase();
        let node = self.search(tl.wire());
        if self.find_delegation(cx, z, p, tl.wire(), node) {
            return Err(Res::Delegation);
        }
        match node {
            Some(n) if !(cx.qtype == 2 || (cx.qtype == 6 && tl.wire() == self.origin.wire())) => {
                Ok(n)
            }
            _ => {
                let res = self.self_lookup(cx, z, p, target, depth);
                self.authority(z, cx.do_, res, &mut p.ns);
                self.additional(cx, z, p, from);
                Err(res)
            }
        }
    }

    /// CoreDNS `externalLookup`: the CNAME (chain) and whatever its target gives.
    fn external(&self, cx: Cx<'_>, z: u8, p: &mut Plan, elem: u32, first: Entry, depth: u8) -> Res {
        let from = p.answer.len();
        p.answer.push(first);
        if cx.do_ {
            p.answer.extend(self.sigs(z, elem, 5));
        }
        let done = |this: &Self, p: &mut Plan| {
            this.ns_entries(z, cx.do_, &mut p.ns);
            this.additional(cx, z, p, from);
            Res::Success
        };
        let Some(target) = Self::cname_target(cx, p, &first) else {
            return done(self, p);
        };
        let mut node = match self.chase_step(cx, z, p, &target, from, depth) {
            Ok(n) => n,
            Err(res) => return res,
        };
        // CoreDNS repeats the CNAMEs of a loop up to its hop limit; the
        // verified behaviour (plugins.md) lists each CNAME once.
        let mut visited = [elem; 10];
        let mut nvisited = 1;
        let mut hops = 0;
        loop {
            let Some(c) = self.entry(z, node, 5) else {
                if let Some(t) = self.entry(z, node, cx.qtype) {
                    p.answer.push(t);
                    if cx.do_ {
                        p.answer.extend(self.sigs(z, node, cx.qtype));
                    }
                }
                return done(self, p);
            };
            if visited[..nvisited].contains(&node) {
                return done(self, p);
            }
            if nvisited < visited.len() {
                visited[nvisited] = node;
                nvisited += 1;
            }
            p.answer.push(c);
            if cx.do_ {
                p.answer.extend(self.sigs(z, node, 5));
            }
            let Some(target) = Self::cname_target(cx, p, &c) else {
                return done(self, p);
            };
            node = match self.chase_step(cx, z, p, &target, from, depth) {
                Ok(n) => n,
                Err(res) => return res,
            };
            hops += 1;
            if hops > 8 {
                return done(self, p);
            }
        }
    }

    /// `doLookup` for a target only the server can answer: the reply fetched
    /// for it, or, without one, the target left in `p.wanted` (the result is
    /// then a placeholder).
    fn server_lookup(cx: Cx<'_>, p: &mut Plan, target: &Name, depth: u8) -> Res {
        let Some(f) = p.fetched.as_ref().filter(|f| f.is_for(target, cx.qtype)) else {
            p.wanted.get_or_insert((target.clone(), cx.qtype, depth));
            return Res::ServerFailure;
        };
        let rcode = f.rcode;
        let Some(msg) = &f.msg else {
            // No message: a lookup that failed, or a server that wrote nothing
            // (CoreDNS reads the latter as a success).
            return if rcode == 2 {
                Res::ServerFailure
            } else {
                Res::Success
            };
        };
        let answers = crate::wire::hdr::counts(msg)[1];
        if answers > 0 {
            p.answer.push(Entry::Fetched);
        }
        match rcode {
            3 => Res::NameError,
            2 => Res::ServerFailure,
            0 if answers == 0 => Res::NoData,
            _ => Res::Success,
        }
    }

    /// CoreDNS `doLookup` through `upstream.Lookup`: the target as a new query
    /// to the server; its answer records join ours, its other sections are
    /// dropped, and its rcode maps to a result.
    /// `target` is the CNAME's target as written (the server is asked in that
    /// case, as CoreDNS asks).
    fn self_lookup(&self, cx: Cx<'_>, z: u8, p: &mut Plan, target: &Name, depth: u8) -> Res {
        let (ns_at, extra_at, ans_at) = (p.ns.len(), p.extra.len(), p.answer.len());
        let written = target;
        let target = &target.to_lowercase();
        let other = (cx.resolve)(target);
        let mine = in_zone(target.wire(), self.origin.wire())
            && other
                .as_ref()
                .is_none_or(|o| o.origin.len() <= self.origin.len());
        let res = if mine {
            self.lookup_in(cx, z, p, target, depth)
        } else if let Some(other) = other {
            let zi = match p.others.iter().position(|o| Arc::ptr_eq(o, &other)) {
                Some(k) => k + 1,
                None if p.others.len() < 200 => {
                    p.others.push(Arc::clone(&other));
                    p.others.len()
                }
                None => return Res::ServerFailure,
            };
            other.lookup_in(cx, zi as u8, p, target, depth)
        } else {
            return Self::server_lookup(cx, p, written, depth);
        };
        p.ns.truncate(ns_at);
        p.extra.truncate(extra_at);
        match res {
            Res::ServerFailure | Res::NameError => res,
            _ if p.count(cx.root, &p.answer[ans_at..]) == 0 => Res::NoData,
            _ => Res::Success,
        }
    }
}
