//! *dnssec*: on-line signing of the replies to DO queries in the plugin's zones
//! (plugins.md §dnssec). DNSKEY at a zone's apex is answered here with the
//! configured keys; every RRset whose owner lies in the zones is signed; a
//! denial becomes a NOERROR reply with an NSEC "black lie" at the query name;
//! a referral gets its DS signed or an NSEC proving there is none. Signatures
//! are cached (keyed by the RRset) and made again when less than two days of
//! validity remain.
//!
//! CoreDNS: `plugin/dnssec/` (`dnssec.go`, `black_lies.go`, `dnskey.go`,
//! `rrsig.go`, `cache.go`, `setup.go`); miekg/dns `dnssec.go` for the
//! signature's canonical form and `dnssec_keyscan.go` for the key files.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use corefile::{Diagnostic, Dispenser};
use ring::rand::SystemRandom;
use ring::signature::{self as sig, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair};

use crate::chain::{Ctx, Flow, Status};
use crate::config::{SetupCtx, go_atoi_err, go_err};
use crate::metrics::{Families, LabelCounts, contribute};
use crate::plugins::log::{RespType, typify};
use crate::wire::index::{MsgIndex, expand};
use crate::wire::{Builder, HEADER_LEN, MAX_NAME, Name, SectionKind, be16, be32, flags, hdr};
use crate::zone::in_zone;
use crate::zone::parse::parse_rr;

#[cfg(test)]
mod tests;

/// RR types used here (and by *sign*).
pub(crate) const SOA: u16 = 6;
const OPT: u16 = 41;
const DS: u16 = 43;
pub(crate) const RRSIG: u16 = 46;
pub(crate) const NSEC: u16 = 47;
pub(crate) const DNSKEY: u16 = 48;

/// CoreDNS's `origTTL`: the original TTL field of every signature.
const ORIG_TTL: u32 = 3600;
/// `defaultCap`.
const DEFAULT_CAP: usize = 10_000;
const HOUR: i64 = 3600;
const DAY: i64 = 24 * HOUR;
/// [`ReqState::marks`](crate::chain::ReqState::marks) bit: sign the reply.
const SIGN: u32 = 1 << 8;

/// miekg's errors.
const ERR_PRIV_KEY: &str = "dns: bad private key";
const ERR_KEY: &str = "dns: bad key";
const ERR_ALG: &str = "dns: bad algorithm";

/// A signing key: its DNSKEY record and private half.
pub struct Key {
    /// Owner as written in the key file (presentation), for errors.
    name: String,
    /// Owner, wire.
    owner: Name,
    class: u16,
    ttl: u32,
    /// DNSKEY RDATA.
    rdata: Vec<u8>,
    tag: u16,
    signer: Signer,
}

enum Signer {
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
    Rsa(RsaKeyPair, &'static dyn sig::RsaEncoding),
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("name", &self.name)
            .field("tag", &self.tag)
            .finish_non_exhaustive()
    }
}

impl Key {
    /// DNSKEY RDATA.
    pub(crate) fn rdata(&self) -> &[u8] {
        &self.rdata
    }
    /// Key tag.
    pub(crate) fn tag(&self) -> u16 {
        self.tag
    }
    fn flags(&self) -> u16 {
        be16(&self.rdata, 0)
    }
    fn algorithm(&self) -> u8 {
        self.rdata[3]
    }
    /// Zone key with the SEP bit.
    pub(crate) fn is_ksk(&self) -> bool {
        self.flags() & 0x101 == 0x101
    }
    /// Zone key without the SEP bit.
    fn is_zsk(&self) -> bool {
        self.flags() & 0x101 == 0x100
    }

    fn sign(&self, rng: &SystemRandom, data: &[u8]) -> Option<Vec<u8>> {
        match &self.signer {
            Signer::Ecdsa(k) => k.sign(rng, data).ok().map(|s| s.as_ref().to_vec()),
            Signer::Ed25519(k) => Some(k.sign(data).as_ref().to_vec()),
            Signer::Rsa(k, enc) => {
                let mut out = vec![0; k.public().modulus_len()];
                k.sign(*enc, rng, data, &mut out).ok()?;
                Some(out)
            }
        }
    }
}

/// RFC 4034 Appendix B (algorithm 1 aside, which cannot sign here).
pub fn key_tag(rdata: &[u8]) -> u16 {
    let mut ac: u32 = 0;
    for (i, &b) in rdata.iter().enumerate() {
        ac += if i & 1 == 1 {
            u32::from(b)
        } else {
            u32::from(b) << 8
        };
    }
    ac += (ac >> 16) & 0xFFFF;
    (ac & 0xFFFF) as u16
}

/// Parsed configuration.
#[derive(Debug, Clone)]
pub struct DnssecConfig {
    zones: Vec<String>,
    keys: Vec<Arc<Key>>,
    capacity: usize,
}

/// Setup.
pub fn setup(d: &mut Dispenser, ctx: &SetupCtx<'_>) -> Result<DnssecConfig, Diagnostic> {
    let mut zones = Vec::new();
    let mut keys: Vec<Arc<Key>> = Vec::new();
    let mut capacity = DEFAULT_CAP as i64;
    let mut i = 0;
    while d.next() {
        if i > 0 {
            return Err(crate::config::err_once().in_plugin("dnssec"));
        }
        i += 1;
        zones = ctx.origins(&d.remaining_args());
        while d.next_block() {
            match d.val() {
                "key" => keys.extend(key_parse(d, ctx)?),
                "cache_capacity" => {
                    if !d.next_arg() {
                        return Err(d.arg_err().in_plugin("dnssec"));
                    }
                    let v = d.val().to_owned();
                    capacity = v
                        .parse::<i64>()
                        .map_err(|_| Diagnostic::plain(go_atoi_err(&v)).in_plugin("dnssec"))?;
                }
                other => {
                    let msg = format!("unknown property '{other}'");
                    return Err(d.err(msg).in_plugin("dnssec"));
                }
            }
        }
    }
    let zone_names: Vec<Name> = zones.iter().filter_map(|z| Name::parse(z)).collect();
    for k in &keys {
        if !zone_names.iter().any(|z| in_zone(k.owner.wire(), z.wire())) {
            return Err(Diagnostic::plain(format!(
                "key {} (keyid: {}) can not sign any of the zones",
                k.name, k.tag
            ))
            .in_plugin("dnssec"));
        }
    }
    Ok(DnssecConfig {
        zones,
        keys,
        capacity: cache_capacity(capacity),
    })
}

/// CoreDNS's `cache.New(size)`: 256 shards of `size / 256` entries, at least 4.
fn cache_capacity(size: i64) -> usize {
    let shard = (size / 256).max(4);
    usize::try_from(shard).map_or(usize::MAX, |s| s.saturating_mul(256))
}

/// The `key` line of *dnssec* and *sign*: `key file KEY...` gives the key files'
/// base paths (a `.key` or `.private` suffix dropped, `root` applied); another
/// source gives its name (and no paths).
pub(crate) fn key_line(
    d: &mut Dispenser,
    plugin: &str,
    root: Option<&str>,
) -> Result<(String, Vec<String>), Diagnostic> {
    if !d.next_arg() {
        return Err(d.arg_err().in_plugin(plugin));
    }
    let source = d.val().to_owned();
    if source != "file" {
        return Ok((source, Vec::new()));
    }
    let ks = d.remaining_args();
    if ks.is_empty() {
        return Err(d.arg_err().in_plugin(plugin));
    }
    let bases = ks
        .iter()
        .map(|k| {
            let base = k
                .strip_suffix(".key")
                .or_else(|| k.strip_suffix(".private"))
                .unwrap_or(k);
            crate::plugins::file::rooted_path(base, root)
        })
        .collect();
    Ok((source, bases))
}

/// `key file KEY...` (or `key aws_secretsmanager`, which fails here).
fn key_parse(d: &mut Dispenser, ctx: &SetupCtx<'_>) -> Result<Vec<Arc<Key>>, Diagnostic> {
    let (source, bases) = key_line(d, "dnssec", ctx.settings.root.as_deref())?;
    if source == "aws_secretsmanager" {
        // CoreDNS wants at least one secret name before it asks AWS.
        if d.remaining_args().is_empty() {
            return Err(d.arg_err().in_plugin("dnssec"));
        }
        return Err(d
            .err("key aws_secretsmanager is not supported by ringdns yet")
            .in_plugin("dnssec"));
    }
    // CoreDNS ignores any other key source without an error.
    bases
        .iter()
        .map(|base| {
            parse_key_files(&format!("{base}.key"), &format!("{base}.private"))
                .map(Arc::new)
                .map_err(|e| Diagnostic::plain(e).in_plugin("dnssec"))
        })
        .collect()
}

pub(crate) fn read(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("open {path}: {}", go_err(&e)))
}

/// CoreDNS's `ParseKeyFile`: the DNSKEY of `pub_file` and the private key of
/// `priv_file` (BIND's `Private-key-format: v1.2`/`v1.3`).
pub fn parse_key_files(pub_file: &str, priv_file: &str) -> Result<Key, String> {
    let text = read(pub_file)?;
    let rec = parse_rr(&text).map_err(|e| format!("{pub_file}: {}", e.text_without_file()))?;
    let priv_text = read(priv_file)?;
    let Some(rec) = rec.filter(|r| r.rtype == DNSKEY) else {
        return Err("no public key found".into());
    };
    Key::from_record(rec, &priv_text, priv_file)
}

impl Key {
    /// The key of DNSKEY record `rec` with the private key file's text.
    pub(crate) fn from_record(
        rec: crate::zone::parse::OwnedRecord,
        priv_text: &str,
        priv_file: &str,
    ) -> Result<Self, String> {
        if rec.rdata.len() <= 4 {
            return Err(ERR_KEY.into());
        }
        let owner = Name::from_wire(&rec.owner).map_err(|_| ERR_KEY.to_string())?;
        let mut name = String::new();
        owner.write_presentation(&mut name);
        let signer = private_key(&rec.rdata, priv_text, priv_file)?;
        Ok(Self {
            name,
            owner,
            class: rec.class,
            ttl: rec.ttl,
            tag: key_tag(&rec.rdata),
            rdata: rec.rdata,
            signer,
        })
    }
}

/// miekg's `parseKey`: `Key: value` lines, `;` comments, keys lower-cased.
/// A colon inside a value is dropped, as miekg's lexer drops it.
fn parse_private(text: &str, file: &str) -> Result<HashMap<String, String>, String> {
    let mut m = HashMap::new();
    let mut key: Option<String> = None;
    let (mut line, mut col) = (1usize, 0usize);
    let mut in_key = true;
    let mut comment = false;
    let mut s = String::new();
    let (mut tok_line, mut tok_col) = (1, 0);
    let mut bytes = text.bytes().peekable();
    let mut eol = false;
    let mut emit = |k: &mut Option<String>, tok: String, l: usize, c: usize| match k.take() {
        Some(k) => {
            m.insert(k.to_lowercase(), tok);
            Ok(())
        }
        None => Err(format!(
            "{file}: dns: no private key seen: {:?} at line: {l}:{c}",
            tok
        )),
    };
    while let Some(b) = bytes.next() {
        if eol {
            line += 1;
            col = 0;
            eol = false;
        }
        if b == b'\n' {
            eol = true;
        } else {
            col += 1;
        }
        (tok_line, tok_col) = (line, col);
        match b {
            b':' => {
                if comment || !in_key {
                    continue;
                }
                in_key = false;
                // The character after the colon (a space) is skipped.
                if let Some(n) = bytes.next() {
                    if n == b'\n' {
                        eol = true;
                    } else {
                        col += 1;
                    }
                }
                key = Some(std::mem::take(&mut s));
            }
            b';' => comment = true,
            b'\n' => {
                comment = false;
                if in_key && s.is_empty() {
                    continue;
                }
                in_key = true;
                emit(&mut key, std::mem::take(&mut s), tok_line, tok_col)?;
            }
            _ => {
                if !comment {
                    s.push(char::from(b));
                }
            }
        }
    }
    if !s.is_empty() {
        emit(&mut key, s, tok_line, tok_col)?;
    }
    Ok(m)
}

/// Go's `base64.StdEncoding.DecodeString` error text for a bad value.
fn from_base64(v: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    if crate::zone::rdata::base64(v.as_bytes(), &mut out).is_ok() && v.len() % 4 == 0 {
        return Ok(out);
    }
    let at = v
        .bytes()
        .position(|c| !(c.is_ascii_alphanumeric() || c == b'+' || c == b'/' || c == b'='))
        .unwrap_or(v.len() / 4 * 4);
    Err(format!("illegal base64 data at input byte {at}"))
}

/// miekg's `ReadPrivateKey`, as a ring key pair.
fn private_key(dnskey: &[u8], text: &str, file: &str) -> Result<Signer, String> {
    let m = parse_private(text, file)?;
    match m.get("private-key-format").map(String::as_str) {
        Some("v1.2" | "v1.3") => {}
        _ => return Err(ERR_PRIV_KEY.into()),
    }
    let algo = m
        .get("algorithm")
        .map_or("", |a| a.split(' ').next().unwrap_or(""));
    let algo: u8 = algo.parse().map_err(|_| ERR_PRIV_KEY.to_string())?;
    let field = |k: &str| -> Result<Vec<u8>, String> {
        match m.get(k) {
            Some(v) => from_base64(v),
            None => Ok(Vec::new()),
        }
    };
    let public = &dnskey[4..];
    match algo {
        5 | 7 => Err(format!(
            "algorithm {algo} (RSASHA1) cannot sign in ringdns: RFC 8624 forbids new RSASHA1 signatures"
        )),
        8 | 10 => {
            if dnskey[3] != algo {
                return Err(ERR_KEY.into());
            }
            let (e, n) = rsa_public(public).ok_or(ERR_KEY)?;
            let (d, p, q) = (
                field("privateexponent")?,
                field("prime1")?,
                field("prime2")?,
            );
            let (dp, dq, qi) = (
                field("exponent1")?,
                field("exponent2")?,
                field("coefficient")?,
            );
            if [&p, &q, &dp, &dq, &qi].iter().any(|v| v.is_empty()) {
                return Err(format!(
                    "{ERR_PRIV_KEY}: ringdns needs Prime1, Prime2, Exponent1, Exponent2 and Coefficient"
                ));
            }
            let short = n.len() < 256;
            let comps = ring::rsa::KeyPairComponents {
                public_key: ring::rsa::PublicKeyComponents { n, e },
                d,
                p,
                q,
                dP: dp,
                dQ: dq,
                qInv: qi,
            };
            let k = RsaKeyPair::from_components(&comps).map_err(|e| {
                if short {
                    "RSA keys under 2048 bits cannot sign in ringdns".to_string()
                } else {
                    format!("{ERR_PRIV_KEY}: {e}")
                }
            })?;
            let enc: &'static dyn sig::RsaEncoding = if algo == 8 {
                &sig::RSA_PKCS1_SHA256
            } else {
                &sig::RSA_PKCS1_SHA512
            };
            Ok(Signer::Rsa(k, enc))
        }
        13 | 14 => {
            let (alg, len) = match dnskey[3] {
                13 => (&sig::ECDSA_P256_SHA256_FIXED_SIGNING, 32),
                14 => (&sig::ECDSA_P384_SHA384_FIXED_SIGNING, 48),
                _ => return Err(ERR_KEY.into()),
            };
            if public.len() != 2 * len {
                return Err(ERR_KEY.into());
            }
            let d = field("privatekey")?;
            if d.len() > len {
                return Err(ERR_PRIV_KEY.into());
            }
            let mut scalar = vec![0u8; len - d.len()];
            scalar.extend_from_slice(&d);
            let mut point = Vec::with_capacity(1 + public.len());
            point.push(4);
            point.extend_from_slice(public);
            let k = EcdsaKeyPair::from_private_key_and_public_key(
                alg,
                &scalar,
                &point,
                &SystemRandom::new(),
            )
            .map_err(|e| format!("{ERR_PRIV_KEY}: {e}"))?;
            Ok(Signer::Ecdsa(k))
        }
        15 => {
            let seed = field("privatekey")?;
            if seed.len() != 32 {
                return Err(ERR_PRIV_KEY.into());
            }
            let k = Ed25519KeyPair::from_seed_unchecked(&seed)
                .map_err(|e| format!("{ERR_PRIV_KEY}: {e}"))?;
            if k.public_key().as_ref() != public {
                // miekg derives the public key from the seed and signs with it; a
                // mismatch would sign with a key the DNSKEY does not publish.
                return Err(ERR_KEY.into());
            }
            Ok(Signer::Ed25519(k))
        }
        _ => Err(ERR_ALG.into()),
    }
}

/// RFC 3110 public key: (exponent, modulus).
fn rsa_public(p: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let (elen, rest) = match *p.first()? {
        0 => (usize::from(be16(p, 1)), p.get(3..)?),
        n => (usize::from(n), p.get(1..)?),
    };
    if rest.len() <= elen {
        return None;
    }
    Some((rest[..elen].to_vec(), rest[elen..].to_vec()))
}

// ---------------------------------------------------------------------------
// Signing.

/// Cached signatures of one RRset: full RRSIG records and their validity.
struct Sigs {
    recs: Vec<Vec<u8>>,
    incep: u32,
    expir: u32,
}

/// miekg `RRSIG.ValidityPeriod` at `t` (serial arithmetic over 68-year spans).
fn validity(incep: u32, expir: u32, t: i64) -> bool {
    const YEAR68: i64 = 1 << 31;
    let modi = (i64::from(incep) - t) / YEAR68;
    let mode = (i64::from(expir) - t) / YEAR68;
    let ti = i64::from(incep) + modi * YEAR68;
    let te = i64::from(expir) + mode * YEAR68;
    ti <= t && t <= te
}

/// The bounded signature cache (CoreDNS `cache.Cache`: full → one entry out).
struct SigCache {
    map: HashMap<[u64; 2], Arc<Sigs>>,
    cap: usize,
}

/// The runtime plugin.
pub struct Dnssec {
    inner: Arc<Inner>,
}

struct Inner {
    /// Zones (normalised strings and wire).
    zones: Vec<(String, Name)>,
    keys: Vec<Arc<Key>>,
    split: bool,
    cache: Mutex<SigCache>,
    hasher: std::collections::hash_map::RandomState,
    rng: SystemRandom,
}

/// One record of a message being signed: its bytes in the expanded message or
/// a record made here.
enum Piece {
    Old(std::ops::Range<usize>),
    New(Vec<u8>),
}

/// An RRset in a buffer of uncompressed records: the owner's range, the type,
/// and each record's (start, fixed part, end).
pub(crate) struct Set {
    pub(crate) owner: std::ops::Range<usize>,
    pub(crate) rtype: u16,
    pub(crate) recs: Vec<(usize, usize, usize)>,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `incepExpir`: three hours back, eight days ahead (32-bit serial time).
fn incep_expir(now: i64) -> (u32, u32) {
    ((now - 3 * HOUR) as u32, (now + 8 * DAY) as u32)
}

/// Labels of a wire name (the root has none).
fn label_count(w: &[u8]) -> usize {
    let (mut p, mut n) = (0, 0);
    while p < w.len() && w[p] != 0 {
        n += 1;
        p += 1 + w[p] as usize;
    }
    n
}

/// Offsets of the RDATA names miekg lower-cases in a signature's canonical
/// form (RFC 4034 §6.2 as RFC 6840 corrects it): for each, the offset of
/// the name within the RDATA.
pub(crate) fn canonical_names(rtype: u16, rd: &[u8]) -> Vec<usize> {
    let skip = |at: usize| crate::wire::Name::skip(rd, at).ok();
    let mut out = Vec::new();
    let mut push_names = |start: usize, n: usize| {
        let mut at = start;
        for _ in 0..n {
            if at >= rd.len() {
                return;
            }
            out.push(at);
            match skip(at) {
                Some(e) => at = e,
                None => return,
            }
        }
    };
    match rtype {
        2 | 3 | 4 | 5 | 7 | 8 | 9 | 12 | 39 => push_names(0, 1),
        6 | 14 | 17 => push_names(0, 2),
        15 | 18 | 21 | 36 => push_names(2, 1),
        26 => push_names(2, 2),
        33 => push_names(6, 1),
        24 => push_names(18, 1),
        35 => {
            // NAPTR: order, preference, three character-strings, replacement.
            let mut at = 4;
            for _ in 0..3 {
                match rd.get(at) {
                    Some(&l) => at += 1 + usize::from(l),
                    None => return out,
                }
            }
            push_names(at, 1);
        }
        _ => {}
    }
    out
}

/// Lower-cases the uncompressed wire name at `at` in place (length octets are
/// below `A`, so the whole range folds).
pub(crate) fn lower_name_at(b: &mut [u8], at: usize) {
    if let Ok(end) = Name::skip(b, at) {
        b[at..end].make_ascii_lowercase();
    }
}

impl Dnssec {
    /// Builds the plugin.
    pub fn new(c: &DnssecConfig) -> Self {
        let (mut zsk, mut ksk) = (0, 0);
        for k in &c.keys {
            if k.is_ksk() {
                ksk += 1;
            } else if k.is_zsk() {
                zsk += 1;
            }
        }
        contribute(metrics);
        Self {
            inner: Arc::new(Inner {
                zones: c
                    .zones
                    .iter()
                    .filter_map(|z| Some((z.clone(), Name::parse(z)?)))
                    .collect(),
                keys: c.keys.clone(),
                split: zsk > 0 && ksk > 0,
                cache: Mutex::new(SigCache {
                    map: HashMap::new(),
                    cap: c.capacity,
                }),
                hasher: std::collections::hash_map::RandomState::new(),
                rng: SystemRandom::new(),
            }),
        }
    }

    /// Request hook: DNSKEY at a zone's apex is answered here; a DO query in
    /// the zones has its reply signed.
    pub fn serve(&self, ctx: &mut Ctx<'_>) -> Flow {
        let qname = ctx.req.qname.wire();
        let Some(_) = self.inner.zone_of(qname) else {
            return Flow::Next;
        };
        let do_bit = ctx.do_bit();
        if ctx.req.qtype == DNSKEY {
            if let Some((z, zn)) = self
                .inner
                .zones
                .iter()
                .find(|(_, z)| z.wire().eq_ignore_ascii_case(qname))
            {
                let _ = z;
                let ol = zn.len();
                let recs = self.inner.dnskey_answer(zn, do_bit, ctx.server);
                let mut b = Builder::reply_flags(ctx.resp, &ctx.req, ctx.st.flags);
                b.set_flags(flags::AA);
                b.section(SectionKind::Answer);
                for r in &recs {
                    let (rtype, class, ttl) = (be16(r, ol), be16(r, ol + 2), be32(r, ol + 4));
                    b.rr_wire(&r[..ol], rtype, class, ttl, &r[ol + 10..]);
                }
                b.finish();
                ctx.written = true;
                return Flow::Return(Status::rcode(0));
            }
        }
        if do_bit {
            ctx.st.marks |= SIGN;
        }
        Flow::Next
    }

    /// Response hook: signs the written reply (and every message after it).
    pub fn respond(&self, ctx: &mut Ctx<'_>) {
        if !ctx.written || ctx.st.marks & SIGN == 0 {
            return;
        }
        let server: Arc<str> = Arc::clone(ctx.server);
        if let Some(m) = self.inner.sign_msg(ctx.resp, &server) {
            *ctx.resp = m;
        }
        if let Some(more) = ctx.more.take() {
            let inner = Arc::clone(&self.inner);
            ctx.more = Some(Box::new(more.map(move |m| {
                let signed = inner.sign_msg(&m, &server);
                signed.unwrap_or(m)
            })));
        }
    }
}

impl Inner {
    /// CoreDNS `plugin.Zones.Matches`: the longest zone holding `name`.
    fn zone_of(&self, name: &[u8]) -> Option<&(String, Name)> {
        self.zones
            .iter()
            .filter(|(_, z)| in_zone(name, z.wire()))
            .max_by_key(|(_, z)| z.wire().len())
    }

    /// `getDNSKEY`: the keys with the zone as owner, and their signatures on DO.
    fn dnskey_answer(&self, zname: &Name, do_bit: bool, server: &str) -> Vec<Vec<u8>> {
        let mut recs: Vec<Vec<u8>> = self
            .keys
            .iter()
            .map(|k| record(zname.wire(), DNSKEY, k.class, k.ttl, &k.rdata))
            .collect();
        if do_bit {
            let (incep, expir) = incep_expir(now());
            let mut buf = Vec::new();
            let mut ranges = Vec::new();
            for r in &recs {
                let start = buf.len();
                buf.extend_from_slice(r);
                ranges.push((start, start + zname.len(), buf.len()));
            }
            let set = Set {
                owner: 0..zname.len(),
                rtype: DNSKEY,
                recs: ranges,
            };
            if let Some(sigs) = self.sign(&buf, &set, zname, ORIG_TTL, incep, expir, server) {
                recs.extend(sigs.recs.iter().cloned());
            }
        }
        recs
    }

    /// `Dnssec.sign`: the signatures of `set` (cached), by every key (or, with
    /// split keys, by the KSKs for DNSKEY and the ZSKs otherwise).
    #[allow(clippy::too_many_arguments)]
    fn sign(
        &self,
        msg: &[u8],
        set: &Set,
        signer: &Name,
        ttl: u32,
        incep: u32,
        expir: u32,
        server: &str,
    ) -> Option<Arc<Sigs>> {
        let key = self.cache_key(msg, set);
        let horizon = now() + 2 * DAY;
        {
            let c = self
                .cache
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(s) = c.map.get(&key) {
                if validity(s.incep, s.expir, horizon) {
                    HITS.inc([server.to_owned()]);
                    return Some(Arc::clone(s));
                }
            }
        }
        MISSES.inc([server.to_owned()]);
        let mut recs = Vec::new();
        // With split keys the KSKs sign DNSKEY and the ZSKs everything else.
        let signs = |k: &Key| {
            !self.split
                || if set.rtype == DNSKEY {
                    k.is_ksk()
                } else {
                    k.is_zsk()
                }
        };
        for k in self.keys.iter().filter(|k| signs(k)) {
            recs.push(rrsig(
                k,
                &self.rng,
                msg,
                set,
                signer,
                [ttl, ORIG_TTL],
                [incep, expir],
            )?);
        }
        let sigs = Arc::new(Sigs { recs, incep, expir });
        if !sigs.recs.is_empty() {
            let mut c = self
                .cache
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if c.map.len() >= c.cap && !c.map.contains_key(&key) {
                if let Some(k) = c.map.keys().next().copied() {
                    c.map.remove(&k);
                }
            }
            c.map.insert(key, Arc::clone(&sigs));
        }
        Some(sigs)
    }

    /// A 128-bit key for the RRset as written (owner case, TTL and RDATA, like
    /// CoreDNS's hash of the records' text).
    fn cache_key(&self, msg: &[u8], set: &Set) -> [u64; 2] {
        let mut fnv: u64 = 0xcbf2_9ce4_8422_2325;
        let mut sip = self.hasher.build_hasher();
        for &(s, _, e) in &set.recs {
            for &b in &msg[s..e] {
                fnv = (fnv ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
            sip.write(&msg[s..e]);
            sip.write_u8(0xff);
        }
        [fnv, sip.finish()]
    }

    /// `Dnssec.Sign` over a written reply; `None` leaves it as it is.
    fn sign_msg(&self, m: &[u8], server: &str) -> Option<Vec<u8>> {
        if m.len() < HEADER_LEN || hdr::counts(m)[0] == 0 {
            return None;
        }
        let idx0 = MsgIndex::parse(m)?;
        let mut x = Vec::with_capacity(m.len() + 64);
        expand(m, &idx0, &mut x);
        let idx = MsgIndex::parse(&x)?;
        let qend = Name::skip(&x, HEADER_LEN).ok()?;
        let qname = x[HEADER_LEN..qend].to_vec();
        let qtype = be16(&x, qend);
        let (_, zone) = self.zone_of(&qname)?;
        let zone = zone.clone();
        let (incep, expir) = incep_expir(now());
        let mt = typify(&x, &idx);
        let mut sections: [Vec<Piece>; 3] = Default::default();
        for r in &idx.rrs {
            sections[usize::from(r.section) - 1].push(Piece::Old(r.start as usize..r.end as usize));
        }
        let mut rcode = None;
        let ns: Vec<_> = idx.section(2).copied().collect();
        match mt {
            RespType::Delegation => {
                let first = ns.first()?;
                let ttl = first.ttl;
                let ds: Vec<_> = ns.iter().filter(|r| r.rtype == DS).collect();
                if ds.is_empty() {
                    let nsec = self.nsec(&qname, qtype, &zone, mt, ttl, incep, expir, server);
                    sections[1].extend(nsec.into_iter().flatten().map(Piece::New));
                } else {
                    let set = Set {
                        owner: ds[0].start as usize..ds[0].fixed as usize,
                        rtype: DS,
                        recs: ds
                            .iter()
                            .map(|r| (r.start as usize, r.fixed as usize, r.end as usize))
                            .collect(),
                    };
                    if let Some(s) = self.sign(&x, &set, &zone, ttl, incep, expir, server) {
                        sections[1].extend(s.recs.iter().cloned().map(Piece::New));
                    }
                }
            }
            RespType::NameError | RespType::NoData => {
                if ns.len() != 1 || ns[0].rtype != SOA {
                    return None;
                }
                let soa = ns[0];
                let ttl = soa.ttl;
                let set = Set {
                    owner: soa.start as usize..soa.fixed as usize,
                    rtype: SOA,
                    recs: vec![(soa.start as usize, soa.fixed as usize, soa.end as usize)],
                };
                if let Some(s) = self.sign(&x, &set, &zone, ttl, incep, expir, server) {
                    sections[1].extend(s.recs.iter().cloned().map(Piece::New));
                }
                let nsec = self.nsec(&qname, qtype, &zone, mt, ttl, incep, expir, server);
                sections[1].extend(nsec.into_iter().flatten().map(Piece::New));
                if sections[1].len() > 1 {
                    rcode = Some(0);
                    if qtype == NSEC {
                        let n = sections[1].len();
                        let tail: Vec<Piece> = sections[1].drain(n - 2..).collect();
                        sections[0] = tail;
                        sections[1].clear();
                    }
                }
            }
            _ => {
                for s in 0..3u8 {
                    let mut added = Vec::new();
                    for set in rr_sets(&x, &idx, s + 1) {
                        let owner = &x[set.owner.clone()];
                        let Some((_, signer)) = self.zone_of(owner) else {
                            continue;
                        };
                        let ttl = be32(&x, set.recs[0].1 + 4);
                        if let Some(sg) = self.sign(&x, &set, signer, ttl, incep, expir, server) {
                            added.extend(sg.recs.iter().cloned().map(Piece::New));
                        }
                    }
                    sections[usize::from(s)].extend(added);
                }
            }
        }
        let mut out = Vec::with_capacity(x.len() + 256);
        out.extend_from_slice(&x[..idx.question_end]);
        for (i, sec) in sections.iter().enumerate() {
            let n = u16::try_from(sec.len()).ok()?;
            hdr::set_count(&mut out, i + 1, n);
            for p in sec {
                match p {
                    Piece::Old(r) => out.extend_from_slice(&x[r.clone()]),
                    Piece::New(v) => out.extend_from_slice(v),
                }
            }
        }
        if let Some(rc) = rcode {
            hdr::set_rcode(&mut out, rc);
        }
        let entries = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .map
            .len();
        set_entries(server, entries);
        Some(out)
    }

    /// `Dnssec.nsec`: the black lie at the query name, its signatures first.
    #[allow(clippy::too_many_arguments)]
    fn nsec(
        &self,
        qname: &[u8],
        qtype: u16,
        zone: &Name,
        mt: RespType,
        ttl: u32,
        incep: u32,
        expir: u32,
        server: &str,
    ) -> Option<Vec<Vec<u8>>> {
        let apex = qname.eq_ignore_ascii_case(zone.wire());
        let mut next: Vec<u8> = Vec::with_capacity(qname.len() + 2);
        let bitmap: Vec<u16> = if apex {
            filter(qtype, &APEX_BITMAP, mt)
        } else if mt == RespType::Delegation || qtype == DS {
            DELEGATION_BITMAP.to_vec()
        } else {
            filter(qtype, &ZONE_BITMAP, mt)
        };
        if !apex && mt == RespType::Delegation {
            // The first label with a zero octet appended.
            let l = usize::from(*qname.first()?);
            if l == 0 || l >= 63 {
                return None;
            }
            next.push(u8::try_from(l + 1).ok()?);
            next.extend_from_slice(&qname[1..=l]);
            next.push(0);
            next.extend_from_slice(&qname[1 + l..]);
        } else {
            next.extend_from_slice(&[1, 0]);
            if qname != [0] {
                next.extend_from_slice(qname);
            } else {
                next.push(0);
            }
        }
        if next.len() > MAX_NAME {
            return None;
        }
        let mut rd = next;
        type_bitmap(&bitmap, &mut rd);
        let rec = record(qname, NSEC, 1, ttl, &rd);
        let set = Set {
            owner: 0..qname.len(),
            rtype: NSEC,
            recs: vec![(0, qname.len(), rec.len())],
        };
        let sigs = self.sign(&rec, &set, zone, ttl, incep, expir, server)?;
        let mut out: Vec<Vec<u8>> = sigs.recs.clone();
        out.push(rec);
        Some(out)
    }
}

/// One RRSIG record over `set` (records in `msg`) by key `k` (miekg
/// `RRSIG.Sign`): `ttls` is the record's TTL and the original TTL, `times` the
/// inception and expiration.
pub(crate) fn rrsig(
    k: &Key,
    rng: &SystemRandom,
    msg: &[u8],
    set: &Set,
    signer: &Name,
    ttls: [u32; 2],
    times: [u32; 2],
) -> Option<Vec<u8>> {
    let [ttl, orig_ttl] = ttls;
    let [incep, expir] = times;
    let owner = &msg[set.owner.clone()];
    let (_, first_fixed, _) = *set.recs.first()?;
    let class = be16(msg, first_fixed + 2);
    let mut labels = label_count(owner);
    if owner.len() > 1 && owner[1] == b'*' {
        labels -= 1;
    }
    let labels = u8::try_from(labels).ok()?;
    // RRSIG RDATA without the signature.
    let mut rd = Vec::with_capacity(18 + signer.len() + 128);
    rd.extend_from_slice(&set.rtype.to_be_bytes());
    rd.push(k.algorithm());
    rd.push(labels);
    rd.extend_from_slice(&orig_ttl.to_be_bytes());
    rd.extend_from_slice(&expir.to_be_bytes());
    rd.extend_from_slice(&incep.to_be_bytes());
    rd.extend_from_slice(&k.tag.to_be_bytes());
    rd.extend_from_slice(signer.wire());
    let mut data = rd.clone();
    let at = data.len() - signer.len();
    lower_name_at(&mut data, at);
    // The records in canonical form, sorted by RDATA, duplicates once.
    let canon_owner = canonical_owner(owner, usize::from(labels));
    let mut wires: Vec<Vec<u8>> = Vec::with_capacity(set.recs.len());
    for &(_, fixed, end) in &set.recs {
        let mut w = canon_owner.clone();
        let o = w.len();
        w.extend_from_slice(&msg[fixed..fixed + 4]);
        w.extend_from_slice(&orig_ttl.to_be_bytes());
        w.extend_from_slice(&msg[fixed + 8..end]);
        let rd_at = o + 10;
        for n in canonical_names(set.rtype, &msg[fixed + 10..end]) {
            lower_name_at(&mut w, rd_at + n);
        }
        wires.push(w);
    }
    let ol = canon_owner.len() + 10;
    wires.sort_by(|a, b| a[ol..].cmp(&b[ol..]));
    wires.dedup();
    for w in &wires {
        data.extend_from_slice(w);
    }
    let signature = k.sign(rng, &data)?;
    rd.extend_from_slice(&signature);
    Some(record(owner, RRSIG, class, ttl, &rd))
}

/// The signature's canonical owner: lower case, and `*.` before the last
/// `labels` labels when the owner has more (a wildcard's expansion).
fn canonical_owner(owner: &[u8], labels: usize) -> Vec<u8> {
    let n = label_count(owner);
    let mut w = if n > labels {
        let mut p = 0;
        for _ in 0..n - labels {
            p += 1 + owner[p] as usize;
        }
        let mut w = vec![1, b'*'];
        w.extend_from_slice(&owner[p..]);
        w
    } else {
        owner.to_vec()
    };
    w.make_ascii_lowercase();
    w
}

/// A record in wire form (uncompressed owner).
pub(crate) fn record(owner: &[u8], rtype: u16, class: u16, ttl: u32, rdata: &[u8]) -> Vec<u8> {
    let mut r = Vec::with_capacity(owner.len() + 10 + rdata.len());
    r.extend_from_slice(owner);
    r.extend_from_slice(&rtype.to_be_bytes());
    r.extend_from_slice(&class.to_be_bytes());
    r.extend_from_slice(&ttl.to_be_bytes());
    r.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    r.extend_from_slice(rdata);
    r
}

/// `rrSets`: the section's records grouped by owner (as written) and type, in
/// order of first appearance, without RRSIG and OPT records.
fn rr_sets(x: &[u8], idx: &MsgIndex, section: u8) -> Vec<Set> {
    let mut sets: Vec<Set> = Vec::new();
    for r in idx.section(section) {
        if r.rtype == RRSIG || r.rtype == OPT {
            continue;
        }
        let (s, f, e) = (r.start as usize, r.fixed as usize, r.end as usize);
        match sets
            .iter_mut()
            .find(|t| t.rtype == r.rtype && x[t.owner.clone()] == x[s..f])
        {
            Some(t) => t.recs.push((s, f, e)),
            None => sets.push(Set {
                owner: s..f,
                rtype: r.rtype,
                recs: vec![(s, f, e)],
            }),
        }
    }
    sets
}

const DELEGATION_BITMAP: [u16; 15] = [1, 2, 13, 16, 28, 29, 33, 37, 44, 46, 47, 52, 55, 61, 99];
const ZONE_BITMAP: [u16; 14] = [1, 13, 16, 28, 29, 33, 37, 44, 46, 47, 52, 55, 61, 99];
const APEX_BITMAP: [u16; 18] = [
    1, 2, 6, 13, 15, 16, 28, 29, 33, 37, 44, 46, 47, 48, 52, 55, 61, 99,
];

/// `filter14`/`filter18`: the bitmap without the query type, for denials.
fn filter(t: u16, bitmap: &[u16], mt: RespType) -> Vec<u16> {
    if (mt != RespType::NoData && mt != RespType::NameError) || t == NSEC {
        return bitmap.to_vec();
    }
    bitmap.iter().copied().filter(|&b| b != t).collect()
}

/// RFC 4034 §4.1.2 type bitmap of sorted `types`.
pub(crate) fn type_bitmap(types: &[u16], out: &mut Vec<u8>) {
    let mut window: Option<(u8, [u8; 32], usize)> = None;
    let flush = |w: &(u8, [u8; 32], usize), out: &mut Vec<u8>| {
        out.push(w.0);
        out.push(w.2 as u8);
        out.extend_from_slice(&w.1[..w.2]);
    };
    for &t in types {
        let (win, bit) = ((t >> 8) as u8, (t & 0xff) as usize);
        if window.as_ref().is_some_and(|w| w.0 != win) {
            if let Some(w) = window.take() {
                flush(&w, out);
            }
        }
        let w = window.get_or_insert((win, [0; 32], 0));
        w.1[bit / 8] |= 0x80 >> (bit % 8);
        w.2 = w.2.max(bit / 8 + 1);
    }
    if let Some(w) = window {
        flush(&w, out);
    }
}

impl Dnssec {
    /// A plugin for `zones` signing with `keys` (benches and tools; the Corefile
    /// path is [`setup`]).
    pub fn with_keys(zones: &[&str], keys: Vec<Key>, capacity: usize) -> Self {
        Self::new(&DnssecConfig {
            zones: zones.iter().map(|z| (*z).to_owned()).collect(),
            keys: keys.into_iter().map(Arc::new).collect(),
            capacity,
        })
    }

    /// Signs `reply` as the response hook does (`None`: left as it is).
    pub fn sign_reply(&self, reply: &[u8], server: &str) -> Option<Vec<u8>> {
        self.inner.sign_msg(reply, server)
    }
}

/// Signs any message as a reply (the fuzz target's body; panics are bugs), with
/// an Ed25519 key for the root zone, so every owner is in the zones.
pub fn fuzz_one(msg: &[u8]) {
    static PLUGIN: std::sync::OnceLock<Option<Dnssec>> = std::sync::OnceLock::new();
    let p = PLUGIN.get_or_init(|| {
        let k = Ed25519KeyPair::from_seed_unchecked(&[7; 32]).ok()?;
        let mut rdata = vec![1, 0, 3, 15];
        rdata.extend_from_slice(k.public_key().as_ref());
        let key = Key {
            name: ".".into(),
            owner: Name::root(),
            class: 1,
            ttl: 3600,
            tag: key_tag(&rdata),
            rdata,
            signer: Signer::Ed25519(k),
        };
        Some(Dnssec::new(&DnssecConfig {
            zones: vec![".".into()],
            keys: vec![Arc::new(key)],
            capacity: 1024,
        }))
    });
    if let Some(p) = p {
        if let Some(out) = p.inner.sign_msg(msg, "fuzz") {
            // The signed message indexes.
            assert!(
                MsgIndex::parse(&out).is_some(),
                "signed reply does not parse"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Metrics.

static HITS: LabelCounts<1> = LabelCounts::new(
    "coredns_dnssec_cache_hits_total",
    "The count of cache hits.",
    ["server"],
);
static MISSES: LabelCounts<1> = LabelCounts::new(
    "coredns_dnssec_cache_misses_total",
    "The count of cache misses.",
    ["server"],
);
/// `coredns_dnssec_cache_entries{server,type="signature"}`.
static ENTRIES: Mutex<Vec<(String, usize)>> = Mutex::new(Vec::new());

fn set_entries(server: &str, n: usize) {
    let mut e = ENTRIES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match e.iter_mut().find(|(s, _)| s == server) {
        Some(x) => x.1 = n,
        None => e.push((server.to_owned(), n)),
    }
}

fn metrics(f: &mut Families) {
    HITS.add_to(f);
    MISSES.add_to(f);
    let e = ENTRIES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    for (s, n) in e {
        crate::metrics::add(
            f,
            "coredns_dnssec_cache_entries",
            "The number of elements in the dnssec cache.",
            "gauge",
            "",
            &[("server", &s), ("type", "signature")],
            n as f64,
        );
    }
}
