//! `ringdns-perf relay LISTEN UPSTREAM`: the cheapest UDP DNS forwarder there is, as a
//! yardstick for forwarding benchmarks (`../shared/bench` scenario S2). It does only what the
//! kernel makes every forwarder do, two receives and two sends per query, in batches of up
//! to 64 (`recvmmsg`/`sendmmsg`, as the bench's udp_echo), and nothing a real forwarder adds:
//! no parsing, no question check, no timeout, one upstream socket, upstream IDs taken in
//! turn (predictable: never use it as a resolver). A query whose ID slot is reused before its
//! reply arrives is simply lost. Its queries per server core are the ceiling any forwarder
//! can reach on the same machine and kernel.
//!
//! `relay --uring` does the same on the workspace's io_uring engine, sized as a ringdns
//! worker's (multishot receive over provided buffers, the upstream socket on the same ring,
//! one `io_uring_enter` per batch that submits the sends and waits): the ceiling of a
//! forwarder built on that engine, so a forward benchmark can tell the engine's cost from
//! the cost of the DNS work above it.

use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg};

/// Datagrams per system call.
const BATCH: usize = 64;
/// Receive buffer per datagram.
const BUF: usize = 4096;

/// Runs the relay until the process is killed (`--uring`: until SIGTERM or SIGINT, after
/// which it drains its ring and exits).
pub fn main(args: &[String]) -> Result<()> {
    let (ring, args) = match args {
        [flag, rest @ ..] if flag == "--uring" => (true, rest),
        _ => (false, args),
    };
    let [listen, upstream] = args else {
        bail!("usage: ringdns-perf relay [--uring] LISTEN_ADDR:PORT UPSTREAM_ADDR:PORT");
    };
    let listen: SocketAddr = listen.parse().context("LISTEN_ADDR:PORT")?;
    let upstream: SocketAddr = upstream.parse().context("UPSTREAM_ADDR:PORT")?;
    let client = UdpSocket::bind(listen).with_context(|| format!("binding {listen}"))?;
    let up = crate::udp::open_socket(upstream, None)?;
    if ring {
        let stop = stop_on_signal()?;
        return run_uring(client, up, &stop);
    }
    client.set_nonblocking(true)?;
    Relay::new().run(&client, &up)
}

/// The relay on the io_uring engine: each batch of completions is relayed, and its sends
/// go to the kernel with the next wait.
fn run_uring(client: UdpSocket, up: UdpSocket, stop: &AtomicBool) -> Result<()> {
    // As a ringdns worker's engine (`server::uring_worker::engine_config`).
    let cfg = uring::EngineConfig {
        udp_buf_count: 256,
        udp_buf_size: BUF as u32,
        send_slots: 4096,
        udp_send_size: 65535,
        max_tcp_conns: 1,
        ..uring::EngineConfig::default()
    };
    let mut eng = uring::Engine::new(cfg).context("io_uring engine")?;
    let cid = eng.add_udp(client).context("adding the client socket")?;
    let uid = eng
        .add_upstream_udp(up)
        .context("adding the upstream socket")?;
    let mut asked: Vec<Option<(SocketAddr, u16)>> = vec![None; 65536];
    let mut next_id = 0u16;
    let mut buf = Vec::with_capacity(BUF);
    // Killed outright, the process would leave the ring's teardown (and the close of its
    // sockets) to the kernel's background work, and whoever binds the port next may find
    // it still taken: on a signal the engine is dropped instead, which cancels its
    // operations and closes the sockets before the process exits.
    while !stop.load(Ordering::Relaxed) {
        eng.submit_and_wait(1, Some(Duration::from_millis(100)))
            .context("io_uring_enter")?;
        eng.poll_events(&mut |h, ev| match ev {
            uring::Event::Udp {
                sock, peer, data, ..
            } if sock == cid && data.len() >= 12 => {
                let id = next_id;
                next_id = next_id.wrapping_add(1);
                asked[usize::from(id)] = Some((peer, u16::from_be_bytes([data[0], data[1]])));
                buf.clear();
                buf.extend_from_slice(data);
                buf[..2].copy_from_slice(&id.to_be_bytes());
                let _ = h.send_upstream_udp(uid, &buf);
            }
            uring::Event::UpstreamUdp { id, data } if id == uid && data.len() >= 12 => {
                let k = usize::from(u16::from_be_bytes([data[0], data[1]]));
                if let Some((peer, orig)) = asked[k].take() {
                    buf.clear();
                    buf.extend_from_slice(data);
                    buf[..2].copy_from_slice(&orig.to_be_bytes());
                    let _ = h.send_udp(cid, peer, &buf);
                }
            }
            _ => {}
        });
    }
    drop(eng);
    Ok(())
}

/// A flag set when SIGTERM or SIGINT arrives: both are blocked on this thread (and on any it
/// starts later) and a thread waits for them, so no handler runs on the relay's path.
fn stop_on_signal() -> Result<Arc<AtomicBool>> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set.thread_block().context("blocking SIGTERM and SIGINT")?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let _ = set.wait();
            flag.store(true, Ordering::Relaxed);
        })
        .context("starting the signal thread")?;
    Ok(stop)
}

struct Relay {
    /// Who asked, by upstream ID: the client's address and its own ID.
    asked: Vec<Option<(SockaddrStorage, u16)>>,
    next_id: u16,
    buf: Vec<u8>,
    lens: [usize; BATCH],
    from: [Option<SockaddrStorage>; BATCH],
    recv_hdr: MultiHeaders<SockaddrStorage>,
    send_hdr: MultiHeaders<SockaddrStorage>,
}

impl Relay {
    fn new() -> Self {
        Self {
            asked: vec![None; 65536],
            next_id: 0,
            buf: vec![0; BATCH * BUF],
            lens: [0; BATCH],
            from: [None; BATCH],
            recv_hdr: MultiHeaders::preallocate(BATCH, None),
            send_hdr: MultiHeaders::preallocate(BATCH, None),
        }
    }

    fn run(&mut self, client: &UdpSocket, up: &UdpSocket) -> Result<()> {
        loop {
            let (c, u) = {
                let mut fds = [
                    PollFd::new(client.as_fd(), PollFlags::POLLIN),
                    PollFd::new(up.as_fd(), PollFlags::POLLIN),
                ];
                match poll(&mut fds, PollTimeout::NONE) {
                    Ok(_) | Err(Errno::EINTR) => {}
                    Err(e) => bail!("poll: {e}"),
                }
                let ready = |f: &PollFd<'_>| f.revents().is_some_and(|r| !r.is_empty());
                (ready(&fds[0]), ready(&fds[1]))
            };
            if c {
                self.queries(client, up);
            }
            if u {
                self.replies(client, up);
            }
        }
    }

    /// Reads up to a batch from `sock` into `buf`; the count.
    fn recv(&mut self, sock: &UdpSocket) -> usize {
        let mut chunks = self.buf.chunks_mut(BUF);
        let mut iovs: [[IoSliceMut<'_>; 1]; BATCH] =
            std::array::from_fn(|_| [IoSliceMut::new(chunks.next().unwrap_or(&mut []))]);
        let Ok(res) = recvmmsg(
            sock.as_raw_fd(),
            &mut self.recv_hdr,
            iovs.iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        ) else {
            return 0;
        };
        let mut n = 0;
        for (j, m) in res.enumerate() {
            self.lens[j] = m.bytes;
            self.from[j] = m.address;
            n += 1;
        }
        n
    }

    /// Sends datagrams `0..n` of `buf`, to `to[j]` or (connected) to the peer.
    fn send(&mut self, sock: &UdpSocket, n: usize, to: &[Option<SockaddrStorage>]) {
        let mut chunks = self.buf.chunks(BUF);
        let lens = self.lens;
        let iovs: [[IoSlice<'_>; 1]; BATCH] = std::array::from_fn(|j| {
            let c = chunks.next().unwrap_or(&[]);
            [IoSlice::new(&c[..lens[j].min(c.len())])]
        });
        let _ = sendmmsg(
            sock.as_raw_fd(),
            &mut self.send_hdr,
            iovs[..n].iter(),
            &to[..n],
            [],
            MsgFlags::MSG_DONTWAIT,
        );
    }

    /// Client queries to the upstream, each under the next upstream ID.
    fn queries(&mut self, client: &UdpSocket, up: &UdpSocket) {
        loop {
            let n = self.recv(client);
            let mut k = 0;
            for j in 0..n {
                let (len, Some(from)) = (self.lens[j], self.from[j]) else {
                    continue;
                };
                if len < 12 {
                    continue;
                }
                let id = self.next_id;
                self.next_id = self.next_id.wrapping_add(1);
                let d = &mut self.buf[j * BUF..j * BUF + len];
                self.asked[usize::from(id)] = Some((from, u16::from_be_bytes([d[0], d[1]])));
                d[..2].copy_from_slice(&id.to_be_bytes());
                if k != j {
                    self.buf.copy_within(j * BUF..j * BUF + len, k * BUF);
                    self.lens[k] = len;
                }
                k += 1;
            }
            self.send(up, k, &[None; BATCH]);
            if n < BATCH {
                return;
            }
        }
    }

    /// Upstream replies back to their clients, under the clients' IDs.
    fn replies(&mut self, client: &UdpSocket, up: &UdpSocket) {
        loop {
            let n = self.recv(up);
            let mut to = [None; BATCH];
            let mut k = 0;
            for j in 0..n {
                let len = self.lens[j];
                if len < 12 {
                    continue;
                }
                let d = &mut self.buf[j * BUF..j * BUF + len];
                let id = u16::from_be_bytes([d[0], d[1]]);
                let Some((addr, orig)) = self.asked[usize::from(id)].take() else {
                    continue;
                };
                d[..2].copy_from_slice(&orig.to_be_bytes());
                if k != j {
                    self.buf.copy_within(j * BUF..j * BUF + len, k * BUF);
                    self.lens[k] = len;
                }
                to[k] = Some(addr);
                k += 1;
            }
            self.send(client, k, &to);
            if n < BATCH {
                return;
            }
        }
    }
}
