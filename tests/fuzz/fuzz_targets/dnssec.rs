//! *dnssec*: signing any message as a reply never panics, and the signed
//! message parses.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ringdns::plugins::dnssec::fuzz_one(data);
});
