//! The demo's workflows-and-crews scene (seeds 001 and 000): workflows of
//! two orchestrator types created, run and completed with results (some
//! failed), analytics read back, and a few crews registered and listed.

use std::time::Instant;

use persistence_core::store::{
    CrewDefinition, CrewRegistry, OrchestratorResult, WorkflowAnalytics, WorkflowInfo,
    WorkflowStatus, WorkflowStore,
};
use persistence_core::SharedBackend;
use serde::Serialize;

use persistence_cli::report::{right, table, Samples, Summary};

use crate::demo::Recorded;

/// What the scene did.
#[derive(Debug, Serialize)]
pub struct Scene {
    /// Workflows run.
    pub workflows: usize,
    /// Of them, failed.
    pub failed: usize,
    /// Crews registered.
    pub crews: usize,
    /// Latencies by store operation.
    pub operations: Vec<Summary>,
    /// The store's analytics afterwards.
    pub analytics: WorkflowAnalytics,
    /// Seconds the scene took.
    pub seconds: f64,
}

fn result(task_id: &str, failed: bool, n: usize) -> Result<OrchestratorResult, serde_json::Error> {
    let cost = 0.01 * (1 + n % 9) as f64;
    serde_json::from_value(serde_json::json!({
        "task_id": task_id, "title": format!("Demo report {n}"),
        "status": if failed { "failed" } else { "completed" },
        "agent_results": [{"agent_id": "researcher-1", "agent_type": "researcher",
            "subtask_id": "s1", "content": "notes", "status": "completed",
            "execution_time": 0.4, "cost": cost}],
        "final_synthesis": "the answer", "execution_time": 0.5 + n as f64 / 100.0,
        "total_cost": cost, "error": if failed { Some("agent timed out") } else { None },
    }))
}

fn crew(name: &str, mode: &str, agents: usize) -> Result<CrewDefinition, serde_json::Error> {
    let agents: Vec<serde_json::Value> = (0..agents)
        .map(|n| serde_json::json!({"agent_id": format!("{name}-{n}"), "agent_class": "BasicAgent", "config": {}}))
        .collect();
    serde_json::from_value(serde_json::json!({
        "name": name, "crew_id": format!("demo-{name}"), "execution_mode": mode, "agents": agents,
    }))
}

/// Runs `n` workflows through the store on `backend`; every seventh fails.
/// Without `keep` the scene's workflows and crews are removed afterwards.
pub async fn run(
    backend: SharedBackend,
    n: usize,
    keep: bool,
) -> Result<Scene, Box<dyn std::error::Error>> {
    let started = Instant::now();
    let store = WorkflowStore::new(backend.clone());
    let mut rec = Recorded::new();
    let run = std::process::id();
    let mut failed = 0;
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let id = format!("demo-wf-{run}-{i}");
        let kind = if i % 3 == 0 { "beltalowda" } else { "swarm" };
        let info = WorkflowInfo::new(&id, kind, "research and synthesize");
        crate::demo::timed(&mut rec, "create_workflow", store.create_workflow(&info)).await?;
        crate::demo::timed(
            &mut rec,
            "update_status",
            store.update_status(&id, WorkflowStatus::Running),
        )
        .await?;
        let fails = i % 7 == 6;
        failed += usize::from(fails);
        let r = result(&id, fails, i)?;
        crate::demo::timed(
            &mut rec,
            "complete_workflow",
            store.complete_workflow(&id, &r),
        )
        .await?;
        ids.push(id);
    }
    let analytics = crate::demo::timed(&mut rec, "analytics", store.analytics()).await?;
    crate::demo::timed(&mut rec, "recent", store.recent(20)).await?;
    let crews = CrewRegistry::new(backend);
    let definitions = [
        crew("research_team", "sequential", 3)?,
        crew("writing_team", "parallel", 2)?,
        crew("analysis_crew", "flow", 4)?,
    ];
    for c in &definitions {
        crate::demo::timed(&mut rec, "add_crew", crews.add_crew(c)).await?;
    }
    crate::demo::timed(&mut rec, "crew_stats", crews.crew_stats()).await?;
    if !keep {
        for id in &ids {
            store.remove_workflow(id).await?;
        }
        for c in &definitions {
            crews.remove_crew(&c.name).await?;
        }
    }
    let wall = started.elapsed();
    let order = [
        "create_workflow",
        "update_status",
        "complete_workflow",
        "analytics",
        "recent",
        "add_crew",
        "crew_stats",
    ];
    let operations = order
        .into_iter()
        .filter_map(|op| rec.remove(op).map(|s: Samples| s.summary(op, wall)))
        .collect();
    Ok(Scene {
        workflows: n,
        failed,
        crews: definitions.len(),
        operations,
        analytics,
        seconds: wall.as_secs_f64(),
    })
}

/// The scene for people.
pub fn print(scene: &Scene) {
    println!(
        "workflows scene: {} workflows ({} failed) and {} crews in {:.2} s",
        scene.workflows, scene.failed, scene.crews, scene.seconds
    );
    let mut t = table(&["store operation", "count", "p50 µs", "p99 µs"]);
    for s in &scene.operations {
        t.add_row(vec![
            s.op.clone().into(),
            right(s.count),
            right(format!("{:.1}", s.p50_us)),
            right(format!("{:.1}", s.p99_us)),
        ]);
    }
    println!("{t}");
    let a = &scene.analytics;
    println!(
        "analytics: {} active, {} completed, {} failed, {} results in 24 h, total cost ${:.4}",
        a.active_workflows,
        a.completed_workflows,
        a.failed_workflows,
        a.recent_24h,
        a.costs.total_cost_usd
    );
}
