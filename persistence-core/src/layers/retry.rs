//! Retries with exponential backoff and jitter.

use serde::Deserialize;

use super::{layer, LayerProvider};
use crate::backend::SharedBackend;
use crate::config::Settings;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{BoxFuture, Op, Policy, Target};
use crate::error::Result;

/// Runs a call again when it failed with a retryable error (`Unavailable`,
/// `Timeout`) and the operation is safe to repeat ([`Op::safe_to_retry`]):
/// up to `max_retries` more times, waiting `base`, `base × factor`, ... (at
/// most `max_delay`), each wait shortened by a random jitter of up to half,
/// so that many clients do not retry in step. Seed defaults: 3 retries,
/// 1 s base, × 2.
#[derive(Debug)]
pub struct Retry {
    max_retries: u32,
    base: Duration,
    factor: f64,
    max_delay: Duration,
    retries: AtomicU64,
    seed: AtomicU64,
}

impl Retry {
    /// A retry policy.
    pub fn new(max_retries: u32, base: Duration, factor: f64, max_delay: Duration) -> Self {
        Retry {
            max_retries,
            base,
            factor: factor.max(1.0),
            max_delay,
            retries: AtomicU64::new(0),
            seed: AtomicU64::new(0x9e37_79b9_7f4a_7c15),
        }
    }

    /// The seed's defaults: 3 retries, 1 s, × 2, at most 30 s.
    pub fn seed_defaults() -> Self {
        Self::new(3, Duration::from_secs(1), 2.0, Duration::from_secs(30))
    }

    /// Retries made so far.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// The wait before retry number `attempt` (0-based), with jitter.
    fn delay(&self, attempt: u32) -> Duration {
        let full = self
            .base
            .mul_f64(self.factor.powi(attempt as i32))
            .min(self.max_delay);
        // xorshift: no shared RNG needed for jitter
        let mut x = self
            .seed
            .fetch_add(0x6a09_e667_f3bc_c909, Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let keep = 0.5 + (x % 1000) as f64 / 2000.0; // 50%..100%
        full.mul_f64(keep)
    }
}

impl Policy for Retry {
    fn name(&self) -> &'static str {
        "retry"
    }

    async fn run<'a, T: Send + 'a>(
        &'a self,
        op: Op,
        target: Target<'a>,
        call: &'a (dyn Fn() -> BoxFuture<'a, Result<T>> + Send + Sync),
    ) -> Result<T> {
        let mut attempt = 0;
        loop {
            match call().await {
                Err(e) if e.is_retryable() && op.safe_to_retry() && attempt < self.max_retries => {
                    tracing::debug!(
                        operation = op.name(),
                        namespace = target.namespace,
                        key = target.key,
                        attempt,
                        error = %e,
                        "retrying"
                    );
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(self.delay(attempt)).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    fn report(&self, health: &mut crate::backend::Health) {
        health
            .details
            .insert("retries".into(), self.retries().to_string());
    }

    fn stats(&self, stats: &mut crate::backend::Stats) {
        stats.set("retries", self.retries());
    }
}

/// `[retry]` (seed 002: 3 retries, 1 s base, × 2).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrySettings {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// First wait, ms.
    pub base_ms: u64,
    /// Growth of each wait.
    pub factor: f64,
    /// Longest wait, ms.
    pub max_delay_ms: u64,
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            max_retries: 3,
            base_ms: 1000,
            factor: 2.0,
            max_delay_ms: 30_000,
        }
    }
}

/// Registers `retry` (`[retry]`).
#[derive(Debug, Clone, Copy, Default)]
pub struct RetryProvider;

impl LayerProvider for RetryProvider {
    fn name(&self) -> &'static str {
        "retry"
    }

    fn check(&self, settings: &Settings) -> Result<()> {
        settings.table::<RetrySettings>(self.name()).map(drop)
    }

    fn wrap(&self, inner: SharedBackend, settings: &Settings) -> Result<SharedBackend> {
        let r: RetrySettings = settings.table(self.name())?;
        let retry = Retry::new(
            r.max_retries,
            Duration::from_millis(r.base_ms),
            r.factor,
            Duration::from_millis(r.max_delay_ms),
        );
        Ok(layer(inner, retry))
    }
}
