//! forward's metrics with CoreDNS's names, labels and help texts
//! (cli-and-ops.md §5.2), as lock-free atomics, and their Prometheus text
//! rendering for the /metrics endpoint.
//!
//! Series are process-wide and keyed by upstream (`to`), like CoreDNS's global
//! vectors: stanzas that share an upstream share its series, and counts
//! survive reloads. The two `coredns_forward_*` counters are always present;
//! labelled series appear after their first observation.
//!
//! CoreDNS: `plugin/forward/metrics.go`, `plugin/pkg/proxy/metrics.go`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

pub use crate::metrics::TIME_BUCKETS;
use crate::metrics::{Families, add, add_hist};
use crate::wire::types::rcode_name;

/// `coredns_forward_healthcheck_broken_total`.
pub static HEALTHCHECK_BROKEN: AtomicU64 = AtomicU64::new(0);
/// `coredns_forward_max_concurrent_rejects_total`.
pub static MAX_CONCURRENT_REJECTS: AtomicU64 = AtomicU64::new(0);
/// `ringdns_forward_in_flight_full_total` (a ringdns family): upstream attempts
/// refused because the worker's table of queries in flight to that upstream was full.
pub static PENDING_FULL: AtomicU64 = AtomicU64::new(0);

/// One worker's queries in flight to one upstream. Only that worker writes it (a
/// load and a store: no locked instruction on the query path); a scrape sums every
/// worker's ([`collect`]: `ringdns_forward_queries_in_flight`).
#[derive(Debug)]
pub struct InFlight {
    /// UDP queries holding a slot of the worker's pending tables (the slab).
    pub udp: AtomicUsize,
    /// TCP/TLS exchanges and DoH queries.
    pub streams: AtomicUsize,
    /// The `proto` label of `streams`: `tcp`, `tcp-tls` or `https`.
    stream_proto: &'static str,
}

impl InFlight {
    /// Counters labelled `stream_proto` for their stream half, not registered with
    /// any upstream's series (tests).
    pub fn new(stream_proto: &'static str) -> Self {
        Self {
            udp: AtomicUsize::new(0),
            streams: AtomicUsize::new(0),
            stream_proto,
        }
    }
}

impl Default for InFlight {
    fn default() -> Self {
        Self::new("tcp")
    }
}

/// Adds one to a counter of [`InFlight`] (its worker is the only writer).
pub fn inc(c: &AtomicUsize) {
    c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

/// Takes one from a counter of [`InFlight`] (its worker is the only writer).
pub fn dec(c: &AtomicUsize) {
    c.store(
        c.load(Ordering::Relaxed).saturating_sub(1),
        Ordering::Relaxed,
    );
}

/// Counts one stream exchange in flight until dropped.
pub struct StreamGuard<'a>(&'a AtomicUsize);

impl<'a> StreamGuard<'a> {
    /// Counts one more on `c`.
    pub fn new(c: &'a AtomicUsize) -> Self {
        inc(c);
        Self(c)
    }
}

impl Drop for StreamGuard<'_> {
    fn drop(&mut self) {
        dec(self.0);
    }
}

/// A histogram over [`TIME_BUCKETS`] (per-bucket counts, made cumulative when rendered).
#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; 16],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        // Count first, bucket last (released): a scrape that sees the bucket sees the
        // count too, so `_count` (and `+Inf`) is never below the buckets ([`Self::snapshot`]).
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(
            d.as_nanos().min(u128::from(u64::MAX)) as u64,
            Ordering::Relaxed,
        );
        if let Some(i) = TIME_BUCKETS.iter().position(|b| s <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Release);
        }
    }

    /// Buckets (not cumulative), sum in seconds and count, read so that the count
    /// covers every observation the buckets hold (buckets first, acquired).
    pub fn snapshot(&self) -> ([u64; 16], f64, u64) {
        let buckets: [u64; 16] = std::array::from_fn(|i| self.buckets[i].load(Ordering::Acquire));
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        (buckets, sum, self.count.load(Ordering::Relaxed))
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

/// Transport label of the connection cache counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnProto {
    /// `udp`.
    Udp = 0,
    /// `tcp`.
    Tcp = 1,
    /// `tcp-tls`.
    TcpTls = 2,
}

impl ConnProto {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
            Self::TcpTls => "tcp-tls",
        }
    }
}

/// Every series of one upstream (`to`).
pub struct UpstreamMetrics {
    /// The `to` label (`IP:port`).
    pub to: String,
    by_rcode: [Histogram; 24],
    other_rcodes: Mutex<Vec<(u16, Arc<Histogram>)>>,
    /// `coredns_proxy_healthcheck_failures_total`.
    pub hc_failures: AtomicU64,
    hits: [AtomicU64; 3],
    misses: [AtomicU64; 3],
    /// Every worker's in-flight counters (dropped with the worker's pools).
    in_flight: Mutex<Vec<Weak<InFlight>>>,
}

impl UpstreamMetrics {
    fn new(to: &str) -> Self {
        Self {
            to: to.to_owned(),
            by_rcode: Default::default(),
            other_rcodes: Mutex::new(Vec::new()),
            hc_failures: AtomicU64::new(0),
            hits: Default::default(),
            misses: Default::default(),
            in_flight: Mutex::new(Vec::new()),
        }
    }

    /// New in-flight counters for one worker, summed into this upstream's
    /// `ringdns_forward_queries_in_flight` while they live.
    pub fn in_flight(&self, stream_proto: &'static str) -> Arc<InFlight> {
        let c = Arc::new(InFlight::new(stream_proto));
        let mut v = self
            .in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        v.retain(|w| w.strong_count() > 0);
        v.push(Arc::downgrade(&c));
        c
    }

    /// Queries in flight over every worker, per `proto` label (`udp` and `tcp` for
    /// plain DNS, `tcp-tls` for DoT, `https` for DoH); empty before any worker has
    /// used this upstream.
    pub fn in_flight_now(&self) -> Vec<(&'static str, usize)> {
        let v = self
            .in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out: Vec<(&'static str, usize)> = Vec::new();
        let mut count =
            |proto: &'static str, n: usize| match out.iter_mut().find(|(p, _)| *p == proto) {
                Some((_, t)) => *t += n,
                None => out.push((proto, n)),
            };
        for c in v.iter().filter_map(Weak::upgrade) {
            if c.stream_proto == "tcp" {
                count("udp", c.udp.load(Ordering::Relaxed));
            }
            count(c.stream_proto, c.streams.load(Ordering::Relaxed));
        }
        out
    }

    /// `coredns_proxy_request_duration_seconds{rcode}`.
    pub fn observe(&self, rcode: u16, d: Duration) {
        if let Some(h) = self.by_rcode.get(usize::from(rcode)) {
            h.observe(d);
            return;
        }
        // Rcodes above 23 are rare (extended rcodes); a short lock is fine.
        if let Ok(mut v) = self.other_rcodes.lock() {
            match v.iter().find(|(rc, _)| *rc == rcode) {
                Some((_, h)) => h.observe(d),
                None => {
                    let h = Arc::new(Histogram::default());
                    h.observe(d);
                    v.push((rcode, h));
                }
            }
        }
    }

    /// Requests observed with `rcode`.
    pub fn requests(&self, rcode: u16) -> u64 {
        self.by_rcode
            .get(usize::from(rcode))
            .map_or(0, Histogram::count)
    }

    /// A connection cache hit.
    pub fn hit(&self, p: ConnProto) {
        self.hits[p as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// A connection cache miss.
    pub fn miss(&self, p: ConnProto) {
        self.misses[p as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// (hits, misses) for `p`.
    pub fn conn_cache(&self, p: ConnProto) -> (u64, u64) {
        (
            self.hits[p as usize].load(Ordering::Relaxed),
            self.misses[p as usize].load(Ordering::Relaxed),
        )
    }
}

static REGISTRY: Mutex<Vec<Arc<UpstreamMetrics>>> = Mutex::new(Vec::new());

/// The series of upstream `to` (created on first use, kept for the process).
pub fn upstream(to: &str) -> Arc<UpstreamMetrics> {
    let mut reg = REGISTRY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(m) = reg.iter().find(|m| m.to == to) {
        return Arc::clone(m);
    }
    let m = Arc::new(UpstreamMetrics::new(to));
    reg.push(Arc::clone(&m));
    m
}

const H_BROKEN: &str = "Counter of the number of complete failures of the healthchecks.";
const H_REJECTS: &str =
    "Counter of the number of queries rejected because the concurrent queries were at maximum.";
const H_HITS: &str = "Counter of connection cache hits per upstream and protocol.";
const H_MISSES: &str = "Counter of connection cache misses per upstream and protocol.";
const H_HC: &str = "Counter of the number of failed healthchecks.";
const H_DUR: &str = "Histogram of the time each request took.";
const H_IN_FLIGHT: &str =
    "Queries waiting on an upstream (every worker), by transport (ringdns; not in CoreDNS).";
const H_FULL: &str = "Counter of upstream attempts refused because a worker's table of queries in flight to that upstream was full (ringdns; not in CoreDNS).";

/// Adds forward's families to `f` (a [`crate::metrics::Contributor`]); replaces
/// the zero placeholders of the two always-present counters.
pub fn collect(f: &mut Families) {
    let reg: Vec<Arc<UpstreamMetrics>> = REGISTRY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    for (name, help, v) in [
        (
            "coredns_forward_healthcheck_broken_total",
            H_BROKEN,
            &HEALTHCHECK_BROKEN,
        ),
        (
            "coredns_forward_max_concurrent_rejects_total",
            H_REJECTS,
            &MAX_CONCURRENT_REJECTS,
        ),
    ] {
        f.remove(name);
        add(
            f,
            name,
            help,
            "counter",
            "",
            &[],
            v.load(Ordering::Relaxed) as f64,
        );
    }
    let name = "ringdns_forward_in_flight_full_total";
    let full = PENDING_FULL.load(Ordering::Relaxed) as f64;
    add(f, name, H_FULL, "counter", "", &[], full);
    for m in &reg {
        let to = m.to.as_str();
        for p in [ConnProto::Udp, ConnProto::Tcp, ConnProto::TcpTls] {
            let (h, mi) = m.conn_cache(p);
            let l = [("proxy_name", "forward"), ("to", to), ("proto", p.as_str())];
            if h > 0 {
                let name = "coredns_proxy_conn_cache_hits_total";
                add(f, name, H_HITS, "counter", "", &l, h as f64);
            }
            if mi > 0 {
                let name = "coredns_proxy_conn_cache_misses_total";
                add(f, name, H_MISSES, "counter", "", &l, mi as f64);
            }
        }
        for (proto, n) in m.in_flight_now() {
            let l = [("proxy_name", "forward"), ("to", to), ("proto", proto)];
            let name = "ringdns_forward_queries_in_flight";
            add(f, name, H_IN_FLIGHT, "gauge", "", &l, n as f64);
        }
        let hc = m.hc_failures.load(Ordering::Relaxed);
        if hc > 0 {
            let l = [("proxy_name", "forward"), ("to", to)];
            let name = "coredns_proxy_healthcheck_failures_total";
            add(f, name, H_HC, "counter", "", &l, hc as f64);
        }
        let mut hists: Vec<(u16, Arc<Histogram>)> = Vec::new();
        if let Ok(v) = m.other_rcodes.lock() {
            hists.extend(v.iter().map(|(rc, h)| (*rc, Arc::clone(h))));
        }
        let fixed = m.by_rcode.iter().enumerate().map(|(rc, h)| (rc as u16, h));
        for (rc, h) in fixed.chain(hists.iter().map(|(rc, h)| (*rc, &**h))) {
            let (buckets, sum, count) = h.snapshot();
            if count == 0 {
                continue;
            }
            // CoreDNS labels unknown rcodes with the bare number.
            let label = rcode_name(rc).map_or_else(|| rc.to_string(), str::to_owned);
            let l = [
                ("proxy_name", "forward"),
                ("to", to),
                ("rcode", label.as_str()),
            ];
            let name = "coredns_proxy_request_duration_seconds";
            add_hist(f, name, H_DUR, &l, &TIME_BUCKETS, &buckets, sum, count);
        }
    }
}

/// forward's families alone, in the Prometheus text format (HELP and TYPE
/// lines, families by name, series as the Go client orders them).
pub fn render() -> String {
    let mut f = Families::new();
    collect(&mut f);
    crate::metrics::render(&f)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scrape racing observations never shows the buckets above the count (which is
    /// `+Inf` and `_count`): Prometheus would have to "fix" such a histogram.
    #[test]
    fn snapshot_count_covers_buckets_while_observing() {
        let h = std::sync::Arc::new(Histogram::default());
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writers: Vec<_> = (0..2)
            .map(|_| {
                let (h, stop) = (std::sync::Arc::clone(&h), std::sync::Arc::clone(&stop));
                std::thread::spawn(move || {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) && n < 20_000_000 {
                        h.observe(Duration::from_micros(n % 5000));
                        n += 1;
                    }
                })
            })
            .collect();
        let until = std::time::Instant::now() + Duration::from_millis(500);
        let mut snaps = 0u32;
        while std::time::Instant::now() < until {
            let (b, _, count) = h.snapshot();
            let total: u64 = b.iter().sum();
            assert!(total <= count, "buckets hold {total}, count {count}");
            snaps += 1;
        }
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            let _ = w.join();
        }
        let (b, _, count) = h.snapshot();
        assert_eq!(
            b.iter().sum::<u64>(),
            count,
            "at rest every observation is in a bucket"
        );
        assert!(snaps > 100);
    }
}
