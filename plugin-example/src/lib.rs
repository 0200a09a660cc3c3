//! An example plugin, built as a `cdylib` with the plugin SDK. It offers:
//!
//! - `json-dir`: a durable backend keeping each document in a file of its
//!   own under a directory (option `path`), written atomically (temporary
//!   file, fsync, rename, fsync of the directory). Each file is a one-line
//!   JSON header (version, creation stamp, expiry, index terms) followed by
//!   the document's bytes as they are. Indexes live in memory and are
//!   rebuilt from the files when the backend opens, so they never disagree
//!   with the documents on disk.
//! - `memory`: the core's in-memory backend, exported as a plugin (what the
//!   plugin-boundary benchmark measures).
//!
//! File IO runs on the plugin's blocking pool, never on the host's threads.
#![warn(missing_docs, missing_debug_implementations)]

mod json_dir;

use std::sync::Arc;

use persistence_plugin_sdk::{Backend, Capabilities, Error, MemoryBackend, Plugin, SharedBackend};

pub use json_dir::JsonDirBackend;

/// The example plugin.
#[derive(Debug)]
pub struct ExamplePlugin;

impl Plugin for ExamplePlugin {
    const NAME: &'static str = "plugin-example";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    fn backends() -> Vec<(&'static str, Capabilities)> {
        vec![
            ("json-dir", JsonDirBackend::CAPABILITIES),
            ("memory", MemoryBackend::new().capabilities()),
        ]
    }

    fn create(name: &str, config: &[u8]) -> Result<SharedBackend, Error> {
        let options: std::collections::BTreeMap<String, String> = if config.is_empty() {
            Default::default()
        } else {
            serde_json::from_slice(config).map_err(|e| Error::Config {
                key: "plugin.options".into(),
                value: String::from_utf8_lossy(config).into_owned(),
                reason: format!("expected a JSON object of strings: {e}"),
            })?
        };
        match name {
            "json-dir" => {
                let path = options.get("path").ok_or_else(|| Error::Config {
                    key: "plugin.options.path".into(),
                    value: String::new(),
                    reason: "json-dir needs the directory to keep documents in".into(),
                })?;
                let temporary = options.get("temporary").is_some_and(|v| v == "true");
                Ok(Arc::new(JsonDirBackend::open(path.into(), temporary)?))
            }
            "memory" => Ok(Arc::new(MemoryBackend::new())),
            other => Err(Error::Config {
                key: "plugin.class".into(),
                value: other.into(),
                reason: "plugin-example offers json-dir and memory".into(),
            }),
        }
    }
}

persistence_plugin_sdk::export_plugin!(ExamplePlugin);
