//! A MaxMind DB writer for tests (the format of maxmind.github.io/MaxMind-DB):
//! an IPv6 search tree of 24-bit records, IPv4 networks under `::/96`, a data
//! section of maps, strings, numbers and booleans, and the metadata.

use std::net::IpAddr;

/// A value of the data section.
#[derive(Debug, Clone)]
pub enum V {
    Str(String),
    U16(u16),
    U32(u32),
    U64(u64),
    F64(f64),
    Bool(bool),
    Map(Vec<(String, Self)>),
    Arr(Vec<Self>),
}

/// A map from `(key, value)` pairs.
pub fn map(pairs: Vec<(&str, V)>) -> V {
    V::Map(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

/// A string.
pub fn s(v: &str) -> V {
    V::Str(v.to_owned())
}

fn ctrl(out: &mut Vec<u8>, ty: u8, size: usize) {
    let (t, ext) = if ty <= 7 {
        (ty, None)
    } else {
        (0, Some(ty - 7))
    };
    let (first, extra): (u8, Vec<u8>) = if size < 29 {
        (size as u8, vec![])
    } else if size < 285 {
        (29, vec![(size - 29) as u8])
    } else if size < 65_821 {
        (30, ((size - 285) as u16).to_be_bytes().to_vec())
    } else {
        (31, ((size - 65_821) as u32).to_be_bytes()[1..].to_vec())
    };
    out.push((t << 5) | first);
    if let Some(e) = ext {
        out.push(e);
    }
    out.extend_from_slice(&extra);
}

fn encode(v: &V, out: &mut Vec<u8>) {
    match v {
        V::Str(x) => {
            ctrl(out, 2, x.len());
            out.extend_from_slice(x.as_bytes());
        }
        V::F64(x) => {
            ctrl(out, 3, 8);
            out.extend_from_slice(&x.to_be_bytes());
        }
        V::U16(x) => {
            let b = x.to_be_bytes();
            let skip = b.iter().take_while(|&&c| c == 0).count();
            ctrl(out, 5, 2 - skip);
            out.extend_from_slice(&b[skip..]);
        }
        V::U32(x) => {
            let b = x.to_be_bytes();
            let skip = b.iter().take_while(|&&c| c == 0).count();
            ctrl(out, 6, 4 - skip);
            out.extend_from_slice(&b[skip..]);
        }
        V::U64(x) => {
            let b = x.to_be_bytes();
            let skip = b.iter().take_while(|&&c| c == 0).count();
            ctrl(out, 9, 8 - skip);
            out.extend_from_slice(&b[skip..]);
        }
        V::Bool(x) => ctrl(out, 14, usize::from(*x)),
        V::Map(m) => {
            ctrl(out, 7, m.len());
            for (k, v) in m {
                encode(&V::Str(k.clone()), out);
                encode(v, out);
            }
        }
        V::Arr(a) => {
            ctrl(out, 11, a.len());
            for v in a {
                encode(v, out);
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Rec {
    Empty,
    Node(usize),
    Data(usize),
}

/// A database of `db_type` mapping each network (address, prefix length) to
/// its record.
pub fn build(db_type: &str, nets: &[(IpAddr, u8, V)]) -> Vec<u8> {
    let mut nodes: Vec<[Rec; 2]> = vec![[Rec::Empty; 2]];
    let mut data = Vec::new();
    for (addr, prefix, v) in nets {
        let (bits, len) = match addr {
            IpAddr::V4(a) => (u128::from(u32::from(*a)), 96 + u32::from(*prefix)),
            IpAddr::V6(a) => (u128::from(*a), u32::from(*prefix)),
        };
        let off = data.len();
        encode(v, &mut data);
        let mut node = 0;
        for i in 0..len {
            let bit = ((bits >> (127 - i)) & 1) as usize;
            if i + 1 == len {
                nodes[node][bit] = Rec::Data(off);
                break;
            }
            node = match nodes[node][bit] {
                Rec::Node(n) => n,
                _ => {
                    nodes.push([Rec::Empty; 2]);
                    let n = nodes.len() - 1;
                    nodes[node][bit] = Rec::Node(n);
                    n
                }
            };
        }
    }
    let count = nodes.len();
    let mut out = Vec::new();
    for n in &nodes {
        for r in n {
            let v = match *r {
                Rec::Empty => count,
                Rec::Node(i) => i,
                Rec::Data(o) => count + 16 + o,
            } as u32;
            out.extend_from_slice(&v.to_be_bytes()[1..]);
        }
    }
    out.extend_from_slice(&[0; 16]);
    out.extend_from_slice(&data);
    out.extend_from_slice(b"\xAB\xCD\xEFMaxMind.com");
    let meta = map(vec![
        ("binary_format_major_version", V::U16(2)),
        ("binary_format_minor_version", V::U16(0)),
        ("build_epoch", V::U64(1_700_000_000)),
        ("database_type", s(db_type)),
        ("description", map(vec![("en", s("ringdns test database"))])),
        ("ip_version", V::U16(6)),
        ("languages", V::Arr(vec![s("en")])),
        ("node_count", V::U32(count as u32)),
        ("record_size", V::U16(24)),
    ]);
    encode(&meta, &mut out);
    out
}

/// A GeoLite2-City record.
pub fn city_record(
    city: &str,
    country: &str,
    iso: &str,
    eu: bool,
    lat_long: Option<(f64, f64)>,
) -> V {
    let mut loc = vec![("time_zone", s("Europe/Amsterdam"))];
    if let Some((lat, long)) = lat_long {
        loc.push(("latitude", V::F64(lat)));
        loc.push(("longitude", V::F64(long)));
    }
    map(vec![
        ("city", map(vec![("names", map(vec![("en", s(city))]))])),
        (
            "continent",
            map(vec![
                ("code", s("EU")),
                ("names", map(vec![("en", s("Europe"))])),
            ]),
        ),
        (
            "country",
            map(vec![
                ("iso_code", s(iso)),
                ("is_in_european_union", V::Bool(eu)),
                ("names", map(vec![("en", s(country))])),
            ]),
        ),
        ("location", map(loc)),
        ("postal", map(vec![("code", s("1012"))])),
        (
            "subdivisions",
            V::Arr(vec![
                map(vec![("iso_code", s("NH"))]),
                map(vec![("iso_code", s("AMS"))]),
            ]),
        ),
    ])
}

/// The tests' City database: 81.2.69.0/24 in Amsterdam, 127.0.0.0/8 without
/// coordinates, 2001:db8::/32 at (−0.5, 0).
pub fn sample_city_db() -> Vec<u8> {
    build(
        "GeoLite2-City",
        &[
            (
                IpAddr::from([81, 2, 69, 0]),
                24,
                city_record(
                    "Amsterdam",
                    "Netherlands",
                    "NL",
                    true,
                    Some((52.3759, 4.8975)),
                ),
            ),
            (
                IpAddr::from([127, 0, 0, 0]),
                8,
                city_record("Loopback", "Nowhere", "ZZ", false, None),
            ),
            (
                "2001:db8::".parse().expect("v6"),
                32,
                city_record("Docs", "Documentation", "XD", false, Some((-0.5, 0.0))),
            ),
        ],
    )
}
