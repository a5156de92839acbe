//! The proxy of DoH upstreams, as Go's `http.ProxyFromEnvironment` (the default
//! transport CoreDNS's DoH clients copy) takes it from the environment:
//! `HTTPS_PROXY` (else `https_proxy`) names the proxy, `NO_PROXY` (else
//! `no_proxy`) the addresses reached directly, and loopback is never proxied. A
//! proxied connection is a tunnel to the upstream's `IP:port`: an HTTP `CONNECT`
//! through an `http://` proxy, or through TLS to an `https://` proxy
//! (`Proxy-Authorization: Basic` from the URL's user information), or a SOCKS5
//! `CONNECT` through a `socks5://` or `socks5h://` proxy (username/password from
//! the user information); TLS to the upstream then runs inside the tunnel.
//!
//! Go: `net/http/transport.go` (`dialConn`, `addTLS`), `net/http/socks_bundle.go`,
//! `golang.org/x/net/http/httpproxy`.

use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use super::proxy::{Fail, Upstream};

/// A proxy from `HTTPS_PROXY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyUrl {
    /// Lowercased; every scheme but `https`, `socks5` and `socks5h` is dialled
    /// as a plain HTTP `CONNECT` proxy, as Go's transport does.
    pub scheme: String,
    /// Host name or IP (without brackets).
    pub host: String,
    /// Port (the scheme's default when none is written; other schemes have none).
    pub port: Option<u16>,
    /// A port written in digits that is out of range (Go parses the URL and fails
    /// when it dials).
    pub bad_port: Option<String>,
    /// `Proxy-Authorization` value (`Basic …`) from the URL's user information.
    pub auth: Option<String>,
    /// The URL's user name and password, percent-decoded (the password empty when
    /// none is written), for a SOCKS proxy.
    pub user: Option<(Vec<u8>, Vec<u8>)>,
}

/// The proxy settings, read once (Go reads them at first use and keeps them).
#[derive(Debug, Default)]
pub struct ProxyEnv {
    /// The proxy for https requests; `None` when unset, empty or not a URL (Go's
    /// `init` drops the parse error: the client then connects directly).
    pub proxy: Option<ProxyUrl>,
    no_proxy: NoProxy,
}

/// Go `httpproxy.config` matchers from `NO_PROXY`: those that can match an IP.
/// (Its domain entries never match an IP, since Go's fix of CVE-2025-22870, and
/// an upstream here is always an IP.)
#[derive(Debug, Default)]
struct NoProxy {
    all: bool,
    ips: Vec<IpRule>,
}

#[derive(Debug)]
enum IpRule {
    Cidr(IpAddr, u8),
    Ip(IpAddr, String),
}

/// This process's settings.
pub fn env() -> &'static ProxyEnv {
    static ENV: OnceLock<ProxyEnv> = OnceLock::new();
    ENV.get_or_init(|| {
        let get = |names: [&str; 2]| {
            names
                .iter()
                .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
        };
        ProxyEnv::new(
            get(["HTTPS_PROXY", "https_proxy"]).as_deref(),
            get(["NO_PROXY", "no_proxy"]).as_deref().unwrap_or(""),
        )
    })
}

impl ProxyEnv {
    /// Settings from the two variables' values.
    pub fn new(https_proxy: Option<&str>, no_proxy: &str) -> Self {
        Self {
            proxy: https_proxy.and_then(parse_proxy),
            no_proxy: NoProxy::parse(no_proxy),
        }
    }

    /// The proxy for an upstream at `addr`, if one applies.
    pub fn for_addr(&self, addr: SocketAddr) -> Option<&ProxyUrl> {
        let p = self.proxy.as_ref()?;
        self.no_proxy.use_proxy(addr).then_some(p)
    }
}

/// Go `parseProxy`: a URL, else the same with `http://` in front; `None` when
/// neither parses.
fn parse_proxy(s: &str) -> Option<ProxyUrl> {
    parse_url(s).or_else(|| parse_url(&format!("http://{s}")))
}

/// `scheme://[user[:password]@]host[:port][/…]`; `None` without a scheme or host.
fn parse_url(s: &str) -> Option<ProxyUrl> {
    if s.bytes().any(|c| c < 0x20 || c == 0x7f) {
        return None;
    }
    let (scheme, rest) = s.split_once("://")?;
    let first = scheme.chars().next()?;
    if !first.is_ascii_alphabetic()
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    {
        return None;
    }
    let scheme = scheme.to_ascii_lowercase();
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let (user, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (host, port) = split_host_port(hostport)?;
    if host.is_empty() {
        return None;
    }
    // Go `canonicalAddr`: the scheme's port when none (or an empty one) is written.
    let mut bad_port = None;
    let port = match port.filter(|p| !p.is_empty()) {
        Some(p) if !p.bytes().all(|c| c.is_ascii_digit()) => return None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) => Some(n),
            Err(_) => {
                bad_port = Some(p.to_owned());
                None
            }
        },
        None => match scheme.as_str() {
            "http" => Some(80),
            "https" => Some(443),
            "socks5" | "socks5h" => Some(1080),
            _ => None,
        },
    };
    let user = match user {
        None => None,
        Some(u) => {
            let (name, pass) = u.split_once(':').unwrap_or((u, ""));
            Some((
                crate::server::doh::unescape(name, false)?,
                crate::server::doh::unescape(pass, false)?,
            ))
        }
    };
    let auth = user.as_ref().map(|(name, pass)| {
        let mut cred = name.clone();
        cred.push(b':');
        cred.extend_from_slice(pass);
        format!("Basic {}", super::doh::base64(&cred))
    });
    Some(ProxyUrl {
        scheme,
        host: host.to_owned(),
        port,
        bad_port,
        auth,
        user,
    })
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_host_port(s: &str) -> Option<(&str, Option<&str>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        return match after {
            "" => Some((h, None)),
            a => Some((h, Some(a.strip_prefix(':')?))),
        };
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Some((h, Some(p))),
        Some(_) => None,
        None => Some((s, None)),
    }
}

impl NoProxy {
    /// Go `httpproxy.config.init`.
    fn parse(v: &str) -> Self {
        let mut n = Self::default();
        if v == "*" {
            n.all = true;
            return n;
        }
        for p in v.split(',') {
            let p = p.trim().to_ascii_lowercase();
            if p.is_empty() {
                continue;
            }
            if p == "*" {
                return Self {
                    all: true,
                    ..Self::default()
                };
            }
            if let Some((ip, bits)) = p.split_once('/') {
                if let (Ok(ip), Ok(bits)) = (ip.parse::<IpAddr>(), bits.parse::<u8>()) {
                    let max = if ip.is_ipv4() { 32 } else { 128 };
                    if bits <= max {
                        n.ips.push(IpRule::Cidr(ip, bits));
                        continue;
                    }
                }
            }
            // Go `net.SplitHostPort` (a port is required), else the whole entry.
            let (host, port) = match split_host_port(&p) {
                Some(("", Some(_))) => continue,
                Some((h, Some(port))) => (h.to_owned(), port.to_owned()),
                _ => (p.clone(), String::new()),
            };
            if let Ok(ip) = host.parse::<IpAddr>() {
                n.ips.push(IpRule::Ip(ip, port));
            }
        }
        n
    }

    /// Go `useProxy`: false for loopback and for matched addresses.
    fn use_proxy(&self, addr: SocketAddr) -> bool {
        let ip = addr.ip();
        if ip.is_loopback() || ip.to_canonical().is_loopback() {
            return false;
        }
        if self.all {
            return false;
        }
        let port = addr.port().to_string();
        let ip_hit = self.ips.iter().any(|r| match r {
            IpRule::Cidr(net, bits) => in_cidr(ip, *net, *bits),
            IpRule::Ip(rip, p) => same_ip(*rip, ip) && (p.is_empty() || *p == port),
        });
        !ip_hit
    }
}

/// Go `net.IP.Equal`: an IPv4 address equals its IPv4-mapped IPv6 form.
fn same_ip(a: IpAddr, b: IpAddr) -> bool {
    a.to_canonical() == b.to_canonical()
}

/// Go `IPNet.Contains`: an IPv4 network holds IPv4 (and IPv4-mapped) addresses.
fn in_cidr(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (net, ip.to_canonical()) {
        (IpAddr::V4(n), IpAddr::V4(i)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(n) & mask == u32::from(i) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(i)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(n) & mask == u128::from(i) & mask
        }
        _ => false,
    }
}

/// Go's limit on a proxy's response head (`ReadResponse` over a 10 MiB reader).
const MAX_HEAD: usize = 10 << 20;

/// A connection to the upstream through the proxy: plain TCP (`http://` and SOCKS
/// proxies), or TLS to an `https://` proxy carrying the tunnel.
pub enum Tunnel {
    /// Through an `http://` or SOCKS proxy (or no proxy).
    Tcp(TcpStream),
    /// Through an `https://` proxy.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Tunnel {
    /// Our end of the TCP connection (to the upstream or the proxy).
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        match self {
            Self::Tcp(s) => s.local_addr().ok(),
            Self::Tls(s) => s.get_ref().0.local_addr().ok(),
        }
    }
}

impl AsyncRead for Tunnel {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(t) => Pin::new(t).poll_read(cx, buf),
            Self::Tls(t) => Pin::new(t.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Tunnel {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(t) => Pin::new(t).poll_write(cx, buf),
            Self::Tls(t) => Pin::new(t.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(t) => Pin::new(t).poll_flush(cx),
            Self::Tls(t) => Pin::new(t.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(t) => Pin::new(t).poll_shutdown(cx),
            Self::Tls(t) => Pin::new(t.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Go's text for a failed read or write on the proxy connection
/// (`read tcp L->R: …`).
struct OpText {
    local: Option<SocketAddr>,
    remote: Option<SocketAddr>,
}

impl OpText {
    fn of(tcp: &TcpStream) -> Self {
        Self {
            local: tcp.local_addr().ok(),
            remote: tcp.peer_addr().ok(),
        }
    }

    fn err(&self, op: &str, e: &std::io::Error) -> String {
        match (self.local, self.remote) {
            (Some(l), Some(r)) => format!("{op} tcp {l}->{r}: {}", super::proxy::go_op_err(op, e)),
            _ => super::proxy::go_op_err(op, e),
        }
    }

    /// Go `io.ReadFull`: `EOF` when nothing came, `unexpected EOF` when part did.
    async fn read_full<S: AsyncRead + Unpin>(
        &self,
        s: &mut S,
        buf: &mut [u8],
    ) -> Result<(), String> {
        let mut got = 0;
        while got < buf.len() {
            match s.read(&mut buf[got..]).await {
                Ok(0) if got == 0 => return Err("EOF".into()),
                Ok(0) => return Err("unexpected EOF".into()),
                Ok(n) => got += n,
                Err(e) => return Err(self.err("read", &e)),
            }
        }
        Ok(())
    }

    async fn write_all<S: AsyncWrite + Unpin>(&self, s: &mut S, b: &[u8]) -> Result<(), String> {
        s.write_all(b).await.map_err(|e| self.err("write", &e))
    }
}

/// Dials `proxy` (from `source_address` when set) and opens a tunnel through it to
/// the upstream within `limit`, as Go's transport does for each scheme: TLS to an
/// `https://` proxy first (verified as the upstream is, for `tls_servername` when
/// set, else for the proxy's host), then an HTTP `CONNECT`; a SOCKS5 `CONNECT` for
/// `socks5://` and `socks5h://`. Go's texts on failure: `proxyconnect tcp: …` when
/// the proxy cannot be reached or its TLS fails, the status text when an HTTP proxy
/// refuses, `socks connect tcp PROXY->TARGET: …` when a SOCKS proxy does.
pub async fn tunnel(
    up: &Upstream,
    proxy: &ProxyUrl,
    limit: std::time::Duration,
) -> Result<Tunnel, Fail> {
    if let Some(p) = &proxy.bad_port {
        return Err(Fail::io(format!(
            "proxyconnect tcp: dial tcp: address {p}: invalid port"
        )));
    }
    let Some(port) = proxy.port else {
        return Err(Fail::io(format!(
            "proxyconnect tcp: dial tcp: address {}:: missing port in address",
            proxy.host
        )));
    };
    let addrs: Vec<SocketAddr> = match proxy.host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((proxy.host.as_str(), port))
            .await
            .map(Iterator::collect)
            .unwrap_or_default(),
    };
    if addrs.is_empty() {
        return Err(Fail::io(format!(
            "proxyconnect tcp: dial tcp: lookup {}: no such host",
            proxy.host
        )));
    }
    // Each address in turn, as Go's dialer (the first error is the one reported).
    let mut first = None;
    let mut tcp = None;
    for a in addrs {
        match super::stream::dial_tcp_to(up, a, limit, false).await {
            Ok((t, _)) => {
                tcp = Some(t);
                break;
            }
            Err(Fail::Io(t)) => {
                first.get_or_insert(t);
            }
            Err(other) => return Err(other),
        }
    }
    let Some(mut tcp) = tcp else {
        let t = first.unwrap_or_default();
        return Err(Fail::io(format!("proxyconnect tcp: {t}")));
    };
    let op = OpText::of(&tcp);
    match proxy.scheme.as_str() {
        "socks5" | "socks5h" => {
            let target = up.cfg.addr;
            if target.port() == 0 {
                // Go checks the target's port before a byte goes out.
                return Err(Fail::io("socks connect tcp: port number out of range 0"));
            }
            if let Err(e) = socks5(&mut tcp, proxy, target, &op).await {
                // Go `net.OpError` from the SOCKS dialer: the proxy's address as
                // connected, then the target.
                return Err(Fail::io(match op.remote {
                    Some(r) => format!("socks connect tcp {r}->{target}: {e}"),
                    None => format!("socks connect tcp {target}: {e}"),
                }));
            }
            Ok(Tunnel::Tcp(tcp))
        }
        "https" => {
            let Some(t) = &up.tls else {
                return Err(Fail::io("tls: no TLS configuration for an https upstream"));
            };
            // Go clones the transport's TLS configuration for the proxy: its roots and
            // client certificate, `tls_servername` when set, else the proxy's host.
            let name = match &t.stanza_name {
                Some(n) => n.clone(),
                None => ServerName::try_from(proxy.host.clone()).map_err(|_| {
                    Fail::io(format!(
                        "proxyconnect tcp: tls: the proxy's host '{}' is not a DNS name or an IP address, which ringdns's TLS (rustls) needs",
                        proxy.host
                    ))
                })?,
            };
            let mut cfg = (*t.config).clone();
            cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
            let mut tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
                .connect(name, tcp)
                .await
                .map_err(|e| {
                    Fail::io(format!(
                        "proxyconnect tcp: {}",
                        super::tls::handshake_err(&e)
                    ))
                })?;
            connect_head(&mut tls, up, proxy, &op).await?;
            Ok(Tunnel::Tls(Box::new(tls)))
        }
        _ => {
            connect_head(&mut tcp, up, proxy, &op).await?;
            Ok(Tunnel::Tcp(tcp))
        }
    }
}

/// The HTTP `CONNECT` to the upstream's `IP:port` and the proxy's response head.
async fn connect_head<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    up: &Upstream,
    proxy: &ProxyUrl,
    op: &OpText,
) -> Result<(), Fail> {
    let target = up.cfg.addr;
    let mut req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(a) = &proxy.auth {
        req.push_str(&format!("Proxy-Authorization: {a}\r\n"));
    }
    req.push_str("\r\n");
    op.write_all(s, req.as_bytes()).await.map_err(Fail::io)?;
    s.flush().await.map_err(|e| Fail::io(op.err("write", &e)))?;
    // The response head, a byte at a time (nothing past it may be consumed: the
    // upstream's TLS follows in the same stream). Lines end in LF (CR optional);
    // the status line is checked as soon as it is in, as Go's `ReadResponse` does.
    let mut head = Vec::with_capacity(128);
    let mut status_checked = false;
    loop {
        let mut b = [0u8; 1];
        let n = s
            .read(&mut b)
            .await
            .map_err(|e| Fail::io(op.err("read", &e)))?;
        if n == 0 {
            if !status_checked && !head.is_empty() {
                // A partial first line still counts as the status line.
                status_line(&String::from_utf8_lossy(&head)).map_err(Fail::io)?;
            }
            return Err(Fail::io("unexpected EOF"));
        }
        head.push(b[0]);
        if head.len() > MAX_HEAD {
            return Err(Fail::io("unexpected EOF"));
        }
        if b[0] != b'\n' {
            continue;
        }
        if !status_checked {
            let line = String::from_utf8_lossy(&head);
            let line = line.trim_end_matches('\n').trim_end_matches('\r');
            let (code, text) = status_line(line).map_err(Fail::io)?;
            status_checked = true;
            if code != 200 {
                // Go answers with the status text once the head is read; the text
                // is known now.
                return Err(Fail::io(text.unwrap_or("unknown status code")));
            }
            continue;
        }
        if head.ends_with(b"\n\n") || head.ends_with(b"\n\r\n") {
            return Ok(());
        }
    }
}

/// The SOCKS reply codes' texts (Go `socksReply.String`).
fn socks_reply(code: u8) -> String {
    match code {
        0x01 => "general SOCKS server failure".into(),
        0x02 => "connection not allowed by ruleset".into(),
        0x03 => "network unreachable".into(),
        0x04 => "host unreachable".into(),
        0x05 => "connection refused".into(),
        0x06 => "TTL expired".into(),
        0x07 => "command not supported".into(),
        0x08 => "address type not supported".into(),
        c => format!("unknown code: {c}"),
    }
}

/// A SOCKS5 `CONNECT` (RFC 1928) to `target`, as Go's SOCKS dialer makes it: no
/// authentication offered unless the proxy URL has user information, then also
/// username/password (RFC 1929). Returns Go's error text (without the dialer's
/// `socks connect` prefix).
async fn socks5<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    proxy: &ProxyUrl,
    target: SocketAddr,
    op: &OpText,
) -> Result<(), String> {
    const NO_AUTH: u8 = 0x00;
    const USER_PASS: u8 = 0x02;
    let hello: &[u8] = if proxy.user.is_some() {
        &[5, 2, NO_AUTH, USER_PASS]
    } else {
        &[5, 1, NO_AUTH]
    };
    op.write_all(s, hello).await?;
    let mut b = [0u8; 2];
    op.read_full(s, &mut b).await?;
    if b[0] != 5 {
        return Err(format!("unexpected protocol version {}", b[0]));
    }
    if b[1] == 0xff {
        return Err("no acceptable authentication methods".into());
    }
    // Without user information Go authenticates not at all, whatever was chosen.
    if let Some((user, pass)) = &proxy.user {
        match b[1] {
            NO_AUTH => {}
            USER_PASS => {
                // Go (since x/net's internal/socks took empty passwords) checks
                // only the name's presence and both lengths.
                if user.is_empty() || user.len() > 255 || pass.len() > 255 {
                    return Err("invalid username/password".into());
                }
                let mut m = Vec::with_capacity(3 + user.len() + pass.len());
                m.push(1);
                m.push(user.len() as u8);
                m.extend_from_slice(user);
                m.push(pass.len() as u8);
                m.extend_from_slice(pass);
                op.write_all(s, &m).await?;
                op.read_full(s, &mut b).await?;
                if b[0] != 1 {
                    return Err("invalid username/password version".into());
                }
                if b[1] != 0 {
                    return Err("username/password authentication failed".into());
                }
            }
            m => return Err(format!("unsupported authentication method {m}")),
        }
    }
    let mut req = vec![5, 1, 0];
    match target.ip().to_canonical() {
        IpAddr::V4(v4) => {
            req.push(1);
            req.extend_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            req.push(4);
            req.extend_from_slice(&v6.octets());
        }
    }
    req.extend_from_slice(&target.port().to_be_bytes());
    op.write_all(s, &req).await?;
    let mut h = [0u8; 4];
    op.read_full(s, &mut h).await?;
    if h[0] != 5 {
        return Err(format!("unexpected protocol version {}", h[0]));
    }
    if h[1] != 0 {
        return Err(format!("unknown error {}", socks_reply(h[1])));
    }
    if h[2] != 0 {
        return Err("non-zero reserved field".into());
    }
    // The bound address and port, read and ignored.
    let len = match h[3] {
        1 => 2 + 4,
        4 => 2 + 16,
        3 => {
            let mut n = [0u8; 1];
            op.read_full(s, &mut n).await?;
            2 + usize::from(n[0])
        }
        t => return Err(format!("unknown address type {t}")),
    };
    let mut rest = vec![0u8; len];
    op.read_full(s, &mut rest).await
}

/// Go `ReadResponse`'s status line checks: `PROTO CODE[ TEXT]`, a three-digit
/// code, then `HTTP/X.Y`. Returns the code and the text after it.
fn status_line(line: &str) -> Result<(u16, Option<&str>), String> {
    let malformed = || format!("malformed HTTP response {line:?}");
    let (proto, status) = line.split_once(' ').ok_or_else(malformed)?;
    let status = status.trim_start_matches(' ');
    let (code, text) = match status.split_once(' ') {
        Some((c, t)) => (c, Some(t)),
        None => (status, None),
    };
    let n = match code.parse::<u16>() {
        Ok(n) if code.len() == 3 && code.bytes().all(|c| c.is_ascii_digit()) => n,
        _ => return Err(format!("malformed HTTP status code {code:?}")),
    };
    let version = proto
        .strip_prefix("HTTP/")
        .and_then(|v| v.split_once('.'))
        .filter(|(a, b)| {
            !a.is_empty()
                && !b.is_empty()
                && (a.bytes().chain(b.bytes())).all(|c| c.is_ascii_digit())
        });
    if version.is_none() {
        return Err(format!("malformed HTTP version {proto:?}"));
    }
    Ok((n, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("addr")
    }

    #[test]
    fn proxy_urls_as_go_parses_them() {
        let p = |s: &str| parse_proxy(s).map(|u| (u.scheme, u.host, u.port, u.auth));
        assert_eq!(
            p("http://10.0.0.1:3128"),
            Some(("http".into(), "10.0.0.1".into(), Some(3128), None))
        );
        // No scheme: http:// in front (Go's parseProxy).
        assert_eq!(
            p("proxy.example:8080"),
            Some(("http".into(), "proxy.example".into(), Some(8080), None))
        );
        assert_eq!(
            p("10.0.0.1"),
            Some(("http".into(), "10.0.0.1".into(), Some(80), None))
        );
        // An empty port is the scheme's; a scheme without a default has none.
        assert_eq!(p("http://p:").map(|u| u.2), Some(Some(80)));
        assert_eq!(p("squid://p").map(|u| u.2), Some(None));
        assert_eq!(
            p("https://[2001:db8::1]"),
            Some(("https".into(), "2001:db8::1".into(), Some(443), None))
        );
        // Basic credentials, percent-decoded as bytes.
        assert_eq!(
            p("http://user:p%40ss@proxy:3128/"),
            Some((
                "http".into(),
                "proxy".into(),
                Some(3128),
                Some(format!("Basic {}", super::super::doh::base64(b"user:p@ss")))
            ))
        );
        assert_eq!(
            p("http://user:caf%E9@proxy:3128").map(|u| u.3),
            Some(Some(format!(
                "Basic {}",
                super::super::doh::base64(b"user:caf\xe9")
            )))
        );
        assert_eq!(
            p("http://user@proxy:3128").map(|u| u.3),
            Some(Some("Basic dXNlcjo=".into()))
        );
        // Out of range: parsed, failing when dialled (Go's `invalid port`).
        assert_eq!(
            parse_proxy("http://proxy:99999").map(|u| (u.port, u.bad_port)),
            Some((None, Some("99999".into())))
        );
        // A value Go cannot parse (here a control character) means no proxy at all.
        assert!(
            ProxyEnv::new(Some("http://proxy:3128\r"), "")
                .proxy
                .is_none()
        );
    }

    #[test]
    fn no_proxy_as_go_matches_it() {
        let env = |no: &str| ProxyEnv::new(Some("http://10.9.9.9:3128"), no);
        let proxied = |no: &str, a: &str| env(no).for_addr(addr(a)).is_some();
        // Loopback never goes through the proxy.
        assert!(!proxied("", "127.0.0.1:443"));
        assert!(!proxied("", "[::1]:443"));
        assert!(proxied("", "192.0.2.1:443"));
        assert!(!proxied("*", "192.0.2.1:443"));
        assert!(!proxied("a.example, *", "192.0.2.1:443"));
        // IPs, with and without a port; CIDRs.
        assert!(!proxied("192.0.2.1", "192.0.2.1:443"));
        assert!(!proxied("192.0.2.1:443", "192.0.2.1:443"));
        assert!(proxied("192.0.2.1:8443", "192.0.2.1:443"));
        assert!(!proxied("192.0.2.0/24", "192.0.2.1:443"));
        assert!(proxied("192.0.3.0/24", "192.0.2.1:443"));
        assert!(!proxied("2001:db8::/32", "[2001:db8::53]:443"));
        assert!(!proxied("[2001:db8::53]:443", "[2001:db8::53]:443"));
        // Domain entries never match an IP (Go since CVE-2025-22870's fix).
        assert!(proxied("0.2.1", "192.0.2.1:443"));
        assert!(proxied(".1", "192.0.2.1:443"));
        assert!(proxied(".example.com", "192.0.2.1:443"));
        // No proxy configured: none.
        assert!(
            ProxyEnv::new(None, "")
                .for_addr(addr("192.0.2.1:443"))
                .is_none()
        );
    }

    /// One side of a SOCKS exchange: what the proxy expects to read, or sends.
    enum Step {
        Expect(&'static [u8]),
        Send(&'static [u8]),
    }

    /// Runs `socks5` against a scripted proxy; the proxy closes after its script.
    /// Returns the client's result and whether the proxy read what it expected.
    fn socks_run(url: &str, target: &str, script: Vec<Step>) -> (Result<(), String>, bool) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let proxy = parse_proxy(url).expect("url");
        let op = OpText {
            local: None,
            remote: None,
        };
        rt.block_on(async {
            let (mut c, mut p) = tokio::io::duplex(4096);
            let server = async move {
                for step in script {
                    match step {
                        Step::Expect(want) => {
                            let mut got = vec![0u8; want.len()];
                            if p.read_exact(&mut got).await.is_err() || got != want {
                                return false;
                            }
                        }
                        Step::Send(b) => {
                            if p.write_all(b).await.is_err() {
                                return false;
                            }
                        }
                    }
                }
                true
            };
            let client = async {
                let r = socks5(&mut c, &proxy, addr(target), &op).await;
                drop(c);
                r
            };
            let (r, ok) = tokio::join!(client, server);
            (r, ok)
        })
    }

    #[test]
    fn socks5_as_go_dials_it() {
        use Step::{Expect, Send};
        const OK_V4: &[u8] = &[5, 0, 0, 1, 10, 0, 0, 1, 0x30, 0x39];
        // No user information: only "no authentication" is offered; IPv4 target.
        let (r, ok) = socks_run(
            "socks5://10.0.0.1",
            "192.0.2.1:443",
            vec![
                Expect(&[5, 1, 0]),
                Send(&[5, 0]),
                Expect(&[5, 1, 0, 1, 192, 0, 2, 1, 1, 187]),
                Send(OK_V4),
            ],
        );
        assert_eq!((r, ok), (Ok(()), true));
        // User information: username/password offered too (RFC 1929), percent-
        // decoded; an IPv6 target; a bound address given as a name.
        let (r, ok) = socks_run(
            "socks5h://us%65r:p%40ss@10.0.0.1:1080",
            "[2001:db8::1]:8443",
            vec![
                Expect(&[5, 2, 0, 2]),
                Send(&[5, 2]),
                Expect(&[1, 4, b'u', b's', b'e', b'r', 4, b'p', b'@', b's', b's']),
                Send(&[1, 0]),
                Expect(&[
                    5, 1, 0, 4, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x20,
                    0xfb,
                ]),
                Send(&[5, 0, 0, 3, 3, b'a', b'b', b'c', 0, 80]),
            ],
        );
        assert_eq!((r, ok), (Ok(()), true));
        // A user without a password: an empty password is sent.
        let (r, ok) = socks_run(
            "socks5://u@10.0.0.1",
            "192.0.2.1:443",
            vec![
                Expect(&[5, 2, 0, 2]),
                Send(&[5, 2]),
                Expect(&[1, 1, b'u', 0]),
                Send(&[1, 0]),
                Expect(&[5, 1, 0, 1, 192, 0, 2, 1, 1, 187]),
                Send(OK_V4),
            ],
        );
        assert_eq!((r, ok), (Ok(()), true));
        // An IPv4-mapped target goes as IPv4 (Go `To4`).
        let (r, ok) = socks_run(
            "socks5://10.0.0.1",
            "[::ffff:192.0.2.1]:443",
            vec![
                Expect(&[5, 1, 0]),
                Send(&[5, 0]),
                Expect(&[5, 1, 0, 1, 192, 0, 2, 1, 1, 187]),
                Send(OK_V4),
            ],
        );
        assert_eq!((r, ok), (Ok(()), true));
        // Without user information Go does not authenticate, whatever was chosen.
        let (r, ok) = socks_run(
            "socks5://10.0.0.1",
            "192.0.2.1:443",
            vec![
                Expect(&[5, 1, 0]),
                Send(&[5, 2]),
                Expect(&[5, 1, 0, 1, 192, 0, 2, 1, 1, 187]),
                Send(OK_V4),
            ],
        );
        assert_eq!((r, ok), (Ok(()), true));
        // Go's texts for each failure.
        let fails: Vec<(&str, Vec<Step>, &str)> = vec![
            ("socks5://p", vec![Expect(&[5, 1, 0])], "EOF"),
            (
                "socks5://p",
                vec![Expect(&[5, 1, 0]), Send(&[5])],
                "unexpected EOF",
            ),
            (
                "socks5://p",
                vec![Expect(&[5, 1, 0]), Send(&[4, 0])],
                "unexpected protocol version 4",
            ),
            (
                "socks5://p",
                vec![Expect(&[5, 1, 0]), Send(&[5, 0xff])],
                "no acceptable authentication methods",
            ),
            (
                "socks5://:p@p",
                vec![Expect(&[5, 2, 0, 2]), Send(&[5, 2])],
                "invalid username/password",
            ),
            (
                "socks5://u:p@p",
                vec![Expect(&[5, 2, 0, 2]), Send(&[5, 1])],
                "unsupported authentication method 1",
            ),
            (
                "socks5://u:p@p",
                vec![
                    Expect(&[5, 2, 0, 2]),
                    Send(&[5, 2]),
                    Expect(&[1, 1, b'u', 1, b'p']),
                    Send(&[1, 1]),
                ],
                "username/password authentication failed",
            ),
            (
                "socks5://u:p@p",
                vec![
                    Expect(&[5, 2, 0, 2]),
                    Send(&[5, 2]),
                    Expect(&[1, 1, b'u', 1, b'p']),
                    Send(&[5, 0]),
                ],
                "invalid username/password version",
            ),
            (
                "socks5://p",
                vec![
                    Expect(&[5, 1, 0]),
                    Send(&[5, 0]),
                    Expect(&[5, 1, 0, 1, 192, 0, 2, 1, 1, 187]),
                    Send(&[5, 2, 0, 1]),
                ],
                "unknown error connection not allowed by ruleset",
            ),
            (
                "socks5://p",
                vec![
                    Expect(&[5, 1, 0]),
                    Send(&[5, 0]),
                    Expect(&[5, 1, 0, 1, 192, 0, 2, 1, 1, 187]),
                    Send(&[5, 9, 0, 1]),
                ],
                "unknown error unknown code: 9",
            ),
            (
                "socks5://p",
                vec![
                    Expect(&[5, 1, 0]),
                    Send(&[5, 0]),
                    Expect(&[5, 1, 0, 1, 192, 0, 2, 1, 1, 187]),
                    Send(&[5, 0, 1, 1]),
                ],
                "non-zero reserved field",
            ),
            (
                "socks5://p",
                vec![
                    Expect(&[5, 1, 0]),
                    Send(&[5, 0]),
                    Expect(&[5, 1, 0, 1, 192, 0, 2, 1, 1, 187]),
                    Send(&[5, 0, 0, 7]),
                ],
                "unknown address type 7",
            ),
            (
                "socks5://p",
                vec![
                    Expect(&[5, 1, 0]),
                    Send(&[5, 0]),
                    Expect(&[5, 1, 0, 1, 192, 0, 2, 1, 1, 187]),
                    Send(&[5, 0, 0, 1, 10, 0]),
                ],
                "unexpected EOF",
            ),
        ];
        for (url, script, want) in fails {
            let (r, _) = socks_run(url, "192.0.2.1:443", script);
            assert_eq!(r, Err(want.to_owned()), "{url}");
        }
    }

    #[test]
    fn proxy_status_lines() {
        let code = |l| status_line(l).map(|(c, _)| c);
        let text = |l| status_line(l).map(|(_, t)| t.unwrap_or("unknown status code"));
        assert_eq!(code("HTTP/1.1 200 Connection established"), Ok(200));
        assert_eq!(code("HTTP/1.0 200"), Ok(200));
        assert_eq!(code("HTTP/1.1 407 Proxy Authentication Required"), Ok(407));
        assert_eq!(
            text("HTTP/1.1 407 Proxy Authentication Required"),
            Ok("Proxy Authentication Required")
        );
        assert_eq!(text("HTTP/1.1 403"), Ok("unknown status code"));
        assert_eq!(
            code("HTTP/1.1 2000 x"),
            Err("malformed HTTP status code \"2000\"".into())
        );
        assert_eq!(
            code("HTTP/1.1 200OK"),
            Err("malformed HTTP status code \"200OK\"".into())
        );
        assert_eq!(
            code("HTTP/2 200"),
            Err("malformed HTTP version \"HTTP/2\"".into())
        );
        assert_eq!(
            code("SSH-2.0-OpenSSH_9.2p1 Debian-2"),
            Err("malformed HTTP status code \"Debian-2\"".into())
        );
        assert_eq!(
            code("garbage"),
            Err("malformed HTTP response \"garbage\"".into())
        );
    }
}
