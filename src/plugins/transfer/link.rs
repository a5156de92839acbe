//! What plugins of one server block know of each other: the zone sources
//! (*file*, *auto*, *secondary*) the block's *transfer* serves, the *transfer*
//! settings those sources send NOTIFY with, and whether a handler follows a
//! zone source in the chain (CoreDNS's *file* answers REFUSED when it is last).
//!
//! CoreDNS finds these through `dnsserver.GetConfig(c).Handler(...)` at startup.
//! Setup here runs directive by directive, so each block gets a link that its
//! plugins' setups join; links are found by the block's keys and identity and
//! live as long as a plugin of the block holds them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};

use crate::config::SetupCtx;
use crate::wire::Name;
use crate::zone::Zone;

/// A plugin that serves zones a transfer can send (CoreDNS `Transferer`).
pub trait ZoneSource: Send + Sync {
    /// What a transfer of `zone` (lowercase) sends, if this source is
    /// authoritative for it; `Err(())` when it serves it without data
    /// (SERVFAIL). `serial` is an IXFR's (0 for AXFR).
    fn transfer_zone(&self, zone: &Name, serial: u32) -> Option<Result<Outgoing, ()>>;
}

/// What a source transfers.
pub enum Outgoing {
    /// A loaded zone: its SOA, its records in tree order, the SOA again. The
    /// client is up to date when its serial is the zone's.
    Zone(Arc<Zone>),
    /// Records made for this transfer, in the source's order, the SOA first
    /// and last. The SOA alone is CoreDNS's IXFR fallback: the client is up
    /// to date (CoreDNS's *transfer* checks exactly that).
    Records(Vec<XfrRecord>),
}

/// A record of [`Outgoing::Records`] (class IN).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XfrRecord {
    /// The owner in wire form, uncompressed.
    pub owner: Vec<u8>,
    pub rtype: u16,
    pub ttl: u32,
    pub rdata: Vec<u8>,
}

/// A record as a transfer writes it: owner, type, class, TTL, RDATA.
pub type RecordRef<'a> = (&'a [u8], u16, u16, u32, &'a [u8]);

impl Outgoing {
    /// How many records the transfer sends, the closing SOA included.
    pub fn len(&self) -> usize {
        match self {
            Self::Zone(z) => z.transfer_len() + 1,
            Self::Records(r) => r.len(),
        }
    }

    /// Whether it sends nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Record `i` (`node` carries a zone's walk from one record to the next).
    pub fn record(&self, i: usize, node: &mut usize) -> Option<RecordRef<'_>> {
        match self {
            Self::Zone(z) if i + 1 == self.len() => Self::zone_rr(z.soa_record()),
            Self::Zone(z) => Self::zone_rr(z.transfer_record(i, node)),
            Self::Records(r) => r
                .get(i)
                .map(|x| (&x.owner[..], x.rtype, 1, x.ttl, &x.rdata[..])),
        }
    }

    fn zone_rr<'a>(r: Option<(&'a [u8], &'a crate::zone::Rr, &'a [u8])>) -> Option<RecordRef<'a>> {
        r.map(|(o, rr, rd)| (o, rr.rtype, rr.class, rr.ttl, rd))
    }

    /// The zone's SOA record.
    pub fn soa(&self) -> Option<RecordRef<'_>> {
        match self {
            Self::Zone(z) => Self::zone_rr(z.soa_record()),
            Self::Records(r) => r
                .first()
                .filter(|x| x.rtype == 6)
                .map(|x| (&x.owner[..], x.rtype, 1, x.ttl, &x.rdata[..])),
        }
    }

    /// The SOA's serial (0 without one).
    pub fn serial(&self) -> u32 {
        self.soa()
            .and_then(|(_, _, _, _, rd)| crate::zone::soa_serial(rd))
            .unwrap_or(0)
    }

    /// Whether an IXFR from `serial` gets the SOA alone.
    pub fn up_to_date(&self, serial: u32) -> bool {
        match self {
            Self::Zone(_) => serial != 0 && self.serial() == serial,
            Self::Records(r) => r.len() == 1 && self.soa().is_some(),
        }
    }
}

/// The block's *transfer* settings as the zone sources need them.
#[derive(Debug, Clone, Default)]
pub struct NotifyTargets {
    /// `(zones, to, source)` per `transfer` stanza.
    pub stanzas: Vec<(Vec<Name>, Vec<String>, Option<std::net::IpAddr>)>,
}

/// One block's link.
#[derive(Default)]
pub struct BlockLink {
    sources: RwLock<Vec<Weak<dyn ZoneSource>>>,
    /// The block's transfer settings, when it has *transfer*.
    pub transfer: OnceLock<NotifyTargets>,
    followers: Mutex<Vec<Arc<AtomicBool>>>,
}

impl std::fmt::Debug for BlockLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockLink")
            .field("transfer", &self.transfer.get())
            .finish_non_exhaustive()
    }
}

impl BlockLink {
    /// Adds a zone source (kept weakly: the source's plugin owns it).
    pub fn add_source(&self, s: Weak<dyn ZoneSource>) {
        if let Ok(mut v) = self.sources.write() {
            v.push(s);
        }
    }

    /// The live zone sources in plugin order.
    pub fn sources(&self) -> Vec<Arc<dyn ZoneSource>> {
        self.sources
            .read()
            .map(|v| v.iter().filter_map(Weak::upgrade).collect())
            .unwrap_or_default()
    }

    /// A flag that becomes true when a handler is set up after this point.
    pub fn follower_flag(&self) -> Arc<AtomicBool> {
        let f = Arc::new(AtomicBool::new(false));
        if let Ok(mut v) = self.followers.lock() {
            v.push(Arc::clone(&f));
        }
        f
    }
}

type Key = (Vec<String>, usize);

static LINKS: Mutex<Vec<(Key, Weak<BlockLink>)>> = Mutex::new(Vec::new());

fn key(ctx: &SetupCtx<'_>) -> Key {
    let addr = std::ptr::from_ref(&*ctx.settings) as usize;
    (ctx.keys.to_vec(), addr)
}

/// The link of the block being set up, created on first use.
pub fn for_block(ctx: &SetupCtx<'_>) -> Arc<BlockLink> {
    let k = key(ctx);
    let mut links = LINKS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    links.retain(|(_, w)| w.strong_count() > 0);
    if let Some(l) = links
        .iter()
        .find(|(kk, _)| *kk == k)
        .and_then(|(_, w)| w.upgrade())
    {
        return l;
    }
    let l = Arc::new(BlockLink::default());
    links.push((k, Arc::downgrade(&l)));
    l
}

fn existing(ctx: &SetupCtx<'_>) -> Option<Arc<BlockLink>> {
    let k = key(ctx);
    let links = LINKS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    links
        .iter()
        .find(|(kk, _)| *kk == k)
        .and_then(|(_, w)| w.upgrade())
}

/// Before a directive's setup: how many zone sources of the block wait for
/// a next plugin.
pub fn before_setup(ctx: &SetupCtx<'_>) -> usize {
    existing(ctx)
        .and_then(|l| l.followers.lock().ok().map(|v| v.len()))
        .unwrap_or(0)
}

/// After a handler plugin's setup: the first `before` zone sources (those set
/// up before it) have a next plugin.
pub fn handler_set_up(ctx: &SetupCtx<'_>, before: usize) {
    if before == 0 {
        return;
    }
    if let Some(l) = existing(ctx) {
        if let Ok(v) = l.followers.lock() {
            for f in v.iter().take(before) {
                f.store(true, Ordering::Relaxed);
            }
        }
    }
}
