//! Go's `fmt.Sprintf` over template values: flags, width, precision (also
//! `*`), argument indexes, and the `%!verb(type=value)`, `%!v(MISSING)` and
//! `%!(EXTRA …)` markers.

use std::fmt::Write as _;

use super::value::{Spec, Value, format_value, sprint_v};

/// Formats `args` by `f`.
pub(crate) fn sprintf(f: &str, args: &[Value]) -> Result<String, String> {
    let mut out = String::with_capacity(f.len() + 16);
    let mut next = 0usize;
    let mut reordered = false;
    let b = f.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let start = i;
        while i < b.len() && b[i] != b'%' {
            i += 1;
        }
        out.push_str(&f[start..i]);
        if i >= b.len() {
            break;
        }
        i += 1;
        let mut spec = Spec::default();
        while i < b.len() {
            match b[i] {
                b'#' => spec.sharp = true,
                b'0' => spec.zero = !spec.minus,
                b'+' => spec.plus = true,
                b'-' => {
                    spec.minus = true;
                    spec.zero = false;
                }
                b' ' => spec.space = true,
                _ => break,
            }
            i += 1;
        }
        // Argument index `[n]`.
        let mut arg_index = |i: &mut usize, next: &mut usize| {
            if *i < b.len() && b[*i] == b'[' {
                if let Some(close) = f[*i..].find(']') {
                    if let Ok(n) = f[*i + 1..*i + close].parse::<usize>() {
                        if n >= 1 {
                            *next = n - 1;
                            reordered = true;
                        }
                    }
                    *i += close + 1;
                }
            }
        };
        arg_index(&mut i, &mut next);
        if i < b.len() && b[i] == b'*' {
            i += 1;
            match int_from_arg(args.get(next)) {
                Some(w) => {
                    if w < 0 {
                        spec.minus = true;
                        spec.zero = false;
                    }
                    spec.width = Some(w.unsigned_abs() as usize);
                }
                None => out.push_str("%!(BADWIDTH)"),
            }
            next += 1;
        } else {
            match parse_num(b, &mut i) {
                Ok(Some(w)) => spec.width = Some(w),
                Ok(None) => {}
                Err(()) => {
                    out.push_str("%!(NOVERB)");
                    break;
                }
            }
        }
        if i < b.len() && b[i] == b'.' {
            i += 1;
            arg_index(&mut i, &mut next);
            if i < b.len() && b[i] == b'*' {
                i += 1;
                match int_from_arg(args.get(next)) {
                    Some(p) if p >= 0 => spec.prec = Some(p as usize),
                    _ => out.push_str("%!(BADPREC)"),
                }
                next += 1;
            } else {
                match parse_num(b, &mut i) {
                    Ok(p) => spec.prec = Some(p.unwrap_or(0)),
                    Err(()) => {
                        out.push_str("%!(NOVERB)");
                        break;
                    }
                }
            }
        }
        arg_index(&mut i, &mut next);
        let Some(verb) = f[i..].chars().next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        i += verb.len_utf8();
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(next) else {
            let _ = write!(out, "%!{verb}(MISSING)");
            continue;
        };
        next += 1;
        match verb {
            'v' | 's' | 'd' | 'x' | 'X' | 'o' | 'O' | 'b' | 'c' | 'q' | 'U' | 'e' | 'E' | 'f'
            | 'F' | 'g' | 'G' | 't' => format_value(&mut out, arg, verb, &spec)?,
            _ => {
                let _ = write!(out, "%!{verb}({}={})", arg.type_name(), sprint_v(arg));
            }
        }
    }
    if !reordered && next < args.len() {
        out.push_str("%!(EXTRA ");
        for (k, a) in args[next..].iter().enumerate() {
            if k > 0 {
                out.push_str(", ");
            }
            match a {
                Value::Missing | Value::Nil => out.push_str("<nil>"),
                _ => {
                    let _ = write!(out, "{}={}", a.type_name(), sprint_v(a));
                }
            }
        }
        out.push(')');
    }
    Ok(out)
}

/// Go's `tooLarge`: widths and precisions beyond a million are refused.
const MAX_NUM: i64 = 1_000_000;

/// Go's `parsenum`: digits at `*i`; `Err` for a crazy long number (Go then
/// takes the rest of the format, which ends in `%!(NOVERB)`).
fn parse_num(b: &[u8], i: &mut usize) -> Result<Option<usize>, ()> {
    let mut n: i64 = 0;
    let mut any = false;
    while *i < b.len() && b[*i].is_ascii_digit() {
        if n > MAX_NUM {
            *i = b.len();
            return Err(());
        }
        n = n * 10 + i64::from(b[*i] - b'0');
        any = true;
        *i += 1;
    }
    Ok(any.then_some(n as usize))
}

/// Go's `intFromArg`: an int or uint argument within the limit.
fn int_from_arg(v: Option<&Value>) -> Option<i64> {
    let n = match v? {
        Value::Int(n, _) => *n,
        Value::Uint(n, _) => i64::try_from(*n).ok()?,
        _ => return None,
    };
    (n.abs() <= MAX_NUM).then_some(n)
}
