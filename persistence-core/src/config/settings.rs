//! What can be configured, with its defaults.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::Secret;

/// The backends this project knows by name (a build may not include all).
pub const KNOWN_BACKENDS: [&str; 4] = ["memory", "sled", "redis", "plugin"];

/// All settings. Every field has a default, so an empty file is valid;
/// unknown keys are rejected so a typo does not silently fall back.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Which backend: `memory` (default), `sled`, `redis` or `plugin`.
    pub backend: String,
    /// What to do when the backend cannot start.
    pub fallback: FallbackPolicy,
    /// Typed task store settings.
    pub task_store: TaskStoreSettings,
    /// sled settings.
    pub sled: SledSettings,
    /// Redis settings.
    pub redis: RedisSettings,
    /// Plugin settings.
    pub plugin: PluginSettings,
    /// Resilience layers over the backend, listed from the backend outward
    /// (`["timeout", "retry", "circuit_breaker"]`, or `"timeout,retry"`).
    pub layers: LayerList,
    /// `[timeout]` layer settings.
    pub timeout: TimeoutSettings,
    /// `[retry]` layer settings.
    pub retry: RetrySettings,
    /// `[circuit_breaker]` layer settings.
    pub circuit_breaker: BreakerSettings,
    /// `[recovery_queue]` layer settings.
    pub recovery_queue: RecoverySettings,
    /// `[cache]` layer settings.
    pub cache: CacheSettings,
}

/// `[cache]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheSettings {
    /// Most documents kept in memory.
    pub capacity: usize,
    /// Namespaces loaded into the cache when the backend opens.
    pub preload: Vec<String>,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            capacity: 10_000,
            preload: Vec::new(),
        }
    }
}

/// `[recovery_queue]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecoverySettings {
    /// Most writes held while the backend is unavailable.
    pub capacity: usize,
    /// Retries of a CRITICAL write before its error goes to the caller.
    pub critical_retries: u32,
    /// First wait between CRITICAL retries, ms (doubling).
    pub backoff_ms: u64,
    /// Keep queued writes in this directory (a sled database) so they
    /// survive a restart of the host; absent = in memory only.
    pub spill_path: Option<PathBuf>,
}

impl Default for RecoverySettings {
    fn default() -> Self {
        RecoverySettings {
            capacity: 10_000,
            critical_retries: 3,
            backoff_ms: 100,
            spill_path: None,
        }
    }
}

/// Layer names, from a TOML list or a comma-separated string.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LayerList(pub Vec<String>);

impl<'de> Deserialize<'de> for LayerList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
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

/// The layers this build has.
pub const KNOWN_LAYERS: [&str; 5] = [
    "timeout",
    "retry",
    "circuit_breaker",
    "recovery_queue",
    "cache",
];

/// `[timeout]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeoutSettings {
    /// Deadline per call in ms (default 2000, as seed 002).
    pub ms: u64,
}

impl Default for TimeoutSettings {
    fn default() -> Self {
        TimeoutSettings { ms: 2000 }
    }
}

/// `[retry]` (seed 002: 3 retries, 1 s base, × 2).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrySettings {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// First wait, ms.
    pub base_ms: u64,
    /// Growth of each wait.
    pub factor: f64,
    /// Longest wait, ms.
    pub max_delay_ms: u64,
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            max_retries: 3,
            base_ms: 1000,
            factor: 2.0,
            max_delay_ms: 30_000,
        }
    }
}

/// `[circuit_breaker]` (seed 002: opens after 3 failures, probes after 300 s).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerSettings {
    /// Consecutive failures that open the circuit.
    pub failures: u32,
    /// Time open before a probe, ms.
    pub reset_ms: u64,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            failures: 3,
            reset_ms: 300_000,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            backend: "memory".into(),
            fallback: FallbackPolicy::default(),
            task_store: TaskStoreSettings::default(),
            sled: SledSettings::default(),
            redis: RedisSettings::default(),
            plugin: PluginSettings::default(),
            layers: LayerList::default(),
            timeout: TimeoutSettings::default(),
            retry: RetrySettings::default(),
            circuit_breaker: BreakerSettings::default(),
            recovery_queue: RecoverySettings::default(),
            cache: CacheSettings::default(),
        }
    }
}

impl Settings {
    /// The TTL given to stored tasks: `task_store.ttl_seconds` if set, else
    /// on Redis the seed's `TA_REDIS_TTL` (`redis.ttl`), else none.
    /// Zero means no TTL.
    pub fn task_ttl(&self) -> Option<Duration> {
        let secs = self
            .task_store
            .ttl_seconds
            .or(match self.backend.as_str() {
                "redis" => Some(self.redis.ttl),
                _ => None,
            })?;
        (secs > 0).then(|| Duration::from_secs(secs))
    }
}

/// What the factory does when the configured backend cannot start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FallbackPolicy {
    /// Run on the in-memory backend, warn loudly, report degraded health.
    #[default]
    Memory,
    /// Fail with the backend's error.
    Fail,
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
}

impl Default for SledSettings {
    fn default() -> Self {
        SledSettings {
            path: PathBuf::from("./data/sled"),
            flush_every_ms: None,
            flush_on_write: false,
        }
    }
}

/// `[redis]` (`TA_REDIS_*`, named as in the seed).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisSettings {
    /// A `redis://` or `rediss://` URL; overrides host, port, db, password and ssl.
    pub url: Option<Secret>,
    /// Host (`TA_REDIS_HOST`, default `localhost`).
    pub host: String,
    /// Port (`TA_REDIS_PORT`, default 6379).
    pub port: u16,
    /// Database number (`TA_REDIS_DB`, default 0).
    pub db: u32,
    /// TTL of tasks in seconds (`TA_REDIS_TTL`, default 3600; 0 = none).
    pub ttl: u64,
    /// Password (`TA_REDIS_PWD`).
    pub password: Option<Secret>,
    /// TLS (`TA_REDIS_SSL`): `true` means TLS on, `false` off.
    pub ssl: bool,
    /// PEM file of the CA that signed the server's certificate (private CAs).
    pub tls_ca_file: Option<PathBuf>,
    /// Key prefix (default `task_persistence`, the seed's layout).
    pub prefix: String,
    /// Longest wait to connect, in ms (default 2000, as in seed 002).
    pub connect_timeout_ms: u64,
    /// Longest wait for a reply, in ms (default 2000).
    pub command_timeout_ms: u64,
    /// Renew a task's TTL on every load (opt-in; default off, as the seed).
    pub sliding_ttl: bool,
    /// Redis Cluster seed nodes, `host:port,host:port`; set = cluster mode.
    pub cluster_nodes: Option<String>,
}

impl Default for RedisSettings {
    fn default() -> Self {
        RedisSettings {
            url: None,
            host: "localhost".into(),
            port: 6379,
            db: 0,
            ttl: 3600,
            password: None,
            ssl: false,
            tls_ca_file: None,
            prefix: "task_persistence".into(),
            connect_timeout_ms: 2000,
            command_timeout_ms: 2000,
            sliding_ttl: false,
            cluster_nodes: None,
        }
    }
}

/// `[plugin]` (`TA_PERSISTENCE_MODULE`, `TA_PERSISTENCE_CLASS`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginSettings {
    /// Path of the plugin library.
    pub module: Option<PathBuf>,
    /// Backend name inside the plugin (optional when it offers one).
    pub class: Option<String>,
    /// Expected SHA-256 of the library, hex (`TA_PERSISTENCE_MODULE_SHA256`).
    pub sha256: Option<String>,
    /// Options for the plugin's backend (`[plugin.options]`,
    /// `TA_PERSISTENCE__PLUGIN__OPTIONS__NAME`), passed to it as a JSON object.
    pub options: std::collections::BTreeMap<String, String>,
}
