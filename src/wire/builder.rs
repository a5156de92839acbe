//! Writes a response into a reusable buffer: header from the request (miekg
//! `SetReply`), the question as sent, then records section by section.

use super::name::Name;
use super::request::Request;
use super::{HEADER_LEN, flags, hdr};

/// The sections records go into, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SectionKind {
    /// Answer.
    Answer = 1,
    /// Authority.
    Authority = 2,
    /// Additional.
    Additional = 3,
}

/// A response under construction in `buf` (cleared first). Records are written
/// uncompressed, as CoreDNS packs replies; the server compresses on truncation.
pub struct Builder<'b> {
    buf: &'b mut Vec<u8>,
    section: SectionKind,
    counts: [u16; 4],
}

impl<'b> Builder<'b> {
    /// miekg `SetReply`: same ID and opcode, QR=1, RD and CD copied for QUERY,
    /// rcode NOERROR, the question echoed as sent.
    pub fn reply(buf: &'b mut Vec<u8>, req: &Request<'_>) -> Self {
        Self::reply_flags(buf, req, req.flags())
    }

    /// [`Self::reply`] with the request flags `f` (as plugins changed them).
    pub fn reply_flags(buf: &'b mut Vec<u8>, req: &Request<'_>, f: u16) -> Self {
        buf.clear();
        let opcode = u16::from(req.opcode());
        let mut nf = flags::QR | (opcode << 11);
        if opcode == 0 {
            nf |= f & (flags::RD | flags::CD);
        }
        buf.extend_from_slice(&req.id().to_be_bytes());
        buf.extend_from_slice(&nf.to_be_bytes());
        buf.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
        buf.extend_from_slice(req.question_wire());
        Self {
            buf,
            section: SectionKind::Answer,
            counts: [1, 0, 0, 0],
        }
    }

    /// Sets header flag bits.
    pub fn set_flags(&mut self, bits: u16) {
        let f = hdr::flags(self.buf) | bits;
        hdr::set_flags(self.buf, f);
    }

    /// Clears header flag bits.
    pub fn clear_flags(&mut self, bits: u16) {
        let f = hdr::flags(self.buf) & !bits;
        hdr::set_flags(self.buf, f);
    }

    /// Sets the (4-bit) rcode.
    pub fn set_rcode(&mut self, rc: u8) {
        hdr::set_rcode(self.buf, rc);
    }

    /// Moves on to `s` (sections only go forward).
    pub fn section(&mut self, s: SectionKind) {
        debug_assert!(s >= self.section);
        self.section = s;
    }

    /// Whether another record fits the section's 16-bit count and `rdata_len` its RDLENGTH;
    /// a record that does not is left out (a wire message cannot carry it).
    fn room(&self, rdata_len: usize) -> bool {
        self.counts[self.section as usize] < u16::MAX && rdata_len <= usize::from(u16::MAX)
    }

    /// Appends a record with an owner given in wire form.
    pub fn rr_wire(&mut self, owner: &[u8], rtype: u16, class: u16, ttl: u32, rdata: &[u8]) {
        if !self.room(rdata.len()) {
            return;
        }
        self.buf.extend_from_slice(owner);
        self.buf.extend_from_slice(&rtype.to_be_bytes());
        self.buf.extend_from_slice(&class.to_be_bytes());
        self.buf.extend_from_slice(&ttl.to_be_bytes());
        // At most u16::MAX (`room`).
        self.buf
            .extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        self.buf.extend_from_slice(rdata);
        self.counts[self.section as usize] += 1;
    }

    /// Appends a record whose owner is `parts` concatenated (a name in wire form).
    pub fn rr_parts(&mut self, parts: &[&[u8]], rtype: u16, class: u16, ttl: u32, rdata: &[u8]) {
        if !self.room(rdata.len()) {
            return;
        }
        for p in parts {
            self.buf.extend_from_slice(p);
        }
        self.rr_wire(&[], rtype, class, ttl, rdata);
    }

    /// Appends a record.
    pub fn rr(&mut self, owner: &Name, rtype: u16, class: u16, ttl: u32, rdata: &[u8]) {
        self.rr_wire(owner.wire(), rtype, class, ttl, rdata);
    }

    /// Appends a record whose RDATA is written by `f` into the buffer.
    pub fn rr_with(
        &mut self,
        owner: &[u8],
        rtype: u16,
        class: u16,
        ttl: u32,
        f: impl FnOnce(&mut Vec<u8>),
    ) {
        if !self.room(0) {
            return;
        }
        let start = self.buf.len();
        self.buf.extend_from_slice(owner);
        self.buf.extend_from_slice(&rtype.to_be_bytes());
        self.buf.extend_from_slice(&class.to_be_bytes());
        self.buf.extend_from_slice(&ttl.to_be_bytes());
        let len_at = self.buf.len();
        self.buf.extend_from_slice(&[0, 0]);
        f(self.buf);
        let Ok(n) = u16::try_from(self.buf.len() - len_at - 2) else {
            self.buf.truncate(start);
            return;
        };
        self.buf[len_at..len_at + 2].copy_from_slice(&n.to_be_bytes());
        self.counts[self.section as usize] += 1;
    }

    /// Writes the counts; the message is complete.
    pub fn finish(self) -> usize {
        for (i, c) in self.counts.iter().enumerate() {
            hdr::set_count(self.buf, i, *c);
        }
        self.buf.len()
    }

    /// Bytes written so far.
    pub fn written(&self) -> usize {
        self.buf.len()
    }
}

/// Writes a bare reply with `rcode` (CoreDNS `errorFunc`: `SetRcode` on the request).
pub fn bare_reply(buf: &mut Vec<u8>, req: &Request<'_>, rcode: u8) {
    let mut b = Builder::reply(buf, req);
    b.set_rcode(rcode);
    b.finish();
    debug_assert!(buf.len() >= HEADER_LEN);
}
