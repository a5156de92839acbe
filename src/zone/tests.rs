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

/// Peak resident memory of this process in KiB (`VmHWM`).
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A 1M-record zone: load time and memory (`cargo test --release --lib
/// zone::tests::million -- --ignored --nocapture`).
#[test]
#[ignore = "slow: run by hand with --release"]
fn million_records() {
    use std::fmt::Write as _;
    let mut text = String::with_capacity(48 << 20);
    text.push_str("$TTL 3600\n$ORIGIN example.org.\n@ SOA ns1 hostmaster 1 7200 3600 1209600 300\n@ NS ns1\nns1 A 192.0.2.1\n");
    for i in 0..250_000u32 {
        let _ = writeln!(
            text,
            "host{i} A 10.{}.{}.{}",
            i >> 16,
            (i >> 8) & 255,
            i & 255
        );
        let _ = writeln!(
            text,
            "host{i} AAAA 2001:db8::{:x}:{:x}",
            i >> 16,
            i & 0xffff
        );
        let _ = writeln!(text, "mx{i} MX 10 host{i}");
        let _ = writeln!(text, "txt{i} TXT \"v=spf1 include:example.net -all\"");
    }
    let path = std::env::temp_dir().join(format!("ringdns-million-{}.db", std::process::id()));
    std::fs::write(&path, &text).expect("write");
    let size = text.len();
    drop(text);
    let before = peak_rss_kib();
    let t = std::time::Instant::now();
    let z = load_file(path.to_str().expect("path"), &name("example.org."), None).expect("load");
    let took = t.elapsed();
    let after = peak_rss_kib();
    let _ = std::fs::remove_file(&path);
    eprintln!(
        "1M records ({} MB file): loaded in {:?}, {:?} names/records, peak RSS +{} MiB",
        size >> 20,
        took,
        z.counts(),
        (after.saturating_sub(before)) >> 10
    );
    assert_eq!(z.counts().1, 1_000_003);
}

/// The set of empty non-terminals answers `has_descendant` exactly as the
/// definition by canonical order does, for names in the zone, their
/// ancestors, names beside and below them, and names outside the zone.
#[test]
fn empty_non_terminals_match_canonical_order() {
    let text = "$ORIGIN example.\n$TTL 300\n@ SOA ns hostmaster 1 2 3 4 5\n@ NS ns\nns A 192.0.2.1\n\
                a.b.c A 192.0.2.2\nx.b.c A 192.0.2.3\n*.w A 192.0.2.4\nd.e.f.g.h TXT x\n\
                h TXT y\nsub NS ns.other.\nq.sub A 192.0.2.5\n";
    let origin = name("example.");
    let z = load_str(text, &origin, "t").expect("zone");
    let mut names: Vec<String> = Vec::new();
    for base in [
        "example.",
        "b.c.example.",
        "c.example.",
        "a.b.c.example.",
        "x.b.c.example.",
        "w.example.",
        "*.w.example.",
        "e.f.g.h.example.",
        "f.g.h.example.",
        "g.h.example.",
        "h.example.",
        "d.e.f.g.h.example.",
        "sub.example.",
        "q.sub.example.",
        "ns.example.",
        "nope.example.",
        "zz.c.example.",
        "b.example.",
        "other.",
        ".",
        "c.example.org.",
    ] {
        names.push(base.to_owned());
        names.push(if base == "." {
            "n.".to_owned()
        } else {
            format!("n.{base}")
        });
    }
    let mut ents = Vec::new();
    for s in names {
        let n = name(&s).to_lowercase();
        let want = z.has_descendant_by_order(n.wire());
        assert_eq!(z.has_descendant(n.wire()), want, "{s}");
        if want {
            ents.push(s);
        }
    }
    assert_eq!(
        ents,
        [
            // The apex's records live apart from the tree (as CoreDNS's `Apex`).
            "example.",
            "b.c.example.",
            "c.example.",
            "w.example.",
            "e.f.g.h.example.",
            "f.g.h.example.",
            "g.h.example.",
            ".",
        ]
    );
}

/// The origin's node (records besides SOA and NS) is found through the
/// shortcut exactly as through the index, and is no empty non-terminal.
#[test]
fn origin_node_shortcut() {
    for (text, has_node) in [
        (
            "$ORIGIN example.\n@ 300 SOA ns h 1 2 3 4 5\n@ 300 NS ns\n@ 300 A 192.0.2.1\nns 300 A 192.0.2.2\n",
            true,
        ),
        (
            "$ORIGIN example.\n@ 300 SOA ns h 1 2 3 4 5\n@ 300 NS ns\nns 300 A 192.0.2.2\n",
            false,
        ),
    ] {
        let origin = name("example.");
        let z = load_str(text, &origin, "t").expect("zone");
        assert_eq!(z.search(origin.wire()), z.search_index(origin.wire()));
        assert_eq!(z.search(origin.wire()).is_some(), has_node, "{text}");
        assert_eq!(
            z.has_descendant(origin.wire()),
            z.has_descendant_by_order(origin.wire()),
            "{text}"
        );
    }
}
