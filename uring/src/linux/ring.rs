//! Ring setup with graceful fallback of setup flags, the `user_data` encoding that routes a
//! completion back to its owner, and small helpers around `io_uring_enter`.

use std::io;
use std::time::Duration;

use io_uring::{EnterFlags, IoUring, types};

/// What an operation is, stored in the top byte of `user_data`; the low 32 bits hold the
/// index of the socket, listener, connection or send slot it belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Kind {
    /// Multishot `RecvMsg` of a UDP socket.
    UdpRecv = 1,
    /// `SendMsg` of a UDP send slot.
    UdpSend,
    /// Back-off `Timeout` before re-arming a failing UDP receive.
    UdpBackoff,
    /// Multishot accept of a listener.
    Accept,
    /// Back-off `Timeout` before re-arming a failing accept.
    AcceptBackoff,
    /// `Recv` of a TCP connection.
    TcpRecv,
    /// The idle `LinkTimeout` linked to a TCP `Recv`.
    TcpRecvTimer,
    /// `Send` of a TCP connection.
    TcpSend,
    /// The write `LinkTimeout` linked to a TCP `Send`.
    TcpSendTimer,
    /// `AsyncCancel` (shutdown, removing an upstream socket).
    Cancel,
    /// Multishot `RecvMsg` of an upstream socket.
    UpRecv,
    /// Back-off `Timeout` before re-arming a failing upstream receive.
    UpBackoff,
    /// `Send` of a UDP reply that posts a completion only on failure (its slot is freed once
    /// the kernel has taken the submission, see `Core::confirm_sends`).
    UdpSendQuiet,
    /// `Send` of an upstream query that posts a completion only on failure; the upstream
    /// socket's generation rides in `user_data` (see [`tag_with`]).
    UpSendQuiet,
}

impl Kind {
    const ALL: [Self; 14] = [
        Self::UdpRecv,
        Self::UdpSend,
        Self::UdpBackoff,
        Self::Accept,
        Self::AcceptBackoff,
        Self::TcpRecv,
        Self::TcpRecvTimer,
        Self::TcpSend,
        Self::TcpSendTimer,
        Self::Cancel,
        Self::UpRecv,
        Self::UpBackoff,
        Self::UdpSendQuiet,
        Self::UpSendQuiet,
    ];
}

/// The `user_data` of an operation of `kind` for object `idx`.
pub(super) fn tag(kind: Kind, idx: u32) -> u64 {
    (u64::from(kind as u8) << 56) | u64::from(idx)
}

/// [`tag`] with 24 more bits, `extra`'s low ones, between kind and index.
pub(super) fn tag_with(kind: Kind, idx: u32, extra: u32) -> u64 {
    tag(kind, idx) | (u64::from(extra & EXTRA_MASK) << 32)
}

/// The bits of `extra` that [`tag_with`] keeps.
pub(super) const EXTRA_MASK: u32 = 0x00ff_ffff;

/// The `extra` of a `user_data` made by [`tag_with`] (0 for one made by [`tag`]).
pub(super) fn extra(user_data: u64) -> u32 {
    (user_data >> 32) as u32 & EXTRA_MASK
}

/// Splits a `user_data` made by [`tag`] or [`tag_with`]; `None` for anything else.
pub(super) fn untag(user_data: u64) -> Option<(Kind, u32)> {
    let k = (user_data >> 56) as u8;
    let kind = Kind::ALL.into_iter().find(|x| *x as u8 == k)?;
    Some((kind, user_data as u32))
}

/// A completion copied out of the ring.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Cqe {
    pub(super) user_data: u64,
    pub(super) res: i32,
    pub(super) flags: u32,
}

/// How the ring was set up.
pub(super) struct Setup {
    pub(super) ring: IoUring,
    /// `IORING_SETUP_DEFER_TASKRUN`: completions are posted only when we enter with
    /// `GETEVENTS`.
    pub(super) defer_taskrun: bool,
    /// `IORING_SETUP_TASKRUN_FLAG`: the kernel flags pending task work in the SQ ring.
    pub(super) taskrun_flag: bool,
}

/// Builds a ring of `entries` SQ and `cq_entries` CQ entries with the best setup flags the
/// kernel accepts: single issuer with deferred task work (6.1), else cooperative task work
/// (5.19), else none. `EINVAL` moves on to the next set; other errors are returned.
/// `first` skips the better sets (tests use it to exercise the fallbacks).
pub(super) fn build(entries: u32, cq_entries: u32, first: u8) -> io::Result<Setup> {
    let mut last = None;
    for attempt in first..5 {
        let mut b = IoUring::builder();
        b.setup_cqsize(cq_entries).setup_clamp();
        let (defer_taskrun, taskrun_flag) = match attempt {
            0 => {
                b.setup_single_issuer()
                    .setup_defer_taskrun()
                    .setup_taskrun_flag()
                    .setup_submit_all();
                (true, true)
            }
            1 => {
                b.setup_single_issuer()
                    .setup_defer_taskrun()
                    .setup_submit_all();
                (true, false)
            }
            2 => {
                b.setup_coop_taskrun()
                    .setup_taskrun_flag()
                    .setup_submit_all();
                (false, true)
            }
            3 => {
                b.setup_submit_all();
                (false, false)
            }
            _ => (false, false),
        };
        match b.build(entries) {
            Ok(ring) => {
                return Ok(Setup {
                    ring,
                    defer_taskrun,
                    taskrun_flag,
                });
            }
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::from_raw_os_error(libc::EINVAL)))
}

/// Enters the kernel only to run deferred task work and flush overflowed completions.
pub(super) fn get_events(ring: &IoUring) -> io::Result<()> {
    // SAFETY: no argument pointer is passed (`None`), nothing is submitted and the only flag
    // is GETEVENTS, so the kernel reads no user memory.
    unsafe {
        ring.submitter()
            .enter::<libc::sigset_t>(0, 0, EnterFlags::GETEVENTS.bits(), None)
    }
    .map(drop)
    .or_else(benign)
}

/// Submits and waits for `want` completions, at most `timeout` when given.
pub(super) fn submit_wait(
    ring: &IoUring,
    want: usize,
    timeout: Option<Duration>,
) -> io::Result<()> {
    let res = match timeout {
        Some(t) if want > 0 => {
            let ts = types::Timespec::from(t);
            let args = types::SubmitArgs::new().timespec(&ts);
            ring.submitter().submit_with_args(want, &args)
        }
        _ => ring.submitter().submit_and_wait(want),
    };
    res.map(drop).or_else(benign)
}

/// Errors of `io_uring_enter` that only mean "nothing more to do now": the wait timed out,
/// a signal arrived, or the completion queue must be reaped first.
fn benign(e: io::Error) -> io::Result<()> {
    match e.raw_os_error() {
        Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN) => Ok(()),
        _ => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip() {
        for kind in Kind::ALL {
            for idx in [0, 1, 4095, u32::MAX] {
                assert_eq!(untag(tag(kind, idx)), Some((kind, idx)));
            }
        }
        for extra_in in [0, 1, 0x00ab_cdef, u32::MAX] {
            let t = tag_with(Kind::UpSendQuiet, 7, extra_in);
            assert_eq!(untag(t), Some((Kind::UpSendQuiet, 7)));
            assert_eq!(extra(t), extra_in & EXTRA_MASK);
        }
        assert_eq!(extra(tag(Kind::UdpSend, u32::MAX)), 0);
        assert_eq!(untag(0), None);
        assert_eq!(untag(u64::MAX), None);
    }
}
