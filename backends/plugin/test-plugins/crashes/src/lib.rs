//! A plugin that takes its whole process down when asked: its one backend,
//! `memory-that-crashes`, is the in-memory backend, except that reading
//! key `abort` calls `abort()`, key `segfault` writes through a null
//! pointer, and key `exit` exits the process. Loaded into the host, any of
//! those ends the host; with process isolation, only the runner.

use std::sync::Arc;

use persistence_plugin_sdk::{
    async_trait, Backend, Capabilities, Document, DocumentWrite, Error, Health, MemoryBackend,
    Plugin, Precondition, Result, SharedBackend, Version,
};

#[derive(Debug, Default)]
struct Crashes(MemoryBackend);

fn crash_on(key: &str) {
    match key {
        "abort" => std::process::abort(),
        // SAFETY: none; this is the bug the test wants a plugin to have
        "segfault" => unsafe { std::ptr::null_mut::<u64>().write_volatile(0xdead) },
        "exit" => std::process::exit(3),
        _ => {}
    }
}

#[async_trait]
impl Backend for Crashes {
    fn name(&self) -> &str {
        "memory-that-crashes"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }
    async fn get(&self, ns: &str, key: &str) -> Result<Option<Document>> {
        crash_on(key);
        self.0.get(ns, key).await
    }
    async fn put(
        &self,
        ns: &str,
        key: &str,
        write: DocumentWrite,
        precondition: Precondition,
    ) -> Result<Version> {
        crash_on(key);
        self.0.put(ns, key, write, precondition).await
    }
    async fn remove(&self, ns: &str, key: &str, precondition: Precondition) -> Result<bool> {
        self.0.remove(ns, key, precondition).await
    }
    async fn lookup(&self, ns: &str, index: &str, term: &str) -> Result<Vec<String>> {
        self.0.lookup(ns, index, term).await
    }
    async fn health(&self) -> Health {
        self.0.health().await
    }
}

struct CrashesPlugin;

impl Plugin for CrashesPlugin {
    const NAME: &'static str = "crashes";
    const VERSION: &'static str = "0.1.0";
    fn backends() -> Vec<(&'static str, Capabilities)> {
        vec![("memory-that-crashes", Capabilities::default())]
    }
    fn create(_: &str, _: &[u8]) -> std::result::Result<SharedBackend, Error> {
        Ok(Arc::new(Crashes::default()))
    }
}

persistence_plugin_sdk::export_plugin!(CrashesPlugin);
