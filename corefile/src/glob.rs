//! Go `filepath.Glob` / `filepath.Match` semantics for `import` patterns:
//! `*` (not crossing `/`), `?`, `[...]` classes with ranges and `^` negation, `\`
//! escapes. Matches come back sorted, per directory level, as Go returns them.

use std::path::{Path, PathBuf};

/// Whether `pattern` contains glob meta characters (Go `hasMeta`).
pub(crate) fn has_meta(pattern: &str) -> bool {
    pattern.contains(['*', '?', '[', '\\'])
}

/// Error for a malformed pattern (Go `ErrBadPattern`).
#[derive(Debug)]
pub(crate) struct BadPattern;

/// Go `filepath.Match` on one path element.
pub(crate) fn matches(pattern: &str, name: &str) -> Result<bool, BadPattern> {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    match_from(&p, &n)
}

fn match_from(p: &[char], n: &[char]) -> Result<bool, BadPattern> {
    // Iterative, backtracking over the last star (which never eats a '/').
    let (mut pi, mut ni) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    loop {
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
            continue;
        }
        if pi < p.len() && ni < n.len() {
            if let Some(len) = single(&p[pi..], n[ni])? {
                pi += len;
                ni += 1;
                continue;
            }
        } else if pi == p.len() && ni == n.len() {
            return Ok(true);
        }
        match star {
            Some((sp, sn)) if sn < n.len() && n[sn] != '/' => {
                star = Some((sp, sn + 1));
                pi = sp + 1;
                ni = sn + 1;
            }
            _ => {
                validate(&p[pi..])?;
                return Ok(false);
            }
        }
    }
}

/// Matches one name char against the pattern element at the start of `p`;
/// returns the element's length on success.
fn single(p: &[char], c: char) -> Result<Option<usize>, BadPattern> {
    match p[0] {
        '?' => Ok((c != '/').then_some(1)),
        '\\' => {
            let e = *p.get(1).ok_or(BadPattern)?;
            Ok((e == c).then_some(2))
        }
        '[' => {
            let mut i = 1;
            let negated = p.get(1) == Some(&'^');
            if negated {
                i += 1;
            }
            let mut matched = false;
            let mut first = true;
            loop {
                let ch = *p.get(i).ok_or(BadPattern)?;
                if ch == ']' && !first {
                    i += 1;
                    break;
                }
                first = false;
                let (lo, used) = class_char(&p[i..])?;
                i += used;
                let mut hi = lo;
                if p.get(i) == Some(&'-') {
                    let (h, used2) = class_char(&p[i + 1..])?;
                    hi = h;
                    i += 1 + used2;
                }
                if lo <= c && c <= hi {
                    matched = true;
                }
            }
            Ok((matched != negated && c != '/').then_some(i))
        }
        lit => Ok((lit == c).then_some(1)),
    }
}

fn class_char(p: &[char]) -> Result<(char, usize), BadPattern> {
    match p.first() {
        None | Some('-') | Some(']') => Err(BadPattern),
        Some('\\') => Ok((*p.get(1).ok_or(BadPattern)?, 2)),
        Some(&c) => Ok((c, 1)),
    }
}

fn validate(p: &[char]) -> Result<(), BadPattern> {
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            '*' => i += 1,
            _ => match single(&p[i..], '\u{0}')? {
                Some(l) => i += l,
                None => {
                    // Length of the element regardless of match.
                    i += element_len(&p[i..])?;
                }
            },
        }
    }
    Ok(())
}

fn element_len(p: &[char]) -> Result<usize, BadPattern> {
    match p[0] {
        '\\' => p.get(1).map(|_| 2).ok_or(BadPattern),
        '[' => {
            let mut i = 1;
            if p.get(1) == Some(&'^') {
                i += 1;
            }
            let mut first = true;
            loop {
                let ch = *p.get(i).ok_or(BadPattern)?;
                if ch == ']' && !first {
                    return Ok(i + 1);
                }
                first = false;
                let (_, used) = class_char(&p[i..])?;
                i += used;
                if p.get(i) == Some(&'-') {
                    let (_, used2) = class_char(&p[i + 1..])?;
                    i += 1 + used2;
                }
            }
        }
        _ => Ok(1),
    }
}

/// Go `filepath.Glob`: all paths matching `pattern`, sorted per directory level.
/// I/O errors while reading directories are ignored, as Go does.
pub(crate) fn glob(pattern: &str) -> Result<Vec<PathBuf>, BadPattern> {
    if !has_meta(pattern) {
        return Ok(if std::fs::symlink_metadata(pattern).is_ok() {
            vec![PathBuf::from(pattern)]
        } else {
            Vec::new()
        });
    }
    let path = Path::new(pattern);
    let (dir, file) = match (path.parent(), path.file_name()) {
        (Some(d), Some(f)) => (
            d.to_string_lossy().into_owned(),
            f.to_string_lossy().into_owned(),
        ),
        _ => return Ok(Vec::new()),
    };
    let dir = if dir.is_empty() { ".".to_owned() } else { dir };
    let dirs = if has_meta(&dir) {
        glob(&dir)?
    } else {
        vec![PathBuf::from(dir)]
    };
    let mut out = Vec::new();
    for d in dirs {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        let mut names: Vec<String> = rd
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for n in names {
            if matches(&file, &n)? {
                out.push(d.join(n));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn go_match_cases() {
        // From Go's filepath match_test.go.
        let cases: &[(&str, &str, bool)] = &[
            ("abc", "abc", true),
            ("*", "abc", true),
            ("*c", "abc", true),
            ("a*", "a", true),
            ("a*", "abc", true),
            ("a*", "ab/c", false),
            ("a*/b", "abc/b", true),
            ("a*/b", "a/c/b", false),
            ("a*b*c*d*e*/f", "axbxcxdxe/f", true),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/f", true),
            ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", false),
            ("a*b?c*x", "abxbbxdbxebxczzx", true),
            ("a*b?c*x", "abxbbxdbxebxczzy", false),
            ("ab[c]", "abc", true),
            ("ab[b-d]", "abc", true),
            ("ab[e-g]", "abc", false),
            ("ab[^c]", "abc", false),
            ("ab[^b-d]", "abc", false),
            ("ab[^e-g]", "abc", true),
            ("a\\*b", "a*b", true),
            ("a\\*b", "ab", false),
            ("a?b", "a☺b", true),
            ("a[^a]b", "a☺b", true),
            ("a???b", "a☺b", false),
            ("*x", "xxx", true),
        ];
        for (p, n, want) in cases {
            assert_eq!(matches(p, n).ok(), Some(*want), "{p} {n}");
        }
        assert!(matches("[", "a").is_err());
        assert!(matches("a[", "a").is_err() || matches("a[", "a").ok() == Some(false));
    }
}
