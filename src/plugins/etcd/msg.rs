//! SkyDNS's message format as CoreDNS's *etcd* reads it (`plugin/etcd/msg`):
//! the service JSON stored under a key, the key ↔ name mapping, `Group`,
//! `targetstrip` and the TXT split.

use std::net::IpAddr;

use serde_json::Value;

/// One service (`msg.Service`), its key added.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Service {
    pub host: String,
    pub port: i64,
    pub priority: i64,
    pub weight: i64,
    pub text: String,
    pub mail: bool,
    pub ttl: u32,
    pub target_strip: i64,
    pub group: String,
    pub key: String,
}

/// What a service stands for (`HostType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Host {
    Cname,
    Txt,
    A(IpAddr),
    Aaaa(IpAddr),
}

impl Service {
    /// `HostType`: an IPv4 (or IPv4-mapped) address is A, another address
    /// AAAA, anything else a name (CNAME), or TXT when the service has text.
    pub fn host_type(&self) -> Host {
        match crate::plugins::kubernetes::answer::go_parse_ip(&self.host) {
            None if self.text.is_empty() => Host::Cname,
            None => Host::Txt,
            Some(ip @ IpAddr::V4(_)) => Host::A(ip),
            Some(ip @ IpAddr::V6(_)) => Host::Aaaa(ip),
        }
    }

    /// The host as a target name: qualified, `targetstrip` labels removed.
    pub fn target(&self) -> String {
        self.stripped(&fqdn(&self.host))
    }

    /// `name` without the service's `targetstrip` labels.
    pub fn stripped(&self, name: &str) -> String {
        if self.target_strip > 0 {
            target_strip(name, self.target_strip)
        } else {
            name.to_owned()
        }
    }
}

/// `dns.Fqdn`.
pub fn fqdn(s: &str) -> String {
    if s.ends_with('.') && !is_escaped_dot(s) {
        s.to_owned()
    } else {
        format!("{s}.")
    }
}

/// The final dot of `s` is escaped (`a\.`).
fn is_escaped_dot(s: &str) -> bool {
    let b = s.as_bytes();
    let mut n = 0;
    let mut i = b.len() - 1;
    while i > 0 && b[i - 1] == b'\\' {
        n += 1;
        i -= 1;
    }
    n % 2 == 1
}

/// Decodes a stored value as Go's `json.Unmarshal` fills `msg.Service`: keys
/// matched without regard to case, unknown keys and `null` ignored, the first
/// type mismatch reported in Go's words.
pub fn decode(value: &[u8]) -> Result<Service, String> {
    let v: Value = match serde_json::from_slice(value) {
        Ok(v) => v,
        Err(e) => return Err(syntax_error(value, &e)),
    };
    let Value::Object(map) = v else {
        return Err(format!(
            "json: cannot unmarshal {} into Go value of type msg.Service",
            kind(&v)
        ));
    };
    let mut s = Service::default();
    let mut first_err: Option<String> = None;
    for (k, v) in &map {
        let field = match k.to_ascii_lowercase().as_str() {
            f @ ("host" | "port" | "priority" | "weight" | "text" | "mail" | "ttl"
            | "targetstrip" | "group") => f.to_owned(),
            _ => continue,
        };
        if v.is_null() {
            continue;
        }
        let r = match field.as_str() {
            "host" => string(v, &field).map(|x| s.host = x),
            "text" => string(v, &field).map(|x| s.text = x),
            "group" => string(v, &field).map(|x| s.group = x),
            "port" => int(v, &field).map(|x| s.port = x),
            "priority" => int(v, &field).map(|x| s.priority = x),
            "weight" => int(v, &field).map(|x| s.weight = x),
            "targetstrip" => int(v, &field).map(|x| s.target_strip = x),
            "ttl" => uint32(v, &field).map(|x| s.ttl = x),
            _ => match v {
                Value::Bool(b) => {
                    s.mail = *b;
                    Ok(())
                }
                _ => Err(mismatch(v, &field, "bool")),
            },
        };
        if let Err(e) = r {
            first_err.get_or_insert(e);
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(s),
    }
}

/// Go's text for JSON that does not parse (the common cases; others carry
/// serde_json's description).
fn syntax_error(value: &[u8], e: &serde_json::Error) -> String {
    if e.is_eof() {
        return "unexpected end of JSON input".to_owned();
    }
    let start = value
        .iter()
        .position(|b| !b" \t\r\n".contains(b))
        .unwrap_or(value.len());
    let first = value.get(start).copied();
    // A literal that goes wrong: Go names the octet and what it expected.
    for lit in [&b"true"[..], b"false", b"null"] {
        if first == Some(lit[0]) {
            for (i, want) in lit.iter().enumerate().skip(1) {
                match value.get(start + i) {
                    None => return "unexpected end of JSON input".to_owned(),
                    Some(b) if b != want => {
                        return format!(
                            "invalid character {} in literal {} (expecting {})",
                            go_char(*b),
                            String::from_utf8_lossy(lit),
                            go_char(*want)
                        );
                    }
                    Some(_) => {}
                }
            }
        }
    }
    match first {
        Some(b) if !b"{[\"-0123456789tfn".contains(&b) => {
            format!(
                "invalid character {} looking for beginning of value",
                go_char(b)
            )
        }
        _ => format!("invalid JSON: {e}"),
    }
}

/// `quoteChar`.
fn go_char(b: u8) -> String {
    match b {
        b'\'' => "'\\''".to_owned(),
        b'"' => "'\"'".to_owned(),
        0x20..=0x7e => format!("'{}'", char::from(b)),
        _ => format!("'\\x{b:02x}'"),
    }
}

fn kind(v: &Value) -> String {
    match v {
        Value::String(_) => "string".to_owned(),
        Value::Number(n) => format!("number {n}"),
        Value::Bool(_) => "bool".to_owned(),
        Value::Array(_) => "array".to_owned(),
        Value::Object(_) => "object".to_owned(),
        Value::Null => "null".to_owned(),
    }
}

/// Go's `UnmarshalTypeError` text: a number is named with its literal only
/// when it does not fit a numeric field.
fn mismatch(v: &Value, field: &str, ty: &str) -> String {
    let what = match v {
        Value::Number(_) if ty == "string" || ty == "bool" => "number".to_owned(),
        _ => kind(v),
    };
    format!("json: cannot unmarshal {what} into Go struct field Service.{field} of type {ty}")
}

fn string(v: &Value, field: &str) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        _ => Err(mismatch(v, field, "string")),
    }
}

fn int(v: &Value, field: &str) -> Result<i64, String> {
    match v {
        Value::Number(n) => n.as_i64().ok_or_else(|| mismatch(v, field, "int")),
        Value::String(_) | Value::Bool(_) | Value::Array(_) | Value::Object(_) => {
            Err(mismatch(v, field, "int"))
        }
        Value::Null => Ok(0),
    }
}

fn uint32(v: &Value, field: &str) -> Result<u32, String> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .and_then(|x| u32::try_from(x).ok())
            .ok_or_else(|| mismatch(v, field, "uint32")),
        _ => Err(mismatch(v, field, "uint32")),
    }
}

/// `dns.SplitDomainName`: the labels of a presentation-format name, escapes kept.
pub fn split_name(s: &str) -> Vec<&str> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'.' => {
                out.push(&s[start..i]);
                start = i + 1;
                i += 1;
            }
            _ => i += 1,
        }
    }
    if start < b.len() {
        out.push(&s[start..]);
    }
    // The root alone has no labels.
    if out.len() == 1 && out[0].is_empty() {
        out.clear();
    }
    out
}

/// Go's `path.Join`: the non-empty elements joined by `/`, then `path.Clean`.
pub fn path_join(elems: &[&str]) -> String {
    let parts: Vec<&str> = elems.iter().copied().filter(|e| !e.is_empty()).collect();
    if parts.is_empty() {
        return String::new();
    }
    clean(&parts.join("/"))
}

/// Go's `path.Clean`.
pub fn clean(p: &str) -> String {
    if p.is_empty() {
        return ".".to_owned();
    }
    let rooted = p.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            s => out.push(s),
        }
    }
    let body = out.join("/");
    match (rooted, body.is_empty()) {
        (true, _) => format!("/{body}"),
        (false, true) => ".".to_owned(),
        (false, false) => body,
    }
}

fn reversed_labels(name: &str) -> Vec<&str> {
    let mut l = split_name(name);
    l.reverse();
    l
}

/// `msg.Path`: `name`'s labels reversed below `/PREFIX/`.
pub fn path(name: &str, prefix: &str) -> String {
    let root = format!("/{prefix}/");
    let mut elems = vec![root.as_str()];
    let labels = reversed_labels(name);
    elems.extend(labels.iter().copied());
    path_join(&elems)
}

/// `msg.PathWithWildcard`: the path up to the first `*` or `any` label, and
/// whether there was one.
pub fn path_with_wildcard(name: &str, prefix: &str) -> (String, bool) {
    let root = format!("/{prefix}/");
    let labels = reversed_labels(name);
    let mut elems = vec![root.as_str()];
    for (i, k) in labels.iter().enumerate() {
        if *k == "*" || *k == "any" {
            elems.extend(labels[..i].iter().copied());
            return (path_join(&elems), true);
        }
    }
    elems.extend(labels.iter().copied());
    (path_join(&elems), false)
}

/// `msg.Domain`: the name a key stands for (the first path element, the
/// prefix, dropped). Keys too short to name anything give the root (Go's
/// code panics on them).
pub fn domain(key: &str) -> String {
    let mut l: Vec<&str> = key.split('/').collect();
    if l.last() == Some(&"") {
        l.pop();
    }
    if l.len() < 3 {
        return ".".to_owned();
    }
    l[1..].reverse();
    join(&l[1..l.len() - 1])
}

/// `dnsutil.Join`.
pub fn join(labels: &[&str]) -> String {
    match labels.split_last() {
        None => ".".to_owned(),
        Some((&".", rest)) => format!("{}.", rest.join(".")),
        Some(_) => fqdn(&labels.join(".")),
    }
}

/// `msg.Group`: services of the shortest keys' group, and those without one.
pub fn group(sx: Vec<Service>) -> Vec<Service> {
    let Some(first) = sx.first() else {
        return sx;
    };
    let mut group = first.group.clone();
    let mut slashes = first.key.matches('/').count();
    let mut length = Vec::with_capacity(sx.len());
    for s in &sx {
        let x = s.key.matches('/').count();
        length.push(x);
        if x < slashes {
            if s.group.is_empty() {
                break;
            }
            slashes = x;
            group = s.group.clone();
        }
    }
    if group.is_empty() {
        return sx;
    }
    let mut ret = Vec::new();
    for (i, s) in sx.iter().enumerate() {
        if s.group.is_empty() {
            ret.push(s.clone());
            continue;
        }
        // `length` may be shorter than `sx` after the break above; Go indexes
        // it anyway (it has every entry: the loop fills it before breaking).
        if length.get(i) == Some(&slashes) && s.group != group {
            return sx;
        }
        if s.group == group {
            ret.push(s.clone());
        }
    }
    ret
}

/// `split255`: TXT text in strings of at most 255 octets (a text of exactly a
/// multiple of 255 gets an empty last string, as Go's loop makes it).
pub fn split255(s: &str) -> Vec<&[u8]> {
    let b = s.as_bytes();
    if b.len() < 255 {
        return vec![b];
    }
    let mut out = Vec::new();
    let (mut p, mut i) = (0, 255);
    loop {
        if i > b.len() {
            out.push(&b[p..]);
            break;
        }
        out.push(&b[p..i]);
        p += 255;
        i += 255;
    }
    out
}

/// `dns.NextLabel`.
fn next_label(s: &[u8], offset: usize) -> (usize, bool) {
    if s.is_empty() {
        return (0, true);
    }
    let mut i = offset;
    while i + 1 < s.len() {
        if s[i] == b'.' {
            let mut j = i as isize - 1;
            while j >= 0 && s[j as usize] == b'\\' {
                j -= 1;
            }
            if (j - i as isize) % 2 != 0 {
                return (i + 1, false);
            }
        }
        i += 1;
    }
    (i.max(offset) + 1, true)
}

/// `targetStrip`: `name` without its first `n` labels (unchanged when it has
/// no more than that).
pub fn target_strip(name: &str, n: i64) -> String {
    let b = name.as_bytes();
    let (mut offset, mut end) = (0, false);
    for _ in 0..n {
        (offset, end) = next_label(b, offset);
        if end {
            break;
        }
    }
    if end {
        offset = 0;
    }
    name.get(offset..).unwrap_or("").to_owned()
}
