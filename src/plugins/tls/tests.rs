//! *tls* setup: Corefile → the error CoreDNS 1.14.7 prints, or a server configuration.

use crate::config::tests::{build_str, err};

struct Files {
    dir: std::path::PathBuf,
}

impl Files {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("ringdns-tls-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let a = rcgen::generate_simple_self_signed(vec!["dns.example".to_owned()]).expect("cert");
        let b = rcgen::generate_simple_self_signed(vec!["other.example".to_owned()]).expect("cert");
        std::fs::write(dir.join("cert.pem"), a.cert.pem()).expect("write");
        std::fs::write(dir.join("key.pem"), a.signing_key.serialize_pem()).expect("write");
        std::fs::write(dir.join("other-key.pem"), b.signing_key.serialize_pem()).expect("write");
        std::fs::write(dir.join("junk.pem"), "nothing here").expect("write");
        Self { dir }
    }

    fn p(&self, name: &str) -> String {
        self.dir.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn setup_table() {
    let f = Files::new("setup");
    let (c, k) = (f.p("cert.pem"), f.p("key.pem"));
    let block = |body: &str| format!("tls://.:8853 {{\n{body}\n whoami\n}}");
    let cases: Vec<(String, String)> = vec![
        (block(&format!("tls {c} {k}")), "ok".into()),
        (block(&format!("tls {c} {k} {c}")), "ok".into()),
        (
            block("tls"),
            "plugin/tls: ACME certificates (tls without arguments) are not supported by ringdns yet"
                .into(),
        ),
        (
            block("tls cert.pem"),
            "plugin/tls: plugin/tls: Corefile:2 - Error during parsing: Wrong argument count or unexpected line ending after 'cert.pem'".into(),
        ),
        (
            block("tls a b c d"),
            "plugin/tls: plugin/tls: Corefile:2 - Error during parsing: Wrong argument count or unexpected line ending after 'd'".into(),
        ),
        (
            block(&format!("tls {c} {k} {{\n client_auth\n}}")),
            "plugin/tls: Corefile:3 - Error during parsing: Wrong argument count or unexpected line ending after 'client_auth'".into(),
        ),
        (
            block(&format!("tls {c} {k} {{\n client_auth request require\n}}")),
            "plugin/tls: Corefile:3 - Error during parsing: Wrong argument count or unexpected line ending after 'require'".into(),
        ),
        (
            block(&format!("tls {c} {k} {{\n client_auth maybe\n}}")),
            "plugin/tls: Corefile:3 - Error during parsing: unknown authentication type 'maybe'"
                .into(),
        ),
        (
            block(&format!("tls {c} {k} {{\n keylog\n}}")),
            "plugin/tls: Corefile:3 - Error during parsing: Wrong argument count or unexpected line ending after 'keylog'".into(),
        ),
        (
            // The options are read before the files.
            block("tls /nonexistent/c.pem /nonexistent/k.pem {\n ciphers x\n}"),
            "plugin/tls: Corefile:3 - Error during parsing: unknown option 'ciphers'".into(),
        ),
        (
            block("tls /nonexistent/c.pem /nonexistent/k.pem"),
            "plugin/tls: could not load TLS cert: open /nonexistent/c.pem: no such file or directory"
                .into(),
        ),
        (
            block(&format!("tls {c} /nonexistent/k.pem")),
            "plugin/tls: could not load TLS cert: open /nonexistent/k.pem: no such file or directory"
                .into(),
        ),
        (
            block(&format!("tls {} {k}", f.p("junk.pem"))),
            "plugin/tls: could not load TLS cert: tls: failed to find any PEM data in certificate input"
                .into(),
        ),
        (
            block(&format!("tls {c} {}", f.p("junk.pem"))),
            "plugin/tls: could not load TLS cert: tls: failed to find any PEM data in key input"
                .into(),
        ),
        (
            block(&format!("tls {c} {}", f.p("other-key.pem"))),
            "plugin/tls: could not load TLS cert: tls: private key does not match public key"
                .into(),
        ),
        (
            block(&format!("tls {c} {k} /nonexistent/ca.pem")),
            "plugin/tls: error reading /nonexistent/ca.pem: open /nonexistent/ca.pem: no such file or directory".into(),
        ),
        (
            block(&format!("tls {c} {k} {}", f.p("junk.pem"))),
            "plugin/tls: could not read root certs: %!s(<nil>)".into(),
        ),
        (
            block(&format!("tls {c} {k} {{\n keylog /nonexistent/keys.log\n}}")),
            // Reported after the block is read: at its closing brace, as caddy's Errf.
            "plugin/tls: Corefile:4 - Error during parsing: unable to write TLS Key Log to \"/nonexistent/keys.log\": open /nonexistent/keys.log: no such file or directory".into(),
        ),
    ];
    for (input, want) in &cases {
        assert_eq!(&err(input), want, "input: {input:?}");
    }
    for mode in [
        "nocert",
        "request",
        "require",
        "verify_if_given",
        "require_and_verify",
    ] {
        let input = block(&format!("tls {c} {k} {c} {{\n client_auth {mode}\n}}"));
        assert_eq!(err(&input), "ok", "{input}");
    }
}

#[test]
fn paths_are_relative_to_root_and_keylog_is_created() {
    let f = Files::new("root");
    let text = format!(
        "tls://.:8853 {{\n root {}\n tls cert.pem key.pem {{\n  keylog keys.log\n  client_auth require\n }}\n whoami\n}}",
        f.dir.display()
    );
    let cfg = build_str(&text).expect("config");
    let tls = cfg.blocks[0].settings.tls.as_ref().expect("tls set");
    assert_eq!(tls.client_auth, super::ClientAuth::Require);
    let meta = std::fs::metadata(f.p("keys.log")).expect("keylog created at setup");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    // A second tls line in the block replaces the first (CoreDNS's loop overwrites).
    let text = format!(
        "tls://.:8853 {{\n root {}\n tls cert.pem key.pem {{\n  client_auth require\n }}\n tls cert.pem key.pem\n whoami\n}}",
        f.dir.display()
    );
    let cfg = build_str(&text).expect("config");
    let tls = cfg.blocks[0].settings.tls.as_ref().expect("tls set");
    assert_eq!(tls.client_auth, super::ClientAuth::NoCert);
}

#[test]
fn listener_takes_the_tls_of_its_blocks() {
    let f = Files::new("listener");
    let text = format!(
        "tls://example.org:8853 {{\n tls {} {}\n whoami\n}}\ntls://example.net:8853 {{\n whoami\n}}\n.:8854 {{\n tls {} {}\n whoami\n}}\ntls://.:8855 {{\n whoami\n}}",
        f.p("cert.pem"),
        f.p("key.pem"),
        f.p("cert.pem"),
        f.p("key.pem")
    );
    let cfg = build_str(&text).expect("config");
    let active = crate::server::Active::build(cfg).expect("active");
    let tls_of = |label: &str| active.find(label).map(|l| l.tls.is_some());
    // Two blocks share tls://:8853; one has tls.
    assert_eq!(tls_of("tls://:8853"), Some(true));
    // A plain DNS listener never speaks TLS, even with tls in its block.
    assert_eq!(tls_of("dns://:8854"), Some(false));
    // tls:// without the plugin serves plain TCP.
    assert_eq!(tls_of("tls://:8855"), Some(false));
}
