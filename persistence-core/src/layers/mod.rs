//! Resilience layers: each is a [`Backend`] that wraps a [`Backend`], so
//! they stack over any backend or plugin, in any order, from configuration
//! (`layers = ["timeout", "retry", "circuit_breaker"]`, listed from the
//! backend outward).
//!
//! A layer is a [`Policy`] deciding how each call runs (with a deadline,
//! again after a failure, not at all while a circuit is open); [`Layered`]
//! turns any policy into a backend. `docs/resilience.md` states the rules.

mod breaker;
mod cache;
mod forward;
mod metrics;
mod provider;
mod recovery;
mod retry;
mod spill;
mod timeout;

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

pub use breaker::{BreakerSettings, BreakerState, CircuitBreaker, CircuitBreakerProvider};
pub use cache::{CacheProvider, CacheSettings, CacheTier};
pub use forward::Layer;
pub use metrics::Metrics;
pub use provider::{builtin, LayerProvider};
pub use recovery::{
    with_priority, Priority, RecoveryQueue, RecoveryQueueProvider, RecoverySettings, SpillOpener,
};
pub use retry::{Retry, RetryProvider, RetrySettings};
pub use spill::{QueueSpill, SpilledOp, SpilledWrite};
pub use timeout::{Timeout, TimeoutProvider, TimeoutSettings};

use crate::backend::{
    safe_to_retry, Backend, Document, DocumentWrite, Health, Precondition, ScanPage, ScanRequest,
    SharedBackend, Stats, TxOutcome, TxWrite, Version,
};
use crate::error::{Error, Result};

/// A boxed, sendable future (what `async_trait` methods return).
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// What a call does, for the policies that care (retry rules, counters,
/// messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `get` (and `get_value`).
    Get,
    /// `lookup`.
    Lookup,
    /// `scan`.
    Scan,
    /// `count`.
    Count,
    /// A `put` with its precondition.
    Put(Precondition),
    /// A `remove` with its precondition.
    Remove(Precondition),
    /// A `transact`, saying whether it is safe to retry
    /// ([`safe_to_retry`](crate::backend::safe_to_retry)).
    Transact(bool),
}

impl Op {
    /// Every operation's name, in [`Op::index`] order.
    pub const NAMES: [&'static str; 7] = [
        "get", "lookup", "scan", "count", "put", "remove", "transact",
    ];

    /// The operation's name.
    pub fn name(self) -> &'static str {
        Self::NAMES[self.index()]
    }

    /// The operation's position in [`Op::NAMES`] (for tables of counters).
    pub fn index(self) -> usize {
        match self {
            Op::Get => 0,
            Op::Lookup => 1,
            Op::Scan => 2,
            Op::Count => 3,
            Op::Put(_) => 4,
            Op::Remove(_) => 5,
            Op::Transact(_) => 6,
        }
    }

    /// Whether running the call again after an ambiguous failure can never
    /// apply a change twice: reads always; writes when unconditional
    /// (`Any`: upsert and remove-if-present are idempotent) or guarded by a
    /// version (a replay of an applied write fails with `Conflict`, it does
    /// not apply again). Insert (`Absent`) and replace-if-present
    /// (`Present`) are not retried: a replay could apply after someone
    /// else's write.
    pub fn safe_to_retry(self) -> bool {
        match self {
            Op::Get | Op::Lookup | Op::Scan | Op::Count => true,
            Op::Put(p) | Op::Remove(p) => matches!(p, Precondition::Any | Precondition::Version(_)),
            Op::Transact(safe) => safe,
        }
    }
}

/// What a call is about, for spans and log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    /// The namespace.
    pub namespace: &'a str,
    /// The key; the term of a lookup; empty for scans and counts.
    pub key: &'a str,
}

/// How a layer runs each call. `call` makes a fresh attempt each time it
/// is invoked.
pub trait Policy: Send + Sync + Debug + 'static {
    /// The layer's name in health details.
    fn name(&self) -> &'static str;

    /// Runs one call under the policy.
    fn run<'a, T: Send + 'a>(
        &'a self,
        op: Op,
        target: Target<'a>,
        call: &'a (dyn Fn() -> BoxFuture<'a, Result<T>> + Send + Sync),
    ) -> impl std::future::Future<Output = Result<T>> + Send + 'a;

    /// Whether `run` may invoke the call more than once (to retry). A
    /// policy that never does says so, and its layer then hands each write
    /// to the backend without copying it.
    fn may_repeat(&self) -> bool {
        true
    }

    /// Adds what the layer knows (state, counts) to a health report.
    fn report(&self, health: &mut Health) {
        let _ = health;
    }

    /// Adds the layer's counters to `stats`.
    fn stats(&self, stats: &mut Stats) {
        let _ = stats;
    }
}

/// A backend whose every call runs under `policy`. Batch calls go through
/// the policy one key at a time.
#[derive(Debug)]
pub struct Layered<P> {
    inner: SharedBackend,
    policy: P,
}

impl<P: Policy> Layered<P> {
    /// `inner` under `policy`.
    pub fn new(inner: SharedBackend, policy: P) -> Self {
        Layered { inner, policy }
    }

    /// The policy (to read its state).
    pub fn policy(&self) -> &P {
        &self.policy
    }
}

/// Wraps `inner` in `policy`, type-erased for stacking.
pub fn layer<P: Policy>(inner: SharedBackend, policy: P) -> SharedBackend {
    Arc::new(Layered::new(inner, policy))
}

#[async_trait]
impl<P: Policy> Layer for Layered<P> {
    fn inner(&self) -> &dyn Backend {
        &*self.inner
    }

    async fn get(&self, namespace: &str, key: &str) -> Result<Option<Document>> {
        self.policy
            .run(Op::Get, Target { namespace, key }, &|| {
                self.inner.get(namespace, key)
            })
            .await
    }

    async fn get_value(&self, namespace: &str, key: &str) -> Result<Option<Bytes>> {
        self.policy
            .run(Op::Get, Target { namespace, key }, &|| {
                self.inner.get_value(namespace, key)
            })
            .await
    }

    async fn put(
        &self,
        namespace: &str,
        key: &str,
        write: DocumentWrite,
        precondition: Precondition,
    ) -> Result<Version> {
        let (op, target) = (Op::Put(precondition), Target { namespace, key });
        if self.policy.may_repeat() {
            return self
                .policy
                .run(op, target, &|| {
                    self.inner.put(namespace, key, write.clone(), precondition)
                })
                .await;
        }
        let once = parking_lot::Mutex::new(Some(write));
        self.policy
            .run(op, target, &|| match once.lock().take() {
                Some(write) => self.inner.put(namespace, key, write, precondition),
                None => Box::pin(async move {
                    Err(Error::Internal {
                        backend: self.inner.name().to_string(),
                        message: format!(
                            "layer {} ran a put twice but declared it never repeats calls",
                            self.policy.name()
                        ),
                    })
                }),
            })
            .await
    }

    async fn transact(&self, writes: Vec<TxWrite>) -> Result<Vec<TxOutcome>> {
        let op = Op::Transact(safe_to_retry(&writes));
        let (namespace, key) = writes.first().map_or_else(Default::default, |w| {
            let (ns, key) = w.target();
            (ns.to_string(), key.to_string())
        });
        let target = Target {
            namespace: &namespace,
            key: &key,
        };
        if self.policy.may_repeat() {
            return self
                .policy
                .run(op, target, &|| self.inner.transact(writes.clone()))
                .await;
        }
        let once = parking_lot::Mutex::new(Some(writes));
        self.policy
            .run(op, target, &|| match once.lock().take() {
                Some(writes) => self.inner.transact(writes),
                None => Box::pin(async move {
                    Err(Error::Internal {
                        backend: self.inner.name().to_string(),
                        message: format!(
                            "layer {} ran a transaction twice but declared it never repeats calls",
                            self.policy.name()
                        ),
                    })
                }),
            })
            .await
    }

    async fn remove(&self, namespace: &str, key: &str, precondition: Precondition) -> Result<bool> {
        self.policy
            .run(Op::Remove(precondition), Target { namespace, key }, &|| {
                self.inner.remove(namespace, key, precondition)
            })
            .await
    }

    async fn lookup(&self, namespace: &str, index: &str, term: &str) -> Result<Vec<String>> {
        self.policy
            .run(
                Op::Lookup,
                Target {
                    namespace,
                    key: term,
                },
                &|| self.inner.lookup(namespace, index, term),
            )
            .await
    }

    async fn lookup_values(
        &self,
        namespace: &str,
        index: &str,
        term: &str,
        limit: usize,
    ) -> Result<Vec<(String, Bytes)>> {
        self.policy
            .run(
                Op::Lookup,
                Target {
                    namespace,
                    key: term,
                },
                &|| self.inner.lookup_values(namespace, index, term, limit),
            )
            .await
    }

    async fn scan(&self, namespace: &str, request: ScanRequest) -> Result<ScanPage> {
        self.policy
            .run(Op::Scan, Target { namespace, key: "" }, &|| {
                self.inner.scan(namespace, request.clone())
            })
            .await
    }

    async fn count(&self, namespace: &str) -> Result<u64> {
        self.policy
            .run(Op::Count, Target { namespace, key: "" }, &|| {
                self.inner.count(namespace)
            })
            .await
    }

    async fn count_term(&self, namespace: &str, index: &str, term: &str) -> Result<u64> {
        self.policy
            .run(
                Op::Lookup,
                Target {
                    namespace,
                    key: term,
                },
                &|| self.inner.count_term(namespace, index, term),
            )
            .await
    }

    async fn namespaces(&self) -> Result<Vec<String>> {
        self.policy
            .run(
                Op::Scan,
                Target {
                    namespace: "",
                    key: "",
                },
                &|| self.inner.namespaces(),
            )
            .await
    }

    async fn index_terms(
        &self,
        namespace: &str,
        keys: &[String],
    ) -> Result<Vec<Option<crate::backend::Terms>>> {
        self.policy
            .run(Op::Scan, Target { namespace, key: "" }, &|| {
                self.inner.index_terms(namespace, keys)
            })
            .await
    }

    async fn health(&self) -> Health {
        let mut health = self.inner.health().await;
        self.policy.report(&mut health);
        health
    }

    fn stats(&self) -> Stats {
        let mut stats = self.inner.stats();
        self.policy.stats(&mut stats);
        stats
    }
}
