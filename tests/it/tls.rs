//! `tls://` listeners (DNS over TLS) with the *tls* plugin, on both backends, with
//! `kdig +tls` and `dig +tls` as clients.

use std::process::Command;

use nix::sys::signal::Signal;

use crate::util::*;

/// A self-signed certificate and its key, written as `NAME.pem` and `NAME-key.pem`.
fn cert(dir: &TempDir, name: &str, sans: &[&str]) -> (String, String) {
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
        assert!(body.contains(&want), "{be}: {want} not in\n{body}");
        // The key log has the TLS 1.3 secrets of those sessions, in NSS format.
        let log = std::fs::read_to_string(&keylog).expect("keylog");
        let secrets: Vec<&str> = log
            .lines()
            .filter(|l| l.starts_with("CLIENT_HANDSHAKE_TRAFFIC_SECRET "))
            .collect();
        assert!(secrets.len() >= 2, "{be}: {log}");
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
