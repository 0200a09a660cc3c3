//! A memory cache in front of a durable backend (seed 000).

use std::sync::Arc;

use serde::Deserialize;

use super::LayerProvider;
use crate::config::Settings;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;

use crate::backend::{
    Backend, Document, DocumentWrite, Health, HealthStatus, Precondition, ScanOrder, ScanRequest,
    SharedBackend, Stats, TxOutcome, TxWrite, Version,
};
use crate::error::Result;

use super::Layer;

#[derive(Default)]
struct Lru {
    entries: HashMap<(String, String), (Document, u64)>,
    order: BTreeMap<u64, (String, String)>,
    tick: u64,
    /// Writes and removals seen so far: a read-through caches its answer
    /// only if none happened while it read (else it could cache a copy that
    /// a concurrent removal or write has just made stale).
    writes: u64,
    /// Entries evicted to stay within capacity.
    evictions: u64,
    /// Keys this process removed (or had a removal of accepted): absent
    /// without asking the durable tier, which may be down with the removal
    /// still queued. At most the capacity, oldest forgotten first.
    gone: HashSet<(String, String)>,
    gone_order: VecDeque<(String, String)>,
}

impl Lru {
    fn touch(&mut self, k: &(String, String)) -> Option<Document> {
        let (doc, used) = self.entries.get_mut(k)?;
        self.order.remove(used);
        self.tick += 1;
        *used = self.tick;
        self.order.insert(self.tick, k.clone());
        Some(doc.clone())
    }

    /// Caches `doc` unless a newer version is cached (two writers can reach
    /// the cache in the opposite order to the durable tier). Version 0 is a
    /// write accepted but not yet applied (recovery queue): always newest.
    fn put_if_newer(&mut self, k: (String, String), doc: Document, capacity: usize) {
        if let Some((cached, _)) = self.entries.get(&k) {
            if doc.version.0 != 0 && cached.version.0 != 0 && cached.version > doc.version {
                return;
            }
        }
        self.put(k, doc, capacity);
    }

    fn forget_gone(&mut self, k: &(String, String)) {
        self.gone.remove(k);
    }

    fn mark_gone(&mut self, k: (String, String), capacity: usize) {
        self.remove(&k);
        if self.gone.insert(k.clone()) {
            self.gone_order.push_back(k);
        }
        while self.gone.len() > capacity {
            match self.gone_order.pop_front() {
                Some(old) => {
                    self.gone.remove(&old);
                }
                None => break,
            }
        }
        // the order may hold keys written again since: drop them as they come
        while self.gone_order.len() > 2 * capacity {
            if let Some(old) = self.gone_order.pop_front() {
                if self.gone.contains(&old) {
                    self.gone_order.push_back(old);
                }
            }
        }
    }

    fn put(&mut self, k: (String, String), doc: Document, capacity: usize) {
        self.forget_gone(&k);
        self.remove(&k);
        self.tick += 1;
        self.order.insert(self.tick, k.clone());
        self.entries.insert(k, (doc, self.tick));
        while self.entries.len() > capacity {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.entries.remove(&oldest);
            self.evictions += 1;
        }
    }

    fn remove(&mut self, k: &(String, String)) -> Option<Document> {
        let (doc, used) = self.entries.remove(k)?;
        self.order.remove(&used);
        Some(doc)
    }
}

/// Keeps recently used documents in memory in front of a durable backend:
/// reads are served from memory when present (so they keep working while the
/// durable tier is down), read through otherwise; writes go to the durable
/// tier first and then to memory; removals leave both. At most `capacity`
/// documents, least recently used evicted first. Lookups, scans and counts
/// always ask the durable tier (it holds the indexes).
///
/// The cache is per process: a write another process makes to a shared
/// durable tier is seen here once the entry is evicted or rewritten.
pub struct CacheTier {
    durable: SharedBackend,
    lru: Mutex<Lru>,
    capacity: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl fmt::Debug for CacheTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheTier")
            .field("durable", &self.durable.name())
            .field("entries", &self.lru.lock().entries.len())
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl CacheTier {
    /// A cache of at most `capacity` documents over `durable`.
    pub fn new(durable: SharedBackend, capacity: usize) -> Self {
        CacheTier {
            durable,
            lru: Mutex::new(Lru::default()),
            capacity: capacity.max(1),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// Loads up to the capacity of `namespace`'s documents (needs a durable
    /// tier that can scan); returns how many were loaded.
    pub async fn preload(&self, namespace: &str) -> Result<usize> {
        let mut request = ScanRequest::first(ScanOrder::Key, 500);
        let mut loaded = 0;
        loop {
            let page = self.durable.scan(namespace, request.clone()).await?;
            let mut lru = self.lru.lock();
            for (key, doc) in page.entries {
                if loaded >= self.capacity {
                    return Ok(loaded);
                }
                lru.put_if_newer((namespace.into(), key), doc, self.capacity);
                loaded += 1;
            }
            drop(lru);
            match page.cursor {
                Some(c) => request.cursor = Some(c),
                None => return Ok(loaded),
            }
        }
    }

    /// `(hits, misses)` so far.
    pub fn hits_and_misses(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    fn key(ns: &str, key: &str) -> (String, String) {
        (ns.to_string(), key.to_string())
    }
}

#[async_trait]
impl Layer for CacheTier {
    fn inner(&self) -> &dyn Backend {
        &*self.durable
    }

    async fn get(&self, namespace: &str, key: &str) -> Result<Option<Document>> {
        let k = Self::key(namespace, key);
        let cached = {
            let mut lru = self.lru.lock();
            if lru.gone.contains(&k) {
                drop(lru);
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(None);
            }
            lru.touch(&k)
        };
        if let Some(doc) = cached {
            if doc.expires_at.is_none_or(|t| t > SystemTime::now()) {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(Some(doc));
            }
            self.lru.lock().remove(&k);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let writes_before = self.lru.lock().writes;
        let doc = self.durable.get(namespace, key).await?;
        if let Some(d) = &doc {
            let mut lru = self.lru.lock();
            if lru.writes == writes_before {
                lru.put_if_newer(k, d.clone(), self.capacity);
            }
        }
        Ok(doc)
    }

    /// The durable tier's lookup, then each read through this tier (so
    /// cached documents are served from memory, as by `get`).
    async fn lookup_values(
        &self,
        namespace: &str,
        index: &str,
        term: &str,
        limit: usize,
    ) -> Result<Vec<(String, Bytes)>> {
        crate::backend::lookup_then_read(self, namespace, index, term, limit).await
    }

    async fn put(
        &self,
        namespace: &str,
        key: &str,
        write: DocumentWrite,
        precondition: Precondition,
    ) -> Result<Version> {
        let k = Self::key(namespace, key);
        let (value, ttl) = (write.value.clone(), write.ttl);
        let result = self.durable.put(namespace, key, write, precondition).await;
        self.lru.lock().writes += 1;
        match result {
            Ok(version) => {
                let mut lru = self.lru.lock();
                lru.forget_gone(&k);
                // the creation stamp: kept from the cached copy, or this
                // write's version for an insert; a replace of an uncached key
                // is not cached (its stamp is the durable tier's to tell)
                let created = match lru.entries.get(&k) {
                    Some((old, _)) => Some(old.created),
                    None if precondition == Precondition::Absent => Some(version.0),
                    // accepted for later (recovery queue): this is the only
                    // copy there is until it is replayed, so it is cached
                    None if version.0 == 0 => Some(0),
                    None => None,
                };
                if let Some(created) = created {
                    let doc = Document {
                        value,
                        version,
                        created,
                        expires_at: ttl.and_then(|t| SystemTime::now().checked_add(t)),
                    };
                    lru.put_if_newer(k, doc, self.capacity);
                }
                Ok(version)
            }
            Err(e) => {
                if e.is_retryable() {
                    // it may or may not have applied: stop serving the old
                    // copy (or the old absence)
                    let mut lru = self.lru.lock();
                    lru.remove(&k);
                    lru.forget_gone(&k);
                }
                Err(e)
            }
        }
    }

    /// Through the durable tier; then each written key is read from it
    /// again next time (a removed one is remembered as absent). A failed
    /// precondition changed nothing, so the cache stays.
    async fn transact(&self, writes: Vec<TxWrite>) -> Result<Vec<TxOutcome>> {
        let keys: Vec<((String, String), bool)> = writes
            .iter()
            .map(|w| {
                let (ns, key) = w.target();
                (Self::key(ns, key), matches!(w, TxWrite::Remove { .. }))
            })
            .collect();
        let result = self.durable.transact(writes).await;
        let mut lru = self.lru.lock();
        lru.writes += keys.len() as u64;
        match &result {
            Ok(_) => {
                for (k, removed) in keys {
                    if removed {
                        lru.mark_gone(k, self.capacity);
                    } else {
                        lru.remove(&k);
                        lru.forget_gone(&k);
                    }
                }
            }
            Err(e) if e.is_retryable() => {
                for (k, _) in keys {
                    lru.remove(&k);
                    lru.forget_gone(&k);
                }
            }
            Err(_) => {}
        }
        result
    }

    async fn remove(&self, namespace: &str, key: &str, precondition: Precondition) -> Result<bool> {
        let result = self.durable.remove(namespace, key, precondition).await;
        let mut lru = self.lru.lock();
        lru.writes += 1;
        match &result {
            // removed, or accepted for later (recovery queue): absent here
            Ok(_) => lru.mark_gone(Self::key(namespace, key), self.capacity),
            // it may or may not have applied: ask the durable tier next time
            Err(e) if e.is_retryable() => {
                lru.remove(&Self::key(namespace, key));
            }
            Err(_) => {}
        }
        drop(lru);
        result
    }

    async fn health(&self) -> Health {
        let mut h = self.durable.health().await;
        let (hits, misses) = self.hits_and_misses();
        h.details.insert(
            "cache_entries".into(),
            self.lru.lock().entries.len().to_string(),
        );
        h.details
            .insert("cache_capacity".into(), self.capacity.to_string());
        h.details.insert("cache_hits".into(), hits.to_string());
        h.details.insert("cache_misses".into(), misses.to_string());
        if h.status == HealthStatus::Down {
            h.status = HealthStatus::Degraded;
            h.message = format!(
                "degraded: serving cached reads; the durable tier is down ({})",
                h.message
            );
        }
        h
    }

    fn stats(&self) -> Stats {
        let mut stats = self.durable.stats();
        let (hits, misses) = self.hits_and_misses();
        let lru = self.lru.lock();
        stats.set("cache_entries", lru.entries.len() as u64);
        stats.set("cache_evictions", lru.evictions);
        drop(lru);
        stats.set("cache_capacity", self.capacity as u64);
        stats.set("cache_hits", hits);
        stats.set("cache_misses", misses);
        stats
    }
}

/// `[cache]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheSettings {
    /// Most documents kept in memory.
    pub capacity: usize,
    /// Namespaces loaded into the cache when the backend opens.
    pub preload: Vec<String>,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            capacity: 10_000,
            preload: Vec::new(),
        }
    }
}

/// Registers `cache` (`[cache]`).
#[derive(Debug, Clone, Copy, Default)]
pub struct CacheProvider;

#[async_trait]
impl LayerProvider for CacheProvider {
    fn name(&self) -> &'static str {
        "cache"
    }

    fn check(&self, settings: &Settings) -> Result<()> {
        settings.table::<CacheSettings>(self.name()).map(drop)
    }

    fn wrap(&self, inner: SharedBackend, settings: &Settings) -> Result<SharedBackend> {
        let c: CacheSettings = settings.table(self.name())?;
        Ok(Arc::new(CacheTier::new(inner, c.capacity)))
    }

    /// Fills the cache with each `preload` namespace by reading it once
    /// through the whole stack (each read passes the cache and stays there).
    async fn prepare(&self, stack: &SharedBackend, settings: &Settings) -> Result<()> {
        let c: CacheSettings = settings.table(self.name())?;
        for namespace in &c.preload {
            let mut request = ScanRequest::first(ScanOrder::Key, 500);
            loop {
                let page = stack.scan(namespace, request.clone()).await?;
                for (key, _) in &page.entries {
                    stack.get(namespace, key).await?;
                }
                match page.cursor {
                    Some(c) => request.cursor = Some(c),
                    None => break,
                }
            }
        }
        Ok(())
    }
}
