//! `stats`: what the configured stack counts while it works.

use std::process::ExitCode;

use persistence_core::backend::{HealthStatus, Stats};
use persistence_core::config::Settings;
use persistence_core::factory::Factory;

use crate::demo;
use persistence_cli::report::{right, table};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Task lives to run through the stack before reporting (each is 7
    /// operations, as in `demo`); 0 reports what opening the stack did
    /// (preloading, replaying a spilled queue).
    #[arg(long, default_value_t = 200)]
    tasks: usize,
    /// Tasks in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// After the lives, wait up to this many seconds for queued writes to
    /// be replayed before reporting.
    #[arg(long, default_value_t = 30)]
    settle_secs: u64,
}

pub async fn run(
    args: &Args,
    settings: &Settings,
    factory: &Factory,
    json: bool,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let (store, opened) = demo::open_task_store(factory, settings).await?;
    // the counters matter most when calls fail: every life runs, a failed
    // one is counted, and the report comes whatever happened
    let failures = if args.tasks > 0 {
        demo::lives(
            &store,
            None,
            args.tasks,
            args.concurrency,
            false,
            !json,
            true,
        )
        .await?
        .1
    } else {
        demo::Failures::default()
    };
    // writes accepted during an outage are still being replayed: give them
    // the time the stack would, so the counters show where it ended
    let settle = std::time::Instant::now() + std::time::Duration::from_secs(args.settle_secs);
    while opened
        .backend
        .stats()
        .counters
        .get("queue_depth")
        .is_some_and(|d| *d > 0)
        && std::time::Instant::now() < settle
    {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let stats = opened.backend.stats();
    let health = opened.backend.health().await;
    let layers = &settings.layers.0;
    if json {
        let out = serde_json::json!({
            "backend": opened.backend.name(),
            "layers": layers,
            "tasks": args.tasks,
            "health": health.status,
            "stats": stats,
            "failed_lives": failures.count,
            "first_error": failures.first,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print(&stats, opened.backend.name(), layers, args.tasks);
        if let Some(first) = &failures.first {
            println!(
                "failed task lives: {} of {} (first: {first})",
                failures.count, args.tasks
            );
        }
        println!("health: {} ({})", health.status, health.message);
    }
    // judged as `health` is: by where the stack ended
    Ok(match health.status {
        HealthStatus::Ok => ExitCode::SUCCESS,
        HealthStatus::Down => ExitCode::from(1),
        HealthStatus::Degraded => ExitCode::from(2),
    })
}

fn print(stats: &Stats, backend: &str, layers: &[String], tasks: usize) {
    let layers = if layers.is_empty() {
        "no layers".to_string()
    } else {
        format!("layers: {}", layers.join(", "))
    };
    println!("stats of {backend} ({layers}) after {tasks} task lives");
    let mut t = table(&[
        "operation",
        "calls",
        "errors",
        "unavailable",
        "mean µs",
        "max µs",
    ]);
    for (name, op) in &stats.operations {
        t.add_row(vec![
            name.into(),
            right(op.calls),
            right(op.errors),
            right(op.unavailable),
            right(format!("{:.1}", op.mean_us())),
            right(format!("{:.1}", op.max_us())),
        ]);
    }
    println!("{t}");
    if !stats.counters.is_empty() {
        let mut t = table(&["counter", "value"]);
        for (name, value) in &stats.counters {
            t.add_row(vec![name.into(), right(value)]);
        }
        println!("{t}");
    }
}
