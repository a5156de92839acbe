//! *rewrite*: rewrites the query's name, type or class before the plugins after
//! it see it, and the response on its way back (plugins.md B).
//!
//! Rules (one per `rewrite` directive, or per block) run in Corefile order on the
//! query's lower-cased name; a `stop` rule (the default) that matches ends the
//! rules, a `continue` rule goes on. Response rules (the names rewritten back,
//! `answer name`/`answer value`, `ttl`, `rcode`) run in reverse rule order over
//! every record of the authority, answer and additional sections, and the
//! question is restored, as CoreDNS's `ResponseReverter` does.
//!
//! A query a later plugin parks resumes on the client's copy of the message; the
//! chain applies the rewrite again (the rules depend on the query alone), and the
//! response hook derives its response rules the same way.
//!
//! A `cname` rule wraps the plugins after it: when their reply holds a CNAME
//! whose target the rule maps, the new target is looked up through the server
//! ([`crate::server::reentry`]) and the answer becomes the CNAMEs up to that one
//! (now pointing at the new target) and the lookup's answer.
//!
//! CoreDNS: `plugin/rewrite/rewrite.go`, `name.go`, `type.go`, `class.go`,
//! `ttl.go`, `rcode.go`, `reverter.go`.

use corefile::keys::{is_domain_name, normalize_name};
use corefile::values::go_quote;
use corefile::{Diagnostic, Dispenser};

use crate::chain::{Ctx, ErrorKind, Flow, Next, PluginError, Status, client_write};
use crate::wire::index::{MsgIndex, Rebuild, rebuild};
use crate::wire::request::{Request, Verdict, parse_query};
use crate::wire::{HEADER_LEN, Name, hdr};

/// CoreDNS's `maxRegexpLen`.
const MAX_REGEXP_LEN: usize = 10_000;

/// `stop` or `continue`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// No rule after a matching one runs.
    Stop,
    /// The rules after it run too.
    Continue,
}

/// How a rule matches the lower-cased query name.
#[derive(Debug, Clone)]
pub enum Match {
    /// The whole name.
    Exact(String),
    /// A prefix of the name.
    Prefix(String),
    /// A suffix of the name.
    Suffix(String),
    /// A part of the name.
    Substring(String),
    /// A Go regular expression (unanchored).
    Regex(regex::Regex),
}

impl Match {
    fn matches(&self, name: &str) -> bool {
        match self {
            Self::Exact(s) => name == s,
            Self::Prefix(s) => name.starts_with(s.as_str()),
            Self::Suffix(s) => name.ends_with(s.as_str()),
            Self::Substring(s) => name.contains(s.as_str()),
            Self::Regex(r) => r.is_match(name),
        }
    }
}

/// A string rewriter of the response rules.
#[derive(Debug, Clone)]
pub enum StrRewrite {
    /// The whole string becomes the replacement (with `{N}` groups) when the
    /// pattern matches (`regexStringRewriter`).
    Regex(regex::Regex, String),
    /// `from` itself, or a name below it, maps onto `to` (`remapStringRewriter`).
    Remap(String, String),
    /// A suffix is replaced (`suffixStringRewriter`).
    Suffix(String, String),
}

impl StrRewrite {
    fn apply(&self, src: &str) -> String {
        match self {
            Self::Regex(re, to) => match re.captures(src) {
                Some(c) => expand(to, &c),
                None => src.to_owned(),
            },
            Self::Remap(from, to) => {
                if src == from {
                    return to.clone();
                }
                if src.len() > from.len()
                    && src.ends_with(from.as_str())
                    && src.as_bytes()[src.len() - from.len() - 1] == b'.'
                {
                    return format!("{}{to}", &src[..src.len() - from.len()]);
                }
                src.to_owned()
            }
            Self::Suffix(suffix, to) => match src.strip_suffix(suffix.as_str()) {
                Some(before) => format!("{before}{to}"),
                None => src.to_owned(),
            },
        }
    }
}

/// The replacement with `{0}`…`{N}` replaced by the groups, one group after the
/// other as CoreDNS does (a group not taking part is empty).
fn expand(to: &str, c: &regex::Captures<'_>) -> String {
    let mut s = to.to_owned();
    for i in 0..c.len() {
        let v = c.get(i).map_or("", |m| m.as_str());
        s = s.replace(&format!("{{{i}}}"), v);
    }
    s
}

/// A response rule.
#[derive(Debug, Clone)]
pub enum RespRule {
    /// Owner names.
    Name(StrRewrite),
    /// The target names of CNAME, DNAME, NS, PTR, MX, SRV, NAPTR and SOA (MNAME).
    Value(StrRewrite),
    /// TTLs clamped into `min..=max`.
    Ttl(u32, u32),
    /// The rcode `old` becomes `new`.
    Rcode(u16, u16),
    /// `revert` of an EDNS0 option the rule added: the reply's option with this
    /// code is removed.
    Edns0Remove(u16),
    /// `revert` of an EDNS0 option the rule changed: the reply's option with this
    /// code gets the query's data back.
    Edns0Restore(u16, Vec<u8>),
    /// A `cname` rule: CNAME targets it maps are looked up anew (in
    /// [`Rewrite::serve_async`], before the other response rules).
    Cname(CnameTarget),
}

/// A `cname` rule's target mapping (CoreDNS `cnameTargetRule`).
#[derive(Debug, Clone)]
pub struct CnameTarget {
    /// How the target is matched (`from`, lower-cased).
    pub kind: NameKind,
    /// The new target (lower-cased; `{N}` groups for regex).
    pub to: String,
}

impl CnameTarget {
    /// CoreDNS's `Rewrite` ignores a rule with an empty FROM or TO.
    fn usable(&self) -> bool {
        let from = match &self.kind {
            NameKind::Exact(s)
            | NameKind::Prefix(s)
            | NameKind::Suffix(s)
            | NameKind::Substring(s) => s.as_str(),
            NameKind::Regex(re) => re.as_str(),
        };
        !from.is_empty() && !self.to.is_empty()
    }

    /// CoreDNS `getFromAndToTarget`: the new target for a CNAME pointing at
    /// `target`, if the rule maps it.
    fn map(&self, target: &str) -> Option<String> {
        let to = &self.to;
        match &self.kind {
            NameKind::Exact(from) => (target == from).then(|| to.clone()),
            NameKind::Prefix(p) => target.strip_prefix(p.as_str()).map(|a| format!("{to}{a}")),
            NameKind::Suffix(s) => target.strip_suffix(s.as_str()).map(|b| format!("{b}{to}")),
            NameKind::Substring(s) => target
                .contains(s.as_str())
                .then(|| target.replace(s.as_str(), to)),
            NameKind::Regex(re) => re.captures(target).map(|c| expand(to, &c)),
        }
    }
}

/// An `edns0` rule's action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edns0Action {
    /// Change the option, or add it.
    Set,
    /// Add the option (another one when it is there).
    Append,
    /// Change the option only if it is there.
    Replace,
    /// Remove the option.
    Unset,
}

/// What an `edns0` rule writes.
#[derive(Debug, Clone)]
pub enum Edns0Kind {
    /// `local CODE DATA`: literal (or `0x` hex) data.
    Local(u16, Vec<u8>),
    /// `local CODE {variable}`.
    Var(u16, String),
    /// `nsid` (an empty NSID option).
    Nsid,
    /// `subnet V4BITS V6BITS` (ECS from the client's address).
    Subnet(u8, u8),
}

/// What a name rule matches with.
#[derive(Debug, Clone)]
pub enum NameKind {
    /// `exact` (response names always mapped back).
    Exact(String),
    /// `prefix`.
    Prefix(String),
    /// `suffix`.
    Suffix(String),
    /// `substring`.
    Substring(String),
    /// `regex`.
    Regex(regex::Regex),
}

/// One rule.
#[derive(Debug, Clone)]
pub enum Rule {
    /// `name`.
    Name {
        /// Stop or continue.
        mode: Mode,
        /// The match.
        kind: NameKind,
        /// The replacement.
        to: String,
        /// `answer auto` (exact rules always).
        auto: bool,
        /// Configured response rules (for `suffix … answer auto`, the suffix
        /// mapped back first).
        answers: Vec<RespRule>,
    },
    /// `type FROM TO`.
    Type(Mode, u16, u16),
    /// `class FROM TO`.
    Class(Mode, u16, u16),
    /// `ttl`.
    Ttl(Mode, Match, u32, u32),
    /// `rcode`.
    Rcode(Mode, Match, u16, u16),
    /// `cname [TYPE] FROM TO`.
    Cname(Mode, CnameTarget),
    /// `edns0`.
    Edns0 {
        /// Stop or continue.
        mode: Mode,
        /// The option.
        kind: Edns0Kind,
        /// What to do with it.
        action: Edns0Action,
        /// Put the query's option back in the reply.
        revert: bool,
    },
}

impl Rule {
    fn mode(&self) -> Mode {
        match self {
            Self::Name { mode, .. } | Self::Edns0 { mode, .. } => *mode,
            Self::Type(m, ..)
            | Self::Class(m, ..)
            | Self::Ttl(m, ..)
            | Self::Rcode(m, ..)
            | Self::Cname(m, _) => *m,
        }
    }
}

/// Parsed configuration: every `rewrite` directive of the block.
#[derive(Debug, Clone, Default)]
pub struct RewriteConfig {
    /// Rules in Corefile order.
    pub rules: Vec<Rule>,
}

/// Setup (CoreDNS `rewriteParse`).
pub fn setup(d: &mut Dispenser) -> Result<RewriteConfig, Diagnostic> {
    let mut c = RewriteConfig::default();
    while d.next() {
        let mut args = d.remaining_args();
        if args.len() < 2 {
            // The block form: its tokens make one rule.
            while d.next_block() {
                args.push(d.val().to_owned());
            }
        }
        let rule = new_rule(&args).map_err(|e| Diagnostic::plain(e).in_plugin("rewrite"))?;
        c.rules.push(rule);
    }
    Ok(c)
}

/// CoreDNS `newRule`.
fn new_rule(args: &[String]) -> Result<Rule, String> {
    let Some(first) = args.first() else {
        return Err("no rule type specified for rewrite".into());
    };
    let arg0 = first.to_lowercase();
    let (mode, rule_type, expect, start) = match arg0.as_str() {
        "continue" | "stop" => {
            let mode = if arg0 == "stop" {
                Mode::Stop
            } else {
                Mode::Continue
            };
            let Some(t) = args.get(1) else {
                return Err(format!("{arg0} rule must begin with a rule type"));
            };
            (mode, t.to_lowercase(), args.len() - 1, 2)
        }
        _ => (Mode::Stop, arg0.clone(), args.len(), 1),
    };
    let rest = &args[start..];
    match rule_type.as_str() {
        "answer" => Err("response rewrites must begin with a name rule".into()),
        "name" => new_name_rule(mode, rest),
        "class" | "type" => {
            if expect != 3 {
                return Err(format!("{rule_type} rules must have exactly two arguments"));
            }
            if rule_type == "type" {
                let t = |s: &str| {
                    let up = s.to_uppercase();
                    crate::wire::types::miekg_type_from_str(&up)
                        .ok_or_else(|| format!("invalid type {}", go_quote(&up)))
                };
                Ok(Rule::Type(mode, t(&rest[0])?, t(&rest[1])?))
            } else {
                let c = |s: &str| {
                    let up = s.to_uppercase();
                    crate::wire::types::miekg_class_from_str(&up)
                        .ok_or_else(|| format!("invalid class {}", go_quote(&up)))
                };
                Ok(Rule::Class(mode, c(&rest[0])?, c(&rest[1])?))
            }
        }
        "ttl" => new_ttl_rule(mode, rest),
        "rcode" => new_rcode_rule(mode, rest),
        "edns0" => new_edns0_rule(mode, rest),
        "cname" => new_cname_rule(mode, rest),
        _ => Err(format!("invalid rule type {}", go_quote(first))),
    }
}

/// CoreDNS `newCNAMERule`: `[exact|prefix|suffix|substring|regex] FROM TO`
/// (exact without a type), lower-cased; exact names made fully qualified.
fn new_cname_rule(mode: Mode, args: &[String]) -> Result<Rule, String> {
    let (kind, from, to) = match args {
        [k, f, t] => (k.to_lowercase(), f.to_lowercase(), t.to_lowercase()),
        [f, t] => ("exact".to_owned(), f.to_lowercase(), t.to_lowercase()),
        _ => {
            return Err(format!(
                "too few ({}) arguments for a cname rule",
                args.len()
            ));
        }
    };
    let kind = match kind.as_str() {
        "exact" => {
            let fq = |s: &str| normalize_name(s);
            return Ok(Rule::Cname(
                mode,
                CnameTarget {
                    kind: NameKind::Exact(fq(&from)),
                    to: fq(&to),
                },
            ));
        }
        "prefix" => NameKind::Prefix(from),
        "suffix" => NameKind::Suffix(from),
        "substring" => NameKind::Substring(from),
        "regex" => {
            if from.len() > MAX_REGEXP_LEN {
                return Err(format!(
                    "regex pattern too long in a cname rule: {} > {MAX_REGEXP_LEN}",
                    from.len()
                ));
            }
            let re = crate::goregex::compile(&from)
                .map_err(|e| format!("invalid cname rewrite regex pattern: {e}"))?;
            NameKind::Regex(re)
        }
        other => return Err(format!("unknown cname rewrite type: {other}")),
    };
    Ok(Rule::Cname(mode, CnameTarget { kind, to }))
}

/// Go's `strconv.ParseUint(s, 0, 16)` with its error text.
fn parse_uint16_base0(s: &str) -> Result<u16, String> {
    let syntax = || format!("strconv.ParseUint: parsing {}: invalid syntax", go_quote(s));
    let (digits, radix) = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (h, 16)
    } else if let Some(b) = s.strip_prefix("0b").or_else(|| s.strip_prefix("0B")) {
        (b, 2)
    } else if let Some(o) = s.strip_prefix("0o").or_else(|| s.strip_prefix("0O")) {
        (o, 8)
    } else if s.len() > 1 && s.starts_with('0') {
        (&s[1..], 8)
    } else {
        (s, 10)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(syntax());
    }
    match u64::from_str_radix(digits, radix) {
        Ok(n) if n <= u64::from(u16::MAX) => Ok(n as u16),
        _ => Err(format!(
            "strconv.ParseUint: parsing {}: value out of range",
            go_quote(s)
        )),
    }
}

/// Go's `hex.DecodeString` with its error texts.
fn go_hex(s: &str) -> Result<Vec<u8>, String> {
    let b = s.as_bytes();
    let val = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len() / 2);
    let mut i = 0;
    while i + 1 < b.len() {
        let (Some(hi), Some(lo)) = (val(b[i]), val(b[i + 1])) else {
            let bad = if val(b[i]).is_none() { b[i] } else { b[i + 1] };
            return Err(invalid_byte(bad));
        };
        out.push(hi << 4 | lo);
        i += 2;
    }
    if b.len() % 2 == 1 {
        if val(b[b.len() - 1]).is_none() {
            return Err(invalid_byte(b[b.len() - 1]));
        }
        return Err("encoding/hex: odd length hex string".into());
    }
    Ok(out)
}

fn invalid_byte(c: u8) -> String {
    format!(
        "encoding/hex: invalid byte: U+{:04X} {}",
        c,
        go_rune_quote(c)
    )
}

/// Go's `%q` of a rune (a byte here).
fn go_rune_quote(c: u8) -> String {
    match c {
        b'\'' => "'\\''".into(),
        b'\\' => "'\\\\'".into(),
        0x20..=0x7e => format!("'{}'", c as char),
        b'\n' => "'\\n'".into(),
        b'\t' => "'\\t'".into(),
        b'\r' => "'\\r'".into(),
        0x07 => "'\\a'".into(),
        0x08 => "'\\b'".into(),
        0x0c => "'\\f'".into(),
        0x0b => "'\\v'".into(),
        0 => "'\\x00'".into(),
        c if c < 0x80 => format!("'\\x{c:02x}'"),
        c => format!("'{}'", char::from(c)),
    }
}

/// The variables of `edns0 local` (CoreDNS `isValidVariable`); a `{plugin/label}`
/// metadata label is accepted too.
fn valid_variable(v: &str) -> bool {
    const VARS: [&str; 7] = [
        "{qname}",
        "{qtype}",
        "{client_ip}",
        "{client_port}",
        "{protocol}",
        "{server_ip}",
        "{server_port}",
    ];
    if VARS.contains(&v) {
        return true;
    }
    // metadata.IsLabel: `plugin/label`, both parts non-empty, plugin without `/`.
    let Some(inner) = v.strip_prefix('{').and_then(|r| r.strip_suffix('}')) else {
        return false;
    };
    match inner.split_once('/') {
        Some((p, l)) => !p.is_empty() && !l.is_empty() && !p.contains('/'),
        None => false,
    }
}

/// CoreDNS `newEdns0Rule`.
fn new_edns0_rule(mode: Mode, args: &[String]) -> Result<Rule, String> {
    if args.len() < 2 {
        return Err("too few arguments for an EDNS0 rule".into());
    }
    let rule_type = args[0].to_lowercase();
    let action_text = args[1].to_lowercase();
    let action = match action_text.as_str() {
        "append" => Edns0Action::Append,
        "replace" => Edns0Action::Replace,
        "set" => Edns0Action::Set,
        "unset" => Edns0Action::Unset,
        _ => return Err(format!("invalid action: {}", go_quote(&action_text))),
    };
    let rule = |kind, revert| Rule::Edns0 {
        mode,
        kind,
        action,
        revert,
    };
    if action == Edns0Action::Unset {
        return match rule_type.as_str() {
            "local" => {
                if args.len() != 3 {
                    return Err("local unset action requires exactly two arguments".into());
                }
                let code = parse_uint16_base0(&args[2])?;
                set_supported_option(code);
                Ok(rule(Edns0Kind::Local(code, Vec::new()), false))
            }
            "nsid" => {
                if args.len() != 2 {
                    return Err("nsid unset action requires exactly one argument".into());
                }
                Ok(rule(Edns0Kind::Nsid, false))
            }
            "subnet" => {
                if args.len() != 2 {
                    return Err("subnet unset action requires exactly one argument".into());
                }
                Ok(rule(Edns0Kind::Subnet(0, 0), false))
            }
            _ => Err(format!("invalid rule type {}", go_quote(&rule_type))),
        };
    }
    let mut args = args;
    let revert = args.last().is_some_and(|a| a == "revert");
    if revert {
        args = &args[..args.len() - 1];
    }
    match rule_type.as_str() {
        "local" => {
            if args.len() != 4 {
                return Err("EDNS0 local rules require three or four args".into());
            }
            let data = &args[3];
            if data.starts_with('{') && data.ends_with('}') {
                let code = parse_uint16_base0(&args[2])?;
                if !valid_variable(data) {
                    return Err(format!("unsupported variable name {}", go_quote(data)));
                }
                set_supported_option(code);
                return Ok(rule(Edns0Kind::Var(code, data.clone()), revert));
            }
            let code = parse_uint16_base0(&args[2])?;
            let bytes = match data.strip_prefix("0x") {
                Some(h) => go_hex(h)?,
                None => data.as_bytes().to_vec(),
            };
            set_supported_option(code);
            Ok(rule(Edns0Kind::Local(code, bytes), revert))
        }
        "nsid" => {
            if args.len() != 2 {
                return Err("EDNS0 NSID rules can accept no more than one arg".into());
            }
            Ok(rule(Edns0Kind::Nsid, revert))
        }
        "subnet" => {
            if args.len() != 4 {
                return Err("EDNS0 subnet rules require three or four args".into());
            }
            let v4 = parse_uint16_base0(&args[2])?;
            if v4 > 32 {
                return Err(format!("invalid IPv4 bit mask length {v4}"));
            }
            let v6 = parse_uint16_base0(&args[3])?;
            if v6 > 128 {
                return Err(format!("invalid IPv6 bit mask length {v6}"));
            }
            Ok(rule(Edns0Kind::Subnet(v4 as u8, v6 as u8), revert))
        }
        _ => Err(format!("invalid rule type {}", go_quote(&rule_type))),
    }
}

/// CoreDNS's `edns.SetSupportedOption`: a local option code a rule writes is
/// echoed like the built-in ones from then on (process-wide, as in CoreDNS).
fn set_supported_option(code: u16) {
    crate::wire::request::add_supported_option(code);
}

/// Option codes miekg unpacks into their own types (not `EDNS0_LOCAL`).
const TYPED_OPTIONS: [u16; 15] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 15, 18, 19];

/// CoreDNS `getSubExprUsage`: how many of `{0}`…`{100}` `s` uses.
fn sub_expr_usage(s: &str) -> usize {
    (0..=100)
        .filter(|i| s.contains(&format!("{{{i}}}")))
        .count()
}

/// CoreDNS `isValidRegexPattern`.
fn valid_regex(from: &str, to: &str) -> Result<regex::Regex, String> {
    if from.len() > MAX_REGEXP_LEN {
        return Err(format!(
            "regex pattern too long: {} > {MAX_REGEXP_LEN}",
            from.len()
        ));
    }
    let re = crate::goregex::compile(from)
        .map_err(|_| format!("invalid regex matching pattern: {from}"))?;
    if sub_expr_usage(to) > re.captures_len() - 1 {
        return Err(format!(
            "the rewrite regex pattern ({to}) uses more subexpressions than its corresponding matching regex pattern ({from})"
        ));
    }
    Ok(re)
}

/// CoreDNS `newNameRule`.
fn new_name_rule(mode: Mode, args: &[String]) -> Result<Rule, String> {
    if args.len() < 2 {
        return Err("too few arguments for a name rule".into());
    }
    let (match_type, from, to) = if args.len() == 2 {
        (
            "exact".to_owned(),
            normalize_name(&args[0]),
            normalize_name(&args[1]),
        )
    } else {
        let m = args[0].to_lowercase();
        if m == "regex" {
            (m, args[1].clone(), args[2].clone())
        } else {
            (m, normalize_name(&args[1]), normalize_name(&args[2]))
        }
    };
    let (auto, answers) = if args.len() > 3 {
        parse_answer_rules(&match_type, &args[3..])?
    } else {
        (false, Vec::new())
    };
    let kind = match match_type.as_str() {
        "exact" => {
            valid_regex(&to, &from)?;
            return Ok(Rule::Name {
                mode,
                kind: NameKind::Exact(from),
                to,
                auto: true,
                answers,
            });
        }
        "prefix" => NameKind::Prefix(from),
        "suffix" => {
            let mut all = Vec::new();
            if auto {
                // The suffix and its replacement the other way round.
                let back = StrRewrite::Suffix(to.clone(), from.clone());
                all.push(RespRule::Name(back.clone()));
                all.push(RespRule::Value(back));
            }
            all.extend(answers);
            return Ok(Rule::Name {
                mode,
                kind: NameKind::Suffix(from),
                to,
                auto: false,
                answers: all,
            });
        }
        "substring" => NameKind::Substring(from),
        "regex" => {
            let re = valid_regex(&from, &to)?;
            return Ok(Rule::Name {
                mode,
                kind: NameKind::Regex(re),
                to: normalize_name(&args[2]),
                auto,
                answers,
            });
        }
        other => {
            return Err(format!(
                "name rule supports only exact, prefix, suffix, substring, and regex name matching, received: {other}"
            ));
        }
    };
    Ok(Rule::Name {
        mode,
        kind,
        to,
        auto,
        answers,
    })
}

/// CoreDNS `parseAnswerRules`.
fn parse_answer_rules(name: &str, args: &[String]) -> Result<(bool, Vec<RespRule>), String> {
    if args.len() < 2 {
        return Err(format!("invalid arguments for {name} rule"));
    }
    let (mut auto, mut rules, mut name_rules) = (false, Vec::new(), 0usize);
    let mut last = "";
    let mut i = 0;
    while i < args.len() {
        if last.is_empty() && args[i] != "answer" {
            return Err(format!(
                "exceeded the number of arguments for a non-answer rule argument for {name} rule"
            ));
        }
        if args[i] == "answer" {
            i += 1;
        }
        if i == args.len() {
            return Err(format!("type missing for answer rule for {name} rule"));
        }
        last = &args[i];
        i += 1;
        match last {
            "auto" => auto = true,
            "name" | "value" => {
                if args.len() - i < 2 {
                    return Err(format!(
                        "{last} answer rule for {name} rule: 2 arguments required"
                    ));
                }
                let re = valid_regex(&args[i], &args[i + 1])
                    .map_err(|e| format!("{last} answer rule for {name} rule: {e}"))?;
                let rw = StrRewrite::Regex(re, normalize_name(&args[i + 1]));
                if last == "name" {
                    rules.push(RespRule::Name(rw));
                    name_rules += 1;
                } else {
                    rules.push(RespRule::Value(rw));
                }
                i += 2;
            }
            _ => {
                return Err(format!(
                    "invalid type {} for answer rule for {name} rule",
                    go_quote(last)
                ));
            }
        }
    }
    if auto && name_rules > 0 {
        return Err(
            "auto name answer rule cannot be combined with explicit name anwer rules".into(),
        );
    }
    Ok((auto, rules))
}

/// Go's `strconv.ParseUint(s, 10, 32)`.
fn parse_u32(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// CoreDNS `isValidTTL`: `N`, `MIN-MAX`, `-MAX`, `MIN-`.
fn valid_ttl(v: &str) -> Option<(u32, u32)> {
    let parts: Vec<&str> = v.split('-').collect();
    match parts[..] {
        [one] => parse_u32(one).map(|n| (n, n)),
        [lo, hi] => {
            let min = if lo.is_empty() { 0 } else { parse_u32(lo)? };
            let max = if hi.is_empty() {
                if lo.is_empty() {
                    return None;
                }
                2_147_483_647
            } else {
                parse_u32(hi)?
            };
            (min <= max).then_some((min, max))
        }
        _ => None,
    }
}

/// The `[MATCH] NAME` part of *ttl* and *rcode* rules (`what` names the rule in
/// the errors).
fn name_match(kind: &str, name: &str, what: &str) -> Result<Match, String> {
    Ok(match kind.to_lowercase().as_str() {
        "exact" => Match::Exact(normalize_name(name)),
        "prefix" => Match::Prefix(normalize_name(name)),
        "suffix" => Match::Suffix(normalize_name(name)),
        "substring" => Match::Substring(normalize_name(name)),
        "regex" => {
            if name.len() > MAX_REGEXP_LEN {
                return Err(format!(
                    "regex pattern too long in a {what} rule: {} > {MAX_REGEXP_LEN}",
                    name.len()
                ));
            }
            Match::Regex(
                crate::goregex::compile(name)
                    .map_err(|_| format!("invalid regex pattern in a {what} rule: {name}"))?,
            )
        }
        _ => {
            return Err(format!(
                "{what} rule supports only exact, prefix, suffix, substring, and regex name matching"
            ));
        }
    })
}

/// CoreDNS `newTTLRule`.
fn new_ttl_rule(mode: Mode, args: &[String]) -> Result<Rule, String> {
    if args.len() < 2 {
        return Err(format!("too few ({}) arguments for a ttl rule", args.len()));
    }
    let s = match args.len() {
        2 => args[1].as_str(),
        3 => args[2].as_str(),
        _ => "",
    };
    let (min, max) = valid_ttl(s).ok_or_else(|| format!("invalid TTL '{s}' for a ttl rule"))?;
    if args.len() == 3 {
        return Ok(Rule::Ttl(
            mode,
            name_match(&args[0], &args[1], "ttl")?,
            min,
            max,
        ));
    }
    Ok(Rule::Ttl(
        mode,
        Match::Exact(normalize_name(&args[0])),
        min,
        max,
    ))
}

/// CoreDNS `isValidRCode`: a number up to 23, or a name of miekg's `StringToRcode`.
fn valid_rcode(v: &str) -> Option<u16> {
    if let Some(n) = parse_u32(v).filter(|n| *n <= 23) {
        return u16::try_from(n).ok();
    }
    let up = v.to_uppercase();
    if up == "NOTIMPL" {
        return Some(4);
    }
    (0..=23u16).find(|rc| crate::wire::types::rcode_name(*rc) == Some(up.as_str()))
}

/// CoreDNS `newRCodeRule`.
fn new_rcode_rule(mode: Mode, args: &[String]) -> Result<Rule, String> {
    if args.len() < 3 {
        return Err(format!(
            "too few ({}) arguments for a rcode rule",
            args.len()
        ));
    }
    let (old, new) = match args.len() {
        3 => (args[1].as_str(), args[2].as_str()),
        4 => (args[2].as_str(), args[3].as_str()),
        _ => ("", ""),
    };
    let o = valid_rcode(old)
        .ok_or_else(|| format!("invalid matching RCODE '{old}' for a rcode rule"))?;
    let n = valid_rcode(new)
        .ok_or_else(|| format!("invalid replacement RCODE '{new}' for a rcode rule"))?;
    if args.len() == 4 {
        return Ok(Rule::Rcode(
            mode,
            name_match(&args[0], &args[1], "rcode")?,
            o,
            n,
        ));
    }
    Ok(Rule::Rcode(
        mode,
        Match::Exact(normalize_name(&args[0])),
        o,
        n,
    ))
}

/// What the rules make of one query.
struct Applied {
    /// The question as the rules left it: (name, type, class), `None` if unchanged.
    question: Option<(String, u16, u16)>,
    /// Response rules in rule order.
    resp: Vec<RespRule>,
    /// A `stop` rule matched (the response goes through the reverter even
    /// without response rules).
    stopped: bool,
    /// The rewritten name is not a domain name: `Err` holds CoreDNS's text.
    invalid: Option<String>,
    /// The query's EDNS options as `edns0` rules left them, when one ran
    /// (CoreDNS adds an OPT, UDP size 4096, to a query without one).
    opt: Option<Vec<(u16, Vec<u8>)>>,
}

/// What `edns0` variables and the subnet rule read of the query's transport.
#[derive(Debug, Clone, Copy)]
pub struct Env {
    /// Client.
    pub peer: std::net::SocketAddr,
    /// Local address.
    pub local: std::net::SocketAddr,
    /// Transport.
    pub proto: crate::chain::Proto,
}

impl Env {
    fn of(ctx: &Ctx<'_>) -> Self {
        Self {
            peer: ctx.peer,
            local: ctx.local,
            proto: ctx.proto,
        }
    }
}

/// `ipToWire` for the client's family (4 or 16 octets).
fn ip_wire(family_v4: bool, ip: std::net::IpAddr) -> Option<Vec<u8>> {
    match (family_v4, ip) {
        (true, std::net::IpAddr::V4(a)) => Some(a.octets().to_vec()),
        (true, std::net::IpAddr::V6(a)) => a.to_ipv4_mapped().map(|v| v.octets().to_vec()),
        (false, std::net::IpAddr::V6(a)) => Some(a.octets().to_vec()),
        (false, std::net::IpAddr::V4(a)) => Some(a.to_ipv6_mapped().octets().to_vec()),
    }
}

/// An ECS option's data for `ip` (miekg packs the address cut to the mask).
fn ecs_data(ip: std::net::IpAddr, v4: u8, v6: u8) -> Vec<u8> {
    let (family, bits, addr): (u16, u8, Vec<u8>) = match ip {
        std::net::IpAddr::V4(a) => (1, v4, a.octets().to_vec()),
        std::net::IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(m) => (1, v4, m.octets().to_vec()),
            None => (2, v6, a.octets().to_vec()),
        },
    };
    let mut out = family.to_be_bytes().to_vec();
    out.push(bits);
    out.push(0);
    let n = usize::from(bits).div_ceil(8);
    for (i, b) in addr.iter().take(n).enumerate() {
        let keep = usize::from(bits).saturating_sub(i * 8).min(8);
        let mask = if keep == 0 { 0 } else { 0xffu8 << (8 - keep) };
        out.push(b & mask);
    }
    out
}

/// The runtime plugin.
pub struct Rewrite {
    rules: Vec<Rule>,
}

impl Rewrite {
    /// Builds it.
    pub fn new(c: &RewriteConfig) -> Self {
        Self {
            rules: c.rules.clone(),
        }
    }

    /// Runs the rules over `req` (the query as the client sent it).
    fn apply(&self, req: &Request<'_>, env: &Env) -> Applied {
        let mut name = String::new();
        req.qname.write_presentation(&mut name);
        let (mut qtype, mut qclass) = (req.qtype, req.qclass);
        let orig = (name.clone(), qtype, qclass);
        let mut out = Applied {
            question: None,
            resp: Vec::new(),
            stopped: false,
            invalid: None,
            opt: None,
        };
        // `setupEdns0Opt`: the query's options, or a new OPT's (none).
        let start_opts = || -> Vec<(u16, Vec<u8>)> {
            req.opt
                .map(|o| o.options().map(|x| (x.code, x.data.to_vec())).collect())
                .unwrap_or_default()
        };
        for rule in &self.rules {
            // `state.Name()`: the current name, lower-cased, read fresh by each rule.
            let lower = name.to_lowercase();
            let done = match rule {
                Rule::Name {
                    kind,
                    to,
                    auto,
                    answers,
                    ..
                } => {
                    let new = match kind {
                        NameKind::Exact(from) => (*from == lower).then(|| to.clone()),
                        NameKind::Prefix(p) => {
                            lower.strip_prefix(p.as_str()).map(|a| format!("{to}{a}"))
                        }
                        NameKind::Suffix(s) => {
                            lower.strip_suffix(s.as_str()).map(|b| format!("{b}{to}"))
                        }
                        NameKind::Substring(s) => lower
                            .contains(s.as_str())
                            .then(|| lower.replace(s.as_str(), to)),
                        NameKind::Regex(re) => re.captures(&lower).map(|c| expand(to, &c)),
                    };
                    match new {
                        None => false,
                        Some(new) => {
                            if *auto {
                                let back = StrRewrite::Remap(new.clone(), lower.clone());
                                out.resp.push(RespRule::Name(back.clone()));
                                out.resp.push(RespRule::Value(back));
                            }
                            out.resp.extend(answers.iter().cloned());
                            name = new;
                            true
                        }
                    }
                }
                Rule::Type(_, from, to) => {
                    let hit = *from > 0 && *to > 0 && qtype == *from;
                    if hit {
                        qtype = *to;
                    }
                    hit
                }
                Rule::Class(_, from, to) => {
                    let hit = *from > 0 && *to > 0 && qclass == *from;
                    if hit {
                        qclass = *to;
                    }
                    hit
                }
                Rule::Ttl(_, m, min, max) => {
                    let hit = m.matches(&lower);
                    if hit {
                        out.resp.push(RespRule::Ttl(*min, *max));
                    }
                    hit
                }
                Rule::Rcode(_, m, old, new) => {
                    let hit = m.matches(&lower);
                    if hit {
                        out.resp.push(RespRule::Rcode(*old, *new));
                    }
                    hit
                }
                // Done whenever usable: it acts on the response.
                Rule::Cname(_, t) => {
                    let usable = t.usable();
                    if usable {
                        out.resp.push(RespRule::Cname(t.clone()));
                    }
                    usable
                }
                Rule::Edns0 {
                    kind,
                    action,
                    revert,
                    ..
                } => {
                    let v4 = match env.peer.ip() {
                        std::net::IpAddr::V4(_) => true,
                        std::net::IpAddr::V6(a) => a.to_ipv4_mapped().is_some(),
                    };
                    // The option's code and data; `None`: a variable with no value
                    // (the rule is skipped before the OPT is touched).
                    let wanted: Option<(u16, Vec<u8>)> = match kind {
                        Edns0Kind::Local(code, data) => Some((*code, data.clone())),
                        Edns0Kind::Nsid => Some((3, Vec::new())),
                        Edns0Kind::Subnet(a, b) => Some((8, ecs_data(env.peer.ip(), *a, *b))),
                        Edns0Kind::Var(code, var) => {
                            let data = match var.as_str() {
                                "{qname}" => Some(name.clone().into_bytes()),
                                "{qtype}" => Some(qtype.to_be_bytes().to_vec()),
                                "{client_ip}" => ip_wire(v4, env.peer.ip()),
                                "{server_ip}" => ip_wire(v4, env.local.ip()),
                                "{client_port}" => Some(env.peer.port().to_be_bytes().to_vec()),
                                "{server_port}" => Some(env.local.port().to_be_bytes().to_vec()),
                                "{protocol}" => Some(env.proto.as_str().as_bytes().to_vec()),
                                // No plugin before *rewrite* publishes metadata.
                                _ => None,
                            };
                            data.map(|d| (*code, d))
                        }
                    };
                    match wanted {
                        None => false,
                        Some((code, data)) => {
                            let opts = out.opt.get_or_insert_with(start_opts);
                            edns0_apply(opts, kind, *action, *revert, code, data, &mut out.resp)
                        }
                    }
                }
            };
            if !done {
                continue;
            }
            if !is_domain_name(&name) || Name::parse(&name).is_none() {
                out.invalid = Some(format!("invalid name after rewrite: {name}"));
                return out;
            }
            if rule.mode() == Mode::Stop {
                out.stopped = true;
                break;
            }
        }
        if (name.as_str(), qtype, qclass) != (orig.0.as_str(), orig.1, orig.2) || out.opt.is_some()
        {
            out.question = Some((name, qtype, qclass));
        }
        out
    }

    /// Request hook: the query the plugins after this one see. A query a `cname`
    /// rule applies to parks, to wrap the plugins after this one.
    pub fn serve(&self, ctx: &mut Ctx<'_>) -> Flow {
        match self.rewrite_request(ctx) {
            Ok(false) => Flow::Next,
            Ok(true) => Flow::Park,
            Err(text) => Flow::Return(Self::failed(text)),
        }
    }

    fn failed(text: String) -> Status {
        Status {
            rcode: 2,
            err: Some(PluginError {
                plugin: "rewrite",
                kind: ErrorKind::Upstream(text.into()),
            }),
        }
    }

    /// The parked half: the query rewritten again (the chain resumes on the
    /// client's message), the plugins after this one, then the `cname` rules on
    /// their reply. The other response rules follow in [`Self::respond`].
    pub async fn serve_async(&self, ctx: &mut Ctx<'_>, next: Next<'_>) -> Flow {
        // A query a wrapping plugin before this one runs on is rewritten already.
        if ctx.orig.is_none() {
            if let Err(text) = self.rewrite_request(ctx) {
                return Flow::Return(Self::failed(text));
            }
        }
        let st = next.run(ctx).await;
        if ctx.written && self.cname_targets(ctx).await.is_err() {
            // miekg cannot pack a CNAME whose new target is not fully
            // qualified: the write fails and nothing is sent.
            ctx.written = false;
            return Flow::Return(Status::rcode(0));
        }
        Flow::Return(st)
    }

    /// CoreDNS `cnameTargetRuleWithReqState.RewriteResponse`: the first CNAME of
    /// the reply (authority, answer, then additional section) whose target a
    /// `cname` rule maps is pointed at the new target, which is looked up through
    /// the server with the query's (rewritten) type; the answer becomes the
    /// answer's CNAMEs up to that one and the lookup's answer, with its TC bit.
    /// Rules are tried last first, as the reverter runs response rules. `Err`:
    /// the new target is not fully qualified (the reply cannot be sent).
    async fn cname_targets(&self, ctx: &mut Ctx<'_>) -> Result<(), ()> {
        let orig_msg = ctx.orig.unwrap_or(ctx.req.msg);
        let Verdict::Query(orig) = parse_query(orig_msg) else {
            return Ok(());
        };
        let rules: Vec<CnameTarget> = self
            .apply(&orig, &Env::of(ctx))
            .resp
            .into_iter()
            .filter_map(|r| match r {
                RespRule::Cname(t) => Some(t),
                _ => None,
            })
            .collect();
        let mut full = Vec::new();
        match MsgIndex::parse(ctx.resp) {
            Some(idx) if idx.rrs.iter().any(|r| r.rtype == 5) => {
                crate::wire::index::expand(ctx.resp, &idx, &mut full);
            }
            _ => return Ok(()),
        }
        let Some(idx) = MsgIndex::parse(&full) else {
            return Ok(());
        };
        let mut found = None;
        'records: for sec in [2u8, 1, 3] {
            for rr in idx.section(sec).filter(|r| r.rtype == 5) {
                let rd = rr.rdata();
                let target = match Name::read(&full, rd.start) {
                    Ok((t, end)) if end == rd.end => t,
                    _ => continue,
                };
                let mut t = String::new();
                target.write_presentation(&mut t);
                for rule in rules.iter().rev() {
                    if let Some(to) = rule.map(&t) {
                        found = Some((target, to));
                        break 'records;
                    }
                }
            }
        }
        let Some((from, to)) = found else {
            return Ok(());
        };
        if !to.ends_with('.') {
            return Err(());
        }
        let Some(to) = Name::parse(&to) else {
            crate::clog::error(&format!("upstream lookup failed: invalid name {to}"));
            return Ok(());
        };
        let depth = ctx.st.depth + 1;
        let reply = match crate::server::reentry::prepare(ctx, &to, ctx.req.qtype, depth) {
            Ok(lookup) => lookup.run().await,
            Err(_) => {
                crate::clog::error("upstream lookup failed: no full server is running");
                return Ok(());
            }
        };
        let Some(up) = reply else {
            crate::clog::error("upstream lookup returned nil");
            return Ok(());
        };
        if let Some(m) = with_new_target(&full, &idx, &from, &to, &up) {
            *ctx.resp = m;
        }
        Ok(())
    }

    /// Rewrites `ctx.req` into the context's spare buffer (the original stays in
    /// `ctx.orig`); `Err` with CoreDNS's text when the new name is not a name.
    /// `Ok(true)`: a `cname` rule applies to the query's reply.
    pub fn rewrite_request(&self, ctx: &mut Ctx<'_>) -> Result<bool, String> {
        let a = self.apply(&ctx.req, &Env::of(ctx));
        if let Some(text) = a.invalid {
            return Err(text);
        }
        let cname = a.resp.iter().any(|r| matches!(r, RespRule::Cname(_)));
        let Some((name, qtype, qclass)) = a.question else {
            return Ok(cname);
        };
        let Some(wire) = Name::parse(&name) else {
            return Err(format!("invalid name after rewrite: {name}"));
        };
        let Some(spare) = ctx.spare.take() else {
            return Ok(cname);
        };
        let (msg, compressed, question_end) =
            (ctx.req.msg, ctx.req.compressed, ctx.req.question_end);
        // A message with compression pointers is written out plain first: the
        // records after the question may point into it.
        let mut plain = Vec::new();
        let base: &[u8] = if compressed {
            match MsgIndex::parse(msg) {
                Some(idx) => {
                    crate::wire::index::expand(msg, &idx, &mut plain);
                    &plain
                }
                None => msg,
            }
        } else {
            msg
        };
        let qend = first_question_end(base).unwrap_or(question_end);
        spare.clear();
        spare.extend_from_slice(&base[..HEADER_LEN]);
        spare.extend_from_slice(wire.wire());
        spare.extend_from_slice(&qtype.to_be_bytes());
        spare.extend_from_slice(&qclass.to_be_bytes());
        match &a.opt {
            None => spare.extend_from_slice(&base[qend.min(base.len())..]),
            Some(opts) => {
                // The records as they are, the OPT (the last one, as miekg's
                // `IsEdns0` finds it) with the rules' options; one added at the
                // end when the query had none (UDP size 4096, no flags).
                let Some(idx) = MsgIndex::parse(base) else {
                    return Ok(cname);
                };
                let opt_at = idx
                    .rrs
                    .iter()
                    .rposition(|r| r.section == 3 && r.rtype == 41);
                let rdata = options_wire(opts);
                let write_opt = |out: &mut Vec<u8>, class: u16, ttl: u32| {
                    out.push(0);
                    out.extend_from_slice(&41u16.to_be_bytes());
                    out.extend_from_slice(&class.to_be_bytes());
                    out.extend_from_slice(&ttl.to_be_bytes());
                    out.extend_from_slice(&u16::try_from(rdata.len()).unwrap_or(0).to_be_bytes());
                    out.extend_from_slice(&rdata);
                };
                for (i, rr) in idx.rrs.iter().enumerate() {
                    if Some(i) == opt_at {
                        write_opt(spare, rr.class, rr.ttl);
                    } else {
                        spare.extend_from_slice(&base[rr.start as usize..rr.end as usize]);
                    }
                }
                if opt_at.is_none() {
                    write_opt(spare, 4096, 0);
                    let ar = hdr::counts(spare)[3];
                    hdr::set_count(spare, 3, ar.saturating_add(1));
                }
            }
        }
        let spare: &[u8] = spare;
        if let Verdict::Query(new) = parse_query(spare) {
            ctx.orig = Some(msg);
            // An OPT a rule added sets the size replies are cut to (CoreDNS's
            // `Size()` reads the request as rewritten).
            if ctx.st.udp_size.is_none() {
                ctx.st.udp_size = new.opt.map(|o| o.udp_size);
            }
            ctx.req = new;
        }
        Ok(cname)
    }

    /// Response hook: CoreDNS's `ResponseReverter` over the written reply (or the
    /// error reply it writes itself when the plugins after it wrote none).
    pub fn respond(&self, ctx: &mut Ctx<'_>, st: &mut Status) {
        let orig_msg = ctx.orig.unwrap_or(ctx.req.msg);
        let Verdict::Query(orig) = parse_query(orig_msg) else {
            return;
        };
        let a = self.apply(&orig, &Env::of(ctx));
        if a.invalid.is_some() || (!a.stopped && a.resp.is_empty()) {
            return;
        }
        if !client_write(st.rcode) {
            // CoreDNS writes the error reply itself (through the reverter) and
            // returns success; a reply already written stays the one sent.
            if !ctx.written {
                let mut b = ctx.reply();
                b.set_rcode((st.rcode & 0xf) as u8);
                b.finish();
                crate::server::scrub::size_and_do(ctx.resp, &ctx.req, None);
                ctx.written = true;
            }
            st.rcode = 0;
        } else if !ctx.written {
            return;
        }
        let qend = orig.question_end;
        let question = &orig_msg[HEADER_LEN..qend];
        if !revert(ctx.resp, ctx.scratch, question, &a.resp) {
            // miekg cannot pack an extended rcode without an OPT: nothing is sent.
            ctx.written = false;
            ctx.resp.clear();
            return;
        }
        self.echo_reverted_opt(ctx, &a.resp);
    }

    /// CoreDNS reverts `edns0 ... revert` options in the request too while the
    /// reply is written, so a reply without an OPT gets the client's options
    /// echoed, not the rewritten ones: the OPT is added here from the reverted
    /// options (the server's scrub then finds it).
    fn echo_reverted_opt(&self, ctx: &mut Ctx<'_>, rules: &[RespRule]) {
        let reverts = rules
            .iter()
            .any(|r| matches!(r, RespRule::Edns0Remove(_) | RespRule::Edns0Restore(..)));
        let Some(opt) = ctx.req.opt else { return };
        if !reverts || reply_has_opt(ctx.resp) {
            return;
        }
        // The scrub's own echo, on the query with its options reverted.
        let options = edns0_revert(opt.rdata, rules, usize::from(ctx.req.counts[2]));
        let mut req = ctx.req.clone();
        req.opt = Some(crate::wire::Opt {
            rdata: &options,
            ..opt
        });
        crate::server::scrub::size_and_do(ctx.resp, &req, ctx.st.udp_size);
    }
}

/// The reply `full` (names in full, indexed by `idx`) with the answer's CNAMEs
/// up to the first pointing at `from`, that one pointing at `to`, then the
/// answer records of `up`; TC as `up` has it. `None` if `up` does not parse.
fn with_new_target(
    full: &[u8],
    idx: &MsgIndex,
    from: &Name,
    to: &Name,
    up: &[u8],
) -> Option<Vec<u8>> {
    let uidx = MsgIndex::parse(up)?;
    let mut upf = Vec::new();
    crate::wire::index::expand(up, &uidx, &mut upf);
    let uidx = MsgIndex::parse(&upf)?;
    let mut out = full[..idx.question_end].to_vec();
    let mut counts = [0u16; 3];
    for rr in idx.section(1).filter(|r| r.rtype == 5) {
        let rd = rr.rdata();
        let hit = Name::read(full, rd.start).is_ok_and(|(t, _)| t == *from);
        if hit {
            out.extend_from_slice(&full[rr.start as usize..rd.start - 2]);
            out.extend_from_slice(&(to.wire().len() as u16).to_be_bytes());
            out.extend_from_slice(to.wire());
        } else {
            out.extend_from_slice(&full[rr.start as usize..rr.end as usize]);
        }
        counts[0] += 1;
        if hit {
            break;
        }
    }
    for rr in uidx.section(1) {
        out.extend_from_slice(&upf[rr.start as usize..rr.end as usize]);
        counts[0] += 1;
    }
    for sec in [2u8, 3] {
        for rr in idx.section(sec) {
            out.extend_from_slice(&full[rr.start as usize..rr.end as usize]);
            counts[usize::from(sec) - 1] += 1;
        }
    }
    for (i, n) in counts.into_iter().enumerate() {
        hdr::set_count(&mut out, i + 1, n);
    }
    let tc = hdr::flags(up) & crate::wire::flags::TC;
    let f = (hdr::flags(&out) & !crate::wire::flags::TC) | tc;
    hdr::set_flags(&mut out, f);
    Some(out)
}

/// Whether the reply's additional section holds an OPT.
fn reply_has_opt(m: &[u8]) -> bool {
    MsgIndex::parse(m).is_some_and(|idx| idx.rrs.iter().any(|r| r.section == 3 && r.rtype == 41))
}

/// One `edns0` rule on the query's options (CoreDNS's `Rewrite` of the local,
/// variable, NSID and subnet rules); whether it counts as a rewrite.
fn edns0_apply(
    opts: &mut Vec<(u16, Vec<u8>)>,
    kind: &Edns0Kind,
    action: Edns0Action,
    revert: bool,
    code: u16,
    data: Vec<u8>,
    resp: &mut Vec<RespRule>,
) -> bool {
    if action == Edns0Action::Unset {
        opts.retain(|(c, _)| *c != code);
        return true;
    }
    let typed = TYPED_OPTIONS.contains(&code);
    // Which options the rule looks at: `EDNS0_LOCAL` ones of its code, or the
    // NSID/subnet typed ones.
    let mine = |c: u16| match kind {
        Edns0Kind::Local(..) | Edns0Kind::Var(..) => c == code && !typed,
        Edns0Kind::Nsid | Edns0Kind::Subnet(..) => c == code,
    };
    if let Some(i) = opts.iter().position(|(c, _)| mine(*c)) {
        match action {
            Edns0Action::Replace | Edns0Action::Set => {
                if revert {
                    // miekg leaves the code of an NSID or ECS option it unpacked at
                    // 0, and CoreDNS keys the restore on it: it restores nothing.
                    let key = if typed { 0 } else { code };
                    resp.push(RespRule::Edns0Restore(key, opts[i].1.clone()));
                }
                opts[i].1 = data;
                return true;
            }
            // The variable and subnet rules stop at an option already there; the
            // literal and NSID rules append another.
            _ if matches!(kind, Edns0Kind::Var(..) | Edns0Kind::Subnet(..)) => return false,
            _ => {}
        }
    }
    if matches!(action, Edns0Action::Append | Edns0Action::Set) {
        opts.push((code, data));
        if revert {
            resp.push(RespRule::Edns0Remove(code));
        }
        return true;
    }
    false
}

/// The reply's OPT options after the `revert` rules: once per record of the
/// reply, in reverse rule order, each removes or restores the first option of
/// its code (CoreDNS applies them to the message for every record).
fn edns0_revert(rdata: &[u8], rules: &[RespRule], records: usize) -> Vec<u8> {
    let mut opts: Vec<(u16, Vec<u8>)> = Vec::new();
    let mut p = 0;
    while p + 4 <= rdata.len() {
        let code = u16::from_be_bytes([rdata[p], rdata[p + 1]]);
        let len = usize::from(u16::from_be_bytes([rdata[p + 2], rdata[p + 3]]));
        let Some(d) = rdata.get(p + 4..p + 4 + len) else {
            return rdata.to_vec();
        };
        opts.push((code, d.to_vec()));
        p += 4 + len;
    }
    for _ in 0..records.max(1) {
        for r in rules.iter().rev() {
            match r {
                RespRule::Edns0Remove(code) => {
                    if let Some(i) = opts.iter().position(|(c, _)| c == code) {
                        opts.remove(i);
                    }
                }
                RespRule::Edns0Restore(code, old) => {
                    if let Some(o) = opts.iter_mut().find(|(c, _)| c == code) {
                        o.1.clone_from(old);
                    }
                }
                _ => {}
            }
        }
    }
    options_wire(&opts)
}

/// EDNS options as OPT RDATA.
fn options_wire(opts: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (c, d) in opts {
        out.extend_from_slice(&c.to_be_bytes());
        out.extend_from_slice(&u16::try_from(d.len()).unwrap_or(0).to_be_bytes());
        out.extend_from_slice(d);
    }
    out
}

/// End of the first question of `m`.
fn first_question_end(m: &[u8]) -> Option<usize> {
    let (p, _) = Name::scan(m, HEADER_LEN).ok()?;
    (p + 4 <= m.len()).then_some(p + 4)
}

/// The offset of the name `Value` rules rewrite in RDATA of `rtype` (miekg's
/// `getRecordValueForRewrite`), if the type has one.
fn value_offset(rtype: u16, rdata: &[u8]) -> Option<usize> {
    match rtype {
        5 | 2 | 39 | 6 | 12 => Some(0),
        15 => Some(2),
        33 => Some(6),
        35 => {
            // NAPTR: order, preference, then flags, services and regexp strings.
            let mut p = 4;
            for _ in 0..3 {
                p += 1 + usize::from(*rdata.get(p)?);
            }
            (p < rdata.len()).then_some(p)
        }
        _ => None,
    }
}

/// Rewrites `resp` in place: the question restored to `question`, then every
/// record through `rules` in reverse order (authority, answer, additional, as
/// CoreDNS walks them), the rcode rules once per record (once with none).
/// `false` when the reply cannot be written (an extended rcode without an OPT).
fn revert(resp: &mut Vec<u8>, scratch: &mut Vec<u8>, question: &[u8], rules: &[RespRule]) -> bool {
    let Some(idx) = MsgIndex::parse(resp) else {
        return true;
    };
    // Names written out in full first (RDATA names of known types included).
    let order: Vec<usize> = (0..idx.rrs.len()).collect();
    let plain_opts = Rebuild {
        compress: false,
        limit: None,
        reserve: 0,
    };
    rebuild(resp, &idx, &order, plain_opts, scratch);
    let Some(idx) = MsgIndex::parse(scratch) else {
        return true;
    };
    let m: &[u8] = scratch;
    let mut out = Vec::with_capacity(m.len() + 64);
    out.extend_from_slice(&m[..HEADER_LEN]);
    out.extend_from_slice(question);
    hdr::set_count(&mut out, 0, 1);
    let mut opt_ttl_at: Option<usize> = None;
    for rr in &idx.rrs {
        let (start, fixed) = (rr.start as usize, rr.fixed as usize);
        let mut owner = String::new();
        let owner_name = Name::from_wire(&m[start..fixed]).ok();
        if let Some(n) = &owner_name {
            n.write_presentation(&mut owner);
        }
        let rd = rr.rdata();
        let mut rdata = m[rd.clone()].to_vec();
        let mut ttl = rr.ttl;
        for rule in rules.iter().rev() {
            match rule {
                RespRule::Name(rw) => owner = rw.apply(&owner),
                RespRule::Value(rw) => {
                    let Some(off) = value_offset(rr.rtype, &rdata) else {
                        continue;
                    };
                    let Ok((val, end)) = Name::read(&rdata, off) else {
                        continue;
                    };
                    let mut text = String::new();
                    val.write_presentation(&mut text);
                    let new = rw.apply(&text);
                    if new != text {
                        let Some(n) = Name::parse(&new) else {
                            return false;
                        };
                        let mut r = rdata[..off].to_vec();
                        r.extend_from_slice(n.wire());
                        r.extend_from_slice(&rdata[end..]);
                        rdata = r;
                    }
                }
                RespRule::Ttl(min, max) => {
                    if ttl < *min {
                        ttl = *min;
                    } else if ttl > *max {
                        ttl = *max;
                    }
                }
                RespRule::Rcode(..)
                | RespRule::Edns0Remove(_)
                | RespRule::Edns0Restore(..)
                | RespRule::Cname(_) => {}
            }
        }
        if rr.rtype == 41
            && rr.section == 3
            && rules
                .iter()
                .any(|r| matches!(r, RespRule::Edns0Remove(_) | RespRule::Edns0Restore(..)))
        {
            rdata = edns0_revert(&rdata, rules, idx.rrs.len());
        }
        match Name::parse(&owner) {
            Some(n) if owner_name.is_some() => out.extend_from_slice(n.wire()),
            // miekg cannot pack a name an answer rule made invalid: no reply.
            None if owner_name.is_some() => return false,
            _ => out.extend_from_slice(&m[start..fixed]),
        }
        out.extend_from_slice(&rr.rtype.to_be_bytes());
        out.extend_from_slice(&rr.class.to_be_bytes());
        if rr.rtype == 41 && rr.section == 3 {
            opt_ttl_at = Some(out.len());
        }
        out.extend_from_slice(&ttl.to_be_bytes());
        out.extend_from_slice(&u16::try_from(rdata.len()).unwrap_or(0).to_be_bytes());
        out.extend_from_slice(&rdata);
    }
    // Message-level rules: once per record, in reverse rule order.
    let rcode_rules: Vec<(u16, u16)> = rules
        .iter()
        .rev()
        .filter_map(|r| match r {
            RespRule::Rcode(o, n) => Some((*o, *n)),
            _ => None,
        })
        .collect();
    let mut rcode = idx.full_rcode(m);
    for _ in 0..idx.rrs.len().max(1) {
        let before = rcode;
        for (o, n) in &rcode_rules {
            if rcode == *o {
                rcode = *n;
            }
        }
        if rcode == before {
            break;
        }
    }
    hdr::set_rcode(&mut out, (rcode & 0xf) as u8);
    // miekg's Pack writes the extended rcode into the OPT from the message's
    // rcode whatever a TTL rule made of that field, and cannot pack one without
    // an OPT.
    match opt_ttl_at {
        Some(at) => out[at] = (rcode >> 4) as u8,
        None if rcode > 0xf => return false,
        None => {}
    }
    *resp = out;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        match setup(&mut Dispenser::from_text("Corefile", text)) {
            Ok(_) => "ok".into(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn setup_errors_as_coredns_words_them() {
        let p = |m: &str| format!("plugin/rewrite: {m}");
        for (text, want) in [
            ("rewrite name a.example.org b.example.org", "ok".to_owned()),
            ("rewrite continue name exact a.org b.org", "ok".into()),
            (
                "rewrite stop {\n name regex (.*)\\.old\\.org {1}.new.org\n answer auto\n}",
                "ok".into(),
            ),
            (
                "rewrite name suffix .old. .new. answer auto answer value (.*) {1}",
                "ok".into(),
            ),
            ("rewrite type HINFO A", "ok".into()),
            ("rewrite class CH IN", "ok".into()),
            ("rewrite ttl a.org 30-300", "ok".into()),
            ("rewrite ttl regex .* -30", "ok".into()),
            ("rewrite rcode a.org NXDOMAIN 5", "ok".into()),
            ("rewrite rcode suffix .org notimpl refused", "ok".into()),
            ("rewrite", p("no rule type specified for rewrite")),
            (
                "rewrite continue",
                p("continue rule must begin with a rule type"),
            ),
            ("rewrite stop", p("stop rule must begin with a rule type")),
            ("rewrite bogus a b", p("invalid rule type \"bogus\"")),
            (
                "rewrite continue bogus a b",
                p("invalid rule type \"continue\""),
            ),
            (
                "rewrite answer name a b",
                p("response rewrites must begin with a name rule"),
            ),
            ("rewrite name a", p("too few arguments for a name rule")),
            (
                "rewrite name wrong a b",
                p(
                    "name rule supports only exact, prefix, suffix, substring, and regex name matching, received: wrong",
                ),
            ),
            (
                "rewrite name regex ( b",
                p("invalid regex matching pattern: ("),
            ),
            (
                "rewrite name regex a(.*) {1}{2}.b",
                p(
                    "the rewrite regex pattern ({1}{2}.b) uses more subexpressions than its corresponding matching regex pattern (a(.*))",
                ),
            ),
            (
                "rewrite name exact a b answer",
                p("invalid arguments for exact rule"),
            ),
            (
                "rewrite name prefix a b c d",
                p(
                    "exceeded the number of arguments for a non-answer rule argument for prefix rule",
                ),
            ),
            (
                "rewrite name prefix a b answer bogus",
                p("invalid type \"bogus\" for answer rule for prefix rule"),
            ),
            (
                "rewrite name prefix a b answer name x",
                p("name answer rule for prefix rule: 2 arguments required"),
            ),
            (
                "rewrite name prefix a b answer auto answer name x y",
                p("auto name answer rule cannot be combined with explicit name anwer rules"),
            ),
            (
                "rewrite name regex a b answer value ( y",
                p("value answer rule for regex rule: invalid regex matching pattern: ("),
            ),
            (
                "rewrite type HINFO",
                p("type rules must have exactly two arguments"),
            ),
            ("rewrite type BOGUS A", p("invalid type \"BOGUS\"")),
            ("rewrite type none A", p("invalid type \"NONE\"")),
            ("rewrite class IN XX", p("invalid class \"XX\"")),
            (
                "rewrite ttl a.org",
                p("too few (1) arguments for a ttl rule"),
            ),
            ("rewrite ttl a.org x", p("invalid TTL 'x' for a ttl rule")),
            ("rewrite ttl a.org -", p("invalid TTL '-' for a ttl rule")),
            (
                "rewrite ttl a.org 30-10",
                p("invalid TTL '30-10' for a ttl rule"),
            ),
            ("rewrite ttl a.org +5", p("invalid TTL '+5' for a ttl rule")),
            ("rewrite ttl a b c d", p("invalid TTL '' for a ttl rule")),
            (
                "rewrite ttl wrong a.org 5",
                p(
                    "ttl rule supports only exact, prefix, suffix, substring, and regex name matching",
                ),
            ),
            (
                "rewrite ttl regex ( 5",
                p("invalid regex pattern in a ttl rule: ("),
            ),
            (
                "rewrite rcode a.org NXDOMAIN",
                p("too few (2) arguments for a rcode rule"),
            ),
            (
                "rewrite rcode a.org 24 5",
                p("invalid matching RCODE '24' for a rcode rule"),
            ),
            (
                "rewrite rcode a.org 3 BADVERS",
                p("invalid replacement RCODE 'BADVERS' for a rcode rule"),
            ),
            ("rewrite edns0 local set 0xffee abc", "ok".into()),
            ("rewrite edns0 local set 65518 0x61 revert", "ok".into()),
            ("rewrite edns0 local append 0xffee {client_ip}", "ok".into()),
            (
                "rewrite edns0 local replace 0xffee {forward/upstream}",
                "ok".into(),
            ),
            ("rewrite edns0 nsid set", "ok".into()),
            ("rewrite edns0 subnet set 24 56 revert", "ok".into()),
            ("rewrite edns0 subnet unset", "ok".into()),
            ("rewrite edns0 local unset 0xffee", "ok".into()),
            (
                "rewrite edns0 local",
                p("too few arguments for an EDNS0 rule"),
            ),
            ("rewrite edns0 local Add 1 2", p("invalid action: \"add\"")),
            (
                "rewrite edns0 bogus set 1 2",
                p("invalid rule type \"bogus\""),
            ),
            (
                "rewrite edns0 local set 1",
                p("EDNS0 local rules require three or four args"),
            ),
            (
                "rewrite edns0 local set 0xfffff a",
                p("strconv.ParseUint: parsing \"0xfffff\": value out of range"),
            ),
            (
                "rewrite edns0 local set x1 a",
                p("strconv.ParseUint: parsing \"x1\": invalid syntax"),
            ),
            (
                "rewrite edns0 local set 1 0xabc",
                p("encoding/hex: odd length hex string"),
            ),
            (
                "rewrite edns0 local set 1 0xzz",
                p("encoding/hex: invalid byte: U+007A 'z'"),
            ),
            (
                "rewrite edns0 local set 1 {bogus}",
                p("unsupported variable name \"{bogus}\""),
            ),
            (
                "rewrite edns0 nsid set x",
                p("EDNS0 NSID rules can accept no more than one arg"),
            ),
            (
                "rewrite edns0 subnet set 24",
                p("EDNS0 subnet rules require three or four args"),
            ),
            (
                "rewrite edns0 subnet set 33 56",
                p("invalid IPv4 bit mask length 33"),
            ),
            (
                "rewrite edns0 subnet set 24 129",
                p("invalid IPv6 bit mask length 129"),
            ),
            (
                "rewrite edns0 local unset",
                p("local unset action requires exactly two arguments"),
            ),
            (
                "rewrite edns0 nsid unset x",
                p("nsid unset action requires exactly one argument"),
            ),
            (
                "rewrite edns0 subnet unset 1 2",
                p("subnet unset action requires exactly one argument"),
            ),
            (
                "rewrite cname a.org",
                p("too few (1) arguments for a cname rule"),
            ),
            (
                "rewrite cname exact a.org b.org c",
                p("too few (4) arguments for a cname rule"),
            ),
            (
                "rewrite cname wild a.org b.org",
                p("unknown cname rewrite type: wild"),
            ),
            (
                "rewrite cname regex ( b.org",
                p(
                    "invalid cname rewrite regex pattern: error parsing regexp: missing closing ): `(`",
                ),
            ),
        ] {
            assert_eq!(err(text), want, "{text}");
        }
    }

    #[test]
    fn cname_rule_targets() {
        let rule = |text: &str| {
            let args: Vec<String> = text.split_whitespace().map(String::from).collect();
            match new_rule(&args) {
                Ok(Rule::Cname(_, t)) => t,
                other => panic!("{text}: {other:?}"),
            }
        };
        let cases = [
            ("cname a.org b.org", "a.org.", Some("b.org.")),
            ("cname exact A.ORG. b.org", "a.org.", Some("b.org.")),
            ("cname exact a.org b.org", "x.a.org.", None),
            ("cname prefix www. cdn.", "www.a.org.", Some("cdn.a.org.")),
            (
                "cname suffix .old.test. .new.test.",
                "h.old.test.",
                Some("h.new.test."),
            ),
            ("cname suffix .old.test. .new.test.", "h.other.", None),
            (
                "cname substring old new",
                "h.old.test.",
                Some("h.new.test."),
            ),
            (
                "cname regex (.*)\\.old\\.test\\. {1}.new.test.",
                "h.old.test.",
                Some("h.new.test."),
            ),
        ];
        for (text, target, want) in cases {
            assert_eq!(rule(text).map(target).as_deref(), want, "{text} {target}");
        }
    }

    /// (the question as rewritten, response rules, a stop rule matched, the error).
    type Seen = (Option<(String, u16, u16)>, usize, bool, Option<String>);

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut m = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(Name::parse(name).expect("name").wire());
        m.extend_from_slice(&qtype.to_be_bytes());
        m.extend_from_slice(&1u16.to_be_bytes());
        m
    }

    fn applied(rules: &str, name: &str, qtype: u16) -> Seen {
        let c = setup(&mut Dispenser::from_text("Corefile", rules)).expect("rules");
        let rw = Rewrite::new(&c);
        let q = query(name, qtype);
        let Verdict::Query(req) = parse_query(&q) else {
            panic!("query");
        };
        let env = Env {
            peer: "192.0.2.9:5300".parse().expect("addr"),
            local: "192.0.2.53:53".parse().expect("addr"),
            proto: crate::chain::Proto::Udp,
        };
        let a = rw.apply(&req, &env);
        (a.question, a.resp.len(), a.stopped, a.invalid)
    }

    #[test]
    fn request_rules_as_coredns_runs_them() {
        let q = |n: &str| Some((n.to_owned(), 1u16, 1u16));
        // Exact: lower-cased name, response names mapped back.
        assert_eq!(
            applied(
                "rewrite name a.example.org b.example.org",
                "A.Example.ORG",
                1
            ),
            (q("b.example.org."), 2, true, None)
        );
        // Prefix FROM is made a name: `foo` is `foo.`, which matches the label only.
        assert_eq!(
            applied("rewrite name prefix foo bar", "foobar.org", 1).0,
            None
        );
        assert_eq!(
            applied("rewrite name prefix foo bar", "foo.org", 1).0,
            q("bar.org.")
        );
        assert_eq!(
            applied(
                "rewrite name suffix .old.org. .new.org. answer auto",
                "a.old.org",
                1
            ),
            (q("a.new.org."), 2, true, None)
        );
        assert_eq!(
            applied("rewrite name substring old new", "a.older.org", 1).0,
            None,
            "substring `old.`"
        );
        assert_eq!(
            applied("rewrite name substring old new", "a.old.org", 1).0,
            q("a.new.org.")
        );
        assert_eq!(
            applied("rewrite name substring old.org new.net", "a.old.org", 1).0,
            q("a.new.net.")
        );
        assert_eq!(
            applied(
                "rewrite name regex (.*)-(.*)\\.x\\.org {2}.{1}.y.org answer auto",
                "a-b.x.org",
                1
            ),
            (q("b.a.y.org."), 2, true, None)
        );
        // Without `answer auto` a regex rule has no response rules.
        assert_eq!(
            applied("rewrite name regex (.*)\\.x\\.org {1}.y.org", "a.x.org", 1).1,
            0
        );
        // Stop after the first match; continue goes on, each rule on the name so far.
        assert_eq!(
            applied(
                "rewrite name a.org b.org\nrewrite name b.org c.org",
                "a.org",
                1
            )
            .0,
            q("b.org.")
        );
        assert_eq!(
            applied(
                "rewrite continue name a.org b.org\nrewrite name b.org c.org",
                "a.org",
                1
            ),
            (q("c.org."), 4, true, None)
        );
        assert_eq!(
            applied("rewrite type HINFO A", "a.org", 13).0,
            Some(("a.org.".into(), 1, 1))
        );
        assert_eq!(
            applied("rewrite class IN CH", "a.org", 1).0,
            Some(("a.org.".into(), 1, 3))
        );
        assert_eq!(
            applied("rewrite ttl a.org 5", "A.org", 1),
            (None, 1, true, None)
        );
        assert_eq!(
            applied("rewrite continue ttl a.org 5", "A.org", 1),
            (None, 1, false, None)
        );
        assert_eq!(
            applied("rewrite name substring a.org x..y", "a.org", 1)
                .3
                .as_deref(),
            Some("invalid name after rewrite: x..y.")
        );
    }

    /// The query's options as the rules left them, and the response rules.
    type Opts = (Option<Vec<(u16, Vec<u8>)>>, usize);

    fn opts(rules: &str, name: &str) -> Opts {
        let c = setup(&mut Dispenser::from_text("Corefile", rules)).expect("rules");
        let rw = Rewrite::new(&c);
        let q = query(name, 1);
        let Verdict::Query(req) = parse_query(&q) else {
            panic!("query");
        };
        let env = Env {
            peer: "192.0.2.9:5300".parse().expect("addr"),
            local: "192.0.2.53:53".parse().expect("addr"),
            proto: crate::chain::Proto::Udp,
        };
        let a = rw.apply(&req, &env);
        (a.opt, a.resp.len())
    }

    #[test]
    fn edns0_rules_on_the_query() {
        assert_eq!(
            opts("rewrite edns0 local set 0xffee abc", "a.org"),
            (Some(vec![(0xffee, b"abc".to_vec())]), 0)
        );
        assert_eq!(
            opts("rewrite edns0 local set 0xffee 0x0a0b revert", "a.org"),
            (Some(vec![(0xffee, vec![10, 11])]), 1)
        );
        assert_eq!(
            opts("rewrite edns0 local set 0xffee {client_ip}", "a.org").0,
            Some(vec![(0xffee, vec![192, 0, 2, 9])])
        );
        assert_eq!(
            opts("rewrite edns0 local set 0xffee {server_port}", "a.org").0,
            Some(vec![(0xffee, vec![0, 53])])
        );
        assert_eq!(
            opts("rewrite edns0 local set 0xffee {qname}", "A.org").0,
            Some(vec![(0xffee, b"A.org.".to_vec())])
        );
        // No metadata is published before *rewrite*: the rule is skipped, no OPT.
        assert_eq!(
            opts("rewrite edns0 local set 0xffee {forward/upstream}", "a.org"),
            (None, 0)
        );
        // ECS from the client: family 1, /24, scope 0, three octets.
        assert_eq!(
            opts("rewrite edns0 subnet set 24 56", "a.org").0,
            Some(vec![(8, vec![0, 1, 24, 0, 192, 0, 2])])
        );
        assert_eq!(
            opts("rewrite edns0 subnet set 20 56", "a.org").0,
            Some(vec![(8, vec![0, 1, 20, 0, 192, 0, 0])])
        );
        assert_eq!(
            opts("rewrite edns0 nsid set", "a.org").0,
            Some(vec![(3, vec![])])
        );
        // replace without the option: nothing replaced, but the OPT is added.
        assert_eq!(
            opts("rewrite edns0 local replace 0xffee x", "a.org"),
            (Some(vec![]), 0)
        );
        // append twice: two options.
        assert_eq!(
            opts(
                "rewrite continue edns0 local append 0xffee x\nrewrite edns0 local append 0xffee y",
                "a.org"
            )
            .0,
            Some(vec![(0xffee, b"x".to_vec()), (0xffee, b"y".to_vec())])
        );
    }

    #[test]
    fn edns0_revert_on_the_reply() {
        let mut rd = Vec::new();
        for (c, d) in [
            (0xffeeu16, &b"x"[..]),
            (10, &b"12345678"[..]),
            (0xffee, &b"y"[..]),
        ] {
            rd.extend_from_slice(&c.to_be_bytes());
            rd.extend_from_slice(&(d.len() as u16).to_be_bytes());
            rd.extend_from_slice(d);
        }
        // One record: the first 0xffee option goes; with two, both.
        let one = edns0_revert(&rd, &[RespRule::Edns0Remove(0xffee)], 1);
        assert_eq!(one, rd[5..].to_vec());
        let two = edns0_revert(&rd, &[RespRule::Edns0Remove(0xffee)], 2);
        assert_eq!(two, rd[5..17].to_vec());
        let back = edns0_revert(&rd, &[RespRule::Edns0Restore(0xffee, b"z".to_vec())], 3);
        assert_eq!(&back[4..5], b"z");
        assert_eq!(&back[back.len() - 1..], b"y");
    }

    #[test]
    fn remap_and_regex_rewriters() {
        let r = StrRewrite::Remap("b.org.".into(), "a.org.".into());
        assert_eq!(r.apply("b.org."), "a.org.");
        assert_eq!(r.apply("www.b.org."), "www.a.org.");
        assert_eq!(r.apply("xb.org."), "xb.org.");
        assert_eq!(
            r.apply("B.org."),
            "B.org.",
            "case-sensitive, as Go's strings"
        );
        let re = crate::goregex::compile("^(.*)\\.y\\.org\\.$").expect("re");
        let r = StrRewrite::Regex(re, "{1}.x.org.".into());
        assert_eq!(r.apply("a.y.org."), "a.x.org.");
        assert_eq!(r.apply("a.z.org."), "a.z.org.");
    }

    #[test]
    fn ttl_rules_leave_the_extended_rcode_as_miekg_packs_it() {
        // BADCOOKIE (23): 7 in the header, 1 in the OPT's top TTL octet.
        let mut m = vec![0x12, 0x34, 0x81, 0x87, 0, 1, 0, 0, 0, 0, 0, 1];
        m.extend_from_slice(Name::parse("a.org.").expect("n").wire());
        m.extend_from_slice(&[0, 1, 0, 1]);
        m.extend_from_slice(&[0, 0, 41, 16, 0, 1, 0, 0, 0, 0, 0]);
        let mut q = Vec::new();
        q.extend_from_slice(Name::parse("a.org.").expect("n").wire());
        q.extend_from_slice(&[0, 1, 0, 1]);
        let mut scratch = Vec::new();
        assert!(revert(&mut m, &mut scratch, &q, &[RespRule::Ttl(30, 300)]));
        let idx = MsgIndex::parse(&m).expect("parses");
        assert_eq!(idx.full_rcode(&m), 23);
        assert_eq!(idx.rrs[0].ttl, 0x0100_0000 | 300);
        // A minimum that reaches the top octet does not make an extended rcode.
        let mut m2 = m.clone();
        m2[3] = 0x80;
        let at = m2.len() - 6;
        m2[at] = 0;
        assert!(revert(
            &mut m2,
            &mut scratch,
            &q,
            &[RespRule::Ttl(1 << 24, 1 << 25)]
        ));
        let idx = MsgIndex::parse(&m2).expect("parses");
        assert_eq!(idx.full_rcode(&m2), 0);
    }

    #[test]
    fn response_reverted_record_by_record() {
        // A reply for `b.org.` with a CNAME to `c.b.org.`, an A for it, an SOA in
        // authority, and an OPT.
        let mut m = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 2, 0, 1, 0, 1];
        let w = |m: &mut Vec<u8>, n: &str| m.extend_from_slice(Name::parse(n).expect("n").wire());
        w(&mut m, "b.org.");
        m.extend_from_slice(&[0, 1, 0, 1]);
        w(&mut m, "b.org.");
        m.extend_from_slice(&[0, 5, 0, 1, 0, 0, 1, 0, 0, 9]);
        w(&mut m, "c.b.org.");
        w(&mut m, "c.b.org.");
        m.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 10, 0, 4, 192, 0, 2, 1]);
        w(&mut m, "b.org.");
        m.extend_from_slice(&[0, 6, 0, 1, 0, 0, 0, 60, 0, 39]);
        w(&mut m, "ns.b.org.");
        w(&mut m, "h.b.org.");
        m.extend_from_slice(&[0; 20]);
        m.extend_from_slice(&[0, 0, 41, 16, 0, 0, 0, 0x80, 0, 0, 0]);
        let back = StrRewrite::Remap("b.org.".into(), "a.org.".into());
        let rules = [
            RespRule::Name(back.clone()),
            RespRule::Value(back),
            RespRule::Ttl(30, 100),
            RespRule::Rcode(0, 3),
        ];
        let mut q = Vec::new();
        w(&mut q, "A.org.");
        q.extend_from_slice(&[0, 1, 0, 1]);
        let mut scratch = Vec::new();
        assert!(revert(&mut m, &mut scratch, &q, &rules));
        let idx = MsgIndex::parse(&m).expect("parses");
        let name_at = |at: usize| {
            let (n, _) = Name::read(&m, at).expect("name");
            n.to_string()
        };
        assert_eq!(name_at(HEADER_LEN), "A.org.");
        let rr = &idx.rrs;
        assert_eq!(name_at(rr[0].start as usize), "a.org.");
        assert_eq!(name_at(rr[0].rdata().start), "c.a.org.");
        assert_eq!((rr[0].ttl, rr[1].ttl, rr[2].ttl), (100, 30, 60));
        assert_eq!(name_at(rr[1].start as usize), "c.a.org.");
        assert_eq!(name_at(rr[2].rdata().start), "ns.a.org.", "SOA MNAME");
        let rname = rr[2].rdata().start + Name::parse("ns.a.org.").expect("n").len();
        assert_eq!(name_at(rname), "h.b.org.", "SOA RNAME is not a value");
        // The OPT's TTL field is clamped like any record's (CoreDNS).
        assert_eq!(rr[3].ttl, 100);
        assert_eq!(hdr::rcode(&m), 3);
    }
}
