//! *auto*: serves every zone file of a directory whose name matches a
//! regular expression, the origin built from a template (`db\.(.*)` and
//! `{1}` by default); the directory is walked again every `reload`
//! interval: new files are loaded, zones whose file disappeared are dropped,
//! changed serials are reloaded (plugins.md E). Answers exactly as *file*.
//!
//! CoreDNS: `plugin/auto/auto.go`, `setup.go`, `walk.go`, `zone.go`.

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use corefile::{Diagnostic, Dispenser};
use regex::Regex;

use super::file::{Answering, Fall, ZoneSlot, ZoneTable};
use super::transfer::link::{self, BlockLink, Outgoing, ZoneSource};
use crate::chain::{Ctx, Flow, Status};
use crate::clog::{self, Level};
use crate::config::SetupCtx;
use crate::wire::Name;
use crate::zone::lookup::Fetched;
use crate::zone::{self, in_zone};

/// Longest regular expression accepted (CoreDNS `maxRegexpLen`).
const MAX_REGEXP_LEN: usize = 10_000;

/// The shared state of one *auto* instance.
pub struct AutoShared {
    origins: Vec<Name>,
    directory: String,
    re: Regex,
    template: String,
    reload: Duration,
    table: ArcSwap<ZoneTable>,
    has_next: Arc<AtomicBool>,
    link: Arc<BlockLink>,
    started: AtomicBool,
    stop: Mutex<Option<Sender<()>>>,
}

/// *auto*'s configuration.
#[derive(Clone)]
pub struct AutoConfig {
    shared: Arc<AutoShared>,
}

impl std::fmt::Debug for AutoConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AutoConfig")
            .field("directory", &self.shared.directory)
            .field("reload", &self.shared.reload)
            .finish_non_exhaustive()
    }
}

impl ZoneSource for AutoShared {
    fn transfer_zone(&self, zone: &Name, _serial: u32) -> Option<Result<Outgoing, ()>> {
        let t = self.table.load();
        let s = t.get(zone)?;
        Some(s.data.load_full().map(Outgoing::Zone).ok_or(()))
    }
}

/// CoreDNS `rewriteToExpand`: `{1}` → `${1}`.
fn rewrite_to_expand(t: &str) -> String {
    t.replace('{', "${")
}

/// Setup (CoreDNS `autoParse`).
pub fn setup(d: &mut Dispenser, ctx: &mut SetupCtx<'_>) -> Result<AutoConfig, Diagnostic> {
    let w = |e: Diagnostic| e.in_plugin("auto");
    let mut origins = ctx.zones.clone();
    let mut directory = String::new();
    let mut re =
        crate::goregex::compile(r"db\.(.*)").map_err(|e| w(Diagnostic::plain(e.to_string())))?;
    let mut template = "${1}".to_owned();
    let mut reload: Option<Duration> = None;
    let root = ctx.settings.root.clone();
    while d.next() {
        let args = d.remaining_args();
        origins = ctx.origins(&args);
        while d.next_block() {
            match d.val() {
                "directory" => {
                    if !d.next_arg() {
                        return Err(w(d.arg_err()));
                    }
                    directory = super::file::rooted_path(d.val(), root.as_deref());
                    match std::fs::metadata(&directory) {
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => clog::log(
                            Level::Warning,
                            Some("auto"),
                            &format!("Directory does not exist: {directory}"),
                        ),
                        Err(e) => {
                            return Err(w(d.err(format!(
                                "Unable to access root path '{directory}': stat {directory}: {}",
                                crate::config::go_err(&e)
                            ))));
                        }
                    }
                    if d.next_arg() {
                        if d.val().len() > MAX_REGEXP_LEN {
                            return Err(w(d.err("regexp too large")));
                        }
                        re = crate::goregex::compile(d.val())
                            .map_err(|e| w(Diagnostic::plain(e.to_string())))?;
                        if re.captures_len() <= 1 {
                            return Err(w(d.err("Need at least one sub expression")));
                        }
                        if !d.next_arg() {
                            return Err(w(d.arg_err()));
                        }
                        template = rewrite_to_expand(d.val());
                    }
                    if d.next_arg() {
                        return Err(w(d.arg_err()));
                    }
                }
                "reload" => {
                    let v = super::file::reload_duration(d, "file").map_err(|e| {
                        // CoreDNS says "invalid duration" for a negative value.
                        match e.to_string().contains("negative") {
                            true => Diagnostic::plain("invalid duration").in_plugin("file"),
                            false => e,
                        }
                    });
                    reload = Some(v.map_err(w)?);
                }
                "upstream" => {
                    d.remaining_args();
                }
                other => return Err(w(d.err(format!("unknown property '{other}'")))),
            }
        }
    }
    let link = link::for_block(ctx);
    let shared = Arc::new(AutoShared {
        origins: origins
            .iter()
            .filter_map(|o| Name::parse(o))
            .map(|n| n.to_lowercase())
            .collect(),
        directory,
        re,
        template,
        reload: reload.unwrap_or(Duration::from_secs(60)),
        table: ArcSwap::from_pointee(ZoneTable::default()),
        has_next: link.follower_flag(),
        link: Arc::clone(&link),
        started: AtomicBool::new(false),
        stop: Mutex::new(None),
    });
    let src: Arc<dyn ZoneSource> = shared.clone();
    link.add_source(Arc::downgrade(&src));
    Ok(AutoConfig { shared })
}

/// Files below `dir`, recursively, in lexical order (Go `filepath.Walk`): paths
/// are `dir` joined and cleaned as Go's `filepath.Join`, and entries are typed
/// without following links (a link to a directory is not walked into).
fn walk_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = rd
        .filter_map(|e| {
            e.ok()
                .map(|e| corefile::parse::clean(&dir.join(e.file_name())))
        })
        .collect();
    entries.sort();
    for p in entries {
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => walk_files(&p, out),
            Ok(_) => out.push(p),
            Err(e) => clog::log(
                Level::Warning,
                Some("auto"),
                &format!(
                    "error reading {}: {}",
                    p.display(),
                    crate::config::go_err(&e)
                ),
            ),
        }
    }
}

/// Go `filepath.EvalSymlinks`: `p` with every link resolved, cleaned. A relative
/// path stays relative unless a link leads to an absolute one.
fn eval_symlinks(p: &Path) -> std::io::Result<PathBuf> {
    use std::collections::VecDeque;
    use std::path::Component;
    let parts = |p: &Path| -> Vec<std::ffi::OsString> {
        p.components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n.to_owned()),
                Component::ParentDir => Some("..".into()),
                _ => None,
            })
            .collect()
    };
    let mut rest: VecDeque<std::ffi::OsString> = parts(p).into();
    let mut dest = if p.is_absolute() {
        PathBuf::from("/")
    } else {
        PathBuf::new()
    };
    let mut links = 0;
    while let Some(c) = rest.pop_front() {
        if c == ".." {
            match dest.components().next_back() {
                Some(Component::Normal(_)) => {
                    dest.pop();
                }
                Some(Component::RootDir) => {}
                _ => dest.push(".."),
            }
            continue;
        }
        dest.push(&c);
        let m = std::fs::symlink_metadata(&dest)?;
        if !m.file_type().is_symlink() {
            if !m.is_dir() && !rest.is_empty() {
                return Err(std::io::Error::from(nix::errno::Errno::ENOTDIR));
            }
            continue;
        }
        links += 1;
        if links > 255 {
            return Err(std::io::Error::other("EvalSymlinks: too many links"));
        }
        let link = std::fs::read_link(&dest)?;
        for c in parts(&link).into_iter().rev() {
            rest.push_front(c);
        }
        if link.is_absolute() {
            dest = PathBuf::from("/");
        } else {
            dest.pop();
        }
    }
    Ok(corefile::parse::clean(&dest))
}

impl AutoShared {
    /// The origin a file name gives, if it matches (CoreDNS `matches`).
    fn origin_of(&self, base: &str) -> Option<String> {
        let caps = self.re.captures(base)?;
        let mut out = String::new();
        caps.expand(&self.template, &mut out);
        Some(corefile::keys::fqdn(&out))
    }

    /// CoreDNS `Auto.Walk`: loads new zones, keeps known ones (their file
    /// may move), drops zones whose file is gone.
    fn walk(&self) {
        // Links resolved, as CoreDNS (a Kubernetes ConfigMap mount is one), but a
        // relative directory stays relative in the paths logged.
        let dir = eval_symlinks(Path::new(&self.directory))
            .unwrap_or_else(|_| PathBuf::from(&self.directory));
        let mut files = Vec::new();
        walk_files(&dir, &mut files);
        let old = self.table.load_full();
        let mut table = ZoneTable::default();
        let mut seen: Vec<(String, String)> = Vec::new();
        for p in files {
            let Some(base) = p.file_name().and_then(|b| b.to_str()) else {
                continue;
            };
            let Some(origin) = self.origin_of(base) else {
                continue;
            };
            let clean = p.to_string_lossy().into_owned();
            if let Some((_, prev)) = seen.iter().find(|(o, _)| *o == origin) {
                if *prev != clean {
                    clog::log(
                        Level::Warning,
                        Some("auto"),
                        &format!(
                            "Multiple zone files match origin {origin:?}: using {prev:?} instead of {clean:?}"
                        ),
                    );
                }
                continue;
            }
            seen.push((origin.clone(), clean.clone()));
            let Some(name) = Name::parse(&origin) else {
                continue;
            };
            if let Some(s) = old.get(&name.to_lowercase()) {
                if let Ok(mut f) = s.file.lock() {
                    *f = clean;
                }
                table.insert(Arc::clone(s));
                continue;
            }
            match zone::load_file(&clean, &name, None) {
                Ok(z) => {
                    super::file::log_skipped(&z);
                    let mut slot = ZoneSlot::new(&name, &clean);
                    slot.reload = self.reload;
                    slot.data.store(Some(Arc::new(z)));
                    table.insert(Arc::new(slot));
                    clog::log(
                        Level::Info,
                        Some("auto"),
                        &format!("Inserting zone `{origin}' from: {clean}"),
                    );
                }
                Err(e) => clog::log(
                    Level::Warning,
                    Some("auto"),
                    &format!(
                        "Parse zone `{origin}': {}",
                        super::file::load_error_text(&e, &clean, &origin)
                    ),
                ),
            }
        }
        for s in &old.order {
            if table.get(&s.origin).is_none() {
                clog::log(
                    Level::Info,
                    Some("auto"),
                    &format!("Deleting zone `{}'", s.origin_text()),
                );
            }
        }
        self.table.store(Arc::new(table));
    }

    /// CoreDNS `Auto.Notify` after each walk.
    fn notify(&self) {
        let names = self
            .table
            .load()
            .order
            .iter()
            .map(|s| s.origin.clone())
            .collect();
        super::transfer::notify::notify_zones_async(&self.link, names);
    }

    fn start(self: &Arc<Self>) {
        if self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        self.walk();
        self.notify();
        if self.reload.is_zero() {
            return;
        }
        let weak = Arc::downgrade(self);
        super::file::spawn_ticker("ringdns-auto", self.reload, &self.stop, move || {
            let Some(a) = weak.upgrade() else {
                return false;
            };
            // Known zones reload on a changed serial, then the directory is walked.
            for s in a.table.load().order.iter() {
                super::file::reload_slot(s, &a.link);
            }
            a.walk();
            a.notify();
            true
        });
    }
}

/// The running plugin.
pub struct Auto {
    shared: Arc<AutoShared>,
}

impl Auto {
    /// Builds it: the first walk and the walker thread start here.
    pub fn new(c: &AutoConfig) -> Self {
        c.shared.start();
        Self {
            shared: Arc::clone(&c.shared),
        }
    }

    /// The request hook (CoreDNS `Auto.ServeDNS`).
    pub fn serve(&self, ctx: &mut Ctx<'_>) -> Flow {
        self.serve_with(ctx, None).unwrap_or(Flow::Park)
    }

    /// The parked half: a CNAME target only the server can answer.
    pub async fn serve_async(&self, ctx: &mut Ctx<'_>) -> Flow {
        super::file::serve_fetching(ctx, |ctx, f| self.serve_with(ctx, f)).await
    }

    fn serve_with(&self, ctx: &mut Ctx<'_>, fetched: Option<Fetched>) -> Answering {
        let a = &*self.shared;
        let qname = ctx.req.qname.to_lowercase();
        if !a.origins.iter().any(|o| in_zone(qname.wire(), o.wire())) {
            return Ok(Flow::Next);
        }
        let table = a.table.load();
        let Some(slot) = table.find(&qname) else {
            if !a.has_next.load(Ordering::Relaxed) {
                return Ok(Flow::Return(Status::rcode(5)));
            }
            return Ok(Flow::Next);
        };
        let Some(zone) = slot.data.load_full() else {
            return Ok(Flow::Return(Status::rcode(2)));
        };
        if matches!(ctx.req.qtype, 251 | 252) {
            return Ok(Flow::Return(Status::rcode(5)));
        }
        let fall = Fall::default();
        super::file::answer(ctx, &zone, &table, &qname, &fall, fetched)
    }
}
