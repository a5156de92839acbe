//! *trace*: Zipkin spans of how a query goes through the chain (plugins.md,
//! CoreDNS `plugin/trace`).
//!
//! A traced query (every `every`th) gets a root span `servedns` (kind SERVER,
//! with CoreDNS's `coredns.io/…` tags), one span per plugin after *trace* named
//! after the plugin, each the child of the plugin before it (CoreDNS's
//! `plugin.NextOrFailure`; *dns64* calls its next plugin without one), and a
//! `connect` span per *forward* attempt. Spans are Zipkin v2 JSON, as
//! zipkin-go writes them, POSTed in batches by a reporter thread with
//! zipkin-go's HTTP reporter's batch size, backlog and interval. DoH and DoH3
//! queries join the trace of their B3 headers.
//!
//! A traced query's open spans live in a process-wide table (the query may
//! park and resume on a fresh context); its key rides in
//! [`crate::chain::ReqState::trace`]. The chain calls [`enter`] before a
//! plugin's request hook and [`leave`] after its response hook.
//!
//! The `datadog` endpoint type fails at startup: it needs Datadog's agent
//! protocol, not built.

use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use corefile::{Diagnostic, Dispenser, values::go_quote};

use crate::chain::{Ctx, Flow, Status};
use crate::config::SetupCtx;

/// zipkin-go's HTTP reporter defaults.
const DEFAULT_BATCH: usize = 100;
const DEFAULT_BACKLOG: usize = 1000;
const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
/// Its request timeout.
const POST_TIMEOUT: Duration = Duration::from_secs(5);
/// Finished spans waiting for the reporter thread; beyond, spans are dropped.
const QUEUE: usize = 8192;
/// Traced queries in flight at once; beyond, a query is not traced.
pub const MAX_ACTIVE: usize = 8192;
/// A traced query still open after this long is taken as lost (a panic).
const STALE: Duration = Duration::from_secs(30);

/// Parsed configuration.
#[derive(Debug, Clone)]
pub struct TraceConfig {
    /// The collector URL.
    pub endpoint: String,
    /// Trace one query in this many (0: none).
    pub every: u64,
    /// The local endpoint's service name.
    pub service: String,
    /// `client_server`: a DoH query joins its client's span.
    pub shared: bool,
    /// `zipkin_max_backlog_size`.
    pub backlog: usize,
    /// `zipkin_max_batch_size`.
    pub batch: usize,
    /// `zipkin_max_batch_interval`.
    pub interval: Duration,
    /// The local endpoint's address (`bind`'s first address and the block's
    /// port), when the block binds one.
    pub local: Option<(std::net::IpAddr, u16)>,
}

/// Go's `strconv.ParseUint(s, 10, 64)`.
fn parse_u64(s: &str) -> Result<u64, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "strconv.ParseUint: parsing {}: invalid syntax",
            go_quote(s)
        ));
    }
    s.parse().map_err(|_| {
        format!(
            "strconv.ParseUint: parsing {}: value out of range",
            go_quote(s)
        )
    })
}

/// Go's `strconv.Atoi`, for sizes (a negative size fails, naming the option:
/// zipkin-go would panic on it).
fn parse_size(opt: &str, s: &str) -> Result<i64, String> {
    let n: i64 = corefile::keys::go_atoi(s).ok_or_else(|| crate::config::go_atoi_err(s))?;
    if n < 0 && opt == "zipkin_max_backlog_size" {
        return Err(format!("{opt} must not be negative, found {n}"));
    }
    Ok(n)
}

/// Setup (CoreDNS `traceParse`).
pub fn setup(d: &mut Dispenser, ctx: &SetupCtx<'_>) -> Result<TraceConfig, Diagnostic> {
    let plain = |e: String| Diagnostic::plain(e).in_plugin("trace");
    let w = |e: Diagnostic| e.in_plugin("trace");
    let mut c = TraceConfig {
        endpoint: String::new(),
        every: 1,
        service: "coredns".into(),
        shared: false,
        backlog: 0,
        batch: 0,
        interval: Duration::ZERO,
        local: None,
    };
    let mut kind = "zipkin".to_owned();
    while d.next() {
        let args = d.remaining_args();
        let (k, ep) = match args.as_slice() {
            [] => ("zipkin".to_owned(), ""),
            [ep] => ("zipkin".to_owned(), ep.as_str()),
            [k, ep] => (k.to_lowercase(), ep.as_str()),
            _ => return Err(w(d.arg_err())),
        };
        let default = match k.as_str() {
            "zipkin" => "localhost:9411",
            "datadog" => "localhost:8126",
            _ => {
                return Err(plain(format!(
                    "tracing endpoint type '{k}' is not supported"
                )));
            }
        };
        let ep = if ep.is_empty() { default } else { ep };
        c.endpoint = if k == "zipkin" && !ep.contains("http") {
            format!("http://{ep}/api/v2/spans")
        } else {
            ep.to_owned()
        };
        kind = k;
        while d.next_block() {
            let opt = d.val().to_owned();
            let args = d.remaining_args();
            let one = || match args.as_slice() {
                [a] => Ok(a.as_str()),
                _ => Err(d.arg_err()),
            };
            match opt.as_str() {
                "every" => c.every = parse_u64(one().map_err(w)?).map_err(plain)?,
                "service" => c.service = one().map_err(w)?.to_owned(),
                "client_server" => match args.as_slice() {
                    [] => c.shared = true,
                    [v] => {
                        c.shared = crate::cli::parse_bool(v).ok_or_else(|| {
                            plain(format!(
                                "strconv.ParseBool: parsing {}: invalid syntax",
                                go_quote(v)
                            ))
                        })?;
                    }
                    _ => return Err(w(d.arg_err())),
                },
                "datadog_analytics_rate" => {
                    let rate = match args.as_slice() {
                        [] => 0.0,
                        [v] => v.parse::<f64>().map_err(|_| {
                            plain(format!(
                                "strconv.ParseFloat: parsing {}: invalid syntax",
                                go_quote(v)
                            ))
                        })?,
                        _ => return Err(w(d.arg_err())),
                    };
                    // NaN passes, as in Go.
                    if !rate.is_nan() && !(0.0..=1.0).contains(&rate) {
                        return Err(plain(format!(
                            "datadog analytics rate must be between 0 and 1, '{rate:.6}' is not supported"
                        )));
                    }
                }
                "zipkin_max_backlog_size" => {
                    let n = parse_size(&opt, one().map_err(w)?).map_err(plain)?;
                    c.backlog = usize::try_from(n).unwrap_or(0);
                }
                "zipkin_max_batch_size" => {
                    // A negative size sends at every span, as 1 does.
                    let n = parse_size(&opt, one().map_err(w)?).map_err(plain)?;
                    c.batch = if n < 0 {
                        1
                    } else {
                        usize::try_from(n).unwrap_or(1)
                    };
                }
                "zipkin_max_batch_interval" => {
                    let v = one().map_err(w)?;
                    let n = corefile::values::parse_go_duration_nanos(v).map_err(plain)?;
                    // zipkin-go ticks every tenth of it: a tick under 1ns panics in Go.
                    if n != 0 && n < 10 {
                        return Err(plain(format!(
                            "zipkin_max_batch_interval must be at least 10ns, found {v}"
                        )));
                    }
                    c.interval = Duration::from_nanos(n as u64);
                }
                _ => return Err(w(d.err(format!("unknown property '{opt}'")))),
            }
        }
    }
    if kind == "datadog" {
        return Err(plain(
            "datadog tracing is not supported by ringdns yet".to_owned(),
        ));
    }
    if let Some(host) = ctx.settings.listen_hosts.first().filter(|h| !h.is_empty()) {
        let port = ctx
            .keys
            .first()
            .and_then(|k| {
                let (_, rest) = corefile::keys::split_transport(k);
                corefile::keys::split_host_port(rest).ok()?.1
            })
            .and_then(|p| p.parse::<u16>().ok())
            .unwrap_or(0);
        if let Ok(ip) = host.parse::<std::net::IpAddr>() {
            // Go's `To4` makes an IPv4-mapped address IPv4.
            c.local = Some((ip.to_canonical(), port));
        }
    }
    Ok(c)
}

/// A span's identity as B3 headers carry it (zipkin-go's `model.SpanContext`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Parent {
    /// Trace ID, high and low halves (high 0 for 64-bit IDs).
    pub trace: (u64, u64),
    /// Span ID.
    pub id: u64,
    /// Parent span ID.
    pub parent: Option<u64>,
    /// Sampling decision, if made.
    pub sampled: Option<bool>,
    /// Debug flag.
    pub debug: bool,
}

/// zipkin-go's `b3.ExtractHTTP`: the single `b3` header, else the `X-B3-*`
/// headers; `None` where extraction fails (the trace then starts afresh, as
/// CoreDNS ignores the error).
pub fn b3(get: impl Fn(&str) -> Option<String>) -> Option<Parent> {
    let single = get("b3").unwrap_or_default();
    if !single.is_empty() {
        if let Some(p) = b3_single(&single) {
            return Some(p);
        }
    }
    let h = |k: &str| get(k).unwrap_or_default();
    b3_multi(
        &h("x-b3-traceid"),
        &h("x-b3-spanid"),
        &h("x-b3-parentspanid"),
        &h("x-b3-sampled"),
        &h("x-b3-flags"),
    )
    .filter(|p| *p != Parent::default())
}

/// Go's `strconv.ParseUint(s, 16, 64)`: hex digits only (no sign), any number
/// of leading zeros.
fn hex64(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let digits = s.trim_start_matches('0');
    if digits.len() > 16 {
        return None;
    }
    if digits.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(digits, 16).ok()
}

/// zipkin-go's `TraceIDFromHex`: the last 16 digits the low half, the rest
/// the high half.
fn trace_hex(s: &str) -> Option<(u64, u64)> {
    if !s.is_ascii() {
        return None;
    }
    if s.len() > 16 {
        let (hi, lo) = s.split_at(s.len() - 16);
        Some((hex64(hi)?, hex64(lo)?))
    } else {
        Some((0, hex64(s)?))
    }
}

/// zipkin-go's `b3.ParseHeaders`.
fn b3_multi(trace: &str, span: &str, parent: &str, sampled: &str, flags: &str) -> Option<Parent> {
    let mut p = Parent::default();
    match sampled.to_lowercase().as_str() {
        "0" | "false" => p.sampled = Some(false),
        "1" | "true" => p.sampled = Some(true),
        "" => {}
        _ => return None,
    }
    if flags == "1" {
        p.debug = true;
        p.sampled = None;
    }
    let mut have = 0;
    if !trace.is_empty() {
        have += 1;
        p.trace = trace_hex(trace)?;
    }
    if !span.is_empty() {
        have += 1;
        p.id = hex64(span)?;
    }
    if have == 1 {
        return None;
    }
    if !parent.is_empty() {
        if have == 0 {
            return None;
        }
        p.parent = Some(hex64(parent)?);
    }
    Some(p)
}

/// zipkin-go's `b3.ParseSingleHeader`.
fn b3_single(h: &str) -> Option<Parent> {
    let mut p = Parent::default();
    let n = h.len();
    let sampling;
    if n == 1 {
        sampling = h;
    } else if n == 16 || n == 32 || n < 33 || !h.is_ascii() {
        return None;
    } else {
        let mut pos = 0;
        let mut high = 0;
        if &h[16..17] != "-" {
            high = hex64(&h[..16])?;
            pos = 16;
        }
        let low = hex64(h.get(pos..pos + 16)?)?;
        p.trace = (high, low);
        p.id = hex64(h.get(pos + 17..pos + 33)?)?;
        let rest = n - (pos + 33);
        sampling = match rest {
            0 => "",
            1 | 17 => return None,
            2 => &h[pos + 34..],
            19 => {
                p.parent = Some(hex64(&h[pos + 36..])?);
                &h[pos + 34..pos + 35]
            }
            _ => return None,
        };
    }
    match sampling {
        "d" => p.debug = true,
        "1" => p.sampled = Some(true),
        "0" => p.sampled = Some(false),
        "" => {}
        _ => return None,
    }
    Some(p)
}

thread_local! {
    /// The B3 context of the DoH request being dispatched on this thread.
    static HTTP_PARENT: Cell<Option<Parent>> = const { Cell::new(None) };
}

/// Restores the thread's B3 context when the dispatch ends, also by unwinding.
struct ParentScope(Option<Parent>);

impl Drop for ParentScope {
    fn drop(&mut self) {
        HTTP_PARENT.with(|c| c.set(self.0));
    }
}

/// Runs `f` (a DoH query's synchronous dispatch) with the request's B3 context
/// visible to *trace* (CoreDNS's `HTTPRequestKey` in the context). *trace*
/// comes before every plugin that parks, so it reads it within `f`.
pub fn with_http_parent<R>(parent: Option<Parent>, f: impl FnOnce() -> R) -> R {
    let _scope = ParentScope(HTTP_PARENT.with(|c| c.replace(parent)));
    f()
}

/// An open span.
struct Open {
    id: u64,
    parent: Option<u64>,
    name: &'static str,
    wall_us: i64,
    start: Instant,
}

/// Now, in microseconds since the epoch as Go rounds it.
fn wall_us() -> i64 {
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from((wall.as_nanos() + 500) / 1000).unwrap_or(i64::MAX)
}

impl Open {
    fn new(id: u64, parent: Option<u64>, name: &'static str) -> Self {
        Self {
            id,
            parent,
            name,
            wall_us: wall_us(),
            start: Instant::now(),
        }
    }
}

/// What every span of a trace shares.
#[derive(Clone)]
struct Head {
    tracer: Arc<Tracer>,
    trace: (u64, u64),
    debug: bool,
    /// The root joined its client's span (`client_server`).
    shared: bool,
    /// Spans are reported (a B3 `Sampled: 0` trace is kept only for its ID).
    sampled: bool,
}

impl Head {
    fn report(&self, o: &Open, root: bool, tags: &[(&str, String)], notes: &[(i64, String)]) {
        if self.sampled {
            self.tracer.report(span_json(self, o, root, tags, notes));
        }
    }
}

/// A traced query in flight.
struct Active {
    head: Head,
    /// Distinguishes this query from later ones given the same slot.
    generation: u32,
    root: Open,
    /// Open plugin spans, innermost last, with the query's tag (a self-lookup
    /// has its own) and the plugin's index.
    stack: Vec<((u16, usize), Open)>,
}

impl Active {
    /// Reports the spans still open (none unless a plugin ended without its
    /// response hook), innermost first, then the root with `tags` and `notes`.
    fn finish(self, tags: &[(&str, String)], notes: &[(i64, String)]) {
        for (_, o) in self.stack.iter().rev() {
            self.head.report(o, false, &[], &[]);
        }
        self.head.report(&self.root, true, tags, notes);
    }

    /// The root without tags: what Go's deferred `Finish` calls report when a
    /// query panics.
    fn abandon(self) {
        self.finish(&[], &[]);
    }
}

/// Bits of a handle ([`crate::chain::ReqState::trace`]) that hold the slot;
/// the rest hold the generation (never 0, so no handle is 0).
const SLOT_BITS: u32 = 13;
const _: () = assert!(MAX_ACTIVE <= 1 << SLOT_BITS);

struct Table {
    slots: slab::Slab<Active>,
    generation: u32,
}

static ACTIVE: LazyLock<Mutex<Table>> = LazyLock::new(|| {
    Mutex::new(Table {
        slots: slab::Slab::new(),
        generation: 0,
    })
});

fn active() -> std::sync::MutexGuard<'static, Table> {
    ACTIVE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Table {
    fn get(&self, h: u32) -> Option<&Active> {
        let a = self.slots.get((h & ((1 << SLOT_BITS) - 1)) as usize)?;
        (a.generation == h >> SLOT_BITS).then_some(a)
    }

    fn get_mut(&mut self, h: u32) -> Option<&mut Active> {
        let a = self.slots.get_mut((h & ((1 << SLOT_BITS) - 1)) as usize)?;
        (a.generation == h >> SLOT_BITS).then_some(a)
    }

    fn take(&mut self, h: u32) -> Option<Active> {
        self.get(h)?;
        self.slots.try_remove((h & ((1 << SLOT_BITS) - 1)) as usize)
    }

    /// Removes the queries open longer than [`STALE`] (lost to a panic or a
    /// dropped connection).
    fn stale(&mut self) -> Vec<Active> {
        let old: Vec<usize> = self
            .slots
            .iter()
            .filter(|(_, a)| a.root.start.elapsed() >= STALE)
            .map(|(k, _)| k)
            .collect();
        old.into_iter()
            .filter_map(|k| self.slots.try_remove(k))
            .collect()
    }
}

/// Reports and forgets the queries open longer than [`STALE`].
fn sweep() {
    let lost = active().stale();
    for a in lost {
        a.abandon();
    }
}

/// Ends the trace of a query that will not reach *trace*'s response hook (a
/// recovered panic), if the query started it: its open spans are reported as
/// Go's deferred calls would.
pub fn abandon(st: &mut crate::chain::ReqState) {
    if st.marks & crate::chain::TRACE_ROOT == 0 {
        return;
    }
    st.marks &= !crate::chain::TRACE_ROOT;
    let a = active().take(std::mem::take(&mut st.trace));
    if let Some(a) = a {
        a.abandon();
    }
}

/// zipkin-go's 63-bit random IDs.
fn new_id() -> u64 {
    fastrand::u64(1..1 << 63)
}

/// The tracer of one *trace* stanza: where finished spans go.
pub struct Tracer {
    /// The local endpoint as JSON (empty: none).
    local: String,
    shared: bool,
    tx: tokio::sync::mpsc::Sender<String>,
}

impl Tracer {
    fn report(&self, span: String) {
        // The reporter applies the backlog; a full queue drops the span.
        let _ = self.tx.try_send(span);
    }
}

/// The runtime plugin.
pub struct Trace {
    every: u64,
    count: AtomicU64,
    tracer: Arc<Tracer>,
}

impl Trace {
    /// Builds it and starts its reporter thread (ended when the plugin is dropped).
    pub fn new(c: &TraceConfig) -> Result<Self, String> {
        let (tx, rx) = tokio::sync::mpsc::channel(QUEUE);
        let rep = Reporter {
            url: c.endpoint.clone(),
            batch: if c.batch == 0 { DEFAULT_BATCH } else { c.batch },
            backlog: if c.backlog == 0 {
                DEFAULT_BACKLOG
            } else {
                c.backlog
            },
            interval: if c.interval.is_zero() {
                DEFAULT_INTERVAL
            } else {
                c.interval
            },
        };
        std::thread::Builder::new()
            .name("ringdns-trace".into())
            .spawn(move || rep.run(rx))
            .map_err(|e| format!("plugin/trace: {e}"))?;
        Ok(Self {
            every: c.every,
            count: AtomicU64::new(0),
            tracer: Arc::new(Tracer {
                local: endpoint_json(&c.service, c.local),
                shared: c.shared,
                tx,
            }),
        })
    }

    /// Request hook: starts the root span of every `every`th query.
    pub fn serve(&self, ctx: &mut Ctx<'_>) -> Flow {
        let traced =
            self.every > 0 && (self.count.fetch_add(1, Ordering::Relaxed) + 1) % self.every == 0;
        // A self-lookup of a traced query joins its asker's trace (CoreDNS
        // carries the span in the context): no root of its own.
        if !traced || ctx.st.trace != 0 {
            return Flow::Next;
        }
        let (head, root) = server_span(&self.tracer, HTTP_PARENT.with(Cell::get), "servedns");
        ctx.set_meta("trace/traceid", || trace_text(head.trace));
        if let Some(h) = open_root(head, root) {
            ctx.st.trace = h;
            ctx.st.marks |= crate::chain::TRACE_ROOT;
        }
        Flow::Next
    }

    /// Where its spans go (for the `grpc://` listener's call spans).
    pub fn tracer(&self) -> &Arc<Tracer> {
        &self.tracer
    }

    /// Response hook: finishes the root span with the query's tags.
    pub fn respond(&self, ctx: &mut Ctx<'_>, st: &Status) {
        if ctx.st.marks & crate::chain::TRACE_ROOT == 0 {
            return;
        }
        ctx.st.marks &= !crate::chain::TRACE_ROOT;
        let h = std::mem::take(&mut ctx.st.trace);
        let Some(a) = active().take(h) else {
            return;
        };
        let rc = match ctx.written_rcode() {
            Some(rc) if crate::chain::client_write(st.rcode) => rc,
            _ if crate::chain::client_write(st.rcode) => 0,
            _ => st.rcode,
        };
        let mut name = String::new();
        ctx.req.qname.to_lowercase().write_presentation(&mut name);
        let mut qtype = String::new();
        crate::wire::types::type_to_string(ctx.req.qtype, &mut qtype);
        let rcode =
            crate::wire::types::rcode_name(rc).map_or_else(|| format!("RCODE{rc}"), str::to_owned);
        let remote = ctx.peer.ip().to_string();
        let mut tags = vec![
            ("coredns.io/name", name),
            ("coredns.io/proto", ctx.proto.as_str().to_owned()),
            ("coredns.io/rcode", rcode),
            ("coredns.io/remote", remote),
            ("coredns.io/type", qtype),
        ];
        let mut notes = Vec::new();
        if let Some(e) = &st.err {
            tags.push(("error", "true".to_owned()));
            let now = wall_us();
            notes.push((now, "event:error".to_owned()));
            notes.push((now, format!("error.object:{e}")));
        }
        tags.sort_by_key(|t| t.0);
        a.finish(&tags, &notes);
    }
}

/// Puts a new trace in the table: its handle, `None` when the table is full.
fn open_root(head: Head, root: Open) -> Option<u32> {
    let mut table = active();
    if table.slots.len() >= MAX_ACTIVE {
        let lost = table.stale();
        drop(table);
        for a in lost {
            a.abandon();
        }
        table = active();
        if table.slots.len() >= MAX_ACTIVE {
            return None;
        }
    }
    table.generation = match table.generation.wrapping_add(1) & (u32::MAX >> SLOT_BITS) {
        0 => 1,
        g => g,
    };
    let generation = table.generation;
    let key = table.slots.insert(Active {
        head,
        generation,
        root,
        stack: Vec::new(),
    });
    // Keys stay below MAX_ACTIVE: the slab never holds more.
    Some((generation << SLOT_BITS) | key as u32)
}

/// The method every `grpc://` call names.
const GRPC_METHOD: &str = "/coredns.dns.DnsService/Query";

/// grpc-go's OpenTracing interceptor as CoreDNS installs it on a `grpc://`
/// listener with *trace*: every call gets a span named after the method (kind
/// SERVER), a child of the call's B3 context if it carries one; the query runs
/// inside it (the handle to give the dispatch; 0 when nothing is traced).
pub fn grpc_call(tracer: &Arc<Tracer>, from: Option<Parent>) -> u32 {
    let (head, root) = server_span(tracer, from, GRPC_METHOD);
    open_root(head, root).unwrap_or(0)
}

/// zipkin-go's `StartSpan` of a SERVER span with the extracted context `from`
/// as parent: a new trace without one; joined (same ID, shared) with
/// `client_server`, else a child.
fn server_span(tracer: &Arc<Tracer>, from: Option<Parent>, name: &'static str) -> (Head, Open) {
    let from = from.unwrap_or_default();
    let (trace, id, parent, shared) = if from.trace == (0, 0) {
        let t = (0, new_id());
        (t, t.1, from.parent, false)
    } else if tracer.shared {
        (from.trace, from.id, from.parent, true)
    } else {
        (from.trace, new_id(), Some(from.id), false)
    };
    let head = Head {
        tracer: Arc::clone(tracer),
        trace,
        debug: from.debug,
        shared,
        sampled: from.debug || from.sampled.unwrap_or(true),
    };
    (head, Open::new(id, parent, name))
}

/// Finishes a call's span ([`grpc_call`]), tagged `component: gRPC`.
pub fn grpc_done(h: u32) {
    if h == 0 {
        return;
    }
    let Some(a) = active().take(h) else {
        return;
    };
    a.finish(&[("component", "gRPC".to_owned())], &[]);
}

/// The trace ID as zipkin-go prints it.
fn trace_text((hi, lo): (u64, u64)) -> String {
    if hi == 0 {
        format!("{lo:016x}")
    } else {
        format!("{hi:016x}{lo:016x}")
    }
}

/// Opens the span of plugin `at` (named `name`) of traced query `h`.
#[cold]
pub fn enter(st: crate::chain::ReqState, at: usize, name: &'static str) {
    let mut table = active();
    let Some(a) = table.get_mut(st.trace) else {
        return;
    };
    let parent = a.stack.last().map_or(a.root.id, |(_, o)| o.id);
    a.stack
        .push(((st.trace_tag, at), Open::new(new_id(), Some(parent), name)));
}

/// Finishes the span of plugin `at` of traced query `h`, if it is the innermost open.
#[cold]
pub fn leave(st: crate::chain::ReqState, at: usize) {
    let done = {
        let mut table = active();
        let Some(a) = table.get_mut(st.trace) else {
            return;
        };
        if a.stack.last().is_none_or(|(k, _)| *k != (st.trace_tag, at)) {
            return;
        }
        a.stack.pop().map(|(_, o)| (a.head.clone(), o))
    };
    if let Some((head, o)) = done {
        head.report(&o, false, &[], &[]);
    }
}

/// A span a plugin opens inside its own (*forward*'s `connect`).
pub struct Child {
    head: Head,
    open: Open,
}

/// Opens span `name` under the innermost open span of traced query `h`.
pub fn child(h: u32, name: &'static str) -> Option<Child> {
    if h == 0 {
        return None;
    }
    let table = active();
    let a = table.get(h)?;
    let parent = a.stack.last().map_or(a.root.id, |(_, o)| o.id);
    Some(Child {
        head: a.head.clone(),
        open: Open::new(new_id(), Some(parent), name),
    })
}

impl Child {
    /// Finishes it with `tags` (sorted by key).
    pub fn finish(self, tags: &[(&str, String)]) {
        self.head.report(&self.open, false, tags, &[]);
    }
}

/// Publishes `trace/traceid` again on a resumed query (its store is rebuilt).
pub fn republish(ctx: &mut Ctx<'_>) {
    let h = ctx.st.trace;
    // Only the query whose *trace* started the trace published it.
    if h == 0 || ctx.meta.is_none() || ctx.st.marks & crate::chain::TRACE_ROOT == 0 {
        return;
    }
    let id = active().get(h).map(|a| trace_text(a.head.trace));
    if let Some(id) = id {
        ctx.set_meta("trace/traceid", || id);
    }
}

/// zipkin-go's `model.Endpoint` JSON (service name lower-cased).
fn endpoint_json(service: &str, addr: Option<(std::net::IpAddr, u16)>) -> String {
    let mut out = String::from("{");
    let mut sep = "";
    if !service.is_empty() {
        out.push_str("\"serviceName\":");
        crate::plugins::reload::json_str(&mut out, &service.to_lowercase());
        sep = ",";
    }
    if let Some((ip, port)) = addr {
        let key = if ip.is_ipv4() { "ipv4" } else { "ipv6" };
        out.push_str(&format!("{sep}\"{key}\":\"{ip}\""));
        sep = ",";
        if port != 0 {
            out.push_str(&format!("{sep}\"port\":{port}"));
        }
    }
    if out.len() == 1 {
        return String::new();
    }
    out.push('}');
    out
}

/// One finished span as zipkin-go's `SpanModel.MarshalJSON` writes it.
fn span_json(
    a: &Head,
    o: &Open,
    root: bool,
    tags: &[(&str, String)],
    notes: &[(i64, String)],
) -> String {
    use std::fmt::Write;
    let d = o.start.elapsed();
    // Go: under 1µs (but not 0) is 1µs; else rounded to the microsecond.
    let dur = if d.is_zero() {
        0
    } else if d < Duration::from_micros(1) {
        1
    } else {
        (d.as_nanos() + 500) / 1000
    };
    let mut s = String::with_capacity(256);
    s.push('{');
    let _ = write!(s, "\"timestamp\":{}", o.wall_us);
    if dur != 0 {
        let _ = write!(s, ",\"duration\":{dur}");
    }
    let _ = write!(
        s,
        ",\"traceId\":\"{}\",\"id\":\"{:016x}\"",
        trace_text(a.trace),
        o.id
    );
    if let Some(p) = o.parent {
        let _ = write!(s, ",\"parentId\":\"{p:016x}\"");
    }
    if a.debug {
        s.push_str(",\"debug\":true");
    }
    s.push_str(",\"name\":");
    crate::plugins::reload::json_str(&mut s, &o.name.to_lowercase());
    if root {
        s.push_str(",\"kind\":\"SERVER\"");
        if a.shared {
            s.push_str(",\"shared\":true");
        }
    }
    if !a.tracer.local.is_empty() {
        s.push_str(",\"localEndpoint\":");
        s.push_str(&a.tracer.local);
    }
    if !notes.is_empty() {
        s.push_str(",\"annotations\":[");
        for (i, (ts, v)) in notes.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            let _ = write!(s, "{{\"timestamp\":{ts},\"value\":");
            crate::plugins::reload::json_str(&mut s, v);
            s.push('}');
        }
        s.push(']');
    }
    if !tags.is_empty() {
        s.push_str(",\"tags\":{");
        for (i, (k, v)) in tags.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            crate::plugins::reload::json_str(&mut s, k);
            s.push(':');
            crate::plugins::reload::json_str(&mut s, v);
        }
        s.push('}');
    }
    s.push('}');
    s
}

/// zipkin-go's HTTP reporter: batches finished spans and POSTs them.
struct Reporter {
    url: String,
    batch: usize,
    backlog: usize,
    interval: Duration,
}

/// The warning zipkin-go's reporter logs through CoreDNS's adapter.
fn warn(msg: &str) {
    // zipkin-go's messages end in a newline; Go's logger adds none then.
    let msg = msg.strip_suffix('\n').unwrap_or(msg);
    crate::clog::log(crate::clog::Level::Warning, Some("trace"), msg);
}

type Batch = Arc<Mutex<VecDeque<String>>>;

impl Reporter {
    fn run(self, mut rx: tokio::sync::mpsc::Receiver<String>) {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        let batch: Batch = Arc::default();
        let kick = Arc::new(tokio::sync::Notify::new());
        let url: Arc<str> = Arc::from(self.url.as_str());
        rt.block_on(async {
            let sender = {
                let (batch, kick, url) = (Arc::clone(&batch), Arc::clone(&kick), Arc::clone(&url));
                tokio::spawn(async move {
                    loop {
                        kick.notified().await;
                        send_batch(&url, &batch).await;
                    }
                })
            };
            let mut next = Instant::now() + self.interval;
            // zipkin-go ticks every tenth of the interval (here at most every 1 ms).
            let mut tick = tokio::time::interval((self.interval / 10).max(Duration::from_millis(1)));
            let mut swept = Instant::now();
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    span = rx.recv() => {
                        let Some(span) = span else { break };
                        let len = {
                            let mut b = batch.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                            b.push_back(span);
                            if b.len() > self.backlog {
                                let dispose = b.len() - self.backlog;
                                warn(&format!("backlog too long, disposing {dispose} spans"));
                                b.drain(..dispose);
                            }
                            b.len()
                        };
                        if len >= self.batch {
                            next = Instant::now() + self.interval;
                            kick.notify_one();
                        }
                    }
                    _ = tick.tick() => {
                        if swept.elapsed() >= Duration::from_secs(1) {
                            swept = Instant::now();
                            sweep();
                        }
                        if Instant::now() > next {
                            next = Instant::now() + self.interval;
                            kick.notify_one();
                        }
                    }
                }
            }
            // The stanza is gone (a reload or shutdown): a last send.
            sender.abort();
            send_batch(&url, &batch).await;
        });
    }
}

/// zipkin-go's `sendBatch`: every span waiting, in one POST; a failed request
/// keeps them for the next.
async fn send_batch(url: &str, batch: &Batch) {
    let (body, n) = {
        let b = batch
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if b.is_empty() {
            return;
        }
        let mut body = String::from("[");
        for (i, s) in b.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            body.push_str(s);
        }
        body.push(']');
        (body, b.len())
    };
    match tokio::time::timeout(POST_TIMEOUT, post(url, body)).await {
        Err(_) => {
            warn(&format!(
                "failed to send the request: Post {}: context deadline exceeded\n",
                go_quote(url)
            ));
            return;
        }
        Ok(Err(e)) => {
            warn(&format!("failed to send the request: {e}\n"));
            return;
        }
        Ok(Ok(status)) => {
            if !(200..=299).contains(&status) {
                warn(&format!("failed the request with status code {status}\n"));
            }
        }
    }
    let mut b = batch
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let n = n.min(b.len());
    b.drain(..n);
}

/// The parts of an `http://` or `https://` URL a POST needs.
struct Url<'a> {
    tls: bool,
    host: String,
    port: u16,
    authority: &'a str,
    path: String,
}

fn parse_url(url: &str) -> Result<Url<'_>, String> {
    let q = go_quote(url);
    let unsupported =
        |scheme: &str| format!("Post {q}: unsupported protocol scheme {}", go_quote(scheme));
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(unsupported(url.split_once(':').map_or("", |(s, _)| s)));
    };
    let tls = match scheme.to_ascii_lowercase().as_str() {
        "http" => false,
        "https" => true,
        _ => return Err(unsupported(scheme)),
    };
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) => (&rest[..i], rest[i..].split('#').next().unwrap_or("")),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(format!("Post {q}: http: no Host in request URL"));
    }
    let (host, port) = match crate::http::split_host_port(authority) {
        Ok((h, p)) => {
            let port = p
                .parse()
                .map_err(|_| format!("Post {q}: dial tcp: address {p}: invalid port"))?;
            (h, port)
        }
        Err(_) => (
            authority
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            if tls { 443 } else { 80 },
        ),
    };
    Ok(Url {
        tls,
        host,
        port,
        authority,
        // Go sends the path, or `/`, and the query.
        path: if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_owned()
        },
    })
}

/// One POST of `body`; the response status.
async fn post(url: &str, body: String) -> Result<u16, String> {
    use http_body_util::{BodyExt, Full};
    use hyper::body::Bytes;
    let u = parse_url(url)?;
    let q = go_quote(url);
    let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((u.host.as_str(), u.port))
        .await
        .map_err(|e| {
            format!(
                "Post {q}: dial tcp: lookup {}: {}",
                u.host,
                crate::config::go_err(&e)
            )
        })?
        .collect();
    let mut first_err = None;
    let mut stream = None;
    for a in &addrs {
        match tokio::net::TcpStream::connect(a).await {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => {
                if first_err.is_none() {
                    let what = match e.kind() {
                        std::io::ErrorKind::ConnectionRefused => {
                            "connect: connection refused".to_owned()
                        }
                        _ => crate::config::go_err(&e),
                    };
                    first_err = Some(format!("Post {q}: dial tcp {a}: {what}"));
                }
            }
        }
    }
    let Some(s) = stream else {
        return Err(first_err.unwrap_or_else(|| format!("Post {q}: dial tcp: no address")));
    };
    let req = hyper::Request::post(u.path.as_str())
        .header(hyper::header::HOST, u.authority)
        .header("b3", "0")
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("Post {q}: {e}"))?;
    async fn send<T>(io: T, req: hyper::Request<Full<Bytes>>, q: &str) -> Result<u16, String>
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (mut tx, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
                .await
                .map_err(|e| format!("Post {q}: {e}"))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let resp = tx
            .send_request(req)
            .await
            .map_err(|e| format!("Post {q}: {e}"))?;
        let status = resp.status().as_u16();
        // Go closes the body unread; read a bounded part so the server is not cut off.
        let _ = http_body_util::Limited::new(resp.into_body(), 64 * 1024)
            .collect()
            .await;
        Ok(status)
    }
    if u.tls {
        let cfg = crate::plugins::forward::tls::client_config(&[])
            .map_err(|e| format!("Post {q}: {e}"))?;
        let name = rustls::pki_types::ServerName::try_from(u.host.clone())
            .map_err(|e| format!("Post {q}: {e}"))?;
        let t = tokio_rustls::TlsConnector::from(cfg)
            .connect(name, s)
            .await
            .map_err(|e| {
                format!(
                    "Post {q}: {}",
                    crate::plugins::forward::tls::handshake_err(&e)
                )
            })?;
        send(t, req, &q).await
    } else {
        send(s, req, &q).await
    }
}

/// The fuzz target's body (panics are bugs): the data's lines as B3 header
/// values (the first as `b3`, the rest as `X-B3-*`), and the data as a
/// collector URL.
pub fn fuzz_one(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let single = lines.next().unwrap_or("").to_owned();
    let multi: Vec<String> = lines.map(str::to_owned).collect();
    let names = [
        "x-b3-traceid",
        "x-b3-spanid",
        "x-b3-parentspanid",
        "x-b3-sampled",
        "x-b3-flags",
    ];
    let _ = b3(|k| {
        if k == "b3" {
            return Some(single.clone());
        }
        let i = names.iter().position(|n| *n == k)?;
        multi.get(i).cloned()
    });
    let _ = b3_single(&text);
    let _ = parse_url(&text);
}

#[cfg(test)]
mod tests;
