//! `health`: which backend the settings choose and how it is doing.

use std::process::ExitCode;

use std::time::Duration;

use persistence_core::backend::{Health, HealthStatus};
use persistence_core::config::Settings;
use persistence_core::factory::Factory;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Longest wait, in ms, for the backend to open and then to answer the
    /// check (each); past it the report says down (exit code 1).
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
}

pub async fn run(
    args: &Args,
    settings: &Settings,
    factory: &Factory,
    json: bool,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let limit = Duration::from_millis(args.timeout_ms);
    let opened = tokio::time::timeout(limit, factory.open(settings))
        .await
        .map_err(|_| format!("the backend did not open within {limit:?}"))??;
    let health = match tokio::time::timeout(limit, opened.backend.health()).await {
        Ok(health) => health,
        Err(_) => Health {
            status: HealthStatus::Down,
            backend: opened.backend.name().to_string(),
            message: format!("no answer to the health check within {limit:?}"),
            latency_ms: None,
            details: Default::default(),
        },
    };
    let caps = opened.backend.capabilities();
    if json {
        let out = serde_json::json!({
            "requested_backend": opened.requested,
            "active_backend": opened.backend.name(),
            "fallback": opened.fallback_cause.as_ref().map(|e| e.to_string()),
            "fallback_policy": format!("{:?}", settings.fallback).to_lowercase(),
            "capabilities": caps,
            "available_backends": factory.available(),
            "health": health,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("requested backend : {}", opened.requested);
        println!("active backend    : {}", opened.backend.name());
        println!(
            "fallback policy   : {}",
            format!("{:?}", settings.fallback).to_lowercase()
        );
        if let Some(cause) = &opened.fallback_cause {
            println!("fell back because : {cause}");
        }
        println!("status            : {}", health.status);
        println!("message           : {}", health.message);
        if let Some(ms) = health.latency_ms {
            println!("latency           : {ms:.3} ms");
        }
        for (k, v) in &health.details {
            println!("{:<18}: {v}", k);
        }
        println!("capabilities      : {caps:?}");
    }
    Ok(match health.status {
        HealthStatus::Ok => ExitCode::SUCCESS,
        HealthStatus::Down => ExitCode::from(1),
        HealthStatus::Degraded => ExitCode::from(2),
    })
}
