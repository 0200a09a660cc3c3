//! Typed stores written once on top of the [`Backend`](crate::Backend) contract.

mod collection;
mod task_store;

pub use collection::{Collection, Record, Versioned};
pub use task_store::{
    TaskOperation, TaskStore, TaskStoreError, TermRule, REQUEST_INDEX, TASK_REQUEST_TERMS,
};
