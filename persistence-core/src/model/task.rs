//! The agent task, wire-compatible with the Python system's JSON.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::Timestamp;

/// An agent's task: a conversation of items that may span several requests.
///
/// Serializes to exactly the JSON the Python system writes (same field order,
/// names and datetime text); unknown fields are ignored on read.
///
/// ```
/// use persistence_core::model::AgentTask;
/// let json = std::fs::read_to_string(concat!(
///     env!("CARGO_MANIFEST_DIR"),
///     "/../../shared/fixtures/agent_task_example.json"
/// ));
/// # let Ok(json) = json else { return };
/// let task: AgentTask = serde_json::from_str(&json).unwrap();
/// assert_eq!(serde_json::to_string(&task).unwrap(), json);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentTask {
    /// Unique id of the task; the store's key.
    pub task_id: String,
    /// The session the task belongs to.
    pub session_id: String,
    /// The user the task works for.
    pub user_id: String,
    /// The conversation, oldest first.
    pub items: Vec<AgentTaskItem>,
    /// When the task was created.
    pub created_at: Timestamp,
    /// When the task last changed.
    pub last_updated: Timestamp,
    /// Where the task is in its life; `Running` when absent.
    #[serde(default)]
    pub status: TaskStatus,
}

impl AgentTask {
    /// The distinct request ids of the task's items, in first-seen order.
    pub fn request_ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = Vec::with_capacity(self.items.len());
        for item in &self.items {
            if !ids.contains(&item.request_id.as_str()) {
                ids.push(&item.request_id);
            }
        }
        ids
    }

    /// Whether any item carries `request_id`.
    pub fn has_request_id(&self, request_id: &str) -> bool {
        self.items.iter().any(|i| i.request_id == request_id)
    }
}

/// The life-cycle state of a task, written with the Python enum's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum TaskStatus {
    /// The agent is working on it (the default).
    #[default]
    Running,
    /// Waiting for something outside the agent, such as a human approval.
    Paused,
    /// Finished successfully.
    Completed,
    /// Finished with an error.
    Failed,
    /// Stopped on request.
    Canceled,
}

/// One message of a task's conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentTaskItem {
    /// The task this item belongs to.
    pub task_id: String,
    /// The request that produced the item; tasks are found by it.
    pub request_id: String,
    /// Who wrote the item.
    pub role: Role,
    /// The content.
    pub item: MultiModalItem,
    /// When the item last changed.
    pub updated: Timestamp,
    /// Tool calls waiting for approval: free-form objects kept exactly as read.
    #[serde(default)]
    pub pending_tool_calls: Option<Vec<Map<String, Value>>>,
    /// The model's chat history (an object with `messages`), kept exactly as read.
    #[serde(default)]
    pub chat_history: Option<Map<String, Value>>,
}

/// Author of an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The human.
    User,
    /// The agent.
    Assistant,
}

/// The content of an item: text, or an image as a data URI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MultiModalItem {
    /// `text` when absent.
    #[serde(default)]
    pub content_type: ContentType,
    /// The text, or the image's data URI.
    pub content: String,
}

/// The kind of content an item holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContentType {
    /// Plain text (the default).
    #[default]
    Text,
    /// An image as a `data:` URI.
    Image,
}
