//! DNS over TCP: multishot accept, one `Recv` per connection into a bounded reassembly buffer,
//! and ordered, length-prefixed replies (RFC 1035 section 4.2.2, RFC 7766 section 8).
//!
//! Each `Recv`/`Send` is linked to a `LinkTimeout` (idle and write timeouts). A connection
//! leaves `Open` when it is closed (its generation changes, so old ids go stale), is shut
//! down so in-flight operations finish, and its slot returns to the free list only when no
//! operation on its buffers or descriptor is in flight.

use std::io;
use std::mem;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use io_uring::{cqueue, opcode, types};

use super::ring::{self, Cqe, Kind};
use super::{Callback, Core, EngineHandle};
use crate::{ConnId, Event, ListenerId};

/// Initial (and steady-state) size of a connection's receive buffer.
const RBUF_INITIAL: usize = 4096;

/// A TCP listener owned by the engine.
pub(super) struct Listener {
    sock: TcpListener,
    /// A multishot accept is in flight.
    armed: bool,
    /// New connections go to the caller ([`Event::Handoff`]) instead of being served.
    handoff: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Free,
    Open,
    /// Closed by the daemon; writing what was queued, then `Draining`.
    Flushing,
    /// Closed; waiting for in-flight operations before the slot is released.
    Draining,
}

/// One connection slot.
struct Conn {
    generation: u32,
    state: State,
    stream: Option<TcpStream>,
    /// Reassembly buffer; bytes `..filled` hold received data.
    rbuf: Vec<u8>,
    filled: usize,
    /// The bytes being written (`out_sent..` still to go); not touched while `send`.
    out: Vec<u8>,
    out_sent: usize,
    /// Replies queued behind `out`.
    pending: Vec<u8>,
    recv: bool,
    send: bool,
    /// Link timeouts whose completion has not arrived.
    timers: u32,
    /// A whole message has arrived: reads wait the idle timeout, not the first read's.
    got_msg: bool,
}

impl Conn {
    fn new() -> Self {
        Self {
            generation: 0,
            state: State::Free,
            stream: None,
            rbuf: Vec::new(),
            filled: 0,
            out: Vec::new(),
            out_sent: 0,
            pending: Vec::new(),
            recv: false,
            send: false,
            timers: 0,
            got_msg: false,
        }
    }

    fn busy(&self) -> bool {
        self.recv || self.send || self.timers > 0
    }

    fn fd(&self) -> i32 {
        self.stream.as_ref().map_or(-1, AsRawFd::as_raw_fd)
    }
}

/// The connection table: at most `max` slots, reused through a free list.
pub(super) struct Conns {
    slots: Vec<Conn>,
    free: Vec<u32>,
    max: u32,
    rbuf_initial: usize,
}

impl Conns {
    pub(super) fn new(max: u32, max_msg: usize) -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            max,
            rbuf_initial: RBUF_INITIAL.min(max_msg + 2),
        }
    }

    fn alloc(&mut self) -> Option<u32> {
        if let Some(i) = self.free.pop() {
            return Some(i);
        }
        if (self.slots.len() as u64) < u64::from(self.max) {
            self.slots.push(Conn::new());
            return u32::try_from(self.slots.len() - 1).ok();
        }
        None
    }

    /// The slot of `id` if it is still open.
    fn open_idx(&self, id: ConnId) -> Option<u32> {
        let c = self.slots.get(id.idx as usize)?;
        (c.state == State::Open && c.generation == id.generation).then_some(id.idx)
    }

    fn get(&mut self, idx: u32) -> Option<&mut Conn> {
        self.slots.get_mut(idx as usize)
    }

    /// Keeps every buffer allocated forever (the kernel may still use them).
    pub(super) fn leak(&mut self) {
        for c in &mut self.slots {
            mem::forget(mem::take(&mut c.rbuf));
            mem::forget(mem::take(&mut c.out));
        }
    }
}

/// What the bytes at the start of a reassembly buffer hold.
#[derive(Debug, PartialEq, Eq)]
enum Frame {
    /// A whole message of this length follows the 2-byte prefix.
    Message(usize),
    /// Incomplete; the frame needs this many bytes in all.
    Partial(usize),
    /// Empty or longer than allowed.
    Malformed,
}

fn frame(buf: &[u8], max: usize) -> Frame {
    let [hi, lo, rest @ ..] = buf else {
        return Frame::Partial(2);
    };
    let len = usize::from(u16::from_be_bytes([*hi, *lo]));
    if len == 0 || len > max {
        Frame::Malformed
    } else if rest.len() < len {
        Frame::Partial(2 + len)
    } else {
        Frame::Message(len)
    }
}

impl Core {
    pub(super) fn add_tcp_listener(&mut self, sock: TcpListener) -> io::Result<ListenerId> {
        sock.set_nonblocking(false)?;
        let idx = u32::try_from(self.listeners.len()).map_err(|_| io::ErrorKind::OutOfMemory)?;
        self.listeners.push(Listener {
            sock,
            armed: false,
            handoff: false,
        });
        if let Err(e) = self.arm_accept(idx) {
            self.listeners.pop();
            return Err(e);
        }
        Ok(ListenerId(idx))
    }

    pub(super) fn set_tcp_handoff(&mut self, id: ListenerId, on: bool) {
        if let Some(l) = self.listeners.get_mut(id.0 as usize) {
            l.handoff = on;
        }
    }

    fn arm_accept(&mut self, idx: u32) -> io::Result<()> {
        let Some(l) = self.listeners.get(idx as usize) else {
            return Ok(());
        };
        if self.closing || l.armed {
            return Ok(());
        }
        let sqe = opcode::AcceptMulti::new(types::Fd(l.sock.as_raw_fd()))
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(ring::tag(Kind::Accept, idx));
        // SAFETY: a multishot accept without address output references no memory of ours.
        unsafe { self.push(&sqe) }?;
        self.listeners[idx as usize].armed = true;
        Ok(())
    }

    pub(super) fn arm_accept_or_retry(&mut self, idx: u32) {
        if self.arm_accept(idx).is_err() {
            self.retry.push(ring::tag(Kind::Accept, idx));
        }
    }

    pub(super) fn on_accept(&mut self, idx: u32, c: Cqe, f: &mut Callback<'_>) -> usize {
        let mut delivered = 0;
        if c.res >= 0 {
            // SAFETY: a successful accept completion gives us a new descriptor nothing else
            // owns.
            let fd = unsafe { OwnedFd::from_raw_fd(c.res) };
            if !self.closing {
                delivered = self.on_new_conn(idx, TcpStream::from(fd), f);
            }
        } else if c.res != -libc::ECANCELED {
            self.stats.accept_errors += 1;
        }
        if !cqueue::more(c.flags) {
            if let Some(l) = self.listeners.get_mut(idx as usize) {
                l.armed = false;
            }
            if !self.closing {
                self.stats.accept_rearms += 1;
                let transient = [0, -libc::ECONNABORTED, -libc::EINTR, -libc::EAGAIN];
                if c.res >= 0 || transient.contains(&c.res) {
                    self.arm_accept_or_retry(idx);
                } else {
                    // EMFILE, ENFILE, ENOMEM...: don't spin.
                    self.backoff(Kind::AcceptBackoff, idx, Kind::Accept);
                }
            }
        }
        delivered
    }

    fn on_new_conn(&mut self, listener: u32, stream: TcpStream, f: &mut Callback<'_>) -> usize {
        if self
            .listeners
            .get(listener as usize)
            .is_some_and(|l| l.handoff)
        {
            self.stats.tcp_accepted += 1;
            let event = Event::Handoff {
                listener: ListenerId(listener),
                stream,
            };
            f(&mut EngineHandle { core: self }, event);
            return 1;
        }
        let Some(cidx) = self.conns.alloc() else {
            self.stats.tcp_refused += 1;
            return 0; // dropping `stream` closes it
        };
        let (Ok(peer), Ok(local)) = (stream.peer_addr(), stream.local_addr()) else {
            self.stats.accept_errors += 1;
            self.conns.free.push(cidx);
            return 0;
        };
        // Replies are written whole; don't let Nagle hold the next one back.
        let _ = stream.set_nodelay(true);
        let initial = self.conns.rbuf_initial;
        let c = &mut self.conns.slots[cidx as usize];
        c.state = State::Open;
        c.stream = Some(stream);
        c.filled = 0;
        if c.rbuf.len() != initial {
            c.rbuf.resize(initial, 0);
            c.rbuf.shrink_to(initial);
        }
        c.out.clear();
        c.out_sent = 0;
        c.pending.clear();
        c.got_msg = false;
        let id = ConnId {
            idx: cidx,
            generation: c.generation,
        };
        self.stats.tcp_accepted += 1;
        if self.arm_tcp_recv(cidx).is_err() {
            self.stats.tcp_errors += 1;
            self.abort_conn(cidx, false);
            return 0;
        }
        let event = Event::Accepted {
            listener: ListenerId(listener),
            conn: id,
            peer,
            local,
        };
        f(&mut EngineHandle { core: self }, event);
        1
    }

    fn arm_tcp_recv(&mut self, cidx: u32) -> io::Result<()> {
        if self.closing {
            return Ok(());
        }
        let Some(c) = self.conns.get(cidx) else {
            return Ok(());
        };
        if c.recv || c.state != State::Open {
            return Ok(());
        }
        let fd = c.fd();
        let first = !c.got_msg;
        let spare = &mut c.rbuf[c.filled..];
        if spare.is_empty() {
            return Err(io::ErrorKind::OutOfMemory.into());
        }
        let recv = opcode::Recv::new(types::Fd(fd), spare.as_mut_ptr(), spare.len() as u32)
            .build()
            .user_data(ring::tag(Kind::TcpRecv, cidx));
        let ts: &types::Timespec = if first { &self.read_ts } else { &self.idle_ts };
        let timer = opcode::LinkTimeout::new(ts)
            .build()
            .user_data(ring::tag(Kind::TcpRecvTimer, cidx));
        // SAFETY: `rbuf[filled..]` is not accessed, resized or freed while `recv` is set, which
        // only this operation's completion clears, and the slot (with its descriptor) is
        // released only when no operation is in flight; the timespec is boxed in `self`.
        unsafe { self.push_linked(recv, timer) }?;
        let c = &mut self.conns.slots[cidx as usize];
        c.recv = true;
        c.timers += 1;
        Ok(())
    }

    /// Starts writing `out`, or `pending` once `out` is done; nothing if a write is in flight.
    fn arm_tcp_send(&mut self, cidx: u32) -> io::Result<()> {
        if self.closing {
            return Ok(());
        }
        let Some(c) = self.conns.get(cidx) else {
            return Ok(());
        };
        if c.send || !matches!(c.state, State::Open | State::Flushing) {
            return Ok(());
        }
        if c.out_sent >= c.out.len() {
            c.out.clear();
            c.out_sent = 0;
            if c.pending.is_empty() {
                return Ok(());
            }
            mem::swap(&mut c.out, &mut c.pending);
        }
        let rest = &c.out[c.out_sent..];
        let len = u32::try_from(rest.len()).unwrap_or(u32::MAX);
        let send = opcode::Send::new(types::Fd(c.fd()), rest.as_ptr(), len)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(ring::tag(Kind::TcpSend, cidx));
        let timer = opcode::LinkTimeout::new(&*self.write_ts)
            .build()
            .user_data(ring::tag(Kind::TcpSendTimer, cidx));
        // SAFETY: `out` is not written, resized or freed while `send` is set (replies queue in
        // `pending` meanwhile), only this operation's completion clears it, and the slot is
        // released only when no operation is in flight; the timespec is boxed in `self`.
        unsafe { self.push_linked(send, timer) }?;
        let c = &mut self.conns.slots[cidx as usize];
        c.send = true;
        c.timers += 1;
        Ok(())
    }

    pub(super) fn on_tcp_recv(&mut self, cidx: u32, res: i32, f: &mut Callback<'_>) -> usize {
        let max = self.cfg.max_tcp_msg;
        let Some(c) = self.conns.get(cidx) else {
            return 0;
        };
        c.recv = false;
        match c.state {
            State::Open => {}
            State::Flushing => {
                // Closed by the daemon: input is discarded and not read any further.
                c.filled = 0;
                if res <= 0 {
                    self.abort_conn(cidx, false);
                }
                return 0;
            }
            State::Draining => {
                self.maybe_release(cidx);
                return 0;
            }
            State::Free => return 0,
        }
        let Ok(n @ 1..) = usize::try_from(res) else {
            if res == -libc::ECANCELED {
                self.stats.tcp_timeouts += 1;
            } else if res < 0 {
                self.stats.tcp_errors += 1;
            }
            self.abort_conn(cidx, true);
            return 0;
        };
        c.filled += n;
        let filled = c.filled;
        let id = ConnId {
            idx: cidx,
            generation: c.generation,
        };
        // Take the buffer out of the slot so the callback can use the engine meanwhile.
        let mut rbuf = mem::take(&mut c.rbuf);
        let mut start = 0;
        let mut delivered = 0;
        let mut malformed = false;
        let mut need = 0;
        loop {
            match frame(&rbuf[start..filled], max) {
                Frame::Message(len) => {
                    self.stats.tcp_messages += 1;
                    let event = Event::TcpMessage {
                        conn: id,
                        data: &rbuf[start + 2..start + 2 + len],
                    };
                    f(&mut EngineHandle { core: self }, event);
                    delivered += 1;
                    start += 2 + len;
                    if self.conns.open_idx(id).is_none() {
                        break;
                    }
                }
                Frame::Partial(n) => {
                    need = n;
                    break;
                }
                Frame::Malformed => {
                    malformed = true;
                    break;
                }
            }
        }
        rbuf.copy_within(start..filled, 0);
        if need > rbuf.len() {
            rbuf.resize(need, 0);
        }
        let c = &mut self.conns.slots[cidx as usize];
        c.rbuf = rbuf;
        c.filled = filled - start;
        c.got_msg |= delivered > 0;
        if malformed {
            self.stats.tcp_malformed += 1;
            self.abort_conn(cidx, true);
        } else if self.conns.open_idx(id).is_some() && self.arm_tcp_recv(cidx).is_err() {
            self.stats.tcp_errors += 1;
            self.abort_conn(cidx, true);
        }
        delivered
    }

    pub(super) fn on_tcp_send(&mut self, cidx: u32, res: i32) {
        let Some(c) = self.conns.get(cidx) else {
            return;
        };
        c.send = false;
        let state = c.state;
        match state {
            State::Open | State::Flushing => {}
            State::Draining => {
                self.maybe_release(cidx);
                return;
            }
            State::Free => return,
        }
        let Ok(n @ 1..) = usize::try_from(res) else {
            if res == -libc::ECANCELED {
                self.stats.tcp_timeouts += 1;
            } else {
                self.stats.tcp_errors += 1;
            }
            self.abort_conn(cidx, state == State::Open);
            return;
        };
        c.out_sent += n;
        if self.arm_tcp_send(cidx).is_err() {
            self.stats.tcp_errors += 1;
            self.abort_conn(cidx, state == State::Open);
            return;
        }
        let c = &mut self.conns.slots[cidx as usize];
        if state == State::Flushing && !c.send {
            c.state = State::Draining;
            self.wind_down(cidx);
        }
    }

    pub(super) fn on_tcp_timer(&mut self, cidx: u32) {
        if let Some(c) = self.conns.get(cidx) {
            c.timers = c.timers.saturating_sub(1);
            self.maybe_release(cidx);
        }
    }

    pub(super) fn send_tcp(&mut self, id: ConnId, data: &[u8]) -> io::Result<()> {
        let Ok(len) = u16::try_from(data.len()) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "DNS message longer than 65535 bytes",
            ));
        };
        let Some(cidx) = self.conns.open_idx(id) else {
            return Err(io::ErrorKind::NotConnected.into());
        };
        let c = &mut self.conns.slots[cidx as usize];
        let queued = c.out.len() - c.out_sent + c.pending.len();
        if queued + 2 + data.len() > self.cfg.max_tcp_queue {
            self.stats.tcp_overflow += 1;
            self.abort_conn(cidx, true);
            return Err(io::ErrorKind::ConnectionAborted.into());
        }
        c.pending.extend_from_slice(&len.to_be_bytes());
        c.pending.extend_from_slice(data);
        if let Err(e) = self.arm_tcp_send(cidx) {
            self.stats.tcp_errors += 1;
            self.abort_conn(cidx, true);
            return Err(e);
        }
        Ok(())
    }

    pub(super) fn tcp_queued(&self, id: ConnId) -> Option<usize> {
        let cidx = self.conns.open_idx(id)?;
        let c = &self.conns.slots[cidx as usize];
        Some(c.out.len() - c.out_sent + c.pending.len())
    }

    pub(super) fn close_tcp(&mut self, id: ConnId) {
        let Some(cidx) = self.conns.open_idx(id) else {
            return;
        };
        self.stats.tcp_closed += 1;
        let c = &mut self.conns.slots[cidx as usize];
        c.generation = c.generation.wrapping_add(1);
        if c.send {
            c.state = State::Flushing;
        } else {
            c.state = State::Draining;
            self.wind_down(cidx);
        }
    }

    /// Closes connection `cidx` now, dropping unsent replies; reports it as
    /// [`Event::TcpClosed`] when `notify` and it was open.
    pub(super) fn abort_conn(&mut self, cidx: u32, notify: bool) {
        let Some(c) = self.conns.get(cidx) else {
            return;
        };
        match c.state {
            State::Open => {
                if notify {
                    self.closed.push_back(ConnId {
                        idx: cidx,
                        generation: c.generation,
                    });
                }
                c.generation = c.generation.wrapping_add(1);
                self.stats.tcp_closed += 1;
            }
            State::Flushing => {}
            State::Draining | State::Free => return,
        }
        c.state = State::Draining;
        c.pending.clear();
        self.wind_down(cidx);
    }

    /// A `Draining` connection: make in-flight operations finish, then release.
    fn wind_down(&mut self, cidx: u32) {
        let Some(c) = self.conns.get(cidx) else {
            return;
        };
        if c.recv || c.send {
            // Wakes a pending Recv (end of file) and Send (EPIPE); the descriptor stays
            // open until their completions arrive.
            if let Some(s) = &c.stream {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
        self.maybe_release(cidx);
    }

    /// Releases a `Draining` slot with nothing in flight: closes the socket.
    fn maybe_release(&mut self, cidx: u32) {
        let Some(c) = self.conns.get(cidx) else {
            return;
        };
        if c.state != State::Draining || c.busy() {
            return;
        }
        c.stream = None;
        c.state = State::Free;
        c.filled = 0;
        c.out.clear();
        c.out_sent = 0;
        c.pending.clear();
        // Don't keep the memory of one large exchange per slot forever.
        c.out.shrink_to(RBUF_INITIAL);
        c.pending.shrink_to(RBUF_INITIAL);
        self.conns.free.push(cidx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames() {
        assert_eq!(frame(&[], 512), Frame::Partial(2));
        assert_eq!(frame(&[0], 512), Frame::Partial(2));
        assert_eq!(frame(&[0, 0], 512), Frame::Malformed);
        assert_eq!(frame(&[0, 3, 1, 2], 512), Frame::Partial(5));
        assert_eq!(frame(&[0, 3, 1, 2, 3], 512), Frame::Message(3));
        assert_eq!(frame(&[0, 3, 1, 2, 3, 0, 1], 512), Frame::Message(3));
        assert_eq!(frame(&[2, 1], 512), Frame::Malformed);
        assert_eq!(frame(&[255, 255], 65535), Frame::Partial(65537));
    }

    #[test]
    fn conn_slots_are_bounded_and_reused() {
        let mut t = Conns::new(2, 65535);
        assert_eq!(t.rbuf_initial, RBUF_INITIAL);
        assert_eq!(t.alloc(), Some(0));
        assert_eq!(t.alloc(), Some(1));
        assert_eq!(t.alloc(), None);
        t.free.push(0);
        assert_eq!(t.alloc(), Some(0));
        assert_eq!(Conns::new(1, 100).rbuf_initial, 102);
    }
}
