//! A [`Factory`] with every engine this repository builds: redb, sled,
//! Redis, plugins (and memory, which core always has), plus sled's spill
//! for the recovery queue. `ta-persist` and the Python binding open their
//! backends through it, so both choose engines the same way.
//!
//! ```
//! let factory = persistence_builtin::factory();
//! let names = factory.available();
//! assert!(names.contains(&"redb") && names.contains(&"redis"));
//! ```
#![warn(missing_docs)]

use std::sync::Arc;

use persistence_core::factory::Factory;

/// A factory with every built-in engine registered.
pub fn factory() -> Factory {
    let mut factory = Factory::new();
    factory.register(Arc::new(persistence_redb::RedbProvider));
    factory.register(Arc::new(persistence_sled::SledProvider));
    factory.register(Arc::new(persistence_redis::RedisProvider));
    factory.register(Arc::new(persistence_plugin::PluginProvider));
    factory.register_layer(persistence_sled::SledQueueSpill::recovery_queue());
    factory
}
