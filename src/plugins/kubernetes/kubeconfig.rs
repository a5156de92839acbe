//! `kubeconfig FILE [CONTEXT]`: the API server and credentials from a kubeconfig
//! file, as client-go's `NewNonInteractiveDeferredLoadingClientConfig` with an
//! explicit path reads it: the context (CONTEXT, else `current-context`), its
//! cluster (`server`, `certificate-authority[-data]`, `tls-server-name`,
//! `insecure-skip-tls-verify`) and user (`token`, `tokenFile`,
//! `client-certificate[-data]`, `client-key[-data]`, `exec` credential plugins,
//! see [`super::exec`]). `auth-provider`, basic auth and proxies fail at startup
//! naming themselves.
//!
//! The file is YAML (or JSON). The reader here takes the block style kubeconfig
//! files are written in: nested mappings and sequences, plain and quoted scalars,
//! comments, and flow collections written on one line (`[a, b]`, `{k: v}`).

use std::path::Path;

use serde_json::{Map, Value};

use super::client::ApiConfig;

/// Reads `path` and builds the API configuration for `context` (else the file's
/// current context).
pub fn load(path: &str, context: Option<&str>) -> Result<ApiConfig, String> {
    std::fs::metadata(path).map_err(|e| format!("stat {path}: {}", crate::config::go_err(&e)))?;
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("open {path}: {}", crate::config::go_err(&e)))?;
    let doc = parse(&text).map_err(|e| format!("error loading config file \"{path}\": {e}"))?;
    // client-go resolves paths against the file's absolute directory.
    let dir = Path::new(path).parent().unwrap_or(Path::new("."));
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    from_doc(&doc, context, &dir)
}

/// client-go's `ErrEmptyConfig` text (inside a pod, the in-cluster configuration
/// is used instead).
pub const EMPTY: &str = "invalid configuration: no configuration has been provided, try setting KUBERNETES_MASTER environment variable";

fn named<'a>(doc: &'a Value, list: &str, item: &str, name: &str) -> Option<&'a Value> {
    doc.get(list)?
        .as_array()?
        .iter()
        .find(|e| e.get("name").and_then(Value::as_str) == Some(name))?
        .get(item)
}

fn string<'a>(v: Option<&'a Value>, key: &str) -> Option<&'a str> {
    v?.get(key)?.as_str().filter(|s| !s.is_empty())
}

/// A relative file name in a kubeconfig is relative to the file's directory.
fn resolve(dir: &Path, f: &str) -> String {
    let p = Path::new(f);
    if p.is_absolute() {
        f.to_owned()
    } else {
        dir.join(p).to_string_lossy().into_owned()
    }
}

fn from_doc(doc: &Value, context: Option<&str>, dir: &Path) -> Result<ApiConfig, String> {
    let ctx_name = match context {
        Some(c) => c.to_owned(),
        None => doc
            .get("current-context")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
    };
    if ctx_name.is_empty() {
        return Err(EMPTY.into());
    }
    let Some(ctx) = named(doc, "contexts", "context", &ctx_name) else {
        return Err(format!(
            "context was not found for specified context: {ctx_name}"
        ));
    };
    let cluster_name = string(Some(ctx), "cluster").unwrap_or("");
    let user_name = string(Some(ctx), "user").unwrap_or("");
    let Some(cluster) = named(doc, "clusters", "cluster", cluster_name) else {
        return Err(format!("cluster has no server defined: {cluster_name:?}"));
    };
    let user = named(doc, "users", "user", user_name);
    let Some(server) = string(Some(cluster), "server") else {
        return Err("invalid configuration: no server found for cluster".into());
    };
    for (v, k) in [
        (Some(cluster), "proxy-url"),
        (user, "auth-provider"),
        (user, "username"),
        (user, "password"),
        (user, "as"),
    ] {
        match v.and_then(|v| v.get(k)) {
            None | Some(Value::Null | Value::Bool(false)) => {}
            Some(Value::String(s)) if s.is_empty() => {}
            Some(_) => return Err(format!("kubeconfig {k} is not supported by ringdns yet")),
        }
    }
    // client-go's `ConfirmUsable`: `validateAuthInfo` (a field given both inline
    // and as a file, the exec section), then `validateClusterInfo`.
    let (mut invalid, mut cluster_invalid) = (Vec::new(), Vec::new());
    for (v, data, file, what, sep) in [
        (
            user,
            "client-certificate-data",
            "client-certificate",
            user_name,
            ".",
        ),
        (user, "client-key-data", "client-key", user_name, ";"),
        (
            Some(cluster),
            "certificate-authority-data",
            "certificate-authority",
            cluster_name,
            ".",
        ),
    ] {
        if string(v, data).is_some() && string(v, file).is_some() {
            let short = |f: &str| f.replace("client-certificate", "client-cert");
            let list = if data.starts_with("certificate-authority") {
                &mut cluster_invalid
            } else {
                &mut invalid
            };
            list.push(format!(
                "{} and {} are both specified for {what}{sep} {} will override.",
                short(data),
                short(file),
                short(data)
            ));
        }
    }
    let exec = user.and_then(|u| u.get("exec")).filter(|e| e.is_object());
    if let Some(e) = exec {
        invalid.extend(validate_exec(e, user_name));
    }
    invalid.append(&mut cluster_invalid);
    match invalid.len() {
        0 => {}
        1 => return Err(format!("invalid configuration: {}", invalid[0])),
        _ => return Err(format!("invalid configuration: [{}]", invalid.join(", "))),
    }
    let ca_file = string(Some(cluster), "certificate-authority").map(|f| resolve(dir, f));
    let ca_data = string(Some(cluster), "certificate-authority-data")
        .map(b64)
        .transpose()?;
    let cert_file = string(user, "client-certificate").map(|f| resolve(dir, f));
    let cert_data = string(user, "client-certificate-data")
        .map(b64)
        .transpose()?;
    let key_file = string(user, "client-key").map(|f| resolve(dir, f));
    let key_data = string(user, "client-key-data").map(b64).transpose()?;
    // client-go's `InsecureSkipTLSVerify`: any server certificate (TLS implied).
    let insecure = matches!(
        cluster.get("insecure-skip-tls-verify"),
        Some(Value::Bool(true))
    );
    let tls_given = ca_file.is_some()
        || ca_data.is_some()
        || cert_file.is_some()
        || cert_data.is_some()
        || insecure;
    let mut api = ApiConfig::from_url(server, tls_given)?;
    if let Some(n) = string(Some(cluster), "tls-server-name") {
        api.server_name = Some(n.to_owned());
    }
    // client-go builds the credential plugin (`TransportConfig`) before the
    // TLS configuration: a bad API version is reported first.
    if let (true, Some(e)) = (api.https, exec) {
        let version = string(Some(e), "apiVersion").unwrap_or("");
        if !super::exec::API_VERSIONS.contains(&version) {
            return Err(format!(
                "failed to create kubernetes notification controller: {}",
                corefile::values::go_quote(&format!(
                    "exec plugin: invalid apiVersion {}",
                    corefile::values::go_quote(version)
                ))
            ));
        }
    }
    let mut ca_bytes: Option<Vec<u8>> = None;
    if api.https {
        // client-go's `TLSConfigFor`, reached when CoreDNS builds its client.
        if insecure && (ca_file.is_some() || ca_data.as_ref().is_some_and(|d| !d.is_empty())) {
            return Err(
                "failed to create kubernetes notification controller: \"specifying a root certificates file with the insecure flag is not allowed\""
                    .into(),
            );
        }
        let read = |f: &str| {
            std::fs::read(f).map_err(|e| format!("open {f}: {}", crate::config::go_err(&e)))
        };
        ca_bytes = match (&ca_data, &ca_file) {
            (Some(d), _) => Some(d.clone()),
            (None, Some(f)) => Some(read(f)?),
            (None, None) => None,
        };
        let store = match &ca_bytes {
            Some(d) => crate::plugins::forward::tls::roots_pem(d)?,
            None => crate::plugins::forward::tls::roots(None)?,
        };
        let cert = match (&cert_data, &cert_file) {
            (Some(d), _) => Some(d.clone()),
            (None, Some(f)) => Some(read(f)?),
            _ => None,
        };
        let key = match (&key_data, &key_file) {
            (Some(d), _) => Some(d.clone()),
            (None, Some(f)) => Some(read(f)?),
            _ => None,
        };
        let id = match (cert, key) {
            (Some(c), Some(k)) => Some(crate::plugins::forward::tls::identity_pem(&c, &k)?),
            // A key without a certificate is ignored, as client-go ignores it.
            (None, _) => None,
            (Some(_), None) => {
                return Err("tls: failed to find any PEM data in key input".into());
            }
        };
        api.tls = Some(crate::plugins::forward::tls::build_with(
            store, id, insecure,
        )?);
    }
    // Credentials go only to a TLS server (clientcmd reads the user's
    // identification only when the transport is TLS); a token file wins over a
    // token and is read again before each request.
    if api.https {
        if let Some(f) = string(user, "tokenFile") {
            let f = resolve(dir, f);
            std::fs::read(&f).map_err(|e| format!("open {f}: {}", crate::config::go_err(&e)))?;
            api.token_file = Some(f.into());
        } else if let Some(t) = string(user, "token") {
            api.token = Some(t.to_owned());
        }
    }
    // A credential plugin: client-go builds it for a TLS transport and uses it
    // only without a token or client certificate of the kubeconfig's own.
    if let (true, Some(e)) = (api.https, exec) {
        let has_cert = cert_data.is_some() || cert_file.is_some();
        if api.token.is_none() && api.token_file.is_none() && !has_cert {
            let ca = ca_bytes;
            let cfg = exec_config(e, cluster, server, ca.as_deref(), dir);
            let auth = std::sync::Arc::new(super::exec::ExecAuth::new(cfg));
            let store = match &ca {
                Some(d) => crate::plugins::forward::tls::roots_pem(d)?,
                None => crate::plugins::forward::tls::roots(None)?,
            };
            api.tls = Some(crate::plugins::forward::tls::build_resolving(
                store,
                insecure,
                std::sync::Arc::new(super::exec::ExecCert(std::sync::Arc::clone(&auth))),
            )?);
            api.exec = Some(auth);
        }
    }
    Ok(api)
}

/// Go's `filepath.Clean` (lexical: `.` dropped, `..` removing the element
/// before it, one slash between elements).
fn clean(p: &str) -> String {
    let abs = p.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." if out.last().is_some_and(|l| *l != "..") => {
                out.pop();
            }
            ".." if abs => {}
            x => out.push(x),
        }
    }
    let joined = out.join("/");
    match (abs, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

/// The interactive mode, defaulted as client-go's `SetDefaults_ExecConfig`
/// does (older API versions: `IfAvailable`).
fn interactive_mode(e: &Value) -> String {
    let mode = string(Some(e), "interactiveMode").unwrap_or("");
    let version = string(Some(e), "apiVersion").unwrap_or("");
    if mode.is_empty()
        && matches!(
            version,
            "client.authentication.k8s.io/v1beta1" | "client.authentication.k8s.io/v1alpha1"
        )
    {
        return "IfAvailable".into();
    }
    mode.to_owned()
}

/// client-go's `validateAuthInfo` for an `exec` section.
fn validate_exec(e: &Value, user: &str) -> Vec<String> {
    let mut out = Vec::new();
    let suffix = format!("for {user} to use exec authentication plugin");
    if string(Some(e), "command").is_none() {
        out.push(format!("command must be specified {suffix}"));
    }
    if string(Some(e), "apiVersion").is_none() {
        out.push(format!("apiVersion must be specified {suffix}"));
    }
    for v in e
        .get("env")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice)
    {
        if string(Some(v), "name").is_none() {
            out.push(format!("env variable name must be specified {suffix}"));
        }
    }
    match interactive_mode(e).as_str() {
        "" => out.push(format!("interactiveMode must be specified {suffix}")),
        "Never" | "IfAvailable" | "Always" => {}
        m => out.push(format!(
            "invalid interactiveMode for {user}: {}",
            corefile::values::go_quote(m)
        )),
    }
    out
}

/// The plugin's settings; `ca` is the cluster's CA (for `provideClusterInfo`).
fn exec_config(
    e: &Value,
    cluster: &Value,
    server: &str,
    ca: Option<&[u8]>,
    dir: &Path,
) -> super::exec::ExecConfig {
    let command = string(Some(e), "command").unwrap_or("");
    // A command with a slash is relative to the kubeconfig (client-go's
    // `ResolvePaths`), then `filepath.Clean`ed.
    let command = if command.contains('/') {
        resolve(dir, command)
    } else {
        command.to_owned()
    };
    let command = clean(&command);
    let strings = |k: &str| -> Vec<String> {
        e.get(k)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let env = e
        .get("env")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|v| {
                    (
                        string(Some(v), "name").unwrap_or("").to_owned(),
                        string(Some(v), "value").unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let provide = matches!(e.get("provideClusterInfo"), Some(Value::Bool(true)));
    super::exec::ExecConfig {
        command,
        args: strings("args"),
        env,
        api_version: string(Some(e), "apiVersion").unwrap_or("").to_owned(),
        interactive_mode: interactive_mode(e),
        install_hint: string(Some(e), "installHint").unwrap_or("").to_owned(),
        cluster: provide.then(|| cluster_info(cluster, server, ca)),
    }
}

/// `clientauthentication.Cluster` as JSON, in its field order (empty fields
/// left out): the server, TLS settings, and the cluster's
/// `client.authentication.k8s.io/exec` extension as `config`.
fn cluster_info(cluster: &Value, server: &str, ca: Option<&[u8]>) -> String {
    let q = |s: &str| Value::String(s.to_owned()).to_string();
    let mut f = vec![format!("\"server\":{}", q(server))];
    if let Some(n) = string(Some(cluster), "tls-server-name") {
        f.push(format!("\"tls-server-name\":{}", q(n)));
    }
    if matches!(
        cluster.get("insecure-skip-tls-verify"),
        Some(Value::Bool(true))
    ) {
        f.push("\"insecure-skip-tls-verify\":true".into());
    }
    if let Some(ca) = ca.filter(|c| !c.is_empty()) {
        f.push(format!(
            "\"certificate-authority-data\":{}",
            q(&crate::plugins::forward::doh::base64(ca))
        ));
    }
    if matches!(cluster.get("disable-compression"), Some(Value::Bool(true))) {
        f.push("\"disable-compression\":true".into());
    }
    let ext = cluster
        .get("extensions")
        .and_then(Value::as_array)
        .and_then(|a| {
            a.iter().find(|x| {
                x.get("name").and_then(Value::as_str) == Some("client.authentication.k8s.io/exec")
            })
        })
        .and_then(|x| x.get("extension"));
    // `config` is a `RawExtension`: `null` without the extension.
    match ext {
        Some(x) => f.push(format!("\"config\":{x}")),
        None => f.push("\"config\":null".into()),
    }
    format!("{{{}}}", f.join(","))
}

/// Standard base64 with padding (Go's `base64.StdEncoding`, as JSON `[]byte`).
fn b64(s: &str) -> Result<Vec<u8>, String> {
    let clean: Vec<u8> = s.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    crate::zone::rdata::base64(&clean, &mut out)
        .map_err(|()| "illegal base64 data in a kubeconfig field".to_owned())?;
    Ok(out)
}

/// One non-blank line: its indent and its text (comments removed).
struct Line {
    indent: usize,
    text: String,
    no: usize,
}

fn strip_comment(s: &str) -> &str {
    let b = s.as_bytes();
    let (mut sq, mut dq) = (false, false);
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'\'' if !dq => sq = !sq,
            b'"' if !sq => dq = !dq,
            b'#' if !sq && !dq && (i == 0 || b[i - 1] == b' ' || b[i - 1] == b'\t') => {
                return &s[..i];
            }
            _ => {}
        }
    }
    s
}

/// Parses a kubeconfig document (YAML block style, or JSON).
pub fn parse(text: &str) -> Result<Value, String> {
    if text.trim_start().starts_with('{') {
        return serde_json::from_str(text).map_err(|e| e.to_string());
    }
    let mut lines = Vec::new();
    for (no, raw) in text.lines().enumerate() {
        let t = strip_comment(raw).trim_end();
        let trimmed = t.trim_start();
        if trimmed.is_empty() || trimmed == "---" || trimmed == "..." {
            continue;
        }
        if t.starts_with('\t') {
            return Err(format!(
                "yaml: line {}: found a tab character that violates indentation",
                no + 1
            ));
        }
        lines.push(Line {
            indent: t.len() - trimmed.len(),
            text: trimmed.to_owned(),
            no: no + 1,
        });
    }
    if lines.is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    let mut i = 0;
    let ind = lines[0].indent;
    let v = block(&mut lines, &mut i, ind)?;
    if i < lines.len() {
        return Err(format!(
            "yaml: line {}: did not find expected key",
            lines[i].no
        ));
    }
    Ok(v)
}

fn is_item(t: &str) -> bool {
    t == "-" || t.starts_with("- ")
}

fn block(lines: &mut [Line], i: &mut usize, ind: usize) -> Result<Value, String> {
    if is_item(&lines[*i].text) {
        seq(lines, i, ind)
    } else {
        map(lines, i, ind)
    }
}

fn seq(lines: &mut [Line], i: &mut usize, ind: usize) -> Result<Value, String> {
    let mut out = Vec::new();
    while *i < lines.len() && lines[*i].indent == ind && is_item(&lines[*i].text) {
        let rest = lines[*i].text[1..].trim_start().to_owned();
        if rest.is_empty() {
            *i += 1;
            if *i < lines.len() && lines[*i].indent > ind {
                let inner = lines[*i].indent;
                out.push(block(lines, i, inner)?);
            } else {
                out.push(Value::Null);
            }
            continue;
        }
        let flow = rest.starts_with(['{', '[']);
        if !flow && (is_item(&rest) || split_key(&rest).is_some()) {
            // `- key: value`: a mapping (or sequence) starting on the item's line.
            let col = ind + (lines[*i].text.len() - rest.len());
            lines[*i].indent = col;
            lines[*i].text = rest;
            out.push(block(lines, i, col)?);
            continue;
        }
        out.push(scalar(&rest, lines[*i].no)?);
        *i += 1;
    }
    Ok(Value::Array(out))
}

/// `key: value` or `key:` (the key plain or quoted).
fn split_key(t: &str) -> Option<(String, String)> {
    let (key, rest) = if let Some(q @ ('"' | '\'')) = t.chars().next() {
        let end = t[1..].find(q)? + 1;
        (t[1..end].to_owned(), &t[end + 1..])
    } else {
        let p = t
            .find(": ")
            .or_else(|| t.ends_with(':').then(|| t.len() - 1))?;
        (t[..p].trim_end().to_owned(), &t[p..])
    };
    let rest = rest.strip_prefix(':')?;
    if !rest.is_empty() && !rest.starts_with(' ') {
        return None;
    }
    Some((key, rest.trim().to_owned()))
}

fn map(lines: &mut [Line], i: &mut usize, ind: usize) -> Result<Value, String> {
    let mut out = Map::new();
    while *i < lines.len() && lines[*i].indent == ind && !is_item(&lines[*i].text) {
        let no = lines[*i].no;
        let Some((key, val)) = split_key(&lines[*i].text) else {
            return Err(format!("yaml: line {no}: could not find expected ':'"));
        };
        *i += 1;
        let v = if !val.is_empty() {
            scalar(&val, no)?
        } else if *i < lines.len() && lines[*i].indent > ind {
            let inner = lines[*i].indent;
            block(lines, i, inner)?
        } else if *i < lines.len() && lines[*i].indent == ind && is_item(&lines[*i].text) {
            // A sequence as a value may sit at its key's indent.
            seq(lines, i, ind)?
        } else {
            Value::Null
        };
        out.insert(key, v);
    }
    if *i < lines.len() && lines[*i].indent > ind {
        return Err(format!(
            "yaml: line {}: mapping values are not allowed in this context",
            lines[*i].no
        ));
    }
    Ok(Value::Object(out))
}

fn scalar(t: &str, no: usize) -> Result<Value, String> {
    Ok(match t {
        "{}" => Value::Object(Map::new()),
        "[]" => Value::Array(Vec::new()),
        "~" | "null" | "Null" | "NULL" => Value::Null,
        "true" | "True" | "TRUE" => Value::Bool(true),
        "false" | "False" | "FALSE" => Value::Bool(false),
        _ if t.starts_with('"') => {
            let inner = t
                .strip_prefix('"')
                .and_then(|s| s.strip_suffix('"'))
                .ok_or_else(|| format!("yaml: line {no}: found unexpected end of stream"))?;
            Value::String(unescape(inner))
        }
        _ if t.starts_with('\'') => {
            let inner = t
                .strip_prefix('\'')
                .and_then(|s| s.strip_suffix('\''))
                .ok_or_else(|| format!("yaml: line {no}: found unexpected end of stream"))?;
            Value::String(inner.replace("''", "'"))
        }
        _ if t.starts_with(['{', '[']) => {
            let mut f = Flow {
                s: t.as_bytes(),
                i: 0,
                no,
                depth: 0,
            };
            let v = f.value()?;
            f.ws();
            if f.i != f.s.len() {
                return Err(f.unsupported());
            }
            v
        }
        _ if t.starts_with(['|', '>', '&', '*', '!']) => {
            return Err(format!(
                "yaml: line {no}: this YAML form is not supported by ringdns's kubeconfig reader"
            ));
        }
        _ => Value::String(t.to_owned()),
    })
}

/// A flow collection written on one line (`[a, "b"]`, `{name: x, value: y}`,
/// nested): YAML's flow style as kubeconfigs written by hand use it.
struct Flow<'a> {
    s: &'a [u8],
    i: usize,
    no: usize,
    /// Nesting so far (bounded: a config file never takes the stack down).
    depth: usize,
}

impl Flow<'_> {
    fn unsupported(&self) -> String {
        format!(
            "yaml: line {}: this YAML form is not supported by ringdns's kubeconfig reader",
            self.no
        )
    }

    fn ws(&mut self) {
        while self
            .s
            .get(self.i)
            .is_some_and(|c| *c == b' ' || *c == b'\t')
        {
            self.i += 1;
        }
    }

    fn value(&mut self) -> Result<Value, String> {
        self.ws();
        if self.depth > 32 {
            return Err(self.unsupported());
        }
        self.depth += 1;
        let v = self.value_inner();
        self.depth -= 1;
        v
    }

    fn value_inner(&mut self) -> Result<Value, String> {
        match self.s.get(self.i) {
            Some(b'[') => {
                self.i += 1;
                let mut out = Vec::new();
                self.items(b']', |f| {
                    out.push(f.value()?);
                    Ok(())
                })?;
                Ok(Value::Array(out))
            }
            Some(b'{') => {
                self.i += 1;
                let mut out = Map::new();
                self.items(b'}', |f| {
                    let Value::String(k) = f.value()? else {
                        return Err(f.unsupported());
                    };
                    f.ws();
                    if f.s.get(f.i) != Some(&b':') {
                        return Err(f.unsupported());
                    }
                    f.i += 1;
                    let v = f.value()?;
                    out.insert(k, v);
                    Ok(())
                })?;
                Ok(Value::Object(out))
            }
            Some(b'"' | b'\'') => {
                let q = self.s[self.i];
                let start = self.i;
                self.i += 1;
                while let Some(&c) = self.s.get(self.i) {
                    self.i += 1;
                    if c == b'\\' && q == b'"' {
                        self.i += 1;
                    } else if c == q {
                        if q == b'\'' && self.s.get(self.i) == Some(&b'\'') {
                            self.i += 1;
                            continue;
                        }
                        let text = std::str::from_utf8(&self.s[start..self.i])
                            .map_err(|_| self.unsupported())?;
                        return scalar(text, self.no);
                    }
                }
                Err(format!(
                    "yaml: line {}: found unexpected end of stream",
                    self.no
                ))
            }
            Some(_) => {
                let start = self.i;
                while self.s.get(self.i).is_some_and(|c| {
                    !(b",[]{}".contains(c)
                        || (*c == b':' && self.s.get(self.i + 1).is_none_or(|n| *n == b' ')))
                }) {
                    self.i += 1;
                }
                let text = std::str::from_utf8(&self.s[start..self.i])
                    .map_err(|_| self.unsupported())?
                    .trim_end();
                if text.is_empty() {
                    return Err(self.unsupported());
                }
                scalar(text, self.no)
            }
            None => Err(self.unsupported()),
        }
    }

    /// Comma-separated items up to `close` (a trailing comma allowed).
    fn items(
        &mut self,
        close: u8,
        mut item: impl FnMut(&mut Self) -> Result<(), String>,
    ) -> Result<(), String> {
        loop {
            self.ws();
            match self.s.get(self.i) {
                Some(c) if *c == close => {
                    self.i += 1;
                    return Ok(());
                }
                None => return Err(self.unsupported()),
                _ => {}
            }
            item(self)?;
            self.ws();
            match self.s.get(self.i) {
                Some(b',') => self.i += 1,
                Some(c) if *c == close => {}
                _ => return Err(self.unsupported()),
            }
        }
    }
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('"') => out.push('"'),
            Some('\\') => out.push('\\'),
            Some('/') => out.push('/'),
            Some(o) => {
                out.push('\\');
                out.push(o);
            }
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIND: &str = r#"apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: ""
    server: http://127.0.0.1:6443   # the API
  name: kind-kind
- cluster:
    server: "https://10.0.0.1:443"
    tls-server-name: api.example
  name: 'other'
contexts:
- context:
    cluster: kind-kind
    user: kind-kind
  name: kind-kind
- context:
    cluster: other
    user: tok
    namespace: default
  name: other
current-context: kind-kind
kind: Config
preferences: {}
users:
- name: kind-kind
  user: {}
- name: tok
  user:
    token: abc.def
"#;

    #[test]
    fn reads_block_yaml() {
        let v = parse(KIND).expect("yaml");
        assert_eq!(v["current-context"], "kind-kind");
        assert_eq!(
            v["clusters"][0]["cluster"]["server"],
            "http://127.0.0.1:6443"
        );
        assert_eq!(v["clusters"][1]["name"], "other");
        assert_eq!(v["contexts"][1]["context"]["namespace"], "default");
        assert_eq!(v["users"][1]["user"]["token"], "abc.def");
        assert!(v["preferences"].as_object().is_some_and(Map::is_empty));
    }

    /// One-line flow collections, nested, as hand-written kubeconfigs use them.
    #[test]
    fn reads_flow_yaml() {
        let v = parse(
            "users:\n- name: u\n  user:\n    exec:\n      args: [\"eks\", get-token, '--cluster-name', \"a, b\", 'it''s']\n      env: [{name: A, value: \"1\"}, {name: B, value: x:y}]\n      empty: [ ]\n- {name: w, user: {token: t}}\n",
        )
        .expect("yaml");
        let e = &v["users"][0]["user"]["exec"];
        assert_eq!(
            e["args"],
            serde_json::json!(["eks", "get-token", "--cluster-name", "a, b", "it's"])
        );
        assert_eq!(
            e["env"],
            serde_json::json!([{"name": "A", "value": "1"}, {"name": "B", "value": "x:y"}])
        );
        assert_eq!(e["empty"], serde_json::json!([]));
        assert_eq!(v["users"][1]["user"]["token"], "t");
        let deep = format!("a: {}{}", "[".repeat(100_000), "]".repeat(100_000));
        for bad in ["a: [x", "a: [x y]]", "a: {x}", "a: [\"x]", &deep] {
            assert!(parse(bad).is_err(), "{}", &bad[..bad.len().min(40)]);
        }
    }

    #[test]
    fn contexts_and_credentials() {
        let v = parse(KIND).expect("yaml");
        let c = from_doc(&v, None, Path::new("/")).expect("current");
        assert!(!c.https && c.port == 6443 && c.token.is_none());
        let c = from_doc(&v, Some("other"), Path::new("/")).expect("other");
        assert!(c.https && c.host == "10.0.0.1");
        assert_eq!(c.token.as_deref(), Some("abc.def"));
        assert_eq!(c.server_name.as_deref(), Some("api.example"));
        assert_eq!(
            from_doc(&v, Some("nope"), Path::new("/")).err().as_deref(),
            Some("context was not found for specified context: nope")
        );
        let exec = parse("current-context: a\ncontexts:\n- name: a\n  context:\n    cluster: a\n    user: a\nclusters:\n- name: a\n  cluster:\n    server: http://x:1\nusers:\n- name: a\n  user:\n    exec:\n      command: aws\n").expect("yaml");
        assert_eq!(
            from_doc(&exec, None, Path::new("/")).err().as_deref(),
            Some(
                "invalid configuration: [apiVersion must be specified for a to use exec authentication plugin, interactiveMode must be specified for a to use exec authentication plugin]"
            )
        );
    }

    /// `exec` credential plugins: client-go's validation, the API versions, and
    /// when the plugin is used (TLS, no token or certificate of the file's own).
    #[test]
    fn exec_plugins() {
        let doc = |server: &str, user: &str| {
            parse(&format!("current-context: a\ncontexts:\n- name: a\n  context:\n    cluster: a\n    user: u\nclusters:\n- name: a\n  cluster:\n    server: {server}\n    insecure-skip-tls-verify: true\n    extensions:\n    - name: client.authentication.k8s.io/exec\n      extension:\n        audience: dns\nusers:\n- name: u\n  user:\n{user}")).expect("yaml")
        };
        let ok = "    exec:\n      apiVersion: client.authentication.k8s.io/v1beta1\n      command: ./bin/get-token\n      args:\n      - --x\n      env:\n      - name: A\n        value: b\n      provideClusterInfo: true\n";
        let c = from_doc(&doc("https://k:6443", ok), None, Path::new("/etc/kube")).expect("exec");
        let x = c.exec.expect("plugin");
        assert_eq!(
            format!("{x:?}"),
            "ExecAuth { command: \"/etc/kube/bin/get-token\", .. }"
        );
        // Over HTTP, or with a token of its own, the plugin is not used.
        let c = from_doc(&doc("http://k:8080", ok), None, Path::new("/")).expect("http");
        assert!(c.exec.is_none());
        let c = from_doc(
            &doc("https://k:6443", &format!("{ok}    token: t\n")),
            None,
            Path::new("/"),
        )
        .expect("token");
        assert!(c.exec.is_none() && c.token.as_deref() == Some("t"));
        for (user, want) in [
            (
                "    exec:\n      apiVersion: client.authentication.k8s.io/v2\n      command: x\n      interactiveMode: Never\n",
                "failed to create kubernetes notification controller: \"exec plugin: invalid apiVersion \\\"client.authentication.k8s.io/v2\\\"\"",
            ),
            (
                "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: x\n",
                "invalid configuration: interactiveMode must be specified for u to use exec authentication plugin",
            ),
            (
                "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: x\n      interactiveMode: Sometimes\n      env:\n      - value: v\n",
                "invalid configuration: [env variable name must be specified for u to use exec authentication plugin, invalid interactiveMode for u: \"Sometimes\"]",
            ),
        ] {
            assert_eq!(
                from_doc(&doc("https://k:6443", user), None, Path::new("/"))
                    .err()
                    .as_deref(),
                Some(want),
                "{user}"
            );
        }
        let cluster = serde_json::json!({"server": "https://k:6443", "insecure-skip-tls-verify": true,
            "extensions": [{"name": "client.authentication.k8s.io/exec", "extension": {"audience": "dns"}}]});
        assert_eq!(
            cluster_info(&cluster, "https://k:6443", Some(b"PEM")),
            "{\"server\":\"https://k:6443\",\"insecure-skip-tls-verify\":true,\"certificate-authority-data\":\"UEVN\",\"config\":{\"audience\":\"dns\"}}"
        );
    }

    #[test]
    fn both_inline_and_file() {
        let v = parse("current-context: a\ncontexts:\n- name: a\n  context:\n    cluster: c\n    user: u\nclusters:\n- name: c\n  cluster:\n    server: https://x:1\n    certificate-authority: ca.pem\n    certificate-authority-data: AAAA\nusers:\n- name: u\n  user: {}\n").expect("yaml");
        assert_eq!(
            from_doc(&v, None, Path::new("/")).err().as_deref(),
            Some(
                "invalid configuration: certificate-authority-data and certificate-authority are both specified for c. certificate-authority-data will override."
            )
        );
        assert_eq!(
            from_doc(&parse("users: []\n").expect("yaml"), None, Path::new("/"))
                .err()
                .as_deref(),
            Some(EMPTY)
        );
    }

    #[test]
    fn insecure_skip_tls_verify() {
        let doc = |extra: &str| {
            parse(&format!("current-context: a\ncontexts:\n- name: a\n  context:\n    cluster: c\n    user: u\nclusters:\n- name: c\n  cluster:\n    server: https://x:1\n    insecure-skip-tls-verify: true\n{extra}users:\n- name: u\n  user: {{}}\n")).expect("yaml")
        };
        let c = from_doc(&doc(""), None, Path::new("/")).expect("insecure");
        assert!(c.https && c.tls.is_some());
        assert_eq!(
            from_doc(
                &doc("    certificate-authority-data: AAAA\n"),
                None,
                Path::new("/")
            )
            .err()
            .as_deref(),
            Some(
                "failed to create kubernetes notification controller: \"specifying a root certificates file with the insecure flag is not allowed\""
            )
        );
    }

    #[test]
    fn base64_and_errors() {
        assert_eq!(b64("aGVsbG8=").expect("b64"), b"hello");
        assert_eq!(b64("aGVs\nbG8h").expect("b64"), b"hello!");
        assert!(b64("a$").is_err());
        assert!(parse("a: b\n  c: d\n").is_err());
        assert!(parse("a: |\n  x\n").is_err());
        assert!(parse("a:\n\t- b\n").is_err());
        assert_eq!(parse("{\"a\": 1}").expect("json")["a"], 1);
    }
}
