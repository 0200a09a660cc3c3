//! The stream conformance cases on sled, what survives a restart and a
//! SIGKILL, and the factory's streams on sled (sharing the documents'
//! handle).

use std::sync::Arc;

use persistence_core::config::Settings;
use persistence_core::streams::{Retention, SharedStreams};
use persistence_sled::{SledBackend, SledOptions};

mod conformance {
    persistence_conformance::stream_conformance_tests!(|retention| async move {
        let dir = tempfile::tempdir().expect("temp dir").keep();
        let options = persistence_sled::SledOptions {
            temporary: true,
            ..persistence_sled::SledOptions::new(dir)
        };
        let backend =
            std::sync::Arc::new(persistence_sled::SledBackend::open(&options).expect("open sled"));
        std::sync::Arc::new(backend.streams(retention).expect("streams"))
            as persistence_core::streams::SharedStreams
    });
}

fn durable(path: impl Into<std::path::PathBuf>) -> SledOptions {
    SledOptions {
        flush_on_write: true,
        ..SledOptions::new(path)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_closes_and_cancels_survive_a_restart_and_offsets_continue() {
    persistence_conformance::stream_restart_test("sled", |path| async move {
        let backend = Arc::new(SledBackend::open(&durable(path)).unwrap());
        Arc::new(backend.streams(Retention::default()).unwrap()) as SharedStreams
    })
    .await;
}

/// With `flush_on_write`, events acknowledged before a SIGKILL are there
/// after reopen, in order (10 kills at random points).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_sigkill() {
    persistence_conformance::stream_crash_test(
        "acknowledged_events_survive_sigkill",
        "sled",
        |path| async move {
            let backend = Arc::new(SledBackend::open(&durable(path)).unwrap());
            Arc::new(backend.streams(Retention::default()).unwrap()) as SharedStreams
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_factory_opens_streams_on_the_documents_handle() {
    let dir = tempfile::tempdir().unwrap();
    let mut factory = persistence_core::factory::Factory::new();
    factory.register(Arc::new(persistence_sled::SledProvider));
    let mut settings = Settings::default();
    settings.backend = "sled".into();
    settings
        .set("sled.path", &dir.path().display().to_string(), "test")
        .unwrap();
    let docs = factory.open(&settings).await.unwrap();
    // sled lets a database be opened once: the streams share the handle
    let opened = factory.open_streams(&settings).await.unwrap();
    assert!(opened.fallback_cause.is_none());
    assert_eq!(opened.streams.name(), "sled");
    opened.streams.append("run", "e".into()).await.unwrap();
    assert_eq!(docs.backend.name(), "sled");
}
