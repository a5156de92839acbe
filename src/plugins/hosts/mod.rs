//! *hosts*: answers A, AAAA and PTR from a hosts file and inline entries
//! (plugins.md E, with its verified points). Entries whose names are outside
//! the plugin's zones are dropped, PTR included; a name of the zones that is
//! not listed gives SERVFAIL unless `fallthrough` passes it on; no SOA ever.
//!
//! The file is re-read every `reload` (5 s) when its modification time or
//! size changed; the maps are immutable and swapped atomically. Lookups hash
//! the lowercase wire name and allocate nothing.
//!
//! CoreDNS: `plugin/hosts/hosts.go`, `hostsfile.go`, `setup.go`, `metrics.go`.

mod map;
#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use corefile::values::parse_go_duration_nanos;
use corefile::{Diagnostic, Dispenser};

use super::file::Fall;
use crate::chain::{Ctx, Flow, Status};
use crate::clog::{self, Level};
use crate::config::{SetupCtx, err_once};
use crate::metrics::{Families, add, contribute};
use crate::wire::{Name, flags};
use crate::zone::in_zone;
pub use map::HostsMap;

/// Parsed options and the inline entries.
pub struct HostsShared {
    path: String,
    origins: Vec<Name>,
    ttl: u32,
    auto_reverse: bool,
    reload: Duration,
    fall: Fall,
    fall_unsupported: bool,
    inline: HostsMap,
    file: ArcSwap<HostsMap>,
    stamp: Mutex<Option<(SystemTime, u64)>>,
    started: AtomicBool,
    stop: Mutex<Option<Sender<()>>>,
}

/// *hosts*' configuration.
#[derive(Clone)]
pub struct HostsConfig {
    shared: Arc<HostsShared>,
}

impl std::fmt::Debug for HostsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostsConfig")
            .field("path", &self.shared.path)
            .field("ttl", &self.shared.ttl)
            .finish_non_exhaustive()
    }
}

/// `coredns_hosts_entries` by file and `coredns_hosts_reload_timestamp_seconds`.
static METRICS: Mutex<(Vec<(String, usize)>, f64)> = Mutex::new((Vec::new(), 0.0));

fn set_entries(path: &str, n: usize) {
    let mut m = METRICS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match m.0.iter_mut().find(|(p, _)| p == path) {
        Some(e) => e.1 = n,
        None => m.0.push((path.to_owned(), n)),
    }
}

fn metrics(f: &mut Families) {
    let m = METRICS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for (p, n) in &m.0 {
        add(
            f,
            "coredns_hosts_entries",
            "The combined number of entries in hosts and Corefile.",
            "gauge",
            "",
            &[("hostsfile", p)],
            *n as f64,
        );
    }
    // Replaces the zero placeholder `always_present` wrote: one sample, the
    // last reload of any hosts file (CoreDNS's gauge is global).
    f.remove("coredns_hosts_reload_timestamp_seconds");
    add(
        f,
        "coredns_hosts_reload_timestamp_seconds",
        "The timestamp of the last reload of hosts file.",
        "gauge",
        "",
        &[],
        m.1,
    );
}

impl HostsShared {
    /// CoreDNS `readHosts`: re-parses the file when its mtime or size changed;
    /// a file that cannot be opened keeps the entries read before.
    fn read(&self) {
        let Ok(meta) = std::fs::metadata(&self.path) else {
            return;
        };
        let Ok(text) = std::fs::read(&self.path) else {
            return;
        };
        let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        let stamp = (mtime, meta.len());
        if let Ok(mut s) = self.stamp.lock() {
            if *s == Some(stamp) {
                return;
            }
            *s = Some(stamp);
        }
        let m = HostsMap::parse(&text, &self.origins, self.auto_reverse);
        clog::log(
            Level::Debug,
            Some("hosts"),
            &format!("Parsed hosts file into {} entries", m.len()),
        );
        set_entries(&self.path, self.inline.len() + m.len());
        if let Ok(mut g) = METRICS.lock() {
            g.1 = mtime
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
        }
        self.file.store(Arc::new(m));
    }

    fn start(self: &Arc<Self>) {
        if self.started.swap(true, Ordering::AcqRel) || self.reload.is_zero() {
            return;
        }
        let weak = Arc::downgrade(self);
        super::file::spawn_ticker("ringdns-hosts", self.reload, &self.stop, move || {
            weak.upgrade().map(|h| h.read()).is_some()
        });
    }
}

/// Setup (CoreDNS `hostsParse`).
pub fn setup(d: &mut Dispenser, ctx: &mut SetupCtx<'_>) -> Result<HostsConfig, Diagnostic> {
    let w = |e: Diagnostic| e.in_plugin("hosts");
    let mut path = "/etc/hosts".to_owned();
    let mut origins = ctx.zones.clone();
    let mut ttl = 3600u32;
    let mut auto_reverse = true;
    let mut reload = Duration::from_secs(5);
    let mut fall = Fall::default();
    let mut fall_unsupported = false;
    let mut inline: Vec<String> = Vec::new();
    let mut seen = false;
    while d.next() {
        if seen {
            return Err(w(err_once()));
        }
        seen = true;
        let mut args = d.remaining_args();
        if !args.is_empty() {
            path = super::file::rooted_path(&args.remove(0), ctx.settings.root.as_deref());
            match std::fs::metadata(&path) {
                Ok(m) if m.is_dir() => clog::log(
                    Level::Warning,
                    Some("hosts"),
                    &format!("Hosts file {path:?} is a directory"),
                ),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => clog::log(
                    Level::Warning,
                    Some("hosts"),
                    &format!("File does not exist: {path}"),
                ),
                Err(e) => {
                    return Err(w(d.err(format!(
                        "unable to access hosts file '{path}': stat {path}: {}",
                        crate::config::go_err(&e)
                    ))));
                }
            }
        }
        origins = ctx.origins(&args);
        while d.next_block() {
            match d.val() {
                "fallthrough" => fall = Fall::from_args(&d.remaining_args()),
                "fallthrough_unsupported" => {
                    if !d.remaining_args().is_empty() {
                        return Err(w(d.arg_err()));
                    }
                    fall_unsupported = true;
                }
                "no_reverse" => auto_reverse = false,
                "ttl" => {
                    let a = d.remaining_args();
                    let Some(v) = a.first() else {
                        return Err(w(d.err("ttl needs a time in second")));
                    };
                    let Some(v) = corefile::keys::go_atoi(v) else {
                        return Err(w(d.err("ttl needs a number of second")));
                    };
                    if v <= 0 || v > 65535 {
                        return Err(w(d.err("ttl provided is invalid")));
                    }
                    ttl = v as u32;
                }
                "reload" => {
                    let a = d.remaining_args();
                    if a.len() != 1 {
                        return Err(w(d.err("reload needs a duration (zero seconds to disable)")));
                    }
                    match parse_go_duration_nanos(&a[0]) {
                        Ok(n) if n < 0 => {
                            return Err(w(
                                d.err(format!("invalid negative duration for reload '{}'", a[0]))
                            ));
                        }
                        Ok(n) => reload = Duration::from_nanos(n as u64),
                        Err(_) => {
                            return Err(
                                w(d.err(format!("invalid duration for reload '{}'", a[0]))),
                            );
                        }
                    }
                }
                other => {
                    if !fall.is_set() {
                        let mut line = vec![other.to_owned()];
                        line.extend(d.remaining_args());
                        inline.push(line.join(" "));
                        continue;
                    }
                    return Err(w(d.err(format!("unknown property '{other}'"))));
                }
            }
        }
    }
    if fall_unsupported && !fall.is_set() {
        return Err(w(d.err("fallthrough_unsupported requires fallthrough")));
    }
    let origins: Vec<Name> = origins
        .iter()
        .filter_map(|o| Name::parse(o))
        .map(|n| n.to_lowercase())
        .collect();
    let inline = HostsMap::parse(inline.join("\n").as_bytes(), &origins, auto_reverse);
    let shared = Arc::new(HostsShared {
        path,
        origins,
        ttl,
        auto_reverse,
        reload,
        fall,
        fall_unsupported,
        inline,
        file: ArcSwap::from_pointee(HostsMap::default()),
        stamp: Mutex::new(None),
        started: AtomicBool::new(false),
        stop: Mutex::new(None),
    });
    shared.read();
    contribute(metrics);
    Ok(HostsConfig { shared })
}

/// The running plugin.
pub struct Hosts {
    shared: Arc<HostsShared>,
}

/// CoreDNS `dnsutil.ExtractAddressFromReverse`: the address of a reverse name
/// (four octets under `in-addr.arpa.`, 32 nibbles under `ip6.arpa.`).
pub fn address_from_reverse(qname: &Name) -> Option<IpAddr> {
    let labels: Vec<&[u8]> = qname.labels().collect();
    let n = labels.len();
    if n == 6 && labels[4] == b"in-addr" && labels[5] == b"arpa" {
        let mut o = [0u8; 4];
        for (i, l) in labels[..4].iter().enumerate() {
            let s = std::str::from_utf8(l).ok()?;
            // Go's `net.ParseIP` refuses leading zeros.
            if s.is_empty()
                || s.len() > 3
                || !s.bytes().all(|b| b.is_ascii_digit())
                || (s.len() > 1 && s.starts_with('0'))
            {
                return None;
            }
            o[3 - i] = s.parse().ok()?;
        }
        return Some(IpAddr::from(o));
    }
    if n == 34 && labels[32] == b"ip6" && labels[33] == b"arpa" {
        let mut v: u128 = 0;
        for l in labels[..32].iter().rev() {
            if l.len() != 1 {
                return None;
            }
            let d = (l[0] as char).to_digit(16)?;
            v = (v << 4) | u128::from(d);
        }
        return Some(IpAddr::from(v.to_be_bytes()));
    }
    None
}

impl Hosts {
    /// Builds it and starts the reloader.
    pub fn new(c: &HostsConfig) -> Self {
        c.shared.start();
        Self {
            shared: Arc::clone(&c.shared),
        }
    }

    /// The request hook (CoreDNS `Hosts.ServeDNS`).
    pub fn serve(&self, ctx: &mut Ctx<'_>) -> Flow {
        let h = &*self.shared;
        let qname = ctx.req.qname.to_lowercase();
        let qtype = ctx.req.qtype;
        let in_zones = h.origins.iter().any(|o| in_zone(qname.wire(), o.wire()));
        if !in_zones && qtype != 12 {
            return Flow::Next;
        }
        let file = h.file.load();
        let maps = [&**file, &h.inline];
        let ttl = h.ttl;
        let mut any = false;
        match qtype {
            12 => {
                let Some(addr) = address_from_reverse(&qname) else {
                    return Flow::Next;
                };
                if maps.iter().all(|m| m.ptr(&addr).is_empty()) {
                    return Flow::Next;
                }
                let mut b = ctx.reply();
                b.set_flags(flags::AA);
                for m in maps {
                    for n in m.ptr(&addr) {
                        b.rr(&qname, 12, 1, ttl, n.wire());
                    }
                }
                b.finish();
                ctx.written = true;
                return Flow::Return(Status::rcode(0));
            }
            1 | 28 => {
                any = maps.iter().any(|m| m.has(&qname, qtype));
            }
            _ => {
                if h.fall_unsupported && h.fall.through(&qname) {
                    return Flow::Next;
                }
            }
        }
        if !any && !maps.iter().any(|m| m.has(&qname, 1) || m.has(&qname, 28)) {
            if h.fall.through(&qname) {
                return Flow::Next;
            }
            return Flow::Return(Status::rcode(2));
        }
        let mut b = ctx.reply();
        b.set_flags(flags::AA);
        if any {
            for m in maps {
                m.each_addr(&qname, qtype, |rd| b.rr(&qname, qtype, 1, ttl, rd));
            }
        }
        b.finish();
        ctx.written = true;
        Flow::Return(Status::rcode(0))
    }
}
