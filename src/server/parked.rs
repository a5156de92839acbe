//! The executor for parked queries (those a plugin such as forward finishes later), one
//! per io_uring worker and one per epoll UDP socket loop. A tokio task per query costs an
//! allocation of the whole future, two copies of it and the runtime's bookkeeping; here
//! every query runs in a reused slot, polled by its loop right after the batch that woke
//! it, with no trip through the runtime's scheduler. Wakers work from any thread: a wake
//! queues the slot and signals [`Parked::notified`], which the loop awaits when it waits
//! in its runtime.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Wake, Waker};

use tokio::sync::Notify;

/// A query a plugin parked, owned so it can finish after the batch it came in.
pub struct Job {
    chain: Arc<crate::chain::Chain>,
    server: Arc<str>,
    data: super::bufpool::Buf,
    meta: super::handle::Meta,
    at: usize,
    st: crate::chain::ReqState,
}

impl Job {
    /// The query `data` of listener `l`, parked at plugin `at` of block `block`'s chain.
    pub fn new(
        l: &super::handle::ListenerRt,
        block: usize,
        data: &[u8],
        meta: super::handle::Meta,
        at: usize,
        st: crate::chain::ReqState,
    ) -> Self {
        Self {
            chain: Arc::clone(&l.chains[block]),
            server: Arc::clone(&l.label),
            data: super::bufpool::copy_of(data),
            meta,
            at,
            st,
        }
    }

    /// The client.
    pub fn peer(&self) -> std::net::SocketAddr {
        self.meta.peer
    }

    /// Runs the query to its end: its reply, if it has one.
    pub async fn run(self) -> Option<super::bufpool::Buf> {
        let (mut resp, mut scratch) = (super::bufpool::take(), super::bufpool::take());
        let out = super::handle::resume(
            &self.server,
            &self.chain,
            &self.data,
            self.meta,
            self.at,
            self.st,
            &mut resp,
            &mut scratch,
        )
        .await;
        matches!(out, super::handle::Outcome::Reply).then_some(resp)
    }
}

thread_local! {
    /// While [`Parked::run`] polls on this thread: its clock reading, once taken.
    static RUN_CLOCK: std::cell::Cell<RunClock> = const { std::cell::Cell::new(RunClock::Off) };
}

#[derive(Clone, Copy)]
enum RunClock {
    /// No run on this thread.
    Off,
    /// A run, no reading yet.
    Unread,
    /// A run and its reading.
    Read(std::time::Instant),
}

/// The time for code polled by a parked query: inside [`Parked::run`], one clock
/// reading serves every query that run polls (the run lasts microseconds); anywhere
/// else, the clock.
pub fn now() -> std::time::Instant {
    RUN_CLOCK.with(|c| match c.get() {
        RunClock::Off => std::time::Instant::now(),
        RunClock::Unread => {
            let t = std::time::Instant::now();
            c.set(RunClock::Read(t));
            t
        }
        RunClock::Read(t) => t,
    })
}

/// Marks a run on this thread while it lives.
struct RunGuard;

impl RunGuard {
    fn start() -> Self {
        RUN_CLOCK.with(|c| c.set(RunClock::Unread));
        Self
    }
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        RUN_CLOCK.with(|c| c.set(RunClock::Off));
    }
}

/// Slots woken since the last run.
struct Queue {
    ready: Mutex<Vec<usize>>,
    notify: Notify,
}

impl Queue {
    fn push(&self, idx: usize) {
        self.ready
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(idx);
        self.notify.notify_one();
    }
}

/// The waker of one slot (made once, reused by every query the slot runs).
struct SlotWake {
    idx: usize,
    /// Already in the ready queue.
    queued: AtomicBool,
    queue: Arc<Queue>,
}

impl Wake for SlotWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            self.queue.push(self.idx);
        }
    }
}

struct Slot<F> {
    fut: Pin<Box<Option<F>>>,
    wake: Arc<SlotWake>,
    waker: Waker,
}

/// The parked queries of one worker, all of one future type `F`.
pub struct Parked<F> {
    slots: Vec<Slot<F>>,
    free: Vec<usize>,
    queue: Arc<Queue>,
    /// The batch being polled (swapped with the ready queue).
    batch: Vec<usize>,
}

impl<F: Future<Output = ()>> Parked<F> {
    /// An empty executor.
    pub fn new() -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            queue: Arc::new(Queue {
                ready: Mutex::new(Vec::new()),
                notify: Notify::new(),
            }),
            batch: Vec::new(),
        }
    }

    /// Queries running.
    pub fn running(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Starts `f`; it is first polled by the next [`Parked::run`].
    pub fn spawn(&mut self, f: F) {
        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                let idx = self.slots.len();
                let wake = Arc::new(SlotWake {
                    idx,
                    queued: AtomicBool::new(false),
                    queue: Arc::clone(&self.queue),
                });
                let waker = Waker::from(Arc::clone(&wake));
                self.slots.push(Slot {
                    fut: Box::pin(None),
                    wake,
                    waker,
                });
                idx
            }
        };
        let s = &mut self.slots[idx];
        s.fut.set(Some(f));
        s.wake.wake_by_ref();
    }

    /// Polls every query woken so far (those woken while this runs wait for the next
    /// run); returns how many wakes it took.
    pub fn run(&mut self) -> usize {
        {
            let mut q = self
                .queue
                .ready
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if q.is_empty() {
                return 0;
            }
            std::mem::swap(&mut self.batch, &mut *q);
        }
        let n = self.batch.len();
        let _clock = RunGuard::start();
        for idx in self.batch.drain(..) {
            let Some(s) = self.slots.get_mut(idx) else {
                continue;
            };
            // Cleared first: a wake during the poll queues the slot again.
            s.wake.queued.store(false, Ordering::Release);
            let Some(f) = s.fut.as_mut().as_pin_mut() else {
                // A wake for a query that has finished.
                continue;
            };
            // A query that panics ends there, as a panicking tokio task would; the
            // worker and the other queries go on.
            let cx = &mut Context::from_waker(&s.waker);
            let done = match std::panic::catch_unwind(AssertUnwindSafe(|| f.poll(cx))) {
                Ok(p) => p.is_ready(),
                Err(_) => {
                    crate::clog::error("a parked query panicked; it is dropped");
                    true
                }
            };
            if done {
                s.fut.set(None);
                self.free.push(idx);
            }
        }
        n
    }

    /// True if a query was woken and not polled yet.
    pub fn has_ready(&self) -> bool {
        !self
            .queue
            .ready
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }

    /// Completes when a query is woken (or was, since the last call).
    pub async fn notified(&self) {
        self.queue.notify.notified().await;
    }
}

impl<F: Future<Output = ()>> Default for Parked<F> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;
    use std::task::Poll;

    /// Pending until its flag is set; counts its polls.
    fn gate(
        open: Rc<Cell<bool>>,
        polls: Rc<Cell<u32>>,
        done: Rc<Cell<u32>>,
    ) -> impl Future<Output = ()> {
        std::future::poll_fn(move |cx| {
            polls.set(polls.get() + 1);
            if open.get() {
                done.set(done.get() + 1);
                Poll::Ready(())
            } else {
                // Woken by the test through a cloned waker.
                WAKERS.with(|w| w.borrow_mut().push(cx.waker().clone()));
                Poll::Pending
            }
        })
    }

    thread_local! {
        static WAKERS: std::cell::RefCell<Vec<Waker>> = const { std::cell::RefCell::new(Vec::new()) };
    }

    #[test]
    fn runs_woken_queries_and_reuses_slots() {
        let (open, polls, done) = (
            Rc::new(Cell::new(false)),
            Rc::new(Cell::new(0)),
            Rc::new(Cell::new(0)),
        );
        let mut p = Parked::new();
        for _ in 0..3 {
            p.spawn(gate(open.clone(), polls.clone(), done.clone()));
        }
        assert_eq!(p.running(), 3);
        assert!(p.has_ready());
        assert_eq!(p.run(), 3);
        assert_eq!(polls.get(), 3);
        // Nothing woken: nothing polled.
        assert_eq!(p.run(), 0);
        assert!(!p.has_ready());
        // Two wakes of one query queue it once.
        open.set(true);
        let w: Vec<Waker> = WAKERS.with(|w| w.borrow_mut().drain(..).collect());
        w[0].wake_by_ref();
        w[0].wake_by_ref();
        assert_eq!(p.run(), 1);
        assert_eq!((done.get(), p.running()), (1, 2));
        // A stale wake of the finished slot polls nothing.
        w[0].wake_by_ref();
        assert_eq!(p.run(), 1);
        assert_eq!(polls.get(), 4);
        // A wake from another thread.
        let w1 = w[1].clone();
        std::thread::spawn(move || w1.wake()).join().unwrap();
        assert_eq!(p.run(), 1);
        assert_eq!((done.get(), p.running()), (2, 1));
        // The freed slot is reused: no new slot.
        p.spawn(gate(open, polls, done.clone()));
        assert_eq!(p.slots.len(), 3);
        w[2].wake_by_ref();
        p.run();
        assert_eq!((done.get(), p.running()), (4, 0));
    }

    /// Counts itself in `ran`, panicking when `k` is 1.
    async fn job(k: u32, ran: Rc<Cell<u32>>) {
        assert!(k != 1, "query {k} fails");
        ran.set(ran.get() + 1);
    }

    #[test]
    fn a_panicking_query_ends_alone() {
        let mut p = Parked::new();
        let ran = Rc::new(Cell::new(0));
        for k in 0..3 {
            p.spawn(job(k, ran.clone()));
        }
        assert_eq!(p.run(), 3);
        assert_eq!((ran.get(), p.running()), (2, 0));
        // Its slot is reused.
        p.spawn(job(7, ran.clone()));
        assert_eq!(p.slots.len(), 3);
        p.run();
        assert_eq!((ran.get(), p.running()), (3, 0));
    }
}
