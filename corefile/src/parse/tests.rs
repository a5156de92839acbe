//! Parser tables: Corefile text → blocks, or → the exact error CoreDNS prints.

use super::*;
use crate::env::EnvLookup;

const DIRS: &[&str] = &[
    "whoami", "log", "forward", "cache", "errors", "file", "hosts",
];

fn env(name: &str) -> Option<String> {
    match name {
        "ZONE" => Some("example.org".into()),
        "PORT" => Some("1053".into()),
        "UP" => Some("10.0.0.1 10.0.0.2".into()),
        _ => None,
    }
}

fn run(input: &str) -> Result<Parsed, Diagnostic> {
    let e = &env as &dyn EnvLookup;
    parse(
        input,
        &ParseOptions {
            filename: "Corefile",
            valid_directives: Some(DIRS),
            env: e,
        },
    )
}

/// Blocks rendered compactly: `keys | dir: tok tok ; dir: tok`.
fn show(input: &str) -> String {
    match run(input) {
        Ok(p) => p
            .blocks
            .iter()
            .map(|b| {
                let dirs: Vec<String> = b
                    .directives
                    .iter()
                    .map(|(d, t)| {
                        let toks: Vec<&str> = t.iter().map(|t| t.text.as_str()).collect();
                        format!("{d}: {}", toks.join(" "))
                    })
                    .collect();
                format!("{} | {}", b.keys.join(","), dirs.join(" ; "))
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Err(e) => format!("ERR {e}"),
    }
}

#[test]
fn blocks_table() {
    let cases: &[(&str, &str)] = &[
        ("", ""),
        ("# only a comment\n", ""),
        (".:53 {\n whoami\n}", ".:53 | whoami: whoami"),
        (".:53\nwhoami\nlog", ".:53 | whoami: whoami ; log: log"),
        ("a.org b.org {\nwhoami\n}", "a.org,b.org | whoami: whoami"),
        ("a.org,\nb.org {\nwhoami\n}", "a.org,b.org | whoami: whoami"),
        (
            ". {\n log\n whoami\n log . {common}\n}",
            ". | log: log log . {common} ; whoami: whoami",
        ),
        (
            ". {\n forward . 1.1.1.1 {\n  except a {\n   b\n  }\n }\n}",
            ". | forward: forward . 1.1.1.1 { except a { b } }",
        ),
        (
            "{$ZONE}:{$PORT} {\n whoami\n}",
            "example.org:1053 | whoami: whoami",
        ),
        (
            ". {\n forward . {$UP}\n}",
            ". | forward: forward . 10.0.0.1 10.0.0.2",
        ),
        (
            ". {\n forward . \"{$UP}\"\n}",
            ". | forward: forward . 10.0.0.1 10.0.0.2",
        ),
        ("\"\" a.org {\nwhoami\n}", "a.org | whoami: whoami"),
        // A stray `}` after a block starts a new block keyed `}` (verified CoreDNS pitfall).
        (". {\n whoami\n}\n}", ". | whoami: whoami\n} | "),
        (
            "(snip) {\n whoami\n}\n. {\n import snip\n log\n}",
            ". | whoami: whoami ; log: log",
        ),
        ("(snip) {\n whoami\n}", ""),
        // A snippet imported at top level supplies keys.
        ("(s) {\n log\n}\nimport s\n", "log | "),
        // The directive's own `}` satisfies the block's closing check (caddy quirk).
        (". {\n forward . x {\n}", ". | forward: forward . x { }"),
    ];
    for (input, want) in cases {
        assert_eq!(&show(input), want, "input: {input:?}");
    }
}

#[test]
fn error_table() {
    let cases: &[(&str, &str)] = &[
        (
            ". {\n whoami\n bogus\n}",
            "Corefile:3 - Error during parsing: Unknown directive 'bogus'",
        ),
        (
            ". {\n whoami}\n}",
            "Corefile:2 - Error during parsing: Unknown directive 'whoami}'",
        ),
        (
            ". {\nwhoami",
            "Corefile:2 - Syntax error: Unexpected token 'whoami', expecting '}'",
        ),
        (
            "a.org,",
            "Corefile:1 - Error during parsing: Unexpected EOF",
        ),
        (
            "a.org, {\nwhoami\n}",
            "Corefile:1 - Error during parsing: Expected another address but had '{' - check for extra comma",
        ),
        (
            ". {\n forward . x {\n",
            "Corefile:2 - Error during parsing: Unexpected EOF",
        ),
        (
            ". {\n forward . x }\n}",
            "Corefile:2 - Error during parsing: Unexpected '}' because no matching opening brace",
        ),
        (
            "(s) {\nwhoami\n}\n(s) {\nlog\n}",
            "Corefile:4 - Error during parsing: redeclaration of previously declared snippet s",
        ),
        (
            "(s) {\nimport s\n}",
            "Corefile:3 - Error during parsing: maximum snippet import depth (10000) exceeded",
        ),
        (
            "(s)\nwhoami",
            "Corefile:2 - Syntax error: Unexpected token 'whoami', expecting '{'",
        ),
        (
            ". {\n import s extra\n}",
            "Corefile:2 - Error during parsing: Import takes only one argument (glob pattern or file)",
        ),
        (
            ". {\n import \"\"\n}",
            "Corefile:2 - Error during parsing: Import requires a non-empty filepath",
        ),
        (
            ". {\n import\n}",
            "Corefile:2 - Error during parsing: Wrong argument count or unexpected line ending after 'import'",
        ),
        (
            ". {\n import later\n}\n(later) {\n whoami\n}",
            "Corefile:2 - Error during parsing: File to import not found: later",
        ),
    ];
    for (input, want) in cases {
        assert_eq!(show(input), format!("ERR {want}"), "input: {input:?}");
    }
}

struct TempDir(std::path::PathBuf);
impl TempDir {
    fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("corefile-test-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("temp dir");
        Self(p)
    }
    fn write(&self, name: &str, text: &str) -> String {
        let p = self.0.join(name);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).expect("dir");
        }
        std::fs::write(&p, text).expect("write");
        p.to_string_lossy().into_owned()
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run_file(path: &str) -> Result<Parsed, Diagnostic> {
    let text = std::fs::read_to_string(path).expect("read");
    let e = &env as &dyn EnvLookup;
    parse(
        &text,
        &ParseOptions {
            filename: path,
            valid_directives: Some(DIRS),
            env: e,
        },
    )
}

#[test]
fn imports() {
    let d = TempDir::new("imports");
    d.write("conf.d/a.server", "a.org {\n whoami\n}\n");
    d.write("conf.d/b.server", "b.org {\n log\n}\n");
    d.write("opts", "log\n");
    d.write("empty", "");
    let main = d.write(
        "Corefile",
        "import conf.d/*.server\n. {\n import opts\n import empty\n forward . 1.2.3.4 {\n  import fwd\n }\n}\n",
    );
    d.write("fwd", "max_fails 3\n");
    let p = run_file(&main).expect("parse");
    let keys: Vec<&str> = p.blocks.iter().map(|b| b.keys[0].as_str()).collect();
    assert_eq!(keys, ["a.org", "b.org", "."]);
    let fwd: Vec<&str> = p.blocks[2]
        .tokens("forward")
        .expect("fwd")
        .iter()
        .map(|t| t.text.as_str())
        .collect();
    assert_eq!(fwd, ["forward", ".", "1.2.3.4", "{", "max_fails", "3", "}"]);
    // Imported tokens carry the absolute file and the import chain.
    let t = &p.blocks[2].tokens("forward").expect("fwd")[4];
    assert!(t.file.ends_with("/fwd"));
    assert_eq!(t.via.as_ref().map(|v| v.line), Some(6));
    // Glob with no match: a warning, then it goes on.
    let main2 = d.write("C2", "import nothing/*.conf\n. {\n whoami\n}\n");
    let p = run_file(&main2).expect("parse");
    assert_eq!(
        p.warnings,
        ["No files matching import glob pattern: nothing/*.conf"]
    );
    assert_eq!(p.blocks.len(), 1);
}

#[test]
fn import_errors() {
    let d = TempDir::new("importerr");
    let dir = d.0.to_string_lossy().into_owned();
    let c = d.write("C1", ". {\n import nonexistent.conf\n}\n");
    assert_eq!(
        run_file(&c).expect_err("missing").to_string(),
        format!("{c}:2 - Error during parsing: File to import not found: nonexistent.conf")
    );
    d.write("sub/x", "");
    let c = d.write("C2", ". {\n import sub\n}\n");
    assert_eq!(
        run_file(&c).expect_err("dir").to_string(),
        format!("{c}:2 - Error during parsing: Could not import {dir}/sub: is a directory")
    );
    let c = d.write("C3", ". {\n import *.a*\n}\n");
    assert_eq!(
        run_file(&c).expect_err("glob").to_string(),
        format!(
            "{c}:2 - Error during parsing: Glob pattern may only contain one wildcard (*), but has others: {dir}/*.a*"
        )
    );
    // A cycle: self-import through another file.
    d.write("loop1", "import loop2\n");
    d.write("loop2", "whoami\nimport loop1\n");
    let c = d.write("C4", ". {\n import loop1\n}\n");
    let e = run_file(&c).expect_err("cycle").to_string();
    assert!(
        e.ends_with("Error during parsing: maximum file import depth (10000) exceeded"),
        "{e}"
    );
    // /dev/zero is neither hung on nor accepted.
    let c = d.write("C5", ". {\n import /dev/zero\n}\n");
    let e = run_file(&c).expect_err("zero").to_string();
    assert!(
        e.contains("Could not read tokens while importing /dev/zero: file is larger than 16 MiB"),
        "{e}"
    );
}

#[test]
fn deep_nesting_is_fine() {
    let mut s = String::from(". {\n forward . 1.1.1.1 ");
    for _ in 0..10_000 {
        s.push_str("{\n");
    }
    for _ in 0..10_000 {
        s.push_str("}\n");
    }
    s.push_str("}\n");
    let p = run(&s).expect("nested");
    assert_eq!(p.blocks[0].tokens("forward").map(|t| t.len()), Some(20_003));
    // Unbalanced: a clear EOF error.
    let unbalanced = format!(". {{\n forward . x {}", "{\n".repeat(10_000));
    assert!(run(&unbalanced).is_err());
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let text = String::from_utf8_lossy(&bytes);
            let _ = run(&text);
        }

        #[test]
        fn never_panics_on_corefile_alphabet(s in "[a-z. {}#\"\\\\\n,:()$%]{0,200}") {
            let _ = run(&s);
        }

        /// parse → print → parse gives the same blocks.
        #[test]
        fn round_trip(s in "[a-z. {}\n]{0,200}") {
            if let Ok(p) = run(&s) {
                let printed = crate::parse::print(&p.blocks);
                let again = run(&printed).expect("printed Corefile parses");
                type Shape = Vec<(Vec<String>, Vec<(String, Vec<String>)>)>;
                let strip = |b: &[ServerBlock]| -> Shape {
                    b.iter().map(|b| (b.keys.clone(), b.directives.iter().map(|(d, t)| (d.clone(), t.iter().map(|t| t.text.clone()).collect())).collect())).collect()
                };
                prop_assert_eq!(strip(&p.blocks), strip(&again.blocks));
            }
        }
    }
}

#[test]
fn clean_as_go_filepath_clean() {
    // Go's filepath.Clean results for the same inputs.
    for (p, want) in [
        ("", "."),
        (".", "."),
        ("a/..", "."),
        ("./a//b/./c/..", "a/b"),
        ("a/../../b", "../b"),
        ("../../x", "../../x"),
        ("../a/..", ".."),
        ("/../x", "/x"),
        ("/a/b/../../..", "/"),
        ("/etc/coredns/./tls/../ca.pem", "/etc/coredns/ca.pem"),
    ] {
        assert_eq!(clean(Path::new(p)), PathBuf::from(want), "{p:?}");
    }
}
