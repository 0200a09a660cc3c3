//! `conformance`: the conformance suite against the configured backend.

use std::process::ExitCode;
use std::time::Duration;

use persistence_conformance::{run_all, CaseOutcome};
use persistence_core::config::{FallbackPolicy, Settings};
use persistence_core::factory::Factory;

use crate::report::{right, table};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Longest a single case may run, in seconds.
    #[arg(long, default_value_t = 120)]
    case_timeout: u64,
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
    let probe = factory.open(&settings).await?;
    let name = probe.backend.name().to_string();
    drop(probe);
    let open = || {
        let settings = settings.clone();
        let factory = factory.clone();
        async move {
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
    // Case failures are reported in the table; keep their panic messages off stderr.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let reports = run_all(open, Duration::from_secs(args.case_timeout)).await;
    std::panic::set_hook(hook);

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
        for r in &reports {
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
