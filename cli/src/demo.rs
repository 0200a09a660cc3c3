//! `demo`: a realistic agent workload on the configured backend.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use persistence_core::config::Settings;
use persistence_core::factory::Factory;
use persistence_core::streams::{Item, SharedStreams, StartAt};
use persistence_core::{ErrorKind, TaskStore};

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
    /// Keep the completed tasks (and their event streams) instead of
    /// deleting them.
    #[arg(long)]
    keep: bool,
    /// Do not stream each task's events (by default each task's life is
    /// appended to its run's event stream, which a follower reads live).
    #[arg(long)]
    no_streams: bool,
    /// Agent runs for the runs scene: through the run queue on --workers
    /// workers, one of which crashes midway (0 skips the scene).
    #[arg(long, default_value_t = 30)]
    runs: usize,
    /// Workers of the runs scene (at least 2).
    #[arg(long, default_value_t = 3)]
    workers: usize,
    /// Workflows of the workflows-and-crews scene (seeds 001 and 000),
    /// created, run and completed through the workflow store (0: no scene).
    #[arg(long, default_value_t = 30)]
    workflows: usize,
}

/// The events each task's life appends to its run's stream.
const LIFE_EVENTS: [&str; 4] = ["created", "paused_for_approval", "resumed", "completed"];

/// Longest wait for a run's follower to get the end after the close.
const FOLLOWER_WAIT: Duration = Duration::from_secs(30);

/// Latencies by operation.
pub type Recorded = BTreeMap<&'static str, Samples>;

pub async fn timed<T, E>(
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
/// With `streams`, each step is also an event of the run's stream (named
/// by the task id), which a follower subscribed before the first reads
/// live; the life fails unless the follower got every event and the end.
async fn life(
    store: &TaskStore,
    streams: Option<&SharedStreams>,
    run: &str,
    n: usize,
    keep: bool,
    rec: &mut Recorded,
) -> Result<(), String> {
    let id = format!("demo-{run}-{n}");
    let (r1, r2) = (format!("{id}-req-1"), format!("{id}-req-2"));
    let e = |e: persistence_core::TaskStoreError| e.to_string();
    let follower = match streams {
        Some(s) => Some(follow_run(s, &id).await?),
        None => None,
    };
    let mut events = LIFE_EVENTS.iter();
    let mut step = async |rec: &mut Recorded| -> Result<(), String> {
        let (Some(s), Some(event)) = (streams, events.next()) else {
            return Ok(());
        };
        let data = serde_json::json!({"task_id": id, "event": event}).to_string();
        timed(rec, "append", s.append(&id, data.into()))
            .await
            .map(drop)
            .map_err(|e| format!("appending to the stream of {id}: {e}"))
    };
    timed(
        rec,
        "create",
        store.create(&workload::opened_task(&id, &r1, n)),
    )
    .await
    .map_err(e)?;
    step(rec).await?;
    let mut task = timed(rec, "load_by_request_id", store.load_by_request_id(&r1))
        .await
        .map_err(e)?
        .ok_or(format!("task {id} not found by its request id"))?;
    workload::pause_for_approval(&mut task, &r2);
    timed(rec, "update", store.update(&task)).await.map_err(e)?;
    step(rec).await?;
    timed(rec, "load_by_request_id", store.load_by_request_id(&r2))
        .await
        .map_err(e)?
        .ok_or(format!(
            "paused task {id} not found by its second request id"
        ))?;
    step(rec).await?;
    let current = timed(rec, "load", store.load_versioned(&id))
        .await
        .map_err(e)?
        .ok_or(format!("task {id} vanished"))?;
    let mut task = current.record;
    workload::complete(&mut task, &r2);
    timed(rec, "update", store.update_if(&task, current.version))
        .await
        .map_err(e)?;
    step(rec).await?;
    if let (Some(s), Some(follower)) = (streams, follower) {
        s.close(&id, "success")
            .await
            .map_err(|e| format!("closing the stream of {id}: {e}"))?;
        let got = tokio::time::timeout(FOLLOWER_WAIT, follower)
            .await
            .map_err(|_| format!("the follower of {id} got no end within {FOLLOWER_WAIT:?}"))?
            .map_err(|e| format!("the follower of {id} failed: {e}"))??;
        if got != LIFE_EVENTS.len() {
            return Err(format!(
                "the follower of {id} got {got} of {} events",
                LIFE_EVENTS.len()
            ));
        }
        if !keep {
            s.delete(&id)
                .await
                .map_err(|e| format!("deleting the stream of {id}: {e}"))?;
        }
    }
    if !keep {
        timed(rec, "delete", store.delete(&id)).await.map_err(e)?;
    }
    Ok(())
}

/// Subscribes to `run`'s stream from the beginning and reads it until the
/// end: the number of events, or why it stopped.
async fn follow_run(
    streams: &SharedStreams,
    run: &str,
) -> Result<tokio::task::JoinHandle<Result<usize, String>>, String> {
    let mut sub = streams
        .subscribe(run, StartAt::Beginning)
        .await
        .map_err(|e| format!("subscribing to the stream of {run}: {e}"))?;
    let run = run.to_string();
    Ok(tokio::spawn(async move {
        let mut events = 0;
        while let Some(item) = futures::StreamExt::next(&mut sub).await {
            match item {
                Ok(Item::Event(_)) => events += 1,
                Ok(Item::End(reason)) if reason == "success" => return Ok(events),
                Ok(Item::End(reason)) => return Err(format!("{run} ended with {reason:?}")),
                Err(e) if e.is_retryable() => continue,
                Err(e) => return Err(e.to_string()),
            }
        }
        Err(format!("the subscription to {run} stopped before the end"))
    }))
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
    streams: Option<SharedStreams>,
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
        let streams = streams.clone();
        handles.push(tokio::spawn(async move {
            let mut rec = Recorded::new();
            let mut failures = Failures::default();
            for n in (w..tasks).step_by(workers) {
                let streams = streams.as_ref();
                if let Err(e) = life(&store, streams, &run_id, n, keep, &mut rec).await {
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
    warn_on_fallback(&opened);
    Ok((store, opened))
}

/// Opens the configured backend, warning on stderr when it fell back to
/// memory (what the typed-store commands run on).
pub async fn open_backend(
    factory: &Factory,
    settings: &Settings,
) -> Result<persistence_core::SharedBackend, persistence_core::Error> {
    let opened = factory.open(settings).await?;
    warn_on_fallback(&opened);
    Ok(opened.backend)
}

fn warn_on_fallback(opened: &persistence_core::factory::Opened) {
    if let Some(cause) = &opened.fallback_cause {
        eprintln!(
            "warning: running on memory because {} could not start: {cause}",
            opened.requested
        );
    }
}

pub async fn run(
    args: &Args,
    settings: &Settings,
    factory: &Factory,
    json: bool,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let (store, opened) = open_task_store(factory, settings).await?;
    let backend = opened.backend.name().to_string();
    let streams = match args.no_streams {
        true => None,
        false => open_streams(factory, settings).await?,
    };
    let streams_engine = streams.as_ref().map(|s| s.name().to_string());
    let started = Instant::now();
    let (mut all, _) = lives(
        &store,
        streams.clone(),
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
    let summaries: Vec<Summary> = [
        "create",
        "load",
        "load_by_request_id",
        "update",
        "delete",
        "append",
    ]
    .into_iter()
    .filter_map(|op| all.remove(op).map(|s| s.summary(op, wall)))
    .collect();
    let run = Run {
        backend,
        streams: streams_engine,
        wall,
        total_ops,
        remaining,
    };
    let scene = match args.runs {
        0 => None,
        runs => {
            match crate::runs_scene::run(factory, settings, streams, runs, args.workers).await {
                Ok(scene) => Some(scene),
                Err(e)
                    if e.downcast_ref::<persistence_core::Error>()
                        .is_some_and(|e| e.kind() == ErrorKind::Unsupported) =>
                {
                    eprintln!("note: no runs scene: {e}");
                    None
                }
                Err(e) => return Err(e),
            }
        }
    };
    let workflows = match args.workflows {
        0 => None,
        n => Some(crate::workflows_scene::run(opened.backend.clone(), n, args.keep).await?),
    };
    print(
        args,
        &run,
        &summaries,
        scene.as_ref(),
        workflows.as_ref(),
        json,
    )?;
    Ok(ExitCode::SUCCESS)
}

/// The streams engine the settings choose, or none (said on stderr) when
/// the engine has none and the fallback policy is `fail`.
async fn open_streams(
    factory: &Factory,
    settings: &Settings,
) -> Result<Option<SharedStreams>, persistence_core::Error> {
    match factory.open_streams(settings).await {
        Ok(opened) => {
            if let Some(cause) = &opened.fallback_cause {
                eprintln!("warning: streaming in memory because {cause}");
            }
            Ok(Some(opened.streams))
        }
        Err(e) if e.kind() == ErrorKind::Unsupported => {
            eprintln!("note: running without event streams: {e}");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// What a demo run did, for the report.
struct Run {
    backend: String,
    streams: Option<String>,
    wall: Duration,
    total_ops: usize,
    remaining: Option<u64>,
}

fn print(
    args: &Args,
    run: &Run,
    summaries: &[Summary],
    scene: Option<&crate::runs_scene::Scene>,
    workflows: Option<&crate::workflows_scene::Scene>,
    json: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let Run {
        backend,
        streams,
        wall,
        total_ops,
        remaining,
    } = run;
    let ops_per_sec = *total_ops as f64 / wall.as_secs_f64();
    let appended = summaries
        .iter()
        .find(|s| s.op == "append")
        .map_or(0, |s| s.count);
    if json {
        let out = serde_json::json!({
            "backend": backend, "tasks": args.tasks, "concurrency": args.concurrency,
            "seconds": wall.as_secs_f64(), "total_ops": total_ops, "ops_per_sec": ops_per_sec,
            "tasks_left": remaining, "operations": summaries,
            "streams": streams, "events_streamed": appended,
            "runs_scene": scene, "workflows_scene": workflows,
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
    if let Some(engine) = streams {
        println!(
            "event streams on {engine}: {appended} events appended, each run's followed live to its end"
        );
    }
    if let Some(n) = remaining {
        println!("tasks left in the store: {n}");
    }
    if let Some(scene) = scene {
        crate::runs_scene::print(scene);
    }
    if let Some(scene) = workflows {
        crate::workflows_scene::print(scene);
    }
    Ok(())
}
