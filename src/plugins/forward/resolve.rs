//! TO arguments → upstream addresses, as CoreDNS classifies them: IPs with or
//! without port and transport, resolv.conf-style files (empty ones contribute
//! nothing), and hostnames resolved once at startup through `resolver` IPs or
//! the system resolver. Duplicates are dropped, first one wins.
//!
//! CoreDNS: `plugin/forward/resolve.go`, `plugin/pkg/parse/host.go`,
//! miekg `ClientConfigFromFile`.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

use corefile::keys::{self, Transport, is_domain_name};

use super::proxy::go_op_err;
use super::setup::split_zone;

/// One TO argument, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToEntry {
    /// IPs (with transport prefix when given) or the nameservers of a file.
    Static(Vec<String>),
    /// A hostname to resolve at startup.
    Host(HostEntry),
}

/// A hostname TO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEntry {
    /// Name to resolve.
    pub hostname: String,
    /// Port.
    pub port: String,
    /// `dns`, `tls` or `https`.
    pub transport: Transport,
    /// TLS server name from `%NAME`.
    pub zone: String,
}

/// Go `net.SplitHostPort`.
pub fn go_split_host_port(hp: &str) -> Result<(&str, &str), &'static str> {
    let i = hp.rfind(':').ok_or("missing port in address")?;
    let (host, j, k);
    if hp.starts_with('[') {
        let end = hp.find(']').ok_or("missing ']' in address")?;
        if end + 1 == hp.len() {
            return Err("missing port in address");
        } else if end + 1 != i {
            if hp.as_bytes()[end + 1] == b':' {
                return Err("too many colons in address");
            }
            return Err("missing port in address");
        }
        host = &hp[1..end];
        j = 1;
        k = end + 1;
    } else {
        host = &hp[..i];
        if host.contains(':') {
            return Err("too many colons in address");
        }
        j = 0;
        k = 0;
    }
    if hp[j..].contains('[') {
        return Err("unexpected '[' in address");
    }
    if hp[k..].contains(']') {
        return Err("unexpected ']' in address");
    }
    Ok((host, &hp[i + 1..]))
}

/// Go `net.JoinHostPort`.
pub fn join_host_port(host: &str, port: &str) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn strip_zone(h: &str) -> &str {
    h.rfind('%').map_or(h, |i| &h[..i])
}

fn is_ip(s: &str) -> bool {
    s.parse::<IpAddr>().is_ok()
}

/// `IP:port` (already stripped of transport and zone) → socket address.
pub fn socket_addr(h: &str) -> Result<SocketAddr, String> {
    let (host, port) = go_split_host_port(h).map_err(|e| format!("address {h}: {e}"))?;
    let ip: IpAddr = strip_zone(host)
        .parse()
        .map_err(|_| format!("not an IP address: {host:?}"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("address {h}: invalid port {port:?}"))?;
    Ok(SocketAddr::new(ip, port))
}

enum HostPortErr {
    Invalid(String),
    NotIpOrFile,
    NoNameservers,
}

/// CoreDNS `parse.HostPortOrFile` for one argument, its errors as text (a file
/// without nameservers gives none; a name is not an address here).
pub fn host_port_or_file_text(h: &str) -> Result<Vec<String>, String> {
    match host_port_or_file(h) {
        Ok(v) => Ok(v),
        Err(HostPortErr::NoNameservers) => Ok(Vec::new()),
        Err(HostPortErr::Invalid(e)) => Err(e),
        Err(HostPortErr::NotIpOrFile) => Err(format!("not an IP address or file: {h:?}")),
    }
}

/// CoreDNS `parse.HostPortOrFile` for one argument.
fn host_port_or_file(h: &str) -> Result<Vec<String>, HostPortErr> {
    let (trans, host) = keys::split_transport(h);
    if host.is_empty() {
        return Err(HostPortErr::Invalid(format!("invalid address: {h:?}")));
    }
    if trans == Transport::Unix {
        return Ok(vec![format!("unix://{host}")]);
    }
    let servers = match go_split_host_port(host) {
        Err(_) => {
            let host = host.trim_matches(|c| c == '[' || c == ']');
            if !is_ip(strip_zone(host)) {
                try_file(host).ok_or(HostPortErr::NotIpOrFile)?
            } else {
                let (prefix, port) = match trans {
                    Transport::Dns => ("", "53"),
                    Transport::Tls => ("tls://", "853"),
                    Transport::Quic => ("quic://", "853"),
                    Transport::Grpc => ("grpc://", "443"),
                    Transport::Https => ("https://", "443"),
                    other => {
                        return Err(HostPortErr::Invalid(format!(
                            "'{other}' is not supported as a destination protocol in forward: {h}"
                        )));
                    }
                };
                vec![format!("{prefix}{}", join_host_port(host, port))]
            }
        }
        Ok((addr, _)) => {
            if !is_ip(strip_zone(addr)) {
                try_file(host).ok_or(HostPortErr::NotIpOrFile)?
            } else {
                vec![h.to_owned()]
            }
        }
    };
    if servers.is_empty() {
        return Err(HostPortErr::NoNameservers);
    }
    Ok(servers)
}

/// Reads a resolv.conf-style file: `nameserver IP` lines, port 53. `None` if
/// it cannot be read.
fn try_file(path: &str) -> Option<Vec<String>> {
    // Bytes, as Go reads it: a byte that is not UTF-8 (in a comment, say) does not make
    // the file unreadable; the addresses themselves are ASCII.
    // Go opens it (a directory opens too) and stops at the first read error, keeping
    // what it read: a directory is an empty file.
    let mut f = std::fs::File::open(path).ok()?;
    let mut bytes = Vec::new();
    let _ = std::io::Read::read_to_end(&mut f, &mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() > 1 && f[0] == "nameserver" && is_ip(strip_zone(f[1])) {
            out.push(join_host_port(strip_zone(f[1]), "53"));
        }
    }
    Some(out)
}

fn parse_host_entry(h: &str) -> Option<HostEntry> {
    let (clean, zone) = split_zone(h);
    let (trans, host) = keys::split_transport(&clean);
    let port = match trans {
        Transport::Dns => "53",
        Transport::Tls => "853",
        Transport::Https => "443",
        _ => return None,
    };
    let (mut hostname, mut port) = (host.to_owned(), port.to_owned());
    if let Ok((h2, p)) = go_split_host_port(host) {
        hostname = h2.to_owned();
        port = p.to_owned();
    }
    let hostname = hostname.trim_matches(|c| c == '[' || c == ']').to_owned();
    if hostname.is_empty() || !is_domain_name(&hostname) || is_ip(&hostname) {
        return None;
    }
    Some(HostEntry {
        hostname,
        port,
        transport: trans,
        zone,
    })
}

/// CoreDNS `classifyToAddrs`: TO arguments in order.
pub fn classify(to: &[String]) -> Result<Vec<ToEntry>, String> {
    let mut out = Vec::new();
    for h in to {
        match host_port_or_file(h) {
            Ok(v) => out.push(ToEntry::Static(v)),
            Err(HostPortErr::NoNameservers) => {}
            Err(HostPortErr::Invalid(e)) => return Err(e),
            Err(HostPortErr::NotIpOrFile) => match parse_host_entry(h) {
                Some(e) => out.push(ToEntry::Host(e)),
                None => {
                    return Err(format!("not an IP address, file, or valid domain: {h:?}"));
                }
            },
        }
    }
    Ok(out)
}

/// One upstream address after expansion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expanded {
    /// `[transport://]IP[%NAME][:port]`.
    pub addr: String,
    /// The hostname it was resolved from (the DoH `Host`), if TO was one.
    pub hostname: Option<String>,
}

/// CoreDNS `expandAndDedup`: resolves hostnames and drops repeated `IP:port`s.
pub fn expand_and_dedup(
    entries: &[ToEntry],
    resolvers: &[String],
) -> Result<Vec<Expanded>, String> {
    let mut seen = Vec::<String>::new();
    let mut out = Vec::new();
    for e in entries {
        let (addrs, hostname) = match e {
            ToEntry::Static(v) => (v.clone(), None),
            ToEntry::Host(h) => (resolve_entry(h, resolvers)?, Some(&h.hostname)),
        };
        for addr in addrs {
            let key = keys::split_transport(&split_zone(&addr).0).1.to_owned();
            if !seen.contains(&key) {
                seen.push(key);
                out.push(Expanded {
                    addr,
                    hostname: hostname.cloned(),
                });
            }
        }
    }
    Ok(out)
}

fn resolve_entry(h: &HostEntry, resolvers: &[String]) -> Result<Vec<String>, String> {
    let ips = lookup_host(&h.hostname, resolvers)
        .map_err(|e| format!("failed to resolve {:?}: {e}", h.hostname))?;
    Ok(ips
        .iter()
        .map(|ip| {
            let t = h.transport.as_str();
            match h.transport {
                Transport::Tls | Transport::Https if !h.zone.is_empty() => {
                    if ip.contains(':') {
                        format!("{t}://[{ip}%{}]:{}", h.zone, h.port)
                    } else {
                        format!("{t}://{ip}%{}:{}", h.zone, h.port)
                    }
                }
                Transport::Tls | Transport::Https => {
                    format!("{t}://{}", join_host_port(ip, &h.port))
                }
                _ => join_host_port(ip, &h.port),
            }
        })
        .collect())
}

fn lookup_host(name: &str, resolvers: &[String]) -> Result<Vec<String>, String> {
    if resolvers.is_empty() {
        // The system resolver (getaddrinfo), as Go's net.LookupHost.
        use std::net::ToSocketAddrs;
        let addrs = (name, 0u16)
            .to_socket_addrs()
            .map_err(|_| format!("lookup {name}: no such host"))?;
        let mut ips: Vec<String> = Vec::new();
        for a in addrs {
            let s = a.ip().to_string();
            if !ips.contains(&s) {
                ips.push(s);
            }
        }
        if ips.is_empty() {
            return Err(format!("no addresses found for {name:?}"));
        }
        return Ok(ips);
    }
    let mut last: Option<String> = None;
    for r in resolvers {
        let addr = if go_split_host_port(r).is_ok() {
            r.clone()
        } else {
            join_host_port(r, "53")
        };
        // A resolver's port that Go's dial rejects fails that resolver with Go's text.
        let sa = match resolver_addr(&addr) {
            Ok(sa) => sa,
            Err(e) => {
                last = Some(e);
                continue;
            }
        };
        let mut ips = Vec::new();
        match exchange(sa, name, 1) {
            Ok(v) => ips.extend(v),
            Err(e) => {
                last = Some(e);
                continue;
            }
        }
        match exchange(sa, name, 28) {
            Ok(v) => ips.extend(v),
            Err(e) => {
                if !ips.is_empty() {
                    return Ok(ips);
                }
                last = Some(e);
                continue;
            }
        }
        if !ips.is_empty() {
            return Ok(ips);
        }
    }
    match last {
        Some(e) => Err(format!("no addresses found for {name:?}: {e}")),
        None => Err(format!("no addresses found for {name:?}")),
    }
}

/// A `resolver` address (`IP:PORT`, the IP checked at setup) as Go's UDP dial reads it: a
/// numeric port must fit 0–65535 (`address PORT: invalid port`), and a service name is
/// looked up for UDP in `/etc/services`, then in Go's own table (`domain`), else
/// `lookup udp/NAME: unknown port`. Errors are worded as the dial's.
pub fn resolver_addr(addr: &str) -> Result<SocketAddr, String> {
    let (host, port) =
        go_split_host_port(addr).map_err(|e| format!("dial udp: address {addr}: {e}"))?;
    let ip: IpAddr = strip_zone(host)
        .parse()
        .map_err(|_| format!("dial udp: lookup {host}: no such host"))?;
    let port = match go_parse_port(port) {
        Some(Ok(n)) => n,
        Some(Err(())) => return Err(format!("dial udp: address {port}: invalid port")),
        None => service_port(
            port,
            std::fs::read_to_string("/etc/services").ok().as_deref(),
        )
        .ok_or_else(|| format!("dial udp: lookup udp/{port}: unknown port"))?,
    };
    Ok(SocketAddr::new(ip, port))
}

/// Go's `parsePort`: `None` when the text needs a service lookup (a non-digit after an
/// optional sign, met before the value grows past 2^30), else the port, `Err` when out of
/// range (empty, a bare sign and `-0` are 0).
fn go_parse_port(p: &str) -> Option<Result<u16, ()>> {
    let (neg, digits) = match p.as_bytes().first() {
        Some(b'+') => (false, &p[1..]),
        Some(b'-') => (true, &p[1..]),
        _ => (false, p),
    };
    let mut n: u64 = 0;
    for b in digits.bytes() {
        if !b.is_ascii_digit() {
            return None;
        }
        if n >= 1 << 30 {
            break;
        }
        n = n * 10 + u64::from(b - b'0');
    }
    Some(match (neg, u16::try_from(n)) {
        (_, Ok(0)) => Ok(0),
        (false, Ok(n)) => Ok(n),
        _ => Err(()),
    })
}

/// The UDP port of service `name` (case-insensitive) in `services` (the text of
/// `/etc/services`: `name port/proto aliases...`, `#` comments), else in Go's built-in table.
pub(super) fn service_port(name: &str, services: Option<&str>) -> Option<u16> {
    let want = name.to_ascii_lowercase();
    for line in services.unwrap_or("").lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut f = line.split_whitespace();
        let (Some(svc), Some(pp)) = (f.next(), f.next()) else {
            continue;
        };
        let Some((port, "udp")) = pp.split_once('/') else {
            continue;
        };
        let Ok(port) = port.parse::<u16>() else {
            continue;
        };
        if svc.eq_ignore_ascii_case(&want) || f.any(|a| a.eq_ignore_ascii_case(&want)) {
            return Some(port);
        }
    }
    (want == "domain").then_some(53)
}

/// One blocking UDP exchange (2 s timeouts, as miekg's client there) for A or
/// AAAA; returns the addresses in the answer.
fn exchange(server: SocketAddr, name: &str, qtype: u16) -> Result<Vec<String>, String> {
    let Some(qname) = crate::wire::Name::parse(name) else {
        return Ok(Vec::new());
    };
    let bind: SocketAddr = if server.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(bind)
        .map_err(|e| format!("dial udp {server}: {}", go_op_err("socket", &e)))?;
    sock.connect(server)
        .map_err(|e| format!("dial udp {server}: {}", go_op_err("connect", &e)))?;
    let local = sock.local_addr().unwrap_or(bind);
    let id = super::proxy::random_id();
    let mut q = Vec::with_capacity(64);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    q.extend_from_slice(qname.wire());
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    let t = Duration::from_secs(2);
    let _ = sock.set_write_timeout(Some(t));
    let _ = sock.set_read_timeout(Some(t));
    sock.send(&q)
        .map_err(|e| format!("write udp {local}->{server}: {}", go_op_err("write", &e)))?;
    let mut buf = vec![0u8; 65535];
    let deadline = std::time::Instant::now() + t;
    loop {
        let n = sock
            .recv(&mut buf)
            .map_err(|e| format!("read udp {local}->{server}: {}", go_op_err("read", &e)))?;
        let m = &buf[..n];
        if n < 12 || crate::wire::hdr::id(m) != id {
            if std::time::Instant::now() >= deadline {
                return Err(format!("read udp {local}->{server}: i/o timeout"));
            }
            continue;
        }
        let Some(idx) = crate::wire::MsgIndex::parse(m) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        // CoreDNS takes A records from the A reply and AAAA records from the AAAA
        // reply only.
        for rr in idx.section(1).filter(|rr| rr.rtype == qtype) {
            let rd = &m[rr.rdata()];
            match (rr.rtype, rd.len()) {
                (1, 4) => out.push(IpAddr::from([rd[0], rd[1], rd[2], rd[3]]).to_string()),
                (28, 16) => {
                    let mut o = [0u8; 16];
                    o.copy_from_slice(rd);
                    out.push(IpAddr::from(o).to_string());
                }
                _ => {}
            }
        }
        return Ok(out);
    }
}
