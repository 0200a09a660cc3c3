//! Realistic tasks for the demo and the benchmark.

use persistence_core::model::{
    AgentTask, AgentTaskItem, ContentType, MultiModalItem, Role, TaskStatus, Timestamp,
};
use serde_json::json;

fn item(task_id: &str, request_id: &str, role: Role, content: String) -> AgentTaskItem {
    AgentTaskItem {
        task_id: task_id.into(),
        request_id: request_id.into(),
        role,
        item: MultiModalItem {
            content_type: ContentType::Text,
            content,
        },
        updated: Timestamp::now(),
        pending_tool_calls: None,
        chat_history: None,
    }
}

/// A running task `task_id` of user `n` with these items.
fn task(task_id: &str, n: usize, items: Vec<AgentTaskItem>) -> AgentTask {
    let now = Timestamp::now();
    AgentTask {
        task_id: task_id.into(),
        session_id: format!("session-{}", n % 97),
        user_id: format!("user-{:04}", n % 1000),
        items,
        created_at: now,
        last_updated: now,
        status: TaskStatus::Running,
    }
}

/// A task of three items (user, assistant, user) over two requests, about
/// 1.8 KB of JSON: the size the benchmark targets.
pub fn three_item_task(task_id: &str, n: usize) -> AgentTask {
    let (r1, r2) = (format!("req-{n}-a"), format!("req-{n}-b"));
    let filler = "The customer asks about the charge on their card for the last order and \
                  wants the refund policy explained before deciding what to do next, and the \
                  shipping record checked; ";
    let text = |what: &str| format!("{what} ORD-{n:05}. {filler}{filler}");
    let items = vec![
        item(task_id, &r1, Role::User, text("Order")),
        item(task_id, &r1, Role::Assistant, text("Looking up")),
        item(task_id, &r2, Role::User, text("Please refund")),
    ];
    task(task_id, n, items)
}

/// A new task opened by a user request.
pub fn opened_task(task_id: &str, request_id: &str, n: usize) -> AgentTask {
    let question = format!("What did I pay for order ORD-{n:05}?");
    let answer = format!("Order ORD-{n:05} was charged $129.99.");
    let items = vec![
        item(task_id, request_id, Role::User, question),
        item(task_id, request_id, Role::Assistant, answer),
    ];
    task(task_id, n, items)
}

/// The task paused for a human to approve a refund tool call (request `request_id`).
pub fn pause_for_approval(task: &mut AgentTask, request_id: &str) {
    let id = task.task_id.clone();
    task.items.push(item(
        &id,
        request_id,
        Role::User,
        "It arrived broken, please refund it.".into(),
    ));
    let mut ask = item(
        &id,
        request_id,
        Role::Assistant,
        "HITL intervention required.".into(),
    );
    let call = json!({
        "content_type": "function_call", "id": format!("call_{id}"),
        "name": "Finance-issue_refund", "function_name": "issue_refund", "plugin_name": "Finance",
        "arguments": "{\"amount\": 129.99, \"currency\": \"USD\"}"
    });
    ask.pending_tool_calls = Some(vec![call.as_object().cloned().unwrap_or_default()]);
    task.items.push(ask);
    task.status = TaskStatus::Paused;
    task.last_updated = Timestamp::now();
}

/// The task after the human approved and the refund went through.
pub fn complete(task: &mut AgentTask, request_id: &str) {
    let id = task.task_id.clone();
    for i in &mut task.items {
        i.pending_tool_calls = None;
    }
    task.items.push(item(
        &id,
        request_id,
        Role::Assistant,
        "Refund issued.".into(),
    ));
    task.status = TaskStatus::Completed;
    task.last_updated = Timestamp::now();
}
