//! The `Backend` contract on Redis.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use persistence_core::backend::{
    check_transaction, Backend, Capabilities, Document, DocumentWrite, Health, HealthStatus,
    Precondition, Put, Remove, ScanOrder, ScanPage, ScanRequest, TxOutcome, TxWrite, Version,
};
use persistence_core::{Error, Result};
use redis::RedisError;

use crate::calls::{document, GetReply};
use crate::conn::Conn;
use crate::layout::{self, Layout};
use crate::options::RedisOptions;
use crate::scripts;

/// Expired entries one `count_term` sweeps from an index set, at most
/// (one `SREM` of this many keys, within Lua's stack): past it the count
/// checks the set member by member, which is exact too.
const COUNT_SWEEP_MAX: usize = 4096;

/// The Redis backend. Cheap to clone; clones share one multiplexed connection.
#[derive(Clone)]
pub struct RedisBackend {
    pub(crate) con: Conn,
    pub(crate) layout: Layout,
    pub(crate) options: Arc<RedisOptions>,
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl RedisBackend {
    /// The members of an index set whose document carries the term, by
    /// `(created, key)`, with their values when `values` (one script call).
    async fn lookup_hits(
        &self,
        namespace: &str,
        index: &str,
        term: &str,
        values: bool,
    ) -> Result<Vec<(u64, String, Option<Bytes>)>> {
        let mut con = self.con.clone();
        let flat: Vec<redis::Value> = scripts::LOOKUP
            .key(self.layout.index(namespace, index, term))
            .arg(self.layout.doc_prefix(namespace))
            .arg(self.layout.meta_prefix(namespace))
            .arg(self.layout.lookup_rule(namespace, index).as_slice())
            .arg(if values { "1" } else { "0" })
            .invoke_async(&mut con)
            .await
            .map_err(|e| self.error("lookup", e))?;
        let width = if values { 3 } else { 2 };
        let odd = || Error::Internal {
            backend: "redis".into(),
            message: "lookup script answered an odd reply".into(),
        };
        if !flat.len().is_multiple_of(width) {
            return Err(odd());
        }
        let mut hits = Vec::with_capacity(flat.len() / width);
        for hit in flat.chunks(width) {
            let created: u64 = redis::from_redis_value(hit[0].clone()).map_err(|_| odd())?;
            let key: String = redis::from_redis_value(hit[1].clone()).map_err(|_| odd())?;
            let value = match hit.get(2) {
                Some(v) => Some(Bytes::from(
                    redis::from_redis_value::<Vec<u8>>(v.clone()).map_err(|_| odd())?,
                )),
                None => None,
            };
            hits.push((created, key, value));
        }
        hits.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        Ok(hits)
    }

    /// Up to `n` `(key, created)` after the creation cursor `{created}:{key}`,
    /// in `order` (a creation order), inside `window`. Stamps can tie on a
    /// cluster (they come from each node's clock), so the cursor names the
    /// key too and ties resume in member order.
    async fn created_page(
        &self,
        ns: &str,
        request: &ScanRequest,
        n: usize,
    ) -> Result<Vec<(String, u64)>> {
        let after: Option<(u64, String)> = match &request.cursor {
            None => None,
            Some(c) => {
                let bad =
                    || Error::InvalidInput(format!("scan cursor {c:?} is not a creation cursor"));
                let (score, key) = c.split_once(':').ok_or_else(bad)?;
                Some((score.parse().map_err(|_| bad())?, key.to_string()))
            }
        };
        let window = request.created.clone().unwrap_or(0..u64::MAX);
        if window.start >= window.end {
            return Ok(Vec::new());
        }
        let newest_first = request.order == ScanOrder::NewestFirst;
        let end = if window.end == u64::MAX {
            "+inf".to_string()
        } else {
            format!("({}", window.end)
        };
        let (command, from, to) = match (newest_first, &after) {
            (false, None) => ("ZRANGEBYSCORE", window.start.to_string(), end),
            (false, Some((s, _))) => ("ZRANGEBYSCORE", window.start.max(*s).to_string(), end),
            (true, None) => ("ZREVRANGEBYSCORE", end, window.start.to_string()),
            (true, Some((s, _))) => ("ZREVRANGEBYSCORE", s.to_string(), window.start.to_string()),
        };
        let mut con = self.con.clone();
        let mut out = Vec::with_capacity(n);
        let mut offset = 0;
        loop {
            let batch: Vec<(String, u64)> = redis::cmd(command)
                .arg(self.layout.by_created(ns))
                .arg(&from)
                .arg(&to)
                .arg("WITHSCORES")
                .arg("LIMIT")
                .arg(offset)
                .arg(n)
                .query_async(&mut con)
                .await
                .map_err(|e| self.error("scan", e))?;
            let fetched = batch.len();
            for (k, s) in batch {
                let done = after.as_ref().is_some_and(|(as_, ak)| {
                    if newest_first {
                        s > *as_ || s == *as_ && k >= *ak
                    } else {
                        s < *as_ || s == *as_ && k <= *ak
                    }
                });
                if !done && out.len() < n {
                    out.push((k, s));
                }
            }
            if out.len() == n || fetched < n {
                return Ok(out);
            }
            offset += fetched;
        }
    }

    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self.con, Conn::Cluster(_))
    }

    /// The key layout in use.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Deletes every key of `ns` (documents, metadata, indexes, orders) with
    /// `SCAN` + `UNLINK`, never `KEYS`, and returns how many keys it removed.
    pub async fn clear_namespace(&self, ns: &str) -> Result<u64> {
        if self.is_cluster() {
            return self.clear_cluster(ns).await;
        }
        let mut con = self.con.clone();
        let mut removed = 0u64;
        for pattern in self.layout.patterns(ns) {
            let mut cursor: u64 = 0;
            loop {
                let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(500)
                    .query_async(&mut con)
                    .await
                    .map_err(|e| self.error("clear_namespace", e))?;
                if !keys.is_empty() {
                    let n: u64 = redis::cmd("UNLINK")
                        .arg(&keys)
                        .query_async(&mut con)
                        .await
                        .map_err(|e| self.error("clear_namespace", e))?;
                    removed += n;
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(removed)
    }

    /// Removes the metadata and order entries of those `keys` whose
    /// document is gone (deleted by the other system, or expired); returns
    /// how many it removed. Atomic per key on one server (checked in a
    /// script); on a cluster, where the order sets live in other slots, an
    /// entry removed while the document was being re-created is put back.
    pub(crate) async fn forget(&self, ns: &str, keys: &[String]) -> Result<u64> {
        if keys.is_empty() {
            return Ok(0);
        }
        if self.is_cluster() {
            return self.forget_cluster(ns, keys).await;
        }
        let mut pipe = redis::pipe();
        for key in keys {
            pipe.invoke_script(
                scripts::FORGET
                    .key(self.layout.doc(ns, key))
                    .key(self.layout.meta(ns, key))
                    .key(self.layout.by_key(ns))
                    .key(self.layout.by_created(ns))
                    .arg(key),
            );
        }
        let removed: Vec<u64> = self.pipeline("forget", &pipe).await?;
        Ok(removed.into_iter().sum())
    }

    /// Walks up to `max` entries of `ns`'s key order and removes the
    /// metadata and order entries whose document is gone (the other system
    /// deleted it): bounded work, to run now and then in a mixed fleet.
    /// Returns how many it removed. Reads and scans clean what they meet
    /// already; this finds the rest.
    pub async fn clear_orphans(&self, ns: &str, max: usize) -> Result<u64> {
        let mut con = self.con.clone();
        let mut start = "-".to_string();
        let (mut seen, mut removed) = (0usize, 0u64);
        while seen < max {
            let page = (max - seen).min(500);
            let keys: Vec<String> = redis::cmd("ZRANGE")
                .arg(self.layout.by_key(ns))
                .arg(&start)
                .arg("+")
                .arg("BYLEX")
                .arg("LIMIT")
                .arg(0)
                .arg(page)
                .query_async(&mut con)
                .await
                .map_err(|e| self.error("clear_orphans", e))?;
            let Some(last) = keys.last() else { break };
            start = format!("({last}");
            seen += keys.len();
            let mut exists = redis::pipe();
            for k in &keys {
                exists.exists(self.layout.doc(ns, k));
            }
            let found: Vec<bool> = if self.is_cluster() {
                let calls = keys.iter().map(|k| {
                    let mut con = self.con.clone();
                    let doc = self.layout.doc(ns, k);
                    async move {
                        redis::cmd("EXISTS")
                            .arg(doc)
                            .query_async::<bool>(&mut con)
                            .await
                    }
                });
                futures::future::try_join_all(calls)
                    .await
                    .map_err(|e| self.error("clear_orphans", e))?
            } else {
                self.pipeline("clear_orphans", &exists).await?
            };
            let gone: Vec<String> = keys
                .iter()
                .zip(found)
                .filter(|(_, e)| !e)
                .map(|(k, _)| k.clone())
                .collect();
            removed += self.forget(ns, &gone).await?;
            if keys.len() < page {
                break;
            }
        }
        Ok(removed)
    }

    pub(crate) fn error(&self, operation: &str, e: RedisError) -> Error {
        if e.is_timeout() {
            Error::Timeout {
                operation: format!("redis {operation}"),
                after: self.options.command_timeout,
            }
        } else if e.is_io_error()
            || e.is_connection_refusal()
            || e.is_connection_dropped()
            || e.is_unrecoverable_error()
        {
            Error::Unavailable {
                backend: "redis".into(),
                reason: format!("{operation} on {}: {e}", self.options.endpoint()),
            }
        } else {
            Error::Internal {
                backend: "redis".into(),
                message: format!("{operation}: {e}"),
            }
        }
    }
}

#[async_trait]
impl Backend for RedisBackend {
    fn name(&self) -> &str {
        "redis"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            ttl: true,
            scan: true,
            scan_by_creation: true,
            count: false,
            time_order: true,
            transactions: true,
            partitioned_transactions: self.is_cluster(),
            native_batch: !self.is_cluster(),
            atomic_index: !self.is_cluster(),
            durable: true,
            export: true,
        }
    }

    /// The namespaces with a key-order set (what `scan` walks): `SCAN` on
    /// the server, or on every primary of a cluster.
    async fn namespaces(&self) -> Result<Vec<String>> {
        let pattern = crate::layout::glob_escape(&format!("{}:~k:", self.layout.prefix())) + "*";
        let mut names = std::collections::BTreeSet::new();
        for node in self.scan_nodes().await? {
            let mut con = node.con.clone();
            let mut cursor: u64 = 0;
            loop {
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(&mut con)
                    .await
                    .map_err(|e| self.error("namespaces", e))?;
                names.extend(keys.iter().filter_map(|k| self.layout.parse_by_key(k)));
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(names.into_iter().collect())
    }

    async fn index_terms(
        &self,
        namespace: &str,
        keys: &[String],
    ) -> Result<Vec<Option<persistence_core::backend::Terms>>> {
        let rule = self.layout.term_rule(namespace);
        // concurrent calls share round trips on the multiplexed connection
        let calls = keys.iter().map(|key| {
            let mut con = self.con.clone();
            let mut inv = crate::scripts::TERMS.prepare_invoke();
            inv.key(self.layout.doc(namespace, key))
                .key(self.layout.meta(namespace, key));
            for a in &rule {
                inv.arg(a);
            }
            async move {
                let reply: Option<(u64, String)> = inv
                    .invoke_async(&mut con)
                    .await
                    .map_err(|e| self.error("index_terms", e))?;
                let Some((version, json)) = reply else {
                    return Ok(None);
                };
                let terms = crate::calls::index_keys_json(namespace, key, &json)?
                    .iter()
                    .filter_map(|k| self.layout.parse_index(namespace, k))
                    .collect();
                Ok(Some((Version(version), terms)))
            }
        });
        futures::future::try_join_all(calls).await
    }

    async fn get(&self, namespace: &str, key: &str) -> Result<Option<Document>> {
        if self.plain_reads() {
            let mut docs = self.read_plain(namespace, &[key.to_string()]).await?;
            return Ok(docs.pop().flatten());
        }
        if let (true, Some(sliding)) = (self.is_cluster(), self.options.sliding_ttl) {
            return self.get_sliding_cluster(namespace, key, sliding).await;
        }
        let mut con = self.con.clone();
        let reply: GetReply = self
            .get_invocation(namespace, key)
            .invoke_async(&mut con)
            .await
            .map_err(|e| self.error("get", e))?;
        Ok(reply.map(document))
    }

    async fn get_value(&self, namespace: &str, key: &str) -> Result<Option<Bytes>> {
        if self.options.sliding_ttl.is_some() {
            // reads renew the TTL: that takes the script
            return Ok(self.get(namespace, key).await?.map(|d| d.value));
        }
        let mut con = self.con.clone();
        let value: Option<Vec<u8>> = redis::cmd("GET")
            .arg(self.layout.doc(namespace, key))
            .query_async(&mut con)
            .await
            .map_err(|e| self.error("get", e))?;
        Ok(value.map(Bytes::from))
    }

    async fn put(
        &self,
        namespace: &str,
        key: &str,
        write: DocumentWrite,
        precondition: Precondition,
    ) -> Result<Version> {
        if self.is_cluster() {
            return self.put_cluster(namespace, key, &write, precondition).await;
        }
        let mut con = self.con.clone();
        let reply = self
            .put_invocation(namespace, key, &write, precondition)
            .invoke_async(&mut con)
            .await
            .map_err(|e| self.error("put", e))?;
        Self::put_result(namespace, key, precondition, reply)
    }

    /// One script on a single server. Refused on a cluster, where a
    /// namespace's documents and its order sets live in different slots.
    async fn transact(&self, writes: Vec<TxWrite>) -> Result<Vec<TxOutcome>> {
        check_transaction(&writes)?;
        if writes.is_empty() {
            return Ok(Vec::new());
        }
        if self.is_cluster() {
            return self.transact_cluster(&writes).await;
        }
        self.transact_single(&writes).await
    }

    async fn remove(&self, namespace: &str, key: &str, precondition: Precondition) -> Result<bool> {
        precondition.check_removal(namespace, key)?;
        if self.is_cluster() {
            return self.remove_cluster(namespace, key, precondition).await;
        }
        let mut con = self.con.clone();
        let reply = self
            .remove_invocation(namespace, key, precondition)
            .invoke_async(&mut con)
            .await
            .map_err(|e| self.error("remove", e))?;
        Self::remove_result(namespace, key, precondition, reply)
    }

    async fn lookup(&self, namespace: &str, index: &str, term: &str) -> Result<Vec<String>> {
        if self.is_cluster() {
            return self.lookup_cluster(namespace, index, term).await;
        }
        let hits = self.lookup_hits(namespace, index, term, false).await?;
        Ok(hits.into_iter().map(|(_, k, _)| k).collect())
    }

    /// One script call answering a number, reading no document
    /// ([`scripts::COUNT_TERM`]): where the namespace keeps expiry sets
    /// (one server, no term rule), the set's length once its passed
    /// expiries are swept; else each member checked against its metadata.
    /// Under the seed's rule, and on a cluster (where an index and its
    /// documents live in different slots), the length of a lookup.
    async fn count_term(&self, namespace: &str, index: &str, term: &str) -> Result<u64> {
        let rule = self.layout.lookup_rule(namespace, index);
        if self.is_cluster() || !rule[0].is_empty() {
            return Ok(self.lookup(namespace, index, term).await?.len() as u64);
        }
        let ik = self.layout.index(namespace, index, term);
        let sweep = if self.layout.keeps_expiries(namespace) {
            COUNT_SWEEP_MAX
        } else {
            0
        };
        let mut con = self.con.clone();
        scripts::COUNT_TERM
            .key(&ik)
            .key(self.layout.expiries(&ik))
            .key(self.layout.counted(namespace))
            .arg(self.layout.doc_prefix(namespace))
            .arg(self.layout.meta_prefix(namespace))
            .arg(sweep)
            .invoke_async(&mut con)
            .await
            .map_err(|e| self.error("count_term", e))
    }

    /// One script call: the lookup and its values (on a cluster, where a
    /// document and its index live in different slots, the default's
    /// lookup and reads).
    async fn lookup_values(
        &self,
        namespace: &str,
        index: &str,
        term: &str,
        limit: usize,
    ) -> Result<Vec<(String, Bytes)>> {
        if self.is_cluster() {
            return persistence_core::backend::lookup_then_read(
                self, namespace, index, term, limit,
            )
            .await;
        }
        let hits = self.lookup_hits(namespace, index, term, true).await?;
        Ok(hits
            .into_iter()
            .take(limit)
            .map(|(_, k, v)| (k, v.unwrap_or_default()))
            .collect())
    }

    async fn scan(&self, namespace: &str, request: ScanRequest) -> Result<ScanPage> {
        request.check(self.name(), &self.capabilities())?;
        let limit = request.limit.max(1);
        let mut con = self.con.clone();
        let candidates: Vec<(String, u64)> = match request.order {
            ScanOrder::Key => {
                let start = request
                    .cursor
                    .as_ref()
                    .map_or("-".to_string(), |c| format!("({c}"));
                let keys: Vec<String> = redis::cmd("ZRANGE")
                    .arg(self.layout.by_key(namespace))
                    .arg(start)
                    .arg("+")
                    .arg("BYLEX")
                    .arg("LIMIT")
                    .arg(0)
                    .arg(limit + 1)
                    .query_async(&mut con)
                    .await
                    .map_err(|e| self.error("scan", e))?;
                keys.into_iter().map(|k| (k, 0)).collect()
            }
            ScanOrder::Created | ScanOrder::NewestFirst => {
                self.created_page(namespace, &request, limit + 1).await?
            }
        };
        let more = candidates.len() > limit;
        let page: Vec<(String, u64)> = candidates.into_iter().take(limit).collect();
        let cursor = more.then(|| match request.order {
            ScanOrder::Key => page.last().map(|(k, _)| k.clone()),
            ScanOrder::Created | ScanOrder::NewestFirst => {
                page.last().map(|(k, c)| format!("{c}:{k}"))
            }
        });
        let keys: Vec<String> = page.into_iter().map(|(k, _)| k).collect();
        let docs = self.get_many(namespace, &keys).await;
        let mut entries = Vec::with_capacity(keys.len());
        let mut gone = Vec::new();
        for (key, doc) in keys.into_iter().zip(docs) {
            // members whose document expired or was deleted by the other
            // system are skipped, and their entries removed
            match doc? {
                Some(doc) => entries.push((key, doc)),
                None => gone.push(key),
            }
        }
        self.forget(namespace, &gone).await?;
        Ok(ScanPage {
            entries,
            cursor: cursor.flatten(),
        })
    }

    async fn get_many(&self, namespace: &str, keys: &[String]) -> Vec<Result<Option<Document>>> {
        if self.is_cluster() {
            // keys of a batch live in different slots: concurrent calls instead
            let calls = keys.iter().map(|k| self.get(namespace, k));
            return futures::future::join_all(calls).await;
        }
        if self.plain_reads() {
            return match self.read_plain(namespace, keys).await {
                Ok(docs) => docs.into_iter().map(Ok).collect(),
                Err(e) => keys.iter().map(|_| Err(e.clone())).collect(),
            };
        }
        let mut pipe = redis::pipe();
        for key in keys {
            pipe.invoke_script(&self.get_invocation(namespace, key));
        }
        match self.pipeline::<Vec<GetReply>>("get_many", &pipe).await {
            Ok(replies) => replies.into_iter().map(|r| Ok(r.map(document))).collect(),
            Err(e) => keys.iter().map(|_| Err(e.clone())).collect(),
        }
    }

    async fn put_many(&self, namespace: &str, puts: Vec<Put>) -> Vec<Result<Version>> {
        if self.is_cluster() {
            let calls = puts
                .into_iter()
                .map(|p| async move { self.put(namespace, &p.key, p.write, p.precondition).await });
            return futures::future::join_all(calls).await;
        }
        let mut pipe = redis::pipe();
        for p in &puts {
            pipe.invoke_script(&self.put_invocation(namespace, &p.key, &p.write, p.precondition));
        }
        match self
            .pipeline::<Vec<(String, u64, u64)>>("put_many", &pipe)
            .await
        {
            Ok(replies) => puts
                .iter()
                .zip(replies)
                .map(|(p, r)| Self::put_result(namespace, &p.key, p.precondition, r))
                .collect(),
            Err(e) => puts.iter().map(|_| Err(e.clone())).collect(),
        }
    }

    async fn remove_many(&self, namespace: &str, removes: Vec<Remove>) -> Vec<Result<bool>> {
        if self.is_cluster() {
            let calls = removes
                .iter()
                .map(|r| self.remove(namespace, &r.key, r.precondition));
            return futures::future::join_all(calls).await;
        }
        let mut out: Vec<Option<Result<bool>>> = Vec::with_capacity(removes.len());
        let mut pipe = redis::pipe();
        let mut sent = Vec::new();
        for (i, r) in removes.iter().enumerate() {
            if let Err(e) = r.precondition.check_removal(namespace, &r.key) {
                out.push(Some(Err(e)));
            } else {
                out.push(None);
                sent.push(i);
                pipe.invoke_script(&self.remove_invocation(namespace, &r.key, r.precondition));
            }
        }
        if !sent.is_empty() {
            match self
                .pipeline::<Vec<(String, u64)>>("remove_many", &pipe)
                .await
            {
                Ok(replies) => {
                    for (i, reply) in sent.into_iter().zip(replies) {
                        let r = &removes[i];
                        out[i] = Some(Self::remove_result(
                            namespace,
                            &r.key,
                            r.precondition,
                            reply,
                        ));
                    }
                }
                Err(e) => {
                    for i in sent {
                        out[i] = Some(Err(e.clone()));
                    }
                }
            }
        }
        out.into_iter()
            .map(|r| r.expect("every removal answered"))
            .collect()
    }

    async fn health(&self) -> Health {
        let mut con = self.con.clone();
        let started = Instant::now();
        let ping: std::result::Result<String, RedisError> =
            redis::cmd("PING").query_async(&mut con).await;
        let latency = started.elapsed();
        let mut health = match ping {
            Ok(_) => Health::ok("redis", format!("redis at {}", self.options.endpoint())),
            Err(e) => Health {
                status: HealthStatus::Down,
                backend: "redis".into(),
                message: self.error("ping", e).to_string(),
                latency_ms: None,
                details: Default::default(),
            },
        };
        if health.status == HealthStatus::Down {
            return health;
        }
        health.latency_ms = Some(latency.as_secs_f64() * 1e3);
        if let Ok(info) = redis::cmd("INFO")
            .arg("server")
            .query_async::<String>(&mut con)
            .await
        {
            if let Some(v) = info.lines().find_map(|l| l.strip_prefix("redis_version:")) {
                health
                    .details
                    .insert("server_version".into(), v.trim().to_string());
            }
        }
        let pattern = layout::glob_escape(&format!("{}:", self.layout.prefix())) + "*";
        let mut cursor = 0u64;
        let mut found = false;
        for _ in 0..20 {
            let scanned: std::result::Result<(u64, Vec<String>), _> = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut con)
                .await;
            let Ok((next, keys)) = scanned else { break };
            found |= !keys.is_empty();
            if found || next == 0 {
                break;
            }
            cursor = next;
        }
        health
            .details
            .insert("prefix".into(), self.layout.prefix().to_string());
        health
            .details
            .insert("prefix_in_use".into(), found.to_string());
        health
    }
}
