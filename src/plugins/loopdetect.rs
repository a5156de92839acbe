//! *loop*: detects a forwarding loop at startup (plugins.md D): the server
//! sends itself `HINFO <random>.<random>.<zone>`; if that query comes back
//! more than twice, it is forwarded in a circle and the process exits with
//! CoreDNS's fatal message. Disabled once the probe exchange completes.
//!
//! CoreDNS: `plugin/loop/loop.go`, `setup.go`.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use corefile::keys;
use corefile::{Diagnostic, Dispenser};

use crate::chain::{Ctx, Flow};
use crate::clog;
use crate::config::SetupCtx;
use crate::wire::Name;

/// Parsed configuration.
#[derive(Debug, Clone)]
pub struct LoopConfig {
    /// The block's first zone.
    pub zone: String,
    /// Where the probe goes (first listen host or wildcard, the block's port).
    pub addr: String,
}

/// Setup (CoreDNS `loop.parse`).
pub fn setup(d: &mut Dispenser, ctx: &SetupCtx<'_>) -> Result<LoopConfig, Diagnostic> {
    let w = |e: Diagnostic| e.in_plugin("loop");
    let mut zone = ".".to_owned();
    let mut port = String::from("53");
    let mut i = 0;
    while d.next() {
        if i > 0 {
            return Err(w(crate::config::err_once()));
        }
        i += 1;
        if d.next_arg() {
            return Err(w(d.arg_err()));
        }
        if let Some(k) = ctx.keys.first() {
            let (_, rest) = keys::split_transport(k);
            if let Ok((hosts, p)) = keys::split_host_port(rest) {
                if let Some(h) = hosts.first() {
                    zone = keys::normalize_name(h);
                }
                if let Some(p) = p {
                    port = p;
                }
            }
        }
    }
    let host = ctx
        .settings
        .listen_hosts
        .first()
        .cloned()
        .unwrap_or_default();
    let addr = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    Ok(LoopConfig { zone, addr })
}

/// The runtime plugin.
pub struct Loop {
    zone: Name,
    zone_text: String,
    qname: Name,
    qname_text: String,
    addr: String,
    seen: Arc<AtomicU32>,
    off: Arc<AtomicBool>,
}

fn rand_label() -> String {
    // CoreDNS: a crypto-random integer below 2^62, in decimal.
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    (u64::from_le_bytes(b) >> 2).to_string()
}

impl Loop {
    /// Builds it and starts the probe (a thread sending the HINFO query).
    pub fn new(c: &LoopConfig) -> Self {
        let qname_text = if c.zone == "." {
            format!("{}.{}.", rand_label(), rand_label())
        } else {
            format!("{}.{}.{}", rand_label(), rand_label(), c.zone)
        };
        let l = Self {
            zone: Name::parse(&c.zone).unwrap_or_default(),
            zone_text: c.zone.clone(),
            qname: Name::parse(&qname_text).unwrap_or_default(),
            qname_text,
            addr: c.addr.clone(),
            seen: Arc::new(AtomicU32::new(0)),
            off: Arc::new(AtomicBool::new(false)),
        };
        l.start_probe();
        l
    }

    fn start_probe(&self) {
        let (seen, off, qname, addr) = (
            Arc::clone(&self.seen),
            Arc::clone(&self.off),
            self.qname.clone(),
            self.addr.clone(),
        );
        let _ = std::thread::Builder::new()
            .name("loop-probe".into())
            .spawn(move || {
                let target: Option<SocketAddr> = {
                    let a = if addr.starts_with(':') {
                        format!("127.0.0.1{addr}")
                    } else {
                        addr
                    };
                    a.parse().ok()
                };
                let deadline = Instant::now() + Duration::from_secs(30);
                while Instant::now() < deadline {
                    if let Some(t) = target {
                        if exchange(t, &qname).is_ok() {
                            break;
                        }
                    }
                    seen.store(0, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_secs(1));
                }
                off.store(true, Ordering::Relaxed);
            });
    }

    /// Counts the probe's arrivals; the third is fatal.
    pub fn serve(&self, ctx: &mut Ctx<'_>) -> Flow {
        if ctx.req.qtype != 13 || self.off.load(Ordering::Relaxed) {
            return Flow::Next;
        }
        if !ctx.req.qname.is_subdomain_of(&self.zone) {
            return Flow::Next;
        }
        if ctx.req.qname.eq_ignore_case(&self.qname) {
            self.seen.fetch_add(1, Ordering::Relaxed);
        }
        if self.seen.load(Ordering::Relaxed) > 2 {
            clog::log(
                clog::Level::Fatal,
                Some("loop"),
                &format!(
                    "Loop ({} -> {}) detected for zone {:?}, see https://coredns.io/plugins/loop#troubleshooting. Query: \"HINFO {}\"",
                    ctx.peer, self.addr, self.zone_text, self.qname_text
                ),
            );
            std::process::exit(1);
        }
        Flow::Next
    }
}

/// One UDP exchange of `HINFO qname` with a 2 s timeout (miekg `dns.Exchange`).
fn exchange(to: SocketAddr, qname: &Name) -> std::io::Result<()> {
    let bind: SocketAddr = if to.is_ipv6() {
        "[::]:0".parse().map_err(std::io::Error::other)?
    } else {
        "0.0.0.0:0".parse().map_err(std::io::Error::other)?
    };
    let s = UdpSocket::bind(bind)?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    let id = fastrand::u16(..);
    let mut q = Vec::with_capacity(64);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    q.extend_from_slice(qname.wire());
    q.extend_from_slice(&[0, 13, 0, 1]);
    s.send_to(&q, to)?;
    let mut buf = [0u8; 4096];
    loop {
        let (n, _) = s.recv_from(&mut buf)?;
        if n >= 12 && buf[..2] == id.to_be_bytes() {
            return Ok(());
        }
    }
}
