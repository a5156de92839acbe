//! Zone-file parser tests: directives, defaults, escapes, every RDATA form
//! and error positions.

use super::*;
use crate::wire::Name;
use crate::zone::text::rr_to_string;

fn origin(s: &str) -> Vec<u8> {
    Name::parse(s).expect("origin").wire().to_vec()
}

fn records(text: &str, o: &str) -> Result<Vec<String>, ParseError> {
    let mut out = Vec::new();
    parse_bytes(text.as_bytes(), "test.db", &origin(o), &mut |r: &Record<
        '_,
    >| {
        let owner = Name::from_wire(r.owner).expect("owner");
        out.push(rr_to_string(&owner, r.rtype, r.class, r.ttl, r.rdata));
        Ok::<(), ParseError>(())
    })?;
    Ok(out)
}

fn err(text: &str) -> ParseError {
    records(text, "example.org.").expect_err("should fail")
}

#[test]
fn directives_and_defaults() {
    let r = records(
        "$ORIGIN example.org.\n$TTL 1h\n@ IN SOA ns.example.org. admin ( 1 2h 3 4w 5 )\n  NS ns\nwww 300 A 192.0.2.1\n A 192.0.2.2\n$ORIGIN sub\nx CH 60 TXT \"a\" b\n",
        ".",
    )
    .expect("parse");
    assert_eq!(
        r,
        vec![
            "example.org. 3600 IN SOA ns.example.org. admin.example.org. 1 7200 3 2419200 5",
            "example.org. 3600 IN NS ns.example.org.",
            "www.example.org. 300 IN A 192.0.2.1",
            "www.example.org. 3600 IN A 192.0.2.2",
            "x.sub.example.org. 60 CH TXT \"a\" \"b\"",
        ]
    );
}

#[test]
fn ttl_without_directive_carries_over() {
    let r = records("a 300 IN A 192.0.2.1\nb IN A 192.0.2.2\n", "example.org.").expect("parse");
    assert_eq!(r[1], "b.example.org. 300 IN A 192.0.2.2");
    let e = err("a A 192.0.2.1\n");
    assert_eq!(e.kind, ErrorKind::MissingTtl);
    assert_eq!((e.line, e.col), (1, 3));
}

#[test]
fn escapes_in_names_and_strings() {
    let r = records(
        "$TTL 60\nhas\\046dot A 192.0.2.1\nsp\\ ace TXT \"q\\\"uote\" \\065\n",
        "example.org.",
    )
    .expect("parse");
    assert_eq!(r[0], "has\\.dot.example.org. 60 IN A 192.0.2.1");
    assert_eq!(r[1], "sp\\ ace.example.org. 60 IN TXT \"q\\\"uote\" \"A\"");
}

#[test]
fn rdata_forms() {
    let z = "$TTL 60
mx MX 10 mail
srv SRV 1 2 3 target.example.com.
caa CAA 0 issue \"letsencrypt.org\"
ds DS 60485 5 1 2BB183AF5F22588179A53B0A98631FAD1A292118
key DNSKEY 256 3 8 AwEAAaetidLzsKWUt4swWR8yu0wPHPiUi8LUsAD0QPWU+wzt89epO6tH zkMBVDkC7qphQO2hTY4hHn9npWFRw5BYubE=
sig RRSIG A 8 3 300 20160310000000 20160218000000 12345 example.org. AwEAAaetidLzsKWUt4swWR8yu0wPHPiUi8LU
nsec NSEC next.example.org. A MX RRSIG NSEC TYPE1234
u TYPE65534 \\# 3 abcdef
a2 A \\# 4 c0000201
h HTTPS 1 . alpn=h2,h3 ipv4hint=192.0.2.1 port=8443 ech=AAAA
s SVCB 0 svc.example.net.
l LOC 52 22 23.000 N 4 53 32.000 E -2.00m 0.00m 10000m 10m
naptr NAPTR 100 10 \"S\" \"SIP+D2U\" \"!^.*$!sip:customer-service@example.com!\" _sip._udp.example.com.
sshfp SSHFP 1 1 123456789abcdef67890123456789abcdef67890
tlsa TLSA 3 1 1 0123456789ABCDEF
aaaa AAAA 2001:db8::1
$GENERATE 1-3 host-$ A 10.0.0.$
";
    let r = records(z, "example.org.").expect("parse");
    assert_eq!(r[0], "mx.example.org. 60 IN MX 10 mail.example.org.");
    assert_eq!(r[1], "srv.example.org. 60 IN SRV 1 2 3 target.example.com.");
    assert_eq!(
        r[2],
        "caa.example.org. 60 IN CAA 0 issue \"letsencrypt.org\""
    );
    assert_eq!(
        r[3],
        "ds.example.org. 60 IN DS 60485 5 1 2BB183AF5F22588179A53B0A98631FAD1A292118"
    );
    assert!(
        r[4].starts_with("key.example.org. 60 IN DNSKEY 256 3 8 AwEAAaet"),
        "{}",
        r[4]
    );
    assert_eq!(
        r[5],
        "sig.example.org. 60 IN RRSIG A 8 3 300 20160310000000 20160218000000 12345 example.org. AwEAAaetidLzsKWUt4swWR8yu0wPHPiUi8LU"
    );
    assert_eq!(
        r[6],
        "nsec.example.org. 60 IN NSEC next.example.org. A MX RRSIG NSEC TYPE1234"
    );
    assert_eq!(r[7], "u.example.org. 60 IN TYPE65534 \\# 3 ABCDEF");
    assert_eq!(r[8], "a2.example.org. 60 IN A 192.0.2.1");
    assert_eq!(
        r[9],
        "h.example.org. 60 IN HTTPS 1 . alpn=h2,h3 port=8443 ipv4hint=192.0.2.1 ech=AAAA"
    );
    assert_eq!(r[10], "s.example.org. 60 IN SVCB 0 svc.example.net.");
    assert_eq!(
        r[11],
        "l.example.org. 60 IN LOC \\# 16 000016138B3CF018810CBCE0009895B8"
    );
    assert_eq!(r[15], "aaaa.example.org. 60 IN AAAA 2001:db8::1");
    assert_eq!(r[16], "host-1.example.org. 60 IN A 10.0.0.1");
    assert_eq!(r.len(), 19);
}

#[test]
fn errors_name_the_position() {
    let e = err("$TTL 60\nwww A 1.2.3\n");
    assert_eq!(
        e.to_string(),
        "test.db: dns: bad A A: \"1.2.3\" at line: 2:7"
    );
    assert_eq!(err("$TTL 60\nx FOO bar\n").kind, ErrorKind::UnknownType);
    assert_eq!(err("$TTL 60\nx MX 10\n").line, 2);
    assert_eq!(err("$TTL 60\nx A 1.2.3.4 5\n").kind, ErrorKind::Garbage);
    assert_eq!(err("$TTL 60\nx A\n").kind, ErrorKind::MissingRdata);
    assert_eq!(err("$TTL 60\n# invalid comment\n").token, "invalid");
    assert_eq!(err("$TTL\n").kind, ErrorKind::BadDirective("$TTL"));
    assert_eq!(err("$TTL 60\nx TYPE1 \\# 5 00\n").line, 2);
    let e = err("$INCLUDE does-not-exist.db\n");
    assert!(
        e.to_string().contains("failed to open `does-not-exist.db'"),
        "{e}"
    );
    let long = format!("$TTL 60\nbig TXT {}\n", "x".repeat(70_000));
    assert_eq!(err(&long).kind, ErrorKind::RdataTooLong(70_275));
}

#[test]
fn include_is_relative_and_scoped() {
    let dir = std::env::temp_dir().join(format!("ringdns-zone-inc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("inc.db"), "$TTL 5\nin A 192.0.2.9\n").expect("write");
    let main = dir.join("main.db");
    std::fs::write(
        &main,
        "$TTL 60\n$INCLUDE inc.db sub.example.org.\nout A 192.0.2.1\n",
    )
    .expect("write");
    let mut out = Vec::new();
    parse_file(
        main.to_str().expect("path"),
        &origin("example.org."),
        &mut |r: &Record<'_>| {
            let owner = Name::from_wire(r.owner).expect("owner");
            out.push(rr_to_string(&owner, r.rtype, r.class, r.ttl, r.rdata));
            Ok::<(), ParseError>(())
        },
    )
    .expect("parse");
    assert_eq!(
        out,
        vec![
            "in.sub.example.org. 5 IN A 192.0.2.9",
            "out.example.org. 60 IN A 192.0.2.1"
        ]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn ttl_units() {
    assert_eq!(parse_ttl(b"1h30m"), Some(5400));
    assert_eq!(parse_ttl(b"1W"), Some(604_800));
    assert_eq!(parse_ttl(b"4294967295"), Some(u32::MAX));
    assert_eq!(parse_ttl(b"4294967296"), None);
    assert_eq!(parse_ttl(b"1x"), None);
}

#[test]
fn garbage_never_panics() {
    let base = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/zones/miek.nl.signed.db"
    ))
    .expect("zone");
    let mut seed = 0x9e37_79b9u32;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        seed
    };
    let alphabet = b" \t\n();\"\\.@$*0123456789abcdefAZ#:-=,";
    for round in 0..3000 {
        let mut text = if round % 2 == 0 {
            base.clone()
        } else {
            Vec::new()
        };
        let n = (next() % 400) as usize;
        for _ in 0..n {
            let c = alphabet[(next() as usize) % alphabet.len()];
            if text.is_empty() {
                text.push(c);
            } else {
                let at = (next() as usize) % text.len();
                match next() % 3 {
                    0 => text[at] = c,
                    1 => text.insert(at, c),
                    _ => {
                        text.remove(at);
                    }
                }
            }
        }
        let origin = origin("miek.nl.");
        let _ = parse_bytes(&text, "fuzz", &origin, &mut |_r: &Record<'_>| {
            Ok::<(), ParseError>(())
        });
        let _ = crate::zone::load_str(
            &String::from_utf8_lossy(&text),
            &Name::parse("miek.nl.").expect("n"),
            "fuzz",
        );
    }
}
