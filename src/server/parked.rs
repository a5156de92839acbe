//! The executor for parked queries (those a plugin such as forward finishes later), one per
//! io_uring worker and one per epoll UDP socket loop. A tokio task per query costs an
//! allocation of the whole future, two copies of it and the runtime's bookkeeping; here
//! every query runs in a reused slot, polled by its loop right after the batch that woke
//! it, with no trip through the runtime's scheduler. A slot keeps its task: a resident loop
//! that takes the slot's next query from its [`Inbox`], so starting a query copies the
//! query's small job, not a new future (1.6 KB for a forwarded query, copied into the slot
//! per query before). Wakers work from any thread: a wake queues the slot and signals
//! [`Parked::notified`], which the loop awaits when it waits in its runtime.

use std::cell::RefCell;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

use tokio::sync::Notify;

/// A query a plugin parked, owned so it can finish after the batch it came in.
pub struct Job {
    disp: Arc<super::handle::Dispatch>,
    block: usize,
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
            disp: Arc::clone(&l.disp),
            block,
            data: super::bufpool::copy_of(data),
            meta,
            at,
            st,
        }
    }

    /// Runs the query to its end: its reply, if it has one. (By reference: the
    /// caller's future holds the job once, not once per layer.)
    pub async fn run(&self) -> Option<super::bufpool::Buf> {
        let (mut resp, mut scratch) = (super::bufpool::take(), super::bufpool::take());
        let out = super::handle::resume(
            &self.disp,
            self.block,
            &self.data,
            &self.meta,
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

/// True while [`Parked::run`] polls on this thread.
pub fn in_run() -> bool {
    RUN_CLOCK
        .try_with(|c| !matches!(c.get(), RunClock::Off))
        .unwrap_or(false)
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

/// Slots woken since the last run by other threads.
struct Queue {
    /// The owner thread's [`thread_token`]: wakes on it take the local path.
    owner: usize,
    /// This queue's key in the owner thread's [`LOCAL`] lists.
    id: usize,
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

thread_local! {
    /// This thread's identity, as the address of a thread-local.
    static TOKEN: u8 = const { 0 };
    /// The ready lists of the queues this thread owns: a wake on the owner thread (the
    /// usual case: forward's upstream reply read by the worker that parked the query)
    /// takes no lock and no atomic read-modify-write, and signals the loop only if it
    /// waits in [`Parked::notified`].
    static LOCAL: RefCell<Vec<LocalQueue>> = const { RefCell::new(Vec::new()) };
}

/// One queue's slots woken on its owner thread.
struct LocalQueue {
    id: usize,
    ready: Vec<usize>,
    /// The loop, while it waits in [`Parked::notified`].
    waiter: Option<Waker>,
}

fn thread_token() -> usize {
    TOKEN.with(|t| std::ptr::from_ref(t).addr())
}

/// Runs `f` on this thread's local lists; `None` if its thread-locals are gone or the
/// lists are in use.
fn with_locals<R>(f: impl FnOnce(&mut Vec<LocalQueue>) -> R) -> Option<R> {
    LOCAL
        .try_with(|l| l.try_borrow_mut().ok().map(|mut l| f(&mut l)))
        .ok()
        .flatten()
}

/// Runs `f` on queue `id`'s local list; `None` if this thread has none (or its
/// thread-locals are gone, or the list is in use).
fn with_local<R>(id: usize, f: impl FnOnce(&mut LocalQueue) -> R) -> Option<R> {
    with_locals(|l| l.iter_mut().find(|q| q.id == id).map(f)).flatten()
}

/// Queues slot `idx` on the owner thread; false if it must take the shared queue.
fn push_local(id: usize, idx: usize) -> bool {
    match with_local(id, |q| {
        q.ready.push(idx);
        q.waiter.take()
    }) {
        Some(w) => {
            if let Some(w) = w {
                w.wake();
            }
            true
        }
        None => false,
    }
}

/// The waker of one slot (made once, reused by every query the slot runs).
struct SlotWake {
    idx: usize,
    /// Already in a ready list.
    queued: AtomicBool,
    queue: Arc<Queue>,
}

impl Wake for SlotWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.queue.owner == thread_token() {
            // Only a wake from another thread can race this one, and a slot queued
            // twice is only polled twice.
            if self.queued.load(Ordering::Relaxed) {
                return;
            }
            self.queued.store(true, Ordering::Relaxed);
            if !push_local(self.queue.id, self.idx) {
                self.queue.push(self.idx);
            }
            return;
        }
        if !self.queued.swap(true, Ordering::AcqRel) {
            self.queue.push(self.idx);
        }
    }
}

/// The job box of one slot: [`Parked::spawn`] puts a query here and the slot's resident
/// task takes it ([`Inbox::next`]).
///
/// A slot's task must await nothing but [`Inbox::next`] between jobs (and never race it,
/// as in a `select!`): a task waiting in `next` with nothing to take is what marks its
/// slot free.
pub struct Inbox<T> {
    job: std::cell::Cell<Option<T>>,
    /// The task waits in [`Inbox::next`] with nothing to take: its slot is free.
    idle: std::cell::Cell<bool>,
}

impl<T> Inbox<T> {
    /// The next job for this slot: a slot's task loops on this, runs the job, and comes
    /// back. (Polled only by [`Parked::run`], which wakes the slot when it puts a job.)
    pub async fn next(&self) -> T {
        std::future::poll_fn(|_| match self.job.take() {
            Some(j) => {
                self.idle.set(false);
                Poll::Ready(j)
            }
            None => {
                self.idle.set(true);
                Poll::Pending
            }
        })
        .await
    }
}

struct Slot<T, F> {
    /// The slot's resident task, made once and kept across its jobs; `None` until the
    /// first job and after a panic.
    fut: Pin<Box<Option<F>>>,
    inbox: std::rc::Rc<Inbox<T>>,
    /// Holds a job (in its inbox or running): not in the free list.
    busy: bool,
    wake: Arc<SlotWake>,
    waker: Waker,
}

/// The parked queries of one worker, jobs of type `T`, each run by a slot's resident task
/// of type `F` (a loop over [`Inbox::next`]). A query costs no future of its own: a future
/// as large as a forwarded query's (1.6 KB) would be copied into its slot per query. It
/// stays on the thread that made it (its loop is a thread's own task).
pub struct Parked<T, F> {
    slots: Vec<Slot<T, F>>,
    free: Vec<usize>,
    queue: Arc<Queue>,
    /// The batch being polled (swapped with the ready lists).
    batch: Vec<usize>,
    /// Not `Send`: the local ready list is the making thread's.
    _local: std::marker::PhantomData<std::rc::Rc<()>>,
}

impl<T, F: Future<Output = ()>> Parked<T, F> {
    /// An empty executor, owned by this thread.
    pub fn new() -> Self {
        static IDS: AtomicUsize = AtomicUsize::new(0);
        let id = IDS.fetch_add(1, Ordering::Relaxed);
        let _ = with_locals(|l| {
            l.push(LocalQueue {
                id,
                ready: Vec::new(),
                waiter: None,
            });
        });
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            queue: Arc::new(Queue {
                owner: thread_token(),
                id,
                ready: Mutex::new(Vec::new()),
                notify: Notify::new(),
            }),
            batch: Vec::new(),
            _local: std::marker::PhantomData,
        }
    }

    /// Queries running.
    pub fn running(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Starts `job` in a free slot; it is first polled by the next [`Parked::run`]. `task`
    /// makes the slot's resident task when the slot has none (new, or after a panic).
    pub fn spawn(&mut self, job: T, task: impl FnOnce(std::rc::Rc<Inbox<T>>) -> F) {
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
                    inbox: std::rc::Rc::new(Inbox {
                        job: std::cell::Cell::new(None),
                        idle: std::cell::Cell::new(false),
                    }),
                    busy: false,
                    wake,
                    waker,
                });
                idx
            }
        };
        let s = &mut self.slots[idx];
        if s.fut.is_none() {
            s.fut.set(Some(task(std::rc::Rc::clone(&s.inbox))));
        }
        s.busy = true;
        s.inbox.idle.set(false);
        s.inbox.job.set(Some(job));
        s.wake.wake_by_ref();
    }

    /// Moves every slot woken so far into `self.batch`.
    fn take_ready(&mut self) {
        let batch = &mut self.batch;
        let _ = with_local(self.queue.id, |q| std::mem::swap(batch, &mut q.ready));
        let mut q = self
            .queue
            .ready
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if batch.is_empty() {
            std::mem::swap(batch, &mut *q);
        } else {
            batch.append(&mut q);
        }
    }

    /// Polls every query woken so far (those woken while this runs wait for the next
    /// run); returns how many wakes it took.
    pub fn run(&mut self) -> usize {
        self.take_ready();
        let n = self.batch.len();
        if n == 0 {
            return 0;
        }
        let _clock = RunGuard::start();
        for idx in self.batch.drain(..) {
            let Some(s) = self.slots.get_mut(idx) else {
                continue;
            };
            // Cleared first: a wake during the poll queues the slot again.
            s.wake.queued.store(false, Ordering::Release);
            let Some(f) = s.fut.as_mut().as_pin_mut() else {
                // A wake for a slot whose task was dropped (its query panicked).
                continue;
            };
            // A query that panics ends there, as a panicking tokio task would; the
            // worker and the other queries go on. Its slot's task is dropped (and with it
            // the query) and made again for the slot's next job.
            let cx = &mut Context::from_waker(&s.waker);
            let ended = match std::panic::catch_unwind(AssertUnwindSafe(|| f.poll(cx))) {
                Ok(p) => p.is_ready(),
                Err(_) => {
                    crate::clog::error("a parked query panicked; it is dropped");
                    true
                }
            };
            if ended {
                s.fut.set(None);
                s.inbox.job.set(None);
            }
            // Back in its inbox with nothing to take (or gone): the job has ended.
            if s.busy && (ended || s.inbox.idle.get()) {
                s.busy = false;
                self.free.push(idx);
            }
        }
        n
    }

    /// True if a query was woken and not polled yet.
    pub fn has_ready(&self) -> bool {
        with_local(self.queue.id, |q| !q.ready.is_empty()).unwrap_or(false)
            || !self
                .queue
                .ready
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_empty()
    }

    /// Completes when a query is woken (or was, since the last call).
    pub async fn notified(&self) {
        /// Forgets the loop's waker when the wait ends (or is dropped by a `select!`).
        struct Waiting(usize);
        impl Drop for Waiting {
            fn drop(&mut self) {
                let _ = with_local(self.0, |q| q.waiter = None);
            }
        }
        let id = self.queue.id;
        let _waiting = Waiting(id);
        let remote = self.queue.notify.notified();
        let mut remote = std::pin::pin!(remote);
        std::future::poll_fn(|cx| {
            if remote.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
            let local = with_local(id, |q| {
                if q.ready.is_empty() {
                    q.waiter = Some(cx.waker().clone());
                    false
                } else {
                    true
                }
            });
            if local == Some(true) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }
}

impl<T, F> Drop for Parked<T, F> {
    fn drop(&mut self) {
        let id = self.queue.id;
        let _ = with_locals(|l| l.retain(|q| q.id != id));
    }
}

impl<T, F: Future<Output = ()>> Default for Parked<T, F> {
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

    /// A gate's flag, poll count and done count.
    type GateState = (Rc<Cell<bool>>, Rc<Cell<u32>>, Rc<Cell<u32>>);

    /// A closed gate's state.
    fn gate_state() -> GateState {
        (
            Rc::new(Cell::new(false)),
            Rc::new(Cell::new(0)),
            Rc::new(Cell::new(0)),
        )
    }

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

    type Work = Pin<Box<dyn Future<Output = ()>>>;

    thread_local! {
        /// Slot tasks made so far.
        static MADE: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    }

    fn work(f: impl Future<Output = ()> + 'static) -> Work {
        Box::pin(f)
    }

    /// A slot's resident task: runs each future it is given.
    fn task(inbox: Rc<Inbox<Work>>) -> impl Future<Output = ()> {
        MADE.with(|m| m.set(m.get() + 1));
        async move {
            loop {
                let f = inbox.next().await;
                f.await;
            }
        }
    }

    thread_local! {
        static WAKERS: std::cell::RefCell<Vec<Waker>> = const { std::cell::RefCell::new(Vec::new()) };
    }

    #[test]
    fn runs_woken_queries_and_reuses_slots() {
        let (open, polls, done) = gate_state();
        let mut p = Parked::new();
        for _ in 0..3 {
            p.spawn(work(gate(open.clone(), polls.clone(), done.clone())), task);
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
        // The freed slot is reused: no new slot, and no new task.
        let made = MADE.with(std::cell::Cell::get);
        p.spawn(work(gate(open, polls, done.clone())), task);
        assert_eq!(p.slots.len(), 3);
        assert_eq!(MADE.with(std::cell::Cell::get), made);
        w[2].wake_by_ref();
        p.run();
        assert_eq!((done.get(), p.running()), (4, 0));
    }

    /// A late wake from a slot's previous query, arriving while the slot's next query
    /// waits, polls that query once more and leaves it running.
    #[test]
    fn a_stale_wake_leaves_the_next_query_running() {
        let (open, polls, done) = gate_state();
        let mut p = Parked::new();
        p.spawn(work(gate(open.clone(), polls.clone(), done.clone())), task);
        p.run();
        let old: Vec<Waker> = WAKERS.with(|w| w.borrow_mut().drain(..).collect());
        open.set(true);
        old[0].wake_by_ref();
        p.run();
        assert_eq!((done.get(), p.running()), (1, 0));
        // The slot's next query parks.
        open.set(false);
        p.spawn(work(gate(open.clone(), polls.clone(), done.clone())), task);
        p.run();
        assert_eq!((polls.get(), p.running()), (3, 1));
        // The first query's waker fires again: one more poll, still running.
        old[0].wake_by_ref();
        assert_eq!(p.run(), 1);
        assert_eq!((polls.get(), done.get(), p.running()), (4, 1, 1));
        // Its own wake ends it, and the slot is free once.
        open.set(true);
        let w: Vec<Waker> = WAKERS.with(|w| w.borrow_mut().drain(..).collect());
        w.last().unwrap().wake_by_ref();
        old[0].wake_by_ref();
        p.run();
        assert_eq!((done.get(), p.running()), (2, 0));
        assert_eq!(p.free.len(), 1);
    }

    /// The loop's wait ends on a wake from another task of its thread (no lock, no
    /// notify: the local list and the waiting loop's waker) and on one from another thread.
    #[test]
    fn the_loop_wait_ends_on_local_and_remote_wakes() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async {
            let (open, polls, done) = gate_state();
            let mut p = Parked::new();
            p.spawn(work(gate(open.clone(), polls.clone(), done.clone())), task);
            p.spawn(work(gate(open.clone(), polls.clone(), done.clone())), task);
            assert_eq!(p.run(), 2);
            assert!(!p.has_ready());
            let mut w: Vec<Waker> = WAKERS.with(|w| w.borrow_mut().drain(..).collect());
            let (w0, w1) = (w.remove(0), w.remove(0));
            open.set(true);
            let limit = std::time::Duration::from_secs(5);
            // Nothing woken: the wait does not end by itself.
            let idle = tokio::time::timeout(std::time::Duration::from_millis(20), p.notified());
            assert!(idle.await.is_err());
            // Another task of this thread wakes slot 0 while the loop waits.
            tokio::task::spawn_local(async move {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                w0.wake();
            });
            tokio::time::timeout(limit, p.notified()).await.unwrap();
            assert!(p.has_ready());
            assert_eq!(p.run(), 1);
            assert_eq!(done.get(), 1);
            // Another thread wakes slot 1.
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(10));
                w1.wake();
            });
            tokio::time::timeout(limit, p.notified()).await.unwrap();
            assert_eq!(p.run(), 1);
            assert_eq!((done.get(), p.running()), (2, 0));
            // A wake before the wait: the wait ends at once.
            open.set(false);
            p.spawn(work(gate(open.clone(), polls.clone(), done.clone())), task);
            p.run();
            let w2: Vec<Waker> = WAKERS.with(|w| w.borrow_mut().drain(..).collect());
            open.set(true);
            w2[0].wake_by_ref();
            tokio::time::timeout(limit, p.notified()).await.unwrap();
            assert_eq!(p.run(), 1);
            assert_eq!((done.get(), p.running()), (3, 0));
        });
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
            p.spawn(work(job(k, ran.clone())), task);
        }
        assert_eq!(p.run(), 3);
        assert_eq!((ran.get(), p.running()), (2, 0));
        // The slot is reused, with a new task (the old one was dropped with the query);
        // the other slots keep theirs.
        let made = MADE.with(std::cell::Cell::get);
        for k in [7, 8, 9] {
            p.spawn(work(job(k, ran.clone())), task);
        }
        assert_eq!(p.slots.len(), 3);
        assert_eq!(MADE.with(std::cell::Cell::get), made + 1);
        p.run();
        assert_eq!((ran.get(), p.running()), (5, 0));
    }
}
