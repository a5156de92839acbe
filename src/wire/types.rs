//! Mnemonics for types, classes, rcodes and opcodes (miekg/dns tables).

/// Common RR types.
pub mod rtype {
    #![allow(missing_docs)]
    pub const A: u16 = 1;
    pub const NS: u16 = 2;
    pub const CNAME: u16 = 5;
    pub const SOA: u16 = 6;
    pub const PTR: u16 = 12;
    pub const HINFO: u16 = 13;
    pub const MX: u16 = 15;
    pub const TXT: u16 = 16;
    pub const AAAA: u16 = 28;
    pub const SRV: u16 = 33;
    pub const DNAME: u16 = 39;
    pub const OPT: u16 = 41;
    pub const DS: u16 = 43;
    pub const RRSIG: u16 = 46;
    pub const NSEC: u16 = 47;
    pub const DNSKEY: u16 = 48;
    pub const NSEC3: u16 = 50;
    pub const SVCB: u16 = 64;
    pub const HTTPS: u16 = 65;
    pub const IXFR: u16 = 251;
    pub const AXFR: u16 = 252;
    pub const ANY: u16 = 255;
}

/// Classes.
pub mod class {
    #![allow(missing_docs)]
    pub const IN: u16 = 1;
    pub const CH: u16 = 3;
}

/// Rcodes.
pub mod rcode {
    #![allow(missing_docs)]
    pub const NOERROR: u16 = 0;
    pub const FORMERR: u16 = 1;
    pub const SERVFAIL: u16 = 2;
    pub const NXDOMAIN: u16 = 3;
    pub const NOTIMP: u16 = 4;
    pub const REFUSED: u16 = 5;
    pub const BADVERS: u16 = 16;
}

const TYPES: &[(u16, &str)] = &[
    (1, "A"),
    (2, "NS"),
    (3, "MD"),
    (4, "MF"),
    (5, "CNAME"),
    (6, "SOA"),
    (7, "MB"),
    (8, "MG"),
    (9, "MR"),
    (10, "NULL"),
    (12, "PTR"),
    (13, "HINFO"),
    (14, "MINFO"),
    (15, "MX"),
    (16, "TXT"),
    (17, "RP"),
    (18, "AFSDB"),
    (19, "X25"),
    (20, "ISDN"),
    (21, "RT"),
    (23, "NSAPPTR"),
    (24, "SIG"),
    (25, "KEY"),
    (26, "PX"),
    (27, "GPOS"),
    (28, "AAAA"),
    (29, "LOC"),
    (30, "NXT"),
    (31, "EID"),
    (32, "NIMLOC"),
    (33, "SRV"),
    (34, "ATMA"),
    (35, "NAPTR"),
    (36, "KX"),
    (37, "CERT"),
    (39, "DNAME"),
    (41, "OPT"),
    (42, "APL"),
    (43, "DS"),
    (44, "SSHFP"),
    (45, "IPSECKEY"),
    (46, "RRSIG"),
    (47, "NSEC"),
    (48, "DNSKEY"),
    (49, "DHCID"),
    (50, "NSEC3"),
    (51, "NSEC3PARAM"),
    (52, "TLSA"),
    (53, "SMIMEA"),
    (55, "HIP"),
    (56, "NINFO"),
    (57, "RKEY"),
    (58, "TALINK"),
    (59, "CDS"),
    (60, "CDNSKEY"),
    (61, "OPENPGPKEY"),
    (62, "CSYNC"),
    (63, "ZONEMD"),
    (64, "SVCB"),
    (65, "HTTPS"),
    (99, "SPF"),
    (100, "UINFO"),
    (101, "UID"),
    (102, "GID"),
    (103, "UNSPEC"),
    (104, "NID"),
    (105, "L32"),
    (106, "L64"),
    (107, "LP"),
    (108, "EUI48"),
    (109, "EUI64"),
    (249, "TKEY"),
    (250, "TSIG"),
    (251, "IXFR"),
    (252, "AXFR"),
    (253, "MAILB"),
    (254, "MAILA"),
    (255, "ANY"),
    (256, "URI"),
    (257, "CAA"),
    (258, "AVC"),
    (260, "AMTRELAY"),
    (32768, "TA"),
    (32769, "DLV"),
];

/// Type mnemonic, `None` when unknown.
pub fn type_name(t: u16) -> Option<&'static str> {
    TYPES.iter().find(|(n, _)| *n == t).map(|(_, s)| *s)
}

/// Type mnemonic or `TYPEn` (miekg `Type.String`).
pub fn type_to_string(t: u16, out: &mut String) {
    match type_name(t) {
        Some(s) => out.push_str(s),
        None => {
            out.push_str("TYPE");
            out.push_str(&t.to_string());
        }
    }
}

/// Type from a mnemonic (or `TYPEn`), case-insensitive.
pub fn type_from_str(s: &str) -> Option<u16> {
    let up = s.to_ascii_uppercase();
    if let Some(n) = up.strip_prefix("TYPE") {
        return n.parse().ok();
    }
    TYPES.iter().find(|(_, n)| *n == up).map(|(t, _)| *t)
}

/// miekg's `StringToType`: exact (upper-case) mnemonics only, no `TYPEn`; `None`
/// (0) and `Reserved` (65535) included, `NSAP-PTR` spelled as miekg spells it.
pub fn miekg_type_from_str(s: &str) -> Option<u16> {
    match s {
        "None" => Some(0),
        "Reserved" => Some(65_535),
        "NXNAME" => Some(128),
        "RESINFO" => Some(261),
        "NSAP-PTR" => Some(23),
        "NSAPPTR" => None,
        _ => TYPES.iter().find(|(_, n)| *n == s).map(|(t, _)| *t),
    }
}

/// miekg `StringToClass`: the exact mnemonics.
pub fn miekg_class_from_str(s: &str) -> Option<u16> {
    Some(match s {
        "IN" => 1,
        "CS" => 2,
        "CH" => 3,
        "HS" => 4,
        "NONE" => 254,
        "ANY" => 255,
        _ => return None,
    })
}

/// Class mnemonic or `CLASSn` (miekg `Class.String`).
pub fn class_to_string(c: u16, out: &mut String) {
    let s = match c {
        1 => "IN",
        2 => "CS",
        3 => "CH",
        4 => "HS",
        254 => "NONE",
        255 => "ANY",
        _ => {
            out.push_str("CLASS");
            out.push_str(&c.to_string());
            return;
        }
    };
    out.push_str(s);
}

/// Rcode mnemonic, `None` when unknown (miekg `RcodeToString`).
pub fn rcode_name(rc: u16) -> Option<&'static str> {
    Some(match rc {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        6 => "YXDOMAIN",
        7 => "YXRRSET",
        8 => "NXRRSET",
        9 => "NOTAUTH",
        10 => "NOTZONE",
        11 => "DSOTYPENI",
        16 => "BADSIG",
        17 => "BADKEY",
        18 => "BADTIME",
        19 => "BADMODE",
        20 => "BADNAME",
        21 => "BADALG",
        22 => "BADTRUNC",
        23 => "BADCOOKIE",
        _ => return None,
    })
}

/// Rcode from a mnemonic or a number.
pub fn rcode_from_str(s: &str) -> Option<u16> {
    if let Ok(n) = s.parse::<u16>() {
        return Some(n);
    }
    let up = s.to_ascii_uppercase();
    (0..=23).find(|&rc| rcode_name(rc) == Some(up.as_str()))
}

/// `qr,aa,tc,rd,ra,z,ad,cd` flags list as the log plugin prints it.
pub fn flags_to_string(f: u16, out: &mut String) {
    use super::flags::*;
    let mut first = true;
    for (bit, name) in [
        (QR, "qr"),
        (AA, "aa"),
        (TC, "tc"),
        (RD, "rd"),
        (RA, "ra"),
        (Z, "z"),
        (AD, "ad"),
        (CD, "cd"),
    ] {
        if f & bit != 0 {
            if !first {
                out.push(',');
            }
            out.push_str(name);
            first = false;
        }
    }
}

/// The `type` label of `coredns_dns_requests_total`: a fixed set, else `other`.
pub fn metrics_type(t: u16) -> &'static str {
    match t {
        1 => "A",
        28 => "AAAA",
        5 => "CNAME",
        48 => "DNSKEY",
        43 => "DS",
        15 => "MX",
        50 => "NSEC3",
        47 => "NSEC",
        2 => "NS",
        12 => "PTR",
        46 => "RRSIG",
        6 => "SOA",
        33 => "SRV",
        16 => "TXT",
        65 => "HTTPS",
        64 => "SVCB",
        251 => "IXFR",
        252 => "AXFR",
        255 => "ANY",
        _ => "other",
    }
}
