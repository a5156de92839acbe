//! Corefile → typed configuration: load the input as CoreDNS does (`-conf`,
//! stdin, `./Corefile`, the built-in default), parse it, expand the server-block
//! keys, run every plugin's setup in plugin.cfg order, and group the blocks into
//! listeners with CoreDNS's duplicate and overlap checks.

pub mod directives;

use std::io::IsTerminal;
use std::sync::Arc;

use corefile::keys::{self, Transport, ZoneAddr};
use corefile::{Diagnostic, Dispenser, ParseOptions, ProcessEnv};

use crate::plugins::{self, PluginConfig};
use directives::DIRECTIVES;

/// Where the Corefile text came from (reload re-runs the same loader).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `-conf FILE`.
    File(String),
    /// `-conf stdin` with stdin not a terminal.
    Stdin,
    /// `./Corefile` in the working directory.
    Cwd,
    /// Nothing found: the built-in `.:PORT { whoami log }`.
    Default,
}

/// The loaded Corefile text.
#[derive(Debug, Clone)]
pub struct Input {
    /// Which loader produced it.
    pub source: Source,
    /// File name as CoreDNS records it in errors.
    pub filename: String,
    /// Contents.
    pub text: String,
}

/// The built-in configuration (CoreDNS's `DefaultInput`).
pub fn default_input(dns_port: &str) -> Input {
    Input {
        source: Source::Default,
        filename: "Corefile".into(),
        text: format!(".:{dns_port} {{\nwhoami\nlog\n}}\n"),
    }
}

/// Loads the Corefile as CoreDNS's loaders do (corefile-spec.md §9). The error
/// text is CoreDNS's (`loading Caddyfile via flag: open X: no such file or directory`).
pub fn load_input(conf: &str, dns_port: &str) -> Result<Input, String> {
    if conf == "stdin" {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            let text = corefile::parse::read_capped(&mut stdin.lock())
                .map_err(|e| format!("loading Caddyfile via flag: read /dev/stdin: {e}"))?;
            return Ok(Input {
                source: Source::Stdin,
                filename: "/dev/stdin".into(),
                text,
            });
        }
    } else if !conf.is_empty() {
        let text = read_file(conf).map_err(|e| format!("loading Caddyfile via flag: {e}"))?;
        return Ok(Input {
            source: Source::File(conf.to_owned()),
            filename: conf.to_owned(),
            text,
        });
    }
    match read_file("Corefile") {
        Ok(text) => Ok(Input {
            source: Source::Cwd,
            filename: "Corefile".into(),
            text,
        }),
        Err(_) if !std::path::Path::new("Corefile").exists() => Ok(default_input(dns_port)),
        Err(e) => Err(e),
    }
}

/// Re-runs the loader that produced `source` (SIGUSR1, reload plugin).
pub fn reload_input(source: &Source, dns_port: &str) -> Result<Input, String> {
    match source {
        Source::File(f) => load_input(f, dns_port),
        Source::Stdin => {
            // stdin is at EOF after the first read: an empty Corefile.
            let text =
                corefile::parse::read_capped(&mut std::io::stdin().lock()).unwrap_or_default();
            Ok(Input {
                source: Source::Stdin,
                filename: "/dev/stdin".into(),
                text,
            })
        }
        Source::Cwd | Source::Default => load_input("", dns_port),
    }
}

fn read_file(path: &str) -> Result<String, String> {
    let mut f = std::fs::File::open(path).map_err(|e| format!("open {path}: {}", go_err(&e)))?;
    if f.metadata().map(|m| m.is_dir()).unwrap_or(false) {
        return Err(format!("read {path}: is a directory"));
    }
    corefile::parse::read_capped(&mut f).map_err(|e| format!("read {path}: {e}"))
}

/// Go's `strconv.Atoi` error text for `v`.
pub fn go_atoi_err(v: &str) -> String {
    let digits = v.strip_prefix(['+', '-']).unwrap_or(v);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        format!(
            "strconv.Atoi: parsing {}: value out of range",
            corefile::values::go_quote(v)
        )
    } else {
        format!(
            "strconv.Atoi: parsing {}: invalid syntax",
            corefile::values::go_quote(v)
        )
    }
}

/// Go's text for common OS errors.
pub fn go_err(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => {
            let s = e.to_string();
            match s.find(" (os error") {
                Some(i) => s[..i].to_lowercase(),
                None => s,
            }
        }
    }
}

/// A TCP port as Go's resolver reads one (`net.LookupPort("tcp", …)`, pure-Go
/// resolver): decimal digits, else a service name from `/etc/services` or Go's few
/// built-in names, matched without regard to ASCII case. Go's texts on failure
/// (`address 99999: invalid port`, `lookup tcp/NAME: unknown port`).
pub fn go_tcp_port(service: &str) -> Result<u16, String> {
    static SERVICES: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let services =
        SERVICES.get_or_init(|| std::fs::read_to_string("/etc/services").unwrap_or_default());
    go_tcp_port_in(service, services)
}

/// [`go_tcp_port`] with `services` as the contents of `/etc/services`.
pub fn go_tcp_port_in(service: &str, services: &str) -> Result<u16, String> {
    let invalid = || format!("address {service}: invalid port");
    // Go `parsePort`: an optional sign, then digits (a number however large is one).
    let digits = service.strip_prefix(['+', '-']).unwrap_or(service);
    if service.is_empty() || digits.bytes().all(|c| c.is_ascii_digit()) {
        if service.starts_with('-') && digits.bytes().any(|c| c != b'0') {
            return Err(invalid());
        }
        let n = digits.trim_start_matches('0');
        return match n.parse::<u16>() {
            Ok(p) => Ok(p),
            Err(_) if n.is_empty() => Ok(0),
            Err(_) => Err(invalid()),
        };
    }
    // Go `lookupPortMapWithNetwork`: the name lowercased (names longer than its
    // 25-octet buffer never match); `readServices` adds each line's name and
    // aliases to the built-in map, later lines winning.
    let unknown = || format!("lookup tcp/{service}: unknown port");
    if service.len() > "mobility-header".len() + 10 {
        return Err(unknown());
    }
    let want = service.to_ascii_lowercase();
    let mut port: Option<u32> = match want.as_str() {
        "ftp" => Some(21),
        "ftps" => Some(990),
        "gopher" => Some(70),
        "http" => Some(80),
        "https" => Some(443),
        "imap2" => Some(143),
        "imap3" => Some(220),
        "imaps" => Some(993),
        "pop3" => Some(110),
        "pop3s" => Some(995),
        "smtp" => Some(25),
        "submissions" => Some(465),
        "ssh" => Some(22),
        "telnet" => Some(23),
        _ => None,
    };
    for line in services.lines() {
        let line = line.split('#').next().unwrap_or("");
        let f: Vec<&str> = line
            .split([' ', '\t', '\r'])
            .filter(|w| !w.is_empty())
            .collect();
        let Some((num, net)) = f.get(1).and_then(|pn| pn.split_once('/')) else {
            continue;
        };
        // Go `dtoi`: digits, at most 0xFFFFFF; the port must be positive.
        let p = match num.parse::<u32>() {
            Ok(p) if p > 0 && p < 0xFF_FFFF && num.bytes().all(|c| c.is_ascii_digit()) => p,
            _ => continue,
        };
        if net == "tcp" && f.iter().enumerate().any(|(i, w)| i != 1 && *w == want) {
            port = Some(p);
        }
    }
    match port {
        Some(p) => u16::try_from(p).map_err(|_| invalid()),
        None => Err(unknown()),
    }
}

/// Block-level settings that non-handler directives set.
#[derive(Debug, Clone, Default)]
pub struct BlockSettings {
    /// `root`.
    pub root: Option<String>,
    /// `bind`: listen hosts (empty = wildcard).
    pub listen_hosts: Vec<String>,
    /// `debug`.
    pub debug: bool,
    /// `on` hooks, in Corefile order.
    pub on_hooks: Vec<plugins::on::Hook>,
    /// `sign`: the zones to keep signed.
    pub sign: Vec<std::sync::Arc<plugins::sign::SignJobs>>,
    /// `proxyproto`.
    pub proxyproto: Option<std::sync::Arc<plugins::proxyproto::ProxyProto>>,
    /// `timeouts`.
    pub timeouts: plugins::timeouts::Timeouts,
    /// Which `timeouts` fields the block sets ([`plugins::timeouts::READ`] …): a
    /// listener takes each field from the last of its blocks that sets it.
    pub timeouts_set: u8,
    /// `cancel`.
    pub cancel: Option<std::time::Duration>,
    /// `health`: address and lameduck duration.
    pub health: Option<(String, std::time::Duration)>,
    /// `ready`: address and whether to ask plugins continuously.
    pub ready: Option<(String, bool)>,
    /// `reload`: the effective polling interval.
    pub reload: Option<std::time::Duration>,
    /// `multisocket`: sockets per listener.
    pub multisocket: Option<usize>,
    /// `shed`.
    pub shed: bool,
    /// `tls`: the server side of the block's `tls://` and `https://` listeners.
    pub tls: Option<plugins::tls::TlsServer>,
    /// `https`: `max_connections` of the block's `https://` listeners.
    pub https_max_connections: Option<usize>,
    /// `quic { max_streams }` of the block's `quic://` listeners.
    pub quic_max_streams: Option<usize>,
    /// `quic { worker_pool_size }`.
    pub quic_worker_pool: Option<usize>,
    /// `https3 { max_streams }` of the block's `https3://` listeners.
    pub https3_max_streams: Option<usize>,
    /// `https3 { max_connections }`.
    pub https3_max_connections: Option<usize>,
    /// `grpc_server { max_streams }` of the block's `grpc://` listeners.
    pub grpc_max_streams: Option<usize>,
    /// `grpc_server { max_connections }`.
    pub grpc_max_connections: Option<usize>,
}

/// One server block, set up.
#[derive(Debug, Clone)]
pub struct Block {
    /// Index in the Corefile.
    pub index: usize,
    /// Canonical keys (`dns://example.org.:53`), as plugins see them.
    pub keys: Vec<String>,
    /// The zone addresses the keys expand to.
    pub addrs: Vec<ZoneAddr>,
    /// Handler plugins in plugin.cfg order.
    pub plugins: Vec<PluginConfig>,
    /// The directive name of each entry of `plugins`.
    pub plugin_names: Vec<&'static str>,
    /// Directive settings.
    pub settings: BlockSettings,
}

impl Block {
    /// Normalised zones of the block (from its keys).
    pub fn zones(&self) -> Vec<String> {
        self.addrs.iter().map(|a| a.zone.clone()).collect()
    }
}

/// A listener: every block site sharing `TRANSPORT://ADDR:PORT`.
#[derive(Debug, Clone)]
pub struct Listener {
    /// Transport.
    pub transport: Transport,
    /// Bind host ("" = wildcard).
    pub host: String,
    /// Port text.
    pub port: String,
    /// The metrics `server` label (`dns://:53`).
    pub label: String,
    /// (zone, block index) pairs in block order.
    pub sites: Vec<(String, usize)>,
    /// `multisocket` of the listener's first block.
    pub sockets: Option<usize>,
}

/// A complete configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `reload`'s interval (the last block's, as CoreDNS's process-wide timer).
    pub reload: Option<std::time::Duration>,
    /// The input it came from.
    pub input: Arc<Input>,
    /// Blocks in file order.
    pub blocks: Vec<Block>,
    /// Listeners, in first-appearance order.
    pub listeners: Vec<Listener>,
    /// `[WARNING]` lines from parsing (empty import globs).
    pub warnings: Vec<String>,
}

/// What plugins' setup sees of their block.
pub struct SetupCtx<'a> {
    /// Canonical keys of the block.
    pub keys: &'a [String],
    /// Normalised zones of the block.
    pub zones: Vec<String>,
    /// Settings set by directives earlier in plugin.cfg order.
    pub settings: &'a mut BlockSettings,
    /// The Corefile name.
    pub filename: &'a str,
}

impl SetupCtx<'_> {
    /// CoreDNS `plugin.OriginsFromArgsOrServerBlock`.
    pub fn origins(&self, args: &[String]) -> Vec<String> {
        if args.is_empty() {
            return self.zones.clone();
        }
        let mut out = Vec::new();
        for a in args {
            let (_, rest) = keys::split_transport(a);
            if let Ok((hosts, _)) = keys::split_host_port(rest) {
                out.extend(hosts.iter().map(|h| keys::normalize_name(h)));
            }
        }
        out
    }
}

/// The error CoreDNS's plugins return for a repeated once-only directive.
pub fn err_once() -> Diagnostic {
    Diagnostic::plain("this plugin can only be used once per Server Block")
}

/// Parses and sets up `input` completely (nothing is bound).
pub fn build(input: Input, dns_port: &str) -> Result<Config, Diagnostic> {
    let mut input = input;
    let env = ProcessEnv;
    let mut parsed = corefile::parse(
        &input.text,
        &ParseOptions {
            filename: &input.filename,
            valid_directives: Some(&DIRECTIVES),
            env: &env,
        },
    )?;
    if parsed.blocks.is_empty() {
        let warnings = parsed.warnings;
        let default = default_input(dns_port);
        input = Input {
            source: input.source,
            ..default
        };
        parsed = corefile::parse(
            &input.text,
            &ParseOptions {
                filename: &input.filename,
                valid_directives: Some(&DIRECTIVES),
                env: &env,
            },
        )?;
        parsed.warnings = warnings;
    }
    // Keys → zone addresses (CoreDNS InspectServerBlocks).
    let mut blocks = Vec::with_capacity(parsed.blocks.len());
    for (index, sb) in parsed.blocks.iter().enumerate() {
        let mut addrs = Vec::new();
        for k in &sb.keys {
            addrs.extend(keys::inspect_key(k, dns_port).map_err(Diagnostic::inspect)?);
        }
        let keys = addrs.iter().map(ToString::to_string).collect();
        blocks.push(Block {
            index,
            keys,
            addrs,
            plugins: Vec::new(),
            plugin_names: Vec::new(),
            settings: BlockSettings::default(),
        });
    }
    // Setup, directive-major in plugin.cfg order, as caddy runs it.
    let filename: Arc<str> = Arc::from(input.filename.as_str());
    for dir in DIRECTIVES {
        for (bi, sb) in parsed.blocks.iter().enumerate() {
            let Some(tokens) = sb.tokens(dir) else {
                continue;
            };
            if !directives::implemented(dir) && !directives::CHECKED_ONLY.contains(&dir) {
                return Err(Diagnostic::plain("not supported by ringdns yet").in_plugin(dir));
            }
            let block = &mut blocks[bi];
            let zones = block.zones();
            let mut ctx = SetupCtx {
                keys: &block.keys,
                zones,
                settings: &mut block.settings,
                filename: &input.filename,
            };
            let mut d = Dispenser::new(filename.clone(), tokens.to_vec());
            let conf = plugins::setup(dir, &mut d, &mut ctx)?;
            if let Some(c) = conf {
                block.plugins.push(c);
                block.plugin_names.push(dir);
            }
        }
    }
    let listeners = group(&blocks)?;
    // gRPC and HTTP/3 transports are not served yet: say so instead of silently not
    // listening.
    if let Some(l) = listeners
        .iter()
        .find(|l| !crate::server::serves(l.transport))
    {
        return Err(Diagnostic::plain(format!(
            "cannot serve {} - {}:// listeners are not supported by ringdns yet",
            l.label, l.transport
        )));
    }
    // quic-go refuses to listen without TLS settings (when CoreDNS starts its servers,
    // after every setup).
    if listeners.iter().any(|l| {
        l.transport == Transport::Quic
            && !l
                .sites
                .iter()
                .any(|(_, b)| blocks[*b].settings.tls.is_some())
    }) {
        return Err(Diagnostic::plain("quic: tls.Config not set"));
    }
    // CoreDNS's NewServerHTTPS3 (when it makes its servers, after every setup).
    if listeners.iter().any(|l| {
        l.transport == Transport::Https3
            && !l
                .sites
                .iter()
                .any(|(_, b)| blocks[*b].settings.tls.is_some())
    }) {
        return Err(Diagnostic::plain("DoH3 requires TLS, no TLS config found"));
    }
    let reload = blocks.iter().rev().find_map(|b| b.settings.reload);
    Ok(Config {
        reload,
        input: Arc::new(input),
        blocks,
        listeners,
        warnings: parsed.warnings,
    })
}

/// Groups sites by `TRANSPORT://HOST:PORT` and applies CoreDNS's duplicate and
/// overlap checks (`validateZonesAndListeningAddresses`).
fn group(blocks: &[Block]) -> Result<Vec<Listener>, Diagnostic> {
    let mut listeners: Vec<Listener> = Vec::new();
    let mut registered: Vec<ZoneAddr> = Vec::new();
    let mut unbound: Vec<(ZoneAddr, ZoneAddr)> = Vec::new();
    for b in blocks {
        let hosts: Vec<String> = if b.settings.listen_hosts.is_empty() {
            vec![String::new()]
        } else {
            b.settings.listen_hosts.clone()
        };
        for a in &b.addrs {
            if a.transport == Transport::Unix {
                continue;
            }
            for h in &hosts {
                let z = ZoneAddr {
                    address: h.clone(),
                    ..a.clone()
                };
                // A block with a view may share its zone and address with others
                // (it is checked for overlap only, and not registered).
                let filtered = b.plugin_names.contains(&"view");
                if !filtered && registered.contains(&z) {
                    return Err(Diagnostic::plain(format!(
                        "cannot serve {z} - it is already defined"
                    )));
                }
                let uz = ZoneAddr {
                    address: String::new(),
                    ..z.clone()
                };
                if let Some((_, already)) = unbound.iter().find(|(u, _)| *u == uz) {
                    if z.address.is_empty() {
                        return Err(Diagnostic::plain(format!(
                            "cannot serve {z} - zone overlap listener capacity with {already}"
                        )));
                    }
                    if registered.contains(&uz) {
                        return Err(Diagnostic::plain(format!(
                            "cannot serve {z} - zone overlap listener capacity with {uz}"
                        )));
                    }
                }
                if !filtered {
                    registered.push(z.clone());
                    unbound.push((uz, z.clone()));
                }
                let hostport = if h.contains(':') {
                    format!("[{h}]:{}", a.port)
                } else {
                    format!("{h}:{}", a.port)
                };
                let label = format!("{}://{hostport}", a.transport);
                match listeners.iter_mut().find(|l| l.label == label) {
                    Some(l) => l.sites.push((a.zone.clone(), b.index)),
                    None => listeners.push(Listener {
                        sockets: b.settings.multisocket,
                        transport: a.transport,
                        host: h.clone(),
                        port: a.port.clone(),
                        label,
                        sites: vec![(a.zone.clone(), b.index)],
                    }),
                }
            }
        }
    }
    Ok(listeners)
}

#[cfg(test)]
pub(crate) mod tests;
