//! *https* { max_connections N }: the connection limit of a block's `https://`
//! (DNS over HTTPS) listeners, as CoreDNS 1.14.7's `plugin/https` parses it. The
//! listener takes the value of its first block (default 200; 0 = no limit).

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
