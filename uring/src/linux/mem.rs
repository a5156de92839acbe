//! Kernel-visible memory: page-aligned anonymous mappings ([`Region`]), the provided buffer
//! ring the UDP receives draw from ([`BufRing`]) and the UDP send slots ([`SendSlots`]).
//!
//! Rust never holds a reference into memory the kernel may write: buffers are reached through
//! raw pointers, and a slice is made only for a buffer a completion has handed back to us and
//! that is not yet recycled. Freeing is the owner's business: the engine drops these only once
//! no operation can touch them, and [`Region::leak`] keeps them mapped when it cannot be sure.

use std::io;
use std::mem;
use std::net::SocketAddr;
use std::ptr::{self, NonNull};
use std::slice;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::Submitter;

use super::addr::{SockAddrBuf, to_raw};

/// An anonymous, private, read-write mapping, unmapped on drop unless leaked.
pub(super) struct Region {
    ptr: NonNull<u8>,
    len: usize,
    leaked: bool,
}

impl Region {
    /// Maps `len` zeroed bytes (at least one page).
    pub(super) fn new(len: usize) -> io::Result<Self> {
        let len = len.max(1);
        // SAFETY: an anonymous private mapping at an address of the kernel's choice touches no
        // existing memory; the result is checked against MAP_FAILED below.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave null"))?;
        Ok(Self {
            ptr,
            len,
            leaked: false,
        })
    }

    pub(super) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Keeps the mapping alive forever: used when the kernel might still use it.
    pub(super) fn leak(&mut self) {
        self.leaked = true;
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        if self.leaked {
            return;
        }
        // SAFETY: `ptr`/`len` come from a successful mmap and are unmapped exactly once; the
        // owner guarantees no operation still uses the memory (or it called `leak`).
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// The kernel's `struct io_uring_buf` (UAPI): one entry of a provided buffer ring. In the
/// first entry, `resv` doubles as the ring's tail.
#[repr(C)]
struct RawBuf {
    addr: u64,
    len: u32,
    bid: u16,
    resv: u16,
}

const _: () = assert!(mem::size_of::<RawBuf>() == 16);

/// A provided buffer ring (`IORING_REGISTER_PBUF_RING`, Linux 5.19) with its buffers.
///
/// The kernel consumes entries from its head up to the tail we publish; each completion that
/// used a buffer names it by id (`bid`), and the buffer is ours until [`BufRing::recycle`]
/// puts it back.
pub(super) struct BufRing {
    ring: Region,
    bufs: Region,
    count: u16,
    stride: usize,
    buf_len: u32,
    bgid: u16,
    tail: u16,
    published: u16,
}

impl BufRing {
    /// `count` buffers (a power of two, at most 32768) of `buf_len` bytes each, every one
    /// already offered to the kernel once the ring is registered.
    pub(super) fn new(count: u16, buf_len: u32, bgid: u16) -> io::Result<Self> {
        if !count.is_power_of_two() || count > 32768 || buf_len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "buffer ring: count must be a power of two <= 32768",
            ));
        }
        let stride = (buf_len as usize).next_multiple_of(64);
        let ring = Region::new(usize::from(count) * mem::size_of::<RawBuf>())?;
        let bufs = Region::new(usize::from(count) * stride)?;
        let mut me = Self {
            ring,
            bufs,
            count,
            stride,
            buf_len,
            bgid,
            tail: 0,
            published: 0,
        };
        for bid in 0..count {
            me.recycle(bid);
        }
        me.publish();
        Ok(me)
    }

    pub(super) fn bgid(&self) -> u16 {
        self.bgid
    }

    /// Registers the ring with `submitter`'s io_uring under [`BufRing::bgid`].
    pub(super) fn register(&self, submitter: &Submitter<'_>) -> io::Result<()> {
        // SAFETY: the ring memory is page-aligned (mmap), holds `count` entries and stays
        // mapped until the io_uring is destroyed or the group unregistered: the engine drops
        // its ring before this value, and the probe unregisters before dropping it.
        unsafe {
            submitter.register_buf_ring_with_flags(
                self.ring.as_ptr() as u64,
                self.count,
                self.bgid,
                0,
            )
        }
    }

    /// Offers buffer `bid` to the kernel again (visible after [`BufRing::publish`]).
    pub(super) fn recycle(&mut self, bid: u16) {
        if bid >= self.count {
            return;
        }
        let idx = usize::from(self.tail & (self.count - 1));
        let entry = self.ring.as_ptr().cast::<RawBuf>().wrapping_add(idx);
        let addr = self
            .bufs
            .as_ptr()
            .wrapping_add(usize::from(bid) * self.stride);
        // SAFETY: `idx < count`, so `entry` lies inside the ring mapping and is aligned (the
        // mapping is page-aligned, entries are 16 bytes). The slot is past the tail we
        // published, so the kernel does not read it now; `resv` (the tail, in entry 0) is
        // not written here.
        unsafe {
            ptr::addr_of_mut!((*entry).addr).write(addr as u64);
            ptr::addr_of_mut!((*entry).len).write(self.buf_len);
            ptr::addr_of_mut!((*entry).bid).write(bid);
        }
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes recycled buffers visible to the kernel.
    pub(super) fn publish(&mut self) {
        if self.tail == self.published {
            return;
        }
        let base = self.ring.as_ptr().cast::<RawBuf>();
        // SAFETY: the tail is the naturally aligned u16 `resv` of entry 0, inside our mapping
        // for as long as `self` lives; only this thread writes it and the kernel reads it
        // with an acquire load, so the release store orders the entry writes before it (as
        // liburing's io_uring_buf_ring_advance).
        let tail = unsafe { AtomicU16::from_ptr(ptr::addr_of_mut!((*base).resv)) };
        tail.store(self.tail, Ordering::Release);
        self.published = self.tail;
    }

    /// The first `len` bytes of buffer `bid`, or `None` for an id or length out of range.
    ///
    /// # Safety
    ///
    /// `bid` must come from a completion of this group that has not been recycled since,
    /// and the slice must be dropped before `bid` is recycled: until then the kernel does
    /// not write the buffer.
    pub(super) unsafe fn buf(&self, bid: u16, len: usize) -> Option<&[u8]> {
        if bid >= self.count || len > self.buf_len as usize {
            return None;
        }
        let start = self
            .bufs
            .as_ptr()
            .wrapping_add(usize::from(bid) * self.stride);
        // SAFETY: in bounds (checked above), initialised (mapped zeroed, then written by the
        // kernel) and not written while the caller holds the buffer (the caller's contract).
        Some(unsafe { slice::from_raw_parts(start, len) })
    }

    /// Keeps the memory mapped forever (the kernel may still use it).
    pub(super) fn leak(&mut self) {
        self.ring.leak();
        self.bufs.leak();
    }
}

/// What a `SendMsg` reads besides the payload: header, one iovec, destination.
#[repr(C)]
struct SendMeta {
    hdr: libc::msghdr,
    iov: libc::iovec,
    addr: SockAddrBuf,
}

/// A filled send slot: every pointer stays valid until the slot is released.
pub(super) struct Filled {
    pub(super) slot: u32,
    /// The slot's `msghdr` (one iovec over the payload, the destination as name).
    pub(super) hdr: *const libc::msghdr,
    pub(super) payload: *const u8,
    pub(super) len: u32,
    pub(super) addr: *const libc::sockaddr,
    pub(super) addr_len: libc::socklen_t,
}

/// Preallocated UDP send slots: payload, `msghdr`, `iovec` and destination stay put in a slot
/// until the send's completion releases it.
pub(super) struct SendSlots {
    meta: Region,
    data: Region,
    size: usize,
    /// Distance between slots: the size rounded up to a cache line, plus one line, so the
    /// slots in use start in different cache sets (a power-of-two stride would put every
    /// slot's first line in the same set).
    stride: usize,
    count: u32,
    free: Vec<u32>,
    busy: Vec<bool>,
}

impl SendSlots {
    /// `count` slots of `size` payload bytes.
    pub(super) fn new(count: u32, size: u32) -> io::Result<Self> {
        let n = count as usize;
        let size = size as usize;
        let stride = size.next_multiple_of(64) + 64;
        Ok(Self {
            meta: Region::new(n * mem::size_of::<SendMeta>())?,
            data: Region::new(n * stride)?,
            size,
            stride,
            count,
            free: (0..count).rev().collect(),
            busy: vec![false; n],
        })
    }

    /// Payload bytes per slot.
    pub(super) fn size(&self) -> usize {
        self.size
    }

    /// Copies `data` (at most [`SendSlots::size`] bytes) and `peer` into a free slot; returns
    /// where they now are (for a `Send` with a destination, or a `SendMsg` through the slot's
    /// `msghdr`), or `None` when all slots are in flight.
    pub(super) fn fill(&mut self, peer: SocketAddr, data: &[u8]) -> Option<Filled> {
        if data.len() > self.size {
            return None;
        }
        let idx = self.free.pop()?;
        self.busy[idx as usize] = true;
        let buf = self.data.as_ptr().wrapping_add(idx as usize * self.stride);
        let meta = self
            .meta
            .as_ptr()
            .cast::<SendMeta>()
            .wrapping_add(idx as usize);
        let (addr, addr_len) = to_raw(peer);
        // SAFETY: slot `idx < count` was free, so no operation reads it; `buf` has room for
        // `size >= data.len()` bytes and `meta` is an aligned SendMeta, both inside their
        // mappings (page-aligned bases, whole-element offsets). An all-zero msghdr is valid
        // (null pointers and zero lengths), and the fields set point into this same slot.
        unsafe {
            ptr::copy_nonoverlapping(data.as_ptr(), buf, data.len());
            ptr::addr_of_mut!((*meta).addr).write(addr);
            ptr::addr_of_mut!((*meta).iov).write(libc::iovec {
                iov_base: buf.cast(),
                iov_len: data.len(),
            });
            let mut hdr: libc::msghdr = mem::zeroed();
            hdr.msg_name = ptr::addr_of_mut!((*meta).addr).cast();
            hdr.msg_namelen = addr_len;
            hdr.msg_iov = ptr::addr_of_mut!((*meta).iov);
            hdr.msg_iovlen = 1;
            ptr::addr_of_mut!((*meta).hdr).write(hdr);
        }
        Some(Filled {
            slot: idx,
            hdr: meta.cast::<libc::msghdr>().cast_const(),
            payload: buf.cast_const(),
            len: data.len() as u32,
            addr: meta
                .cast::<u8>()
                .wrapping_add(mem::offset_of!(SendMeta, addr))
                .cast(),
            addr_len,
        })
    }

    /// Returns slot `idx` once its send has completed (or was never submitted).
    pub(super) fn release(&mut self, idx: u32) {
        if idx < self.count && mem::take(&mut self.busy[idx as usize]) {
            self.free.push(idx);
        }
    }

    /// Keeps the memory mapped forever (the kernel may still use it).
    pub(super) fn leak(&mut self) {
        self.meta.leak();
        self.data.leak();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_slots_cycle() {
        let mut s = SendSlots::new(2, 16).unwrap();
        let peer: SocketAddr = "127.0.0.1:53".parse().unwrap();
        let a = s.fill(peer, b"hello").unwrap().slot;
        let b = s.fill(peer, b"world").unwrap().slot;
        assert_ne!(a, b);
        assert!(s.fill(peer, b"x").is_none());
        assert!(s.fill(peer, &[0; 17]).is_none());
        s.release(a);
        s.release(a); // double release is ignored
        assert_eq!(s.fill(peer, b"again").map(|x| x.slot), Some(a));
        assert!(s.fill(peer, b"x").is_none());
    }

    #[test]
    fn buf_ring_layout() {
        let mut r = BufRing::new(4, 100, 7).unwrap();
        assert_eq!(r.bgid(), 7);
        assert_eq!(r.published, 4);
        // SAFETY: no kernel is attached to this ring, so nothing writes the buffers.
        let b = unsafe { r.buf(3, 100) }.unwrap();
        assert_eq!(b.len(), 100);
        // SAFETY: as above.
        assert!(unsafe { r.buf(4, 1) }.is_none());
        // SAFETY: as above.
        assert!(unsafe { r.buf(0, 101) }.is_none());
        r.recycle(1);
        r.publish();
        assert_eq!(r.published, 5);
        assert!(BufRing::new(3, 100, 0).is_err());
    }
}
