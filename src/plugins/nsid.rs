//! *nsid*: adds the NSID EDNS option (RFC 5001) to replies of queries that ask
//! for it (plugins.md B).
//!
//! CoreDNS: `plugin/nsid/nsid.go`, `setup.go`.

use corefile::{Diagnostic, Dispenser};

use crate::chain::Ctx;
use crate::wire::{MsgIndex, be16, hdr};

/// Parsed configuration.
#[derive(Debug, Clone)]
pub struct NsidConfig {
    /// The identifier text.
    pub data: String,
}

/// Setup (CoreDNS `nsidParse`): args joined by a space, default the hostname.
pub fn setup(d: &mut Dispenser) -> Result<NsidConfig, Diagnostic> {
    let mut data = crate::hostname();
    let mut i = 0;
    while d.next() {
        if i > 0 {
            return Err(crate::config::err_once().in_plugin("nsid"));
        }
        i += 1;
        let args = d.remaining_args();
        if !args.is_empty() {
            data = args.join(" ");
        }
    }
    Ok(NsidConfig { data })
}

/// The runtime plugin.
pub struct Nsid {
    data: Vec<u8>,
}

impl Nsid {
    /// Builds it.
    pub fn new(c: &NsidConfig) -> Self {
        Self {
            data: c.data.as_bytes().to_vec(),
        }
    }

    /// Adds or replaces NSID in the written reply when the query carried NSID.
    pub fn respond(&self, ctx: &mut Ctx<'_>) {
        let Some(opt) = ctx.req.opt else { return };
        if !ctx.written || !opt.options().any(|o| o.code == 3) {
            return;
        }
        let Some(idx) = MsgIndex::parse(ctx.resp) else {
            return;
        };
        let opt_rr = idx
            .rrs
            .iter()
            .rev()
            .find(|r| r.section == 3 && r.rtype == 41)
            .copied();
        match opt_rr {
            None => {
                // SetEdns0(client size, DO=1) with NSID.
                let mut rr = vec![0u8, 0, 41];
                rr.extend_from_slice(&opt.udp_size.to_be_bytes());
                rr.extend_from_slice(&[0, 0, 0x80, 0]);
                let len = 4 + self.data.len();
                rr.extend_from_slice(&(len as u16).to_be_bytes());
                rr.extend_from_slice(&3u16.to_be_bytes());
                rr.extend_from_slice(&(self.data.len() as u16).to_be_bytes());
                rr.extend_from_slice(&self.data);
                ctx.resp.extend_from_slice(&rr);
                let ar = hdr::counts(ctx.resp)[3];
                hdr::set_count(ctx.resp, 3, ar + 1);
            }
            Some(r) => {
                // Rewrite the OPT's options: drop an existing NSID, append ours.
                let rd = r.rdata();
                let mut opts = Vec::new();
                let mut p = rd.start;
                while p + 4 <= rd.end {
                    let code = be16(ctx.resp, p);
                    let len = be16(ctx.resp, p + 2) as usize;
                    if p + 4 + len > rd.end {
                        break;
                    }
                    if code != 3 {
                        opts.extend_from_slice(&ctx.resp[p..p + 4 + len]);
                    }
                    p += 4 + len;
                }
                opts.extend_from_slice(&3u16.to_be_bytes());
                opts.extend_from_slice(&(self.data.len() as u16).to_be_bytes());
                opts.extend_from_slice(&self.data);
                let tail = ctx.resp.split_off(r.end as usize);
                ctx.resp.truncate(rd.start);
                ctx.resp.extend_from_slice(&opts);
                let len_at = r.fixed as usize + 8;
                let n = opts.len() as u16;
                ctx.resp[len_at..len_at + 2].copy_from_slice(&n.to_be_bytes());
                ctx.resp.extend_from_slice(&tail);
            }
        }
    }
}
