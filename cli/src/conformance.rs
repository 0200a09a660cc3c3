//! `conformance`: the conformance suite against the configured backend.

use std::process::ExitCode;
use std::time::Duration;

use persistence_conformance::{run_all, run_all_streams, CaseOutcome, CaseReport};
use persistence_core::config::{FallbackPolicy, Settings};
use persistence_core::factory::Factory;
use persistence_plugin::PluginSettings;

use persistence_cli::report::{right, table};

static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Longest a single case may run, in seconds.
    #[arg(long, default_value_t = 120)]
    case_timeout: u64,
    /// Run the event-stream cases against the configured streams engine
    /// (`[streams]`, STREAMING_BACKEND) instead of the document cases.
    #[arg(long)]
    streams: bool,
    /// Run the run-queue cases against the configured queue engine
    /// (`[queue]`), each case on a queue of its own, cleared afterwards.
    #[arg(long, conflicts_with = "streams")]
    queue: bool,
    /// A plugin library to test instead of the configured backend
    /// (like TA_PERSISTENCE_MODULE).
    #[arg(long, value_name = "PATH")]
    module: Option<std::path::PathBuf>,
    /// The plugin's backend to test, when it offers several (like TA_PERSISTENCE_CLASS).
    #[arg(long, value_name = "NAME", requires = "module")]
    class: Option<String>,
    /// An option for the plugin's backend, KEY=VALUE (repeatable). For
    /// plugin-example's json-dir, `--option path=DIR`; without one, each case
    /// gets a fresh temporary directory as `path`.
    #[arg(long = "option", value_name = "KEY=VALUE", requires = "module")]
    options: Vec<String>,
    /// Where the plugin runs: `none` (loaded into this process) or
    /// `process` (a runner process of its own, like `plugin.isolation`).
    #[arg(long, value_name = "none|process", requires = "module")]
    isolation: Option<String>,
}

pub async fn run(
    args: &Args,
    settings: &Settings,
    factory: &Factory,
    json: bool,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    // Testing the memory fallback instead of the requested backend would be
    // a false pass: the backend must start.
    let mut settings = settings.clone();
    settings.fallback = FallbackPolicy::Fail;
    if let Some(module) = &args.module {
        settings.backend = "plugin".into();
        settings.set("plugin.module", &module.display().to_string(), "--module")?;
        if let Some(class) = &args.class {
            settings.set("plugin.class", class, "--class")?;
        }
        if let Some(isolation) = &args.isolation {
            settings.set("plugin.isolation", isolation, "--isolation")?;
        }
        for option in &args.options {
            let (k, v) = option
                .split_once('=')
                .ok_or_else(|| format!("--option {option:?}: expected KEY=VALUE"))?;
            settings.set(&format!("plugin.options.{k}"), v, "--option")?;
        }
        factory.check(&settings)?;
    }
    let has_path = PluginSettings::from_settings(&settings)?
        .options
        .contains_key("path");
    let fresh_dirs = args.module.is_some() && !has_path;
    // a directory of its own for every opening, removed with the backend
    let for_case = move |settings: &Settings| {
        let mut settings = settings.clone();
        if fresh_dirs {
            let dir = std::env::temp_dir().join(format!(
                "ta-conformance-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ));
            let origin = "a fresh directory per case";
            let dir = dir.display().to_string();
            settings.set("plugin.options.path", &dir, origin)?;
            settings.set("plugin.options.temporary", "true", origin)?;
        }
        Ok::<_, persistence_core::Error>(settings)
    };
    if args.streams {
        return run_streams(args, &settings, factory, json).await;
    }
    if args.queue {
        return run_queue(args, &settings, factory, json).await;
    }
    let probe = factory.open(&for_case(&settings)?).await?;
    let name = probe.backend.name().to_string();
    drop(probe);
    let open = || {
        let settings = for_case(&settings);
        let factory = factory.clone();
        async move {
            let settings = settings.unwrap_or_else(|e| panic!("settings stopped working: {e}"));
            factory
                .open(&settings)
                .await
                .map(|o| o.backend)
                .unwrap_or_else(|e| panic!("backend stopped opening: {e}"))
        }
    };
    if !json {
        eprintln!(
            "running {} conformance cases against {name}...",
            persistence_conformance::CASES.len()
        );
    }
    let reports = quietly(run_all(open, Duration::from_secs(args.case_timeout))).await;
    report(&name, &reports, json)
}

/// The stream cases against the engine `[streams]` chooses, never its fallback.
async fn run_streams(
    args: &Args,
    settings: &Settings,
    factory: &Factory,
    json: bool,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let probe = factory.open_streams(settings).await?;
    let name = probe.streams.name().to_string();
    drop(probe);
    let open = {
        let (settings, factory) = (settings.clone(), factory.clone());
        move |retention: persistence_core::streams::Retention| {
            let (mut settings, factory) = (settings.clone(), factory.clone());
            async move {
                settings.streams.max_len = Some(retention.max_len);
                settings.streams.max_age_secs = retention.max_age.map(|a| a.as_secs());
                factory
                    .open_streams(&settings)
                    .await
                    .map(|o| o.streams)
                    .unwrap_or_else(|e| panic!("streams engine stopped opening: {e}"))
            }
        }
    };
    if !json {
        eprintln!(
            "running {} stream conformance cases against {name}...",
            persistence_conformance::STREAM_CASES.len()
        );
    }
    let reports = quietly(run_all_streams(
        open,
        Duration::from_secs(args.case_timeout),
    ))
    .await;
    report(&name, &reports, json)
}

/// The queue cases against the engine `[queue]` chooses, never its
/// fallback, each queue named for its case.
async fn run_queue(
    args: &Args,
    settings: &Settings,
    factory: &Factory,
    json: bool,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let probe = factory.open_queue(settings).await?;
    let name = probe.queue.name().to_string();
    drop(probe);
    let open = {
        let (settings, factory) = (settings.clone(), factory.clone());
        move |options: persistence_core::queue::QueueOptions| {
            let (mut settings, factory) = (settings.clone(), factory.clone());
            async move {
                let q = &mut settings.queue;
                q.name = Some(format!(
                    "conformance-{}-{}",
                    std::process::id(),
                    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                ));
                q.max_attempts = Some(options.max_attempts);
                q.backoff_secs = Some(options.backoff_base.as_secs_f64());
                q.backoff_max_secs = Some(options.backoff_max.as_secs_f64());
                q.pending_timeout_secs = options.pending_timeout.map(|t| t.as_secs_f64());
                q.retain_ended_secs = Some(options.retain_ended.as_secs_f64());
                q.priority_step_secs = Some(options.priority_step.as_secs_f64());
                factory
                    .open_queue(&settings)
                    .await
                    .map(|o| o.queue)
                    .unwrap_or_else(|e| panic!("queue engine stopped opening: {e}"))
            }
        }
    };
    if !json {
        eprintln!(
            "running {} queue conformance cases against {name}...",
            persistence_conformance::QUEUE_CASES.len()
        );
    }
    let reports = quietly(persistence_conformance::run_all_queue(
        open,
        Duration::from_secs(args.case_timeout),
    ))
    .await;
    report(&name, &reports, json)
}

/// Runs `cases` with case failures kept off stderr (they are reported in
/// the table).
async fn quietly<F: std::future::Future<Output = Vec<CaseReport>>>(cases: F) -> Vec<CaseReport> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let reports = cases.await;
    // A cancelled case may still be stuck on a thread that panics when the
    // runtime shuts down: its outcome is in the table already, so the
    // default hook comes back only for the report (printing), and goes at
    // the end of the command.
    std::panic::set_hook(hook);
    reports
}

/// Prints the reports (a table, or JSON) and chooses the exit code.
fn report(
    name: &str,
    reports: &[CaseReport],
    json: bool,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let _quiet_from_here = QuietPanicsOnDrop;
    let failed = reports
        .iter()
        .filter(|r| matches!(r.outcome, CaseOutcome::Failed(_)))
        .count();
    let passed = reports
        .iter()
        .filter(|r| r.outcome == CaseOutcome::Passed)
        .count();
    let skipped = reports.len() - failed - passed;
    if json {
        let cases: Vec<_> = reports
            .iter()
            .map(|r| {
                let (outcome, detail) = match &r.outcome {
                    CaseOutcome::Passed => ("passed", String::new()),
                    CaseOutcome::Failed(m) => ("failed", m.clone()),
                    CaseOutcome::NotApplicable(req) => ("not_applicable", format!("needs {req:?}")),
                };
                serde_json::json!({"case": r.name, "outcome": outcome, "detail": detail, "ms": r.elapsed.as_secs_f64() * 1e3})
            })
            .collect();
        let out = serde_json::json!({"backend": name, "passed": passed, "failed": failed, "not_applicable": skipped, "cases": cases});
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        let mut t = table(&["case", "result", "ms", "detail"]);
        for r in reports {
            let (result, detail) = match &r.outcome {
                CaseOutcome::Passed => ("pass", String::new()),
                CaseOutcome::Failed(m) => ("FAIL", m.lines().next().unwrap_or("").to_string()),
                CaseOutcome::NotApplicable(req) => {
                    ("n/a", format!("backend does not declare {req:?}"))
                }
            };
            t.add_row(vec![
                r.name.into(),
                result.into(),
                right(format!("{:.0}", r.elapsed.as_secs_f64() * 1e3)),
                detail.into(),
            ]);
        }
        println!("{t}");
        println!("{name}: {passed} passed, {failed} failed, {skipped} not applicable");
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Silences panic messages from the moment it is dropped (the end of the
/// command): what panics after that is a cancelled case's thread meeting
/// the runtime's shutdown, already reported as failed.
struct QuietPanicsOnDrop;

impl Drop for QuietPanicsOnDrop {
    fn drop(&mut self) {
        std::panic::set_hook(Box::new(|_| {}));
    }
}
