//! `fallthrough [ZONES...]` (CoreDNS `plugin/pkg/fall`): without zones every
//! name falls through; with zones only names below one of them.

use corefile::keys;

use crate::wire::Name;
use crate::zone::in_zone;

/// The zones queries may fall through for (empty = never).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fall {
    zones: Vec<Name>,
}

impl Fall {
    /// `fallthrough` with its arguments (`plugin.Host(z).NormalizeExact()`:
    /// names lowercased and qualified, CIDRs expanded to reverse zones).
    pub fn from_args(args: &[String]) -> Self {
        if args.is_empty() {
            return Self {
                zones: vec![Name::root()],
            };
        }
        let mut zones = Vec::new();
        for a in args {
            let (_, rest) = keys::split_transport(a);
            let names = match keys::parse_cidr(rest) {
                Some((net, prefix)) => keys::reverse_zones(net, prefix),
                None => vec![keys::normalize_name(rest)],
            };
            zones.extend(names.iter().filter_map(|z| Name::parse(z)));
        }
        Self { zones }
    }

    /// Whether any zone is set.
    pub fn is_set(&self) -> bool {
        !self.zones.is_empty()
    }

    /// CoreDNS `F.Through`: `qname` is below one of the zones.
    pub fn through(&self, qname: &Name) -> bool {
        self.zones.iter().any(|z| in_zone(qname.wire(), z.wire()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_and_root() {
        let n = |s: &str| Name::parse(s).expect("name");
        assert!(!Fall::default().through(&n("a.example.org.")));
        assert!(Fall::from_args(&[]).through(&n("a.example.org.")));
        let f = Fall::from_args(&["Example.ORG".into(), "10.0.0.0/8".into()]);
        assert!(f.through(&n("a.example.org.")));
        assert!(f.through(&n("1.2.3.10.in-addr.arpa.")));
        assert!(!f.through(&n("example.net.")));
    }
}
