//! `doctor`: what the settings choose and why, whether it opens, whether it
//! answers; each problem with what to do about it.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use persistence_core::backend::HealthStatus;
use persistence_core::config::{FallbackPolicy, Settings};
use persistence_core::factory::Factory;
use persistence_core::{Error, ErrorKind};
use serde_json::{json, Value};

/// One finding: what was checked, whether it is fine, and what to do.
fn finding(check: &str, ok: bool, detail: String, fix: Option<String>) -> Value {
    json!({ "check": check, "ok": ok, "detail": detail, "fix": fix })
}

/// What to do about an error, by its kind.
fn fix_for(e: &Error) -> String {
    match e.kind() {
        ErrorKind::Config => "correct the setting named above (file or variable), then run doctor again".into(),
        ErrorKind::Unavailable | ErrorKind::Timeout => {
            "start the server or free the database, check host, port, credentials and TLS, or choose another backend".into()
        }
        ErrorKind::Plugin => {
            "check TA_PERSISTENCE_MODULE and its pin, and rebuild the plugin against this host's persistence-plugin-sdk".into()
        }
        ErrorKind::Corrupted => "the data is damaged: keep a copy and restore from a backup or export".into(),
        _ => "see the error above".into(),
    }
}

pub async fn run(
    settings: Result<Settings, Error>,
    factory: &Factory,
    json: bool,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let mut findings = Vec::new();
    match settings {
        Err(e) => findings.push(finding("settings", false, e.to_string(), Some(fix_for(&e)))),
        Ok(settings) => {
            let layers = if settings.layers.0.is_empty() {
                "none".to_string()
            } else {
                settings.layers.0.join(", ")
            };
            findings.push(finding(
                "settings",
                true,
                format!(
                    "{} = {:?}; {} = {}; layers: {layers}; registered backends: {}",
                    settings.describe("backend"),
                    settings.backend,
                    settings.describe("fallback"),
                    format!("{:?}", settings.fallback).to_lowercase(),
                    factory.available().join(", ")
                ),
                None,
            ));
            // open as "fail" would: the fallback must not hide the problem
            let mut strict = settings.clone();
            strict.fallback = FallbackPolicy::Fail;
            let started = Instant::now();
            let opened = tokio::time::timeout(Duration::from_secs(15), factory.open(&strict)).await;
            match opened {
                Err(_) => findings.push(finding(
                    "open",
                    false,
                    format!("{} did not open within 15 s", settings.backend),
                    Some("check that the server answers and the database is not held".into()),
                )),
                Ok(Err(e)) => {
                    let fix = fix_for(&e);
                    let mut detail = e.to_string();
                    if settings.fallback == FallbackPolicy::Memory {
                        detail.push_str(
                            " (with fallback = memory the application would run on memory: nothing it writes survives a restart)",
                        );
                    }
                    findings.push(finding("open", false, detail, Some(fix)));
                }
                Ok(Ok(opened)) => {
                    findings.push(finding(
                        "open",
                        true,
                        format!(
                            "{} opened in {:.0} ms",
                            opened.backend.name(),
                            started.elapsed().as_secs_f64() * 1e3
                        ),
                        None,
                    ));
                    let health =
                        tokio::time::timeout(Duration::from_secs(10), opened.backend.health())
                            .await
                            .ok();
                    match health {
                        None => findings.push(finding(
                            "health",
                            false,
                            "no answer to the health check within 10 s".into(),
                            Some("the backend is stuck: see its logs and docs".into()),
                        )),
                        Some(h) => findings.push(finding(
                            "health",
                            h.status == HealthStatus::Ok,
                            format!("{}: {}", h.status, h.message),
                            (h.status != HealthStatus::Ok)
                                .then(|| "see the message: a degraded backend still serves, a down one does not".into()),
                        )),
                    }
                }
            }
        }
    }
    let problems = findings.iter().filter(|f| f["ok"] == false).count();
    if json {
        let out = json!({ "problems": problems, "findings": findings });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for f in &findings {
            let mark = if f["ok"] == true { "ok " } else { "BAD" };
            println!(
                "[{mark}] {}: {}",
                f["check"].as_str().unwrap_or(""),
                f["detail"].as_str().unwrap_or("")
            );
            if let Some(fix) = f["fix"].as_str() {
                println!("      fix: {fix}");
            }
        }
        println!(
            "{}",
            match problems {
                0 => "no problems found".to_string(),
                n => format!("{n} problem(s) found"),
            }
        );
    }
    Ok(if problems == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
