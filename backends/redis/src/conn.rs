//! Connecting: one connection type for a single server and for a
//! cluster, and how a backend opens it within its timeouts.

use std::sync::Arc;

use persistence_core::{Error, Result};
use redis::aio::{ConnectionLike, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisError, RedisFuture, Value};

use crate::backend::RedisBackend;
use crate::coalesce::Coalescing;
use crate::layout::{self, Layout};
use crate::options::{KindName, RedisOptions};

/// A multiplexed connection to a single server (reconnecting by itself) or
/// to a cluster (routing each command to the node of its key's slot).
#[derive(Clone)]
pub enum Conn {
    /// One server.
    Single(Coalescing),
    /// Redis Cluster.
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
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
        }
        .with_other_writers(options.other_writers);
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
        Ok(Conn::Single(Coalescing::new(
            within_connect_timeout(options, connecting).await?,
        )))
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
