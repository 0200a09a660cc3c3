//! The README's "Using it", as a program: open the configured task store,
//! create a task, resume it by request id. `cargo run -p persistence-redb
//! --example quickstart` (memory unless settings choose otherwise).

use std::sync::Arc;

use persistence_core::factory::Factory;
use persistence_core::model::{AgentTask, AgentTaskItem, Role};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut factory = Factory::new(); // memory and the layers are built in
    factory.register(Arc::new(persistence_redb::RedbProvider)); // each backend crate adds itself
    let settings = factory.load_settings()?; // config file + TA_* variables
    let (tasks, opened) = factory.open_task_store(&settings).await?;
    if let Some(cause) = &opened.fallback_cause {
        // fallback = "memory": the chosen backend could not start
        eprintln!(
            "warning: {} failed, running on memory: {cause}",
            opened.requested
        );
    }
    let item = AgentTaskItem::text("task-1", "req-1", Role::User, "Book a flight");
    let task = AgentTask::new("task-1", "session-1", "user-1").with_item(item);
    tasks.create(&task).await?; // fails if the id exists
    let resumed = tasks.load_by_request_id("req-1").await?; // the oldest task with that request id
    assert_eq!(resumed.map(|t| t.task_id).as_deref(), Some("task-1"));
    tasks.delete("task-1").await?;
    Ok(())
}
