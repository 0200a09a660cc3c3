//! The reopen loop, for every durable engine: open, write a few hundred
//! tasks, close, reopen, round after round, each step under a deadline, so
//! an engine that hangs on open, on a write after reopening, or on close
//! fails the test instead of stopping it.

use std::path::Path;
use std::time::{Duration, Instant};

use persistence_core::{Result, SharedBackend, TaskStore};

use crate::sample_task;

/// The longest one round may take; only a hang reaches it.
const ROUND_DEADLINE: Duration = Duration::from_secs(60);

/// Runs `rounds` rounds on the database `open` opens in one temp dir:
/// each round opens it (on the blocking pool), checks every task the
/// earlier rounds left, creates `tasks` tasks, updates half, deletes a
/// quarter, and drops the backend (closing it). Panics on a hang (a round
/// past its deadline), an error, or a task lost or resurrected.
pub async fn reopen_loop(
    rounds: usize,
    tasks: usize,
    open: impl Fn(&Path) -> Result<SharedBackend> + Send + Sync + Clone + 'static,
) {
    let dir = tempfile::tempdir().expect("temp dir");
    let started = Instant::now();
    let mut live = 0u64;
    for round in 0..rounds {
        let (open, path) = (open.clone(), dir.path().to_path_buf());
        let work = async move {
            let backend = tokio::task::spawn_blocking(move || open(&path))
                .await
                .expect("open panicked")
                .unwrap_or_else(|e| panic!("round {round}: open failed: {e}"));
            let store = TaskStore::new(backend);
            assert_eq!(
                store.count().await.unwrap(),
                live,
                "round {round}: tasks lost or resurrected"
            );
            for n in 0..tasks {
                let id = format!("t{round}-{n}");
                let rid = format!("r{round}-{n}");
                store.create(&sample_task(&id, &[&rid])).await.unwrap();
                if n % 2 == 0 {
                    store
                        .update(&sample_task(&id, &[&rid, "second"]))
                        .await
                        .unwrap();
                }
                if n % 4 == 0 {
                    store.delete(&id).await.unwrap();
                }
            }
            assert!(store
                .load_by_request_id(&format!("r{round}-1"))
                .await
                .unwrap()
                .is_some());
            let left = (tasks - tasks.div_ceil(4)) as u64;
            live + left
        };
        live = tokio::time::timeout(ROUND_DEADLINE, work)
            .await
            .unwrap_or_else(|_| panic!("round {round} hung: not done after {ROUND_DEADLINE:?}"));
    }
    eprintln!(
        "reopen loop: {rounds} rounds, {live} tasks left, {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
