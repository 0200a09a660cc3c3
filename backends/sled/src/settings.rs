//! The `[sled]` table, the seed-style `TA_SLED_PATH`, and the provider that
//! registers the sled backend with the factory.

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

use crate::{SledBackend, SledOptions};

/// `[sled]` (`TA_SLED_PATH`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SledSettings {
    /// Directory of the database.
    pub path: PathBuf,
    /// How often sled flushes to disk in the background, in milliseconds;
    /// absent keeps sled's default (500), 0 turns background flushing off.
    pub flush_every_ms: Option<u64>,
    /// Flush before every write returns (durable once acknowledged).
    pub flush_on_write: bool,
    /// Longest wait for one sled call, in ms (default 30000); past it the
    /// call fails with `Timeout` and health turns degraded.
    pub call_timeout_ms: Option<u64>,
}

impl Default for SledSettings {
    fn default() -> Self {
        SledSettings {
            path: PathBuf::from("./data/sled"),
            flush_every_ms: None,
            flush_on_write: false,
            call_timeout_ms: None,
        }
    }
}

impl SledSettings {
    /// Parses `[sled]` and checks the path: not blank, and, when sled is
    /// the chosen backend, not an existing file.
    pub fn from_settings(settings: &Settings) -> Result<Self> {
        let s: SledSettings = settings.table("sled")?;
        let shown = s.path.display().to_string();
        if shown.trim().is_empty() {
            return Err(settings.invalid(
                "sled.path",
                &shown,
                "empty or blank: give the directory of the database",
            ));
        }
        if settings.backend == "sled" && s.path.exists() && !s.path.is_dir() {
            return Err(settings.invalid(
                "sled.path",
                &shown,
                "is a file: give the directory of the database",
            ));
        }
        Ok(s)
    }
}

/// The seed-style variables for `[sled]`.
pub const SEED_VARIABLES: &[SeedVariable] = &[SeedVariable::new("TA_SLED_PATH", "path")];

/// Opens the sled backend from the `[sled]` settings (`TA_SLED_PATH`).
#[derive(Debug, Clone, Copy, Default)]
pub struct SledProvider;

#[async_trait]
impl BackendProvider for SledProvider {
    fn name(&self) -> &'static str {
        "sled"
    }

    fn seed_variables(&self) -> &'static [SeedVariable] {
        SEED_VARIABLES
    }

    fn check(&self, settings: &Settings) -> Result<()> {
        SledSettings::from_settings(settings).map(drop)
    }

    async fn open(&self, settings: &Settings) -> Result<SharedBackend> {
        Ok(shared(options(settings)?).await?)
    }

    async fn open_streams(
        &self,
        settings: &Settings,
        retention: Retention,
    ) -> Option<Result<SharedStreams>> {
        let opened = match options(settings) {
            Ok(options) => shared(options).await,
            Err(e) => Err(e),
        };
        Some(opened.and_then(|backend| {
            backend
                .streams(retention)
                .map(|s| Arc::new(s) as SharedStreams)
        }))
    }

    /// The queue `queue.name` in the same database (one per name and path).
    async fn open_queue(
        &self,
        settings: &Settings,
        options: persistence_core::queue::QueueOptions,
    ) -> Option<Result<persistence_core::queue::SharedQueue>> {
        let backend = match options_then_open(settings).await {
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

async fn options_then_open(settings: &Settings) -> Result<Arc<SledBackend>> {
    shared(options(settings)?).await
}

fn options(settings: &Settings) -> Result<SledOptions> {
    let s = SledSettings::from_settings(settings)?;
    Ok(SledOptions {
        path: s.path,
        flush_every_ms: s.flush_every_ms,
        flush_on_write: s.flush_on_write,
        temporary: false,
        call_timeout: s.call_timeout_ms.map_or(crate::DEFAULT_CALL_TIMEOUT, |ms| {
            Duration::from_millis(ms.max(1))
        }),
    })
}

/// The databases this process has open through the factory (documents and
/// event streams of one database share one handle).
static OPEN: LazyLock<Handles<SledBackend>> = LazyLock::new(|| Handles::new("sled"));

/// The open database at `options.path`, or a newly opened one.
async fn shared(options: SledOptions) -> Result<Arc<SledBackend>> {
    OPEN.get_or_open(options.path.clone(), move || SledBackend::open(&options))
        .await
}
