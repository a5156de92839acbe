//! *view*: a server block takes a query only when its expressions hold
//! (plugins.md B). Blocks sharing a zone and listener are tried in Corefile
//! order; the first whose view passes (or that has none) serves the query. The
//! view's name is the block's metrics `view` label and the `view/name` metadata.
//!
//! CoreDNS: `plugin/view/`, `plugin/pkg/expression/expression.go`, and the
//! filter loop of `core/dnsserver/server.go`.

pub mod expr;

#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::sync::Arc;

use corefile::{Diagnostic, Dispenser};

use crate::chain::Ctx;
use crate::wire::types;
use expr::{Env, Program, Sig, Ty, Value};

/// The request functions an expression may call (CoreDNS's `DefaultEnv`).
pub const ENV: &[Sig] = &[
    Sig {
        name: "incidr",
        args: &[Ty::Str, Ty::Str],
        ret: Ty::Bool,
    },
    Sig {
        name: "metadata",
        args: &[Ty::Str],
        ret: Ty::Str,
    },
    Sig {
        name: "type",
        args: &[],
        ret: Ty::Str,
    },
    Sig {
        name: "name",
        args: &[],
        ret: Ty::Str,
    },
    Sig {
        name: "class",
        args: &[],
        ret: Ty::Str,
    },
    Sig {
        name: "proto",
        args: &[],
        ret: Ty::Str,
    },
    Sig {
        name: "size",
        args: &[],
        ret: Ty::Int,
    },
    Sig {
        name: "client_ip",
        args: &[],
        ret: Ty::Str,
    },
    Sig {
        name: "port",
        args: &[],
        ret: Ty::Str,
    },
    Sig {
        name: "id",
        args: &[],
        ret: Ty::Int,
    },
    Sig {
        name: "opcode",
        args: &[],
        ret: Ty::Int,
    },
    Sig {
        name: "do",
        args: &[],
        ret: Ty::Bool,
    },
    Sig {
        name: "bufsize",
        args: &[],
        ret: Ty::Int,
    },
    Sig {
        name: "server_ip",
        args: &[],
        ret: Ty::Str,
    },
    Sig {
        name: "server_port",
        args: &[],
        ret: Ty::Str,
    },
];

/// Compiles `text` as a view expression, renders any error and runs the program
/// against a fixed query (the fuzz target's body; errors are expected, panics are
/// bugs).
pub fn fuzz_one(text: &str) {
    struct Fixed;
    impl Env for Fixed {
        fn call(&self, name: &str, args: &[Value]) -> Result<Value, String> {
            Ok(match name {
                "incidr" => match (args.first(), args.get(1)) {
                    (Some(Value::Str(a)), Some(Value::Str(b))) => Value::Bool(incidr(a, b)?),
                    _ => return Err("args".into()),
                },
                "size" | "id" | "opcode" | "bufsize" => Value::Int(512),
                "do" => Value::Bool(true),
                _ => Value::Str("a.example.org.".into()),
            })
        }
    }
    match Program::compile(text, ENV) {
        Ok(p) => {
            let _ = p.run(&Fixed);
        }
        Err(e) => {
            let _ = e.render(text);
        }
    }
}

/// A block's view.
#[derive(Debug, Clone)]
pub struct View {
    /// The view's name (metrics `view` label, `view/name` metadata).
    pub name: Arc<str>,
    /// Its expressions, all of which must evaluate to `true`.
    pub progs: Vec<Program>,
}

/// `view NAME { expr EXPRESSION... }` (CoreDNS `parse`).
pub fn setup(d: &mut Dispenser) -> Result<View, Diagnostic> {
    let w = |e: Diagnostic| e.in_plugin("view");
    let mut view = None;
    while d.next() {
        if view.is_some() {
            return Err(w(crate::config::err_once()));
        }
        let args = d.remaining_args();
        let [name] = args.as_slice() else {
            return Err(w(d.arg_err()));
        };
        let mut v = View {
            name: Arc::from(name.as_str()),
            progs: Vec::new(),
        };
        while d.next_block() {
            match d.val() {
                "expr" => {
                    let src = d.remaining_args().join(" ");
                    let prog = Program::compile(&src, ENV)
                        .map_err(|e| w(Diagnostic::plain(e.render(&src))))?;
                    v.progs.push(prog);
                }
                other => return Err(w(d.err(format!("unknown property '{other}'")))),
            }
        }
        view = Some(v);
    }
    view.ok_or_else(|| w(d.arg_err()))
}

impl View {
    /// Whether every expression evaluates to `true` for the query in `ctx`
    /// (an evaluation error or a result other than `true` fails the view).
    pub fn pass(&self, ctx: &Ctx<'_>) -> bool {
        let env = QueryEnv { ctx };
        self.progs
            .iter()
            .all(|p| matches!(p.run(&env), Ok(Value::Bool(true))))
    }
}

/// The request functions over one query.
struct QueryEnv<'c, 'a> {
    ctx: &'c Ctx<'a>,
}

fn str_arg(args: &[Value], i: usize) -> Result<&str, String> {
    match args.get(i) {
        Some(Value::Str(s)) => Ok(s),
        _ => Err("argument is not a string".into()),
    }
}

/// Go's `net.ParseIP` (no brackets, no zone), an IPv4-mapped address as IPv4.
fn parse_ip(s: &str) -> Option<IpAddr> {
    let ip: IpAddr = s.parse().ok()?;
    Some(match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    })
}

/// `incidr(ip, cidr)` (Go's `net.ParseCIDR` and `IPNet.Contains`).
pub fn incidr(ip: &str, cidr: &str) -> Result<bool, String> {
    let ip = parse_ip(ip).ok_or("first argument is not an IP address")?;
    Ok(crate::plugins::proxyproto::Cidr::parse(cidr)?.contains(ip))
}

impl Env for QueryEnv<'_, '_> {
    fn call(&self, name: &str, args: &[Value]) -> Result<Value, String> {
        let ctx = self.ctx;
        Ok(match name {
            "incidr" => Value::Bool(incidr(str_arg(args, 0)?, str_arg(args, 1)?)?),
            "metadata" => Value::Str(ctx.meta(str_arg(args, 0)?).unwrap_or("").to_owned()),
            "type" => {
                let mut s = String::new();
                types::type_to_string(ctx.req.qtype, &mut s);
                Value::Str(s)
            }
            "name" => {
                let mut s = String::new();
                ctx.req.qname.to_lowercase().write_presentation(&mut s);
                Value::Str(s)
            }
            "class" => {
                let mut s = String::new();
                types::class_to_string(ctx.req.qclass, &mut s);
                Value::Str(s)
            }
            "proto" => Value::Str(ctx.proto.as_str().to_owned()),
            "size" => Value::Int(ctx.req.size() as i64),
            "client_ip" => Value::Str(crate::server::canonical(ctx.peer).ip().to_string()),
            "port" => Value::Str(ctx.peer.port().to_string()),
            "id" => Value::Int(i64::from(ctx.req.id())),
            "opcode" => Value::Int(i64::from(ctx.req.opcode())),
            "do" => Value::Bool(ctx.do_bit()),
            "bufsize" => Value::Int(i64::from(ctx.size())),
            "server_ip" => Value::Str(crate::server::canonical(ctx.local).ip().to_string()),
            "server_port" => Value::Str(ctx.local.port().to_string()),
            other => return Err(format!("unknown function {other}")),
        })
    }
}
