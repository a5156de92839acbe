//! The expression language of *view* (CoreDNS compiles it with expr-lang/expr):
//! the part of expr-lang's grammar and type rules a routing condition uses,
//! compiled once at setup (syntax and type errors fail startup, worded and
//! positioned as expr-lang words them) and evaluated per query against the
//! request's functions.
//!
//! Supported: literals (integers, floats, single- double- and back-quoted
//! strings, `true`, `false`, `nil`, arrays), `!`/`not`, unary `-`/`+`,
//! `* / % ** ^`, `+ -`, `..`, comparisons, `in`, `matches`, `contains`,
//! `startsWith`, `endsWith` (each also negated with `not`), `&& and || or`,
//! `??`, `? :`, indexing, the environment's functions and the builtins `len`,
//! `lower`, `upper`, `trim`, `trimPrefix`, `trimSuffix`, `hasPrefix`, `hasSuffix`,
//! `split`, `join`, `indexOf`, `int`, `float`, `string`, `abs`. Other expr-lang
//! builtins fail startup naming themselves.

use std::fmt;

/// A value at run time.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `nil`.
    Nil,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string.
    Str(String),
    /// An array.
    Array(Vec<Self>),
}

/// A static type, as expr-lang's checker names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    /// `nil`.
    Nil,
    /// `bool`.
    Bool,
    /// `int`.
    Int,
    /// `float64`.
    Float,
    /// `string`.
    Str,
    /// `[]interface {}`.
    Array,
    /// `interface {}`: known only at run time.
    Any,
}

impl fmt::Display for Ty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Nil => "nil",
            Self::Bool => "bool",
            Self::Int => "int",
            Self::Float => "float64",
            Self::Str => "string",
            Self::Array => "[]interface {}",
            Self::Any => "interface {}",
        })
    }
}

impl Ty {
    fn numeric(self) -> bool {
        matches!(self, Self::Int | Self::Float | Self::Any)
    }
    fn is(self, t: Self) -> bool {
        self == t || self == Self::Any
    }
}

/// What the environment offers: its functions' names and signatures, and their
/// values per query.
pub trait Env {
    /// Calls environment function `name` (checked at compile time).
    fn call(&self, name: &str, args: &[Value]) -> Result<Value, String>;
}

/// An environment function's signature.
#[derive(Debug, Clone, Copy)]
pub struct Sig {
    /// The name.
    pub name: &'static str,
    /// Argument types.
    pub args: &'static [Ty],
    /// Result type.
    pub ret: Ty,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Tok<'a> {
    Int(i64),
    Float(f64),
    Str,
    Ident(&'a str),
    Op(&'static str),
    Eof,
}

#[derive(Debug, Clone)]
struct Token<'a> {
    tok: Tok<'a>,
    /// Decoded string literal.
    text: String,
    pos: usize,
}

/// A compile error: message and byte offset into the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    msg: String,
    pos: Option<usize>,
}

impl CompileError {
    fn at(msg: impl Into<String>, pos: usize) -> Self {
        Self {
            msg: msg.into(),
            pos: Some(pos),
        }
    }

    /// expr-lang's rendering: `MESSAGE (LINE:COLUMN)`, the source line and a
    /// marker under the column.
    pub fn render(&self, src: &str) -> String {
        let Some(pos) = self.pos else {
            return self.msg.clone();
        };
        let pos = pos.min(src.len());
        let before = &src[..pos];
        let line_no = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = src[line_start..pos].chars().count();
        let line = src[line_start..].split('\n').next().unwrap_or("");
        let snippet = line.replace('\t', " ");
        let mut out = format!("{} ({line_no}:{})\n | {snippet}", self.msg, col + 1);
        // expr-lang leaves out the marker when a multi-byte character comes first.
        if snippet.chars().take(col + 1).all(|c| c.is_ascii()) {
            out.push_str("\n | ");
            out.push_str(&".".repeat(col));
            out.push('^');
        }
        out
    }
}

const OPS: [&str; 27] = [
    "**", "??", "..", "==", "!=", "<=", ">=", "&&", "||", "?.", "(", ")", "[", "]", ",", "?", ":",
    ".", "!", "<", ">", "+", "-", "*", "/", "%", "^",
];

fn lex(src: &str) -> Result<Vec<Token<'_>>, CompileError> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        if c.is_ascii_digit() || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)) {
            let (tok, end) = lex_number(src, i)?;
            out.push(Token {
                tok,
                text: String::new(),
                pos: start,
            });
            i = end;
            continue;
        }
        if c == b'\'' || c == b'"' || c == b'`' {
            let (text, end) = lex_string(src, i)?;
            out.push(Token {
                tok: Tok::Str,
                text,
                pos: start,
            });
            i = end;
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' || c == b'$' || c >= 0x80 {
            let mut end = i;
            while end < b.len() {
                let ch = b[end];
                if ch.is_ascii_alphanumeric() || ch == b'_' || ch == b'$' || ch >= 0x80 {
                    end += 1;
                } else {
                    break;
                }
            }
            out.push(Token {
                tok: Tok::Ident(&src[i..end]),
                text: String::new(),
                pos: start,
            });
            i = end;
            continue;
        }
        let Some(op) = OPS.iter().find(|o| src[i..].starts_with(**o)) else {
            let ch = src[i..].chars().next().unwrap_or('?');
            return Err(CompileError::at(
                format!("unrecognized character: U+{:04X} '{ch}'", ch as u32),
                i,
            ));
        };
        // `1..2` is a range, not a float: numbers stop before `..` (lex_number).
        out.push(Token {
            tok: Tok::Op(op),
            text: String::new(),
            pos: start,
        });
        i += op.len();
    }
    out.push(Token {
        tok: Tok::Eof,
        text: String::new(),
        pos: src.len(),
    });
    Ok(out)
}

fn lex_number(src: &str, start: usize) -> Result<(Tok<'static>, usize), CompileError> {
    let b = src.as_bytes();
    let mut i = start;
    let radix = if b[i] == b'0' && i + 1 < b.len() {
        match b[i + 1] {
            b'x' | b'X' => 16,
            b'o' | b'O' => 8,
            b'b' | b'B' => 2,
            _ => 10,
        }
    } else {
        10
    };
    if radix != 10 {
        i += 2;
        let digits_start = i;
        while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
            i += 1;
        }
        let digits: String = src[digits_start..i].chars().filter(|c| *c != '_').collect();
        return i64::from_str_radix(&digits, radix)
            .map(|v| (Tok::Int(v), i))
            .map_err(|_| {
                CompileError::at(
                    format!("invalid integer literal: {}", &src[start..i]),
                    start,
                )
            });
    }
    let mut float = false;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_digit() || c == b'_' {
            i += 1;
        } else if c == b'.' && !float && b.get(i + 1) != Some(&b'.') {
            float = true;
            i += 1;
        } else if (c == b'e' || c == b'E') && i > start {
            float = true;
            i += 1;
            if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
                i += 1;
            }
        } else {
            break;
        }
    }
    let text: String = src[start..i].chars().filter(|c| *c != '_').collect();
    if float {
        text.parse::<f64>()
            .map(|v| (Tok::Float(v), i))
            .map_err(|_| {
                CompileError::at(format!("invalid float literal: {}", &src[start..i]), start)
            })
    } else {
        text.parse::<i64>().map(|v| (Tok::Int(v), i)).map_err(|_| {
            CompileError::at(
                format!("invalid integer literal: {}", &src[start..i]),
                start,
            )
        })
    }
}

fn lex_string(src: &str, start: usize) -> Result<(String, usize), CompileError> {
    let quote = src.as_bytes()[start] as char;
    let mut out = String::new();
    let mut chars = src[start + 1..].char_indices();
    while let Some((off, c)) = chars.next() {
        if c == quote {
            return Ok((out, start + 1 + off + 1));
        }
        if c == '\\' && quote != '`' {
            let Some((_, e)) = chars.next() else { break };
            match e {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                'a' => out.push('\x07'),
                'b' => out.push('\x08'),
                'f' => out.push('\x0c'),
                'v' => out.push('\x0b'),
                '\\' | '\'' | '"' | '`' => out.push(e),
                'x' | 'u' | 'U' => {
                    let n = match e {
                        'x' => 2,
                        'u' => 4,
                        _ => 8,
                    };
                    let hex: String = chars.by_ref().take(n).map(|(_, h)| h).collect();
                    let ch = u32::from_str_radix(&hex, 16)
                        .ok()
                        .filter(|_| hex.len() == n)
                        .and_then(char::from_u32)
                        .ok_or_else(|| CompileError::at("invalid char escape", start + 1 + off))?;
                    out.push(ch);
                }
                _ => return Err(CompileError::at("invalid char escape", start + 1 + off)),
            }
            continue;
        }
        out.push(c);
    }
    Err(CompileError::at("literal not terminated", start))
}

/// A compiled expression.
#[derive(Debug, Clone)]
pub struct Program {
    root: Node,
}

#[derive(Debug, Clone)]
enum Node {
    Lit(Value),
    Array(Vec<Self>),
    Unary(&'static str, Box<Self>),
    Binary(&'static str, Box<Self>, Box<Self>),
    /// `matches` against a constant pattern, compiled once.
    Matches(Box<Self>, Box<regex::Regex>),
    Not(Box<Self>),
    Cond(Box<Self>, Box<Self>, Box<Self>),
    Index(Box<Self>, Box<Self>),
    Call(&'static str, Vec<Self>),
    Builtin(&'static str, Vec<Self>),
}

struct Parser<'a, 'e> {
    toks: Vec<Token<'a>>,
    i: usize,
    env: &'e [Sig],
    /// The first type error: reported only when the whole source parses (expr-lang
    /// parses before it checks).
    type_err: Option<CompileError>,
    /// Nesting depth, bounded so a hostile expression cannot exhaust the stack.
    depth: usize,
}

fn binary_prec(op: &str) -> Option<(u16, bool)> {
    Some(match op {
        "or" | "||" => (10, false),
        "and" | "&&" => (15, false),
        "==" | "!=" | "<" | ">" | ">=" | "<=" | "in" | "matches" | "contains" | "startsWith"
        | "endsWith" => (20, false),
        ".." => (25, false),
        "+" | "-" => (30, false),
        "*" | "/" | "%" => (60, false),
        "**" | "^" => (100, true),
        "??" => (500, false),
        _ => return None,
    })
}

/// How deeply expressions may nest (parentheses, operands, arguments).
const MAX_DEPTH: usize = 200;

const BUILTINS: [&str; 15] = [
    "len",
    "lower",
    "upper",
    "trim",
    "trimPrefix",
    "trimSuffix",
    "hasPrefix",
    "hasSuffix",
    "split",
    "join",
    "indexOf",
    "int",
    "float",
    "string",
    "abs",
];

/// expr-lang builtins ringdns does not evaluate (startup fails naming them).
const OTHER_BUILTINS: [&str; 45] = [
    "all",
    "none",
    "any",
    "one",
    "filter",
    "map",
    "find",
    "findIndex",
    "findLast",
    "findLastIndex",
    "count",
    "sum",
    "groupBy",
    "sortBy",
    "reduce",
    "trimLeft",
    "trimRight",
    "splitAfter",
    "replace",
    "repeat",
    "lastIndexOf",
    "max",
    "min",
    "mean",
    "median",
    "ceil",
    "floor",
    "round",
    "toJSON",
    "fromJSON",
    "toBase64",
    "fromBase64",
    "now",
    "duration",
    "date",
    "timezone",
    "first",
    "last",
    "get",
    "take",
    "keys",
    "values",
    "toPairs",
    "fromPairs",
    "concat",
];

impl<'a> Parser<'a, '_> {
    /// Records a type error and stands in for the node it concerns.
    fn type_error(&mut self, e: CompileError) -> (Node, Ty) {
        self.type_err.get_or_insert(e);
        (Node::Lit(Value::Nil), Ty::Any)
    }
    fn peek(&self) -> &Token<'a> {
        &self.toks[self.i.min(self.toks.len() - 1)]
    }
    fn bump(&mut self) -> Token<'a> {
        let t = self.peek().clone();
        if self.i < self.toks.len() - 1 {
            self.i += 1;
        }
        t
    }
    fn is_op(&self, op: &str) -> bool {
        matches!(self.peek().tok, Tok::Op(o) if o == op)
    }
    fn expect(&mut self, op: &str) -> Result<(), CompileError> {
        if self.is_op(op) {
            self.bump();
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }
    fn unexpected(&self) -> CompileError {
        let t = self.peek();
        let what = match t.tok {
            Tok::Eof => "unexpected token EOF".to_owned(),
            Tok::Int(v) => format!("unexpected token Number(\"{v}\")"),
            Tok::Float(v) => format!("unexpected token Number(\"{v}\")"),
            Tok::Str => format!("unexpected token String({:?})", t.text),
            Tok::Ident(s) => format!("unexpected token Identifier({s:?})"),
            Tok::Op(o) => format!("unexpected token Operator({o:?})"),
        };
        CompileError::at(what, t.pos)
    }

    /// The operator at the cursor, if it is a binary one: `(op, precedence,
    /// right-associative, negated, tokens)`.
    fn binary_at(&self) -> Option<(&'static str, u16, bool, bool, usize)> {
        let t = self.peek();
        let word = match t.tok {
            Tok::Op(o) => o,
            Tok::Ident(s) => s,
            _ => return None,
        };
        if word == "not" {
            let next = self.toks.get(self.i + 1)?;
            let Tok::Ident(n) = next.tok else { return None };
            let op = ["in", "matches", "contains", "startsWith", "endsWith"]
                .into_iter()
                .find(|o| *o == n)?;
            return Some((op, 20, false, true, 2));
        }
        let op = [
            "or",
            "||",
            "and",
            "&&",
            "==",
            "!=",
            "<",
            ">",
            ">=",
            "<=",
            "in",
            "matches",
            "contains",
            "startsWith",
            "endsWith",
            "..",
            "+",
            "-",
            "*",
            "/",
            "%",
            "**",
            "^",
            "??",
        ]
        .into_iter()
        .find(|o| *o == word)?;
        let (p, right) = binary_prec(op)?;
        Some((op, p, right, false, 1))
    }

    fn expression(&mut self, min: u16) -> Result<(Node, Ty), CompileError> {
        if self.depth >= MAX_DEPTH {
            return Err(CompileError::at(
                "expression nested too deeply",
                self.peek().pos,
            ));
        }
        self.depth += 1;
        let r = self.expression_inner(min);
        self.depth -= 1;
        r
    }

    fn expression_inner(&mut self, min: u16) -> Result<(Node, Ty), CompileError> {
        let (mut left, mut lt) = self.unary()?;
        while let Some((op, prec, right, negate, ntok)) = self.binary_at() {
            if prec < min {
                break;
            }
            let pos = self.peek().pos;
            for _ in 0..ntok {
                self.bump();
            }
            let next = if right { prec } else { prec + 1 };
            let (r, rt) = self.expression(next)?;
            let (node, ty) = match self.binary(op, left, lt, r, rt, pos) {
                Ok(x) => x,
                Err(e) => self.type_error(e),
            };
            (left, lt) = if negate {
                (Node::Not(Box::new(node)), Ty::Bool)
            } else {
                (node, ty)
            };
        }
        if min == 0 && self.is_op("?") {
            let pos = self.peek().pos;
            self.bump();
            let (a, at) = self.expression(0)?;
            self.expect(":")?;
            let (b, bt) = self.expression(0)?;
            if !lt.is(Ty::Bool) {
                return Ok(self.type_error(CompileError::at(
                    format!("non-bool expression (type {lt}) used as condition"),
                    pos,
                )));
            }
            let ty = if at == bt { at } else { Ty::Any };
            return Ok((Node::Cond(Box::new(left), Box::new(a), Box::new(b)), ty));
        }
        Ok((left, lt))
    }

    fn unary(&mut self) -> Result<(Node, Ty), CompileError> {
        let t = self.peek().clone();
        let op = match t.tok {
            Tok::Op("!") => Some("!"),
            Tok::Ident("not") => Some("!"),
            Tok::Op("-") => Some("-"),
            Tok::Op("+") => Some("+"),
            _ => None,
        };
        let Some(op) = op else {
            return self.postfix();
        };
        self.bump();
        let prec = if op == "!" { 50 } else { 90 };
        let (n, ty) = self.expression(prec)?;
        if op == "!" {
            if !ty.is(Ty::Bool) {
                let word = if matches!(t.tok, Tok::Ident(_)) {
                    "not"
                } else {
                    "!"
                };
                return Ok(self.type_error(CompileError::at(
                    format!("invalid operation: {word} (mismatched type {ty})"),
                    t.pos,
                )));
            }
            return Ok((Node::Not(Box::new(n)), Ty::Bool));
        }
        if !ty.numeric() {
            return Ok(self.type_error(CompileError::at(
                format!("invalid operation: {op} (mismatched type {ty})"),
                t.pos,
            )));
        }
        Ok((Node::Unary(op, Box::new(n)), ty))
    }

    fn postfix(&mut self) -> Result<(Node, Ty), CompileError> {
        let (mut n, mut ty) = self.primary()?;
        loop {
            if self.is_op("[") {
                let pos = self.peek().pos;
                self.bump();
                let (idx, it) = self.expression(0)?;
                self.expect("]")?;
                let err = match ty {
                    Ty::Array | Ty::Any if it.is(Ty::Int) => None,
                    Ty::Str if it.is(Ty::Int) => None,
                    Ty::Array | Ty::Str => Some(format!("non-integer slice index {it}")),
                    other => Some(format!("type {other} does not support indexing")),
                };
                if let Some(e) = err {
                    (n, ty) = self.type_error(CompileError::at(e, pos));
                } else {
                    ty = if ty == Ty::Str { Ty::Str } else { Ty::Any };
                    n = Node::Index(Box::new(n), Box::new(idx));
                }
            } else if self.is_op(".") || self.is_op("?.") {
                let pos = self.peek().pos;
                self.bump();
                if !matches!(self.bump().tok, Tok::Ident(_)) {
                    self.i -= 1;
                    return Err(self.unexpected());
                }
                (n, ty) = self.type_error(CompileError::at(
                    "member access is not supported by ringdns's view expressions",
                    pos,
                ));
            } else {
                return Ok((n, ty));
            }
        }
    }

    fn primary(&mut self) -> Result<(Node, Ty), CompileError> {
        if matches!(self.peek().tok, Tok::Eof) {
            return Err(self.unexpected());
        }
        let t = self.bump();
        match t.tok {
            Tok::Int(v) => Ok((Node::Lit(Value::Int(v)), Ty::Int)),
            Tok::Float(v) => Ok((Node::Lit(Value::Float(v)), Ty::Float)),
            Tok::Str => Ok((Node::Lit(Value::Str(t.text)), Ty::Str)),
            Tok::Op("(") => {
                let r = self.expression(0)?;
                self.expect(")")?;
                Ok(r)
            }
            Tok::Op("[") => {
                let mut items = Vec::new();
                while !self.is_op("]") {
                    items.push(self.expression(0)?.0);
                    if !self.is_op("]") {
                        self.expect(",")?;
                    }
                }
                self.bump();
                Ok((Node::Array(items), Ty::Array))
            }
            Tok::Ident("true") => Ok((Node::Lit(Value::Bool(true)), Ty::Bool)),
            Tok::Ident("false") => Ok((Node::Lit(Value::Bool(false)), Ty::Bool)),
            Tok::Ident("nil") => Ok((Node::Lit(Value::Nil), Ty::Nil)),
            Tok::Ident(name) => self.call(name, t.pos),
            _ => {
                self.i -= 1;
                Err(self.unexpected())
            }
        }
    }

    fn args(&mut self) -> Result<Vec<(Node, Ty, usize)>, CompileError> {
        self.expect("(")?;
        let mut args = Vec::new();
        while !self.is_op(")") {
            let pos = self.peek().pos;
            let (n, t) = self.expression(0)?;
            args.push((n, t, pos));
            if !self.is_op(")") {
                self.expect(",")?;
            }
        }
        self.bump();
        Ok(args)
    }

    fn call(&mut self, name: &str, pos: usize) -> Result<(Node, Ty), CompileError> {
        let called = self.is_op("(");
        let args = if called { self.args()? } else { Vec::new() };
        let err = |m: String| CompileError::at(m, pos);
        let checked = if let Some(sig) = self.env.iter().find(|s| s.name == name) {
            if called {
                check_args(name, sig.args, &args, pos).map(|()| {
                    let node = Node::Call(sig.name, args.into_iter().map(|a| a.0).collect());
                    (node, sig.ret)
                })
            } else {
                Err(err(format!("{name} is a function: call it as {name}()")))
            }
        } else if let Some(b) = BUILTINS.iter().find(|b| **b == name).filter(|_| called) {
            builtin(b, args, pos)
        } else if called && OTHER_BUILTINS.contains(&name) {
            Err(err(format!(
                "the builtin {name}() is not supported by ringdns's view expressions"
            )))
        } else {
            Err(err(format!("unknown name {name}")))
        };
        Ok(checked.unwrap_or_else(|e| self.type_error(e)))
    }

    fn binary(
        &mut self,
        op: &'static str,
        l: Node,
        lt: Ty,
        r: Node,
        rt: Ty,
        pos: usize,
    ) -> Result<(Node, Ty), CompileError> {
        let mismatch = || {
            CompileError::at(
                format!("invalid operation: {op} (mismatched types {lt} and {rt})"),
                pos,
            )
        };
        let any = lt == Ty::Any || rt == Ty::Any;
        let ty = match op {
            "or" | "||" | "and" | "&&" => {
                if !(lt.is(Ty::Bool) && rt.is(Ty::Bool)) {
                    return Err(mismatch());
                }
                Ty::Bool
            }
            "==" | "!=" => {
                let ok = any
                    || lt == Ty::Nil
                    || rt == Ty::Nil
                    || lt == rt
                    || (lt.numeric() && rt.numeric());
                if !ok {
                    return Err(mismatch());
                }
                Ty::Bool
            }
            "<" | ">" | "<=" | ">=" => {
                let ok = any || (lt.numeric() && rt.numeric()) || (lt == Ty::Str && rt == Ty::Str);
                if !ok {
                    return Err(mismatch());
                }
                Ty::Bool
            }
            "in" => {
                if !rt.is(Ty::Array) {
                    return Err(mismatch());
                }
                Ty::Bool
            }
            "matches" => {
                if !(lt.is(Ty::Str) && rt.is(Ty::Str)) {
                    return Err(mismatch());
                }
                if let Node::Lit(Value::Str(p)) = &r {
                    let re = regex::Regex::new(p)
                        .map_err(|e| CompileError::at(format!("error parsing regexp: {e}"), pos))?;
                    return Ok((Node::Matches(Box::new(l), Box::new(re)), Ty::Bool));
                }
                Ty::Bool
            }
            "contains" | "startsWith" | "endsWith" => {
                if !(lt.is(Ty::Str) && rt.is(Ty::Str)) {
                    return Err(mismatch());
                }
                Ty::Bool
            }
            ".." => {
                if !(lt.is(Ty::Int) && rt.is(Ty::Int)) {
                    return Err(mismatch());
                }
                Ty::Array
            }
            "+" if lt == Ty::Str && rt == Ty::Str => Ty::Str,
            "+" | "-" | "*" => {
                if !(lt.numeric() && rt.numeric()) {
                    return Err(mismatch());
                }
                if any {
                    Ty::Any
                } else if lt == Ty::Int && rt == Ty::Int {
                    Ty::Int
                } else {
                    Ty::Float
                }
            }
            "/" | "**" | "^" => {
                if !(lt.numeric() && rt.numeric()) {
                    return Err(mismatch());
                }
                Ty::Float
            }
            "%" => {
                if !(lt.is(Ty::Int) && rt.is(Ty::Int)) {
                    return Err(mismatch());
                }
                Ty::Int
            }
            "??" => {
                if lt == rt {
                    lt
                } else {
                    Ty::Any
                }
            }
            _ => return Err(mismatch()),
        };
        Ok((Node::Binary(op, Box::new(l), Box::new(r)), ty))
    }
}

fn builtin(
    name: &'static str,
    args: Vec<(Node, Ty, usize)>,
    pos: usize,
) -> Result<(Node, Ty), CompileError> {
    let (want, ret): (&[Ty], Ty) = match name {
        "len" => (&[Ty::Any], Ty::Int),
        "lower" | "upper" | "trim" => (&[Ty::Str], Ty::Str),
        "trimPrefix" | "trimSuffix" => (&[Ty::Str, Ty::Str], Ty::Str),
        "hasPrefix" | "hasSuffix" => (&[Ty::Str, Ty::Str], Ty::Bool),
        "split" => (&[Ty::Str, Ty::Str], Ty::Array),
        "join" => (&[Ty::Array, Ty::Str], Ty::Str),
        "indexOf" => (&[Ty::Str, Ty::Str], Ty::Int),
        "int" => (&[Ty::Any], Ty::Int),
        "float" => (&[Ty::Any], Ty::Float),
        "string" => (&[Ty::Any], Ty::Str),
        _ => (&[Ty::Any], Ty::Any), // abs
    };
    check_args(name, want, &args, pos)?;
    let ret = if name == "abs" { args[0].1 } else { ret };
    Ok((
        Node::Builtin(name, args.into_iter().map(|a| a.0).collect()),
        ret,
    ))
}

/// Argument count and types of a call to `name`.
fn check_args(
    name: &str,
    want: &[Ty],
    args: &[(Node, Ty, usize)],
    pos: usize,
) -> Result<(), CompileError> {
    if args.len() < want.len() {
        return Err(CompileError::at(
            format!("not enough arguments to call {name}"),
            pos,
        ));
    }
    if args.len() > want.len() {
        return Err(CompileError::at(
            format!("too many arguments to call {name}"),
            pos,
        ));
    }
    for ((_, t, p), w) in args.iter().zip(want) {
        if *w != Ty::Any && !t.is(*w) && *t != Ty::Nil {
            return Err(CompileError::at(
                format!("cannot use {t} as argument (type {w}) to call {name} "),
                *p,
            ));
        }
    }
    Ok(())
}

impl Program {
    /// Compiles `src` against the environment `env`.
    pub fn compile(src: &str, env: &[Sig]) -> Result<Self, CompileError> {
        let toks = lex(src)?;
        let mut p = Parser {
            toks,
            i: 0,
            env,
            type_err: None,
            depth: 0,
        };
        let (root, _) = p.expression(0)?;
        if !matches!(p.peek().tok, Tok::Eof) {
            return Err(p.unexpected());
        }
        match p.type_err {
            Some(e) => Err(e),
            None => Ok(Self { root }),
        }
    }

    /// Runs the program.
    pub fn run(&self, env: &dyn Env) -> Result<Value, String> {
        eval(&self.root, env)
    }
}

fn truthy(v: &Value) -> Result<bool, String> {
    match v {
        Value::Bool(b) => Ok(*b),
        other => Err(format!("cannot use {} as bool", kind(other))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Nil => "nil",
        Value::Bool(_) => "bool",
        Value::Int(_) => "int",
        Value::Float(_) => "float64",
        Value::Str(_) => "string",
        Value::Array(_) => "[]interface {}",
    }
}

fn num(v: &Value) -> Option<f64> {
    match v {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        _ => None,
    }
}

fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Int(x), Value::Float(y)) | (Value::Float(y), Value::Int(x)) => (*x as f64) == *y,
        _ => a == b,
    }
}

fn eval(n: &Node, env: &dyn Env) -> Result<Value, String> {
    Ok(match n {
        Node::Lit(v) => v.clone(),
        Node::Array(items) => Value::Array(
            items
                .iter()
                .map(|i| eval(i, env))
                .collect::<Result<_, _>>()?,
        ),
        Node::Not(x) => Value::Bool(!truthy(&eval(x, env)?)?),
        Node::Unary(op, x) => match (eval(x, env)?, *op) {
            (Value::Int(i), "-") => Value::Int(i.wrapping_neg()),
            (Value::Float(f), "-") => Value::Float(-f),
            (v @ (Value::Int(_) | Value::Float(_)), _) => v,
            (v, _) => return Err(format!("invalid operation: {op} {}", kind(&v))),
        },
        Node::Cond(c, a, b) => {
            if truthy(&eval(c, env)?)? {
                eval(a, env)?
            } else {
                eval(b, env)?
            }
        }
        Node::Matches(l, re) => match eval(l, env)? {
            Value::Str(s) => Value::Bool(re.is_match(&s)),
            v => return Err(format!("cannot match {}", kind(&v))),
        },
        Node::Index(a, i) => {
            let (a, i) = (eval(a, env)?, eval(i, env)?);
            let Value::Int(i) = i else {
                return Err("index is not an integer".into());
            };
            // A negative index counts from the end.
            let at = |len: usize| {
                let k = if i < 0 { i + len as i64 } else { i };
                usize::try_from(k)
                    .ok()
                    .filter(|&k| k < len)
                    .ok_or_else(|| format!("index out of range: {i} (array length is {len})"))
            };
            match a {
                Value::Array(mut v) => v.swap_remove(at(v.len())?),
                Value::Str(s) => {
                    let chars: Vec<char> = s.chars().collect();
                    Value::Str(chars[at(chars.len())?].to_string())
                }
                v => return Err(format!("cannot index {}", kind(&v))),
            }
        }
        Node::Call(name, args) => {
            let args: Vec<Value> = args
                .iter()
                .map(|a| eval(a, env))
                .collect::<Result<_, _>>()?;
            env.call(name, &args)?
        }
        Node::Builtin(name, args) => {
            let args: Vec<Value> = args
                .iter()
                .map(|a| eval(a, env))
                .collect::<Result<_, _>>()?;
            run_builtin(name, args)?
        }
        Node::Binary(op, l, r) => binary(op, l, r, env)?,
    })
}

fn binary(op: &str, l: &Node, r: &Node, env: &dyn Env) -> Result<Value, String> {
    // Short-circuits first.
    match op {
        "||" | "or" => {
            return Ok(Value::Bool(
                truthy(&eval(l, env)?)? || truthy(&eval(r, env)?)?,
            ));
        }
        "&&" | "and" => {
            return Ok(Value::Bool(
                truthy(&eval(l, env)?)? && truthy(&eval(r, env)?)?,
            ));
        }
        "??" => {
            let a = eval(l, env)?;
            return if a == Value::Nil { eval(r, env) } else { Ok(a) };
        }
        _ => {}
    }
    let (a, b) = (eval(l, env)?, eval(r, env)?);
    let bad = || format!("invalid operation: {} {op} {}", kind(&a), kind(&b));
    Ok(match op {
        "==" => Value::Bool(equal(&a, &b)),
        "!=" => Value::Bool(!equal(&a, &b)),
        "<" | ">" | "<=" | ">=" => {
            let ord = match (&a, &b) {
                (Value::Str(x), Value::Str(y)) => x.cmp(y),
                _ => {
                    let (Some(x), Some(y)) = (num(&a), num(&b)) else {
                        return Err(bad());
                    };
                    x.partial_cmp(&y).ok_or_else(bad)?
                }
            };
            Value::Bool(match op {
                "<" => ord.is_lt(),
                ">" => ord.is_gt(),
                "<=" => ord.is_le(),
                _ => ord.is_ge(),
            })
        }
        "in" => match &b {
            Value::Array(v) => Value::Bool(v.iter().any(|x| equal(x, &a))),
            _ => return Err(bad()),
        },
        "matches" => match (&a, &b) {
            (Value::Str(s), Value::Str(p)) => {
                let re = regex::Regex::new(p).map_err(|e| format!("error parsing regexp: {e}"))?;
                Value::Bool(re.is_match(s))
            }
            _ => return Err(bad()),
        },
        "contains" | "startsWith" | "endsWith" => match (&a, &b) {
            (Value::Str(s), Value::Str(p)) => Value::Bool(match op {
                "contains" => s.contains(p.as_str()),
                "startsWith" => s.starts_with(p.as_str()),
                _ => s.ends_with(p.as_str()),
            }),
            _ => return Err(bad()),
        },
        ".." => match (&a, &b) {
            (Value::Int(x), Value::Int(y)) => {
                if y.saturating_sub(*x) > 1_000_000 {
                    return Err("range too large".into());
                }
                Value::Array((*x..=*y).map(Value::Int).collect())
            }
            _ => return Err(bad()),
        },
        "+" => match (&a, &b) {
            (Value::Str(x), Value::Str(y)) => Value::Str(format!("{x}{y}")),
            (Value::Int(x), Value::Int(y)) => Value::Int(x.wrapping_add(*y)),
            _ => Value::Float(num(&a).ok_or_else(bad)? + num(&b).ok_or_else(bad)?),
        },
        "-" => match (&a, &b) {
            (Value::Int(x), Value::Int(y)) => Value::Int(x.wrapping_sub(*y)),
            _ => Value::Float(num(&a).ok_or_else(bad)? - num(&b).ok_or_else(bad)?),
        },
        "*" => match (&a, &b) {
            (Value::Int(x), Value::Int(y)) => Value::Int(x.wrapping_mul(*y)),
            _ => Value::Float(num(&a).ok_or_else(bad)? * num(&b).ok_or_else(bad)?),
        },
        "/" => Value::Float(num(&a).ok_or_else(bad)? / num(&b).ok_or_else(bad)?),
        "%" => match (&a, &b) {
            (Value::Int(_), Value::Int(0)) => return Err("integer divide by zero".into()),
            (Value::Int(x), Value::Int(y)) => Value::Int(x.wrapping_rem(*y)),
            _ => return Err(bad()),
        },
        "**" | "^" => Value::Float(num(&a).ok_or_else(bad)?.powf(num(&b).ok_or_else(bad)?)),
        _ => return Err(bad()),
    })
}

fn run_builtin(name: &str, mut args: Vec<Value>) -> Result<Value, String> {
    let s = |v: &Value| match v {
        Value::Str(s) => Ok(s.clone()),
        other => Err(format!("cannot use {} as string", kind(other))),
    };
    Ok(match name {
        "len" => Value::Int(match &args[0] {
            Value::Str(x) => x.chars().count() as i64,
            Value::Array(v) => v.len() as i64,
            other => return Err(format!("invalid argument for len (type {})", kind(other))),
        }),
        "lower" => Value::Str(s(&args[0])?.to_lowercase()),
        "upper" => Value::Str(s(&args[0])?.to_uppercase()),
        "trim" => Value::Str(s(&args[0])?.trim().to_owned()),
        "trimPrefix" => {
            let (x, p) = (s(&args[0])?, s(&args[1])?);
            Value::Str(x.strip_prefix(p.as_str()).unwrap_or(&x).to_owned())
        }
        "trimSuffix" => {
            let (x, p) = (s(&args[0])?, s(&args[1])?);
            Value::Str(x.strip_suffix(p.as_str()).unwrap_or(&x).to_owned())
        }
        "hasPrefix" => Value::Bool(s(&args[0])?.starts_with(s(&args[1])?.as_str())),
        "hasSuffix" => Value::Bool(s(&args[0])?.ends_with(s(&args[1])?.as_str())),
        "split" => {
            let (x, sep) = (s(&args[0])?, s(&args[1])?);
            let parts: Vec<Value> = if sep.is_empty() {
                x.chars().map(|c| Value::Str(c.to_string())).collect()
            } else {
                x.split(sep.as_str())
                    .map(|p| Value::Str(p.to_owned()))
                    .collect()
            };
            Value::Array(parts)
        }
        "join" => {
            let sep = s(&args[1])?;
            let Value::Array(v) = std::mem::replace(&mut args[0], Value::Nil) else {
                return Err("join: not an array".into());
            };
            let parts = v.iter().map(s).collect::<Result<Vec<_>, _>>()?;
            Value::Str(parts.join(&sep))
        }
        "indexOf" => {
            let (x, p) = (s(&args[0])?, s(&args[1])?);
            Value::Int(
                x.find(p.as_str())
                    .map_or(-1, |i| x[..i].chars().count() as i64),
            )
        }
        "int" => Value::Int(match &args[0] {
            Value::Int(i) => *i,
            Value::Float(f) => *f as i64,
            Value::Str(x) => x.trim().parse().map_err(|e| format!("{e}"))?,
            other => return Err(format!("invalid operation: int({})", kind(other))),
        }),
        "float" => Value::Float(match &args[0] {
            Value::Int(i) => *i as f64,
            Value::Float(f) => *f,
            Value::Str(x) => x.trim().parse().map_err(|e| format!("{e}"))?,
            other => return Err(format!("invalid operation: float({})", kind(other))),
        }),
        "string" => Value::Str(match &args[0] {
            Value::Nil => "<nil>".to_owned(),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => f.to_string(),
            Value::Str(x) => x.clone(),
            Value::Array(_) => return Err("string: arrays are not supported".into()),
        }),
        "abs" => match &args[0] {
            Value::Int(i) => Value::Int(i.wrapping_abs()),
            Value::Float(f) => Value::Float(f.abs()),
            other => return Err(format!("invalid argument for abs (type {})", kind(other))),
        },
        _ => return Err(format!("unknown builtin {name}")),
    })
}
