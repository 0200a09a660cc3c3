//! The demo's runs scene: agent runs through the run queue on several
//! workers, each run streaming its steps as events; one worker crashes
//! midway (its task is dropped, its leases never released), and the
//! sweeper and the other workers recover its runs.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use persistence_core::config::Settings;
use persistence_core::factory::Factory;
use persistence_core::queue::{
    JobState, ListFilter, NewJob, Priority, SharedQueue, Sweeper, Worker, WorkerOptions,
};
use persistence_core::streams::SharedStreams;
use serde::Serialize;

use persistence_cli::report::{right, table};

/// Lease, heartbeat and sweep of the scene: short, so a crashed worker's
/// runs come back within seconds.
const LEASE: Duration = Duration::from_secs(2);
const HEARTBEAT: Duration = Duration::from_millis(500);
const SWEEP: Duration = Duration::from_millis(500);
const STEP: Duration = Duration::from_millis(20);

/// What the scene did.
#[derive(Debug, Serialize)]
pub struct Scene {
    /// The queue's engine.
    pub engine: String,
    /// Runs enqueued.
    pub runs: usize,
    /// Workers started (one of them crashed).
    pub workers: usize,
    /// Runs completed, by the worker that completed them.
    pub completed_by: BTreeMap<String, usize>,
    /// Runs the crashed worker held when it crashed.
    pub held_at_crash: usize,
    /// Runs that needed a second attempt (the crashed worker's).
    pub redelivered: usize,
    /// Seconds the scene took.
    pub seconds: f64,
}

/// Runs `runs` agent runs on `workers` workers; the first worker crashes
/// once a third of the runs completed.
pub async fn run(
    factory: &Factory,
    settings: &Settings,
    streams: Option<SharedStreams>,
    runs: usize,
    workers: usize,
) -> Result<Scene, Box<dyn std::error::Error>> {
    let mut settings = settings.clone();
    settings.queue.name = Some(format!("demo-runs-{}", std::process::id()));
    let opened = factory.open_queue(&settings).await?;
    if let Some(cause) = &opened.fallback_cause {
        eprintln!("warning: queueing in memory because {cause}");
    }
    let queue: SharedQueue = opened.queue;
    let started = Instant::now();
    let prefix = format!("demo-run-{}", std::process::id());
    for n in 0..runs {
        let priority = Priority::ALL[n % 3];
        let job =
            NewJob::new(format!("{prefix}-{n:03}"), &b"{\"steps\": 5}"[..]).priority(priority);
        queue.enqueue(job).await?;
    }
    let _sweeper = Sweeper::spawn(queue.clone(), SWEEP);
    let mut tasks = Vec::new();
    for w in 0..workers.max(2) {
        let worker = Worker::new(
            queue.clone(),
            WorkerOptions {
                id: if w == 0 {
                    "worker-crashes".into()
                } else {
                    format!("worker-{w}")
                },
                concurrency: 2,
                lease: LEASE,
                heartbeat_interval: HEARTBEAT,
                claim_wait: Duration::from_millis(200),
                shutdown_deadline: Duration::from_secs(5),
            },
        );
        let streams = streams.clone();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            worker
                .run(
                    move |ctx| crate::queue::agent_run(ctx, streams.clone(), STEP),
                    async move {
                        let _ = stop_rx.await;
                    },
                )
                .await
        });
        tasks.push((task, stop_tx));
    }
    let completed = |q: SharedQueue| async move {
        q.stats()
            .await
            .map(|s| s.ended.get("completed").copied().unwrap_or(0) as usize)
    };
    // the crash: once a third is done, the first worker's task is dropped
    // mid-run; its leases are never released or completed
    let deadline = Instant::now() + Duration::from_secs(120);
    while completed(queue.clone()).await? < runs / 3 {
        if Instant::now() > deadline {
            return Err("the runs scene made no progress in 120 s".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let running = queue
        .list(ListFilter {
            state: Some(JobState::Running),
            limit: runs,
        })
        .await?;
    let held_at_crash = running
        .iter()
        .filter(|j| j.worker.as_deref() == Some("worker-crashes"))
        .count();
    let (crashed, _) = tasks.remove(0);
    crashed.abort();
    while completed(queue.clone()).await? < runs {
        if Instant::now() > deadline {
            return Err("not every run completed in 120 s".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (task, stop) in tasks {
        let _ = stop.send(());
        let _ = task.await;
    }
    let mut completed_by = BTreeMap::new();
    let mut redelivered = 0;
    for job in queue
        .list(ListFilter {
            state: Some(JobState::Completed),
            limit: runs,
        })
        .await?
    {
        *completed_by
            .entry(job.worker.unwrap_or_default())
            .or_default() += 1;
        if job.attempts > 1 {
            redelivered += 1;
        }
    }
    queue.clear().await?;
    if let Some(s) = &streams {
        for n in 0..runs {
            let _ = s.delete(&format!("{prefix}-{n:03}")).await;
        }
    }
    Ok(Scene {
        engine: queue.name().to_string(),
        runs,
        workers: workers.max(2),
        completed_by,
        held_at_crash,
        redelivered,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The scene's table.
pub fn print(scene: &Scene) {
    println!(
        "runs on the {} queue: {} agent runs on {} workers; one crashed midway with {} in hand, {} redelivered after their {} s lease; every run completed in {:.2} s",
        scene.engine,
        scene.runs,
        scene.workers,
        scene.held_at_crash,
        scene.redelivered,
        LEASE.as_secs(),
        scene.seconds
    );
    let mut t = table(&["worker", "runs completed"]);
    for (w, n) in &scene.completed_by {
        t.add_row(vec![w.clone().into(), right(n)]);
    }
    println!("{t}");
}
