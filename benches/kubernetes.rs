//! *kubernetes*: the time to answer one query from a cluster's snapshot (2,000
//! services in 100 namespaces, each with an EndpointSlice of 3 endpoints, and
//! 200 headless services of 5 endpoints), for the lookups cluster DNS sees most:
//! a ClusterIP service (A), a headless service, a service's SRV, a name that
//! does not exist (the search-path misses every pod sends first), and the PTR
//! of a ClusterIP.

use std::collections::HashSet;
use std::hint::black_box;
use std::net::IpAddr;

use criterion::{Criterion, criterion_group, criterion_main};
use ringdns::plugins::kubernetes::answer::{Lookup, Params, PodMode, Rr, Upstream};
use ringdns::plugins::kubernetes::store::{Kind, Objects, convert, key_of};
use serde_json::json;

struct NoUp;
impl Upstream for NoUp {
    fn lookup(&mut self, _: &str, _: u16) -> Option<(Vec<Rr>, bool)> {
        None
    }
}

fn cluster() -> Objects {
    let mut o = Objects::default();
    let mut put = |kind: Kind, v: serde_json::Value| {
        let obj = convert(kind, &v, false).expect("object");
        o.put(key_of(&v), obj);
    };
    for n in 0..100 {
        put(
            Kind::Namespaces,
            json!({"metadata": {"name": format!("ns{n}")}}),
        );
    }
    for i in 0..2200u32 {
        let ns = format!("ns{}", i % 100);
        let name = format!("svc{i}");
        let headless = i >= 2000;
        let ip = format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255);
        put(
            Kind::Services,
            json!({"metadata": {"name": name, "namespace": ns, "resourceVersion": "1"},
                   "spec": {"clusterIP": if headless { "None".to_owned() } else { ip.clone() },
                            "clusterIPs": if headless { vec![] } else { vec![ip] },
                            "ports": [{"name": "http", "protocol": "TCP", "port": 80}]}}),
        );
        let n_ep = if headless { 5 } else { 3 };
        let eps: Vec<serde_json::Value> = (0..n_ep)
            .map(|e| {
                json!({"addresses": [format!("172.{}.{}.{}", i >> 8, i & 255, e + 1)],
                       "conditions": {"ready": true}})
            })
            .collect();
        put(
            Kind::Endpoints,
            json!({"metadata": {"name": format!("{name}-abcde"), "namespace": ns,
                                "labels": {"kubernetes.io/service-name": name}},
                   "addressType": "IPv4", "endpoints": eps,
                   "ports": [{"name": "http", "protocol": "TCP", "port": 80}]}),
        );
    }
    o
}

fn bench(c: &mut Criterion) {
    let snap = cluster().snapshot(true, [1_700_000_000, 1_700_000_001, 1_700_000_002]);
    let ns = HashSet::new();
    let local: Vec<IpAddr> = Vec::new();
    let p = Params {
        primary_zone: "cluster.local.",
        namespaces: &ns,
        pods: PodMode::Disabled,
        endpoint_pod_names: false,
        ignore_empty_service: false,
        ttl: 5,
        local_ips: &local,
        zonal: false,
        multicluster: &[],
    };
    let l = Lookup { snap: &snap, p: &p };
    let z = "cluster.local.";
    let mut g = c.benchmark_group("kubernetes");
    let a = "svc1234.ns34.svc.cluster.local.";
    assert_eq!(
        l.address(a, a, z, 1, &[], &mut NoUp).map(|r| r.0.len()),
        Ok(1)
    );
    g.bench_function("A clusterIP", |b| {
        b.iter(|| black_box(l.address(black_box(a), a, z, 1, &[], &mut NoUp)));
    });
    let h = "svc2050.ns50.svc.cluster.local.";
    assert_eq!(
        l.address(h, h, z, 1, &[], &mut NoUp).map(|r| r.0.len()),
        Ok(5)
    );
    g.bench_function("A headless", |b| {
        b.iter(|| black_box(l.address(black_box(h), h, z, 1, &[], &mut NoUp)));
    });
    let s = "_http._tcp.svc1234.ns34.svc.cluster.local.";
    g.bench_function("SRV", |b| {
        b.iter(|| black_box(l.srv(black_box(s), s, z)));
    });
    let miss = "svc1234.ns34.svc.cluster.local.ns34.svc.cluster.local.";
    assert!(l.address(miss, miss, z, 1, &[], &mut NoUp).is_err());
    g.bench_function("NXDOMAIN search-path miss", |b| {
        b.iter(|| black_box(l.address(black_box(miss), miss, z, 1, &[], &mut NoUp)));
    });
    g.bench_function("NXDOMAIN search-path miss with its SOA", |b| {
        b.iter(|| {
            black_box(
                l.address(black_box(miss), miss, z, 1, &[], &mut NoUp)
                    .is_err(),
            );
            black_box(l.soa(z))
        });
    });
    let ptr = "210.4.0.10.in-addr.arpa.";
    g.bench_function("PTR clusterIP", |b| {
        b.iter(|| black_box(l.ptr(black_box(ptr), ptr, "in-addr.arpa.")));
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
