//! Unit tests: the query-name parser (CoreDNS's `parse_test.go` cases), the
//! record tables over a fixed snapshot (CoreDNS's `handler_test.go` shapes), and
//! the object conversions.

use std::collections::HashSet;
use std::net::IpAddr;

use serde_json::json;

use super::answer::{Lookup, NameError, Params, PodMode, Rr, Upstream, parse_request};
use super::store::{Kind, Object, Objects, Snapshot, convert, key_of};

#[test]
fn parse_request_table() {
    let z = "cluster.local.";
    // (name, port, protocol, endpoint, service, namespace, pod_or_svc)
    for (name, want) in [
        (
            "_http._tcp.webs.mynamespace.svc.cluster.local.",
            ["http", "tcp", "", "webs", "mynamespace", "svc"],
        ),
        (
            "*.any.*.any.svc.cluster.local.",
            ["*", "any", "", "*", "any", "svc"],
        ),
        (
            "1-2-3-4.webs.mynamespace.svc.cluster.local.",
            ["", "", "1-2-3-4", "webs", "mynamespace", "svc"],
        ),
        (
            "inter.webs.tests.svc.cluster.local.",
            ["", "", "inter", "webs", "tests", "svc"],
        ),
        (
            "webs.mynamespace.svc.cluster.local.",
            ["", "", "", "webs", "mynamespace", "svc"],
        ),
        (
            "10-0-0-1.ns.pod.cluster.local.",
            ["", "", "", "10-0-0-1", "ns", "pod"],
        ),
        ("ns.svc.cluster.local.", ["", "", "", "", "ns", "svc"]),
        ("svc.cluster.local.", ["", "", "", "", "", ""]),
        ("cluster.local.", ["", "", "", "", "", ""]),
    ] {
        let r = parse_request(name, z, false, false).expect(name);
        assert_eq!(
            [
                r.port.as_str(),
                &r.protocol,
                &r.endpoint,
                &r.service,
                &r.namespace,
                &r.pod_or_svc
            ],
            want,
            "{name}"
        );
    }
    for bad in [
        "too.long.for.what.I.am.trying.to.pod.cluster.local.",
        "webs.mynamespace.pood.cluster.local.",
        "nonexistent.svc.cluster.local.x.cluster.local.",
        "a.b.c.d.e.svc.cluster.local.",
    ] {
        assert_eq!(parse_request(bad, z, false, false), Err(NameError), "{bad}");
    }
}

fn objects() -> Objects {
    let mut o = Objects::default();
    let put = |o: &mut Objects, kind: Kind, v: serde_json::Value| {
        let obj = convert(kind, &v, true).expect("object");
        o.put(key_of(&v), obj);
    };
    for ns in ["testns", "other"] {
        put(&mut o, Kind::Namespaces, json!({"metadata": {"name": ns}}));
    }
    put(
        &mut o,
        Kind::Services,
        json!({"metadata": {"name": "svc1", "namespace": "testns", "resourceVersion": "1"},
               "spec": {"clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1"],
                        "ports": [{"name": "http", "protocol": "TCP", "port": 80}]}}),
    );
    put(
        &mut o,
        Kind::Services,
        json!({"metadata": {"name": "svc6", "namespace": "testns"},
               "spec": {"clusterIP": "1234:abcd::1", "ports": [{"name": "http", "protocol": "TCP", "port": 80}]}}),
    );
    put(
        &mut o,
        Kind::Services,
        json!({"metadata": {"name": "hdls1", "namespace": "testns"},
               "spec": {"clusterIP": "None", "ports": [{"name": "http", "protocol": "TCP", "port": 80}]}}),
    );
    put(
        &mut o,
        Kind::Services,
        json!({"metadata": {"name": "external", "namespace": "testns"},
               "spec": {"type": "ExternalName", "externalName": "ext.interwebs.test",
                        "ports": [{"name": "http", "protocol": "TCP", "port": 80}]}}),
    );
    put(
        &mut o,
        Kind::Services,
        json!({"metadata": {"name": "external-to-service", "namespace": "testns"},
               "spec": {"type": "ExternalName", "externalName": "svc1.testns.svc.cluster.local."}}),
    );
    put(
        &mut o,
        Kind::Endpoints,
        json!({"metadata": {"name": "hdls1-abcde", "namespace": "testns",
                            "labels": {"kubernetes.io/service-name": "hdls1"}},
               "addressType": "IPv4",
               "endpoints": [
                   {"addresses": ["172.0.0.2"], "conditions": {"ready": true}},
                   {"addresses": ["172.0.0.3"], "hostname": "dup-name"},
                   {"addresses": ["172.0.0.4"], "conditions": {"ready": false}}],
               "ports": [{"name": "http", "protocol": "TCP", "port": 80}]}),
    );
    put(
        &mut o,
        Kind::Endpoints,
        json!({"metadata": {"name": "svc1-xyz", "namespace": "testns",
                            "labels": {"kubernetes.io/service-name": "svc1"}},
               "endpoints": [{"addresses": ["172.0.0.1"], "hostname": "ep1a"}],
               "ports": [{"name": "http", "protocol": "TCP", "port": 80}]}),
    );
    // A headless service whose endpoints sit in two zones (one written in
    // capitals) and in none.
    put(
        &mut o,
        Kind::Services,
        json!({"metadata": {"name": "db", "namespace": "testns"},
               "spec": {"clusterIP": "None", "ports": [{"name": "pg", "protocol": "TCP", "port": 5432}]}}),
    );
    put(
        &mut o,
        Kind::Endpoints,
        json!({"metadata": {"name": "db-1", "namespace": "testns",
                            "labels": {"kubernetes.io/service-name": "db"}},
               "endpoints": [
                   {"addresses": ["172.0.1.1"], "zone": "us-west-2a"},
                   {"addresses": ["172.0.1.2"], "zone": "Corp.Example.com"},
                   {"addresses": ["172.0.1.3"]}],
               "ports": [{"name": "pg", "protocol": "TCP", "port": 5432}]}),
    );
    o
}

/// CoreDNS's `zonal_test.go` shapes: `ZONE.pin|prefer._zone.SERVICE.NS.svc.ZONE`.
#[test]
fn zonal_names() {
    let z = "cluster.local.";
    let r = parse_request("a.b.pin._zone.db.ns.svc.cluster.local.", z, false, true).expect("zonal");
    assert_eq!(
        (r.zone.as_str(), r.zone_prefer, r.service.as_str()),
        ("a.b", false, "db")
    );
    let r =
        parse_request("us-1.prefer._zone.db.ns.svc.cluster.local.", z, false, true).expect("zonal");
    assert_eq!((r.zone.as_str(), r.zone_prefer), ("us-1", true));
    for bad in [
        "us-1.nearest._zone.db.ns.svc.cluster.local.",
        "us-1.pin._zonex.db.ns.svc.cluster.local.",
        "us-1.pin._zone.db.ns.pod.cluster.local.",
    ] {
        assert_eq!(parse_request(bad, z, false, true), Err(NameError), "{bad}");
    }
    assert_eq!(
        parse_request("us-1.pin._zone.db.ns.svc.cluster.local.", z, false, false),
        Err(NameError),
        "without the option: too long"
    );
    let all = ["172.0.1.1", "172.0.1.2", "172.0.1.3"];
    type Case<'a> = (&'a str, Result<Vec<&'a str>, NameError>);
    let cases: Vec<Case<'_>> = vec![
        ("us-west-2a.pin._zone.db", Ok(vec!["172.0.1.1"])),
        ("corp.example.com.pin._zone.db", Ok(vec!["172.0.1.2"])),
        // A zone no endpoint carries: NODATA for pin, everything for prefer.
        ("eu-1.pin._zone.db", Ok(vec![])),
        ("eu-1.prefer._zone.db", Ok(all.to_vec())),
        ("us-west-2a.prefer._zone.db", Ok(vec!["172.0.1.1"])),
        // Defined for headless services only; unknown services stay NXDOMAIN.
        ("us-west-2a.pin._zone.svc1", Err(NameError)),
        ("us-west-2a.pin._zone.external", Err(NameError)),
        ("us-west-2a.pin._zone.nosuch", Err(NameError)),
        ("us-west-2a.other._zone.db", Err(NameError)),
        // The plain name is untouched.
        ("db", Ok(all.to_vec())),
    ];
    with_zonal(PodMode::Disabled, true, |l| {
        for (name, want) in &cases {
            let q = format!("{name}.testns.svc.cluster.local.");
            let got = l
                .address(&q, &q, z, 1, &[], &mut NoUp(Vec::new()))
                .map(|(r, _)| text(&r));
            let want = want.as_ref().map(|w| {
                w.iter()
                    .map(|ip| format!("{q} 5 IN A {ip}"))
                    .collect::<Vec<_>>()
            });
            assert_eq!(got, want.map_err(|e| *e), "{q}");
        }
        // SRV answers and their glue are zone-filtered too.
        let q = "us-west-2a.pin._zone.db.testns.svc.cluster.local.";
        let (r, e) = l.srv(q, q, z).expect("srv");
        assert_eq!(
            text(&r),
            [format!(
                "{q} 5 IN SRV 0 100 5432 172-0-1-1.db.testns.svc.cluster.local."
            )]
        );
        assert_eq!(
            text(&e),
            ["172-0-1-1.db.testns.svc.cluster.local. 5 IN A 172.0.1.1"]
        );
        // Other types: NODATA for an existing zonal name, even an empty one.
        let q = "eu-1.pin._zone.db.testns.svc.cluster.local.";
        assert_eq!(l.txt(q, q, z), Ok(Vec::new()));
        let q = "eu-1.pin._zone.nosuch.testns.svc.cluster.local.";
        assert_eq!(l.txt(q, q, z), Err(NameError));
    });
    // Without the option the same names are too long: NXDOMAIN.
    with(PodMode::Disabled, |l| {
        let q = "us-west-2a.pin._zone.db.testns.svc.cluster.local.";
        assert!(l.address(q, q, z, 1, &[], &mut NoUp(Vec::new())).is_err());
    });
}

struct NoUp(Vec<(String, u16)>);
impl Upstream for NoUp {
    fn lookup(&mut self, name: &str, qtype: u16) -> Option<(Vec<Rr>, bool)> {
        self.0.push((name.to_owned(), qtype));
        None
    }
}

/// Records in presentation form.
fn text(rrs: &[Rr]) -> Vec<String> {
    rrs.iter()
        .map(|r| {
            let rd = match r.rtype {
                1 | 28 => {
                    let ip: IpAddr = if r.rdata.len() == 4 {
                        <[u8; 4]>::try_from(&r.rdata[..])
                            .map(IpAddr::from)
                            .expect("v4")
                    } else {
                        <[u8; 16]>::try_from(&r.rdata[..])
                            .map(IpAddr::from)
                            .expect("v6")
                    };
                    ip.to_string()
                }
                33 => format!(
                    "{} {} {} {}",
                    u16::from_be_bytes([r.rdata[0], r.rdata[1]]),
                    u16::from_be_bytes([r.rdata[2], r.rdata[3]]),
                    u16::from_be_bytes([r.rdata[4], r.rdata[5]]),
                    crate::wire::Name::from_wire(&r.rdata[6..]).expect("n")
                ),
                5 | 12 | 2 => crate::wire::Name::from_wire(&r.rdata)
                    .expect("n")
                    .to_string(),
                16 => format!("\"{}\"", String::from_utf8_lossy(&r.rdata[1..])),
                _ => format!("{:?}", r.rdata),
            };
            let t = match r.rtype {
                1 => "A",
                28 => "AAAA",
                33 => "SRV",
                5 => "CNAME",
                12 => "PTR",
                2 => "NS",
                16 => "TXT",
                _ => "?",
            };
            format!("{} {} IN {t} {rd}", r.owner, r.ttl)
        })
        .collect()
}

fn with<T>(pods: PodMode, f: impl FnOnce(&Lookup<'_>) -> T) -> T {
    with_zonal(pods, false, f)
}

fn with_zonal<T>(pods: PodMode, zonal: bool, f: impl FnOnce(&Lookup<'_>) -> T) -> T {
    let snap: Snapshot = objects().snapshot(true, [1_700_000_000, 1_700_000_001, 1_700_000_002]);
    let ns = HashSet::new();
    let local: Vec<IpAddr> = vec!["172.0.0.2".parse().expect("ip")];
    let p = Params {
        primary_zone: "cluster.local.",
        namespaces: &ns,
        pods,
        endpoint_pod_names: false,
        ignore_empty_service: false,
        ttl: 5,
        local_ips: &local,
        zonal,
        multicluster: &[],
    };
    f(&Lookup { snap: &snap, p: &p })
}

#[test]
fn address_table() {
    let z = "cluster.local.";
    // (query name, qtype, answer) ; Err: a name error (NXDOMAIN).
    type Case<'a> = (&'a str, u16, Result<&'a [&'a str], NameError>);
    let cases: &[Case<'_>] = &[
        (
            "svc1.testns.svc.cluster.local.",
            1,
            Ok(&["svc1.testns.svc.cluster.local. 5 IN A 10.0.0.1"]),
        ),
        ("svc1.testns.svc.cluster.local.", 28, Ok(&[])),
        (
            "svc6.testns.svc.cluster.local.",
            28,
            Ok(&["svc6.testns.svc.cluster.local. 5 IN AAAA 1234:abcd::1"]),
        ),
        (
            "_http._tcp.svc1.testns.svc.cluster.local.",
            1,
            Ok(&["_http._tcp.svc1.testns.svc.cluster.local. 5 IN A 10.0.0.1"]),
        ),
        (
            "_https._tcp.svc1.testns.svc.cluster.local.",
            1,
            Err(NameError),
        ),
        (
            "hdls1.testns.svc.cluster.local.",
            1,
            Ok(&[
                "hdls1.testns.svc.cluster.local. 5 IN A 172.0.0.2",
                "hdls1.testns.svc.cluster.local. 5 IN A 172.0.0.3",
            ]),
        ),
        (
            "dup-name.hdls1.testns.svc.cluster.local.",
            1,
            Ok(&["dup-name.hdls1.testns.svc.cluster.local. 5 IN A 172.0.0.3"]),
        ),
        (
            "172-0-0-2.hdls1.testns.svc.cluster.local.",
            1,
            Ok(&["172-0-0-2.hdls1.testns.svc.cluster.local. 5 IN A 172.0.0.2"]),
        ),
        (
            "172-0-0-4.hdls1.testns.svc.cluster.local.",
            1,
            Err(NameError),
        ),
        (
            "ep1a.svc1.testns.svc.cluster.local.",
            1,
            Ok(&["ep1a.svc1.testns.svc.cluster.local. 5 IN A 172.0.0.1"]),
        ),
        (
            "external-to-service.testns.svc.cluster.local.",
            1,
            Ok(&[
                "external-to-service.testns.svc.cluster.local. 5 IN CNAME svc1.testns.svc.cluster.local.",
                "svc1.testns.svc.cluster.local. 5 IN A 10.0.0.1",
            ]),
        ),
        ("svcx.testns.svc.cluster.local.", 1, Err(NameError)),
        ("svc1.nons.svc.cluster.local.", 1, Err(NameError)),
        ("testns.svc.cluster.local.", 1, Ok(&[])),
        ("svc.cluster.local.", 1, Ok(&[])),
        ("cluster.local.", 1, Ok(&[])),
        ("10-0-0-1.testns.pod.cluster.local.", 1, Err(NameError)),
        // This server's address (172.0.0.2) is an endpoint of the headless hdls1:
        // every address of that endpoint object, as CoreDNS's `nsAddrs`.
        (
            "ns.dns.cluster.local.",
            1,
            Ok(&[
                "ns.dns.cluster.local. 5 IN A 172.0.0.2",
                "ns.dns.cluster.local. 5 IN A 172.0.0.3",
            ]),
        ),
    ];
    for (q, t, want) in cases {
        with(PodMode::Disabled, |l| {
            let got = l
                .address(q, q, z, *t, &[], &mut NoUp(Vec::new()))
                .map(|(r, _)| text(&r));
            let want = want.map(|w| w.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
            assert_eq!(got, want, "{q} {t}");
        });
    }
}

#[test]
fn external_name_asks_the_server() {
    with(PodMode::Disabled, |l| {
        let q = "external.testns.svc.cluster.local.";
        let mut up = NoUp(Vec::new());
        let (r, _) = l
            .address(q, q, "cluster.local.", 1, &[], &mut up)
            .expect("ok");
        // No reply yet: nothing, and the lookup is wanted.
        assert!(r.is_empty());
        assert_eq!(up.0, vec![("ext.interwebs.test.".to_owned(), 1)]);
        let r = l.cname(q, q, "cluster.local.").expect("ok");
        assert_eq!(
            text(&r),
            ["external.testns.svc.cluster.local. 5 IN CNAME ext.interwebs.test."]
        );
    });
}

#[test]
fn pods_by_mode() {
    let q = "10-0-0-1.testns.pod.cluster.local.";
    with(PodMode::Insecure, |l| {
        let (r, _) = l
            .address(q, q, "cluster.local.", 1, &[], &mut NoUp(Vec::new()))
            .expect("ok");
        assert_eq!(text(&r), [format!("{q} 5 IN A 10.0.0.1")]);
        let q6 = "fd00--1.testns.pod.cluster.local.";
        let (r, _) = l
            .address(q6, q6, "cluster.local.", 28, &[], &mut NoUp(Vec::new()))
            .expect("ok");
        assert_eq!(text(&r), [format!("{q6} 5 IN AAAA fd00::1")]);
        let bad = "10-0-0-x.testns.pod.cluster.local.";
        assert!(
            l.address(bad, bad, "cluster.local.", 1, &[], &mut NoUp(Vec::new()))
                .is_err()
        );
        let other_ns = "10-0-0-1.nons.pod.cluster.local.";
        assert!(
            l.address(
                other_ns,
                other_ns,
                "cluster.local.",
                1,
                &[],
                &mut NoUp(Vec::new())
            )
            .is_err()
        );
    });
    with(PodMode::Verified, |l| {
        // No pod has the address.
        assert!(
            l.address(q, q, "cluster.local.", 1, &[], &mut NoUp(Vec::new()))
                .is_err()
        );
    });
}

#[test]
fn srv_txt_ptr_ns_soa() {
    let z = "cluster.local.";
    with(PodMode::Disabled, |l| {
        let q = "_http._tcp.svc1.testns.svc.cluster.local.";
        let (r, e) = l.srv(q, q, z).expect("srv");
        assert_eq!(
            text(&r),
            [format!(
                "{q} 5 IN SRV 0 100 80 svc1.testns.svc.cluster.local."
            )]
        );
        assert_eq!(text(&e), ["svc1.testns.svc.cluster.local. 5 IN A 10.0.0.1"]);
        let q = "_http._tcp.hdls1.testns.svc.cluster.local.";
        let (r, e) = l.srv(q, q, z).expect("srv");
        assert_eq!(
            text(&r),
            [
                format!("{q} 5 IN SRV 0 50 80 172-0-0-2.hdls1.testns.svc.cluster.local."),
                format!("{q} 5 IN SRV 0 50 80 dup-name.hdls1.testns.svc.cluster.local."),
            ]
        );
        assert_eq!(e.len(), 2);
        // An ExternalName service has no SRV: NODATA.
        let q = "external.testns.svc.cluster.local.";
        assert_eq!(l.srv(q, q, z).map(|(r, _)| r.len()), Ok(0));

        let q = "dns-version.cluster.local.";
        assert_eq!(
            text(&l.txt(q, q, z).expect("txt")),
            [format!("{q} 28800 IN TXT \"1.1.0\"")]
        );
        let q = "svc1.testns.svc.cluster.local.";
        assert_eq!(l.txt(q, q, z), Ok(Vec::new()));
        let q = "nothing.testns.svc.cluster.local.";
        assert_eq!(l.txt(q, q, z), Err(NameError));

        let q = "1.0.0.10.in-addr.arpa.";
        assert_eq!(
            text(&l.ptr(q, q, "in-addr.arpa.").expect("ptr")),
            [format!("{q} 5 IN PTR svc1.testns.svc.cluster.local.")]
        );
        let q = "3.0.0.172.in-addr.arpa.";
        assert_eq!(
            text(&l.ptr(q, q, "in-addr.arpa.").expect("ptr")),
            [format!(
                "{q} 5 IN PTR dup-name.hdls1.testns.svc.cluster.local."
            )]
        );
        let q = "9.9.9.9.in-addr.arpa.";
        assert_eq!(l.ptr(q, q, "in-addr.arpa."), Err(NameError));
        // Go's ParseIP refuses leading zeros: not an address, so a name error.
        let q = "1.0.0.010.in-addr.arpa.";
        assert_eq!(l.ptr(q, q, "in-addr.arpa."), Err(NameError));

        // This server's address is an endpoint of the headless hdls1.
        let (r, e) = l.ns(z, z);
        assert_eq!(
            text(&r),
            [
                format!("{z} 5 IN NS 172-0-0-2.hdls1.testns.svc.cluster.local."),
                format!("{z} 5 IN NS dup-name.hdls1.testns.svc.cluster.local."),
            ]
        );
        assert_eq!(
            text(&e),
            [
                "172-0-0-2.hdls1.testns.svc.cluster.local. 5 IN A 172.0.0.2",
                "dup-name.hdls1.testns.svc.cluster.local. 5 IN A 172.0.0.3"
            ]
        );

        let soa = l.soa("Cluster.Local.");
        assert_eq!(soa.owner, "Cluster.Local.");
        assert_eq!(soa.ttl, 5);
        let tail = &soa.rdata[soa.rdata.len() - 20..];
        assert_eq!(&tail[..4], &1_700_000_000u32.to_be_bytes());
        assert_eq!(&tail[16..], &5u32.to_be_bytes());
    });
}

#[test]
fn conversions_and_changes() {
    let v = json!({"metadata": {"name": "p", "namespace": "n", "deletionTimestamp": "2026-01-01T00:00:00Z"},
                   "status": {"podIP": "10.1.1.1"}});
    assert_eq!(convert(Kind::Pods, &v, false), None);
    let s = json!({"metadata": {"name": "lb", "namespace": "n"},
                   "spec": {"type": "LoadBalancer", "clusterIP": "10.0.0.9", "externalIPs": ["1.1.1.1"]},
                   "status": {"loadBalancer": {"ingress": [{"ip": "2.2.2.2"}, {"hostname": "lb.example"}]}}});
    let Some(Object::Service(svc)) = convert(Kind::Services, &s, false) else {
        panic!("service");
    };
    assert_eq!(svc.external_ips, ["1.1.1.1", "2.2.2.2", "lb.example"]);
    assert_eq!(svc.ports[0].port, -1, "no ports: one port -1, as CoreDNS");
    let mut o = Objects::default();
    assert_eq!(
        o.put("n/lb".into(), Object::Service(svc.clone())),
        super::store::Change::Modified
    );
    assert_eq!(
        o.put("n/lb".into(), Object::Service(svc)),
        super::store::Change::Same
    );
    assert_eq!(
        o.replace(Kind::Services, Vec::new()),
        super::store::Change::Modified
    );
    assert_eq!(
        o.replace(Kind::Services, Vec::new()),
        super::store::Change::Same
    );
}

#[test]
fn reverse_names_as_coredns() {
    use super::answer::is_reverse;
    assert!(is_reverse("1.0.0.10.in-addr.arpa."));
    assert!(is_reverse("x.IP6.ARPA."));
    // The zones themselves are forward zones to CoreDNS's `IsReverse`.
    assert!(!is_reverse("in-addr.arpa."));
    assert!(!is_reverse("ip6.arpa."));
    assert!(!is_reverse("cluster.local."));
}

#[test]
fn rfc3339_nano() {
    use super::store::parse_rfc3339;
    assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0.0));
    assert_eq!(
        parse_rfc3339("2026-01-01T00:00:00.5Z"),
        Some(1_767_225_600.5)
    );
    assert_eq!(parse_rfc3339("1970-01-01T01:00:00+01:00"), Some(0.0));
    assert_eq!(parse_rfc3339("1970-01-01 00:00:00Z"), None);
    assert_eq!(parse_rfc3339("2026-13-01T00:00:00Z"), None);
    assert_eq!(parse_rfc3339("2026-01-01T00:00:00"), None);
}

/// CoreDNS's `Transfer` (xfr.go): the SOA, the apex NS records with their
/// addresses at TTL 0, each service's records in name order, the SOA.
#[test]
fn transfer_records() {
    let all = with(PodMode::Disabled, |l| l.transfer("cluster.local.", 0));
    let (first, last) = (&all[0], &all[all.len() - 1]);
    assert_eq!((first.rtype, last.rtype), (6, 6));
    assert_eq!(first, last);
    assert_eq!(first, &with(PodMode::Disabled, |l| l.soa("cluster.local.")));
    let want = [
        "cluster.local. 5 IN NS 172-0-0-2.hdls1.testns.svc.cluster.local.",
        "cluster.local. 5 IN NS dup-name.hdls1.testns.svc.cluster.local.",
        "172-0-0-2.hdls1.testns.svc.cluster.local. 0 IN A 172.0.0.2",
        "dup-name.hdls1.testns.svc.cluster.local. 0 IN A 172.0.0.3",
        "db.testns.svc.cluster.local. 5 IN A 172.0.1.1",
        "172-0-1-1.db.testns.svc.cluster.local. 5 IN A 172.0.1.1",
        "_pg._tcp.db.testns.svc.cluster.local. 5 IN SRV 0 33 5432 172-0-1-1.db.testns.svc.cluster.local.",
        "db.testns.svc.cluster.local. 5 IN A 172.0.1.2",
        "172-0-1-2.db.testns.svc.cluster.local. 5 IN A 172.0.1.2",
        "_pg._tcp.db.testns.svc.cluster.local. 5 IN SRV 0 33 5432 172-0-1-2.db.testns.svc.cluster.local.",
        "db.testns.svc.cluster.local. 5 IN A 172.0.1.3",
        "172-0-1-3.db.testns.svc.cluster.local. 5 IN A 172.0.1.3",
        "_pg._tcp.db.testns.svc.cluster.local. 5 IN SRV 0 33 5432 172-0-1-3.db.testns.svc.cluster.local.",
        "external.testns.svc.cluster.local. 5 IN CNAME ext.interwebs.test.",
        "external-to-service.testns.svc.cluster.local. 5 IN CNAME svc1.testns.svc.cluster.local.",
        "hdls1.testns.svc.cluster.local. 5 IN A 172.0.0.2",
        "172-0-0-2.hdls1.testns.svc.cluster.local. 5 IN A 172.0.0.2",
        "_http._tcp.hdls1.testns.svc.cluster.local. 5 IN SRV 0 50 80 172-0-0-2.hdls1.testns.svc.cluster.local.",
        "hdls1.testns.svc.cluster.local. 5 IN A 172.0.0.3",
        "dup-name.hdls1.testns.svc.cluster.local. 5 IN A 172.0.0.3",
        "_http._tcp.hdls1.testns.svc.cluster.local. 5 IN SRV 0 50 80 dup-name.hdls1.testns.svc.cluster.local.",
        "svc1.testns.svc.cluster.local. 5 IN A 10.0.0.1",
        "svc1.testns.svc.cluster.local. 5 IN SRV 0 100 80 svc1.testns.svc.cluster.local.",
        "_http._tcp.svc1.testns.svc.cluster.local. 5 IN SRV 0 100 80 svc1.testns.svc.cluster.local.",
        "svc6.testns.svc.cluster.local. 5 IN AAAA 1234:abcd::1",
        "svc6.testns.svc.cluster.local. 5 IN SRV 0 100 80 svc6.testns.svc.cluster.local.",
        "_http._tcp.svc6.testns.svc.cluster.local. 5 IN SRV 0 100 80 svc6.testns.svc.cluster.local.",
    ];
    assert_eq!(text(&all[1..all.len() - 1]), want);
    // IXFR: the SOA alone for the current serial, everything for another.
    let soa_only = with(PodMode::Disabled, |l| {
        l.transfer("cluster.local.", 1_700_000_000)
    });
    assert_eq!(soa_only, std::slice::from_ref(first));
    assert_eq!(
        with(PodMode::Disabled, |l| l.transfer("cluster.local.", 7)),
        all
    );
    // Services of namespaces not exposed are left out; the apex stays.
    let snap: Snapshot = objects().snapshot(true, [1_700_000_000, 1_700_000_001, 1_700_000_002]);
    let ns: HashSet<String> = ["other".to_owned()].into();
    let p = Params {
        primary_zone: "cluster.local.",
        namespaces: &ns,
        pods: PodMode::Disabled,
        endpoint_pod_names: false,
        ignore_empty_service: false,
        ttl: 5,
        local_ips: &[],
        zonal: false,
        multicluster: &[],
    };
    let none = Lookup { snap: &snap, p: &p }.transfer("Cluster.Local.", 0);
    assert_eq!(none.len(), 2, "{:?}", text(&none));
}

/// `objects()` with CoreDNS's `kubernetes_test.go` multicluster shapes: the
/// ServiceImports svc1, svc-dual-stack and hdls1 (headless), an import without
/// ports, and imported EndpointSlices from two clusters.
fn mc_objects() -> Objects {
    let mut o = objects();
    let put = |o: &mut Objects, kind: Kind, v: serde_json::Value| {
        let obj = convert(kind, &v, false).expect("object");
        o.put(key_of(&v), obj);
    };
    for (name, spec) in [
        (
            "svc1",
            json!({"type": "ClusterSetIP", "ips": ["10.0.0.1"],
                   "ports": [{"name": "http", "protocol": "TCP", "port": 80}]}),
        ),
        (
            "svc-dual-stack",
            json!({"type": "ClusterSetIP", "ips": ["10.0.0.2", "10::2"],
                   "ports": [{"name": "http", "protocol": "TCP", "port": 80}]}),
        ),
        ("hdls1", json!({"type": "Headless"})),
        (
            "noports",
            json!({"type": "ClusterSetIP", "ips": ["10.0.0.3"]}),
        ),
    ] {
        put(
            &mut o,
            Kind::ServiceImports,
            json!({"metadata": {"name": name, "namespace": "testns"}, "spec": spec}),
        );
    }
    for (name, svc, cluster, ep) in [
        (
            "svc1-slice1",
            "svc1",
            "cluster1",
            json!({"addresses": ["172.0.0.1"], "hostname": "ep1a"}),
        ),
        (
            "hdls1-slice1",
            "hdls1",
            "cluster1",
            json!({"addresses": ["172.0.0.2"]}),
        ),
        (
            "hdls1-slice2",
            "hdls1",
            "cluster2",
            json!({"addresses": ["172.0.1.5"], "hostname": "web"}),
        ),
    ] {
        put(
            &mut o,
            Kind::McEndpoints,
            json!({"metadata": {"name": name, "namespace": "testns",
                                "labels": {"multicluster.kubernetes.io/service-name": svc,
                                           "multicluster.kubernetes.io/source-cluster": cluster}},
                   "endpoints": [ep],
                   "ports": [{"name": "http", "protocol": "TCP", "port": 80}]}),
        );
    }
    o
}

fn with_mc<T>(f: impl FnOnce(&Lookup<'_>) -> T) -> T {
    let snap = mc_objects().snapshot(true, [1_700_000_000, 1_700_000_001, 1_700_000_002]);
    let ns = HashSet::new();
    let mc = ["clusterset.local.".to_owned()];
    let p = Params {
        primary_zone: "cluster.local.",
        namespaces: &ns,
        pods: PodMode::Disabled,
        endpoint_pod_names: false,
        ignore_empty_service: false,
        ttl: 5,
        local_ips: &[],
        zonal: true,
        multicluster: &mc,
    };
    f(&Lookup { snap: &snap, p: &p })
}

#[test]
fn multicluster_parse() {
    let z = "clusterset.local.";
    let r = parse_request("ep.c1.s.ns.svc.clusterset.local.", z, true, false).expect("mc");
    assert_eq!((r.endpoint.as_str(), r.cluster.as_str()), ("ep", "c1"));
    assert_eq!((r.port.as_str(), r.protocol.as_str()), ("", ""));
    // An underscore on either label: port and protocol, as outside.
    for q in [
        "_http._tcp.s.ns.svc.clusterset.local.",
        "_http.tcp.s.ns.svc.clusterset.local.",
        "http._tcp.s.ns.svc.clusterset.local.",
    ] {
        let r = parse_request(q, z, true, false).expect(q);
        assert_eq!(
            (r.port.as_str(), r.protocol.as_str(), r.cluster.as_str()),
            ("http", "tcp", ""),
            "{q}"
        );
    }
    // Outside a multicluster zone the same name is a port and protocol.
    let r = parse_request("ep.c1.s.ns.svc.clusterset.local.", z, false, false).expect("plain");
    assert_eq!((r.port.as_str(), r.protocol.as_str()), ("ep", "c1"));
    // No zone-scoped names in a multicluster zone.
    assert_eq!(
        parse_request("a.pin._zone.s.ns.svc.clusterset.local.", z, true, true),
        Err(NameError)
    );
}

#[test]
fn multicluster_answers() {
    let z = "clusterset.local.";
    type Case<'a> = (&'a str, u16, Result<&'a [&'a str], NameError>);
    let cases: &[Case<'_>] = &[
        (
            "svc1.testns.svc.clusterset.local.",
            1,
            Ok(&["svc1.testns.svc.clusterset.local. 5 IN A 10.0.0.1"]),
        ),
        (
            "svc-dual-stack.testns.svc.clusterset.local.",
            28,
            Ok(&["svc-dual-stack.testns.svc.clusterset.local. 5 IN AAAA 10::2"]),
        ),
        (
            "ep1a.cluster1.svc1.testns.svc.clusterset.local.",
            1,
            Ok(&["ep1a.cluster1.svc1.testns.svc.clusterset.local. 5 IN A 172.0.0.1"]),
        ),
        // The endpoint of another cluster, or without its cluster: NXDOMAIN.
        (
            "ep1a.cluster2.svc1.testns.svc.clusterset.local.",
            1,
            Err(NameError),
        ),
        ("ep1a.svc1.testns.svc.clusterset.local.", 1, Err(NameError)),
        (
            "hdls1.testns.svc.clusterset.local.",
            1,
            Ok(&[
                "hdls1.testns.svc.clusterset.local. 5 IN A 172.0.0.2",
                "hdls1.testns.svc.clusterset.local. 5 IN A 172.0.1.5",
            ]),
        ),
        (
            "web.cluster2.hdls1.testns.svc.clusterset.local.",
            1,
            Ok(&["web.cluster2.hdls1.testns.svc.clusterset.local. 5 IN A 172.0.1.5"]),
        ),
        // An import without ports has no records; a Service is not an import.
        ("noports.testns.svc.clusterset.local.", 1, Err(NameError)),
        ("external.testns.svc.clusterset.local.", 1, Err(NameError)),
        ("testns.svc.clusterset.local.", 1, Ok(&[])),
        // The cluster zone still answers from Services.
        (
            "svc1.testns.svc.cluster.local.",
            1,
            Ok(&["svc1.testns.svc.cluster.local. 5 IN A 10.0.0.1"]),
        ),
    ];
    for (q, t, want) in cases {
        let zone = if q.ends_with(z) { z } else { "cluster.local." };
        with_mc(|l| {
            let got = l
                .address(q, q, zone, *t, &[], &mut NoUp(Vec::new()))
                .map(|(r, _)| text(&r));
            let want = want.map(|w| w.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
            assert_eq!(got, want, "{q} {t}");
        });
    }
    with_mc(|l| {
        let q = "_http._tcp.hdls1.testns.svc.clusterset.local.";
        let (r, e) = l.srv(q, q, z).expect("srv");
        assert_eq!(
            text(&r),
            [
                format!(
                    "{q} 5 IN SRV 0 50 80 172-0-0-2.cluster1.hdls1.testns.svc.clusterset.local."
                ),
                format!("{q} 5 IN SRV 0 50 80 web.cluster2.hdls1.testns.svc.clusterset.local."),
            ]
        );
        assert_eq!(
            text(&e),
            [
                "172-0-0-2.cluster1.hdls1.testns.svc.clusterset.local. 5 IN A 172.0.0.2",
                "web.cluster2.hdls1.testns.svc.clusterset.local. 5 IN A 172.0.1.5"
            ]
        );
        let q = "_http._tcp.svc-dual-stack.testns.svc.clusterset.local.";
        // Two addresses of one name: the weight split, one record (plugin.SRV).
        let (r, _) = l.srv(q, q, z).expect("srv");
        assert_eq!(
            text(&r),
            [format!(
                "{q} 5 IN SRV 0 50 80 svc-dual-stack.testns.svc.clusterset.local."
            )]
        );
        // The SOA serial: the imports' in the multicluster zone.
        let serial = |rr: &Rr| {
            u32::from_be_bytes(
                rr.rdata[rr.rdata.len() - 20..rr.rdata.len() - 16]
                    .try_into()
                    .expect("4"),
            )
        };
        assert_eq!(serial(&l.soa(z)), 1_700_000_002);
        assert_eq!(serial(&l.soa("cluster.local.")), 1_700_000_000);
        // A transfer lists the imports; its SOA has the cluster zones' serial.
        let all = l.transfer(z, 0);
        assert_eq!(serial(&all[0]), 1_700_000_000);
        assert_eq!(
            text(&all[1..all.len() - 1]),
            [
                "hdls1.testns.svc.clusterset.local. 5 IN A 172.0.0.2",
                "172-0-0-2.hdls1.testns.svc.clusterset.local. 5 IN A 172.0.0.2",
                "_http._tcp.hdls1.testns.svc.clusterset.local. 5 IN SRV 0 100 80 172-0-0-2.hdls1.testns.svc.clusterset.local.",
                "hdls1.testns.svc.clusterset.local. 5 IN A 172.0.1.5",
                "web.hdls1.testns.svc.clusterset.local. 5 IN A 172.0.1.5",
                "_http._tcp.hdls1.testns.svc.clusterset.local. 5 IN SRV 0 100 80 web.hdls1.testns.svc.clusterset.local.",
                "noports.testns.svc.clusterset.local. 5 IN A 10.0.0.3",
                "svc-dual-stack.testns.svc.clusterset.local. 5 IN A 10.0.0.2",
                "svc-dual-stack.testns.svc.clusterset.local. 5 IN AAAA 10::2",
                "svc-dual-stack.testns.svc.clusterset.local. 5 IN SRV 0 100 80 svc-dual-stack.testns.svc.clusterset.local.",
                "_http._tcp.svc-dual-stack.testns.svc.clusterset.local. 5 IN SRV 0 100 80 svc-dual-stack.testns.svc.clusterset.local.",
                "svc1.testns.svc.clusterset.local. 5 IN A 10.0.0.1",
                "svc1.testns.svc.clusterset.local. 5 IN SRV 0 100 80 svc1.testns.svc.clusterset.local.",
                "_http._tcp.svc1.testns.svc.clusterset.local. 5 IN SRV 0 100 80 svc1.testns.svc.clusterset.local.",
            ]
        );
    });
}

/// CoreDNS's `detectChanges` for the MCS objects: an addition or deletion moves
/// the cluster zones' serial, an update the multicluster zones'.
#[test]
fn multicluster_changes() {
    use super::store::Change;
    let imp = |ports: serde_json::Value, version: &str| {
        let v = json!({"metadata": {"name": "s", "namespace": "n", "resourceVersion": version},
                       "spec": {"type": "ClusterSetIP", "ips": ["10.0.0.1"], "ports": ports}});
        convert(Kind::ServiceImports, &v, false).expect("import")
    };
    let Object::Import(i) = imp(json!([]), "1") else {
        panic!("import");
    };
    assert!(i.ports.is_empty(), "no placeholder port");
    let Object::Import(i) = imp(json!([{"protocol": "TCP"}, {"name": "h", "port": 80}]), "1")
    else {
        panic!("import");
    };
    assert_eq!(
        i.ports
            .iter()
            .map(|p| (p.name.as_str(), p.port))
            .collect::<Vec<_>>(),
        [("", 0), ("h", 80)],
        "ports as listed"
    );
    let mut o = Objects::default();
    assert_eq!(o.put("n/s".into(), imp(json!([]), "1")), Change::Modified);
    assert!(!o.mc_changed);
    // A new version without a visible change, then a port.
    assert_eq!(o.put("n/s".into(), imp(json!([]), "2")), Change::Same);
    assert!(!o.mc_changed);
    let p = json!([{"name": "http", "protocol": "TCP", "port": 80}]);
    assert_eq!(o.put("n/s".into(), imp(p, "3")), Change::Same);
    assert!(std::mem::take(&mut o.mc_changed));
    assert_eq!(o.remove(Kind::ServiceImports, "n/s"), Change::Modified);
    // An imported slice: its cluster is part of what answers show.
    let sl = |cluster: &str, version: &str| {
        let v = json!({"metadata": {"name": "x", "namespace": "n", "resourceVersion": version,
                                    "labels": {"multicluster.kubernetes.io/service-name": "s",
                                               "multicluster.kubernetes.io/source-cluster": cluster}},
                       "endpoints": [{"addresses": ["10.1.0.1"]}]});
        convert(Kind::McEndpoints, &v, false).expect("slice")
    };
    let Object::McEndpoints(m) = sl("c1", "1") else {
        panic!("slice");
    };
    assert_eq!((m.index.as_str(), m.cluster.as_str()), ("s.n", "c1"));
    assert_eq!(o.put("n/x".into(), sl("c1", "1")), Change::Modified);
    assert_eq!(o.put("n/x".into(), sl("c2", "2")), Change::Same);
    assert!(o.mc_changed);
}
