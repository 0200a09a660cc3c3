//! What `ta-persist` and the benchmark binary share: the demo's agent
//! workload and the tables and latency summaries they print.
#![warn(missing_docs, missing_debug_implementations)]

pub mod report;
pub mod workload;

use std::future::Future;
use std::process::ExitCode;

/// Runs a command's future on a multi-threaded runtime and turns its
/// outcome into the exit code, printing an error on stderr. The runtime is
/// shut down with a 1 s bound, so a thread still stuck in a backend (a
/// cancelled case, a plugin that never returns) cannot keep the process
/// alive.
pub fn run_command(
    command: impl Future<Output = Result<ExitCode, Box<dyn std::error::Error>>>,
) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match runtime.block_on(command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    };
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    code
}
