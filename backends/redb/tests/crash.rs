//! Crash safety (the shared crash test of `persistence-conformance`): 20
//! SIGKILLs of a writer with immediate durability, on the same database.

use std::sync::Arc;

use persistence_core::SharedBackend;
use persistence_redb::{RedbBackend, RedbOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill() {
    persistence_conformance::crash_test("acknowledged_writes_survive_sigkill", 20, |dir| {
        let options = RedbOptions::new(dir.join("db.redb"));
        Ok(Arc::new(RedbBackend::open(&options)?) as SharedBackend)
    })
    .await;
}
