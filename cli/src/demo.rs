//! `demo`: a realistic agent workload on the configured backend.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use persistence_core::config::Settings;
use persistence_core::factory::Factory;
use persistence_core::TaskStore;

use persistence_cli::report::{right, table, thousands, Samples, Summary};
use persistence_cli::workload;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Number of agent tasks to run through their life.
    #[arg(long, default_value_t = 2000)]
    tasks: usize,
    /// Tasks in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Keep the completed tasks instead of deleting them.
    #[arg(long)]
    keep: bool,
}

/// Latencies by operation.
pub type Recorded = BTreeMap<&'static str, Samples>;

async fn timed<T, E>(
    rec: &mut Recorded,
    op: &'static str,
    f: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let start = Instant::now();
    let out = f.await;
    rec.entry(op).or_default().push(start.elapsed());
    out
}

/// One task's life: opened, resumed by request id, paused for approval,
/// resumed, approved and completed (with an optimistic update), deleted.
async fn life(
    store: &TaskStore,
    run: &str,
    n: usize,
    keep: bool,
    rec: &mut Recorded,
) -> Result<(), String> {
    let id = format!("demo-{run}-{n}");
    let (r1, r2) = (format!("{id}-req-1"), format!("{id}-req-2"));
    let e = |e: persistence_core::TaskStoreError| e.to_string();
    timed(
        rec,
        "create",
        store.create(&workload::opened_task(&id, &r1, n)),
    )
    .await
    .map_err(e)?;
    let mut task = timed(rec, "load_by_request_id", store.load_by_request_id(&r1))
        .await
        .map_err(e)?
        .ok_or(format!("task {id} not found by its request id"))?;
    workload::pause_for_approval(&mut task, &r2);
    timed(rec, "update", store.update(&task)).await.map_err(e)?;
    timed(rec, "load_by_request_id", store.load_by_request_id(&r2))
        .await
        .map_err(e)?
        .ok_or(format!(
            "paused task {id} not found by its second request id"
        ))?;
    let current = timed(rec, "load", store.load_versioned(&id))
        .await
        .map_err(e)?
        .ok_or(format!("task {id} vanished"))?;
    let mut task = current.record;
    workload::complete(&mut task, &r2);
    timed(rec, "update", store.update_if(&task, current.version))
        .await
        .map_err(e)?;
    if !keep {
        timed(rec, "delete", store.delete(&id)).await.map_err(e)?;
    }
    Ok(())
}

/// Task lives that failed when running with `keep_going`.
#[derive(Debug, Default)]
pub struct Failures {
    /// How many lives ended with an error.
    pub count: usize,
    /// The first error met.
    pub first: Option<String>,
}

/// Runs `tasks` task lives, `concurrency` at a time, with a progress bar
/// when `progress`; returns the latencies by operation. The first failed
/// life is the error, unless `keep_going`: then failed lives are counted
/// and the others run on.
pub async fn lives(
    store: &TaskStore,
    tasks: usize,
    concurrency: usize,
    keep: bool,
    progress: bool,
    keep_going: bool,
) -> Result<(Recorded, Failures), Box<dyn std::error::Error>> {
    let bar = if progress {
        ProgressBar::new(tasks as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} tasks ({per_sec})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let run_id = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis()
    );
    let workers = concurrency.clamp(1, tasks.max(1));
    let mut handles = Vec::new();
    for w in 0..workers {
        let (store, bar, run_id) = (store.clone(), bar.clone(), run_id.clone());
        handles.push(tokio::spawn(async move {
            let mut rec = Recorded::new();
            let mut failures = Failures::default();
            for n in (w..tasks).step_by(workers) {
                if let Err(e) = life(&store, &run_id, n, keep, &mut rec).await {
                    if !keep_going {
                        return Err(e);
                    }
                    failures.count += 1;
                    failures.first.get_or_insert(e);
                }
                bar.inc(1);
            }
            Ok::<_, String>((rec, failures))
        }));
    }
    let mut all = Recorded::new();
    let mut failures = Failures::default();
    for h in handles {
        let (recorded, failed) = h.await??;
        for (op, samples) in recorded {
            all.entry(op).or_default().extend(samples);
        }
        failures.count += failed.count;
        if failures.first.is_none() {
            failures.first = failed.first;
        }
    }
    bar.finish_and_clear();
    Ok((all, failures))
}

/// Opens the configured task store, warning on stderr when it fell back
/// to memory.
pub async fn open_task_store(
    factory: &Factory,
    settings: &Settings,
) -> Result<(TaskStore, persistence_core::factory::Opened), persistence_core::Error> {
    let (store, opened) = factory.open_task_store(settings).await?;
    if let Some(cause) = &opened.fallback_cause {
        eprintln!(
            "warning: running on memory because {} could not start: {cause}",
            opened.requested
        );
    }
    Ok((store, opened))
}

pub async fn run(
    args: &Args,
    settings: &Settings,
    factory: &Factory,
    json: bool,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let (store, opened) = open_task_store(factory, settings).await?;
    let backend = opened.backend.name().to_string();
    let started = Instant::now();
    let (mut all, _) = lives(
        &store,
        args.tasks,
        args.concurrency,
        args.keep,
        !json,
        false,
    )
    .await?;
    let wall = started.elapsed();
    let remaining = store.count().await.ok();
    let total_ops: usize = all.values().map(Samples::len).sum();
    let summaries: Vec<Summary> = ["create", "load", "load_by_request_id", "update", "delete"]
        .into_iter()
        .filter_map(|op| all.remove(op).map(|s| s.summary(op, wall)))
        .collect();
    print(args, &backend, wall, total_ops, remaining, &summaries, json)?;
    Ok(ExitCode::SUCCESS)
}

fn print(
    args: &Args,
    backend: &str,
    wall: Duration,
    total_ops: usize,
    remaining: Option<u64>,
    summaries: &[Summary],
    json: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let ops_per_sec = total_ops as f64 / wall.as_secs_f64();
    if json {
        let out = serde_json::json!({
            "backend": backend, "tasks": args.tasks, "concurrency": args.concurrency,
            "seconds": wall.as_secs_f64(), "total_ops": total_ops, "ops_per_sec": ops_per_sec,
            "tasks_left": remaining, "operations": summaries,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "demo on {backend}: {} tasks, {} in flight, {:.2} s, {} ops ({} ops/s)",
        args.tasks,
        args.concurrency,
        wall.as_secs_f64(),
        total_ops,
        thousands(ops_per_sec)
    );
    let mut t = table(&["operation", "count", "ops/s", "p50 µs", "p99 µs"]);
    for s in summaries {
        t.add_row(vec![
            s.op.clone().into(),
            right(s.count),
            right(thousands(s.ops_per_sec)),
            right(format!("{:.1}", s.p50_us)),
            right(format!("{:.1}", s.p99_us)),
        ]);
    }
    t.add_row(vec![
        "all".into(),
        right(total_ops),
        right(thousands(ops_per_sec)),
        "".into(),
        "".into(),
    ]);
    println!("{t}");
    if let Some(n) = remaining {
        println!("tasks left in the store: {n}");
    }
    Ok(())
}
