//! The response hook: what CoreDNS's cache `ResponseWriter` does to a reply
//! written by the plugins after the cache — classify it, flatten every TTL to
//! the duration it is cached for, drop OPT, store it (success or denial, with
//! the `disable` exceptions and the prefer_positive last known good answer),
//! count mismatched questions as drops, clear AD for clients that did not ask —
//! and the refresh writers of prefetch and `serve_stale` (RFC 8767 §4: only a
//! matching NOERROR/NXDOMAIN replaces a stale entry).
//!
//! CoreDNS: `plugin/cache/cache.go` (`WriteMsg`, `set`,
//! `verifyStaleResponseWriter`), `handler.go` (`doPrefetch`).

use super::classify::{
    answers_question, cache_type, has_soa, is_nodata, matches_request, minimal_ttl,
};
use super::item::Item;
use super::metrics::{self, DENIAL, SUCCESS, inc};
use super::setup::SEC;
use super::shared::Verified;
use super::{Cache, marks};
use crate::chain::{Ctx, Flow, Status};
use crate::plugins::log::RespType;
use crate::wire::index::{Rebuild, rebuild};
use crate::wire::{HEADER_LEN, MsgIndex, Name, be16, flags, hdr};

/// What a stale-refresh writer makes of a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Accept {
    /// It replaces the entry and goes to the client.
    Refresh,
    /// prefer_positive: cached, but the stale answer is served.
    CacheOnly,
    /// Discarded.
    Reject,
}

/// The facts `WriteMsg` decides on.
struct Facts {
    mt: RespType,
    cacheable: bool,
    dur_ns: i64,
    matches: bool,
}

impl Cache {
    /// Response hook.
    pub fn respond(&self, ctx: &mut Ctx<'_>, st: &mut Status) {
        let m = ctx.st.marks;
        if m & marks::ACTIVE == 0 || m & marks::HIT != 0 {
            return;
        }
        // Plugins outside the cache see the request's own AD bit again.
        let ad = if m & marks::AD != 0 { flags::AD } else { 0 };
        ctx.st.flags = (ctx.st.flags & !flags::AD) | ad;
        let k = self.req_key(ctx);
        if m & marks::BG != 0 {
            self.respond_background(ctx, k, m);
        } else if m & marks::VERIFY != 0 {
            self.respond_verify(ctx, st, k, m);
        } else if ctx.written {
            self.write_msg(ctx, k, m, false);
        }
    }

    fn facts(&self, ctx: &Ctx<'_>) -> Option<Facts> {
        let c = &self.s.cfg;
        let m: &[u8] = ctx.resp;
        let clock = &self.clock;
        let (q, qtype, qclass) = (ctx.req.qname.name(), ctx.req.qtype, ctx.req.qclass);
        MsgIndex::with(m, |idx| {
            let mt = cache_type(m, idx, || clock.unix());
            // CoreDNS `key`: what is never cached.
            let soa = has_soa(idx);
            let cacheable = hdr::flags(m) & flags::TC == 0
                && !matches!(mt, RespType::OtherError | RespType::Meta | RespType::Update)
                // Negative caching needs an SOA for its TTL (RFC 2308 §5).
                && (soa || mt != RespType::NameError)
                && (soa || mt != RespType::NoError || !is_nodata(m, idx));
            // CoreDNS `computeTTL` on durations: the configured seconds times
            // `time.Second`, which wraps in Go for TTLs past ~292 years, as here.
            let clamp = |t: i64, min: i64, max: i64| t.max(min).min(max);
            let ns = |secs: i64| secs.wrapping_mul(SEC);
            let dur_ns = match mt {
                RespType::NameError | RespType::NoData => {
                    clamp(minimal_ttl(idx, mt, ns(c.nttl)), ns(c.minnttl), ns(c.nttl))
                }
                RespType::ServerError => c.failttl,
                _ => clamp(minimal_ttl(idx, mt, ns(c.pttl)), ns(c.minpttl), ns(c.pttl)),
            };
            Facts {
                mt,
                cacheable,
                dur_ns,
                matches: matches_request(m, q, qtype, qclass),
            }
        })
    }

    /// CoreDNS `ResponseWriter.WriteMsg` on `ctx.resp`; true when stored.
    /// Zone-transfer and UPDATE replies pass untouched (docs/compat.md).
    fn write_msg(&self, ctx: &mut Ctx<'_>, k: u64, m: u32, prefetch: bool) -> bool {
        let Some(f) = self.facts(ctx) else {
            return false;
        };
        if matches!(f.mt, RespType::Meta | RespType::Update) {
            return false;
        }
        let ttl = go_secs_u32(f.dur_ns);
        flatten(ctx.resp, ctx.scratch, ttl);
        let mut stored = false;
        if f.cacheable && f.dur_ns > 0 {
            if f.matches {
                stored = self.set(ctx, k, f.mt, f.dur_ns, prefetch);
            } else {
                metrics::with(ctx, &self.s.zones_label, |c| inc(&c.drops));
            }
        }
        if !ctx.req.do_bit() && m & marks::AD == 0 {
            let fl = hdr::flags(ctx.resp) & !flags::AD;
            hdr::set_flags(ctx.resp, fl);
        }
        stored
    }

    /// CoreDNS `ResponseWriter.set`.
    fn set(&self, ctx: &mut Ctx<'_>, k: u64, mt: RespType, dur_ns: i64, prefetch: bool) -> bool {
        let success = match mt {
            RespType::NoError | RespType::Delegation => true,
            RespType::NameError | RespType::NoData | RespType::ServerError => false,
            _ => return false,
        };
        let except = if success {
            &self.pexcept
        } else {
            &self.nexcept
        };
        let q = ctx.req.qname.name();
        if except.iter().any(|z| q.is_subdomain_of(z)) {
            return false;
        }
        let now = self.clock.now();
        let orig = go_secs_u32(dur_ns);
        let wildcard = ctx.meta("zone/wildcard").and_then(crate::wire::Name::parse);
        let resp: &Vec<u8> = ctx.resp;
        let scratch = &mut *ctx.scratch;
        let item = MsgIndex::with(resp, |idx| {
            let keep: Vec<usize> = (0..idx.rrs.len()).collect();
            let answering = answers_question(resp, idx);
            let mut it = Item::new(k, resp, idx, &keep, scratch)?;
            (it.stored, it.orig_ttl, it.answering) = (now, orig, answering);
            if let Some(w) = &wildcard {
                it.set_wildcard(w);
            }
            Some(it)
        })
        .flatten();
        let Some(item) = item else {
            return false;
        };
        let pp = self.s.cfg.prefer_positive;
        let answering = item.answering;
        let (qtype, qclass) = (ctx.req.qtype, ctx.req.qclass);
        let (store, t) = if success {
            (&self.s.pcache, SUCCESS)
        } else {
            (&self.s.ncache, DENIAL)
        };
        let ins = store.insert(item, |new, old| {
            if success && pp && !new.answering {
                new.lkg = old.and_then(|o| Box::new(o).into_answering(q, qtype, qclass));
            }
        });
        if ins.evicted {
            metrics::with(ctx, &self.s.zones_label, |c| inc(&c.evictions[t]));
        }
        // A positive refresh is the newest state for the key.
        if success && ((!pp && prefetch) || (pp && answering)) {
            self.s.ncache.remove(k);
        }
        self.s.stored_by(ctx.server, ctx.view);
        true
    }

    /// `verifyStaleResponseWriter`: may this reply replace a stale entry?
    fn accepts(&self, ctx: &Ctx<'_>) -> Accept {
        let m: &[u8] = ctx.resp;
        if !ctx.written
            || m.len() < HEADER_LEN
            || hdr::flags(m) & flags::TC != 0
            || !matches_request(m, ctx.req.qname.name(), ctx.req.qtype, ctx.req.qclass)
        {
            return Accept::Reject;
        }
        let pp = self.s.cfg.prefer_positive;
        let clock = &self.clock;
        MsgIndex::with(m, |idx| {
            let t = cache_type(m, idx, || clock.unix());
            if pp {
                if t == RespType::NoError && answers_question(m, idx) {
                    Accept::Refresh
                } else {
                    Accept::CacheOnly
                }
            } else if matches!(t, RespType::OtherError | RespType::Meta | RespType::Update)
                || !matches!(hdr::rcode(m), 0 | 3)
            {
                Accept::Reject
            } else {
                Accept::Refresh
            }
        })
        .unwrap_or(Accept::Reject)
    }

    /// Runs `f` on the entry a refresh or verification started from.
    fn with_origin(&self, ctx: &Ctx<'_>, k: u64, m: u32, f: impl FnOnce(&Item)) {
        let (q, qtype, qclass) = (ctx.req.qname.name(), ctx.req.qtype, ctx.req.qclass);
        if m & marks::DENIAL != 0 {
            self.s.ncache.get(k, f);
        } else {
            self.s
                .pcache
                .get(k, |i| f(i.answering_item(q, qtype, qclass).unwrap_or(i)));
        }
    }

    /// A client's query verified a stale entry (`serve_stale … verify`).
    fn respond_verify(&self, ctx: &mut Ctx<'_>, st: &mut Status, k: u64, m: u32) {
        let refreshed = match self.accepts(ctx) {
            Accept::Refresh => {
                self.write_msg(ctx, k, m, false);
                true
            }
            Accept::CacheOnly => {
                self.write_msg(ctx, k, m, true);
                false
            }
            Accept::Reject => false,
        };
        let recheck = self.s.cfg.stale_recheck;
        if recheck > 0 {
            let now = self.clock.now();
            self.with_origin(ctx, k, m, |i| i.end_refresh(now, recheck, refreshed));
        }
        if !refreshed {
            let now = self.clock.now();
            if let Flow::Return(s) = self.serve_stale(ctx, k, now, 0) {
                if s.rcode == 0 {
                    *st = s;
                }
            }
        }
    }

    /// A detached refresh finished (CoreDNS `doPrefetch`, and the background
    /// half of `verify` with a timeout). Nothing goes to a client.
    fn respond_background(&self, ctx: &mut Ctx<'_>, k: u64, m: u32) {
        let now = self.clock.now();
        let mut old_hits = 0;
        self.with_origin(ctx, k, m, |i| old_hits = i.hits());
        let mut stored = false;
        let refreshed = if m & marks::STALE != 0 {
            match self.accepts(ctx) {
                Accept::Refresh => {
                    stored = self.write_msg(ctx, k, m, true);
                    true
                }
                Accept::CacheOnly => {
                    self.write_msg(ctx, k, m, true);
                    false
                }
                Accept::Reject => false,
            }
        } else {
            if ctx.written {
                stored = self.write_msg(ctx, k, m, true);
            }
            true
        };
        if refreshed {
            // The new item keeps the popularity gathered so far.
            let reset = |i: &Item| i.reset_hits(now, old_hits);
            if self.s.ncache.get(k, reset).is_none() {
                self.s.pcache.get(k, reset);
            }
        }
        let recheck = if m & marks::STALE != 0 {
            self.s.cfg.stale_recheck
        } else {
            0
        };
        self.with_origin(ctx, k, m, |i| i.end_refresh(now, recheck, refreshed));
        if m & marks::SLOT != 0 {
            let outcome = if refreshed && ctx.written {
                Verified::Refreshed {
                    reply: ctx.resp.clone(),
                    stored,
                }
            } else {
                Verified::Failed
            };
            self.s.deliver(k, outcome);
        }
    }
}

/// Sets every record's TTL to `ttl` and removes OPT records (CoreDNS
/// `filterRRSlice`); the server's scrub adds the client's OPT back.
fn flatten(resp: &mut Vec<u8>, scratch: &mut Vec<u8>, ttl: u32) {
    if resp.len() < HEADER_LEN {
        return;
    }
    let [qd, an, ns, ar] = hdr::counts(resp);
    let mut pos = HEADER_LEN;
    for _ in 0..qd {
        match Name::skip(resp, pos) {
            Ok(p) => pos = p + 4,
            Err(_) => return,
        }
    }
    let before = usize::from(an) + usize::from(ns);
    let total = before + usize::from(ar);
    // Start of the trailing run of OPT records, and whether others precede it.
    let (mut tail_opt, mut inner_opt, mut opts) = (None, false, 0u16);
    // The last OPT's extended-rcode octet and class.
    let mut last_opt = None;
    for i in 0..total {
        let start = pos;
        let Ok(fixed) = Name::skip(resp, pos) else {
            return;
        };
        if fixed + 10 > resp.len() {
            return;
        }
        let end = fixed + 10 + usize::from(be16(resp, fixed + 8));
        if end > resp.len() {
            return;
        }
        if i >= before && be16(resp, fixed) == 41 {
            opts += 1;
            tail_opt.get_or_insert(start);
            last_opt = Some((u32::from(resp[fixed + 4]), be16(resp, fixed + 2)));
        } else {
            resp[fixed + 4..fixed + 8].copy_from_slice(&ttl.to_be_bytes());
            if tail_opt.is_some() {
                inner_opt = true;
                tail_opt = None;
            }
        }
        pos = end;
    }
    if opts == 0 {
        return;
    }
    // The extended rcode stays with the message (miekg keeps it in `Rcode`, and the
    // OPT the server then gives the reply carries it when packed): a bare OPT with
    // the last OPT's extended bits replaces the dropped ones.
    let ext = last_opt.filter(|&(ext, _)| ext != 0);
    match tail_opt {
        Some(start) if !inner_opt => {
            resp.truncate(start);
            hdr::set_count(resp, 3, ar - opts);
        }
        _ => {
            // An OPT before other additional records: rebuild without it.
            let Some(idx) = MsgIndex::parse(resp) else {
                return;
            };
            let keep: Vec<usize> = (0..idx.rrs.len())
                .filter(|&i| !(idx.rrs[i].section == 3 && idx.rrs[i].rtype == 41))
                .collect();
            let opts = Rebuild {
                compress: true,
                limit: None,
                reserve: 0,
            };
            rebuild(resp, &idx, &keep, opts, scratch);
            std::mem::swap(resp, scratch);
        }
    }
    if let Some((ext, class)) = ext {
        resp.push(0);
        resp.extend_from_slice(&41u16.to_be_bytes());
        resp.extend_from_slice(&class.to_be_bytes());
        resp.extend_from_slice(&(ext << 24).to_be_bytes());
        resp.extend_from_slice(&[0, 0]);
        let ar = hdr::counts(resp)[3];
        hdr::set_count(resp, 3, ar.saturating_add(1));
    }
}

/// Writes a refreshed reply another query fetched for this client: its ID and
/// its question's case.
pub(super) fn relay(ctx: &mut Ctx<'_>, reply: &[u8]) {
    ctx.resp.clear();
    ctx.resp.extend_from_slice(reply);
    if ctx.resp.len() < HEADER_LEN {
        return;
    }
    hdr::set_id(ctx.resp, ctx.req.id());
    let w = ctx.req.qname.wire();
    let end = HEADER_LEN + w.len();
    if ctx.resp.len() >= end && ctx.resp[HEADER_LEN..end].eq_ignore_ascii_case(w) {
        ctx.resp[HEADER_LEN..end].copy_from_slice(w);
    }
    ctx.written = true;
}

/// Go's `uint32(d.Seconds())` as it runs on amd64: whole seconds (truncated toward
/// zero), then the low 32 bits. Equal to the seconds for any duration a TTL can hold;
/// the Corefile's TTLs are not bounded, so longer ones wrap as CoreDNS's do.
fn go_secs_u32(ns: i64) -> u32 {
    (ns / SEC) as u32
}
