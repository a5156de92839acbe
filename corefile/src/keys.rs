//! Server-block keys → transport, zone(s) and port (CoreDNS
//! `core/dnsserver/register.go`, `plugin/normalize.go`, `plugin/pkg/cidr`).
//!
//! A key is `[TRANSPORT://]ZONE[:PORT]`. The zone is lowercased and made fully
//! qualified; a reverse CIDR (`10.0.0.0/8`, `2001:db8::/29`) becomes the reverse
//! zones it covers, split at the next octet (IPv4) or nibble (IPv6) boundary.

use std::fmt;
use std::net::IpAddr;

/// The transport a server block listens with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    /// `dns://` (UDP and TCP), the default.
    Dns,
    /// `tls://` (DNS over TLS).
    Tls,
    /// `quic://` (DNS over QUIC).
    Quic,
    /// `grpc://`.
    Grpc,
    /// `https://` (DNS over HTTPS).
    Https,
    /// `https3://` (DNS over HTTP/3).
    Https3,
    /// `unix://` (accepted by the parser; no server is created).
    Unix,
}

impl Transport {
    /// The scheme text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dns => "dns",
            Self::Tls => "tls",
            Self::Quic => "quic",
            Self::Grpc => "grpc",
            Self::Https => "https",
            Self::Https3 => "https3",
            Self::Unix => "unix",
        }
    }

    /// Default port for keys without one; `dns_port` is `-dns.port`.
    pub fn default_port(self, dns_port: &str) -> String {
        match self {
            Self::Dns => dns_port.to_owned(),
            Self::Tls | Self::Quic => "853".to_owned(),
            Self::Grpc | Self::Https | Self::Https3 => "443".to_owned(),
            Self::Unix => String::new(),
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Strips a transport prefix, checked in CoreDNS's order (`parse.Transport`).
pub fn split_transport(s: &str) -> (Transport, &str) {
    const ORDER: [(Transport, &str); 7] = [
        (Transport::Tls, "tls://"),
        (Transport::Dns, "dns://"),
        (Transport::Quic, "quic://"),
        (Transport::Grpc, "grpc://"),
        (Transport::Https3, "https3://"),
        (Transport::Https, "https://"),
        (Transport::Unix, "unix://"),
    ];
    for (t, p) in ORDER {
        if let Some(rest) = s.strip_prefix(p) {
            return (t, rest);
        }
    }
    (Transport::Dns, s)
}

/// One zone served on one transport and port, optionally bound to an address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ZoneAddr {
    /// Normalised zone (`example.org.`).
    pub zone: String,
    /// Port as text (Go keeps it a string; `-dns.port` is not validated early).
    pub port: String,
    /// Transport.
    pub transport: Transport,
    /// Bound address, empty for the wildcard.
    pub address: String,
}

impl fmt::Display for ZoneAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}", self.transport, self.zone, self.port)?;
        if !self.address.is_empty() {
            write!(f, " on {}", self.address)?;
        }
        Ok(())
    }
}

/// Go `strconv.Atoi` (optional sign, decimal, 64-bit).
pub fn go_atoi(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<i64>().ok()
}

/// miekg `dns.IsFqdn`: ends in a dot that is not escaped.
pub fn is_fqdn(s: &str) -> bool {
    let Some(body) = s.strip_suffix('.') else {
        return false;
    };
    let backslashes = body.bytes().rev().take_while(|&b| b == b'\\').count();
    backslashes % 2 == 0
}

/// miekg `dns.Fqdn`.
pub fn fqdn(s: &str) -> String {
    if is_fqdn(s) {
        s.to_owned()
    } else {
        format!("{s}.")
    }
}

/// CoreDNS `plugin.Name.Normalize`: lowercased and fully qualified.
pub fn normalize_name(s: &str) -> String {
    fqdn(s).to_lowercase()
}

/// miekg `dns.IsDomainName` (presentation format; escapes counted as one octet).
pub fn is_domain_name(s: &str) -> bool {
    if s.is_empty() {
        return false;
    }
    let s = fqdn(s);
    let b = s.as_bytes();
    const LENMSG: usize = 256;
    let (mut off, mut begin, mut was_dot) = (0usize, 0usize, false);
    // A backslash that escapes nothing (the name ends with it) makes it invalid.
    let mut escape = false;
    let mut i = 0usize;
    while i < b.len() {
        match b[i] {
            b'\\' => {
                escape = !escape;
                if off + 1 > LENMSG {
                    return false;
                }
                if b.len() > i + 3 && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
                    i += 3;
                    begin += 3;
                } else {
                    i += 1;
                    begin += 1;
                }
                was_dot = false;
            }
            b'.' => {
                escape = false;
                if i == 0 && b.len() > 1 {
                    return false;
                }
                if was_dot {
                    return false;
                }
                was_dot = true;
                let label_len = i - begin;
                if label_len >= 64 {
                    return false;
                }
                off += 1 + label_len;
                if off > LENMSG {
                    return false;
                }
                begin = i + 1;
            }
            _ => {
                escape = false;
                was_dot = false;
            }
        }
        i += 1;
    }
    !escape
}

/// CoreDNS `plugin.SplitHostPort`: the zone(s) of a key without transport, and its
/// port if it had one. Reverse CIDRs expand to several zones.
pub fn split_host_port(s: &str) -> Result<(Vec<String>, Option<String>), String> {
    let mut s = s;
    let mut port = None;
    if let Some(colon) = s.rfind(':') {
        if colon == s.len() - 1 {
            return Err(format!("expecting data after last colon: {}", go_quote(s)));
        }
        if let Some(p) = go_atoi(&s[colon + 1..]) {
            port = Some(p.to_string());
            s = &s[..colon];
        }
    }
    if s.len() > 255 {
        return Err(format!("specified zone is too long: {} > 255", s.len()));
    }
    if !is_domain_name(s) {
        return Err(format!("zone is not a valid domain name: {s}"));
    }
    let Some((ip, prefix)) = parse_cidr(s) else {
        return Ok((vec![s.to_owned()], port));
    };
    if s.starts_with(':') || (s.starts_with('0') && s.contains(':')) {
        return Err(format!("invalid CIDR {s}"));
    }
    Ok((reverse_zones(ip, prefix), port))
}

/// Go `%q` for the plain ASCII keys seen here.
fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go `net.ParseCIDR`: the masked network address and prefix length.
pub fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (addr, mask) = s.split_once('/')?;
    if mask.is_empty() || !mask.bytes().all(|b| b.is_ascii_digit()) || mask.len() > 8 {
        return None;
    }
    let ip: IpAddr = addr.parse().ok()?;
    let bits = if ip.is_ipv4() { 32 } else { 128 };
    let n: u32 = mask.parse().ok()?;
    if n > bits {
        return None;
    }
    let masked = match ip {
        IpAddr::V4(v4) => {
            let m = if n == 0 { 0 } else { u32::MAX << (32 - n) };
            IpAddr::from((u32::from(v4) & m).to_be_bytes())
        }
        IpAddr::V6(v6) => {
            let m = if n == 0 { 0 } else { u128::MAX << (128 - n) };
            IpAddr::from((u128::from(v6) & m).to_be_bytes())
        }
    };
    Some((masked, n as u8))
}

/// Reverse zones of a network: one per subnet at the next boundary (8 bits for
/// IPv4, 4 for IPv6) at or above `prefix` (CoreDNS `cidr.Split` + `cidr.Reverse`).
pub fn reverse_zones(net: IpAddr, prefix: u8) -> Vec<String> {
    let boundary: u32 = if net.is_ipv4() { 8 } else { 4 };
    let p = u32::from(prefix);
    let new = p.div_ceil(boundary) * boundary;
    let count = 1u32 << (new - p);
    let mut out = Vec::with_capacity(count as usize);
    match net {
        IpAddr::V4(v4) => {
            let base = u32::from(v4);
            for i in 0..count {
                let addr = if new == 0 {
                    base
                } else {
                    base + (i << (32 - new))
                };
                let octets = addr.to_be_bytes();
                let mut name = String::new();
                for o in octets[..(new / 8) as usize].iter().rev() {
                    name.push_str(&format!("{o}."));
                }
                name.push_str("in-addr.arpa.");
                out.push(name);
            }
        }
        IpAddr::V6(v6) => {
            let base = u128::from(v6);
            for i in 0..count {
                let addr = if new == 0 {
                    base
                } else {
                    base + (u128::from(i) << (128 - new))
                };
                let mut name = String::new();
                for k in (0..(new / 4)).rev() {
                    let nib = (addr >> (124 - 4 * k)) & 0xf;
                    name.push_str(&format!("{nib:x}."));
                }
                name.push_str("ip6.arpa.");
                out.push(name);
            }
        }
    }
    out
}

/// Expands one server-block key into its zone addresses (CoreDNS
/// `InspectServerBlocks`). `dns_port` is the `-dns.port` value.
pub fn inspect_key(key: &str, dns_port: &str) -> Result<Vec<ZoneAddr>, String> {
    let (transport, rest) = split_transport(key);
    let (hosts, port) = split_host_port(rest)?;
    for h in &hosts {
        split_host_port(&fqdn(h))?;
    }
    let port = port.unwrap_or_else(|| transport.default_port(dns_port));
    Ok(hosts
        .iter()
        .map(|h| ZoneAddr {
            zone: normalize_name(h),
            port: port.clone(),
            transport,
            address: String::new(),
        })
        .collect())
}

/// Whether a zone follows RFC 1035's preferred syntax (else the banner warns);
/// the root and reverse zones are exempt.
pub fn rfc1035_preferred(zone: &str) -> bool {
    // dnsutil.IsReverse: the suffix with its leading dot.
    if zone == "." || zone.ends_with(".in-addr.arpa.") || zone.ends_with(".ip6.arpa.") {
        return true;
    }
    let Some(body) = zone.strip_suffix('.') else {
        return false;
    };
    body.split('.').all(|label| {
        let b = label.as_bytes();
        !b.is_empty()
            && b[0].is_ascii_alphabetic()
            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
            && b[b.len() - 1].is_ascii_alphanumeric()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zones(key: &str) -> Vec<String> {
        match inspect_key(key, "53") {
            Ok(v) => v.into_iter().map(|z| z.to_string()).collect(),
            Err(e) => vec![format!("ERR {e}")],
        }
    }

    #[test]
    fn keys_table() {
        assert_eq!(zones("Example.ORG"), ["dns://example.org.:53"]);
        assert_eq!(zones("example.org:1053"), ["dns://example.org.:1053"]);
        assert_eq!(zones("tls://example.org"), ["tls://example.org.:853"]);
        assert_eq!(zones("quic://."), ["quic://.:853"]);
        assert_eq!(zones("grpc://."), ["grpc://.:443"]);
        assert_eq!(zones("https://."), ["https://.:443"]);
        assert_eq!(zones("https3://.:8443"), ["https3://.:8443"]);
        assert_eq!(zones(".:053"), ["dns://.:53"]);
        assert_eq!(zones(".:+53"), ["dns://.:53"]);
        assert_eq!(zones(".:0"), ["dns://.:0"]);
        assert_eq!(
            zones("example.org:"),
            ["ERR expecting data after last colon: \"example.org:\""]
        );
        assert_eq!(
            zones("exa$mple..org"),
            ["ERR zone is not a valid domain name: exa$mple..org"]
        );
        assert_eq!(zones("10.0.0.0/24"), ["dns://0.0.10.in-addr.arpa.:53"]);
        assert_eq!(zones("10.0.0.5/24"), ["dns://0.0.10.in-addr.arpa.:53"]);
        assert_eq!(zones("10.0.0.0/8"), ["dns://10.in-addr.arpa.:53"]);
        assert_eq!(
            zones("10.0.0.5/15"),
            ["dns://0.10.in-addr.arpa.:53", "dns://1.10.in-addr.arpa.:53"]
        );
        assert_eq!(
            zones("2001:db8::/32"),
            ["dns://8.b.d.0.1.0.0.2.ip6.arpa.:53"]
        );
        assert_eq!(
            zones("2001:db8::/32:1053"),
            ["dns://8.b.d.0.1.0.0.2.ip6.arpa.:1053"]
        );
        assert_eq!(zones("::/0"), ["ERR invalid CIDR ::/0"]);
        assert_eq!(zones("0::1/64"), ["ERR invalid CIDR 0::1/64"]);
    }

    #[test]
    fn reverse_expansion_counts() {
        let z = zones("10.0.0.0/27");
        assert_eq!(z.len(), 32);
        assert_eq!(z[0], "dns://0.0.0.10.in-addr.arpa.:53");
        assert_eq!(z[31], "dns://31.0.0.10.in-addr.arpa.:53");
        let z = zones("172.16.0.0/12");
        assert_eq!(z.len(), 16);
        assert_eq!(z[0], "dns://16.172.in-addr.arpa.:53");
        assert_eq!(z[15], "dns://31.172.in-addr.arpa.:53");
        let z = zones("2001:db8::/29");
        assert_eq!(z.len(), 8);
        assert_eq!(z[0], "dns://8.b.d.0.1.0.0.2.ip6.arpa.:53");
        assert_eq!(z[7], "dns://f.b.d.0.1.0.0.2.ip6.arpa.:53");
        let z = zones("10.9.3.0/18");
        assert_eq!(z.len(), 64);
        assert_eq!(z[63], "dns://63.9.10.in-addr.arpa.:53");
        assert_eq!(zones("0.0.0.0/0"), ["dns://in-addr.arpa.:53"]);
    }

    #[test]
    fn domain_names() {
        assert!(is_domain_name("."));
        assert!(is_domain_name("a.b"));
        assert!(!is_domain_name(""));
        assert!(!is_domain_name("a..b"));
        assert!(!is_domain_name(".a"));
        assert!(!is_domain_name(&"a".repeat(64)));
        assert!(is_domain_name(&"a".repeat(63)));
        assert!(is_domain_name("a\\.b"));
        // A backslash escaping nothing (miekg's `escape` left set) is invalid.
        assert!(!is_domain_name("foo\\"));
        assert!(is_domain_name("foo\\\\"));
        assert!(is_domain_name("a\\065"));
        let long = vec!["a".repeat(63); 5].join(".");
        assert!(!is_domain_name(&long));
    }

    #[test]
    fn rfc1035() {
        assert!(rfc1035_preferred("example.org."));
        assert!(!rfc1035_preferred("1example.org."));
        assert!(!rfc1035_preferred("_x.example.org."));
        assert!(!rfc1035_preferred("}."));
        assert!(rfc1035_preferred("."));
        assert!(rfc1035_preferred("0.10.in-addr.arpa."));
        assert!(!rfc1035_preferred("9in-addr.arpa."));
    }
}
