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
    /// `http`, `https`, `socks5` or `socks5h` (only `http` is dialled).
    pub scheme: String,
    /// Host name or IP (without brackets).
    pub host: String,
    /// Port (the scheme's default when none is written).
    pub port: u16,
    /// `Proxy-Authorization` value (`Basic …`) from the URL's user information.
    pub auth: Option<String>,
}

/// The proxy settings, read once (Go reads them at first use and keeps them).
#[derive(Debug, Default)]
pub struct ProxyEnv {
    /// The proxy for https requests; `None` when unset or empty.
    pub proxy: Option<Result<ProxyUrl, String>>,
    no_proxy: NoProxy,
}

/// Go `httpproxy.config` matchers from `NO_PROXY`.
#[derive(Debug, Default)]
struct NoProxy {
    all: bool,
    ips: Vec<IpRule>,
    domains: Vec<DomainRule>,
}

#[derive(Debug)]
enum IpRule {
    Cidr(IpAddr, u8),
    Ip(IpAddr, String),
}

#[derive(Debug)]
struct DomainRule {
    /// With its leading dot.
    suffix: String,
    port: String,
    /// Also the name itself (the rule had no leading dot).
    host: bool,
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
            proxy: https_proxy.map(parse_proxy),
            no_proxy: NoProxy::parse(no_proxy),
        }
    }

    /// The proxy for an upstream at `addr`, if one applies.
    pub fn for_addr(&self, addr: SocketAddr) -> Option<&Result<ProxyUrl, String>> {
        let p = self.proxy.as_ref()?;
        self.no_proxy.use_proxy(addr).then_some(p)
    }
}

/// Go `parseProxy`: a URL, else the same with `http://` in front.
fn parse_proxy(s: &str) -> Result<ProxyUrl, String> {
    match parse_url(s) {
        Some(u) => Ok(u),
        None => {
            parse_url(&format!("http://{s}")).ok_or_else(|| format!("invalid proxy address {s:?}"))
        }
    }
}

/// `scheme://[user[:password]@]host[:port][/…]`; `None` without a scheme or host.
fn parse_url(s: &str) -> Option<ProxyUrl> {
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
    let port = match port {
        Some(p) => p.parse::<u16>().ok()?,
        None => match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            "socks5" | "socks5h" => 1080,
            _ => return None,
        },
    };
    let auth = user.map(|u| {
        let (name, pass) = u.split_once(':').unwrap_or((u, ""));
        let cred = format!("{}:{}", unescape(name), unescape(pass));
        format!("Basic {}", super::doh::base64(cred.as_bytes()))
    });
    Some(ProxyUrl {
        scheme,
        host: host.to_owned(),
        port,
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

/// Percent-decoding of URL user information.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (b[i], b.get(i + 1).copied(), b.get(i + 2).copied()) {
            (b'%', Some(h), Some(l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push(((hex(h).unwrap_or(0) << 4) | hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
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
            let (host, port) = match go_split_host_port(&p) {
                Some(("", _)) => continue,
                Some((h, port)) => (h.to_owned(), port.to_owned()),
                None => (p.clone(), String::new()),
            };
            if let Ok(ip) = host.parse::<IpAddr>() {
                n.ips.push(IpRule::Ip(ip, port));
                continue;
            }
            // `*.example.com` is `.example.com`.
            let mut h = match host.strip_prefix('*') {
                Some(r) if r.starts_with('.') => r.to_owned(),
                _ => host,
            };
            let whole = !h.starts_with('.');
            if whole {
                h.insert(0, '.');
            }
            n.domains.push(DomainRule {
                suffix: h,
                port,
                host: whole,
            });
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
        let host = ip.to_string();
        let ip_hit = self.ips.iter().any(|r| match r {
            IpRule::Cidr(net, bits) => in_cidr(ip, *net, *bits),
            IpRule::Ip(rip, p) => same_ip(*rip, ip) && (p.is_empty() || *p == port),
        });
        let domain_hit = self.domains.iter().any(|r| {
            (host.ends_with(&r.suffix) || (r.host && host == r.suffix[1..]))
                && (r.port.is_empty() || r.port == port)
        });
        !(ip_hit || domain_hit)
    }
}

/// Go `net.SplitHostPort`: `host:port` or `[host]:port` (brackets removed).
fn go_split_host_port(s: &str) -> Option<(&str, &str)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        return Some((h, after.strip_prefix(':')?));
    }
    let (h, p) = s.rsplit_once(':')?;
    (!h.contains(':')).then_some((h, p))
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

/// Dials `proxy` (from `source_address` when set) and opens a `CONNECT` tunnel to
/// the upstream within `limit`; Go's texts on failure (`proxyconnect tcp: dial tcp
/// …` when the proxy cannot be reached, the status text when it refuses).
pub async fn tunnel(
    up: &Upstream,
    proxy: &ProxyUrl,
    limit: std::time::Duration,
) -> Result<TcpStream, Fail> {
    if proxy.scheme != "http" {
        return Err(Fail::io(format!(
            "proxyconnect tcp: {}:// proxies are not supported by ringdns (only http://)",
            proxy.scheme
        )));
    }
    let to = match proxy.host.parse::<IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, proxy.port),
        Err(_) => tokio::net::lookup_host((proxy.host.as_str(), proxy.port))
            .await
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| {
                Fail::io(format!(
                    "proxyconnect tcp: dial tcp: lookup {}: no such host",
                    proxy.host
                ))
            })?,
    };
    let wrap = |f: Fail| match f {
        Fail::Io(t) => Fail::io(format!("proxyconnect tcp: {t}")),
        other => other,
    };
    let (mut tcp, _) = super::stream::dial_tcp_to(up, to, limit, false)
        .await
        .map_err(wrap)?;
    let target = up.cfg.addr;
    let mut req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(a) = &proxy.auth {
        req.push_str(&format!("Proxy-Authorization: {a}\r\n"));
    }
    req.push_str("\r\n");
    tcp.write_all(req.as_bytes())
        .await
        .map_err(|e| Fail::io(super::proxy::go_op_err("write", &e)))?;
    // The response head, a byte at a time: nothing past it may be consumed (the
    // upstream's TLS follows in the same stream).
    let mut head = Vec::with_capacity(128);
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= 8192 {
            return Err(Fail::io("net/http: proxy response header too long"));
        }
        let mut b = [0u8; 1];
        match tcp.read(&mut b).await {
            Ok(0) => return Err(Fail::io("unexpected EOF")),
            Ok(_) => head.push(b[0]),
            Err(e) => return Err(Fail::io(super::proxy::go_op_err("read", &e))),
        }
    }
    let text = String::from_utf8_lossy(&head);
    let line = text.lines().next().unwrap_or("");
    status_ok(line).map(|()| tcp).map_err(Fail::io)
}

/// Go's reading of the proxy's status line: 200 passes; another code fails with
/// the status text after the code (`unknown status code` without one).
fn status_ok(line: &str) -> Result<(), String> {
    let malformed = || format!("malformed HTTP response {line:?}");
    let (proto, status) = line.split_once(' ').ok_or_else(malformed)?;
    if !proto.starts_with("HTTP/") {
        return Err(malformed());
    }
    let status = status.trim_start();
    let code = status.get(..3).ok_or_else(malformed)?;
    if !code.bytes().all(|c| c.is_ascii_digit()) {
        return Err(format!("malformed HTTP status code {code:?}"));
    }
    if code == "200" {
        return Ok(());
    }
    match status.split_once(' ') {
        Some((_, text)) => Err(text.to_owned()),
        None => Err("unknown status code".to_owned()),
    }
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
            Ok(("http".into(), "10.0.0.1".into(), 3128, None))
        );
        // No scheme: http:// in front (Go's parseProxy).
        assert_eq!(
            p("proxy.example:8080"),
            Ok(("http".into(), "proxy.example".into(), 8080, None))
        );
        assert_eq!(
            p("10.0.0.1"),
            Ok(("http".into(), "10.0.0.1".into(), 80, None))
        );
        assert_eq!(
            p("https://[2001:db8::1]"),
            Ok(("https".into(), "2001:db8::1".into(), 443, None))
        );
        // Basic credentials, percent-decoded.
        assert_eq!(
            p("http://user:p%40ss@proxy:3128/"),
            Ok((
                "http".into(),
                "proxy".into(),
                3128,
                Some(format!("Basic {}", super::super::doh::base64(b"user:p@ss")))
            ))
        );
        assert_eq!(
            p("http://user@proxy:3128").map(|u| u.3),
            Ok(Some("Basic dXNlcjo=".into()))
        );
        assert!(p("http://proxy:99999").is_err());
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
        // A "domain" that is a suffix of the IP's text matches too, as in Go.
        assert!(!proxied("0.2.1", "192.0.2.1:443"));
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
        assert_eq!(status_ok("HTTP/1.1 200 Connection established"), Ok(()));
        assert_eq!(status_ok("HTTP/1.0 200"), Ok(()));
        assert_eq!(
            status_ok("HTTP/1.1 407 Proxy Authentication Required"),
            Err("Proxy Authentication Required".into())
        );
        assert_eq!(status_ok("HTTP/1.1 403"), Err("unknown status code".into()));
        assert!(status_ok("SSH-2.0-OpenSSH").is_err());
    }
}
