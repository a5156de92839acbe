//! *metadata*: enables the per-request metadata store for its zones
//! (plugins.md A). Providers: *geoip*, *kubernetes* and *view*; a label no provider
//! set renders `-` in `{/label}` placeholders, as in CoreDNS.
//!
//! CoreDNS: `plugin/metadata/setup.go`.

use corefile::{Diagnostic, Dispenser};

use crate::config::SetupCtx;

/// Parsed configuration.
#[derive(Debug, Clone)]
pub struct MetadataConfig {
    /// Zones providers are collected for.
    pub zones: Vec<String>,
}

/// Setup (CoreDNS `metadataParse`).
pub fn setup(d: &mut Dispenser, ctx: &SetupCtx<'_>) -> Result<MetadataConfig, Diagnostic> {
    d.next();
    let args = d.remaining_args();
    let zones = ctx.origins(&args);
    if d.next_block() || d.next() {
        return Err(d.arg_err().in_plugin("metadata"));
    }
    Ok(MetadataConfig { zones })
}

/// The runtime plugin.
pub struct Metadata {
    /// Zones.
    pub zones: Vec<crate::wire::Name>,
    /// The block's *kubernetes*, a metadata provider (linked when the chain is built).
    pub k8s: Option<std::sync::Arc<crate::plugins::kubernetes::KubeShared>>,
    /// The block's *view* name, published as `view/name` (linked when the chain
    /// is built).
    pub view: Option<std::sync::Arc<str>>,
    /// The block's *geoip* (linked when the chain is built).
    pub geoip: Option<std::sync::Arc<crate::plugins::geoip::GeoIp>>,
}

impl Metadata {
    /// Builds it.
    pub fn new(c: &MetadataConfig) -> Self {
        Self {
            zones: c
                .zones
                .iter()
                .filter_map(|z| crate::wire::Name::parse(z))
                .collect(),
            k8s: None,
            view: None,
            geoip: None,
        }
    }

    /// CoreDNS's `Collect`: a fresh store, filled by the block's providers when
    /// the query name is in the plugin's zones.
    pub fn collect(&self, ctx: &mut crate::chain::Ctx<'_>) {
        ctx.meta = Some(Vec::new());
        ctx.st.marks |= crate::chain::META_ON;
        if !self
            .zones
            .iter()
            .any(|z| ctx.req.qname.name().is_subdomain_of(z))
        {
            return;
        }
        if let Some(g) = &self.geoip {
            g.publish_metadata(ctx);
        }
        if let Some(k) = &self.k8s {
            k.publish_metadata(ctx);
        }
        if let Some(v) = &self.view {
            ctx.set_meta("view/name", || v.to_string());
        }
    }
}
