//! *whoami*: answers every query with the client's address and port
//! (plugins.md F): NOERROR, AA, empty answer; additional = A/AAAA of the client
//! (owner = qname as sent, class = query class, TTL 0) and SRV `_udp.`/`_tcp.`
//! + qname with the client port and target `.`.
//!
//! CoreDNS: `plugin/whoami/whoami.go`.

use std::net::IpAddr;

use corefile::{Diagnostic, Dispenser};

use crate::chain::{Ctx, Flow, Proto, Status};
use crate::wire::{Builder, MAX_NAME, SectionKind, flags};

/// Setup: no arguments, no block.
pub fn setup(d: &mut Dispenser) -> Result<(), Diagnostic> {
    d.next();
    if d.next_arg() {
        return Err(d.arg_err().in_plugin("whoami"));
    }
    Ok(())
}

/// Writes the whoami reply.
pub fn serve(ctx: &mut Ctx<'_>) -> Flow {
    let class = ctx.req.qclass;
    // `_udp` or `_tcp` prepended to the name as sent (a 4-octet label).
    let label: &[u8] = if ctx.proto == Proto::Tcp {
        b"\x04_tcp"
    } else {
        b"\x04_udp"
    };
    let peer = ctx.peer;
    // The owner is written straight from the query (no copy of the name).
    let owner = ctx.req.qname.wire();
    let mut b = Builder::reply_flags(ctx.resp, &ctx.req, ctx.st.flags);
    b.set_flags(flags::AA);
    b.section(SectionKind::Additional);
    match peer.ip() {
        IpAddr::V4(v4) => b.rr_wire(owner, 1, class, 0, &v4.octets()),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => b.rr_wire(owner, 1, class, 0, &v4.octets()),
            None => b.rr_wire(owner, 28, class, 0, &v6.octets()),
        },
    }
    if label.len() + owner.len() <= MAX_NAME {
        let port = peer.port().to_be_bytes();
        b.rr_parts(
            &[label, owner],
            33,
            class,
            0,
            &[0, 0, 0, 0, port[0], port[1], 0],
        );
    }
    b.finish();
    ctx.written = true;
    Flow::Return(Status::rcode(0))
}
