//! Operations: /metrics against the text CoreDNS serves, /health, /ready,
//! lameduck, and endpoints that stay up across reloads.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::util::*;

/// family -> (help, type, label-name sets, le values)
type Shape = BTreeMap<String, (String, String, BTreeSet<Vec<String>>, BTreeSet<String>)>;

/// Asserts what a Prometheus scrape rejects: a sample (name and labels) twice, or
/// a family's HELP or TYPE twice.
fn assert_each_sample_once(text: &str) {
    let mut seen = BTreeSet::new();
    for l in text.lines().filter(|l| !l.is_empty()) {
        let key = if l.starts_with('#') {
            l.splitn(4, ' ').take(3).collect::<Vec<_>>().join(" ")
        } else {
            l.rsplit_once(' ').map_or(l, |(m, _)| m).to_owned()
        };
        assert!(seen.insert(key), "repeated in the scrape: {l}\n{text}");
    }
}

fn shape(text: &str) -> Shape {
    assert_each_sample_once(text);
    let mut m: Shape = BTreeMap::new();
    for l in text.lines() {
        if let Some(r) = l.strip_prefix("# HELP ") {
            let (name, help) = r.split_once(' ').unwrap_or((r, ""));
            m.entry(name.to_owned()).or_default().0 = help.to_owned();
        } else if let Some(r) = l.strip_prefix("# TYPE ") {
            let (name, t) = r.split_once(' ').unwrap_or((r, ""));
            m.entry(name.to_owned()).or_default().1 = t.to_owned();
        } else if !l.starts_with('#') && !l.is_empty() {
            let (metric, _) = l.rsplit_once(' ').unwrap_or((l, ""));
            let (name, labels) = metric.split_once('{').unwrap_or((metric, ""));
            let fam = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|f| m.contains_key(*f)))
                .unwrap_or(name)
                .to_owned();
            let mut names = Vec::new();
            let mut le = None;
            for kv in labels
                .trim_end_matches('}')
                .split("\",")
                .filter(|x| !x.is_empty())
            {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                if k == "le" {
                    le = Some(v.trim_matches('"').to_owned());
                } else {
                    names.push(k.to_owned());
                }
            }
            let e = m.entry(fam).or_default();
            e.2.insert(names);
            if let Some(le) = le {
                e.3.insert(le);
            }
        }
    }
    m
}

#[test]
fn metrics_match_recorded_coredns() {
    let recorded_path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/compat/recorded/metrics-forward-cache.txt"
    );
    let Ok(recorded) = std::fs::read_to_string(recorded_path) else {
        eprintln!("skipping: {recorded_path} not found");
        return;
    };
    let rec = shape(&recorded);
    for be in backends() {
        let mport = free_port();
        let s = TestServer::start(
            &format!(".:{{port}} {{\n prometheus 127.0.0.1:{mport}\n errors\n log\n whoami\n}}\n"),
            be,
        );
        s.dig(&["a.example.org", "A"]);
        s.dig(&["+tcp", "b.example.org", "AAAA"]);
        s.dig(&["+dnssec", "c.example.org", "A"]);
        std::thread::sleep(Duration::from_millis(100));
        let (status, head, body) = http(mport, "GET", "/metrics").expect("scrape");
        assert_eq!(status, 200);
        assert!(
            head.contains(
                "Content-Type: text/plain; version=0.0.4; charset=utf-8; escaping=underscores"
            ),
            "{head}"
        );
        let ours = shape(&body);
        // Families CoreDNS always shows, and those these queries produce.
        for fam in [
            "coredns_build_info",
            "coredns_dns_do_requests_total",
            "coredns_dns_request_duration_seconds",
            "coredns_dns_request_size_bytes",
            "coredns_dns_requests_total",
            "coredns_dns_response_size_bytes",
            "coredns_dns_responses_total",
            "coredns_forward_healthcheck_broken_total",
            "coredns_forward_max_concurrent_rejects_total",
            "coredns_health_request_duration_seconds",
            "coredns_health_request_failures_total",
            "coredns_hosts_reload_timestamp_seconds",
            "coredns_local_localhost_requests_total",
            "coredns_panics_total",
            "coredns_plugin_enabled",
            "coredns_reload_failed_total",
            "process_cpu_seconds_total",
            "process_max_fds",
            "process_open_fds",
            "process_resident_memory_bytes",
            "process_start_time_seconds",
            "process_virtual_memory_bytes",
            "process_virtual_memory_max_bytes",
            "process_network_receive_bytes_total",
            "process_network_transmit_bytes_total",
        ] {
            let (r, o) = (
                rec.get(fam).expect(fam),
                ours.get(fam)
                    .unwrap_or_else(|| panic!("{be}: missing {fam}")),
            );
            assert_eq!(r.0, o.0, "{be}: HELP of {fam}");
            assert_eq!(r.1, o.1, "{be}: TYPE of {fam}");
            assert_eq!(r.2, o.2, "{be}: label names of {fam}");
            assert_eq!(r.3, o.3, "{be}: buckets of {fam}");
        }
        assert!(body.contains(&format!(
            "coredns_dns_requests_total{{family=\"1\",proto=\"tcp\",server=\"dns://:{}\",type=\"AAAA\",view=\"\",zone=\".\"}} 1",
            s.port
        )));
        assert!(body.contains(&format!(
            "coredns_dns_responses_total{{plugin=\"errors\",rcode=\"NOERROR\",server=\"dns://:{}\",view=\"\",zone=\".\"}} 3",
            s.port
        )));
        let (status, _, _) = http(mport, "GET", "/").expect("404");
        assert_eq!(status, 404);
    }
}

/// Queries the server answers itself before any chain are counted as CoreDNS's server
/// counts them: `zone="dropped"`, `plugin=""` (no block for the name, the class gate,
/// a message without a question).
#[test]
fn metrics_count_dropped_queries() {
    for be in backends() {
        let mport = free_port();
        let s = TestServer::start(
            &format!("example.org:{{port}} {{\n prometheus 127.0.0.1:{mport}\n whoami\n}}\n"),
            be,
        );
        assert_eq!(
            dig_status(&s.dig(&["a.other.test", "A"])),
            "REFUSED",
            "{be}"
        );
        assert_eq!(
            dig_status(&s.dig(&["CH", "x.example.org", "TXT"])),
            "REFUSED",
            "{be}"
        );
        let bare = [0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        let r = s.udp_raw(&bare, Duration::from_secs(2)).expect("reply");
        assert_eq!(r[3] & 0x0f, 2, "{be}: SERVFAIL");
        assert_eq!(
            dig_status(&s.dig(&["a.example.org", "A"])),
            "NOERROR",
            "{be}"
        );
        std::thread::sleep(Duration::from_millis(100));
        let (_, _, body) = http(mport, "GET", "/metrics").expect("scrape");
        let p = s.port;
        for line in [
            format!(
                "coredns_dns_requests_total{{family=\"1\",proto=\"udp\",server=\"dns://:{p}\",type=\"A\",view=\"\",zone=\"dropped\"}} 1"
            ),
            format!(
                "coredns_dns_requests_total{{family=\"1\",proto=\"udp\",server=\"dns://:{p}\",type=\"TXT\",view=\"\",zone=\"dropped\"}} 1"
            ),
            format!(
                "coredns_dns_requests_total{{family=\"1\",proto=\"udp\",server=\"dns://:{p}\",type=\"other\",view=\"\",zone=\"dropped\"}} 1"
            ),
            format!(
                "coredns_dns_responses_total{{plugin=\"\",rcode=\"REFUSED\",server=\"dns://:{p}\",view=\"\",zone=\"dropped\"}} 2"
            ),
            format!(
                "coredns_dns_responses_total{{plugin=\"\",rcode=\"SERVFAIL\",server=\"dns://:{p}\",view=\"\",zone=\"dropped\"}} 1"
            ),
            format!(
                "coredns_dns_request_duration_seconds_count{{server=\"dns://:{p}\",view=\"\",zone=\"dropped\"}} 3"
            ),
            format!(
                "coredns_dns_requests_total{{family=\"1\",proto=\"udp\",server=\"dns://:{p}\",type=\"A\",view=\"\",zone=\"example.org.\"}} 1"
            ),
        ] {
            assert!(
                body.lines().any(|l| l == line),
                "{be}: missing {line}\n{}",
                body.lines()
                    .filter(|l| l.contains("dropped"))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }
}

#[test]
fn health_ready_lameduck_and_reload() {
    for be in backends() {
        let (hport, rport) = (free_port(), free_port());
        let mut s = TestServer::start(
            &format!(
                ".:{{port}} {{\n health 127.0.0.1:{hport} {{\n  lameduck 1s\n }}\n ready 127.0.0.1:{rport}\n whoami\n}}\n"
            ),
            be,
        );
        for m in ["GET", "HEAD", "POST"] {
            let (st, head, body) = http(hport, m, "/health").expect("health");
            assert_eq!(st, 200, "{be} {m}");
            assert!(head.contains("Content-Length: 2"));
            if m != "HEAD" {
                assert_eq!(body, "OK");
            }
        }
        assert_eq!(http(hport, "GET", "/healthz").map(|r| r.0), Some(404));
        assert_eq!(http(hport, "GET", "/health/").map(|r| r.0), Some(404));
        assert_eq!(
            http(rport, "GET", "/ready").map(|r| (r.0, r.2)),
            Some((200, "OK".to_owned()))
        );
        // Endpoints stay up across a reload, and across a failed one.
        let conf = s.dir.0.join("Corefile");
        let text = std::fs::read_to_string(&conf).expect("read");
        std::fs::write(&conf, text.replace("whoami", "whoami\n log")).expect("write");
        s.signal(Signal::SIGUSR1);
        s.wait_line(|l| l == "[INFO] Reloading complete")
            .expect("reload");
        assert_eq!(http(hport, "GET", "/health").map(|r| r.0), Some(200));
        std::fs::write(&conf, text.replace("whoami", "whoami\n bogus")).expect("write");
        s.signal(Signal::SIGUSR1);
        s.wait_line(|l| l.starts_with("[ERROR] Restart failed"))
            .expect("failed reload");
        assert_eq!(http(hport, "GET", "/health").map(|r| r.0), Some(200));
        assert_eq!(http(rport, "GET", "/ready").map(|r| r.0), Some(200));
        // SIGTERM: ready goes first, health stays during lameduck, DNS still answers.
        s.signal(Signal::SIGTERM);
        s.wait_line(|l| l == "[INFO] plugin/health: Going into lameduck mode for 1s")
            .expect("lameduck");
        assert_eq!(
            http(hport, "GET", "/health").map(|r| r.0),
            Some(200),
            "{be}"
        );
        assert!(http(rport, "GET", "/ready").is_none(), "{be}: ready closed");
        assert_eq!(dig_status(&s.dig(&["x.example", "A"])), "NOERROR");
        assert_eq!(s.wait_exit(Duration::from_secs(8)), Some(0));
        let lines = s.lines();
        let t = lines
            .iter()
            .position(|l| l.starts_with("[INFO] SIGTERM"))
            .expect("sigterm");
        let ld = lines
            .iter()
            .position(|l| l.contains("lameduck"))
            .expect("ld");
        assert!(t < ld);
    }
}

#[test]
fn ready_reports_not_ready_plugins() {
    for be in backends() {
        let rport = free_port();
        let s = TestServer::start(
            &format!(".:{{port}} {{\n ready 127.0.0.1:{rport}\n erratic\n}}\n"),
            be,
        );
        let (st, _, body) = http(rport, "GET", "/ready").expect("ready");
        assert_eq!((st, body.as_str()), (503, "erratic"), "{be}");
        s.wait_line(|l| l == "[INFO] plugin/ready: Plugins not ready: \"erratic\"")
            .expect("log");
    }
}

#[test]
fn reload_plugin_polls_and_hashes() {
    for be in backends() {
        let s = TestServer::start(".:{port} {\n reload 2s 1s\n chaos one\n}\n", be);
        let first = s
            .wait_line(|l| l.starts_with("[INFO] plugin/reload: Running configuration SHA512 = "))
            .expect("hash");
        assert_eq!(
            first.len(),
            "[INFO] plugin/reload: Running configuration SHA512 = ".len() + 128
        );
        let conf = s.dir.0.join("Corefile");
        // A comment at the end of a line does not change the parsed form: no reload.
        write_atomic(
            &conf,
            format!(".:{} {{\n reload 2s 1s\n chaos one # note\n}}\n", s.port),
        )
        .expect("write");
        std::thread::sleep(Duration::from_millis(3000));
        assert!(
            !s.lines().iter().any(|l| l == "[INFO] Reloading"),
            "{be}: no reload for a comment"
        );
        let mport = free_port();
        write_atomic(
            &conf,
            format!(
                ".:{} {{\n reload 2s 1s\n chaos two\n prometheus 127.0.0.1:{mport}\n}}\n",
                s.port
            ),
        )
        .expect("write");
        let deadline = std::time::Instant::now() + Duration::from_secs(6);
        while !s.lines().iter().any(|l| l == "[INFO] Reloading complete")
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        let lines = s.lines();
        let r = lines
            .iter()
            .position(|l| l == "[INFO] Reloading")
            .expect("Reloading");
        assert!(
            lines[r + 1].starts_with("[INFO] plugin/reload: Running configuration SHA512 = "),
            "{be}: {lines:?}"
        );
        assert_eq!(lines[r + 2], "[INFO] Reloading complete");
        assert_ne!(lines[r + 1], first);
        let out = s.dig(&["CH", "TXT", "version.bind"]);
        assert_eq!(
            section(&out, "ANSWER"),
            ["version.bind. 0 CH TXT \"two\""],
            "{be}"
        );
        // The version gauge holds the running configuration's hash.
        let version = |be: &str| {
            let (_, _, body) = http(mport, "GET", "/metrics").expect("scrape");
            let v: Vec<String> = body
                .lines()
                .filter_map(|l| {
                    l.strip_prefix("coredns_reload_version_info{hash=\"sha512\",value=\"")
                })
                .map(|l| l.split('"').next().unwrap_or_default().to_owned())
                .collect();
            assert_eq!(v.len(), 1, "{be}: {body}");
            v[0].clone()
        };
        let hash = lines[r + 1]
            .rsplit(' ')
            .next()
            .unwrap_or_default()
            .to_owned();
        assert_eq!(version(be), hash, "{be}");
        // A broken Corefile: CoreDNS's two error lines, the old config keeps serving,
        // and the gauge moves to the new file's hash (CoreDNS sets it either way).
        write_atomic(
            &conf,
            format!(
                ".:{} {{\n reload 2s 1s\n chaos three\n prometheus 127.0.0.1:{mport}\n bogus\n}}\n",
                s.port
            ),
        )
        .expect("write");
        let l = s.wait_line_for(Duration::from_secs(6), |l| {
            l.starts_with("[ERROR] plugin/reload: Corefile changed but reload failed: starting with listener file descriptors: ")
        });
        assert!(
            l.is_some_and(
                |l| l.ends_with("Corefile:5 - Error during parsing: Unknown directive 'bogus'")
            ),
            "{be}"
        );
        let broken = version(be);
        assert_ne!(broken, hash, "{be}");
        assert_eq!(broken.len(), 128, "{be}");
        assert!(
            s.lines()
                .iter()
                .any(|l| l.starts_with("[ERROR] Restart failed: ")),
            "{be}"
        );
        let out = s.dig(&["CH", "TXT", "version.bind"]);
        assert_eq!(
            section(&out, "ANSWER"),
            ["version.bind. 0 CH TXT \"two\""],
            "{be}"
        );
    }
}

#[test]
fn no_query_lost_across_twenty_reloads() {
    if std::process::Command::new("dnsperf")
        .arg("-h")
        .output()
        .is_err()
    {
        eprintln!("skipping: dnsperf not installed (apt-get install dnsperf)");
        return;
    }
    for be in backends() {
        let mut s = TestServer::start(".:{port} {\n whoami\n}\n", be);
        let qfile = s.dir.write(
            "queries.txt",
            "a.example.org A\nb.example.org AAAA\nc.example.org TXT\n",
        );
        let child = std::process::Command::new("dnsperf")
            .args([
                "-s",
                "127.0.0.1",
                "-p",
                &s.port.to_string(),
                "-d",
                &qfile.to_string_lossy(),
            ])
            .args(["-l", "7", "-Q", "5000", "-c", "4", "-t", "2"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("dnsperf");
        std::thread::sleep(Duration::from_millis(500));
        let conf = s.dir.0.join("Corefile");
        for i in 0..20 {
            // Alternate between two configurations so every reload really changes something.
            let extra = if i % 2 == 0 {
                " log . \"{type}\"\n"
            } else {
                ""
            };
            std::fs::write(&conf, format!(".:{} {{\n{extra} whoami\n}}\n", s.port)).expect("write");
            s.signal(Signal::SIGUSR1);
            std::thread::sleep(Duration::from_millis(250));
        }
        let out = child.wait_with_output().expect("dnsperf");
        let text = String::from_utf8_lossy(&out.stdout);
        let completes = s
            .lines()
            .iter()
            .filter(|l| *l == "[INFO] Reloading complete")
            .count();
        assert_eq!(completes, 20, "{be}: every reload completed");
        let lost = text
            .lines()
            .find(|l| l.contains("Queries lost:"))
            .expect("lost line");
        assert!(lost.contains("Queries lost:         0 "), "{be}: {lost}");
        s.signal(Signal::SIGTERM);
        assert_eq!(s.wait_exit(Duration::from_secs(8)), Some(0));
    }
}

#[test]
fn loop_between_two_instances_is_fatal() {
    for be in backends() {
        // Instance B forwards to A, A (with loop) forwards to B. B must be listening before A
        // starts: A's probe goes out at once, and a probe answered (SERVFAIL from a refused
        // forward) disables loop, as in CoreDNS.
        let pa = free_port();
        let b = TestServer::start(
            &format!(".:{{port}} {{\n forward . 127.0.0.1:{pa}\n}}\n"),
            be,
        );
        let pb = b.port;
        let dir = TempDir::new("loop");
        let ca = dir.write(
            "A",
            &format!(".:{pa} {{\n loop\n forward . 127.0.0.1:{pb}\n}}\n"),
        );
        let out = std::process::Command::new("timeout")
            .args(["20", bin(), "-conf"])
            .arg(&ca)
            .env("RINGDNS_BACKEND", be)
            .output()
            .expect("A");
        drop(b);
        assert_eq!(out.status.code(), Some(1), "{be}");
        let text = String::from_utf8_lossy(&out.stdout);
        let fatal = text.lines().last().unwrap_or("");
        let re = regex::Regex::new(&format!(
            r#"^\[FATAL\] plugin/loop: Loop \(127\.0\.0\.1:\d+ -> :{pa}\) detected for zone "\.", see https://coredns\.io/plugins/loop#troubleshooting\. Query: "HINFO \d+\.\d+\."$"#
        ))
        .expect("re");
        assert!(re.is_match(fatal), "{be}: {fatal}");
    }
}

#[test]
fn multisocket_and_shed() {
    for be in backends() {
        let mport = free_port();
        let s = TestServer::start(
            &format!(
                ".:{{port}} {{\n multisocket 3\n shed\n prometheus 127.0.0.1:{mport}\n whoami\n}}\n"
            ),
            be,
        );
        let zone_lines = s
            .lines()
            .iter()
            .filter(|l| **l == format!(".:{}", s.port))
            .count();
        assert_eq!(
            zone_lines, 3,
            "{be}: the banner repeats per socket, as CoreDNS's does"
        );
        for i in 0..20 {
            assert_eq!(
                dig_status(&s.dig(&[&format!("q{i}.example"), "A"])),
                "NOERROR",
                "{be}"
            );
        }
        let (_, _, body) = http(mport, "GET", "/metrics").expect("scrape");
        assert!(
            body.contains(&format!(
                "coredns_shed_dropped_total{{reason=\"query\",server=\"dns://:{}\"}} 0",
                s.port
            )),
            "{be}"
        );
        assert!(
            body.contains("coredns_shed_dropped_total{reason=\"response\""),
            "{be}"
        );
    }
}

#[test]
fn metrics_forward_cache_match_recorded_family_by_family() {
    let recorded_path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/compat/recorded/metrics-forward-cache.txt"
    );
    let Ok(recorded) = std::fs::read_to_string(recorded_path) else {
        eprintln!("skipping: {recorded_path} not found");
        return;
    };
    let rec = shape(&recorded);
    for be in backends() {
        // The upstream: another ringdns answering whoami, and NXDOMAIN from `local`.
        let up = TestServer::start(".:{port} {\n local\n whoami\n}\n", be);
        let mport = free_port();
        let s = TestServer::start(
            &format!(
                ".:{{port}} {{\n forward . 127.0.0.1:{}\n cache 30\n prometheus 127.0.0.1:{mport}\n}}\n",
                up.port
            ),
            be,
        );
        s.dig(&["www.example.org", "A"]);
        s.dig(&["www.example.org", "A"]);
        s.dig(&["+tcp", "www.example.org", "A"]);
        s.dig(&["www.example.org", "AAAA"]);
        s.dig(&["+dnssec", "x.example.org", "A"]);
        assert_eq!(
            dig_status(&s.dig(&["nope.127.in-addr.arpa", "PTR"])),
            "NXDOMAIN",
            "{be}"
        );
        std::thread::sleep(Duration::from_millis(100));
        let (_, _, body) = http(mport, "GET", "/metrics").expect("scrape");
        let ours = shape(&body);
        for (fam, r) in rec.iter().filter(|(f, _)| f.starts_with("coredns_")) {
            let o = ours
                .get(fam)
                .unwrap_or_else(|| panic!("{be}: missing {fam}\n{body}"));
            assert_eq!((&r.0, &r.1), (&o.0, &o.1), "{be}: HELP/TYPE of {fam}");
            assert_eq!(r.2, o.2, "{be}: label names of {fam}");
            assert_eq!(r.3, o.3, "{be}: buckets of {fam}");
        }
        assert!(
            body.contains("coredns_dns_responses_total{plugin=\"cache\",rcode=\"NXDOMAIN\""),
            "{be}"
        );
        assert!(body.contains("coredns_cache_hits_total{server="), "{be}");
    }
}

/// Every plugin with families of its own on one scrape (two *hosts* instances, forward,
/// cache): each sample once, and hosts' reload gauge is the last reload, not 0.
#[test]
fn metrics_each_sample_once_with_every_contributor() {
    let dir = TempDir::new("hostsmetrics");
    let h1 = dir.write("h1", "192.0.2.1 one.example.\n");
    let h2 = dir.write("h2", "192.0.2.2 two.example.\n192.0.2.3 three.example.\n");
    for be in backends() {
        let up = TestServer::start(".:{port} {\n whoami\n}\n", be);
        let mport = free_port();
        let s = TestServer::start(
            &format!(
                "one.example:{{port}} {{\n hosts {}\n prometheus 127.0.0.1:{mport}\n}}\ntwo.example three.example:{{port}} {{\n hosts {}\n}}\n.:{{port}} {{\n forward . 127.0.0.1:{}\n cache 30\n}}\n",
                h1.display(),
                h2.display(),
                up.port
            ),
            be,
        );
        assert!(s.dig(&["one.example", "A"]).contains("192.0.2.1"), "{be}");
        s.dig(&["www.example.org", "A"]);
        let (_, _, body) = http(mport, "GET", "/metrics").expect("scrape");
        assert_each_sample_once(&body);
        let stamp = body
            .lines()
            .find_map(|l| l.strip_prefix("coredns_hosts_reload_timestamp_seconds "))
            .unwrap_or_else(|| panic!("{be}: no reload gauge\n{body}"));
        assert!(stamp.parse::<f64>().is_ok_and(|v| v > 1e9), "{be}: {stamp}");
        // CoreDNS counts a name and its reverse entry: 2 per line.
        for (file, n) in [(&h1, 2), (&h2, 4)] {
            let line = format!(
                "coredns_hosts_entries{{hostsfile=\"{}\"}} {n}",
                file.display()
            );
            assert!(body.contains(&line), "{be}: no {line}\n{body}");
        }
    }
}

#[test]
fn a_real_prometheus_scrapes_us() {
    let prom = ["/usr/bin/prometheus", "/usr/local/bin/prometheus"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    let Some(prom) = prom else {
        eprintln!("skipping: prometheus not installed (apt-get install prometheus)");
        return;
    };
    let be = backends()[0];
    let mport = free_port();
    let s = TestServer::start(
        &format!(".:{{port}} {{\n prometheus 127.0.0.1:{mport}\n whoami\n}}\n"),
        be,
    );
    s.dig(&["www.example.org", "A"]);
    let dir = TempDir::new("prom");
    let cfg = dir.write(
        "prometheus.yml",
        &format!("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: ringdns\n    static_configs:\n      - targets: ['127.0.0.1:{mport}']\n"),
    );
    let web = free_port();
    let mut p = std::process::Command::new(prom)
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.0.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{web}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("prometheus");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut found = String::new();
    while std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        if let Some((200, _, body)) =
            http(web, "GET", "/api/v1/query?query=coredns_dns_requests_total")
        {
            if body.contains("\"type\":\"A\"") {
                found = body;
                break;
            }
        }
    }
    let _ = p.kill();
    let _ = p.wait();
    assert!(
        found.contains(&format!("\"server\":\"dns://:{}\"", s.port)),
        "prometheus stored our series: {found}"
    );
}

#[test]
fn sigusr2_is_harmless_and_quiet_hides_the_banner() {
    for be in backends() {
        let port = free_port();
        let dir = TempDir::new("quiet");
        let conf = dir.write("Corefile", &format!(".:{port} {{\n whoami\n}}\n"));
        let mut child = std::process::Command::new(bin())
            .args(["-quiet", "-conf"])
            .arg(&conf)
            .env("RINGDNS_BACKEND", be)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        std::thread::sleep(Duration::from_millis(400));
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, Signal::SIGUSR2);
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            child.try_wait().expect("wait").is_none(),
            "{be}: still running after SIGUSR2"
        );
        let out = std::process::Command::new("dig")
            .args([
                "@127.0.0.1",
                "-p",
                &port.to_string(),
                "+time=2",
                "+tries=1",
                "a.example",
                "A",
            ])
            .output()
            .expect("dig");
        assert!(String::from_utf8_lossy(&out.stdout).contains("NOERROR"));
        let _ = nix::sys::signal::kill(pid, Signal::SIGTERM);
        let out = child.wait_with_output().expect("wait");
        assert_eq!(out.status.code(), Some(0));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            !text.contains("CoreDNS-1.14.7"),
            "{be}: -quiet hides the banner: {text}"
        );
        assert!(!text.lines().any(|l| l == format!(".:{port}")), "{be}");
        assert!(text.contains("[INFO] SIGUSR2: Upgrading"), "{be}: {text}");
    }
}

/// *on*: startup hooks once the servers are up and after a reload (before
/// "Reloading complete"), shutdown hooks on SIGTERM, `&` without waiting, and the
/// log lines caddy's onevent writes.
#[test]
fn on_startup_reload_and_shutdown_hooks() {
    let dir = TempDir::new("on");
    let f = dir.0.join("events").to_string_lossy().into_owned();
    let g = dir.0.join("bg").to_string_lossy().into_owned();
    let conf = format!(
        ".:{{port}} {{\n on startup /bin/sh -c \"'echo up >> {f}'\"\n on startup /bin/sh -c \"'echo bg >> {g}'\" &\n on shutdown /bin/sh -c \"'echo down >> {f}'\"\n on startup nosuchcmd-ringdns\n whoami\n}}\n"
    );
    let mut s = TestServer::start(&conf, "epoll");
    let read = || std::fs::read_to_string(&f).unwrap_or_default();
    assert!(
        wait_for(Duration::from_secs(5), || read() == "up\n"),
        "{:?}",
        read()
    );
    let uuid = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}";
    let re = |p: String| regex::Regex::new(&p).expect("re");
    let blocking = re(format!(
        r#"^\[INFO\] Blocking Command "/bin/sh -c echo up >> {}" with ID {uuid}$"#,
        regex::escape(&f)
    ));
    let nonblocking = re(format!(
        r#"^\[INFO\] Nonblocking Command "/bin/sh -c echo bg >> {}" with ID {uuid}$"#,
        regex::escape(&g)
    ));
    let missing = re(format!(
        r#"^error on 'on-{uuid}' hook: exec: "nosuchcmd-ringdns": executable file not found in \$PATH$"#
    ));
    s.wait_line(|l| missing.is_match(l)).expect("error line");
    let lines = s.lines();
    assert!(lines.iter().any(|l| blocking.is_match(l)), "{lines:?}");
    assert!(lines.iter().any(|l| nonblocking.is_match(l)), "{lines:?}");
    assert!(
        wait_for(Duration::from_secs(5), || std::fs::read_to_string(&g)
            .unwrap_or_default()
            == "bg\n"),
        "background hook"
    );
    // A reload runs the startup hooks again, then logs "Reloading complete".
    s.signal(Signal::SIGUSR1);
    s.wait_line(|l| l == "[INFO] Reloading complete")
        .expect("reload");
    assert_eq!(read(), "up\nup\n");
    let lines = s.lines();
    let last_hook = lines.iter().rposition(|l| blocking.is_match(l));
    let done = lines.iter().position(|l| l == "[INFO] Reloading complete");
    assert!(last_hook < done, "{lines:?}");
    // SIGTERM: the shutdown hook, and no startup hook.
    s.signal(Signal::SIGTERM);
    assert_eq!(s.wait_exit(Duration::from_secs(8)), Some(0));
    assert_eq!(read(), "up\nup\ndown\n");
}

/// A blocking `on startup` command does not hold up signals: SIGTERM during it
/// stops the daemon at once.
#[test]
fn on_startup_blocking_command_does_not_hold_signals() {
    let mut s = TestServer::start(".:{port} {\n on startup sleep 5\n whoami\n}\n", "epoll");
    s.wait_line(|l| l.starts_with("[INFO] Blocking Command \"sleep 5\""))
        .expect("hook line");
    let t0 = std::time::Instant::now();
    s.signal(Signal::SIGTERM);
    assert_eq!(s.wait_exit(Duration::from_secs(8)), Some(0));
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
}
