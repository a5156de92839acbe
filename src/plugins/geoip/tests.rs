use super::*;

#[path = "../../../tests/mmdb/writer.rs"]
#[allow(dead_code, unreachable_pub)]
mod writer;

use writer::{V, build, map, s};

struct Dir(std::path::PathBuf);

impl Dir {
    fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("ringdns-geoip-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("dir");
        Self(p)
    }
    fn write(&self, f: &str, b: &[u8]) -> String {
        let p = self.0.join(f);
        std::fs::write(&p, b).expect("write");
        p.to_string_lossy().into_owned()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn city_db() -> Vec<u8> {
    writer::sample_city_db()
}

fn asn_db() -> Vec<u8> {
    build(
        "GeoLite2-ASN",
        &[(
            IpAddr::from([81, 2, 69, 0]),
            24,
            map(vec![
                ("autonomous_system_number", V::U32(64_512)),
                ("autonomous_system_organization", s("Example Networks")),
            ]),
        )],
    )
}

fn setup_text(input: &str) -> Result<GeoipConfig, String> {
    let mut d = corefile::Dispenser::from_text("Corefile", input);
    setup(&mut d).map_err(|e| e.to_string())
}

#[test]
fn setup_as_coredns() {
    let dir = Dir::new("setup");
    let city = dir.write("city.mmdb", &city_db());
    let asn = dir.write("asn.mmdb", &asn_db());
    let c = setup_text(&format!("geoip {city}")).expect("ok");
    assert!(c.db.city && !c.db.asn && !c.db.edns0);
    let c = setup_text(&format!("geoip {asn} {{\n edns-subnet\n}}")).expect("ok");
    assert!(!c.db.city && c.db.asn && c.db.edns0);
    let other = dir.write("other.mmdb", &build("Example-DB", &[]));
    let anon = dir.write("anon.mmdb", &build("GeoIP2-Anonymous-IP", &[]));
    let junk = dir.write("junk.mmdb", b"not a database");
    let e = "plugin/geoip: Corefile:1 - Error during parsing:";
    for (input, want) in [
        ("geoip".to_string(), format!("{e} Wrong argument count or unexpected line ending after 'geoip'")),
        (
            format!("geoip {city} extra"),
            format!("{e} Wrong argument count or unexpected line ending after 'extra'"),
        ),
        (
            format!("geoip {city} {{\n bogus\n}}"),
            "plugin/geoip: Corefile:2 - Error during parsing: unknown property \"bogus\"".into(),
        ),
        (
            format!("geoip {city}\ngeoip {asn}"),
            "plugin/geoip: Corefile:2 - Error during parsing: configuring multiple databases is not supported".into(),
        ),
        (
            "geoip /nonexistent/db.mmdb".into(),
            format!("{e} failed to open database file: open /nonexistent/db.mmdb: no such file or directory"),
        ),
        (
            format!("geoip {other}"),
            format!("{e} failed to open database file: geoip2: reader does not support the \"Example-DB\" database type"),
        ),
        (
            format!("geoip {anon}"),
            format!("{e} database does not provide any supported schema (city, asn)"),
        ),
        (
            format!("geoip {junk}"),
            format!("{e} failed to open database file: error opening database: invalid MaxMind DB file"),
        ),
    ] {
        assert_eq!(setup_text(&input).map(|_| ()), Err(want), "{input}");
    }
}

/// Runs the metadata collection for a query from `peer` with `opt` and returns
/// the labels.
fn labels(c: &GeoipConfig, peer: &str, ecs: Option<&[u8]>) -> Vec<(String, String)> {
    let mut q = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, u8::from(ecs.is_some())];
    q.extend_from_slice(b"\x07example\x03org\x00\x00\x01\x00\x01");
    if let Some(e) = ecs {
        q.extend_from_slice(&[0, 0, 41, 4, 0, 0, 0, 0, 0]);
        q.extend_from_slice(&((e.len() + 4) as u16).to_be_bytes());
        q.extend_from_slice(&[0, 8]);
        q.extend_from_slice(&(e.len() as u16).to_be_bytes());
        q.extend_from_slice(e);
    }
    let crate::wire::Verdict::Query(req) = crate::wire::parse_query(&q) else {
        panic!("query");
    };
    let server: Arc<str> = Arc::from("dns://:53");
    let (mut resp, mut scratch) = (Vec::new(), Vec::new());
    let mut ctx = Ctx::new(
        &server,
        req,
        crate::chain::Proto::Udp,
        peer.parse().expect("peer"),
        "127.0.0.1:53".parse().expect("local"),
        &mut resp,
        &mut scratch,
        std::time::Instant::now(),
    );
    ctx.meta = Some(Vec::new());
    c.db.publish_metadata(&mut ctx);
    let mut out: Vec<(String, String)> = ctx
        .meta
        .take()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k.into_owned(), v))
        .collect();
    out.sort();
    out
}

fn get<'a>(l: &'a [(String, String)], k: &str) -> Option<&'a str> {
    l.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str())
}

#[test]
fn city_labels_as_coredns_sets_them() {
    let dir = Dir::new("city");
    let c = setup_text(&format!(
        "geoip {} {{\n edns-subnet\n}}",
        dir.write("c.mmdb", &city_db())
    ))
    .expect("ok");
    let l = labels(&c, "81.2.69.160:5353", None);
    let want = [
        ("geoip/city/name", "Amsterdam"),
        ("geoip/continent/code", "EU"),
        ("geoip/continent/name", "Europe"),
        ("geoip/country/code", "NL"),
        ("geoip/country/is_in_european_union", "true"),
        ("geoip/country/name", "Netherlands"),
        ("geoip/latitude", "52.3759"),
        ("geoip/longitude", "4.8975"),
        ("geoip/postalcode", "1012"),
        ("geoip/subdivisions/code", "NH,AMS"),
        ("geoip/timezone", "Europe/Amsterdam"),
    ];
    assert_eq!(
        l,
        want.iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect::<Vec<_>>()
    );
    // A v4-mapped client is its IPv4 address; IPv6 networks; coordinates
    // printed as Go's FormatFloat(…, 'f', -1, 64) prints them.
    let l = labels(&c, "[::ffff:81.2.69.1]:53", None);
    assert_eq!(get(&l, "geoip/city/name"), Some("Amsterdam"));
    let l = labels(&c, "[2001:db8::1]:53", None);
    assert_eq!(
        (get(&l, "geoip/latitude"), get(&l, "geoip/longitude")),
        (Some("-0.5"), Some("0"))
    );
    // Without coordinates: empty values.
    let l = labels(&c, "127.0.0.1:53", None);
    assert_eq!(
        (get(&l, "geoip/city/name"), get(&l, "geoip/latitude")),
        (Some("Loopback"), Some(""))
    );
    // An address the database does not hold: every label, empty (false for the EU flag).
    let l = labels(&c, "192.0.2.1:53", None);
    assert_eq!(l.len(), 11);
    assert_eq!(get(&l, "geoip/city/name"), Some(""));
    assert_eq!(get(&l, "geoip/country/is_in_european_union"), Some("false"));
    // The EDNS client subnet replaces the source address (address padded).
    let l = labels(&c, "192.0.2.1:53", Some(&[0, 1, 24, 0, 81, 2, 69]));
    assert_eq!(get(&l, "geoip/city/name"), Some("Amsterdam"));
    let l = labels(
        &c,
        "192.0.2.1:53",
        Some(&[0, 2, 32, 0, 0x20, 0x01, 0x0d, 0xb8]),
    );
    assert_eq!(get(&l, "geoip/city/name"), Some("Docs"));
    // A malformed subnet leaves the source address.
    let l = labels(&c, "81.2.69.9:53", Some(&[0, 7, 0, 0]));
    assert_eq!(get(&l, "geoip/city/name"), Some("Amsterdam"));
}

#[test]
fn asn_labels_and_subnet_off() {
    let dir = Dir::new("asn");
    let c = setup_text(&format!("geoip {}", dir.write("a.mmdb", &asn_db()))).expect("ok");
    let l = labels(&c, "81.2.69.3:53", Some(&[0, 1, 24, 0, 10, 0, 0]));
    assert_eq!(
        l,
        [
            ("geoip/asn/number".to_owned(), "64512".to_owned()),
            ("geoip/asn/org".to_owned(), "Example Networks".to_owned())
        ]
    );
    let l = labels(&c, "10.0.0.1:53", None);
    assert_eq!(
        (get(&l, "geoip/asn/number"), get(&l, "geoip/asn/org")),
        (Some("0"), Some(""))
    );
}
