//! Go templates (the *template* plugin's): parsing any text, printing its tree
//! and running it never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    ringdns::gotmpl::fuzz_one(&text);
});
