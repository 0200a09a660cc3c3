//! Plugins that break the ABI's rules on purpose: the host answers each
//! call once with a typed error, ignores and counts every extra answer, and
//! never touches memory it freed (run under valgrind to see it:
//! `valgrind --error-exitcode=9 target/debug/deps/hostile-*`).

mod support;

use std::time::{Duration, Instant};

use persistence_core::{Backend, ErrorKind};
use persistence_plugin::{ignored_answers, PluginBackend, PluginLibrary};

fn open(class: &str) -> PluginBackend {
    PluginLibrary::load(&support::library("test-plugin-answers-twice"), None)
        .expect("load the hostile plugin")
        .create(Some(class), b"{}")
        .expect("start its backend")
}

/// Runs `calls` gets, each of which must fail with the plugin's error, then
/// waits for the plugin's extra answers to be ignored and counted.
async fn each_call_answered_once(class: &str, calls: u64) {
    let backend = open(class);
    let before = ignored_answers();
    for i in 0..calls {
        let err = backend
            .get("ns", &format!("k{i}"))
            .await
            .expect_err("the plugin only says no");
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while ignored_answers() - before < calls && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // other tests of this binary may add to the process-wide counter
    assert!(
        ignored_answers() - before >= calls,
        "{class}: {} extra answers counted for {calls} calls",
        ignored_answers() - before
    );
    assert!(backend.stats().counters["plugin_ignored_answers"] >= calls);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_answer_to_one_call_is_ignored() {
    each_call_answered_once("twice", 300).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_after_an_inline_answer_is_ignored() {
    each_call_answered_once("inline-and-callback", 300).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_callback_context_is_ignored() {
    each_call_answered_once("forged", 300).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extra_answers_do_not_disturb_concurrent_calls() {
    let backend = std::sync::Arc::new(open("twice"));
    let calls = (0..8).map(|t| {
        let b = backend.clone();
        tokio::spawn(async move {
            for i in 0..100 {
                let err = b.get("ns", &format!("{t}-{i}")).await.unwrap_err();
                assert_eq!(err.kind(), ErrorKind::Unavailable);
            }
        })
    });
    for c in calls {
        c.await.expect("no call panicked");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_longer_than_its_allocation_is_refused_unread() {
    let backend = open("huge-answer");
    let err = backend.get("ns", "k").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Plugin, "{err}");
    assert!(err.to_string().contains("buffer rules"), "{err}");
}

#[test]
fn an_instance_handed_over_with_a_start_error_is_destroyed() {
    let path = support::library("test-plugin-answers-twice");
    let lib = PluginLibrary::load(&path, None).unwrap();
    // SAFETY: the test plugin exports this counter with this signature
    let destroyed = unsafe {
        let raw = Box::leak(Box::new(libloading::Library::new(&path).unwrap()));
        *raw.get::<unsafe extern "C" fn() -> usize>(b"answers_twice_destroyed")
            .unwrap()
    };
    // SAFETY: as above
    let before = unsafe { destroyed() };
    let err = lib.create(Some("start-fails"), b"{}").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Plugin, "{err}");
    assert!(err.to_string().contains("failed to start"), "{err}");
    // SAFETY: as above
    assert_eq!(unsafe { destroyed() }, before + 1, "the instance leaked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_never_answers_costs_a_bounded_wait() {
    let backend = open("never-answers").with_call_timeout(Duration::from_millis(200));
    let started = Instant::now();
    let err = backend.get("ns", "k").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(err.to_string().contains("get"), "{err}");
    let health = tokio::time::timeout(Duration::from_secs(5), backend.health())
        .await
        .expect("health is bounded by the call timeout too");
    assert_eq!(health.status, persistence_core::backend::HealthStatus::Down);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

/// A plugin whose `call` holds the caller's thread: after the first such
/// call the host calls it off the runtime's threads, so a single-threaded
/// runtime keeps running other tasks, and the call deadline bounds it.
#[test]
fn a_plugin_that_blocks_its_callers_thread_is_moved_off_it() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let backend = open("blocks").with_call_timeout(Duration::from_millis(150));
        // the first call blocks the only thread (300 ms): the host notices
        let err = backend.get("ns", "k").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
        let heartbeat = support::Heartbeat::start();
        let started = Instant::now();
        let err = backend.get("ns", "k").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
        assert!(
            started.elapsed() < Duration::from_millis(280),
            "the deadline did not bound it: {:?}",
            started.elapsed()
        );
        assert!(heartbeat.ticks() >= 5, "the runtime's thread was blocked");
        drop(heartbeat);
        // it still answers, off the runtime's threads, when given the time
        let slow = open("blocks").with_call_timeout(Duration::from_secs(5));
        let _ = slow.get("ns", "warm-up").await; // marks it
        let err = slow.get("ns", "k").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    });
}
