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

/// What ABI 1.1 and 1.2 added crosses the boundary: the memory backend's
/// time order and transactions are declared on the host side (so the
/// cases above ran them through the ABI); json-dir declares time order
/// only, and its transactions are refused on the host side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abi_1_2_capabilities_cross_the_boundary() {
    let memory = open("memory").await.capabilities();
    assert!(memory.time_order && memory.transactions, "{memory:?}");
    let json_dir = open("json-dir").await;
    let caps = json_dir.capabilities();
    assert!(caps.time_order && !caps.transactions, "{caps:?}");
    let r = json_dir.transact(Vec::new()).await;
    assert_eq!(
        r.unwrap_err().kind(),
        persistence_core::ErrorKind::Unsupported
    );
}
