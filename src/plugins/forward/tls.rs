//! TLS client configuration for `tls://` upstreams (rustls, ring provider),
//! from the `tls [CERT KEY [CA]] | tls CA` arguments, with CoreDNS's texts for
//! unreadable files. Minimum version TLS 1.2; rustls's in-memory session cache
//! gives the resumption CoreDNS gets from its LRU session cache.
//!
//! CoreDNS: `plugin/pkg/tls/tls.go` (`NewTLSConfigFromArgs`).

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    AlertDescription, CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore,
    SignatureScheme,
};

use crate::config::go_err;

/// A file, or Go's `open PATH: …` error.
pub(crate) fn read(path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("open {path}: {}", go_err(&e)))
}

pub(crate) fn roots(ca: Option<&str>) -> Result<RootCertStore, String> {
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

pub(crate) type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

pub(crate) fn identity(cert: &str, key: &str) -> Result<Identity, String> {
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
    build(store, id)
}

/// Roots from PEM text (a kubeconfig's `certificate-authority-data`).
pub(crate) fn roots_pem(pem: &[u8]) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(pem).flatten() {
        let _ = store.add(c);
    }
    if store.is_empty() {
        return Err("unable to load root certificates: unable to parse bytes as PEM block".into());
    }
    Ok(store)
}

/// A client identity from PEM text (`client-certificate-data`, `client-key-data`).
pub(crate) fn identity_pem(cert: &[u8], key: &[u8]) -> Result<Identity, String> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(cert).flatten().collect();
    if certs.is_empty() {
        return Err("tls: failed to find any PEM data in certificate input".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key)
        .map_err(|_| "tls: failed to find any PEM data in key input".to_owned())?;
    Ok((certs, key))
}

/// The client configuration for `store` and an optional identity (Go's
/// verification order, TLS 1.2 and up).
pub(crate) fn build(
    store: RootCertStore,
    id: Option<Identity>,
) -> Result<Arc<ClientConfig>, String> {
    build_with(store, id, false)
}

/// [`build`]; with `insecure`, any server certificate is accepted (Go's
/// `InsecureSkipVerify`; the handshake's signatures are still checked).
pub(crate) fn build_with(
    store: RootCertStore,
    id: Option<Identity>,
    insecure: bool,
) -> Result<Arc<ClientConfig>, String> {
    let b = builder(store, insecure)?;
    let cfg = match id {
        None => b.with_no_client_auth(),
        Some((certs, key)) => b
            .with_client_auth_cert(certs, key)
            .map_err(|e| format!("could not load TLS cert: tls: {e}"))?,
    };
    Ok(Arc::new(cfg))
}

/// [`build_with`] with the client certificate chosen per handshake (a
/// credential plugin's, which rotates).
pub(crate) fn build_resolving(
    store: RootCertStore,
    insecure: bool,
    certs: Arc<dyn rustls::client::ResolvesClientCert>,
) -> Result<Arc<ClientConfig>, String> {
    Ok(Arc::new(
        builder(store, insecure)?.with_client_cert_resolver(certs),
    ))
}

fn builder(
    store: RootCertStore,
    insecure: bool,
) -> Result<rustls::ConfigBuilder<ClientConfig, rustls::client::WantsClientCert>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    // No roots at all (a system without a trust store): every chain fails to verify, as
    // Go's with an empty pool; webpki's verifier refuses to be built without roots.
    let webpki = if store.is_empty() {
        None
    } else {
        Some(
            WebPkiServerVerifier::builder_with_provider(Arc::new(store), Arc::clone(&provider))
                .build()
                .map_err(|e| format!("tls: {e}"))?,
        )
    };
    let verifier = GoOrder {
        webpki,
        algs: provider.signature_verification_algorithms,
        insecure,
    };
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier)))
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

/// rustls's WebPKI verification, with the failure Go's `x509.Certificate.Verify` reports
/// first: the leaf's validity period, then the name, then the chain. (webpki builds the
/// chain first, so a certificate for another name from an unknown issuer would say
/// "unknown authority" where Go says which names it is valid for.) Verification itself is
/// webpki's; only which of several faults is named changes.
#[derive(Debug)]
struct GoOrder {
    /// `None` without any root.
    webpki: Option<Arc<WebPkiServerVerifier>>,
    algs: rustls::crypto::WebPkiSupportedAlgorithms,
    /// Go's `InsecureSkipVerify`.
    insecure: bool,
}

impl ServerCertVerifier for GoOrder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.insecure {
            return Ok(ServerCertVerified::assertion());
        }
        let res = match &self.webpki {
            Some(w) => {
                w.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }
            None => Err(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            )),
        };
        let err = match res {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        if let rustls::Error::InvalidCertificate(
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. }
            | CertificateError::NotValidForName
            | CertificateError::NotValidForNameContext { .. },
        ) = err
        {
            return Err(err);
        }
        // The chain failed: Go would have named a wrong name first.
        if let Ok(ee) = webpki::EndEntityCert::try_from(end_entity) {
            if let Err(webpki::Error::CertNotValidForName(ctx)) =
                ee.verify_is_valid_for_subject_name(server_name)
            {
                return Err(rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForNameContext {
                        expected: ctx.expected,
                        presented: ctx.presented,
                    },
                ));
            }
        }
        Err(err)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }

    fn root_hint_subjects(&self) -> Option<&[rustls::DistinguishedName]> {
        self.webpki.as_ref().and_then(|w| w.root_hint_subjects())
    }
}

/// The text of a failed TLS handshake as Go's `crypto/tls` and `crypto/x509` word it
/// where rustls's error has a Go counterpart (verification failures, alerts, a peer that
/// does not speak TLS, a peer that closes), else `tls: ` and rustls's text.
pub fn handshake_err(e: &std::io::Error) -> String {
    if let Some(r) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        return rustls_err(r);
    }
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        // Go's handshake returns io.EOF as it is.
        return "EOF".into();
    }
    format!("tls: {e}")
}

fn rustls_err(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(c) => match x509_err(c) {
            Some(t) => format!("tls: failed to verify certificate: {t}"),
            None => format!("tls: {e}"),
        },
        rustls::Error::AlertReceived(a) => format!("remote error: {}", alert_text(*a)),
        rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType) => {
            "tls: first record does not look like a TLS handshake".into()
        }
        _ => format!("tls: {e}"),
    }
}

/// Go's `x509` error text for a certificate fault, where there is one.
fn x509_err(c: &CertificateError) -> Option<String> {
    Some(match c {
        // Go finds no chain to a root either way (a bad signature is a candidate
        // authority that did not verify).
        CertificateError::UnknownIssuer | CertificateError::BadSignature => {
            "x509: certificate signed by unknown authority".into()
        }
        CertificateError::NotValidForNameContext {
            expected,
            presented,
        } => hostname_err(expected, presented),
        CertificateError::ExpiredContext { time, not_after } => format!(
            "x509: certificate has expired or is not yet valid: current time {} is after {}",
            rfc3339(time.as_secs()),
            rfc3339(not_after.as_secs())
        ),
        CertificateError::NotValidYetContext { time, not_before } => format!(
            "x509: certificate has expired or is not yet valid: current time {} is before {}",
            rfc3339(time.as_secs()),
            rfc3339(not_before.as_secs())
        ),
        _ => return None,
    })
}

/// Go's `x509.HostnameError` text. `presented` is webpki's list of the certificate's
/// subject alternative names, each as `DnsName("…")`, `IpAddress(…)` or another kind.
fn hostname_err(expected: &ServerName<'_>, presented: &[String]) -> String {
    let host = match expected {
        ServerName::DnsName(n) => n.as_ref().to_owned(),
        ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
        other => format!("{other:?}"),
    };
    let inner = |s: &str, kind: &str| -> Option<String> {
        s.strip_prefix(kind)?
            .strip_prefix('(')?
            .strip_suffix(')')
            .map(str::to_owned)
    };
    let valid: Vec<String> = if let ServerName::IpAddress(_) = expected {
        let ips: Vec<String> = presented
            .iter()
            .filter_map(|p| inner(p, "IpAddress"))
            .map(|a| a.parse::<std::net::IpAddr>().map_or(a, |ip| ip.to_string()))
            .collect();
        if ips.is_empty() {
            return format!(
                "x509: cannot validate certificate for {host} because it doesn't contain any IP SANs"
            );
        }
        ips
    } else {
        presented
            .iter()
            .filter_map(|p| inner(p, "DnsName"))
            .map(|q| q.trim_matches('"').to_owned())
            .collect()
    };
    if valid.is_empty() {
        return format!("x509: certificate is not valid for any names, but wanted to match {host}");
    }
    format!(
        "x509: certificate is valid for {}, not {host}",
        valid.join(", ")
    )
}

/// Go's `time.RFC3339` for a UTC time: `2006-01-02T15:04:05Z`.
fn rfc3339(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

/// Go's `tls.alert` text.
fn alert_text(a: AlertDescription) -> String {
    use AlertDescription as A;
    let t = match a {
        A::CloseNotify => "close notify",
        A::UnexpectedMessage => "unexpected message",
        A::BadRecordMac => "bad record MAC",
        A::DecryptionFailed => "decryption failed",
        A::RecordOverflow => "record overflow",
        A::DecompressionFailure => "decompression failure",
        A::HandshakeFailure => "handshake failure",
        A::BadCertificate => "bad certificate",
        A::UnsupportedCertificate => "unsupported certificate",
        A::CertificateRevoked => "revoked certificate",
        A::CertificateExpired => "expired certificate",
        A::CertificateUnknown => "unknown certificate",
        A::IllegalParameter => "illegal parameter",
        A::UnknownCA => "unknown certificate authority",
        A::AccessDenied => "access denied",
        A::DecodeError => "error decoding message",
        A::DecryptError => "error decrypting message",
        A::ExportRestriction => "export restriction",
        A::ProtocolVersion => "protocol version not supported",
        A::InsufficientSecurity => "insufficient security level",
        A::InternalError => "internal error",
        A::InappropriateFallback => "inappropriate fallback",
        A::UserCanceled => "user canceled",
        A::NoRenegotiation => "no renegotiation",
        A::MissingExtension => "missing extension",
        A::UnsupportedExtension => "unsupported extension",
        A::CertificateUnobtainable => "certificate unobtainable",
        A::UnrecognisedName => "unrecognized name",
        A::BadCertificateStatusResponse => "bad certificate status response",
        A::BadCertificateHashValue => "bad certificate hash value",
        A::UnknownPSKIdentity => "unknown PSK identity",
        A::CertificateRequired => "certificate required",
        A::NoApplicationProtocol => "no application protocol",
        A::EncryptedClientHelloRequired => "encrypted client hello required",
        other => return format!("tls: alert({})", u8::from(other)),
    };
    format!("tls: {t}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_as_go() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_798_761_599), "2026-12-31T23:59:59Z");
        assert_eq!(rfc3339(4_107_542_400), "2100-03-01T00:00:00Z");
    }

    #[test]
    fn hostname_errors_as_go() {
        let dns = |n: &str| ServerName::try_from(n.to_owned()).expect("name");
        let p = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            hostname_err(
                &dns("other.example"),
                &p(&[
                    r#"DnsName("a.example")"#,
                    "IpAddress(192.0.2.1)",
                    r#"DnsName("*.b.example")"#
                ])
            ),
            "x509: certificate is valid for a.example, *.b.example, not other.example"
        );
        assert_eq!(
            hostname_err(&dns("other.example"), &p(&["IpAddress(192.0.2.1)"])),
            "x509: certificate is not valid for any names, but wanted to match other.example"
        );
        assert_eq!(
            hostname_err(
                &dns("192.0.2.7"),
                &p(&[
                    "IpAddress(192.0.2.1)",
                    "IpAddress(2001:db8::1)",
                    r#"DnsName("a.example")"#
                ])
            ),
            "x509: certificate is valid for 192.0.2.1, 2001:db8::1, not 192.0.2.7"
        );
        assert_eq!(
            hostname_err(&dns("192.0.2.7"), &p(&[r#"DnsName("a.example")"#])),
            "x509: cannot validate certificate for 192.0.2.7 because it doesn't contain any IP SANs"
        );
    }

    #[test]
    fn handshake_errors_as_go() {
        let io = |e: rustls::Error| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
        assert_eq!(
            handshake_err(&io(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer
            ))),
            "tls: failed to verify certificate: x509: certificate signed by unknown authority"
        );
        assert_eq!(
            handshake_err(&io(rustls::Error::InvalidCertificate(
                CertificateError::ExpiredContext {
                    time: UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_798_761_599)),
                    not_after: UnixTime::since_unix_epoch(std::time::Duration::from_secs(
                        951_782_400
                    )),
                }
            ))),
            "tls: failed to verify certificate: x509: certificate has expired or is not yet valid: \
             current time 2026-12-31T23:59:59Z is after 2000-02-29T00:00:00Z"
        );
        assert_eq!(
            handshake_err(&io(rustls::Error::AlertReceived(
                AlertDescription::HandshakeFailure
            ))),
            "remote error: tls: handshake failure"
        );
        assert_eq!(
            handshake_err(&io(rustls::Error::AlertReceived(
                AlertDescription::Unknown(200)
            ))),
            "remote error: tls: alert(200)"
        );
        assert_eq!(
            handshake_err(&io(rustls::Error::InvalidMessage(
                rustls::InvalidMessage::InvalidContentType
            ))),
            "tls: first record does not look like a TLS handshake"
        );
        assert_eq!(
            handshake_err(&std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "tls handshake eof"
            )),
            "EOF"
        );
    }
}
