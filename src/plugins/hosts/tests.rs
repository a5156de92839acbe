//! *hosts* tests: the verified points of plugins.md E and CoreDNS's
//! `hosts_test.go`/`setup_test.go` cases.

use super::*;
use crate::chain::Proto;
use crate::config::BlockSettings;
use crate::plugins::file::tests::{Outcome, query, run};
use crate::zone::text::message_sections;

fn setup_str(keys: &[&str], text: &str) -> Result<HostsConfig, Diagnostic> {
    let mut settings = BlockSettings::default();
    let keys: Vec<String> = keys.iter().map(|k| format!("dns://{k}:53")).collect();
    let mut ctx = SetupCtx {
        keys: &keys,
        zones: keys
            .iter()
            .map(|k| {
                k.trim_start_matches("dns://")
                    .trim_end_matches(":53")
                    .to_owned()
            })
            .collect(),
        settings: &mut settings,
        filename: "Corefile",
    };
    let mut d = Dispenser::from_text("Corefile", text);
    setup(&mut d, &mut ctx)
}

fn ask(h: &Hosts, name: &str, qtype: u16) -> Outcome {
    run(&query(name, qtype, false), Proto::Udp, &|ctx| h.serve(ctx))
}

fn answers(o: &Outcome) -> (u8, bool, Vec<String>, usize) {
    let Outcome::Reply(m) = o else {
        panic!("no reply: {o:?}")
    };
    let s = message_sections(m).expect("sections");
    (
        crate::wire::hdr::rcode(m),
        crate::wire::hdr::flags(m) & flags::AA != 0,
        s[0].clone(),
        s[1].len() + s[2].len(),
    )
}

const INLINE: &str = "hosts /nonexistent/hosts {
    192.0.2.1 www.example.org Upper.Example.Org
    2001:db8::1 www.example.org
    192.0.2.9 *.wild.example.org
    192.0.2.7 other.example.net
    ::ffff:192.0.2.8 mapped.example.org
}";

#[test]
fn inline_entries_answer_as_coredns() {
    let c = setup_str(&["example.org."], INLINE).expect("setup");
    let h = Hosts::new(&c);
    let (rc, aa, ans, rest) = answers(&ask(&h, "www.example.org.", 1));
    assert_eq!((rc, aa, rest), (0, true, 0));
    assert_eq!(ans, vec!["www.example.org. 3600 IN A 192.0.2.1"]);
    let (_, _, ans, _) = answers(&ask(&h, "WWW.example.org.", 28));
    assert_eq!(ans, vec!["www.example.org. 3600 IN AAAA 2001:db8::1"]);
    // Names are lowercased.
    let (_, _, ans, _) = answers(&ask(&h, "upper.example.org.", 1));
    assert_eq!(ans, vec!["upper.example.org. 3600 IN A 192.0.2.1"]);
    // Another type of an existing name: NOERROR, AA, empty, no SOA.
    let (rc, aa, ans, rest) = answers(&ask(&h, "www.example.org.", 15));
    assert_eq!((rc, aa, ans.len(), rest), (0, true, 0, 0));
    // A name of the zone that is not listed: SERVFAIL, nothing written.
    assert!(matches!(
        ask(&h, "nope.example.org.", 1),
        Outcome::Status(2)
    ));
    assert!(matches!(ask(&h, "example.org.", 6), Outcome::Status(2)));
    // Outside the zones: next plugin.
    assert!(matches!(ask(&h, "www.example.net.", 1), Outcome::Next));
    // IPv4-mapped addresses are IPv4.
    let (_, _, ans, _) = answers(&ask(&h, "mapped.example.org.", 1));
    assert_eq!(ans, vec!["mapped.example.org. 3600 IN A 192.0.2.8"]);
}

#[test]
fn wildcards_match_one_label() {
    let c = setup_str(&["example.org."], INLINE).expect("setup");
    let h = Hosts::new(&c);
    let (_, _, ans, _) = answers(&ask(&h, "a.wild.example.org.", 1));
    assert_eq!(ans, vec!["a.wild.example.org. 3600 IN A 192.0.2.9"]);
    assert!(matches!(
        ask(&h, "b.a.wild.example.org.", 1),
        Outcome::Status(2)
    ));
    assert!(matches!(
        ask(&h, "wild.example.org.", 1),
        Outcome::Status(2)
    ));
    // No PTR for wildcards.
    assert!(matches!(
        ask(&h, "9.2.0.192.in-addr.arpa.", 12),
        Outcome::Next
    ));
}

#[test]
fn ptr_only_for_entries_in_the_zones() {
    // Block `2.0.192.in-addr.arpa example.info`: example.info names give PTRs,
    // example.org names are dropped entirely.
    let c = setup_str(
        &["2.0.192.in-addr.arpa.", "example.info."],
        "hosts /nonexistent/hosts {\n 192.0.2.6 www.example.info\n 192.0.2.1 www.example.org\n}",
    )
    .expect("setup");
    let h = Hosts::new(&c);
    let (rc, aa, ans, _) = answers(&ask(&h, "6.2.0.192.in-addr.arpa.", 12));
    assert_eq!((rc, aa), (0, true));
    assert_eq!(
        ans,
        vec!["6.2.0.192.in-addr.arpa. 3600 IN PTR www.example.info."]
    );
    assert!(matches!(
        ask(&h, "1.2.0.192.in-addr.arpa.", 12),
        Outcome::Next
    ));
    assert!(matches!(ask(&h, "www.example.org.", 1), Outcome::Next));
    // PTR is answered even for reverse names outside the zones.
    let c = setup_str(&["example.org."], INLINE).expect("setup");
    let h = Hosts::new(&c);
    let (_, _, ans, _) = answers(&ask(&h, "1.2.0.192.in-addr.arpa.", 12));
    assert_eq!(
        ans,
        vec![
            "1.2.0.192.in-addr.arpa. 3600 IN PTR www.example.org.",
            "1.2.0.192.in-addr.arpa. 3600 IN PTR upper.example.org."
        ]
    );
    let (_, _, ans, _) = answers(&ask(
        &h,
        "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.",
        12,
    ));
    assert_eq!(ans.len(), 1);
}

#[test]
fn ttl_no_reverse_fallthrough() {
    let c = setup_str(
        &["example.org."],
        "hosts /nonexistent/hosts {\n 192.0.2.1 www.example.org\n ttl 60\n no_reverse\n fallthrough\n}",
    )
    .expect("setup");
    let h = Hosts::new(&c);
    let (_, _, ans, _) = answers(&ask(&h, "www.example.org.", 1));
    assert_eq!(ans, vec!["www.example.org. 60 IN A 192.0.2.1"]);
    assert!(matches!(
        ask(&h, "1.2.0.192.in-addr.arpa.", 12),
        Outcome::Next
    ));
    assert!(matches!(ask(&h, "nope.example.org.", 1), Outcome::Next));
    // NODATA of a listed name does not fall through.
    assert!(matches!(ask(&h, "www.example.org.", 15), Outcome::Reply(_)));
    let c = setup_str(
        &["example.org."],
        "hosts /nonexistent/hosts {\n 192.0.2.1 www.example.org\n fallthrough\n fallthrough_unsupported\n}",
    )
    .expect("setup");
    let h = Hosts::new(&c);
    assert!(matches!(ask(&h, "www.example.org.", 15), Outcome::Next));
    assert!(matches!(ask(&h, "www.example.org.", 28), Outcome::Reply(_)));
}

#[test]
fn file_and_inline_together_and_reload() {
    let dir = std::env::temp_dir().join(format!("ringdns-hosts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("hosts");
    std::fs::write(
        &path,
        "# comment\n192.0.2.5 www.example.org  # trailing\nbad line\n",
    )
    .expect("write");
    let text = format!(
        "hosts {} example.org {{\n 192.0.2.1 www.example.org\n reload 0\n}}",
        path.display()
    );
    let c = setup_str(&["."], &text).expect("setup");
    let h = Hosts::new(&c);
    let (_, _, ans, _) = answers(&ask(&h, "www.example.org.", 1));
    assert_eq!(
        ans,
        vec![
            "www.example.org. 3600 IN A 192.0.2.5",
            "www.example.org. 3600 IN A 192.0.2.1"
        ]
    );
    std::fs::write(
        &path,
        "192.0.2.6 www.example.org\n192.0.2.7 new.example.org\n",
    )
    .expect("write");
    h.shared.read();
    let (_, _, ans, _) = answers(&ask(&h, "new.example.org.", 1));
    assert_eq!(ans, vec!["new.example.org. 3600 IN A 192.0.2.7"]);
    // A deleted file keeps what was read.
    std::fs::remove_file(&path).expect("rm");
    h.shared.read();
    assert!(matches!(ask(&h, "new.example.org.", 1), Outcome::Reply(_)));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn setup_errors() {
    let e = |t: &str| {
        setup_str(&["example.org."], t)
            .expect_err("error")
            .to_string()
    };
    assert_eq!(
        e("hosts {\n ttl\n}"),
        "plugin/hosts: Corefile:2 - Error during parsing: ttl needs a time in second"
    );
    assert!(e("hosts {\n ttl x\n}").ends_with("ttl needs a number of second"));
    assert!(e("hosts {\n ttl 0\n}").ends_with("ttl provided is invalid"));
    assert!(e("hosts {\n ttl 65536\n}").ends_with("ttl provided is invalid"));
    assert!(
        e("hosts {\n reload\n}").ends_with("reload needs a duration (zero seconds to disable)")
    );
    assert!(e("hosts {\n reload x\n}").ends_with("invalid duration for reload 'x'"));
    assert!(e("hosts {\n reload -1s\n}").ends_with("invalid negative duration for reload '-1s'"));
    assert!(
        e("hosts {\n fallthrough_unsupported\n}")
            .ends_with("fallthrough_unsupported requires fallthrough")
    );
    assert!(
        e("hosts {\n fallthrough\n 192.0.2.1 a.example.org\n}")
            .ends_with("unknown property '192.0.2.1'")
    );
    assert_eq!(
        e("hosts\nhosts"),
        "plugin/hosts: this plugin can only be used once per Server Block"
    );
}
