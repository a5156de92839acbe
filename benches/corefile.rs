//! Parse and set up a 1,000-block Corefile that pulls half its blocks in
//! through a glob import and every block's options through a snippet.

use criterion::{Criterion, criterion_group, criterion_main};

fn corefile_1000(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("ringdns-bench-corefile-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("conf.d")).expect("mkdir");
    let mut main = String::from(
        "(common) {\n errors\n log . {combined} {\n  class denial error\n }\n}\nimport conf.d/*.server\n",
    );
    for i in 0..500 {
        main.push_str(&format!(
            "zone{i}.example.org:1053 10.{}.{}.0/24 {{\n import common\n chaos v{i}\n whoami\n}}\n",
            i / 256,
            i % 256
        ));
    }
    for i in 500..1000 {
        let text =
            format!("zone{i}.example.net:1053 {{\n import common\n local\n minimal\n whoami\n}}\n");
        std::fs::write(dir.join(format!("conf.d/{i:04}.server")), text).expect("write");
    }
    let path = dir.join("Corefile");
    std::fs::write(&path, &main).expect("write");
    let filename = path.to_string_lossy().into_owned();
    c.bench_function("corefile/parse+setup 1000 blocks", |b| {
        b.iter(|| {
            let input = ringdns::config::Input {
                source: ringdns::config::Source::File(filename.clone()),
                filename: filename.clone(),
                text: main.clone(),
            };
            let cfg = ringdns::config::build(input, "53").expect("config");
            assert_eq!(cfg.blocks.len(), 1000);
            cfg
        });
    });
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, corefile_1000);
criterion_main!(benches);
