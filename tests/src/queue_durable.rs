//! What a durable queue keeps across a restart and across SIGKILL, for
//! every embedded engine.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use persistence_core::queue::{FailOutcome, JobState, ListFilter, NewJob, SharedQueue};
use persistence_core::ErrorKind;

/// Opens the queue in the database at `dir/file`, closes it, opens it
/// again and checks each kind of job came back as it was: pending stays
/// pending, a leased job keeps its lease (its holder may go on) and comes
/// back once it expires, with a greater token; delayed, completed (with
/// its result) and dead jobs are as they were.
pub async fn queue_restart_test<F, Fut>(file: &str, open: F)
where
    F: Fn(PathBuf) -> Fut,
    Fut: Future<Output = SharedQueue>,
{
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(file);
    let later = now_ms() + 60_000;
    let (leased, leased_2) = {
        let q = open(path.clone()).await;
        for id in ["a-pending", "b-leased", "c-completed"] {
            q.enqueue(NewJob::new(id, id)).await.unwrap();
        }
        q.enqueue(NewJob::new("e-dead", "").max_attempts(1))
            .await
            .unwrap();
        q.enqueue(NewJob::new("f-leased-long", "")).await.unwrap();
        q.enqueue(NewJob::new("d-delayed", "").not_before(later))
            .await
            .unwrap();
        let claim = |lease: Duration, want: &'static str| {
            let q = q.clone();
            async move {
                let l = q.claim("w", lease, Duration::ZERO).await.unwrap().unwrap();
                assert_eq!(l.id, want);
                l
            }
        };
        let long = Duration::from_secs(30);
        let a = claim(long, "a-pending").await;
        q.release(&a).await.unwrap(); // back in line, last
        let b = claim(Duration::from_millis(600), "b-leased").await;
        let c = claim(long, "c-completed").await;
        q.complete(&c, Some("result".into())).await.unwrap();
        let e = claim(long, "e-dead").await;
        assert_eq!(q.fail(&e, "boom").await.unwrap(), FailOutcome::Dead);
        let f = claim(long, "f-leased-long").await;
        (b, f)
    };
    // every handle to the file is gone: open it again
    let q = open(path.clone()).await;
    let state = |id: &'static str| {
        let q = q.clone();
        async move {
            q.status(id)
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("{id} lost"))
        }
    };
    assert_eq!(state("a-pending").await.state, JobState::Pending);
    assert_eq!(state("d-delayed").await.state, JobState::Pending);
    assert_eq!(state("d-delayed").await.ready_ms, later);
    let c = state("c-completed").await;
    assert_eq!(c.state, JobState::Completed);
    assert_eq!(c.result.as_deref(), Some(&b"result"[..]));
    assert_eq!(state("e-dead").await.state, JobState::Dead);
    assert_eq!(state("f-leased-long").await.state, JobState::Running);
    q.heartbeat(&leased_2, Duration::from_secs(30))
        .await
        .expect("a live lease survives the restart");
    q.complete(&leased_2, None).await.unwrap();
    // b's lease (600 ms) runs out: it comes back with its attempt counted
    tokio::time::sleep(Duration::from_millis(800)).await;
    let mut seen = Vec::new();
    while let Some(l) = q
        .claim("w2", Duration::from_secs(30), Duration::ZERO)
        .await
        .unwrap()
    {
        if l.id == "b-leased" {
            assert!(l.token > leased.token, "tokens go on above the old ones");
            assert_eq!(l.attempt, leased.attempt + 1);
        }
        seen.push(l.id.clone());
    }
    assert!(seen.contains(&"b-leased".to_string()), "{seen:?}");
    assert!(seen.contains(&"a-pending".to_string()), "{seen:?}");
    let err = q.complete(&leased, None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LeaseLost, "{err}");
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

const WRITER_VARIABLE: &str = "TA_QUEUE_CRASH_WRITER";

/// `rounds` times: the test binary runs again (as the test named
/// `test_name`, which calls this) and enqueues, claims and completes jobs
/// on the queue `open` opens in `dir/file`, acknowledging each call on
/// stderr, until SIGKILLed at a random point; the queue is then reopened
/// and every acknowledged enqueue must be known and every acknowledged
/// completion completed, and every job must read back. Between rounds, the
/// jobs the killed writer held come back after their lease, so the next
/// writer completes them: at the end, every acknowledged job is completed
/// exactly... at least once, none lost.
pub async fn queue_crash_test<F, Fut>(test_name: &str, file: &str, rounds: u64, open: F)
where
    F: Fn(PathBuf) -> Fut,
    Fut: Future<Output = SharedQueue>,
{
    if let Ok(spec) = std::env::var(WRITER_VARIABLE) {
        let (first, path) = spec.split_once(' ').expect("FIRST PATH");
        let q = open(PathBuf::from(path)).await;
        write_until_killed(q, first.parse().expect("FIRST")).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(file);
    let mut enqueued: Vec<String> = Vec::new();
    let mut completed: BTreeMap<String, u32> = BTreeMap::new();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for round in 0..rounds {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let pause = Duration::from_millis(150 + seed % 500);
        let acks = run_writer(test_name, &path, round * 1_000_000, pause);
        for (op, id) in acks {
            match op.as_str() {
                "enqueue" => enqueued.push(id),
                "complete" => *completed.entry(id).or_default() += 1,
                other => panic!("unknown op {other}"),
            }
        }
        let q = open(path.clone()).await;
        for id in &enqueued {
            let s = q
                .status(id)
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("round {round}: acknowledged job {id} lost"));
            if completed.contains_key(id) {
                assert_eq!(s.state, JobState::Completed, "round {round}: {id}");
            }
        }
        let all = q
            .list(ListFilter {
                state: None,
                limit: 1_000_000,
            })
            .await
            .unwrap();
        assert!(all.len() >= enqueued.len(), "round {round}");
    }
    // the last writer's leases expire (2 s); drain everything that is left
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    let q = open(path.clone()).await;
    while let Some(l) = q
        .claim("drain", Duration::from_secs(30), Duration::from_millis(100))
        .await
        .unwrap()
    {
        q.complete(&l, None).await.unwrap();
        *completed.entry(l.id.clone()).or_default() += 1;
    }
    for id in &enqueued {
        let s = q.status(id).await.unwrap().unwrap();
        assert_eq!(s.state, JobState::Completed, "{id} never completed");
    }
    assert!(
        enqueued.len() > 10,
        "the writers did little: {}",
        enqueued.len()
    );
}

fn run_writer(test_name: &str, path: &Path, first: u64, pause: Duration) -> Vec<(String, String)> {
    let lines = crate::writer_process::run_until_killed(
        test_name,
        WRITER_VARIABLE,
        &format!("{first} {}", path.display()),
        &["ack "],
        pause,
    );
    lines
        .iter()
        .map(|l| {
            let mut parts = l.splitn(3, ' ');
            parts.next();
            (
                parts.next().unwrap().to_string(),
                parts.next().unwrap().to_string(),
            )
        })
        .collect()
}

/// Enqueues job N, and after every second one claims a job (2 s lease)
/// and completes every other claim, forever.
async fn write_until_killed(q: SharedQueue, first: u64) -> ! {
    for n in first.. {
        let id = format!("job-{n}");
        q.enqueue(NewJob::new(&id, format!("{n}"))).await.unwrap();
        crate::writer_process::say(&format!("ack enqueue {id}"));
        if n % 2 == 1 {
            if let Some(l) = q
                .claim("writer", Duration::from_secs(2), Duration::ZERO)
                .await
                .unwrap()
            {
                if n % 4 == 1 {
                    q.complete(&l, None).await.unwrap();
                    crate::writer_process::say(&format!("ack complete {}", l.id));
                }
            }
        }
    }
    unreachable!()
}
