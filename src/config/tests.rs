//! Corefile → typed config, or → the exact error CoreDNS prints.

use super::*;

pub(crate) fn build_str(text: &str) -> Result<Config, String> {
    build(
        Input {
            source: Source::File("Corefile".into()),
            filename: "Corefile".into(),
            text: text.into(),
        },
        "53",
    )
    .map_err(|e| e.to_string())
}

pub(crate) fn err(text: &str) -> String {
    match build_str(text) {
        Ok(_) => "ok".into(),
        Err(e) => e,
    }
}

#[test]
fn error_table() {
    let cases: &[(&str, &str)] = &[
        (
            ". {\n whoami\n bogus\n}",
            "Corefile:3 - Error during parsing: Unknown directive 'bogus'",
        ),
        (
            "example.org: {\n whoami\n}",
            "error inspecting server blocks: expecting data after last colon: \"example.org:\"",
        ),
        (
            "exa$mple..org {\n whoami\n}",
            "error inspecting server blocks: zone is not a valid domain name: exa$mple..org",
        ),
        (
            ". {\n errors\n errors\n}",
            "plugin/errors: this plugin can only be used once per Server Block",
        ),
        (
            ". {\n reload 5s -1s\n}",
            "plugin/reload: jitter value must be 0 or greater or equal to 1s",
        ),
        (
            ". {\n timeouts {\n  read abc\n }\n}",
            "plugin/timeouts: Corefile:3 - Error during parsing: failed to parse duration 'abc'",
        ),
        (
            ". {\n timeouts {\n  write -5s\n }\n}",
            "plugin/timeouts: Corefile:3 - Error during parsing: timeout provided '-5s' needs to be between 1 second and 24 hours",
        ),
        (
            ". {\n timeouts {\n  read -5\n }\n}",
            "plugin/timeouts: Corefile:3 - Error during parsing: timeout provided '-5s' needs to be between 1 second and 24 hours",
        ),
        (
            ". {\n timeouts {\n  maxtcpqueries 99999999999999999999\n }\n}",
            "plugin/timeouts: Corefile:3 - Error during parsing: invalid value for maxtcpqueries '99999999999999999999': strconv.Atoi: parsing \"99999999999999999999\": value out of range",
        ),
        (
            ". {\n multisocket 99999999999999999999\n}",
            "plugin/multisocket: invalid num sockets: strconv.Atoi: parsing \"99999999999999999999\": value out of range",
        ),
        (
            ". {\n erratic {\n  drop 99999999999999999999\n }\n}",
            "plugin/erratic: strconv.ParseInt: parsing \"99999999999999999999\": value out of range",
        ),
        // Patterns are Go's (RE2 as Go parses it), with Go's error text.
        (
            ". {\n errors {\n  consolidate 5m a**\n }\n}",
            "plugin/errors: Corefile:3 - Error during parsing: error parsing regexp: invalid nested repetition operator: `**`",
        ),
        (
            ". {\n errors {\n  consolidate 5m \"(\"\n }\n}",
            "plugin/errors: Corefile:3 - Error during parsing: error parsing regexp: missing closing ): `(`",
        ),
        (
            ". {\n errors {\n  consolidate 5m x{1001}\n }\n}",
            "plugin/errors: Corefile:3 - Error during parsing: error parsing regexp: invalid repeat count: `{1001}`",
        ),
        (
            ". {\n auto {\n  directory . db\\.(.*)\\q {1}\n }\n}",
            "plugin/auto: error parsing regexp: invalid escape sequence: `\\q`",
        ),
        (
            ". {\n kubernetes cluster.local\n}",
            "plugin/kubernetes: unable to load in-cluster configuration, KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be defined",
        ),
        (
            ". {\n kubernetes 10.in-addr.arpa 8.ip6.arpa\n}",
            "plugin/kubernetes: non-reverse zone name must be used",
        ),
        (
            ". {\n kubernetes cluster.local {\n  apiserver_qps 1e39\n }\n}",
            "plugin/kubernetes: Corefile:3 - Error during parsing: invalid apiserver_qps \"1e39\": strconv.ParseFloat: parsing \"1e39\": value out of range",
        ),
        (
            ". {\n kubernetes cluster.local {\n  ttl 3601\n }\n}",
            "plugin/kubernetes: Corefile:3 - Error during parsing: ttl must be in range [0, 3600]: 3601",
        ),
        (
            ". {\n kubernetes cluster.local {\n  ttl x\n }\n}",
            "plugin/kubernetes: strconv.Atoi: parsing \"x\": invalid syntax",
        ),
        (
            ". {\n kubernetes cluster.local {\n  pods maybe\n }\n}",
            "plugin/kubernetes: wrong value for pods: maybe,  must be one of: disabled, verified, insecure",
        ),
        (
            ". {\n kubernetes cluster.local {\n  namespaces a\n  namespace_labels x=y\n }\n}",
            "plugin/kubernetes: Corefile:5 - Error during parsing: namespaces and namespace_labels cannot both be set",
        ),
        (
            ". {\n kubernetes cluster.local {\n  labels app!=web\n }\n}",
            "plugin/kubernetes: unable to parse label selector value: 'app!=web': \"!=\" is not a valid label selector operator",
        ),
        (
            ". {\n kubernetes cluster.local {\n  ignore all\n }\n}",
            "plugin/kubernetes: unable to parse ignore value: 'all'",
        ),
        (
            ". {\n kubernetes cluster.local {\n  startup_timeout 5x\n }\n}",
            "plugin/kubernetes: failed to parse startup_timeout: 5x, time: unknown unit \"x\" in duration \"5x\"",
        ),
        (
            ". {\n kubernetes cluster.local {\n  apiserver_qps -1\n }\n}",
            "plugin/kubernetes: Corefile:3 - Error during parsing: apiserver_qps must be >= 0",
        ),
        (
            ". {\n kubernetes cluster.local {\n  kubeconfig /k c\n }\n}",
            "plugin/kubernetes: stat /k: no such file or directory",
        ),
        (
            ". {\n kubernetes cluster.local {\n  multicluster clusterset.local\n }\n}",
            "plugin/kubernetes: Corefile:4 - Error during parsing: is not authoritative for the multicluster zone clusterset.local. (authoritative zones: [cluster.local.])",
        ),
        (
            ". {\n kubernetes coredns.local clusterset.local {\n  multicluster clusterset.local test.local\n }\n}",
            "plugin/kubernetes: Corefile:4 - Error during parsing: is not authoritative for the multicluster zone test.local. (authoritative zones: [coredns.local. clusterset.local.])",
        ),
        (
            ". {\n kubernetes cluster.local {\n  zonal x\n }\n}",
            "plugin/kubernetes: Corefile:3 - Error during parsing: Wrong argument count or unexpected line ending after 'x'",
        ),
        (
            ". {\n kubernetes cluster.local {\n  zonal\n  noendpoints\n }\n}",
            "plugin/kubernetes: Corefile:5 - Error during parsing: zonal requires the endpoint cache; remove noendpoints",
        ),
        (
            ". {\n kubernetes cluster.local {\n  bogus\n }\n}",
            "plugin/kubernetes: Corefile:3 - Error during parsing: unknown property 'bogus'",
        ),
        (
            ". {\n k8s_external example.com {\n  ttl 4000\n }\n}",
            "plugin/k8s_external: Corefile:3 - Error during parsing: ttl must be in range [0, 3600]: 4000",
        ),
        (
            ". {\n k8s_external example.com {\n  apex\n }\n}",
            "plugin/k8s_external: Corefile:3 - Error during parsing: Wrong argument count or unexpected line ending after 'apex'",
        ),
        (
            ". {\n k8s_external example.com {\n  nope\n }\n}",
            "plugin/k8s_external: Corefile:3 - Error during parsing: unknown property 'nope'",
        ),
        (
            ". {\n kubernetes cluster.local\n kubernetes cluster.local\n}",
            "plugin/kubernetes: this plugin can only be used once per Server Block",
        ),
        (
            ". {\n rewrite cname a.org\n}",
            "plugin/rewrite: too few (1) arguments for a cname rule",
        ),
        (
            "example.org:1053 {\n whoami\n}\nexample.org:1053 {\n whoami\n}",
            "cannot serve dns://example.org.:1053 - it is already defined",
        ),
        (
            "example.org:1053 example.org:1053 {\n whoami\n}",
            "cannot serve dns://example.org.:1053 - it is already defined",
        ),
        (
            "example.org:1053 {\n whoami\n}\nexample.org:1053 {\n bind 127.0.0.1\n whoami\n}",
            "cannot serve dns://example.org.:1053 on 127.0.0.1 - zone overlap listener capacity with dns://example.org.:1053",
        ),
        (
            "example.org:1053 {\n whoami\n}\nexample.org:1053 {\n view v {\n  expr true\n }\n bind 127.0.0.1\n whoami\n}",
            "cannot serve dns://example.org.:1053 on 127.0.0.1 - zone overlap listener capacity with dns://example.org.:1053",
        ),
        (
            ". {\n view a b {\n  expr true\n }\n whoami\n}",
            "plugin/view: Corefile:2 - Error during parsing: Wrong argument count or unexpected line ending after 'b'",
        ),
        (
            ". {\n view v {\n  expr name() ==\n }\n whoami\n}",
            "plugin/view: unexpected token EOF (1:10)\n | name() ==\n | .........^",
        ),
        (
            ". {\n view v {\n  expr nosuch(name())\n }\n whoami\n}",
            "plugin/view: unknown name nosuch (1:1)\n | nosuch(name())\n | ^",
        ),
        (
            ". {\n whoami extra\n}",
            "plugin/whoami: Corefile:2 - Error during parsing: Wrong argument count or unexpected line ending after 'extra'",
        ),
        (
            ". {\n bufsize 100\n}",
            "plugin/bufsize: plugin/bufsize: Corefile:2 - Error during parsing: Wrong argument count or unexpected line ending after '100'",
        ),
        (
            ". {\n bind bogus0\n}",
            "plugin/bind: not a valid IP address or interface name: \"bogus0\"",
        ),
        (
            ". {\n timeouts\n}",
            "plugin/timeouts: plugin/timeouts: Corefile:2 - Error during parsing: timeouts block with no timeouts specified",
        ),
        (
            ". {\n timeouts {\n  read 0.5s\n }\n}",
            "plugin/timeouts: Corefile:3 - Error during parsing: timeout provided '500ms' needs to be between 1 second and 24 hours",
        ),
        (
            ". {\n cancel -1s\n}",
            "plugin/cancel: invalid negative duration: \"-1s\"",
        ),
        (
            ". {\n local x\n}",
            "plugin/local: Corefile:2 - Error during parsing: Wrong argument count or unexpected line ending after 'x'",
        ),
        (
            ". {\n header {\n  query set xx\n }\n}",
            "plugin/header: setting up rule: unknown/unsupported flag=xx",
        ),
        (
            ". {\n chaos v {\n  x\n }\n}",
            "plugin/chaos: Corefile:3 - Error during parsing: unknown property 'x'",
        ),
        (
            ". {\n erratic {\n  drop -1\n }\n}",
            "plugin/erratic: illegal amount value given \"-1\"",
        ),
        (". {\n any\n whoami\n}", "ok"),
        ("tls://.:8853 {\n whoami\n}", "ok"),
        ("quic://.:8853 {\n whoami\n}", "quic: tls.Config not set"),
        (
            "quic://.:8853 {\n quic x\n whoami\n}",
            "plugin/quic: Corefile:2 - Error during parsing: Wrong argument count or unexpected line ending after 'x'",
        ),
        (
            "quic://.:8853 {\n quic {\n  max_streams 0\n }\n}",
            "plugin/quic: Corefile:3 - Error during parsing: max_streams must be a positive integer: 0",
        ),
        (
            "quic://.:8853 {\n quic {\n  worker_pool_size x\n }\n}",
            "plugin/quic: Corefile:3 - Error during parsing: invalid worker_pool_size value 'x': strconv.Atoi: parsing \"x\": invalid syntax",
        ),
        (
            "quic://.:8853 {\n quic {\n  worker_pool_size 2\n  worker_pool_size 3\n }\n}",
            "plugin/quic: Corefile:4 - Error during parsing: worker_pool_size already defined for this server block",
        ),
        (
            "quic://.:8853 {\n quic {\n  max_connections 2\n }\n}",
            "plugin/quic: Corefile:3 - Error during parsing: unknown property 'max_connections'",
        ),
        (
            "https3://.:8853 {\n whoami\n}",
            "DoH3 requires TLS, no TLS config found",
        ),
        (
            "https3://.:8853 {\n https3 {\n  max_streams -1\n }\n}",
            "plugin/https3: Corefile:3 - Error during parsing: max_streams must be a non-negative integer: -1",
        ),
        (
            "https3://.:8853 {\n https3 {\n  max_connections x\n }\n}",
            "plugin/https3: Corefile:3 - Error during parsing: invalid max_connections value 'x': strconv.Atoi: parsing \"x\": invalid syntax",
        ),
        (
            "https3://.:8853 {\n https3 {\n  max_streams 1\n  max_streams 2\n }\n}",
            "plugin/https3: Corefile:4 - Error during parsing: max_streams already defined for this server block",
        ),
        (
            "https3://.:8853 {\n https3 {\n  worker_pool_size 2\n }\n}",
            "plugin/https3: Corefile:3 - Error during parsing: unknown property 'worker_pool_size'",
        ),
        (
            "https3://.:8853 {\n https3 extra\n}",
            "plugin/https3: Corefile:2 - Error during parsing: Wrong argument count or unexpected line ending after 'extra'",
        ),
        ("https://.:8443 {\n whoami\n}", "ok"),
        (
            "https://.:8443 {\n https {\n  max_connections 0\n }\n whoami\n}",
            "ok",
        ),
        (
            "https://.:8443 {\n https x\n whoami\n}",
            "plugin/https: Corefile:2 - Error during parsing: Wrong argument count or unexpected line ending after 'x'",
        ),
        (
            "https://.:8443 {\n https {\n  max_connections\n }\n}",
            "plugin/https: Corefile:3 - Error during parsing: Wrong argument count or unexpected line ending after 'max_connections'",
        ),
        (
            "https://.:8443 {\n https {\n  max_connections x\n }\n}",
            "plugin/https: Corefile:3 - Error during parsing: invalid max_connections value 'x': strconv.Atoi: parsing \"x\": invalid syntax",
        ),
        (
            "https://.:8443 {\n https {\n  max_connections -1\n }\n}",
            "plugin/https: Corefile:3 - Error during parsing: max_connections must be a non-negative integer: -1",
        ),
        (
            "https://.:8443 {\n https {\n  max_connections 1\n  max_connections 2\n }\n}",
            "plugin/https: Corefile:4 - Error during parsing: max_connections already defined for this server block",
        ),
        (
            "https://.:8443 {\n https {\n  max_streams 1\n }\n}",
            "plugin/https: Corefile:3 - Error during parsing: unknown property 'max_streams'",
        ),
        // Only the first https line is read.
        ("https://.:8443 {\n https\n https x\n whoami\n}", "ok"),
        ("grpc://.:8443 {\n whoami\n}", "ok"),
        (
            "grpc://.:8443 {\n grpc_server {\n  max_streams -1\n }\n}",
            "plugin/grpc_server: Corefile:3 - Error during parsing: max_streams must be a non-negative integer: -1",
        ),
        (
            "grpc://.:8443 {\n grpc_server {\n  max_connections 1 2\n }\n}",
            "plugin/grpc_server: Corefile:3 - Error during parsing: Wrong argument count or unexpected line ending after '2'",
        ),
        (
            "grpc://.:8443 {\n grpc_server {\n  max_connections 1\n  max_connections 1\n }\n}",
            "plugin/grpc_server: Corefile:4 - Error during parsing: max_connections already defined for this server block",
        ),
        (
            ". {\n multisocket 0\n}",
            "plugin/multisocket: num sockets can not be zero or negative: 0",
        ),
        (
            ". {\n multisocket 2000\n}",
            "plugin/multisocket: num sockets exceeds maximum (1024): 2000",
        ),
        (
            ". {\n multisocket x\n}",
            "plugin/multisocket: invalid num sockets: strconv.Atoi: parsing \"x\": invalid syntax",
        ),
        (
            ". {\n multisocket 1 2\n}",
            "plugin/multisocket: Corefile:2 - Error during parsing: Wrong argument count or unexpected line ending after '2'",
        ),
        (
            ". {\n shed x\n}",
            "plugin/shed: Corefile:2 - Error during parsing: Wrong argument count or unexpected line ending after 'x'",
        ),
        (
            "tls://. {\n shed\n}",
            "plugin/shed: Corefile:2 - Error during parsing: only plain DNS server blocks are supported; \"tls://.:853\" uses transport \"tls\"",
        ),
        (
            ". {\n pprof localhost\n}",
            "plugin/pprof: address localhost: missing port in address",
        ),
        (
            ". {\n pprof\n}",
            "plugin/pprof: Go's /debug/pprof endpoints are not supported by ringdns; profile it with perf",
        ),
        (
            ". {\n reload 1s\n}",
            "plugin/reload: interval value must be greater or equal to 2s",
        ),
        (
            ". {\n reload 5s 500ms\n}",
            "plugin/reload: jitter value must be 0 or greater or equal to 1s",
        ),
        (
            ". {\n prometheus localhost\n}",
            "plugin/prometheus: address localhost: missing port in address",
        ),
        (
            ". {\n prometheus {\n  tls x.yml\n }\n}",
            "plugin/prometheus: Corefile:3 - Error during parsing: tls for the metrics endpoint is not supported by ringdns yet",
        ),
        (
            ". {\n prometheus\n prometheus :9154\n}",
            "plugin/prometheus: this plugin can only be used once per Server Block",
        ),
        (
            ". {\n health {\n  lameduck x\n }\n}",
            "plugin/health: unable to parse lameduck duration value: 'x' : time: invalid duration \"x\"",
        ),
        (
            ". {\n ready {\n  monitor sometimes\n }\n}",
            "plugin/ready: Corefile:3 - Error during parsing: monitor type 'sometimes' not supported",
        ),
        (
            ". {\n loop x\n}",
            "plugin/loop: Corefile:2 - Error during parsing: Wrong argument count or unexpected line ending after 'x'",
        ),
    ];
    for (input, want) in cases {
        assert_eq!(&err(input), want, "input: {input:?}");
    }
}

#[test]
fn setup_errors_follow_plugin_cfg_order() {
    // errors (23) is set up before whoami (56), whatever the Corefile order.
    assert_eq!(
        err(". {\n whoami x\n errors a b\n}"),
        "plugin/errors: Corefile:3 - Error during parsing: Wrong argument count or unexpected line ending after 'b'"
    );
}

#[test]
fn typed_config() {
    let c = build_str("example.org:1053 10.0.0.0/15 {\n log\n whoami\n}\n.:1053 {\n chaos\n}")
        .expect("ok");
    assert_eq!(c.blocks.len(), 2);
    assert_eq!(
        c.blocks[0].keys,
        [
            "dns://example.org.:1053",
            "dns://0.10.in-addr.arpa.:53",
            "dns://1.10.in-addr.arpa.:53"
        ]
    );
    let names: Vec<&str> = c.blocks[0]
        .plugins
        .iter()
        .map(|p| match p {
            PluginConfig::Log(_) => "log",
            PluginConfig::Whoami => "whoami",
            _ => "?",
        })
        .collect();
    assert_eq!(names, ["log", "whoami"]);
    let labels: Vec<&str> = c.listeners.iter().map(|l| l.label.as_str()).collect();
    assert_eq!(labels, ["dns://:1053", "dns://:53"]);
    assert_eq!(c.listeners[0].sites.len(), 2);
}

#[test]
fn empty_corefile_is_default() {
    let c = build_str("# nothing\n(snip) {\n log\n}\n").expect("ok");
    assert_eq!(c.blocks[0].keys, ["dns://.:53"]);
    assert_eq!(c.blocks[0].plugins.len(), 2);
}

/// Values Go accepts where a stricter reading would refuse them.
#[test]
fn accepted_as_go_accepts() {
    for text in [
        // time.ParseDuration takes a negative delay; the sleep returns at once.
        ". {\n erratic {\n  delay 1 -1s\n }\n}",
        // strconv.ParseInt takes a leading plus.
        ". {\n erratic {\n  drop +3\n }\n}",
        // A Go pattern the regex crate would read otherwise: `{` without a count.
        ". {\n errors {\n  consolidate 5m a{,3}\n }\n whoami\n}",
    ] {
        assert!(
            build_str(text).is_ok(),
            "{text}: {:?}",
            build_str(text).err()
        );
    }
}

#[test]
fn tcp_ports_as_go_looks_them_up() {
    let services = "# comment line\n\
        domain\t\t53/tcp\t\t\t# Domain Name Server\n\
        domain\t\t53/udp\n\
        webmin\t\t10000/tcp\n\
        dns-alt  5353/tcp  mdns-alt DNS-Upper # aliases\n\
        udponly 7000/udp\n\
        huge 70000/tcp\n\
        bad 12x/tcp\n\
        http 8080/tcp\n";
    let p = |s: &str| go_tcp_port_in(s, services);
    // Numbers, as Go's parsePort reads them.
    assert_eq!(p("53"), Ok(53));
    assert_eq!(p("+53"), Ok(53));
    assert_eq!(p("0053"), Ok(53));
    assert_eq!(p(""), Ok(0));
    assert_eq!(p("-0"), Ok(0));
    assert_eq!(p("65535"), Ok(65535));
    assert_eq!(p("65536"), Err("address 65536: invalid port".into()));
    assert_eq!(
        p("99999999999999"),
        Err("address 99999999999999: invalid port".into())
    );
    assert_eq!(p("-1"), Err("address -1: invalid port".into()));
    // Names from the file (names and aliases, TCP lines only), matched without
    // regard to case; the file's later lines win over Go's built-in names.
    assert_eq!(p("domain"), Ok(53));
    assert_eq!(p("DOMAIN"), Ok(53));
    assert_eq!(p("webmin"), Ok(10000));
    assert_eq!(p("mdns-alt"), Ok(5353));
    assert_eq!(p("http"), Ok(8080));
    assert_eq!(p("ssh"), Ok(22), "built in");
    assert_eq!(
        p("dns-upper"),
        Err("lookup tcp/dns-upper: unknown port".into())
    );
    assert_eq!(p("udponly"), Err("lookup tcp/udponly: unknown port".into()));
    assert_eq!(p("bad"), Err("lookup tcp/bad: unknown port".into()));
    assert_eq!(p("huge"), Err("address huge: invalid port".into()));
    assert_eq!(
        p("nosuchservice"),
        Err("lookup tcp/nosuchservice: unknown port".into())
    );
    assert_eq!(
        p("abcdefghijklmnopqrstuvwxyz"),
        Err("lookup tcp/abcdefghijklmnopqrstuvwxyz: unknown port".into()),
        "longer than Go's buffer"
    );
    // Without /etc/services: Go's built-in names only (none for DNS over TCP).
    assert_eq!(
        go_tcp_port_in("domain", ""),
        Err("lookup tcp/domain: unknown port".into())
    );
    assert_eq!(go_tcp_port_in("https", ""), Ok(443));
}
