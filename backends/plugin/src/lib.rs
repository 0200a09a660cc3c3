//! The plugin host: a [`Backend`] living in a `cdylib` loaded at run time,
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

pub use call::PluginBackend;
pub use library::PluginLibrary;

use std::sync::Arc;

use async_trait::async_trait;
use persistence_core::config::Settings;
use persistence_core::factory::BackendProvider;
use persistence_core::{Error, Result, SharedBackend};

/// Opens the plugin backend from the `[plugin]` settings.
#[derive(Debug, Clone, Copy, Default)]
pub struct PluginProvider;

#[async_trait]
impl BackendProvider for PluginProvider {
    fn name(&self) -> &'static str {
        "plugin"
    }

    async fn open(&self, settings: &Settings) -> Result<SharedBackend> {
        let p = &settings.plugin;
        let module = p.module.as_ref().ok_or_else(|| Error::Config {
            key: "plugin.module (TA_PERSISTENCE_MODULE)".into(),
            value: String::new(),
            reason: "the plugin backend needs the path of the plugin library".into(),
        })?;
        let library = PluginLibrary::load(module, p.sha256.as_deref())?;
        let config = serde_json::to_vec(&p.options).expect("string maps encode");
        Ok(Arc::new(library.create(p.class.as_deref(), &config)?))
    }
}
