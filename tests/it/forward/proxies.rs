//! Proxies on loopback for the DoH tests: an HTTP `CONNECT` proxy (plain, or behind
//! TLS as an `https://` proxy) and a SOCKS5 proxy (RFC 1928, username/password per
//! RFC 1929). Every tunnel goes to `127.0.0.1:to`, whatever its target, so nothing
//! leaves 127.0.0.1; a target named `refuse` is refused (HTTP 407, SOCKS reply 2).
//! Each keeps the bytes the client sent before its tunnel opened.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Which proxy.
#[derive(Clone)]
pub enum ProxyKind {
    /// `http://`: `CONNECT`, answered with a bare-LF head for target `192.0.2.8:443`.
    Http,
    /// `https://`: TLS with this configuration, then as `Http`.
    Https(Arc<rustls::ServerConfig>),
    /// `socks5://`: username/password required when `user` is not empty.
    Socks5 {
        user: &'static [u8],
        pass: &'static [u8],
    },
}

/// A proxy; stops when dropped.
pub struct TunnelProxy {
    pub port: u16,
    seen: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TunnelProxy {
    pub fn start(kind: ProxyKind, to: u16, refuse: &'static str) -> Self {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.set_nonblocking(true).expect("nonblocking");
        let port = l.local_addr().expect("addr").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen2, stop2) = (Arc::clone(&seen), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, async move {
                let l = TcpListener::from_std(l).expect("listener");
                tokio::task::spawn_local(async move {
                    while let Ok((c, _)) = l.accept().await {
                        let (kind, seen) = (kind.clone(), Arc::clone(&seen2));
                        tokio::task::spawn_local(async move {
                            let _ = serve(c, kind, to, refuse, seen).await;
                        });
                    }
                });
                while !stop2.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            });
        });
        Self {
            port,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    /// What each client sent before its tunnel opened, in order.
    pub fn seen(&self) -> Vec<Vec<u8>> {
        self.seen.lock().expect("lock").clone()
    }

    /// `seen` as text (HTTP request heads).
    pub fn heads(&self) -> Vec<String> {
        self.seen()
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect()
    }
}

impl Drop for TunnelProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn serve(
    c: TcpStream,
    kind: ProxyKind,
    to: u16,
    refuse: &str,
    seen: Arc<Mutex<Vec<Vec<u8>>>>,
) -> std::io::Result<()> {
    match kind {
        ProxyKind::Http => http(c, to, refuse, &seen).await,
        ProxyKind::Https(cfg) => {
            let tls = tokio_rustls::TlsAcceptor::from(cfg).accept(c).await?;
            http(tls, to, refuse, &seen).await
        }
        ProxyKind::Socks5 { user, pass } => socks5(c, to, refuse, user, pass, &seen).await,
    }
}

async fn http<S: AsyncRead + AsyncWrite + Unpin>(
    mut c: S,
    to: u16,
    refuse: &str,
    seen: &Mutex<Vec<Vec<u8>>>,
) -> std::io::Result<()> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(c.read_u8().await?);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    seen.lock().expect("lock").push(head);
    if text.starts_with(&format!("CONNECT {refuse} ")) {
        c.write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
            .await?;
        return c.shutdown().await;
    }
    let up = TcpStream::connect(("127.0.0.1", to)).await?;
    // Bare LF line ends for one target (Go's reader takes them).
    let ok: &[u8] = if text.starts_with("CONNECT 192.0.2.8:443 ") {
        b"HTTP/1.0 200 OK\n\n"
    } else {
        b"HTTP/1.1 200 Connection established\r\n\r\n"
    };
    c.write_all(ok).await?;
    pipe(c, up).await
}

async fn socks5(
    mut c: TcpStream,
    to: u16,
    refuse: &str,
    user: &[u8],
    pass: &[u8],
    seen: &Mutex<Vec<Vec<u8>>>,
) -> std::io::Result<()> {
    let mut got = Vec::new();
    let mut hello = [0u8; 2];
    c.read_exact(&mut hello).await?;
    let mut methods = vec![0u8; usize::from(hello[1])];
    c.read_exact(&mut methods).await?;
    got.extend_from_slice(&hello);
    got.extend_from_slice(&methods);
    let record = |got: &Vec<u8>| seen.lock().expect("lock").push(got.clone());
    if !user.is_empty() {
        if !methods.contains(&2) {
            record(&got);
            return c.write_all(&[5, 0xff]).await;
        }
        c.write_all(&[5, 2]).await?;
        let mut v = [0u8; 2];
        c.read_exact(&mut v).await?;
        let mut u = vec![0u8; usize::from(v[1])];
        c.read_exact(&mut u).await?;
        let plen = c.read_u8().await?;
        let mut p = vec![0u8; usize::from(plen)];
        c.read_exact(&mut p).await?;
        got.extend_from_slice(&v);
        got.extend_from_slice(&u);
        got.push(plen);
        got.extend_from_slice(&p);
        if u != user || p != pass {
            record(&got);
            return c.write_all(&[1, 1]).await;
        }
        c.write_all(&[1, 0]).await?;
    } else {
        c.write_all(&[5, 0]).await?;
    }
    let mut req = [0u8; 4];
    c.read_exact(&mut req).await?;
    got.extend_from_slice(&req);
    let ip: std::net::IpAddr = match req[3] {
        1 => {
            let mut a = [0u8; 4];
            c.read_exact(&mut a).await?;
            got.extend_from_slice(&a);
            a.into()
        }
        _ => {
            let mut a = [0u8; 16];
            c.read_exact(&mut a).await?;
            got.extend_from_slice(&a);
            a.into()
        }
    };
    let port = c.read_u16().await?;
    got.extend_from_slice(&port.to_be_bytes());
    record(&got);
    if std::net::SocketAddr::new(ip, port).to_string() == refuse {
        return c.write_all(&[5, 2, 0, 1, 0, 0, 0, 0, 0, 0]).await;
    }
    let up = TcpStream::connect(("127.0.0.1", to)).await?;
    let mut ok = vec![5, 0, 0, 1, 127, 0, 0, 1];
    ok.extend_from_slice(&up.local_addr()?.port().to_be_bytes());
    c.write_all(&ok).await?;
    pipe(c, up).await
}

async fn pipe<S: AsyncRead + AsyncWrite + Unpin>(
    mut c: S,
    mut up: TcpStream,
) -> std::io::Result<()> {
    tokio::io::copy_bidirectional(&mut c, &mut up)
        .await
        .map(|_| ())
}
