//! `$GENERATE` (BIND's extension, as miekg/dns reads it): the range
//! `START-STOP[/STEP]` and the expansion of `$`, `${OFFSET,WIDTH,BASE}`
//! (bases `d o x X n N`; `n`/`N` write nibbles in reverse, dot-separated),
//! `$$` and `\$` (a literal `$`).

/// A `$GENERATE` range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Range {
    start: u64,
    stop: u64,
    step: u64,
}

impl Range {
    /// Parses `START-STOP[/STEP]`; at most 65536 steps (miekg's limit).
    pub(crate) fn parse(t: &[u8]) -> Option<Self> {
        let s = std::str::from_utf8(t).ok()?;
        let (r, step) = match s.split_once('/') {
            Some((r, st)) => (r, st.parse::<u64>().ok()?),
            None => (s, 1),
        };
        let (a, b) = r.split_once('-')?;
        let (start, stop) = (a.parse::<u64>().ok()?, b.parse::<u64>().ok()?);
        if step == 0 || stop < start || (stop - start) / step > 65535 {
            return None;
        }
        Some(Self { start, stop, step })
    }

    /// The counter values.
    pub(crate) fn iter(self) -> impl Iterator<Item = u64> {
        (self.start..=self.stop).step_by(self.step as usize)
    }
}

/// Expands `template` for counter `i` of `range` into `out`.
pub(crate) fn expand(
    template: &[u8],
    range: Range,
    i: u64,
    out: &mut Vec<u8>,
) -> Result<(), &'static str> {
    let mut k = 0;
    while k < template.len() {
        let c = template[k];
        match c {
            b'\\' if template.get(k + 1) == Some(&b'$') => {
                out.push(b'$');
                k += 2;
            }
            b'\\' => {
                out.push(c);
                if let Some(&n) = template.get(k + 1) {
                    out.push(n);
                }
                k += 2;
            }
            b'$' if template.get(k + 1) == Some(&b'$') => {
                out.push(b'$');
                k += 2;
            }
            b'$' if template.get(k + 1) == Some(&b'{') => {
                let rest = &template[k + 2..];
                let end = rest.iter().position(|&b| b == b'}').ok_or("modifier")?;
                let m = std::str::from_utf8(&rest[..end]).map_err(|_| "modifier")?;
                let mut parts = m.split(',');
                let offset: i64 = parts
                    .next()
                    .unwrap_or("0")
                    .trim()
                    .parse()
                    .map_err(|_| "offset")?;
                let width: usize = match parts.next() {
                    Some(w) => w.trim().parse().map_err(|_| "width")?,
                    None => 0,
                };
                let base = parts.next().map_or("d", str::trim);
                if parts.next().is_some() || width > 255 {
                    return Err("modifier");
                }
                // miekg's bound: the whole range, offset, within 0..=2^31-1.
                let off = i128::from(offset);
                if i128::from(range.start) + off < 0
                    || i128::from(range.stop) + off > i128::from(i32::MAX)
                {
                    return Err("offset");
                }
                let v = u64::try_from(i128::from(i) + off).map_err(|_| "offset")?;
                let s = match base {
                    "d" => format!("{v:0width$}"),
                    "o" => format!("{v:0width$o}"),
                    "x" => format!("{v:0width$x}"),
                    "X" => format!("{v:0width$X}"),
                    "n" | "N" => {
                        let hex = if base == "n" {
                            format!("{v:0width$x}")
                        } else {
                            format!("{v:0width$X}")
                        };
                        let mut s = String::new();
                        for (n, ch) in hex.chars().rev().enumerate() {
                            if n > 0 {
                                s.push('.');
                            }
                            s.push(ch);
                        }
                        s
                    }
                    _ => return Err("base"),
                };
                out.extend_from_slice(s.as_bytes());
                k += 2 + end + 1;
            }
            b'$' => {
                out.extend_from_slice(i.to_string().as_bytes());
                k += 1;
            }
            _ => {
                out.push(c);
                k += 1;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(t: &str, i: u64) -> String {
        let mut o = Vec::new();
        let r = Range::parse(b"0-65535").expect("range");
        expand(t.as_bytes(), r, i, &mut o).expect("expand");
        String::from_utf8(o).expect("utf8")
    }

    #[test]
    fn ranges_and_modifiers() {
        let r = Range::parse(b"1-10/3").expect("range");
        assert_eq!(r.iter().collect::<Vec<_>>(), vec![1, 4, 7, 10]);
        assert!(Range::parse(b"5-1").is_none());
        assert!(Range::parse(b"0-100000").is_none());
        assert_eq!(ex("host-$ A 10.0.0.$", 7), "host-7 A 10.0.0.7");
        assert_eq!(ex("h${10,3,d} x${0,2,x} \\$ $$", 5), "h015 x05 $ $");
        assert_eq!(ex("${0,4,n}", 0x1a), "a.1.0.0");
    }

    #[test]
    fn offsets_bounded_as_miekg() {
        let go = |t: &str, r: &[u8], i: u64| {
            let mut o = Vec::new();
            let r = Range::parse(r).expect("range");
            expand(t.as_bytes(), r, i, &mut o).map(|()| String::from_utf8_lossy(&o).into_owned())
        };
        assert_eq!(go("h${-1}", b"1-2", 1).as_deref(), Ok("h0"));
        assert_eq!(go("h${-2}", b"1-2", 2), Err("offset"));
        assert_eq!(
            go("h${2147483645}", b"1-2", 1).as_deref(),
            Ok("h2147483646")
        );
        assert_eq!(go("h${2147483646}", b"1-2", 1), Err("offset"));
        // Past i64 with the counter: an overflow before (a panic in debug builds).
        assert_eq!(go("h${9223372036854775807}", b"1-2", 1), Err("offset"));
        assert_eq!(go("h${-9223372036854775808}", b"1-2", 1), Err("offset"));
        assert_eq!(
            go(
                "h${1}",
                b"9223372036854775807-9223372036854775807",
                9_223_372_036_854_775_807
            ),
            Err("offset")
        );
        // A plain `$` is not bounded (miekg prints the counter as it is).
        assert_eq!(
            go("h$", b"4294967296-4294967296", 4_294_967_296).as_deref(),
            Ok("h4294967296")
        );
    }
}
