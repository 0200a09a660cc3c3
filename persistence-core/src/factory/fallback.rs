//! The memory backend standing in for one that could not start.

use async_trait::async_trait;

use crate::backend::{
    Backend, Capabilities, Document, DocumentWrite, Health, HealthStatus, Precondition, ScanPage,
    ScanRequest, Version,
};
use crate::error::{Error, Result};
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
impl Backend for FallbackBackend {
    fn name(&self) -> &str {
        "memory"
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn get(&self, namespace: &str, key: &str) -> Result<Option<Document>> {
        self.inner.get(namespace, key).await
    }
    async fn put(
        &self,
        namespace: &str,
        key: &str,
        write: DocumentWrite,
        precondition: Precondition,
    ) -> Result<Version> {
        self.inner.put(namespace, key, write, precondition).await
    }
    async fn remove(&self, namespace: &str, key: &str, precondition: Precondition) -> Result<bool> {
        self.inner.remove(namespace, key, precondition).await
    }
    async fn lookup(&self, namespace: &str, index: &str, term: &str) -> Result<Vec<String>> {
        self.inner.lookup(namespace, index, term).await
    }
    async fn scan(&self, namespace: &str, request: ScanRequest) -> Result<ScanPage> {
        self.inner.scan(namespace, request).await
    }
    async fn count(&self, namespace: &str) -> Result<u64> {
        self.inner.count(namespace).await
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
