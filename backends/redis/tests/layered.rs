//! The conformance suite against Redis under every resilience layer,
//! stacked from settings as `config/layered.toml` does.

use std::sync::LazyLock;

use redis_test_server::RedisServer;

static SERVER: LazyLock<RedisServer> = LazyLock::new(RedisServer::start);

persistence_conformance::conformance_tests!(|| async {
    let env = [
        ("TA_PERSISTENCE_BACKEND", "redis".to_string()),
        ("TA_REDIS_HOST", "127.0.0.1".to_string()),
        ("TA_REDIS_PORT", SERVER.port().to_string()),
        ("TA_PERSISTENCE_FALLBACK", "fail".to_string()),
        (
            "TA_PERSISTENCE__LAYERS",
            "timeout,retry,circuit_breaker,recovery_queue,cache".to_string(),
        ),
    ]
    .map(|(k, v)| (k.to_string(), v));
    let mut factory = persistence_core::factory::Factory::new();
    factory.register(std::sync::Arc::new(persistence_redis::RedisProvider));
    let settings = factory.settings_from_sources(None, env).expect("settings");
    factory
        .open(&settings)
        .await
        .expect("open the layered Redis backend")
        .backend
});
