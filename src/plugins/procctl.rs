//! *multisocket*, *shed* and *pprof*: their setup, mapped onto ringdns's
//! per-core sockets (plugins.md A).
//!
//! * `multisocket [N]`: CoreDNS opens N SO_REUSEPORT sockets per listener. ringdns
//!   always opens one socket per worker; with `multisocket N` a listener gets N
//!   sockets, spread round-robin over the workers (a worker may own several, or
//!   none of that listener's), and the banner repeats as CoreDNS's does.
//! * `shed`: CoreDNS sheds UDP queries while its per-socket reply stack is full
//!   and drops the oldest replies. ringdns sends every batch's replies at once
//!   and never keeps more than one batch, so queries are never shed; replies
//!   the kernel refuses are dropped and counted as
//!   `coredns_shed_dropped_total{reason="response"}`.
//! * `pprof`: Go's profiler endpoints have no Rust equivalent worth shipping;
//!   the syntax is checked, then startup fails with a clear error.
//!
//! CoreDNS: `plugin/multisocket`, `plugin/shed`, `plugin/pprof`.

use corefile::keys::{self, Transport, go_atoi};
use corefile::{Diagnostic, Dispenser};

use crate::config::SetupCtx;

/// Largest `multisocket` value.
pub const MAX_SOCKETS: i64 = 1024;

/// *multisocket* [N] (default: the worker count).
pub fn multisocket(d: &mut Dispenser, ctx: &mut SetupCtx<'_>) -> Result<(), Diagnostic> {
    let w = |e: Diagnostic| e.in_plugin("multisocket");
    d.next();
    let args = d.remaining_args();
    if args.len() > 1 || d.next() {
        return Err(w(d.arg_err()));
    }
    let Some(a) = args.first() else {
        ctx.settings.multisocket = Some(crate::procs::workers().0);
        return Ok(());
    };
    let n = corefile::values::strconv_atoi(a)
        .map_err(|e| w(Diagnostic::plain(format!("invalid num sockets: {e}"))))?;
    if n < 1 {
        return Err(w(Diagnostic::plain(format!(
            "num sockets can not be zero or negative: {n}"
        ))));
    }
    if n > MAX_SOCKETS {
        return Err(w(Diagnostic::plain(format!(
            "num sockets exceeds maximum ({MAX_SOCKETS}): {n}"
        ))));
    }
    ctx.settings.multisocket = Some(n as usize);
    Ok(())
}

/// *shed* (no arguments; plain `dns://` blocks only).
pub fn shed(d: &mut Dispenser, ctx: &mut SetupCtx<'_>) -> Result<(), Diagnostic> {
    let w = |e: Diagnostic| e.in_plugin("shed");
    let mut i = 0;
    while d.next() {
        if i > 0 {
            return Err(w(crate::config::err_once()));
        }
        i += 1;
        if !d.remaining_args().is_empty() {
            return Err(w(d.arg_err()));
        }
        if d.next_block() {
            return Err(w(d.err("shed takes no options")));
        }
    }
    for k in ctx.keys {
        let (t, _) = keys::split_transport(k);
        if t != Transport::Dns {
            return Err(w(d.err(format!(
                "only plain DNS server blocks are supported; {k:?} uses transport {:?}",
                t.as_str()
            ))));
        }
    }
    ctx.settings.shed = true;
    Ok(())
}

/// *pprof* [ADDRESS] { block [RATE] }: syntax checked, then a clear error.
pub fn pprof(d: &mut Dispenser) -> Result<(), Diagnostic> {
    let w = |e: Diagnostic| e.in_plugin("pprof");
    let mut i = 0;
    while d.next() {
        if i > 0 {
            return Err(w(crate::config::err_once()));
        }
        i += 1;
        crate::http::address_arg(d, "pprof")?;
        while d.next_block() {
            match d.val() {
                "block" => {
                    let args = d.remaining_args();
                    if args.len() > 1 {
                        return Err(w(d.arg_err()));
                    }
                    if let Some(r) = args.first() {
                        go_atoi(r).ok_or_else(|| w(d.err(format!("invalid block rate {r:?}"))))?;
                    }
                }
                other => return Err(w(d.err(format!("unknown property '{other}'")))),
            }
        }
    }
    Err(w(Diagnostic::plain(
        "Go's /debug/pprof endpoints are not supported by ringdns; profile it with perf",
    )))
}
