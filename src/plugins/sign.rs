//! *sign*: signs zone files off-line for *file* and *auto* to serve
//! (plugins.md §sign). At startup and every five hours each zone's signed file
//! is checked; when it is missing, its SOA signature began more than six days
//! ago or expires within seven, the zone file is read again and written out
//! signed as `db.<zone>signed`: the key's DNSKEY, CDS (SHA-1 and SHA-256) and
//! CDNSKEY at the apex, an NSEC chain over the authoritative names (TTL the
//! SOA's minimum), an RRSIG per key for every authoritative RRset but
//! delegations' NS, and the SOA serial set to the signing time.
//!
//! CoreDNS: `plugin/sign/` (`setup.go`, `signer.go`, `file.go`, `keys.go`,
//! `nsec.go`), with the file plugin's `Zone.Insert` and tree walks.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use corefile::{Diagnostic, Dispenser};
use ring::rand::SystemRandom;
use sha2::Digest;

use crate::clog::{self, Level};
use crate::config::SetupCtx;
use crate::plugins::dnssec::{
    DNSKEY, Key, NSEC, RRSIG, SOA, Set, key_line, lower_name_at, record, rrsig, type_bitmap,
};
use crate::plugins::file::rooted_path;
use crate::wire::{Name, be16, be32};
use crate::zone::parse::{parse_bytes, parse_rr};
use crate::zone::text::rdata_to_string;
use crate::zone::{canon_key, in_zone};

#[cfg(test)]
mod tests;

const NS: u16 = 2;
const CDS: u16 = 59;
const CDNSKEY: u16 = 60;

const HOUR: i128 = 3_600_000_000_000;
const DAY: i128 = 24 * HOUR;
/// `durationResignDays`, `durationExpireDays`, `durationRefreshHours`.
const RESIGN: i128 = 6 * DAY;
const EXPIRE: i128 = 7 * DAY;
const REFRESH: Duration = Duration::from_secs(5 * 3600);

/// One zone to sign.
#[derive(Debug)]
pub struct Signer {
    keys: Vec<Arc<Key>>,
    /// Normalised origin (`example.org.`).
    origin: String,
    dbfile: String,
    directory: String,
    /// Nanoseconds: up to 18 hours earlier inception, up to 5 days later expiration.
    jitter_incep: i128,
    jitter_expir: i128,
    signedfile: String,
}

/// The signers of a block, and the thread that keeps their files signed.
#[derive(Debug, Default)]
pub struct SignJobs {
    signers: Vec<Arc<Signer>>,
    started: AtomicBool,
    stop: Mutex<Option<Sender<()>>>,
}

/// Setup (every `sign` of the block).
pub fn setup(d: &mut Dispenser, ctx: &mut SetupCtx<'_>) -> Result<(), Diagnostic> {
    let root = ctx.settings.root.clone();
    let mut all = Vec::new();
    while d.next() {
        if !d.next_arg() {
            return Err(d.arg_err().in_plugin("sign"));
        }
        let dbfile = rooted_path(d.val(), root.as_deref());
        if dbfile.contains('\u{FFFD}') {
            return Err(Diagnostic::plain(format!(
                "dbfile {} contains invalid characters",
                corefile::values::go_quote(&dbfile)
            ))
            .in_plugin("sign"));
        }
        let mut group: Vec<Signer> = ctx
            .origins(&d.remaining_args())
            .into_iter()
            .map(|origin| Signer {
                keys: Vec::new(),
                signedfile: format!("db.{origin}signed"),
                origin,
                dbfile: dbfile.clone(),
                directory: "/var/lib/coredns".into(),
                jitter_incep: (-18.0 * HOUR as f64 * f64::from(fastrand::f32())) as i128,
                jitter_expir: (5.0 * DAY as f64 * f64::from(fastrand::f32())) as i128,
            })
            .collect();
        while d.next_block() {
            match d.val() {
                "key" => {
                    let keys = key_parse(d, root.as_deref())?;
                    for s in &mut group {
                        s.keys.extend(keys.iter().cloned());
                    }
                }
                "directory" => {
                    let dir = d.remaining_args();
                    let [dir] = dir.as_slice() else {
                        return Err(Diagnostic::plain(
                            "can only be one argument after \"directory\"",
                        )
                        .in_plugin("sign"));
                    };
                    let dir = rooted_path(dir, root.as_deref());
                    for s in &mut group {
                        s.directory.clone_from(&dir);
                    }
                }
                other => {
                    let msg = format!("unknown property '{other}'");
                    return Err(d.err(msg).in_plugin("sign"));
                }
            }
        }
        all.extend(group.into_iter().map(Arc::new));
    }
    ctx.settings.sign.push(Arc::new(SignJobs {
        signers: all,
        ..Default::default()
    }));
    Ok(())
}

/// `key file KEY...`; `key directory` is not implemented in CoreDNS either.
fn key_parse(d: &mut Dispenser, root: Option<&str>) -> Result<Vec<Arc<Key>>, Diagnostic> {
    let (source, bases) = key_line(d, "sign", root)?;
    if source == "directory" {
        return Err(Diagnostic::plain("directory: not implemented").in_plugin("sign"));
    }
    bases
        .iter()
        .map(|base| {
            read_key_pair(&format!("{base}.key"), &format!("{base}.private"))
                .map(Arc::new)
                .map_err(|e| Diagnostic::plain(e).in_plugin("sign"))
        })
        .collect()
}

/// CoreDNS's `readKeyPair`: a CSK or KSK only.
fn read_key_pair(public: &str, private: &str) -> Result<Key, String> {
    let text = crate::plugins::dnssec::read(public)?;
    let rec = parse_rr(&text).map_err(|e| e.text_without_file())?;
    let rec = match rec {
        Some(r) if r.rtype == DNSKEY => r,
        other => {
            return Err(format!(
                "RR in {} is not a DNSKEY: {}",
                corefile::values::go_quote(public),
                other.map_or(0, |r| r.rtype)
            ));
        }
    };
    let flags = if rec.rdata.len() >= 2 {
        be16(&rec.rdata, 0)
    } else {
        0
    };
    if flags & 0x101 != 0x101 {
        return Err(format!(
            "DNSKEY in {} is not a CSK/KSK",
            corefile::values::go_quote(public)
        ));
    }
    let priv_text = crate::plugins::dnssec::read(private)?;
    Key::from_record(rec, &priv_text, private)
}

impl SignJobs {
    /// Checks every zone now and every five hours after, on a thread of its
    /// own (once); the thread ends with the configuration.
    pub fn start(&self) {
        if self.signers.is_empty() || self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        let (tx, rx) = mpsc::channel::<()>();
        if let Ok(mut s) = self.stop.lock() {
            *s = Some(tx);
        }
        let signers = self.signers.clone();
        let _ = std::thread::Builder::new()
            .name("ringdns-sign".into())
            .spawn(move || {
                for s in &signers {
                    match s.resign(now_nanos()) {
                        None => clog::log(
                            Level::Info,
                            Some("sign"),
                            &format!(
                                "Skipping signing zone {} in {}: signatures are valid",
                                corefile::values::go_quote(&s.origin),
                                corefile::values::go_quote(&s.signed_path())
                            ),
                        ),
                        Some(why) => s.sign_and_log(&why),
                    }
                }
                loop {
                    match rx.recv_timeout(REFRESH) {
                        Err(RecvTimeoutError::Timeout) => {}
                        _ => return,
                    }
                    for s in &signers {
                        if let Some(why) = s.resign(now_nanos()) {
                            s.sign_and_log(&why);
                        }
                    }
                }
            });
    }
}

fn now_nanos() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// Go's `Time.Format("2006-01-02T15:04:05.000Z07:00")` in UTC.
fn time_fmt(ns: i128) -> String {
    let secs = ns.div_euclid(1_000_000_000) as i64;
    let ms = ns.rem_euclid(1_000_000_000) / 1_000_000;
    let (y, mo, d, h, mi, s) = civil(secs);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z")
}

/// UTC calendar fields of Unix time `t`.
fn civil(t: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = t.div_euclid(86_400);
    let rem = t.rem_euclid(86_400);
    // Howard Hinnant's days-from-civil inverse.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        (rem % 3600 / 60) as u32,
        (rem % 60) as u32,
    )
}

/// Go's `Duration.String` of signed nanoseconds.
fn go_dur(ns: i128) -> String {
    let s = corefile::values::format_go_duration(Duration::from_nanos(
        u64::try_from(ns.unsigned_abs()).unwrap_or(u64::MAX),
    ));
    if ns < 0 { format!("-{s}") } else { s }
}

/// miekg `TimeToString` then `time.Parse`: a 32-bit serial time as the
/// nearest Unix time to `now` (nanoseconds).
fn serial_time(t: u32, now_secs: i64) -> i128 {
    const YEAR68: i64 = 1 << 31;
    let mod_ = (i64::from(t) - now_secs) / YEAR68 - 1;
    let mod_ = if mod_ < 0 { 0 } else { mod_ };
    i128::from(i64::from(t) - mod_ * YEAR68) * 1_000_000_000
}

/// A name of the zone being signed: its records by type.
#[derive(Default)]
struct Elem {
    /// Lower-case wire owner.
    name: Vec<u8>,
    types: BTreeMap<u16, Vec<Vec<u8>>>,
}

/// The zone as CoreDNS's file package holds it: the SOA, the apex NS and their
/// signatures apart, every other record in a tree in canonical order.
#[derive(Default)]
struct SignZone {
    soa: Option<Vec<u8>>,
    sig_soa: Vec<Vec<u8>>,
    ns: Vec<Vec<u8>>,
    sig_ns: Vec<Vec<u8>>,
    tree: BTreeMap<Vec<u8>, Elem>,
}

impl SignZone {
    /// `Zone.Insert`: owners lower-cased, and the names in NS, SOA, CNAME, MX,
    /// SVCB and HTTPS RDATA.
    fn insert(&mut self, origin: &[u8], owner: &[u8], rtype: u16, class: u16, ttl: u32, rd: &[u8]) {
        let mut owner = owner.to_vec();
        owner.make_ascii_lowercase();
        let mut rd = rd.to_vec();
        match rtype {
            NS | 5 => lower_name_at(&mut rd, 0),
            15 | 64 | 65 => lower_name_at(&mut rd, 2),
            SOA => {
                lower_name_at(&mut rd, 0);
                if let Ok(e) = Name::skip(&rd, 0) {
                    lower_name_at(&mut rd, e);
                }
            }
            _ => {}
        }
        let r = record(&owner, rtype, class, ttl, &rd);
        if rtype == SOA {
            self.soa = Some(r);
            return;
        }
        if rtype == NS && owner == origin {
            self.ns.push(r);
            return;
        }
        if rtype == RRSIG && rd.len() >= 2 {
            match be16(&rd, 0) {
                SOA => return self.sig_soa.push(r),
                NS if owner == origin => return self.sig_ns.push(r),
                _ => {}
            }
        }
        let mut key = Vec::with_capacity(owner.len() + 8);
        canon_key(&owner, &mut key);
        let e = self.tree.entry(key).or_insert_with(|| Elem {
            name: owner.clone(),
            types: BTreeMap::new(),
        });
        e.types.entry(rtype).or_default().push(r);
    }

    /// `AuthWalk`'s authoritative names, in canonical order: those with no NS
    /// above them (below the apex).
    fn auth_keys(&self) -> Vec<Vec<u8>> {
        let mut cuts: Vec<&[u8]> = Vec::new();
        let mut out = Vec::new();
        for (k, e) in &self.tree {
            let below_cut = cuts
                .iter()
                .any(|c| *c != e.name.as_slice() && in_zone(&e.name, c));
            if e.types.contains_key(&NS) {
                cuts.push(&e.name);
            }
            if !below_cut {
                out.push(k.clone());
            }
        }
        out
    }
}

/// The RRSIGs of `recs` (one RRset, owner `owner`) by every key.
fn sign_rrs(
    keys: &[Arc<Key>],
    rng: &SystemRandom,
    recs: &[Vec<u8>],
    signer: &Name,
    ttl: u32,
    times: [u32; 2],
) -> Result<Vec<Vec<u8>>, String> {
    let Some(first) = recs.first() else {
        return Ok(Vec::new());
    };
    let ol = Name::skip(first, 0).map_err(|_| "bad owner".to_string())?;
    let mut buf = Vec::new();
    let mut ranges = Vec::new();
    for r in recs {
        let s = buf.len();
        buf.extend_from_slice(r);
        ranges.push((s, s + ol, buf.len()));
    }
    let set = Set {
        owner: 0..ol,
        rtype: be16(first, ol),
        recs: ranges,
    };
    keys.iter()
        .map(|k| {
            rrsig(k, rng, &buf, &set, signer, [ttl, ttl], times)
                .ok_or_else(|| format!("signing with key {} failed", k.tag()))
        })
        .collect()
}

/// DS digest of `key` at `owner` (lower-case wire).
fn ds_rdata(owner: &[u8], key: &Key, digest_type: u8) -> Vec<u8> {
    let mut data = owner.to_vec();
    data.extend_from_slice(key.rdata());
    let digest: Vec<u8> = if digest_type == 1 {
        sha1::Sha1::digest(&data).to_vec()
    } else {
        sha2::Sha256::digest(&data).to_vec()
    };
    let mut rd = key.tag().to_be_bytes().to_vec();
    rd.push(key.rdata()[3]);
    rd.push(digest_type);
    rd.extend_from_slice(&digest);
    rd
}

impl Signer {
    fn signed_path(&self) -> String {
        std::path::Path::new(&self.directory)
            .join(&self.signedfile)
            .to_string_lossy()
            .into_owned()
    }

    /// `resign`: why the zone must be signed again, or `None`.
    fn resign(&self, now: i128) -> Option<String> {
        let path = self.signed_path();
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) => return Some(format!("open {path}: {}", crate::config::go_err(&e))),
        };
        let now_secs = now.div_euclid(1_000_000_000) as i64;
        let mut i = 0;
        let r = parse_bytes(&text, "resign", &[0], &mut |r| -> Result<(), Stop> {
            if r.rtype == RRSIG && r.rdata.len() >= 18 {
                if be16(r.rdata, 0) != SOA {
                    return Ok(());
                }
                let incep = serial_time(be32(r.rdata, 12), now_secs);
                let expire = serial_time(be32(r.rdata, 8), now_secs);
                let since = now - incep;
                if since > RESIGN {
                    return Err(Stop(format!(
                        "inception {} was more than: {} ago from {}: {}",
                        go_q(&time_fmt(incep)),
                        go_dur(RESIGN),
                        time_fmt(now),
                        go_dur(since)
                    )));
                }
                if since < 0 {
                    return Err(Stop(format!(
                        "inception {} date is in the future: {}",
                        go_q(&time_fmt(incep)),
                        go_dur(since)
                    )));
                }
                if expire - now < EXPIRE {
                    return Err(Stop(format!(
                        "expiration {} is less than: {} away from {}: {}",
                        go_q(&time_fmt(expire)),
                        go_dur(EXPIRE),
                        time_fmt(now),
                        go_dur(expire - now)
                    )));
                }
            }
            i += 1;
            if i > 100 {
                return Err(Stop("no SOA RRSIG found in first 100 records".into()));
            }
            Ok(())
        });
        r.err().map(|Stop(why)| why)
    }

    /// `Signer.Sign`: the signed zone's records in the order CoreDNS writes them.
    fn sign(&self, now: i128) -> Result<(Vec<Vec<u8>>, u32), String> {
        let origin = Name::parse(&self.origin).ok_or("bad origin")?;
        let text = crate::plugins::dnssec::read(&self.dbfile)?;
        let mut z = SignZone::default();
        parse_bytes(
            text.as_bytes(),
            &self.dbfile,
            origin.wire(),
            &mut |r| -> Result<(), Stop> {
                match r.rtype {
                    DNSKEY | RRSIG | CDNSKEY | CDS => Ok(()),
                    50 | 51 => {
                        let mut n = String::new();
                        Name::from_wire(r.owner)
                            .map(|n2| n2.write_presentation(&mut n))
                            .map_err(|_| Stop("bad owner".into()))?;
                        Err(Stop(format!(
                            "NSEC3 zone is not supported, dropping RR: {} for zone: {}",
                            n.to_lowercase(),
                            self.origin
                        )))
                    }
                    _ => {
                        if in_zone(r.owner, origin.wire()) {
                            z.insert(origin.wire(), r.owner, r.rtype, r.class, r.ttl, r.rdata);
                        }
                        Ok(())
                    }
                }
            },
        )
        .map_err(|Stop(e)| e)?;
        let Some(soa) = z.soa.take() else {
            return Err(format!(
                "file {} has no SOA record",
                corefile::values::go_quote(&self.dbfile)
            ));
        };
        let ol = Name::skip(&soa, 0).map_err(|_| "bad SOA")?;
        let ttl = be32(&soa, ol + 4);
        let rd = &soa[ol + 10..];
        let mname = Name::skip(rd, 0).map_err(|_| "bad SOA")?;
        let rname = Name::skip(rd, mname).map_err(|_| "bad SOA")?;
        if rd.len() < rname + 20 {
            return Err("bad SOA".into());
        }
        let minttl = be32(rd, rname + 16);
        let serial = (now.div_euclid(1_000_000_000)) as u32;
        let mut soa = soa;
        let at = ol + 10 + rname;
        soa[at..at + 4].copy_from_slice(&serial.to_be_bytes());
        let incep = ((now - 3 * HOUR + self.jitter_incep).div_euclid(1_000_000_000)) as u32;
        let expir = ((now + 32 * DAY + self.jitter_expir).div_euclid(1_000_000_000)) as u32;
        let times = [incep, expir];
        let rng = SystemRandom::new();
        let o = origin.wire();
        for k in &self.keys {
            let class = 1;
            z.insert(o, o, DNSKEY, class, ttl, k.rdata());
            z.insert(o, o, CDS, class, ttl, &ds_rdata(o, k, 1));
            z.insert(o, o, CDS, class, ttl, &ds_rdata(o, k, 2));
            z.insert(o, o, CDNSKEY, class, ttl, k.rdata());
        }
        let sig_soa = sign_rrs(
            &self.keys,
            &rng,
            std::slice::from_ref(&soa),
            &origin,
            ttl,
            times,
        )?;
        let sig_ns = if z.ns.is_empty() {
            Vec::new()
        } else {
            sign_rrs(&self.keys, &rng, &z.ns, &origin, ttl, times)?
        };
        z.sig_soa = sig_soa;
        z.sig_ns = sig_ns;
        let auth = z.auth_keys();
        let names: Vec<Vec<u8>> = auth.iter().map(|k| z.tree[k].name.clone()).collect();
        let ln = names.len();
        for (i, key) in auth.iter().enumerate() {
            let Some(e) = z.tree.get_mut(key) else {
                continue;
            };
            let mut types: Vec<u16> = e.types.keys().copied().collect();
            if e.name == o {
                types.extend([NS, SOA]);
            }
            types.extend([RRSIG, NSEC]);
            types.sort_unstable();
            types.dedup();
            let mut nsec_rd = names[(i + 1) % ln].clone();
            type_bitmap(&types, &mut nsec_rd);
            let nsec = record(&e.name, NSEC, 1, minttl, &nsec_rd);
            e.types.entry(NSEC).or_default().push(nsec);
            let mut sigs = Vec::new();
            for (t, rrs) in &e.types {
                if *t == RRSIG || *t == NS {
                    continue;
                }
                let rttl = be32(&rrs[0], e.name.len() + 4);
                sigs.extend(sign_rrs(&self.keys, &rng, rrs, &origin, rttl, times)?);
            }
            e.types.entry(RRSIG).or_default().extend(sigs);
        }
        let mut out = vec![soa];
        out.extend(z.sig_soa);
        out.extend(z.ns);
        out.extend(z.sig_ns);
        for e in z.tree.values() {
            for rrs in e.types.values() {
                out.extend(rrs.iter().cloned());
            }
        }
        Ok((out, serial))
    }

    /// Writes the records as a zone file, through a temporary file renamed into place.
    fn write(&self, recs: &[Vec<u8>]) -> Result<(), String> {
        let mut text = String::new();
        for r in recs {
            text.push_str(&presentation(r));
            text.push('\n');
        }
        let tmp =
            std::path::Path::new(&self.directory).join(format!("signed-{}", fastrand::u64(..)));
        std::fs::write(&tmp, text)
            .map_err(|e| format!("open {}: {}", tmp.display(), crate::config::go_err(&e)))?;
        std::fs::rename(&tmp, self.signed_path()).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            format!(
                "rename {} {}: {}",
                tmp.display(),
                self.signed_path(),
                crate::config::go_err(&e)
            )
        })
    }

    fn tags(&self) -> String {
        self.keys
            .iter()
            .map(|k| k.tag().to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `signAndLog`.
    fn sign_and_log(&self, why: &str) {
        let now = now_nanos();
        let started = std::time::Instant::now();
        let res = self.sign(now);
        let origin = corefile::values::go_quote(&self.origin);
        clog::log(
            Level::Info,
            Some("sign"),
            &format!("Signing {origin} because {why}"),
        );
        let next = time_fmt(now + REFRESH.as_nanos() as i128);
        let (recs, serial) = match res {
            Ok(r) => r,
            Err(e) => {
                clog::log(
                    Level::Warning,
                    Some("sign"),
                    &format!(
                        "Error signing {origin} with key tags {} in {}: {e}, next: {next}",
                        go_q(&self.tags()),
                        go_dur(started.elapsed().as_nanos() as i128)
                    ),
                );
                return;
            }
        };
        if let Err(e) = self.write(&recs) {
            clog::log(
                Level::Warning,
                Some("sign"),
                &format!("Error signing {origin}: failed to move zone file into place: {e}"),
            );
            return;
        }
        clog::log(
            Level::Info,
            Some("sign"),
            &format!(
                "Successfully signed zone {origin} in {} with key tags {} and {serial} SOA serial, elapsed {:.6}, next: {next}",
                go_q(&self.signed_path()),
                go_q(&self.tags()),
                started.elapsed().as_secs_f64()
            ),
        );
    }
}

fn go_q(s: &str) -> String {
    corefile::values::go_quote(s)
}

/// A zone-file line for a record (miekg's `RR.String()`: tab-separated).
fn presentation(r: &[u8]) -> String {
    let Ok((owner, ol)) = Name::read(r, 0) else {
        return String::new();
    };
    let (rtype, class, ttl) = (be16(r, ol), be16(r, ol + 2), be32(r, ol + 4));
    let mut s = String::new();
    owner.write_presentation(&mut s);
    s.push('\t');
    s.push_str(&ttl.to_string());
    s.push('\t');
    crate::wire::types::class_to_string(class, &mut s);
    s.push('\t');
    crate::wire::types::type_to_string(rtype, &mut s);
    s.push('\t');
    s.push_str(&rdata_to_string(rtype, &r[ol + 10..]));
    s
}

/// Why a record walk stopped: a reason to sign again, or an error.
struct Stop(String);

impl From<crate::zone::parse::ParseError> for Stop {
    fn from(e: crate::zone::parse::ParseError) -> Self {
        Self(e.to_string())
    }
}
