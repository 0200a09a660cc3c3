//! Choosing sled through settings, and the fallback policy when it cannot start.

use std::sync::Arc;

use persistence_core::backend::HealthStatus;
use persistence_core::config::Settings;
use persistence_core::factory::Factory;
use persistence_core::ErrorKind;
use persistence_sled::{SledBackend, SledOptions, SledProvider};

fn settings(path: &std::path::Path, fallback: &str) -> Settings {
    let env = [
        ("TA_PERSISTENCE_BACKEND", "sled"),
        ("TA_SLED_PATH", path.to_str().unwrap()),
        ("TA_PERSISTENCE_FALLBACK", fallback),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    factory().settings_from_sources(None, env).unwrap()
}

fn factory() -> Factory {
    let mut f = Factory::new();
    f.register(Arc::new(SledProvider));
    f
}

#[tokio::test]
async fn sled_is_opened_from_settings_and_persists() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(&dir.path().join("db"), "fail");
    {
        let (store, opened) = factory().open_task_store(&s).await.unwrap();
        assert_eq!(opened.backend.name(), "sled");
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
    let _held = SledBackend::open(&SledOptions::new(dir.path())).unwrap();

    let opened = factory()
        .open(&settings(dir.path(), "memory"))
        .await
        .unwrap();
    assert_eq!(opened.backend.name(), "memory");
    assert_eq!(
        opened.fallback_cause.unwrap().kind(),
        ErrorKind::Unavailable
    );
    let health = opened.backend.health().await;
    assert_eq!(health.status, HealthStatus::Degraded);
    assert!(
        health.message.contains(&dir.path().display().to_string()),
        "{}",
        health.message
    );

    let err = factory()
        .open(&settings(dir.path(), "fail"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(
        err.to_string().contains(&dir.path().display().to_string()),
        "{err}"
    );
}
