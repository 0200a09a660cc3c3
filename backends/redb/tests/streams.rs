//! The stream conformance cases on redb, and what survives a restart.

use std::sync::Arc;

use persistence_core::streams::{Retention, SharedStreams};
use persistence_redb::{RedbBackend, RedbOptions};

mod conformance {
    persistence_conformance::stream_conformance_tests!(|retention| async move {
        let dir = tempfile::tempdir().expect("temp dir").keep();
        let options = persistence_redb::RedbOptions {
            temporary: true,
            ..persistence_redb::RedbOptions::new(dir.join("db.redb"))
        };
        let backend =
            std::sync::Arc::new(persistence_redb::RedbBackend::open(&options).expect("open redb"));
        std::sync::Arc::new(backend.streams(retention)) as persistence_core::streams::SharedStreams
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_closes_and_cancels_survive_a_restart_and_offsets_continue() {
    persistence_conformance::stream_restart_test("db.redb", |path| async move {
        let backend = Arc::new(RedbBackend::open(&RedbOptions::new(path)).unwrap());
        Arc::new(backend.streams(Retention::default())) as SharedStreams
    })
    .await;
}

/// Events appended and acknowledged before a SIGKILL of the process are
/// there after reopen, in order, with nothing after them but (maybe) the
/// one in flight: 10 kills at random points, on the same database (the
/// test binary runs itself again as the appender).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_sigkill() {
    persistence_conformance::stream_crash_test(
        "acknowledged_events_survive_sigkill",
        "db.redb",
        |path| async move {
            let backend = Arc::new(RedbBackend::open(&RedbOptions::new(path)).unwrap());
            Arc::new(backend.streams(Retention::default())) as SharedStreams
        },
    )
    .await;
}
