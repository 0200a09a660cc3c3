//! The plugin host: a [`Backend`](persistence_core::Backend) living in a `cdylib` loaded at run time,
//! named by `TA_PERSISTENCE_MODULE` (and `TA_PERSISTENCE_CLASS` when it
//! offers several backends). `docs/plugin-abi.md` describes the ABI.
//!
//! Every way a library can be wrong is a typed error: missing file, not a
//! library, no entry symbol, another ABI version, an unknown class, a failing
//! start, a hash that does not match `TA_PERSISTENCE_MODULE_SHA256`. A panic
//! inside the plugin comes back as an error of that call; the host goes on.
//! A loaded library is never unloaded (unloading Rust code with thread-local
//! destructors is unsound), so it stays for the life of the process.
#![warn(missing_docs, missing_debug_implementations)]

mod call;
mod library;
mod settings;

pub use call::{ignored_answers, PluginBackend, DEFAULT_CALL_TIMEOUT, MAX_ANSWER};
pub use library::PluginLibrary;
pub use settings::{PluginProvider, PluginSettings, SEED_VARIABLES};
