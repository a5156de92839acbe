//! *tsig*: reading the TSIG record of any message, verifying it and signing a
//! reply never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ringdns::plugins::tsig::fuzz_one(data);
});
