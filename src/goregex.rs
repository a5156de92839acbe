//! Go's regular expressions (`regexp.Compile`, RE2 syntax as Go's
//! `regexp/syntax` parses it with its Perl flags) on the `regex` crate.
//!
//! A Corefile pattern (*errors* `consolidate`, *auto*'s file names) must be
//! accepted or refused exactly as CoreDNS does, with Go's error text, and must
//! match what Go matches. The two syntaxes differ in both directions: Go refuses
//! `a**` and counts above 1000, treats `a{,3}` as literal text and has `\Q…\E`
//! and octal escapes; its `\d`, `\s`, `\w` and `\b` are ASCII. So the pattern is
//! parsed here as Go parses it, reporting Go's errors, and written out in the
//! `regex` crate's syntax with the same meaning: every class spelled as explicit
//! ranges, every repetition's operand grouped, lazy repetition explicit.
//!
//! Go: `src/regexp/syntax/parse.go`, `perl_groups.go`.

use std::fmt::Write as _;

/// Go's `*syntax.Error`: `error parsing regexp: CODE: `EXPR``.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoError {
    /// Go's `ErrorCode` text.
    pub code: &'static str,
    /// The offending part of the pattern.
    pub expr: String,
}

impl std::fmt::Display for GoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "error parsing regexp: {}: `{}`", self.code, self.expr)
    }
}

impl std::error::Error for GoError {}

const INTERNAL: &str = "regexp/syntax: internal error";
const INVALID_CHAR_RANGE: &str = "invalid character class range";
const INVALID_ESCAPE: &str = "invalid escape sequence";
const INVALID_NAMED_CAPTURE: &str = "invalid named capture";
const INVALID_PERL_OP: &str = "invalid or unsupported Perl syntax";
const INVALID_REPEAT_OP: &str = "invalid nested repetition operator";
const INVALID_REPEAT_SIZE: &str = "invalid repeat count";
const MISSING_BRACKET: &str = "missing closing ]";
const MISSING_PAREN: &str = "missing closing )";
const MISSING_REPEAT_ARGUMENT: &str = "missing argument to repetition operator";
const TRAILING_BACKSLASH: &str = "trailing backslash at end of expression";
const UNEXPECTED_PAREN: &str = "unexpected )";
const NESTING_DEPTH: &str = "expression nests too deeply";
const LARGE: &str = "expression too large";

/// Go's `maxRepeat`: the largest count, and the largest product of nested counts.
const MAX_REPEAT: u64 = 1000;
/// Go's `maxHeight`, applied here to group nesting.
const MAX_DEPTH: usize = 1000;
/// Go's `maxSize` in bytes of instructions (128 MiB).
const SIZE_LIMIT: usize = 128 << 20;

fn err(code: &'static str, expr: &str) -> GoError {
    GoError {
        code,
        expr: expr.to_owned(),
    }
}

/// Compiles a Go pattern: Go's error when Go refuses it.
pub fn compile(pattern: &str) -> Result<regex::Regex, GoError> {
    let rust = translate(pattern)?;
    regex::RegexBuilder::new(&rust)
        .size_limit(SIZE_LIMIT)
        .nest_limit(u32::try_from(MAX_DEPTH * 4).unwrap_or(u32::MAX))
        .build()
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(_) => err(LARGE, pattern),
            // The nest limit (our groups and wrappers); anything else would be a
            // translation this module got wrong: Go's internal-error code.
            e if e.to_string().contains("nested parentheses") => err(NESTING_DEPTH, pattern),
            _ => err(INTERNAL, pattern),
        })
}

/// Go's flags that change meaning inside a pattern (`OneLine` is `!m`).
#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct Flags {
    i: bool,
    m: bool,
    s: bool,
    u: bool,
}

enum Item {
    /// Something a repetition can apply to, with the largest product of counted
    /// repetitions (`{n,m}`) on any path inside it.
    Atom(String, u64),
    /// A flag change (`(?i)`): nothing to repeat.
    Flags(String),
}

struct Frame {
    alts: Vec<Vec<Item>>,
    cur: Vec<Item>,
    open: String,
    saved: Flags,
}

impl Frame {
    fn new(open: String, saved: Flags) -> Self {
        Self {
            alts: Vec::new(),
            cur: Vec::new(),
            open,
            saved,
        }
    }

    fn render(self) -> (String, u64) {
        let mut out = self.open;
        let mut prod = 1;
        for (n, alt) in self.alts.into_iter().chain([self.cur]).enumerate() {
            if n > 0 {
                out.push('|');
            }
            for it in alt {
                match it {
                    Item::Atom(s, p) => {
                        out.push_str(&s);
                        prod = prod.max(p);
                    }
                    Item::Flags(s) => out.push_str(&s),
                }
            }
        }
        (out, prod)
    }
}

/// A character class as Go builds it: ranges of code points, plus Unicode
/// classes passed on by name.
#[derive(Default)]
struct Class {
    ranges: Vec<(u32, u32)>,
    named: Vec<String>,
}

impl Class {
    fn add(&mut self, lo: u32, hi: u32) {
        self.ranges.push((lo, hi));
    }

    /// Adds a Perl or POSIX group (ASCII ranges). Negated under `(?i)`, Go folds
    /// the group before negating it; the `regex` crate folds the whole class
    /// afterwards, which agrees only when the negated set is closed under case
    /// folding, so the fold closure is negated here.
    fn add_group(&mut self, g: &[(u32, u32)], negated: bool, fold: bool) {
        if !negated {
            self.ranges.extend_from_slice(g);
            return;
        }
        let mut set: Vec<u32> = g.iter().flat_map(|&(lo, hi)| lo..=hi).collect();
        if fold {
            for c in set.clone() {
                let b = c as u8;
                if b.is_ascii_alphabetic() {
                    set.push(u32::from(b ^ 0x20));
                }
                match b.to_ascii_lowercase() {
                    b's' => set.push(0x17F),
                    b'k' => set.push(0x212A),
                    _ => {}
                }
            }
        }
        set.sort_unstable();
        set.dedup();
        let mut next = 0u32;
        for c in set {
            if next < c {
                self.add(next, c - 1);
            }
            next = c + 1;
        }
        self.add(next, 0x10_FFFF);
    }

    /// The class in the `regex` crate's syntax (surrogates, which Go's ranges
    /// may hold but no string contains, left out).
    fn render(&self, negated: bool) -> String {
        let mut out = String::from(if negated { "[^" } else { "[" });
        let mut any = false;
        for &(lo, hi) in &self.ranges {
            let lo = if (0xD800..=0xDFFF).contains(&lo) {
                0xE000
            } else {
                lo
            };
            let hi = if (0xD800..=0xDFFF).contains(&hi) {
                0xD7FF
            } else {
                hi
            };
            if lo > hi {
                continue;
            }
            any = true;
            let _ = write!(out, "\\x{{{lo:X}}}-\\x{{{hi:X}}}");
        }
        for n in &self.named {
            any = true;
            out.push_str(n);
        }
        if !any {
            // Matches nothing (or, negated, anything).
            return if negated {
                r"[\x{0}-\x{10FFFF}]".to_owned()
            } else {
                r"[^\x{0}-\x{10FFFF}]".to_owned()
            };
        }
        out.push(']');
        out
    }
}

const DIGIT: &[(u32, u32)] = &[(0x30, 0x39)];
const SPACE_PERL: &[(u32, u32)] = &[(0x09, 0x0A), (0x0C, 0x0D), (0x20, 0x20)];
const WORD: &[(u32, u32)] = &[(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)];

/// Go's `perlGroup`: `\d`, `\s`, `\w` (ASCII) and their negations.
fn perl_group(c: char) -> Option<(&'static [(u32, u32)], bool)> {
    Some(match c {
        'd' => (DIGIT, false),
        'D' => (DIGIT, true),
        's' => (SPACE_PERL, false),
        'S' => (SPACE_PERL, true),
        'w' => (WORD, false),
        'W' => (WORD, true),
        _ => return None,
    })
}

/// Go's `posixGroup` (`[:alpha:]` …, ASCII).
fn posix_group(name: &str) -> Option<&'static [(u32, u32)]> {
    Some(match name {
        "alnum" => &[(0x30, 0x39), (0x41, 0x5A), (0x61, 0x7A)],
        "alpha" => &[(0x41, 0x5A), (0x61, 0x7A)],
        "ascii" => &[(0x00, 0x7F)],
        "blank" => &[(0x09, 0x09), (0x20, 0x20)],
        "cntrl" => &[(0x00, 0x1F), (0x7F, 0x7F)],
        "digit" => DIGIT,
        "graph" => &[(0x21, 0x7E)],
        "lower" => &[(0x61, 0x7A)],
        "print" => &[(0x20, 0x7E)],
        "punct" => &[(0x21, 0x2F), (0x3A, 0x40), (0x5B, 0x60), (0x7B, 0x7E)],
        "space" => &[(0x09, 0x0D), (0x20, 0x20)],
        "upper" => &[(0x41, 0x5A)],
        "word" => WORD,
        "xdigit" => &[(0x30, 0x39), (0x41, 0x46), (0x61, 0x66)],
        _ => return None,
    })
}

fn first_char(s: &str) -> Option<char> {
    s.chars().next()
}

/// Go's `parseEscape` at `s` (which starts with `\`): the rune and the rest.
fn parse_escape(s: &str) -> Result<(u32, &str), GoError> {
    let t = &s[1..];
    let Some(c) = first_char(t) else {
        return Err(err(TRAILING_BACKSLASH, ""));
    };
    let mut t = &t[c.len_utf8()..];
    let bad = |t: &str| err(INVALID_ESCAPE, &s[..s.len() - t.len()]);
    let octal = |b: u8| (b'0'..=b'7').contains(&b);
    match c {
        '1'..='7' | '0' => {
            if c != '0' && !t.as_bytes().first().is_some_and(|&b| octal(b)) {
                return Err(bad(t));
            }
            let mut r = u32::from(c) - u32::from('0');
            for _ in 1..3 {
                match t.as_bytes().first() {
                    Some(&b) if octal(b) => {
                        r = r * 8 + u32::from(b - b'0');
                        t = &t[1..];
                    }
                    _ => break,
                }
            }
            Ok((r, t))
        }
        'x' => {
            let Some(c) = first_char(t) else {
                return Err(bad(t));
            };
            t = &t[c.len_utf8()..];
            if c == '{' {
                let mut r = 0u32;
                let mut n = 0;
                loop {
                    let Some(c) = first_char(t) else {
                        return Err(bad(t));
                    };
                    t = &t[c.len_utf8()..];
                    if c == '}' {
                        break;
                    }
                    let Some(v) = c.to_digit(16) else {
                        return Err(bad(t));
                    };
                    r = r * 16 + v;
                    if r > 0x10_FFFF {
                        return Err(bad(t));
                    }
                    n += 1;
                }
                if n == 0 {
                    return Err(bad(t));
                }
                return Ok((r, t));
            }
            let Some(c2) = first_char(t) else {
                return Err(bad(t));
            };
            t = &t[c2.len_utf8()..];
            match (c.to_digit(16), c2.to_digit(16)) {
                (Some(x), Some(y)) => Ok((x * 16 + y, t)),
                _ => Err(bad(t)),
            }
        }
        'a' => Ok((7, t)),
        'f' => Ok((0x0C, t)),
        'n' => Ok((0x0A, t)),
        'r' => Ok((0x0D, t)),
        't' => Ok((0x09, t)),
        'v' => Ok((0x0B, t)),
        c if c.is_ascii() && !c.is_ascii_alphanumeric() => Ok((u32::from(c), t)),
        _ => Err(bad(t)),
    }
}

/// Go's `parseUnicodeClass` at `s` (`\p…` or `\P…`): the class in the `regex`
/// crate's syntax and the rest. Names are the `regex` crate's (a superset of
/// Go's table names, matched loosely as Go 1.25 does).
fn parse_unicode_class(s: &str) -> Result<(String, &str), GoError> {
    let mut negated = s.as_bytes()[1] == b'P';
    let t = &s[2..];
    let (seq, mut name, rest) = match first_char(t) {
        Some('{') => {
            let Some(end) = s.find('}') else {
                return Err(err(INVALID_CHAR_RANGE, s));
            };
            (&s[..=end], &s[3..end], &s[end + 1..])
        }
        Some(c) => {
            let n = 2 + c.len_utf8();
            (&s[..n], &s[2..n], &s[n..])
        }
        None => (s, "", ""),
    };
    if let Some(n) = name.strip_prefix('^') {
        negated = !negated;
        name = n;
    }
    let plain = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ' '));
    let class = format!(r"\{}{{{name}}}", if negated { 'P' } else { 'p' });
    if !plain || regex::Regex::new(&class).is_err() {
        return Err(err(INVALID_CHAR_RANGE, seq));
    }
    Ok((class, rest))
}

/// Go's `parseClass` at `s` (which starts with `[`).
fn parse_class(s: &str, fold: bool) -> Result<(String, &str), GoError> {
    let mut t = &s[1..];
    let mut negated = false;
    if let Some(r) = t.strip_prefix('^') {
        negated = true;
        t = r;
    }
    let mut class = Class::default();
    let mut first = true;
    while t.is_empty() || !t.starts_with(']') || first {
        first = false;
        if t.len() > 2 && t.starts_with("[:") {
            if let Some(i) = t[2..].find(":]") {
                let whole = &t[..i + 4];
                let name = &t[2..i + 2];
                let (name, neg) = match name.strip_prefix('^') {
                    Some(n) => (n, true),
                    None => (name, false),
                };
                let Some(g) = posix_group(name) else {
                    return Err(err(INVALID_CHAR_RANGE, whole));
                };
                class.add_group(g, neg, fold);
                t = &t[i + 4..];
                continue;
            }
        }
        if t.starts_with("\\p") || t.starts_with("\\P") {
            let (c, rest) = parse_unicode_class(t)?;
            class.named.push(c);
            t = rest;
            continue;
        }
        if let Some(g) = t
            .strip_prefix('\\')
            .and_then(first_char)
            .and_then(perl_group)
        {
            class.add_group(g.0, g.1, fold);
            t = &t[2..];
            continue;
        }
        let rng = t;
        let (lo, rest) = class_char(t, s)?;
        t = rest;
        let mut hi = lo;
        if t.len() >= 2 && t.starts_with('-') && !t[1..].starts_with(']') {
            let (h, rest) = class_char(&t[1..], s)?;
            t = rest;
            hi = h;
            if hi < lo {
                return Err(err(INVALID_CHAR_RANGE, &rng[..rng.len() - t.len()]));
            }
        }
        class.add(lo, hi);
    }
    Ok((class.render(negated), &t[1..]))
}

/// Go's `parseClassChar`.
fn class_char<'a>(t: &'a str, whole: &str) -> Result<(u32, &'a str), GoError> {
    match first_char(t) {
        None => Err(err(MISSING_BRACKET, whole)),
        Some('\\') => parse_escape(t),
        Some(c) => Ok((u32::from(c), &t[c.len_utf8()..])),
    }
}

/// Go's `parseRepeat` at `s` (`{`): min, max (-1: none), the rest; `None` when
/// it is not a repetition (then `{` is a literal). Too big a number is -1.
fn parse_repeat(s: &str) -> Option<(i64, i64, &str)> {
    fn int(s: &str) -> Option<(i64, &str)> {
        let b = s.as_bytes();
        if !b.first().is_some_and(u8::is_ascii_digit) {
            return None;
        }
        if b.len() >= 2 && b[0] == b'0' && b[1].is_ascii_digit() {
            return None;
        }
        let n = b.iter().take_while(|c| c.is_ascii_digit()).count();
        let mut v: i64 = 0;
        for &c in &b[..n] {
            if v >= 100_000_000 {
                v = -1;
                break;
            }
            v = v * 10 + i64::from(c - b'0');
        }
        Some((v, &s[n..]))
    }
    let s = s.strip_prefix('{')?;
    let (mut min, s) = int(s)?;
    let (max, s) = match s.strip_prefix(',') {
        None => (min, s),
        Some(s) if s.starts_with('}') => (-1, s),
        Some(s) => {
            let (max, s) = int(s)?;
            if max < 0 {
                min = -1;
            }
            (max, s)
        }
    };
    let rest = s.strip_prefix('}')?;
    Some((min, max, rest))
}

fn literal(c: u32) -> String {
    match char::from_u32(c) {
        Some(ch) => regex::escape(ch.encode_utf8(&mut [0; 4])),
        None => r"[^\x{0}-\x{10FFFF}]".to_owned(),
    }
}

/// Go's `Regexp.SubexpNames` of a pattern [`compile`] accepted: one entry per
/// group in order of its opening parenthesis, index 0 the whole match, the
/// group's name or "" (the translation drops names, as the `regex` crate does
/// not allow a name twice).
pub fn subexp_names(pattern: &str) -> Vec<String> {
    let b = pattern.as_bytes();
    let mut names = vec![String::new()];
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => {
                if b.get(i + 1) == Some(&b'Q') {
                    match pattern[i + 2..].find("\\E") {
                        Some(e) => i += 2 + e + 2,
                        None => break,
                    }
                    continue;
                }
                i += 2;
            }
            b'[' => {
                i += 1;
                if b.get(i) == Some(&b'^') {
                    i += 1;
                }
                if b.get(i) == Some(&b']') {
                    i += 1;
                }
                while i < b.len() && b[i] != b']' {
                    if b[i] == b'\\' {
                        i += 1;
                    } else if b[i] == b'[' && b.get(i + 1) == Some(&b':') {
                        if let Some(e) = pattern[i + 2..].find(":]") {
                            i += 2 + e + 1;
                        }
                    }
                    i += 1;
                }
                i += 1;
            }
            b'(' => {
                if b.get(i + 1) == Some(&b'?') {
                    let rest = &pattern[i + 2..];
                    let named = rest.strip_prefix("P<").or_else(|| rest.strip_prefix('<'));
                    if let Some(n) = named.and_then(|r| r.find('>').map(|e| r[..e].to_owned())) {
                        names.push(n);
                    }
                } else {
                    names.push(String::new());
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    names
}

/// Translates a Go pattern to the `regex` crate's syntax, or Go's error.
pub fn translate(pattern: &str) -> Result<String, GoError> {
    let mut frames = vec![Frame::new(String::new(), Flags::default())];
    let mut flags = Flags::default();
    let mut t = pattern;
    let mut last_repeat: Option<&str> = None;
    while let Some(c) = first_char(t) {
        let mut repeat = None;
        let Some(frame) = frames.last_mut() else {
            break;
        };
        match c {
            '(' if t.starts_with("(?") => {
                let (open, rest) = perl_flags(t, &mut flags)?;
                match open {
                    Group::Flags(f) => {
                        if !f.is_empty() {
                            frame.cur.push(Item::Flags(f));
                        }
                    }
                    Group::Open(open, saved) => frames.push(Frame::new(open, saved)),
                }
                t = rest;
            }
            '(' => {
                frames.push(Frame::new("(".to_owned(), flags));
                t = &t[1..];
            }
            '|' => {
                let cur = std::mem::take(&mut frame.cur);
                frame.alts.push(cur);
                t = &t[1..];
            }
            ')' => {
                if frames.len() < 2 {
                    return Err(err(UNEXPECTED_PAREN, pattern));
                }
                let Some(done) = frames.pop() else {
                    return Err(err(UNEXPECTED_PAREN, pattern));
                };
                flags = done.saved;
                let (mut s, prod) = done.render();
                s.push(')');
                if let Some(f) = frames.last_mut() {
                    f.cur.push(Item::Atom(s, prod));
                }
                t = &t[1..];
            }
            '^' | '$' | '.' => {
                frame.cur.push(Item::Atom(c.to_string(), 1));
                t = &t[1..];
            }
            '[' => {
                let (s, rest) = parse_class(t, flags.i)?;
                frame.cur.push(Item::Atom(s, 1));
                t = rest;
            }
            '*' | '+' | '?' | '{' => {
                let before = t;
                let (op, after, counted) = if c == '{' {
                    match parse_repeat(t) {
                        None => {
                            frame.cur.push(Item::Atom(r"\{".to_owned(), 1));
                            t = &t[1..];
                            last_repeat = None;
                            continue;
                        }
                        Some((min, max, after)) => {
                            if min < 0
                                || min > MAX_REPEAT as i64
                                || max > MAX_REPEAT as i64
                                || (max >= 0 && min > max)
                            {
                                return Err(err(
                                    INVALID_REPEAT_SIZE,
                                    &before[..before.len() - after.len()],
                                ));
                            }
                            (
                                &before[..before.len() - after.len()],
                                after,
                                Some((min, max)),
                            )
                        }
                    }
                } else {
                    (&t[..1], &t[1..], None)
                };
                let (after, lazy) = match after.strip_prefix('?') {
                    Some(a) => (a, !flags.u),
                    None => (after, flags.u),
                };
                if let Some(lr) = last_repeat {
                    return Err(err(INVALID_REPEAT_OP, &lr[..lr.len() - after.len()]));
                }
                let missing = || {
                    err(
                        MISSING_REPEAT_ARGUMENT,
                        &before[..before.len() - after.len()],
                    )
                };
                let Some(pos) = frame.cur.iter().rposition(|i| matches!(i, Item::Atom(..))) else {
                    return Err(missing());
                };
                let Item::Atom(sub, inner) = &frame.cur[pos] else {
                    return Err(missing());
                };
                let prod = match counted {
                    Some((min, max)) => {
                        let m = u64::try_from(if max < 0 { min } else { max }).unwrap_or(0);
                        if (min >= 2 || max >= 2) && m > 0 && m.saturating_mul(*inner) > MAX_REPEAT
                        {
                            return Err(err(
                                INVALID_REPEAT_SIZE,
                                &before[..before.len() - after.len()],
                            ));
                        }
                        if m == 0 { 1 } else { m.saturating_mul(*inner) }
                    }
                    None => *inner,
                };
                let wrapped = format!("(?:{sub}){op}{}", if lazy { "?" } else { "" });
                frame.cur[pos] = Item::Atom(wrapped, prod);
                repeat = Some(before);
                t = after;
            }
            '\\' => {
                let next = t[1..].chars().next();
                let assertion = match next {
                    Some('A') => Some(r"\A"),
                    Some('z') => Some(r"\z"),
                    Some('b') => Some(r"(?-u:\b)"),
                    Some('B') => Some(r"(?-u:\B)"),
                    _ => None,
                };
                if let Some(a) = assertion {
                    frame.cur.push(Item::Atom(a.to_owned(), 1));
                    t = &t[2..];
                } else if next == Some('C') {
                    return Err(err(INVALID_ESCAPE, &t[..2]));
                } else if next == Some('Q') {
                    let body = &t[2..];
                    let (lit, rest) = body.split_once(r"\E").unwrap_or((body, ""));
                    for ch in lit.chars() {
                        frame.cur.push(Item::Atom(literal(u32::from(ch)), 1));
                    }
                    t = rest;
                } else if matches!(next, Some('p' | 'P')) {
                    let (s, rest) = parse_unicode_class(t)?;
                    frame.cur.push(Item::Atom(s, 1));
                    t = rest;
                } else if let Some((g, neg)) = next.and_then(perl_group) {
                    let mut class = Class::default();
                    class.add_group(g, false, false);
                    frame.cur.push(Item::Atom(class.render(neg), 1));
                    t = &t[2..];
                } else {
                    let (r, rest) = parse_escape(t)?;
                    frame.cur.push(Item::Atom(literal(r), 1));
                    t = rest;
                }
            }
            c => {
                frame.cur.push(Item::Atom(literal(u32::from(c)), 1));
                t = &t[c.len_utf8()..];
            }
        }
        if frames.len() > MAX_DEPTH {
            return Err(err(NESTING_DEPTH, pattern));
        }
        last_repeat = repeat;
    }
    if frames.len() != 1 {
        return Err(err(MISSING_PAREN, pattern));
    }
    let Some(top) = frames.pop() else {
        return Err(err(MISSING_PAREN, pattern));
    };
    Ok(top.render().0)
}

enum Group {
    /// `(?flags)`: the flag change in the `regex` crate's syntax.
    Flags(String),
    /// A group opens: its opening text and the flags to restore at its end.
    Open(String, Flags),
}

/// Go's `parsePerlFlags` at `s` (`(?`): named captures, flag changes and
/// non-capturing groups. `flags` is updated as Go updates `p.flags`.
fn perl_flags<'a>(s: &'a str, flags: &mut Flags) -> Result<(Group, &'a str), GoError> {
    let t = s;
    let with_p = t.len() > 4 && t.as_bytes()[2] == b'P' && t.as_bytes()[3] == b'<';
    let with_name = t.len() > 3 && t.as_bytes()[2] == b'<';
    if with_p || with_name {
        let start = if with_p { 4 } else { 3 };
        let Some(end) = t.find('>') else {
            return Err(err(INVALID_NAMED_CAPTURE, s));
        };
        let name = &t[start..end];
        if name.is_empty() || !name.chars().all(|c| c == '_' || c.is_ascii_alphanumeric()) {
            return Err(err(INVALID_NAMED_CAPTURE, &t[..=end]));
        }
        // Go allows a name twice; the `regex` crate does not, and nothing here
        // reads groups by name.
        return Ok((Group::Open("(".to_owned(), *flags), &t[end + 1..]));
    }
    let mut t = &t[2..];
    let old = *flags;
    let mut new = old;
    let mut negative = false;
    let mut saw = false;
    while let Some(c) = first_char(t) {
        t = &t[c.len_utf8()..];
        let set = !negative;
        match c {
            'i' => new.i = set,
            'm' => new.m = set,
            's' => new.s = set,
            'U' => new.u = set,
            '-' if !negative => {
                negative = true;
                saw = false;
                continue;
            }
            ':' | ')' if !negative || saw => {
                let mut on = String::new();
                let mut off = String::new();
                for (was, now, ch) in [
                    (old.i, new.i, 'i'),
                    (old.m, new.m, 'm'),
                    (old.s, new.s, 's'),
                ] {
                    if was != now {
                        if now { on.push(ch) } else { off.push(ch) }
                    }
                }
                let change = match (on.is_empty(), off.is_empty()) {
                    (true, true) => String::new(),
                    (_, true) => on,
                    _ => format!("{on}-{off}"),
                };
                *flags = new;
                if c == ':' {
                    return Ok((Group::Open(format!("(?{change}:"), old), t));
                }
                let f = if change.is_empty() {
                    String::new()
                } else {
                    format!("(?{change})")
                };
                return Ok((Group::Flags(f), t));
            }
            _ => break,
        }
        saw = true;
    }
    Err(err(INVALID_PERL_OP, &s[..s.len() - t.len()]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn go_err(p: &str) -> String {
        compile(p).err().map(|e| e.to_string()).unwrap_or_default()
    }

    /// Patterns Go refuses, with Go's exact error (Go 1.24 `regexp.Compile`).
    #[test]
    fn refused_as_go_refuses() {
        for (p, want) in [
            ("a**", "invalid nested repetition operator: `**`"),
            ("a*?*", "invalid nested repetition operator: `*?*`"),
            ("a{2}{3}", "invalid nested repetition operator: `{2}{3}`"),
            ("a++", "invalid nested repetition operator: `++`"),
            ("*", "missing argument to repetition operator: `*`"),
            ("(*)", "missing argument to repetition operator: `*`"),
            ("a|*", "missing argument to repetition operator: `*`"),
            ("(?i)*", "missing argument to repetition operator: `*`"),
            ("??", "missing argument to repetition operator: `??`"),
            ("(", "missing closing ): `(`"),
            ("a(b", "missing closing ): `a(b`"),
            ("a)", "unexpected ): `a)`"),
            ("[a", "missing closing ]: `[a`"),
            ("x[a-", "missing closing ]: `[a-`"),
            ("[z-a]", "invalid character class range: `z-a`"),
            ("[a--]", "invalid character class range: `a--`"),
            ("[[:foo:]]", "invalid character class range: `[:foo:]`"),
            (r"\pX", "invalid character class range: `\\pX`"),
            (r"\p{Foo}", "invalid character class range: `\\p{Foo}`"),
            (r"\p{L", "invalid character class range: `\\p{L`"),
            ("a{1001}", "invalid repeat count: `{1001}`"),
            ("a{2,1}", "invalid repeat count: `{2,1}`"),
            ("(a{500}){3}", "invalid repeat count: `{3}`"),
            ("((a{10}){10}){11}", "invalid repeat count: `{11}`"),
            (r"\q", "invalid escape sequence: `\\q`"),
            (r"\1", "invalid escape sequence: `\\1`"),
            (r"\8", "invalid escape sequence: `\\8`"),
            (r"\C", "invalid escape sequence: `\\C`"),
            (r"\xZZ", "invalid escape sequence: `\\xZZ`"),
            (r"\x{}", "invalid escape sequence: `\\x{}`"),
            (r"\x{110000}", "invalid escape sequence: `\\x{110000`"),
            (r"[\b]", "invalid escape sequence: `\\b`"),
            ("a\\", "trailing backslash at end of expression: ``"),
            ("(?x)", "invalid or unsupported Perl syntax: `(?x`"),
            ("(?", "invalid or unsupported Perl syntax: `(?`"),
            ("(?i-)", "invalid or unsupported Perl syntax: `(?i-)`"),
            ("(?--i)", "invalid or unsupported Perl syntax: `(?--`"),
            ("(?P=n)", "invalid or unsupported Perl syntax: `(?P`"),
            ("(?P<n", "invalid named capture: `(?P<n`"),
            ("(?P<a-b>x)", "invalid named capture: `(?P<a-b>`"),
            ("(?<>x)", "invalid named capture: `(?<>`"),
        ] {
            assert_eq!(go_err(p), format!("error parsing regexp: {want}"), "{p}");
        }
        // Repetitions nest too: past the regex crate's nest limit it is Go's error.
        let stars = format!("a{}", "(?i)*".repeat(4100));
        assert_eq!(compile(&stars).err().map(|e| e.code), Some(NESTING_DEPTH));
        let deep = format!("{}a{}", "(".repeat(1001), ")".repeat(1001));
        assert_eq!(
            compile(&deep).err().map(|e| e.code),
            Some(NESTING_DEPTH),
            "deep"
        );
    }

    /// Patterns Go accepts, and what they match as Go matches them.
    #[test]
    fn accepted_and_matched_as_go() {
        for (p, yes, no) in [
            // `{` that is not a repetition is a literal.
            ("a{,3}", &["a{,3}"][..], &["aaa"][..]),
            ("a{", &["a{"], &["a"]),
            ("a{01}", &["a{01}"], &["a"]),
            ("x{2}y", &["xxy"], &["xy"]),
            ("^a{2,}$", &["aaa"], &["a"]),
            // Perl classes and boundaries are ASCII.
            (r"^\d+$", &["0123"], &["٣"]),
            (r"^\w+$", &["a_1"], &["é"]),
            (r"^\s$", &["\x0C"], &["\x0B", "\u{a0}"]),
            (r"\bé", &["aé"], &[" é"]),
            (r"^[\W]$", &["é", "-"], &["a"]),
            // Escapes: octal, hex, C, punctuation, \Q…\E.
            (r"^\101\x42\x{43}\_\<$", &["ABC_<"], &[]),
            (r"^\Qa.b*\E$", &["a.b*"], &["axb"]),
            (r"^\Qa.b*", &["a.b*"], &["aab"]),
            (r"^[\d\-z]+$", &["1-z"], &["a"]),
            // Classes: ] first, `&&`, `--`, `[` are literal; POSIX classes.
            (r"^[]a]+$", &["]a"], &["b"]),
            (r"^[a&&b]+$", &["&a"], &["c"]),
            (r"^[[a]+$", &["[a"], &["b"]),
            (r"^[[:alpha:][:^alpha:]]$", &["1", "a"], &[]),
            (r"^[^[:digit:]]$", &["a", "\n"], &["1"]),
            (r"^\p{Greek}\PL$", &["α1"], &["αb"]),
            (r"^[\p{^L}]$", &["1"], &["b"]),
            // Flags: scoped, `(?)`, repeated, U swaps greediness, m/s/i.
            ("(?i)ab", &["AB"], &["A"]),
            // Go folds a group before negating it inside a class.
            (
                r"^(?i)[\W]$",
                &["é"],
                &["s", "S", "\u{17F}", "K", "\u{212A}"],
            ),
            (r"^(?i)[[:^upper:]]$", &["1"], &["a", "A", "\u{17F}"]),
            (r"^(?i)\W$", &["é"], &["s", "\u{17F}", "\u{212A}"]),
            ("a(?i)b", &["aB"], &["AB"]),
            ("((?i)a)b", &["Ab"], &["AB"]),
            ("(?i:a)b", &["Ab"], &["AB"]),
            ("a(?)b", &["ab"], &[]),
            ("(?ii)a", &["A"], &[]),
            ("(?i-i)a", &["a"], &["A"]),
            ("(?s).", &["\n"], &[]),
            (".", &["x"], &["\n"]),
            ("(?m)^b$", &["a\nb\nc"], &[]),
            ("^b$", &["b"], &["a\nb"]),
            // Repetition of a flag's predecessor, of an assertion, nested stars.
            ("^a(?i)*$", &["aaa", ""], &["A"]),
            ("^*a", &["a"], &[]),
            ("^(a*)*$", &["aa"], &["b"]),
            ("^(?P<x>a)(?P<x>b)$", &["ab"], &[]),
            ("^(?<n>a)|b$", &["a", "b"], &[]),
            ("^a|$", &["", "a"], &[]),
            ("^()$", &[""], &["a"]),
            (r"[\x{D800}-\x{DFFF}]", &[], &["a"]),
        ] {
            let re = compile(p).unwrap_or_else(|e| panic!("{p}: {e}"));
            for s in yes {
                assert!(re.is_match(s), "{p} should match {s:?}");
            }
            for s in no {
                assert!(!re.is_match(s), "{p} should not match {s:?}");
            }
        }
    }

    #[test]
    fn lazy_as_go() {
        let m = |p: &str, s: &str| {
            compile(p)
                .ok()
                .and_then(|re| re.find(s).map(|m| m.as_str().to_owned()))
        };
        assert_eq!(m("a+?", "aaa").as_deref(), Some("a"));
        assert_eq!(m("(?U)a+", "aaa").as_deref(), Some("a"));
        assert_eq!(m("(?U)a+?", "aaa").as_deref(), Some("aaa"));
        assert_eq!(m("(?U:a+)a+", "aaaa").as_deref(), Some("aaaa"));
        assert_eq!(m("a{2,3}?", "aaa").as_deref(), Some("aa"));
    }

    #[test]
    fn captures_are_counted_as_go() {
        let n = |p: &str| compile(p).map(|re| re.captures_len() - 1).ok();
        assert_eq!(n(r"db\.(.*)"), Some(1));
        assert_eq!(n("(?:a)(?P<x>b)(c)"), Some(2));
        let names = |p: &str| subexp_names(p);
        assert_eq!(
            names("^ip-(?P<a>[0-9]*)-(x)(?<b>[(])\\((?i:c)\\Q(\\E[^)]$"),
            ["", "a", "", "b"]
        );
        assert_eq!(n(r"\(a\)"), Some(0));
    }
}
