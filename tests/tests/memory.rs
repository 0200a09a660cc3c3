//! The conformance suite on the in-memory backend.

persistence_conformance::conformance_tests!(|| async {
    std::sync::Arc::new(persistence_core::memory::MemoryBackend::new())
        as persistence_core::SharedBackend
});
