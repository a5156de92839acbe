//! One load run: resolves the server, splits clients, window and rate over
//! the threads, starts them on a common clock and merges their statistics.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::args::{Family, Mode, Options, Poll, Toggle};
use crate::query::QuerySet;
use crate::stats::{Stats, cpu_times};
use crate::{tcp, udp};

/// Queries taken from the shared cursor at a time.
const CHUNK: u64 = 256;

/// Nanoseconds since the start of the run.
#[derive(Clone, Copy, Debug)]
pub struct Clock(Instant);

impl Clock {
    pub fn new() -> Self {
        Self(Instant::now())
    }

    #[inline]
    pub fn now(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// The input, read in order by all threads (as dnsperf's shared cursor).
#[derive(Debug)]
pub struct Shared {
    pub queries: QuerySet,
    cursor: AtomicU64,
    /// Queries to send in total (`-n` runs × input size), `u64::MAX` if unbounded.
    total: u64,
}

impl Shared {
    pub fn new(queries: QuerySet, maxruns: Option<u64>) -> Self {
        let total = maxruns.map_or(u64::MAX, |n| n.saturating_mul(queries.len() as u64));
        Self {
            queries,
            cursor: AtomicU64::new(0),
            total,
        }
    }
}

/// A thread's view of the input: a reserved chunk of sequence numbers.
#[derive(Debug)]
pub struct Feed<'a> {
    shared: &'a Shared,
    next: u64,
    end: u64,
    /// Queries taken but not sent (short `sendmmsg`), sent first next time.
    carry: Vec<usize>,
}

impl<'a> Feed<'a> {
    pub fn new(shared: &'a Shared) -> Self {
        Self {
            shared,
            next: 0,
            end: 0,
            carry: Vec::new(),
        }
    }

    /// The index of the next query to send, `None` when the input is used up.
    #[inline]
    pub fn next_query(&mut self) -> Option<usize> {
        if let Some(q) = self.carry.pop() {
            return Some(q);
        }
        if self.next == self.end {
            let start = self.shared.cursor.fetch_add(CHUNK, Ordering::Relaxed);
            if start >= self.shared.total {
                return None;
            }
            self.next = start;
            self.end = (start + CHUNK).min(self.shared.total);
        }
        let seq = self.next;
        self.next += 1;
        Some((seq % self.shared.queries.len() as u64) as usize)
    }

    pub fn give_back(&mut self, q: usize) {
        self.carry.push(q);
    }

    pub fn wire(&self, q: usize) -> &'a [u8] {
        &self.shared.queries.wires[q]
    }
}

/// What one thread must do.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    pub server: SocketAddr,
    pub clock: Clock,
    /// Stop sending at this time (`-l`).
    pub end_ns: Option<u64>,
    pub timeout_ns: u64,
    /// Queries in flight in this thread.
    pub window: usize,
    /// Queries per second of this thread (`-Q` share).
    pub rate: Option<f64>,
    pub batch: usize,
    pub bufsize: Option<usize>,
    /// Busy-poll short `-Q` waits (off with more threads than usable CPUs).
    pub poll: bool,
    /// Keep polling even when preempted often (`--poll always`).
    pub poll_always: bool,
    /// Send and receive UDP through io_uring.
    pub uring: bool,
}

/// The figures of one finished run.
#[derive(Debug)]
pub struct Outcome {
    pub stats: Stats,
    pub run_time: f64,
    pub cpu_user: f64,
    pub cpu_sys: f64,
    pub server: SocketAddr,
    pub offered_qps: Option<f64>,
}

pub fn resolve(o: &Options) -> Result<SocketAddr> {
    let addrs = (o.server.as_str(), o.port)
        .to_socket_addrs()
        .with_context(|| format!("resolving {}", o.server))?;
    for a in addrs {
        match (o.family, a) {
            (Family::Any, _)
            | (Family::V4, SocketAddr::V4(_))
            | (Family::V6, SocketAddr::V6(_)) => {
                return Ok(a);
            }
            _ => {}
        }
    }
    bail!("no address of the requested family for {}", o.server)
}

/// CPUs this process may run on (its affinity mask, e.g. from taskset).
fn usable_cpus() -> usize {
    use nix::sched::{CpuSet, sched_getaffinity};
    use nix::unistd::Pid;
    match sched_getaffinity(Pid::from_raw(0)) {
        Ok(set) => (0..CpuSet::count())
            .filter(|&c| set.is_set(c).unwrap_or(false))
            .count()
            .max(1),
        Err(_) => 1,
    }
}

/// Splits `total` over `parts` as evenly as possible.
fn share(total: usize, parts: usize, i: usize) -> usize {
    total / parts + usize::from(i < total % parts)
}

/// Runs one load with `rate` overriding `-Q` (ramp steps) and `limit` overriding `-l`.
pub fn run(o: &Options, shared: &Shared, rate: Option<f64>, limit: Option<f64>) -> Result<Outcome> {
    let server = resolve(o)?;
    let threads = o.threads;
    let poll = match o.poll {
        Poll::Auto => threads <= usable_cpus(),
        Poll::Always => true,
        Poll::Never => false,
    };
    let clock = Clock::new();
    let (u0, s0) = cpu_times();
    let results: Vec<Result<Stats>> = std::thread::scope(|sc| {
        let use_uring = match o.uring {
            Toggle::Off => false,
            Toggle::On => true,
            Toggle::Auto => uring::probe().is_ok(),
        };
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let plan = Plan {
                    server,
                    clock,
                    end_ns: limit.map(|l| (l * 1e9) as u64),
                    timeout_ns: (o.timeout * 1e9) as u64,
                    window: share(o.outstanding, threads, t),
                    rate: rate.map(|r| r / threads as f64),
                    batch: o.batch,
                    bufsize: o.bufsize_kb.map(|k| k * 1024),
                    poll,
                    poll_always: o.poll == Poll::Always,
                    uring: use_uring,
                };
                let clients = share(o.clients, threads, t);
                let mode = o.mode;
                sc.spawn(move || match mode {
                    Mode::Udp => udp::run_thread(&plan, clients, shared),
                    Mode::Tcp => tcp::run_thread(&plan, clients, shared),
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("load thread panicked")))
            })
            .collect()
    });
    let wall = clock.now();
    let (u1, s1) = cpu_times();
    let mut stats = Stats::new();
    for r in results {
        stats.merge(&r?);
    }
    // Run time as dnsperf reports it: the time limit when there is one,
    // else until the last answer or timeout.
    let run_ns = match limit {
        Some(l) => ((l * 1e9) as u64).min(wall),
        None => wall,
    };
    Ok(Outcome {
        stats,
        run_time: Duration::from_nanos(run_ns.max(1)).as_secs_f64(),
        cpu_user: u1 - u0,
        cpu_sys: s1 - s0,
        server,
        offered_qps: rate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_and_feed() {
        assert_eq!((0..3).map(|i| share(200, 3, i)).sum::<usize>(), 200);
        let q =
            QuerySet::parse("a A\nb A\nc A\n".as_bytes(), Default::default()).unwrap_or_default();
        let sh = Shared::new(q, Some(2));
        let mut f = Feed::new(&sh);
        let got: Vec<usize> = std::iter::from_fn(|| f.next_query()).collect();
        assert_eq!(got, vec![0, 1, 2, 0, 1, 2]);
        f.give_back(1);
        assert_eq!(f.next_query(), Some(1));
        assert_eq!(f.next_query(), None);
    }
}
