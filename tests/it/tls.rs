//! `tls://` listeners (DNS over TLS) with the *tls* plugin, on both backends, with
//! `kdig +tls` and `dig +tls` as clients.

use std::process::Command;
use std::sync::Arc;

use nix::sys::signal::Signal;

use crate::util::*;

/// A self-signed certificate and its key, written as `NAME.pem` and `NAME-key.pem`.
pub(crate) fn cert(dir: &TempDir, name: &str, sans: &[&str]) -> (String, String) {
    let sans: Vec<String> = sans.iter().map(|s| (*s).to_owned()).collect();
    let ck = rcgen::generate_simple_self_signed(sans).expect("cert");
    let c = dir.write(&format!("{name}.pem"), &ck.cert.pem());
    let k = dir.write(&format!("{name}-key.pem"), &ck.signing_key.serialize_pem());
    (
        c.to_string_lossy().into_owned(),
        k.to_string_lossy().into_owned(),
    )
}

/// `kdig +tls` against `port`, with extra options.
fn kdig_tls(port: u16, opts: &[&str], name: &str) -> String {
    let out = Command::new("kdig")
        .arg("@127.0.0.1")
        .arg("-p")
        .arg(port.to_string())
        .args(["+time=2", "+retry=0", "+tls"])
        .args(opts)
        .args([name, "A"])
        .output()
        .expect("kdig (install knot-dnsutils)");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn dot_answers_kdig_and_dig() {
    for be in backends() {
        let certs = TempDir::new("dot");
        let (c, k) = cert(&certs, "server", &["dns.example"]);
        let keylog = certs.0.join("keys.log").to_string_lossy().into_owned();
        let mport = free_port();
        let s = TestServer::start(
            &format!(
                "tls://.:{{port}} {{\n tls {c} {k} {{\n  keylog {keylog}\n }}\n log\n prometheus 127.0.0.1:{mport}\n whoami\n}}\n"
            ),
            be,
        );
        let lines = s.lines();
        assert!(
            lines.contains(&format!(
                "[WARNING] plugin/tls: Writing TLS Key Log to \"{keylog}\""
            )),
            "{be}: {lines:?}"
        );
        assert!(
            lines.contains(&format!("tls://.:{}", s.port)),
            "{be}: banner {lines:?}"
        );
        // kdig, verifying the server's certificate against it as the CA.
        let ca = format!("+tls-ca={c}");
        let out = kdig_tls(s.port, &[&ca, "+tls-hostname=dns.example"], "example.org");
        assert!(out.contains("status: NOERROR"), "{be}: {out}");
        assert!(out.contains(";; TLS session (TLS1.3)"), "{be}: {out}");
        let add = section(&out, "ADDITIONAL");
        assert_eq!(
            add.first().map(String::as_str),
            Some("example.org. 0 IN A 127.0.0.1"),
            "{be}: {out}"
        );
        // whoami sees a TCP client (CoreDNS counts DoT as tcp).
        assert!(
            add.get(1)
                .is_some_and(|l| l.starts_with("_tcp.example.org. 0 IN SRV 0 0 ")),
            "{be}: {out}"
        );
        // A wrong name fails the client's verification: the certificate is the one given.
        let out = kdig_tls(s.port, &[&ca, "+tls-hostname=other.example"], "example.org");
        assert!(!out.contains("status: NOERROR"), "{be}: {out}");
        // dig +tls (BIND 9.18), without verification.
        let out = s.dig(&["+tls", "example.net", "A"]);
        assert_eq!(dig_status(&out), "NOERROR", "{be}: {out}");
        // Plain TCP on a TLS listener gets nothing.
        let out = s.dig(&["+tcp", "example.com", "A"]);
        assert_eq!(dig_status(&out), "", "{be}: {out}");
        // The log line says tcp; the metrics carry the listener's label.
        let logged = s
            .wait_line(|l| l.contains("\"A IN example.net. tcp "))
            .expect("log line");
        assert!(logged.starts_with("[INFO] 127.0.0.1:"), "{be}: {logged}");
        assert!(logged.contains(" NOERROR qr,aa,rd "), "{be}: {logged}");
        let (_, _, body) = http(mport, "GET", "/metrics").expect("metrics");
        let want = format!(
            "coredns_dns_requests_total{{family=\"1\",proto=\"tcp\",server=\"tls://:{}\",type=\"A\",view=\"\",zone=\".\"}} 2",
            s.port
        );
        assert!(
            body.lines().any(|l| l == want),
            "{be}: {want} not in\n{body}"
        );
        // The key log has the TLS 1.3 secrets of those sessions, in NSS format.
        let log = std::fs::read_to_string(&keylog).expect("keylog");
        let secrets: Vec<&str> = log
            .lines()
            .filter(|l| l.starts_with("CLIENT_HANDSHAKE_TRAFFIC_SECRET "))
            .collect();
        assert!(secrets.len() >= 2, "{be}: {log}");
        // Go's KeyLogWriter never sees the exporter secret.
        assert!(!log.contains("EXPORTER_SECRET"), "{be}: {log}");
        for l in secrets {
            let f: Vec<&str> = l.split(' ').collect();
            assert_eq!(f.len(), 3, "{l}");
            assert_eq!(f[1].len(), 64, "{l}");
            assert!(f[1].bytes().all(|b| b.is_ascii_hexdigit()), "{l}");
        }
    }
}

#[test]
fn dot_without_tls_plugin_is_plain_tcp() {
    for be in backends() {
        let s = TestServer::start("tls://.:{port} {\n whoami\n}\n", be);
        let out = s.dig(&["+tcp", "example.org", "A"]);
        assert_eq!(dig_status(&out), "NOERROR", "{be}: {out}");
        // No UDP on a tls:// listener.
        let out = s.dig(&["+notcp", "example.org", "A"]);
        assert_eq!(dig_status(&out), "", "{be}: {out}");
    }
}

#[test]
fn dot_client_auth_modes() {
    let certs = TempDir::new("dot-auth");
    let (c, k) = cert(&certs, "server", &["dns.example"]);
    let (good, good_key) = cert(&certs, "client", &["client.example"]);
    let (bad, bad_key) = cert(&certs, "stranger", &["stranger.example"]);
    let with = |cert: &str, key: &str| {
        vec![
            format!("+tls-certfile={cert}"),
            format!("+tls-keyfile={key}"),
        ]
    };
    let clients: [(&str, Vec<String>); 3] = [
        ("none", Vec::new()),
        ("trusted", with(&good, &good_key)),
        ("untrusted", with(&bad, &bad_key)),
    ];
    // mode → whether (no cert, trusted cert, untrusted cert) get an answer.
    let modes: [(&str, [bool; 3]); 5] = [
        ("nocert", [true, true, true]),
        ("request", [true, true, true]),
        ("require", [false, true, true]),
        ("verify_if_given", [true, true, false]),
        ("require_and_verify", [false, true, false]),
    ];
    for be in backends() {
        for (mode, want) in modes {
            // The client's own certificate is the CA that verifies it.
            let s = TestServer::start(
                &format!(
                    "tls://.:{{port}} {{\n tls {c} {k} {good} {{\n  client_auth {mode}\n }}\n whoami\n}}\n"
                ),
                be,
            );
            for ((who, opts), ok) in clients.iter().zip(want) {
                let opts: Vec<&str> = opts.iter().map(String::as_str).collect();
                let out = kdig_tls(s.port, &opts, "example.org");
                assert_eq!(
                    out.contains("status: NOERROR"),
                    ok,
                    "{be} {mode} {who}: {out}"
                );
            }
        }
    }
}

#[test]
fn reload_adds_a_dot_listener() {
    for be in backends() {
        let certs = TempDir::new("dot-reload");
        let (c, k) = cert(&certs, "server", &["dns.example"]);
        let s = TestServer::start(".:{port} {\n whoami\n}\n", be);
        let tport = free_port();
        let conf = s.dir.0.join("Corefile");
        std::fs::write(
            &conf,
            format!(
                ".:{} {{\n whoami\n}}\ntls://.:{tport} {{\n tls {c} {k}\n whoami\n}}\n",
                s.port
            ),
        )
        .expect("write");
        s.signal(Signal::SIGUSR1);
        s.wait_line(|l| l == "[INFO] Reloading complete")
            .expect("reloaded");
        let out = kdig_tls(tport, &[], "example.org");
        assert!(out.contains("status: NOERROR"), "{be}: {out}");
        let out = s.dig(&["example.org", "A"]);
        assert_eq!(dig_status(&out), "NOERROR", "{be}: {out}");
    }
}

/// `curl` against `url`: (status, headers lowercased, body).
pub(crate) fn curl(args: &[&str], url: &str) -> (u16, String, Vec<u8>) {
    let out = Command::new("curl")
        .args([
            "-s",
            "-k",
            "--max-time",
            "3",
            "-D",
            "/dev/stderr",
            "-o",
            "-",
        ])
        .args(args)
        .arg(url)
        .output()
        .expect("curl");
    let head = String::from_utf8_lossy(&out.stderr).to_lowercase();
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head, out.stdout)
}

/// `b` in base64url without padding (as a DoH GET carries it).
fn b64url(b: &[u8]) -> String {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut s = String::new();
    for chunk in b.chunks(3) {
        let n = chunk.iter().fold(0u32, |a, b| (a << 8) | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            s.push(alphabet[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    s
}

/// A query for `name` (type A, RD) in wire format, and in base64url.
pub(crate) fn b64_query(name: &str) -> (Vec<u8>, String) {
    let q = query(0x1234, name, 1, 1, None);
    let s = b64url(&q);
    (q, s)
}

#[test]
fn doh_answers_kdig_and_curl() {
    for be in backends() {
        let certs = TempDir::new("doh");
        let (c, k) = cert(&certs, "server", &["dns.example"]);
        let mport = free_port();
        let s = TestServer::start(
            &format!(
                "https://drop.test:{{port}} {{\n tls {c} {k}\n acl {{\n  drop\n }}\n}}\nhttps://.:{{port}} {{\n tls {c} {k}\n log\n prometheus 127.0.0.1:{mport}\n hosts {{\n  10.0.0.1 h.example\n  ttl 300\n  fallthrough\n }}\n whoami\n}}\n"
            ),
            be,
        );
        assert!(
            s.lines().contains(&format!("https://.:{}", s.port)),
            "{be}: banner {:?}",
            s.lines()
        );
        // kdig over HTTP/2, POST and GET, verifying the certificate.
        let ca = format!("+tls-ca={c}");
        for how in ["+https", "+https-get"] {
            let out = kdig_tls(
                s.port,
                &[&ca, "+tls-hostname=dns.example", how],
                "h.example",
            );
            assert!(out.contains("status: 200"), "{be} {how}: {out}");
            assert!(out.contains("status: NOERROR"), "{be} {how}: {out}");
            assert_eq!(
                section(&out, "ANSWER"),
                ["h.example. 300 IN A 10.0.0.1"],
                "{be} {how}: {out}"
            );
        }
        let base = format!("https://127.0.0.1:{}", s.port);
        let (q, b64) = b64_query("h.example.");
        // curl over HTTP/1.1: the headers CoreDNS writes; max-age is the minimal TTL.
        let (st, head, body) = curl(&["--http1.1"], &format!("{base}/dns-query?dns={b64}"));
        assert_eq!(st, 200, "{be}: {head}");
        assert!(
            head.contains("content-type: application/dns-message"),
            "{head}"
        );
        assert!(head.contains("cache-control: max-age=300"), "{head}");
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        assert_eq!(
            &body[..2],
            &q[..2],
            "{be}: the reply carries the query's ID"
        );
        assert_eq!(body[3] & 0x0f, 0, "{be}: NOERROR");
        // POST with the message as the body.
        let qfile = certs.write("q.bin", "");
        std::fs::write(&qfile, &q).expect("write");
        let data = format!("@{}", qfile.display());
        let (st, head, body) = curl(
            &[
                "--http1.1",
                "-H",
                "content-type: application/dns-message",
                "--data-binary",
                &data,
            ],
            &format!("{base}/dns-query"),
        );
        assert_eq!(st, 200, "{be}: {head}");
        assert_eq!(&body[..2], &q[..2], "{be}");
        // CoreDNS's error statuses and texts.
        let (st, head, body) = curl(&[], &format!("{base}/resolve?dns={b64}"));
        assert_eq!((st, body.as_slice()), (404, &b"\n"[..]), "{be}: {head}");
        assert!(
            head.contains("content-type: text/plain; charset=utf-8"),
            "{head}"
        );
        assert!(head.contains("x-content-type-options: nosniff"), "{head}");
        let bad_requests = [
            (vec!["-X", "PUT"], format!("{base}/dns-query?dns={b64}")),
            (vec![], format!("{base}/dns-query")),
            (vec![], format!("{base}/dns-query?dns={b64}&dns={b64}")),
            (vec![], format!("{base}/dns-query?dns={b64}=")),
            (vec![], format!("{base}/dns-query?dns=AAAA")),
        ];
        for (args, url) in &bad_requests {
            let (st, head, body) = curl(args, url);
            assert_eq!(
                (st, body.as_slice()),
                (400, &b"invalid request\n"[..]),
                "{be} {url}: {head}"
            );
        }
        // A response (QR set) is refused, as miekg's accept filter refuses it.
        let mut resp = q.clone();
        resp[2] |= 0x80;
        std::fs::write(&qfile, &resp).expect("write");
        let (st, _, _) = curl(&["--data-binary", &data], &format!("{base}/dns-query"));
        assert_eq!(st, 400, "{be}");
        // Plain HTTP on the TLS port: Go's answer.
        let (st, _, body) = curl(
            &[],
            &format!("http://127.0.0.1:{}/dns-query?dns={b64}", s.port),
        );
        assert_eq!(st, 400, "{be}");
        assert_eq!(
            body, b"Client sent an HTTP request to an HTTPS server.\n",
            "{be}"
        );
        // A GET whose `dns` value is far above HTTP/2's usual 16 KiB header limit (a
        // 20,000-octet padding option), as Go's 1 MiB allows.
        let pad = vec![0u8; 20_000];
        let mut opt = vec![0, 12];
        opt.extend_from_slice(&(pad.len() as u16).to_be_bytes());
        opt.extend_from_slice(&pad);
        let big = query(0x2222, "h.example.", 1, 1, Some((4096, 0, &opt)));
        let big64 = b64url(&big);
        let (st, head, body) = curl(&["--http2"], &format!("{base}/dns-query?dns={big64}"));
        assert_eq!(st, 200, "{be}: {head}");
        assert!(head.starts_with("http/2 200"), "{be}: {head}");
        assert_eq!(&body[..2], &[0x22, 0x22], "{be}");
        // No reply from the chain (acl drop): 500.
        let (_, dropped) = b64_query("x.drop.test.");
        let (st, head, body) = curl(&[], &format!("{base}/dns-query?dns={dropped}"));
        assert_eq!(
            (st, body.as_slice()),
            (500, &b"No response\n"[..]),
            "{be}: {head}"
        );
        // The log says tcp; the responses are counted per status.
        s.wait_line(|l| l.contains("\"A IN h.example. tcp "))
            .expect("log line");
        let (_, _, metrics) = http(mport, "GET", "/metrics").expect("metrics");
        for (status, n) in [(200, 5), (400, 6), (404, 1), (500, 1)] {
            let want = format!(
                "coredns_dns_https_responses_total{{server=\"https://:{}\",status=\"{status}\"}} {n}",
                s.port
            );
            assert!(
                metrics.lines().any(|l| l == want),
                "{be}: {want} not in\n{metrics}"
            );
        }
    }
}

#[test]
fn doh_without_tls_is_plain_http1_and_limits_connections() {
    for be in backends() {
        let s = TestServer::start(
            "https://.:{port} {\n https {\n  max_connections 1\n }\n whoami\n}\n",
            be,
        );
        let base = format!("http://127.0.0.1:{}", s.port);
        let (_, b64) = b64_query("example.org.");
        let url = format!("{base}/dns-query?dns={b64}");
        let (st, head, _) = curl(&[], &url);
        assert_eq!(st, 200, "{be}: {head}");
        // No cleartext HTTP/2, as Go's server.
        let (st, _, _) = curl(&["--http2-prior-knowledge"], &url);
        assert_ne!(st, 200, "{be}");
        // One connection held open: the next waits unserved until it closes.
        let held = std::net::TcpStream::connect(s.addr()).expect("connect");
        std::thread::sleep(std::time::Duration::from_millis(200));
        let (st, _, _) = curl(&["--max-time", "1"], &url);
        assert_eq!(st, 0, "{be}: served beyond max_connections");
        drop(held);
        let (st, head, _) = curl(&[], &url);
        assert_eq!(st, 200, "{be}: {head}");
    }
}

#[test]
fn doh_connections_follow_the_read_and_idle_timeouts() {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};
    for be in backends() {
        let s = TestServer::start(
            "https://.:{port} {\n timeouts {\n  read 1s\n  idle 2s\n }\n whoami\n}\n",
            be,
        );
        // Closed at EOF within `limit`: (closed, seconds waited).
        let closed_within = |c: &mut std::net::TcpStream, limit: Duration| {
            c.set_read_timeout(Some(limit)).expect("timeout");
            let t = Instant::now();
            let mut buf = [0u8; 4096];
            loop {
                match c.read(&mut buf) {
                    Ok(0) => return (true, t.elapsed()),
                    Ok(_) => continue,
                    Err(_) => return (false, t.elapsed()),
                }
            }
        };
        // No request at all: closed after the read timeout.
        let mut c = std::net::TcpStream::connect(s.addr()).expect("connect");
        let (closed, after) = closed_within(&mut c, Duration::from_secs(4));
        assert!(
            closed && after >= Duration::from_millis(800),
            "{be}: {after:?}"
        );
        // One request, then nothing: closed after the idle timeout, not before.
        let (_, b64) = b64_query("example.org.");
        let mut c = std::net::TcpStream::connect(s.addr()).expect("connect");
        write!(c, "GET /dns-query?dns={b64} HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
        let mut first = [0u8; 12];
        c.read_exact(&mut first).expect("response");
        assert_eq!(&first, b"HTTP/1.1 200", "{be}");
        let (closed, after) = closed_within(&mut c, Duration::from_secs(5));
        assert!(closed, "{be}: still open after {after:?}");
        assert!(
            after >= Duration::from_millis(1500) && after < Duration::from_millis(3500),
            "{be}: closed after {after:?}"
        );
        // Half a request head: closed the read timeout after its first octet (Go's read
        // deadline), not after read and idle.
        let mut c = std::net::TcpStream::connect(s.addr()).expect("connect");
        write!(c, "GET /dns-query?dns={b64} HTTP/1.1\r\nHo").expect("write");
        let (closed, after) = closed_within(&mut c, Duration::from_secs(5));
        assert!(
            closed && after < Duration::from_millis(1800),
            "{be}: partial head kept {after:?}"
        );
        // A keep-alive request that starts just before the idle deadline is read whole.
        let mut c = std::net::TcpStream::connect(s.addr()).expect("connect");
        write!(c, "GET /dns-query?dns={b64} HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
        let mut first = [0u8; 12];
        c.read_exact(&mut first).expect("response");
        let mut rest = [0u8; 4096];
        c.set_read_timeout(Some(Duration::from_millis(300)))
            .expect("timeout");
        let _ = c.read(&mut rest);
        std::thread::sleep(Duration::from_millis(1500));
        write!(c, "GET /dns-query?dns={b64} HTTP/1.1\r\n").expect("write");
        std::thread::sleep(Duration::from_millis(800));
        write!(c, "Host: x\r\n\r\n").expect("write");
        c.set_read_timeout(Some(Duration::from_secs(3)))
            .expect("timeout");
        let mut second = [0u8; 12];
        c.read_exact(&mut second).expect("second response");
        assert_eq!(&second, b"HTTP/1.1 200", "{be}");
    }
}

/// QUIC client TLS trusting `ca` (PEM), TLS 1.3, ALPN `alpn`.
fn quic_client(ca: &str, alpn: &[u8]) -> quinn::crypto::rustls::QuicClientConfig {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let pem = std::fs::read(ca).expect("ca");
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(&pem).flatten() {
        roots.add(c).expect("root");
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = vec![alpn.to_vec()];
    quinn::crypto::rustls::QuicClientConfig::try_from(tls).expect("quic tls")
}

/// A DoQ client on quinn trusting `ca` (PEM): (endpoint, connection).
fn doq_client(
    port: u16,
    ca: &str,
) -> (quinn::Endpoint, quinn::Connection, tokio::runtime::Runtime) {
    quic_conn(port, ca, b"doq")
}

/// A QUIC connection to `dns.example` on `port` with ALPN `alpn`, trusting
/// `ca`, on its own runtime: (endpoint, connection, runtime).
fn quic_conn(
    port: u16,
    ca: &str,
    alpn: &[u8],
) -> (quinn::Endpoint, quinn::Connection, tokio::runtime::Runtime) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let crypto = quic_client(ca, alpn);
    let (ep, conn) = rt.block_on(async {
        let mut ep =
            quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("endpoint");
        ep.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
        let conn = ep
            .connect(([127, 0, 0, 1], port).into(), "dns.example")
            .expect("connect")
            .await
            .expect("handshake");
        (ep, conn)
    });
    (ep, conn, rt)
}

/// Sends `q` on a new stream: the reply, or the connection's close code.
fn doq_exchange(
    rt: &tokio::runtime::Runtime,
    conn: &quinn::Connection,
    q: &[u8],
) -> Result<Vec<u8>, String> {
    rt.block_on(async {
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
        let mut framed = (q.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(q);
        send.write_all(&framed).await.map_err(|e| e.to_string())?;
        let _ = send.finish();
        let read = async {
            let mut len = [0u8; 2];
            recv.read_exact(&mut len).await.map_err(|e| e.to_string())?;
            let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
            recv.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
            Ok::<_, String>(buf)
        };
        match tokio::time::timeout(std::time::Duration::from_secs(3), read).await {
            Ok(r) => r.map_err(|e| match conn.close_reason() {
                Some(quinn::ConnectionError::ApplicationClosed(c)) => {
                    format!("closed {}", c.error_code)
                }
                _ => e,
            }),
            Err(_) => Err("timeout".into()),
        }
    })
}

#[test]
fn doq_answers_kdig_and_closes_on_protocol_errors() {
    for be in backends() {
        let certs = TempDir::new("doq");
        let (c, k) = cert(&certs, "server", &["dns.example"]);
        let mport = free_port();
        let s = TestServer::start(
            &format!(
                "quic://.:{{port}} {{\n tls {c} {k}\n log\n prometheus 127.0.0.1:{mport}\n whoami\n}}\n"
            ),
            be,
        );
        assert!(
            s.lines().contains(&format!("quic://.:{}", s.port)),
            "{be}: banner {:?}",
            s.lines()
        );
        // kdig (RFC 9250 client), verifying the certificate.
        let ca = format!("+tls-ca={c}");
        let out = Command::new("kdig")
            .arg("@127.0.0.1")
            .arg("-p")
            .arg(s.port.to_string())
            // +quic last: a TLS option after it switches kdig back to TCP.
            .args([
                "+time=2",
                "+retry=0",
                &ca,
                "+tls-hostname=dns.example",
                "+quic",
            ])
            .args(["example.org", "A"])
            .output()
            .expect("kdig");
        let out = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.contains("status: NOERROR"), "{be}: {out}");
        let add = section(&out, "ADDITIONAL");
        // DoQ is UDP to the chain (CoreDNS reads the protocol off the address).
        assert!(
            add.get(1)
                .is_some_and(|l| l.starts_with("_udp.example.org. 0 IN SRV 0 0 ")),
            "{be}: {out}"
        );
        let logged = s
            .wait_line(|l| l.contains("\"A IN example.org. udp "))
            .expect("log line");
        assert!(logged.contains(" NOERROR qr,aa,rd "), "{be}: {logged}");
        // A quinn client: ID 0 answered (ID 0 back), on as many streams as it likes.
        let (_ep, conn, rt) = doq_client(s.port, &c);
        for _ in 0..3 {
            let r = doq_exchange(&rt, &conn, &query(0, "example.net.", 1, 1, None)).expect("reply");
            assert_eq!(&r[..2], &[0, 0], "{be}");
            assert_eq!(r[3] & 0x0f, 0, "{be}: NOERROR");
        }
        // A non-zero ID closes the connection with DOQ_PROTOCOL_ERROR.
        let r = doq_exchange(&rt, &conn, &query(7, "example.net.", 1, 1, None));
        assert_eq!(r, Err("closed 2".to_owned()), "{be}");
        // So does an edns-tcp-keepalive option.
        let (_ep2, conn2, rt2) = doq_client(s.port, &c);
        let ka = query(0, "example.net.", 1, 1, Some((1232, 0, &[0, 11, 0, 0])));
        assert_eq!(
            doq_exchange(&rt2, &conn2, &ka),
            Err("closed 2".to_owned()),
            "{be}"
        );
        // And a message miekg would not accept (a response).
        let (_ep3, conn3, rt3) = doq_client(s.port, &c);
        let mut resp = query(0, "example.net.", 1, 1, None);
        resp[2] |= 0x80;
        assert_eq!(
            doq_exchange(&rt3, &conn3, &resp),
            Err("closed 2".to_owned()),
            "{be}"
        );
        let (_, _, metrics) = http(mport, "GET", "/metrics").expect("metrics");
        for (status, n) in [("0x0", 4), ("0x2", 3)] {
            let want = format!(
                "coredns_dns_quic_responses_total{{server=\"quic://:{}\",status=\"{status}\"}} {n}",
                s.port
            );
            assert!(
                metrics.lines().any(|l| l == want),
                "{be}: {want} not in\n{metrics}"
            );
        }
    }
}

/// A gRPC call over HTTP/2 (TLS trusting `ca` when given, else cleartext):
/// (HTTP status, headers, body, trailers).
pub(crate) type GrpcResult = (u16, hyper::HeaderMap, Vec<u8>, Option<hyper::HeaderMap>);

pub(crate) fn grpc_call(
    port: u16,
    ca: Option<&str>,
    path: &str,
    ctype: &str,
    body: Vec<u8>,
) -> GrpcResult {
    use http_body_util::BodyExt;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let req = hyper::Request::post(format!("http://127.0.0.1:{port}{path}"))
            .header("content-type", ctype)
            .header("te", "trailers")
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .expect("request");
        let exec = hyper_util::rt::TokioExecutor::new();
        let resp = match ca {
            None => {
                let (mut tx, conn) =
                    hyper::client::conn::http2::handshake(exec, hyper_util::rt::TokioIo::new(tcp))
                        .await
                        .expect("h2c");
                tokio::spawn(conn);
                tx.send_request(req).await.expect("call")
            }
            Some(ca) => {
                use rustls::pki_types::pem::PemObject;
                let mut roots = rustls::RootCertStore::empty();
                let pem = std::fs::read(ca).expect("ca");
                for c in rustls::pki_types::CertificateDer::pem_slice_iter(&pem).flatten() {
                    roots.add(c).expect("root");
                }
                let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
                cfg.alpn_protocols = vec![b"h2".to_vec()];
                let name = rustls::pki_types::ServerName::try_from("dns.example").expect("name");
                let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
                    .connect(name, tcp)
                    .await
                    .expect("tls");
                assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
                let (mut tx, conn) =
                    hyper::client::conn::http2::handshake(exec, hyper_util::rt::TokioIo::new(tls))
                        .await
                        .expect("h2");
                tokio::spawn(conn);
                tx.send_request(req).await.expect("call")
            }
        };
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let collected = resp.into_body().collect().await.expect("body");
        let trailers = collected.trailers().cloned();
        (status, headers, collected.to_bytes().to_vec(), trailers)
    })
}

/// A gRPC frame of `DnsPacket { msg }`.
pub(crate) fn grpc_frame(msg: &[u8]) -> Vec<u8> {
    let mut pb = vec![0x0a];
    let mut n = msg.len();
    while n >= 0x80 {
        pb.push((n as u8) | 0x80);
        n >>= 7;
    }
    pb.push(n as u8);
    pb.extend_from_slice(msg);
    let mut f = vec![0];
    f.extend_from_slice(&(pb.len() as u32).to_be_bytes());
    f.extend_from_slice(&pb);
    f
}

/// The `msg` of the `DnsPacket` in a gRPC response body.
fn grpc_msg(body: &[u8]) -> Vec<u8> {
    assert_eq!(body[0], 0, "uncompressed");
    let pb = &body[5..];
    assert_eq!(pb[0], 0x0a, "field 1, bytes");
    let (mut len, mut i) = (0usize, 1);
    loop {
        len |= usize::from(pb[i] & 0x7f) << (7 * (i - 1));
        i += 1;
        if pb[i - 1] & 0x80 == 0 {
            break;
        }
    }
    pb[i..i + len].to_vec()
}

/// (path, content type, body, (HTTP status, grpc-status, grpc-message)).
type GrpcCase = (
    &'static str,
    &'static str,
    Vec<u8>,
    (u16, &'static str, &'static str),
);

fn grpc_status(h: &hyper::HeaderMap) -> (String, String) {
    let get = |k: &str| {
        h.get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    (get("grpc-status"), get("grpc-message"))
}

#[test]
fn grpc_query_service() {
    for be in backends() {
        let certs = TempDir::new("grpc");
        let (c, k) = cert(&certs, "server", &["dns.example"]);
        let tport = free_port();
        let s = TestServer::start(
            &format!(
                "grpc://drop.test:{{port}} {{\n acl {{\n  drop\n }}\n}}\ngrpc://.:{{port}} {{\n log\n whoami\n}}\ngrpc://.:{tport} {{\n tls {c} {k}\n whoami\n}}\n"
            ),
            be,
        );
        assert!(
            s.lines().contains(&format!("grpc://.:{}", s.port)),
            "{be}: {:?}",
            s.lines()
        );
        let q = query(0x4242, "example.org.", 1, 1, None);
        for (port, ca) in [(s.port, None), (tport, Some(c.as_str()))] {
            let (st, h, body, trailers) = grpc_call(
                port,
                ca,
                "/coredns.dns.DnsService/Query",
                "application/grpc",
                grpc_frame(&q),
            );
            assert_eq!(st, 200, "{be}");
            assert_eq!(
                h.get("content-type").map(|v| v.as_bytes()),
                Some(&b"application/grpc"[..])
            );
            assert_eq!(
                trailers.as_ref().map(grpc_status),
                Some(("0".to_owned(), String::new())),
                "{be} {ca:?}"
            );
            let reply = grpc_msg(&body);
            assert_eq!(&reply[..2], &[0x42, 0x42], "{be}: ID");
            assert_eq!(reply[2] & 0x80, 0x80, "{be}: QR");
            assert_eq!(reply[3] & 0x0f, 0, "{be}: NOERROR");
        }
        s.wait_line(|l| l.contains("\"A IN example.org. tcp "))
            .expect("log line");
        let call =
            |path: &str, ctype: &str, body: Vec<u8>| grpc_call(s.port, None, path, ctype, body);
        // No plugin wrote a reply (acl drop): the query itself comes back.
        let dq = query(7, "x.drop.test.", 1, 1, None);
        let (_, _, body, _) = call(
            "/coredns.dns.DnsService/Query",
            "application/grpc",
            grpc_frame(&dq),
        );
        assert_eq!(grpc_msg(&body), dq, "{be}");
        // Errors as grpc-go reports them (trailers-only: status in the headers).
        let mut resp = q.clone();
        resp[2] |= 0x80;
        let cases: [GrpcCase; 7] = [
            (
                "/coredns.dns.DnsService/Nope",
                "application/grpc",
                grpc_frame(&q),
                (
                    200,
                    "12",
                    "unknown method Nope for service coredns.dns.DnsService",
                ),
            ),
            (
                "/other.Svc/Query",
                "application/grpc",
                grpc_frame(&q),
                (200, "12", "unknown service other.Svc"),
            ),
            (
                "/coredns.dns.DnsService/Query",
                "application/grpc",
                grpc_frame(&resp),
                (200, "2", "dns request rejected"),
            ),
            (
                "/coredns.dns.DnsService/Query",
                "application/grpc",
                grpc_frame(&q[..8]),
                (200, "2", "dns: buffer size too small"),
            ),
            (
                "/coredns.dns.DnsService/Query",
                "text/plain",
                grpc_frame(&q),
                (415, "3", "invalid gRPC request content-type \"text/plain\""),
            ),
            (
                "/coredns.dns.DnsService/Query",
                "application/grpc",
                Vec::new(),
                (200, "2", "EOF"),
            ),
            (
                "/coredns.dns.DnsService/Query",
                "application/grpc",
                grpc_frame(&q)[..9].to_vec(),
                (200, "2", "unexpected EOF"),
            ),
        ];
        for (path, ctype, body, (want_http, want_code, want_msg)) in cases {
            let (st, h, _, _) = call(path, ctype, body);
            assert_eq!(st, want_http, "{be} {path}");
            assert_eq!(
                grpc_status(&h),
                (want_code.to_owned(), want_msg.to_owned()),
                "{be} {path}"
            );
        }
        // A message over grpc-go's limit in CoreDNS (65,539 octets).
        let mut big = vec![0u8, 0, 1, 0x11, 0x70];
        big.extend_from_slice(&[0u8; 16]);
        let (_, h, _, _) = call("/coredns.dns.DnsService/Query", "application/grpc", big);
        assert_eq!(grpc_status(&h).0, "8", "{be}");
    }
}

#[test]
fn dot_handshake_and_first_query_within_the_read_timeout() {
    use std::io::Read;
    use std::time::{Duration, Instant};
    for be in backends() {
        let certs = TempDir::new("dot-timeout");
        let (c, k) = cert(&certs, "server", &["dns.example"]);
        let s = TestServer::start(
            &format!(
                "tls://.:{{port}} {{\n tls {c} {k}\n timeouts {{\n  read 1s\n  idle 5s\n }}\n whoami\n}}\n"
            ),
            be,
        );
        // A client that never starts its handshake is dropped after the read timeout.
        let mut conn = std::net::TcpStream::connect(s.addr()).expect("connect");
        conn.set_read_timeout(Some(Duration::from_secs(4)))
            .expect("timeout");
        let t = Instant::now();
        let mut buf = [0u8; 64];
        let n = conn.read(&mut buf).unwrap_or(usize::MAX);
        let after = t.elapsed();
        assert_eq!(n, 0, "{be}: not closed");
        assert!(
            after >= Duration::from_millis(800) && after < Duration::from_millis(2500),
            "{be}: closed after {after:?}"
        );
    }
}

#[test]
fn grpc_connections_have_no_idle_timeout() {
    use http_body_util::BodyExt;
    for be in backends() {
        let s = TestServer::start(
            "grpc://.:{port} {\n timeouts {\n  read 1s\n  idle 1s\n }\n whoami\n}\n",
            be,
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let port = s.port;
        let statuses = rt.block_on(async move {
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("connect");
            let (mut tx, conn) = hyper::client::conn::http2::handshake(
                hyper_util::rt::TokioExecutor::new(),
                hyper_util::rt::TokioIo::new(tcp),
            )
            .await
            .expect("h2c");
            tokio::spawn(conn);
            let mut out = Vec::new();
            // Quiet for longer than both timeouts before the first call and between calls:
            // grpc-go applies neither.
            for _ in 0..2 {
                tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
                let req = hyper::Request::post(format!(
                    "http://127.0.0.1:{port}/coredns.dns.DnsService/Query"
                ))
                .header("content-type", "application/grpc")
                .body(http_body_util::Full::new(bytes::Bytes::from(grpc_frame(
                    &query(1, "example.org.", 1, 1, None),
                ))))
                .expect("request");
                let status = match tx.send_request(req).await {
                    Ok(resp) => {
                        let c = resp.into_body().collect().await.expect("body");
                        c.trailers().map(grpc_status).map(|s| s.0)
                    }
                    Err(e) => Some(format!("error: {e}")),
                };
                out.push(status);
            }
            out
        });
        assert_eq!(
            statuses,
            [Some("0".to_owned()), Some("0".to_owned())],
            "{be}"
        );
    }
}

/// *grpc* over TLS: the upstream is ringdns's `grpc://` listener with `tls`; the
/// client trusts the server's certificate as CA and checks `tls_servername`
/// (another name fails the handshake: SERVFAIL).
#[test]
fn grpc_plugin_over_tls() {
    let certs = TempDir::new("grpc-tls");
    let (c, k) = cert(&certs, "server", &["dns.example"]);
    let db = certs.write(
        "db.example.org",
        "$ORIGIN example.org.\n@ 3600 IN SOA ns1 admin 1 7200 3600 1209600 300\nwww 300 IN A 192.0.2.80\n",
    );
    for be in backends() {
        let up = TestServer::start(
            &format!(
                "grpc://example.org:{{port}} {{\n tls {c} {k}\n file {}\n}}\n",
                db.display()
            ),
            be,
        );
        let s = TestServer::start(
            &format!(
                "example.org:{{port}} {{\n grpc . 127.0.0.1:{p} {{\n  tls {c}\n  tls_servername dns.example\n }}\n}}\n\
                 example.net:{{port}} {{\n grpc . 127.0.0.1:{p} {{\n  tls {c}\n  tls_servername other.example\n }}\n}}\n",
                p = up.port
            ),
            be,
        );
        let out = s.dig(&["www.example.org", "A"]);
        assert_eq!(
            section(&out, "ANSWER"),
            vec!["www.example.org. 300 IN A 192.0.2.80"],
            "{be}: {out}"
        );
        let out = s.dig(&["www.example.net", "A"]);
        assert_eq!(dig_status(&out), "SERVFAIL", "{be}: {out}");
    }
}

/// *proxyproto* on DoH and DoT: the PROXY header comes before the TLS handshake
/// (curl's `--haproxy-protocol` sends v1), and the header's client is the one the
/// chain sees.
#[test]
fn doh_and_dot_behind_a_proxy() {
    use rustls::pki_types::pem::PemObject;
    use std::io::{Read, Write};
    for be in backends() {
        let certs = TempDir::new("pp");
        let (c, k) = cert(&certs, "server", &["dns.example"]);
        let dot = free_port();
        let (_, b64) = b64_query("example.org.");
        let s = TestServer::start(
            &format!(
                "https://.:{{port}} {{\n tls {c} {k}\n proxyproto\n whoami\n}}\ntls://.:{dot} {{\n tls {c} {k}\n proxyproto\n log\n whoami\n}}\n"
            ),
            be,
        );
        let url = format!("https://127.0.0.1:{}/dns-query?dns={b64}", s.port);
        let (st, head, body) = curl(&["--haproxy-protocol"], &url);
        assert_eq!(st, 200, "{be}: {head}");
        assert!(body.len() > 12, "{be}");
        // Without the plugin the header is taken for a TLS record: no answer.
        let plain = TestServer::start(
            &format!("https://.:{{port}} {{\n tls {c} {k}\n whoami\n}}\n"),
            be,
        );
        let url = format!("https://127.0.0.1:{}/dns-query?dns={b64}", plain.port);
        assert_eq!(curl(&["--haproxy-protocol"], &url).0, 0, "{be}");
        drop(plain);
        // DoT: a v1 header, then TLS and a query; whoami answers with the header's client.
        let mut roots = rustls::RootCertStore::empty();
        let pem = std::fs::read(&c).expect("ca");
        for der in rustls::pki_types::CertificateDer::pem_slice_iter(&pem).flatten() {
            roots.add(der).expect("root");
        }
        let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from("dns.example").expect("name");
        let conn = rustls::ClientConnection::new(Arc::new(cfg), name).expect("client");
        let mut tcp = std::net::TcpStream::connect(("127.0.0.1", dot)).expect("connect");
        tcp.set_read_timeout(Some(std::time::Duration::from_secs(3)))
            .expect("timeout");
        tcp.write_all(b"PROXY TCP4 192.0.2.7 198.51.100.1 4242 853\r\n")
            .expect("header");
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let q = query(9, "example.org.", 1, 1, None);
        let mut framed = (q.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&q);
        tls.write_all(&framed).expect("query");
        let mut len = [0u8; 2];
        tls.read_exact(&mut len).expect("length");
        let mut r = vec![0u8; usize::from(u16::from_be_bytes(len))];
        tls.read_exact(&mut r).expect("reply");
        assert!(
            r.windows(4).any(|w| w == [192, 0, 2, 7]),
            "{be}: whoami did not see the header's client"
        );
        assert!(
            s.wait_line(|l| l.starts_with("[INFO] 192.0.2.7:4242 - 9 \"A IN example.org. tcp "))
                .is_some(),
            "{be}: {:?}",
            s.lines()
        );
    }
}

/// The response body of a stand-in gRPC server: one message, then `grpc-status: 0`.
struct GrpcBody(Option<hyper::body::Bytes>, bool);

impl hyper::body::Body for GrpcBody {
    type Data = hyper::body::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        if let Some(d) = self.0.take() {
            return std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(d))));
        }
        if !self.1 {
            self.1 = true;
            let mut t = hyper::HeaderMap::new();
            t.insert("grpc-status", hyper::header::HeaderValue::from_static("0"));
            return std::task::Poll::Ready(Some(Ok(hyper::body::Frame::trailers(t))));
        }
        std::task::Poll::Ready(None)
    }
}

/// A gRPC DnsService on the Unix socket `path` (HTTP/2 without TLS): each query is
/// answered `NAME 60 IN A 192.0.2.53`.
fn grpc_unix_upstream(path: std::path::PathBuf) {
    let l = std::os::unix::net::UnixListener::bind(&path).expect("bind");
    l.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let l = tokio::net::UnixListener::from_std(l).expect("listener");
            while let Ok((s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        |req: hyper::Request<hyper::body::Incoming>| async move {
                            use http_body_util::BodyExt;
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|c| c.to_bytes().to_vec())
                                .unwrap_or_default();
                            // 5-octet prefix, then DnsPacket field 1: tag, length, message.
                            let mut p = 6;
                            while body.get(p).is_some_and(|b| b & 0x80 != 0) {
                                p += 1;
                            }
                            let q = body.get(p + 1..).unwrap_or_default();
                            // Header and question of the query, QR set, one A record.
                            let mut end = 12;
                            while let Some(&l) = q.get(end) {
                                end += 1 + usize::from(l);
                                if l == 0 {
                                    break;
                                }
                            }
                            let mut m = q[..(end + 4).min(q.len())].to_vec();
                            m[2] |= 0x80;
                            m[6..12].copy_from_slice(&[0, 1, 0, 0, 0, 0]);
                            m.extend_from_slice(&[
                                0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 53,
                            ]);
                            Ok::<_, std::convert::Infallible>(
                                hyper::Response::builder()
                                    .header("content-type", "application/grpc")
                                    .body(GrpcBody(Some(grpc_frame(&m).into()), false))
                                    .expect("response"),
                            )
                        },
                    );
                    let _ = hyper::server::conn::http2::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                    .await;
                });
            }
        });
    });
}

/// *grpc* to a `unix://` upstream (grpc-go's `unix` resolver), and a socket that is
/// not there: SERVFAIL with grpc-go's dial error.
#[test]
fn grpc_plugin_over_a_unix_socket() {
    let dir = TempDir::new("grpcunix");
    let sock = dir.0.join("dns.sock");
    grpc_unix_upstream(sock.clone());
    for be in backends() {
        let s = TestServer::start(
            &format!(
                "example.org:{{port}} {{\n errors\n grpc . unix://{}\n}}\nexample.net:{{port}} {{\n errors\n grpc . unix://{}/none.sock\n}}\n",
                sock.display(),
                dir.0.display()
            ),
            be,
        );
        let out = s.dig(&["www.example.org", "A"]);
        assert_eq!(
            section(&out, "ANSWER"),
            ["www.example.org. 60 IN A 192.0.2.53"],
            "{be}: {out} {:?}",
            s.lines()
        );
        assert_eq!(
            dig_status(&s.dig(&["www.example.net", "A"])),
            "SERVFAIL",
            "{be}"
        );
        let want = format!(
            "dial unix {}/none.sock: connect: no such file or directory",
            dir.0.display()
        );
        assert!(
            s.wait_line(
                |l| l.starts_with("[ERROR] plugin/errors: 2 www.example.net. A: ")
                    && l.contains(&want)
            )
            .is_some(),
            "{be}: {:?}",
            s.lines()
        );
    }
}

/// One DoH3 request over a new HTTP/3 connection trusting `ca` (PEM): (status,
/// headers, body), or the connection's error.
fn doh3(
    port: u16,
    ca: &str,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
) -> Result<(u16, hyper::HeaderMap, Vec<u8>), String> {
    use bytes::Buf;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let crypto = quic_client(ca, b"h3");
    rt.block_on(async {
        let mut ep =
            quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("endpoint");
        ep.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
        let exchange = async {
            let conn = ep
                .connect(([127, 0, 0, 1], port).into(), "dns.example")
                .map_err(|e| e.to_string())?
                .await
                .map_err(|e| e.to_string())?;
            let (mut driver, mut send) = h3::client::new(h3_quinn::Connection::new(conn))
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(async move { std::future::poll_fn(|cx| driver.poll_close(cx)).await });
            let req = hyper::Request::builder()
                .method(method)
                .uri(format!("https://dns.example:{port}{path}"))
                .body(())
                .map_err(|e| e.to_string())?;
            let mut stream = send.send_request(req).await.map_err(|e| e.to_string())?;
            if let Some(b) = body {
                stream
                    .send_data(bytes::Bytes::from(b))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            stream.finish().await.map_err(|e| e.to_string())?;
            let resp = stream.recv_response().await.map_err(|e| e.to_string())?;
            let mut data = Vec::new();
            while let Some(mut c) = stream.recv_data().await.map_err(|e| e.to_string())? {
                while c.has_remaining() {
                    let n = c.chunk().len();
                    data.extend_from_slice(c.chunk());
                    c.advance(n);
                }
            }
            Ok((resp.status().as_u16(), resp.headers().clone(), data))
        };
        match tokio::time::timeout(std::time::Duration::from_secs(5), exchange).await {
            Ok(r) => r,
            Err(_) => Err("timeout".into()),
        }
    })
}

#[test]
fn doh3_answers_as_coredns() {
    for be in backends() {
        let certs = TempDir::new("doh3");
        let (c, k) = cert(&certs, "server", &["dns.example"]);
        let mport = free_port();
        let s = TestServer::start(
            &format!(
                "https3://drop.test:{{port}} {{\n tls {c} {k}\n acl {{\n  drop\n }}\n}}\nhttps3://.:{{port}} {{\n tls {c} {k}\n https3 {{\n  max_streams 16\n  max_connections 50\n }}\n log\n prometheus 127.0.0.1:{mport}\n hosts {{\n  10.0.0.1 h.example\n  ttl 300\n  fallthrough\n }}\n whoami\n}}\n"
            ),
            be,
        );
        assert!(
            s.lines().contains(&format!("https3://.:{}", s.port)),
            "{be}: banner {:?}",
            s.lines()
        );
        let (q, b64) = b64_query("h.example.");
        // GET: the headers CoreDNS writes; max-age is the minimal TTL.
        let (st, head, body) =
            doh3(s.port, &c, "GET", &format!("/dns-query?dns={b64}"), None).expect("GET");
        assert_eq!(st, 200, "{be}: {head:?}");
        assert_eq!(head["content-type"], "application/dns-message", "{be}");
        assert_eq!(head["cache-control"], "max-age=300", "{be}");
        assert_eq!(
            head["content-length"],
            body.len().to_string().as_str(),
            "{be}"
        );
        assert_eq!(
            &body[..2],
            &q[..2],
            "{be}: the reply carries the query's ID"
        );
        assert_eq!(body[3] & 0x0f, 0, "{be}: NOERROR");
        // POST with the message as the body.
        let (st, _, body) = doh3(s.port, &c, "POST", "/dns-query", Some(q.clone())).expect("POST");
        assert_eq!(st, 200, "{be}");
        assert_eq!(&body[..2], &q[..2], "{be}");
        // whoami sees a UDP client (CoreDNS's DoH3 writer has a UDP address).
        let (wq, wb64) = b64_query("example.org.");
        let (st, _, body) =
            doh3(s.port, &c, "GET", &format!("/dns-query?dns={wb64}"), None).expect("whoami");
        assert_eq!(st, 200, "{be}");
        assert_eq!(&body[..2], &wq[..2], "{be}");
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("_udp"), "{be}: whoami's transport label");
        // CoreDNS's error statuses and texts.
        let (st, head, body) =
            doh3(s.port, &c, "GET", &format!("/resolve?dns={b64}"), None).expect("404");
        assert_eq!((st, body.as_slice()), (404, &b"\n"[..]), "{be}");
        assert_eq!(head["content-type"], "text/plain; charset=utf-8", "{be}");
        assert_eq!(head["x-content-type-options"], "nosniff", "{be}");
        assert_eq!(head["content-length"], "1", "{be}");
        assert!(head.contains_key("date"), "{be}: {head:?}");
        // HEAD: the headers of the 400 without its body.
        let (st, head, body) =
            doh3(s.port, &c, "HEAD", &format!("/dns-query?dns={b64}"), None).expect("HEAD");
        assert_eq!((st, body.len()), (400, 0), "{be}");
        assert_eq!(head["content-length"], "16", "{be}");
        for (method, path) in [
            ("PUT", format!("/dns-query?dns={b64}")),
            ("GET", "/dns-query".to_owned()),
            ("GET", format!("/dns-query?dns={b64}&dns={b64}")),
            ("GET", "/dns-query?dns=AAAA".to_owned()),
        ] {
            let (st, _, body) = doh3(s.port, &c, method, &path, None).expect("400");
            assert_eq!(
                (st, body.as_slice()),
                (400, &b"invalid request\n"[..]),
                "{be} {method} {path}"
            );
        }
        // No reply from the chain (acl drop): 500.
        let (_, dropped) = b64_query("x.drop.test.");
        let (st, _, body) = doh3(
            s.port,
            &c,
            "GET",
            &format!("/dns-query?dns={dropped}"),
            None,
        )
        .expect("500");
        assert_eq!((st, body.as_slice()), (500, &b"No response\n"[..]), "{be}");
        // The log says udp; the responses are counted per status.
        s.wait_line(|l| l.contains("\"A IN h.example. udp "))
            .expect("log line");
        let (_, _, metrics) = http(mport, "GET", "/metrics").expect("metrics");
        for (status, n) in [(200, 3), (400, 5), (404, 1), (500, 1)] {
            let want = format!(
                "coredns_dns_https3_responses_total{{server=\"https3://:{}\",status=\"{status}\"}} {n}",
                s.port
            );
            assert!(
                metrics.lines().any(|l| l == want),
                "{be}: {want} not in\n{metrics}"
            );
        }
        // A body beyond what a request stream may carry fails that request only (a 400, or
        // the stream cut), and the next request is answered.
        let big = doh3(s.port, &c, "POST", "/dns-query", Some(vec![0u8; 200_000]));
        assert!(big.as_ref().map_or(true, |r| r.0 == 400), "{be}: {big:?}");
        let (st, _, _) = doh3(s.port, &c, "GET", &format!("/dns-query?dns={b64}"), None)
            .expect("after the big POST");
        assert_eq!(st, 200, "{be}");
    }
}

/// `https3 { max_connections }`: a connection beyond it is closed with
/// H3_EXCESSIVE_LOAD; one that ends frees its place.
#[test]
fn doh3_limits_connections() {
    for be in backends() {
        let certs = TempDir::new("doh3-limit");
        let (c, k) = cert(&certs, "server", &["dns.example"]);
        let s = TestServer::start(
            &format!(
                "https3://.:{{port}} {{\n tls {c} {k}\n https3 {{\n  max_connections 1\n }}\n whoami\n}}\n"
            ),
            be,
        );
        let (_, b64) = b64_query("example.org.");
        // Hold one connection open from another runtime while a second connects.
        let (ep, held, rt) = quic_conn(s.port, &c, b"h3");
        // Let the server take its place for the held connection.
        std::thread::sleep(std::time::Duration::from_millis(200));
        let second = doh3(s.port, &c, "GET", &format!("/dns-query?dns={b64}"), None);
        assert!(
            second
                .as_ref()
                .is_err_and(|e| e.contains("H3_EXCESSIVE_LOAD")),
            "{be}: {second:?}"
        );
        held.close(quinn::VarInt::from_u32(0x100), b"");
        rt.block_on(ep.wait_idle());
        let ok = wait_for(std::time::Duration::from_secs(3), || {
            doh3(s.port, &c, "GET", &format!("/dns-query?dns={b64}"), None)
                .is_ok_and(|r| r.0 == 200)
        });
        assert!(ok, "{be}: the place is free again");
    }
}

/// A request stream that sends more than a request may carry (a HEADERS frame
/// announcing 1 MB) is stopped with H3_EXCESSIVE_LOAD (0x107) instead of being
/// buffered, and the connection still serves.
#[test]
fn doh3_caps_what_a_stream_may_carry() {
    for be in backends() {
        let certs = TempDir::new("doh3-cap");
        let (c, k) = cert(&certs, "server", &["dns.example"]);
        let s = TestServer::start(
            &format!("https3://.:{{port}} {{\n tls {c} {k}\n whoami\n}}\n"),
            be,
        );
        let (ep, conn, rt) = quic_conn(s.port, &c, b"h3");
        let outcome = rt.block_on(async {
            let (mut send, _recv) = conn.open_bi().await.expect("stream");
            // HEADERS (0x01), length 1,000,000 as a 4-octet varint, then the bytes.
            let mut frame = vec![0x01, 0x80, 0x0f, 0x42, 0x40];
            frame.extend(std::iter::repeat_n(0u8, 1_000_000));
            let start = std::time::Instant::now();
            let r =
                tokio::time::timeout(std::time::Duration::from_secs(10), send.write_all(&frame))
                    .await;
            (r, start.elapsed())
        });
        drop((conn, ep));
        match outcome {
            (Ok(Err(quinn::WriteError::Stopped(code))), took) => {
                assert_eq!(code, quinn::VarInt::from_u32(0x107), "{be}");
                assert!(took < std::time::Duration::from_secs(2), "{be}: {took:?}");
            }
            other => panic!("{be}: {other:?}"),
        }
        let (_, b64) = b64_query("example.org.");
        let (st, _, _) =
            doh3(s.port, &c, "GET", &format!("/dns-query?dns={b64}"), None).expect("still serving");
        assert_eq!(st, 200, "{be}");
    }
}
