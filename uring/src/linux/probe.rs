//! Can this process use io_uring the way the engine does? Checks the sysctl, ring setup, the
//! features and opcodes the engine relies on, and arms one real multishot `RecvMsg` over a
//! provided buffer ring on a Unix socket pair (needs no network), because no opcode probe
//! reveals multishot support.

use std::fs;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::ptr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use io_uring::{IoUring, Probe, cqueue, opcode, types};

use super::addr::{NAME_LEN, to_raw};
use super::mem::BufRing;
use super::ring;
use crate::ProbeError;

/// The opcodes the engine submits, with the names used in messages.
const OPCODES: [(u8, &str); 8] = [
    (opcode::RecvMsgMulti::CODE, "RecvMsgMulti"),
    (opcode::SendMsg::CODE, "SendMsg"),
    (opcode::AcceptMulti::CODE, "AcceptMulti"),
    (opcode::Recv::CODE, "Recv"),
    (opcode::Send::CODE, "Send"),
    (opcode::AsyncCancel::CODE, "AsyncCancel"),
    (opcode::Timeout::CODE, "Timeout"),
    (opcode::LinkTimeout::CODE, "LinkTimeout"),
];

const PROBE_RECV: u64 = 1;
const PROBE_CANCEL: u64 = 2;

/// Checks that io_uring is usable by the engine: ring setup, `/proc/sys/kernel/
/// io_uring_disabled`, `IORING_FEAT_EXT_ARG`/`NODROP`/`FAST_POLL`, every opcode used
/// (RecvMsg, SendMsg, Accept, Recv, Send, AsyncCancel, Timeout, LinkTimeout), provided
/// buffer rings, multishot `RecvMsg` (which implies multishot accept and cancel-any, 5.19),
/// and eventfd registration.
pub fn probe() -> Result<(), ProbeError> {
    let disabled = fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok());
    if let Some(n @ 2..) = disabled {
        return Err(ProbeError::Disabled(n));
    }
    let mut ring = IoUring::new(8).map_err(|e| match e.raw_os_error() {
        Some(libc::EPERM | libc::EACCES) => match disabled {
            Some(n @ 1..) => ProbeError::Disabled(n),
            _ => ProbeError::PermissionDenied,
        },
        Some(libc::ENOSYS) => ProbeError::NotImplemented,
        _ => ProbeError::Io(e),
    })?;
    let params = ring.params();
    if !params.is_feature_ext_arg() {
        return Err(ProbeError::MissingFeature("IORING_FEAT_EXT_ARG"));
    }
    if !params.is_feature_nodrop() {
        return Err(ProbeError::MissingFeature("IORING_FEAT_NODROP"));
    }
    if !params.is_feature_fast_poll() {
        return Err(ProbeError::MissingFeature("IORING_FEAT_FAST_POLL"));
    }
    let mut ops = Probe::new();
    ring.submitter()
        .register_probe(&mut ops)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::EINVAL) => ProbeError::MissingFeature("IORING_REGISTER_PROBE"),
            _ => ProbeError::Io(e),
        })?;
    if let Some((_, name)) = OPCODES.iter().find(|(code, _)| !ops.is_supported(*code)) {
        return Err(ProbeError::MissingOpcode(name));
    }
    let efd = super::eventfd().map_err(ProbeError::Io)?;
    ring.submitter()
        .register_eventfd(efd.as_raw_fd())
        .map_err(|_| ProbeError::MissingFeature("IORING_REGISTER_EVENTFD"))?;
    multishot_recv(&mut ring)
}

/// Arms a multishot `RecvMsg` over a provided buffer ring and checks it delivers a datagram
/// and stays armed; then cancels it and waits for its last completion.
/// Does `Send` take a destination address (sendto, Linux 6.0)? Asked once per process: a
/// one-byte `Send` from a loopback UDP socket to itself on a small ring of its own. Kernels
/// without it reject the operation with `EINVAL`; any other outcome (sent, or a network
/// error such as a loopback that is down) means the kernel took the address.
pub(super) fn send_to_supported() -> bool {
    static SUPPORTED: OnceLock<bool> = OnceLock::new();
    *SUPPORTED.get_or_init(|| try_send_to().unwrap_or(false))
}

fn try_send_to() -> io::Result<bool> {
    let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .or_else(|_| UdpSocket::bind((Ipv6Addr::LOCALHOST, 0)))?;
    let (dest, dest_len) = to_raw(sock.local_addr()?);
    let payload = [0u8; 1];
    let mut ring = IoUring::new(2)?;
    let sqe = opcode::Send::new(types::Fd(sock.as_raw_fd()), payload.as_ptr(), 1)
        .dest_addr(ptr::addr_of!(dest).cast())
        .dest_addr_len(dest_len)
        .build()
        .user_data(1);
    // SAFETY: the payload and the address live on this stack frame until the completion has
    // been reaped below, or until the ring is dropped (which waits for its operations) if
    // the wait fails.
    unsafe { ring.submission().push(&sqe) }.map_err(|_| io::ErrorKind::WouldBlock)?;
    ring.submit_and_wait(1)?;
    let res = ring
        .completion()
        .next()
        .map_or(-libc::EINVAL, |c| c.result());
    Ok(res != -libc::EINVAL)
}

fn multishot_recv(ring: &mut IoUring) -> Result<(), ProbeError> {
    let (rx, tx) = UnixDatagram::pair().map_err(ProbeError::Io)?;
    let mut bufs = BufRing::new(2, 256, 0).map_err(ProbeError::Io)?;
    bufs.register(&ring.submitter())
        .map_err(|e| match e.raw_os_error() {
            Some(libc::EINVAL | libc::ENOENT | libc::EOPNOTSUPP) => {
                ProbeError::MissingFeature("provided buffer rings")
            }
            _ => ProbeError::Io(e),
        })?;
    tx.send(b"probe").map_err(ProbeError::Io)?;

    let hdr = Box::new(super::recv_template(NAME_LEN));
    let sqe = opcode::RecvMsgMulti::new(types::Fd(rx.as_raw_fd()), &*hdr, bufs.bgid())
        .build()
        .user_data(PROBE_RECV);
    // SAFETY: `hdr` and `bufs` outlive the operation: before returning we cancel it and wait
    // for its final completion, and leak both if that never comes.
    let pushed = unsafe { ring.submission().push(&sqe) };
    if pushed.is_err() {
        return Err(ProbeError::Io(io::Error::other("submission queue full")));
    }

    let deadline = Instant::now() + Duration::from_secs(2);
    let mut verdict: Option<Result<(), ProbeError>> = None;
    let mut done = false;
    let mut cancelled = false;
    while !done && Instant::now() < deadline {
        if verdict.is_some() && !cancelled {
            let cancel = opcode::AsyncCancel2::new(types::CancelBuilder::any())
                .build()
                .user_data(PROBE_CANCEL);
            // SAFETY: a cancel request references no memory.
            cancelled = unsafe { ring.submission().push(&cancel) }.is_ok();
        }
        if let Err(e) = ring::submit_wait(ring, 1, Some(Duration::from_millis(100))) {
            // The receive may still be armed: leave through the leaking path below.
            verdict.get_or_insert(Err(ProbeError::Io(e)));
            break;
        }
        for cqe in ring.completion() {
            let (res, flags) = (cqe.result(), cqe.flags());
            match cqe.user_data() {
                PROBE_RECV => {
                    if let Some(bid) = cqueue::buffer_select(flags) {
                        bufs.recycle(bid);
                    }
                    let more = cqueue::more(flags);
                    done |= !more;
                    verdict.get_or_insert(if res >= 0 && more {
                        Ok(())
                    } else if res == -libc::EINVAL {
                        Err(ProbeError::MissingOpcode("RecvMsgMulti"))
                    } else if res >= 0 {
                        Err(ProbeError::MissingFeature("multishot RecvMsg"))
                    } else {
                        Err(ProbeError::Io(io::Error::from_raw_os_error(-res)))
                    });
                }
                PROBE_CANCEL if res == -libc::EINVAL => {
                    verdict = Some(Err(ProbeError::MissingFeature("IORING_ASYNC_CANCEL_ANY")));
                }
                _ => {}
            }
        }
    }
    if !done {
        // The kernel may still write into these: never free them.
        bufs.leak();
        std::mem::forget(hdr);
        return match verdict {
            Some(Err(e)) => Err(e),
            _ => Err(ProbeError::MissingFeature(
                "cancellation of multishot RecvMsg",
            )),
        };
    }
    let _ = ring.submitter().unregister_buf_ring(bufs.bgid());
    verdict.unwrap_or(Err(ProbeError::MissingFeature("multishot RecvMsg")))
}
