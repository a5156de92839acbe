//! Directives that only change their block's configuration: *root*, *bind*,
//! *debug*, *cancel* (plugins.md A).
//!
//! CoreDNS: `plugin/root`, `plugin/bind`, `plugin/debug`, `plugin/cancel`.

use std::net::IpAddr;
use std::time::Duration;

use corefile::values::parse_go_duration_nanos;
use corefile::{Diagnostic, Dispenser};

use crate::clog;
use crate::config::SetupCtx;

/// *root* PATH.
pub fn root(d: &mut Dispenser, ctx: &mut SetupCtx<'_>) -> Result<(), Diagnostic> {
    let mut root = String::new();
    while d.next() {
        if !d.next_arg() {
            return Err(d.arg_err().in_plugin("root"));
        }
        root = d.val().to_owned();
    }
    match std::fs::metadata(&root) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            clog::log(
                clog::Level::Warning,
                Some("root"),
                &format!("Root path does not exist: {root}"),
            );
        }
        Err(e) => {
            return Err(d
                .err(format!(
                    "unable to access root path '{root}': {}",
                    crate::config::go_err(&e)
                ))
                .in_plugin("root"));
        }
    }
    ctx.settings.root = Some(root);
    Ok(())
}

/// *debug*.
pub fn debug(d: &mut Dispenser, ctx: &mut SetupCtx<'_>) -> Result<(), Diagnostic> {
    while d.next() {
        if d.next_arg() {
            return Err(d.arg_err().in_plugin("debug"));
        }
        ctx.settings.debug = true;
    }
    Ok(())
}

/// *cancel* [TIMEOUT] (default 5001 ms).
pub fn cancel(d: &mut Dispenser, ctx: &mut SetupCtx<'_>) -> Result<(), Diagnostic> {
    let w = |e: Diagnostic| e.in_plugin("cancel");
    let mut timeout = Duration::from_millis(5001);
    while d.next() {
        let args = d.remaining_args();
        match args.as_slice() {
            [] => timeout = Duration::from_millis(5001),
            [a] => {
                let n = parse_go_duration_nanos(a)
                    .map_err(|_| w(Diagnostic::plain(format!("invalid duration: {a:?}"))))?;
                if n <= 0 {
                    return Err(w(Diagnostic::plain(format!(
                        "invalid negative duration: {a:?}"
                    ))));
                }
                timeout = Duration::from_nanos(n as u64);
            }
            _ => return Err(w(d.arg_err())),
        }
    }
    ctx.settings.cancel = Some(timeout);
    Ok(())
}

/// Addresses of the interface named `name` (IPv6 link-local get `%name`).
fn interface_addrs(name: &str) -> Option<Vec<String>> {
    let addrs = nix::ifaddrs::getifaddrs().ok()?;
    let mut found = false;
    let mut out = Vec::new();
    for a in addrs {
        if a.interface_name != name {
            continue;
        }
        found = true;
        let Some(sa) = a.address else { continue };
        if let Some(v4) = sa.as_sockaddr_in() {
            out.push(v4.ip().to_string());
        } else if let Some(v6) = sa.as_sockaddr_in6() {
            let ip = v6.ip();
            if (ip.segments()[0] & 0xffc0) == 0xfe80 || (ip.segments()[0] & 0xff0f) == 0xff02 {
                out.push(format!("{ip}%{name}"));
            } else {
                out.push(ip.to_string());
            }
        }
    }
    found.then_some(out)
}

fn list_ip(args: &[String]) -> Result<Vec<String>, Diagnostic> {
    let mut all = Vec::new();
    for a in args {
        if let Some(addrs) = interface_addrs(a) {
            all.extend(addrs);
            continue;
        }
        if a.parse::<IpAddr>().is_err() {
            return Err(Diagnostic::plain(format!(
                "not a valid IP address or interface name: {a:?}"
            )));
        }
        all.push(a.clone());
    }
    Ok(all)
}

/// *bind* ADDRESS|IFACE... { except ... }.
pub fn bind(d: &mut Dispenser, ctx: &mut SetupCtx<'_>) -> Result<(), Diagnostic> {
    let w = |e: Diagnostic| e.in_plugin("bind");
    let mut all: Vec<String> = Vec::new();
    while d.next() {
        let addrs = d.remaining_args();
        if addrs.is_empty() {
            return Err(w(Diagnostic::plain(
                "at least one address or interface name is expected",
            )));
        }
        let mut except = Vec::new();
        while d.next_block() {
            match d.val() {
                "except" => {
                    except = d.remaining_args();
                    if except.is_empty() {
                        return Err(w(Diagnostic::plain(
                            "at least one address or interface must be given to except subdirective",
                        )));
                    }
                }
                other => return Err(w(Diagnostic::plain(format!("invalid option {other:?}")))),
            }
        }
        let ips = list_ip(&addrs).map_err(w)?;
        let except = list_ip(&except).map_err(w)?;
        all.extend(ips.into_iter().filter(|ip| !except.contains(ip)));
    }
    ctx.settings.listen_hosts = all;
    Ok(())
}
