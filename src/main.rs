//! The `ringdns` daemon: CoreDNS's command line, startup and signals.

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;

use ringdns::cli::{self, CliExit};
use ringdns::config::{self, directives};
use ringdns::server::{self, Active, Shared};
use ringdns::{COREDNS_VERSION, VERSION, clog, procs};

fn version_text() -> String {
    let commit = option_env!("RINGDNS_COMMIT").unwrap_or("");
    format!(
        "CoreDNS-{COREDNS_VERSION}\n{}/{}, ringdns-{VERSION}, {commit}\n",
        std::env::consts::OS,
        go_arch()
    )
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

fn fatal(msg: &str) -> ExitCode {
    let _ = writeln!(std::io::stderr(), "{msg}");
    ExitCode::from(1)
}

/// Go's `log` timestamp (`2026/11/27 03:07:20`), UTC.
fn go_log_time() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = secs / 86_400;
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    format!("{y:04}/{mo:02}/{d:02} {h:02}:{m:02}:{s:02}")
}

fn raise_nofile() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let argv0 = args.first().cloned().unwrap_or_else(|| "ringdns".into());
    let cli = match cli::parse(&argv0, &args[1..]) {
        Ok(c) => c,
        Err(CliExit::Exit { stderr, code }) => {
            let _ = std::io::stderr().write_all(stderr.as_bytes());
            return ExitCode::from(code as u8);
        }
    };
    // A closed stdout (`-plugins | head`) is not an error worth a panic.
    if cli.version {
        let _ = write!(std::io::stdout(), "{}", version_text());
        return ExitCode::SUCCESS;
    }
    if cli.plugins {
        let _ = writeln!(std::io::stdout(), "{}", directives::plugins_listing());
        return ExitCode::SUCCESS;
    }
    if !cli.rest.is_empty() {
        return fatal(&format!(
            "{} extra command line arguments: [{}]",
            go_log_time(),
            cli.rest.join(" ")
        ));
    }
    raise_nofile();
    let (workers, maxprocs) = procs::workers();
    clog::raw(&maxprocs);

    let input = match config::load_input(&cli.conf, &cli.dns_port) {
        Ok(i) => i,
        Err(e) => return fatal(&e),
    };
    let cfg = match config::build(input, &cli.dns_port) {
        Ok(c) => c,
        Err(e) => return fatal(&e.to_string()),
    };
    for w in &cfg.warnings {
        clog::warning(w);
    }
    let backend = match ringdns::server::engine::choose(&cli.backend) {
        Ok(b) => b,
        Err(e) => return fatal(&e),
    };
    if cli.validate {
        clog::info(&backend.describe());
        clog::raw("Configuration OK");
        return ExitCode::SUCCESS;
    }
    clog::set_debug(cfg.blocks.iter().any(|b| b.settings.debug));
    let banner = server::banner(&cfg);
    let socks = match server::bind_all(&cfg, workers, &[]) {
        Ok(s) => s,
        Err(e) => return fatal(&e),
    };
    if let Err(e) = server::ops::ENDPOINTS.prepare(&server::ops::wanted(&cfg)) {
        return fatal(&e);
    }
    let active = match Active::build(cfg) {
        Ok(a) => a,
        Err(e) => return fatal(&e),
    };
    server::ops::set_plugin_enabled(&active);
    let shared = Shared::new(active);
    server::ops::install(&shared);
    clog::info(&backend.describe());
    let mut handles = Vec::new();
    for (i, s) in socks.into_iter().enumerate() {
        let spawned = match backend.backend {
            server::engine::Backend::Uring => server::spawn_uring_worker(i, Arc::clone(&shared), s),
            server::engine::Backend::Epoll => server::spawn_epoll_worker(i, Arc::clone(&shared), s),
        };
        match spawned {
            Ok(h) => handles.push(h),
            Err(e) => return fatal(&format!("starting worker: {e}")),
        }
    }
    if !cli.quiet {
        print!("{banner}");
        let _ = std::io::stdout().flush();
    }
    {
        // The reload plugin's startup hook logs between the zones and the version.
        let a = shared.active.load();
        if a.config.reload.is_some() {
            if let Ok(h) = ringdns::plugins::reload::config_hash(
                &a.config.input.text,
                &a.config.input.filename,
            ) {
                ringdns::server::signals::log_hash(&h);
            }
        }
    }
    if !cli.quiet {
        print!("{}", version_text());
        let _ = std::io::stdout().flush();
    }
    // The pidfile is written once the signal handlers are in place (`signals::run`): a
    // signal sent as soon as it appears must not meet the default action.
    ringdns::server::signals::run(&shared, handles, &cli)
}
