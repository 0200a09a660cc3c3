//! The plugin host: a [`Backend`](persistence_core::Backend) living in a `cdylib` loaded at run time,
//! named by `TA_PERSISTENCE_MODULE` (and `TA_PERSISTENCE_CLASS` when it
//! offers several backends). `docs/plugin-abi.md` describes the ABI.
//!
//! Every way a library can be wrong is a typed error: missing file, not a
//! library, no entry symbol, another ABI version, an unknown class, a failing
//! start, a hash that does not match `TA_PERSISTENCE_MODULE_SHA256`. A panic
//! inside the plugin comes back as an error of that call; the host goes on.
//! With `plugin.isolation = "process"` the library runs in a runner
//! process of its own instead ([`ProcessIsolation`]): a plugin that aborts
//! or corrupts memory ends only its runner, which is started again.
//! A loaded library is never unloaded (unloading Rust code with thread-local
//! destructors is unsound), so it stays for the life of the process.
#![warn(missing_docs, missing_debug_implementations)]

mod call;
mod library;
mod process;
pub mod runner;
mod settings;

pub use call::{ignored_answers, PluginBackend, BLOCKING_CALL, DEFAULT_CALL_TIMEOUT, MAX_ANSWER};
pub use library::PluginLibrary;
pub use process::{
    ProcessIsolation, FIRST_BACKOFF, MAX_BACKOFF, MAX_QUEUED_BYTES, OPEN_TIMEOUT, RUNNER_BINARY,
};
pub use settings::{Isolation, PluginProvider, PluginSettings, SEED_VARIABLES};
