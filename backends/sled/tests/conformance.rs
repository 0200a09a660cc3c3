//! The conformance suite on sled, each case on a fresh database in a temp dir.

use persistence_sled::{SledBackend, SledOptions};

persistence_conformance::conformance_tests!(|| async {
    let dir = tempfile::tempdir().expect("temp dir").keep();
    let options = SledOptions {
        temporary: true, // sled removes the directory when the case drops it
        ..SledOptions::new(dir.join("db"))
    };
    std::sync::Arc::new(SledBackend::open(&options).expect("open sled"))
        as persistence_core::SharedBackend
});
