//! Crash safety (the shared crash test of `persistence-conformance`): 20
//! SIGKILLs of a writer with flush-on-write, on the same database.

use std::sync::Arc;

use persistence_core::SharedBackend;
use persistence_sled::{SledBackend, SledOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill() {
    persistence_conformance::crash_test("acknowledged_writes_survive_sigkill", 20, |dir| {
        let options = SledOptions {
            flush_on_write: true,
            ..SledOptions::new(dir)
        };
        Ok(Arc::new(SledBackend::open(&options)?) as SharedBackend)
    })
    .await;
}
