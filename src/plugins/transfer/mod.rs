//! *transfer*: zone transfers out (AXFR, and IXFR answered as CoreDNS does:
//! a single SOA when the client has the current serial, else the whole zone)
//! for the zones of *file*, *auto*, *secondary* and *kubernetes* in the same
//! block, over TCP only, to the addresses of `to` (`*` = anyone); NOTIFY out
//! on changes (plugins.md E).
//!
//! A transfer is a stream of messages on one TCP connection: the first goes
//! into the reply buffer, the rest are produced one by one by [`XfrStream`]
//! as the connection drains (`Ctx::more`).
//!
//! CoreDNS: `plugin/transfer/transfer.go`, `setup.go`, `notify.go`.

pub mod link;
pub mod notify;
#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::sync::Arc;

use corefile::{Diagnostic, Dispenser};

use crate::chain::{Ctx, Flow, Proto, Status};
use crate::clog::{self, Level};
use crate::config::SetupCtx;
use crate::wire::{HEADER_LEN, MsgIndex, Name, be32, flags, hdr};
use crate::zone::name_len;
use link::{BlockLink, NotifyTargets, Outgoing};

/// Most octets of records per transfer message (CoreDNS's batch size).
const BATCH: usize = 63_000;

/// One `transfer` stanza.
#[derive(Debug, Clone)]
pub struct Xfr {
    /// Zones (lowercase).
    pub zones: Vec<Name>,
    /// `to` entries: `*` or `ip:port`.
    pub to: Vec<String>,
    /// `source`.
    pub source: Option<IpAddr>,
}

/// *transfer*'s configuration.
#[derive(Debug, Clone)]
pub struct TransferConfig {
    /// Stanzas in order.
    pub xfrs: Vec<Xfr>,
    link: Arc<BlockLink>,
}

/// CoreDNS `parse.HostPort`: an IP address with an optional port, as
/// `host:port` (IPv6 bracketed).
pub fn host_port(s: &str, default_port: &str) -> Result<String, String> {
    let strip = |h: &str| h.split('%').next().unwrap_or(h).to_owned();
    let (host, port) = match split_host_port(s) {
        Some((h, p)) => (h, p),
        None => {
            if strip(s).parse::<IpAddr>().is_err() {
                return Err(format!("must specify an IP address: `{s}'"));
            }
            (s.to_owned(), String::new())
        }
    };
    if strip(&host).parse::<IpAddr>().is_err() {
        return Err(format!("must specify an IP address: `{host}'"));
    }
    let port = if port.is_empty() {
        default_port.to_owned()
    } else {
        port
    };
    Ok(if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    })
}

/// Go `net.SplitHostPort` (enough of it: `[v6]:p`, `host:p`).
pub fn split_host_port(s: &str) -> Option<(String, String)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (h, p) = rest.split_once("]:")?;
        return Some((h.to_owned(), p.to_owned()));
    }
    let (h, p) = s.rsplit_once(':')?;
    if h.contains(':') {
        return None;
    }
    Some((h.to_owned(), p.to_owned()))
}

/// Setup (CoreDNS `parseTransfer`).
pub fn setup(d: &mut Dispenser, ctx: &mut SetupCtx<'_>) -> Result<TransferConfig, Diagnostic> {
    let w = |e: Diagnostic| e.in_plugin("transfer");
    let mut xfrs = Vec::new();
    while d.next() {
        let args = d.remaining_args();
        let zones: Vec<Name> = ctx
            .origins(&args)
            .iter()
            .filter_map(|z| Name::parse(z))
            .map(|n| n.to_lowercase())
            .collect();
        let mut x = Xfr {
            zones,
            to: Vec::new(),
            source: None,
        };
        while d.next_block() {
            match d.val() {
                "to" => {
                    let args = d.remaining_args();
                    if args.is_empty() {
                        return Err(w(d.arg_err()));
                    }
                    for h in args {
                        if h == "*" {
                            x.to.push(h);
                            continue;
                        }
                        x.to.push(host_port(&h, "53").map_err(|e| w(Diagnostic::plain(e)))?);
                    }
                }
                "source" => {
                    let args = d.remaining_args();
                    if args.len() != 1 {
                        return Err(w(d.arg_err()));
                    }
                    if x.source.is_some() {
                        return Err(w(w(d.err("source already specified"))));
                    }
                    let Ok(ip) = args[0].parse::<IpAddr>() else {
                        return Err(w(w(d.err(format!("invalid source address {:?}", args[0])))));
                    };
                    x.source = Some(ip);
                }
                other => return Err(w(w(d.err(format!("unknown property {other:?}"))))),
            }
        }
        if x.to.is_empty() {
            return Err(w(w(d.err("'to' is required"))));
        }
        xfrs.push(x);
    }
    let link = link::for_block(ctx);
    let _ = link.transfer.set(NotifyTargets {
        stanzas: xfrs
            .iter()
            .map(|x| (x.zones.clone(), x.to.clone(), x.source))
            .collect(),
    });
    Ok(TransferConfig { xfrs, link })
}

/// The running plugin.
pub struct Transfer {
    xfrs: Vec<Xfr>,
    link: Arc<BlockLink>,
}

impl Transfer {
    /// Builds it.
    pub fn new(c: &TransferConfig) -> Self {
        Self {
            xfrs: c.xfrs.clone(),
            link: Arc::clone(&c.link),
        }
    }

    /// The request hook.
    pub fn serve(&self, ctx: &mut Ctx<'_>) -> Flow {
        let qtype = ctx.req.qtype;
        if qtype != 252 && qtype != 251 {
            return Flow::Next;
        }
        if ctx.proto != Proto::Tcp {
            return Flow::Return(Status::rcode(5));
        }
        let qname = ctx.req.qname.to_lowercase();
        let Some(x) =
            notify::longest_match(self.xfrs.iter().map(|x| (x.zones.as_slice(), x)), &qname)
        else {
            return Flow::Next;
        };
        let ip = ctx.peer.ip().to_string();
        let allowed =
            x.to.iter()
                .any(|h| h == "*" || split_host_port(h).is_some_and(|(host, _)| host == ip));
        if !allowed {
            let mut b = ctx.reply();
            b.set_rcode(5);
            b.finish();
            ctx.written = true;
            return Flow::Return(Status::rcode(0));
        }
        let mut serial = 0u32;
        if qtype == 251 {
            match ixfr_serial(ctx.req.msg) {
                Some(s) => serial = s,
                None => return Flow::Return(Status::rcode(2)),
            }
        }
        let mut data = None;
        for src in self.link.sources() {
            match src.transfer_zone(&qname, serial) {
                None => continue,
                Some(Ok(z)) => {
                    data = Some(z);
                    break;
                }
                Some(Err(())) => return Flow::Return(Status::rcode(2)),
            }
        }
        let Some(data) = data else {
            return Flow::Next;
        };
        let Some((owner, rtype, class, ttl, soa_rd)) = data.soa() else {
            return Flow::Return(Status::rcode(2));
        };
        let zserial = data.serial();
        let qtext = ctx.req.qname.to_string();
        if data.up_to_date(serial) {
            let (owner, soa_rd) = (owner.to_vec(), soa_rd.to_vec());
            let mut b = ctx.reply();
            b.rr_wire(&owner, rtype, class, ttl, &soa_rd);
            b.finish();
            ctx.written = true;
            clog::log(
                Level::Info,
                Some("transfer"),
                &format!(
                    "Outgoing noop, incremental transfer for up to date zone {qtext:?} to {ip} for {zserial} SOA serial"
                ),
            );
            return Flow::Return(Status::rcode(0));
        }
        let mut head = [0u8; 4];
        head[..2].copy_from_slice(&ctx.req.id().to_be_bytes());
        let rf = ctx.st.flags;
        let f = flags::QR | flags::AA | (rf & (flags::RD | flags::CD));
        head[2..].copy_from_slice(&f.to_be_bytes());
        let mut s = XfrStream {
            data,
            head,
            question: ctx.req.question_wire().to_vec(),
            next: 0,
            node: 0,
            sent: 0,
            done: false,
            qname: qtext,
            ip,
            serial: zserial,
        };
        if !s.fill(ctx.resp) {
            return Flow::Return(Status::rcode(2));
        }
        ctx.written = true;
        if !s.done {
            ctx.more = Some(Box::new(s));
        }
        Flow::Return(Status::rcode(0))
    }
}

/// The serial of the SOA in an IXFR request's authority section (exactly one
/// record, a SOA), CoreDNS's precondition.
fn ixfr_serial(msg: &[u8]) -> Option<u32> {
    let idx = MsgIndex::parse(msg)?;
    let mut auth = idx.section(2);
    let r = auth.next()?;
    if auth.next().is_some() || r.rtype != 6 {
        return None;
    }
    let p = Name::skip(msg, r.rdata().start).ok()?;
    let p = Name::skip(msg, p).ok()?;
    (p + 20 <= r.end as usize).then(|| be32(msg, p))
}

/// The messages of one transfer: the zone's records in batches of at most
/// 63000 octets, ending with the SOA; each message answers the request
/// (miekg `Transfer.Out`: ID, question, AA).
pub struct XfrStream {
    data: Outgoing,
    head: [u8; 4],
    question: Vec<u8>,
    next: usize,
    node: usize,
    sent: usize,
    done: bool,
    qname: String,
    ip: String,
    serial: u32,
}

impl XfrStream {
    /// Writes the next message into `out`; false when nothing is left.
    fn fill(&mut self, out: &mut Vec<u8>) -> bool {
        if self.done {
            return false;
        }
        out.clear();
        out.extend_from_slice(&self.head);
        out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
        out.extend_from_slice(&self.question);
        let total = self.data.len();
        let mut n: u16 = 0;
        let mut batch = 0usize;
        while self.next < total {
            let Some((owner, rtype, class, ttl, rd)) = self.data.record(self.next, &mut self.node)
            else {
                self.next += 1;
                continue;
            };
            let len = owner.len() + 10 + rd.len();
            if n > 0 && (batch + len > BATCH || n == u16::MAX) {
                break;
            }
            out.extend_from_slice(&owner[..name_len(owner).unwrap_or(owner.len())]);
            out.extend_from_slice(&rtype.to_be_bytes());
            out.extend_from_slice(&class.to_be_bytes());
            out.extend_from_slice(&ttl.to_be_bytes());
            out.extend_from_slice(&(rd.len() as u16).to_be_bytes());
            out.extend_from_slice(rd);
            batch += len;
            n += 1;
            self.next += 1;
        }
        hdr::set_count(out, 1, n);
        debug_assert!(out.len() >= HEADER_LEN);
        self.sent += usize::from(n);
        if self.next >= total {
            self.done = true;
            clog::log(
                Level::Info,
                Some("transfer"),
                &format!(
                    "Outgoing transfer of {} records of zone {:?} to {} for {} SOA serial",
                    self.sent, self.qname, self.ip, self.serial
                ),
            );
        }
        n > 0
    }
}

impl Iterator for XfrStream {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(BATCH + 512);
        self.fill(&mut out).then_some(out)
    }
}
