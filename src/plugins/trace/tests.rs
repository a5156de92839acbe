//! *trace*: setup (CoreDNS's `setup_test.go` table and error texts), B3
//! extraction (zipkin-go's `b3` tests), and the span JSON.

use super::*;
use crate::config::tests::{build_str, err};

fn config(body: &str) -> TraceConfig {
    let c = build_str(&format!(".:53 {{\n{body}\n whoami\n}}")).expect("config");
    c.blocks[0]
        .plugins
        .iter()
        .find_map(|p| match p {
            crate::plugins::PluginConfig::Trace(t) => Some((**t).clone()),
            _ => None,
        })
        .expect("trace")
}

#[test]
fn setup_table() {
    // (body, endpoint, every, service, client_server, backlog, batch, interval)
    type Case<'a> = (&'a str, &'a str, u64, &'a str, bool, usize, usize, Duration);
    let ok: &[Case<'_>] = &[
        (
            "trace",
            "http://localhost:9411/api/v2/spans",
            1,
            "coredns",
            false,
            0,
            0,
            Duration::ZERO,
        ),
        (
            "trace localhost:1234",
            "http://localhost:1234/api/v2/spans",
            1,
            "coredns",
            false,
            0,
            0,
            Duration::ZERO,
        ),
        (
            "trace http://localhost:1234/somewhere/else",
            "http://localhost:1234/somewhere/else",
            1,
            "coredns",
            false,
            0,
            0,
            Duration::ZERO,
        ),
        (
            "trace zipkin localhost:1234",
            "http://localhost:1234/api/v2/spans",
            1,
            "coredns",
            false,
            0,
            0,
            Duration::ZERO,
        ),
        (
            "trace ZIPKIN localhost:1234",
            "http://localhost:1234/api/v2/spans",
            1,
            "coredns",
            false,
            0,
            0,
            Duration::ZERO,
        ),
        (
            "trace {\n every 100\n }",
            "http://localhost:9411/api/v2/spans",
            100,
            "coredns",
            false,
            0,
            0,
            Duration::ZERO,
        ),
        (
            "trace {\n every 0\n }",
            "http://localhost:9411/api/v2/spans",
            0,
            "coredns",
            false,
            0,
            0,
            Duration::ZERO,
        ),
        (
            "trace {\n every 2\n service d\n client_server\n }",
            "http://localhost:9411/api/v2/spans",
            2,
            "d",
            true,
            0,
            0,
            Duration::ZERO,
        ),
        (
            "trace {\n client_server false\n }",
            "http://localhost:9411/api/v2/spans",
            1,
            "coredns",
            false,
            0,
            0,
            Duration::ZERO,
        ),
        (
            "trace {\n client_server T\n }",
            "http://localhost:9411/api/v2/spans",
            1,
            "coredns",
            true,
            0,
            0,
            Duration::ZERO,
        ),
        (
            "trace {\n datadog_analytics_rate 0.5\n }",
            "http://localhost:9411/api/v2/spans",
            1,
            "coredns",
            false,
            0,
            0,
            Duration::ZERO,
        ),
        (
            "trace {\n zipkin_max_backlog_size 100\n zipkin_max_batch_size 200\n zipkin_max_batch_interval 10s\n }",
            "http://localhost:9411/api/v2/spans",
            1,
            "coredns",
            false,
            100,
            200,
            Duration::from_secs(10),
        ),
        // An endpoint that merely contains "http" is taken as a URL, as in CoreDNS.
        (
            "trace myhttphost:9411",
            "myhttphost:9411",
            1,
            "coredns",
            false,
            0,
            0,
            Duration::ZERO,
        ),
    ];
    for (body, ep, every, service, shared, backlog, batch, interval) in ok {
        let c = config(body);
        assert_eq!(c.endpoint, *ep, "{body}");
        assert_eq!(c.every, *every, "{body}");
        assert_eq!(c.service, *service, "{body}");
        assert_eq!(c.shared, *shared, "{body}");
        assert_eq!(
            (c.backlog, c.batch, c.interval),
            (*backlog, *batch, *interval),
            "{body}"
        );
        assert_eq!(c.local, None, "{body}");
    }
}

#[test]
fn setup_errors() {
    let cases: &[(&str, &str)] = &[
        (
            "trace foo bar baz",
            "plugin/trace: Corefile:2 - Error during parsing: Wrong argument count or unexpected line ending after 'baz'",
        ),
        (
            "trace foo localhost:1234",
            "plugin/trace: tracing endpoint type 'foo' is not supported",
        ),
        (
            "trace {\n every\n }",
            "plugin/trace: Corefile:3 - Error during parsing: Wrong argument count or unexpected line ending after 'every'",
        ),
        (
            "trace {\n every 2 3\n }",
            "plugin/trace: Corefile:3 - Error during parsing: Wrong argument count or unexpected line ending after '3'",
        ),
        (
            "trace {\n every -1\n }",
            "plugin/trace: strconv.ParseUint: parsing \"-1\": invalid syntax",
        ),
        (
            "trace {\n every 18446744073709551616\n }",
            "plugin/trace: strconv.ParseUint: parsing \"18446744073709551616\": value out of range",
        ),
        (
            "trace {\n service\n }",
            "plugin/trace: Corefile:3 - Error during parsing: Wrong argument count or unexpected line ending after 'service'",
        ),
        (
            "trace {\n client_server a b\n }",
            "plugin/trace: Corefile:3 - Error during parsing: Wrong argument count or unexpected line ending after 'b'",
        ),
        (
            "trace {\n client_server yes\n }",
            "plugin/trace: strconv.ParseBool: parsing \"yes\": invalid syntax",
        ),
        (
            "trace {\n datadog_analytics_rate 2\n }",
            "plugin/trace: datadog analytics rate must be between 0 and 1, '2.000000' is not supported",
        ),
        (
            "trace {\n datadog_analytics_rate x\n }",
            "plugin/trace: strconv.ParseFloat: parsing \"x\": invalid syntax",
        ),
        (
            "trace {\n zipkin_max_backlog_size x\n }",
            "plugin/trace: strconv.Atoi: parsing \"x\": invalid syntax",
        ),
        (
            "trace {\n zipkin_max_batch_size\n }",
            "plugin/trace: Corefile:3 - Error during parsing: Wrong argument count or unexpected line ending after 'zipkin_max_batch_size'",
        ),
        (
            "trace {\n zipkin_max_batch_interval 1\n }",
            "plugin/trace: time: missing unit in duration \"1\"",
        ),
        (
            "trace {\n foo bar\n }",
            "plugin/trace: Corefile:3 - Error during parsing: unknown property 'foo'",
        ),
        // Not in CoreDNS, where these crash the reporter.
        (
            "trace {\n zipkin_max_backlog_size -1\n }",
            "plugin/trace: zipkin_max_backlog_size must not be negative, found -1",
        ),
        (
            "trace {\n zipkin_max_batch_interval 5ns\n }",
            "plugin/trace: zipkin_max_batch_interval must be at least 10ns, found 5ns",
        ),
        // Not built.
        (
            "trace datadog localhost:8126",
            "plugin/trace: datadog tracing is not supported by ringdns yet",
        ),
    ];
    for (body, want) in cases {
        assert_eq!(
            &err(&format!(".:53 {{\n{body}\n whoami\n}}")),
            want,
            "{body}"
        );
    }
}

#[test]
fn local_endpoint_from_bind() {
    let c = build_str(".:1053 {\n bind 127.0.0.1\n trace\n whoami\n}").expect("config");
    let t = c.blocks[0]
        .plugins
        .iter()
        .find_map(|p| match p {
            crate::plugins::PluginConfig::Trace(t) => Some(t.clone()),
            _ => None,
        })
        .expect("trace");
    assert_eq!(t.local, Some(("127.0.0.1".parse().expect("ip"), 1053)));
    assert_eq!(
        endpoint_json("CoreDNS", t.local),
        r#"{"serviceName":"coredns","ipv4":"127.0.0.1","port":1053}"#
    );
    assert_eq!(
        endpoint_json("x", Some(("::1".parse().expect("ip"), 53))),
        r#"{"serviceName":"x","ipv6":"::1","port":53}"#
    );
    assert_eq!(
        endpoint_json("coredns", None),
        r#"{"serviceName":"coredns"}"#
    );
    assert_eq!(endpoint_json("", None), "");
}

#[test]
fn b3_single_header() {
    let p = |s: &str| b3_single(s);
    assert_eq!(
        p("80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90"),
        Some(Parent {
            trace: (0x80f198ee56343ba8, 0x64fe8b2a57d3eff7),
            id: 0xe457b5a2e4d86bd1,
            parent: Some(0x05e3ac9a4f6e3b90),
            sampled: Some(true),
            debug: false,
        })
    );
    assert_eq!(
        p("64fe8b2a57d3eff7-e457b5a2e4d86bd1-d"),
        Some(Parent {
            trace: (0, 0x64fe8b2a57d3eff7),
            id: 0xe457b5a2e4d86bd1,
            parent: None,
            sampled: None,
            debug: true,
        })
    );
    assert_eq!(
        p("64fe8b2a57d3eff7-e457b5a2e4d86bd1"),
        Some(Parent {
            trace: (0, 0x64fe8b2a57d3eff7),
            id: 0xe457b5a2e4d86bd1,
            ..Parent::default()
        })
    );
    assert_eq!(
        p("0"),
        Some(Parent {
            sampled: Some(false),
            ..Parent::default()
        })
    );
    for bad in [
        "64fe8b2a57d3eff7",
        "64fe8b2a57d3eff7-e457b5a2e4d86bd1-",
        "64fe8b2a57d3eff7-e457b5a2e4d86bd1-x",
        "64fe8b2a57d3eff7-e457b5a2e4d86bd1-05e3ac9a4f6e3b90",
        "zzfe8b2a57d3eff7-e457b5a2e4d86bd1-1",
        "2",
    ] {
        assert_eq!(p(bad), None, "{bad}");
    }
}

#[test]
fn b3_multi_headers() {
    let hdrs = |pairs: &[(&str, &str)]| {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        b3(move |k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
    };
    assert_eq!(
        hdrs(&[
            ("x-b3-traceid", "463ac35c9f6413ad"),
            ("x-b3-spanid", "a2fb4a1d1a96d312"),
            ("x-b3-parentspanid", "0020000000000001"),
            ("x-b3-sampled", "true"),
        ]),
        Some(Parent {
            trace: (0, 0x463ac35c9f6413ad),
            id: 0xa2fb4a1d1a96d312,
            parent: Some(0x0020000000000001),
            sampled: Some(true),
            debug: false,
        })
    );
    // Flags 1 is debug and drops the sampling decision.
    assert_eq!(
        hdrs(&[("x-b3-sampled", "0"), ("x-b3-flags", "1")]),
        Some(Parent {
            debug: true,
            ..Parent::default()
        })
    );
    // The single header wins when it parses; a bad one falls back to the rest.
    assert_eq!(
        hdrs(&[
            ("b3", "0"),
            ("x-b3-traceid", "463ac35c9f6413ad"),
            ("x-b3-spanid", "a2fb4a1d1a96d312"),
        ])
        .map(|p| p.sampled),
        Some(Some(false))
    );
    assert_eq!(
        hdrs(&[
            ("b3", "bad"),
            ("x-b3-traceid", "463ac35c9f6413ad"),
            ("x-b3-spanid", "a2fb4a1d1a96d312"),
        ])
        .map(|p| p.id),
        Some(0xa2fb4a1d1a96d312)
    );
    // A trace ID without a span ID, a parent without both, bad hex: no context.
    assert_eq!(hdrs(&[("x-b3-traceid", "463ac35c9f6413ad")]), None);
    assert_eq!(hdrs(&[("x-b3-parentspanid", "1")]), None);
    assert_eq!(hdrs(&[("x-b3-traceid", "xyz"), ("x-b3-spanid", "1")]), None);
    assert_eq!(hdrs(&[("x-b3-sampled", "maybe")]), None);
    assert_eq!(hdrs(&[]), None);
}

#[test]
fn span_json_as_zipkin_go_writes_it() {
    let (tx, _rx) = tokio::sync::mpsc::channel(1);
    let a = Head {
        tracer: Arc::new(Tracer {
            local: endpoint_json("coredns", None),
            shared: false,
            tx,
        }),
        trace: (0, 0x1234),
        debug: false,
        shared: false,
        sampled: true,
    };
    let root = Open::new(0x1234, None, "servedns");
    let tags = [
        ("coredns.io/name", "a<b>&.example.".to_owned()),
        ("error", "true".to_owned()),
    ];
    let notes = [(1_700_000_000_000_000, "event:error".to_owned())];
    let j = span_json(&a, &root, true, &tags, &notes);
    let ts = root.wall_us;
    let v: serde_json::Value = serde_json::from_str(&j).expect("json");
    assert_eq!(v["timestamp"], ts);
    let rest = j.split_once(",\"traceId\"").expect("traceId").1;
    assert_eq!(
        rest,
        r#":"0000000000001234","id":"0000000000001234","name":"servedns","kind":"SERVER","localEndpoint":{"serviceName":"coredns"},"annotations":[{"timestamp":1700000000000000,"value":"event:error"}],"tags":{"coredns.io/name":"a\u003cb\u003e\u0026.example.","error":"true"}}"#
    );
    let child = Open::new(0x99, Some(0x1234), "Forward");
    let j = span_json(&a, &child, false, &[], &[]);
    assert!(
        j.ends_with(r#","traceId":"0000000000001234","id":"0000000000000099","parentId":"0000000000001234","name":"forward","localEndpoint":{"serviceName":"coredns"}}"#),
        "{j}"
    );
    assert_eq!(trace_text((1, 2)), "00000000000000010000000000000002");
}

#[test]
fn urls_as_go_posts_them() {
    let u = parse_url("http://localhost:9411/api/v2/spans").expect("url");
    assert_eq!(
        (u.tls, u.host.as_str(), u.port, u.authority, u.path.as_str()),
        (false, "localhost", 9411, "localhost:9411", "/api/v2/spans")
    );
    let u = parse_url("https://[::1]/x").expect("url");
    assert_eq!(
        (u.tls, u.host.as_str(), u.port, u.path.as_str()),
        (true, "::1", 443, "/x")
    );
    let u = parse_url("http://h").expect("url");
    assert_eq!((u.host.as_str(), u.port, u.path.as_str()), ("h", 80, "/"));
    let u = parse_url("http://h:1?a=b#frag").expect("url");
    assert_eq!(u.path, "/?a=b");
    let u = parse_url("http://h:1/p?a=b").expect("url");
    assert_eq!(u.path, "/p?a=b");
    assert_eq!(
        parse_url("myhttphost:9411").err().as_deref(),
        Some("Post \"myhttphost:9411\": unsupported protocol scheme \"myhttphost\"")
    );
}

#[test]
fn setup_accepts_what_go_accepts() {
    // NaN passes Go's range check; a negative batch size sends at every span.
    let c = config("trace {\n datadog_analytics_rate NaN\n zipkin_max_batch_size -3\n }");
    assert_eq!(c.batch, 1);
    let c = config("trace {\n zipkin_max_backlog_size +5\n }");
    assert_eq!(c.backlog, 5);
}

#[test]
fn hex_as_go_parses_it() {
    assert_eq!(hex64("00000000000000000000ff"), Some(0xff));
    assert_eq!(hex64("+1"), None);
    assert_eq!(hex64("0x1"), None);
    assert_eq!(hex64("1ffffffffffffffff"), None);
    assert_eq!(hex64(""), None);
    assert_eq!(
        trace_hex("0000000000000000000000000000000000000001"),
        Some((0, 1))
    );
    assert_eq!(trace_hex("ab0000000000000001"), Some((0xab, 1)));
    assert_eq!(b3_single("+000000000000001-e457b5a2e4d86bd1"), None);
}

#[test]
fn handles_carry_a_generation() {
    let (tx, _rx) = tokio::sync::mpsc::channel(8);
    let head = Head {
        tracer: Arc::new(Tracer {
            local: String::new(),
            shared: false,
            tx,
        }),
        trace: (0, 7),
        debug: false,
        shared: false,
        sampled: false,
    };
    let mut t = Table {
        slots: slab::Slab::new(),
        generation: 5,
    };
    let k = t.slots.insert(Active {
        head,
        generation: 5,
        root: Open::new(7, None, "servedns"),
        stack: Vec::new(),
    });
    let h = (5 << SLOT_BITS) | k as u32;
    assert!(t.get(h).is_some());
    // The same slot under another generation is another query.
    assert!(t.get((6 << SLOT_BITS) | k as u32).is_none());
    assert!(t.take((6 << SLOT_BITS) | k as u32).is_none());
    assert!(t.take(h).is_some());
    assert!(t.get(h).is_none());
    assert!(t.stale().is_empty());
}

#[test]
fn http_parent_is_restored_after_a_panic() {
    let p = Parent {
        trace: (0, 1),
        id: 2,
        ..Parent::default()
    };
    let r = std::panic::catch_unwind(|| {
        with_http_parent(Some(p), || {
            assert_eq!(HTTP_PARENT.with(Cell::get), Some(p));
            panic!("in the chain");
        })
    });
    assert!(r.is_err());
    assert_eq!(HTTP_PARENT.with(Cell::get), None);
    with_http_parent(Some(p), || {
        with_http_parent(None, || assert_eq!(HTTP_PARENT.with(Cell::get), None));
        assert_eq!(HTTP_PARENT.with(Cell::get), Some(p));
    });
}
