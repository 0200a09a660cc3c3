//! How to reach Redis: the options a backend connects with.

use std::fmt;
use std::time::Duration;

use crate::RedisSettings;
use persistence_core::config::{Secret, Settings};
use persistence_core::{Error, Result};
use redis::{ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo, RedisError};

/// How to reach Redis and lay out keys.
#[derive(Clone)]
pub struct RedisOptions {
    /// A `redis://` or `rediss://` URL; when set, host, port, db, password
    /// and ssl are ignored.
    pub url: Option<Secret>,
    /// Host name.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Database number.
    pub db: u32,
    /// Password (`AUTH`).
    pub password: Option<Secret>,
    /// TLS (`rediss`, rustls with the system's root certificates).
    pub ssl: bool,
    /// A PEM file of the CA that signed the server's certificate, for
    /// servers whose CA is not among the system's roots.
    pub tls_ca_file: Option<std::path::PathBuf>,
    /// Key prefix (`task_persistence`, the seed's).
    pub prefix: String,
    /// The namespace whose keys follow the seed's layout (`task`).
    pub seed_namespace: String,
    /// Whether another system (the Python one) also writes the seed
    /// namespace (default true: that is what its layout is for). Then
    /// writes and lookups there read a task's JSON when it changed behind
    /// this library's back, so each system's request index stays exact
    /// (`docs/redis.md`, Mixed fleets); `false` skips that work.
    pub other_writers: bool,
    /// Longest wait to connect.
    pub connect_timeout: Duration,
    /// Longest wait for a reply.
    pub command_timeout: Duration,
    /// Renew a document's TTL to this on every read (opt-in sliding TTL).
    pub sliding_ttl: Option<Duration>,
    /// Redis Cluster seed nodes (`host:port`); when not empty, the backend
    /// talks to a cluster and `host`/`port`/`url`/`db` are not used.
    pub cluster_nodes: Vec<String>,
}

impl RedisOptions {
    /// Options for `host:port` with the defaults of seed 002: database 0,
    /// no password, no TLS, 2 s timeouts, the seed's key layout.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        RedisOptions {
            url: None,
            host: host.into(),
            port,
            db: 0,
            password: None,
            ssl: false,
            tls_ca_file: None,
            prefix: "task_persistence".into(),
            seed_namespace: "task".into(),
            other_writers: true,
            connect_timeout: Duration::from_secs(2),
            command_timeout: Duration::from_secs(2),
            sliding_ttl: None,
            cluster_nodes: Vec::new(),
        }
    }

    /// The options the settings describe (`[redis]`, `TA_REDIS_*`, and
    /// the task store's namespace and TTL).
    pub fn from_settings(settings: &Settings) -> Result<Self> {
        let r = RedisSettings::from_settings(settings)?;
        let task_ttl = settings.task_store.ttl(Some(r.ttl));
        Ok(RedisOptions {
            url: r.url.clone(),
            host: r.host.clone(),
            port: r.port,
            db: r.db,
            password: r.password.clone(),
            ssl: r.ssl,
            tls_ca_file: r.tls_ca_file.clone(),
            prefix: r.prefix.clone(),
            seed_namespace: settings.task_store.namespace().to_string(),
            other_writers: r.other_writers,
            connect_timeout: Duration::from_millis(r.connect_timeout_ms),
            command_timeout: Duration::from_millis(r.command_timeout_ms),
            sliding_ttl: r.sliding_ttl.then_some(task_ttl).flatten(),
            cluster_nodes: r
                .cluster_nodes
                .as_deref()
                .unwrap_or("")
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
        })
    }

    /// Where it connects, for messages: `redis://host:port/db` or
    /// `rediss://...`, never with credentials.
    pub fn endpoint(&self) -> String {
        if !self.cluster_nodes.is_empty() {
            return format!("the cluster at {}", self.cluster_nodes.join(","));
        }
        match &self.url {
            Some(_) => "the configured redis.url".into(),
            None => {
                let scheme = if self.ssl { "rediss" } else { "redis" };
                format!("{scheme}://{}:{}/{}", self.host, self.port, self.db)
            }
        }
    }

    /// The CA certificate to trust, read from `tls_ca_file` (TLS only).
    pub(crate) fn tls_root(&self) -> Result<Option<redis::TlsCertificates>> {
        let Some(path) = self.tls_ca_file.as_ref().filter(|_| self.ssl) else {
            return Ok(None);
        };
        let pem = std::fs::read(path).map_err(|e| Error::Config {
            key: "redis.tls_ca_file".into(),
            value: path.display().to_string(),
            reason: format!("cannot read the CA certificate: {e}"),
        })?;
        Ok(Some(redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(pem),
        }))
    }

    /// The client's connection info: TLS exactly when `ssl` is true.
    pub fn connection_info(&self) -> Result<redis::ConnectionInfo> {
        if let Some(url) = &self.url {
            return url
                .expose()
                .into_connection_info()
                .map_err(|e| Error::Config {
                    key: "redis.url".into(),
                    value: "***".into(),
                    reason: format!("not a valid redis:// or rediss:// URL ({})", e.kind_name()),
                });
        }
        let addr = if self.ssl {
            ConnectionAddr::TcpTls {
                host: self.host.clone(),
                port: self.port,
                insecure: false,
                tls_params: None,
            }
        } else {
            ConnectionAddr::Tcp(self.host.clone(), self.port)
        };
        let mut redis = RedisConnectionInfo::default().set_db(i64::from(self.db));
        if let Some(pw) = &self.password {
            redis = redis.set_password(pw.expose());
        }
        let info = addr.into_connection_info().map_err(|e| Error::Config {
            key: "redis.host".into(),
            value: self.host.clone(),
            reason: e.to_string(),
        })?;
        Ok(info.set_redis_settings(redis))
    }
}

impl fmt::Debug for RedisOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisOptions")
            .field("endpoint", &self.endpoint())
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("prefix", &self.prefix)
            .field("seed_namespace", &self.seed_namespace)
            .field("other_writers", &self.other_writers)
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("sliding_ttl", &self.sliding_ttl)
            .field("cluster_nodes", &self.cluster_nodes)
            .finish()
    }
}

/// Small name for an error kind, for messages that must not echo input.
pub(crate) trait KindName {
    fn kind_name(&self) -> String;
}

impl KindName for RedisError {
    fn kind_name(&self) -> String {
        format!("{:?}", self.kind())
    }
}
