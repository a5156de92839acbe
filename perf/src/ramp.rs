//! Step/ramp mode: runs fixed-rate steps (`-Q` start, start+step, … max) and
//! finds the highest offered rate whose loss stays under the threshold.
//! A step also fails when the client cannot send the offered rate (sent
//! below 95 % of it), since its latency then measures the client.

use anyhow::Result;

use crate::args::{Options, Ramp};
use crate::report::Summary;
use crate::run::{Shared, run};

/// Whether a step met the offered rate without too much loss.
pub fn step_ok(s: &Summary, max_loss_pct: f64) -> bool {
    let offered = s.offered_qps.unwrap_or(0.0) * s.run_time_s;
    s.lost_pct <= max_loss_pct && s.sent as f64 >= 0.95 * offered
}

pub fn run_ramp(o: &Options, shared: &Shared, r: Ramp) -> Result<Summary> {
    let mut steps: Vec<Summary> = Vec::new();
    let mut best: Option<usize> = None;
    let mut rate = r.start;
    while rate <= r.max * (1.0 + 1e-9) {
        let out = run(o, shared, Some(rate), Some(r.step_secs))?;
        let s = Summary::new(o, &out);
        eprintln!(
            "[Status] step {:.0} q/s: completed {:.0} q/s, lost {:.3}%, p99 {:.3} ms",
            rate,
            s.qps,
            s.lost_pct,
            s.latency_s.p99 * 1e3
        );
        let ok = step_ok(&s, r.max_loss_pct);
        steps.push(s);
        if !ok {
            break;
        }
        best = Some(steps.len() - 1);
        rate += r.step;
    }
    let mut top = steps[best.unwrap_or(0)].clone();
    top.max_rate_under_loss = best.and_then(|i| steps[i].offered_qps);
    top.steps = steps;
    Ok(top)
}
