//! Zone store tests: canonical order, search, apex split.

use super::*;

fn name(s: &str) -> Name {
    Name::parse(s).expect("name")
}

#[test]
fn canonical_order() {
    let mut v: Vec<Name> = [
        "example.",
        "a.example.",
        "yljkjljk.a.example.",
        "Z.a.example.",
        "zABC.a.EXAMPLE.",
        "z.example.",
        "\\001.z.example.",
        "*.z.example.",
        "\\200.z.example.",
    ]
    .iter()
    .map(|s| name(s).to_lowercase())
    .collect();
    let want = v.clone();
    v.reverse();
    v.sort_by(|a, b| canon_cmp(a.wire(), b.wire()));
    assert_eq!(v, want);
    let mut keys: Vec<Vec<u8>> = want
        .iter()
        .map(|n| {
            let mut k = Vec::new();
            canon_key(n.wire(), &mut k);
            k
        })
        .collect();
    let sorted = {
        let mut s = keys.clone();
        s.sort();
        s
    };
    assert_eq!(keys, sorted);
    keys.clear();
}

#[test]
fn builds_and_searches() {
    let z = load_str(
        "$TTL 60\n$ORIGIN example.org.\n@ SOA ns admin 7 1 2 3 4\n@ NS ns\n@ MX 10 mx\nns A 192.0.2.1\nWWW A 192.0.2.2\na.b.c A 192.0.2.3\n",
        &name("Example.ORG."),
        "t",
    )
    .expect("load");
    assert_eq!(z.serial(), Some(7));
    assert_eq!(z.counts(), (4, 6));
    assert!(z.search(name("www.example.org.").wire()).is_some());
    assert!(z.search(name("b.c.example.org.").wire()).is_none());
    assert!(z.has_descendant(name("b.c.example.org.").wire()));
    assert!(!z.has_descendant(name("www.example.org.").wire()));
    let err =
        load_str("$TTL 60\nwww A 192.0.2.1\n", &name("example.org."), "t").expect_err("no soa");
    assert_eq!(
        err.to_string(),
        "file \"t\" has no SOA record for origin example.org."
    );
}
