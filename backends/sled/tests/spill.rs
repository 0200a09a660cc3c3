//! A recovery queue spilled to sled keeps its accepted writes across a
//! restart of the host, and replays them in order.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use persistence_core::backend::{
    Backend, BackendExt, Capabilities, Document, DocumentWrite, Health, Precondition, Version,
};
use persistence_core::layers::{QueueSpill, RecoveryQueue};
use persistence_core::memory::MemoryBackend;
use persistence_core::{Error, Result, SharedBackend};
use persistence_sled::SledQueueSpill;

/// A backend that is down (what the queue protects against).
#[derive(Debug)]
struct Down;

fn down() -> Error {
    Error::Unavailable {
        backend: "down".into(),
        reason: "unreachable".into(),
    }
}

#[async_trait]
impl Backend for Down {
    fn name(&self) -> &str {
        "down"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }
    async fn get(&self, _: &str, _: &str) -> Result<Option<Document>> {
        Err(down())
    }
    async fn put(&self, _: &str, _: &str, _: DocumentWrite, _: Precondition) -> Result<Version> {
        Err(down())
    }
    async fn remove(&self, _: &str, _: &str, _: Precondition) -> Result<bool> {
        Err(down())
    }
    async fn lookup(&self, _: &str, _: &str, _: &str) -> Result<Vec<String>> {
        Err(down())
    }
    async fn health(&self) -> Health {
        Health::ok("down", "down")
    }
}

/// Opens the spill, waiting for the previous owner to let go of it.
async fn reopen(path: &std::path::Path) -> Arc<dyn QueueSpill> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match SledQueueSpill::open(path) {
            Ok(s) => return Arc::new(s),
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("the spill never became free: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_writes_survive_a_restart_and_replay_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queue");
    {
        let spill: Arc<dyn QueueSpill> = Arc::new(SledQueueSpill::open(&path).unwrap());
        let queue = RecoveryQueue::with_spill(
            Arc::new(Down),
            100,
            0,
            Duration::from_millis(1),
            Some(spill),
        )
        .unwrap();
        for (key, value) in [("k1", "first"), ("k2", "only"), ("k1", "second")] {
            let v = queue
                .upsert("ns", key, DocumentWrite::new(value.as_bytes().to_vec()))
                .await
                .unwrap();
            assert_eq!(v, Version(0), "accepted, not applied");
        }
        queue.remove("ns", "gone", Precondition::Any).await.unwrap();
        assert_eq!(queue.depth(), 4);
    } // the host "restarts": the queue and its spill are dropped

    let spill = reopen(&path).await;
    assert_eq!(
        spill.load().unwrap().len(),
        4,
        "all four accepted writes are on disk"
    );
    let memory = Arc::new(MemoryBackend::new());
    memory
        .upsert("ns", "gone", DocumentWrite::new(b"x".to_vec()))
        .await
        .unwrap();
    let queue = RecoveryQueue::with_spill(
        memory.clone() as SharedBackend,
        100,
        0,
        Duration::from_millis(1),
        Some(spill.clone()),
    )
    .unwrap();
    assert!(
        queue.drained(Duration::from_secs(10)).await,
        "restored writes were not replayed"
    );
    assert_eq!(
        &memory.get("ns", "k1").await.unwrap().unwrap().value[..],
        b"second",
        "replayed in order"
    );
    assert_eq!(
        &memory.get("ns", "k2").await.unwrap().unwrap().value[..],
        b"only"
    );
    assert_eq!(memory.get("ns", "gone").await.unwrap(), None);
    assert!(
        spill.load().unwrap().is_empty(),
        "replayed writes leave the spill"
    );
}

#[tokio::test]
async fn spill_path_in_settings_opens_a_sled_spill_or_says_none_is_registered() {
    use persistence_core::factory::Factory;
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("TA_PERSISTENCE__LAYERS", "recovery_queue".to_string()),
        (
            "TA_PERSISTENCE__RECOVERY_QUEUE__SPILL_PATH",
            dir.path().join("q").display().to_string(),
        ),
    ]
    .map(|(k, v)| (k.to_string(), v));
    let settings = Factory::new().settings_from_sources(None, env).unwrap();
    let e = Factory::new().open(&settings).await.unwrap_err();
    assert!(e.to_string().contains("recovery_queue.spill_path"), "{e}");
    let mut factory = Factory::new();
    factory.register_layer(SledQueueSpill::recovery_queue());
    let opened = factory.open(&settings).await.unwrap();
    assert_eq!(opened.backend.health().await.details["queue_depth"], "0");
    assert!(
        dir.path().join("q").is_dir(),
        "the spill database was created"
    );
}
