//! The sled backend: an embedded, durable [`Backend`], no server to run.
//!
//! A document and all its index, creation-order and expiry entries live in
//! one sled tree and change in one atomic `apply_batch`, so readers and crash
//! recovery see either the old state or the new one. Writers to the same key
//! are serialized by an in-process lock while they check the precondition
//! (sled lets one process at a time open a database, so in-process is
//! enough). `docs/sled.md` says exactly when a write is durable. Versions and
//! creation stamps come from sled's persistent id generator, so they survive
//! restarts and never repeat.
//!
//! ```
//! use persistence_sled::{SledBackend, SledOptions};
//! use persistence_core::{TaskStore, SharedBackend};
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let dir = tempfile::tempdir().unwrap();
//! let backend = SledBackend::open(&SledOptions::new(dir.path())).unwrap();
//! let tasks = TaskStore::new(std::sync::Arc::new(backend) as SharedBackend);
//! assert_eq!(tasks.load("nope").await.unwrap(), None);
//! # });
//! ```
#![warn(missing_docs, missing_debug_implementations)]

mod open;
mod queue;
mod settings;
mod spill;
mod streams;

pub use queue::{SledJournal, SledRunQueue};
pub use settings::{SledProvider, SledSettings, SEED_VARIABLES};
pub use spill::SledQueueSpill;
pub use streams::SledStreams;

use std::hash::{DefaultHasher, Hash, Hasher};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use persistence_core::backend::{
    check_transaction, next_stamp, Backend, Capabilities, Document, DocumentWrite, Health,
    HealthStatus, IndexTerm, Precondition, ScanOrder, ScanPage, ScanRequest, Stats, TxOutcome,
    TxWrite, Version,
};
use persistence_core::{Error, Result};

use persistence_ordered_layout as layout;
use persistence_ordered_layout::{expires_ms, now_ms, Record};

/// Expired documents purged after one write, at most: bounded work per call.
const PURGE_PER_WRITE: usize = 16;

/// Stripes of the per-key writer lock.
const KEY_LOCKS: usize = 64;

/// How to open a sled database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SledOptions {
    /// Directory of the database (created if missing).
    pub path: PathBuf,
    /// How often sled flushes to disk in the background, in milliseconds;
    /// `None` keeps sled's default (500 ms), `Some(0)` turns it off.
    pub flush_every_ms: Option<u64>,
    /// Flush (fsync) before every write returns: a write is durable once
    /// acknowledged, at the cost of one fsync per write.
    pub flush_on_write: bool,
    /// Remove the directory when the backend is dropped (scratch databases
    /// and tests).
    pub temporary: bool,
    /// Longest wait for one sled call before it fails with `Timeout`
    /// (default 30 s).
    pub call_timeout: Duration,
}

impl SledOptions {
    /// Options for the database at `path` with sled's defaults.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SledOptions {
            path: path.into(),
            flush_every_ms: None,
            flush_on_write: false,
            temporary: false,
            call_timeout: DEFAULT_CALL_TIMEOUT,
        }
    }
}

/// How long a sled call may take unless told otherwise.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The sled backend. Share it behind an `Arc`; one per database directory
/// (sled locks the directory against every other handle).
///
/// Every sled call runs on tokio's blocking pool under a deadline
/// ([`SledOptions::call_timeout`]), never on the runtime's workers: sled
/// 0.34 can deadlock under heavy load (its upstream issue 1412), and a call
/// that does so then fails with `Timeout` and makes health `degraded`,
/// instead of stopping every task of the process. Its calls therefore need
/// a tokio runtime with time enabled (`enable_time`, or `enable_all`).
#[derive(Debug)]
pub struct SledBackend {
    engine: Arc<Engine>,
    call_timeout: Duration,
    /// Calls that did not finish within `call_timeout`.
    overdue: AtomicU64,
    /// The run queues opened in this database, by name.
    queues: tokio::sync::Mutex<
        std::collections::HashMap<
            String,
            persistence_core::queue::WeakLocalQueue<queue::SledJournal>,
        >,
    >,
}

/// The database and what every call needs; its methods block.
#[derive(Debug)]
struct Engine {
    db: sled::Db,
    tree: sled::Tree,
    key_locks: Box<[Mutex<()>]>,
    path: PathBuf,
    flush_on_write: bool,
    /// Whether expiry entries may exist, so that databases without TTLs
    /// skip the purge step entirely.
    has_expiry: AtomicBool,
    /// The last version / creation stamp handed out (Unix microseconds).
    last_stamp: AtomicU64,
    /// Stamps below this were possibly handed out before: it is stored
    /// (`STAMP_FLOOR`) ahead of the stamps, so that a clock set back across
    /// a restart cannot hand one out twice.
    stamp_floor: parking_lot::Mutex<u64>,
}

/// Key in sled's default tree of the stamp floor.
const STAMP_FLOOR: &[u8] = b"stamp_floor";
/// How far ahead of the stamps the floor is stored (60 s): one small
/// write per minute of writes.
const FLOOR_AHEAD: u64 = 60_000_000;

impl SledBackend {
    /// Opens (or creates) the database at `options.path`.
    ///
    /// Errors name the path: `Config` when it is a file or not writable,
    /// `Unavailable` when another process or handle holds it, `Corrupted`
    /// when its files cannot be read. Never panics.
    pub fn open(options: &SledOptions) -> Result<Self> {
        let db = open::open_db(options)?;
        let tree = db
            .open_tree("persistence")
            .map_err(|e| open::error(&options.path, e))?;
        let has_expiry = tree.scan_prefix([layout::EXPIRY]).next().is_some();
        let floor = match db.get(STAMP_FLOOR) {
            Ok(Some(b)) => <[u8; 8]>::try_from(&b[..])
                .map(u64::from_be_bytes)
                .map_err(|_| Error::Corrupted {
                    namespace: String::new(),
                    key: options.path.display().to_string(),
                    reason: format!("sled stamp floor of {} bytes", b.len()),
                    len: b.len(),
                })?,
            Ok(None) => 0,
            Err(e) => return Err(open::error(&options.path, e)),
        };
        // databases written before stamps were times hold ids from sled's counter
        let counter = db
            .generate_id()
            .map_err(|e| open::error(&options.path, e))?;
        let engine = Engine {
            last_stamp: AtomicU64::new(floor.max(counter + 1)),
            stamp_floor: parking_lot::Mutex::new(floor),
            tree,
            key_locks: (0..KEY_LOCKS).map(|_| Mutex::new(())).collect(),
            path: options.path.clone(),
            flush_on_write: options.flush_on_write,
            has_expiry: AtomicBool::new(has_expiry),
            db,
        };
        Ok(SledBackend {
            engine: Arc::new(engine),
            call_timeout: options.call_timeout,
            overdue: AtomicU64::new(0),
            queues: Default::default(),
        })
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.engine.path
    }

    /// Flushes every write so far to disk (fsync) and returns the bytes flushed.
    pub async fn flush(&self) -> Result<usize> {
        self.blocking("flush", |e| e.flush()).await
    }

    /// Bytes the database takes on disk.
    pub fn size_on_disk(&self) -> Result<u64> {
        self.engine
            .db
            .size_on_disk()
            .map_err(|e| self.engine.io_error("size_on_disk", e))
    }

    /// Frees every expired document now and returns how many. Writes free
    /// a few each already; call this after a quiet period with many expiries.
    pub fn purge_expired(&self) -> Result<usize> {
        self.engine.purge(usize::MAX)
    }

    /// Runs `call` on the blocking pool, waiting at most `call_timeout`: a
    /// call past it fails with `Timeout` (its thread is left to finish or
    /// stay stuck; the runtime's workers never wait for it).
    async fn blocking<T: Send + 'static>(
        &self,
        operation: &'static str,
        call: impl FnOnce(&Engine) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let engine = self.engine.clone();
        let task = tokio::task::spawn_blocking(move || call(&engine));
        match tokio::time::timeout(self.call_timeout, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => Err(Error::Internal {
                backend: "sled".into(),
                message: format!("{operation} panicked: {e}"),
            }),
            Err(_) => {
                self.overdue.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    operation,
                    after = ?self.call_timeout,
                    path = %self.engine.path.display(),
                    "a sled call did not finish in time; sled 0.34 can deadlock under load (upstream issue 1412)"
                );
                Err(Error::Timeout {
                    operation: format!("sled {operation}"),
                    after: self.call_timeout,
                })
            }
        }
    }
}

impl Engine {
    fn io_error(&self, what: &str, e: sled::Error) -> Error {
        match e {
            sled::Error::Corruption { .. } => Error::Corrupted {
                namespace: String::new(),
                key: self.path.display().to_string(),
                reason: format!("{what}: {e}"),
                len: 0,
            },
            e => Error::Unavailable {
                backend: "sled".into(),
                reason: format!("{what} on {}: {e}", self.path.display()),
            },
        }
    }

    fn corrupted(ns: &str, key: &str, reason: String, len: usize) -> Error {
        Error::Corrupted {
            namespace: ns.into(),
            key: key.into(),
            reason: format!("sled record: {reason}"),
            len,
        }
    }

    /// A new version / creation stamp: Unix microseconds, unique and
    /// increasing ([`next_stamp`]), never 0 (which means "never" in expiry
    /// fields).
    fn next_id(&self) -> Result<u64> {
        let mut last = self.last_stamp.load(Ordering::Relaxed);
        let id = loop {
            let next = next_stamp(last);
            match self.last_stamp.compare_exchange_weak(
                last,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break next,
                Err(seen) => last = seen,
            }
        };
        let mut floor = self.stamp_floor.lock();
        if id >= *floor {
            let ahead = id.saturating_add(FLOOR_AHEAD);
            self.db
                .insert(STAMP_FLOOR, &ahead.to_be_bytes())
                .map_err(|e| self.io_error("store stamp floor", e))?;
            *floor = ahead;
        }
        Ok(id)
    }

    /// The writer lock of `(ns, key)`.
    fn lock(&self, ns: &str, key: &str) -> parking_lot::MutexGuard<'_, ()> {
        self.key_locks[self.lock_index(ns, key)].lock()
    }

    /// Which of the writer locks guards `(ns, key)`.
    fn lock_index(&self, ns: &str, key: &str) -> usize {
        let mut h = DefaultHasher::new();
        (ns, key).hash(&mut h);
        h.finish() as usize % KEY_LOCKS
    }

    /// The stored record at `dk`, still encoded.
    fn read(&self, dk: &[u8]) -> Result<Option<sled::IVec>> {
        self.tree.get(dk).map_err(|e| self.io_error("get", e))
    }

    fn flush(&self) -> Result<usize> {
        self.db.flush().map_err(|e| self.io_error("flush", e))
    }

    fn after_write(&self) -> Result<()> {
        if self.has_expiry.load(Ordering::Relaxed) {
            self.purge(PURGE_PER_WRITE)?;
        }
        if self.flush_on_write {
            self.flush()?;
        }
        Ok(())
    }

    /// Adds to `batch` the removal of a record's index, creation and expiry entries.
    fn unlink(batch: &mut sled::Batch, ns: &str, rec: &Record<'_>) {
        for t in &rec.terms {
            batch.remove(layout::index_key(ns, t, rec.created));
        }
        batch.remove(layout::created_key(ns, rec.created));
        if rec.expires != 0 {
            batch.remove(layout::expiry_key(rec.expires, ns, rec.created));
        }
    }

    /// Adds to `batch` a record's index, creation and expiry entries.
    fn link(batch: &mut sled::Batch, ns: &str, key: &str, rec: &Record<'_>) {
        let pointer = layout::pointer(rec.expires, key);
        for t in &rec.terms {
            batch.insert(layout::index_key(ns, t, rec.created), &*pointer);
        }
        batch.insert(layout::created_key(ns, rec.created), &*pointer);
        if rec.expires != 0 {
            batch.insert(
                layout::expiry_key(rec.expires, ns, rec.created),
                key.as_bytes(),
            );
        }
    }

    fn purge(&self, max: usize) -> Result<usize> {
        let now = now_ms();
        let upto = [&[layout::EXPIRY][..], &(now + 1).to_be_bytes()].concat();
        let mut purged = 0;
        while purged < max {
            let batch: Vec<_> = self
                .tree
                .range(&[layout::EXPIRY][..]..&upto[..])
                .take((max - purged).min(64))
                .collect::<Result<_, _>>()
                .map_err(|e| self.io_error("purge", e))?;
            if batch.is_empty() {
                break;
            }
            for (k, v) in batch {
                let (expires, ns, created) = layout::parse_expiry_key(&k).ok_or_else(|| {
                    Self::corrupted("", "expiry entry", "bad key".into(), k.len())
                })?;
                let key = String::from_utf8_lossy(&v).into_owned();
                let _writer = self.lock(&ns, &key);
                let dk = layout::doc_key(&ns, &key);
                let mut changes = sled::Batch::default();
                changes.remove(&*k);
                if let Some(bytes) = self.read(&dk)? {
                    // a damaged record stays for an operator
                    if let Ok(rec) = Record::decode(&bytes) {
                        if rec.created == created && rec.expires == expires {
                            Self::unlink(&mut changes, &ns, &rec);
                            changes.remove(dk);
                        }
                    }
                }
                self.tree
                    .apply_batch(changes)
                    .map_err(|e| self.io_error("purge", e))?;
                purged += 1;
            }
        }
        if self.tree.scan_prefix([layout::EXPIRY]).next().is_none() {
            self.has_expiry.store(false, Ordering::Relaxed);
        }
        Ok(purged)
    }
}

/// The precondition against a stored record (the live one, if any).
fn check(ns: &str, key: &str, pre: Precondition, current: Option<&Record<'_>>) -> Result<()> {
    pre.check(ns, key, current.map(|r| Version(r.version)))
}

/// The contract's operations, blocking.
impl Engine {
    fn get(&self, namespace: &str, key: &str) -> Result<Option<Document>> {
        let Some(bytes) = self.read(&layout::doc_key(namespace, key))? else {
            return Ok(None);
        };
        let rec =
            Record::decode(&bytes).map_err(|r| Self::corrupted(namespace, key, r, bytes.len()))?;
        Ok(layout::live(rec.expires, now_ms()).then(|| rec.document()))
    }

    fn put(
        &self,
        namespace: &str,
        key: &str,
        write: DocumentWrite,
        precondition: Precondition,
    ) -> Result<Version> {
        let now = now_ms();
        let expires = expires_ms(now, write.ttl);
        let terms = IndexTerm::dedup(write.index);
        let dk = layout::doc_key(namespace, key);
        let id = self.next_id()?;
        {
            let _writer = self.lock(namespace, key);
            let old_bytes = self.read(&dk)?;
            let old = match &old_bytes {
                Some(b) => Some(
                    Record::decode(b).map_err(|r| Self::corrupted(namespace, key, r, b.len()))?,
                ),
                None => None,
            };
            let live = old.as_ref().filter(|r| layout::live(r.expires, now));
            check(namespace, key, precondition, live)?;
            let rec = Record {
                version: id,
                created: live.map_or(id, |r| r.created),
                expires,
                terms,
                value: &write.value,
            };
            if live.is_some_and(|r| r.terms == rec.terms && r.expires == rec.expires) {
                // Only the document changes: one key, atomic on its own.
                // (Every sled batch seals the log buffer twice, so the
                // common update avoids one.)
                self.tree
                    .insert(dk, rec.encode())
                    .map_err(|e| self.io_error("put", e))?;
            } else {
                let mut batch = sled::Batch::default();
                if let Some(old) = &old {
                    Self::unlink(&mut batch, namespace, old);
                }
                Self::link(&mut batch, namespace, key, &rec);
                batch.insert(dk, rec.encode());
                self.tree
                    .apply_batch(batch)
                    .map_err(|e| self.io_error("put", e))?;
            }
        }
        if expires != 0 {
            self.has_expiry.store(true, Ordering::Relaxed);
        }
        self.after_write()?;
        Ok(Version(id))
    }

    fn remove(&self, namespace: &str, key: &str, precondition: Precondition) -> Result<bool> {
        precondition.check_removal(namespace, key)?;
        let now = now_ms();
        let dk = layout::doc_key(namespace, key);
        let removed = {
            let _writer = self.lock(namespace, key);
            let Some(bytes) = self.read(&dk)? else {
                check(namespace, key, precondition, None)?;
                return Ok(false);
            };
            let old = Record::decode(&bytes)
                .map_err(|r| Self::corrupted(namespace, key, r, bytes.len()))?;
            let live = layout::live(old.expires, now);
            check(namespace, key, precondition, live.then_some(&old))?;
            let mut batch = sled::Batch::default();
            Self::unlink(&mut batch, namespace, &old);
            batch.remove(dk);
            self.tree
                .apply_batch(batch)
                .map_err(|e| self.io_error("remove", e))?;
            live
        };
        self.after_write()?;
        Ok(removed)
    }

    /// All-or-nothing: the writer locks of every key (each once, in index
    /// order, so two transactions never wait on each other in a cycle),
    /// every precondition, then one batch with every change.
    fn transact(&self, writes: Vec<TxWrite>) -> Result<Vec<TxOutcome>> {
        check_transaction(&writes)?;
        if writes.is_empty() {
            return Ok(Vec::new());
        }
        let now = now_ms();
        let mut slots: Vec<usize> = writes
            .iter()
            .map(|w| {
                let (ns, key) = w.target();
                self.lock_index(ns, key)
            })
            .collect();
        slots.sort_unstable();
        slots.dedup();
        let _writers: Vec<_> = slots.iter().map(|i| self.key_locks[*i].lock()).collect();
        let mut olds = Vec::with_capacity(writes.len());
        for w in &writes {
            let (ns, key) = w.target();
            let bytes = self.read(&layout::doc_key(ns, key))?;
            if let Some(b) = &bytes {
                let rec = Record::decode(b).map_err(|r| Self::corrupted(ns, key, r, b.len()))?;
                let live = layout::live(rec.expires, now).then_some(&rec);
                check(ns, key, w.precondition(), live)?;
            } else {
                check(ns, key, w.precondition(), None)?;
            }
            olds.push(bytes);
        }
        let mut batch = sled::Batch::default();
        let mut outcomes = Vec::with_capacity(writes.len());
        let mut any_ttl = false;
        for (w, old_bytes) in writes.iter().zip(&olds) {
            let old = old_bytes
                .as_ref()
                .map(|b| Record::decode(b).expect("decoded above"));
            let live = old.as_ref().filter(|r| layout::live(r.expires, now));
            match w {
                TxWrite::Put {
                    namespace,
                    key,
                    write,
                    ..
                } => {
                    let id = self.next_id()?;
                    let expires = expires_ms(now, write.ttl);
                    any_ttl |= expires != 0;
                    let rec = Record {
                        version: id,
                        created: live.map_or(id, |r| r.created),
                        expires,
                        terms: IndexTerm::dedup(write.index.clone()),
                        value: &write.value,
                    };
                    if let Some(old) = &old {
                        Self::unlink(&mut batch, namespace, old);
                    }
                    Self::link(&mut batch, namespace, key, &rec);
                    batch.insert(layout::doc_key(namespace, key), rec.encode());
                    outcomes.push(TxOutcome::Put(Version(id)));
                }
                TxWrite::Remove { namespace, key, .. } => {
                    if let Some(old) = &old {
                        Self::unlink(&mut batch, namespace, old);
                        batch.remove(layout::doc_key(namespace, key));
                    }
                    outcomes.push(TxOutcome::Removed(live.is_some()));
                }
            }
        }
        self.tree
            .apply_batch(batch)
            .map_err(|e| self.io_error("transact", e))?;
        drop(_writers);
        if any_ttl {
            self.has_expiry.store(true, Ordering::Relaxed);
        }
        self.after_write()?;
        Ok(outcomes)
    }

    fn lookup(&self, namespace: &str, index: &str, term: &str) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        self.live_hits("lookup", namespace, index, term, |key| {
            keys.push(key.to_string())
        })?;
        Ok(keys)
    }

    /// How many live entries the term has: the walk of a lookup, copying
    /// no key.
    fn count_term(&self, namespace: &str, index: &str, term: &str) -> Result<u64> {
        let mut n = 0;
        self.live_hits("count_term", namespace, index, term, |_| n += 1)?;
        Ok(n)
    }

    /// Calls `f` with the key of each live index entry of the term, in
    /// (created, key) order.
    fn live_hits(
        &self,
        op: &'static str,
        namespace: &str,
        index: &str,
        term: &str,
        mut f: impl FnMut(&str),
    ) -> Result<()> {
        let now = now_ms();
        for entry in self
            .tree
            .scan_prefix(layout::term_prefix(namespace, index, term))
        {
            let (k, v) = entry.map_err(|e| self.io_error(op, e))?;
            let (expires, key) = layout::parse_pointer(&v).ok_or_else(|| {
                Self::corrupted(namespace, term, "index entry is damaged".into(), k.len())
            })?;
            if layout::live(expires, now) {
                f(key);
            }
        }
        Ok(())
    }

    fn scan(&self, namespace: &str, request: ScanRequest) -> Result<ScanPage> {
        request.check("sled", &CAPABILITIES)?;
        let now = now_ms();
        let limit = request.limit.max(1);
        let mut entries = Vec::new();
        let mut more = false;
        match request.order {
            ScanOrder::Key => {
                let prefix = layout::ns_prefix(layout::DOC, namespace);
                let start = match &request.cursor {
                    Some(c) => Bound::Excluded(layout::doc_key(namespace, c)),
                    None => Bound::Included(prefix.clone()),
                };
                for entry in self.tree.range((start, Bound::Unbounded)) {
                    let (k, bytes) = entry.map_err(|e| self.io_error("scan", e))?;
                    if !k.starts_with(&prefix) {
                        break;
                    }
                    let key = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
                    let rec = Record::decode(&bytes)
                        .map_err(|r| Self::corrupted(namespace, &key, r, bytes.len()))?;
                    if !layout::live(rec.expires, now) {
                        continue;
                    }
                    if entries.len() == limit {
                        more = true;
                        break;
                    }
                    entries.push((key, rec.document()));
                }
            }
            ScanOrder::Created | ScanOrder::NewestFirst => {
                let span = request.stamp_span()?;
                if span.start >= span.end {
                    return Ok(ScanPage::default());
                }
                let range = self.tree.range(
                    layout::created_key(namespace, span.start)
                        ..layout::created_key(namespace, span.end),
                );
                let range: Box<dyn Iterator<Item = _>> = match request.order {
                    ScanOrder::NewestFirst => Box::new(range.rev()),
                    _ => Box::new(range),
                };
                for entry in range {
                    let (_, v) = entry.map_err(|e| self.io_error("scan", e))?;
                    let Some((expires, key)) = layout::parse_pointer(&v) else {
                        return Err(Self::corrupted(
                            namespace,
                            "created entry",
                            "damaged".into(),
                            v.len(),
                        ));
                    };
                    if !layout::live(expires, now) {
                        continue;
                    }
                    // a document removed since the index was read is skipped
                    let Some(doc) = self.get(namespace, key)? else {
                        continue;
                    };
                    if entries.len() == limit {
                        more = true;
                        break;
                    }
                    entries.push((key.to_string(), doc));
                }
            }
        }
        Ok(ScanPage::after_last(entries, request.order, more))
    }

    /// Counts the namespace's creation entries: reads keys, not documents.
    fn terms(&self, ns: &str, key: &str) -> Result<Option<persistence_core::backend::Terms>> {
        let Some(bytes) = self.read(&layout::doc_key(ns, key))? else {
            return Ok(None);
        };
        let rec = Record::decode(&bytes).map_err(|r| Self::corrupted(ns, key, r, bytes.len()))?;
        Ok(layout::live(rec.expires, now_ms()).then_some((Version(rec.version), rec.terms)))
    }

    fn namespaces(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut start = layout::first_doc_key();
        loop {
            let Some(entry) = self.tree.range(start.as_slice()..).next() else {
                return Ok(out);
            };
            let (k, _) = entry.map_err(|e| self.io_error("namespaces", e))?;
            let Some((ns, next)) = layout::doc_namespace(&k) else {
                return Ok(out);
            };
            out.push(ns);
            start = next;
        }
    }

    fn count(&self, namespace: &str) -> Result<u64> {
        let now = now_ms();
        let mut n = 0;
        for entry in self
            .tree
            .scan_prefix(layout::ns_prefix(layout::CREATED, namespace))
        {
            let (_, v) = entry.map_err(|e| self.io_error("count", e))?;
            if layout::parse_pointer(&v).is_some_and(|(expires, _)| layout::live(expires, now)) {
                n += 1;
            }
        }
        Ok(n)
    }

    fn health(&self) -> Health {
        let started = std::time::Instant::now();
        let probe = self.tree.get(b"\xff health probe");
        let mut health = match probe {
            Ok(_) => Health::ok("sled", format!("sled database at {}", self.path.display())),
            Err(e) => Health {
                status: HealthStatus::Down,
                backend: "sled".into(),
                message: self.io_error("health probe", e).to_string(),
                latency_ms: None,
                details: Default::default(),
            },
        };
        health.latency_ms = Some(started.elapsed().as_secs_f64() * 1e3);
        health
            .details
            .insert("path".into(), self.path.display().to_string());
        if let Ok(size) = self.db.size_on_disk() {
            health
                .details
                .insert("size_on_disk_bytes".into(), size.to_string());
        }
        health
            .details
            .insert("flush_on_write".into(), self.flush_on_write.to_string());
        health
            .details
            .insert("recovered".into(), self.db.was_recovered().to_string());
        health
    }
}

/// What the sled backend declares.
const CAPABILITIES: Capabilities = Capabilities {
    ttl: true,
    scan: true,
    scan_by_creation: true,
    count: false,
    time_order: true,
    transactions: true,
    partitioned_transactions: false,
    native_batch: false,
    atomic_index: true,
    durable: true,
    export: true,
};

#[async_trait]
impl Backend for SledBackend {
    fn name(&self) -> &str {
        "sled"
    }

    fn capabilities(&self) -> Capabilities {
        CAPABILITIES
    }

    async fn get(&self, namespace: &str, key: &str) -> Result<Option<Document>> {
        let (ns, key) = (namespace.to_string(), key.to_string());
        self.blocking("get", move |e| e.get(&ns, &key)).await
    }

    async fn put(
        &self,
        namespace: &str,
        key: &str,
        write: DocumentWrite,
        precondition: Precondition,
    ) -> Result<Version> {
        let (ns, key) = (namespace.to_string(), key.to_string());
        self.blocking("put", move |e| e.put(&ns, &key, write, precondition))
            .await
    }

    async fn transact(&self, writes: Vec<TxWrite>) -> Result<Vec<TxOutcome>> {
        self.blocking("transact", move |e| e.transact(writes)).await
    }

    async fn remove(&self, namespace: &str, key: &str, precondition: Precondition) -> Result<bool> {
        let (ns, key) = (namespace.to_string(), key.to_string());
        self.blocking("remove", move |e| e.remove(&ns, &key, precondition))
            .await
    }

    async fn lookup(&self, namespace: &str, index: &str, term: &str) -> Result<Vec<String>> {
        let (ns, index, term) = (namespace.to_string(), index.to_string(), term.to_string());
        self.blocking("lookup", move |e| e.lookup(&ns, &index, &term))
            .await
    }

    /// The term's live index entries counted where they lie (no key copied).
    async fn count_term(&self, namespace: &str, index: &str, term: &str) -> Result<u64> {
        let (ns, index, term) = (namespace.to_string(), index.to_string(), term.to_string());
        self.blocking("count_term", move |e| e.count_term(&ns, &index, &term))
            .await
    }

    async fn scan(&self, namespace: &str, request: ScanRequest) -> Result<ScanPage> {
        let ns = namespace.to_string();
        self.blocking("scan", move |e| e.scan(&ns, request)).await
    }

    async fn count(&self, namespace: &str) -> Result<u64> {
        let ns = namespace.to_string();
        self.blocking("count", move |e| e.count(&ns)).await
    }

    async fn flush(&self) -> Result<()> {
        self.blocking("flush", |e| e.flush().map(drop)).await
    }

    async fn namespaces(&self) -> Result<Vec<String>> {
        self.blocking("namespaces", |e| e.namespaces()).await
    }

    async fn index_terms(
        &self,
        namespace: &str,
        keys: &[String],
    ) -> Result<Vec<Option<persistence_core::backend::Terms>>> {
        let (ns, keys) = (namespace.to_string(), keys.to_vec());
        self.blocking("index terms", move |e| {
            keys.iter().map(|k| e.terms(&ns, k)).collect()
        })
        .await
    }

    async fn health(&self) -> Health {
        let mut health = match self.blocking("health", |e| Ok(e.health())).await {
            Ok(health) => health,
            Err(e) => Health {
                status: HealthStatus::Down,
                backend: "sled".into(),
                message: e.to_string(),
                latency_ms: None,
                details: Default::default(),
            },
        };
        let overdue = self.overdue.load(Ordering::Relaxed);
        health
            .details
            .insert("overdue_calls".into(), overdue.to_string());
        if overdue > 0 && health.status == HealthStatus::Ok {
            health.status = HealthStatus::Degraded;
            health.message = format!(
                "{} ({overdue} calls did not finish within {:?}: sled may be deadlocked, see docs/sled.md)",
                health.message, self.call_timeout
            );
        }
        health
    }

    fn stats(&self) -> Stats {
        let mut stats = Stats::default();
        stats.set("sled_overdue_calls", self.overdue.load(Ordering::Relaxed));
        stats
    }
}

#[cfg(test)]
mod containment {
    use super::*;

    /// A call stuck inside the engine (here: on a writer lock held
    /// elsewhere, where a sled deadlock would hold it) fails with `Timeout`
    /// after the deadline, health turns degraded, and the runtime, a single
    /// thread, keeps running other tasks meanwhile.
    #[test]
    fn a_stuck_call_times_out_without_stopping_the_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let backend = Arc::new(
            SledBackend::open(&SledOptions {
                call_timeout: Duration::from_millis(300),
                ..SledOptions::new(dir.path().join("db"))
            })
            .unwrap(),
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            // another thread holds the key's writer lock until released
            let (held, release) = (std::sync::mpsc::channel(), std::sync::mpsc::channel::<()>());
            let engine = backend.engine.clone();
            let holder = std::thread::spawn(move || {
                let _stuck = engine.lock("ns", "k");
                held.0.send(()).unwrap();
                let _ = release.1.recv();
            });
            held.1.recv().unwrap();
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
                .put("ns", "k", DocumentWrite::new(&b"{}"[..]), Precondition::Any)
                .await
                .unwrap_err();
            assert_eq!(err.kind(), persistence_core::ErrorKind::Timeout, "{err}");
            assert!(
                started.elapsed() < Duration::from_secs(3),
                "{:?}",
                started.elapsed()
            );
            assert!(
                ticks.load(Ordering::Relaxed) >= 10,
                "the runtime's only thread was blocked: {} ticks",
                ticks.load(Ordering::Relaxed)
            );
            let health = backend.health().await;
            assert_eq!(health.status, HealthStatus::Degraded, "{health:?}");
            assert_eq!(health.details["overdue_calls"], "1");
            release.0.send(()).unwrap();
            holder.join().unwrap();
            heartbeat.abort();
            // the engine is usable again once the stuck call is released
            let v = backend
                .put(
                    "ns",
                    "k2",
                    DocumentWrite::new(&b"{}"[..]),
                    Precondition::Absent,
                )
                .await
                .unwrap();
            assert!(v.0 > 0);
        });
    }
}
