//! `plot OUT.svg RUN.json...`: an SVG report for people who would rather
//! look than read. Top: latency percentiles (log scale) against offered
//! rate, one line per file and percentile (ramp files give one point per
//! step; plain runs one point at their offered or achieved rate). Bottom:
//! completed QPS per run. SVG only: the bitmap backend needs system fonts.

use anyhow::{Context, Result, anyhow, bail};
use plotters::prelude::*;

use crate::report::Summary;

fn pe<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing: {e:?}")
}

/// (x = offered or achieved q/s, percentiles in ms) points of one file.
fn points(s: &Summary) -> Vec<(f64, [f64; 4])> {
    let runs: Vec<&Summary> = if s.steps.is_empty() {
        vec![s]
    } else {
        s.steps.iter().collect()
    };
    let mut v: Vec<(f64, [f64; 4])> = runs
        .iter()
        .filter(|r| r.completed > 0)
        .map(|r| {
            let l = &r.latency_s;
            (
                r.offered_qps.unwrap_or(r.qps),
                [l.p50 * 1e3, l.p90 * 1e3, l.p99 * 1e3, l.p999 * 1e3],
            )
        })
        .collect();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    v
}

const PCT_NAMES: [&str; 4] = ["p50", "p90", "p99", "p99.9"];

pub fn draw(out: &str, runs: &[(String, Summary)]) -> Result<()> {
    if !out.ends_with(".svg") {
        bail!("only SVG output is built in (name the file *.svg)");
    }
    let root = SVGBackend::new(out, (1000, 900)).into_drawing_area();
    root.fill(&WHITE).map_err(pe)?;
    let (top, bottom) = root.split_vertically(520);

    let all: Vec<Vec<(f64, [f64; 4])>> = runs.iter().map(|(_, s)| points(s)).collect();
    let xs = all.iter().flatten().map(|p| p.0);
    let ys = all.iter().flatten().flat_map(|p| p.1);
    let xmax = xs.fold(1.0f64, f64::max) * 1.1;
    let ymax = ys.clone().fold(0.001f64, f64::max) * 2.0;
    let ymin = ys
        .filter(|y| *y > 0.0)
        .fold(f64::INFINITY, f64::min)
        .min(ymax / 4.0)
        / 2.0;
    let mut chart = ChartBuilder::on(&top)
        .caption(
            "Latency percentiles against offered rate",
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..xmax, (ymin.max(1e-4)..ymax).log_scale())
        .map_err(pe)?;
    chart
        .configure_mesh()
        .x_desc("offered rate (queries/s)")
        .x_label_formatter(&|x| format!("{:.0}k", x / 1000.0))
        .y_label_formatter(&|y| format!("{y}"))
        .y_desc("latency (ms, log)")
        .draw()
        .map_err(pe)?;
    for (fi, ((name, _), pts)) in runs.iter().zip(&all).enumerate() {
        for (pi, pname) in PCT_NAMES.iter().enumerate() {
            let color = Palette99::pick(fi * 4 + pi).to_rgba();
            let line: Vec<(f64, f64)> = pts.iter().map(|p| (p.0, p.1[pi].max(1e-4))).collect();
            chart
                .draw_series(LineSeries::new(line.clone(), color.stroke_width(2)))
                .map_err(pe)?
                .label(format!("{name} {pname}"))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
            chart
                .draw_series(
                    line.iter()
                        .map(|&(x, y)| Circle::new((x, y), 3, color.filled())),
                )
                .map_err(pe)?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(pe)?;

    // Completed QPS per run (ramp files: per step).
    let bars: Vec<(String, f64)> = runs
        .iter()
        .flat_map(|(name, s)| {
            if s.steps.is_empty() {
                vec![(name.clone(), s.qps)]
            } else {
                s.steps
                    .iter()
                    .map(|st| {
                        (
                            format!("{name}@{:.0}", st.offered_qps.unwrap_or(0.0)),
                            st.qps,
                        )
                    })
                    .collect()
            }
        })
        .collect();
    let qmax = bars.iter().map(|b| b.1).fold(1.0f64, f64::max) * 1.15;
    let n = bars.len().max(1);
    let mut qc = ChartBuilder::on(&bottom)
        .caption("Completed queries per second, per run", ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..n as f64, 0f64..qmax)
        .map_err(pe)?;
    qc.configure_mesh()
        .disable_x_mesh()
        .disable_x_axis()
        .y_desc("queries/s")
        .y_label_formatter(&|y| format!("{:.0}k", y / 1000.0))
        .draw()
        .map_err(pe)?;
    for (i, (name, q)) in bars.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let x = i as f64;
        qc.draw_series([Rectangle::new(
            [(x + 0.1, 0.0), (x + 0.9, *q)],
            color.filled(),
        )])
        .map_err(pe)?;
        let value = Text::new(
            format!("{:.1}k", q / 1000.0),
            (x + 0.12, q + qmax * 0.06),
            ("sans-serif", 14),
        );
        let label = Text::new(name.clone(), (x + 0.12, qmax * 0.06), ("sans-serif", 12));
        qc.draw_series([value, label]).map_err(pe)?;
    }
    root.present().map_err(pe)?;
    Ok(())
}

/// `plot OUT.svg RUN.json...`
pub fn main(args: &[String]) -> Result<()> {
    let [out, files @ ..] = args else {
        bail!("usage: ringdns-perf plot OUT.svg RUN.json...")
    };
    if files.is_empty() {
        bail!("usage: ringdns-perf plot OUT.svg RUN.json...");
    }
    let mut runs = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).with_context(|| format!("reading {f}"))?;
        let s = Summary::from_json(&text).with_context(|| format!("parsing {f}"))?;
        let name = if s.label.is_empty() {
            std::path::Path::new(f)
                .file_stem()
                .map_or_else(|| f.clone(), |x| x.to_string_lossy().into_owned())
        } else {
            s.label.clone()
        };
        runs.push((name, s));
    }
    draw(out, &runs)?;
    eprintln!("wrote {out}");
    Ok(())
}
