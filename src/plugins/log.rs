//! *log*: one line per query in CoreDNS's format (plugins.md B, `log`).
//!
//! Rules are matched first-wins by name scope; the class filter uses CoreDNS's
//! response typing ([`typify`]). The format is compiled once into segments;
//! a line is rendered into a thread-local buffer and written with one call.
//!
//! CoreDNS: `plugin/log/log.go`, `setup.go`, `plugin/pkg/replacer`, `plugin/pkg/response`.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::net::IpAddr;

use corefile::keys::fqdn;
use corefile::{Diagnostic, Dispenser};

use crate::chain::{Ctx, Flow, Proto, Status, client_write};
use crate::clog;
use crate::wire::{MsgIndex, Name, hdr, types};

/// CoreDNS's `CommonLogFormat`.
pub const COMMON: &str = r#"{remote}:{port} - {>id} "{type} {class} {name} {proto} {size} {>do} {>bufsize}" {rcode} {>rflags} {rsize} {duration}"#;
/// CoreDNS's `CombinedLogFormat`.
pub const COMBINED: &str = concat!(
    r#"{remote}:{port} - {>id} "{type} {class} {name} {proto} {size} {>do} {>bufsize}" {rcode} {>rflags} {rsize} {duration}"#,
    r#" "{>opcode}""#
);

/// Response classes for the `class` filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RespClass {
    /// Everything.
    All,
    /// NOERROR, delegations.
    Success,
    /// NXDOMAIN, NODATA.
    Denial,
    /// The rest.
    Error,
}

/// CoreDNS `response.Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RespType {
    /// Positive answer.
    NoError,
    /// NXDOMAIN.
    NameError,
    /// NOERROR with SOA in authority.
    NoData,
    /// Referral.
    Delegation,
    /// NOTIFY, AXFR/IXFR.
    Meta,
    /// UPDATE.
    Update,
    /// SERVFAIL/NOTIMP.
    ServerError,
    /// Anything else.
    OtherError,
}

/// CoreDNS `response.Typify` over wire bytes, at the current time.
pub fn typify(m: &[u8], idx: &MsgIndex) -> RespType {
    typify_with(m, idx, unix_now)
}

/// Seconds since the epoch, now.
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// [`typify`] with the clock `unix` (seconds since the epoch), read only when a
/// DO reply holds signatures whose validity must be judged.
pub fn typify_with(m: &[u8], idx: &MsgIndex, unix: impl FnOnce() -> i64) -> RespType {
    let opcode = hdr::opcode(m);
    if opcode == 5 {
        return RespType::Update;
    }
    if opcode == 4 {
        return RespType::Meta;
    }
    if hdr::counts(m)[0] > 0 {
        if let Ok(qend) = Name::skip(m, 12) {
            if qend + 2 <= m.len() {
                let qt = crate::wire::be16(m, qend);
                if qt == 252 || qt == 251 {
                    return RespType::Meta;
                }
            }
        }
    }
    // A DO reply (its last OPT, as miekg's `IsEdns0` finds it) with a signature
    // outside its validity period is an error.
    if own_do(idx) && idx.rrs.iter().any(|r| r.rtype == 46) {
        let now = unix();
        if idx
            .rrs
            .iter()
            .any(|r| r.rtype == 46 && !rrsig_valid(&m[r.rdata()], now))
        {
            return RespType::OtherError;
        }
    }
    // miekg's unpacked rcode: an upstream's extended rcode (BADVERS, BADCOOKIE) is
    // an error, not a NOERROR answer.
    let rcode = idx.full_rcode(m);
    let answers = idx.count(1);
    if answers > 0 && rcode == 0 {
        return RespType::NoError;
    }
    if answers > 0 && rcode == 3 {
        return RespType::OtherError;
    }
    let soa = idx.section(2).any(|r| r.rtype == 6);
    let ns = idx.section(2).filter(|r| r.rtype == 2).count();
    if soa && rcode == 0 {
        return RespType::NoData;
    }
    if rcode == 3 {
        return RespType::NameError;
    }
    if rcode == 2 || rcode == 4 {
        return RespType::ServerError;
    }
    if ns > 0 && rcode == 0 {
        return RespType::Delegation;
    }
    if rcode == 0 {
        return RespType::NoError;
    }
    RespType::OtherError
}

/// `year68` of miekg's RRSIG validity check.
const YEAR68: i64 = 1 << 31;

/// The DO bit of the message's own OPT (miekg `IsEdns0` takes the last one).
fn own_do(idx: &MsgIndex) -> bool {
    idx.rrs
        .iter()
        .rev()
        .find(|r| r.section == 3 && r.rtype == 41)
        .is_some_and(|r| r.ttl & 0x8000 != 0)
}

/// miekg `RRSIG.ValidityPeriod` (arithmetic in steps of 2^31 seconds, which
/// leaves today's 32-bit times as they are).
pub fn rrsig_valid(rdata: &[u8], unix: i64) -> bool {
    if rdata.len() < 18 {
        return true;
    }
    let exp = i64::from(crate::wire::be32(rdata, 8));
    let inc = i64::from(crate::wire::be32(rdata, 12));
    let ti = inc + (inc - unix) / YEAR68 * YEAR68;
    let te = exp + (exp - unix) / YEAR68 * YEAR68;
    ti <= unix && unix <= te
}

impl RespClass {
    /// The metadata value `log/class`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Success => "success",
            Self::Denial => "denial",
            Self::Error => "error",
        }
    }
}

/// CoreDNS `response.Classify`.
pub fn classify(t: RespType) -> RespClass {
    match t {
        RespType::NoError | RespType::Delegation => RespClass::Success,
        RespType::NameError | RespType::NoData => RespClass::Denial,
        _ => RespClass::Error,
    }
}

impl RespType {
    /// The metadata value `log/type`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoError => "NOERROR",
            Self::NameError => "NXDOMAIN",
            Self::NoData => "NODATA",
            Self::Delegation => "DELEGATION",
            Self::Meta => "META",
            Self::Update => "UPDATE",
            Self::ServerError => "SERVERERROR",
            Self::OtherError => "OTHERERROR",
        }
    }
}

/// One placeholder of a format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Label {
    Type,
    Name,
    Class,
    Proto,
    Size,
    Remote,
    Port,
    Local,
    Id,
    Opcode,
    Do,
    Bufsize,
    Rcode,
    Rsize,
    Duration,
    Rflags,
}

/// A compiled format segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    Lit(String),
    Label(Label),
    Meta(String),
}

fn label(s: &str) -> Option<Label> {
    Some(match s {
        "{type}" => Label::Type,
        "{name}" => Label::Name,
        "{class}" => Label::Class,
        "{proto}" => Label::Proto,
        "{size}" => Label::Size,
        "{remote}" => Label::Remote,
        "{port}" => Label::Port,
        "{local}" => Label::Local,
        "{>id}" => Label::Id,
        "{>opcode}" => Label::Opcode,
        "{>do}" => Label::Do,
        "{>bufsize}" => Label::Bufsize,
        "{rcode}" => Label::Rcode,
        "{rsize}" => Label::Rsize,
        "{duration}" => Label::Duration,
        "{>rflags}" => Label::Rflags,
        _ => return None,
    })
}

/// CoreDNS replacer `parseFormat`: scan for `}`, then the nearest `{` before it.
pub(crate) fn compile(mut s: &str) -> Vec<Seg> {
    let mut out = Vec::new();
    while let Some(j) = s.find('}') {
        let Some(i) = s[..j].rfind('{') else {
            out.push(Seg::Lit(s[..=j].to_owned()));
            s = &s[j + 1..];
            continue;
        };
        let val = &s[i..=j];
        let seg = if let Some(l) = label(val) {
            Seg::Label(l)
        } else if let Some(m) = val.strip_prefix("{/") {
            Seg::Meta(m[..m.len() - 1].to_owned())
        } else {
            Seg::Lit(s[..=j].to_owned())
        };
        if i != 0 && !matches!(seg, Seg::Lit(_)) {
            out.push(Seg::Lit(s[..i].to_owned()));
        }
        out.push(seg);
        s = &s[j + 1..];
    }
    if !s.is_empty() {
        out.push(Seg::Lit(s.to_owned()));
    }
    // Merge adjacent literals.
    let mut merged: Vec<Seg> = Vec::with_capacity(out.len());
    for seg in out {
        match (merged.last_mut(), seg) {
            (Some(Seg::Lit(a)), Seg::Lit(b)) => a.push_str(&b),
            (_, seg) => merged.push(seg),
        }
    }
    merged
}

/// One rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Name scope (FQDN as written; matched case-insensitively).
    pub scope: String,
    /// Format with `{common}`/`{combined}` expanded.
    pub format: String,
    /// Classes; empty = all.
    pub classes: Vec<RespClass>,
}

/// Parsed configuration.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Rules in Corefile order.
    pub rules: Vec<Rule>,
}

fn class_from_str(s: &str) -> Result<RespClass, Diagnostic> {
    Ok(match s {
        "all" => RespClass::All,
        "success" => RespClass::Success,
        "denial" => RespClass::Denial,
        "error" => RespClass::Error,
        _ => return Err(Diagnostic::plain(format!("invalid Class: {s}")).in_plugin("log")),
    })
}

/// Setup (CoreDNS `logParse`).
pub fn setup(d: &mut Dispenser) -> Result<LogConfig, Diagnostic> {
    let mut rules: Vec<Rule> = Vec::new();
    while d.next() {
        let mut args = d.remaining_args();
        let first_new = rules.len();
        match args.len() {
            0 => rules.push(Rule {
                scope: ".".into(),
                format: COMMON.into(),
                classes: Vec::new(),
            }),
            1 => rules.push(Rule {
                scope: fqdn(&args[0]),
                format: COMMON.into(),
                classes: Vec::new(),
            }),
            _ => {
                let mut format = COMMON.to_owned();
                if args.last().is_some_and(|a| a.contains('{')) {
                    let f = args.pop().unwrap_or_default();
                    format = f
                        .replace("{common}", COMMON)
                        .replace("{combined}", COMBINED);
                }
                for a in &args {
                    rules.push(Rule {
                        scope: fqdn(a),
                        format: format.clone(),
                        classes: Vec::new(),
                    });
                }
            }
        }
        let mut classes = Vec::new();
        while d.next_block() {
            match d.val() {
                "class" => {
                    let cs = d.remaining_args();
                    if cs.is_empty() {
                        return Err(d.arg_err().in_plugin("log"));
                    }
                    for c in cs {
                        let c = class_from_str(&c)?;
                        if !classes.contains(&c) {
                            classes.push(c);
                        }
                    }
                }
                other => {
                    return Err(d
                        .err(format!("unknown property '{other}'"))
                        .in_plugin("log"));
                }
            }
        }
        for r in &mut rules[first_new..] {
            r.classes = classes.clone();
        }
    }
    Ok(LogConfig { rules })
}

struct CompiledRule {
    scope: Name,
    segs: Vec<Seg>,
    all: bool,
    classes: Vec<RespClass>,
}

/// The runtime plugin.
pub struct Log {
    rules: Vec<CompiledRule>,
}

thread_local! {
    static LINE: RefCell<String> = RefCell::new(String::with_capacity(256));
}

impl Log {
    /// Compiles the formats.
    pub fn new(c: &LogConfig) -> Self {
        let rules = c
            .rules
            .iter()
            .map(|r| CompiledRule {
                scope: Name::parse(&r.scope).unwrap_or_default(),
                segs: compile(&r.format),
                all: r.classes.is_empty() || r.classes.contains(&RespClass::All),
                classes: r.classes.clone(),
            })
            .collect();
        Self { rules }
    }

    fn rule_for(&self, ctx: &Ctx<'_>) -> Option<&CompiledRule> {
        // The name as the query came to this plugin (before a *rewrite* after it).
        let client = ctx.client_req();
        let qname = client.as_ref().map_or(&ctx.req.qname, |r| &r.qname);
        self.rules.iter().find(|r| qname.is_subdomain_of(&r.scope))
    }

    /// Request hook: nothing to do but pass on (the start time is in the context).
    pub fn serve(&self, _ctx: &mut Ctx<'_>) -> Flow {
        Flow::Next
    }

    /// Response hook: classify and log.
    pub fn respond(&self, ctx: &mut Ctx<'_>, st: &mut Status) {
        let Some(rule) = self.rule_for(ctx) else {
            return;
        };
        // Nothing written and an error rcode: log the reply the server will send.
        let mut synth = Vec::new();
        // CoreDNS's recorder keeps the message the scrub writer then truncates in
        // place: the line shows the TC flag (and types what is left), while {rsize}
        // is the size before.
        let mut truncated = Vec::new();
        let udp_limit = usize::from(ctx.st.udp_size.unwrap_or(0).max(512));
        if ctx.written && ctx.proto == Proto::Udp && ctx.resp.len() > udp_limit {
            truncated = ctx.scrubbed_reply();
        }
        let msg: Option<&[u8]> = if !truncated.is_empty() {
            Some(&truncated[..])
        } else if ctx.written {
            Some(&ctx.resp[..])
        } else if !client_write(st.rcode) {
            crate::wire::bare_reply(&mut synth, &ctx.req, st.rcode as u8);
            Some(&synth[..])
        } else {
            None
        };
        let rsize = if ctx.written {
            ctx.resp.len()
        } else {
            msg.map_or(0, <[u8]>::len)
        };
        if !rule.all || ctx.meta.is_some() {
            let t = match msg.and_then(|m| MsgIndex::with(m, |idx| typify(m, idx))) {
                Some(t) => t,
                None => RespType::OtherError,
            };
            let class = classify(t);
            crate::chain::set_meta(&mut ctx.meta, "log/type", || t.as_str().to_owned());
            crate::chain::set_meta(&mut ctx.meta, "log/class", || class.as_str().to_owned());
            if !rule.all && !rule.classes.contains(&class) {
                return;
            }
        }
        LINE.with(|l| {
            let mut line = l.borrow_mut();
            line.clear();
            line.push_str("[INFO] ");
            render(&rule.segs, ctx, msg, rsize, &mut line);
            clog::raw(&line);
        });
    }
}

fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            let _ = write!(out, "{v4}");
        }
        IpAddr::V6(v6) => {
            let _ = write!(out, "[{v6}]");
        }
    }
}

fn render(segs: &[Seg], ctx: &Ctx<'_>, msg: Option<&[u8]>, rsize: usize, out: &mut String) {
    render_with(segs, ctx, Some((msg, rsize)), true, out);
}

/// CoreDNS's replacer without a recorder (*dnstap*'s `extra`): `{rcode}`, `{rsize}`,
/// `{duration}` and `{>rflags}` render `-`. `client_name`: `{name}` is the query as
/// the client sent it (a plugin before *rewrite*), else the query as rewritten.
pub(crate) fn render_request(segs: &[Seg], ctx: &Ctx<'_>, client_name: bool, out: &mut String) {
    render_with(segs, ctx, None, client_name, out);
}

fn render_with(
    segs: &[Seg],
    ctx: &Ctx<'_>,
    resp: Option<(Option<&[u8]>, usize)>,
    client_name: bool,
    out: &mut String,
) {
    let msg = resp.and_then(|r| r.0);
    for s in segs {
        match s {
            Seg::Lit(l) => out.push_str(l),
            Seg::Meta(label) => out.push_str(ctx.meta(label).unwrap_or("-")),
            Seg::Label(l) => match l {
                Label::Type => types::type_to_string(ctx.req.qtype, out),
                Label::Name => {
                    // CoreDNS's `{name}` is the name it read before passing the query
                    // on (a *rewrite* after *log* changes type, class and size only).
                    let client = if client_name { ctx.client_req() } else { None };
                    let qname = client.as_ref().map_or(&ctx.req.qname, |r| &r.qname);
                    qname.to_lowercase().write_presentation(out);
                }
                Label::Class => types::class_to_string(ctx.req.qclass, out),
                Label::Proto => out.push_str(ctx.proto.as_str()),
                Label::Size => {
                    let _ = write!(out, "{}", ctx.req.size());
                }
                Label::Remote => push_ip(out, ctx.peer.ip()),
                Label::Port => {
                    let _ = write!(out, "{}", ctx.peer.port());
                }
                Label::Local => push_ip(out, ctx.local.ip()),
                Label::Id => {
                    let _ = write!(out, "{}", ctx.req.id());
                }
                Label::Opcode => {
                    let _ = write!(out, "{}", ctx.req.opcode());
                }
                Label::Do => out.push_str(if ctx.do_bit() { "true" } else { "false" }),
                Label::Bufsize => {
                    let _ = write!(out, "{}", ctx.size());
                }
                Label::Rcode => match msg {
                    None => out.push('-'),
                    Some(m) => {
                        // miekg's unpacked rcode, with the OPT's extended bits.
                        let rc = crate::wire::full_rcode(m);
                        match types::rcode_name(rc) {
                            Some(n) => out.push_str(n),
                            None => {
                                let _ = write!(out, "{rc}");
                            }
                        }
                    }
                },
                Label::Rsize => match resp {
                    None => out.push('-'),
                    Some((_, rsize)) => {
                        let _ = write!(out, "{rsize}");
                    }
                },
                Label::Duration => {
                    if resp.is_none() {
                        out.push('-');
                    } else {
                        let secs = ctx.st.start.elapsed().as_secs_f64();
                        let _ = write!(out, "{secs}s");
                    }
                }
                Label::Rflags => match msg {
                    None => out.push('-'),
                    Some(m) => types::flags_to_string(hdr::flags(m), out),
                },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reply to `a.example. A` with one A record, an RRSIG valid from
    /// `inception` to `expiration`, and an OPT with the DO bit as given.
    fn signed_reply(inception: u32, expiration: u32, do_bit: bool) -> Vec<u8> {
        let owner = b"\x01a\x07example\x00";
        let mut m = vec![0, 1, 0x80, 0, 0, 1, 0, 2, 0, 0, 0, 1];
        m.extend_from_slice(owner);
        m.extend_from_slice(&[0, 1, 0, 1]);
        let rr = |m: &mut Vec<u8>, owner: &[u8], t: u16, class: u16, ttl: u32, rd: &[u8]| {
            m.extend_from_slice(owner);
            m.extend_from_slice(&t.to_be_bytes());
            m.extend_from_slice(&class.to_be_bytes());
            m.extend_from_slice(&ttl.to_be_bytes());
            m.extend_from_slice(&(rd.len() as u16).to_be_bytes());
            m.extend_from_slice(rd);
        };
        rr(&mut m, owner, 1, 1, 300, &[192, 0, 2, 1]);
        let mut sig = vec![0, 1, 13, 2, 0, 0, 1, 44];
        sig.extend_from_slice(&expiration.to_be_bytes());
        sig.extend_from_slice(&inception.to_be_bytes());
        sig.extend_from_slice(&[0x12, 0x34]);
        sig.extend_from_slice(b"\x07example\x00");
        sig.extend_from_slice(&[0xab; 64]);
        rr(&mut m, owner, 46, 1, 300, &sig);
        rr(
            &mut m,
            b"\x00",
            41,
            1232,
            if do_bit { 0x8000 } else { 0 },
            &[],
        );
        m
    }

    #[test]
    fn typify_expired_signatures_with_do() {
        let now = 1_800_000_000i64;
        let n = now as u32;
        let t = |m: &[u8]| typify_with(m, &MsgIndex::parse(m).expect("parses"), || now);
        // Valid, expired, not yet valid; without DO the signatures are not looked at.
        assert_eq!(
            t(&signed_reply(n - 3600, n + 3600, true)),
            RespType::NoError
        );
        assert_eq!(
            t(&signed_reply(n - 7200, n - 3600, true)),
            RespType::OtherError
        );
        assert_eq!(
            t(&signed_reply(n + 3600, n + 7200, true)),
            RespType::OtherError
        );
        assert_eq!(
            t(&signed_reply(n - 7200, n - 3600, false)),
            RespType::NoError
        );
    }

    #[test]
    fn compile_like_coredns() {
        assert_eq!(
            compile("{ {type} }"),
            vec![
                Seg::Lit("{ ".into()),
                Seg::Label(Label::Type),
                Seg::Lit(" }".into())
            ]
        );
        assert_eq!(compile("{unknown}x"), vec![Seg::Lit("{unknown}x".into())]);
        assert_eq!(
            compile("a{/m/x}"),
            vec![Seg::Lit("a".into()), Seg::Meta("m/x".into())]
        );
    }

    #[test]
    fn setup_rules() {
        let mut d = Dispenser::from_text(
            "Corefile",
            "log\nlog a.org\nlog a.org b.org {combined}\nlog {common}",
        );
        let c = setup(&mut d).expect("setup");
        let scopes: Vec<&str> = c.rules.iter().map(|r| r.scope.as_str()).collect();
        assert_eq!(scopes, [".", "a.org.", "a.org.", "b.org.", "{common}."]);
        assert_eq!(c.rules[2].format, COMBINED);
        let mut d = Dispenser::from_text("Corefile", "log {\n class bogus\n}");
        assert_eq!(
            setup(&mut d).expect_err("bad").to_string(),
            "plugin/log: invalid Class: bogus"
        );
        let mut d = Dispenser::from_text("Corefile", "log {\n foo\n}");
        assert_eq!(
            setup(&mut d).expect_err("bad").to_string(),
            "plugin/log: Corefile:2 - Error during parsing: unknown property 'foo'"
        );
    }
}
