//! One upstream: its shared state (failure count, dial-time average, metrics,
//! TLS, DoH settings), its per-worker connection pool, and the exchange of one
//! query over UDP, TCP, TLS or HTTPS ([`super::doh`]) with CoreDNS's timeouts
//! and Go's error texts.
//!
//! Pool rules (CoreDNS ≥ 1.14.1, plugins.md D): connections are taken from
//! the front and returned to the back (FIFO, so source ports rotate, RFC 5452
//! §9.2), connections idle longer than `expire` or older than `max_age` are
//! closed instead of reused, at most `max_idle_conns` idle ones are kept.
//! Differences: UDP sockets are shared by the queries of a worker (see
//! [`super::udp`]): the oldest socket less than half full takes each query,
//! and a socket is retired (a new random port) after [`ROTATE_AFTER`]
//! queries; idle connections are closed when the pool is next used instead of
//! by a 10 s ticker.
//!
//! CoreDNS: `plugin/pkg/proxy/{proxy,connect,persistent}.go`.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, Ordering};
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::time::Instant;

use super::doh::{DohInfo, DohLocal};
use super::metrics::{self, ConnProto, InFlight, UpstreamMetrics};
use super::setup::{Scheme, UpstreamConfig};
use super::stream::{Pooled, exchange_stream};
use super::udp::{SlotGuard, UdpConn};
use crate::server::bufpool::Buf;
use crate::wire::{HEADER_LEN, Name, NameError, be16, hdr};

/// UDP sockets per upstream per worker (fewer with `max_idle_conns`).
pub const UDP_SOCKETS: usize = 8;
/// A UDP socket is replaced (new random port) after this many queries.
pub const ROTATE_AFTER: u32 = 512;
const MIN_DIAL: Duration = Duration::from_secs(1);
const MAX_DIAL: Duration = Duration::from_secs(30);

/// Why an exchange failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fail {
    /// An I/O or protocol error, with Go's text.
    Io(Arc<str>),
    /// A pooled connection had been closed by the upstream: retry at once.
    CachedClosed,
    /// Too many queries in flight to this upstream on this worker.
    Full,
}

impl Fail {
    /// An I/O failure with `text`.
    pub fn io(text: impl Into<Arc<str>>) -> Self {
        Self::Io(text.into())
    }

    /// The text the *errors* plugin logs.
    pub fn text(&self) -> Arc<str> {
        match self {
            Self::Io(t) => Arc::clone(t),
            Self::CachedClosed => "cached connection was closed by peer".into(),
            Self::Full => "too many queries in flight to this upstream".into(),
        }
    }
}

/// Go's text for a failed socket call: `i/o timeout`, or `OP: strerror`.
pub fn go_op_err(op: &str, e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => "i/o timeout".into(),
        _ => format!("{op}: {}", go_io_err(e)),
    }
}

/// Go's lowercase strerror text.
pub fn go_io_err(e: &io::Error) -> String {
    crate::config::go_err(e)
}

thread_local! {
    static RNG: RefCell<(usize, [u8; 256])> = const { RefCell::new((256, [0; 256])) };
}

/// A random 16-bit message ID from the OS CSPRNG (buffered per thread).
pub fn random_id() -> u16 {
    RNG.with(|r| {
        let mut r = r.borrow_mut();
        if r.0 + 2 > r.1.len() {
            if getrandom::fill(&mut r.1).is_err() {
                return fastrand::u16(..);
            }
            r.0 = 0;
        }
        let i = r.0;
        r.0 += 2;
        u16::from_be_bytes([r.1[i], r.1[i + 1]])
    })
}

/// Health-check settings of an upstream.
#[derive(Debug, Clone)]
pub struct HcOpts {
    /// Interval between failed checks.
    pub interval: Duration,
    /// RD bit.
    pub rd: bool,
    /// Query name.
    pub domain: Name,
    /// Check over TCP (`force_tcp` on a plain upstream).
    pub tcp: bool,
}

/// Pool and timing settings of an upstream.
#[derive(Debug, Clone)]
pub struct PoolOpts {
    /// `expire`.
    pub expire: Duration,
    /// `max_age` (zero: off).
    pub max_age: Duration,
    /// `max_idle_conns` (0: unlimited).
    pub max_idle_conns: usize,
    /// `read_timeout`.
    pub read_timeout: Duration,
    /// `source_address`.
    pub source: Option<IpAddr>,
    /// Health checks.
    pub hc: HcOpts,
}

/// TLS for a `tls://` or `https://` upstream.
pub struct TlsInfo {
    /// Client configuration.
    pub config: Arc<rustls::ClientConfig>,
    /// SNI and verification name.
    pub name: ServerName<'static>,
    /// `tls_servername`, which an `https://` proxy of a DoH upstream is also
    /// verified for (Go's transport clones the upstream's TLS configuration).
    pub stanza_name: Option<ServerName<'static>>,
}

/// An upstream, shared by every worker.
pub struct Upstream {
    /// Configuration.
    pub cfg: UpstreamConfig,
    /// Consecutive failed health checks.
    pub fails: AtomicU32,
    /// A health-check loop runs.
    pub probing: AtomicBool,
    /// The plugin instance is gone (reload, shutdown): stop probing.
    pub stopped: AtomicBool,
    avg_dial_ns: AtomicI64,
    /// Metric series (`to` = the label).
    pub metrics: Arc<UpstreamMetrics>,
    /// Pool settings.
    pub opts: PoolOpts,
    /// TLS, for `tls://` and `https://` upstreams.
    pub tls: Option<TlsInfo>,
    /// How queries go out, for `https://` upstreams.
    pub doh: Option<DohInfo>,
}

impl Upstream {
    /// Builds the shared state.
    pub fn new(cfg: UpstreamConfig, opts: PoolOpts, tls: Option<TlsInfo>) -> Self {
        let metrics = metrics::upstream(&cfg.label);
        Self {
            cfg,
            fails: AtomicU32::new(0),
            probing: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            avg_dial_ns: AtomicI64::new((MAX_DIAL / 2).as_nanos() as i64),
            metrics,
            opts,
            tls,
            doh: None,
        }
    }

    /// Makes it a DoH upstream (`tls` must be set).
    pub fn with_doh(mut self, doh: DohInfo) -> Self {
        self.doh = Some(doh);
        self
    }

    /// CoreDNS `Down`: more failed checks than `max_fails` (0: never down).
    pub fn down(&self, max_fails: u32) -> bool {
        max_fails != 0 && self.fails.load(Ordering::Relaxed) > max_fails
    }

    /// The adaptive dial timeout: twice the average dial time in [1 s, 30 s].
    pub fn dial_timeout(&self) -> Duration {
        let avg = self.avg_dial_ns.load(Ordering::Relaxed).max(0) as u64;
        let avg = Duration::from_nanos(avg);
        if avg < MIN_DIAL {
            MIN_DIAL
        } else if avg < MAX_DIAL / 2 {
            avg * 2
        } else {
            MAX_DIAL
        }
    }

    pub(super) fn update_dial(&self, took: Duration) {
        let cur = self.avg_dial_ns.load(Ordering::Relaxed);
        let took = took.as_nanos().min(i64::MAX as u128) as i64;
        self.avg_dial_ns
            .fetch_add((took - cur) / 4, Ordering::Relaxed);
    }

    pub(super) fn conn_proto(&self) -> ConnProto {
        if self.tls.is_some() {
            ConnProto::TcpTls
        } else {
            ConnProto::Tcp
        }
    }
}

/// One worker's connections to one upstream.
#[derive(Default)]
pub struct Local {
    udp: RefCell<VecDeque<Rc<UdpConn>>>,
    pub(super) tcp: RefCell<VecDeque<Pooled>>,
    /// Queries in flight: UDP (retired sockets included), and TCP/TLS exchanges and
    /// DoH queries (`streams`); read by scrapes.
    pub(super) in_flight: Arc<InFlight>,
    /// DoH connections.
    pub(super) doh: DohLocal,
    /// Our end of the socket the last exchange used (`None`: it failed before one
    /// was chosen), for *dnstap*; set after the exchange's last wait, so the caller
    /// reads its own.
    pub(super) tap_laddr: std::cell::Cell<Option<SocketAddr>>,
}

impl Local {
    /// A worker's pool for `up`, its in-flight counts part of `up`'s series.
    pub fn new(up: &Upstream) -> Self {
        let proto = if up.doh.is_some() {
            "https"
        } else {
            up.conn_proto().as_str()
        };
        Self {
            in_flight: up.metrics.in_flight(proto),
            ..Self::default()
        }
    }

    /// Open UDP sockets and idle TCP/TLS connections (tests).
    pub fn counts(&self) -> (usize, usize) {
        (self.udp.borrow().len(), self.tcp.borrow().len())
    }

    /// UDP queries and stream exchanges in flight (tests).
    pub fn in_flight(&self) -> (usize, usize) {
        (
            self.in_flight.udp.load(Ordering::Relaxed),
            self.in_flight.streams.load(Ordering::Relaxed),
        )
    }
}

/// The transport a query goes out on (TLS upstreams always use TLS, DoH
/// upstreams HTTPS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Net {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
}

/// Sends `q` (its ID is replaced) and returns the reply, with the upstream's ID.
/// `size` is the client's UDP read limit.
pub async fn exchange(
    up: &Upstream,
    local: &Local,
    q: &mut [u8],
    net: Net,
    size: usize,
    now: Instant,
) -> Result<Buf, Fail> {
    // The connection-oriented exchanges (TLS handshakes, HTTP/2) are large
    // state machines: boxed, so a parked UDP query's future — moved into its
    // task and polled on every query — stays small (~9 KB → a few hundred
    // bytes; memcpy was 5 % of the forward path's CPU).
    if up.cfg.scheme == Scheme::Https {
        Box::pin(async {
            let mut laddr = None;
            let r = super::doh::exchange(up, local, q, &mut laddr).await;
            local.tap_laddr.set(laddr);
            r
        })
        .await
        .map(Buf::from)
    } else if up.cfg.scheme == Scheme::Tls || net == Net::Tcp {
        Box::pin(async {
            let mut laddr = None;
            let r = exchange_stream(up, local, q, &mut laddr).await;
            local.tap_laddr.set(laddr);
            r
        })
        .await
        .map(Buf::from)
    } else {
        exchange_udp(up, local, q, size, now).await
    }
}

pub(super) fn expired(up: &Upstream, now: Instant, used: Instant, created: Instant) -> bool {
    now.saturating_duration_since(used) > up.opts.expire
        || (!up.opts.max_age.is_zero() && now.saturating_duration_since(created) > up.opts.max_age)
}

/// The bound on UDP queries in flight per upstream per worker.
pub fn k_max() -> usize {
    UDP_SOCKETS * super::udp::SLOTS_PER_SOCKET
}

fn checkout_udp(up: &Upstream, local: &Local, now: Instant) -> Result<Rc<UdpConn>, Fail> {
    let k = match up.opts.max_idle_conns {
        0 => UDP_SOCKETS,
        n => n.min(UDP_SOCKETS),
    };
    if local.in_flight.udp.load(Ordering::Relaxed) >= k_max() {
        metrics::PENDING_FULL.fetch_add(1, Ordering::Relaxed);
        return Err(Fail::Full);
    }
    let mut pool = local.udp.borrow_mut();
    // Retire: idle too long, too old, used up, or broken. Queries still waiting
    // on a retired socket keep it until they finish.
    pool.retain(|c| {
        !(expired(up, now, c.used(), c.created) || c.assigned() >= ROTATE_AFTER || c.broken())
    });
    // The oldest socket that is less than half full takes the query: under load
    // one socket carries the queries in flight (one receive on the ring serves
    // them all) and its port changes every ROTATE_AFTER queries; another socket
    // opens only when those open are half full, up to k.
    let roomy = |c: &Rc<UdpConn>| c.pending() < super::udp::SLOTS_PER_SOCKET / 2;
    if let Some(c) = pool.iter().find(|c| roomy(c)) {
        up.metrics.hit(ConnProto::Udp);
        return Ok(Rc::clone(c));
    }
    if pool.len() >= k {
        // Every socket is at least half full: any with a free slot, else the
        // bound is reached.
        let free = |c: &&Rc<UdpConn>| c.pending() < super::udp::SLOTS_PER_SOCKET;
        if let Some(c) = pool.iter().find(free) {
            up.metrics.hit(ConnProto::Udp);
            return Ok(Rc::clone(c));
        }
        metrics::PENDING_FULL.fetch_add(1, Ordering::Relaxed);
        return Err(Fail::Full);
    }
    up.metrics.miss(ConnProto::Udp);
    let c = dial_udp(up, &local.in_flight)?;
    pool.push_back(Rc::clone(&c));
    Ok(c)
}

fn unspecified(remote: SocketAddr) -> IpAddr {
    if remote.is_ipv4() {
        IpAddr::from([0u8; 4])
    } else {
        IpAddr::from([0u16; 8])
    }
}

fn dial_udp(up: &Upstream, inflight: &Arc<InFlight>) -> Result<Rc<UdpConn>, Fail> {
    let start = Instant::now();
    let r = up.cfg.addr;
    if let Some(e) = super::stream::family_mismatch("udp", up.opts.source, r) {
        return Err(Fail::io(e));
    }
    let bind = SocketAddr::new(up.opts.source.unwrap_or_else(|| unspecified(r)), 0);
    let dial = super::stream::dial_text("udp", up.opts.source, r);
    let sock = std::net::UdpSocket::bind(bind).map_err(|e| {
        let op = if up.opts.source.is_some() {
            "bind"
        } else {
            "socket"
        };
        Fail::io(format!("{dial}: {}", go_op_err(op, &e)))
    })?;
    let dial_err = |e: io::Error| Fail::io(format!("{dial}: {}", go_op_err("connect", &e)));
    sock.connect(r).map_err(dial_err)?;
    let local = sock.local_addr().map_err(dial_err)?;
    let conn = UdpConn::open(sock, local, r, Arc::clone(inflight)).map_err(dial_err)?;
    up.update_dial(start.elapsed());
    Ok(conn)
}

async fn exchange_udp(
    up: &Upstream,
    local: &Local,
    q: &mut [u8],
    size: usize,
    now: Instant,
) -> Result<Buf, Fail> {
    // The caller's clock reading serves the pool's expiry, the socket's last use and the
    // timeout.
    let conn = match checkout_udp(up, local, now) {
        Ok(c) => c,
        Err(e) => {
            local.tap_laddr.set(None);
            return Err(e);
        }
    };
    // A datagram the kernel cannot send (a TCP client's long query under
    // `prefer_udp`) fails here with the kernel's error, as Go's write does: sent,
    // its error would fail every query waiting on the socket.
    let limit = if conn.remote.is_ipv4() {
        65_507
    } else {
        65_527
    };
    if q.len() > limit {
        local.tap_laddr.set(Some(conn.local));
        return Err(Fail::io(format!(
            "write udp {}->{}: write: message too long",
            conn.local, conn.remote
        )));
    }
    let deadline = now + up.opts.read_timeout;
    let Some((key, id)) = conn.register(size, now, deadline) else {
        metrics::PENDING_FULL.fetch_add(1, Ordering::Relaxed);
        // Refused before the socket is used: no query address.
        local.tap_laddr.set(None);
        return Err(Fail::Full);
    };
    let _slot = SlotGuard { conn: &conn, key };
    hdr::set_id(q, id);
    // On an epoll socket loop the query leaves with the run's other queries.
    let sent = if conn.queue_send(key, q) {
        Ok(())
    } else {
        conn.send(q).await
    };
    // The query fails at its deadline (see `UdpConn::wait`).
    let r = match sent {
        Ok(()) => conn.wait(key).await,
        Err(e) => Err(e),
    };
    local.tap_laddr.set(Some(conn.local));
    r
}

/// Why a reply did not unpack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// It ran past its end, with miekg's text (an overflow or `ErrBuf`): over UDP
    /// CoreDNS answers such a reply with an empty one with TC set.
    Overflow(&'static str),
    /// Another error, with miekg's text.
    Bad(&'static str),
}

impl Malformed {
    /// miekg's error text.
    pub fn text(self) -> &'static str {
        match self {
            Self::Overflow(t) | Self::Bad(t) => t,
        }
    }
}

const OVERFLOW_U16: Malformed = Malformed::Overflow("dns: overflow unpacking uint16");
const OVERFLOW_U32: Malformed = Malformed::Overflow("dns: overflow unpacking uint32");

fn name_err(e: NameError) -> Malformed {
    match e {
        NameError::Truncated => Malformed::Overflow("dns: buffer size too small"),
        NameError::PointerLoop => Malformed::Bad("dns: too many compression pointers"),
        NameError::TooLong => Malformed::Bad("dns: domain name exceeded 255 wire-format octets"),
        NameError::BadLabel => Malformed::Bad("dns: bad rdata"),
    }
}

/// A question name that does not unpack: miekg wraps the error (`bad question
/// name: %w`), so CoreDNS does not take it for a cut reply (the wrapped error is
/// no `*dns.Error` and does not say "overflow"): the attempt fails.
fn question_name_err(e: NameError) -> Malformed {
    Malformed::Bad(match e {
        NameError::Truncated => "bad question name: dns: buffer size too small",
        NameError::PointerLoop => "bad question name: dns: too many compression pointers",
        NameError::TooLong => "bad question name: dns: domain name exceeded 255 wire-format octets",
        NameError::BadLabel => "bad question name: dns: bad rdata",
    })
}

/// What a reply that unpacks holds, as miekg reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unpacked {
    /// The offset past the first question, if there is one.
    pub first_question: Option<usize>,
    /// The offset past the last record read; bytes after it are ignored.
    pub end: usize,
    /// Questions and records each section really holds.
    pub counts: [u16; 4],
    /// Bytes missing from a question the message ends in (its type and class, or its
    /// class): miekg reads them as 0 and CoreDNS packs them so.
    pub pad: usize,
}

impl Unpacked {
    /// Whether the reply must be cut to [`Self::end`] and given [`Self::counts`]: CoreDNS
    /// packs the message it read again, so counts the records do not fill are corrected
    /// and trailing bytes dropped.
    pub fn needs_fixing(&self, m: &[u8]) -> bool {
        self.end != m.len() || self.pad > 0 || self.counts != hdr::counts(m)
    }

    /// Cuts `m` to what was read, completes a cut question and writes the counts found
    /// (nothing to do for a well-formed reply).
    pub fn fix(&self, m: &mut Vec<u8>) {
        if !self.needs_fixing(m) {
            return;
        }
        m.truncate(self.end);
        m.resize(self.end + self.pad, 0);
        for (s, &n) in self.counts.iter().enumerate() {
            hdr::set_count(m, s, n);
        }
    }
}

/// Checks that `m` unpacks as miekg's `Msg.Unpack` does it: a header alone is a
/// message (resolvers answer REFUSED so); a question may end after its name or its
/// type at the end of the message; a record count the message ends before is a lie
/// and stops the reading (that section and the later ones hold what was read);
/// record data is not parsed.
pub fn unpack(m: &[u8]) -> Result<Unpacked, Malformed> {
    if m.len() < HEADER_LEN {
        // miekg's unpackMsgHdr names the field it could not read.
        const FIELDS: [&str; 6] = [
            "bad header id: dns: overflow unpacking uint16",
            "bad header bits: dns: overflow unpacking uint16",
            "bad header question count: dns: overflow unpacking uint16",
            "bad header answer count: dns: overflow unpacking uint16",
            "bad header ns count: dns: overflow unpacking uint16",
            "bad header extra count: dns: overflow unpacking uint16",
        ];
        let field = FIELDS.get(m.len() / 2).copied().unwrap_or(FIELDS[5]);
        return Err(Malformed::Overflow(field));
    }
    let want = hdr::counts(m);
    let mut out = Unpacked {
        first_question: None,
        end: HEADER_LEN,
        counts: [0; 4],
        pad: 0,
    };
    if m.len() == HEADER_LEN {
        return Ok(out);
    }
    let len = m.len();
    let mut pos = HEADER_LEN;
    for _ in 0..want[0] {
        let (mut p, _) = Name::scan(m, pos).map_err(question_name_err)?;
        // Type, then class, each unless the message ends first.
        for i in 0..2 {
            if p == len {
                out.pad = 4 - 2 * i;
                break;
            }
            if p + 2 > len {
                // miekg wraps the error; "overflow" in its text still means a cut reply.
                return Err(Malformed::Overflow(if i == 0 {
                    "bad question qtype: dns: overflow unpacking uint16"
                } else {
                    "bad question qclass: dns: overflow unpacking uint16"
                }));
            }
            p += 2;
        }
        pos = p;
        out.counts[0] += 1;
        out.first_question.get_or_insert(pos);
    }
    for (s, &n) in want.iter().enumerate().skip(1) {
        for _ in 0..n {
            if pos == len {
                break;
            }
            let (p, _) = Name::scan(m, pos).map_err(name_err)?;
            // Type and class (16 bits each), TTL (32), RDLENGTH (16).
            if p + 4 > len {
                return Err(OVERFLOW_U16);
            }
            if p + 8 > len {
                return Err(OVERFLOW_U32);
            }
            if p + 10 > len {
                return Err(OVERFLOW_U16);
            }
            let end = p + 10 + usize::from(be16(m, p + 8));
            if end > len {
                return Err(Malformed::Overflow("dns: overflowing header size"));
            }
            pos = end;
            out.counts[s] += 1;
        }
    }
    out.end = pos;
    Ok(out)
}

/// A UDP reply with the right ID: itself, an empty reply with TC set when it
/// was cut short (CoreDNS `truncateResponse`), or an error.
pub fn check_udp_reply(m: &[u8]) -> Result<Buf, Fail> {
    match unpack(m) {
        Ok(u) if u.needs_fixing(m) => {
            let mut out = crate::server::bufpool::copy_of(&m[..u.end]);
            u.fix(&mut out);
            Ok(out)
        }
        Ok(_) => Ok(crate::server::bufpool::copy_of(m)),
        // Not even a header (the socket loops drop such datagrams before this).
        Err(Malformed::Overflow(t)) if m.len() < HEADER_LEN => Err(Fail::io(t)),
        Err(Malformed::Overflow(_)) => {
            let mut out = crate::server::bufpool::copy_of(&m[..HEADER_LEN]);
            let f = hdr::flags(&out) | crate::wire::flags::TC;
            hdr::set_flags(&mut out, f);
            // Keep the question when it unpacks, drop every record.
            let qd = match Name::read(m, HEADER_LEN) {
                Ok((_, p)) if hdr::counts(m)[0] >= 1 && p + 4 <= m.len() => {
                    out.extend_from_slice(&m[HEADER_LEN..p + 4]);
                    1
                }
                _ => 0,
            };
            hdr::set_count(&mut out, 0, qd);
            for s in 1..4 {
                hdr::set_count(&mut out, s, 0);
            }
            Ok(out)
        }
        Err(Malformed::Bad(t)) => Err(Fail::io(t)),
    }
}
