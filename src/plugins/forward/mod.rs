//! *forward*: proxies queries under FROM to upstream resolvers over UDP, TCP,
//! TLS or HTTPS (DoH), with CoreDNS's upstream choice, retries, health checks
//! and replies (plugins.md D, "Request algorithm").
//!
//! The request hook only decides whether a stanza takes the query and parks
//! it; the attempt loop runs in the parked half on the worker's runtime, with
//! the worker's own connections to each upstream ([`proxy::Local`], kept in a
//! thread-local table keyed by stanza). Shared state — failure counts, the
//! round-robin counter, `max_concurrent`, metrics — is atomics.
//!
//! Several `forward` stanzas in a block form one plugin: stanza i's "next"
//! is stanza i+1, the last one's next is the following plugin.
//!
//! CoreDNS: `plugin/forward/forward.go`, `policy.go`, `setup.go`.

pub mod doh;
pub mod health;
pub mod httpproxy;
pub mod metrics;
pub mod proxy;
pub mod resolve;
pub mod setup;
pub mod stream;
pub mod tls;
pub mod udp;

#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

pub use setup::{ForwardConfig, Policy, setup};

use crate::chain::{Ctx, ErrorKind, Flow, PluginError, Proto, Status};
use crate::wire::{HEADER_LEN, MsgIndex, Name, NameRef, be16, flags, hdr};
use proxy::{Fail, HcOpts, Local, Net, PoolOpts, TlsInfo, Upstream};
use setup::Scheme;

/// CoreDNS `defaultTimeout`: the whole attempt loop's budget.
const QUERY_BUDGET: Duration = Duration::from_secs(5);
/// The largest UDP payload over IPv4 (65,535 less the IP and UDP headers).
const MAX_UDP_PAYLOAD: usize = 65_507;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// One stanza, built.
pub struct Stanza {
    cfg: ForwardConfig,
    from: Option<Name>,
    ignored: Vec<Name>,
    ups: Vec<Arc<Upstream>>,
    concurrent: AtomicI64,
    robin: AtomicU32,
    id: u64,
}

/// The plugin: the block's stanzas in order.
pub struct Forward {
    stanzas: Vec<Arc<Stanza>>,
    /// The block's *dnstap* taps (CoreDNS's `tapPlugins`), set when the chain is built.
    pub taps: Option<crate::plugins::dnstap::Taps>,
}

struct WorkerPools {
    id: u64,
    stanza: Weak<Stanza>,
    ups: Vec<Local>,
}

thread_local! {
    /// This worker's connections, per live stanza.
    static POOLS: RefCell<Vec<Rc<WorkerPools>>> = const { RefCell::new(Vec::new()) };
}

fn pools(st: &Arc<Stanza>) -> Rc<WorkerPools> {
    POOLS.with(|p| {
        let mut v = p.borrow_mut();
        if let Some(x) = v.iter().find(|x| x.id == st.id) {
            return Rc::clone(x);
        }
        // Connections of stanzas replaced by a reload are closed here.
        v.retain(|x| x.stanza.strong_count() > 0);
        let x = Rc::new(WorkerPools {
            id: st.id,
            stanza: Arc::downgrade(st),
            ups: st.ups.iter().map(|u| Local::new(u)).collect(),
        });
        v.push(Rc::clone(&x));
        x
    })
}

fn upstream_err(text: Arc<str>) -> PluginError {
    PluginError {
        plugin: "forward",
        kind: ErrorKind::Upstream(text),
    }
}

impl Stanza {
    fn new(cfg: &ForwardConfig) -> Result<Self, String> {
        let hc_domain = Name::parse(&cfg.hc_domain).unwrap_or_default();
        let mut ups = Vec::with_capacity(cfg.upstreams.len());
        // DoH offers h2 then http/1.1 by ALPN (RFC 8484 §5.2); DoT offers none.
        let doh_tls = cfg.tls.as_ref().map(|c| {
            let mut c = (**c).clone();
            c.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            Arc::new(c)
        });
        for u in &cfg.upstreams {
            let opts = PoolOpts {
                expire: cfg.expire,
                max_age: cfg.max_age,
                max_idle_conns: cfg.max_idle_conns,
                read_timeout: cfg.read_timeout,
                source: cfg.source_address,
                hc: HcOpts {
                    interval: cfg.hc_interval,
                    rd: cfg.hc_recursion_desired,
                    domain: hc_domain.clone(),
                    tcp: cfg.force_tcp && u.scheme == Scheme::Dns,
                },
            };
            let name = || {
                tls::server_name(
                    u.server_name.as_deref(),
                    cfg.tls_servername.as_deref(),
                    u.addr.ip(),
                )
            };
            let tls = match (u.scheme, &cfg.tls, &doh_tls) {
                (Scheme::Dns, _, _) => None,
                (Scheme::Tls, Some(c), _) => Some(TlsInfo {
                    config: Arc::clone(c),
                    name: name(),
                    stanza_name: None,
                }),
                (Scheme::Https, _, Some(c)) => Some(TlsInfo {
                    config: Arc::clone(c),
                    name: name(),
                    stanza_name: cfg
                        .tls_servername
                        .as_ref()
                        .and_then(|n| rustls::pki_types::ServerName::try_from(n.clone()).ok()),
                }),
                _ => return Err("forward: TLS upstream without TLS config".into()),
            };
            let mut up = Upstream::new(u.clone(), opts, tls);
            if u.scheme == Scheme::Https {
                up = up.with_doh(doh::DohInfo::new(u, cfg.doh_method));
            }
            ups.push(Arc::new(up));
        }
        Ok(Self {
            from: Name::parse(&cfg.from),
            ignored: cfg.ignored.iter().filter_map(|z| Name::parse(z)).collect(),
            cfg: cfg.clone(),
            ups,
            concurrent: AtomicI64::new(0),
            robin: AtomicU32::new(0),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// CoreDNS `match`: under FROM and not under an `except` zone (a qname
    /// equal to FROM is always taken).
    fn matches(&self, qname: NameRef<'_>) -> bool {
        let Some(from) = &self.from else { return false };
        if !qname.is_subdomain_of(from) {
            return false;
        }
        if qname.eq_ignore_case(from) {
            return true;
        }
        !self.ignored.iter().any(|z| qname.is_subdomain_of(z))
    }

    /// The upstreams in policy order (CoreDNS `policy.go`).
    fn order(&self) -> Order {
        let n = self.ups.len();
        let mut o = Order::identity(n);
        match self.cfg.policy {
            Policy::Sequential => {}
            Policy::Random => match n {
                1 => {}
                2 => {
                    if fastrand::bool() {
                        o.swap(0, 1);
                    }
                }
                _ => o.shuffle(),
            },
            Policy::RoundRobin => {
                let i = (self.robin.fetch_add(1, Ordering::Relaxed).wrapping_add(1) as usize) % n;
                // [i, 0..i, i+1..n]: i moves to the front, the rest keep their order.
                o.move_to_front(i);
            }
        }
        o
    }

    /// The query as sent upstream: the client's message with the header flags
    /// and EDNS size as the plugins before us left them.
    fn upstream_query(ctx: &Ctx<'_>) -> crate::server::bufpool::Buf {
        let mut q = crate::server::bufpool::copy_of(ctx.req.msg);
        // CoreDNS packs the request it unpacked: counts that promised records the
        // message did not carry go upstream corrected, and names in full.
        let [_, an, ns, ar] = hdr::counts(&q);
        if [an, ns, ar] != ctx.req.counts {
            for (i, n) in ctx.req.counts.into_iter().enumerate() {
                hdr::set_count(&mut q, i + 1, n);
            }
        }
        if ctx.req.compressed {
            Self::uncompress(&mut q);
        }
        hdr::set_flags(&mut q, ctx.st.flags);
        if let (Some(opt), Some(size)) = (ctx.req.opt, ctx.st.udp_size) {
            if size != opt.udp_size {
                crate::wire::index::set_opt_size(&mut q, size);
            }
        }
        q
    }

    /// Writes the query's names out in full, as CoreDNS packs the request it
    /// unpacked (miekg packs without compression unless asked). A TSIG-signed
    /// query (miekg `IsTsig`: the last additional record) stays as it came, since
    /// its MAC covers the bytes; so does one that would grow past the largest UDP
    /// payload, which any transport can still carry as it came.
    fn uncompress(q: &mut crate::server::bufpool::Buf) {
        let Some(idx) = MsgIndex::parse(&q[..]) else {
            return;
        };
        if idx
            .rrs
            .last()
            .is_some_and(|r| r.section == 3 && r.rtype == 250)
        {
            return;
        }
        let order: Vec<usize> = (0..idx.rrs.len()).collect();
        let opts = crate::wire::index::Rebuild {
            compress: false,
            limit: None,
            reserve: 0,
        };
        let mut out = crate::server::bufpool::take();
        crate::wire::index::rebuild(&q[..], &idx, &order, opts, &mut out);
        if out.len() <= MAX_UDP_PAYLOAD {
            *q = out;
        }
    }

    /// Runs the attempt loop; `None` hands the query to the next stanza.
    async fn serve(
        self: &Arc<Self>,
        ctx: &mut Ctx<'_>,
        has_next: bool,
        taps: Option<&[crate::plugins::dnstap::Tap]>,
    ) -> Option<Flow> {
        let c = &self.cfg;
        let _slot = if c.max_concurrent > 0 {
            let n = self.concurrent.fetch_add(1, Ordering::AcqRel) + 1;
            let g = ConcurrentGuard(&self.concurrent);
            if n > c.max_concurrent {
                metrics::MAX_CONCURRENT_REJECTS.fetch_add(1, Ordering::Relaxed);
                let text = format!(
                    "concurrent queries exceeded maximum {}",
                    c.max_concurrent_text
                );
                return Some(Flow::Return(Status {
                    rcode: 5,
                    err: Some(upstream_err(text.into())),
                }));
            }
            Some(g)
        } else {
            None
        };
        let pools = pools(self);
        let list = self.order();
        let n = self.ups.len();
        // Parked queries share their run's clock reading (crate::server::parked::now).
        let start = crate::server::parked::now();
        let mut deadline = start + QUERY_BUDGET;
        if let Some(cancel) = c.cancel {
            deadline = deadline.min(ctx.st.start + cancel);
        }
        let max_attempts: u64 = c.max_connect_attempts.map_or(2 * n as u64, u64::from);
        let mut attempts = 0u64;
        let mut fails = 0usize;
        let mut failovers = 0usize;
        let mut i = 0usize;
        let mut last_err: Option<Arc<str>> = None;
        let mut q = Self::upstream_query(ctx);
        let size = usize::from(ctx.size());
        let client_net = match ctx.proto {
            Proto::Udp => Net::Udp,
            Proto::Tcp => Net::Tcp,
        };
        // The first attempt starts at `start`; later ones read the clock again.
        let mut now = start;
        while now < deadline && (max_attempts == 0 || attempts < max_attempts) {
            if i >= list.len() {
                i = 0;
                fails = 0;
            }
            let mut k = list.get(i);
            i += 1;
            if self.ups[k].down(c.max_fails) {
                fails += 1;
                if fails < n {
                    continue;
                }
                metrics::HEALTHCHECK_BROKEN.fetch_add(1, Ordering::Relaxed);
                if c.failfast {
                    break;
                }
                // Health checking looks broken: pick any upstream.
                k = fastrand::usize(..n);
            }
            let up = &self.ups[k];
            ctx.set_meta("forward/upstream", || up.metrics.to.clone());
            let span = crate::plugins::trace::child(ctx.st.trace, "connect");
            let local = &pools.ups[k];
            let (mut force_tcp, prefer_udp) = (c.force_tcp, c.prefer_udp);
            let res = loop {
                let net = if force_tcp {
                    Net::Tcp
                } else if prefer_udp {
                    Net::Udp
                } else {
                    client_net
                };
                let t0 = now;
                let r = proxy::exchange(up, local, &mut q, net, size, t0.into()).await;
                now = crate::server::parked::now();
                match r {
                    Err(Fail::CachedClosed) => continue,
                    Ok(reply) => {
                        let info = reply_info(&reply);
                        up.metrics
                            .observe(info.rcode, now.saturating_duration_since(t0));
                        let tc = hdr::flags(&reply) & flags::TC != 0;
                        if tc && !force_tcp && prefer_udp {
                            force_tcp = true;
                            continue;
                        }
                        break Ok((reply, info));
                    }
                    Err(e) => break Err(e),
                }
            };
            if let Some(s) = span {
                s.finish(&[("peer.address", up.metrics.to.clone())]);
            }
            if let Some(taps) = taps {
                // The last exchange's socket (read before any other wait) and protocol,
                // as CoreDNS reports them: DoH is TCP; DoT is TCP once dialled (a failed
                // dial reports the protocol asked for).
                let laddr = local.tap_laddr.take();
                let asked_tcp = force_tcp || (!prefer_udp && client_net == Net::Tcp);
                let tcp = match up.cfg.scheme {
                    setup::Scheme::Https => true,
                    setup::Scheme::Tls => asked_tcp || laddr.is_some(),
                    setup::Scheme::Dns => asked_tcp,
                };
                crate::plugins::dnstap::forwarded(
                    taps,
                    ctx,
                    &crate::plugins::dnstap::Forwarded {
                        query: &q,
                        reply: res.as_ref().ok().map(|(r, _)| &r[..]),
                        local: laddr,
                        upstream: up.cfg.addr,
                        tcp,
                        start,
                    },
                );
            }
            let (mut reply, info) = match res {
                Err(e) => {
                    last_err = Some(e.text());
                    if c.max_fails != 0 && e != Fail::Full {
                        health::trigger(up);
                    }
                    if max_attempts > 0 {
                        attempts += 1;
                        if attempts >= max_attempts {
                            break;
                        }
                    }
                    if fails < n {
                        continue;
                    }
                    break;
                }
                // CoreDNS keeps the last exchange's error: a reply clears it, so a loop
                // that ends after failover replies says "no healthy proxies".
                Ok(r) => {
                    last_err = None;
                    r
                }
            };
            hdr::set_id(&mut reply, ctx.req.id());
            if !question_matches(&reply, ctx) {
                if crate::clog::debug_enabled() {
                    dump_wrong_reply(&reply, ctx);
                }
                let mut b = ctx.reply();
                b.set_rcode(1);
                b.finish();
                ctx.written = true;
                return Some(Flow::Return(Status::rcode(0)));
            }
            if c.failover_rcodes.contains(&info.rcode) {
                failovers += 1;
                if failovers < n {
                    continue;
                }
            }
            if has_next && c.next_rcodes.contains(&info.rcode) {
                return None;
            }
            if has_next && c.next_on_nodata && info.rcode == 0 && info.answers == 0 {
                return None;
            }
            // The reply's buffer becomes the response (no copy); the response's old one
            // goes back to the pool, emptied, with `reply`.
            std::mem::swap(ctx.resp, &mut *reply);
            ctx.written = true;
            return Some(Flow::Return(Status::rcode(0)));
        }
        let text = last_err.unwrap_or_else(|| "no healthy proxies".into());
        Some(Flow::Return(Status {
            rcode: 2,
            err: Some(upstream_err(text)),
        }))
    }
}

/// Upstream indices in policy order, inline for up to [`Order::INLINE`] upstreams (no
/// allocation per query), on the heap beyond.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Order {
    Inline([u8; Self::INLINE], u8),
    Heap(Vec<usize>),
}

impl Order {
    const INLINE: usize = 16;

    /// `0..n`.
    fn identity(n: usize) -> Self {
        if n <= Self::INLINE {
            let mut a = [0u8; Self::INLINE];
            for (i, v) in a.iter_mut().enumerate() {
                *v = i as u8;
            }
            Self::Inline(a, n as u8)
        } else {
            Self::Heap((0..n).collect())
        }
    }

    fn len(&self) -> usize {
        match self {
            Self::Inline(_, n) => usize::from(*n),
            Self::Heap(v) => v.len(),
        }
    }

    fn get(&self, i: usize) -> usize {
        match self {
            Self::Inline(a, _) => usize::from(a[i]),
            Self::Heap(v) => v[i],
        }
    }

    #[cfg(test)]
    fn to_vec(&self) -> Vec<usize> {
        (0..self.len()).map(|i| self.get(i)).collect()
    }

    fn swap(&mut self, i: usize, j: usize) {
        match self {
            Self::Inline(a, _) => a.swap(i, j),
            Self::Heap(v) => v.swap(i, j),
        }
    }

    fn shuffle(&mut self) {
        match self {
            Self::Inline(a, n) => fastrand::shuffle(&mut a[..usize::from(*n)]),
            Self::Heap(v) => fastrand::shuffle(v),
        }
    }

    /// Moves entry `i` to the front; the others keep their order.
    fn move_to_front(&mut self, i: usize) {
        match self {
            Self::Inline(a, _) => a[..=i].rotate_right(1),
            Self::Heap(v) => v[..=i].rotate_right(1),
        }
    }
}

struct ConcurrentGuard<'a>(&'a AtomicI64);

impl Drop for ConcurrentGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What the attempt loop needs from a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ReplyInfo {
    /// Full rcode (with the OPT's extended bits).
    rcode: u16,
    /// Answer records.
    answers: u16,
}

fn reply_info(m: &[u8]) -> ReplyInfo {
    ReplyInfo {
        rcode: crate::wire::full_rcode(m),
        answers: hdr::counts(m)[1],
    }
}

/// With *debug* on, CoreDNS's hex dump of a reply whose question does not match
/// (`debug.Hexdumpf`): the reply as miekg packs it again, names uncompressed, with
/// the client's ID.
fn dump_wrong_reply(reply: &[u8], ctx: &Ctx<'_>) {
    let mut packed = Vec::new();
    let data = match MsgIndex::parse(reply) {
        Some(idx) => {
            let order: Vec<usize> = (0..idx.rrs.len()).collect();
            let plain = crate::wire::index::Rebuild {
                compress: false,
                limit: None,
                reserve: 0,
            };
            crate::wire::index::rebuild(reply, &idx, &order, plain, &mut packed);
            &packed[..]
        }
        None => reply,
    };
    let what = format!(
        "Wrong reply for id: {}, {} {}",
        hdr::id(reply),
        ctx.req.qname,
        ctx.req.qtype
    );
    crate::clog::hexdump("forward", &what, data);
}

/// CoreDNS `request.Match`: one question, QR set, same name (case folded),
/// type and class.
pub(crate) fn question_matches(reply: &[u8], ctx: &Ctx<'_>) -> bool {
    if hdr::counts(reply)[0] != 1 || hdr::flags(reply) & flags::QR == 0 {
        return false;
    }
    // Compared in place when the reply's question is uncompressed (as every
    // upstream writes it); a compressed one is read out first.
    let (same, p) = match Name::scan_ref(reply, HEADER_LEN) {
        Ok((Some(n), p)) => (n.wire().eq_ignore_ascii_case(ctx.req.qname.wire()), p),
        Ok((None, _)) => match Name::read(reply, HEADER_LEN) {
            Ok((name, p)) => (ctx.req.qname.eq_ignore_case(&name), p),
            Err(_) => return false,
        },
        Err(_) => return false,
    };
    // CoreDNS 1.14.7's `Request.Match`: name (any case), type and class. A question
    // that ends early reads as zeros (miekg), which match no query.
    let field = |at: usize| {
        if at + 2 <= reply.len() {
            be16(reply, at)
        } else {
            0
        }
    };
    same && field(p) == ctx.req.qtype && field(p + 2) == ctx.req.qclass
}

impl Forward {
    /// Builds the stanzas (no I/O; sockets open on first use).
    pub fn new(cfgs: &[ForwardConfig]) -> Result<Self, String> {
        crate::metrics::contribute(metrics::collect);
        let stanzas = cfgs
            .iter()
            .map(|c| Stanza::new(c).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            stanzas,
            taps: None,
        })
    }

    fn first_match(&self, qname: NameRef<'_>, from: usize) -> Option<usize> {
        (from..self.stanzas.len()).find(|&i| self.stanzas[i].matches(qname))
    }

    /// Request hook: park queries a stanza takes, pass the rest on.
    pub fn serve(&self, ctx: &mut Ctx<'_>) -> Flow {
        match self.first_match(ctx.req.qname.name(), 0) {
            Some(i) => {
                ctx.st.park = i as u32;
                Flow::Park
            }
            None => Flow::Next,
        }
    }

    /// The parked half: the attempt loop of the matching stanza(s).
    pub async fn serve_async(&self, ctx: &mut Ctx<'_>) -> Flow {
        let mut i = ctx.st.park as usize;
        loop {
            let Some(st) = self.stanzas.get(i) else {
                return Flow::Next;
            };
            let has_next = i + 1 < self.stanzas.len();
            if let Some(flow) = st.serve(ctx, has_next, self.taps.as_deref()).await {
                return flow;
            }
            match self.first_match(ctx.req.qname.name(), i + 1) {
                Some(j) => i = j,
                None => return Flow::Next,
            }
        }
    }

    /// The shared state of stanza `s`'s upstreams (tests, introspection).
    pub fn upstreams(&self, s: usize) -> &[Arc<Upstream>] {
        self.stanzas.get(s).map_or(&[], |st| &st.ups)
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        for st in &self.stanzas {
            for u in &st.ups {
                u.stopped.store(true, Ordering::Relaxed);
            }
        }
    }
}
