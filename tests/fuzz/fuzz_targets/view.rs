//! *view* expressions: compiling any text, rendering its error and running the
//! program never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    ringdns::plugins::view::fuzz_one(&text);
});
