//! The HTTP endpoints of *prometheus* (`/metrics`), *health* (`/health`) and
//! *ready* (`/ready`): a small HTTP/1.1 server on the main thread's runtime,
//! one listener per address. Unlike CoreDNS, listeners are kept across a
//! reload when their address stays (so they never go down during a reload, nor
//! after a failed one); listeners whose address disappears are closed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// What an address serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `/metrics`.
    Metrics,
    /// `/health`.
    Health,
    /// `/ready`.
    Ready,
}

/// `%XX` escapes decoded (any other octet, a malformed escape included, left as
/// written); bytes, so no escape can split a character.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Go's `net.SplitHostPort`, with its error texts.
pub fn split_host_port(hp: &str) -> Result<(String, String), String> {
    let err = |why: &str| format!("address {hp}: {why}");
    let Some(i) = hp.rfind(':') else {
        return Err(err("missing port in address"));
    };
    let (host, j, k);
    if hp.starts_with('[') {
        let Some(end) = hp.find(']') else {
            return Err(err("missing ']' in address"));
        };
        if end + 1 == hp.len() {
            return Err(err("missing port in address"));
        } else if end + 1 != i {
            if hp.as_bytes()[end + 1] == b':' {
                return Err(err("too many colons in address"));
            }
            return Err(err("missing port in address"));
        }
        host = hp[1..end].to_owned();
        j = 1;
        k = end + 1;
    } else {
        host = hp[..i].to_owned();
        if host.contains(':') {
            return Err(err("too many colons in address"));
        }
        j = 0;
        k = 0;
    }
    if hp[j..].contains('[') {
        return Err(err("unexpected '[' in address"));
    }
    if hp[k..].contains(']') {
        return Err(err("unexpected ']' in address"));
    }
    Ok((host, hp[i + 1..].to_owned()))
}

/// The optional `[ADDRESS]` argument of *prometheus*, *health*, *ready* and
/// *pprof*: `Ok(None)` without one, `Ok(Some(addr))` when it splits as Go's
/// `net.SplitHostPort` accepts, the plugin-wrapped error otherwise.
pub fn address_arg(
    d: &mut corefile::Dispenser,
    plugin: &str,
) -> Result<Option<String>, corefile::Diagnostic> {
    let args = d.remaining_args();
    match args.as_slice() {
        [] => Ok(None),
        [a] => {
            split_host_port(a).map_err(|e| corefile::Diagnostic::plain(e).in_plugin(plugin))?;
            Ok(Some(a.clone()))
        }
        _ => Err(d.arg_err().in_plugin(plugin)),
    }
}

/// Resolves a Go-style listen address (`:8080`, `localhost:9153`, `[::1]:53`).
pub fn resolve(addr: &str) -> Result<SocketAddr, String> {
    let (host, port) = split_host_port(addr)?;
    // Go's `Listen` fails to resolve before it has an address to name.
    let port = crate::config::go_tcp_port(&port).map_err(|e| format!("listen tcp: {e}"))?;
    let ip: std::net::IpAddr = match host.as_str() {
        "" => std::net::Ipv6Addr::UNSPECIFIED.into(),
        "localhost" => std::net::Ipv4Addr::LOCALHOST.into(),
        h => h
            .parse()
            .map_err(|_| format!("listen tcp: lookup {h}: no such host"))?,
    };
    Ok(SocketAddr::new(ip, port))
}

fn bind(addr: &str) -> Result<std::net::TcpListener, String> {
    let sa = resolve(addr)?;
    let s = socket2::Socket::new(
        socket2::Domain::for_address(sa),
        socket2::Type::STREAM,
        None,
    )
    .map_err(|e| format!("listen tcp {addr}: {e}"))?;
    if sa.is_ipv6() {
        let _ = s.set_only_v6(false);
    }
    let _ = s.set_reuse_address(true);
    s.bind(&sa.into())
        .map_err(|e| format!("listen tcp {addr}: bind: {}", crate::config::go_err(&e)))?;
    s.listen(1024)
        .map_err(|e| format!("listen tcp {addr}: {e}"))?;
    s.set_nonblocking(true)
        .map_err(|e| format!("listen tcp {addr}: {e}"))?;
    Ok(s.into())
}

/// A bound listener waiting for [`Endpoints::commit`].
type Pending = (String, Kind, std::net::TcpListener, Arc<Notify>);

struct Running {
    kind: Kind,
    stop: Arc<Notify>,
}

/// The set of running endpoints.
#[derive(Default)]
pub struct Endpoints {
    running: Mutex<HashMap<String, Running>>,
    pending: Mutex<Vec<Pending>>,
}

/// A response.
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Content type.
    pub content_type: &'static str,
    /// Body.
    pub body: Vec<u8>,
}

/// Handles one request path for an endpoint kind.
pub type Handler = fn(Kind, &str) -> Response;

impl Endpoints {
    /// Makes the running set equal to `want`: binds new addresses (errors are
    /// returned before anything changes), keeps the ones that stay.
    pub fn prepare(&self, want: &[(String, Kind)]) -> Result<(), String> {
        let running = self
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut pending = Vec::new();
        for (addr, kind) in want {
            if running.get(addr).is_some_and(|r| r.kind == *kind)
                || pending.iter().any(|(a, _, _, _)| a == addr)
            {
                continue;
            }
            if running.contains_key(addr) {
                // Same address, other kind: replaced on commit (rebound then).
                continue;
            }
            let l = bind(addr)?;
            pending.push((addr.clone(), *kind, l, Arc::new(Notify::new())));
        }
        *self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = pending;
        Ok(())
    }

    /// Starts prepared listeners on the current runtime and stops the ones not in `want`.
    pub fn commit(&self, want: &[(String, Kind)], handler: Handler) {
        let mut running = self
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        running.retain(|addr, r| {
            let keep = want.iter().any(|(a, k)| a == addr && *k == r.kind);
            if !keep {
                r.stop.notify_waiters();
                r.stop.notify_one();
            }
            keep
        });
        let pending = std::mem::take(
            &mut *self
                .pending
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for (addr, kind, l, stop) in pending {
            let Ok(listener) = TcpListener::from_std(l) else {
                continue;
            };
            running.insert(
                addr,
                Running {
                    kind,
                    stop: Arc::clone(&stop),
                },
            );
            tokio::spawn(serve(listener, kind, handler, stop));
        }
    }

    /// Stops the endpoints of `kind` (shutdown order: ready before health).
    pub fn stop_kind(&self, kind: Kind) {
        let mut running = self
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        running.retain(|_, r| {
            if r.kind == kind {
                r.stop.notify_one();
                false
            } else {
                true
            }
        });
    }
}

async fn serve(l: TcpListener, kind: Kind, handler: Handler, stop: Arc<Notify>) {
    loop {
        tokio::select! {
            r = l.accept() => {
                if let Ok((s, _)) = r {
                    tokio::spawn(conn(s, kind, handler));
                }
            }
            () = stop.notified() => break,
        }
    }
}

async fn conn(mut s: tokio::net::TcpStream, kind: Kind, handler: Handler) {
    let mut buf = Vec::with_capacity(1024);
    let mut tmp = [0u8; 1024];
    // Read the request head within 5 s (CoreDNS's read timeout), at most 16 KiB.
    let head = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let n = s.read(&mut tmp).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&tmp[..n]);
            if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                return Some(());
            }
            if buf.len() > 16 * 1024 {
                return None;
            }
        }
    })
    .await;
    if !matches!(head, Ok(Some(()))) {
        return;
    }
    let text = String::from_utf8_lossy(&buf);
    let line = text.lines().next().unwrap_or("");
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("");
    let target = parts.next().unwrap_or("/");
    let path = target.split('?').next().unwrap_or(target);
    let resp = handler(kind, path);
    let reason = match resp.status {
        200 => "OK",
        404 => "Not Found",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let mut out = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
        resp.status,
        resp.content_type,
        resp.body.len()
    );
    if resp.status == 404 {
        out.push_str("X-Content-Type-Options: nosniff\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    let mut bytes = out.into_bytes();
    if method != "HEAD" {
        bytes.extend_from_slice(&resp.body);
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), s.write_all(&bytes)).await;
    let _ = s.shutdown().await;
}

/// Go's `http.NotFound`.
pub fn not_found() -> Response {
    Response {
        status: 404,
        content_type: "text/plain; charset=utf-8",
        body: b"404 page not found\n".to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_split_host_port() {
        assert_eq!(split_host_port(":8080"), Ok((String::new(), "8080".into())));
        assert_eq!(split_host_port("[::1]:53"), Ok(("::1".into(), "53".into())));
        assert_eq!(
            split_host_port("localhost"),
            Err("address localhost: missing port in address".into())
        );
        assert_eq!(
            split_host_port("::1:53"),
            Err("address ::1:53: too many colons in address".into())
        );
    }
}
