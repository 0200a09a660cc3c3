//! The memory backend standing in for one that could not start.

use async_trait::async_trait;

use crate::backend::{Backend, Health, HealthStatus};
use crate::error::Error;
use crate::layers::Layer;
use crate::memory::MemoryBackend;

/// An in-memory backend that reports [`HealthStatus::Degraded`], naming the
/// backend it replaces and why that one could not start.
#[derive(Debug)]
pub struct FallbackBackend {
    inner: MemoryBackend,
    requested: String,
    cause: Error,
}

impl FallbackBackend {
    /// Memory standing in for `requested`, which failed with `cause`.
    pub fn new(requested: &str, cause: Error) -> Self {
        FallbackBackend {
            inner: MemoryBackend::new(),
            requested: requested.to_string(),
            cause,
        }
    }
}

#[async_trait]
impl Layer for FallbackBackend {
    fn inner(&self) -> &dyn Backend {
        &self.inner
    }
    async fn health(&self) -> Health {
        let mut health = self.inner.health().await;
        health.status = HealthStatus::Degraded;
        health.message = format!(
            "degraded: running on memory, data will not survive restart ({} could not start: {})",
            self.requested, self.cause
        );
        health
            .details
            .insert("requested_backend".into(), self.requested.clone());
        health
    }
}
