//! Wire compatibility with the Python system's JSON (`tests/fixtures`, a
//! byte-identical copy of the data that system produced).

use persistence_core::model::{AgentTask, ContentType, Role, TaskStatus};
use serde_json::Value;

fn fixture() -> String {
    include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/agent_task_example.json"
    ))
    .to_string()
}

#[test]
fn fixture_round_trips_byte_for_byte() {
    let json = fixture();
    let task: AgentTask = serde_json::from_str(&json).unwrap();
    let back = serde_json::to_string(&task).unwrap();
    assert_eq!(back, json.trim_end());
    // and as values, which is the compatibility contract
    let a: Value = serde_json::from_str(&json).unwrap();
    let b: Value = serde_json::from_str(&back).unwrap();
    assert_eq!(a, b);
}

#[test]
fn fixture_fields_decode_to_the_right_types() {
    let task: AgentTask = serde_json::from_str(&fixture()).unwrap();
    assert_eq!(task.status, TaskStatus::Paused);
    assert_eq!(task.items.len(), 4);
    assert_eq!(task.items[1].role, Role::Assistant);
    assert_eq!(task.items[2].item.content_type, ContentType::Image);
    assert!(task.items[2]
        .item
        .content
        .starts_with("data:image/png;base64,"));
    assert_eq!(task.request_ids().len(), 2);
    let calls = task.items[3].pending_tool_calls.as_ref().unwrap();
    assert_eq!(calls[0]["function_name"], "issue_refund");
    let history = task.items[3].chat_history.as_ref().unwrap();
    assert_eq!(history["messages"].as_array().unwrap().len(), 5);
    assert_eq!(task.last_updated.to_string(), "2025-11-03T14:08:05.512352");
}

#[test]
fn unknown_fields_are_ignored_and_defaults_apply() {
    let json = r#"{"task_id":"t","session_id":"s","user_id":"u","extra":{"x":1},
        "items":[{"task_id":"t","request_id":"r","role":"user","item":{"content":"hi","new":true},
        "updated":"2025-11-03T14:07:21","future_field":[1]}],
        "created_at":"2025-11-03T14:07:21Z","last_updated":"2025-11-03T16:07:21+02:00"}"#;
    let task: AgentTask = serde_json::from_str(json).unwrap();
    assert_eq!(task.status, TaskStatus::Running);
    assert_eq!(task.items[0].item.content_type, ContentType::Text);
    assert_eq!(task.items[0].pending_tool_calls, None);
    let out: Value = serde_json::to_value(&task).unwrap();
    assert_eq!(out["created_at"], "2025-11-03T14:07:21Z");
    assert_eq!(out["last_updated"], "2025-11-03T16:07:21+02:00");
    assert_eq!(out["items"][0]["updated"], "2025-11-03T14:07:21");
    assert_eq!(out["items"][0]["chat_history"], Value::Null);
    assert!(out.get("extra").is_none());
}

#[test]
fn invalid_documents_are_rejected() {
    for bad in [
        r#"{"task_id":"t"}"#,
        r#"{"task_id":"t","session_id":"s","user_id":"u","items":[],"created_at":"nope","last_updated":"2025-11-03T14:07:21"}"#,
        r#"{"task_id":"t","session_id":"s","user_id":"u","items":[],"created_at":"2025-11-03T14:07:21","last_updated":"2025-11-03T14:07:21","status":"running"}"#,
        "not json",
    ] {
        assert!(serde_json::from_str::<AgentTask>(bad).is_err(), "{bad}");
    }
}
