//! The Corefile lexer (caddy `caddyfile/lexer.go`).
//!
//! Rules (corefile-spec.md §1): a leading BOM is dropped; Unicode whitespace separates
//! tokens and `\r` outside quotes is ignored; an unquoted `#` starts a comment that
//! runs to the end of the line, even in the middle of a token; a `"` opens a quoted
//! token only as the first character of a token; inside quotes only `\"` is an escape
//! (every other backslash stays), newlines are kept, and `""` is an empty token.

use std::sync::Arc;

use crate::token::{Token, Via};

/// Splits `input` into tokens, all attributed to `file`.
pub fn lex(input: &str, file: &Arc<str>, via: Option<&Arc<Via>>) -> Vec<Token> {
    let input = input.strip_prefix('\u{FEFF}').unwrap_or(input);
    let mut tokens = Vec::new();
    let mut line: u32 = 1;
    let mut val = String::new();
    let mut start_line = line;
    let (mut comment, mut quoted, mut escaped) = (false, false, false);

    let mut emit = |text: &mut String, start_line: u32| {
        tokens.push(Token {
            text: std::mem::take(text),
            file: file.clone(),
            line: start_line,
            via: via.cloned(),
        });
    };

    for ch in input.chars() {
        if quoted {
            if !escaped {
                if ch == '\\' {
                    escaped = true;
                    continue;
                } else if ch == '"' {
                    quoted = false;
                    emit(&mut val, start_line);
                    continue;
                }
            }
            if ch == '\n' {
                line = line.saturating_add(1);
            }
            if escaped && ch != '"' {
                val.push('\\');
            }
            val.push(ch);
            escaped = false;
            continue;
        }
        if ch.is_whitespace() {
            if ch == '\r' {
                continue;
            }
            if ch == '\n' {
                line = line.saturating_add(1);
                comment = false;
            }
            if !val.is_empty() {
                // caddy starts every token with fresh state: a comment that began
                // mid-token ends with that token.
                comment = false;
                emit(&mut val, start_line);
            }
            continue;
        }
        if ch == '#' {
            comment = true;
        }
        if comment {
            continue;
        }
        if val.is_empty() {
            start_line = line;
            if ch == '"' {
                quoted = true;
                continue;
            }
        }
        val.push(ch);
    }
    // EOF: caddy emits a pending token (an unterminated quote included).
    if !val.is_empty() {
        emit(&mut val, start_line);
    }
    tokens
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(s: &str) -> Vec<(String, u32)> {
        let f: Arc<str> = Arc::from("Corefile");
        lex(s, &f, None)
            .into_iter()
            .map(|t| (t.text, t.line))
            .collect()
    }

    fn t(v: &[(&str, u32)]) -> Vec<(String, u32)> {
        v.iter().map(|(s, l)| ((*s).to_owned(), *l)).collect()
    }

    #[test]
    fn basics() {
        assert_eq!(texts("a b\n  c"), t(&[("a", 1), ("b", 1), ("c", 2)]));
        assert_eq!(texts("\u{FEFF}a\r\nb"), t(&[("a", 1), ("b", 2)]));
        assert_eq!(texts("example.org{"), t(&[("example.org{", 1)]));
        assert_eq!(texts("whoami}"), t(&[("whoami}", 1)]));
    }

    #[test]
    fn comments() {
        assert_eq!(texts("foo#bar\nx"), t(&[("foo", 1), ("x", 2)]));
        // The comment started mid-token ends with that token (caddy resets state per token).
        assert_eq!(
            texts("foo#bar baz\nx"),
            t(&[("foo", 1), ("baz", 1), ("x", 2)])
        );
        assert_eq!(texts("foo #bar baz\nx"), t(&[("foo", 1), ("x", 2)]));
        assert_eq!(texts("# c\n\"a#b\""), t(&[("a#b", 2)]));
    }

    #[test]
    fn quotes() {
        assert_eq!(texts(r#"a"b"#), t(&[("a\"b", 1)]));
        assert_eq!(texts(r#""foo"bar"#), t(&[("foo", 1), ("bar", 1)]));
        assert_eq!(texts(r#""a\"b\\c\n""#), t(&[(r#"a"b\\c\n"#, 1)]));
        assert_eq!(texts("\"\" x"), t(&[("", 1), ("x", 1)]));
        assert_eq!(
            texts("\"a\nb\" c\nd"),
            t(&[("a\nb", 1), ("c", 2), ("d", 3)])
        );
        assert_eq!(texts("\"unterminated"), t(&[("unterminated", 1)]));
    }

    #[test]
    fn unicode_space() {
        assert_eq!(
            texts("a\u{00A0}b\u{0085}c"),
            t(&[("a", 1), ("b", 1), ("c", 1)])
        );
    }
}
