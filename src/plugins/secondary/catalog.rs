//! RFC 9432 catalog zones as CoreDNS 1.14.7 reads them
//! (`plugin/pkg/catalog/catalog.go`): the member zones (`ID.zones.CATALOG`
//! PTR), their `group` TXT and `coo` PTR properties, and the checks that make
//! a catalog unusable (no SOA or NS at the apex, not exactly one `version` TXT
//! of "2", a member with several PTR records, a zone listed twice, several
//! `coo` records, a record of another class).

use std::collections::{BTreeMap, HashMap};

use crate::wire::Name;
use crate::zone::text::rr_to_string;

/// A transferred record (owner uncompressed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rec {
    pub owner: Vec<u8>,
    pub rtype: u16,
    pub class: u16,
    pub ttl: u32,
    pub rdata: Vec<u8>,
}

/// A member zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The member node's label (its unique ID).
    pub id: String,
    /// The member zone, lower case.
    pub zone: Name,
    /// `group` properties, sorted.
    pub groups: Vec<String>,
    /// The `coo` property: the catalog the member moves to.
    pub coo: Option<Name>,
}

/// A parsed catalog: its members sorted by ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalog {
    pub members: Vec<Member>,
}

impl Catalog {
    /// The member for `zone`.
    pub fn member(&self, zone: &Name) -> Option<&Member> {
        self.members.iter().find(|m| m.zone == *zone)
    }
}

/// A label in presentation form (escaped as Go's `SplitDomainName` leaves it).
fn label_text(l: &[u8]) -> String {
    Name::root()
        .prepend(l)
        .map(|n| {
            let mut s = n.to_string();
            s.pop();
            s
        })
        .unwrap_or_default()
}

/// `strings.Join(rr.Txt, "")`.
fn txt_value(rd: &[u8]) -> String {
    let mut out = Vec::new();
    let mut i = 0;
    while i < rd.len() {
        let n = usize::from(rd[i]);
        out.extend_from_slice(rd.get(i + 1..i + 1 + n).unwrap_or(&[]));
        i += 1 + n;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses the records of the catalog zone `origin` (lower case).
pub fn parse(origin: &Name, rrs: &[Rec]) -> Result<Catalog, String> {
    // `zones.ORIGIN` and `version.ORIGIN`, as Go joins them: nothing matches
    // them under the root (`version..`) or past the name length.
    let zones = origin.prepend(b"zones").filter(|_| !origin.is_root());
    let version_owner = origin.prepend(b"version").filter(|_| !origin.is_root());
    let zone_labels = zones.as_ref().map_or(0, Name::label_count);
    let (mut has_soa, mut has_ns) = (false, false);
    let mut version: Vec<String> = Vec::new();
    let mut member_ptr: BTreeMap<String, Vec<Name>> = BTreeMap::new();
    let mut groups: HashMap<String, Vec<String>> = HashMap::new();
    let mut coo: HashMap<String, Vec<Name>> = HashMap::new();
    for r in rrs {
        let Ok(owner) = Name::from_wire(&r.owner).map(|n| n.to_lowercase()) else {
            continue;
        };
        if r.class != 1 {
            // miekg's `RR.String()`: the header's fields tab-separated.
            let text = rr_to_string(&owner, r.rtype, r.class, r.ttl, &r.rdata);
            let text = text.splitn(5, ' ').collect::<Vec<_>>().join("\t");
            return Err(format!(
                "catalog zone {origin} contains non-IN record {text}"
            ));
        }
        // Below `zones.ORIGIN` by one label (a member) or two (a property).
        let below = owner.label_count().checked_sub(zone_labels);
        let under_zones = zones.as_ref().is_some_and(|z| owner.is_subdomain_of(z));
        let first = |n: usize| owner.labels().nth(n).map(label_text).unwrap_or_default();
        match r.rtype {
            6 if owner == *origin => has_soa = true,
            2 if owner == *origin => has_ns = true,
            16 if version_owner.as_ref() == Some(&owner) => version.push(txt_value(&r.rdata)),
            16 if under_zones && below == Some(2) && first(0) == "group" => {
                groups
                    .entry(first(1))
                    .or_default()
                    .push(txt_value(&r.rdata));
            }
            12 if under_zones && below == Some(1) => {
                let ptr = Name::from_wire(&r.rdata).map_err(|_| "bad PTR".to_owned())?;
                member_ptr
                    .entry(first(0))
                    .or_default()
                    .push(ptr.to_lowercase());
            }
            12 if under_zones && below == Some(2) && first(0) == "coo" => {
                let ptr = Name::from_wire(&r.rdata).map_err(|_| "bad PTR".to_owned())?;
                coo.entry(first(1)).or_default().push(ptr.to_lowercase());
            }
            _ => {}
        }
    }
    if !has_soa {
        return Err(format!("catalog zone {origin} has no SOA record"));
    }
    if !has_ns {
        return Err(format!("catalog zone {origin} has no NS record"));
    }
    if version.len() != 1 {
        return Err(format!(
            "catalog zone {origin} must have exactly one version TXT record"
        ));
    }
    if version[0] != "2" {
        return Err(format!(
            "catalog zone {origin} has unsupported version {}",
            corefile::values::go_quote(&version[0])
        ));
    }
    let mut seen: HashMap<Vec<u8>, String> = HashMap::new();
    let mut members = Vec::with_capacity(member_ptr.len());
    for (id, mut ptrs) in member_ptr {
        if ptrs.len() != 1 {
            return Err(format!(
                "catalog member {id}.zones.{origin} must have exactly one PTR record"
            ));
        }
        let zone = ptrs.remove(0);
        if let Some(prev) = seen.insert(zone.wire().to_vec(), id.clone()) {
            return Err(format!(
                "catalog member zone {zone} is listed by both {prev} and {id}"
            ));
        }
        let mut g = groups.remove(&id).unwrap_or_default();
        g.sort();
        let c = match coo.remove(&id) {
            Some(v) if v.len() > 1 => {
                return Err(format!(
                    "catalog member {id} has more than one coo PTR record"
                ));
            }
            Some(mut v) => v.pop(),
            None => None,
        };
        members.push(Member {
            id,
            zone,
            groups: g,
            coo: c,
        });
    }
    Ok(Catalog { members })
}

/// Fuzzing: `data` as records (owner length, owner, type, class, RDATA
/// length, RDATA, repeated) parsed as the catalog `catalog.example.`; any
/// octets end in a catalog or an error, never a panic.
pub fn fuzz_one(data: &[u8]) {
    let mut rrs = Vec::new();
    let mut d = data;
    while let Some((&n, rest)) = d.split_first() {
        let n = usize::from(n);
        if rest.len() < n + 5 {
            break;
        }
        let (owner, rest) = rest.split_at(n);
        let rtype = u16::from_be_bytes([rest[0], rest[1]]);
        let class = u16::from_be_bytes([rest[2], rest[3]]);
        let m = usize::from(rest[4]).min(rest.len() - 5);
        rrs.push(Rec {
            owner: owner.to_vec(),
            rtype,
            class,
            ttl: 0,
            rdata: rest[5..5 + m].to_vec(),
        });
        d = &rest[5 + m..];
    }
    if let Some(origin) = Name::parse("catalog.example.") {
        let _ = parse(&origin, &rrs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records from zone-file text (`$ORIGIN catalog.example.`).
    fn recs(text: &str) -> Vec<Rec> {
        let origin = Name::parse("catalog.example.").expect("origin");
        let mut out = Vec::new();
        crate::zone::parse::parse_bytes(
            text.as_bytes(),
            "test",
            origin.wire(),
            &mut |r: &crate::zone::Record<'_>| {
                out.push(Rec {
                    owner: r.owner.to_vec(),
                    rtype: r.rtype,
                    class: r.class,
                    ttl: r.ttl,
                    rdata: r.rdata.to_vec(),
                });
                Ok::<(), crate::zone::ParseError>(())
            },
        )
        .expect("zone text");
        out
    }

    const HEAD: &str = "$ORIGIN catalog.example.\n@ 0 IN SOA invalid. hostmaster.invalid. 1 3600 600 604800 0\n@ 0 IN NS invalid.\n";

    fn origin() -> Name {
        Name::parse("catalog.example.").expect("origin")
    }

    /// CoreDNS's `TestParse`.
    #[test]
    fn members_groups_coo() {
        let text = format!(
            "{HEAD}version 0 IN TXT \"2\"\nb.zones 0 IN PTR Example.NET.\na.zones 0 IN PTR example.com.\n\
             group.a.zones 0 IN TXT \"operator-default\"\ngroup.a.zones 0 IN TXT \"unsigned\"\n\
             coo.b.zones 0 IN PTR other-catalog.example.\nignored 0 IN TXT \"value\"\n"
        );
        let c = parse(&origin(), &recs(&text)).expect("catalog");
        assert_eq!(c.members.len(), 2);
        let a = &c.members[0];
        assert_eq!(
            (a.id.as_str(), a.zone.to_string(), &a.groups, &a.coo),
            (
                "a",
                "example.com.".to_owned(),
                &vec!["operator-default".to_owned(), "unsigned".to_owned()],
                &None
            )
        );
        let b = &c.members[1];
        assert_eq!(
            (b.id.as_str(), b.zone.to_string()),
            ("b", "example.net.".to_owned())
        );
        assert_eq!(
            b.coo.as_ref().map(ToString::to_string).as_deref(),
            Some("other-catalog.example.")
        );
    }

    /// CoreDNS's `TestParseBrokenCatalog`, with the whole error texts.
    #[test]
    fn broken_catalogs() {
        let soa = "$ORIGIN catalog.example.\n@ 0 IN SOA invalid. hostmaster.invalid. 1 3600 600 604800 0\n";
        let ns = "$ORIGIN catalog.example.\n@ 0 IN NS invalid.\n";
        for (text, want) in [
            (
                format!("{ns}version 0 IN TXT \"2\"\na.zones 0 IN PTR example.com.\n"),
                "catalog zone catalog.example. has no SOA record",
            ),
            (
                format!("{soa}version 0 IN TXT \"2\"\na.zones 0 IN PTR example.com.\n"),
                "catalog zone catalog.example. has no NS record",
            ),
            (
                format!("{HEAD}a.zones 0 IN PTR example.com.\n"),
                "catalog zone catalog.example. must have exactly one version TXT record",
            ),
            (
                format!("{HEAD}version 0 IN TXT \"2\"\nversion 0 IN TXT \"2\"\n"),
                "catalog zone catalog.example. must have exactly one version TXT record",
            ),
            (
                format!("{HEAD}version 0 IN TXT \"1\"\n"),
                "catalog zone catalog.example. has unsupported version \"1\"",
            ),
            (
                format!(
                    "{HEAD}version 0 IN TXT \"2\"\na.zones 0 IN PTR example.com.\na.zones 0 IN PTR example.net.\n"
                ),
                "catalog member a.zones.catalog.example. must have exactly one PTR record",
            ),
            (
                format!(
                    "{HEAD}version 0 IN TXT \"2\"\na.zones 0 IN PTR example.com.\nb.zones 0 IN PTR example.com.\n"
                ),
                "catalog member zone example.com. is listed by both a and b",
            ),
            (
                format!(
                    "{HEAD}version 0 IN TXT \"2\"\na.zones 0 IN PTR example.com.\ncoo.a.zones 0 IN PTR new-a.example.\ncoo.a.zones 0 IN PTR new-b.example.\n"
                ),
                "catalog member a has more than one coo PTR record",
            ),
            (
                format!("{HEAD}version 0 IN TXT \"2\"\na.zones 0 CH PTR example.com.\n"),
                "catalog zone catalog.example. contains non-IN record a.zones.catalog.example.\t0\tCH\tPTR\texample.com.",
            ),
        ] {
            assert_eq!(
                parse(&origin(), &recs(&text)),
                Err(want.to_owned()),
                "{text}"
            );
        }
    }

    /// Properties and members are found only at their depth under `zones`.
    #[test]
    fn depth_and_case() {
        let text = format!(
            "{HEAD}version 0 IN TXT \"2\"\nA.ZONES 0 IN PTR Member.Example.\nx.y.zones 0 IN PTR deep.example.\n\
             zones 0 IN PTR apex.example.\ngroup.A.zones 0 IN TXT \"g\" \"h\"\n"
        );
        let c = parse(&origin(), &recs(&text)).expect("catalog");
        assert_eq!(c.members.len(), 1);
        assert_eq!(c.members[0].id, "a");
        assert_eq!(c.members[0].zone.to_string(), "member.example.");
        assert_eq!(c.members[0].groups, ["gh"]);
    }
}
