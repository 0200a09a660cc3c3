//! The conformance suite on a backend that declares none of the optional
//! capabilities (what a first plugin may ship): the optional cases must not
//! apply, the required ones must pass, and what it does not offer must be
//! refused with `Unsupported`.

use async_trait::async_trait;
use persistence_core::backend::{
    Backend, Capabilities, Document, DocumentWrite, Health, Precondition, Version,
};
use persistence_core::memory::MemoryBackend;
use persistence_core::Result;

/// Required operations only: no TTL, no scan, no count.
#[derive(Debug, Default)]
struct RequiredOnly(MemoryBackend);

#[async_trait]
impl Backend for RequiredOnly {
    fn name(&self) -> &str {
        "required-only"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            atomic_index: true,
            ..Capabilities::default()
        }
    }
    async fn get(&self, namespace: &str, key: &str) -> Result<Option<Document>> {
        self.0.get(namespace, key).await
    }
    async fn put(
        &self,
        namespace: &str,
        key: &str,
        write: DocumentWrite,
        precondition: Precondition,
    ) -> Result<Version> {
        if write.ttl.is_some() {
            return Err(self.unsupported("ttl"));
        }
        self.0.put(namespace, key, write, precondition).await
    }
    async fn remove(&self, namespace: &str, key: &str, precondition: Precondition) -> Result<bool> {
        self.0.remove(namespace, key, precondition).await
    }
    async fn lookup(&self, namespace: &str, index: &str, term: &str) -> Result<Vec<String>> {
        self.0.lookup(namespace, index, term).await
    }
    async fn health(&self) -> Health {
        Health::ok("required-only", "memory without optional capabilities")
    }
}

persistence_conformance::conformance_tests!(|| async {
    std::sync::Arc::new(RequiredOnly::default()) as persistence_core::SharedBackend
});
