//! Corefile lexer + parser + key inspection never panic, and printing a parsed
//! Corefile parses back to the same blocks.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let env = |_: &str| -> Option<String> { None };
    let opts = corefile::ParseOptions { filename: "Corefile", valid_directives: None, env: &env };
    if let Ok(p) = corefile::parse(&text, &opts) {
        for b in &p.blocks {
            for k in &b.keys {
                let _ = corefile::keys::inspect_key(k, "53");
            }
        }
        let printed = corefile::parse::print(&p.blocks);
        let again = corefile::parse(&printed, &opts).expect("printed Corefile parses");
        assert_eq!(p.blocks.len(), again.blocks.len());
    }
});
