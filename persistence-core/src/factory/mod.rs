//! Chooses and opens the backend the settings ask for.
//!
//! Backends live in their own crates, so the factory holds a registry of
//! [`BackendProvider`]s: memory is always there, and a binary registers the
//! ones it was built with. A known backend that is not registered answers
//! "not available in this build". When the chosen backend cannot start, the
//! [`FallbackPolicy`] decides: fail, or run on memory with a loud warning and
//! a degraded health report.

mod fallback;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;

use crate::backend::SharedBackend;
use crate::config::{FallbackPolicy, Settings};
use crate::error::{Error, Result};
use crate::memory::MemoryBackend;
use crate::store::TaskStore;

pub use fallback::FallbackBackend;

/// Opens the durable store of a recovery queue (`recovery_queue.spill_path`).
pub type SpillOpener =
    Arc<dyn Fn(&std::path::Path) -> Result<Arc<dyn crate::layers::QueueSpill>> + Send + Sync>;

/// Wraps `backend` in the configured layers, from the backend outward,
/// and puts [`Metrics`](crate::layers::Metrics) outermost, so
/// [`Backend::stats`](crate::Backend::stats) counts what callers saw (call
/// inside a tokio runtime: the recovery queue replays in the background).
/// A `spill_path` needs a `spill` opener.
pub fn stack(
    mut backend: SharedBackend,
    settings: &Settings,
    spill: Option<&SpillOpener>,
) -> Result<SharedBackend> {
    use crate::layers::{layer, CacheTier, CircuitBreaker, Metrics, RecoveryQueue, Retry, Timeout};
    use std::time::Duration;
    for name in &settings.layers.0 {
        backend = match name.as_str() {
            "timeout" => layer(
                backend,
                Timeout::new(Duration::from_millis(settings.timeout.ms)),
            ),
            "retry" => {
                let r = &settings.retry;
                layer(
                    backend,
                    Retry::new(
                        r.max_retries,
                        Duration::from_millis(r.base_ms),
                        r.factor,
                        Duration::from_millis(r.max_delay_ms),
                    ),
                )
            }
            "circuit_breaker" => {
                let b = &settings.circuit_breaker;
                layer(
                    backend,
                    CircuitBreaker::new(b.failures, Duration::from_millis(b.reset_ms)),
                )
            }
            "recovery_queue" => {
                let q = &settings.recovery_queue;
                let store = match (&q.spill_path, spill) {
                    (None, _) => None,
                    (Some(path), Some(open)) => Some(open(path)?),
                    (Some(path), None) => {
                        return Err(Error::Config {
                            key: "recovery_queue.spill_path".into(),
                            value: path.display().to_string(),
                            reason: "this build has no spill store (register one with Factory::register_spill)".into(),
                        })
                    }
                };
                RecoveryQueue::with_spill(
                    backend,
                    q.capacity,
                    q.critical_retries,
                    Duration::from_millis(q.backoff_ms),
                    store,
                )?
            }
            "cache" => Arc::new(CacheTier::new(backend, settings.cache.capacity)),
            // Settings::validate refuses every other name
            _ => backend,
        };
    }
    Ok(layer(backend, Metrics::new()))
}

/// Fills the caches of `backend` with `namespace`'s documents by reading
/// them once (each read goes through the cache tier and is kept there).
async fn preload(backend: &SharedBackend, namespace: &str) -> Result<()> {
    use crate::backend::{ScanOrder, ScanRequest};
    let mut request = ScanRequest::first(ScanOrder::Key, 500);
    loop {
        let page = backend.scan(namespace, request.clone()).await?;
        for (key, _) in &page.entries {
            backend.get(namespace, key).await?;
        }
        match page.cursor {
            Some(c) => request.cursor = Some(c),
            None => return Ok(()),
        }
    }
}

/// Opens one kind of backend from the settings.
#[async_trait]
pub trait BackendProvider: Send + Sync + Debug {
    /// The name `backend = "..."` selects it by.
    fn name(&self) -> &'static str;

    /// Opens the backend, or says why it cannot start.
    async fn open(&self, settings: &Settings) -> Result<SharedBackend>;
}

/// The provider of the in-memory backend.
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryProvider;

#[async_trait]
impl BackendProvider for MemoryProvider {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn open(&self, _settings: &Settings) -> Result<SharedBackend> {
        Ok(Arc::new(MemoryBackend::new()))
    }
}

/// The backend the factory opened, and how.
#[derive(Debug, Clone)]
pub struct Opened {
    /// The backend to use.
    pub backend: SharedBackend,
    /// The backend the settings asked for.
    pub requested: String,
    /// Why the requested backend is not the one running, if it fell back.
    pub fallback_cause: Option<Error>,
}

/// The registry of backend providers.
///
/// ```
/// use persistence_core::{config::Settings, factory::Factory};
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let opened = Factory::new().open(&Settings::default()).await.unwrap();
/// assert_eq!(opened.backend.name(), "memory");
/// assert!(opened.fallback_cause.is_none());
/// # });
/// ```
#[derive(Clone)]
pub struct Factory {
    providers: BTreeMap<&'static str, Arc<dyn BackendProvider>>,
    spill: Option<SpillOpener>,
}

impl Debug for Factory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Factory")
            .field("providers", &self.available())
            .field("spill", &self.spill.is_some())
            .finish()
    }
}

impl Default for Factory {
    fn default() -> Self {
        Self::new()
    }
}

impl Factory {
    /// A factory that knows the memory backend.
    pub fn new() -> Self {
        let mut f = Factory {
            providers: BTreeMap::new(),
            spill: None,
        };
        f.register(Arc::new(MemoryProvider));
        f
    }

    /// Adds (or replaces) a provider.
    pub fn register(&mut self, provider: Arc<dyn BackendProvider>) -> &mut Self {
        self.providers.insert(provider.name(), provider);
        self
    }

    /// Sets how recovery queues open their spill (`recovery_queue.spill_path`).
    pub fn register_spill(&mut self, opener: SpillOpener) -> &mut Self {
        self.spill = Some(opener);
        self
    }

    /// Names of the backends this factory can open.
    pub fn available(&self) -> Vec<&'static str> {
        self.providers.keys().copied().collect()
    }

    /// Opens the backend `settings` choose, applying the fallback policy,
    /// and stacks the configured layers over it.
    pub async fn open(&self, settings: &Settings) -> Result<Opened> {
        let mut opened = self.open_bare(settings).await?;
        opened.backend = stack(opened.backend, settings, self.spill.as_ref())?;
        if settings.layers.0.iter().any(|l| l == "cache") {
            for ns in &settings.cache.preload {
                // preloading reads through every layer, the cache included
                preload(&opened.backend, ns).await?;
            }
        }
        Ok(opened)
    }

    async fn open_bare(&self, settings: &Settings) -> Result<Opened> {
        let requested = settings.backend.clone();
        let attempt = match self.providers.get(requested.as_str()) {
            Some(provider) => provider.open(settings).await,
            None => Err(Error::Config {
                key: "backend".into(),
                value: requested.clone(),
                reason: format!(
                    "not available in this build (available: {})",
                    self.available().join(", ")
                ),
            }),
        };
        match (attempt, settings.fallback) {
            (Ok(backend), _) => Ok(Opened {
                backend,
                requested,
                fallback_cause: None,
            }),
            (Err(e), FallbackPolicy::Fail) => Err(e),
            (Err(e), FallbackPolicy::Memory) => {
                tracing::warn!(
                    backend = %requested,
                    error = %e,
                    "backend {requested} could not start; RUNNING ON MEMORY: data will not survive a restart (set fallback = \"fail\" to stop instead)"
                );
                let backend = Arc::new(FallbackBackend::new(&requested, e.clone()));
                Ok(Opened {
                    backend,
                    requested,
                    fallback_cause: Some(e),
                })
            }
        }
    }

    /// Opens the backend and a [`TaskStore`] on it with the configured
    /// namespace and TTL.
    pub async fn open_task_store(&self, settings: &Settings) -> Result<(TaskStore, Opened)> {
        let opened = self.open(settings).await?;
        let mut store = TaskStore::new(opened.backend.clone()).with_ttl(settings.task_ttl());
        if let Some(ns) = &settings.task_store.namespace {
            store = store.with_namespace(ns.clone());
        }
        Ok((store, opened))
    }
}
