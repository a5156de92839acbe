use super::*;
use crate::zone::text::message_sections;

fn data(f: &str) -> String {
    format!("{}/tests/data/dnssec/{f}", env!("CARGO_MANIFEST_DIR"))
}

fn key(base: &str) -> Key {
    parse_key_files(
        &data(&format!("{base}.key")),
        &data(&format!("{base}.private")),
    )
    .expect("key")
}

const ZSK13: &str = "Kexample.org.+013+21055";
const KSK15: &str = "Kexample.org.+015+38960";
const RSA8: &str = "Kexample.org.+008+04083";
const KSK14: &str = "Kexample.org.+014+26150";
/// The key `dnssec-signzone` signed the known-answer RRsets with.
const KAT15: &str = "Kexample.org.+015+50075";

fn plugin(keys: &[&str]) -> Dnssec {
    Dnssec::new(&DnssecConfig {
        zones: vec!["example.org.".into()],
        keys: keys.iter().map(|k| Arc::new(key(k))).collect(),
        capacity: 1024,
    })
}

fn setup_text(input: &str, root: Option<&str>) -> Result<DnssecConfig, String> {
    let mut d = corefile::Dispenser::from_text("Corefile", input);
    let mut settings = crate::config::BlockSettings {
        root: root.map(str::to_owned),
        ..Default::default()
    };
    let keys = vec!["example.org.:53".to_owned()];
    let ctx = SetupCtx {
        keys: &keys,
        zones: vec!["example.org.".to_owned()],
        settings: &mut settings,
        filename: "Corefile",
    };
    setup(&mut d, &ctx).map_err(|e| e.to_string())
}

/// A reply: header (QR AA, `rcode`), the question, records per section.
fn msg(q: &str, qtype: u16, rcode: u8, secs: [&[&str]; 3]) -> Vec<u8> {
    let mut m = vec![0x12, 0x34, 0x84, rcode, 0, 1];
    for s in &secs {
        m.extend_from_slice(&(s.len() as u16).to_be_bytes());
    }
    m.extend_from_slice(Name::parse(q).expect("name").wire());
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&[0, 1]);
    for s in &secs {
        for t in *s {
            let r = parse_rr(t).expect("rr").expect("one");
            m.extend_from_slice(&record(&r.owner, r.rtype, r.class, r.ttl, &r.rdata));
        }
    }
    m
}

fn sections(m: &[u8]) -> [Vec<String>; 3] {
    message_sections(m).expect("parses")
}

/// The RDATA fields of an RRSIG's presentation before the signature
/// (type covered, algorithm, labels, original TTL, key tag, signer).
fn sig_fields(rr: &str) -> String {
    let f: Vec<&str> = rr.split(' ').collect();
    assert_eq!(f[3], "RRSIG", "{rr}");
    format!(
        "{} {} {} {} {} {} {} {}",
        f[0], f[1], f[4], f[5], f[6], f[7], f[10], f[11]
    )
}

const SOA_TEXT: &str =
    "example.org. 1800 IN SOA ns1.example.org. hostmaster.example.org. 1 7200 3600 1209600 300";

#[test]
fn key_files_as_miekg_reads_them() {
    for (base, tag, alg, ksk) in [
        (ZSK13, 21055, 13, false),
        (KSK15, 38960, 15, true),
        (RSA8, 4083, 8, false),
        (KSK14, 26150, 14, true),
        (KAT15, 50075, 15, false),
    ] {
        let k = key(base);
        assert_eq!(
            (k.tag, k.algorithm(), k.is_ksk(), k.is_zsk()),
            (tag, alg, ksk, !ksk)
        );
        assert_eq!(k.name, "example.org.");
        assert_eq!((k.ttl, k.class), (3600, 1));
    }
    // The private file's own format and the key's errors.
    let dnskey = key(ZSK13).rdata;
    for (text, want) in [
        (
            "Algorithm: 13\nPrivateKey: AAAA\n",
            ERR_PRIV_KEY.to_string(),
        ),
        (
            "Private-key-format: v1.1\nAlgorithm: 13\n",
            ERR_PRIV_KEY.to_string(),
        ),
        (
            "Private-key-format: v1.3\nAlgorithm: x\n",
            ERR_PRIV_KEY.to_string(),
        ),
        (
            "Private-key-format: v1.3\nAlgorithm: 3 (DSA)\n",
            ERR_ALG.to_string(),
        ),
        (
            "Private-key-format: v1.3\nAlgorithm: 13\nPrivateKey: !!!!\n",
            "illegal base64 data at input byte 0".to_string(),
        ),
        (
            "Private-key-format: v1.3\nstray\n",
            "K.private: dns: no private key seen: \"stray\" at line: 2:5".to_string(),
        ),
    ] {
        assert_eq!(
            private_key(&dnskey, text, "K.private").err(),
            Some(want),
            "{text}"
        );
    }
    // An ECDSA private key for an Ed25519 DNSKEY.
    assert_eq!(
        private_key(
            &key(KSK15).rdata,
            "Private-key-format: v1.3\nAlgorithm: 13\nPrivateKey: AAAA\n",
            "f"
        )
        .err(),
        Some(ERR_KEY.to_string())
    );
    // Comments and colons inside values, as miekg's lexer reads them.
    let m = parse_private(
        "; comment\nPrivate-key-format: v1.3\nCreated: 2026:11 ; x\n",
        "f",
    )
    .expect("parses");
    assert_eq!(m["private-key-format"], "v1.3");
    assert_eq!(m["created"], "202611 ");
    // RSASHA1 cannot sign here (RFC 8624); a missing file is Go's text.
    let e = private_key(
        &[1, 0, 3, 5, 3, 1, 0, 1, 0xff],
        "Private-key-format: v1.3\nAlgorithm: 5 (RSASHA1)\n",
        "f",
    );
    assert!(e.err().is_some_and(|e| e.contains("RSASHA1")));
    assert_eq!(
        parse_key_files("/nonexistent/K.key", "/nonexistent/K.private").err(),
        Some("open /nonexistent/K.key: no such file or directory".to_string())
    );
}

#[test]
fn setup_as_coredns() {
    let dir = data("");
    let c = setup_text(
        &format!("dnssec {{\n key file {dir}{ZSK13}.key {dir}{KSK15}.private\n}}"),
        None,
    )
    .expect("ok");
    assert_eq!(c.zones, ["example.org."]);
    assert_eq!(c.keys.len(), 2);
    assert_eq!(c.capacity, 39 * 256);
    // `root` applies to relative key paths; zones from the arguments.
    let c = setup_text(
        &format!(
            "dnssec example.org sub.example.org {{\n key file {ZSK13}\n cache_capacity 100\n}}"
        ),
        Some(dir.trim_end_matches('/')),
    )
    .expect("ok");
    assert_eq!(c.zones, ["example.org.", "sub.example.org."]);
    assert_eq!(c.capacity, 4 * 256);
    // An unknown key source is ignored, as CoreDNS ignores it (its arguments
    // are then read as properties).
    assert_eq!(
        setup_text("dnssec {\n key other\n}", None).map(|c| c.keys.len()),
        Ok(0)
    );
    assert_eq!(
        setup_text("dnssec {\n key other x\n}", None).map(|_| ()),
        Err("plugin/dnssec: Corefile:2 - Error during parsing: unknown property 'x'".into())
    );
    let parse = "Corefile:2 - Error during parsing:";
    for (input, want) in [
        (
            "dnssec\ndnssec".to_string(),
            "plugin/dnssec: this plugin can only be used once per Server Block".to_string(),
        ),
        (
            "dnssec {\n key\n}".into(),
            format!(
                "plugin/dnssec: {parse} Wrong argument count or unexpected line ending after 'key'"
            ),
        ),
        (
            "dnssec {\n key file\n}".into(),
            format!(
                "plugin/dnssec: {parse} Wrong argument count or unexpected line ending after 'file'"
            ),
        ),
        (
            "dnssec {\n cache_capacity\n}".into(),
            format!(
                "plugin/dnssec: {parse} Wrong argument count or unexpected line ending after 'cache_capacity'"
            ),
        ),
        (
            "dnssec {\n cache_capacity many\n}".into(),
            "plugin/dnssec: strconv.Atoi: parsing \"many\": invalid syntax".into(),
        ),
        (
            "dnssec {\n bogus\n}".into(),
            format!("plugin/dnssec: {parse} unknown property 'bogus'"),
        ),
        (
            "dnssec {\n key file /nonexistent/Kx\n}".into(),
            "plugin/dnssec: open /nonexistent/Kx.key: no such file or directory".into(),
        ),
        (
            format!("dnssec other.org {{\n key file {dir}{ZSK13}\n}}"),
            "plugin/dnssec: key example.org. (keyid: 21055) can not sign any of the zones".into(),
        ),
        (
            "dnssec {\n key aws_secretsmanager\n}".into(),
            format!(
                "plugin/dnssec: {parse} Wrong argument count or unexpected line ending after 'aws_secretsmanager'"
            ),
        ),
        (
            "dnssec {\n key aws_secretsmanager secret\n}".into(),
            format!(
                "plugin/dnssec: {parse} key aws_secretsmanager is not supported by ringdns yet"
            ),
        ),
    ] {
        assert_eq!(setup_text(&input, None).map(|_| ()), Err(want), "{input}");
    }
}

/// Signatures byte for byte as `dnssec-signzone -s 20261101000000 -e
/// 20261201000000` made them with the same Ed25519 key (deterministic):
/// canonical owner and RDATA names, the RDATA sort, the wildcard label count.
#[test]
fn signatures_match_dnssec_signzone() {
    let p = plugin(&[KAT15]);
    let k = &p.inner.keys[0];
    let zone = Name::parse("example.org.").expect("zone");
    let (incep, expir) = (1_793_491_200, 1_796_083_200);
    for (records, want) in [
        (
            &[
                "www.example.org. 3600 IN A 192.0.2.11",
                "www.example.org. 3600 IN A 192.0.2.10",
            ][..],
            "NmkyoI54fjpvkSrRXWAXee4dIdN4Tc/HbQwixKpoKyGq4q/0u3+dTReqjpa4CdkmXM6f2RLnIU6lIm5IHmFEAw==",
        ),
        (
            &["example.org. 60 IN MX 10 Mail.EXAMPLE.org."][..],
            "+EpYzDYgDdi03SxkNyL3DbKTJbUrCm+6ZnRlteLTv9hwkPm4kFOnxJIeF+osIvNCglNCFYsib0haPbOWr4rWBw==",
        ),
        (
            &["txt.example.org. 3600 IN TXT \"hello world\" \"second\""][..],
            "nkuwl1TpCYh7Zp01htih3Jxi2lOW/sOsVdnuRT4H+NWSVU5hYHXj6pnNASr9vkcb+hHWTS8WcFX71hCIFjDoDA==",
        ),
        (
            &["*.wild.example.org. 3600 IN TXT \"wild\""][..],
            "60dtURhhFvvlmX9E2Cb+6VRkKN0Z/OSDRXUkizOLirwBHOjvlbjAARCKP66WwLDeuYmwGuG3BxkcQYQ6cSV8DQ==",
        ),
    ] {
        let m = msg("example.org.", 1, 0, [records, &[], &[]]);
        let idx = MsgIndex::parse(&m).expect("index");
        let set = &rr_sets(&m, &idx, 1)[0];
        let r = rrsig(
            k,
            &p.inner.rng,
            &m,
            set,
            &zone,
            [3600, ORIG_TTL],
            [incep, expir],
        )
        .expect("signs");
        let rd = &r[set.owner.len() + 10..];
        let signature = &rd[18 + zone.len()..];
        let mut want_bytes = Vec::new();
        crate::zone::rdata::base64(want.as_bytes(), &mut want_bytes).expect("b64");
        assert_eq!(signature, &want_bytes[..], "{records:?}");
    }
}

/// Every algorithm's signature verifies under its DNSKEY (ring's verifiers).
#[test]
fn every_algorithm_verifies() {
    for base in [ZSK13, KSK15, RSA8, KSK14] {
        let p = plugin(&[base]);
        let k = &p.inner.keys[0];
        let zone = Name::parse("example.org.").expect("zone");
        let m = msg(
            "www.example.org.",
            1,
            0,
            [&["www.example.org. 300 IN A 192.0.2.1"], &[], &[]],
        );
        let idx = MsgIndex::parse(&m).expect("index");
        let set = &rr_sets(&m, &idx, 1)[0];
        let r = rrsig(
            k,
            &p.inner.rng,
            &m,
            set,
            &zone,
            [300, ORIG_TTL],
            [1000, 2000],
        )
        .expect("signs");
        let rd = &r[set.owner.len() + 10..];
        let (fields, signature) = rd.split_at(18 + zone.len());
        let mut data = fields.to_vec();
        data.extend_from_slice(&m[set.recs[0].0..set.recs[0].1]);
        data.extend_from_slice(&[0, 1, 0, 1]);
        data.extend_from_slice(&3600u32.to_be_bytes());
        data.extend_from_slice(&m[set.recs[0].1 + 8..set.recs[0].2]);
        let public = &k.rdata[4..];
        let ok = match k.algorithm() {
            13 | 14 => {
                let alg = if k.algorithm() == 13 {
                    &sig::ECDSA_P256_SHA256_FIXED
                } else {
                    &sig::ECDSA_P384_SHA384_FIXED
                };
                let mut point = vec![4];
                point.extend_from_slice(public);
                sig::UnparsedPublicKey::new(alg, point).verify(&data, signature)
            }
            15 => sig::UnparsedPublicKey::new(&sig::ED25519, public).verify(&data, signature),
            _ => {
                let (e, n) = rsa_public(public).expect("rsa");
                sig::RsaPublicKeyComponents { n, e }.verify(
                    &sig::RSA_PKCS1_2048_8192_SHA256,
                    &data,
                    signature,
                )
            }
        };
        assert!(ok.is_ok(), "{base}");
    }
}

#[test]
fn answers_are_signed_per_rrset() {
    let p = plugin(&[ZSK13]);
    let m = msg(
        "www.example.org.",
        1,
        0,
        [
            &[
                "www.example.org. 300 IN CNAME web.example.org.",
                "web.example.org. 60 IN A 192.0.2.1",
                "web.example.org. 60 IN A 192.0.2.2",
                "out.example.net. 60 IN A 192.0.2.3",
            ],
            &["example.org. 3600 IN NS ns1.example.org."],
            &["ns1.example.org. 3600 IN A 192.0.2.53"],
        ],
    );
    let out = p.inner.sign_msg(&m, "dns://:53").expect("signed");
    let [an, ns, ad] = sections(&out);
    assert_eq!(an.len(), 6, "{an:?}");
    assert_eq!(an[..4], sections(&m)[0][..]);
    assert_eq!(
        [sig_fields(&an[4]), sig_fields(&an[5])],
        [
            "www.example.org. 300 CNAME 13 3 3600 21055 example.org.",
            "web.example.org. 60 A 13 3 3600 21055 example.org."
        ]
    );
    assert_eq!(
        sig_fields(&ns[1]),
        "example.org. 3600 NS 13 2 3600 21055 example.org."
    );
    assert_eq!(
        sig_fields(&ad[1]),
        "ns1.example.org. 3600 A 13 3 3600 21055 example.org."
    );
    assert_eq!(hdr::rcode(&out), 0);
    // The second signing of the same sets comes from the cache.
    let again = p.inner.sign_msg(&m, "dns://:53").expect("signed");
    assert_eq!(again, out);
}

#[test]
fn split_keys_sign_dnskey_with_the_ksk_only() {
    let p = plugin(&[ZSK13, KSK15]);
    assert!(p.inner.split);
    let zone = Name::parse("example.org.").expect("zone");
    let recs = p.inner.dnskey_answer(&zone, true, "dns://:53");
    assert_eq!(recs.len(), 3);
    let mut m = msg("example.org.", DNSKEY, 0, [&[], &[], &[]]);
    hdr::set_count(&mut m, 1, 3);
    for r in &recs {
        m.extend_from_slice(r);
    }
    let [an, _, _] = sections(&m);
    assert!(an[0].starts_with("example.org. 3600 IN DNSKEY 256 3 13 "));
    assert!(an[1].starts_with("example.org. 3600 IN DNSKEY 257 3 15 "));
    assert_eq!(
        sig_fields(&an[2]),
        "example.org. 3600 DNSKEY 15 2 3600 38960 example.org."
    );
    // Other sets by the ZSK only.
    let m = msg(
        "a.example.org.",
        1,
        0,
        [&["a.example.org. 5 IN A 192.0.2.1"], &[], &[]],
    );
    let [an, _, _] = sections(&p.inner.sign_msg(&m, "s").expect("signed"));
    assert_eq!(an.len(), 2);
    assert_eq!(
        sig_fields(&an[1]),
        "a.example.org. 5 A 13 3 3600 21055 example.org."
    );
    // Without DO: the keys alone.
    assert_eq!(p.inner.dnskey_answer(&zone, false, "s").len(), 2);
}

#[test]
fn black_lies_as_coredns_tells_them() {
    let p = plugin(&[ZSK13]);
    let nsec = |out: &[u8]| -> Vec<String> {
        let s = sections(out);
        s[0].iter()
            .chain(&s[1])
            .filter(|r| r.split(' ').nth(3) == Some("NSEC"))
            .cloned()
            .collect()
    };
    // NXDOMAIN below the apex: NOERROR, SOA + its signature, then the NSEC's
    // signature and the NSEC, without the query type.
    let m = msg("ww.example.org.", 1, 3, [&[], &[SOA_TEXT], &[]]);
    let out = p.inner.sign_msg(&m, "s").expect("signed");
    assert_eq!(hdr::rcode(&out), 0);
    let [an, ns, _] = sections(&out);
    assert!(an.is_empty());
    assert_eq!(ns.len(), 4);
    assert_eq!(ns[0], SOA_TEXT);
    assert_eq!(
        sig_fields(&ns[1]),
        "example.org. 1800 SOA 13 2 3600 21055 example.org."
    );
    assert_eq!(
        sig_fields(&ns[2]),
        "ww.example.org. 1800 NSEC 13 3 3600 21055 example.org."
    );
    assert_eq!(
        ns[3],
        "ww.example.org. 1800 IN NSEC \\000.ww.example.org. HINFO TXT AAAA LOC SRV CERT SSHFP RRSIG NSEC TLSA HIP OPENPGPKEY SPF"
    );
    // NODATA for TLSA (CoreDNS's bitmap test): TLSA left out.
    let m = msg("25._tcp.example.org.", 52, 0, [&[], &[SOA_TEXT], &[]]);
    assert_eq!(
        nsec(&p.inner.sign_msg(&m, "s").expect("signed")),
        [
            "25._tcp.example.org. 1800 IN NSEC \\000.25._tcp.example.org. A HINFO TXT AAAA LOC SRV CERT SSHFP RRSIG NSEC HIP OPENPGPKEY SPF"
        ]
    );
    // At the apex: the apex bitmap without MX; the query name keeps its case.
    let m = msg("Example.ORG.", 15, 0, [&[], &[SOA_TEXT], &[]]);
    assert_eq!(
        nsec(&p.inner.sign_msg(&m, "s").expect("signed")),
        [
            "Example.ORG. 1800 IN NSEC \\000.Example.ORG. A NS SOA HINFO TXT AAAA LOC SRV CERT SSHFP RRSIG NSEC DNSKEY TLSA HIP OPENPGPKEY SPF"
        ]
    );
    // DS below the apex: the delegation bitmap, unfiltered.
    let m = msg("sub.example.org.", DS, 0, [&[], &[SOA_TEXT], &[]]);
    assert_eq!(
        nsec(&p.inner.sign_msg(&m, "s").expect("signed")),
        [
            "sub.example.org. 1800 IN NSEC \\000.sub.example.org. A NS HINFO TXT AAAA LOC SRV CERT SSHFP RRSIG NSEC TLSA HIP OPENPGPKEY SPF"
        ]
    );
    // An NSEC query: the signature and the NSEC move to the answer.
    let m = msg("www.example.org.", NSEC, 0, [&[], &[SOA_TEXT], &[]]);
    let [an, ns, _] = sections(&p.inner.sign_msg(&m, "s").expect("signed"));
    assert!(ns.is_empty());
    assert_eq!(an.len(), 2);
    assert_eq!(
        sig_fields(&an[0]),
        "www.example.org. 1800 NSEC 13 3 3600 21055 example.org."
    );
    assert!(an[1].ends_with("RRSIG NSEC TLSA HIP OPENPGPKEY SPF") && an[1].contains(" A "));
    // A denial whose authority is not exactly one SOA is left alone.
    let m = msg("x.example.org.", 1, 3, [&[], &[], &[]]);
    assert_eq!(p.inner.sign_msg(&m, "s"), None);
}

#[test]
fn referrals_get_a_signed_ds_or_an_nsec() {
    let p = plugin(&[ZSK13]);
    let m = msg(
        "www.sub.example.org.",
        1,
        0,
        [
            &[],
            &["sub.example.org. 3600 IN NS ns.sub.example.org."],
            &["ns.sub.example.org. 3600 IN A 192.0.2.53"],
        ],
    );
    let [_, ns, ad] = sections(&p.inner.sign_msg(&m, "s").expect("signed"));
    assert_eq!(ns.len(), 3);
    assert_eq!(
        sig_fields(&ns[1]),
        "www.sub.example.org. 3600 NSEC 13 4 3600 21055 example.org."
    );
    assert_eq!(
        ns[2],
        "www.sub.example.org. 3600 IN NSEC www\\000.sub.example.org. A NS HINFO TXT AAAA LOC SRV CERT SSHFP RRSIG NSEC TLSA HIP OPENPGPKEY SPF"
    );
    assert_eq!(ad.len(), 1, "glue is not signed in a referral");
    let m = msg(
        "sub.example.org.",
        1,
        0,
        [
            &[],
            &[
                "sub.example.org. 3600 IN NS ns.sub.example.org.",
                "sub.example.org. 3600 IN DS 12345 13 2 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            ],
            &[],
        ],
    );
    let [_, ns, _] = sections(&p.inner.sign_msg(&m, "s").expect("signed"));
    assert_eq!(ns.len(), 3);
    assert_eq!(
        sig_fields(&ns[2]),
        "sub.example.org. 3600 DS 13 3 3600 21055 example.org."
    );
}

#[test]
fn replies_outside_the_zones_are_untouched() {
    let p = plugin(&[ZSK13]);
    let m = msg(
        "www.example.net.",
        1,
        0,
        [&["www.example.net. 60 IN A 192.0.2.1"], &[], &[]],
    );
    assert_eq!(p.inner.sign_msg(&m, "s"), None);
    // Records outside the zones in a reply inside them are not signed.
    let m = msg(
        "a.example.org.",
        1,
        0,
        [
            &[
                "a.example.org. 60 IN CNAME b.example.net.",
                "b.example.net. 60 IN A 192.0.2.1",
            ],
            &[],
            &[],
        ],
    );
    let [an, _, _] = sections(&p.inner.sign_msg(&m, "s").expect("signed"));
    assert_eq!(an.len(), 3);
    assert_eq!(
        sig_fields(&an[2]),
        "a.example.org. 60 CNAME 13 3 3600 21055 example.org."
    );
    // Garbage never panics.
    for bad in [
        &b""[..],
        &[0u8; 12],
        &[0, 0, 0x84, 0, 0, 1, 0, 1, 0, 0, 0, 0, 3, b'o', b'r', b'g'],
    ] {
        let _ = p.inner.sign_msg(bad, "s");
    }
}

#[test]
fn cache_is_bounded_and_counts() {
    let mut p = plugin(&[ZSK13]);
    Arc::get_mut(&mut p.inner)
        .expect("sole")
        .cache
        .get_mut()
        .expect("lock")
        .cap = 4;
    for i in 0..10 {
        let rr = format!("h{i}.example.org. 60 IN A 192.0.2.{i}");
        let m = msg("h.example.org.", 1, 0, [&[rr.as_str()], &[], &[]]);
        p.inner.sign_msg(&m, "dns://:7").expect("signed");
    }
    assert_eq!(p.inner.cache.lock().expect("lock").map.len(), 4);
    let mut f = Families::new();
    metrics(&mut f);
    let entries = &f["coredns_dnssec_cache_entries"];
    assert!(
        entries
            .samples
            .iter()
            .any(|(_, l, v)| l == "{server=\"dns://:7\",type=\"signature\"}" && v == "4")
    );
    let misses = &f["coredns_dnssec_cache_misses_total"];
    assert!(
        misses
            .samples
            .iter()
            .any(|(_, l, v)| l == "{server=\"dns://:7\"}" && v == "10")
    );
}

#[test]
fn validity_as_miekg_judges_it() {
    assert!(validity(100, 200, 150));
    assert!(!validity(100, 200, 201));
    assert!(!validity(100, 200, 99));
    let (i, e) = incep_expir(1_000_000);
    assert_eq!((i, e), (1_000_000 - 3 * 3600, 1_000_000 + 8 * 86400));
}

#[test]
fn type_bitmaps_use_windows() {
    let mut out = Vec::new();
    type_bitmap(&[1, 2, 46, 47, 99, 257], &mut out);
    assert_eq!(
        out,
        [
            0, 13, 0x60, 0, 0, 0, 0, 0x03, 0, 0, 0, 0, 0, 0, 0x10, 1, 1, 0x40
        ]
    );
}
