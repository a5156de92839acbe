//! Domain names in uncompressed wire form, held inline (no heap).

use std::fmt;

/// Longest wire-format name (RFC 1035 §2.3.4).
pub const MAX_NAME: usize = 255;

/// Why a name could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameError {
    /// Ran past the end of the message.
    Truncated,
    /// A compression pointer loop or too many pointers.
    PointerLoop,
    /// Longer than 255 octets.
    TooLong,
    /// A label type other than plain or pointer.
    BadLabel,
}

/// Follows a possibly compressed name at `off` in `msg` as miekg unpacks it
/// (at most 126 pointers, 255 octets, plain or pointer labels only), calling
/// `label(offset in the uncompressed name, label)` for each label. Returns the
/// offset just past the name's bytes at `off`, the uncompressed length
/// (terminating zero included) and whether a pointer was followed.
#[inline(always)]
fn walk(
    msg: &[u8],
    off: usize,
    mut label: impl FnMut(usize, &[u8]),
) -> Result<(usize, usize, bool), NameError> {
    let mut pos = off;
    let mut end = None;
    let mut jumps = 0;
    let mut w = 0usize;
    loop {
        let l = *msg.get(pos).ok_or(NameError::Truncated)?;
        match l & 0xC0 {
            0x00 => {
                let l = l as usize;
                if l == 0 {
                    if w + 1 > MAX_NAME {
                        return Err(NameError::TooLong);
                    }
                    return Ok(match end {
                        Some(e) => (e, w + 1, true),
                        None => (pos + 1, w + 1, false),
                    });
                }
                let bytes = msg.get(pos + 1..pos + 1 + l).ok_or(NameError::Truncated)?;
                if w + 1 + l + 1 > MAX_NAME {
                    return Err(NameError::TooLong);
                }
                label(w, bytes);
                w += 1 + l;
                pos += 1 + l;
            }
            0xC0 => {
                let b2 = *msg.get(pos + 1).ok_or(NameError::Truncated)?;
                if end.is_none() {
                    end = Some(pos + 2);
                }
                jumps += 1;
                if jumps > 126 {
                    return Err(NameError::PointerLoop);
                }
                pos = (((l & 0x3F) as usize) << 8) | b2 as usize;
            }
            _ => return Err(NameError::BadLabel),
        }
    }
}

/// An uncompressed wire-format name, stored inline.
#[derive(Clone)]
pub struct Name {
    buf: [u8; MAX_NAME],
    len: u8,
}

impl Default for Name {
    fn default() -> Self {
        Self::root()
    }
}

impl PartialEq for Name {
    fn eq(&self, o: &Self) -> bool {
        self.wire() == o.wire()
    }
}
impl Eq for Name {}

impl Name {
    /// The root name.
    pub fn root() -> Self {
        Self {
            buf: [0; MAX_NAME],
            len: 1,
        }
    }

    /// Wire bytes, terminating zero included.
    pub fn wire(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }

    /// Length in octets on the wire (never 0: the root is one octet).
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// True for the root.
    pub fn is_root(&self) -> bool {
        self.len == 1
    }

    /// Builds from uncompressed wire bytes (validated).
    pub fn from_wire(w: &[u8]) -> Result<Self, NameError> {
        let (n, _) = Self::read(w, 0)?;
        Ok(n)
    }

    /// Reads a possibly compressed name at `off` in `msg`; returns it and the
    /// offset just past the name's bytes at `off`.
    #[inline]
    pub fn read(msg: &[u8], off: usize) -> Result<(Self, usize), NameError> {
        let mut n = Self {
            buf: [0; MAX_NAME],
            len: 0,
        };
        let (end, len, _) = walk(msg, off, |w, label| {
            n.buf[w] = label.len() as u8;
            n.buf[w + 1..w + 1 + label.len()].copy_from_slice(label);
        })?;
        // The terminating zero is already there.
        n.len = len as u8;
        Ok((n, end))
    }

    /// Validates a possibly compressed name at `off` in `msg` exactly as
    /// [`Name::read`] does, without copying it: returns the offset just past
    /// the name's bytes at `off` and whether a compression pointer was followed
    /// (if not, `msg[off..end]` is the whole name in wire form).
    #[inline]
    pub fn scan(msg: &[u8], off: usize) -> Result<(usize, bool), NameError> {
        let (end, _, compressed) = walk(msg, off, |_, _| {})?;
        Ok((end, compressed))
    }

    /// [`Name::scan`], with a view of the name when it lies uncompressed in
    /// `msg` (`None` when a compression pointer was followed).
    pub fn scan_ref(msg: &[u8], off: usize) -> Result<(Option<NameRef<'_>>, usize), NameError> {
        let (end, compressed) = Self::scan(msg, off)?;
        Ok(((!compressed).then(|| NameRef(&msg[off..end])), end))
    }

    /// Skips a possibly compressed name at `off`, returning the offset after it.
    pub fn skip(msg: &[u8], off: usize) -> Result<usize, NameError> {
        let mut pos = off;
        loop {
            let l = *msg.get(pos).ok_or(NameError::Truncated)?;
            match l & 0xC0 {
                0x00 if l == 0 => return Ok(pos + 1),
                0x00 => pos += 1 + l as usize,
                0xC0 => {
                    msg.get(pos + 1).ok_or(NameError::Truncated)?;
                    return Ok(pos + 2);
                }
                _ => return Err(NameError::BadLabel),
            }
        }
    }

    /// Parses presentation format (`www.example.org.`, relative treated as FQDN;
    /// `\.` and `\DDD` escapes).
    pub fn parse(s: &str) -> Option<Self> {
        let mut n = Self {
            buf: [0; MAX_NAME],
            len: 0,
        };
        if s == "." || s.is_empty() {
            return Some(Self::root());
        }
        let b = s.as_bytes();
        let mut w = 0usize;
        let mut label = [0u8; 63];
        let mut ll = 0usize;
        let mut i = 0usize;
        let flush = |label: &[u8], w: &mut usize, n: &mut Self| -> Option<()> {
            if label.is_empty() || *w + 1 + label.len() + 1 > MAX_NAME {
                return None;
            }
            n.buf[*w] = label.len() as u8;
            n.buf[*w + 1..*w + 1 + label.len()].copy_from_slice(label);
            *w += 1 + label.len();
            Some(())
        };
        while i < b.len() {
            let c = b[i];
            if c == b'.' {
                flush(&label[..ll], &mut w, &mut n)?;
                ll = 0;
                i += 1;
                continue;
            }
            let byte = if c == b'\\' {
                if i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
                    let v = (b[i + 1] - b'0') as u32 * 100
                        + (b[i + 2] - b'0') as u32 * 10
                        + (b[i + 3] - b'0') as u32;
                    i += 4;
                    u8::try_from(v).ok()?
                } else {
                    let v = *b.get(i + 1)?;
                    i += 2;
                    v
                }
            } else {
                i += 1;
                c
            };
            if ll >= 63 {
                return None;
            }
            label[ll] = byte;
            ll += 1;
        }
        if ll > 0 {
            flush(&label[..ll], &mut w, &mut n)?;
        }
        if w + 1 > MAX_NAME {
            return None;
        }
        n.buf[w] = 0;
        n.len = (w + 1) as u8;
        Some(n)
    }

    /// A borrowed view of this name.
    pub fn borrowed(&self) -> NameRef<'_> {
        NameRef(self.wire())
    }

    /// ASCII-lowercased copy.
    pub fn to_lowercase(&self) -> Self {
        let mut n = self.clone();
        n.buf[..n.len as usize].make_ascii_lowercase();
        n
    }

    /// Iterates labels (without length octets), leftmost first.
    pub fn labels(&self) -> Labels<'_> {
        self.borrowed().labels()
    }

    /// Number of labels (root has 0).
    pub fn label_count(&self) -> usize {
        self.labels().count()
    }

    /// Offsets of each label start (suffix starts), leftmost first.
    pub fn suffix_offsets(&self) -> impl Iterator<Item = usize> + '_ {
        self.borrowed().suffix_offsets()
    }

    /// True if `self` equals `zone` or is below it, case-insensitively.
    pub fn is_subdomain_of(&self, zone: &Self) -> bool {
        self.borrowed().is_subdomain_of(zone)
    }

    /// Case-insensitive equality.
    pub fn eq_ignore_case(&self, o: &Self) -> bool {
        self.wire().eq_ignore_ascii_case(o.wire())
    }

    /// Prepends one label (`_udp` + `qname`).
    pub fn prepend(&self, label: &[u8]) -> Option<Self> {
        let total = 1 + label.len() + self.len();
        if label.is_empty() || label.len() > 63 || total > MAX_NAME {
            return None;
        }
        let mut n = Self {
            buf: [0; MAX_NAME],
            len: total as u8,
        };
        n.buf[0] = label.len() as u8;
        n.buf[1..=label.len()].copy_from_slice(label);
        n.buf[1 + label.len()..total].copy_from_slice(self.wire());
        Some(n)
    }

    /// Writes presentation format (miekg style: `\.`, `\DDD` escapes, trailing dot).
    pub fn write_presentation(&self, out: &mut String) {
        self.borrowed().write_presentation(out);
    }
}

/// A validated, uncompressed wire-format name borrowed from elsewhere (a
/// query's question, a [`Name`]): the same read-only operations as [`Name`]
/// without copying its bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct NameRef<'a>(&'a [u8]);

impl<'a> NameRef<'a> {
    /// Wire bytes, terminating zero included.
    pub fn wire(self) -> &'a [u8] {
        self.0
    }

    /// Length in octets on the wire.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(self) -> usize {
        self.0.len()
    }

    /// True for the root.
    pub fn is_root(self) -> bool {
        self.0.len() == 1
    }

    /// An owned copy.
    pub fn to_name(self) -> Name {
        let mut n = Name {
            buf: [0; MAX_NAME],
            len: self.0.len() as u8,
        };
        n.buf[..self.0.len()].copy_from_slice(self.0);
        n
    }

    /// ASCII-lowercased owned copy.
    pub fn to_lowercase(self) -> Name {
        let mut n = self.to_name();
        n.buf[..n.len as usize].make_ascii_lowercase();
        n
    }

    /// Iterates labels (without length octets), leftmost first.
    pub fn labels(self) -> Labels<'a> {
        Labels { w: self.0, pos: 0 }
    }

    /// Offsets of each label start (suffix starts), leftmost first.
    pub fn suffix_offsets(self) -> impl Iterator<Item = usize> + 'a {
        let w = self.0;
        let mut pos = 0usize;
        std::iter::from_fn(move || {
            if pos >= w.len() || w[pos] == 0 {
                return None;
            }
            let here = pos;
            pos += 1 + w[pos] as usize;
            Some(here)
        })
    }

    /// True if `self` equals `zone` or is below it, case-insensitively.
    pub fn is_subdomain_of(self, zone: &Name) -> bool {
        let (a, z) = (self.0, zone.wire());
        if z.len() > a.len() {
            return false;
        }
        if z.len() == 1 {
            return true;
        }
        let start = a.len() - z.len();
        // The suffix must start on a label boundary.
        if !self.suffix_offsets().any(|o| o == start) {
            return false;
        }
        a[start..].eq_ignore_ascii_case(z)
    }

    /// Case-insensitive equality.
    pub fn eq_ignore_case(self, o: &Name) -> bool {
        self.0.eq_ignore_ascii_case(o.wire())
    }

    /// Writes presentation format (miekg style: `\.`, `\DDD` escapes, trailing dot).
    pub fn write_presentation(self, out: &mut String) {
        if self.is_root() {
            out.push('.');
            return;
        }
        for l in self.labels() {
            for &c in l {
                match c {
                    b'.' | b'\\' | b'"' | b'(' | b')' | b';' | b' ' | b'@' | b'$' => {
                        out.push('\\');
                        out.push(c as char);
                    }
                    0x21..=0x7E => out.push(c as char),
                    _ => {
                        out.push('\\');
                        out.push_str(&format!("{c:03}"));
                    }
                }
            }
            out.push('.');
        }
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::new();
        self.write_presentation(&mut s);
        f.write_str(&s)
    }
}

impl fmt::Display for NameRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::new();
        self.write_presentation(&mut s);
        f.write_str(&s)
    }
}

impl fmt::Debug for NameRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Name({self})")
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Name({self})")
    }
}

/// Iterator over labels.
pub struct Labels<'a> {
    w: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for Labels<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        let l = *self.w.get(self.pos)? as usize;
        if l == 0 {
            return None;
        }
        let s = self.w.get(self.pos + 1..self.pos + 1 + l)?;
        self.pos += 1 + l;
        Some(s)
    }
}
