//! The cache's metrics with CoreDNS's names, labels and help texts
//! (cli-and-ops.md §5.2). Counting is lock-free on the query path: each worker
//! thread owns its counters per (server, zones) and registers them once; a
//! scrape sums the threads. Series are process-wide and keyed by their labels,
//! like CoreDNS's global vectors, so counts survive reloads. The entries gauge
//! is read from the live caches at scrape time, for the servers that stored
//! into them.
//!
//! CoreDNS: `plugin/cache/metrics.go`.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use crate::metrics::{Families, add};

const H_ENTRIES: &str = "The number of elements in the cache.";
const H_REQUESTS: &str = "The count of cache requests.";
const H_HITS: &str = "The count of cache hits.";
const H_MISSES: &str =
    "The count of cache misses. Deprecated, derive misses from cache hits/requests counters.";
const H_PREFETCH: &str = "The number of times the cache has prefetched a cached item.";
const H_DROPS: &str = "The number responses that are not cached, because the reply is malformed.";
const H_STALE: &str = "The number of requests served from stale cache entries.";
const H_EVICTIONS: &str = "The count of cache evictions.";

/// Cache type label index: success.
pub const SUCCESS: usize = 0;
/// Cache type label index: denial.
pub const DENIAL: usize = 1;
const TYPES: [&str; 2] = ["success", "denial"];

/// One thread's counters for one (server, zones).
#[derive(Default)]
pub struct Counters {
    /// `coredns_cache_requests_total`.
    pub requests: AtomicU64,
    /// `coredns_cache_hits_total{type}`.
    pub hits: [AtomicU64; 2],
    /// `coredns_cache_misses_total`.
    pub misses: AtomicU64,
    /// `coredns_cache_prefetch_total`.
    pub prefetch: AtomicU64,
    /// `coredns_cache_drops_total`.
    pub drops: AtomicU64,
    /// `coredns_cache_served_stale_total`.
    pub served_stale: AtomicU64,
    /// `coredns_cache_evictions_total{type}`.
    pub evictions: [AtomicU64; 2],
}

/// Adds one to a counter (only this thread writes it).
#[inline]
pub fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// (server, zones, view).
type Key = (Arc<str>, Arc<str>, Arc<str>);

static REGISTRY: Mutex<Vec<(Key, Arc<Counters>)>> = Mutex::new(Vec::new());

thread_local! {
    static LOCAL: RefCell<Vec<([usize; 3], Arc<Counters>)>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on this thread's counters for (`ctx`'s server and view, `zones`),
/// registering them on first use. No allocation or lock after that.
#[inline]
pub fn with<R>(ctx: &crate::chain::Ctx<'_>, zones: &Arc<str>, f: impl FnOnce(&Counters) -> R) -> R {
    let (server, view) = (ctx.server, ctx.view);
    let key = [
        Arc::as_ptr(server) as *const u8 as usize,
        Arc::as_ptr(zones) as *const u8 as usize,
        Arc::as_ptr(view) as *const u8 as usize,
    ];
    LOCAL.with(|l| {
        if let Ok(l) = l.try_borrow() {
            if let Some(e) = l.iter().find(|e| e.0 == key) {
                return f(&e.1);
            }
        }
        let c = Arc::new(Counters::default());
        REGISTRY
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((
                (Arc::clone(server), Arc::clone(zones), Arc::clone(view)),
                Arc::clone(&c),
            ));
        if let Ok(mut l) = l.try_borrow_mut() {
            l.push((key, Arc::clone(&c)));
        }
        f(&c)
    })
}

/// What the entries gauge needs of a live cache.
pub trait EntriesSource {
    /// (success entries, denial entries).
    fn lens(&self) -> [usize; 2];
    /// The zones label.
    fn zones(&self) -> Arc<str>;
    /// (server, view) labels of the queries that stored into it.
    fn servers(&self) -> Vec<(Arc<str>, Arc<str>)>;
}

type Live = Weak<dyn EntriesSource + Send + Sync>;

static LIVE: Mutex<Vec<Live>> = Mutex::new(Vec::new());

/// Registers a cache for the entries gauge (and the families with the scrape).
pub fn register(c: Live) {
    let mut v = LIVE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    v.retain(|w| w.strong_count() > 0);
    v.push(c);
    crate::metrics::contribute(families);
}

/// Adds the cache families (a `metrics::contribute` callback).
pub fn families(f: &mut Families) {
    // Entries: newest cache wins for identical labels (old and new instance
    // overlap during a reload).
    let live: Vec<Arc<dyn EntriesSource + Send + Sync>> = LIVE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .filter_map(Weak::upgrade)
        .collect();
    let mut entries: Vec<(String, String, String, usize, usize)> = Vec::new();
    for c in &live {
        let zones = c.zones().to_string();
        let lens = c.lens();
        for (s, v) in c.servers() {
            for t in [SUCCESS, DENIAL] {
                let row = (s.to_string(), zones.clone(), v.to_string(), t, lens[t]);
                match entries
                    .iter_mut()
                    .find(|e| e.0 == row.0 && e.1 == row.1 && e.2 == row.2 && e.3 == t)
                {
                    Some(e) => *e = row,
                    None => entries.push(row),
                }
            }
        }
    }
    for (server, zones, view, t, n) in &entries {
        let l = [
            ("server", server.as_str()),
            ("type", TYPES[*t]),
            ("zones", zones.as_str()),
            ("view", view.as_str()),
        ];
        add(
            f,
            "coredns_cache_entries",
            H_ENTRIES,
            "gauge",
            "",
            &l,
            *n as f64,
        );
    }
    // Counters, summed over threads by label values.
    let reg = REGISTRY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let mut keys: Vec<(String, String, String)> = reg
        .iter()
        .map(|((s, z, v), _)| (s.to_string(), z.to_string(), v.to_string()))
        .collect();
    keys.sort();
    keys.dedup();
    for (server, zones, view) in &keys {
        let parts: Vec<&Arc<Counters>> = reg
            .iter()
            .filter(|((s, z, v), _)| &**s == server && &**z == zones && &**v == view)
            .map(|(_, c)| c)
            .collect();
        let sum = |g: &dyn Fn(&Counters) -> &AtomicU64| -> u64 {
            parts.iter().map(|c| g(c).load(Ordering::Relaxed)).sum()
        };
        let base = [
            ("server", server.as_str()),
            ("zones", zones.as_str()),
            ("view", view.as_str()),
        ];
        let plain: [(&str, &'static str, u64); 5] = [
            (
                "coredns_cache_requests_total",
                H_REQUESTS,
                sum(&|c| &c.requests),
            ),
            ("coredns_cache_misses_total", H_MISSES, sum(&|c| &c.misses)),
            (
                "coredns_cache_prefetch_total",
                H_PREFETCH,
                sum(&|c| &c.prefetch),
            ),
            ("coredns_cache_drops_total", H_DROPS, sum(&|c| &c.drops)),
            (
                "coredns_cache_served_stale_total",
                H_STALE,
                sum(&|c| &c.served_stale),
            ),
        ];
        for (name, help, n) in plain {
            if n > 0 {
                add(f, name, help, "counter", "", &base, n as f64);
            }
        }
        for t in [SUCCESS, DENIAL] {
            let typed = [
                ("coredns_cache_hits_total", H_HITS, sum(&|c| &c.hits[t])),
                (
                    "coredns_cache_evictions_total",
                    H_EVICTIONS,
                    sum(&|c| &c.evictions[t]),
                ),
            ];
            for (name, help, n) in typed {
                if n > 0 {
                    let l = [
                        ("server", server.as_str()),
                        ("type", TYPES[t]),
                        ("zones", zones.as_str()),
                        ("view", view.as_str()),
                    ];
                    add(f, name, help, "counter", "", &l, n as f64);
                }
            }
        }
    }
}
