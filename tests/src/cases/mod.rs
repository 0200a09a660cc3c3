//! The cases, a file per family. Each panics (with a message saying which
//! guarantee broke) on failure. The runner lists them in one table
//! (`crate::runner`), so every case here is reachable as `cases::<name>`.

mod batches;
mod concurrency;
mod contract;
mod export;
mod health;
mod scan;
mod task_concurrency;
mod task_store;
mod transactions;
mod ttl;

pub use batches::*;
pub use concurrency::*;
pub use contract::*;
pub use export::*;
pub use health::*;
pub use scan::*;
pub use task_concurrency::*;
pub use task_store::*;
pub use transactions::*;
pub use ttl::*;

/// What every case file uses: the contract's types and the helpers below.
mod prelude {
    pub use std::collections::BTreeSet;
    pub use std::time::{Duration, SystemTime};

    pub use persistence_core::backend::{
        BackendExt, Document, DocumentWrite, HealthStatus, Precondition, Put, Remove, ScanOrder,
        ScanRequest, Version,
    };
    pub use persistence_core::model::{AgentTaskItem, TaskStatus};
    pub use persistence_core::store::{TaskOperation, REQUEST_INDEX};
    pub use persistence_core::{ErrorKind, Result};

    pub(crate) use super::{doc, kind, lookup, stored, value, IDX};
    pub use crate::fixtures::{fixture_task, sample_task};
    pub use crate::Ctx;
}

use prelude::*;

pub(crate) const IDX: &str = "by_tag";

pub(crate) fn doc(value: &str) -> DocumentWrite {
    DocumentWrite::new(value.as_bytes().to_vec())
}

pub(crate) fn kind<T: std::fmt::Debug>(r: Result<T>) -> ErrorKind {
    match r {
        Ok(v) => panic!("expected an error, got Ok({v:?})"),
        Err(e) => e.kind(),
    }
}

pub(crate) async fn value(ctx: &Ctx, ns: &str, key: &str) -> Option<String> {
    ctx.backend
        .get(ns, key)
        .await
        .unwrap()
        .map(|d| String::from_utf8(d.value.to_vec()).unwrap())
}

pub(crate) async fn lookup(ctx: &Ctx, term: &str) -> Vec<String> {
    ctx.backend.lookup(&ctx.ns, IDX, term).await.unwrap()
}

/// The document at `key` in the case's namespace, which must exist.
pub(crate) async fn stored(ctx: &Ctx, key: &str) -> Document {
    ctx.backend
        .get(&ctx.ns, key)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{key:?} must be stored"))
}

pub async fn model_based_random_operations(ctx: Ctx) {
    crate::model_based::run(ctx).await;
}
