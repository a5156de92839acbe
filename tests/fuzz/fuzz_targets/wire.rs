//! The query parser and message index never panic on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ringdns::wire::parse_query(data);
    let _ = ringdns::wire::MsgIndex::parse(data);
});
