//! *https* { max_connections N }, *https3* { max_streams N; max_connections N },
//! *quic* { max_streams N; worker_pool_size N } and *grpc_server* { max_streams N;
//! max_connections N }: the limits of a block's `https://` (DNS over HTTPS),
//! `https3://` (DNS over HTTP/3), `quic://` (DNS over QUIC) and `grpc://` listeners,
//! as CoreDNS 1.14.7's `plugin/https`, `plugin/https3`, `plugin/quic` and
//! `plugin/grpc_server` parse them
//! (each reads only the first line of its directive in a block). A listener takes the
//! values of its first block.

use corefile::{Diagnostic, Dispenser};

use crate::config::SetupCtx;

/// CoreDNS's `DefaultHTTPSMaxConnections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 200;
/// CoreDNS's `DefaultMaxQUICStreams`: streams per DoQ connection.
pub const DEFAULT_QUIC_STREAMS: usize = 256;
/// CoreDNS's `DefaultQUICStreamWorkers`: DoQ queries served at once per listener.
pub const DEFAULT_QUIC_WORKERS: usize = 1024;
/// CoreDNS's `DefaultQUICMaxConnections` (no option sets it in 1.14.7).
pub const DEFAULT_QUIC_CONNECTIONS: usize = 200;
/// CoreDNS's `DefaultHTTPS3MaxStreams`.
pub const DEFAULT_HTTPS3_STREAMS: usize = 256;
/// CoreDNS's `DefaultGRPCMaxStreams`.
pub const DEFAULT_GRPC_STREAMS: usize = 256;
/// CoreDNS's `DefaultGRPCMaxConnections`.
pub const DEFAULT_GRPC_CONNECTIONS: usize = 200;

/// One numeric option: its name, where it goes, and its least value (0 or 1).
type Opt<'a> = (&'static str, &'a mut Option<usize>, i64);

/// Reads the first line of `plugin` and its block of numeric `opts`.
fn limits(d: &mut Dispenser, plugin: &str, opts: &mut [Opt<'_>]) -> Result<(), Diagnostic> {
    let w = |e: Diagnostic| e.in_plugin(plugin);
    d.next();
    if !d.remaining_args().is_empty() {
        return Err(w(d.arg_err()));
    }
    while d.next_block() {
        let name = d.val().to_owned();
        let Some((_, slot, least)) = opts.iter_mut().find(|o| o.0 == name) else {
            return Err(w(d.err(format!("unknown property '{name}'"))));
        };
        let args = d.remaining_args();
        let [a] = args.as_slice() else {
            return Err(w(d.arg_err()));
        };
        let n = corefile::values::strconv_atoi(a)
            .map_err(|e| w(d.err(format!("invalid {name} value '{a}': {e}"))))?;
        if n < *least {
            let what = if *least > 0 {
                "a positive"
            } else {
                "a non-negative"
            };
            return Err(w(d.err(format!("{name} must be {what} integer: {n}"))));
        }
        if slot.is_some() {
            return Err(w(
                d.err(format!("{name} already defined for this server block"))
            ));
        }
        **slot = Some(usize::try_from(n).unwrap_or(usize::MAX));
    }
    Ok(())
}

/// *https*.
pub fn setup(d: &mut Dispenser, ctx: &mut SetupCtx<'_>) -> Result<(), Diagnostic> {
    let s = &mut *ctx.settings;
    limits(
        d,
        "https",
        &mut [("max_connections", &mut s.https_max_connections, 0)],
    )
}

/// *quic*.
pub fn setup_quic(d: &mut Dispenser, ctx: &mut SetupCtx<'_>) -> Result<(), Diagnostic> {
    let s = &mut *ctx.settings;
    limits(
        d,
        "quic",
        &mut [
            ("max_streams", &mut s.quic_max_streams, 1),
            ("worker_pool_size", &mut s.quic_worker_pool, 1),
        ],
    )
}

/// *https3*.
pub fn setup_https3(d: &mut Dispenser, ctx: &mut SetupCtx<'_>) -> Result<(), Diagnostic> {
    let s = &mut *ctx.settings;
    limits(
        d,
        "https3",
        &mut [
            ("max_streams", &mut s.https3_max_streams, 0),
            ("max_connections", &mut s.https3_max_connections, 0),
        ],
    )
}

/// *grpc_server*.
pub fn setup_grpc(d: &mut Dispenser, ctx: &mut SetupCtx<'_>) -> Result<(), Diagnostic> {
    let s = &mut *ctx.settings;
    limits(
        d,
        "grpc_server",
        &mut [
            ("max_streams", &mut s.grpc_max_streams, 0),
            ("max_connections", &mut s.grpc_max_connections, 0),
        ],
    )
}
