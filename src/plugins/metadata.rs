//! *metadata*: enables the per-request metadata store for its zones
//! (plugins.md A). No plugin of ringdns publishes metadata yet, so `{/label}`
//! placeholders render `-`, as CoreDNS renders labels that are not set.
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
    pub zones: Vec<String>,
    /// The block's *kubernetes*, a metadata provider (linked when the chain is built).
    pub k8s: Option<std::sync::Arc<crate::plugins::kubernetes::KubeShared>>,
}

impl Metadata {
    /// Builds it.
    pub fn new(c: &MetadataConfig) -> Self {
        Self {
            zones: c.zones.clone(),
            k8s: None,
        }
    }
}
