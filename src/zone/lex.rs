//! The zone-file lexer (RFC 1035 §5.1): splits the text into entries (one
//! logical line each: parentheses join physical lines, `;` starts a comment,
//! `"…"` quotes, `\X` and `\DDD` escapes stay in the token for the field
//! parsers) and remembers whether an entry started with blank space (owner
//! omitted). Works over the whole file in memory, without allocation per token.

use super::parse::ErrorKind;

/// One token of an entry: a byte range of the source (escapes kept), where it
/// starts, and whether it was quoted (the quotes are not part of the range).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tok {
    pub(crate) start: u32,
    pub(crate) end: u32,
    pub(crate) line: u32,
    pub(crate) col: u32,
    pub(crate) quoted: bool,
}

/// A lexer error with its position.
#[derive(Debug)]
pub(crate) struct LexError {
    pub(crate) kind: ErrorKind,
    pub(crate) line: u32,
    pub(crate) col: u32,
    pub(crate) token: String,
}

/// Splits a zone file into entries.
pub(crate) struct Lexer<'s> {
    src: &'s [u8],
    pos: usize,
    line: u32,
    line_start: usize,
}

impl<'s> Lexer<'s> {
    pub(crate) fn new(src: &'s [u8]) -> Self {
        Self {
            src,
            pos: 0,
            line: 1,
            line_start: 0,
        }
    }

    /// Bytes of a token (escapes intact).
    pub(crate) fn text(&self, t: &Tok) -> &'s [u8] {
        &self.src[t.start as usize..t.end as usize]
    }

    fn col(&self) -> u32 {
        (self.pos - self.line_start + 1) as u32
    }

    fn err(&self, kind: ErrorKind, token: &str) -> LexError {
        LexError {
            kind,
            line: self.line,
            col: self.col(),
            token: token.to_owned(),
        }
    }

    /// Reads the next entry into `toks`. Returns `Ok(None)` at the end, else
    /// whether the entry began with blank space (its owner is omitted).
    pub(crate) fn next_entry(&mut self, toks: &mut Vec<Tok>) -> Result<Option<bool>, LexError> {
        toks.clear();
        let mut blank = false;
        let mut depth = 0u32;
        let src = self.src;
        loop {
            let Some(&c) = src.get(self.pos) else {
                if depth > 0 {
                    return Err(self.err(ErrorKind::UnbalancedParen, ""));
                }
                return Ok((!toks.is_empty()).then_some(blank));
            };
            match c {
                b'\n' => {
                    self.pos += 1;
                    self.line += 1;
                    self.line_start = self.pos;
                    if depth == 0 {
                        if !toks.is_empty() {
                            return Ok(Some(blank));
                        }
                        blank = false;
                    }
                }
                b' ' | b'\t' | b'\r' => {
                    if toks.is_empty() && depth == 0 && self.pos == self.line_start {
                        blank = true;
                    }
                    self.pos += 1;
                }
                b';' => {
                    while self.pos < src.len() && src[self.pos] != b'\n' {
                        self.pos += 1;
                    }
                }
                b'(' => {
                    depth += 1;
                    self.pos += 1;
                }
                b')' => {
                    if depth == 0 {
                        return Err(self.err(ErrorKind::ExtraClosingParen, ")"));
                    }
                    depth -= 1;
                    self.pos += 1;
                }
                b'"' => {
                    let (line, col) = (self.line, self.col());
                    self.pos += 1;
                    let start = self.pos;
                    loop {
                        match src.get(self.pos) {
                            None => {
                                return Err(LexError {
                                    kind: ErrorKind::UnterminatedQuote,
                                    line,
                                    col,
                                    token: String::from_utf8_lossy(
                                        &src[start..self.pos.min(start + 64).min(src.len())],
                                    )
                                    .into_owned(),
                                });
                            }
                            Some(b'"') => break,
                            Some(b'\\') => self.pos += 2,
                            Some(b'\n') => {
                                // A quoted string may span lines (miekg keeps the newline).
                                self.pos += 1;
                                self.line += 1;
                                self.line_start = self.pos;
                            }
                            Some(_) => self.pos += 1,
                        }
                    }
                    let end = self.pos.min(src.len());
                    self.pos += 1;
                    push(toks, start, end, line, col, true)?;
                }
                _ => {
                    let (line, col) = (self.line, self.col());
                    let start = self.pos;
                    while let Some(&b) = src.get(self.pos) {
                        match b {
                            b' ' | b'\t' | b'\r' | b'\n' | b';' | b'(' | b')' | b'"' => break,
                            b'\\' => {
                                // An escaped character never ends the token.
                                self.pos += if src.get(self.pos + 1) == Some(&b'\n') {
                                    1
                                } else {
                                    2
                                };
                            }
                            _ => self.pos += 1,
                        }
                    }
                    let end = self.pos.min(src.len());
                    self.pos = end;
                    push(toks, start, end, line, col, false)?;
                }
            }
        }
    }
}

fn push(
    toks: &mut Vec<Tok>,
    start: usize,
    end: usize,
    line: u32,
    col: u32,
    quoted: bool,
) -> Result<(), LexError> {
    let (Ok(s), Ok(e)) = (u32::try_from(start), u32::try_from(end)) else {
        return Err(LexError {
            kind: ErrorKind::TooLarge,
            line,
            col,
            token: String::new(),
        });
    };
    toks.push(Tok {
        start: s,
        end: e,
        line,
        col,
        quoted,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(s: &str) -> Vec<(bool, Vec<String>)> {
        let mut l = Lexer::new(s.as_bytes());
        let mut toks = Vec::new();
        let mut out = Vec::new();
        while let Some(blank) = l.next_entry(&mut toks).expect("lex") {
            let words = toks
                .iter()
                .map(|t| String::from_utf8_lossy(l.text(t)).into_owned())
                .collect();
            out.push((blank, words));
        }
        out
    }

    #[test]
    fn entries_parens_comments_quotes() {
        let e = entries(
            "$TTL 1h\n@ IN SOA a. b. ( 1 ; serial\n 2 3\n 4 5 )\n\n  ; only a comment\n\tIN TXT \"a b\" c\\ d\nx A 1.2.3.4",
        );
        assert_eq!(e.len(), 4);
        assert_eq!(e[0], (false, vec!["$TTL".into(), "1h".into()]));
        assert_eq!(e[1].1.len(), 10);
        assert_eq!(
            e[2],
            (
                true,
                vec!["IN".into(), "TXT".into(), "a b".into(), "c\\ d".into()]
            )
        );
        assert_eq!(e[3].1, vec!["x", "A", "1.2.3.4"]);
    }

    #[test]
    fn errors_have_positions() {
        let mut l = Lexer::new(b"a A 1.2.3.4\nb ( A\n");
        let mut t = Vec::new();
        assert!(l.next_entry(&mut t).expect("first").is_some());
        let e = l.next_entry(&mut t).expect_err("unbalanced");
        assert_eq!(e.kind, ErrorKind::UnbalancedParen);
        let mut l = Lexer::new(b"a TXT \"open\n");
        assert_eq!(
            l.next_entry(&mut t).expect_err("quote").kind,
            ErrorKind::UnterminatedQuote
        );
        let mut l = Lexer::new(b"a ) A\n");
        assert_eq!(l.next_entry(&mut t).expect_err("paren").line, 1);
    }
}
