//! *on*: commands run on process events, as the `on` plugin of CoreDNS 1.14.7
//! (coredns/caddy `onevent`) parses and runs them.
//!
//! `on startup|shutdown|certrenew COMMAND [ARGS...] [&]`: the arguments are joined
//! with spaces and split again shell-style (go-shlex: quotes, backslash escapes,
//! `#` comments). `startup` runs once the servers are up and after every
//! successful reload; `shutdown` runs on SIGTERM and SIGINT before the other
//! shutdown callbacks. A trailing `&` starts the command without waiting. The
//! command inherits the daemon's standard streams. Lines logged:
//! `[INFO] Blocking Command "CMD ARGS" with ID UUID` (or `Nonblocking`), and
//! `error on 'on-UUID' hook: ERROR` when it fails.

use corefile::{Diagnostic, Dispenser};

use crate::config::SetupCtx;

/// An event a hook runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Servers started (also after a reload).
    Startup,
    /// Final shutdown (SIGTERM, SIGINT).
    Shutdown,
    /// A certificate renewed (ACME; ringdns has none, so never).
    CertRenew,
}

/// One `on` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    /// The event.
    pub event: Event,
    /// A random UUID naming the hook in its log lines.
    pub id: String,
    /// The program.
    pub command: String,
    /// Its arguments (without a trailing `&`).
    pub args: Vec<String>,
    /// A trailing `&`: start without waiting.
    pub nonblocking: bool,
}

/// A random (version 4) UUID in Go's `uuid.New().String()` form.
fn uuid() -> String {
    let mut b = [0u8; 16];
    for x in &mut b {
        *x = fastrand::u8(..);
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// go-shlex's `Split`: words separated by white space; `'…'` literal, `"…"` with
/// backslash escapes of `\`, `"`, `$`, `` ` `` and newline, a backslash outside quotes
/// escaping any character, `#` at the start of a word beginning a comment.
pub fn shlex_split(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '#' if !in_word => {
                // A comment runs to the end of the line.
                for c in it.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '\\' => {
                in_word = true;
                match it.next() {
                    Some(n) => cur.push(n),
                    None => return Err("EOF found after escape character".into()),
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match it.next() {
                        Some('\'') => break,
                        Some(n) => cur.push(n),
                        None => return Err("EOF found when expecting closing quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match it.next() {
                        Some('"') => break,
                        Some('\\') => match it.next() {
                            Some(n @ ('\\' | '"' | '$' | '`' | '\n')) => cur.push(n),
                            Some(n) => {
                                cur.push('\\');
                                cur.push(n);
                            }
                            None => {
                                return Err("EOF found after escape character".into());
                            }
                        },
                        Some(n) => cur.push(n),
                        None => return Err("EOF found when expecting closing quote".into()),
                    }
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// Setup (onevent's `onParse`; its errors carry no plugin prefix).
pub fn setup(d: &mut Dispenser, ctx: &mut SetupCtx<'_>) -> Result<(), Diagnostic> {
    while d.next() {
        if !d.next_arg() {
            return Err(d.arg_err());
        }
        let event = match d.val().to_lowercase().as_str() {
            "startup" => Event::Startup,
            "shutdown" => Event::Shutdown,
            "certrenew" => Event::CertRenew,
            _ => {
                return Err(d.err(format!(
                    "Wrong event name or event not supported: '{}'",
                    d.val()
                )));
            }
        };
        let joined = d.remaining_args().join(" ");
        let mut parts =
            shlex_split(&joined).map_err(|e| d.err(format!("error parsing command: {e}")))?;
        if parts.is_empty() {
            return Err(d.err(format!("no command contained in '{joined}'")));
        }
        let command = parts.remove(0);
        let nonblocking = parts.last().is_some_and(|a| a == "&");
        if nonblocking {
            parts.pop();
        }
        ctx.settings.on_hooks.push(Hook {
            event,
            id: uuid(),
            command,
            args: parts,
            nonblocking,
        });
    }
    Ok(())
}

/// Go's `exec` error text: a bare name not found in `$PATH`, else the failed
/// `fork/exec`.
fn exec_err(command: &str, e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::NotFound && !command.contains('/') {
        format!("exec: \"{command}\": executable file not found in $PATH")
    } else {
        format!("fork/exec {command}: {}", crate::config::go_err(e))
    }
}

/// Runs the hooks for `event`, in Corefile order.
pub fn emit<'a>(hooks: impl IntoIterator<Item = &'a Hook>, event: Event) {
    for h in hooks {
        if h.event != event {
            continue;
        }
        let line = format!(
            "[INFO] {} Command \"{} {}\" with ID {}",
            if h.nonblocking {
                "Nonblocking"
            } else {
                "Blocking"
            },
            h.command,
            h.args.join(" "),
            h.id
        );
        crate::clog::raw(&line);
        let mut cmd = std::process::Command::new(&h.command);
        cmd.args(&h.args);
        let result = if h.nonblocking {
            cmd.spawn()
                .map(|mut child| {
                    // Reaped in the background so it leaves no zombie.
                    std::thread::spawn(move || {
                        let _ = child.wait();
                    });
                })
                .map_err(|e| exec_err(&h.command, &e))
        } else {
            match cmd.status() {
                Ok(s) if s.success() => Ok(()),
                Ok(s) => Err(match s.code() {
                    Some(c) => format!("exit status {c}"),
                    None => {
                        use std::os::unix::process::ExitStatusExt;
                        format!("signal: {}", s.signal().unwrap_or(0))
                    }
                }),
                Err(e) => Err(exec_err(&h.command, &e)),
            }
        };
        if let Err(e) = result {
            crate::clog::raw(&format!("error on 'on-{}' hook: {e}", h.id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{build_str, err};

    #[test]
    fn shlex_like_go_shlex() {
        assert_eq!(
            shlex_split("a 'b c' \"d \\\"e\\\"\" f\\ g #comment").expect("split"),
            vec!["a", "b c", "d \"e\"", "f g"]
        );
        assert_eq!(shlex_split("x#y").expect("split"), vec!["x#y"]);
        assert_eq!(shlex_split("").expect("split"), Vec::<String>::new());
        assert!(shlex_split("'open").is_err());
    }

    #[test]
    fn setup_table() {
        let block = |body: &str| format!(".:53 {{\n{body}\n whoami\n}}");
        let cases: &[(&str, &str)] = &[
            ("on startup echo hi", "ok"),
            ("on STARTUP echo hi &", "ok"),
            (
                "on",
                "Corefile:2 - Error during parsing: Wrong argument count or unexpected line ending after 'on'",
            ),
            (
                "on boot echo",
                "Corefile:2 - Error during parsing: Wrong event name or event not supported: 'boot'",
            ),
            (
                "on startup",
                "Corefile:2 - Error during parsing: no command contained in ''",
            ),
            (
                "on shutdown \"'open\"",
                "Corefile:2 - Error during parsing: error parsing command: EOF found when expecting closing quote",
            ),
        ];
        for (body, want) in cases {
            assert_eq!(err(&block(body)), *want, "{body}");
        }
        let c = build_str(&block(
            "on startup /bin/sh -c \"'echo a b'\" &\n on shutdown touch x",
        ))
        .expect("config");
        let h = &c.blocks[0].settings.on_hooks;
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].event, Event::Startup);
        assert_eq!(h[0].command, "/bin/sh");
        assert_eq!(h[0].args, ["-c", "echo a b"]);
        assert!(h[0].nonblocking);
        assert_eq!((h[1].event, h[1].nonblocking), (Event::Shutdown, false));
        let re = regex::Regex::new(
            "^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$",
        )
        .expect("re");
        assert!(re.is_match(&h[0].id), "{}", h[0].id);
        assert_ne!(h[0].id, h[1].id);
    }
}
