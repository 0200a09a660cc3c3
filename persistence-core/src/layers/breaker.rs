//! A circuit breaker: closed, open, half-open.

use serde::Deserialize;

use super::{layer, LayerProvider};
use crate::backend::SharedBackend;
use crate::config::Settings;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::{BoxFuture, Op, Policy, Target};
use crate::backend::{Health, HealthStatus, Stats};
use crate::error::{Error, Result};

/// Where the breaker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through; consecutive failures are counted.
    Closed,
    /// Calls fail at once with `Unavailable` until the reset timeout.
    Open,
    /// One probe call is let through: success closes, failure reopens.
    HalfOpen,
}

#[derive(Debug)]
struct Inner {
    state: BreakerState,
    failures: u32,
    opened_at: Option<Instant>,
    /// How long this opening lasts before a probe: the first probe wait,
    /// doubled by every failed probe, at most `reset_after`.
    wait: Duration,
    probing: bool,
    opened: u64,
    closed: u64,
    rejected: u64,
}

/// Opens after `failures_to_open` consecutive failures that mean the
/// backend is unreachable (`Unavailable`, `Timeout`; other errors prove it
/// answers), fails calls fast while open, and then lets one probe through
/// (half-open): its success closes the circuit, its failure opens it again.
/// The first probe comes after `first_probe` (1 s unless set), each failed
/// probe doubles the wait, up to `reset_after` (the seed's 300 s): a short
/// outage costs seconds, a long one costs one probe per `reset_after`.
/// Seed defaults: 3 failures, 300 s.
#[derive(Debug)]
pub struct CircuitBreaker {
    failures_to_open: u32,
    reset_after: Duration,
    first_probe: Duration,
    inner: Mutex<Inner>,
    /// True while closed with no failures counted: calls then pass and
    /// successes record without taking the lock.
    healthy: std::sync::atomic::AtomicBool,
}

impl CircuitBreaker {
    /// A closed breaker probing first after 1 s (or `reset_after`, if shorter).
    pub fn new(failures_to_open: u32, reset_after: Duration) -> Self {
        CircuitBreaker {
            failures_to_open: failures_to_open.max(1),
            reset_after,
            first_probe: Duration::from_secs(1),
            inner: Mutex::new(Inner {
                state: BreakerState::Closed,
                failures: 0,
                opened_at: None,
                wait: Duration::ZERO,
                probing: false,
                opened: 0,
                closed: 0,
                rejected: 0,
            }),
            healthy: std::sync::atomic::AtomicBool::new(true),
        }
    }

    /// Probes first after `first_probe` once open (doubling from there).
    pub fn with_first_probe(mut self, first_probe: Duration) -> Self {
        self.first_probe = first_probe;
        self
    }

    /// How long the current opening lasts before its probe.
    pub fn current_wait(&self) -> Duration {
        self.inner.lock().wait
    }

    /// The current state.
    pub fn state(&self) -> BreakerState {
        self.inner.lock().state
    }

    /// How many times it opened, and closed again.
    pub fn transitions(&self) -> (u64, u64) {
        let i = self.inner.lock();
        (i.opened, i.closed)
    }

    /// Whether a call may go through now (and claims the probe if half-open).
    fn admit(&self) -> std::result::Result<(), Duration> {
        if self.healthy.load(std::sync::atomic::Ordering::Acquire) {
            return Ok(());
        }
        let mut i = self.inner.lock();
        match i.state {
            BreakerState::Closed => Ok(()),
            BreakerState::Open => {
                let since = i.opened_at.map_or(Duration::ZERO, |t| t.elapsed());
                if since >= i.wait {
                    i.state = BreakerState::HalfOpen;
                    i.probing = true;
                    Ok(())
                } else {
                    i.rejected += 1;
                    Err(i.wait - since)
                }
            }
            BreakerState::HalfOpen if !i.probing => {
                i.probing = true;
                Ok(())
            }
            BreakerState::HalfOpen => {
                i.rejected += 1;
                Err(Duration::ZERO)
            }
        }
    }

    fn record(&self, unreachable: bool) {
        if !unreachable && self.healthy.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        let mut i = self.inner.lock();
        let was = i.state;
        i.probing = false;
        if unreachable {
            i.failures += 1;
            if was == BreakerState::HalfOpen || i.failures >= self.failures_to_open {
                i.wait = match was {
                    // a failed probe: wait twice as long, at most reset_after
                    BreakerState::HalfOpen => (i.wait * 2).min(self.reset_after),
                    BreakerState::Closed => self.first_probe.min(self.reset_after),
                    BreakerState::Open => i.wait,
                };
                if was != BreakerState::Open {
                    i.opened += 1;
                    tracing::warn!(
                        failures = i.failures,
                        "circuit breaker opened: failing calls fast, next probe in {:?}",
                        i.wait
                    );
                }
                i.state = BreakerState::Open;
                i.opened_at = Some(Instant::now());
            }
        } else {
            if was != BreakerState::Closed {
                i.closed += 1;
                tracing::info!("circuit breaker closed: the backend answers again");
            }
            i.state = BreakerState::Closed;
            i.failures = 0;
        }
        let healthy = i.state == BreakerState::Closed && i.failures == 0;
        self.healthy
            .store(healthy, std::sync::atomic::Ordering::Release);
    }
}

impl Policy for CircuitBreaker {
    fn name(&self) -> &'static str {
        "circuit_breaker"
    }

    fn may_repeat(&self) -> bool {
        false
    }

    async fn run<'a, T: Send + 'a>(
        &'a self,
        op: Op,
        _target: Target<'a>,
        call: &'a (dyn Fn() -> BoxFuture<'a, Result<T>> + Send + Sync),
    ) -> Result<T> {
        if let Err(wait) = self.admit() {
            return Err(Error::Unavailable {
                    backend: "circuit breaker".into(),
                    reason: format!("the circuit is open after repeated failures; {} fails fast for another {wait:?}", op.name()),
                });
        }
        let result = call().await;
        self.record(result.as_ref().is_err_and(|e| e.is_retryable()));
        result
    }

    fn report(&self, health: &mut Health) {
        let i = self.inner.lock();
        let state = match i.state {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        };
        health.details.insert("breaker_state".into(), state.into());
        health
            .details
            .insert("breaker_failures".into(), i.failures.to_string());
        health
            .details
            .insert("breaker_opened".into(), i.opened.to_string());
        health
            .details
            .insert("breaker_closed".into(), i.closed.to_string());
        health
            .details
            .insert("breaker_rejected".into(), i.rejected.to_string());
        if i.state == BreakerState::Open && health.status == HealthStatus::Ok {
            health.status = HealthStatus::Degraded;
        }
    }

    fn stats(&self, stats: &mut Stats) {
        let i = self.inner.lock();
        stats.set("breaker_open", u64::from(i.state != BreakerState::Closed));
        stats.set("breaker_failures", u64::from(i.failures));
        stats.set("breaker_opened", i.opened);
        stats.set("breaker_closed", i.closed);
        stats.set("breaker_rejected", i.rejected);
    }
}

/// `[circuit_breaker]` (seed 002: opens after 3 failures, probes after 300 s).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerSettings {
    /// Consecutive failures that open the circuit.
    pub failures: u32,
    /// Longest time open before a probe, ms (the wait doubles up to it).
    pub reset_ms: u64,
    /// Time open before the first probe, ms (default 1000; at most `reset_ms`).
    pub first_probe_ms: u64,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            failures: 3,
            reset_ms: 300_000,
            first_probe_ms: 1_000,
        }
    }
}

/// Registers `circuit_breaker` (`[circuit_breaker]`).
#[derive(Debug, Clone, Copy, Default)]
pub struct CircuitBreakerProvider;

impl LayerProvider for CircuitBreakerProvider {
    fn name(&self) -> &'static str {
        "circuit_breaker"
    }

    fn check(&self, settings: &Settings) -> Result<()> {
        settings.table::<BreakerSettings>(self.name()).map(drop)
    }

    fn wrap(&self, inner: SharedBackend, settings: &Settings) -> Result<SharedBackend> {
        let b: BreakerSettings = settings.table(self.name())?;
        let breaker = CircuitBreaker::new(b.failures, Duration::from_millis(b.reset_ms))
            .with_first_probe(Duration::from_millis(b.first_probe_ms));
        Ok(layer(inner, breaker))
    }
}
