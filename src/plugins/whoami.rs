//! *whoami*: answers every query with the client's address and port
//! (plugins.md F): NOERROR, AA, empty answer; additional = A/AAAA of the client
//! (owner = qname as sent, class = query class, TTL 0) and SRV `_udp.`/`_tcp.`
//! + qname with the client port and target `.`.
//!
//! CoreDNS: `plugin/whoami/whoami.go`.

use std::net::IpAddr;

use corefile::{Diagnostic, Dispenser};

use crate::chain::{Ctx, Flow, Proto, Status};
use crate::wire::{SectionKind, flags};

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
    let owner = ctx.req.qname.clone();
    let label: &[u8] = if ctx.proto == Proto::Tcp {
        b"_tcp"
    } else {
        b"_udp"
    };
    let srv_owner = owner.prepend(label);
    let peer = ctx.peer;
    let mut b = ctx.reply();
    b.set_flags(flags::AA);
    b.section(SectionKind::Additional);
    match peer.ip() {
        IpAddr::V4(v4) => b.rr(&owner, 1, class, 0, &v4.octets()),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => b.rr(&owner, 1, class, 0, &v4.octets()),
            None => b.rr(&owner, 28, class, 0, &v6.octets()),
        },
    }
    if let Some(srv) = srv_owner {
        let port = peer.port().to_be_bytes();
        b.rr(&srv, 33, class, 0, &[0, 0, 0, 0, port[0], port[1], 0]);
    }
    b.finish();
    ctx.written = true;
    Flow::Return(Status::rcode(0))
}
