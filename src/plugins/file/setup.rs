//! *file* setup (CoreDNS `plugin/file/setup.go` `fileParse`): `file DBFILE
//! [ZONES...] { reload DURATION; reload_by_mtime; fallthrough [ZONES...];
//! upstream }`, repeatable. Zones are loaded here, as CoreDNS does, so a
//! broken zone file fails startup (and a reload keeps the old config).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use corefile::values::{format_go_duration, parse_go_duration_nanos};
use corefile::{Diagnostic, Dispenser};

use super::{Fall, ZoneServer, ZoneSlot, ZoneTable, reload};
use crate::clog::{self, Level};
use crate::config::{SetupCtx, go_err};
use crate::plugins::transfer::link;
use crate::wire::Name;
use crate::zone::{self, LoadError};

/// *file*'s configuration: the loaded zones, shared with the running plugin.
#[derive(Clone)]
pub struct FileConfig {
    pub(crate) server: Arc<ZoneServer>,
    runtime: Arc<reload::Runtime>,
}

impl std::fmt::Debug for FileConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileConfig")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl FileConfig {
    /// Starts reloading and sends the startup NOTIFYs (once).
    pub(crate) fn start(&self) {
        self.runtime.start(&self.server);
    }

    /// The zones (tests).
    pub fn zones(&self) -> Vec<Arc<ZoneSlot>> {
        self.server.table.load().order.clone()
    }
}

/// `failed to parse …` as CoreDNS's `Parse` words it.
pub(crate) fn load_error_text(e: &LoadError, file: &str, origin: &str) -> String {
    match e {
        LoadError::Parse(p) => {
            format!("failed to parse file {file:?} for origin {origin} with error {p}")
        }
        other => other.to_string(),
    }
}

/// Logs the records a load skipped (outside the zone), as the file package
/// (for *auto*'s zones too).
pub(crate) fn log_skipped(z: &zone::Zone) {
    for (file, line, owner) in z.skipped.iter().take(10) {
        clog::log(
            Level::Warning,
            Some("file"),
            &format!(
                "{file}:{line}: out-of-zone record {owner:?} ignored for origin {}",
                z.origin()
            ),
        );
    }
    if z.skipped.len() > 10 {
        clog::log(
            Level::Warning,
            Some("file"),
            &format!(
                "{} more out-of-zone records ignored for origin {}",
                z.skipped.len() - 10,
                z.origin()
            ),
        );
    }
}

/// A path relative to `root` (CoreDNS: `filepath.Join(config.Root, f)`, which
/// cleans the result, for relative names when `root` is set).
pub(crate) fn rooted(path: &str, root: Option<&str>) -> String {
    match root.filter(|r| !r.is_empty()) {
        Some(r) if !Path::new(path).is_absolute() => {
            corefile::parse::clean(&Path::new(r).join(path))
                .to_string_lossy()
                .into_owned()
        }
        _ => path.to_owned(),
    }
}

/// Parses a `reload` duration as the file plugin does (`plugin/file: ` twice
/// on a bad value, CoreDNS wraps it twice).
pub(crate) fn reload_duration(d: &mut Dispenser, plugin: &str) -> Result<Duration, Diagnostic> {
    let args = d.remaining_args();
    let Some(v) = args.first() else {
        return Err(Diagnostic::plain("reload duration value is expected"));
    };
    match parse_go_duration_nanos(v) {
        Ok(n) if n >= 0 => Ok(Duration::from_nanos(n as u64)),
        Ok(_) => Err(Diagnostic::plain(format!("negative duration {v}")).in_plugin(plugin)),
        Err(e) => Err(Diagnostic::plain(e).in_plugin(plugin)),
    }
}

/// Setup.
pub fn setup(d: &mut Dispenser, ctx: &mut SetupCtx<'_>) -> Result<FileConfig, Diagnostic> {
    let w = |e: Diagnostic| e.in_plugin("file");
    let mut table = ZoneTable::default();
    let mut fall = Fall::default();
    let mut reload = Duration::from_secs(60);
    let mut open_err: Option<String> = None;
    let root = ctx.settings.root.clone();
    while d.next() {
        if !d.next_arg() {
            return Err(w(d.arg_err()));
        }
        let file = rooted(d.val(), root.as_deref());
        let args = d.remaining_args();
        let origins = ctx.origins(&args);
        let readable = std::fs::File::open(&file)
            .map(|_| ())
            .map_err(|e| go_err(&e));
        if let Err(e) = &readable {
            open_err = Some(format!("open {file}: {e}"));
        }
        let mut slots = Vec::new();
        for o in &origins {
            let Some(origin) = Name::parse(o) else {
                return Err(w(Diagnostic::plain(format!("invalid zone {o:?}"))));
            };
            let slot = ZoneSlot::new(&origin, &file);
            if readable.is_ok() {
                let z = zone::load_file(&file, &origin, None)
                    .map_err(|e| w(Diagnostic::plain(load_error_text(&e, &file, o))))?;
                log_skipped(&z);
                slot.data.store(Some(Arc::new(z)));
            }
            slots.push(slot);
        }
        let mut by_mtime = false;
        while d.next_block() {
            match d.val() {
                "fallthrough" => fall = Fall::from_args(&d.remaining_args()),
                "reload" => reload = reload_duration(d, "file").map_err(w)?,
                "reload_by_mtime" => by_mtime = true,
                "upstream" => {
                    d.remaining_args();
                }
                other => return Err(w(d.err(format!("unknown property '{other}'")))),
            }
        }
        for mut s in slots {
            s.reload = reload;
            s.by_mtime = by_mtime;
            if by_mtime {
                if let Ok(m) = std::fs::metadata(&file).and_then(|m| m.modified()) {
                    s.mtime = Mutex::new(Some(m));
                }
            }
            table.insert(Arc::new(s));
        }
    }
    if let Some(e) = open_err {
        if reload.is_zero() {
            return Err(w(Diagnostic::plain(e)));
        }
        clog::log(
            Level::Warning,
            Some("file"),
            &format!(
                "Failed to open {e:?}: trying again in {}",
                format_go_duration(reload)
            ),
        );
    }
    let link = link::for_block(ctx);
    let server = Arc::new(ZoneServer {
        table: ArcSwap::from_pointee(table),
        fall,
        has_next: link.follower_flag(),
        link: Arc::clone(&link),
        notify_in: None,
    });
    let src: Arc<dyn link::ZoneSource> = server.clone();
    link.add_source(Arc::downgrade(&src));
    Ok(FileConfig {
        server,
        runtime: Arc::new(reload::Runtime::default()),
    })
}
