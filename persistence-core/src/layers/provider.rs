//! How a layer registers with the factory: its name, its table, and how it
//! wraps a backend.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;

use crate::backend::SharedBackend;
use crate::config::{SeedVariable, Settings};
use crate::error::Result;

/// Builds one kind of layer from its table (`[retry]` for `retry`). A layer
/// file defines its settings type, its layer, and its provider; adding a
/// layer to [`builtin`] (or registering it with
/// [`Factory::register_layer`](crate::factory::Factory::register_layer))
/// makes `layers = ["<name>"]` choose it.
#[async_trait]
pub trait LayerProvider: Send + Sync + Debug {
    /// The name `layers = [...]` lists it by, and the name of its table.
    fn name(&self) -> &'static str;

    /// The seed's variables for this layer's table.
    fn seed_variables(&self) -> &'static [SeedVariable] {
        &[]
    }

    /// Parses and checks this layer's table (called whenever settings are
    /// loaded, listed or not).
    fn check(&self, settings: &Settings) -> Result<()>;

    /// `inner` wrapped in this layer (call inside a tokio runtime: some
    /// layers start background work).
    fn wrap(&self, inner: SharedBackend, settings: &Settings) -> Result<SharedBackend>;

    /// Runs once the whole stack is built, with the stack (the cache tier
    /// preloads through it).
    async fn prepare(&self, stack: &SharedBackend, settings: &Settings) -> Result<()> {
        let _ = (stack, settings);
        Ok(())
    }
}

/// The layers every factory knows, one line each.
pub fn builtin() -> Vec<Arc<dyn LayerProvider>> {
    vec![
        Arc::new(super::timeout::TimeoutProvider),
        Arc::new(super::retry::RetryProvider),
        Arc::new(super::breaker::CircuitBreakerProvider),
        Arc::new(super::recovery::RecoveryQueueProvider::default()),
        Arc::new(super::cache::CacheProvider),
    ]
}
