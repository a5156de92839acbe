//! *proxyproto*: any octets as a stream's start or a datagram never panic, and a
//! header never claims more octets than it was given.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ringdns::plugins::proxyproto::fuzz_one(data);
});
