//! Prometheus metrics with CoreDNS's names, labels, buckets and text format
//! (cli-and-ops.md §5). Counting on the query path is per worker thread and
//! lock-free: each thread owns its counters (atomics it alone writes) and
//! registers them once; a scrape sums every thread's counters.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::wire::types;

/// CoreDNS `TimeBuckets`: 0.00025 × 2^k, 16 buckets.
pub const TIME_BUCKETS: [f64; 16] = [
    0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024,
    2.048, 4.096, 8.192,
];
/// CoreDNS `SlimTimeBuckets`.
pub const SLIM_TIME_BUCKETS: [f64; 5] = [0.00025, 0.0025, 0.025, 0.25, 2.5];
/// CoreDNS size buckets.
pub const SIZE_BUCKETS: [f64; 14] = [
    0.0, 100.0, 200.0, 300.0, 400.0, 511.0, 1023.0, 2047.0, 4095.0, 8291.0, 16000.0, 32000.0,
    48000.0, 64000.0,
];

/// Go's `strconv.FormatFloat(f, 'g', -1, 64)` as the Prometheus Go client prints values.
pub fn go_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if f == 0.0 {
        return "0".into();
    }
    // Shortest round-trip digits (Rust's `{:e}` is shortest too). strconv's 'g'
    // with precision -1 uses the exponent form when exp < -4 || exp >= 6.
    let e = format!("{f:e}");
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..6).contains(&exp) {
        return go_exp(mant, exp);
    }
    format!("{f}")
}

fn go_exp(mant: &str, exp: i32) -> String {
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mant}e{sign}{:02}", exp.abs())
}

/// A histogram of atomics (one writer thread, summed at scrape).
pub struct Hist<const N: usize> {
    buckets: [AtomicU64; N],
    /// Sum in micro-units (nanoseconds for times, bytes × 1e3 never needed).
    sum_bits: AtomicU64,
    count: AtomicU64,
}

impl<const N: usize> Default for Hist<N> {
    fn default() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_bits: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }
}

impl<const N: usize> Hist<N> {
    /// Records `v` against `bounds` (only this thread writes).
    pub fn observe(&self, bounds: &[f64; N], v: f64) {
        // Count first, bucket last (released): a scrape that sees the bucket sees the
        // count too, so `_count` (and `+Inf`) is never below the buckets.
        self.count.fetch_add(1, Ordering::Relaxed);
        let sum = f64::from_bits(self.sum_bits.load(Ordering::Relaxed)) + v;
        self.sum_bits.store(sum.to_bits(), Ordering::Relaxed);
        if let Some(i) = bounds.iter().position(|b| v <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Release);
        }
    }

    /// Buckets (not cumulative), sum and count.
    pub fn snapshot_pub(&self) -> ([u64; N], f64, u64) {
        self.snapshot()
    }

    fn snapshot(&self) -> ([u64; N], f64, u64) {
        (
            std::array::from_fn(|i| self.buckets[i].load(Ordering::Acquire)),
            f64::from_bits(self.sum_bits.load(Ordering::Relaxed)),
            self.count.load(Ordering::Relaxed),
        )
    }
}

/// Type label values, in `metrics_type` order, plus `other`.
const TYPE_LABELS: [&str; 20] = [
    "A", "AAAA", "CNAME", "DNSKEY", "DS", "MX", "NSEC3", "NSEC", "NS", "PTR", "RRSIG", "SOA",
    "SRV", "TXT", "HTTPS", "SVCB", "IXFR", "AXFR", "ANY", "other",
];

fn type_index(t: u16) -> usize {
    let l = types::metrics_type(t);
    TYPE_LABELS.iter().position(|x| *x == l).unwrap_or(19)
}

/// The per-request core metrics of one (server, zone, plugin).
#[derive(Default)]
pub struct DnsCounters {
    requests: [[[AtomicU64; 20]; 2]; 2],
    do_requests: AtomicU64,
    duration: Hist<16>,
    req_size: [Hist<14>; 2],
    resp_size: [Hist<14>; 2],
    responses: [AtomicU64; 32],
}

/// One request's facts for [`report`].
#[derive(Debug, Clone, Copy)]
pub struct Report {
    /// `tcp` (true) or `udp`.
    pub tcp: bool,
    /// IPv6 client.
    pub v6: bool,
    /// DO bit.
    pub do_bit: bool,
    /// Query type.
    pub qtype: u16,
    /// Request size.
    pub req_size: usize,
    /// Response size (0 when nothing was written).
    pub resp_size: usize,
    /// Rcode (written, or returned).
    pub rcode: u16,
    /// Seconds since the request started.
    pub secs: f64,
}

/// (server, zone, view, plugin).
type Key = (Arc<str>, Arc<str>, Arc<str>, &'static str);

static REGISTRY: Mutex<Vec<(Key, Arc<DnsCounters>)>> = Mutex::new(Vec::new());

/// A thread's counters for one key, found by the key's addresses.
type LocalEntry = ([usize; 4], Arc<DnsCounters>);

thread_local! {
    static LOCAL: RefCell<Vec<LocalEntry>> = const { RefCell::new(Vec::new()) };
}

/// Counts one request (CoreDNS `vars.Report`). `server`, `zone` and `plugin`
/// are identified by address on the hot path; new combinations are registered.
pub fn report(
    server: &Arc<str>,
    zone: &Arc<str>,
    view: &Arc<str>,
    plugin: &'static str,
    r: Report,
) {
    let key = [
        Arc::as_ptr(server) as *const u8 as usize,
        Arc::as_ptr(zone) as *const u8 as usize,
        Arc::as_ptr(view) as *const u8 as usize,
        plugin.as_ptr() as usize,
    ];
    LOCAL.with(|l| {
        let mut l = l.borrow_mut();
        let c = match l.iter().find(|e| e.0 == key) {
            Some(e) => Arc::clone(&e.1),
            None => {
                let c = Arc::new(DnsCounters::default());
                REGISTRY
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push((
                        (
                            Arc::clone(server),
                            Arc::clone(zone),
                            Arc::clone(view),
                            plugin,
                        ),
                        Arc::clone(&c),
                    ));
                l.push((key, Arc::clone(&c)));
                c
            }
        };
        let p = usize::from(r.tcp);
        c.requests[p][usize::from(r.v6)][type_index(r.qtype)].fetch_add(1, Ordering::Relaxed);
        if r.do_bit {
            c.do_requests.fetch_add(1, Ordering::Relaxed);
        }
        c.duration.observe(&TIME_BUCKETS, r.secs);
        c.req_size[p].observe(&SIZE_BUCKETS, r.req_size as f64);
        c.resp_size[p].observe(&SIZE_BUCKETS, r.resp_size as f64);
        c.responses[usize::from(r.rcode).min(31)].fetch_add(1, Ordering::Relaxed);
    });
}

/// One metric family for the text format.
#[derive(Debug, Clone)]
pub struct Family {
    /// Help text.
    pub help: &'static str,
    /// `counter`, `gauge` or `histogram`.
    pub kind: &'static str,
    /// Sample lines without the family name prefix: (suffix, labels, value).
    pub samples: Vec<(String, String, String)>,
}

/// All families, by name (sorted, as the Go client prints them).
pub type Families = BTreeMap<String, Family>;

fn labels(pairs: &[(&str, &str)]) -> String {
    // Label names sorted, except `le`, which the Go client prints last.
    let mut v: Vec<&(&str, &str)> = pairs.iter().collect();
    v.sort_by(|a, b| (a.0 == "le").cmp(&(b.0 == "le")).then(a.0.cmp(b.0)));
    let inner: Vec<String> = v
        .iter()
        .map(|(k, val)| format!("{k}=\"{}\"", escape(val)))
        .collect();
    if inner.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", inner.join(","))
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Adds a sample to family `name`.
pub fn add(
    f: &mut Families,
    name: &str,
    help: &'static str,
    kind: &'static str,
    suffix: &str,
    l: &[(&str, &str)],
    v: f64,
) {
    let fam = f.entry(name.to_owned()).or_insert_with(|| Family {
        help,
        kind,
        samples: Vec::new(),
    });
    fam.samples
        .push((suffix.to_owned(), labels(l), go_float(v)));
}

/// Adds a histogram's samples.
#[allow(clippy::too_many_arguments)]
pub fn add_hist<const N: usize>(
    f: &mut Families,
    name: &str,
    help: &'static str,
    l: &[(&str, &str)],
    bounds: &[f64; N],
    buckets: &[u64; N],
    sum: f64,
    count: u64,
) {
    let mut cum = 0u64;
    for (b, n) in bounds.iter().zip(buckets) {
        cum += n;
        let le = go_float(*b);
        let mut ll: Vec<(&str, &str)> = l.to_vec();
        ll.push(("le", &le));
        add(f, name, help, "histogram", "_bucket", &ll, cum as f64);
    }
    let mut ll: Vec<(&str, &str)> = l.to_vec();
    ll.push(("le", "+Inf"));
    add(f, name, help, "histogram", "_bucket", &ll, count as f64);
    add(f, name, help, "histogram", "_sum", l, sum);
    add(f, name, help, "histogram", "_count", l, count as f64);
}

/// The label set without `le`, for ordering samples like the Go client does
/// (metrics sorted by label values; a histogram's lines stay together).
fn base_labels(l: &str) -> String {
    match l.find(",le=\"") {
        Some(i) => {
            let rest = &l[i + 5..];
            let end = rest.find('"').map_or(rest.len(), |e| e + 1);
            format!("{}{}", &l[..i], &rest[end..])
        }
        None => l
            .strip_prefix("{le=\"")
            .map_or_else(|| l.to_owned(), |_| String::new()),
    }
}

/// Renders families in the Prometheus text format.
pub fn render(f: &Families) -> String {
    let mut out = String::new();
    for (name, fam) in f {
        let _ = writeln!(out, "# HELP {name} {}", fam.help);
        let _ = writeln!(out, "# TYPE {name} {}", fam.kind);
        let mut samples: Vec<&(String, String, String)> = fam.samples.iter().collect();
        let rank = |s: &str| match s {
            "_sum" => 1,
            "_count" => 2,
            _ => 0,
        };
        samples.sort_by_cached_key(|(suffix, l, _)| (base_labels(l), rank(suffix)));
        for (suffix, l, v) in samples {
            let _ = writeln!(out, "{name}{suffix}{l} {v}");
        }
    }
    out
}

/// Extra families contributed by plugins (forward, cache, ...).
pub type Contributor = fn(&mut Families);

static CONTRIBUTORS: Mutex<Vec<Contributor>> = Mutex::new(Vec::new());

/// Registers a contributor (idempotent).
pub fn contribute(c: Contributor) {
    let mut v = CONTRIBUTORS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !v.iter().any(|x| std::ptr::fn_addr_eq(*x, c)) {
        v.push(c);
    }
}

/// Gauge `coredns_plugin_enabled` entries: (server, zone, view, name).
pub static PLUGIN_ENABLED: Mutex<Vec<(String, String, String, String)>> = Mutex::new(Vec::new());
/// UDP replies the kernel refused, per server label (rare: a mutex is fine).
pub static SEND_DROPS: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());
/// Server labels of listeners whose blocks enable *shed*.
pub static SHED_SERVERS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Counts `n` refused replies on `server`.
pub fn count_send_drops(server: &str, n: u64) {
    if n > 0 {
        *SEND_DROPS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(server.to_owned())
            .or_default() += n;
    }
}

/// A counter family with `N` labels, for paths that are not hot (one lock per
/// count): the DoH and DoQ response counts, *dns64*'s translations, *autopath*'s
/// successes, *template*'s matches and failures.
pub struct LabelCounts<const N: usize> {
    name: &'static str,
    help: &'static str,
    labels: [&'static str; N],
    counts: Mutex<BTreeMap<[String; N], u64>>,
}

impl<const N: usize> LabelCounts<N> {
    /// An empty family `name` with label names `labels`.
    pub const fn new(name: &'static str, help: &'static str, labels: [&'static str; N]) -> Self {
        Self {
            name,
            help,
            labels,
            counts: Mutex::new(BTreeMap::new()),
        }
    }

    /// Counts one for the label `values`.
    pub fn inc(&self, values: [String; N]) {
        *self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(values)
            .or_default() += 1;
    }

    /// Adds the series counted so far to `f`.
    pub fn add_to(&self, f: &mut Families) {
        let m = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        for (values, n) in &m {
            let l: Vec<(&str, &str)> = self
                .labels
                .iter()
                .zip(values.iter())
                .map(|(k, v)| (*k, v.as_str()))
                .collect();
            add(f, self.name, self.help, "counter", "", &l, *n as f64);
        }
    }
}

/// `coredns_reload_failed_total`.
pub static RELOAD_FAILED: AtomicU64 = AtomicU64::new(0);
/// `coredns_reload_version_info` hash value, set after a reload.
pub static RELOAD_VERSION: Mutex<Option<String>> = Mutex::new(None);

const H_REQ: &str = "Counter of DNS requests made per zone, protocol and family.";
const H_DO: &str = "Counter of DNS requests with DO bit set per zone.";
const H_DUR: &str = "Histogram of the time (in seconds) each request took per zone.";
const H_REQSZ: &str = "Size of the EDNS0 UDP buffer in bytes (64K for TCP) per zone and protocol.";
const H_RESPSZ: &str = "Size of the returned response in bytes.";
const H_RESP: &str = "Counter of response status codes.";

fn rcode_label(rc: usize) -> String {
    match types::rcode_name(rc as u16) {
        Some(n) => n.to_owned(),
        None => format!("RCODE{rc}"),
    }
}

/// Collects every family.
pub fn gather() -> Families {
    let mut f = Families::new();
    // Core per-request metrics, summed over threads by key.
    let reg = REGISTRY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let mut keys: Vec<(String, String, String, &'static str)> = reg
        .iter()
        .map(|(k, _)| (k.0.to_string(), k.1.to_string(), k.2.to_string(), k.3))
        .collect();
    keys.sort();
    keys.dedup();
    for (server, zone, view, plugin) in &keys {
        let parts: Vec<&Arc<DnsCounters>> = reg
            .iter()
            .filter(|(k, _)| &*k.0 == server && &*k.1 == zone && &*k.2 == view && k.3 == *plugin)
            .map(|(_, c)| c)
            .collect();
        let base = [
            ("server", server.as_str()),
            ("zone", zone.as_str()),
            ("view", view.as_str()),
        ];
        for (p, proto) in ["udp", "tcp"].iter().enumerate() {
            for (fam, family) in ["1", "2"].iter().enumerate() {
                for (t, tl) in TYPE_LABELS.iter().enumerate() {
                    let n: u64 = parts
                        .iter()
                        .map(|c| c.requests[p][fam][t].load(Ordering::Relaxed))
                        .sum();
                    if n > 0 {
                        let mut l = base.to_vec();
                        l.extend([("proto", *proto), ("family", *family), ("type", *tl)]);
                        add(
                            &mut f,
                            "coredns_dns_requests_total",
                            H_REQ,
                            "counter",
                            "",
                            &l,
                            n as f64,
                        );
                    }
                }
            }
        }
        let d: u64 = parts
            .iter()
            .map(|c| c.do_requests.load(Ordering::Relaxed))
            .sum();
        if d > 0 {
            add(
                &mut f,
                "coredns_dns_do_requests_total",
                H_DO,
                "counter",
                "",
                &base,
                d as f64,
            );
        }
        let total: u64 = parts
            .iter()
            .map(|c| c.duration.count.load(Ordering::Relaxed))
            .sum();
        if total > 0 {
            let (b, s, n) = sum_hist(parts.iter().map(|c| &c.duration));
            add_hist(
                &mut f,
                "coredns_dns_request_duration_seconds",
                H_DUR,
                &base,
                &TIME_BUCKETS,
                &b,
                s,
                n,
            );
        }
        for (p, proto) in ["udp", "tcp"].iter().enumerate() {
            let (b, s, n) = sum_hist(parts.iter().map(|c| &c.req_size[p]));
            if n > 0 {
                let mut l = base.to_vec();
                l.push(("proto", proto));
                add_hist(
                    &mut f,
                    "coredns_dns_request_size_bytes",
                    H_REQSZ,
                    &l,
                    &SIZE_BUCKETS,
                    &b,
                    s,
                    n,
                );
                let (b, s, n) = sum_hist(parts.iter().map(|c| &c.resp_size[p]));
                add_hist(
                    &mut f,
                    "coredns_dns_response_size_bytes",
                    H_RESPSZ,
                    &l,
                    &SIZE_BUCKETS,
                    &b,
                    s,
                    n,
                );
            }
        }
        for rc in 0..32 {
            let n: u64 = parts
                .iter()
                .map(|c| c.responses[rc].load(Ordering::Relaxed))
                .sum();
            if n > 0 {
                let rl = rcode_label(rc);
                let mut l = base.to_vec();
                l.extend([("rcode", rl.as_str()), ("plugin", *plugin)]);
                add(
                    &mut f,
                    "coredns_dns_responses_total",
                    H_RESP,
                    "counter",
                    "",
                    &l,
                    n as f64,
                );
            }
        }
    }
    always_present(&mut f);
    for c in CONTRIBUTORS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
    {
        c(&mut f);
    }
    process_metrics(&mut f);
    f
}

fn sum_hist<'a, const N: usize>(it: impl Iterator<Item = &'a Hist<N>>) -> ([u64; N], f64, u64) {
    let (mut b, mut s, mut n) = ([0u64; N], 0.0, 0u64);
    for h in it {
        let (hb, hs, hn) = h.snapshot();
        for i in 0..N {
            b[i] += hb[i];
        }
        s += hs;
        n += hn;
    }
    (b, s, n)
}

/// The families CoreDNS registers whether or not their plugin is configured.
fn always_present(f: &mut Families) {
    let build = format!("ringdns-{}", crate::VERSION);
    add(
        f,
        "coredns_build_info",
        "A metric with a constant '1' value labeled by version, revision, and goversion from which CoreDNS was built.",
        "gauge",
        "",
        &[
            ("version", crate::COREDNS_VERSION),
            ("revision", option_env!("RINGDNS_COMMIT").unwrap_or("")),
            ("goversion", &build),
        ],
        1.0,
    );
    if !f.contains_key("coredns_forward_healthcheck_broken_total") {
        add(
            f,
            "coredns_forward_healthcheck_broken_total",
            "Counter of the number of complete failures of the healthchecks.",
            "counter",
            "",
            &[],
            0.0,
        );
    }
    if !f.contains_key("coredns_forward_max_concurrent_rejects_total") {
        add(
            f,
            "coredns_forward_max_concurrent_rejects_total",
            "Counter of the number of queries rejected because the concurrent queries were at maximum.",
            "counter",
            "",
            &[],
            0.0,
        );
    }
    crate::server::ops::health_families(f);
    if !f.contains_key("coredns_hosts_reload_timestamp_seconds") {
        add(
            f,
            "coredns_hosts_reload_timestamp_seconds",
            "The timestamp of the last reload of hosts file.",
            "gauge",
            "",
            &[],
            0.0,
        );
    }
    let lh = crate::plugins::local::LOCALHOST_REQUESTS.load(Ordering::Relaxed);
    add(
        f,
        "coredns_local_localhost_requests_total",
        "Counter of special localhost subdomain requests.",
        "counter",
        "",
        &[],
        lh as f64,
    );
    let panics = crate::server::handle::PANICS.load(Ordering::Relaxed);
    add(
        f,
        "coredns_panics_total",
        "A metrics that counts the number of panics.",
        "counter",
        "",
        &[],
        panics as f64,
    );
    let enabled = PLUGIN_ENABLED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    for (server, zone, view, name) in &enabled {
        add(
            f,
            "coredns_plugin_enabled",
            "A metric that indicates whether a plugin is enabled on per server and zone basis.",
            "gauge",
            "",
            &[
                ("server", server),
                ("zone", zone),
                ("view", view),
                ("name", name),
            ],
            1.0,
        );
    }
    let shed = SHED_SERVERS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let drops = SEND_DROPS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    for server in &shed {
        let h = "Counter of requests dropped by shed.";
        add(
            f,
            "coredns_shed_dropped_total",
            h,
            "counter",
            "",
            &[("server", server), ("reason", "query")],
            0.0,
        );
        let n = drops.get(server).copied().unwrap_or(0);
        add(
            f,
            "coredns_shed_dropped_total",
            h,
            "counter",
            "",
            &[("server", server), ("reason", "response")],
            n as f64,
        );
    }
    let rf = RELOAD_FAILED.load(Ordering::Relaxed);
    add(
        f,
        "coredns_reload_failed_total",
        "Counter of the number of failed reload attempts.",
        "counter",
        "",
        &[],
        rf as f64,
    );
    if let Some(v) = RELOAD_VERSION
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
    {
        add(
            f,
            "coredns_reload_version_info",
            "A metric with a constant '1' value labeled by hash, and value which type of hash generated.",
            "gauge",
            "",
            &[("hash", "sha512"), ("value", &v)],
            1.0,
        );
    }
}

/// `process_*` families from /proc (the Go client's process collector).
fn process_metrics(f: &mut Families) {
    let ticks = 100.0;
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        if let Some(rest) = stat.rsplit_once(") ").map(|x| x.1) {
            let v: Vec<&str> = rest.split_whitespace().collect();
            let num = |i: usize| v.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
            // Fields after the comm: state is index 0 (field 3).
            let utime = num(11);
            let stime = num(12);
            let start = num(19);
            let vsize = num(20);
            let rss = num(21) * 4096.0;
            add(
                f,
                "process_cpu_seconds_total",
                "Total user and system CPU time spent in seconds.",
                "counter",
                "",
                &[],
                (utime + stime) / ticks,
            );
            add(
                f,
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                "gauge",
                "",
                &[],
                vsize,
            );
            add(
                f,
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                "gauge",
                "",
                &[],
                rss,
            );
            if let Some(btime) = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
                s.lines().find_map(|l| {
                    l.strip_prefix("btime ")
                        .and_then(|x| x.trim().parse::<f64>().ok())
                })
            }) {
                add(
                    f,
                    "process_start_time_seconds",
                    "Start time of the process since unix epoch in seconds.",
                    "gauge",
                    "",
                    &[],
                    btime + start / ticks,
                );
            }
        }
    }
    if let Ok(rd) = std::fs::read_dir("/proc/self/fd") {
        add(
            f,
            "process_open_fds",
            "Number of open file descriptors.",
            "gauge",
            "",
            &[],
            rd.count() as f64,
        );
    }
    if let Ok((soft, _)) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
    {
        add(
            f,
            "process_max_fds",
            "Maximum number of open file descriptors.",
            "gauge",
            "",
            &[],
            soft as f64,
        );
    }
    if let Ok((soft, _)) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_AS) {
        add(
            f,
            "process_virtual_memory_max_bytes",
            "Maximum amount of virtual memory available in bytes.",
            "gauge",
            "",
            &[],
            soft as f64,
        );
    }
    if let Ok(dev) = std::fs::read_to_string("/proc/self/net/dev") {
        let (mut rx, mut tx) = (0f64, 0f64);
        for l in dev.lines().skip(2) {
            if let Some((_, rest)) = l.split_once(':') {
                let v: Vec<f64> = rest
                    .split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect();
                rx += v.first().copied().unwrap_or(0.0);
                tx += v.get(8).copied().unwrap_or(0.0);
            }
        }
        add(
            f,
            "process_network_receive_bytes_total",
            "Number of bytes received by the process over the network.",
            "counter",
            "",
            &[],
            rx,
        );
        add(
            f,
            "process_network_transmit_bytes_total",
            "Number of bytes sent by the process over the network.",
            "counter",
            "",
            &[],
            tx,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_floats() {
        assert_eq!(go_float(0.010262836), "0.010262836");
        assert_eq!(go_float(2.0004864e+07), "2.0004864e+07");
        assert_eq!(go_float(20000.0), "20000");
        assert_eq!(go_float(1.8446744073709552e19), "1.8446744073709552e+19");
        assert_eq!(go_float(0.00025), "0.00025");
        assert_eq!(go_float(1.79575028001e+09), "1.79575028001e+09");
        assert_eq!(go_float(6.0), "6");
        assert_eq!(go_float(8291.0), "8291");
        assert_eq!(go_float(64000.0), "64000");
        assert_eq!(go_float(1e21), "1e+21");
    }
}

#[cfg(test)]
mod order_tests {
    use super::*;

    #[test]
    fn samples_sorted_like_go() {
        let mut f = Families::new();
        add_hist(
            &mut f,
            "h",
            "x",
            &[("proto", "udp")],
            &[1.0, 2.0],
            &[1, 1],
            3.0,
            2,
        );
        add_hist(
            &mut f,
            "h",
            "x",
            &[("proto", "tcp")],
            &[1.0, 2.0],
            &[0, 1],
            2.0,
            1,
        );
        let text = render(&f);
        let lines: Vec<&str> = text.lines().skip(2).collect();
        assert_eq!(lines[0], "h_bucket{proto=\"tcp\",le=\"1\"} 0");
        assert_eq!(lines[3], "h_sum{proto=\"tcp\"} 2");
        assert_eq!(lines[5], "h_bucket{proto=\"udp\",le=\"1\"} 1");
    }
}
