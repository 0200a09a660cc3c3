//! A recovery queue for writes, by priority (seed 002).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use serde::Deserialize;
use tokio::sync::Notify;

use crate::backend::{
    Backend, DocumentWrite, Health, HealthStatus, Precondition, SharedBackend, Stats, TxOutcome,
    TxWrite, Version,
};
use crate::error::{Error, ErrorKind, Result};

use super::spill::{QueueSpill, SpilledOp, SpilledWrite};
use super::{Layer, LayerProvider};
use crate::config::Settings;

/// How much a write matters when the backend is unavailable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Priority {
    /// Retried now with backoff, then the error goes to the caller.
    Critical,
    /// Accepted and queued, replayed when the backend is back.
    High,
    /// Accepted and queued, replayed when the backend is back (the default).
    Normal,
    /// Logged and dropped; the caller gets the error.
    Low,
}

tokio::task_local! {
    static PRIORITY: Priority;
}

/// Runs `work` with writes at `priority` (the default is [`Priority::Normal`]).
///
/// ```
/// # use persistence_core::layers::{with_priority, Priority};
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let n = with_priority(Priority::Critical, async { 1 + 1 }).await;
/// # assert_eq!(n, 2);
/// # });
/// ```
pub async fn with_priority<F: Future>(priority: Priority, work: F) -> F::Output {
    PRIORITY.scope(priority, work).await
}

fn current_priority() -> Priority {
    PRIORITY.try_with(|p| *p).unwrap_or(Priority::Normal)
}

#[derive(Debug)]
struct Entry {
    seq: u64,
    write: SpilledWrite,
}

#[derive(Debug, Default)]
struct Queue {
    entries: VecDeque<Entry>,
    /// Queued writes per key: a later write to such a key queues too, so
    /// two writes to one key never change order.
    per_key: HashMap<(String, String), usize>,
    accepted: u64,
    replayed: u64,
    /// Replays that found their write already applied (counted in `replayed`).
    already_applied: u64,
    dropped: u64,
    /// Writes refused because the queue was full.
    full: u64,
    next_seq: u64,
}

impl Queue {
    fn forget_front(&mut self) -> Option<Entry> {
        let e = self.entries.pop_front()?;
        let k = (e.write.namespace.clone(), e.write.key.clone());
        if let Some(n) = self.per_key.get_mut(&k) {
            *n -= 1;
            if *n == 0 {
                self.per_key.remove(&k);
            }
        }
        Some(e)
    }
}

/// Holds writes that could not reach the backend and replays them, in the
/// order they were accepted, when it answers again. Accepted writes return
/// `Version(0)`: "accepted, not yet applied". The queue holds at most
/// `capacity` writes; past that, HIGH and NORMAL writes fail too. With a
/// [`QueueSpill`], every accepted write is on disk before the caller hears
/// "accepted", and a restarted queue replays what it held. A write replayed
/// after an ambiguous first attempt may find its precondition no longer
/// holds (`AlreadyExists`, `Conflict`): it is then dropped, logged, and
/// counted.
pub struct RecoveryQueue {
    inner: SharedBackend,
    queue: Arc<Mutex<Queue>>,
    /// Writes in the queue, readable without the lock.
    queued: AtomicUsize,
    spill: Option<Arc<dyn QueueSpill>>,
    wake: Arc<Notify>,
    capacity: usize,
    critical_retries: u32,
    backoff: Duration,
}

impl fmt::Debug for RecoveryQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecoveryQueue")
            .field("inner", &self.inner.name())
            .field("depth", &self.depth())
            .field("capacity", &self.capacity)
            .field("spill", &self.spill)
            .finish()
    }
}

impl RecoveryQueue {
    /// A queue of at most `capacity` writes over `inner`, replaying in the
    /// background (call from inside a tokio runtime). CRITICAL writes are
    /// retried `critical_retries` times, waiting `backoff`, doubling.
    pub fn new(
        inner: SharedBackend,
        capacity: usize,
        critical_retries: u32,
        backoff: Duration,
    ) -> Arc<Self> {
        Self::with_spill(inner, capacity, critical_retries, backoff, None)
            .expect("a queue without a spill cannot fail to start")
    }

    /// [`RecoveryQueue::new`] keeping accepted writes in `spill`, so they
    /// survive a restart: the writes it holds are loaded and replayed first.
    pub fn with_spill(
        inner: SharedBackend,
        capacity: usize,
        critical_retries: u32,
        backoff: Duration,
        spill: Option<Arc<dyn QueueSpill>>,
    ) -> Result<Arc<Self>> {
        let mut queue = Queue::default();
        if let Some(spill) = &spill {
            for (seq, write) in spill.load()? {
                *queue
                    .per_key
                    .entry((write.namespace.clone(), write.key.clone()))
                    .or_default() += 1;
                queue.next_seq = queue.next_seq.max(seq + 1);
                queue.entries.push_back(Entry { seq, write });
            }
            if !queue.entries.is_empty() {
                tracing::warn!(
                    writes = queue.entries.len(),
                    "recovery queue restored writes from its spill; replaying them first"
                );
            }
        }
        let restored = queue.entries.len();
        let q = Arc::new(RecoveryQueue {
            inner,
            queue: Arc::new(Mutex::new(queue)),
            queued: AtomicUsize::new(restored),
            spill,
            wake: Arc::new(Notify::new()),
            capacity: capacity.max(1),
            critical_retries,
            backoff,
        });
        let weak = Arc::downgrade(&q);
        tokio::spawn(async move {
            // ends when the layer is dropped
            while let Some(q) = weak.upgrade() {
                let wake = q.wake.clone();
                let progressed = q.replay_one().await;
                drop(q);
                match progressed {
                    Some(true) => {}
                    Some(false) => tokio::time::sleep(Duration::from_millis(200)).await,
                    None => {
                        let _ =
                            tokio::time::timeout(Duration::from_millis(500), wake.notified()).await;
                    }
                }
            }
        });
        Ok(q)
    }

    /// Writes waiting to be replayed.
    pub fn depth(&self) -> usize {
        self.queue.lock().entries.len()
    }

    /// Waits until the queue is empty or `timeout` passes; returns whether it emptied.
    pub async fn drained(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.depth() > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// Replays the head of the queue: `None` if empty, `Some(true)` if it
    /// was applied or dropped, `Some(false)` if the backend is still down.
    async fn replay_one(&self) -> Option<bool> {
        let (seq, write) = {
            let q = self.queue.lock();
            let e = q.entries.front()?;
            (e.seq, e.write.clone())
        };
        let (ns, key) = (&write.namespace, &write.key);
        let result = match &write.op {
            SpilledOp::Put {
                write,
                precondition,
            } => self
                .inner
                .put(ns, key, write.clone(), *precondition)
                .await
                .map(|_| ()),
            SpilledOp::Remove { precondition } => {
                self.inner.remove(ns, key, *precondition).await.map(|_| ())
            }
        };
        if matches!(&result, Err(e) if e.is_retryable()) {
            return Some(false);
        }
        let already = match &result {
            Err(e) => self.already_applied(&write, e).await,
            Ok(()) => false,
        };
        let mut q = self.queue.lock();
        q.forget_front();
        self.queued.store(q.entries.len(), Ordering::Release);
        match result {
            Ok(()) => q.replayed += 1,
            Err(_) if already => {
                q.replayed += 1;
                q.already_applied += 1;
            }
            Err(e) => {
                q.dropped += 1;
                tracing::warn!(namespace = %ns, key = %key, error = %e, "queued write dropped: it no longer applies");
            }
        }
        drop(q);
        if let Some(spill) = &self.spill {
            if let Err(e) = spill.remove(seq) {
                tracing::error!(seq, error = %e, "could not forget a replayed write in the spill; it will replay again after a restart");
            }
        }
        Some(true)
    }

    /// Whether a replay that failed its precondition finds the store as the
    /// write meant to leave it: the first attempt reached the backend before
    /// the failure that queued it (a create now "already exists" with these
    /// bytes, a removal finds nothing). Then it was not lost, it was done.
    async fn already_applied(&self, write: &SpilledWrite, error: &Error) -> bool {
        let (ns, key) = (&write.namespace, &write.key);
        match (&write.op, error.kind()) {
            (SpilledOp::Put { write, .. }, ErrorKind::AlreadyExists | ErrorKind::Conflict) => {
                matches!(self.inner.get_value(ns, key).await, Ok(Some(v)) if v == write.value)
            }
            (SpilledOp::Remove { .. }, ErrorKind::NotFound) => true,
            _ => false,
        }
    }

    fn enqueue(&self, ns: &str, key: &str, op: SpilledOp, cause: &Error) -> Result<()> {
        let mut q = self.queue.lock();
        if q.entries.len() >= self.capacity {
            q.full += 1;
            return Err(Error::Unavailable {
                backend: self.inner.name().into(),
                reason: format!(
                    "recovery queue full ({} writes) after: {cause}",
                    self.capacity
                ),
            });
        }
        let seq = q.next_seq;
        let write = SpilledWrite {
            namespace: ns.into(),
            key: key.into(),
            op,
        };
        if let Some(spill) = &self.spill {
            // on disk before the caller hears "accepted" (and in queue order)
            spill.append(seq, &write)?;
        }
        q.next_seq += 1;
        q.accepted += 1;
        *q.per_key.entry((ns.into(), key.into())).or_default() += 1;
        q.entries.push_back(Entry { seq, write });
        self.queued.store(q.entries.len(), Ordering::Release);
        drop(q);
        self.wake.notify_one();
        Ok(())
    }

    fn has_queued(&self, ns: &str, key: &str) -> bool {
        if self.queued.load(Ordering::Acquire) == 0 {
            return false; // the common case: nothing waits, no lock, no allocation
        }
        self.queue
            .lock()
            .per_key
            .contains_key(&(ns.to_string(), key.to_string()))
    }
    /// Runs a write under the priority rules.
    async fn write<'a, T>(
        &'a self,
        ns: &'a str,
        key: &'a str,
        op: impl Fn() -> SpilledOp,
        accepted: T,
        attempt: impl Fn() -> crate::layers::BoxFuture<'a, Result<T>>,
    ) -> Result<T> {
        let priority = current_priority();
        if self.has_queued(ns, key) {
            // keep this key's writes in order: behind the queued ones
            return match priority {
                Priority::High | Priority::Normal => {
                    self.enqueue(
                        ns,
                        key,
                        op(),
                        &Error::Unavailable {
                            backend: self.inner.name().into(),
                            reason: "earlier writes to this key are queued".into(),
                        },
                    )?;
                    Ok(accepted)
                }
                _ => Err(Error::Unavailable {
                    backend: self.inner.name().into(),
                    reason: format!("earlier writes to {ns}/{key:?} are still queued"),
                }),
            };
        }
        let mut tries = 0;
        loop {
            match attempt().await {
                Err(e) if e.is_retryable() => match priority {
                    Priority::Critical if tries < self.critical_retries => {
                        tokio::time::sleep(self.backoff * 2u32.saturating_pow(tries)).await;
                        tries += 1;
                    }
                    Priority::Critical => return Err(e),
                    Priority::High | Priority::Normal => {
                        self.enqueue(ns, key, op(), &e)?;
                        tracing::warn!(namespace = ns, key, error = %e, "write queued for replay");
                        return Ok(accepted);
                    }
                    Priority::Low => {
                        tracing::warn!(namespace = ns, key, error = %e, "LOW priority write dropped");
                        self.queue.lock().dropped += 1;
                        return Err(e);
                    }
                },
                other => return other,
            }
        }
    }
}

#[async_trait]
impl Layer for RecoveryQueue {
    fn inner(&self) -> &dyn Backend {
        &*self.inner
    }

    // reads are not this layer's business: keep the inner backend's cheap path
    async fn get_value(&self, namespace: &str, key: &str) -> Result<Option<Bytes>> {
        self.inner.get_value(namespace, key).await
    }

    async fn put(
        &self,
        namespace: &str,
        key: &str,
        write: DocumentWrite,
        precondition: Precondition,
    ) -> Result<Version> {
        let op = || SpilledOp::Put {
            write: write.clone(),
            precondition,
        };
        self.write(namespace, key, op, Version(0), || {
            self.inner.put(namespace, key, write.clone(), precondition)
        })
        .await
    }

    async fn remove(&self, namespace: &str, key: &str, precondition: Precondition) -> Result<bool> {
        precondition.check_removal(namespace, key)?;
        let op = || SpilledOp::Remove { precondition };
        self.write(namespace, key, op, true, || {
            self.inner.remove(namespace, key, precondition)
        })
        .await
    }

    /// A transaction is never queued (a replay could not keep it
    /// all-or-nothing against what was written in between): it is refused
    /// with `Unavailable` while any of its keys has queued writes, so it
    /// cannot overtake them, and its failures are the caller's.
    async fn transact(&self, writes: Vec<TxWrite>) -> Result<Vec<TxOutcome>> {
        if let Some((ns, key)) = writes
            .iter()
            .map(TxWrite::target)
            .find(|(ns, key)| self.has_queued(ns, key))
        {
            return Err(Error::Unavailable {
                backend: self.inner.name().into(),
                reason: format!("earlier writes to {ns}/{key:?} are still queued"),
            });
        }
        self.inner.transact(writes).await
    }

    async fn health(&self) -> Health {
        let mut h = self.inner.health().await;
        let q = self.queue.lock();
        h.details
            .insert("queue_depth".into(), q.entries.len().to_string());
        h.details
            .insert("queue_capacity".into(), self.capacity.to_string());
        h.details
            .insert("queue_replayed".into(), q.replayed.to_string());
        h.details
            .insert("queue_dropped".into(), q.dropped.to_string());
        if !q.entries.is_empty() && h.status == HealthStatus::Ok {
            h.status = HealthStatus::Degraded;
            h.message = format!(
                "{} ({} writes waiting to be replayed)",
                h.message,
                q.entries.len()
            );
        }
        h
    }

    fn stats(&self) -> Stats {
        let mut stats = self.inner.stats();
        let q = self.queue.lock();
        stats.set("queue_depth", q.entries.len() as u64);
        stats.set("queue_capacity", self.capacity as u64);
        stats.set("queue_accepted", q.accepted);
        stats.set("queue_replayed", q.replayed);
        stats.set("queue_already_applied", q.already_applied);
        stats.set("queue_dropped", q.dropped);
        stats.set("queue_full", q.full);
        stats
    }
}

/// `[recovery_queue]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecoverySettings {
    /// Most writes held while the backend is unavailable.
    pub capacity: usize,
    /// Retries of a CRITICAL write before its error goes to the caller.
    pub critical_retries: u32,
    /// First wait between CRITICAL retries, ms (doubling).
    pub backoff_ms: u64,
    /// Keep queued writes in this directory (a durable spill store) so
    /// they survive a restart of the host; absent = in memory only.
    pub spill_path: Option<PathBuf>,
}

impl Default for RecoverySettings {
    fn default() -> Self {
        RecoverySettings {
            capacity: 10_000,
            critical_retries: 3,
            backoff_ms: 100,
            spill_path: None,
        }
    }
}

/// Opens the durable store of a recovery queue (`recovery_queue.spill_path`).
pub type SpillOpener = Arc<dyn Fn(&Path) -> Result<Arc<dyn QueueSpill>> + Send + Sync>;

/// Registers `recovery_queue` (`[recovery_queue]`). Without a spill opener
/// a `spill_path` is refused; a binary with a durable engine registers
/// [`RecoveryQueueProvider::with_spill`] in its place.
#[derive(Clone, Default)]
pub struct RecoveryQueueProvider {
    spill: Option<SpillOpener>,
}

impl fmt::Debug for RecoveryQueueProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecoveryQueueProvider")
            .field("spill", &self.spill.is_some())
            .finish()
    }
}

impl RecoveryQueueProvider {
    /// A provider whose queues keep their writes in the store `open` opens
    /// at `recovery_queue.spill_path`.
    pub fn with_spill(open: SpillOpener) -> Self {
        RecoveryQueueProvider { spill: Some(open) }
    }
}

impl LayerProvider for RecoveryQueueProvider {
    fn name(&self) -> &'static str {
        "recovery_queue"
    }

    fn check(&self, settings: &Settings) -> Result<()> {
        settings.table::<RecoverySettings>(self.name()).map(drop)
    }

    fn wrap(&self, inner: SharedBackend, settings: &Settings) -> Result<SharedBackend> {
        let q: RecoverySettings = settings.table(self.name())?;
        let store =
            match (&q.spill_path, &self.spill) {
                (None, _) => None,
                (Some(path), Some(open)) => Some(open(path)?),
                (Some(path), None) => return Err(settings.invalid(
                    "recovery_queue.spill_path",
                    &path.display().to_string(),
                    "this build has no spill store (register RecoveryQueueProvider::with_spill)",
                )),
            };
        let queue = RecoveryQueue::with_spill(
            inner,
            q.capacity,
            q.critical_retries,
            Duration::from_millis(q.backoff_ms),
            store,
        )?;
        Ok(queue)
    }
}
