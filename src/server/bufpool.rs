//! Reusable byte buffers for parked queries (the query's copy, its reply and
//! scratch space), kept per thread: once warm, a forwarded query takes its
//! buffers from here instead of the allocator, and gives them back when its
//! task ends. Bounded: at most [`KEEP`] buffers of at most [`MAX_CAP`] bytes
//! are kept per thread.

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};

/// Buffers kept per thread.
const KEEP: usize = 2048;
/// Larger buffers go back to the allocator.
const MAX_CAP: usize = 4096;

thread_local! {
    static POOL: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// A buffer that returns to its thread's pool when dropped.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Buf(Vec<u8>);

/// An empty buffer.
pub fn take() -> Buf {
    let v = POOL
        .try_with(|p| p.borrow_mut().pop())
        .ok()
        .flatten()
        .unwrap_or_else(|| Vec::with_capacity(512));
    Buf(v)
}

/// A buffer holding a copy of `data`.
pub fn copy_of(data: &[u8]) -> Buf {
    let mut b = take();
    b.0.extend_from_slice(data);
    b
}

impl From<Vec<u8>> for Buf {
    /// Wraps a buffer made elsewhere: it joins the pool when dropped.
    fn from(v: Vec<u8>) -> Self {
        Self(v)
    }
}

impl Deref for Buf {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl DerefMut for Buf {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        let mut v = std::mem::take(&mut self.0);
        if v.capacity() == 0 || v.capacity() > MAX_CAP {
            return;
        }
        v.clear();
        let _ = POOL.try_with(|p| {
            let mut p = p.borrow_mut();
            if p.len() < KEEP {
                p.push(v);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_and_bounded() {
        let a = copy_of(b"query");
        assert_eq!(&a[..], b"query");
        let ptr = a.as_ptr();
        drop(a);
        let b = take();
        assert!(b.is_empty());
        assert_eq!(b.as_ptr(), ptr, "the buffer came back from the pool");
        // A large buffer is not kept.
        let mut big = take();
        big.reserve(MAX_CAP * 2);
        drop(big);
        drop(b);
        let kept = POOL.with(|p| p.borrow().iter().all(|v| v.capacity() <= MAX_CAP));
        assert!(kept);
        // At most KEEP are kept.
        let many: Vec<Buf> = (0..KEEP + 10).map(|_| take()).collect();
        drop(many);
        assert!(POOL.with(|p| p.borrow().len()) <= KEEP);
    }
}
