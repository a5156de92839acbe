//! The engine on platforms without io_uring: same names as the Linux implementation, but
//! [`probe`] reports [`ProbeError::Unsupported`] and [`Engine::new`] fails, so the daemon
//! always selects its portable backend. Nothing here can be constructed.

use std::io;
use std::marker::PhantomData;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::time::Duration;

use crate::{
    ConnId, EngineConfig, Event, ListenerId, ProbeError, RawFd, SocketId, Stats, UpstreamId,
};

fn unsupported() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "io_uring is only available on Linux",
    )
}

/// Always fails: io_uring exists only on Linux.
pub fn probe() -> Result<(), ProbeError> {
    Err(ProbeError::Unsupported)
}

/// The packet engine; it cannot be created on this platform.
pub struct Engine {
    never: std::convert::Infallible,
    _not_send: PhantomData<*mut ()>,
}

/// The send side of the engine, given to the [`Engine::poll_events`] callback.
pub struct EngineHandle<'a> {
    never: std::convert::Infallible,
    _engine: PhantomData<&'a mut Engine>,
}

impl Engine {
    /// Always fails with [`io::ErrorKind::Unsupported`].
    pub fn new(cfg: EngineConfig) -> io::Result<Self> {
        let _ = cfg;
        Err(unsupported())
    }

    /// Unreachable: no engine exists.
    pub fn add_udp(&mut self, sock: UdpSocket) -> io::Result<SocketId> {
        let _ = sock;
        match self.never {}
    }

    /// Unreachable: no engine exists.
    pub fn add_tcp_listener(&mut self, l: TcpListener) -> io::Result<ListenerId> {
        let _ = l;
        match self.never {}
    }

    /// Unreachable: no engine exists.
    pub fn set_tcp_handoff(&mut self, id: ListenerId, on: bool) {
        let _ = (id, on);
        match self.never {}
    }

    /// Unreachable: no engine exists.
    pub fn send_udp(&mut self, sock: SocketId, peer: SocketAddr, data: &[u8]) -> io::Result<()> {
        let _ = (sock, peer, data);
        match self.never {}
    }

    /// Unreachable: no engine exists.
    pub fn add_upstream_udp(&mut self, sock: UdpSocket) -> io::Result<UpstreamId> {
        let _ = sock;
        match self.never {}
    }

    /// Unreachable: no engine exists.
    pub fn send_upstream_udp(&mut self, id: UpstreamId, data: &[u8]) -> io::Result<()> {
        let _ = (id, data);
        match self.never {}
    }

    /// Unreachable: no engine exists.
    pub fn remove_upstream_udp(&mut self, id: UpstreamId) {
        let _ = id;
        match self.never {}
    }

    /// Unreachable: no engine exists.
    pub fn send_tcp(&mut self, conn: ConnId, data: &[u8]) -> io::Result<()> {
        let _ = (conn, data);
        match self.never {}
    }

    /// Unreachable: no engine exists.
    pub fn close_tcp(&mut self, conn: ConnId) {
        let _ = conn;
        match self.never {}
    }

    /// Unreachable: no engine exists.
    pub fn tcp_queued(&self, conn: ConnId) -> Option<usize> {
        let _ = conn;
        match self.never {}
    }

    /// Unreachable: no engine exists.
    pub fn submit_and_wait(
        &mut self,
        min_complete: usize,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        let _ = (min_complete, timeout);
        match self.never {}
    }

    /// Unreachable: no engine exists.
    pub fn submit(&mut self) -> io::Result<()> {
        match self.never {}
    }

    /// Unreachable: no engine exists.
    pub fn poll_events(&mut self, f: &mut dyn FnMut(&mut EngineHandle<'_>, Event<'_>)) -> usize {
        let _ = f;
        match self.never {}
    }

    /// Unreachable: no engine exists.
    pub fn notify_fd(&self) -> RawFd {
        match self.never {}
    }

    /// Unreachable: no engine exists.
    pub fn set_notify(&mut self, _on: bool) {
        match self.never {}
    }

    /// Unreachable: no engine exists.
    pub fn stats(&self) -> Stats {
        match self.never {}
    }

    /// Unreachable: no engine exists.
    pub fn handle(&mut self) -> EngineHandle<'_> {
        match self.never {}
    }

    /// Unreachable: no engine exists.
    pub fn mode(&self) -> &'static str {
        match self.never {}
    }

    /// Unreachable: no engine exists.
    pub fn shutdown(self) {
        match self.never {}
    }
}

impl EngineHandle<'_> {
    /// Unreachable: no engine exists.
    pub fn send_udp(&mut self, sock: SocketId, peer: SocketAddr, data: &[u8]) -> io::Result<()> {
        let _ = (sock, peer, data);
        match self.never {}
    }

    /// Unreachable: no engine exists.
    pub fn send_tcp(&mut self, conn: ConnId, data: &[u8]) -> io::Result<()> {
        let _ = (conn, data);
        match self.never {}
    }

    /// Unreachable: no engine exists.
    pub fn send_upstream_udp(&mut self, id: UpstreamId, data: &[u8]) -> io::Result<()> {
        let _ = (id, data);
        match self.never {}
    }

    /// Unreachable: no engine exists.
    pub fn close_tcp(&mut self, conn: ConnId) {
        let _ = conn;
        match self.never {}
    }

    /// Unreachable: no engine exists.
    pub fn stats(&self) -> Stats {
        match self.never {}
    }
}
