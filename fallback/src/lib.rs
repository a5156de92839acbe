//! The portable packet engine on tokio (epoll): UDP received and sent in
//! batches (`recvmmsg`/`sendmmsg` on Linux, one datagram at a time elsewhere)
//! and DNS-over-TCP framing. It knows nothing of plugins; the daemon feeds the
//! datagrams it receives through its query path and queues replies here.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod tcp;
mod udp;

pub use udp::{BATCH, RecvMany, SendMany, UdpBatch};
