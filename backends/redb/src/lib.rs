//! The redb backend: an embedded, durable [`Backend`] with ACID
//! transactions, no server to run; the default embedded engine.
//!
//! A document and all its index, creation-order and expiry entries live in
//! one redb table (laid out by `persistence-ordered-layout`) and change in
//! one write transaction, so readers and crash recovery see either the old
//! state or the new one. Reads run on snapshots (redb's MVCC), concurrently
//! with the writer. Writes go to one writer thread that commits every write
//! waiting in one transaction (a group commit, see `writer.rs`), so with
//! [`Durability::Immediate`], the default, every acknowledged write is on
//! disk and concurrent writers share the fsync. `docs/embedded-engines.md`
//! says exactly what is durable when.
//!
//! ```
//! use persistence_redb::{RedbBackend, RedbOptions};
//! use persistence_core::{TaskStore, SharedBackend};
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let dir = tempfile::tempdir().unwrap();
//! let backend = RedbBackend::open(&RedbOptions::new(dir.path().join("tasks.redb"))).unwrap();
//! let tasks = TaskStore::new(std::sync::Arc::new(backend) as SharedBackend);
//! assert_eq!(tasks.load("nope").await.unwrap(), None);
//! # });
//! ```
#![warn(missing_docs, missing_debug_implementations)]

mod engine;
mod open;
mod queue;
mod settings;
mod streams;
mod writer;

pub use queue::{RedbJournal, RedbRunQueue};
pub use settings::{RedbProvider, RedbSettings, SEED_VARIABLES};
pub use streams::RedbStreams;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};
use persistence_core::backend::{
    check_transaction, Backend, Capabilities, Document, DocumentWrite, Health, HealthStatus,
    Precondition, Put, Remove, ScanPage, ScanRequest, Stats, TxOutcome, TxWrite, Version,
};
use persistence_core::{Error, Result};
use tokio::sync::oneshot;

use writer::Job;

/// When an acknowledged write is on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Every write is on disk (fsync) before it is acknowledged; writes
    /// that arrive together share one commit. The default.
    #[default]
    Immediate,
    /// Writes are acknowledged once committed in memory and made durable
    /// together at most `every` later (and on [`RedbBackend::flush`] and a
    /// clean close). A crash loses at most that window; what is on disk is
    /// always a consistent earlier state.
    Periodic {
        /// The longest a commit waits to become durable.
        every: Duration,
    },
}

/// How to open a redb database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedbOptions {
    /// The database file (created, with its directory, if missing).
    pub path: PathBuf,
    /// When writes are durable.
    pub durability: Durability,
    /// Longest wait for one call before it fails with `Timeout` (default 30 s).
    pub call_timeout: Duration,
    /// redb's page cache, in bytes; `None` keeps redb's default (1 GiB, a
    /// bound, allocated as used).
    pub cache_size: Option<usize>,
    /// Delete the file when the backend is dropped (scratch databases and tests).
    pub temporary: bool,
}

impl RedbOptions {
    /// Options for the database file at `path`: immediate durability.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        RedbOptions {
            path: path.into(),
            durability: Durability::Immediate,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            cache_size: None,
            temporary: false,
        }
    }
}

/// How long a call may take unless told otherwise.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// How long dropping the backend waits for the writer to commit what it
/// holds and close the file.
const CLOSE_WAIT: Duration = Duration::from_secs(10);

/// What the writer thread and the readers share.
#[derive(Debug)]
struct Shared {
    /// Read-locked by every transaction's whole life, write-locked only by
    /// compaction (which needs the database alone).
    db: RwLock<redb::Database>,
    path: PathBuf,
    durability: Durability,
    temporary: bool,
    /// Whether expiry entries may exist, so that databases without TTLs
    /// skip the purge step entirely.
    has_expiry: AtomicBool,
}

/// The redb backend. Share it behind an `Arc`; one per database file
/// (redb locks the file against every other handle). Dropping it commits
/// what is pending and closes the file.
///
/// Writes run on the writer thread, scans and counts on tokio's blocking
/// pool, each under a deadline ([`RedbOptions::call_timeout`]): a call past
/// it fails with `Timeout` and makes health `degraded`. Calls therefore
/// need a tokio runtime with time enabled. Point reads (`get`, `get_many`,
/// `lookup`) run on the caller's thread: redb readers never wait for the
/// writer (MVCC), so they cannot be caught in a stuck write.
#[derive(Debug)]
pub struct RedbBackend {
    shared: Arc<Shared>,
    jobs: Mutex<Option<Sender<Job>>>,
    writer: Option<std::thread::JoinHandle<()>>,
    call_timeout: Duration,
    /// Calls that did not finish within `call_timeout`.
    overdue: AtomicU64,
    /// The run queues opened in this database, by name.
    queues: tokio::sync::Mutex<
        std::collections::HashMap<
            String,
            persistence_core::queue::WeakLocalQueue<queue::RedbJournal>,
        >,
    >,
}

impl RedbBackend {
    /// Opens (or creates) the database at `options.path`.
    ///
    /// Errors name the path: `Config` when it is a directory or cannot be
    /// written, `Unavailable` when another process or handle holds it,
    /// `Corrupted` when the file is not a readable redb database. Never panics.
    pub fn open(options: &RedbOptions) -> Result<Self> {
        let (db, stored) = open::open_db(options)?;
        let shared = Arc::new(Shared {
            db: RwLock::new(db),
            path: options.path.clone(),
            durability: options.durability,
            temporary: options.temporary,
            has_expiry: AtomicBool::new(true),
        });
        let (jobs, received) = std::sync::mpsc::channel();
        let thread = writer::WriterThread {
            shared: shared.clone(),
            next_id: writer::first_id(stored),
            dirty_since: None,
        };
        let writer = std::thread::Builder::new()
            .name("redb-writer".into())
            .spawn(move || thread.run(received))
            .map_err(|e| Error::Unavailable {
                backend: "redb".into(),
                reason: format!("cannot start the writer thread: {e}"),
            })?;
        Ok(RedbBackend {
            shared,
            jobs: Mutex::new(Some(jobs)),
            writer: Some(writer),
            call_timeout: options.call_timeout,
            overdue: AtomicU64::new(0),
            queues: Default::default(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Makes every write so far durable (one fsync), whatever the durability.
    pub async fn flush(&self) -> Result<()> {
        self.submit("flush", |reply| Job::Flush { reply }).await
    }

    /// Bytes the database file takes.
    pub fn size_on_disk(&self) -> Result<u64> {
        std::fs::metadata(&self.shared.path)
            .map(|m| m.len())
            .map_err(|e| Error::Unavailable {
                backend: "redb".into(),
                reason: format!("{}: {e}", self.shared.path.display()),
            })
    }

    /// Gives free space back to the file system: waits for the writes
    /// before it, makes them durable, then rewrites the file with redb's
    /// compaction while reads wait (on the blocking pool, never on the
    /// caller's thread) and writes queue. Returns the file's size before
    /// and after. The file otherwise keeps its high-water mark and reuses
    /// freed pages (see `docs/embedded-engines.md`).
    pub async fn compact(&self) -> Result<(u64, u64)> {
        let before = self.size_on_disk()?;
        self.submit("compact", |reply| Job::Compact { reply })
            .await?;
        Ok((before, self.size_on_disk()?))
    }

    /// Frees up to `max` expired documents now and returns how many expiry
    /// entries it went through. Writes free a few each already; call this
    /// after a quiet period with many expiries.
    pub async fn purge_expired(&self, max: usize) -> Result<usize> {
        self.submit("purge", |reply| Job::Purge { max, reply })
            .await
    }

    fn overdue(&self, operation: &str) -> Error {
        self.overdue.fetch_add(1, Ordering::Relaxed);
        tracing::error!(
            operation,
            after = ?self.call_timeout,
            path = %self.shared.path.display(),
            "a redb call did not finish in time"
        );
        Error::Timeout {
            operation: format!("redb {operation}"),
            after: self.call_timeout,
        }
    }

    /// Hands a write to the writer thread and waits for its commit.
    pub(crate) async fn submit<T>(
        &self,
        operation: &'static str,
        job: impl FnOnce(oneshot::Sender<Result<T>>) -> Job,
    ) -> Result<T> {
        let (reply, answer) = oneshot::channel();
        self.send(job(reply))?;
        let deadline = tokio::time::Instant::now() + self.call_timeout;
        self.wait(operation, answer, deadline).await
    }

    /// Queues a write for the writer thread.
    pub(crate) fn send(&self, job: Job) -> Result<()> {
        match &*self.jobs.lock() {
            Some(jobs) if jobs.send(job).is_ok() => Ok(()),
            _ => Err(stopped()),
        }
    }

    /// Waits for a queued write's commit until `deadline`.
    async fn wait<T>(
        &self,
        operation: &'static str,
        answer: oneshot::Receiver<Result<T>>,
        deadline: tokio::time::Instant,
    ) -> Result<T> {
        match tokio::time::timeout_at(deadline, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(stopped()),
            Err(_) => Err(self.overdue(operation)),
        }
    }

    /// Queues every write before waiting for any, so they commit together;
    /// one answer per write, in order.
    async fn submit_all<T, I>(
        &self,
        operation: &'static str,
        writes: impl IntoIterator<Item = I>,
        job: impl Fn(I, oneshot::Sender<Result<T>>) -> Job,
    ) -> Vec<Result<T>> {
        let answers: Vec<_> = writes
            .into_iter()
            .map(|w| {
                let (reply, answer) = oneshot::channel();
                self.send(job(w, reply)).map(|()| answer)
            })
            .collect();
        let deadline = tokio::time::Instant::now() + self.call_timeout;
        let mut out = Vec::with_capacity(answers.len());
        for answer in answers {
            out.push(match answer {
                Ok(answer) => self.wait(operation, answer, deadline).await,
                Err(e) => Err(e),
            });
        }
        out
    }

    /// Runs a point read on a snapshot, on the caller's thread: redb
    /// readers never wait for the writer or for each other (MVCC), and a
    /// point read is a few page lookups, so handing it to another thread
    /// would cost more than the read (see `docs/embedded-engines.md`).
    /// `None` while a compaction holds the database: then the caller goes
    /// through the blocking pool, with its deadline, like a scan.
    fn try_read_now<T>(
        &self,
        operation: &'static str,
        read: impl FnOnce(
            &engine::Reader<'_, redb::ReadOnlyTable<&'static [u8], &'static [u8]>>,
        ) -> Result<T>,
    ) -> Option<Result<T>> {
        let db = self.shared.db.try_read()?;
        Some(engine::read(&db, operation, read))
    }

    /// Runs `read` on a snapshot, on the blocking pool, within the deadline.
    async fn read<T: Send + 'static>(
        &self,
        operation: &'static str,
        read: impl FnOnce(
                &engine::Reader<'_, redb::ReadOnlyTable<&'static [u8], &'static [u8]>>,
            ) -> Result<T>
            + Send
            + 'static,
    ) -> Result<T> {
        let shared = self.shared.clone();
        let task =
            tokio::task::spawn_blocking(move || engine::read(&shared.db.read(), operation, read));
        match tokio::time::timeout(self.call_timeout, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => Err(Error::Internal {
                backend: "redb".into(),
                message: format!("{operation} panicked: {e}"),
            }),
            Err(_) => Err(self.overdue(operation)),
        }
    }
}

fn stopped() -> Error {
    Error::Unavailable {
        backend: "redb".into(),
        reason: "the redb writer thread has stopped".into(),
    }
}

impl Drop for RedbBackend {
    fn drop(&mut self) {
        // the writer commits what it holds and stops once its queue closes
        self.jobs.lock().take();
        let Some(writer) = self.writer.take() else {
            return;
        };
        let deadline = std::time::Instant::now() + CLOSE_WAIT;
        while !writer.is_finished() {
            if std::time::Instant::now() >= deadline {
                tracing::error!(path = %self.shared.path.display(), "the redb writer did not stop in time; leaving it");
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let _ = writer.join();
        if self.shared.temporary {
            let _ = std::fs::remove_file(&self.shared.path);
        }
    }
}

#[async_trait]
impl Backend for RedbBackend {
    fn name(&self) -> &str {
        "redb"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            ttl: true,
            scan: true,
            scan_by_creation: true,
            count: false,
            time_order: true,
            transactions: true,
            partitioned_transactions: false,
            native_batch: true,
            atomic_index: true,
            durable: true,
            export: true,
        }
    }

    async fn get(&self, namespace: &str, key: &str) -> Result<Option<Document>> {
        if let Some(r) = self.try_read_now("get", |r| r.get(namespace, key)) {
            return r;
        }
        let (ns, key) = (namespace.to_string(), key.to_string());
        self.read("get", move |r| r.get(&ns, &key)).await
    }

    async fn put(
        &self,
        namespace: &str,
        key: &str,
        write: DocumentWrite,
        precondition: Precondition,
    ) -> Result<Version> {
        self.submit("put", |reply| Job::Put {
            ns: namespace.to_string(),
            key: key.to_string(),
            write,
            precondition,
            reply,
        })
        .await
    }

    async fn transact(&self, writes: Vec<TxWrite>) -> Result<Vec<TxOutcome>> {
        check_transaction(&writes)?;
        if writes.is_empty() {
            return Ok(Vec::new());
        }
        self.submit("transact", |reply| Job::Transact { writes, reply })
            .await
    }

    async fn remove(&self, namespace: &str, key: &str, precondition: Precondition) -> Result<bool> {
        self.submit("remove", |reply| Job::Remove {
            ns: namespace.to_string(),
            key: key.to_string(),
            precondition,
            reply,
        })
        .await
    }

    async fn lookup(&self, namespace: &str, index: &str, term: &str) -> Result<Vec<String>> {
        if let Some(r) = self.try_read_now("lookup", |r| r.lookup(namespace, index, term)) {
            return r;
        }
        let (ns, index, term) = (namespace.to_string(), index.to_string(), term.to_string());
        self.read("lookup", move |r| r.lookup(&ns, &index, &term))
            .await
    }

    /// The term's live index entries counted where they lie: the walk of
    /// a lookup, copying no key.
    async fn count_term(&self, namespace: &str, index: &str, term: &str) -> Result<u64> {
        if let Some(r) = self.try_read_now("count_term", |r| r.count_term(namespace, index, term)) {
            return r;
        }
        let (ns, index, term) = (namespace.to_string(), index.to_string(), term.to_string());
        self.read("count_term", move |r| r.count_term(&ns, &index, &term))
            .await
    }

    async fn scan(&self, namespace: &str, request: ScanRequest) -> Result<ScanPage> {
        request.check(self.name(), &self.capabilities())?;
        let ns = namespace.to_string();
        self.read("scan", move |r| r.scan(&ns, request)).await
    }

    async fn count(&self, namespace: &str) -> Result<u64> {
        let ns = namespace.to_string();
        self.read("count", move |r| r.count(&ns)).await
    }

    async fn flush(&self) -> Result<()> {
        RedbBackend::flush(self).await
    }

    async fn namespaces(&self) -> Result<Vec<String>> {
        self.read("namespaces", |r| r.namespaces()).await
    }

    async fn index_terms(
        &self,
        namespace: &str,
        keys: &[String],
    ) -> Result<Vec<Option<persistence_core::backend::Terms>>> {
        let (ns, keys) = (namespace.to_string(), keys.to_vec());
        self.read("index terms", move |r| {
            keys.iter().map(|k| r.terms(&ns, k)).collect()
        })
        .await
    }

    async fn get_many(&self, namespace: &str, keys: &[String]) -> Vec<Result<Option<Document>>> {
        let all = match self.try_read_now("get", |r| {
            Ok(keys.iter().map(|k| r.get(namespace, k)).collect::<Vec<_>>())
        }) {
            Some(all) => all,
            None => {
                let (ns, keys) = (namespace.to_string(), keys.to_vec());
                self.read("get", move |r| {
                    Ok(keys.iter().map(|k| r.get(&ns, k)).collect::<Vec<_>>())
                })
                .await
            }
        };
        all.unwrap_or_else(|e| vec![Err(e); keys.len()])
    }

    /// Every put goes to the writer at once, so they commit together.
    async fn put_many(&self, namespace: &str, puts: Vec<Put>) -> Vec<Result<Version>> {
        self.submit_all("put", puts, |p, reply| Job::Put {
            ns: namespace.to_string(),
            key: p.key,
            write: p.write,
            precondition: p.precondition,
            reply,
        })
        .await
    }

    /// Every removal goes to the writer at once, so they commit together.
    async fn remove_many(&self, namespace: &str, removes: Vec<Remove>) -> Vec<Result<bool>> {
        self.submit_all("remove", removes, |r, reply| Job::Remove {
            ns: namespace.to_string(),
            key: r.key,
            precondition: r.precondition,
            reply,
        })
        .await
    }

    async fn health(&self) -> Health {
        let started = std::time::Instant::now();
        let mut health = match self
            .read("health", |r| r.get("", "\u{ff} health probe"))
            .await
        {
            Ok(_) => Health::ok(
                "redb",
                format!("redb database at {}", self.shared.path.display()),
            ),
            Err(e) => Health {
                status: HealthStatus::Down,
                backend: "redb".into(),
                message: e.to_string(),
                latency_ms: None,
                details: Default::default(),
            },
        };
        health.latency_ms = Some(started.elapsed().as_secs_f64() * 1e3);
        let details = &mut health.details;
        details.insert("path".into(), self.shared.path.display().to_string());
        if let Ok(size) = self.size_on_disk() {
            details.insert("size_on_disk_bytes".into(), size.to_string());
        }
        details.insert(
            "durability".into(),
            match self.shared.durability {
                Durability::Immediate => "immediate".to_string(),
                Durability::Periodic { every } => format!("periodic ({} ms)", every.as_millis()),
            },
        );
        let overdue = self.overdue.load(Ordering::Relaxed);
        details.insert("overdue_calls".into(), overdue.to_string());
        if self.jobs.lock().is_none() || self.writer.as_ref().is_none_or(|w| w.is_finished()) {
            health.status = HealthStatus::Down;
            health.message = stopped().to_string();
        } else if overdue > 0 && health.status == HealthStatus::Ok {
            health.status = HealthStatus::Degraded;
            health.message = format!(
                "{} ({overdue} calls did not finish within {:?})",
                health.message, self.call_timeout
            );
        }
        health
    }

    fn stats(&self) -> Stats {
        let mut stats = Stats::default();
        stats.set("redb_overdue_calls", self.overdue.load(Ordering::Relaxed));
        stats
    }
}

#[cfg(test)]
mod containment {
    use super::*;
    use persistence_core::backend::BackendExt;

    /// While something holds the database alone (here the lock compaction
    /// takes, standing in for any stuck engine call), a write and a read
    /// each fail with `Timeout` after the deadline, health is down, then
    /// degraded once it answers again, and the runtime, a single thread, keeps running other tasks.
    #[test]
    // the lock is held across awaits on purpose: it is the stuck engine
    #[allow(clippy::await_holding_lock)]
    fn a_stuck_engine_times_out_calls_without_stopping_the_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let backend = Arc::new(
            RedbBackend::open(&RedbOptions {
                call_timeout: Duration::from_millis(300),
                ..RedbOptions::new(dir.path().join("db.redb"))
            })
            .unwrap(),
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            backend
                .insert("ns", "k", DocumentWrite::new(&b"{}"[..]))
                .await
                .unwrap();
            let held = backend.shared.db.write();
            let ticks = Arc::new(AtomicU64::new(0));
            let heartbeat = {
                let ticks = ticks.clone();
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        ticks.fetch_add(1, Ordering::Relaxed);
                    }
                })
            };
            let started = std::time::Instant::now();
            let err = backend
                .put(
                    "ns",
                    "k2",
                    DocumentWrite::new(&b"{}"[..]),
                    Precondition::Any,
                )
                .await
                .unwrap_err();
            assert_eq!(err.kind(), persistence_core::ErrorKind::Timeout, "{err}");
            let err = backend.get("ns", "k").await.unwrap_err();
            assert_eq!(err.kind(), persistence_core::ErrorKind::Timeout, "{err}");
            assert!(
                started.elapsed() < Duration::from_secs(3),
                "{:?}",
                started.elapsed()
            );
            assert!(
                ticks.load(Ordering::Relaxed) >= 20,
                "the runtime's only thread was blocked: {} ticks",
                ticks.load(Ordering::Relaxed)
            );
            // not answering at all: down, and its probe is one more overdue call
            let health = backend.health().await;
            assert_eq!(health.status, HealthStatus::Down, "{health:?}");
            drop(held);
            let health = backend.health().await;
            assert_eq!(health.status, HealthStatus::Degraded, "{health:?}");
            assert_eq!(health.details["overdue_calls"], "3");
            heartbeat.abort();
            // usable again once released; the timed-out put still landed
            // (a timeout says "unknown", as everywhere)
            assert!(backend.get("ns", "k").await.unwrap().is_some());
            let v = backend
                .put(
                    "ns",
                    "k3",
                    DocumentWrite::new(&b"{}"[..]),
                    Precondition::Absent,
                )
                .await
                .unwrap();
            assert!(v.0 > 0);
        });
    }

    /// A write refused by its precondition inside a group changes nothing
    /// and does not fail the writes committed with it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refused_write_in_a_group_leaves_its_neighbours_alone() {
        let dir = tempfile::tempdir().unwrap();
        let b = RedbBackend::open(&RedbOptions::new(dir.path().join("db.redb"))).unwrap();
        b.insert(
            "ns",
            "taken",
            DocumentWrite::new(&b"old"[..]).with_term("i", "old"),
        )
        .await
        .unwrap();
        let puts = (0..50)
            .map(|n| Put {
                key: if n == 25 {
                    "taken".into()
                } else {
                    format!("k{n}")
                },
                write: DocumentWrite::new(format!("v{n}").into_bytes()).with_term("i", "new"),
                precondition: Precondition::Absent,
            })
            .collect();
        let results = b.put_many("ns", puts).await;
        for (n, r) in results.iter().enumerate() {
            if n == 25 {
                assert_eq!(
                    r.as_ref().unwrap_err().kind(),
                    persistence_core::ErrorKind::AlreadyExists
                );
            } else {
                assert!(r.is_ok(), "{n}: {r:?}");
            }
        }
        assert_eq!(
            &b.get("ns", "taken").await.unwrap().unwrap().value[..],
            b"old"
        );
        assert_eq!(b.lookup("ns", "i", "old").await.unwrap(), ["taken"]);
        assert_eq!(b.lookup("ns", "i", "new").await.unwrap().len(), 49);
        let versions: std::collections::BTreeSet<_> =
            results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(versions.len(), 49, "versions never repeat");
    }
}
