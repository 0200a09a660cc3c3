//! Write a storage backend for the agent-state persistence framework as a
//! plugin: implement the ordinary async [`Backend`] trait, describe it with
//! [`Plugin`], add [`export_plugin!`], and build the crate as a `cdylib`.
//! `docs/writing-a-plugin.md` walks through it.
//!
//! This crate is a plugin's only dependency on the framework: it exports
//! the contract and every type in its signatures, the errors, the plugin
//! description, and (with the `testing` feature) the conformance suite to
//! test a backend with before it ever crosses the ABI.
//!
//! The SDK catches every panic at every exported function, runs your
//! backend on the plugin's own tokio runtime, and never blocks the host's
//! threads while your backend waits.
//!
//! ```
//! use persistence_plugin_sdk::{
//!     Backend, Capabilities, Error, MemoryBackend, Plugin, SharedBackend,
//! };
//!
//! #[derive(Debug)]
//! struct Example;
//!
//! impl Plugin for Example {
//!     const NAME: &'static str = "example";
//!     const VERSION: &'static str = "0.1.0";
//!     fn backends() -> Vec<(&'static str, Capabilities)> {
//!         vec![("memory", MemoryBackend::new().capabilities())]
//!     }
//!     fn create(_name: &str, _config: &[u8]) -> Result<SharedBackend, Error> {
//!         Ok(std::sync::Arc::new(MemoryBackend::new()))
//!     }
//! }
//!
//! persistence_plugin_sdk::export_plugin!(Example);
//! ```
#![warn(missing_docs, missing_debug_implementations)]

pub mod abi;
pub mod codec;
pub mod export;

pub use export::Plugin;

/// The contract a backend implements, and the types in its signatures.
pub use persistence_core::backend::{
    Backend, BackendExt, Capabilities, Document, DocumentWrite, Health, HealthStatus, IndexTerm,
    OperationStats, Precondition, Put, Remove, ScanOrder, ScanPage, ScanRequest, Stats, Version,
};
/// Errors: what every call returns on failure.
pub use persistence_core::{Error, ErrorKind, Result, SharedBackend};

/// The in-memory reference backend, to delegate to or compare against.
pub use persistence_core::memory::MemoryBackend;

/// `#[async_trait]`, which implementing [`Backend`] needs.
pub use async_trait::async_trait;
/// The byte buffer documents are held in.
pub use bytes::Bytes;

/// The conformance suite (feature `testing`): run it on your backend in
/// your own tests, before it crosses the ABI, with
/// `persistence_plugin_sdk::testing::conformance_tests!(|| async { ... })`
/// (needs `tokio` with the `macros` and `rt-multi-thread` features among
/// your dev-dependencies), and through the ABI with
/// `ta-persist conformance --module`.
#[cfg(feature = "testing")]
pub mod testing {
    pub use persistence_conformance::*;
}
