//! The in-memory backend: the default, and the fallback when a configured
//! backend cannot start. Nothing survives the process.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::RwLock;

use crate::backend::{
    Backend, Capabilities, Document, DocumentWrite, Health, IndexTerm, Precondition, ScanOrder,
    ScanPage, ScanRequest, Version,
};
use crate::error::{Error, Result};

/// Expired documents purged by one write, at most: keeps every write's work
/// bounded however many documents expire at once.
const PURGE_PER_WRITE: usize = 16;

/// A concurrent in-memory [`Backend`] with every capability but durability.
///
/// Each namespace has its own reader-writer lock, held only for the map
/// operations of one call (never across an `.await`), so reads run in
/// parallel and serialization happens outside any lock. Index terms change
/// under the same lock as their document. Expired documents are invisible at
/// once and purged a few at a time by later writes.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    spaces: RwLock<HashMap<String, RwLock<Space>>>,
    /// Source of versions and creation stamps, shared by all namespaces so a
    /// re-created key never gets an old version back.
    clock: AtomicU64,
}

#[derive(Debug, Default)]
struct Space {
    docs: BTreeMap<String, Entry>,
    by_created: BTreeSet<(u64, String)>,
    /// index name -> term -> documents in (created, key) order.
    index: HashMap<String, HashMap<String, BTreeSet<(u64, String)>>>,
    expiry: BTreeSet<(SystemTime, String)>,
}

#[derive(Debug)]
struct Entry {
    value: Bytes,
    version: u64,
    created: u64,
    expires_at: Option<SystemTime>,
    terms: Vec<IndexTerm>,
}

impl Entry {
    fn live(&self, now: SystemTime) -> bool {
        self.expires_at.is_none_or(|t| t > now)
    }

    fn document(&self) -> Document {
        Document {
            value: self.value.clone(),
            version: Version(self.version),
            created: self.created,
            expires_at: self.expires_at,
        }
    }
}

impl Space {
    fn live(&self, key: &str, now: SystemTime) -> Option<&Entry> {
        self.docs.get(key).filter(|e| e.live(now))
    }

    fn unlink(&mut self, key: &str) -> Option<Entry> {
        let entry = self.docs.remove(key)?;
        self.by_created.remove(&(entry.created, key.to_string()));
        if let Some(t) = entry.expires_at {
            self.expiry.remove(&(t, key.to_string()));
        }
        for term in &entry.terms {
            self.unindex(term, entry.created, key);
        }
        Some(entry)
    }

    fn unindex(&mut self, term: &IndexTerm, created: u64, key: &str) {
        if let Some(terms) = self.index.get_mut(&term.index) {
            if let Some(keys) = terms.get_mut(&term.term) {
                keys.remove(&(created, key.to_string()));
                if keys.is_empty() {
                    terms.remove(&term.term);
                }
            }
        }
    }

    fn link(&mut self, key: String, entry: Entry) {
        self.by_created.insert((entry.created, key.clone()));
        if let Some(t) = entry.expires_at {
            self.expiry.insert((t, key.clone()));
        }
        for term in &entry.terms {
            self.index
                .entry(term.index.clone())
                .or_default()
                .entry(term.term.clone())
                .or_default()
                .insert((entry.created, key.clone()));
        }
        self.docs.insert(key, entry);
    }

    fn purge_expired(&mut self, now: SystemTime, max: usize) {
        for _ in 0..max {
            let Some((t, key)) = self.expiry.first().cloned() else {
                return;
            };
            if t > now {
                return;
            }
            self.unlink(&key);
        }
    }

    fn check(&self, namespace: &str, key: &str, pre: Precondition, now: SystemTime) -> Result<()> {
        let current = self.live(key, now);
        match (pre, current) {
            (Precondition::Any, _) => Ok(()),
            (Precondition::Absent, None) => Ok(()),
            (Precondition::Absent, Some(_)) => Err(Error::already_exists(namespace, key)),
            (Precondition::Present | Precondition::Version(_), None) => {
                Err(Error::not_found(namespace, key))
            }
            (Precondition::Present, Some(_)) => Ok(()),
            (Precondition::Version(v), Some(e)) if e.version == v.0 => Ok(()),
            (Precondition::Version(v), Some(e)) => Err(Error::Conflict {
                namespace: namespace.into(),
                key: key.into(),
                expected: v,
                actual: Version(e.version),
            }),
        }
    }
}

fn dedup_terms(mut terms: Vec<IndexTerm>) -> Vec<IndexTerm> {
    terms.sort_unstable();
    terms.dedup();
    terms
}

fn expires_at(now: SystemTime, ttl: Option<Duration>) -> Result<Option<SystemTime>> {
    ttl.map(|ttl| {
        now.checked_add(ttl)
            .ok_or_else(|| Error::InvalidInput(format!("ttl {ttl:?} overflows the clock")))
    })
    .transpose()
}

impl MemoryBackend {
    /// An empty backend.
    pub fn new() -> Self {
        Self::default()
    }

    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Runs `f` with the namespace's write lock, creating the namespace.
    fn write<T>(&self, namespace: &str, f: impl FnOnce(&mut Space) -> T) -> T {
        {
            let spaces = self.spaces.read();
            if let Some(space) = spaces.get(namespace) {
                return f(&mut space.write());
            }
        }
        let mut spaces = self.spaces.write();
        let space = spaces.entry(namespace.to_string()).or_default();
        f(space.get_mut())
    }

    /// Runs `f` with the namespace's read lock (`None` for an unknown namespace).
    fn read<T>(&self, namespace: &str, f: impl FnOnce(Option<&Space>) -> T) -> T {
        let spaces = self.spaces.read();
        match spaces.get(namespace) {
            Some(space) => f(Some(&space.read())),
            None => f(None),
        }
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    fn name(&self) -> &str {
        "memory"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            ttl: true,
            scan: true,
            scan_by_creation: true,
            count: true,
            native_batch: false,
            atomic_index: true,
            durable: false,
        }
    }

    async fn get(&self, namespace: &str, key: &str) -> Result<Option<Document>> {
        let now = SystemTime::now();
        Ok(self.read(namespace, |s| {
            s.and_then(|s| s.live(key, now)).map(Entry::document)
        }))
    }

    async fn put(
        &self,
        namespace: &str,
        key: &str,
        write: DocumentWrite,
        precondition: Precondition,
    ) -> Result<Version> {
        let now = SystemTime::now();
        let expires = expires_at(now, write.ttl)?;
        let terms = dedup_terms(write.index);
        self.write(namespace, |space| {
            space.purge_expired(now, PURGE_PER_WRITE);
            space.check(namespace, key, precondition, now)?;
            let version = self.tick();
            let created = match space.unlink(key) {
                Some(old) if old.live(now) => old.created,
                _ => version,
            };
            space.link(
                key.to_string(),
                Entry {
                    value: write.value,
                    version,
                    created,
                    expires_at: expires,
                    terms,
                },
            );
            Ok(Version(version))
        })
    }

    async fn remove(&self, namespace: &str, key: &str, precondition: Precondition) -> Result<bool> {
        if precondition == Precondition::Absent {
            return Err(Error::InvalidInput(format!(
                "remove of {namespace}/{key:?} with precondition Absent can never apply"
            )));
        }
        let now = SystemTime::now();
        self.write(namespace, |space| {
            space.purge_expired(now, PURGE_PER_WRITE);
            space.check(namespace, key, precondition, now)?;
            Ok(space.unlink(key).is_some_and(|e| e.live(now)))
        })
    }

    async fn lookup(&self, namespace: &str, index: &str, term: &str) -> Result<Vec<String>> {
        let now = SystemTime::now();
        Ok(self.read(namespace, |s| {
            let Some(s) = s else { return Vec::new() };
            let Some(keys) = s.index.get(index).and_then(|t| t.get(term)) else {
                return Vec::new();
            };
            keys.iter()
                .filter(|(_, k)| s.live(k, now).is_some())
                .map(|(_, k)| k.clone())
                .collect()
        }))
    }

    async fn scan(&self, namespace: &str, request: ScanRequest) -> Result<ScanPage> {
        let now = SystemTime::now();
        let limit = request.limit.max(1);
        let cursor = request.cursor;
        self.read(namespace, |s| {
            let Some(s) = s else {
                return Ok(ScanPage::default());
            };
            let mut entries = Vec::with_capacity(limit.min(1024));
            let mut more = false;
            let mut take = |key: &String, e: &Entry| {
                if !e.live(now) {
                    return true;
                }
                if entries.len() == limit {
                    more = true;
                    return false;
                }
                entries.push((key.clone(), e.document()));
                true
            };
            match request.order {
                ScanOrder::Key => {
                    let start = match &cursor {
                        Some(c) => Bound::Excluded(c.clone()),
                        None => Bound::Unbounded,
                    };
                    for (k, e) in s.docs.range((start, Bound::Unbounded)) {
                        if !take(k, e) {
                            break;
                        }
                    }
                }
                ScanOrder::Created => {
                    let start = match &cursor {
                        Some(c) => Bound::Excluded(decode_created_cursor(c)?),
                        None => Bound::Unbounded,
                    };
                    for (_, k) in s.by_created.range((start, Bound::Unbounded)) {
                        if !take(k, &s.docs[k]) {
                            break;
                        }
                    }
                }
            }
            let cursor = if more {
                entries.last().map(|(k, d)| match request.order {
                    ScanOrder::Key => k.clone(),
                    ScanOrder::Created => format!("{}:{k}", d.created),
                })
            } else {
                None
            };
            Ok(ScanPage { entries, cursor })
        })
    }

    async fn count(&self, namespace: &str) -> Result<u64> {
        let now = SystemTime::now();
        Ok(self.read(namespace, |s| {
            s.map_or(0, |s| {
                let expired = s.expiry.iter().take_while(|(t, _)| *t <= now).count();
                (s.docs.len() - expired) as u64
            })
        }))
    }

    async fn health(&self) -> Health {
        let mut health = Health::ok("memory", "in-memory: data does not survive a restart");
        let spaces = self.spaces.read();
        health
            .details
            .insert("namespaces".into(), spaces.len().to_string());
        let docs: usize = spaces.values().map(|s| s.read().docs.len()).sum();
        health.details.insert("documents".into(), docs.to_string());
        health
    }
}

/// Creation cursors are `{created}:{key}`: the last entry of the previous page.
fn decode_created_cursor(cursor: &str) -> Result<(u64, String)> {
    let bad = || Error::InvalidInput(format!("scan cursor {cursor:?} is not a creation cursor"));
    let (stamp, key) = cursor.split_once(':').ok_or_else(bad)?;
    Ok((stamp.parse().map_err(|_| bad())?, key.to_string()))
}
