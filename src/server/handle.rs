//! One query through the server: the wire accept filter, the class gate, EDNS
//! version, routing, the block's chain, the server's own error replies, and the
//! scrub (corefile-spec.md §7–8). Shared by every transport and both backends.

use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};
use std::time::Instant;

use super::route::{Route, Routes};
use super::scrub;
use crate::chain::{Chain, Ctx, Proto, Status, client_write};
use crate::wire::{Request, Verdict, bare_reply, parse_query};

/// What a query needs of its listener to find and run its block's chain: shared
/// by the listener, its parked queries, and plugins that re-enter the server
/// ([`super::reentry`]).
pub struct Dispatch {
    /// The metrics `server` label.
    pub label: Arc<str>,
    /// Routing table.
    pub routes: Routes,
    /// Chains of the blocks on this listener (indexed by the routes).
    pub chains: Vec<Arc<Chain>>,
    /// Some block enables non-IN classes (chaos).
    pub class_open: bool,
    /// TSIG key names and secrets of every *tsig* on the listener (miekg's
    /// server-wide `TsigSecret`).
    pub tsig: Vec<(String, String)>,
}

/// A listener's runtime view of its blocks.
pub struct ListenerRt {
    /// The metrics `server` label (the same as `disp.label`).
    pub label: Arc<str>,
    /// Routing and chains.
    pub disp: Arc<Dispatch>,
    /// TCP timeouts (each field from the last of the listener's blocks that sets it).
    pub timeouts: crate::plugins::timeouts::Timeouts,
    /// Corefile block index of each chain.
    pub blocks: Vec<usize>,
    /// A `tls://` or `https://` listener's server TLS configuration (`None`: plain TCP
    /// or HTTP).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// `https://`: the connection limit shared by every worker (`https { max_connections }`).
    pub conn_limit: Option<Arc<tokio::sync::Semaphore>>,
    /// The listener's transport.
    pub transport: corefile::keys::Transport,
    /// `quic://`: the QUIC settings and the stream worker pool.
    pub quic: Option<super::doq::Config>,
    /// `https3://`: the QUIC settings.
    pub h3: Option<super::doh3::Config>,
    /// `grpc://`: its HTTP/2 stream limit per connection (`None`: no limit).
    pub grpc: Option<Option<u32>>,
    /// *proxyproto* of the listener's last block that has one (CoreDNS's `NewServer`).
    pub proxy: Option<Arc<crate::plugins::proxyproto::ProxyProto>>,
    /// The tracer of the listener's first block with *trace* (CoreDNS's server
    /// `Tracer()`: `grpc://` calls get their span from it).
    pub tracer: Option<Arc<crate::plugins::trace::Tracer>>,
}

impl ListenerRt {
    /// *proxyproto* and the read timeout its TCP header must come within.
    pub fn proxy_wait(
        &self,
    ) -> Option<(
        Arc<crate::plugins::proxyproto::ProxyProto>,
        std::time::Duration,
    )> {
        self.proxy.clone().map(|p| (p, self.timeouts.read))
    }

    /// Index into `chains` of Corefile block `block`, if it serves this listener.
    pub fn block_index(&self, block: usize) -> Option<usize> {
        self.blocks.iter().position(|b| *b == block)
    }
}

/// What became of a message.
pub enum Outcome {
    /// `resp` holds the reply to send.
    Reply,
    /// Nothing to send.
    Drop,
    /// `resp` holds the first message of a multi-message reply (a zone
    /// transfer, TCP only); the rest follow in order on the same connection,
    /// each passed through [`scrub_more`] first.
    Stream(crate::chain::MoreMessages),
    /// The chain parked at plugin `at` of block `block`; continue with [`resume`].
    Parked {
        /// Index into `chains`.
        block: usize,
        /// Plugin index.
        at: usize,
        /// Request state to carry.
        st: crate::chain::ReqState,
    },
}

/// Per-query metadata the transport supplies.
#[derive(Debug, Clone, Copy)]
pub struct Meta {
    /// Transport.
    pub proto: Proto,
    /// Client.
    pub peer: SocketAddr,
    /// Local address as CoreDNS reports it.
    pub local: SocketAddr,
    /// Arrival time.
    pub now: Instant,
}

/// Counts a query the server answered itself before any chain (no question, the class
/// gate, no block for the name) as CoreDNS's server does: `zone="dropped"`, no
/// `plugin`, the rcode written.
fn report_dropped(l: &Dispatch, m: &Meta, req: Option<&Request<'_>>, len: usize, resp: &[u8]) {
    static DROPPED: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("dropped"));
    crate::metrics::report(
        &l.label,
        &DROPPED,
        crate::chain::no_view(),
        "",
        crate::metrics::Report {
            tcp: m.proto == Proto::Tcp,
            v6: m.peer.is_ipv6(),
            do_bit: req.and_then(|r| r.opt).is_some_and(|o| o.do_bit()),
            qtype: req.map_or(0, |r| r.qtype),
            req_size: req.map_or(len, Request::size),
            resp_size: resp.len(),
            rcode: u16::from(crate::wire::hdr::rcode(resp)),
            secs: m.now.elapsed().as_secs_f64(),
        },
    );
}

/// Handles one received message; the reply (if any) is left in `resp`.
pub fn handle(
    l: &ListenerRt,
    data: &[u8],
    m: Meta,
    resp: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
) -> Outcome {
    dispatch(&l.disp, data, m, (0, 0, 0), resp, scratch)
}

/// [`handle`] on a listener's dispatch, for a message that is a self-lookup
/// `depth` levels deep (0: from a client) of a query traced as
/// (`trace`, `trace_tag`) (0: not traced).
pub(crate) fn dispatch(
    l: &Arc<Dispatch>,
    data: &[u8],
    m: Meta,
    (depth, trace, trace_tag): (u8, u32, u16),
    resp: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
) -> Outcome {
    let req = match parse_query(data) {
        Verdict::Query(r) => r,
        Verdict::Ignore => return Outcome::Drop,
        Verdict::Reject(rj) => {
            rj.write(data, resp);
            // FORMERR and NOTIMP come from miekg's accept filter, before the server;
            // a message without a question reaches the server, which counts it.
            if rj.rcode == 2 {
                report_dropped(l, &m, None, data.len(), resp);
            }
            return Outcome::Reply;
        }
    };
    // Class gate.
    if req.qclass != 1 && !l.class_open {
        bare_reply(resp, &req, 5);
        scrub::size_and_do(resp, &req, None);
        report_dropped(l, &m, Some(&req), data.len(), resp);
        return Outcome::Reply;
    }
    // EDNS version.
    if let Some(o) = req.opt {
        if o.version != 0 {
            badvers(resp, &req);
            return Outcome::Reply;
        }
    }
    let mut spare = Vec::new();
    let mut ctx = Ctx::new(
        &l.label, req, m.proto, m.peer, m.local, resp, scratch, m.now,
    );
    // A name the query compressed (which no real client does) is owned: clone it
    // (rare), a wire name is a borrow.
    let qname = ctx.req.qname.clone();
    let route = l.routes.route(
        qname.name(),
        ctx.req.qtype,
        |b| l.chains.get(b).is_some_and(|c| !c.plugins.is_empty()),
        |b| l.chains.get(b).is_some_and(|c| view_passes(c, &mut ctx)),
    );
    let Route::Block(b) = route else {
        let (req, resp, scratch) = (ctx.req, ctx.resp, ctx.scratch);
        bare_reply(resp, &req, 5);
        scrub::scrub(
            resp,
            scratch,
            &req,
            req.opt.map(|o| o.udp_size),
            m.proto,
            m.peer.is_ipv6(),
        );
        report_dropped(l, &m, Some(&req), data.len(), resp);
        return Outcome::Reply;
    };
    let chain = &l.chains[b];
    ctx.view = chain.view_label();
    if chain.rewrites {
        ctx.spare = Some(&mut spare);
    }
    let mut unsigned = Vec::new();
    if chain.has_tsig {
        ctx.tsig_buf = Some(&mut unsigned);
    }
    ctx.disp = Some(l);
    ctx.st.depth = depth;
    ctx.st.trace = trace;
    ctx.st.trace_tag = trace_tag;
    // CoreDNS recovers panics in the server (unless *debug*): log, count, SERVFAIL.
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| chain.run(&mut ctx)));
    match run {
        Ok(Ok(st)) => finish(&mut ctx, &st),
        Ok(Err(at)) => Outcome::Parked {
            block: b,
            at,
            st: ctx.st,
        },
        Err(panic) => {
            if chain.debug {
                std::panic::resume_unwind(panic);
            }
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".to_owned());
            crate::clog::error(&format!(
                "Recovered from panic in server: {:?} {what}",
                l.label
            ));
            PANICS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            crate::plugins::trace::abandon(&mut ctx.st);
            ctx.written = false;
            finish(&mut ctx, &Status::rcode(2))
        }
    }
}

/// Whether `chain`'s *view* (if any) takes the query in `ctx`. Its expressions
/// see the metadata the block's providers collect (CoreDNS collects it before
/// the filters); the store is dropped again before the chain runs.
fn view_passes(chain: &Chain, ctx: &mut Ctx<'_>) -> bool {
    let Some(view) = &chain.view else {
        return true;
    };
    let marks = ctx.st.marks;
    if let Some(m) = chain.metadata() {
        m.collect(ctx);
    }
    let pass = view.pass(ctx);
    ctx.meta = None;
    ctx.st.marks = marks;
    pass
}

/// `coredns_panics_total`.
pub static PANICS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Continues a parked query of block `block` on an owned copy of the message.
#[allow(clippy::too_many_arguments)]
pub async fn resume(
    disp: &Arc<Dispatch>,
    block: usize,
    data: &[u8],
    m: &Meta,
    at: usize,
    st: crate::chain::ReqState,
    resp: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
) -> Outcome {
    let Verdict::Query(req) = parse_query(data) else {
        return Outcome::Drop;
    };
    let Some(chain) = disp.chains.get(block) else {
        return Outcome::Drop;
    };
    let mut spare = Vec::new();
    let mut ctx = Ctx::new(
        &disp.label,
        req,
        m.proto,
        m.peer,
        m.local,
        resp,
        scratch,
        m.now,
    );
    ctx.st = st;
    ctx.view = chain.view_label();
    ctx.disp = Some(disp);
    let mut unsigned = Vec::new();
    if chain.has_tsig {
        ctx.tsig_buf = Some(&mut unsigned);
    }
    if chain.rewrites {
        ctx.spare = Some(&mut spare);
    }
    if chain.rewrites || chain.has_tsig {
        chain.reapply(&mut ctx, at);
    }
    if st.marks & crate::chain::META_ON != 0 {
        // The labels the block's providers published before the query parked.
        if let Some(m) = chain.metadata() {
            m.collect(&mut ctx);
        }
        crate::plugins::trace::republish(&mut ctx);
    }
    let status = chain.resume(&mut ctx, at).await;
    finish(&mut ctx, &status)
}

/// After the chain: the server's error reply when nothing was written, then the scrub.
fn finish(ctx: &mut Ctx<'_>, st: &Status) -> Outcome {
    if !ctx.written {
        if client_write(st.rcode) {
            return Outcome::Drop;
        }
        // CoreDNS's `SetRcode` on the request as plugins (*header*) changed it.
        let mut b = ctx.reply();
        b.set_rcode(st.rcode as u8);
        b.finish();
    }
    let v6 = ctx.peer.is_ipv6();
    scrub::scrub(
        ctx.resp,
        ctx.scratch,
        &ctx.req,
        ctx.st.udp_size,
        ctx.proto,
        v6,
    );
    // *tsig* signs what is sent, after the scrub (miekg's writer signs last).
    let mut sign = ctx.tsig.take();
    if let Some(s) = &mut sign {
        s.sign(ctx.resp);
    }
    match ctx.more.take() {
        Some(more) if ctx.proto == Proto::Tcp => match sign {
            // Each message of the stream: the request's OPT, then its signature.
            Some(mut s) => {
                let req = ctx.req.msg.to_vec();
                Outcome::Stream(Box::new(more.map(move |mut m| {
                    scrub_more(&req, &mut m);
                    s.sign(&mut m);
                    m
                })))
            }
            None => Outcome::Stream(more),
        },
        _ => Outcome::Reply,
    }
}

/// Scrubs a message that follows the first of a stream as CoreDNS's scrub
/// writer does every message: the request's OPT (TCP needs no truncation).
pub fn scrub_more(data: &[u8], msg: &mut Vec<u8>) {
    if let Verdict::Query(req) = parse_query(data) {
        scrub::size_and_do(msg, &req, None);
    }
}

/// BADVERS (RFC 6891 §6.1.3): rcode 16 via the extended rcode, OPT version 0,
/// UDP size 0, no flags (CoreDNS `edns.Version`).
fn badvers(resp: &mut Vec<u8>, req: &Request<'_>) {
    bare_reply(resp, req, 0);
    resp.push(0);
    resp.extend_from_slice(&41u16.to_be_bytes());
    resp.extend_from_slice(&0u16.to_be_bytes());
    resp.extend_from_slice(&(1u32 << 24).to_be_bytes());
    resp.extend_from_slice(&[0, 0]);
    crate::wire::hdr::set_count(resp, 3, 1);
}
