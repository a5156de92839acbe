//! The Corefile parser (caddy `caddyfile/parse.go`): groups tokens into server
//! blocks, expands `import` (files, globs, snippets) and environment variables.
//!
//! The parser is single-pass like caddy's: an `import` splices the imported tokens
//! into the stream in place of itself, so a snippet must be defined before use.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use crate::env::{EnvLookup, replace_env_vars};
use crate::error::{Diagnostic, DiagnosticKind};
use crate::glob;
use crate::lexer::lex;
use crate::token::{Token, Via};

/// Snippet expansions allowed in one parse (caddy `maxSnippetExpansions`).
pub const MAX_SNIPPET_EXPANSIONS: usize = 10_000;
/// File/glob expansions allowed in one parse (caddy `maxFileExpansions`).
pub const MAX_FILE_EXPANSIONS: usize = 100_000;
/// Largest Corefile or imported file read, in bytes. CoreDNS has no limit (and hangs
/// on `/dev/zero`); 16 MiB is far beyond any real Corefile.
pub const MAX_FILE_BYTES: u64 = 16 << 20;
/// Largest total token count of one parse, bounding memory for import fan-out.
pub const MAX_TOKENS: usize = 4_000_000;

/// A server block: its keys (after environment substitution, before normalisation)
/// and its directives' tokens, grouped by directive name in order of first use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerBlock {
    /// Keys as written (comma stripped, env substituted).
    pub keys: Vec<String>,
    /// Tokens per directive; every occurrence of a directive is concatenated, the
    /// directive name token included, as caddy does.
    pub directives: Vec<(String, Vec<Token>)>,
}

impl ServerBlock {
    /// Tokens of directive `name`, if the block uses it.
    pub fn tokens(&self, name: &str) -> Option<&[Token]> {
        self.directives
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.as_slice())
    }

    fn push(&mut self, dir: &str, tok: Token) {
        if let Some((_, v)) = self.directives.iter_mut().find(|(n, _)| n == dir) {
            v.push(tok);
        } else {
            self.directives.push((dir.to_owned(), vec![tok]));
        }
    }
}

/// Options of one parse.
pub struct ParseOptions<'a> {
    /// The main file name as CoreDNS records it (the `-conf` argument as given,
    /// `Corefile` for the default, `/dev/stdin` for stdin).
    pub filename: &'a str,
    /// Known directive names; `None` accepts any name.
    pub valid_directives: Option<&'a [&'a str]>,
    /// Environment for `{$VAR}` substitution.
    pub env: &'a dyn EnvLookup,
}

/// What a parse produced: blocks and the warnings caddy logs on the way.
#[derive(Debug, Clone, Default)]
pub struct Parsed {
    /// Server blocks in file order (snippets and key-less blocks left out).
    pub blocks: Vec<ServerBlock>,
    /// Lines to log as `[WARNING] ...` (an import glob that matched nothing).
    pub warnings: Vec<String>,
}

/// Parses Corefile text.
pub fn parse(input: &str, opts: &ParseOptions<'_>) -> Result<Parsed, Diagnostic> {
    let file: Arc<str> = Arc::from(opts.filename);
    let tokens = lex(input, &file, None);
    let mut p = Parser {
        tokens,
        cursor: -1,
        filename: file,
        opts,
        block: ServerBlock::default(),
        eof: false,
        snippets: HashMap::new(),
        snippet_expansions: 0,
        file_expansions: 0,
        warnings: Vec::new(),
    };
    let mut blocks = Vec::new();
    while p.next() {
        p.parse_one()?;
        if !p.block.keys.is_empty() {
            blocks.push(std::mem::take(&mut p.block));
        }
    }
    Ok(Parsed {
        blocks,
        warnings: p.warnings,
    })
}

struct Parser<'a> {
    tokens: Vec<Token>,
    cursor: isize,
    filename: Arc<str>,
    opts: &'a ParseOptions<'a>,
    block: ServerBlock,
    eof: bool,
    snippets: HashMap<String, Vec<Token>>,
    snippet_expansions: usize,
    file_expansions: usize,
    warnings: Vec<String>,
}

impl Parser<'_> {
    fn cur(&self) -> Option<&Token> {
        usize::try_from(self.cursor)
            .ok()
            .and_then(|c| self.tokens.get(c))
    }

    fn next(&mut self) -> bool {
        if self.cursor < self.tokens.len() as isize - 1 {
            self.cursor += 1;
            true
        } else {
            false
        }
    }

    fn next_arg(&mut self) -> bool {
        if self.cursor < 0 {
            self.cursor += 1;
            return true;
        }
        let c = self.cursor as usize;
        if c + 1 < self.tokens.len() {
            let (a, b) = (&self.tokens[c], &self.tokens[c + 1]);
            if a.file == b.file && a.line + a.line_breaks() == b.line {
                self.cursor += 1;
                return true;
            }
        }
        false
    }

    fn val(&self) -> &str {
        self.cur().map_or("", |t| t.text.as_str())
    }

    fn line(&self) -> u32 {
        self.cur().map_or(0, |t| t.line)
    }

    fn file(&self) -> Arc<str> {
        self.cur()
            .map_or_else(|| self.filename.clone(), |t| t.file.clone())
    }

    fn is_new_line(&self) -> bool {
        if self.cursor < 1 {
            return true;
        }
        let c = self.cursor as usize;
        if c > self.tokens.len() - 1 {
            return false;
        }
        let (a, b) = (&self.tokens[c - 1], &self.tokens[c]);
        a.file != b.file || a.line + a.line_breaks() < b.line
    }

    fn err(&self, msg: impl Into<String>) -> Diagnostic {
        Diagnostic::parse(self.file(), self.line(), msg)
    }

    fn syntax_err(&self, expected: &'static str) -> Diagnostic {
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

    fn arg_err(&self) -> Diagnostic {
        if self.val() == "{" {
            return self.err("Unexpected token '{', expecting argument");
        }
        self.err(format!(
            "Wrong argument count or unexpected line ending after '{}'",
            self.val()
        ))
    }

    fn env(&self, s: &str) -> String {
        replace_env_vars(s, self.opts.env)
    }

    fn parse_one(&mut self) -> Result<(), Diagnostic> {
        self.block = ServerBlock::default();
        self.eof = false;
        if self.tokens.is_empty() {
            return Ok(());
        }
        self.addresses()?;
        if self.eof {
            return Ok(());
        }
        if let Some(name) = self.snippet_name() {
            if self.snippets.contains_key(&name) {
                return Err(self.err(format!(
                    "redeclaration of previously declared snippet {name}"
                )));
            }
            let body = self.snippet_tokens()?;
            for i in 0..body.len().saturating_sub(1) {
                if body[i].text == "import" {
                    let at_line_start = i == 0
                        || body[i - 1].file != body[i].file
                        || body[i - 1].line != body[i].line;
                    if at_line_start && self.env(&body[i + 1].text) == name {
                        return Err(self.err(format!(
                            "maximum snippet import depth ({MAX_SNIPPET_EXPANSIONS}) exceeded"
                        )));
                    }
                }
            }
            self.snippets.insert(name, body);
            self.block.keys.clear();
            return Ok(());
        }
        self.block_contents()
    }

    fn addresses(&mut self) -> Result<(), Diagnostic> {
        let mut expecting_another = false;
        loop {
            let tkn = self.env(self.val());
            if tkn == "import" && self.is_new_line() {
                self.do_import()?;
                continue;
            }
            if tkn == "{" {
                if expecting_another {
                    return Err(self.err(format!(
                        "Expected another address but had '{tkn}' - check for extra comma"
                    )));
                }
                break;
            }
            if !tkn.is_empty() {
                let key = match tkn.strip_suffix(',') {
                    Some(k) => {
                        expecting_another = true;
                        k.to_owned()
                    }
                    None => {
                        expecting_another = false;
                        tkn
                    }
                };
                self.block.keys.push(key);
            }
            let has_next = self.next();
            if expecting_another && !has_next {
                return Err(self.err("Unexpected EOF"));
            }
            if !has_next {
                self.eof = true;
                break;
            }
            if !expecting_another && self.is_new_line() {
                break;
            }
        }
        Ok(())
    }

    fn block_contents(&mut self) -> Result<(), Diagnostic> {
        let braced = self.val() == "{";
        let open_err = (!braced).then(|| self.syntax_err("{"));
        if open_err.is_some() {
            // A lone block needs no braces: its directives run to EOF.
            self.cursor -= 1;
        }
        self.directives()?;
        if braced && self.val() != "}" {
            return Err(self.syntax_err("}"));
        }
        Ok(())
    }

    fn directives(&mut self) -> Result<(), Diagnostic> {
        while self.next() {
            if self.val() == "}" {
                break;
            }
            if self.val() == "import" {
                self.do_import()?;
                self.cursor -= 1;
                continue;
            }
            self.directive()?;
        }
        Ok(())
    }

    fn directive(&mut self) -> Result<(), Diagnostic> {
        let dir = self.env(self.val());
        let mut nesting: usize = 0;
        if let Some(valid) = self.opts.valid_directives {
            if !valid.contains(&dir.as_str()) {
                return Err(self.err(format!("Unknown directive '{dir}'")));
            }
        }
        let first = self.tokens[self.cursor as usize].clone();
        self.block.push(&dir, first);
        while self.next() {
            let v = self.val();
            if v == "{" {
                nesting += 1;
            } else if self.is_new_line() && nesting == 0 {
                self.cursor -= 1;
                break;
            } else if v == "}" && nesting > 0 {
                nesting -= 1;
            } else if v == "}" && nesting == 0 {
                return Err(self.err("Unexpected '}' because no matching opening brace"));
            } else if v == "import" && self.is_new_line() {
                self.do_import()?;
                self.cursor -= 1;
                continue;
            }
            let c = self.cursor as usize;
            let replaced = self.env(&self.tokens[c].text);
            self.tokens[c].text = replaced;
            let tok = self.tokens[c].clone();
            self.block.push(&dir, tok);
        }
        if nesting > 0 {
            return Err(self.err("Unexpected EOF"));
        }
        Ok(())
    }

    fn snippet_name(&self) -> Option<String> {
        match self.block.keys.as_slice() {
            [k] if k.starts_with('(') && k.ends_with(')') => {
                Some(k[1..].strip_suffix(')').unwrap_or(&k[1..]).to_owned())
            }
            _ => None,
        }
    }

    fn snippet_tokens(&mut self) -> Result<Vec<Token>, Diagnostic> {
        if self.val() != "{" {
            return Err(self.syntax_err("{"));
        }
        let mut count = 1usize;
        let mut tokens = Vec::new();
        while self.next() {
            if self.val() == "}" {
                count -= 1;
                if count == 0 {
                    break;
                }
            }
            if self.val() == "{" {
                count += 1;
            }
            tokens.push(self.tokens[self.cursor as usize].clone());
        }
        if count != 0 {
            return Err(self.syntax_err("}"));
        }
        Ok(tokens)
    }

    /// Replaces `import ARG` (cursor on `import`) with the imported tokens and leaves
    /// the cursor on the first imported token, as caddy does.
    fn do_import(&mut self) -> Result<(), Diagnostic> {
        let import_tok = self.cur().cloned();
        if !self.next_arg() {
            return Err(self.arg_err());
        }
        let pattern = self.env(self.val());
        if pattern.is_empty() {
            return Err(self.err("Import requires a non-empty filepath"));
        }
        if self.next_arg() {
            return Err(self.err("Import takes only one argument (glob pattern or file)"));
        }
        let imported: Vec<Token> = if let Some(snip) = self.snippets.get(&pattern) {
            if self.snippet_expansions >= MAX_SNIPPET_EXPANSIONS {
                return Err(self.err(format!(
                    "maximum snippet import depth ({MAX_SNIPPET_EXPANSIONS}) exceeded"
                )));
            }
            self.snippet_expansions += 1;
            snip.clone()
        } else {
            if self.file_expansions >= MAX_FILE_EXPANSIONS {
                // CoreDNS prints the snippet limit here (a bug kept for identical text).
                return Err(self.err(format!(
                    "maximum file import depth ({MAX_SNIPPET_EXPANSIONS}) exceeded"
                )));
            }
            self.file_expansions += 1;
            let here = self.file();
            let abs_file = absolute(Path::new(&*here));
            let glob_pattern = if Path::new(&pattern).is_absolute() {
                pattern.clone()
            } else {
                let dir = abs_file.parent().map(Path::to_path_buf).unwrap_or_default();
                clean(&dir.join(&pattern)).to_string_lossy().into_owned()
            };
            if glob_pattern.matches('*').count() > 1
                || glob_pattern.matches('?').count() > 1
                || (glob_pattern.contains('[') && glob_pattern.contains(']'))
            {
                return Err(self.err(format!(
                    "Glob pattern may only contain one wildcard (*), but has others: {glob_pattern}"
                )));
            }
            let matches = glob::glob(&glob_pattern).map_err(|_| {
                self.err(format!(
                    "Failed to use import pattern {pattern}: syntax error in pattern"
                ))
            })?;
            if matches.is_empty() {
                if glob_pattern.contains(['*', '?', '[', ']']) {
                    self.warnings
                        .push(format!("No files matching import glob pattern: {pattern}"));
                } else {
                    return Err(self.err(format!("File to import not found: {pattern}")));
                }
            }
            let via = import_tok.as_ref().map(|t| {
                Arc::new(Via {
                    file: t.file.clone(),
                    line: t.line,
                    parent: t.via.clone(),
                })
            });
            let mut out = Vec::new();
            for m in matches {
                let abs = absolute(&m);
                let abs_str = abs.to_string_lossy();
                if let Some(t) = &import_tok {
                    if t.chain_contains(&abs_str) || abs == abs_file {
                        // An import cycle expands forever in CoreDNS until this limit.
                        return Err(self.err(format!(
                            "maximum file import depth ({MAX_SNIPPET_EXPANSIONS}) exceeded"
                        )));
                    }
                }
                let text = self.read_import(&m)?;
                let file: Arc<str> = Arc::from(abs_str.as_ref());
                out.extend(lex(&text, &file, via.as_ref()));
                if out.len() + self.tokens.len() > MAX_TOKENS {
                    return Err(self.err(format!(
                        "Could not import {}: too many tokens (more than {MAX_TOKENS})",
                        m.display()
                    )));
                }
            }
            out
        };
        let c = self.cursor as usize;
        // Splice out `import` (c-1) and its argument (c).
        self.tokens.splice(c - 1..=c, imported);
        self.cursor -= 1;
        Ok(())
    }

    fn read_import(&self, path: &Path) -> Result<String, Diagnostic> {
        let d = path.display();
        let mut f = std::fs::File::open(path)
            .map_err(|e| self.err(format!("Could not import {d}: {}", go_io_error(&e, path))))?;
        let meta = f
            .metadata()
            .map_err(|e| self.err(format!("Could not import {d}: {e}")))?;
        if meta.is_dir() {
            return Err(self.err(format!("Could not import {d}: is a directory")));
        }
        read_capped(&mut f)
            .map_err(|e| self.err(format!("Could not read tokens while importing {d}: {e}")))
    }
}

/// Reads a whole file of at most [`MAX_FILE_BYTES`], lossily as UTF-8 (Go reads
/// invalid bytes as U+FFFD).
pub fn read_capped(r: &mut dyn Read) -> std::io::Result<String> {
    let mut buf = Vec::new();
    r.take(MAX_FILE_BYTES + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > MAX_FILE_BYTES {
        return Err(std::io::Error::other(format!(
            "file is larger than {} MiB",
            MAX_FILE_BYTES >> 20
        )));
    }
    Ok(match String::from_utf8(buf) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

/// Formats an open error the way Go's `*PathError` prints after caddy's prefix.
fn go_io_error(e: &std::io::Error, path: &Path) -> String {
    let msg = match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".to_owned(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        _ => e.to_string(),
    };
    format!("open {}: {msg}", path.display())
}

/// Go `filepath.Abs`: joined with the working directory and cleaned.
pub fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        clean(p)
    } else {
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
        clean(&cwd.join(p))
    }
}

/// Go `filepath.Clean`, lexically.
pub fn clean(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                // `..` removes the previous name; a relative path keeps the `..`
                // it cannot remove (leading ones, or after other `..`s).
                let last_up = out.components().next_back() == Some(Component::ParentDir);
                if last_up || (!out.pop() && !p.is_absolute()) {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// Prints blocks back as Corefile text that parses to the same blocks (keys,
/// directives, tokens and line structure).
pub fn print(blocks: &[ServerBlock]) -> String {
    let mut out = String::new();
    for b in blocks {
        let keys: Vec<String> = b.keys.iter().map(|k| quote(k)).collect();
        out.push_str(&keys.join(" "));
        out.push_str(" {\n");
        for (_, toks) in &b.directives {
            let mut prev: Option<&Token> = None;
            for t in toks {
                if let Some(p) = prev {
                    let new_line = p.file != t.file || p.line + p.line_breaks() < t.line;
                    out.push(if new_line { '\n' } else { ' ' });
                }
                out.push_str(&quote(&t.text));
                prev = Some(t);
            }
            out.push('\n');
        }
        out.push_str("}\n");
    }
    out
}

fn quote(t: &str) -> String {
    if !t.is_empty() && !t.starts_with('"') && !t.contains(|c: char| c.is_whitespace() || c == '#')
    {
        return t.to_owned();
    }
    format!("\"{}\"", t.replace('"', "\\\""))
}

#[cfg(test)]
mod tests;
