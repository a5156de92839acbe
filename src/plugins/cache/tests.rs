//! The harness of the time-travel tests: the cache's request and response
//! hooks around a scripted upstream (the plugins after the cache) on a manual
//! clock, with detached refreshes run (or held) by the harness. The cases, in
//! the submodules, follow CoreDNS's `cache_test.go`, `prefetch_test.go` and
//! the verified points of plugins.md C.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use corefile::Dispenser;

use super::*;
use crate::chain::{Ctx, Detached, Flow, Proto, Status};
use crate::config::{BlockSettings, SetupCtx};
use crate::wire::{Builder, MsgIndex, Request, SectionKind, Verdict, hdr, parse_query};

#[path = "hit_tests.rs"]
mod hit_tests;
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
