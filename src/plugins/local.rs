//! *local*: authoritative answers for `localhost.` and the loopback/zero/broadcast
//! reverse zones, plus interception of `*.localhost.` and `localhost.*` names
//! (plugins.md B). TTL 604800, AA not set.
//!
//! CoreDNS: `plugin/local/local.go`, `setup.go`.

use corefile::{Diagnostic, Dispenser};

use crate::chain::{Ctx, Flow, Status};
use crate::wire::{Builder, Name, SectionKind};

const TTL: u32 = 604_800;
const ZONES: [&str; 4] = [
    "localhost.",
    "0.in-addr.arpa.",
    "127.in-addr.arpa.",
    "255.in-addr.arpa.",
];

/// Parsed configuration.
#[derive(Debug, Clone, Default)]
pub struct LocalConfig {
    /// `localhost_prefix off`.
    pub disable_localhost_prefix: bool,
}

/// Setup (CoreDNS `local.parse`).
pub fn setup(d: &mut Dispenser) -> Result<LocalConfig, Diagnostic> {
    let w = |e: Diagnostic| e.in_plugin("local");
    let mut c = LocalConfig::default();
    while d.next() {
        if !d.remaining_args().is_empty() {
            return Err(w(d.arg_err()));
        }
        while d.next_block() {
            match d.val() {
                "localhost_prefix" => {
                    let args = d.remaining_args();
                    if args.len() != 1 {
                        return Err(w(d.arg_err()));
                    }
                    match args[0].as_str() {
                        "on" => c.disable_localhost_prefix = false,
                        "off" => c.disable_localhost_prefix = true,
                        other => {
                            return Err(w(d.err(format!(
                                "localhost_prefix expects 'on' or 'off', got {other:?}"
                            ))));
                        }
                    }
                }
                other => return Err(w(d.err(format!("unknown property '{other}'")))),
            }
        }
    }
    Ok(c)
}

/// The runtime plugin.
pub struct Local {
    disable_prefix: bool,
    zones: Vec<Name>,
}

/// `coredns_local_localhost_requests_total`.
pub static LOCALHOST_REQUESTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn soa(b: &mut Builder<'_>, origin: &[u8]) {
    b.rr_with(origin, 6, 1, TTL, |out| {
        out.extend_from_slice(b"\x09localhost\x00");
        out.extend_from_slice(b"\x04root\x09localhost\x00");
        for v in [1u32, 0, 0, 0, TTL] {
            out.extend_from_slice(&v.to_be_bytes());
        }
    });
}

impl Local {
    /// Builds it.
    pub fn new(c: &LocalConfig) -> Self {
        Self {
            disable_prefix: c.disable_localhost_prefix,
            zones: ZONES.iter().filter_map(|z| Name::parse(z)).collect(),
        }
    }

    /// Answers the local names.
    pub fn serve(&self, ctx: &mut Ctx<'_>) -> Flow {
        let qname = ctx.req.qname.to_name();
        let lower = qname.to_lowercase();
        let lw = lower.wire();
        let lc = 11; // wire length of "localhost."
        let rfc_sub = lw.len() > lc && lw.ends_with(b"\x09localhost\x00");
        let legacy = lw.len() > lc && !self.disable_prefix && lw.starts_with(b"\x09localhost");
        let qtype = ctx.req.qtype;
        if rfc_sub || legacy {
            LOCALHOST_REQUESTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut b = ctx.reply();
            match qtype {
                1 => b.rr(&qname, 1, 1, TTL, &[127, 0, 0, 1]),
                28 => b.rr(&qname, 28, 1, TTL, &std::net::Ipv6Addr::LOCALHOST.octets()),
                _ => {
                    b.section(SectionKind::Authority);
                    soa(&mut b, qname.wire());
                }
            }
            b.finish();
            ctx.written = true;
            return Flow::Return(Status::rcode(0));
        }
        let Some(zone) = self
            .zones
            .iter()
            .filter(|z| qname.is_subdomain_of(z))
            .max_by_key(|z| z.len())
        else {
            return Flow::Next;
        };
        // The zone with the query's case.
        let zone_wire = qname.wire()[qname.len() - zone.len()..].to_vec();
        let apex = lower.eq_ignore_case(zone);
        let mut answer = false;
        let mut b = ctx.reply();
        if apex {
            match qtype {
                1 if lw == b"\x09localhost\x00" => {
                    b.rr(&qname, 1, 1, TTL, &[127, 0, 0, 1]);
                    answer = true;
                }
                28 if lw == b"\x09localhost\x00" => {
                    b.rr(&qname, 28, 1, TTL, &std::net::Ipv6Addr::LOCALHOST.octets());
                    answer = true;
                }
                6 => {
                    soa(&mut b, qname.wire());
                    answer = true;
                }
                2 => {
                    b.rr_wire(qname.wire(), 2, 1, TTL, b"\x09localhost\x00");
                    answer = true;
                }
                _ => {
                    b.section(SectionKind::Authority);
                    soa(&mut b, qname.wire());
                    answer = true;
                }
            }
        } else if lw == b"\x011\x010\x010\x03127\x07in-addr\x04arpa\x00" {
            if qtype == 12 {
                b.rr_wire(qname.wire(), 12, 1, TTL, b"\x09localhost\x00");
            } else {
                b.section(SectionKind::Authority);
                soa(&mut b, &zone_wire);
            }
            answer = true;
        }
        if !answer {
            b.section(SectionKind::Authority);
            soa(&mut b, &zone_wire);
            b.set_rcode(3);
        }
        b.finish();
        ctx.written = true;
        Flow::Return(Status::rcode(0))
    }
}
