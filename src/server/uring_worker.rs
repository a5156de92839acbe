//! The io_uring backend's worker: one [`uring::Engine`] per worker thread
//! (multishot receive over provided buffers, batched sends), driven from the
//! worker's tokio runtime through the engine's eventfd so parked queries and
//! timers share the thread. Every batch of completions is answered and the
//! replies go to the kernel with one submit.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use tokio::io::unix::AsyncFd;
use tokio::sync::Notify;
use uring::{ConnId, Engine, EngineConfig, Event, ListenerId, SocketId};

use super::handle::{Meta, Outcome, handle, scrub_more};
use super::parked::{Inbox, Job};
use super::{Shared, WorkerCmd, WorkerHandle, WorkerSockets, canonical};
use crate::chain::Proto;

/// How often a worker waiting in its ring lets its runtime run tasks and timers.
const TASK_TICK: std::time::Duration = std::time::Duration::from_millis(1);

/// Queries parked at once per worker.
const MAX_PARKED: usize = 16_384;

struct NotifyFd(RawFd);
impl AsRawFd for NotifyFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

struct Conn {
    peer: SocketAddr,
    local: SocketAddr,
    label: Arc<str>,
    queries: i64,
}

struct State {
    udp: Vec<(SocketId, Arc<str>, SocketAddr)>,
    tcp: Vec<(ListenerId, Arc<str>)>,
    /// The configuration the TCP listeners' hand-over was last set for (held weakly, so
    /// its address is not reused by a later one while we compare with it).
    tcp_config: std::sync::Weak<super::Active>,
    /// Where connections of listeners with *proxyproto* go: the side worker.
    handoff: (std::sync::mpsc::Sender<WorkerCmd>, Arc<Notify>),
    conns: HashMap<ConnId, Conn>,
    parked: usize,
}

impl State {
    fn add(&mut self, eng: &mut Engine, s: WorkerSockets) {
        let label: Arc<str> = Arc::from(s.label.as_str());
        let local = s.udp_local;
        if let Some(udp) = s.udp {
            match eng.add_udp(udp) {
                Ok(id) => self.udp.push((id, label.clone(), local)),
                Err(e) => crate::clog::error(&format!("io_uring: adding UDP socket: {e}")),
            }
        }
        if let Some(tcp) = s.tcp {
            match eng.add_tcp_listener(tcp) {
                Ok(id) => {
                    self.tcp.push((id, label));
                    // Its hand-over is set with the next batch.
                    self.tcp_config = std::sync::Weak::new();
                }
                Err(e) => crate::clog::error(&format!("io_uring: adding TCP listener: {e}")),
            }
        }
    }

    /// Listeners with *proxyproto* in `active` hand their new connections to the side
    /// worker (which reads the PROXY header before DNS); the others are served here.
    fn set_handoff(&mut self, eng: &mut Engine, active: &Arc<super::Active>) {
        if std::ptr::eq(self.tcp_config.as_ptr(), Arc::as_ptr(active)) {
            return;
        }
        self.tcp_config = Arc::downgrade(active);
        for (id, label) in &self.tcp {
            let on = active.find(label).is_some_and(|l| l.proxy.is_some());
            eng.set_tcp_handoff(*id, on);
        }
    }
}

/// Engine sizes for a worker.
pub fn engine_config(shared: &Shared) -> EngineConfig {
    let active = shared.active.load();
    let t = active
        .listeners
        .first()
        .map(|l| l.timeouts)
        .unwrap_or_default();
    EngineConfig {
        // Few buffers, reused soon, stay in cache: with 2048 the kernel's copy of
        // each datagram and our parse of it missed (S1 +7 % QPS per core with 256).
        // A burst beyond them waits in the socket buffer while the receive is
        // re-armed.
        udp_buf_count: 256,
        // forward's upstream replies arrive in these buffers too: one longer than
        // this arrives cut and is answered with TC (docs/compat.md). 64 KiB
        // buffers measured 8 % slower in S1.
        udp_buf_size: 4096,
        send_slots: 4096,
        udp_send_size: 65535,
        max_tcp_conns: 16_384,
        tcp_read_timeout: t.read,
        tcp_idle_timeout: t.idle,
        tcp_write_timeout: t.write,
        ..EngineConfig::default()
    }
}

/// Starts one io_uring worker thread.
pub fn spawn(
    id: usize,
    shared: Arc<Shared>,
    socks: Vec<WorkerSockets>,
    handoff: (std::sync::mpsc::Sender<WorkerCmd>, Arc<Notify>),
) -> std::io::Result<WorkerHandle> {
    let (tx, rx) = std::sync::mpsc::channel::<WorkerCmd>();
    let wake = Arc::new(Notify::new());
    let wake2 = Arc::clone(&wake);
    let cfg = engine_config(&shared);
    let engine = Engine::new(cfg)?;
    // The engine is not Send: build it here only to fail early, then again on the thread.
    drop(engine);
    let cfg = engine_config(&shared);
    let thread = std::thread::Builder::new()
        .name(format!("ringdns-u{id}"))
        .spawn(move || {
            let mut engine = match Engine::new(cfg) {
                Ok(e) => e,
                Err(e) => {
                    crate::clog::error(&format!("worker {id}: io_uring: {e}"));
                    return;
                }
            };
            let mut state = State {
                udp: Vec::new(),
                tcp: Vec::new(),
                tcp_config: std::sync::Weak::new(),
                handoff,
                conns: HashMap::new(),
                parked: 0,
            };
            for s in socks {
                state.add(&mut engine, s);
            }
            let _ = engine.submit();
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    crate::clog::error(&format!("worker {id}: runtime: {e}"));
                    return;
                }
            };
            // The eventfd is owned by the engine, which outlives `notify` (dropped
            // before the engine shuts down). `register` is the checked-by-caller form of the
            // same call, which this crate forbids.
            #[allow(deprecated)]
            let notify = match rt.block_on(async { AsyncFd::new(NotifyFd(engine.notify_fd())) }) {
                Ok(n) => n,
                Err(e) => {
                    crate::clog::error(&format!("worker {id}: io_uring eventfd: {e}"));
                    return;
                }
            };
            let engine = Rc::new(RefCell::new(engine));
            let flush = Rc::new(Notify::new());
            // Upstream sockets (forward) live on this ring too.
            super::ring::install(Rc::clone(&engine), Rc::clone(&flush));
            let state = Rc::new(RefCell::new(state));
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, async {
                let (mut resp, mut scratch) = (Vec::with_capacity(4096), Vec::with_capacity(4096));
                let mut jobs = Vec::new();
                let mut parked = super::parked::Parked::new();
                let mut last_tick = Instant::now();
                loop {
                    if shared.is_stopping() {
                        break;
                    }
                    // Parked queries this batch started or woke run now: their
                    // upstream queries and replies go out with the next submit.
                    for (j, to) in jobs.drain(..) {
                        parked.spawn((j, to), |inbox| slot_task(inbox, &engine, &state));
                    }
                    parked.run();
                    super::ring::flush_run();
                    // Nothing parked, or every parked query waits only for a datagram
                    // the ring reads (forward's upstream replies; their deadlines are
                    // expired below): no task needs the runtime's I/O, so wait in the
                    // ring itself (submit + wait in one io_uring_enter per batch),
                    // bounded so commands, shutdown and timers are seen.
                    let n_parked = state.borrow().parked;
                    if n_parked == 0
                        || (n_parked <= super::ring::sleepers() && !parked.has_ready())
                    {
                        {
                            let mut eng = engine.borrow_mut();
                            // No eventfd wake-ups while waiting here (turned on again below).
                            eng.set_notify(false);
                            let wait = if n_parked == 0 {
                                std::time::Duration::from_millis(20)
                            } else {
                                TASK_TICK
                            };
                            let _ = eng.submit_and_wait(1, Some(wait));
                        }
                        // Replies go to the kernel with the next submit_and_wait:
                        // one io_uring_enter per batch, sending and waiting.
                        let now =
                            process(&shared, &engine, &state, &mut jobs, &mut resp, &mut scratch, false);
                        let mut added = false;
                        while let Ok(WorkerCmd::Add(v)) = rx.try_recv() {
                            let mut eng = engine.borrow_mut();
                            for s in v {
                                state.borrow_mut().add(&mut eng, s);
                            }
                            added = true;
                        }
                        if added {
                            let _ = engine.borrow_mut().submit();
                        }
                        // Background tasks (health checks, idle upstream connections,
                        // zone transfers) and timers run between batches, at least
                        // every millisecond while queries are parked: a timer that
                        // fires while the worker waits in the ring is seen within
                        // TASK_TICK. (The batch's clock reading serves: one per batch.)
                        if now.saturating_duration_since(last_tick) >= TASK_TICK {
                            // Upstream queries on the ring past their read deadline.
                            super::ring::expire(now);
                            tokio::task::yield_now().await;
                            last_tick = Instant::now();
                        }
                        continue;
                    }
                    if parked.has_ready() {
                        continue;
                    }
                    let now = Instant::now();
                    if now.saturating_duration_since(last_tick) >= TASK_TICK {
                        super::ring::expire(now);
                        last_tick = now;
                    }
                    engine.borrow_mut().set_notify(true);
                    // Queries on the ring have no timer of their own: wake to expire them.
                    let ring_waiting = super::ring::sleepers() > 0;
                    tokio::select! {
                        () = tokio::time::sleep(TASK_TICK), if ring_waiting => {}
                        r = notify.readable() => {
                            if let Ok(mut g) = r {
                                g.clear_ready();
                            }
                            process(&shared, &engine, &state, &mut jobs, &mut resp, &mut scratch, true);
                        }
                        () = parked.notified() => {}
                        () = wake2.notified() => {
                            let mut eng = engine.borrow_mut();
                            while let Ok(WorkerCmd::Add(v)) = rx.try_recv() {
                                for s in v {
                                    state.borrow_mut().add(&mut eng, s);
                                }
                            }
                            let _ = eng.submit();
                        }
                        // Replies of resumed queries: one submit per tick of tasks.
                        () = flush.notified() => {
                            let _ = engine.borrow_mut().submit();
                        }
                        () = shared.stopping() => break,
                    }
                }
            });
            drop(notify);
            super::ring::uninstall();
            if let Ok(cell) = Rc::try_unwrap(engine) {
                cell.into_inner().shutdown();
            }
        })?;
    Ok(WorkerHandle {
        thread,
        cmds: tx,
        wake,
        side: None,
    })
}

/// Where a parked query's reply goes.
enum ReplyTo {
    Udp(SocketId, SocketAddr),
    Tcp(ConnId),
}

/// The resident task of a parked-query slot: runs the queries its slot is given, each to
/// its end, and queues their replies. (An `async` block, not an `async fn`: an `async fn`
/// keeps a second copy of its arguments in its future.)
#[allow(clippy::manual_async_fn)] // see above
fn slot_task<'a>(
    inbox: Rc<Inbox<(Job, ReplyTo)>>,
    engine: &'a Rc<RefCell<Engine>>,
    state: &'a Rc<RefCell<State>>,
) -> impl std::future::Future<Output = ()> + 'a {
    async move {
        loop {
            let (j, to) = inbox.next().await;
            // Counted out however the query ends (a panic included).
            let _parked = ParkedGuard(state);
            if let Some(resp) = j.run().await {
                let mut eng = engine.borrow_mut();
                let _ = match &to {
                    ReplyTo::Udp(sock, peer) => eng.send_udp(*sock, *peer, &resp),
                    ReplyTo::Tcp(conn) => eng.send_tcp(*conn, &resp),
                };
                // In the runtime's wait: one submit for every reply resumed in this tick.
                super::ring::flush();
            }
        }
    }
}

/// Counts a parked query out when dropped.
struct ParkedGuard<'a>(&'a RefCell<State>);

impl Drop for ParkedGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut st) = self.0.try_borrow_mut() {
            st.parked = st.parked.saturating_sub(1);
        }
    }
}

fn process(
    shared: &Arc<Shared>,
    engine: &Rc<RefCell<Engine>>,
    state: &Rc<RefCell<State>>,
    jobs: &mut Vec<(Job, ReplyTo)>,
    resp: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
    submit: bool,
) -> Instant {
    let active = shared.active.load();
    let mut eng = engine.borrow_mut();
    super::ring::remove_pending(&mut eng);
    let mut st = state.borrow_mut();
    st.set_handoff(&mut eng, &active);
    // The listener of the socket seen last (one lookup per socket and batch, not per query).
    let mut last: Option<(SocketId, &super::handle::ListenerRt, SocketAddr)> = None;
    loop {
        let now = Instant::now();
        let n = eng.poll_events(&mut |h, ev| match ev {
            Event::Udp {
                sock, peer, data, ..
            } => {
                let (l, local) = match last {
                    Some((s, l, local)) if s == sock => (l, local),
                    _ => {
                        let Some((_, label, local)) = st.udp.iter().find(|(s, _, _)| *s == sock)
                        else {
                            return;
                        };
                        let Some(l) = active.find(label) else { return };
                        last = Some((sock, l, *local));
                        (l, *local)
                    }
                };
                let label = &l.label;
                let peer = canonical(peer);
                // miekg's read size (parked queries keep this cut too).
                let data = crate::wire::udp_read(data);
                // *proxyproto*: the header's client; replies go to the sender.
                let Some((data, client)) =
                    crate::plugins::proxyproto::datagram(l.proxy.as_deref(), data, peer)
                else {
                    return;
                };
                let meta = Meta {
                    proto: Proto::Udp,
                    peer: client,
                    local,
                    now,
                };
                match handle(l, data, meta, resp, scratch) {
                    // A stream is TCP-only; over UDP only its first message exists.
                    Outcome::Reply | Outcome::Stream(_) => {
                        if h.send_udp(sock, peer, resp).is_err() {
                            crate::metrics::count_send_drops(label, 1);
                        }
                    }
                    Outcome::Drop => {}
                    Outcome::Parked { block, at, st: rs } => {
                        if st.parked >= MAX_PARKED {
                            return;
                        }
                        st.parked += 1;
                        let job = Job::new(l, block, data, meta, at, rs);
                        jobs.push((job, ReplyTo::Udp(sock, peer)));
                    }
                }
            }
            Event::Accepted {
                listener,
                conn,
                peer,
                local,
            } => {
                let Some((_, label)) = st.tcp.iter().find(|(l, _)| *l == listener) else {
                    h.close_tcp(conn);
                    return;
                };
                let label = label.clone();
                st.conns.insert(
                    conn,
                    Conn {
                        peer: canonical(peer),
                        local: canonical(local),
                        label,
                        queries: 0,
                    },
                );
            }
            Event::Handoff { listener, stream } => {
                if let Some((_, label)) = st.tcp.iter().find(|(l, _)| *l == listener) {
                    let (tx, wake) = &st.handoff;
                    if tx.send(WorkerCmd::Conn(stream, label.clone())).is_ok() {
                        wake.notify_one();
                    }
                }
            }
            Event::TcpClosed { conn } => {
                st.conns.remove(&conn);
            }
            Event::UpstreamUdp { id, data } => super::ring::deliver(id, data),
            Event::UpstreamError { id, error, write } => super::ring::fail(id, &error, write),
            Event::TcpMessage { conn, data } => {
                let parked_now = st.parked;
                let Some(c) = st.conns.get_mut(&conn) else {
                    return;
                };
                let Some(l) = active.find(&c.label) else {
                    // Its listener went with a reload: no close event follows ours.
                    h.close_tcp(conn);
                    st.conns.remove(&conn);
                    return;
                };
                c.queries += 1;
                let limit = l.timeouts.max_tcp_queries;
                let last = limit > 0 && c.queries >= limit;
                let meta = Meta {
                    proto: Proto::Tcp,
                    peer: c.peer,
                    local: c.local,
                    now,
                };
                match handle(l, data, meta, resp, scratch) {
                    Outcome::Reply => {
                        let _ = h.send_tcp(conn, resp);
                    }
                    Outcome::Stream(more) => {
                        let _ = h.send_tcp(conn, resp);
                        // Counted as parked: the worker then runs its tasks.
                        st.parked += 1;
                        let (engine, state) = (Rc::clone(engine), Rc::clone(state));
                        let data = super::bufpool::copy_of(data);
                        tokio::task::spawn_local(async move {
                            // Counted out however it ends (a panic included).
                            let _parked = ParkedGuard(&state);
                            stream_tcp(&engine, conn, &data, more).await;
                        });
                    }
                    Outcome::Drop => {}
                    Outcome::Parked { block, at, st: rs } => {
                        if parked_now >= MAX_PARKED {
                            return;
                        }
                        st.parked += 1;
                        let job = Job::new(l, block, data, meta, at, rs);
                        jobs.push((job, ReplyTo::Tcp(conn)));
                        return;
                    }
                }
                if last {
                    h.close_tcp(conn);
                    st.conns.remove(&conn);
                }
            }
        });
        if !submit {
            // Waiting in the ring: the caller submits these replies with its next
            // wait, which also runs the kernel's task work (one enter per batch).
            return now;
        }
        let _ = eng.submit();
        if n == 0 {
            return now;
        }
    }
}

/// Bytes a zone transfer keeps queued on its connection at most (the engine
/// closes connections past `max_tcp_queue`).
const STREAM_AHEAD: usize = 128 * 1024;

/// Sends the rest of a multi-message reply (a zone transfer) as the
/// connection drains, each message scrubbed as the first one was.
async fn stream_tcp(
    engine: &RefCell<Engine>,
    conn: ConnId,
    request: &[u8],
    mut more: crate::chain::MoreMessages,
) {
    loop {
        {
            let mut eng = engine.borrow_mut();
            loop {
                match eng.tcp_queued(conn) {
                    None => return,
                    Some(q) if q >= STREAM_AHEAD => break,
                    Some(_) => {}
                }
                let Some(mut m) = more.next() else {
                    let _ = eng.submit();
                    return;
                };
                scrub_more(request, &mut m);
                if eng.send_tcp(conn, &m).is_err() {
                    return;
                }
            }
            let _ = eng.submit();
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
}
