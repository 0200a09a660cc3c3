//! Export, import and migrate on real engines: memory to sled in one
//! process, what travels with a document (bytes, index terms, TTL, order),
//! and a migration whose target fails midway, resumed from its checkpoint.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use persistence_core::backend::{Backend, DocumentWrite, IndexTerm, Precondition, Version};
use persistence_core::layers::Layer;
use persistence_core::memory::MemoryBackend;
use persistence_core::{BackendExt, Error, Result, SharedBackend, TaskStore};
use persistence_sled::{SledBackend, SledOptions};
use persistence_transfer::{digest, export, import, migrate, ImportMode, MigrateOptions};

fn sled(dir: &std::path::Path) -> SharedBackend {
    Arc::new(SledBackend::open(&SledOptions::new(dir.join("db"))).unwrap())
}

/// Tasks through the task store (request ids indexed), a document that is
/// not JSON, one with a TTL, in two namespaces.
async fn fill(b: &SharedBackend, tasks: usize) {
    let store = TaskStore::new(b.clone());
    for n in 0..tasks {
        let task =
            persistence_conformance::sample_task(&format!("t-{n:05}"), &[&format!("r-{}", n % 7)]);
        store.create(&task).await.unwrap();
    }
    b.insert("raw", "broken", DocumentWrite::new(&b"\xff not json {"[..]))
        .await
        .unwrap();
    let expiring = DocumentWrite {
        value: b"{\"ttl\":true}".to_vec().into(),
        index: vec![IndexTerm::new("kind", "expiring")],
        ttl: Some(Duration::from_secs(3600)),
    };
    b.insert("raw", "expiring", expiring).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_to_sled_keeps_bytes_terms_ttls_and_the_oldest_first_order() {
    let dir = tempfile::tempdir().unwrap();
    let from: SharedBackend = Arc::new(MemoryBackend::new());
    let to = sled(dir.path());
    fill(&from, 1_200).await;
    let report = migrate(&from, &to, &MigrateOptions::default(), |_| {})
        .await
        .unwrap();
    assert!(report.verified(), "{report:?}");
    assert_eq!(report.namespaces["task"].copied, 1_200);
    for ns in ["task", "raw"] {
        assert_eq!(
            digest(&*from, ns).await.unwrap(),
            digest(&*to, ns).await.unwrap(),
            "{ns}"
        );
    }
    // the bytes that are not JSON came over exactly; the TTL and terms too
    let broken = to.get("raw", "broken").await.unwrap().unwrap();
    assert_eq!(&broken.value[..], b"\xff not json {");
    let expiring = to.get("raw", "expiring").await.unwrap().unwrap();
    assert!(expiring.expires_at.is_some());
    assert_eq!(
        to.lookup("raw", "kind", "expiring").await.unwrap(),
        ["expiring"]
    );
    // creation order came over: the oldest task with a shared request id is the same
    let (a, b) = (TaskStore::new(from.clone()), TaskStore::new(to.clone()));
    for r in 0..7 {
        let id = format!("r-{r}");
        let want = a.load_by_request_id(&id).await.unwrap().unwrap().task_id;
        let got = b.load_by_request_id(&id).await.unwrap().unwrap().task_id;
        assert_eq!(got, want, "{id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_then_import_round_trips_and_reports_conflicts() {
    let from: SharedBackend = Arc::new(MemoryBackend::new());
    fill(&from, 50).await;
    let mut out = Vec::new();
    let report = export(&*from, &[], &mut out, "buffer", |_| {})
        .await
        .unwrap();
    assert_eq!(report.documents["task"], 50);
    assert_eq!(report.documents["raw"], 2);
    assert_eq!(
        report.corrupted, 1,
        "the document that is not JSON is flagged, not dropped"
    );
    let text = String::from_utf8(out.clone()).unwrap();
    assert!(text
        .lines()
        .any(|l| l.contains("\"corrupted\":true") && l.contains("\"hex\"")));

    let to: SharedBackend = Arc::new(MemoryBackend::new());
    let first = import(&*to, &out[..], "buffer", ImportMode::Create, |_| {})
        .await
        .unwrap();
    assert_eq!(first.imported.values().sum::<u64>(), 52);
    assert!(first.conflicts.is_empty() && first.error_count == 0);
    for ns in ["task", "raw"] {
        assert_eq!(
            digest(&*from, ns).await.unwrap(),
            digest(&*to, ns).await.unwrap()
        );
    }
    // again: every key exists, each a conflict, nothing changed
    let again = import(&*to, &out[..], "buffer", ImportMode::Create, |_| {})
        .await
        .unwrap();
    assert_eq!(again.conflicts.len(), 52);
    assert_eq!(again.imported.values().sum::<u64>(), 0);
    let upsert = import(&*to, &out[..], "buffer", ImportMode::Upsert, |_| {})
        .await
        .unwrap();
    assert_eq!(upsert.imported.values().sum::<u64>(), 52);

    // a damaged file: bad lines are reported by number and skipped
    let mut damaged =
        b"not json\n{\"namespace\":\"raw\",\"key\":\"x\",\"ttl_ms\":null,\"index\":[]}\n".to_vec();
    damaged.extend_from_slice(&out);
    let fresh: SharedBackend = Arc::new(MemoryBackend::new());
    let r = import(&*fresh, &damaged[..], "damaged", ImportMode::Create, |_| {})
        .await
        .unwrap();
    assert_eq!(r.error_count, 2, "{:?}", r.errors);
    assert!(
        r.errors[0].starts_with("line 1:") && r.errors[1].starts_with("line 2:"),
        "{:?}",
        r.errors
    );
    assert_eq!(r.imported.values().sum::<u64>(), 52);
}

/// A target that refuses writes after `left` of them (a server that went
/// away midway).
#[derive(Debug)]
struct GoesAway {
    inner: SharedBackend,
    left: AtomicU64,
}

#[async_trait]
impl Layer for GoesAway {
    fn inner(&self) -> &dyn Backend {
        &*self.inner
    }

    async fn put(
        &self,
        namespace: &str,
        key: &str,
        write: DocumentWrite,
        precondition: Precondition,
    ) -> Result<Version> {
        if self.left.fetch_sub(1, Ordering::SeqCst) == 0 {
            self.left.store(0, Ordering::SeqCst);
            return Err(Error::Unavailable {
                backend: "sled".into(),
                reason: "gone".into(),
            });
        }
        self.inner.put(namespace, key, write, precondition).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_migration_resumes_from_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let from: SharedBackend = Arc::new(MemoryBackend::new());
    fill(&from, 2_300).await;
    let target = sled(dir.path());
    let flaky: SharedBackend = Arc::new(GoesAway {
        inner: target.clone(),
        left: AtomicU64::new(1_100),
    });
    let options = MigrateOptions {
        checkpoint: Some(dir.path().join("checkpoint.json")),
        ..MigrateOptions::default()
    };
    let err = migrate(&from, &flaky, &options, |_| {}).await.unwrap_err();
    assert!(err.to_string().contains("gone"), "{err}");
    let saved = std::fs::read_to_string(dir.path().join("checkpoint.json")).unwrap();
    assert!(saved.contains("\"cursor\""), "{saved}");
    // resumed: only what was not copied yet is copied, and all of it verifies
    let report = migrate(&from, &target, &options, |_| {}).await.unwrap();
    assert!(report.verified(), "{report:?}");
    let copied = report.namespaces["task"].copied;
    assert!(
        (2_300 - 1_100..2_300).contains(&copied),
        "resumed after the checkpoint: copied {copied}"
    );
    // a checkpoint of another migration is refused
    let other = MigrateOptions {
        labels: ("elsewhere".into(), "somewhere".into()),
        ..options.clone()
    };
    let err = migrate(&from, &target, &other, |_| {}).await.unwrap_err();
    assert!(err.to_string().contains("not from elsewhere"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_that_cannot_export_is_refused_up_front() {
    // the plugin ABI 1.x carries no index terms: a plugin cannot be a source
    #[derive(Debug)]
    struct NoExport(SharedBackend);
    #[async_trait]
    impl Layer for NoExport {
        fn inner(&self) -> &dyn Backend {
            &*self.0
        }
        fn capabilities(&self) -> persistence_core::backend::Capabilities {
            persistence_core::backend::Capabilities {
                export: false,
                ..self.0.capabilities()
            }
        }
    }
    let from: SharedBackend = Arc::new(NoExport(Arc::new(MemoryBackend::new())));
    let to: SharedBackend = Arc::new(MemoryBackend::new());
    let err = migrate(&from, &to, &MigrateOptions::default(), |_| {})
        .await
        .unwrap_err();
    assert!(err.to_string().contains("export"), "{err}");
}
