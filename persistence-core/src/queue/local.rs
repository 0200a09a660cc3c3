//! A queue kept in this process ([`QueueState`]), journaled to an embedded
//! engine or not at all (memory).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::watch;

use super::state::{Clock, JobRecord, QueueState, SystemClock};
use super::{
    CancelOutcome, Enqueued, FailOutcome, Heartbeat, JobStatus, Lease, ListFilter, NewJob,
    QueueOptions, QueueStats, RunQueue, SweepReport,
};
use crate::backend::{Health, HealthStatus};
use crate::error::{Error, Result};
use crate::streams::{Cancellation, Signals};

/// Where a [`LocalQueue`] keeps its records durably. Calls block (they
/// run on tokio's blocking pool, under the queue's deadline) and return
/// once what they wrote survives a crash.
pub trait Journal: Send + Sync + fmt::Debug + 'static {
    /// The engine's name.
    fn name(&self) -> &str;

    /// Whether calls do I/O (run them on the blocking pool); memory's
    /// journal does nothing.
    fn blocking(&self) -> bool {
        true
    }

    /// Every stored record.
    fn load(&self) -> Result<Vec<JobRecord>>;

    /// Writes `puts` and removes `removes`, all or nothing.
    fn write(&self, puts: Vec<(String, Vec<u8>)>, removes: Vec<String>) -> Result<()>;
}

/// The journal of a queue that keeps nothing (memory).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoJournal;

impl Journal for NoJournal {
    fn name(&self) -> &str {
        "memory"
    }

    fn blocking(&self) -> bool {
        false
    }

    fn load(&self) -> Result<Vec<JobRecord>> {
        Ok(Vec::new())
    }

    fn write(&self, _: Vec<(String, Vec<u8>)>, _: Vec<String>) -> Result<()> {
        Ok(())
    }
}

/// The in-memory run queue: one process, gone at exit.
pub type MemoryQueue = LocalQueue<NoJournal>;

/// A run queue in this process: the state machine behind one lock, claim
/// waits woken by every change, cancellations signalled in process, and
/// every change journaled before the call returns. If a journal write
/// fails, the call fails and the next call reloads the state from the
/// journal, which stays the truth.
pub struct LocalQueue<J: Journal> {
    inner: Arc<Inner<J>>,
}

/// A handle to a [`LocalQueue`] that does not keep it alive (for an
/// engine's registry of open queues, which the queues point back to).
pub struct WeakLocalQueue<J: Journal>(std::sync::Weak<Inner<J>>);

impl<J: Journal> WeakLocalQueue<J> {
    /// The queue, if something still holds it.
    pub fn upgrade(&self) -> Option<LocalQueue<J>> {
        self.0.upgrade().map(|inner| LocalQueue { inner })
    }
}

impl<J: Journal> fmt::Debug for WeakLocalQueue<J> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WeakLocalQueue")
    }
}

impl<J: Journal> Clone for LocalQueue<J> {
    fn clone(&self) -> Self {
        LocalQueue {
            inner: self.inner.clone(),
        }
    }
}

impl<J: Journal> fmt::Debug for LocalQueue<J> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalQueue")
            .field("journal", &self.inner.journal)
            .finish_non_exhaustive()
    }
}

struct Inner<J> {
    journal: Arc<J>,
    options: QueueOptions,
    clock: Arc<dyn Clock>,
    call_timeout: Duration,
    state: tokio::sync::Mutex<Shared>,
    changed: watch::Sender<()>,
    signals: Signals,
}

struct Shared {
    state: QueueState,
    /// A journal write failed: reload before the next call.
    stale: bool,
}

impl MemoryQueue {
    /// An empty in-memory queue with these rules.
    pub fn new(options: QueueOptions) -> Self {
        Self::with_clock(options, Arc::new(SystemClock))
    }

    /// An empty in-memory queue reading time from `clock` (for tests and models).
    pub fn with_clock(options: QueueOptions, clock: Arc<dyn Clock>) -> Self {
        let state = QueueState::new(options.clone());
        LocalQueue::with_state(
            Arc::new(NoJournal),
            options,
            clock,
            state,
            Duration::from_secs(10),
        )
    }
}

impl<J: Journal> LocalQueue<J> {
    /// A queue over `journal`, holding what it stored.
    pub async fn open(journal: J, options: QueueOptions, call_timeout: Duration) -> Result<Self> {
        let journal = Arc::new(journal);
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let state = load(&journal, &options, clock.now_ms(), call_timeout).await?;
        Ok(LocalQueue::with_state(
            journal,
            options,
            clock,
            state,
            call_timeout,
        ))
    }

    fn with_state(
        journal: Arc<J>,
        options: QueueOptions,
        clock: Arc<dyn Clock>,
        state: QueueState,
        call_timeout: Duration,
    ) -> Self {
        LocalQueue {
            inner: Arc::new(Inner {
                journal,
                options,
                clock,
                call_timeout,
                state: tokio::sync::Mutex::new(Shared {
                    state,
                    stale: false,
                }),
                changed: watch::channel(()).0,
                signals: Signals::new(),
            }),
        }
    }

    /// A handle that does not keep the queue alive.
    pub fn downgrade(&self) -> WeakLocalQueue<J> {
        WeakLocalQueue(Arc::downgrade(&self.inner))
    }

    /// Runs `f` on the state at the engine's now, journals what it
    /// touched, and wakes claim waits if anything changed.
    async fn apply<R>(&self, f: impl FnOnce(&mut QueueState, u64) -> Result<R>) -> Result<R> {
        let inner = &self.inner;
        let mut shared = inner.state.lock().await;
        if shared.stale {
            shared.state = load(
                &inner.journal,
                &inner.options,
                inner.clock.now_ms(),
                inner.call_timeout,
            )
            .await?;
            shared.stale = false;
        }
        let now = inner.clock.now_ms();
        let out = f(&mut shared.state, now);
        let dirty = shared.state.take_dirty();
        if dirty.is_empty() {
            return out;
        }
        let mut puts = Vec::new();
        let mut removes = Vec::new();
        for id in dirty {
            match shared.state.record(&id) {
                Some(r) => puts.push((id, r.encode())),
                None => {
                    inner.signals.forget(&id);
                    removes.push(id)
                }
            }
        }
        if let Err(e) = journal(&inner.journal, inner.call_timeout, puts, removes).await {
            shared.stale = true;
            return Err(e);
        }
        drop(shared);
        inner.changed.send_replace(());
        out
    }
}

async fn load<J: Journal>(
    journal: &Arc<J>,
    options: &QueueOptions,
    now: u64,
    call_timeout: Duration,
) -> Result<QueueState> {
    let records = blocking(journal, call_timeout, "queue load", |j| j.load()).await?;
    Ok(QueueState::restore(options.clone(), records, now))
}

async fn journal<J: Journal>(
    journal: &Arc<J>,
    call_timeout: Duration,
    puts: Vec<(String, Vec<u8>)>,
    removes: Vec<String>,
) -> Result<()> {
    blocking(journal, call_timeout, "queue write", move |j| {
        j.write(puts, removes)
    })
    .await
}

/// Runs `f` on the journal: inline for memory, else on the blocking pool
/// under `deadline`.
async fn blocking<J: Journal, R: Send + 'static>(
    journal: &Arc<J>,
    deadline: Duration,
    operation: &str,
    f: impl FnOnce(&J) -> Result<R> + Send + 'static,
) -> Result<R> {
    if !journal.blocking() {
        return f(journal);
    }
    let j = journal.clone();
    let task = tokio::task::spawn_blocking(move || f(&j));
    match tokio::time::timeout(deadline, task).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => Err(Error::Internal {
            backend: journal.name().to_string(),
            message: format!("{operation} panicked: {e}"),
        }),
        Err(_) => Err(Error::Timeout {
            operation: format!("{} {operation}", journal.name()),
            after: deadline,
        }),
    }
}

#[async_trait]
impl<J: Journal> RunQueue for LocalQueue<J> {
    fn name(&self) -> &str {
        self.inner.journal.name()
    }

    async fn enqueue(&self, job: NewJob) -> Result<Enqueued> {
        self.apply(|s, now| s.enqueue(job, now)).await
    }

    async fn claim(&self, worker: &str, lease: Duration, wait: Duration) -> Result<Option<Lease>> {
        super::check_claim(worker, lease)?;
        let until = tokio::time::Instant::now() + wait;
        let mut changed = self.inner.changed.subscribe();
        loop {
            changed.borrow_and_update();
            let (lease, due) = self
                .apply(|s, now| {
                    Ok((
                        s.claim(worker, lease, now),
                        s.next_due().map(|d| d.saturating_sub(now)),
                    ))
                })
                .await?;
            if lease.is_some() {
                return Ok(lease);
            }
            let mut wake = until;
            if let Some(ms) = due {
                wake = wake.min(tokio::time::Instant::now() + Duration::from_millis(ms));
            }
            if tokio::time::Instant::now() >= until {
                return Ok(None);
            }
            tokio::select! {
                _ = changed.changed() => {}
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    async fn heartbeat(&self, lease: &Lease, extend: Duration) -> Result<Heartbeat> {
        super::check_lease(extend)?;
        self.apply(|s, now| s.heartbeat(lease, extend, now)).await
    }

    async fn complete(&self, lease: &Lease, result: Option<Bytes>) -> Result<()> {
        self.apply(|s, now| s.complete(lease, result, now)).await
    }

    async fn fail(&self, lease: &Lease, error: &str) -> Result<FailOutcome> {
        self.apply(|s, now| s.fail(lease, error, now)).await
    }

    async fn release(&self, lease: &Lease) -> Result<()> {
        self.apply(|s, now| s.release(lease, now)).await
    }

    async fn cancel(&self, id: &str) -> Result<CancelOutcome> {
        let outcome = self.apply(|s, now| Ok(s.cancel(id, now))).await?;
        if outcome == CancelOutcome::Signalled {
            self.inner.signals.cancel(id);
        }
        Ok(outcome)
    }

    async fn cancellation(&self, lease: &Lease) -> Result<Cancellation> {
        let stored = async {
            let shared = self.inner.state.lock().await;
            Ok(shared
                .state
                .record(&lease.id)
                .is_some_and(|r| r.status.cancel_requested))
        };
        self.inner
            .signals
            .cancellation_or_stored(&lease.id, stored)
            .await
    }

    async fn status(&self, id: &str) -> Result<Option<JobStatus>> {
        self.apply(|s, _| Ok(s.status(id))).await
    }

    async fn list(&self, filter: ListFilter) -> Result<Vec<JobStatus>> {
        self.apply(|s, _| Ok(s.list(&filter))).await
    }

    async fn sweep_once(&self) -> Result<SweepReport> {
        self.apply(|s, now| Ok(s.sweep(now))).await
    }

    async fn requeue_dead(&self) -> Result<u64> {
        self.apply(|s, now| Ok(s.requeue_dead(now))).await
    }

    async fn stats(&self) -> Result<QueueStats> {
        self.apply(|s, now| Ok(s.stats(now))).await
    }

    async fn clear(&self) -> Result<u64> {
        self.apply(|s, _| Ok(s.clear())).await
    }

    async fn health(&self) -> Health {
        let name = self.name().to_string();
        match tokio::time::timeout(self.inner.call_timeout, self.inner.state.lock()).await {
            Ok(shared) if !shared.stale => Health {
                status: HealthStatus::Ok,
                backend: name,
                message: format!("queue holds {} jobs", shared.state.len()),
                latency_ms: None,
                details: Default::default(),
            },
            Ok(_) => Health {
                status: HealthStatus::Degraded,
                backend: name,
                message: "the last journal write failed; the next call reloads".into(),
                latency_ms: None,
                details: Default::default(),
            },
            Err(_) => Health {
                status: HealthStatus::Down,
                backend: name,
                message: format!("queue busy for longer than {:?}", self.inner.call_timeout),
                latency_ms: None,
                details: Default::default(),
            },
        }
    }
}
