//! Random operation sequences against a queue engine and a reference model.
//!
//! Five job ids, three workers, long leases and a backoff of an hour (so
//! time plays no part: the case holds on engines whose clock is not the
//! test's), and random enqueues, claims, heartbeats, completes, fails,
//! releases, cancels and calls with stale leases. After every step the
//! engine's answer must be the model's, and every job's state, attempts
//! and priority must agree. The model is a plain list, written apart from
//! the engines' state machine.

use std::time::{Duration, Instant};

use persistence_core::queue::{
    CancelOutcome, Enqueued, FailOutcome, JobState, Lease, NewJob, Priority, SharedQueue,
};
use persistence_core::ErrorKind;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

const IDS: u8 = 5;
const MAX_ATTEMPTS: u32 = 2;
const LONG: Duration = Duration::from_secs(3600);
const BUDGET: Duration = Duration::from_secs(240);

#[derive(Debug, Clone)]
enum Op {
    Enqueue {
        id: u8,
        priority: u8,
    },
    Claim {
        worker: u8,
    },
    /// On the k-th lease taken so far (mod how many), live or stale.
    Heartbeat {
        k: u8,
    },
    Complete {
        k: u8,
    },
    Fail {
        k: u8,
    },
    Release {
        k: u8,
    },
    Cancel {
        id: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..IDS, 0..3u8).prop_map(|(id, priority)| Op::Enqueue { id, priority }),
        3 => (0..3u8).prop_map(|worker| Op::Claim { worker }),
        1 => any::<u8>().prop_map(|k| Op::Heartbeat { k }),
        2 => any::<u8>().prop_map(|k| Op::Complete { k }),
        2 => any::<u8>().prop_map(|k| Op::Fail { k }),
        1 => any::<u8>().prop_map(|k| Op::Release { k }),
        1 => (0..IDS).prop_map(|id| Op::Cancel { id }),
    ]
}

#[derive(Debug, Clone)]
struct Job {
    id: String,
    state: JobState,
    priority: Priority,
    attempts: u32,
    /// When it last became claimable (a step number); `None` while not.
    ready_at: Option<u64>,
    cancel: bool,
    /// Which of `leases` is its live one, while running.
    lease: Option<usize>,
}

#[derive(Default)]
struct Model {
    jobs: Vec<Job>,
    step: u64,
}

impl Model {
    fn job(&mut self, id: &str) -> Option<&mut Job> {
        self.jobs.iter_mut().find(|j| j.id == id)
    }

    /// Whether lease `k` is its job's live one.
    fn live(&self, k: usize, id: &str) -> bool {
        self.jobs
            .iter()
            .any(|j| j.id == id && j.state == JobState::Running && j.lease == Some(k))
    }

    /// The job a claim takes: highest priority, then longest ready.
    fn next(&self) -> Option<usize> {
        self.jobs
            .iter()
            .enumerate()
            .filter(|(_, j)| j.state == JobState::Pending && j.ready_at.is_some())
            .min_by_key(|(_, j)| (j.priority, j.ready_at))
            .map(|(i, _)| i)
    }
}

struct Run<'a> {
    q: &'a SharedQueue,
    model: Model,
    leases: Vec<Lease>,
}

fn name(id: u8) -> String {
    format!("job-{id}")
}

impl Run<'_> {
    /// Lets the next step start in a later millisecond, so "became
    /// claimable first" means the same to the model and to an engine that
    /// orders by milliseconds (the engine's tie-break is enqueue order).
    async fn tick(&mut self) {
        self.model.step += 1;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }

    fn lease(&self, k: u8) -> Option<(usize, Lease)> {
        if self.leases.is_empty() {
            return None;
        }
        let k = k as usize % self.leases.len();
        Some((k, self.leases[k].clone()))
    }

    async fn apply(&mut self, op: &Op) -> Result<(), String> {
        let q = self.q;
        match *op {
            Op::Enqueue { id, priority } => {
                let priority = Priority::ALL[priority as usize];
                let got = q
                    .enqueue(
                        NewJob::new(name(id), "")
                            .priority(priority)
                            .max_attempts(MAX_ATTEMPTS),
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                let step = self.model.step;
                let want = match self.model.job(&name(id)) {
                    Some(j) => Enqueued::Exists(j.state),
                    None => {
                        self.model.jobs.push(Job {
                            id: name(id),
                            state: JobState::Pending,
                            priority,
                            attempts: 0,
                            ready_at: Some(step),
                            cancel: false,
                            lease: None,
                        });
                        Enqueued::Created
                    }
                };
                if got != want {
                    return Err(format!("enqueue: {got:?}, the model says {want:?}"));
                }
                self.tick().await;
            }
            Op::Claim { worker } => {
                let got = q
                    .claim(&format!("w{worker}"), LONG, Duration::ZERO)
                    .await
                    .map_err(|e| e.to_string())?;
                let want = self.model.next();
                match (got, want) {
                    (None, None) => {}
                    (Some(l), Some(i)) => {
                        let k = self.leases.len();
                        let j = &mut self.model.jobs[i];
                        if l.id != j.id {
                            return Err(format!("claimed {}, the model says {}", l.id, j.id));
                        }
                        j.state = JobState::Running;
                        j.attempts += 1;
                        j.ready_at = None;
                        j.lease = Some(k);
                        if l.attempt != j.attempts {
                            return Err(format!(
                                "attempt {}, the model says {}",
                                l.attempt, j.attempts
                            ));
                        }
                        if let Some(prev) = self.leases.last() {
                            if l.token <= prev.token {
                                return Err(format!("token {} after {}", l.token, prev.token));
                            }
                        }
                        self.leases.push(l);
                    }
                    (got, want) => {
                        return Err(format!(
                            "claim got {:?}, the model says {:?}",
                            got.map(|l| l.id),
                            want.map(|i| self.model.jobs[i].id.clone())
                        ))
                    }
                }
            }
            Op::Heartbeat { k } | Op::Complete { k } | Op::Fail { k } | Op::Release { k } => {
                let Some((k, lease)) = self.lease(k) else {
                    return Ok(());
                };
                let live = self.model.live(k, &lease.id);
                let result: persistence_core::Result<Option<FailOutcome>> = match op {
                    Op::Heartbeat { .. } => q.heartbeat(&lease, LONG).await.map(|_| None),
                    Op::Complete { .. } => q.complete(&lease, None).await.map(|_| None),
                    Op::Fail { .. } => q.fail(&lease, "boom").await.map(Some),
                    _ => q.release(&lease).await.map(|_| None),
                };
                match (result, live) {
                    (Err(e), false) if e.kind() == ErrorKind::LeaseLost => return Ok(()),
                    (Err(e), _) => return Err(format!("{op:?}: {e} (live in the model: {live})")),
                    (Ok(_), false) => return Err(format!("{op:?} with a stale lease succeeded")),
                    (Ok(outcome), true) => {
                        let step = self.model.step;
                        let j = self.model.job(&lease.id).expect("live");
                        match op {
                            Op::Heartbeat { .. } => {}
                            Op::Complete { .. } => {
                                j.state = JobState::Completed;
                                j.lease = None;
                            }
                            Op::Fail { .. } => {
                                j.lease = None;
                                let want = if j.cancel {
                                    j.state = JobState::Cancelled;
                                    "cancelled"
                                } else if j.attempts >= MAX_ATTEMPTS {
                                    j.state = JobState::Dead;
                                    "dead"
                                } else {
                                    // backoff of an hour: pending, not claimable
                                    j.state = JobState::Pending;
                                    "retry"
                                };
                                let got = match outcome {
                                    Some(FailOutcome::Cancelled) => "cancelled",
                                    Some(FailOutcome::Dead) => "dead",
                                    _ => "retry",
                                };
                                if got != want {
                                    return Err(format!("fail: {got}, the model says {want}"));
                                }
                            }
                            _ => {
                                j.lease = None;
                                if j.cancel {
                                    j.state = JobState::Cancelled;
                                } else {
                                    j.state = JobState::Pending;
                                    j.attempts -= 1;
                                    j.ready_at = Some(step);
                                }
                                self.tick().await;
                            }
                        }
                    }
                }
            }
            Op::Cancel { id } => {
                let got = q.cancel(&name(id)).await.map_err(|e| e.to_string())?;
                let want = match self.model.job(&name(id)) {
                    None => CancelOutcome::NotFound,
                    Some(j) => match j.state {
                        JobState::Pending => {
                            j.state = JobState::Cancelled;
                            j.cancel = true;
                            j.ready_at = None;
                            CancelOutcome::Cancelled
                        }
                        JobState::Running => {
                            j.cancel = true;
                            CancelOutcome::Signalled
                        }
                        s => CancelOutcome::AlreadyEnded(s),
                    },
                };
                if got != want {
                    return Err(format!("cancel: {got:?}, the model says {want:?}"));
                }
            }
        }
        self.compare().await
    }

    async fn compare(&self) -> Result<(), String> {
        for id in 0..IDS {
            let got = self.q.status(&name(id)).await.map_err(|e| e.to_string())?;
            let want = self.model.jobs.iter().find(|j| j.id == name(id));
            match (got, want) {
                (None, None) => {}
                (Some(s), Some(j)) => {
                    if (s.state, s.attempts, s.priority, s.cancel_requested)
                        != (j.state, j.attempts, j.priority, j.cancel)
                    {
                        return Err(format!(
                            "{}: {:?}/{} attempts/{:?}/cancel {}, the model says {:?}/{}/{:?}/{}",
                            j.id,
                            s.state,
                            s.attempts,
                            s.priority,
                            s.cancel_requested,
                            j.state,
                            j.attempts,
                            j.priority,
                            j.cancel
                        ));
                    }
                }
                (got, want) => return Err(format!("{}: engine {got:?}, model {want:?}", name(id))),
            }
        }
        Ok(())
    }
}

async fn check(q: &SharedQueue, ops: &[Op]) -> Result<(), String> {
    q.clear().await.map_err(|e| e.to_string())?;
    let mut run = Run {
        q,
        model: Model::default(),
        leases: Vec::new(),
    };
    for (i, op) in ops.iter().enumerate() {
        run.apply(op)
            .await
            .map_err(|e| format!("step {i} ({op:?}): {e}"))?;
    }
    Ok(())
}

/// Runs 24 random sequences of up to 40 operations on `q` (cleared before
/// each), shrinking a failure to a minimal one.
pub async fn run(q: SharedQueue) {
    tokio::task::block_in_place(move || {
        let handle = tokio::runtime::Handle::current();
        let started = Instant::now();
        let mut runner = TestRunner::new(Config {
            cases: 24,
            failure_persistence: None,
            ..Config::default()
        });
        let result = runner.run(&prop::collection::vec(op(), 1..40), |ops| {
            if started.elapsed() > BUDGET {
                return Err(TestCaseError::fail("ran out of time"));
            }
            handle
                .block_on(check(&q, &ops))
                .map_err(TestCaseError::fail)
        });
        if let Err(e) = result {
            panic!("the queue differs from the model: {e}");
        }
    });
}
