//! *geoip*: looks the client's address (or its EDNS client subnet) up in a
//! MaxMind DB and publishes what it finds as metadata (plugins.md §geoip):
//! `geoip/city/name`, `geoip/country/code`, … from City-schema databases and
//! `geoip/asn/number`, `geoip/asn/org` from ASN-schema ones.
//!
//! CoreDNS: `plugin/geoip/` over geoip2-golang v2 (which database types give
//! which schema, and that an address the database does not hold publishes
//! every label with an empty value).

use std::net::IpAddr;
use std::sync::Arc;

use corefile::{Diagnostic, Dispenser};
use maxminddb::{MaxMindDbError, Reader, geoip2};

use crate::chain::Ctx;

#[cfg(test)]
mod tests;

/// Parsed configuration (the opened database).
#[derive(Clone)]
pub struct GeoipConfig {
    db: Arc<GeoIp>,
}

impl std::fmt::Debug for GeoipConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoipConfig")
            .field("city", &self.db.city)
            .field("asn", &self.db.asn)
            .field("edns0", &self.db.edns0)
            .finish_non_exhaustive()
    }
}

/// The database and what it provides.
pub struct GeoIp {
    reader: Reader<Vec<u8>>,
    city: bool,
    asn: bool,
    edns0: bool,
}

/// Setup (CoreDNS `geoipParse` and `newGeoIP`).
pub fn setup(d: &mut Dispenser) -> Result<GeoipConfig, Diagnostic> {
    let mut path: Option<String> = None;
    let mut edns0 = false;
    while d.next() {
        if !d.next_arg() {
            return Err(d.arg_err().in_plugin("geoip"));
        }
        if path.is_some() {
            return Err(d
                .err("configuring multiple databases is not supported")
                .in_plugin("geoip"));
        }
        path = Some(d.val().to_owned());
        if !d.remaining_args().is_empty() {
            return Err(d.arg_err().in_plugin("geoip"));
        }
        while d.next_block() {
            if d.val() != "edns-subnet" {
                let msg = format!("unknown property {}", corefile::values::go_quote(d.val()));
                return Err(d.err(msg).in_plugin("geoip"));
            }
            edns0 = true;
        }
    }
    let path = path.unwrap_or_default();
    let db = open(&path, edns0).map_err(|e| d.err(e).in_plugin("geoip"))?;
    Ok(GeoipConfig { db: Arc::new(db) })
}

/// geoip2-golang's database types: City (and Country, Enterprise) schema, ASN
/// schema, or another it knows (`None` for one it does not).
fn schemas(db_type: &str) -> Option<(bool, bool)> {
    Some(match db_type {
        "DBIP-ASN-Lite (compat=GeoLite2-ASN)"
        | "GeoLite2-ASN"
        | "GeoIP2-ISP"
        | "GeoIP2-Precision-ISP" => (false, true),
        "DBIP-City-Lite"
        | "DBIP-Country-Lite"
        | "DBIP-Country"
        | "DBIP-Location (compat=City)"
        | "GeoLite2-City"
        | "GeoIP-City-Redacted-US"
        | "GeoIP2-City"
        | "GeoIP2-City-Africa"
        | "GeoIP2-City-Asia-Pacific"
        | "GeoIP2-City-Europe"
        | "GeoIP2-City-North-America"
        | "GeoIP2-City-South-America"
        | "GeoIP2-Precision-City"
        | "GeoLite2-Country"
        | "GeoIP2-Country"
        | "DBIP-ISP (compat=Enterprise)"
        | "DBIP-Location-ISP (compat=Enterprise)"
        | "GeoIP-Enterprise-Redacted-US"
        | "GeoIP2-Enterprise" => (true, false),
        "GeoIP2-Anonymous-IP" | "GeoIP2-Connection-Type" | "GeoIP2-Domain" => (false, false),
        _ => return None,
    })
}

/// `newGeoIP`: opens the database, then probes each schema with 127.0.0.1.
fn open(path: &str, edns0: bool) -> Result<GeoIp, String> {
    let opened = std::fs::read(path)
        .map_err(|e| format!("open {path}: {}", crate::config::go_err(&e)))
        .and_then(|b| Reader::from_source(b).map_err(|e| mmdb_err(&e)));
    let reader = opened.map_err(|e| format!("failed to open database file: {e}"))?;
    let Some((city, asn)) = schemas(&reader.metadata().database_type) else {
        return Err(format!(
            "failed to open database file: geoip2: reader does not support the {} database type",
            corefile::values::go_quote(&reader.metadata().database_type)
        ));
    };
    let base = std::path::Path::new(path)
        .file_name()
        .map_or_else(|| path.to_owned(), |f| f.to_string_lossy().into_owned());
    let probe = IpAddr::from([127, 0, 0, 1]);
    for (on, name) in [(city, "city"), (asn, "asn")] {
        if !on {
            continue;
        }
        let r = reader.lookup(probe).and_then(|r| {
            if name == "city" {
                r.decode::<geoip2::City>().map(|_| ())
            } else {
                r.decode::<geoip2::Asn>().map(|_| ())
            }
        });
        if let Err(e) = r {
            return Err(format!(
                "unexpected failure looking up database {} schema {}: {}",
                corefile::values::go_quote(&base),
                corefile::values::go_quote(name),
                mmdb_err(&e)
            ));
        }
    }
    if !city && !asn {
        return Err("database does not provide any supported schema (city, asn)".into());
    }
    Ok(GeoIp {
        reader,
        city,
        asn,
        edns0,
    })
}

/// maxminddb-golang's text for the common failures; the crate's otherwise.
fn mmdb_err(e: &MaxMindDbError) -> String {
    match e {
        MaxMindDbError::InvalidDatabase { .. } => {
            "error opening database: invalid MaxMind DB file".into()
        }
        other => other.to_string(),
    }
}

impl GeoipConfig {
    /// The runtime plugin (the database is shared by every copy).
    pub fn plugin(&self) -> Arc<GeoIp> {
        Arc::clone(&self.db)
    }
}

/// The first EDNS0 client subnet option's address (RFC 7871), padded.
fn ecs_address(ctx: &Ctx<'_>) -> Option<Option<IpAddr>> {
    let opt = ctx.req.opt.as_ref()?;
    let o = opt.options().find(|o| o.code == 8)?;
    let d = o.data;
    if d.len() < 4 {
        return Some(None);
    }
    let family = u16::from_be_bytes([d[0], d[1]]);
    let addr = &d[4..];
    Some(match family {
        1 if addr.len() <= 4 => {
            let mut b = [0u8; 4];
            b[..addr.len()].copy_from_slice(addr);
            Some(IpAddr::from(b))
        }
        2 if addr.len() <= 16 => {
            let mut b = [0u8; 16];
            b[..addr.len()].copy_from_slice(addr);
            Some(IpAddr::from(b))
        }
        _ => None,
    })
}

impl GeoIp {
    /// CoreDNS's `Metadata`: the labels of the client's address.
    pub fn publish_metadata(&self, ctx: &mut Ctx<'_>) {
        let mut ip = ctx.peer.ip();
        if let IpAddr::V6(v6) = ip {
            if let Some(v4) = v6.to_ipv4_mapped() {
                ip = IpAddr::V4(v4);
            }
        }
        if self.edns0 {
            if let Some(Some(a)) = ecs_address(ctx) {
                ip = a;
            }
        }
        if self.city {
            if let Ok(r) = self.reader.lookup(ip) {
                if let Ok(c) = r.decode::<geoip2::City>() {
                    set_city(ctx, &c.unwrap_or_default());
                }
            }
        }
        if self.asn {
            if let Ok(r) = self.reader.lookup(ip) {
                if let Ok(a) = r.decode::<geoip2::Asn>() {
                    let (n, org) = a.map_or((0, ""), |a| {
                        (
                            a.autonomous_system_number.unwrap_or(0),
                            a.autonomous_system_organization.unwrap_or(""),
                        )
                    });
                    ctx.set_meta("geoip/asn/number", || n.to_string());
                    ctx.set_meta("geoip/asn/org", || org.to_owned());
                }
            }
        }
    }
}

/// `setCityMetadata`: a value for every label, empty when the record lacks it.
fn set_city(ctx: &mut Ctx<'_>, c: &geoip2::City<'_>) {
    let s = |v: Option<&str>| v.unwrap_or("").to_owned();
    ctx.set_meta("geoip/city/name", || s(c.city.names.english));
    ctx.set_meta("geoip/country/name", || s(c.country.names.english));
    ctx.set_meta("geoip/continent/name", || s(c.continent.names.english));
    ctx.set_meta("geoip/country/code", || s(c.country.iso_code));
    ctx.set_meta("geoip/subdivisions/code", || {
        c.subdivisions
            .iter()
            .map(|x| x.iso_code.unwrap_or(""))
            .collect::<Vec<_>>()
            .join(",")
    });
    ctx.set_meta("geoip/country/is_in_european_union", || {
        c.country.is_in_european_union.unwrap_or(false).to_string()
    });
    ctx.set_meta("geoip/continent/code", || s(c.continent.code));
    ctx.set_meta("geoip/latitude", || {
        c.location
            .latitude
            .map(|v| v.to_string())
            .unwrap_or_default()
    });
    ctx.set_meta("geoip/longitude", || {
        c.location
            .longitude
            .map(|v| v.to_string())
            .unwrap_or_default()
    });
    ctx.set_meta("geoip/timezone", || s(c.location.time_zone));
    ctx.set_meta("geoip/postalcode", || s(c.postal.code));
}
