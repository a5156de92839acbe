//! Signals and process lifecycle as CoreDNS (caddy) handles them
//! (cli-and-ops.md §3): SIGUSR1 reload, SIGTERM graceful stop, SIGINT (twice
//! forces), SIGQUIT immediate, SIGHUP ignored, SIGUSR2 harmless.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};

use super::{Active, Shared, WorkerCmd, WorkerHandle, bind_all, labels, ops};
use crate::cli::Cli;
use crate::clog;
use crate::config;

fn remove_pidfile(cli: &Cli) {
    if !cli.pidfile.is_empty() {
        let _ = std::fs::remove_file(&cli.pidfile);
    }
}

/// Reloads the configuration; on failure the old one keeps serving and the
/// error is returned (CoreDNS's text).
pub fn reload(shared: &Arc<Shared>, handles: &[WorkerHandle], cli: &Cli) -> Result<(), String> {
    let _guard = super::RELOAD_LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let old = shared.active.load_full();
    let input = config::reload_input(&old.config.input.source, &cli.dns_port)?;
    let cfg = config::build(input, &cli.dns_port).map_err(|e| e.to_string())?;
    let existing: Vec<String> = labels(&old.config).into_keys().collect();
    let new_socks = bind_all(&cfg, handles.len(), &existing)?;
    let want = ops::wanted(&cfg);
    ops::ENDPOINTS.prepare(&want)?;
    let active = Active::build(cfg)?;
    clog::set_debug(active.config.blocks.iter().any(|b| b.settings.debug));
    ops::set_plugin_enabled(&active);
    shared.active.store(Arc::new(active));
    ops::ENDPOINTS.commit(&want, ops::handle);
    for (h, socks) in handles.iter().zip(new_socks) {
        if !socks.is_empty() {
            let _ = h.cmds.send(WorkerCmd::Add(socks));
            h.wake.notify_one();
        }
    }
    Ok(())
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
                    // Shutdown callbacks in plugin.cfg order: ready closes first,
                    // then health's lameduck while DNS keeps serving.
                    ops::ENDPOINTS.stop_kind(crate::http::Kind::Ready);
                    let lameduck = ops::lameduck(&shared.active.load().config);
                    if !lameduck.is_zero() {
                        clog::log(
                            clog::Level::Info,
                            Some("health"),
                            &format!("Going into lameduck mode for {}", corefile::values::format_go_duration(lameduck)),
                        );
                        tokio::time::sleep(lameduck).await;
                    }
                    shared.stop();
                    remove_pidfile(cli);
                    let deadline = std::time::Instant::now() + Duration::from_secs(5);
                    for h in handles {
                        while !h.thread.is_finished() && std::time::Instant::now() < deadline {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                    return ExitCode::SUCCESS;
                }
                () = next(&mut int) => {
                    clog::info("SIGINT: Shutting down");
                    remove_pidfile(cli);
                    shared.stop();
                    // Shutdown callbacks run while a second SIGINT forces the exit.
                    let done = async {
                        for h in &handles {
                            while !h.thread.is_finished() {
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
                () = next(&mut usr2) => {
                    clog::info("SIGUSR2: Upgrading");
                    clog::error("SIGUSR2: binary upgrade is not supported by ringdns; still running");
                }
                () = next(&mut usr1) => {
                    clog::info("SIGUSR1: Reloading");
                    clog::info("Reloading");
                    match reload(shared, &handles, cli) {
                        Ok(()) => clog::info("Reloading complete"),
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
