//! *bufsize*: lowers the client's advertised EDNS buffer size for the rest of the
//! chain (plugins.md B). Never raises it; no OPT, nothing to do.
//!
//! CoreDNS: `plugin/bufsize/bufsize.go`.

use corefile::keys::go_atoi;
use corefile::{Diagnostic, Dispenser};

use crate::chain::{Ctx, Flow};

/// Setup: `bufsize [SIZE]`, 512..=4096, default 1232. Errors are wrapped twice,
/// as CoreDNS's setup does.
pub fn setup(d: &mut Dispenser) -> Result<u16, Diagnostic> {
    let fail = |d: &Dispenser| d.arg_err().in_plugin("bufsize").in_plugin("bufsize");
    if d.next() {
        let args = d.remaining_args();
        return match args.as_slice() {
            [] => Ok(1232),
            [a] => match go_atoi(a) {
                Some(n) if (512..=4096).contains(&n) => Ok(n as u16),
                _ => Err(fail(d)),
            },
            _ => Err(fail(d)),
        };
    }
    Err(fail(d))
}

/// Lowers the request's UDP size.
pub fn serve(size: u16, ctx: &mut Ctx<'_>) -> Flow {
    if let Some(s) = ctx.st.udp_size {
        if s > size {
            ctx.st.udp_size = Some(size);
        }
    }
    Flow::Next
}
