//! The queue conformance cases on sled, and what survives a restart and SIGKILL.

use std::sync::Arc;

use persistence_core::queue::{QueueOptions, SharedQueue};
use persistence_sled::{SledBackend, SledOptions};

mod conformance {
    persistence_conformance::queue_conformance_tests!(|options| async move {
        let dir = tempfile::tempdir().expect("temp dir").keep();
        let db = persistence_sled::SledOptions {
            temporary: true,
            ..persistence_sled::SledOptions::new(dir.join("db"))
        };
        let backend =
            std::sync::Arc::new(persistence_sled::SledBackend::open(&db).expect("open sled"));
        std::sync::Arc::new(
            backend
                .queue("runs", options)
                .await
                .expect("open the queue"),
        ) as persistence_core::queue::SharedQueue
    });
}

/// With `flush_on_write`: an acknowledged call is on disk.
async fn open(path: std::path::PathBuf) -> SharedQueue {
    let options = SledOptions {
        flush_on_write: true,
        ..SledOptions::new(path)
    };
    let backend = Arc::new(SledBackend::open(&options).expect("open sled"));
    Arc::new(
        backend
            .queue("runs", QueueOptions::default())
            .await
            .expect("open the queue"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_leased_and_ended_jobs_survive_a_restart() {
    persistence_conformance::queue_restart_test("db", open).await;
}

/// A writer process SIGKILLed 8 times at random points on one database:
/// every acknowledged enqueue and completion is there after each reopen,
/// and the killed writers' jobs complete later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_queue_calls_survive_sigkill() {
    persistence_conformance::queue_crash_test(
        "acknowledged_queue_calls_survive_sigkill",
        "db",
        8,
        open,
    )
    .await;
}

/// Two handles on one queue name in one process are one queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_queue_per_name_and_database() {
    use persistence_core::queue::{NewJob, RunQueue};
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(SledBackend::open(&SledOptions::new(dir.path().join("db"))).unwrap());
    let first = backend
        .queue("runs", QueueOptions::default())
        .await
        .unwrap();
    let second = backend
        .queue("runs", QueueOptions::default())
        .await
        .unwrap();
    let other = backend
        .queue("other", QueueOptions::default())
        .await
        .unwrap();
    first.enqueue(NewJob::new("a", "")).await.unwrap();
    assert!(second.status("a").await.unwrap().is_some());
    assert!(
        other.status("a").await.unwrap().is_none(),
        "queues of other names share nothing"
    );
}
