//! *transfer* tests: setup as CoreDNS's `setup_test.go`, host:port
//! normalisation, longest-match selection.

use super::*;
use crate::plugins::file::tests::with_setup;

fn t(text: &str) -> Result<TransferConfig, String> {
    with_setup(&["example.org."], text, setup).map_err(|e| e.to_string())
}

#[test]
fn setup_cases() {
    let c =
        t("transfer {\n to * 192.0.2.1 [2001:db8::1]:5353 ::1\n source 127.0.0.1\n}").expect("ok");
    assert_eq!(
        c.xfrs[0].to,
        vec!["*", "192.0.2.1:53", "[2001:db8::1]:5353", "[::1]:53"]
    );
    assert_eq!(c.xfrs[0].zones[0].to_string(), "example.org.");
    let c = t("transfer example.net 10.0.0.0/8 {\n to *\n}\ntransfer {\n to *\n}").expect("ok");
    assert_eq!(c.xfrs.len(), 2);
    assert_eq!(c.xfrs[0].zones.len(), 2);
    assert_eq!(
        t("transfer {\n to\n}").expect_err("args"),
        "plugin/transfer: Corefile:2 - Error during parsing: Wrong argument count or unexpected line ending after 'to'"
    );
    assert_eq!(
        t("transfer {\n to example.net\n}").expect_err("ip"),
        "plugin/transfer: must specify an IP address: `example.net'"
    );
    assert_eq!(
        t("transfer {\n}").expect_err("to"),
        "plugin/transfer: plugin/transfer: Corefile:2 - Error during parsing: 'to' is required"
    );
    assert!(
        t("transfer {\n to *\n foo\n}")
            .expect_err("prop")
            .ends_with("unknown property \"foo\"")
    );
    assert!(
        t("transfer {\n to *\n source x\n}")
            .expect_err("src")
            .ends_with("invalid source address \"x\"")
    );
    assert!(
        t("transfer {\n to *\n source 1.2.3.4\n source 1.2.3.5\n}")
            .expect_err("twice")
            .ends_with("source already specified")
    );
}

#[test]
fn longest_match_wins() {
    let n = |s: &str| Name::parse(s).expect("name");
    let stanzas = [
        (vec![n("org.")], 1),
        (vec![n("example.org.")], 2),
        (vec![n("example.net.")], 3),
    ];
    let pick =
        |q: &str| notify::longest_match(stanzas.iter().map(|(z, x)| (z.as_slice(), *x)), &n(q));
    assert_eq!(pick("www.example.org."), Some(2));
    assert_eq!(pick("foo.org."), Some(1));
    assert_eq!(pick("example.com."), None);
}

#[test]
fn ixfr_serial_from_the_authority() {
    // IXFR query with example.org SOA (serial 7) in authority, the SOA names compressed.
    let mut m = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0];
    m.extend_from_slice(b"\x07example\x03org\x00\x00\xfb\x00\x01");
    m.extend_from_slice(&[0xc0, 12, 0, 6, 0, 1, 0, 0, 0, 60, 0, 24]);
    m.extend_from_slice(&[0xc0, 12, 0xc0, 12]);
    for v in [7u32, 1, 2, 3, 4] {
        m.extend_from_slice(&v.to_be_bytes());
    }
    assert_eq!(ixfr_serial(&m), Some(7));
    assert_eq!(ixfr_serial(&m[..29]), None);
}
