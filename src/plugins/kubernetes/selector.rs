//! Label selectors for `labels` and `namespace_labels`: the Kubernetes selector
//! syntax (`k=v`, `k==v`, `k in (a,b)`, `k notin (a)`, `k`, `!k`), read as
//! apimachinery's `ParseToLabelSelector` reads it and written back as
//! `LabelSelectorAsSelector(...).String()` writes it (requirements sorted by key,
//! set values sorted): the `labelSelector` the API server gets.

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Equals,
    In,
    NotIn,
    Exists,
    NotExists,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Req {
    key: String,
    op: Op,
    values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    Eq,
    DoubleEq,
    NotEq,
    Bang,
    In,
    NotIn,
    Open,
    Close,
    Comma,
    Gt,
    Lt,
}

fn lex(s: &str) -> Vec<Tok> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let next_eq = b.get(i + 1) == Some(&b'=');
        let (tok, len) = match b[i] {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'(' => (Tok::Open, 1),
            b')' => (Tok::Close, 1),
            b',' => (Tok::Comma, 1),
            b'>' => (Tok::Gt, 1),
            b'<' => (Tok::Lt, 1),
            b'=' if next_eq => (Tok::DoubleEq, 2),
            b'=' => (Tok::Eq, 1),
            b'!' if next_eq => (Tok::NotEq, 2),
            b'!' => (Tok::Bang, 1),
            _ => {
                let len = b[i..]
                    .iter()
                    .position(|c| b" \t\n\r(),=!<>".contains(c))
                    .unwrap_or(b.len() - i);
                let w = &s[i..i + len];
                let tok = match w {
                    "in" => Tok::In,
                    "notin" => Tok::NotIn,
                    _ => Tok::Ident(w.to_owned()),
                };
                (tok, len)
            }
        };
        out.push(tok);
        i += len;
    }
    out
}

fn valid_value(v: &str) -> bool {
    let b = v.as_bytes();
    v.is_empty()
        || (b.len() <= 63
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(c)))
}

fn valid_key(k: &str) -> bool {
    let (prefix, name) = match k.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    if name.is_empty() || !valid_value(name) {
        return false;
    }
    match prefix {
        None => true,
        Some(p) => {
            !p.is_empty()
                && p.len() <= 253
                && p.split('.').all(|l| {
                    let b = l.as_bytes();
                    !b.is_empty()
                        && b.len() <= 63
                        && b[0].is_ascii_alphanumeric()
                        && b[b.len() - 1].is_ascii_alphanumeric()
                        && b.iter()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
                })
        }
    }
}

/// Parses `s` and returns the selector's canonical string, or the error text.
pub fn normalize(s: &str) -> Result<String, String> {
    let toks = lex(s);
    let mut reqs: Vec<Req> = Vec::new();
    let mut i = 0;
    let ident = |t: Option<&Tok>| match t {
        Some(Tok::Ident(x)) => Some(x.clone()),
        _ => None,
    };
    while i < toks.len() {
        let req = if toks[i] == Tok::Bang {
            let key = ident(toks.get(i + 1))
                .ok_or("found end of input or an operator, expected: identifier")?;
            i += 2;
            Req {
                key,
                op: Op::NotExists,
                values: Vec::new(),
            }
        } else {
            let key = ident(toks.get(i)).ok_or_else(|| "expected: ! or identifier".to_owned())?;
            i += 1;
            match toks.get(i) {
                None | Some(Tok::Comma) => Req {
                    key,
                    op: Op::Exists,
                    values: Vec::new(),
                },
                Some(Tok::Eq | Tok::DoubleEq) => {
                    i += 1;
                    let v = match toks.get(i) {
                        Some(Tok::Ident(v)) => {
                            i += 1;
                            v.clone()
                        }
                        // `k=` selects the empty value.
                        None | Some(Tok::Comma) => String::new(),
                        _ => return Err("found an operator, expected: identifier".into()),
                    };
                    Req {
                        key,
                        op: Op::Equals,
                        values: vec![v],
                    }
                }
                Some(Tok::NotEq) => {
                    return Err("\"!=\" is not a valid label selector operator".into());
                }
                Some(Tok::Gt) => return Err("\"gt\" isn't supported in label selectors".into()),
                Some(Tok::Lt) => return Err("\"lt\" isn't supported in label selectors".into()),
                Some(t @ (Tok::In | Tok::NotIn)) => {
                    let op = if *t == Tok::In { Op::In } else { Op::NotIn };
                    i += 1;
                    if toks.get(i) != Some(&Tok::Open) {
                        return Err("found end of input or another token, expected: '('".into());
                    }
                    i += 1;
                    let mut values = Vec::new();
                    loop {
                        match toks.get(i) {
                            Some(Tok::Ident(v)) => {
                                values.push(v.clone());
                                i += 1;
                            }
                            Some(Tok::Close) if values.is_empty() => {}
                            _ => {
                                return Err(
                                    "found an unexpected token, expected: identifier".into()
                                );
                            }
                        }
                        match toks.get(i) {
                            Some(Tok::Comma) => i += 1,
                            Some(Tok::Close) => {
                                i += 1;
                                break;
                            }
                            _ => return Err("found end of input, expected: ')'".into()),
                        }
                    }
                    if values.is_empty() {
                        return Err("for 'in', 'notin' operators, values set can't be empty".into());
                    }
                    values.sort();
                    values.dedup();
                    Req { key, op, values }
                }
                Some(_) => return Err("found an unexpected token, expected: an operator".into()),
            }
        };
        if !valid_key(&req.key) {
            return Err(format!(
                "key: Invalid value: {:?}: name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
                req.key
            ));
        }
        if let Some(v) = req.values.iter().find(|v| !valid_value(v)) {
            return Err(format!(
                "values[0][{}]: Invalid value: {v:?}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
                req.key
            ));
        }
        match toks.get(i) {
            None => {}
            Some(Tok::Comma) => {
                i += 1;
                if i == toks.len() {
                    return Err("found end of input, expected: identifier".into());
                }
            }
            Some(_) => return Err("found an unexpected token, expected: ','".into()),
        }
        // `k=v` lands in MatchLabels, a map: the last value of a key wins.
        if req.op == Op::Equals {
            reqs.retain(|r| !(r.op == Op::Equals && r.key == req.key));
        }
        reqs.push(req);
    }
    reqs.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(reqs
        .iter()
        .map(|r| match r.op {
            Op::Equals => format!("{}={}", r.key, r.values[0]),
            Op::In => format!("{} in ({})", r.key, r.values.join(",")),
            Op::NotIn => format!("{} notin ({})", r.key, r.values.join(",")),
            Op::Exists => r.key.clone(),
            Op::NotExists => format!("!{}", r.key),
        })
        .collect::<Vec<_>>()
        .join(","))
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn canonical_forms() {
        for (in_, out) in [
            ("app=web", "app=web"),
            ("app==web", "app=web"),
            ("tier in (b, a), app=web", "app=web,tier in (a,b)"),
            ("env notin (prod)", "env notin (prod)"),
            ("!canary, app", "app,!canary"),
            ("example.com/team=dns", "example.com/team=dns"),
            ("app=", "app="),
        ] {
            assert_eq!(normalize(in_).as_deref(), Ok(out), "{in_}");
        }
    }

    #[test]
    fn errors() {
        assert_eq!(
            normalize("app!=web").unwrap_err(),
            "\"!=\" is not a valid label selector operator"
        );
        assert!(normalize("app in ()").is_err());
        assert!(normalize("app in (a").is_err());
        assert!(normalize("a b").is_err());
        assert!(normalize("app=we b").is_err());
        assert!(normalize("-app=web").is_err());
        assert!(normalize("app=web,").is_err());
        assert!(normalize("count > 1").is_err());
    }
}
