//! Choosing redb through settings, and the fallback policy when it cannot start.

use std::sync::Arc;

use persistence_core::backend::HealthStatus;
use persistence_core::config::Settings;
use persistence_core::factory::Factory;
use persistence_core::ErrorKind;
use persistence_redb::{RedbBackend, RedbOptions, RedbProvider};

fn settings(path: &std::path::Path, fallback: &str) -> Settings {
    let env = [
        ("TA_PERSISTENCE_BACKEND", "redb"),
        ("TA_REDB_PATH", path.to_str().unwrap()),
        ("TA_PERSISTENCE_FALLBACK", fallback),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    factory().settings_from_sources(None, env).unwrap()
}

fn factory() -> Factory {
    let mut f = Factory::new();
    f.register(Arc::new(RedbProvider));
    f
}

#[tokio::test]
async fn redb_is_opened_from_settings_and_persists() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(&dir.path().join("db.redb"), "fail");
    {
        let (store, opened) = factory().open_task_store(&s).await.unwrap();
        assert_eq!(opened.backend.name(), "redb");
        assert!(opened.backend.capabilities().durable);
        store
            .create(&persistence_conformance::sample_task("t", &["r"]))
            .await
            .unwrap();
    }
    let (store, _) = factory().open_task_store(&s).await.unwrap();
    assert!(store.load_by_request_id("r").await.unwrap().is_some());
}

#[tokio::test]
async fn a_held_database_falls_back_to_memory_loudly_or_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.redb");
    let _held = RedbBackend::open(&RedbOptions::new(&path)).unwrap();

    let opened = factory().open(&settings(&path, "memory")).await.unwrap();
    assert_eq!(opened.backend.name(), "memory");
    assert_eq!(
        opened.fallback_cause.unwrap().kind(),
        ErrorKind::Unavailable
    );
    let health = opened.backend.health().await;
    assert_eq!(health.status, HealthStatus::Degraded);
    assert!(
        health.message.contains(&path.display().to_string()),
        "{}",
        health.message
    );

    let err = factory().open(&settings(&path, "fail")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

/// The documents and the event streams of one file share one handle
/// (redb opens a file once per process).
#[tokio::test]
async fn documents_and_streams_share_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(&dir.path().join("db.redb"), "fail");
    let (store, _opened) = factory().open_task_store(&s).await.unwrap();
    let streams = factory().open_streams(&s).await.unwrap();
    assert!(streams.fallback_cause.is_none());
    assert_eq!(streams.streams.name(), "redb");
    store
        .create(&persistence_conformance::sample_task("t", &["r"]))
        .await
        .unwrap();
    let offset = streams.streams.append("run", "e".into()).await.unwrap();
    assert_eq!(offset.to_string(), "1-0");
}

/// The factory's queue on redb shares the database too, keeps its jobs
/// across a reopen, and `[queue]` settings reach it.
#[tokio::test]
async fn the_factory_opens_the_queue_in_the_same_database() {
    use persistence_core::queue::{JobState, NewJob};
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(&dir.path().join("db.redb"), "fail");
    s.queue.max_attempts = Some(1);
    let opened = factory().open_queue(&s).await.unwrap();
    assert!(opened.fallback_cause.is_none());
    assert_eq!(opened.queue.name(), "redb");
    opened
        .queue
        .enqueue(NewJob::new("run-1", ""))
        .await
        .unwrap();
    let lease = opened
        .queue
        .claim(
            "w",
            std::time::Duration::from_secs(30),
            std::time::Duration::ZERO,
        )
        .await
        .unwrap()
        .unwrap();
    opened.queue.fail(&lease, "boom").await.unwrap();
    let again = factory().open_queue(&s).await.unwrap();
    let status = again.queue.status("run-1").await.unwrap().unwrap();
    assert_eq!(
        status.state,
        JobState::Dead,
        "max_attempts = 1 from [queue]"
    );
}
