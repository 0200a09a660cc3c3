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
/// let json = include_str!(concat!(
///     env!("CARGO_MANIFEST_DIR"),
///     "/../tests/fixtures/agent_task_example.json"
/// ));
/// let task: AgentTask = serde_json::from_str(json).unwrap();
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
    /// A new running task with no items, created now.
    ///
    /// ```
    /// use persistence_core::model::{AgentTask, AgentTaskItem, Role, TaskStatus};
    ///
    /// let task = AgentTask::new("task-1", "session-1", "user-1")
    ///     .with_item(AgentTaskItem::text("task-1", "req-1", Role::User, "Book a flight"))
    ///     .with_item(AgentTaskItem::text("task-1", "req-1", Role::Assistant, "Where to?"));
    /// assert_eq!(task.status, TaskStatus::Running);
    /// assert_eq!(task.request_ids(), ["req-1"]);
    /// ```
    pub fn new(
        task_id: impl Into<String>,
        session_id: impl Into<String>,
        user_id: impl Into<String>,
    ) -> Self {
        let now = Timestamp::now();
        AgentTask {
            task_id: task_id.into(),
            session_id: session_id.into(),
            user_id: user_id.into(),
            items: Vec::new(),
            created_at: now,
            last_updated: now,
            status: TaskStatus::Running,
        }
    }

    /// This task with `item` appended.
    pub fn with_item(mut self, item: AgentTaskItem) -> Self {
        self.items.push(item);
        self
    }

    /// This task with status `status`.
    pub fn with_status(mut self, status: TaskStatus) -> Self {
        self.status = status;
        self
    }

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

impl AgentTaskItem {
    /// A text item of `task_id`, answering `request_id`, written now, with
    /// no pending tool calls and no chat history.
    pub fn text(
        task_id: impl Into<String>,
        request_id: impl Into<String>,
        role: Role,
        text: impl Into<String>,
    ) -> Self {
        AgentTaskItem {
            task_id: task_id.into(),
            request_id: request_id.into(),
            role,
            item: MultiModalItem {
                content_type: ContentType::Text,
                content: text.into(),
            },
            updated: Timestamp::now(),
            pending_tool_calls: None,
            chat_history: None,
        }
    }
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
