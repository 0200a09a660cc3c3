//! Sharing a Redis with the Python system, and doing better where it fails.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use persistence_conformance::{fixture_task, sample_task};
use persistence_core::backend::{Backend, HealthStatus};
use persistence_core::config::Settings;
use persistence_core::factory::Factory;
use persistence_core::{ErrorKind, SharedBackend, TaskStore};
use persistence_redis::{RedisBackend, RedisOptions, RedisProvider};
use redis::AsyncCommands;
use redis_test_server::RedisServer;

static SERVER: LazyLock<RedisServer> = LazyLock::new(RedisServer::start);

/// A backend whose seed namespace and prefix are this test's own.
async fn backend(prefix: &str) -> RedisBackend {
    let mut options = RedisOptions::new("127.0.0.1", SERVER.port());
    options.prefix = prefix.into();
    RedisBackend::connect(options).await.unwrap()
}

async fn raw() -> redis::aio::MultiplexedConnection {
    redis::Client::open(SERVER.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_task_the_python_system_wrote_is_read_through_task_store() {
    let (task, json) = fixture_task();
    let mut con = raw().await;
    let p = "py_written";
    // exactly what the seed's RedisTaskPersistenceManager does
    let _: () = con
        .set_ex(format!("{p}:task:{}", task.task_id), json, 3600)
        .await
        .unwrap();
    for rid in task.request_ids() {
        let _: () = con
            .sadd(format!("{p}:request_index:{rid}"), &task.task_id)
            .await
            .unwrap();
        let _: () = con
            .expire(format!("{p}:request_index:{rid}"), 3600)
            .await
            .unwrap();
    }
    let store = TaskStore::new(Arc::new(backend(p).await) as SharedBackend);
    assert_eq!(
        store.load(&task.task_id).await.unwrap().as_ref(),
        Some(&task)
    );
    for rid in task.request_ids() {
        assert_eq!(
            store.load_by_request_id(rid).await.unwrap().as_ref(),
            Some(&task)
        );
    }
    // and we can update and delete what it wrote
    let mut changed = task.clone();
    changed.status = persistence_core::model::TaskStatus::Completed;
    store.update(&changed).await.unwrap();
    store.delete(&task.task_id).await.unwrap();
    assert!(!con
        .exists::<_, bool>(format!("{p}:task:{}", task.task_id))
        .await
        .unwrap());
}

#[tokio::test]
async fn a_task_written_here_is_in_the_python_layout() {
    let (task, json) = fixture_task();
    let p = "rs_written";
    let store = TaskStore::new(Arc::new(backend(p).await) as SharedBackend)
        .with_ttl(Some(Duration::from_secs(7200)));
    store.create(&task).await.unwrap();
    let mut con = raw().await;
    let stored: String = con.get(format!("{p}:task:{}", task.task_id)).await.unwrap();
    let a: serde_json::Value = serde_json::from_str(&stored).unwrap();
    let b: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(
        a, b,
        "the plain string at task_persistence:task:{{id}} is the task JSON"
    );
    let ttl: i64 = con.ttl(format!("{p}:task:{}", task.task_id)).await.unwrap();
    assert!((7000..=7200).contains(&ttl), "task TTL {ttl}");
    for rid in task.request_ids() {
        let key = format!("{p}:request_index:{rid}");
        let members: Vec<String> = con.smembers(&key).await.unwrap();
        assert_eq!(members, std::slice::from_ref(&task.task_id));
        let ttl: i64 = con.ttl(&key).await.unwrap();
        assert!((7000..=7200).contains(&ttl), "index TTL {ttl}");
    }
}

#[tokio::test]
async fn four_clients_creating_the_same_300_ids_succeed_exactly_300_times() {
    // the seed's check-then-set got 520 "successful" creates here
    let p = "race";
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(TaskStore::new(Arc::new(backend(p).await) as SharedBackend));
    }
    let mut handles = Vec::new();
    for store in clients {
        handles.push(tokio::spawn(async move {
            let mut ok = 0;
            for n in 0..300 {
                match store.create(&sample_task(&format!("t{n}"), &["r"])).await {
                    Ok(_) => ok += 1,
                    Err(e) => assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}"),
                }
            }
            ok
        }));
    }
    let mut total = 0;
    for h in handles {
        total += h.await.unwrap();
    }
    assert_eq!(total, 300);
}

#[test]
fn ta_redis_ssl_means_what_it_says() {
    let info = |value: &str| {
        let env = [("TA_REDIS_SSL".to_string(), value.to_string())];
        let settings = redis_settings(env);
        RedisOptions::from_settings(&settings)
            .unwrap()
            .connection_info()
            .unwrap()
    };
    assert!(
        matches!(info("false").addr(), redis::ConnectionAddr::Tcp(..)),
        "false must mean plain TCP"
    );
    assert!(
        matches!(info("true").addr(), redis::ConnectionAddr::TcpTls { .. }),
        "true must mean TLS"
    );
}

#[tokio::test]
async fn lookups_drop_index_entries_that_outlived_their_task() {
    let p = "stale";
    let b = backend(p).await;
    let store = TaskStore::new(Arc::new(b.clone()) as SharedBackend);
    store
        .clone()
        .with_ttl(Some(Duration::from_millis(500)))
        .create(&sample_task("short", &["shared"]))
        .await
        .unwrap();
    store
        .create(&sample_task("long", &["shared"]))
        .await
        .unwrap();
    let mut con = raw().await;
    let set = format!("{p}:request_index:shared");
    // a leftover of the seed's non-atomic delete: an id with no task
    let _: () = con.sadd(&set, "ghost").await.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        store
            .load_by_request_id("shared")
            .await
            .unwrap()
            .unwrap()
            .task_id,
        "long"
    );
    let mut members: Vec<String> = con.smembers(&set).await.unwrap();
    members.sort();
    assert_eq!(
        members,
        ["long"],
        "expired and dangling entries must be cleaned"
    );
}

#[tokio::test]
async fn sliding_ttl_keeps_a_task_that_is_being_read() {
    let ttl = Some(Duration::from_millis(1500));
    let mut options = RedisOptions::new("127.0.0.1", SERVER.port());
    options.prefix = "sliding".into();
    options.sliding_ttl = ttl;
    let sliding =
        TaskStore::new(Arc::new(RedisBackend::connect(options).await.unwrap()) as SharedBackend)
            .with_ttl(ttl);
    let fixed = TaskStore::new(Arc::new(backend("fixed").await) as SharedBackend).with_ttl(ttl);
    sliding
        .create(&sample_task("paused", &["r"]))
        .await
        .unwrap();
    fixed.create(&sample_task("paused", &["r"])).await.unwrap();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(
            sliding.load("paused").await.unwrap().is_some(),
            "a read must renew the TTL"
        );
        let _ = fixed.load("paused").await.unwrap();
    }
    assert!(
        fixed.load("paused").await.unwrap().is_none(),
        "without sliding TTL the task expires"
    );
    assert!(
        sliding.load_by_request_id("r").await.unwrap().is_some(),
        "the index is renewed too"
    );
}

#[tokio::test]
async fn clear_namespace_works_without_keys_and_touches_nothing_else() {
    // KEYS is renamed away on this server: any use of it would fail
    let server = RedisServer::start_with(&["--rename-command", "KEYS", ""]);
    let options = RedisOptions::new("127.0.0.1", server.port());
    let b = Arc::new(RedisBackend::connect(options).await.unwrap());
    let tasks = TaskStore::new(b.clone() as SharedBackend);
    let other = TaskStore::new(b.clone() as SharedBackend).with_namespace("other");
    for n in 0..1200 {
        tasks
            .create(&sample_task(&format!("t{n}"), &[&format!("r{n}")]))
            .await
            .unwrap();
    }
    other.create(&sample_task("keep", &["r1"])).await.unwrap();
    let removed = b.clear_namespace("task").await.unwrap();
    assert!(removed >= 1200 * 3, "removed only {removed} keys");
    assert_eq!(tasks.load("t5").await.unwrap(), None);
    assert_eq!(tasks.load_by_request_id("r5").await.unwrap(), None);
    assert_eq!(tasks.count().await.unwrap(), 0);
    assert!(
        other.load_by_request_id("r1").await.unwrap().is_some(),
        "another namespace was touched"
    );
}

#[tokio::test]
async fn the_password_never_appears_in_debug_errors_or_health() {
    let secret = "s3cr3t-Pa55word";
    let server = RedisServer::start_with(&["--requirepass", secret]);
    let mut options = RedisOptions::new("127.0.0.1", server.port());
    options.password = Some(persistence_core::config::Secret::new(secret));
    let b = RedisBackend::connect(options.clone())
        .await
        .expect("the right password connects");
    let health = b.health().await;
    assert_eq!(health.status, HealthStatus::Ok);
    let mut shown = format!("{options:?} {b:?} {health:?}");

    options.password = Some(persistence_core::config::Secret::new("wrong-Pa55word"));
    let err = RedisBackend::connect(options.clone()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(err.to_string().contains("credentials"), "{err}");
    shown += &format!("{err} {err:?}");

    let url = format!("redis://:{secret}@127.0.0.1:{}", server.port());
    let mut by_url = RedisOptions::new("ignored", 1);
    by_url.url = Some(persistence_core::config::Secret::new(url));
    let b = RedisBackend::connect(by_url.clone())
        .await
        .expect("a URL with credentials connects");
    shown += &format!("{by_url:?} {b:?} {:?}", b.health().await);
    let settings = redis_settings([("TA_REDIS_PWD".to_string(), secret.to_string())]);
    shown += &format!("{settings:?}");

    assert!(
        !shown.contains(secret) && !shown.contains("wrong-Pa55word"),
        "a password leaked: {shown}"
    );
}

#[tokio::test]
async fn corrupted_values_fail_naming_the_key_and_are_kept() {
    let p = "corrupt";
    let mut con = raw().await;
    let _: () = con
        .set(format!("{p}:task:bad"), "{\"task_id\": truncated")
        .await
        .unwrap();
    let store = TaskStore::new(Arc::new(backend(p).await) as SharedBackend);
    let err = store.load("bad").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupted);
    assert!(err.to_string().contains("\"bad\""), "{err}");
    let kept: String = con.get(format!("{p}:task:bad")).await.unwrap();
    assert_eq!(
        kept, "{\"task_id\": truncated",
        "the seed deleted corrupted data; we keep it"
    );
}

#[tokio::test]
async fn health_reports_latency_version_and_whether_the_prefix_is_in_use() {
    let b = backend("health_prefix").await;
    let h = b.health().await;
    assert_eq!(h.status, HealthStatus::Ok);
    assert!(h.latency_ms.is_some());
    assert!(
        h.details["server_version"].starts_with('7') || !h.details["server_version"].is_empty()
    );
    assert_eq!(h.details["prefix_in_use"], "false");
    TaskStore::new(Arc::new(b.clone()) as SharedBackend)
        .create(&sample_task("t", &["r"]))
        .await
        .unwrap();
    assert_eq!(b.health().await.details["prefix_in_use"], "true");
}

#[tokio::test]
async fn an_unreachable_server_falls_back_loudly_or_fails_within_the_timeout() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let settings = |fallback: &str| {
        let env = [
            ("TA_PERSISTENCE_BACKEND", "redis"),
            ("TA_REDIS_HOST", "127.0.0.1"),
            ("TA_REDIS_PORT", &port.to_string()),
            ("TA_PERSISTENCE_FALLBACK", fallback),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        redis_settings(env)
    };
    let mut factory = Factory::new();
    factory.register(Arc::new(RedisProvider));
    let started = std::time::Instant::now();
    let opened = factory.open(&settings("memory")).await.unwrap();
    assert_eq!(opened.backend.health().await.status, HealthStatus::Degraded);
    let err = factory.open(&settings("fail")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(err.to_string().contains(&port.to_string()), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}

/// Settings read by a factory that knows Redis.
fn redis_settings(env: impl IntoIterator<Item = (String, String)>) -> Settings {
    let mut factory = Factory::new();
    factory.register(Arc::new(RedisProvider));
    factory.settings_from_sources(None, env).unwrap()
}
