//! The in-flight slab of one source socket (or TCP connection): a fixed
//! number of slots, each owning a 16-bit DNS ID. The low bits of an ID are the
//! slot index, the high bits a generation bumped on every reuse, so a late
//! answer to an expired query does not complete the slot's next query.
//! Matching is by (socket, ID): the socket is the source port.

/// Marks a free slot in `sent`.
const FREE: u64 = u64::MAX;

#[derive(Debug)]
pub struct Slots {
    ids: Vec<u16>,
    /// Actual send time (timeouts run from it), `FREE` when the slot is free.
    sent: Vec<u64>,
    /// Scheduled send time (latency runs from it; equals `sent` without `-Q`).
    sched: Vec<u64>,
    free: Vec<u16>,
    idx_bits: u32,
    inflight: usize,
}

impl Slots {
    /// At least `want` slots (rounded up to a power of two, at most 65,536).
    pub fn new(want: usize) -> Self {
        let cap = want.clamp(1, 65_536).next_power_of_two();
        let idx_bits = cap.trailing_zeros();
        Self {
            ids: (0..cap).map(|i| i as u16).collect(),
            sent: vec![FREE; cap],
            sched: vec![0; cap],
            free: (0..cap).rev().map(|i| i as u16).collect(),
            idx_bits,
            inflight: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.sent.len()
    }

    pub fn inflight(&self) -> usize {
        self.inflight
    }

    pub fn free_count(&self) -> usize {
        self.free.len()
    }

    fn mask(&self) -> u16 {
        ((1u32 << self.idx_bits) - 1) as u16
    }

    /// Takes a slot for a query scheduled at `sched_ns` and sent at
    /// `sent_ns`; returns its ID.
    pub fn take(&mut self, sched_ns: u64, sent_ns: u64) -> Option<u16> {
        let idx = self.free.pop()?;
        let i = usize::from(idx);
        let gen_step = if self.idx_bits >= 16 {
            0
        } else {
            1u16 << self.idx_bits
        };
        let id = self.ids[i].wrapping_add(gen_step);
        self.ids[i] = id;
        self.sent[i] = sent_ns;
        self.sched[i] = sched_ns;
        self.inflight += 1;
        Some(id)
    }

    /// Gives back a slot taken for a query that was not sent after all.
    pub fn untake(&mut self, id: u16) {
        let i = usize::from(id & self.mask());
        if self.sent[i] != FREE && self.ids[i] == id {
            self.sent[i] = FREE;
            self.free.push(i as u16);
            self.inflight -= 1;
        }
    }

    /// Completes the query with this ID; returns its (scheduled, actual)
    /// send times, or `None` for an answer to nothing in flight (late,
    /// duplicate or foreign).
    pub fn complete(&mut self, id: u16) -> Option<(u64, u64)> {
        let i = usize::from(id & self.mask());
        let sent = self.sent[i];
        if sent == FREE || self.ids[i] != id {
            return None;
        }
        self.sent[i] = FREE;
        self.free.push(i as u16);
        self.inflight -= 1;
        Some((self.sched[i], sent))
    }

    /// Frees every query actually sent at or before `deadline_ns`; returns how many.
    pub fn expire(&mut self, deadline_ns: u64) -> u64 {
        if self.inflight == 0 {
            return 0;
        }
        let mut n = 0;
        for i in 0..self.sent.len() {
            let s = self.sent[i];
            if s != FREE && s <= deadline_ns {
                self.sent[i] = FREE;
                self.free.push(i as u16);
                n += 1;
            }
        }
        self.inflight -= n as usize;
        n
    }

    /// Frees everything still in flight (end of run or lost connection).
    pub fn expire_all(&mut self) -> u64 {
        self.expire(FREE - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_match_and_generations_differ() {
        let mut s = Slots::new(3);
        assert_eq!(s.capacity(), 4);
        let a = s.take(7, 10).unwrap_or(0);
        assert_eq!(s.complete(a), Some((7, 10)));
        assert_eq!(s.complete(a), None, "duplicate answer");
        let b = s.take(20, 20).unwrap_or(0);
        assert_eq!(a & 3, b & 3, "same slot reused");
        assert_ne!(a, b, "new generation");
        assert_eq!(s.complete(a), None, "late answer to the old query");
        assert_eq!(s.inflight(), 1);
    }

    #[test]
    fn expiry_and_exhaustion() {
        let mut s = Slots::new(2);
        let a = s.take(5, 5).unwrap_or(0);
        let _b = s.take(50, 50).unwrap_or(0);
        assert!(s.take(60, 60).is_none());
        assert_eq!(s.expire(10), 1);
        assert_eq!(s.complete(a), None);
        assert_eq!(s.expire_all(), 1);
        assert_eq!(s.inflight(), 0);
        assert_eq!(s.free_count(), 2);
        let full = Slots::new(70_000);
        assert_eq!(full.capacity(), 65_536);
    }
}
