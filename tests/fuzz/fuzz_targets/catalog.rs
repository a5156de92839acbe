//! *secondary* `catalog`: any transferred records parse to a catalog or an
//! error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ringdns::plugins::secondary::catalog::fuzz_one(data);
});
