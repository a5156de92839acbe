//! Periodic reload of file zones (CoreDNS `plugin/file/reload.go`): every
//! interval the file is parsed again unless its first SOA still has the
//! loaded serial (or, with `reload_by_mtime`, unless its modification time
//! did not change); a file that fails to open or parse keeps the old zone
//! serving and logs the error. A successful reload sends NOTIFYs when the
//! block has *transfer*.
//!
//! One thread per plugin instance; it ends when the configuration that
//! started it is dropped (its channel's sender goes with it).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::setup::{load_error_text, log_skipped};
use super::{ZoneServer, ZoneSlot};
use crate::clog::{self, Level};
use crate::config::go_err;
use crate::plugins::transfer::link::BlockLink;
use crate::plugins::transfer::notify;
use crate::zone::{self, LoadError};

/// The background work of one configuration.
#[derive(Default)]
pub(crate) struct Runtime {
    started: AtomicBool,
    stop: Mutex<Option<Sender<()>>>,
}

impl Runtime {
    /// Starts the reloader and the startup NOTIFYs, once.
    pub(crate) fn start(&self, server: &Arc<ZoneServer>) {
        if self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        let slots = server.table.load().order.clone();
        notify::notify_zones_async(
            &server.link,
            slots.iter().map(|s| s.origin.clone()).collect(),
        );
        let slots: Vec<Arc<ZoneSlot>> = slots.into_iter().filter(|s| !s.reload.is_zero()).collect();
        if slots.is_empty() {
            return;
        }
        let (tx, rx) = mpsc::channel::<()>();
        if let Ok(mut s) = self.stop.lock() {
            *s = Some(tx);
        }
        let link = Arc::clone(&server.link);
        let _ = std::thread::Builder::new()
            .name("ringdns-zone-reload".into())
            .spawn(move || {
                let now = Instant::now();
                let mut due: Vec<Instant> = slots.iter().map(|s| now + s.reload).collect();
                loop {
                    let next = due.iter().min().copied().unwrap_or(now);
                    let wait = next.saturating_duration_since(Instant::now());
                    match rx.recv_timeout(wait) {
                        Err(RecvTimeoutError::Timeout) => {}
                        _ => return,
                    }
                    let now = Instant::now();
                    for (s, d) in slots.iter().zip(due.iter_mut()) {
                        if *d <= now {
                            reload_slot(s, &link);
                            *d = now + s.reload;
                        }
                    }
                }
            });
    }
}

/// One reload check of `slot` (CoreDNS's ticker body). Its lines are `plugin/file:`
/// for *auto*'s zones too: CoreDNS runs the file package's `Zone.Reload` for them.
pub(crate) fn reload_slot(slot: &ZoneSlot, link: &Arc<BlockLink>) {
    let file = slot.file();
    let origin = slot.origin_text();
    let mut serial = slot.data.load().as_ref().and_then(|z| z.serial());
    if slot.by_mtime {
        let m = match std::fs::metadata(&file).and_then(|m| m.modified()) {
            Ok(m) => m,
            Err(e) => {
                clog::log(
                    Level::Error,
                    Some("file"),
                    &format!(
                        "Failed to stat zone {origin:?} in {file:?}: stat {file}: {}",
                        go_err(&e)
                    ),
                );
                return;
            }
        };
        let prev = slot.mtime.lock().ok().and_then(|g| *g);
        if prev.is_some_and(|p| m <= p) {
            return;
        }
        if let Ok(mut g) = slot.mtime.lock() {
            *g = Some(m);
        }
        serial = None;
    }
    if let Err(e) = std::fs::File::open(&file) {
        clog::log(
            Level::Error,
            Some("file"),
            &format!(
                "Failed to open zone {origin:?} in {file:?}: open {file}: {}",
                go_err(&e)
            ),
        );
        return;
    }
    match zone::load_file(&file, &slot.origin, serial) {
        Ok(z) => {
            log_skipped(&z);
            let serial = z.serial().unwrap_or(0);
            slot.data.store(Some(Arc::new(z)));
            clog::log(
                Level::Info,
                Some("file"),
                &format!(
                    "Successfully reloaded zone {origin:?} in {file:?} with {serial} SOA serial"
                ),
            );
            if let Err(e) = notify::notify_zone(link, &slot.origin) {
                clog::log(
                    Level::Warning,
                    Some("file"),
                    &format!("Failed sending notifies: {e}"),
                );
            }
        }
        Err(LoadError::NoChange { .. }) => {}
        Err(e) => clog::log(
            Level::Error,
            Some("file"),
            &format!(
                "Parsing zone {origin:?}: {}",
                load_error_text(&e, &file, &origin)
            ),
        ),
    }
}

/// Runs `tick` on a thread named `name` every `every` until `tick` returns
/// false or the sender left in `stop` is dropped or used (the plugins'
/// shutdown and reload path).
pub(crate) fn spawn_ticker(
    name: &str,
    every: Duration,
    stop: &Mutex<Option<mpsc::Sender<()>>>,
    mut tick: impl FnMut() -> bool + Send + 'static,
) {
    let (tx, rx) = mpsc::channel::<()>();
    if let Ok(mut s) = stop.lock() {
        *s = Some(tx);
    }
    let _ = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            while matches!(rx.recv_timeout(every), Err(RecvTimeoutError::Timeout)) {
                if !tick() {
                    return;
                }
            }
        });
}
