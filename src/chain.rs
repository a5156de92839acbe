//! The plugin chain: per-request context, the request phase in plugin.cfg order,
//! the response phase in reverse, and parking for plugins that wait on I/O.
//!
//! A plugin's request hook returns [`Flow`]: pass to the next plugin, return a
//! [`Status`] (CoreDNS's `(rcode, err)`; a reply may or may not have been
//! written), or park. A parked query continues in [`Chain::resume`], an async
//! fn run on the worker's own runtime, and finishes exactly like a synchronous one.
//!
//! **Detached queries.** A plugin may send a query of its own through the
//! plugins after it, with no client waiting (cache prefetch and serve_stale
//! refreshes; CoreDNS runs these in goroutines). It fills [`Ctx::detach`] and
//! ends the request phase (returns or parks). The chain then runs the plugins
//! after it on that query — the request phase, then the response phase back up
//! to and including the plugin that asked, whose response hook sees the reply
//! (with the [`ReqState::marks`] it set) — and discards the reply. The tail runs
//! synchronously until a plugin parks; the rest continues on the process's
//! detached-query thread (its own current-thread runtime), so it never depends
//! on how a worker drives its runtime. Past [`MAX_DETACHED`] queries in flight
//! the asking plugin's response hook sees SERVFAIL with nothing written.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use crate::plugins::Plugin;
use crate::wire::{Builder, Request, Verdict, parse_query};

/// Transport as plugins see it (`{proto}`): DoT/DoH/gRPC count as tcp, DoQ/DoH3 as udp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
}

impl Proto {
    /// `udp` / `tcp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
        }
    }
}

/// Why a plugin failed a request (logged once, by *errors*).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The last plugin passed the query on (`plugin/NAME: no next plugin found`).
    NoNextPlugin,
    /// A configured delay or behaviour of a test plugin.
    Erratic,
    /// An upstream exchange failed; the text is CoreDNS's (Go's) error text,
    /// e.g. `read udp 127.0.0.1:50164->127.0.0.1:53: i/o timeout`.
    Upstream(std::sync::Arc<str>),
}

/// A plugin error: which plugin, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginError {
    /// Plugin name.
    pub plugin: &'static str,
    /// What went wrong.
    pub kind: ErrorKind,
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ErrorKind::NoNextPlugin => write!(f, "plugin/{}: no next plugin found", self.plugin),
            ErrorKind::Erratic => write!(f, "plugin/{}: erratic failure", self.plugin),
            ErrorKind::Upstream(text) => f.write_str(text),
        }
    }
}

/// What a handler returned: CoreDNS's `(int, error)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The returned rcode.
    pub rcode: u16,
    /// The returned error.
    pub err: Option<PluginError>,
}

impl Status {
    /// A plain return code.
    pub fn rcode(rcode: u16) -> Self {
        Self { rcode, err: None }
    }
}

/// CoreDNS `plugin.ClientWrite`: false for the rcodes the server answers itself.
pub fn client_write(rcode: u16) -> bool {
    !matches!(rcode, 2 | 5 | 1 | 4)
}

/// A request hook's decision.
#[derive(Debug)]
pub enum Flow {
    /// Pass to the next plugin.
    Next,
    /// Stop here with this status.
    Return(Status),
    /// Wait for I/O: the query continues in [`Chain::resume`] at this plugin.
    Park,
}

/// Request modifications and per-request state plugins share.
#[derive(Debug, Clone, Copy)]
pub struct ReqState {
    /// The client's EDNS UDP size as plugins see it (lowered by *bufsize*).
    pub udp_size: Option<u16>,
    /// Request header flags as plugins see them (changed by *header*).
    pub flags: u16,
    /// When the query entered the chain.
    pub start: Instant,
    /// State a parking plugin carries to its async half.
    pub park: u32,
    /// Bits a plugin's request hook leaves for its own response hook (they
    /// survive parking). Owners: *cache* bits 0–7, *trace* bit 30
    /// ([`TRACE_ROOT`]), *metadata* bit 31 ([`META_ON`]).
    pub marks: u32,
    /// *dnstap*: the wall-clock query time of its `CLIENT_QUERY` (nanoseconds
    /// since the epoch; 0 until tapped), repeated in the `CLIENT_RESPONSE`.
    pub tap_time: u64,
    /// How many self-lookups deep this query is (0: a client's query).
    pub depth: u8,
    /// *trace*: the key of the query's open spans (0: not traced); a
    /// self-lookup of a traced query carries its asker's.
    pub trace: u32,
    /// *trace*: which query of a trace this is (its own and its self-lookups'
    /// plugin spans are told apart by it).
    pub trace_tag: u16,
}

/// Publishes `label` into a metadata store, if there is one (for callers
/// that hold other borrows of the context).
pub fn set_meta(meta: &mut Option<MetaStore>, label: &'static str, value: impl FnOnce() -> String) {
    if let Some(m) = meta {
        let v = value();
        match m.iter_mut().find(|(l, _)| *l == label) {
            Some(e) => e.1 = v,
            None => m.push((std::borrow::Cow::Borrowed(label), v)),
        }
    }
}

/// The per-request metadata store: `plugin/label` → value (labels made at run
/// time, *kubernetes*'s `kubernetes/client-label/KEY`, are owned).
pub type MetaStore = Vec<(std::borrow::Cow<'static, str>, String)>;

/// [`ReqState::marks`] bit: the block has *metadata*, so the request carries a
/// metadata store ([`Ctx::set_meta`]).
pub const META_ON: u32 = 1 << 31;

/// [`ReqState::marks`] bit: *trace* started this query's trace (its response
/// hook ends it; a self-lookup only joins its asker's).
pub const TRACE_ROOT: u32 = 1 << 30;

/// The `view` label of a block without a view.
pub fn no_view() -> &'static std::sync::Arc<str> {
    static EMPTY: std::sync::LazyLock<std::sync::Arc<str>> =
        std::sync::LazyLock::new(|| std::sync::Arc::from(""));
    &EMPTY
}

/// A query a plugin sends through the plugins after it, with no client (see
/// the module docs). Nothing is sent; the asking plugin's response hook sees
/// the reply.
pub struct Detached {
    /// The query message.
    pub msg: Vec<u8>,
    /// The transport it appears to come from (decides the reply size budget).
    pub proto: Proto,
    /// The client address plugins see.
    pub peer: SocketAddr,
    /// The local address plugins see.
    pub local: SocketAddr,
    /// The metrics `server` label.
    pub server: Arc<str>,
    /// The metrics `view` label.
    pub view: Arc<str>,
    /// Request header flags as the plugins after the asking one see them.
    pub flags: u16,
    /// Initial [`ReqState::marks`].
    pub marks: u32,
    /// The listener the asking query came to, for self-lookups of the plugins
    /// after it, and how many self-lookups deep the asking query was.
    pub disp: Option<(Arc<crate::server::handle::Dispatch>, u8)>,
}

impl Detached {
    /// The context the plugins after the asking one see (`None` if the
    /// message does not parse as a query).
    fn context<'a>(&'a self, resp: &'a mut Vec<u8>, scratch: &'a mut Vec<u8>) -> Option<Ctx<'a>> {
        let Verdict::Query(req) = parse_query(&self.msg) else {
            return None;
        };
        let mut ctx = Ctx::new(
            &self.server,
            req,
            self.proto,
            self.peer,
            self.local,
            resp,
            scratch,
            Instant::now(),
        );
        ctx.view = &self.view;
        ctx.st.flags = self.flags;
        ctx.st.marks = self.marks;
        if let Some((d, depth)) = &self.disp {
            ctx.disp = Some(d);
            ctx.st.depth = *depth;
        }
        Some(ctx)
    }
}

/// Most detached queries waiting on I/O at once.
pub const MAX_DETACHED: usize = 4096;

static DETACHED: AtomicUsize = AtomicUsize::new(0);

/// A parked detached query handed to the detached-query thread.
struct Parked {
    chain: Arc<Chain>,
    job: Detached,
    at: usize,
    parked: usize,
    st: ReqState,
}

/// The detached-query thread's queue (started on first use).
fn detached_queue() -> Option<&'static tokio::sync::mpsc::UnboundedSender<Parked>> {
    static QUEUE: OnceLock<Option<tokio::sync::mpsc::UnboundedSender<Parked>>> = OnceLock::new();
    QUEUE
        .get_or_init(|| {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Parked>();
            std::thread::Builder::new()
                .name("ringdns-detached".into())
                .spawn(move || {
                    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    else {
                        return;
                    };
                    let local = tokio::task::LocalSet::new();
                    local.block_on(&rt, async move {
                        while let Some(p) = rx.recv().await {
                            tokio::task::spawn_local(p.run());
                        }
                    });
                })
                .ok()?;
            Some(tx)
        })
        .as_ref()
}

impl Parked {
    /// Continues the query where it parked, to the end.
    async fn run(self) {
        let Self {
            chain,
            job,
            at,
            parked,
            st,
        } = self;
        let (mut resp, mut scratch) = (Vec::new(), Vec::new());
        if let Some(mut ctx) = job.context(&mut resp, &mut scratch) {
            ctx.st = st;
            chain.resume_from(&mut ctx, parked, at).await;
        }
        DETACHED.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The plugins after a parked one, for a plugin that wraps them (*dns64*).
#[derive(Clone, Copy)]
pub struct Next<'c> {
    chain: &'c Chain,
    at: usize,
}

impl<'c> Next<'c> {
    /// Whether a plugin follows the parked one (CoreDNS: its `Next` is not nil).
    pub fn exists(&self) -> bool {
        self.at + 1 < self.chain.plugins.len()
    }

    /// Runs the rest of the chain on `ctx` (see [`Chain::rest`]).
    pub async fn run(self, ctx: &mut Ctx<'_>) -> Status {
        self.chain.rest(ctx, self.at).await
    }
}

/// Everything a plugin sees of one query.
pub struct Ctx<'a> {
    /// The query.
    pub req: Request<'a>,
    /// Transport.
    pub proto: Proto,
    /// Client address.
    pub peer: SocketAddr,
    /// Local address (the bound address on a wildcard UDP listener, as CoreDNS logs it).
    pub local: SocketAddr,
    /// The listener's metrics label (`dns://:53`).
    pub server: &'a std::sync::Arc<str>,
    /// The block's *view* name, the metrics `view` label (empty without a view).
    pub view: &'a std::sync::Arc<str>,
    /// The reply buffer; meaningful when `written`.
    pub resp: &'a mut Vec<u8>,
    /// Whether a plugin wrote a reply.
    pub written: bool,
    /// Shared request state.
    pub st: ReqState,
    /// Scratch space for plugins that rebuild messages.
    pub scratch: &'a mut Vec<u8>,
    /// Messages that follow the reply on a TCP connection (zone transfers):
    /// the server sends them in order after `resp`, each scrubbed like it.
    pub more: Option<MoreMessages>,
    /// A query the current plugin sends through the plugins after it (taken by
    /// the chain when the plugin ends the request phase).
    pub detach: Option<Detached>,
    /// The metadata store (`plugin/label` → value), present only when the
    /// block has *metadata* (CoreDNS creates it only then).
    pub meta: Option<MetaStore>,
    /// A buffer a request-rewriting plugin (*rewrite*) takes to hold the query it
    /// makes `req` (given only to chains that have one).
    pub spare: Option<&'a mut Vec<u8>>,
    /// *tsig*: how to sign the reply (set when a signed request reached it).
    pub tsig: Option<Box<crate::plugins::tsig::Sign>>,
    /// A buffer *tsig* takes to hold the request without its TSIG record
    /// (given only to chains that have *tsig*).
    pub tsig_buf: Option<&'a mut Vec<u8>>,
    /// The query as the client sent it, once a plugin rewrote `req`.
    pub orig: Option<&'a [u8]>,
    /// The listener the query came to, for plugins that re-enter it
    /// ([`crate::server::reentry`]); `None` for detached queries.
    pub disp: Option<&'a Arc<crate::server::handle::Dispatch>>,
}

/// The messages after the first of a multi-message reply.
pub type MoreMessages = Box<dyn Iterator<Item = Vec<u8>> + Send>;

impl<'a> Ctx<'a> {
    /// A context for `req`.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub fn new(
        server: &'a std::sync::Arc<str>,
        req: Request<'a>,
        proto: Proto,
        peer: SocketAddr,
        local: SocketAddr,
        resp: &'a mut Vec<u8>,
        scratch: &'a mut Vec<u8>,
        now: Instant,
    ) -> Self {
        let st = ReqState {
            udp_size: req.opt.map(|o| o.udp_size),
            flags: req.flags(),
            start: now,
            park: 0,
            marks: 0,
            tap_time: 0,
            depth: 0,
            trace: 0,
            trace_tag: 0,
        };
        resp.clear();
        Self {
            server,
            view: no_view(),
            req,
            proto,
            peer,
            local,
            resp,
            written: false,
            st,
            scratch,
            more: None,
            detach: None,
            meta: None,
            spare: None,
            tsig: None,
            tsig_buf: None,
            orig: None,
            disp: None,
        }
    }

    /// The normalised size a reply must fit (request `Size()`): 65535 for TCP,
    /// else max(EDNS size, 512).
    pub fn size(&self) -> u16 {
        match self.proto {
            Proto::Tcp => 65535,
            Proto::Udp => self.st.udp_size.unwrap_or(0).max(512),
        }
    }

    /// Starts the reply (miekg `SetReply`, with the request flags as plugins
    /// changed them). Set `written` after finishing it.
    pub fn reply(&mut self) -> Builder<'_> {
        Builder::reply_flags(self.resp, &self.req, self.st.flags)
    }

    /// Publishes metadata `label` (computed only when a store exists).
    pub fn set_meta(&mut self, label: &'static str, value: impl FnOnce() -> String) {
        set_meta(&mut self.meta, label, value);
    }

    /// Reads metadata `label`.
    pub fn meta(&self, label: &str) -> Option<&str> {
        self.meta
            .as_ref()?
            .iter()
            .find(|(l, _)| l == label)
            .map(|(_, v)| v.as_str())
    }

    /// The query as the client sent it, when a plugin (*rewrite*) rewrote `req`:
    /// what CoreDNS's plugins before *rewrite* read before passing the query on.
    pub fn client_req(&self) -> Option<Request<'a>> {
        match parse_query(self.orig?) {
            Verdict::Query(r) => Some(r),
            _ => None,
        }
    }

    /// A copy of the written reply as the server's scrub will leave it (truncated
    /// for UDP where it must be, the request's OPT): what CoreDNS's writers see after
    /// the scrub writer changed the message in place.
    pub fn scrubbed_reply(&self) -> Vec<u8> {
        let mut out = self.resp.clone();
        crate::server::scrub::scrub(
            &mut out,
            &mut Vec::new(),
            &self.req,
            self.st.udp_size,
            self.proto,
            self.peer.is_ipv6(),
        );
        out
    }

    /// DO bit of the request.
    pub fn do_bit(&self) -> bool {
        self.req.do_bit()
    }

    /// Rcode of the written reply (with the OPT's extended bits), if written.
    pub fn written_rcode(&self) -> Option<u16> {
        self.written.then(|| crate::wire::full_rcode(self.resp))
    }
}

/// One server block's chain.
pub struct Chain {
    /// Handler plugins in plugin.cfg order.
    pub plugins: Vec<Plugin>,
    /// *debug* is on for the block: panics are not recovered.
    pub debug: bool,
    /// A plugin of the chain rewrites the query (*rewrite*): contexts get a spare
    /// buffer, and a parked query has the rewrite applied again when it resumes.
    pub rewrites: bool,
    /// The block's *view*: the server routes a query here only when it passes.
    pub view: Option<std::sync::Arc<crate::plugins::view::View>>,
    /// The block has *tsig*: contexts get a buffer for the request without its
    /// TSIG record, and a parked query has it removed again when it resumes.
    pub has_tsig: bool,
}

impl Chain {
    /// The metrics `view` label of the block: its view's name, or empty.
    pub fn view_label(&self) -> &std::sync::Arc<str> {
        self.view.as_ref().map_or(no_view(), |v| &v.name)
    }

    /// The block's *metadata*, if it has one.
    pub fn metadata(&self) -> Option<&crate::plugins::metadata::Metadata> {
        self.plugins.iter().find_map(|p| match p {
            crate::plugins::Plugin::Metadata(m) => Some(m),
            _ => None,
        })
    }

    /// Runs the request phase from `from`; `Err(i)` when plugin `i` parked.
    fn forward_from(&self, ctx: &mut Ctx<'_>, from: usize) -> Result<(usize, Status), usize> {
        self.forward_from_bare(ctx, from, false)
    }

    /// [`Self::forward_from`]; `bare`: the plugin before `from` calls it
    /// directly, without a *trace* span (CoreDNS's *dns64* calls `Next.ServeDNS`
    /// where every other plugin uses `plugin.NextOrFailure`).
    fn forward_from_bare(
        &self,
        ctx: &mut Ctx<'_>,
        from: usize,
        bare: bool,
    ) -> Result<(usize, Status), usize> {
        for i in from..self.plugins.len() {
            if ctx.st.trace != 0 && !(bare && i == from) {
                crate::plugins::trace::enter(ctx.st, i, self.plugins[i].name());
            }
            match self.plugins[i].serve(ctx) {
                Flow::Next => {}
                Flow::Return(st) => return Ok((i, st)),
                Flow::Park => return Err(i),
            }
        }
        let last = self.plugins.len().saturating_sub(1);
        let name = self.plugins.get(last).map_or("chain", Plugin::name);
        Ok((
            last,
            Status {
                rcode: 2,
                err: Some(PluginError {
                    plugin: name,
                    kind: ErrorKind::NoNextPlugin,
                }),
            },
        ))
    }

    /// Runs the response phase for plugins `floor..=upto`, innermost first.
    fn respond(&self, ctx: &mut Ctx<'_>, floor: usize, upto: usize, mut st: Status) -> Status {
        let upto = upto.min(self.plugins.len().saturating_sub(1));
        let floor = floor.min(upto);
        for (i, p) in self.plugins[floor..=upto].iter().enumerate().rev() {
            p.respond(ctx, &mut st);
            if ctx.st.trace != 0 {
                crate::plugins::trace::leave(ctx.st, floor + i);
            }
        }
        st
    }

    /// Runs the whole chain synchronously; `Err(i)` if plugin `i` parked (call
    /// [`Self::resume`] with it, on an owned copy of the query).
    pub fn run(self: &Arc<Self>, ctx: &mut Ctx<'_>) -> Result<Status, usize> {
        // The server calls the first plugin itself: a traced self-lookup's
        // spans start at the second.
        let r = self.forward_from_bare(ctx, 0, true);
        if let Some(job) = ctx.detach.take() {
            let at = match r {
                Ok((i, _)) | Err(i) => i,
            };
            self.launch(at, job);
        }
        let (i, st) = r?;
        Ok(self.respond(ctx, 0, i, st))
    }

    /// Applies again the query rewrites of the plugins before `at` (a parked query
    /// resumes on the client's copy of the message; the rewrite depends on the
    /// query alone, so it comes out the same).
    pub fn reapply(&self, ctx: &mut Ctx<'_>, at: usize) {
        for p in &self.plugins[..at.min(self.plugins.len())] {
            match p {
                Plugin::Rewrite(r) => {
                    let _ = r.rewrite_request(ctx);
                }
                Plugin::Tsig(t) => t.reapply(ctx),
                _ => {}
            }
        }
    }

    /// Continues a query parked at plugin `at`.
    pub async fn resume(&self, ctx: &mut Ctx<'_>, at: usize) -> Status {
        self.resume_from(ctx, at, 0).await
    }

    /// [`Self::resume`] with the response phase stopping at plugin `floor`.
    async fn resume_from(&self, ctx: &mut Ctx<'_>, mut at: usize, floor: usize) -> Status {
        loop {
            let next = Next { chain: self, at };
            let (i, st) = match self.plugins[at].serve_async(ctx, next).await {
                Flow::Next => match self.forward_from(ctx, at + 1) {
                    Ok(r) => r,
                    Err(p) => {
                        at = p;
                        continue;
                    }
                },
                Flow::Return(st) => (at, st),
                Flow::Park => (at, Status::rcode(2)),
            };
            if let Some(job) = ctx.detach.take() {
                // Rare (a plugin detaching after a parked one): run it inline.
                Box::pin(self.detached_inline(i, job)).await;
            }
            return self.respond(ctx, floor, i, st);
        }
    }

    /// Runs the plugins after `at` on `ctx`, request and response phases, as
    /// CoreDNS's `Next.ServeDNS` with a non-writer: the reply (if any) is left
    /// in the context for plugin `at` to look at.
    fn rest<'s, 'a: 's>(
        &'s self,
        ctx: &'s mut Ctx<'a>,
        at: usize,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Status> + 's>> {
        Box::pin(async move {
            let bare = matches!(self.plugins.get(at), Some(Plugin::Dns64(_)));
            let (i, st) = match self.forward_from_bare(ctx, at + 1, bare) {
                Ok(r) => r,
                Err(p) => return self.resume_from(ctx, p, at + 1).await,
            };
            if let Some(job) = ctx.detach.take() {
                self.detached_inline(i, job).await;
            }
            self.respond(ctx, at + 1, i, st)
        })
    }

    /// Runs a detached query of plugin `at` to the end, on this task.
    async fn detached_inline(&self, at: usize, job: Detached) {
        let (mut resp, mut scratch) = (Vec::new(), Vec::new());
        let Some(mut ctx) = job.context(&mut resp, &mut scratch) else {
            return;
        };
        match self.forward_from(&mut ctx, at + 1) {
            Ok((i, st)) => {
                self.respond(&mut ctx, at, i, st);
            }
            Err(p) => {
                self.resume_from(&mut ctx, p, at).await;
            }
        }
    }

    /// Starts a detached query of plugin `at`: synchronously until a plugin
    /// parks, then on the detached-query thread.
    fn launch(self: &Arc<Self>, at: usize, job: Detached) {
        let (mut resp, mut scratch) = (Vec::new(), Vec::new());
        let Some(mut ctx) = job.context(&mut resp, &mut scratch) else {
            return;
        };
        let parked = match self.forward_from(&mut ctx, at + 1) {
            Ok((i, st)) => {
                self.respond(&mut ctx, at, i, st);
                return;
            }
            Err(p) => p,
        };
        let st = ctx.st;
        drop(ctx);
        let Some(queue) = detached_queue() else {
            return self.detached_failed(at, &job, st);
        };
        if DETACHED.fetch_add(1, Ordering::Relaxed) >= MAX_DETACHED {
            DETACHED.fetch_sub(1, Ordering::Relaxed);
            return self.detached_failed(at, &job, st);
        }
        let p = Parked {
            chain: Arc::clone(self),
            job,
            at,
            parked,
            st,
        };
        if let Err(e) = queue.send(p) {
            DETACHED.fetch_sub(1, Ordering::Relaxed);
            self.detached_failed(at, &e.0.job, st);
        }
    }

    /// Tells plugin `at` its detached query got no reply.
    fn detached_failed(&self, at: usize, job: &Detached, st: ReqState) {
        let (mut resp, mut scratch) = (Vec::new(), Vec::new());
        let Some(mut ctx) = job.context(&mut resp, &mut scratch) else {
            return;
        };
        ctx.st = st;
        self.respond(&mut ctx, at, at, Status::rcode(2));
    }
}
