//! The full conformance suite against backends loaded from the example
//! plugin library: `json-dir` (files in a temp dir per case) and `memory`.

mod support;

use persistence_plugin::PluginLibrary;

async fn open(class: &str) -> persistence_core::SharedBackend {
    let lib = PluginLibrary::load(&support::library("plugin-example"), None)
        .expect("load the example plugin");
    let mut options = std::collections::BTreeMap::new();
    if class == "json-dir" {
        let dir = tempfile::tempdir().expect("temp dir").keep();
        options.insert("path".to_string(), dir.display().to_string());
        options.insert("temporary".to_string(), "true".to_string());
    }
    let config = serde_json::to_vec(&options).unwrap();
    std::sync::Arc::new(
        lib.create(Some(class), &config)
            .expect("start the plugin backend"),
    )
}

mod json_dir {
    persistence_conformance::conformance_tests!(|| super::open("json-dir"));
}

mod memory_through_the_abi {
    persistence_conformance::conformance_tests!(|| super::open("memory"));
}
