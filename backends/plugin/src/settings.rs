//! The `[plugin]` table, the seed's `TA_PERSISTENCE_MODULE`, `_CLASS` and
//! `_MODULE_SHA256`, and the provider that registers the plugin host.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use persistence_core::config::{SeedVariable, Settings};
use persistence_core::factory::BackendProvider;
use persistence_core::{Result, SharedBackend};
use serde::Deserialize;

use crate::PluginLibrary;

/// `[plugin]` (`TA_PERSISTENCE_MODULE`, `TA_PERSISTENCE_CLASS`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginSettings {
    /// Path of the plugin library.
    pub module: Option<PathBuf>,
    /// Backend name inside the plugin (optional when it offers one).
    pub class: Option<String>,
    /// Expected SHA-256 of the library, hex (`TA_PERSISTENCE_MODULE_SHA256`).
    pub sha256: Option<String>,
    /// Options for the plugin's backend (`[plugin.options]`,
    /// `TA_PERSISTENCE__PLUGIN__OPTIONS__NAME`), passed to it as a JSON object.
    pub options: BTreeMap<String, String>,
    /// Longest wait for one answer of the plugin, in ms (default 30000);
    /// past it the call fails with `Timeout`.
    pub call_timeout_ms: Option<u64>,
}

/// The seed's variables for `[plugin]`. `TA_PERSISTENCE_MODULE` alone
/// chooses the plugin backend, as the seed's factory did.
pub const SEED_VARIABLES: &[SeedVariable] = &[
    SeedVariable::selecting("TA_PERSISTENCE_MODULE", "module"),
    SeedVariable::new("TA_PERSISTENCE_CLASS", "class"),
    SeedVariable::never_empty("TA_PERSISTENCE_MODULE_SHA256", "sha256"),
];

impl PluginSettings {
    /// Parses `[plugin]` and checks it: a pin is 64 hex digits, and when
    /// the plugin backend is chosen, `module` names an existing file.
    pub fn from_settings(settings: &Settings) -> Result<Self> {
        let p: PluginSettings = settings.table("plugin")?;
        if let Some(hash) = &p.sha256 {
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(settings.invalid(
                    "plugin.sha256",
                    hash,
                    "expected 64 hexadecimal digits",
                ));
            }
        }
        if settings.backend == "plugin" {
            p.module(settings)?;
        }
        Ok(p)
    }

    /// The plugin library's path, checked: given, an existing file (not a
    /// directory), and a shared library (an ELF header, on Linux).
    pub fn module(&self, settings: &Settings) -> Result<&std::path::Path> {
        let Some(module) = &self.module else {
            return Err(settings.invalid(
                "plugin.module",
                "",
                "the plugin backend needs the path of the plugin library",
            ));
        };
        let shown = module.display().to_string();
        if module.is_dir() {
            return Err(settings.invalid(
                "plugin.module",
                &shown,
                "is a directory: give the path of the plugin's shared library file",
            ));
        }
        if !module.is_file() {
            return Err(settings.invalid(
                "plugin.module",
                &shown,
                "no such file: give the path of the plugin's shared library",
            ));
        }
        if !looks_like_a_library(module) {
            return Err(settings.invalid(
                "plugin.module",
                &shown,
                "not a shared library (no ELF header): give the path of the plugin's .so",
            ));
        }
        Ok(module)
    }
}

/// Whether `path` starts as this platform's shared libraries do (ELF on
/// Linux; elsewhere the loader alone decides).
fn looks_like_a_library(path: &std::path::Path) -> bool {
    if !cfg!(target_os = "linux") {
        return true;
    }
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
        .is_ok_and(|()| magic == *b"\x7fELF")
}

/// Opens the plugin backend from the `[plugin]` settings.
#[derive(Debug, Clone, Copy, Default)]
pub struct PluginProvider;

#[async_trait]
impl BackendProvider for PluginProvider {
    fn name(&self) -> &'static str {
        "plugin"
    }

    fn seed_variables(&self) -> &'static [SeedVariable] {
        SEED_VARIABLES
    }

    fn check(&self, settings: &Settings) -> Result<()> {
        PluginSettings::from_settings(settings).map(drop)
    }

    async fn open(&self, settings: &Settings) -> Result<SharedBackend> {
        let p = PluginSettings::from_settings(settings)?;
        let library = PluginLibrary::load(p.module(settings)?, p.sha256.as_deref())?;
        let config = serde_json::to_vec(&p.options).expect("string maps encode");
        let backend = library.create(p.class.as_deref(), &config)?;
        Ok(Arc::new(match p.call_timeout_ms {
            Some(ms) => backend.with_call_timeout(std::time::Duration::from_millis(ms.max(1))),
            None => backend,
        }))
    }
}
