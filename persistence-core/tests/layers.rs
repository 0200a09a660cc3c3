//! Each layer's rules, over an in-memory backend that can be made to fail
//! or stall (the layers' dependency, not the thing under test).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use persistence_core::backend::{
    Backend, BackendExt, Capabilities, Document, DocumentWrite, Health, Precondition, Version,
};
use persistence_core::factory::Factory;
use persistence_core::layers::{
    layer, BreakerSettings, BreakerState, CircuitBreaker, Layered, Retry, RetrySettings, Timeout,
    TimeoutSettings,
};
use persistence_core::memory::MemoryBackend;
use persistence_core::{Error, ErrorKind, Result, SharedBackend};

/// Memory that fails the next `fail_next` calls with `Unavailable` and
/// sleeps `stall_ms` before each call; counts the calls that reach it.
#[derive(Debug, Default)]
struct Troubled {
    inner: MemoryBackend,
    fail_next: AtomicU32,
    stall_ms: AtomicU64,
    calls: AtomicU32,
}

impl Troubled {
    async fn enter(&self) -> Result<()> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let stall = self.stall_ms.load(Ordering::SeqCst);
        if stall > 0 {
            tokio::time::sleep(Duration::from_millis(stall)).await;
        }
        let failing = self.fail_next.load(Ordering::SeqCst);
        if failing > 0 {
            self.fail_next.store(failing - 1, Ordering::SeqCst);
            return Err(Error::Unavailable {
                backend: "troubled".into(),
                reason: "down".into(),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl Backend for Troubled {
    fn name(&self) -> &str {
        "troubled"
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn get(&self, ns: &str, key: &str) -> Result<Option<Document>> {
        self.enter().await?;
        self.inner.get(ns, key).await
    }
    async fn put(&self, ns: &str, key: &str, w: DocumentWrite, p: Precondition) -> Result<Version> {
        self.enter().await?;
        self.inner.put(ns, key, w, p).await
    }
    async fn remove(&self, ns: &str, key: &str, p: Precondition) -> Result<bool> {
        self.enter().await?;
        self.inner.remove(ns, key, p).await
    }
    async fn lookup(&self, ns: &str, i: &str, t: &str) -> Result<Vec<String>> {
        self.enter().await?;
        self.inner.lookup(ns, i, t).await
    }
    async fn health(&self) -> Health {
        self.inner.health().await
    }
}

#[tokio::test]
async fn timeout_turns_a_stalled_call_into_a_timeout_error() {
    let t = Arc::new(Troubled::default());
    t.stall_ms.store(1_000, Ordering::SeqCst);
    let b = layer(t.clone(), Timeout::new(Duration::from_millis(50)));
    let started = Instant::now();
    let e = b.get("ns", "k").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    assert!(e.to_string().contains("get"), "{e}");
    // well before the 1 s stall ends, with room for a loaded machine
    assert!(
        started.elapsed() < Duration::from_millis(600),
        "{:?}",
        started.elapsed()
    );
    t.stall_ms.store(0, Ordering::SeqCst);
    assert_eq!(b.get("ns", "k").await.unwrap(), None);
}

/// A backend whose `get` blocks its thread for `block` in its first poll,
/// then waits far longer (a plugin or engine that misbehaves).
#[derive(Debug)]
struct BlocksThenWaits {
    inner: MemoryBackend,
    block: Duration,
}

#[async_trait]
impl Backend for BlocksThenWaits {
    fn name(&self) -> &str {
        "blocks-then-waits"
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn get(&self, _: &str, _: &str) -> Result<Option<Document>> {
        std::thread::sleep(self.block);
        tokio::time::sleep(Duration::from_secs(30)).await;
        Ok(None)
    }
    async fn put(&self, ns: &str, key: &str, w: DocumentWrite, p: Precondition) -> Result<Version> {
        self.inner.put(ns, key, w, p).await
    }
    async fn remove(&self, ns: &str, key: &str, p: Precondition) -> Result<bool> {
        self.inner.remove(ns, key, p).await
    }
    async fn lookup(&self, ns: &str, i: &str, t: &str) -> Result<Vec<String>> {
        self.inner.lookup(ns, i, t).await
    }
    async fn health(&self) -> Health {
        self.inner.health().await
    }
}

#[tokio::test]
async fn the_timeout_counts_time_a_first_poll_spent_blocking() {
    let block = Duration::from_millis(1_000);
    let b = layer(
        Arc::new(BlocksThenWaits {
            inner: MemoryBackend::new(),
            block,
        }),
        Timeout::new(Duration::from_millis(900)),
    );
    let started = Instant::now();
    let e = b.get("ns", "k").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    // the deadline had passed when the blocking poll returned: no second
    // 900 ms wait after it (which would end near 1.9 s)
    assert!(
        started.elapsed() < Duration::from_millis(1_600),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn retry_repeats_safe_calls_and_not_inserts() {
    let t = Arc::new(Troubled::default());
    let retry = Layered::new(
        t.clone(),
        Retry::new(3, Duration::from_millis(5), 2.0, Duration::from_millis(50)),
    );
    t.fail_next.store(2, Ordering::SeqCst);
    assert_eq!(
        retry.get("ns", "k").await.unwrap(),
        None,
        "a read is retried through two failures"
    );
    assert_eq!(retry.policy().retries(), 2);
    t.fail_next.store(2, Ordering::SeqCst);
    retry
        .upsert("ns", "k", DocumentWrite::new(vec![1]))
        .await
        .expect("an upsert is idempotent: retried");
    t.fail_next.store(1, Ordering::SeqCst);
    let e = retry
        .insert("ns", "new", DocumentWrite::new(vec![1]))
        .await
        .unwrap_err();
    assert_eq!(
        e.kind(),
        ErrorKind::Unavailable,
        "an insert is not replayed after an ambiguous failure"
    );
    t.fail_next.store(10, Ordering::SeqCst);
    let before = t.calls.load(Ordering::SeqCst);
    assert!(retry.get("ns", "k").await.is_err());
    assert_eq!(
        t.calls.load(Ordering::SeqCst) - before,
        4,
        "one call and 3 retries, no more"
    );
    t.fail_next.store(0, Ordering::SeqCst);
    let e = retry
        .insert("ns", "k", DocumentWrite::new(vec![2]))
        .await
        .unwrap_err();
    assert_eq!(
        e.kind(),
        ErrorKind::AlreadyExists,
        "answers that are not outages pass through at once"
    );
}

#[tokio::test]
async fn breaker_opens_fails_fast_probes_and_closes() {
    let t = Arc::new(Troubled::default());
    let b = Layered::new(
        t.clone(),
        CircuitBreaker::new(3, Duration::from_millis(200)),
    );
    t.fail_next.store(100, Ordering::SeqCst);
    for _ in 0..3 {
        assert_eq!(
            b.get("ns", "k").await.unwrap_err().kind(),
            ErrorKind::Unavailable
        );
    }
    assert_eq!(b.policy().state(), BreakerState::Open);
    let reached = t.calls.load(Ordering::SeqCst);
    let e = b.get("ns", "k").await.unwrap_err();
    assert!(e.to_string().contains("circuit is open"), "{e}");
    assert_eq!(
        t.calls.load(Ordering::SeqCst),
        reached,
        "open: the backend is not called"
    );
    let h = b.health().await;
    assert_eq!(
        (h.details["breaker_state"].as_str(), h.status),
        ("open", persistence_core::backend::HealthStatus::Degraded)
    );
    // after the reset timeout one probe goes through; it fails: open again
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(b.get("ns", "k").await.is_err());
    assert_eq!(t.calls.load(Ordering::SeqCst), reached + 1);
    assert_eq!(b.policy().state(), BreakerState::Open);
    // the backend recovers: the next probe closes the circuit
    t.fail_next.store(0, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(b.get("ns", "k").await.unwrap(), None);
    assert_eq!(b.policy().state(), BreakerState::Closed);
    // opened twice (first failures, then the failed probe), closed once
    assert_eq!(b.policy().transitions(), (2, 1));
    // errors that prove the backend answers do not count as failures
    for _ in 0..5 {
        let _ = b.insert("ns", "dup", DocumentWrite::new(vec![1])).await;
    }
    assert_eq!(b.policy().state(), BreakerState::Closed);
}

#[tokio::test]
async fn layers_come_from_settings_in_order() {
    let env = [
        ("TA_PERSISTENCE__LAYERS", "timeout, retry,circuit_breaker"),
        ("TA_PERSISTENCE__TIMEOUT__MS", "1500"),
        ("TA_PERSISTENCE__CIRCUIT_BREAKER__FAILURES", "5"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    let s = Factory::new().settings_from_sources(None, env).unwrap();
    assert_eq!(s.layers.0, ["timeout", "retry", "circuit_breaker"]);
    assert_eq!(
        (
            s.table::<TimeoutSettings>("timeout").unwrap().ms,
            s.table::<BreakerSettings>("circuit_breaker")
                .unwrap()
                .failures,
            s.table::<RetrySettings>("retry").unwrap().max_retries
        ),
        (1500, 5, 3)
    );
    let opened = persistence_core::factory::Factory::new()
        .open(&s)
        .await
        .unwrap();
    let h = opened.backend.health().await;
    for detail in ["timeout_ms", "retries", "breaker_state"] {
        assert!(
            h.details.contains_key(detail),
            "{detail} missing from {h:?}"
        );
    }
    let bad = [("TA_PERSISTENCE__LAYERS", "timeout,warp_drive")]
        .map(|(k, v)| (k.to_string(), v.to_string()));
    let e = Factory::new().settings_from_sources(None, bad).unwrap_err();
    assert!(
        e.to_string().contains("warp_drive") && e.to_string().contains("unknown layer"),
        "{e}"
    );
    let _: SharedBackend = opened.backend;
}

#[tokio::test]
async fn the_cache_reads_through_writes_through_evicts_and_covers_outages() {
    use persistence_core::layers::CacheTier;
    let t = Arc::new(Troubled::default());
    let cache = CacheTier::new(t.clone(), 3);
    for k in ["a", "b", "c"] {
        cache
            .insert("ns", k, DocumentWrite::new(k.as_bytes().to_vec()))
            .await
            .unwrap();
    }
    let calls = t.calls.load(Ordering::SeqCst);
    for k in ["a", "b", "c"] {
        assert_eq!(
            &cache.get("ns", k).await.unwrap().unwrap().value[..],
            k.as_bytes()
        );
    }
    assert_eq!(
        t.calls.load(Ordering::SeqCst),
        calls,
        "written documents are read from memory"
    );
    // a fourth evicts the least recently used ("a")
    cache
        .insert("ns", "d", DocumentWrite::new(b"d".to_vec()))
        .await
        .unwrap();
    let calls = t.calls.load(Ordering::SeqCst);
    assert!(cache.get("ns", "a").await.unwrap().is_some());
    assert_eq!(
        t.calls.load(Ordering::SeqCst),
        calls + 1,
        "the evicted one is read through"
    );
    // the durable tier goes down: cached reads still work, others fail
    t.fail_next.store(1_000, Ordering::SeqCst);
    assert_eq!(
        &cache.get("ns", "a").await.unwrap().unwrap().value[..],
        b"a"
    );
    assert_eq!(
        cache.get("ns", "b").await.unwrap_err().kind(),
        ErrorKind::Unavailable,
        "b was evicted by a"
    );
    // a write that fails ambiguously stops the old copy being served
    assert!(cache
        .upsert("ns", "a", DocumentWrite::new(b"a2".to_vec()))
        .await
        .is_err());
    assert!(cache.get("ns", "a").await.is_err(), "not the stale copy");
    t.fail_next.store(0, Ordering::SeqCst);
    // removal leaves both tiers
    cache
        .remove("ns", "d", Precondition::Present)
        .await
        .unwrap();
    assert_eq!(cache.get("ns", "d").await.unwrap(), None);
    let (hits, misses) = cache.hits_and_misses();
    assert!(hits >= 4 && misses >= 3, "{hits} hits, {misses} misses");
}

#[tokio::test]
async fn metrics_count_calls_errors_and_time_per_operation() {
    use persistence_core::layers::Metrics;
    let t = Arc::new(Troubled::default());
    let b = layer(t.clone(), Metrics::new());
    b.insert("ns", "a", DocumentWrite::new(vec![1]).with_term("i", "x"))
        .await
        .unwrap();
    let e = b
        .insert("ns", "a", DocumentWrite::new(vec![2]))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists);
    assert!(b.get("ns", "a").await.unwrap().is_some());
    t.fail_next.store(1, Ordering::SeqCst);
    assert_eq!(
        b.get("ns", "a").await.unwrap_err().kind(),
        ErrorKind::Unavailable
    );
    assert_eq!(b.lookup("ns", "i", "x").await.unwrap(), ["a"]);
    assert!(b.remove("ns", "a", Precondition::Present).await.unwrap());
    let tx = vec![persistence_core::backend::TxWrite::remove(
        "ns",
        "a",
        Precondition::Any,
    )];
    // the test backend has no transactions: still one call, one error
    assert_eq!(
        b.transact(tx).await.unwrap_err().kind(),
        ErrorKind::Unsupported
    );

    let stats = b.stats();
    let op = |name: &str| stats.operations[name];
    assert_eq!(
        (op("put").calls, op("put").errors, op("put").unavailable),
        (2, 1, 0)
    );
    assert_eq!(
        (op("get").calls, op("get").errors, op("get").unavailable),
        (2, 1, 1)
    );
    assert_eq!((op("lookup").calls, op("remove").calls), (1, 1));
    assert_eq!((op("scan").calls, op("count").calls), (0, 0));
    assert_eq!(
        (op("transact").calls, op("transact").errors),
        (1, 1),
        "a transaction is one call"
    );
    assert!(op("get").max_ns <= op("get").total_ns && op("get").max_ns > 0);
    assert_eq!(
        stats.operations.len(),
        7,
        "every operation is listed: {stats:?}"
    );
    assert!(stats.counters.is_empty(), "no other layer: {stats:?}");
    assert!(
        t.stats().operations.is_empty(),
        "a bare backend counts nothing"
    );
}

#[tokio::test]
async fn a_full_stack_reports_every_layers_counters() {
    let env = [
        (
            "TA_PERSISTENCE__LAYERS",
            "timeout,retry,circuit_breaker,recovery_queue,cache",
        ),
        ("TA_PERSISTENCE__RETRY__MAX_RETRIES", "1"),
        ("TA_PERSISTENCE__RETRY__BASE_MS", "1"),
        ("TA_PERSISTENCE__CIRCUIT_BREAKER__FAILURES", "1"),
        ("TA_PERSISTENCE__CIRCUIT_BREAKER__RESET_MS", "50"),
        ("TA_PERSISTENCE__CACHE__CAPACITY", "2"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    let s = Factory::new().settings_from_sources(None, env).unwrap();
    let t = Arc::new(Troubled::default());
    let b = Factory::new().stack(t.clone(), &s).unwrap();
    for k in ["a", "b", "c"] {
        b.insert("ns", k, DocumentWrite::new(vec![1]))
            .await
            .unwrap();
    }
    b.get("ns", "c").await.unwrap(); // cached
    b.get("ns", "a").await.unwrap(); // evicted: read through
    t.fail_next.store(2, Ordering::SeqCst); // the read and its one retry
    assert!(b.get("ns", "zz").await.is_err());
    // the breaker is open: this write is accepted by the queue
    assert_eq!(
        b.upsert("ns", "a", DocumentWrite::new(vec![2]))
            .await
            .unwrap(),
        Version(0)
    );
    let before = b.stats();
    assert_eq!(before.counter("breaker_open"), 1, "{before:?}");
    assert_eq!(before.counter("queue_accepted"), 1, "{before:?}");
    // the queue replays once the breaker lets a probe through
    let deadline = Instant::now() + Duration::from_secs(10);
    while b.stats().counter("queue_depth") > 0 {
        assert!(Instant::now() < deadline, "the queue never drained");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stats = b.stats();
    for (name, at_least) in [
        ("retries", 1),
        ("breaker_opened", 1),
        ("breaker_closed", 1),
        ("queue_accepted", 1),
        ("queue_replayed", 1),
        ("cache_hits", 1),
        ("cache_misses", 2),
        ("cache_evictions", 1),
        ("cache_capacity", 2),
    ] {
        assert!(
            stats.counter(name) >= at_least,
            "{name} = {} < {at_least}: {stats:?}",
            stats.counter(name)
        );
    }
    for name in ["timeouts", "queue_dropped", "queue_full", "breaker_open"] {
        assert_eq!(stats.counter(name), 0, "{name}: {stats:?}");
    }
    let get = stats.operations["get"];
    assert_eq!(
        (get.calls, get.errors, get.unavailable),
        (3, 1, 1),
        "{stats:?}"
    );
    assert_eq!(stats.operations["put"].calls, 4, "{stats:?}");
    assert_eq!(
        stats.operations["put"].errors, 0,
        "accepted is not an error"
    );
}

/// A span's name and its fields.
type SpanSeen = (String, Vec<(String, String)>);

/// Records the spans opened while it is the default subscriber.
#[derive(Default)]
struct SpanRecorder {
    spans: std::sync::Mutex<Vec<SpanSeen>>,
    next: AtomicU64,
}

impl tracing::Subscriber for SpanRecorder {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, attrs: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        struct Fields(Vec<(String, String)>);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                self.0.push((f.name().into(), format!("{v:?}")));
            }
            fn record_str(&mut self, f: &tracing::field::Field, v: &str) {
                self.0.push((f.name().into(), v.into()));
            }
        }
        let mut fields = Fields(Vec::new());
        attrs.record(&mut fields);
        self.spans
            .lock()
            .unwrap()
            .push((attrs.metadata().name().into(), fields.0));
        tracing::span::Id::from_u64(self.next.fetch_add(1, Ordering::SeqCst) + 1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {}
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[tokio::test]
async fn every_call_runs_in_a_span_naming_operation_namespace_and_key() {
    let recorder = Arc::new(SpanRecorder::default());
    let _guard = tracing::subscriber::set_default(recorder.clone());
    let s = Factory::new()
        .settings_from_sources(
            None,
            [("TA_PERSISTENCE__LAYERS".to_string(), "retry".to_string())],
        )
        .unwrap();
    let b = Factory::new()
        .stack(Arc::new(MemoryBackend::new()), &s)
        .unwrap();
    b.insert(
        "tasks",
        "t-1",
        DocumentWrite::new(vec![1]).with_term("by", "r"),
    )
    .await
    .unwrap();
    b.get("tasks", "t-1").await.unwrap();
    b.lookup("tasks", "by", "r").await.unwrap();
    let spans = recorder.spans.lock().unwrap().clone();
    let field = |span: &SpanSeen, name: &str| {
        span.1
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let seen: Vec<(String, String, String)> = spans
        .iter()
        .filter(|s| s.0 == "persistence")
        .map(|s| (field(s, "op"), field(s, "namespace"), field(s, "key")))
        .collect();
    let expected = [("put", "t-1"), ("get", "t-1"), ("lookup", "r")]
        .map(|(op, key)| (op.to_string(), "tasks".to_string(), key.to_string()));
    assert_eq!(seen, expected, "all spans: {spans:?}");
}

#[tokio::test]
async fn the_breaker_probes_on_a_backoff_that_starts_small() {
    let t = Arc::new(Troubled::default());
    let b = Layered::new(
        t.clone(),
        CircuitBreaker::new(1, Duration::from_millis(400))
            .with_first_probe(Duration::from_millis(50)),
    );
    t.fail_next.store(u32::MAX, Ordering::SeqCst);
    let _ = b.get("ns", "k").await; // opens
    let mut waits = vec![b.policy().current_wait()];
    for _ in 0..4 {
        tokio::time::sleep(b.policy().current_wait() + Duration::from_millis(20)).await;
        let _ = b.get("ns", "k").await; // the probe, failing
        waits.push(b.policy().current_wait());
    }
    let ms: Vec<u128> = waits.iter().map(Duration::as_millis).collect();
    assert_eq!(ms, [50, 100, 200, 400, 400], "doubling up to the maximum");
    // the server is back: the next probe closes it, and a later outage
    // starts from the small wait again
    t.fail_next.store(0, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(420)).await;
    assert_eq!(b.get("ns", "k").await.unwrap(), None);
    assert_eq!(b.policy().state(), BreakerState::Closed);
    t.fail_next.store(1, Ordering::SeqCst);
    let _ = b.get("ns", "k").await;
    assert_eq!(b.policy().current_wait(), Duration::from_millis(50));
}

/// Memory whose next `lose` puts are applied but answer `Unavailable`, as
/// when a reply is lost after the server applied the write.
#[derive(Debug, Default)]
struct LosesReplies {
    inner: MemoryBackend,
    lose: AtomicU32,
}

#[async_trait]
impl persistence_core::layers::Layer for LosesReplies {
    fn inner(&self) -> &dyn Backend {
        &self.inner
    }
    async fn put(&self, ns: &str, key: &str, w: DocumentWrite, p: Precondition) -> Result<Version> {
        let version = self.inner.put(ns, key, w, p).await?;
        if self.lose.load(Ordering::SeqCst) > 0 {
            self.lose.fetch_sub(1, Ordering::SeqCst);
            return Err(Error::Unavailable {
                backend: "loses-replies".into(),
                reason: "the reply was lost".into(),
            });
        }
        Ok(version)
    }
}

#[tokio::test]
async fn a_queued_create_that_had_reached_the_backend_is_done_not_dropped() {
    let backend = Arc::new(LosesReplies::default());
    backend.lose.store(1, Ordering::SeqCst);
    let queue = persistence_core::layers::RecoveryQueue::new(
        backend.clone(),
        100,
        0,
        Duration::from_millis(1),
    );
    let accepted = queue
        .insert("ns", "k", DocumentWrite::new(&b"{\"v\":1}"[..]))
        .await
        .expect("accepted into the queue");
    assert_eq!(accepted, Version(0), "accepted, not yet applied");
    assert!(queue.drained(Duration::from_secs(5)).await);
    let stats = queue.stats();
    assert_eq!(stats.counters["queue_dropped"], 0, "{stats:?}");
    assert_eq!(stats.counters["queue_already_applied"], 1, "{stats:?}");
    assert_eq!(stats.counters["queue_replayed"], 1, "{stats:?}");
    // every lost reply is recognised the same way
    backend.lose.store(1, Ordering::SeqCst);
    queue
        .insert("ns", "k2", DocumentWrite::new(&b"1"[..]))
        .await
        .unwrap();
    assert!(queue.drained(Duration::from_secs(5)).await);
    assert_eq!(queue.stats().counters["queue_already_applied"], 2);
}
