//! *template*: answers built from Go templates for queries whose name matches a
//! regular expression (plugins.md B, checked against CoreDNS 1.14.7's sources).
//!
//! Each `template CLASS TYPE [ZONE...] { … }` is a stanza; the stanzas are tried in
//! Corefile order. A stanza whose zone, class or type does not fit passes the
//! query to the next stanza. One that fits matches its first regular expression
//! that matches the lower-cased name; when none does, the query goes on only with
//! `fallthrough` for it, and fails (SERVFAIL) otherwise. A match answers: AA, the
//! stanza's rcode (SERVFAIL returns without a reply), the `answer`, `additional`
//! and `authority` templates rendered and read as zone-file records (miekg
//! `NewRR`), and an OPT with the `ederror` EDE. A CNAME answer to an A or AAAA query
//! is followed through the server (a self-lookup, [`crate::server::reentry`]): its
//! answer records are appended and its TC bit copied.
//!
//! The templates run on Go's `text/template` ([`crate::gotmpl`]) with CoreDNS's
//! data (`.Zone .Name .Regex .Match .Group .Class .Type .Message .Question
//! .Remote`, `.Meta NAME`) and its one function, `parseInt` (`strconv.ParseUint`).
//! CoreDNS 1.14.7 has no `var` or `expr` lines (they came after it): they fail at
//! startup as they do there.
//!
//! CoreDNS: `plugin/template/template.go`, `setup.go`, `metrics.go`.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use corefile::{Diagnostic, Dispenser};

use super::file::Fall;
use crate::chain::{Ctx, ErrorKind, Flow, Next, PluginError, Status};
use crate::config::SetupCtx;
use crate::gotmpl::{Func, Object, Template, Value, go_quote};
use crate::metrics::{Families, LabelCounts, contribute};
use crate::wire::index::{MsgIndex, expand};
use crate::wire::{Name, SectionKind, flags, hdr, types};
use crate::zone::in_zone;
use crate::zone::parse::{OwnedRecord, parse_rr};

/// CoreDNS `maxRegexpLen`.
const MAX_REGEXP_LEN: usize = 10_000;

/// One `template` stanza.
#[derive(Debug, Clone)]
pub struct Stanza {
    zones: Vec<(String, Name)>,
    rcode: u16,
    regex: Vec<(String, regex::Regex, Vec<String>)>,
    answer: Vec<Template>,
    additional: Vec<Template>,
    authority: Vec<Template>,
    qclass: u16,
    qtype: u16,
    ederror: Option<(u16, Option<String>)>,
    fall: Fall,
}

/// The plugin: every stanza of the block, and the zones of them all.
#[derive(Debug, Clone)]
pub struct TemplatePlugin {
    zones: Vec<(String, Name)>,
    stanzas: Arc<Vec<Stanza>>,
}

static FUNCS: [Func; 1] = [Func {
    name: "parseInt",
    params: &["string", "int", "int"],
    call: parse_uint,
}];

/// Go's `strconv.ParseUint(s, base, bitSize)`, with its error texts.
fn parse_uint(args: &[Value]) -> Result<Value, String> {
    let [Value::Str(s), Value::Int(base, _), Value::Int(bits, _)] = args else {
        return Err("wrong arguments".into());
    };
    let q = go_quote(s);
    let fail = |what: &str| format!("strconv.ParseUint: parsing {q}: {what}");
    if s.is_empty() {
        return Err(fail("invalid syntax"));
    }
    let bits = match *bits {
        0 => 64,
        b if (1..=64).contains(&b) => b as u32,
        b => {
            return Err(format!(
                "strconv.ParseUint: parsing {q}: invalid bit size {b}"
            ));
        }
    };
    let prefixed = *base == 0;
    let (base, digits) = match *base {
        0 => {
            let l = s.to_ascii_lowercase();
            if let Some(r) = l.strip_prefix("0x") {
                (16, r.to_owned())
            } else if let Some(r) = l.strip_prefix("0o") {
                (8, r.to_owned())
            } else if let Some(r) = l.strip_prefix("0b") {
                (2, r.to_owned())
            } else if l.len() > 1 && l.starts_with('0') {
                (8, l[1..].to_owned())
            } else {
                (10, l)
            }
        }
        b if (2..=36).contains(&b) => (b as u32, s.to_string()),
        b => return Err(format!("strconv.ParseUint: parsing {q}: invalid base {b}")),
    };
    let digits = if prefixed {
        digits.replace('_', "")
    } else {
        digits
    };
    if digits.is_empty() || digits.starts_with(['+', '-']) {
        return Err(fail("invalid syntax"));
    }
    let mut v: u64 = 0;
    let max = if bits == 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    let mut overflow = false;
    for c in digits.chars() {
        let Some(d) = c.to_digit(base) else {
            return Err(fail("invalid syntax"));
        };
        match v
            .checked_mul(u64::from(base))
            .and_then(|x| x.checked_add(u64::from(d)))
        {
            Some(n) if n <= max => v = n,
            _ => overflow = true,
        }
    }
    if overflow {
        // Go returns the maximum with the error; the template stops either way.
        return Err(fail("value out of range"));
    }
    Ok(Value::Uint(v, "uint64"))
}

/// miekg `ClassToString[c]`: "" for a class it has no name for.
fn class_string(c: u16) -> String {
    let mut s = String::new();
    if matches!(c, 1..=4 | 254 | 255) {
        types::class_to_string(c, &mut s);
    }
    s
}

/// miekg `TypeToString[t]`: "" for a type it has no name for.
fn type_string(t: u16) -> String {
    types::type_name(t).map(str::to_owned).unwrap_or_default()
}

/// miekg `StringToRcode`: exact mnemonics, and `NOTIMPL`.
fn rcode_from_str(s: &str) -> Option<u16> {
    if s == "NOTIMPL" {
        return Some(4);
    }
    (0..=23).find(|&rc| types::rcode_name(rc) == Some(s))
}

/// `template CLASS TYPE [ZONE...] { … }`, every line of the block.
pub fn setup(d: &mut Dispenser, ctx: &SetupCtx<'_>) -> Result<TemplatePlugin, Diagnostic> {
    let w = |e: Diagnostic| e.in_plugin("template");
    let mut zones: Vec<(String, Name)> = Vec::new();
    let mut stanzas = Vec::new();
    while d.next() {
        if !d.next_arg() {
            return Err(w(d.arg_err()));
        }
        let Some(qclass) = crate::wire::types::miekg_class_from_str(d.val()) else {
            return Err(w(d.err(format!("invalid query class {}", d.val()))));
        };
        if !d.next_arg() {
            return Err(w(d.arg_err()));
        }
        let Some(qtype) = types::miekg_type_from_str(d.val()) else {
            return Err(w(d.err(format!("invalid RR class {}", d.val()))));
        };
        let args = d.remaining_args();
        let szones: Vec<(String, Name)> = ctx
            .origins(&args)
            .into_iter()
            .filter_map(|z| Name::parse(&z).map(|n| (z, n)))
            .collect();
        zones.extend(szones.iter().cloned());
        let mut t = Stanza {
            zones: szones,
            rcode: 0,
            regex: Vec::new(),
            answer: Vec::new(),
            additional: Vec::new(),
            authority: Vec::new(),
            qclass,
            qtype,
            ederror: None,
            fall: Fall::default(),
        };
        while d.next_block() {
            match d.val() {
                "match" => {
                    let args = d.remaining_args();
                    if args.is_empty() {
                        return Err(w(d.arg_err()));
                    }
                    for r in args {
                        if r.len() > MAX_REGEXP_LEN {
                            return Err(w(d.err(format!(
                                "regex pattern too long: {} > {MAX_REGEXP_LEN}",
                                r.len()
                            ))));
                        }
                        let re = crate::goregex::compile(&r)
                            .map_err(|e| w(d.err(format!("could not parse regex: {r}, {e}"))))?;
                        let names = crate::goregex::subexp_names(&r);
                        t.regex.push((r, re, names));
                    }
                }
                section @ ("answer" | "additional" | "authority") => {
                    let section = section.to_owned();
                    let args = d.remaining_args();
                    if args.is_empty() {
                        return Err(w(d.arg_err()));
                    }
                    // CoreDNS names the line's last word (c.Val()) in the error; the
                    // additional and authority texts end in a newline.
                    let nl = if section == "answer" { "" } else { "\n" };
                    for a in &args {
                        let tp = Template::parse(&section, a, &FUNCS).map_err(|e| {
                            w(d.err(format!("could not compile template: {}, {e}{nl}", d.val())))
                        })?;
                        match section.as_str() {
                            "answer" => t.answer.push(tp),
                            "additional" => t.additional.push(tp),
                            _ => t.authority.push(tp),
                        }
                    }
                }
                "rcode" => {
                    if !d.next_arg() {
                        return Err(w(d.arg_err()));
                    }
                    let Some(rc) = rcode_from_str(d.val()) else {
                        return Err(w(d.err(format!("unknown rcode {}", d.val()))));
                    };
                    t.rcode = rc;
                }
                "ederror" => {
                    let args = d.remaining_args();
                    if args.len() != 1 && args.len() != 2 {
                        return Err(w(d.arg_err()));
                    }
                    let code = go_parse_u16(&args[0]).map_err(|e| {
                        w(d.err(format!(
                            "error parsing extended DNS error code {}, {e}\n",
                            d.val()
                        )))
                    })?;
                    t.ederror = Some((code, args.get(1).cloned()));
                }
                "fallthrough" => {
                    let args = d.remaining_args();
                    t.fall = Fall::from_args(&args);
                }
                "upstream" => {
                    // Accepted and ignored ("remove soon" in CoreDNS).
                    let _ = d.remaining_args();
                }
                _ => return Err(w(d.arg_err())),
            }
        }
        if t.regex.is_empty() {
            let re =
                crate::goregex::compile(".*").map_err(|e| w(Diagnostic::plain(e.to_string())))?;
            t.regex.push((".*".into(), re, vec![String::new()]));
        }
        stanzas.push(t);
    }
    Ok(TemplatePlugin {
        zones,
        stanzas: Arc::new(stanzas),
    })
}

/// Go's `strconv.ParseUint(s, 10, 16)` error text.
fn go_parse_u16(s: &str) -> Result<u16, String> {
    let q = go_quote(s);
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("strconv.ParseUint: parsing {q}: invalid syntax"));
    }
    s.parse::<u16>()
        .map_err(|_| format!("strconv.ParseUint: parsing {q}: value out of range"))
}

/// The template's view of the request (CoreDNS `templateData`).
struct Data {
    zone: String,
    name: String,
    regex: String,
    matches: Vec<String>,
    group: BTreeMap<String, String>,
    class: String,
    rtype: String,
    msg: Rc<MsgView>,
    remote: String,
    meta: Vec<(String, String)>,
}

impl Object for Data {
    fn type_name(&self) -> &'static str {
        "*template.templateData"
    }
    fn field(&self, name: &str) -> Option<Value> {
        Some(match name {
            "Zone" => Value::str(&self.zone),
            "Name" => Value::str(&self.name),
            "Regex" => Value::str(&self.regex),
            "Match" => Value::List(
                "[]string",
                Rc::new(self.matches.iter().map(|m| Value::str(m)).collect()),
            ),
            "Group" => Value::Map(
                "map[string]string",
                Rc::new(
                    self.group
                        .iter()
                        .map(|(k, v)| (k.clone(), Value::str(v)))
                        .collect(),
                ),
                Box::new(Value::str("")),
            ),
            "Class" => Value::str(&self.class),
            "Type" => Value::str(&self.rtype),
            "Message" => Value::Obj(Rc::clone(&self.msg) as Rc<dyn Object>),
            "Question" => Value::Obj(Rc::new(QuestionView {
                q: self.msg.question.clone(),
                ptr: true,
            })),
            "Remote" => Value::str(&self.remote),
            _ => return None,
        })
    }
    fn method(&self, name: &str) -> Option<usize> {
        (name == "Meta").then_some(1)
    }
    fn call(&self, _name: &str, args: &[Value]) -> Result<Value, String> {
        match args {
            [Value::Str(s)] => Ok(Value::str(
                self.meta
                    .iter()
                    .find(|(k, _)| k == &**s)
                    .map_or("", |(_, v)| v.as_str()),
            )),
            [other] => Err(format!(
                "wrong type for value; expected string; got {}",
                other.type_name()
            )),
            _ => Err("wrong number of arguments".into()),
        }
    }
    fn print(&self) -> Result<String, String> {
        Err("printing the template's data (.) is not supported by ringdns".into())
    }
    fn unexported(&self, name: &str) -> bool {
        name == "md"
    }
}

/// A question (`dns.Question`, or `*dns.Question` when `ptr`).
#[derive(Clone)]
struct Question {
    name: String,
    qtype: u16,
    qclass: u16,
}

struct QuestionView {
    q: Question,
    ptr: bool,
}

impl Object for QuestionView {
    fn type_name(&self) -> &'static str {
        if self.ptr {
            "*dns.Question"
        } else {
            "dns.Question"
        }
    }
    fn field(&self, name: &str) -> Option<Value> {
        Some(match name {
            "Name" => Value::str(&self.q.name),
            "Qtype" => Value::Uint(u64::from(self.q.qtype), "uint16"),
            "Qclass" => Value::Uint(u64::from(self.q.qclass), "uint16"),
            _ => return None,
        })
    }
    fn method(&self, name: &str) -> Option<usize> {
        (self.ptr && name == "String").then_some(0)
    }
    fn call(&self, _name: &str, _args: &[Value]) -> Result<Value, String> {
        Ok(Value::str(&self.stringer()))
    }
    fn print(&self) -> Result<String, String> {
        if self.ptr {
            Ok(self.stringer())
        } else {
            Ok(format!(
                "{{{} {} {}}}",
                self.q.name, self.q.qtype, self.q.qclass
            ))
        }
    }
}

impl QuestionView {
    /// miekg `Question.String`.
    fn stringer(&self) -> String {
        let mut s = format!(";{}\t", self.q.name);
        types::class_to_string(self.q.qclass, &mut s);
        s.push_str("\t ");
        types::type_to_string(self.q.qtype, &mut s);
        s
    }
}

/// A record of the request (`dns.RR`), printed as miekg prints it.
struct RrView(String);

impl Object for RrView {
    fn type_name(&self) -> &'static str {
        "dns.RR"
    }
    fn field(&self, _name: &str) -> Option<Value> {
        None
    }
    fn print(&self) -> Result<String, String> {
        Ok(self.0.clone())
    }
}

/// The request (`*dns.Msg`): its header fields and sections (read only when a
/// template asks for them).
struct MsgView {
    id: u16,
    flags: u16,
    question: Question,
    msg: Vec<u8>,
}

impl Object for MsgView {
    fn type_name(&self) -> &'static str {
        "*dns.Msg"
    }
    fn field(&self, name: &str) -> Option<Value> {
        let f = self.flags;
        let bit = |b: u16| Value::Bool(f & b != 0);
        Some(match name {
            "Id" => Value::Uint(u64::from(self.id), "uint16"),
            "Response" => bit(flags::QR),
            "Opcode" => Value::int(i64::from((f >> 11) & 0xf)),
            "Authoritative" => bit(flags::AA),
            "Truncated" => bit(flags::TC),
            "RecursionDesired" => bit(flags::RD),
            "RecursionAvailable" => bit(flags::RA),
            "Zero" => bit(0x0040),
            "AuthenticatedData" => bit(flags::AD),
            "CheckingDisabled" => bit(flags::CD),
            "Rcode" => Value::int(i64::from(f & 0xf)),
            "Compress" => Value::Bool(false),
            "Question" => Value::List(
                "[]dns.Question",
                Rc::new(vec![Value::Obj(Rc::new(QuestionView {
                    q: self.question.clone(),
                    ptr: false,
                }))]),
            ),
            "Answer" | "Ns" | "Extra" => {
                let i = match name {
                    "Answer" => 0,
                    "Ns" => 1,
                    _ => 2,
                };
                Value::List(
                    "[]dns.RR",
                    Rc::new(
                        section_texts(&self.msg)[i]
                            .iter()
                            .map(|s| Value::Obj(Rc::new(RrView(s.clone()))))
                            .collect(),
                    ),
                )
            }
            _ => return None,
        })
    }
    fn print(&self) -> Result<String, String> {
        Err("printing the whole message (.Message) is not supported by ringdns".into())
    }
}

/// The request's records as miekg's `RR.String` prints them (tab separated).
fn section_texts(msg: &[u8]) -> [Vec<String>; 3] {
    let mut out: [Vec<String>; 3] = Default::default();
    let Some(idx) = MsgIndex::parse(msg) else {
        return out;
    };
    let mut full = Vec::new();
    expand(msg, &idx, &mut full);
    let Some(fidx) = MsgIndex::parse(&full) else {
        return out;
    };
    for rr in &fidx.rrs {
        let Ok(owner) = Name::from_wire(&full[rr.start as usize..rr.fixed as usize]) else {
            continue;
        };
        let rd = &full[rr.rdata()];
        let text = if rr.rtype == 41 {
            format!(
                "\n;; OPT PSEUDOSECTION:\n; EDNS: version {}; flags:{}; udp: {}",
                (rr.ttl >> 16) & 0xff,
                if rr.ttl & 0x8000 != 0 { " do" } else { "" },
                rr.class
            )
        } else {
            let mut s = String::new();
            owner.write_presentation(&mut s);
            s.push('\t');
            s.push_str(&rr.ttl.to_string());
            s.push('\t');
            types::class_to_string(rr.class, &mut s);
            s.push('\t');
            types::type_to_string(rr.rtype, &mut s);
            s.push('\t');
            s.push_str(&crate::zone::text::rdata_to_string(rr.rtype, rd));
            s
        };
        if let Some(v) = out.get_mut(usize::from(rr.section).saturating_sub(1)) {
            v.push(text);
        }
    }
    out
}

/// A matched stanza's reply, before the CNAME lookups.
struct Built {
    rcode: u16,
    answer: Vec<OwnedRecord>,
    additional: Vec<OwnedRecord>,
    authority: Vec<OwnedRecord>,
    ederror: Option<(u16, Option<String>)>,
    /// A rendered answer was empty (miekg `NewRR` gives a nil record).
    nil_answer: bool,
}

enum Eval {
    /// To the next plugin.
    Next,
    /// Return without writing.
    Fail(Status),
    /// Answer.
    Reply(Built),
}

static MATCHES: LabelCounts<5> = LabelCounts::new(
    "coredns_template_matches_total",
    "Counter of template regex matches.",
    ["server", "zone", "view", "class", "type"],
);

const FAIL_LABELS: [&str; 7] = [
    "server", "zone", "view", "class", "type", "section", "template",
];

static TEMPLATE_FAILURES: LabelCounts<7> = LabelCounts::new(
    "coredns_template_template_failures_total",
    "Counter of go template failures.",
    FAIL_LABELS,
);

static RR_FAILURES: LabelCounts<7> = LabelCounts::new(
    "coredns_template_rr_failures_total",
    "Counter of mis-templated RRs.",
    FAIL_LABELS,
);

fn count<const N: usize>(m: &LabelCounts<N>, values: [String; N]) {
    m.inc(values);
    contribute(metrics);
}

fn metrics(f: &mut Families) {
    MATCHES.add_to(f);
    TEMPLATE_FAILURES.add_to(f);
    RR_FAILURES.add_to(f);
}

fn failed(text: String) -> Status {
    Status {
        rcode: 2,
        err: Some(PluginError {
            plugin: "template",
            kind: ErrorKind::Upstream(Arc::from(text)),
        }),
    }
}

impl TemplatePlugin {
    /// Zones of all stanzas, longest match (CoreDNS `plugin.Zones.Matches`).
    fn zone_of<'z>(
        zones: impl Iterator<Item = (&'z String, &'z Name)>,
        qname: &Name,
    ) -> Option<&'z String> {
        zones
            .filter(|(_, n)| in_zone(qname.wire(), n.wire()))
            .max_by_key(|(_, n)| n.wire().len())
            .map(|(s, _)| s)
    }

    /// The request hook: replies now, or parks when a CNAME answer must be
    /// followed.
    pub fn serve(&self, ctx: &mut Ctx<'_>) -> Flow {
        match self.evaluate(ctx, true) {
            Eval::Next => Flow::Next,
            Eval::Fail(st) => Flow::Return(st),
            Eval::Reply(b) => {
                if needs_lookup(ctx, &b) {
                    return Flow::Park;
                }
                Flow::Return(write(ctx, &b, &[], false))
            }
        }
    }

    /// The parked half: the same stanza, its CNAME targets looked up.
    pub async fn serve_async(&self, ctx: &mut Ctx<'_>, _next: Next<'_>) -> Flow {
        // Counted when `serve` matched and parked.
        let b = match self.evaluate(ctx, false) {
            Eval::Next => return Flow::Next,
            Eval::Fail(st) => return Flow::Return(st),
            Eval::Reply(b) => b,
        };
        let qtype = ctx.req.qtype;
        let depth = ctx.st.depth;
        let mut extra: Vec<(usize, Vec<OwnedRecord>)> = Vec::new();
        let mut tc = false;
        for (i, rr) in b.answer.iter().enumerate() {
            if rr.rtype != 5 {
                continue;
            }
            let Ok(target) = Name::from_wire(&rr.rdata) else {
                continue;
            };
            let Ok(lookup) = crate::server::reentry::prepare(ctx, &target, qtype, depth) else {
                continue;
            };
            // A failed lookup adds nothing (CoreDNS ignores its error).
            let Some(reply) = lookup.run().await else {
                continue;
            };
            let Some(records) = answer_records(&reply) else {
                continue;
            };
            tc = hdr::flags(&reply) & flags::TC != 0;
            extra.push((i, records));
        }
        Flow::Return(write(ctx, &b, &extra, tc))
    }

    /// The first stanza that matches, rendered; `count`: count the match.
    fn evaluate(&self, ctx: &Ctx<'_>, count_match: bool) -> Eval {
        let qname = ctx.req.qname.to_lowercase();
        if Self::zone_of(self.zones.iter().map(|(s, n)| (s, n)), &qname).is_none() {
            return Eval::Next;
        }
        let name = qname.to_string();
        let (qclass, qtype) = (ctx.req.qclass, ctx.req.qtype);
        for t in self.stanzas.iter() {
            let Some(zone) = Self::zone_of(t.zones.iter().map(|(s, n)| (s, n)), &qname) else {
                continue;
            };
            if t.qclass != 255 && qclass != 255 && qclass != t.qclass {
                continue;
            }
            if t.qtype != 255 && qtype != 255 && qtype != t.qtype {
                continue;
            }
            let Some((pattern, caps, names)) = t
                .regex
                .iter()
                .find_map(|(p, re, names)| re.captures(&name).map(|c| (p, c, names)))
            else {
                if t.fall.through(&qname) {
                    continue;
                }
                return Eval::Fail(Status::rcode(2));
            };
            let zone = zone.clone();
            let matches: Vec<String> = (0..caps.len())
                .map(|i| caps.get(i).map_or(String::new(), |m| m.as_str().to_owned()))
                .collect();
            let mut group = BTreeMap::new();
            for (i, m) in matches.iter().enumerate() {
                group.insert(i.to_string(), m.clone());
            }
            for (n, m) in names.iter().zip(matches.iter()) {
                if !n.is_empty() {
                    group.insert(n.clone(), m.clone());
                }
            }
            let class = class_string(if qclass != 255 { qclass } else { t.qclass });
            let rtype = type_string(if qtype != 255 { qtype } else { t.qtype });
            let question = Question {
                name: ctx.req.qname.to_string(),
                qtype,
                qclass,
            };
            let data = Data {
                zone: zone.clone(),
                name: name.clone(),
                regex: pattern.clone(),
                matches,
                group,
                class: class.clone(),
                rtype: rtype.clone(),
                msg: Rc::new(MsgView {
                    id: ctx.req.id(),
                    flags: hdr::flags(ctx.req.msg),
                    question,
                    msg: ctx.req.msg.to_vec(),
                }),
                remote: ctx.peer.ip().to_string(),
                meta: ctx
                    .meta
                    .as_ref()
                    .map(|m| m.iter().map(|(k, v)| (k.to_string(), v.clone())).collect())
                    .unwrap_or_default(),
            };
            let base = [
                ctx.server.to_string(),
                zone,
                ctx.view.to_string(),
                class,
                rtype,
            ];
            if count_match {
                count(&MATCHES, base.clone());
            }
            if t.rcode == 2 {
                return Eval::Fail(Status::rcode(2));
            }
            let value = Value::Obj(Rc::new(data));
            let mut built = Built {
                rcode: t.rcode,
                answer: Vec::new(),
                additional: Vec::new(),
                authority: Vec::new(),
                ederror: t.ederror.clone(),
                nil_answer: false,
            };
            for (section, list) in [
                ("answer", &t.answer),
                ("additional", &t.additional),
                ("authority", &t.authority),
            ] {
                for tp in list {
                    let fail_labels = |base: &[String; 5]| {
                        let [server, zone, view, class, rtype] = base.clone();
                        [
                            server,
                            zone,
                            view,
                            class,
                            rtype,
                            section.to_owned(),
                            tp.tree_string(),
                        ]
                    };
                    let text = match tp.execute(&value) {
                        Ok(s) => s,
                        Err(e) => {
                            count(&TEMPLATE_FAILURES, fail_labels(&base));
                            return Eval::Fail(failed(e));
                        }
                    };
                    let rr = match parse_rr(&text) {
                        Ok(Some(rr)) => rr,
                        Ok(None) => {
                            // miekg's nil record: for A/AAAA CoreDNS's CNAME check
                            // dereferences it (the server recovers: SERVFAIL);
                            // otherwise the reply cannot be packed (no reply).
                            if section == "answer" && (qtype == 1 || qtype == 28) {
                                return Eval::Fail(Status::rcode(2));
                            }
                            built.nil_answer = true;
                            continue;
                        }
                        Err(e) => {
                            count(&RR_FAILURES, fail_labels(&base));
                            return Eval::Fail(failed(e.text_without_file()));
                        }
                    };
                    match section {
                        "answer" => built.answer.push(rr),
                        "additional" => built.additional.push(rr),
                        _ => built.authority.push(rr),
                    }
                }
            }
            return Eval::Reply(built);
        }
        Eval::Next
    }
}

fn needs_lookup(ctx: &Ctx<'_>, b: &Built) -> bool {
    (ctx.req.qtype == 1 || ctx.req.qtype == 28) && b.answer.iter().any(|r| r.rtype == 5)
}

/// The answer records of a lookup's reply, names in full.
fn answer_records(reply: &[u8]) -> Option<Vec<OwnedRecord>> {
    let idx = MsgIndex::parse(reply)?;
    let mut full = Vec::with_capacity(reply.len() + 64);
    expand(reply, &idx, &mut full);
    let fidx = MsgIndex::parse(&full)?;
    Some(
        fidx.section(1)
            .map(|rr| OwnedRecord {
                owner: full[rr.start as usize..rr.fixed as usize].to_vec(),
                rtype: rr.rtype,
                class: rr.class,
                ttl: rr.ttl,
                rdata: full[rr.rdata()].to_vec(),
            })
            .collect(),
    )
}

/// Writes the reply: AA, the rcode, the answers (each CNAME followed by its
/// lookup's records), additional, authority, and the EDE's OPT.
fn write(ctx: &mut Ctx<'_>, b: &Built, extra: &[(usize, Vec<OwnedRecord>)], tc: bool) -> Status {
    if b.nil_answer || (b.rcode > 0xf && b.ederror.is_none()) {
        // miekg cannot pack a nil record, nor an extended rcode without an
        // OPT: nothing is sent.
        ctx.written = false;
        return Status::rcode(b.rcode);
    }
    let mut w = ctx.reply();
    w.set_flags(flags::AA | if tc { flags::TC } else { 0 });
    w.set_rcode((b.rcode & 0xf) as u8);
    w.section(SectionKind::Answer);
    for (i, rr) in b.answer.iter().enumerate() {
        w.rr_wire(&rr.owner, rr.rtype, rr.class, rr.ttl, &rr.rdata);
        for (_, recs) in extra.iter().filter(|(j, _)| *j == i) {
            for r in recs {
                w.rr_wire(&r.owner, r.rtype, r.class, r.ttl, &r.rdata);
            }
        }
    }
    w.section(SectionKind::Authority);
    for rr in &b.authority {
        w.rr_wire(&rr.owner, rr.rtype, rr.class, rr.ttl, &rr.rdata);
    }
    w.section(SectionKind::Additional);
    for rr in &b.additional {
        w.rr_wire(&rr.owner, rr.rtype, rr.class, rr.ttl, &rr.rdata);
    }
    let ext = b.rcode >> 4;
    if let Some((code, reason)) = &b.ederror {
        let text = reason.as_deref().unwrap_or("").as_bytes();
        let mut rd = Vec::with_capacity(6 + text.len());
        rd.extend_from_slice(&15u16.to_be_bytes());
        rd.extend_from_slice(
            &u16::try_from(2 + text.len())
                .unwrap_or(u16::MAX)
                .to_be_bytes(),
        );
        rd.extend_from_slice(&code.to_be_bytes());
        rd.extend_from_slice(text);
        // SetEdns0(4096, true): the DO bit; an extended rcode's high bits.
        let ttl = (u32::from(ext) << 24) | 0x8000;
        w.rr_wire(&[0], 41, 4096, ttl, &rd);
    }
    w.finish();
    ctx.written = true;
    Status::rcode(b.rcode)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BlockSettings;

    fn parse(text: &str) -> Result<TemplatePlugin, String> {
        let mut settings = BlockSettings::default();
        let keys = vec!["dns://example.org:53".to_owned()];
        let ctx = SetupCtx {
            keys: &keys,
            zones: vec!["example.org.".to_owned()],
            settings: &mut settings,
            filename: "Corefile",
        };
        setup(&mut Dispenser::from_text("Corefile", text), &ctx).map_err(|e| e.to_string())
    }

    #[test]
    fn setup_table() {
        let p = parse(
            "template IN A example.net {\n match ^a[.] ^(?P<x>b)[.]\n answer \"{{ .Name }} 60 IN A 127.0.0.1\"\n \
             additional \"x. A 127.0.0.2\"\n authority \"example.net. SOA a. b. 1 2 3 4 5\"\n rcode NXDOMAIN\n \
             ederror 15 blocked\n fallthrough a.example.net\n upstream 8.8.8.8\n}\ntemplate ANY ANY",
        )
        .expect("valid");
        assert_eq!(p.stanzas.len(), 2);
        let t = &p.stanzas[0];
        assert_eq!((t.qclass, t.qtype, t.rcode), (1, 1, 3));
        assert_eq!(t.zones[0].0, "example.net.");
        assert_eq!(t.regex.len(), 2);
        assert_eq!(t.regex[1].2, vec!["", "x"]);
        assert_eq!(
            (t.answer.len(), t.additional.len(), t.authority.len()),
            (1, 1, 1)
        );
        assert_eq!(t.ederror, Some((15, Some("blocked".to_owned()))));
        // The second takes the block's zones and matches everything.
        let t = &p.stanzas[1];
        assert_eq!((t.qclass, t.qtype), (255, 255));
        assert_eq!(t.zones[0].0, "example.org.");
        assert_eq!(t.regex[0].0, ".*");
        let zones: Vec<&str> = p.zones.iter().map(|(z, _)| z.as_str()).collect();
        assert_eq!(zones, vec!["example.net.", "example.org."]);

        let pre = "plugin/template: Corefile:";
        let cases: &[(&str, String)] = &[
            (
                "template",
                format!(
                    "{pre}1 - Error during parsing: Wrong argument count or unexpected line ending after 'template'"
                ),
            ),
            (
                "template in A",
                format!("{pre}1 - Error during parsing: invalid query class in"),
            ),
            (
                "template IN a",
                format!("{pre}1 - Error during parsing: invalid RR class a"),
            ),
            (
                "template IN",
                format!(
                    "{pre}1 - Error during parsing: Wrong argument count or unexpected line ending after 'IN'"
                ),
            ),
            (
                "template IN A {\n match\n}",
                format!(
                    "{pre}2 - Error during parsing: Wrong argument count or unexpected line ending after 'match'"
                ),
            ),
            (
                "template IN A {\n match [\n}",
                format!(
                    "{pre}2 - Error during parsing: could not parse regex: [, error parsing regexp: missing closing ]: `[`"
                ),
            ),
            (
                "template IN A {\n answer \"{{ .Name\" \"ok\"\n}",
                format!(
                    "{pre}2 - Error during parsing: could not compile template: ok, template: answer:1: unclosed action"
                ),
            ),
            (
                "template IN A {\n additional \"{{ foo }}\"\n}",
                format!(
                    "{pre}2 - Error during parsing: could not compile template: {{{{ foo }}}}, template: additional:1: function \"foo\" not defined\n"
                ),
            ),
            (
                "template IN A {\n rcode noerror\n}",
                format!("{pre}2 - Error during parsing: unknown rcode noerror"),
            ),
            (
                "template IN A {\n rcode\n}",
                format!(
                    "{pre}2 - Error during parsing: Wrong argument count or unexpected line ending after 'rcode'"
                ),
            ),
            (
                "template IN A {\n ederror x\n}",
                format!(
                    "{pre}2 - Error during parsing: error parsing extended DNS error code x, strconv.ParseUint: parsing \"x\": invalid syntax\n"
                ),
            ),
            (
                "template IN A {\n ederror 70000 why\n}",
                format!(
                    "{pre}2 - Error during parsing: error parsing extended DNS error code why, strconv.ParseUint: parsing \"70000\": value out of range\n"
                ),
            ),
            (
                "template IN A {\n ederror 1 2 3\n}",
                format!(
                    "{pre}2 - Error during parsing: Wrong argument count or unexpected line ending after '3'"
                ),
            ),
            // CoreDNS 1.14.7 has no `var` or `expr` lines.
            (
                "template IN A {\n var x 1\n}",
                format!(
                    "{pre}2 - Error during parsing: Wrong argument count or unexpected line ending after 'var'"
                ),
            ),
            (
                "template IN A {\n expr true\n}",
                format!(
                    "{pre}2 - Error during parsing: Wrong argument count or unexpected line ending after 'expr'"
                ),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text).err().as_deref(), Some(want.as_str()), "{text}");
        }
        let long = format!("template IN A {{\n match {}\n}}", "a".repeat(10_001));
        assert_eq!(
            parse(&long).err().as_deref(),
            Some(
                "plugin/template: Corefile:2 - Error during parsing: regex pattern too long: 10001 > 10000"
            )
        );
    }

    /// CoreDNS's `setup_test.go` table: which configurations fail.
    #[test]
    fn coredns_setup_cases() {
        let cases: &[(&str, bool)] = &[
            ("template", true),
            ("template X", true),
            ("template ANY", true),
            ("template ANY X", true),
            ("template ANY ANY .* {\n notavailable\n}", true),
            ("template ANY ANY {\n answer\n}", true),
            ("template ANY ANY {\n additional\n}", true),
            ("template ANY ANY {\n rcode\n}", true),
            ("template ANY ANY {\n rcode UNDEFINED\n}", true),
            ("template ANY ANY {\n answer \"{{\"\n}", true),
            ("template ANY ANY {\n additional \"{{\"\n}", true),
            ("template ANY ANY {\n authority \"{{\"\n}", true),
            (
                "template ANY ANY {\n answer \"{{ notAFunction }}\"\n}",
                true,
            ),
            (
                "template ANY ANY {\n answer \"{{ parseInt }}\"\n additional \"{{ parseInt }}\"\n authority \"{{ parseInt }}\"\n}",
                false,
            ),
            ("template ANY ANY (?P<x>", false),
            ("template ANY ANY {\n}", false),
            (
                "template ANY A example.com {\n match ip-(?P<a>[0-9]*)-(?P<b>[0-9]*)-(?P<c>[0-9]*)-(?P<d>[0-9]*)[.]example[.]com\n \
                 answer \"{{ .Name }} A {{ .Group.a }}.{{ .Group.b }}.{{ .Group.c }}.{{ .Grup.d }}.\"\n fallthrough\n}",
                false,
            ),
            (
                "template IN ANY example.com {\n match \"[.](example[.]com[.]dc1[.]example[.]com[.])$\"\n rcode NXDOMAIN\n \
                 authority \"{{ index .Match 1 }} 60 IN SOA ns.{{ index .Match 1 }} hostmaster.example.com (1 60 60 60 60)\"\n \
                 fallthrough example.com\n}",
                false,
            ),
            (
                "template IN A example {\n match ^ip0a(?P<b>[a-f0-9]{2})(?P<c>[a-f0-9]{2})(?P<d>[a-f0-9]{2})[.]example[.]$\n \
                 answer \"{{ .Name }} 3600 IN A 10.{{ parseInt .Group.b 16 8 }}.{{ parseInt .Group.c 16 8 }}.{{ parseInt .Group.d 16 8 }}\"\n}",
                false,
            ),
            (
                "template ANY ANY invalid {\n rcode NXDOMAIN\n ederror 21 \"Blocked according to RFC2606\"\n}",
                false,
            ),
            (
                "template ANY ANY invalid {\n rcode NXDOMAIN\n ederror invalid \"Blocked according to RFC2606\"\n}",
                true,
            ),
            (
                "template ANY ANY invalid {\n ederror too many arguments\n}",
                true,
            ),
        ];
        for (text, fails) in cases {
            assert_eq!(
                parse(text).is_err(),
                *fails,
                "{text}: {:?}",
                parse(text).err()
            );
        }
    }

    #[test]
    fn parse_uint_as_strconv() {
        let call = |s: &str, base: i64, bits: i64| {
            parse_uint(&[Value::str(s), Value::int(base), Value::int(bits)])
                .map(|v| format!("{v:?}"))
        };
        assert_eq!(call("0a", 16, 8).as_deref(), Ok("10"));
        assert_eq!(call("255", 10, 8).as_deref(), Ok("255"));
        assert_eq!(call("0x1f", 0, 64).as_deref(), Ok("31"));
        assert_eq!(
            call("256", 10, 8),
            Err("strconv.ParseUint: parsing \"256\": value out of range".to_owned())
        );
        assert_eq!(
            call("-1", 10, 8),
            Err("strconv.ParseUint: parsing \"-1\": invalid syntax".to_owned())
        );
        assert_eq!(
            call("1", 1, 8),
            Err("strconv.ParseUint: parsing \"1\": invalid base 1".to_owned())
        );
    }

    #[test]
    fn new_rr_as_miekg() {
        let rr = parse_rr("a.example. 60 IN A 192.0.2.1")
            .expect("ok")
            .expect("rr");
        assert_eq!((rr.rtype, rr.class, rr.ttl), (1, 1, 60));
        // No TTL: 3600; relative names under the root; only the first record.
        let rr = parse_rr("host IN A 192.0.2.1\nb. A 192.0.2.2")
            .expect("ok")
            .expect("rr");
        assert_eq!((rr.ttl, rr.owner.as_slice()), (3600, &b"\x04host\x00"[..]));
        assert_eq!(parse_rr("").expect("empty"), None);
        assert_eq!(
            parse_rr("a. 60 IN A 1.2.3")
                .expect_err("bad")
                .text_without_file(),
            "dns: bad A A: \"1.2.3\" at line: 1:12"
        );
    }
}
