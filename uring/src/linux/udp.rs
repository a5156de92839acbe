//! UDP: one multishot `RecvMsg` per socket over the shared provided buffer ring, re-armed when
//! the kernel ends it (`ENOBUFS` when every buffer is out, errors after a back-off), and
//! replies as `SendMsg` from preallocated send slots.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

use io_uring::{cqueue, opcode, squeue};

use super::mem::{BufRing, Filled};
use super::ring::{self, Cqe, Kind};
use super::{Callback, Core, EngineHandle, Target, UDP_BGID, addr, on_target};
use crate::{Event, SocketId};

/// A UDP socket owned by the engine.
pub(super) struct UdpSock {
    sock: UdpSocket,
    /// Its registered-file slot (kept for the engine's life).
    fixed: Option<u32>,
    /// A multishot receive is in flight.
    armed: bool,
}

impl Core {
    pub(super) fn add_udp(&mut self, sock: UdpSocket) -> io::Result<SocketId> {
        sock.set_nonblocking(false)?;
        let idx = u32::try_from(self.udp.len()).map_err(|_| io::ErrorKind::OutOfMemory)?;
        let fixed = self.fix(sock.as_raw_fd());
        self.udp.push(UdpSock {
            sock,
            fixed,
            armed: false,
        });
        if let Err(e) = self.arm_udp(idx) {
            self.udp.pop();
            if let Some(slot) = fixed {
                self.unfix(slot);
            }
            return Err(e);
        }
        Ok(SocketId(idx))
    }

    fn arm_udp(&mut self, idx: u32) -> io::Result<()> {
        let Some(s) = self.udp.get(idx as usize) else {
            return Ok(());
        };
        if self.closing || s.armed {
            return Ok(());
        }
        let target = Target::of(s.sock.as_raw_fd(), s.fixed);
        self.push_recv_multi(target, Kind::UdpRecv, idx)?;
        self.udp[idx as usize].armed = true;
        Ok(())
    }

    /// Queues a multishot `RecvMsg` on `target` over the UDP buffer ring, tagged `kind`/`idx`.
    /// The caller keeps the socket open until the receive's last completion.
    pub(super) fn push_recv_multi(
        &mut self,
        target: Target,
        kind: Kind,
        idx: u32,
    ) -> io::Result<()> {
        let hdr = &*self.recv_hdr;
        let sqe = on_target!(target, |fd| opcode::RecvMsgMulti::new(fd, hdr, UDP_BGID)
            .build())
        .user_data(ring::tag(kind, idx));
        // SAFETY: the msghdr is boxed in `self` for the engine's lifetime (leaked if the drain
        // fails); the buffers come from the registered ring, which the engine frees only
        // after every operation completed.
        unsafe { self.push(&sqe) }
    }

    pub(super) fn arm_udp_or_retry(&mut self, idx: u32) {
        if self.arm_udp(idx).is_err() {
            self.retry.push(ring::tag(Kind::UdpRecv, idx));
        }
    }

    /// A completion of socket `idx`'s multishot receive.
    pub(super) fn on_udp_recv(
        &mut self,
        rx: &mut BufRing,
        idx: u32,
        c: Cqe,
        f: &mut Callback<'_>,
    ) -> usize {
        let mut delivered = 0;
        if let Some(bid) = cqueue::buffer_select(c.flags) {
            if let Ok(len) = usize::try_from(c.res) {
                if !self.closing && (idx as usize) < self.udp.len() {
                    // SAFETY: this completion handed buffer `bid` to us; it is recycled just
                    // below, after the callback returned and the slice is gone.
                    if let Some(buf) = unsafe { rx.buf(bid, len) } {
                        delivered = self.deliver_datagram(idx, buf, f);
                    }
                }
            }
            rx.recycle(bid);
        }
        if !cqueue::more(c.flags) {
            if let Some(s) = self.udp.get_mut(idx as usize) {
                s.armed = false;
            }
            self.udp_recv_ended(rx, idx, c.res);
        }
        delivered
    }

    fn deliver_datagram(&mut self, idx: u32, buf: &[u8], f: &mut Callback<'_>) -> usize {
        let Ok(out) = io_uring::types::RecvMsgOut::parse(buf, &self.recv_hdr) else {
            self.stats.udp_recv_errors += 1;
            return 0;
        };
        let Some(peer) = addr::parse_name(out.name_data()) else {
            self.stats.udp_recv_errors += 1;
            return 0;
        };
        let truncated = out.is_payload_truncated();
        self.stats.udp_received += 1;
        self.stats.udp_truncated += u64::from(truncated);
        let event = Event::Udp {
            sock: SocketId(idx),
            peer,
            data: out.payload_data(),
            truncated,
        };
        f(&mut EngineHandle { core: self }, event);
        1
    }

    /// The kernel ended socket `idx`'s multishot receive: arm it again.
    fn udp_recv_ended(&mut self, rx: &mut BufRing, idx: u32, res: i32) {
        if self.closing || idx as usize >= self.udp.len() {
            return;
        }
        self.stats.udp_rearms += 1;
        if res == -libc::ENOBUFS {
            // Every buffer was out; the ones handed back so far must be visible first.
            self.stats.udp_no_buffers += 1;
            rx.publish();
            self.arm_udp_or_retry(idx);
        } else if res < 0 {
            self.stats.udp_recv_errors += 1;
            self.backoff(Kind::UdpBackoff, idx, Kind::UdpRecv);
        } else {
            self.arm_udp_or_retry(idx);
        }
    }

    pub(super) fn send_udp(
        &mut self,
        sock: SocketId,
        peer: SocketAddr,
        data: &[u8],
    ) -> io::Result<()> {
        let Some(s) = self.udp.get(sock.0 as usize) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "unknown SocketId",
            ));
        };
        let target = Target::of(s.sock.as_raw_fd(), s.fixed);
        let f = self.take_send_slot(peer, data, "reply larger than udp_send_size")?;
        let slot = f.slot;
        // `Send` with a destination (sendto, kernel 6.0) skips the kernel's copy and check of
        // a msghdr and its iovec: ~7 % less server CPU per reply than `SendMsg` in a raw
        // multishot echo on loopback (README, Performance).
        let msg_flags = self.send_msg_flags();
        let sqe = if self.send_to {
            on_target!(target, |fd| opcode::Send::new(fd, f.payload, f.len)
                .dest_addr(f.addr)
                .dest_addr_len(f.addr_len)
                .flags(msg_flags)
                .build())
        } else {
            on_target!(target, |fd| opcode::SendMsg::new(fd, f.hdr)
                .flags(msg_flags as u32)
                .build())
        };
        // SAFETY: header, iovec, address and payload live in send slot `slot` (the contract of
        // `push_send`).
        unsafe {
            self.push_send(
                sqe,
                slot,
                ring::tag(Kind::UdpSendQuiet, slot),
                ring::tag(Kind::UdpSend, slot),
            )
        }
    }

    /// The `msg_flags` of a UDP send: `MSG_DONTWAIT` for a quiet one.
    ///
    /// A quiet send must be issued when the kernel takes its submission (never linked, never
    /// `IOSQE_ASYNC`, and no `IOSQE_IO_DRAIN` on this ring once one was queued: the kernel
    /// refuses drains after a `CQE_SKIP_SUCCESS`), and must not wait in the kernel: a full
    /// socket buffer fails it (`EAGAIN`, counted) as `sendmmsg` would, rather than parking it
    /// with its slot still in use.
    pub(super) fn send_msg_flags(&self) -> i32 {
        if self.quiet_sends {
            libc::MSG_DONTWAIT
        } else {
            0
        }
    }

    /// Queues `sqe`, a UDP send from send slot `slot` built with [`Core::send_msg_flags`]:
    /// quiet and tagged `quiet_tag` when the ring has quiet sends (the slot is then freed by
    /// [`Core::confirm_sends`]), else tagged `tag` (freed by its completion). The slot is
    /// freed at once if the send never reaches the ring.
    ///
    /// # Safety
    ///
    /// Everything `sqe` points to lies in slot `slot`, which nothing else releases.
    pub(super) unsafe fn push_send(
        &mut self,
        sqe: squeue::Entry,
        slot: u32,
        quiet_tag: u64,
        tag: u64,
    ) -> io::Result<()> {
        let sqe = if self.quiet_sends {
            sqe.flags(squeue::Flags::SKIP_SUCCESS).user_data(quiet_tag)
        } else {
            sqe.user_data(tag)
        };
        // SAFETY: what `sqe` reads lives in slot `slot`, which only this operation's
        // completion releases (a quiet send's: its confirmation, once the kernel has taken the
        // submission and with it finished the send), or the line below if it never reached
        // the ring.
        if let Err(e) = unsafe { self.push(&sqe) } {
            self.slots.release(slot);
            return Err(e);
        }
        if self.quiet_sends {
            self.unconfirmed.push((self.pushed - 1, slot));
        }
        Ok(())
    }

    /// Frees the slots of the quiet sends whose submissions the kernel has taken: a quiet send
    /// is issued when it is taken and cannot wait (`MSG_DONTWAIT`), so by then it has copied
    /// its payload or failed. Called after every submit.
    pub(super) fn confirm_sends(&mut self) {
        if self.unconfirmed.is_empty() {
            return;
        }
        let left = self.ring.submission().len() as u64;
        let taken = self.pushed - left;
        let done = self.unconfirmed.partition_point(|&(pos, _)| pos < taken);
        for (_, slot) in self.unconfirmed.drain(..done) {
            self.slots.release(slot);
            self.stats.udp_sent += 1;
            self.inflight = self.inflight.saturating_sub(1);
        }
    }

    /// A quiet send failed: it was counted as sent when confirmed.
    pub(super) fn on_quiet_send_failed(&mut self) {
        self.stats.udp_sent = self.stats.udp_sent.saturating_sub(1);
        self.stats.udp_send_errors += 1;
    }

    /// Copies `data` for `peer` into a free send slot: `InvalidInput` (with `too_long`) when
    /// it does not fit a slot, `WouldBlock` (counted) when every slot is in flight.
    pub(super) fn take_send_slot(
        &mut self,
        peer: SocketAddr,
        data: &[u8],
        too_long: &'static str,
    ) -> io::Result<Filled> {
        if data.len() > self.slots.size() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, too_long));
        }
        self.slots.fill(peer, data).ok_or_else(|| {
            self.stats.udp_send_slot_exhausted += 1;
            io::ErrorKind::WouldBlock.into()
        })
    }

    pub(super) fn on_udp_send(&mut self, slot: u32, res: i32) {
        self.slots.release(slot);
        if res < 0 {
            self.stats.udp_send_errors += 1;
        } else {
            self.stats.udp_sent += 1;
        }
    }
}
