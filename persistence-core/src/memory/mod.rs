//! The in-memory backend: the default, and the fallback when a configured
//! backend cannot start. Nothing survives the process.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use parking_lot::RwLock;

use crate::backend::{
    check_transaction, next_stamp, Backend, Capabilities, Document, DocumentWrite, Health,
    IndexTerm, Precondition, ScanOrder, ScanPage, ScanRequest, TxOutcome, TxWrite, Version,
};
use crate::error::{Error, Result};

mod shard;

use shard::{expires_at, Entry, Namespace, NewContent, Space, PURGE_PER_WRITE};

/// Expired documents one shard frees for a count, at most: bounds how long
/// a count holds a shard's write lock after many documents expire at once.
const COUNT_PURGE_MAX: usize = 4096;

/// A concurrent in-memory [`Backend`] with every capability but durability.
///
/// Each namespace is split into shards by key hash, each shard behind its own
/// reader-writer lock held only for the map operations of one call (never
/// across an `.await`). Reads run in parallel; writes to different shards do
/// too. A document and its index terms live in the same shard and change
/// under one lock; lookups and scans read every shard and merge by creation
/// stamp or key. Serialization happens outside any lock. Expired documents
/// are invisible at once and purged a few at a time by later writes.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    spaces: RwLock<HashMap<String, Namespace>>,
    /// Source of versions and creation stamps, shared by all namespaces so a
    /// re-created key never gets an old version back.
    clock: AtomicU64,
}

impl MemoryBackend {
    /// An empty backend.
    pub fn new() -> Self {
        Self::default()
    }

    fn tick(&self) -> u64 {
        let mut last = self.clock.load(Ordering::Relaxed);
        loop {
            let next = next_stamp(last);
            match self
                .clock
                .compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return next,
                Err(seen) => last = seen,
            }
        }
    }

    /// Frees every expired document now, in every namespace, and returns
    /// how many. Writes already free a few each; call this where a namespace
    /// may stop receiving writes while holding many expired documents.
    pub fn purge_expired(&self) -> usize {
        let now = SystemTime::now();
        let spaces = self.spaces.read();
        spaces
            .values()
            .flat_map(|ns| ns.shards.iter())
            .map(|shard| shard.write().purge_expired(now, usize::MAX))
            .sum()
    }

    /// Runs `f` with the write lock of `key`'s shard, creating the namespace;
    /// then sweeps another shard a little.
    fn write<T>(&self, namespace: &str, key: &str, f: impl FnOnce(&mut Space) -> T) -> T {
        {
            let spaces = self.spaces.read();
            if let Some(ns) = spaces.get(namespace) {
                let out = f(&mut ns.shard(key).write());
                ns.sweep_one(SystemTime::now());
                return out;
            }
        }
        let mut spaces = self.spaces.write();
        let ns = spaces.entry(namespace.to_string()).or_default();
        let out = f(&mut ns.shard(key).write());
        out
    }

    /// Creates the namespaces of `names` that do not exist yet.
    fn ensure_namespaces<'a>(&self, names: impl Iterator<Item = &'a str> + Clone) {
        let missing = {
            let spaces = self.spaces.read();
            names.clone().any(|ns| !spaces.contains_key(ns))
        };
        if missing {
            let mut spaces = self.spaces.write();
            for ns in names {
                if !spaces.contains_key(ns) {
                    spaces.insert(ns.to_string(), Namespace::default());
                }
            }
        }
    }

    /// Runs `f` with the read lock of `key`'s shard (`None` for an unknown namespace).
    fn read<T>(&self, namespace: &str, key: &str, f: impl FnOnce(Option<&Space>) -> T) -> T {
        let spaces = self.spaces.read();
        match spaces.get(namespace) {
            Some(ns) => f(Some(&ns.shard(key).read())),
            None => f(None),
        }
    }

    /// Runs `f` on every shard of the namespace in turn, under its read lock.
    fn each_shard(&self, namespace: &str, mut f: impl FnMut(&Space)) {
        let spaces = self.spaces.read();
        if let Some(ns) = spaces.get(namespace) {
            for shard in ns.shards.iter() {
                f(&shard.read());
            }
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
            time_order: true,
            native_batch: false,
            transactions: true,
            partitioned_transactions: false,
            atomic_index: true,
            durable: false,
            export: true,
        }
    }

    async fn namespaces(&self) -> Result<Vec<String>> {
        let now = SystemTime::now();
        let spaces = self.spaces.read();
        let mut names: Vec<String> = spaces
            .iter()
            .filter(|(_, ns)| {
                ns.shards
                    .iter()
                    .any(|s| s.read().docs.values().any(|e| e.live(now)))
            })
            .map(|(name, _)| name.clone())
            .collect();
        names.sort_unstable();
        Ok(names)
    }

    async fn index_terms(
        &self,
        namespace: &str,
        keys: &[String],
    ) -> Result<Vec<Option<crate::backend::Terms>>> {
        let now = SystemTime::now();
        Ok(keys
            .iter()
            .map(|key| {
                self.read(namespace, key, |s| {
                    s.and_then(|s| s.live(key, now))
                        .map(|e| (Version(e.version), e.terms.clone()))
                })
            })
            .collect())
    }

    async fn get(&self, namespace: &str, key: &str) -> Result<Option<Document>> {
        let now = SystemTime::now();
        Ok(self.read(namespace, key, |s| {
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
        let terms = IndexTerm::dedup(write.index);
        self.write(namespace, key, |space| {
            space.purge_expired(now, PURGE_PER_WRITE);
            space.check(namespace, key, precondition, now)?;
            let version = self.tick();
            let content = NewContent {
                value: write.value,
                version,
                expires_at: expires,
                terms,
            };
            Ok((Version(version), space.store(key, content, now)))
        })
        .map(|(version, _garbage)| version)
    }

    async fn remove(&self, namespace: &str, key: &str, precondition: Precondition) -> Result<bool> {
        precondition.check_removal(namespace, key)?;
        let now = SystemTime::now();
        self.write(namespace, key, |space| {
            space.purge_expired(now, PURGE_PER_WRITE);
            space.check(namespace, key, precondition, now)?;
            Ok(space.unlink(key))
        })
        .map(|removed| removed.is_some_and(|(_, e)| e.live(now)))
    }

    async fn transact(&self, writes: Vec<TxWrite>) -> Result<Vec<TxOutcome>> {
        check_transaction(&writes)?;
        let now = SystemTime::now();
        self.ensure_namespaces(writes.iter().map(|w| w.target().0));
        let spaces = self.spaces.read();
        let space_of = |ns: &str| {
            spaces.get(ns).ok_or_else(|| Error::Internal {
                backend: "memory".into(),
                message: format!("namespace {ns:?} vanished during a transaction"),
            })
        };
        let mut slots = Vec::with_capacity(writes.len());
        for w in &writes {
            let (ns, key) = w.target();
            slots.push((ns.to_string(), space_of(ns)?.shard_index(key)));
        }
        // Each shard is locked once, in one order (namespace, shard) for
        // every transaction, so two never wait on each other in a cycle;
        // single writes hold one shard at a time.
        let mut order = slots.clone();
        order.sort_unstable();
        order.dedup();
        let mut guards = BTreeMap::new();
        for (ns, i) in order {
            let shard = space_of(&ns)?.shards[i].write();
            guards.insert((ns, i), shard);
        }
        let mut expiries = Vec::with_capacity(writes.len());
        for (w, slot) in writes.iter().zip(&slots) {
            let (ns, key) = w.target();
            guards[slot].check(ns, key, w.precondition(), now)?;
            expiries.push(match w {
                TxWrite::Put { write, .. } => expires_at(now, write.ttl)?,
                TxWrite::Remove { .. } => None,
            });
        }
        let mut outcomes = Vec::with_capacity(writes.len());
        let mut garbage = Vec::with_capacity(writes.len());
        for ((w, slot), expires) in writes.into_iter().zip(&slots).zip(expiries) {
            let space = guards.get_mut(slot).expect("every slot is locked");
            match w {
                TxWrite::Put { key, write, .. } => {
                    let version = self.tick();
                    let content = NewContent {
                        value: write.value,
                        version,
                        expires_at: expires,
                        terms: IndexTerm::dedup(write.index),
                    };
                    garbage.push(space.store(&key, content, now));
                    outcomes.push(TxOutcome::Put(Version(version)));
                }
                TxWrite::Remove { key, .. } => {
                    let removed = space.unlink(&key);
                    outcomes.push(TxOutcome::Removed(
                        removed.as_ref().is_some_and(|(_, e)| e.live(now)),
                    ));
                    garbage.push((None, removed));
                }
            }
        }
        drop(guards);
        drop(garbage); // freed outside the locks
        Ok(outcomes)
    }

    async fn lookup(&self, namespace: &str, index: &str, term: &str) -> Result<Vec<String>> {
        let now = SystemTime::now();
        let mut hits: Vec<(u64, Arc<str>)> = Vec::new();
        self.each_shard(namespace, |s| {
            if let Some(keys) = s.entries(index, term) {
                hits.extend(
                    keys.iter()
                        .filter(|(_, k)| s.live(k, now).is_some())
                        .map(|(c, k)| (*c, k.clone())),
                );
            }
        });
        // creation stamps are unique, so this is (created, key) order
        hits.sort_unstable_by_key(|(c, _)| *c);
        Ok(hits.into_iter().map(|(_, k)| k.to_string()).collect())
    }

    /// The length of the term's index entries in each shard: O(shards).
    /// A shard holding expired documents first frees them (up to
    /// [`COUNT_PURGE_MAX`], work every expiry costs once, whoever does
    /// it); one holding more than that counts its live entries one by one,
    /// so the answer is exact either way.
    async fn count_term(&self, namespace: &str, index: &str, term: &str) -> Result<u64> {
        let now = SystemTime::now();
        let entries = |s: &Space| s.entries(index, term).map(|k| k.len());
        let live = |s: &Space| {
            s.entries(index, term).map_or(0, |keys| {
                keys.iter()
                    .filter(|(_, k)| s.live(k, now).is_some())
                    .count()
            })
        };
        let spaces = self.spaces.read();
        let Some(ns) = spaces.get(namespace) else {
            return Ok(0);
        };
        let mut n = 0;
        for shard in ns.shards.iter() {
            {
                let s = shard.read();
                if !s.has_expired(now) {
                    n += entries(&s).unwrap_or(0);
                    continue;
                }
                if entries(&s).is_none() {
                    continue;
                }
            }
            let mut s = shard.write();
            s.purge_expired(now, COUNT_PURGE_MAX);
            n += if s.has_expired(now) {
                live(&s)
            } else {
                entries(&s).unwrap_or(0)
            };
        }
        Ok(n as u64)
    }

    async fn scan(&self, namespace: &str, request: ScanRequest) -> Result<ScanPage> {
        request.check(self.name(), &self.capabilities())?;
        let now = SystemTime::now();
        let limit = request.limit.max(1);
        let span = match request.order {
            ScanOrder::Key => 0..0,
            _ => request.stamp_span()?,
        };
        let (from, to) = (span.start, span.end);
        // Each shard's first `limit + 1` live entries after the cursor hold
        // the namespace's first `limit + 1`.
        let mut entries: Vec<(Arc<str>, Document)> = Vec::new();
        self.each_shard(namespace, |s| {
            let mut take = |k: &Arc<str>| {
                let e = &s.docs[k];
                e.live(now).then(|| (k.clone(), e.document()))
            };
            match request.order {
                ScanOrder::Key => {
                    let start: Bound<&str> = match &request.cursor {
                        Some(c) => Bound::Excluded(c.as_str()),
                        None => Bound::Unbounded,
                    };
                    let range = s.by_key.range::<str, _>((start, Bound::Unbounded));
                    entries.extend(range.filter_map(&mut take).take(limit + 1));
                }
                _ if from >= to => {}
                ScanOrder::Created => {
                    let range = s.by_created.range(from..to);
                    entries.extend(range.filter_map(|(_, k)| take(k)).take(limit + 1));
                }
                ScanOrder::NewestFirst => {
                    let range = s.by_created.range(from..to).rev();
                    entries.extend(range.filter_map(|(_, k)| take(k)).take(limit + 1));
                }
            }
        });
        match request.order {
            ScanOrder::Key => entries.sort_unstable_by(|a, b| a.0.cmp(&b.0)),
            ScanOrder::Created => entries.sort_unstable_by_key(|(_, d)| d.created),
            ScanOrder::NewestFirst => entries.sort_unstable_by_key(|(_, d)| Reverse(d.created)),
        }
        let more = entries.len() > limit;
        entries.truncate(limit);
        let entries = entries
            .into_iter()
            .map(|(k, d)| (k.to_string(), d))
            .collect();
        Ok(ScanPage::after_last(entries, request.order, more))
    }

    async fn count(&self, namespace: &str) -> Result<u64> {
        let now = SystemTime::now();
        let mut n = 0u64;
        self.each_shard(namespace, |s| {
            let expired = s.expiry.iter().take_while(|(t, _)| *t <= now).count();
            n += (s.docs.len() - expired) as u64;
        });
        Ok(n)
    }

    async fn health(&self) -> Health {
        let mut health = Health::ok("memory", "in-memory: data does not survive a restart");
        let spaces = self.spaces.read();
        health
            .details
            .insert("namespaces".into(), spaces.len().to_string());
        let docs: usize = spaces
            .values()
            .flat_map(|ns| ns.shards.iter())
            .map(|s| s.read().docs.len())
            .sum();
        health.details.insert("documents".into(), docs.to_string());
        health
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::BackendExt;
    use std::time::Duration;

    fn stored(backend: &MemoryBackend) -> usize {
        let spaces = backend.spaces.read();
        spaces
            .values()
            .flat_map(|ns| ns.shards.iter())
            .map(|s| {
                let s = s.read();
                assert_eq!(s.docs.len(), s.by_key.len());
                assert_eq!(s.docs.len(), s.by_created.len());
                s.docs.len()
            })
            .sum()
    }

    #[tokio::test]
    async fn expired_documents_are_freed_a_bounded_number_per_write() {
        let b = MemoryBackend::new();
        let ttl = Some(Duration::from_millis(50));
        for n in 0..200 {
            let w = DocumentWrite::new(vec![1])
                .with_term("i", "t")
                .with_ttl(ttl);
            b.insert("ns", &n.to_string(), w).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert_eq!(
            b.count("ns").await.unwrap(),
            0,
            "expired documents still counted"
        );
        assert_eq!(stored(&b), 200, "nothing purges without writes");
        // one write to each shard's keys purges at most PURGE_PER_WRITE there
        for n in 0..64 {
            b.upsert("ns", &format!("live{n}"), DocumentWrite::new(vec![2]))
                .await
                .unwrap();
        }
        let left = stored(&b) - 64;
        assert!(left < 200, "writes purged nothing");
        for n in 0..400 {
            b.upsert(
                "ns",
                &format!("live{}", n % 64),
                DocumentWrite::new(vec![2]),
            )
            .await
            .unwrap();
        }
        assert_eq!(stored(&b), 64, "expired documents were never freed");
        let w = DocumentWrite::new(vec![1]).with_ttl(ttl);
        b.insert("quiet", "x", w).await.unwrap();
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert_eq!(
            b.purge_expired(),
            1,
            "an explicit purge frees what writes did not"
        );
        assert_eq!(b.purge_expired(), 0);
        let spaces = b.spaces.read();
        for shard in spaces["ns"].shards.iter() {
            let s = shard.read();
            assert!(
                s.index.get("i").is_none_or(|t| t.is_empty()),
                "index kept expired entries"
            );
            assert!(s.expiry.is_empty());
        }
    }
}
