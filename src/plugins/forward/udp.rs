//! Connected UDP sockets to one upstream, shared by the in-flight queries of
//! one worker: each query takes a slot in the socket's bounded `slab` with a
//! random 16-bit ID unique on that socket, and replies are matched by ID.
//!
//! On an io_uring worker the socket lives on the worker's own ring
//! (`server::ring`): queries go out in the worker's next batch and replies are
//! handed to [`UdpConn`] (a `Sink`) from its batch of completions.
//!
//! On an epoll worker there is no reader task: one waiting query at a time
//! (the leader) waits for the socket, reads it and hands every datagram to the
//! query it belongs to; a leaving leader hands the role on.
//! Datagrams that are too short or carry an unknown ID are ignored, as
//! CoreDNS ignores them; an ICMP error fails every query on the socket.
//!
//! CoreDNS: `plugin/pkg/proxy/connect.go` (`lookupDNS`'s read loop,
//! `shouldTruncateResponse`), where each query has its own socket instead.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::task::{Poll, Waker};

use slab::Slab;
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::time::Instant;

use super::metrics::{self, InFlight};
use super::proxy::{Fail, go_op_err, random_id};
use crate::server::bufpool::Buf;
use crate::wire::{HEADER_LEN, hdr};

/// In-flight queries per socket.
pub const SLOTS_PER_SOCKET: usize = 512;

/// Queries in flight a new socket has room for before its tables grow: as many as the
/// pool gives a socket before it opens another (half its slots).
const INITIAL_SLOTS: usize = SLOTS_PER_SOCKET / 2;

/// In `State::ids`: the ID of a query that ended without its reply (a timeout, an
/// error). A reply arriving late must not be taken for the reply of a later query
/// given the same ID on this socket (its question would differ: FORMERR to an
/// innocent client), so the ID is not given out again on this socket, and the late
/// reply is dropped. At most [`ROTATE_AFTER`](super::proxy::ROTATE_AFTER) per socket:
/// it takes no more queries than that, and they go with it.
const RETIRED: usize = usize::MAX;

struct Slot {
    id: u16,
    /// Which registration of this slot key it is (deadlines name it).
    seq: u32,
    /// Read limit of the query's client (CoreDNS `UDPSize`).
    size: usize,
    waker: Option<Waker>,
    done: Option<Result<Buf, Fail>>,
}

struct State {
    slots: Slab<Slot>,
    ids: HashMap<u16, usize, IdHash>,
    poller: Option<usize>,
    used: Instant,
    assigned: u32,
    broken: bool,
    /// Each query's read deadline, in order (all share the upstream's `read_timeout`),
    /// expired instead of a timer per query: on the ring by the worker
    /// ([`UdpConn::expire`]), on a tokio socket by the waiter that reads it
    /// ([`UdpConn::wait`]). At most [`ROTATE_AFTER`](super::proxy::ROTATE_AFTER)
    /// entries: a socket takes no more queries than that.
    deadlines: std::collections::VecDeque<(Instant, usize, u32)>,
}

/// How the socket is read and written.
enum Io {
    /// A tokio socket, read by the leading waiter.
    Tokio(UdpSocket),
    /// On the worker's ring.
    Ring(uring::UpstreamId),
}

/// Hashes the random 16-bit IDs: one multiplication instead of SipHash (the IDs are
/// random, so nothing is gained by keying the hash).
#[derive(Default, Clone, Copy)]
struct IdHash;

impl std::hash::BuildHasher for IdHash {
    type Hasher = IdHasher;
    fn build_hasher(&self) -> IdHasher {
        IdHasher(0)
    }
}

#[derive(Default)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u16(&mut self, v: u16) {
        self.0 = u64::from(v).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// One connected UDP socket.
pub struct UdpConn {
    io: Io,
    /// Local address (for error texts).
    pub local: SocketAddr,
    /// The upstream.
    pub remote: SocketAddr,
    /// When it was opened.
    pub created: Instant,
    st: RefCell<State>,
    /// Queries in flight on every socket of this pool (the pool's bound).
    inflight: Arc<InFlight>,
    /// A tokio socket's queries queued while sends are batched ([`batch_sends`]): slot
    /// key, its registration, the query.
    outbox: RefCell<Vec<(usize, u32, Buf)>>,
}

thread_local! {
    /// One set of receive buffers per worker: datagrams are dispatched synchronously.
    static RECV: RefCell<fallback::RecvMany> = RefCell::new(fallback::RecvMany::new(65535));
    /// While set, tokio sockets queue their queries for [`batch_sends`] to send.
    static BATCHING: Cell<bool> = const { Cell::new(false) };
    /// Sockets with queued queries.
    static OUTBOXES: RefCell<Vec<Rc<UdpConn>>> = const { RefCell::new(Vec::new()) };
    static SENDER: RefCell<fallback::SendMany> = RefCell::new(fallback::SendMany::new());
}

/// Runs `f` (an epoll socket loop's run of its parked queries) with the upstream queries
/// it sends on tokio sockets queued, then sends them: one `sendmmsg` per socket instead
/// of one `send` per query.
pub fn batch_sends<R>(f: impl FnOnce() -> R) -> R {
    let was = BATCHING.with(|b| b.replace(true));
    let r = f();
    BATCHING.with(|b| b.set(was));
    if !was {
        flush_sends();
    }
    r
}

/// Sends every queued query.
fn flush_sends() {
    loop {
        let conns = OUTBOXES.with(|o| std::mem::take(&mut *o.borrow_mut()));
        if conns.is_empty() {
            return;
        }
        for c in conns {
            c.flush_outbox();
        }
    }
}

impl UdpConn {
    /// Wraps a connected socket: on the worker's ring when there is one
    /// (`server::ring`), else as a tokio socket.
    pub fn open(
        sock: std::net::UdpSocket,
        local: SocketAddr,
        remote: SocketAddr,
        inflight: Arc<InFlight>,
    ) -> io::Result<Rc<Self>> {
        if !crate::server::ring::active() {
            sock.set_nonblocking(true)?;
            let sock = UdpSocket::from_std(sock)?;
            return Ok(Rc::new(Self::new(Io::Tokio(sock), local, remote, inflight)));
        }
        let id = crate::server::ring::add(sock)?;
        let conn = Rc::new(Self::new(Io::Ring(id), local, remote, inflight));
        let sink: Weak<dyn crate::server::ring::Sink> = Rc::downgrade(&conn) as _;
        crate::server::ring::set_sink(id, sink);
        Ok(conn)
    }

    fn new(io: Io, local: SocketAddr, remote: SocketAddr, inflight: Arc<InFlight>) -> Self {
        let now = Instant::now();
        Self {
            io,
            local,
            remote,
            created: now,
            outbox: RefCell::new(Vec::new()),
            st: RefCell::new(State {
                // Sized for a socket's usual life (it rotates after ROTATE_AFTER
                // queries): no regrowth on the query path.
                slots: Slab::with_capacity(INITIAL_SLOTS),
                ids: HashMap::with_capacity_and_hasher(INITIAL_SLOTS, IdHash),
                poller: None,
                used: now,
                assigned: 0,
                broken: false,
                deadlines: std::collections::VecDeque::with_capacity(
                    super::proxy::ROTATE_AFTER as usize,
                ),
            }),
            inflight,
        }
    }

    /// Queries waiting on this socket.
    pub fn pending(&self) -> usize {
        self.st.borrow().slots.len()
    }

    /// Last time a query was assigned.
    pub fn used(&self) -> Instant {
        self.st.borrow().used
    }

    /// Queries assigned so far.
    pub fn assigned(&self) -> u32 {
        self.st.borrow().assigned
    }

    /// A send failed: take no more queries.
    pub fn broken(&self) -> bool {
        self.st.borrow().broken
    }

    /// Takes a slot with a fresh random ID; `None` when the socket is full.
    /// The query fails at `deadline` unless answered (see `State::deadlines`).
    pub fn register(&self, size: usize, now: Instant, deadline: Instant) -> Option<(usize, u16)> {
        let mut st = self.st.borrow_mut();
        if st.slots.len() >= SLOTS_PER_SOCKET {
            return None;
        }
        let id = loop {
            let id = random_id();
            if !st.ids.contains_key(&id) {
                break id;
            }
        };
        let seq = st.assigned;
        let key = st.slots.insert(Slot {
            id,
            seq,
            size,
            waker: None,
            done: None,
        });
        st.ids.insert(id, key);
        st.deadlines.push_back((deadline, key, seq));
        metrics::inc(&self.inflight.udp);
        st.used = now;
        st.assigned += 1;
        Some((key, id))
    }

    /// Releases a slot (reply taken, timeout, or the query went away).
    pub fn release(&self, key: usize) {
        let mut st = self.st.borrow_mut();
        if let Some(s) = st.slots.try_remove(key) {
            // Still mapped: no reply came (one that came took its ID out).
            if st.ids.get(&s.id) == Some(&key) {
                st.ids.insert(s.id, RETIRED);
            }
            metrics::dec(&self.inflight.udp);
            if s.waker.is_some() {
                self.sleeping(false);
            }
        }
        // Another waiter must lead now: the one woken is made leader at once, so if
        // its query ends before it reads (a failed send), its release hands on too
        // and the sleepers never wait with nobody reading the socket or their
        // deadlines.
        if st.poller == Some(key) {
            st.poller = None;
            if let Some((k, s)) = st.slots.iter_mut().find(|(_, s)| s.waker.is_some()) {
                if let Some(w) = s.waker.take() {
                    w.wake();
                    self.sleeping(false);
                }
                st.poller = Some(k);
            }
        }
    }

    /// Queues the query of slot `key` (the ID is already in it) when sends are batched
    /// ([`batch_sends`]) on a tokio socket; false when it must be sent now ([`Self::send`]).
    /// A failure to send fails the slot's query as `send` would.
    pub fn queue_send(self: &Rc<Self>, key: usize, q: &[u8]) -> bool {
        if !matches!(self.io, Io::Tokio(_)) || !BATCHING.with(Cell::get) {
            return false;
        }
        let Some(seq) = self.st.borrow().slots.get(key).map(|s| s.seq) else {
            return false;
        };
        let mut out = self.outbox.borrow_mut();
        if out.is_empty() {
            OUTBOXES.with(|o| o.borrow_mut().push(Rc::clone(self)));
        }
        out.push((key, seq, crate::server::bufpool::copy_of(q)));
        true
    }

    /// Sends the queued queries; a query the kernel refused fails as [`Self::send`] fails
    /// it, and those the socket buffer cannot take now are sent as it drains.
    fn flush_outbox(self: &Rc<Self>) {
        let Io::Tokio(sock) = &self.io else { return };
        let mut out = std::mem::take(&mut *self.outbox.borrow_mut());
        let mut i = 0;
        while i < out.len() {
            let n = (out.len() - i).min(fallback::BATCH);
            let msgs: [&[u8]; fallback::BATCH] =
                std::array::from_fn(|j| if j < n { &out[i + j].2[..] } else { &[] });
            match SENDER.with(|s| s.borrow_mut().try_send(sock, &msgs[..n])) {
                Ok(0) => break,
                Ok(n) => i += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    let (key, seq, _) = &out[i];
                    self.st.borrow_mut().broken = true;
                    let text = format!(
                        "write udp {}->{}: {}",
                        self.local,
                        self.remote,
                        go_op_err("write", &e)
                    );
                    self.fail_slot(*key, *seq, Fail::io(text));
                    i += 1;
                }
            }
        }
        if i < out.len() {
            // The socket buffer is full: the rest wait for room, as `send` would.
            let rest: Vec<(usize, u32, Buf)> = out.drain(i..).collect();
            let conn = Rc::clone(self);
            tokio::task::spawn_local(async move {
                for (key, seq, q) in rest {
                    if let Err(e) = conn.send(&q).await {
                        conn.fail_slot(key, seq, e);
                    }
                }
            });
        }
        // The outbox keeps its allocation for the next run.
        out.clear();
        let mut outbox = self.outbox.borrow_mut();
        if outbox.is_empty() {
            *outbox = out;
        }
    }

    /// Fails slot `key`'s query, if it is still registration `seq`.
    fn fail_slot(&self, key: usize, seq: u32, e: Fail) {
        let live = self
            .st
            .borrow()
            .slots
            .get(key)
            .is_some_and(|s| s.seq == seq);
        if live {
            self.complete(key, Err(e));
        }
    }

    /// Sends the query (the ID is already in it).
    pub async fn send(&self, q: &[u8]) -> Result<(), Fail> {
        let t = std::time::Duration::from_secs(2);
        let (l, r) = (self.local, self.remote);
        let sock = match &self.io {
            Io::Tokio(s) => s,
            Io::Ring(id) => {
                return crate::server::ring::send(*id, q).map_err(|e| {
                    if e.kind() != io::ErrorKind::WouldBlock {
                        self.st.borrow_mut().broken = true;
                    }
                    Fail::io(format!("write udp {l}->{r}: {}", go_op_err("write", &e)))
                });
            }
        };
        // Almost always immediate: no timer unless the socket buffer is full.
        let res = match sock.try_send(q) {
            // Boxed: the rare wait would otherwise size every parked query's future.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                Box::pin(tokio::time::timeout(t, sock.send(q))).await
            }
            r => Ok(r),
        };
        match res {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => {
                self.st.borrow_mut().broken = true;
                Err(Fail::io(format!(
                    "write udp {l}->{r}: {}",
                    go_op_err("write", &e)
                )))
            }
            Err(_) => Err(Fail::io(format!("write udp {l}->{r}: i/o timeout"))),
        }
    }

    /// Waits for the reply to slot `key`, or its read deadline. One waiter at a
    /// time (the leader) waits for the socket to be readable or to carry an
    /// error (an ICMP unreachable: CoreDNS fails at once with `read:
    /// connection refused`), reads what is queued and dispatches it, and fails
    /// the queries past their deadline (one timer for the socket, at the oldest
    /// deadline, instead of one per query); the others sleep until their reply
    /// or deadline comes or the leader leaves.
    pub async fn wait(&self, key: usize) -> Result<Buf, Fail> {
        let sock = match &self.io {
            Io::Tokio(s) => s,
            Io::Ring(_) => {
                // The ring delivers every datagram to `dispatch`: wait for ours.
                self.sleep(key, false).await;
                return self
                    .take(key)
                    .unwrap_or_else(|| Err(Fail::io("udp: query slot gone")));
            }
        };
        loop {
            if let Some(r) = self.take(key) {
                return r;
            }
            let lead = {
                let mut st = self.st.borrow_mut();
                match st.poller {
                    None => {
                        st.poller = Some(key);
                        true
                    }
                    Some(p) => p == key,
                }
            };
            if !lead {
                self.sleep(key, true).await;
                continue;
            }
            if self.drain() {
                // A full batch: let other tasks run before reading on (deadlines
                // still pass, however many datagrams arrive).
                self.expire_before(Instant::now());
                tokio::task::yield_now().await;
                continue;
            }
            if let Some(r) = self.take(key) {
                return r;
            }
            // The oldest deadline first: answered queries' entries are dropped on the way.
            self.expire_before(Instant::now());
            if let Some(r) = self.take(key) {
                return r;
            }
            let oldest = self.st.borrow().deadlines.front().map(|d| d.0);
            let ready = sock.ready(Interest::READABLE | Interest::ERROR);
            let ready = match oldest {
                Some(at) => tokio::select! {
                    r = ready => r,
                    () = tokio::time::sleep_until(at) => continue,
                },
                None => ready.await,
            };
            if let Ok(r) = ready {
                if r.is_error() {
                    // Clear the error readiness, then take the socket error
                    // (SO_ERROR) as Go's read would.
                    let _ = sock.try_io(Interest::ERROR, || {
                        Err::<(), _>(io::ErrorKind::WouldBlock.into())
                    });
                    if let Ok(Some(e)) = sock.take_error() {
                        self.fail_read(&e);
                    }
                }
            }
        }
    }

    /// Sleeps until slot `key` is done (or gone) or, with `or_unled`, nobody leads or
    /// it was made leader.
    async fn sleep(&self, key: usize, or_unled: bool) {
        poll_fn(|cx| {
            let mut st = self.st.borrow_mut();
            // Nobody leads, or this waiter was made leader.
            let unled = or_unled && st.poller.is_none_or(|p| p == key);
            match st.slots.get_mut(key) {
                Some(s) if s.done.is_none() && !unled => {
                    if s.waker.replace(cx.waker().clone()).is_none() {
                        self.sleeping(true);
                    }
                    Poll::Pending
                }
                _ => Poll::Ready(()),
            }
        })
        .await;
    }

    /// Reads and dispatches queued datagrams; true if the batch was full.
    fn drain(&self) -> bool {
        let Io::Tokio(sock) = &self.io else {
            return false;
        };
        RECV.with(|r| {
            let mut r = r.borrow_mut();
            for _ in 0..2 {
                match r.try_recv(sock, |d| self.dispatch(d)) {
                    Ok(n) if n == fallback::BATCH => {}
                    Ok(_) => return false,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                    Err(e) => self.fail_read(&e),
                }
            }
            true
        })
    }

    fn take(&self, key: usize) -> Option<Result<Buf, Fail>> {
        self.st.borrow_mut().slots.get_mut(key)?.done.take()
    }

    fn complete(&self, key: usize, r: Result<Buf, Fail>) {
        let mut st = self.st.borrow_mut();
        if let Some(s) = st.slots.get_mut(key) {
            if s.done.is_none() {
                s.done = Some(r);
                if let Some(w) = s.waker.take() {
                    w.wake();
                    self.sleeping(false);
                }
            }
        }
    }

    /// True when the worker's ring reads this socket.
    pub fn on_ring(&self) -> bool {
        matches!(self.io, Io::Ring(_))
    }

    /// Fails the queries whose read deadline has passed, with Go's timeout text (a
    /// Go read past its deadline).
    fn expire_before(&self, now: Instant) {
        loop {
            let key = {
                let mut st = self.st.borrow_mut();
                let Some(&(at, key, seq)) = st.deadlines.front() else {
                    return;
                };
                if at > now {
                    return;
                }
                st.deadlines.pop_front();
                match st.slots.get(key) {
                    Some(s) if s.seq == seq && s.done.is_none() => key,
                    _ => continue,
                }
            };
            let text = format!("read udp {}->{}: i/o timeout", self.local, self.remote);
            self.complete(key, Err(Fail::io(text)));
        }
    }

    /// Counts a ring query starting or stopping to wait (`server::ring::sleepers`).
    fn sleeping(&self, on: bool) {
        if self.on_ring() {
            crate::server::ring::sleeping(on);
        }
    }

    fn fail_read(&self, e: &io::Error) {
        let text = format!(
            "read udp {}->{}: {}",
            self.local,
            self.remote,
            go_op_err("read", e)
        );
        self.fail_all(&text);
    }

    fn fail_all(&self, text: &str) {
        let keys: Vec<usize> = self.st.borrow().slots.iter().map(|(k, _)| k).collect();
        for k in keys {
            self.complete(k, Err(Fail::io(text.to_owned())));
        }
    }

    /// Hands a datagram to its query, CoreDNS's way: short reads and unknown
    /// IDs are ignored; a reply cut at the client's size becomes an empty
    /// reply with TC set.
    fn dispatch(&self, dgram: &[u8]) {
        if dgram.len() < HEADER_LEN {
            return;
        }
        let id = hdr::id(dgram);
        let (key, size) = {
            let mut st = self.st.borrow_mut();
            // The first datagram with a pending query's ID is its reply (later ones,
            // duplicates, are dropped); one for a query that gave up is dropped too.
            let Some(key) = st.ids.remove(&id) else {
                return;
            };
            let Some(size) = st.slots.get(key).map(|s| s.size) else {
                return;
            };
            (key, size)
        };
        let m = &dgram[..dgram.len().min(size)];
        self.complete(key, super::proxy::check_udp_reply(m));
    }
}

impl crate::server::ring::Sink for UdpConn {
    fn datagram(&self, data: &[u8]) {
        self.dispatch(data);
    }

    fn expire(&self, now: std::time::Instant) {
        self.expire_before(Instant::from_std(now));
    }

    fn error(&self, e: &io::Error, write: bool) {
        if write {
            // A send the kernel failed: this socket takes no more queries (as a
            // failed `try_send` marks it), and the queries on it fail as CoreDNS's would.
            self.st.borrow_mut().broken = true;
            let text = format!(
                "write udp {}->{}: {}",
                self.local,
                self.remote,
                go_op_err("write", e)
            );
            self.fail_all(&text);
        } else {
            self.fail_read(e);
        }
    }
}

impl Drop for UdpConn {
    fn drop(&mut self) {
        if let Io::Ring(id) = self.io {
            crate::server::ring::remove(id);
        }
    }
}

/// Removes the slot when the query is done or dropped.
pub struct SlotGuard<'a> {
    /// The socket.
    pub conn: &'a UdpConn,
    /// The slot.
    pub key: usize,
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        self.conn.release(self.key);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    /// A tokio upstream socket connected to a plain socket standing for the upstream
    /// (call inside a runtime).
    fn connected() -> (std::net::UdpSocket, Rc<UdpConn>) {
        let up = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let remote = up.local_addr().expect("addr");
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        sock.connect(remote).expect("connect");
        let local = sock.local_addr().expect("addr");
        let conn = UdpConn::open(sock, local, remote, Arc::default()).expect("open");
        (up, conn)
    }

    fn id_of(conn: &UdpConn, key: usize) -> u16 {
        conn.st.borrow().slots[key].id
    }

    fn reply(id: u16) -> Vec<u8> {
        let mut m = id.to_be_bytes().to_vec();
        m.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0]);
        m.extend_from_slice(b"\x01a\x00\x00\x01\x00\x01");
        m
    }

    /// An ID whose query ended without a reply is not given out again on its socket,
    /// and its late reply is dropped; an answered query's ID is free at once.
    #[test]
    fn late_replies_never_meet_a_later_query() {
        rt().block_on(async {
            let (_up, conn) = connected();
            let now = Instant::now();
            let far = now + Duration::from_secs(60);
            // Timed out: retired.
            let (k1, id1) = conn.register(512, now, far).expect("slot");
            conn.release(k1);
            assert_eq!(conn.st.borrow().ids.get(&id1), Some(&RETIRED));
            // Answered: its ID leaves the table with the reply.
            let (k2, id2) = conn.register(512, now, far).expect("slot");
            conn.dispatch(&reply(id2));
            assert!(conn.take(k2).is_some_and(|r| r.is_ok()));
            assert!(!conn.st.borrow().ids.contains_key(&id2));
            conn.release(k2);
            assert!(!conn.st.borrow().ids.contains_key(&id2));
            // Later queries never get the retired ID.
            let keys: Vec<usize> = (0..400)
                .map(|_| conn.register(512, now, far).expect("slot").0)
                .collect();
            assert!(keys.iter().all(|&k| id_of(&conn, k) != id1));
            // The late reply is dropped, not delivered to any of them.
            conn.dispatch(&reply(id1));
            assert!(keys.iter().all(|&k| conn.take(k).is_none()));
            assert!(!conn.st.borrow().ids.contains_key(&id1));
            for k in keys {
                conn.release(k);
            }
        });
    }

    /// On a tokio socket the waiters share one timer: each query fails with Go's
    /// timeout text at its own deadline, whether it reads the socket (leads) or
    /// sleeps, a reply still reaches the query it is for, and the slab ends empty.
    #[test]
    fn tokio_socket_queries_fail_at_their_own_deadlines() {
        rt().block_on(async {
            let (up, conn) = connected();
            let (local, remote) = (conn.local, conn.remote);
            assert!(!conn.on_ring());
            let t0 = Instant::now();
            let ms = Duration::from_millis;
            // Deadlines 300, 600 and 900 ms out; the second is answered at 450 ms.
            let slots: Vec<(usize, u16)> = [300, 600, 900]
                .iter()
                .map(|&d| conn.register(512, t0, t0 + ms(d)).expect("slot"))
                .collect();
            let answered = slots[1].1;
            let wait = |k: usize| {
                let conn = &conn;
                async move {
                    let r = conn.wait(k).await;
                    conn.release(k);
                    (
                        r.map(|_| ()).map_err(|e| e.text().to_string()),
                        t0.elapsed(),
                    )
                }
            };
            let answer = async {
                tokio::time::sleep(ms(450)).await;
                up.send_to(&reply(answered), local).expect("send");
            };
            let (a, b, c, ()) =
                tokio::join!(wait(slots[0].0), wait(slots[1].0), wait(slots[2].0), answer);
            let results = [a, b, c];
            let timeout = format!("read udp {local}->{remote}: i/o timeout");
            for (i, (r, at)) in results.iter().enumerate() {
                match i {
                    1 => assert!(
                        r.is_ok() && *at >= ms(440) && *at < ms(600),
                        "{i}: {r:?} {at:?}"
                    ),
                    _ => {
                        let due = ms([300, 600, 900][i]);
                        assert_eq!(r.as_ref().err(), Some(&timeout), "{i}");
                        assert!(*at >= due - ms(5) && *at < due + ms(250), "{i}: at {at:?}");
                    }
                }
            }
            assert_eq!(conn.pending(), 0);
            assert!(conn.st.borrow().poller.is_none());
        });
    }
}
