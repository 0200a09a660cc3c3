//! Disk after churn: what an embedded engine keeps on disk while tasks
//! come and go.

use std::sync::Arc;

use persistence_core::{SharedBackend, TaskStore};
use persistence_redb::{RedbBackend, RedbOptions};
use persistence_sled::{SledBackend, SledOptions};
use serde::Serialize;

use persistence_cli::report::{right, table};
use persistence_cli::workload;

/// File sizes over the rounds of one churn run.
#[derive(Debug, Serialize)]
pub struct Churn {
    engine: &'static str,
    tasks: usize,
    /// JSON bytes of the tasks of one round.
    json_bytes: u64,
    /// (after creating, after deleting them all), per round.
    rounds: Vec<(u64, u64)>,
    /// redb: the size after `compact` at the end.
    compacted: Option<u64>,
}

/// The backend under measure, with what the disk question needs.
enum Engine {
    Redb(Arc<RedbBackend>),
    Sled(Arc<SledBackend>),
}

impl Engine {
    async fn flush(&self) -> persistence_core::Result<()> {
        match self {
            Engine::Redb(b) => b.flush().await,
            Engine::Sled(b) => b.flush().await.map(drop),
        }
    }

    fn size(&self) -> persistence_core::Result<u64> {
        match self {
            Engine::Redb(b) => b.size_on_disk(),
            Engine::Sled(b) => b.size_on_disk(),
        }
    }
}

/// Creates `tasks` tasks and deletes them all, `rounds` times, `concurrency`
/// at a time, on a fresh database (redb, else sled) in a temp dir; sizes
/// are taken after a flush.
pub async fn churn(
    redb: bool,
    rounds: usize,
    tasks: usize,
    concurrency: usize,
) -> Result<Churn, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let (engine, backend): (Engine, SharedBackend) = if redb {
        let b = Arc::new(RedbBackend::open(&RedbOptions::new(
            dir.path().join("db.redb"),
        ))?);
        (Engine::Redb(b.clone()), b)
    } else {
        let b = Arc::new(SledBackend::open(&SledOptions::new(
            dir.path().join("sled"),
        ))?);
        (Engine::Sled(b.clone()), b)
    };
    let store = TaskStore::new(backend);
    let all: Vec<_> = (0..tasks)
        .map(|i| workload::three_item_task(&format!("churn-{i}"), i))
        .collect();
    let json_bytes = all
        .iter()
        .map(|t| serde_json::to_vec(t).map(|v| v.len() as u64))
        .sum::<Result<u64, _>>()?;
    let all = Arc::new(all);
    let mut sizes = Vec::with_capacity(rounds);
    for round in 0..rounds {
        for create in [true, false] {
            let workers: Vec<_> = (0..concurrency.max(1))
                .map(|w| {
                    let (store, all) = (store.clone(), all.clone());
                    tokio::spawn(async move {
                        for task in all.iter().skip(w).step_by(concurrency.max(1)) {
                            if create {
                                store.create(task).await?;
                            } else {
                                store.delete(&task.task_id).await?;
                            }
                        }
                        Ok::<_, persistence_core::TaskStoreError>(())
                    })
                })
                .collect();
            for w in workers {
                w.await??;
            }
            engine.flush().await?;
            if create {
                sizes.push((engine.size()?, 0));
            } else {
                sizes[round].1 = engine.size()?;
            }
        }
        eprint!("\rchurn round {}/{rounds}", round + 1);
    }
    eprintln!();
    let compacted = match &engine {
        Engine::Redb(b) => Some(b.compact().await?.1),
        Engine::Sled(_) => None,
    };
    Ok(Churn {
        engine: if redb { "redb" } else { "sled" },
        tasks,
        json_bytes,
        rounds: sizes,
        compacted,
    })
}

impl Churn {
    /// A table for people.
    pub fn table(&self) -> String {
        let mib = |b: u64| format!("{:.1}", b as f64 / (1024.0 * 1024.0));
        let mut t = table(&["round", "MiB with tasks", "MiB after deleting"]);
        for (n, (full, emptied)) in self.rounds.iter().enumerate() {
            t.add_row(vec![
                right((n + 1).to_string()),
                right(mib(*full)),
                right(mib(*emptied)),
            ]);
        }
        let compacted = match self.compacted {
            Some(bytes) => format!("\nafter compact: {} MiB", mib(bytes)),
            None => String::new(),
        };
        format!(
            "{} on disk while {} tasks ({} MiB of JSON) are created and deleted, round after round:\n{t}{compacted}",
            self.engine,
            self.tasks,
            mib(self.json_bytes)
        )
    }
}
