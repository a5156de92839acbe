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
    match serve(&mut ctx) {
        Flow::Next => Outcome::Next,
        Flow::Return(st) if !ctx.written => Outcome::Status(st.rcode),
        Flow::Return(_) => Outcome::Reply(ctx.resp.clone()),
        Flow::Park => panic!("parked"),
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
        name: "file",
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
        let out = run(&q, Proto::Udp, &|ctx| server.serve(ctx));
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
