//! *autopath*: follows a client's search path on the server (plugins.md B).
//!
//! A query under the plugin's zones whose name is the first search domain or
//! below it (`base.<search[0]>`) is tried as `base.<s>` for every search domain
//! `s` of the resolv.conf file, then `base.` itself, through the plugins after
//! *autopath*. The first reply that is written and is not NXDOMAIN answers,
//! with a CNAME from the asked name to the name found put first; when every try
//! fails, the first try's reply answers. `@PLUGIN` takes the search path from a
//! plugin (only *kubernetes* provides one; it is not built, so `@NAME` of another
//! plugin of the block fails at startup as in CoreDNS, and of a plugin not in the
//! block does nothing).
//!
//! CoreDNS: `plugin/autopath/autopath.go`, `cname.go`, `setup.go`.

use corefile::{Diagnostic, Dispenser};

use crate::chain::{Ctx, Flow, Next, client_write};
use crate::config::SetupCtx;
use crate::wire::index::{MsgIndex, expand};
use crate::wire::request::{Verdict, parse_query};
use crate::wire::{HEADER_LEN, Name, hdr};

/// The configuration (also the run-time plugin).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Autopath {
    /// Zones (lower-case, fully qualified).
    pub zones: Vec<Name>,
    /// The search path, lower-case and fully qualified, then the root (CoreDNS's
    /// `""` sentinel). Empty: nothing to do.
    pub search: Vec<Name>,
    /// `@PLUGIN`: the plugin that would give the search path.
    pub from_plugin: Option<String>,
    /// `@kubernetes` in a block with *kubernetes*: the search path of the client's pod.
    pub k8s: Option<crate::plugins::kubernetes::AutoPathSource>,
}

/// `autopath [ZONES...] RESOLV-CONF|@PLUGIN`, every line of the block (the last
/// one's settings win, as CoreDNS's loop leaves them).
pub fn setup(d: &mut Dispenser, ctx: &SetupCtx<'_>) -> Result<Autopath, Diagnostic> {
    let w = |e: String| Diagnostic::plain(e).in_plugin("autopath");
    let mut c = Autopath {
        zones: Vec::new(),
        search: Vec::new(),
        from_plugin: None,
        k8s: None,
    };
    while d.next() {
        let args = d.remaining_args();
        let Some((resolv, zones)) = args.split_last() else {
            return Err(w("no resolv-conf specified".into()));
        };
        if let Some(p) = resolv.strip_prefix('@') {
            c.from_plugin = Some(p.to_owned());
        } else {
            // Read as given (not under *root*), as CoreDNS reads it.
            c.search =
                search_path(resolv).map_err(|e| w(format!("failed to parse \"{resolv}\": {e}")))?;
        }
        c.zones = ctx
            .origins(zones)
            .iter()
            .filter_map(|z| Name::parse(z))
            .collect();
    }
    Ok(c)
}

/// miekg `ClientConfigFromFile`'s search path (`search` lines replace it, a
/// `domain` line makes it that one domain), normalised, with the root appended.
pub(crate) fn search_path(path: &str) -> Result<Vec<Name>, String> {
    // Only a failed open is an error: miekg ignores read errors (a directory
    // reads as an empty file).
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::IsADirectory => Vec::new(),
        Err(e) => return Err(format!("open {path}: {}", crate::config::go_err(&e))),
    };
    let text = String::from_utf8_lossy(&bytes);
    let mut search: Vec<String> = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            ["domain", d, ..] => search = vec![(*d).to_owned()],
            ["domain"] => search.clear(),
            ["search", rest @ ..] => search = rest.iter().map(|s| (*s).to_owned()).collect(),
            _ => {}
        }
    }
    let mut out: Vec<Name> = search
        .iter()
        .filter_map(|s| Name::parse(&corefile::keys::normalize_name(s)))
        .collect();
    out.push(Name::root());
    Ok(out)
}

/// `coredns_autopath_success_total` per server.
static SUCCESS: crate::metrics::LabelCounts<1> = crate::metrics::LabelCounts::new(
    "coredns_autopath_success_total",
    "Counter of requests that did autopath.",
    ["server"],
);

fn count(server: &str) {
    SUCCESS.inc([server.to_owned()]);
    crate::metrics::contribute(|f| SUCCESS.add_to(f));
}

impl Autopath {
    /// The request hook: queries to walk the search path for park (the walk runs
    /// the plugins after this one once per search domain); others pass.
    pub fn serve(&self, ctx: &mut Ctx<'_>) -> Flow {
        let q = ctx.req.qname.to_lowercase();
        if !self.zones.iter().any(|z| q.is_subdomain_of(z)) {
            return Flow::Next;
        }
        let search = self.search_for(ctx, &q);
        let Some(first) = search.first() else {
            return Flow::Next;
        };
        if !q.is_subdomain_of(first) {
            return Flow::Next;
        }
        // A root query with an empty search path: CoreDNS's one try is the query.
        if q.is_root() && first.is_root() {
            return Flow::Next;
        }
        Flow::Park
    }

    /// The search path for this query: the configured one, or (`@kubernetes`) the
    /// one of the client's pod (CoreDNS's `searchFunc`).
    fn search_for(&self, ctx: &Ctx<'_>, qname: &Name) -> std::borrow::Cow<'_, [Name]> {
        match &self.k8s {
            Some(k) => {
                std::borrow::Cow::Owned(k.search(qname, crate::server::canonical(ctx.peer).ip()))
            }
            None => std::borrow::Cow::Borrowed(&self.search),
        }
    }

    /// The parked half (CoreDNS `AutoPath.ServeDNS` once the query qualifies).
    pub async fn serve_async(&self, ctx: &mut Ctx<'_>, next: Next<'_>) -> Flow {
        let orig = ctx.req.qname.to_name();
        let search = self.search_for(ctx, &orig.to_lowercase());
        let Some(first) = search.first() else {
            // The client's pod went away since the query parked.
            return Flow::Next;
        };
        // `dnsutil.TrimZone`: the labels above the first search domain (none when
        // the name is the domain itself: CoreDNS's error, SERVFAIL).
        let keep = orig.label_count().saturating_sub(first.label_count());
        if keep == 0 {
            return Flow::Return(trim_failed(&orig, first));
        }
        let base: Vec<&[u8]> = orig.labels().take(keep).collect();
        let mut first_reply: Option<(Option<Vec<u8>>, crate::chain::Status)> = None;
        for s in search.iter() {
            let Some(name) = join(&base, s) else { continue };
            let msg = crate::server::reentry::requery(ctx, &name, ctx.req.qtype, ctx.req.qclass);
            let Verdict::Query(req) = parse_query(&msg) else {
                continue;
            };
            let (mut resp, mut scratch) = (Vec::new(), Vec::new());
            let mut sub = Ctx::new(
                ctx.server,
                req,
                ctx.proto,
                ctx.peer,
                ctx.local,
                &mut resp,
                &mut scratch,
                ctx.st.start,
            );
            sub.st = ctx.st;
            sub.view = ctx.view;
            sub.disp = ctx.disp;
            sub.meta = ctx.meta.clone();
            let st = next.run(&mut sub).await;
            let written = sub.written;
            drop(sub);
            if st.err.is_some() {
                return Flow::Return(st);
            }
            let reply = written.then_some(resp);
            if first_reply.is_none() {
                first_reply = Some((reply.clone(), st.clone()));
            }
            // No message written (CoreDNS dereferences it: a panic it recovers
            // from) or one `cnamer` cannot read: the next domain is tried.
            let Some(reply) = reply else { continue };
            if !client_write(st.rcode) || crate::wire::full_rcode(&reply) == 3 {
                continue;
            }
            if let Some(m) = cnamer(&reply, &orig) {
                *ctx.resp = m;
                ctx.written = true;
                count(ctx.server);
                return Flow::Return(st);
            }
        }
        match first_reply {
            Some((reply, st)) => {
                if let (Some(r), true) = (reply, client_write(st.rcode)) {
                    *ctx.resp = r;
                    ctx.written = true;
                }
                Flow::Return(st)
            }
            None => Flow::Return(crate::chain::Status::rcode(2)),
        }
    }
}

/// The error of `dnsutil.TrimZone` for a name that is the zone itself.
fn trim_failed(orig: &Name, zone: &Name) -> crate::chain::Status {
    let (mut o, mut z) = (String::new(), String::new());
    orig.write_presentation(&mut o);
    zone.write_presentation(&mut z);
    crate::chain::Status {
        rcode: 2,
        err: Some(crate::chain::PluginError {
            plugin: "autopath",
            kind: crate::chain::ErrorKind::Upstream(
                format!("trimzone: overshot qname: {o}for zone {z}").into(),
            ),
        }),
    }
}

/// `base` labels followed by `zone`.
fn join(base: &[&[u8]], zone: &Name) -> Option<Name> {
    let mut w = Vec::with_capacity(255);
    for l in base {
        w.push(u8::try_from(l.len()).ok()?);
        w.extend_from_slice(l);
    }
    w.extend_from_slice(zone.wire());
    Name::from_wire(&w).ok()
}

/// CoreDNS `cnamer`: the reply with a CNAME from `original` to the owner of the
/// first answer record not owned by `original` put first (that record's TTL),
/// and the question's name set back to `original`. `None` if it does not parse.
fn cnamer(reply: &[u8], original: &Name) -> Option<Vec<u8>> {
    if reply.len() < HEADER_LEN || hdr::counts(reply)[0] != 1 {
        return None;
    }
    let idx = MsgIndex::parse(reply)?;
    let mut full = Vec::with_capacity(reply.len() + 64);
    expand(reply, &idx, &mut full);
    let idx = MsgIndex::parse(&full)?;
    let mut out = full[..HEADER_LEN].to_vec();
    out.extend_from_slice(original.wire());
    let (_, qend) = Name::read(&full, HEADER_LEN).ok()?;
    out.extend_from_slice(full.get(qend..qend + 4)?);
    let target = idx.section(1).find_map(|r| {
        let (owner, _) = Name::read(&full, r.start as usize).ok()?;
        (!owner.eq_ignore_case(original)).then_some((owner, r.ttl))
    });
    let mut answers = hdr::counts(&full)[1];
    if let Some((owner, ttl)) = target {
        out.extend_from_slice(original.wire());
        out.extend_from_slice(&5u16.to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&ttl.to_be_bytes());
        out.extend_from_slice(&u16::try_from(owner.wire().len()).ok()?.to_be_bytes());
        out.extend_from_slice(owner.wire());
        answers = answers.checked_add(1)?;
    }
    out.extend_from_slice(full.get(idx.question_end..)?);
    hdr::set_count(&mut out, 1, answers);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_path_like_miekg() {
        let dir = std::env::temp_dir().join(format!("ringdns-autopath-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let f = dir.join("resolv.conf");
        let names = |v: Vec<Name>| {
            v.iter()
                .map(|n| {
                    let mut s = String::new();
                    n.write_presentation(&mut s);
                    s
                })
                .collect::<Vec<_>>()
        };
        std::fs::write(&f, "nameserver 10.0.0.10\nsearch Default.svc.Cluster.local svc.cluster.local\noptions ndots:5\n")
            .expect("write");
        let p = f.to_string_lossy().into_owned();
        assert_eq!(
            names(search_path(&p).expect("parse")),
            ["default.svc.cluster.local.", "svc.cluster.local.", "."]
        );
        std::fs::write(&f, "search a.example\ndomain b.example\n").expect("write");
        assert_eq!(names(search_path(&p).expect("parse")), ["b.example.", "."]);
        // A directory reads as an empty file, as miekg ignores read errors.
        let d = dir.to_string_lossy().into_owned();
        assert_eq!(names(search_path(&d).expect("directory")), ["."]);
        let missing = dir.join("nope").to_string_lossy().into_owned();
        assert_eq!(
            search_path(&missing).expect_err("missing"),
            format!("open {missing}: no such file or directory")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn cname_put_first_and_question_restored() {
        // A reply for www.b.example. A (one A record).
        let mut m = vec![0, 7, 0x85, 0, 0, 1, 0, 1, 0, 0, 0, 0];
        let found = Name::parse("www.b.example.").expect("name");
        m.extend_from_slice(found.wire());
        m.extend_from_slice(&[0, 1, 0, 1]);
        m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]);
        let orig = Name::parse("www.a.example.").expect("name");
        let out = cnamer(&m, &orig).expect("cnamer");
        let idx = MsgIndex::parse(&out).expect("parses");
        assert_eq!(Name::read(&out, HEADER_LEN).expect("q").0, orig);
        let rrs: Vec<_> = idx.section(1).map(|r| (r.rtype, r.ttl)).collect();
        assert_eq!(rrs, [(5, 60), (1, 60)]);
        let (target, _) = Name::read(&out, idx.rrs[0].rdata().start).expect("target");
        assert_eq!(target, found);
    }
}
