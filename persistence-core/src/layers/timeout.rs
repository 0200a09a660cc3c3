//! A deadline per call.

use std::time::Duration;

use super::{BoxFuture, Op, Policy};
use crate::error::{Error, Result};

/// Fails a call that takes longer than `after` with `Timeout` (the call's
/// future is dropped: a write may or may not have applied, as with any
/// lost reply).
#[derive(Debug, Clone, Copy)]
pub struct Timeout {
    after: Duration,
}

impl Timeout {
    /// A deadline of `after` per call.
    pub fn new(after: Duration) -> Self {
        Timeout { after }
    }
}

impl Policy for Timeout {
    fn name(&self) -> &'static str {
        "timeout"
    }

    fn run<'a, T: Send + 'a>(
        &'a self,
        op: Op,
        call: &'a (dyn Fn() -> BoxFuture<'a, Result<T>> + Send + Sync),
    ) -> BoxFuture<'a, Result<T>> {
        Box::pin(async move {
            tokio::time::timeout(self.after, call())
                .await
                .unwrap_or_else(|_| {
                    Err(Error::Timeout {
                        operation: op.name().to_string(),
                        after: self.after,
                    })
                })
        })
    }

    fn report(&self, health: &mut crate::backend::Health) {
        health
            .details
            .insert("timeout_ms".into(), self.after.as_millis().to_string());
    }
}
