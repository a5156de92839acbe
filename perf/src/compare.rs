//! `compare A.json B.json`: each figure of B against A as a ratio, and a
//! verdict; the exit status is non-zero when a gated figure regresses by
//! more than the threshold. `median` picks the median-QPS run of several.

use anyhow::{Context, Result, bail};

use crate::report::Summary;

/// One compared figure.
struct Figure {
    name: &'static str,
    get: fn(&Summary) -> f64,
    higher_is_better: bool,
    gated_by_default: bool,
}

const FIGURES: &[Figure] = &[
    Figure {
        name: "qps",
        get: |s| s.qps,
        higher_is_better: true,
        gated_by_default: true,
    },
    Figure {
        name: "lost_pct",
        get: |s| s.lost_pct,
        higher_is_better: false,
        gated_by_default: true,
    },
    Figure {
        name: "p50",
        get: |s| s.latency_s.p50 * 1e3,
        higher_is_better: false,
        gated_by_default: true,
    },
    Figure {
        name: "p90",
        get: |s| s.latency_s.p90 * 1e3,
        higher_is_better: false,
        gated_by_default: false,
    },
    Figure {
        name: "p99",
        get: |s| s.latency_s.p99 * 1e3,
        higher_is_better: false,
        gated_by_default: true,
    },
    Figure {
        name: "p99.9",
        get: |s| s.latency_s.p999 * 1e3,
        higher_is_better: false,
        gated_by_default: false,
    },
    Figure {
        name: "max",
        get: |s| s.latency_s.max * 1e3,
        higher_is_better: false,
        gated_by_default: false,
    },
    Figure {
        name: "cpu_us_per_query",
        get: |s| {
            if s.completed == 0 {
                0.0
            } else {
                (s.cpu.user_s + s.cpu.sys_s) * 1e6 / s.completed as f64
            }
        },
        higher_is_better: false,
        gated_by_default: false,
    },
];

/// Absolute slack for loss, in percentage points: a ratio of two tiny loss
/// figures says nothing.
const LOSS_SLACK_PTS: f64 = 0.05;

#[derive(Debug, PartialEq)]
pub struct Row {
    pub name: &'static str,
    pub a: f64,
    pub b: f64,
    pub ratio: f64,
    pub regressed: bool,
    pub gated: bool,
}

/// Compares B against A; `threshold` is a fraction (0.05 = 5 %).
pub fn compare(a: &Summary, b: &Summary, threshold: f64, gate: Option<&[String]>) -> Vec<Row> {
    FIGURES
        .iter()
        .map(|f| {
            let (va, vb) = ((f.get)(a), (f.get)(b));
            let ratio = if va == 0.0 {
                if vb == 0.0 { 1.0 } else { f64::INFINITY }
            } else {
                vb / va
            };
            let regressed = if f.name == "lost_pct" {
                vb - va > LOSS_SLACK_PTS && ratio > 1.0 + threshold
            } else if f.higher_is_better {
                ratio < 1.0 - threshold
            } else {
                ratio > 1.0 + threshold
            };
            let gated = gate.map_or(f.gated_by_default, |g| g.iter().any(|n| n == f.name));
            Row {
                name: f.name,
                a: va,
                b: vb,
                ratio,
                regressed,
                gated,
            }
        })
        .collect()
}

pub fn table(rows: &[Row], a: &str, b: &str, threshold: f64) -> String {
    let mut t = format!(
        "{:<18} {:>14} {:>14} {:>8}  verdict (threshold {:.1}%)\n",
        "figure (ms for latency)",
        a,
        b,
        "B/A",
        threshold * 100.0
    );
    for r in rows {
        let verdict = match (r.regressed, r.gated) {
            (true, true) => "REGRESSED",
            (true, false) => "worse (not gated)",
            _ => "ok",
        };
        t += &format!(
            "{:<23} {:>14.4} {:>14.4} {:>8.3}  {verdict}\n",
            r.name, r.a, r.b, r.ratio
        );
    }
    t
}

fn load(path: &str) -> Result<Summary> {
    let s = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    Summary::from_json(&s).with_context(|| format!("parsing {path}"))
}

/// `compare [--threshold PCT] [--gate a,b] A.json B.json`; Ok(false) on regression.
pub fn main(args: &[String]) -> Result<bool> {
    let mut threshold = 5.0;
    let mut gate: Option<Vec<String>> = None;
    let mut files = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--threshold" => threshold = it.next().context("--threshold PCT")?.parse()?,
            "--gate" => {
                gate = Some(
                    it.next()
                        .context("--gate LIST")?
                        .split(',')
                        .map(String::from)
                        .collect(),
                )
            }
            _ => files.push(a.clone()),
        }
    }
    let [fa, fb] = &files[..] else {
        bail!("usage: ringdns-perf compare [--threshold PCT] [--gate qps,p99] A.json B.json")
    };
    let (a, b) = (load(fa)?, load(fb)?);
    let rows = compare(&a, &b, threshold / 100.0, gate.as_deref());
    let name = |s: &Summary, f: &str| {
        if s.label.is_empty() {
            f.to_string()
        } else {
            s.label.clone()
        }
    };
    print!(
        "{}",
        table(&rows, &name(&a, "A"), &name(&b, "B"), threshold / 100.0)
    );
    let bad: Vec<&str> = rows
        .iter()
        .filter(|r| r.regressed && r.gated)
        .map(|r| r.name)
        .collect();
    if bad.is_empty() {
        println!("no regression beyond {threshold}%");
        Ok(true)
    } else {
        println!("regressed: {}", bad.join(", "));
        Ok(false)
    }
}

/// `median RUN.json...`: prints the run with the median QPS.
pub fn median_main(args: &[String]) -> Result<()> {
    let mut runs: Vec<Summary> = args.iter().map(|f| load(f)).collect::<Result<_>>()?;
    if runs.is_empty() {
        bail!("usage: ringdns-perf median RUN.json...");
    }
    runs.sort_by(|x, y| x.qps.total_cmp(&y.qps));
    println!("{}", runs[(runs.len() - 1) / 2].to_json());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(qps: f64, p99: f64, lost_pct: f64) -> Summary {
        let mut s = Summary {
            qps,
            lost_pct,
            completed: 1000,
            ..Default::default()
        };
        s.latency_s.p50 = 0.0001;
        s.latency_s.p99 = p99;
        s
    }

    #[test]
    fn detects_regressions() {
        let a = run(100_000.0, 0.001, 0.0);
        let same = compare(&a, &run(98_000.0, 0.00104, 0.01), 0.05, None);
        assert!(same.iter().all(|r| !r.regressed), "{same:?}");
        let slow = compare(&a, &run(90_000.0, 0.001, 0.0), 0.05, None);
        assert!(
            slow.iter()
                .any(|r| r.name == "qps" && r.regressed && r.gated)
        );
        let lat = compare(&a, &run(100_000.0, 0.002, 0.0), 0.05, None);
        assert!(
            lat.iter()
                .any(|r| r.name == "p99" && r.regressed && r.gated)
        );
        let lossy = compare(&a, &run(100_000.0, 0.001, 1.0), 0.05, None);
        assert!(lossy.iter().any(|r| r.name == "lost_pct" && r.regressed));
        let only_qps = vec!["qps".to_string()];
        let ungated = compare(&a, &run(100_000.0, 0.002, 0.0), 0.05, Some(&only_qps));
        assert!(ungated.iter().all(|r| !(r.regressed && r.gated)));
    }
}
