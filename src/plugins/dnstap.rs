//! *dnstap*: dnstap messages (protobuf `dnstap.Dnstap` in Frame Streams) for the
//! queries a block serves, as CoreDNS 1.14.7's `plugin/dnstap` sends them.
//!
//! * `CLIENT_QUERY` when the query reaches the plugin, `CLIENT_RESPONSE` when a
//!   plugin after it wrote a reply (the reply as the client gets it: with `full`,
//!   truncated as the server's scrub leaves it). *forward* adds `FORWARDER_QUERY`
//!   and `FORWARDER_RESPONSE` per upstream attempt ([`Taps::forwarded`]).
//! * Every `dnstap` line is its own sink: an outgoing connection (`unix`, `tcp://`,
//!   `tls://`) with a bounded queue (10,000 × QUEUE messages, the excess dropped and
//!   logged every 10 s), written in the background, flushed every second and
//!   redialled after an error; or (`dnstap listen`) a socket that dnstap readers
//!   connect to, each of them sent every message.
//! * Messages are encoded on the worker that serves the query; a sink's I/O runs on
//!   its own thread ([`sink`]).

pub mod sink;
#[cfg(test)]
mod tests;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use corefile::{Diagnostic, Dispenser};

use crate::chain::{Ctx, Flow, Proto};

/// Most `writebuffer` (MiB).
const MAX_WRITE_BUF: i64 = 1024;
/// Most `queue` (× 10,000 messages).
const MAX_QUEUE: i64 = 4096;

/// Where a sink's messages go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A Unix socket path.
    Unix(String),
    /// `tcp://HOST:PORT`.
    Tcp(String),
    /// `tls://HOST:PORT`.
    Tls(String),
}

/// One `dnstap` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkConfig {
    /// The endpoint.
    pub endpoint: Endpoint,
    /// `dnstap listen`: readers connect to us.
    pub listen: bool,
    /// `full`: messages carry the DNS message.
    pub full: bool,
    /// TCP send buffer, MiB.
    pub write_buf: usize,
    /// Queue length, × 10,000 messages.
    pub queue: usize,
    /// `identity` (default: the host name).
    pub identity: String,
    /// `version` (default `CoreDNS-1.14.7`).
    pub version: String,
    /// `extra`, a replacer format (`None`: no extra field).
    pub extra: Option<String>,
    /// `skipverify`.
    pub skip_verify: bool,
    /// `tls CERT KEY [CA]` of a listener.
    pub tls: Option<Vec<String>>,
}

/// Every `dnstap` line of a block, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnstapConfig {
    /// The sinks.
    pub sinks: Vec<SinkConfig>,
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default()
}

/// Go's `url.Parse(...).Host` for `tcp://`/`tls://` endpoints: the authority without
/// user information; `None` where `url.Parse` fails.
fn url_host(s: &str) -> Option<String> {
    let rest = s.split_once("://")?.1;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let auth = &rest[..end];
    if auth.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return None;
    }
    let host = auth.rsplit_once('@').map_or(auth, |(_, h)| h);
    // Go validates the port (digits after the last colon) and brackets.
    let port_ok = |p: &str| p.is_empty() || p.bytes().all(|b| b.is_ascii_digit());
    if let Some(r) = host.strip_prefix('[') {
        let (_, after) = r.split_once(']')?;
        if !after.is_empty() && !after.strip_prefix(':').is_some_and(port_ok) {
            return None;
        }
    } else if let Some((_, p)) = host.rsplit_once(':') {
        if !port_ok(p) {
            return None;
        }
    }
    // Bad percent escapes fail too.
    let b = host.as_bytes();
    for (i, c) in b.iter().enumerate() {
        if *c == b'%'
            && !(b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
        {
            return None;
        }
    }
    Some(host.to_owned())
}

/// Parses every `dnstap` line of a block (CoreDNS `parseConfig`).
pub fn setup(d: &mut Dispenser) -> Result<DnstapConfig, Diagnostic> {
    let w = |e: Diagnostic| e.in_plugin("dnstap");
    let mut sinks = Vec::new();
    while d.next() {
        let mut args = d.remaining_args();
        if args.is_empty() {
            return Err(w(d.arg_err()));
        }
        let listen = args[0] == "listen";
        if listen {
            if args.len() < 2 {
                return Err(w(d.err("dnstap listen requires an endpoint argument")));
            }
            args.remove(0);
        }
        // WRITEBUFFER and QUEUE: 1 to MAX, with CoreDNS's texts.
        let multiple = |i: usize, name: &str, max: i64, unit: &str| {
            let Some(a) = args.get(i) else {
                return Ok(1);
            };
            let q = corefile::values::go_quote(a);
            let v = corefile::values::strconv_atoi(a)
                .map_err(|e| w(d.err(format!("dnstap: invalid {name} {q}: {e}"))))?;
            if !(1..=max).contains(&v) {
                return Err(w(d.err(format!(
                    "dnstap: {name} must be between 1 and {max} ({unit}): {v}"
                ))));
            }
            Ok(usize::try_from(v).unwrap_or(1))
        };
        let write_buf = multiple(2, "MultipleTcpWriteBuf", MAX_WRITE_BUF, "MiB units")?;
        let queue = multiple(3, "MultipleQueue", MAX_QUEUE, "x10k messages")?;
        let ep = &args[0];
        let endpoint = if ep.starts_with("tls://") {
            Endpoint::Tls(url_host(ep).ok_or_else(|| w(d.arg_err()))?)
        } else if ep.starts_with("tcp://") {
            Endpoint::Tcp(url_host(ep).ok_or_else(|| w(d.arg_err()))?)
        } else {
            Endpoint::Unix(ep.strip_prefix("unix://").unwrap_or(ep).to_owned())
        };
        let mut s = SinkConfig {
            endpoint,
            listen,
            full: args.get(1).is_some_and(|a| a == "full"),
            write_buf,
            queue,
            identity: hostname(),
            version: format!("CoreDNS-{}", crate::COREDNS_VERSION),
            extra: None,
            skip_verify: false,
            tls: None,
        };
        while d.next_block() {
            match d.val() {
                "skipverify" => s.skip_verify = true,
                "tls" => {
                    if !listen {
                        return Err(w(d.err("tls directive only valid for listeners")));
                    }
                    let a = d.remaining_args();
                    if a.len() < 2 {
                        return Err(w(d.err("tls requires cert and key file paths")));
                    }
                    s.tls = Some(a.into_iter().take(3).collect());
                }
                "identity" | "version" | "extra" => {
                    let key = d.val().to_owned();
                    if !d.next_arg() {
                        return Err(w(d.arg_err()));
                    }
                    let v = d.val().to_owned();
                    match key.as_str() {
                        "identity" => s.identity = v,
                        "version" => s.version = v,
                        // An empty format is no extra field (CoreDNS tests `== ""`).
                        _ => s.extra = (!v.is_empty()).then_some(v),
                    }
                }
                other => return Err(w(d.err(format!("unknown property '{other}'")))),
            }
        }
        sinks.push(s);
    }
    Ok(DnstapConfig { sinks })
}

/// One running sink and how its messages are made.
pub struct Tap {
    /// `full`.
    full: bool,
    /// Identity and version, as sent.
    identity: Vec<u8>,
    version: Vec<u8>,
    /// The compiled `extra` format.
    extra: Option<Vec<super::log::Seg>>,
    /// Where the encoded messages go.
    sink: sink::Sink,
}

/// The taps of a block (every `dnstap` line), shared with its *forward*.
pub type Taps = Arc<[Tap]>;

/// dnstap `Message.Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// `CLIENT_QUERY`.
    ClientQuery = 5,
    /// `CLIENT_RESPONSE`.
    ClientResponse = 6,
    /// `FORWARDER_QUERY`.
    ForwarderQuery = 7,
    /// `FORWARDER_RESPONSE`.
    ForwarderResponse = 8,
}

/// The fields of one dnstap `Message` (Go's setters: each address setter also sets
/// the socket family and protocol, the last one called wins).
#[derive(Debug, Clone)]
pub struct Message<'a> {
    /// Type.
    pub kind: Kind,
    /// The protocol the setters saw (`true`: TCP).
    pub tcp: bool,
    /// Query address and port.
    pub query_addr: Option<SocketAddr>,
    /// Response address and port.
    pub response_addr: Option<SocketAddr>,
    /// Query time.
    pub query_time: SystemTime,
    /// Response time.
    pub response_time: Option<SystemTime>,
    /// The query message (`full`).
    pub query_msg: Option<&'a [u8]>,
    /// The response message (`full`).
    pub response_msg: Option<&'a [u8]>,
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_key(out: &mut Vec<u8>, field: u32, wire: u8) {
    put_varint(out, (u64::from(field) << 3) | u64::from(wire));
}

fn put_bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    put_key(out, field, 2);
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn put_uint(out: &mut Vec<u8>, field: u32, v: u64) {
    put_key(out, field, 0);
    put_varint(out, v);
}

fn put_fixed32(out: &mut Vec<u8>, field: u32, v: u32) {
    put_key(out, field, 5);
    out.extend_from_slice(&v.to_le_bytes());
}

/// Go's `socketFamilyAndAddress`: IPv4 (also IPv4-mapped) as 4 octets, family INET.
fn addr_bytes(ip: IpAddr) -> (bool, Vec<u8>) {
    match ip {
        IpAddr::V4(v4) => (false, v4.octets().to_vec()),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => (false, v4.octets().to_vec()),
            None => (true, v6.octets().to_vec()),
        },
    }
}

fn time_parts(t: SystemTime) -> (u64, u32) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    (d.as_secs(), d.subsec_nanos())
}

impl Message<'_> {
    /// The `Message` protobuf, fields in number order as Go marshals them.
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_uint(out, 1, self.kind as u64);
        let q = self.query_addr.map(|a| (addr_bytes(a.ip()), a.port()));
        let r = self.response_addr.map(|a| (addr_bytes(a.ip()), a.port()));
        // The response address is set last (forward), so its family wins.
        let v6 = r.as_ref().or(q.as_ref()).map(|((v6, _), _)| *v6);
        if let Some(v6) = v6 {
            put_uint(out, 2, if v6 { 2 } else { 1 });
            put_uint(out, 3, if self.tcp { 2 } else { 1 });
        }
        if let Some(((_, b), _)) = &q {
            put_bytes(out, 4, b);
        }
        if let Some(((_, b), _)) = &r {
            put_bytes(out, 5, b);
        }
        if let Some((_, p)) = &q {
            put_uint(out, 6, u64::from(*p));
        }
        if let Some((_, p)) = &r {
            put_uint(out, 7, u64::from(*p));
        }
        let (s, n) = time_parts(self.query_time);
        put_uint(out, 8, s);
        put_fixed32(out, 9, n);
        if let Some(m) = self.query_msg {
            put_bytes(out, 10, m);
        }
        if let Some(t) = self.response_time {
            let (s, n) = time_parts(t);
            put_uint(out, 12, s);
            put_fixed32(out, 13, n);
        }
        if let Some(m) = self.response_msg {
            put_bytes(out, 14, m);
        }
    }
}

/// A protobuf field value as [`decode`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// A varint.
    Int(u64),
    /// Length-delimited bytes (a string or a nested message).
    Bytes(Vec<u8>),
    /// A fixed32.
    Fixed(u32),
}

/// Reads back the protobuf this module writes — (field number, value) in wire
/// order — for readers and tests; `None` for what it does not write.
pub fn decode(b: &[u8]) -> Option<Vec<(u32, Field)>> {
    fn varint(b: &[u8], p: &mut usize) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let c = *b.get(*p)?;
            *p += 1;
            v |= u64::from(c & 0x7f) << shift;
            if c < 0x80 {
                return Some(v);
            }
        }
        None
    }
    let mut out = Vec::new();
    let mut p = 0;
    while p < b.len() {
        let k = varint(b, &mut p)?;
        let v = match k & 7 {
            0 => Field::Int(varint(b, &mut p)?),
            2 => {
                let n = usize::try_from(varint(b, &mut p)?).ok()?;
                let v = b.get(p..p.checked_add(n)?)?.to_vec();
                p += n;
                Field::Bytes(v)
            }
            5 => {
                let v = b.get(p..p + 4)?;
                p += 4;
                Field::Fixed(u32::from_le_bytes([v[0], v[1], v[2], v[3]]))
            }
            _ => return None,
        };
        out.push((u32::try_from(k >> 3).ok()?, v));
    }
    Some(out)
}

/// The wall-clock time of `at` (a monotonic reading).
pub fn wall(at: Instant) -> SystemTime {
    SystemTime::now()
        .checked_sub(at.elapsed())
        .unwrap_or(UNIX_EPOCH)
}

impl Tap {
    /// Starts the sink of `c`.
    pub fn start(c: &SinkConfig) -> Self {
        Self {
            full: c.full,
            identity: c.identity.clone().into_bytes(),
            version: c.version.clone().into_bytes(),
            extra: c.extra.as_deref().map(super::log::compile),
            sink: sink::Sink::start(c),
        }
    }

    /// `full`.
    pub fn full(&self) -> bool {
        self.full
    }

    /// Encodes the `Dnstap` envelope of `m` and queues it.
    pub fn send(&self, m: &Message<'_>, ctx: &Ctx<'_>, client_name: bool) {
        thread_local! {
            static INNER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        // The nested message is encoded into a per-thread buffer first (its length
        // goes before it); only the queued payload is allocated.
        INNER.with(|inner| {
            let mut inner = inner.borrow_mut();
            inner.clear();
            m.encode(&mut inner);
            let mut out = Vec::with_capacity(inner.len() + 64);
            put_bytes(&mut out, 1, &self.identity);
            put_bytes(&mut out, 2, &self.version);
            if let Some(segs) = &self.extra {
                let mut s = String::new();
                super::log::render_request(segs, ctx, client_name, &mut s);
                put_bytes(&mut out, 3, s.as_bytes());
            }
            put_bytes(&mut out, 14, &inner);
            put_uint(&mut out, 15, 1);
            self.sink.send(out);
        });
    }
}

/// The *dnstap* plugin of a block.
pub struct Dnstap {
    /// Its taps, in Corefile order.
    pub taps: Taps,
}

impl Dnstap {
    /// Starts every sink (CoreDNS's `OnStartup`: the first dial is made now, a failure
    /// logged).
    pub fn new(c: &DnstapConfig) -> Self {
        Self {
            taps: c.sinks.iter().map(Tap::start).collect(),
        }
    }

    /// Request hook: `CLIENT_QUERY`.
    pub fn serve(&self, ctx: &mut Ctx<'_>) -> Flow {
        // The response repeats this query time (CoreDNS keeps one `queryTime`).
        let now = SystemTime::now();
        ctx.st.tap_time = u64::try_from(
            now.duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos(),
        )
        .unwrap_or(0);
        for t in self.taps.iter() {
            let m = Message {
                kind: Kind::ClientQuery,
                tcp: ctx.proto == Proto::Tcp,
                query_addr: Some(ctx.peer),
                response_addr: None,
                query_time: now,
                response_time: None,
                query_msg: t.full.then_some(ctx.req.msg),
                response_msg: None,
            };
            t.send(&m, ctx, true);
        }
        Flow::Next
    }

    /// Response hook: `CLIENT_RESPONSE` for a reply a plugin wrote.
    pub fn respond(&self, ctx: &mut Ctx<'_>) {
        if !ctx.written {
            return;
        }
        let qt = match ctx.st.tap_time {
            0 => wall(ctx.st.start),
            n => UNIX_EPOCH + std::time::Duration::from_nanos(n),
        };
        let now = SystemTime::now();
        // The reply as the server's scrub leaves it (CoreDNS packs the message after
        // its write, which truncates in place).
        let scrubbed = if self.taps.iter().any(|t| t.full) {
            ctx.scrubbed_reply()
        } else {
            Vec::new()
        };
        for t in self.taps.iter() {
            let m = Message {
                kind: Kind::ClientResponse,
                tcp: ctx.proto == Proto::Tcp,
                query_addr: Some(ctx.peer),
                response_addr: None,
                query_time: qt,
                response_time: Some(now),
                query_msg: None,
                response_msg: t.full.then_some(&scrubbed[..]),
            };
            // CoreDNS renders `extra` with the request as the plugins after it left
            // it (a *rewrite* changes the message dnstap holds).
            t.send(&m, ctx, false);
        }
    }

    /// Starts closing every sink (they flush and close on their threads).
    pub fn begin_close(&self) {
        for t in self.taps.iter() {
            t.sink.begin_close();
        }
    }

    /// Waits for the sinks after [`Self::begin_close`].
    pub fn wait_closed(&self) {
        for t in self.taps.iter() {
            t.sink.wait_closed();
        }
    }
}

/// What *forward* taps after an upstream attempt (`toDnstap`).
pub struct Forwarded<'a> {
    /// The upstream query as sent (its ID is replaced by the client's).
    pub query: &'a [u8],
    /// The reply, if the attempt got one.
    pub reply: Option<&'a [u8]>,
    /// Our end of the upstream socket, if it was opened.
    pub local: Option<SocketAddr>,
    /// The upstream.
    pub upstream: SocketAddr,
    /// Over TCP (also TLS and DoH).
    pub tcp: bool,
    /// When *forward* began serving the query.
    pub start: Instant,
}

/// *forward*'s `FORWARDER_QUERY` and (with a reply) `FORWARDER_RESPONSE` to every tap.
pub fn forwarded(taps: &[Tap], ctx: &Ctx<'_>, f: &Forwarded<'_>) {
    let qt = wall(f.start);
    let (mut q, mut r) = (Vec::new(), Vec::new());
    if taps.iter().any(|t| t.full) {
        // CoreDNS packs the request after its ID is restored, and the reply after it
        // gets the client's ID.
        q.extend_from_slice(f.query);
        crate::wire::hdr::set_id(&mut q, ctx.req.id());
        if let Some(reply) = f.reply {
            r.extend_from_slice(reply);
            crate::wire::hdr::set_id(&mut r, ctx.req.id());
        }
    }
    for t in taps {
        let mut m = Message {
            kind: Kind::ForwarderQuery,
            tcp: f.tcp,
            query_addr: f.local,
            response_addr: Some(f.upstream),
            query_time: qt,
            response_time: None,
            query_msg: t.full.then_some(&q[..]),
            response_msg: None,
        };
        t.send(&m, ctx, false);
        if f.reply.is_some() {
            m.kind = Kind::ForwarderResponse;
            m.query_msg = None;
            m.response_msg = t.full.then_some(&r[..]);
            m.response_time = Some(SystemTime::now());
            t.send(&m, ctx, false);
        }
    }
}
