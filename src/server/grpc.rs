//! `grpc://` listeners: CoreDNS 1.14.7's `ServergRPC` (service `coredns.dns.DnsService`,
//! unary `Query(DnsPacket) returns (DnsPacket)`, `DnsPacket { bytes msg = 1; }`) on
//! hyper's HTTP/2 server (the connection handling is DoH's, `doh.rs`).
//!
//! * HTTP/2 only: over TLS (ALPN `h2`) with *tls*, else cleartext with prior knowledge.
//! * Requests and replies up to 65,539 octets of protobuf (grpc-go's
//!   `MaxRecvMsgSize`); a larger request is `RESOURCE_EXHAUSTED`.
//! * The query runs through the chain as a TCP query; a message over 65,535 octets or
//!   one miekg would refuse is `UNKNOWN` with CoreDNS's text; when no plugin writes a
//!   reply, the query itself comes back (CoreDNS's writer starts out holding it).
//! * Errors come as gRPC "trailers-only" responses: HTTP 200, `grpc-status` and
//!   `grpc-message` in the headers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use super::Shared;
use super::doh::{Multi, Reply, answer};
use super::handle::Meta;
use crate::chain::Proto;
use crate::wire::request::{Verdict, parse_query};

/// The one method CoreDNS serves.
pub const PATH: &str = "/coredns.dns.DnsService/Query";
/// grpc-go's `MaxRecvMsgSize` in CoreDNS: `dns.MaxMsgSize` + 4.
const MAX_PAYLOAD: usize = 65_535 + 4;

const OK: u32 = 0;
const UNKNOWN: u32 = 2;
const INVALID_ARGUMENT: u32 = 3;
const RESOURCE_EXHAUSTED: u32 = 8;
const UNIMPLEMENTED: u32 = 12;
const INTERNAL: u32 = 13;

/// A gRPC error as a trailers-only response.
fn status(code: u32, msg: &str) -> Response<Reply> {
    let mut r = Response::new(Reply::empty());
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    h.insert("grpc-status", HeaderValue::from(code));
    if let Ok(v) = HeaderValue::from_str(&percent_encode(msg)) {
        h.insert("grpc-message", v);
    }
    r
}

/// gRPC's `grpc-message` encoding: printable ASCII but `%` as is, the rest `%XX`.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An HTTP-level refusal (grpc-go's early abort), with a gRPC status too.
fn http_refusal(http: StatusCode, code: u32, msg: &str) -> Response<Reply> {
    let mut r = status(code, msg);
    *r.status_mut() = http;
    r
}

/// Serves one gRPC request.
pub(super) async fn respond(
    req: Request<Incoming>,
    label: &Arc<str>,
    shared: &Arc<Shared>,
    peer: SocketAddr,
    local: SocketAddr,
) -> Response<Reply> {
    // CoreDNS's server traces every call when a block of the listener has
    // *trace* (the first such block's tracer), joining the call's B3 context.
    let tracer = shared
        .active
        .load()
        .find(label)
        .and_then(|l| l.tracer.clone());
    let b3 = tracer
        .as_ref()
        .and_then(|_| super::doh::b3_parent(req.headers()));
    // grpc-go's order: the content type, then the method, then the path.
    let ctype = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let grpc_type = ctype == "application/grpc"
        || ctype
            .strip_prefix("application/grpc")
            .is_some_and(|r| r.starts_with('+') || r.starts_with(';'));
    if !grpc_type {
        return http_refusal(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            INVALID_ARGUMENT,
            &format!("invalid gRPC request content-type {ctype:?}"),
        );
    }
    if req.method() != Method::POST {
        return http_refusal(
            StatusCode::METHOD_NOT_ALLOWED,
            INTERNAL,
            &format!(
                "Received a HEADERS frame with :method {:?} which should be POST",
                req.method().as_str()
            ),
        );
    }
    let path = req.uri().path().to_owned();
    if path != PATH {
        let rest = path.strip_prefix('/').unwrap_or(&path);
        return match rest.rsplit_once('/') {
            Some(("coredns.dns.DnsService", m)) => status(
                UNIMPLEMENTED,
                &format!("unknown method {m} for service coredns.dns.DnsService"),
            ),
            Some((svc, _)) => status(UNIMPLEMENTED, &format!("unknown service {svc}")),
            None => status(UNIMPLEMENTED, &format!("malformed method name: {path:?}")),
        };
    }
    // grpc-go's recvMsg: the 5-octet prefix, its length checked against the limit, then
    // the payload; a body that ends early is `EOF` / `unexpected EOF`.
    let mut body = req.into_body();
    let mut buf: Vec<u8> = Vec::new();
    let mut len: Option<usize> = None;
    loop {
        if len.is_none() && buf.len() >= 5 {
            if buf[0] != 0 {
                return status(
                    INTERNAL,
                    "grpc: compressed flag set with identity or empty encoding",
                );
            }
            let n = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
            if n > MAX_PAYLOAD {
                return status(
                    RESOURCE_EXHAUSTED,
                    &format!("grpc: received message larger than max ({n} vs. {MAX_PAYLOAD})"),
                );
            }
            len = Some(n);
        }
        if len.is_some_and(|n| buf.len() >= 5 + n) {
            break;
        }
        match body.frame().await {
            Some(Ok(f)) => {
                if let Ok(d) = f.into_data() {
                    buf.extend_from_slice(&d);
                }
            }
            Some(Err(_)) | None => {
                let text = if buf.is_empty() {
                    "EOF"
                } else {
                    "unexpected EOF"
                };
                return status(UNKNOWN, text);
            }
        }
    }
    let pb = buf.get(5..5 + len.unwrap_or(0)).unwrap_or(&[]);
    let Some(msg) = decode_packet(pb) else {
        return status(
            INTERNAL,
            "grpc: error unmarshalling request: proto: cannot parse invalid wire-format data",
        );
    };
    if msg.len() > 65_535 {
        return status(
            UNKNOWN,
            &format!("dns message exceeds size limit: {}", msg.len()),
        );
    }
    if let Some(e) = unpack_error(&msg) {
        return status(UNKNOWN, e);
    }
    let meta = Meta {
        proto: Proto::Tcp,
        peer,
        local,
        now: Instant::now(),
    };
    // No reply written: CoreDNS packs the request it started with.
    let traced = match &tracer {
        Some(t) => crate::plugins::trace::grpc_call(t, b3),
        None => 0,
    };
    let reply = answer(&msg, label, shared, meta, Multi::Last, None, traced)
        .await
        .unwrap_or_else(|| msg.clone());
    crate::plugins::trace::grpc_done(traced);
    let packet = encode_packet(&reply);
    let mut frame = Vec::with_capacity(packet.len() + 5);
    frame.push(0);
    frame.extend_from_slice(&(packet.len() as u32).to_be_bytes());
    frame.extend_from_slice(&packet);
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from(OK));
    trailers.insert("grpc-message", HeaderValue::from_static(""));
    let mut r = Response::new(Reply::with_trailers(Bytes::from(frame), trailers));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    r
}

/// Why `dnsutil.UnpackRequest` refuses `msg`, in its words (miekg's texts only for the
/// two cases that have one of their own).
fn unpack_error(msg: &[u8]) -> Option<&'static str> {
    if msg.len() < 12 {
        return Some("dns: buffer size too small");
    }
    match parse_query(msg) {
        Verdict::Query(_) => None,
        // A bare header unpacks to a message without a question: the server answers it.
        Verdict::Reject(r) if r.rcode == 2 => None,
        Verdict::Reject(r) if r.question_end.is_some() => Some("dns: bad rdata"),
        _ => Some("dns request rejected"),
    }
}

/// `DnsPacket.msg` from its protobuf encoding (field 1, bytes; other fields skipped,
/// the last `msg` wins, as protobuf merges).
pub fn decode_packet(pb: &[u8]) -> Option<Vec<u8>> {
    let mut pos = 0;
    let mut msg = Vec::new();
    while pos < pb.len() {
        let (key, next) = varint(pb, pos)?;
        pos = next;
        let (field, wire) = (key >> 3, key & 7);
        if field == 0 {
            return None;
        }
        match wire {
            0 => pos = varint(pb, pos)?.1,
            1 => pos = pos.checked_add(8).filter(|p| *p <= pb.len())?,
            2 => {
                let (len, next) = varint(pb, pos)?;
                let end = next.checked_add(usize::try_from(len).ok()?)?;
                let bytes = pb.get(next..end)?;
                if field == 1 {
                    msg = bytes.to_vec();
                }
                pos = end;
            }
            5 => pos = pos.checked_add(4).filter(|p| *p <= pb.len())?,
            _ => return None,
        }
    }
    Some(msg)
}

/// `DnsPacket { msg }` in protobuf (an empty `msg` is omitted, as proto3 does).
pub fn encode_packet(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + 4);
    if msg.is_empty() {
        return out;
    }
    out.push(0x0a);
    let mut n = msg.len() as u64;
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out.extend_from_slice(msg);
    out
}

fn varint(b: &[u8], mut pos: usize) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(pos)?;
        pos += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some((v, pos));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_round_trip_and_skipped_fields() {
        let msg: Vec<u8> = (0..300u16).map(|i| i as u8).collect();
        let pb = encode_packet(&msg);
        assert_eq!(&pb[..3], &[0x0a, 0xac, 0x02]);
        assert_eq!(decode_packet(&pb), Some(msg.clone()));
        // An unknown varint field and an unknown bytes field around it.
        let mut other = vec![0x10, 0x96, 0x01, 0x1a, 0x02, 9, 9];
        other.extend_from_slice(&pb);
        assert_eq!(decode_packet(&other), Some(msg));
        assert_eq!(decode_packet(&[]), Some(Vec::new()));
        // Truncated length, field 0, a group wire type.
        assert_eq!(decode_packet(&[0x0a, 5, 1]), None);
        assert_eq!(decode_packet(&[0x02, 0]), None);
        assert_eq!(decode_packet(&[0x0b]), None);
    }

    #[test]
    fn grpc_message_encoding() {
        assert_eq!(
            percent_encode("dns request rejected"),
            "dns request rejected"
        );
        assert_eq!(percent_encode("50% é"), "50%25 %C3%A9");
    }
}
