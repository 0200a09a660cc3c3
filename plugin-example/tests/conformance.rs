//! The conformance suite on `json-dir` linked in, before the ABI, as a
//! plugin author runs it: through the SDK's `testing` feature alone.

persistence_plugin_sdk::testing::conformance_tests!(|| async {
    let dir = std::env::temp_dir().join(format!(
        "json-dir-conformance-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::sync::Arc::new(plugin_example::JsonDirBackend::open(dir, true).expect("open json-dir"))
        as persistence_plugin_sdk::SharedBackend
});
