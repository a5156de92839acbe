//! *tsig*: TSIG (RFC 8945) for the block's zones (plugins.md §tsig). The
//! listener verifies a signed request against the secrets of every *tsig* on it
//! (miekg's transport-level check); this plugin refuses unsigned requests of
//! the required types and opcodes, answers NOTAUTH with the TSIG error (BADKEY,
//! BADSIG, BADTIME) for a signature that does not verify, strips the TSIG
//! record so the plugins after it never see it, and signs the reply (every
//! message of a zone transfer) with the request's key.
//!
//! CoreDNS: `plugin/tsig/`; miekg/dns `tsig.go` and the server's signing writer.

use std::time::{SystemTime, UNIX_EPOCH};

use corefile::{Diagnostic, Dispenser};
use hmac::{Hmac, Mac};

use crate::chain::{Ctx, Flow, Status, client_write};
use crate::config::SetupCtx;
use crate::wire::index::MsgIndex;
use crate::wire::{HEADER_LEN, Name, Verdict, hdr, parse_query, types};

/// TSIG's RR type.
const TSIG: u16 = 250;
/// TSIG errors (RFC 8945 §5.3).
const BADSIG: u16 = 16;
const BADKEY: u16 = 17;
const BADTIME: u16 = 18;

/// Parsed configuration.
#[derive(Debug, Clone, Default)]
pub struct TsigConfig {
    /// Zones the requirements apply to.
    pub zones: Vec<String>,
    /// Key name (lower case, fully qualified) → base64 secret.
    pub secrets: Vec<(String, String)>,
    types: Vec<u16>,
    all_types: bool,
    opcodes: Vec<u8>,
    all_opcodes: bool,
}

/// miekg `StringToOpcode`.
fn opcode_from_str(s: &str) -> Option<u8> {
    Some(match s {
        "QUERY" => 0,
        "IQUERY" => 1,
        "STATUS" => 2,
        "NOTIFY" => 4,
        "UPDATE" => 5,
        _ => return None,
    })
}

/// CoreDNS's `plugin.Name(s).Normalize()`: lower case, fully qualified.
fn normalize(s: &str) -> String {
    let l = s.to_lowercase();
    if l.ends_with('.') { l } else { format!("{l}.") }
}

/// Setup. CoreDNS reports every parse error as an argument error at the token
/// where parsing stopped (`plugin.Error("tsig", c.ArgErr())`).
pub fn setup(d: &mut Dispenser, ctx: &SetupCtx<'_>) -> Result<TsigConfig, Diagnostic> {
    parse(d, ctx).map_err(|()| d.arg_err().in_plugin("tsig"))
}

fn parse(d: &mut Dispenser, ctx: &SetupCtx<'_>) -> Result<TsigConfig, ()> {
    let mut t = TsigConfig::default();
    let mut i = 0;
    while d.next() {
        if i > 0 {
            return Err(());
        }
        i += 1;
        t.zones = ctx.origins(&d.remaining_args());
        while d.next_block() {
            match d.val() {
                "secret" => {
                    let args = d.remaining_args();
                    let [name, secret] = args.as_slice() else {
                        return Err(());
                    };
                    add_secret(&mut t.secrets, normalize(name), secret.clone())?;
                }
                "secrets" => {
                    let args = d.remaining_args();
                    let [file] = args.as_slice() else {
                        return Err(());
                    };
                    let text = std::fs::read_to_string(file).map_err(|_| ())?;
                    for (k, s) in parse_key_file(&text).map_err(|_| ())? {
                        add_secret(&mut t.secrets, k, s)?;
                    }
                }
                "require" => {
                    let args = d.remaining_args();
                    requirement(
                        &args,
                        &mut t.types,
                        &mut t.all_types,
                        types::miekg_type_from_str,
                    )?;
                }
                "require_opcode" => {
                    let args = d.remaining_args();
                    requirement(&args, &mut t.opcodes, &mut t.all_opcodes, opcode_from_str)?;
                }
                _ => return Err(()),
            }
        }
    }
    Ok(t)
}

/// `require` / `require_opcode`: `all`, `none`, or a list of names (which replaces
/// the earlier list).
fn requirement<T>(
    args: &[String],
    list: &mut Vec<T>,
    all: &mut bool,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<(), ()> {
    list.clear();
    match args.first().map(String::as_str) {
        None => return Err(()),
        Some("all") => *all = true,
        Some("none") => {}
        Some(_) => {
            for a in args {
                list.push(parse(a).ok_or(())?);
            }
        }
    }
    Ok(())
}

fn add_secret(v: &mut Vec<(String, String)>, k: String, s: String) -> Result<(), ()> {
    if v.iter().any(|(n, _)| *n == k) {
        return Err(());
    }
    v.push((k, s));
    Ok(())
}

/// CoreDNS's `parseKeyFile`: BIND `key "name" { algorithm …; secret "…"; };`
/// blocks, one statement per line (the algorithm is ignored).
pub fn parse_key_file(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let Some(first) = f.first() else { continue };
        if *first != "key" {
            return Err(format!("unexpected token {first:?}"));
        }
        let key = f
            .get(1)
            .map_or("", |k| k.trim_matches(|c| c == '"' || c == '{'));
        if key.is_empty() {
            return Err(format!("expected key name {line:?}"));
        }
        let key = normalize(key);
        if out.iter().any(|(k, _)| *k == key) {
            return Err(format!("key {key:?} redefined"));
        }
        let mut secret = None;
        for line in lines.by_ref() {
            let f: Vec<&str> = line.split_whitespace().collect();
            let Some(first) = f.first() else { continue };
            match *first {
                "algorithm" => {}
                "secret" => {
                    let s = f
                        .get(1)
                        .map_or("", |s| s.trim_matches(|c| c == '"' || c == ';'));
                    if s.is_empty() {
                        return Err(format!("expected secret key {line:?}"));
                    }
                    secret = Some(s.to_owned());
                }
                "}" | "};" => break,
                other => return Err(format!("unexpected token {other:?}")),
            }
        }
        let Some(s) = secret else {
            return Err(format!("expected secret for key {key:?}"));
        };
        out.push((key, s));
    }
    Ok(out)
}

/// The runtime plugin.
pub struct Tsig {
    zones: Vec<Name>,
    types: Vec<u16>,
    all_types: bool,
    opcodes: Vec<u8>,
    all_opcodes: bool,
}

/// A request's TSIG record.
#[derive(Debug, Clone)]
struct Record {
    /// Offset of the record (the request ends there once it is stripped).
    start: usize,
    /// The key name as sent (wire, original case).
    key: Name,
    /// The algorithm name as sent.
    alg: Name,
    time: u64,
    fudge: u16,
    mac: Vec<u8>,
    orig_id: u16,
    error: u16,
    other: Vec<u8>,
}

/// How the reply is signed (carried in the request context).
#[derive(Debug, Clone)]
pub struct Sign {
    key: Name,
    alg: Name,
    /// The request's MAC (the first message's digest starts with it); then the
    /// previous message's MAC, for the messages of a stream.
    prev_mac: Vec<u8>,
    /// The TSIG error of the reply.
    error: u16,
    /// BADTIME: the client's time (echoed as the time signed).
    client_time: u64,
    /// The key's base64 secret (`None`: the key is unknown).
    secret: Option<String>,
    /// Messages signed so far (after the first, only the timers are digested).
    signed: usize,
}

/// The last additional record, if it is a TSIG (miekg `IsTsig`).
fn find(msg: &[u8]) -> Option<Record> {
    // Most queries carry no additional record at all: skip the index.
    if msg.len() < HEADER_LEN || hdr::counts(msg)[3] == 0 {
        return None;
    }
    let idx = MsgIndex::parse(msg)?;
    let rr = idx
        .rrs
        .last()
        .filter(|r| r.section == 3 && r.rtype == TSIG)?;
    let (key, _) = Name::read(msg, rr.start as usize).ok()?;
    let mut off = rr.fixed as usize + 10;
    let (alg, next) = Name::read(msg, off).ok()?;
    off = next;
    let end = rr.end as usize;
    let rd = msg.get(off..end)?;
    if rd.len() < 10 {
        return None;
    }
    let time = (u64::from(crate::wire::be16(rd, 0)) << 32) | u64::from(crate::wire::be32(rd, 2));
    let fudge = crate::wire::be16(rd, 6);
    let mac_len = usize::from(crate::wire::be16(rd, 8));
    let mac = rd.get(10..10 + mac_len)?.to_vec();
    let rest = rd.get(10 + mac_len..)?;
    if rest.len() < 6 {
        return None;
    }
    let orig_id = crate::wire::be16(rest, 0);
    let error = crate::wire::be16(rest, 2);
    let other_len = usize::from(crate::wire::be16(rest, 4));
    let other = rest.get(6..6 + other_len)?.to_vec();
    Some(Record {
        start: rr.start as usize,
        key,
        alg,
        time,
        fudge,
        mac,
        orig_id,
        error,
        other,
    })
}

/// Reads a TSIG record from any message, verifies it against a fixed key and
/// signs a reply with it (the fuzz target's body; panics are bugs).
pub fn fuzz_one(msg: &[u8]) {
    let Some(r) = find(msg) else { return };
    let secrets = [(r.key.to_string(), "c2VjcmV0".to_owned())];
    let (error, secret) = verify(msg, &r, &secrets);
    let mut s = Sign {
        key: r.key.clone(),
        alg: r.alg.clone(),
        prev_mac: r.mac.clone(),
        error,
        client_time: r.time,
        secret,
        signed: 0,
    };
    let mut reply = msg[..r.start.min(msg.len())].to_vec();
    s.sign(&mut reply);
    s.sign(&mut reply);
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn b64(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    crate::zone::rdata::base64(s.as_bytes(), &mut out).ok()?;
    Some(out)
}

/// The HMAC of `data` under `alg` (miekg's names; `None`: an algorithm it does
/// not know, or a secret that is not base64).
fn hmac(alg: &Name, secret: &str, data: &[u8]) -> Option<Vec<u8>> {
    let key = b64(secret)?;
    let a = alg.to_lowercase().to_string();
    macro_rules! run {
        ($h:ty) => {{
            let mut m = <Hmac<$h> as Mac>::new_from_slice(&key).ok()?;
            m.update(data);
            Some(m.finalize().into_bytes().to_vec())
        }};
    }
    match a.as_str() {
        "hmac-md5.sig-alg.reg.int." => run!(md5::Md5),
        "hmac-sha1." => run!(sha1::Sha1),
        "hmac-sha224." => run!(sha2::Sha224),
        "hmac-sha256." => run!(sha2::Sha256),
        "hmac-sha384." => run!(sha2::Sha384),
        "hmac-sha512." => run!(sha2::Sha512),
        _ => None,
    }
}

/// The TSIG variables (RFC 8945 §4.3.3), or only the timers.
#[allow(clippy::too_many_arguments)]
fn variables(
    out: &mut Vec<u8>,
    key: &Name,
    alg: &Name,
    time: u64,
    fudge: u16,
    error: u16,
    other: &[u8],
    timers_only: bool,
) {
    if !timers_only {
        out.extend_from_slice(key.to_lowercase().wire());
        out.extend_from_slice(&255u16.to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(alg.to_lowercase().wire());
    }
    out.extend_from_slice(&time.to_be_bytes()[2..]);
    out.extend_from_slice(&fudge.to_be_bytes());
    if !timers_only {
        out.extend_from_slice(&error.to_be_bytes());
        out.extend_from_slice(&(other.len() as u16).to_be_bytes());
        out.extend_from_slice(other);
    }
}

/// miekg's `TsigVerify` of `msg` against the listener's secrets: `0` or the
/// TSIG error the reply carries, and the key's secret.
fn verify(msg: &[u8], r: &Record, secrets: &[(String, String)]) -> (u16, Option<String>) {
    // miekg looks the key up by the name as the request wrote it.
    let name = r.key.to_string();
    let Some(secret) = secrets
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, s)| s.clone())
    else {
        return (BADKEY, None);
    };
    let mut buf = Vec::with_capacity(r.start + 64);
    strip(msg, r, &mut buf);
    buf[..2].copy_from_slice(&r.orig_id.to_be_bytes());
    variables(
        &mut buf, &r.key, &r.alg, r.time, r.fudge, r.error, &r.other, false,
    );
    let Some(mac) = hmac(&r.alg, &secret, &buf) else {
        return (BADSIG, Some(secret));
    };
    if mac.len() != r.mac.len() || !constant_eq(&mac, &r.mac) {
        return (BADSIG, Some(secret));
    }
    let now = now();
    if now.abs_diff(r.time) > u64::from(r.fudge) {
        return (BADTIME, Some(secret));
    }
    (0, Some(secret))
}

/// `msg` without its TSIG record (`r`, the last one) into `out`.
fn strip(msg: &[u8], r: &Record, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&msg[..r.start]);
    let ar = hdr::counts(out)[3];
    hdr::set_count(out, 3, ar.saturating_sub(1));
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Tsig {
    /// Builds it.
    pub fn new(c: &TsigConfig) -> Self {
        Self {
            zones: c.zones.iter().filter_map(|z| Name::parse(z)).collect(),
            types: c.types.clone(),
            all_types: c.all_types,
            opcodes: c.opcodes.clone(),
            all_opcodes: c.all_opcodes,
        }
    }

    fn required(&self, qtype: u16, opcode: u8) -> bool {
        self.all_types
            || self.types.contains(&qtype)
            || self.all_opcodes
            || self.opcodes.contains(&opcode)
    }

    fn in_zones(&self, ctx: &Ctx<'_>) -> bool {
        self.zones
            .iter()
            .any(|z| ctx.req.qname.name().is_subdomain_of(z))
    }

    /// Request hook.
    pub fn serve(&self, ctx: &mut Ctx<'_>) -> Flow {
        let rec = find(ctx.req.msg);
        if (rec.is_none() && !self.required(ctx.req.qtype, ctx.req.opcode())) || !self.in_zones(ctx)
        {
            return Flow::Next;
        }
        // Unsigned where required: REFUSED; a signature that does not verify: NOTAUTH.
        let rcode = match rec {
            None => 5,
            Some(rec) if self.strip_and_verify(ctx, &rec) != 0 => 9,
            Some(_) => return Flow::Next,
        };
        let mut b = ctx.reply();
        b.set_rcode(rcode);
        b.finish();
        ctx.written = true;
        Flow::Return(Status::rcode(0))
    }

    /// Removes the TSIG record from the request the plugins after this one see,
    /// and records how to sign the reply. Returns the TSIG error.
    fn strip_and_verify(&self, ctx: &mut Ctx<'_>, rec: &Record) -> u16 {
        let msg = ctx.req.msg;
        let secrets: &[(String, String)] = ctx.disp.map_or(&[], |d| &d.tsig);
        let (error, secret) = verify(msg, rec, secrets);
        ctx.tsig = Some(Box::new(Sign {
            key: rec.key.clone(),
            alg: rec.alg.clone(),
            prev_mac: rec.mac.clone(),
            error,
            client_time: rec.time,
            secret,
            signed: 0,
        }));
        if let Some(buf) = ctx.tsig_buf.take() {
            strip(msg, rec, buf);
            let buf: &[u8] = buf;
            if let Verdict::Query(r) = parse_query(buf) {
                ctx.req = r;
            }
        }
        error
    }

    /// A parked query resumes on the message as received: strip it again.
    pub fn reapply(&self, ctx: &mut Ctx<'_>) {
        if !self.in_zones(ctx) {
            return;
        }
        if let Some(rec) = find(ctx.req.msg) {
            self.strip_and_verify(ctx, &rec);
        }
    }

    /// Response hook: an error the plugins after it returned without writing is
    /// written here, so it is signed (CoreDNS's `errorFunc` would not sign it).
    pub fn respond(ctx: &mut Ctx<'_>, st: &mut Status) {
        if ctx.tsig.is_none() || ctx.written || client_write(st.rcode) {
            return;
        }
        let mut b = ctx.reply();
        b.set_rcode((st.rcode & 0xf) as u8);
        b.finish();
        ctx.written = true;
        st.rcode = 0;
    }
}

impl Sign {
    /// Appends the TSIG record to `msg` (miekg's `TsigGenerate`): the first message
    /// digests the request MAC and every variable, the following ones of a stream
    /// the previous MAC and the timers only. BADKEY and BADSIG replies are not
    /// signed.
    pub fn sign(&mut self, msg: &mut Vec<u8>) {
        if msg.len() < HEADER_LEN {
            return;
        }
        let id = crate::wire::be16(msg, 0);
        let fudge = 300u16;
        let (time, other) = if self.error == BADTIME {
            (self.client_time, now().to_be_bytes()[2..].to_vec())
        } else {
            (now(), Vec::new())
        };
        let mut mac = Vec::new();
        let mut time_signed = 0;
        if self.error != BADKEY && self.error != BADSIG {
            if let Some(secret) = &self.secret {
                let mut buf = Vec::with_capacity(msg.len() + 128);
                buf.extend_from_slice(&(self.prev_mac.len() as u16).to_be_bytes());
                buf.extend_from_slice(&self.prev_mac);
                buf.extend_from_slice(msg);
                variables(
                    &mut buf,
                    &self.key,
                    &self.alg,
                    time,
                    fudge,
                    self.error,
                    &other,
                    self.signed > 0,
                );
                if let Some(m) = hmac(&self.alg, secret, &buf) {
                    mac = m;
                    time_signed = time;
                }
            }
        }
        msg.extend_from_slice(self.key.wire());
        msg.extend_from_slice(&TSIG.to_be_bytes());
        msg.extend_from_slice(&255u16.to_be_bytes());
        msg.extend_from_slice(&0u32.to_be_bytes());
        let rdlen = self.alg.len() + 16 + mac.len() + other.len();
        msg.extend_from_slice(&(rdlen as u16).to_be_bytes());
        msg.extend_from_slice(self.alg.wire());
        msg.extend_from_slice(&time_signed.to_be_bytes()[2..]);
        msg.extend_from_slice(&fudge.to_be_bytes());
        msg.extend_from_slice(&(mac.len() as u16).to_be_bytes());
        msg.extend_from_slice(&mac);
        msg.extend_from_slice(&id.to_be_bytes());
        msg.extend_from_slice(&self.error.to_be_bytes());
        msg.extend_from_slice(&(other.len() as u16).to_be_bytes());
        msg.extend_from_slice(&other);
        let ar = hdr::counts(msg)[3];
        hdr::set_count(msg, 3, ar.saturating_add(1));
        if !mac.is_empty() {
            self.prev_mac = mac;
        }
        self.signed += 1;
    }
}

#[cfg(test)]
mod tests;
