//! The structures behind the memory backend: namespaces split into shards,
//! each shard a map of entries with its own index and orders.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use parking_lot::RwLock;

use crate::backend::{Document, IndexTerm, Precondition, Version};
use crate::error::{Error, Result};

/// Expired documents purged by one write, at most: keeps every write's work
/// bounded however many documents expire at once.
pub(super) const PURGE_PER_WRITE: usize = 16;

/// Shards per namespace: writers to different shards run in parallel.
pub(super) const SHARDS: usize = 16;

#[derive(Debug)]
pub(super) struct Namespace {
    pub(super) shards: Box<[RwLock<Space>]>,
    /// The shard the next write sweeps for expired documents, round-robin,
    /// so shards nobody writes to are purged too.
    pub(super) next_sweep: AtomicU64,
}

impl Default for Namespace {
    fn default() -> Self {
        Namespace {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            next_sweep: AtomicU64::new(0),
        }
    }
}

impl Namespace {
    pub(super) fn shard(&self, key: &str) -> &RwLock<Space> {
        &self.shards[self.shard_index(key)]
    }

    /// The position of `key`'s shard.
    pub(super) fn shard_index(&self, key: &str) -> usize {
        // A fixed hasher: the shard only spreads load, it is never exposed.
        let mut h = std::hash::DefaultHasher::new();
        std::hash::Hash::hash(key, &mut h);
        std::hash::Hasher::finish(&h) as usize % SHARDS
    }

    /// Purges a few expired documents of the next shard in turn, unless
    /// someone holds it: bounded work, never a wait.
    pub(super) fn sweep_one(&self, now: SystemTime) {
        let n = self.next_sweep.fetch_add(1, Ordering::Relaxed) as usize % SHARDS;
        if let Some(mut shard) = self.shards[n].try_write() {
            shard.purge_expired(now, PURGE_PER_WRITE);
        }
    }
}

/// One namespace. Creation stamps are unique (drawn from the backend's
/// clock at insert), so the ordered structures are keyed by stamp alone and
/// removing from them allocates nothing.
#[derive(Debug, Default)]
pub(super) struct Space {
    /// Point operations hash; `by_key` keeps key order for scans. Keys are
    /// shared by every structure, so removing a document frees nothing under
    /// the lock but refcounts.
    pub(super) docs: HashMap<Arc<str>, Entry>,
    pub(super) by_key: BTreeSet<Arc<str>>,
    pub(super) by_created: BTreeMap<u64, Arc<str>>,
    /// index name -> term -> created -> key: documents in (created, key) order.
    pub(super) index: Index,
    /// (expires_at, created) of documents with a TTL.
    pub(super) expiry: BTreeSet<(SystemTime, u64)>,
}

#[derive(Debug)]
pub(super) struct Entry {
    pub(super) value: Bytes,
    pub(super) version: u64,
    pub(super) created: u64,
    pub(super) expires_at: Option<SystemTime>,
    pub(super) terms: Vec<IndexTerm>,
}

impl Entry {
    pub(super) fn live(&self, now: SystemTime) -> bool {
        self.expires_at.is_none_or(|t| t > now)
    }

    pub(super) fn document(&self) -> Document {
        Document {
            value: self.value.clone(),
            version: Version(self.version),
            created: self.created,
            expires_at: self.expires_at,
        }
    }
}

pub(super) type Index = HashMap<String, HashMap<String, BTreeMap<u64, Arc<str>>>>;

pub(super) fn index_add(index: &mut Index, terms: &[IndexTerm], created: u64, key: &Arc<str>) {
    for term in terms {
        index
            .entry(term.index.clone())
            .or_default()
            .entry(term.term.clone())
            .or_default()
            .insert(created, key.clone());
    }
}

pub(super) fn index_remove(index: &mut Index, terms: &[IndexTerm], created: u64) {
    for term in terms {
        if let Some(by_term) = index.get_mut(&term.index) {
            if let Some(keys) = by_term.get_mut(&term.term) {
                keys.remove(&created);
                if keys.is_empty() {
                    by_term.remove(&term.term);
                }
            }
        }
    }
}

impl Space {
    pub(super) fn live(&self, key: &str, now: SystemTime) -> Option<&Entry> {
        self.docs.get(key).filter(|e| e.live(now))
    }

    /// Removes a document with its index and expiry entries; the caller
    /// drops what it returns after releasing the lock.
    pub(super) fn unlink(&mut self, key: &str) -> Option<(Arc<str>, Entry)> {
        let (key, entry) = self.docs.remove_entry(key)?;
        self.by_key.remove(&key);
        self.by_created.remove(&entry.created);
        if let Some(t) = entry.expires_at {
            self.expiry.remove(&(t, entry.created));
        }
        index_remove(&mut self.index, &entry.terms, entry.created);
        Some((key, entry))
    }

    pub(super) fn link(&mut self, key: &str, entry: Entry) {
        let key: Arc<str> = Arc::from(key);
        self.by_key.insert(key.clone());
        self.by_created.insert(entry.created, key.clone());
        if let Some(t) = entry.expires_at {
            self.expiry.insert((t, entry.created));
        }
        index_add(&mut self.index, &entry.terms, entry.created, &key);
        self.docs.insert(key, entry);
    }

    /// Replaces a live document in place, touching the index and the expiry
    /// set only where they change (an update rarely changes its terms).
    /// Returns the old value, for the caller to drop outside the lock.
    pub(super) fn overwrite(&mut self, key: &str, write: NewContent) -> Option<Bytes> {
        let Space {
            docs,
            by_created,
            index,
            expiry,
            ..
        } = self;
        let entry = docs.get_mut(key)?;
        if entry.terms != write.terms {
            let shared_key = by_created.get(&entry.created)?.clone();
            index_remove(index, &entry.terms, entry.created);
            index_add(index, &write.terms, entry.created, &shared_key);
            entry.terms = write.terms;
        }
        if entry.expires_at != write.expires_at {
            if let Some(t) = entry.expires_at {
                expiry.remove(&(t, entry.created));
            }
            if let Some(t) = write.expires_at {
                expiry.insert((t, entry.created));
            }
            entry.expires_at = write.expires_at;
        }
        entry.version = write.version;
        Some(std::mem::replace(&mut entry.value, write.value))
    }

    /// The index entries of `term` in `index` (expired ones included), by
    /// creation stamp.
    pub(super) fn entries(&self, index: &str, term: &str) -> Option<&BTreeMap<u64, Arc<str>>> {
        self.index.get(index).and_then(|t| t.get(term))
    }

    /// Whether a document with a TTL has expired and is not freed yet.
    pub(super) fn has_expired(&self, now: SystemTime) -> bool {
        self.expiry.first().is_some_and(|&(t, _)| t <= now)
    }

    /// Frees up to `max` expired documents; returns how many it freed.
    pub(super) fn purge_expired(&mut self, now: SystemTime, max: usize) -> usize {
        for purged in 0..max {
            let Some(&(t, created)) = self.expiry.first() else {
                return purged;
            };
            if t > now {
                return purged;
            }
            match self.by_created.get(&created).cloned() {
                Some(key) => {
                    self.unlink(&key);
                }
                None => {
                    self.expiry.remove(&(t, created));
                }
            }
        }
        max
    }

    /// Stores `content` at `key` (checked already): over the live
    /// document, keeping its creation stamp, or as a new one. Returns what
    /// it replaced, to be dropped outside the lock.
    pub(super) fn store(&mut self, key: &str, content: NewContent, now: SystemTime) -> Garbage {
        if self.live(key, now).is_some() {
            (self.overwrite(key, content), None)
        } else {
            let leftover = self.unlink(key); // an expired leftover, if any
            let version = content.version;
            self.link(
                key,
                Entry {
                    value: content.value,
                    version,
                    created: version,
                    expires_at: content.expires_at,
                    terms: content.terms,
                },
            );
            (None, leftover)
        }
    }

    pub(super) fn check(
        &self,
        namespace: &str,
        key: &str,
        pre: Precondition,
        now: SystemTime,
    ) -> Result<()> {
        pre.check(
            namespace,
            key,
            self.live(key, now).map(|e| Version(e.version)),
        )
    }
}

/// What a write replaced: old bytes, or a whole old entry.
pub(super) type Garbage = (Option<Bytes>, Option<(Arc<str>, Entry)>);

/// What a put changes in a document.
pub(super) struct NewContent {
    pub(super) value: Bytes,
    pub(super) version: u64,
    pub(super) expires_at: Option<SystemTime>,
    pub(super) terms: Vec<IndexTerm>,
}

pub(super) fn expires_at(now: SystemTime, ttl: Option<Duration>) -> Result<Option<SystemTime>> {
    ttl.map(|ttl| {
        now.checked_add(ttl)
            .ok_or_else(|| Error::InvalidInput(format!("ttl {ttl:?} overflows the clock")))
    })
    .transpose()
}
