//! Process isolation: the plugin runs in `ta-persist-plugin-runner`, and
//! what would take down the host in-process (an abort, a segfault, an exit)
//! ends only the runner. The host answers the calls in flight with
//! `Unavailable`, starts a new runner after a backoff, and goes on; every
//! hostile plugin of the in-process tests gets the same typed errors here.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use persistence_core::backend::{Backend, DocumentWrite, HealthStatus, Precondition};
use persistence_core::{Error, ErrorKind};
use persistence_plugin::{PluginBackend, ProcessIsolation, FIRST_BACKOFF};

const RUNNER: &str = env!("CARGO_BIN_EXE_ta-persist-plugin-runner");

fn isolation(library: &str, class: Option<&str>) -> ProcessIsolation {
    ProcessIsolation {
        runner: RUNNER.into(),
        module: support::library(library),
        sha256: None,
        class: class.map(Into::into),
        config: b"{}".to_vec(),
        call_timeout: Duration::from_secs(10),
    }
}

async fn open(library: &str, class: &str) -> PluginBackend {
    isolation(library, Some(class))
        .open()
        .await
        .expect("the runner starts and opens the backend")
}

async fn open_err(spec: ProcessIsolation) -> Error {
    spec.open().await.expect_err("opening must fail")
}

async fn pid(backend: &PluginBackend) -> Option<String> {
    backend.health().await.details.get("runner_pid").cloned()
}

fn write(body: &str) -> DocumentWrite {
    DocumentWrite::new(body.as_bytes().to_vec())
}

mod memory_in_a_runner {
    persistence_conformance::conformance_tests!(|| async {
        std::sync::Arc::new(super::open("plugin-example", "memory").await)
            as persistence_core::SharedBackend
    });
}

/// Waits until the backoff after a runner's death has passed.
async fn after_backoff() {
    tokio::time::sleep(FIRST_BACKOFF + Duration::from_millis(50)).await;
}

/// The plugin takes its process down in one of three ways; the host sees a
/// typed error naming how, and the next call after the backoff reaches a
/// new runner (which starts empty: the plugin's memory died with it).
async fn survives(key: &str, says: &str) {
    let backend = open("test-plugin-crashes", "memory-that-crashes").await;
    backend
        .put("ns", "kept", write("{}"), Precondition::Any)
        .await
        .expect("a put");
    let first = pid(&backend).await.expect("a runner is up");
    let err = backend.get("ns", key).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains(says), "{key}: {err}");
    // during the backoff: fast, typed, and saying when the next start is
    let started = Instant::now();
    let err = backend.get("ns", "kept").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(started.elapsed() < Duration::from_millis(50));
    after_backoff().await;
    assert_eq!(
        backend
            .get("ns", "kept")
            .await
            .expect("a new runner answers"),
        None,
        "a new runner starts with the plugin's fresh state"
    );
    let second = pid(&backend).await.expect("a runner is up again");
    assert_ne!(first, second, "a new runner process");
    let stats = backend.stats();
    assert_eq!(stats.counters["plugin_runner_exits"], 1, "{stats:?}");
    assert_eq!(stats.counters["plugin_runner_restarts"], 1, "{stats:?}");
    assert_eq!(backend.health().await.status, HealthStatus::Ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_aborts_ends_only_its_runner() {
    survives("abort", "SIGABRT").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_segfaults_ends_only_its_runner() {
    survives("segfault", "SIGSEGV").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_exits_ends_only_its_runner() {
    survives("exit", "exited with status 3").await;
}

/// Every call in flight when the runner dies gets its answer (an error),
/// none waits for its timeout, and calls that reached the plugin before
/// still succeeded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_in_flight_when_the_runner_dies_fail_at_once() {
    let backend = Arc::new(open("test-plugin-crashes", "memory-that-crashes").await);
    let started = Instant::now();
    let calls: Vec<_> = (0..64)
        .map(|i| {
            let b = backend.clone();
            tokio::spawn(async move {
                let key = if i == 32 {
                    "abort".into()
                } else {
                    format!("k{i}")
                };
                b.put("ns", &key, write("{}"), Precondition::Any).await
            })
        })
        .collect();
    let mut failed = 0;
    for c in calls {
        match c.await.expect("no call panicked") {
            Ok(_) => {}
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
                failed += 1;
            }
        }
    }
    assert!(failed >= 1, "the aborting call failed");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "calls waited for their timeout: {:?}",
        started.elapsed()
    );
}

/// A plugin that dies at every start of its runner costs a growing wait
/// between starts, never a busy loop of restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_back_off_while_the_runner_keeps_dying() {
    let backend = open("test-plugin-crashes", "memory-that-crashes").await;
    let mut crashes = 0;
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut waits = Vec::new();
    while crashes < 4 && Instant::now() < deadline {
        match backend.get("ns", "abort").await {
            Err(e) => {
                let text = e.to_string();
                assert!(text.contains("SIGABRT"), "{text}");
                match text
                    .split("the next start is in ")
                    .nth(1)
                    .and_then(|t| t.split(' ').next())
                    .and_then(|n| n.parse::<u64>().ok())
                {
                    Some(ms) => {
                        waits.push((crashes, ms));
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    None => crashes += 1,
                }
            }
            Ok(v) => panic!("the plugin aborts on this key, got {v:?}"),
        }
    }
    assert_eq!(crashes, 4, "four runners started and died");
    let last = waits
        .iter()
        .filter(|(c, _)| *c == 3)
        .map(|(_, ms)| *ms)
        .max();
    assert!(
        last.is_some_and(|ms| ms > FIRST_BACKOFF.as_millis() as u64 * 2),
        "the third wait is longer than the first: {waits:?}"
    );
    assert_eq!(backend.stats().counters["plugin_runner_exits"], 4);
}

/// The hostile plugins of the in-process tests, each behind a runner: the
/// same typed errors, and the runner survives them (its pid is unchanged).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extra_answers_are_ignored_in_the_runner() {
    for class in ["twice", "inline-and-callback", "forged"] {
        let backend = open("test-plugin-answers-twice", class).await;
        let before = pid(&backend).await;
        for i in 0..50 {
            let err = backend.get("ns", &format!("k{i}")).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Unavailable, "{class}: {err}");
            assert!(err.to_string().contains("only ever says no"), "{err}");
        }
        assert_eq!(pid(&backend).await, before, "{class}: the runner survived");
        assert_eq!(backend.stats().counters["plugin_runner_exits"], 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_longer_than_its_allocation_is_refused_in_the_runner() {
    let backend = open("test-plugin-answers-twice", "huge-answer").await;
    let err = backend.get("ns", "k").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Plugin, "{err}");
    assert!(err.to_string().contains("buffer rules"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_never_answers_costs_a_bounded_wait_in_the_runner() {
    let mut spec = isolation("test-plugin-answers-twice", Some("never-answers"));
    spec.call_timeout = Duration::from_millis(200);
    let backend = spec.open().await.unwrap();
    let started = Instant::now();
    let err = backend.get("ns", "k").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    let health = tokio::time::timeout(Duration::from_secs(5), backend.health())
        .await
        .expect("health is bounded by the call timeout");
    assert_eq!(health.status, HealthStatus::Down);
    assert!(started.elapsed() < Duration::from_secs(3));
    // the runner answered those timeouts itself: it is not stuck, and stays
    assert_eq!(backend.stats().counters["plugin_runner_exits"], 0);
}

/// A plugin that holds its thread blocks only the runner's: the host's
/// single-threaded runtime keeps ticking, and the deadline bounds the call.
#[test]
fn a_plugin_that_blocks_holds_no_thread_of_the_host() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut spec = isolation("test-plugin-answers-twice", Some("blocks"));
        spec.call_timeout = Duration::from_millis(150);
        let backend = spec.open().await.unwrap();
        let heartbeat = support::Heartbeat::start();
        let started = Instant::now();
        let err = backend.get("ns", "k").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
        assert!(started.elapsed() < Duration::from_millis(280));
        assert!(heartbeat.ticks() >= 5, "the host's thread was blocked");
        drop(heartbeat);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_start_and_a_panic_are_typed_errors_from_the_runner() {
    let err = open_err(isolation("test-plugin-answers-twice", Some("start-fails"))).await;
    assert_eq!(err.kind(), ErrorKind::Plugin, "{err}");
    assert!(err.to_string().contains("failed to start"), "{err}");
    let err = open_err(isolation("test-plugin-panicking", Some("panics-on-create"))).await;
    assert_eq!(err.kind(), ErrorKind::Plugin, "{err}");
    assert!(err.to_string().contains("failed to start"), "{err}");
    let backend = open("test-plugin-panicking", "panics-on-call").await;
    let err = backend.get("ns", "k").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Plugin, "{err}");
    assert!(err.to_string().contains("panicked"), "{err}");
    assert!(backend.health().await.status == HealthStatus::Ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libraries_the_host_refuses_are_refused_by_the_runner() {
    let err = open_err(isolation("test-plugin-wrong-abi", None)).await;
    assert!(err.to_string().contains("ABI 99.0"), "{err}");
    let err = open_err(isolation("test-plugin-no-symbol", None)).await;
    assert!(
        err.to_string().contains("ta_persistence_plugin_v1"),
        "{err}"
    );
    let mut pinned = isolation("plugin-example", Some("memory"));
    pinned.sha256 = Some("0".repeat(64));
    let err = open_err(pinned).await;
    assert_eq!(err.kind(), ErrorKind::Plugin, "{err}");
    assert!(err.to_string().contains("refusing to load"), "{err}");
    let err = open_err(isolation("plugin-example", Some("mongo"))).await;
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.to_string().contains("json-dir, memory"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_runner_is_a_plugin_error_naming_it() {
    let mut spec = isolation("plugin-example", Some("memory"));
    spec.runner = "/no/such/ta-persist-plugin-runner".into();
    let err = open_err(spec).await;
    assert_eq!(err.kind(), ErrorKind::Plugin, "{err}");
    assert!(
        err.to_string()
            .contains("/no/such/ta-persist-plugin-runner"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runner_ends_with_its_backend() {
    let backend = open("plugin-example", "memory").await;
    let pid = pid(&backend).await.expect("a runner");
    let proc = std::path::PathBuf::from(format!("/proc/{pid}"));
    assert!(proc.exists());
    drop(backend);
    let deadline = Instant::now() + Duration::from_secs(5);
    // gone, or a zombie until the link reaps it
    while proc.exists() && !zombie(&proc) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !proc.exists() || zombie(&proc),
        "the runner outlived its backend"
    );
}

fn zombie(proc: &std::path::Path) -> bool {
    std::fs::read_to_string(proc.join("stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .is_some_and(|t| t.trim_start().starts_with('Z'))
    })
}

#[test]
fn the_runner_prints_help_and_refuses_to_run_by_hand() {
    let out = std::process::Command::new(RUNNER)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--socket-on-stdin"));
    let out = std::process::Command::new(RUNNER)
        .arg("--socket-on-stdin")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a socket"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The factory and the settings `extra` make, or the error of either
/// (reading the settings, or opening the backend they choose).
async fn factory_open(
    extra: &[(&str, &str)],
) -> persistence_core::Result<persistence_core::factory::Opened> {
    let module = support::library("test-plugin-crashes");
    let mut env = vec![
        (
            "TA_PERSISTENCE_MODULE".to_string(),
            module.display().to_string(),
        ),
        ("TA_PERSISTENCE_FALLBACK".to_string(), "memory".to_string()),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let mut factory = persistence_core::factory::Factory::new();
    factory.register(Arc::new(persistence_plugin::PluginProvider));
    let settings = factory.settings_from_sources(None, env)?;
    factory.open(&settings).await
}

/// What a deployment sets: `TA_PERSISTENCE__PLUGIN__ISOLATION=process`.
/// Its mistakes are configuration errors, never covered by the fallback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_factory_opens_a_plugin_in_a_runner_and_refuses_wrong_isolation_settings() {
    let opened = factory_open(&[
        ("TA_PERSISTENCE__PLUGIN__ISOLATION", "process"),
        ("TA_PERSISTENCE__PLUGIN__RUNNER", RUNNER),
    ])
    .await
    .unwrap();
    assert!(opened.fallback_cause.is_none());
    assert_eq!(opened.backend.name(), "memory-that-crashes");
    let err = opened.backend.get("ns", "abort").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert_eq!(
        opened.backend.health().await.details["isolation"],
        "process"
    );

    let err = factory_open(&[("TA_PERSISTENCE__PLUGIN__ISOLATION", "thread")])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.to_string().contains("\"none\""), "{err}");
    assert!(err.to_string().contains("\"process\""), "{err}");

    let err = factory_open(&[
        ("TA_PERSISTENCE__PLUGIN__ISOLATION", "process"),
        ("TA_PERSISTENCE__PLUGIN__RUNNER", "/no/such/runner"),
    ])
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.to_string().contains("plugin.runner"), "{err}");
}

/// The layers above a runner do their job across its death: the retry
/// layer carries an upsert over the restart, and the recovery queue holds
/// an insert it may not retry and replays it into the new runner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_and_the_recovery_queue_carry_writes_over_a_runner_restart() {
    let opened = factory_open(&[
        ("TA_PERSISTENCE__PLUGIN__ISOLATION", "process"),
        ("TA_PERSISTENCE__PLUGIN__RUNNER", RUNNER),
        ("TA_PERSISTENCE_FALLBACK", "fail"),
        ("TA_PERSISTENCE__LAYERS", "retry,recovery_queue"),
        ("TA_PERSISTENCE__RETRY__BASE_MS", "60"),
        ("TA_PERSISTENCE__RETRY__MAX_RETRIES", "4"),
    ])
    .await
    .unwrap();
    let backend = opened.backend;
    let err = backend.get("ns", "abort").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    // during the backoff: an upsert is retried until the new runner answers
    backend
        .put("ns", "upsert", write("{}"), Precondition::Any)
        .await
        .expect("retried over the restart");
    // kill the new runner too, then insert: not retried (an insert is not
    // idempotent), so the recovery queue takes it and replays it
    let _ = backend.get("ns", "abort").await;
    let accepted = backend
        .put("ns", "insert", write("{}"), Precondition::Absent)
        .await
        .expect("the recovery queue accepts it");
    assert_eq!(accepted, persistence_core::backend::Version(0), "queued");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(_)) = backend.get("ns", "insert").await {
            break;
        }
        assert!(Instant::now() < deadline, "the queued insert never landed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stats = backend.stats();
    assert!(stats.counters["queue_replayed"] >= 1, "{stats:?}");
    assert!(stats.counters["plugin_runner_exits"] >= 2, "{stats:?}");
}

/// A caller that gives up while its call is starting a new runner (a
/// deadline above it, a dropped future) does not leave the start half done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_gives_up_during_a_restart_leaves_no_wedge() {
    let backend = open("test-plugin-crashes", "memory-that-crashes").await;
    let _ = backend.get("ns", "abort").await;
    after_backoff().await;
    for _ in 0..3 {
        // far too short for a runner to start: dropped mid-start
        let _ = tokio::time::timeout(Duration::from_micros(100), backend.get("ns", "k")).await;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match backend.get("ns", "k").await {
            Ok(found) => break assert_eq!(found, None),
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
                assert!(Instant::now() < deadline, "never restarted: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    assert_eq!(backend.stats().counters["plugin_runner_restarts"], 1);
}

/// A runner that sends nothing back for a whole call timeout is stuck
/// (here: the plugin holds the runner's thread in its first call; a plugin
/// that merely never answers gets its `Timeout` from the runner, which is
/// not stuck): it is stopped, and the call after the backoff meets a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_runner_is_stopped_and_replaced() {
    let mut spec = isolation("test-plugin-answers-twice", Some("blocks"));
    spec.call_timeout = Duration::from_millis(100);
    let backend = spec.open().await.unwrap();
    let err = backend.get("ns", "k").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while backend.stats().counters["plugin_runner_exits"] == 0 {
        assert!(
            Instant::now() < deadline,
            "the silent runner was never stopped"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    after_backoff().await;
    let err = backend.get("ns", "k").await.unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::Timeout,
        "a new runner took the call: {err}"
    );
    assert_eq!(backend.stats().counters["plugin_runner_restarts"], 1);
}
