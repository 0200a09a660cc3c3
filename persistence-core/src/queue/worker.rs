//! `Worker`: claims jobs and runs a handler on them, with heartbeats,
//! cancellation and graceful shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::{watch, Semaphore};

use super::{FailOutcome, Lease, SharedQueue};
use crate::error::ErrorKind;
use crate::streams::Cancellation;

/// How a [`Worker`] runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerOptions {
    /// Its id, shown in job statuses and stats.
    pub id: String,
    /// Jobs run at once.
    pub concurrency: usize,
    /// Each lease's length, renewed by every heartbeat (the seed's
    /// `WORKER_HEARTBEAT_TTL`, 60 s).
    pub lease: Duration,
    /// Time between heartbeats (`WORKER_HEARTBEAT_INTERVAL`, 30 s); keep
    /// it well under `lease`.
    pub heartbeat_interval: Duration,
    /// How long one claim waits for a job; also the longest a shutdown
    /// waits for a claim in progress.
    pub claim_wait: Duration,
    /// After a shutdown is asked for, how long running jobs may take to
    /// finish before they are stopped and released.
    pub shutdown_deadline: Duration,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            id: format!("worker-{}", std::process::id()),
            concurrency: 4,
            lease: Duration::from_secs(60),
            heartbeat_interval: Duration::from_secs(30),
            claim_wait: Duration::from_secs(1),
            shutdown_deadline: Duration::from_secs(30),
        }
    }
}

/// What a handler gets: the lease (job id, payload, attempt, token) and a
/// signal that fires when the job is cancelled, its lease is lost, or the
/// shutdown deadline passed. A handler that sees it should stop and return
/// an error; its result is then ignored (lost lease) or ends the job
/// cancelled.
#[derive(Debug, Clone)]
pub struct JobContext {
    /// The job's lease.
    pub lease: Lease,
    /// Fires when the handler should stop.
    pub cancellation: Cancellation,
}

/// What a worker did, counted by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct WorkerReport {
    /// Jobs claimed.
    pub claimed: u64,
    /// Jobs the handler completed.
    pub completed: u64,
    /// Failed attempts (retried or dead-lettered).
    pub failed: u64,
    /// Jobs that ended cancelled.
    pub cancelled: u64,
    /// Jobs given back at shutdown.
    pub released: u64,
    /// Jobs whose lease was lost (another worker has them now).
    pub lease_lost: u64,
    /// Queue calls that failed (claims and reports; retried or given up).
    pub errors: u64,
}

/// Claims jobs from a queue and runs a handler on each, `concurrency` at a
/// time, each with its own heartbeat timer.
///
/// ```
/// use std::{sync::Arc, time::Duration};
/// use persistence_core::queue::{MemoryQueue, NewJob, RunQueue, Worker, WorkerOptions};
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let queue = Arc::new(MemoryQueue::new(Default::default()));
/// queue.enqueue(NewJob::new("run-1", "hi")).await.unwrap();
/// let worker = Worker::new(queue.clone(), WorkerOptions { claim_wait: Duration::from_millis(20), ..Default::default() });
/// let report = worker
///     .run(
///         |ctx| async move { Ok(Some(ctx.lease.payload)) },
///         tokio::time::sleep(Duration::from_millis(200)),
///     )
///     .await;
/// assert_eq!(report.completed, 1);
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct Worker {
    queue: SharedQueue,
    options: WorkerOptions,
}

impl Worker {
    /// A worker on `queue`.
    pub fn new(queue: SharedQueue, options: WorkerOptions) -> Self {
        Worker { queue, options }
    }

    /// Runs until `shutdown` resolves: then stops claiming, waits up to
    /// the shutdown deadline for running jobs, stops and releases the rest
    /// (their next holder starts them over), and returns what it did.
    /// The handler returns the job's result, or an error text (the attempt
    /// failed).
    pub async fn run<H, F>(
        &self,
        handler: H,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> WorkerReport
    where
        H: Fn(JobContext) -> F + Send + Sync + 'static,
        F: Future<Output = Result<Option<Bytes>, String>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let report = Arc::new(Mutex::new(WorkerReport::default()));
        let slots = Arc::new(Semaphore::new(self.options.concurrency.max(1)));
        let (stopping_tx, mut stopping) = watch::channel(false);
        let (abort_tx, abort) = watch::channel(false);
        let on_shutdown = tokio::spawn(async move {
            shutdown.await;
            stopping_tx.send_replace(true);
        });
        let mut jobs = tokio::task::JoinSet::new();
        let mut backoff = Duration::from_millis(50);
        while !*stopping.borrow() {
            let permit = tokio::select! {
                p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
                _ = stopping.changed() => break,
            };
            while jobs.try_join_next().is_some() {}
            match self
                .queue
                .claim(
                    &self.options.id,
                    self.options.lease,
                    self.options.claim_wait,
                )
                .await
            {
                Ok(Some(lease)) => {
                    backoff = Duration::from_millis(50);
                    report.lock().claimed += 1;
                    let job = Job {
                        queue: self.queue.clone(),
                        options: self.options.clone(),
                        report: report.clone(),
                        abort: abort.clone(),
                    };
                    let handler = handler.clone();
                    jobs.spawn(async move {
                        job.run(lease, handler).await;
                        drop(permit);
                    });
                }
                Ok(None) => {}
                Err(e) => {
                    report.lock().errors += 1;
                    tracing::warn!(worker = %self.options.id, error = %e, "claim failed; retrying in {backoff:?}");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stopping.changed() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        on_shutdown.abort();
        let drained = tokio::time::timeout(self.options.shutdown_deadline, async {
            while jobs.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            abort_tx.send_replace(true);
            // each job releases its lease: bounded by the queue's own call deadline
            let _ = tokio::time::timeout(Duration::from_secs(30), async {
                while jobs.join_next().await.is_some() {}
            })
            .await;
            jobs.abort_all();
        }
        let out = *report.lock();
        out
    }
}

struct Job {
    queue: SharedQueue,
    options: WorkerOptions,
    report: Arc<Mutex<WorkerReport>>,
    abort: watch::Receiver<bool>,
}

impl Job {
    async fn run<H, F>(self, lease: Lease, handler: Arc<H>)
    where
        H: Fn(JobContext) -> F + Send + Sync + 'static,
        F: Future<Output = Result<Option<Bytes>, String>> + Send + 'static,
    {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut cancelled = self.queue.cancellation(&lease).await.ok();
        let work = handler(JobContext {
            lease: lease.clone(),
            cancellation: Cancellation::new(stop_rx),
        });
        tokio::pin!(work);
        let mut abort = self.abort.clone();
        let every = self
            .options
            .heartbeat_interval
            .max(Duration::from_millis(10));
        let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        let outcome = loop {
            let listening = cancelled.is_some() && !*stop_tx.borrow();
            tokio::select! {
                out = &mut work => break Some(out),
                _ = beat.tick() => match self.queue.heartbeat(&lease, self.options.lease).await {
                    Ok(hb) if hb.cancel_requested => { stop_tx.send_replace(true); }
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::LeaseLost => {
                        tracing::warn!(job = %lease.id, error = %e, "lease lost; stopping the handler");
                        stop_tx.send_replace(true);
                        break None;
                    }
                    Err(e) => {
                        self.report.lock().errors += 1;
                        tracing::warn!(job = %lease.id, error = %e, "heartbeat failed; trying again next beat");
                    }
                },
                _ = async { cancelled.as_mut().expect("listening").cancelled().await }, if listening => {
                    stop_tx.send_replace(true);
                }
                _ = async { let _ = abort.wait_for(|a| *a).await; } => {
                    stop_tx.send_replace(true);
                    let released = self.queue.release(&lease).await;
                    self.count(released.map(|_| Outcome::Released));
                    return;
                }
            }
        };
        let result = match outcome {
            None => Ok(Outcome::Lost),
            Some(Ok(result)) => self
                .queue
                .complete(&lease, result)
                .await
                .map(|_| Outcome::Completed),
            Some(Err(error)) => self.queue.fail(&lease, &error).await.map(|o| match o {
                FailOutcome::Cancelled => Outcome::Cancelled,
                _ => Outcome::Failed,
            }),
        };
        self.count(result);
    }

    fn count(&self, result: crate::Result<Outcome>) {
        let mut r = self.report.lock();
        match result {
            Ok(Outcome::Completed) => r.completed += 1,
            Ok(Outcome::Failed) => r.failed += 1,
            Ok(Outcome::Cancelled) => r.cancelled += 1,
            Ok(Outcome::Released) => r.released += 1,
            Ok(Outcome::Lost) => r.lease_lost += 1,
            Err(e) if e.kind() == ErrorKind::LeaseLost => r.lease_lost += 1,
            Err(e) => {
                r.errors += 1;
                tracing::warn!(error = %e, "reporting a job's outcome failed; its lease will expire and it runs again");
            }
        }
    }
}

enum Outcome {
    Completed,
    Failed,
    Cancelled,
    Released,
    Lost,
}
