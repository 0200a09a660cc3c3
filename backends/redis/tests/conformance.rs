//! The conformance suite against a real redis-server started by the test
//! (one server for the whole file; every case uses namespaces of its own).

use std::sync::LazyLock;

use persistence_redis::{RedisBackend, RedisOptions};
use redis_test_server::RedisServer;

static SERVER: LazyLock<RedisServer> = LazyLock::new(RedisServer::start);

persistence_conformance::conformance_tests!(|| async {
    let options = RedisOptions::new("127.0.0.1", SERVER.port());
    std::sync::Arc::new(
        RedisBackend::connect(options)
            .await
            .expect("connect to the test server"),
    ) as persistence_core::SharedBackend
});
