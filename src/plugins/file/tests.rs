//! *file* tests: the case tables of `tests/data/zones/*.cases` (queries and
//! the sections CoreDNS answers, in presentation format) run through the
//! plugin on an in-memory context; setup errors; fallthrough; reload.
//!
//! Case file syntax (`#` comments):
//! ```text
//! zone FILE ORIGIN          zones to load (files in tests/data/zones)
//! fallthrough [ZONES...]    the plugin's fallthrough
//! next                      a handler follows file in the chain
//! query NAME TYPE [do]      starts a case
//! rcode NOERROR             expected rcode of the written reply
//! flags aa                  expected AA (`aa` or `-`)
//! status SERVFAIL           no reply written; the plugin returned this rcode
//! passes                    the plugin passed the query on
//! answer: / authority: / additional:   then one record a line; a trailing
//!                           `...` compares the text before it as a prefix
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use arc_swap::ArcSwap;

use super::*;
use crate::chain::{Ctx, Flow, Proto};
use crate::plugins::transfer::link::BlockLink;
use crate::wire::types::{rcode_from_str, type_from_str};
use crate::wire::{Verdict, hdr, parse_query};
use crate::zone::text::{message_sections, rr_to_string};

pub(crate) fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/zones")
}

/// A query message.
pub(crate) fn query(name: &str, qtype: u16, do_: bool) -> Vec<u8> {
    let mut m = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(do_)];
    m.extend_from_slice(Name::parse(name).expect("qname").wire());
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
    if do_ {
        m.extend_from_slice(&[0, 0, 41, 0x10, 0, 0, 0, 0x80, 0, 0, 0]);
    }
    m
}

/// What a plugin did with a query.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Passed on.
    Next,
    /// Returned an rcode without writing.
    Status(u16),
    /// Wrote a reply.
    Reply(Vec<u8>),
}

/// Runs `serve` on a query from 127.0.0.1 over `proto`.
pub(crate) fn run(msg: &[u8], proto: Proto, serve: &dyn Fn(&mut Ctx<'_>) -> Flow) -> Outcome {
    run_parking(msg, proto, serve, &|_| panic!("parked"))
}

/// Runs an async request hook to its end on a current-thread runtime.
pub(crate) fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// [`run`] for a plugin that may park: `park` continues it. The query comes
/// to a server that serves no zone, so a self-lookup gets REFUSED.
pub(crate) fn run_parking(
    msg: &[u8],
    proto: Proto,
    serve: &dyn Fn(&mut Ctx<'_>) -> Flow,
    park: &dyn Fn(&mut Ctx<'_>) -> Flow,
) -> Outcome {
    let Verdict::Query(req) = parse_query(msg) else {
        panic!("bad query")
    };
    let label: Arc<str> = Arc::from("dns://:53");
    let (mut resp, mut scratch) = (Vec::new(), Vec::new());
    let peer = SocketAddr::from(([127, 0, 0, 1], 40000));
    let mut ctx = Ctx::new(
        &label,
        req,
        proto,
        peer,
        peer,
        &mut resp,
        &mut scratch,
        Instant::now(),
    );
    let disp = Arc::new(crate::server::handle::Dispatch {
        label: Arc::clone(&label),
        routes: crate::server::route::Routes::default(),
        chains: Vec::new(),
        class_open: false,
        tsig: Vec::new(),
    });
    ctx.disp = Some(&disp);
    let mut flow = serve(&mut ctx);
    if let Flow::Park = flow {
        flow = park(&mut ctx);
    }
    match flow {
        Flow::Next => Outcome::Next,
        Flow::Return(st) if !ctx.written => Outcome::Status(st.rcode),
        Flow::Return(_) => Outcome::Reply(ctx.resp.clone()),
        Flow::Park => panic!("parked twice"),
    }
}

/// Normalises a presentation-format record through the zone parser.
fn norm(line: &str) -> String {
    let (body, prefix) = match line.strip_suffix("...") {
        Some(b) => (b.trim_end(), true),
        None => (line, false),
    };
    if prefix {
        return body.split_whitespace().collect::<Vec<_>>().join(" ");
    }
    let mut out = String::new();
    crate::zone::parse::parse_bytes(format!("{body}\n").as_bytes(), "case", &[0], &mut |r| {
        let owner = Name::from_wire(r.owner).expect("owner");
        out = rr_to_string(&owner, r.rtype, r.class, r.ttl, r.rdata);
        Ok::<(), crate::zone::ParseError>(())
    })
    .unwrap_or_else(|e| panic!("bad expected record {line:?}: {e}"));
    out
}

#[derive(Default)]
struct Case {
    line: usize,
    qname: String,
    qtype: u16,
    do_: bool,
    rcode: Option<u16>,
    aa: Option<bool>,
    status: Option<u16>,
    passes: bool,
    sections: [Vec<(String, bool)>; 3],
}

fn server_for(zones: &[(String, String)], fall: Fall, next: bool) -> ZoneServer {
    let mut table = ZoneTable::default();
    for (file, origin) in zones {
        let origin = Name::parse(origin).expect("origin");
        let path = data_dir().join(file);
        let z = crate::zone::load_file(path.to_str().expect("path"), &origin, None)
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        let slot = ZoneSlot::new(&origin, file);
        slot.data.store(Some(Arc::new(z)));
        table.insert(Arc::new(slot));
    }
    ZoneServer {
        table: ArcSwap::from_pointee(table),
        fall,
        has_next: Arc::new(AtomicBool::new(next)),
        link: Arc::new(BlockLink::default()),
        notify_in: None,
    }
}

/// Runs one case file; returns the failures.
fn run_cases(file: &str) -> Vec<String> {
    let text = std::fs::read_to_string(data_dir().join(file)).expect("cases");
    let mut zones = Vec::new();
    let mut fall = Fall::default();
    let mut next = false;
    let mut cases: Vec<Case> = Vec::new();
    let mut section = None;
    for (i, raw) in text.lines().enumerate() {
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let w: Vec<&str> = l.split_whitespace().collect();
        match w[0] {
            "zone" => zones.push((w[1].to_owned(), w[2].to_owned())),
            "fallthrough" => {
                fall = Fall::from_args(&w[1..].iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
            }
            "next" => next = true,
            "query" => {
                section = None;
                cases.push(Case {
                    line: i + 1,
                    qname: w[1].to_owned(),
                    qtype: type_from_str(w[2]).expect("qtype"),
                    do_: w.get(3) == Some(&"do"),
                    ..Case::default()
                });
            }
            "rcode" => cases.last_mut().expect("case").rcode = rcode_from_str(w[1]),
            "flags" => cases.last_mut().expect("case").aa = Some(w[1] == "aa"),
            "status" => cases.last_mut().expect("case").status = rcode_from_str(w[1]),
            "passes" => cases.last_mut().expect("case").passes = true,
            "answer:" => section = Some(0),
            "authority:" => section = Some(1),
            "additional:" => section = Some(2),
            _ => {
                let s =
                    section.unwrap_or_else(|| panic!("{file}:{}: record outside a section", i + 1));
                let prefix = l.ends_with("...");
                cases.last_mut().expect("case").sections[s].push((norm(l), prefix));
            }
        }
    }
    let server = server_for(&zones, fall, next);
    let mut failures = Vec::new();
    for c in &cases {
        let q = query(&c.qname, c.qtype, c.do_);
        let out = run_parking(&q, Proto::Udp, &|ctx| server.serve(ctx), &|ctx| {
            block_on(server.serve_async(ctx))
        });
        let tag = format!("{file}:{} {} {}", c.line, c.qname, c.qtype);
        match out {
            Outcome::Next if c.passes => {}
            Outcome::Status(rc) if c.status == Some(rc) => {}
            Outcome::Reply(msg) if !c.passes && c.status.is_none() => {
                let rc = u16::from(hdr::rcode(&msg));
                if rc != c.rcode.unwrap_or(0) {
                    failures.push(format!("{tag}: rcode {rc}, want {:?}", c.rcode));
                }
                let aa = hdr::flags(&msg) & crate::wire::flags::AA != 0;
                if let Some(want) = c.aa {
                    if aa != want {
                        failures.push(format!("{tag}: aa {aa}, want {want}"));
                    }
                }
                let got = message_sections(&msg).expect("sections");
                for (k, name) in ["answer", "authority", "additional"].iter().enumerate() {
                    let want = &c.sections[k];
                    let ok = got[k].len() == want.len()
                        && got[k].iter().zip(want).all(|(g, (w, prefix))| {
                            if *prefix {
                                g.starts_with(w.as_str())
                            } else {
                                g == w
                            }
                        });
                    if !ok {
                        failures.push(format!(
                            "{tag}: {name}\n  got:  {:#?}\n  want: {:#?}",
                            got[k],
                            want.iter().map(|w| &w.0).collect::<Vec<_>>()
                        ));
                    }
                }
            }
            other => failures.push(format!("{tag}: unexpected {other:?}")),
        }
    }
    failures
}

fn check(file: &str) {
    let f = run_cases(file);
    assert!(f.is_empty(), "{} failures:\n{}", f.len(), f.join("\n"));
}

#[test]
fn cases_lookup() {
    check("lookup.cases");
}

#[test]
fn cases_delegation() {
    check("delegation.cases");
}

#[test]
fn cases_dnssec() {
    check("dnssec.cases");
}

#[test]
fn cases_rules() {
    check("rules.cases");
}

#[test]
fn cases_fallthrough() {
    check("fallthrough.cases");
}

/// Runs a plugin's setup on `text` in a block with `keys`.
pub(crate) fn with_setup<T>(
    keys: &[&str],
    text: &str,
    f: impl FnOnce(&mut corefile::Dispenser, &mut crate::config::SetupCtx<'_>) -> T,
) -> T {
    let mut settings = crate::config::BlockSettings::default();
    let keys: Vec<String> = keys.iter().map(|k| format!("dns://{k}:53")).collect();
    let mut ctx = crate::config::SetupCtx {
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
    let mut d = corefile::Dispenser::from_text("Corefile", text);
    f(&mut d, &mut ctx)
}

fn file_setup(text: &str) -> Result<FileConfig, String> {
    with_setup(&["miek.nl."], text, setup).map_err(|e| e.to_string())
}

#[test]
fn setup_cases() {
    let db = data_dir().join("miek.nl.db");
    let db = db.to_str().expect("path");
    // CoreDNS plugin/file/setup_test.go, as data.
    let c = file_setup(&format!("file {db} miek.nl.")).expect("ok");
    assert_eq!(c.zones().len(), 1);
    assert_eq!(c.zones()[0].reload, std::time::Duration::from_secs(60));
    let c = file_setup(&format!(
        "file {db} miek.nl. {{\n reload 1s\n reload_by_mtime\n fallthrough\n upstream 1.2.3.4\n}}"
    ))
    .expect("ok");
    assert_eq!(c.zones()[0].reload, std::time::Duration::from_secs(1));
    assert!(c.zones()[0].by_mtime);
    assert!(c.server.fall.is_set());
    // Several origins from one file, default origins from the block.
    let c = file_setup(&format!("file {db}")).expect("ok");
    assert_eq!(c.zones()[0].origin.to_string(), "miek.nl.");
    assert_eq!(
        file_setup("file").expect_err("args"),
        "plugin/file: Corefile:1 - Error during parsing: Wrong argument count or unexpected line ending after 'file'"
    );
    assert_eq!(
        file_setup(&format!("file {db} miek.nl. {{\n foo\n}}")).expect_err("prop"),
        "plugin/file: Corefile:2 - Error during parsing: unknown property 'foo'"
    );
    assert_eq!(
        file_setup(&format!("file {db} miek.nl. {{\n reload\n}}")).expect_err("reload"),
        "plugin/file: reload duration value is expected"
    );
    assert_eq!(
        file_setup(&format!("file {db} miek.nl. {{\n reload foo\n}}")).expect_err("reload"),
        "plugin/file: plugin/file: time: invalid duration \"foo\""
    );
    // A missing file: fatal without reload, a warning with it.
    assert_eq!(
        file_setup("file /nonexistent/db miek.nl. {\n reload 0\n}").expect_err("open"),
        "plugin/file: open /nonexistent/db: no such file or directory"
    );
    let c = file_setup("file /nonexistent/db miek.nl.").expect("warning only");
    assert!(c.zones()[0].data.load().is_none());
}

#[test]
fn reload_keeps_the_old_zone_on_errors() {
    let dir = std::env::temp_dir().join(format!("ringdns-file-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("db");
    let zone = |serial: u32, ip: &str| {
        format!(
            "$TTL 60\n$ORIGIN example.org.\n@ SOA ns admin {serial} 2 3 4 5\n@ NS ns\nns A {ip}\n"
        )
    };
    std::fs::write(&path, zone(1, "192.0.2.1")).expect("w");
    let text = format!("file {} example.org {{\n reload 0\n}}", path.display());
    let c = with_setup(&["example.org."], &text, setup).expect("setup");
    let slot = &c.zones()[0];
    let link = Arc::clone(&c.server.link);
    let serial = || slot.data.load().as_ref().and_then(|z| z.serial());
    std::fs::write(&path, zone(1, "192.0.2.2")).expect("w");
    reload_slot(slot, &link);
    assert_eq!(serial(), Some(1));
    std::fs::write(&path, zone(2, "192.0.2.999")).expect("w");
    reload_slot(slot, &link);
    assert_eq!(serial(), Some(1), "a broken file keeps the old zone");
    std::fs::write(&path, zone(3, "192.0.2.3")).expect("w");
    reload_slot(slot, &link);
    assert_eq!(serial(), Some(3));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn random_queries_never_panic() {
    let server = server_for(
        &[
            ("example.org.rules.db".into(), "example.org.".into()),
            ("miek.nl.signed.db".into(), "miek.nl.".into()),
        ],
        Fall::default(),
        false,
    );
    let labels = [
        "www", "web", "sub", "ns", "ns1", "x", "y", "deep", "wild", "*", "dname", "dself", "loop1",
        "a", "b", "c", "ent", "to-sub", "ext", "self", "srv", "go", "dns", "archive", "host",
    ];
    let zones = ["example.org", "miek.nl", "dns.miek.nl", "example.net"];
    let types = [
        1u16, 2, 5, 6, 15, 16, 28, 33, 39, 43, 46, 47, 48, 255, 252, 65,
    ];
    let mut seed = 0x2545_f491u32;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        seed as usize
    };
    for _ in 0..20_000 {
        let mut name = String::new();
        for _ in 0..next() % 4 {
            name.push_str(labels[next() % labels.len()]);
            name.push('.');
        }
        name.push_str(zones[next() % zones.len()]);
        let q = query(&name, types[next() % types.len()], next() % 2 == 0);
        let _ = run_parking(&q, Proto::Udp, &|ctx| server.serve(ctx), &|ctx| {
            block_on(server.serve_async(ctx))
        });
    }
}

#[test]
fn cases_cross_zone() {
    check("cross.cases");
}
