//! The one shape every layer has: a backend around a backend that forwards
//! what it does not change.

use std::fmt::Debug;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{stream, StreamExt};

use crate::backend::{
    Backend, Capabilities, Document, DocumentWrite, Health, Precondition, Put, Remove, ScanPage,
    ScanRequest, Stats, Terms, TxOutcome, TxWrite, Version,
};
use crate::error::{Error, Result};

use super::BoxFuture;

/// A backend wrapped around [`inner`](Layer::inner). Every method forwards
/// to the inner backend unless the layer overrides it, so a layer writes
/// only what it changes; every `Layer` is a [`Backend`].
///
/// Two families do not forward, so that a layer cannot be bypassed by
/// accident:
///
/// - [`get_value`](Layer::get_value) reads through the layer's own
///   [`get`](Layer::get). A layer that leaves reads alone may forward it to
///   keep the inner backend's cheaper path.
/// - The batch calls (`get_many`, `put_many`, `remove_many`) run the
///   layer's own `get`, `put` and `remove` one key at a time, and the
///   default [`capabilities`](Layer::capabilities) clear `native_batch` to
///   say so.
///
/// A method added to [`Backend`] must be added here too: the blanket
/// `impl Backend for L: Layer` denies `clippy::missing_trait_methods`, so
/// it cannot be forgotten.
///
/// A layer is used as a [`Backend`] (usually a
/// [`SharedBackend`](crate::SharedBackend)). Both traits name the same
/// methods, so where both are in scope, say which: `Layer::get(self, ..)`.
///
/// ```
/// use std::sync::Arc;
///
/// use async_trait::async_trait;
/// use persistence_core::backend::{DocumentWrite, Precondition, Version};
/// use persistence_core::layers::Layer;
/// use persistence_core::memory::MemoryBackend;
/// use persistence_core::{Backend, Result, SharedBackend};
///
/// /// Refuses every write: a read-only view of a backend.
/// #[derive(Debug)]
/// struct ReadOnly(MemoryBackend);
///
/// #[async_trait]
/// impl Layer for ReadOnly {
///     fn inner(&self) -> &dyn Backend {
///         &self.0
///     }
///     async fn put(&self, _: &str, _: &str, _: DocumentWrite, _: Precondition) -> Result<Version> {
///         Err(Layer::unsupported(self, "writes"))
///     }
/// }
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let view: SharedBackend = Arc::new(ReadOnly(MemoryBackend::new()));
/// assert!(view.get("ns", "k").await.unwrap().is_none()); // forwarded
/// let write = DocumentWrite::new(&b"{}"[..]);
/// assert!(view.put("ns", "k", write, Precondition::Any).await.is_err());
/// // batches go through the layer's own put: no way around it
/// let put = persistence_core::backend::Put {
///     key: "k".into(),
///     write: DocumentWrite::new(&b"{}"[..]),
///     precondition: Precondition::Any,
/// };
/// assert!(view.put_many("ns", vec![put]).await[0].is_err());
/// # });
/// ```
#[async_trait]
pub trait Layer: Send + Sync + Debug + 'static {
    /// The backend this layer wraps.
    fn inner(&self) -> &dyn Backend;

    /// See [`Backend::name`]; forwards.
    fn name(&self) -> &str {
        self.inner().name()
    }

    /// See [`Backend::capabilities`]; forwards, with `native_batch` off
    /// (batches run one key at a time through the layer).
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            native_batch: false,
            ..self.inner().capabilities()
        }
    }

    /// See [`Backend::get`]; forwards.
    async fn get(&self, namespace: &str, key: &str) -> Result<Option<Document>> {
        self.inner().get(namespace, key).await
    }

    /// See [`Backend::get_value`]; reads through this layer's
    /// [`get`](Layer::get).
    async fn get_value(&self, namespace: &str, key: &str) -> Result<Option<Bytes>> {
        Ok(self.get(namespace, key).await?.map(|d| d.value))
    }

    /// See [`Backend::put`]; forwards.
    async fn put(
        &self,
        namespace: &str,
        key: &str,
        write: DocumentWrite,
        precondition: Precondition,
    ) -> Result<Version> {
        self.inner().put(namespace, key, write, precondition).await
    }

    /// See [`Backend::remove`]; forwards.
    async fn remove(&self, namespace: &str, key: &str, precondition: Precondition) -> Result<bool> {
        self.inner().remove(namespace, key, precondition).await
    }

    /// See [`Backend::lookup`]; forwards.
    async fn lookup(&self, namespace: &str, index: &str, term: &str) -> Result<Vec<String>> {
        self.inner().lookup(namespace, index, term).await
    }

    /// See [`Backend::lookup_values`]; forwards.
    async fn lookup_values(
        &self,
        namespace: &str,
        index: &str,
        term: &str,
        limit: usize,
    ) -> Result<Vec<(String, Bytes)>> {
        self.inner()
            .lookup_values(namespace, index, term, limit)
            .await
    }

    /// See [`Backend::count_term`]; forwards.
    async fn count_term(&self, namespace: &str, index: &str, term: &str) -> Result<u64> {
        self.inner().count_term(namespace, index, term).await
    }

    /// See [`Backend::scan`]; forwards.
    async fn scan(&self, namespace: &str, request: ScanRequest) -> Result<ScanPage> {
        self.inner().scan(namespace, request).await
    }

    /// See [`Backend::count`]; forwards.
    async fn count(&self, namespace: &str) -> Result<u64> {
        self.inner().count(namespace).await
    }

    /// See [`Backend::flush`]; forwards.
    async fn flush(&self) -> Result<()> {
        self.inner().flush().await
    }

    /// See [`Backend::namespaces`]; forwards.
    async fn namespaces(&self) -> Result<Vec<String>> {
        self.inner().namespaces().await
    }

    /// See [`Backend::transact`]; forwards.
    async fn transact(&self, writes: Vec<TxWrite>) -> Result<Vec<TxOutcome>> {
        self.inner().transact(writes).await
    }

    /// See [`Backend::index_terms`]; forwards.
    async fn index_terms(&self, namespace: &str, keys: &[String]) -> Result<Vec<Option<Terms>>> {
        self.inner().index_terms(namespace, keys).await
    }

    /// See [`Backend::get_many`]; this layer's `get`, key by key.
    async fn get_many(&self, namespace: &str, keys: &[String]) -> Vec<Result<Option<Document>>> {
        stream::iter(keys)
            .then(|key| self.get(namespace, key))
            .collect()
            .await
    }

    /// See [`Backend::put_many`]; this layer's `put`, one by one.
    async fn put_many(&self, namespace: &str, puts: Vec<Put>) -> Vec<Result<Version>> {
        stream::iter(puts)
            .then(|p| async move { self.put(namespace, &p.key, p.write, p.precondition).await })
            .collect()
            .await
    }

    /// See [`Backend::remove_many`]; this layer's `remove`, one by one.
    async fn remove_many(&self, namespace: &str, removes: Vec<Remove>) -> Vec<Result<bool>> {
        stream::iter(removes)
            .then(|r| async move { self.remove(namespace, &r.key, r.precondition).await })
            .collect()
            .await
    }

    /// See [`Backend::health`]; forwards.
    async fn health(&self) -> Health {
        self.inner().health().await
    }

    /// See [`Backend::stats`]; forwards.
    fn stats(&self) -> Stats {
        self.inner().stats()
    }

    /// See [`Backend::unsupported`]: the error names this layer's
    /// [`name`](Layer::name).
    fn unsupported(&self, capability: &str) -> Error {
        Error::Unsupported {
            backend: self.name().to_string(),
            capability: capability.to_string(),
        }
    }
}

// Hands each call to the layer's method as it is: the futures are the
// layer's own boxes, not boxed again here.
#[deny(clippy::missing_trait_methods)]
impl<L: Layer> Backend for L {
    fn name(&self) -> &str {
        Layer::name(self)
    }

    fn capabilities(&self) -> Capabilities {
        Layer::capabilities(self)
    }

    fn get<'a, 'b, 'c, 'f>(&'a self, namespace: &'b str, key: &'c str) -> Fut<'f, Option<Document>>
    where
        'a: 'f,
        'b: 'f,
        'c: 'f,
        Self: 'f,
    {
        Layer::get(self, namespace, key)
    }

    fn get_value<'a, 'b, 'c, 'f>(
        &'a self,
        namespace: &'b str,
        key: &'c str,
    ) -> Fut<'f, Option<Bytes>>
    where
        'a: 'f,
        'b: 'f,
        'c: 'f,
        Self: 'f,
    {
        Layer::get_value(self, namespace, key)
    }

    fn put<'a, 'b, 'c, 'f>(
        &'a self,
        namespace: &'b str,
        key: &'c str,
        write: DocumentWrite,
        precondition: Precondition,
    ) -> Fut<'f, Version>
    where
        'a: 'f,
        'b: 'f,
        'c: 'f,
        Self: 'f,
    {
        Layer::put(self, namespace, key, write, precondition)
    }

    fn remove<'a, 'b, 'c, 'f>(
        &'a self,
        namespace: &'b str,
        key: &'c str,
        precondition: Precondition,
    ) -> Fut<'f, bool>
    where
        'a: 'f,
        'b: 'f,
        'c: 'f,
        Self: 'f,
    {
        Layer::remove(self, namespace, key, precondition)
    }

    fn lookup<'a, 'b, 'c, 'd, 'f>(
        &'a self,
        namespace: &'b str,
        index: &'c str,
        term: &'d str,
    ) -> Fut<'f, Vec<String>>
    where
        'a: 'f,
        'b: 'f,
        'c: 'f,
        'd: 'f,
        Self: 'f,
    {
        Layer::lookup(self, namespace, index, term)
    }

    fn lookup_values<'a, 'b, 'c, 'd, 'f>(
        &'a self,
        namespace: &'b str,
        index: &'c str,
        term: &'d str,
        limit: usize,
    ) -> Fut<'f, Vec<(String, Bytes)>>
    where
        'a: 'f,
        'b: 'f,
        'c: 'f,
        'd: 'f,
        Self: 'f,
    {
        Layer::lookup_values(self, namespace, index, term, limit)
    }

    fn count_term<'a, 'b, 'c, 'd, 'f>(
        &'a self,
        namespace: &'b str,
        index: &'c str,
        term: &'d str,
    ) -> Fut<'f, u64>
    where
        'a: 'f,
        'b: 'f,
        'c: 'f,
        'd: 'f,
        Self: 'f,
    {
        Layer::count_term(self, namespace, index, term)
    }

    fn scan<'a, 'b, 'f>(&'a self, namespace: &'b str, request: ScanRequest) -> Fut<'f, ScanPage>
    where
        'a: 'f,
        'b: 'f,
        Self: 'f,
    {
        Layer::scan(self, namespace, request)
    }

    fn count<'a, 'b, 'f>(&'a self, namespace: &'b str) -> Fut<'f, u64>
    where
        'a: 'f,
        'b: 'f,
        Self: 'f,
    {
        Layer::count(self, namespace)
    }

    fn flush<'a, 'f>(&'a self) -> Fut<'f, ()>
    where
        'a: 'f,
        Self: 'f,
    {
        Layer::flush(self)
    }

    fn transact<'a, 'f>(&'a self, writes: Vec<TxWrite>) -> Fut<'f, Vec<TxOutcome>>
    where
        'a: 'f,
        Self: 'f,
    {
        Layer::transact(self, writes)
    }

    fn namespaces<'a, 'f>(&'a self) -> Fut<'f, Vec<String>>
    where
        'a: 'f,
        Self: 'f,
    {
        Layer::namespaces(self)
    }

    fn index_terms<'a, 'b, 'c, 'f>(
        &'a self,
        namespace: &'b str,
        keys: &'c [String],
    ) -> Fut<'f, Vec<Option<Terms>>>
    where
        'a: 'f,
        'b: 'f,
        'c: 'f,
        Self: 'f,
    {
        Layer::index_terms(self, namespace, keys)
    }

    fn get_many<'a, 'b, 'c, 'f>(
        &'a self,
        namespace: &'b str,
        keys: &'c [String],
    ) -> BoxFuture<'f, Vec<Result<Option<Document>>>>
    where
        'a: 'f,
        'b: 'f,
        'c: 'f,
        Self: 'f,
    {
        Layer::get_many(self, namespace, keys)
    }

    fn put_many<'a, 'b, 'f>(
        &'a self,
        namespace: &'b str,
        puts: Vec<Put>,
    ) -> BoxFuture<'f, Vec<Result<Version>>>
    where
        'a: 'f,
        'b: 'f,
        Self: 'f,
    {
        Layer::put_many(self, namespace, puts)
    }

    fn remove_many<'a, 'b, 'f>(
        &'a self,
        namespace: &'b str,
        removes: Vec<Remove>,
    ) -> BoxFuture<'f, Vec<Result<bool>>>
    where
        'a: 'f,
        'b: 'f,
        Self: 'f,
    {
        Layer::remove_many(self, namespace, removes)
    }

    fn health<'a, 'f>(&'a self) -> BoxFuture<'f, Health>
    where
        'a: 'f,
        Self: 'f,
    {
        Layer::health(self)
    }

    fn stats(&self) -> Stats {
        Layer::stats(self)
    }

    fn unsupported(&self, capability: &str) -> Error {
        Layer::unsupported(self, capability)
    }
}

/// The boxed future of a call returning `Result<T>`.
type Fut<'f, T> = BoxFuture<'f, Result<T>>;
