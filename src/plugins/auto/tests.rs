//! *auto* tests: zones appear and disappear with their files, custom
//! regexp and template, setup errors.

use super::*;
use crate::chain::Proto;
use crate::config::BlockSettings;
use crate::plugins::file::tests::{Outcome, query, run};

fn setup_str(keys: &[&str], text: &str) -> Result<AutoConfig, Diagnostic> {
    let mut settings = BlockSettings::default();
    let keys: Vec<String> = keys.iter().map(|k| format!("dns://{k}:53")).collect();
    let mut ctx = SetupCtx {
        keys: &keys,
        zones: keys
            .iter()
            .map(|k| {
                k.trim_start_matches("dns://")
                    .trim_end_matches(":53")
                    .to_owned()
            })
            .collect(),
        settings: &mut settings,
        filename: "Corefile",
    };
    let mut d = Dispenser::from_text("Corefile", text);
    setup(&mut d, &mut ctx)
}

fn zone(origin: &str, serial: u32) -> String {
    format!("$TTL 60\n$ORIGIN {origin}\n@ SOA ns admin {serial} 2 3 4 5\n@ NS ns\nns A 192.0.2.1\n")
}

fn ask(a: &Auto, name: &str) -> Outcome {
    run(&query(name, 1, false), Proto::Udp, &|ctx| a.serve(ctx))
}

#[test]
fn zones_follow_the_directory() {
    let dir = std::env::temp_dir().join(format!("ringdns-auto-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("sub")).expect("dir");
    std::fs::write(dir.join("db.example.org"), zone("example.org.", 1)).expect("w");
    std::fs::write(dir.join("sub/db.example.net"), zone("example.net.", 1)).expect("w");
    std::fs::write(dir.join("other.txt"), "not a zone").expect("w");
    let text = format!("auto {{\n directory {} \n reload 0\n}}", dir.display());
    let c = setup_str(&["."], &text).expect("setup");
    let a = Auto::new(&c);
    assert!(matches!(ask(&a, "ns.example.org."), Outcome::Reply(_)));
    // Subdirectories are walked too (Go filepath.Walk).
    assert!(matches!(ask(&a, "ns.example.net."), Outcome::Reply(_)));
    // Not loaded, nothing after auto: REFUSED.
    assert!(matches!(ask(&a, "ns.example.com."), Outcome::Status(5)));
    std::fs::write(dir.join("db.example.com"), zone("example.com.", 1)).expect("w");
    std::fs::remove_file(dir.join("db.example.org")).expect("rm");
    a.shared.walk();
    assert!(matches!(ask(&a, "ns.example.com."), Outcome::Reply(_)));
    assert!(matches!(ask(&a, "ns.example.org."), Outcome::Status(5)));
    // AXFR without transfer: REFUSED.
    assert!(matches!(
        run(&query("example.com.", 252, false), Proto::Tcp, &|ctx| a
            .serve(ctx)),
        Outcome::Status(5)
    ));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn regexp_and_template() {
    let dir = std::env::temp_dir().join(format!("ringdns-auto-re-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(
        dir.join("www.example.org.zone"),
        zone("www.example.org.", 1),
    )
    .expect("w");
    let text = format!(
        "auto example.org {{\n directory {} (.*)\\.zone {{1}}\n reload 0\n}}",
        dir.display()
    );
    let c = setup_str(&["."], &text).expect("setup");
    let a = Auto::new(&c);
    assert!(matches!(ask(&a, "ns.www.example.org."), Outcome::Reply(_)));
    // Outside the plugin's zones: next plugin.
    assert!(matches!(ask(&a, "example.net."), Outcome::Next));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn setup_errors() {
    let e = |t: &str| {
        setup_str(&["example.org."], t)
            .expect_err("error")
            .to_string()
    };
    assert_eq!(
        e("auto {\n directory\n}"),
        "plugin/auto: Corefile:2 - Error during parsing: Wrong argument count or unexpected line ending after 'directory'"
    );
    assert!(e("auto {\n directory /tmp db\\.\n}").ends_with("Need at least one sub expression"));
    assert!(e("auto {\n directory /tmp (.*)\n}").contains("Wrong argument count"));
    assert!(e("auto {\n directory /tmp (.*) {1} x\n}").contains("Wrong argument count"));
    assert_eq!(
        e("auto {\n reload\n}"),
        "plugin/auto: reload duration value is expected"
    );
    assert_eq!(
        e("auto {\n reload x\n}"),
        "plugin/auto: plugin/file: time: invalid duration \"x\""
    );
    assert!(e("auto {\n foo\n}").ends_with("unknown property 'foo'"));
}

#[test]
fn eval_symlinks_as_go() {
    let base = std::env::temp_dir().join(format!("ringdns-evalsym-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(base.join("real/sub")).expect("mkdir");
    std::os::unix::fs::symlink("real", base.join("rel")).expect("symlink");
    std::os::unix::fs::symlink(base.join("real/sub"), base.join("abs")).expect("symlink");
    std::os::unix::fs::symlink("loop2", base.join("loop1")).expect("symlink");
    std::os::unix::fs::symlink("loop1", base.join("loop2")).expect("symlink");
    std::fs::write(base.join("real/f"), "").expect("write");
    let at = |p: &str| eval_symlinks(&base.join(p));
    // Absolute in, absolute out; relative links replace the last name.
    assert_eq!(at("rel/sub").expect("rel"), base.join("real/sub"));
    assert_eq!(at("abs/../sub").expect("abs"), base.join("real/sub"));
    assert_eq!(at("./real//sub/.").expect("clean"), base.join("real/sub"));
    assert!(at("real/f/x").is_err(), "ENOTDIR");
    assert!(at("missing").is_err());
    assert!(
        at("loop1")
            .err()
            .is_some_and(|e| e.to_string().contains("too many links"))
    );
    // A relative path without an absolute link stays relative: up from the
    // working directory to the root, then down to `base`.
    let cwd = std::env::current_dir().expect("cwd");
    let mut up = PathBuf::new();
    for _ in cwd.components().skip(1) {
        up.push("..");
    }
    let rel = up.join(base.strip_prefix("/").expect("absolute"));
    assert_eq!(
        eval_symlinks(&rel.join("rel/sub")).expect("relative"),
        rel.join("real/sub")
    );
    assert_eq!(
        eval_symlinks(Path::new(".")).expect("dot"),
        PathBuf::from(".")
    );
    let _ = std::fs::remove_dir_all(&base);
}
