//! The outage test: 10,000 NORMAL-priority writes from 16 tasks
//! through timeout + retry + circuit_breaker + recovery_queue over Redis
//! (append-only, fsync always). Redis is SIGKILLed partway and restarted on
//! the same port 2 s later. Every acknowledged write must end up in Redis,
//! per key in the order it was acknowledged, and the breaker must have
//! opened and closed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use persistence_core::backend::{Backend, BackendExt, DocumentWrite};
use persistence_core::layers::{layer, CircuitBreaker, Layered, RecoveryQueue, Retry, Timeout};
use persistence_core::SharedBackend;
use persistence_redis::{RedisBackend, RedisOptions};
use redis_test_server::RedisServer;

const TASKS: usize = 16;
const WRITES_PER_TASK: usize = 625;
const KEYS_PER_TASK: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_a_redis_crash_in_order() {
    let started = Instant::now();
    let mut server = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let mut options = RedisOptions::new("127.0.0.1", server.port());
    options.command_timeout = Duration::from_millis(300);
    options.connect_timeout = Duration::from_millis(300);
    let redis: SharedBackend = Arc::new(RedisBackend::connect(options.clone()).await.unwrap());
    let retried = layer(
        layer(redis, Timeout::new(Duration::from_millis(500))),
        Retry::new(
            2,
            Duration::from_millis(20),
            2.0,
            Duration::from_millis(100),
        ),
    );
    let breaker = Arc::new(Layered::new(
        retried,
        CircuitBreaker::new(3, Duration::from_millis(1000)),
    ));
    let queue = RecoveryQueue::new(
        breaker.clone() as SharedBackend,
        20_000,
        3,
        Duration::from_millis(50),
    );

    // key -> (sequence of the last acknowledged write)
    let acked: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let done = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for t in 0..TASKS {
        let (queue, acked, done) = (queue.clone(), acked.clone(), done.clone());
        writers.push(tokio::spawn(async move {
            for i in 0..WRITES_PER_TASK {
                let key = format!("k{t}-{}", i % KEYS_PER_TASK);
                let value = format!("{{\"task\":{t},\"seq\":{i}}}");
                match queue
                    .upsert("outage", &key, DocumentWrite::new(value.into_bytes()))
                    .await
                {
                    Ok(_) => {
                        acked.lock().insert(key, i);
                    }
                    Err(e) => panic!("a NORMAL write must be accepted (applied or queued): {e}"),
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // kill Redis partway through, bring it back 2 s later
    while done.load(Ordering::Relaxed) < 2_000 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    server.restart();
    for w in writers {
        w.await.unwrap();
    }
    assert!(
        queue.drained(Duration::from_secs(60)).await,
        "the queue did not drain: {} left",
        queue.depth()
    );

    let (opened, closed) = breaker.policy().transitions();
    assert!(opened >= 1, "the breaker never opened");
    assert!(closed >= 1, "the breaker never closed again");
    let fresh = RedisBackend::connect(options).await.unwrap();
    let acked = acked.lock().clone();
    assert_eq!(acked.len(), TASKS * KEYS_PER_TASK);
    for (key, seq) in &acked {
        let doc = fresh
            .get("outage", key)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{key}: acknowledged, not in Redis"));
        let stored: serde_json::Value = serde_json::from_slice(&doc.value).unwrap();
        assert_eq!(
            stored["seq"].as_u64(),
            Some(*seq as u64),
            "{key}: a write was lost or landed out of order"
        );
    }
    let health = queue.health().await;
    eprintln!(
        "outage test: {} writes, breaker opened {opened}x closed {closed}x, {} replayed, {} dropped, {:.1} s",
        TASKS * WRITES_PER_TASK,
        health.details["queue_replayed"],
        health.details["queue_dropped"],
        started.elapsed().as_secs_f64()
    );
    assert_eq!(health.details["queue_dropped"], "0");
    // the same story in the counters
    let stats = queue.stats();
    assert_eq!(
        (
            stats.counter("breaker_opened"),
            stats.counter("breaker_closed")
        ),
        (opened, closed)
    );
    assert!(
        stats.counter("timeouts") + stats.counter("retries") >= 1,
        "{stats:?}"
    );
    assert!(stats.counter("queue_accepted") >= 1, "{stats:?}");
    assert_eq!(
        stats.counter("queue_replayed"),
        stats.counter("queue_accepted"),
        "every accepted write replayed: {stats:?}"
    );
    assert_eq!(stats.counter("queue_depth"), 0);
    assert_eq!(stats.counter("breaker_open"), 0);
    assert!(started.elapsed() < Duration::from_secs(120));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_gone_critical_writes_fail_in_bounded_time_and_the_queue_reports_its_depth() {
    let mut server = RedisServer::start();
    let mut options = RedisOptions::new("127.0.0.1", server.port());
    options.command_timeout = Duration::from_millis(200);
    options.connect_timeout = Duration::from_millis(200);
    let redis: SharedBackend = Arc::new(RedisBackend::connect(options).await.unwrap());
    let breaker = layer(
        layer(redis, Timeout::new(Duration::from_millis(300))),
        CircuitBreaker::new(3, Duration::from_secs(60)),
    );
    let queue = RecoveryQueue::new(breaker, 100, 2, Duration::from_millis(50));
    server.kill();
    // NORMAL writes are accepted into the queue
    for n in 0..5 {
        queue
            .upsert("gone", &format!("k{n}"), DocumentWrite::new(vec![1]))
            .await
            .expect("queued");
    }
    assert_eq!(queue.depth(), 5);
    let health = queue.health().await;
    assert_eq!(health.details["queue_depth"], "5");
    // CRITICAL writes are retried, then fail to the caller, within a bound
    let started = Instant::now();
    let e = persistence_core::layers::with_priority(
        persistence_core::layers::Priority::Critical,
        queue.upsert("gone", "critical", DocumentWrite::new(vec![2])),
    )
    .await
    .unwrap_err();
    assert!(e.is_retryable(), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    // LOW writes are dropped with the error
    let e = persistence_core::layers::with_priority(
        persistence_core::layers::Priority::Low,
        queue.upsert("gone", "low", DocumentWrite::new(vec![3])),
    )
    .await
    .unwrap_err();
    assert!(e.is_retryable(), "{e}");
    assert_eq!(queue.depth(), 5, "CRITICAL and LOW writes are never queued");
    let stats = queue.stats();
    for (name, value) in [
        ("queue_depth", 5),
        ("queue_accepted", 5),
        ("queue_dropped", 1),
        ("queue_replayed", 0),
        ("breaker_open", 1),
    ] {
        assert_eq!(stats.counter(name), value, "{name}: {stats:?}");
    }
    assert!(stats.counter("breaker_rejected") >= 1, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_an_outage_reads_are_served_from_the_cache_tier() {
    use persistence_core::layers::CacheTier;
    let mut server = RedisServer::start();
    let mut options = RedisOptions::new("127.0.0.1", server.port());
    options.command_timeout = Duration::from_millis(200);
    options.connect_timeout = Duration::from_millis(200);
    let redis: SharedBackend = Arc::new(RedisBackend::connect(options).await.unwrap());
    let below = layer(
        layer(redis, Timeout::new(Duration::from_millis(300))),
        CircuitBreaker::new(3, Duration::from_secs(60)),
    );
    let queue = RecoveryQueue::new(below, 1000, 1, Duration::from_millis(20));
    let cache = CacheTier::new(queue.clone() as SharedBackend, 1000);
    for n in 0..100 {
        cache
            .insert(
                "cached",
                &format!("k{n}"),
                DocumentWrite::new(format!("v{n}").into_bytes()),
            )
            .await
            .unwrap();
    }
    server.kill();
    let started = Instant::now();
    for n in 0..100 {
        let doc = cache
            .get("cached", &format!("k{n}"))
            .await
            .unwrap()
            .expect("served from the cache");
        assert_eq!(doc.value, format!("v{n}").into_bytes());
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "cached reads must not wait for Redis"
    );
    let health = cache.health().await;
    assert_eq!(
        health.status,
        persistence_core::backend::HealthStatus::Degraded,
        "{health:?}"
    );
    assert_eq!(health.details["cache_entries"], "100");
    // a write during the outage is queued, and the cache shows it
    cache
        .upsert("cached", "k1", DocumentWrite::new(b"during".to_vec()))
        .await
        .unwrap();
    assert_eq!(
        &cache.get("cached", "k1").await.unwrap().unwrap().value[..],
        b"during"
    );
    assert_eq!(queue.depth(), 1);
}
