//! *proxyproto*: PROXY protocol v1/v2 headers in front of the block's queries, so
//! that plugins see the client a load balancer forwarded (plugins.md A, proxyproto).
//!
//! UDP: every datagram may start with a v2 header (CoreDNS's `PacketConn`); with
//! `udp_session_tracking`, a header-only datagram names the client for the
//! headerless ones that follow from the same address (Cloudflare Spectrum). TCP,
//! DoT, DoH and gRPC: the connection may start with a v1 or v2 header
//! (go-proxyproto's `Listener`).
//!
//! CoreDNS: `plugin/proxyproto/setup.go`, `plugin/pkg/proxyproto`; the header format
//! and its error texts are go-proxyproto v0.15.0's.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use corefile::{Diagnostic, Dispenser};

use crate::config::SetupCtx;

/// go-proxyproto's policies (`REQUIRE` is not reachable from a Corefile).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Read the header and use its addresses.
    Use,
    /// Read the header and drop it.
    Ignore,
    /// A header closes the connection (drops the datagram).
    Reject,
    /// No header processing: the bytes are the client's.
    Skip,
}

/// A CIDR as Go's `net.ParseCIDR` reads it and `IPNet.Contains` tests it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    bits: u32,
}

impl Cidr {
    /// Go `netip.ParsePrefix` (expr-lang's `incidr`): decimal prefix lengths without
    /// a sign or leading zeros; the error is `net.ParseCIDR`'s text.
    pub fn parse(s: &str) -> Result<Self, String> {
        Self::parse_as(s, false)
    }

    /// Go `net.ParseCIDR`, whose prefix length may have leading zeros.
    pub fn parse_net(s: &str) -> Result<Self, String> {
        Self::parse_as(s, true)
    }

    fn parse_as(s: &str, leading_zeros: bool) -> Result<Self, String> {
        let bad = || format!("invalid CIDR address: {s}");
        let (net, bits) = s.split_once('/').ok_or_else(bad)?;
        if bits.is_empty()
            || !bits.bytes().all(|b| b.is_ascii_digit())
            || (!leading_zeros && (bits.len() > 3 || (bits.len() > 1 && bits.starts_with('0'))))
        {
            return Err(bad());
        }
        let digits = bits.trim_start_matches('0');
        let bits: u32 = if digits.is_empty() {
            0
        } else if digits.len() > 3 {
            return Err(bad());
        } else {
            digits.parse().map_err(|_| bad())?
        };
        let net: IpAddr = net.parse().map_err(|_| bad())?;
        if bits > if net.is_ipv4() { 32 } else { 128 } {
            return Err(bad());
        }
        Ok(Self { net, bits })
    }

    /// Go `IPNet.Contains`: an IPv4 address is compared with a v4-mapped network on its
    /// last 32 bits, and with any other IPv6 network never.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let (a, n, width, bits) = match (ip, self.net) {
            (IpAddr::V4(a), IpAddr::V4(n)) => (
                u128::from(u32::from(a)),
                u128::from(u32::from(n)),
                32,
                self.bits,
            ),
            (IpAddr::V6(a), IpAddr::V6(n)) => (u128::from(a), u128::from(n), 128, self.bits),
            (IpAddr::V4(a), IpAddr::V6(n)) => match n.to_ipv4_mapped() {
                Some(n4) if self.bits >= 96 => (
                    u128::from(u32::from(a)),
                    u128::from(u32::from(n4)),
                    32,
                    self.bits - 96,
                ),
                _ => return false,
            },
            (IpAddr::V6(_), IpAddr::V4(_)) => return false,
        };
        let mask = if bits == 0 {
            0
        } else {
            u128::MAX << (width - bits)
        } & (u128::MAX >> (128 - width));
        a & mask == n & mask
    }
}

/// CoreDNS's `udpSessionMaxEntries`.
pub const DEFAULT_MAX_SESSIONS: usize = 10_240;

/// The plugin's configuration and, with `udp_session_tracking`, its sessions.
#[derive(Debug)]
pub struct ProxyProto {
    allow: Vec<Cidr>,
    default: Option<Policy>,
    sessions: Option<Sessions>,
}

/// Setup (CoreDNS `setup`). A second *proxyproto* in a block adds to the first's
/// `allow` list and replaces what else it sets, as CoreDNS's one setup call reads both.
pub fn setup(d: &mut Dispenser, ctx: &mut SetupCtx<'_>) -> Result<(), Diagnostic> {
    let w = |e: Diagnostic| e.in_plugin("proxyproto");
    let mut allow = Vec::new();
    let mut default = None;
    let mut ttl = Duration::ZERO;
    let mut max = 0usize;
    while d.next() {
        if !d.remaining_args().is_empty() {
            return Err(w(d.arg_err()));
        }
        while d.next_block() {
            match d.val() {
                "allow" => {
                    for v in d.remaining_args() {
                        let c = Cidr::parse_net(&v)
                            .map_err(|e| w(Diagnostic::plain(format!("{v}: {e}"))))?;
                        allow.push(c);
                    }
                }
                "default" => {
                    let v = d.remaining_args();
                    if v.len() != 1 {
                        return Err(w(d.arg_err()));
                    }
                    default = Some(match v[0].to_ascii_lowercase().as_str() {
                        "use" => Policy::Use,
                        "ignore" => Policy::Ignore,
                        "reject" => Policy::Reject,
                        "skip" => Policy::Skip,
                        _ => return Err(w(d.arg_err())),
                    });
                }
                "udp_session_tracking" => {
                    let v = d.remaining_args();
                    if v.is_empty() || v.len() > 2 {
                        return Err(w(d.arg_err()));
                    }
                    let n = corefile::values::parse_go_duration_nanos(&v[0]).map_err(|e| {
                        w(Diagnostic::plain(format!(
                            "udp_session_tracking: invalid duration \"{}\": {e}",
                            v[0]
                        )))
                    })?;
                    ttl = u64::try_from(n).map_or(Duration::ZERO, Duration::from_nanos);
                    if let Some(m) = v.get(1) {
                        match corefile::values::strconv_atoi(m) {
                            Ok(n) if n > 0 => max = usize::try_from(n).unwrap_or(usize::MAX),
                            _ => {
                                return Err(w(Diagnostic::plain(format!(
                                    "udp_session_tracking: invalid max sessions \"{m}\": must be a positive integer"
                                ))));
                            }
                        }
                    }
                }
                other => return Err(d.err(format!("unknown option '{other}'"))),
            }
        }
    }
    // quic-go's listener reads the header from each QUIC datagram; ringdns's DoQ
    // and DoH3 listeners have no such reader yet.
    for scheme in ["quic", "https3"] {
        if ctx
            .keys
            .iter()
            .any(|k| k.starts_with(&format!("{scheme}://")))
        {
            return Err(w(Diagnostic::plain(format!(
                "PROXY protocol on {scheme}:// listeners is not supported by ringdns yet"
            ))));
        }
    }
    let sessions = (!ttl.is_zero()).then_some((ttl, max));
    ctx.settings.proxyproto = Some(Arc::new(ProxyProto::new(allow, default, sessions)));
    Ok(())
}

/// What to do with a datagram ([`ProxyProto::udp`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Datagram {
    /// Serve `data[skip..]` as from `client`.
    Serve {
        /// Header octets to skip.
        skip: usize,
        /// The client the plugins see.
        client: SocketAddr,
    },
    /// Drop it; with a reason, CoreDNS logs a warning.
    Drop(Option<String>),
}

impl ProxyProto {
    /// The configuration: `allow`, `default`, and `udp_session_tracking`'s duration
    /// and maximum (0: CoreDNS's default).
    pub fn new(
        allow: Vec<Cidr>,
        default: Option<Policy>,
        session: Option<(Duration, usize)>,
    ) -> Self {
        Self {
            allow,
            default,
            sessions: session.map(|(t, m)| Sessions::new(t, m)),
        }
    }

    /// CoreDNS's `ConnPolicy` for a connection or datagram from `ip`.
    pub fn policy(&self, ip: IpAddr) -> Policy {
        if self.allow.is_empty() {
            return self.default.unwrap_or(Policy::Use);
        }
        if self.allow.iter().any(|c| c.contains(ip)) {
            return Policy::Use;
        }
        self.default.unwrap_or(Policy::Ignore)
    }

    /// CoreDNS's `PacketConn.readFrom` for a datagram from `peer`.
    pub fn udp(&self, data: &[u8], peer: SocketAddr) -> Datagram {
        let policy = self.policy(peer.ip());
        let pass = Datagram::Serve {
            skip: 0,
            client: peer,
        };
        if policy == Policy::Skip {
            return pass;
        }
        let header = match parse(data, true) {
            Parsed::None | Parsed::Need => None,
            Parsed::Err(e) => {
                return Datagram::Drop(Some(format!(
                    "parsing Proxy Protocol header (packet size: {}): {e}",
                    data.len()
                )));
            }
            Parsed::Header(h) => {
                if h.version != 2 {
                    return Datagram::Drop(Some(format!(
                        "unsupported Proxy Protocol version {} (only v2 supported for UDP)",
                        h.version
                    )));
                }
                if !matches!(h.family, UDP4 | UDP6) {
                    return Datagram::Drop(Some(format!(
                        "PROXY Protocol header is not UDP type (transport protocol: 0x{:x})",
                        h.family
                    )));
                }
                Some(h)
            }
        };
        match (policy, header) {
            (Policy::Reject, Some(_)) => Datagram::Drop(Some(
                "connection rejected by Proxy Protocol connection policy".to_owned(),
            )),
            (Policy::Use, Some(h)) => {
                // A v4-mapped source reads as IPv4, as Go prints and matches it.
                let client = h.src.map_or(peer, crate::server::canonical);
                if let Some(s) = &self.sessions {
                    s.store(peer, client);
                    if h.len == data.len() {
                        // Spectrum's session start: nothing to answer.
                        return Datagram::Drop(None);
                    }
                }
                Datagram::Serve {
                    skip: h.len,
                    client,
                }
            }
            (Policy::Use, None) => Datagram::Serve {
                skip: 0,
                client: self
                    .sessions
                    .as_ref()
                    .and_then(|s| s.lookup(peer))
                    .unwrap_or(peer),
            },
            (_, Some(h)) => Datagram::Serve {
                skip: h.len,
                client: peer,
            },
            (_, None) => pass,
        }
    }

    /// go-proxyproto's `Listener`: reads the header a connection from `peer` may begin
    /// with (consuming exactly its octets) and returns the client and local addresses
    /// the plugins see. `Err` closes the connection: a malformed header, one the policy
    /// rejects, or none complete within `wait`.
    pub async fn tcp(
        &self,
        stream: &mut tokio::net::TcpStream,
        peer: SocketAddr,
        local: SocketAddr,
        wait: Duration,
    ) -> Result<(SocketAddr, SocketAddr), ()> {
        let policy = self.policy(peer.ip());
        if policy == Policy::Skip {
            return Ok((peer, local));
        }
        let header = tokio::time::timeout(wait, read_tcp_header(stream))
            .await
            .map_err(|_| ())??;
        match (policy, header) {
            (_, None) => Ok((peer, local)),
            (Policy::Reject, Some(_)) => Err(()),
            (Policy::Use, Some(h)) if !h.local && h.family & 0xF0 != 0x30 => Ok((
                h.src.map_or(peer, crate::server::canonical),
                h.dst.map_or(local, crate::server::canonical),
            )),
            (_, Some(_)) => Ok((peer, local)),
        }
    }
}

/// A datagram from `peer` as the chain sees it, with *proxyproto* configured on its
/// listener: its payload and client, or `None` to drop it (CoreDNS logs why, when it
/// was malformed or rejected).
#[inline]
pub fn datagram<'a>(
    pp: Option<&ProxyProto>,
    data: &'a [u8],
    peer: SocketAddr,
) -> Option<(&'a [u8], SocketAddr)> {
    let Some(pp) = pp else {
        return Some((data, peer));
    };
    match pp.udp(data, peer) {
        Datagram::Serve { skip, client } => Some((data.get(skip..).unwrap_or_default(), client)),
        Datagram::Drop(why) => {
            if let Some(why) = why {
                crate::clog::log(
                    crate::clog::Level::Warning,
                    None,
                    &format!("dropping invalid Proxy Protocol packet from {peer}: {why}"),
                );
            }
            None
        }
    }
}

/// Reads a header from the start of `stream` without taking any octet after it: the
/// octets are peeked until they decide, then the header's own are read.
async fn read_tcp_header(stream: &mut tokio::net::TcpStream) -> Result<Option<Header>, ()> {
    use tokio::io::AsyncReadExt;
    // Room for the longest v2 header.
    let mut buf = vec![0u8; 16 + MAX_V2];
    let mut seen = 0usize;
    // Between peeks that found nothing new: 1 ms, doubling to 64 ms (a client that
    // sends half a signature and stops costs a few dozen wake-ups, not one a
    // millisecond, until the caller's timeout).
    let mut pause = Duration::from_millis(1);
    loop {
        let n = stream.peek(&mut buf).await.map_err(|_| ())?;
        if n == 0 {
            // Closed before anything came: no header (the DNS read sees the end).
            return Ok(None);
        }
        match parse(&buf[..n], false) {
            Parsed::None => return Ok(None),
            Parsed::Err(_) => return Err(()),
            Parsed::Header(h) => {
                // Its octets were peeked (h.len ≤ n): take exactly those.
                stream.read_exact(&mut buf[..h.len]).await.map_err(|_| ())?;
                return Ok(Some(h));
            }
            // The buffer holds the longest header, so it is never full here.
            Parsed::Need => {
                // Peeking returns at once while any octet waits: let more arrive.
                if n == seen {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(64));
                } else {
                    pause = Duration::from_millis(1);
                }
                seen = n;
            }
        }
    }
}

const SIG_V1: &[u8] = b"PROXY";
const SIG_V2: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";
const LOCAL: u8 = 0x20;
const PROXY: u8 = 0x21;
const UDP4: u8 = 0x12;
const UDP6: u8 = 0x22;
/// go-proxyproto's `MaxV2HeaderSize`.
const MAX_V2: usize = 4096;

/// A header read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Its length in octets.
    pub len: usize,
    /// 1 or 2.
    pub version: u8,
    /// The `LOCAL` command (v1: `UNKNOWN`).
    pub local: bool,
    /// v2's address family and protocol octet (v1: TCP4 0x11, TCP6 0x21, UNKNOWN 0).
    pub family: u8,
    /// Source address (IPv4 and IPv6 families).
    pub src: Option<SocketAddr>,
    /// Destination address.
    pub dst: Option<SocketAddr>,
}

/// What the octets at hand say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// No PROXY signature: the octets are the client's.
    None,
    /// More octets are needed to decide (only when not `complete`).
    Need,
    /// A header.
    Header(Header),
    /// A malformed header (go-proxyproto's error text).
    Err(String),
}

/// go-proxyproto's `Read` over `b`. `complete`: no more octets follow (a datagram);
/// running out of them is then Go's end-of-file error; otherwise [`Parsed::Need`].
pub fn parse(b: &[u8], complete: bool) -> Parsed {
    // Too few octets to decide: Go's peek meets the end of a datagram (no header).
    let short = || {
        if complete { Parsed::None } else { Parsed::Need }
    };
    let Some(&first) = b.first() else {
        return short();
    };
    if first != SIG_V1[0] && first != SIG_V2[0] {
        return Parsed::None;
    }
    if b.len() < 5 {
        return short();
    }
    if &b[..5] == SIG_V1 {
        return parse_v1(b);
    }
    if b.len() < 12 {
        // A prefix that can still become the v2 signature waits for it.
        return if complete || !SIG_V2.starts_with(b) {
            Parsed::None
        } else {
            Parsed::Need
        };
    }
    if &b[..12] != SIG_V2 {
        return Parsed::None;
    }
    parse_v2(b, complete)
}

fn err(s: &str) -> Parsed {
    Parsed::Err(format!("proxyproto: {s}"))
}

/// Go's `strconv.ParseUint(s, 10, 16)` error, as go-proxyproto wraps it.
fn v1_port(s: &str) -> Result<u16, Parsed> {
    if s.len() > 1 && s.starts_with('0') {
        return Err(err("invalid port number"));
    }
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return Err(err(&format!(
            "invalid port number: strconv.ParseUint: parsing \"{s}\": invalid syntax"
        )));
    }
    s.parse::<u16>().map_err(|_| {
        err(&format!(
            "invalid port number: strconv.ParseUint: parsing \"{s}\": value out of range"
        ))
    })
}

fn v1_ip(tcp6: bool, s: &str) -> Result<IpAddr, Parsed> {
    // Go's netip.ParseAddr: no zone allowed here; TCP4 takes IPv4 only, TCP6 IPv6
    // (a v4-mapped one included).
    if s.contains('%') {
        return Err(err("invalid address"));
    }
    let ip: IpAddr = s.parse().map_err(|_| {
        err(&format!(
            "invalid address: ParseAddr(\"{s}\"): unable to parse IP"
        ))
    })?;
    match (tcp6, ip) {
        (false, IpAddr::V4(_)) | (true, IpAddr::V6(_)) => Ok(ip),
        _ => Err(err("invalid address")),
    }
}

fn parse_v1(b: &[u8]) -> Parsed {
    // The line must be within the octets at hand (go-proxyproto stops at its
    // buffer's end) and at most 107 octets.
    let mut end = None;
    for (i, &c) in b.iter().enumerate() {
        if c == b'\n' {
            end = Some(i + 1);
            break;
        }
        if i + 1 == 107 {
            return err("version 1 header must be 107 bytes or less");
        }
    }
    let Some(end) = end else {
        return err("can't read version 1 header");
    };
    let line = &b[..end];
    if line.len() < 2 || line[line.len() - 2] != b'\r' {
        return err("version 1 header is invalid, must end with \\r\\n");
    }
    let text = String::from_utf8_lossy(&line[..line.len() - 2]);
    let tokens: Vec<&str> = text.split(' ').collect();
    if tokens[0] != "PROXY" {
        return err("can't read version 1 header");
    }
    let afp = || err("can't read address family or protocol");
    if tokens.len() < 2 {
        return afp();
    }
    let (family, tcp6) = match tokens[1] {
        "TCP4" => (0x11, false),
        "TCP6" => (0x21, true),
        "UNKNOWN" => {
            return Parsed::Header(Header {
                len: end,
                version: 1,
                local: true,
                family: 0,
                src: None,
                dst: None,
            });
        }
        _ => return afp(),
    };
    if tokens.len() != 6 {
        return afp();
    }
    let addrs = (|| {
        let s = v1_ip(tcp6, tokens[2])?;
        let d = v1_ip(tcp6, tokens[3])?;
        let sp = v1_port(tokens[4])?;
        let dp = v1_port(tokens[5])?;
        Ok((SocketAddr::new(s, sp), SocketAddr::new(d, dp)))
    })();
    match addrs {
        Ok((s, d)) => Parsed::Header(Header {
            len: end,
            version: 1,
            local: false,
            family,
            src: Some(s),
            dst: Some(d),
        }),
        Err(e) => e,
    }
}

fn parse_v2(b: &[u8], complete: bool) -> Parsed {
    let need = |text: &str| if complete { err(text) } else { Parsed::Need };
    let Some(&cmd) = b.get(12) else {
        return need("can't read proxy protocol version and command: EOF");
    };
    if cmd != LOCAL && cmd != PROXY {
        return err("unsupported proxy protocol version and command");
    }
    let Some(&family) = b.get(13) else {
        return need("can't read address family or protocol: EOF");
    };
    if ![0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32].contains(&family) {
        return err("unsupported address family and protocol");
    }
    if family == 0 && cmd != LOCAL {
        return err("unsupported address family and protocol");
    }
    let length = match b.len() {
        14 => return need("can't read length: EOF"),
        15 => return need("can't read length: unexpected EOF"),
        _ => usize::from(u16::from_be_bytes([b[14], b[15]])),
    };
    let addr_len = match family >> 4 {
        1 => 12,
        2 => 36,
        3 => 216,
        _ => 0,
    };
    let body = &b[16..];
    let header = |family: u8, src: Option<SocketAddr>, dst: Option<SocketAddr>| {
        Parsed::Header(Header {
            len: 16 + length,
            version: 2,
            local: cmd == LOCAL,
            family,
            src,
            dst,
        })
    };
    if length < addr_len {
        if cmd != LOCAL || length > MAX_V2 {
            return err("invalid length");
        }
        if body.len() < length {
            return need("invalid length: EOF");
        }
        return header(0, None, None);
    }
    if length == 0 {
        return header(family, None, None);
    }
    if length > MAX_V2 {
        return err("invalid length");
    }
    if body.len() < addr_len {
        return if !complete {
            Parsed::Need
        } else if body.is_empty() {
            err("invalid address: EOF")
        } else {
            err("invalid address: unexpected EOF")
        };
    }
    if body.len() < length {
        return if !complete {
            Parsed::Need
        } else if body.len() == addr_len {
            err("invalid length")
        } else {
            Parsed::Err("unexpected EOF".to_owned())
        };
    }
    let (src, dst) = match family >> 4 {
        1 => {
            let ip = |o: usize| {
                IpAddr::V4(Ipv4Addr::new(
                    body[o],
                    body[o + 1],
                    body[o + 2],
                    body[o + 3],
                ))
            };
            let port = |o: usize| u16::from_be_bytes([body[o], body[o + 1]]);
            (
                Some(SocketAddr::new(ip(0), port(8))),
                Some(SocketAddr::new(ip(4), port(10))),
            )
        }
        2 => {
            let ip = |o: usize| {
                let mut a = [0u8; 16];
                a.copy_from_slice(&body[o..o + 16]);
                IpAddr::V6(Ipv6Addr::from(a))
            };
            let port = |o: usize| u16::from_be_bytes([body[o], body[o + 1]]);
            (
                Some(SocketAddr::new(ip(0), port(32))),
                Some(SocketAddr::new(ip(16), port(34))),
            )
        }
        _ => (None, None),
    };
    header(family, src, dst)
}

/// `udp_session_tracking`: the client each remote address last named in a header,
/// for `ttl` after its last use, the `cap` most recently used kept (CoreDNS's
/// expirable LRU).
#[derive(Debug)]
struct Sessions {
    ttl: Duration,
    cap: usize,
    inner: Mutex<SessionMap>,
}

#[derive(Debug, Default)]
struct SessionMap {
    /// Remote → (client, expiry, use stamp).
    by_peer: HashMap<SocketAddr, (SocketAddr, Instant, u64)>,
    /// Use stamp → remote, oldest first.
    order: BTreeMap<u64, SocketAddr>,
    stamp: u64,
}

impl Sessions {
    fn new(ttl: Duration, max: usize) -> Self {
        Self {
            ttl,
            cap: if max == 0 { DEFAULT_MAX_SESSIONS } else { max },
            inner: Mutex::new(SessionMap::default()),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, SessionMap> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn store(&self, peer: SocketAddr, client: SocketAddr) {
        self.map()
            .put(peer, client, Instant::now() + self.ttl, self.cap);
    }

    /// The client `peer` named, its session refreshed.
    fn lookup(&self, peer: SocketAddr) -> Option<SocketAddr> {
        let mut m = self.map();
        let (client, expiry, stamp) = *m.by_peer.get(&peer)?;
        let now = Instant::now();
        if expiry <= now {
            m.by_peer.remove(&peer);
            m.order.remove(&stamp);
            return None;
        }
        m.put(peer, client, now + self.ttl, self.cap);
        Some(client)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map().by_peer.len()
    }
}

impl SessionMap {
    /// Adds or refreshes `peer`'s session as the most recently used; beyond `cap`
    /// sessions the least recently used go.
    fn put(&mut self, peer: SocketAddr, client: SocketAddr, expiry: Instant, cap: usize) {
        self.stamp += 1;
        let stamp = self.stamp;
        if let Some((_, _, old)) = self.by_peer.insert(peer, (client, expiry, stamp)) {
            self.order.remove(&old);
        }
        self.order.insert(stamp, peer);
        while self.by_peer.len() > cap {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.by_peer.remove(&oldest);
        }
    }
}

/// The fuzz target's body (panics are bugs): `data` as a stream's start and as a
/// datagram; a header never claims more octets than there are.
pub fn fuzz_one(data: &[u8]) {
    static PP: std::sync::OnceLock<ProxyProto> = std::sync::OnceLock::new();
    for complete in [true, false] {
        if let Parsed::Header(h) = parse(data, complete) {
            assert!(h.len <= data.len(), "header longer than its input");
        }
    }
    let pp =
        PP.get_or_init(|| ProxyProto::new(Vec::new(), None, Some((Duration::from_secs(30), 64))));
    let peer = SocketAddr::from(([127, 0, 0, 1], 5353));
    if let Datagram::Serve { skip, .. } = pp.udp(data, peer) {
        assert!(skip <= data.len(), "skipped past the datagram");
    }
}

#[cfg(test)]
mod tests;
