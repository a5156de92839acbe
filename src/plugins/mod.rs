//! In-tree plugins: their setup (Corefile tokens → config, errors as CoreDNS
//! prints them) and their request/response hooks, dispatched statically.

pub mod acl;
pub mod any;
pub mod auto;
pub mod autopath;
pub mod bufsize;
pub mod cache;
pub mod chaos;
pub mod dns64;
pub mod dnssec;
pub mod dnstap;
pub mod erratic;
pub mod errors;
pub mod etcd;
pub mod file;
pub mod forward;
pub mod geoip;
pub mod grpc;
pub mod header;
pub mod health;
pub mod hosts;
pub mod https;
pub mod kubernetes;
pub mod loadbalance;
pub mod local;
pub mod log;
pub mod loopdetect;
pub mod metadata;
pub mod minimal;
pub mod nomad;
pub mod nsid;
pub mod on;
pub mod procctl;
pub mod prometheus;
pub mod proxyproto;
pub mod reload;
pub mod rewrite;
pub mod secondary;
pub mod settings;
pub mod sign;
pub mod template;
pub mod timeouts;
pub mod tls;
pub mod trace;
pub mod transfer;
pub mod tsig;
pub mod view;
pub mod whoami;

use corefile::{Diagnostic, Dispenser};

use crate::chain::{Ctx, Flow, Status};
use crate::config::SetupCtx;

/// A handler plugin's parsed configuration.
#[derive(Debug, Clone)]
pub enum PluginConfig {
    /// `metadata`.
    Metadata(metadata::MetadataConfig),
    /// `geoip`.
    Geoip(geoip::GeoipConfig),
    /// `cancel` (its timeout lives in the block settings).
    Cancel,
    /// `nsid`.
    Nsid(nsid::NsidConfig),
    /// `bufsize`.
    Bufsize(u16),
    /// `prometheus`.
    Prometheus(prometheus::PrometheusConfig),
    /// `errors`.
    Errors(errors::ErrorsConfig),
    /// `log`.
    Log(log::LogConfig),
    /// `dnstap` (every line of the block, in order).
    Dnstap(dnstap::DnstapConfig),
    /// `local`.
    Local(local::LocalConfig),
    /// `dns64` (every line of the block).
    Dns64(dns64::Dns64),
    /// `any`.
    Any,
    /// `chaos`.
    Chaos(chaos::ChaosConfig),
    /// `loadbalance`.
    Loadbalance(loadbalance::LoadbalanceConfig),
    /// `header`.
    Header(header::HeaderConfig),
    /// `rewrite` (every directive of the block, in order).
    Rewrite(rewrite::RewriteConfig),
    /// `autopath`.
    Autopath(autopath::Autopath),
    /// `acl` (every directive of the block, in order).
    Acl(acl::AclConfig),
    /// `cache`.
    Cache(Box<cache::CacheConfig>),
    /// `dnssec`.
    Dnssec(dnssec::DnssecConfig),
    /// `minimal`.
    Minimal,
    /// `template` (every stanza of the block, in order).
    Template(template::TemplatePlugin),
    /// `transfer`.
    Transfer(transfer::TransferConfig),
    /// `hosts`.
    Hosts(hosts::HostsConfig),
    /// `k8s_external`.
    K8sExternal(Box<kubernetes::external::K8sExternal>),
    /// `kubernetes`.
    Kubernetes(kubernetes::KubernetesConfig),
    /// `file`.
    File(file::FileConfig),
    /// `auto`.
    Auto(auto::AutoConfig),
    /// `secondary`.
    Secondary(secondary::SecondaryConfig),
    /// `forward` (every stanza of the block, in order).
    Forward(Vec<forward::ForwardConfig>),
    /// `etcd`.
    Etcd(Box<etcd::EtcdConfig>),
    /// `grpc`.
    Grpc(Box<grpc::Grpc>),
    /// `loop`.
    Loop(loopdetect::LoopConfig),
    /// `erratic`.
    Erratic(erratic::ErraticConfig),
    /// `whoami`.
    Whoami,
    /// `view`.
    View(view::View),
    /// `tsig`.
    Tsig(tsig::TsigConfig),
    /// `nomad`.
    Nomad(Box<nomad::NomadConfig>),
    /// `trace`.
    Trace(Box<trace::TraceConfig>),
}

/// Runs the setup of directive `name` over its tokens. Non-handler directives
/// change `ctx.settings` and return `None`.
pub fn setup(
    name: &str,
    d: &mut Dispenser,
    ctx: &mut SetupCtx<'_>,
) -> Result<Option<PluginConfig>, Diagnostic> {
    // Zone plugins answer REFUSED when no handler follows them.
    let followers = transfer::link::before_setup(ctx);
    let conf = match name {
        "root" => return settings::root(d, ctx).map(|()| None),
        "bind" => return settings::bind(d, ctx).map(|()| None),
        "debug" => return settings::debug(d, ctx).map(|()| None),
        "timeouts" => return timeouts::setup(d, ctx).map(|()| None),
        "proxyproto" => return proxyproto::setup(d, ctx).map(|()| None),
        "cancel" => {
            settings::cancel(d, ctx)?;
            PluginConfig::Cancel
        }
        "metadata" => PluginConfig::Metadata(metadata::setup(d, ctx)?),
        "geoip" => PluginConfig::Geoip(geoip::setup(d)?),
        "nsid" => PluginConfig::Nsid(nsid::setup(d)?),
        "bufsize" => PluginConfig::Bufsize(bufsize::setup(d)?),
        "reload" => return reload::setup(d, ctx).map(|()| None),
        "multisocket" => return procctl::multisocket(d, ctx).map(|()| None),
        "shed" => return procctl::shed(d, ctx).map(|()| None),
        "pprof" => return procctl::pprof(d).map(|()| None),
        "on" => return on::setup(d, ctx).map(|()| None),
        "sign" => return sign::setup(d, ctx).map(|()| None),
        "tls" => return tls::setup(d, ctx).map(|()| None),
        "https" => return https::setup(d, ctx).map(|()| None),
        "quic" => return https::setup_quic(d, ctx).map(|()| None),
        "https3" => return https::setup_https3(d, ctx).map(|()| None),
        "grpc_server" => return https::setup_grpc(d, ctx).map(|()| None),
        "health" => return health::setup_health(d, ctx).map(|()| None),
        "ready" => return health::setup_ready(d, ctx).map(|()| None),
        "prometheus" => PluginConfig::Prometheus(prometheus::setup(d, ctx)?),
        "errors" => PluginConfig::Errors(errors::setup(d)?),
        "log" => PluginConfig::Log(log::setup(d)?),
        "dnstap" => PluginConfig::Dnstap(dnstap::setup(d)?),
        "local" => PluginConfig::Local(local::setup(d)?),
        "dns64" => PluginConfig::Dns64(dns64::setup(d)?),
        "any" => {
            any::setup(d)?;
            PluginConfig::Any
        }
        "chaos" => PluginConfig::Chaos(chaos::setup(d)?),
        "loadbalance" => PluginConfig::Loadbalance(loadbalance::setup(d, ctx)?),
        "header" => PluginConfig::Header(header::setup(d)?),
        "rewrite" => PluginConfig::Rewrite(rewrite::setup(d)?),
        "autopath" => PluginConfig::Autopath(autopath::setup(d, ctx)?),
        "acl" => PluginConfig::Acl(acl::setup(d, ctx)?),
        "cache" => PluginConfig::Cache(Box::new(cache::setup(d, ctx)?)),
        "dnssec" => PluginConfig::Dnssec(dnssec::setup(d, ctx)?),
        "minimal" => {
            minimal::setup(d)?;
            PluginConfig::Minimal
        }
        "template" => PluginConfig::Template(template::setup(d, ctx)?),
        "transfer" => PluginConfig::Transfer(transfer::setup(d, ctx)?),
        "hosts" => PluginConfig::Hosts(hosts::setup(d, ctx)?),
        "k8s_external" => PluginConfig::K8sExternal(Box::new(kubernetes::external::setup(d, ctx)?)),
        "kubernetes" => PluginConfig::Kubernetes(kubernetes::setup(d, ctx)?),
        "file" => PluginConfig::File(file::setup(d, ctx)?),
        "auto" => PluginConfig::Auto(auto::setup(d, ctx)?),
        "secondary" => PluginConfig::Secondary(secondary::setup(d, ctx)?),
        "forward" => PluginConfig::Forward(forward::setup(d, ctx)?),
        "etcd" => PluginConfig::Etcd(Box::new(etcd::setup(d, ctx)?)),
        "grpc" => PluginConfig::Grpc(Box::new(grpc::setup(d, ctx)?)),
        "loop" => PluginConfig::Loop(loopdetect::setup(d, ctx)?),
        "erratic" => PluginConfig::Erratic(erratic::setup(d)?),
        "whoami" => {
            whoami::setup(d)?;
            PluginConfig::Whoami
        }
        "view" => PluginConfig::View(view::setup(d)?),
        "tsig" => PluginConfig::Tsig(tsig::setup(d, ctx)?),
        "nomad" => PluginConfig::Nomad(Box::new(nomad::setup(d)?)),
        "trace" => PluginConfig::Trace(Box::new(trace::setup(d, ctx)?)),
        other => return Err(Diagnostic::plain("not supported by ringdns yet").in_plugin(other)),
    };
    transfer::link::handler_set_up(ctx, followers);
    Ok(Some(conf))
}

/// A built plugin instance.
pub enum Plugin {
    /// `metadata`.
    Metadata(metadata::Metadata),
    /// `geoip` (passes every query on; *metadata* asks it for its labels).
    Geoip(std::sync::Arc<geoip::GeoIp>),
    /// `cancel`.
    Cancel,
    /// `nsid`.
    Nsid(nsid::Nsid),
    /// `bufsize`.
    Bufsize(u16),
    /// `prometheus`.
    Prometheus(prometheus::Prometheus),
    /// `errors`.
    Errors(errors::Errors),
    /// `log`.
    Log(log::Log),
    /// `dnstap`.
    Dnstap(dnstap::Dnstap),
    /// `local`.
    Local(local::Local),
    /// `dns64`.
    Dns64(dns64::Dns64),
    /// `any`.
    Any,
    /// `chaos`.
    Chaos(chaos::Chaos),
    /// `loadbalance`.
    Loadbalance(loadbalance::Loadbalance),
    /// `header`.
    Header(header::Header),
    /// `rewrite`.
    Rewrite(rewrite::Rewrite),
    /// `autopath`.
    Autopath(autopath::Autopath),
    /// `acl`.
    Acl(acl::Acl),
    /// `cache`.
    Cache(Box<cache::Cache>),
    /// `dnssec`.
    Dnssec(dnssec::Dnssec),
    /// `minimal`.
    Minimal,
    /// `template`.
    Template(template::TemplatePlugin),
    /// `transfer`.
    Transfer(transfer::Transfer),
    /// `hosts`.
    Hosts(hosts::Hosts),
    /// `k8s_external`.
    K8sExternal(Box<kubernetes::external::K8sExternal>),
    /// `kubernetes`.
    Kubernetes(Box<kubernetes::Kubernetes>),
    /// `file`.
    File(file::File),
    /// `auto`.
    Auto(auto::Auto),
    /// `secondary`.
    Secondary(secondary::Secondary),
    /// `forward`.
    Forward(forward::Forward),
    /// `etcd`.
    Etcd(Box<etcd::Etcd>),
    /// `grpc`.
    Grpc(Box<grpc::Grpc>),
    /// `loop`.
    Loop(Box<loopdetect::Loop>),
    /// `erratic`.
    Erratic(erratic::Erratic),
    /// `whoami`.
    Whoami,
    /// `view` (passes every query on; the server evaluates it when routing).
    View(std::sync::Arc<view::View>),
    /// `tsig`.
    Tsig(tsig::Tsig),
    /// `nomad`.
    Nomad(Box<nomad::Nomad>),
    /// `trace`.
    Trace(Box<trace::Trace>),
}

impl Plugin {
    /// Builds the runtime instance from its configuration.
    pub fn build(c: &PluginConfig) -> Result<Self, String> {
        Ok(match c {
            PluginConfig::Metadata(c) => Self::Metadata(metadata::Metadata::new(c)),
            PluginConfig::Geoip(c) => Self::Geoip(c.plugin()),
            PluginConfig::Cancel => Self::Cancel,
            PluginConfig::Nsid(c) => Self::Nsid(nsid::Nsid::new(c)),
            PluginConfig::Bufsize(n) => Self::Bufsize(*n),
            PluginConfig::Prometheus(c) => Self::Prometheus(prometheus::Prometheus::new(c)),
            PluginConfig::Errors(c) => Self::Errors(errors::Errors::new(c)),
            PluginConfig::Log(c) => Self::Log(log::Log::new(c)),
            PluginConfig::Dnstap(c) => Self::Dnstap(dnstap::Dnstap::new(c)),
            PluginConfig::Local(c) => Self::Local(local::Local::new(c)),
            PluginConfig::Dns64(c) => Self::Dns64(c.clone()),
            PluginConfig::Any => Self::Any,
            PluginConfig::Chaos(c) => Self::Chaos(chaos::Chaos::new(c)),
            PluginConfig::Loadbalance(c) => Self::Loadbalance(loadbalance::Loadbalance::new(c)?),
            PluginConfig::Header(c) => Self::Header(header::Header::new(c)),
            PluginConfig::Rewrite(c) => Self::Rewrite(rewrite::Rewrite::new(c)),
            PluginConfig::Autopath(c) => Self::Autopath(c.clone()),
            PluginConfig::Acl(c) => Self::Acl(acl::Acl::new(c)),
            PluginConfig::Cache(c) => Self::Cache(Box::new(cache::Cache::new(c))),
            PluginConfig::Dnssec(c) => Self::Dnssec(dnssec::Dnssec::new(c)),
            PluginConfig::Minimal => Self::Minimal,
            PluginConfig::Template(c) => Self::Template(c.clone()),
            PluginConfig::Transfer(c) => Self::Transfer(transfer::Transfer::new(c)),
            PluginConfig::Hosts(c) => Self::Hosts(hosts::Hosts::new(c)),
            PluginConfig::K8sExternal(c) => Self::K8sExternal(c.clone()),
            PluginConfig::Kubernetes(c) => {
                Self::Kubernetes(Box::new(kubernetes::Kubernetes::new(c)))
            }
            PluginConfig::File(c) => Self::File(file::File::new(c)),
            PluginConfig::Auto(c) => Self::Auto(auto::Auto::new(c)),
            PluginConfig::Secondary(c) => Self::Secondary(secondary::Secondary::new(c)),
            PluginConfig::Forward(c) => Self::Forward(forward::Forward::new(c)?),
            PluginConfig::Etcd(c) => Self::Etcd(Box::new(etcd::Etcd::new(c))),
            PluginConfig::Grpc(c) => Self::Grpc(c.clone()),
            PluginConfig::Loop(c) => Self::Loop(Box::new(loopdetect::Loop::new(c))),
            PluginConfig::Erratic(c) => Self::Erratic(erratic::Erratic::new(c)),
            PluginConfig::Whoami => Self::Whoami,
            PluginConfig::View(v) => Self::View(std::sync::Arc::new(v.clone())),
            PluginConfig::Tsig(c) => Self::Tsig(tsig::Tsig::new(c)),
            PluginConfig::Nomad(c) => Self::Nomad(Box::new(nomad::Nomad::new(c))),
            PluginConfig::Trace(c) => Self::Trace(Box::new(trace::Trace::new(c)?)),
        })
    }

    /// The directive name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Metadata(_) => "metadata",
            Self::Geoip(_) => "geoip",
            Self::Cancel => "cancel",
            Self::Nsid(_) => "nsid",
            Self::Bufsize(_) => "bufsize",
            Self::Prometheus(_) => "prometheus",
            Self::Errors(_) => "errors",
            Self::Log(_) => "log",
            Self::Dnstap(_) => "dnstap",
            Self::Local(_) => "local",
            Self::Dns64(_) => "dns64",
            Self::Any => "any",
            Self::Chaos(_) => "chaos",
            Self::Loadbalance(_) => "loadbalance",
            Self::Header(_) => "header",
            Self::Rewrite(_) => "rewrite",
            Self::Autopath(_) => "autopath",
            Self::Acl(_) => "acl",
            Self::Cache(_) => "cache",
            Self::Dnssec(_) => "dnssec",
            Self::Minimal => "minimal",
            Self::Template(_) => "template",
            Self::Transfer(_) => "transfer",
            Self::Hosts(_) => "hosts",
            Self::K8sExternal(_) => "k8s_external",
            Self::Kubernetes(_) => "kubernetes",
            Self::File(_) => "file",
            Self::Auto(_) => "auto",
            Self::Secondary(_) => "secondary",
            Self::Forward(_) => "forward",
            Self::Etcd(_) => "etcd",
            Self::Grpc(_) => "grpc",
            Self::Loop(_) => "loop",
            Self::Erratic(_) => "erratic",
            Self::Whoami => "whoami",
            Self::View(_) => "view",
            Self::Tsig(_) => "tsig",
            Self::Nomad(_) => "nomad",
            Self::Trace(_) => "trace",
        }
    }

    /// Readiness for *ready*: `None` for plugins without a readiness check.
    pub fn ready(&self) -> Option<bool> {
        match self {
            Self::Erratic(e) => Some(e.ready()),
            Self::Kubernetes(k) => Some(k.ready()),
            Self::Nomad(n) => Some(n.ready()),
            _ => None,
        }
    }

    /// Whether this plugin opens non-IN classes on its listener (corefile-spec §7.3).
    pub fn opens_classes(&self) -> bool {
        // CoreDNS's server: `chaos`, `forward` and `proxy` (not in ringdns).
        matches!(self, Self::Chaos(_) | Self::Forward(_))
    }

    /// Request hook.
    pub fn serve(&self, ctx: &mut Ctx<'_>) -> Flow {
        match self {
            Self::Metadata(m) => {
                m.collect(ctx);
                Flow::Next
            }
            Self::Cancel
            | Self::Geoip(_)
            | Self::Prometheus(_)
            | Self::Errors(_)
            | Self::Loadbalance(_)
            | Self::Minimal => Flow::Next,
            Self::Nsid(_) => Flow::Next,
            Self::Bufsize(n) => bufsize::serve(*n, ctx),
            Self::Log(p) => p.serve(ctx),
            Self::Dnstap(p) => p.serve(ctx),
            Self::Local(p) => p.serve(ctx),
            Self::Dns64(p) => p.serve(ctx),
            Self::Any => any::serve(ctx),
            Self::Chaos(p) => p.serve(ctx),
            Self::Header(p) => p.serve(ctx),
            Self::Rewrite(p) => p.serve(ctx),
            Self::Autopath(p) => p.serve(ctx),
            Self::Acl(p) => p.serve(ctx),
            Self::Cache(p) => p.serve(ctx),
            Self::Dnssec(p) => p.serve(ctx),
            Self::Template(p) => p.serve(ctx),
            Self::Transfer(p) => p.serve(ctx),
            Self::Hosts(p) => p.serve(ctx),
            Self::K8sExternal(p) => p.serve(ctx),
            Self::Kubernetes(p) => p.serve(ctx),
            Self::File(p) => p.serve(ctx),
            Self::Auto(p) => p.serve(ctx),
            Self::Secondary(p) => p.serve(ctx),
            Self::Forward(p) => p.serve(ctx),
            Self::Etcd(p) => p.serve(ctx),
            Self::Grpc(p) => p.serve(ctx),
            Self::Loop(p) => p.serve(ctx),
            Self::Erratic(p) => p.serve(ctx),
            Self::Whoami => whoami::serve(ctx),
            Self::View(_) => Flow::Next,
            Self::Tsig(p) => p.serve(ctx),
            Self::Nomad(p) => p.serve(ctx),
            Self::Trace(p) => p.serve(ctx),
        }
    }

    /// Request hook of a parked query (only plugins that park implement it).
    pub async fn serve_async(&self, ctx: &mut Ctx<'_>, next: crate::chain::Next<'_>) -> Flow {
        match self {
            // Boxed: rare paths whose futures would grow every parked query's.
            Self::Dns64(p) => Box::pin(p.serve_async(ctx, next)).await,
            Self::Rewrite(p) => Box::pin(p.serve_async(ctx, next)).await,
            Self::Autopath(p) => Box::pin(p.serve_async(ctx, next)).await,
            Self::Template(p) => Box::pin(p.serve_async(ctx, next)).await,
            Self::Etcd(p) => Box::pin(p.serve_async(ctx)).await,
            Self::Grpc(p) => Box::pin(p.serve_async(ctx, next.exists())).await,
            Self::Forward(p) => p.serve_async(ctx).await,
            Self::Cache(p) => p.serve_async(ctx).await,
            Self::Erratic(p) => p.serve_async(ctx).await,
            Self::K8sExternal(p) => Box::pin(p.serve_async(ctx)).await,
            Self::Kubernetes(p) => Box::pin(p.serve_async(ctx)).await,
            Self::File(p) => Box::pin(p.serve_async(ctx)).await,
            Self::Auto(p) => Box::pin(p.serve_async(ctx)).await,
            Self::Secondary(p) => Box::pin(p.serve_async(ctx)).await,
            Self::Nomad(p) => Box::pin(p.serve_async(ctx)).await,
            _ => Flow::Return(Status::rcode(2)),
        }
    }

    /// Response hook (innermost first).
    pub fn respond(&self, ctx: &mut Ctx<'_>, st: &mut Status) {
        match self {
            Self::Nsid(p) => p.respond(ctx),
            Self::Errors(p) => p.respond(ctx, st),
            Self::Prometheus(p) => p.respond(ctx, st),
            Self::Log(p) => p.respond(ctx, st),
            Self::Dnstap(p) => p.respond(ctx),
            Self::Loadbalance(p) => p.respond(ctx),
            Self::Header(p) => p.respond(ctx),
            Self::Cache(p) => p.respond(ctx, st),
            Self::Minimal => minimal::respond(ctx),
            Self::Dnssec(p) => p.respond(ctx),
            Self::Rewrite(p) => p.respond(ctx, st),
            Self::Tsig(_) => tsig::Tsig::respond(ctx, st),
            Self::Trace(p) => p.respond(ctx, st),
            _ => {}
        }
    }
}
