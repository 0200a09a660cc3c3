//! The stream conformance cases on the in-memory engine.

persistence_conformance::stream_conformance_tests!(|retention| async move {
    std::sync::Arc::new(persistence_core::streams::MemoryStreams::new(retention))
        as persistence_core::streams::SharedStreams
});
