//! The epoll backend: per-worker tokio tasks over SO_REUSEPORT sockets, UDP in
//! `recvmmsg`/`sendmmsg` batches (crate `fallback`), TCP with framing, idle
//! and read timeouts, and a per-worker connection cap.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use corefile::keys::Transport;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;

use super::handle::{Meta, Outcome, handle, resume, scrub_more};
use super::parked::{Inbox, Job};
use super::{CountGuard, Shared, WorkerLimits, canonical};
use crate::chain::Proto;

/// Queries parked at once per worker; beyond it new parked work is dropped.
pub const MAX_PARKED: usize = 16_384;

/// The resident task of a parked-query slot: runs the queries its slot is given, each to
/// its end, and queues their replies for the loop's next `sendmmsg`. (An `async` block,
/// not an `async fn`: an `async fn` keeps a second copy of its arguments in its future.)
#[allow(clippy::manual_async_fn)] // see above
fn slot_task<'a>(
    inbox: Rc<Inbox<(Job, SocketAddr)>>,
    replies: &'a Replies,
    limits: &'a WorkerLimits,
) -> impl std::future::Future<Output = ()> + 'a {
    async move {
        loop {
            let (j, to) = inbox.next().await;
            // Counted out however the query ends (a panic included).
            let _parked = CountGuard(&limits.parked);
            if let Some(resp) = j.run().await {
                replies.queue.borrow_mut().push((resp, to));
            }
        }
    }
}

/// Serves one UDP socket until shutdown. Queries a plugin parks run on the loop's own
/// executor ([`super::parked::Parked`]), polled right after the batch that woke them, and
/// their replies leave with the loop's next `sendmmsg`.
pub async fn udp_loop(
    sock: UdpSocket,
    local: SocketAddr,
    label: Arc<str>,
    shared: Arc<Shared>,
    limits: Rc<WorkerLimits>,
) {
    let mut batch = fallback::UdpBatch::new(Arc::new(sock), 4096);
    let mut scratch = Vec::with_capacity(4096);
    let replies = Replies::default();
    // Parked queries and the address their reply goes to.
    let mut jobs: Vec<(Job, SocketAddr)> = Vec::new();
    let mut parked = super::parked::Parked::new();
    loop {
        for j in jobs.drain(..) {
            parked.spawn(j, |inbox| slot_task(inbox, &replies, &limits));
        }
        // forward's upstream queries of this run leave together (one sendmmsg per socket).
        crate::plugins::forward::udp::batch_sends(|| parked.run());
        send_replies(&mut batch, &replies, &label);
        if parked.has_ready() {
            // Woken while polled: let the worker's other tasks run first.
            tokio::task::yield_now().await;
            continue;
        }
        let n = tokio::select! {
            r = batch.recv() => match r { Ok(n) => n, Err(_) => continue },
            () = parked.notified() => continue,
            () = shared.stopping() => break,
        };
        if n == 0 {
            continue;
        }
        let now = Instant::now();
        let active = shared.active.load();
        let Some(l) = active.find(&label) else { break };
        batch.process(|data, peer, _trunc, resp| {
            let peer = canonical(peer);
            // miekg's read size (parked queries keep this cut too).
            let data = crate::wire::udp_read(data);
            // *proxyproto*: the header's client; replies go to the sender.
            let (data, client) =
                crate::plugins::proxyproto::datagram(l.proxy.as_deref(), data, peer)?;
            let meta = Meta {
                proto: Proto::Udp,
                peer: client,
                local,
                now,
            };
            match handle(l, data, meta, resp, &mut scratch) {
                // A stream is TCP-only; over UDP only its first message exists.
                Outcome::Reply | Outcome::Stream(_) => Some(peer),
                Outcome::Drop => None,
                Outcome::Parked { block, at, st } => {
                    if limits.parked.get() >= MAX_PARKED {
                        return None;
                    }
                    limits.parked.set(limits.parked.get() + 1);
                    jobs.push((Job::new(l, block, data, meta, at, st), peer));
                    None
                }
            }
        });
        // This batch's replies leave at the top of the loop, with those of the queries
        // it parked that finish at once: one `sendmmsg`.
        drop(active);
    }
    if shared.is_stopping() {
        return;
    }
    // The socket's server block is gone (a reload): the queries still parked finish
    // (within forward's 5 s budget) and are answered.
    for j in jobs.drain(..) {
        parked.spawn(j, |inbox| slot_task(inbox, &replies, &limits));
    }
    loop {
        // forward's upstream queries of this run leave together (one sendmmsg per socket).
        crate::plugins::forward::udp::batch_sends(|| parked.run());
        send_replies(&mut batch, &replies, &label);
        if parked.running() == 0 {
            break;
        }
        parked.notified().await;
    }
}

/// Replies of a UDP socket's parked queries, waiting for its loop to send them.
#[derive(Default)]
struct Replies {
    queue: RefCell<Vec<(super::bufpool::Buf, SocketAddr)>>,
}

/// Sends the batch's replies and the parked queries' replies queued so far.
fn send_replies(batch: &mut fallback::UdpBatch, replies: &Replies, label: &str) {
    let before = batch.send_drops;
    for (resp, peer) in replies.queue.borrow_mut().drain(..) {
        batch.queue(&resp, peer);
    }
    batch.flush();
    crate::metrics::count_send_drops(label, batch.send_drops - before);
}

/// `https://`/`grpc://` connections beyond `max_connections` that one worker accepts and
/// holds waiting for a slot; beyond them it stops accepting.
const MAX_WAITING: usize = 64;

/// Accepts TCP connections until shutdown.
pub async fn tcp_accept(
    l: TcpListener,
    label: Arc<str>,
    shared: Arc<Shared>,
    limits: Rc<WorkerLimits>,
) {
    // `https://` and `grpc://` connections accepted beyond `max_connections` that wait
    // for a slot on this worker.
    let waiting = Rc::new(Cell::new(0usize));
    loop {
        if shared.active.load().find(&label).is_none() {
            break;
        }
        let (stream, peer) = tokio::select! {
            r = l.accept() => match r { Ok(x) => x, Err(_) => { tokio::time::sleep(std::time::Duration::from_millis(10)).await; continue } },
            () = shared.stopping() => break,
        };
        if limits.tcp_conns.get() >= limits.max_tcp_conns {
            drop(stream);
            continue;
        }
        limits.tcp_conns.set(limits.tcp_conns.get() + 1);
        // A `tls://` listener with a *tls* plugin: the configuration of the moment (a
        // reload's new certificate serves the connections accepted after it).
        let (tls, http, grpc, limit, proxy) = {
            let active = shared.active.load();
            match active.find(&label) {
                Some(l) => (
                    l.tls.clone(),
                    matches!(l.transport, Transport::Https | Transport::Grpc),
                    l.grpc,
                    l.conn_limit.clone(),
                    l.proxy_wait(),
                ),
                // Removed by a reload while this connection waited: not served.
                None => {
                    limits
                        .tcp_conns
                        .set(limits.tcp_conns.get().saturating_sub(1));
                    break;
                }
            }
        };
        // `max_connections` (Go's `LimitListener`, one listener for all cores): a
        // connection beyond it waits for a slot before it is served. Each worker lets at
        // most MAX_WAITING wait, then stops accepting until one is served, so the rest
        // wait in the kernel's backlog as in Go. (Slots are taken after the accept: taken
        // before, a worker would hold one idle while clients queue on another worker's
        // socket.)
        let permit = match limit.map(|sem| (sem.clone().try_acquire_owned(), sem)) {
            None => None,
            Some((Ok(p), _)) => Some(Ok(p)),
            Some((Err(_), sem)) if waiting.get() < MAX_WAITING => {
                waiting.set(waiting.get() + 1);
                Some(Err(sem))
            }
            Some((Err(_), sem)) => {
                let p = tokio::select! {
                    p = sem.acquire_owned() => p,
                    () = shared.stopping() => break,
                };
                match p {
                    Ok(p) => Some(Ok(p)),
                    Err(_) => {
                        limits
                            .tcp_conns
                            .set(limits.tcp_conns.get().saturating_sub(1));
                        continue;
                    }
                }
            }
        };
        let shared = Arc::clone(&shared);
        let limits = limits.clone();
        let label = label.clone();
        let waiting = Rc::clone(&waiting);
        tokio::task::spawn_local(async move {
            // Counted out however the connection ends (a panic included).
            let _conn = CountGuard(&limits.tcp_conns);
            if http {
                let permit = match permit {
                    None => None,
                    Some(Ok(p)) => Some(p),
                    Some(Err(sem)) => {
                        // Counted in by the accept loop, out however this ends.
                        let _w = CountGuard(&waiting);
                        tokio::select! {
                            p = sem.acquire_owned() => match p {
                                Ok(p) => Some(p),
                                Err(_) => return,
                            },
                            () = shared.stopping() => return,
                        }
                    }
                };
                let Some((stream, peer, local)) = proxied(stream, peer, proxy).await else {
                    return;
                };
                super::doh::conn(stream, (peer, local), label, shared, tls, permit, grpc).await;
            } else {
                let Some((stream, peer, local)) = proxied(stream, peer, proxy).await else {
                    return;
                };
                tcp_conn(stream, peer, local, &label, &shared, tls).await;
            }
        });
    }
}

/// A new connection's client and local address: the socket's, or with *proxyproto*
/// (and its read timeout) those of the PROXY header it begins with. `None`: close it.
async fn proxied(
    mut stream: tokio::net::TcpStream,
    peer: SocketAddr,
    proxy: Option<(
        Arc<crate::plugins::proxyproto::ProxyProto>,
        std::time::Duration,
    )>,
) -> Option<(tokio::net::TcpStream, SocketAddr, SocketAddr)> {
    let peer = canonical(peer);
    let local = stream.local_addr().map(canonical).unwrap_or(peer);
    let Some((pp, wait)) = proxy else {
        return Some((stream, peer, local));
    };
    let (peer, local) = pp.tcp(&mut stream, peer, local, wait).await.ok()?;
    Some((stream, peer, local))
}

/// Serves a plain DNS connection the io_uring worker accepted on listener `label` and
/// handed over (its blocks have *proxyproto*).
pub async fn handed_over(
    stream: std::net::TcpStream,
    label: Arc<str>,
    shared: Arc<Shared>,
    limits: Rc<WorkerLimits>,
) {
    if limits.tcp_conns.get() >= limits.max_tcp_conns || stream.set_nonblocking(true).is_err() {
        return;
    }
    let Ok(stream) = tokio::net::TcpStream::from_std(stream) else {
        return;
    };
    let Ok(peer) = stream.peer_addr() else {
        return;
    };
    limits.tcp_conns.set(limits.tcp_conns.get() + 1);
    let _conn = CountGuard(&limits.tcp_conns);
    let proxy = {
        let active = shared.active.load();
        let Some(l) = active.find(&label) else {
            return;
        };
        l.proxy_wait()
    };
    let Some((stream, peer, local)) = proxied(stream, peer, proxy).await else {
        return;
    };
    tcp_conn(stream, peer, local, &label, &shared, None).await;
}

async fn tcp_conn(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    label: &str,
    shared: &Arc<Shared>,
    tls: Option<Arc<rustls::ServerConfig>>,
) {
    let _ = stream.set_nodelay(true);
    let timeouts = {
        let active = shared.active.load();
        active.find(label).map(|l| l.timeouts).unwrap_or_default()
    };
    let Some(cfg) = tls else {
        serve_stream(stream, peer, local, label, shared, timeouts, timeouts.read).await;
        return;
    };
    // DNS over TLS: the handshake and the first message within the read timeout, as
    // miekg's server reads the first message through Go's lazy handshake.
    let start = Instant::now();
    let accept = tokio_rustls::TlsAcceptor::from(cfg).accept(stream);
    let session = tokio::select! {
        r = tokio::time::timeout(timeouts.read, accept) => match r {
            Ok(Ok(s)) => s,
            // A failed or slow handshake closes the connection (miekg logs nothing).
            _ => return,
        },
        () = shared.stopping() => return,
    };
    let first = timeouts.read.saturating_sub(start.elapsed());
    serve_stream(session, peer, local, label, shared, timeouts, first).await;
}

/// Serves DNS messages framed on `stream` (TCP, or a TLS session over it) until the
/// client closes, a timeout, or the query limit; the first message must come within
/// `first`.
async fn serve_stream<S>(
    stream: S,
    peer: SocketAddr,
    local: SocketAddr,
    label: &str,
    shared: &Arc<Shared>,
    timeouts: crate::plugins::timeouts::Timeouts,
    first_wait: std::time::Duration,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(64);
    let pending = Rc::new(Cell::new(0usize));
    let writer = tokio::task::spawn_local(async move {
        while let Some(msg) = rx.recv().await {
            if fallback::tcp::write_msg(&mut wr, &msg, timeouts.write)
                .await
                .is_err()
            {
                return;
            }
        }
        // A clean end (TLS: close_notify; TCP: FIN).
        let _ =
            tokio::time::timeout(timeouts.write, tokio::io::AsyncWriteExt::shutdown(&mut wr)).await;
    });
    let mut buf = Vec::with_capacity(512);
    let mut scratch = Vec::new();
    let mut first = true;
    let mut count: i64 = 0;
    loop {
        let t = if first { first_wait } else { timeouts.idle };
        first = false;
        tokio::select! {
            r = fallback::tcp::read_msg(&mut rd, &mut buf, t) => match r {
                Ok(true) => {}
                _ => break,
            },
            () = shared.stopping() => break,
        }
        let now = Instant::now();
        let mut resp = Vec::with_capacity(512);
        let mut stream = None;
        let out = {
            let active = shared.active.load();
            let Some(l) = active.find(label) else { break };
            let meta = Meta {
                proto: Proto::Tcp,
                peer,
                local,
                now,
            };
            match handle(l, &buf, meta, &mut resp, &mut scratch) {
                Outcome::Parked { block, at, st } => {
                    let disp = Arc::clone(&l.disp);
                    let data = buf.clone();
                    let tx = tx.clone();
                    let pending = pending.clone();
                    pending.set(pending.get() + 1);
                    tokio::task::spawn_local(async move {
                        let mut scratch = Vec::new();
                        if let Outcome::Reply =
                            resume(&disp, block, &data, &meta, at, st, &mut resp, &mut scratch)
                                .await
                        {
                            let _ = tx.send(resp).await;
                        }
                        pending.set(pending.get() - 1);
                    });
                    None
                }
                Outcome::Reply => Some(resp),
                Outcome::Stream(more) => {
                    stream = Some(more);
                    Some(resp)
                }
                Outcome::Drop => None,
            }
        };
        if let Some(r) = out {
            if tx.send(r).await.is_err() {
                break;
            }
        }
        // A zone transfer: the following messages, as the writer drains.
        if let Some(more) = stream {
            let mut gone = false;
            for mut m in more {
                scrub_more(&buf, &mut m);
                if tx.send(m).await.is_err() {
                    gone = true;
                    break;
                }
            }
            if gone {
                break;
            }
        }
        count += 1;
        if timeouts.max_tcp_queries > 0 && count >= timeouts.max_tcp_queries {
            break;
        }
    }
    drop(tx);
    // Let parked queries of this connection finish (bounded by their own timers).
    let _ = writer.await;
}
