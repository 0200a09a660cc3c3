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

use std::time::Duration;

use crate::{PluginLibrary, ProcessIsolation};

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
    /// Where the plugin's code runs: `none` (loaded into this process, the
    /// default) or `process` (a runner process of its own, restarted when
    /// it dies).
    pub isolation: Isolation,
    /// The runner binary for `isolation = "process"`; by default
    /// `ta-persist-plugin-runner` beside this program, or on `PATH`.
    pub runner: Option<PathBuf>,
}

/// Where a plugin's code runs (`plugin.isolation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    /// Loaded into the host process: the fastest, and a plugin that
    /// aborts or corrupts memory takes the host with it.
    #[default]
    None,
    /// In a runner process of its own, over a Unix socket: a plugin that
    /// aborts or segfaults ends only its runner.
    Process,
}

impl<'de> Deserialize<'de> for Isolation {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let value = String::deserialize(d)?;
        match value.trim() {
            "none" => Ok(Isolation::None),
            "process" => Ok(Isolation::Process),
            _ => Err(serde::de::Error::custom(format!(
                "{value:?} is not an isolation: expected \"none\" (in this process) or \"process\" (a runner process)"
            ))),
        }
    }
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
            if p.isolation == Isolation::Process {
                p.runner(settings)?;
            }
        }
        Ok(p)
    }

    /// The runner binary for process isolation: `runner` when given (an
    /// existing file), else `ta-persist-plugin-runner` beside this program
    /// (or one folder up, as cargo lays out test binaries), else on `PATH`.
    pub fn runner(&self, settings: &Settings) -> Result<PathBuf> {
        if let Some(runner) = &self.runner {
            if !runner.is_file() {
                return Err(settings.invalid(
                    "plugin.runner",
                    &runner.display().to_string(),
                    "no such file: give the path of the ta-persist-plugin-runner binary",
                ));
            }
            return Ok(runner.clone());
        }
        let beside = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(std::path::Path::to_path_buf));
        let mut places: Vec<PathBuf> = Vec::new();
        if let Some(dir) = &beside {
            places.push(dir.clone());
            places.extend(dir.parent().map(std::path::Path::to_path_buf));
        }
        places.extend(
            std::env::var_os("PATH")
                .iter()
                .flat_map(std::env::split_paths),
        );
        places
            .iter()
            .map(|dir| dir.join(crate::RUNNER_BINARY))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                settings.invalid(
                    "plugin.runner",
                    "",
                    &format!(
                        "isolation = \"process\" needs the {} binary, and there is none beside \
                         this program ({}) or on PATH: build it (cargo build -p persistence-plugin) \
                         and give its path",
                        crate::RUNNER_BINARY,
                        beside.map_or_else(|| "?".into(), |d| d.display().to_string())
                    ),
                )
            })
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
        let config = serde_json::to_vec(&p.options).expect("string maps encode");
        let call_timeout = p.call_timeout_ms.map_or(crate::DEFAULT_CALL_TIMEOUT, |ms| {
            Duration::from_millis(ms.max(1))
        });
        let module = p.module(settings)?;
        let backend = match p.isolation {
            Isolation::None => PluginLibrary::load(module, p.sha256.as_deref())?
                .create(p.class.as_deref(), &config)?
                .with_call_timeout(call_timeout),
            Isolation::Process => {
                ProcessIsolation {
                    runner: p.runner(settings)?,
                    module: module.to_path_buf(),
                    sha256: p.sha256.clone(),
                    class: p.class.clone(),
                    config,
                    call_timeout,
                }
                .open()
                .await?
            }
        };
        Ok(Arc::new(backend))
    }
}
