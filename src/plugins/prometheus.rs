//! *prometheus*: counts every request of its block with CoreDNS's metric names
//! and labels (cli-and-ops.md §5); the `/metrics` endpoint is served by
//! [`crate::http`].
//!
//! CoreDNS: `plugin/metrics/metrics.go`, `setup.go`, `plugin/metrics/vars`.

use std::sync::Arc;

use corefile::{Diagnostic, Dispenser};

use crate::chain::{Ctx, Proto, Status, client_write};
use crate::config::SetupCtx;
use crate::metrics::{self, Report};
use crate::wire::Name;

/// Parsed configuration.
#[derive(Debug, Clone)]
pub struct PrometheusConfig {
    /// Listen address (`localhost:9153`).
    pub addr: String,
    /// The block's zones.
    pub zones: Vec<String>,
}

/// Setup (CoreDNS `metrics.parse`).
pub fn setup(d: &mut Dispenser, ctx: &SetupCtx<'_>) -> Result<PrometheusConfig, Diagnostic> {
    let w = |e: Diagnostic| e.in_plugin("prometheus");
    let mut c = PrometheusConfig {
        addr: "localhost:9153".into(),
        zones: ctx.origins(&[]),
    };
    let mut i = 0;
    while d.next() {
        if i > 0 {
            return Err(w(crate::config::err_once()));
        }
        i += 1;
        if let Some(a) = crate::http::address_arg(d, "prometheus")? {
            c.addr = a;
        }
        while d.next_block() {
            match d.val() {
                "runtime_metrics" => {
                    if !d.remaining_args().is_empty() {
                        return Err(w(d.arg_err()));
                    }
                    // Go runtime metrics have no meaning for ringdns: accepted, nothing to add.
                }
                "tls" => {
                    return Err(w(d.err(
                        "tls for the metrics endpoint is not supported by ringdns yet",
                    )));
                }
                other => return Err(w(d.err(format!("unknown option: {other}")))),
            }
        }
    }
    Ok(c)
}

/// The runtime plugin.
pub struct Prometheus {
    zones: Vec<(Name, Arc<str>)>,
    root: Arc<str>,
    /// Name of the first handler after this one (the `plugin` label).
    pub next_name: &'static str,
}

impl Prometheus {
    /// Builds it.
    pub fn new(c: &PrometheusConfig) -> Self {
        let zones = c
            .zones
            .iter()
            .filter_map(|z| Name::parse(z).map(|n| (n, Arc::from(z.as_str()))))
            .collect();
        Self {
            zones,
            root: Arc::from("."),
            next_name: "",
        }
    }

    /// Response hook: report the request.
    pub fn respond(&self, ctx: &mut Ctx<'_>, st: &Status) {
        // Zone and request size from the query as it came (before a *rewrite*).
        let client = ctx.client_req();
        let client = client.as_ref().unwrap_or(&ctx.req);
        let zone = self
            .zones
            .iter()
            .filter(|(n, _)| client.qname.is_subdomain_of(n))
            .max_by_key(|(n, _)| n.len())
            .map_or(&self.root, |(_, z)| z);
        let (rcode, size) = if ctx.written {
            (crate::wire::full_rcode(ctx.resp), ctx.resp.len())
        } else {
            (0, 0)
        };
        let rcode = if client_write(st.rcode) {
            rcode
        } else {
            st.rcode
        };
        metrics::report(
            ctx.server,
            zone,
            ctx.view,
            self.next_name,
            Report {
                tcp: ctx.proto == Proto::Tcp,
                v6: ctx.peer.is_ipv6(),
                do_bit: ctx.do_bit(),
                qtype: ctx.req.qtype,
                req_size: client.size(),
                resp_size: size,
                rcode,
                secs: ctx.st.start.elapsed().as_secs_f64(),
            },
        );
    }
}
