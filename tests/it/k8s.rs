//! *kubernetes* against a stand-in API server: a small HTTP/1.1 server on
//! 127.0.0.1 that answers list requests from its objects and streams watch events
//! (chunked, one JSON object per line) as the test adds them, as the real API
//! server does. Queries with dig on both engines.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::util::*;

/// Objects by API path, and the watch events sent after the lists.
#[derive(Default)]
struct ApiState {
    lists: HashMap<String, Vec<String>>,
    events: Vec<(String, String)>,
    requests: Vec<String>,
    /// `Authorization` headers seen.
    auth: Vec<String>,
    /// Watches whose client is still connected.
    active: usize,
}

struct FakeApi {
    port: u16,
    state: Arc<Mutex<ApiState>>,
}

impl FakeApi {
    fn start(objects: &[(&str, &str)]) -> Self {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        let state = Self::state(objects);
        let st = Arc::clone(&state);
        std::thread::spawn(move || {
            for c in l.incoming().map_while(Result::ok) {
                let st = Arc::clone(&st);
                std::thread::spawn(move || serve(c, &st));
            }
        });
        Self { port, state }
    }

    /// The state holding `objects` (API path, JSON object).
    fn state(objects: &[(&str, &str)]) -> Arc<Mutex<ApiState>> {
        let mut st = ApiState::default();
        for (path, obj) in objects {
            st.lists
                .entry((*path).to_owned())
                .or_default()
                .push((*obj).to_owned());
        }
        Arc::new(Mutex::new(st))
    }

    /// The same over TLS with the certificate `cert`/`key` (PEM files).
    fn start_tls(objects: &[(&str, &str)], cert: &str, key: &str) -> Self {
        use rustls::pki_types::pem::PemObject;
        let certs: Vec<rustls::pki_types::CertificateDer<'static>> =
            rustls::pki_types::CertificateDer::pem_file_iter(cert)
                .expect("cert")
                .map(|c| c.expect("cert"))
                .collect();
        let key = rustls::pki_types::PrivateKeyDer::from_pem_file(key).expect("key");
        let cfg = Arc::new(
            rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("config"),
        );
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        let state = Self::state(objects);
        let st = Arc::clone(&state);
        std::thread::spawn(move || {
            for c in l.incoming().map_while(Result::ok) {
                let st = Arc::clone(&st);
                let cfg = Arc::clone(&cfg);
                std::thread::spawn(move || {
                    let Ok(conn) = rustls::ServerConnection::new(cfg) else {
                        return;
                    };
                    serve(rustls::StreamOwned::new(conn, c), &st);
                });
            }
        });
        Self { port, state }
    }

    /// Sends a watch event (`ADDED`, `MODIFIED`, `DELETED`) for `path`.
    fn event(&self, path: &str, typ: &str, obj: &str) {
        // One event per line, as the API server writes them.
        let obj = obj.replace('\n', " ");
        let line = format!("{{\"type\":\"{typ}\",\"object\":{obj}}}");
        self.state
            .lock()
            .expect("lock")
            .events
            .push((path.to_owned(), line));
    }

    fn requests(&self) -> Vec<String> {
        self.state.lock().expect("lock").requests.clone()
    }
}

/// The one label selector the stand-in evaluates: the MCS service-name label
/// exists (what *kubernetes* asks for imported EndpointSlices).
fn selected(query: &str, obj: &str) -> bool {
    !query.contains("labelSelector=multicluster.kubernetes.io%2Fservice-name")
        || obj.contains("\"multicluster.kubernetes.io/service-name\"")
}

fn serve<S: std::io::Read + Write>(c: S, st: &Mutex<ApiState>) {
    let mut r = BufReader::new(c);
    let mut line = String::new();
    if r.read_line(&mut line).is_err() {
        return;
    }
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
            break;
        }
        if let Some(v) = h
            .strip_prefix("authorization: ")
            .or_else(|| h.strip_prefix("Authorization: "))
        {
            st.lock().expect("lock").auth.push(v.trim().to_owned());
        }
    }
    let w = r.get_mut();
    let target = line.split(' ').nth(1).unwrap_or("").to_owned();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    st.lock().expect("lock").requests.push(target.clone());
    if query.contains("watch=true") {
        let _ = w.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        let mut sent = 0;
        st.lock().expect("lock").active += 1;
        let deadline = Instant::now() + Duration::from_secs(60);
        'watch: while Instant::now() < deadline {
            // A blank line (which clients skip) notices a client that went away.
            if w.write_all(b"1\r\n\n\r\n")
                .and_then(|()| w.flush())
                .is_err()
            {
                break;
            }
            let new: Vec<String> = {
                let g = st.lock().expect("lock");
                let mine: Vec<&(String, String)> = g
                    .events
                    .iter()
                    .filter(|(p, l)| p == path && selected(query, l))
                    .collect();
                mine[sent..].iter().map(|(_, l)| l.clone()).collect()
            };
            for l in new {
                sent += 1;
                let body = format!("{l}\n");
                if w.write_all(format!("{:x}\r\n{body}\r\n", body.len()).as_bytes())
                    .is_err()
                {
                    break 'watch;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        st.lock().expect("lock").active -= 1;
        let _ = w.write_all(b"0\r\n\r\n");
        return;
    }
    let items = st
        .lock()
        .expect("lock")
        .lists
        .get(path)
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|o| selected(query, o))
        .collect::<Vec<_>>();
    let body = format!(
        "{{\"kind\":\"List\",\"metadata\":{{\"resourceVersion\":\"100\"}},\"items\":[{}]}}",
        items.join(",")
    );
    let _ = w.write_all(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
}

const SVC: &str = "/api/v1/services";
const EPS: &str = "/apis/discovery.k8s.io/v1/endpointslices";
const NS: &str = "/api/v1/namespaces";

fn cluster() -> FakeApi {
    FakeApi::start(&[
        (
            NS,
            r#"{"metadata":{"name":"testns","resourceVersion":"1"}}"#,
        ),
        (
            SVC,
            r#"{"metadata":{"name":"svc1","namespace":"testns","resourceVersion":"2"},
                "spec":{"type":"ClusterIP","clusterIP":"10.0.0.1","clusterIPs":["10.0.0.1"],
                        "ports":[{"name":"http","protocol":"TCP","port":80}]}}"#,
        ),
        (
            SVC,
            r#"{"metadata":{"name":"hdls1","namespace":"testns","resourceVersion":"3"},
                "spec":{"clusterIP":"None","ports":[{"name":"http","protocol":"TCP","port":80}]}}"#,
        ),
        (
            SVC,
            r#"{"metadata":{"name":"external","namespace":"testns","resourceVersion":"4"},
                "spec":{"type":"ExternalName","externalName":"ext.example.org"}}"#,
        ),
        (
            EPS,
            r#"{"metadata":{"name":"hdls1-x1","namespace":"testns","resourceVersion":"5",
                            "labels":{"kubernetes.io/service-name":"hdls1"}},
                "addressType":"IPv4",
                "endpoints":[{"addresses":["172.17.0.2"],"conditions":{"ready":true}},
                             {"addresses":["172.17.0.3"],"hostname":"web-1","conditions":{"ready":true}},
                             {"addresses":["172.17.0.4"],"conditions":{"ready":false}}],
                "ports":[{"name":"http","protocol":"TCP","port":80}]}"#,
        ),
    ])
}

fn corefile(api: u16) -> String {
    format!(
        "cluster.local:{{port}} in-addr.arpa:{{port}} {{
 kubernetes cluster.local in-addr.arpa {{
  endpoint http://127.0.0.1:{api}
  pods insecure
  fallthrough in-addr.arpa
  ttl 30
 }}
 whoami
}}
example.org:{{port}} {{
 hosts {{
  192.0.2.7 ext.example.org
 }}
}}
"
    )
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn kubernetes_answers_from_the_api() {
    let api = cluster();
    for be in backends() {
        let mport = free_port();
        let s = TestServer::start(
            &corefile(api.port).replacen(
                " whoami",
                &format!(" prometheus 127.0.0.1:{mport}\n whoami"),
                1,
            ),
            be,
        );
        let (code, _, body) = http(mport, "GET", "/metrics").expect("metrics");
        assert_eq!(code, 200);
        let host = format!("127.0.0.1:{}", api.port);
        assert!(
            body.contains(&format!(
                "coredns_kubernetes_rest_client_requests_total{{code=\"200\",host=\"{host}\",method=\"GET\"}} "
            )),
            "{be}: {body}"
        );
        assert!(
            body.contains(&format!(
                "coredns_kubernetes_rest_client_request_duration_seconds_count{{host=\"{host}\",verb=\"GET\"}} "
            )),
            "{be}: {body}"
        );
        let out = s.dig(&["svc1.testns.svc.cluster.local", "A"]);
        assert_eq!(dig_status(&out), "NOERROR", "{be}: {out}");
        assert_eq!(dig_flags(&out), "qr aa rd", "{be}: {out}");
        assert_eq!(
            section(&out, "ANSWER"),
            ["svc1.testns.svc.cluster.local. 30 IN A 10.0.0.1"],
            "{be}: {out}"
        );
        // Over TCP, and the case of the query kept.
        let out = s.dig(&["+tcp", "SVC1.testns.svc.Cluster.Local", "A"]);
        assert_eq!(
            section(&out, "ANSWER"),
            ["SVC1.testns.svc.Cluster.Local. 30 IN A 10.0.0.1"],
            "{be}: {out}"
        );
        // Headless: the ready endpoints.
        let out = s.dig(&["hdls1.testns.svc.cluster.local", "A"]);
        assert_eq!(
            sorted(section(&out, "ANSWER")),
            [
                "hdls1.testns.svc.cluster.local. 30 IN A 172.17.0.2",
                "hdls1.testns.svc.cluster.local. 30 IN A 172.17.0.3"
            ],
            "{be}: {out}"
        );
        let out = s.dig(&["web-1.hdls1.testns.svc.cluster.local", "A"]);
        assert_eq!(
            section(&out, "ANSWER"),
            ["web-1.hdls1.testns.svc.cluster.local. 30 IN A 172.17.0.3"],
            "{be}: {out}"
        );
        // SRV with the address in additional.
        let out = s.dig(&["_http._tcp.svc1.testns.svc.cluster.local", "SRV"]);
        assert_eq!(
            section(&out, "ANSWER"),
            [
                "_http._tcp.svc1.testns.svc.cluster.local. 30 IN SRV 0 100 80 svc1.testns.svc.cluster.local."
            ],
            "{be}: {out}"
        );
        assert!(
            section(&out, "ADDITIONAL")
                .contains(&"svc1.testns.svc.cluster.local. 30 IN A 10.0.0.1".to_owned()),
            "{be}: {out}"
        );
        let out = s.dig(&["_http._tcp.hdls1.testns.svc.cluster.local", "SRV"]);
        assert_eq!(
            sorted(section(&out, "ANSWER")),
            [
                "_http._tcp.hdls1.testns.svc.cluster.local. 30 IN SRV 0 50 80 172-17-0-2.hdls1.testns.svc.cluster.local.",
                "_http._tcp.hdls1.testns.svc.cluster.local. 30 IN SRV 0 50 80 web-1.hdls1.testns.svc.cluster.local."
            ],
            "{be}: {out}"
        );
        // NXDOMAIN and NODATA with the SOA (TTL min(ttl, 300), minimum the ttl).
        let out = s.dig(&["missing.testns.svc.cluster.local", "A"]);
        assert_eq!(dig_status(&out), "NXDOMAIN", "{be}: {out}");
        let auth = section(&out, "AUTHORITY");
        assert_eq!(auth.len(), 1, "{be}: {out}");
        assert!(
            auth[0].starts_with(
                "cluster.local. 30 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. "
            ) && auth[0].ends_with(" 7200 1800 86400 30"),
            "{be}: {out}"
        );
        let out = s.dig(&["svc1.nosuchns.svc.cluster.local", "A"]);
        assert_eq!(dig_status(&out), "NXDOMAIN", "{be}: {out}");
        let out = s.dig(&["svc1.testns.svc.cluster.local", "AAAA"]);
        assert_eq!(dig_status(&out), "NOERROR", "{be}: {out}");
        assert!(section(&out, "ANSWER").is_empty(), "{be}: {out}");
        assert_eq!(section(&out, "AUTHORITY").len(), 1, "{be}: {out}");
        let out = s.dig(&["svc1.testns.svc.cluster.local", "MX"]);
        assert_eq!(dig_status(&out), "NOERROR", "{be}: {out}");
        // The schema version and the apex SOA.
        let out = s.dig(&["dns-version.cluster.local", "TXT"]);
        assert_eq!(
            section(&out, "ANSWER"),
            ["dns-version.cluster.local. 28800 IN TXT \"1.1.0\""],
            "{be}: {out}"
        );
        let out = s.dig(&["cluster.local", "SOA"]);
        assert_eq!(section(&out, "ANSWER").len(), 1, "{be}: {out}");
        // Pods, insecure: any address in a namespace that exists.
        let out = s.dig(&["10-1-2-3.testns.pod.cluster.local", "A"]);
        assert_eq!(
            section(&out, "ANSWER"),
            ["10-1-2-3.testns.pod.cluster.local. 30 IN A 10.1.2.3"],
            "{be}: {out}"
        );
        // PTR for a cluster IP and an endpoint; an unknown address falls through.
        let out = s.dig(&["-x", "10.0.0.1"]);
        assert_eq!(
            section(&out, "ANSWER"),
            ["1.0.0.10.in-addr.arpa. 30 IN PTR svc1.testns.svc.cluster.local."],
            "{be}: {out}"
        );
        let out = s.dig(&["-x", "172.17.0.3"]);
        assert_eq!(
            section(&out, "ANSWER"),
            ["3.0.17.172.in-addr.arpa. 30 IN PTR web-1.hdls1.testns.svc.cluster.local."],
            "{be}: {out}"
        );
        let out = s.dig(&["-x", "192.0.2.200"]);
        assert!(
            section(&out, "ADDITIONAL")
                .iter()
                .any(|l| l.starts_with("200.2.0.192.in-addr.arpa. 0 IN A 127.0.0.1")),
            "{be}: whoami answers after the fallthrough: {out}"
        );
        // ExternalName: the CNAME, and its target asked of the server (another block).
        let out = s.dig(&["external.testns.svc.cluster.local", "A"]);
        assert_eq!(
            section(&out, "ANSWER"),
            [
                "external.testns.svc.cluster.local. 30 IN CNAME ext.example.org.",
                "ext.example.org. 3600 IN A 192.0.2.7"
            ],
            "{be}: {out}"
        );
        let out = s.dig(&["+tcp", "external.testns.svc.cluster.local", "CNAME"]);
        assert_eq!(
            section(&out, "ANSWER"),
            ["external.testns.svc.cluster.local. 30 IN CNAME ext.example.org."],
            "{be}: {out}"
        );
        // Transfers are refused.
        let out = s.dig(&["+tcp", "cluster.local", "AXFR"]);
        assert!(
            out.contains("Transfer failed") || out.contains("REFUSED"),
            "{be}: {out}"
        );
    }
    // The lists and the watches carried resource versions as client-go's do.
    let reqs = api.requests();
    assert!(
        reqs.iter()
            .any(|r| r.starts_with("/api/v1/services?limit=500&resourceVersion=0")),
        "{reqs:?}"
    );
    assert!(
        reqs.iter().any(|r| r.starts_with(
            "/apis/discovery.k8s.io/v1/endpointslices?allowWatchBookmarks=true&resourceVersion=100&"
        )),
        "{reqs:?}"
    );
}

#[test]
fn kubernetes_follows_watch_events() {
    for be in backends() {
        // A stand-in API server per backend: its watches replay every event sent, and
        // another backend's EndpointSlice change would count in this one's latency.
        let api = cluster();
        let mport = free_port();
        let s = TestServer::start(
            &corefile(api.port).replacen(
                " whoami",
                &format!(" prometheus 127.0.0.1:{mport}\n whoami"),
                1,
            ),
            be,
        );
        let out = s.dig(&["svc2.testns.svc.cluster.local", "A"]);
        assert_eq!(dig_status(&out), "NXDOMAIN", "{be}: {out}");
        let serial = |out: &str| -> String {
            section(out, "AUTHORITY")
                .first()
                .and_then(|l| l.split(' ').nth(6).map(str::to_owned))
                .unwrap_or_default()
        };
        let before = serial(&out);
        std::thread::sleep(Duration::from_millis(1100));
        let name = format!("svc2-{be}");
        api.event(
            SVC,
            "ADDED",
            &format!(
                r#"{{"metadata":{{"name":"{name}","namespace":"testns","resourceVersion":"200"}},
                    "spec":{{"clusterIP":"10.0.0.2","ports":[{{"name":"dns","protocol":"UDP","port":53}}]}}}}"#
            ),
        );
        let q = format!("{name}.testns.svc.cluster.local");
        assert!(
            wait_for(Duration::from_secs(5), || {
                section(&s.dig(&[&q, "A"]), "ANSWER") == [format!("{q}. 30 IN A 10.0.0.2")]
            }),
            "{be}: the added service is answered: {:?} {:?}",
            api.requests(),
            s.lines()
        );
        let out = s.dig(&["missing.testns.svc.cluster.local", "A"]);
        assert_ne!(serial(&out), before, "{be}: the SOA serial moved: {out}");
        api.event(
            SVC,
            "DELETED",
            &format!(
                r#"{{"metadata":{{"name":"{name}","namespace":"testns","resourceVersion":"201"}}}}"#
            ),
        );
        assert!(
            wait_for(Duration::from_secs(5), || dig_status(&s.dig(&[&q, "A"]))
                == "NXDOMAIN"),
            "{be}: the deleted service is gone"
        );
        // An EndpointSlice change with its trigger time: the programming latency.
        api.event(
            EPS,
            "MODIFIED",
            &format!(
                r#"{{"metadata":{{"name":"svc1-{be}","namespace":"testns","resourceVersion":"300",
                     "labels":{{"kubernetes.io/service-name":"svc1"}},
                     "annotations":{{"endpoints.kubernetes.io/last-change-trigger-time":"2026-01-01T00:00:00.5Z"}}}},
                    "endpoints":[{{"addresses":["172.17.0.9"]}}],
                    "ports":[{{"name":"http","protocol":"TCP","port":80}}]}}"#
            ),
        );
        assert!(
            wait_for(Duration::from_secs(5), || {
                http(mport, "GET", "/metrics").is_some_and(|(_, _, b)| {
                    b.contains("coredns_kubernetes_dns_programming_duration_seconds_count{service_kind=\"cluster_ip\"} 1\n")
                })
            }),
            "{be}: {:?}",
            http(mport, "GET", "/metrics")
        );
    }
}

#[test]
fn kubernetes_unsynced_api() {
    // Nothing listens on the endpoint: startup waits `startup_timeout`, logs as
    // CoreDNS does, and answers SERVFAIL (with the SOA) instead of NXDOMAIN.
    let dead = free_port();
    for be in backends() {
        let rport = free_port();
        let s = TestServer::start(
            &format!(
                ".:{{port}} {{\n ready 127.0.0.1:{rport}\n kubernetes cluster.local {{\n  endpoint http://127.0.0.1:{dead}\n  startup_timeout 1s\n }}\n}}\n"
            ),
            be,
        );
        // Not ready while the API is not listed.
        let (code, _, _) = http(rport, "GET", "/ready").expect("ready");
        assert_eq!(code, 503, "{be}");
        assert!(
            s.wait_line(|l| l == "[INFO] plugin/ready: Plugins not ready: \"kubernetes\"")
                .is_some(),
            "{be}: {:?}",
            s.lines()
        );
        let lines = s.lines();
        assert!(
            lines.iter().any(|l| l
                == "[INFO] plugin/kubernetes: waiting for Kubernetes API before starting server"),
            "{be}: {lines:?}"
        );
        assert!(
            lines.iter().any(|l| l
                == "[WARNING] plugin/kubernetes: starting server with unsynced Kubernetes API"),
            "{be}: {lines:?}"
        );
        let out = s.dig(&["svc1.testns.svc.cluster.local", "A"]);
        assert_eq!(dig_status(&out), "SERVFAIL", "{be}: {out}");
        assert_eq!(section(&out, "AUTHORITY").len(), 1, "{be}: {out}");
        assert!(
            s.wait_line(|l| l.starts_with("[ERROR] plugin/kubernetes: Failed to watch *v1.Service: failed to list *v1.Service: Get \"http://127.0.0.1:"))
                .is_some(),
            "{be}: {:?}",
            s.lines()
        );
    }
}

#[test]
fn kubernetes_default_kubeadm_corefile() {
    // The kubeadm/kind default, with the API endpoint given (the in-cluster
    // service account does not exist here).
    let api = cluster();
    let dir = TempDir::new("k8s");
    let resolv = dir.write("resolv.conf", "nameserver 127.0.0.1\n");
    for be in backends() {
        let s = TestServer::start(
            &format!(
                ".:{{port}} {{
    errors
    health {{
       lameduck 5s
    }}
    ready 127.0.0.1:0
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
       endpoint http://127.0.0.1:{}
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }}
    prometheus 127.0.0.1:0
    forward . {} {{
       max_concurrent 1000
    }}
    cache 30 {{
       disable success cluster.local
       disable denial cluster.local
    }}
    loop
    reload
    loadbalance
}}
",
                api.port,
                resolv.display()
            )
            .replace(
                "health {\n       lameduck 5s\n    }",
                "health 127.0.0.1:0 {\n       lameduck 5s\n    }",
            ),
            be,
        );
        let out = s.dig(&["svc1.testns.svc.cluster.local", "A"]);
        assert_eq!(
            section(&out, "ANSWER"),
            ["svc1.testns.svc.cluster.local. 30 IN A 10.0.0.1"],
            "{be}: {out}"
        );
        let out = s.dig(&["missing.testns.svc.cluster.local", "A"]);
        assert_eq!(dig_status(&out), "NXDOMAIN", "{be}: {out}");
    }
}

#[test]
fn kubernetes_autopath_and_verified_pods() {
    // The client (127.0.0.1) is a pod in testns: `autopath @kubernetes` walks
    // testns.svc.cluster.local, svc.cluster.local, cluster.local, the host's
    // search list and the bare name; another client address is no pod.
    let api = cluster();
    api.state.lock().expect("lock").lists.insert(
        "/api/v1/pods".into(),
        vec![r#"{"metadata":{"name":"client","namespace":"testns","resourceVersion":"9","labels":{"app":"web","tier":"front"}},"status":{"podIP":"127.0.0.1"}}"#.into()],
    );
    for be in backends() {
        let s = TestServer::start(
            &format!(
                ".:{{port}} {{
 metadata
 log . \"META {{/kubernetes/namespace}} {{/kubernetes/service}} {{/kubernetes/kind}} {{/kubernetes/client-namespace}} {{/kubernetes/client-pod-name}} {{/kubernetes/client-label/app}} {{/kubernetes/client-label/tier}} {{/kubernetes/client-label/none}}\"
 autopath @kubernetes
 hosts {{
  192.0.2.9 web.example.org
  fallthrough
 }}
 kubernetes cluster.local {{
  endpoint http://127.0.0.1:{}
  pods verified
 }}
}}
",
                api.port
            ),
            be,
        );
        let out = s.dig(&["127-0-0-1.testns.pod.cluster.local", "A"]);
        assert_eq!(
            section(&out, "ANSWER"),
            ["127-0-0-1.testns.pod.cluster.local. 5 IN A 127.0.0.1"],
            "{be}: {out}"
        );
        let out = s.dig(&["10-9-9-9.testns.pod.cluster.local", "A"]);
        assert_eq!(dig_status(&out), "NXDOMAIN", "{be}: {out}");
        // A short name the client's resolver expanded with its first search domain.
        let out = s.dig(&["svc1.testns.svc.cluster.local", "A"]);
        assert_eq!(
            section(&out, "ANSWER"),
            ["svc1.testns.svc.cluster.local. 5 IN A 10.0.0.1"],
            "{be}: {out}"
        );
        // *metadata* with *kubernetes*: the name's parts and the client pod.
        assert!(
            s.wait_line(|l| l == "[INFO] META testns svc1 svc testns client web front -")
                .is_some(),
            "{be}: {:?}",
            s.lines()
        );
        let out = s.dig(&["web.example.org.testns.svc.cluster.local", "A"]);
        assert_eq!(dig_status(&out), "NOERROR", "{be}: {out}");
        assert_eq!(
            section(&out, "ANSWER"),
            [
                "web.example.org.testns.svc.cluster.local. 3600 IN CNAME web.example.org.",
                "web.example.org. 3600 IN A 192.0.2.9"
            ],
            "{be}: {out}"
        );
        // From an address no pod has, the name is looked up as it is.
        let out = s.dig(&[
            "-b",
            "127.0.0.2",
            "web.example.org.testns.svc.cluster.local",
            "A",
        ]);
        assert_eq!(dig_status(&out), "NXDOMAIN", "{be}: {out}");
    }
}

#[test]
fn k8s_external_answers() {
    let api = cluster();
    {
        let mut st = api.state.lock().expect("lock");
        let svcs = st.lists.entry(SVC.into()).or_default();
        svcs.push(
            r#"{"metadata":{"name":"lb","namespace":"testns","resourceVersion":"20"},
                "spec":{"type":"LoadBalancer","clusterIP":"10.0.0.20","externalIPs":["192.0.2.100"],
                        "ports":[{"name":"http","protocol":"TCP","port":80}]}}"#
                .into(),
        );
        svcs.push(
            r#"{"metadata":{"name":"lbh","namespace":"testns","resourceVersion":"21"},
                "spec":{"type":"LoadBalancer","clusterIP":"10.0.0.21",
                        "ports":[{"name":"http","protocol":"TCP","port":80}]},
                "status":{"loadBalancer":{"ingress":[{"hostname":"lb.example.org"}]}}}"#
                .into(),
        );
    }
    for be in backends() {
        let s = TestServer::start(
            &format!(
                "cluster.local:{{port}} example.com:{{port}} {{
 k8s_external example.com
 kubernetes cluster.local {{
  endpoint http://127.0.0.1:{}
 }}
}}
example.org:{{port}} {{
 hosts {{
  192.0.2.8 lb.example.org
 }}
}}
",
                api.port
            ),
            be,
        );
        let out = s.dig(&["lb.testns.example.com", "A"]);
        assert_eq!(dig_flags(&out), "qr aa rd", "{be}: {out}");
        assert_eq!(
            section(&out, "ANSWER"),
            ["lb.testns.example.com. 5 IN A 192.0.2.100"],
            "{be}: {out}"
        );
        let out = s.dig(&["_http._tcp.lb.testns.example.com", "SRV"]);
        assert_eq!(
            section(&out, "ANSWER"),
            ["_http._tcp.lb.testns.example.com. 5 IN SRV 0 100 80 lb.testns.example.com."],
            "{be}: {out}"
        );
        assert!(
            section(&out, "ADDITIONAL")
                .contains(&"lb.testns.example.com. 5 IN A 192.0.2.100".to_owned()),
            "{be}: {out}"
        );
        // A load balancer's host name: the CNAME and its target from the server.
        let out = s.dig(&["+tcp", "lbh.testns.example.com", "A"]);
        assert_eq!(
            section(&out, "ANSWER"),
            [
                "lbh.testns.example.com. 5 IN CNAME lb.example.org.",
                "lb.example.org. 3600 IN A 192.0.2.8"
            ],
            "{be}: {out}"
        );
        // No external IP, or no such service: NXDOMAIN with the external SOA.
        for name in [
            "svc1.testns.example.com",
            "missing.testns.example.com",
            "lb.nons.example.com",
        ] {
            let out = s.dig(&[name, "A"]);
            assert_eq!(dig_status(&out), "NXDOMAIN", "{be}: {out}");
            let auth = section(&out, "AUTHORITY");
            assert!(
                auth.len() == 1
                    && auth[0].starts_with(
                        "example.com. 5 IN SOA ns1.dns.example.com. hostmaster.dns.example.com. "
                    )
                    && auth[0].ends_with(" 7200 1800 86400 5"),
                "{be}: {out}"
            );
        }
        let out = s.dig(&["lb.testns.example.com", "TXT"]);
        assert_eq!(dig_status(&out), "NOERROR", "{be}: {out}");
        assert_eq!(section(&out, "AUTHORITY").len(), 1, "{be}: {out}");
        // The apex and the names under its `dns` label.
        let out = s.dig(&["example.com", "NS"]);
        assert_eq!(
            section(&out, "ANSWER"),
            ["example.com. 5 IN NS ns1.dns.example.com."],
            "{be}: {out}"
        );
        let out = s.dig(&["example.com", "SOA"]);
        assert_eq!(section(&out, "ANSWER").len(), 1, "{be}: {out}");
        let out = s.dig(&["dns.example.com", "A"]);
        assert_eq!(dig_status(&out), "NOERROR", "{be}: {out}");
        assert_eq!(section(&out, "AUTHORITY").len(), 1, "{be}: {out}");
        let out = s.dig(&["x.y.dns.example.com", "A"]);
        assert_eq!(dig_status(&out), "NXDOMAIN", "{be}: {out}");
        // The cluster zone is still *kubernetes*'.
        let out = s.dig(&["lb.testns.svc.cluster.local", "A"]);
        assert_eq!(
            section(&out, "ANSWER"),
            ["lb.testns.svc.cluster.local. 5 IN A 10.0.0.20"],
            "{be}: {out}"
        );
    }
    // Without *kubernetes* in the block, startup fails as CoreDNS's does.
    let dir = TempDir::new("k8sx");
    let conf = dir.write(
        "Corefile",
        &format!(
            ".:{} {{\n k8s_external example.com\n whoami\n}}\n",
            free_port()
        ),
    );
    let out = std::process::Command::new(bin())
        .arg("-conf")
        .arg(&conf)
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("plugin/k8s_external: kubernetes plugin not loaded"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn kubernetes_kubeconfig() {
    // The API server and a bearer token from a kubeconfig (context given), which
    // takes precedence over `endpoint`.
    let api = cluster();
    let dir = TempDir::new("kcfg");
    let kc = dir.write(
        "config",
        &format!(
            "apiVersion: v1
kind: Config
current-context: wrong
clusters:
- name: fake
  cluster:
    server: http://127.0.0.1:{}
contexts:
- name: test   # the one used
  context:
    cluster: fake
    user: bot
users:
- name: bot
  user:
    token: \"s3cret\"
",
            api.port
        ),
    );
    for be in backends() {
        let s = TestServer::start(
            &format!(
                ".:{{port}} {{\n kubernetes cluster.local {{\n  endpoint http://127.0.0.1:1\n  kubeconfig {} test\n }}\n}}\n",
                kc.display()
            ),
            be,
        );
        let out = s.dig(&["svc1.testns.svc.cluster.local", "A"]);
        assert_eq!(
            section(&out, "ANSWER"),
            ["svc1.testns.svc.cluster.local. 5 IN A 10.0.0.1"],
            "{be}: {out}"
        );
    }
    // Over plain HTTP no credentials are sent (clientcmd reads the user's
    // identification only for a TLS transport).
    let auth = api.state.lock().expect("lock").auth.clone();
    assert!(auth.is_empty(), "{auth:?}");
}

/// Standard base64 (with padding), for kubeconfig `*-data` fields.
fn b64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for ch in data.chunks(3) {
        let n = (u32::from(ch[0]) << 16)
            | (u32::from(*ch.get(1).unwrap_or(&0)) << 8)
            | u32::from(*ch.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= ch.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn kubernetes_over_tls() {
    // The API over HTTPS: `endpoint https://...` with `tls CERT KEY CA`, and a
    // kubeconfig with the CA inline; a wrong CA fails every request.
    let dir = TempDir::new("k8stls");
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).expect("cert");
    let cert = dir.write("api.pem", &ck.cert.pem());
    let key = dir.write("api-key.pem", &ck.signing_key.serialize_pem());
    let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).expect("cert");
    let wrong = dir.write("wrong.pem", &other.cert.pem());
    let objs = [
        (NS, r#"{"metadata":{"name":"testns"}}"#),
        (
            SVC,
            r#"{"metadata":{"name":"svc1","namespace":"testns"},"spec":{"clusterIP":"10.0.0.1","ports":[{"port":80}]}}"#,
        ),
    ];
    let api = FakeApi::start_tls(&objs, &cert.to_string_lossy(), &key.to_string_lossy());
    let kc = dir.write(
        "config",
        &format!(
            "clusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:{}\n    certificate-authority-data: {}\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\ncurrent-context: x\nusers:\n- name: u\n  user:\n    token: tls-token\n",
            api.port,
            b64(ck.cert.pem().as_bytes())
        ),
    );
    let insecure = dir.write(
        "insecure",
        &format!(
            "clusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:{}\n    insecure-skip-tls-verify: true\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\ncurrent-context: x\nusers:\n- name: u\n  user:\n    token: tls-token\n",
            api.port
        ),
    );
    for be in backends() {
        for opts in [
            format!(
                "endpoint https://127.0.0.1:{}\n  tls {} {} {}",
                api.port,
                cert.display(),
                key.display(),
                cert.display()
            ),
            format!("kubeconfig {}", kc.display()),
            // No CA: `insecure-skip-tls-verify` accepts the server's certificate.
            format!("kubeconfig {}", insecure.display()),
        ] {
            let s = TestServer::start(
                &format!(".:{{port}} {{\n kubernetes cluster.local {{\n  {opts}\n }}\n}}\n"),
                be,
            );
            let out = s.dig(&["svc1.testns.svc.cluster.local", "A"]);
            assert_eq!(
                section(&out, "ANSWER"),
                ["svc1.testns.svc.cluster.local. 5 IN A 10.0.0.1"],
                "{be} {opts}: {out}"
            );
        }
        let s = TestServer::start(
            &format!(
                ".:{{port}} {{\n kubernetes cluster.local {{\n  endpoint https://127.0.0.1:{}\n  tls {} {} {}\n  startup_timeout 500ms\n }}\n}}\n",
                api.port,
                cert.display(),
                key.display(),
                wrong.display()
            ),
            be,
        );
        assert_eq!(
            dig_status(&s.dig(&["svc1.testns.svc.cluster.local", "A"])),
            "SERVFAIL",
            "{be}"
        );
        assert!(
            s.wait_line(|l| l.starts_with("[ERROR] plugin/kubernetes: Failed to watch *v1.Service: failed to list *v1.Service: Get \"https://127.0.0.1:")
                && l.contains("x509"))
                .is_some(),
            "{be}: {:?}",
            s.lines()
        );
    }
    // The kubeconfig's token went to the TLS server.
    let auth = api.state.lock().expect("lock").auth.clone();
    assert!(auth.iter().any(|a| a == "Bearer tls-token"), "{auth:?}");
}

#[test]
fn kubernetes_reload() {
    // A reload builds a new plugin with its own lists and watches, and the old
    // one's watches end (the stand-in counts connected watch clients).
    let api = cluster();
    for be in backends() {
        let s = TestServer::start(&corefile(api.port), be);
        let out = s.dig(&["svc1.testns.svc.cluster.local", "A"]);
        assert_eq!(
            section(&out, "ANSWER"),
            ["svc1.testns.svc.cluster.local. 30 IN A 10.0.0.1"],
            "{be}: {out}"
        );
        let lists = |api: &FakeApi| {
            api.requests()
                .iter()
                .filter(|r| r.starts_with("/api/v1/services?limit=500"))
                .count()
        };
        let active = || api.state.lock().expect("lock").active;
        // Services, EndpointSlices and namespaces (an earlier server's are gone).
        assert!(
            wait_for(Duration::from_secs(5), || active() == 3),
            "{be}: {}",
            active()
        );
        let before = lists(&api);
        let text = corefile(api.port)
            .replace("ttl 30", "ttl 40")
            .replace("{port}", &s.port.to_string());
        std::fs::write(s.dir.0.join("Corefile"), text).expect("write");
        s.signal(nix::sys::signal::Signal::SIGUSR1);
        assert!(
            wait_for(Duration::from_secs(10), || {
                section(&s.dig(&["svc1.testns.svc.cluster.local", "A"]), "ANSWER")
                    == ["svc1.testns.svc.cluster.local. 40 IN A 10.0.0.1"]
            }),
            "{be}: the new configuration answers: {:?}",
            s.lines()
        );
        assert_eq!(lists(&api), before + 1, "{be}: one new list");
        // The old configuration's watches ended.
        assert!(
            wait_for(Duration::from_secs(5), || active() == 3),
            "{be}: {}",
            active()
        );
    }
}

/// `zonal`: zone-scoped names of a headless service answer from its
/// EndpointSlices' zones, followed through a watch event; `kubernetes/zone`
/// reaches *log* through *metadata*.
#[test]
fn kubernetes_zonal_names() {
    for be in backends() {
        let api = FakeApi::start(&[
            (NS, r#"{"metadata":{"name":"prod","resourceVersion":"1"}}"#),
            (
                SVC,
                r#"{"metadata":{"name":"db","namespace":"prod","resourceVersion":"2"},
                    "spec":{"clusterIP":"None","ports":[{"name":"pg","protocol":"TCP","port":5432}]}}"#,
            ),
            (
                EPS,
                r#"{"metadata":{"name":"db-a","namespace":"prod","resourceVersion":"3",
                                "labels":{"kubernetes.io/service-name":"db"}},
                    "addressType":"IPv4",
                    "endpoints":[{"addresses":["10.1.0.1"],"zone":"us-west-2a"},
                                 {"addresses":["10.1.0.2"],"zone":"US-West-2b"}],
                    "ports":[{"name":"pg","protocol":"TCP","port":5432}]}"#,
            ),
        ]);
        let s = TestServer::start(
            &format!(
                "cluster.local:{{port}} {{
 metadata
 log . \"Z={{/kubernetes/zone}} {{name}} {{rcode}}\"
 kubernetes cluster.local {{
  endpoint http://127.0.0.1:{}
  zonal
 }}
}}
",
                api.port
            ),
            be,
        );
        let q = "us-west-2a.pin._zone.db.prod.svc.cluster.local";
        let out = s.dig(&[q, "A"]);
        assert_eq!(
            section(&out, "ANSWER"),
            [format!("{q}. 5 IN A 10.1.0.1")],
            "{be}: {out}"
        );
        let q = "us-west-2b.pin._zone.db.prod.svc.cluster.local";
        let out = s.dig(&[q, "SRV"]);
        assert_eq!(
            section(&out, "ANSWER"),
            [format!(
                "{q}. 5 IN SRV 0 100 5432 10-1-0-2.db.prod.svc.cluster.local."
            )],
            "{be}: {out}"
        );
        // A drained zone: NODATA for pin (with the SOA), everything for prefer.
        let q = "eu-1.pin._zone.db.prod.svc.cluster.local";
        let out = s.dig(&[q, "A"]);
        assert_eq!(dig_status(&out), "NOERROR", "{be}: {out}");
        assert!(section(&out, "ANSWER").is_empty(), "{be}: {out}");
        assert_eq!(section(&out, "AUTHORITY").len(), 1, "{be}: {out}");
        let q = "eu-1.prefer._zone.db.prod.svc.cluster.local";
        assert_eq!(
            sorted(section(&s.dig(&[q, "A"]), "ANSWER")),
            [
                format!("{q}. 5 IN A 10.1.0.1"),
                format!("{q}. 5 IN A 10.1.0.2")
            ],
            "{be}"
        );
        let out = s.dig(&["us-west-2a.pin._zone.nosuch.prod.svc.cluster.local", "A"]);
        assert_eq!(dig_status(&out), "NXDOMAIN", "{be}: {out}");
        s.wait_line(|l| {
            l.ends_with("Z=us-west-2a us-west-2a.pin._zone.db.prod.svc.cluster.local. NOERROR")
        })
        .unwrap_or_else(|| panic!("{be}: {:?}", s.lines()));
        s.wait_line(|l| {
            l.ends_with("Z=us-west-2a us-west-2a.pin._zone.nosuch.prod.svc.cluster.local. NXDOMAIN")
        })
        .unwrap_or_else(|| panic!("{be}: {:?}", s.lines()));
        // A plain name: the label is empty.
        assert_eq!(
            section(&s.dig(&["db.prod.svc.cluster.local", "A"]), "ANSWER").len(),
            2
        );
        s.wait_line(|l| l.ends_with("Z= db.prod.svc.cluster.local. NOERROR"))
            .unwrap_or_else(|| panic!("{be}: {:?}", s.lines()));
        // An endpoint moves zone: the answers follow the watch.
        api.event(
            EPS,
            "MODIFIED",
            r#"{"metadata":{"name":"db-a","namespace":"prod","resourceVersion":"9",
                            "labels":{"kubernetes.io/service-name":"db"}},
                "addressType":"IPv4",
                "endpoints":[{"addresses":["10.1.0.1"],"zone":"eu-1"},
                             {"addresses":["10.1.0.2"],"zone":"us-west-2b"}],
                "ports":[{"name":"pg","protocol":"TCP","port":5432}]}"#,
        );
        let q = "eu-1.pin._zone.db.prod.svc.cluster.local";
        assert!(
            wait_for(Duration::from_secs(5), || {
                section(&s.dig(&[q, "A"]), "ANSWER") == [format!("{q}. 5 IN A 10.1.0.1")]
            }),
            "{be}: the zone change is followed"
        );
    }
}

/// The records of dig's or kdig's transfer output, single-spaced.
fn xfr_records(out: &str) -> Vec<String> {
    out.lines()
        .filter(|l| !l.is_empty() && !l.starts_with(';'))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

/// *transfer* with *kubernetes* as its source (CoreDNS's xfr.go): AXFR of the
/// cluster zone lists every service, IXFR with the current serial gets the SOA
/// alone, and both are logged as CoreDNS logs them.
#[test]
fn kubernetes_zone_transfer() {
    let api = cluster();
    for be in backends() {
        let s = TestServer::start(
            &corefile(api.port).replacen(" kubernetes", " transfer {\n  to *\n }\n kubernetes", 1),
            be,
        );
        let out = s.dig(&["cluster.local", "AXFR"]);
        let recs = xfr_records(&out);
        assert!(recs.len() > 2, "{be}: {out}");
        let soa = &recs[0];
        assert!(
            soa.starts_with(
                "cluster.local. 30 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. "
            ) && soa.ends_with(" 7200 1800 86400 30"),
            "{be}: {soa}"
        );
        assert_eq!(&recs[recs.len() - 1], soa, "{be}");
        // The apex NS records and their addresses depend on this machine's
        // interfaces: NS records only when there are addresses, at TTL 0.
        let (apex, rest): (Vec<&String>, Vec<&String>) = recs[1..recs.len() - 1]
            .iter()
            .partition(|r| r.starts_with("cluster.local. 30 IN NS ") || r.starts_with("ns.dns."));
        let ns = apex.iter().filter(|r| r.contains(" IN NS ")).count();
        assert_eq!(ns > 0, apex.len() > ns, "{be}: {apex:?}");
        for a in apex.iter().filter(|r| !r.contains(" IN NS ")) {
            assert!(a.starts_with("ns.dns.cluster.local. 0 IN A"), "{be}: {a}");
        }
        assert_eq!(
            rest,
            [
                "external.testns.svc.cluster.local. 30 IN CNAME ext.example.org.",
                "hdls1.testns.svc.cluster.local. 30 IN A 172.17.0.2",
                "172-17-0-2.hdls1.testns.svc.cluster.local. 30 IN A 172.17.0.2",
                "_http._tcp.hdls1.testns.svc.cluster.local. 30 IN SRV 0 50 80 172-17-0-2.hdls1.testns.svc.cluster.local.",
                "hdls1.testns.svc.cluster.local. 30 IN A 172.17.0.3",
                "web-1.hdls1.testns.svc.cluster.local. 30 IN A 172.17.0.3",
                "_http._tcp.hdls1.testns.svc.cluster.local. 30 IN SRV 0 50 80 web-1.hdls1.testns.svc.cluster.local.",
                "svc1.testns.svc.cluster.local. 30 IN A 10.0.0.1",
                "svc1.testns.svc.cluster.local. 30 IN SRV 0 100 80 svc1.testns.svc.cluster.local.",
                "_http._tcp.svc1.testns.svc.cluster.local. 30 IN SRV 0 100 80 svc1.testns.svc.cluster.local.",
            ],
            "{be}: {out}"
        );
        let serial = soa.split(' ').nth(6).expect("serial").to_owned();
        let want = format!(
            "[INFO] plugin/transfer: Outgoing transfer of {} records of zone \"cluster.local.\" to 127.0.0.1 for {serial} SOA serial",
            recs.len()
        );
        assert!(
            s.wait_line(|l| l == want).is_some(),
            "{be}: {:?}",
            s.lines()
        );
        // kdig reads the same stream; IXFR from the current serial: the SOA
        // alone; from an older one: everything.
        let out = s.kdig(&["cluster.local", "AXFR"]);
        assert!(out.contains(";; Received"), "{be}: {out}");
        let out = s.kdig(&["cluster.local", &format!("IXFR={serial}")]);
        let got = xfr_records(&out);
        assert_eq!(got.len(), 1, "{be}: {out}");
        assert!(got[0].contains(" SOA "), "{be}: {out}");
        let want = format!(
            "[INFO] plugin/transfer: Outgoing noop, incremental transfer for up to date zone \"cluster.local.\" to 127.0.0.1 for {serial} SOA serial"
        );
        assert!(
            s.wait_line(|l| l == want).is_some(),
            "{be}: {:?}",
            s.lines()
        );
        let out = s.dig(&["cluster.local", "IXFR=1"]);
        assert_eq!(xfr_records(&out).len(), recs.len(), "{be}: {out}");
        // Without *transfer* *kubernetes* refuses a transfer (plugins.md).
        let plain = TestServer::start(&corefile(api.port), be);
        let out = plain.dig(&["+tcp", "cluster.local", "AXFR"]);
        assert!(
            out.contains("Transfer failed") || out.contains("REFUSED"),
            "{be}: {out}"
        );
    }
}

const IMPORTS: &str = "/apis/multicluster.x-k8s.io/v1alpha1/serviceimports";

/// `multicluster`: names in the cluster-set zone answer from ServiceImports and
/// the imported EndpointSlices of every cluster, the cluster zone from
/// Services; the cluster-set SOA serial is 0 until an import is updated (as in
/// CoreDNS); an AXFR lists the imports.
#[test]
fn kubernetes_multicluster() {
    for be in backends() {
        let api = FakeApi::start(&[
            (
                NS,
                r#"{"metadata":{"name":"testns","resourceVersion":"1"}}"#,
            ),
            (
                SVC,
                r#"{"metadata":{"name":"svc1","namespace":"testns","resourceVersion":"2"},
                    "spec":{"clusterIP":"10.0.0.1","ports":[{"name":"http","protocol":"TCP","port":80}]}}"#,
            ),
            (
                IMPORTS,
                r#"{"metadata":{"name":"svc1","namespace":"testns","resourceVersion":"3"},
                    "spec":{"type":"ClusterSetIP","ips":["10.1.0.1"],
                            "ports":[{"name":"http","protocol":"TCP","port":80}]}}"#,
            ),
            (
                IMPORTS,
                r#"{"metadata":{"name":"hdls","namespace":"testns","resourceVersion":"4"},
                    "spec":{"type":"Headless"}}"#,
            ),
            (
                EPS,
                r#"{"metadata":{"name":"hdls-c1","namespace":"testns","resourceVersion":"5",
                                "labels":{"multicluster.kubernetes.io/service-name":"hdls",
                                          "multicluster.kubernetes.io/source-cluster":"cluster1"}},
                    "addressType":"IPv4",
                    "endpoints":[{"addresses":["172.18.0.2"],"hostname":"a"}],
                    "ports":[{"name":"http","protocol":"TCP","port":80}]}"#,
            ),
            (
                EPS,
                r#"{"metadata":{"name":"hdls-c2","namespace":"testns","resourceVersion":"6",
                                "labels":{"multicluster.kubernetes.io/service-name":"hdls",
                                          "multicluster.kubernetes.io/source-cluster":"cluster2"}},
                    "addressType":"IPv4",
                    "endpoints":[{"addresses":["172.18.0.3"]}],
                    "ports":[{"name":"http","protocol":"TCP","port":80}]}"#,
            ),
        ]);
        let s = TestServer::start(
            &format!(
                "cluster.local:{{port}} clusterset.local:{{port}} {{
 transfer {{
  to *
 }}
 kubernetes cluster.local clusterset.local {{
  endpoint http://127.0.0.1:{}
  multicluster clusterset.local
 }}
}}
",
                api.port
            ),
            be,
        );
        let a = |q: &str, t: &str| sorted(section(&s.dig(&[q, t]), "ANSWER"));
        assert_eq!(
            a("svc1.testns.svc.clusterset.local", "A"),
            ["svc1.testns.svc.clusterset.local. 5 IN A 10.1.0.1"],
            "{be}"
        );
        assert_eq!(
            a("svc1.testns.svc.cluster.local", "A"),
            ["svc1.testns.svc.cluster.local. 5 IN A 10.0.0.1"],
            "{be}"
        );
        assert_eq!(
            a("hdls.testns.svc.clusterset.local", "A"),
            [
                "hdls.testns.svc.clusterset.local. 5 IN A 172.18.0.2",
                "hdls.testns.svc.clusterset.local. 5 IN A 172.18.0.3"
            ],
            "{be}"
        );
        assert_eq!(
            a("a.cluster1.hdls.testns.svc.clusterset.local", "A"),
            ["a.cluster1.hdls.testns.svc.clusterset.local. 5 IN A 172.18.0.2"],
            "{be}"
        );
        let out = s.dig(&["_http._tcp.hdls.testns.svc.clusterset.local", "SRV"]);
        assert_eq!(
            sorted(section(&out, "ANSWER")),
            [
                "_http._tcp.hdls.testns.svc.clusterset.local. 5 IN SRV 0 50 80 172-18-0-3.cluster2.hdls.testns.svc.clusterset.local.",
                "_http._tcp.hdls.testns.svc.clusterset.local. 5 IN SRV 0 50 80 a.cluster1.hdls.testns.svc.clusterset.local."
            ],
            "{be}: {out}"
        );
        // The imported slices are not the cluster zone's endpoints.
        let out = s.dig(&["hdls.testns.svc.cluster.local", "A"]);
        assert_eq!(dig_status(&out), "NXDOMAIN", "{be}: {out}");
        // The cluster-set SOA serial: 0 until an import is updated.
        let soa = |z: &str| section(&s.dig(&[z, "SOA"]), "ANSWER");
        assert_eq!(
            soa("clusterset.local"),
            [
                "clusterset.local. 5 IN SOA ns.dns.clusterset.local. hostmaster.clusterset.local. 0 7200 1800 86400 5"
            ],
            "{be}"
        );
        assert_ne!(soa("cluster.local")[0].split(' ').nth(6), Some("0"), "{be}");
        // A transfer of the cluster-set zone lists the imports.
        let out = s.dig(&["clusterset.local", "AXFR"]);
        let recs: Vec<String> = xfr_records(&out)
            .into_iter()
            .filter(|l| !l.contains(" IN NS ") && !l.starts_with("ns.dns."))
            .collect();
        assert_eq!(
            recs[1..recs.len() - 1],
            [
                "hdls.testns.svc.clusterset.local. 5 IN A 172.18.0.2",
                "a.hdls.testns.svc.clusterset.local. 5 IN A 172.18.0.2",
                "_http._tcp.hdls.testns.svc.clusterset.local. 5 IN SRV 0 100 80 a.hdls.testns.svc.clusterset.local.",
                "hdls.testns.svc.clusterset.local. 5 IN A 172.18.0.3",
                "172-18-0-3.hdls.testns.svc.clusterset.local. 5 IN A 172.18.0.3",
                "_http._tcp.hdls.testns.svc.clusterset.local. 5 IN SRV 0 100 80 172-18-0-3.hdls.testns.svc.clusterset.local.",
                "svc1.testns.svc.clusterset.local. 5 IN A 10.1.0.1",
                "svc1.testns.svc.clusterset.local. 5 IN SRV 0 100 80 svc1.testns.svc.clusterset.local.",
                "_http._tcp.svc1.testns.svc.clusterset.local. 5 IN SRV 0 100 80 svc1.testns.svc.clusterset.local.",
            ],
            "{be}: {out}"
        );
        // An import updated (a port) moves the cluster-set serial; a new one answers.
        api.event(
            IMPORTS,
            "MODIFIED",
            r#"{"metadata":{"name":"svc1","namespace":"testns","resourceVersion":"7"},
                "spec":{"type":"ClusterSetIP","ips":["10.1.0.1"],
                        "ports":[{"name":"https","protocol":"TCP","port":443}]}}"#,
        );
        api.event(
            IMPORTS,
            "ADDED",
            r#"{"metadata":{"name":"svc2","namespace":"testns","resourceVersion":"8"},
                "spec":{"type":"ClusterSetIP","ips":["10.1.0.2"],
                        "ports":[{"name":"http","protocol":"TCP","port":80}]}}"#,
        );
        assert!(
            wait_for(Duration::from_secs(5), || {
                a("svc2.testns.svc.clusterset.local", "A")
                    == ["svc2.testns.svc.clusterset.local. 5 IN A 10.1.0.2"]
            }),
            "{be}"
        );
        assert_ne!(
            soa("clusterset.local")[0].split(' ').nth(6),
            Some("0"),
            "{be}"
        );
        let out = s.dig(&["_https._tcp.svc1.testns.svc.clusterset.local", "SRV"]);
        assert_eq!(
            section(&out, "ANSWER"),
            [
                "_https._tcp.svc1.testns.svc.clusterset.local. 5 IN SRV 0 100 443 svc1.testns.svc.clusterset.local."
            ],
            "{be}: {out}"
        );
        // What was asked of the API server: the imports, and the slices with
        // the MCS label.
        let reqs = api.requests();
        assert!(
            reqs.iter().any(|r| r.starts_with(IMPORTS)),
            "{be}: {reqs:?}"
        );
        assert!(
            reqs.iter().any(|r| r.starts_with(EPS)
                && r.contains("labelSelector=multicluster.kubernetes.io%2Fservice-name")),
            "{be}: {reqs:?}"
        );
    }
}

/// A kubeconfig's `exec` credential plugin (client-go's): run once with
/// `KUBERNETES_EXEC_INFO` (the cluster with `provideClusterInfo`) and its env,
/// its token sent as the bearer token and kept while it has no expiry; a
/// failing plugin's error is the request's.
#[test]
fn kubernetes_exec_credentials() {
    let dir = TempDir::new("k8sexec");
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).expect("cert");
    let cert = dir.write("api.pem", &ck.cert.pem());
    let key = dir.write("api-key.pem", &ck.signing_key.serialize_pem());
    let objs = [
        (NS, r#"{"metadata":{"name":"testns"}}"#),
        (
            SVC,
            r#"{"metadata":{"name":"svc1","namespace":"testns"},"spec":{"clusterIP":"10.0.0.1","ports":[{"port":80}]}}"#,
        ),
    ];
    let api = FakeApi::start_tls(&objs, &cert.to_string_lossy(), &key.to_string_lossy());
    let runs = dir.0.join("runs");
    let info = dir.0.join("info");
    let script = dir.write(
        "plugin.sh",
        &format!(
            "#!/bin/sh\necho run >> {}\nprintf '%s\\n%s\\n' \"$KUBERNETES_EXEC_INFO\" \"$GREETING $1\" > {}\n\
             echo '{{\"kind\":\"ExecCredential\",\"apiVersion\":\"client.authentication.k8s.io/v1\",\"status\":{{\"token\":\"exec-tok\"}}}}'\n",
            runs.display(),
            info.display()
        ),
    );
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let kubeconfig = |command: &str| {
        format!(
            "clusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:{}\n    certificate-authority-data: {}\n\
             contexts:\n- name: x\n  context:\n    cluster: c\n    user: u\ncurrent-context: x\n\
             users:\n- name: u\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: {command}\n\
             \x20     args:\n      - world\n      env:\n      - name: GREETING\n        value: hello\n      interactiveMode: Never\n      provideClusterInfo: true\n",
            api.port,
            b64(ck.cert.pem().as_bytes())
        )
    };
    let good = dir.write("good", &kubeconfig("./plugin.sh"));
    let bad = dir.write("bad", &kubeconfig("/bin/false"));
    for be in backends() {
        let _ = std::fs::remove_file(&runs);
        let s = TestServer::start(
            &format!(
                ".:{{port}} {{\n kubernetes cluster.local {{\n  kubeconfig {}\n }}\n}}\n",
                good.display()
            ),
            be,
        );
        let out = s.dig(&["svc1.testns.svc.cluster.local", "A"]);
        assert_eq!(
            section(&out, "ANSWER"),
            ["svc1.testns.svc.cluster.local. 5 IN A 10.0.0.1"],
            "{be}: {out}"
        );
        let auth = api.state.lock().expect("lock").auth.clone();
        assert!(!auth.is_empty(), "{be}");
        assert!(
            auth.iter().all(|a| a == "Bearer exec-tok"),
            "{be}: {auth:?}"
        );
        // One run for every list and watch: the token has no expiry.
        let ran = std::fs::read_to_string(&runs).expect("runs");
        assert_eq!(ran.lines().count(), 1, "{be}: {ran}");
        let got = std::fs::read_to_string(&info).expect("info");
        assert!(
            got.starts_with(&format!(
                "{{\"kind\":\"ExecCredential\",\"apiVersion\":\"client.authentication.k8s.io/v1\",\"spec\":{{\"cluster\":{{\"server\":\"https://127.0.0.1:{}\",\"certificate-authority-data\":\"",
                api.port
            )) && got.contains("\",\"config\":null},\"interactive\":false}}\n\nhello world\n"),
            "{be}: {got}"
        );
        api.state.lock().expect("lock").auth.clear();
        // A plugin that fails: the requests fail with its error.
        let s = TestServer::start(
            &format!(
                ".:{{port}} {{\n kubernetes cluster.local {{\n  kubeconfig {}\n  startup_timeout 500ms\n }}\n}}\n",
                bad.display()
            ),
            be,
        );
        assert_eq!(
            dig_status(&s.dig(&["svc1.testns.svc.cluster.local", "A"])),
            "SERVFAIL",
            "{be}"
        );
        assert!(
            s.wait_line(|l| l.starts_with("[ERROR] plugin/kubernetes: Failed to watch *v1.Service: failed to list *v1.Service: Get \"https://127.0.0.1:")
                && l.ends_with("getting credentials: exec: executable /bin/false failed with exit code 1"))
                .is_some(),
            "{be}: {:?}",
            s.lines()
        );
    }
}
