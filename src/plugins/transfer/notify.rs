//! NOTIFY out (RFC 1996), CoreDNS `plugin/transfer/notify.go`: for a zone,
//! the `transfer` stanza with the longest matching zone names the targets;
//! each `to` address that is not `*` gets an `SOA` NOTIFY over UDP (from
//! `source` if set), tried up to 3 times until it answers NOERROR.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use super::link::{BlockLink, NotifyTargets};
use crate::clog::{self, Level};
use crate::wire::{Name, hdr};
use crate::zone::in_zone;

/// miekg's default client timeouts (dial/read 2 s).
const TIMEOUT: Duration = Duration::from_secs(2);

/// The stanza whose zone matches `zone` longest (ties: the larger name).
pub(crate) fn longest_match<'a, T>(
    stanzas: impl Iterator<Item = (&'a [Name], T)>,
    zone: &Name,
) -> Option<T> {
    let mut best: Option<(&Name, T)> = None;
    for (zones, x) in stanzas {
        let m = zones
            .iter()
            .filter(|z| in_zone(zone.wire(), z.wire()))
            .max_by_key(|z| z.len());
        if let Some(m) = m {
            let better = match &best {
                None => true,
                Some((b, _)) => {
                    m.len() > b.len() || (m.len() == b.len() && m.to_string() > b.to_string())
                }
            };
            if better {
                best = Some((m, x));
            }
        }
    }
    best.map(|(_, x)| x)
}

/// A NOTIFY query for `zone` (miekg `SetNotify`: opcode NOTIFY, AA, `zone SOA IN`).
pub fn notify_message(id: u16, zone: &Name) -> Vec<u8> {
    let mut m = Vec::with_capacity(12 + zone.len() + 4);
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&((4u16 << 11) | crate::wire::flags::AA).to_be_bytes());
    m.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    m.extend_from_slice(zone.wire());
    m.extend_from_slice(&6u16.to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
    m
}

fn send_one(target: &str, source: Option<IpAddr>, zone: &Name) -> Result<(), String> {
    let addr: SocketAddr = target.parse().map_err(|_| {
        format!(
            "notify for zone {:?} was not accepted by {target:?}: bad address",
            zone.to_string()
        )
    })?;
    let bind: SocketAddr = match (source, addr) {
        (Some(ip), _) => SocketAddr::new(ip, 0),
        (None, SocketAddr::V4(_)) => SocketAddr::from(([0, 0, 0, 0], 0)),
        (None, SocketAddr::V6(_)) => SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0)),
    };
    let mut last_err = String::new();
    let mut rcode = 2u8;
    for _ in 0..3 {
        let id = fastrand::u16(..);
        let msg = notify_message(id, zone);
        let r = (|| -> std::io::Result<Vec<u8>> {
            let s = UdpSocket::bind(bind)?;
            s.set_read_timeout(Some(TIMEOUT))?;
            s.connect(addr)?;
            s.send(&msg)?;
            let mut buf = vec![0u8; 4096];
            loop {
                let n = s.recv(&mut buf)?;
                if n >= 12 && hdr::id(&buf) == id {
                    buf.truncate(n);
                    return Ok(buf);
                }
            }
        })();
        match r {
            Ok(reply) => {
                last_err.clear();
                rcode = hdr::rcode(&reply);
                if rcode == 0 {
                    return Ok(());
                }
            }
            Err(e) => last_err = e.to_string(),
        }
    }
    let z = zone.to_string();
    if !last_err.is_empty() {
        return Err(format!(
            "notify for zone {z:?} was not accepted by {target:?}: {last_err:?}"
        ));
    }
    let rc = crate::wire::types::rcode_name(u16::from(rcode)).unwrap_or("?");
    Err(format!(
        "notify for zone {z:?} was not accepted by {target:?}: rcode was {rc:?}"
    ))
}

/// Sends NOTIFYs for `zone` to the block's targets (CoreDNS `Transfer.Notify`);
/// nothing when the block has no *transfer*. Blocks (up to 3 × 2 s a target).
pub fn notify_zone(link: &BlockLink, zone: &Name) -> Result<(), String> {
    let Some(t) = link.transfer.get() else {
        return Ok(());
    };
    send_for(t, zone)
}

fn send_for(t: &NotifyTargets, zone: &Name) -> Result<(), String> {
    let Some((to, source)) = longest_match(
        t.stanzas
            .iter()
            .map(|(z, to, src)| (z.as_slice(), (to, *src))),
        zone,
    ) else {
        return Ok(());
    };
    let mut errs = Vec::new();
    for target in to.iter().filter(|t| *t != "*") {
        if let Err(e) = send_one(target, source, zone) {
            errs.push(e);
        }
    }
    clog::log(
        Level::Debug,
        Some("transfer"),
        &format!("Sent notifies for zone {:?} to {to:?}", zone.to_string()),
    );
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs.join("\n"))
    }
}

/// Sends NOTIFYs for `zones` from a background thread (startup, auto walks),
/// logging failures as CoreDNS does (`Failed sending notifies` is the
/// caller's wording for reloads; startup errors go unlogged upstream).
pub fn notify_zones_async(link: &Arc<BlockLink>, zones: Vec<Name>) {
    if link.transfer.get().is_none() || zones.is_empty() {
        return;
    }
    let link = Arc::clone(link);
    let _ = std::thread::Builder::new()
        .name("ringdns-notify".into())
        .spawn(move || {
            for z in zones {
                let _ = notify_zone(&link, &z);
            }
        });
}
