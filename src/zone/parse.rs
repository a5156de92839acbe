//! The zone-file parser (RFC 1035 §5): entries from the [lexer](super::lex),
//! `$ORIGIN`, `$TTL`, `$INCLUDE` (relative to the including file, nested up to
//! 7 deep), `$GENERATE`, owner/TTL/class defaults as miekg/dns applies them
//! (an explicit TTL becomes the default until a `$TTL`), and RDATA in
//! presentation or RFC 3597 `\# LEN HEX` form. Every record goes to a sink as
//! wire data; errors carry file, line and column (miekg's text:
//! `FILE: dns: MSG: "TOKEN" at line: L:C`).
//!
//! CoreDNS: `plugin/file/file.go` `Parse` over miekg/dns `ZoneParser`.

use std::fmt;
use std::path::Path;

use super::lex::{LexError, Lexer, Tok};
use super::rdata;
use crate::wire::types;

/// Deepest `$INCLUDE` nesting (miekg `maxIncludeDepth`).
pub const MAX_INCLUDE_DEPTH: u8 = 7;

/// What went wrong in a zone file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// `(` without `)`.
    UnbalancedParen,
    /// `)` without `(`.
    ExtraClosingParen,
    /// `"` without its closing quote.
    UnterminatedQuote,
    /// The file is larger than 4 GiB.
    TooLarge,
    /// An owner name that is not a domain name.
    BadOwner,
    /// A record with its owner omitted before any owner was given.
    NoOwner,
    /// A token where a TTL was expected.
    NotATtl,
    /// No TTL on the record, no `$TTL` and no earlier TTL.
    MissingTtl,
    /// The type is unknown (use `TYPEn`).
    UnknownType,
    /// A record type without RDATA.
    MissingRdata,
    /// A malformed RDATA field.
    BadRdata {
        /// Record type.
        rtype: u16,
        /// Which field.
        field: &'static str,
    },
    /// A type ringdns reads only in RFC 3597 form.
    UnsupportedPresentation(u16),
    /// RDATA longer than 65535 octets.
    RdataTooLong(usize),
    /// Tokens left after the RDATA.
    Garbage,
    /// A malformed `$` directive.
    BadDirective(&'static str),
    /// An unknown `$` directive.
    UnknownDirective,
    /// `$INCLUDE` nested too deep.
    IncludeTooDeep,
    /// An `$INCLUDE` file could not be opened.
    IncludeOpen {
        /// The path as opened.
        path: String,
        /// The OS error (Go's text).
        err: String,
    },
    /// A bad `$GENERATE` range or template.
    BadGenerate(&'static str),
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnbalancedParen => f.write_str("unbalanced brace"),
            Self::ExtraClosingParen => f.write_str("extra closing brace"),
            Self::UnterminatedQuote => f.write_str("unterminated quoted string"),
            Self::TooLarge => f.write_str("zone file larger than 4 GiB"),
            Self::BadOwner => f.write_str("bad owner name"),
            Self::NoOwner => f.write_str("no owner name and no previous owner"),
            Self::NotATtl => f.write_str("not a TTL"),
            Self::MissingTtl => f.write_str("missing TTL with no previous value"),
            Self::UnknownType => f.write_str("unknown RR type"),
            Self::MissingRdata => f.write_str("missing RDATA"),
            Self::BadRdata { rtype, field } => {
                let mut t = String::new();
                types::type_to_string(*rtype, &mut t);
                write!(f, "bad {t} {field}")
            }
            Self::UnsupportedPresentation(t) => {
                let mut s = String::new();
                types::type_to_string(*t, &mut s);
                write!(f, "{s} is only read in RFC 3597 form (\\# LENGTH HEX)")
            }
            Self::RdataTooLong(n) => write!(f, "RDATA of {n} octets is longer than 65535"),
            Self::Garbage => f.write_str("garbage after rdata"),
            Self::BadDirective(d) => write!(f, "bad {d} directive"),
            Self::UnknownDirective => f.write_str("unknown $ directive"),
            Self::IncludeTooDeep => f.write_str("too deeply nested $INCLUDE"),
            Self::IncludeOpen { path, err } => write!(f, "failed to open `{path}': {err}"),
            Self::BadGenerate(what) => write!(f, "bad $GENERATE {what}"),
        }
    }
}

/// A zone-file error with its location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// File as given (the including file for a failed `$INCLUDE`).
    pub file: String,
    /// Line (1-based).
    pub line: u32,
    /// Column (1-based).
    pub col: u32,
    /// The offending token (cut to 64 characters).
    pub token: String,
    /// What is wrong.
    pub kind: ErrorKind,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: dns: {}: {:?} at line: {}:{}",
            self.file, self.kind, self.token, self.line, self.col
        )
    }
}

impl std::error::Error for ParseError {}

/// One parsed record, in wire form.
#[derive(Debug)]
pub struct Record<'a> {
    /// Owner name, uncompressed wire, case as written.
    pub owner: &'a [u8],
    /// Type.
    pub rtype: u16,
    /// Class.
    pub class: u16,
    /// TTL.
    pub ttl: u32,
    /// RDATA.
    pub rdata: &'a [u8],
    /// File it came from.
    pub file: &'a str,
    /// Line it started on.
    pub line: u32,
}

/// Parser state shared across `$INCLUDE`s.
struct Ctx<'f, E> {
    sink: &'f mut dyn FnMut(&Record<'_>) -> Result<(), E>,
    rdata: Vec<u8>,
    toks: Vec<Tok>,
}

/// Per-file state (an `$INCLUDE` starts a fresh one, as miekg's sub-parser).
struct FileState {
    origin: Vec<u8>,
    /// `(ttl, set by $TTL)`.
    default_ttl: Option<(u32, bool)>,
    /// miekg's header TTL left over from the previous record.
    last_ttl: u32,
    owner: Option<Vec<u8>>,
    depth: u8,
}

fn cut(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(&b[..b.len().min(64)]).into_owned();
    if b.len() > 64 { s + "..." } else { s }
}

/// Parses the zone file at `path` with initial origin `origin` (wire form),
/// `$INCLUDE` allowed; each record goes to `sink`.
pub fn parse_file<E: From<ParseError>>(
    path: &str,
    origin: &[u8],
    sink: &mut dyn FnMut(&Record<'_>) -> Result<(), E>,
) -> Result<(), E> {
    let text = std::fs::read(path).map_err(|e| {
        E::from(ParseError {
            file: path.to_owned(),
            line: 0,
            col: 0,
            token: String::new(),
            kind: ErrorKind::IncludeOpen {
                path: path.to_owned(),
                err: crate::config::go_err(&e),
            },
        })
    })?;
    parse_bytes(&text, path, origin, sink)
}

/// Parses zone text; `file` names it in errors and anchors relative `$INCLUDE`s.
pub fn parse_bytes<E: From<ParseError>>(
    text: &[u8],
    file: &str,
    origin: &[u8],
    sink: &mut dyn FnMut(&Record<'_>) -> Result<(), E>,
) -> Result<(), E> {
    let mut cx = Ctx {
        sink,
        rdata: Vec::with_capacity(512),
        toks: Vec::with_capacity(16),
    };
    let mut st = FileState {
        origin: origin.to_vec(),
        default_ttl: None,
        last_ttl: 0,
        owner: None,
        depth: 0,
    };
    parse_text(&mut cx, &mut st, text, file)
}

fn parse_text<E: From<ParseError>>(
    cx: &mut Ctx<'_, E>,
    st: &mut FileState,
    text: &[u8],
    file: &str,
) -> Result<(), E> {
    if u32::try_from(text.len()).is_err() {
        return Err(E::from(ParseError {
            file: file.to_owned(),
            line: 0,
            col: 0,
            token: String::new(),
            kind: ErrorKind::TooLarge,
        }));
    }
    let mut lx = Lexer::new(text);
    let mut toks = std::mem::take(&mut cx.toks);
    let res = loop {
        let blank = match lx.next_entry(&mut toks) {
            Ok(Some(b)) => b,
            Ok(None) => break Ok(()),
            Err(LexError {
                kind,
                line,
                col,
                token,
            }) => {
                break Err(E::from(ParseError {
                    file: file.to_owned(),
                    line,
                    col,
                    token,
                    kind,
                }));
            }
        };
        if let Err(e) = entry(cx, st, &lx, &toks, blank, file) {
            break Err(e);
        }
    };
    cx.toks = toks;
    res
}

fn perr(file: &str, lx: &Lexer<'_>, t: &Tok, kind: ErrorKind) -> ParseError {
    ParseError {
        file: file.to_owned(),
        line: t.line,
        col: t.col,
        token: cut(lx.text(t)),
        kind,
    }
}

fn entry<E: From<ParseError>>(
    cx: &mut Ctx<'_, E>,
    st: &mut FileState,
    lx: &Lexer<'_>,
    toks: &[Tok],
    blank: bool,
    file: &str,
) -> Result<(), E> {
    let first = toks[0];
    let ftext = lx.text(&first);
    if !blank && !first.quoted && ftext.first() == Some(&b'$') {
        return directive(cx, st, lx, toks, file);
    }
    let mut i = 0;
    if !blank {
        let mut w = Vec::with_capacity(ftext.len() + st.origin.len() + 2);
        if name_to_wire(ftext, &st.origin, &mut w).is_err() || first.quoted {
            return Err(E::from(perr(file, lx, &first, ErrorKind::BadOwner)));
        }
        st.owner = Some(w);
        i = 1;
    }
    let Some(owner) = st.owner.take() else {
        return Err(E::from(perr(file, lx, &first, ErrorKind::NoOwner)));
    };
    let res = record(cx, st, lx, toks, i, &owner, !blank, file);
    st.owner = Some(owner);
    res
}

#[allow(clippy::too_many_arguments)]
fn record<E: From<ParseError>>(
    cx: &mut Ctx<'_, E>,
    st: &mut FileState,
    lx: &Lexer<'_>,
    toks: &[Tok],
    mut i: usize,
    owner: &[u8],
    had_owner: bool,
    file: &str,
) -> Result<(), E> {
    let mut class = 1u16;
    let mut ttl = st.default_ttl.map_or(st.last_ttl, |d| d.0);
    let (mut saw_ttl, mut saw_class) = (false, false);
    let rtype = loop {
        let Some(t) = toks.get(i) else {
            let last = toks[toks.len() - 1];
            if had_owner && toks.len() == 1 {
                // A line with only an owner: miekg wants a TTL next and names the
                // owner, at its last column (CoreDNS's template tests expect
                // `dns: not a TTL: "test.example." at line: 1:13`).
                let mut at = last;
                at.col += last.end.saturating_sub(last.start).saturating_sub(1);
                return Err(E::from(perr(file, lx, &at, ErrorKind::NotATtl)));
            }
            return Err(E::from(perr(file, lx, &last, ErrorKind::UnknownType)));
        };
        let text = lx.text(t);
        if !t.quoted {
            if let Some(rt) = type_code(text) {
                if had_owner && i == 1 && st.default_ttl.is_none() {
                    return Err(E::from(perr(file, lx, t, ErrorKind::MissingTtl)));
                }
                break rt;
            }
            if !saw_class {
                if let Some(c) = class_code(text) {
                    class = c;
                    saw_class = true;
                    i += 1;
                    continue;
                }
            }
            if !saw_ttl {
                if let Some(v) = parse_ttl(text) {
                    ttl = v;
                    saw_ttl = true;
                    if !st.default_ttl.is_some_and(|d| d.1) {
                        st.default_ttl = Some((v, false));
                    }
                    i += 1;
                    continue;
                }
            }
        }
        let kind = if saw_ttl || saw_class || text.first().is_some_and(u8::is_ascii_alphabetic) {
            ErrorKind::UnknownType
        } else {
            ErrorKind::NotATtl
        };
        return Err(E::from(perr(file, lx, t, kind)));
    };
    st.last_ttl = ttl;
    let rd = &toks[i + 1..];
    let type_tok = toks[i];
    if rd.is_empty() {
        return Err(E::from(perr(file, lx, &type_tok, ErrorKind::MissingRdata)));
    }
    cx.rdata.clear();
    rdata::parse(rtype, lx, rd, &st.origin, &mut cx.rdata)
        .map_err(|(kind, at)| E::from(perr(file, lx, &rd[at.min(rd.len() - 1)], kind)))?;
    if cx.rdata.len() > 65535 {
        return Err(E::from(perr(
            file,
            lx,
            &type_tok,
            ErrorKind::RdataTooLong(cx.rdata.len()),
        )));
    }
    let rec = Record {
        owner,
        rtype,
        class,
        ttl,
        rdata: &cx.rdata,
        file,
        line: toks[0].line,
    };
    (cx.sink)(&rec)
}

fn directive<E: From<ParseError>>(
    cx: &mut Ctx<'_, E>,
    st: &mut FileState,
    lx: &Lexer<'_>,
    toks: &[Tok],
    file: &str,
) -> Result<(), E> {
    let d = lx.text(&toks[0]);
    let bad =
        |name: &'static str, t: &Tok| E::from(perr(file, lx, t, ErrorKind::BadDirective(name)));
    if d.eq_ignore_ascii_case(b"$TTL") {
        let Some(t) = toks.get(1).filter(|t| !t.quoted) else {
            return Err(bad("$TTL", &toks[0]));
        };
        let Some(v) = parse_ttl(lx.text(t)) else {
            return Err(bad("$TTL", t));
        };
        if let Some(g) = toks.get(2) {
            return Err(E::from(perr(file, lx, g, ErrorKind::Garbage)));
        }
        st.default_ttl = Some((v, true));
        Ok(())
    } else if d.eq_ignore_ascii_case(b"$ORIGIN") {
        let Some(t) = toks.get(1).filter(|t| !t.quoted) else {
            return Err(bad("$ORIGIN", &toks[0]));
        };
        let mut w = Vec::new();
        if name_to_wire(lx.text(t), &st.origin, &mut w).is_err() {
            return Err(bad("$ORIGIN", t));
        }
        if let Some(g) = toks.get(2) {
            return Err(E::from(perr(file, lx, g, ErrorKind::Garbage)));
        }
        st.origin = w;
        Ok(())
    } else if d.eq_ignore_ascii_case(b"$INCLUDE") {
        include(cx, st, lx, toks, file)
    } else if d.eq_ignore_ascii_case(b"$GENERATE") {
        generate(cx, st, lx, toks, file)
    } else {
        Err(E::from(perr(
            file,
            lx,
            &toks[0],
            ErrorKind::UnknownDirective,
        )))
    }
}

/// `$GENERATE START-STOP[/STEP] TEMPLATE…`: each `$` of the template (with
/// `${OFFSET,WIDTH,BASE}` modifiers) becomes the counter; the expanded line is
/// parsed as an entry of the current file (miekg `generate.go`).
fn generate<E: From<ParseError>>(
    cx: &mut Ctx<'_, E>,
    st: &mut FileState,
    lx: &Lexer<'_>,
    toks: &[Tok],
    file: &str,
) -> Result<(), E> {
    let bad =
        |t: &Tok, what: &'static str| E::from(perr(file, lx, t, ErrorKind::BadGenerate(what)));
    let Some(rt) = toks.get(1) else {
        return Err(bad(&toks[0], "range"));
    };
    let range = super::generate::Range::parse(lx.text(rt)).ok_or_else(|| bad(rt, "range"))?;
    if toks.len() < 4 {
        return Err(bad(&toks[0], "template"));
    }
    let mut template = Vec::new();
    for t in &toks[2..] {
        if !template.is_empty() {
            template.push(b' ');
        }
        if t.quoted {
            template.push(b'"');
        }
        template.extend_from_slice(lx.text(t));
        if t.quoted {
            template.push(b'"');
        }
    }
    let line = toks[0].line;
    let mut text = Vec::new();
    let mut sub = Vec::new();
    for i in range.iter() {
        text.clear();
        super::generate::expand(&template, range, i, &mut text).map_err(|w| bad(&toks[2], w))?;
        let mut glx = Lexer::new(&text);
        match glx.next_entry(&mut sub) {
            Ok(Some(_)) => {}
            Ok(None) => continue,
            Err(e) => {
                return Err(E::from(ParseError {
                    file: file.to_owned(),
                    line,
                    col: e.col,
                    token: e.token,
                    kind: e.kind,
                }));
            }
        }
        for t in &mut sub {
            t.line = line;
        }
        let saved = st.owner.take();
        let r = entry(cx, st, &glx, &sub, false, file);
        st.owner = saved;
        r?;
    }
    Ok(())
}

fn include<E: From<ParseError>>(
    cx: &mut Ctx<'_, E>,
    st: &mut FileState,
    lx: &Lexer<'_>,
    toks: &[Tok],
    file: &str,
) -> Result<(), E> {
    let Some(pt) = toks.get(1) else {
        return Err(E::from(perr(
            file,
            lx,
            &toks[0],
            ErrorKind::BadDirective("$INCLUDE"),
        )));
    };
    let mut origin = st.origin.clone();
    if let Some(o) = toks.get(2) {
        let mut w = Vec::new();
        if name_to_wire(lx.text(o), &st.origin, &mut w).is_err() {
            return Err(E::from(perr(
                file,
                lx,
                o,
                ErrorKind::BadDirective("$INCLUDE"),
            )));
        }
        origin = w;
    }
    if let Some(g) = toks.get(3) {
        return Err(E::from(perr(file, lx, g, ErrorKind::Garbage)));
    }
    if st.depth >= MAX_INCLUDE_DEPTH {
        return Err(E::from(perr(file, lx, pt, ErrorKind::IncludeTooDeep)));
    }
    let token = String::from_utf8_lossy(lx.text(pt)).into_owned();
    let path = if Path::new(&token).is_absolute() {
        token.clone()
    } else {
        let dir = Path::new(file).parent().unwrap_or(Path::new(""));
        dir.join(&token).to_string_lossy().into_owned()
    };
    let text = std::fs::read(&path).map_err(|e| {
        let shown = if path == token {
            token.clone()
        } else {
            format!("{token}' as `{path}")
        };
        E::from(perr(
            file,
            lx,
            pt,
            ErrorKind::IncludeOpen {
                path: shown,
                err: format!("open {path}: {}", crate::config::go_err(&e)),
            },
        ))
    })?;
    let mut sub = FileState {
        origin,
        default_ttl: st.default_ttl,
        last_ttl: 0,
        owner: None,
        depth: st.depth + 1,
    };
    parse_text(cx, &mut sub, &text, &path)
}

/// One record parsed from text, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedRecord {
    /// Owner name, uncompressed wire.
    pub owner: Vec<u8>,
    /// Type.
    pub rtype: u16,
    /// Class.
    pub class: u16,
    /// TTL.
    pub ttl: u32,
    /// RDATA.
    pub rdata: Vec<u8>,
}

enum FirstOnly {
    Parse(ParseError),
    Done(OwnedRecord),
}

impl From<ParseError> for FirstOnly {
    fn from(e: ParseError) -> Self {
        Self::Parse(e)
    }
}

/// miekg `NewRR`: the first record of `text` (origin the root, TTL 3600 when
/// none is given), `None` when the text holds no record. Errors print as
/// miekg's for a parser without a file name (`dns: bad A A: "x" at line: 1:7`);
/// see [`ParseError::text_without_file`].
pub fn parse_rr(text: &str) -> Result<Option<OwnedRecord>, ParseError> {
    let mut text = text.as_bytes().to_vec();
    if text.last() != Some(&b'\n') {
        text.push(b'\n');
    }
    let mut cx = Ctx {
        sink: &mut |r: &Record<'_>| {
            Err(FirstOnly::Done(OwnedRecord {
                owner: r.owner.to_vec(),
                rtype: r.rtype,
                class: r.class,
                ttl: r.ttl,
                rdata: r.rdata.to_vec(),
            }))
        },
        rdata: Vec::with_capacity(64),
        toks: Vec::with_capacity(8),
    };
    let mut st = FileState {
        origin: vec![0],
        default_ttl: Some((3600, false)),
        last_ttl: 3600,
        owner: None,
        depth: 0,
    };
    match parse_text(&mut cx, &mut st, &text, "") {
        Ok(()) => Ok(None),
        Err(FirstOnly::Done(r)) => Ok(Some(r)),
        Err(FirstOnly::Parse(e)) => Err(e),
    }
}

impl ParseError {
    /// miekg's text for an error of a parser without a file name.
    pub fn text_without_file(&self) -> String {
        format!(
            "dns: {}: {:?} at line: {}:{}",
            self.kind, self.token, self.line, self.col
        )
    }
}

/// miekg `stringToTTL`: digits with optional `s m h d w` units (any case).
pub fn parse_ttl(t: &[u8]) -> Option<u32> {
    if t.is_empty() {
        return None;
    }
    let (mut s, mut i) = (0u64, 0u64);
    for &c in t {
        let mult = match c {
            b's' | b'S' => 1,
            b'm' | b'M' => 60,
            b'h' | b'H' => 3600,
            b'd' | b'D' => 86_400,
            b'w' | b'W' => 604_800,
            b'0'..=b'9' => {
                i = i.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
                continue;
            }
            _ => return None,
        };
        s = s.checked_add(i.checked_mul(mult)?)?;
        i = 0;
    }
    u32::try_from(s.checked_add(i)?).ok()
}

/// A class mnemonic (`IN`, `CH`, `CLASSn`, …).
pub fn class_code(t: &[u8]) -> Option<u16> {
    let mut up = [0u8; 12];
    if t.len() > up.len() {
        return None;
    }
    for (d, s) in up.iter_mut().zip(t) {
        *d = s.to_ascii_uppercase();
    }
    match &up[..t.len()] {
        b"IN" => Some(1),
        b"CS" => Some(2),
        b"CH" => Some(3),
        b"HS" => Some(4),
        b"NONE" => Some(254),
        b"ANY" => Some(255),
        u if u.starts_with(b"CLASS") && u.len() > 5 => {
            std::str::from_utf8(&u[5..]).ok()?.parse().ok()
        }
        _ => None,
    }
}

/// A type mnemonic or `TYPEn`; the common ones without a table scan.
pub fn type_code(t: &[u8]) -> Option<u16> {
    let mut up = [0u8; 16];
    if t.is_empty() || t.len() > up.len() || !t[0].is_ascii_alphabetic() {
        return None;
    }
    for (d, s) in up.iter_mut().zip(t) {
        *d = s.to_ascii_uppercase();
    }
    let u = &up[..t.len()];
    let fast = match u {
        b"A" => 1,
        b"NS" => 2,
        b"CNAME" => 5,
        b"SOA" => 6,
        b"PTR" => 12,
        b"MX" => 15,
        b"TXT" => 16,
        b"AAAA" => 28,
        b"SRV" => 33,
        b"DS" => 43,
        b"RRSIG" => 46,
        b"NSEC" => 47,
        b"DNSKEY" => 48,
        _ => 0,
    };
    if fast != 0 {
        return Some(fast);
    }
    // Meta types are not record types.
    let rt = types::type_from_str(std::str::from_utf8(u).ok()?)?;
    (!matches!(rt, 41 | 249 | 250 | 251 | 252 | 253 | 254 | 255)).then_some(rt)
}

/// Presentation name → uncompressed wire form appended to `out`. `@` is the
/// origin; a name without a final unescaped dot is relative to `origin`
/// (wire form). `\X` and `\DDD` escapes; labels of 1–63 octets, 255 in all.
pub(crate) fn name_to_wire(t: &[u8], origin: &[u8], out: &mut Vec<u8>) -> Result<(), ()> {
    let start = out.len();
    if t == b"@" {
        out.extend_from_slice(origin);
        return Ok(());
    }
    if t == b"." {
        out.push(0);
        return Ok(());
    }
    if t.is_empty() {
        return Err(());
    }
    let mut label_at = out.len();
    out.push(0);
    let mut i = 0;
    let mut absolute = false;
    while i < t.len() {
        let c = t[i];
        if c == b'.' {
            let l = out.len() - label_at - 1;
            if l == 0 || l > 63 {
                out.truncate(start);
                return Err(());
            }
            out[label_at] = l as u8;
            i += 1;
            if i == t.len() {
                absolute = true;
                break;
            }
            label_at = out.len();
            out.push(0);
            continue;
        }
        let b = if c == b'\\' {
            let d = &t[i + 1..];
            if d.len() >= 3 && d[..3].iter().all(u8::is_ascii_digit) {
                let v = u32::from(d[0] - b'0') * 100
                    + u32::from(d[1] - b'0') * 10
                    + u32::from(d[2] - b'0');
                i += 4;
                match u8::try_from(v) {
                    Ok(v) => v,
                    Err(_) => {
                        out.truncate(start);
                        return Err(());
                    }
                }
            } else if let Some(&x) = d.first() {
                i += 2;
                x
            } else {
                out.truncate(start);
                return Err(());
            }
        } else {
            i += 1;
            c
        };
        out.push(b);
    }
    if absolute {
        out.push(0);
    } else {
        let l = out.len() - label_at - 1;
        if l == 0 || l > 63 {
            out.truncate(start);
            return Err(());
        }
        out[label_at] = l as u8;
        if origin.is_empty() {
            out.truncate(start);
            return Err(());
        }
        out.extend_from_slice(origin);
    }
    if out.len() - start > 255 {
        out.truncate(start);
        return Err(());
    }
    Ok(())
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
