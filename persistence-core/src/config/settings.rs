//! What core itself configures, and the tables it keeps for the backends
//! and layers that own them.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::error::{Error, Result};

/// Settings: what core configures itself (`backend`, `fallback`, `layers`,
/// `[task_store]`), and every other table (`[redis]`, `[sled]`,
/// `[timeout]`...) kept as read, for the backend or layer that owns it to
/// parse with [`Settings::table`]. Build them with
/// [`Factory::load_settings`](crate::factory::Factory::load_settings), which
/// knows the registered owners, their seed variables and their tables.
///
/// `Debug` prints core's settings and the names of the other tables, never
/// their values (they may hold secrets).
#[derive(Clone)]
pub struct Settings {
    /// Which backend: `memory` (default) or the name of a registered one.
    pub backend: String,
    /// What to do when the backend cannot start.
    pub fallback: FallbackPolicy,
    /// Typed task store settings.
    pub task_store: TaskStoreSettings,
    /// Run event streams: which engine, what retention.
    pub streams: StreamsSettings,
    /// The run queue: which engine, leases, retries, sweeps.
    pub queue: QueueSettings,
    /// Layers over the backend, listed from the backend outward
    /// (`["timeout", "retry", "circuit_breaker"]`, or `"timeout,retry"`).
    pub layers: LayerList,
    tables: Tables,
}

/// The merged file-and-variable tree, and where each value came from.
#[derive(Clone, Default)]
pub(super) struct Tables {
    pub(super) tree: config::Config,
    pub(super) origins: Origins,
    pub(super) file: Option<PathBuf>,
}

/// Where each setting set by a variable came from: setting -> (variable, raw value).
pub(super) type Origins = BTreeMap<String, (String, String)>;

impl Default for Settings {
    fn default() -> Self {
        Settings {
            backend: "memory".into(),
            fallback: FallbackPolicy::default(),
            task_store: TaskStoreSettings::default(),
            streams: StreamsSettings::default(),
            queue: QueueSettings::default(),
            layers: LayerList::default(),
            tables: Tables::default(),
        }
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tables: Vec<String> = config::Source::collect(&self.tables.tree)
            .map(|t| t.into_keys().collect())
            .unwrap_or_default();
        f.debug_struct("Settings")
            .field("backend", &self.backend)
            .field("fallback", &self.fallback)
            .field("task_store", &self.task_store)
            .field("streams", &self.streams)
            .field("queue", &self.queue)
            .field("layers", &self.layers)
            .field("tables", &tables)
            .finish()
    }
}

impl Settings {
    pub(super) fn with_tables(tables: Tables) -> Self {
        Settings {
            tables,
            ..Settings::default()
        }
    }

    pub(super) fn tree(&self) -> &config::Config {
        &self.tables.tree
    }

    pub(super) fn note_origin(&mut self, key: &str, origin: String, value: &str) {
        self.tables
            .origins
            .insert(key.to_string(), (origin, value.to_string()));
    }

    /// Parses the table `[name]` (a backend's or a layer's) as `T`; an
    /// absent table is `T::default()`. Errors name the key, where its value
    /// came from and the value (secrets masked), as every setting's do.
    ///
    /// ```
    /// use persistence_core::config::Settings;
    /// use persistence_core::factory::Factory;
    ///
    /// #[derive(Debug, Default, serde::Deserialize)]
    /// #[serde(deny_unknown_fields, default)]
    /// struct Timeout { ms: u64 }
    ///
    /// let env = [("TA_PERSISTENCE__TIMEOUT__MS".to_string(), "250".to_string())];
    /// let settings = Factory::new().settings_from_sources(None, env).unwrap();
    /// assert_eq!(settings.table::<Timeout>("timeout").unwrap().ms, 250);
    /// ```
    pub fn table<T: DeserializeOwned + Default>(&self, name: &str) -> Result<T> {
        let value = match self.tables.tree.get::<config::Value>(name) {
            Ok(value) => value,
            Err(config::ConfigError::NotFound(_)) => return Ok(T::default()),
            Err(e) => return Err(self.error(e)),
        };
        value
            .try_deserialize()
            .map_err(|e| self.error(prefixed(e, name)))
    }

    /// Sets `key` (`plugin.module`, `plugin.options.path`) as a variable
    /// would, recording `origin` (`--module`) for messages. Core's own
    /// fields are plain fields: assign them.
    pub fn set(&mut self, key: &str, value: &str, origin: &str) -> Result<()> {
        let tree = config::Config::builder()
            .add_source(self.tables.tree.clone())
            .set_override(key, value)
            .and_then(|b| b.build())
            .map_err(|e| self.error(e))?;
        self.tables.tree = tree;
        self.note_origin(key, origin.to_string(), value);
        Ok(())
    }

    /// `key` with where its value came from, for messages:
    /// `redis.port (TA_REDIS_PORT)`, `redis.port (in config/x.toml)`, or
    /// `redis.port`.
    pub fn describe(&self, key: &str) -> String {
        describe(key, &self.tables.origins, self.tables.file.as_deref())
    }

    /// Whether `key` was given (in the file or by a variable).
    pub fn is_set(&self, key: &str) -> bool {
        self.tables.tree.get::<config::Value>(key).is_ok()
    }

    /// The configuration error for a bad value of `key`.
    pub fn invalid(&self, key: &str, value: &str, reason: &str) -> Error {
        Error::Config {
            key: self.describe(key),
            value: if is_secret(key) {
                "***".into()
            } else {
                value.into()
            },
            reason: reason.into(),
        }
    }

    pub(super) fn error(&self, e: config::ConfigError) -> Error {
        super::load::config_error(e, &self.tables.origins, self.tables.file.as_deref())
    }
}

/// Adds `table.` in front of the key a table's error names.
fn prefixed(e: config::ConfigError, table: &str) -> config::ConfigError {
    use config::ConfigError;
    let join =
        |key: Option<String>| Some(key.map_or(table.to_string(), |k| format!("{table}.{k}")));
    match e {
        ConfigError::Type {
            origin,
            unexpected,
            expected,
            key,
        } => ConfigError::Type {
            origin,
            unexpected,
            expected,
            key: join(key),
        },
        ConfigError::At { error, origin, key } => ConfigError::At {
            error,
            origin,
            key: join(key),
        },
        other => ConfigError::At {
            error: Box::new(other),
            origin: None,
            key: join(None),
        },
    }
}

/// `redis.port (TA_REDIS_PORT)`, `redis.port (in config/x.toml)` or `redis.port`.
pub(super) fn describe(key: &str, origins: &Origins, file: Option<&Path>) -> String {
    match (origins.get(key), file) {
        (Some((origin, _)), _) => format!("{key} ({origin})"),
        (None, Some(file)) => format!("{key} (in {})", file.display()),
        (None, None) => key.to_string(),
    }
}

/// Whether a setting's value may be a secret and must never be shown: its
/// last segment names a password, token, secret or credential, or a URL
/// (which may carry credentials).
pub(super) fn is_secret(key: &str) -> bool {
    let leaf = key.rsplit('.').next().unwrap_or(key).to_ascii_lowercase();
    ["password", "pwd", "secret", "token", "credential", "url"]
        .iter()
        .any(|s| leaf.contains(s))
}

/// What the factory does when the configured backend cannot start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(try_from = "String")]
pub enum FallbackPolicy {
    /// Run on the in-memory backend, warn loudly, report degraded health.
    #[default]
    Memory,
    /// Fail with the backend's error.
    Fail,
}

impl TryFrom<String> for FallbackPolicy {
    type Error = String;

    fn try_from(value: String) -> std::result::Result<Self, String> {
        match value.as_str() {
            "memory" => Ok(FallbackPolicy::Memory),
            "fail" => Ok(FallbackPolicy::Fail),
            _ => Err("expected one of: memory (run on memory, degraded), fail (stop)".into()),
        }
    }
}

/// `[task_store]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TaskStoreSettings {
    /// TTL of stored tasks in seconds (0 = none).
    pub ttl_seconds: Option<u64>,
    /// Namespace of tasks (default `task`).
    pub namespace: Option<String>,
}

impl TaskStoreSettings {
    /// The TTL given to stored tasks: `ttl_seconds` if set, else
    /// `backend_default` (the backend's seed TTL, such as `TA_REDIS_TTL`),
    /// else none. Zero means no TTL.
    pub fn ttl(&self, backend_default: Option<u64>) -> Option<Duration> {
        let secs = self.ttl_seconds.or(backend_default)?;
        (secs > 0).then(|| Duration::from_secs(secs))
    }

    /// The namespace tasks live in (`task` unless configured).
    pub fn namespace(&self) -> &str {
        self.namespace.as_deref().unwrap_or("task")
    }
}

/// `[streams]` (`STREAMING_BACKEND` sets `engine`, as in seed 003).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamsSettings {
    /// The engine of run event streams (`memory`, `redb`, `sled`, `redis`); absent:
    /// the documents' backend when it has streams, else memory, loudly.
    pub engine: Option<String>,
    /// Most events kept per stream (default 10,000).
    pub max_len: Option<u64>,
    /// Events older than this many seconds are removed (default: no limit).
    pub max_age_secs: Option<u64>,
}

impl StreamsSettings {
    /// The retention these settings ask for.
    pub fn retention(&self) -> crate::streams::Retention {
        let default = crate::streams::Retention::default();
        crate::streams::Retention {
            max_len: self.max_len.unwrap_or(default.max_len).max(1),
            max_age: self.max_age_secs.map(Duration::from_secs),
        }
    }
}

/// `[queue]`: the run queue (seed 003's `WORKER_HEARTBEAT_INTERVAL`,
/// `WORKER_HEARTBEAT_TTL` and `SWEEPER_INTERVAL` set the heartbeat, the
/// lease and the sweep; `TA_QUEUE_PENDING_TIMEOUT` the pending timeout).
/// Times are seconds, fractions allowed.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueSettings {
    /// The engine (`memory`, `redb`, `sled`, `redis`); absent: the
    /// documents' backend when it has a queue, else memory, loudly.
    pub engine: Option<String>,
    /// The queue's name (default `runs`): queues of different names share
    /// nothing.
    pub name: Option<String>,
    /// Seconds between a worker's heartbeats (default 30).
    pub heartbeat_interval_secs: Option<f64>,
    /// A lease's length in seconds, renewed by each heartbeat (default 60).
    pub heartbeat_ttl_secs: Option<f64>,
    /// Seconds between sweeps (default 120).
    pub sweeper_interval_secs: Option<f64>,
    /// A job claimable this many seconds without a claim fails (default: never).
    pub pending_timeout_secs: Option<f64>,
    /// Attempts before a job is dead-lettered (default 3).
    pub max_attempts: Option<u32>,
    /// Backoff after a first failure, in seconds, doubled per failure (default 1).
    pub backoff_secs: Option<f64>,
    /// The longest backoff in seconds (default 300).
    pub backoff_max_secs: Option<f64>,
    /// Seconds an ended job's status is kept (default 86,400).
    pub retain_ended_secs: Option<f64>,
    /// Aging step between priorities in seconds (default 60; see `Priority`).
    pub priority_step_secs: Option<f64>,
    /// Jobs one worker process runs at once (default 4).
    pub concurrency: Option<usize>,
}

/// The timing a worker and sweeper use, from [`QueueSettings`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueTiming {
    /// Between heartbeats.
    pub heartbeat_interval: Duration,
    /// A lease's length.
    pub lease: Duration,
    /// Between sweeps.
    pub sweeper_interval: Duration,
    /// Jobs one worker runs at once.
    pub concurrency: usize,
}

fn secs(key: &str, value: Option<f64>, default: Option<f64>) -> Result<Option<Duration>> {
    match value.or(default) {
        None => Ok(None),
        Some(v) => Duration::try_from_secs_f64(v)
            .ok()
            .filter(|d| !d.is_zero())
            .map(Some)
            .ok_or_else(|| Error::Config {
                key: format!("queue.{key}"),
                value: v.to_string(),
                reason: "expected a positive number of seconds".into(),
            }),
    }
}

impl QueueSettings {
    /// The queue's name.
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("runs")
    }

    /// The queue's rules, checked.
    pub fn options(&self) -> Result<crate::queue::QueueOptions> {
        let d = crate::queue::QueueOptions::default();
        if self.max_attempts == Some(0) {
            return Err(Error::Config {
                key: "queue.max_attempts".into(),
                value: "0".into(),
                reason: "expected at least 1".into(),
            });
        }
        Ok(crate::queue::QueueOptions {
            max_attempts: self.max_attempts.unwrap_or(d.max_attempts),
            backoff_base: secs("backoff_secs", self.backoff_secs, None)?.unwrap_or(d.backoff_base),
            backoff_max: secs("backoff_max_secs", self.backoff_max_secs, None)?
                .unwrap_or(d.backoff_max),
            pending_timeout: secs("pending_timeout_secs", self.pending_timeout_secs, None)?,
            retain_ended: secs("retain_ended_secs", self.retain_ended_secs, None)?
                .unwrap_or(d.retain_ended),
            priority_step: secs("priority_step_secs", self.priority_step_secs, None)?
                .unwrap_or(d.priority_step),
        })
    }

    /// Heartbeat, lease, sweep and concurrency, checked: the heartbeat
    /// must come well inside the lease (at most half of it).
    pub fn timing(&self) -> Result<QueueTiming> {
        let every = |k, v, d| secs(k, v, Some(d)).map(|d| d.expect("a default"));
        let timing = QueueTiming {
            heartbeat_interval: every(
                "heartbeat_interval_secs",
                self.heartbeat_interval_secs,
                30.0,
            )?,
            lease: every("heartbeat_ttl_secs", self.heartbeat_ttl_secs, 60.0)?,
            sweeper_interval: every("sweeper_interval_secs", self.sweeper_interval_secs, 120.0)?,
            concurrency: self.concurrency.unwrap_or(4),
        };
        if timing.heartbeat_interval * 2 > timing.lease {
            return Err(Error::Config {
                key: "queue.heartbeat_interval_secs".into(),
                value: timing.heartbeat_interval.as_secs_f64().to_string(),
                reason: format!(
                    "a heartbeat must come at most every half lease (heartbeat_ttl_secs = {}), or a slow beat loses the lease",
                    timing.lease.as_secs_f64()
                ),
            });
        }
        if timing.concurrency == 0 {
            return Err(Error::Config {
                key: "queue.concurrency".into(),
                value: "0".into(),
                reason: "expected at least 1".into(),
            });
        }
        Ok(timing)
    }
}

/// Layer names, from a TOML list or a comma-separated string.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LayerList(pub Vec<String>);

impl<'de> Deserialize<'de> for LayerList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            List(Vec<String>),
            Text(String),
        }
        Ok(LayerList(match Form::deserialize(d)? {
            Form::List(v) => v,
            Form::Text(t) => t
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
        }))
    }
}

/// A variable of the seed's naming that sets one key of its owner's table
/// (`TA_REDIS_HOST` sets `host` in `[redis]`). Seed variables are applied
/// after the file and the `TA_PERSISTENCE__TABLE__KEY` variables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeedVariable {
    /// The variable (`TA_REDIS_HOST`).
    pub name: &'static str,
    /// The key it sets, inside the owner's table (`host`).
    pub key: &'static str,
    /// Whether setting it, with no `backend` given, chooses its owner as
    /// the backend (the seed chose a custom backend by naming its module).
    pub selects_backend: bool,
    /// Whether an empty value is an error rather than "unset" (a pin or a
    /// guard, which an empty value would silently turn off).
    pub empty_is_error: bool,
}

impl SeedVariable {
    /// `name` sets `key` of the owner's table.
    pub const fn new(name: &'static str, key: &'static str) -> Self {
        SeedVariable {
            name,
            key,
            selects_backend: false,
            empty_is_error: false,
        }
    }

    /// Like [`SeedVariable::new`], and setting it alone chooses the owner.
    pub const fn selecting(name: &'static str, key: &'static str) -> Self {
        SeedVariable {
            name,
            key,
            selects_backend: true,
            empty_is_error: false,
        }
    }

    /// Like [`SeedVariable::new`], but set and empty is an error, never
    /// "unset" (for pins and guards).
    pub const fn never_empty(name: &'static str, key: &'static str) -> Self {
        SeedVariable {
            name,
            key,
            selects_backend: false,
            empty_is_error: true,
        }
    }
}
