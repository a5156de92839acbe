//! *erratic*: a test plugin that drops, delays and truncates answers on a
//! schedule (plugins.md F). Delays park the query, which proves the chain's
//! parking path without blocking the worker.
//!
//! CoreDNS: `plugin/erratic/erratic.go`, `setup.go`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use corefile::values::parse_go_duration_nanos;
use corefile::{Diagnostic, Dispenser};

use crate::chain::{Ctx, Flow, Status};
use crate::wire::{Name, flags};

/// Parsed configuration.
#[derive(Debug, Clone)]
pub struct ErraticConfig {
    /// Drop every Nth query (0 = never).
    pub drop: u64,
    /// Delay every Nth query (0 = never).
    pub delay: u64,
    /// The delay.
    pub duration: Duration,
    /// Truncate when `q & truncate == 0` (0 = never).
    pub truncate: u64,
    /// 30 A records instead of one.
    pub large: bool,
}

/// Go `strconv.ParseInt(s, 10, 32)`, then CoreDNS's check for a negative amount.
fn amount(d: &Dispenser, s: &str) -> Result<u64, Diagnostic> {
    let n = corefile::values::strconv_int(s, "strconv.ParseInt").map_err(Diagnostic::plain)?;
    if n > i64::from(i32::MAX) || n < i64::from(i32::MIN) {
        return Err(Diagnostic::plain(format!(
            "strconv.ParseInt: parsing {}: value out of range",
            corefile::values::go_quote(s)
        )));
    }
    if n < 0 {
        return Err(Diagnostic::plain(format!(
            "illegal amount value given {s:?}"
        )));
    }
    let _ = d;
    Ok(n as u64)
}

/// Setup (CoreDNS `parseErratic`).
pub fn setup(d: &mut Dispenser) -> Result<ErraticConfig, Diagnostic> {
    let w = |e: Diagnostic| e.in_plugin("erratic");
    let mut c = ErraticConfig {
        drop: 2,
        delay: 0,
        duration: Duration::ZERO,
        truncate: 0,
        large: false,
    };
    let mut saw_drop = false;
    while d.next() {
        while d.next_block() {
            match d.val() {
                "drop" => {
                    let args = d.remaining_args();
                    if args.len() > 1 {
                        return Err(w(d.arg_err()));
                    }
                    if let Some(a) = args.first() {
                        c.drop = amount(d, a).map_err(w)?;
                        saw_drop = true;
                    }
                }
                "delay" => {
                    let args = d.remaining_args();
                    if args.len() > 2 {
                        return Err(w(d.arg_err()));
                    }
                    c.delay = 2;
                    c.duration = Duration::from_millis(100);
                    if let Some(a) = args.first() {
                        c.delay = amount(d, a).map_err(w)?;
                    }
                    if let Some(dur) = args.get(1) {
                        // Go's time.ParseDuration: a negative delay is accepted (the
                        // sleep returns at once).
                        let n =
                            parse_go_duration_nanos(dur).map_err(|e| w(Diagnostic::plain(e)))?;
                        c.duration = Duration::from_nanos(u64::try_from(n).unwrap_or(0));
                    }
                }
                "truncate" => {
                    let args = d.remaining_args();
                    if args.len() > 1 {
                        return Err(w(d.arg_err()));
                    }
                    c.truncate = 2;
                    if let Some(a) = args.first() {
                        c.truncate = amount(d, a).map_err(w)?;
                    }
                }
                "large" => c.large = true,
                other => return Err(w(d.err(format!("unknown property '{other}'")))),
            }
        }
    }
    if (c.delay > 0 || c.truncate > 0) && !saw_drop {
        c.drop = 0;
    }
    Ok(c)
}

/// The runtime plugin; the query counter is shared by all workers.
pub struct Erratic {
    c: ErraticConfig,
    q: Arc<AtomicU64>,
}

/// What to do with the current query, decided on arrival.
#[derive(Clone, Copy)]
struct Plan {
    drop: bool,
    delay: bool,
    trunc: bool,
}

impl Erratic {
    /// Builds it.
    pub fn new(c: &ErraticConfig) -> Self {
        Self {
            c: c.clone(),
            q: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Readiness for *ready*: ready after the 3rd and before the 5th query.
    pub fn ready(&self) -> bool {
        let q = self.q.load(Ordering::Relaxed);
        (3..5).contains(&q)
    }

    fn plan(&self) -> Plan {
        let n = self.q.fetch_add(1, Ordering::Relaxed);
        Plan {
            drop: self.c.drop > 0 && n % self.c.drop == 0,
            delay: self.c.delay > 0 && n % self.c.delay == 0,
            trunc: self.c.truncate > 0 && n & self.c.truncate == 0,
        }
    }

    /// Request hook: answer now, or park when this query is to be delayed.
    pub fn serve(&self, ctx: &mut Ctx<'_>) -> Flow {
        let p = self.plan();
        if p.delay && !p.drop {
            // The parked half needs only the truncation decision.
            ctx.st.park = u32::from(p.trunc);
            return Flow::Park;
        }
        self.answer(ctx, p)
    }

    /// The parked half: sleep, then answer.
    pub async fn serve_async(&self, ctx: &mut Ctx<'_>) -> Flow {
        let trunc = ctx.st.park == 1;
        tokio::time::sleep(self.c.duration).await;
        self.answer(
            ctx,
            Plan {
                drop: false,
                delay: false,
                trunc,
            },
        )
    }

    fn answer(&self, ctx: &mut Ctx<'_>, p: Plan) -> Flow {
        let qtype = ctx.req.qtype;
        if qtype == 252 {
            return Self::axfr(ctx, p);
        }
        if !matches!(qtype, 1 | 28) {
            return if p.drop {
                Flow::Return(Status::rcode(0))
            } else {
                Flow::Return(Status::rcode(2))
            };
        }
        if p.drop {
            return Flow::Return(Status::rcode(0));
        }
        let owner = ctx.req.qname.to_name();
        let mut b = ctx.reply();
        b.set_flags(flags::AA);
        if p.trunc {
            b.set_flags(flags::TC);
        }
        if qtype == 1 {
            let n = if self.c.large { 30 } else { 1 };
            for _ in 0..n {
                b.rr(&owner, 1, 1, 0, &[192, 0, 2, 53]);
            }
        } else {
            let ip: std::net::Ipv6Addr =
                std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x53);
            b.rr(&owner, 28, 1, 0, &ip.octets());
        }
        b.finish();
        ctx.written = true;
        Flow::Return(Status::rcode(0))
    }

    /// CoreDNS `xfr`: a small zone at the query name in one message (SOA, two NS,
    /// their AAAA, the closing SOA), without the closing SOA when truncating, so
    /// the transfer is incomplete.
    fn axfr(ctx: &mut Ctx<'_>, p: Plan) -> Flow {
        let zone = ctx.req.qname.to_name();
        // At the root CoreDNS's names become `a..`, which do not pack: no reply.
        if p.drop || zone.is_root() {
            return Flow::Return(Status::rcode(0));
        }
        let (Some(a), Some(b_ns)) = (zone.prepend(b"a"), zone.prepend(b"b")) else {
            return Flow::Return(Status::rcode(0));
        };
        let mut soa = Vec::with_capacity(64);
        for n in ["sns.dns.icann.org.", "noc.dns.icann.org."] {
            if let Some(n) = Name::parse(n) {
                soa.extend_from_slice(n.wire());
            }
        }
        for v in [2_018_050_825u32, 7200, 3600, 1_209_600, 3600] {
            soa.extend_from_slice(&v.to_be_bytes());
        }
        let aaaa = |s: [u16; 8]| std::net::Ipv6Addr::from(s).octets();
        let mut b = ctx.reply();
        b.set_flags(flags::AA);
        b.rr(&zone, 6, 1, 0, &soa);
        b.rr(&zone, 2, 1, 0, b_ns.wire());
        b.rr(&zone, 2, 1, 0, a.wire());
        b.rr(&a, 28, 1, 0, &aaaa([0x2001, 0xbd8, 0, 0, 0, 0, 0, 0x53]));
        b.rr(&b_ns, 28, 1, 0, &aaaa([0x2001, 0x500, 0, 0, 0, 0, 0, 0x54]));
        if !p.trunc {
            b.rr(&zone, 6, 1, 0, &soa);
        }
        b.finish();
        ctx.written = true;
        Flow::Return(Status::rcode(0))
    }
}
