//! Go's `text/template` lexer and parser (`text/template/parse`): the same
//! actions, trim markers, comments, pipelines, variables and control
//! structures, the same parse errors, and the tree printed back as Go's
//! `Node.String` prints it (CoreDNS labels its template metrics with it).

use std::fmt::Write as _;

/// A byte offset in the template text.
pub(crate) type Pos = usize;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Text(String),
    Left,
    Right,
    Space,
    Ident(String),
    Field(String),
    Var(String),
    Dot,
    Bool(bool),
    Nil,
    Number(String),
    Char(String),
    Str(String),
    Raw(String),
    Pipe,
    LParen,
    RParen,
    Declare,
    Assign,
    Comma,
    Keyword(&'static str),
    /// Another printable ASCII character (Go's `itemChar`).
    Other(char),
    /// A lexing error and its line: the parser reports it when it gets there.
    Error(String, u32),
    Eof,
}

impl Tok {
    /// How Go's `item.String` names a token in "unexpected …" errors.
    fn describe(&self) -> String {
        // Go's `item.String`: keywords (dot and nil among them) in angle
        // brackets, long values cut to 10 characters.
        let q = |v: &str| {
            if v.chars().count() > 10 {
                let cut: String = v.chars().take(10).collect();
                format!("{}...", go_quote_str(&cut))
            } else {
                go_quote_str(v)
            }
        };
        match self {
            Self::Eof => "EOF".into(),
            Self::Keyword(k) => format!("<{k}>"),
            Self::Dot => "<.>".into(),
            Self::Nil => "<nil>".into(),
            Self::Text(t) | Self::Ident(t) | Self::Number(t) | Self::Char(t) | Self::Var(t) => q(t),
            Self::Field(f) => q(&format!(".{f}")),
            Self::Str(v) | Self::Raw(v) => q(v),
            Self::Left => q("{{"),
            Self::Right => q("}}"),
            Self::Space => q(" "),
            Self::Bool(b) => q(&b.to_string()),
            Self::Pipe => q("|"),
            Self::LParen => q("("),
            Self::RParen => q(")"),
            Self::Declare => q(":="),
            Self::Assign => q("="),
            Self::Comma => q(","),
            Self::Other(c) => q(&c.to_string()),
            Self::Error(m, _) => m.clone(),
        }
    }
}

/// Nesting of parentheses and control structures a template may use (Go allows
/// 10000 on its growable stacks; the workers' stacks are fixed).
const MAX_NESTING: u32 = 100;

const KEYWORDS: [&str; 10] = [
    "block", "break", "continue", "define", "else", "end", "if", "range", "template", "with",
];

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_alnum(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// A token, its position and its line.
type Lexed = (Tok, Pos, u32);

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    toks: Vec<Lexed>,
    line: u32,
    paren: u32,
}

impl<'a> Lexer<'a> {
    /// The tokens; a lexing error ends them (Go's lexer runs as the parser
    /// asks, so an earlier parse error wins over it).
    fn run(src: &'a str) -> Vec<Lexed> {
        let mut l = Lexer {
            src,
            pos: 0,
            toks: Vec::new(),
            line: 1,
            paren: 0,
        };
        if let Err((e, line)) = l.text() {
            let at = l.pos.min(src.len());
            l.toks.push((Tok::Error(e, line), at, line));
        }
        l.toks
    }

    fn rest(&self) -> &'a str {
        &self.src[self.pos..]
    }

    fn emit(&mut self, t: Tok, at: Pos) {
        let line = self.line;
        self.line += self.src[at..self.pos].matches('\n').count() as u32;
        self.toks.push((t, at, line));
    }

    fn text(&mut self) -> Result<(), (String, u32)> {
        loop {
            let Some(i) = self.rest().find("{{") else {
                if self.pos < self.src.len() {
                    let at = self.pos;
                    self.pos = self.src.len();
                    self.emit(Tok::Text(self.src[at..].to_owned()), at);
                }
                let at = self.pos;
                self.emit(Tok::Eof, at);
                return Ok(());
            };
            let delim = self.pos + i;
            let after = &self.src[delim + 2..];
            let trim =
                after.len() >= 2 && after.as_bytes()[0] == b'-' && is_space(after.as_bytes()[1]);
            let mut end = delim;
            if trim {
                while end > self.pos && is_space(self.src.as_bytes()[end - 1]) {
                    end -= 1;
                }
            }
            if end > self.pos {
                let at = self.pos;
                self.pos = end;
                self.emit(Tok::Text(self.src[at..end].to_owned()), at);
            }
            // The trimmed space counts its lines.
            self.line += self.src[end..delim].matches('\n').count() as u32;
            self.pos = delim + 2 + if trim { 2 } else { 0 };
            // A comment: `{{/* … */}}`, nothing else in the action.
            if self.rest().starts_with("/*") {
                let Some(close) = self.rest().find("*/") else {
                    return Err(("unclosed comment".into(), self.line));
                };
                let body_end = self.pos + close + 2;
                self.line += self.src[self.pos..body_end].matches('\n').count() as u32;
                self.pos = body_end;
                let (is_delim, trim_r) = self.at_right();
                if !is_delim {
                    return Err(("comment ends before closing delimiter".into(), self.line));
                }
                self.pos += 2 + if trim_r { 2 } else { 0 };
                if trim_r {
                    self.skip_space_after();
                }
                continue;
            }
            let at = delim;
            self.emit(Tok::Left, at);
            self.paren = 0;
            self.inside()?;
        }
    }

    fn skip_space_after(&mut self) {
        while self.pos < self.src.len() && is_space(self.src.as_bytes()[self.pos]) {
            if self.src.as_bytes()[self.pos] == b'\n' {
                self.line += 1;
            }
            self.pos += 1;
        }
    }

    fn at_right(&self) -> (bool, bool) {
        let r = self.rest().as_bytes();
        if r.len() >= 4 && is_space(r[0]) && r[1] == b'-' && &r[2..4] == b"}}" {
            return (true, true);
        }
        (r.starts_with(b"}}"), false)
    }

    fn inside(&mut self) -> Result<(), (String, u32)> {
        loop {
            let (is_delim, trim) = self.at_right();
            if is_delim {
                if self.paren > 0 {
                    return Err(("unclosed left paren".into(), self.line));
                }
                let at = self.pos + if trim { 1 } else { 0 };
                self.pos += 2 + if trim { 2 } else { 0 };
                self.emit(Tok::Right, at);
                if trim {
                    self.skip_space_after();
                }
                return Ok(());
            }
            let Some(c) = self.rest().chars().next() else {
                return Err(("unclosed action".into(), self.line));
            };
            let at = self.pos;
            match c {
                ' ' | '\t' | '\r' | '\n' => {
                    while let Some(&b) = self.src.as_bytes().get(self.pos) {
                        if !is_space(b) {
                            break;
                        }
                        // Stop before a trim marker's space.
                        let r = &self.src.as_bytes()[self.pos..];
                        if r.len() >= 4 && r[1] == b'-' && &r[2..4] == b"}}" {
                            break;
                        }
                        self.pos += 1;
                    }
                    if self.pos == at {
                        self.pos += 1;
                    }
                    self.emit(Tok::Space, at);
                }
                '=' => {
                    self.pos += 1;
                    self.emit(Tok::Assign, at);
                }
                ':' => {
                    if !self.rest().starts_with(":=") {
                        return Err(("expected :=".into(), self.line));
                    }
                    self.pos += 2;
                    self.emit(Tok::Declare, at);
                }
                '|' => {
                    self.pos += 1;
                    self.emit(Tok::Pipe, at);
                }
                ',' => {
                    self.pos += 1;
                    self.emit(Tok::Comma, at);
                }
                '"' => {
                    let s = self.quoted('"', "unterminated quoted string")?;
                    self.emit(Tok::Str(s), at);
                }
                '`' => {
                    let Some(close) = self.rest()[1..].find('`') else {
                        return Err(("unterminated raw quoted string".into(), self.line));
                    };
                    self.pos += close + 2;
                    self.emit(Tok::Raw(self.src[at..self.pos].to_owned()), at);
                }
                '\'' => {
                    let s = self.quoted('\'', "unterminated character constant")?;
                    self.emit(Tok::Char(s), at);
                }
                '$' => {
                    self.pos += 1;
                    if !self.at_terminator() {
                        self.word();
                        self.terminated()?;
                    }
                    self.emit(Tok::Var(self.src[at..self.pos].to_owned()), at);
                }
                '.' => {
                    let next = self.rest()[1..].chars().next();
                    if next.is_some_and(|c| c.is_ascii_digit()) {
                        self.number()?;
                        self.emit(Tok::Number(self.src[at..self.pos].to_owned()), at);
                    } else {
                        self.pos += 1;
                        if self.at_terminator() {
                            self.emit(Tok::Dot, at);
                        } else {
                            self.word();
                            self.terminated()?;
                            self.emit(Tok::Field(self.src[at + 1..self.pos].to_owned()), at);
                        }
                    }
                }
                '+' | '-' | '0'..='9' => {
                    self.number()?;
                    self.emit(Tok::Number(self.src[at..self.pos].to_owned()), at);
                }
                '(' => {
                    self.pos += 1;
                    self.paren += 1;
                    self.emit(Tok::LParen, at);
                }
                ')' => {
                    self.pos += 1;
                    if self.paren == 0 {
                        return Err(("unexpected right paren".into(), self.line));
                    }
                    self.paren -= 1;
                    self.emit(Tok::RParen, at);
                }
                c if is_alnum(c) => {
                    self.word();
                    self.terminated()?;
                    let w = &self.src[at..self.pos];
                    let t = match w {
                        "true" => Tok::Bool(true),
                        "false" => Tok::Bool(false),
                        "nil" => Tok::Nil,
                        _ => match KEYWORDS.iter().find(|k| **k == w) {
                            Some(k) => Tok::Keyword(k),
                            None => Tok::Ident(w.to_owned()),
                        },
                    };
                    self.emit(t, at);
                }
                c if c.is_ascii() && !c.is_ascii_control() => {
                    self.pos += 1;
                    self.emit(Tok::Other(c), at);
                }
                c => {
                    return Err((
                        format!("unrecognized character in action: {}", go_unicode(c)),
                        self.line,
                    ));
                }
            }
        }
    }

    fn word(&mut self) {
        while let Some(c) = self.rest().chars().next() {
            if !is_alnum(c) {
                break;
            }
            self.pos += c.len_utf8();
        }
    }

    fn quoted(&mut self, q: char, unterminated: &str) -> Result<String, (String, u32)> {
        let start = self.pos;
        self.pos += 1;
        loop {
            let Some(c) = self.rest().chars().next() else {
                return Err((unterminated.into(), self.line));
            };
            self.pos += c.len_utf8();
            match c {
                '\\' => {
                    let Some(n) = self.rest().chars().next() else {
                        return Err((unterminated.into(), self.line));
                    };
                    if n == '\n' {
                        return Err((unterminated.into(), self.line));
                    }
                    self.pos += n.len_utf8();
                }
                '\n' => return Err((unterminated.into(), self.line)),
                c if c == q => break,
                _ => {}
            }
        }
        Ok(self.src[start..self.pos].to_owned())
    }

    fn accept(&mut self, set: &str) -> bool {
        match self.rest().chars().next() {
            Some(c) if set.contains(c) => {
                self.pos += c.len_utf8();
                true
            }
            _ => false,
        }
    }

    fn accept_run(&mut self, set: &str) {
        while self.accept(set) {}
    }

    /// Go's `scanNumber`, with its error.
    fn number(&mut self) -> Result<(), (String, u32)> {
        let start = self.pos;
        self.accept("+-");
        let mut digits = "0123456789_";
        if self.accept("0") {
            if self.accept("xX") {
                digits = "0123456789abcdefABCDEF_";
            } else if self.accept("oO") {
                digits = "01234567_";
            } else if self.accept("bB") {
                digits = "01_";
            }
        }
        self.accept_run(digits);
        if self.accept(".") {
            self.accept_run(digits);
        }
        if digits.len() == 11 && self.accept("eE") {
            self.accept("+-");
            self.accept_run("0123456789_");
        }
        if digits.len() == 23 && self.accept("pP") {
            self.accept("+-");
            self.accept_run("0123456789_");
        }
        self.accept("i");
        if let Some(c) = self.rest().chars().next().filter(|c| is_alnum(*c)) {
            self.pos += c.len_utf8();
            return Err((
                format!(
                    "bad number syntax: {}",
                    go_quote_str(&self.src[start..self.pos])
                ),
                self.line,
            ));
        }
        Ok(())
    }

    /// Go's `atTerminator`: what may follow a field, variable or identifier.
    fn at_terminator(&self) -> bool {
        let r = self.rest();
        match r.chars().next() {
            None => true,
            Some(c) if is_space(c as u8) && c.is_ascii() => true,
            Some('.' | ',' | '|' | ':' | ')' | '(') => true,
            _ => r.starts_with("}}"),
        }
    }

    fn terminated(&self) -> Result<(), (String, u32)> {
        if self.at_terminator() {
            return Ok(());
        }
        let c = self.rest().chars().next().unwrap_or(' ');
        Err((format!("bad character {}", go_unicode(c)), self.line))
    }
}

fn go_quote_str(s: &str) -> String {
    super::value::go_quote(s)
}

/// Go's `%#U`: `U+0023 '#'`.
fn go_unicode(c: char) -> String {
    if c.is_control() {
        format!("U+{:04X}", c as u32)
    } else {
        format!("U+{:04X} '{c}'", c as u32)
    }
}

/// A number constant as Go's `parse.NumberNode` holds it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Number {
    /// As written.
    pub(crate) text: String,
    /// Its value as an int, if it is one.
    pub(crate) int: Option<i64>,
    /// As an unsigned int, if it is one.
    pub(crate) uint: Option<u64>,
    /// As a float, if it is one (integers are floats too).
    pub(crate) float: Option<f64>,
    /// Written as a character constant.
    pub(crate) is_char: bool,
    /// Written with a float's syntax (`.`, an exponent) and not a hex integer.
    pub(crate) float_syntax: bool,
}

fn parse_int_text(t: &str) -> Option<(bool, u64)> {
    let (neg, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let t = t.replace('_', "");
    let (radix, digits) = if let Some(r) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        (16, r.to_owned())
    } else if let Some(r) = t.strip_prefix("0o").or_else(|| t.strip_prefix("0O")) {
        (8, r.to_owned())
    } else if let Some(r) = t.strip_prefix("0b").or_else(|| t.strip_prefix("0B")) {
        (2, r.to_owned())
    } else if t.len() > 1 && t.starts_with('0') {
        (8, t[1..].to_owned())
    } else {
        (10, t)
    };
    if digits.is_empty() {
        return None;
    }
    u64::from_str_radix(&digits, radix).ok().map(|v| (neg, v))
}

fn unquote_char(s: &str) -> Option<char> {
    let inner = s.strip_prefix('\'')?.strip_suffix('\'')?;
    let v = unquote_body(inner, '\'')?;
    let mut cs = v.chars();
    let c = cs.next()?;
    cs.next().is_none().then_some(c)
}

impl Number {
    fn parse(text: &str, is_char: bool) -> Result<Self, String> {
        let bad = || format!("illegal number syntax: {text:?}");
        if is_char {
            let c = unquote_char(text)
                .ok_or_else(|| format!("malformed character constant: {text}"))?;
            let v = c as i64;
            return Ok(Self {
                text: text.into(),
                int: Some(v),
                uint: Some(v as u64),
                float: Some(v as f64),
                is_char: true,
                float_syntax: false,
            });
        }
        if text.ends_with('i') {
            return Err("complex numbers are not supported by ringdns's templates".into());
        }
        let mut n = Self {
            text: text.into(),
            int: None,
            uint: None,
            float: None,
            is_char: false,
            float_syntax: false,
        };
        if let Some((neg, v)) = parse_int_text(text) {
            if neg {
                if v <= i64::MAX as u64 + 1 {
                    n.int = Some((v as i64).wrapping_neg());
                }
            } else {
                n.uint = Some(v);
                n.int = i64::try_from(v).ok();
            }
        }
        let lower = text.to_ascii_lowercase();
        let hex = lower.trim_start_matches(['+', '-']).starts_with("0x");
        if !hex && (lower.contains('.') || lower.contains('e')) {
            n.float_syntax = true;
            let f: f64 = lower.replace('_', "").parse().map_err(|_| bad())?;
            n.float = Some(f);
            // An integral float is an int too (Go: `1e3` is an int).
            if f.fract() == 0.0 && f.abs() < 9.2e18 {
                n.int = Some(f as i64);
                if f >= 0.0 {
                    n.uint = Some(f as u64);
                }
            }
        } else if let Some(i) = n.int {
            n.float = Some(i as f64);
        } else if let Some(u) = n.uint {
            n.float = Some(u as f64);
        }
        if n.int.is_none() && n.uint.is_none() && n.float.is_none() {
            return Err(bad());
        }
        Ok(n)
    }
}

/// Go's `strconv.Unquote` of a string's body (between its quotes).
pub(crate) fn unquote_body(s: &str, q: char) -> Option<String> {
    let mut out = String::new();
    let mut cs = s.chars().peekable();
    while let Some(c) = cs.next() {
        if c != '\\' {
            if c == q {
                return None;
            }
            out.push(c);
            continue;
        }
        let e = cs.next()?;
        match e {
            'a' => out.push('\x07'),
            'b' => out.push('\x08'),
            'f' => out.push('\x0c'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'v' => out.push('\x0b'),
            '\\' => out.push('\\'),
            '\'' if q == '\'' => out.push('\''),
            '"' if q == '"' => out.push('"'),
            'x' | 'u' | 'U' => {
                let n = match e {
                    'x' => 2,
                    'u' => 4,
                    _ => 8,
                };
                let mut v = 0u32;
                for _ in 0..n {
                    v = v * 16 + cs.next()?.to_digit(16)?;
                }
                out.push(char::from_u32(v)?);
            }
            '0'..='7' => {
                let mut v = e.to_digit(8)?;
                for _ in 0..2 {
                    v = v * 8 + cs.next()?.to_digit(8)?;
                }
                if v > 255 {
                    return None;
                }
                out.push(char::from_u32(v)?);
            }
            _ => return None,
        }
    }
    Some(out)
}

/// An operand.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Arg {
    /// `.A.B`.
    Field(Pos, Vec<String>),
    /// `$x.A`.
    Var(Pos, String, Vec<String>),
    /// `.`.
    Dot(Pos),
    /// `nil`.
    Nil(Pos),
    /// `true`, `false`.
    Bool(Pos, bool),
    /// A number or character constant.
    Num(Pos, Number),
    /// A string: as written, and its value.
    Str(Pos, String, String),
    /// A function name.
    Ident(Pos, String),
    /// `(pipeline)`.
    Pipe(Box<Pipe>),
    /// `(pipeline).A.B` or another operand followed by fields.
    Chain(Pos, Box<Self>, Vec<String>),
}

impl Arg {
    /// The operand's position.
    pub(crate) fn pos(&self) -> Pos {
        match self {
            Self::Field(p, _)
            | Self::Var(p, _, _)
            | Self::Dot(p)
            | Self::Nil(p)
            | Self::Bool(p, _)
            | Self::Num(p, _)
            | Self::Str(p, _, _)
            | Self::Ident(p, _)
            | Self::Chain(p, _, _) => *p,
            Self::Pipe(p) => p.pos,
        }
    }

    fn write(&self, s: &mut String) {
        match self {
            Self::Field(_, f) => {
                for i in f {
                    s.push('.');
                    s.push_str(i);
                }
            }
            Self::Var(_, v, f) => {
                s.push_str(v);
                for i in f {
                    s.push('.');
                    s.push_str(i);
                }
            }
            Self::Dot(_) => s.push('.'),
            Self::Nil(_) => s.push_str("nil"),
            Self::Bool(_, b) => {
                let _ = write!(s, "{b}");
            }
            Self::Num(_, n) => s.push_str(&n.text),
            Self::Str(_, q, _) => s.push_str(q),
            Self::Ident(_, i) => s.push_str(i),
            Self::Pipe(p) => {
                s.push('(');
                p.write(s);
                s.push(')');
            }
            Self::Chain(_, a, f) => {
                a.write(s);
                for i in f {
                    s.push('.');
                    s.push_str(i);
                }
            }
        }
    }

    /// Go's `Node.String`.
    pub(crate) fn string(&self) -> String {
        let mut s = String::new();
        self.write(&mut s);
        s
    }
}

/// A command: operands, the first possibly a function.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Cmd {
    /// Position.
    pub(crate) pos: Pos,
    /// Operands.
    pub(crate) args: Vec<Arg>,
}

impl Cmd {
    fn write(&self, s: &mut String) {
        for (i, a) in self.args.iter().enumerate() {
            if i > 0 {
                s.push(' ');
            }
            a.write(s);
        }
    }

    /// Go's `CommandNode.String`.
    pub(crate) fn string(&self) -> String {
        let mut s = String::new();
        self.write(&mut s);
        s
    }
}

/// A pipeline, with the variables it declares or assigns.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Pipe {
    /// Position.
    pub(crate) pos: Pos,
    /// `=` rather than `:=`.
    pub(crate) is_assign: bool,
    /// Variables (`$x`).
    pub(crate) decl: Vec<String>,
    /// Commands.
    pub(crate) cmds: Vec<Cmd>,
}

impl Pipe {
    fn write(&self, s: &mut String) {
        if !self.decl.is_empty() {
            s.push_str(&self.decl.join(", "));
            s.push_str(if self.is_assign { " = " } else { " := " });
        }
        for (i, c) in self.cmds.iter().enumerate() {
            if i > 0 {
                s.push_str(" | ");
            }
            c.write(s);
        }
    }

    /// Go's `PipeNode.String`.
    pub(crate) fn string(&self) -> String {
        let mut s = String::new();
        self.write(&mut s);
        s
    }
}

/// `if`, `with` or `range`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Branch {
    /// Position.
    pub(crate) pos: Pos,
    /// The condition.
    pub(crate) pipe: Pipe,
    /// Run when it holds.
    pub(crate) list: Vec<Node>,
    /// `{{else}}`.
    pub(crate) else_list: Option<Vec<Node>>,
}

/// A template node.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    /// Text, copied.
    Text(String),
    /// `{{pipeline}}`.
    Action(Pos, Pipe),
    /// `{{if}}`.
    If(Branch),
    /// `{{with}}`.
    With(Branch),
    /// `{{range}}`.
    Range(Branch),
    /// `{{break}}`.
    Break(Pos),
    /// `{{continue}}`.
    Continue(Pos),
}

/// Go's `ListNode.String`.
pub(crate) fn list_string(list: &[Node]) -> String {
    let mut s = String::new();
    write_list(list, &mut s);
    s
}

fn write_list(list: &[Node], s: &mut String) {
    for n in list {
        match n {
            Node::Text(t) => s.push_str(t),
            Node::Action(_, p) => {
                s.push_str("{{");
                p.write(s);
                s.push_str("}}");
            }
            Node::If(b) | Node::With(b) | Node::Range(b) => {
                let kw = match n {
                    Node::If(_) => "if",
                    Node::With(_) => "with",
                    _ => "range",
                };
                let _ = write!(s, "{{{{{kw} ");
                b.pipe.write(s);
                s.push_str("}}");
                write_list(&b.list, s);
                if let Some(e) = &b.else_list {
                    s.push_str("{{else}}");
                    write_list(e, s);
                }
                s.push_str("{{end}}");
            }
            Node::Break(_) => s.push_str("{{break}}"),
            Node::Continue(_) => s.push_str("{{continue}}"),
        }
    }
}

/// What ends a list.
enum Stop {
    Eof,
    End,
    Else(Pos),
}

struct Parser<'f> {
    toks: Vec<Lexed>,
    i: usize,
    name: String,
    funcs: &'f dyn Fn(&str) -> bool,
    vars: Vec<String>,
    range_depth: u32,
    depth: u32,
}

type PResult<T> = Result<T, String>;

impl Parser<'_> {
    fn err(&self, msg: impl std::fmt::Display) -> String {
        let line = self.toks.get(self.i.saturating_sub(1)).map_or(1, |t| t.2);
        format!("template: {}:{}: {}", self.name, line, msg)
    }

    /// Go's `unexpected`: a lexing error as itself, else what was found where.
    fn unexpected(&self, t: &Tok, ctx: &str) -> String {
        match t {
            Tok::Error(m, line) => format!("template: {}:{}: {}", self.name, line, m),
            _ if ctx.is_empty() => self.err(format!("unexpected {}", t.describe())),
            _ => self.err(format!("unexpected {} in {ctx}", t.describe())),
        }
    }

    fn next(&mut self) -> (Tok, Pos) {
        let t = self.toks.get(self.i).cloned().unwrap_or((Tok::Eof, 0, 1));
        if self.i < self.toks.len() {
            self.i += 1;
        }
        (t.0, t.1)
    }

    fn backup(&mut self) {
        self.i = self.i.saturating_sub(1);
    }

    fn peek(&self) -> &Tok {
        self.toks.get(self.i).map_or(&Tok::Eof, |t| &t.0)
    }

    fn next_non_space(&mut self) -> (Tok, Pos) {
        loop {
            let t = self.next();
            if t.0 != Tok::Space {
                return t;
            }
        }
    }

    fn peek_non_space(&mut self) -> (Tok, Pos) {
        let t = self.next_non_space();
        self.backup();
        t
    }

    fn list(&mut self) -> PResult<(Vec<Node>, Stop)> {
        let mut out = Vec::new();
        loop {
            let (t, _) = self.next();
            match t {
                Tok::Eof => return Ok((out, Stop::Eof)),
                Tok::Text(s) => out.push(Node::Text(s)),
                Tok::Left => {
                    let (k, pos) = self.next_non_space();
                    match k {
                        Tok::Keyword("end") => {
                            self.expect_right("end")?;
                            return Ok((out, Stop::End));
                        }
                        Tok::Keyword("else") => return Ok((out, Stop::Else(pos))),
                        Tok::Keyword("if") => out.push(Node::If(self.control("if", pos)?)),
                        Tok::Keyword("with") => out.push(Node::With(self.control("with", pos)?)),
                        Tok::Keyword("range") => out.push(Node::Range(self.control("range", pos)?)),
                        Tok::Keyword(k @ ("break" | "continue")) => {
                            self.expect_right(&format!("{{{{{k}}}}}"))?;
                            if self.range_depth == 0 {
                                return Err(self.err(format!("{{{{{k}}}}} outside {{{{range}}}}")));
                            }
                            out.push(if k == "break" {
                                Node::Break(pos)
                            } else {
                                Node::Continue(pos)
                            });
                        }
                        Tok::Keyword(k) => {
                            return Err(self.err(format!(
                                "{{{{{k}}}}} is not supported by ringdns's templates"
                            )));
                        }
                        _ => {
                            self.backup();
                            let pipe = self.pipeline("command", true)?;
                            out.push(Node::Action(pos, pipe));
                        }
                    }
                }
                other => return Err(self.unexpected(&other, "")),
            }
        }
    }

    fn expect_right(&mut self, ctx: &str) -> PResult<()> {
        let (t, _) = self.next_non_space();
        if t != Tok::Right {
            return Err(self.unexpected(&t, ctx));
        }
        Ok(())
    }

    /// `if`/`with`/`range`: the pipeline, the list, `{{else}}` (or `{{else if}}`,
    /// `{{else with}}`), `{{end}}`.
    fn control(&mut self, kw: &str, pos: Pos) -> PResult<Branch> {
        self.enter()?;
        let r = self.control_inner(kw, pos);
        self.depth -= 1;
        r
    }

    /// Nesting of parentheses and control structures (Go: `maxStackDepth`).
    fn enter(&mut self) -> PResult<()> {
        if self.depth >= MAX_NESTING {
            return Err(self.err("max expression depth exceeded"));
        }
        self.depth += 1;
        Ok(())
    }

    fn control_inner(&mut self, kw: &str, pos: Pos) -> PResult<Branch> {
        let depth = self.vars.len();
        let pipe = self.pipeline(kw, true)?;
        // `{{break}}` belongs to the range's own list, not to its `{{else}}`.
        if kw == "range" {
            self.range_depth += 1;
        }
        let listed = self.list();
        if kw == "range" {
            self.range_depth -= 1;
        }
        let (list, stop) = listed?;
        let else_list = match stop {
            Stop::Eof => return Err(self.err("unexpected EOF")),
            Stop::End => None,
            Stop::Else(epos) => {
                let (t, p2) = self.peek_non_space();
                let chained = matches!(
                    (&t, kw),
                    (Tok::Keyword("if"), "if") | (Tok::Keyword("with"), "with")
                );
                if chained {
                    // `{{else if c}}` is `{{else}}{{if c}}…{{end}}{{end}}`; the
                    // inner one ends at the same `{{end}}`.
                    self.next_non_space();
                    let inner = self.control(kw, p2)?;
                    let node = if kw == "if" {
                        Node::If(inner)
                    } else {
                        Node::With(inner)
                    };
                    Some(vec![node])
                } else {
                    self.expect_right("else")?;
                    let _ = epos;
                    let (el, stop) = self.list()?;
                    match stop {
                        Stop::End => {}
                        Stop::Eof => return Err(self.err("unexpected EOF")),
                        Stop::Else(_) => return Err(self.err("expected end; found {{else}}")),
                    }
                    Some(el)
                }
            }
        };
        self.vars.truncate(depth);
        Ok(Branch {
            pos,
            pipe,
            list,
            else_list,
        })
    }

    /// A pipeline up to `}}` (`right`) or `)`.
    fn pipeline(&mut self, ctx: &str, right: bool) -> PResult<Pipe> {
        let (_, pos) = self.peek_non_space();
        let mut decl = Vec::new();
        let mut is_assign = false;
        // Variables: `$x :=`, `$x =`, `$i, $e :=` (range only).
        let save = self.i;
        if let (Tok::Var(v), _) = self.next_non_space() {
            let (t, _) = self.next_non_space();
            match t {
                Tok::Declare | Tok::Assign => {
                    is_assign = t == Tok::Assign;
                    decl.push(v);
                }
                Tok::Comma if ctx == "range" => {
                    let (v2, _) = self.next_non_space();
                    let Tok::Var(v2) = v2 else {
                        return Err(self.err("range can only initialize variables"));
                    };
                    let (t2, _) = self.next_non_space();
                    if t2 != Tok::Declare && t2 != Tok::Assign {
                        return Err(self.err("range can only initialize variables"));
                    }
                    is_assign = t2 == Tok::Assign;
                    decl.push(v);
                    decl.push(v2);
                }
                _ => self.i = save,
            }
        } else {
            self.i = save;
        }
        // As Go's parser: known from here on (an assignment to an unknown
        // variable fails when it runs).
        self.vars.extend(decl.iter().cloned());
        let mut cmds = Vec::new();
        loop {
            let (t, _) = self.peek_non_space();
            match t {
                Tok::Right if right => {
                    self.next_non_space();
                    break;
                }
                Tok::RParen if !right => {
                    self.next_non_space();
                    break;
                }
                Tok::Bool(_)
                | Tok::Char(_)
                | Tok::Dot
                | Tok::Field(_)
                | Tok::Ident(_)
                | Tok::Number(_)
                | Tok::Nil
                | Tok::Raw(_)
                | Tok::Str(_)
                | Tok::Var(_)
                | Tok::LParen => cmds.push(self.command()?),
                other => {
                    return Err(self.unexpected(&other, ctx));
                }
            }
        }
        if cmds.is_empty() {
            return Err(self.err(format!("missing value for {ctx}")));
        }
        for (i, c) in cmds.iter().enumerate().skip(1) {
            if matches!(
                c.args[0],
                Arg::Bool(..) | Arg::Dot(_) | Arg::Nil(_) | Arg::Num(..) | Arg::Str(..)
            ) {
                return Err(self.err(format!(
                    "non executable command in pipeline stage {}",
                    i + 1
                )));
            }
        }
        Ok(Pipe {
            pos,
            is_assign,
            decl,
            cmds,
        })
    }

    fn command(&mut self) -> PResult<Cmd> {
        let (_, pos) = self.peek_non_space();
        let mut args = Vec::new();
        loop {
            let (t, _) = self.peek_non_space();
            match t {
                Tok::Pipe => {
                    self.next_non_space();
                    break;
                }
                Tok::Right | Tok::RParen => break,
                _ => {}
            }
            let Some(a) = self.operand()? else {
                let (t, _) = self.next_non_space();
                return Err(self.unexpected(&t, "operand"));
            };
            args.push(a);
            match self.peek() {
                Tok::Space | Tok::Pipe | Tok::Right | Tok::RParen => {}
                other => {
                    let other = other.clone();
                    return Err(self.unexpected(&other, "operand"));
                }
            }
        }
        if args.is_empty() {
            return Err(self.err("missing command"));
        }
        Ok(Cmd { pos, args })
    }

    fn operand(&mut self) -> PResult<Option<Arg>> {
        let Some(term) = self.term()? else {
            return Ok(None);
        };
        if let Tok::Field(_) = self.peek() {
            let pos = term.pos();
            let mut fields = Vec::new();
            while let Tok::Field(f) = self.peek().clone() {
                self.next();
                fields.push(f);
            }
            return Ok(Some(match term {
                Arg::Field(p, mut f) => {
                    f.extend(fields);
                    Arg::Field(p, f)
                }
                Arg::Var(p, v, mut f) => {
                    f.extend(fields);
                    Arg::Var(p, v, f)
                }
                Arg::Bool(..) | Arg::Str(..) | Arg::Num(..) | Arg::Nil(_) | Arg::Dot(_) => {
                    return Err(self.err(format!("unexpected . after term {:?}", term.string())));
                }
                other => Arg::Chain(pos, Box::new(other), fields),
            }));
        }
        Ok(Some(term))
    }

    fn term(&mut self) -> PResult<Option<Arg>> {
        let (t, pos) = self.next_non_space();
        Ok(Some(match t {
            Tok::Ident(name) => {
                if !(self.funcs)(&name) {
                    return Err(self.err(format!("function {name:?} not defined")));
                }
                Arg::Ident(pos, name)
            }
            Tok::Dot => Arg::Dot(pos),
            Tok::Nil => Arg::Nil(pos),
            Tok::Var(v) => {
                if !self.vars.contains(&v) {
                    return Err(self.err(format!("undefined variable {v:?}")));
                }
                Arg::Var(pos, v, Vec::new())
            }
            Tok::Field(f) => Arg::Field(pos, vec![f]),
            Tok::Bool(b) => Arg::Bool(pos, b),
            Tok::Char(c) => Arg::Num(pos, Number::parse(&c, true).map_err(|e| self.err(e))?),
            Tok::Number(n) => Arg::Num(pos, Number::parse(&n, false).map_err(|e| self.err(e))?),
            Tok::LParen => {
                self.enter()?;
                let p = self.pipeline("parenthesized pipeline", false);
                self.depth -= 1;
                Arg::Pipe(Box::new(p?))
            }
            Tok::Str(q) => {
                let v = unquote_body(&q[1..q.len() - 1], '"')
                    .ok_or_else(|| self.err("invalid syntax"))?;
                Arg::Str(pos, q, v)
            }
            Tok::Raw(q) => {
                let v = q[1..q.len() - 1].replace('\r', "");
                Arg::Str(pos, q, v)
            }
            _ => {
                self.backup();
                return Ok(None);
            }
        }))
    }
}

/// Parses `text` as template `name`; `funcs` says which function names exist.
pub(crate) fn parse(
    name: &str,
    text: &str,
    funcs: &dyn Fn(&str) -> bool,
) -> Result<Vec<Node>, String> {
    let toks = Lexer::run(text);
    let mut p = Parser {
        toks,
        i: 0,
        name: name.to_owned(),
        funcs,
        vars: vec!["$".to_owned()],
        range_depth: 0,
        depth: 0,
    };
    let (list, stop) = p.list()?;
    match stop {
        Stop::Eof => Ok(list),
        Stop::End => Err(p.err("unexpected {{end}}")),
        Stop::Else(_) => Err(p.err("unexpected {{else}}")),
    }
}
