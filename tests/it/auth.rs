//! Authoritative data end to end: *file* (lookup rules, reload, bad input),
//! *transfer* (AXFR/IXFR over TCP, refusals, NOTIFY), *hosts*, *auto* and
//! *secondary* (against a real primary), with dig and kdig on both backends.

use std::net::UdpSocket;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::*;

const ZONE: &str = "$TTL 3600
$ORIGIN example.org.
@        IN SOA  ns1 hostmaster ( 2024010101 7200 3600 1209600 300 )
         IN NS   ns1
         IN NS   ns2.example.net.
         IN MX   10 mail
ns1      IN A    192.0.2.1
mail     IN A    192.0.2.10
         IN AAAA 2001:db8::10
www      IN CNAME web
web      IN A    192.0.2.20
sub      IN NS   ns.sub
ns.sub   IN A    192.0.2.30
*.wild   IN TXT  \"wild\"
b.c.ent  IN A    192.0.2.50
loop1    IN CNAME loop2
loop2    IN CNAME loop1
";

fn zone_with_serial(serial: u32, web: &str) -> String {
    ZONE.replace("2024010101", &serial.to_string())
        .replace("192.0.2.20", web)
}

/// Records of a dig/kdig answer (lines that are not comments), normalised.
fn records(out: &str) -> Vec<String> {
    out.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with(';'))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

/// kdig with stdout and stderr (errors such as a refused transfer go to stderr).
fn kdig_all(s: &TestServer, args: &[&str]) -> String {
    let out = Command::new("kdig")
        .arg("@127.0.0.1")
        .arg("-p")
        .arg(s.port.to_string())
        .args(["+time=2", "+retry=0"])
        .args(args)
        .output()
        .expect("kdig (install knot-dnsutils)");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn path(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

#[test]
fn file_lookup_rules_dig_kdig() {
    let dir = TempDir::new("auth-file");
    let db = dir.write("db.example.org", ZONE);
    for be in backends() {
        let s = TestServer::start(
            &format!(".:{{port}} {{\n file {} example.org\n}}\n", path(&db)),
            be,
        );
        let out = s.dig(&["www.example.org", "A"]);
        assert_eq!(dig_status(&out), "NOERROR", "{be}: {out}");
        assert_eq!(dig_flags(&out), "qr aa rd", "{be}");
        assert_eq!(
            section(&out, "ANSWER"),
            vec![
                "www.example.org. 3600 IN CNAME web.example.org.",
                "web.example.org. 3600 IN A 192.0.2.20"
            ],
            "{be}"
        );
        assert_eq!(
            section(&out, "AUTHORITY"),
            vec![
                "example.org. 3600 IN NS ns1.example.org.",
                "example.org. 3600 IN NS ns2.example.net."
            ],
            "{be}"
        );
        // MX: additional A/AAAA of the in-zone target.
        let out = s.dig(&["example.org", "MX"]);
        let add = section(&out, "ADDITIONAL");
        assert!(
            add.contains(&"mail.example.org. 3600 IN A 192.0.2.10".to_owned()),
            "{be}: {out}"
        );
        assert!(
            add.contains(&"mail.example.org. 3600 IN AAAA 2001:db8::10".to_owned()),
            "{be}: {out}"
        );
        // Apex NS with glue, empty authority.
        let out = s.dig(&["example.org", "NS"]);
        assert!(section(&out, "AUTHORITY").is_empty(), "{be}: {out}");
        assert!(
            section(&out, "ADDITIONAL")
                .contains(&"ns1.example.org. 3600 IN A 192.0.2.1".to_owned())
        );
        // Referral without AA, glue.
        let out = s.kdig(&["+tcp", "host.sub.example.org", "A"]);
        assert!(out.contains("NOERROR"), "{be}: {out}");
        assert!(
            !out.contains(" aa"),
            "{be}: referral must not be authoritative: {out}"
        );
        assert!(out.contains("ns.sub.example.org."), "{be}: {out}");
        // NXDOMAIN with the SOA's own TTL; ENT NODATA; wildcard; CNAME loop once each.
        let out = s.dig(&["nope.example.org", "A"]);
        assert_eq!(dig_status(&out), "NXDOMAIN");
        assert_eq!(
            section(&out, "AUTHORITY"),
            vec![
                "example.org. 3600 IN SOA ns1.example.org. hostmaster.example.org. 2024010101 7200 3600 1209600 300"
            ]
        );
        let out = s.dig(&["c.ent.example.org", "A"]);
        assert_eq!(dig_status(&out), "NOERROR");
        assert!(section(&out, "ANSWER").is_empty());
        let out = s.dig(&["x.wild.example.org", "TXT"]);
        assert_eq!(
            section(&out, "ANSWER"),
            vec!["x.wild.example.org. 3600 IN TXT \"wild\""]
        );
        let out = s.dig(&["loop1.example.org", "A"]);
        assert_eq!(dig_status(&out), "NOERROR");
        assert_eq!(section(&out, "ANSWER").len(), 2, "{be}: {out}");
        // ANY: NODATA. AXFR without transfer: REFUSED, not authoritative.
        let out = s.dig(&["example.org", "ANY"]);
        assert_eq!(
            (dig_status(&out).as_str(), section(&out, "ANSWER").len()),
            ("NOERROR", 0)
        );
        let out = s.dig(&["+tcp", "example.org", "AXFR"]);
        assert!(out.contains("Transfer failed"), "{be}: {out}");
        let out = kdig_all(&s, &["+tcp", "example.org", "AXFR"]);
        assert!(out.contains("REFUSED"), "{be}: {out}");
        // Outside the zone, nothing after file: REFUSED.
        let out = s.dig(&["www.example.net", "A"]);
        assert_eq!(dig_status(&out), "REFUSED", "{be}: {out}");
    }
}

#[test]
fn truncation_keeps_29_of_40_records() {
    let dir = TempDir::new("auth-tc");
    let mut z = ZONE.to_owned();
    for i in 0..40 {
        z.push_str(&format!("big IN A 192.0.2.{}\n", i + 100));
    }
    let db = dir.write("db", &z);
    for be in backends() {
        let s = TestServer::start(
            &format!(
                "example.org:{{port}} {{\n log . \"{{proto}}|{{>rflags}}|{{rsize}}\"\n file {}\n}}\n",
                path(&db)
            ),
            be,
        );
        let q = query(7, "big.example.org", 1, 1, None);
        let r = s.udp_raw(&q, Duration::from_secs(2)).expect("reply");
        assert_ne!(r[2] & 0x02, 0, "{be}: TC");
        assert_eq!(u16::from_be_bytes([r[6], r[7]]), 29, "{be}");
        // The log line shows the reply the client got (CoreDNS's recorder holds the
        // message the scrub truncates), with the size before the truncation.
        let l = s
            .wait_line(|l| l.starts_with("[INFO] udp|"))
            .expect("udp line");
        let f: Vec<&str> = l.trim_start_matches("[INFO] ").split('|').collect();
        assert_eq!(f[1], "qr,aa,tc,rd", "{be}: {l}");
        assert!(f[2].parse::<usize>().is_ok_and(|n| n > 512), "{be}: {l}");
        let out = s.dig(&["+tcp", "big.example.org", "A"]);
        assert_eq!(section(&out, "ANSWER").len(), 40, "{be}");
        let l = s
            .wait_line(|l| l.starts_with("[INFO] tcp|"))
            .expect("tcp line");
        assert!(l.starts_with("[INFO] tcp|qr,aa,rd|"), "{be}: {l}");
    }
}

#[test]
fn transfer_axfr_ixfr_and_refusals() {
    let dir = TempDir::new("auth-xfr");
    let mut z = ZONE.to_owned();
    // Enough records for several messages of at most 63000 octets.
    for i in 0..3000 {
        z.push_str(&format!("h{i} IN TXT \"{}\"\n", "x".repeat(40)));
    }
    let db = dir.write("db", &z);
    let net = dir.write(
        "db.net",
        "$TTL 60\n@ SOA ns admin 1 2 3 4 5\n@ NS ns\nns A 192.0.2.1\n",
    );
    for be in backends() {
        let s = TestServer::start(
            &format!(
                "example.org:{{port}} {{\n transfer {{\n  to *\n }}\n file {}\n}}\n\
                 example.net:{{port}} {{\n transfer {{\n  to 192.0.2.99\n }}\n file {} example.net\n}}\n",
                path(&db),
                path(&net)
            ),
            be,
        );
        let out = s.dig(&["example.org", "AXFR"]);
        let recs = records(&out);
        // SOA, 2 NS, every other record, SOA.
        assert_eq!(
            recs.len(),
            15 + 3000 + 1,
            "{be}: {}",
            &out[out.len().saturating_sub(600)..]
        );
        assert!(recs[0].contains(" SOA "), "{be}");
        assert!(recs[recs.len() - 1].contains(" SOA "), "{be}");
        let msgs = out
            .lines()
            .find(|l| l.contains("XFR size:"))
            .unwrap_or_default()
            .to_owned();
        assert!(msgs.contains("messages"), "{be}: {msgs}");
        assert!(
            !msgs.contains(" 1 messages"),
            "{be}: one message for a big zone: {msgs}"
        );
        assert!(
            s.wait_line(|l| l.starts_with("[INFO] plugin/transfer: Outgoing transfer of 3016 records of zone \"example.org.\" to 127.0.0.1 for 2024010101 SOA serial")).is_some(),
            "{be}: {:?}",
            s.lines()
        );
        // kdig AXFR too.
        let out = s.kdig(&["example.org", "AXFR"]);
        assert!(out.contains("Received"), "{be}: {out}");
        // IXFR with the current serial: one SOA; with an older one: the whole zone.
        let out = s.kdig(&["example.org", "IXFR=2024010101"]);
        let recs = records(&out);
        assert_eq!(recs.len(), 1, "{be}: {out}");
        assert!(recs[0].contains(" SOA "), "{be}");
        assert!(
            s.wait_line(|l| l.contains("Outgoing noop, incremental transfer for up to date zone"))
                .is_some()
        );
        let out = s.dig(&["example.org", "IXFR=2024010100"]);
        assert_eq!(records(&out).len(), 3016, "{be}");
        // Over UDP: REFUSED. Not in `to`: REFUSED.
        let q = query(9, "example.org", 252, 1, None);
        let r = s.udp_raw(&q, Duration::from_secs(2)).expect("reply");
        assert_eq!(r[3] & 0x0f, 5, "{be}: UDP AXFR");
        let out = kdig_all(&s, &["example.net", "AXFR"]);
        assert!(out.contains("REFUSED"), "{be}: {out}");
    }
}

#[test]
fn reload_by_serial_and_bad_files_keep_serving() {
    let dir = TempDir::new("auth-reload");
    let db = dir.write("db", &zone_with_serial(1, "192.0.2.20"));
    for be in backends() {
        write_atomic(&db, zone_with_serial(1, "192.0.2.20")).expect("write");
        let s = TestServer::start(
            &format!(
                "example.org:{{port}} {{\n file {} {{\n  reload 300ms\n }}\n}}\n",
                path(&db)
            ),
            be,
        );
        let a = || section(&s.dig(&["web.example.org", "A"]), "ANSWER");
        assert_eq!(a(), vec!["web.example.org. 3600 IN A 192.0.2.20"]);
        // Same serial: not reloaded.
        write_atomic(&db, zone_with_serial(1, "192.0.2.21")).expect("write");
        std::thread::sleep(Duration::from_millis(800));
        assert_eq!(a(), vec!["web.example.org. 3600 IN A 192.0.2.20"], "{be}");
        // New serial: reloaded, logged.
        write_atomic(&db, zone_with_serial(2, "192.0.2.22")).expect("write");
        wait_for("reload", Duration::from_secs(5), || {
            a() == vec!["web.example.org. 3600 IN A 192.0.2.22"]
        });
        let want = format!(
            "[INFO] plugin/file: Successfully reloaded zone \"example.org.\" in \"{}\" with 2 SOA serial",
            path(&db)
        );
        assert!(
            s.wait_line(|l| l == want).is_some(),
            "{be}: {:?}",
            s.lines()
        );
        // A malformed file: the old zone keeps serving, the error is logged with file:line.
        write_atomic(&db, zone_with_serial(3, "192.0.2.300")).expect("write");
        let line = s
            .wait_line(|l| l.starts_with("[ERROR] plugin/file: Parsing zone \"example.org.\""))
            .expect("parse error logged");
        assert!(
            line.contains("bad A A: \"192.0.2.300\" at line: 11:"),
            "{be}: {line}"
        );
        assert_eq!(a(), vec!["web.example.org. 3600 IN A 192.0.2.22"], "{be}");
        // A missing file: logged, still serving.
        std::fs::remove_file(&db).expect("rm");
        assert!(
            s.wait_line(
                |l| l.starts_with("[ERROR] plugin/file: Failed to open zone \"example.org.\"")
            )
            .is_some()
        );
        assert_eq!(a(), vec!["web.example.org. 3600 IN A 192.0.2.22"], "{be}");
    }
}

#[test]
fn missing_file_at_start_servfails_until_it_appears() {
    for be in backends() {
        let dir = TempDir::new("auth-missing");
        let db = dir.0.join("db");
        let s = TestServer::start(
            &format!(
                "example.org:{{port}} {{\n file {} {{\n  reload 200ms\n }}\n}}\n",
                path(&db)
            ),
            be,
        );
        let want = format!(
            "[WARNING] plugin/file: Failed to open \"open {}: no such file or directory\": trying again in 200ms",
            path(&db)
        );
        assert!(s.lines().contains(&want), "{be}: {:?}", s.lines());
        assert_eq!(dig_status(&s.dig(&["web.example.org", "A"])), "SERVFAIL");
        write_atomic(&db, ZONE).expect("write");
        wait_for("load", Duration::from_secs(5), || {
            dig_status(&s.dig(&["web.example.org", "A"])) == "NOERROR"
        });
    }
}

fn start_fails(corefile: &str) -> String {
    let dir = TempDir::new("auth-fail");
    let conf = dir.write(
        "Corefile",
        &corefile.replace("{port}", &free_port().to_string()),
    );
    let out = Command::new(bin())
        .arg("-conf")
        .arg(&conf)
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert!(
        !out.status.success(),
        "must fail: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_zone_files_fail_startup_with_file_and_line() {
    let dir = TempDir::new("auth-bad");
    let bad = dir.write("bad.db", "$TTL 60\n@ SOA ns admin 1 2 3 4 5\nwww A 1.2.3\n");
    let err = start_fails(&format!(
        "example.org:{{port}} {{\n file {}\n}}\n",
        path(&bad)
    ));
    assert!(
        err.contains(&format!(
            "plugin/file: failed to parse file \"{0}\" for origin example.org. with error {0}: dns: bad A A: \"1.2.3\" at line: 3:7",
            path(&bad)
        )),
        "{err}"
    );
    let inc = dir.write(
        "inc.db",
        "$TTL 60\n@ SOA ns admin 1 2 3 4 5\n$INCLUDE missing.db\n",
    );
    let err = start_fails(&format!(
        "example.org:{{port}} {{\n file {}\n}}\n",
        path(&inc)
    ));
    assert!(err.contains("failed to open `missing.db' as `"), "{err}");
    assert!(err.contains("at line: 3:"), "{err}");
    let nosoa = dir.write("nosoa.db", "$TTL 60\nwww A 192.0.2.1\n");
    let err = start_fails(&format!(
        "example.org:{{port}} {{\n file {}\n}}\n",
        path(&nosoa)
    ));
    assert!(
        err.contains("has no SOA record for origin example.org."),
        "{err}"
    );
    // A 10 MB TXT line.
    let big = dir.write(
        "big.db",
        &format!(
            "$TTL 60\n@ SOA ns admin 1 2 3 4 5\nbig TXT \"{}\"\n",
            "a".repeat(10 << 20)
        ),
    );
    let err = start_fails(&format!(
        "example.org:{{port}} {{\n file {}\n}}\n",
        path(&big)
    ));
    assert!(
        err.contains("is longer than 65535\"") || err.contains("longer than 65535"),
        "{err}"
    );
    assert!(err.contains("at line: 3:"), "{err}");
    // A missing file without reload is fatal.
    let err = start_fails(&format!(
        "example.org:{{port}} {{\n file {} {{\n  reload 0\n }}\n}}\n",
        path(&dir.0.join("none.db"))
    ));
    assert!(err.contains("plugin/file: open "), "{err}");
    assert!(err.contains("no such file or directory"), "{err}");
}

#[test]
fn out_of_zone_records_are_ignored_with_a_warning() {
    let dir = TempDir::new("auth-ooz");
    let db = dir.write("db", &format!("{ZONE}www.example.net. IN A 192.0.2.99\n"));
    let s = TestServer::start(
        &format!("example.org:{{port}} {{\n file {}\n}}\n", path(&db)),
        "epoll",
    );
    let want = format!(
        "[WARNING] plugin/file: {}:18: out-of-zone record \"www.example.net.\" ignored for origin example.org.",
        path(&db)
    );
    assert!(s.lines().contains(&want), "{:?}", s.lines());
    assert_eq!(dig_status(&s.dig(&["web.example.org", "A"])), "NOERROR");
}

#[test]
fn hosts_inline_and_ptr() {
    for be in backends() {
        let s = TestServer::start(
            ".:{port} {\n hosts /nonexistent/hosts example.org 2.0.192.in-addr.arpa {\n  192.0.2.1 www.example.org\n  ttl 60\n }\n}\n",
            be,
        );
        let out = s.dig(&["www.example.org", "A"]);
        assert_eq!(dig_flags(&out), "qr aa rd", "{be}");
        assert_eq!(
            section(&out, "ANSWER"),
            vec!["www.example.org. 60 IN A 192.0.2.1"]
        );
        let out = s.dig(&["-x", "192.0.2.1"]);
        assert_eq!(
            section(&out, "ANSWER"),
            vec!["1.2.0.192.in-addr.arpa. 60 IN PTR www.example.org."],
            "{be}"
        );
        let out = s.kdig(&["nope.example.org", "A"]);
        assert!(out.contains("SERVFAIL"), "{be}: {out}");
    }
}

#[test]
fn notify_out_on_reload() {
    let dir = TempDir::new("auth-notify");
    let db = dir.write("db", &zone_with_serial(1, "192.0.2.20"));
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let nport = sock.local_addr().expect("addr").port();
    let s = TestServer::start(
        &format!(
            "example.org:{{port}} {{\n transfer {{\n  to 127.0.0.1:{nport}\n }}\n file {} {{\n  reload 200ms\n }}\n}}\n",
            path(&db)
        ),
        "epoll",
    );
    // The startup NOTIFY, then one after the reload.
    let mut buf = [0u8; 512];
    for serial in [1u32, 2] {
        if serial == 2 {
            write_atomic(&db, zone_with_serial(2, "192.0.2.21")).expect("write");
        }
        let (n, from) = sock.recv_from(&mut buf).expect("notify");
        assert!(n > 12);
        assert_eq!((buf[2] >> 3) & 0x0f, 4, "opcode NOTIFY");
        assert_ne!(buf[2] & 0x04, 0, "AA");
        // Acknowledge so no retries follow.
        let mut reply = buf[..n].to_vec();
        reply[2] |= 0x80;
        sock.send_to(&reply, from).expect("ack");
    }
    drop(s);
}

/// A knotd primary on 127.0.0.1 serving `example.org` from `zone`, sending
/// NOTIFY to `notify_port`. `None` (with the reason printed) when knotd is
/// not installed (Debian package `knot`).
struct Knot {
    child: std::process::Child,
    port: u16,
    dir: TempDir,
}

impl Knot {
    fn start(zone: &str, notify_port: u16) -> Option<Self> {
        let knotd = ["/usr/sbin/knotd", "/usr/bin/knotd"]
            .into_iter()
            .find(|p| Path::new(p).exists());
        let Some(knotd) = knotd else {
            eprintln!("skipping: knotd not installed (Debian package `knot`)");
            return None;
        };
        let dir = TempDir::new("knot");
        let port = free_port();
        dir.write("example.org.zone", zone);
        let d = path(&dir.0);
        let conf = dir.write(
            "knot.conf",
            &format!(
                "server:\n    listen: 127.0.0.1@{port}\n    rundir: {d}\n    pidfile: {d}/knot.pid\n\
                 database:\n    storage: {d}\n\
                 remote:\n  - id: ringdns\n    address: 127.0.0.1@{notify_port}\n\
                 acl:\n  - id: xfr\n    address: 127.0.0.1\n    action: transfer\n\
                 template:\n  - id: default\n    storage: {d}\n\
                 zone:\n  - domain: example.org\n    file: example.org.zone\n    notify: ringdns\n    acl: xfr\n\
                 log:\n  - target: stderr\n    any: info\n"
            ),
        );
        let child = Command::new(knotd)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let k = Self { child, port, dir };
        // Ready when it answers.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let out = Command::new("dig")
                .args([
                    "@127.0.0.1",
                    "-p",
                    &port.to_string(),
                    "+time=1",
                    "+tries=1",
                    "+short",
                ])
                .args(["example.org", "SOA"])
                .output()
                .ok()?;
            if !out.stdout.is_empty() {
                return Some(k);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("knotd did not start");
    }

    /// Changes the zone file and tells knotd to reload it (it then NOTIFYs).
    fn update(&self, zone: &str) {
        self.dir.write("example.org.zone", zone);
        let _ = Command::new("knotc")
            .arg("-c")
            .arg(self.dir.0.join("knot.conf"))
            .args(["zone-reload", "example.org"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Knot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn secondary_transfers_from_knot_and_follows_notify() {
    for be in backends() {
        let port = free_port();
        let Some(knot) = Knot::start(&zone_with_serial(1, "192.0.2.20"), port) else {
            return;
        };
        let corefile = format!(
            "example.org:{port} {{\n transfer {{\n  to *\n }}\n secondary {{\n  transfer from 127.0.0.1:{}\n }}\n}}\n",
            knot.port
        );
        let dir = TempDir::new("secondary");
        let conf = dir.write("Corefile", &corefile);
        let mut child = Command::new(bin())
            .arg("-conf")
            .arg(&conf)
            .env("RINGDNS_BACKEND", be)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let dig = |name: &str| {
            let out = Command::new("dig")
                .args(["@127.0.0.1", "-p", &port.to_string(), "+time=1", "+tries=1"])
                .args([name, "A"])
                .output()
                .expect("dig");
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        wait_for("first transfer", Duration::from_secs(10), || {
            section(&dig("web.example.org"), "ANSWER")
                == vec!["web.example.org. 3600 IN A 192.0.2.20"]
        });
        // Answers like file: NXDOMAIN with the SOA, referrals, CNAME chase.
        let out = dig("nope.example.org");
        assert_eq!(dig_status(&out), "NXDOMAIN", "{be}: {out}");
        assert_eq!(section(&dig("www.example.org"), "ANSWER").len(), 2, "{be}");
        // knotd reloads a new serial and NOTIFYs: the zone follows.
        knot.update(&zone_with_serial(2, "192.0.2.21"));
        wait_for("notify and transfer", Duration::from_secs(10), || {
            section(&dig("web.example.org"), "ANSWER")
                == vec!["web.example.org. 3600 IN A 192.0.2.21"]
        });
        // The secondary zone transfers out too.
        let out = Command::new("dig")
            .args(["@127.0.0.1", "-p", &port.to_string(), "+time=2", "+tries=1"])
            .args(["example.org", "AXFR"])
            .output()
            .expect("dig");
        assert_eq!(
            records(&String::from_utf8_lossy(&out.stdout)).len(),
            16,
            "{be}"
        );
        let _ = child.kill();
        let _ = child.wait();
        // Transfer and NOTIFY lines come from the file package in CoreDNS.
        let mut log = String::new();
        if let Some(mut out) = child.stdout.take() {
            let _ = std::io::Read::read_to_string(&mut out, &mut log);
        }
        for want in [
            format!(
                "[INFO] plugin/file: Transferred: example.org. from 127.0.0.1:{}",
                knot.port
            ),
            "[INFO] plugin/file: Notify from 127.0.0.1 for example.org.: checking transfer".into(),
        ] {
            assert!(log.lines().any(|l| l == want), "{be}: no {want}\n{log}");
        }
    }
}

#[test]
fn secondary_without_primary_servfails_and_retries() {
    let dead = free_port();
    let s = TestServer::start(
        &format!(
            "example.org:{{port}} {{\n secondary {{\n  transfer from 127.0.0.1:{dead}\n }}\n}}\n"
        ),
        "epoll",
    );
    assert_eq!(dig_status(&s.dig(&["www.example.org", "A"])), "SERVFAIL");
    let line = s
        .wait_line(|l| l.starts_with("[WARNING] plugin/secondary: All 'example.org.' masters failed to transfer, retrying in 250ms:"))
        .expect("retry logged");
    assert!(line.contains("connection refused"), "{line}");
}

#[test]
fn auto_serves_a_directory() {
    // `zones` links to `real`; the server's working directory is a sibling of `dir`
    // (both under the temporary directory), so `directory` can be relative.
    let dir = TempDir::new("auto");
    let real = dir.0.join("real");
    std::fs::create_dir(&real).expect("mkdir");
    std::os::unix::fs::symlink("real", dir.0.join("zones")).expect("symlink");
    let base = dir.0.file_name().and_then(|n| n.to_str()).expect("name");
    for be in backends() {
        std::fs::write(real.join("db.example.org"), ZONE).expect("write");
        let s = TestServer::start(
            &format!(
                ".:{{port}} {{\n auto {{\n  directory ../{base}/zones\n  reload 200ms\n }}\n}}\n"
            ),
            be,
        );
        assert_eq!(
            section(&s.dig(&["web.example.org", "A"]), "ANSWER"),
            vec!["web.example.org. 3600 IN A 192.0.2.20"],
            "{be}"
        );
        // CoreDNS resolves the links of the directory (filepath.EvalSymlinks) and
        // keeps a relative path relative; reloads are the file package's lines.
        let file = format!("../{base}/real/db.example.org");
        let want = format!("[INFO] plugin/auto: Inserting zone `example.org.' from: {file}");
        assert!(
            s.wait_line(|l| l == want).is_some(),
            "{be}: no {want}: {:?}",
            s.lines()
        );
        std::fs::write(
            real.join("db.example.org"),
            zone_with_serial(2, "192.0.2.21"),
        )
        .expect("write");
        let want = format!(
            "[INFO] plugin/file: Successfully reloaded zone \"example.org.\" in \"{file}\" with 2 SOA serial"
        );
        assert!(
            s.wait_line(|l| l == want).is_some(),
            "{be}: no {want}: {:?}",
            s.lines()
        );
        std::fs::write(
            real.join("db.example.net"),
            "$TTL 60\n$ORIGIN example.net.\n@ SOA ns admin 1 2 3 4 5\n@ NS ns\nns A 192.0.2.1\n",
        )
        .expect("write");
        wait_for("new zone", Duration::from_secs(5), || {
            dig_status(&s.dig(&["ns.example.net", "A"])) == "NOERROR"
        });
        std::fs::remove_file(real.join("db.example.net")).expect("rm");
        wait_for("zone removed", Duration::from_secs(5), || {
            dig_status(&s.dig(&["ns.example.net", "A"])) == "REFUSED"
        });
        assert!(
            s.wait_line(|l| l == "[INFO] plugin/auto: Deleting zone `example.net.'")
                .is_some()
        );
    }
}

/// CNAME targets the zone's own plugin does not serve are asked of the server
/// (CoreDNS's self-lookup): through another block's *file*, through *forward*
/// (the parked path), NXDOMAIN and NODATA from the target, a target nothing serves,
/// and a loop between two blocks that ends after CoreDNS's 9 levels. *auto*
/// shares the lookup; the self-lookups show in *log* as CoreDNS's do.
#[test]
fn cname_targets_elsewhere_are_looked_up_through_the_server() {
    let dir = TempDir::new("auth-selflookup");
    let org = dir.write(
        "db.example.org",
        "$ORIGIN example.org.\n@ 3600 IN SOA ns1 admin 1 7200 3600 1209600 300\n\
         @ 3600 IN NS ns1\nns1 3600 IN A 192.0.2.53\n\
         www 3600 IN CNAME www.example.net.\next 3600 IN CNAME host.fwd.test.\n\
         nx 3600 IN CNAME nope.example.net.\nloop 3600 IN CNAME loop.example.net.\n\
         out 3600 IN CNAME www.elsewhere.test.\n",
    );
    let net = dir.write(
        "db.example.net",
        "$ORIGIN example.net.\n@ 3600 IN SOA ns1 admin 1 7200 3600 1209600 300\n\
         @ 3600 IN NS ns1\nns1 3600 IN A 192.0.2.54\nwww 300 IN A 192.0.2.1\n\
         loop 3600 IN CNAME loop.example.org.\n",
    );
    let fwd = dir.write(
        "db.fwd.test",
        "$ORIGIN fwd.test.\n@ 3600 IN SOA ns1 admin 1 7200 3600 1209600 300\n\
         @ 3600 IN NS ns1\nhost 60 IN A 198.51.100.7\n",
    );
    let autodir = dir.0.join("auto");
    std::fs::create_dir(&autodir).expect("mkdir");
    std::fs::write(
        autodir.join("db.auto.test"),
        "$ORIGIN auto.test.\n@ 3600 IN SOA ns1 admin 1 7200 3600 1209600 300\n\
         @ 3600 IN NS ns1\nns1 3600 IN A 192.0.2.55\nalias 600 IN CNAME host.fwd.test.\n",
    )
    .expect("write");
    for be in backends() {
        let up = TestServer::start(
            &format!("fwd.test:{{port}} {{\n file {}\n}}\n", path(&fwd)),
            be,
        );
        let s = TestServer::start(
            &format!(
                "example.org:{{port}} {{\n log\n file {}\n}}\n\
                 example.net:{{port}} {{\n file {}\n}}\n\
                 fwd.test:{{port}} {{\n log\n forward . 127.0.0.1:{}\n}}\n\
                 auto.test:{{port}} {{\n auto {{\n  directory {}\n }}\n}}\n",
                path(&org),
                path(&net),
                up.port,
                path(&autodir)
            ),
            be,
        );
        let ns = "example.org. 3600 IN NS ns1.example.org.";
        let soa =
            "example.org. 3600 IN SOA ns1.example.org. admin.example.org. 1 7200 3600 1209600 300";
        for tcp in ["+notcp", "+tcp"] {
            let out = s.dig(&[tcp, "www.example.org", "A"]);
            assert_eq!(dig_status(&out), "NOERROR", "{be} {tcp}: {out}");
            assert_eq!(dig_flags(&out), "qr aa rd", "{be} {tcp}");
            assert_eq!(
                section(&out, "ANSWER"),
                vec![
                    "www.example.org. 3600 IN CNAME www.example.net.",
                    "www.example.net. 300 IN A 192.0.2.1"
                ],
                "{be} {tcp}: {out}"
            );
            assert_eq!(section(&out, "AUTHORITY"), vec![ns], "{be} {tcp}");
            // Through forward: the query parks while the upstream answers.
            let out = s.dig(&[tcp, "ext.example.org", "A"]);
            assert_eq!(
                section(&out, "ANSWER"),
                vec![
                    "ext.example.org. 3600 IN CNAME host.fwd.test.",
                    "host.fwd.test. 60 IN A 198.51.100.7"
                ],
                "{be} {tcp}: {out}"
            );
            assert_eq!(dig_flags(&out), "qr aa rd", "{be} {tcp}");
        }
        // The target's NXDOMAIN and NODATA, with this zone's SOA.
        let out = s.dig(&["nx.example.org", "A"]);
        assert_eq!(dig_status(&out), "NXDOMAIN", "{be}: {out}");
        assert_eq!(
            section(&out, "ANSWER"),
            vec!["nx.example.org. 3600 IN CNAME nope.example.net."]
        );
        assert_eq!(section(&out, "AUTHORITY"), vec![soa], "{be}");
        let out = s.dig(&["www.example.org", "AAAA"]);
        assert_eq!(dig_status(&out), "NOERROR", "{be}: {out}");
        assert_eq!(section(&out, "ANSWER").len(), 1, "{be}: {out}");
        assert_eq!(section(&out, "AUTHORITY"), vec![soa], "{be}");
        // Nothing serves the target: the server's REFUSED reads as a success.
        let out = s.dig(&["out.example.org", "A"]);
        assert_eq!(dig_status(&out), "NOERROR", "{be}: {out}");
        assert_eq!(
            section(&out, "ANSWER"),
            vec!["out.example.org. 3600 IN CNAME www.elsewhere.test."]
        );
        assert_eq!(section(&out, "AUTHORITY"), vec![ns], "{be}");
        // A loop between two blocks: each level adds its CNAME until the
        // ninth self-lookup fails.
        let out = s.dig(&["loop.example.org", "A"]);
        assert_eq!(dig_status(&out), "SERVFAIL", "{be}: {out}");
        let answer = section(&out, "ANSWER");
        assert_eq!(answer.len(), 9, "{be}: {out}");
        assert_eq!(
            answer[0],
            "loop.example.org. 3600 IN CNAME loop.example.net."
        );
        assert_eq!(
            answer[1],
            "loop.example.net. 3600 IN CNAME loop.example.org."
        );
        // auto answers through the same lookup.
        let out = s.dig(&["alias.auto.test", "A"]);
        assert_eq!(
            section(&out, "ANSWER"),
            vec![
                "alias.auto.test. 600 IN CNAME host.fwd.test.",
                "host.fwd.test. 60 IN A 198.51.100.7"
            ],
            "{be}: {out}"
        );
        // The self-lookup is logged before the query that made it, with the
        // client's address and ID.
        let lines = s.lines();
        let ext = lines
            .iter()
            .position(|l| l.contains("\"A IN ext.example.org. udp "))
            .expect("ext logged");
        let id = lines[ext]
            .split(" - ")
            .nth(1)
            .and_then(|r| r.split(' ').next());
        let host = lines
            .iter()
            .position(|l| {
                l.contains("\"A IN host.fwd.test. udp ")
                    && l.split(" - ").nth(1).and_then(|r| r.split(' ').next()) == id
            })
            .expect("self-lookup logged");
        assert!(host < ext, "{be}: {lines:?}");
    }
}

/// *tsig*: signed queries answered and signed (dig and kdig verify the
/// signatures), unsigned ones refused where required, NOTAUTH with the TSIG
/// error for an unknown key, a wrong secret or a stale time, a zone transfer
/// signed message by message, and a forwarded (parked) query's reply signed.
#[test]
fn tsig_verifies_requests_and_signs_replies() {
    const SECRET: &str = "c2VjcmV0LXNlY3JldC1zZWNyZXQ=";
    let dir = TempDir::new("auth-tsig");
    let mut z = ZONE.to_owned();
    for i in 0..3000 {
        z.push_str(&format!("h{i} IN TXT \"{}\"\n", "x".repeat(40)));
    }
    let db = dir.write("db", &z);
    let keys = dir.write(
        "keys",
        &format!("key \"file-key.\" {{\n algorithm hmac-sha512;\n secret \"{SECRET}\";\n}};\n"),
    );
    for be in backends() {
        let up = TestServer::start(".:{port} {\n whoami\n}\n", be);
        let s = TestServer::start(
            &format!(
                "example.org:{{port}} {{\n tsig {{\n  secret key.example. {SECRET}\n  secrets {}\n  require all\n }}\n transfer {{\n  to *\n }}\n file {}\n}}\n\
                 fwd.test:{{port}} {{\n tsig {{\n  require none\n }}\n forward . 127.0.0.1:{}\n}}\n",
                path(&keys),
                path(&db),
                up.port
            ),
            be,
        );
        let good = format!("hmac-sha256:key.example.:{SECRET}");
        // Signed: answered, and the reply's signature verifies.
        let out = s.dig(&["-y", &good, "www.example.org", "A"]);
        assert_eq!(dig_status(&out), "NOERROR", "{be}: {out}");
        assert!(out.contains(";; TSIG PSEUDOSECTION:"), "{be}: {out}");
        assert!(
            !out.contains("failure") && !out.contains("Couldn't verify"),
            "{be}: {out}"
        );
        assert_eq!(
            section(&out, "ANSWER"),
            [
                "www.example.org. 3600 IN CNAME web.example.org.",
                "web.example.org. 3600 IN A 192.0.2.20"
            ],
            "{be}"
        );
        // The key from the secrets file, another algorithm, over TCP with kdig.
        let out = s.kdig(&[
            "+tcp",
            "-y",
            &format!("hmac-sha512:file-key.:{SECRET}"),
            "mail.example.org",
            "AAAA",
        ]);
        assert!(
            out.contains("NOERROR") && out.contains("2001:db8::10"),
            "{be}: {out}"
        );
        assert!(
            out.contains(";; TSIG PSEUDOSECTION:") && !out.to_lowercase().contains("fail"),
            "{be}: {out}"
        );
        // Unsigned where every type requires TSIG: REFUSED.
        assert_eq!(
            dig_status(&s.dig(&["www.example.org", "A"])),
            "REFUSED",
            "{be}"
        );
        // Unknown key, wrong secret: NOTAUTH with BADKEY / BADSIG, unsigned.
        let out = s.dig(&[
            "-y",
            &format!("hmac-sha256:nokey.:{SECRET}"),
            "www.example.org",
            "A",
        ]);
        assert!(
            out.contains("status: NOTAUTH") && out.contains("BADKEY"),
            "{be}: {out}"
        );
        let out = s.dig(&[
            "-y",
            "hmac-sha256:key.example.:b3RoZXItc2VjcmV0",
            "www.example.org",
            "A",
        ]);
        assert!(
            out.contains("status: NOTAUTH") && out.contains("BADSIG"),
            "{be}: {out}"
        );
        // A signed zone transfer over several messages: each one verifies.
        let out = s.dig(&["-y", &good, "example.org", "AXFR"]);
        assert!(
            !out.contains("failure") && !out.contains("Couldn't verify"),
            "{be}: {}",
            &out[..out.len().min(2000)]
        );
        let recs: Vec<&str> = out
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with(';') && !l.contains("TSIG"))
            .collect();
        assert_eq!(recs.len(), 15 + 3000 + 1, "{be}");
        let msgs = out.lines().find(|l| l.contains("XFR size:")).unwrap_or("");
        assert!(!msgs.contains(" 1 messages"), "{be}: {msgs}");
        // Outside the zones nothing is required; a signed query through *forward*
        // (the query parks and resumes) gets a signed reply.
        let out = s.dig(&["-y", &good, "a.fwd.test", "A"]);
        assert_eq!(dig_status(&out), "NOERROR", "{be}: {out}");
        assert!(
            out.contains(";; TSIG PSEUDOSECTION:") && !out.contains("failure"),
            "{be}: {out}"
        );
        assert_eq!(dig_status(&s.dig(&["a.fwd.test", "A"])), "NOERROR", "{be}");
    }
}

/// The `key file` argument for a test key of `tests/data/dnssec`.
fn dnssec_key(base: &str) -> String {
    format!("{}/tests/data/dnssec/{base}", env!("CARGO_MANIFEST_DIR"))
}

/// `delv` validating from the KSK of `tests/data/dnssec` as the trust anchor.
fn delv(s: &TestServer, anchor: &Path, args: &[&str]) -> String {
    let out = Command::new("delv")
        .arg("@127.0.0.1")
        .arg("-p")
        .arg(s.port.to_string())
        .args(["-a", &path(anchor), "+root=example.org"])
        .args(args)
        .output()
        .expect("delv (install bind9-dnsutils)");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// RRSIG fields of a dig line before the times, and after them up to the
/// signature: `owner TTL covered alg labels origttl tag signer`.
fn rrsig_fields(line: &str) -> String {
    let f: Vec<&str> = line.split(' ').collect();
    assert_eq!(f.get(3), Some(&"RRSIG"), "{line}");
    [f[0], f[1], f[4], f[5], f[6], f[7], f[10], f[11]].join(" ")
}

#[test]
fn dnssec_signs_replies_that_delv_validates() {
    let dir = TempDir::new("auth-dnssec");
    let db = dir.write("db", ZONE);
    let anchor = ksk_anchor(&dir);
    for be in backends() {
        let mport = free_port();
        let s = TestServer::start(
            &format!(
                "example.org:{{port}} {{\n prometheus 127.0.0.1:{mport}\n dnssec {{\n  key file {} {}\n }}\n file {}\n}}\n",
                dnssec_key("Kexample.org.+013+21055"),
                dnssec_key("Kexample.org.+015+38960.private"),
                path(&db)
            ),
            be,
        );
        // Without DO: the reply as the file plugin writes it.
        let out = s.dig(&["web.example.org", "A"]);
        assert_eq!(
            section(&out, "ANSWER"),
            ["web.example.org. 3600 IN A 192.0.2.20"],
            "{be}"
        );
        assert!(!out.contains("RRSIG"), "{be}: {out}");
        // DO: each RRset signed by the ZSK (split keys), in its section.
        let out = s.dig(&["+dnssec", "www.example.org", "A"]);
        let an = section(&out, "ANSWER");
        assert_eq!(an.len(), 4, "{be}: {out}");
        assert_eq!(
            [rrsig_fields(&an[2]), rrsig_fields(&an[3])],
            [
                "www.example.org. 3600 CNAME 13 3 3600 21055 example.org.",
                "web.example.org. 3600 A 13 3 3600 21055 example.org."
            ],
            "{be}"
        );
        let ns = section(&out, "AUTHORITY");
        assert_eq!(
            rrsig_fields(&ns[2]),
            "example.org. 3600 NS 13 2 3600 21055 example.org.",
            "{be}"
        );
        // DNSKEY at the apex: both keys, signed by the KSK alone, AA.
        let out = s.dig(&["+dnssec", "example.org", "DNSKEY"]);
        assert_eq!(dig_flags(&out), "qr aa rd", "{be}");
        let an = section(&out, "ANSWER");
        assert_eq!(an.len(), 3, "{be}: {out}");
        assert_eq!(
            rrsig_fields(&an[2]),
            "example.org. 3600 DNSKEY 15 2 3600 38960 example.org.",
            "{be}"
        );
        // A name that does not exist: NOERROR with the black lie.
        let out = s.dig(&["+dnssec", "nope.example.org", "A"]);
        assert_eq!(dig_status(&out), "NOERROR", "{be}");
        let ns = section(&out, "AUTHORITY");
        assert_eq!(ns.len(), 4, "{be}: {out}");
        assert_eq!(
            ns[3],
            "nope.example.org. 3600 IN NSEC \\000.nope.example.org. HINFO TXT AAAA LOC SRV CERT SSHFP RRSIG NSEC TLSA HIP OPENPGPKEY SPF",
            "{be}"
        );
        // A referral without DS: an NSEC next to the delegation point's name.
        let out = s.dig(&["+dnssec", "+norec", "sub.example.org", "A"]);
        let ns = section(&out, "AUTHORITY");
        assert!(
            ns.iter().any(|l| l.starts_with("sub.example.org. 3600 IN NSEC sub\\000.example.org. A NS ")),
            "{be}: {out}"
        );
        // BIND's validator accepts them all: answers, denials, the wildcard.
        for (q, want) in [
            (&["www.example.org", "A"][..], "; fully validated"),
            (&["example.org", "DNSKEY"], "; fully validated"),
            (&["x.wild.example.org", "TXT"], "; fully validated"),
            (&["mail.example.org", "AAAA"], "; fully validated"),
            (
                &["nope.example.org", "A"],
                "; negative response, fully validated",
            ),
            (
                &["example.org", "TXT"],
                "; negative response, fully validated",
            ),
        ] {
            let out = delv(&s, &anchor, q);
            assert!(out.contains(want), "{be}: {q:?}: {out}");
        }
        // TCP as well.
        let out = delv(&s, &anchor, &["+tcp", "web.example.org", "A"]);
        assert!(out.contains("; fully validated"), "{be}: {out}");
        // The signature cache's metrics.
        let m = scrape(mport);
        assert!(
            m.contains("coredns_dnssec_cache_entries{server=\"dns://:")
                && m.contains("type=\"signature\"}"),
            "{be}: {m}"
        );
        assert!(
            m.contains("coredns_dnssec_cache_hits_total{server=\"dns://:"),
            "{be}"
        );
        assert!(
            m.contains("coredns_dnssec_cache_misses_total{server=\"dns://:"),
            "{be}"
        );
    }
}

/// The trust anchor file for `delv`: the KSK of `tests/data/dnssec`.
fn ksk_anchor(dir: &TempDir) -> std::path::PathBuf {
    let ksk = std::fs::read_to_string(dnssec_key("Kexample.org.+015+38960.key")).expect("key");
    let f: Vec<&str> = ksk
        .lines()
        .find(|l| !l.starts_with(';'))
        .map(|l| l.split_whitespace().skip(3).collect())
        .expect("DNSKEY line");
    dir.write(
        "anchor.conf",
        &format!(
            "trust-anchors {{ example.org. static-key {} {} {} \"{}\"; }};\n",
            f[0],
            f[1],
            f[2],
            f[3..].concat()
        ),
    )
}

#[test]
fn sign_writes_a_zone_that_bind_verifies_and_file_serves() {
    let dir = TempDir::new("auth-sign");
    let db = dir.write("db.example.org", ZONE);
    let anchor = ksk_anchor(&dir);
    let out = path(&dir.0);
    let signed = format!("{out}/db.example.org.signed");
    let corefile = format!(
        "example.org:{{port}} {{\n file {signed} {{\n  reload 1s\n }}\n sign {} {{\n  key file {}\n  directory {out}\n }}\n}}\n",
        path(&db),
        dnssec_key("Kexample.org.+015+38960")
    );
    for (i, be) in backends().into_iter().enumerate() {
        let _ = std::fs::remove_file(&signed);
        let s = TestServer::start(&corefile, be);
        let why = format!(
            "[INFO] plugin/sign: Signing \"example.org.\" because open {signed}: no such file or directory"
        );
        assert!(s.wait_line(|l| l == why).is_some(), "{be}: {:?}", s.lines());
        let done = s
            .wait_line(|l| l.starts_with("[INFO] plugin/sign: Successfully signed zone"))
            .unwrap_or_else(|| panic!("{be}: {:?}", s.lines()));
        assert!(
            done.starts_with(&format!(
                "[INFO] plugin/sign: Successfully signed zone \"example.org.\" in \"{signed}\" with key tags \"38960\" and "
            )) && done.contains(" SOA serial, elapsed "),
            "{be}: {done}"
        );
        // BIND's verifier: every RRset signed, the NSEC chain complete (-z: the
        // CSK has the SEP flag).
        let v = Command::new("dnssec-verify")
            .args(["-z", "-o", "example.org", &signed])
            .output()
            .expect("dnssec-verify (install bind9-utils)");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&v.stdout),
            String::from_utf8_lossy(&v.stderr)
        );
        assert!(
            v.status.success() && text.contains("Zone fully signed"),
            "{be}: {text}"
        );
        // *file* picks the signed zone up; its answers validate from the KSK.
        wait_for("the signed zone", Duration::from_secs(5), || {
            s.dig(&["+dnssec", "example.org", "DNSKEY"])
                .contains("DNSKEY\t257 3 15")
        });
        for (q, want) in [
            (&["web.example.org", "A"][..], "; fully validated"),
            (&["x.wild.example.org", "TXT"], "; fully validated"),
            (
                &["nope.example.org", "A"],
                "; negative response, fully validated",
            ),
            (
                &["web.example.org", "MX"],
                "; negative response, fully validated",
            ),
        ] {
            let out = delv(&s, &anchor, q);
            assert!(out.contains(want), "{be}: {q:?}: {out}");
        }
        // Started again on a signed file still valid: left alone.
        if i == 0 {
            drop(s);
            let s = TestServer::start(&corefile, be);
            let skip = format!(
                "[INFO] plugin/sign: Skipping signing zone \"example.org.\" in \"{signed}\": signatures are valid"
            );
            assert!(
                s.wait_line(|l| l == skip).is_some(),
                "{be}: {:?}",
                s.lines()
            );
        }
    }
}

/// `secondary` with `catalog` (RFC 9432): a ringdns primary serves a catalog
/// zone and its members; the secondary adds the members from the catalog's
/// primaries, follows the catalog through NOTIFY (a member removed, one added,
/// one reset by a new member ID), keeps the last good catalog when a new one
/// is broken, and with member zones configured skips the others.
#[test]
fn secondary_catalog_zones() {
    let dir = TempDir::new("catalog");
    let member = |name: &str, ip: &str| {
        dir.write(
            &format!("db.{name}"),
            &format!(
                "$ORIGIN {name}.\n$TTL 60\n@ SOA ns admin 1 3600 600 86400 60\n@ NS ns\nns A 192.0.2.53\nwww A {ip}\n"
            ),
        )
    };
    let catalog = |serial: u32, members: &str| {
        format!(
            "$ORIGIN catalog.example.\n$TTL 0\n@ SOA invalid. hostmaster.invalid. {serial} 3600 600 86400 0\n@ NS invalid.\nversion TXT \"2\"\n{members}"
        )
    };
    let zones = [
        ("zone1.example", member("zone1.example", "192.0.2.1")),
        ("zone2.example", member("zone2.example", "192.0.2.2")),
        ("zone3.example", member("zone3.example", "192.0.2.3")),
    ];
    let cat = dir.write(
        "db.catalog",
        &catalog(
            1,
            "a.zones PTR zone1.example.\nb.zones PTR zone2.example.\n",
        ),
    );
    for be in backends() {
        write_atomic(
            &cat,
            catalog(
                1,
                "a.zones PTR zone1.example.\nb.zones PTR zone2.example.\n",
            ),
        )
        .expect("write");
        let (p, sp) = (free_port(), free_port());
        let mut primary = format!(
            "catalog.example:{p} {{\n file {} {{\n  reload 200ms\n }}\n transfer {{\n  to 127.0.0.1:{sp}\n }}\n}}\n",
            path(&cat)
        );
        for (z, f) in &zones {
            primary.push_str(&format!(
                "{z}:{p} {{\n file {}\n transfer {{\n  to 127.0.0.1:{sp}\n }}\n}}\n",
                path(f)
            ));
        }
        let _primary = TestServer::start(&primary, be);
        let s = TestServer::start(
            &format!(
                ".:{sp} {{\n secondary catalog.example {{\n  transfer from 127.0.0.1:{p}\n  catalog\n }}\n}}\n"
            ),
            be,
        );
        let dig = |name: &str| {
            let out = Command::new("dig")
                .args(["@127.0.0.1", "-p", &sp.to_string(), "+time=1", "+tries=1"])
                .args([name, "A"])
                .output()
                .expect("dig");
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let www = |z: &str| section(&dig(&format!("www.{z}")), "ANSWER");
        wait_for("members", Duration::from_secs(10), || {
            www("zone1.example") == ["www.zone1.example. 60 IN A 192.0.2.1"]
                && www("zone2.example") == ["www.zone2.example. 60 IN A 192.0.2.2"]
        });
        assert!(www("zone3.example").is_empty(), "{be}");
        for want in [
            "[INFO] plugin/secondary: Added catalog member zone zone1.example. from catalog catalog.example.",
            "[INFO] plugin/secondary: Added catalog member zone zone2.example. from catalog catalog.example.",
            "[INFO] plugin/secondary: Parsed catalog zone catalog.example. with 2 member zones",
            "[INFO] plugin/file: Transferred: zone1.example. from 127.0.0.1:",
        ] {
            assert!(
                s.wait_line(|l| l.starts_with(want)).is_some(),
                "{be}: {want}: {:?}",
                s.lines()
            );
        }
        // The catalog zone itself is served too.
        let out = dig("version.catalog.example");
        assert_eq!(dig_status(&out), "NOERROR", "{be}: {out}");
        // A new catalog: zone2 gone, zone3 added, zone1 under a new member ID.
        write_atomic(
            &cat,
            catalog(
                2,
                "a2.zones PTR zone1.example.\nc.zones PTR zone3.example.\n",
            ),
        )
        .expect("write");
        wait_for("catalog update", Duration::from_secs(10), || {
            www("zone3.example") == ["www.zone3.example. 60 IN A 192.0.2.3"]
                && www("zone2.example").is_empty()
        });
        assert_eq!(
            www("zone1.example"),
            ["www.zone1.example. 60 IN A 192.0.2.1"],
            "{be}"
        );
        for want in [
            "[INFO] plugin/secondary: Reset catalog member zone zone1.example. from catalog.example. after member ID changed from a to a2",
            "[INFO] plugin/secondary: Added catalog member zone zone3.example. from catalog catalog.example.",
            "[INFO] plugin/secondary: Removed catalog member zone zone2.example. from catalog catalog.example.",
        ] {
            assert!(
                s.wait_line(|l| l == want).is_some(),
                "{be}: {want}: {:?}",
                s.lines()
            );
        }
        // A broken catalog (two PTR records for one member) is refused and
        // the members stay.
        write_atomic(
            &cat,
            catalog(
                3,
                "a2.zones PTR zone1.example.\na2.zones PTR zone2.example.\n",
            ),
        )
        .expect("write");
        let want = "[WARNING] plugin/file: Notify from 127.0.0.1 for catalog.example.: transfer failed: catalog member a2.zones.catalog.example. must have exactly one PTR record";
        assert!(
            s.wait_line(|l| l == want).is_some(),
            "{be}: {:?}",
            s.lines()
        );
        assert_eq!(
            www("zone3.example"),
            ["www.zone3.example. 60 IN A 192.0.2.3"],
            "{be}"
        );
        assert!(www("zone2.example").is_empty(), "{be}");
        // Member zones configured: only those are taken.
        write_atomic(
            &cat,
            catalog(
                4,
                "a.zones PTR zone1.example.\nb.zones PTR zone2.example.\n",
            ),
        )
        .expect("write");
        let only = TestServer::start(
            &format!(
                ".:{{port}} {{\n secondary catalog.example {{\n  transfer from 127.0.0.1:{p}\n  catalog zone1.example\n }}\n}}\n"
            ),
            be,
        );
        let want = "[WARNING] plugin/secondary: Skipped 1 member zones from catalog catalog.example.: outside configured member zones";
        assert!(
            only.wait_line(|l| l == want).is_some(),
            "{be}: {:?}",
            only.lines()
        );
        wait_for("restricted member", Duration::from_secs(10), || {
            section(&only.dig(&["www.zone1.example", "A"]), "ANSWER")
                == ["www.zone1.example. 60 IN A 192.0.2.1"]
        });
        assert!(
            section(&only.dig(&["www.zone2.example", "A"]), "ANSWER").is_empty(),
            "{be}"
        );
    }
}

/// A member moving between catalogs (RFC 9432 `coo`): the catalog that holds
/// it names the new one, which takes it over keeping its data (same member
/// ID); a catalog that does not hold a zone cannot remove it.
#[test]
fn secondary_catalog_change_of_ownership() {
    let dir = TempDir::new("catalog-coo");
    let zone1 = dir.write(
        "db.zone1",
        "$ORIGIN zone1.example.\n$TTL 60\n@ SOA ns admin 1 3600 600 86400 60\n@ NS ns\nns A 192.0.2.53\nwww A 192.0.2.1\n",
    );
    let catalog = |origin: &str, serial: u32, members: &str| {
        format!(
            "$ORIGIN {origin}.\n$TTL 0\n@ SOA invalid. hostmaster.invalid. {serial} 3600 600 86400 0\n@ NS invalid.\nversion TXT \"2\"\n{members}"
        )
    };
    let old = dir.write(
        "db.old",
        &catalog(
            "old.example",
            1,
            "a.zones PTR zone1.example.\ncoo.a.zones PTR new.example.\n",
        ),
    );
    let new = dir.write(
        "db.new",
        &catalog("new.example", 1, "a.zones PTR zone1.example.\n"),
    );
    for be in backends() {
        write_atomic(
            &old,
            catalog(
                "old.example",
                1,
                "a.zones PTR zone1.example.\ncoo.a.zones PTR new.example.\n",
            ),
        )
        .expect("write");
        let (p, sp) = (free_port(), free_port());
        let mut primary = String::new();
        for (z, f, opts) in [
            ("old.example", &old, " {\n  reload 200ms\n }"),
            ("new.example", &new, ""),
            ("zone1.example", &zone1, ""),
        ] {
            primary.push_str(&format!(
                "{z}:{p} {{\n file {}{opts}\n transfer {{\n  to 127.0.0.1:{sp}\n }}\n}}\n",
                path(f)
            ));
        }
        let _primary = TestServer::start(&primary, be);
        let s = TestServer::start(
            &format!(
                ".:{sp} {{\n secondary old.example new.example {{\n  transfer from 127.0.0.1:{p}\n  catalog\n }}\n}}\n"
            ),
            be,
        );
        for want in [
            "[INFO] plugin/secondary: Added catalog member zone zone1.example. from catalog old.example.",
            "[INFO] plugin/secondary: Migrated catalog member zone zone1.example. from catalog old.example. to new.example., preserving state for member ID a",
        ] {
            assert!(
                s.wait_line(|l| l == want).is_some(),
                "{be}: {want}: {:?}",
                s.lines()
            );
        }
        let dig = || {
            let out = Command::new("dig")
                .args(["@127.0.0.1", "-p", &sp.to_string(), "+time=1", "+tries=1"])
                .args(["www.zone1.example", "A"])
                .output()
                .expect("dig");
            section(&String::from_utf8_lossy(&out.stdout), "ANSWER")
        };
        wait_for("member", Duration::from_secs(10), || {
            dig() == ["www.zone1.example. 60 IN A 192.0.2.1"]
        });
        // The old catalog drops it: not its zone any more, so it stays.
        write_atomic(&old, catalog("old.example", 2, "")).expect("write");
        assert!(
            s.wait_line(|l| l
                == "[INFO] plugin/secondary: Parsed catalog zone old.example. with 0 member zones")
                .is_some(),
            "{be}: {:?}",
            s.lines()
        );
        assert_eq!(dig(), ["www.zone1.example. 60 IN A 192.0.2.1"], "{be}");
        assert!(
            !s.lines()
                .iter()
                .any(|l| l.contains("Removed catalog member")),
            "{be}: {:?}",
            s.lines()
        );
    }
}
