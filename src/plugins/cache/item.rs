//! One cached reply: the message as wire bytes (names uncompressed, OPT
//! removed) followed by the offset of every record's TTL, and the bookkeeping
//! CoreDNS keeps per item (stored time, original TTL, popularity, refresh
//! state, the last known good answer). A hit copies the bytes into the reply
//! buffer and patches ID, flags, the question (the client's case) and the TTLs.
//!
//! CoreDNS: `plugin/cache/item.go`, `plugin/cache/freq/freq.go`.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use super::setup::SEC;
use crate::wire::index::{Rebuild, rebuild};
use crate::wire::{HEADER_LEN, MsgIndex, Name, NameRef, be16, flags, hdr};

/// A cached reply.
pub struct Item {
    /// The cache key.
    pub key: u64,
    /// Message bytes, then two octets per TTL offset (big-endian).
    data: Box<[u8]>,
    /// Length of the message part of `data`.
    msg_len: u16,
    /// When it was stored (ns on the cache clock).
    pub stored: i64,
    /// TTL it was stored with, seconds.
    pub orig_ttl: u32,
    /// Whether it answers its question (`answersQuestion`), for prefer_positive.
    pub answering: bool,
    /// Popularity (`freq.Freq`): hits in the current window.
    hits: AtomicU32,
    /// Time of the last counted hit + 1 (0 = never).
    last: AtomicU64,
    /// A refresh (prefetch or stale) is in flight.
    refreshing: AtomicBool,
    /// No refresh before this time + 1 (0 = none), after a failed stale refresh.
    retry_after: AtomicU64,
    /// The answering item this one replaced (prefer_positive).
    pub lkg: Option<Box<Self>>,
    /// Length of the wildcard's wire name at the end of `data` (0: none): the
    /// `zone/wildcard` metadata of the reply it was stored from, published again
    /// when it answers (in the padding, so other entries pay nothing).
    wild_len: u8,
}

impl std::fmt::Debug for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Item")
            .field("key", &self.key)
            .field("len", &self.msg_len)
            .field("stored", &self.stored)
            .field("orig_ttl", &self.orig_ttl)
            .finish_non_exhaustive()
    }
}

/// How a hit's header is built (CoreDNS `toMsg`, after miekg `SetReply`).
#[derive(Debug, Clone, Copy)]
pub struct ReplyTo<'a> {
    /// The client's ID.
    pub id: u16,
    /// The request's opcode.
    pub opcode: u8,
    /// Request flags as the cache sees them (RD and CD are copied for QUERY).
    pub flags: u16,
    /// The question name as the client sent it.
    pub qname: NameRef<'a>,
    /// DO or AD in the request: the stored AD bit is kept.
    pub keep_ad: bool,
}

impl Item {
    /// Stores `m` (its records `keep`, indices into `idx.rrs`, in order) as an
    /// item, decompressing names into `scratch`. The caller sets `stored`,
    /// `orig_ttl` and `answering`.
    pub fn new(
        key: u64,
        m: &[u8],
        idx: &MsgIndex,
        keep: &[usize],
        scratch: &mut Vec<u8>,
    ) -> Option<Self> {
        let opts = Rebuild {
            compress: false,
            limit: None,
            reserve: 0,
        };
        rebuild(m, idx, keep, opts, scratch);
        let msg_len = u16::try_from(scratch.len()).ok()?;
        let offsets = ttl_offsets(scratch)?;
        let mut data = Vec::with_capacity(scratch.len() + offsets.len() * 2);
        data.extend_from_slice(scratch);
        for o in offsets {
            data.extend_from_slice(&o.to_be_bytes());
        }
        Some(Self {
            key,
            data: data.into_boxed_slice(),
            msg_len,
            stored: 0,
            orig_ttl: 0,
            answering: false,
            hits: AtomicU32::new(0),
            last: AtomicU64::new(0),
            refreshing: AtomicBool::new(false),
            retry_after: AtomicU64::new(0),
            lkg: None,
            wild_len: 0,
        })
    }

    /// The stored message.
    pub fn msg(&self) -> &[u8] {
        &self.data[..usize::from(self.msg_len)]
    }

    /// Keeps `w` as the entry's `zone/wildcard` (after the TTL offsets).
    pub fn set_wildcard(&mut self, w: &crate::wire::Name) {
        let Ok(n) = u8::try_from(w.wire().len()) else {
            return;
        };
        let keep = self.data.len() - usize::from(self.wild_len);
        let mut data = Vec::with_capacity(keep + usize::from(n));
        data.extend_from_slice(&self.data[..keep]);
        data.extend_from_slice(w.wire());
        self.data = data.into_boxed_slice();
        self.wild_len = n;
    }

    /// The entry's `zone/wildcard`, if its reply had one.
    pub fn wildcard(&self) -> Option<crate::wire::Name> {
        if self.wild_len == 0 {
            return None;
        }
        let at = self.data.len() - usize::from(self.wild_len);
        crate::wire::Name::from_wire(&self.data[at..]).ok()
    }

    /// Heap bytes this item owns (for the memory bench).
    pub fn heap_bytes(&self) -> usize {
        self.data.len()
            + self
                .lkg
                .as_ref()
                .map_or(0, |l| std::mem::size_of::<Self>() + l.heap_bytes())
    }

    /// Stored rcode (4 bits).
    pub fn rcode(&self) -> u8 {
        hdr::rcode(self.msg())
    }

    /// CoreDNS `item.ttl`: seconds left (negative once expired), whole seconds
    /// elapsed truncated.
    pub fn ttl(&self, now: i64) -> i64 {
        i64::from(self.orig_ttl) - (now - self.stored) / SEC
    }

    /// CoreDNS `item.matches`: same question, name case-insensitively.
    pub fn matches(&self, qname: NameRef<'_>, qtype: u16, qclass: u16) -> bool {
        let m = self.msg();
        let w = qname.wire();
        let end = HEADER_LEN + w.len();
        m.len() >= end + 4
            && m[HEADER_LEN..end].eq_ignore_ascii_case(w)
            && be16(m, end) == qtype
            && be16(m, end + 2) == qclass
    }

    /// CoreDNS `answeringItem`: this item or its last known good answer, if it
    /// answers the question.
    pub fn answering_item(&self, qname: NameRef<'_>, qtype: u16, qclass: u16) -> Option<&Self> {
        if self.answering && self.matches(qname, qtype, qclass) {
            return Some(self);
        }
        self.lkg
            .as_deref()
            .filter(|l| l.answering && l.matches(qname, qtype, qclass))
    }

    /// The owned form of [`Self::answering_item`] (when the item is replaced).
    pub fn into_answering(
        self: Box<Self>,
        qname: NameRef<'_>,
        qtype: u16,
        qclass: u16,
    ) -> Option<Box<Self>> {
        if self.answering && self.matches(qname, qtype, qclass) {
            let mut s = self;
            s.lkg = None;
            return Some(s);
        }
        self.lkg
            .filter(|l| l.answering && l.matches(qname, qtype, qclass))
    }

    /// Writes the reply for `to` with every TTL set to `ttl` into `out`
    /// (cleared first). Allocation-free when `out` has the capacity.
    pub fn write_reply(&self, out: &mut Vec<u8>, to: &ReplyTo<'_>, ttl: u32) {
        let m = self.msg();
        out.clear();
        out.extend_from_slice(m);
        let stored = hdr::flags(m);
        let mut f = flags::QR | (u16::from(to.opcode) << 11) | flags::AA;
        if to.opcode == 0 {
            f |= to.flags & (flags::RD | flags::CD);
        }
        f |= stored & flags::RA;
        if to.keep_ad {
            f |= stored & flags::AD;
        }
        f |= u16::from(hdr::rcode(m));
        hdr::set_id(out, to.id);
        hdr::set_flags(out, f);
        // The question as the client wrote it (same length: names match
        // case-insensitively).
        let w = to.qname.wire();
        out[HEADER_LEN..HEADER_LEN + w.len()].copy_from_slice(w);
        let t = ttl.to_be_bytes();
        let end = self.data.len() - usize::from(self.wild_len);
        for o in self.data[usize::from(self.msg_len)..end].chunks_exact(2) {
            let o = usize::from(u16::from_be_bytes([o[0], o[1]]));
            out[o..o + 4].copy_from_slice(&t);
        }
    }

    /// `freq.Update`: counts a hit, resetting the count when the previous one
    /// is older than `window`; returns the hits.
    pub fn count_hit(&self, window: i64, now: i64) -> u32 {
        let last = self
            .last
            .swap((now as u64).wrapping_add(1), Ordering::Relaxed);
        let fresh = last != 0 && (last - 1) as i64 >= now.saturating_sub(window);
        if fresh {
            self.hits.fetch_add(1, Ordering::Relaxed).saturating_add(1)
        } else {
            self.hits.store(1, Ordering::Relaxed);
            1
        }
    }

    /// `freq.Hits`.
    pub fn hits(&self) -> u32 {
        self.hits.load(Ordering::Relaxed)
    }

    /// `freq.Reset`.
    pub fn reset_hits(&self, now: i64, hits: u32) {
        self.last
            .store((now as u64).wrapping_add(1), Ordering::Relaxed);
        self.hits.store(hits, Ordering::Relaxed);
    }

    /// `beginRefresh`: claims the one refresh slot of this item, unless a
    /// failed refresh asked to wait until later.
    pub fn begin_refresh(&self, now: i64, recheck: i64) -> bool {
        if recheck > 0 {
            let r = self.retry_after.load(Ordering::Acquire);
            if r != 0 && now < (r - 1) as i64 {
                return false;
            }
        }
        self.refreshing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// `endRefresh`.
    pub fn end_refresh(&self, now: i64, recheck: i64, refreshed: bool) {
        let r = if recheck > 0 && !refreshed {
            (now.saturating_add(recheck) as u64).wrapping_add(1)
        } else {
            0
        };
        self.retry_after.store(r, Ordering::Release);
        self.refreshing.store(false, Ordering::Release);
    }
}

/// Offsets of every record's TTL in an uncompressed-or-not message.
fn ttl_offsets(m: &[u8]) -> Option<Vec<u16>> {
    let [qd, an, ns, ar] = hdr::counts(m);
    let mut pos = HEADER_LEN;
    for _ in 0..qd {
        pos = Name::skip(m, pos).ok()? + 4;
    }
    let n = usize::from(an) + usize::from(ns) + usize::from(ar);
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let fixed = Name::skip(m, pos).ok()?;
        if fixed + 10 > m.len() {
            return None;
        }
        out.push(u16::try_from(fixed + 4).ok()?);
        pos = fixed + 10 + usize::from(be16(m, fixed + 8));
    }
    (pos <= m.len()).then_some(out)
}
