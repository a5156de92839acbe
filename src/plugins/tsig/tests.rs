use super::*;

fn setup_text(input: &str) -> Result<TsigConfig, String> {
    let mut d = corefile::Dispenser::from_text("Corefile", input);
    let mut settings = crate::config::BlockSettings::default();
    let keys = vec!["example.org.:53".to_owned()];
    let zones = vec!["example.org.".to_owned()];
    let ctx = SetupCtx {
        keys: &keys,
        zones,
        settings: &mut settings,
        filename: "Corefile",
    };
    setup(&mut d, &ctx).map_err(|e| e.to_string())
}

#[test]
fn setup_as_coredns() {
    let c = setup_text("tsig {\n secret key. c2VjcmV0\n require A AAAA\n require_opcode UPDATE\n}")
        .expect("ok");
    assert_eq!(c.zones, ["example.org."]);
    assert_eq!(c.secrets, [("key.".to_owned(), "c2VjcmV0".to_owned())]);
    assert_eq!(
        (c.types.as_slice(), c.opcodes.as_slice()),
        (&[1u16, 28][..], &[5u8][..])
    );
    let c = setup_text("tsig other.org {\n secret Key c2VjcmV0\n require all\n}").expect("ok");
    assert_eq!(c.zones, ["other.org."]);
    assert_eq!(c.secrets[0].0, "key.");
    assert!(c.all_types);
    let c = setup_text("tsig {\n require none\n require_opcode all\n}").expect("ok");
    assert!(c.types.is_empty() && !c.all_types && c.all_opcodes);
    // Every parse error is reported as an argument error where parsing stopped.
    let arg = |t: &str| {
        format!(
            "plugin/tsig: Corefile:{t} - Error during parsing: Wrong argument count or unexpected line ending after"
        )
    };
    for (input, want) in [
        ("tsig {\n secret key.\n}", format!("{} 'key.'", arg("2"))),
        (
            "tsig {\n secret a. c2VjcmV0\n secret A c2VjcmV0\n}",
            format!("{} 'c2VjcmV0'", arg("3")),
        ),
        ("tsig {\n require FOO\n}", format!("{} 'FOO'", arg("2"))),
        ("tsig {\n require\n}", format!("{} 'require'", arg("2"))),
        (
            "tsig {\n require_opcode BOGUS\n}",
            format!("{} 'BOGUS'", arg("2")),
        ),
        ("tsig {\n nope 1\n}", format!("{} 'nope'", arg("2"))),
        (
            "tsig {\n secrets /nonexistent/keys\n}",
            format!("{} '/nonexistent/keys'", arg("2")),
        ),
        ("tsig\ntsig", format!("{} 'tsig'", arg("2"))),
    ] {
        assert_eq!(setup_text(input).map(|_| ()), Err(want), "{input}");
    }
}

#[test]
fn key_files_as_coredns_reads_them() {
    let text = "key \"Name.\" {\n\talgorithm hmac-sha256;\n\tsecret \"c2VjcmV0\";\n};\nkey other {\n secret \"b3RoZXI=\";\n}\n";
    assert_eq!(
        parse_key_file(text),
        Ok(vec![
            ("name.".to_owned(), "c2VjcmV0".to_owned()),
            ("other.".to_owned(), "b3RoZXI=".to_owned())
        ])
    );
    for (text, want) in [
        ("bogus", "unexpected token \"bogus\""),
        ("key\n", "expected key name \"key\""),
        ("key a {\n}\n", "expected secret for key \"a.\""),
        ("key a {\n secret\n}\n", "expected secret key \" secret\""),
        ("key a {\n x y\n}\n", "unexpected token \"x\""),
        (
            "key a {\n secret s;\n}\nkey A {\n secret t;\n}\n",
            "key \"a.\" redefined",
        ),
    ] {
        assert_eq!(parse_key_file(text), Err(want.to_owned()), "{text}");
    }
}

/// A query for `example.org. SOA` signed as a client signs it (RFC 8945 §4.3).
fn signed_query(key: &str, alg: &str, secret: &str, time: u64, tamper: bool) -> Vec<u8> {
    let mut m = vec![0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(b"\x07example\x03org\x00\x00\x06\x00\x01");
    let key = Name::parse(key).expect("key");
    let alg = Name::parse(alg).expect("alg");
    let mut buf = m.clone();
    variables(&mut buf, &key, &alg, time, 300, 0, &[], false);
    let mac = hmac(&alg, secret, &buf).expect("mac");
    m.extend_from_slice(key.wire());
    m.extend_from_slice(&TSIG.to_be_bytes());
    m.extend_from_slice(&255u16.to_be_bytes());
    m.extend_from_slice(&0u32.to_be_bytes());
    m.extend_from_slice(&((alg.len() + 16 + mac.len()) as u16).to_be_bytes());
    m.extend_from_slice(alg.wire());
    m.extend_from_slice(&time.to_be_bytes()[2..]);
    m.extend_from_slice(&300u16.to_be_bytes());
    m.extend_from_slice(&(mac.len() as u16).to_be_bytes());
    m.extend_from_slice(&mac);
    m.extend_from_slice(&[0x12, 0x34, 0, 0, 0, 0]);
    hdr::set_count(&mut m, 3, 1);
    if tamper {
        m[2] ^= 1;
    }
    m
}

#[test]
fn verification_statuses() {
    let secrets = vec![("key.".to_owned(), "c2VjcmV0".to_owned())];
    let t = now();
    let check = |m: &[u8]| {
        let r = find(m).expect("tsig record");
        verify(m, &r, &secrets).0
    };
    for alg in [
        "hmac-md5.sig-alg.reg.int.",
        "hmac-sha1.",
        "hmac-sha224.",
        "hmac-sha256.",
        "hmac-sha384.",
        "hmac-sha512.",
    ] {
        assert_eq!(
            check(&signed_query("key.", alg, "c2VjcmV0", t, false)),
            0,
            "{alg}"
        );
    }
    // The key is looked up as the request writes it.
    assert_eq!(
        check(&signed_query("KEY.", "hmac-sha256.", "c2VjcmV0", t, false)),
        BADKEY
    );
    assert_eq!(
        check(&signed_query(
            "other.",
            "hmac-sha256.",
            "c2VjcmV0",
            t,
            false
        )),
        BADKEY
    );
    assert_eq!(
        check(&signed_query("key.", "hmac-sha256.", "b3RoZXI=", t, false)),
        BADSIG
    );
    assert_eq!(
        check(&signed_query("key.", "hmac-sha256.", "c2VjcmV0", t, true)),
        BADSIG
    );
    assert_eq!(
        check(&signed_query(
            "key.",
            "hmac-sha256.",
            "c2VjcmV0",
            t - 301,
            false
        )),
        BADTIME
    );
    assert_eq!(
        check(&signed_query(
            "key.",
            "hmac-sha256.",
            "c2VjcmV0",
            t + 299,
            false
        )),
        0
    );
    // An unknown algorithm is a bad signature.
    let m = signed_query("key.", "hmac-sha256.", "c2VjcmV0", t, false);
    let mut r = find(&m).expect("tsig");
    r.alg = Name::parse("hmac-sha3.").expect("name");
    assert_eq!(verify(&m, &r, &secrets).0, BADSIG);
    // Not the last record, or cut short: no TSIG.
    assert!(find(&m[..m.len() - 3]).is_none());
}

#[test]
fn replies_are_signed_as_miekg_signs_them() {
    let reply = vec![0x12, 0x34, 0x84, 0x09, 0, 0, 0, 0, 0, 0, 0, 0];
    let sign = |error: u16, secret: Option<&str>| {
        let mut s = Sign {
            key: Name::parse("Key.Example.").expect("key"),
            alg: Name::parse("hmac-sha256.").expect("alg"),
            prev_mac: vec![7; 32],
            error,
            client_time: 1000,
            secret: secret.map(str::to_owned),
            signed: 0,
        };
        let mut m = reply.clone();
        s.sign(&mut m);
        let r = find(&m).expect("tsig");
        assert_eq!(hdr::counts(&m)[3], 1);
        assert_eq!(
            r.key.wire(),
            b"\x03Key\x07Example\x00",
            "the key name as the request wrote it"
        );
        assert_eq!((r.fudge, r.orig_id, r.error), (300, 0x1234, error));
        r
    };
    let ok = sign(0, Some("c2VjcmV0"));
    assert_eq!(ok.mac.len(), 32);
    assert!(now().abs_diff(ok.time) < 5);
    // The digest: request MAC, the message, the variables (canonical names).
    let mut buf = vec![0, 32];
    buf.extend_from_slice(&[7; 32]);
    buf.extend_from_slice(&reply);
    let (key, alg) = (
        Name::parse("key.example.").expect("k"),
        Name::parse("hmac-sha256.").expect("a"),
    );
    variables(&mut buf, &key, &alg, ok.time, 300, 0, &[], false);
    assert_eq!(hmac(&alg, "c2VjcmV0", &buf), Some(ok.mac));
    // BADKEY and BADSIG go unsigned, with no time; BADTIME echoes the client's time
    // and carries the server's in the other data.
    for e in [BADKEY, BADSIG] {
        let r = sign(e, Some("c2VjcmV0"));
        assert!(r.mac.is_empty() && r.time == 0 && r.other.is_empty());
    }
    let r = sign(BADTIME, Some("c2VjcmV0"));
    assert_eq!((r.time, r.mac.len(), r.other.len()), (1000, 32, 6));
}
