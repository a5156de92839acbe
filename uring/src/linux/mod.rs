//! The Linux engine: one io_uring per worker thread driving UDP sockets, TCP listeners and
//! their connections.
//!
//! Layout: [`Engine`] holds the receive buffer ring (`rx`) apart from everything else
//! (`Core`), so a datagram borrowed from `rx` can be handed to the callback together with an
//! [`EngineHandle`] over `Core` that queues replies. Every submitted operation is counted in
//! `Core::inflight` until its last completion (a quiet UDP send, which posts a completion only
//! if it fails, until the kernel has taken it: see `Core::confirm_sends`); dropping the engine
//! cancels them all and waits
//! for that count to reach zero before any memory the kernel knows about is freed (tokio-uring
//! keeps such memory as "ignored" for the same reason). UDP lives in `udp.rs`, TCP in
//! `tcp.rs`.

mod addr;
mod mem;
mod probe;
mod ring;
mod tcp;
mod udp;
mod upstream;

pub use probe::probe;

use std::cell::Cell;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Write};
use std::marker::PhantomData;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use io_uring::{IoUring, cqueue, opcode, squeue, types};

use self::mem::{BufRing, SendSlots};
use self::ring::{Cqe, Kind};
use crate::{ConnId, EngineConfig, Event, ListenerId, SocketId, Stats, UpstreamId};

/// The callback of [`Engine::poll_events`].
type Callback<'f> = dyn FnMut(&mut EngineHandle<'_>, Event<'_>) + 'f;

/// Buffer group of the UDP receive buffers.
const UDP_BGID: u16 = 0;
/// Bytes a multishot `RecvMsg` puts before the payload: `struct io_uring_recvmsg_out`
/// (16 bytes) and the fixed-size source address.
const RECV_HEADER: u32 = 16 + addr::NAME_LEN;
/// Completions copied out of the ring at a time.
const CHUNK: usize = 64;
/// Registered (fixed) file slots per ring, for UDP sockets.
const FIXED_FILES: u32 = 1024;
/// Delay before re-arming a receive or accept that failed with an unexpected error.
const BACKOFF: Duration = Duration::from_millis(100);
/// How long dropping an engine waits for the kernel to finish every operation.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// The io_uring packet engine of one worker thread. Not `Send`: the ring is set up for a
/// single issuer, so create, use and drop it on one thread.
pub struct Engine {
    // Field order is drop order: the ring (inside `core`) goes before the buffers it used.
    core: Core,
    rx: BufRing,
    /// Completions copied out of the ring for dispatch (kept, not zeroed per reap).
    cqes: Box<[Cqe; CHUNK]>,
    _not_send: PhantomData<*mut ()>,
}

/// The send side of the engine, handed to the [`Engine::poll_events`] callback while a
/// received buffer is borrowed.
pub struct EngineHandle<'a> {
    core: &'a mut Core,
}

/// Everything but the receive buffers.
struct Core {
    ring: IoUring,
    defer_taskrun: bool,
    taskrun_flag: bool,
    cq_capacity: usize,
    cfg: EngineConfig,
    /// Operations submitted (or queued) whose last completion has not been reaped (quiet
    /// sends: not yet taken by the kernel).
    inflight: u64,
    /// Dropping: no operation is armed any more.
    closing: bool,
    /// `user_data` of receives/accepts to arm again once the submission queue has room.
    retry: Vec<u64>,
    /// The `msghdr` of every multishot `RecvMsg` (only the name length matters).
    recv_hdr: Box<libc::msghdr>,
    backoff_ts: Box<types::Timespec>,
    idle_ts: Box<types::Timespec>,
    /// The first-message `LinkTimeout` of a TCP `Recv` (CoreDNS's read timeout).
    read_ts: Box<types::Timespec>,
    write_ts: Box<types::Timespec>,
    udp: Vec<udp::UdpSock>,
    /// Upstream sockets, and the slots free for reuse.
    upstreams: Vec<upstream::UpSock>,
    upstream_free: Vec<u32>,
    /// Sockets of removed upstream slots (and their fixed-file slots), closed after the
    /// next submit.
    to_close: Vec<(UdpSocket, Option<u32>)>,
    /// Free registered-file slots (none if the kernel could not register a table). A UDP
    /// socket with a slot is named by it: the kernel skips its descriptor lookup and
    /// reference count per operation.
    fixed_free: Vec<u32>,
    /// Per send slot: the upstream socket whose query it carries (`None` for a
    /// reply), to report a failed send.
    send_owner: Vec<Option<UpstreamId>>,
    listeners: Vec<tcp::Listener>,
    conns: tcp::Conns,
    slots: SendSlots,
    /// UDP replies go out as `Send` with a destination rather than `SendMsg`.
    send_to: bool,
    /// UDP sends are quiet (`IOSQE_CQE_SKIP_SUCCESS`, Linux 5.17, with `MSG_DONTWAIT`): a
    /// send never waits in the kernel, so it is done when the kernel has taken its
    /// submission, and only a failed one posts a completion.
    quiet_sends: bool,
    /// Submissions queued so far (the position of the next one).
    pushed: u64,
    /// Quiet sends whose submission the kernel may not have taken yet: (position, slot).
    unconfirmed: Vec<(u64, u32)>,
    /// Connections the engine closed, to report as [`Event::TcpClosed`].
    closed: VecDeque<ConnId>,
    stats: Stats,
    notify: File,
    notify_used: Cell<bool>,
    /// The caller waits in the ring itself for now ([`Engine::set_notify`]): the kernel does
    /// not signal the eventfd and reaping does not reset it.
    notify_off: bool,
    /// `submit_and_wait` returned and nothing was reaped since: the kernel has
    /// just run the task work, so reaping need not enter it again.
    waited: bool,
}

/// A zeroed `msghdr` asking for `name_len` bytes of source address and no control data.
fn recv_template(name_len: u32) -> libc::msghdr {
    // SAFETY: msghdr is a plain C struct for which all-zero bytes are valid (null pointers,
    // zero lengths).
    let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
    hdr.msg_namelen = name_len;
    hdr
}

/// How an operation names its socket.
#[derive(Clone, Copy, Debug)]
pub(super) enum Target {
    Fd(RawFd),
    /// A registered-file slot.
    Fixed(u32),
}

impl Target {
    pub(super) fn of(fd: RawFd, fixed: Option<u32>) -> Self {
        fixed.map_or(Self::Fd(fd), Self::Fixed)
    }
}

/// Builds `$op` on `$target`, naming it `$fd` (a `types::Fd` or `types::Fixed`).
macro_rules! on_target {
    ($target:expr, |$fd:ident| $op:expr) => {
        match $target {
            Target::Fd(f) => {
                let $fd = io_uring::types::Fd(f);
                $op
            }
            Target::Fixed(i) => {
                let $fd = io_uring::types::Fixed(i);
                $op
            }
        }
    };
}
pub(super) use on_target;

impl Core {
    /// Registers `fd` in a free fixed-file slot; `None` if none is free or the kernel refuses.
    pub(super) fn fix(&mut self, fd: RawFd) -> Option<u32> {
        let slot = self.fixed_free.pop()?;
        match self.ring.submitter().register_files_update(slot, &[fd]) {
            Ok(1) => Some(slot),
            _ => {
                self.fixed_free.push(slot);
                None
            }
        }
    }

    /// Empties fixed-file slot `slot` (operations already issued keep their file).
    pub(super) fn unfix(&mut self, slot: u32) {
        // A slot the kernel would not empty is not reused.
        if self
            .ring
            .submitter()
            .register_files_update(slot, &[-1])
            .is_ok()
        {
            self.fixed_free.push(slot);
        }
    }
}

/// A non-blocking, close-on-exec eventfd.
fn eventfd() -> io::Result<File> {
    // SAFETY: eventfd takes no pointers; the result is checked below.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor that nothing else owns.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Clamps a configuration to what the kernel and DNS allow.
fn normalize(mut cfg: EngineConfig) -> EngineConfig {
    cfg.entries = cfg.entries.clamp(8, 32768);
    let bufs = u32::from(cfg.udp_buf_count.max(1))
        .next_power_of_two()
        .min(32768);
    cfg.udp_buf_count = bufs as u16;
    cfg.udp_buf_size = cfg.udp_buf_size.clamp(1, 65535);
    cfg.send_slots = cfg.send_slots.max(1);
    cfg.udp_send_size = cfg.udp_send_size.clamp(1, 65535);
    cfg.max_tcp_msg = cfg.max_tcp_msg.clamp(1, 65535);
    cfg.max_tcp_queue = cfg.max_tcp_queue.max(cfg.max_tcp_msg + 2);
    cfg.tcp_read_timeout = cfg.tcp_read_timeout.max(Duration::from_millis(1));
    cfg.tcp_idle_timeout = cfg.tcp_idle_timeout.max(Duration::from_millis(1));
    cfg.tcp_write_timeout = cfg.tcp_write_timeout.max(Duration::from_millis(1));
    cfg
}

fn noop(_: &mut EngineHandle<'_>, _: Event<'_>) {}

impl Engine {
    /// Sets up a ring (single issuer with deferred task work when the kernel has it, falling
    /// back to cooperative task work, then to none), the UDP buffer ring, the send slots and
    /// the notification eventfd.
    pub fn new(cfg: EngineConfig) -> io::Result<Self> {
        Self::with_setup(cfg, 0)
    }

    /// [`Engine::new`], trying ring setups from number `first` on (see `ring::build`).
    fn with_setup(cfg: EngineConfig, first: u8) -> io::Result<Self> {
        let cfg = normalize(cfg);
        let cq = cfg
            .entries
            .saturating_mul(4)
            .max(u32::from(cfg.udp_buf_count) * 2);
        // Memory first: on an early return the ring, declared last, is dropped first.
        let rx = BufRing::new(cfg.udp_buf_count, RECV_HEADER + cfg.udp_buf_size, UDP_BGID)?;
        let slots = SendSlots::new(cfg.send_slots, cfg.udp_send_size)?;
        let notify = eventfd()?;
        let setup = ring::build(cfg.entries, cq, first)?;
        rx.register(&setup.ring.submitter())?;
        setup
            .ring
            .submitter()
            .register_eventfd(notify.as_raw_fd())?;
        // Sparse table (Linux 5.19); without it sockets are named by descriptor.
        let fixed_free = match setup.ring.submitter().register_files_sparse(FIXED_FILES) {
            Ok(()) => (0..FIXED_FILES).rev().collect(),
            Err(_) => Vec::new(),
        };
        let cq_capacity = setup.ring.params().cq_entries() as usize;
        let quiet_sends = setup.ring.params().is_feature_skip_cqe_on_success();
        let conns = tcp::Conns::new(cfg.max_tcp_conns, cfg.max_tcp_msg);
        let send_slots = cfg.send_slots as usize;
        let core = Core {
            ring: setup.ring,
            defer_taskrun: setup.defer_taskrun,
            taskrun_flag: setup.taskrun_flag,
            cq_capacity,
            backoff_ts: Box::new(BACKOFF.into()),
            idle_ts: Box::new(cfg.tcp_idle_timeout.into()),
            read_ts: Box::new(cfg.tcp_read_timeout.into()),
            write_ts: Box::new(cfg.tcp_write_timeout.into()),
            cfg,
            inflight: 0,
            closing: false,
            retry: Vec::new(),
            recv_hdr: Box::new(recv_template(addr::NAME_LEN)),
            udp: Vec::new(),
            upstreams: Vec::new(),
            upstream_free: Vec::new(),
            to_close: Vec::new(),
            fixed_free,
            send_owner: vec![None; send_slots],
            listeners: Vec::new(),
            conns,
            slots,
            send_to: probe::send_to_supported(),
            quiet_sends,
            pushed: 0,
            unconfirmed: Vec::new(),
            closed: VecDeque::new(),
            stats: Stats::default(),
            notify,
            notify_used: Cell::new(false),
            notify_off: false,
            waited: false,
        };
        Ok(Self {
            core,
            rx,
            cqes: Box::new([Cqe::default(); CHUNK]),
            _not_send: PhantomData,
        })
    }

    /// Takes ownership of a bound UDP socket (switched to blocking mode, which io_uring
    /// prefers) and arms a multishot `RecvMsg` over the provided buffer ring. The receive is
    /// re-armed whenever the kernel ends it.
    pub fn add_udp(&mut self, sock: UdpSocket) -> io::Result<SocketId> {
        self.core.add_udp(sock)
    }

    /// Takes ownership of a listening TCP socket and arms a multishot accept, re-armed
    /// whenever the kernel ends it. Beyond `max_tcp_conns` open connections, new ones are
    /// closed at once.
    pub fn add_tcp_listener(&mut self, l: TcpListener) -> io::Result<ListenerId> {
        self.core.add_tcp_listener(l)
    }

    /// With `on`, the listener's new connections are handed to the caller as
    /// [`Event::Handoff`] (the socket in blocking mode, as accepted) instead of being
    /// served by the engine; without, they are served again.
    pub fn set_tcp_handoff(&mut self, id: ListenerId, on: bool) {
        self.core.set_tcp_handoff(id, on);
    }

    /// Queues a UDP reply: copies `data` into a free send slot. `Err(WouldBlock)` when every
    /// slot is in flight (the caller drops the reply; counted in
    /// [`Stats::udp_send_slot_exhausted`]), `Err(InvalidInput)` for an unknown socket or a
    /// reply longer than `udp_send_size`.
    pub fn send_udp(&mut self, sock: SocketId, peer: SocketAddr, data: &[u8]) -> io::Result<()> {
        self.core.send_udp(sock, peer, data)
    }

    /// Takes ownership of a connected UDP socket to an upstream (switched to blocking mode) and
    /// arms a multishot `RecvMsg` on it: every datagram it receives is reported as
    /// [`Event::UpstreamUdp`], errors as [`Event::UpstreamError`].
    pub fn add_upstream_udp(&mut self, sock: UdpSocket) -> io::Result<UpstreamId> {
        self.core.add_upstream(sock)
    }

    /// Queues a datagram on an upstream socket (copied into a send slot, submitted with the
    /// next batch). `Err(NotConnected)` for a removed socket, `Err(WouldBlock)` when every send
    /// slot is in flight. A send the kernel fails is reported as [`Event::UpstreamError`].
    pub fn send_upstream_udp(&mut self, id: UpstreamId, data: &[u8]) -> io::Result<()> {
        self.core.send_upstream(id, data)
    }

    /// Removes an upstream socket: no event is reported for it any more, and it is closed
    /// once the kernel has ended its receive.
    pub fn remove_upstream_udp(&mut self, id: UpstreamId) {
        self.core.remove_upstream(id);
    }

    /// Queues a TCP reply (the engine adds the length prefix). Replies go out in order, partial
    /// writes are resumed. `Err(NotConnected)` for a closed connection; when the connection's
    /// queue would exceed `max_tcp_queue` it is closed, `Err(ConnectionAborted)` is returned
    /// and [`Event::TcpClosed`] reported.
    pub fn send_tcp(&mut self, conn: ConnId, data: &[u8]) -> io::Result<()> {
        self.core.send_tcp(conn, data)
    }

    /// Closes a connection once the replies already queued are written (bounded by the write
    /// timeout). The id is invalid at once; no [`Event::TcpClosed`] follows.
    pub fn close_tcp(&mut self, conn: ConnId) {
        self.core.close_tcp(conn);
    }

    /// Bytes queued for a connection and not yet written (length prefixes included), `None`
    /// once it is closed. Lets a caller stream a long reply (a zone transfer) without
    /// exceeding `max_tcp_queue`.
    pub fn tcp_queued(&self, conn: ConnId) -> Option<usize> {
        self.core.tcp_queued(conn)
    }

    /// Submits everything queued in one `io_uring_enter` and waits for at least
    /// `min_complete` completions or `timeout`. A timeout or a signal is not an error.
    pub fn submit_and_wait(
        &mut self,
        min_complete: usize,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        self.core.flush_retry();
        self.rx.publish();
        let r = ring::submit_wait(&self.core.ring, min_complete, timeout);
        self.core.confirm_sends();
        self.core.waited = min_complete > 0;
        self.core.close_freed();
        r
    }

    /// Submits everything queued without waiting.
    pub fn submit(&mut self) -> io::Result<()> {
        self.submit_and_wait(0, None)
    }

    /// Reaps the available completions, calling `f` for each event; internal completions
    /// (sends done, re-arms, timers) are handled silently. `f` gets an [`EngineHandle`] to
    /// queue replies while the event's data is borrowed. Returns the number of events.
    pub fn poll_events(&mut self, f: &mut dyn FnMut(&mut EngineHandle<'_>, Event<'_>)) -> usize {
        self.reap(f)
    }

    /// An eventfd that becomes readable when completions are pending, for the daemon to wait
    /// on (tokio `AsyncFd`) next to its timers. [`Engine::poll_events`] resets it (and, with
    /// deferred task work, is what posts the completions). Queued operations reach the kernel
    /// only on [`Engine::submit`], so the loop is: wait for readable, `poll_events`, `submit`.
    /// Wake-ups may be spurious.
    pub fn notify_fd(&self) -> RawFd {
        self.core.notify_used.set(true);
        self.core.notify.as_raw_fd()
    }

    /// Turns the eventfd's signalling off while the caller waits in the ring itself
    /// ([`Engine::submit_and_wait`]), and on again before it waits on the eventfd: the kernel
    /// then skips a wake-up per batch of completions and reaping skips a `read`. Turning it
    /// on makes the eventfd readable once, so what arrived while it was off is looked at.
    pub fn set_notify(&mut self, on: bool) {
        let core = &mut self.core;
        if !core.notify_used.get() || core.notify_off != on {
            return;
        }
        if on {
            core.ring.completion().enable_eventfd();
            core.notify_off = false;
            let _ = (&core.notify).write(&1u64.to_ne_bytes());
        } else {
            core.ring.completion().disable_eventfd();
            core.notify_off = true;
        }
    }

    /// The engine's counters.
    pub fn stats(&self) -> Stats {
        self.core.stats
    }

    /// How the ring was set up, for the daemon's backend log line.
    pub fn mode(&self) -> &'static str {
        match (self.core.defer_taskrun, self.core.taskrun_flag) {
            (true, _) => "io_uring (single issuer, deferred task work)",
            (false, true) => "io_uring (cooperative task work)",
            (false, false) => "io_uring",
        }
    }

    /// The send side, as given to the [`Engine::poll_events`] callback.
    pub fn handle(&mut self) -> EngineHandle<'_> {
        EngineHandle {
            core: &mut self.core,
        }
    }

    /// Cancels every operation, waits until the kernel has completed all of them, then frees
    /// the buffers and closes the sockets. Dropping the engine does the same.
    pub fn shutdown(self) {
        drop(self);
    }

    /// Copies completions out of the ring in chunks and dispatches them; at most one
    /// completion-queue's worth per call so a flood cannot starve the caller.
    fn reap(&mut self, f: &mut Callback<'_>) -> usize {
        let Self { core, rx, cqes, .. } = self;
        let notify = core.notify_used.get() && !core.notify_off;
        if notify {
            // Reset before looking for task work: with deferred task work the kernel signals
            // only when its list goes from empty to non-empty, so a signal consumed after the
            // check below could leave work pending with nothing to wake the daemon. (Work
            // already run below may leave a spurious wake-up instead, which is harmless.)
            let mut counter = [0u8; 8];
            // Non-blocking: EAGAIN just means nothing was signalled.
            let _ = (&core.notify).read(&mut counter);
        }
        let mut delivered = core.deliver_closed(f);
        {
            let sq = core.ring.submission();
            // Task work must run (and overflowed completions be flushed) in the kernel before
            // their completions show: always needed with deferred task work unless the
            // kernel flags it, and when flagged with cooperative task work.
            // Right after a wait the task work has just run: reap what it posted
            // and let the caller's next submit-and-wait run the rest, so replies
            // are not held back by more receiving.
            let enter = sq.cq_overflow()
                || (!core.waited
                    && ((core.taskrun_flag && sq.taskrun())
                        || (core.defer_taskrun && !core.taskrun_flag)));
            core.waited = false;
            drop(sq);
            if enter {
                let _ = ring::get_events(&core.ring);
            }
        }
        let mut seen = 0;
        loop {
            let batch = &mut **cqes;
            let mut n = 0;
            {
                let mut cq = core.ring.completion();
                while n < CHUNK {
                    let Some(e) = cq.next() else { break };
                    batch[n] = Cqe {
                        user_data: e.user_data(),
                        res: e.result(),
                        flags: e.flags(),
                    };
                    n += 1;
                }
            }
            for c in &batch[..n] {
                delivered += core.dispatch(rx, *c, f);
                delivered += core.deliver_closed(f);
            }
            rx.publish();
            seen += n;
            if seen >= core.cq_capacity {
                break;
            }
            if n < CHUNK {
                if !core.ring.submission().cq_overflow() {
                    break;
                }
                let _ = ring::get_events(&core.ring);
            }
        }
        core.flush_retry();
        rx.publish();
        if notify && !core.ring.completion().is_empty() {
            // Stopped early: keep the eventfd readable for what is left.
            let _ = (&core.notify).write(&1u64.to_ne_bytes());
        }
        delivered
    }

    /// Cancels everything and waits for every last completion; leaks the kernel-visible
    /// memory if the kernel does not finish within [`DRAIN_LIMIT`].
    fn drain(&mut self) {
        self.core.closing = true;
        self.core.retry.clear();
        let deadline = Instant::now() + DRAIN_LIMIT;
        let mut last_cancel: Option<Instant> = None;
        while self.core.inflight > 0 {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            if last_cancel.is_none_or(|t| now - t >= Duration::from_millis(200)) {
                let cancel = opcode::AsyncCancel2::new(types::CancelBuilder::any())
                    .build()
                    .user_data(ring::tag(Kind::Cancel, 0));
                // SAFETY: a cancel request references no memory.
                let _ = unsafe { self.core.push(&cancel) };
                last_cancel = Some(now);
            }
            let wait = ring::submit_wait(&self.core.ring, 1, Some(Duration::from_millis(50)));
            self.core.confirm_sends();
            if wait.is_err() {
                break;
            }
            self.reap(&mut noop);
        }
        // The registered-file table holds the sockets too: release it now, so they are closed
        // when the engine is gone (the ring itself is torn down asynchronously).
        // (An error only means no table was registered.)
        let _ = self.core.ring.submitter().unregister_files();
        if self.core.inflight > 0 {
            // The kernel may still read or write these: keep them forever.
            self.rx.leak();
            self.core.slots.leak();
            self.core.conns.leak();
            let core = &mut self.core;
            std::mem::forget(std::mem::replace(
                &mut core.recv_hdr,
                Box::new(recv_template(0)),
            ));
            for ts in [
                &mut core.backoff_ts,
                &mut core.idle_ts,
                &mut core.read_ts,
                &mut core.write_ts,
            ] {
                std::mem::forget(std::mem::take(ts));
            }
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.drain();
    }
}

impl EngineHandle<'_> {
    /// See [`Engine::send_udp`].
    pub fn send_udp(&mut self, sock: SocketId, peer: SocketAddr, data: &[u8]) -> io::Result<()> {
        self.core.send_udp(sock, peer, data)
    }

    /// See [`Engine::send_tcp`].
    pub fn send_tcp(&mut self, conn: ConnId, data: &[u8]) -> io::Result<()> {
        self.core.send_tcp(conn, data)
    }

    /// See [`Engine::send_upstream_udp`].
    pub fn send_upstream_udp(&mut self, id: UpstreamId, data: &[u8]) -> io::Result<()> {
        self.core.send_upstream(id, data)
    }

    /// See [`Engine::close_tcp`].
    pub fn close_tcp(&mut self, conn: ConnId) {
        self.core.close_tcp(conn);
    }

    /// See [`Engine::stats`].
    pub fn stats(&self) -> Stats {
        self.core.stats
    }
}

impl Core {
    /// Queues one submission, handing the queue to the kernel first if it is full.
    ///
    /// # Safety
    ///
    /// Every pointer in `sqe` must stay valid, and the memory it names must not be written
    /// (or, for buffers the kernel fills, accessed) by Rust until the operation's last
    /// completion has been reaped.
    unsafe fn push(&mut self, sqe: &squeue::Entry) -> io::Result<()> {
        for _ in 0..2 {
            // SAFETY: the caller's contract.
            if unsafe { self.ring.submission().push(sqe) }.is_ok() {
                self.inflight += 1;
                self.pushed += 1;
                return Ok(());
            }
            self.ring.submit()?;
            self.confirm_sends();
        }
        Err(io::ErrorKind::WouldBlock.into())
    }

    /// Queues `op` linked to the `LinkTimeout` `timer`, adjacent in the queue.
    ///
    /// # Safety
    ///
    /// As [`Core::push`], for both entries.
    unsafe fn push_linked(&mut self, op: squeue::Entry, timer: squeue::Entry) -> io::Result<()> {
        // A quiet send is done once the kernel has taken it only when it is issued then: a
        // linked one would be issued after its predecessor completes.
        debug_assert!(!matches!(
            ring::untag(op.get_user_data()),
            Some((Kind::UdpSendQuiet | Kind::UpSendQuiet, _))
        ));
        let pair = [op.flags(squeue::Flags::IO_LINK), timer];
        for _ in 0..2 {
            // SAFETY: the caller's contract.
            if unsafe { self.ring.submission().push_multiple(&pair) }.is_ok() {
                self.inflight += 2;
                self.pushed += 2;
                return Ok(());
            }
            self.ring.submit()?;
            self.confirm_sends();
        }
        Err(io::ErrorKind::WouldBlock.into())
    }

    /// Queues a `Timeout` of [`BACKOFF`] whose completion re-arms object `idx`.
    fn backoff(&mut self, kind: Kind, idx: u32, arm: Kind) {
        let sqe = opcode::Timeout::new(&*self.backoff_ts)
            .build()
            .user_data(ring::tag(kind, idx));
        // SAFETY: the timespec is boxed in `self` and lives as long as the ring.
        if unsafe { self.push(&sqe) }.is_err() {
            self.retry.push(ring::tag(arm, idx));
        }
    }

    /// Arms again what could not be armed earlier.
    fn flush_retry(&mut self) {
        if self.retry.is_empty() || self.closing {
            return;
        }
        for t in std::mem::take(&mut self.retry) {
            match ring::untag(t) {
                Some((Kind::UdpRecv, idx)) => self.arm_udp_or_retry(idx),
                Some((Kind::UpRecv, idx)) => self.retry_upstream(idx),
                Some((Kind::Accept, idx)) => self.arm_accept_or_retry(idx),
                _ => {}
            }
        }
    }

    /// Routes one completion to its owner.
    fn dispatch(&mut self, rx: &mut BufRing, c: Cqe, f: &mut Callback<'_>) -> usize {
        let tag = ring::untag(c.user_data);
        // A quiet send left the in-flight count when it was confirmed.
        let quiet = matches!(tag, Some((Kind::UdpSendQuiet | Kind::UpSendQuiet, _)));
        if !cqueue::more(c.flags) && !quiet {
            self.inflight = self.inflight.saturating_sub(1);
        }
        let Some((kind, idx)) = tag else {
            return 0;
        };
        match kind {
            Kind::UdpRecv => self.on_udp_recv(rx, idx, c, f),
            Kind::UdpSend => {
                self.on_udp_send(idx, c.res);
                self.on_send_owner(idx, c.res, f)
            }
            // Only a failure posts a completion; anything else is ignored.
            Kind::UdpSendQuiet | Kind::UpSendQuiet if c.res >= 0 => 0,
            Kind::UdpSendQuiet => {
                self.on_quiet_send_failed();
                0
            }
            Kind::UpSendQuiet => {
                self.on_quiet_send_failed();
                self.on_quiet_upstream_failed(idx, ring::extra(c.user_data), c.res, f)
            }
            Kind::UpRecv => self.on_upstream_recv(rx, idx, c, f),
            Kind::UpBackoff => {
                self.arm_upstream_or_retry(idx);
                0
            }
            Kind::UdpBackoff => {
                self.arm_udp_or_retry(idx);
                0
            }
            Kind::Accept => self.on_accept(idx, c, f),
            Kind::AcceptBackoff => {
                self.arm_accept_or_retry(idx);
                0
            }
            Kind::TcpRecv => self.on_tcp_recv(idx, c.res, f),
            Kind::TcpSend => {
                self.on_tcp_send(idx, c.res);
                0
            }
            Kind::TcpRecvTimer | Kind::TcpSendTimer => {
                self.on_tcp_timer(idx);
                0
            }
            Kind::Cancel => 0,
        }
    }

    /// Reports the connections the engine closed since the last call.
    fn deliver_closed(&mut self, f: &mut Callback<'_>) -> usize {
        let mut n = 0;
        while let Some(conn) = self.closed.pop_front() {
            f(&mut EngineHandle { core: self }, Event::TcpClosed { conn });
            n += 1;
        }
        n
    }
}

#[cfg(test)]
mod tests;
