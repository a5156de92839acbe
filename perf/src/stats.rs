//! Per-thread counters and latency histogram, merged at the end of a run,
//! and the client's own CPU time (getrusage).

use hdrhistogram::Histogram;

use crate::query::RespHead;

/// Highest latency the histogram keeps exactly: one hour, in nanoseconds.
const HIST_MAX_NS: u64 = 3_600_000_000_000;

#[derive(Clone, Debug)]
pub struct Stats {
    pub sent: u64,
    pub completed: u64,
    pub lost: u64,
    /// Answers that matched nothing in flight (late after timeout, duplicates).
    pub unexpected: u64,
    pub truncated: u64,
    pub send_errors: u64,
    pub rcodes: [u64; 16],
    pub req_bytes: u64,
    pub resp_bytes: u64,
    /// Latency in nanoseconds (from the scheduled send with `-Q`).
    pub hist: Histogram<u64>,
    /// Service latency in nanoseconds: from the actual send.
    pub svc_hist: Histogram<u64>,
    pub lat_sum_ns: u128,
    pub lat_sumsq: f64,
    pub lat_min_ns: u64,
    pub lat_max_ns: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    pub fn new() -> Self {
        let hist = Histogram::new_with_bounds(1, HIST_MAX_NS, 3)
            .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()));
        Self {
            svc_hist: hist.clone(),
            sent: 0,
            completed: 0,
            lost: 0,
            unexpected: 0,
            truncated: 0,
            send_errors: 0,
            rcodes: [0; 16],
            req_bytes: 0,
            resp_bytes: 0,
            hist,
            lat_sum_ns: 0,
            lat_sumsq: 0.0,
            lat_min_ns: u64::MAX,
            lat_max_ns: 0,
        }
    }

    /// Records one matched answer of `len` bytes: `lat_ns` from the
    /// scheduled send, `svc_ns` from the actual one.
    #[inline]
    pub fn answer(&mut self, lat_ns: u64, svc_ns: u64, len: usize, h: &RespHead) {
        self.completed += 1;
        self.resp_bytes += len as u64;
        self.rcodes[usize::from(h.rcode)] += 1;
        self.truncated += u64::from(h.tc);
        self.hist.saturating_record(lat_ns.max(1));
        self.svc_hist.saturating_record(svc_ns.max(1));
        self.lat_sum_ns += u128::from(lat_ns);
        let s = lat_ns as f64 * 1e-9;
        self.lat_sumsq += s * s;
        self.lat_min_ns = self.lat_min_ns.min(lat_ns);
        self.lat_max_ns = self.lat_max_ns.max(lat_ns);
    }

    pub fn merge(&mut self, o: &Self) {
        self.sent += o.sent;
        self.completed += o.completed;
        self.lost += o.lost;
        self.unexpected += o.unexpected;
        self.truncated += o.truncated;
        self.send_errors += o.send_errors;
        for (a, b) in self.rcodes.iter_mut().zip(o.rcodes.iter()) {
            *a += b;
        }
        self.req_bytes += o.req_bytes;
        self.resp_bytes += o.resp_bytes;
        let _ = self.hist.add(&o.hist);
        let _ = self.svc_hist.add(&o.svc_hist);
        self.lat_sum_ns += o.lat_sum_ns;
        self.lat_sumsq += o.lat_sumsq;
        self.lat_min_ns = self.lat_min_ns.min(o.lat_min_ns);
        self.lat_max_ns = self.lat_max_ns.max(o.lat_max_ns);
    }

    /// Average latency in seconds.
    pub fn lat_avg(&self) -> f64 {
        if self.completed == 0 {
            return 0.0;
        }
        self.lat_sum_ns as f64 * 1e-9 / self.completed as f64
    }

    /// Population standard deviation in seconds, as dnsperf computes it.
    pub fn lat_stddev(&self) -> f64 {
        if self.completed < 2 {
            return 0.0;
        }
        let n = self.completed as f64;
        let m = self.lat_avg();
        (self.lat_sumsq / n - m * m).max(0.0).sqrt()
    }

    /// The `q` quantile (0..=1) in seconds.
    pub fn quantile(&self, q: f64) -> f64 {
        if self.completed == 0 {
            return 0.0;
        }
        self.hist.value_at_quantile(q) as f64 * 1e-9
    }
}

/// User and system CPU seconds used by this process so far.
pub fn cpu_times() -> (f64, f64) {
    use nix::sys::resource::{UsageWho, getrusage};
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(u) => {
            let tv = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 * 1e-6;
            (tv(u.user_time()), tv(u.system_time()))
        }
        Err(_) => (0.0, 0.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_and_moments() {
        let h = RespHead {
            id: 1,
            qr: true,
            tc: true,
            rcode: 3,
        };
        let mut a = Stats::new();
        a.answer(1_000_000, 1_000_000, 40, &h);
        let mut b = Stats::new();
        b.answer(3_000_000, 2_000_000, 60, &h);
        a.merge(&b);
        assert_eq!(a.completed, 2);
        assert_eq!(a.rcodes[3], 2);
        assert_eq!(a.truncated, 2);
        assert!((a.lat_avg() - 0.002).abs() < 1e-9);
        assert!((a.lat_stddev() - 0.001).abs() < 1e-9);
        assert!((a.quantile(1.0) - 0.003).abs() < 0.00001);
        assert_eq!(a.lat_min_ns, 1_000_000);
        assert!((a.svc_hist.max() as f64 - 2e6).abs() < 2e3);
    }
}
