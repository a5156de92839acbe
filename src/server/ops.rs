//! Operations endpoints wired to the running configuration: which HTTP
//! endpoints a configuration wants, what they answer (`/metrics`, `/health`,
//! `/ready`), the `coredns_plugin_enabled` gauge, and the health self-check.

use std::collections::BTreeSet;
use std::sync::{Arc, LazyLock, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::{Active, Shared};
use crate::clog;
use crate::config::Config;
use crate::http::{self, Endpoints, Kind, Response};
use crate::metrics;
use crate::plugins::PluginConfig;

/// The process's HTTP endpoints.
pub static ENDPOINTS: LazyLock<Endpoints> = LazyLock::new(Endpoints::default);
static SHARED: OnceLock<Arc<Shared>> = OnceLock::new();
/// Plugins that reported ready once (`monitor until-ready`).
static READY_ONCE: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());

/// Remembers the shared state for the endpoint handlers.
pub fn install(shared: &Arc<Shared>) {
    let _ = SHARED.set(Arc::clone(shared));
}

/// The endpoints `cfg` asks for.
pub fn wanted(cfg: &Config) -> Vec<(String, Kind)> {
    let mut v: Vec<(String, Kind)> = Vec::new();
    let mut push = |a: &str, k: Kind| {
        if !v.iter().any(|(x, _)| x == a) {
            v.push((a.to_owned(), k));
        }
    };
    for b in &cfg.blocks {
        for p in &b.plugins {
            if let PluginConfig::Prometheus(c) = p {
                push(&c.addr, Kind::Metrics);
            }
        }
        if let Some((a, _)) = &b.settings.health {
            push(a, Kind::Health);
        }
        if let Some((a, _)) = &b.settings.ready {
            push(a, Kind::Ready);
        }
    }
    v
}

/// The longest lameduck of the configuration's *health* blocks.
pub fn lameduck(cfg: &Config) -> Duration {
    cfg.blocks
        .iter()
        .filter_map(|b| b.settings.health.as_ref().map(|h| h.1))
        .max()
        .unwrap_or_default()
}

/// Sets `coredns_plugin_enabled` for the running configuration (reset on reload).
pub fn set_plugin_enabled(a: &Active) {
    let mut v = Vec::new();
    for l in &a.config.listeners {
        for (zone, bi) in &l.sites {
            let block = &a.config.blocks[*bi];
            let view = block
                .plugins
                .iter()
                .find_map(|p| match p {
                    crate::plugins::PluginConfig::View(v) => Some(v.name.to_string()),
                    _ => None,
                })
                .unwrap_or_default();
            for name in &block.plugin_names {
                v.push((
                    l.label.clone(),
                    zone.clone(),
                    view.clone(),
                    (*name).to_owned(),
                ));
            }
        }
    }
    let mut shed: Vec<String> = a
        .config
        .listeners
        .iter()
        .filter(|l| {
            l.sites
                .iter()
                .any(|(_, b)| a.config.blocks[*b].settings.shed)
        })
        .map(|l| l.label.clone())
        .collect();
    shed.dedup();
    *metrics::SHED_SERVERS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = shed;
    v.sort();
    v.dedup();
    *metrics::PLUGIN_ENABLED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = v;
}

fn ready_body() -> Response {
    let Some(shared) = SHARED.get() else {
        return Response {
            status: 200,
            content_type: "text/plain; charset=utf-8",
            body: b"OK".to_vec(),
        };
    };
    let active = shared.active.load();
    let mut not_ready: BTreeSet<&'static str> = BTreeSet::new();
    for (bi, b) in active.config.blocks.iter().enumerate() {
        let Some((_, continuously)) = &b.settings.ready else {
            continue;
        };
        for l in &active.listeners {
            let Some(ci) = l.block_index(bi) else {
                continue;
            };
            for p in &l.disp.chains[ci].plugins {
                if let Some(ready) = p.ready() {
                    let name = p.name();
                    let mut once = READY_ONCE
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    if !continuously && once.contains(name) {
                        continue;
                    }
                    if ready {
                        once.insert(name);
                    } else {
                        not_ready.insert(name);
                    }
                }
            }
        }
    }
    if not_ready.is_empty() {
        return Response {
            status: 200,
            content_type: "text/plain; charset=utf-8",
            body: b"OK".to_vec(),
        };
    }
    let names: Vec<&str> = not_ready.into_iter().collect();
    clog::log(
        clog::Level::Info,
        Some("ready"),
        &format!("Plugins not ready: {:?}", names.join(",")),
    );
    Response {
        status: 503,
        content_type: "text/plain; charset=utf-8",
        body: names.join(",").into_bytes(),
    }
}

/// Answers one HTTP request on an endpoint of `kind`.
pub fn handle(kind: Kind, path: &str) -> Response {
    match (kind, path) {
        (Kind::Metrics, "/metrics") => Response {
            status: 200,
            content_type: "text/plain; version=0.0.4; charset=utf-8; escaping=underscores",
            body: metrics::render(&metrics::gather()).into_bytes(),
        },
        (Kind::Health, "/health") => Response {
            status: 200,
            content_type: "text/plain; charset=utf-8",
            body: b"OK".to_vec(),
        },
        (Kind::Ready, "/ready") => ready_body(),
        _ => http::not_found(),
    }
}

/// `coredns_health_request_duration_seconds` and `_failures_total`.
pub struct HealthStats {
    /// Slim-bucket histogram.
    pub hist: metrics::Hist<5>,
    /// Failures.
    pub failures: std::sync::atomic::AtomicU64,
}

/// The health self-check counters.
pub static HEALTH: LazyLock<HealthStats> = LazyLock::new(|| HealthStats {
    hist: metrics::Hist::default(),
    failures: std::sync::atomic::AtomicU64::new(0),
});

/// Contributes the health families (registered always, as CoreDNS does).
pub fn health_families(f: &mut metrics::Families) {
    let (b, s, n) = HEALTH.hist.snapshot_pub();
    metrics::add_hist(
        f,
        "coredns_health_request_duration_seconds",
        "Histogram of the time (in seconds) each request took.",
        &[],
        &metrics::SLIM_TIME_BUCKETS,
        &b,
        s,
        n,
    );
    let fails = HEALTH.failures.load(std::sync::atomic::Ordering::Relaxed);
    metrics::add(
        f,
        "coredns_health_request_failures_total",
        "The number of times the health check failed.",
        "counter",
        "",
        &[],
        fails as f64,
    );
}

/// Every second, fetch our own `/health` (CoreDNS's health overloaded check).
pub async fn health_self_check() {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let addr = SHARED.get().and_then(|s| {
            let a = s.active.load();
            a.config
                .blocks
                .iter()
                .find_map(|b| b.settings.health.as_ref().map(|h| h.0.clone()))
        });
        let Some(addr) = addr else { continue };
        let Ok(sa) = http::resolve(&addr) else {
            continue;
        };
        let target = if sa.ip().is_unspecified() {
            std::net::SocketAddr::from(([127, 0, 0, 1], sa.port()))
        } else {
            sa
        };
        let host = if addr.starts_with(':') {
            format!("localhost{addr}")
        } else {
            addr.clone()
        };
        let url = format!("http://{host}/health");
        let t0 = Instant::now();
        let ok = tokio::time::timeout(Duration::from_secs(3), async {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut s = tokio::net::TcpStream::connect(target).await.ok()?;
            s.write_all(format!("GET /health HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
                .await
                .ok()?;
            let mut buf = [0u8; 32];
            let n = s.read(&mut buf).await.ok()?;
            buf[..n].starts_with(b"HTTP/1.1 200").then_some(())
        })
        .await;
        let secs = t0.elapsed().as_secs_f64();
        HEALTH.hist.observe(&metrics::SLIM_TIME_BUCKETS, secs);
        match ok {
            Ok(Some(())) => {
                if secs > 1.0 {
                    clog::log(
                        clog::Level::Warning,
                        Some("health"),
                        &format!("Local health request to {url:?} took more than 1s: {secs}s"),
                    );
                }
            }
            _ => {
                HEALTH
                    .failures
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                clog::log(
                    clog::Level::Warning,
                    Some("health"),
                    &format!("Local health request to {url:?} failed: timeout"),
                );
            }
        }
    }
}
