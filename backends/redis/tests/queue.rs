//! The queue conformance cases on Redis: a single server and a 3-master
//! cluster started by the test, each case on a queue of its own.

use std::sync::LazyLock;

use redis_test_server::{RedisCluster, RedisServer};

static SERVER: LazyLock<RedisServer> = LazyLock::new(RedisServer::start);
static CLUSTER: LazyLock<RedisCluster> = LazyLock::new(|| RedisCluster::start(3));

fn name() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "queue-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

mod single {
    persistence_conformance::queue_conformance_tests!(|options| async move {
        let backend = persistence_redis::RedisBackend::connect(
            persistence_redis::RedisOptions::new("127.0.0.1", super::SERVER.port()),
        )
        .await
        .expect("connect");
        std::sync::Arc::new(backend.queue(&super::name(), options))
            as persistence_core::queue::SharedQueue
    });
}

mod cluster {
    persistence_conformance::queue_conformance_tests!(|options| async move {
        let mut redis = persistence_redis::RedisOptions::new("unused", 0);
        redis.cluster_nodes = super::CLUSTER
            .urls()
            .iter()
            .map(|u| u.trim_start_matches("redis://").to_string())
            .collect();
        let backend = persistence_redis::RedisBackend::connect(redis)
            .await
            .expect("connect");
        std::sync::Arc::new(backend.queue(&super::name(), options))
            as persistence_core::queue::SharedQueue
    });
}
