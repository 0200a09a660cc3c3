//! `bench`: the task store on the memory backend against a bare
//! `RwLock<HashMap>` doing the same serde work, measured in one run.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::RwLock;
use persistence_core::memory::MemoryBackend;
use persistence_core::model::{AgentTask, TaskStatus};
use persistence_core::TaskStore;
use serde::Serialize;

use crate::report::{right, table, thousands, Samples, Summary};
use crate::workload;

/// The baseline's stored bytes: shared, so a load copies nothing under the lock.
type Bytes = Arc<[u8]>;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Operations per measured phase.
    #[arg(long, default_value_t = 20_000)]
    ops: usize,
    /// Concurrent tasks in the concurrent pass.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Rounds per mode; each row reports the median round (this machine is noisy).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
}

/// The simplest correct store: the same JSON bytes in a `RwLock<HashMap>`,
/// with a request-id map beside it. It does not keep the request index
/// current on update, so it does less work than the real store.
#[derive(Default)]
struct Baseline {
    docs: RwLock<HashMap<String, (Bytes, Vec<String>)>>,
    by_request: RwLock<HashMap<String, Vec<String>>>,
}

impl Baseline {
    fn create(&self, task: &AgentTask) -> Result<(), String> {
        let bytes: Bytes = serde_json::to_vec(task).map_err(|e| e.to_string())?.into();
        let terms: Vec<String> = task.request_ids().into_iter().map(String::from).collect();
        {
            let mut docs = self.docs.write();
            if docs.contains_key(&task.task_id) {
                return Err("exists".into());
            }
            docs.insert(task.task_id.clone(), (bytes, terms.clone()));
        }
        let mut idx = self.by_request.write();
        for t in terms {
            idx.entry(t).or_default().push(task.task_id.clone());
        }
        Ok(())
    }

    fn load(&self, id: &str) -> Result<Option<AgentTask>, String> {
        let bytes = self.docs.read().get(id).map(|(b, _)| b.clone());
        bytes
            .map(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
            .transpose()
    }

    fn update(&self, task: &AgentTask) -> Result<(), String> {
        let bytes: Bytes = serde_json::to_vec(task).map_err(|e| e.to_string())?.into();
        let mut docs = self.docs.write();
        let slot = docs.get_mut(&task.task_id).ok_or("missing")?;
        slot.0 = bytes;
        Ok(())
    }

    fn load_by_request_id(&self, rid: &str) -> Result<Option<AgentTask>, String> {
        let id = self
            .by_request
            .read()
            .get(rid)
            .and_then(|ids| ids.first().cloned());
        match id {
            Some(id) => self.load(&id),
            None => Ok(None),
        }
    }

    fn delete(&self, id: &str) -> Result<(), String> {
        let (_, terms) = self.docs.write().remove(id).ok_or("missing")?;
        let mut idx = self.by_request.write();
        for t in terms {
            if let Some(ids) = idx.get_mut(&t) {
                ids.retain(|x| x != id);
                if ids.is_empty() {
                    idx.remove(&t);
                }
            }
        }
        Ok(())
    }
}

#[derive(Clone)]
enum Target {
    Store(TaskStore),
    Baseline(Arc<Baseline>),
}

const OPS: [&str; 5] = ["create", "load", "update", "load_by_request_id", "delete"];

impl Target {
    async fn op(&self, op: &str, task: &AgentTask, updated: &AgentTask) -> Result<(), String> {
        let e = |e: persistence_core::TaskStoreError| e.to_string();
        let rid = &task.items[0].request_id;
        let found = match (self, op) {
            (Target::Store(s), "create") => s.create(task).await.map(|_| true).map_err(e)?,
            (Target::Store(s), "load") => s.load(&task.task_id).await.map_err(e)?.is_some(),
            (Target::Store(s), "update") => s.update(updated).await.map(|_| true).map_err(e)?,
            (Target::Store(s), "load_by_request_id") => {
                s.load_by_request_id(rid).await.map_err(e)?.is_some()
            }
            (Target::Store(s), _) => s.delete(&task.task_id).await.map(|_| true).map_err(e)?,
            (Target::Baseline(b), "create") => b.create(task).map(|_| true)?,
            (Target::Baseline(b), "load") => b.load(&task.task_id)?.is_some(),
            (Target::Baseline(b), "update") => b.update(updated).map(|_| true)?,
            (Target::Baseline(b), "load_by_request_id") => b.load_by_request_id(rid)?.is_some(),
            (Target::Baseline(b), _) => b.delete(&task.task_id).map(|_| true)?,
        };
        if found {
            Ok(())
        } else {
            Err(format!("{op} of {} found nothing", task.task_id))
        }
    }
}

/// Runs every operation over all tasks, phase by phase, with `concurrency`
/// tasks in flight; returns a summary per operation.
async fn measure(
    target: &Target,
    tasks: &Arc<Vec<(AgentTask, AgentTask)>>,
    concurrency: usize,
) -> Result<Vec<Summary>, Box<dyn std::error::Error>> {
    let mut out = Vec::new();
    for op in OPS {
        let started = Instant::now();
        let mut handles = Vec::new();
        for w in 0..concurrency {
            let (target, tasks) = (target.clone(), tasks.clone());
            let step = concurrency;
            handles.push(tokio::spawn(async move {
                let mut samples = Samples::default();
                for (task, updated) in tasks.iter().skip(w).step_by(step) {
                    let t = Instant::now();
                    target.op(op, task, updated).await?;
                    samples.push(t.elapsed());
                }
                Ok::<_, String>(samples)
            }));
        }
        let mut all = Samples::default();
        for h in handles {
            all.extend(h.await??);
        }
        out.push(all.summary(op, started.elapsed()));
    }
    Ok(out)
}

/// The round with the median throughput.
fn median(mut rounds: Vec<Summary>) -> Summary {
    rounds.sort_by(|a, b| a.ops_per_sec.total_cmp(&b.ops_per_sec));
    rounds.swap_remove(rounds.len() / 2)
}

#[derive(Serialize)]
struct Row {
    mode: String,
    op: String,
    store: Summary,
    baseline: Summary,
    ratio: f64,
}

pub async fn run(args: &Args, json: bool) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let tasks: Vec<(AgentTask, AgentTask)> = (0..args.ops)
        .map(|n| {
            let task = workload::three_item_task(&format!("bench-{n}"), n);
            let mut updated = task.clone();
            updated.status = TaskStatus::Paused;
            (task, updated)
        })
        .collect();
    let size = serde_json::to_vec(&tasks[0].0)?.len();
    let tasks = Arc::new(tasks);
    let mut rows = Vec::new();
    for (mode, concurrency) in [("sequential", 1), ("concurrent", args.concurrency.max(1))] {
        let mode = if concurrency == 1 {
            mode.to_string()
        } else {
            format!("{concurrency} tasks")
        };
        if !json {
            eprintln!("measuring {mode}: {} ops per operation...", args.ops);
        }
        // warm up allocators and caches once per mode
        let warm = Target::Store(TaskStore::new(Arc::new(MemoryBackend::new())));
        measure(
            &warm,
            &Arc::new(tasks[..tasks.len().min(2000)].to_vec()),
            concurrency,
        )
        .await?;
        let rounds = args.rounds.max(1);
        let (mut store_rounds, mut baseline_rounds) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            // fresh stores each round; alternate who goes first
            let store = Target::Store(TaskStore::new(Arc::new(MemoryBackend::new())));
            let baseline = Target::Baseline(Arc::new(Baseline::default()));
            if round % 2 == 0 {
                store_rounds.push(measure(&store, &tasks, concurrency).await?);
                baseline_rounds.push(measure(&baseline, &tasks, concurrency).await?);
            } else {
                baseline_rounds.push(measure(&baseline, &tasks, concurrency).await?);
                store_rounds.push(measure(&store, &tasks, concurrency).await?);
            }
        }
        for i in 0..OPS.len() {
            let store = median(store_rounds.iter().map(|r| r[i].clone()).collect());
            let baseline = median(baseline_rounds.iter().map(|r| r[i].clone()).collect());
            rows.push(Row {
                mode: mode.clone(),
                op: store.op.clone(),
                ratio: store.ops_per_sec / baseline.ops_per_sec,
                store,
                baseline,
            });
        }
    }
    if json {
        let out = serde_json::json!({ "backend": "memory", "task_bytes": size, "ops": args.ops, "rounds": args.rounds, "rows": rows });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "TaskStore on the memory backend vs a bare RwLock<HashMap> with the same serde work; {size}-byte tasks of 3 items, {} ops per phase, median of {} rounds",
        args.ops, args.rounds.max(1)
    );
    let mut t = table(&[
        "mode",
        "operation",
        "store ops/s",
        "p50 µs",
        "p99 µs",
        "baseline ops/s",
        "p50 µs",
        "p99 µs",
        "ratio",
    ]);
    for r in &rows {
        t.add_row(vec![
            r.mode.clone().into(),
            r.op.clone().into(),
            right(thousands(r.store.ops_per_sec)),
            right(format!("{:.1}", r.store.p50_us)),
            right(format!("{:.1}", r.store.p99_us)),
            right(thousands(r.baseline.ops_per_sec)),
            right(format!("{:.1}", r.baseline.p50_us)),
            right(format!("{:.1}", r.baseline.p99_us)),
            right(format!("{:.2}", r.ratio)),
        ]);
    }
    println!("{t}");
    let worst = rows.iter().map(|r| r.ratio).fold(f64::INFINITY, f64::min);
    println!("lowest ratio: {worst:.2} (target >= 0.50)");
    Ok(ExitCode::SUCCESS)
}
