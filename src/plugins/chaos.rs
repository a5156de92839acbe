//! *chaos*: CH-class TXT answers for `version.bind`, `version.server`,
//! `authors.bind`, `hostname.bind` and `id.server` (plugins.md B). Its presence
//! opens non-IN classes on the listener.
//!
//! CoreDNS: `plugin/chaos/chaos.go`, `setup.go`, `zowners.go`.

use corefile::{Diagnostic, Dispenser};

use crate::chain::{Ctx, Flow, Status};

/// CoreDNS's maintainers list (`chaos.Owners`), the default authors.
pub const OWNERS: [&str; 29] = [
    "Tantalor93",
    "bradbeam",
    "chrisohaver",
    "darshanime",
    "dilyevsky",
    "ekleiner",
    "greenpau",
    "houyuwushang",
    "ihac",
    "inigohu",
    "isolus",
    "jameshartig",
    "johnbelamaric",
    "miekg",
    "mqasimsarfraz",
    "nchrisdk",
    "nitisht",
    "pmoroney",
    "rajansandeep",
    "rdrozhdzh",
    "rtreffer",
    "snebel29",
    "stp-ip",
    "superq",
    "thevilledev",
    "varyoo",
    "ykhr53",
    "yongtang",
    "zouyee",
];

/// Parsed configuration.
#[derive(Debug, Clone)]
pub struct ChaosConfig {
    /// Version string.
    pub version: String,
    /// Authors.
    pub authors: Vec<String>,
}

fn trim(s: &str) -> String {
    if s.len() < 256 {
        return s.to_owned();
    }
    let mut end = 255;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// Setup (CoreDNS `chaos.parse`).
pub fn setup(d: &mut Dispenser) -> Result<ChaosConfig, Diagnostic> {
    let default_version = format!("CoreDNS-{}", crate::COREDNS_VERSION);
    let owners: Vec<String> = OWNERS.iter().map(|s| (*s).to_owned()).collect();
    if d.next() {
        let args = d.remaining_args();
        let (version, authors) = match args.as_slice() {
            [] => (trim(&default_version), owners),
            [v] => (trim(v), owners),
            [v, rest @ ..] => {
                let mut list: Vec<String> = rest.iter().map(|a| trim(a)).collect();
                list.sort();
                list.dedup();
                (v.clone(), list)
            }
        };
        if d.next_block() {
            return Err(d
                .err(format!("unknown property '{}'", d.val()))
                .in_plugin("chaos"));
        }
        return Ok(ChaosConfig { version, authors });
    }
    Ok(ChaosConfig {
        version: String::new(),
        authors: owners,
    })
}

/// The runtime plugin.
pub struct Chaos {
    version: String,
    authors: Vec<String>,
    hostname: String,
}

impl Chaos {
    /// Builds it.
    pub fn new(c: &ChaosConfig) -> Self {
        Self {
            version: c.version.clone(),
            authors: c.authors.clone(),
            hostname: trim(&crate::hostname()),
        }
    }

    /// Answers CH TXT for the known names.
    pub fn serve(&self, ctx: &mut Ctx<'_>) -> Flow {
        if ctx.req.qclass != 3 || ctx.req.qtype != 16 {
            return Flow::Next;
        }
        let lower = ctx.req.qname.to_lowercase();
        enum Which {
            Authors,
            Version,
            Host,
        }
        let which = match lower.wire() {
            b"\x07authors\x04bind\x00" => Which::Authors,
            b"\x07version\x04bind\x00" | b"\x07version\x06server\x00" => Which::Version,
            b"\x08hostname\x04bind\x00" | b"\x02id\x06server\x00" => Which::Host,
            _ => return Flow::Next,
        };
        let owner = ctx.req.qname.to_name();
        let mut b = ctx.reply();
        let mut txt =
            |t: &str| b.rr_with(owner.wire(), 16, 3, 0, |out| push_txt(out, t.as_bytes()));
        match which {
            Which::Version => txt(&self.version),
            Which::Host => txt(&self.hostname),
            Which::Authors => {
                // A random permutation without allocating: start and step coprime to n.
                let n = self.authors.len();
                if n > 0 {
                    let start = fastrand::usize(..n);
                    let step = loop {
                        let s = fastrand::usize(1..=n);
                        if gcd(s, n) == 1 {
                            break s;
                        }
                    };
                    for k in 0..n {
                        txt(&self.authors[(start + k * step) % n]);
                    }
                }
            }
        }
        b.finish();
        ctx.written = true;
        Flow::Return(Status::rcode(0))
    }
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Writes one TXT string set: the text split into <=255-octet character strings.
pub fn push_txt(out: &mut Vec<u8>, t: &[u8]) {
    if t.is_empty() {
        out.push(0);
        return;
    }
    for chunk in t.chunks(255) {
        out.push(chunk.len() as u8);
        out.extend_from_slice(chunk);
    }
}
