//! The TCP engine of one thread: one connection per client, queries
//! pipelined (RFC 7766 §6.2.1.1) with the 2-byte length prefix of RFC 1035
//! §4.2.2, answers matched by ID per connection in any order. A closed
//! connection loses what it had in flight and is opened again.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::time::Duration;

use anyhow::{Context, Result};
use nix::poll::{PollFd, PollFlags, ppoll};
use nix::sys::time::TimeSpec;

use crate::query::parse_head;
use crate::run::{Feed, Plan, Shared};
use crate::slots::Slots;
use crate::stats::Stats;
use crate::udp::tighten_timer_slack;

const SCAN_NS: u64 = 10_000_000;

struct Conn {
    stream: Option<TcpStream>,
    slots: Slots,
    out: Vec<u8>,
    out_off: usize,
    inb: Vec<u8>,
    in_len: usize,
}

fn connect(plan: &Plan) -> Result<TcpStream> {
    let s = TcpStream::connect_timeout(&plan.server, Duration::from_secs(2))
        .with_context(|| format!("connecting to {}", plan.server))?;
    s.set_nodelay(true)?;
    s.set_nonblocking(true)?;
    Ok(s)
}

impl Conn {
    /// Writes as much of the pending output as the socket takes; false on error.
    fn flush(&mut self) -> bool {
        let Some(st) = self.stream.as_mut() else {
            return false;
        };
        while self.out_off < self.out.len() {
            match st.write(&self.out[self.out_off..]) {
                Ok(0) => return false,
                Ok(n) => self.out_off += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        if self.out_off == self.out.len() {
            self.out.clear();
            self.out_off = 0;
        }
        true
    }

    /// Reads and handles complete answers; false when the connection ended.
    fn read(&mut self, now: u64, stats: &mut Stats, inflight: &mut usize) -> bool {
        let Some(st) = self.stream.as_mut() else {
            return false;
        };
        loop {
            if self.inb.len() - self.in_len < 4096 {
                self.inb.resize(self.inb.len() * 2, 0);
            }
            match st.read(&mut self.inb[self.in_len..]) {
                Ok(0) => return false,
                Ok(n) => self.in_len += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        let mut off = 0;
        while self.in_len - off >= 2 {
            let len = usize::from(u16::from_be_bytes([self.inb[off], self.inb[off + 1]]));
            if self.in_len - off < 2 + len {
                break;
            }
            let msg = &self.inb[off + 2..off + 2 + len];
            match parse_head(msg) {
                Some(h) if h.qr => match self.slots.complete(h.id) {
                    Some((sched, sent)) => {
                        *inflight -= 1;
                        stats.answer(now.saturating_sub(sched), now.saturating_sub(sent), len, &h);
                    }
                    None => stats.unexpected += 1,
                },
                _ => stats.unexpected += 1,
            }
            off += 2 + len;
        }
        self.inb.copy_within(off..self.in_len, 0);
        self.in_len -= off;
        true
    }
}

/// Runs one thread's share of a TCP load (see [`crate::udp::run_thread`]).
pub fn run_thread(plan: &Plan, clients: usize, shared: &Shared) -> Result<Stats> {
    tighten_timer_slack();
    let n = clients.max(1);
    let per_conn = plan.window.div_ceil(n);
    let mut conns: Vec<Conn> = (0..n)
        .map(|_| {
            Ok(Conn {
                stream: Some(connect(plan)?),
                slots: Slots::new(per_conn),
                out: Vec::with_capacity(16 * 1024),
                out_off: 0,
                inb: vec![0; 64 * 1024],
                in_len: 0,
            })
        })
        .collect::<Result<_>>()?;
    let mut feed = Feed::new(shared);
    let mut stats = Stats::new();
    let (mut inflight, mut issued, mut rr) = (0usize, 0u64, 0usize);
    let mut exhausted = false;
    let clock = plan.clock;
    let sched = |k: u64| plan.rate.map_or(0, |r| (k as f64 * 1e9 / r) as u64);
    let mut stop_ns: Option<u64> = None;
    let mut next_scan = SCAN_NS;
    loop {
        let now = clock.now();
        if stop_ns.is_none() && (exhausted || plan.end_ns.is_some_and(|e| now >= e)) {
            stop_ns = Some(now);
        }
        if let Some(stop) = stop_ns {
            if inflight == 0 || now >= stop + plan.timeout_ns {
                for c in &mut conns {
                    stats.lost += c.slots.expire_all();
                }
                break;
            }
        }
        if now >= next_scan {
            for c in &mut conns {
                let k = c.slots.expire(now.saturating_sub(plan.timeout_ns));
                stats.lost += k;
                inflight -= k as usize;
            }
            next_scan = now + SCAN_NS;
        }
        // Queue what the window and schedule allow, then write.
        if stop_ns.is_none() {
            let mut budget = plan.window.saturating_sub(inflight) as u64;
            if let Some(r) = plan.rate {
                budget = budget.min(((now as f64 * r / 1e9) as u64 + 1).saturating_sub(issued));
            }
            while budget > 0 && !exhausted {
                let Some(ci) = (0..n).map(|i| (rr + i) % n).find(|&i| {
                    conns[i].stream.is_some()
                        && conns[i].slots.free_count() > 0
                        && conns[i].out.len() < 64 * 1024
                }) else {
                    break;
                };
                let c = &mut conns[ci];
                let k = budget
                    .min(c.slots.free_count() as u64)
                    .min(plan.batch as u64);
                for _ in 0..k {
                    let Some(q) = feed.next_query() else {
                        exhausted = true;
                        break;
                    };
                    let t = if plan.rate.is_some() {
                        sched(issued)
                    } else {
                        now
                    };
                    let Some(id) = c.slots.take(t, now) else {
                        feed.give_back(q);
                        break;
                    };
                    let w = feed.wire(q);
                    c.out.extend_from_slice(&(w.len() as u16).to_be_bytes());
                    let at = c.out.len();
                    c.out.extend_from_slice(w);
                    c.out[at..at + 2].copy_from_slice(&id.to_be_bytes());
                    stats.sent += 1;
                    stats.req_bytes += w.len() as u64;
                    inflight += 1;
                    issued += 1;
                    budget -= 1;
                }
                rr = (ci + 1) % n;
            }
        }
        for c in &mut conns {
            if !c.out.is_empty() && !c.flush() {
                drop_conn(c, &mut stats, &mut inflight);
            }
        }
        let mut wake = next_scan;
        if let Some(stop) = stop_ns {
            wake = wake.min(stop + plan.timeout_ns);
        } else {
            if let Some(end) = plan.end_ns {
                wake = wake.min(end);
            }
            if inflight < plan.window && !exhausted {
                wake = wake.min(if plan.rate.is_some() {
                    sched(issued)
                } else {
                    now
                });
            }
        }
        let wait = wake.saturating_sub(clock.now());
        let ready: Vec<(bool, bool)> = {
            let mut pfds: Vec<PollFd<'_>> = conns
                .iter()
                .filter_map(|c| c.stream.as_ref())
                .map(|s| PollFd::new(s.as_fd(), PollFlags::POLLIN))
                .collect();
            let ts = TimeSpec::new((wait / 1_000_000_000) as _, (wait % 1_000_000_000) as _);
            let _ = ppoll(&mut pfds, Some(ts), None);
            pfds.iter()
                .map(|p| {
                    let r = p.revents().unwrap_or(PollFlags::empty());
                    (
                        r.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR),
                        true,
                    )
                })
                .collect()
        };
        let now = clock.now();
        let mut it = ready.into_iter();
        for c in &mut conns {
            if c.stream.is_none() {
                if stop_ns.is_none() {
                    c.stream = connect(plan).ok();
                }
                continue;
            }
            let Some((readable, _)) = it.next() else {
                break;
            };
            if readable && !c.read(now, &mut stats, &mut inflight) {
                drop_conn(c, &mut stats, &mut inflight);
            }
        }
    }
    Ok(stats)
}

/// A connection ended: what it had in flight is lost; it is reopened later.
fn drop_conn(c: &mut Conn, stats: &mut Stats, inflight: &mut usize) {
    let k = c.slots.expire_all();
    stats.lost += k;
    *inflight -= k as usize;
    c.stream = None;
    c.out.clear();
    c.out_off = 0;
    c.in_len = 0;
}
