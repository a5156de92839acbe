//! SVCB and HTTPS RDATA (RFC 9460 §2.1): priority, target, then `key=value`
//! parameters in any order, written sorted by key. Keys: `mandatory`, `alpn`,
//! `no-default-alpn`, `port`, `ipv4hint`, `ech`, `ipv6hint`, `dohpath`,
//! `ohttp` and `keyNNNNN`.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::rdata::{Fail, SvcbFields, base64, unescape};

/// Parameter key numbers by name.
pub(crate) fn key_code(k: &[u8]) -> Option<u16> {
    Some(match k {
        b"mandatory" => 0,
        b"alpn" => 1,
        b"no-default-alpn" => 2,
        b"port" => 3,
        b"ipv4hint" => 4,
        b"ech" => 5,
        b"ipv6hint" => 6,
        b"dohpath" => 7,
        b"ohttp" => 8,
        _ => {
            let n = k.strip_prefix(b"key")?;
            if n.is_empty() || !n.iter().all(u8::is_ascii_digit) {
                return None;
            }
            std::str::from_utf8(n).ok()?.parse().ok()?
        }
    })
}

/// Parameter key names by number (presentation).
pub(crate) fn key_name(k: u16) -> Option<&'static str> {
    Some(match k {
        0 => "mandatory",
        1 => "alpn",
        2 => "no-default-alpn",
        3 => "port",
        4 => "ipv4hint",
        5 => "ech",
        6 => "ipv6hint",
        7 => "dohpath",
        8 => "ohttp",
        _ => return None,
    })
}

/// Splits a comma-separated value; `\,` and other escapes stay inside items.
fn items(v: &[u8]) -> Result<Vec<Vec<u8>>, ()> {
    let mut out = vec![Vec::new()];
    let mut i = 0;
    while i < v.len() {
        match v[i] {
            b'\\' => {
                let d = &v[i + 1..];
                let last = out.len() - 1;
                if d.len() >= 3 && d[..3].iter().all(u8::is_ascii_digit) {
                    unescape(&v[i..i + 4], &mut out[last])?;
                    i += 4;
                } else if let Some(&x) = d.first() {
                    out[last].push(x);
                    i += 2;
                } else {
                    return Err(());
                }
            }
            b',' => {
                out.push(Vec::new());
                i += 1;
            }
            c => {
                let last = out.len() - 1;
                out[last].push(c);
                i += 1;
            }
        }
    }
    Ok(out)
}

fn value(code: u16, v: Option<&[u8]>) -> Result<Vec<u8>, ()> {
    let mut out = Vec::new();
    match code {
        0 => {
            let mut keys = Vec::new();
            for k in items(v.ok_or(())?)? {
                keys.push(key_code(&k).ok_or(())?);
            }
            keys.sort_unstable();
            for k in keys {
                out.extend_from_slice(&k.to_be_bytes());
            }
        }
        1 => {
            for a in items(v.ok_or(())?)? {
                if a.is_empty() || a.len() > 255 {
                    return Err(());
                }
                out.push(a.len() as u8);
                out.extend_from_slice(&a);
            }
        }
        2 | 8 => {
            if v.is_some_and(|v| !v.is_empty()) {
                return Err(());
            }
        }
        3 => {
            let p: u16 = std::str::from_utf8(v.ok_or(())?)
                .map_err(|_| ())?
                .parse()
                .map_err(|_| ())?;
            out.extend_from_slice(&p.to_be_bytes());
        }
        4 => {
            for a in items(v.ok_or(())?)? {
                let ip: Ipv4Addr = std::str::from_utf8(&a)
                    .map_err(|_| ())?
                    .parse()
                    .map_err(|_| ())?;
                out.extend_from_slice(&ip.octets());
            }
        }
        6 => {
            for a in items(v.ok_or(())?)? {
                let ip: Ipv6Addr = std::str::from_utf8(&a)
                    .map_err(|_| ())?
                    .parse()
                    .map_err(|_| ())?;
                out.extend_from_slice(&ip.octets());
            }
        }
        5 => base64(v.ok_or(())?, &mut out)?,
        _ => {
            if let Some(v) = v {
                unescape(v, &mut out)?;
            }
        }
    }
    Ok(out)
}

/// Parses priority, target and parameters.
pub(crate) fn parse(f: &mut SvcbFields<'_, '_, '_>, out: &mut Vec<u8>) -> Result<(), Fail> {
    f.priority(out)?;
    f.target(out)?;
    let mut params: Vec<(u16, Vec<u8>)> = Vec::new();
    while let Some((k, v)) = f.param()? {
        let Some(code) = key_code(&k) else {
            return Err(f.fail("Key"));
        };
        if code == 65535 || params.iter().any(|(c, _)| *c == code) {
            return Err(f.fail("Key"));
        }
        let val = value(code, v.as_deref()).map_err(|()| f.fail("Value"))?;
        if val.len() > 65535 {
            return Err(f.fail("Value"));
        }
        params.push((code, val));
    }
    params.sort_by_key(|p| p.0);
    for (k, v) in params {
        out.extend_from_slice(&k.to_be_bytes());
        out.extend_from_slice(&(v.len() as u16).to_be_bytes());
        out.extend_from_slice(&v);
    }
    Ok(())
}
