//! *secondary*: zones transferred in (AXFR over TCP) from primaries and kept
//! in memory, refreshed from the SOA's refresh/retry/expire timers and on
//! NOTIFY from a primary; answered exactly as *file* answers (plugins.md E).
//! An expired zone answers SERVFAIL. A `catalog` zone (RFC 9432) brings its
//! member zones ([`catalog`]).
//!
//! CoreDNS: `plugin/secondary/{setup,catalog,zones}.go`,
//! `plugin/file/secondary.go`, `plugin/file/notify.go`,
//! `plugin/pkg/catalog/catalog.go`.

pub mod catalog;
pub mod xfr;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, Weak};
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
    /// `catalog`: the catalog zones and the member zones each accepts (empty:
    /// every member).
    catalogs: Vec<(Name, Vec<Name>)>,
}

/// CoreDNS's `mergeCatalogMemberZones`: a second `catalog` line for the same
/// zone adds its member zones; either line without any accepts every member.
fn merge_members(catalogs: &mut Vec<(Name, Vec<Name>)>, origin: &Name, zones: &[Name]) {
    match catalogs.iter_mut().find(|(o, _)| o == origin) {
        Some((_, existing)) if existing.is_empty() || zones.is_empty() => existing.clear(),
        Some((_, existing)) => {
            for z in zones {
                if !existing.contains(z) {
                    existing.push(z.clone());
                }
            }
        }
        None => {
            let mut first: Vec<Name> = Vec::new();
            for z in zones {
                if !first.contains(z) {
                    first.push(z.clone());
                }
            }
            catalogs.push((origin.clone(), first));
        }
    }
}

/// Setup (CoreDNS `secondaryParse`).
pub fn setup(d: &mut Dispenser, ctx: &mut SetupCtx<'_>) -> Result<SecondaryConfig, Diagnostic> {
    let w = |e: Diagnostic| e.in_plugin("secondary");
    let mut table = ZoneTable::default();
    let mut fall = Fall::default();
    let mut catalogs: Vec<(Name, Vec<Name>)> = Vec::new();
    while d.next() {
        let args = d.remaining_args();
        let origins = ctx.origins(&args);
        let names: Vec<Name> = origins.iter().filter_map(|o| Name::parse(o)).collect();
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
                    let mut zones = Vec::new();
                    for a in d.remaining_args() {
                        let n: Vec<Name> = ctx
                            .origins(std::slice::from_ref(&a))
                            .iter()
                            .filter_map(|o| Name::parse(o))
                            .map(|n| n.to_lowercase())
                            .collect();
                        if n.is_empty() {
                            return Err(w(Diagnostic::plain(format!(
                                "invalid catalog member zone {}",
                                corefile::values::go_quote(&a)
                            ))));
                        }
                        zones.extend(n);
                    }
                    for o in &names {
                        merge_members(&mut catalogs, &o.to_lowercase(), &zones);
                    }
                }
                "fallthrough" => fall = Fall::from_args(&d.remaining_args()),
                other => return Err(w(d.err(format!("unknown property '{other}'")))),
            }
        }
        if !has_transfer {
            return Err(w(d.err("secondary zones require a transfer from property")));
        }
        for origin in &names {
            let mut slot = ZoneSlot::new(origin, "stdin");
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
            catalogs,
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
                let server = Arc::downgrade(&c.server);
                let catalogs = c.runtime.catalogs.clone();
                let _ = std::thread::Builder::new()
                    .name("ringdns-secondary".into())
                    .spawn(move || Updater::new(slots, link, server, catalogs).run(&rx));
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

/// A check of the transferred records before the zone goes live.
type Validate<'a> = &'a mut dyn FnMut(&[catalog::Rec]) -> Result<(), String>;

/// CoreDNS `TransferInWithRecords`: the first primary that transfers wins;
/// with `validate`, its records must pass before the zone goes live (a
/// failure is returned, not logged, as in CoreDNS).
fn transfer_in(
    slot: &ZoneSlot,
    link: &BlockLink,
    mut validate: Option<Validate<'_>>,
) -> Result<(), String> {
    let origin = slot.origin_text();
    let mut last = String::from("no primaries");
    let mut kept = Vec::new();
    for p in &slot.transfer_from {
        kept.clear();
        let keep = validate.is_some().then_some(&mut kept);
        match xfr::axfr(p, &slot.origin, keep) {
            Ok(z) => {
                if let Some(v) = validate.as_deref_mut() {
                    v(&kept)?;
                }
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

/// CoreDNS `Secondary.transferIn`: a catalog zone's records are parsed before
/// it goes live, and the catalog comes back to be applied.
fn transfer(
    slot: &ZoneSlot,
    link: &BlockLink,
    catalogs: &[(Name, Vec<Name>)],
) -> Result<Option<catalog::Catalog>, String> {
    if !catalogs.iter().any(|(o, _)| *o == slot.origin) {
        return transfer_in(slot, link, None).map(|()| None);
    }
    let mut parsed = None;
    transfer_in(
        slot,
        link,
        Some(&mut |rrs: &[catalog::Rec]| {
            parsed = Some(catalog::parse(&slot.origin, rrs)?);
            Ok(())
        }),
    )?;
    Ok(parsed)
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

impl Zone {
    /// A zone before its first transfer, due now.
    fn first(slot: Arc<ZoneSlot>) -> Self {
        Self {
            slot,
            phase: Phase::First {
                next: Instant::now(),
                backoff: Duration::from_millis(250),
            },
        }
    }
}

/// A member zone a catalog added: which catalog, under which member ID.
struct Dynamic {
    catalog: Name,
    id: String,
}

struct Updater {
    zones: Vec<Zone>,
    link: Arc<BlockLink>,
    /// The served table, where catalog member zones come and go.
    server: Weak<ZoneServer>,
    /// `catalog`: the catalog zones and the member zones each accepts.
    catalogs: Vec<(Name, Vec<Name>)>,
    /// The last parse of each catalog (by origin's wire form).
    parsed: HashMap<Vec<u8>, catalog::Catalog>,
    /// Member zones added by a catalog (by zone's wire form).
    dynamic: HashMap<Vec<u8>, Dynamic>,
    /// Each catalog's member zones (CoreDNS's `catalogMemberZones`).
    members: HashMap<Vec<u8>, Vec<Name>>,
}

impl Updater {
    fn new(
        slots: Vec<Arc<ZoneSlot>>,
        link: Arc<BlockLink>,
        server: Weak<ZoneServer>,
        catalogs: Vec<(Name, Vec<Name>)>,
    ) -> Self {
        let zones = slots
            .into_iter()
            .filter(|s| !s.transfer_from.is_empty())
            .map(Zone::first)
            .collect();
        Self {
            zones,
            link,
            server,
            catalogs,
            parsed: HashMap::new(),
            dynamic: HashMap::new(),
            members: HashMap::new(),
        }
    }

    /// CoreDNS `applyCatalog` after a catalog zone's transfer: member zones
    /// added (transferred from the catalog's primaries), reset when their
    /// member ID changed, taken over from another catalog that names this one
    /// in its `coo` property, and removed when no longer listed.
    fn apply(&mut self, cat_slot: &ZoneSlot, cat: catalog::Catalog) {
        let origin = cat_slot.origin.clone();
        let Some(server) = self.server.upgrade() else {
            return;
        };
        let allowed = self
            .catalogs
            .iter()
            .find(|(o, _)| *o == origin)
            .map(|(_, z)| z.clone())
            .unwrap_or_default();
        let mut table = (**server.table.load()).clone();
        let mut listed: Vec<Name> = Vec::new();
        let mut rejected = 0usize;
        for m in &cat.members {
            if !allowed.is_empty() && !allowed.iter().any(|z| m.zone.is_subdomain_of(z)) {
                rejected += 1;
                continue;
            }
            listed.push(m.zone.clone());
            let Some(existing) = table.get(&m.zone).cloned() else {
                self.install(&mut table, m, &origin, cat_slot, None);
                log_as(
                    Level::Info,
                    &format!("Added catalog member zone {} from catalog {origin}", m.zone),
                );
                continue;
            };
            let skip = || {
                log_as(
                    Level::Warning,
                    &format!(
                        "Skipping catalog member zone {} from {origin}: zone already exists",
                        m.zone
                    ),
                );
            };
            let Some(d) = self.dynamic.get(m.zone.wire()) else {
                skip();
                continue;
            };
            if d.catalog == origin {
                if d.id != m.id {
                    let prev = d.id.clone();
                    self.install(&mut table, m, &origin, cat_slot, None);
                    log_as(
                        Level::Info,
                        &format!(
                            "Reset catalog member zone {} from {origin} after member ID changed from {prev} to {}",
                            m.zone, m.id
                        ),
                    );
                }
                continue;
            }
            let from = d.catalog.clone();
            let held_id = d.id.clone();
            let source = self
                .parsed
                .get(from.wire())
                .and_then(|c| c.member(&m.zone))
                .cloned();
            let Some(source) = source.filter(|s| s.coo.as_ref() == Some(&origin)) else {
                skip();
                continue;
            };
            let preserved = held_id == source.id && source.id == m.id;
            self.install(
                &mut table,
                m,
                &origin,
                cat_slot,
                preserved.then_some(&*existing),
            );
            let text = if preserved {
                format!(
                    "Migrated catalog member zone {} from catalog {from} to {origin}, preserving state for member ID {}",
                    m.zone, source.id
                )
            } else {
                format!(
                    "Migrated catalog member zone {} from catalog {from} to {origin} with state reset after member identity changed from {} to {}",
                    m.zone, source.id, m.id
                )
            };
            log_as(Level::Info, &text);
        }
        for z in self.members.remove(origin.wire()).unwrap_or_default() {
            if listed.contains(&z) {
                continue;
            }
            if self
                .dynamic
                .get(z.wire())
                .is_some_and(|d| d.catalog == origin)
            {
                self.dynamic.remove(z.wire());
                table.remove(&z);
                self.zones.retain(|x| x.slot.origin != z);
                log_as(
                    Level::Info,
                    &format!("Removed catalog member zone {z} from catalog {origin}"),
                );
            }
        }
        self.members.insert(origin.wire().to_vec(), listed);
        server.table.store(Arc::new(table));
        if rejected > 0 {
            log_as(
                Level::Warning,
                &format!(
                    "Skipped {rejected} member zones from catalog {origin}: outside configured member zones"
                ),
            );
        }
        log_as(
            Level::Info,
            &format!(
                "Parsed catalog zone {origin} with {} member zones",
                cat.members.len()
            ),
        );
    }

    /// CoreDNS `replaceDynamicZoneLocked`: a new slot for member `m`, with
    /// the catalog's primaries and, when migrating, the old slot's data; its
    /// first transfer is due now.
    fn install(
        &mut self,
        table: &mut ZoneTable,
        m: &catalog::Member,
        origin: &Name,
        cat_slot: &ZoneSlot,
        preserve: Option<&ZoneSlot>,
    ) {
        let mut slot = ZoneSlot::new(&m.zone, "stdin");
        slot.transfer_from = cat_slot.transfer_from.clone();
        if let Some(p) = preserve {
            slot.data.store(p.data.load_full());
            slot.expired
                .store(p.expired.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        let slot = Arc::new(slot);
        table.insert(Arc::clone(&slot));
        self.zones.retain(|z| z.slot.origin != m.zone);
        self.zones.push(Zone::first(slot));
        self.dynamic.insert(
            m.zone.wire().to_vec(),
            Dynamic {
                catalog: origin.clone(),
                id: m.id.clone(),
            },
        );
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
        let mut applied = None;
        if ok {
            match transfer(&z.slot, &link, &self.catalogs) {
                Ok(cat) => {
                    z.phase = Self::loaded(&z.slot);
                    applied = cat.map(|c| (Arc::clone(&z.slot), c));
                }
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
        if let Some((slot, cat)) = applied {
            self.apply_parsed(&slot, cat);
        }
    }

    fn tick(&mut self) {
        let link = Arc::clone(&self.link);
        let mut i = 0;
        while i < self.zones.len() {
            if let Some((slot, cat)) = self.step(i, &link) {
                // Applied at once, as CoreDNS applies a catalog right after its
                // transfer; the members it adds are due now, later in this pass.
                self.apply_parsed(&slot, cat);
            }
            i += 1;
        }
    }

    /// Zone `i`'s timers; a catalog it transferred comes back to be applied.
    fn step(&mut self, i: usize, link: &BlockLink) -> Option<(Arc<ZoneSlot>, catalog::Catalog)> {
        let mut applied = None;
        let catalogs = &self.catalogs;
        let z = &mut self.zones[i];
        let mut fetch = |slot: &Arc<ZoneSlot>| -> Result<(), String> {
            if let Some(c) = transfer(slot, link, catalogs)? {
                applied = Some((Arc::clone(slot), c));
            }
            Ok(())
        };
        let now = Instant::now();
        match &mut z.phase {
            Phase::First { next, backoff } => {
                if *next > now {
                    return applied;
                }
                match fetch(&z.slot) {
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
                        return applied;
                    }
                    if !ok || fetch(&z.slot).is_ok() {
                        z.phase = Self::loaded(&z.slot);
                    }
                    return applied;
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
                        return applied;
                    }
                    if ok && fetch(&z.slot).is_err() {
                        if !*retrying {
                            *next_retry = now + *retry;
                            *next_expire = now + *expire;
                        }
                        *retrying = true;
                        return applied;
                    }
                    z.phase = Self::loaded(&z.slot);
                }
            }
        }
        applied
    }

    /// Keeps a catalog's parse (for other catalogs' `coo` checks) and applies it.
    fn apply_parsed(&mut self, slot: &ZoneSlot, cat: catalog::Catalog) {
        self.parsed.insert(slot.origin.wire().to_vec(), cat.clone());
        self.apply(slot, cat);
    }
}

/// Lines of *secondary* itself (catalogs, the first transfer's retries).
fn log_as(level: Level, msg: &str) {
    clog::log(level, Some("secondary"), msg);
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

    /// `catalog [MEMBER-ZONES...]` (CoreDNS `catalogMemberZonesFromArgs` and
    /// `mergeCatalogMemberZones`).
    #[test]
    fn catalog_setup() {
        let members = |text: &str| -> Vec<(String, Vec<String>)> {
            s(text)
                .expect("ok")
                .runtime
                .catalogs
                .iter()
                .map(|(o, z)| (o.to_string(), z.iter().map(ToString::to_string).collect()))
                .collect()
        };
        let t = "secondary {\n transfer from 10.0.0.1\n";
        assert!(members(&format!("{t}}}")).is_empty());
        assert_eq!(
            members(&format!("{t} catalog\n}}")),
            [("example.org.".to_owned(), vec![])]
        );
        assert_eq!(
            members(&format!(
                "{t} catalog A.example b.example\n catalog c.example a.example\n}}"
            )),
            [(
                "example.org.".to_owned(),
                vec![
                    "a.example.".to_owned(),
                    "b.example.".to_owned(),
                    "c.example.".to_owned()
                ]
            )]
        );
        // A line without member zones accepts all of them.
        assert_eq!(
            members(&format!("{t} catalog a.example\n catalog\n}}")),
            [("example.org.".to_owned(), vec![])]
        );
        assert_eq!(
            s(&format!("{t} catalog example.net:\n}}")).expect_err("bad"),
            "plugin/secondary: invalid catalog member zone \"example.net:\""
        );
    }
}
