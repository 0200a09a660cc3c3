//! How a backend registers with the factory: its name, its table, its seed
//! variables, and how it opens.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;

use crate::backend::SharedBackend;
use crate::config::{SeedVariable, Settings};
use crate::error::Result;
use crate::memory::MemoryBackend;

/// Opens one kind of backend. A backend crate implements it next to its
/// backend, owning its settings: the table named after it (`[redis]`),
/// parsed with [`Settings::table`] into a type of its own, and the seed
/// variables that set that table's keys (`TA_REDIS_HOST` -> `host`). Core
/// knows no backend by name; a binary registers the providers it was built
/// with ([`Factory::register`](super::Factory::register)).
#[async_trait]
pub trait BackendProvider: Send + Sync + Debug {
    /// The name `backend = "..."` selects it by, and the name of its table.
    fn name(&self) -> &'static str;

    /// The seed's variables for this backend's table.
    fn seed_variables(&self) -> &'static [SeedVariable] {
        &[]
    }

    /// Parses and checks this backend's table without opening anything
    /// (unknown keys, bad values). Called whenever settings are loaded,
    /// whichever backend they choose, so a typo never waits for the day
    /// the backend is chosen. `settings.backend` says whether it is.
    fn check(&self, settings: &Settings) -> Result<()>;

    /// The TTL in seconds this backend's settings give tasks when
    /// `task_store.ttl_seconds` is not set (Redis: the seed's
    /// `TA_REDIS_TTL`); `None` for no default.
    fn default_task_ttl(&self, settings: &Settings) -> Result<Option<u64>> {
        let _ = settings;
        Ok(None)
    }

    /// Opens the backend, or says why it cannot start.
    async fn open(&self, settings: &Settings) -> Result<SharedBackend>;

    /// Opens this engine's run event streams with `retention`, or `None`
    /// when the engine has none (the factory then answers `Unsupported`
    /// naming it, and applies the fallback policy).
    async fn open_streams(
        &self,
        settings: &Settings,
        retention: crate::streams::Retention,
    ) -> Option<Result<crate::streams::SharedStreams>> {
        let _ = (settings, retention);
        None
    }

    /// Opens this engine's run queue (`settings.queue.name()`) with
    /// `options`, or `None` when the engine has none.
    async fn open_queue(
        &self,
        settings: &Settings,
        options: crate::queue::QueueOptions,
    ) -> Option<Result<crate::queue::SharedQueue>> {
        let _ = (settings, options);
        None
    }
}

/// A table that must be empty: an owner with nothing to configure.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoSettings {}

/// The provider of the in-memory backend (no settings).
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryProvider;

#[async_trait]
impl BackendProvider for MemoryProvider {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn check(&self, settings: &Settings) -> Result<()> {
        settings.table::<NoSettings>(self.name()).map(drop)
    }

    async fn open(&self, _settings: &Settings) -> Result<SharedBackend> {
        Ok(Arc::new(MemoryBackend::new()))
    }

    async fn open_streams(
        &self,
        _settings: &Settings,
        retention: crate::streams::Retention,
    ) -> Option<Result<crate::streams::SharedStreams>> {
        Some(Ok(Arc::new(crate::streams::MemoryStreams::new(retention))))
    }

    async fn open_queue(
        &self,
        _settings: &Settings,
        options: crate::queue::QueueOptions,
    ) -> Option<Result<crate::queue::SharedQueue>> {
        Some(Ok(Arc::new(crate::queue::MemoryQueue::new(options))))
    }
}
