//! The plugin libraries the tests load, built if needed.

pub use persistence_conformance::plugin_library as library;
