//! `ta-persist-bench`: benchmark the task store against a baseline doing
//! the same work in the same run. Kept apart from `ta-persist`, so the
//! shipped CLI links no test support (it starts its own redis-server) and
//! no raw-engine baselines.

mod bench;
mod disk;
mod queue_bench;
mod raw_engines;
mod streams_bench;
mod workflows_bench;

use std::process::ExitCode;

use clap::Parser;

/// Benchmark the task store against a baseline doing the same work in the
/// same run (memory: a bare `RwLock<HashMap>`; redb, sled: the raw engine; redis: raw
/// SET/GET/DEL; plugin: the same backend linked in); prints ops/s, p50/p99
/// and ratios, medians over rounds.
#[derive(Debug, Parser)]
#[command(name = "ta-persist-bench", version)]
struct Cli {
    /// Print JSON for scripts instead of tables for people.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    args: bench::Args,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    persistence_cli::run_command(bench::run(&cli.args, cli.json))
}
