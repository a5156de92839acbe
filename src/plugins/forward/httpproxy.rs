//! The HTTPS proxy of DoH upstreams, as Go's `http.ProxyFromEnvironment` (the
//! default transport CoreDNS's DoH clients copy) takes it from the environment:
//! `HTTPS_PROXY` (else `https_proxy`) names the proxy, `NO_PROXY` (else
//! `no_proxy`) the addresses reached directly, and loopback is never proxied. A
//! proxied connection is an HTTP `CONNECT` tunnel to the upstream's `IP:port`
//! through an `http://` proxy (`Proxy-Authorization: Basic` from its user
//! information); TLS to the upstream then runs inside the tunnel.
//!
//! Go: `net/http/transport.go` (`dialConn`), `golang.org/x/net/http/httpproxy`.

use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::proxy::{Fail, Upstream};

/// A proxy from `HTTPS_PROXY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyUrl {
    /// Lowercased; every scheme but `https`, `socks5` and `socks5h` is dialled
    /// as an HTTP `CONNECT` proxy, as Go's transport does.
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
    let auth = match user {
        None => None,
        Some(u) => {
            let (name, pass) = u.split_once(':').unwrap_or((u, ""));
            let mut cred = unescape(name)?;
            cred.push(b':');
            cred.extend(unescape(pass)?);
            Some(format!("Basic {}", super::doh::base64(&cred)))
        }
    };
    Some(ProxyUrl {
        scheme,
        host: host.to_owned(),
        port,
        bad_port,
        auth,
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

/// Percent-decoding of URL user information (bytes, as Go sends them); `None` for
/// a `%` not followed by two hex digits (Go's `url.Parse` rejects the URL).
fn unescape(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    let hex = |c: Option<&u8>| c.and_then(|&c| (c as char).to_digit(16));
    while i < b.len() {
        if b[i] == b'%' {
            let (h, l) = (hex(b.get(i + 1))?, hex(b.get(i + 2))?);
            out.push(((h << 4) | l) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
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

/// Dials `proxy` (from `source_address` when set) and opens a `CONNECT` tunnel to
/// the upstream within `limit`; Go's texts on failure (`proxyconnect tcp: dial tcp
/// …` when the proxy cannot be reached, the status text when it refuses).
pub async fn tunnel(
    up: &Upstream,
    proxy: &ProxyUrl,
    limit: std::time::Duration,
) -> Result<TcpStream, Fail> {
    if matches!(proxy.scheme.as_str(), "https" | "socks5" | "socks5h") {
        return Err(Fail::io(format!(
            "proxyconnect tcp: {}:// proxies are not supported by ringdns (only http://)",
            proxy.scheme
        )));
    }
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
    let (local, remote) = (tcp.local_addr().ok(), tcp.peer_addr().ok());
    let io_err = |op: &str, e: &std::io::Error| match (local, remote) {
        (Some(l), Some(r)) => Fail::io(format!(
            "{op} tcp {l}->{r}: {}",
            super::proxy::go_op_err(op, e)
        )),
        _ => Fail::io(super::proxy::go_op_err(op, e)),
    };
    let target = up.cfg.addr;
    let mut req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(a) = &proxy.auth {
        req.push_str(&format!("Proxy-Authorization: {a}\r\n"));
    }
    req.push_str("\r\n");
    tcp.write_all(req.as_bytes())
        .await
        .map_err(|e| io_err("write", &e))?;
    // The response head, a byte at a time (nothing past it may be consumed: the
    // upstream's TLS follows in the same stream). Lines end in LF (CR optional);
    // the status line is checked as soon as it is in, as Go's `ReadResponse` does.
    let mut head = Vec::with_capacity(128);
    let mut status_checked = false;
    loop {
        let mut b = [0u8; 1];
        let n = tcp.read(&mut b).await.map_err(|e| io_err("read", &e))?;
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
            return Ok(tcp);
        }
    }
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
