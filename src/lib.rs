//! ringdns: a Linux-optimised DNS daemon that is a drop-in replacement for
//! CoreDNS 1.14.7. See ARCHITECTURE in the README for the layout.
#![forbid(unsafe_code)]

pub mod chain;
pub mod cli;
pub mod clog;
pub mod config;
pub mod goregex;
pub mod gotmpl;
pub mod http;
pub mod metrics;
pub mod plugins;
pub mod procs;
pub mod server;
pub mod wire;
pub mod zone;

/// The CoreDNS release whose behaviour ringdns reproduces.
pub const COREDNS_VERSION: &str = "1.14.7";

/// ringdns's own version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The host name (CoreDNS `os.Hostname`), `localhost` if unknown.
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}
