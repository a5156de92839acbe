//! Time-travel tests on a manual clock: the cache's request and response hooks
//! around a scripted upstream (the plugins after the cache), with detached
//! refreshes run by the harness. Cases follow CoreDNS's `cache_test.go`,
//! `prefetch_test.go` and the verified points of plugins.md C.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use corefile::Dispenser;

use super::*;
use crate::chain::{Ctx, Detached, Flow, Proto, Status};
use crate::config::{BlockSettings, SetupCtx};
use crate::wire::{Builder, MsgIndex, Request, SectionKind, Verdict, hdr, parse_query};

#[path = "setup_tests.rs"]
mod setup_tests;
#[path = "stale_tests.rs"]
mod stale_tests;

/// One record of a scripted reply.
#[derive(Clone)]
struct Rr {
    owner: &'static str,
    rtype: u16,
    ttl: u32,
    rdata: Vec<u8>,
    section: SectionKind,
}

fn wire(name: &str) -> Vec<u8> {
    Name::parse(name).expect("name").wire().to_vec()
}

fn a(owner: &'static str, ttl: u32, last: u8) -> Rr {
    Rr {
        owner,
        rtype: 1,
        ttl,
        rdata: vec![127, 0, 0, last],
        section: SectionKind::Answer,
    }
}

fn cname(owner: &'static str, ttl: u32, target: &str) -> Rr {
    Rr {
        owner,
        rtype: 5,
        ttl,
        rdata: wire(target),
        section: SectionKind::Answer,
    }
}

fn soa(owner: &'static str, ttl: u32, minimum: u32) -> Rr {
    let mut rd = wire("ns.example.org.");
    rd.extend(wire("hostmaster.example.org."));
    for v in [1u32, 7200, 3600, 1_209_600, minimum] {
        rd.extend(v.to_be_bytes());
    }
    Rr {
        owner,
        rtype: 6,
        ttl,
        rdata: rd,
        section: SectionKind::Authority,
    }
}

fn rrsig(owner: &'static str, ttl: u32, exp: u32, inc: u32) -> Rr {
    let mut rd = vec![0, 1, 8, 2];
    rd.extend(ttl.to_be_bytes());
    rd.extend(exp.to_be_bytes());
    rd.extend(inc.to_be_bytes());
    rd.extend([0x2f, 0x15]);
    rd.extend(wire("example.org."));
    rd.extend([1, 2, 3, 4]);
    Rr {
        owner,
        rtype: 46,
        ttl,
        rdata: rd,
        section: SectionKind::Answer,
    }
}

/// An upstream reply.
#[derive(Clone, Default)]
struct Up {
    rcode: u8,
    flags: u16,
    rrs: Vec<Rr>,
    /// Answer a different name (a spoofed or broken reply).
    qname: Option<&'static str>,
    /// Append an OPT with this DO bit and an EDE option.
    opt: Option<bool>,
}

fn ok(rrs: Vec<Rr>) -> Option<Up> {
    Some(Up {
        flags: flags::RA,
        rrs,
        ..Up::default()
    })
}

fn rc(rcode: u8, rrs: Vec<Rr>) -> Option<Up> {
    Some(Up {
        rcode,
        flags: flags::RA,
        rrs,
        ..Up::default()
    })
}

type Upstream<'a> = &'a dyn Fn(&Request<'_>) -> Option<Up>;

/// A query.
#[derive(Clone, Copy)]
struct Q {
    name: &'static str,
    qtype: u16,
    do_bit: bool,
    cd: bool,
    ad: bool,
}

fn q(name: &'static str) -> Q {
    Q {
        name,
        qtype: 1,
        do_bit: false,
        cd: false,
        ad: false,
    }
}

impl Q {
    fn msg(&self) -> Vec<u8> {
        let mut f = flags::RD;
        if self.cd {
            f |= flags::CD;
        }
        if self.ad {
            f |= flags::AD;
        }
        let mut m = vec![0x12, 0x34];
        m.extend(f.to_be_bytes());
        m.extend([0, 1, 0, 0, 0, 0, 0, 1]);
        m.extend(wire(self.name));
        m.extend(self.qtype.to_be_bytes());
        m.extend([0, 1]);
        let ttl: u32 = if self.do_bit { 0x8000 } else { 0 };
        m.extend([0, 0, 41, 0x04, 0xd0]);
        m.extend(ttl.to_be_bytes());
        m.extend([0, 0]);
        m
    }
}

/// The result of one query.
struct Out {
    msg: Option<Vec<u8>>,
    st: Status,
}

impl Out {
    fn m(&self) -> &[u8] {
        self.msg.as_deref().expect("a reply")
    }
    fn ttls(&self) -> Vec<u32> {
        let idx = MsgIndex::parse(self.m()).expect("index");
        idx.rrs
            .iter()
            .filter(|r| r.rtype != 41)
            .map(|r| r.ttl)
            .collect()
    }
    fn flag(&self, f: u16) -> bool {
        hdr::flags(self.m()) & f != 0
    }
    fn rcode(&self) -> u8 {
        hdr::rcode(self.m())
    }
    fn last_octets(&self) -> Vec<u8> {
        let m = self.m();
        let idx = MsgIndex::parse(m).expect("index");
        idx.rrs
            .iter()
            .filter(|r| r.rtype == 1)
            .map(|r| m[r.rdata()][3])
            .collect()
    }
}

struct H {
    cache: Cache,
    clock: Arc<ManualClock>,
    server: Arc<str>,
    calls: Cell<usize>,
    /// Flags the upstream saw last.
    up_flags: Cell<u16>,
    /// Hold detached refreshes instead of running them.
    hold: Cell<bool>,
    held: RefCell<Vec<Detached>>,
}

fn config(text: &str) -> CacheConfig {
    let keys = vec!["dns://.:53".to_owned()];
    let mut settings = BlockSettings::default();
    let ctx = SetupCtx {
        keys: &keys,
        zones: vec![".".into()],
        settings: &mut settings,
        filename: "Corefile",
    };
    setup(&mut Dispenser::from_text("Corefile", text), &ctx).expect("config")
}

/// 2017-04-21 (CoreDNS's RRSIG test date).
const T0_UNIX: i64 = 1_492_771_881;

impl H {
    fn new(text: &str) -> Self {
        let clock = ManualClock::new(T0_UNIX);
        let s = shared::private(&config(text));
        Self {
            cache: Cache::with_shared(s, Clock::Manual(Arc::clone(&clock))),
            clock,
            server: {
                static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);
                Arc::from(format!(
                    "dns://:{}",
                    N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                ))
            },
            calls: Cell::new(0),
            up_flags: Cell::new(0),
            hold: Cell::new(false),
            held: RefCell::new(Vec::new()),
        }
    }

    fn at(&self, secs: f64) {
        self.clock.set((secs * 1e9) as i64);
    }

    fn backend(&self, ctx: &mut Ctx<'_>, up: Upstream<'_>) -> Status {
        self.calls.set(self.calls.get() + 1);
        self.up_flags.set(ctx.st.flags);
        let Some(r) = up(&ctx.req) else {
            return Status::rcode(2);
        };
        let mut b = Builder::reply_flags(ctx.resp, &ctx.req, ctx.st.flags);
        b.set_flags(r.flags);
        b.set_rcode(r.rcode);
        let mut sorted = r.rrs.clone();
        sorted.sort_by_key(|x| x.section);
        for x in &sorted {
            b.section(x.section);
            b.rr_wire(&wire(x.owner), x.rtype, 1, x.ttl, &x.rdata);
        }
        if let Some(do_bit) = r.opt {
            b.section(SectionKind::Additional);
            let ttl = if do_bit { 0x8000 } else { 0 };
            b.rr_wire(&[0], 41, 1232, ttl, &[0, 15, 0, 2, 0, 23]);
        }
        b.finish();
        if let Some(n) = r.qname {
            // Rewrite the question name.
            let w = wire(n);
            let old = ctx.req.qname.wire().len();
            ctx.resp.splice(12..12 + old, w);
        }
        ctx.written = true;
        Status::rcode(u16::from(r.rcode))
    }

    fn run_job(&self, job: Detached, up: Upstream<'_>) {
        let Verdict::Query(req) = parse_query(&job.msg) else {
            panic!("bad detached query");
        };
        let (mut resp, mut scratch) = (Vec::new(), Vec::new());
        let mut ctx = Ctx::new(
            &job.server,
            req,
            job.proto,
            job.peer,
            job.local,
            &mut resp,
            &mut scratch,
            Instant::now(),
        );
        ctx.st.flags = job.flags;
        ctx.st.marks = job.marks;
        let mut st = self.backend(&mut ctx, up);
        self.cache.respond(&mut ctx, &mut st);
    }

    fn flush(&self, up: Upstream<'_>) {
        let jobs: Vec<Detached> = self.held.borrow_mut().drain(..).collect();
        for j in jobs {
            self.run_job(j, up);
        }
    }

    fn ask(&self, query: Q, up: Upstream<'_>) -> Out {
        let msg = query.msg();
        let Verdict::Query(req) = parse_query(&msg) else {
            panic!("bad query");
        };
        let (mut resp, mut scratch) = (Vec::with_capacity(4096), Vec::new());
        let peer = SocketAddr::from(([127, 0, 0, 1], 5353));
        let mut ctx = Ctx::new(
            &self.server,
            req,
            Proto::Udp,
            peer,
            peer,
            &mut resp,
            &mut scratch,
            Instant::now(),
        );
        let flow = self.cache.serve(&mut ctx);
        let mut job = ctx.detach.take();
        let take_job = |job: &mut Option<Detached>| {
            if let Some(j) = job.take() {
                if self.hold.get() {
                    self.held.borrow_mut().push(j);
                } else {
                    self.run_job(j, up);
                }
            }
        };
        let mut st = match flow {
            Flow::Next => self.backend(&mut ctx, up),
            Flow::Return(s) => s,
            Flow::Park => {
                take_job(&mut job);
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                    .expect("rt");
                match rt.block_on(self.cache.serve_async(&mut ctx)) {
                    Flow::Return(s) => s,
                    _ => panic!("verify must finish"),
                }
            }
        };
        take_job(&mut job);
        self.cache.respond(&mut ctx, &mut st);
        let written = ctx.written;
        drop(ctx);
        Out {
            msg: written.then_some(resp),
            st,
        }
    }

    /// A counter of this harness's server (`ty` = the `type` label or "").
    fn counter(&self, name: &str, ty: &str) -> u64 {
        let mut f = crate::metrics::Families::new();
        metrics::families(&mut f);
        let Some(fam) = f.get(name) else { return 0 };
        let server = format!("server=\"{}\"", self.server);
        let t = format!("type=\"{ty}\"");
        fam.samples
            .iter()
            .filter(|x| x.1.contains(&server) && (ty.is_empty() || x.1.contains(&t)))
            .map(|x| x.2.parse::<u64>().unwrap_or(0))
            .sum()
    }

    fn lens(&self) -> (usize, usize) {
        (self.cache.s.pcache.len(), self.cache.s.ncache.len())
    }
}

fn up_a(ttl: u32) -> impl Fn(&Request<'_>) -> Option<Up> {
    move |r| {
        let owner: &'static str = Box::leak(r.qname.to_string().into_boxed_str());
        ok(vec![a(owner, ttl, 1)])
    }
}

#[test]
fn ttl_decrements_and_the_miss_is_flattened() {
    let h = H::new("cache 30");
    let up = |_: &Request<'_>| ok(vec![a("Example.ORG.", 300, 1)]);
    let o = h.ask(q("example.org."), &up);
    assert_eq!(o.ttls(), vec![30], "first reply capped to 30");
    assert!(!o.flag(flags::AA), "the miss keeps the upstream's flags");
    assert_eq!(
        hdr::counts(o.m())[3],
        0,
        "OPT removed (the server adds the client's)"
    );
    h.at(10.7);
    let o = h.ask(q("eXample.org."), &up);
    assert_eq!(h.calls.get(), 1);
    assert_eq!(o.ttls(), vec![20], "whole seconds elapsed, truncated");
    assert!(o.flag(flags::AA) && o.flag(flags::RA) && o.flag(flags::RD));
    assert_eq!(
        &o.m()[12..12 + 13],
        &wire("eXample.org.")[..],
        "question in the client's case"
    );
    assert_eq!(
        &o.m()[12 + 17..12 + 30],
        &wire("Example.ORG.")[..],
        "owner as stored"
    );
    assert_eq!(hdr::id(o.m()), 0x1234);
    h.at(30.0);
    h.ask(q("example.org."), &up);
    assert_eq!(h.calls.get(), 2, "expired at the TTL");
}

#[test]
fn min_and_max_ttl() {
    for (conf, up_ttl, want, cached) in [
        ("cache", 2, 5, true),
        ("cache", 0, 5, true),
        ("cache", 7200, 3600, true),
        ("cache 10", 1800, 10, true),
        ("cache {\n success 100 3600 0\n}", 0, 0, false),
        ("cache {\n success 100 7200 0\n}", 86_400, 7200, true),
    ] {
        let h = H::new(conf);
        let o = h.ask(q("example.org."), &up_a(up_ttl));
        assert_eq!(o.ttls(), vec![want], "{conf} upstream {up_ttl}");
        assert_eq!(h.lens().0 == 1, cached, "{conf} upstream {up_ttl}");
    }
}

#[test]
fn cname_chain_flattened_to_the_minimum() {
    let h = H::new("cache 300");
    let up = |_: &Request<'_>| {
        ok(vec![
            cname("www.example.org.", 300, "a.example.net."),
            a("a.example.net.", 20, 9),
        ])
    };
    assert_eq!(h.ask(q("www.example.org."), &up).ttls(), vec![20, 20]);
    h.at(5.0);
    assert_eq!(h.ask(q("www.example.org."), &up).ttls(), vec![15, 15]);
    assert_eq!(h.calls.get(), 1);
}

#[test]
fn negative_caching_uses_the_soa_ttl() {
    let h = H::new("cache 30");
    let nx = |_: &Request<'_>| rc(3, vec![soa("example.org.", 25, 8)]);
    let o = h.ask(q("nx.example.org."), &nx);
    assert_eq!(
        (o.rcode(), o.ttls()),
        (3, vec![25]),
        "SOA RR TTL, not MINIMUM"
    );
    h.at(5.0);
    let o = h.ask(q("nx.example.org."), &nx);
    assert_eq!((o.rcode(), o.ttls(), h.calls.get()), (3, vec![20], 1));
    assert!(o.flag(flags::AA));
    assert_eq!(h.lens(), (0, 1));
    // NXDOMAIN without SOA is passed through, not cached.
    let bare = |_: &Request<'_>| rc(3, vec![]);
    h.ask(q("bare.example.org."), &bare);
    h.ask(q("bare.example.org."), &bare);
    assert_eq!(h.calls.get(), 3);
    // NODATA (SOA, NOERROR) goes to the denial cache, capped by the denial max.
    let nodata = |_: &Request<'_>| rc(0, vec![soa("example.org.", 3600, 300)]);
    let o = h.ask(q("nodata.example.org."), &nodata);
    assert_eq!(o.ttls(), vec![30]);
    assert_eq!(h.lens(), (0, 2));
    // A CNAME that does not reach the type: not cached without SOA, NODATA with it.
    let dangling = |_: &Request<'_>| ok(vec![cname("alias.example.org.", 60, "x.example.net.")]);
    h.ask(q("alias.example.org."), &dangling);
    assert_eq!(h.lens(), (0, 2));
    let dangling_soa = |_: &Request<'_>| {
        ok(vec![
            cname("alias.example.org.", 60, "x.example.net."),
            soa("example.net.", 60, 60),
        ])
    };
    h.ask(q("alias.example.org."), &dangling_soa);
    assert_eq!(h.lens(), (0, 3));
}

#[test]
fn servfail_is_cached_for_its_duration() {
    let h = H::new("cache");
    let fail = |_: &Request<'_>| rc(2, vec![]);
    h.ask(q("example.org."), &fail);
    h.at(4.9);
    let o = h.ask(q("example.org."), &fail);
    assert_eq!(
        (o.rcode(), h.calls.get()),
        (2, 1),
        "repeat within 5 s from the cache"
    );
    assert!(o.flag(flags::AA));
    h.at(5.0);
    h.ask(q("example.org."), &fail);
    assert_eq!(h.calls.get(), 2);
    // servfail 0 disables; a failure without a reply is never cached.
    let h = H::new("cache {\n servfail 0\n}");
    h.ask(q("example.org."), &fail);
    assert_eq!(h.lens(), (0, 0));
    let h = H::new("cache");
    let o = h.ask(q("example.org."), &|_| None);
    assert!(o.msg.is_none() && o.st.rcode == 2);
    assert_eq!(h.lens(), (0, 0));
}

#[test]
fn servfail_does_not_shadow_a_positive_entry() {
    let k = key(&Name::parse("example.org.").expect("n"), 1, 1, false, false);
    let fail = |_: &Request<'_>| rc(2, vec![]);
    let hs = H::new("cache");
    hs.ask(q("example.org."), &fail);
    let failed = hs.cache.s.ncache.remove(k).expect("servfail item");
    let h = H::new("cache");
    h.ask(q("example.org."), &up_a(120));
    h.cache.s.ncache.insert(failed, |_, _| {});
    h.at(1.0);
    let o = h.ask(q("example.org."), &fail);
    assert_eq!((o.rcode(), o.ttls(), h.calls.get()), (0, vec![119], 1));
}

#[test]
fn truncated_and_mismatched_replies_are_not_cached() {
    let h = H::new("cache");
    let tc = |_: &Request<'_>| {
        Some(Up {
            flags: flags::TC,
            rrs: vec![a("example.org.", 60, 1)],
            ..Up::default()
        })
    };
    h.ask(q("example.org."), &tc);
    assert_eq!(h.lens(), (0, 0));
    let spoof = |_: &Request<'_>| {
        Some(Up {
            qname: Some("evil.example."),
            rrs: vec![a("evil.example.", 60, 1)],
            ..Up::default()
        })
    };
    h.ask(q("example.org."), &spoof);
    assert_eq!(h.lens(), (0, 0));
    assert_eq!(h.counter("coredns_cache_drops_total", ""), 1);
}

#[test]
fn do_and_cd_split_the_cache_ad_follows_the_client() {
    let h = H::new("cache");
    let up = |_: &Request<'_>| {
        Some(Up {
            flags: flags::RA | flags::AD,
            rrs: vec![a("example.org.", 60, 1)],
            ..Up::default()
        })
    };
    let o = h.ask(q("example.org."), &up);
    assert!(
        h.up_flags.get() & flags::AD != 0,
        "the upstream is asked with AD"
    );
    assert!(!o.flag(flags::AD), "AD cleared for a client without DO/AD");
    let o = h.ask(q("example.org."), &up);
    assert!(!o.flag(flags::AD) && h.calls.get() == 1);
    let o = h.ask(
        Q {
            ad: true,
            ..q("example.org.")
        },
        &up,
    );
    assert!(
        o.flag(flags::AD) && h.calls.get() == 1,
        "AD kept for an AD client"
    );
    let o = h.ask(
        Q {
            do_bit: true,
            ..q("example.org.")
        },
        &up,
    );
    assert!(
        o.flag(flags::AD) && h.calls.get() == 2,
        "DO is a separate entry"
    );
    h.ask(
        Q {
            cd: true,
            ..q("example.org.")
        },
        &up,
    );
    h.ask(
        Q {
            cd: true,
            do_bit: true,
            ..q("example.org.")
        },
        &up,
    );
    assert_eq!(h.calls.get(), 4);
    assert_eq!(h.lens(), (4, 0));
    h.ask(
        Q {
            cd: true,
            ..q("EXAMPLE.org.")
        },
        &up,
    );
    assert_eq!(h.calls.get(), 4, "0x20 case shares entries");
}

#[test]
fn edns_options_of_the_upstream_are_dropped() {
    let h = H::new("cache");
    let up = |_: &Request<'_>| {
        Some(Up {
            opt: Some(false),
            rrs: vec![a("example.org.", 60, 1)],
            ..Up::default()
        })
    };
    let o = h.ask(q("example.org."), &up);
    assert_eq!(hdr::counts(o.m())[3], 0);
    let o = h.ask(q("example.org."), &up);
    assert_eq!(hdr::counts(o.m())[3], 0);
}

#[test]
fn expired_signatures_are_not_cached_for_do() {
    let h = H::new("cache");
    // Valid 2017-04-21 .. 2017-05-21 (T0 is inside).
    let (inc, exp) = (1_492_743_181u32, 1_495_335_181u32);
    let good = move |_: &Request<'_>| {
        Some(Up {
            opt: Some(true),
            rrs: vec![
                a("example.org.", 60, 1),
                rrsig("example.org.", 60, exp, inc),
            ],
            ..Up::default()
        })
    };
    h.ask(
        Q {
            do_bit: true,
            ..q("example.org.")
        },
        &good,
    );
    assert_eq!(h.lens(), (1, 0));
    let old = move |_: &Request<'_>| {
        Some(Up {
            opt: Some(true),
            rrs: vec![
                a("miek.nl.", 60, 1),
                rrsig("miek.nl.", 60, inc - 2_592_000, inc - 5_184_000),
            ],
            ..Up::default()
        })
    };
    h.ask(
        Q {
            do_bit: true,
            ..q("miek.nl.")
        },
        &old,
    );
    assert_eq!(h.lens(), (1, 0), "expired RRSIG under DO");
}

#[test]
fn empty_noerror_with_additional_records_is_cached() {
    // whoami's shape: data in the additional section, TTL 0 → 5 s.
    let h = H::new("cache");
    let up = |_: &Request<'_>| {
        let mut r = a("example.org.", 0, 1);
        r.section = SectionKind::Additional;
        ok(vec![r])
    };
    assert_eq!(h.ask(q("example.org."), &up).ttls(), vec![5]);
    h.at(4.0);
    assert_eq!(h.ask(q("example.org."), &up).ttls(), vec![1]);
    assert_eq!(h.calls.get(), 1);
}

#[test]
fn capacity_is_enforced_by_random_eviction() {
    let h = H::new("cache {\n success 1\n}");
    assert_eq!(h.cache.s.pcache.capacity(), 1024);
    let names: Vec<&'static str> = (0..3000)
        .map(|i| &*Box::leak(format!("n{i}.example.org.").into_boxed_str()))
        .collect();
    for n in &names {
        h.ask(q(n), &up_a(60));
    }
    let len = h.lens().0;
    assert!(len <= 1024 && len > 900, "{len}");
    let n = h.counter("coredns_cache_evictions_total", "success");
    assert_eq!(n as usize, 3000 - len);
}

#[test]
fn disable_is_a_zone_match() {
    let h = H::new("cache {\n disable denial sub.example.org\n disable success pos.example.org\n}");
    let nx = |_: &Request<'_>| rc(3, vec![soa("example.org.", 60, 60)]);
    h.ask(q("a.sub.example.org."), &nx);
    h.ask(q("sub.example.org."), &nx);
    assert_eq!(h.lens(), (0, 0));
    h.ask(q("a.sub.example.org."), &up_a(60));
    assert_eq!(h.lens(), (1, 0), "positive answers still cached");
    h.ask(q("x.pos.example.org."), &up_a(60));
    h.ask(q("x.pos.example.org."), &nx);
    assert_eq!(h.lens(), (1, 1));
}

#[test]
fn keepttl_serves_the_original_ttl() {
    let h = H::new("cache {\n keepttl\n}");
    h.ask(q("cached.org."), &up_a(60));
    for t in [0.0, 30.0, 59.9] {
        h.at(t);
        assert_eq!(h.ask(q("cached.org."), &up_a(60)).ttls(), vec![60]);
    }
    assert_eq!(h.calls.get(), 1);
}

/// A prefetch test: (seconds, expected "TTL last-octet", upstream called?).
fn prefetch_case(conf: &str, ttl: u32, steps: &[(f64, Q, u32, u8, bool)]) {
    let h = H::new(conf);
    let n = Cell::new(0u8);
    let up = move |r: &Request<'_>| {
        n.set(n.get() + 1);
        let owner: &'static str = Box::leak(r.qname.to_string().into_boxed_str());
        ok(vec![a(owner, ttl, n.get())])
    };
    for (i, (t, query, want_ttl, want_ip, fetch)) in steps.iter().enumerate() {
        h.at(*t);
        let before = h.calls.get();
        let o = h.ask(*query, &up);
        assert_eq!(
            (o.ttls(), o.last_octets()),
            (vec![*want_ttl], vec![*want_ip]),
            "{conf} step {i}"
        );
        assert_eq!(h.calls.get() > before, *fetch, "{conf} step {i}: fetch");
    }
}

#[test]
fn prefetch_by_popularity_and_remaining_ttl() {
    let name = "hits.reset.example.org.";
    prefetch_case(
        "cache {\n prefetch 1\n}",
        80,
        &[
            (0.0, q(name), 80, 1, true),
            (73.0, q(name), 7, 1, true),
            (80.0, q(name), 73, 2, false),
        ],
    );
    prefetch_case(
        "cache {\n prefetch 1\n}",
        5,
        &[
            (0.0, q(name), 5, 1, true),
            (1.0, q(name), 4, 1, false),
            (4.0, q(name), 1, 1, true),
            (5.0, q(name), 4, 2, false),
        ],
    );
    prefetch_case(
        "cache",
        30,
        &[
            (0.0, q(name), 30, 1, true),
            (15.0, q(name), 15, 1, false),
            (29.0, q(name), 1, 1, false),
            (30.0, q(name), 30, 2, true),
        ],
    );
    let d = Q {
        do_bit: true,
        ..q(name)
    };
    prefetch_case(
        "cache {\n prefetch 1\n}",
        80,
        &[
            (0.0, d, 80, 1, true),
            (73.0, d, 7, 1, true),
            (80.0, d, 73, 2, false),
            (80.0, q(name), 80, 3, true),
        ],
    );
    let c = Q {
        cd: true,
        ..q(name)
    };
    prefetch_case(
        "cache {\n prefetch 1\n}",
        80,
        &[
            (0.0, c, 80, 1, true),
            (73.0, c, 7, 1, true),
            (80.0, c, 73, 2, false),
            (80.0, q(name), 80, 3, true),
        ],
    );
    // Popularity: 3 hits within the window are needed; a gap resets the count.
    prefetch_case(
        "cache {\n prefetch 3 10s\n}",
        100,
        &[
            (0.0, q(name), 100, 1, true),
            (91.0, q(name), 9, 1, false),
            (95.0, q(name), 5, 1, false),
            (96.0, q(name), 4, 1, true),
        ],
    );
    prefetch_case(
        "cache {\n prefetch 3 10s\n}",
        100,
        &[
            (0.0, q(name), 100, 1, true),
            (70.0, q(name), 30, 1, false),
            (91.0, q(name), 9, 1, false),
            (95.0, q(name), 5, 1, false),
        ],
    );
}

#[test]
fn prefetch_runs_once_per_item() {
    for conf in ["cache {\n prefetch 1 1m 50%\n}", "cache {\n serve_stale\n}"] {
        let h = H::new(conf);
        h.ask(q("dedup.example.org."), &up_a(100));
        h.hold.set(true);
        h.at(if conf.contains("stale") { 110.0 } else { 70.0 });
        for _ in 0..200 {
            h.ask(q("dedup.example.org."), &up_a(100));
        }
        assert_eq!(h.held.borrow().len(), 1, "{conf}");
        h.flush(&up_a(100));
        assert_eq!(h.calls.get(), 2, "{conf}");
    }
}

#[test]
fn key_lowercases_ascii_only_and_splits_do_cd() {
    let n = |s: &str| Name::parse(s).expect("name");
    for c in 0u8..=255 {
        let x = u64::from_le_bytes([c; 8]);
        assert_eq!(
            super::lower8(x),
            u64::from_le_bytes([c.to_ascii_lowercase(); 8]),
            "{c}"
        );
    }
    let a = key(&n("WWW.Example.ORG."), 1, 1, false, false);
    assert_eq!(a, key(&n("www.example.org."), 1, 1, false, false));
    assert_ne!(a, key(&n("www.example.org."), 28, 1, false, false));
    assert_ne!(a, key(&n("www.example.org."), 1, 3, false, false));
    assert_ne!(a, key(&n("www.example.org."), 1, 1, true, false));
    assert_ne!(a, key(&n("www.example.org."), 1, 1, false, true));
    assert_ne!(a, key(&n("www.example.org.x."), 1, 1, false, false));
    // Shards are evenly used.
    let mut shards = [0u32; 256];
    for i in 0..25_600 {
        shards[(key(&n(&format!("h{i}.example.org.")), 1, 1, false, false) & 255) as usize] += 1;
    }
    assert!(shards.iter().all(|&c| (50..150).contains(&c)), "{shards:?}");
}
