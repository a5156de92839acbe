//! Self-lookups: a plugin asks its own server a new question, as CoreDNS's
//! `upstream.Lookup` does (*file*'s CNAME targets that it does not serve, …).
//!
//! The question goes to the listener the query came to and through all of it:
//! routing, the block's whole chain (so *log*, *prometheus* and *cache* see the
//! self-lookup as CoreDNS's do), the server's error reply when no plugin writes
//! one, and the scrub with the client's transport and EDNS size. The asking
//! plugin gets the reply message; nothing is sent.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use super::handle::{Dispatch, Meta, Outcome, dispatch, resume};
use crate::chain::Ctx;
use crate::wire::index::{MsgIndex, expand, set_opt_size};
use crate::wire::{HEADER_LEN, Name, hdr};

/// Deepest nesting of self-lookups: one past it fails. CoreDNS has no such limit
/// (only *file* stops its own CNAME chase after 8 levels), so a loop of
/// self-lookups through other plugins exhausts its stack.
pub const MAX_DEPTH: u8 = 16;

/// A question ready to ask the server.
pub struct Lookup<'a> {
    disp: &'a Arc<Dispatch>,
    msg: Vec<u8>,
    meta: Meta,
    depth: u8,
    /// The asker's trace and the tag of this lookup's spans (*trace*).
    trace: (u32, u16),
}

/// Why a self-lookup could not be asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoLookup {
    /// The query has no server to re-enter (a detached query): CoreDNS's
    /// `no full server is running`.
    NoServer,
    /// Deeper than [`MAX_DEPTH`].
    TooDeep,
}

/// The question `name`/`qtype` asked on behalf of `ctx`'s query (CoreDNS's
/// `NewWithQuestion`): the query's message with its ID, the header flags and
/// EDNS size as the plugins left them, and every other record, its names
/// written in full, and the question replaced (class IN). `depth` is the
/// nesting the new query has (usually `ctx.st.depth + 1`).
pub fn prepare<'a>(
    ctx: &Ctx<'a>,
    name: &Name,
    qtype: u16,
    depth: u8,
) -> Result<Lookup<'a>, NoLookup> {
    let disp = ctx.disp.ok_or(NoLookup::NoServer)?;
    if depth > MAX_DEPTH {
        return Err(NoLookup::TooDeep);
    }
    Ok(Lookup {
        disp,
        msg: requery(ctx, name, qtype, 1),
        meta: Meta {
            proto: ctx.proto,
            peer: ctx.peer,
            local: ctx.local,
            now: Instant::now(),
        },
        depth,
        trace: match ctx.st.trace {
            0 => (0, 0),
            h => (h, ctx.st.trace_tag.wrapping_add(1).max(1)),
        },
    })
}

/// The message of a self-lookup (see [`prepare`]; class IN); also the query
/// *autopath* passes on for each search domain (a copy with the name replaced,
/// class kept).
pub(crate) fn requery(ctx: &Ctx<'_>, name: &Name, qtype: u16, qclass: u16) -> Vec<u8> {
    let mut q = ctx.req.msg.to_vec();
    for (i, n) in ctx.req.counts.into_iter().enumerate() {
        hdr::set_count(&mut q, i + 1, n);
    }
    hdr::set_flags(&mut q, ctx.st.flags);
    let mut full = Vec::with_capacity(q.len() + name.len());
    let mut counts = [0u16; 4];
    let rest = match MsgIndex::parse(&q) {
        Some(idx) => {
            expand(&q, &idx, &mut full);
            counts = hdr::counts(&full);
            // Where the records start in the rebuilt message.
            let qend = MsgIndex::parse(&full).map_or(full.len(), |i| i.question_end);
            full.split_off(qend)
        }
        None => Vec::new(),
    };
    full.clear();
    full.extend_from_slice(&q[..HEADER_LEN]);
    full.extend_from_slice(name.wire());
    full.extend_from_slice(&qtype.to_be_bytes());
    full.extend_from_slice(&qclass.to_be_bytes());
    full.extend_from_slice(&rest);
    hdr::set_count(&mut full, 0, 1);
    for (i, n) in counts.into_iter().enumerate().skip(1) {
        hdr::set_count(&mut full, i, n);
    }
    // The EDNS size as the plugins before the asking one left it (*bufsize*).
    if let (Some(opt), Some(size)) = (ctx.req.opt, ctx.st.udp_size) {
        if size != opt.udp_size {
            set_opt_size(&mut full, size);
        }
    }
    full
}

impl<'a> Lookup<'a> {
    /// Asks the server: the reply it would have sent, or `None` when it would
    /// have sent nothing (CoreDNS's non-writer then holds no message).
    pub fn run(self) -> Pin<Box<dyn Future<Output = Option<Vec<u8>>> + 'a>> {
        Box::pin(async move {
            let (mut resp, mut scratch) = (Vec::new(), Vec::new());
            let out = dispatch(
                self.disp,
                &self.msg,
                self.meta,
                (self.depth, self.trace.0, self.trace.1),
                &mut resp,
                &mut scratch,
            );
            let out = match out {
                Outcome::Parked { block, at, st } => {
                    resume(
                        self.disp,
                        block,
                        &self.msg,
                        &self.meta,
                        at,
                        st,
                        &mut resp,
                        &mut scratch,
                    )
                    .await
                }
                other => other,
            };
            match out {
                Outcome::Reply | Outcome::Stream(_) => Some(resp),
                Outcome::Drop | Outcome::Parked { .. } => None,
            }
        })
    }
}
