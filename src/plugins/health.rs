//! *health* and *ready*: their setup (the endpoints are served by
//! [`crate::http`], lameduck by the signal handler).
//!
//! CoreDNS: `plugin/health/setup.go`, `plugin/ready/setup.go`.

use std::time::Duration;

use corefile::values::parse_go_duration;
use corefile::{Diagnostic, Dispenser};

use crate::config::SetupCtx;

/// *health* [ADDRESS] { lameduck DURATION }.
pub fn setup_health(d: &mut Dispenser, ctx: &mut SetupCtx<'_>) -> Result<(), Diagnostic> {
    let w = |e: Diagnostic| e.in_plugin("health");
    let mut addr = String::new();
    let mut lameduck = Duration::ZERO;
    while d.next() {
        if let Some(a) = crate::http::address_arg(d, "health")? {
            addr = a;
        }
        while d.next_block() {
            match d.val() {
                "lameduck" => {
                    let args = d.remaining_args();
                    if args.len() != 1 {
                        return Err(w(d.arg_err()));
                    }
                    lameduck = parse_go_duration(&args[0]).map_err(|e| {
                        w(Diagnostic::plain(format!(
                            "unable to parse lameduck duration value: '{}' : {e}",
                            args[0]
                        )))
                    })?;
                }
                other => return Err(w(d.err(format!("unknown property '{other}'")))),
            }
        }
    }
    if addr.is_empty() {
        addr = ":8080".into();
    }
    ctx.settings.health = Some((addr, lameduck));
    Ok(())
}

/// *ready* [ADDRESS] { monitor until-ready|continuously }.
pub fn setup_ready(d: &mut Dispenser, ctx: &mut SetupCtx<'_>) -> Result<(), Diagnostic> {
    let w = |e: Diagnostic| e.in_plugin("ready");
    let mut addr = ":8181".to_owned();
    let mut continuously = false;
    let mut i = 0;
    while d.next() {
        if i > 0 {
            return Err(w(crate::config::err_once()));
        }
        i += 1;
        if let Some(a) = crate::http::address_arg(d, "ready")? {
            addr = a;
        }
        while d.next_block() {
            match d.val() {
                "monitor" => {
                    let args = d.remaining_args();
                    if args.len() != 1 {
                        return Err(w(d.arg_err()));
                    }
                    continuously = match args[0].as_str() {
                        "until-ready" => false,
                        "continuously" => true,
                        other => {
                            return Err(w(d.err(format!("monitor type '{other}' not supported"))));
                        }
                    };
                }
                other => return Err(w(d.err(format!("unknown property '{other}'")))),
            }
        }
    }
    ctx.settings.ready = Some((addr, continuously));
    Ok(())
}
