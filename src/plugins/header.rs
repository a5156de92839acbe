//! *header*: sets or clears AA, RA and RD on queries and/or responses
//! (plugins.md B).
//!
//! CoreDNS: `plugin/header/header.go`, `handler.go`, `setup.go`.

use corefile::{Diagnostic, Dispenser};

use crate::chain::{Ctx, Flow};
use crate::wire::{flags, hdr};

/// One rule: a flag bit and whether to set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// The flag bit.
    pub bit: u16,
    /// Set (true) or clear.
    pub set: bool,
}

/// Parsed configuration.
#[derive(Debug, Clone, Default)]
pub struct HeaderConfig {
    /// Rules applied to the query.
    pub query: Vec<Rule>,
    /// Rules applied to every written reply.
    pub response: Vec<Rule>,
}

fn new_rules(action: Option<&str>, args: &[String]) -> Result<Vec<Rule>, String> {
    let Some(action) = action else {
        return Err("no flag action provided".into());
    };
    if args.is_empty() {
        return Err("invalid length for flags, at least one should be provided".into());
    }
    let set = match action.to_lowercase().as_str() {
        "set" => true,
        "clear" => false,
        a => return Err(format!("unknown flag action={a}, should be set or clear")),
    };
    args.iter()
        .map(|a| {
            let bit = match a.to_lowercase().as_str() {
                "aa" => flags::AA,
                "ra" => flags::RA,
                "rd" => flags::RD,
                f => return Err(format!("unknown/unsupported flag={f}")),
            };
            Ok(Rule { bit, set })
        })
        .collect()
}

/// Setup (CoreDNS `header.parse`).
pub fn setup(d: &mut Dispenser) -> Result<HeaderConfig, Diagnostic> {
    let w = |e: Diagnostic| e.in_plugin("header");
    while d.next() {
        let mut c = HeaderConfig::default();
        while d.next_block() {
            let selector = d.val().to_lowercase();
            let mut action = None;
            match selector.as_str() {
                "query" | "response" => {
                    if d.next_arg() {
                        action = Some(d.val().to_owned());
                    }
                }
                _ => {
                    return Err(w(Diagnostic::plain(format!(
                        "setting up rule: invalid selector={selector} should be query or response"
                    ))));
                }
            }
            let args = d.remaining_args();
            let rules = new_rules(action.as_deref(), &args)
                .map_err(|e| w(Diagnostic::plain(format!("setting up rule: {e}"))))?;
            if selector == "response" {
                c.response.extend(rules);
            } else {
                c.query.extend(rules);
            }
        }
        if !c.query.is_empty() || !c.response.is_empty() {
            return Ok(c);
        }
    }
    Err(w(d.arg_err()))
}

/// The runtime plugin.
pub struct Header {
    c: HeaderConfig,
}

fn apply(mut f: u16, rules: &[Rule]) -> u16 {
    for r in rules {
        if r.set {
            f |= r.bit;
        } else {
            f &= !r.bit;
        }
    }
    f
}

impl Header {
    /// Builds it.
    pub fn new(c: &HeaderConfig) -> Self {
        Self { c: c.clone() }
    }

    /// Applies the query rules.
    pub fn serve(&self, ctx: &mut Ctx<'_>) -> Flow {
        ctx.st.flags = apply(ctx.st.flags, &self.c.query);
        Flow::Next
    }

    /// Applies the response rules to the written reply.
    pub fn respond(&self, ctx: &mut Ctx<'_>) {
        if ctx.written && !self.c.response.is_empty() {
            let f = apply(hdr::flags(ctx.resp), &self.c.response);
            hdr::set_flags(ctx.resp, f);
        }
    }
}
