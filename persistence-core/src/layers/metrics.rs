//! Calls, errors and time per operation, and a tracing span per call.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tracing::Instrument;

use super::{BoxFuture, Op, Policy, Target};
use crate::backend::{OperationStats, Stats};
use crate::error::Result;

#[derive(Debug, Default)]
struct Counters {
    calls: AtomicU64,
    errors: AtomicU64,
    unavailable: AtomicU64,
    total_ns: AtomicU64,
    max_ns: AtomicU64,
}

/// Counts every call by operation (calls, errors, unreachable errors, time)
/// and runs each inside a `tracing` span named `persistence` with the
/// operation, namespace and key, at DEBUG level (free when nothing listens).
/// The factory puts it outermost on every stack it builds, so the counts
/// are what callers saw; read them with [`Backend::stats`](crate::Backend::stats).
#[derive(Debug, Default)]
pub struct Metrics {
    operations: [Counters; Op::NAMES.len()],
}

impl Metrics {
    /// Counters at zero.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Policy for Metrics {
    fn name(&self) -> &'static str {
        "metrics"
    }

    fn may_repeat(&self) -> bool {
        false
    }

    fn run<'a, T: Send + 'a>(
        &'a self,
        op: Op,
        target: Target<'a>,
        call: &'a (dyn Fn() -> BoxFuture<'a, Result<T>> + Send + Sync),
    ) -> impl std::future::Future<Output = Result<T>> + Send + 'a {
        let span = tracing::debug_span!(
            "persistence",
            op = op.name(),
            namespace = target.namespace,
            key = target.key
        );
        async move {
            let started = Instant::now();
            let result = call().await;
            let c = &self.operations[op.index()];
            let ns = started.elapsed().as_nanos().min(u64::MAX as u128) as u64;
            c.calls.fetch_add(1, Ordering::Relaxed);
            c.total_ns.fetch_add(ns, Ordering::Relaxed);
            c.max_ns.fetch_max(ns, Ordering::Relaxed);
            if let Err(e) = &result {
                c.errors.fetch_add(1, Ordering::Relaxed);
                if e.is_retryable() {
                    c.unavailable.fetch_add(1, Ordering::Relaxed);
                }
                tracing::debug!(error = %e, "call failed");
            }
            result
        }
        .instrument(span)
    }

    fn stats(&self, stats: &mut Stats) {
        for (name, c) in Op::NAMES.iter().zip(&self.operations) {
            let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
            let mine = OperationStats {
                calls: load(&c.calls),
                errors: load(&c.errors),
                unavailable: load(&c.unavailable),
                total_ns: load(&c.total_ns),
                max_ns: load(&c.max_ns),
            };
            stats.operations.insert((*name).to_string(), mine);
        }
    }
}
