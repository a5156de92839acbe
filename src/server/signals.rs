//! Signals and process lifecycle as CoreDNS (caddy) handles them
//! (cli-and-ops.md §3): SIGUSR1 reload, SIGTERM graceful stop, SIGINT (twice
//! forces), SIGQUIT immediate, SIGHUP ignored, SIGUSR2 harmless.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};

use super::{Active, Shared, WorkerHandle, bind_all, labels, ops};
use crate::cli::Cli;
use crate::clog;
use crate::config;

/// Writes the process id to `-pidfile`, if given (an error is logged, as CoreDNS does).
fn write_pidfile(cli: &Cli) {
    if cli.pidfile.is_empty() {
        return;
    }
    let pid = std::process::id();
    if let Err(e) = std::fs::write(&cli.pidfile, format!("{pid}\n")) {
        clog::error(&format!(
            "Could not write pidfile: {}",
            crate::config::go_err(&e)
        ));
    }
}

fn remove_pidfile(cli: &Cli) {
    if !cli.pidfile.is_empty() {
        let _ = std::fs::remove_file(&cli.pidfile);
    }
}

/// Reloads the configuration; on failure the old one keeps serving and the
/// error is returned (CoreDNS's text).
pub fn reload(shared: &Arc<Shared>, handles: &[WorkerHandle], cli: &Cli) -> Result<(), String> {
    let old = shared.active.load_full();
    let input = config::reload_input(&old.config.input.source, &cli.dns_port)?;
    reload_with(shared, handles, cli, input)
}

/// Reloads from `input` (already loaded).
pub fn reload_with(
    shared: &Arc<Shared>,
    handles: &[WorkerHandle],
    cli: &Cli,
    input: config::Input,
) -> Result<(), String> {
    let _guard = super::RELOAD_LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let old = shared.active.load_full();
    let cfg = config::build(input, &cli.dns_port).map_err(|e| e.to_string())?;
    let existing: Vec<String> = labels(&old.config).into_keys().collect();
    let new_socks = bind_all(&cfg, handles.len(), &existing)?;
    let want = ops::wanted(&cfg);
    ops::ENDPOINTS.prepare(&want)?;
    let active = Active::build(cfg)?;
    clog::set_debug(active.config.blocks.iter().any(|b| b.settings.debug));
    ops::set_plugin_enabled(&active);
    shared.active.store(Arc::new(active));
    // The old instance's shutdown callbacks: errors' pending summaries, dnstap's
    // sinks.
    old.flush_logs();
    old.close_taps();
    ops::ENDPOINTS.commit(&want, ops::handle);
    for (h, socks) in handles.iter().zip(new_socks) {
        h.add(socks);
    }
    // The new instance's startup hook (reload plugin) logs its hash.
    let active = shared.active.load();
    if active.config.reload.is_some() {
        if let Ok(h) = crate::plugins::reload::config_hash(
            &active.config.input.text,
            &active.config.input.filename,
        ) {
            log_hash(&h);
        }
    }
    // Then caddy's `EmitEvent(InstanceStartupEvent)` (before "Reloading complete").
    emit_hooks(&active.config, crate::plugins::on::Event::Startup);
    Ok(())
}

/// `[INFO] plugin/reload: Running configuration SHA512 = HEX`.
pub fn log_hash(h: &str) {
    clog::log(
        clog::Level::Info,
        Some("reload"),
        &format!("Running configuration SHA512 = {h}"),
    );
}

/// The reload plugin's poll: `Some(input)` when the Corefile's parsed form changed.
fn reload_poll(shared: &Arc<Shared>, cli: &Cli, current: &mut String) -> Option<config::Input> {
    let old = shared.active.load();
    let input = config::reload_input(&old.config.input.source, &cli.dns_port).ok()?;
    match crate::plugins::reload::config_hash(&input.text, &input.filename) {
        Err(e) => {
            clog::log(
                clog::Level::Warning,
                Some("reload"),
                &format!("Corefile parse failed: {e}"),
            );
            None
        }
        Ok(h) if h != *current => {
            *current = h;
            Some(input)
        }
        Ok(_) => None,
    }
}

/// Runs the configuration's *on* hooks for `event`.
fn emit_hooks(cfg: &config::Config, event: crate::plugins::on::Event) {
    crate::plugins::on::emit(cfg.blocks.iter().flat_map(|b| &b.settings.on_hooks), event);
}

/// CoreDNS's shutdown callbacks on final shutdown (SIGTERM, SIGINT), in plugin.cfg
/// order: *errors* writes its pending summaries, *ready* closes, then *health*'s
/// lameduck while DNS keeps serving.
async fn shutdown_callbacks(shared: &Arc<Shared>) {
    let active = shared.active.load_full();
    // Third-party hooks first (caddy's `EmitEvent(ShutdownEvent)`): *on shutdown*.
    emit_hooks(&active.config, crate::plugins::on::Event::Shutdown);
    active.flush_logs();
    ops::ENDPOINTS.stop_kind(crate::http::Kind::Ready);
    let lameduck = ops::lameduck(&active.config);
    if !lameduck.is_zero() {
        clog::log(
            clog::Level::Info,
            Some("health"),
            &format!(
                "Going into lameduck mode for {}",
                corefile::values::format_go_duration(lameduck)
            ),
        );
        tokio::time::sleep(lameduck).await;
    }
    // *dnstap* (after *health* in plugin.cfg order): what was answered during the
    // lameduck is tapped too.
    active.close_taps();
}

/// Runs the signal loop on the main thread until the process must exit.
pub fn run(shared: &Arc<Shared>, handles: Vec<WorkerHandle>, cli: &Cli) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            clog::error(&format!("signal runtime: {e}"));
            return ExitCode::from(1);
        }
    };
    rt.block_on(async {
        ops::ENDPOINTS.commit(&ops::wanted(&shared.active.load().config), ops::handle);
        let mut hash = {
            let a = shared.active.load();
            crate::plugins::reload::config_hash(&a.config.input.text, &a.config.input.filename).unwrap_or_default()
        };
        let far = Duration::from_secs(365 * 86_400);
        let mut next_poll = tokio::time::Instant::now() + shared.active.load().config.reload.unwrap_or(far);
        tokio::spawn(ops::health_self_check());
        let mk = |k: SignalKind| signal(k).ok();
        let (mut term, mut int, mut quit, mut hup, mut usr1, mut usr2) = (
            mk(SignalKind::terminate()),
            mk(SignalKind::interrupt()),
            mk(SignalKind::quit()),
            mk(SignalKind::hangup()),
            mk(SignalKind::user_defined1()),
            mk(SignalKind::user_defined2()),
        );
        write_pidfile(cli);
        // Caddy's `EmitEvent(InstanceStartupEvent)` once the servers are up: *on startup*,
        // on a thread of its own (caddy's signal goroutines keep handling signals
        // while a blocking command runs).
        {
            let active = shared.active.load_full();
            let _ = std::thread::Builder::new()
                .name("ringdns-on-startup".into())
                .spawn(move || emit_hooks(&active.config, crate::plugins::on::Event::Startup));
        }
        async fn next(s: &mut Option<tokio::signal::unix::Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        loop {
            tokio::select! {
                () = next(&mut term) => {
                    clog::info("SIGTERM: Shutting down servers then terminating");
                    shutdown_callbacks(shared).await;
                    shared.stop();
                    remove_pidfile(cli);
                    let deadline = std::time::Instant::now() + Duration::from_secs(5);
                    for h in handles {
                        while !h.is_finished() && std::time::Instant::now() < deadline {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                    return ExitCode::SUCCESS;
                }
                () = next(&mut int) => {
                    clog::info("SIGINT: Shutting down");
                    remove_pidfile(cli);
                    // The shutdown callbacks (lameduck included) run while a second
                    // SIGINT forces the exit; then the process ends.
                    let done = async {
                        shutdown_callbacks(shared).await;
                        shared.stop();
                        let deadline = std::time::Instant::now() + Duration::from_secs(5);
                        for h in &handles {
                            while !h.is_finished() && std::time::Instant::now() < deadline {
                                tokio::time::sleep(Duration::from_millis(10)).await;
                            }
                        }
                    };
                    tokio::select! {
                        () = done => return ExitCode::SUCCESS,
                        () = next(&mut int) => {
                            clog::info("SIGINT: Force quit");
                            return ExitCode::from(2);
                        }
                    }
                }
                () = next(&mut quit) => {
                    clog::info("SIGQUIT: Quitting process immediately");
                    remove_pidfile(cli);
                    return ExitCode::SUCCESS;
                }
                () = next(&mut hup) => {}
                () = tokio::time::sleep_until(next_poll) => {
                    if shared.active.load().config.reload.is_some() {
                        if let Some(input) = reload_poll(shared, cli, &mut hash) {
                            clog::info("Reloading");
                            let result = reload_with(shared, &handles, cli, input);
                            // CoreDNS sets the version gauge to the new file's hash
                            // whether or not the restart succeeded.
                            *crate::metrics::RELOAD_VERSION.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(hash.clone());
                            match result {
                                Ok(()) => {
                                    clog::info("Reloading complete");
                                }
                                Err(e) => {
                                    clog::error(&format!("Restart failed: {e}"));
                                    clog::log(
                                        clog::Level::Error,
                                        Some("reload"),
                                        &format!("Corefile changed but reload failed: starting with listener file descriptors: {e}"),
                                    );
                                    crate::metrics::RELOAD_FAILED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                }
                            }
                        }
                    }
                    next_poll = tokio::time::Instant::now() + shared.active.load().config.reload.unwrap_or(far);
                }
                () = next(&mut usr2) => {
                    clog::info("SIGUSR2: Upgrading");
                    clog::error("SIGUSR2: binary upgrade is not supported by ringdns; still running");
                }
                () = next(&mut usr1) => {
                    clog::info("SIGUSR1: Reloading");
                    clog::info("Reloading");
                    match reload(shared, &handles, cli) {
                        Ok(()) => {
                            let a = shared.active.load();
                            hash = crate::plugins::reload::config_hash(&a.config.input.text, &a.config.input.filename).unwrap_or_default();
                            next_poll = tokio::time::Instant::now() + a.config.reload.unwrap_or(far);
                            clog::info("Reloading complete");
                        }
                        Err(e) => {
                            clog::error(&format!("Restart failed: {e}"));
                            clog::error(&format!("SIGUSR1: starting with listener file descriptors: {e}"));
                        }
                    }
                }
            }
        }
    })
}
