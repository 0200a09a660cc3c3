//! The `[redis]` table, the seed's `TA_REDIS_*` variables, and the provider
//! that registers the Redis backend with the factory.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use persistence_core::config::{Secret, SeedVariable, Settings};
use persistence_core::factory::BackendProvider;
use persistence_core::{Result, SharedBackend};
use serde::Deserialize;

use crate::{RedisBackend, RedisOptions};

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
    /// Another system (the Python one) also writes the tasks (default
    /// true); `false` for a fleet of this library alone skips the work
    /// that keeps both systems' request index exact.
    pub other_writers: bool,
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
            other_writers: true,
            cluster_nodes: None,
        }
    }
}

impl RedisSettings {
    /// Parses `[redis]` and checks what the types cannot: a port is 1 to
    /// 65535.
    pub fn from_settings(settings: &Settings) -> Result<Self> {
        let r: RedisSettings = settings.table("redis")?;
        if r.port == 0 {
            return Err(settings.invalid("redis.port", "0", "expected a port from 1 to 65535"));
        }
        Ok(r)
    }
}

/// The seed's variables for `[redis]`.
pub const SEED_VARIABLES: &[SeedVariable] = &[
    SeedVariable::new("TA_REDIS_URL", "url"),
    SeedVariable::new("TA_REDIS_HOST", "host"),
    SeedVariable::new("TA_REDIS_PORT", "port"),
    SeedVariable::new("TA_REDIS_DB", "db"),
    SeedVariable::new("TA_REDIS_TTL", "ttl"),
    SeedVariable::new("TA_REDIS_PWD", "password"),
    SeedVariable::new("TA_REDIS_SSL", "ssl"),
];

/// Opens the Redis backend from the `[redis]` settings (`TA_REDIS_*`).
#[derive(Debug, Clone, Copy, Default)]
pub struct RedisProvider;

#[async_trait]
impl BackendProvider for RedisProvider {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn seed_variables(&self) -> &'static [SeedVariable] {
        SEED_VARIABLES
    }

    fn check(&self, settings: &Settings) -> Result<()> {
        RedisSettings::from_settings(settings).map(drop)
    }

    /// The seed's `TA_REDIS_TTL` (`redis.ttl`) is the TTL of tasks on Redis.
    fn default_task_ttl(&self, settings: &Settings) -> Result<Option<u64>> {
        Ok(Some(RedisSettings::from_settings(settings)?.ttl))
    }

    async fn open(&self, settings: &Settings) -> Result<SharedBackend> {
        let options = RedisOptions::from_settings(settings)?;
        Ok(Arc::new(RedisBackend::connect(options).await?))
    }

    /// Redis Streams, on a connection of their own to the same Redis.
    async fn open_streams(
        &self,
        settings: &Settings,
        retention: persistence_core::streams::Retention,
    ) -> Option<Result<persistence_core::streams::SharedStreams>> {
        let connected = match RedisOptions::from_settings(settings) {
            Ok(options) => RedisBackend::connect(options).await,
            Err(e) => Err(e),
        };
        Some(connected.map(|backend| {
            Arc::new(backend.streams(retention)) as persistence_core::streams::SharedStreams
        }))
    }

    /// The queue `queue.name` on the same Redis, on a connection of its own.
    async fn open_queue(
        &self,
        settings: &Settings,
        options: persistence_core::queue::QueueOptions,
    ) -> Option<Result<persistence_core::queue::SharedQueue>> {
        let connected = match RedisOptions::from_settings(settings) {
            Ok(options) => RedisBackend::connect(options).await,
            Err(e) => Err(e),
        };
        Some(connected.map(|backend| {
            Arc::new(backend.queue(settings.queue.name(), options))
                as persistence_core::queue::SharedQueue
        }))
    }
}
