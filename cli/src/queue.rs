//! `queue` and `worker`: look at and operate the run queue the settings
//! choose (`[queue]`), and run a worker on it with the demo handler.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use persistence_core::config::Settings;
use persistence_core::factory::Factory;
use persistence_core::queue::{
    JobContext, JobStatus, ListFilter, NewJob, Priority, SharedQueue, Sweeper, Worker,
    WorkerOptions, WorkerReport,
};
use persistence_core::streams::SharedStreams;
use persistence_core::ErrorKind;

use persistence_cli::report::table;

fn grid(header: &[&str], rows: Vec<Vec<String>>) -> comfy_table::Table {
    let mut t = table(header);
    for r in rows {
        t.add_row(r);
    }
    t
}

#[derive(Debug, clap::Subcommand)]
pub enum Queue {
    /// Depth per priority, delayed, running, ended jobs kept, the oldest
    /// ready job's age, and each worker's last claim or heartbeat.
    Stats,
    /// List jobs, oldest first.
    List {
        /// Only jobs in this state: pending, running, completed, failed,
        /// dead, cancelled.
        #[arg(long)]
        status: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Show one job: state, attempts, worker, lease, error, result.
    Show {
        /// The job's id.
        id: String,
    },
    /// Cancel a job: pending ones at once, running ones by signalling
    /// their worker.
    Cancel {
        /// The job's id.
        id: String,
    },
    /// Put every dead-lettered job back in the queue with fresh attempts.
    RequeueDead,
    /// Enqueue a job (the demo worker reads `{"steps": N}`).
    Enqueue {
        /// The job's id (enqueueing a known id again is reported, not repeated).
        id: String,
        /// Its payload.
        #[arg(default_value = "{\"steps\": 5}")]
        payload: String,
        /// high, normal or low.
        #[arg(long, default_value = "normal")]
        priority: String,
    },
    /// Remove every job of the queue, whatever its state (workers holding
    /// its leases get LeaseLost). Needs --yes.
    Clear {
        /// Yes, remove every job.
        #[arg(long)]
        yes: bool,
    },
    /// Run one sweep now: expired leases back to the queue, stale pending
    /// jobs failed, ended jobs past retention removed.
    Sweep,
}

#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// This worker's id (default: worker-PID).
    #[arg(long)]
    id: Option<String>,
    /// Jobs at once (default: queue.concurrency, 4).
    #[arg(long)]
    concurrency: Option<usize>,
    /// Stop after this many seconds (default: until ctrl-c or SIGTERM).
    #[arg(long, value_name = "SECONDS")]
    r#for: Option<f64>,
    /// Time each demo step takes, in ms.
    #[arg(long, default_value_t = 100)]
    step_ms: u64,
    /// Seconds running jobs get to finish after a stop is asked for;
    /// the rest are released.
    #[arg(long, default_value_t = 10.0)]
    shutdown_secs: f64,
}

/// The queue the settings choose, saying on stderr if it fell back.
pub async fn open(
    factory: &Factory,
    settings: &Settings,
) -> Result<SharedQueue, persistence_core::Error> {
    let opened = factory.open_queue(settings).await?;
    if let Some(cause) = &opened.fallback_cause {
        eprintln!(
            "warning: the queue on {} is unavailable, queueing in memory: {cause}",
            opened.requested
        );
    }
    Ok(opened.queue)
}

fn age(now: u64, at: u64) -> String {
    format!("{:.1} s ago", now.saturating_sub(at) as f64 / 1000.0)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn status_json(s: &JobStatus) -> serde_json::Value {
    let mut v = serde_json::to_value(s).expect("a status serializes");
    v["result"] = s
        .result
        .as_ref()
        .map(|r| serde_json::from_slice(r).unwrap_or_else(|_| String::from_utf8_lossy(r).into()))
        .unwrap_or(serde_json::Value::Null);
    v
}

pub async fn run(
    command: &Queue,
    settings: &Settings,
    factory: &Factory,
    json: bool,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let queue = open(factory, settings).await?;
    let now = now_ms();
    match command {
        Queue::Stats => {
            let s = queue.stats().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
                return Ok(ExitCode::SUCCESS);
            }
            let mut rows: Vec<Vec<String>> = Priority::ALL
                .iter()
                .map(|p| {
                    vec![
                        format!("ready ({p})"),
                        s.ready.get(p.as_str()).copied().unwrap_or(0).to_string(),
                    ]
                })
                .collect();
            rows.push(vec!["delayed".into(), s.delayed.to_string()]);
            rows.push(vec!["running".into(), s.running.to_string()]);
            for (state, n) in &s.ended {
                rows.push(vec![format!("ended ({state})"), n.to_string()]);
            }
            rows.push(vec![
                "oldest ready".into(),
                s.oldest_ready_age_ms
                    .map_or("-".into(), |a| format!("{:.1} s", a as f64 / 1000.0)),
            ]);
            println!("queue {} on {}", settings.queue.name(), queue.name());
            println!("{}", grid(&["what", "jobs"], rows));
            if !s.workers.is_empty() {
                let rows = s
                    .workers
                    .iter()
                    .map(|(w, at)| vec![w.clone(), age(now, *at)])
                    .collect();
                println!("{}", grid(&["worker", "last claim or heartbeat"], rows));
            }
        }
        Queue::List { status, limit } => {
            let state = status.as_deref().map(str::parse).transpose()?;
            let jobs = queue
                .list(ListFilter {
                    state,
                    limit: *limit,
                })
                .await?;
            if json {
                let all: Vec<_> = jobs.iter().map(status_json).collect();
                println!("{}", serde_json::to_string_pretty(&all)?);
                return Ok(ExitCode::SUCCESS);
            }
            let rows = jobs
                .iter()
                .map(|j| {
                    vec![
                        j.id.clone(),
                        j.state.to_string(),
                        j.priority.to_string(),
                        format!("{}/{}", j.attempts, j.max_attempts),
                        j.worker.clone().unwrap_or_default(),
                        age(now, j.updated_ms),
                    ]
                })
                .collect();
            println!(
                "{}",
                grid(
                    &["id", "state", "priority", "attempts", "worker", "changed"],
                    rows
                )
            );
        }
        Queue::Show { id } => {
            let Some(s) = queue.status(id).await? else {
                eprintln!("error: no job {id:?} in queue {}", settings.queue.name());
                return Ok(ExitCode::FAILURE);
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&status_json(&s))?);
                return Ok(ExitCode::SUCCESS);
            }
            let mut rows = vec![
                vec!["state".into(), s.state.to_string()],
                vec!["priority".into(), s.priority.to_string()],
                vec![
                    "attempts".into(),
                    format!("{} of {}", s.attempts, s.max_attempts),
                ],
                vec!["enqueued".into(), age(now, s.enqueued_ms)],
                vec!["changed".into(), age(now, s.updated_ms)],
                vec!["worker".into(), s.worker.clone().unwrap_or("-".into())],
            ];
            if let Some(d) = s.lease_deadline_ms {
                rows.push(vec![
                    "lease ends".into(),
                    format!("in {:.1} s", d.saturating_sub(now) as f64 / 1000.0),
                ]);
            }
            if s.ready_ms > now {
                rows.push(vec![
                    "ready".into(),
                    format!("in {:.1} s", (s.ready_ms - now) as f64 / 1000.0),
                ]);
            }
            rows.push(vec!["cancel asked".into(), s.cancel_requested.to_string()]);
            rows.push(vec!["error".into(), s.error.clone().unwrap_or("-".into())]);
            rows.push(vec![
                "result".into(),
                s.result
                    .as_ref()
                    .map_or("-".into(), |r| String::from_utf8_lossy(r).into_owned()),
            ]);
            println!("job {id}");
            println!("{}", grid(&["field", "value"], rows));
        }
        Queue::Cancel { id } => {
            let outcome = queue.cancel(id).await?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"id": id, "outcome": format!("{outcome:?}")})
                );
            } else {
                println!("{id}: {outcome:?}");
            }
        }
        Queue::RequeueDead => {
            let n = queue.requeue_dead().await?;
            if json {
                println!("{}", serde_json::json!({"requeued": n}));
            } else {
                println!("{n} dead jobs back in the queue");
            }
        }
        Queue::Enqueue {
            id,
            payload,
            priority,
        } => {
            let job = NewJob::new(id, payload.clone().into_bytes()).priority(priority.parse()?);
            let outcome = queue.enqueue(job).await?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"id": id, "outcome": format!("{outcome:?}")})
                );
            } else {
                println!("{id}: {outcome:?}");
            }
        }
        Queue::Clear { yes } => {
            if !yes {
                eprintln!(
                    "error: this removes every job of queue {} on {}; add --yes to do it",
                    settings.queue.name(),
                    queue.name()
                );
                return Ok(ExitCode::FAILURE);
            }
            let n = queue.clear().await?;
            if json {
                println!("{}", serde_json::json!({"removed": n}));
            } else {
                println!("{n} jobs removed");
            }
        }
        Queue::Sweep => {
            let report = queue.sweep_once().await?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!("{report:?}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The demo handler: an agent run of `{"steps": N}` steps (default 5),
/// each appended to the run's event stream when there are streams, each
/// taking `step`; stops at a cancel, closing the stream `cancelled`.
pub async fn agent_run(
    ctx: JobContext,
    streams: Option<SharedStreams>,
    step: Duration,
) -> Result<Option<bytes::Bytes>, String> {
    let JobContext {
        lease,
        mut cancellation,
    } = ctx;
    let steps = serde_json::from_slice::<serde_json::Value>(&lease.payload)
        .ok()
        .and_then(|v| v["steps"].as_u64())
        .unwrap_or(5)
        .min(10_000);
    for n in 1..=steps {
        if let Some(s) = &streams {
            let event = serde_json::json!({"run": lease.id, "step": n, "attempt": lease.attempt});
            match s.append(&lease.id, event.to_string().into()).await {
                Ok(_) => {}
                // an earlier attempt finished the stream: the run is done
                Err(e) if e.kind() == ErrorKind::Closed => break,
                Err(e) => return Err(format!("appending step {n}: {e}")),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(step) => {}
            _ = cancellation.cancelled() => {
                if let Some(s) = &streams {
                    let _ = s.close(&lease.id, "cancelled").await;
                }
                return Err("cancelled".into());
            }
        }
    }
    if let Some(s) = &streams {
        match s.close(&lease.id, "success").await {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Closed => {}
            Err(e) => return Err(format!("closing the stream: {e}")),
        }
    }
    Ok(Some(serde_json::json!({"steps": steps}).to_string().into()))
}

/// A stop: ctrl-c or SIGTERM, or after `limit`.
async fn stop_signal(limit: Option<Duration>) {
    let after = async {
        match limit {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = after => {}
        _ = term => eprintln!("SIGTERM: finishing or releasing running jobs"),
        _ = tokio::signal::ctrl_c() => eprintln!("ctrl-c: finishing or releasing running jobs"),
    }
}

pub async fn worker(
    args: &WorkerArgs,
    settings: &Settings,
    factory: &Factory,
    json: bool,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let queue = open(factory, settings).await?;
    let streams = match factory.open_streams(settings).await {
        Ok(opened) => Some(opened.streams),
        Err(e) if e.kind() == ErrorKind::Unsupported => None,
        Err(e) => return Err(e.into()),
    };
    let timing = settings.queue.timing()?;
    let options = WorkerOptions {
        id: args
            .id
            .clone()
            .unwrap_or_else(|| WorkerOptions::default().id),
        concurrency: args.concurrency.unwrap_or(timing.concurrency),
        lease: timing.lease,
        heartbeat_interval: timing.heartbeat_interval,
        claim_wait: Duration::from_secs(1),
        shutdown_deadline: Duration::try_from_secs_f64(args.shutdown_secs)?,
    };
    let limit = args.r#for.map(Duration::try_from_secs_f64).transpose()?;
    eprintln!(
        "worker {} on queue {} ({}), {} at once, lease {:?}, heartbeat every {:?}",
        options.id,
        settings.queue.name(),
        queue.name(),
        options.concurrency,
        options.lease,
        options.heartbeat_interval
    );
    let _sweeper = Sweeper::spawn(queue.clone(), timing.sweeper_interval);
    let step = Duration::from_millis(args.step_ms);
    let worker = Worker::new(queue.clone(), options.clone());
    let streams = Arc::new(streams);
    let report = worker
        .run(
            move |ctx| {
                let streams = (*streams).clone();
                async move {
                    let id = ctx.lease.id.clone();
                    let out = agent_run(ctx, streams, step).await;
                    eprintln!("{id}: {}", if out.is_ok() { "done" } else { "stopped" });
                    out
                }
            },
            stop_signal(limit),
        )
        .await;
    print_report(&options.id, &report, json)?;
    Ok(ExitCode::SUCCESS)
}

fn print_report(id: &str, r: &WorkerReport, json: bool) -> Result<(), serde_json::Error> {
    if json {
        println!("{}", serde_json::to_string(r)?);
        return Ok(());
    }
    let rows = [
        ("claimed", r.claimed),
        ("completed", r.completed),
        ("failed", r.failed),
        ("cancelled", r.cancelled),
        ("released", r.released),
        ("lease lost", r.lease_lost),
        ("errors", r.errors),
    ]
    .iter()
    .map(|(k, v)| vec![k.to_string(), v.to_string()])
    .collect();
    println!("worker {id}");
    println!("{}", grid(&["outcome", "jobs"], rows));
    Ok(())
}
