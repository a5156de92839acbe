//! Socket addresses between `std` and the kernel's `sockaddr_in`/`sockaddr_in6` layouts.
//!
//! Incoming addresses are parsed from the bytes the kernel wrote into a receive buffer, so no
//! raw read is needed; outgoing ones are built in a union that is fully initialised.

use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// Room for either address family: the `msg_namelen` the receives ask for.
pub(super) const NAME_LEN: u32 = mem::size_of::<libc::sockaddr_in6>() as u32;

/// An IPv4 or IPv6 socket address as the kernel reads it.
#[repr(C)]
#[derive(Clone, Copy)]
pub(super) union SockAddrBuf {
    v4: libc::sockaddr_in,
    v6: libc::sockaddr_in6,
}

/// The kernel form of `addr` and its length.
pub(super) fn to_raw(addr: SocketAddr) -> (SockAddrBuf, libc::socklen_t) {
    // Start from the larger member, zeroed, so every byte of the union is initialised.
    let mut buf = SockAddrBuf {
        v6: libc::sockaddr_in6 {
            sin6_family: 0,
            sin6_port: 0,
            sin6_flowinfo: 0,
            sin6_addr: libc::in6_addr { s6_addr: [0; 16] },
            sin6_scope_id: 0,
        },
    };
    match addr {
        SocketAddr::V4(a) => {
            buf.v4 = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            (buf, mem::size_of::<libc::sockaddr_in>() as libc::socklen_t)
        }
        SocketAddr::V6(a) => {
            buf.v6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            (buf, mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t)
        }
    }
}

/// Parses the `sockaddr` bytes of a received message; `None` for another family or a short
/// name.
pub(super) fn parse_name(b: &[u8]) -> Option<SocketAddr> {
    let family = i32::from(u16::from_ne_bytes([*b.first()?, *b.get(1)?]));
    let port = u16::from_be_bytes([*b.get(2)?, *b.get(3)?]);
    if family == libc::AF_INET {
        let ip: [u8; 4] = b.get(4..8)?.try_into().ok()?;
        Some(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), port)))
    } else if family == libc::AF_INET6 {
        let flow: [u8; 4] = b.get(4..8)?.try_into().ok()?;
        let ip: [u8; 16] = b.get(8..24)?.try_into().ok()?;
        let scope: [u8; 4] = b.get(24..28)?.try_into().ok()?;
        Some(SocketAddr::V6(SocketAddrV6::new(
            Ipv6Addr::from(ip),
            port,
            u32::from_ne_bytes(flow),
            u32::from_ne_bytes(scope),
        )))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(buf: SockAddrBuf) -> [u8; NAME_LEN as usize] {
        const _: () = assert!(mem::size_of::<SockAddrBuf>() == NAME_LEN as usize);
        // SAFETY: `to_raw` initialises every byte of the union, which is exactly NAME_LEN
        // bytes of plain integers.
        unsafe { mem::transmute::<SockAddrBuf, [u8; NAME_LEN as usize]>(buf) }
    }

    #[test]
    fn round_trip() {
        for s in [
            "127.0.0.1:53",
            "192.0.2.7:65535",
            "[::1]:5353",
            "[2001:db8::1%3]:1",
        ] {
            let a: SocketAddr = s.parse().unwrap();
            let (buf, len) = to_raw(a);
            let b = bytes(buf);
            assert_eq!(parse_name(&b[..len as usize]), Some(a), "{s}");
        }
    }

    #[test]
    fn rejects_short_or_foreign() {
        assert_eq!(parse_name(&[]), None);
        let (buf, _) = to_raw("[::1]:53".parse().unwrap());
        assert_eq!(parse_name(&bytes(buf)[..20]), None);
        let unix = (libc::AF_UNIX as u16).to_ne_bytes();
        assert_eq!(parse_name(&[unix[0], unix[1], 0, 0, 0, 0, 0, 0]), None);
    }
}
