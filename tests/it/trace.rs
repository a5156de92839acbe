//! *trace*: the Zipkin v2 spans a traced query produces, POSTed to a stand-in
//! collector (an HTTP/1.1 listener here that records each request), on both
//! backends; DoH queries joining the trace of their B3 headers (curl).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::util::*;

/// A Zipkin collector stand-in: records each POST (head, body), answers `status`.
struct Collector {
    port: u16,
    posts: Arc<Mutex<Vec<(String, String)>>>,
    status: Arc<AtomicU16>,
    stop: Arc<AtomicBool>,
}

impl Collector {
    fn start() -> Self {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.set_nonblocking(true).expect("nonblocking");
        let port = l.local_addr().expect("addr").port();
        let posts = Arc::new(Mutex::new(Vec::new()));
        let status = Arc::new(AtomicU16::new(202));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, st, sp) = (Arc::clone(&posts), Arc::clone(&status), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !sp.load(Ordering::Relaxed) {
                let Ok((mut c, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let _ = c.set_nonblocking(false);
                let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let (head, body) = loop {
                    let Ok(n) = c.read(&mut chunk) else {
                        break (None, None);
                    };
                    if n == 0 {
                        break (None, None);
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + len {
                        let body =
                            String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned();
                        break (Some(head), Some(body));
                    }
                };
                if let (Some(h), Some(b)) = (head, body) {
                    p.lock().expect("lock").push((h, b));
                    let code = st.load(Ordering::Relaxed);
                    let _ = write!(
                        c,
                        "HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                }
            }
        });
        Self {
            port,
            posts,
            status,
            stop,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/api/v2/spans", self.port)
    }

    /// Every span received so far.
    fn spans(&self) -> Vec<Value> {
        let posts = self.posts.lock().expect("lock").clone();
        posts
            .iter()
            .flat_map(|(_, b)| {
                let v: Value = serde_json::from_str(b).expect("a JSON array");
                v.as_array().cloned().expect("array")
            })
            .collect()
    }

    /// Waits until `n` spans arrived and a little longer for any extra one;
    /// returns every span received.
    fn settle(&self, n: usize) -> Vec<Value> {
        if self.wait(n).len() == n {
            std::thread::sleep(Duration::from_millis(300));
        }
        self.spans()
    }

    /// Waits (up to 5 s) until `n` spans arrived; returns them.
    fn wait(&self, n: usize) -> Vec<Value> {
        wait_for(Duration::from_secs(5), || self.spans().len() >= n);
        self.spans()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn named<'a>(spans: &'a [Value], name: &str) -> Vec<&'a Value> {
    spans.iter().filter(|s| s["name"] == name).collect()
}

fn one<'a>(spans: &'a [Value], name: &str) -> &'a Value {
    let v = named(spans, name);
    assert_eq!(v.len(), 1, "{name} in {spans:#?}");
    v[0]
}

#[test]
fn trace_reports_spans_of_the_chain() {
    for be in backends() {
        let z = Collector::start();
        let up = TestServer::start(".:{port} {\n whoami\n}\n", be);
        let s = TestServer::start(
            &format!(
                ".:{{port}} {{\n bind 127.0.0.1\n metadata\n trace {} {{\n  zipkin_max_batch_interval 100ms\n }}\n log . \"T={{/trace/traceid}} {{name}}\"\n forward . 127.0.0.1:{}\n}}\n",
                z.url(),
                up.port
            ),
            be,
        );
        let out = s.dig(&["a.Example.", "A"]);
        assert_eq!(dig_status(&out), "NOERROR", "{be}: {out}");
        let spans = z.wait(4);
        assert_eq!(spans.len(), 4, "{be}: {spans:#?}");
        let (head, _) = z.posts.lock().expect("lock")[0].clone();
        assert!(head.starts_with("post /api/v2/spans http/1.1"), "{head}");
        assert!(head.contains("content-type: application/json"), "{head}");
        assert!(head.contains("\r\nb3: 0"), "{head}");

        let root = one(&spans, "servedns");
        let trace = root["traceId"].as_str().expect("traceId");
        assert_eq!(trace.len(), 16, "{root}");
        assert_eq!(root["id"], trace, "a root span's ID is its trace's");
        assert!(root.get("parentId").is_none(), "{root}");
        assert_eq!(root["kind"], "SERVER");
        assert_eq!(
            root["localEndpoint"],
            serde_json::json!({"serviceName": "coredns", "ipv4": "127.0.0.1", "port": s.port})
        );
        assert_eq!(
            root["tags"],
            serde_json::json!({
                "coredns.io/name": "a.example.",
                "coredns.io/proto": "udp",
                "coredns.io/rcode": "NOERROR",
                "coredns.io/remote": "127.0.0.1",
                "coredns.io/type": "A",
            })
        );
        assert!(root["timestamp"].as_i64().expect("timestamp") > 1_600_000_000_000_000);
        assert!(root["duration"].as_i64().expect("duration") >= 1);
        // Each plugin's span is the child of the one before; forward's attempt
        // is a `connect` span under forward's.
        let log = one(&spans, "log");
        let fwd = one(&spans, "forward");
        let conn = one(&spans, "connect");
        assert_eq!(log["parentId"], root["id"], "{be}");
        assert_eq!(fwd["parentId"], log["id"], "{be}");
        assert_eq!(conn["parentId"], fwd["id"], "{be}");
        assert_eq!(
            conn["tags"],
            serde_json::json!({"peer.address": format!("127.0.0.1:{}", up.port)})
        );
        for sp in [log, fwd, conn] {
            assert_eq!(sp["traceId"], trace, "{sp}");
            assert!(sp.get("kind").is_none() && sp.get("tags").is_none() || sp == conn);
        }
        // Children finish first and are no longer than their parents.
        let d = |v: &Value| v["duration"].as_i64().unwrap_or(0);
        assert!(
            d(conn) <= d(fwd) && d(fwd) <= d(log) && d(log) <= d(root),
            "{spans:#?}"
        );
        // trace/traceid reaches log through metadata.
        s.wait_line(|l| l.contains(&format!("T={trace} a.example.")))
            .unwrap_or_else(|| panic!("{be}: log line: {:?}", s.lines()));
    }
}

#[test]
fn trace_every_and_errors() {
    for be in backends() {
        let z = Collector::start();
        // Nothing after trace: CoreDNS's "no next plugin found" SERVFAIL.
        let s = TestServer::start(
            &format!(
                ".:{{port}} {{\n trace {} {{\n  every 2\n  service DNSproxy\n  zipkin_max_batch_interval 100ms\n }}\n}}\n",
                z.url()
            ),
            be,
        );
        for i in 0..4 {
            let out = s.dig(&[&format!("q{i}.example."), "TXT"]);
            assert_eq!(dig_status(&out), "SERVFAIL", "{be}: {out}");
        }
        let spans = z.settle(2);
        assert_eq!(spans.len(), 2, "{be}: every 2nd query: {spans:#?}");
        let names: Vec<&str> = spans
            .iter()
            .filter_map(|s| s["tags"]["coredns.io/name"].as_str())
            .collect();
        assert_eq!(names, ["q1.example.", "q3.example."], "{be}");
        let root = &spans[0];
        assert_eq!(
            root["localEndpoint"],
            serde_json::json!({"serviceName": "dnsproxy"})
        );
        assert_eq!(root["tags"]["coredns.io/rcode"], "SERVFAIL");
        assert_eq!(root["tags"]["coredns.io/type"], "TXT");
        assert_eq!(root["tags"]["error"], "true");
        let notes: Vec<&str> = root["annotations"]
            .as_array()
            .expect("annotations")
            .iter()
            .filter_map(|a| a["value"].as_str())
            .collect();
        assert_eq!(
            notes,
            [
                "event:error",
                "error.object:plugin/trace: no next plugin found"
            ],
            "{be}"
        );
    }
}

#[test]
fn trace_reporter_failures_are_logged_and_retried() {
    let be = backends()[0];
    let z = Collector::start();
    z.status.store(500, Ordering::Relaxed);
    let dead = free_port();
    let s = TestServer::start(
        &format!(
            ".:{{port}} {{\n trace {} {{\n  zipkin_max_batch_interval 100ms\n }}\n whoami\n}}\nexample.dead:{{port}} {{\n trace 127.0.0.1:{dead} {{\n  zipkin_max_batch_interval 100ms\n  zipkin_max_backlog_size 2\n }}\n whoami\n}}\n",
            z.url()
        ),
        be,
    );
    assert_eq!(dig_status(&s.dig(&["a.example.", "A"])), "NOERROR");
    s.wait_line(|l| l == "[WARNING] plugin/trace: failed the request with status code 500")
        .unwrap_or_else(|| panic!("{:?}", s.lines()));
    // A refused connection keeps the spans (up to the backlog) for the next send.
    for i in 0..3 {
        assert_eq!(
            dig_status(&s.dig(&[&format!("{i}.example.dead."), "A"])),
            "NOERROR"
        );
    }
    let want = format!(
        "[WARNING] plugin/trace: failed to send the request: Post \"http://127.0.0.1:{dead}/api/v2/spans\": dial tcp 127.0.0.1:{dead}: connect: connection refused"
    );
    s.wait_line(|l| l == want)
        .unwrap_or_else(|| panic!("{want}: {:?}", s.lines()));
    s.wait_line(|l| l == "[WARNING] plugin/trace: backlog too long, disposing 1 spans")
        .unwrap_or_else(|| panic!("{:?}", s.lines()));
    // zipkin-go's messages end in a newline; the log line does not repeat it.
    assert!(!s.lines().iter().any(String::is_empty), "{:?}", s.lines());
}

#[test]
fn trace_joins_doh_b3_context() {
    for be in backends() {
        let z = Collector::start();
        let certs = TempDir::new("trace-doh");
        let (c, k) = crate::tls::cert(&certs, "server", &["dns.example"]);
        let up = TestServer::start(".:{port} {\n whoami\n}\n", be);
        let s = TestServer::start(
            &format!(
                "https://.:{{port}} {{\n tls {c} {k}\n metadata\n trace {} {{\n  zipkin_max_batch_interval 100ms\n }}\n log . \"T={{/trace/traceid}} {{name}}\"\n forward . 127.0.0.1:{}\n}}\nhttps://shared.example:{{port}} {{\n tls {c} {k}\n trace {} {{\n  client_server\n  zipkin_max_batch_interval 100ms\n }}\n whoami\n}}\n",
                z.url(),
                up.port,
                z.url()
            ),
            be,
        );
        let base = format!("https://127.0.0.1:{}", s.port);
        let get = |name: &str, hdrs: &[&str]| {
            let (_, b64) = crate::tls::b64_query(name);
            let mut args = Vec::new();
            for h in hdrs {
                args.push("-H");
                args.push(*h);
            }
            let (st, head, _) = crate::tls::curl(&args, &format!("{base}/dns-query?dns={b64}"));
            assert_eq!(st, 200, "{be}: {head}");
        };
        let tid = "80f198ee56343ba864fe8b2a57d3eff7";
        get(
            "a.example.",
            &[
                &format!("X-B3-TraceId: {tid}"),
                "X-B3-SpanId: e457b5a2e4d86bd1",
                "X-B3-Sampled: 1",
            ],
        );
        // The single header, joined (client_server): the client's own span ID, shared.
        get(
            "b.shared.example.",
            &["b3: 64fe8b2a57d3eff7-e457b5a2e4d86bd2-1-05e3ac9a4f6e3b90"],
        );
        // Sampled 0: nothing is reported.
        get(
            "c.example.",
            &[
                "X-B3-TraceId: 0000000000000001",
                "X-B3-SpanId: 0000000000000002",
                "X-B3-Sampled: 0",
            ],
        );
        // Debug: reported, flagged on every span.
        get("d.example.", &["X-B3-Flags: 1"]);
        // a and d: servedns, log, forward, connect; b: servedns, whoami; c: none.
        let spans = z.settle(10);
        assert_eq!(spans.len(), 10, "{be}: {spans:#?}");
        let root = |name: &str| {
            spans
                .iter()
                .find(|s| s["name"] == "servedns" && s["tags"]["coredns.io/name"] == name)
                .unwrap_or_else(|| panic!("{be}: {name}: {spans:#?}"))
        };
        let a = root("a.example.");
        assert_eq!(a["traceId"], tid);
        assert_eq!(a["parentId"], "e457b5a2e4d86bd1");
        assert_ne!(a["id"], "e457b5a2e4d86bd1");
        assert!(a.get("shared").is_none());
        assert_eq!(a["tags"]["coredns.io/proto"], "tcp");
        let b = root("b.shared.example.");
        assert_eq!(b["traceId"], "64fe8b2a57d3eff7");
        assert_eq!(b["id"], "e457b5a2e4d86bd2");
        assert_eq!(b["parentId"], "05e3ac9a4f6e3b90");
        assert_eq!(b["shared"], true);
        let d = root("d.example.");
        assert_eq!(d["debug"], true);
        let log_d = spans
            .iter()
            .find(|s| s["name"] == "log" && s["traceId"] == d["traceId"])
            .expect("log span of d");
        assert_eq!(log_d["debug"], true);
        assert_eq!(log_d["parentId"], d["id"]);
        assert!(spans.iter().all(|s| s["traceId"] != "0000000000000001"));
        // An unsampled trace keeps its ID for metadata, also after forward parked it.
        s.wait_line(|l| l.ends_with("T=0000000000000001 c.example."))
            .unwrap_or_else(|| panic!("{be}: {:?}", s.lines()));
        s.wait_line(|l| l.ends_with(&format!("T={tid} a.example.")))
            .unwrap_or_else(|| panic!("{be}: {:?}", s.lines()));
    }
}

/// CoreDNS's *dns64* calls its next plugin without a span only when it takes
/// the query over (an AAAA it translates); otherwise the next plugin's span is
/// there as after any plugin.
#[test]
fn trace_spans_around_dns64() {
    for be in backends() {
        let z = Collector::start();
        let s = TestServer::start(
            &format!(
                ".:{{port}} {{\n trace {} {{\n  zipkin_max_batch_interval 100ms\n }}\n dns64 {{\n  allow_ipv4\n }}\n whoami\n}}\n",
                z.url()
            ),
            be,
        );
        assert_eq!(dig_status(&s.dig(&["a.example.", "A"])), "NOERROR");
        let spans = z.wait(3);
        assert_eq!(spans.len(), 3, "{be}: {spans:#?}");
        let (root, d64, who) = (
            one(&spans, "servedns"),
            one(&spans, "dns64"),
            one(&spans, "whoami"),
        );
        assert_eq!(d64["parentId"], root["id"]);
        assert_eq!(who["parentId"], d64["id"]);
        // A translated AAAA: dns64 asks whoami itself, with no span for it,
        // then looks the A records up through the server: that self-lookup
        // joins the trace (dns64 again, under the first, then whoami).
        assert_eq!(dig_status(&s.dig(&["b.example.", "AAAA"])), "NOERROR");
        let spans = z.settle(7);
        assert_eq!(spans.len(), 7, "{be}: {spans:#?}");
        let roots = named(&spans, "servedns");
        assert_eq!(
            roots.len(),
            2,
            "{be}: the self-lookup has no root: {spans:#?}"
        );
        let b = roots
            .iter()
            .find(|r| r["tags"]["coredns.io/name"] == "b.example.")
            .expect("b's root");
        assert_eq!(b["tags"]["coredns.io/type"], "AAAA");
        let of_b: Vec<&Value> = spans
            .iter()
            .filter(|s| s["traceId"] == b["traceId"] && s["name"] != "servedns")
            .collect();
        let outer = of_b
            .iter()
            .find(|s| s["name"] == "dns64" && s["parentId"] == b["id"])
            .unwrap_or_else(|| panic!("{be}: {of_b:#?}"));
        let inner = of_b
            .iter()
            .find(|s| s["name"] == "dns64" && s["parentId"] == outer["id"])
            .unwrap_or_else(|| panic!("{be}: {of_b:#?}"));
        let who = of_b
            .iter()
            .find(|s| s["name"] == "whoami")
            .unwrap_or_else(|| panic!("{be}: {of_b:#?}"));
        assert_eq!(who["parentId"], inner["id"], "{be}");
        assert_eq!(of_b.len(), 3, "{be}: {of_b:#?}");
    }
}

/// With *trace* on a `grpc://` listener, CoreDNS's gRPC server wraps every call
/// in a span named after the method (grpc-go's OpenTracing interceptor): the
/// query's plugins nest under it, whatever `every` says, and no `servedns`
/// span is made.
#[test]
fn trace_wraps_grpc_calls() {
    for be in backends() {
        let z = Collector::start();
        let s = TestServer::start(
            &format!(
                "grpc://.:{{port}} {{\n trace {} {{\n  every 1000\n  zipkin_max_batch_interval 100ms\n }}\n log\n whoami\n}}\n",
                z.url()
            ),
            be,
        );
        let q = crate::util::query(0x4242, "g.example.", 1, 1, None);
        let (st, _, _, _) = crate::tls::grpc_call(
            s.port,
            None,
            "/coredns.dns.DnsService/Query",
            "application/grpc",
            crate::tls::grpc_frame(&q),
        );
        assert_eq!(st, 200, "{be}");
        let spans = z.settle(3);
        assert_eq!(spans.len(), 3, "{be}: {spans:#?}");
        let call = one(&spans, "/coredns.dns.dnsservice/query");
        assert_eq!(call["kind"], "SERVER");
        assert_eq!(call["tags"], serde_json::json!({"component": "gRPC"}));
        assert!(call.get("parentId").is_none());
        // The server calls the first plugin (trace) itself: spans start at log.
        let log = one(&spans, "log");
        let who = one(&spans, "whoami");
        assert_eq!(log["parentId"], call["id"], "{be}");
        assert_eq!(who["parentId"], log["id"], "{be}");
        assert!(named(&spans, "servedns").is_empty());
    }
}
