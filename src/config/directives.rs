//! The directive table: CoreDNS 1.14.7's `plugin.cfg`, in execution order (first =
//! outermost), and what ringdns implements of it.

/// Every directive of CoreDNS 1.14.7's `plugin.cfg`, in order (cli-and-ops.md §4).
pub const DIRECTIVES: [&str; 60] = [
    "root",
    "metadata",
    "geoip",
    "cancel",
    "proxyproto",
    "quic",
    "grpc_server",
    "https",
    "https3",
    "timeouts",
    "multisocket",
    "reload",
    "nsid",
    "bufsize",
    "bind",
    "debug",
    "trace",
    "ready",
    "health",
    "pprof",
    "shed",
    "prometheus",
    "errors",
    "log",
    "dnstap",
    "local",
    "dns64",
    "any",
    "chaos",
    "loadbalance",
    "tsig",
    "rewrite",
    "autopath",
    "acl",
    "cache",
    "header",
    "dnssec",
    "tls",
    "minimal",
    "template",
    "transfer",
    "hosts",
    "route53",
    "azure",
    "clouddns",
    "k8s_external",
    "kubernetes",
    "file",
    "auto",
    "secondary",
    "etcd",
    "loop",
    "forward",
    "grpc",
    "erratic",
    "whoami",
    "on",
    "sign",
    "view",
    "nomad",
];

/// Directives ringdns implements (the `-plugins` list, before sorting).
pub const IMPLEMENTED: &[&str] = &[
    "root",
    "trace",
    "metadata",
    "geoip",
    "cancel",
    "proxyproto",
    "timeouts",
    "https",
    "https3",
    "quic",
    "grpc_server",
    "nsid",
    "bufsize",
    "bind",
    "debug",
    "multisocket",
    "reload",
    "ready",
    "health",
    "shed",
    "prometheus",
    "errors",
    "log",
    "dnstap",
    "local",
    "dns64",
    "any",
    "chaos",
    "loadbalance",
    "rewrite",
    "autopath",
    "acl",
    "cache",
    "header",
    "dnssec",
    "tls",
    "minimal",
    "template",
    "transfer",
    "hosts",
    "k8s_external",
    "kubernetes",
    "file",
    "auto",
    "secondary",
    "etcd",
    "forward",
    "grpc",
    "loop",
    "erratic",
    "whoami",
    "on",
    "sign",
    "view",
    "tsig",
    "nomad",
];

/// Directives whose syntax is checked before they fail with a specific error
/// (not listed by `-plugins`).
pub const CHECKED_ONLY: &[&str] = &["pprof"];

/// Position of `name` in plugin.cfg order.
pub fn order(name: &str) -> Option<usize> {
    DIRECTIVES.iter().position(|d| *d == name)
}

/// Whether ringdns implements `name`.
pub fn implemented(name: &str) -> bool {
    IMPLEMENTED.contains(&name)
}

/// The `-plugins` output: implemented directive names, sorted byte-wise, each on
/// its own line, then an empty line (CoreDNS prints `on` last; ringdns lists
/// only what it really implements).
pub fn plugins_listing() -> String {
    let mut names: Vec<&str> = IMPLEMENTED.to_vec();
    names.sort_unstable();
    let mut s = String::new();
    for n in names {
        s.push_str(n);
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table as cli-and-ops.md §4 lists it (row-wise), held against ours.
    const SPEC: &str = "
 1 root           2 metadata       3 geoip          4 cancel         5 proxyproto
 6 quic           7 grpc_server    8 https          9 https3        10 timeouts
11 multisocket   12 reload        13 nsid          14 bufsize       15 bind
16 debug         17 trace         18 ready         19 health        20 pprof
21 shed          22 prometheus    23 errors        24 log           25 dnstap
26 local         27 dns64         28 any           29 chaos         30 loadbalance
31 tsig          32 rewrite       33 autopath      34 acl           35 cache
36 header        37 dnssec        38 tls           39 minimal       40 template
41 transfer      42 hosts         43 route53       44 azure         45 clouddns
46 k8s_external  47 kubernetes    48 file          49 auto          50 secondary
51 etcd          52 loop          53 forward       54 grpc          55 erratic
56 whoami        57 on            58 sign          59 view          60 nomad
";

    #[test]
    fn order_matches_plugin_cfg() {
        let words: Vec<&str> = SPEC.split_whitespace().collect();
        let mut pairs: Vec<(usize, &str)> = words
            .chunks(2)
            .map(|c| (c[0].parse::<usize>().expect("number"), c[1]))
            .collect();
        pairs.sort_unstable();
        let names: Vec<&str> = pairs.iter().map(|p| p.1).collect();
        assert_eq!(names, DIRECTIVES.to_vec());
    }

    #[test]
    fn implemented_are_known() {
        for n in IMPLEMENTED {
            assert!(order(n).is_some(), "{n}");
        }
    }
}
