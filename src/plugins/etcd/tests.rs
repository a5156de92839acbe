use super::msg::{self, Service};
use super::*;
use crate::config::BlockSettings;

fn parse_with(text: &str, root: Option<&str>) -> Result<EtcdConfig, String> {
    let mut settings = BlockSettings {
        root: root.map(str::to_owned),
        ..BlockSettings::default()
    };
    let keys = vec!["dns://skydns.local.:53".to_owned()];
    let ctx = SetupCtx {
        keys: &keys,
        zones: vec!["skydns.local.".to_owned()],
        settings: &mut settings,
        filename: "Corefile",
    };
    setup(&mut Dispenser::from_text("Corefile", text), &ctx).map_err(|e| e.to_string())
}

fn parse(text: &str) -> Result<EtcdConfig, String> {
    parse_with(text, None)
}

#[test]
fn setup_as_coredns() {
    let c = parse("etcd").expect("bare");
    assert_eq!(c.zones, ["skydns.local."]);
    assert_eq!(c.prefix, "skydns");
    assert_eq!(c.endpoints, ["http://localhost:2379"]);
    assert_eq!((c.min_lease, c.max_lease), (30, 86_400));
    assert!(!c.fall.is_set());
    let c = parse(
        "etcd Skydns.Test 10.0.0.0/24 {\n stubzones\n debug\n path /other\n endpoint http://127.0.0.1:2379 https://[::1]:2379 127.0.0.1:4001 unix:///run/etcd.sock\n upstream 8.8.8.8\n fallthrough in-addr.arpa\n credentials root s3cret\n min-lease-ttl 1m\n max-lease-ttl 2h30m\n}",
    )
    .expect("full");
    assert_eq!(c.zones, ["skydns.test.", "0.0.10.in-addr.arpa."]);
    assert_eq!(c.prefix, "/other");
    assert_eq!(c.endpoints.len(), 4);
    assert_eq!((c.min_lease, c.max_lease), (60, 9_000));
    assert!(
        c.fall
            .through(&Name::parse("1.0.0.10.in-addr.arpa.").expect("n"))
    );
    assert!(!c.fall.through(&Name::parse("x.skydns.test.").expect("n")));
    // Bare seconds and sub-second parts (truncated, as `uint32(seconds)`).
    assert_eq!(parse_ttl("45"), Ok(45));
    assert_eq!(parse_ttl("1500ms"), Ok(1));
    assert_eq!(parse_ttl(""), Ok(0));
    // `strconv.ParseUint` takes no sign; "+30" is then no Go duration either.
    assert!(parse_ttl("+30").is_err());
    assert_eq!(parse_ttl("+30s"), Ok(30));
    let e = |l: u32, m: &str| format!("plugin/etcd: Corefile:{l} - Error during parsing: {m}");
    let bad_ttl = "invalid TTL format, use format like '30', '30s', '5m', '1h', or '2h30m'";
    for (input, want) in [
        ("etcd {\n path\n}", e(2, "Wrong argument count or unexpected line ending after 'path'")),
        (
            "etcd {\n endpoint\n}",
            e(2, "Wrong argument count or unexpected line ending after 'endpoint'"),
        ),
        (
            "etcd {\n credentials\n}",
            e(2, "Wrong argument count or unexpected line ending after 'credentials'"),
        ),
        (
            "etcd {\n credentials root\n}",
            e(2, "credentials requires 2 arguments, username and password"),
        ),
        (
            "etcd {\n min-lease-ttl\n}",
            e(2, "Wrong argument count or unexpected line ending after 'min-lease-ttl'"),
        ),
        (
            "etcd {\n min-lease-ttl 1x\n}",
            e(2, &format!("invalid min-lease-ttl value: {bad_ttl}")),
        ),
        (
            "etcd {\n max-lease-ttl -5s\n}",
            e(2, "invalid max-lease-ttl value: TTL must be non-negative"),
        ),
        (
            "etcd {\n max-lease-ttl 5000000000\n}",
            e(
                2,
                "invalid max-lease-ttl value: TTL too large, maximum is 4294967295 seconds",
            ),
        ),
        ("etcd {\n Path /x\n}", e(2, "unknown property 'Path'")),
        // Arguments of argument-less options are read as options.
        ("etcd {\n debug on\n}", e(2, "unknown property 'on'")),
        (
            "etcd {\n tls a b c d\n}",
            "plugin/etcd: maximum of three arguments allowed for TLS config, found 4".to_owned(),
        ),
        (
            "etcd {\n tls /nonexistent/ca.pem\n}",
            "plugin/etcd: error reading /nonexistent/ca.pem: open /nonexistent/ca.pem: no such file or directory".to_owned(),
        ),
    ] {
        assert_eq!(parse(input).map(|_| ()), Err(want), "{input}");
    }
    // `tls` paths are relative to `root`.
    assert_eq!(
        parse_with("etcd {\n tls ca.pem\n}", Some("/nonexistent")).map(|_| ()),
        Err("plugin/etcd: error reading /nonexistent/ca.pem: open /nonexistent/ca.pem: no such file or directory".to_owned())
    );
}

#[test]
fn endpoints_as_the_client_reads_them() {
    let none = || Err::<Arc<rustls::ClientConfig>, String>("no default".into());
    let tls = super::super::forward::tls::client_config(&[]).expect("tls");
    let ep = |s: &str, t: Option<&Arc<rustls::ClientConfig>>| {
        client::endpoint(s, t, &|| Ok(Arc::clone(&tls))).map(|e| (e.addr, e.tls.is_some()))
    };
    use client::Addr;
    assert_eq!(
        ep("http://127.0.0.1:2379/", Some(&tls)),
        Ok((Addr::Tcp("127.0.0.1:2379".into()), false))
    );
    assert_eq!(
        ep("https://etcd.example:2379", None),
        Ok((Addr::Tcp("etcd.example:2379".into()), true))
    );
    assert_eq!(
        ep("127.0.0.1:2379", None),
        Ok((Addr::Tcp("127.0.0.1:2379".into()), false))
    );
    assert_eq!(
        ep("127.0.0.1:2379", Some(&tls)),
        Ok((Addr::Tcp("127.0.0.1:2379".into()), true))
    );
    assert_eq!(
        ep("unixs:///run/etcd.sock", None),
        Ok((Addr::Unix("/run/etcd.sock".into()), true))
    );
    assert!(client::endpoint("http://x:1", None, &none).is_ok());
}

#[test]
fn paths_and_domains() {
    assert_eq!(
        msg::path("x1.skydns.local.", "skydns"),
        "/skydns/local/skydns/x1"
    );
    assert_eq!(
        msg::path("x1.skydns.local.", "/skydns"),
        "/skydns/local/skydns/x1"
    );
    assert_eq!(msg::path(".", "skydns"), "/skydns");
    assert_eq!(
        msg::path_with_wildcard("prod.*.skydns.test.", "skydns"),
        ("/skydns/test/skydns".to_owned(), true)
    );
    assert_eq!(
        msg::path_with_wildcard("a.any.b.", "skydns"),
        ("/skydns/b".to_owned(), true)
    );
    assert_eq!(
        msg::path_with_wildcard("a.b.", "skydns"),
        ("/skydns/b/a".to_owned(), false)
    );
    // `dnsutil.Join("ns.dns.", zone)` makes an empty label; the path is the same.
    assert_eq!(
        msg::path(&msg::join(&["ns.dns.", "skydns.test."]), "skydns"),
        "/skydns/test/skydns/dns/ns"
    );
    assert_eq!(msg::split_name(r"a\.b.c."), vec![r"a\.b", "c"]);
    assert_eq!(msg::clean("/a/../../b//c/."), "/b/c");
    assert_eq!(
        msg::domain("/skydns/test/skydns/region1/prod/server1/a"),
        "a.server1.prod.region1.skydns.test."
    );
    assert_eq!(msg::domain("/skydns/local/skydns/"), "skydns.local.");
    assert_eq!(msg::domain("/skydns/"), ".");
    assert_eq!(
        msg::join(&["hostmaster", "skydns.test."]),
        "hostmaster.skydns.test."
    );
    assert_eq!(msg::join(&["a", "."]), "a.");
}

#[test]
fn target_strip_and_split255() {
    assert_eq!(
        msg::target_strip("a.targetstrip.skydns.test.", 1),
        "targetstrip.skydns.test."
    );
    assert_eq!(msg::target_strip("ns1.c.ns.dns.test.", 2), "ns.dns.test.");
    // Stripping every label leaves the name as it was.
    assert_eq!(msg::target_strip("a.b.", 5), "a.b.");
    assert_eq!(msg::target_strip(r"a\.b.c.", 1), "c.");
    let s = "x".repeat(254);
    assert_eq!(msg::split255(&s).len(), 1);
    let s = "y".repeat(255);
    let parts = msg::split255(&s);
    assert_eq!(parts.iter().map(|p| p.len()).collect::<Vec<_>>(), [255, 0]);
    let s = "z".repeat(600);
    let parts = msg::split255(&s);
    assert_eq!(
        parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
        [255, 255, 90]
    );
}

#[test]
fn json_as_go_decodes_it() {
    let s = msg::decode(
        br#"{"host":"10.0.0.1","Port":8080,"PRIORITY":5,"weight":3,"text":"t","mail":true,"ttl":60,"targetstrip":1,"group":"g","extra":[1,2],"key":"ignored"}"#,
    )
    .expect("decodes");
    assert_eq!(
        s,
        Service {
            host: "10.0.0.1".into(),
            port: 8080,
            priority: 5,
            weight: 3,
            text: "t".into(),
            mail: true,
            ttl: 60,
            target_strip: 1,
            group: "g".into(),
            key: String::new(),
        }
    );
    assert_eq!(msg::decode(br#"{"host":null}"#), Ok(Service::default()));
    for (input, want) in [
        (
            &br#"{"port":"80"}"#[..],
            "json: cannot unmarshal string into Go struct field Service.port of type int",
        ),
        (
            br#"{"port":1.5}"#,
            "json: cannot unmarshal number 1.5 into Go struct field Service.port of type int",
        ),
        (
            br#"{"ttl":-1}"#,
            "json: cannot unmarshal number -1 into Go struct field Service.ttl of type uint32",
        ),
        (
            br#"{"host":1}"#,
            "json: cannot unmarshal number into Go struct field Service.host of type string",
        ),
        (
            br#"{"mail":"yes"}"#,
            "json: cannot unmarshal string into Go struct field Service.mail of type bool",
        ),
        (
            br#"[1]"#,
            "json: cannot unmarshal array into Go value of type msg.Service",
        ),
        (br#"{"host":"#, "unexpected end of JSON input"),
        (
            b"hello",
            "invalid character 'h' looking for beginning of value",
        ),
        (
            b"not json",
            "invalid character 'o' in literal null (expecting 'u')",
        ),
        (b" tru", "unexpected end of JSON input"),
    ] {
        assert_eq!(msg::decode(input), Err(want.to_owned()));
    }
}

#[test]
fn groups_as_coredns() {
    let s = |key: &str, group: &str| Service {
        host: "10.0.0.1".into(),
        key: key.into(),
        group: group.into(),
        ..Service::default()
    };
    // CoreDNS's group_test.go: a subtree with the same group, a mixed subtree,
    // ungrouped entries kept.
    let same = vec![
        s("/skydns/test/skydns/dom/a", "g1"),
        s("/skydns/test/skydns/dom/b", "g1"),
    ];
    assert_eq!(msg::group(same.clone()), same);
    let mixed = vec![
        s("/skydns/test/skydns/dom/a", "g1"),
        s("/skydns/test/skydns/dom/b", "g2"),
    ];
    assert_eq!(msg::group(mixed.clone()), mixed);
    let deeper = vec![
        s("/skydns/test/skydns/dom/a", "g1"),
        s("/skydns/test/skydns/dom/b/c", "g2"),
        s("/skydns/test/skydns/dom/d", ""),
    ];
    assert_eq!(
        msg::group(deeper.clone()),
        vec![deeper[0].clone(), deeper[2].clone()]
    );
}

#[test]
fn ttls_from_leases() {
    assert_eq!(combine_ttl(0, 0), 300);
    assert_eq!(combine_ttl(0, 60), 60);
    assert_eq!(combine_ttl(90, 0), 90);
    assert_eq!(combine_ttl(90, 60), 60);
    assert_eq!(combine_ttl(45, 60), 45);
    assert_eq!(ttl_from_lease(5, 30, 86_400), 30);
    assert_eq!(ttl_from_lease(100_000, 30, 86_400), 86_400);
    assert_eq!(ttl_from_lease(120, 0, 0), 120);
    assert_eq!(go_uint16(33.33_f64.floor()), 33);
}

#[test]
fn protobuf_round_trip() {
    assert_eq!(client::prefix_end(b"/skydns/"), b"/skydns0");
    assert_eq!(client::prefix_end(b"a\xff"), b"b");
    assert_eq!(client::prefix_end(b"\xff\xff"), b"\0");
    // A KeyValue: key 1, create_revision 2, value 5, lease 6.
    let kv = [
        0x0a, 2, b'/', b'k', 0x10, 7, 0x2a, 2, b'{', b'}', 0x30, 0x96, 0x01,
    ];
    assert_eq!(
        client::key_value(&kv),
        Some(client::KeyValue {
            key: b"/k".to_vec(),
            value: b"{}".to_vec(),
            lease: 150,
        })
    );
    // A truncated field ends the message.
    let fields: Vec<_> = client::Fields::new(&[0x0a, 5, b'a']).collect();
    assert!(fields.is_empty());
}
