use super::*;

fn setup_text(input: &str) -> Result<NomadConfig, String> {
    let mut d = corefile::Dispenser::from_text("Corefile", input);
    setup(&mut d).map_err(|e| e.to_string())
}

#[test]
fn setup_as_coredns() {
    let c = setup_text("nomad").expect("ok");
    assert_eq!((c.zone.as_str(), c.ttl), ("service.nomad", 30));
    assert_eq!(c.clients.len(), 1);
    let c = setup_text(
        "nomad Svc.Example {\n ADDRESS http://127.0.0.1:4646 http://[::1]:4647/ unix:///run/nomad.sock\n filter \"Tags contains \\\"x\\\"\"\n token t0k\n ttl 0\n}",
    )
    .expect("ok");
    assert_eq!(c.zone, "Svc.Example");
    assert_eq!(
        c.zone_name.wire(),
        Name::parse("svc.example.").expect("n").wire()
    );
    assert_eq!(
        c.clients,
        [
            Endpoint::Http {
                base: "http://127.0.0.1:4646".into(),
                authority: "127.0.0.1:4646".into(),
                tls: None,
                user: None,
            },
            Endpoint::Http {
                base: "http://[::1]:4647".into(),
                authority: "[::1]:4647".into(),
                tls: None,
                user: None,
            },
            Endpoint::Unix("/run/nomad.sock".into()),
        ]
    );
    assert_eq!(
        (c.filter.as_deref(), c.token.as_deref(), c.ttl),
        (Some("Tags contains \"x\""), Some("t0k"), 0)
    );
    let e = |l: u32, m: &str| format!("plugin/nomad: Corefile:{l} - Error during parsing: {m}");
    for (input, want) in [
        ("nomad {\n address\n}", e(2, "at least one address is required")),
        ("nomad {\n filter a b\n}", e(2, "exactly one filter is required")),
        ("nomad {\n token\n}", e(2, "exactly one token is required")),
        ("nomad {\n ttl\n}", e(2, "exactly one ttl value is required")),
        (
            "nomad {\n ttl x\n}",
            e(2, "error parsing ttl: strconv.Atoi: parsing \"x\": invalid syntax"),
        ),
        ("nomad {\n ttl 3601\n}", e(2, "ttl must be in range [0, 3600]: 3601")),
        ("nomad {\n ttl -1\n}", e(2, "ttl must be in range [0, 3600]: -1")),
        ("nomad {\n Bogus 1\n}", e(2, "unknown property 'bogus'")),
        (
            "nomad {\n address 127.0.0.1:4646\n}",
            "plugin/nomad: plugin/nomad: parse \"127.0.0.1:4646\": first path segment in URL cannot contain colon".into(),
        ),
    ] {
        assert_eq!(setup_text(input).map(|_| ()), Err(want), "{input}");
    }
}

#[test]
fn https_agents_and_credentials() {
    let name = |s: &str| Some(rustls::pki_types::ServerName::try_from(s.to_owned()).expect("name"));
    assert_eq!(
        endpoint("https://nomad.example:4646/", None),
        Ok(Endpoint::Http {
            base: "https://nomad.example:4646".into(),
            authority: "nomad.example:4646".into(),
            tls: name("nomad.example"),
            user: None,
        })
    );
    // The default port, an IPv6 host, NOMAD_TLS_SERVER_NAME, and a URL's own user.
    assert_eq!(
        endpoint("https://[::1]", Some("agent.example")),
        Ok(Endpoint::Http {
            base: "https://[::1]".into(),
            authority: "[::1]:443".into(),
            tls: name("agent.example"),
            user: None,
        })
    );
    let Ok(Endpoint::Http {
        authority,
        tls,
        user,
        ..
    }) = endpoint("https://ops:pa:ss@10.0.0.1:4646", None)
    else {
        panic!("userinfo");
    };
    assert_eq!(authority, "10.0.0.1:4646");
    assert_eq!(tls, name("10.0.0.1"));
    assert_eq!(user.as_deref(), Some("Basic b3BzOnBhOnNz"));
    // Escapes in the URL's user are decoded: `a@b` and `p:`.
    let Ok(Endpoint::Http { user, .. }) = endpoint("https://a%40b:p%3A@10.0.0.1", None) else {
        panic!("escaped userinfo");
    };
    assert_eq!(user.as_deref(), Some("Basic YUBiOnA6"));
    assert_eq!(
        endpoint("https://a%zz@10.0.0.1", None),
        Err("invalid address 'https://a%zz@10.0.0.1': parse \"https://a%zz@10.0.0.1\": invalid URL escape \"%zz\"".to_owned())
    );
    // NOMAD_HTTP_AUTH without a password.
    assert_eq!(basic_auth("ops"), "Basic b3BzOg==");
}

#[test]
fn ca_path_as_go_rootcerts() {
    let dir = std::env::temp_dir().join(format!("ringdns-nomad-ca-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("sub")).expect("dir");
    let ca = rcgen::generate_simple_self_signed(vec!["ca.example".to_owned()]).expect("cert");
    std::fs::write(dir.join("a.pem"), ca.cert.pem()).expect("write");
    let ca2 = rcgen::generate_simple_self_signed(vec!["ca2.example".to_owned()]).expect("cert");
    std::fs::write(dir.join("sub/b.pem"), ca2.cert.pem()).expect("write");
    let d = dir.to_string_lossy().into_owned();
    let mut store = rustls::RootCertStore::empty();
    ca_path(&d, &mut store).expect("load");
    assert_eq!(store.len(), 2);
    std::fs::write(dir.join("sub/c.txt"), "not a certificate").expect("write");
    let mut store = rustls::RootCertStore::empty();
    assert_eq!(
        ca_path(&d, &mut store),
        Err(format!(
            "Error loading CA Path: Couldn't parse PEM in: {d}/sub/c.txt"
        ))
    );
    assert_eq!(
        ca_path(&format!("{d}/none"), &mut store),
        Err(format!("lstat {d}/none: no such file or directory"))
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn names_below_the_zone() {
    let n = Nomad::new(&setup_text("nomad").expect("ok"));
    let w = |s: &str| Name::parse(s).expect("name").wire().to_vec();
    assert_eq!(
        n.split(&w("Web.Default.service.nomad.")),
        Some(("web".into(), "default".into()))
    );
    assert_eq!(
        n.split(&w("a.web.prod.service.nomad.")),
        Some(("a".into(), "web".into()))
    );
    assert_eq!(n.split(&w("web.service.nomad.")), None);
    assert_eq!(n.split(&w("service.nomad.")), None);
    assert_eq!(n.split(&w("web.default.example.org.")), None);
    assert_eq!(
        url_escape("Tags contains \"a b\""),
        "Tags+contains+%22a+b%22"
    );
    let soa = soa_rdata(
        &Name::parse("x.y.service.nomad.").expect("n"),
        "service.nomad",
    )
    .expect("soa");
    assert_eq!(
        crate::zone::text::rdata_to_string(6, &soa),
        "ns1.x.y.service.nomad. hostmaster.service.nomad. 0 3600 600 86400 30"
    );
}
