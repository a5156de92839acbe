//! Batched UDP on a tokio socket.

use std::io;
use std::net::SocketAddr;

use std::sync::Arc;
use tokio::io::Interest;

use tokio::net::UdpSocket;

/// Datagrams per `recvmmsg`/`sendmmsg` call.
pub const BATCH: usize = 32;

/// Receive buffers and a send queue for one socket.
pub struct UdpBatch {
    sock: Arc<UdpSocket>,
    bufs: Vec<Vec<u8>>,
    lens: [usize; BATCH],
    peers: [Option<SocketAddr>; BATCH],
    truncated: [bool; BATCH],
    n: usize,
    out: Vec<Vec<u8>>,
    out_to: [Option<SocketAddr>; BATCH],
    out_n: usize,
    #[cfg(target_os = "linux")]
    rx_hdrs: nix::sys::socket::MultiHeaders<nix::sys::socket::SockaddrStorage>,
    #[cfg(target_os = "linux")]
    tx_hdrs: nix::sys::socket::MultiHeaders<nix::sys::socket::SockaddrStorage>,
    /// Replies dropped because the socket would block.
    pub send_drops: u64,
}

impl UdpBatch {
    /// Wraps `sock`; `buf_size` is the receive buffer per datagram.
    pub fn new(sock: Arc<UdpSocket>, buf_size: usize) -> Self {
        Self {
            sock,
            bufs: (0..BATCH).map(|_| vec![0u8; buf_size]).collect(),
            lens: [0; BATCH],
            peers: [None; BATCH],
            truncated: [false; BATCH],
            n: 0,
            out: (0..BATCH).map(|_| Vec::with_capacity(512)).collect(),
            out_to: [None; BATCH],
            out_n: 0,
            #[cfg(target_os = "linux")]
            rx_hdrs: nix::sys::socket::MultiHeaders::preallocate(BATCH, None),
            #[cfg(target_os = "linux")]
            tx_hdrs: nix::sys::socket::MultiHeaders::preallocate(BATCH, None),
            send_drops: 0,
        }
    }

    /// The socket (shared with tasks that answer parked queries later).
    pub fn socket(&self) -> &Arc<UdpSocket> {
        &self.sock
    }

    /// Waits for datagrams and receives a batch; returns how many.
    pub async fn recv(&mut self) -> io::Result<usize> {
        loop {
            self.sock.readable().await?;
            match self.try_recv() {
                Ok(0) => continue,
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }

    #[cfg(target_os = "linux")]
    fn try_recv(&mut self) -> io::Result<usize> {
        use nix::sys::socket::{MsgFlags, recvmmsg};
        use std::io::IoSliceMut;
        use std::os::fd::AsRawFd;

        let fd = self.sock.as_raw_fd();
        let Self {
            sock,
            bufs,
            lens,
            peers,
            truncated,
            n,
            rx_hdrs,
            ..
        } = self;
        let got = sock.try_io(Interest::READABLE, || {
            let mut arr: [[IoSliceMut<'_>; 1]; BATCH] = {
                let mut it = bufs.iter_mut();
                std::array::from_fn(|_| match it.next() {
                    Some(b) => [IoSliceMut::new(b.as_mut_slice())],
                    None => [IoSliceMut::new(&mut [])],
                })
            };
            let res = recvmmsg(fd, rx_hdrs, arr.iter_mut(), MsgFlags::MSG_DONTWAIT, None)
                .map_err(io::Error::from)?;
            let mut k = 0;
            for r in res {
                lens[k] = r.bytes;
                truncated[k] = r.flags.contains(MsgFlags::MSG_TRUNC);
                peers[k] = r.address.and_then(|a: nix::sys::socket::SockaddrStorage| {
                    if let Some(v4) = a.as_sockaddr_in() {
                        Some(SocketAddr::from((v4.ip(), v4.port())))
                    } else {
                        a.as_sockaddr_in6()
                            .map(|v6| SocketAddr::from((v6.ip(), v6.port())))
                    }
                });
                k += 1;
            }
            Ok(k)
        })?;
        *n = got;
        Ok(got)
    }

    #[cfg(not(target_os = "linux"))]
    fn try_recv(&mut self) -> io::Result<usize> {
        let mut k = 0;
        while k < BATCH {
            match self.sock.try_recv_from(&mut self.bufs[k]) {
                Ok((len, peer)) => {
                    self.lens[k] = len;
                    self.peers[k] = Some(peer);
                    self.truncated[k] = false;
                    k += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && k > 0 => break,
                Err(e) => return Err(e),
            }
        }
        self.n = k;
        Ok(k)
    }

    /// Datagram `i` of the last batch: bytes, sender, and whether it was cut.
    pub fn get(&self, i: usize) -> Option<(&[u8], SocketAddr, bool)> {
        if i >= self.n {
            return None;
        }
        Some((
            &self.bufs[i][..self.lens[i].min(self.bufs[i].len())],
            self.peers[i]?,
            self.truncated[i],
        ))
    }

    /// Runs `f` over every datagram of the last batch; `f` writes a reply into
    /// the given buffer and returns where to send it (or `None`). Replies are
    /// queued and sent with [`Self::flush`].
    pub fn process(
        &mut self,
        mut f: impl FnMut(&[u8], SocketAddr, bool, &mut Vec<u8>) -> Option<SocketAddr>,
    ) {
        for i in 0..self.n {
            let Some(peer) = self.peers[i] else { continue };
            if self.out_n == BATCH {
                self.flush();
            }
            let data = &self.bufs[i][..self.lens[i].min(self.bufs[i].len())];
            let slot = &mut self.out[self.out_n];
            if let Some(to) = f(data, peer, self.truncated[i], slot) {
                self.out_to[self.out_n] = Some(to);
                self.out_n += 1;
            }
        }
    }

    /// Queues a reply (copied); flushes first when the queue is full.
    pub fn queue(&mut self, data: &[u8], to: SocketAddr) {
        if self.out_n == BATCH {
            self.flush();
        }
        let slot = &mut self.out[self.out_n];
        slot.clear();
        slot.extend_from_slice(data);
        self.out_to[self.out_n] = Some(to);
        self.out_n += 1;
    }

    /// Sends every queued reply (one `sendmmsg` on Linux). Replies the kernel
    /// won't take right now are dropped and counted, as a UDP server must.
    pub fn flush(&mut self) {
        if self.out_n == 0 {
            return;
        }
        let mut sent = 0;
        while sent < self.out_n {
            match self.try_send_from(sent) {
                Ok(0) => break,
                Ok(k) => sent += k,
                Err(_) => {
                    // Skip the datagram that failed (e.g. unreachable peer).
                    self.send_drops += 1;
                    sent += 1;
                }
            }
        }
        self.out_n = 0;
    }

    #[cfg(target_os = "linux")]
    fn try_send_from(&mut self, from: usize) -> io::Result<usize> {
        use nix::sys::socket::SockaddrStorage;
        use std::os::fd::AsRawFd;

        let fd = self.sock.as_raw_fd();
        let count = self.out_n - from;
        let Self {
            out,
            out_to,
            tx_hdrs,
            ..
        } = self;
        let msgs: [&[u8]; BATCH] =
            std::array::from_fn(|i| if i < count { &out[from + i][..] } else { &[] });
        let addrs: [Option<SockaddrStorage>; BATCH] = std::array::from_fn(|i| {
            if i < count {
                out_to[from + i].map(SockaddrStorage::from)
            } else {
                None
            }
        });
        send_batch(fd, tx_hdrs, &msgs[..count], &addrs[..count])
    }

    #[cfg(not(target_os = "linux"))]
    fn try_send_from(&mut self, from: usize) -> io::Result<usize> {
        let to = self.out_to[from].ok_or_else(|| io::Error::other("no address"))?;
        self.sock.try_send_to(&self.out[from], to)?;
        Ok(1)
    }
}

/// One `sendmmsg` of `msgs` (at most `BATCH`), to `addrs` (`None`: the connected peer),
/// without waiting; returns how many the kernel took.
#[cfg(target_os = "linux")]
fn send_batch(
    fd: std::os::fd::RawFd,
    hdrs: &mut nix::sys::socket::MultiHeaders<nix::sys::socket::SockaddrStorage>,
    msgs: &[&[u8]],
    addrs: &[Option<nix::sys::socket::SockaddrStorage>],
) -> io::Result<usize> {
    use nix::sys::socket::{ControlMessage, MsgFlags, sendmmsg};
    use std::io::IoSlice;

    let count = msgs.len().min(BATCH);
    let slices: [[IoSlice<'_>; 1]; BATCH] =
        std::array::from_fn(|i| [IoSlice::new(if i < count { msgs[i] } else { &[] })]);
    let cmsgs: [ControlMessage<'_>; 0] = [];
    let res = sendmmsg(
        fd,
        hdrs,
        slices[..count].iter(),
        &addrs[..count],
        cmsgs,
        MsgFlags::MSG_DONTWAIT,
    )
    .map_err(io::Error::from)?;
    Ok(res.count())
}

/// Receive buffers for reading a connected socket (an upstream's replies) in batches.
pub struct RecvMany {
    bufs: Vec<Vec<u8>>,
    lens: [usize; BATCH],
    #[cfg(target_os = "linux")]
    hdrs: nix::sys::socket::MultiHeaders<nix::sys::socket::SockaddrStorage>,
}

impl RecvMany {
    /// `BATCH` buffers of `buf_size` bytes.
    pub fn new(buf_size: usize) -> Self {
        Self {
            bufs: (0..BATCH).map(|_| vec![0u8; buf_size]).collect(),
            lens: [0; BATCH],
            #[cfg(target_os = "linux")]
            hdrs: nix::sys::socket::MultiHeaders::preallocate(BATCH, None),
        }
    }

    /// Reads what `sock` has queued, up to `BATCH` datagrams (one `recvmmsg` on Linux),
    /// and hands each to `f`; returns how many. `WouldBlock` when nothing was queued;
    /// other errors are the socket's (an ICMP unreachable on a connected socket).
    pub fn try_recv(&mut self, sock: &UdpSocket, mut f: impl FnMut(&[u8])) -> io::Result<usize> {
        let n = self.fill(sock)?;
        for (b, &len) in self.bufs.iter().zip(&self.lens).take(n) {
            f(&b[..len.min(b.len())]);
        }
        Ok(n)
    }

    #[cfg(target_os = "linux")]
    fn fill(&mut self, sock: &UdpSocket) -> io::Result<usize> {
        use nix::sys::socket::{MsgFlags, recvmmsg};
        use std::io::IoSliceMut;
        use std::os::fd::AsRawFd;

        let fd = sock.as_raw_fd();
        let Self { bufs, lens, hdrs } = self;
        sock.try_io(Interest::READABLE, || {
            let mut arr: [[IoSliceMut<'_>; 1]; BATCH] = {
                let mut it = bufs.iter_mut();
                std::array::from_fn(|_| match it.next() {
                    Some(b) => [IoSliceMut::new(b.as_mut_slice())],
                    None => [IoSliceMut::new(&mut [])],
                })
            };
            let res = recvmmsg(fd, hdrs, arr.iter_mut(), MsgFlags::MSG_DONTWAIT, None)
                .map_err(io::Error::from)?;
            let mut k = 0;
            for r in res {
                lens[k] = r.bytes;
                k += 1;
            }
            if k == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(k)
        })
    }

    #[cfg(not(target_os = "linux"))]
    fn fill(&mut self, sock: &UdpSocket) -> io::Result<usize> {
        let mut k = 0;
        while k < BATCH {
            match sock.try_recv(&mut self.bufs[k]) {
                Ok(len) => {
                    self.lens[k] = len;
                    k += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && k > 0 => break,
                Err(e) => return Err(e),
            }
        }
        Ok(k)
    }
}

/// Sends datagrams on a connected socket in batches (an upstream's queries).
pub struct SendMany {
    #[cfg(target_os = "linux")]
    hdrs: nix::sys::socket::MultiHeaders<nix::sys::socket::SockaddrStorage>,
}

impl Default for SendMany {
    fn default() -> Self {
        Self::new()
    }
}

impl SendMany {
    /// Headers for `BATCH` datagrams.
    pub fn new() -> Self {
        Self {
            #[cfg(target_os = "linux")]
            hdrs: nix::sys::socket::MultiHeaders::preallocate(BATCH, None),
        }
    }

    /// Sends up to `BATCH` of `msgs` on connected `sock` (one `sendmmsg` on Linux) without
    /// waiting; returns how many the kernel took. An error is the first datagram's
    /// (`WouldBlock` when the socket buffer is full).
    #[cfg(target_os = "linux")]
    pub fn try_send(&mut self, sock: &UdpSocket, msgs: &[&[u8]]) -> io::Result<usize> {
        use nix::sys::socket::SockaddrStorage;
        use std::os::fd::AsRawFd;

        let count = msgs.len().min(BATCH);
        if count == 0 {
            return Ok(0);
        }
        let fd = sock.as_raw_fd();
        let hdrs = &mut self.hdrs;
        let addrs: [Option<SockaddrStorage>; BATCH] = [None; BATCH];
        sock.try_io(Interest::WRITABLE, || {
            send_batch(fd, hdrs, &msgs[..count], &addrs[..count])
        })
    }

    /// Sends up to `BATCH` of `msgs` on connected `sock`, one at a time.
    #[cfg(not(target_os = "linux"))]
    pub fn try_send(&mut self, sock: &UdpSocket, msgs: &[&[u8]]) -> io::Result<usize> {
        let mut k = 0;
        for m in msgs.iter().take(BATCH) {
            match sock.try_send(m) {
                Ok(_) => k += 1,
                Err(e) if k == 0 => return Err(e),
                Err(_) => break,
            }
        }
        Ok(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` on a current-thread runtime with I/O.
    fn run(f: impl std::future::Future<Output = ()>) {
        tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap_or_else(|e| panic!("{e}"))
            .block_on(f);
    }

    /// A plain socket and a tokio socket connected to it.
    async fn connected() -> (std::net::UdpSocket, UdpSocket) {
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let sock = UdpSocket::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let a = peer.local_addr().unwrap_or_else(|e| panic!("{e}"));
        sock.connect(a).await.unwrap_or_else(|e| panic!("{e}"));
        (peer, sock)
    }

    #[test]
    fn recv_many_reads_a_connected_socket_in_batches() {
        run(async {
            let (peer, sock) = connected().await;
            let b = sock.local_addr().unwrap_or_else(|e| panic!("{e}"));
            let mut r = RecvMany::new(512);
            // Nothing queued yet.
            let e = r.try_recv(&sock, |_| {}).err();
            assert_eq!(e.map(|e| e.kind()), Some(io::ErrorKind::WouldBlock));
            let total = BATCH + 8;
            for i in 0..total {
                peer.send_to(&[i as u8; 3], b)
                    .unwrap_or_else(|e| panic!("{e}"));
            }
            sock.readable().await.unwrap_or_else(|e| panic!("{e}"));
            let mut got = Vec::new();
            let first = r
                .try_recv(&sock, |d| got.push(d.to_vec()))
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(first, BATCH);
            let second = r
                .try_recv(&sock, |d| got.push(d.to_vec()))
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(second, 8);
            let want: Vec<Vec<u8>> = (0..total).map(|i| vec![i as u8; 3]).collect();
            assert_eq!(got, want);
        });
    }

    #[test]
    fn send_many_sends_on_a_connected_socket_in_batches() {
        run(async {
            let (peer, sock) = connected().await;
            let total = BATCH + 8;
            let data: Vec<Vec<u8>> = (0..total).map(|i| vec![i as u8; 5]).collect();
            let msgs: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
            let mut s = SendMany::new();
            sock.writable().await.unwrap_or_else(|e| panic!("{e}"));
            let first = s.try_send(&sock, &msgs).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(first, BATCH);
            let second = s
                .try_send(&sock, &msgs[first..])
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(second, 8);
            assert_eq!(s.try_send(&sock, &[]).ok(), Some(0));
            let mut buf = [0u8; 16];
            for want in &data {
                let n = peer.recv(&mut buf).unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(&buf[..n], &want[..]);
            }
            // A peer that is gone: the ICMP unreachable comes back as the next send's
            // error (the socket's pending error), not a panic.
            let gone = std::net::UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
            let ga = gone.local_addr().unwrap_or_else(|e| panic!("{e}"));
            drop(gone);
            let lone = UdpSocket::bind("127.0.0.1:0")
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            lone.connect(ga).await.unwrap_or_else(|e| panic!("{e}"));
            lone.writable().await.unwrap_or_else(|e| panic!("{e}"));
            let _ = s.try_send(&lone, &[b"x".as_slice()]);
            std::thread::sleep(std::time::Duration::from_millis(50));
            let e = s.try_send(&lone, &[b"y".as_slice()]).err();
            assert_eq!(e.map(|e| e.kind()), Some(io::ErrorKind::ConnectionRefused));
        });
    }
}
