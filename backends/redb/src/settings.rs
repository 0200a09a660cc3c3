//! The `[redb]` table, the seed-style `TA_REDB_PATH`, and the provider that
//! registers the redb backend with the factory.

use std::path::PathBuf;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use persistence_core::config::{SeedVariable, Settings};
use persistence_core::factory::BackendProvider;
use persistence_core::streams::{Retention, SharedStreams};
use persistence_core::{Result, SharedBackend};
use persistence_ordered_layout::handles::Handles;
use serde::Deserialize;

use crate::{Durability, RedbBackend, RedbOptions};

/// `[redb]` (`TA_REDB_PATH`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedbSettings {
    /// The database file.
    pub path: PathBuf,
    /// `"immediate"` (the default: every acknowledged write is on disk) or
    /// `"periodic"` (durable within `flush_every_ms`).
    pub durability: String,
    /// With `durability = "periodic"`: the longest a write waits to be
    /// durable, in ms (default 500).
    pub flush_every_ms: Option<u64>,
    /// Longest wait for one call, in ms (default 30000); past it the call
    /// fails with `Timeout` and health turns degraded.
    pub call_timeout_ms: Option<u64>,
    /// redb's page cache in bytes (default: redb's, 1 GiB at most, used as needed).
    pub cache_size_bytes: Option<usize>,
}

impl Default for RedbSettings {
    fn default() -> Self {
        RedbSettings {
            path: PathBuf::from("./data/tasks.redb"),
            durability: "immediate".into(),
            flush_every_ms: None,
            call_timeout_ms: None,
            cache_size_bytes: None,
        }
    }
}

/// Default `flush_every_ms` of periodic durability.
const DEFAULT_FLUSH_EVERY: Duration = Duration::from_millis(500);

impl RedbSettings {
    /// Parses `[redb]` and checks it: a path that is not blank and, when
    /// redb is the chosen backend, not a directory; a known durability; no
    /// zero where a duration or size is meant.
    pub fn from_settings(settings: &Settings) -> Result<Self> {
        let s: RedbSettings = settings.table("redb")?;
        let shown = s.path.display().to_string();
        if shown.trim().is_empty() {
            return Err(settings.invalid(
                "redb.path",
                &shown,
                "empty or blank: give the database file",
            ));
        }
        if settings.backend == "redb" && s.path.is_dir() {
            return Err(settings.invalid(
                "redb.path",
                &shown,
                "is a directory: give the database file (for example data/tasks.redb)",
            ));
        }
        if !matches!(s.durability.as_str(), "immediate" | "periodic") {
            return Err(settings.invalid(
                "redb.durability",
                &s.durability,
                "must be \"immediate\" or \"periodic\"",
            ));
        }
        if s.flush_every_ms.is_some() && s.durability != "periodic" {
            return Err(settings.invalid(
                "redb.flush_every_ms",
                &format!("{:?}", s.flush_every_ms.unwrap_or_default()),
                "only means something with durability = \"periodic\"",
            ));
        }
        for (key, value) in [
            ("redb.flush_every_ms", s.flush_every_ms),
            ("redb.call_timeout_ms", s.call_timeout_ms),
            (
                "redb.cache_size_bytes",
                s.cache_size_bytes.map(|b| b as u64),
            ),
        ] {
            if value == Some(0) {
                return Err(settings.invalid(key, "0", "must be greater than 0"));
            }
        }
        Ok(s)
    }

    /// The options these settings open with.
    pub fn options(&self) -> RedbOptions {
        RedbOptions {
            path: self.path.clone(),
            durability: match self.durability.as_str() {
                "periodic" => Durability::Periodic {
                    every: self
                        .flush_every_ms
                        .map_or(DEFAULT_FLUSH_EVERY, Duration::from_millis),
                },
                _ => Durability::Immediate,
            },
            call_timeout: self
                .call_timeout_ms
                .map_or(crate::DEFAULT_CALL_TIMEOUT, Duration::from_millis),
            cache_size: self.cache_size_bytes,
            temporary: false,
        }
    }
}

/// The seed-style variables for `[redb]`.
pub const SEED_VARIABLES: &[SeedVariable] = &[SeedVariable::new("TA_REDB_PATH", "path")];

/// Opens the redb backend from the `[redb]` settings (`TA_REDB_PATH`).
#[derive(Debug, Clone, Copy, Default)]
pub struct RedbProvider;

#[async_trait]
impl BackendProvider for RedbProvider {
    fn name(&self) -> &'static str {
        "redb"
    }

    fn seed_variables(&self) -> &'static [SeedVariable] {
        SEED_VARIABLES
    }

    fn check(&self, settings: &Settings) -> Result<()> {
        RedbSettings::from_settings(settings).map(drop)
    }

    async fn open(&self, settings: &Settings) -> Result<SharedBackend> {
        Ok(shared(RedbSettings::from_settings(settings)?.options()).await?)
    }

    async fn open_streams(
        &self,
        settings: &Settings,
        retention: Retention,
    ) -> Option<Result<SharedStreams>> {
        let options = match RedbSettings::from_settings(settings) {
            Ok(s) => s.options(),
            Err(e) => return Some(Err(e)),
        };
        Some(
            shared(options)
                .await
                .map(|backend| Arc::new(backend.streams(retention)) as SharedStreams),
        )
    }

    /// The queue `queue.name` in the same database (one per name and file).
    async fn open_queue(
        &self,
        settings: &Settings,
        options: persistence_core::queue::QueueOptions,
    ) -> Option<Result<persistence_core::queue::SharedQueue>> {
        let db = match RedbSettings::from_settings(settings) {
            Ok(s) => s.options(),
            Err(e) => return Some(Err(e)),
        };
        let backend = match shared(db).await {
            Ok(b) => b,
            Err(e) => return Some(Err(e)),
        };
        Some(
            backend
                .queue(settings.queue.name(), options)
                .await
                .map(|q| Arc::new(q) as persistence_core::queue::SharedQueue),
        )
    }
}

/// The databases this process has open through the factory (documents and
/// event streams of one database share one handle).
static OPEN: LazyLock<Handles<RedbBackend>> = LazyLock::new(|| Handles::new("redb"));

/// The open database at `options.path`, or a newly opened one.
async fn shared(options: RedbOptions) -> Result<Arc<RedbBackend>> {
    OPEN.get_or_open(options.path.clone(), move || RedbBackend::open(&options))
        .await
}
