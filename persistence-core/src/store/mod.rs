//! Typed stores written once on top of the [`Backend`](crate::Backend) contract.

mod collection;
mod crews;
mod task_store;
mod workflows;

pub use collection::{Collection, Record, Versioned};
pub use crews::{
    AgentDefinition, CrewDefinition, CrewMetadata, CrewRegistry, CrewStats, CrewSummary,
    ExecutionMode, CREW_ID_INDEX,
};
pub use task_store::{
    TaskOperation, TaskStore, TaskStoreError, TermRule, REQUEST_INDEX, TASK_REQUEST_TERMS,
};
pub use workflows::{
    AgentResult, CostSummary, MostExpensive, OrchestratorResult, SynthesisResult,
    WorkflowAnalytics, WorkflowInfo, WorkflowStatus, WorkflowStore, RESULT_INDEX, RESULT_NAMESPACE,
    RESULT_TERM, STATUS_INDEX, TYPE_INDEX, WORKFLOW_NAMESPACE,
};
