//! Counters a backend stack keeps while it runs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What a backend stack has counted since it opened, read with
/// [`Backend::stats`](super::Backend::stats). Every layer adds its own:
/// the metrics layer counts calls per operation; retry, circuit breaker,
/// recovery queue and cache add named counters. A bare backend reports
/// nothing.
///
/// Counters are per process and start at zero when the stack is built.
///
/// ```
/// use persistence_core::backend::{Backend, Stats};
/// use persistence_core::layers::{layer, Metrics};
/// use persistence_core::memory::MemoryBackend;
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let stack = layer(std::sync::Arc::new(MemoryBackend::new()), Metrics::new());
/// stack.get("task", "missing").await.unwrap();
/// let stats: Stats = stack.stats();
/// assert_eq!(stats.operations["get"].calls, 1);
/// assert_eq!(stats.operations["get"].errors, 0);
/// # });
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Calls by operation (`get`, `put`, `remove`, `lookup`, `scan`,
    /// `count`), as the metrics layer saw them. Empty without that layer.
    pub operations: BTreeMap<String, OperationStats>,
    /// Named counters and gauges from the layers: `retries`,
    /// `breaker_opened`, `breaker_closed`, `breaker_rejected`, `breaker_open`
    /// (1 while open or half-open), `queue_depth`, `queue_accepted`,
    /// `queue_replayed`, `queue_dropped`, `queue_full`, `cache_hits`,
    /// `cache_misses`, `cache_entries`, `cache_evictions`, `timeouts`.
    pub counters: BTreeMap<String, u64>,
}

impl Stats {
    /// Sets counter `name`.
    pub fn set(&mut self, name: &str, value: u64) {
        self.counters.insert(name.to_string(), value);
    }

    /// The counter `name`, 0 when no layer reports it.
    pub fn counter(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }
}

/// Calls of one operation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct OperationStats {
    /// Calls made.
    pub calls: u64,
    /// Calls that returned an error of any kind (`NotFound` and
    /// `AlreadyExists` included: they are answers the caller sees).
    pub errors: u64,
    /// Of the errors, those meaning the backend could not be reached or did
    /// not answer in time (`Unavailable`, `Timeout`).
    pub unavailable: u64,
    /// Time spent in all calls, in nanoseconds.
    pub total_ns: u64,
    /// The longest call, in nanoseconds.
    pub max_ns: u64,
}

impl OperationStats {
    /// Mean time per call, in microseconds (0 with no calls).
    pub fn mean_us(&self) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            self.total_ns as f64 / self.calls as f64 / 1_000.0
        }
    }

    /// The longest call, in microseconds.
    pub fn max_us(&self) -> f64 {
        self.max_ns as f64 / 1_000.0
    }
}
