//! The io_uring packet engine of ringdns.
//!
//! One [`Engine`] per worker thread owns a ring, the worker's UDP sockets (each read by one
//! multishot `RecvMsg` over a shared provided-buffer ring), its TCP listeners (multishot
//! accept) and their connections (framed DNS over TCP). Replies are copied into preallocated
//! send slots and submitted in batches with the next `io_uring_enter`. UDP sockets are named
//! by registered-file slots where the kernel has a sparse file table (Linux 5.19), so no
//! operation on them looks up or reference-counts the descriptor.
//!
//! Everything the kernel may read or write (buffers, `msghdr`, `iovec`, socket addresses) lives
//! in memory the engine owns until the matching completion has arrived; dropping the engine
//! cancels every operation and waits for all of them before anything is freed.
//!
//! This is the only crate of the workspace that uses `unsafe`. The Linux implementation is in
//! `linux/`; other platforms get `unsupported.rs`, with the same names, whose [`probe`] fails
//! with [`ProbeError::Unsupported`] so the daemon picks its epoll/tokio backend.
#![warn(missing_docs)]

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

#[cfg(target_os = "linux")]
#[path = "linux/mod.rs"]
mod imp;

#[cfg(not(target_os = "linux"))]
#[path = "unsupported.rs"]
mod imp;

// Build the stub in Linux test builds as well, so it cannot silently stop compiling.
#[cfg(all(test, target_os = "linux"))]
#[path = "unsupported.rs"]
#[allow(dead_code, unreachable_pub)]
mod unsupported_check;

pub use imp::{Engine, EngineHandle, probe};

/// A connected upstream UDP socket added with [`Engine::add_upstream_udp`]. Ids carry a
/// generation, so an id kept after its socket was removed never reaches a reused slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UpstreamId {
    idx: u32,
    generation: u32,
}

impl UpstreamId {
    /// The socket's slot: small, and reused (with a new generation) once it is removed.
    pub fn slot(self) -> usize {
        self.idx as usize
    }
}

mod counting;
pub use counting::{CountingAlloc, allocations};

/// A raw file descriptor (`std::os::fd::RawFd` on Unix).
#[cfg(unix)]
pub use std::os::fd::RawFd;
/// A raw file descriptor (`std::os::fd::RawFd` on Unix).
#[cfg(not(unix))]
pub type RawFd = i32;

/// Why io_uring can't be used.
///
/// `Display` gives a short reason for the daemon's backend-selection log line.
#[derive(Debug)]
#[non_exhaustive]
pub enum ProbeError {
    /// Not a Linux build.
    Unsupported,
    /// `io_uring_setup` failed with `EPERM`/`EACCES`, typically a seccomp profile (Docker,
    /// containerd and so Kubernetes pods by default).
    PermissionDenied,
    /// `io_uring_setup` failed with `ENOSYS`: a kernel without io_uring.
    NotImplemented,
    /// `/proc/sys/kernel/io_uring_disabled` forbids io_uring for this process (the value).
    Disabled(u32),
    /// The kernel lacks an operation the engine needs.
    MissingOpcode(&'static str),
    /// The kernel lacks a ring feature the engine needs.
    MissingFeature(&'static str),
    /// Any other error while probing.
    Io(std::io::Error),
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unsupported => f.write_str("io_uring is only available on Linux"),
            Self::PermissionDenied => {
                f.write_str("io_uring_setup: operation not permitted (seccomp?)")
            }
            Self::NotImplemented => f.write_str("io_uring_setup: function not implemented"),
            Self::Disabled(n) => write!(f, "kernel.io_uring_disabled={n}"),
            Self::MissingOpcode(op) => write!(f, "missing opcode {op}"),
            Self::MissingFeature(feat) => write!(f, "missing feature {feat}"),
            Self::Io(e) => write!(f, "io_uring probe: {e}"),
        }
    }
}

impl std::error::Error for ProbeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// Sizes and limits of one engine. Memory is allocated up front from these.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineConfig {
    /// Submission queue entries (the completion queue gets four times as many).
    pub entries: u32,
    /// Provided buffers shared by all UDP sockets (rounded up to a power of two, at most 32768).
    pub udp_buf_count: u16,
    /// Largest UDP payload received whole; a longer datagram arrives with `truncated` set.
    pub udp_buf_size: u32,
    /// UDP send slots, i.e. replies in flight at once.
    pub send_slots: u32,
    /// Largest UDP reply (bytes per send slot).
    pub udp_send_size: u32,
    /// TCP connections open (or still closing) at once; further accepted connections are
    /// closed at once.
    pub max_tcp_conns: u32,
    /// Largest DNS message accepted over TCP (at most 65535); a longer or empty frame closes
    /// the connection.
    pub max_tcp_msg: usize,
    /// Bytes queued for one TCP connection (replies with their length prefixes) before the
    /// engine gives up on a client that doesn't read and closes it.
    pub max_tcp_queue: usize,
    /// A new TCP connection that sends no complete message for this long is closed
    /// (CoreDNS's read timeout, 3s).
    pub tcp_read_timeout: Duration,
    /// After its first message, a TCP connection with no data for this long is closed
    /// (CoreDNS's idle timeout, 10s).
    pub tcp_idle_timeout: Duration,
    /// A TCP write that makes no progress for this long closes the connection (CoreDNS's
    /// write timeout, 5s).
    pub tcp_write_timeout: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            entries: 4096,
            udp_buf_count: 4096,
            udp_buf_size: 2048,
            send_slots: 4096,
            udp_send_size: 4096,
            max_tcp_conns: 1024,
            max_tcp_msg: 65535,
            max_tcp_queue: 4 * 65536,
            tcp_read_timeout: Duration::from_secs(3),
            tcp_idle_timeout: Duration::from_secs(10),
            tcp_write_timeout: Duration::from_secs(5),
        }
    }
}

/// A UDP socket added with [`Engine::add_udp`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SocketId(u32);

/// A TCP listener added with [`Engine::add_tcp_listener`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ListenerId(u32);

/// An accepted TCP connection. Ids carry a generation, so an id kept after its connection
/// closed never reaches a connection that reuses the slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnId {
    idx: u32,
    generation: u32,
}

/// What [`Engine::poll_events`] reports.
#[derive(Debug)]
pub enum Event<'a> {
    /// A UDP datagram. `data` is the whole datagram, borrowed from a provided buffer that is
    /// recycled when the callback returns. `truncated` if it was longer than
    /// [`EngineConfig::udp_buf_size`] (`MSG_TRUNC`); `data` then holds its beginning.
    Udp {
        /// The socket it arrived on.
        sock: SocketId,
        /// The sender.
        peer: SocketAddr,
        /// The payload.
        data: &'a [u8],
        /// The kernel cut the datagram.
        truncated: bool,
    },
    /// A new TCP connection.
    Accepted {
        /// The listener that accepted it.
        listener: ListenerId,
        /// The connection.
        conn: ConnId,
        /// The client's address.
        peer: SocketAddr,
        /// Our address of the connection.
        local: SocketAddr,
    },
    /// A new TCP connection of a listener set to hand its connections over
    /// ([`Engine::set_tcp_handoff`]): the caller owns and serves it.
    Handoff {
        /// The listener that accepted it.
        listener: ListenerId,
        /// The connection.
        stream: std::net::TcpStream,
    },
    /// One complete DNS message from a TCP connection: the 2-byte length prefix is removed and
    /// split reads are reassembled (RFC 1035 section 4.2.2, RFC 7766 section 8).
    TcpMessage {
        /// The connection.
        conn: ConnId,
        /// The message, valid for the callback only.
        data: &'a [u8],
    },
    /// The connection was closed by the peer, by a timeout, after an error or a malformed
    /// frame. The engine has already released it. Not reported after
    /// [`Engine::close_tcp`].
    TcpClosed {
        /// The connection.
        conn: ConnId,
    },
    /// A datagram from an upstream socket (borrowed, as for [`Event::Udp`]; a datagram longer
    /// than [`EngineConfig::udp_buf_size`] arrives cut).
    UpstreamUdp {
        /// The socket.
        id: UpstreamId,
        /// The payload.
        data: &'a [u8],
    },
    /// The kernel reported an error on an upstream socket: a receive that failed (an ICMP
    /// port unreachable gives `ECONNREFUSED`) or, with `write`, a send that failed. The
    /// socket stays usable.
    UpstreamError {
        /// The socket.
        id: UpstreamId,
        /// The error.
        error: std::io::Error,
        /// It was a send.
        write: bool,
    },
}

/// Counters of one engine, summed by the daemon at scrape time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// UDP datagrams received.
    pub udp_received: u64,
    /// UDP datagrams received truncated (longer than the buffer).
    pub udp_truncated: u64,
    /// UDP datagrams sent (replies and upstream queries). A quiet send (no completion on
    /// success) counts once the kernel has taken it, and moves to `udp_send_errors` when its
    /// failure is reaped: between the submit and that reap this count is one too high, so it
    /// can go down (it is no Prometheus counter).
    pub udp_sent: u64,
    /// UDP datagrams the kernel failed to send.
    pub udp_send_errors: u64,
    /// UDP replies refused because every send slot was in flight.
    pub udp_send_slot_exhausted: u64,
    /// Multishot receives re-armed after the kernel ended them.
    pub udp_rearms: u64,
    /// Multishot receives ended because every provided buffer was in use (`ENOBUFS`).
    pub udp_no_buffers: u64,
    /// Receive completions with an error other than `ENOBUFS`.
    pub udp_recv_errors: u64,
    /// TCP connections accepted.
    pub tcp_accepted: u64,
    /// TCP connections closed at once because `max_tcp_conns` were open.
    pub tcp_refused: u64,
    /// TCP connections closed (by either side).
    pub tcp_closed: u64,
    /// TCP connections closed by the idle or write timeout.
    pub tcp_timeouts: u64,
    /// Complete DNS messages received over TCP.
    pub tcp_messages: u64,
    /// TCP connections closed for an empty or oversized frame.
    pub tcp_malformed: u64,
    /// TCP connections closed because their outbound queue was full.
    pub tcp_overflow: u64,
    /// TCP receive or send failures.
    pub tcp_errors: u64,
    /// Multishot accepts re-armed after the kernel ended them.
    pub accept_rearms: u64,
    /// Accept completions with an error.
    pub accept_errors: u64,
}

impl Stats {
    /// Adds `other`'s counters to these (summing the workers' engines).
    pub fn merge(&mut self, other: &Self) {
        let Self {
            udp_received,
            udp_truncated,
            udp_sent,
            udp_send_errors,
            udp_send_slot_exhausted,
            udp_rearms,
            udp_no_buffers,
            udp_recv_errors,
            tcp_accepted,
            tcp_refused,
            tcp_closed,
            tcp_timeouts,
            tcp_messages,
            tcp_malformed,
            tcp_overflow,
            tcp_errors,
            accept_rearms,
            accept_errors,
        } = other;
        self.udp_received += udp_received;
        self.udp_truncated += udp_truncated;
        self.udp_sent += udp_sent;
        self.udp_send_errors += udp_send_errors;
        self.udp_send_slot_exhausted += udp_send_slot_exhausted;
        self.udp_rearms += udp_rearms;
        self.udp_no_buffers += udp_no_buffers;
        self.udp_recv_errors += udp_recv_errors;
        self.tcp_accepted += tcp_accepted;
        self.tcp_refused += tcp_refused;
        self.tcp_closed += tcp_closed;
        self.tcp_timeouts += tcp_timeouts;
        self.tcp_messages += tcp_messages;
        self.tcp_malformed += tcp_malformed;
        self.tcp_overflow += tcp_overflow;
        self.tcp_errors += tcp_errors;
        self.accept_rearms += accept_rearms;
        self.accept_errors += accept_errors;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_merge_adds_every_field() {
        let mut a = Stats {
            udp_received: 1,
            accept_errors: 2,
            ..Stats::default()
        };
        let b = Stats {
            udp_received: 10,
            tcp_closed: 3,
            accept_errors: 20,
            ..Stats::default()
        };
        a.merge(&b);
        assert_eq!((a.udp_received, a.tcp_closed, a.accept_errors), (11, 3, 22));
    }

    #[test]
    fn probe_error_messages() {
        assert_eq!(
            ProbeError::PermissionDenied.to_string(),
            "io_uring_setup: operation not permitted (seccomp?)"
        );
        assert_eq!(
            ProbeError::Disabled(2).to_string(),
            "kernel.io_uring_disabled=2"
        );
        assert_eq!(
            ProbeError::MissingOpcode("RecvMsgMulti").to_string(),
            "missing opcode RecvMsgMulti"
        );
    }
}
