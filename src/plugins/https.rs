//! *https* { max_connections N } and *quic* { max_streams N; worker_pool_size N }: the
//! limits of a block's `https://` (DNS over HTTPS) and `quic://` (DNS over QUIC)
//! listeners, as CoreDNS 1.14.7's `plugin/https` and `plugin/quic` parse them. A
//! listener takes the values of its first block.

use corefile::{Diagnostic, Dispenser};

use crate::config::SetupCtx;

/// CoreDNS's `DefaultHTTPSMaxConnections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 200;

/// Reads the first `https` line of the block (CoreDNS's setup reads only that one).
pub fn setup(d: &mut Dispenser, ctx: &mut SetupCtx<'_>) -> Result<(), Diagnostic> {
    let w = |e: Diagnostic| e.in_plugin("https");
    d.next();
    if !d.remaining_args().is_empty() {
        return Err(w(d.arg_err()));
    }
    while d.next_block() {
        match d.val() {
            "max_connections" => {
                let args = d.remaining_args();
                let [a] = args.as_slice() else {
                    return Err(w(d.arg_err()));
                };
                let n = corefile::values::strconv_atoi(a)
                    .map_err(|e| w(d.err(format!("invalid max_connections value '{a}': {e}"))))?;
                if n < 0 {
                    return Err(w(d.err(format!(
                        "max_connections must be a non-negative integer: {n}"
                    ))));
                }
                if ctx.settings.https_max_connections.is_some() {
                    return Err(w(
                        d.err("max_connections already defined for this server block")
                    ));
                }
                ctx.settings.https_max_connections = Some(usize::try_from(n).unwrap_or(usize::MAX));
            }
            other => return Err(w(d.err(format!("unknown property '{other}'")))),
        }
    }
    Ok(())
}

/// CoreDNS's `DefaultMaxQUICStreams`: streams per DoQ connection.
pub const DEFAULT_QUIC_STREAMS: usize = 256;
/// CoreDNS's `DefaultQUICStreamWorkers`: DoQ queries served at once per listener.
pub const DEFAULT_QUIC_WORKERS: usize = 1024;
/// CoreDNS's `DefaultQUICMaxConnections` (no option sets it in 1.14.7).
pub const DEFAULT_QUIC_CONNECTIONS: usize = 200;

/// *quic* { max_streams N; worker_pool_size N }, as CoreDNS 1.14.7's `plugin/quic`
/// parses it (the first `quic` line of the block only).
pub fn setup_quic(d: &mut Dispenser, ctx: &mut SetupCtx<'_>) -> Result<(), Diagnostic> {
    let w = |e: Diagnostic| e.in_plugin("quic");
    d.next();
    if !d.remaining_args().is_empty() {
        return Err(w(d.arg_err()));
    }
    while d.next_block() {
        let name = d.val().to_owned();
        let slot = match name.as_str() {
            "max_streams" => &mut ctx.settings.quic_max_streams,
            "worker_pool_size" => &mut ctx.settings.quic_worker_pool,
            other => return Err(w(d.err(format!("unknown property '{other}'")))),
        };
        let args = d.remaining_args();
        let [a] = args.as_slice() else {
            return Err(w(d.arg_err()));
        };
        let n = corefile::values::strconv_atoi(a)
            .map_err(|e| w(d.err(format!("invalid {name} value '{a}': {e}"))))?;
        if n <= 0 {
            return Err(w(d.err(format!("{name} must be a positive integer: {n}"))));
        }
        if slot.is_some() {
            return Err(w(
                d.err(format!("{name} already defined for this server block"))
            ));
        }
        *slot = Some(usize::try_from(n).unwrap_or(usize::MAX));
    }
    Ok(())
}
