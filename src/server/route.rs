//! Query routing on one listener (corefile-spec.md §7): the longest matching
//! zone of the blocks on it (of blocks sharing a zone, the first whose *view*
//! passes), DS to the topmost served zone, the root block as the last resort,
//! REFUSED when nothing matches.

use crate::wire::{Name, NameRef};

/// Zones of one listener → block indices (in block order).
#[derive(Debug, Default, Clone)]
pub struct Routes {
    zones: Vec<(Name, Vec<usize>)>,
}

/// Where a query goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// To this block's chain (an index into the listener's blocks).
    Block(usize),
    /// REFUSED by the server.
    Refused,
}

impl Routes {
    /// Adds a zone served by `block`.
    pub fn add(&mut self, zone: &str, block: usize) {
        let Some(n) = Name::parse(zone) else { return };
        let n = n.to_lowercase();
        match self.zones.iter_mut().find(|(z, _)| *z == n) {
            Some((_, v)) => v.push(block),
            None => self.zones.push((n, vec![block])),
        }
    }

    fn lookup(&self, wire: &[u8]) -> Option<&[usize]> {
        self.zones
            .iter()
            .find(|(z, _)| z.wire().eq_ignore_ascii_case(wire))
            .map(|(_, v)| v.as_slice())
    }

    /// Routes `qname`/`qtype`; `has_chain(block)` says whether a block has
    /// plugins, `pass(block)` whether its *view* (if any) takes the query. Blocks
    /// sharing a zone are tried in order; a zone none of whose blocks passes
    /// leaves the search to its parent zones.
    pub fn route(
        &self,
        qname: NameRef<'_>,
        qtype: u16,
        has_chain: impl Fn(usize) -> bool,
        mut pass: impl FnMut(usize) -> bool,
    ) -> Route {
        let w = qname.wire();
        let mut ds_handler = None;
        for off in qname.suffix_offsets() {
            if let Some(blocks) = self.lookup(&w[off..]) {
                for &b in blocks {
                    if !has_chain(b) {
                        return Route::Refused;
                    }
                    if !pass(b) {
                        continue;
                    }
                    if qtype != 43 {
                        return Route::Block(b);
                    }
                    // DS: keep looking for a parent zone (the last that passes wins).
                    ds_handler = Some(b);
                }
            }
        }
        if qtype == 43 {
            if let Some(b) = ds_handler {
                return Route::Block(b);
            }
        }
        if let Some(blocks) = self.lookup(&[0]) {
            for &b in blocks {
                if has_chain(b) && pass(b) {
                    return Route::Block(b);
                }
            }
        }
        Route::Refused
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_match_ds_and_root() {
        let mut r = Routes::default();
        r.add("example.org.", 0);
        r.add("sub.example.org.", 1);
        r.add(".", 2);
        r.add("empty.example.org.", 3);
        let q = |n: &str, t: u16| {
            r.route(
                Name::parse(n).expect("name").borrowed(),
                t,
                |b| b != 3,
                |_| true,
            )
        };
        assert_eq!(q("www.sub.example.org.", 1), Route::Block(1));
        assert_eq!(q("WWW.Example.ORG.", 1), Route::Block(0));
        assert_eq!(q("x.sub.example.org.", 43), Route::Block(0));
        assert_eq!(q("example.org.", 43), Route::Block(0));
        assert_eq!(q("www.example.net.", 1), Route::Block(2));
        assert_eq!(q("empty.example.org.", 43), Route::Refused);
        let mut r2 = Routes::default();
        r2.add("example.org.", 0);
        assert_eq!(
            r2.route(
                Name::parse("example.net.").expect("n").borrowed(),
                1,
                |_| true,
                |_| true
            ),
            Route::Refused
        );
    }
}
