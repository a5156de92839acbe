//! A parsed hosts file (CoreDNS `hostsfile.go` `Map`): names → IPv4 and IPv6
//! addresses, `*.`-wildcard names apart, and addresses → names for PTR.
//! Keys are lowercase wire names; lookups allocate nothing.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::wire::Name;
use crate::zone::in_zone;

/// Entries of one source (the file, or the inline lines).
#[derive(Debug, Default)]
pub struct HostsMap {
    name4: HashMap<Box<[u8]>, Vec<[u8; 4]>>,
    name6: HashMap<Box<[u8]>, Vec<[u8; 16]>>,
    wild4: HashMap<Box<[u8]>, Vec<[u8; 4]>>,
    wild6: HashMap<Box<[u8]>, Vec<[u8; 16]>>,
    addr: HashMap<IpAddr, Vec<Name>>,
    len: usize,
}

/// Go `net.ParseIP` after dropping a `%zone`: IPv4, IPv6, IPv4-mapped IPv6
/// (which counts as IPv4).
fn parse_ip(s: &str) -> Option<IpAddr> {
    let s = s.split('%').next().unwrap_or(s);
    match s.parse::<IpAddr>().ok()? {
        IpAddr::V6(v6) => Some(v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)),
        v4 => Some(v4),
    }
}

/// `*.rest` of `name`'s parent (CoreDNS `replaceWithAsteriskLabel`).
fn wildcard_key(name: &Name) -> Option<Name> {
    let w = name.wire();
    if w.len() <= 1 {
        return None;
    }
    let parent = &w[1 + w[0] as usize..];
    let mut buf = [0u8; 255];
    if parent.len() + 2 > buf.len() {
        return None;
    }
    buf[0] = 1;
    buf[1] = b'*';
    buf[2..2 + parent.len()].copy_from_slice(parent);
    Name::from_wire(&buf[..2 + parent.len()]).ok()
}

impl HostsMap {
    /// Parses hosts-file text: `IP NAME [NAME...]`, `#` comments; names
    /// outside `origins` are dropped; reverse entries unless `!auto_reverse`.
    pub fn parse(text: &[u8], origins: &[Name], auto_reverse: bool) -> Self {
        let mut m = Self::default();
        for line in text.split(|&b| b == b'\n') {
            let line = match line.iter().position(|&b| b == b'#') {
                Some(i) => &line[..i],
                None => line,
            };
            let line = String::from_utf8_lossy(line);
            let f: Vec<&str> = line.split_ascii_whitespace().collect();
            if f.len() < 2 {
                continue;
            }
            let Some(addr) = parse_ip(f[0]) else {
                continue;
            };
            for raw in &f[1..] {
                let fq = corefile::keys::normalize_name(raw);
                let Some(name) = Name::parse(&fq) else {
                    continue;
                };
                let name = name.to_lowercase();
                if !origins.iter().any(|o| in_zone(name.wire(), o.wire())) {
                    continue;
                }
                let key: Box<[u8]> = name.wire().into();
                let wild = name.wire().starts_with(b"\x01*");
                m.len += 1;
                match (addr, wild) {
                    (IpAddr::V4(a), true) => m.wild4.entry(key).or_default().push(a.octets()),
                    (IpAddr::V6(a), true) => m.wild6.entry(key).or_default().push(a.octets()),
                    (IpAddr::V4(a), false) => m.name4.entry(key).or_default().push(a.octets()),
                    (IpAddr::V6(a), false) => m.name6.entry(key).or_default().push(a.octets()),
                }
                if wild || !auto_reverse {
                    continue;
                }
                m.addr.entry(addr).or_default().push(name);
                m.len += 1;
            }
        }
        m
    }

    /// Entries counted as CoreDNS's `Map.Len` does.
    pub fn len(&self) -> usize {
        self.len
    }

    /// No entries.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn lookup<'a, T>(
        exact: &'a HashMap<Box<[u8]>, Vec<T>>,
        wild: &'a HashMap<Box<[u8]>, Vec<T>>,
        name: &Name,
    ) -> &'a [T] {
        if let Some(v) = exact.get(name.wire()) {
            return v;
        }
        wildcard_key(name)
            .and_then(|w| wild.get(w.wire()))
            .map_or(&[], Vec::as_slice)
    }

    /// Whether `name` (lowercase) has addresses of `qtype` (1 or 28).
    pub fn has(&self, name: &Name, qtype: u16) -> bool {
        match qtype {
            1 => !Self::lookup(&self.name4, &self.wild4, name).is_empty(),
            28 => !Self::lookup(&self.name6, &self.wild6, name).is_empty(),
            _ => false,
        }
    }

    /// Calls `f` with the RDATA of each address of `qtype` for `name`.
    pub fn each_addr(&self, name: &Name, qtype: u16, mut f: impl FnMut(&[u8])) {
        match qtype {
            1 => Self::lookup(&self.name4, &self.wild4, name)
                .iter()
                .for_each(|a| f(a)),
            28 => Self::lookup(&self.name6, &self.wild6, name)
                .iter()
                .for_each(|a| f(a)),
            _ => {}
        }
    }

    /// Names for an address (PTR).
    pub fn ptr(&self, addr: &IpAddr) -> &[Name] {
        self.addr.get(addr).map_or(&[], Vec::as_slice)
    }
}
