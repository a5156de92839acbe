//! The server core: listeners, workers and the query path (handle → chain →
//! scrub), on the io_uring or the epoll backend.
//!
//! Every worker thread owns its own SO_REUSEPORT sockets for every listener and
//! runs a current-thread tokio runtime; the running configuration ([`Active`])
//! is swapped atomically on reload, and sockets whose listener survives a
//! reload are kept (never unbound).

pub mod bufpool;
pub mod doh;
pub mod doh3;
pub mod doq;
pub mod engine;
pub mod epoll;
pub mod grpc;
mod h3cap;
pub mod handle;
pub mod ops;
pub mod parked;
pub mod reentry;
pub mod ring;
pub mod route;
pub mod scrub;
pub mod signals;
pub mod uring_worker;

use std::cell::Cell;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use corefile::keys::Transport;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::Notify;

use crate::chain::Chain;
use crate::config::Config;
use crate::plugins::Plugin;
use handle::ListenerRt;
use route::Routes;

/// IPv4-mapped IPv6 addresses (from dual-stack sockets) as IPv4, as Go reports them.
pub fn canonical(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::from((v4, v6.port())),
            None => a,
        },
        v4 => v4,
    }
}

/// The running configuration: listeners by label.
pub struct Active {
    /// Listener runtimes, keyed by their `TRANSPORT://HOST:PORT` label.
    pub listeners: Vec<ListenerRt>,
    /// The configuration they were built from.
    pub config: Config,
}

impl Active {
    /// Builds chains and routes from `config`.
    pub fn build(config: Config) -> Result<Self, String> {
        crate::plugins::dnstap::sink::next_generation();
        let mut chains: Vec<Arc<Chain>> = Vec::with_capacity(config.blocks.len());
        for b in &config.blocks {
            let plugins = b
                .plugins
                .iter()
                .map(Plugin::build)
                .collect::<Result<Vec<_>, _>>()?;
            let rewrites = plugins.iter().any(|p| matches!(p, Plugin::Rewrite(_)));
            let view = plugins.iter().find_map(|p| match p {
                Plugin::View(v) => Some(Arc::clone(v)),
                _ => None,
            });
            let has_tsig = plugins.iter().any(|p| matches!(p, Plugin::Tsig(_)));
            let mut chain = Chain {
                plugins,
                debug: b.settings.debug,
                rewrites,
                view,
                has_tsig,
            };
            Self::label_prometheus(&mut chain);
            Self::link_dnstap(&mut chain);
            Self::check_autopath(&chain)?;
            Self::link_autopath(&mut chain)?;
            chains.push(Arc::new(chain));
        }
        // *sign*: keep the zones' signed files current (CoreDNS's OnStartup).
        for b in &config.blocks {
            for s in &b.settings.sign {
                s.start();
            }
        }
        let mut listeners = Vec::new();
        for l in &config.listeners {
            if !serves(l.transport) {
                continue;
            }
            let mut routes = Routes::default();
            let mut local: Vec<usize> = Vec::new();
            let mut lchains = Vec::new();
            for (zone, bi) in &l.sites {
                let idx = match local.iter().position(|x| x == bi) {
                    Some(i) => i,
                    None => {
                        local.push(*bi);
                        lchains.push(Arc::clone(&chains[*bi]));
                        local.len() - 1
                    }
                };
                routes.add(zone, idx);
            }
            // miekg's server-wide TSIG secrets: every *tsig* of the listener's blocks.
            let mut tsig: Vec<(String, String)> = Vec::new();
            for (_, bi) in &l.sites {
                for p in &config.blocks[*bi].plugins {
                    if let crate::plugins::PluginConfig::Tsig(t) = p {
                        for (k, v) in &t.secrets {
                            match tsig.iter_mut().find(|e| e.0 == *k) {
                                Some(e) => e.1.clone_from(v),
                                None => tsig.push((k.clone(), v.clone())),
                            }
                        }
                    }
                }
            }
            let class_open = lchains
                .iter()
                .any(|c| c.plugins.iter().any(Plugin::opens_classes));
            let timeouts = crate::plugins::timeouts::Timeouts::merged(
                l.sites.iter().map(|(_, b)| &config.blocks[*b].settings),
            );
            // CoreDNS's ServerTLS takes the TLS configuration of the group's last
            // config that it visits; no *tls* plugin serves plain TCP.
            let (mut quic, mut grpc, mut h3) = (None, None, None);
            let tls = if l.transport == Transport::Dns {
                None
            } else {
                l.sites
                    .iter()
                    .rev()
                    .find_map(|(_, b)| config.blocks[*b].settings.tls.as_ref())
                    .map(|t| Arc::clone(&t.config))
            };
            // DoH: ALPN h2 and http/1.1, at most `https { max_connections }` connections
            // (the group's first block; default 200, 0 = no limit) over all workers.
            let (tls, conn_limit) = if l.transport == Transport::Https {
                let tls = tls.map(|c| {
                    let mut c = (*c).clone();
                    c.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
                    Arc::new(c)
                });
                let max = l
                    .sites
                    .first()
                    .and_then(|(_, b)| config.blocks[*b].settings.https_max_connections)
                    .unwrap_or(crate::plugins::https::DEFAULT_MAX_CONNECTIONS);
                let limit = limit_for(&l.label, max, l.sockets);
                (tls, limit)
            } else if l.transport == Transport::Grpc {
                let tls = tls.map(|c| {
                    let mut c = (*c).clone();
                    c.alpn_protocols = vec![b"h2".to_vec()];
                    Arc::new(c)
                });
                let first = l.sites.first().map(|(_, b)| &config.blocks[*b].settings);
                let max = first
                    .and_then(|s| s.grpc_max_connections)
                    .unwrap_or(crate::plugins::https::DEFAULT_GRPC_CONNECTIONS);
                let streams = first
                    .and_then(|s| s.grpc_max_streams)
                    .unwrap_or(crate::plugins::https::DEFAULT_GRPC_STREAMS);
                grpc = Some(u32::try_from(streams).ok().filter(|n| *n > 0));
                let limit = limit_for(&l.label, max, l.sockets);
                (tls, limit)
            } else if l.transport == Transport::Quic {
                // quic-go refuses to listen without TLS settings.
                let Some(tls) = tls else {
                    return Err("quic: tls.Config not set".to_owned());
                };
                let first = l.sites.first().map(|(_, b)| &config.blocks[*b].settings);
                let streams = first
                    .and_then(|s| s.quic_max_streams)
                    .unwrap_or(crate::plugins::https::DEFAULT_QUIC_STREAMS);
                // One pool per listening socket, as CoreDNS runs one server per
                // `multisocket` copy.
                let workers = first
                    .and_then(|s| s.quic_worker_pool)
                    .unwrap_or(crate::plugins::https::DEFAULT_QUIC_WORKERS)
                    .saturating_mul(l.sockets.unwrap_or(1).max(1));
                let idle = timeouts.idle;
                quic = Some(doq::Config::new(&tls, streams, workers, idle)?);
                let limit = limit_for(
                    &l.label,
                    crate::plugins::https::DEFAULT_QUIC_CONNECTIONS,
                    l.sockets,
                );
                (Some(tls), limit)
            } else if l.transport == Transport::Https3 {
                // CoreDNS's NewServerHTTPS3 (config::build has said so already).
                let Some(tls) = tls else {
                    return Err("DoH3 requires TLS, no TLS config found".to_owned());
                };
                let first = l.sites.first().map(|(_, b)| &config.blocks[*b].settings);
                let streams = first
                    .and_then(|s| s.https3_max_streams)
                    .unwrap_or(crate::plugins::https::DEFAULT_HTTPS3_STREAMS);
                let max = first
                    .and_then(|s| s.https3_max_connections)
                    .unwrap_or(crate::plugins::https::DEFAULT_MAX_CONNECTIONS);
                h3 = Some(doq::Quic::new(&tls, b"h3", streams, timeouts.idle)?);
                let limit = limit_for(&l.label, max, l.sockets);
                (Some(tls), limit)
            } else {
                (tls, None)
            };
            let label: Arc<str> = Arc::from(l.label.as_str());
            let proxy = l
                .sites
                .iter()
                .rev()
                .find_map(|(_, b)| config.blocks[*b].settings.proxyproto.clone());
            let tracer = lchains.iter().find_map(|c| {
                c.plugins.iter().find_map(|p| match p {
                    Plugin::Trace(t) => Some(Arc::clone(t.tracer())),
                    _ => None,
                })
            });
            listeners.push(ListenerRt {
                proxy,
                tracer,
                tls,
                conn_limit,
                quic,
                grpc,
                h3,
                transport: l.transport,
                blocks: local.clone(),
                label: Arc::clone(&label),
                disp: Arc::new(handle::Dispatch {
                    label,
                    routes,
                    chains: lchains,
                    class_open,
                    tsig,
                }),
                timeouts,
            });
        }
        Ok(Self { listeners, config })
    }

    /// Marks the chains' `plugin` metric label: the first handler after *prometheus*.
    fn label_prometheus(chain: &mut Chain) {
        let names: Vec<&'static str> = chain.plugins.iter().map(Plugin::name).collect();
        for (i, p) in chain.plugins.iter_mut().enumerate() {
            if let Plugin::Prometheus(pr) = p {
                pr.next_name = names.get(i + 1).copied().unwrap_or("");
            }
        }
    }

    /// *autopath* `@PLUGIN` (CoreDNS's startup check): a plugin of the block that
    /// gives no search path is an error (only *kubernetes* gives one, and it is not
    /// built); a plugin not in the block leaves *autopath* idle.
    fn check_autopath(chain: &Chain) -> Result<(), String> {
        for p in &chain.plugins {
            if let Plugin::Autopath(a) = p {
                if let Some(name) = &a.from_plugin {
                    if name != "kubernetes" && chain.plugins.iter().any(|q| q.name() == name) {
                        return Err(format!(
                            "plugin/autopath: {name} does not implement the AutoPather interface"
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Gives *autopath* `@kubernetes` the block's *kubernetes* (CoreDNS's
    /// `searchFunc`).
    fn link_autopath(chain: &mut Chain) -> Result<(), String> {
        let k8s = chain.plugins.iter().find_map(|p| match p {
            Plugin::Kubernetes(k) => Some(k.shared()),
            _ => None,
        });
        // *k8s_external* reads the block's *kubernetes* (CoreDNS's OnStartup check);
        // *metadata* asks it for its labels.
        let view = chain.view.as_ref().map(|v| Arc::clone(&v.name));
        let geoip = chain.plugins.iter().find_map(|p| match p {
            Plugin::Geoip(g) => Some(Arc::clone(g)),
            _ => None,
        });
        for p in &mut chain.plugins {
            if let Plugin::Metadata(m) = &mut *p {
                m.geoip.clone_from(&geoip);
            }
            if let (Plugin::Metadata(m), Some(k)) = (&mut *p, &k8s) {
                m.k8s = Some(Arc::clone(k));
            }
            if let Plugin::Metadata(m) = p {
                m.view.clone_from(&view);
            }
            if let Plugin::K8sExternal(e) = p {
                match &k8s {
                    Some(k) => e.k8s = Some(Arc::clone(k)),
                    None => {
                        return Err("plugin/k8s_external: kubernetes plugin not loaded".into());
                    }
                }
            }
        }
        let src = chain.plugins.iter().find_map(|p| match p {
            Plugin::Kubernetes(k) => Some(k.autopath_source()),
            _ => None,
        });
        if let Some(src) = src {
            for p in &mut chain.plugins {
                if let Plugin::Autopath(a) = p {
                    if a.from_plugin.as_deref() == Some("kubernetes") {
                        a.k8s = Some(src.clone());
                    }
                }
            }
        }
        Ok(())
    }

    /// Gives *forward* the block's *dnstap* taps (CoreDNS's `SetTapPlugin`).
    fn link_dnstap(chain: &mut Chain) {
        let taps = chain.plugins.iter().find_map(|p| match p {
            Plugin::Dnstap(d) => Some(Arc::clone(&d.taps)),
            _ => None,
        });
        if let Some(taps) = taps {
            for p in &mut chain.plugins {
                if let Plugin::Forward(f) = p {
                    f.taps = Some(Arc::clone(&taps));
                }
            }
        }
    }

    /// The plugins' shutdown callbacks that log: *errors* writes its pending
    /// `consolidate` summaries (CoreDNS runs them on final shutdown and, for the old
    /// instance, on reload).
    pub fn flush_logs(&self) {
        for l in &self.listeners {
            for c in &l.disp.chains {
                for p in &c.plugins {
                    if let Plugin::Errors(e) = p {
                        e.stop();
                    }
                }
            }
        }
    }

    /// *dnstap*'s shutdown callback: every sink flushes and closes (all at once,
    /// then waited for).
    pub fn close_taps(&self) {
        let taps = || {
            self.listeners
                .iter()
                .flat_map(|l| l.disp.chains.iter())
                .flat_map(|c| c.plugins.iter())
                .filter_map(|p| match p {
                    Plugin::Dnstap(d) => Some(d),
                    _ => None,
                })
        };
        for d in taps() {
            d.begin_close();
        }
        for d in taps() {
            d.wait_closed();
        }
    }

    /// The listener with `label`.
    pub fn find(&self, label: &str) -> Option<&ListenerRt> {
        self.listeners.iter().find(|l| &*l.label == label)
    }
}

/// State all workers share.
pub struct Shared {
    /// The running configuration.
    pub active: ArcSwap<Active>,
    stop: AtomicBool,
    notify: Notify,
}

impl Shared {
    /// Wraps the first configuration.
    pub fn new(active: Active) -> Arc<Self> {
        Arc::new(Self {
            active: ArcSwap::from_pointee(active),
            stop: AtomicBool::new(false),
            notify: Notify::new(),
        })
    }

    /// Resolves when shutdown starts.
    pub async fn stopping(&self) {
        loop {
            let n = self.notify.notified();
            tokio::pin!(n);
            n.as_mut().enable();
            if self.stop.load(Ordering::Acquire) {
                return;
            }
            n.await;
        }
    }

    /// Whether shutdown has started.
    pub fn is_stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Starts shutdown: every loop ends.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }
}

/// Per-worker limits and counters (single-threaded).
/// Decrements a counter when dropped: a count of things in progress stays right however
/// the thing ends (a panicking task included).
pub struct CountGuard<'a>(pub &'a Cell<usize>);

impl Drop for CountGuard<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

pub struct WorkerLimits {
    /// Queries parked now.
    pub parked: Cell<usize>,
    /// TCP connections open now.
    pub tcp_conns: Cell<usize>,
    /// Cap on TCP connections per worker.
    pub max_tcp_conns: usize,
}

/// The sockets one worker serves for one listener address family.
pub struct WorkerSockets {
    /// Listener label.
    pub label: String,
    /// UDP socket (none for a `tls://` listener).
    pub udp: Option<std::net::UdpSocket>,
    /// TCP listener (none for a `quic://` listener).
    pub tcp: Option<std::net::TcpListener>,
    /// The local address to report for UDP (`{local}`): the bound address, `[::]`
    /// for a wildcard listener as CoreDNS (which binds one dual-stack socket) logs it.
    pub udp_local: SocketAddr,
    /// The listener's transport (`dns` or `tls`).
    pub transport: Transport,
}

fn new_socket(
    addr: SocketAddr,
    v6only: bool,
    ty: Type,
    proto: Protocol,
) -> std::io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), ty, Some(proto))?;
    if addr.is_ipv6() {
        s.set_only_v6(v6only)?;
    }
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    Ok(s)
}

/// Go-like text for a listen error (`listen tcp :53: bind: permission denied`).
fn listen_err(net: &str, host: &str, port: u16, e: &std::io::Error) -> String {
    let hp = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    format!("listen {net} {hp}: bind: {}", crate::config::go_err(e))
}

/// Binds one UDP socket (when `udp`) and one TCP listener on `addr` (both SO_REUSEPORT).
/// An ephemeral port: TCP takes the port UDP got.
type SocketPair = (Option<std::net::UdpSocket>, Option<std::net::TcpListener>);

fn bind_one(
    addr: SocketAddr,
    v6only: bool,
    host: &str,
    (udp, with_tcp): (bool, bool),
) -> std::io::Result<Result<SocketPair, String>> {
    let port = addr.port();
    let udp = if udp {
        let u = new_socket(addr, v6only, Type::DGRAM, Protocol::UDP)?;
        u.bind(&addr.into())?;
        Some(u)
    } else {
        None
    };
    let actual = udp
        .as_ref()
        .and_then(|u| u.local_addr().ok())
        .and_then(|a| a.as_socket())
        .map_or(port, |a| a.port());
    if !with_tcp {
        return Ok(Ok((udp.map(Into::into), None)));
    }
    let taddr = SocketAddr::new(addr.ip(), actual);
    let tcp = (|| {
        let t = new_socket(taddr, v6only, Type::STREAM, Protocol::TCP)?;
        t.bind(&taddr.into())?;
        t.listen(4096)?;
        Ok::<_, std::io::Error>(t)
    })();
    Ok(match tcp {
        Ok(t) => Ok((udp.map(Into::into), Some(t.into()))),
        Err(e) => Err(listen_err("tcp", host, actual, &e)),
    })
}

/// The port a socket set is bound to.
fn bound_port(s: &WorkerSockets) -> Option<u16> {
    match &s.udp {
        Some(u) => u.local_addr().ok().map(|a| a.port()),
        None => s
            .tcp
            .as_ref()
            .and_then(|t| t.local_addr().ok())
            .map(|a| a.port()),
    }
}

/// Binds the sockets of `host:port`. A wildcard host gets two pairs: IPv4 on
/// `0.0.0.0` and IPv6-only on `[::]` (IPv4 clients then take the kernel's
/// cheaper IPv4 path instead of v4-mapped IPv6), reported as `[::]` like
/// CoreDNS's single dual-stack socket.
pub fn bind_sockets(
    host: &str,
    port: u16,
    label: &str,
    transport: Transport,
) -> Result<Vec<WorkerSockets>, String> {
    // DNS over TLS and HTTPS listen on TCP only, DNS over QUIC on UDP only.
    let with_udp = matches!(
        transport,
        Transport::Dns | Transport::Quic | Transport::Https3
    );
    let kinds = (
        with_udp,
        !matches!(transport, Transport::Quic | Transport::Https3),
    );
    let first_net = if with_udp { "udp" } else { "tcp" };
    let set = |udp: Option<std::net::UdpSocket>, tcp: Option<std::net::TcpListener>, udp_local| {
        WorkerSockets {
            label: label.to_owned(),
            udp,
            tcp,
            udp_local,
            transport,
        }
    };
    let mut out = Vec::new();
    if host.is_empty() {
        let v4 = SocketAddr::from(([0, 0, 0, 0], port));
        let (udp, tcp) = bind_one(v4, false, host, kinds)
            .map_err(|e| listen_err(first_net, host, port, &e))??;
        let first = set(udp, tcp, SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)));
        let actual = bound_port(&first).unwrap_or(port);
        let report = SocketAddr::from((Ipv6Addr::UNSPECIFIED, actual));
        out.push(WorkerSockets {
            udp_local: report,
            ..first
        });
        let v6 = SocketAddr::from((Ipv6Addr::UNSPECIFIED, actual));
        match bind_one(v6, true, host, kinds) {
            Ok(Ok((udp, tcp))) => out.push(set(udp, tcp, report)),
            Ok(Err(e)) => return Err(e),
            // No IPv6 on this host: IPv4 only.
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrNotAvailable
                    || e.raw_os_error() == Some(97) => {}
            Err(e) => return Err(listen_err(first_net, host, actual, &e)),
        }
        return Ok(out);
    }
    let h = host.split('%').next().unwrap_or(host);
    let ip: IpAddr = h
        .parse()
        .map_err(|_| format!("listen: invalid address {host}"))?;
    let addr = SocketAddr::from((ip, port));
    let (udp, tcp) =
        bind_one(addr, true, host, kinds).map_err(|e| listen_err(first_net, host, port, &e))??;
    let local = match (&udp, &tcp) {
        (Some(u), _) => u.local_addr(),
        (None, Some(t)) => t.local_addr(),
        (None, None) => Ok(addr),
    }
    .map_or(addr, canonical);
    out.push(set(udp, tcp, local));
    Ok(out)
}

/// Binds every DNS listener of `cfg` for `workers` workers. Listeners whose
/// label is in `existing` are skipped (their sockets are kept by the workers).
pub fn bind_all(
    cfg: &Config,
    workers: usize,
    existing: &[String],
) -> Result<Vec<Vec<WorkerSockets>>, String> {
    let mut per_worker: Vec<Vec<WorkerSockets>> = (0..workers).map(|_| Vec::new()).collect();
    for l in &cfg.listeners {
        if !serves(l.transport) || existing.contains(&l.label) {
            continue;
        }
        // Go's net.ResolveTCPAddr while CoreDNS groups the listeners, before any
        // socket: a service name is looked up, and an error has no `listen tcp` prefix.
        let port = crate::config::go_tcp_port(&l.port)?;
        let mut actual = port;
        // One socket set per worker, or `multisocket N` sets spread round-robin.
        let count = l.sockets.unwrap_or(workers);
        for i in 0..count {
            let v = bind_sockets(&l.host, actual, &l.label, l.transport)?;
            if i == 0 && port == 0 {
                actual = v.first().and_then(bound_port).unwrap_or(0);
            }
            per_worker[i % workers].extend(v);
        }
    }
    Ok(per_worker)
}

/// Commands a worker accepts while running.
pub enum WorkerCmd {
    /// Serve these new sockets too (after a reload added listeners).
    Add(Vec<WorkerSockets>),
    /// Serve this connection, accepted by the io_uring worker on listener `label`
    /// (*proxyproto*'s headers are read on the side worker).
    Conn(std::net::TcpStream, Arc<str>),
}

/// A running worker thread.
pub struct WorkerHandle {
    /// Thread.
    pub thread: std::thread::JoinHandle<()>,
    /// Command channel.
    pub cmds: std::sync::mpsc::Sender<WorkerCmd>,
    /// Wakes the worker to read commands.
    pub wake: Arc<Notify>,
    /// An io_uring worker's companion on tokio's epoll runtime, which serves its `tls://`
    /// and `https://` listeners (TLS and HTTP run on tokio, as forward's DoT and DoH
    /// upstreams do).
    pub side: Option<Box<Self>>,
}

impl WorkerHandle {
    /// Hands new sockets to the worker: `tls://` and `https://` ones to its side worker
    /// if it has one.
    pub fn add(&self, socks: Vec<WorkerSockets>) {
        let (tls, own): (Vec<_>, Vec<_>) = match &self.side {
            Some(_) => socks
                .into_iter()
                .partition(|s| s.transport != Transport::Dns),
            None => (Vec::new(), socks),
        };
        for (h, v) in [(Some(self), own), (self.side.as_deref(), tls)] {
            if let Some(h) = h.filter(|_| !v.is_empty()) {
                let _ = h.cmds.send(WorkerCmd::Add(v));
                h.wake.notify_one();
            }
        }
    }

    /// Whether the worker's threads have ended.
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished() && self.side.as_ref().is_none_or(|s| s.is_finished())
    }
}

/// Starts one io_uring worker thread for `socks`' plain DNS sockets, and its side worker
/// on epoll for the `tls://` and `https://` ones (started also without any, for those a
/// reload adds).
pub fn spawn_uring_worker(
    id: usize,
    shared: Arc<Shared>,
    socks: Vec<WorkerSockets>,
) -> std::io::Result<WorkerHandle> {
    let (tls, dns): (Vec<_>, Vec<_>) = socks
        .into_iter()
        .partition(|s| s.transport != Transport::Dns);
    let side = spawn_epoll_thread(format!("ringdns-t{id}"), Arc::clone(&shared), tls)?;
    let handoff = (side.cmds.clone(), Arc::clone(&side.wake));
    let mut h = uring_worker::spawn(id, shared, dns, handoff)?;
    h.side = Some(Box::new(side));
    Ok(h)
}

/// Starts one epoll worker thread.
pub fn spawn_epoll_worker(
    id: usize,
    shared: Arc<Shared>,
    socks: Vec<WorkerSockets>,
) -> std::io::Result<WorkerHandle> {
    spawn_epoll_thread(format!("ringdns-w{id}"), shared, socks)
}

fn spawn_epoll_thread(
    name: String,
    shared: Arc<Shared>,
    socks: Vec<WorkerSockets>,
) -> std::io::Result<WorkerHandle> {
    let id = name.clone();
    let (tx, rx) = std::sync::mpsc::channel::<WorkerCmd>();
    let wake = Arc::new(Notify::new());
    let wake2 = Arc::clone(&wake);
    let thread = std::thread::Builder::new().name(name).spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                crate::clog::error(&format!("worker {id}: runtime: {e}"));
                return;
            }
        };
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async move {
            let limits = Rc::new(WorkerLimits {
                parked: Cell::new(0),
                tcp_conns: Cell::new(0),
                max_tcp_conns: 16_384,
            });
            let start = |s: WorkerSockets| {
                let label: Arc<str> = Arc::from(s.label.as_str());
                let udp_local = s.udp_local;
                match (s.transport, s.udp, s.tcp) {
                    (Transport::Quic, Some(u), _) => {
                        tokio::task::spawn_local(doq::serve(
                            u,
                            udp_local,
                            label,
                            Arc::clone(&shared),
                        ));
                    }
                    (Transport::Https3, Some(u), _) => {
                        tokio::task::spawn_local(doh3::serve(
                            u,
                            udp_local,
                            label,
                            Arc::clone(&shared),
                        ));
                    }
                    (_, udp, tcp) => {
                        if let Some(Ok(u)) = udp.map(tokio::net::UdpSocket::from_std) {
                            tokio::task::spawn_local(epoll::udp_loop(
                                u,
                                udp_local,
                                label.clone(),
                                Arc::clone(&shared),
                                limits.clone(),
                            ));
                        }
                        if let Some(Ok(t)) = tcp.map(tokio::net::TcpListener::from_std) {
                            tokio::task::spawn_local(epoll::tcp_accept(
                                t,
                                label,
                                Arc::clone(&shared),
                                limits.clone(),
                            ));
                        }
                    }
                }
            };
            for s in socks {
                start(s);
            }
            loop {
                tokio::select! {
                    () = wake2.notified() => {
                        while let Ok(cmd) = rx.try_recv() {
                            match cmd {
                                WorkerCmd::Add(v) => {
                                    for s in v { start(s); }
                                }
                                WorkerCmd::Conn(stream, label) => {
                                    tokio::task::spawn_local(epoll::handed_over(
                                        stream,
                                        label,
                                        Arc::clone(&shared),
                                        limits.clone(),
                                    ));
                                }
                            }
                        }
                    }
                    () = shared.stopping() => break,
                }
            }
            // Give in-flight work a moment to drain.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        });
    })?;
    Ok(WorkerHandle {
        thread,
        cmds: tx,
        wake,
        side: None,
    })
}

/// Banner lines for the listeners of `cfg` (cli-and-ops.md §2.3).
pub fn banner(cfg: &Config) -> String {
    let mut out = String::new();
    for l in &cfg.listeners {
        let mut zones: Vec<&str> = l.sites.iter().map(|(z, _)| z.as_str()).collect();
        zones.sort_unstable();
        zones.dedup();
        let proto = if l.transport == Transport::Dns {
            String::new()
        } else {
            format!("{}://", l.transport)
        };
        let copies = l.sockets.unwrap_or(1);
        for z in zones.iter().copied().cycle().take(zones.len() * copies) {
            if !corefile::keys::rfc1035_preferred(z) {
                out.push_str(&format!(
                    "Warning: Domain {} does not follow RFC1035 preferred syntax\n",
                    corefile::values::go_quote(z)
                ));
            }
            if l.host.is_empty() {
                out.push_str(&format!("{proto}{z}:{}\n", l.port));
            } else {
                out.push_str(&format!("{proto}{z}:{} on {}\n", l.port, l.host));
            }
        }
    }
    out
}

/// A connection limit of `max` per listening socket (CoreDNS runs one limited listener
/// per `multisocket` copy), shared by every worker; `0` is none. A reload that keeps the
/// listener and its limit keeps the same count: the connections it left open still hold
/// their slots (CoreDNS closes them instead).
fn limit_for(
    label: &str,
    max: usize,
    sockets: Option<usize>,
) -> Option<Arc<tokio::sync::Semaphore>> {
    type Limits = HashMap<(String, usize), std::sync::Weak<tokio::sync::Semaphore>>;
    static LIMITS: Mutex<Option<Limits>> = Mutex::new(None);
    if max == 0 {
        return None;
    }
    let n = max
        .saturating_mul(sockets.unwrap_or(1).max(1))
        .min(tokio::sync::Semaphore::MAX_PERMITS);
    let mut g = LIMITS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let map = g.get_or_insert_with(HashMap::new);
    map.retain(|_, w| w.strong_count() > 0);
    let key = (label.to_owned(), n);
    if let Some(sem) = map.get(&key).and_then(std::sync::Weak::upgrade) {
        return Some(sem);
    }
    let sem = Arc::new(tokio::sync::Semaphore::new(n));
    map.insert(key, Arc::downgrade(&sem));
    Some(sem)
}

/// The transports ringdns serves: plain DNS (UDP and TCP), DNS over TLS, HTTPS and QUIC,
/// and CoreDNS's gRPC service.
pub fn serves(t: Transport) -> bool {
    matches!(
        t,
        Transport::Dns
            | Transport::Tls
            | Transport::Https
            | Transport::Https3
            | Transport::Quic
            | Transport::Grpc
    )
}

/// Labels → listeners of a config, for reload diffs.
pub fn labels(cfg: &Config) -> HashMap<String, ()> {
    cfg.listeners
        .iter()
        .filter(|l| serves(l.transport))
        .map(|l| (l.label.clone(), ()))
        .collect()
}

/// Serialises reloads.
pub static RELOAD_LOCK: Mutex<()> = Mutex::new(());
