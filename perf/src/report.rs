//! The results: a JSON summary (`--json`, read back by `compare`, `median`
//! and `plot`) and the text summary with dnsperf's own labels, so scripts
//! that parse dnsperf's output keep working.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::args::{Mode, Options};
use crate::query::rcode_name;
use crate::run::Outcome;

pub const SCHEMA: &str = "ringdns-perf/1";

/// Latencies in seconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub avg: f64,
    pub stddev: f64,
    pub min: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

/// The client's own CPU use during the run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Cpu {
    pub user_s: f64,
    pub sys_s: f64,
    /// (user + sys) / run time, in percent of one core.
    pub percent: f64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub schema: String,
    pub label: String,
    pub mode: String,
    pub server: String,
    pub clients: usize,
    pub threads: usize,
    pub outstanding: usize,
    /// The `-Q` rate (or ramp step rate); `None` when sending as fast as possible.
    pub offered_qps: Option<f64>,
    pub sent: u64,
    pub completed: u64,
    pub lost: u64,
    pub lost_pct: f64,
    pub run_time_s: f64,
    pub qps: f64,
    /// From the scheduled send time with `-Q` (no coordinated omission);
    /// from the actual send otherwise.
    pub latency_s: Latency,
    /// From the actual send time, as dnsperf measures; differs from
    /// `latency_s` only with `-Q`, by the client's own lag.
    #[serde(default)]
    pub service_latency_s: Latency,
    pub rcodes: BTreeMap<String, u64>,
    pub truncated: u64,
    /// Answers that matched no query in flight (late, duplicate, foreign).
    pub unexpected: u64,
    pub send_errors: u64,
    pub avg_request_bytes: f64,
    pub avg_response_bytes: f64,
    pub cpu: Cpu,
    /// Ramp mode: every step, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<Self>,
    /// Ramp mode: the highest offered rate whose loss stayed under the threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rate_under_loss: Option<f64>,
}

/// Latency figures from a histogram alone (nanoseconds in, seconds out).
fn hist_latency(h: &hdrhistogram::Histogram<u64>, n: u64) -> Latency {
    if n == 0 {
        return Latency::default();
    }
    let q = |x: f64| h.value_at_quantile(x) as f64 * 1e-9;
    Latency {
        avg: h.mean() * 1e-9,
        stddev: h.stdev() * 1e-9,
        min: h.min() as f64 * 1e-9,
        p50: q(0.5),
        p90: q(0.9),
        p99: q(0.99),
        p999: q(0.999),
        max: h.max() as f64 * 1e-9,
    }
}

fn pct(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 * 100.0 / b as f64
    }
}

impl Summary {
    pub fn new(o: &Options, out: &Outcome) -> Self {
        let s = &out.stats;
        let rcodes = s
            .rcodes
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(r, n)| (rcode_name(r), *n))
            .collect();
        Self {
            schema: SCHEMA.into(),
            label: o.label.clone().unwrap_or_default(),
            mode: match o.mode {
                Mode::Udp => "udp".into(),
                Mode::Tcp => "tcp".into(),
            },
            server: out.server.to_string(),
            clients: o.clients,
            threads: o.threads,
            outstanding: o.outstanding,
            offered_qps: out.offered_qps,
            sent: s.sent,
            completed: s.completed,
            lost: s.lost,
            lost_pct: pct(s.lost, s.sent),
            run_time_s: out.run_time,
            qps: s.completed as f64 / out.run_time,
            latency_s: Latency {
                avg: s.lat_avg(),
                stddev: s.lat_stddev(),
                min: if s.completed == 0 {
                    0.0
                } else {
                    s.lat_min_ns as f64 * 1e-9
                },
                p50: s.quantile(0.5),
                p90: s.quantile(0.9),
                p99: s.quantile(0.99),
                p999: s.quantile(0.999),
                max: s.lat_max_ns as f64 * 1e-9,
            },
            service_latency_s: hist_latency(&s.svc_hist, s.completed),
            rcodes,
            truncated: s.truncated,
            unexpected: s.unexpected,
            send_errors: s.send_errors,
            avg_request_bytes: if s.sent == 0 {
                0.0
            } else {
                s.req_bytes as f64 / s.sent as f64
            },
            avg_response_bytes: if s.completed == 0 {
                0.0
            } else {
                s.resp_bytes as f64 / s.completed as f64
            },
            cpu: Cpu {
                user_s: out.cpu_user,
                sys_s: out.cpu_sys,
                percent: (out.cpu_user + out.cpu_sys) * 100.0 / out.run_time,
            },
            steps: Vec::new(),
            max_rate_under_loss: None,
        }
    }

    /// dnsperf's "Statistics:" block (same labels and layout), then our extra lines.
    pub fn text(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(t, "Statistics:\n");
        let _ = writeln!(t, "  Queries sent:         {}", self.sent);
        let _ = writeln!(
            t,
            "  Queries completed:    {} ({:.2}%)",
            self.completed,
            pct(self.completed, self.sent)
        );
        let _ = writeln!(
            t,
            "  Queries lost:         {} ({:.2}%)",
            self.lost,
            pct(self.lost, self.sent)
        );
        let _ = writeln!(t);
        let codes: Vec<String> = self
            .rcodes
            .iter()
            .map(|(k, v)| format!("{k} {v} ({:.2}%)", pct(*v, self.completed)))
            .collect();
        let _ = writeln!(t, "  Response codes:       {}", codes.join(", "));
        let _ = writeln!(
            t,
            "  Average packet size:  request {}, response {}",
            self.avg_request_bytes as u64, self.avg_response_bytes as u64
        );
        let _ = writeln!(t, "  Run time (s):         {:.6}", self.run_time_s);
        let _ = writeln!(t, "  Queries per second:   {:.6}", self.qps);
        let _ = writeln!(t);
        let l = &self.latency_s;
        let _ = writeln!(
            t,
            "  Average Latency (s):  {:.6} (min {:.6}, max {:.6})",
            l.avg, l.min, l.max
        );
        let _ = writeln!(t, "  Latency StdDev (s):   {:.6}", l.stddev);
        let _ = writeln!(t);
        let _ = writeln!(
            t,
            "  Latency percentiles (s): p50 {:.6}, p90 {:.6}, p99 {:.6}, p99.9 {:.6}",
            l.p50, l.p90, l.p99, l.p999
        );
        let _ = writeln!(
            t,
            "  Truncated responses:  {} (unexpected answers {}, send errors {})",
            self.truncated, self.unexpected, self.send_errors
        );
        let _ = writeln!(
            t,
            "  Client CPU (s):       user {:.3}, sys {:.3} ({:.1}% of one core)",
            self.cpu.user_s, self.cpu.sys_s, self.cpu.percent
        );
        if let Some(r) = self.offered_qps {
            let _ = writeln!(
                t,
                "  Offered rate (q/s):   {r:.0} (latency from the schedule)"
            );
            let v = &self.service_latency_s;
            let _ = writeln!(
                t,
                "  Service latency (s):  p50 {:.6}, p90 {:.6}, p99 {:.6}, p99.9 {:.6} (from the actual send)",
                v.p50, v.p90, v.p99, v.p999
            );
        }
        t
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    pub fn from_json(s: &str) -> anyhow::Result<Self> {
        let v: Self = serde_json::from_str(s)?;
        if v.schema != SCHEMA {
            anyhow::bail!("not a {SCHEMA} file (schema {:?})", v.schema);
        }
        Ok(v)
    }
}

/// The ramp steps as a table.
pub fn steps_text(s: &Summary) -> String {
    let mut t = String::from(
        "Ramp steps:\n\n  offered q/s   completed q/s   lost %      p50 ms    p99 ms  p99.9 ms\n",
    );
    for st in &s.steps {
        let _ = writeln!(
            t,
            "  {:>11.0}   {:>13.0}   {:>7.3}   {:>8.3}  {:>8.3}  {:>8.3}",
            st.offered_qps.unwrap_or(0.0),
            st.qps,
            st.lost_pct,
            st.latency_s.p50 * 1e3,
            st.latency_s.p99 * 1e3,
            st.latency_s.p999 * 1e3
        );
    }
    match s.max_rate_under_loss {
        Some(r) => {
            let _ = writeln!(t, "\n  Highest rate with loss under threshold: {r:.0} q/s");
        }
        None => {
            let _ = writeln!(t, "\n  No step stayed under the loss threshold");
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_has_dnsperf_labels() {
        let mut s = Summary {
            schema: SCHEMA.into(),
            sent: 1000,
            completed: 990,
            lost: 10,
            ..Default::default()
        };
        s.rcodes.insert("NOERROR".into(), 990);
        s.run_time_s = 1.0;
        s.qps = 990.0;
        let t = s.text();
        for label in [
            "  Queries sent:         1000\n",
            "  Queries completed:    990 (99.00%)\n",
            "  Queries lost:         10 (1.00%)\n",
            "  Response codes:       NOERROR 990 (100.00%)\n",
            "  Run time (s):         1.000000\n",
            "  Queries per second:   990.000000\n",
            "  Average Latency (s):  ",
            "  Latency StdDev (s):   ",
        ] {
            assert!(t.contains(label), "missing {label:?} in\n{t}");
        }
        let back = Summary::from_json(&s.to_json()).unwrap_or_default();
        assert_eq!(back, s);
        assert!(Summary::from_json("{\"schema\":\"x\"}").is_err());
    }
}
