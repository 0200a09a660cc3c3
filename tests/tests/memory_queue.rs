//! The queue conformance cases on the in-memory queue.

persistence_conformance::queue_conformance_tests!(|options| async move {
    std::sync::Arc::new(persistence_core::queue::MemoryQueue::new(options))
        as persistence_core::queue::SharedQueue
});
