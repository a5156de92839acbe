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
    /// The zone named exactly `zone` (lowercase), if this source serves it
    /// and has data; `Err(())` when it serves it without data (SERVFAIL).
    fn transfer_zone(&self, zone: &Name) -> Option<Result<Arc<Zone>, ()>>;
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
