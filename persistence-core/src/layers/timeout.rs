//! A deadline per call.

use serde::Deserialize;

use super::{layer, LayerProvider};
use crate::backend::SharedBackend;
use crate::config::Settings;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::Duration;

use super::{BoxFuture, Op, Policy, Target};
use crate::error::{Error, Result};

/// Fails a call that takes longer than `after` with `Timeout` (the call's
/// future is dropped: a write may or may not have applied, as with any
/// lost reply). The clock starts before the call's first poll, so time a
/// call spent blocking its thread counts; a call that completes at once
/// (memory, a cache hit) never arms the timer.
#[derive(Debug)]
pub struct Timeout {
    after: Duration,
    expired: AtomicU64,
}

impl Timeout {
    /// A deadline of `after` per call.
    pub fn new(after: Duration) -> Self {
        Timeout {
            after,
            expired: AtomicU64::new(0),
        }
    }
}

impl Policy for Timeout {
    fn name(&self) -> &'static str {
        "timeout"
    }

    fn may_repeat(&self) -> bool {
        false
    }

    async fn run<'a, T: Send + 'a>(
        &'a self,
        op: Op,
        target: Target<'a>,
        call: &'a (dyn Fn() -> BoxFuture<'a, Result<T>> + Send + Sync),
    ) -> Result<T> {
        // the deadline counts from before the first poll, so a call whose
        // first poll blocks its thread has spent that time already
        let deadline = tokio::time::Instant::now() + self.after;
        let mut call = call();
        // no timer for a call that finishes on its first poll (memory,
        // a cache hit)
        if let Poll::Ready(result) =
            std::future::poll_fn(|cx| Poll::Ready(call.as_mut().poll(cx))).await
        {
            return result;
        }
        tokio::time::timeout_at(deadline, call)
            .await
            .unwrap_or_else(|_| {
                self.expired.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(
                    operation = op.name(),
                    namespace = target.namespace,
                    key = target.key,
                    after = ?self.after,
                    "call timed out"
                );
                Err(Error::Timeout {
                    operation: op.name().to_string(),
                    after: self.after,
                })
            })
    }

    fn report(&self, health: &mut crate::backend::Health) {
        health
            .details
            .insert("timeout_ms".into(), self.after.as_millis().to_string());
    }

    fn stats(&self, stats: &mut crate::backend::Stats) {
        stats.set("timeouts", self.expired.load(Ordering::Relaxed));
    }
}

/// `[timeout]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeoutSettings {
    /// Deadline per call in ms (default 2000, as seed 002).
    pub ms: u64,
}

impl Default for TimeoutSettings {
    fn default() -> Self {
        TimeoutSettings { ms: 2000 }
    }
}

/// Registers `timeout` (`[timeout]`).
#[derive(Debug, Clone, Copy, Default)]
pub struct TimeoutProvider;

impl LayerProvider for TimeoutProvider {
    fn name(&self) -> &'static str {
        "timeout"
    }

    fn check(&self, settings: &Settings) -> Result<()> {
        settings.table::<TimeoutSettings>(self.name()).map(drop)
    }

    fn wrap(&self, inner: SharedBackend, settings: &Settings) -> Result<SharedBackend> {
        let s: TimeoutSettings = settings.table(self.name())?;
        Ok(layer(inner, Timeout::new(Duration::from_millis(s.ms))))
    }
}
