//! The Redis backend: shared state for many processes, in the Python
//! system's key layout so both can use one Redis.
//!
//! Every write is one Lua script (insert-if-absent, replace-if-present,
//! remove-if-present with their index changes and TTL), called with EVALSHA
//! and loaded on NOSCRIPT, so there is no check-then-set race and no gap
//! between a write and its `PEXPIRE`. Reads are one script too, so a value
//! and its version always belong together. The connection is a tokio
//! [`ConnectionManager`](redis::aio::ConnectionManager): multiplexed, it
//! pipelines concurrent calls and reconnects by itself. Key layout:
//! [`layout`] and `docs/redis.md`.
#![warn(missing_docs, missing_debug_implementations)]

mod cluster;
mod conn;
pub mod layout;
mod scripts;
mod slots;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use persistence_core::backend::{
    Backend, Capabilities, Document, DocumentWrite, Health, HealthStatus, IndexTerm, Precondition,
    Put, Remove, ScanOrder, ScanPage, ScanRequest, Version,
};
use persistence_core::config::{Secret, Settings};
use persistence_core::factory::BackendProvider;
use persistence_core::{Error, Result, SharedBackend};
use redis::aio::ConnectionManagerConfig;
use redis::{ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo, RedisError};

use conn::Conn;
pub use layout::Layout;

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
            connect_timeout: Duration::from_secs(2),
            command_timeout: Duration::from_secs(2),
            sliding_ttl: None,
            cluster_nodes: Vec::new(),
        }
    }

    /// The options the settings describe (`[redis]`, `TA_REDIS_*`).
    pub fn from_settings(settings: &Settings) -> Self {
        let r = &settings.redis;
        RedisOptions {
            url: r.url.clone(),
            host: r.host.clone(),
            port: r.port,
            db: r.db,
            password: r.password.clone(),
            ssl: r.ssl,
            tls_ca_file: r.tls_ca_file.clone(),
            prefix: r.prefix.clone(),
            seed_namespace: settings
                .task_store
                .namespace
                .clone()
                .unwrap_or_else(|| "task".into()),
            connect_timeout: Duration::from_millis(r.connect_timeout_ms),
            command_timeout: Duration::from_millis(r.command_timeout_ms),
            sliding_ttl: r.sliding_ttl.then(|| settings.task_ttl()).flatten(),
            cluster_nodes: r
                .cluster_nodes
                .as_deref()
                .unwrap_or("")
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
        }
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
    fn tls_root(&self) -> Result<Option<redis::TlsCertificates>> {
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
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("sliding_ttl", &self.sliding_ttl)
            .field("cluster_nodes", &self.cluster_nodes)
            .finish()
    }
}

/// Small name for an error kind, for messages that must not echo input.
trait KindName {
    fn kind_name(&self) -> String;
}

impl KindName for RedisError {
    fn kind_name(&self) -> String {
        format!("{:?}", self.kind())
    }
}

/// The Redis backend. Cheap to clone; clones share one multiplexed connection.
#[derive(Clone)]
pub struct RedisBackend {
    con: Conn,
    layout: Layout,
    options: Arc<RedisOptions>,
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

fn pre_arg(pre: Precondition) -> (&'static str, u64) {
    match pre {
        Precondition::Any => ("any", 0),
        Precondition::Absent => ("absent", 0),
        Precondition::Present => ("present", 0),
        Precondition::Version(v) => ("version", v.0),
    }
}

fn ttl_ms(ttl: Option<Duration>) -> u64 {
    ttl.map_or(0, |t| (t.as_millis() as u64).max(1))
}

/// A GET script reply: value, version, created, pttl.
type GetReply = Option<(Vec<u8>, u64, u64, i64)>;

fn document((value, version, created, pttl): (Vec<u8>, u64, u64, i64)) -> Document {
    Document {
        value: Bytes::from(value),
        version: Version(version),
        created,
        expires_at: (pttl > 0).then(|| SystemTime::now() + Duration::from_millis(pttl as u64)),
    }
}

impl RedisBackend {
    /// Connects (within the connect timeout) and checks the server answers.
    ///
    /// Errors: `Config` for unusable settings, `Unavailable` (naming the
    /// endpoint, never the password) when the server cannot be reached or
    /// refuses the credentials.
    pub async fn connect(options: RedisOptions) -> Result<Self> {
        if options.seed_namespace.starts_with('~') || options.seed_namespace == layout::SEED_INDEX {
            return Err(Error::Config {
                key: "task_store.namespace".into(),
                value: options.seed_namespace.clone(),
                reason:
                    "names starting with ~, and request_index, are reserved in the Redis layout"
                        .into(),
            });
        }
        let con = if options.cluster_nodes.is_empty() {
            Self::connect_single(&options).await?
        } else {
            Self::connect_cluster(&options).await?
        };
        let layout = match con {
            Conn::Single(_) => Layout::new(&options.prefix, &options.seed_namespace),
            Conn::Cluster(_) => Layout::for_cluster(&options.prefix, &options.seed_namespace),
        };
        let backend = RedisBackend {
            con,
            layout,
            options: Arc::new(options),
        };
        let mut con = backend.con.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut con)
            .await
            .map_err(|e| connect_error(&backend.options, &e))?;
        Ok(backend)
    }

    async fn connect_single(options: &RedisOptions) -> Result<Conn> {
        let info = options.connection_info()?;
        let client = match options.tls_root()? {
            Some(certs) => redis::Client::build_with_tls(info, certs),
            None => redis::Client::open(info),
        }
        .map_err(|e| Error::Config {
            key: "redis".into(),
            value: options.endpoint(),
            reason: e.kind_name(),
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.connect_timeout))
            .set_response_timeout(Some(options.command_timeout))
            .set_number_of_retries(2);
        let connecting = client.get_connection_manager_with_config(config);
        Ok(Conn::Single(
            within_connect_timeout(options, connecting).await?,
        ))
    }

    async fn connect_cluster(options: &RedisOptions) -> Result<Conn> {
        let scheme = if options.ssl { "rediss" } else { "redis" };
        let nodes: Vec<String> = options
            .cluster_nodes
            .iter()
            .map(|n| format!("{scheme}://{n}"))
            .collect();
        let mut builder = redis::cluster::ClusterClientBuilder::new(nodes)
            .connection_timeout(options.connect_timeout)
            .response_timeout(options.command_timeout);
        if let Some(pw) = &options.password {
            builder = builder.password(pw.expose());
        }
        if let Some(certs) = options.tls_root()? {
            builder = builder.certs(certs);
        }
        let client = builder.build().map_err(|e| Error::Config {
            key: "redis.cluster_nodes".into(),
            value: options.cluster_nodes.join(","),
            reason: e.kind_name(),
        })?;
        let connecting = client.get_async_connection();
        Ok(Conn::Cluster(
            within_connect_timeout(options, connecting).await?,
        ))
    }

    /// Up to `n` `(key, created)` after the creation cursor `{created}:{key}`.
    /// Stamps can tie on a cluster (they come from each node's clock), so
    /// the cursor names the key too and ties resume in member order.
    async fn created_after(
        &self,
        ns: &str,
        cursor: Option<&str>,
        n: usize,
    ) -> Result<Vec<(String, u64)>> {
        let after: Option<(u64, String)> = match cursor {
            None => None,
            Some(c) => {
                let (score, key) = c.split_once(':').ok_or_else(|| {
                    Error::InvalidInput(format!("scan cursor {c:?} is not a creation cursor"))
                })?;
                let score = score.parse().map_err(|_| {
                    Error::InvalidInput(format!("scan cursor {c:?} is not a creation cursor"))
                })?;
                Some((score, key.to_string()))
            }
        };
        let start = after
            .as_ref()
            .map_or("-inf".to_string(), |(s, _)| s.to_string());
        let mut con = self.con.clone();
        let mut out = Vec::with_capacity(n);
        let mut offset = 0;
        loop {
            let batch: Vec<(String, u64)> = redis::cmd("ZRANGEBYSCORE")
                .arg(self.layout.by_created(ns))
                .arg(&start)
                .arg("+inf")
                .arg("WITHSCORES")
                .arg("LIMIT")
                .arg(offset)
                .arg(n)
                .query_async(&mut con)
                .await
                .map_err(|e| self.error("scan", e))?;
            let fetched = batch.len();
            for (k, s) in batch {
                let done = after
                    .as_ref()
                    .is_some_and(|(as_, ak)| s < *as_ || s == *as_ && k <= *ak);
                if !done && out.len() < n {
                    out.push((k, s));
                }
            }
            if out.len() == n || fetched < n {
                return Ok(out);
            }
            offset += fetched;
        }
    }

    fn is_cluster(&self) -> bool {
        matches!(self.con, Conn::Cluster(_))
    }

    /// The key layout in use.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Deletes every key of `ns` (documents, metadata, indexes, orders) with
    /// `SCAN` + `UNLINK`, never `KEYS`, and returns how many keys it removed.
    pub async fn clear_namespace(&self, ns: &str) -> Result<u64> {
        if self.is_cluster() {
            return self.clear_cluster(ns).await;
        }
        let mut con = self.con.clone();
        let mut removed = 0u64;
        for pattern in self.layout.patterns(ns) {
            let mut cursor: u64 = 0;
            loop {
                let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(500)
                    .query_async(&mut con)
                    .await
                    .map_err(|e| self.error("clear_namespace", e))?;
                if !keys.is_empty() {
                    let n: u64 = redis::cmd("UNLINK")
                        .arg(&keys)
                        .query_async(&mut con)
                        .await
                        .map_err(|e| self.error("clear_namespace", e))?;
                    removed += n;
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(removed)
    }

    fn error(&self, operation: &str, e: RedisError) -> Error {
        if e.is_timeout() {
            Error::Timeout {
                operation: format!("redis {operation}"),
                after: self.options.command_timeout,
            }
        } else if e.is_io_error()
            || e.is_connection_refusal()
            || e.is_connection_dropped()
            || e.is_unrecoverable_error()
        {
            Error::Unavailable {
                backend: "redis".into(),
                reason: format!("{operation} on {}: {e}", self.options.endpoint()),
            }
        } else {
            Error::Internal {
                backend: "redis".into(),
                message: format!("{operation}: {e}"),
            }
        }
    }

    fn get_invocation(&self, ns: &str, key: &str) -> redis::ScriptInvocation<'static> {
        let mut inv = scripts::GET.prepare_invoke();
        inv.key(self.layout.doc(ns, key))
            .key(self.layout.meta(ns, key))
            .arg(ttl_ms(self.options.sliding_ttl));
        inv
    }

    fn put_invocation(
        &self,
        ns: &str,
        key: &str,
        write: &DocumentWrite,
        precondition: Precondition,
    ) -> redis::ScriptInvocation<'static> {
        let index_keys: Vec<String> = IndexTerm::dedup(write.index.clone())
            .iter()
            .map(|t| self.layout.index(ns, &t.index, &t.term))
            .collect();
        let terms_json = serde_json::to_string(&index_keys).expect("strings encode");
        let (pre, expected) = pre_arg(precondition);
        let mut inv = scripts::PUT.prepare_invoke();
        inv.key(self.layout.doc(ns, key))
            .key(self.layout.meta(ns, key))
            .key(self.layout.by_key(ns))
            .key(self.layout.by_created(ns));
        for k in &index_keys {
            inv.key(k);
        }
        inv.arg(key)
            .arg(&write.value[..])
            .arg(pre)
            .arg(expected)
            .arg(ttl_ms(write.ttl))
            .arg(terms_json);
        inv
    }

    fn remove_invocation(
        &self,
        ns: &str,
        key: &str,
        precondition: Precondition,
    ) -> redis::ScriptInvocation<'static> {
        let (pre, expected) = pre_arg(precondition);
        let mut inv = scripts::REMOVE.prepare_invoke();
        inv.key(self.layout.doc(ns, key))
            .key(self.layout.meta(ns, key))
            .key(self.layout.by_key(ns))
            .key(self.layout.by_created(ns))
            .arg(key)
            .arg(pre)
            .arg(expected);
        inv
    }

    /// What a script's status word means: `ok` gives its number back, the
    /// others are the contract's errors (`number` is then the stored version).
    fn script_status(
        ns: &str,
        key: &str,
        precondition: Precondition,
        status: &str,
        number: u64,
        op: &str,
    ) -> Result<u64> {
        match status {
            "ok" => Ok(number),
            "exists" => Err(Error::AlreadyExists {
                namespace: ns.into(),
                key: key.into(),
            }),
            "missing" => Err(Error::NotFound {
                namespace: ns.into(),
                key: key.into(),
            }),
            "conflict" => Err(Error::Conflict {
                namespace: ns.into(),
                key: key.into(),
                expected: match precondition {
                    Precondition::Version(v) => v,
                    _ => Version(0),
                },
                actual: Version(number),
            }),
            other => Err(Error::Internal {
                backend: "redis".into(),
                message: format!("{op} script answered {other}"),
            }),
        }
    }

    fn put_result(
        ns: &str,
        key: &str,
        precondition: Precondition,
        reply: (String, u64, u64),
    ) -> Result<Version> {
        let (status, version, _created) = reply;
        Self::script_status(ns, key, precondition, &status, version, "put").map(Version)
    }

    fn remove_result(
        ns: &str,
        key: &str,
        precondition: Precondition,
        reply: (String, u64),
    ) -> Result<bool> {
        let (status, n) = reply;
        Self::script_status(ns, key, precondition, &status, n, "remove").map(|n| n == 1)
    }

    /// Runs a pipeline of script calls, loading the scripts once if the
    /// server lost them (restart, `SCRIPT FLUSH`).
    async fn pipeline<T: redis::FromRedisValue>(
        &self,
        operation: &str,
        pipe: &redis::Pipeline,
    ) -> Result<T> {
        let mut con = self.con.clone();
        match pipe.query_async(&mut con).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                for script in [
                    &*scripts::GET,
                    &*scripts::PUT,
                    &*scripts::REMOVE,
                    &*scripts::LOOKUP,
                ] {
                    script
                        .load_async(&mut con)
                        .await
                        .map_err(|e| self.error(operation, e))?;
                }
                pipe.query_async(&mut con)
                    .await
                    .map_err(|e| self.error(operation, e))
            }
            other => other.map_err(|e| self.error(operation, e)),
        }
    }
}

/// Waits for a connection at most twice the connect timeout (the client
/// may try more than one address); a failure names the endpoint.
async fn within_connect_timeout<C>(
    options: &RedisOptions,
    connecting: impl std::future::Future<Output = redis::RedisResult<C>>,
) -> Result<C> {
    match tokio::time::timeout(options.connect_timeout * 2, connecting).await {
        Ok(Ok(con)) => Ok(con),
        Ok(Err(e)) => Err(connect_error(options, &e)),
        Err(_) => Err(Error::Unavailable {
            backend: "redis".into(),
            reason: format!(
                "no connection to {} within {:?}",
                options.endpoint(),
                options.connect_timeout * 2
            ),
        }),
    }
}

fn connect_error(options: &RedisOptions, e: &RedisError) -> Error {
    let reason = if e.kind() == redis::ErrorKind::AuthenticationFailed
        || e.to_string().contains("WRONGPASS")
        || e.to_string().contains("NOAUTH")
    {
        format!(
            "{} refused the credentials (check redis.password / TA_REDIS_PWD)",
            options.endpoint()
        )
    } else {
        format!("cannot connect to {}: {e}", options.endpoint())
    };
    Error::Unavailable {
        backend: "redis".into(),
        reason,
    }
}

#[async_trait]
impl Backend for RedisBackend {
    fn name(&self) -> &str {
        "redis"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            ttl: true,
            scan: true,
            scan_by_creation: true,
            count: false,
            native_batch: !self.is_cluster(),
            atomic_index: !self.is_cluster(),
            durable: true,
        }
    }

    async fn get(&self, namespace: &str, key: &str) -> Result<Option<Document>> {
        let mut con = self.con.clone();
        let reply: GetReply = self
            .get_invocation(namespace, key)
            .invoke_async(&mut con)
            .await
            .map_err(|e| self.error("get", e))?;
        Ok(reply.map(document))
    }

    async fn get_value(&self, namespace: &str, key: &str) -> Result<Option<Bytes>> {
        if self.options.sliding_ttl.is_some() {
            // reads renew the TTL: that takes the script
            return Ok(self.get(namespace, key).await?.map(|d| d.value));
        }
        let mut con = self.con.clone();
        let value: Option<Vec<u8>> = redis::cmd("GET")
            .arg(self.layout.doc(namespace, key))
            .query_async(&mut con)
            .await
            .map_err(|e| self.error("get", e))?;
        Ok(value.map(Bytes::from))
    }

    async fn put(
        &self,
        namespace: &str,
        key: &str,
        write: DocumentWrite,
        precondition: Precondition,
    ) -> Result<Version> {
        if self.is_cluster() {
            return self.put_cluster(namespace, key, &write, precondition).await;
        }
        let mut con = self.con.clone();
        let reply = self
            .put_invocation(namespace, key, &write, precondition)
            .invoke_async(&mut con)
            .await
            .map_err(|e| self.error("put", e))?;
        Self::put_result(namespace, key, precondition, reply)
    }

    async fn remove(&self, namespace: &str, key: &str, precondition: Precondition) -> Result<bool> {
        precondition.check_removal(namespace, key)?;
        if self.is_cluster() {
            return self.remove_cluster(namespace, key, precondition).await;
        }
        let mut con = self.con.clone();
        let reply = self
            .remove_invocation(namespace, key, precondition)
            .invoke_async(&mut con)
            .await
            .map_err(|e| self.error("remove", e))?;
        Self::remove_result(namespace, key, precondition, reply)
    }

    async fn lookup(&self, namespace: &str, index: &str, term: &str) -> Result<Vec<String>> {
        if self.is_cluster() {
            return self.lookup_cluster(namespace, index, term).await;
        }
        let mut con = self.con.clone();
        let flat: Vec<redis::Value> = scripts::LOOKUP
            .key(self.layout.index(namespace, index, term))
            .arg(self.layout.doc_prefix(namespace))
            .arg(self.layout.meta_prefix(namespace))
            .invoke_async(&mut con)
            .await
            .map_err(|e| self.error("lookup", e))?;
        let mut hits: Vec<(u64, String)> = Vec::with_capacity(flat.len() / 2);
        for pair in flat.chunks(2) {
            let parsed: Option<(u64, String)> = match pair {
                [c, k] => redis::from_redis_value(c.clone())
                    .ok()
                    .zip(redis::from_redis_value(k.clone()).ok()),
                _ => None,
            };
            let hit = parsed.ok_or_else(|| Error::Internal {
                backend: "redis".into(),
                message: "lookup script answered an odd reply".into(),
            })?;
            hits.push(hit);
        }
        hits.sort();
        Ok(hits.into_iter().map(|(_, k)| k).collect())
    }

    async fn scan(&self, namespace: &str, request: ScanRequest) -> Result<ScanPage> {
        let limit = request.limit.max(1);
        let mut con = self.con.clone();
        let candidates: Vec<(String, u64)> = match request.order {
            ScanOrder::Key => {
                let start = request
                    .cursor
                    .as_ref()
                    .map_or("-".to_string(), |c| format!("({c}"));
                let keys: Vec<String> = redis::cmd("ZRANGE")
                    .arg(self.layout.by_key(namespace))
                    .arg(start)
                    .arg("+")
                    .arg("BYLEX")
                    .arg("LIMIT")
                    .arg(0)
                    .arg(limit + 1)
                    .query_async(&mut con)
                    .await
                    .map_err(|e| self.error("scan", e))?;
                keys.into_iter().map(|k| (k, 0)).collect()
            }
            ScanOrder::Created => {
                self.created_after(namespace, request.cursor.as_deref(), limit + 1)
                    .await?
            }
        };
        let more = candidates.len() > limit;
        let page: Vec<(String, u64)> = candidates.into_iter().take(limit).collect();
        let cursor = more.then(|| match request.order {
            ScanOrder::Key => page.last().map(|(k, _)| k.clone()),
            ScanOrder::Created => page.last().map(|(k, c)| format!("{c}:{k}")),
        });
        let keys: Vec<String> = page.into_iter().map(|(k, _)| k).collect();
        let docs = self.get_many(namespace, &keys).await;
        let mut entries = Vec::with_capacity(keys.len());
        for (key, doc) in keys.into_iter().zip(docs) {
            // members whose document expired are skipped (and cleaned on delete)
            if let Some(doc) = doc? {
                entries.push((key, doc));
            }
        }
        Ok(ScanPage {
            entries,
            cursor: cursor.flatten(),
        })
    }

    async fn get_many(&self, namespace: &str, keys: &[String]) -> Vec<Result<Option<Document>>> {
        if self.is_cluster() {
            // keys of a batch live in different slots: concurrent calls instead
            let calls = keys.iter().map(|k| self.get(namespace, k));
            return futures::future::join_all(calls).await;
        }
        let mut pipe = redis::pipe();
        for key in keys {
            pipe.invoke_script(&self.get_invocation(namespace, key));
        }
        match self.pipeline::<Vec<GetReply>>("get_many", &pipe).await {
            Ok(replies) => replies.into_iter().map(|r| Ok(r.map(document))).collect(),
            Err(e) => keys.iter().map(|_| Err(e.clone())).collect(),
        }
    }

    async fn put_many(&self, namespace: &str, puts: Vec<Put>) -> Vec<Result<Version>> {
        if self.is_cluster() {
            let calls = puts
                .into_iter()
                .map(|p| async move { self.put(namespace, &p.key, p.write, p.precondition).await });
            return futures::future::join_all(calls).await;
        }
        let mut pipe = redis::pipe();
        for p in &puts {
            pipe.invoke_script(&self.put_invocation(namespace, &p.key, &p.write, p.precondition));
        }
        match self
            .pipeline::<Vec<(String, u64, u64)>>("put_many", &pipe)
            .await
        {
            Ok(replies) => puts
                .iter()
                .zip(replies)
                .map(|(p, r)| Self::put_result(namespace, &p.key, p.precondition, r))
                .collect(),
            Err(e) => puts.iter().map(|_| Err(e.clone())).collect(),
        }
    }

    async fn remove_many(&self, namespace: &str, removes: Vec<Remove>) -> Vec<Result<bool>> {
        if self.is_cluster() {
            let calls = removes
                .iter()
                .map(|r| self.remove(namespace, &r.key, r.precondition));
            return futures::future::join_all(calls).await;
        }
        let mut out: Vec<Option<Result<bool>>> = Vec::with_capacity(removes.len());
        let mut pipe = redis::pipe();
        let mut sent = Vec::new();
        for (i, r) in removes.iter().enumerate() {
            if let Err(e) = r.precondition.check_removal(namespace, &r.key) {
                out.push(Some(Err(e)));
            } else {
                out.push(None);
                sent.push(i);
                pipe.invoke_script(&self.remove_invocation(namespace, &r.key, r.precondition));
            }
        }
        if !sent.is_empty() {
            match self
                .pipeline::<Vec<(String, u64)>>("remove_many", &pipe)
                .await
            {
                Ok(replies) => {
                    for (i, reply) in sent.into_iter().zip(replies) {
                        let r = &removes[i];
                        out[i] = Some(Self::remove_result(
                            namespace,
                            &r.key,
                            r.precondition,
                            reply,
                        ));
                    }
                }
                Err(e) => {
                    for i in sent {
                        out[i] = Some(Err(e.clone()));
                    }
                }
            }
        }
        out.into_iter()
            .map(|r| r.expect("every removal answered"))
            .collect()
    }

    async fn health(&self) -> Health {
        let mut con = self.con.clone();
        let started = Instant::now();
        let ping: std::result::Result<String, RedisError> =
            redis::cmd("PING").query_async(&mut con).await;
        let latency = started.elapsed();
        let mut health = match ping {
            Ok(_) => Health::ok("redis", format!("redis at {}", self.options.endpoint())),
            Err(e) => Health {
                status: HealthStatus::Down,
                backend: "redis".into(),
                message: self.error("ping", e).to_string(),
                latency_ms: None,
                details: Default::default(),
            },
        };
        if health.status == HealthStatus::Down {
            return health;
        }
        health.latency_ms = Some(latency.as_secs_f64() * 1e3);
        if let Ok(info) = redis::cmd("INFO")
            .arg("server")
            .query_async::<String>(&mut con)
            .await
        {
            if let Some(v) = info.lines().find_map(|l| l.strip_prefix("redis_version:")) {
                health
                    .details
                    .insert("server_version".into(), v.trim().to_string());
            }
        }
        let pattern = layout::glob_escape(&format!("{}:", self.layout.prefix())) + "*";
        let mut cursor = 0u64;
        let mut found = false;
        for _ in 0..20 {
            let scanned: std::result::Result<(u64, Vec<String>), _> = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut con)
                .await;
            let Ok((next, keys)) = scanned else { break };
            found |= !keys.is_empty();
            if found || next == 0 {
                break;
            }
            cursor = next;
        }
        health
            .details
            .insert("prefix".into(), self.layout.prefix().to_string());
        health
            .details
            .insert("prefix_in_use".into(), found.to_string());
        health
    }
}

/// Opens the Redis backend from the `[redis]` settings (`TA_REDIS_*`).
#[derive(Debug, Clone, Copy, Default)]
pub struct RedisProvider;

#[async_trait]
impl BackendProvider for RedisProvider {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn open(&self, settings: &Settings) -> Result<SharedBackend> {
        Ok(Arc::new(
            RedisBackend::connect(RedisOptions::from_settings(settings)).await?,
        ))
    }
}
