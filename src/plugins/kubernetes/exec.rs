//! Credential plugins (`exec` in a kubeconfig's user), as client-go's
//! `plugin/pkg/client/auth/exec` runs them: the command with its arguments and
//! environment plus `KUBERNETES_EXEC_INFO` (an `ExecCredential` request, with
//! the cluster when `provideClusterInfo`), its standard output read as an
//! `ExecCredential` of the configured API version whose status holds a bearer
//! token and/or a client certificate and key. The credentials are kept until
//! their `expirationTimestamp`; a 401 from the API server runs the plugin again
//! (once per credentials seen). Only one run at a time.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use rustls::client::ResolvesClientCert;
use rustls::sign::CertifiedKey;
use serde_json::Value;

use crate::clog::{self, Level};

/// The API versions client-go accepts.
pub const API_VERSIONS: [&str; 2] = [
    "client.authentication.k8s.io/v1beta1",
    "client.authentication.k8s.io/v1",
];

/// client-go's text after "executable X not found", for the first ten misses an
/// hour.
const INSTALL_HINT_HELP: &str = "\n\nIt looks like you are trying to use a client-go credential plugin that is not installed.\n\nTo learn more about this feature, consult the documentation available at:\n      https://kubernetes.io/docs/reference/access-authn-authz/authentication/#client-go-credential-plugins";

/// A user's `exec` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecConfig {
    /// `command` (`filepath.Clean`ed; relative to the kubeconfig's directory
    /// when it holds a slash).
    pub command: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub api_version: String,
    /// `Never`, `IfAvailable` or `Always`.
    pub interactive_mode: String,
    pub install_hint: String,
    /// With `provideClusterInfo`: the cluster as the request carries it (JSON).
    pub cluster: Option<String>,
}

/// Credentials from one run (no `Debug`: the token is a secret).
pub struct Creds {
    pub token: String,
    cert: Option<Arc<CertifiedKey>>,
}

#[derive(Default)]
struct State {
    creds: Option<Arc<Creds>>,
    /// Unix seconds after which the credentials are run again.
    exp: Option<f64>,
}

/// The plugin and its cached credentials.
pub struct ExecAuth {
    cfg: ExecConfig,
    /// Held across a run: one run at a time.
    state: tokio::sync::Mutex<State>,
    /// The current client certificate, for the TLS handshake.
    cert: ArcSwapOption<CertifiedKey>,
    /// client-go's `sometimes`: (window start, hints given in it).
    hints: Mutex<(Instant, u32)>,
}

impl std::fmt::Debug for ExecAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecAuth")
            .field("command", &self.cfg.command)
            .finish_non_exhaustive()
    }
}

fn now_unix() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl ExecAuth {
    pub fn new(cfg: ExecConfig) -> Self {
        Self {
            cfg,
            state: tokio::sync::Mutex::new(State::default()),
            cert: ArcSwapOption::empty(),
            hints: Mutex::new((Instant::now(), 0)),
        }
    }

    /// The credentials, running the plugin when there are none or they expired
    /// (`getCreds`).
    pub async fn get(self: &Arc<Self>) -> Result<Arc<Creds>, String> {
        let mut st = self.state.lock().await;
        if let Some(c) = &st.creds {
            if st.exp.is_none_or(|e| now_unix() <= e) {
                return Ok(Arc::clone(c));
            }
        }
        self.refresh(&mut st).await
    }

    /// After a 401: runs the plugin again unless another request already did
    /// (`maybeRefreshCreds`).
    pub async fn unauthorized(self: &Arc<Self>, seen: &Arc<Creds>) {
        let mut st = self.state.lock().await;
        if st.creds.as_ref().is_some_and(|c| Arc::ptr_eq(c, seen)) {
            if let Err(e) = self.refresh(&mut st).await {
                clog::log(
                    Level::Error,
                    Some("kubernetes"),
                    &format!("refreshing credentials: {e}"),
                );
            }
        }
    }

    async fn refresh(self: &Arc<Self>, st: &mut State) -> Result<Arc<Creds>, String> {
        let me = Arc::clone(self);
        let (creds, exp) = tokio::task::spawn_blocking(move || me.run())
            .await
            .map_err(|e| format!("exec: {e}"))??;
        let creds = Arc::new(creds);
        self.cert.store(creds.cert.clone());
        st.creds = Some(Arc::clone(&creds));
        st.exp = exp;
        Ok(creds)
    }

    /// The request `KUBERNETES_EXEC_INFO` carries.
    fn exec_info(&self, interactive: bool) -> String {
        let cluster = self
            .cfg
            .cluster
            .as_ref()
            .map(|c| format!("\"cluster\":{c},"))
            .unwrap_or_default();
        // `runtime.Encode` (a JSON encoder: a newline at the end).
        format!(
            "{{\"kind\":\"ExecCredential\",\"apiVersion\":{},\"spec\":{{{cluster}\"interactive\":{interactive}}}}}\n",
            Value::String(self.cfg.api_version.clone())
        )
    }

    /// `isInteractive`.
    fn interactive(&self) -> Result<bool, String> {
        let tty = std::io::stdin().is_terminal();
        match self.cfg.interactive_mode.as_str() {
            "Never" => Ok(false),
            "IfAvailable" => Ok(tty),
            "Always" if !tty => Err(
                "exec plugin cannot support interactive mode: standard input is not a terminal"
                    .into(),
            ),
            "Always" => Ok(true),
            m => Err(format!(
                "exec plugin cannot support interactive mode: unknown interactiveMode: {}",
                corefile::values::go_quote(m)
            )),
        }
    }

    /// One run of the plugin (`refreshCredsLocked`).
    fn run(&self) -> Result<(Creds, Option<f64>), String> {
        let interactive = self.interactive()?;
        let cmd = &self.cfg.command;
        // Go's `exec.Command`: a name without a slash is looked up in this
        // process's PATH (not the plugin's `env`); a miss is "not found".
        let path = if cmd.contains('/') {
            std::path::PathBuf::from(cmd)
        } else {
            match look_path(cmd) {
                Some(p) => p,
                None => return Err(self.not_found()),
            }
        };
        let mut c = std::process::Command::new(path);
        c.args(&self.cfg.args)
            .envs(self.cfg.env.iter().map(|(k, v)| (k, v)))
            .env("KUBERNETES_EXEC_INFO", self.exec_info(interactive))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .stdin(if interactive {
                std::process::Stdio::inherit()
            } else {
                std::process::Stdio::null()
            });
        let out = match c.output() {
            Ok(o) => o,
            Err(e) => {
                return Err(format!(
                    "exec: fork/exec {cmd}: {}",
                    crate::config::go_err(&e)
                ));
            }
        };
        if !out.status.success() {
            return Err(format!(
                "exec: executable {cmd} failed with exit code {}",
                out.status.code().unwrap_or(-1)
            ));
        }
        self.decode(&out.stdout)
    }

    /// `exec: executable X not found`, with the install hint the first ten
    /// times an hour.
    fn not_found(&self) -> String {
        let mut msg = format!("exec: executable {} not found", self.cfg.command);
        if self.hint_now() {
            msg.push_str(INSTALL_HINT_HELP);
            if !self.cfg.install_hint.is_empty() {
                msg.push_str("\n\n");
                msg.push_str(&self.cfg.install_hint);
            }
        }
        msg
    }

    /// client-go's `sometimes` (threshold 10 per hour).
    fn hint_now(&self) -> bool {
        let mut h = self.hints.lock().unwrap_or_else(PoisonError::into_inner);
        if h.0.elapsed() > Duration::from_secs(3600) {
            *h = (Instant::now(), 0);
        }
        h.1 += 1;
        h.1 <= 10
    }

    /// The plugin's output.
    fn decode(&self, stdout: &[u8]) -> Result<(Creds, Option<f64>), String> {
        let v: Value = serde_json::from_slice(stdout).map_err(|e| {
            format!("decoding stdout: couldn't get version/kind; json parse error: {e}")
        })?;
        let s = |p: &str| v.pointer(p).and_then(Value::as_str).unwrap_or("");
        let (version, kind) = (s("/apiVersion"), s("/kind"));
        // The decoder fills a missing kind in from the object it decodes into;
        // a missing version is the internal one.
        if !kind.is_empty() && kind != "ExecCredential" {
            return Err(format!(
                "decoding stdout: no kind {} is registered for version {} in scheme",
                Value::String(kind.into()),
                Value::String(version.into())
            ));
        }
        let status = v.get("status").filter(|x| !x.is_null());
        // `metav1.Time`: null or absent is the zero time (no expiry), and so
        // is year 1; anything else must be RFC 3339.
        let exp = match status.and_then(|st| st.get("expirationTimestamp")) {
            None | Some(Value::Null) => None,
            Some(t) => {
                let text = t.as_str().unwrap_or("");
                let secs = super::store::parse_rfc3339(text).ok_or_else(|| {
                    format!(
                        "decoding stdout: parsing time {} as \"2006-01-02T15:04:05Z07:00\"",
                        t
                    )
                })?;
                ((secs + 62_135_596_800.0).abs() > 1e-9).then_some(secs)
            }
        };
        let version = if version.is_empty() {
            "client.authentication.k8s.io/__internal"
        } else {
            version
        };
        if version != self.cfg.api_version {
            return Err(format!(
                "exec plugin is configured to use API version {}, plugin returned version {version}",
                self.cfg.api_version
            ));
        }
        let Some(status) = status else {
            return Err("exec plugin didn't return a status field".into());
        };
        let f = |k: &str| status.get(k).and_then(Value::as_str).unwrap_or("");
        let (token, cert, key) = (f("token"), f("clientCertificateData"), f("clientKeyData"));
        if token.is_empty() && cert.is_empty() && key.is_empty() {
            return Err("exec plugin didn't return a token or cert/key pair".into());
        }
        if cert.is_empty() != key.is_empty() {
            return Err("exec plugin returned only certificate or key, not both".into());
        }
        let cert = if cert.is_empty() {
            None
        } else {
            let (chain, key) =
                crate::plugins::forward::tls::identity_pem(cert.as_bytes(), key.as_bytes())
                    .map_err(|e| format!("failed parsing client key/certificate: {e}"))?;
            let signer = rustls::crypto::ring::sign::any_supported_type(&key)
                .map_err(|e| format!("failed parsing client key/certificate: {e}"))?;
            let ck = CertifiedKey::new(chain, signer);
            // Go's `X509KeyPair` refuses a key that is not the certificate's.
            ck.keys_match().map_err(|_| {
                "failed parsing client key/certificate: tls: private key does not match public key"
                    .to_owned()
            })?;
            Some(Arc::new(ck))
        };
        Ok((
            Creds {
                token: token.to_owned(),
                cert,
            },
            exp,
        ))
    }
}

/// Go's `exec.LookPath`: the first executable regular file named `name` in
/// the directories of `PATH`.
fn look_path(name: &str) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| {
            if d.as_os_str().is_empty() {
                std::path::PathBuf::from(".").join(name)
            } else {
                d.join(name)
            }
        })
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// The TLS handshake's client certificate: the plugin's latest.
#[derive(Debug)]
pub struct ExecCert(pub Arc<ExecAuth>);

impl ResolvesClientCert for ExecCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.0.cert.load_full()
    }

    fn has_certs(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(api_version: &str) -> ExecAuth {
        ExecAuth::new(ExecConfig {
            command: "x".into(),
            args: Vec::new(),
            env: Vec::new(),
            api_version: api_version.into(),
            interactive_mode: "Never".into(),
            install_hint: String::new(),
            cluster: Some("{\"server\":\"https://k:6443\"}".into()),
        })
    }

    #[test]
    fn request_and_replies() {
        let a = auth("client.authentication.k8s.io/v1");
        assert_eq!(
            a.exec_info(false),
            "{\"kind\":\"ExecCredential\",\"apiVersion\":\"client.authentication.k8s.io/v1\",\"spec\":{\"cluster\":{\"server\":\"https://k:6443\"},\"interactive\":false}}\n"
        );
        // A missing kind is the decoder's own; the zero time is no expiry.
        let (c, exp) = a
            .decode(br#"{"apiVersion":"client.authentication.k8s.io/v1","status":{"token":"z","expirationTimestamp":"0001-01-01T00:00:00Z"}}"#)
            .expect("creds");
        assert_eq!((c.token.as_str(), exp), ("z", None));
        let ok = br#"{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1","status":{"token":"t1","expirationTimestamp":"2030-01-01T00:00:00Z"}}"#;
        let (c, exp) = a.decode(ok).expect("creds");
        assert_eq!(c.token, "t1");
        assert_eq!(exp, Some(1_893_456_000.0));
        for (out, want) in [
            (
                &br#"{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1beta1","status":{"token":"t"}}"#[..],
                "exec plugin is configured to use API version client.authentication.k8s.io/v1, plugin returned version client.authentication.k8s.io/v1beta1",
            ),
            (
                br#"{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1"}"#,
                "exec plugin didn't return a status field",
            ),
            (
                br#"{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1","status":{}}"#,
                "exec plugin didn't return a token or cert/key pair",
            ),
            (
                br#"{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1","status":{"clientKeyData":"k"}}"#,
                "exec plugin returned only certificate or key, not both",
            ),
            (
                br#"{"kind":"ExecCredential","status":{"token":"t"}}"#,
                "exec plugin is configured to use API version client.authentication.k8s.io/v1, plugin returned version client.authentication.k8s.io/__internal",
            ),
            (
                br#"{"kind":"Pod","apiVersion":"v1"}"#,
                "decoding stdout: no kind \"Pod\" is registered for version \"v1\" in scheme",
            ),
            (
                br#"{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1","status":{"token":"t","expirationTimestamp":""}}"#,
                "decoding stdout: parsing time \"\" as \"2006-01-02T15:04:05Z07:00\"",
            ),
        ] {
            assert_eq!(a.decode(out).map(drop).unwrap_err(), want);
        }
        assert!(
            a.decode(b"nope")
                .map(drop)
                .unwrap_err()
                .starts_with("decoding stdout: ")
        );
    }

    /// A certificate and key from the plugin become the handshake's client
    /// certificate.
    #[test]
    fn client_certificate() {
        let a = Arc::new(auth("client.authentication.k8s.io/v1"));
        let ck = rcgen::generate_simple_self_signed(vec!["client".to_owned()]).expect("cert");
        let out = serde_json::json!({"kind": "ExecCredential",
            "apiVersion": "client.authentication.k8s.io/v1",
            "status": {"clientCertificateData": ck.cert.pem(),
                       "clientKeyData": ck.signing_key.serialize_pem()}});
        let (c, exp) = a.decode(out.to_string().as_bytes()).expect("creds");
        assert!(c.token.is_empty() && exp.is_none());
        a.cert.store(c.cert);
        let r = ExecCert(Arc::clone(&a));
        assert!(r.has_certs());
        let got = r.resolve(&[], &[]).expect("cert");
        assert_eq!(got.cert[0].as_ref(), ck.cert.der().as_ref());
        let bad = serde_json::json!({"kind": "ExecCredential",
            "apiVersion": "client.authentication.k8s.io/v1",
            "status": {"clientCertificateData": "x", "clientKeyData": "y"}});
        assert!(
            a.decode(bad.to_string().as_bytes())
                .map(drop)
                .unwrap_err()
                .starts_with("failed parsing client key/certificate: ")
        );
    }

    #[test]
    fn interactive_modes() {
        let mut a = auth("client.authentication.k8s.io/v1");
        assert_eq!(a.interactive(), Ok(false));
        a.cfg.interactive_mode = "Always".into();
        // The test's standard input is not a terminal.
        if !std::io::stdin().is_terminal() {
            assert_eq!(
                a.interactive(),
                Err(
                    "exec plugin cannot support interactive mode: standard input is not a terminal"
                        .into()
                )
            );
        }
    }
}
