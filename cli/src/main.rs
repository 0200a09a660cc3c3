//! `ta-persist`: operate the agent-state persistence framework.

mod conformance;
mod crews;
mod demo;
mod doctor;
mod health;
mod inspect;
mod maintain;
mod orphans;
mod queue;
mod runs_scene;
mod stats;
mod streams;
mod transfer;
mod workflows;
mod workflows_scene;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use persistence_core::config::{Settings, CONFIG_PATH_VAR};
use persistence_core::factory::Factory;

/// Operate the agent-state persistence framework: check the configured
/// backend, run a demo workload, read the stack's counters, or run the
/// conformance suite. (Benchmarks: the ta-persist-bench binary.)
///
/// Settings come from a TOML file (--config, TA_PERSISTENCE_CONFIG, or
/// config/default.toml if present) overlaid by TA_* environment variables.
#[derive(Debug, Parser)]
#[command(name = "ta-persist", version)]
struct Cli {
    /// TOML settings file (overrides TA_PERSISTENCE_CONFIG).
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Backend to use: memory, redb, sled, redis or plugin (overrides TA_PERSISTENCE_BACKEND).
    #[arg(long, global = true, value_name = "NAME")]
    backend: Option<String>,
    /// Print JSON for scripts instead of tables for people.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Resolve the settings, open the backend and report its health
    /// (exit code 1 when down, 2 when degraded).
    Health(health::Args),
    /// Run a realistic agent workload on the configured backend: create
    /// tasks, resume them by request id, pause for a tool call, complete,
    /// delete; then print counts and ops/s.
    Demo(demo::Args),
    /// Run the conformance suite against the configured backend, or against
    /// a plugin library (--module PATH [--class NAME] [--option KEY=VALUE]),
    /// and print a pass/fail table (exit code 1 on any failure).
    Conformance(conformance::Args),
    /// Run task lives through the configured stack and print what it
    /// counted: calls, errors and time per operation; retries, breaker
    /// transitions, queue depth, cache hits and misses; and lives that
    /// failed. Exit code as `health`, by where the stack ended (1 down, 2
    /// degraded).
    Stats(stats::Args),
    /// Explain the configuration: which backend and layers it chooses and
    /// why, whether the backend opens (without falling back) and answers;
    /// each problem with its fix (exit code 1 on any problem).
    Doctor,
    /// Look at stored tasks: list them (all, or by request id), show one
    /// with its version, expiry and request ids, or delete one.
    #[command(subcommand)]
    Tasks(inspect::Tasks),
    /// Look at any namespace's documents: list keys, or show one document.
    #[command(subcommand)]
    Docs(inspect::Docs),
    /// Run event streams on the engine the settings choose ([streams],
    /// STREAMING_BACKEND): tail (replay then follow), append, close.
    #[command(subcommand)]
    Streams(streams::Streams),
    /// The crew registry (seed 000) on the configured backend: list, show.
    #[command(subcommand)]
    Crews(crews::Crews),
    /// The workflow store (seed 001) on the configured backend: analytics,
    /// recent results, show one workflow.
    #[command(subcommand)]
    Workflows(workflows::Workflows),
    /// Write every document (or those of --namespace NS) as JSON lines:
    /// key, namespace, bytes, TTL left, index terms; documents that are
    /// not JSON go as raw bytes, flagged.
    Export(transfer::ExportArgs),
    /// Read what export wrote into the configured backend (--mode create
    /// reports keys that exist; upsert replaces them).
    Import(transfer::ImportArgs),
    /// Copy every namespace from one backend to another (--from CONFIG
    /// --to CONFIG), resumable, then verify counts and checksums.
    Migrate(transfer::MigrateArgs),
    /// The run queue the settings choose ([queue]): stats, list, show,
    /// cancel, requeue-dead, enqueue, sweep.
    #[command(subcommand)]
    Queue(queue::Queue),
    /// Run a worker on the queue with the demo handler (each job an agent
    /// run of {"steps": N} steps, streamed as events), sweeping too, until
    /// ctrl-c, SIGTERM or --for; then finish or release running jobs.
    Worker(queue::WorkerArgs),
    /// The embedded engine (redb): give free space back to the file
    /// system, reporting the file's size before and after. Needs the
    /// database to itself (stop the service first).
    Compact,
    /// The embedded engines (redb, sled): free every expired document they
    /// still keep on disk (writes free a few each already).
    PurgeExpired,
    /// Redis shared with the Python system: remove the metadata and order
    /// entries of tasks the other system deleted (bounded by --max).
    ClearOrphans(orphans::Args),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TA_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        // colour codes only where a person reads a terminal
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    persistence_cli::run_command(run(cli))
}

async fn run(cli: Cli) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let settings = || load_settings(&cli);
    match &cli.command {
        Command::Health(args) => health::run(args, &settings()?, &factory(), cli.json).await,
        Command::Demo(args) => demo::run(args, &settings()?, &factory(), cli.json).await,
        Command::Stats(args) => stats::run(args, &settings()?, &factory(), cli.json).await,
        Command::Doctor => doctor::run(settings(), &factory(), cli.json).await,
        Command::Tasks(command) => {
            inspect::tasks(command, &settings()?, &factory(), cli.json).await
        }
        Command::Docs(command) => inspect::docs(command, &settings()?, &factory(), cli.json).await,
        Command::Streams(command) => {
            streams::run(command, &settings()?, &factory(), cli.json).await
        }
        Command::Crews(command) => crews::run(command, &settings()?, &factory(), cli.json).await,
        Command::Workflows(command) => {
            workflows::run(command, &settings()?, &factory(), cli.json).await
        }
        Command::Export(args) => transfer::export(args, &settings()?, &factory(), cli.json).await,
        Command::Import(args) => transfer::import(args, &settings()?, &factory(), cli.json).await,
        Command::Migrate(args) => transfer::migrate(args, &factory(), cli.json).await,
        Command::Queue(command) => queue::run(command, &settings()?, &factory(), cli.json).await,
        Command::Worker(args) => queue::worker(args, &settings()?, &factory(), cli.json).await,
        Command::Compact => maintain::compact(&settings()?, cli.json).await,
        Command::PurgeExpired => maintain::purge_expired(&settings()?, cli.json).await,
        Command::ClearOrphans(args) => orphans::run(args, &settings()?, cli.json).await,
        Command::Conformance(args) => {
            conformance::run(args, &settings()?, &factory(), cli.json).await
        }
    }
}

/// The backends this binary was built with.
fn factory() -> Factory {
    persistence_builtin::factory()
}

fn load_settings(cli: &Cli) -> Result<Settings, persistence_core::Error> {
    let mut env: Vec<(String, String)> = std::env::vars().collect();
    if let Some(path) = &cli.config {
        env.push((CONFIG_PATH_VAR.into(), path.display().to_string()));
    }
    if let Some(backend) = &cli.backend {
        env.push(("TA_PERSISTENCE_BACKEND".into(), backend.clone()));
    }
    factory().load_settings_from_env(env)
}
