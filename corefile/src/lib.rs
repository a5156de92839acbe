//! The Corefile language exactly as CoreDNS 1.14.7 (its caddy fork) reads it.
//!
//! Stages, each usable on its own:
//! * [`lexer`]: text → [`Token`]s with file and line (caddy `lexer.go`);
//! * [`parse`]: tokens → [`ServerBlock`]s, expanding `import`, snippets and
//!   environment variables (caddy `parse.go`);
//! * [`keys`]: server-block keys → transports, zones and ports, including reverse
//!   CIDR expansion (CoreDNS `register.go`, `normalize.go`);
//! * [`Dispenser`]: the cursor a plugin's setup reads its tokens with, and the
//!   error texts CoreDNS prints (caddy `dispenser.go`).
//!
//! This crate knows nothing of DNS messages and does no async I/O.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod dispenser;
mod env;
mod error;
mod glob;
pub mod keys;
pub mod lexer;
pub mod parse;
mod token;
pub mod values;

pub use dispenser::Dispenser;
pub use env::{EnvLookup, ProcessEnv, replace_env_vars};
pub use error::{Diagnostic, DiagnosticKind};
pub use parse::{ParseOptions, Parsed, ServerBlock, parse};
pub use token::{Token, Via};
