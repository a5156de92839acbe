//! Tokens with their origin: file, line, and the chain of `import`s they came through.

use std::sync::Arc;

/// One place an `import` was made from: the file and line of the `import` token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// File that held the `import`.
    pub file: Arc<str>,
    /// Line of the `import` token.
    pub line: u32,
    /// Where that file itself was imported from, if anywhere.
    pub parent: Option<Arc<Self>>,
}

/// A lexed token: its text (after environment substitution once the parser has
/// seen it) and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// The token text, quotes removed.
    pub text: String,
    /// The file it came from: the `-conf` path as given for the main file, the
    /// absolute path for imported files (as caddy records them).
    pub file: Arc<str>,
    /// Line where the token starts (1-based).
    pub line: u32,
    /// The import chain, innermost first; `None` for tokens of the main file.
    pub via: Option<Arc<Via>>,
}

impl Token {
    /// Number of line breaks inside the token text (quoted tokens may span lines).
    pub(crate) fn line_breaks(&self) -> u32 {
        self.text.bytes().filter(|&b| b == b'\n').count() as u32
    }

    /// True when `file` appears in this token's file or import chain.
    pub(crate) fn chain_contains(&self, file: &str) -> bool {
        if &*self.file == file {
            return true;
        }
        let mut v = self.via.as_deref();
        while let Some(site) = v {
            if &*site.file == file {
                return true;
            }
            v = site.parent.as_deref();
        }
        false
    }
}
