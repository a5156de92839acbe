//! The token cursor a plugin's setup reads its directive with (caddy
//! `caddyfile/dispenser.go`), so a CoreDNS `setup.go` ports line by line:
//!
//! ```text
//! while d.next() {                 // for c.Next() {
//!     let args = d.remaining_args();
//!     while d.next_block() { match d.val() { ... } }
//! }
//! ```

use std::sync::Arc;

use crate::error::{Diagnostic, DiagnosticKind};
use crate::token::Token;

/// A cursor over one directive's tokens (all its occurrences in a block).
#[derive(Debug, Clone)]
pub struct Dispenser {
    filename: Arc<str>,
    tokens: Vec<Token>,
    cursor: isize,
    nesting: usize,
}

impl Dispenser {
    /// A dispenser over `tokens`; `filename` names errors of tokens without a file.
    pub fn new(filename: Arc<str>, tokens: Vec<Token>) -> Self {
        Self {
            filename,
            tokens,
            cursor: -1,
            nesting: 0,
        }
    }

    /// A dispenser over freshly lexed text (tests, and plugins that parse values).
    pub fn from_text(filename: &str, text: &str) -> Self {
        let f: Arc<str> = Arc::from(filename);
        Self::new(f.clone(), crate::lexer::lex(text, &f, None))
    }

    fn cur(&self) -> Option<&Token> {
        usize::try_from(self.cursor)
            .ok()
            .and_then(|c| self.tokens.get(c))
    }

    fn breaks(&self, i: usize) -> u32 {
        self.tokens.get(i).map_or(0, Token::line_breaks)
    }

    /// Advances to the next token; false at the end.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> bool {
        if self.cursor < self.tokens.len() as isize - 1 {
            self.cursor += 1;
            true
        } else {
            false
        }
    }

    /// Advances only if the next token is on the same line.
    pub fn next_arg(&mut self) -> bool {
        if self.cursor < 0 {
            self.cursor += 1;
            return true;
        }
        let c = self.cursor as usize;
        if c + 1 < self.tokens.len() {
            let (a, b) = (&self.tokens[c], &self.tokens[c + 1]);
            if a.file == b.file && a.line + self.breaks(c) == b.line {
                self.cursor += 1;
                return true;
            }
        }
        false
    }

    /// Advances only if the next token is on a later line.
    pub fn next_line(&mut self) -> bool {
        if self.cursor < 0 {
            self.cursor += 1;
            return true;
        }
        let c = self.cursor as usize;
        if c + 1 < self.tokens.len() {
            let (a, b) = (&self.tokens[c], &self.tokens[c + 1]);
            if a.file != b.file || a.line + self.breaks(c) < b.line {
                self.cursor += 1;
                return true;
            }
        }
        false
    }

    /// Walks a `{ ... }` block opened on the current line: true for each token
    /// inside it, false at its `}` (or when there is no block).
    pub fn next_block(&mut self) -> bool {
        if self.nesting > 0 {
            if !self.next() {
                return false;
            }
            if self.val() == "}" {
                self.nesting -= 1;
                return false;
            }
            return true;
        }
        if !self.next_arg() {
            return false;
        }
        if self.val() != "{" {
            self.cursor -= 1;
            return false;
        }
        if !self.next() {
            return false;
        }
        if self.val() == "}" {
            return false;
        }
        self.nesting += 1;
        true
    }

    /// Current nesting depth inside blocks opened with [`Self::next_block`].
    pub fn nesting(&self) -> usize {
        self.nesting
    }

    /// Text of the current token ("" before the first or after the last).
    pub fn val(&self) -> &str {
        self.cur().map_or("", |t| t.text.as_str())
    }

    /// Line of the current token (0 when none).
    pub fn line(&self) -> u32 {
        self.cur().map_or(0, |t| t.line)
    }

    /// File of the current token.
    pub fn file(&self) -> Arc<str> {
        self.cur()
            .map_or_else(|| self.filename.clone(), |t| t.file.clone())
    }

    /// The current token, if any.
    pub fn token(&self) -> Option<&Token> {
        self.cur()
    }

    /// Fills `n` arguments from the same line; false if there were fewer.
    pub fn args(&mut self, n: usize) -> Option<Vec<String>> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            if !self.next_arg() {
                return None;
            }
            out.push(self.val().to_owned());
        }
        Some(out)
    }

    /// All remaining arguments on this line, stopping before a `{`.
    pub fn remaining_args(&mut self) -> Vec<String> {
        let mut args = Vec::new();
        while self.next_arg() {
            if self.val() == "{" {
                self.cursor -= 1;
                break;
            }
            args.push(self.val().to_owned());
        }
        args
    }

    /// caddy `Err`: `FILE:LINE - Error during parsing: MSG`.
    pub fn err(&self, msg: impl Into<String>) -> Diagnostic {
        Diagnostic::parse(self.file(), self.line(), msg)
    }

    /// caddy `ArgErr`.
    pub fn arg_err(&self) -> Diagnostic {
        if self.val() == "{" {
            return self.err("Unexpected token '{', expecting argument");
        }
        self.err(format!(
            "Wrong argument count or unexpected line ending after '{}'",
            self.val()
        ))
    }

    /// caddy `SyntaxErr`.
    pub fn syntax_err(&self, expected: &'static str) -> Diagnostic {
        Diagnostic {
            plugin: Vec::new(),
            kind: DiagnosticKind::Syntax {
                file: self.file(),
                line: self.line(),
                found: self.val().to_owned(),
                expected,
            },
        }
    }

    /// caddy `EOFErr`.
    pub fn eof_err(&self) -> Diagnostic {
        self.err("Unexpected EOF")
    }

    /// Every token text, for hashing or printing.
    pub fn tokens(&self) -> &[Token] {
        &self.tokens
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caddy_verbs() {
        let mut d = Dispenser::from_text(
            "Corefile",
            "cache 30 a.org {\n success 10\n denial 5 1\n}\ncache",
        );
        assert!(d.next());
        assert_eq!(d.val(), "cache");
        assert_eq!(d.remaining_args(), vec!["30", "a.org"]);
        let mut seen = Vec::new();
        while d.next_block() {
            let name = d.val().to_owned();
            let args = d.remaining_args();
            seen.push((name, args));
        }
        assert_eq!(seen.len(), 2);
        assert_eq!(
            seen[1],
            ("denial".to_owned(), vec!["5".to_owned(), "1".to_owned()])
        );
        assert!(d.next());
        assert_eq!(d.val(), "cache");
        assert_eq!(d.line(), 5);
        assert!(!d.next_arg());
        assert_eq!(
            d.arg_err().to_string(),
            "Corefile:5 - Error during parsing: Wrong argument count or unexpected line ending after 'cache'"
        );
    }

    #[test]
    fn empty_block_and_brace_arg() {
        let mut d = Dispenser::from_text("C", "x {\n}\n");
        d.next();
        assert!(!d.next_block());
        let mut d = Dispenser::from_text("C", "x {");
        d.next();
        d.next();
        assert_eq!(
            d.arg_err().to_string(),
            "C:1 - Error during parsing: Unexpected token '{', expecting argument"
        );
    }
}
