//! The io_uring worker's ring as a UDP transport for plugins (the forward plugin's upstream
//! sockets): on an io_uring worker, a connected socket handed to [`add`] is read by the
//! worker's own ring and its datagrams are delivered to a [`Sink`] from the worker's batch of
//! completions; [`send`] queues a datagram for the worker's next submit. No thread hop and no
//! system call of its own per query. On an epoll worker (or any other thread) [`active`] is
//! false and plugins use their own sockets.

use std::cell::{Cell, RefCell};
use std::io;
use std::rc::{Rc, Weak};

use tokio::sync::Notify;
use uring::{Engine, UpstreamId};

/// Receives what the ring reads for one socket.
pub trait Sink {
    /// A datagram from the socket's peer.
    fn datagram(&self, data: &[u8]);
    /// An error on the socket: a failed receive (an ICMP unreachable) or, with `write`, a
    /// failed send.
    fn error(&self, error: &io::Error, write: bool);
    /// The worker's clock, at least every millisecond while queries wait: fail those
    /// whose deadline has passed.
    fn expire(&self, now: std::time::Instant);
}

/// A socket's id and where its events go.
type SinkOf = (UpstreamId, Weak<dyn Sink>);

struct Ring {
    engine: Rc<RefCell<Engine>>,
    /// Wakes the worker to submit what tasks queued.
    flush: Rc<Notify>,
    /// By [`UpstreamId::slot`], with the id that holds the slot.
    sinks: RefCell<Vec<Option<SinkOf>>>,
    /// Queued by parked queries in the run that is polling them: [`flush_run`] wakes.
    unflushed: Cell<bool>,
    /// Sockets dropped while the worker held the engine: removed on its next batch.
    pending_remove: RefCell<Vec<UpstreamId>>,
}

thread_local! {
    static RING: RefCell<Option<Rc<Ring>>> = const { RefCell::new(None) };
    /// Queries waiting for a datagram the ring reads (see [`sleepers`]).
    static SLEEPERS: Cell<usize> = const { Cell::new(0) };
}

/// How many queries of this thread wait for nothing but a datagram read by the ring (their
/// deadlines are the worker's, [`expire`]). When every parked query does, the worker can
/// wait in the ring itself instead of in its runtime: only the ring wakes them.
pub fn sleepers() -> usize {
    SLEEPERS.with(Cell::get)
}

/// A query started (`true`) or stopped (`false`) waiting for a ring datagram.
pub fn sleeping(on: bool) {
    SLEEPERS.with(|c| {
        c.set(if on {
            c.get() + 1
        } else {
            c.get().saturating_sub(1)
        })
    });
}

fn ring() -> Option<Rc<Ring>> {
    RING.try_with(|r| r.borrow().clone()).ok().flatten()
}

/// Runs `f` on this thread's ring without taking a reference to it (the per-datagram
/// paths). `f` must not install or withdraw the ring.
fn with_ring<R>(f: impl FnOnce(&Ring) -> R) -> Option<R> {
    RING.try_with(|r| r.borrow().as_deref().map(f))
        .ok()
        .flatten()
}

/// Makes this thread's worker ring available to plugins.
pub(super) fn install(engine: Rc<RefCell<Engine>>, flush: Rc<Notify>) {
    RING.with(|r| {
        *r.borrow_mut() = Some(Rc::new(Ring {
            engine,
            flush,
            sinks: RefCell::new(Vec::new()),
            unflushed: Cell::new(false),
            pending_remove: RefCell::new(Vec::new()),
        }));
    });
}

/// Withdraws the ring (the worker is stopping): plugins fall back to their own sockets.
pub(super) fn uninstall() {
    let _ = RING.try_with(|r| r.borrow_mut().take());
}

/// True on an io_uring worker thread.
pub fn active() -> bool {
    ring().is_some()
}

/// Hands a connected UDP socket to the worker's ring; its datagrams and errors go to the
/// sink [`set_sink`] names (the owner of the id, made once the id exists).
pub fn add(sock: std::net::UdpSocket) -> io::Result<UpstreamId> {
    let r = ring().ok_or(io::ErrorKind::Unsupported)?;
    let id = r
        .engine
        .try_borrow_mut()
        .map_err(|_| io::Error::from(io::ErrorKind::WouldBlock))?
        .add_upstream_udp(sock)?;
    r.flush.notify_one();
    Ok(id)
}

/// Points socket `id`'s events at `sink`.
pub fn set_sink(id: UpstreamId, sink: Weak<dyn Sink>) {
    if let Some(r) = ring() {
        let mut v = r.sinks.borrow_mut();
        if v.len() <= id.slot() {
            v.resize_with(id.slot() + 1, || None);
        }
        v[id.slot()] = Some((id, sink));
    }
}

/// Queues a datagram on socket `id` for the worker's next submit.
pub fn send(id: UpstreamId, data: &[u8]) -> io::Result<()> {
    with_ring(|r| {
        r.engine
            .try_borrow_mut()
            .map_err(|_| io::Error::from(io::ErrorKind::WouldBlock))?
            .send_upstream_udp(id, data)?;
        signal_flush(r);
        Ok(())
    })
    .unwrap_or_else(|| Err(io::ErrorKind::NotConnected.into()))
}

/// Wakes the worker to submit: at once from a task, once per run from the parked
/// queries it polls (see [`flush_run`]).
fn signal_flush(r: &Ring) {
    if super::parked::in_run() {
        r.unflushed.set(true);
    } else {
        r.flush.notify_one();
    }
}

/// Called by the worker after a run of its parked queries: one wake for what they queued.
pub(super) fn flush_run() {
    with_ring(|r| {
        if r.unflushed.replace(false) {
            r.flush.notify_one();
        }
    });
}

/// Queues the worker's wake to submit what a parked query (or task) queued.
pub(super) fn flush() {
    with_ring(signal_flush);
}

/// Removes socket `id` (closed once its receive has ended).
pub fn remove(id: UpstreamId) {
    let Some(r) = ring() else { return };
    if let Some(s) = r.sinks.borrow_mut().get_mut(id.slot()) {
        if s.as_ref().is_some_and(|(held, _)| *held == id) {
            *s = None;
        }
    }
    match r.engine.try_borrow_mut() {
        Ok(mut e) => {
            e.remove_upstream_udp(id);
            r.flush.notify_one();
        }
        Err(_) => r.pending_remove.borrow_mut().push(id),
    }
}

/// Removals that had to wait for the engine (called by the worker with the engine in hand).
pub(super) fn remove_pending(engine: &mut Engine) {
    let Some(r) = ring() else { return };
    for id in r.pending_remove.borrow_mut().drain(..) {
        engine.remove_upstream_udp(id);
    }
}

fn sink(id: UpstreamId) -> Option<Rc<dyn Sink>> {
    with_ring(|r| match r.sinks.borrow().get(id.slot()) {
        Some(Some((held, s))) if *held == id => s.upgrade(),
        _ => None,
    })
    .flatten()
}

/// A datagram the worker's ring read for socket `id`.
pub(super) fn deliver(id: UpstreamId, data: &[u8]) {
    if let Some(s) = sink(id) {
        s.datagram(data);
    }
}

/// Lets every socket's sink fail its overdue queries (see [`Sink::expire`]).
pub(super) fn expire(now: std::time::Instant) {
    let Some(r) = ring() else { return };
    let sinks: Vec<Rc<dyn Sink>> = r
        .sinks
        .borrow()
        .iter()
        .flatten()
        .filter_map(|(_, s)| s.upgrade())
        .collect();
    for s in sinks {
        s.expire(now);
    }
}

/// An error the worker's ring reported for socket `id`.
pub(super) fn fail(id: UpstreamId, error: &io::Error, write: bool) {
    if let Some(s) = sink(id) {
        s.error(error, write);
    }
}
