//! A dnstap sink's I/O: a bounded queue the workers fill, and a thread that writes
//! it out as Frame Streams (bidirectional: READY, ACCEPT, START, data frames, STOP,
//! FINISH; content type `protobuf:dnstap.Dnstap`), as golang-framestream's encoder
//! does for CoreDNS.
//!
//! * Outgoing (`dio`): one connection, buffered (4 KiB) and flushed every second;
//!   a write error drops the message and redials at once; every 10 s the dropped
//!   count is logged and a missing connection dialled again.
//! * Listening: readers connect and each gets every message, written and flushed
//!   as it comes; a reader whose write fails is dropped. The listening socket is
//!   kept across reloads that keep the endpoint (readers stay connected).

use std::collections::{HashMap, VecDeque};
use std::io::{self, BufWriter, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, ToSocketAddrs};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConnection, ServerConnection, StreamOwned};

use super::{Endpoint, SinkConfig};
use crate::clog;

/// The content type of every frame stream.
pub const CONTENT_TYPE: &[u8] = b"protobuf:dnstap.Dnstap";
/// Control frame types.
pub const ACCEPT: u32 = 1;
/// START.
pub const START: u32 = 2;
/// STOP.
pub const STOP: u32 = 3;
/// READY.
pub const READY: u32 = 4;
/// FINISH.
pub const FINISH: u32 = 5;

/// CoreDNS's `tcpTimeout`: dial, handshake and each write.
const IO_TIMEOUT: Duration = Duration::from_secs(4);
const FLUSH_EVERY: Duration = Duration::from_secs(1);
const CHECK_EVERY: Duration = Duration::from_secs(10);
/// CoreDNS's `queueSize`.
const QUEUE_UNIT: usize = 10_000;

/// A connection of either direction.
pub enum Stream {
    /// Unix socket.
    Unix(UnixStream),
    /// TCP.
    Tcp(TcpStream),
    /// TLS client.
    TlsClient(Box<StreamOwned<ClientConnection, TcpStream>>),
    /// TLS server (a reader connected to a listener).
    TlsServer(Box<StreamOwned<ServerConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Unix(s) => s.read(b),
            Self::Tcp(s) => s.read(b),
            Self::TlsClient(s) => s.read(b),
            Self::TlsServer(s) => s.read(b),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        match self {
            Self::Unix(s) => s.write(b),
            Self::Tcp(s) => s.write(b),
            Self::TlsClient(s) => s.write(b),
            Self::TlsServer(s) => s.write(b),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Unix(s) => s.flush(),
            Self::Tcp(s) => s.flush(),
            Self::TlsClient(s) => s.flush(),
            Self::TlsServer(s) => s.flush(),
        }
    }
}

impl Stream {
    fn set_timeouts(&self, t: Option<Duration>) {
        let _ = match self {
            Self::Unix(s) => s.set_read_timeout(t).and_then(|()| s.set_write_timeout(t)),
            Self::Tcp(s) => s.set_read_timeout(t).and_then(|()| s.set_write_timeout(t)),
            Self::TlsClient(s) => s
                .sock
                .set_read_timeout(t)
                .and_then(|()| s.sock.set_write_timeout(t)),
            Self::TlsServer(s) => s
                .sock
                .set_read_timeout(t)
                .and_then(|()| s.sock.set_write_timeout(t)),
        };
    }

    fn shutdown(&mut self) {
        let _ = match self {
            Self::Unix(s) => s.shutdown(Shutdown::Both),
            Self::Tcp(s) => s.shutdown(Shutdown::Both),
            Self::TlsClient(s) => {
                s.conn.send_close_notify();
                let _ = s.conn.complete_io(&mut s.sock);
                s.sock.shutdown(Shutdown::Both)
            }
            Self::TlsServer(s) => {
                s.conn.send_close_notify();
                let _ = s.conn.complete_io(&mut s.sock);
                s.sock.shutdown(Shutdown::Both)
            }
        };
    }
}

/// Writes a control frame (escape, length, type, the content type field if given).
pub fn write_control(w: &mut impl Write, kind: u32, content_type: bool) -> io::Result<()> {
    let mut f = Vec::with_capacity(12 + 8 + CONTENT_TYPE.len());
    let body = if content_type {
        4 + 8 + CONTENT_TYPE.len()
    } else {
        4
    };
    f.extend_from_slice(&0u32.to_be_bytes());
    f.extend_from_slice(&(body as u32).to_be_bytes());
    f.extend_from_slice(&kind.to_be_bytes());
    if content_type {
        f.extend_from_slice(&1u32.to_be_bytes());
        f.extend_from_slice(&(CONTENT_TYPE.len() as u32).to_be_bytes());
        f.extend_from_slice(CONTENT_TYPE);
    }
    w.write_all(&f)
}

/// Reads a control frame: its type and content types.
pub fn read_control(r: &mut impl Read) -> io::Result<(u32, Vec<Vec<u8>>)> {
    let mut h = [0u8; 4];
    r.read_exact(&mut h)?;
    if h != [0, 0, 0, 0] {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "fstrm: expected a control frame",
        ));
    }
    read_control_body(r)
}

/// Reads a control frame after its escape (the zero length).
pub fn read_control_body(r: &mut impl Read) -> io::Result<(u32, Vec<Vec<u8>>)> {
    let mut h = [0u8; 4];
    r.read_exact(&mut h)?;
    let bad = |t: &str| io::Error::new(io::ErrorKind::InvalidData, t.to_owned());
    let len = u32::from_be_bytes(h) as usize;
    if !(4..=512).contains(&len) {
        return Err(bad("fstrm: control frame too large"));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    let kind = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
    let mut types = Vec::new();
    let mut p = 4;
    while p + 8 <= body.len() {
        let ft = u32::from_be_bytes([body[p], body[p + 1], body[p + 2], body[p + 3]]);
        let fl = u32::from_be_bytes([body[p + 4], body[p + 5], body[p + 6], body[p + 7]]) as usize;
        p += 8;
        let Some(v) = body.get(p..p + fl) else {
            return Err(bad("fstrm: bad control field"));
        };
        if ft == 1 {
            types.push(v.to_vec());
        }
        p += fl;
    }
    Ok((kind, types))
}

/// The writer's side of the bidirectional handshake.
fn handshake(s: &mut Stream) -> io::Result<()> {
    write_control(s, READY, true)?;
    s.flush()?;
    let (kind, types) = read_control(s)?;
    if kind != ACCEPT {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "fstrm: expected ACCEPT",
        ));
    }
    if !types.is_empty() && !types.iter().any(|t| t == CONTENT_TYPE) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "fstrm: content type mismatch",
        ));
    }
    write_control(s, START, true)?;
    s.flush()
}

/// An open frame stream (golang-framestream's `Encoder`).
struct Encoder {
    w: BufWriter<Stream>,
}

impl Encoder {
    fn new(mut s: Stream) -> io::Result<Self> {
        s.set_timeouts(Some(IO_TIMEOUT));
        if let Err(e) = handshake(&mut s) {
            s.shutdown();
            return Err(e);
        }
        Ok(Self {
            w: BufWriter::with_capacity(4096, s),
        })
    }

    fn write(&mut self, payload: &[u8]) -> io::Result<()> {
        self.w.write_all(&(payload.len() as u32).to_be_bytes())?;
        self.w.write_all(payload)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }

    /// STOP, then FINISH from the reader, then close.
    fn close(mut self) {
        let _ = write_control(&mut self.w, STOP, false).and_then(|()| self.w.flush());
        let s = self.w.get_mut();
        let _ = read_control(s);
        s.shutdown();
    }
}

/// Go's text for a failed dial.
fn dial_err(net: &str, addr: &str, e: &io::Error) -> String {
    format!(
        "dial {net} {addr}: {}",
        crate::plugins::forward::proxy::go_op_err("connect", e)
    )
}

/// Go's `net.Dial("tcp", addr)` within [`IO_TIMEOUT`] overall; `tune` sets what
/// CoreDNS sets on a plain TCP connection (not on TLS): the send buffer
/// (`write_buf` MiB) and Nagle on.
fn connect_tcp(addr: &str, write_buf: usize, tune: bool) -> Result<TcpStream, String> {
    if addr.is_empty() {
        return Err("dial tcp: missing address".into());
    }
    // An empty host is the local system, as Go dials it.
    let target = match addr.strip_prefix(':') {
        Some(port) => format!("127.0.0.1:{port}"),
        None => addr.to_owned(),
    };
    let addrs: Vec<_> = match target.to_socket_addrs() {
        Ok(a) => a.collect(),
        Err(e) => {
            let text = if addr.rsplit_once(':').is_none() || addr.ends_with(']') {
                format!("address {addr}: missing port in address")
            } else {
                let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
                let _ = e;
                format!("lookup {host}: no such host")
            };
            return Err(format!("dial tcp: {text}"));
        }
    };
    let deadline = Instant::now() + IO_TIMEOUT;
    let mut last = String::from("dial tcp: no addresses");
    for a in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match TcpStream::connect_timeout(&a, left) {
            Ok(s) => {
                if tune {
                    let sock = socket2::SockRef::from(&s);
                    let _ = sock.set_send_buffer_size(write_buf << 20);
                    let _ = s.set_nodelay(false);
                }
                return Ok(s);
            }
            Err(e) => last = dial_err("tcp", &a.to_string(), &e),
        }
    }
    Err(last)
}

/// Accepts any certificate (`skipverify`), checking only the handshake signatures.
#[derive(Debug)]
struct SkipVerify(rustls::crypto::WebPkiSupportedAlgorithms);

impl rustls::client::danger::ServerCertVerifier for SkipVerify {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_schemes()
    }
}

fn tls_client(skip_verify: bool) -> Result<Arc<rustls::ClientConfig>, String> {
    if !skip_verify {
        return crate::plugins::forward::tls::client_config(&[]);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let algs = provider.signature_verification_algorithms;
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(SkipVerify(algs)))
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// Completes a TLS handshake (either side) within the I/O timeout, with Go's texts.
fn tls_handshake<C, S>(conn: C, tcp: TcpStream) -> Result<StreamOwned<C, TcpStream>, String>
where
    C: std::ops::DerefMut<Target = rustls::ConnectionCommon<S>>,
    S: rustls::SideData,
{
    let mut st = StreamOwned::new(conn, tcp);
    st.sock.set_read_timeout(Some(IO_TIMEOUT)).ok();
    st.sock.set_write_timeout(Some(IO_TIMEOUT)).ok();
    while st.conn.is_handshaking() {
        st.conn
            .complete_io(&mut st.sock)
            .map_err(|e| crate::plugins::forward::tls::handshake_err(&e))?;
    }
    Ok(st)
}

/// One outgoing connection's settings.
struct Dialer {
    endpoint: Endpoint,
    write_buf: usize,
    skip_verify: bool,
}

impl Dialer {
    fn dial(&self) -> Result<Encoder, String> {
        let s = match &self.endpoint {
            Endpoint::Unix(p) => {
                Stream::Unix(UnixStream::connect(p).map_err(|e| dial_err("unix", p, &e))?)
            }
            Endpoint::Tcp(a) => Stream::Tcp(connect_tcp(a, self.write_buf, true)?),
            Endpoint::Tls(a) => {
                let tcp = connect_tcp(a, self.write_buf, false)?;
                let host = a.rsplit_once(':').map_or(a.as_str(), |(h, _)| h);
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let name = ServerName::try_from(host.to_owned())
                    .map_err(|_| format!("tls: invalid server name {host:?}"))?;
                let cfg = tls_client(self.skip_verify)?;
                let conn = ClientConnection::new(cfg, name).map_err(|e| format!("tls: {e}"))?;
                Stream::TlsClient(Box::new(tls_handshake(conn, tcp)?))
            }
        };
        Encoder::new(s).map_err(|e| e.to_string())
    }
}

/// The queue between the workers and a sink's thread.
struct Queue {
    q: Mutex<VecDeque<Vec<u8>>>,
    cv: Condvar,
    cap: usize,
    closed: AtomicBool,
    dropped: AtomicU32,
}

/// A sink: its queue and thread. Dropping it closes the sink.
pub struct Sink {
    queue: Arc<Queue>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Sink {
    /// Starts the sink of `c`: an outgoing sink dials now and logs a failure (as
    /// CoreDNS's `OnStartup`); a listener binds now (or takes over the listener of
    /// the configuration it replaces).
    pub fn start(c: &SinkConfig) -> Self {
        let queue = Arc::new(Queue {
            q: Mutex::new(VecDeque::new()),
            cv: Condvar::new(),
            cap: c.queue.saturating_mul(QUEUE_UNIT),
            closed: AtomicBool::new(false),
            dropped: AtomicU32::new(0),
        });
        let q = Arc::clone(&queue);
        let thread = if c.listen {
            let l = listener(c);
            std::thread::Builder::new()
                .name("ringdns-dnstap".into())
                .spawn(move || broadcast(&q, l.as_deref()))
        } else {
            let d = Dialer {
                endpoint: c.endpoint.clone(),
                write_buf: c.write_buf,
                skip_verify: c.skip_verify,
            };
            let enc = match d.dial() {
                Ok(e) => Some(e),
                Err(e) => {
                    clog::log(
                        clog::Level::Error,
                        Some("dnstap"),
                        &format!("No connection to dnstap endpoint: {e}"),
                    );
                    None
                }
            };
            std::thread::Builder::new()
                .name("ringdns-dnstap".into())
                .spawn(move || serve(&q, &d, enc))
        };
        Self {
            queue,
            thread: Mutex::new(thread.ok()),
        }
    }

    /// Queues a message; drops it (counted) when the queue is full.
    pub fn send(&self, payload: Vec<u8>) {
        let mut q = lock(&self.queue.q);
        if q.len() >= self.queue.cap || self.queue.closed.load(Ordering::Relaxed) {
            self.queue.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        q.push_back(payload);
        let first = q.len() == 1;
        drop(q);
        if first {
            self.queue.cv.notify_one();
        }
    }

    /// Messages waiting in the queue.
    pub fn queued(&self) -> usize {
        lock(&self.queue.q).len()
    }

    /// Messages dropped and not yet reported.
    pub fn dropped(&self) -> u32 {
        self.queue.dropped.load(Ordering::Relaxed)
    }

    /// Starts closing: what is queued is written, then the stream is closed (STOP,
    /// FINISH) by the sink's thread.
    pub fn begin_close(&self) {
        self.queue.close();
    }

    /// Waits (up to 8 s) for the sink's thread after [`Self::begin_close`].
    pub fn wait_closed(&self) {
        let t = lock(&self.thread).take();
        if let Some(t) = t {
            let deadline = Instant::now() + 2 * IO_TIMEOUT;
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    /// Flushes what is queued, closes the stream and waits for the thread.
    pub fn close(&self) {
        self.begin_close();
        self.wait_closed();
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.queue.close();
    }
}

impl Queue {
    /// Marks the queue closed under its lock, so the thread cannot miss the wake-up.
    fn close(&self) {
        let g = lock(&self.q);
        self.closed.store(true, Ordering::Relaxed);
        drop(g);
        self.cv.notify_all();
    }
}

/// Dials `c`'s endpoint once (tests): the error text CoreDNS logs.
pub fn dial_text(c: &SinkConfig) -> Result<(), String> {
    Dialer {
        endpoint: c.endpoint.clone(),
        write_buf: c.write_buf,
        skip_verify: c.skip_verify,
    }
    .dial()
    .map(Encoder::close)
}

/// Takes what is queued, waiting until `until` for something.
fn take(q: &Queue, until: Instant) -> (Vec<Vec<u8>>, bool) {
    let mut g = lock(&q.q);
    loop {
        let closed = q.closed.load(Ordering::Relaxed);
        if !g.is_empty() || closed {
            let batch: Vec<Vec<u8>> = g.drain(..).collect();
            // A burst's room is given back.
            if g.capacity() > 4096 {
                g.shrink_to(4096);
            }
            return (batch, closed);
        }
        let now = Instant::now();
        if now >= until {
            return (Vec::new(), false);
        }
        g = match q.cv.wait_timeout(g, until - now) {
            Ok((g, _)) => g,
            Err(p) => p.into_inner().0,
        };
    }
}

fn report_dropped(q: &Queue) {
    let n = q.dropped.swap(0, Ordering::Relaxed);
    if n > 0 {
        clog::log(
            clog::Level::Warning,
            Some("dnstap"),
            &format!("Dropped dnstap messages: {n}"),
        );
    }
}

/// Drops a broken stream without writing its buffer again.
fn discard(e: Encoder) {
    let (mut s, _) = e.w.into_parts();
    s.shutdown();
}

/// The outgoing sink's loop (CoreDNS `dio.serve`).
fn serve(q: &Queue, d: &Dialer, mut enc: Option<Encoder>) {
    let mut next_flush = Instant::now() + FLUSH_EVERY;
    let mut next_check = Instant::now() + CHECK_EVERY;
    loop {
        let (batch, closed) = take(q, next_flush.min(next_check));
        for p in batch {
            let ok = match enc.as_mut() {
                Some(e) => e.write(&p).is_ok(),
                None => false,
            };
            if !ok {
                q.dropped.fetch_add(1, Ordering::Relaxed);
                // A failed write (not a missing connection) redials at once.
                if let Some(old) = enc.take() {
                    discard(old);
                    enc = d.dial().ok();
                }
            }
        }
        if closed {
            if let Some(mut e) = enc.take() {
                if e.flush().is_ok() {
                    e.close();
                } else {
                    discard(e);
                }
            }
            return;
        }
        let now = Instant::now();
        if now >= next_flush {
            // Go ignores a flush error; the next write fails and redials. The
            // buffered messages are lost either way.
            if let Some(mut e) = enc.take() {
                if e.flush().is_ok() {
                    enc = Some(e);
                } else {
                    discard(e);
                    enc = d.dial().ok();
                }
            }
            next_flush = now + FLUSH_EVERY;
        }
        if now >= next_check {
            report_dropped(q);
            if enc.is_none() {
                enc = d.dial().ok();
            }
            next_check = now + CHECK_EVERY;
        }
    }
}

/// The configuration generation being built: a listen endpoint claimed twice in
/// one generation fails as a second bind does; one claimed by an older
/// generation is taken over (a reload keeps the socket and its readers).
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// Starts a configuration generation (each configuration build).
pub fn next_generation() {
    GENERATION.fetch_add(1, Ordering::Relaxed);
}

/// A listening endpoint and its connected readers.
pub struct Listener {
    key: String,
    clients: Mutex<Vec<Encoder>>,
    stop: AtomicBool,
    /// The TLS settings new readers get (a reload may change them).
    tls: Mutex<Option<Arc<rustls::ServerConfig>>>,
    /// The generation that last claimed it.
    generation: AtomicU64,
    /// Unix socket path to remove when closed.
    path: Option<String>,
}

fn registry() -> &'static Mutex<HashMap<String, Weak<Listener>>> {
    static R: OnceLock<Mutex<HashMap<String, Weak<Listener>>>> = OnceLock::new();
    R.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The socket an endpoint listens on: `tcp://` and `tls://` on one address are
/// the same socket.
fn socket_key(e: &Endpoint) -> String {
    match e {
        Endpoint::Unix(p) => format!("unix:{p}"),
        Endpoint::Tcp(a) | Endpoint::Tls(a) => format!("tcp:{a}"),
    }
}

/// `tls CERT KEY [CA]` of a `listen tls://` sink (CoreDNS's `listen`): without a CA
/// no client certificate is asked for; with one it is required and verified, or
/// verified when given (`skipverify`). Errors are logged as CoreDNS logs them.
fn listener_tls(c: &SinkConfig) -> Result<Option<Arc<rustls::ServerConfig>>, ()> {
    match (&c.endpoint, &c.tls) {
        (Endpoint::Tls(_), None) => {
            clog::log(
                clog::Level::Warning,
                Some("dnstap"),
                "TLS listener requires cert and key files",
            );
            Err(())
        }
        (Endpoint::Tls(_), Some(args)) => {
            let mode = match (args.len() > 2, c.skip_verify) {
                (false, _) => crate::plugins::tls::ClientAuth::NoCert,
                (true, true) => crate::plugins::tls::ClientAuth::VerifyIfGiven,
                (true, false) => crate::plugins::tls::ClientAuth::RequireAndVerify,
            };
            match crate::plugins::tls::server_config(args, mode) {
                Ok(cfg) => Ok(Some(Arc::new(cfg))),
                Err(e) => {
                    listen_failed(&e);
                    Err(())
                }
            }
        }
        _ => Ok(None),
    }
}

fn listen_failed(e: &str) {
    clog::log(
        clog::Level::Error,
        Some("dnstap"),
        &format!("Failed to start dnstap listener: {e}"),
    );
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// The listener of `c`'s endpoint: the running one if an older configuration
/// still holds it (with `c`'s TLS settings from now on), else a new one. Errors are
/// logged as CoreDNS logs them, and the sink then has no listener.
fn listener(c: &SinkConfig) -> Option<Arc<Listener>> {
    let key = socket_key(&c.endpoint);
    let tls = listener_tls(c).ok()?;
    let generation = GENERATION.load(Ordering::Relaxed);
    let (net, addr) = match &c.endpoint {
        Endpoint::Unix(p) => ("unix", p.clone()),
        Endpoint::Tcp(a) | Endpoint::Tls(a) => ("tcp", a.clone()),
    };
    let mut reg = lock(registry());
    if let Some(l) = reg.get(&key).and_then(Weak::upgrade) {
        // Released first: dropping `l` may end the listener, whose drop takes it.
        drop(reg);
        if l.generation.swap(generation, Ordering::Relaxed) == generation {
            // Twice in one configuration: the second bind fails, as in Go.
            listen_failed(&format!(
                "listen {net} {addr}: bind: address already in use"
            ));
            return None;
        }
        *lock(&l.tls) = tls;
        return Some(l);
    }
    enum Sock {
        Unix(UnixListener),
        Tcp(TcpListener),
    }
    let bound = match &c.endpoint {
        Endpoint::Unix(p) => UnixListener::bind(p).map(Sock::Unix),
        Endpoint::Tcp(a) | Endpoint::Tls(a) => {
            // An empty host listens on every address, as Go does.
            let a = match a.strip_prefix(':') {
                Some(port) => format!("[::]:{port}"),
                None => a.clone(),
            };
            TcpListener::bind(a.as_str()).map(Sock::Tcp)
        }
    };
    let sock = match bound {
        Ok(s) => s,
        Err(e) => {
            listen_failed(&format!(
                "listen {net} {addr}: {}",
                crate::plugins::forward::proxy::go_op_err("bind", &e)
            ));
            return None;
        }
    };
    let nonblocking = match &sock {
        Sock::Unix(u) => u.set_nonblocking(true),
        Sock::Tcp(t) => t.set_nonblocking(true),
    };
    if let Err(e) = nonblocking {
        listen_failed(&e.to_string());
        return None;
    }
    let l = Arc::new(Listener {
        key: key.clone(),
        clients: Mutex::new(Vec::new()),
        stop: AtomicBool::new(false),
        tls: Mutex::new(tls),
        generation: AtomicU64::new(generation),
        path: matches!(c.endpoint, Endpoint::Unix(_)).then_some(addr),
    });
    reg.insert(key, Arc::downgrade(&l));
    let weak = Arc::downgrade(&l);
    // The accept loop polls (100 ms) so that it ends, releasing the socket, once
    // the listener is gone.
    let _ = std::thread::Builder::new()
        .name("ringdns-dnstap-accept".into())
        .spawn(move || {
            loop {
                let accepted = match &sock {
                    Sock::Unix(u) => u.accept().map(|(s, _)| Stream::Unix(s)),
                    Sock::Tcp(t) => t.accept().map(|(s, _)| Stream::Tcp(s)),
                };
                let Some(l) = weak.upgrade() else { return };
                if l.stop.load(Ordering::Relaxed) {
                    return;
                }
                let s = match accepted {
                    Ok(s) => s,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        drop(l);
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                    Err(e) => {
                        clog::log(
                            clog::Level::Warning,
                            Some("dnstap"),
                            &format!("Error accepting dnstap connection: {e}"),
                        );
                        drop(l);
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                };
                match l.reader(s) {
                    Ok(e) => lock(&l.clients).push(e),
                    Err(e) => clog::log(
                        clog::Level::Warning,
                        Some("dnstap"),
                        &format!("Error creating encoder for dnstap client: {e}"),
                    ),
                }
            }
        });
    Some(l)
}

impl Listener {
    /// An accepted reader: TLS (if set), then the writer's handshake.
    fn reader(&self, s: Stream) -> Result<Encoder, String> {
        let s = match s {
            Stream::Unix(u) => {
                let _ = u.set_nonblocking(false);
                Stream::Unix(u)
            }
            Stream::Tcp(t) => {
                let _ = t.set_nonblocking(false);
                let tls = lock(&self.tls).clone();
                match tls {
                    None => {
                        // CoreDNS: SetNoDelay(false) on a plain TCP reader.
                        let _ = t.set_nodelay(false);
                        Stream::Tcp(t)
                    }
                    Some(cfg) => {
                        let conn = ServerConnection::new(cfg).map_err(|e| format!("tls: {e}"))?;
                        Stream::TlsServer(Box::new(tls_handshake(conn, t)?))
                    }
                }
            }
            other => other,
        };
        Encoder::new(s).map_err(|e| e.to_string())
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        {
            let mut reg = lock(registry());
            if reg.get(&self.key).is_some_and(|w| w.strong_count() == 0) {
                reg.remove(&self.key);
            }
        }
        let clients = match self.clients.get_mut() {
            Ok(c) => std::mem::take(c),
            Err(p) => std::mem::take(p.into_inner()),
        };
        for mut c in clients {
            if c.flush().is_ok() {
                c.close();
            } else {
                discard(c);
            }
        }
        if let Some(p) = &self.path {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// The listening sink's loop: every message to every reader.
fn broadcast(q: &Queue, l: Option<&Listener>) {
    let mut next_check = Instant::now() + CHECK_EVERY;
    loop {
        let (batch, closed) = take(q, next_check);
        if let (Some(l), false) = (l, batch.is_empty()) {
            let mut clients = lock(&l.clients);
            let mut i = 0;
            while i < clients.len() {
                let c = &mut clients[i];
                let ok = batch.iter().all(|p| c.write(p).is_ok()) && c.flush().is_ok();
                if ok {
                    i += 1;
                } else {
                    discard(clients.swap_remove(i));
                }
            }
        }
        if closed {
            return;
        }
        if Instant::now() >= next_check {
            report_dropped(q);
            next_check = Instant::now() + CHECK_EVERY;
        }
    }
}
