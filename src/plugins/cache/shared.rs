//! The state a cache's plugin instances share: the success and denial stores,
//! the servers that stored into them (for the entries gauge), the refreshes
//! clients wait on (`serve_stale verify` with a timeout), and the process-wide
//! registry that hands an unchanged server block's cache to the plugin built by
//! a reload (ringdns keeps the entries; CoreDNS starts empty).

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};

use super::metrics::{self, EntriesSource};
use super::setup::{CacheConfig, shard_size};
use super::store::Store;

/// What a background verify produced, for the clients waiting on it.
#[derive(Debug, Clone)]
pub enum Verified {
    /// An acceptable reply; `stored` when it went into the cache.
    Refreshed {
        /// The reply as the cache reshaped it (TTLs, OPT, AD).
        reply: Vec<u8>,
        /// It was stored (serve it from the cache).
        stored: bool,
    },
    /// Nothing usable: serve the stale entry.
    Failed,
}

/// A refresh clients wait on.
pub struct Slot {
    /// Set once, with `done`.
    pub outcome: Mutex<Option<Verified>>,
    /// The outcome is in.
    pub done: AtomicBool,
    /// Wakes the waiters.
    pub notify: tokio::sync::Notify,
}

struct SlotEntry {
    key: u64,
    id: u32,
    waiters: usize,
    slot: Arc<Slot>,
    /// Kept at most this long once done (waiters that never came back).
    until: std::time::Instant,
}

/// Most refreshes tracked at once.
const MAX_SLOTS: usize = 1024;

/// One cache's shared state.
pub struct Shared {
    /// The configuration it was built for.
    pub cfg: CacheConfig,
    /// Success cache.
    pub pcache: Store,
    /// Denial cache.
    pub ncache: Store,
    /// The `zones` metric label.
    pub zones_label: Arc<str>,
    servers: RwLock<Vec<(Arc<str>, Arc<str>)>>,
    slots: Mutex<Vec<SlotEntry>>,
    next_id: AtomicU32,
}

impl Shared {
    fn new(cfg: &CacheConfig) -> Self {
        Self {
            cfg: cfg.clone(),
            pcache: Store::new(shard_size(cfg.pcap)),
            ncache: Store::new(shard_size(cfg.ncap)),
            zones_label: Arc::from(cfg.zones_label()),
            servers: RwLock::new(Vec::new()),
            slots: Mutex::new(Vec::new()),
            next_id: AtomicU32::new(1),
        }
    }

    /// Notes that `server` (in view `view`) stored into this cache (the
    /// entries gauge's labels).
    pub fn stored_by(&self, server: &Arc<str>, view: &Arc<str>) {
        let known = self
            .servers
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .any(|(s, v)| **s == **server && **v == **view);
        if !known {
            self.servers
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push((Arc::clone(server), Arc::clone(view)));
        }
    }

    /// Joins the refresh in flight for `key`, or opens a new one. Returns the
    /// slot id and whether the caller must start the refresh; `None` when too
    /// many refreshes are tracked.
    pub fn join(&self, key: u64) -> Option<(u32, bool)> {
        let mut v = self
            .slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(e) = v
            .iter_mut()
            .find(|e| e.key == key && !e.slot.done.load(Ordering::Acquire))
        {
            e.waiters += 1;
            return Some((e.id, false));
        }
        let now = std::time::Instant::now();
        v.retain(|e| !e.slot.done.load(Ordering::Acquire) || (e.waiters > 0 && e.until > now));
        if v.len() >= MAX_SLOTS {
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed).max(1);
        v.push(SlotEntry {
            key,
            id,
            waiters: 1,
            slot: Arc::new(Slot {
                outcome: Mutex::new(None),
                done: AtomicBool::new(false),
                notify: tokio::sync::Notify::new(),
            }),
            until: now + std::time::Duration::from_secs(10),
        });
        Some((id, true))
    }

    /// The slot a waiter holds.
    pub fn slot(&self, id: u32) -> Option<Arc<Slot>> {
        let v = self
            .slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        v.iter().find(|e| e.id == id).map(|e| Arc::clone(&e.slot))
    }

    /// A waiter is done with slot `id`.
    pub fn leave(&self, id: u32) {
        let mut v = self
            .slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(i) = v.iter().position(|e| e.id == id) {
            v[i].waiters = v[i].waiters.saturating_sub(1);
            if v[i].waiters == 0 && v[i].slot.done.load(Ordering::Acquire) {
                v.swap_remove(i);
            }
        }
    }

    /// Delivers the outcome of the refresh in flight for `key`.
    pub fn deliver(&self, key: u64, outcome: Verified) {
        let mut v = self
            .slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(i) = v
            .iter()
            .position(|e| e.key == key && !e.slot.done.load(Ordering::Acquire))
        else {
            return;
        };
        let slot = Arc::clone(&v[i].slot);
        *slot
            .outcome
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(outcome);
        slot.done.store(true, Ordering::Release);
        slot.notify.notify_waiters();
        if v[i].waiters == 0 {
            v.swap_remove(i);
        }
    }
}

impl EntriesSource for Shared {
    fn lens(&self) -> [usize; 2] {
        [self.pcache.len(), self.ncache.len()]
    }
    fn zones(&self) -> Arc<str> {
        Arc::clone(&self.zones_label)
    }
    fn servers(&self) -> Vec<(Arc<str>, Arc<str>)> {
        self.servers
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

static REGISTRY: Mutex<Vec<(CacheConfig, Weak<Shared>)>> = Mutex::new(Vec::new());

/// The shared state for `cfg`: the live one built for an equal configuration
/// (same block keys, same options) if any, else a new one. Entries live as long
/// as some running configuration uses them.
pub fn shared_for(cfg: &CacheConfig) -> Arc<Shared> {
    let mut reg = REGISTRY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    reg.retain(|(_, w)| w.strong_count() > 0);
    if let Some(s) = reg
        .iter()
        .find(|(c, _)| c == cfg)
        .and_then(|(_, w)| w.upgrade())
    {
        return s;
    }
    let s = Arc::new(Shared::new(cfg));
    reg.push((cfg.clone(), Arc::downgrade(&s)));
    let w: Weak<Shared> = Arc::downgrade(&s);
    metrics::register(w);
    s
}

/// A private instance (tests, benches): never shared through the registry.
pub fn private(cfg: &CacheConfig) -> Arc<Shared> {
    let s = Arc::new(Shared::new(cfg));
    let w: Weak<Shared> = Arc::downgrade(&s);
    metrics::register(w);
    s
}
