//! The command line, parsed exactly as Go's `flag` package parses CoreDNS's flags
//! (cli-and-ops.md §1): one or two dashes, `-flag value` or `-flag=value`,
//! booleans take a value only in the `=` form, parsing stops at the first
//! non-flag argument or `--`. Errors print Go's text and usage to stderr, exit 2;
//! `-h`/`-help` print usage to stderr and exit 0.
//!
//! clap cannot reproduce Go's usage text and error texts byte for byte, so this
//! small parser does it instead.

use std::fmt::Write as _;

/// Parsed flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cli {
    /// `-conf`: Corefile path, `stdin`, or empty for the default search.
    pub conf: String,
    /// `-dns.port` / `-p`.
    pub dns_port: String,
    /// `-pidfile`.
    pub pidfile: String,
    /// `-plugins`.
    pub plugins: bool,
    /// `-version`.
    pub version: bool,
    /// `-quiet`.
    pub quiet: bool,
    /// ringdns extra: `-validate` parses and sets up the config, then exits.
    pub validate: bool,
    /// ringdns extra: `-backend auto|uring|epoll` (also `RINGDNS_BACKEND`).
    pub backend: String,
    /// Positional arguments left after the flags (CoreDNS treats any as fatal).
    pub rest: Vec<String>,
}

impl Default for Cli {
    fn default() -> Self {
        Self {
            conf: String::new(),
            dns_port: "53".into(),
            pidfile: String::new(),
            plugins: false,
            version: false,
            quiet: false,
            validate: false,
            backend: String::new(),
            rest: Vec::new(),
        }
    }
}

/// What the caller must do when parsing did not yield flags to run with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CliExit {
    /// Print `stderr` and exit with `code`.
    Exit {
        /// Text for stderr.
        stderr: String,
        /// Exit status.
        code: i32,
    },
}

#[derive(Clone, Copy)]
enum Kind {
    Str,
    Bool,
}

/// (name, kind, usage) sorted by name, as Go prints them.
const FLAGS: &[(&str, Kind, &str)] = &[
    (
        "backend",
        Kind::Str,
        "ringdns: packet engine: auto, uring or epoll (default \"auto\"; env RINGDNS_BACKEND)",
    ),
    ("conf", Kind::Str, "Corefile to load (default \"Corefile\")"),
    ("dns.port", Kind::Str, "Default port (default \"53\")"),
    ("p", Kind::Str, "Default port (default \"53\")"),
    ("pidfile", Kind::Str, "Path to write pid file"),
    ("plugins", Kind::Bool, "List installed plugins"),
    ("quiet", Kind::Bool, "Quiet mode (no initialization output)"),
    (
        "validate",
        Kind::Bool,
        "ringdns: parse and set up the configuration, report errors, then exit",
    ),
    ("version", Kind::Bool, "Show version"),
];

/// Go's `PrintDefaults` layout for our flags.
pub fn usage(argv0: &str) -> String {
    let mut s = format!("Usage of {argv0}:\n");
    for (name, kind, text) in FLAGS {
        let mut line = format!("  -{name}");
        if let Kind::Str = kind {
            line.push_str(" string");
        }
        if line.len() <= 4 {
            line.push('\t');
        } else {
            line.push_str("\n    \t");
        }
        let _ = writeln!(s, "{line}{text}");
    }
    s
}

/// Go `strconv.ParseBool`.
pub fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Parses `args` (without argv\[0\]).
pub fn parse(argv0: &str, args: &[String]) -> Result<Cli, CliExit> {
    let mut cli = Cli::default();
    let fail = |msg: String| CliExit::Exit {
        stderr: format!("{msg}\n{}", usage(argv0)),
        code: 2,
    };
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a.len() < 2 || !a.starts_with('-') {
            break;
        }
        let mut name = &a[1..];
        if let Some(n) = name.strip_prefix('-') {
            if n.is_empty() {
                i += 1;
                break;
            }
            name = n;
        }
        if name.is_empty() || name.starts_with('-') || name.starts_with('=') {
            return Err(fail(format!("bad flag syntax: {a}")));
        }
        i += 1;
        let (name, value) = match name.split_once('=') {
            Some((n, v)) => (n, Some(v.to_owned())),
            None => (name, None),
        };
        let Some((_, kind, _)) = FLAGS.iter().find(|(n, _, _)| *n == name) else {
            if name == "help" || name == "h" {
                return Err(CliExit::Exit {
                    stderr: usage(argv0),
                    code: 0,
                });
            }
            return Err(fail(format!("flag provided but not defined: -{name}")));
        };
        match kind {
            Kind::Bool => {
                let v = match value {
                    None => true,
                    Some(v) => parse_bool(&v).ok_or_else(|| {
                        fail(format!(
                            "invalid boolean value {v:?} for -{name}: parse error"
                        ))
                    })?,
                };
                match name {
                    "plugins" => cli.plugins = v,
                    "version" => cli.version = v,
                    "quiet" => cli.quiet = v,
                    _ => cli.validate = v,
                }
            }
            Kind::Str => {
                let v = match value {
                    Some(v) => v,
                    None => {
                        let Some(v) = args.get(i) else {
                            return Err(fail(format!("flag needs an argument: -{name}")));
                        };
                        i += 1;
                        v.clone()
                    }
                };
                match name {
                    "conf" => cli.conf = v,
                    "dns.port" | "p" => cli.dns_port = v,
                    "pidfile" => cli.pidfile = v,
                    _ => cli.backend = v,
                }
            }
        }
    }
    cli.rest = args[i..].to_vec();
    Ok(cli)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Cli, CliExit> {
        let v: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        parse("/usr/bin/ringdns", &v)
    }

    #[test]
    fn go_flag_forms() {
        let c = p(&["-conf", "x", "--dns.port=1053", "-quiet", "-plugins=false"]).expect("ok");
        assert_eq!(
            (c.conf.as_str(), c.dns_port.as_str(), c.quiet, c.plugins),
            ("x", "1053", true, false)
        );
        let c = p(&["-p", "5", "-dns.port", "6"]).expect("ok");
        assert_eq!(c.dns_port, "6");
        let c = p(&["-quiet", "foo", "-conf", "x"]).expect("ok");
        assert_eq!(c.rest, ["foo", "-conf", "x"]);
        let c = p(&["--", "-x"]).expect("ok");
        assert_eq!(c.rest, ["-x"]);
    }

    #[test]
    fn errors() {
        let Err(CliExit::Exit { stderr, code }) = p(&["-x"]) else {
            panic!()
        };
        assert_eq!(code, 2);
        assert!(
            stderr.starts_with("flag provided but not defined: -x\nUsage of /usr/bin/ringdns:\n")
        );
        let Err(CliExit::Exit { code, stderr }) = p(&["-h"]) else {
            panic!()
        };
        assert_eq!(code, 0);
        assert!(stderr.contains("  -conf string\n    \tCorefile to load (default \"Corefile\")\n"));
        assert!(stderr.contains("  -p string\n    \tDefault port (default \"53\")\n"));
        let Err(CliExit::Exit { stderr, .. }) = p(&["-conf"]) else {
            panic!()
        };
        assert!(stderr.starts_with("flag needs an argument: -conf\n"));
        let Err(CliExit::Exit { stderr, .. }) = p(&["-quiet=maybe"]) else {
            panic!()
        };
        assert!(stderr.starts_with("invalid boolean value \"maybe\" for -quiet: parse error\n"));
    }
}
