//! *trace*: any B3 header values (a DoH client's) and any collector URL never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ringdns::plugins::trace::fuzz_one(data);
});
