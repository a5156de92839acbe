//! `ringdns-perf`: load run (dnsperf options), `compare`, `median`, `plot`, `relay`.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use anyhow::{Context, Result};
use ringdns_perf::args::Options;
use ringdns_perf::query::QuerySet;
use ringdns_perf::report::{Summary, steps_text};
use ringdns_perf::run::{Shared, run};
use ringdns_perf::{compare, plot, ramp, relay};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args.first().map(String::as_str) {
        Some("compare") => compare::main(&args[1..]),
        Some("median") => compare::median_main(&args[1..]).map(|()| true),
        Some("plot") => plot::main(&args[1..]).map(|()| true),
        Some("relay") => relay::main(&args[1..]).map(|()| true),
        _ => load(&args).map(|()| true),
    };
    match r {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn load(args: &[String]) -> Result<()> {
    let o = Options::parse(args)?;
    let queries = QuerySet::load(o.datafile.as_deref(), o.edns)?;
    let maxruns = o.input_runs();
    let shared = Shared::new(queries, maxruns);
    let json_only = o.json.as_deref() == Some("-");
    let say = |s: &str| {
        if !json_only {
            println!("{s}");
        }
    };
    say("DNS Performance Testing Tool (ringdns-perf)\n");
    say(&format!("[Status] Command line: {}", o.command));
    say(&format!(
        "[Status] Sending queries (to {})",
        ringdns_perf::run::resolve(&o)?
    ));
    let summary = if let Some(r) = o.ramp {
        ramp::run_ramp(&o, &shared, r)?
    } else {
        if let Some(l) = o.limit {
            say(&format!("[Status] Stopping after {l:.6} seconds"));
        }
        let out = run(&o, &shared, o.max_qps, o.limit)?;
        say("[Status] Testing complete\n");
        Summary::new(&o, &out)
    };
    say(&summary.text());
    if !summary.steps.is_empty() {
        say(&steps_text(&summary));
    }
    match o.json.as_deref() {
        Some("-") => println!("{}", summary.to_json()),
        Some(path) => std::fs::write(path, summary.to_json() + "\n")
            .with_context(|| format!("writing {path}"))?,
        None => {}
    }
    Ok(())
}
