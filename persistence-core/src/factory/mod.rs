//! Reads settings and opens the backend and layers they choose.
//!
//! Backends and layers live outside core's knowledge: the factory holds a
//! registry of [`BackendProvider`]s and [`LayerProvider`]s, each owning
//! its table and seed variables. Memory and the built-in layers are always
//! there; a binary registers the backends it was built with. Settings are
//! loaded through the factory, so every table is checked by its owner and
//! a name nobody registered fails at once, listing the registered ones.
//! When the chosen backend cannot start, the [`FallbackPolicy`] decides:
//! fail, or run on memory with a loud warning and a degraded health report.
//! Wrong configuration is never covered by the fallback.

mod fallback;
mod provider;

use std::fmt::Debug;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::backend::SharedBackend;
use crate::config::{config_file, FallbackPolicy, Settings, TableOwner};
use crate::error::{Error, ErrorKind, Result};
use crate::layers::{layer, LayerProvider, Metrics};
use crate::store::TaskStore;

pub use fallback::FallbackBackend;
pub use provider::{BackendProvider, MemoryProvider, NoSettings};

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

/// The run event streams the settings chose, and whether they fell back.
#[derive(Debug, Clone)]
pub struct OpenedStreams {
    /// The engine to use.
    pub streams: crate::streams::SharedStreams,
    /// The engine the settings asked for.
    pub requested: String,
    /// Why the requested engine is not the one running, if it fell back.
    pub fallback_cause: Option<Error>,
}

/// The run queue the settings chose, and whether it fell back.
#[derive(Debug, Clone)]
pub struct OpenedQueue {
    /// The queue to use.
    pub queue: crate::queue::SharedQueue,
    /// The engine the settings asked for.
    pub requested: String,
    /// Why the requested engine is not the one running, if it fell back.
    pub fallback_cause: Option<Error>,
}

/// The registry of backends and layers, which loads settings and opens
/// what they choose.
///
/// ```
/// use persistence_core::factory::Factory;
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let factory = Factory::new();
/// let env = [("TA_PERSISTENCE__TIMEOUT__MS".to_string(), "500".to_string())];
/// let settings = factory.settings_from_sources(None, env).unwrap();
/// let opened = factory.open(&settings).await.unwrap();
/// assert_eq!(opened.backend.name(), "memory");
/// assert!(opened.fallback_cause.is_none());
///
/// let typo = [("TA_PERSISTENCE_BACKEND".to_string(), "mongo".to_string())];
/// let err = factory.settings_from_sources(None, typo).unwrap_err();
/// assert!(err.to_string().contains("available: memory"), "{err}");
/// # });
/// ```
#[derive(Clone)]
pub struct Factory {
    backends: Vec<Arc<dyn BackendProvider>>,
    layers: Vec<Arc<dyn LayerProvider>>,
}

impl Debug for Factory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Factory")
            .field("backends", &self.available())
            .field("layers", &self.available_layers())
            .finish()
    }
}

impl Default for Factory {
    fn default() -> Self {
        Self::new()
    }
}

impl Factory {
    /// A factory that knows the memory backend and the built-in layers.
    pub fn new() -> Self {
        Factory {
            backends: vec![Arc::new(MemoryProvider)],
            layers: crate::layers::builtin(),
        }
    }

    /// Adds a backend provider, or replaces the one of the same name.
    pub fn register(&mut self, provider: Arc<dyn BackendProvider>) -> &mut Self {
        replace_or_push(&mut self.backends, provider, |p| p.name());
        self
    }

    /// Adds a layer provider, or replaces the one of the same name (a
    /// binary with a durable engine registers
    /// [`RecoveryQueueProvider::with_spill`](crate::layers::RecoveryQueueProvider::with_spill)
    /// this way).
    pub fn register_layer(&mut self, provider: Arc<dyn LayerProvider>) -> &mut Self {
        replace_or_push(&mut self.layers, provider, |p| p.name());
        self
    }

    /// Names of the backends this factory can open, in registration order.
    pub fn available(&self) -> Vec<&'static str> {
        self.backends.iter().map(|p| p.name()).collect()
    }

    /// Names of the layers this factory can stack, in registration order.
    pub fn available_layers(&self) -> Vec<&'static str> {
        self.layers.iter().map(|p| p.name()).collect()
    }

    /// Reads the settings of this process: the file named by
    /// `TA_PERSISTENCE_CONFIG` (an error if it is missing), else
    /// `config/default.toml` if it exists, overlaid by the environment.
    pub fn load_settings(&self) -> Result<Settings> {
        self.load_settings_from_env(std::env::vars())
    }

    /// [`Factory::load_settings`] with `env` in place of the process
    /// environment (a tool appends its command-line overrides this way).
    pub fn load_settings_from_env(
        &self,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings> {
        let env: Vec<(String, String)> = env.into_iter().collect();
        self.settings_from_sources(config_file(&env).as_deref(), env)
    }

    /// Reads settings from `file` (TOML, must exist if given) overlaid by
    /// the variables in `env` (see [`crate::config`]), then has every
    /// registered backend and layer check its table.
    ///
    /// ```
    /// # use persistence_core::factory::Factory;
    /// let env = [("TA_PERSISTENCE_FALLBACK".to_string(), "maybe".to_string())];
    /// let err = Factory::new().settings_from_sources(None, env).unwrap_err();
    /// assert!(err.to_string().starts_with(
    ///     "invalid configuration fallback (TA_PERSISTENCE_FALLBACK) = \"maybe\""
    /// ), "{err}");
    /// ```
    pub fn settings_from_sources(
        &self,
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings> {
        let owners: Vec<TableOwner<'_>> = self
            .backends
            .iter()
            .map(|p| TableOwner {
                table: p.name(),
                seeds: p.seed_variables(),
            })
            .chain(self.layers.iter().map(|l| TableOwner {
                table: l.name(),
                seeds: l.seed_variables(),
            }))
            .collect();
        let settings = Settings::from_sources(file, env, &owners)?;
        self.check(&settings)?;
        Ok(settings)
    }

    /// Checks `settings` against this registry: the backend and every
    /// layer are registered, and each owner accepts its table.
    pub fn check(&self, settings: &Settings) -> Result<()> {
        self.provider(settings)?;
        for name in &settings.layers.0 {
            self.layer_provider(settings, name)?;
        }
        for provider in &self.backends {
            provider.check(settings)?;
        }
        for layer in &self.layers {
            layer.check(settings)?;
        }
        Ok(())
    }

    fn provider(&self, settings: &Settings) -> Result<&Arc<dyn BackendProvider>> {
        self.engine_provider("backend", &settings.backend, settings)
    }

    fn layer_provider(&self, settings: &Settings, name: &str) -> Result<&Arc<dyn LayerProvider>> {
        self.layers
            .iter()
            .find(|l| l.name() == name)
            .ok_or_else(|| {
                settings.invalid(
                    "layers",
                    name,
                    &format!(
                        "unknown layer: expected some of {}",
                        self.available_layers().join(", ")
                    ),
                )
            })
    }

    /// The TTL given to stored tasks: `task_store.ttl_seconds`, else the
    /// chosen backend's default (Redis: `TA_REDIS_TTL`), else none.
    pub fn task_ttl(&self, settings: &Settings) -> Result<Option<Duration>> {
        let backend_default = self.provider(settings)?.default_task_ttl(settings)?;
        Ok(settings.task_store.ttl(backend_default))
    }

    /// Opens the backend `settings` choose, applying the fallback policy,
    /// and stacks the configured layers over it. Settings this registry
    /// does not accept fail whatever the fallback policy says.
    pub async fn open(&self, settings: &Settings) -> Result<Opened> {
        self.check(settings)?;
        let mut opened = self.open_bare(settings).await?;
        opened.backend = self.stack(opened.backend, settings)?;
        for name in &settings.layers.0 {
            self.layer_provider(settings, name)?
                .prepare(&opened.backend, settings)
                .await?;
        }
        Ok(opened)
    }

    /// Wraps `backend` in the configured layers, from the backend outward,
    /// and puts [`Metrics`] outermost, so
    /// [`Backend::stats`](crate::Backend::stats) counts what callers saw
    /// (call inside a tokio runtime: some layers work in the background).
    pub fn stack(&self, mut backend: SharedBackend, settings: &Settings) -> Result<SharedBackend> {
        for name in &settings.layers.0 {
            backend = self
                .layer_provider(settings, name)?
                .wrap(backend, settings)?;
        }
        Ok(layer(backend, Metrics::new()))
    }

    async fn open_bare(&self, settings: &Settings) -> Result<Opened> {
        let requested = settings.backend.clone();
        let attempt = self.provider(settings)?.open(settings).await;
        match (attempt, settings.fallback) {
            (Ok(backend), _) => Ok(Opened {
                backend,
                requested,
                fallback_cause: None,
            }),
            // a configuration mistake found while opening is still one
            (Err(e), _) if e.kind() == ErrorKind::Config => Err(e),
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

    /// The provider of `requested`, the engine setting `key` names.
    fn engine_provider(
        &self,
        key: &str,
        requested: &str,
        settings: &Settings,
    ) -> Result<&Arc<dyn BackendProvider>> {
        let noun = if key == "backend" {
            "backend"
        } else {
            "engine"
        };
        self.backends
            .iter()
            .find(|p| p.name() == requested)
            .ok_or_else(|| {
                settings.invalid(
                    key,
                    requested,
                    &format!(
                        "unknown {noun}, or not available in this build (available: {})",
                        self.available().join(", ")
                    ),
                )
            })
    }

    /// Opens the run event streams the settings choose: `streams.engine`
    /// (`STREAMING_BACKEND`), else the documents' backend. An engine
    /// without streams (a plugin: the ABI does not carry them) or one that
    /// cannot start is an error, or, with `fallback = "memory"`, memory
    /// streams and a loud warning; configuration mistakes never fall back.
    pub async fn open_streams(&self, settings: &Settings) -> Result<OpenedStreams> {
        self.check(settings)?;
        let requested = settings
            .streams
            .engine
            .clone()
            .unwrap_or_else(|| settings.backend.clone());
        let provider = self.engine_provider("streams.engine", &requested, settings)?;
        let retention = settings.streams.retention();
        let attempt = provider
            .open_streams(settings, retention)
            .await
            .unwrap_or_else(|| Err(unsupported(&requested, "run event streams")));
        let (streams, fallback_cause) = fall_back(attempt, settings.fallback, |e| {
            tracing::warn!(
                engine = %requested,
                error = %e,
                "run event streams on {requested} unavailable; STREAMING IN MEMORY: other processes will not see these events (set fallback = \"fail\" to stop instead)"
            );
            Arc::new(crate::streams::MemoryStreams::new(retention)) as crate::streams::SharedStreams
        })?;
        Ok(OpenedStreams {
            streams,
            requested,
            fallback_cause,
        })
    }

    /// Opens the run queue the settings choose: `queue.engine`, else the
    /// documents' backend; like [`open_streams`](Self::open_streams), an
    /// engine without a queue or one that cannot start is an error or,
    /// with `fallback = "memory"`, a memory queue and a loud warning.
    pub async fn open_queue(&self, settings: &Settings) -> Result<OpenedQueue> {
        self.check(settings)?;
        let requested = settings
            .queue
            .engine
            .clone()
            .unwrap_or_else(|| settings.backend.clone());
        let provider = self.engine_provider("queue.engine", &requested, settings)?;
        let options = settings.queue.options()?;
        let attempt = provider
            .open_queue(settings, options.clone())
            .await
            .unwrap_or_else(|| Err(unsupported(&requested, "a run queue")));
        let (queue, fallback_cause) = fall_back(attempt, settings.fallback, |e| {
            tracing::warn!(
                engine = %requested,
                error = %e,
                "run queue on {requested} unavailable; QUEUEING IN MEMORY: other processes will not see these jobs, and they do not survive a restart (set fallback = \"fail\" to stop instead)"
            );
            Arc::new(crate::queue::MemoryQueue::new(options)) as crate::queue::SharedQueue
        })?;
        Ok(OpenedQueue {
            queue,
            requested,
            fallback_cause,
        })
    }

    /// Opens the backend and a [`TaskStore`] on it with the configured
    /// namespace and TTL.
    pub async fn open_task_store(&self, settings: &Settings) -> Result<(TaskStore, Opened)> {
        let ttl = self.task_ttl(settings)?;
        let opened = self.open(settings).await?;
        let store = TaskStore::new(opened.backend.clone())
            .with_ttl(ttl)
            .with_namespace(settings.task_store.namespace());
        Ok((store, opened))
    }
}

fn unsupported(engine: &str, capability: &str) -> Error {
    Error::Unsupported {
        backend: engine.to_string(),
        capability: capability.into(),
    }
}

/// `attempt`'s value, or under [`FallbackPolicy::Memory`] memory's
/// (`memory` warns) with the cause; configuration errors never fall back.
fn fall_back<T>(
    attempt: Result<T>,
    policy: FallbackPolicy,
    memory: impl FnOnce(&Error) -> T,
) -> Result<(T, Option<Error>)> {
    match (attempt, policy) {
        (Ok(value), _) => Ok((value, None)),
        (Err(e), _) if e.kind() == ErrorKind::Config => Err(e),
        (Err(e), FallbackPolicy::Fail) => Err(e),
        (Err(e), FallbackPolicy::Memory) => Ok((memory(&e), Some(e))),
    }
}

fn replace_or_push<T: ?Sized>(list: &mut Vec<Arc<T>>, item: Arc<T>, name: impl Fn(&T) -> &str) {
    match list.iter_mut().find(|p| name(p) == name(&item)) {
        Some(slot) => *slot = item,
        None => list.push(item),
    }
}
