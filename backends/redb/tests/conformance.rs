//! The conformance suite on redb, each case on a fresh database in a temp dir.

use persistence_redb::{RedbBackend, RedbOptions};

persistence_conformance::conformance_tests!(|| async {
    let dir = tempfile::tempdir().expect("temp dir").keep();
    let options = RedbOptions {
        temporary: true, // the file goes when the case drops the backend
        ..RedbOptions::new(dir.join("db.redb"))
    };
    std::sync::Arc::new(RedbBackend::open(&options).expect("open redb"))
        as persistence_core::SharedBackend
});
