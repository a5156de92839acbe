//! *minimal*: strips Authority and Additional from NOERROR answers that are not
//! referrals or denials (plugins.md B). The OPT is re-added by the server.
//!
//! CoreDNS: `plugin/minimal/minimal.go` (decides with `response.Typify`).

use corefile::{Diagnostic, Dispenser};

use crate::chain::Ctx;
use crate::plugins::log::{RespType, typify};
use crate::wire::{MsgIndex, hdr};

/// Setup: no arguments.
pub fn setup(d: &mut Dispenser) -> Result<(), Diagnostic> {
    d.next();
    if d.next_arg() {
        return Err(d.arg_err().in_plugin("minimal"));
    }
    Ok(())
}

/// Trims the written reply.
pub fn respond(ctx: &mut Ctx<'_>) {
    if !ctx.written {
        return;
    }
    // Keep the answer section only: cut at the first non-answer record. Records
    // are in section order, so the answer ends where authority begins.
    let cut = MsgIndex::with(ctx.resp, |idx| {
        if typify(ctx.resp, idx) != RespType::NoError {
            return None;
        }
        idx.rrs
            .iter()
            .find(|r| r.section != 1)
            .map(|r| r.start as usize)
    });
    if let Some(Some(cut)) = cut {
        ctx.resp.truncate(cut);
        hdr::set_count(ctx.resp, 2, 0);
        hdr::set_count(ctx.resp, 3, 0);
    }
}
