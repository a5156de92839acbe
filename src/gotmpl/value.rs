//! Values a template works on, as Go's `reflect.Value`s behave in
//! `text/template`: their truth, how `fmt` prints them, how they compare.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::rc::Rc;

/// A Go struct (or pointer to one) the template can read fields of and call
/// methods on.
pub trait Object {
    /// Go's type name (`*template.templateData`), for errors.
    fn type_name(&self) -> &'static str;
    /// An exported field, or `None` if the type has none by that name.
    fn field(&self, name: &str) -> Option<Value>;
    /// A method's arity, or `None` if the type has none by that name.
    fn method(&self, _name: &str) -> Option<usize> {
        None
    }
    /// Calls a method that [`Object::method`] names.
    fn call(&self, name: &str, _args: &[Value]) -> Result<Value, String> {
        Err(format!("no method {name}"))
    }
    /// How `fmt` prints it with `%v`, or an error if ringdns cannot.
    fn print(&self) -> Result<String, String>;
    /// A field whose name exists but is unexported.
    fn unexported(&self, _name: &str) -> bool {
        false
    }
}

/// A value.
#[derive(Clone)]
pub enum Value {
    /// The invalid value (a missing map key): printed `<no value>`.
    Missing,
    /// An untyped `nil`.
    Nil,
    /// `bool`.
    Bool(bool),
    /// A signed integer of Go type `.1`.
    Int(i64, &'static str),
    /// An unsigned integer of Go type `.1`.
    Uint(u64, &'static str),
    /// `float64`.
    Float(f64),
    /// `string`.
    Str(Rc<str>),
    /// A slice of Go type `.0` (`[]string`).
    List(&'static str, Rc<Vec<Self>>),
    /// A map with string keys of Go type `.0`, and its element's zero value.
    Map(&'static str, Rc<BTreeMap<String, Self>>, Box<Self>),
    /// A struct or pointer.
    Obj(Rc<dyn Object>),
}

impl std::fmt::Debug for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&sprint_v(self))
    }
}

impl Value {
    /// A string.
    pub fn str(s: &str) -> Self {
        Self::Str(Rc::from(s))
    }

    /// An `int`.
    pub fn int(v: i64) -> Self {
        Self::Int(v, "int")
    }

    /// Go's type name, for errors.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Missing | Self::Nil => "<nil>",
            Self::Bool(_) => "bool",
            Self::Int(_, t) | Self::Uint(_, t) => t,
            Self::Float(_) => "float64",
            Self::Str(_) => "string",
            Self::List(t, _) | Self::Map(t, _, _) => t,
            Self::Obj(o) => o.type_name(),
        }
    }

    /// Go's `template.IsTrue`: `None` when truth is not defined for it.
    pub fn truth(&self) -> bool {
        match self {
            Self::Missing | Self::Nil => false,
            Self::Bool(b) => *b,
            Self::Int(v, _) => *v != 0,
            Self::Uint(v, _) => *v != 0,
            Self::Float(v) => *v != 0.0,
            Self::Str(s) => !s.is_empty(),
            Self::List(_, l) => !l.is_empty(),
            Self::Map(_, m, _) => !m.is_empty(),
            Self::Obj(_) => true,
        }
    }

    /// A valid value (not a missing key).
    pub fn is_valid(&self) -> bool {
        !matches!(self, Self::Missing)
    }
}

/// `fmt`'s `%v` of one value.
pub(crate) fn sprint_v(v: &Value) -> String {
    let mut s = String::new();
    let _ = format_value(&mut s, v, 'v', &Spec::default());
    s
}

/// Formatting flags, width and precision (`fmt`'s `fmt` struct).
#[derive(Default, Clone)]
pub(crate) struct Spec {
    /// `-`.
    pub minus: bool,
    /// `+`.
    pub plus: bool,
    /// `#`.
    pub sharp: bool,
    /// ` `.
    pub space: bool,
    /// `0`.
    pub zero: bool,
    /// Width.
    pub width: Option<usize>,
    /// Precision.
    pub prec: Option<usize>,
}

impl Spec {
    fn pad(&self, out: &mut String, s: &str, numeric: bool) {
        let n = s.chars().count();
        let w = self.width.unwrap_or(0);
        if n >= w {
            out.push_str(s);
            return;
        }
        let fill = w - n;
        if self.minus {
            out.push_str(s);
            out.extend(std::iter::repeat_n(' ', fill));
        } else if self.zero && numeric {
            // Zeros go after the sign.
            let (sign, rest) = match s.as_bytes().first() {
                Some(b'+' | b'-' | b' ') => s.split_at(1),
                _ => ("", s),
            };
            out.push_str(sign);
            out.extend(std::iter::repeat_n('0', fill));
            out.push_str(rest);
        } else {
            out.extend(std::iter::repeat_n(' ', fill));
            out.push_str(s);
        }
    }
}

fn bad_verb(out: &mut String, verb: char, v: &Value) {
    match v {
        Value::Missing | Value::Nil => {
            let _ = write!(out, "%!{verb}(<nil>)");
        }
        _ => {
            let _ = write!(out, "%!{verb}({}=", v.type_name());
            let _ = format_value(out, v, 'v', &Spec::default());
            out.push(')');
        }
    }
}

/// Formats `v` with `verb` as Go's `fmt` does for the kinds templates have.
pub(crate) fn format_value(
    out: &mut String,
    v: &Value,
    verb: char,
    spec: &Spec,
) -> Result<(), String> {
    match v {
        Value::Missing | Value::Nil => match verb {
            'v' => spec.pad(out, "<nil>", false),
            _ => bad_verb(out, verb, v),
        },
        Value::Bool(b) => match verb {
            'v' | 't' => spec.pad(out, if *b { "true" } else { "false" }, false),
            _ => bad_verb(out, verb, v),
        },
        Value::Int(i, _) => fmt_int(out, *i < 0, i.unsigned_abs(), verb, spec, v),
        Value::Uint(u, _) => fmt_int(out, false, *u, verb, spec, v),
        Value::Float(f) => fmt_float(out, *f, verb, spec, v),
        Value::Str(s) => fmt_str(out, s, verb, spec, v),
        Value::List(_, l) => {
            if verb == 'v' || verb == 's' || verb == 'd' || verb == 'q' || verb == 'x' {
                out.push('[');
                for (i, e) in l.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    format_value(out, e, verb, spec)?;
                }
                out.push(']');
            } else {
                bad_verb(out, verb, v);
            }
        }
        Value::Map(_, m, _) => {
            out.push_str("map[");
            for (i, (k, e)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                fmt_str(out, k, verb, spec, &Value::str(k));
                out.push(':');
                format_value(out, e, verb, spec)?;
            }
            out.push(']');
        }
        Value::Obj(o) => {
            let s = o.print()?;
            spec.pad(out, &s, false);
        }
    }
    Ok(())
}

fn fmt_str(out: &mut String, s: &str, verb: char, spec: &Spec, v: &Value) {
    let s = match spec.prec {
        Some(p) if matches!(verb, 'v' | 's') => s.chars().take(p).collect::<String>(),
        _ => s.to_owned(),
    };
    match verb {
        'v' | 's' => spec.pad(out, &s, false),
        'q' => spec.pad(out, &go_quote(&s), false),
        'x' | 'X' => {
            let mut h = String::new();
            for b in s.bytes() {
                if verb == 'x' {
                    let _ = write!(h, "{b:02x}");
                } else {
                    let _ = write!(h, "{b:02X}");
                }
            }
            spec.pad(out, &h, false);
        }
        _ => bad_verb(out, verb, v),
    }
}

/// Go's `strconv.Quote`.
pub use corefile::values::go_quote;

fn fmt_int(out: &mut String, neg: bool, mag: u64, verb: char, spec: &Spec, v: &Value) {
    let digits = match verb {
        'v' | 'd' => mag.to_string(),
        'x' => format!("{mag:x}"),
        'X' => format!("{mag:X}"),
        'o' | 'O' => format!("{mag:o}"),
        'b' => format!("{mag:b}"),
        'c' => {
            let c = u32::try_from(mag)
                .ok()
                .and_then(char::from_u32)
                .unwrap_or('\u{fffd}');
            spec.pad(out, &c.to_string(), false);
            return;
        }
        'q' => {
            let c = u32::try_from(mag)
                .ok()
                .and_then(char::from_u32)
                .unwrap_or('\u{fffd}');
            let q = go_quote(&c.to_string());
            spec.pad(
                out,
                &format!("'{}'", &q[1..q.len() - 1].replace("\\\"", "\"")),
                false,
            );
            return;
        }
        'U' => {
            spec.pad(out, &format!("U+{mag:04X}"), false);
            return;
        }
        'e' | 'E' | 'f' | 'F' | 'g' | 'G' | 's' | 't' => {
            bad_verb(out, verb, v);
            return;
        }
        _ => {
            bad_verb(out, verb, v);
            return;
        }
    };
    let mut digits = digits;
    if let Some(p) = spec.prec {
        if p == 0 && mag == 0 {
            digits.clear();
        }
        if digits.len() < p {
            digits = "0".repeat(p - digits.len()) + &digits;
        }
    }
    let mut s = String::new();
    if neg {
        s.push('-');
    } else if spec.plus {
        s.push('+');
    } else if spec.space {
        s.push(' ');
    }
    if spec.sharp {
        match verb {
            'x' => s.push_str("0x"),
            'X' => s.push_str("0X"),
            'o' if !digits.starts_with('0') => s.push('0'),
            'b' => s.push_str("0b"),
            _ => {}
        }
    }
    if verb == 'O' {
        s.push_str("0o");
    }
    s.push_str(&digits);
    let zero = spec.prec.is_none();
    let spec2 = Spec {
        zero: spec.zero && zero,
        ..spec.clone()
    };
    spec2.pad(out, &s, true);
}

/// Go's `strconv.FormatFloat(f, fmt, prec, 64)` for `e`, `f` and `g`.
pub(crate) fn format_float(f: f64, verb: char, prec: Option<usize>) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    match verb {
        'f' | 'F' => match prec {
            Some(p) => format!("{f:.p$}"),
            None => {
                let s = format!("{f}");
                s
            }
        },
        'e' | 'E' => {
            let s = match prec {
                Some(p) => format!("{f:.p$e}"),
                None => format!("{f:e}"),
            };
            let s = go_exp(&s);
            if verb == 'E' { s.to_uppercase() } else { s }
        }
        _ => {
            // %g: shortest (or `prec` significant digits); %e when the exponent is
            // below -4 or at least the precision (6 when shortest), as strconv.
            let (digits, exp) = sig_digits(f, prec);
            let nd = digits.len() as i32;
            let eprec = match prec {
                None => 6,
                Some(p) => {
                    let p = p.max(1) as i32;
                    if p > nd && nd > exp { nd } else { p }
                }
            };
            let s = if exp < -4 || exp >= eprec {
                let mut m = String::new();
                m.push_str(&digits[..1]);
                if digits.len() > 1 {
                    m.push('.');
                    m.push_str(&digits[1..]);
                }
                format!("{m}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
            } else if exp < 0 {
                format!("0.{}{}", "0".repeat((-exp - 1) as usize), digits)
            } else {
                let int_len = (exp + 1) as usize;
                if digits.len() <= int_len {
                    format!("{}{}", digits, "0".repeat(int_len - digits.len()))
                } else {
                    format!("{}.{}", &digits[..int_len], &digits[int_len..])
                }
            };
            let s = if f < 0.0 { format!("-{s}") } else { s };
            if verb == 'G' { s.to_uppercase() } else { s }
        }
    }
}

/// Rust's `1.5e3` → Go's `1.5e+03`.
fn go_exp(s: &str) -> String {
    match s.split_once('e') {
        Some((m, e)) => {
            let (sign, d) = match e.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', e),
            };
            format!("{m}e{sign}{d:0>2}")
        }
        None => s.to_owned(),
    }
}

/// The decimal digits of |f| (no trailing zeros) and its decimal exponent.
fn sig_digits(f: f64, prec: Option<usize>) -> (String, i32) {
    let a = f.abs();
    if a == 0.0 {
        return ("0".into(), 0);
    }
    let e = match prec {
        Some(p) => format!("{:.*e}", p.max(1) - 1, a),
        None => format!("{a:e}"),
    };
    let (m, x) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = x.parse().unwrap_or(0);
    let mut digits: String = m.chars().filter(char::is_ascii_digit).collect();
    while digits.len() > 1 && digits.ends_with('0') {
        digits.pop();
    }
    (digits, exp)
}

fn fmt_float(out: &mut String, f: f64, verb: char, spec: &Spec, v: &Value) {
    let verb2 = match verb {
        'v' => 'g',
        'e' | 'E' | 'f' | 'F' | 'g' | 'G' => verb,
        _ => {
            bad_verb(out, verb, v);
            return;
        }
    };
    let prec = match verb2 {
        'f' | 'F' | 'e' | 'E' => Some(spec.prec.unwrap_or(6)),
        _ => spec.prec,
    };
    let mut s = format_float(f, verb2, prec);
    if !s.starts_with('-') {
        if spec.plus {
            s.insert(0, '+');
        } else if spec.space {
            s.insert(0, ' ');
        }
    }
    spec.pad(out, &s, true);
}
