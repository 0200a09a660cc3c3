//! `clear-orphans`: on a Redis shared with the Python system, remove the
//! metadata and order entries of tasks the other system deleted.

use std::process::ExitCode;

use persistence_core::config::Settings;
use persistence_redis::{RedisBackend, RedisOptions};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The namespace to walk (default: the task store's, `task`).
    #[arg(long, value_name = "NS")]
    namespace: Option<String>,
    /// Most entries of the namespace's key order to examine in this run
    /// (bounded work; run it again to go on).
    #[arg(long, default_value_t = 100_000, value_parser = at_least_one)]
    max: usize,
}

fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

pub async fn run(
    args: &Args,
    settings: &Settings,
    json: bool,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    if settings.backend != "redis" {
        return Err(format!(
            "clear-orphans works on Redis (the settings choose {:?}): orphans come from another system deleting tasks on a shared Redis",
            settings.backend
        )
        .into());
    }
    let options = RedisOptions::from_settings(settings)?;
    let endpoint = options.endpoint();
    let backend = RedisBackend::connect(options).await?;
    let ns = args
        .namespace
        .clone()
        .unwrap_or_else(|| settings.task_store.namespace().to_string());
    let removed = backend.clear_orphans(&ns, args.max).await?;
    if json {
        let out = serde_json::json!({"redis": endpoint, "namespace": ns, "max": args.max, "removed": removed});
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "{endpoint}: examined up to {} entries of {ns:?}, removed {removed} left by deleted documents",
            args.max
        );
    }
    Ok(ExitCode::SUCCESS)
}
