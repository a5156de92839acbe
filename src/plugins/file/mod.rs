//! *file*: authoritative answers from RFC 1035 zone files (plugins.md E).
//! Each zone is loaded at setup into an immutable [`Zone`] held in a slot
//! that reloads swap atomically; queries run the CoreDNS lookup
//! ([`crate::zone::lookup`]) and write the answer without allocating.
//! *secondary* and *auto* serve their zones through the same code.
//!
//! CoreDNS: `plugin/file/file.go` (`ServeDNS`), `setup.go`, `reload.go`.

pub mod fall;
mod reload;
mod setup;
#[cfg(test)]
pub(crate) mod tests;

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::{ArcSwap, ArcSwapOption};

use crate::chain::{Ctx, Flow, Status};
use crate::clog::{self, Level};
use crate::plugins::transfer::link::{BlockLink, Outgoing, ZoneSource};
use crate::wire::{Name, flags};
use crate::zone::lookup::Fetched;
use crate::zone::{Plan, Res, Zone};
pub use fall::Fall;
pub(crate) use reload::{reload_slot, spawn_ticker};
pub use setup::{FileConfig, setup};
pub(crate) use setup::{load_error_text, log_skipped, reload_duration, rooted as rooted_path};

/// One zone a plugin serves: its origin and the data loaded for it (none
/// until the first load or transfer succeeds: SERVFAIL meanwhile).
pub struct ZoneSlot {
    /// Origin, lowercase.
    pub origin: Name,
    /// Zone file (as configured, root applied).
    pub file: Mutex<String>,
    /// The data.
    pub data: ArcSwapOption<Zone>,
    /// A secondary zone past its SOA expire.
    pub expired: AtomicBool,
    /// Primaries of a secondary zone (`host:port`).
    pub transfer_from: Vec<String>,
    /// Reload interval (0 = never).
    pub reload: Duration,
    /// `reload_by_mtime`.
    pub by_mtime: bool,
    /// Modification time of the file when last loaded.
    pub mtime: Mutex<Option<SystemTime>>,
}

impl ZoneSlot {
    /// An empty slot.
    pub fn new(origin: &Name, file: &str) -> Self {
        Self {
            origin: origin.to_lowercase(),
            file: Mutex::new(file.to_owned()),
            data: ArcSwapOption::empty(),
            expired: AtomicBool::new(false),
            transfer_from: Vec::new(),
            reload: Duration::ZERO,
            by_mtime: false,
            mtime: Mutex::new(None),
        }
    }

    /// The file path.
    pub fn file(&self) -> String {
        self.file.lock().map(|f| f.clone()).unwrap_or_default()
    }

    /// The origin as CoreDNS prints it (`example.org.`).
    pub fn origin_text(&self) -> String {
        self.origin.to_string()
    }
}

/// Zones by origin; the longest suffix of a name finds its zone (CoreDNS
/// `plugin.Zones.Matches`).
#[derive(Default, Clone)]
pub struct ZoneTable {
    map: HashMap<Box<[u8]>, Arc<ZoneSlot>>,
    /// Slots in configuration order.
    pub order: Vec<Arc<ZoneSlot>>,
}

impl ZoneTable {
    /// Adds a slot (a second slot for the same origin replaces the first, as
    /// CoreDNS's map does, keeping the first position).
    pub fn insert(&mut self, s: Arc<ZoneSlot>) {
        let key: Box<[u8]> = s.origin.wire().into();
        if let Some(old) = self.map.insert(key, Arc::clone(&s)) {
            if let Some(p) = self.order.iter().position(|o| Arc::ptr_eq(o, &old)) {
                self.order[p] = s;
            }
        } else {
            self.order.push(s);
        }
    }

    /// Removes the slot for `origin`.
    pub fn remove(&mut self, origin: &Name) -> Option<Arc<ZoneSlot>> {
        let s = self.map.remove(origin.wire())?;
        self.order.retain(|o| !Arc::ptr_eq(o, &s));
        Some(s)
    }

    /// The slot whose origin is the longest suffix of `qname` (lowercase).
    pub fn find(&self, qname: &Name) -> Option<&Arc<ZoneSlot>> {
        if self.map.is_empty() {
            return None;
        }
        let w = qname.wire();
        for off in qname.suffix_offsets() {
            if let Some(s) = self.map.get(&w[off..]) {
                return Some(s);
            }
        }
        self.map.get(&[0u8][..])
    }

    /// The slot for exactly `origin`.
    pub fn get(&self, origin: &Name) -> Option<&Arc<ZoneSlot>> {
        self.map.get(origin.wire())
    }

    /// Number of zones.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// No zones.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

thread_local! {
    /// The lookup plan of this worker, reused by every query.
    static PLAN: RefCell<Plan> = RefCell::new(Plan::default());
}

/// A self-lookup a zone lookup needs: name, type and nesting depth.
pub(crate) type Wanted = (Name, u16, u8);

/// A request hook that may need the server's answer to a self-lookup first:
/// `Err` names it, and the hook runs again with the reply.
/// (Boxed: the name is 256 octets, and every answer returns through here.)
pub(crate) type Answering = Result<Flow, Box<Wanted>>;

/// Writes the answer for `qname` from `zone` (CoreDNS `ServeDNS` after the
/// zone is found): fallthrough on an empty NXDOMAIN/NOERROR when `fall`
/// allows it, AA except on referrals, SERVFAIL unwritten when nothing was found.
/// `fetched` is the server's reply to the self-lookup an earlier run wanted.
pub(crate) fn answer(
    ctx: &mut Ctx<'_>,
    zone: &Zone,
    table: &ZoneTable,
    qname: &Name,
    fall: &Fall,
    fetched: Option<Fetched>,
) -> Answering {
    let qtype = ctx.req.qtype;
    let do_ = ctx.do_bit();
    let resolve = |n: &Name| table.find(n).and_then(|s| s.data.load_full());
    PLAN.with(|cell| {
        let Ok(mut plan) = cell.try_borrow_mut() else {
            return Ok(Flow::Return(Status::rcode(2)));
        };
        plan.fetched = fetched;
        let res = zone.lookup(&mut plan, qname, qtype, do_, &resolve, ctx.st.depth);
        if let Some(w) = plan.wanted.take() {
            plan.fetched = None;
            return Err(Box::new(w));
        }
        if let Some(w) = &plan.wildcard {
            ctx.set_meta("zone/wildcard", || w.to_string());
        }
        let flow = write_answer(ctx, zone, &plan, res, qname, fall);
        plan.fetched = None;
        Ok(flow)
    })
}

/// Runs a zone plugin's request hook `run` to its end, asking the server each
/// self-lookup it needs (at most three rounds: a zone reloaded between rounds
/// can need a new one). The parked half of *file*, *auto* and *secondary*.
pub(crate) async fn serve_fetching<'a>(
    ctx: &mut Ctx<'a>,
    run: impl Fn(&mut Ctx<'a>, Option<Fetched>) -> Answering,
) -> Flow {
    let mut fetched = None;
    for _ in 0..3 {
        let (name, qtype, depth) = match run(ctx, fetched.take()) {
            Ok(flow) => return flow,
            Err(w) => *w,
        };
        fetched = Some(
            match crate::server::reentry::prepare(ctx, &name, qtype, depth) {
                Ok(lookup) => {
                    let reply = lookup.run().await;
                    Fetched::new(name, qtype, reply.as_deref())
                }
                // CoreDNS's `Lookup` error: a server failure without records.
                Err(_) => Fetched::failed(name, qtype),
            },
        );
    }
    Flow::Return(Status::rcode(2))
}

/// The reply for a finished lookup.
fn write_answer(
    ctx: &mut Ctx<'_>,
    zone: &Zone,
    plan: &Plan,
    res: Res,
    qname: &Name,
    fall: &Fall,
) -> Flow {
    let answered = plan.count(zone, &plan.answer) > 0;
    if !answered && matches!(res, Res::NameError | Res::Success) && fall.through(qname) {
        return Flow::Next;
    }
    if res == Res::ServerFailure && !answered {
        return Flow::Return(Status::rcode(2));
    }
    let mut b = ctx.reply();
    if res != Res::Delegation || answered {
        b.set_flags(flags::AA);
    }
    match res {
        Res::NameError => b.set_rcode(3),
        Res::ServerFailure => b.set_rcode(2),
        _ => {}
    }
    plan.write(zone, &mut b);
    b.finish();
    ctx.written = true;
    Flow::Return(Status::rcode(0))
}

/// The zone-serving part of CoreDNS's `File.ServeDNS`, shared by *file* and
/// *secondary*.
pub struct ZoneServer {
    /// The zones.
    pub table: ArcSwap<ZoneTable>,
    /// `fallthrough`.
    pub fall: Fall,
    /// A handler follows in the chain (else names outside the zones get REFUSED).
    pub has_next: Arc<AtomicBool>,
    /// The block's link (transfer settings for NOTIFY).
    pub link: Arc<BlockLink>,
    /// Tells a secondary's updater that a NOTIFY came for a zone (and from whom).
    pub notify_in: Option<std::sync::mpsc::Sender<(Name, String)>>,
}

impl std::fmt::Debug for ZoneServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZoneServer")
            .field("zones", &self.table.load().len())
            .finish_non_exhaustive()
    }
}

impl ZoneSource for ZoneServer {
    fn transfer_zone(&self, zone: &Name, _serial: u32) -> Option<Result<Outgoing, ()>> {
        let t = self.table.load();
        let s = t.get(zone)?;
        Some(s.data.load_full().map(Outgoing::Zone).ok_or(()))
    }
}

impl ZoneServer {
    /// The request hook.
    pub fn serve(&self, ctx: &mut Ctx<'_>) -> Flow {
        self.serve_with(ctx, None).unwrap_or(Flow::Park)
    }

    /// The parked half: a CNAME target only the server can answer.
    pub async fn serve_async(&self, ctx: &mut Ctx<'_>) -> Flow {
        serve_fetching(ctx, |ctx, f| self.serve_with(ctx, f)).await
    }

    /// The request hook with the server's reply to a self-lookup (see [`answer`]).
    fn serve_with(&self, ctx: &mut Ctx<'_>, fetched: Option<Fetched>) -> Answering {
        let qname = ctx.req.qname.to_lowercase();
        let table = self.table.load();
        let Some(slot) = table.find(&qname) else {
            if !self.has_next.load(Ordering::Relaxed) {
                return Ok(Flow::Return(Status::rcode(5)));
            }
            return Ok(Flow::Next);
        };
        let qtype = ctx.req.qtype;
        // Without *transfer* in front, transfers are refused.
        if qtype == 252 || qtype == 251 {
            return Ok(Flow::Return(Status::rcode(5)));
        }
        if ctx.req.opcode() == 4 {
            return Ok(self.notify(ctx, slot));
        }
        if slot.expired.load(Ordering::Relaxed) {
            clog::log(
                Level::Error,
                Some("file"),
                &format!("Zone {} is expired", slot.origin_text()),
            );
            return Ok(Flow::Return(Status::rcode(2)));
        }
        let Some(zone) = slot.data.load_full() else {
            return Ok(Flow::Return(Status::rcode(2)));
        };
        answer(ctx, &zone, &table, &qname, &self.fall, fetched)
    }

    /// A NOTIFY (RFC 1996): acknowledged when it comes from a primary of a
    /// secondary zone, which then checks for a newer serial; dropped otherwise.
    fn notify(&self, ctx: &mut Ctx<'_>, slot: &ZoneSlot) -> Flow {
        let ip = ctx.peer.ip().to_string();
        let from_primary = slot.transfer_from.iter().any(|p| {
            p.rsplit_once(':')
                .map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']'))
                == Some(ip.as_str())
        });
        if !from_primary {
            clog::log(
                Level::Info,
                Some("file"),
                &format!("Dropping notify from {ip} for {}", slot.origin_text()),
            );
            return Flow::Return(Status::rcode(0));
        }
        let mut b = ctx.reply();
        b.set_flags(flags::AA);
        b.finish();
        ctx.written = true;
        clog::log(
            Level::Info,
            Some("file"),
            &format!(
                "Notify from {ip} for {}: checking transfer",
                slot.origin_text()
            ),
        );
        if let Some(tx) = &self.notify_in {
            let _ = tx.send((slot.origin.clone(), ip));
        }
        Flow::Return(Status::rcode(0))
    }
}

/// The *file* plugin at run time.
pub struct File {
    server: Arc<ZoneServer>,
}

impl File {
    /// Builds it from its configuration; starts the reloaders and the
    /// startup NOTIFYs once per configuration.
    pub fn new(c: &FileConfig) -> Self {
        c.start();
        Self {
            server: Arc::clone(&c.server),
        }
    }

    /// The request hook.
    pub fn serve(&self, ctx: &mut Ctx<'_>) -> Flow {
        self.server.serve(ctx)
    }

    /// The parked half (a self-lookup).
    pub async fn serve_async(&self, ctx: &mut Ctx<'_>) -> Flow {
        self.server.serve_async(ctx).await
    }
}
