//! Executing a parsed template (Go's `text/template/exec.go`): the walk, the
//! pipelines, fields, variables, the built-in functions and the error texts.

use std::rc::Rc;

use super::parse::{Arg, Branch, Cmd, Node, Number, Pipe, Pos};
use super::value::{Spec, Value, format_value, sprint_v};

/// A function a template may call besides the built-ins.
pub struct Func {
    /// Its name.
    pub name: &'static str,
    /// Parameter types (`"string"`, `"int"`).
    pub params: &'static [&'static str],
    /// The function.
    pub call: fn(&[Value]) -> Result<Value, String>,
}

/// The built-ins (`text/template/funcs.go`).
pub(crate) const BUILTINS: [&str; 19] = [
    "and", "call", "html", "index", "slice", "js", "len", "not", "or", "print", "printf",
    "println", "urlquery", "eq", "ge", "gt", "le", "lt", "ne",
];

pub(super) enum Flow {
    Normal,
    Break,
    Continue,
}

pub(super) struct State<'t> {
    pub(crate) name: &'t str,
    pub(crate) text: &'t str,
    pub(crate) funcs: &'t [Func],
    pub(crate) vars: Vec<(String, Value)>,
    pub(crate) out: String,
    /// Range iterations so far.
    pub(crate) steps: u64,
    /// The node being evaluated, for errors.
    pub(crate) at: (Pos, String),
}

type R<T> = Result<T, String>;

/// Range iterations one execution may run (Go has no limit; a template runs
/// per query on a worker).
const MAX_STEPS: u64 = 100_000;

impl State<'_> {
    fn at(&mut self, pos: Pos, what: String) {
        self.at = (pos, what);
    }

    fn errorf(&self, msg: impl std::fmt::Display) -> String {
        let (pos, what) = &self.at;
        let pos = (*pos).min(self.text.len());
        let before = &self.text[..pos];
        let line = 1 + before.matches('\n').count();
        let col = match before.rfind('\n') {
            Some(nl) => pos - nl - 1,
            None => pos,
        };
        let ctx = what;
        format!(
            "template: {}:{}:{}: executing {:?} at <{}>: {}",
            self.name, line, col, self.name, ctx, msg
        )
    }

    fn var(&self, name: &str) -> R<Value> {
        self.vars
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| self.errorf(format!("undefined variable: {name}")))
    }

    fn set_var(&mut self, name: &str, v: Value) -> R<()> {
        match self.vars.iter_mut().rev().find(|(n, _)| n == name) {
            Some(slot) => {
                slot.1 = v;
                Ok(())
            }
            None => Err(self.errorf(format!("undefined variable: {name}"))),
        }
    }

    pub(super) fn walk_list(&mut self, dot: &Value, list: &[Node]) -> R<Flow> {
        for n in list {
            match self.walk(dot, n)? {
                Flow::Normal => {}
                f => return Ok(f),
            }
        }
        Ok(Flow::Normal)
    }

    fn walk(&mut self, dot: &Value, n: &Node) -> R<Flow> {
        match n {
            Node::Text(t) => self.out.push_str(t),
            Node::Action(pos, pipe) => {
                self.at(*pos, pipe.string());
                let v = self.pipeline(dot, pipe)?;
                if pipe.decl.is_empty() {
                    self.print(&v)?;
                }
            }
            Node::If(b) => return self.branch(dot, b, false),
            Node::With(b) => return self.branch(dot, b, true),
            Node::Range(b) => return self.range(dot, b),
            Node::Break(_) => return Ok(Flow::Break),
            Node::Continue(_) => return Ok(Flow::Continue),
        }
        Ok(Flow::Normal)
    }

    fn print(&mut self, v: &Value) -> R<()> {
        match v {
            Value::Missing => self.out.push_str("<no value>"),
            _ => {
                let mut s = String::new();
                format_value(&mut s, v, 'v', &Spec::default()).map_err(|e| self.errorf(e))?;
                self.out.push_str(&s);
            }
        }
        Ok(())
    }

    fn branch(&mut self, dot: &Value, b: &Branch, with: bool) -> R<Flow> {
        let mark = self.vars.len();
        let v = self.pipeline(dot, &b.pipe)?;
        let r = if v.truth() {
            if with {
                self.walk_list(&v, &b.list)
            } else {
                self.walk_list(dot, &b.list)
            }
        } else if let Some(e) = &b.else_list {
            self.walk_list(dot, e)
        } else {
            Ok(Flow::Normal)
        };
        self.vars.truncate(mark);
        r
    }

    fn range(&mut self, dot: &Value, b: &Branch) -> R<Flow> {
        let mark = self.vars.len();
        let v = self.pipeline_value(dot, &b.pipe)?;
        // Elements one at a time (a range over a number is not collected).
        let count: u64 = match &v {
            Value::List(_, l) => l.len() as u64,
            Value::Map(_, m, _) => m.len() as u64,
            Value::Int(n, _) => u64::try_from(*n).unwrap_or(0),
            Value::Uint(n, _) => *n,
            Value::Missing | Value::Nil => 0,
            other => {
                return Err(self.errorf(format!("range can't iterate over {}", sprint_v(other))));
            }
        };
        let number = matches!(v, Value::Int(..) | Value::Uint(..));
        if number && b.pipe.decl.len() > 1 {
            return Err(self.errorf(format!(
                "can't use {} to iterate over more than one variable",
                sprint_v(&v)
            )));
        }
        let keys: Vec<String> = match &v {
            Value::Map(_, m, _) => m.keys().cloned().collect(),
            _ => Vec::new(),
        };
        let one_var_is_value = !number;
        let mut ran = false;
        for i in 0..count {
            let (k, e) = match &v {
                Value::List(_, l) => (Value::int(i as i64), l[i as usize].clone()),
                Value::Map(_, m, _) => {
                    let key = &keys[i as usize];
                    (
                        Value::str(key),
                        m.get(key).cloned().unwrap_or(Value::Missing),
                    )
                }
                Value::Uint(_, t) => (Value::Uint(i, t), Value::Uint(i, t)),
                _ => (Value::int(i as i64), Value::int(i as i64)),
            };
            ran = true;
            self.steps += 1;
            if self.steps > MAX_STEPS {
                return Err(self.errorf(format!(
                    "more than {MAX_STEPS} range iterations (a limit of ringdns)"
                )));
            }
            let inner = self.vars.len();
            match b.pipe.decl.len() {
                1 => {
                    let val = if one_var_is_value {
                        e.clone()
                    } else {
                        k.clone()
                    };
                    self.bind(&b.pipe, 0, val)?;
                }
                2 => {
                    self.bind(&b.pipe, 0, k)?;
                    self.bind(&b.pipe, 1, e.clone())?;
                }
                _ => {}
            }
            let f = self.walk_list(&e, &b.list);
            self.vars.truncate(inner);
            match f? {
                Flow::Break => break,
                Flow::Continue | Flow::Normal => {}
            }
        }
        if !ran {
            if let Some(el) = &b.else_list {
                let f = self.walk_list(dot, el);
                self.vars.truncate(mark);
                return f;
            }
        }
        self.vars.truncate(mark);
        Ok(Flow::Normal)
    }

    fn bind(&mut self, p: &Pipe, i: usize, v: Value) -> R<()> {
        if p.is_assign {
            self.set_var(&p.decl[i], v)
        } else {
            self.vars.push((p.decl[i].clone(), v));
            Ok(())
        }
    }

    fn pipeline(&mut self, dot: &Value, p: &Pipe) -> R<Value> {
        let value = self.pipeline_value(dot, p)?;
        for d in &p.decl {
            if p.is_assign {
                self.set_var(d, value.clone())?;
            } else {
                self.vars.push((d.clone(), value.clone()));
            }
        }
        Ok(value)
    }

    /// The pipeline's value, its variables not bound (a range binds its own).
    fn pipeline_value(&mut self, dot: &Value, p: &Pipe) -> R<Value> {
        self.at(p.pos, p.string());
        let mut value: Option<Value> = None;
        for c in &p.cmds {
            let v = self.command(dot, c, value.take())?;
            value = Some(v);
        }
        Ok(value.unwrap_or(Value::Missing))
    }

    fn command(&mut self, dot: &Value, c: &Cmd, fin: Option<Value>) -> R<Value> {
        let first = &c.args[0];
        match first {
            Arg::Field(pos, idents) => {
                self.at(*pos, first.string());
                self.field_chain(dot, dot.clone(), idents, &c.args[1..], fin, *pos, first)
            }
            Arg::Chain(pos, inner, idents) => {
                self.at(*pos, first.string());
                if idents.is_empty() {
                    return Err(self.errorf("internal error: no fields in evalChainNode"));
                }
                let recv = self.arg_value(dot, inner)?;
                self.field_chain(dot, recv, idents, &c.args[1..], fin, *pos, first)
            }
            Arg::Ident(pos, name) => {
                self.at(*pos, name.clone());
                self.function(dot, name, c, fin)
            }
            Arg::Pipe(p) => {
                self.not_a_function(&c.args, fin.is_some())?;
                let mark = self.vars.len();
                let v = self.pipeline(dot, p);
                self.vars.truncate(mark);
                v
            }
            Arg::Var(pos, name, idents) => {
                self.at(*pos, first.string());
                let v = self.var(name)?;
                if idents.is_empty() {
                    self.not_a_function(&c.args, fin.is_some())?;
                    return Ok(v);
                }
                self.field_chain(dot, v, idents, &c.args[1..], fin, *pos, first)
            }
            _ => {
                self.at(first.pos(), first.string());
                self.not_a_function(&c.args, fin.is_some())?;
                match first {
                    Arg::Bool(_, b) => Ok(Value::Bool(*b)),
                    Arg::Dot(_) => Ok(dot.clone()),
                    Arg::Nil(_) => Err(self.errorf("nil is not a command")),
                    Arg::Num(_, n) => self.ideal(n),
                    Arg::Str(_, _, s) => Ok(Value::str(s)),
                    _ => Err(self.errorf(format!("can't evaluate command {:?}", first.string()))),
                }
            }
        }
    }

    fn not_a_function(&self, args: &[Arg], fin: bool) -> R<()> {
        if args.len() > 1 || fin {
            return Err(self.errorf(format!(
                "can't give argument to non-function {}",
                args[0].string()
            )));
        }
        Ok(())
    }

    /// An untyped constant used as a value: int, float or rune.
    fn ideal(&self, n: &Number) -> R<Value> {
        if n.is_char {
            return Ok(Value::Int(n.int.unwrap_or(0), "int32"));
        }
        if n.float_syntax {
            if let Some(f) = n.float {
                return Ok(Value::Float(f));
            }
        }
        match (n.int, n.uint) {
            (Some(i), _) => Ok(Value::int(i)),
            (None, Some(_)) => Err(self.errorf(format!("{} overflows int", n.text))),
            _ => n
                .float
                .map(Value::Float)
                .ok_or_else(|| self.errorf(format!("{} overflows int", n.text))),
        }
    }

    /// An operand's value (an argument).
    fn arg_value(&mut self, dot: &Value, a: &Arg) -> R<Value> {
        self.at(a.pos(), a.string());
        match a {
            Arg::Dot(_) => Ok(dot.clone()),
            Arg::Nil(_) => Ok(Value::Nil),
            Arg::Bool(_, b) => Ok(Value::Bool(*b)),
            Arg::Num(_, n) => self.ideal(n),
            Arg::Str(_, _, s) => Ok(Value::str(s)),
            Arg::Field(pos, idents) => {
                self.field_chain(dot, dot.clone(), idents, &[], None, *pos, a)
            }
            Arg::Var(pos, name, idents) => {
                let v = self.var(name)?;
                if idents.is_empty() {
                    Ok(v)
                } else {
                    self.field_chain(dot, v, idents, &[], None, *pos, a)
                }
            }
            Arg::Pipe(p) => {
                let mark = self.vars.len();
                let v = self.pipeline(dot, p);
                self.vars.truncate(mark);
                v
            }
            Arg::Chain(pos, inner, idents) => {
                let recv = self.arg_value(dot, inner)?;
                self.field_chain(dot, recv, idents, &[], None, *pos, a)
            }
            Arg::Ident(_, name) => {
                let c = Cmd {
                    pos: a.pos(),
                    args: vec![a.clone()],
                };
                self.function(dot, name, &c, None)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn field_chain(
        &mut self,
        dot: &Value,
        mut recv: Value,
        idents: &[String],
        args: &[Arg],
        fin: Option<Value>,
        pos: Pos,
        node: &Arg,
    ) -> R<Value> {
        let n = idents.len();
        for (i, id) in idents.iter().enumerate() {
            let last = i + 1 == n;
            self.at(pos, node.string());
            recv = if last {
                self.field(dot, id, args, fin.clone(), recv)?
            } else {
                self.field(dot, id, &[], None, recv)?
            };
        }
        Ok(recv)
    }

    fn field(
        &mut self,
        dot: &Value,
        name: &str,
        args: &[Arg],
        fin: Option<Value>,
        recv: Value,
    ) -> R<Value> {
        let has_args = !args.is_empty() || fin.is_some();
        match &recv {
            Value::Missing => Ok(Value::Missing),
            Value::Obj(o) => {
                if let Some(arity) = o.method(name) {
                    let mut vals = Vec::with_capacity(args.len() + 1);
                    for a in args {
                        let v = self.arg_value(dot, a)?;
                        vals.push(v);
                    }
                    if let Some(f) = fin {
                        vals.push(f);
                    }
                    if vals.len() != arity {
                        return Err(self.errorf(format!(
                            "wrong number of args for {name}: want {arity} got {}",
                            vals.len()
                        )));
                    }
                    return o
                        .call(name, &vals)
                        .map_err(|e| self.errorf(format!("error calling {name}: {e}")));
                }
                if let Some(v) = o.field(name) {
                    if has_args {
                        return Err(self.errorf(format!(
                            "{name} has arguments but cannot be invoked as function"
                        )));
                    }
                    return Ok(v);
                }
                if o.unexported(name) {
                    return Err(self.errorf(format!(
                        "{name} is an unexported field of struct type {}",
                        o.type_name()
                    )));
                }
                Err(self.errorf(format!(
                    "can't evaluate field {name} in type {}",
                    o.type_name()
                )))
            }
            Value::Map(_, m, _) => {
                if has_args {
                    return Err(self.errorf(format!("{name} is not a method but has arguments")));
                }
                Ok(m.get(name).cloned().unwrap_or(Value::Missing))
            }
            Value::Nil => Err(self.errorf(format!("nil pointer evaluating interface {{}}.{name}"))),
            other => Err(self.errorf(format!(
                "can't evaluate field {name} in type {}",
                other.type_name()
            ))),
        }
    }

    fn function(&mut self, dot: &Value, name: &str, c: &Cmd, fin: Option<Value>) -> R<Value> {
        let args = &c.args[1..];
        let user = self.funcs.iter().find(|f| f.name == name);
        // Go's `evalCall` checks the count first, at the function's name.
        let (fixed, variadic) = match (name, user) {
            (_, Some(f)) => (f.params.len(), false),
            ("not" | "len", _) => (1, false),
            ("ne" | "lt" | "le" | "gt" | "ge", _) => (2, false),
            ("print" | "println" | "html" | "js" | "urlquery", _) => (0, true),
            _ => (1, true),
        };
        let n_in = args.len() + usize::from(fin.is_some());
        if variadic && n_in < fixed {
            return Err(self.errorf(format!(
                "wrong number of args for {name}: want at least {fixed} got {}",
                args.len()
            )));
        }
        if !variadic && n_in != fixed {
            return Err(self.errorf(format!(
                "wrong number of args for {name}: want {fixed} got {n_in}"
            )));
        }
        if name == "and" || name == "or" {
            let and = name == "and";
            let mut last = Value::Missing;
            for a in args {
                last = self.arg_value(dot, a)?;
                if last.truth() != and {
                    return Ok(last);
                }
            }
            if let Some(f) = fin {
                last = f;
            }
            return Ok(last);
        }
        let typed: &[&str] = match (name, user) {
            (_, Some(f)) => f.params,
            ("printf", _) => &["string"],
            _ => &[],
        };
        let mut vals = Vec::with_capacity(n_in);
        for (i, a) in args.iter().enumerate() {
            let v = self.arg_value(dot, a)?;
            let v = match typed.get(i) {
                Some(t) => self.convert(a, v, t)?,
                None => v,
            };
            vals.push(v);
        }
        if let Some(f) = fin {
            vals.push(f);
        }
        self.at(c.pos, c.string());
        if let Some(f) = user {
            return (f.call)(&vals).map_err(|e| self.errorf(format!("error calling {name}: {e}")));
        }
        let call = |r: R<Value>| r.map_err(|e| self.errorf(format!("error calling {name}: {e}")));
        match name {
            "not" => Ok(Value::Bool(!vals[0].truth())),
            "len" => call(builtin_len(&vals[0])),
            "index" => call(builtin_index(&vals[0], &vals[1..])),
            "slice" => call(builtin_slice(&vals[0], &vals[1..])),
            "print" => Ok(Value::str(&sprint(&vals))),
            "println" => Ok(Value::str(&sprintln(&vals))),
            "printf" => {
                let Value::Str(f) = &vals[0] else {
                    return Err(self.errorf(format!(
                        "wrong type for value; expected string; got {}",
                        vals[0].type_name()
                    )));
                };
                call(super::printf::sprintf(f, &vals[1..]).map(|s| Value::str(&s)))
            }
            "html" => Ok(Value::str(&html_escape(&eval_args(&vals)))),
            "js" => Ok(Value::str(&js_escape(&eval_args(&vals)))),
            "urlquery" => Ok(Value::str(&query_escape(&eval_args(&vals)))),
            "eq" => call(builtin_eq(&vals[0], &vals[1..]).map(Value::Bool)),
            "ne" => call(builtin_eq(&vals[0], &vals[1..]).map(|b| Value::Bool(!b))),
            "lt" | "le" | "gt" | "ge" => {
                call(builtin_cmp(name, &vals[0], &vals[1]).map(Value::Bool))
            }
            "call" => call(Err(format!(
                "non-function {} of type {}",
                args.first().map_or(String::new(), Arg::string),
                vals[0].type_name()
            ))),
            _ => Err(self.errorf(format!("{name:?} is not a defined function"))),
        }
    }

    /// An argument for a typed parameter (Go's `evalArg`).
    fn convert(&self, a: &Arg, v: Value, ty: &str) -> R<Value> {
        match (ty, a, &v) {
            ("string", Arg::Num(..) | Arg::Bool(..) | Arg::Nil(_), _) => {
                Err(self.errorf(format!("expected string; found {}", a.string())))
            }
            ("int", Arg::Num(_, n), _) => match n.int {
                Some(i) if !n.float_syntax || n.float.is_some_and(|f| f.fract() == 0.0) => {
                    Ok(Value::int(i))
                }
                _ => Err(self.errorf(format!("expected integer; found {}", a.string()))),
            },
            ("int", Arg::Str(..) | Arg::Bool(..) | Arg::Nil(_), _) => {
                Err(self.errorf(format!("expected integer; found {}", a.string())))
            }
            (_, _, Value::Missing) => Err(self.errorf(format!("invalid value; expected {ty}"))),
            ("string", _, Value::Str(_)) | ("int", _, Value::Int(_, "int")) => Ok(v),
            _ => Err(self.errorf(format!(
                "wrong type for value; expected {ty}; got {}",
                v.type_name()
            ))),
        }
    }
}

/// Runs `list` with `data` as dot and `$`.
pub(super) fn execute(st: &mut State<'_>, list: &[Node], data: &Value) -> R<()> {
    st.vars.push(("$".to_owned(), data.clone()));
    st.walk_list(data, list).map(|_| ())
}

fn builtin_len(v: &Value) -> R<Value> {
    match v {
        Value::Str(s) => Ok(Value::int(s.len() as i64)),
        Value::List(_, l) => Ok(Value::int(l.len() as i64)),
        Value::Map(_, m, _) => Ok(Value::int(m.len() as i64)),
        Value::Nil | Value::Missing => Err("len of nil pointer".into()),
        other => Err(format!("len of type {}", other.type_name())),
    }
}

fn index_of(v: &Value, len: usize, cap: usize) -> R<usize> {
    let i = match v {
        Value::Int(i, _) => *i,
        Value::Uint(u, _) => i64::try_from(*u).unwrap_or(i64::MAX),
        Value::Missing | Value::Nil => return Err("cannot index slice/array with nil".into()),
        other => {
            return Err(format!(
                "cannot index slice/array with type {}",
                other.type_name()
            ));
        }
    };
    if i < 0 || i as usize > cap {
        return Err(format!("index out of range: {i}"));
    }
    let _ = len;
    Ok(i as usize)
}

fn builtin_index(item: &Value, idx: &[Value]) -> R<Value> {
    let mut item = item.clone();
    for x in idx {
        item = match &item {
            Value::List(_, l) => {
                let i = index_of(x, l.len(), l.len())?;
                match l.get(i) {
                    Some(e) => e.clone(),
                    // Go's `indexArg` lets the length through; `Index` panics.
                    None => return Err("reflect: slice index out of range".into()),
                }
            }
            Value::Str(s) => {
                let i = index_of(x, s.len(), s.len())?;
                match s.as_bytes().get(i) {
                    Some(b) => Value::Uint(u64::from(*b), "uint8"),
                    None => return Err("reflect: string index out of range".into()),
                }
            }
            Value::Map(_, m, zero) => match x {
                Value::Str(k) => m.get(&**k).cloned().unwrap_or_else(|| (**zero).clone()),
                Value::Missing | Value::Nil => (**zero).clone(),
                other => {
                    return Err(format!(
                        "value has type {}; should be string",
                        other.type_name()
                    ));
                }
            },
            Value::Missing | Value::Nil => return Err("index of untyped nil".into()),
            other => return Err(format!("can't index item of type {}", other.type_name())),
        };
    }
    Ok(item)
}

fn builtin_slice(item: &Value, idx: &[Value]) -> R<Value> {
    if idx.len() > 3 {
        return Err(format!("too many slice indexes: {}", idx.len()));
    }
    let len = match item {
        Value::Str(s) => {
            if idx.len() == 3 {
                return Err("cannot 3-index slice a string".into());
            }
            s.len()
        }
        Value::List(_, l) => l.len(),
        Value::Missing | Value::Nil => return Err("slice of untyped nil".into()),
        other => return Err(format!("can't slice item of type {}", other.type_name())),
    };
    let mut ix = [0usize, len, len];
    for (i, x) in idx.iter().enumerate() {
        ix[i] = index_of(x, len, len)?;
    }
    if ix[0] > ix[1] {
        return Err(format!("invalid slice index: {} > {}", ix[0], ix[1]));
    }
    match item {
        Value::Str(s) => match s.get(ix[0]..ix[1]) {
            Some(sub) => Ok(Value::str(sub)),
            None => Ok(Value::str(&String::from_utf8_lossy(
                &s.as_bytes()[ix[0]..ix[1]],
            ))),
        },
        Value::List(t, l) => Ok(Value::List(t, Rc::new(l[ix[0]..ix[1]].to_vec()))),
        _ => Err("can't slice".into()),
    }
}

#[derive(PartialEq)]
enum Kind {
    Bool,
    Int,
    Uint,
    Float,
    Str,
    Other,
}

fn kind(v: &Value) -> Kind {
    match v {
        Value::Bool(_) => Kind::Bool,
        Value::Int(..) => Kind::Int,
        Value::Uint(..) => Kind::Uint,
        Value::Float(_) => Kind::Float,
        Value::Str(_) => Kind::Str,
        _ => Kind::Other,
    }
}

fn builtin_eq(a: &Value, others: &[Value]) -> R<bool> {
    if others.is_empty() {
        return Err("missing argument for comparison".into());
    }
    let invalid = |v: &Value| matches!(v, Value::Missing | Value::Nil);
    for b in others {
        let same = match (a, b) {
            (Value::Bool(x), Value::Bool(y)) => x == y,
            (Value::Int(x, _), Value::Int(y, _)) => x == y,
            (Value::Uint(x, _), Value::Uint(y, _)) => x == y,
            (Value::Int(x, _), Value::Uint(y, _)) | (Value::Uint(y, _), Value::Int(x, _)) => {
                *x >= 0 && *x as u64 == *y
            }
            (Value::Float(x), Value::Float(y)) => x == y,
            (Value::Str(x), Value::Str(y)) => x == y,
            // A missing value equals only another; against anything else it is
            // unequal, not an error (Go compares kinds only when both are valid).
            _ if invalid(a) || invalid(b) => invalid(a) && invalid(b),
            (Value::List(..) | Value::Map(..), _) if kind(a) == kind(b) => {
                return Err(format!(
                    "non-comparable type {}: {}",
                    sprint_v(a),
                    a.type_name()
                ));
            }
            (Value::Obj(x), Value::Obj(y)) if x.type_name() == y.type_name() => {
                std::ptr::eq(Rc::as_ptr(x).cast::<u8>(), Rc::as_ptr(y).cast::<u8>())
            }
            _ => {
                return Err(format!(
                    "incompatible types for comparison: {} and {}",
                    a.type_name(),
                    b.type_name()
                ));
            }
        };
        if same {
            return Ok(true);
        }
    }
    Ok(false)
}

fn builtin_cmp(op: &str, a: &Value, b: &Value) -> R<bool> {
    use std::cmp::Ordering;
    const BAD: &str = "invalid type for comparison";
    if kind(a) == Kind::Other || kind(b) == Kind::Other {
        return Err(BAD.into());
    }
    let ord = match (a, b) {
        (Value::Int(x, _), Value::Int(y, _)) => x.cmp(y),
        (Value::Uint(x, _), Value::Uint(y, _)) => x.cmp(y),
        (Value::Int(x, _), Value::Uint(y, _)) => {
            if *x < 0 {
                Ordering::Less
            } else {
                (*x as u64).cmp(y)
            }
        }
        (Value::Uint(x, _), Value::Int(y, _)) => {
            if *y < 0 {
                Ordering::Greater
            } else {
                x.cmp(&(*y as u64))
            }
        }
        (Value::Float(x), Value::Float(y)) => x.partial_cmp(y).unwrap_or(Ordering::Equal),
        (Value::Str(x), Value::Str(y)) => x.cmp(y),
        (Value::Bool(_), Value::Bool(_)) => return Err(BAD.into()),
        _ => {
            return Err(format!(
                "incompatible types for comparison: {} and {}",
                a.type_name(),
                b.type_name()
            ));
        }
    };
    Ok(match op {
        "lt" => ord == Ordering::Less,
        "le" => ord != Ordering::Greater,
        "gt" => ord == Ordering::Greater,
        _ => ord != Ordering::Less,
    })
}

fn is_string(v: &Value) -> bool {
    matches!(v, Value::Str(_))
}

/// Go's `fmt.Sprint`: spaces between operands when neither is a string.
pub(crate) fn sprint(vals: &[Value]) -> String {
    let mut s = String::new();
    for (i, v) in vals.iter().enumerate() {
        if i > 0 && !is_string(v) && !is_string(&vals[i - 1]) {
            s.push(' ');
        }
        s.push_str(&sprint_v(v));
    }
    s
}

/// Go's `fmt.Sprintln`.
pub(crate) fn sprintln(vals: &[Value]) -> String {
    let parts: Vec<String> = vals.iter().map(sprint_v).collect();
    parts.join(" ") + "\n"
}

/// Go's `evalArgs` for the escapers: one string argument as is, else `Sprint`
/// of the printable values.
fn eval_args(vals: &[Value]) -> String {
    if let [Value::Str(s)] = vals {
        return s.to_string();
    }
    // Go's `printableValue`: a missing value prints `<no value>` here.
    let vals: Vec<Value> = vals
        .iter()
        .map(|v| match v {
            Value::Missing | Value::Nil => Value::str("<no value>"),
            v => v.clone(),
        })
        .collect();
    sprint(&vals)
}

/// Go's `template.HTMLEscapeString`.
pub(crate) fn html_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\0' => o.push('\u{fffd}'),
            '"' => o.push_str("&#34;"),
            '\'' => o.push_str("&#39;"),
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            c => o.push(c),
        }
    }
    o
}

/// Go's `template.JSEscapeString`.
pub(crate) fn js_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '\'' => o.push_str("\\'"),
            '"' => o.push_str("\\\""),
            '<' => o.push_str("\\u003C"),
            '>' => o.push_str("\\u003E"),
            '&' => o.push_str("\\u0026"),
            '=' => o.push_str("\\u003D"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04X}", c as u32)),
            c => o.push(c),
        }
    }
    o
}

/// Go's `url.QueryEscape`.
pub(crate) fn query_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                o.push(b as char)
            }
            b' ' => o.push('+'),
            b => o.push_str(&format!("%{b:02X}")),
        }
    }
    o
}
