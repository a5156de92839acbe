//! *dns64*: AAAA answers synthesised from A records for IPv6-only clients
//! (RFC 6147; plugins.md B).
//!
//! An AAAA/IN query from an IPv6 client (any client with `allow_ipv4`) runs the
//! rest of the chain first. Unless its reply is NXDOMAIN, or already holds an
//! AAAA record (without `translate_all`), the name's A records are looked up
//! through the server ([`crate::server::reentry`]) and the reply is built from
//! that lookup: every A becomes an AAAA in the prefix (RFC 6052), TTL the lower of
//! the A's and the SOA's in the first reply (600 without one); other records, the
//! authority and additional sections and the TC bit come from the A lookup.
//!
//! CoreDNS: `plugin/dns64/dns64.go`, `setup.go`.

use std::net::IpAddr;
use std::sync::Arc;

use corefile::{Diagnostic, Dispenser};

use crate::chain::{Ctx, ErrorKind, Flow, Next, PluginError, Status};
use crate::plugins::log::{RespType, typify};
use crate::wire::index::{MsgIndex, expand};
use crate::wire::{SectionKind, flags, hdr};

/// The configuration (also the run-time plugin: it holds no state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dns64 {
    /// The prefix's address (bits past `len` are zero).
    pub prefix: [u8; 16],
    /// Prefix length: 32, 40, …, 96.
    pub len: u8,
    /// `translate_all`: translate even when the reply has AAAA records.
    pub translate_all: bool,
    /// `allow_ipv4`: translate for IPv4 clients too.
    pub allow_ipv4: bool,
}

/// `dns64 [PREFIX] { prefix PREFIX; translate_all; allow_ipv4 }`, every line of
/// the block (a later prefix wins). Walked token by token as CoreDNS's loop does:
/// after `dns64 PREFIX` it goes on with the next token, so a block after a
/// prefix argument is read line by line as if each line were a `dns64` line
/// (`prefix P` sets P, a lone word is ignored).
pub fn setup(d: &mut Dispenser) -> Result<Dns64, Diagnostic> {
    let w = |e: Diagnostic| e.in_plugin("dns64");
    let mut c = Dns64 {
        prefix: [0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        len: 96,
        translate_all: false,
        allow_ipv4: false,
    };
    while d.next() {
        let args = d.remaining_args();
        match args.as_slice() {
            [p] => {
                (c.prefix, c.len) = parse_prefix(d, p).map_err(w)?;
                continue;
            }
            [] => {}
            _ => return Err(w(d.arg_err())),
        }
        while d.next_block() {
            match d.val() {
                "prefix" => {
                    if !d.next_arg() {
                        return Err(w(d.arg_err()));
                    }
                    let p = d.val().to_owned();
                    (c.prefix, c.len) = parse_prefix(d, &p).map_err(w)?;
                }
                "translate_all" => c.translate_all = true,
                "allow_ipv4" => c.allow_ipv4 = true,
                other => return Err(w(d.err(format!("unknown property '{other}'")))),
            }
        }
    }
    Ok(c)
}

/// CoreDNS `parsePrefix`: an IPv6 CIDR whose length is a multiple of 8 in 32..=96.
fn parse_prefix(d: &Dispenser, s: &str) -> Result<([u8; 16], u8), Diagnostic> {
    let Some((net, len)) = corefile::keys::parse_cidr(s) else {
        return Err(Diagnostic::plain(format!("invalid CIDR address: {s}")));
    };
    let IpAddr::V6(v6) = net else {
        return Err(d.err(format!("invalid netmask 32 IPv6 address: \"{net}/{len}\"")));
    };
    if len % 8 != 0 || !(32..=96).contains(&len) {
        return Err(d.err(format!("invalid prefix length \"{v6}/{len}\"")));
    }
    Ok((v6.octets(), len))
}

/// `coredns_dns64_requests_translated_total` per server.
static TRANSLATED: crate::metrics::LabelCounts<1> = crate::metrics::LabelCounts::new(
    "coredns_dns64_requests_translated_total",
    "Counter of DNS requests translated by dns64.",
    ["server"],
);

fn count(server: &str) {
    TRANSLATED.inc([server.to_owned()]);
    crate::metrics::contribute(|f| TRANSLATED.add_to(f));
}

impl Dns64 {
    /// The request hook: AAAA/IN queries it may translate park, to run the rest
    /// of the chain and the A lookup; others pass.
    pub fn serve(&self, ctx: &mut Ctx<'_>) -> Flow {
        let v4 = ctx.peer.is_ipv4();
        if (v4 && !self.allow_ipv4) || ctx.req.qtype != 28 || ctx.req.qclass != 1 {
            return Flow::Next;
        }
        Flow::Park
    }

    /// The parked half (CoreDNS `ServeDNS` for a query it intercepts).
    pub async fn serve_async(&self, ctx: &mut Ctx<'_>, next: Next<'_>) -> Flow {
        let st = next.run(ctx).await;
        if !ctx.written {
            return Flow::Return(st);
        }
        let Some(idx) = MsgIndex::parse(ctx.resp) else {
            return Flow::Return(st);
        };
        if !self.should_translate(ctx.resp, &idx) {
            return Flow::Return(st);
        }
        // RFC 6147 §5.1.7: the SOA's TTL from the AAAA reply, 600 without one.
        let soa_ttl = idx
            .section(2)
            .filter(|r| r.rtype == 6)
            .last()
            .map_or(600, |r| r.ttl);
        // CoreDNS asks `req.Name()`, lower-cased, and its context (and loop
        // count) passes through unchanged.
        let name = ctx.req.qname.to_lowercase();
        let depth = ctx.st.depth;
        let reply = match crate::server::reentry::prepare(ctx, &name, 1, depth) {
            Ok(lookup) => lookup.run().await,
            Err(_) => {
                return Flow::Return(Status {
                    rcode: 2,
                    err: Some(PluginError {
                        plugin: "dns64",
                        kind: ErrorKind::Upstream(Arc::from("no full server is running")),
                    }),
                });
            }
        };
        // No reply to the A query: CoreDNS dereferences a nil message and the
        // server recovers the panic with SERVFAIL.
        let Some(a) = reply else {
            ctx.written = false;
            return Flow::Return(Status::rcode(2));
        };
        if !self.synthesize(ctx, &a, soa_ttl) {
            ctx.written = false;
            return Flow::Return(Status::rcode(2));
        }
        count(ctx.server);
        Flow::Return(Status::rcode(0))
    }

    /// CoreDNS `responseShouldDNS64`.
    fn should_translate(&self, m: &[u8], idx: &MsgIndex) -> bool {
        if typify(m, idx) == RespType::NameError {
            return false;
        }
        self.translate_all || !idx.section(1).any(|r| r.rtype == 28)
    }

    /// CoreDNS `Synthesize`: the reply to the query (no AA, rcode NOERROR) with
    /// the A lookup's TC bit and sections, its A records made AAAA. `false` if
    /// the A reply does not parse.
    fn synthesize(&self, ctx: &mut Ctx<'_>, a: &[u8], soa_ttl: u32) -> bool {
        let Some(idx) = MsgIndex::parse(a) else {
            return false;
        };
        // Names in full, so records can be copied one by one.
        let mut full = Vec::with_capacity(a.len() + 64);
        expand(a, &idx, &mut full);
        let Some(fidx) = MsgIndex::parse(&full) else {
            return false;
        };
        let tc = hdr::flags(a) & flags::TC;
        let mut b = ctx.reply();
        b.set_flags(tc);
        for (sec, kind) in [
            (1, SectionKind::Answer),
            (2, SectionKind::Authority),
            (3, SectionKind::Additional),
        ] {
            b.section(kind);
            for rr in fidx.section(sec) {
                let owner = &full[rr.start as usize..rr.fixed as usize];
                let rd = &full[rr.rdata()];
                match <[u8; 4]>::try_from(rd) {
                    Ok(v4) if sec == 1 && rr.rtype == 1 => {
                        let v6 = self.embed(v4);
                        b.rr_wire(owner, 28, rr.class, rr.ttl.min(soa_ttl), &v6);
                    }
                    // miekg packs the OPT with the reply's own (zero) rcode bits.
                    _ if rr.rtype == 41 => {
                        b.rr_wire(owner, 41, rr.class, rr.ttl & 0x00ff_ffff, rd);
                    }
                    _ => b.rr_wire(owner, rr.rtype, rr.class, rr.ttl, rd),
                }
            }
        }
        b.finish();
        ctx.written = true;
        true
    }

    /// RFC 6052 §2.2: the IPv4 address in the prefix, skipping octet 8.
    fn embed(&self, v4: [u8; 4]) -> [u8; 16] {
        let mut v6 = [0u8; 16];
        let n = usize::from(self.len / 8);
        v6[..n].copy_from_slice(&self.prefix[..n]);
        let mut i = n;
        for octet in v4 {
            if i == 8 {
                i += 1;
            }
            v6[i] = octet;
            i += 1;
        }
        v6
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Dns64, String> {
        let mut d = Dispenser::from_text("Corefile", text);
        setup(&mut d).map_err(|e| e.to_string())
    }

    #[test]
    fn setup_table() {
        let c = parse("dns64").expect("default");
        assert_eq!((c.len, c.translate_all, c.allow_ipv4), (96, false, false));
        assert_eq!(c.prefix[..4], [0, 0x64, 0xff, 0x9b]);
        let c = parse("dns64 2001:db8::/32").expect("arg");
        assert_eq!((c.len, &c.prefix[..4]), (32, &[0x20, 0x01, 0x0d, 0xb8][..]));
        let c = parse("dns64 {\n prefix 2001:db8:100::/40\n translate_all\n allow_ipv4\n}")
            .expect("block");
        assert_eq!((c.len, c.translate_all, c.allow_ipv4), (40, true, true));
        // The later line wins.
        let c = parse("dns64 2001:db8::/32\ndns64 2001:db8::/64").expect("two");
        assert_eq!(c.len, 64);
        // After a prefix argument the block is walked as more dns64 lines.
        let c = parse("dns64 2001:db8::/32 {\n translate_all\n prefix 2001:db8::/48\n}")
            .expect("prefix and block");
        assert_eq!((c.len, c.translate_all), (48, false));
        assert_eq!(
            parse("dns64 2001:db8::/32 {\n bogus x\n}").expect_err("bogus"),
            "plugin/dns64: invalid CIDR address: x"
        );
        for (text, want) in [
            (
                "dns64 2001:db8::/33",
                "plugin/dns64: Corefile:1 - Error during parsing: invalid prefix length \"2001:db8::/33\"",
            ),
            (
                "dns64 2001:db8::/104",
                "plugin/dns64: Corefile:1 - Error during parsing: invalid prefix length \"2001:db8::/104\"",
            ),
            (
                "dns64 10.0.0.0/8",
                "plugin/dns64: Corefile:1 - Error during parsing: invalid netmask 32 IPv6 address: \"10.0.0.0/8\"",
            ),
            (
                "dns64 nonsense",
                "plugin/dns64: invalid CIDR address: nonsense",
            ),
            (
                "dns64 a b",
                "plugin/dns64: Corefile:1 - Error during parsing: Wrong argument count or unexpected line ending after 'b'",
            ),
            (
                "dns64 {\n prefix\n}",
                "plugin/dns64: Corefile:2 - Error during parsing: Wrong argument count or unexpected line ending after 'prefix'",
            ),
            (
                "dns64 {\n bogus\n}",
                "plugin/dns64: Corefile:2 - Error during parsing: unknown property 'bogus'",
            ),
        ] {
            assert_eq!(parse(text).expect_err(text), want, "{text}");
        }
    }

    #[test]
    fn rfc6052_embedding() {
        // RFC 6052 §2.4's table, 192.0.2.33 in 2001:db8::/N.
        let cases = [
            (32, "2001:db8:c000:221::"),
            (40, "2001:db8:1c0:2:21::"),
            (48, "2001:db8:122:c000:2:2100::"),
            (56, "2001:db8:122:3c0:0:221::"),
            (64, "2001:db8:122:344:c0:2:2100:0"),
            (96, "2001:db8:122:344::192.0.2.33"),
        ];
        for (len, want) in cases {
            let c = parse(&format!("dns64 2001:db8:122:344::/{len}")).expect("prefix");
            let got = std::net::Ipv6Addr::from(c.embed([192, 0, 2, 33]));
            let want: std::net::Ipv6Addr = want.parse().expect("addr");
            assert_eq!(got, want, "/{len}");
        }
    }
}
