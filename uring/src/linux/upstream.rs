//! Upstream UDP sockets: connected sockets the daemon sends queries on (the forward plugin's
//! pool). Each is read by a multishot `RecvMsg` over the same provided-buffer ring as the
//! listening sockets, so a reply costs no system call of its own; queries go out as `Send`
//! from the UDP send slots, in the next batch. Errors the kernel reports on the socket (an
//! ICMP port unreachable ends the receive with `ECONNREFUSED`) and failed sends are reported as
//! [`Event::UpstreamError`]; the receive is armed again. Removing a socket cancels its receive
//! and closes it once the receive's last completion has arrived, so its descriptor number is
//! never reused under an operation.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

use io_uring::{cqueue, opcode};

use super::mem::BufRing;
use super::ring::{self, Cqe, Kind};
use super::{Callback, Core, EngineHandle, Target, on_target};
use crate::{Event, UpstreamId};

/// One upstream socket slot.
pub(super) struct UpSock {
    sock: Option<UdpSocket>,
    /// The socket's registered-file slot.
    pub(super) fixed: Option<u32>,
    /// The connected peer (written into send slots; `Send` goes to the connected address).
    peer: SocketAddr,
    generation: u32,
    /// A multishot receive is in flight.
    pub(super) armed: bool,
    /// [`Core::remove_upstream`] was called: closed when the receive has ended.
    removed: bool,
}

impl Core {
    fn upstream(&self, id: UpstreamId) -> Option<&UpSock> {
        self.upstreams
            .get(id.idx as usize)
            .filter(|u| u.generation == id.generation && !u.removed && u.sock.is_some())
    }

    fn upstream_id(&self, idx: u32) -> Option<UpstreamId> {
        let u = self.upstreams.get(idx as usize)?;
        Some(UpstreamId {
            idx,
            generation: u.generation,
        })
    }

    pub(super) fn add_upstream(&mut self, sock: UdpSocket) -> io::Result<UpstreamId> {
        let peer = sock.peer_addr()?;
        sock.set_nonblocking(false)?;
        let idx = match self.upstream_free.pop() {
            Some(i) => i,
            None => {
                let i =
                    u32::try_from(self.upstreams.len()).map_err(|_| io::ErrorKind::OutOfMemory)?;
                self.upstreams.push(UpSock {
                    sock: None,
                    fixed: None,
                    peer,
                    generation: 0,
                    armed: false,
                    removed: false,
                });
                i
            }
        };
        let fixed = self.fix(sock.as_raw_fd());
        let u = &mut self.upstreams[idx as usize];
        u.sock = Some(sock);
        u.fixed = fixed;
        u.peer = peer;
        u.armed = false;
        u.removed = false;
        let id = UpstreamId {
            idx,
            generation: u.generation,
        };
        if let Err(e) = self.arm_upstream(idx) {
            self.free_upstream(idx);
            return Err(e);
        }
        Ok(id)
    }

    fn arm_upstream(&mut self, idx: u32) -> io::Result<()> {
        let Some(u) = self.upstreams.get(idx as usize) else {
            return Ok(());
        };
        if self.closing || u.armed || u.removed {
            return Ok(());
        }
        let Some(fd) = u.sock.as_ref().map(AsRawFd::as_raw_fd) else {
            return Ok(());
        };
        // The socket is closed only after this receive ended (`free_upstream`).
        self.push_recv_multi(Target::of(fd, u.fixed), Kind::UpRecv, idx)?;
        self.upstreams[idx as usize].armed = true;
        Ok(())
    }

    pub(super) fn arm_upstream_or_retry(&mut self, idx: u32) {
        if self.arm_upstream(idx).is_err() {
            self.retry.push(ring::tag(Kind::UpRecv, idx));
        }
    }

    /// Makes slot `idx` reusable under a new generation. Its socket is closed only once
    /// everything queued so far has been submitted ([`Core::close_freed`]): a `Send` still in
    /// the submission queue names the descriptor by number, which another socket could take.
    fn free_upstream(&mut self, idx: u32) {
        if let Some(u) = self.upstreams.get_mut(idx as usize) {
            if let Some(sock) = u.sock.take() {
                self.to_close.push((sock, u.fixed.take()));
                u.generation = u.generation.wrapping_add(1);
                u.removed = false;
                u.armed = false;
                self.upstream_free.push(idx);
            }
        }
    }

    /// Closes the sockets of freed slots once the submission queue is empty (every operation
    /// naming them has reached the kernel, which holds its own reference), and empties their
    /// fixed-file slots.
    pub(super) fn close_freed(&mut self) {
        if !self.to_close.is_empty() && self.ring.submission().is_empty() {
            for (sock, fixed) in std::mem::take(&mut self.to_close) {
                if let Some(slot) = fixed {
                    self.unfix(slot);
                }
                drop(sock);
            }
        }
    }

    pub(super) fn remove_upstream(&mut self, id: UpstreamId) {
        if self.upstream(id).is_none() {
            return;
        }
        let idx = id.idx;
        self.upstreams[idx as usize].removed = true;
        if !self.upstreams[idx as usize].armed {
            self.free_upstream(idx);
            return;
        }
        self.cancel_upstream_recv(idx);
    }

    /// Asks the kernel to end slot `idx`'s receive (its last completion frees the slot).
    pub(super) fn cancel_upstream_recv(&mut self, idx: u32) {
        let sqe = opcode::AsyncCancel::new(ring::tag(Kind::UpRecv, idx))
            .build()
            .user_data(ring::tag(Kind::Cancel, 0));
        // SAFETY: a cancel request references no memory.
        if unsafe { self.push(&sqe) }.is_err() {
            self.retry.push(ring::tag(Kind::UpRecv, idx));
        }
    }

    /// Queued again by `flush_retry`: arm, or cancel for a removed socket.
    pub(super) fn retry_upstream(&mut self, idx: u32) {
        match self.upstreams.get(idx as usize) {
            Some(u) if u.removed && u.armed => self.cancel_upstream_recv(idx),
            Some(u) if u.removed => self.free_upstream(idx),
            Some(_) => self.arm_upstream_or_retry(idx),
            None => {}
        }
    }

    pub(super) fn send_upstream(&mut self, id: UpstreamId, data: &[u8]) -> io::Result<()> {
        let Some((Some(fd), fixed, peer, generation)) = self.upstream(id).map(|u| {
            (
                u.sock.as_ref().map(AsRawFd::as_raw_fd),
                u.fixed,
                u.peer,
                u.generation,
            )
        }) else {
            return Err(io::ErrorKind::NotConnected.into());
        };
        let f = self.take_send_slot(peer, data, "query larger than udp_send_size")?;
        let slot = f.slot;
        let sqe = on_target!(Target::of(fd, fixed), |fd| opcode::Send::new(
            fd, f.payload, f.len
        )
        .flags(self.send_msg_flags())
        .build());
        // A quiet send names its socket and generation, not its slot: the slot may carry
        // another datagram by the time a failure is reaped.
        // SAFETY: the payload lives in send slot `slot` (the contract of `push_send`).
        unsafe {
            self.push_send(
                sqe,
                slot,
                ring::tag_with(Kind::UpSendQuiet, id.idx, generation),
                ring::tag(Kind::UdpSend, slot),
            )?;
        }
        if !self.quiet_sends
            && let Some(o) = self.send_owner.get_mut(slot as usize)
        {
            *o = Some(id);
        }
        Ok(())
    }

    /// A quiet send on upstream slot `idx` failed: reported if the slot still holds the
    /// socket of generation `generation` (its low 24 bits).
    pub(super) fn on_quiet_upstream_failed(
        &mut self,
        idx: u32,
        generation: u32,
        res: i32,
        f: &mut Callback<'_>,
    ) -> usize {
        match self
            .upstream_id(idx)
            .filter(|id| id.generation & ring::EXTRA_MASK == generation)
        {
            Some(id) => self.report_send_failure(id, res, f),
            None => 0,
        }
    }

    /// A send from slot `slot` completed: a failed upstream query is reported.
    pub(super) fn on_send_owner(&mut self, slot: u32, res: i32, f: &mut Callback<'_>) -> usize {
        let Some(id) = self
            .send_owner
            .get_mut(slot as usize)
            .and_then(Option::take)
        else {
            return 0;
        };
        self.report_send_failure(id, res, f)
    }

    /// Reports a failed send (`res < 0`) of a query on upstream `id`, if it is still open.
    fn report_send_failure(&mut self, id: UpstreamId, res: i32, f: &mut Callback<'_>) -> usize {
        if res >= 0 || self.upstream(id).is_none() {
            return 0;
        }
        f(
            &mut EngineHandle { core: self },
            Event::UpstreamError {
                id,
                error: io::Error::from_raw_os_error(-res),
                write: true,
            },
        );
        1
    }

    /// A completion of upstream slot `idx`'s multishot receive.
    pub(super) fn on_upstream_recv(
        &mut self,
        rx: &mut BufRing,
        idx: u32,
        c: Cqe,
        f: &mut Callback<'_>,
    ) -> usize {
        let mut delivered = 0;
        let live = !self.closing
            && self
                .upstreams
                .get(idx as usize)
                .is_some_and(|u| !u.removed && u.sock.is_some());
        if let Some(bid) = cqueue::buffer_select(c.flags) {
            if let (Ok(len), true) = (usize::try_from(c.res), live) {
                // SAFETY: this completion handed buffer `bid` to us; it is recycled just
                // below, after the callback returned and the slice is gone.
                if let Some(buf) = unsafe { rx.buf(bid, len) } {
                    // A datagram longer than the buffer arrives cut, as a read into a buffer of
                    // that size would return it (the reader sees a short message).
                    if let (Ok(out), Some(id)) = (
                        io_uring::types::RecvMsgOut::parse(buf, &self.recv_hdr),
                        self.upstream_id(idx),
                    ) {
                        f(
                            &mut EngineHandle { core: self },
                            Event::UpstreamUdp {
                                id,
                                data: out.payload_data(),
                            },
                        );
                        delivered = 1;
                    }
                }
            }
            rx.recycle(bid);
        }
        if cqueue::more(c.flags) {
            return delivered;
        }
        if let Some(u) = self.upstreams.get_mut(idx as usize) {
            u.armed = false;
        }
        if !live {
            self.free_upstream(idx);
            return delivered;
        }
        if c.res == -libc::ENOBUFS {
            self.stats.udp_no_buffers += 1;
            rx.publish();
            self.arm_upstream_or_retry(idx);
        } else if c.res < 0 {
            if let Some(id) = self.upstream_id(idx) {
                f(
                    &mut EngineHandle { core: self },
                    Event::UpstreamError {
                        id,
                        error: io::Error::from_raw_os_error(-c.res),
                        write: false,
                    },
                );
                delivered += 1;
            }
            // The pending socket error (an ICMP unreachable) is consumed by the failed
            // receive: read on at once. Anything else waits a little first.
            if c.res == -libc::ECONNREFUSED {
                self.arm_upstream_or_retry(idx);
            } else {
                self.backoff(Kind::UpBackoff, idx, Kind::UpRecv);
            }
        } else {
            self.arm_upstream_or_retry(idx);
        }
        delivered
    }
}
