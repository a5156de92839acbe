//! *errors*: logs the error a request's chain returned, as
//! `[ERROR] plugin/errors: RCODE QNAME QTYPE: ERROR`, optionally consolidating
//! repeated errors matching a pattern into one summary line per period
//! (plugins.md B, `errors`).
//!
//! CoreDNS: `plugin/errors/errors.go`, `setup.go`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use corefile::values::{format_go_duration, parse_go_duration};
use corefile::{Diagnostic, Dispenser};

use crate::chain::{Ctx, Status};
use crate::clog::{self, Level};
use crate::wire::types;

const MAX_REGEXP_LEN: usize = 10_000;

/// One `consolidate` rule.
#[derive(Debug, Clone)]
pub struct Consolidate {
    /// Window.
    pub period: Duration,
    /// The pattern as written.
    pub pattern: String,
    /// Level of the summary (and of the first occurrence with `show_first`).
    pub level: Level,
    /// Log the first occurrence at once.
    pub show_first: bool,
}

/// Parsed configuration.
#[derive(Debug, Clone, Default)]
pub struct ErrorsConfig {
    /// Consolidation rules, first match wins.
    pub consolidate: Vec<Consolidate>,
    /// `stacktrace` (panics are never recovered silently in ringdns; accepted).
    pub stacktrace: bool,
}

/// Setup (CoreDNS `errorsParse`).
pub fn setup(d: &mut Dispenser) -> Result<ErrorsConfig, Diagnostic> {
    let wrap = |e: Diagnostic| e.in_plugin("errors");
    let mut c = ErrorsConfig::default();
    let mut i = 0;
    while d.next() {
        if i > 0 {
            return Err(wrap(crate::config::err_once()));
        }
        i += 1;
        let args = d.remaining_args();
        match args.as_slice() {
            [] => {}
            [a] if a == "stdout" => {}
            [a] => return Err(wrap(d.err(format!("invalid log file: {a}")))),
            _ => return Err(wrap(d.arg_err())),
        }
        while d.next_block() {
            match d.val() {
                "stacktrace" => c.stacktrace = true,
                "consolidate" => c.consolidate.push(parse_consolidate(d).map_err(wrap)?),
                other => {
                    let field = format!("Unknown field {other}");
                    return Err(wrap(syntax_err_owned(d, field)));
                }
            }
        }
    }
    Ok(c)
}

fn syntax_err_owned(d: &Dispenser, expected: String) -> Diagnostic {
    // caddy's SyntaxErr with a dynamic expectation.
    Diagnostic::plain(format!(
        "{}:{} - Syntax error: Unexpected token '{}', expecting '{}'",
        d.file(),
        d.line(),
        d.val(),
        expected
    ))
}

fn parse_consolidate(d: &mut Dispenser) -> Result<Consolidate, Diagnostic> {
    let args = d.remaining_args();
    if args.len() < 2 || args.len() > 4 {
        return Err(d.arg_err());
    }
    let period = parse_go_duration(&args[0]).map_err(|e| d.err(e))?;
    if args[1].len() > MAX_REGEXP_LEN {
        return Err(d.err(format!(
            "regex pattern too long: {} > {MAX_REGEXP_LEN}",
            args[1].len()
        )));
    }
    crate::goregex::compile(&args[1]).map_err(|e| d.err(e.to_string()))?;
    let mut level = None;
    let mut show_first = false;
    for a in &args[2..] {
        let l = match a.as_str() {
            "warning" => Some(Level::Warning),
            "error" => Some(Level::Error),
            "info" => Some(Level::Info),
            "debug" => Some(Level::Debug),
            _ => None,
        };
        if let Some(l) = l {
            if level.is_some() {
                return Err(d.err("multiple log levels specified in consolidate"));
            }
            if show_first {
                return Err(d.err("log level must come before show_first in consolidate"));
            }
            level = Some(l);
        } else if a == "show_first" {
            show_first = true;
        } else {
            return Err(d.err(format!("unknown option in consolidate: {a}")));
        }
    }
    Ok(Consolidate {
        period,
        pattern: args[1].clone(),
        level: level.unwrap_or(Level::Error),
        show_first,
    })
}

struct Pattern {
    rule: Consolidate,
    re: regex::Regex,
    count: AtomicU32,
}

/// The runtime plugin.
pub struct Errors {
    patterns: Arc<Vec<Pattern>>,
    stopped: Arc<AtomicBool>,
}

impl Errors {
    /// Compiles the patterns (validated at setup).
    pub fn new(c: &ErrorsConfig) -> Self {
        let patterns = c
            .consolidate
            .iter()
            .filter_map(|r| {
                crate::goregex::compile(&r.pattern).ok().map(|re| Pattern {
                    rule: r.clone(),
                    re,
                    count: AtomicU32::new(0),
                })
            })
            .collect();
        Self {
            patterns: Arc::new(patterns),
            stopped: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Response hook: log the returned error.
    pub fn respond(&self, ctx: &mut Ctx<'_>, st: &mut Status) {
        let Some(err) = &st.err else { return };
        let text = err.to_string();
        let mut level = Level::Error;
        for (i, p) in self.patterns.iter().enumerate() {
            if p.re.is_match(&text) {
                if self.consolidate(i) {
                    return;
                }
                level = p.rule.level;
                break;
            }
        }
        let mut name = String::new();
        ctx.req.qname.to_lowercase().write_presentation(&mut name);
        let mut ty = String::new();
        types::type_to_string(ctx.req.qtype, &mut ty);
        clog::log(
            level,
            Some("errors"),
            &format!("{} {name} {ty}: {text}", st.rcode),
        );
    }

    /// Counts an occurrence; true when the line must not be logged now.
    fn consolidate(&self, i: usize) -> bool {
        if self.stopped.load(Ordering::Relaxed) {
            return false;
        }
        let p = &self.patterns[i];
        let cnt = p.count.fetch_add(1, Ordering::AcqRel) + 1;
        if cnt == 1 {
            let patterns = Arc::clone(&self.patterns);
            let period = p.rule.period;
            let spawned = std::thread::Builder::new()
                .name("errors-consolidate".into())
                .spawn(move || {
                    std::thread::sleep(period);
                    log_pattern(&patterns[i]);
                });
            if spawned.is_err() {
                log_pattern(p);
            }
            return !p.rule.show_first;
        }
        true
    }

    /// Flushes pending summaries (shutdown).
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
        for p in self.patterns.iter() {
            log_pattern(p);
        }
    }
}

fn log_pattern(p: &Pattern) {
    let cnt = p.count.swap(0, Ordering::AcqRel);
    if cnt == 0 {
        return;
    }
    if cnt > 1 || !p.rule.show_first {
        let msg = format!(
            "{cnt} errors like '{}' occurred in last {}",
            p.rule.pattern,
            format_go_duration(p.rule.period)
        );
        clog::log(p.rule.level, Some("errors"), &msg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(s: &str) -> String {
        match setup(&mut Dispenser::from_text("Corefile", s)) {
            Ok(_) => "ok".into(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn setup_table() {
        assert_eq!(err("errors"), "ok");
        assert_eq!(err("errors stdout"), "ok");
        assert_eq!(
            err("errors x"),
            "plugin/errors: Corefile:1 - Error during parsing: invalid log file: x"
        );
        assert_eq!(
            err("errors\nerrors"),
            "plugin/errors: this plugin can only be used once per Server Block"
        );
        assert_eq!(
            err("errors {\n consolidate 5m \".* i/o timeout$\" warning show_first\n}"),
            "ok"
        );
        assert_eq!(
            err("errors {\n consolidate 5m x show_first warning\n}"),
            "plugin/errors: Corefile:2 - Error during parsing: log level must come before show_first in consolidate"
        );
        assert_eq!(
            err("errors {\n bogus\n}"),
            "plugin/errors: Corefile:2 - Syntax error: Unexpected token 'bogus', expecting 'Unknown field bogus'"
        );
        assert_eq!(
            err("errors {\n consolidate 5m\n}"),
            "plugin/errors: Corefile:2 - Error during parsing: Wrong argument count or unexpected line ending after '5m'"
        );
    }
}
