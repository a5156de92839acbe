//! *tls* CERT KEY [CA] { client_auth MODE; keylog FILE }: the server side of a
//! block's `tls://` (DNS over TLS) listeners, on rustls.
//!
//! As CoreDNS 1.14.7 (`plugin/tls`, `plugin/pkg/tls`): the files are read at setup
//! (relative paths under *root*), TLS 1.2 is the minimum, no ALPN is offered, the CA
//! (if any) verifies client certificates, and without a CA the system trust store does
//! (Go's nil `ClientCAs`). `client_auth` maps Go's five `ClientAuthType`s onto one
//! rustls verifier. `keylog` appends NSS key-log lines, as Go's `KeyLogWriter`.
//! ACME (`tls` without arguments) fails at startup, naming itself.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::{Arc, Mutex};

use corefile::values::go_quote;
use corefile::{Diagnostic, Dispenser};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, InconsistentKeys, ServerConfig,
    SignatureScheme,
};

use crate::clog;
use crate::config::SetupCtx;
use crate::plugins::file::rooted_path;
use crate::plugins::forward::tls::{identity, roots};

/// Go's `tls.ClientAuthType`, as `client_auth` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// `nocert`: no certificate asked for.
    NoCert,
    /// `request`: asked for, not required, not verified.
    Request,
    /// `require`: required, not verified.
    Require,
    /// `verify_if_given`: verified when sent.
    VerifyIfGiven,
    /// `require_and_verify`: required and verified.
    RequireAndVerify,
}

/// A block's server TLS configuration.
#[derive(Debug, Clone)]
pub struct TlsServer {
    /// What the listeners hand to rustls.
    pub config: Arc<ServerConfig>,
    /// `client_auth`.
    pub client_auth: ClientAuth,
}

/// Sets the block's server TLS configuration.
pub fn setup(d: &mut Dispenser, ctx: &mut SetupCtx<'_>) -> Result<(), Diagnostic> {
    let w = |e: Diagnostic| e.in_plugin("tls");
    while d.next() {
        let mut args = d.remaining_args();
        if args.is_empty() {
            return Err(w(Diagnostic::plain(
                "ACME certificates (tls without arguments) are not supported by ringdns yet",
            )));
        }
        if args.len() < 2 || args.len() > 3 {
            // parseManualTLS wraps its own, and setup again.
            return Err(w(d.arg_err().in_plugin("tls")));
        }
        let mut client_auth = ClientAuth::NoCert;
        let mut keylog: Option<String> = None;
        while d.next_block() {
            match d.val() {
                "client_auth" => {
                    let a = d.remaining_args();
                    let [mode] = a.as_slice() else {
                        return Err(w(d.arg_err()));
                    };
                    client_auth = match mode.as_str() {
                        "nocert" => ClientAuth::NoCert,
                        "request" => ClientAuth::Request,
                        "require" => ClientAuth::Require,
                        "verify_if_given" => ClientAuth::VerifyIfGiven,
                        "require_and_verify" => ClientAuth::RequireAndVerify,
                        other => {
                            return Err(w(d.err(format!("unknown authentication type '{other}'"))));
                        }
                    };
                }
                "keylog" => {
                    let a = d.remaining_args();
                    let [file] = a.as_slice() else {
                        return Err(w(d.arg_err()));
                    };
                    keylog = Some(rooted_path(file, ctx.settings.root.as_deref()));
                }
                other => return Err(w(d.err(format!("unknown option '{other}'")))),
            }
        }
        for a in &mut args {
            *a = rooted_path(a, ctx.settings.root.as_deref());
        }
        let mut config = server_config(&args, client_auth).map_err(|e| w(Diagnostic::plain(e)))?;
        if let Some(path) = keylog {
            let abs = absolute(&path);
            let file = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .mode_0600()
                .open(&abs)
                .map_err(|e| {
                    w(d.err(format!(
                        "unable to write TLS Key Log to {}: open {abs}: {}",
                        go_quote(&abs),
                        crate::config::go_err(&e)
                    )))
                })?;
            config.key_log = Arc::new(KeyLogFile(Mutex::new(file)));
            // CoreDNS runs the setup once per key of the block.
            for _ in ctx.keys {
                clog::log(
                    clog::Level::Warning,
                    Some("tls"),
                    &format!("Writing TLS Key Log to {}", go_quote(&abs)),
                );
            }
        }
        ctx.settings.tls = Some(TlsServer {
            config: Arc::new(config),
            client_auth,
        });
    }
    Ok(())
}

/// Go's `filepath.Abs`: joined to the working directory and cleaned.
fn absolute(path: &str) -> String {
    let p = std::path::Path::new(path);
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().map_or_else(|_| p.to_path_buf(), |d| d.join(p))
    };
    corefile::parse::clean(&joined)
        .to_string_lossy()
        .into_owned()
}

trait Mode0600 {
    fn mode_0600(&mut self) -> &mut Self;
}

impl Mode0600 for std::fs::OpenOptions {
    fn mode_0600(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(0o600)
    }
}

/// The rustls server configuration for CERT KEY [CA] (`NewTLSConfigFromArgs` with the
/// block's `client_auth`), with CoreDNS's texts for files that cannot be used.
pub fn server_config(args: &[String], client_auth: ClientAuth) -> Result<ServerConfig, String> {
    let (cert, key, ca) = match args {
        [c, k] => (c, k, None),
        [c, k, ca] => (c, k, Some(ca.as_str())),
        _ => {
            return Err(format!(
                "maximum of three arguments allowed for TLS config, found {}",
                args.len()
            ));
        }
    };
    let (certs, key) = identity(cert, key)?;
    let store = roots(ca)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let algs = provider.signature_verification_algorithms;
    let b = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?;
    let b = if client_auth == ClientAuth::NoCert {
        b.with_no_client_auth()
    } else {
        // Verification is webpki's against the CA (or the system pool); whether a
        // certificate is required, and whether it is verified, is Go's mode.
        let webpki = if store.is_empty() {
            None
        } else {
            Some(
                WebPkiClientVerifier::builder_with_provider(Arc::new(store), Arc::clone(&provider))
                    .allow_unauthenticated()
                    .build()
                    .map_err(|e| format!("tls: {e}"))?,
            )
        };
        // Go names the ClientCAs' subjects in its certificate request; without a CA
        // (the system pool) it names none.
        let hints = match (&webpki, ca) {
            (Some(v), Some(_)) => v.root_hint_subjects().to_vec(),
            _ => Vec::new(),
        };
        b.with_client_cert_verifier(Arc::new(GoClientAuth {
            mandatory: matches!(
                client_auth,
                ClientAuth::Require | ClientAuth::RequireAndVerify
            ),
            verify: matches!(
                client_auth,
                ClientAuth::VerifyIfGiven | ClientAuth::RequireAndVerify
            ),
            webpki,
            hints,
            algs,
        }))
    };
    b.with_single_cert(certs, key).map_err(|e| match e {
        rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch) => {
            "could not load TLS cert: tls: private key does not match public key".to_owned()
        }
        // Go accepts some keys ring cannot use (RSA below 2048 bits, P-521): say so.
        e => format!(
            "could not load TLS cert: the private key cannot be used by ringdns's TLS (rustls with ring): {e}"
        ),
    })
}

/// Go's client authentication modes on rustls: the certificate is asked for always,
/// required when `mandatory`, checked against the roots when `verify`. The handshake
/// signature is checked in every mode, as Go does.
#[derive(Debug)]
struct GoClientAuth {
    mandatory: bool,
    verify: bool,
    /// `None` without any root: every chain fails, as against Go's empty pool.
    webpki: Option<Arc<dyn ClientCertVerifier>>,
    hints: Vec<DistinguishedName>,
    algs: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for GoClientAuth {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if !self.verify {
            return Ok(ClientCertVerified::assertion());
        }
        match &self.webpki {
            Some(v) => v.verify_client_cert(end_entity, intermediates, now),
            None => Err(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// `keylog`: NSS key-log lines (`LABEL CLIENT_RANDOM SECRET` in hex), one write each.
#[derive(Debug)]
struct KeyLogFile(Mutex<std::fs::File>);

impl rustls::KeyLog for KeyLogFile {
    fn log(&self, label: &str, client_random: &[u8], secret: &[u8]) {
        // Go's KeyLogWriter gets the handshake and traffic secrets, not this one.
        if label == "EXPORTER_SECRET" {
            return;
        }
        let mut line =
            String::with_capacity(label.len() + 2 * (client_random.len() + secret.len()) + 3);
        line.push_str(label);
        line.push(' ');
        for b in client_random {
            let _ = write!(line, "{b:02x}");
        }
        line.push(' ');
        for b in secret {
            let _ = write!(line, "{b:02x}");
        }
        line.push('\n');
        if let Ok(mut f) = self.0.lock() {
            let _ = f.write_all(line.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests;
