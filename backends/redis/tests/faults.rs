//! The resilience layers over Redis while the test kills and restarts the
//! server: the breaker opens, fails fast, and closes once Redis is back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use persistence_conformance::sample_task;
use persistence_core::layers::{layer, BreakerState, CircuitBreaker, Layered, Retry, Timeout};
use persistence_core::{ErrorKind, SharedBackend, TaskStore};
use persistence_redis::{RedisBackend, RedisOptions};
use redis_test_server::RedisServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_opens_when_redis_dies_and_closes_when_it_returns() {
    let mut server = RedisServer::start();
    let mut options = RedisOptions::new("127.0.0.1", server.port());
    options.command_timeout = Duration::from_millis(500);
    options.connect_timeout = Duration::from_millis(500);
    let redis: SharedBackend = Arc::new(RedisBackend::connect(options).await.unwrap());
    let inner = layer(
        layer(redis, Timeout::new(Duration::from_millis(800))),
        Retry::new(
            1,
            Duration::from_millis(20),
            2.0,
            Duration::from_millis(100),
        ),
    );
    let breaker = Arc::new(Layered::new(
        inner,
        CircuitBreaker::new(3, Duration::from_millis(1500)),
    ));
    let store = TaskStore::new(breaker.clone() as SharedBackend);
    store.create(&sample_task("before", &["r"])).await.unwrap();

    server.kill();
    let mut failures = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while breaker.policy().state() != BreakerState::Open {
        assert!(Instant::now() < deadline, "the breaker never opened");
        let e = store.load("before").await.unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::Unavailable | ErrorKind::Timeout),
            "{e}"
        );
        failures += 1;
    }
    assert!(failures >= 3, "opened after {failures} failures");
    let started = Instant::now();
    let e = store.load("before").await.unwrap_err();
    assert!(e.to_string().contains("circuit is open"), "{e}");
    // fast: far below the 800 ms timeout a call to the dead server would take
    assert!(
        started.elapsed() < Duration::from_millis(250),
        "open must fail fast, took {:?}",
        started.elapsed()
    );

    server.restart();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(
            Instant::now() < deadline,
            "the breaker never closed after Redis came back"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        if store.load("before").await.is_ok() {
            break;
        }
    }
    assert_eq!(breaker.policy().state(), BreakerState::Closed);
    let (opened, closed) = breaker.policy().transitions();
    assert!(opened >= 1 && closed >= 1, "transitions {opened}/{closed}");
    // persistence is off on the test server: the restarted Redis is empty, and works
    store.create(&sample_task("after", &["r2"])).await.unwrap();
    assert!(store.load_by_request_id("r2").await.unwrap().is_some());
}
