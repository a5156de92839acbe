//! *dnstap* on both backends: messages read by real tools (`fstrm_capture` writes
//! the stream to a file, `dnstap-read` prints it), and by an in-test Frame Streams
//! reader connected to `dnstap listen` (identity, version, `extra`, a reload that
//! keeps the reader connected).

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use ringdns::plugins::dnstap::Field as V;
use ringdns::plugins::dnstap::sink::{
    ACCEPT, CONTENT_TYPE, READY, START, read_control, write_control,
};

use crate::util::*;

/// `fstrm_capture` reading `sock`, writing `file`.
struct Capture(Child);

impl Capture {
    fn start(sock: &str, file: &str) -> Self {
        let c = Command::new("fstrm_capture")
            .args(["-t", "protobuf:dnstap.Dnstap", "-u", sock, "-w", file])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("fstrm_capture (install fstrm-bin)");
        assert!(
            wait_for(Duration::from_secs(5), || std::path::Path::new(sock)
                .exists()),
            "fstrm_capture did not listen"
        );
        Self(c)
    }

    /// SIGINT: it closes the file and exits.
    fn stop(mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            Signal::SIGINT,
        );
        let _ = self.0.wait();
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// `dnstap-read -p FILE`: one line per message, with the message after it.
fn dnstap_read(file: &str, yaml: bool) -> String {
    let out = Command::new("dnstap-read")
        .arg(if yaml { "-y" } else { "-p" })
        .arg(file)
        .output()
        .expect("dnstap-read (install bind9-dnsutils)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The summary lines of `dnstap-read -p`, without their time stamps:
/// `CQ 127.0.0.1:PORT -> ? UDP 56b www.example.org/IN/A`.
fn summaries(text: &str) -> Vec<String> {
    let re = regex::Regex::new(r"^\d\d-\w\w\w-\d{4} \d\d:\d\d:\d\d\.\d{3} (.*)$").expect("re");
    text.lines()
        .filter_map(|l| re.captures(l).map(|c| c[1].to_owned()))
        .collect()
}

#[test]
fn client_and_forwarder_messages_through_fstrm_capture() {
    for be in backends() {
        let dir = TempDir::new("dnstap");
        let sock = dir.0.join("tap.sock").to_string_lossy().into_owned();
        let file = dir.0.join("out.fstrm").to_string_lossy().into_owned();
        let cap = Capture::start(&sock, &file);
        let up = TestServer::start("example.org:{port} {\n whoami\n}\n", be);
        let mut s = TestServer::start(
            &format!(
                ".:{{port}} {{\n dnstap unix://{sock} full {{\n  identity tap-test\n }}\n forward . 127.0.0.1:{}\n}}\n",
                up.port
            ),
            be,
        );
        let out = s.dig(&["www.example.org", "A"]);
        assert_eq!(dig_status(&out), "NOERROR", "{be}: {out}");
        let out = s.dig(&["+tcp", "tcp.example.org", "AAAA"]);
        assert_eq!(dig_status(&out), "NOERROR", "{be}: {out}");
        // Stopped at once: the final shutdown flushes what the 1 s flush has not.
        s.signal(Signal::SIGTERM);
        assert_eq!(s.wait_exit(Duration::from_secs(8)), Some(0), "{be}");
        cap.stop();
        let text = dnstap_read(&file, false);
        let got = summaries(&text);
        let port = s.port;
        let upp = up.port;
        let re = |p: &str| regex::Regex::new(p).expect("re");
        let want = [
            re(r"^CQ 127\.0\.0\.1:\d+ -> \? UDP \d+b www\.example\.org/IN/A$"),
            re(&format!(
                r"^FQ 127\.0\.0\.1:\d+ -> 127\.0\.0\.1:{upp} UDP \d+b www\.example\.org/IN/A$"
            )),
            re(&format!(
                r"^FR 127\.0\.0\.1:\d+ <- 127\.0\.0\.1:{upp} UDP \d+b www\.example\.org/IN/A$"
            )),
            re(r"^CR 127\.0\.0\.1:\d+ <- \? UDP \d+b www\.example\.org/IN/A$"),
            re(r"^CQ 127\.0\.0\.1:\d+ -> \? TCP \d+b tcp\.example\.org/IN/AAAA$"),
            re(&format!(
                r"^FQ 127\.0\.0\.1:\d+ -> 127\.0\.0\.1:{upp} TCP \d+b tcp\.example\.org/IN/AAAA$"
            )),
            re(&format!(
                r"^FR 127\.0\.0\.1:\d+ <- 127\.0\.0\.1:{upp} TCP \d+b tcp\.example\.org/IN/AAAA$"
            )),
            re(r"^CR 127\.0\.0\.1:\d+ <- \? TCP \d+b tcp\.example\.org/IN/AAAA$"),
        ];
        assert_eq!(got.len(), want.len(), "{be} (port {port}): {text}");
        for (g, w) in got.iter().zip(&want) {
            assert!(w.is_match(g), "{be}: {g} !~ {w}\n{text}");
        }
        // The client's port is the same in its query and response; the forwarder's
        // local port is the upstream socket's.
        let port_of = |l: &str| l.split_whitespace().nth(1).map(str::to_owned);
        assert_eq!(port_of(&got[0]), port_of(&got[3]), "{be}");
        assert_eq!(port_of(&got[1]), port_of(&got[2]), "{be}");
        // With `full`, the messages themselves: the client's ID in all four, the
        // upstream's answer (whoami's A record) in both responses.
        let ids: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with(";; ->>HEADER<<-"))
            .collect();
        assert_eq!(ids.len(), 8, "{be}: {text}");
        assert!(ids[..4].iter().all(|l| *l == ids[0]), "{be}: {ids:?}");
        let answers = text
            .lines()
            .filter(|l| l.starts_with("www.example.org.\t0\tIN\tA\t127.0.0.1"))
            .count();
        assert_eq!(answers, 2, "{be}: {text}");
        let yaml = dnstap_read(&file, true);
        assert_eq!(
            yaml.matches("identity: tap-test").count(),
            8,
            "{be}: {yaml}"
        );
        assert_eq!(yaml.matches("version: CoreDNS-1.14.7").count(), 8, "{be}");
    }
}

#[test]
fn no_connection_is_logged_and_queries_still_answered() {
    for be in backends() {
        let s = TestServer::start(
            ".:{port} {\n dnstap /nonexistent-ringdns/tap.sock\n whoami\n}\n",
            be,
        );
        assert!(
            s.lines().contains(
                &"[ERROR] plugin/dnstap: No connection to dnstap endpoint: dial unix /nonexistent-ringdns/tap.sock: connect: no such file or directory"
                    .to_owned()
            ),
            "{be}: {:?}",
            s.lines()
        );
        assert_eq!(dig_status(&s.dig(&["a.example", "A"])), "NOERROR", "{be}");
    }
}

/// A decoded protobuf message: (field number, value) in wire order.
type Fields = Vec<(u32, V)>;

fn decode(b: &[u8]) -> Fields {
    ringdns::plugins::dnstap::decode(b).expect("protobuf")
}

fn field(f: &[(u32, V)], n: u32) -> Option<&V> {
    f.iter().find(|(k, _)| *k == n).map(|(_, v)| v)
}

fn text(v: Option<&V>) -> String {
    match v {
        Some(V::Bytes(b)) => String::from_utf8_lossy(b).into_owned(),
        other => format!("{other:?}"),
    }
}

/// A reader connected to a `dnstap listen` socket, past the handshake.
struct Reader(UnixStream);

impl Reader {
    fn connect(path: &str) -> Self {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut s = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if Instant::now() > deadline => panic!("connect {path}: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let (kind, types) = read_control(&mut s).expect("READY");
        assert_eq!((kind, types), (READY, vec![CONTENT_TYPE.to_vec()]));
        write_control(&mut s, ACCEPT, true).expect("ACCEPT");
        let (kind, _) = read_control(&mut s).expect("START");
        assert_eq!(kind, START);
        // The writer adds the reader to its list right after START.
        std::thread::sleep(Duration::from_millis(300));
        Self(s)
    }

    /// The next data frame, decoded.
    fn next(&mut self) -> Vec<(u32, V)> {
        let mut len = [0u8; 4];
        self.0.read_exact(&mut len).expect("frame length");
        let n = u32::from_be_bytes(len) as usize;
        assert!(n > 0, "control frame");
        let mut f = vec![0u8; n];
        self.0.read_exact(&mut f).expect("frame");
        decode(&f)
    }

    /// The next frame's envelope and message.
    fn message(&mut self) -> (Fields, Fields) {
        let env = self.next();
        let Some(V::Bytes(m)) = field(&env, 14) else {
            panic!("no message: {env:?}");
        };
        let m = decode(m);
        (env, m)
    }
}

#[test]
fn listen_mode_extra_and_reload() {
    for be in backends() {
        let dir = TempDir::new("dnstap-listen");
        let sock = dir.0.join("l.sock").to_string_lossy().into_owned();
        let conf = |id: &str| {
            format!(
                ".:{{port}} {{\n dnstap listen unix://{sock} {{\n  identity {id}\n  extra \"{{type}} {{name}} {{proto}} {{rcode}} {{/nope}}\"\n }}\n whoami\n}}\n"
            )
        };
        let mut s = TestServer::start(&conf("one"), be);
        let mut r = Reader::connect(&sock);
        assert_eq!(
            dig_status(&s.dig(&["Www.Example.ORG", "MX"])),
            "NOERROR",
            "{be}"
        );
        let (env, m) = r.message();
        assert_eq!(text(field(&env, 1)), "one", "{be}");
        assert_eq!(text(field(&env, 2)), "CoreDNS-1.14.7", "{be}");
        // No recorder for dnstap's replacer: {rcode} is "-"; unset metadata "-".
        assert_eq!(text(field(&env, 3)), "MX www.example.org. udp - -", "{be}");
        assert_eq!(field(&env, 15), Some(&V::Int(1)));
        assert_eq!(field(&m, 1), Some(&V::Int(5)), "{be}: CLIENT_QUERY");
        assert_eq!(field(&m, 3), Some(&V::Int(1)), "{be}: UDP");
        assert_eq!(field(&m, 4), Some(&V::Bytes(vec![127, 0, 0, 1])));
        assert!(field(&m, 10).is_none(), "{be}: no message without full");
        let (_, m2) = r.message();
        assert_eq!(field(&m2, 1), Some(&V::Int(6)), "{be}: CLIENT_RESPONSE");
        assert_eq!(field(&m2, 6), field(&m, 6), "{be}: same client port");
        assert_eq!(
            (field(&m2, 8), field(&m2, 9)),
            (field(&m, 8), field(&m, 9)),
            "{be}: the query time of the query"
        );
        assert!(field(&m2, 12).is_some() && field(&m2, 13).is_some(), "{be}");
        // A reload keeps the listening socket and its reader; the new identity is sent.
        std::fs::write(
            s.dir.0.join("Corefile"),
            conf("two").replace("{port}", &s.port.to_string()),
        )
        .expect("write");
        s.signal(Signal::SIGUSR1);
        s.wait_line(|l| l == "[INFO] Reloading complete")
            .expect("reload");
        assert_eq!(
            dig_status(&s.dig(&["+tcp", "b.example", "A"])),
            "NOERROR",
            "{be}"
        );
        let (env, m) = r.message();
        assert_eq!(text(field(&env, 1)), "two", "{be}");
        assert_eq!(text(field(&env, 3)), "A b.example. tcp - -", "{be}");
        assert_eq!(field(&m, 3), Some(&V::Int(2)), "{be}: TCP");
        let (env, m) = r.message();
        assert_eq!(field(&m, 1), Some(&V::Int(6)), "{be}: CLIENT_RESPONSE");
        assert_eq!(text(field(&env, 1)), "two", "{be}");
        s.signal(Signal::SIGTERM);
        // Closing: STOP comes last; the reader answers FINISH and the daemon exits.
        let (kind, _) = read_control(&mut r.0).expect("STOP");
        assert_eq!(kind, 3, "{be}: STOP");
        write_control(&mut r.0, 5, false).expect("FINISH");
        assert_eq!(s.wait_exit(Duration::from_secs(8)), Some(0), "{be}");
    }
}

/// A self-signed certificate for 127.0.0.1 and its key, as PEM files in `dir`.
fn cert(dir: &TempDir) -> (String, String, rustls::pki_types::CertificateDer<'static>) {
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).expect("cert");
    let c = dir.write("tap.pem", &ck.cert.pem());
    let k = dir.write("tap-key.pem", &ck.signing_key.serialize_pem());
    (
        c.to_string_lossy().into_owned(),
        k.to_string_lossy().into_owned(),
        ck.cert.der().clone(),
    )
}

/// The reader's half of the handshake and the next two frames (CQ and CR) over `s`.
fn read_two(s: &mut (impl Read + std::io::Write)) -> Vec<u64> {
    let (kind, _) = read_control(s).expect("READY");
    assert_eq!(kind, READY);
    write_control(s, ACCEPT, true).expect("ACCEPT");
    s.flush().expect("flush");
    let (kind, _) = read_control(s).expect("START");
    assert_eq!(kind, START);
    let mut kinds = Vec::new();
    for _ in 0..2 {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).expect("len");
        let mut f = vec![0u8; u32::from_be_bytes(len) as usize];
        s.read_exact(&mut f).expect("frame");
        let env = decode(&f);
        let Some(V::Bytes(m)) = field(&env, 14) else {
            panic!("{env:?}")
        };
        if let Some(V::Int(k)) = field(&decode(m), 1) {
            kinds.push(*k);
        }
    }
    kinds
}

/// A TLS connection to 127.0.0.1:`port` that trusts only `der` (the handshake
/// happens on its first read).
fn tls_reader(
    port: u16,
    der: &rustls::pki_types::CertificateDer<'static>,
) -> rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der.clone()).expect("root");
    let cfg = std::sync::Arc::new(
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth(),
    );
    let t = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    t.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    rustls::StreamOwned::new(rustls::ClientConnection::new(cfg, name).expect("client"), t)
}

#[test]
fn tls_sinks_both_directions() {
    use std::sync::Arc;
    for be in backends() {
        let dir = TempDir::new("dnstap-tls");
        let (c, k, der) = cert(&dir);
        // Outgoing: an in-test TLS reader; `skipverify` accepts its self-signed
        // certificate, without it the dial fails verification (logged).
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        use rustls::pki_types::pem::PemObject;
        let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&k).expect("key");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let scfg = Arc::new(
            rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_no_client_auth()
                .with_single_cert(vec![der.clone()], key)
                .expect("server config"),
        );
        let reader = {
            let scfg = Arc::clone(&scfg);
            std::thread::spawn(move || {
                let mut out = Vec::new();
                for _ in 0..2 {
                    let (t, _) = l.accept().expect("accept");
                    t.set_read_timeout(Some(Duration::from_secs(5)))
                        .expect("timeout");
                    let conn = rustls::ServerConnection::new(Arc::clone(&scfg)).expect("conn");
                    let mut s = rustls::StreamOwned::new(conn, t);
                    // The first connection (no skipverify) fails its handshake.
                    let mut probe = [0u8; 0];
                    if s.read(&mut probe).is_err() || s.conn.is_handshaking() {
                        continue;
                    }
                    out = read_two(&mut s);
                    break;
                }
                out
            })
        };
        let s1 = TestServer::start(
            &format!(".:{{port}} {{\n dnstap tls://127.0.0.1:{port}\n whoami\n}}\n"),
            be,
        );
        let err = s1
            .wait_line(|l| l.starts_with("[ERROR] plugin/dnstap: No connection"))
            .expect("verification error");
        assert_eq!(
            err,
            "[ERROR] plugin/dnstap: No connection to dnstap endpoint: tls: failed to verify certificate: x509: certificate signed by unknown authority",
            "{be}"
        );
        drop(s1);
        let s = TestServer::start(
            &format!(
                ".:{{port}} {{\n dnstap tls://127.0.0.1:{port} full {{\n  skipverify\n }}\n whoami\n}}\n"
            ),
            be,
        );
        assert_eq!(dig_status(&s.dig(&["a.example", "A"])), "NOERROR", "{be}");
        assert_eq!(reader.join().expect("reader"), vec![5, 6], "{be}");
        drop(s);
        // Listening over TLS: a reader that trusts the certificate connects.
        let lport = free_port();
        let s = TestServer::start(
            &format!(
                ".:{{port}} {{\n dnstap listen tls://127.0.0.1:{lport} {{\n  tls {c} {k}\n }}\n whoami\n}}\n"
            ),
            be,
        );
        let mut tls = tls_reader(lport, &der);
        let query = {
            let port = s.port;
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(1000));
                Command::new("dig")
                    .args([
                        "@127.0.0.1",
                        "-p",
                        &port.to_string(),
                        "+time=2",
                        "+tries=1",
                        "b.example",
                    ])
                    .output()
                    .expect("dig")
            })
        };
        assert_eq!(read_two(&mut tls), vec![5, 6], "{be}");
        let _ = query.join();
    }
}

/// Two `dnstap listen` lines on one endpoint: the second bind fails as in Go (the
/// first keeps serving), and a reload takes the socket over instead of failing.
#[test]
fn listen_endpoint_twice_fails_reload_takes_over() {
    let dir = TempDir::new("dnstap-twice");
    let sock = dir.0.join("t.sock").to_string_lossy().into_owned();
    let s = TestServer::start(
        &format!(".:{{port}} {{\n dnstap listen {sock}\n dnstap listen {sock}\n whoami\n}}\n"),
        "epoll",
    );
    let want = format!(
        "[ERROR] plugin/dnstap: Failed to start dnstap listener: listen unix {sock}: bind: address already in use"
    );
    assert_eq!(
        s.lines().iter().filter(|l| **l == want).count(),
        1,
        "{:?}",
        s.lines()
    );
    let mut r = Reader::connect(&sock);
    s.signal(Signal::SIGUSR1);
    s.wait_line(|l| l == "[INFO] Reloading complete")
        .expect("reload");
    // The reload's first line takes the socket over; its second fails again.
    assert_eq!(
        s.lines().iter().filter(|l| **l == want).count(),
        2,
        "{:?}",
        s.lines()
    );
    assert_eq!(dig_status(&s.dig(&["a.example", "A"])), "NOERROR");
    let (_, m) = r.message();
    assert_eq!(field(&m, 1), Some(&V::Int(5)));
}

/// A reload that changes a `dnstap listen tls://` certificate: the socket is kept
/// and new readers get the new certificate.
#[test]
fn listen_tls_reload_serves_the_new_certificate() {
    let dir = TempDir::new("dnstap-tls-reload");
    let mk = |name: &str| {
        let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).expect("cert");
        let c = dir.write(&format!("{name}.pem"), &ck.cert.pem());
        let k = dir.write(&format!("{name}-key.pem"), &ck.signing_key.serialize_pem());
        (
            c.to_string_lossy().into_owned(),
            k.to_string_lossy().into_owned(),
            ck.cert.der().clone(),
        )
    };
    let (c1, k1, d1) = mk("one");
    let (c2, k2, d2) = mk("two");
    let lport = free_port();
    let conf = |c: &str, k: &str| {
        format!(
            ".:{{port}} {{\n dnstap listen tls://127.0.0.1:{lport} {{\n  tls {c} {k}\n }}\n whoami\n}}\n"
        )
    };
    let s = TestServer::start(&conf(&c1, &k1), "epoll");
    // Whether a reader trusting only `der` completes its handshake.
    let handshake = |der: &rustls::pki_types::CertificateDer<'static>| {
        read_control(&mut tls_reader(lport, der)).is_ok_and(|(k, _)| k == READY)
    };
    assert!(handshake(&d1), "the first certificate");
    assert!(!handshake(&d2), "not yet the second");
    std::fs::write(
        s.dir.0.join("Corefile"),
        conf(&c2, &k2).replace("{port}", &s.port.to_string()),
    )
    .expect("write");
    s.signal(Signal::SIGUSR1);
    s.wait_line(|l| l == "[INFO] Reloading complete")
        .expect("reload");
    assert!(handshake(&d2), "the reload's certificate");
    assert!(
        !s.lines()
            .iter()
            .any(|l| l.contains("Failed to start dnstap listener")),
        "{:?}",
        s.lines()
    );
}
