//! The README's "Using it" snippet is `examples/quickstart.rs`, line for
//! line, so what the README shows compiles (the example is built with the
//! tests) and runs (below).

#[test]
fn the_readme_snippet_is_the_quickstart_example() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let example = include_str!("../examples/quickstart.rs");
    let section = readme
        .split("## Using it")
        .nth(1)
        .expect("a Using it section");
    let snippet = section
        .split("```rust\n")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .expect("a rust block");
    for line in snippet.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            example.contains(line.trim_end()),
            "README line not in examples/quickstart.rs: {line:?}"
        );
    }
}

#[test]
fn the_quickstart_runs() {
    // `cargo test` builds the examples next to the test binaries' folder
    let example = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("examples/quickstart");
    {
        // always (a no-op when fresh): a run of this test alone does not
        // build the examples, and a stale binary of the same name may be there
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.toml");
        let built = std::process::Command::new(env!("CARGO"))
            .args([
                "build",
                "--quiet",
                "-p",
                "persistence-redb",
                "--example",
                "quickstart",
            ])
            .args(["--manifest-path", root])
            .status()
            .expect("run cargo");
        assert!(built.success(), "building the example failed");
    }
    assert!(example.is_file(), "{} was not built", example.display());
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("quickstart.redb");
    let out = std::process::Command::new(&example)
        .env_remove("TA_PERSISTENCE_CONFIG")
        .env("TA_PERSISTENCE_BACKEND", "redb")
        .env("TA_PERSISTENCE_FALLBACK", "fail")
        .env("TA_REDB_PATH", &db)
        .current_dir(dir.path())
        .output()
        .expect("run the example");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(db.is_file(), "the example did not write {}", db.display());
}
