//! The agent-task store with the Python system's semantics.

use std::fmt;
use std::time::Duration;

use crate::backend::{IndexTerm, SharedBackend, Version};
use crate::error::{Error, ErrorKind};
use crate::model::AgentTask;

use super::collection::{Collection, Record, Versioned};

/// Name of the index that maps request ids to tasks.
pub const REQUEST_INDEX: &str = "request_index";

/// How one index's terms follow from a stored document's JSON: the string
/// `field` of every object in the top-level array `list`.
///
/// A typed store declares its rule so that a backend shared with another
/// system (the Python one, on Redis) can tell which index entries a
/// document it did not write implies, and remove exactly those when the
/// document changes or goes, without knowing what the document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TermRule {
    /// The index whose terms the rule derives.
    pub index: &'static str,
    /// The top-level array of the document.
    pub list: &'static str,
    /// The string field of each element that is a term.
    pub field: &'static str,
}

/// The task store's rule: a task's request-index terms are its
/// `items[].request_id` (what [`AgentTask::request_ids`] returns).
pub const TASK_REQUEST_TERMS: TermRule = TermRule {
    index: REQUEST_INDEX,
    list: "items",
    field: "request_id",
};

impl Record for AgentTask {
    const NAMESPACE: &'static str = "task";

    fn key(&self) -> &str {
        &self.task_id
    }

    fn index_terms(&self) -> Vec<IndexTerm> {
        self.request_ids()
            .into_iter()
            .map(|id| IndexTerm::new(REQUEST_INDEX, id))
            .collect()
    }
}

/// The task operation that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskOperation {
    /// [`TaskStore::create`].
    Create,
    /// [`TaskStore::load`] and [`TaskStore::load_by_request_id`].
    Load,
    /// [`TaskStore::update`] and [`TaskStore::update_if`].
    Update,
    /// [`TaskStore::delete`].
    Delete,
}

impl fmt::Display for TaskOperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TaskOperation::Create => "create",
            TaskOperation::Load => "load",
            TaskOperation::Update => "update",
            TaskOperation::Delete => "delete",
        })
    }
}

/// A failed task operation: which one (the seed's `PersistenceCreateError`,
/// `...LoadError`, `...UpdateError`, `...DeleteError`), on what, and the
/// typed cause with its full detail.
///
/// ```
/// # use persistence_core::{TaskStore, ErrorKind, store::TaskOperation};
/// # use persistence_core::memory::MemoryBackend;
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let store = TaskStore::new(std::sync::Arc::new(MemoryBackend::new()));
/// let err = store.delete("nope").await.unwrap_err();
/// assert_eq!(err.operation(), TaskOperation::Delete);
/// assert_eq!(err.kind(), ErrorKind::NotFound);
/// assert_eq!(err.to_string(), "delete task \"nope\" failed: task/\"nope\" does not exist");
/// # });
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{operation} {subject} failed: {source}")]
pub struct TaskStoreError {
    operation: TaskOperation,
    subject: Subject,
    #[source]
    source: Error,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Subject {
    Task(String),
    Request(String),
    All,
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Task(id) => write!(f, "task {id:?}"),
            Subject::Request(id) => write!(f, "task by request id {id:?}"),
            Subject::All => f.write_str("all tasks"),
        }
    }
}

impl TaskStoreError {
    /// The operation that failed.
    pub fn operation(&self) -> TaskOperation {
        self.operation
    }

    /// The kind of the cause (`NotFound`, `AlreadyExists`, `Conflict`...).
    pub fn kind(&self) -> ErrorKind {
        self.source.kind()
    }

    /// The cause.
    pub fn cause(&self) -> &Error {
        &self.source
    }

    /// The task id the operation was about, if it was about one.
    pub fn task_id(&self) -> Option<&str> {
        match &self.subject {
            Subject::Task(id) => Some(id),
            Subject::Request(_) | Subject::All => None,
        }
    }
}

/// Create, load, update and delete agent tasks, and find them by request id.
///
/// The semantics are the Python system's, where it behaves well:
/// `create` fails if the id exists; `load` gives `None` when absent; `update`
/// and `delete` fail when absent. Where it does not, this store does better:
/// loaded tasks are independent copies (changing one changes nothing until
/// `update`); `load_by_request_id` returns the oldest matching task,
/// deterministically, and never one that no longer carries the request id;
/// errors keep their cause.
///
/// ```
/// use persistence_core::{TaskStore, memory::MemoryBackend};
/// use persistence_core::model::*;
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let store = TaskStore::new(std::sync::Arc::new(MemoryBackend::new()));
/// let now = Timestamp::now();
/// let task = AgentTask {
///     task_id: "t1".into(), session_id: "s1".into(), user_id: "u1".into(),
///     items: vec![AgentTaskItem {
///         task_id: "t1".into(), request_id: "r1".into(), role: Role::User,
///         item: MultiModalItem { content_type: ContentType::Text, content: "hi".into() },
///         updated: now, pending_tool_calls: None, chat_history: None,
///     }],
///     created_at: now, last_updated: now, status: TaskStatus::Running,
/// };
/// store.create(&task).await.unwrap();
/// assert_eq!(store.load_by_request_id("r1").await.unwrap(), Some(task));
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct TaskStore {
    tasks: Collection<AgentTask>,
}

impl TaskStore {
    /// A store in the default `task` namespace, without TTL.
    pub fn new(backend: SharedBackend) -> Self {
        TaskStore {
            tasks: Collection::new(backend),
        }
    }

    /// Uses `namespace` instead of `task`.
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.tasks = self.tasks.with_namespace(namespace);
        self
    }

    /// Gives every task written from now on this time to live (refreshed by
    /// each create and update).
    pub fn with_ttl(mut self, ttl: Option<Duration>) -> Self {
        self.tasks = self.tasks.with_ttl(ttl);
        self
    }

    /// The typed collection underneath, for operations beyond the seed's.
    pub fn collection(&self) -> &Collection<AgentTask> {
        &self.tasks
    }

    /// Stores a new task and returns its version.
    /// Fails (`AlreadyExists`) if a task with its id exists.
    pub async fn create(&self, task: &AgentTask) -> Result<Version, TaskStoreError> {
        self.tasks.create(task).await.map_err(|e| {
            err(
                TaskOperation::Create,
                Subject::Task(task.task_id.clone()),
                e,
            )
        })
    }

    /// The task with `task_id`, or `None`.
    pub async fn load(&self, task_id: &str) -> Result<Option<AgentTask>, TaskStoreError> {
        self.tasks
            .get_record(task_id)
            .await
            .map_err(|e| err(TaskOperation::Load, Subject::Task(task_id.into()), e))
    }

    /// The task with `task_id` and its version, or `None`.
    pub async fn load_versioned(
        &self,
        task_id: &str,
    ) -> Result<Option<Versioned<AgentTask>>, TaskStoreError> {
        self.tasks
            .get(task_id)
            .await
            .map_err(|e| err(TaskOperation::Load, Subject::Task(task_id.into()), e))
    }

    /// Replaces an existing task. Fails (`NotFound`) if it does not exist.
    pub async fn update(&self, task: &AgentTask) -> Result<Version, TaskStoreError> {
        self.tasks.replace(task, None).await.map_err(|e| {
            err(
                TaskOperation::Update,
                Subject::Task(task.task_id.clone()),
                e,
            )
        })
    }

    /// Replaces a task only if it is still at `expected` (optimistic
    /// concurrency). Fails with `Conflict` if someone wrote it since, and
    /// `NotFound` if it was deleted.
    pub async fn update_if(
        &self,
        task: &AgentTask,
        expected: Version,
    ) -> Result<Version, TaskStoreError> {
        self.tasks.replace(task, Some(expected)).await.map_err(|e| {
            err(
                TaskOperation::Update,
                Subject::Task(task.task_id.clone()),
                e,
            )
        })
    }

    /// Deletes a task. Fails (`NotFound`) if it does not exist.
    pub async fn delete(&self, task_id: &str) -> Result<(), TaskStoreError> {
        self.tasks
            .remove(task_id, None)
            .await
            .map_err(|e| err(TaskOperation::Delete, Subject::Task(task_id.into()), e))
    }

    /// The oldest task (by creation) with an item carrying `request_id`, or
    /// `None`. The result always carries the request id at the time it was read.
    pub async fn load_by_request_id(
        &self,
        request_id: &str,
    ) -> Result<Option<AgentTask>, TaskStoreError> {
        let found = self
            .tasks
            .find(REQUEST_INDEX, request_id, 1, |t| {
                t.has_request_id(request_id)
            })
            .await
            .map_err(|e| err(TaskOperation::Load, Subject::Request(request_id.into()), e))?;
        Ok(found.into_iter().next())
    }

    /// Number of stored tasks (needs a backend that can count or scan).
    pub async fn count(&self) -> Result<u64, TaskStoreError> {
        self.tasks
            .count()
            .await
            .map_err(|e| err(TaskOperation::Load, Subject::All, e))
    }
}

fn err(operation: TaskOperation, subject: Subject, source: Error) -> TaskStoreError {
    TaskStoreError {
        operation,
        subject,
        source,
    }
}
