//! *secondary*: zones transferred in (AXFR over TCP) from primaries and kept
//! in memory, refreshed from the SOA's refresh/retry/expire timers and on
//! NOTIFY from a primary; answered exactly as *file* answers (plugins.md E).
//! An expired zone answers SERVFAIL.
//!
//! CoreDNS: `plugin/secondary/setup.go`, `plugin/file/secondary.go`,
//! `plugin/file/notify.go`.

pub mod xfr;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use corefile::values::format_go_duration;
use corefile::{Diagnostic, Dispenser};

use super::file::{Fall, ZoneServer, ZoneSlot, ZoneTable};
use super::transfer::link::{self, BlockLink};
use super::transfer::{host_port, notify};
use crate::chain::{Ctx, Flow};
use crate::clog::{self, Level};
use crate::config::SetupCtx;
use crate::wire::Name;

/// *secondary*'s configuration.
#[derive(Clone)]
pub struct SecondaryConfig {
    server: Arc<ZoneServer>,
    runtime: Arc<Runtime>,
}

impl std::fmt::Debug for SecondaryConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecondaryConfig")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

struct Runtime {
    started: AtomicBool,
    notifies: Mutex<Option<Receiver<(Name, String)>>>,
}

/// Setup (CoreDNS `secondaryParse`).
pub fn setup(d: &mut Dispenser, ctx: &mut SetupCtx<'_>) -> Result<SecondaryConfig, Diagnostic> {
    let w = |e: Diagnostic| e.in_plugin("secondary");
    let mut table = ZoneTable::default();
    let mut fall = Fall::default();
    while d.next() {
        let args = d.remaining_args();
        let origins = ctx.origins(&args);
        let mut from: Vec<String> = Vec::new();
        let mut has_transfer = false;
        while d.next_block() {
            match d.val() {
                "transfer" => {
                    if !d.next_arg() {
                        return Err(w(d.arg_err()));
                    }
                    if d.val() != "from" {
                        return Err(w(d.err(format!("unknown property {}", d.val()))));
                    }
                    let f = d.remaining_args();
                    if f.is_empty() {
                        return Err(w(d.arg_err()));
                    }
                    for h in f {
                        if h == "*" {
                            return Err(w(Diagnostic::plain("can't use '*' in transfer from")));
                        }
                        from.push(host_port(&h, "53").map_err(|e| w(Diagnostic::plain(e)))?);
                    }
                    has_transfer = true;
                }
                "catalog" => {
                    return Err(w(d.err("catalog zones are not supported by ringdns yet")));
                }
                "fallthrough" => fall = Fall::from_args(&d.remaining_args()),
                other => return Err(w(d.err(format!("unknown property '{other}'")))),
            }
        }
        if !has_transfer {
            return Err(w(d.err("secondary zones require a transfer from property")));
        }
        for o in &origins {
            let Some(origin) = Name::parse(o) else {
                continue;
            };
            let mut slot = ZoneSlot::new(&origin, "stdin");
            slot.transfer_from = from.clone();
            table.insert(Arc::new(slot));
        }
    }
    let link = link::for_block(ctx);
    let (tx, rx) = mpsc::channel();
    let server = Arc::new(ZoneServer {
        table: ArcSwap::from_pointee(table),
        fall,
        has_next: link.follower_flag(),
        link: Arc::clone(&link),
        notify_in: Some(tx),
    });
    let src: Arc<dyn link::ZoneSource> = server.clone();
    link.add_source(Arc::downgrade(&src));
    Ok(SecondaryConfig {
        server,
        runtime: Arc::new(Runtime {
            started: AtomicBool::new(false),
            notifies: Mutex::new(Some(rx)),
        }),
    })
}

/// The running plugin.
pub struct Secondary {
    server: Arc<ZoneServer>,
}

impl Secondary {
    /// Builds it; the first build starts the transfers.
    pub fn new(c: &SecondaryConfig) -> Self {
        if !c.runtime.started.swap(true, Ordering::AcqRel) {
            let rx = c.runtime.notifies.lock().ok().and_then(|mut g| g.take());
            if let Some(rx) = rx {
                let slots = c.server.table.load().order.clone();
                let link = Arc::clone(&c.server.link);
                let _ = std::thread::Builder::new()
                    .name("ringdns-secondary".into())
                    .spawn(move || Updater::new(slots, link).run(&rx));
            }
        }
        Self {
            server: Arc::clone(&c.server),
        }
    }

    /// The request hook (CoreDNS `File.ServeDNS` of the embedded file plugin).
    pub fn serve(&self, ctx: &mut Ctx<'_>) -> Flow {
        self.server.serve(ctx)
    }

    /// The parked half (a self-lookup).
    pub async fn serve_async(&self, ctx: &mut Ctx<'_>) -> Flow {
        self.server.serve_async(ctx).await
    }
}

/// Transfer and NOTIFY lines: CoreDNS writes them from the file package, so they
/// carry `plugin/file:`; only the first transfer's retry line is `plugin/secondary:`.
fn log(level: Level, msg: &str) {
    clog::log(level, Some("file"), msg);
}

/// A random duration in `[0, ms)` milliseconds (CoreDNS `jitter`).
fn jitter(ms: u64) -> Duration {
    Duration::from_millis(fastrand::u64(..ms))
}

/// CoreDNS `shouldTransfer`: whether a primary has a newer serial.
fn should_transfer(slot: &ZoneSlot) -> (bool, Option<String>) {
    let mut err = None;
    let mut serial = None;
    for p in &slot.transfer_from {
        match xfr::primary_serial(p, &slot.origin) {
            Ok(Some(s)) => {
                err = None;
                serial = Some(s);
                break;
            }
            Ok(None) => err = None,
            Err(e) => err = Some(e.to_string()),
        }
    }
    let Some(remote) = serial else {
        return (false, err);
    };
    match slot.data.load().as_ref().and_then(|z| z.serial()) {
        None => (true, err),
        Some(local) => (xfr::serial_less(local, remote), err),
    }
}

/// CoreDNS `TransferIn`: the first primary that transfers wins.
fn transfer_in(slot: &ZoneSlot, link: &BlockLink) -> Result<(), String> {
    let origin = slot.origin_text();
    let mut last = String::from("no primaries");
    for p in &slot.transfer_from {
        match xfr::axfr(p, &slot.origin) {
            Ok(z) => {
                slot.data.store(Some(Arc::new(z)));
                slot.expired.store(false, Ordering::Relaxed);
                log(Level::Info, &format!("Transferred: {origin} from {p}"));
                if let Err(e) = notify::notify_zone(link, &slot.origin) {
                    log(Level::Warning, &format!("Failed sending notifies: {e}"));
                }
                return Ok(());
            }
            Err(e @ xfr::XfrError::Io(_)) if e.to_string().starts_with("dial") => {
                log(
                    Level::Error,
                    &format!("Failed to setup transfer `{origin}' with `{p:?}': {e}"),
                );
                last = e.to_string();
            }
            Err(e @ xfr::XfrError::Zone(_)) => {
                log(
                    Level::Error,
                    &format!("Failed to parse transfer `{origin}' from: {p:?}: {e}"),
                );
                last = e.to_string();
            }
            Err(e) => {
                log(
                    Level::Error,
                    &format!("Failed to transfer `{origin}' from {p:?}: {e}"),
                );
                last = e.to_string();
            }
        }
    }
    Err(last)
}

/// The timers of one zone (CoreDNS `transferAndUpdate` and `UpdateWithTransfer`).
enum Phase {
    /// Before the first successful transfer: retry with backoff (250 ms doubling to 10 s).
    First { next: Instant, backoff: Duration },
    /// Loaded: refresh, retry (while a refresh failed) and expire.
    Loaded {
        refresh: Duration,
        retry: Duration,
        expire: Duration,
        next_refresh: Instant,
        next_retry: Instant,
        next_expire: Instant,
        retrying: bool,
    },
}

struct Zone {
    slot: Arc<ZoneSlot>,
    phase: Phase,
}

struct Updater {
    zones: Vec<Zone>,
    link: Arc<BlockLink>,
}

impl Updater {
    fn new(slots: Vec<Arc<ZoneSlot>>, link: Arc<BlockLink>) -> Self {
        let now = Instant::now();
        let zones = slots
            .into_iter()
            .filter(|s| !s.transfer_from.is_empty())
            .map(|slot| Zone {
                slot,
                phase: Phase::First {
                    next: now,
                    backoff: Duration::from_millis(250),
                },
            })
            .collect();
        Self { zones, link }
    }

    /// Timers restart from the zone's SOA.
    fn loaded(slot: &ZoneSlot) -> Phase {
        let (r, t, e) = slot
            .data
            .load()
            .as_ref()
            .and_then(|z| z.soa_timers())
            .unwrap_or((3600, 600, 86_400));
        let secs = |v: u32| Duration::from_secs(u64::from(v.max(1)));
        let now = Instant::now();
        Phase::Loaded {
            refresh: secs(r),
            retry: secs(t),
            expire: secs(e),
            next_refresh: now + secs(r) + jitter(5000),
            next_retry: now + secs(t),
            next_expire: now + secs(e),
            retrying: false,
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.zones
            .iter()
            .map(|z| match &z.phase {
                Phase::First { next, .. } => *next,
                Phase::Loaded {
                    next_refresh,
                    next_retry,
                    next_expire,
                    retrying,
                    ..
                } => {
                    if *retrying {
                        (*next_refresh).min(*next_retry).min(*next_expire)
                    } else {
                        *next_refresh
                    }
                }
            })
            .min()
    }

    fn run(mut self, rx: &Receiver<(Name, String)>) {
        loop {
            let wait = self.next_deadline().map_or(Duration::from_secs(3600), |d| {
                d.saturating_duration_since(Instant::now())
            });
            match rx.recv_timeout(wait) {
                Ok((origin, ip)) => self.notified(&origin, &ip),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            self.tick();
        }
    }

    fn notified(&mut self, origin: &Name, ip: &str) {
        let link = Arc::clone(&self.link);
        let Some(z) = self.zones.iter_mut().find(|z| z.slot.origin == *origin) else {
            return;
        };
        let o = z.slot.origin_text();
        let (ok, err) = should_transfer(&z.slot);
        if ok {
            match transfer_in(&z.slot, &link) {
                Ok(()) => z.phase = Self::loaded(&z.slot),
                Err(e) => log(
                    Level::Warning,
                    &format!("Notify from {ip} for {o}: transfer failed: {e}"),
                ),
            }
        } else {
            log(
                Level::Info,
                &format!("Notify from {ip} for {o}: no SOA serial increase seen"),
            );
        }
        if let Some(e) = err {
            log(
                Level::Warning,
                &format!("Notify from {ip} for {o}: failed primary check: {e}"),
            );
        }
    }

    fn tick(&mut self) {
        let link = Arc::clone(&self.link);
        for z in &mut self.zones {
            let now = Instant::now();
            match &mut z.phase {
                Phase::First { next, backoff } => {
                    if *next > now {
                        continue;
                    }
                    match transfer_in(&z.slot, &link) {
                        Ok(()) => z.phase = Self::loaded(&z.slot),
                        Err(e) => {
                            clog::log(
                                Level::Warning,
                                Some("secondary"),
                                &format!(
                                    "All '{}' masters failed to transfer, retrying in {}: {e}",
                                    z.slot.origin_text(),
                                    format_go_duration(*backoff)
                                ),
                            );
                            *next = now + *backoff;
                            *backoff = (*backoff * 2).min(Duration::from_secs(10));
                        }
                    }
                }
                Phase::Loaded {
                    refresh,
                    retry,
                    expire,
                    next_refresh,
                    next_retry,
                    next_expire,
                    retrying,
                } => {
                    if *retrying && *next_expire <= now {
                        z.slot.expired.store(true, Ordering::Relaxed);
                        *next_expire = now + *expire;
                    }
                    if *retrying && *next_retry <= now {
                        *next_retry = now + *retry + jitter(2000);
                        let (ok, err) = should_transfer(&z.slot);
                        if let Some(e) = err {
                            log(Level::Warning, &format!("Failed retry check {e}"));
                            continue;
                        }
                        if !ok || transfer_in(&z.slot, &link).is_ok() {
                            z.phase = Self::loaded(&z.slot);
                        }
                        continue;
                    }
                    if *next_refresh <= now {
                        *next_refresh = now + *refresh + jitter(5000);
                        let (ok, err) = should_transfer(&z.slot);
                        if let Some(e) = err {
                            log(Level::Warning, &format!("Failed refresh check {e}"));
                            if !*retrying {
                                *next_retry = now + *retry;
                                *next_expire = now + *expire;
                            }
                            *retrying = true;
                            continue;
                        }
                        if ok && transfer_in(&z.slot, &link).is_err() {
                            if !*retrying {
                                *next_retry = now + *retry;
                                *next_expire = now + *expire;
                            }
                            *retrying = true;
                            continue;
                        }
                        z.phase = Self::loaded(&z.slot);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::file::tests::with_setup;

    fn s(text: &str) -> Result<SecondaryConfig, String> {
        with_setup(&["example.org."], text, setup).map_err(|e| e.to_string())
    }

    #[test]
    fn setup_cases() {
        let c = s("secondary {\n transfer from 10.0.0.1 [::1]:5353\n}").expect("ok");
        let slot = &c.server.table.load().order[0];
        assert_eq!(slot.transfer_from, vec!["10.0.0.1:53", "[::1]:5353"]);
        assert_eq!(
            s("secondary").expect_err("from"),
            "plugin/secondary: Corefile:1 - Error during parsing: secondary zones require a transfer from property"
        );
        assert!(
            s("secondary {\n transfer to 10.0.0.1\n}")
                .expect_err("to")
                .ends_with("unknown property to")
        );
        assert_eq!(
            s("secondary {\n transfer from *\n}").expect_err("star"),
            "plugin/secondary: can't use '*' in transfer from"
        );
        assert!(
            s("secondary {\n transfer from example.net\n}")
                .expect_err("ip")
                .ends_with("must specify an IP address: `example.net'")
        );
        assert!(
            s("secondary {\n foo\n}")
                .expect_err("prop")
                .ends_with("unknown property 'foo'")
        );
    }
}
