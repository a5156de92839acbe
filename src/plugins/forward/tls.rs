//! TLS client configuration for `tls://` upstreams (rustls, ring provider),
//! from the `tls [CERT KEY [CA]] | tls CA` arguments, with CoreDNS's texts for
//! unreadable files. Minimum version TLS 1.2; rustls's in-memory session cache
//! gives the resumption CoreDNS gets from its LRU session cache.
//!
//! CoreDNS: `plugin/pkg/tls/tls.go` (`NewTLSConfigFromArgs`).

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};

use crate::config::go_err;

fn read(path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("open {path}: {}", go_err(&e)))
}

fn roots(ca: Option<&str>) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    match ca {
        None => {
            // Go's crypto/x509 system pool; unreadable entries are skipped.
            let found = rustls_native_certs::load_native_certs();
            for c in found.certs {
                let _ = store.add(c);
            }
        }
        Some(path) => {
            // CoreDNS reads `filepath.Clean(path)` and names both in its error.
            let cleaned = corefile::parse::clean(std::path::Path::new(path));
            let pem = read(&cleaned.to_string_lossy())
                .map_err(|e| format!("error reading {path}: {e}"))?;
            let mut n = 0;
            for c in CertificateDer::pem_slice_iter(&pem).flatten() {
                if store.add(c).is_ok() {
                    n += 1;
                }
            }
            if n == 0 {
                // CoreDNS formats a nil error here.
                return Err("could not read root certs: %!s(<nil>)".into());
            }
        }
    }
    Ok(store)
}

type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

fn identity(cert: &str, key: &str) -> Result<Identity, String> {
    let wrap = |e: String| format!("could not load TLS cert: {e}");
    let cpem = read(cert).map_err(wrap)?;
    let kpem = read(key).map_err(wrap)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&cpem).flatten().collect();
    if certs.is_empty() {
        return Err(wrap(
            "tls: failed to find any PEM data in certificate input".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&kpem)
        .map_err(|_| wrap("tls: failed to find any PEM data in key input".into()))?;
    Ok((certs, key))
}

/// Builds the client configuration for 0–3 `tls` arguments.
pub fn client_config(args: &[String]) -> Result<Arc<ClientConfig>, String> {
    let (id, ca) = match args {
        [] => (None, None),
        [ca] => (None, Some(ca.as_str())),
        [c, k] => (Some(identity(c, k)?), None),
        [c, k, ca] => (Some(identity(c, k)?), Some(ca.as_str())),
        _ => {
            return Err(format!(
                "maximum of three arguments allowed for TLS config, found {}",
                args.len()
            ));
        }
    };
    let store = roots(ca)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let b = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?
        .with_root_certificates(store);
    let cfg = match id {
        None => b.with_no_client_auth(),
        Some((certs, key)) => b
            .with_client_auth_cert(certs, key)
            .map_err(|e| format!("could not load TLS cert: tls: {e}"))?,
    };
    Ok(Arc::new(cfg))
}

/// The name to verify and send as SNI: the per-upstream name, else
/// `tls_servername`, else the upstream's IP (Go's default).
pub fn server_name(
    per_upstream: Option<&str>,
    stanza: Option<&str>,
    ip: std::net::IpAddr,
) -> ServerName<'static> {
    per_upstream
        .or(stanza)
        .and_then(|n| ServerName::try_from(n.to_owned()).ok())
        .unwrap_or_else(|| ServerName::IpAddress(ip.into()))
}
