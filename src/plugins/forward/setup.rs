//! `forward` setup: the Corefile stanzas → [`ForwardConfig`]s, with CoreDNS's
//! option set, defaults, checks and error texts (plugins.md D).
//!
//! CoreDNS: `plugin/forward/setup.go` (`parseStanza`, `parseBlock`, `splitZone`),
//! `plugin/forward/resolve.go` (TO classification), `plugin/pkg/parse/host.go`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use corefile::keys::{self, is_domain_name, normalize_name, split_host_port};
use corefile::values::{format_go_duration, parse_go_duration_nanos, strconv_atoi};
use corefile::{Diagnostic, Dispenser};

use super::resolve;
use super::tls;
use crate::clog::{self, Level};
use crate::config::SetupCtx;
use crate::wire::types;

/// At most this many TO entries per stanza (CoreDNS `max`).
pub const MAX_TO: usize = 15;

/// How a stanza orders its upstreams for each query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// A random permutation (two upstreams: a coin flip swap). The default.
    Random,
    /// CoreDNS's round robin: `[p[i], p[0..i), p(i..)]` for a rising `i`.
    RoundRobin,
    /// Configuration order.
    Sequential,
}

impl Policy {
    /// The name as written in the Corefile.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Random => "random",
            Self::RoundRobin => "round_robin",
            Self::Sequential => "sequential",
        }
    }
}

/// An upstream's transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain DNS over UDP/TCP.
    Dns,
    /// DNS over TLS.
    Tls,
    /// DNS over HTTPS (RFC 8484).
    Https,
}

/// The HTTP method of DoH queries (`doh_method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DohMethod {
    /// The wire query as the body (the default).
    Post,
    /// The wire query base64url-encoded in `?dns=`.
    Get,
}

/// One upstream of a stanza.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Where to send queries.
    pub addr: SocketAddr,
    /// CoreDNS's `Addr()`: `IP:port` as configured (metrics `to`, metadata).
    pub label: String,
    /// Transport.
    pub scheme: Scheme,
    /// TLS server name from `tls://IP%NAME` (else `tls_servername`, else the
    /// IP); for `https://IP%NAME` only when `tls_servername` is not set.
    pub server_name: Option<String>,
    /// The hostname this address was resolved from (`https://NAME`): the DoH
    /// `Host` header instead of `IP:port`.
    pub host: Option<String>,
}

/// One `forward` stanza.
#[derive(Debug, Clone)]
pub struct ForwardConfig {
    /// FROM, normalised.
    pub from: String,
    /// `except` zones, normalised.
    pub ignored: Vec<String>,
    /// Upstreams in configuration order, duplicates removed.
    pub upstreams: Vec<UpstreamConfig>,
    /// Number of TO entries (a resolv.conf file counts once).
    pub to_entries: usize,
    /// `policy`.
    pub policy: Policy,
    /// `max_fails` (0: never down, no health checks).
    pub max_fails: u32,
    /// `expire`.
    pub expire: Duration,
    /// `max_age` (zero: off).
    pub max_age: Duration,
    /// `max_idle_conns` (0: unlimited).
    pub max_idle_conns: usize,
    /// `read_timeout`.
    pub read_timeout: Duration,
    /// `health_check` interval.
    pub hc_interval: Duration,
    /// RD on health checks (`no_rec` clears it).
    pub hc_recursion_desired: bool,
    /// Health-check query name.
    pub hc_domain: String,
    /// `force_tcp`.
    pub force_tcp: bool,
    /// `prefer_udp`.
    pub prefer_udp: bool,
    /// `max_concurrent` (0: unlimited).
    pub max_concurrent: i64,
    /// The `max_concurrent` value as written (it is quoted in the error).
    pub max_concurrent_text: String,
    /// `next` rcodes.
    pub next_rcodes: Vec<u16>,
    /// `next_on_nodata`.
    pub next_on_nodata: bool,
    /// `failover` rcodes.
    pub failover_rcodes: Vec<u16>,
    /// `failfast_all_unhealthy_upstreams`.
    pub failfast: bool,
    /// `max_connect_attempts` when given (else 2 per upstream).
    pub max_connect_attempts: Option<u32>,
    /// `source_address`.
    pub source_address: Option<IpAddr>,
    /// TLS client configuration for `tls://` and `https://` upstreams.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// `tls_servername`.
    pub tls_servername: Option<String>,
    /// `doh_method`.
    pub doh_method: DohMethod,
    /// `resolver` addresses for hostname TOs.
    pub resolver: Vec<String>,
    /// The block's *cancel* timeout, which ends the attempt loop early.
    pub cancel: Option<Duration>,
}

impl ForwardConfig {
    fn new() -> Self {
        Self {
            from: ".".into(),
            ignored: Vec::new(),
            upstreams: Vec::new(),
            to_entries: 0,
            policy: Policy::Random,
            max_fails: 2,
            expire: Duration::from_secs(10),
            max_age: Duration::ZERO,
            max_idle_conns: 0,
            read_timeout: Duration::from_secs(2),
            hc_interval: Duration::from_millis(500),
            hc_recursion_desired: true,
            hc_domain: ".".into(),
            force_tcp: false,
            prefer_udp: false,
            max_concurrent: 0,
            max_concurrent_text: String::new(),
            next_rcodes: Vec::new(),
            next_on_nodata: false,
            failover_rcodes: Vec::new(),
            failfast: false,
            max_connect_attempts: None,
            source_address: None,
            tls: None,
            tls_servername: None,
            doh_method: DohMethod::Post,
            resolver: Vec::new(),
            cancel: None,
        }
    }
}

/// Setup: every stanza of the block, chained in order. Errors carry the
/// `plugin/forward: ` prefix.
pub fn setup(d: &mut Dispenser, ctx: &SetupCtx<'_>) -> Result<Vec<ForwardConfig>, Diagnostic> {
    let w = |e: Diagnostic| e.in_plugin("forward");
    let mut out = Vec::new();
    while d.next() {
        let mut f = parse_stanza(d, ctx).map_err(w)?;
        f.cancel = ctx.settings.cancel;
        out.push(f);
    }
    for f in &out {
        if f.to_entries > MAX_TO {
            return Err(w(Diagnostic::plain(format!(
                "more than {MAX_TO} TOs configured: {}",
                f.to_entries
            ))));
        }
    }
    Ok(out)
}

fn plain(s: impl Into<String>) -> Diagnostic {
    Diagnostic::plain(s)
}

/// A TLS server name rustls can send and verify: a DNS name or an IP address. Go
/// takes any string (and verifies it against the certificate's names as it is);
/// rather than verify another name than the one written, such a name is refused.
fn check_server_name(n: &str) -> Result<(), Diagnostic> {
    rustls::pki_types::ServerName::try_from(n)
        .map(drop)
        .map_err(|_| {
            plain(format!(
                "TLS server name '{n}' is not a DNS name or an IP address, which ringdns's TLS (rustls) needs"
            ))
        })
}

/// CoreDNS `plugin.Host(s).NormalizeExact()`.
pub fn normalize_exact(s: &str) -> Vec<String> {
    let (_, rest) = keys::split_transport(s);
    match split_host_port(rest) {
        Ok((hosts, _)) => hosts.iter().map(|h| normalize_name(h)).collect(),
        Err(_) => Vec::new(),
    }
}

fn parse_stanza(d: &mut Dispenser, ctx: &SetupCtx<'_>) -> Result<ForwardConfig, Diagnostic> {
    let mut f = ForwardConfig::new();
    if !d.next_arg() {
        return Err(d.arg_err());
    }
    let orig_from = d.val().to_owned();
    let zones = normalize_exact(&orig_from);
    let Some(first) = zones.first() else {
        return Err(plain(format!("unable to normalize '{orig_from}'")));
    };
    f.from = first.clone();
    if zones.len() > 1 {
        clog::log(
            Level::Warning,
            Some("forward"),
            &format!(
                "Unsupported CIDR notation: '{orig_from}' expands to multiple zones. Using only '{}'.",
                f.from
            ),
        );
    }
    let to = d.remaining_args();
    if to.is_empty() {
        return Err(d.arg_err());
    }
    while d.next_block() {
        parse_block(d, ctx, &mut f)?;
    }
    if !f.max_age.is_zero() && f.max_age < f.expire {
        return Err(plain(format!(
            "max_age ({}) must not be less than expire ({})",
            format_go_duration(f.max_age),
            format_go_duration(f.expire)
        )));
    }
    for addr in &to {
        let (t, h) = keys::split_transport(addr);
        if t == keys::Transport::Https && h.contains('/') {
            return Err(plain(format!(
                "paths are not allowed in HTTPS upstream addresses (the /dns-query path is used by default): {addr}"
            )));
        }
    }
    let entries = resolve::classify(&to).map_err(plain)?;
    f.to_entries = entries.len();
    let hosts = resolve::expand_and_dedup(&entries, &f.resolver).map_err(plain)?;
    if hosts.is_empty() {
        return Err(plain("no valid upstream addresses found"));
    }
    let mut any_tls = false;
    for hz in &hosts {
        let (host, server_name) = split_zone(&hz.addr);
        let (t, h) = keys::split_transport(&host);
        let scheme = match t {
            keys::Transport::Dns => Scheme::Dns,
            keys::Transport::Tls => Scheme::Tls,
            keys::Transport::Https => Scheme::Https,
            other => {
                return Err(plain(format!(
                    "'{other}' is not supported as a destination protocol in forward: {host}"
                )));
            }
        };
        let mut sni = None;
        if t == keys::Transport::Tls && !server_name.is_empty() {
            if let Some(fs) = &f.tls_servername {
                return Err(plain(format!(
                    "both forward ('{fs}') and proxy level ('{server_name}') TLS servernames are set for upstream proxy '{host}'"
                )));
            }
            check_server_name(&server_name)?;
            sni = Some(server_name.clone());
        }
        // CoreDNS accepts (and ignores) `https://IP%NAME` next to
        // `tls_servername`; here NAME is used when `tls_servername` is not set.
        if t == keys::Transport::Https && !server_name.is_empty() && f.tls_servername.is_none() {
            check_server_name(&server_name)?;
            sni = Some(server_name.clone());
        }
        any_tls |= scheme != Scheme::Dns;
        let addr = resolve::socket_addr(h).map_err(plain)?;
        let host = match (scheme, &hz.hostname) {
            (Scheme::Https, Some(name)) => Some(name.clone()),
            _ => None,
        };
        f.upstreams.push(UpstreamConfig {
            addr,
            label: h.to_owned(),
            scheme,
            server_name: sni,
            host,
        });
    }
    if any_tls && f.tls.is_none() {
        f.tls = Some(tls::client_config(&[]).map_err(plain)?);
    }
    Ok(f)
}

/// CoreDNS `splitZone`: `tls://IP%NAME:port` → (`tls://IP:port`, `NAME`).
pub fn split_zone(host: &str) -> (String, String) {
    let (trans, rest) = match host.split_once("://") {
        Some((t, r)) => (Some(t), r),
        None => (None, host),
    };
    let mut new_host = rest.to_owned();
    let mut zone = String::new();
    if let Some(pct) = rest.rfind('%') {
        new_host = rest[..pct].to_owned();
        if new_host.starts_with('[') {
            new_host.push(']');
        }
        zone = rest[pct + 1..].to_owned();
        if let Some(colon) = zone.rfind(':') {
            new_host.push_str(&zone[colon..]);
            zone.truncate(colon);
            if let Some(z) = zone.strip_suffix(']') {
                zone = z.to_owned();
            }
        }
    }
    if let Some(t) = trans {
        new_host = format!("{t}://{new_host}");
    }
    (new_host, zone)
}

/// Go `strconv.ParseUint(s, 10, 32)`.
fn parse_uint32(s: &str) -> Result<u32, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("strconv.ParseUint: parsing {s:?}: invalid syntax"));
    }
    s.parse::<u32>()
        .map_err(|_| format!("strconv.ParseUint: parsing {s:?}: value out of range"))
}

/// Go `time.ParseDuration`, signed nanoseconds.
fn duration(s: &str) -> Result<i128, Diagnostic> {
    parse_go_duration_nanos(s).map_err(plain)
}

/// Go `Duration.String` for a signed value.
fn go_duration_signed(n: i128) -> String {
    let s = format_go_duration(Duration::from_nanos(n.unsigned_abs() as u64));
    if n < 0 { format!("-{s}") } else { s }
}

/// miekg `StringToRcode` (mnemonics only): the reverse of `RcodeToString` plus its
/// `NOTIMPL` alias; 16 is `BADSIG` there, so `BADVERS` is not a name.
fn rcode(s: &str) -> Option<u16> {
    let up = s.to_ascii_uppercase();
    if up == "NOTIMPL" {
        return Some(4);
    }
    (0..=23).find(|&rc| types::rcode_name(rc) == Some(up.as_str()))
}

fn one_arg(d: &mut Dispenser) -> Result<String, Diagnostic> {
    if !d.next_arg() {
        return Err(d.arg_err());
    }
    Ok(d.val().to_owned())
}

fn parse_block(
    d: &mut Dispenser,
    ctx: &SetupCtx<'_>,
    f: &mut ForwardConfig,
) -> Result<(), Diagnostic> {
    match d.val() {
        "except" => {
            let ignore = d.remaining_args();
            if ignore.is_empty() {
                return Err(d.arg_err());
            }
            for i in &ignore {
                f.ignored.extend(normalize_exact(i));
            }
        }
        "max_fails" => {
            let v = one_arg(d)?;
            f.max_fails = parse_uint32(&v).map_err(plain)?;
        }
        "max_connect_attempts" => {
            let v = one_arg(d)?;
            f.max_connect_attempts = Some(parse_uint32(&v).map_err(plain)?);
        }
        "health_check" => {
            let v = one_arg(d)?;
            let n = duration(&v)?;
            if n < 0 {
                return Err(plain(format!("health_check can't be negative: {n}")));
            }
            f.hc_interval = Duration::from_nanos(n as u64);
            f.hc_domain = ".".into();
            while d.next_arg() {
                match d.val() {
                    "no_rec" => f.hc_recursion_desired = false,
                    "domain" => {
                        let dom = one_arg(d)?;
                        if !is_domain_name(&dom) {
                            return Err(plain(format!("health_check: invalid domain name {dom}")));
                        }
                        f.hc_domain = normalize_name(&dom);
                    }
                    other => {
                        return Err(plain(format!("health_check: unknown option {other}")));
                    }
                }
            }
        }
        "force_tcp" => {
            if d.next_arg() {
                return Err(d.arg_err());
            }
            f.force_tcp = true;
        }
        "prefer_udp" => {
            if d.next_arg() {
                return Err(d.arg_err());
            }
            f.prefer_udp = true;
        }
        "tls" => {
            let mut args = d.remaining_args();
            if args.len() > 3 {
                return Err(d.arg_err());
            }
            for a in &mut args {
                *a = crate::plugins::file::rooted_path(a, ctx.settings.root.as_deref());
            }
            // Files are read now, as CoreDNS's setup does.
            f.tls = Some(tls::client_config(&args).map_err(plain)?);
        }
        "tls_servername" => {
            // Empty is unset, as in CoreDNS (which tests the name against "").
            let v = one_arg(d)?;
            if !v.is_empty() {
                check_server_name(&v)?;
            }
            f.tls_servername = (!v.is_empty()).then_some(v);
        }
        "expire" => {
            let v = one_arg(d)?;
            let n = duration(&v)?;
            if n < 0 {
                return Err(plain(format!(
                    "expire can't be negative: {}",
                    go_duration_signed(n)
                )));
            }
            f.expire = Duration::from_nanos(n as u64);
        }
        "max_age" => {
            let v = one_arg(d)?;
            let n = duration(&v)?;
            if n < 0 {
                return Err(plain(format!(
                    "max_age can't be negative: {}",
                    go_duration_signed(n)
                )));
            }
            f.max_age = Duration::from_nanos(n as u64);
        }
        "max_idle_conns" => {
            let v = one_arg(d)?;
            let n = strconv_atoi(&v).map_err(plain)?;
            if n < 0 {
                return Err(plain(format!("max_idle_conns can't be negative: {n}")));
            }
            f.max_idle_conns = usize::try_from(n).unwrap_or(usize::MAX);
        }
        "read_timeout" => {
            let v = one_arg(d)?;
            let n = duration(&v)?;
            if n <= 0 {
                return Err(plain(format!(
                    "read_timeout must be positive: {}",
                    go_duration_signed(n)
                )));
            }
            f.read_timeout = Duration::from_nanos(n as u64);
        }
        "doh_method" => {
            let v = one_arg(d)?;
            f.doh_method = match v.as_str() {
                "POST" => DohMethod::Post,
                "GET" => DohMethod::Get,
                _ => return Err(plain("doh_method must be either POST or GET")),
            };
        }
        "policy" => {
            let v = one_arg(d)?;
            f.policy = match v.as_str() {
                "random" => Policy::Random,
                "round_robin" => Policy::RoundRobin,
                "sequential" => Policy::Sequential,
                x => return Err(d.err(format!("unknown policy '{x}'"))),
            };
        }
        "max_concurrent" => {
            let v = one_arg(d)?;
            let n = strconv_atoi(&v).map_err(plain)?;
            if n < 0 {
                return Err(plain(format!("max_concurrent can't be negative: {n}")));
            }
            f.max_concurrent = n;
            f.max_concurrent_text = v;
        }
        "next" => {
            let args = d.remaining_args();
            if args.is_empty() {
                return Err(d.arg_err());
            }
            for a in &args {
                let rc = rcode(a).ok_or_else(|| plain(format!("{a} is not a valid rcode")))?;
                f.next_rcodes.push(rc);
            }
        }
        "next_on_nodata" => {
            if d.next_arg() {
                return Err(d.arg_err());
            }
            f.next_on_nodata = true;
        }
        "failfast_all_unhealthy_upstreams" => {
            if !d.remaining_args().is_empty() {
                return Err(d.arg_err());
            }
            f.failfast = true;
        }
        "failover" => {
            let args = d.remaining_args();
            if args.is_empty() {
                return Err(d.arg_err());
            }
            for a in &args {
                let rc = rcode(a).ok_or_else(|| plain(format!("{a} is not a valid rcode")))?;
                if rc == 0 {
                    return Err(plain("NoError cannot be used in failover"));
                }
                f.failover_rcodes.push(rc);
            }
        }
        "resolver" => {
            let args = d.remaining_args();
            if args.is_empty() {
                return Err(d.arg_err());
            }
            for a in &args {
                let host = resolve::go_split_host_port(a).map_or(a.as_str(), |(h, _)| h);
                if host.parse::<IpAddr>().is_err() {
                    return Err(plain(format!(
                        "resolver must be an IP address or IP:port: {a:?}"
                    )));
                }
            }
            f.resolver = args;
        }
        "source_address" => {
            let v = one_arg(d)?;
            let ip: IpAddr = v
                .parse()
                .map_err(|_| d.err(format!("invalid IP address: {v}")))?;
            f.source_address = Some(ip.to_canonical());
        }
        other => return Err(d.err(format!("unknown property '{other}'"))),
    }
    Ok(())
}
