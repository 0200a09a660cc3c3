//! A durable run queue: the `RunQueue` contract beside [`Backend`](crate::Backend).
//!
//! The API enqueues a run; a worker claims it under a **lease** carrying a
//! **fencing token**, heartbeats to keep it, and completes, fails (retried
//! with backoff, then dead-lettered) or releases it. A lease that expires
//! (the worker died) returns the job to the queue with its attempt counted;
//! the worker that lost it can no longer change anything: every call with a
//! stale lease fails with [`Error::LeaseLost`]. `docs/queue.md` states the
//! guarantees each engine gives and their limits.
//!
//! ```
//! use std::time::Duration;
//! use persistence_core::queue::{JobState, MemoryQueue, NewJob, QueueOptions, RunQueue};
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let queue = MemoryQueue::new(QueueOptions::default());
//! queue.enqueue(NewJob::new("run-1", "payload")).await.unwrap();
//! let lease = queue
//!     .claim("worker-a", Duration::from_secs(60), Duration::from_secs(1))
//!     .await
//!     .unwrap()
//!     .expect("a job is ready");
//! assert_eq!((lease.id.as_str(), lease.attempt), ("run-1", 1));
//! queue.complete(&lease, Some("done".into())).await.unwrap();
//! let status = queue.status("run-1").await.unwrap().unwrap();
//! assert_eq!(status.state, JobState::Completed);
//! # });
//! ```

mod local;
mod state;
mod sweeper;
mod typed;
mod worker;

pub use local::{Journal, LocalQueue, MemoryQueue, NoJournal, WeakLocalQueue};
pub use state::{Clock, JobRecord, ManualClock, QueueState, SystemClock};
pub use sweeper::Sweeper;
pub use typed::{JsonLease, JsonQueue};
pub use worker::{JobContext, Worker, WorkerOptions, WorkerReport};

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::backend::Health;
use crate::error::{Error, Result};
use crate::streams::Cancellation;

/// How urgent a job is. Claims take higher priorities first, FIFO within a
/// priority, with aging so a steady stream of high jobs cannot starve low
/// ones: a job's place in line is its ready time minus
/// [`QueueOptions::priority_step`] per level above low. With the default
/// step of 60 s a high job goes before a normal one that became ready up to
/// 60 s earlier and before a low one up to 120 s earlier, and never before
/// one that has waited longer than that.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Goes first.
    High,
    /// The default.
    #[default]
    Normal,
    /// Goes last.
    Low,
}

impl Priority {
    /// Every priority, highest first.
    pub const ALL: [Priority; 3] = [Priority::High, Priority::Normal, Priority::Low];

    /// Levels above low (high 2, normal 1, low 0).
    pub fn boost(self) -> u64 {
        match self {
            Priority::High => 2,
            Priority::Normal => 1,
            Priority::Low => 0,
        }
    }

    /// Its name (`high`, `normal`, `low`).
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Priority {
    type Err = Error;

    fn from_str(s: &str) -> Result<Priority> {
        Priority::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                Error::InvalidInput(format!("{s:?} is not a priority (high, normal, low)"))
            })
    }
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Waiting to be claimed (possibly not before a time: a delay, or a
    /// retry's backoff).
    Pending,
    /// Leased to a worker.
    Running,
    /// Ended: the worker completed it.
    Completed,
    /// Ended: it stayed pending longer than the pending timeout.
    Failed,
    /// Ended: its attempts ran out (dead-lettered; `requeue_dead` retries it).
    Dead,
    /// Ended: cancelled.
    Cancelled,
}

impl JobState {
    /// Every state.
    pub const ALL: [JobState; 6] = [
        JobState::Pending,
        JobState::Running,
        JobState::Completed,
        JobState::Failed,
        JobState::Dead,
        JobState::Cancelled,
    ];

    /// Whether the job has ended (kept for the retention time, then removed).
    pub fn is_ended(self) -> bool {
        !matches!(self, JobState::Pending | JobState::Running)
    }

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Completed => "completed",
            JobState::Failed => "failed",
            JobState::Dead => "dead",
            JobState::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobState {
    type Err = Error;

    fn from_str(s: &str) -> Result<JobState> {
        JobState::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                Error::InvalidInput(format!(
                    "{s:?} is not a job state (pending, running, completed, failed, dead, cancelled)"
                ))
            })
    }
}

/// A job to enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    /// Its id: enqueueing an id the queue still knows is reported, not duplicated.
    pub id: String,
    /// Its bytes (the run's input).
    pub payload: Bytes,
    /// How urgent it is.
    pub priority: Priority,
    /// Not claimable before this time (milliseconds since the Unix epoch).
    pub not_before_ms: Option<u64>,
    /// Attempts before it is dead-lettered (default: the queue's).
    pub max_attempts: Option<u32>,
}

impl NewJob {
    /// A normal-priority job, ready now, with the queue's attempt limit.
    pub fn new(id: impl Into<String>, payload: impl Into<Bytes>) -> Self {
        NewJob {
            id: id.into(),
            payload: payload.into(),
            priority: Priority::Normal,
            not_before_ms: None,
            max_attempts: None,
        }
    }

    /// The same job with priority `priority`.
    pub fn priority(self, priority: Priority) -> Self {
        NewJob { priority, ..self }
    }

    /// The same job, not claimable before `at_ms` (ms since the Unix epoch).
    pub fn not_before(self, at_ms: u64) -> Self {
        NewJob {
            not_before_ms: Some(at_ms),
            ..self
        }
    }

    /// The same job, dead-lettered after `attempts` attempts.
    pub fn max_attempts(self, attempts: u32) -> Self {
        NewJob {
            max_attempts: Some(attempts),
            ..self
        }
    }

    /// Checks the id and the attempt limit.
    pub fn validate(&self) -> Result<()> {
        if self.id.is_empty() || self.id.len() > MAX_ID_LEN {
            return Err(Error::InvalidInput(format!(
                "a job id must have 1 to {MAX_ID_LEN} bytes (got {})",
                self.id.len()
            )));
        }
        if self.payload.len() > MAX_PAYLOAD_LEN {
            return Err(Error::InvalidInput(format!(
                "a job payload has at most {MAX_PAYLOAD_LEN} bytes (got {})",
                self.payload.len()
            )));
        }
        if self.max_attempts == Some(0) {
            return Err(Error::InvalidInput(
                "max_attempts must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// The longest job id, in bytes.
pub const MAX_ID_LEN: usize = 512;

/// The largest job payload, in bytes (16 MiB: a run's input, not its data).
pub const MAX_PAYLOAD_LEN: usize = 16 * 1024 * 1024;

/// The largest `complete` result and `fail` error kept, in bytes.
pub const MAX_RESULT_LEN: usize = 64 * 1024;

/// What `enqueue` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    /// The job is new and queued.
    Created,
    /// A job with this id is known (in this state); nothing changed.
    Exists(JobState),
}

/// A claimed job: the holder's proof, for every later call on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The job's id.
    pub id: String,
    /// The job's bytes.
    pub payload: Bytes,
    /// The job's priority.
    pub priority: Priority,
    /// Which attempt this is (1 for the first claim; a release does not count).
    pub attempt: u32,
    /// The fencing token: strictly greater than every earlier lease's of
    /// this queue; a call whose token is not the job's current one is
    /// refused with [`Error::LeaseLost`].
    pub token: u64,
    /// Who holds it.
    pub worker: String,
    /// When it expires unless extended (ms since the Unix epoch, by the
    /// engine's clock: the Redis server's on Redis).
    pub deadline_ms: u64,
}

/// What a heartbeat learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    /// The lease's new deadline (ms since the Unix epoch).
    pub deadline_ms: u64,
    /// Whether the job was cancelled: the holder should stop and release it.
    pub cancel_requested: bool,
}

/// What `fail` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailOutcome {
    /// It will be retried, not before this time (ms since the Unix epoch).
    Retry {
        /// When it becomes claimable again.
        at_ms: u64,
    },
    /// Its attempts ran out: dead-lettered.
    Dead,
    /// It had been cancelled: it ended cancelled.
    Cancelled,
}

/// What `cancel` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// It was pending: cancelled at once.
    Cancelled,
    /// It is running: its holder was signalled; it ends cancelled when the
    /// holder acknowledges (release or fail) or its lease expires.
    Signalled,
    /// It had already ended in this state; nothing changed.
    AlreadyEnded(JobState),
    /// No job has this id.
    NotFound,
}

/// What the queue knows of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobStatus {
    /// The job's id.
    pub id: String,
    /// Where it is.
    pub state: JobState,
    /// Its priority.
    pub priority: Priority,
    /// Attempts so far (claims; releases do not count).
    pub attempts: u32,
    /// Attempts before it is dead-lettered.
    pub max_attempts: u32,
    /// When it was enqueued (ms since the Unix epoch).
    pub enqueued_ms: u64,
    /// When it becomes (or became) claimable.
    pub ready_ms: u64,
    /// When it last changed state.
    pub updated_ms: u64,
    /// Who holds it (running) or held it last.
    pub worker: Option<String>,
    /// The lease's deadline, while running.
    pub lease_deadline_ms: Option<u64>,
    /// Whether a cancel was asked for.
    pub cancel_requested: bool,
    /// The last `fail` error, or why the queue ended it.
    pub error: Option<String>,
    /// What `complete` stored (not in the JSON form; see [`JobStatus::result_bytes`]).
    #[serde(skip)]
    pub result: Option<Bytes>,
}

impl JobStatus {
    /// The stored result.
    pub fn result_bytes(&self) -> Option<&Bytes> {
        self.result.as_ref()
    }
}

/// Which jobs `list` returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// Only jobs in this state.
    pub state: Option<JobState>,
    /// At most this many (0: the default of 100).
    pub limit: usize,
}

/// What one sweep did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SweepReport {
    /// Expired leases returned to the queue (attempt counted).
    pub requeued: u64,
    /// Expired leases whose attempts ran out (dead-lettered).
    pub dead: u64,
    /// Expired leases of cancelled jobs (ended cancelled).
    pub cancelled: u64,
    /// Jobs pending longer than the pending timeout (failed).
    pub failed: u64,
    /// Ended jobs past their retention (removed).
    pub purged: u64,
}

impl SweepReport {
    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: SweepReport) {
        self.requeued += other.requeued;
        self.dead += other.dead;
        self.cancelled += other.cancelled;
        self.failed += other.failed;
        self.purged += other.purged;
    }
}

/// Depth and activity of a queue.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct QueueStats {
    /// Claimable-now pending jobs per priority (`high`, `normal`, `low`).
    pub ready: std::collections::BTreeMap<String, u64>,
    /// Pending jobs waiting for a time (delay or retry backoff).
    pub delayed: u64,
    /// Leased jobs.
    pub running: u64,
    /// Ended jobs still kept, per state.
    pub ended: std::collections::BTreeMap<String, u64>,
    /// Age of the oldest claimable job, in ms.
    pub oldest_ready_age_ms: Option<u64>,
    /// Per worker: its last claim or heartbeat (ms since the Unix epoch).
    pub workers: std::collections::BTreeMap<String, u64>,
}

/// The queue's rules: attempts, backoff, timeouts, retention, aging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueOptions {
    /// Attempts before a job is dead-lettered, unless the job says (default 3).
    pub max_attempts: u32,
    /// Backoff after the first failure; doubled per later failure (default 1 s).
    pub backoff_base: Duration,
    /// The longest backoff (default 5 min).
    pub backoff_max: Duration,
    /// A job claimable this long without being claimed fails (default: never).
    pub pending_timeout: Option<Duration>,
    /// How long an ended job's status is kept (default 24 h).
    pub retain_ended: Duration,
    /// Aging step between priorities (see [`Priority`]; default 60 s).
    pub priority_step: Duration,
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            max_attempts: 3,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            pending_timeout: None,
            retain_ended: Duration::from_secs(24 * 3600),
            priority_step: Duration::from_secs(60),
        }
    }
}

impl QueueOptions {
    /// The backoff before attempt `attempts + 1`, after `attempts` failed.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let doublings = attempts.saturating_sub(1).min(30);
        self.backoff_base
            .saturating_mul(1u32 << doublings)
            .min(self.backoff_max)
    }
}

/// The run-queue contract every engine implements.
///
/// Guarantees (the queue conformance suite checks them):
/// - **At least once**: an enqueued job is never lost; it runs again only
///   after its lease expired or was released.
/// - **Fencing**: at most one live lease per job; heartbeat, complete, fail
///   and release with a lease whose token is not the job's current one fail
///   with [`Error::LeaseLost`] and change nothing.
/// - **Order**: higher priority first with aging ([`Priority`]), FIFO within
///   a priority by ready time.
/// - **Idempotent enqueue**: an id the queue knows is reported, not queued twice.
#[async_trait]
pub trait RunQueue: Send + Sync + fmt::Debug + 'static {
    /// The engine's name.
    fn name(&self) -> &str;

    /// Queues a job, or reports the one with its id.
    async fn enqueue(&self, job: NewJob) -> Result<Enqueued>;

    /// Takes the next claimable job under a lease of `lease`, waiting up to
    /// `wait` for one (without polling the engine in a loop); `None` if none
    /// came in time.
    async fn claim(&self, worker: &str, lease: Duration, wait: Duration) -> Result<Option<Lease>>;

    /// Extends the lease to `extend` from now.
    async fn heartbeat(&self, lease: &Lease, extend: Duration) -> Result<Heartbeat>;

    /// Ends the job completed, keeping `result` (at most [`MAX_RESULT_LEN`] bytes).
    async fn complete(&self, lease: &Lease, result: Option<Bytes>) -> Result<()>;

    /// Reports a failed attempt: retried after a backoff, or dead-lettered
    /// once its attempts ran out (cancelled if a cancel was asked for).
    async fn fail(&self, lease: &Lease, error: &str) -> Result<FailOutcome>;

    /// Gives the job back without counting the attempt (graceful shutdown);
    /// a job whose cancel was asked for ends cancelled instead.
    async fn release(&self, lease: &Lease) -> Result<()>;

    /// Cancels a job (see [`CancelOutcome`]).
    async fn cancel(&self, id: &str) -> Result<CancelOutcome>;

    /// The signal a holder awaits to learn its job was cancelled.
    async fn cancellation(&self, lease: &Lease) -> Result<Cancellation>;

    /// What the queue knows of a job (`None` if unknown or purged).
    async fn status(&self, id: &str) -> Result<Option<JobStatus>>;

    /// Jobs, oldest first.
    async fn list(&self, filter: ListFilter) -> Result<Vec<JobStatus>>;

    /// Returns expired leases to the queue, fails jobs pending too long,
    /// removes ended jobs past retention. Safe to run from many processes at once.
    async fn sweep_once(&self) -> Result<SweepReport>;

    /// Puts every dead-lettered job back in the queue with fresh attempts;
    /// returns how many.
    async fn requeue_dead(&self) -> Result<u64>;

    /// Depth and activity.
    async fn stats(&self) -> Result<QueueStats>;

    /// Removes every job of this queue, whatever its state (an operator's
    /// reset, and how test runs leave nothing behind); returns how many.
    /// Holders of its leases get `LeaseLost` from then on; fencing tokens
    /// keep increasing.
    async fn clear(&self) -> Result<u64>;

    /// How the engine is doing.
    async fn health(&self) -> Health;
}

/// A shared, type-erased run queue.
pub type SharedQueue = Arc<dyn RunQueue>;

/// The error of a call with a stale lease.
pub fn lease_lost(lease: &Lease, why: &str) -> Error {
    Error::LeaseLost {
        job: lease.id.clone(),
        token: lease.token,
        reason: why.to_string(),
    }
}

/// Checks a claim's worker id and lease, and a heartbeat's extension: a
/// lease of zero would expire as it is given.
pub fn check_claim(worker: &str, lease: Duration) -> Result<()> {
    if worker.is_empty() || worker.len() > MAX_ID_LEN {
        return Err(Error::InvalidInput(format!(
            "a worker id must have 1 to {MAX_ID_LEN} bytes"
        )));
    }
    check_lease(lease)
}

/// Checks a lease length: at least 1 ms, at most a week.
pub fn check_lease(lease: Duration) -> Result<()> {
    if lease < Duration::from_millis(1) || lease > Duration::from_secs(7 * 24 * 3600) {
        return Err(Error::InvalidInput(format!(
            "a lease lasts 1 ms to 7 days (got {lease:?})"
        )));
    }
    Ok(())
}

/// Checks a `complete` result or a `fail` error against [`MAX_RESULT_LEN`].
pub fn check_result_len(len: usize) -> Result<()> {
    if len > MAX_RESULT_LEN {
        return Err(Error::InvalidInput(format!(
            "a job result or error has at most {MAX_RESULT_LEN} bytes (got {len})"
        )));
    }
    Ok(())
}
