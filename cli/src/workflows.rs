//! `workflows`: the workflow store (seed 001) on the configured backend.

use std::process::ExitCode;

use persistence_core::config::Settings;
use persistence_core::factory::Factory;
use persistence_core::store::WorkflowStore;

use persistence_cli::report::{right, table};

#[derive(Debug, clap::Subcommand)]
pub enum Workflows {
    /// Seed 001's analytics: active, completed and failed counts, counts
    /// by orchestrator type, results of the last 24 h, the newest 20 ids,
    /// and costs over the retained results.
    Analytics {
        /// Orchestrator types to count (repeat; default beltalowda, swarm).
        #[arg(long = "type", value_name = "TYPE")]
        types: Vec<String>,
    },
    /// The newest results, newest first: id, status, cost, run time.
    Recent {
        /// How many.
        #[arg(default_value_t = 20)]
        n: usize,
    },
    /// One workflow's state and result, as stored (JSON).
    Show {
        /// The workflow's task id.
        id: String,
    },
}

pub async fn run(
    command: &Workflows,
    settings: &Settings,
    factory: &Factory,
    json: bool,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let mut store = WorkflowStore::new(crate::demo::open_backend(factory, settings).await?);
    match command {
        Workflows::Analytics { types } => {
            if !types.is_empty() {
                store = store.with_types(types.clone());
            }
            let a = store.analytics().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&a)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{} active, {} completed, {} failed; {} results in the last 24 h",
                a.active_workflows, a.completed_workflows, a.failed_workflows, a.recent_24h
            );
            let by_type: Vec<String> = a.by_type.iter().map(|(t, n)| format!("{n} {t}")).collect();
            println!("by type: {}", by_type.join(", "));
            let c = &a.costs;
            println!(
                "costs over {} results: total ${:.4}, average ${:.4}",
                c.workflow_count, c.total_cost_usd, c.average_cost_usd
            );
            if let Some(m) = &c.most_expensive {
                println!(
                    "most expensive: {} (${:.4}, {:.2} s)",
                    m.task_id, m.cost, m.execution_time
                );
            }
            if !a.recent_task_ids.is_empty() {
                println!("newest: {}", a.recent_task_ids.join(" "));
            }
        }
        Workflows::Recent { n } => {
            let results = store.recent(*n).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&results)?);
                return Ok(ExitCode::SUCCESS);
            }
            let mut t = table(&["workflow", "status", "cost ($)", "time (s)", "title"]);
            for r in &results {
                t.add_row(vec![
                    r.task_id.clone().into(),
                    r.status.as_str().to_string().into(),
                    right(format!("{:.4}", r.total_cost)),
                    right(format!("{:.2}", r.execution_time)),
                    r.title.clone().into(),
                ]);
            }
            println!("{t}");
            println!("{} results", results.len());
        }
        Workflows::Show { id } => {
            let info = store.get_workflow(id).await?;
            let result = store.get_result(id).await?;
            if info.is_none() && result.is_none() {
                eprintln!("error: no workflow {id:?}");
                return Ok(ExitCode::FAILURE);
            }
            let both = serde_json::json!({ "workflow": info, "result": result });
            println!("{}", serde_json::to_string_pretty(&both)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}
