//! Core of the agent-state persistence framework.
//!
//! - [`model`]: `AgentTask` and friends, wire-compatible with the Python system.
//! - [`backend`]: the [`Backend`] contract every storage engine implements.
//! - [`memory`]: the in-memory backend (default and fallback).
//! - [`queue`]: the run queue contract (leases, fencing, retries), memory engine and worker.
//! - [`store`]: typed stores on top of any backend, starting with [`TaskStore`].
//! - [`config`] and [`factory`]: settings from a TOML file and `TA_*`
//!   variables, and the backend they choose.
#![warn(missing_docs, missing_debug_implementations)]

pub mod backend;
pub mod config;
mod error;
pub mod factory;
pub mod layers;
pub mod memory;
pub mod model;
pub mod queue;
pub mod store;
pub mod streams;
mod version;
pub mod wire;

pub use backend::{Backend, BackendExt, SharedBackend};
pub use error::{Error, ErrorKind, Result};
pub use store::{TaskStore, TaskStoreError};
