//! The data model: records as the Python system writes them.

mod task;
mod timestamp;

pub use task::{AgentTask, AgentTaskItem, ContentType, MultiModalItem, Role, TaskStatus};
pub use timestamp::{Timestamp, TimestampParseError};
