//! *cache*: CoreDNS's success and denial caches (plugins.md C) on wire bytes.
//!
//! The request hook looks the query up by a hash of its lowercased qname,
//! qtype, qclass, DO and CD; a hit copies the stored reply into the reply
//! buffer and patches ID, flags, the question (the client's case) and every
//! TTL — no allocation, one shard read lock. A miss marks the request and
//! passes it on with AD set; the response hook then classifies the reply,
//! flattens its TTLs, drops OPT, stores it, and clears AD for clients that
//! did not ask for it. Prefetch and `serve_stale` refreshes are detached
//! queries through the plugins after the cache (see `chain`); `verify` either
//! lets the client's own query refresh the entry or, with a timeout, parks the
//! client on a background refresh.
//!
//! CoreDNS: `plugin/cache/cache.go`, `handler.go`, `item.go`, `setup.go`.

pub mod classify;
pub mod item;
pub mod metrics;
mod respond;
pub mod setup;
pub mod shared;
pub mod store;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

pub use setup::{CacheConfig, setup};

use crate::chain::{Ctx, Detached, Flow, Proto, Status};
use crate::wire::{Name, NameRef, Request, flags};
use item::{Item, ReplyTo};
use metrics::{DENIAL, SUCCESS, inc};
use setup::SEC;
use shared::{Shared, Verified};
use store::Store;

/// [`crate::chain::ReqState::marks`] bits the cache owns.
pub mod marks {
    /// The cache handled this query (in its zones).
    pub const ACTIVE: u32 = 1;
    /// Answered from the cache: nothing to store.
    pub const HIT: u32 = 1 << 1;
    /// The request had AD (the plugins after the cache see AD=1).
    pub const AD: u32 = 1 << 2;
    /// A stale entry is verified by this client's own query.
    pub const VERIFY: u32 = 1 << 3;
    /// A detached refresh (prefetch, stale refresh, background verify).
    pub const BG: u32 = 1 << 4;
    /// The refresh is of a stale entry (RFC 8767 §4: only NOERROR/NXDOMAIN replace it).
    pub const STALE: u32 = 1 << 5;
    /// The refreshed entry is in the denial cache.
    pub const DENIAL: u32 = 1 << 6;
    /// Clients wait on this refresh (`verify` with a timeout).
    pub const SLOT: u32 = 1 << 7;
}

/// The cache's clock: monotonic nanoseconds for TTLs, and wall time for
/// signature validity. Tests inject a manual one and travel in time.
#[derive(Clone, Default)]
pub enum Clock {
    /// The system clock (request times come from the worker's batch clock).
    #[default]
    System,
    /// A manual clock.
    Manual(Arc<ManualClock>),
}

/// A clock tests move by hand.
#[derive(Debug)]
pub struct ManualClock {
    ns: AtomicI64,
    unix_base: i64,
}

impl ManualClock {
    /// A clock at monotonic 0, wall time `unix` seconds.
    pub fn new(unix: i64) -> Arc<Self> {
        Arc::new(Self {
            ns: AtomicI64::new(0),
            unix_base: unix,
        })
    }

    /// Moves the clock forward.
    pub fn advance(&self, d: Duration) {
        self.ns.fetch_add(d.as_nanos() as i64, Ordering::Relaxed);
    }

    /// Sets monotonic time (ns since the clock's start).
    pub fn set(&self, ns: i64) {
        self.ns.store(ns, Ordering::Relaxed);
    }
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl Clock {
    /// Monotonic time of an instant (the request's batch time).
    #[inline]
    pub fn at(&self, t: Instant) -> i64 {
        match self {
            Self::System => t.saturating_duration_since(epoch()).as_nanos() as i64,
            Self::Manual(m) => m.ns.load(Ordering::Relaxed),
        }
    }

    /// Monotonic time now.
    pub fn now(&self) -> i64 {
        self.at(Instant::now())
    }

    /// Wall time, Unix seconds.
    pub fn unix(&self) -> i64 {
        match self {
            Self::System => SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64),
            Self::Manual(m) => m.unix_base + m.ns.load(Ordering::Relaxed) / SEC,
        }
    }
}

/// The cache key: CoreDNS `hash` keys on DO, CD, qtype, qclass and the
/// lowercased qname. The same fields here, hashed 8 bytes at a time from the
/// wire name, lowercased in registers (no name is built), then mixed so the low
/// 8 bits (the shard) and the rest are well spread.
#[inline]
pub fn key(qname: NameRef<'_>, qtype: u16, qclass: u16, do_bit: bool, cd: bool) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let w = qname.wire();
    let mut h =
        (u64::from(qtype) << 32 | u64::from(qclass) << 16) | u64::from(do_bit) << 1 | u64::from(cd);
    h = (h ^ w.len() as u64).wrapping_mul(K);
    let mut chunks = w.chunks_exact(8);
    for c in &mut chunks {
        let mut b = [0u8; 8];
        b.copy_from_slice(c);
        h = (h.rotate_left(23) ^ lower8(u64::from_le_bytes(b))).wrapping_mul(K);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut b = [0u8; 8];
        b[..rest.len()].copy_from_slice(rest);
        h = (h.rotate_left(23) ^ lower8(u64::from_le_bytes(b))).wrapping_mul(K);
    }
    // murmur3 fmix64.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// ASCII-lowercases 8 bytes at once (`A`–`Z` gain 0x20; other bytes, including
/// non-ASCII ones, are unchanged).
#[inline]
fn lower8(x: u64) -> u64 {
    const L: u64 = 0x0101_0101_0101_0101;
    let h = x & (0x7f * L);
    let ge_a = h + (0x80 - u64::from(b'A')) * L;
    let gt_z = h + (0x80 - u64::from(b'Z') - 1) * L;
    let upper = ge_a & !gt_z & !x & (0x80 * L);
    x | (upper >> 2)
}

/// Which entry a lookup found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Found {
    /// The success cache's entry (`lkg`: its last known good answer).
    Success { lkg: bool },
    /// The denial cache's entry.
    Denial,
}

/// What serving an entry did.
enum Served {
    /// The reply is written; maybe a refresh must start.
    Reply { stale: bool, refresh: Option<u32> },
    /// A stale entry to verify first (nothing written).
    Verify,
}

/// The runtime plugin.
pub struct Cache {
    s: Arc<Shared>,
    zones: Vec<Name>,
    all_zones: bool,
    pexcept: Vec<Name>,
    nexcept: Vec<Name>,
    clock: Clock,
}

fn names(v: &[String]) -> Vec<Name> {
    v.iter()
        .filter_map(|z| Name::parse(z))
        .map(|n| n.to_lowercase())
        .collect()
}

impl Cache {
    /// Builds the plugin; the entries of a live cache with an equal
    /// configuration (an unchanged block across a reload) are kept.
    pub fn new(c: &CacheConfig) -> Self {
        Self::with_shared(shared::shared_for(c), Clock::System)
    }

    /// A plugin over `s` with `clock` (tests, benches).
    pub fn with_shared(s: Arc<Shared>, clock: Clock) -> Self {
        let _ = epoch();
        let zones = names(&s.cfg.zones);
        Self {
            all_zones: zones.iter().any(Name::is_root),
            zones,
            pexcept: names(&s.cfg.pexcept),
            nexcept: names(&s.cfg.nexcept),
            clock,
            s,
        }
    }

    /// The shared state (tests, benches).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.s
    }

    fn store(&self, f: Found) -> &Store {
        match f {
            Found::Success { .. } => &self.s.pcache,
            Found::Denial => &self.s.ncache,
        }
    }

    fn in_zone(&self, q: NameRef<'_>) -> bool {
        self.all_zones || self.zones.iter().any(|z| q.is_subdomain_of(z))
    }

    fn stale_ok(&self, ttl: i64) -> bool {
        ttl > 0 || (self.s.cfg.stale_up_to > 0 && -ttl < self.s.cfg.stale_up_to / SEC)
    }

    /// CoreDNS `getIfNotStale` without its counters: which entry to serve (the
    /// success entry is only checked when served, so a hit takes one lock).
    fn select(&self, key: u64, q: NameRef<'_>, qtype: u16, qclass: u16, now: i64) -> Option<Found> {
        let c = &self.s.cfg;
        if c.prefer_positive && c.stale_up_to > 0 {
            let lkg = self.s.pcache.get(key, |i| {
                let a = i.answering_item(q, qtype, qclass)?;
                self.stale_ok(a.ttl(now)).then_some(!std::ptr::eq(a, i))
            });
            if let Some(Some(lkg)) = lkg {
                return Some(Found::Success { lkg });
            }
        }
        if !self.s.ncache.is_empty() {
            let n = self.s.ncache.get(key, |i| {
                (i.matches(q, qtype, qclass) && self.stale_ok(i.ttl(now))).then(|| i.rcode())
            });
            if let Some(Some(rcode)) = n {
                // A cached SERVFAIL yields to a usable positive entry.
                if rcode == 2 && self.positive_ok(key, q, qtype, qclass, now) {
                    return Some(Found::Success { lkg: false });
                }
                return Some(Found::Denial);
            }
        }
        // The success cache last: checked as it is served (one lock).
        Some(Found::Success { lkg: false })
    }

    fn positive_ok(&self, key: u64, q: NameRef<'_>, qtype: u16, qclass: u16, now: i64) -> bool {
        self.s
            .pcache
            .get(key, |i| {
                i.matches(q, qtype, qclass) && self.stale_ok(i.ttl(now))
            })
            .unwrap_or(false)
    }

    /// Writes the reply from `it` (CoreDNS `toMsg`) into `resp` and decides on
    /// refreshes; `force_stale` serves a stale entry without verifying it again.
    fn serve_item(
        &self,
        it: &Item,
        req: &Request<'_>,
        req_flags: u16,
        resp: &mut Vec<u8>,
        now: i64,
        force_stale: bool,
    ) -> Option<Served> {
        let c = &self.s.cfg;
        let ttl = it.ttl(now);
        if !self.stale_ok(ttl) {
            return None;
        }
        let mut refresh = None;
        let stale = ttl <= 0;
        let reply_ttl = if stale {
            if !force_stale {
                if c.verify_stale {
                    if c.stale_recheck == 0 || it.begin_refresh(now, c.stale_recheck) {
                        return Some(Served::Verify);
                    }
                } else if it.begin_refresh(now, c.stale_recheck) {
                    refresh = Some(marks::STALE);
                }
            }
            if c.stale_ttl > 0 {
                c.stale_ttl / SEC
            } else if c.keepttl {
                i64::from(it.orig_ttl)
            } else {
                0
            }
        } else {
            if c.prefetch > 0 && !force_stale {
                let hits = it.count_hit(c.prefetch_window, now);
                // CoreDNS: math.Ceil(float64(percentage) / 100 * float64(origTTL)).
                let threshold =
                    (c.percentage as f64 / 100.0 * f64::from(it.orig_ttl)).ceil() as i64;
                if i64::from(hits) >= c.prefetch && ttl <= threshold && it.begin_refresh(now, 0) {
                    refresh = Some(0);
                }
            }
            if c.keepttl {
                i64::from(it.orig_ttl)
            } else {
                ttl
            }
        };
        let to = ReplyTo {
            id: req.id(),
            opcode: req.opcode(),
            flags: req_flags,
            qname: req.qname.name(),
            keep_ad: req.do_bit() || req_flags & flags::AD != 0,
        };
        it.write_reply(resp, &to, reply_ttl.clamp(0, i64::from(u32::MAX)) as u32);
        Some(Served::Reply { stale, refresh })
    }

    /// Serves the entry `found` under `key`.
    fn serve_found(
        &self,
        f: Found,
        key: u64,
        ctx: &mut Ctx<'_>,
        now: i64,
        force_stale: bool,
    ) -> Option<Served> {
        let req = &ctx.req;
        let resp = &mut *ctx.resp;
        let meta = &mut ctx.meta;
        let req_flags = ctx.st.flags;
        let served = self
            .store(f)
            .get(key, |i| {
                let (q, qtype, qclass) = (req.qname.name(), req.qtype, req.qclass);
                let it = match f {
                    Found::Success { lkg: true } => i.answering_item(q, qtype, qclass)?,
                    _ if i.matches(q, qtype, qclass) => i,
                    _ => return None,
                };
                // CoreDNS publishes a cached wildcard answer's source again.
                if meta.is_some() {
                    if let Some(w) = it.wildcard() {
                        crate::chain::set_meta(meta, "zone/wildcard", || w.to_string());
                    }
                }
                self.serve_item(it, req, req_flags, resp, now, force_stale)
            })
            .flatten();
        if matches!(served, Some(Served::Reply { .. })) {
            ctx.written = true;
        }
        served
    }

    /// Request hook.
    pub fn serve(&self, ctx: &mut Ctx<'_>) -> Flow {
        if !self.in_zone(ctx.req.qname.name()) {
            return Flow::Next;
        }
        let now = self.clock.at(ctx.st.start);
        let (qtype, qclass) = (ctx.req.qtype, ctx.req.qclass);
        let f = ctx.st.flags;
        let ad = if f & flags::AD != 0 { marks::AD } else { 0 };
        let k = key(
            ctx.req.qname.name(),
            qtype,
            qclass,
            ctx.req.do_bit(),
            f & flags::CD != 0,
        );
        let found = self.select(k, ctx.req.qname.name(), qtype, qclass, now);
        let served = found.and_then(|fd| self.serve_found(fd, k, ctx, now, false).map(|s| (fd, s)));
        let zl = &self.s.zones_label;
        let Some((fd, served)) = served else {
            metrics::with(ctx, zl, |c| {
                inc(&c.requests);
                inc(&c.misses);
            });
            return Self::pass(ctx, marks::ACTIVE | ad);
        };
        let t = if fd == Found::Denial { DENIAL } else { SUCCESS };
        let denial = if fd == Found::Denial {
            marks::DENIAL
        } else {
            0
        };
        let (stale, refresh) = match served {
            Served::Reply { stale, refresh } => (stale, refresh),
            Served::Verify => (false, None),
        };
        metrics::with(ctx, zl, |c| {
            inc(&c.requests);
            inc(&c.hits[t]);
            if stale {
                inc(&c.served_stale);
            }
            if refresh.is_some() {
                inc(&c.prefetch);
            }
        });
        match served {
            Served::Reply { .. } => {
                ctx.st.marks |= marks::ACTIVE | marks::HIT;
                if let Some(m) = refresh {
                    self.detach(ctx, marks::ACTIVE | marks::BG | m | denial | ad);
                }
                Flow::Return(Status::rcode(0))
            }
            Served::Verify if self.s.cfg.verify_timeout == 0 => {
                Self::pass(ctx, marks::ACTIVE | marks::VERIFY | denial | ad)
            }
            Served::Verify => match self.s.join(k) {
                Some((id, start)) => {
                    if start {
                        let m = marks::ACTIVE | marks::BG | marks::STALE | marks::SLOT;
                        self.detach(ctx, m | denial | ad);
                    }
                    ctx.st.park = id;
                    ctx.st.marks |= marks::ACTIVE | marks::HIT;
                    Flow::Park
                }
                None => self.serve_stale(ctx, k, now, marks::ACTIVE | marks::HIT),
            },
        }
    }

    /// A miss (or a verifying query): the plugins after the cache see AD=1.
    fn pass(ctx: &mut Ctx<'_>, m: u32) -> Flow {
        ctx.st.marks |= m;
        ctx.st.flags |= flags::AD;
        Flow::Next
    }

    /// Serves the stale entry for the query (after a failed or slow verify).
    fn serve_stale(&self, ctx: &mut Ctx<'_>, k: u64, now: i64, m: u32) -> Flow {
        let served = self
            .select(k, ctx.req.qname.name(), ctx.req.qtype, ctx.req.qclass, now)
            .and_then(|f| self.serve_found(f, k, ctx, now, true));
        if served.is_some() {
            ctx.st.marks |= m;
            metrics::with(ctx, &self.s.zones_label, |c| inc(&c.served_stale));
            Flow::Return(Status::rcode(0))
        } else {
            Flow::Return(Status::rcode(2))
        }
    }

    /// Starts a refresh of the query's entry through the plugins after the
    /// cache: a TCP-like client (no truncation), AD set (CoreDNS `prefetch`).
    fn detach(&self, ctx: &mut Ctx<'_>, m: u32) {
        ctx.detach = Some(Detached {
            msg: ctx.req.msg.to_vec(),
            proto: Proto::Tcp,
            peer: SocketAddr::from(([0, 0, 0, 0], 0)),
            local: ctx.local,
            server: Arc::clone(ctx.server),
            view: Arc::clone(ctx.view),
            flags: ctx.st.flags | flags::AD,
            marks: m,
            disp: ctx.disp.map(|d| (Arc::clone(d), ctx.st.depth)),
        });
    }

    /// The parked half of `verify` with a timeout: wait for the background
    /// refresh, then serve what it produced or the stale entry.
    pub async fn serve_async(&self, ctx: &mut Ctx<'_>) -> Flow {
        let id = ctx.st.park;
        let Some(slot) = self.s.slot(id) else {
            let now = self.clock.now();
            let k = self.req_key(ctx);
            return self.serve_stale(ctx, k, now, 0);
        };
        let limit = Duration::from_nanos(self.s.cfg.verify_timeout.max(0) as u64);
        let wait = async {
            loop {
                let n = slot.notify.notified();
                tokio::pin!(n);
                n.as_mut().enable();
                if slot.done.load(Ordering::Acquire) {
                    return;
                }
                n.await;
            }
        };
        let _ = tokio::time::timeout(limit, wait).await;
        let outcome = slot
            .outcome
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        self.s.leave(id);
        let now = self.clock.now();
        let k = self.req_key(ctx);
        match outcome {
            Some(Verified::Refreshed { stored: true, .. }) => {
                let found =
                    self.select(k, ctx.req.qname.name(), ctx.req.qtype, ctx.req.qclass, now);
                if found.is_some_and(|f| self.serve_found(f, k, ctx, now, true).is_some()) {
                    return Flow::Return(Status::rcode(0));
                }
                self.serve_stale(ctx, k, now, 0)
            }
            Some(Verified::Refreshed {
                reply,
                stored: false,
            }) => {
                respond::relay(ctx, &reply);
                Flow::Return(Status::rcode(0))
            }
            _ => self.serve_stale(ctx, k, now, 0),
        }
    }

    fn req_key(&self, ctx: &Ctx<'_>) -> u64 {
        let f = ctx.st.flags;
        key(
            ctx.req.qname.name(),
            ctx.req.qtype,
            ctx.req.qclass,
            ctx.req.do_bit(),
            f & flags::CD != 0,
        )
    }
}
