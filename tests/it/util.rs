//! Test harness: the daemon on a free port with a Corefile, real clients.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Backends every test runs on.
pub fn backends() -> Vec<&'static str> {
    let mut v = vec!["epoll"];
    if uring_usable() {
        v.push("uring");
    }
    v
}

/// Whether this build and kernel can run the io_uring backend.
pub fn uring_usable() -> bool {
    std::env::var("RINGDNS_TEST_URING").is_ok_and(|v| v == "1")
}

/// A free port for both UDP and TCP (wildcard, dual-stack), below the kernel's
/// ephemeral range when there is room: a port the kernel hands out to a client
/// socket (a `dig` of a test running in parallel) could otherwise be one a test
/// sends to as a dead upstream, and that client would read the test's query.
pub fn free_port() -> u16 {
    let first_ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(0);
    if first_ephemeral >= 12_000 {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let span = first_ephemeral - 10_000;
        let seed = std::process::id().wrapping_mul(2_654_435_761);
        for _ in 0..200 {
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let port = 10_000 + (seed.wrapping_add(n.wrapping_mul(7919)) % span);
            let Ok(port) = u16::try_from(port) else {
                continue;
            };
            let udp = UdpSocket::bind(("::", port)).or_else(|_| UdpSocket::bind(("0.0.0.0", port)));
            let tcp =
                TcpListener::bind(("::", port)).or_else(|_| TcpListener::bind(("0.0.0.0", port)));
            if udp.is_ok() && tcp.is_ok() {
                return port;
            }
        }
    }
    for _ in 0..100 {
        let u = UdpSocket::bind("[::]:0")
            .or_else(|_| UdpSocket::bind("0.0.0.0:0"))
            .expect("udp");
        let port = u.local_addr().expect("addr").port();
        let ok = TcpListener::bind(("::", port))
            .or_else(|_| TcpListener::bind(("0.0.0.0", port)))
            .is_ok();
        drop(u);
        if ok {
            return port;
        }
    }
    panic!("no free port");
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);
impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("ringdns-it-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("mkdir");
        Self(p)
    }
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        self.write_bytes(name, text.as_bytes())
    }

    pub fn write_bytes(&self, name: &str, b: &[u8]) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, b).expect("write");
        p
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running daemon.
pub struct TestServer {
    pub child: Child,
    pub port: u16,
    pub dir: TempDir,
    pub out: Arc<Mutex<Vec<String>>>,
    pub err: Arc<Mutex<String>>,
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ringdns")
}

impl TestServer {
    /// Starts with `corefile` where `{port}` is replaced by a free port.
    pub fn start(corefile: &str, backend: &str) -> Self {
        Self::start_args(corefile, backend, &[])
    }

    pub fn start_args(corefile: &str, backend: &str, extra: &[&str]) -> Self {
        Self::start_env(corefile, backend, extra, &[])
    }

    /// [`TestServer::start_args`] with extra environment variables.
    pub fn start_env(corefile: &str, backend: &str, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let dir = TempDir::new("srv");
        let text = corefile.replace("{port}", &port.to_string());
        let conf = dir.write("Corefile", &text);
        let mut cmd = Command::new(bin());
        cmd.arg("-conf")
            .arg(&conf)
            .args(extra)
            .current_dir(&dir.0)
            .env("RINGDNS_BACKEND", backend);
        // The machine's proxy settings never reach the daemon under test; a test
        // that wants some passes them.
        for v in ["HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"] {
            cmd.env_remove(v);
        }
        cmd.envs(env.iter().copied());
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::null());
        let mut child = cmd.spawn().expect("spawn ringdns");
        let out = Arc::new(Mutex::new(Vec::new()));
        let err = Arc::new(Mutex::new(String::new()));
        let so = child.stdout.take().expect("stdout");
        let se = child.stderr.take().expect("stderr");
        let o2 = Arc::clone(&out);
        std::thread::spawn(move || {
            for line in BufReader::new(so).lines().map_while(Result::ok) {
                o2.lock().expect("lock").push(line);
            }
        });
        let e2 = Arc::clone(&err);
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = BufReader::new(se).read_to_string(&mut s);
            e2.lock().expect("lock").push_str(&s);
        });
        let s = Self {
            child,
            port,
            dir,
            out,
            err,
        };
        s.wait_banner();
        s
    }

    fn wait_banner(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self
                .out
                .lock()
                .expect("lock")
                .iter()
                .any(|l| l.starts_with("CoreDNS-"))
            {
                return;
            }
            if !self.err.lock().expect("lock").is_empty() {
                panic!("server failed: {}", self.err.lock().expect("lock"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("server did not start: {:?}", self.out.lock().expect("lock"));
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Lines printed so far.
    pub fn lines(&self) -> Vec<String> {
        self.out.lock().expect("lock").clone()
    }

    /// Waits until a line matching `pred` appears.
    pub fn wait_line(&self, pred: impl Fn(&str) -> bool) -> Option<String> {
        self.wait_line_for(Duration::from_secs(5), pred)
    }

    /// Waits up to `limit` until a line matching `pred` appears.
    pub fn wait_line_for(&self, limit: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(l) = self.lines().into_iter().find(|l| pred(l)) {
                return Some(l);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), sig);
    }

    /// Waits for exit (bounded); returns the status code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// Sends a raw UDP datagram; returns the reply, if any, within `t`.
    pub fn udp_raw(&self, msg: &[u8], t: Duration) -> Option<Vec<u8>> {
        let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
        s.set_read_timeout(Some(t)).expect("timeout");
        s.send_to(msg, self.addr()).expect("send");
        let mut buf = vec![0u8; 65535];
        let n = s.recv(&mut buf).ok()?;
        buf.truncate(n);
        Some(buf)
    }

    /// Runs `dig @127.0.0.1 -p PORT args...`.
    pub fn dig(&self, args: &[&str]) -> String {
        let out = Command::new("dig")
            .arg("@127.0.0.1")
            .arg("-p")
            .arg(self.port.to_string())
            .args(["+time=2", "+tries=1"])
            .args(args)
            .output()
            .expect("dig (install bind9-dnsutils)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `kdig @127.0.0.1 -p PORT args...`.
    pub fn kdig(&self, args: &[&str]) -> String {
        let out = Command::new("kdig")
            .arg("@127.0.0.1")
            .arg("-p")
            .arg(self.port.to_string())
            .args(["+time=2", "+retry=0"])
            .args(args)
            .output()
            .expect("kdig (install knot-dnsutils)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// A query in wire format.
pub fn query(
    id: u16,
    name: &str,
    qtype: u16,
    qclass: u16,
    edns: Option<(u16, u16, &[u8])>,
) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&0x0100u16.to_be_bytes());
    m.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, u8::from(edns.is_some())]);
    for l in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        m.push(l.len() as u8);
        m.extend_from_slice(l.as_bytes());
    }
    m.push(0);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&qclass.to_be_bytes());
    if let Some((size, fl, opts)) = edns {
        m.push(0);
        m.extend_from_slice(&41u16.to_be_bytes());
        m.extend_from_slice(&size.to_be_bytes());
        m.extend_from_slice(&[0, 0]);
        m.extend_from_slice(&fl.to_be_bytes());
        m.extend_from_slice(&(opts.len() as u16).to_be_bytes());
        m.extend_from_slice(opts);
    }
    m
}

/// The lines of a dig answer between `;; ANSWER SECTION:` (etc.) markers, normalised.
pub fn section(dig: &str, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut on = false;
    for l in dig.lines() {
        if l.starts_with(";; ") && l.ends_with("SECTION:") {
            on = l.contains(name);
            continue;
        }
        if on {
            if l.trim().is_empty() {
                on = false;
                continue;
            }
            out.push(l.split_whitespace().collect::<Vec<_>>().join(" "));
        }
    }
    out
}

/// The flags line of dig output (`qr aa rd`).
pub fn dig_flags(dig: &str) -> String {
    dig.lines()
        .find_map(|l| {
            l.strip_prefix(";; flags: ")
                .map(|r| r.split(';').next().unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default()
}

/// The status of dig output.
pub fn dig_status(dig: &str) -> String {
    dig.lines()
        .find_map(|l| {
            l.split("status: ")
                .nth(1)
                .map(|r| r.split(',').next().unwrap_or("").to_owned())
        })
        .unwrap_or_default()
}

/// nsd serving `example.org` from the zone text `zone` on a free port (None
/// when nsd is not installed or does not answer within 10 s).
pub struct Nsd {
    child: Child,
    pub port: u16,
    _dir: TempDir,
}

impl Nsd {
    pub fn start(zone: &str) -> Option<Self> {
        let bin = ["/usr/sbin/nsd", "/usr/local/sbin/nsd"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())?;
        let dir = TempDir::new("nsd");
        let port = free_port();
        dir.write("example.org.zone", zone);
        let d = dir.0.display();
        let conf = format!(
            "server:\n  ip-address: 127.0.0.1@{port}\n  port: {port}\n  username: \"\"\n  zonesdir: \"{d}\"\n  pidfile: \"{d}/nsd.pid\"\n  database: \"\"\n  zonelistfile: \"{d}/zone.list\"\n  xfrdfile: \"{d}/xfrd.state\"\n  chroot: \"\"\n  server-count: 1\n  verbosity: 0\nremote-control:\n  control-enable: no\nzone:\n  name: example.org\n  zonefile: example.org.zone\n"
        );
        let c = dir.write("nsd.conf", &conf);
        let child = Command::new(bin)
            .args(["-d", "-c"])
            .arg(&c)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let n = Self {
            child,
            port,
            _dir: dir,
        };
        let q = query(1, "www.example.org", 1, 1, None);
        let ready = wait_for(Duration::from_secs(10), || {
            let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
            let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
            let _ = s.send_to(&q, ("127.0.0.1", port));
            s.recv(&mut [0u8; 512]).is_ok()
        });
        ready.then_some(n)
    }
}

impl Drop for Nsd {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        if !wait_for(Duration::from_secs(3), || {
            matches!(self.child.try_wait(), Ok(Some(_)))
        }) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Polls `f` until true or `limit` passes.
pub fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Replaces `path`'s content in one step (a write beside it, then a rename), so a poller
/// never reads a half-written file.
pub fn write_atomic(path: &std::path::Path, text: impl AsRef<[u8]>) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// One HTTP/1.1 request to 127.0.0.1:`port`: (status, head, body).
pub fn http(port: u16, method: &str, path: &str) -> Option<(u16, String, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let (head, body) = buf.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, head.to_owned(), body.to_owned()))
}

/// The text of `GET /metrics` on 127.0.0.1:`port` (empty when it does not answer).
pub fn scrape(port: u16) -> String {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
    let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.split_once("\r\n\r\n")
        .map(|x| x.1.to_owned())
        .unwrap_or_default()
}
