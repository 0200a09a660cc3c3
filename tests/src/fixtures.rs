//! Tasks for the cases.

use persistence_core::model::{
    AgentTask, AgentTaskItem, ContentType, MultiModalItem, Role, TaskStatus, Timestamp,
};

/// The Python system's own example task (`tests/fixtures/agent_task_example.json`).
pub fn fixture_task() -> (AgentTask, &'static str) {
    let json = include_str!("../fixtures/agent_task_example.json");
    (serde_json::from_str(json).expect("fixture decodes"), json)
}

/// A realistic task `id` with one user and one assistant item per request id
/// (about 1.8 KB with three request ids).
pub fn sample_task(id: &str, request_ids: &[&str]) -> AgentTask {
    let now = Timestamp::now();
    let mut items = Vec::new();
    for (n, rid) in request_ids.iter().enumerate() {
        for role in [Role::User, Role::Assistant] {
            items.push(AgentTaskItem {
                task_id: id.to_string(),
                request_id: rid.to_string(),
                role,
                item: MultiModalItem {
                    content_type: ContentType::Text,
                    content: format!(
                        "{role:?} message {n} of task {id}: please look up order ORD-{n:05} and \
                         tell me what was charged, when, and to which card; summarise the refund policy."
                    ),
                },
                updated: now,
                pending_tool_calls: None,
                chat_history: None,
            });
        }
    }
    AgentTask {
        task_id: id.to_string(),
        session_id: format!("session-of-{id}"),
        user_id: "user-0042".into(),
        items,
        created_at: now,
        last_updated: now,
        status: TaskStatus::Running,
    }
}
