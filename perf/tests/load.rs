//! Load runs against the in-process responders: counts, loss accounting,
//! timeouts, rcodes and truncation, TCP pipelining, fixed rate, ramp, and
//! the CLI's JSON schema, text labels, `compare` exit status and `plot`.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use common::{Behaviour, query_file, tcp, udp};
use ringdns_perf::args::Options;
use ringdns_perf::query::QuerySet;
use ringdns_perf::ramp::run_ramp;
use ringdns_perf::report::Summary;
use ringdns_perf::run::{Shared, run};

fn tmp(name: &str, content: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("ringdns-perf-test-{}-{name}", std::process::id()));
    std::fs::write(&p, content).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
    p
}

/// Runs a load with dnsperf-style `args` against `port`, input of `n` queries.
fn load(name: &str, port: u16, n: usize, args: &str) -> Summary {
    let file = tmp(name, &query_file(n));
    let mut argv: Vec<String> = args.split_whitespace().map(String::from).collect();
    argv.extend(["-s", "127.0.0.1", "-p", &port.to_string(), "-d"].map(String::from));
    argv.push(file.display().to_string());
    let o = Options::parse(&argv).unwrap_or_else(|e| panic!("{e}"));
    let q = QuerySet::load(o.datafile.as_deref(), o.edns).unwrap_or_else(|e| panic!("{e}"));
    let maxruns = o.input_runs();
    let shared = Shared::new(q, maxruns);
    let s = match o.ramp {
        Some(r) => run_ramp(&o, &shared, r),
        None => run(&o, &shared, o.max_qps, o.limit).map(|out| Summary::new(&o, &out)),
    }
    .unwrap_or_else(|e| panic!("{e}"));
    let _ = std::fs::remove_file(file);
    s
}

#[test]
fn udp_counts_rcodes_and_truncation() {
    let r = udp(Behaviour::default());
    let s = load("counts", r.addr.port(), 100, "-n 10 -c 4 -T 2 -q 20 -t 2");
    assert_eq!(s.sent, 1000);
    assert_eq!(s.completed, 1000);
    assert_eq!(s.lost, 0);
    assert_eq!(r.received.load(std::sync::atomic::Ordering::Relaxed), 1000);
    assert_eq!(s.rcodes.get("NXDOMAIN"), Some(&200));
    assert_eq!(s.rcodes.get("NOERROR"), Some(&800));
    assert_eq!(s.truncated, 150);
    assert_eq!(s.unexpected, 0);
    assert!(
        s.latency_s.p50 > 0.0
            && s.latency_s.p50 <= s.latency_s.p99
            && s.latency_s.p99 <= s.latency_s.max
    );
    assert!(s.avg_request_bytes > 12.0 && s.avg_response_bytes == s.avg_request_bytes);
}

#[test]
fn udp_loss_every_nth() {
    let r = udp(Behaviour {
        drop_every: 10,
        ..Default::default()
    });
    let s = load("loss", r.addr.port(), 100, "-n 10 -c 3 -q 30 -t 0.3");
    assert_eq!(s.sent, 1000);
    assert_eq!(s.lost, 100, "every 10th query dropped");
    assert_eq!(s.completed, 900);
    assert!((s.lost_pct - 10.0).abs() < 1e-9);
}

#[test]
fn timeouts_end_the_run() {
    let r = udp(Behaviour {
        silent: true,
        ..Default::default()
    });
    let t0 = Instant::now();
    let s = load("silent", r.addr.port(), 50, "-n 1 -q 10 -t 0.2");
    let took = t0.elapsed().as_secs_f64();
    // 50 queries, 10 at a time, each window expiring after 0.2 s.
    assert_eq!((s.sent, s.completed, s.lost), (50, 0, 50));
    assert!(took < 3.0, "took {took} s");
    // With a time limit the run stops sending, then waits at most -t.
    let t0 = Instant::now();
    let s = load("silent-l", r.addr.port(), 50, "-l 0.3 -q 10 -t 0.2");
    assert_eq!(s.completed, 0);
    assert_eq!(s.sent, s.lost);
    assert!(t0.elapsed().as_secs_f64() < 2.0);
}

#[test]
fn tcp_pipelined_out_of_order() {
    let r = tcp(8);
    let s = load("tcp", r.addr.port(), 100, "-m tcp -n 5 -c 2 -q 16 -t 2");
    assert_eq!(s.sent, 500);
    assert_eq!(
        s.completed, 500,
        "answers held until 8 are pipelined, sent in reverse"
    );
    assert_eq!(s.lost, 0);
    assert!(r.max_pending.load(std::sync::atomic::Ordering::Relaxed) >= 8);
    assert_eq!(s.rcodes.get("NXDOMAIN"), Some(&100));
    assert_eq!(s.mode, "tcp");
}

#[test]
fn fixed_rate_is_kept() {
    let r = udp(Behaviour::default());
    let s = load("rate", r.addr.port(), 100, "-l 1 -Q 2000 -q 50 -t 1");
    assert!((1800..=2100).contains(&s.sent), "sent {}", s.sent);
    assert!((s.qps - 2000.0).abs() < 300.0, "qps {}", s.qps);
    assert_eq!(s.offered_qps, Some(2000.0));
    assert_eq!(s.lost, 0);
}

#[test]
fn ramp_finds_the_limit() {
    let r = udp(Behaviour {
        rate_limit: 3500.0,
        ..Default::default()
    });
    let s = load(
        "ramp",
        r.addr.port(),
        100,
        "--ramp 1000:1000:6000 --step-time 0.5 --max-loss 1 -q 100 -t 0.3",
    );
    assert_eq!(
        s.max_rate_under_loss,
        Some(3000.0),
        "{:?}",
        s.steps.iter().map(|x| x.lost_pct).collect::<Vec<_>>()
    );
    assert_eq!(s.steps.len(), 4, "stops at the first failing step");
    assert!(s.steps[3].lost_pct > 1.0);
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ringdns-perf"))
}

#[test]
fn cli_json_schema_and_text_labels() {
    let r = udp(Behaviour {
        drop_every: 50,
        ..Default::default()
    });
    let f = tmp("cli", &query_file(100));
    let port = r.addr.port().to_string();
    let base = [
        "-s",
        "127.0.0.1",
        "-p",
        &port,
        "-d",
        f.to_str().unwrap_or(""),
        "-n",
        "2",
        "-t",
        "0.3",
        "-c",
        "2",
    ];
    let out = bin()
        .args(base)
        .args(["--json", "-"])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(out.status.success());
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}"));
    for k in [
        "sent",
        "completed",
        "lost",
        "qps",
        "truncated",
        "run_time_s",
        "lost_pct",
    ] {
        assert!(v[k].is_number(), "{k} missing in {v}");
    }
    for k in ["p50", "p90", "p99", "p999", "max", "avg", "stddev", "min"] {
        assert!(v["latency_s"][k].is_number(), "latency_s.{k}");
        assert!(
            v["service_latency_s"][k].is_number(),
            "service_latency_s.{k}"
        );
    }
    assert!(v["rcodes"]["NOERROR"].is_number() && v["rcodes"]["NXDOMAIN"].is_number());
    assert!(v["cpu"]["percent"].is_number() && v["cpu"]["user_s"].is_number());
    assert_eq!(v["schema"], "ringdns-perf/1");
    assert_eq!(
        (v["sent"].as_u64(), v["lost"].as_u64()),
        (Some(200), Some(4))
    );

    let text = bin().args(base).output().unwrap_or_else(|e| panic!("{e}"));
    let text = String::from_utf8_lossy(&text.stdout);
    for label in [
        "Queries sent:         200\n",
        "Queries completed:    196 (98.00%)\n",
        "Queries lost:         4 (2.00%)\n",
        "Response codes:       NOERROR",
        "Average packet size:  request ",
        "Run time (s):         ",
        "Queries per second:   ",
        "Average Latency (s):  ",
        "Latency StdDev (s):   ",
    ] {
        assert!(text.contains(label), "{label:?} missing in\n{text}");
    }
    let _ = std::fs::remove_file(f);
}

#[test]
fn compare_exit_status_median_and_plot() {
    let mut a = Summary {
        schema: "ringdns-perf/1".into(),
        qps: 100_000.0,
        completed: 1_000_000,
        ..Default::default()
    };
    a.latency_s.p50 = 0.0001;
    a.latency_s.p99 = 0.0005;
    let mut worse = a.clone();
    worse.qps = 80_000.0;
    let fa = tmp("a.json", &a.to_json());
    let fb = tmp("b.json", &worse.to_json());
    let same = bin()
        .args(["compare"])
        .arg(&fa)
        .arg(&fa)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(same.status.code(), Some(0));
    let bad = bin()
        .args(["compare"])
        .arg(&fa)
        .arg(&fb)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stdout).contains("REGRESSED"));
    let loose = bin()
        .args(["compare", "--threshold", "25"])
        .arg(&fa)
        .arg(&fb)
        .output();
    assert_eq!(loose.map(|o| o.status.code()).ok().flatten(), Some(0));

    let med = bin()
        .arg("median")
        .arg(&fa)
        .arg(&fb)
        .arg(&fa)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let m = Summary::from_json(&String::from_utf8_lossy(&med.stdout)).unwrap_or_default();
    assert_eq!(m.qps, 100_000.0);

    let svg = std::env::temp_dir().join(format!("ringdns-perf-test-{}.svg", std::process::id()));
    let p = bin()
        .arg("plot")
        .arg(&svg)
        .arg(&fa)
        .arg(&fb)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(p.status.success(), "{}", String::from_utf8_lossy(&p.stderr));
    let body = std::fs::read_to_string(&svg).unwrap_or_default();
    assert!(body.contains("<svg") && body.contains("Latency percentiles"));
    for f in [fa, fb, svg] {
        let _ = std::fs::remove_file(f);
    }
}

#[test]
fn relay_forwards_and_restores_ids() {
    relay_round_trip(&[]);
}

/// The relay on the io_uring engine, where the kernel allows it (`ci/test.sh` says
/// whether it does in `RINGDNS_TEST_URING`).
#[test]
fn uring_relay_forwards_and_restores_ids() {
    if std::env::var("RINGDNS_TEST_URING").is_ok_and(|v| v == "1") {
        relay_round_trip(&["--uring"]);
    } else {
        eprintln!("skipped: io_uring is not available here (RINGDNS_TEST_URING is not 1)");
    }
}

fn relay_round_trip(flags: &[&str]) {
    let r = udp(Behaviour::default());
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("{e}"));
    let mut child = bin()
        .arg("relay")
        .args(flags)
        .args([&format!("127.0.0.1:{port}"), &r.addr.to_string()])
        .spawn()
        .unwrap_or_else(|e| panic!("spawn relay: {e}"));
    let c = std::net::UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    c.set_read_timeout(Some(std::time::Duration::from_millis(200)))
        .ok();
    c.connect(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("{e}"));
    // A query: ID, RD, one question `a.example. A IN`.
    let query = |id: u16| {
        let mut q = id.to_be_bytes().to_vec();
        q.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        q.extend_from_slice(b"\x01a\x07example\x00\x00\x01\x00\x01");
        q
    };
    // The relay may still be starting: retry the first query for up to 5 s.
    let mut buf = [0u8; 512];
    let started = Instant::now();
    loop {
        let _ = c.send(&query(7));
        if let Ok(n) = c.recv(&mut buf) {
            assert_eq!(&buf[..2], &7u16.to_be_bytes(), "{:?}", &buf[..n]);
            break;
        }
        assert!(started.elapsed().as_secs() < 5, "relay never answered");
    }
    let ids: Vec<u16> = (0..50u16).map(|i| 40_000 + i * 3).collect();
    for &id in &ids {
        c.send(&query(id)).unwrap_or_else(|e| panic!("{e}"));
    }
    let mut got = Vec::new();
    while let Ok(n) = c.recv(&mut buf) {
        assert!(n >= 12 && buf[2] & 0x80 != 0, "an answer: {:?}", &buf[..n]);
        got.push(u16::from_be_bytes([buf[0], buf[1]]));
    }
    got.sort_unstable();
    if flags.contains(&"--uring") {
        // On SIGTERM the ring relay drains its ring and exits, and its port is free at
        // once (killed outright, the kernel's background teardown keeps it bound for
        // tens of milliseconds, and a benchmark's next server failed to bind it).
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)
            .unwrap_or_else(|e| panic!("SIGTERM: {e}"));
        let status = child.wait().unwrap_or_else(|e| panic!("{e}"));
        assert!(status.success(), "relay --uring after SIGTERM: {status}");
        std::net::UdpSocket::bind(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("port {port} right after the relay exited: {e}"));
    } else {
        let _ = child.kill();
        let _ = child.wait();
    }
    assert_eq!(got, ids, "every answer under its query's own ID");
}
