//! Redis Cluster: a document and its metadata change atomically in their
//! slot; index and order sets live elsewhere and are kept as verified hints.
//!
//! A write adds its index entries before the document script and again
//! after it (so a concurrent lookup's clean-up never leaves a live document
//! unindexed), then removes the entries it dropped. A lookup keeps an entry
//! only if the document exists and its metadata still lists that index key,
//! and removes the others. A crash between the steps leaves extra entries,
//! never missing ones, and lookups clean the extras.

use std::collections::BTreeSet;

use futures::future::{join_all, try_join_all};
use persistence_core::backend::{DocumentWrite, Precondition, TxOutcome, TxWrite, Version};
use persistence_core::{Backend, Error, Result};

use crate::backend::RedisBackend;
use crate::calls::{ttl_ms, tx_kinds};
use crate::scripts;

/// A document script's reply: status, version, created, old index keys, known.
type PutDocReply = (String, u64, u64, String, u8);

/// [`scripts::TRANSACT_DOCS`]'s reply: status, write number, number, and
/// per write its number, created, old index keys and known.
type TransactDocsReply = (String, usize, u64, Vec<(u64, u64, String, u8)>);

impl RedisBackend {
    /// Sends one command on its own clone of the connection.
    async fn run(&self, cmd: redis::Cmd) -> redis::RedisResult<i64> {
        let mut con = self.con.clone();
        cmd.query_async(&mut con).await
    }

    async fn index_add(&self, index_keys: &[String], key: &str, pttl: u64) -> Result<()> {
        let calls = index_keys.iter().map(|ik| {
            let mut con = self.con.clone();
            async move {
                scripts::INDEX_ADD
                    .key(ik)
                    .arg(key)
                    .arg(pttl)
                    .invoke_async::<i64>(&mut con)
                    .await
            }
        });
        try_join_all(calls)
            .await
            .map_err(|e| self.error("index", e))?;
        Ok(())
    }

    async fn index_remove(
        &self,
        index_keys: impl Iterator<Item = &String>,
        key: &str,
    ) -> Result<()> {
        let calls = index_keys.map(|ik| {
            let mut con = self.con.clone();
            async move {
                redis::cmd("SREM")
                    .arg(ik)
                    .arg(key)
                    .query_async::<i64>(&mut con)
                    .await
            }
        });
        try_join_all(calls)
            .await
            .map_err(|e| self.error("index", e))?;
        Ok(())
    }

    /// A read renewing a sliding TTL on a cluster: the script renews the
    /// document and its metadata in their slot and names the index sets,
    /// which this renews in theirs (as a write of that TTL would).
    pub(crate) async fn get_sliding_cluster(
        &self,
        ns: &str,
        key: &str,
        sliding: std::time::Duration,
    ) -> Result<Option<persistence_core::backend::Document>> {
        let mut con = self.con.clone();
        let reply: crate::calls::ClusterSlidingReply = self
            .get_invocation(ns, key)
            .invoke_async(&mut con)
            .await
            .map_err(|e| self.error("get", e))?;
        let Some((value, version, created, pttl, renew)) = reply else {
            return Ok(None);
        };
        if !renew.is_empty() {
            let index_keys = crate::calls::index_keys_json(ns, key, &renew)?;
            self.index_add(&index_keys, key, ttl_ms(Some(sliding)))
                .await?;
        }
        Ok(Some(crate::calls::document((
            value, version, created, pttl,
        ))))
    }

    pub(crate) async fn put_cluster(
        &self,
        ns: &str,
        key: &str,
        write: &DocumentWrite,
        precondition: Precondition,
    ) -> Result<Version> {
        let index_keys = self.index_keys(ns, write);
        let pttl = ttl_ms(write.ttl);
        // 1. the new entries exist before the document does
        self.index_add(&index_keys, key, pttl).await?;
        // 2. the document and its metadata, atomically, precondition checked
        let mut inv = scripts::PUT_DOC.prepare_invoke();
        inv.key(self.layout.doc(ns, key))
            .key(self.layout.meta(ns, key));
        self.put_args(&mut inv, ns, key, write, precondition, &index_keys);
        let mut con = self.con.clone();
        let (status, version, created, old_terms, known): PutDocReply = inv
            .invoke_async(&mut con)
            .await
            .map_err(|e| self.error("put", e))?;
        if status != "ok" {
            // entries added in step 1 for a write that did not happen are
            // hints that lookups drop
            return Self::put_result(ns, key, precondition, (status, version, created));
        }
        self.after_put(ns, key, &index_keys, pttl, &old_terms, known == 1, created)
            .await?;
        Ok(Version(version))
    }

    /// Step 3 of a put whose document script succeeded: the new entries
    /// again (a lookup may have cleaned them meanwhile), the old ones
    /// dropped, and a new key recorded in the order sets.
    #[allow(clippy::too_many_arguments)]
    async fn after_put(
        &self,
        ns: &str,
        key: &str,
        index_keys: &[String],
        pttl: u64,
        old_terms: &str,
        known: bool,
        created: u64,
    ) -> Result<()> {
        self.index_add(index_keys, key, pttl).await?;
        let old: BTreeSet<String> = serde_json::from_str(old_terms).unwrap_or_default();
        let new: BTreeSet<&String> = index_keys.iter().collect();
        self.index_remove(old.iter().filter(|k| !new.contains(k)), key)
            .await?;
        if !known {
            let mut by_key = redis::cmd("ZADD");
            by_key.arg(self.layout.by_key(ns)).arg(0).arg(key);
            let mut by_created = redis::cmd("ZADD");
            by_created
                .arg(self.layout.by_created(ns))
                .arg(created)
                .arg(key);
            let (a, b) = futures::join!(self.run(by_key), self.run(by_created));
            a.and(b).map_err(|e| self.error("put", e))?;
        }
        Ok(())
    }

    pub(crate) async fn remove_cluster(
        &self,
        ns: &str,
        key: &str,
        precondition: Precondition,
    ) -> Result<bool> {
        let mut inv = scripts::REMOVE_DOC.prepare_invoke();
        inv.key(self.layout.doc(ns, key))
            .key(self.layout.meta(ns, key));
        self.removal_args(&mut inv, ns, precondition);
        let mut con = self.con.clone();
        let (status, n, old_terms): (String, u64, String) = inv
            .invoke_async(&mut con)
            .await
            .map_err(|e| self.error("remove", e))?;
        if status == "conflict" {
            return Self::remove_result(ns, key, precondition, (status, n));
        }
        self.after_remove(ns, key, &old_terms).await?;
        Self::remove_result(ns, key, precondition, (status, n))
    }

    /// After a removal's document script: the document is gone (or was
    /// already), and its index and order entries follow.
    async fn after_remove(&self, ns: &str, key: &str, old_terms: &str) -> Result<()> {
        let old: Vec<String> = serde_json::from_str(old_terms).unwrap_or_default();
        self.index_remove(old.iter(), key).await?;
        let mut by_key = redis::cmd("ZREM");
        by_key.arg(self.layout.by_key(ns)).arg(key);
        let mut by_created = redis::cmd("ZREM");
        by_created.arg(self.layout.by_created(ns)).arg(key);
        let (a, b) = futures::join!(self.run(by_key), self.run(by_created));
        a.and(b).map(drop).map_err(|e| self.error("remove", e))
    }

    /// A transaction whose documents share one hash slot (checked and
    /// refused as `Unsupported` otherwise): the new index entries first,
    /// then every document and its metadata in one [`scripts::TRANSACT_DOCS`]
    /// call, all or nothing, then the index and order sets as single
    /// writes update them. `writes` is checked already.
    pub(crate) async fn transact_cluster(&self, writes: &[TxWrite]) -> Result<Vec<TxOutcome>> {
        let slots: BTreeSet<usize> = writes
            .iter()
            .map(|w| {
                let (ns, key) = w.target();
                crate::slots::slot(self.layout.doc(ns, key).as_bytes())
            })
            .collect();
        if slots.len() > 1 {
            return Err(self.unsupported(
                "a transaction across hash slots on Redis Cluster (give its keys one {tag}, \
                 for example {w-1}state and {w-1}result)",
            ));
        }
        let index_keys: Vec<Vec<String>> = writes
            .iter()
            .map(|w| match w {
                TxWrite::Put {
                    namespace, write, ..
                } => self.index_keys(namespace, write),
                TxWrite::Remove { .. } => Vec::new(),
            })
            .collect();
        let mut inv = scripts::TRANSACT_DOCS.prepare_invoke();
        inv.arg(tx_kinds(writes));
        for (w, keys) in writes.iter().zip(&index_keys) {
            let (ns, key) = w.target();
            inv.key(self.layout.doc(ns, key))
                .key(self.layout.meta(ns, key))
                .arg(2);
            match w {
                TxWrite::Put {
                    write,
                    precondition,
                    ..
                } => {
                    // 1. the new entries exist before the document does
                    self.index_add(keys, key, ttl_ms(write.ttl)).await?;
                    self.put_args(&mut inv, ns, key, write, *precondition, keys);
                }
                TxWrite::Remove { precondition, .. } => {
                    self.removal_args(&mut inv, ns, *precondition);
                }
            }
        }
        let mut con = self.con.clone();
        let (status, at, number, replies): TransactDocsReply = inv
            .invoke_async(&mut con)
            .await
            .map_err(|e| self.error("transact", e))?;
        let replies = Self::transaction_reply(writes, &status, at, number, replies)?;
        let mut outcomes = Vec::with_capacity(writes.len());
        for ((w, keys), (n, created, old_terms, known)) in
            writes.iter().zip(&index_keys).zip(replies)
        {
            let (ns, key) = w.target();
            outcomes.push(match w {
                TxWrite::Put { write, .. } => {
                    self.after_put(
                        ns,
                        key,
                        keys,
                        ttl_ms(write.ttl),
                        &old_terms,
                        known == 1,
                        created,
                    )
                    .await?;
                    TxOutcome::Put(Version(n))
                }
                TxWrite::Remove { .. } => {
                    self.after_remove(ns, key, &old_terms).await?;
                    TxOutcome::Removed(n == 1)
                }
            });
        }
        Ok(outcomes)
    }

    /// For each member of index set `ik`: `Some(created)` when its document
    /// exists and still lists `ik` (or has no metadata: the seed's), `None`
    /// when the entry is stale.
    async fn check_members(
        &self,
        ns: &str,
        index: &str,
        ik: &str,
        members: &[String],
    ) -> Result<Vec<Option<u64>>> {
        let rule = self.layout.lookup_rule(ns, index);
        let checks = members.iter().map(|k| {
            let mut con = self.con.clone();
            let rule = &rule;
            async move {
                scripts::CHECK
                    .key(self.layout.doc(ns, k))
                    .key(self.layout.meta(ns, k))
                    .arg(rule.as_slice())
                    .invoke_async::<(i64, Option<u64>, Option<String>)>(&mut con)
                    .await
            }
        });
        let mut out = Vec::with_capacity(members.len());
        for check in join_all(checks).await {
            let (exists, created, terms) = check.map_err(|e| self.error("lookup", e))?;
            let listed = match &terms {
                None => true,
                Some(t) => {
                    serde_json::from_str::<Vec<String>>(t).is_ok_and(|t| t.iter().any(|x| x == ik))
                }
            };
            out.push((exists == 1 && listed).then(|| created.unwrap_or(0)));
        }
        Ok(out)
    }

    pub(crate) async fn lookup_cluster(
        &self,
        ns: &str,
        index: &str,
        term: &str,
    ) -> Result<Vec<String>> {
        let ik = self.layout.index(ns, index, term);
        let mut con = self.con.clone();
        let members: Vec<String> = redis::cmd("SMEMBERS")
            .arg(&ik)
            .query_async(&mut con)
            .await
            .map_err(|e| self.error("lookup", e))?;
        let checked = self.check_members(ns, index, &ik, &members).await?;
        let mut hits = Vec::new();
        let mut stale = Vec::new();
        for (k, valid) in members.into_iter().zip(checked) {
            match valid {
                Some(created) => hits.push((created, k)),
                None => stale.push(k),
            }
        }
        if !stale.is_empty() {
            redis::cmd("SREM")
                .arg(&ik)
                .arg(&stale)
                .query_async::<i64>(&mut con)
                .await
                .map_err(|e| self.error("lookup", e))?;
            // A write in flight may have finished between our check and the
            // SREM, its re-add landing before our SREM: look again, and put
            // back what is valid now. (If the SREM came before the write's
            // re-add, the write restores the entry itself.)
            let rechecked = self.check_members(ns, index, &ik, &stale).await?;
            let revived: Vec<(u64, String)> = stale
                .into_iter()
                .zip(rechecked)
                .filter_map(|(k, valid)| valid.map(|created| (created, k)))
                .collect();
            if !revived.is_empty() {
                let keys: Vec<&String> = revived.iter().map(|(_, k)| k).collect();
                redis::cmd("SADD")
                    .arg(&ik)
                    .arg(keys)
                    .query_async::<i64>(&mut con)
                    .await
                    .map_err(|e| self.error("lookup", e))?;
                hits.extend(revived);
            }
        }
        hits.sort();
        Ok(hits.into_iter().map(|(_, k)| k).collect())
    }

    /// Clears what this library knows of `ns` (documents in its key order
    /// set, their metadata and index sets): a cluster has no single keyspace
    /// to `SCAN`. Documents the seed wrote and no one rewrote are left.
    pub(crate) async fn forget_cluster(&self, ns: &str, keys: &[String]) -> Result<u64> {
        let mut removed = 0;
        for key in keys {
            let mut by_key = redis::cmd("ZREM");
            by_key.arg(self.layout.by_key(ns)).arg(key);
            let mut by_created = redis::cmd("ZREM");
            by_created.arg(self.layout.by_created(ns)).arg(key);
            let (a, b) = futures::join!(self.run(by_key), self.run(by_created));
            a.and(b).map_err(|e| self.error("forget", e))?;
            // re-created meanwhile: put its entries back, from its metadata
            let mut con = self.con.clone();
            let (exists, created): (i64, Option<u64>) = redis::pipe()
                .exists(self.layout.doc(ns, key))
                .hget(self.layout.meta(ns, key), "c")
                .query_async(&mut con)
                .await
                .map_err(|e| self.error("forget", e))?;
            match (exists, created) {
                (1, Some(created)) => {
                    let mut by_key = redis::cmd("ZADD");
                    by_key.arg(self.layout.by_key(ns)).arg(0).arg(key);
                    let mut by_created = redis::cmd("ZADD");
                    by_created
                        .arg(self.layout.by_created(ns))
                        .arg(created)
                        .arg(key);
                    let (a, b) = futures::join!(self.run(by_key), self.run(by_created));
                    a.and(b).map_err(|e| self.error("forget", e))?;
                }
                (0, _) => {
                    redis::cmd("DEL")
                        .arg(self.layout.meta(ns, key))
                        .query_async::<i64>(&mut con)
                        .await
                        .map_err(|e| self.error("forget", e))?;
                    removed += 1;
                }
                _ => {}
            }
        }
        Ok(removed)
    }

    pub(crate) async fn clear_cluster(&self, ns: &str) -> Result<u64> {
        let mut con = self.con.clone();
        let keys: Vec<String> = redis::cmd("ZRANGE")
            .arg(self.layout.by_key(ns))
            .arg(0)
            .arg(-1)
            .query_async(&mut con)
            .await
            .map_err(|e| self.error("clear_namespace", e))?;
        let mut removed = 0;
        let mut index_keys = BTreeSet::new();
        for key in &keys {
            let terms: Option<String> = redis::cmd("HGET")
                .arg(self.layout.meta(ns, key))
                .arg("t")
                .query_async(&mut con)
                .await
                .map_err(|e| self.error("clear_namespace", e))?;
            index_keys.extend(
                terms
                    .and_then(|t| serde_json::from_str::<Vec<String>>(&t).ok())
                    .unwrap_or_default(),
            );
            for k in [self.layout.doc(ns, key), self.layout.meta(ns, key)] {
                removed += redis::cmd("UNLINK")
                    .arg(k)
                    .query_async::<u64>(&mut con)
                    .await
                    .map_err(|e| self.error("clear_namespace", e))?;
            }
        }
        for k in index_keys
            .into_iter()
            .chain([self.layout.by_key(ns), self.layout.by_created(ns)])
        {
            removed += redis::cmd("UNLINK")
                .arg(k)
                .query_async::<u64>(&mut con)
                .await
                .map_err(|e| self.error("clear_namespace", e))?;
        }
        Ok(removed)
    }

    /// A connection to every node `SCAN` must visit: this one on a single
    /// server; one of its own to each primary of a cluster (from `CLUSTER
    /// NODES`, with the same credentials and TLS).
    pub(crate) async fn scan_nodes(&self) -> Result<Vec<RedisBackend>> {
        if !self.is_cluster() {
            return Ok(vec![self.clone()]);
        }
        let mut con = self.con.clone();
        let nodes: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query_async(&mut con)
            .await
            .map_err(|e| self.error("cluster nodes", e))?;
        let mut out = Vec::new();
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            let (Some(addr), Some(flags)) = (fields.get(1), fields.get(2)) else {
                continue;
            };
            if !flags.split(',').any(|f| f == "master") || flags.contains("fail") {
                continue;
            }
            let addr = addr.split(['@', ',']).next().unwrap_or_default();
            let Some((host, port)) = addr.rsplit_once(':') else {
                continue;
            };
            let mut options = (*self.options).clone();
            options.cluster_nodes.clear();
            options.url = None;
            options.host = host.trim_matches(|c| c == '[' || c == ']').to_string();
            options.port = port.parse().map_err(|_| Error::Internal {
                backend: "redis".into(),
                message: format!("CLUSTER NODES gave the address {addr:?}"),
            })?;
            out.push(RedisBackend::connect(options).await?);
        }
        Ok(out)
    }
}
