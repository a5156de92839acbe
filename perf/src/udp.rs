//! The UDP engine of one thread: `clients` connected sockets (one source
//! port each), queries sent and answers read in batches, one loop doing both
//! so a pinned core never switches between a sender and a receiver thread.
//! With `--uring` (default where the kernel allows it) the batches go through
//! the workspace's io_uring engine (multishot receive over provided buffers,
//! one submit per batch; all its pointer code stays in `uring/`); otherwise
//! `sendmmsg`/`recvmmsg`.

use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, ppoll};
use nix::sys::socket::{
    MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg, setsockopt, sockopt,
};
use nix::sys::time::TimeSpec;

use crate::query::{MAX_QUERY, parse_head};
use crate::run::{Feed, Plan, Shared};
use crate::slots::Slots;
use crate::stats::Stats;

/// Messages per `sendmmsg`/`recvmmsg` call (the udp_echo uses the same).
pub const MAX_BATCH: usize = 64;
/// Receive buffer per datagram: a full EDNS answer fits.
const RBUF: usize = 4096;
/// How often in-flight slots are scanned for timeouts.
const SCAN_NS: u64 = 10_000_000;
/// With `-Q`, a wait shorter than this is spent polling instead of sleeping.
const SPIN_NS: u64 = 200_000;
/// A gap this long between two busy-polling turns means another task ran.
const PREEMPTED_NS: u64 = 1_000_000;
/// Preemptions within a second after which polling pauses for a second.
const PREEMPTIONS_PER_S: u32 = 20;

/// Opens one connected, non-blocking UDP socket towards `server`.
pub fn open_socket(server: SocketAddr, bufsize: Option<usize>) -> Result<UdpSocket> {
    let local: SocketAddr = if server.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let s = UdpSocket::bind(local).context("binding a UDP socket")?;
    s.connect(server)
        .with_context(|| format!("connecting to {server}"))?;
    s.set_nonblocking(true)?;
    // Room for a whole window of answers: our own drops would count as lost.
    let size = bufsize.unwrap_or(1 << 20);
    if setsockopt(&s, sockopt::RcvBufForce, &size).is_err() {
        let _ = setsockopt(&s, sockopt::RcvBuf, &size);
    }
    if setsockopt(&s, sockopt::SndBufForce, &size).is_err() {
        let _ = setsockopt(&s, sockopt::SndBuf, &size);
    }
    Ok(s)
}

/// Sleep precision for `-Q` pacing: the default 50 µs timer slack would
/// show up as latency.
pub fn tighten_timer_slack() {
    let _ = nix::sys::prctl::set_timerslack(1_000);
}

fn timespec(ns: u64) -> TimeSpec {
    TimeSpec::new((ns / 1_000_000_000) as _, (ns % 1_000_000_000) as _)
}

struct Engine<'a> {
    plan: &'a Plan,
    feed: Feed<'a>,
    slots: Vec<Slots>,
    stats: Stats,
    inflight: usize,
    /// Queries sent so far by this thread: the index into the `-Q` schedule.
    issued: u64,
    rr: usize,
    exhausted: bool,
    sbuf: Vec<u8>,
    rbuf: Vec<u8>,
    send_hdr: MultiHeaders<SockaddrStorage>,
    recv_hdr: MultiHeaders<SockaddrStorage>,
    ring: Option<Ring>,
}

/// The io_uring path: the engine and the id of each client socket in it.
struct Ring {
    eng: uring::Engine,
    ids: Vec<uring::SocketId>,
    server: SocketAddr,
}

/// Matches one answer to its slot and counts it.
fn on_answer(
    slots: &mut [Slots],
    stats: &mut Stats,
    inflight: &mut usize,
    s: usize,
    b: &[u8],
    now: u64,
) {
    let Some(h) = parse_head(b) else {
        stats.unexpected += 1;
        return;
    };
    if !h.qr {
        stats.unexpected += 1;
        return;
    }
    match slots[s].complete(h.id) {
        Some((sched, sent)) => {
            *inflight -= 1;
            stats.answer(
                now.saturating_sub(sched),
                now.saturating_sub(sent),
                b.len(),
                &h,
            );
        }
        None => stats.unexpected += 1,
    }
}

impl Engine<'_> {
    /// How many queries the schedule allows by `now` (all, without `-Q`).
    fn due(&self, now: u64) -> u64 {
        match self.plan.rate {
            Some(r) => ((now as f64 * r / 1e9) as u64 + 1).saturating_sub(self.issued),
            None => u64::MAX,
        }
    }

    /// The schedule time of the next query, for `-Q` latency and sleeping.
    fn sched_ns(&self, k: u64) -> u64 {
        self.plan.rate.map_or(0, |r| (k as f64 * 1e9 / r) as u64)
    }

    /// Sends what the window and the schedule allow; round-robin over sockets.
    fn send(&mut self, socks: &[UdpSocket], now: u64) {
        let mut budget = self.plan.window.saturating_sub(self.inflight) as u64;
        budget = budget.min(self.due(now));
        let n = socks.len();
        while budget > 0 && !self.exhausted {
            let Some(s) = (0..n)
                .map(|i| (self.rr + i) % n)
                .find(|&s| self.slots[s].free_count() > 0)
            else {
                break;
            };
            let k = (budget as usize)
                .min(self.slots[s].free_count())
                .min(self.plan.batch.min(MAX_BATCH));
            let mut lens = [0usize; MAX_BATCH];
            let mut qidx = [0usize; MAX_BATCH];
            let mut ids = [0u16; MAX_BATCH];
            let mut filled = 0;
            while filled < k {
                let Some(q) = self.feed.next_query() else {
                    self.exhausted = true;
                    break;
                };
                let t = if self.plan.rate.is_some() {
                    self.sched_ns(self.issued + filled as u64)
                } else {
                    now
                };
                let Some(id) = self.slots[s].take(t, now) else {
                    self.feed.give_back(q);
                    break;
                };
                let w = self.feed.wire(q);
                let off = filled * MAX_QUERY;
                let dst = &mut self.sbuf[off..off + w.len()];
                dst.copy_from_slice(w);
                dst[..2].copy_from_slice(&id.to_be_bytes());
                lens[filled] = w.len();
                qidx[filled] = q;
                ids[filled] = id;
                filled += 1;
            }
            if filled == 0 {
                break;
            }
            let sent = if let Some(r) = &mut self.ring {
                let mut k = 0;
                for (j, len) in lens.iter().enumerate().take(filled) {
                    let off = j * MAX_QUERY;
                    if r.eng
                        .send_udp(r.ids[s], r.server, &self.sbuf[off..off + len])
                        .is_err()
                    {
                        break;
                    }
                    k += 1;
                }
                k
            } else {
                let mut chunks = self.sbuf.chunks(MAX_QUERY);
                let iovs: [[IoSlice<'_>; 1]; MAX_BATCH] = std::array::from_fn(|j| {
                    let c = chunks.next().unwrap_or(&[]);
                    [IoSlice::new(&c[..lens[j].min(c.len())])]
                });
                let addrs = [None::<SockaddrStorage>; MAX_BATCH];
                match sendmmsg(
                    socks[s].as_raw_fd(),
                    &mut self.send_hdr,
                    iovs[..filled].iter(),
                    &addrs[..filled],
                    [],
                    MsgFlags::MSG_DONTWAIT,
                ) {
                    Ok(r) => r.count(),
                    Err(Errno::EAGAIN | Errno::ENOBUFS | Errno::EINTR) => 0,
                    Err(_) => {
                        // ECONNREFUSED and friends (ICMP from a port with no
                        // listener): these queries are lost, not retried.
                        self.stats.send_errors += 1;
                        0
                    }
                }
            };
            for j in 0..filled {
                if j < sent {
                    self.stats.req_bytes += lens[j] as u64;
                } else {
                    self.slots[s].untake(ids[j]);
                    self.feed.give_back(qidx[j]);
                }
            }
            self.stats.sent += sent as u64;
            self.inflight += sent;
            self.issued += sent as u64;
            budget -= sent as u64;
            self.rr = (s + 1) % n;
            if sent < filled {
                break;
            }
        }
    }

    /// Reads every answer waiting on socket `s`.
    fn recv(&mut self, sock: &UdpSocket, s: usize, clock_now: impl Fn() -> u64) {
        let batch = self.plan.batch.min(MAX_BATCH);
        loop {
            let mut lens = [0usize; MAX_BATCH];
            let got = {
                let mut chunks = self.rbuf.chunks_mut(RBUF);
                let mut iovs: [[IoSliceMut<'_>; 1]; MAX_BATCH] =
                    std::array::from_fn(|_| [IoSliceMut::new(chunks.next().unwrap_or(&mut []))]);
                match recvmmsg(
                    sock.as_raw_fd(),
                    &mut self.recv_hdr,
                    iovs[..batch].iter_mut(),
                    MsgFlags::MSG_DONTWAIT,
                    None,
                ) {
                    Ok(res) => {
                        let mut n = 0;
                        for (j, m) in res.enumerate() {
                            lens[j] = m.bytes;
                            n += 1;
                        }
                        n
                    }
                    Err(_) => 0,
                }
            };
            if got == 0 {
                return;
            }
            let now = clock_now();
            for (j, &len) in lens.iter().enumerate().take(got) {
                let b = &self.rbuf[j * RBUF..j * RBUF + len];
                on_answer(
                    &mut self.slots,
                    &mut self.stats,
                    &mut self.inflight,
                    s,
                    b,
                    now,
                );
            }
            if got < batch {
                return;
            }
        }
    }

    /// Reaps io_uring completions: every answer received so far.
    fn recv_ring(&mut self, now: u64) {
        let Some(r) = &mut self.ring else { return };
        let (slots, stats, inflight, ids) =
            (&mut self.slots, &mut self.stats, &mut self.inflight, &r.ids);
        r.eng.poll_events(&mut |_, ev| {
            if let uring::Event::Udp { sock, data, .. } = ev {
                match ids.iter().position(|i| *i == sock) {
                    Some(s) => on_answer(slots, stats, inflight, s, data, now),
                    None => stats.unexpected += 1,
                }
            }
        });
    }

    fn expire(&mut self, deadline: u64) {
        for sl in &mut self.slots {
            let n = sl.expire(deadline);
            self.stats.lost += n;
            self.inflight -= n as usize;
        }
    }
}

/// With `-Q`, decides whether a wait is busy-polled or slept: sleeping and
/// being woken costs tens of microseconds on a VM, and with latency counted
/// from the schedule that cost would show. Long waits sleep but wake
/// `SPIN_NS / 2` early. Polling stops for a second when the thread is
/// preempted often (another task wants this core: polling only loses to it).
#[derive(Debug, Default)]
struct Pacer {
    never_pause: bool,
    polled: bool,
    last_turn: u64,
    preempted: u32,
    window_start: u64,
    off_until: u64,
}

impl Pacer {
    fn turn(&mut self, now: u64) {
        if self.polled && now.saturating_sub(self.last_turn) > PREEMPTED_NS {
            if now - self.window_start > 1_000_000_000 {
                self.window_start = now;
                self.preempted = 0;
            }
            self.preempted += 1;
            if self.preempted >= PREEMPTIONS_PER_S && !self.never_pause {
                self.off_until = now + 1_000_000_000;
            }
        }
        self.last_turn = now;
    }

    /// The time to wait in `ppoll` for a wait of `wait` ns.
    fn wait(&mut self, now: u64, wait: u64, allowed: bool) -> u64 {
        self.polled = false;
        if !allowed || now < self.off_until {
            return wait;
        }
        if wait < SPIN_NS {
            self.polled = true;
            return 0;
        }
        wait - SPIN_NS / 2
    }
}

/// Runs one thread's share of the load until the time limit or the end of
/// the input, then waits up to the timeout for answers still in flight.
pub fn run_thread(plan: &Plan, clients: usize, shared: &Shared) -> Result<Stats> {
    tighten_timer_slack();
    let socks: Vec<UdpSocket> = (0..clients.max(1))
        .map(|_| open_socket(plan.server, plan.bufsize))
        .collect::<Result<_>>()?;
    let per_sock = plan.window.div_ceil(socks.len());
    let mut e = Engine {
        plan,
        feed: Feed::new(shared),
        slots: (0..socks.len()).map(|_| Slots::new(per_sock)).collect(),
        stats: Stats::new(),
        inflight: 0,
        issued: 0,
        rr: 0,
        exhausted: false,
        sbuf: vec![0; MAX_BATCH * MAX_QUERY],
        rbuf: vec![0; MAX_BATCH * RBUF],
        send_hdr: MultiHeaders::preallocate(MAX_BATCH, None),
        recv_hdr: MultiHeaders::preallocate(MAX_BATCH, None),
        ring: None,
    };
    if plan.uring {
        // The engine takes the sockets (duplicates: `socks` keeps the count).
        let cfg = uring::EngineConfig {
            entries: 1024,
            udp_buf_count: 1024,
            udp_buf_size: 4096,
            send_slots: (MAX_BATCH as u32 * 4).max(plan.window as u32),
            udp_send_size: MAX_QUERY as u32,
            max_tcp_conns: 1,
            ..uring::EngineConfig::default()
        };
        let mut eng = uring::Engine::new(cfg).context("io_uring engine")?;
        let mut ids = Vec::with_capacity(socks.len());
        for sk in &socks {
            ids.push(
                eng.add_udp(sk.try_clone()?)
                    .context("adding a socket to io_uring")?,
            );
        }
        eng.submit().context("io_uring submit")?;
        e.ring = Some(Ring {
            eng,
            ids,
            server: plan.server,
        });
    }
    let mut pfds: Vec<PollFd<'_>> = socks
        .iter()
        .map(|s| PollFd::new(s.as_fd(), PollFlags::POLLIN))
        .collect();
    let clock = plan.clock;
    let mut stop_ns: Option<u64> = None;
    let mut next_scan = SCAN_NS;
    let mut pacer = Pacer {
        never_pause: plan.poll_always,
        ..Pacer::default()
    };
    loop {
        let now = clock.now();
        pacer.turn(now);
        if stop_ns.is_none() && (e.exhausted || plan.end_ns.is_some_and(|end| now >= end)) {
            stop_ns = Some(now);
        }
        if let Some(stop) = stop_ns {
            if e.inflight == 0 {
                break;
            }
            if now >= stop + plan.timeout_ns {
                e.expire(u64::MAX - 1);
                break;
            }
        }
        if now >= next_scan {
            e.expire(now.saturating_sub(plan.timeout_ns));
            next_scan = now + SCAN_NS;
        }
        if stop_ns.is_none() {
            e.send(&socks, now);
        }
        // Sleep until an answer arrives or the next thing is due.
        let mut wake = next_scan;
        if let Some(stop) = stop_ns {
            wake = wake.min(stop + plan.timeout_ns);
        } else {
            if let Some(end) = plan.end_ns {
                wake = wake.min(end);
            }
            if e.inflight < plan.window && !e.exhausted {
                wake = wake.min(if plan.rate.is_some() {
                    e.sched_ns(e.issued)
                } else {
                    now
                });
            }
        }
        let now2 = clock.now();
        let poll = plan.poll && plan.rate.is_some() && stop_ns.is_none();
        let wait = pacer.wait(now2, wake.saturating_sub(now2), poll);
        if wait == 0 && pacer.polled {
            // Let kernel threads of this core (ksoftirqd, kworkers) run
            // now rather than at the end of a time slice.
            std::thread::yield_now();
        }
        if let Some(r) = &mut e.ring {
            // One io_uring_enter per turn: submit the batch and wait for answers.
            let _ = if wait == 0 {
                r.eng.submit()
            } else {
                r.eng
                    .submit_and_wait(1, Some(std::time::Duration::from_nanos(wait)))
            };
            e.recv_ring(clock.now());
            continue;
        }
        match ppoll(&mut pfds, Some(timespec(wait)), None) {
            Ok(0) | Err(_) => continue,
            Ok(_) => {}
        }
        for (s, sock) in socks.iter().enumerate() {
            let ready = pfds[s]
                .revents()
                .is_some_and(|r| r.intersects(PollFlags::POLLIN | PollFlags::POLLERR));
            if ready {
                e.recv(sock, s, || clock.now());
            }
        }
    }
    Ok(e.stats)
}
