//! The queue conformance cases: what every `RunQueue` engine keeps.
//!
//! An engine's test file is one macro call with a factory that opens a
//! fresh, empty queue with the given rules:
//!
//! ```no_run
//! persistence_conformance::queue_conformance_tests!(|options| async move {
//!     std::sync::Arc::new(persistence_core::queue::MemoryQueue::new(options))
//!         as persistence_core::queue::SharedQueue
//! });
//! ```
//!
//! Cases run in real time with short leases (a few hundred ms), so they
//! hold on any engine whose clock is not the test's (Redis uses its
//! server's).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use persistence_core::queue::{
    CancelOutcome, Enqueued, FailOutcome, JobState, Lease, ListFilter, NewJob, Priority,
    QueueOptions, SharedQueue, Worker, WorkerOptions,
};
use persistence_core::ErrorKind;

/// Generates one `#[tokio::test]` per queue case, each calling
/// [`run_queue_case`] with the factory.
#[macro_export]
macro_rules! queue_conformance_tests {
    ($factory:expr) => {
        $crate::__with_queue_case_names! { ($crate::__queue_case_fns) ($factory) }
    };
}

/// The one list of queue cases.
#[doc(hidden)]
#[macro_export]
macro_rules! __with_queue_case_names {
    (($($callback:tt)*) ($($args:tt)*)) => {
        $($callback)*! { ($($args)*)
            enqueue_is_idempotent_and_claims_are_fifo,
            priorities_go_first_and_age,
            claim_waits_for_a_job_and_times_out,
            not_before_delays_a_job,
            heartbeat_keeps_the_lease,
            expired_lease_is_redelivered_and_the_old_holder_fenced,
            fail_retries_with_backoff_then_dead_letters,
            release_does_not_count_an_attempt,
            cancel_pending_and_running,
            ended_status_is_kept_then_purged,
            pending_timeout_fails_stale_jobs,
            concurrent_sweepers_do_no_double_work,
            many_workers_complete_each_job_once,
            worker_passes_cancellation_and_releases_at_shutdown,
            stats_report_depth_running_and_workers,
            bad_input_is_refused,
            clear_removes_every_job_and_fences_its_holders,
            model_based_queue_matches_a_model,
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __queue_case_fns {
    (($factory:expr) $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                $crate::run_queue_case(stringify!($name), $factory).await;
            }
        )*
    };
}

macro_rules! define_queue_cases {
    (() $($name:ident),* $(,)?) => {
        /// Every queue case's name, in a stable order.
        pub static QUEUE_CASES: &[&str] = &[$(stringify!($name)),*];
    };
}
crate::__with_queue_case_names! { (define_queue_cases) () }

const MS: Duration = Duration::from_millis(1);

fn ms(n: u64) -> Duration {
    MS * n as u32
}

/// Rules for the cases: short backoff, no aging unless asked.
fn base() -> QueueOptions {
    QueueOptions {
        backoff_base: ms(200),
        backoff_max: ms(400),
        priority_step: Duration::from_secs(3600),
        ..QueueOptions::default()
    }
}

/// Runs the queue case `name` on queues made by `factory`.
pub async fn run_queue_case<F, Fut>(name: &str, factory: F)
where
    F: Fn(QueueOptions) -> Fut,
    Fut: Future<Output = SharedQueue>,
{
    match name {
        "enqueue_is_idempotent_and_claims_are_fifo" => fifo(factory(base()).await).await,
        "priorities_go_first_and_age" => {
            priorities(factory(base()).await).await;
            let aging = QueueOptions {
                priority_step: ms(150),
                ..base()
            };
            aging_case(factory(aging).await).await
        }
        "claim_waits_for_a_job_and_times_out" => claim_waits(factory(base()).await).await,
        "not_before_delays_a_job" => not_before(factory(base()).await).await,
        "heartbeat_keeps_the_lease" => heartbeat(factory(base()).await).await,
        "expired_lease_is_redelivered_and_the_old_holder_fenced" => {
            fencing(factory(base()).await).await
        }
        "fail_retries_with_backoff_then_dead_letters" => {
            let two = QueueOptions {
                max_attempts: 2,
                ..base()
            };
            retries(factory(two).await).await
        }
        "release_does_not_count_an_attempt" => release(factory(base()).await).await,
        "cancel_pending_and_running" => cancel(factory(base()).await).await,
        "ended_status_is_kept_then_purged" => {
            let short = QueueOptions {
                retain_ended: ms(300),
                ..base()
            };
            retention(factory(short).await).await
        }
        "pending_timeout_fails_stale_jobs" => {
            let short = QueueOptions {
                pending_timeout: Some(ms(200)),
                ..base()
            };
            pending_timeout(factory(short).await).await
        }
        "concurrent_sweepers_do_no_double_work" => sweepers(factory(base()).await).await,
        "many_workers_complete_each_job_once" => many_workers(factory(base()).await).await,
        "worker_passes_cancellation_and_releases_at_shutdown" => {
            worker_cancel(factory(base()).await).await
        }
        "stats_report_depth_running_and_workers" => stats(factory(base()).await).await,
        "bad_input_is_refused" => bad_input(factory(base()).await).await,
        "clear_removes_every_job_and_fences_its_holders" => clear(factory(base()).await).await,
        "model_based_queue_matches_a_model" => {
            let slow = QueueOptions {
                backoff_base: Duration::from_secs(3600),
                backoff_max: Duration::from_secs(3600),
                ..base()
            };
            crate::queue_model::run(factory(slow).await).await
        }
        other => panic!("no queue case {other}"),
    }
}

async fn claim_now(q: &SharedQueue, worker: &str, lease: Duration) -> Option<Lease> {
    q.claim(worker, lease, Duration::ZERO).await.unwrap()
}

async fn must_claim(q: &SharedQueue, worker: &str, lease: Duration) -> Lease {
    q.claim(worker, lease, Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{worker}: no job within 5 s"))
}

async fn state_of(q: &SharedQueue, id: &str) -> JobState {
    q.status(id)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{id} is unknown"))
        .state
}

fn assert_lost<T: std::fmt::Debug>(what: &str, r: persistence_core::Result<T>) {
    match r {
        Err(e) => assert_eq!(e.kind(), ErrorKind::LeaseLost, "{what}: {e}"),
        Ok(v) => panic!("{what} with a stale lease succeeded: {v:?}"),
    }
}

async fn fifo(q: SharedQueue) {
    for id in ["a", "b", "c"] {
        assert_eq!(
            q.enqueue(NewJob::new(id, format!("payload {id}")))
                .await
                .unwrap(),
            Enqueued::Created
        );
    }
    assert_eq!(
        q.enqueue(NewJob::new("a", "again")).await.unwrap(),
        Enqueued::Exists(JobState::Pending),
        "enqueueing a known id again is reported"
    );
    let mut tokens = Vec::new();
    for id in ["a", "b", "c"] {
        let lease = must_claim(&q, "w", Duration::from_secs(30)).await;
        assert_eq!(lease.id, id, "FIFO within a priority");
        assert_eq!(
            lease.payload,
            format!("payload {id}").as_bytes(),
            "the first payload is kept"
        );
        assert_eq!(lease.attempt, 1);
        tokens.push(lease.token);
        q.complete(&lease, None).await.unwrap();
    }
    assert!(
        tokens.windows(2).all(|w| w[0] < w[1]),
        "tokens increase: {tokens:?}"
    );
    assert!(claim_now(&q, "w", Duration::from_secs(30)).await.is_none());
    assert_eq!(
        q.enqueue(NewJob::new("a", "later")).await.unwrap(),
        Enqueued::Exists(JobState::Completed),
        "an ended job's id is still known while its status is kept"
    );
}

async fn priorities(q: SharedQueue) {
    let jobs = [
        ("low-1", Priority::Low),
        ("normal-1", Priority::Normal),
        ("high-1", Priority::High),
        ("low-2", Priority::Low),
        ("high-2", Priority::High),
        ("normal-2", Priority::Normal),
    ];
    for (id, p) in jobs {
        q.enqueue(NewJob::new(id, "").priority(p)).await.unwrap();
    }
    let mut order = Vec::new();
    while let Some(lease) = claim_now(&q, "w", Duration::from_secs(30)).await {
        order.push(lease.id.clone());
        q.complete(&lease, None).await.unwrap();
    }
    assert_eq!(
        order,
        ["high-1", "high-2", "normal-1", "normal-2", "low-1", "low-2"]
    );
}

async fn aging_case(q: SharedQueue) {
    // step 150 ms: a low job waiting > 300 ms goes before a new high one
    q.enqueue(NewJob::new("old-low", "").priority(Priority::Low))
        .await
        .unwrap();
    tokio::time::sleep(ms(450)).await;
    q.enqueue(NewJob::new("new-high", "").priority(Priority::High))
        .await
        .unwrap();
    let first = must_claim(&q, "w", Duration::from_secs(30)).await;
    assert_eq!(
        first.id, "old-low",
        "aging lets a long-waiting low job go first"
    );
    let second = must_claim(&q, "w", Duration::from_secs(30)).await;
    assert_eq!(second.id, "new-high");
}

async fn claim_waits(q: SharedQueue) {
    let started = Instant::now();
    let none = q
        .claim("w", Duration::from_secs(30), ms(300))
        .await
        .unwrap();
    assert!(none.is_none());
    let waited = started.elapsed();
    assert!(waited >= ms(250), "a claim waits its time ({waited:?})");
    assert!(
        waited < Duration::from_secs(3),
        "and not much longer ({waited:?})"
    );

    let waiter = {
        let q = q.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let lease = q
                .claim("w", Duration::from_secs(30), Duration::from_secs(8))
                .await;
            (lease, started.elapsed())
        })
    };
    tokio::time::sleep(ms(200)).await;
    q.enqueue(NewJob::new("late", "")).await.unwrap();
    let (lease, took) = waiter.await.unwrap();
    assert_eq!(lease.unwrap().unwrap().id, "late");
    assert!(
        took < Duration::from_secs(4),
        "a waiting claim wakes for a new job ({took:?})"
    );
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

async fn not_before(q: SharedQueue) {
    q.enqueue(NewJob::new("later", "").not_before(now_ms() + 500))
        .await
        .unwrap();
    assert!(
        claim_now(&q, "w", Duration::from_secs(30)).await.is_none(),
        "not before its time"
    );
    let status = q.status("later").await.unwrap().unwrap();
    assert_eq!(status.state, JobState::Pending);
    let started = Instant::now();
    let lease = must_claim(&q, "w", Duration::from_secs(30)).await;
    assert_eq!(lease.id, "later");
    assert!(
        started.elapsed() >= ms(300),
        "claimed at its time, not before"
    );
}

async fn heartbeat(q: SharedQueue) {
    q.enqueue(NewJob::new("beat", "")).await.unwrap();
    // a 1 s lease beaten every 200 ms for 1.4 s: a loaded machine may
    // stall a beat by most of a second and the lease still holds
    let lease = must_claim(&q, "w1", ms(1000)).await;
    for _ in 0..7 {
        tokio::time::sleep(ms(200)).await;
        let hb = q.heartbeat(&lease, ms(1000)).await.unwrap();
        assert!(!hb.cancel_requested);
        assert!(hb.deadline_ms >= lease.deadline_ms);
        q.sweep_once().await.unwrap();
    }
    let status = q.status("beat").await.unwrap().unwrap();
    assert_eq!(
        status.state,
        JobState::Running,
        "heartbeats kept the lease past its first deadline"
    );
    assert_eq!(status.worker.as_deref(), Some("w1"));
    assert!(status.lease_deadline_ms.is_some());
    assert!(
        claim_now(&q, "w2", ms(400)).await.is_none(),
        "a kept lease is not redelivered"
    );
    q.complete(&lease, None).await.unwrap();
}

async fn fencing(q: SharedQueue) {
    q.enqueue(NewJob::new("job", "")).await.unwrap();
    let old = must_claim(&q, "w1", ms(200)).await;
    tokio::time::sleep(ms(400)).await;
    let report = q.sweep_once().await.unwrap();
    assert_eq!(report.requeued, 1, "{report:?}");
    let new = must_claim(&q, "w2", Duration::from_secs(30)).await;
    assert_eq!(
        (new.id.as_str(), new.attempt),
        ("job", 2),
        "redelivered with its attempt counted"
    );
    assert!(new.token > old.token, "a new lease has a greater token");
    assert_lost(
        "heartbeat",
        q.heartbeat(&old, Duration::from_secs(30)).await,
    );
    assert_lost("complete", q.complete(&old, Some("stale".into())).await);
    assert_lost("fail", q.fail(&old, "stale").await);
    assert_lost("release", q.release(&old).await);
    let status = q.status("job").await.unwrap().unwrap();
    assert_eq!(
        status.state,
        JobState::Running,
        "stale calls changed nothing"
    );
    assert_eq!(status.worker.as_deref(), Some("w2"));
    assert_eq!(status.attempts, 2);
    q.complete(&new, Some("fresh".into())).await.unwrap();
    let status = q.status("job").await.unwrap().unwrap();
    assert_eq!(status.state, JobState::Completed);
    assert_eq!(status.result.as_deref(), Some(&b"fresh"[..]));
    assert_lost("complete after the end", q.complete(&new, None).await);

    // a claim alone redelivers an expired lease, without a sweeper
    q.enqueue(NewJob::new("job-2", "")).await.unwrap();
    let first = must_claim(&q, "w1", ms(200)).await;
    tokio::time::sleep(ms(400)).await;
    let again = must_claim(&q, "w2", Duration::from_secs(30)).await;
    assert_eq!((again.id.as_str(), again.attempt), ("job-2", 2));
    assert_lost("heartbeat", q.heartbeat(&first, ms(200)).await);
}

async fn retries(q: SharedQueue) {
    q.enqueue(NewJob::new("flaky", "")).await.unwrap();
    let first = must_claim(&q, "w", Duration::from_secs(30)).await;
    let before = now_ms();
    let FailOutcome::Retry { at_ms } = q.fail(&first, "boom 1").await.unwrap() else {
        panic!("the first failure retries");
    };
    assert!(
        at_ms + 50 >= before + 200,
        "backoff applies (at {at_ms}, failed at {before})"
    );
    assert!(
        claim_now(&q, "w", Duration::from_secs(30)).await.is_none(),
        "not during its backoff"
    );
    let status = q.status("flaky").await.unwrap().unwrap();
    assert_eq!((status.state, status.attempts), (JobState::Pending, 1));
    assert_eq!(status.error.as_deref(), Some("boom 1"));
    let second = must_claim(&q, "w", Duration::from_secs(30)).await;
    assert_eq!(second.attempt, 2);
    assert_eq!(q.fail(&second, "boom 2").await.unwrap(), FailOutcome::Dead);
    let status = q.status("flaky").await.unwrap().unwrap();
    assert_eq!((status.state, status.attempts), (JobState::Dead, 2));
    assert_eq!(status.error.as_deref(), Some("boom 2"));
    assert!(
        claim_now(&q, "w", Duration::from_secs(30)).await.is_none(),
        "dead jobs are not claimed"
    );
    let dead = q
        .list(ListFilter {
            state: Some(JobState::Dead),
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(
        dead.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        ["flaky"]
    );
    assert_eq!(q.requeue_dead().await.unwrap(), 1);
    let again = must_claim(&q, "w", Duration::from_secs(30)).await;
    assert_eq!(
        (again.id.as_str(), again.attempt),
        ("flaky", 1),
        "requeued with fresh attempts"
    );
    q.complete(&again, None).await.unwrap();

    // a job's own limit wins over the queue's
    q.enqueue(NewJob::new("once", "").max_attempts(1))
        .await
        .unwrap();
    let only = must_claim(&q, "w", Duration::from_secs(30)).await;
    assert_eq!(q.fail(&only, "no retry").await.unwrap(), FailOutcome::Dead);
}

async fn release(q: SharedQueue) {
    q.enqueue(NewJob::new("job", "")).await.unwrap();
    let first = must_claim(&q, "w1", Duration::from_secs(30)).await;
    q.release(&first).await.unwrap();
    let status = q.status("job").await.unwrap().unwrap();
    assert_eq!((status.state, status.attempts), (JobState::Pending, 0));
    let second = must_claim(&q, "w2", Duration::from_secs(30)).await;
    assert_eq!(second.attempt, 1, "a release does not count an attempt");
    assert_lost("release twice", q.release(&first).await);
    q.complete(&second, None).await.unwrap();
}

async fn cancel(q: SharedQueue) {
    q.enqueue(NewJob::new("pending", "")).await.unwrap();
    assert_eq!(q.cancel("pending").await.unwrap(), CancelOutcome::Cancelled);
    assert_eq!(state_of(&q, "pending").await, JobState::Cancelled);
    assert!(
        claim_now(&q, "w", Duration::from_secs(30)).await.is_none(),
        "a cancelled job is not claimed"
    );
    assert_eq!(
        q.cancel("pending").await.unwrap(),
        CancelOutcome::AlreadyEnded(JobState::Cancelled)
    );
    assert_eq!(q.cancel("nobody").await.unwrap(), CancelOutcome::NotFound);

    q.enqueue(NewJob::new("running", "")).await.unwrap();
    let lease = must_claim(&q, "w", Duration::from_secs(30)).await;
    let mut signal = q.cancellation(&lease).await.unwrap();
    assert!(!signal.is_cancelled());
    assert_eq!(q.cancel("running").await.unwrap(), CancelOutcome::Signalled);
    tokio::time::timeout(Duration::from_secs(5), signal.cancelled())
        .await
        .expect("the holder is signalled within 5 s");
    let late = q.cancellation(&lease).await.unwrap();
    assert!(
        late.is_cancelled(),
        "a holder that listens late still sees it"
    );
    assert!(
        q.heartbeat(&lease, Duration::from_secs(30))
            .await
            .unwrap()
            .cancel_requested
    );
    assert_eq!(
        state_of(&q, "running").await,
        JobState::Running,
        "running until the holder acknowledges"
    );
    q.release(&lease).await.unwrap();
    assert_eq!(state_of(&q, "running").await, JobState::Cancelled);

    // a cancelled holder that dies: the lease expiry ends it cancelled
    q.enqueue(NewJob::new("dies", "")).await.unwrap();
    let lease = must_claim(&q, "w", ms(200)).await;
    assert_eq!(q.cancel("dies").await.unwrap(), CancelOutcome::Signalled);
    tokio::time::sleep(ms(400)).await;
    let report = q.sweep_once().await.unwrap();
    assert_eq!(report.cancelled, 1, "{report:?}");
    assert_eq!(state_of(&q, "dies").await, JobState::Cancelled);
    assert_lost("complete", q.complete(&lease, None).await);

    q.enqueue(NewJob::new("done", "")).await.unwrap();
    let lease = must_claim(&q, "w", Duration::from_secs(30)).await;
    q.complete(&lease, None).await.unwrap();
    assert_eq!(
        q.cancel("done").await.unwrap(),
        CancelOutcome::AlreadyEnded(JobState::Completed)
    );
}

async fn retention(q: SharedQueue) {
    q.enqueue(NewJob::new("kept", "")).await.unwrap();
    let lease = must_claim(&q, "w", Duration::from_secs(30)).await;
    q.complete(&lease, Some("result".into())).await.unwrap();
    let status = q.status("kept").await.unwrap().unwrap();
    assert_eq!(status.state, JobState::Completed);
    assert_eq!(status.result.as_deref(), Some(&b"result"[..]));
    q.sweep_once().await.unwrap();
    assert!(
        q.status("kept").await.unwrap().is_some(),
        "kept for its retention"
    );
    tokio::time::sleep(ms(500)).await;
    let report = q.sweep_once().await.unwrap();
    assert_eq!(report.purged, 1, "{report:?}");
    assert!(
        q.status("kept").await.unwrap().is_none(),
        "gone after its retention"
    );
    assert_eq!(
        q.enqueue(NewJob::new("kept", "")).await.unwrap(),
        Enqueued::Created,
        "a purged id can be used again"
    );
}

async fn pending_timeout(q: SharedQueue) {
    q.enqueue(NewJob::new("stale", "")).await.unwrap();
    tokio::time::sleep(ms(400)).await;
    let report = q.sweep_once().await.unwrap();
    assert_eq!(report.failed, 1, "{report:?}");
    let status = q.status("stale").await.unwrap().unwrap();
    assert_eq!(status.state, JobState::Failed);
    assert!(status.error.is_some());
    assert!(claim_now(&q, "w", Duration::from_secs(30)).await.is_none());
}

async fn sweepers(q: SharedQueue) {
    const N: usize = 20;
    for i in 0..N {
        q.enqueue(NewJob::new(format!("job-{i:02}"), ""))
            .await
            .unwrap();
    }
    for _ in 0..N {
        must_claim(&q, "dies", ms(200)).await;
    }
    tokio::time::sleep(ms(400)).await;
    let sweeps: Vec<_> = (0..4)
        .map(|_| {
            let q = q.clone();
            tokio::spawn(async move { q.sweep_once().await.unwrap() })
        })
        .collect();
    let mut requeued = 0;
    for s in sweeps {
        requeued += s.await.unwrap().requeued;
    }
    assert_eq!(
        requeued, N as u64,
        "four sweepers at once requeue each expired lease once"
    );
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..N {
        let lease = must_claim(&q, "w", Duration::from_secs(30)).await;
        assert_eq!(lease.attempt, 2);
        assert!(seen.insert(lease.id.clone()), "{} claimed twice", lease.id);
    }
    assert!(claim_now(&q, "w", Duration::from_secs(30)).await.is_none());
}

async fn many_workers(q: SharedQueue) {
    const JOBS: usize = 200;
    for i in 0..JOBS {
        let p = Priority::ALL[i % 3];
        q.enqueue(NewJob::new(format!("run-{i:03}"), format!("{i}")).priority(p))
            .await
            .unwrap();
    }
    let runs: Arc<Mutex<BTreeMap<String, u32>>> = Arc::default();
    let (done_tx, done_rx) = tokio::sync::watch::channel(false);
    let mut workers = Vec::new();
    for w in 0..8 {
        let worker = Worker::new(
            q.clone(),
            WorkerOptions {
                id: format!("w{w}"),
                concurrency: 4,
                lease: Duration::from_secs(30),
                heartbeat_interval: Duration::from_secs(5),
                claim_wait: ms(100),
                shutdown_deadline: Duration::from_secs(5),
            },
        );
        let runs = runs.clone();
        let mut done = done_rx.clone();
        workers.push(tokio::spawn(async move {
            worker
                .run(
                    move |ctx| {
                        let runs = runs.clone();
                        async move {
                            *runs.lock().entry(ctx.lease.id.clone()).or_default() += 1;
                            tokio::task::yield_now().await;
                            Ok(Some(ctx.lease.payload))
                        }
                    },
                    async move {
                        let _ = done.wait_for(|d| *d).await;
                    },
                )
                .await
        }));
    }
    let started = Instant::now();
    loop {
        let stats = q.stats().await.unwrap();
        if stats.ended.get("completed").copied().unwrap_or(0) == JOBS as u64 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "200 jobs not done in 60 s: {stats:?}"
        );
        tokio::time::sleep(ms(50)).await;
    }
    done_tx.send_replace(true);
    let mut completed = 0;
    for w in workers {
        let report = w.await.unwrap();
        completed += report.completed;
        assert_eq!(report.lease_lost, 0, "{report:?}");
        assert_eq!(report.failed, 0, "{report:?}");
    }
    assert_eq!(completed, JOBS as u64);
    let runs = runs.lock().clone();
    assert_eq!(runs.len(), JOBS);
    assert!(runs.values().all(|n| *n == 1), "each job ran exactly once");
    let status = q.status("run-007").await.unwrap().unwrap();
    assert_eq!(status.result.as_deref(), Some(&b"7"[..]));
}

async fn worker_cancel(q: SharedQueue) {
    q.enqueue(NewJob::new("to-cancel", "")).await.unwrap();
    q.enqueue(NewJob::new("long", "")).await.unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let worker = Worker::new(
        q.clone(),
        WorkerOptions {
            id: "w".into(),
            concurrency: 2,
            lease: ms(800),
            heartbeat_interval: ms(200),
            claim_wait: ms(100),
            shutdown_deadline: ms(300),
        },
    );
    let run = tokio::spawn(async move {
        worker
            .run(
                |mut ctx| async move {
                    if ctx.lease.id == "to-cancel" {
                        ctx.cancellation.cancelled().await;
                        Err("cancelled".to_string())
                    } else {
                        // runs until stopped: heartbeats keep its short lease
                        ctx.cancellation.cancelled().await;
                        Err("stopped".to_string())
                    }
                },
                async move {
                    let _ = stop_rx.await;
                },
            )
            .await
    });
    let started = Instant::now();
    while state_of(&q, "long").await != JobState::Running
        || state_of(&q, "to-cancel").await != JobState::Running
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the worker did not claim both"
        );
        tokio::time::sleep(ms(20)).await;
    }
    assert_eq!(
        q.cancel("to-cancel").await.unwrap(),
        CancelOutcome::Signalled
    );
    let started = Instant::now();
    while state_of(&q, "to-cancel").await != JobState::Cancelled {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the handler did not see the cancel"
        );
        tokio::time::sleep(ms(20)).await;
    }
    // heartbeats kept "long" past its 800 ms lease
    tokio::time::sleep(ms(1200)).await;
    assert_eq!(state_of(&q, "long").await, JobState::Running);
    let _ = stop_tx.send(());
    let report = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("shutdown within its deadline")
        .unwrap();
    assert_eq!(report.cancelled, 1, "{report:?}");
    assert_eq!(report.released, 1, "{report:?}");
    let status = q.status("long").await.unwrap().unwrap();
    assert_eq!(
        (status.state, status.attempts),
        (JobState::Pending, 0),
        "released at shutdown"
    );
}

async fn stats(q: SharedQueue) {
    for (id, p) in [
        ("h", Priority::High),
        ("n1", Priority::Normal),
        ("n2", Priority::Normal),
        ("l", Priority::Low),
    ] {
        q.enqueue(NewJob::new(id, "").priority(p)).await.unwrap();
    }
    q.enqueue(NewJob::new("later", "").not_before(now_ms() + 60_000))
        .await
        .unwrap();
    tokio::time::sleep(ms(50)).await;
    let s = q.stats().await.unwrap();
    assert_eq!(s.ready.get("high"), Some(&1), "{s:?}");
    assert_eq!(s.ready.get("normal"), Some(&2), "{s:?}");
    assert_eq!(s.ready.get("low"), Some(&1), "{s:?}");
    assert_eq!(s.delayed, 1, "{s:?}");
    assert_eq!(s.running, 0);
    assert!(s.oldest_ready_age_ms.is_some_and(|a| a >= 40), "{s:?}");
    let lease = must_claim(&q, "stats-worker", Duration::from_secs(30)).await;
    let d = q.stats().await.unwrap();
    assert_eq!(d.running, 1);
    assert!(d.workers.contains_key("stats-worker"), "{d:?}");
    q.fail(&lease, "x").await.unwrap();
    let lease = must_claim(&q, "stats-worker", Duration::from_secs(30)).await;
    q.complete(&lease, None).await.unwrap();
    let e = q.stats().await.unwrap();
    assert_eq!(e.ended.get("completed"), Some(&1), "{e:?}");
}

async fn bad_input(q: SharedQueue) {
    for job in [
        NewJob::new("", ""),
        NewJob::new("x".repeat(513), ""),
        NewJob::new("ok", "").max_attempts(0),
    ] {
        let err = q.enqueue(job).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    }
    let err = q
        .claim("", Duration::from_secs(1), Duration::ZERO)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    q.enqueue(NewJob::new("big", "")).await.unwrap();
    let lease = must_claim(&q, "w", Duration::from_secs(30)).await;
    let err = q
        .complete(&lease, Some(vec![0u8; 64 * 1024 + 1].into()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert_eq!(
        state_of(&q, "big").await,
        JobState::Running,
        "a refused call changes nothing"
    );
    // a lease for a job the queue never had
    let forged = Lease {
        id: "never".into(),
        token: lease.token,
        ..lease.clone()
    };
    assert_lost("forged", q.complete(&forged, None).await);
    let forged = Lease {
        token: lease.token + 1000,
        ..lease.clone()
    };
    assert_lost(
        "forged token",
        q.heartbeat(&forged, Duration::from_secs(1)).await,
    );
    // ids are opaque bytes
    for id in ["with space", "ünïcödé", "a:b:{c}", "*", "--"] {
        q.enqueue(NewJob::new(id, id)).await.unwrap();
        assert_eq!(q.status(id).await.unwrap().unwrap().id, id);
    }
}

async fn clear(q: SharedQueue) {
    for id in ["p", "r", "d", "e"] {
        q.enqueue(NewJob::new(id, "")).await.unwrap();
    }
    q.enqueue(NewJob::new("later", "").not_before(now_ms() + 60_000))
        .await
        .unwrap();
    let r = must_claim(&q, "w", Duration::from_secs(30)).await;
    let d = must_claim(&q, "w", Duration::from_secs(30)).await;
    q.complete(&d, None).await.unwrap();
    assert_eq!(q.clear().await.unwrap(), 5);
    for id in ["p", "r", "d", "e", "later"] {
        assert!(q.status(id).await.unwrap().is_none(), "{id} is gone");
    }
    assert_lost("complete after a clear", q.complete(&r, None).await);
    let s = q.stats().await.unwrap();
    assert_eq!((s.running, s.delayed), (0, 0), "{s:?}");
    assert!(s.ready.values().all(|n| *n == 0), "{s:?}");
    assert!(s.ended.values().all(|n| *n == 0), "{s:?}");
    q.enqueue(NewJob::new("r", "")).await.unwrap();
    let again = must_claim(&q, "w", Duration::from_secs(30)).await;
    assert!(
        again.token > r.token,
        "tokens keep increasing after a clear"
    );
    assert_lost(
        "the old lease on the new job",
        q.heartbeat(&r, Duration::from_secs(1)).await,
    );
    assert_eq!(q.clear().await.unwrap(), 1);
    assert_eq!(q.clear().await.unwrap(), 0);
}

/// Runs every queue case ([`QUEUE_CASES`]) on queues from `factory`, each
/// in its own task with `timeout`, and reports every outcome; after each
/// case every queue it opened is cleared (bounded), so a run against a
/// shared server or the configured database leaves no job behind. Needs a
/// multi-threaded tokio runtime.
pub async fn run_all_queue<F, Fut>(factory: F, timeout: Duration) -> Vec<crate::CaseReport>
where
    F: Fn(QueueOptions) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = SharedQueue> + Send + 'static,
{
    let mut reports = Vec::with_capacity(QUEUE_CASES.len());
    for &name in QUEUE_CASES {
        let opened: Arc<Mutex<Vec<SharedQueue>>> = Arc::default();
        let tracked = {
            let (factory, opened) = (factory.clone(), opened.clone());
            move |options: QueueOptions| {
                let (factory, opened) = (factory.clone(), opened.clone());
                async move {
                    let q = factory(options).await;
                    opened.lock().push(q.clone());
                    q
                }
            }
        };
        let started = Instant::now();
        let mut task = tokio::spawn(run_queue_case(name, tracked));
        let outcome = match tokio::time::timeout(timeout, &mut task).await {
            Ok(Ok(())) => crate::CaseOutcome::Passed,
            Ok(Err(e)) => crate::CaseOutcome::Failed(crate::runner::panic_message(e)),
            Err(_) => {
                task.abort();
                crate::CaseOutcome::Failed(format!("did not finish within {timeout:?}"))
            }
        };
        let queues: Vec<SharedQueue> = opened.lock().drain(..).collect();
        for q in queues {
            let _ = tokio::time::timeout(Duration::from_secs(10), q.clear()).await;
        }
        reports.push(crate::CaseReport {
            name,
            outcome,
            elapsed: started.elapsed(),
        });
    }
    reports
}
