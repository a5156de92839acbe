//! *any*: answers qtype ANY with an RFC 8482 HINFO (plugins.md B).
//!
//! CoreDNS: `plugin/any/any.go`.

use corefile::{Diagnostic, Dispenser};

use crate::chain::{Ctx, Flow, Status};

/// Setup: no arguments, no block.
pub fn setup(d: &mut Dispenser) -> Result<(), Diagnostic> {
    d.next();
    if d.next_arg() {
        return Err(d.arg_err().in_plugin("any"));
    }
    if d.next_block() {
        return Err(d
            .err(format!("unknown property '{}'", d.val()))
            .in_plugin("any"));
    }
    Ok(())
}

/// HINFO "ANY obsoleted" "See RFC 8482" for ANY queries; others pass.
pub fn serve(ctx: &mut Ctx<'_>) -> Flow {
    if ctx.req.qtype != 255 {
        return Flow::Next;
    }
    let owner = ctx.req.qname.to_name();
    let class = ctx.req.qclass;
    let mut b = ctx.reply();
    b.rr_with(owner.wire(), 13, class, 8482, |out| {
        for s in [&b"ANY obsoleted"[..], &b"See RFC 8482"[..]] {
            out.push(s.len() as u8);
            out.extend_from_slice(s);
        }
    });
    b.finish();
    ctx.written = true;
    Flow::Return(Status::rcode(0))
}
