//! *cache* end to end, on every backend: in front of erratic and whoami, of
//! forward to a programmable upstream that counts the queries it gets, and of
//! forward to a real nsd; prefetch, serve_stale (refreshes that park in
//! forward), the metrics text, and entries kept across a reload that leaves
//! the cache's configuration unchanged.

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::util::*;

/// What the upstream answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `NAME TTL A 192.0.2.N` (N counts the queries).
    Answer(u32),
    /// NXDOMAIN with an SOA of this TTL.
    Nx(u32),
    /// SERVFAIL without records.
    Fail,
    /// Nothing.
    Drop,
}

/// A UDP upstream on 127.0.0.1 that counts queries.
struct Up {
    port: u16,
    mode: Arc<Mutex<Mode>>,
    count: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Up {
    /// UDP and TCP on one port (forward refreshes for the cache look like TCP
    /// clients, so they go upstream over TCP, as in CoreDNS).
    fn start(mode: Mode) -> Self {
        let (sock, tcp) = loop {
            let port = free_port();
            let u = UdpSocket::bind(("127.0.0.1", port));
            let t = std::net::TcpListener::bind(("127.0.0.1", port));
            if let (Ok(u), Ok(t)) = (u, t) {
                break (u, t);
            }
        };
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        tcp.set_nonblocking(true).expect("nonblocking");
        let port = sock.local_addr().expect("addr").port();
        let up = Self {
            port,
            mode: Arc::new(Mutex::new(mode)),
            count: Arc::new(AtomicUsize::new(0)),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let (mode, count, stop) = (
            Arc::clone(&up.mode),
            Arc::clone(&up.count),
            Arc::clone(&up.stop),
        );
        let answer = move |q: &[u8]| {
            // Health checks (`. IN NS`) are answered, not counted.
            let n = if q.get(12) == Some(&0) {
                0
            } else {
                count.fetch_add(1, Ordering::Relaxed) + 1
            };
            let m = *mode.lock().expect("lock");
            reply(q, m, n)
        };
        let answer = Arc::new(answer);
        let (a2, stop2) = (Arc::clone(&answer), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !stop2.load(Ordering::Relaxed) {
                let Ok((n, peer)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                if let Some(r) = a2(&buf[..n]) {
                    let _ = sock.send_to(&r, peer);
                }
            }
        });
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let Ok((mut c, _)) = tcp.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let answer = Arc::clone(&answer);
                std::thread::spawn(move || {
                    let _ = c.set_nonblocking(false);
                    let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
                    let mut len = [0u8; 2];
                    while c.read_exact(&mut len).is_ok() {
                        let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
                        if c.read_exact(&mut q).is_err() {
                            return;
                        }
                        if let Some(r) = answer(&q) {
                            let mut out = (r.len() as u16).to_be_bytes().to_vec();
                            out.extend_from_slice(&r);
                            let _ = c.write_all(&out);
                        }
                    }
                });
            }
        });
        up
    }

    fn set(&self, m: Mode) {
        *self.mode.lock().expect("lock") = m;
    }

    fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn reply(q: &[u8], mode: Mode, n: usize) -> Option<Vec<u8>> {
    if q.len() < 12 {
        return None;
    }
    let mut p = 12;
    while q[p] != 0 {
        p += 1 + q[p] as usize;
    }
    let qend = p + 5;
    let mut r = q[..qend].to_vec();
    r[2] = 0x80 | (q[2] & 0x01) | 0x04;
    r[3] = 0x80;
    r[6..12].copy_from_slice(&[0, 0, 0, 0, 0, 0]);
    match mode {
        Mode::Drop => return None,
        Mode::Fail => r[3] |= 2,
        Mode::Answer(ttl) => {
            r[7] = 1;
            r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
            r.extend_from_slice(&ttl.to_be_bytes());
            r.extend_from_slice(&[0, 4, 192, 0, 2, n as u8]);
        }
        Mode::Nx(ttl) => {
            r[3] |= 3;
            r[9] = 1;
            r.extend_from_slice(&[0xc0, 12, 0, 6, 0, 1]);
            r.extend_from_slice(&ttl.to_be_bytes());
            let rd = b"\x02ns\xc0\x0c\x0ahostmaster\xc0\x0c\x00\x00\x00\x01\x00\x00\x0e\x10\x00\x00\x02\x58\x00\x01\x51\x80\x00\x00\x00\x08";
            r.extend_from_slice(&(rd.len() as u16).to_be_bytes());
            r.extend_from_slice(rd);
        }
    }
    Some(r)
}

fn answers(out: &str) -> Vec<String> {
    section(out, "ANSWER")
}

/// The TTL of the first answer record.
fn ttl(out: &str) -> u32 {
    let a = answers(out);
    let first = a.first().unwrap_or_else(|| panic!("no answer: {out}"));
    first
        .split(' ')
        .nth(1)
        .and_then(|t| t.parse().ok())
        .expect("ttl")
}

fn scrape(port: u16) -> String {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
    let _ = write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.split_once("\r\n\r\n")
        .map(|x| x.1.to_owned())
        .unwrap_or_default()
}

fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn cache_in_front_of_erratic_and_whoami() {
    for be in backends() {
        let s = TestServer::start(".:{port} {\n cache 30\n erratic {\n  drop 0\n }\n}\n", be);
        let out = s.dig(&["Www.Example.org", "A"]);
        assert_eq!(
            answers(&out),
            ["Www.Example.org. 5 IN A 192.0.2.53"],
            "{be}: TTL 0 → 5 s"
        );
        let out = s.dig(&["+norec", "www.example.ORG", "A"]);
        assert_eq!(
            dig_flags(&out),
            "qr aa",
            "{be}: AA=1, RD from the query: {out}"
        );
        assert!(
            out.contains(";www.example.ORG.\t\tIN\tA"),
            "{be}: the client's case: {out}"
        );
        assert!(ttl(&out) <= 5, "{be}");
        assert!(
            answers(&out)[0].starts_with("Www.Example.org."),
            "{be}: owner as stored"
        );
        // AAAA and TCP.
        let out = s.dig(&["+tcp", "www.example.org", "AAAA"]);
        assert_eq!(
            answers(&out),
            ["www.example.org. 5 IN AAAA 2001:db8::53"],
            "{be}"
        );
        let out = s.kdig(&["www.example.org", "AAAA"]);
        assert!(out.contains("2001:db8::53"), "{be}: {out}");
        // No EDNS from the client: no OPT in the hit.
        let out = s.dig(&["+noedns", "www.example.org", "A"]);
        assert!(!out.contains("OPT PSEUDOSECTION"), "{be}: {out}");
    }
    for be in backends() {
        let s = TestServer::start(".:{port} {\n cache\n whoami\n}\n", be);
        let a = s.dig(&["example.org", "A"]);
        let b = s.dig(&["example.org", "A"]);
        assert_eq!(dig_status(&b), "NOERROR", "{be}");
        assert_eq!(
            section(&a, "ADDITIONAL").len(),
            section(&b, "ADDITIONAL").len(),
            "{be}"
        );
        assert!(
            section(&b, "ADDITIONAL")
                .iter()
                .all(|l| l.contains(" 5 IN ") || l.contains(" 4 IN ")),
            "{be}: {b}"
        );
    }
}

#[test]
fn cache_in_front_of_forward() {
    for be in backends() {
        let up = Up::start(Mode::Answer(300));
        let mport = free_port();
        let s = TestServer::start(
            &format!(
                ".:{{port}} {{\n prometheus 127.0.0.1:{mport}\n cache 30\n forward . 127.0.0.1:{}\n}}\n",
                up.port
            ),
            be,
        );
        let out = s.dig(&["www.example.org", "A"]);
        assert_eq!(
            answers(&out),
            ["www.example.org. 30 IN A 192.0.2.1"],
            "{be}: capped"
        );
        let out = s.dig(&["WWW.example.org", "A"]);
        assert_eq!(up.count(), 1, "{be}: the hit stays here");
        assert_eq!(dig_flags(&out), "qr aa rd ra", "{be}: {out}");
        assert!(out.contains(";WWW.example.org."), "{be}");
        // DO and CD are separate entries.
        s.dig(&["+dnssec", "www.example.org", "A"]);
        s.dig(&["+cdflag", "www.example.org", "A"]);
        assert_eq!(up.count(), 3, "{be}");
        // NXDOMAIN: the SOA's TTL, capped.
        up.set(Mode::Nx(25));
        let out = s.dig(&["nx.example.org", "A"]);
        assert_eq!(
            (dig_status(&out), section(&out, "AUTHORITY").len()),
            ("NXDOMAIN".into(), 1),
            "{be}"
        );
        assert!(
            section(&out, "AUTHORITY")[0].contains(" 25 IN SOA "),
            "{be}: {out}"
        );
        s.dig(&["nx.example.org", "A"]);
        assert_eq!(up.count(), 4, "{be}");
        // SERVFAIL: cached 5 s.
        up.set(Mode::Fail);
        assert_eq!(
            dig_status(&s.dig(&["fail.example.org", "A"])),
            "SERVFAIL",
            "{be}"
        );
        let out = s.dig(&["fail.example.org", "A"]);
        assert_eq!(
            (dig_status(&out), dig_flags(&out)),
            ("SERVFAIL".into(), "qr aa rd ra".into()),
            "{be}"
        );
        assert_eq!(up.count(), 5, "{be}");
        let body = scrape(mport);
        let label = format!("server=\"dns://:{}\"", s.port);
        for (fam, v) in [
            ("coredns_cache_requests_total{", 8),
            ("coredns_cache_misses_total{", 5),
            ("coredns_cache_hits_total{", 3),
        ] {
            let got: u64 = body
                .lines()
                .filter(|l| l.starts_with(fam) && l.contains(&label))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
                .sum();
            assert_eq!(got, v, "{be}: {fam}\n{body}");
        }
        let want =
            format!("coredns_cache_entries{{{label},type=\"success\",view=\"\",zones=\".\"}} 3");
        assert!(body.contains(&want), "{be}: {body}");
    }
}

#[test]
fn metrics_text_is_coredns() {
    let recorded_path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/compat/recorded/metrics-forward-cache.txt"
    );
    let Ok(recorded) = std::fs::read_to_string(recorded_path) else {
        println!("SKIP metrics_text_is_coredns: recorded metrics not found");
        return;
    };
    let up = Up::start(Mode::Answer(300));
    let mport = free_port();
    let s = TestServer::start(
        &format!(
            ".:{{port}} {{\n prometheus 127.0.0.1:{mport}\n cache 30\n forward . 127.0.0.1:{}\n}}\n",
            up.port
        ),
        "epoll",
    );
    s.dig(&["a.example.org", "A"]);
    s.dig(&["a.example.org", "A"]);
    up.set(Mode::Nx(60));
    s.dig(&["b.example.org", "A"]);
    let body = scrape(mport);
    // HELP and TYPE lines exactly as CoreDNS prints them, and the label sets.
    for l in recorded
        .lines()
        .filter(|l| l.starts_with("# ") && l.contains("coredns_cache_"))
    {
        assert!(body.lines().any(|b| b == l), "missing {l:?}\n{body}");
    }
    let shape = |l: &str| {
        let (m, _) = l.rsplit_once(' ').unwrap_or((l, ""));
        let (name, labels) = m.split_once('{').unwrap_or((m, ""));
        let keys: Vec<&str> = labels
            .split(',')
            .filter_map(|kv| kv.split_once('=').map(|x| x.0))
            .collect();
        format!("{name} {}", keys.join(","))
    };
    let rec: std::collections::BTreeSet<String> = recorded
        .lines()
        .filter(|l| l.starts_with("coredns_cache_"))
        .map(shape)
        .collect();
    let ours: std::collections::BTreeSet<String> = body
        .lines()
        .filter(|l| l.starts_with("coredns_cache_"))
        .map(shape)
        .collect();
    assert_eq!(rec, ours);
}

#[test]
fn prefetch_and_serve_stale_through_forward() {
    for be in backends() {
        // 90% of a 2 s TTL: the first hit is already in the prefetch window.
        let up = Up::start(Mode::Answer(2));
        let s = TestServer::start(
            &format!(
                ".:{{port}} {{\n cache 2 {{\n  prefetch 1 1m 90%\n }}\n forward . 127.0.0.1:{}\n}}\n",
                up.port
            ),
            be,
        );
        assert_eq!(
            answers(&s.dig(&["p.example.org", "A"])),
            ["p.example.org. 2 IN A 192.0.2.1"],
            "{be}"
        );
        let out = s.dig(&["p.example.org", "A"]);
        assert!(
            answers(&out)[0].ends_with("192.0.2.1"),
            "{be}: served from the cache"
        );
        assert!(
            wait_for(Duration::from_secs(3), || up.count() == 2),
            "{be}: one prefetch"
        );
        let out = s.dig(&["p.example.org", "A"]);
        assert!(
            answers(&out)[0].ends_with("192.0.2.2"),
            "{be}: the prefetched answer: {out}"
        );
    }
    for be in backends() {
        // serve_stale immediate: TTL 0 from the stale entry, refresh behind it.
        let up = Up::start(Mode::Answer(1));
        let s = TestServer::start(
            &format!(
                ".:{{port}} {{\n cache 1 {{\n  serve_stale\n }}\n forward . 127.0.0.1:{}\n}}\n",
                up.port
            ),
            be,
        );
        s.dig(&["s.example.org", "A"]);
        std::thread::sleep(Duration::from_millis(1100));
        up.set(Mode::Answer(60));
        let out = s.dig(&["s.example.org", "A"]);
        assert_eq!(
            answers(&out),
            ["s.example.org. 0 IN A 192.0.2.1"],
            "{be}: {out}"
        );
        assert!(
            wait_for(Duration::from_secs(3), || up.count() == 2),
            "{be}: refreshed"
        );
        let out = s.dig(&["s.example.org", "A"]);
        assert_eq!(
            answers(&out),
            ["s.example.org. 1 IN A 192.0.2.2"],
            "{be}: {out}"
        );
    }
    for be in backends() {
        // verify with a timeout: a dead upstream gives the stale entry quickly.
        let up = Up::start(Mode::Answer(1));
        let s = TestServer::start(
            &format!(
                ".:{{port}} {{\n cache 1 {{\n  serve_stale 1h verify 200ms 30s\n }}\n forward . 127.0.0.1:{}\n}}\n",
                up.port
            ),
            be,
        );
        s.dig(&["v.example.org", "A"]);
        std::thread::sleep(Duration::from_millis(1100));
        up.set(Mode::Drop);
        let t = Instant::now();
        let out = s.dig(&["v.example.org", "A"]);
        assert!(t.elapsed() < Duration::from_millis(1500), "{be}");
        assert_eq!(
            answers(&out),
            ["v.example.org. 30 IN A 192.0.2.1"],
            "{be}: {out}"
        );
        // Back up: verify answers with the fresh record.
        up.set(Mode::Answer(60));
        std::thread::sleep(Duration::from_millis(50));
        let out = s.dig(&["v.example.org", "A"]);
        assert!(answers(&out)[0].contains(" IN A 192.0.2."), "{be}: {out}");
    }
}

#[test]
fn reload_keeps_an_unchanged_cache() {
    for be in backends() {
        let up = Up::start(Mode::Answer(300));
        let conf = |extra: &str, ttl: u32| {
            format!(
                ".:{{port}} {{\n{extra} cache {ttl}\n forward . 127.0.0.1:{}\n}}\n",
                up.port
            )
        };
        let s = TestServer::start(&conf("", 30), be);
        let path = s.dir.0.join("Corefile");
        let port = s.port.to_string();
        s.dig(&["r.example.org", "A"]);
        assert_eq!(up.count(), 1);
        let reload = |text: String| {
            let before = s
                .lines()
                .iter()
                .filter(|l| l.contains("Reloading complete"))
                .count();
            std::fs::write(&path, text.replace("{port}", &port)).expect("write");
            s.signal(Signal::SIGUSR1);
            assert!(
                wait_for(Duration::from_secs(5), || {
                    s.lines()
                        .iter()
                        .filter(|l| l.contains("Reloading complete"))
                        .count()
                        > before
                }),
                "{be}: reload"
            );
        };
        // Another plugin changes, the cache does not: the entry survives.
        reload(conf(" log\n", 30));
        let out = s.dig(&["r.example.org", "A"]);
        assert_eq!(
            dig_flags(&out),
            "qr aa rd ra",
            "{be}: from the cache: {out}"
        );
        assert_eq!(up.count(), 1, "{be}");
        // The cache's configuration changes: a new, empty cache.
        reload(conf(" log\n", 31));
        s.dig(&["r.example.org", "A"]);
        assert_eq!(up.count(), 2, "{be}");
    }
}

/// nsd serving example.org on a free port (None when not installed).
struct Nsd {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl Nsd {
    fn start() -> Option<Self> {
        let bin = ["/usr/sbin/nsd", "/usr/local/sbin/nsd"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())?;
        let dir = TempDir::new("cache-nsd");
        let port = free_port();
        dir.write(
            "example.org.zone",
            "$ORIGIN example.org.\n$TTL 300\n@ IN SOA ns1 host 1 3600 600 86400 8\n@ IN NS ns1\nns1 IN A 127.0.0.1\nwww IN A 192.0.2.1\nalias 120 IN CNAME www\n",
        );
        let d = dir.0.display();
        let conf = format!(
            "server:\n  ip-address: 127.0.0.1@{port}\n  port: {port}\n  username: \"\"\n  zonesdir: \"{d}\"\n  pidfile: \"{d}/nsd.pid\"\n  database: \"\"\n  zonelistfile: \"{d}/zone.list\"\n  xfrdfile: \"{d}/xfrd.state\"\n  chroot: \"\"\n  server-count: 1\n  verbosity: 0\nremote-control:\n  control-enable: no\nzone:\n  name: example.org\n  zonefile: example.org.zone\n"
        );
        let c = dir.write("nsd.conf", &conf);
        let child = Command::new(bin)
            .args(["-d", "-c"])
            .arg(&c)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let n = Self {
            child,
            port,
            _dir: dir,
        };
        let q = query(1, "www.example.org", 1, 1, None);
        let ready = wait_for(Duration::from_secs(10), || {
            let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
            let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
            let _ = s.send_to(&q, ("127.0.0.1", port));
            s.recv(&mut [0u8; 512]).is_ok()
        });
        ready.then_some(n)
    }
}

impl Drop for Nsd {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, Signal::SIGTERM);
        if !wait_for(Duration::from_secs(3), || {
            matches!(self.child.try_wait(), Ok(Some(_)))
        }) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

#[test]
fn cache_in_front_of_nsd() {
    let Some(nsd) = Nsd::start() else {
        println!("SKIP cache_in_front_of_nsd: nsd not installed (Debian package nsd)");
        return;
    };
    for be in backends() {
        let s = TestServer::start(
            &format!(
                ".:{{port}} {{\n cache 60\n forward . 127.0.0.1:{}\n}}\n",
                nsd.port
            ),
            be,
        );
        let out = s.dig(&["www.example.org", "A"]);
        assert_eq!(
            answers(&out),
            ["www.example.org. 60 IN A 192.0.2.1"],
            "{be}: {out}"
        );
        // The CNAME chain is flattened to one TTL (min(120, 300) capped at 60).
        let out = s.dig(&["alias.example.org", "A"]);
        assert_eq!(
            answers(&out),
            [
                "alias.example.org. 60 IN CNAME www.example.org.",
                "www.example.org. 60 IN A 192.0.2.1"
            ],
            "{be}: {out}"
        );
        std::thread::sleep(Duration::from_millis(1100));
        let out = s.dig(&["ALIAS.example.org", "A"]);
        let a = answers(&out);
        assert!(
            a[0].starts_with("alias.example.org. 59 IN CNAME")
                || a[0].starts_with("alias.example.org. 58 IN CNAME"),
            "{be}: {out}"
        );
        assert!(
            out.contains(";ALIAS.example.org."),
            "{be}: the client's case"
        );
        // NXDOMAIN: nsd sends the SOA with min(TTL, MINIMUM) = 8; the cache
        // uses that record's TTL.
        let out = s.dig(&["nope.example.org", "A"]);
        assert_eq!(dig_status(&out), "NXDOMAIN", "{be}");
        assert!(
            section(&out, "AUTHORITY")[0].contains(" 8 IN SOA "),
            "{be}: {out}"
        );
        let out = s.dig(&["nope.example.org", "A"]);
        assert_eq!(dig_flags(&out), "qr aa rd", "{be}: from the cache: {out}");
        // NODATA.
        let out = s.dig(&["+tcp", "www.example.org", "MX"]);
        assert_eq!(
            (dig_status(&out), answers(&out).len()),
            ("NOERROR".into(), 0),
            "{be}"
        );
        let out = s.dig(&["www.example.org", "MX"]);
        assert_eq!(dig_flags(&out), "qr aa rd", "{be}: {out}");
    }
}
