//! Write a storage backend for the agent-state persistence framework as a
//! plugin: implement the ordinary async [`Backend`](persistence_core::Backend)
//! trait, describe it with [`Plugin`], add [`export_plugin!`], and build the
//! crate as a `cdylib`. `docs/writing-a-plugin.md` walks through it.
//!
//! The SDK catches every panic at every exported function, runs your
//! backend on the plugin's own tokio runtime, and never blocks the host's
//! threads while your backend waits.
#![warn(missing_docs, missing_debug_implementations)]

pub mod abi;
pub mod codec;
pub mod export;

pub use export::Plugin;
pub use persistence_core;
