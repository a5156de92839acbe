//! Authoritative zone data: the zone-file parser ([`parse`]), the immutable
//! in-memory zone ([`Zone`]) built from it or from a transfer, and the lookup
//! that answers exactly as CoreDNS's *file* plugin does ([`lookup`]).
//!
//! A zone is built once and never changed: reloads and transfers build a new
//! one and swap the `Arc`. Records live in one arena (names and RDATA in wire
//! form) with 16-byte headers grouped by owner; owners are kept in DNSSEC
//! canonical order (RFC 4034 §6.1) for the ordered lookups (NSEC, empty
//! non-terminals) and indexed by a hash table for exact ones. The apex SOA and
//! NS records are held apart, as CoreDNS's `Apex` does.
//!
//! CoreDNS: `plugin/file/zone.go` (`Insert`), `plugin/file/tree/`.

mod generate;
pub(crate) mod lex;
mod loc;
pub mod lookup;
pub mod parse;
pub(crate) mod rdata;
mod svcb;
pub mod text;

#[cfg(test)]
mod tests;

use std::cmp::Ordering;
use std::collections::HashSet;
use std::fmt;

use crate::wire::{Name, be32};
pub use lookup::{Entry, Plan, Res};
pub use parse::{ParseError, Record};

/// A record header: type, class, TTL and where its RDATA is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rr {
    /// Type.
    pub rtype: u16,
    /// Class.
    pub class: u16,
    /// TTL.
    pub ttl: u32,
    off: u32,
    len: u16,
    flags: u16,
}

/// The RDATA is preceded by the record's own owner name (an SRV record keeps
/// the owner's case, as CoreDNS's `Insert` does).
const OWN_OWNER: u16 = 1;

/// An owner name with its records (a CoreDNS tree element).
#[derive(Debug, Clone, Copy)]
struct Node {
    name_off: u32,
    rr_start: u32,
    rr_end: u32,
    name_len: u8,
}

/// An apex record: the SOA, the SOA signatures, the apex NS and their
/// signatures, each with its owner.
#[derive(Debug, Clone, Copy)]
struct ApexRr {
    owner_off: u32,
    owner_len: u8,
    rr: Rr,
}

/// Why a zone could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoadError {
    /// The zone file is malformed.
    Parse(ParseError),
    /// No SOA record (CoreDNS: `file "F" has no SOA record for origin O`).
    NoSoa {
        /// File.
        file: String,
        /// Origin.
        origin: String,
    },
    /// NSEC3 is not served (CoreDNS: `NSEC3 zone is not supported, dropping RR: …`).
    Nsec3 {
        /// Owner of the NSEC3 record.
        owner: String,
        /// Origin.
        origin: String,
    },
    /// The first SOA has the serial already loaded (a reload with nothing to do).
    NoChange {
        /// The unchanged serial.
        serial: u32,
    },
    /// The zone would exceed the arena's 4 GiB.
    TooLarge,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Parse(e) => e.fmt(f),
            Self::NoSoa { file, origin } => {
                write!(f, "file {file:?} has no SOA record for origin {origin}")
            }
            Self::Nsec3 { owner, origin } => write!(
                f,
                "NSEC3 zone is not supported, dropping RR: {owner} for zone: {origin}"
            ),
            Self::NoChange { serial } => write!(f, "no change in SOA serial {serial}"),
            Self::TooLarge => f.write_str("zone data larger than 4 GiB"),
        }
    }
}

impl std::error::Error for LoadError {}

impl From<ParseError> for LoadError {
    fn from(e: ParseError) -> Self {
        Self::Parse(e)
    }
}

/// An immutable zone.
pub struct Zone {
    origin: Name,
    origin_labels: usize,
    arena: Vec<u8>,
    nodes: Vec<Node>,
    rrs: Vec<Rr>,
    index: Vec<u32>,
    apex: Vec<ApexRr>,
    soa: Option<usize>,
    /// `apex[sig_soa.0..sig_soa.1]` etc.
    sig_soa: (usize, usize),
    ns: (usize, usize),
    sig_ns: (usize, usize),
    /// Records skipped because their owner is outside the zone (file, line, owner).
    pub skipped: Vec<(String, u32, String)>,
    /// Empty non-terminals: names in the zone with names below them but no
    /// records of their own (what `has_descendant` answers, by hash).
    ents: NameSet,
    /// The node of the origin, if it has records besides the apex's.
    apex_node: Option<u32>,
}

impl fmt::Debug for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Zone")
            .field("origin", &self.origin)
            .field("names", &self.nodes.len())
            .field("records", &self.rrs.len())
            .field("serial", &self.serial())
            .finish()
    }
}

/// Offsets of each label of `w` (wire), leftmost first; returns the count.
fn label_offsets(w: &[u8], out: &mut [u8; 128]) -> usize {
    let (mut p, mut n) = (0usize, 0usize);
    while p < w.len() && w[p] != 0 && n < 128 {
        out[n] = p as u8;
        n += 1;
        p += 1 + w[p] as usize;
    }
    n
}

/// DNSSEC canonical order of two lowercase wire names (RFC 4034 §6.1).
pub fn canon_cmp(a: &[u8], b: &[u8]) -> Ordering {
    let (mut la, mut lb) = ([0u8; 128], [0u8; 128]);
    let (na, nb) = (label_offsets(a, &mut la), label_offsets(b, &mut lb));
    let (mut i, mut j) = (na, nb);
    while i > 0 && j > 0 {
        i -= 1;
        j -= 1;
        let (pa, pb) = (la[i] as usize, lb[j] as usize);
        let x = &a[pa + 1..pa + 1 + a[pa] as usize];
        let y = &b[pb + 1..pb + 1 + b[pb] as usize];
        match x.cmp(y) {
            Ordering::Equal => {}
            o => return o,
        }
    }
    i.cmp(&j)
}

/// A sort key whose byte order is the canonical order (labels right to left,
/// each ended by `00 00`, a literal zero octet written `00 01`).
pub(crate) fn canon_key(w: &[u8], out: &mut Vec<u8>) {
    let mut l = [0u8; 128];
    let n = label_offsets(w, &mut l);
    for k in (0..n).rev() {
        let p = l[k] as usize;
        for &c in &w[p + 1..p + 1 + w[p] as usize] {
            out.push(c);
            if c == 0 {
                out.push(1);
            }
        }
        out.extend_from_slice(&[0, 0]);
    }
}

fn hash(w: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut chunks = w.chunks_exact(8);
    for c in &mut chunks {
        let mut b = [0u8; 8];
        b.copy_from_slice(c);
        h = (h ^ u64::from_le_bytes(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h ^= h >> 29;
    }
    for &c in chunks.remainder() {
        h = (h ^ u64::from(c)).wrapping_mul(0x0100_0000_01b3);
    }
    h ^ (h >> 32)
}

/// Hashes a name's wire bytes with [`hash`] (SipHash was 3 % of an
/// authoritative NXDOMAIN's CPU; the set's keys come from the zone file).
#[derive(Default)]
struct NameHasher(u64);

impl std::hash::Hasher for NameHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, b: &[u8]) {
        self.0 = self.0.rotate_left(5) ^ hash(b);
    }
    // The length prefix of a slice: the bytes' hash covers it.
    fn write_usize(&mut self, _: usize) {}
}

/// A set of wire names.
type NameSet = HashSet<Box<[u8]>, std::hash::BuildHasherDefault<NameHasher>>;

/// Length of the uncompressed wire name at the start of `w`, if well formed.
pub(crate) fn name_len(w: &[u8]) -> Option<usize> {
    let mut p = 0usize;
    loop {
        let l = *w.get(p)? as usize;
        if l == 0 {
            return (p < 255).then_some(p + 1);
        }
        if l > 63 {
            return None;
        }
        p += 1 + l;
    }
}

/// Lowercases the wire name at the start of `w` in place (length octets are
/// below `A`, so the whole range can be folded).
fn lower_name(w: &mut [u8]) {
    if let Some(n) = name_len(w) {
        w[..n].make_ascii_lowercase();
    }
}

/// The serial in a SOA record's RDATA (after the two names; the record whole).
pub fn soa_serial(rd: &[u8]) -> Option<u32> {
    let n1 = name_len(rd)?;
    let n2 = name_len(&rd[n1..])?;
    (rd.len() >= n1 + n2 + 20).then(|| be32(rd, n1 + n2))
}

/// Whether `name` equals `zone` or lies below it (case-insensitive wire).
pub fn in_zone(name: &[u8], zone: &[u8]) -> bool {
    if zone.len() > name.len() {
        return false;
    }
    if zone == [0] {
        return true;
    }
    let start = name.len() - zone.len();
    let mut p = 0usize;
    while p < start {
        p += 1 + name[p] as usize;
    }
    p == start && name[start..].eq_ignore_ascii_case(zone)
}

impl Zone {
    /// The origin (lowercase).
    pub fn origin(&self) -> &Name {
        &self.origin
    }

    /// The SOA serial, if the zone has a SOA.
    pub fn serial(&self) -> Option<u32> {
        soa_serial(self.apex_rdata(self.soa?))
    }

    /// The SOA timers (refresh, retry, expire) for secondaries.
    pub fn soa_timers(&self) -> Option<(u32, u32, u32)> {
        let rd = self.apex_rdata(self.soa?);
        let p = name_len(rd)?;
        let p = p + name_len(&rd[p..])?;
        (rd.len() >= p + 20).then(|| (be32(rd, p + 4), be32(rd, p + 8), be32(rd, p + 12)))
    }

    /// Number of owner names in the tree and of records in all.
    pub fn counts(&self) -> (usize, usize) {
        (self.nodes.len(), self.rrs.len() + self.apex.len())
    }

    fn apex_rdata(&self, i: usize) -> &[u8] {
        let r = &self.apex[i].rr;
        self.rr_rdata(r)
    }

    /// RDATA of a record.
    pub fn rr_rdata(&self, r: &Rr) -> &[u8] {
        let start = r.off as usize;
        let skip = if r.flags & OWN_OWNER != 0 {
            name_len(&self.arena[start..]).unwrap_or(0)
        } else {
            0
        };
        &self.arena[start + skip..start + skip + r.len as usize]
    }

    /// Owner of record `r` of node `n` as CoreDNS serves it.
    fn rr_owner<'a>(&'a self, n: &Node, r: &Rr) -> &'a [u8] {
        if r.flags & OWN_OWNER != 0 {
            let start = r.off as usize;
            let l = name_len(&self.arena[start..]).unwrap_or(0);
            &self.arena[start..start + l]
        } else {
            self.node_name_of(n)
        }
    }

    fn node_name_of(&self, n: &Node) -> &[u8] {
        &self.arena[n.name_off as usize..n.name_off as usize + n.name_len as usize]
    }

    /// Owner name of node `n`.
    pub(crate) fn node_name(&self, n: u32) -> &[u8] {
        self.node_name_of(&self.nodes[n as usize])
    }

    /// Index range of node `n`'s records of `rtype` (empty if none).
    pub(crate) fn type_range(&self, n: u32, rtype: u16) -> (u32, u32) {
        let nd = &self.nodes[n as usize];
        let rrs = &self.rrs[nd.rr_start as usize..nd.rr_end as usize];
        let lo = rrs.partition_point(|r| r.rtype < rtype);
        let hi = lo + rrs[lo..].partition_point(|r| r.rtype == rtype);
        (nd.rr_start + lo as u32, nd.rr_start + hi as u32)
    }

    /// The exact node for a lowercase wire name (CoreDNS `tree.Search`).
    pub fn search(&self, name: &[u8]) -> Option<u32> {
        // Every lookup starts at the origin: answered from the zone itself.
        if name == self.origin.wire() {
            return self.apex_node;
        }
        self.search_index(name)
    }

    fn search_index(&self, name: &[u8]) -> Option<u32> {
        if self.index.is_empty() {
            return None;
        }
        let mask = self.index.len() - 1;
        let mut i = hash(name) as usize & mask;
        loop {
            let v = self.index[i];
            if v == 0 {
                return None;
            }
            if self.node_name(v - 1) == name {
                return Some(v - 1);
            }
            i = (i + 1) & mask;
        }
    }

    /// The largest name ≤ `name` in canonical order (CoreDNS `tree.Prev`).
    pub(crate) fn floor(&self, name: &[u8]) -> Option<u32> {
        let k = self
            .nodes
            .partition_point(|n| canon_cmp(self.node_name_of(n), name) != Ordering::Greater);
        (k > 0).then(|| (k - 1) as u32)
    }

    /// The smallest name ≥ `name` (CoreDNS `tree.Next`).
    #[cfg(test)]
    pub(crate) fn ceil(&self, name: &[u8]) -> Option<u32> {
        let k = self
            .nodes
            .partition_point(|n| canon_cmp(self.node_name_of(n), name) == Ordering::Less);
        (k < self.nodes.len()).then_some(k as u32)
    }

    /// CoreDNS `hasDescendant`: the next name is strictly below `name` (false
    /// when `name` itself is in the tree, as upstream computes it). Names below
    /// a name follow it directly in canonical order, so this is true exactly
    /// for the empty non-terminals, kept in a set at load.
    pub(crate) fn has_descendant(&self, name: &[u8]) -> bool {
        let origin = self.origin.wire();
        if !in_zone(name, origin) {
            // Above the zone: every name in it is below.
            return name != origin && in_zone(origin, name) && !self.nodes.is_empty();
        }
        !self.ents.is_empty() && self.ents.contains(name)
    }

    /// [`Zone::has_descendant`] by binary search (the definition; tests).
    #[cfg(test)]
    pub(crate) fn has_descendant_by_order(&self, name: &[u8]) -> bool {
        match self.ceil(name) {
            Some(n) => {
                let x = self.node_name(n);
                x != name && in_zone(x, name)
            }
            None => false,
        }
    }

    /// The record headers.
    pub(crate) fn rr(&self, i: u32) -> &Rr {
        &self.rrs[i as usize]
    }

    /// Every record in transfer order (CoreDNS `Zone.Transfer`): SOA, its
    /// signatures, apex NS and theirs, then the tree in canonical order. The
    /// closing SOA is the caller's.
    pub fn for_each_record(&self, mut f: impl FnMut(&[u8], &Rr, &[u8])) {
        for a in &self.apex {
            let owner =
                &self.arena[a.owner_off as usize..a.owner_off as usize + a.owner_len as usize];
            f(owner, &a.rr, self.rr_rdata(&a.rr));
        }
        for n in &self.nodes {
            for r in &self.rrs[n.rr_start as usize..n.rr_end as usize] {
                f(self.rr_owner(n, r), r, self.rr_rdata(r));
            }
        }
    }

    /// Number of records a transfer sends before the closing SOA.
    pub fn transfer_len(&self) -> usize {
        self.apex.len() + self.rrs.len()
    }

    /// Record `i` of the transfer order (see [`Self::for_each_record`]);
    /// `node` is a cursor to pass back unchanged for consecutive calls.
    pub fn transfer_record(&self, i: usize, node: &mut usize) -> Option<(&[u8], &Rr, &[u8])> {
        if let Some(a) = self.apex.get(i) {
            let owner =
                &self.arena[a.owner_off as usize..a.owner_off as usize + a.owner_len as usize];
            return Some((owner, &a.rr, self.rr_rdata(&a.rr)));
        }
        let k = i - self.apex.len();
        let r = self.rrs.get(k)?;
        if self
            .nodes
            .get(*node)
            .is_none_or(|n| (n.rr_start as usize) > k)
        {
            *node = 0;
        }
        while self
            .nodes
            .get(*node)
            .is_some_and(|n| (n.rr_end as usize) <= k)
        {
            *node += 1;
        }
        let n = self.nodes.get(*node)?;
        Some((self.rr_owner(n, r), r, self.rr_rdata(r)))
    }

    /// The SOA record: owner, header and RDATA.
    pub fn soa_record(&self) -> Option<(&[u8], &Rr, &[u8])> {
        let a = &self.apex[self.soa?];
        let owner = &self.arena[a.owner_off as usize..a.owner_off as usize + a.owner_len as usize];
        Some((owner, &a.rr, self.rr_rdata(&a.rr)))
    }
}

/// Builds a [`Zone`] from records in any order (CoreDNS `Zone.Insert` rules).
pub struct ZoneBuilder {
    origin: Name,
    file: String,
    arena: Vec<u8>,
    owners: Vec<(u32, u8)>,
    tmp: Vec<(u32, Rr)>,
    soa: Option<ApexRr>,
    sig_soa: Vec<ApexRr>,
    ns: Vec<ApexRr>,
    sig_ns: Vec<ApexRr>,
    lower: Vec<u8>,
    rdata: Vec<u8>,
    skipped: Vec<(String, u32, String)>,
    /// Stop at the first SOA if its serial is this one.
    pub unchanged_serial: Option<u32>,
    seen_soa: bool,
}

impl ZoneBuilder {
    /// A builder for `origin` (any case) loaded from `file` (for messages).
    pub fn new(origin: &Name, file: &str) -> Self {
        Self {
            origin: origin.to_lowercase(),
            file: file.to_owned(),
            arena: Vec::new(),
            owners: Vec::new(),
            tmp: Vec::new(),
            soa: None,
            sig_soa: Vec::new(),
            ns: Vec::new(),
            sig_ns: Vec::new(),
            lower: Vec::with_capacity(256),
            rdata: Vec::with_capacity(512),
            skipped: Vec::new(),
            unchanged_serial: None,
            seen_soa: false,
        }
    }

    fn push_arena(&mut self, b: &[u8]) -> Result<u32, LoadError> {
        let off = u32::try_from(self.arena.len()).map_err(|_| LoadError::TooLarge)?;
        if self.arena.len() + b.len() > u32::MAX as usize {
            return Err(LoadError::TooLarge);
        }
        self.arena.extend_from_slice(b);
        Ok(off)
    }

    /// Adds one record.
    pub fn insert(&mut self, rec: &Record<'_>) -> Result<(), LoadError> {
        let origin = self.origin.wire();
        self.lower.clear();
        self.lower.extend_from_slice(rec.owner);
        self.lower.make_ascii_lowercase();
        if !in_zone(&self.lower, origin) {
            let owner = Name::from_wire(rec.owner)
                .map(|n| n.to_string())
                .unwrap_or_default();
            self.skipped.push((rec.file.to_owned(), rec.line, owner));
            return Ok(());
        }
        let at_apex = self.lower == origin;
        let mut rdata = std::mem::take(&mut self.rdata);
        rdata.clear();
        rdata.extend_from_slice(rec.rdata);
        let r = self.insert_with(rec, at_apex, &mut rdata);
        self.rdata = rdata;
        r
    }

    fn insert_with(
        &mut self,
        rec: &Record<'_>,
        at_apex: bool,
        rdata: &mut [u8],
    ) -> Result<(), LoadError> {
        let rtype = rec.rtype;
        match rtype {
            50 | 51 => {
                return Err(LoadError::Nsec3 {
                    owner: Name::from_wire(&self.lower)
                        .map(|n| n.to_string())
                        .unwrap_or_default(),
                    origin: self.origin.to_string(),
                });
            }
            2 | 5 => lower_name(rdata),
            6 => {
                lower_name(rdata);
                if let Some(n) = name_len(rdata) {
                    lower_name(&mut rdata[n..]);
                }
            }
            15 | 64 | 65 if rdata.len() > 2 => lower_name(&mut rdata[2..]),
            _ => {}
        }
        let owner_off;
        let owner_len = self.lower.len() as u8;
        let apex_kind = match rtype {
            6 => Some(0),
            2 if at_apex => Some(2),
            46 if rdata.len() >= 2 => match u16::from_be_bytes([rdata[0], rdata[1]]) {
                6 => Some(1),
                2 if at_apex => Some(3),
                _ => None,
            },
            _ => None,
        };
        if let Some(kind) = apex_kind {
            if kind == 0 && !self.seen_soa {
                self.seen_soa = true;
                if let Some(s) = self.unchanged_serial {
                    let n1 = name_len(rdata).unwrap_or(0);
                    let n2 = name_len(&rdata[n1..]).unwrap_or(0);
                    if rdata.len() >= n1 + n2 + 4 && be32(rdata, n1 + n2) == s {
                        return Err(LoadError::NoChange { serial: s });
                    }
                }
            }
            let lower = std::mem::take(&mut self.lower);
            owner_off = self.push_arena(&lower)?;
            self.lower = lower;
            let off = self.push_arena(rdata)?;
            let a = ApexRr {
                owner_off,
                owner_len,
                rr: Rr {
                    rtype,
                    class: rec.class,
                    ttl: rec.ttl,
                    off,
                    len: rdata.len() as u16,
                    flags: 0,
                },
            };
            match kind {
                0 => self.soa = Some(a),
                1 => self.sig_soa.push(a),
                2 => self.ns.push(a),
                _ => self.sig_ns.push(a),
            }
            return Ok(());
        }
        // Tree record: share the owner with the previous record when equal.
        let owner_id = match self.owners.last() {
            Some(&(o, l)) if self.arena[o as usize..o as usize + l as usize] == self.lower[..] => {
                (self.owners.len() - 1) as u32
            }
            _ => {
                let lower = std::mem::take(&mut self.lower);
                let o = self.push_arena(&lower)?;
                self.lower = lower;
                self.owners.push((o, owner_len));
                (self.owners.len() - 1) as u32
            }
        };
        let mut flags = 0;
        let off = if rtype == 33 && rec.owner != &self.lower[..] {
            flags = OWN_OWNER;
            let o = self.push_arena(rec.owner)?;
            self.push_arena(rdata)?;
            o
        } else {
            self.push_arena(rdata)?
        };
        self.tmp.push((
            owner_id,
            Rr {
                rtype,
                class: rec.class,
                ttl: rec.ttl,
                off,
                len: rdata.len() as u16,
                flags,
            },
        ));
        Ok(())
    }

    /// Finishes the zone; CoreDNS requires a SOA.
    pub fn finish(self) -> Result<Zone, LoadError> {
        if self.soa.is_none() {
            return Err(LoadError::NoSoa {
                file: self.file,
                origin: self.origin.to_string(),
            });
        }
        Ok(self.build())
    }

    /// Finishes without requiring a SOA (a secondary before its first transfer).
    pub fn build(mut self) -> Zone {
        // Order owners canonically through memcmp-able keys.
        let mut keys = Vec::with_capacity(self.owners.len() * 16);
        let mut key_at = Vec::with_capacity(self.owners.len() + 1);
        for &(o, l) in &self.owners {
            key_at.push(keys.len() as u64);
            canon_key(&self.arena[o as usize..o as usize + l as usize], &mut keys);
        }
        key_at.push(keys.len() as u64);
        let key = |i: u32| &keys[key_at[i as usize] as usize..key_at[i as usize + 1] as usize];
        let mut order: Vec<u32> = (0..self.owners.len() as u32).collect();
        order.sort_unstable_by(|&a, &b| key(a).cmp(key(b)));
        let mut node_of = vec![0u32; self.owners.len()];
        let mut nodes: Vec<Node> = Vec::new();
        for (k, &o) in order.iter().enumerate() {
            if k == 0 || key(order[k - 1]) != key(o) {
                let (off, len) = self.owners[o as usize];
                nodes.push(Node {
                    name_off: off,
                    rr_start: 0,
                    rr_end: 0,
                    name_len: len,
                });
            }
            node_of[o as usize] = (nodes.len() - 1) as u32;
        }
        drop(order);
        drop(keys);
        drop(key_at);
        // Counting sort of the records by node (stable), then by type in each node.
        let mut count = vec![0u32; nodes.len() + 1];
        for (o, _) in &self.tmp {
            count[node_of[*o as usize] as usize + 1] += 1;
        }
        for i in 1..count.len() {
            count[i] += count[i - 1];
        }
        for (i, n) in nodes.iter_mut().enumerate() {
            n.rr_start = count[i];
            n.rr_end = count[i + 1];
        }
        let empty = Rr {
            rtype: 0,
            class: 0,
            ttl: 0,
            off: 0,
            len: 0,
            flags: 0,
        };
        let mut rrs = vec![empty; self.tmp.len()];
        for (o, r) in self.tmp.drain(..) {
            let n = node_of[o as usize] as usize;
            rrs[count[n] as usize] = r;
            count[n] += 1;
        }
        drop(node_of);
        for n in &nodes {
            rrs[n.rr_start as usize..n.rr_end as usize].sort_by_key(|r| r.rtype);
        }
        // Hash index at most half full.
        let size = (nodes.len() * 2).next_power_of_two().max(2);
        let mut index = vec![0u32; if nodes.is_empty() { 0 } else { size }];
        if !nodes.is_empty() {
            let mask = size - 1;
            for (i, n) in nodes.iter().enumerate() {
                let name =
                    &self.arena[n.name_off as usize..n.name_off as usize + n.name_len as usize];
                let mut h = hash(name) as usize & mask;
                while index[h] != 0 {
                    h = (h + 1) & mask;
                }
                index[h] = i as u32 + 1;
            }
        }
        let mut apex = Vec::new();
        let soa = self.soa.map(|s| {
            apex.push(s);
            0
        });
        let range = |v: Vec<ApexRr>, apex: &mut Vec<ApexRr>| {
            let s = apex.len();
            apex.extend(v);
            (s, apex.len())
        };
        let sig_soa = range(std::mem::take(&mut self.sig_soa), &mut apex);
        let ns = range(std::mem::take(&mut self.ns), &mut apex);
        let sig_ns = range(std::mem::take(&mut self.sig_ns), &mut apex);
        self.arena.shrink_to_fit();
        let origin_labels = self.origin.label_count();
        Zone {
            origin: self.origin,
            origin_labels,
            arena: self.arena,
            nodes,
            rrs,
            index,
            apex,
            soa,
            sig_soa,
            ns,
            sig_ns,
            skipped: self.skipped,
            ents: NameSet::default(),
            apex_node: None,
        }
        .with_ents()
    }
}

impl Zone {
    /// Fills the set of empty non-terminals: every proper ancestor of a name,
    /// at or below the origin, that has no records itself.
    fn with_ents(mut self) -> Self {
        let mut ents = NameSet::default();
        let origin = self.origin.wire();
        for i in 0..self.nodes.len() {
            let mut p = self.node_name(i as u32);
            while p.first().is_some_and(|&l| l != 0) {
                p = &p[1 + p[0] as usize..];
                if !in_zone(p, origin) || self.search_index(p).is_some() || ents.contains(p) {
                    break;
                }
                ents.insert(p.into());
            }
        }
        self.ents = ents;
        self.apex_node = self.search_index(self.origin.wire());
        self
    }
}

/// Loads the zone file `path` for `origin` (CoreDNS `file.Parse`). With
/// `serial`, a file whose first SOA has that serial gives [`LoadError::NoChange`].
pub fn load_file(path: &str, origin: &Name, serial: Option<u32>) -> Result<Zone, LoadError> {
    let mut b = ZoneBuilder::new(origin, path);
    b.unchanged_serial = serial;
    parse::parse_file(path, origin.wire(), &mut |r| b.insert(r))?;
    b.finish()
}

/// Loads zone text (tests, `stdin`).
pub fn load_str(text: &str, origin: &Name, file: &str) -> Result<Zone, LoadError> {
    let mut b = ZoneBuilder::new(origin, file);
    parse::parse_bytes(text.as_bytes(), file, origin.wire(), &mut |r| b.insert(r))?;
    b.finish()
}
