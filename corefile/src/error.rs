//! Configuration diagnostics, displayed byte-for-byte as CoreDNS prints them.
//!
//! Forms (corefile-spec.md §2.1):
//! * `FILE:LINE - Error during parsing: MSG` (caddy `Err`, `Errf`, `ArgErr`, `EOFErr`);
//! * `FILE:LINE - Syntax error: Unexpected token 'X', expecting 'Y'` (caddy `SyntaxErr`);
//! * a plain message (setup errors without a location);
//! * plugin setup errors are prefixed `plugin/NAME: `;
//! * server-block inspection errors are prefixed `error inspecting server blocks: `.

use std::fmt;
use std::sync::Arc;

/// What a diagnostic says, and in which of CoreDNS's shapes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DiagnosticKind {
    /// `FILE:LINE - Error during parsing: MSG`.
    Parse {
        /// File as caddy names it.
        file: Arc<str>,
        /// Line of the offending token.
        line: u32,
        /// The message.
        message: String,
    },
    /// `FILE:LINE - Syntax error: Unexpected token 'FOUND', expecting 'EXPECTED'`.
    Syntax {
        /// File as caddy names it.
        file: Arc<str>,
        /// Line of the offending token.
        line: u32,
        /// The token found.
        found: String,
        /// The token expected.
        expected: &'static str,
    },
    /// A message with no location (most setup-time errors).
    Plain(String),
    /// `error inspecting server blocks: MSG`.
    Inspect(String),
}

/// A configuration error. `plugin` lists the `plugin/NAME: ` prefixes, outermost
/// first (CoreDNS's setups sometimes wrap an error twice, and so do we).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// `plugin/NAME: ` prefixes, outermost first.
    pub plugin: Vec<String>,
    /// The error itself.
    pub kind: DiagnosticKind,
}

impl Diagnostic {
    /// A located parse error.
    pub fn parse(file: Arc<str>, line: u32, message: impl Into<String>) -> Self {
        Self {
            plugin: Vec::new(),
            kind: DiagnosticKind::Parse {
                file,
                line,
                message: message.into(),
            },
        }
    }

    /// A message without location.
    pub fn plain(message: impl Into<String>) -> Self {
        Self {
            plugin: Vec::new(),
            kind: DiagnosticKind::Plain(message.into()),
        }
    }

    /// A server-block key error.
    pub fn inspect(message: impl Into<String>) -> Self {
        Self {
            plugin: Vec::new(),
            kind: DiagnosticKind::Inspect(message.into()),
        }
    }

    /// Wraps the diagnostic as CoreDNS's `plugin.Error(name, err)` does: one more
    /// `plugin/NAME: ` prefix.
    #[must_use]
    pub fn in_plugin(mut self, name: &str) -> Self {
        self.plugin.insert(0, name.to_owned());
        self
    }

    /// The location, if the diagnostic has one.
    pub fn location(&self) -> Option<(&str, u32)> {
        match &self.kind {
            DiagnosticKind::Parse { file, line, .. }
            | DiagnosticKind::Syntax { file, line, .. } => Some((file, *line)),
            _ => None,
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.plugin {
            write!(f, "plugin/{p}: ")?;
        }
        match &self.kind {
            DiagnosticKind::Parse {
                file,
                line,
                message,
            } => {
                write!(f, "{file}:{line} - Error during parsing: {message}")
            }
            DiagnosticKind::Syntax {
                file,
                line,
                found,
                expected,
            } => write!(
                f,
                "{file}:{line} - Syntax error: Unexpected token '{found}', expecting '{expected}'"
            ),
            DiagnosticKind::Plain(m) => f.write_str(m),
            DiagnosticKind::Inspect(m) => write!(f, "error inspecting server blocks: {m}"),
        }
    }
}

impl std::error::Error for Diagnostic {}
