//! *reload*: polls the Corefile and reloads when the parsed configuration
//! changes (cli-and-ops.md §7). The change test is CoreDNS's: SHA-512 of the
//! JSON encoding of the parsed server blocks (tokens with their file and line).
//!
//! CoreDNS: `plugin/reload/reload.go`, `setup.go`.

use std::fmt::Write as _;
use std::time::Duration;

use corefile::values::{format_go_duration, parse_go_duration_nanos};
use corefile::{Diagnostic, Dispenser, ServerBlock};
use sha2::{Digest, Sha512};

use crate::config::SetupCtx;

const MIN_INTERVAL: Duration = Duration::from_secs(2);
const MIN_JITTER: Duration = Duration::from_secs(1);

/// *reload* [INTERVAL] [JITTER]: the effective interval (jitter applied once).
pub fn setup(d: &mut Dispenser, ctx: &mut SetupCtx<'_>) -> Result<(), Diagnostic> {
    let w = |e: Diagnostic| e.in_plugin("reload");
    d.next();
    let args = d.remaining_args();
    if args.len() > 2 {
        return Err(w(d.arg_err()));
    }
    // Go's signed durations: a negative value fails the minimum checks.
    let dur = |s: &str| -> Result<i128, Diagnostic> {
        parse_go_duration_nanos(s).map_err(|e| w(Diagnostic::plain(e)))
    };
    let nanos = |d: Duration| d.as_nanos() as i128;
    let i = match args.first() {
        Some(a) => dur(a)?,
        None => nanos(Duration::from_secs(30)),
    };
    if i < nanos(MIN_INTERVAL) {
        return Err(w(Diagnostic::plain(format!(
            "interval value must be greater or equal to {}",
            format_go_duration(MIN_INTERVAL)
        ))));
    }
    let mut i = Duration::from_nanos(u64::try_from(i).unwrap_or(u64::MAX));
    let j = match args.get(1) {
        Some(a) => dur(a)?,
        None => nanos(Duration::from_secs(15)),
    };
    if j != 0 && j < nanos(MIN_JITTER) {
        return Err(w(Diagnostic::plain(format!(
            "jitter value must be 0 or greater or equal to {}",
            format_go_duration(MIN_JITTER)
        ))));
    }
    let mut j = Duration::from_nanos(u64::try_from(j).unwrap_or(u64::MAX));
    if j > i / 2 {
        j = i / 2;
    }
    if !j.is_zero() {
        let jn = j.as_nanos() as i128;
        let r = i128::from(fastrand::u64(..jn as u64)) - jn / 2;
        i = Duration::from_nanos((i.as_nanos() as i128 + r).max(0) as u64);
    }
    ctx.settings.reload = Some(i);
    Ok(())
}

/// A string as Go's `encoding/json` writes it (HTML characters escaped).
pub(crate) fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Go's `json.Marshal([]caddyfile.ServerBlock)`: keys, then tokens by directive
/// (sorted), each `{"File":…,"Line":…,"Text":…}` (File empty for the main file).
pub fn blocks_json(blocks: &[ServerBlock]) -> String {
    let mut out = String::from("[");
    for (bi, b) in blocks.iter().enumerate() {
        if bi > 0 {
            out.push(',');
        }
        out.push_str("{\"Keys\":[");
        for (i, k) in b.keys.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            json_str(&mut out, k);
        }
        out.push_str("],\"Tokens\":{");
        let mut dirs: Vec<&(String, Vec<corefile::Token>)> = b.directives.iter().collect();
        dirs.sort_by(|a, b| a.0.cmp(&b.0));
        for (di, (name, toks)) in dirs.iter().enumerate() {
            if di > 0 {
                out.push(',');
            }
            json_str(&mut out, name);
            out.push_str(":[");
            for (ti, t) in toks.iter().enumerate() {
                if ti > 0 {
                    out.push(',');
                }
                out.push_str("{\"File\":");
                json_str(&mut out, if t.via.is_some() { &t.file } else { "" });
                let _ = write!(out, ",\"Line\":{},\"Text\":", t.line);
                json_str(&mut out, &t.text);
                out.push('}');
            }
            out.push(']');
        }
        out.push_str("}}");
    }
    out.push(']');
    out
}

/// The SHA-512 (hex) CoreDNS logs for `text` parsed as `filename`, or the parse error.
pub fn config_hash(text: &str, filename: &str) -> Result<String, String> {
    let env = corefile::ProcessEnv;
    let parsed = corefile::parse(
        text,
        &corefile::ParseOptions {
            filename,
            valid_directives: None,
            env: &env,
        },
    )
    .map_err(|e| e.to_string())?;
    let json = blocks_json(&parsed.blocks);
    let digest = Sha512::digest(json.as_bytes());
    let mut hex = String::with_capacity(128);
    for b in digest {
        let _ = write!(hex, "{b:02x}");
    }
    Ok(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_like_go() {
        let env = corefile::ProcessEnv;
        let p = corefile::parse(
            ".:53 {\n whoami\n log . \"<x>\"\n}\n",
            &corefile::ParseOptions {
                filename: "Corefile",
                valid_directives: None,
                env: &env,
            },
        )
        .expect("parse");
        assert_eq!(
            blocks_json(&p.blocks),
            r#"[{"Keys":[".:53"],"Tokens":{"log":[{"File":"","Line":3,"Text":"log"},{"File":"","Line":3,"Text":"."},{"File":"","Line":3,"Text":"\u003cx\u003e"}],"whoami":[{"File":"","Line":2,"Text":"whoami"}]}}]"#
        );
        // A comment at the end of a line changes nothing; a line shift does.
        let a = config_hash(".:53 {\n whoami\n}\n", "Corefile").expect("a");
        let b = config_hash(".:53 {\n whoami # c\n}\n", "Corefile").expect("b");
        let c = config_hash("\n.:53 {\n whoami\n}\n", "Corefile").expect("c");
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.len(), 128);
    }
}
