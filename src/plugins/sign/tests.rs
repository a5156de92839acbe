use super::*;

fn data(f: &str) -> String {
    format!("{}/tests/data/dnssec/{f}", env!("CARGO_MANIFEST_DIR"))
}

const KSK15: &str = "Kexample.org.+015+38960";
const ZSK13: &str = "Kexample.org.+013+21055";

fn setup_text(input: &str, root: Option<&str>) -> Result<Vec<Arc<Signer>>, String> {
    let mut d = corefile::Dispenser::from_text("Corefile", input);
    let mut settings = crate::config::BlockSettings {
        root: root.map(str::to_owned),
        ..Default::default()
    };
    let keys = vec!["example.org.:53".to_owned()];
    let mut ctx = SetupCtx {
        keys: &keys,
        zones: vec!["example.org.".to_owned()],
        settings: &mut settings,
        filename: "Corefile",
    };
    setup(&mut d, &mut ctx).map_err(|e| e.to_string())?;
    Ok(settings
        .sign
        .iter()
        .flat_map(|j| j.signers.clone())
        .collect())
}

struct Dir(std::path::PathBuf);

impl Dir {
    fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("ringdns-sign-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("dir");
        Self(p)
    }
    fn path(&self, f: &str) -> String {
        self.0.join(f).to_string_lossy().into_owned()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn setup_as_coredns() {
    let key = data(KSK15);
    let s = setup_text(
        &format!("sign db.example.org example.org example.net {{\n key file {key}.key\n directory out\n}}"),
        Some("/srv"),
    )
    .expect("ok");
    assert_eq!(s.len(), 2);
    assert_eq!(
        (
            s[0].origin.as_str(),
            s[0].dbfile.as_str(),
            s[0].directory.as_str()
        ),
        ("example.org.", "/srv/db.example.org", "/srv/out")
    );
    assert_eq!(
        (s[1].origin.as_str(), s[1].signedfile.as_str()),
        ("example.net.", "db.example.net.signed")
    );
    assert_eq!(s[0].keys.len(), 1);
    assert!((-18 * HOUR..=0).contains(&s[0].jitter_incep));
    assert!((0..=5 * DAY).contains(&s[0].jitter_expir));
    // Defaults: the block's zones, /var/lib/coredns.
    let s = setup_text("sign db", None).expect("ok");
    assert_eq!(s[0].signed_path(), "/var/lib/coredns/db.example.org.signed");
    let parse = "Corefile:1 - Error during parsing:";
    for (input, want) in [
        ("sign".to_string(), format!("plugin/sign: {parse} Wrong argument count or unexpected line ending after 'sign'")),
        (
            "sign db {\n directory a b\n}".into(),
            "plugin/sign: can only be one argument after \"directory\"".into(),
        ),
        (
            "sign db {\n key directory /etc/keys\n}".into(),
            "plugin/sign: directory: not implemented".into(),
        ),
        (
            "sign db {\n key\n}".into(),
            "plugin/sign: Corefile:2 - Error during parsing: Wrong argument count or unexpected line ending after 'key'".into(),
        ),
        (
            "sign db {\n bogus\n}".into(),
            "plugin/sign: Corefile:2 - Error during parsing: unknown property 'bogus'".into(),
        ),
        (
            format!("sign db {{\n key file {}\n}}", data(ZSK13)),
            format!("plugin/sign: DNSKEY in \"{}.key\" is not a CSK/KSK", data(ZSK13)),
        ),
        (
            "sign db {\n key file /nonexistent/K\n}".into(),
            "plugin/sign: open /nonexistent/K.key: no such file or directory".into(),
        ),
    ] {
        assert_eq!(setup_text(&input, None).map(|_| ()), Err(want), "{input}");
    }
}

const ZONE: &str = "$TTL 3600
$ORIGIN example.org.
@        IN SOA  ns1 hostmaster ( 7 7200 3600 1209600 300 )
         IN NS   NS1
         IN MX   10 Mail
ns1      IN A    192.0.2.1
mail     IN A    192.0.2.10
sub      IN NS   ns.sub
sub      IN DS   12345 13 2 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
ns.sub   IN A    192.0.2.30
*.wild   IN TXT  \"wild\"
b.c.ent  IN A    192.0.2.50
old      IN RRSIG A 13 3 3600 20261201000000 20261101000000 1 example.org. AAAA
";

fn signer(dir: &Dir, key: &str) -> Signer {
    std::fs::write(dir.path("db"), ZONE).expect("write");
    let k = read_key_pair(
        &data(&format!("{key}.key")),
        &data(&format!("{key}.private")),
    )
    .expect("key");
    Signer {
        keys: vec![Arc::new(k)],
        origin: "example.org.".into(),
        dbfile: dir.path("db"),
        directory: dir.0.to_string_lossy().into_owned(),
        jitter_incep: 0,
        jitter_expir: 0,
        signedfile: "db.example.org.signed".into(),
    }
}

/// `owner TTL TYPE` of each record, and the NSEC records in full.
fn summary(recs: &[Vec<u8>]) -> (Vec<String>, Vec<String>) {
    let mut all = Vec::new();
    let mut nsec = Vec::new();
    for r in recs {
        let p = presentation(r);
        let f: Vec<&str> = p.split('\t').collect();
        let t = if f[3] == "RRSIG" {
            format!("RRSIG {}", f[4].split(' ').next().unwrap_or(""))
        } else {
            f[3].to_string()
        };
        all.push(format!("{} {} {t}", f[0], f[1]));
        if f[3] == "NSEC" {
            nsec.push(p.replace('\t', " "));
        }
    }
    (all, nsec)
}

#[test]
fn a_zone_signed_as_coredns_signs_it() {
    let dir = Dir::new("zone");
    let s = signer(&dir, KSK15);
    let now = 1_795_000_000 * 1_000_000_000i128;
    let (recs, serial) = s.sign(now).expect("signs");
    assert_eq!(serial, 1_795_000_000);
    let (all, nsec) = summary(&recs);
    // SOA and its signature, the apex NS and its signature, then the tree in
    // canonical order; glue and the delegation's NS unsigned, its DS signed.
    assert_eq!(
        all,
        [
            "example.org. 3600 SOA",
            "example.org. 3600 RRSIG SOA",
            "example.org. 3600 NS",
            "example.org. 3600 RRSIG NS",
            "example.org. 3600 MX",
            "example.org. 3600 RRSIG MX",
            "example.org. 300 RRSIG NSEC",
            "example.org. 3600 RRSIG DNSKEY",
            "example.org. 3600 RRSIG CDS",
            "example.org. 3600 RRSIG CDNSKEY",
            "example.org. 300 NSEC",
            "example.org. 3600 DNSKEY",
            "example.org. 3600 CDS",
            "example.org. 3600 CDS",
            "example.org. 3600 CDNSKEY",
            "b.c.ent.example.org. 3600 A",
            "b.c.ent.example.org. 3600 RRSIG A",
            "b.c.ent.example.org. 300 RRSIG NSEC",
            "b.c.ent.example.org. 300 NSEC",
            "mail.example.org. 3600 A",
            "mail.example.org. 3600 RRSIG A",
            "mail.example.org. 300 RRSIG NSEC",
            "mail.example.org. 300 NSEC",
            "ns1.example.org. 3600 A",
            "ns1.example.org. 3600 RRSIG A",
            "ns1.example.org. 300 RRSIG NSEC",
            "ns1.example.org. 300 NSEC",
            "sub.example.org. 3600 NS",
            "sub.example.org. 3600 DS",
            "sub.example.org. 3600 RRSIG DS",
            "sub.example.org. 300 RRSIG NSEC",
            "sub.example.org. 300 NSEC",
            "ns.sub.example.org. 3600 A",
            "*.wild.example.org. 3600 TXT",
            "*.wild.example.org. 3600 RRSIG TXT",
            "*.wild.example.org. 300 RRSIG NSEC",
            "*.wild.example.org. 300 NSEC",
        ]
    );
    assert_eq!(
        nsec,
        [
            "example.org. 300 IN NSEC b.c.ent.example.org. NS SOA MX RRSIG NSEC DNSKEY CDS CDNSKEY",
            "b.c.ent.example.org. 300 IN NSEC mail.example.org. A RRSIG NSEC",
            "mail.example.org. 300 IN NSEC ns1.example.org. A RRSIG NSEC",
            "ns1.example.org. 300 IN NSEC sub.example.org. A RRSIG NSEC",
            "sub.example.org. 300 IN NSEC *.wild.example.org. NS DS RRSIG NSEC",
            "*.wild.example.org. 300 IN NSEC example.org. TXT RRSIG NSEC",
        ]
    );
    let text: Vec<String> = recs.iter().map(|r| presentation(r)).collect();
    // The serial is the signing time; names in NS and MX RDATA lower-cased; the
    // signatures' times (−3 h, +32 d), key tag and signer; the CDS digests.
    assert!(
        text[0].ends_with(
            "\tns1.example.org. hostmaster.example.org. 1795000000 7200 3600 1209600 300"
        ),
        "{}",
        text[0]
    );
    assert!(text[2].ends_with("\tNS\tns1.example.org."));
    assert!(text[4].ends_with("\tMX\t10 mail.example.org."));
    assert!(
        text[1]
            .contains("\tRRSIG\tSOA 15 2 3600 20261220110640 20261118080640 38960 example.org. "),
        "{}",
        text[1]
    );
    assert!(text[12].contains("\tCDS\t38960 15 1 "), "{}", text[12]);
    assert!(text[13].contains("\tCDS\t38960 15 2 "), "{}", text[13]);
    // The old RRSIG of the input is gone.
    assert!(!text.iter().any(|l| l.starts_with("old.")));
}

#[test]
fn the_signed_file_is_checked_as_coredns_checks_it() {
    let dir = Dir::new("resign");
    let s = signer(&dir, KSK15);
    let path = s.signed_path();
    let now = 1_795_000_000 * 1_000_000_000i128;
    assert_eq!(
        s.resign(now),
        Some(format!("open {path}: no such file or directory"))
    );
    let (recs, _) = s.sign(now).expect("signs");
    s.write(&recs).expect("writes");
    // Fresh: nothing to do (more than 100 records would ask again, as CoreDNS's
    // check counts every record after the SOA's signature).
    assert_eq!(s.resign(now + HOUR), None);
    // Six days and a second later (inception was 3 hours before signing).
    let later = now + 6 * DAY + 1_500_000_000;
    assert_eq!(
        s.resign(later),
        Some(
            "inception \"2026-11-18T08:06:40.000Z\" was more than: 144h0m0s ago from 2026-11-24T11:06:41.500Z: 147h0m1.5s"
                .into()
        )
    );
    assert_eq!(
        s.resign(now - 4 * HOUR),
        Some("inception \"2026-11-18T08:06:40.000Z\" date is in the future: -1h0m0s".into())
    );
    let late = now + 26 * DAY;
    let why = s.resign(late).expect("resign");
    assert!(why.starts_with("inception"), "{why}");
    // Expiration within 7 days while the inception is recent.
    let mut s2 = signer(&dir, KSK15);
    s2.jitter_expir = -26 * DAY;
    let (recs, _) = s2.sign(now).expect("signs");
    s2.write(&recs).expect("writes");
    assert_eq!(
        s2.resign(now),
        Some("expiration \"2026-11-24T11:06:40.000Z\" is less than: 168h0m0s away from 2026-11-18T11:06:40.000Z: 144h0m0s".into())
    );
    // No SOA signature in the first 100 records.
    let mut text = String::new();
    for i in 0..101 {
        text.push_str(&format!("h{i}.example.org. 60 IN A 192.0.2.1\n"));
    }
    std::fs::write(&path, text).expect("write");
    assert_eq!(
        s.resign(now),
        Some("no SOA RRSIG found in first 100 records".into())
    );
    std::fs::write(&path, "x IN A 1.2.3\n").expect("write");
    assert!(
        s.resign(now)
            .is_some_and(|w| w.starts_with("resign: dns: bad A A"))
    );
}

#[test]
fn zone_errors_keep_the_old_file() {
    let dir = Dir::new("errors");
    let mut s = signer(&dir, KSK15);
    std::fs::write(dir.path("db"), "a.example.org. IN A 192.0.2.1\n").expect("write");
    assert_eq!(
        s.sign(0).err(),
        Some(format!("file {} has no SOA record", go_q(&dir.path("db"))))
    );
    std::fs::write(
        dir.path("db"),
        "example.org. IN SOA a b 1 2 3 4 5\nX.example.org. IN NSEC3PARAM 1 0 0 -\n",
    )
    .expect("write");
    assert_eq!(
        s.sign(0).err(),
        Some(
            "NSEC3 zone is not supported, dropping RR: x.example.org. for zone: example.org."
                .into()
        )
    );
    s.dbfile = dir.path("missing");
    assert_eq!(
        s.sign(0).err(),
        Some(format!(
            "open {}: no such file or directory",
            dir.path("missing")
        ))
    );
}

#[test]
fn go_times_and_durations() {
    assert_eq!(time_fmt(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(
        time_fmt(951_782_400_123_000_000),
        "2000-02-29T00:00:00.123Z"
    );
    assert_eq!(
        time_fmt(1_795_000_000_000_000_000),
        "2026-11-18T11:06:40.000Z"
    );
    assert_eq!(go_dur(-HOUR), "-1h0m0s");
    assert_eq!(go_dur(6 * DAY), "144h0m0s");
    assert_eq!(serial_time(10, 100) / 1_000_000_000, 10);
}
