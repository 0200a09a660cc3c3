//! The `Backend` contract: documents under a namespace and key.
//!
//! A backend stores opaque bytes; it knows nothing about agent tasks. The
//! typed stores in [`crate::store`] are written once on top of this trait, so
//! every backend (memory, sled, Redis, a plugin, a stack of layers) gets them.

mod document;
mod stats;
mod transaction;

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

pub use document::{
    next_stamp, stamp_of, time_of, Capabilities, Document, DocumentWrite, Health, HealthStatus,
    IndexTerm, Precondition, Put, Remove, ScanOrder, ScanPage, ScanRequest, Version,
};
pub use stats::{OperationStats, Stats};
pub use transaction::{
    check_transaction, safe_to_retry, TxOutcome, TxWrite, MAX_TRANSACTION_WRITES,
};

use crate::error::{Error, Result};

/// A shared, type-erased backend: what the factory returns and layers wrap.
pub type SharedBackend = Arc<dyn Backend>;

/// The storage contract every backend, layer and plugin implements.
///
/// Guarantees every implementation keeps (the conformance suite checks them):
///
/// - **Atomic writes.** A [`put`](Backend::put) or [`remove`](Backend::remove)
///   checks its [`Precondition`] and applies the document change and all of its
///   index changes as one step: no reader ever sees the document without its
///   terms or a term pointing at a document that does not contain it (on
///   backends declaring [`Capabilities::atomic_index`]).
/// - **Read your writes.** Once a write returned, every later call on the same
///   backend sees it.
/// - **Namespaces are isolated,** and any string is a valid key, term and
///   namespace (empty, unicode, `:`, `*`, `{}` included): no two distinct
///   `(namespace, key)` or `(index, term)` pairs collide.
/// - **Expired documents are invisible**: `get`, `lookup`, `scan` and `count`
///   never return a document past its `expires_at`.
/// - **Errors are typed** ([`crate::Error`]) and no call panics.
///
/// Layers (timeouts, retries, caches) are backends that wrap a [`SharedBackend`].
///
/// ```
/// use persistence_core::backend::{Backend, DocumentWrite, Precondition};
/// use persistence_core::memory::MemoryBackend;
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let backend = MemoryBackend::new();
/// let write = DocumentWrite::new(&b"{\"n\":1}"[..]).with_term("by_color", "red");
/// let v1 = backend.put("things", "a", write, Precondition::Absent).await.unwrap();
/// let doc = backend.get("things", "a").await.unwrap().unwrap();
/// assert_eq!(doc.version, v1);
/// assert_eq!(backend.lookup("things", "by_color", "red").await.unwrap(), vec!["a"]);
/// # });
/// ```
#[async_trait]
pub trait Backend: Send + Sync + Debug + 'static {
    /// A short name for logs and health (`memory`, `sled`, `redis`, a plugin's name).
    fn name(&self) -> &str;

    /// What this backend offers beyond the required operations.
    fn capabilities(&self) -> Capabilities;

    /// The document at `key`, or `None` when absent or expired.
    async fn get(&self, namespace: &str, key: &str) -> Result<Option<Document>>;

    /// Only the bytes of the document at `key`, for readers that need no
    /// version or expiry. Same visibility as [`get`](Backend::get); a backend
    /// overrides it when bytes alone are cheaper to fetch (one plain `GET`
    /// on Redis instead of a script).
    async fn get_value(&self, namespace: &str, key: &str) -> Result<Option<Bytes>> {
        Ok(self.get(namespace, key).await?.map(|d| d.value))
    }

    /// Stores `write` at `key` if `precondition` holds, atomically with its
    /// index terms and TTL, and returns the new version.
    ///
    /// Errors: `AlreadyExists` ([`Precondition::Absent`] on an existing key),
    /// `NotFound` ([`Precondition::Present`] or [`Precondition::Version`] on a
    /// missing key), `Conflict` (version differs), `Unsupported` (a TTL on a
    /// backend without [`Capabilities::ttl`]). On error nothing changed.
    async fn put(
        &self,
        namespace: &str,
        key: &str,
        write: DocumentWrite,
        precondition: Precondition,
    ) -> Result<Version>;

    /// Removes `key` and its index terms if `precondition` holds. Returns
    /// whether a document was removed (`false` only with
    /// [`Precondition::Any`] on a missing key).
    ///
    /// Errors: `NotFound` (`Present` or `Version` on a missing key),
    /// `Conflict` (version differs), `InvalidInput` ([`Precondition::Absent`]).
    async fn remove(&self, namespace: &str, key: &str, precondition: Precondition) -> Result<bool>;

    /// Keys of the live documents that carry `term` in `index`, ordered by
    /// `(created, key)` (oldest first). Without
    /// [`Capabilities::atomic_index`] the result is a hint: verify each hit.
    async fn lookup(&self, namespace: &str, index: &str, term: &str) -> Result<Vec<String>>;

    /// The keys and values of the first `limit` live documents that carry
    /// `term` in `index`, in [`lookup`](Backend::lookup)'s order: a lookup
    /// and its reads in one call, for engines that can do both in one round
    /// trip (Redis does). By default, a lookup and then a read of each hit,
    /// skipping documents removed in between. Without
    /// [`Capabilities::atomic_index`] a hit is a hint, as for `lookup`.
    async fn lookup_values(
        &self,
        namespace: &str,
        index: &str,
        term: &str,
        limit: usize,
    ) -> Result<Vec<(String, Bytes)>> {
        lookup_then_read(self, namespace, index, term, limit).await
    }

    /// How many live documents carry `term` in `index`, without reading
    /// them: by default the length of [`lookup`](Backend::lookup) (index
    /// entries only on memory, redb and sled; one round trip on Redis,
    /// where the script checks each member as a lookup does). O(hits),
    /// never O(namespace).
    async fn count_term(&self, namespace: &str, index: &str, term: &str) -> Result<u64> {
        Ok(self.lookup(namespace, index, term).await?.len() as u64)
    }

    /// One page of the namespace's live documents in `request.order`.
    /// Requires [`Capabilities::scan`] (and
    /// [`Capabilities::scan_by_creation`] for [`ScanOrder::Created`]).
    async fn scan(&self, namespace: &str, request: ScanRequest) -> Result<ScanPage> {
        let _ = (namespace, request);
        Err(self.unsupported("scan"))
    }

    /// Number of live documents in the namespace. The default pages through
    /// [`scan`](Backend::scan); backends with [`Capabilities::count`] answer
    /// without reading every document.
    async fn count(&self, namespace: &str) -> Result<u64> {
        if !self.capabilities().scan {
            return Err(self.unsupported("count"));
        }
        let mut request = ScanRequest::first(ScanOrder::Key, 1000);
        let mut n = 0u64;
        loop {
            let page = self.scan(namespace, request.clone()).await?;
            n += page.entries.len() as u64;
            match page.cursor {
                Some(c) => request.cursor = Some(c),
                None => return Ok(n),
            }
        }
    }

    /// Makes every write acknowledged so far durable, for engines whose
    /// writes become durable later than they are acknowledged (sled
    /// without `flush_on_write`, redb with periodic durability). A
    /// checkpoint that says "copied" must follow one. By default there is
    /// nothing to do (memory; Redis, whose persistence is the server's).
    async fn flush(&self) -> Result<()> {
        Ok(())
    }

    /// The namespaces holding documents, sorted (what export and migrate
    /// walk). Requires [`Capabilities::export`]. A namespace whose
    /// documents all expired may still be listed.
    async fn namespaces(&self) -> Result<Vec<String>> {
        Err(self.unsupported("listing namespaces"))
    }

    /// The index terms of each of `keys` with the version they belong to,
    /// in order; `None` for a key with no live document. Requires
    /// [`Capabilities::export`]; [`export_page`] pairs them with a scan.
    async fn index_terms(&self, namespace: &str, keys: &[String]) -> Result<Vec<Option<Terms>>> {
        let _ = (namespace, keys);
        Err(self.unsupported("reading index terms"))
    }

    /// Reads several keys; one result per key, in order.
    async fn get_many(&self, namespace: &str, keys: &[String]) -> Vec<Result<Option<Document>>> {
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            out.push(self.get(namespace, key).await);
        }
        out
    }

    /// Applies several puts; one result per put, in order. Each put is atomic
    /// on its own and a failed precondition fails that key only (the batch as
    /// a whole is not a transaction).
    async fn put_many(&self, namespace: &str, puts: Vec<Put>) -> Vec<Result<Version>> {
        let mut out = Vec::with_capacity(puts.len());
        for p in puts {
            out.push(self.put(namespace, &p.key, p.write, p.precondition).await);
        }
        out
    }

    /// Applies several removals; one result per removal, in order, each
    /// independent as in [`put_many`](Backend::put_many).
    async fn remove_many(&self, namespace: &str, removes: Vec<Remove>) -> Vec<Result<bool>> {
        let mut out = Vec::with_capacity(removes.len());
        for r in removes {
            out.push(self.remove(namespace, &r.key, r.precondition).await);
        }
        out
    }

    /// Applies `writes` all-or-nothing: every precondition is checked and
    /// every document changes (with its index terms and TTL) in one atomic
    /// step, or nothing changes. Returns one outcome per write, in order.
    /// Requires [`Capabilities::transactions`].
    ///
    /// A key may appear once; removals may not use `Absent`; at most
    /// [`MAX_TRANSACTION_WRITES`] writes ([`check_transaction`]: otherwise
    /// `InvalidInput`). On a failed precondition the error is that write's
    /// (`AlreadyExists`, `NotFound`, `Conflict`, naming its key) and nothing
    /// applied. Concurrent single writes see the transaction entirely or
    /// not at all.
    ///
    /// ```
    /// use persistence_core::backend::{Backend, DocumentWrite, Precondition, TxWrite};
    /// use persistence_core::memory::MemoryBackend;
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let b = MemoryBackend::new();
    /// let w = |v: &str| DocumentWrite::new(v.as_bytes().to_vec());
    /// b.transact(vec![
    ///     TxWrite::put("info", "wf-1", w("completed"), Precondition::Any),
    ///     TxWrite::put("results", "wf-1", w("{}"), Precondition::Absent),
    /// ]).await.unwrap();
    /// // the second write's precondition fails: the first is not applied
    /// let r = b.transact(vec![
    ///     TxWrite::put("info", "wf-1", w("failed"), Precondition::Any),
    ///     TxWrite::put("results", "wf-1", w("{}"), Precondition::Absent),
    /// ]).await;
    /// assert!(r.is_err());
    /// assert_eq!(&b.get("info", "wf-1").await.unwrap().unwrap().value[..], b"completed");
    /// # });
    /// ```
    async fn transact(&self, writes: Vec<TxWrite>) -> Result<Vec<TxOutcome>> {
        let _ = writes;
        Err(self.unsupported("transactions"))
    }

    /// Checks the backend and reports; never fails (a failing check is a
    /// [`HealthStatus::Down`] report).
    async fn health(&self) -> Health;

    /// What this backend and the layers around it have counted (calls,
    /// errors, retries, breaker transitions, queue depth, cache hits...).
    /// Cheap: reads counters, never calls the backend. A bare backend
    /// reports nothing; each layer adds its own (see [`Stats`]).
    fn stats(&self) -> Stats {
        Stats::default()
    }

    /// The `Unsupported` error for `capability` on this backend.
    fn unsupported(&self, capability: &str) -> Error {
        Error::Unsupported {
            backend: self.name().to_string(),
            capability: capability.to_string(),
        }
    }
}

/// A document's index terms and the version they belong to.
pub type Terms = (Version, Vec<IndexTerm>);

/// One document as [`export_page`] reads it: key, document, index terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportEntry {
    /// The key.
    pub key: String,
    /// The document (bytes, version, creation stamp, expiry).
    pub document: Document,
    /// Its index terms, as its last write gave them.
    pub index: Vec<IndexTerm>,
}

/// A page of [`export_page`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExportPage {
    /// The documents, in the order asked for.
    pub entries: Vec<ExportEntry>,
    /// Where the next page starts; `None` when the namespace is done.
    pub cursor: Option<String>,
}

/// Up to `limit` documents of `namespace` after `cursor` in `order`,
/// each with the index terms of the same version: a
/// [`scan`](Backend::scan) page, then [`index_terms`](Backend::index_terms)
/// for its keys; a document written in between is read again (up to 5
/// times, then the call fails with `Conflict`), one removed in between is
/// left out. Needs [`Capabilities::scan`] and [`Capabilities::export`].
pub async fn export_page<B: Backend + ?Sized>(
    backend: &B,
    namespace: &str,
    request: ScanRequest,
) -> Result<ExportPage> {
    let page = backend.scan(namespace, request).await?;
    let keys: Vec<String> = page.entries.iter().map(|(k, _)| k.clone()).collect();
    let terms = backend.index_terms(namespace, &keys).await?;
    let mut entries = Vec::with_capacity(keys.len());
    for ((key, mut document), mut terms) in page.entries.into_iter().zip(terms) {
        let mut tries = 0;
        loop {
            match terms {
                Some((version, index)) if version == document.version => {
                    entries.push(ExportEntry {
                        key,
                        document,
                        index,
                    });
                    break;
                }
                None => break,
                Some((version, _)) => {
                    tries += 1;
                    if tries > 5 {
                        return Err(Error::Conflict {
                            namespace: namespace.to_string(),
                            key,
                            expected: document.version,
                            actual: version,
                        });
                    }
                    // written in between: read both again
                    match backend.get(namespace, &key).await? {
                        Some(d) => document = d,
                        None => break,
                    }
                    terms = backend
                        .index_terms(namespace, std::slice::from_ref(&key))
                        .await?
                        .pop()
                        .flatten();
                }
            }
        }
    }
    Ok(ExportPage {
        entries,
        cursor: page.cursor,
    })
}

/// Shorthands over [`Backend::put`] and [`Backend::remove`] for the common
/// preconditions.
#[async_trait]
pub trait BackendExt: Backend {
    /// Creates `key`; fails with `AlreadyExists` if present.
    async fn insert(&self, namespace: &str, key: &str, write: DocumentWrite) -> Result<Version> {
        self.put(namespace, key, write, Precondition::Absent).await
    }

    /// Replaces `key`, at `expected` version if given; fails with `NotFound`
    /// if absent and `Conflict` on a version mismatch.
    async fn replace(
        &self,
        namespace: &str,
        key: &str,
        write: DocumentWrite,
        expected: Option<Version>,
    ) -> Result<Version> {
        let pre = expected.map_or(Precondition::Present, Precondition::Version);
        self.put(namespace, key, write, pre).await
    }

    /// Creates or replaces `key`.
    async fn upsert(&self, namespace: &str, key: &str, write: DocumentWrite) -> Result<Version> {
        self.put(namespace, key, write, Precondition::Any).await
    }
}

impl<B: Backend + ?Sized> BackendExt for B {}

/// [`Backend::lookup_values`] the plain way: a lookup, then a read of each
/// hit (skipping documents removed in between) until `limit` are found.
/// For engines that override it in some modes only.
pub async fn lookup_then_read<B: Backend + ?Sized>(
    backend: &B,
    namespace: &str,
    index: &str,
    term: &str,
    limit: usize,
) -> Result<Vec<(String, Bytes)>> {
    let mut out = Vec::new();
    for key in backend.lookup(namespace, index, term).await? {
        if out.len() >= limit {
            break;
        }
        if let Some(value) = backend.get_value(namespace, &key).await? {
            out.push((key, value));
        }
    }
    Ok(out)
}
