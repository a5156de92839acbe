//! *dnstap*: setup (Corefile → CoreDNS 1.14.7's errors or the sink settings), the
//! protobuf encoding, and the Frame Streams sink against an in-test reader.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant, UNIX_EPOCH};

use super::Field as V;
use super::sink::{self, ACCEPT, FINISH, READY, START, STOP};
use super::*;
use crate::config::tests::{build_str, err};
use crate::plugins::PluginConfig;

fn sinks(body: &str) -> Vec<SinkConfig> {
    let c = build_str(&format!(".:53 {{\n{body}\n whoami\n}}")).expect("config");
    c.blocks[0]
        .plugins
        .iter()
        .find_map(|p| match p {
            PluginConfig::Dnstap(d) => Some(d.sinks.clone()),
            _ => None,
        })
        .expect("dnstap")
}

#[test]
fn setup_table() {
    let block = |body: &str| format!(".:53 {{\n{body}\n whoami\n}}");
    let pre = "plugin/dnstap: Corefile:2 - Error during parsing: ";
    let cases: &[(&str, String)] = &[
        ("dnstap /tmp/x.sock", "ok".into()),
        ("dnstap unix:///tmp/x.sock full 2 3", "ok".into()),
        ("dnstap tcp://127.0.0.1:6000 { \n skipverify\n}", "ok".into()),
        ("dnstap listen tls://127.0.0.1:6000 {\n tls a b c d\n}", "ok".into()),
        (
            "dnstap",
            format!("{pre}Wrong argument count or unexpected line ending after 'dnstap'"),
        ),
        (
            "dnstap listen",
            format!("{pre}dnstap listen requires an endpoint argument"),
        ),
        (
            "dnstap /tmp/x full x",
            format!(
                "{pre}dnstap: invalid MultipleTcpWriteBuf \"x\": strconv.Atoi: parsing \"x\": invalid syntax"
            ),
        ),
        (
            "dnstap /tmp/x full 0",
            format!("{pre}dnstap: MultipleTcpWriteBuf must be between 1 and 1024 (MiB units): 0"),
        ),
        (
            "dnstap /tmp/x full 1025",
            format!(
                "{pre}dnstap: MultipleTcpWriteBuf must be between 1 and 1024 (MiB units): 1025"
            ),
        ),
        (
            "dnstap /tmp/x full 1 4097",
            format!("{pre}dnstap: MultipleQueue must be between 1 and 4096 (x10k messages): 4097"),
        ),
        (
            "dnstap /tmp/x full 1 y",
            format!(
                "{pre}dnstap: invalid MultipleQueue \"y\": strconv.Atoi: parsing \"y\": invalid syntax"
            ),
        ),
        (
            "dnstap tcp://127.0.0.1:x",
            format!(
                "{pre}Wrong argument count or unexpected line ending after 'tcp://127.0.0.1:x'"
            ),
        ),
        (
            "dnstap tls://[::1:6000 full",
            format!("{pre}Wrong argument count or unexpected line ending after 'full'"),
        ),
        (
            "dnstap /tmp/x {\n tls a b\n}",
            "plugin/dnstap: Corefile:3 - Error during parsing: tls directive only valid for listeners".into(),
        ),
        (
            "dnstap listen /tmp/x {\n tls a\n}",
            "plugin/dnstap: Corefile:3 - Error during parsing: tls requires cert and key file paths".into(),
        ),
        (
            "dnstap /tmp/x {\n identity\n}",
            "plugin/dnstap: Corefile:3 - Error during parsing: Wrong argument count or unexpected line ending after 'identity'".into(),
        ),
        (
            "dnstap /tmp/x {\n bogus\n}",
            "plugin/dnstap: Corefile:3 - Error during parsing: unknown property 'bogus'".into(),
        ),
        (
            // A second argument on the line is read as the next property (caddy's
            // NextBlock walks tokens, not lines).
            "dnstap /tmp/x {\n version a b\n}",
            "plugin/dnstap: Corefile:3 - Error during parsing: unknown property 'b'".into(),
        ),
    ];
    for (body, want) in cases {
        assert_eq!(&err(&block(body)), want, "{body}");
    }
}

#[test]
fn setup_values() {
    let s = sinks(
        "dnstap /tmp/a.sock\n dnstap listen tcp://127.0.0.1:6000 full 3 4 {\n identity me\n version v1\n extra \"x {type}\"\n skipverify\n}\n dnstap tls://u@example.com:6000 nofull",
    );
    assert_eq!(s.len(), 3);
    assert_eq!(s[0].endpoint, Endpoint::Unix("/tmp/a.sock".into()));
    assert!(!s[0].full && !s[0].listen);
    assert_eq!((s[0].write_buf, s[0].queue), (1, 1));
    assert_eq!(s[0].version, "CoreDNS-1.14.7");
    assert_eq!(s[0].identity, hostname());
    assert_eq!(s[0].extra, None);
    assert_eq!(s[1].endpoint, Endpoint::Tcp("127.0.0.1:6000".into()));
    assert!(s[1].full && s[1].listen && s[1].skip_verify);
    assert_eq!((s[1].write_buf, s[1].queue), (3, 4));
    assert_eq!(
        (s[1].identity.as_str(), s[1].version.as_str()),
        ("me", "v1")
    );
    assert_eq!(s[1].extra.as_deref(), Some("x {type}"));
    // Any second argument but `full` leaves the raw messages out.
    assert_eq!(s[2].endpoint, Endpoint::Tls("example.com:6000".into()));
    assert!(!s[2].full);
}

fn decode(b: &[u8]) -> Vec<(u32, V)> {
    super::decode(b).expect("protobuf")
}

#[test]
fn message_fields_in_number_order() {
    let t = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
    let m = Message {
        kind: Kind::ForwarderResponse,
        tcp: true,
        query_addr: Some("127.0.0.1:5300".parse().expect("addr")),
        response_addr: Some("[2001:db8::1]:53".parse().expect("addr")),
        query_time: t,
        response_time: Some(t + Duration::from_millis(2)),
        query_msg: None,
        response_msg: Some(b"reply"),
    };
    let mut out = Vec::new();
    m.encode(&mut out);
    let f = decode(&out);
    let want = vec![
        (1, V::Int(8)),
        // The response address is set last: its family (INET6) wins.
        (2, V::Int(2)),
        (3, V::Int(2)),
        (4, V::Bytes(vec![127, 0, 0, 1])),
        (
            5,
            V::Bytes(
                "2001:db8::1"
                    .parse::<std::net::Ipv6Addr>()
                    .expect("ip")
                    .octets()
                    .to_vec(),
            ),
        ),
        (6, V::Int(5300)),
        (7, V::Int(53)),
        (8, V::Int(1_700_000_000)),
        (9, V::Fixed(123_456_789)),
        (12, V::Int(1_700_000_000)),
        (13, V::Fixed(125_456_789)),
        (14, V::Bytes(b"reply".to_vec())),
    ];
    assert_eq!(f, want);
    // A client query over UDP from an IPv4-mapped address: INET, 4 octets, no
    // response fields.
    let m = Message {
        kind: Kind::ClientQuery,
        tcp: false,
        query_addr: Some("[::ffff:10.0.0.1]:4000".parse().expect("addr")),
        response_addr: None,
        query_time: t,
        response_time: None,
        query_msg: Some(b"q"),
        response_msg: None,
    };
    let mut out = Vec::new();
    m.encode(&mut out);
    assert_eq!(
        decode(&out),
        vec![
            (1, V::Int(5)),
            (2, V::Int(1)),
            (3, V::Int(1)),
            (4, V::Bytes(vec![10, 0, 0, 1])),
            (6, V::Int(4000)),
            (8, V::Int(1_700_000_000)),
            (9, V::Fixed(123_456_789)),
            (10, V::Bytes(b"q".to_vec())),
        ]
    );
}

/// An in-test Frame Streams reader on a Unix socket: the reader's half of the
/// bidirectional handshake, then every data frame until STOP (answered with FINISH).
struct Reader {
    path: std::path::PathBuf,
    frames: std::sync::mpsc::Receiver<Vec<u8>>,
    done: std::sync::mpsc::Receiver<()>,
}

fn read_frames(mut s: UnixStream, tx: &std::sync::mpsc::Sender<Vec<u8>>, per_conn: usize) {
    let (kind, types) = sink::read_control(&mut s).expect("READY");
    assert_eq!(kind, READY);
    assert_eq!(types, vec![sink::CONTENT_TYPE.to_vec()]);
    sink::write_control(&mut s, ACCEPT, true).expect("ACCEPT");
    let (kind, _) = sink::read_control(&mut s).expect("START");
    assert_eq!(kind, START);
    for _ in 0..per_conn {
        let mut len = [0u8; 4];
        if s.read_exact(&mut len).is_err() {
            return;
        }
        let n = u32::from_be_bytes(len) as usize;
        if n == 0 {
            let (kind, _) = sink::read_control_body(&mut s).expect("control");
            assert_eq!(kind, STOP);
            sink::write_control(&mut s, FINISH, false).expect("FINISH");
            let _ = s.flush();
            return;
        }
        let mut f = vec![0u8; n];
        s.read_exact(&mut f).expect("frame");
        if tx.send(f).is_err() {
            return;
        }
    }
}

impl Reader {
    /// Accepts up to `conns` connections in turn, each closed after `per_conn` frames.
    fn start(tag: &str, conns: usize, per_conn: usize) -> Self {
        let path =
            std::env::temp_dir().join(format!("ringdns-dnstap-{tag}-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let l = UnixListener::bind(&path).expect("bind");
        let (tx, frames) = std::sync::mpsc::channel();
        let (dtx, done) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for _ in 0..conns {
                let Ok((s, _)) = l.accept() else { return };
                read_frames(s, &tx, per_conn);
                let _ = dtx.send(());
            }
        });
        Self { path, frames, done }
    }

    fn next(&self) -> Option<Vec<u8>> {
        self.frames.recv_timeout(Duration::from_secs(5)).ok()
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn config(path: &std::path::Path) -> SinkConfig {
    SinkConfig {
        endpoint: Endpoint::Unix(path.to_string_lossy().into_owned()),
        listen: false,
        full: true,
        write_buf: 1,
        queue: 1,
        identity: "id".into(),
        version: "ver".into(),
        extra: None,
        skip_verify: false,
        tls: None,
    }
}

#[test]
fn sink_handshake_frames_and_close() {
    let r = Reader::start("frames", 1, usize::MAX);
    let s = sink::Sink::start(&config(&r.path));
    for i in 0..3u8 {
        s.send(vec![i; 10]);
    }
    // Flushed within the second.
    let t0 = Instant::now();
    for i in 0..3u8 {
        assert_eq!(r.next(), Some(vec![i; 10]));
    }
    assert!(t0.elapsed() < Duration::from_secs(3));
    // Closing sends STOP and waits for FINISH.
    s.send(vec![9; 3]);
    s.close();
    assert_eq!(r.next(), Some(vec![9; 3]));
    r.done
        .recv_timeout(Duration::from_secs(5))
        .expect("STOP/FINISH");
}

#[test]
fn sink_redials_after_the_reader_goes() {
    let r = Reader::start("redial", 2, 1);
    let s = sink::Sink::start(&config(&r.path));
    s.send(b"one".to_vec());
    assert_eq!(r.next().as_deref(), Some(&b"one"[..]));
    // The reader closed the connection after that frame and waits for another. The
    // next flush fails (those messages are lost, as CoreDNS loses them), the sink
    // redials, and later messages reach the new connection.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut got = None;
    while Instant::now() < deadline && got.is_none() {
        s.send(b"two".to_vec());
        std::thread::sleep(Duration::from_millis(300));
        got = r.frames.try_recv().ok();
    }
    assert_eq!(got.as_deref(), Some(&b"two"[..]));
    drop(s);
}

#[test]
fn sink_without_reader_drops_and_bounds() {
    let path =
        std::env::temp_dir().join(format!("ringdns-dnstap-none-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let mut c = config(&path);
    c.queue = 1;
    let s = sink::Sink::start(&c);
    // Far more than the queue holds: the queue stays bounded and nothing blocks.
    let t0 = Instant::now();
    for _ in 0..25_000 {
        s.send(vec![0; 100]);
    }
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert!(s.queued() <= 10_000, "{}", s.queued());
    assert!(s.dropped() >= 15_000, "{}", s.dropped());
}

#[test]
fn no_connection_text() {
    let c = config(std::path::Path::new("/nonexistent-ringdns/tap.sock"));
    let e = sink::dial_text(&c).expect_err("no reader");
    assert_eq!(
        e,
        "dial unix /nonexistent-ringdns/tap.sock: connect: no such file or directory"
    );
    let mut c = config(std::path::Path::new("x"));
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    c.endpoint = Endpoint::Tcp(format!("127.0.0.1:{port}"));
    let e = sink::dial_text(&c).expect_err("refused");
    assert_eq!(
        e,
        format!("dial tcp 127.0.0.1:{port}: connect: connection refused")
    );
    let _ = SocketAddr::from(([127, 0, 0, 1], port));
}
