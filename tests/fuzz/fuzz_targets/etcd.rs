//! *etcd*: any octets as a stored value, a Range reply, a name or a key never
//! panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ringdns::plugins::etcd::fuzz_one(data);
});
