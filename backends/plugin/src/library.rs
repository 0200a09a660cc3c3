//! Loading and checking a plugin library.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use parking_lot::Mutex;
use persistence_core::backend::Capabilities;
use persistence_core::{Error, Result};
use persistence_plugin_sdk::abi::{
    capabilities_from_bits, PluginDescriptor, RStr, ABI_MAJOR, ENTRY_SYMBOL,
};
use sha2::{Digest, Sha256};

/// A loaded, checked plugin library. Loading the same path again returns
/// the same library.
#[derive(Debug)]
pub struct PluginLibrary {
    pub(crate) descriptor: &'static PluginDescriptor,
    path: PathBuf,
    pub(crate) name: String,
    version: String,
    pub(crate) backends: Vec<(String, Capabilities)>,
}

fn plugin_error(path: &Path, message: impl Into<String>) -> Error {
    Error::Plugin {
        plugin: path.display().to_string(),
        message: message.into(),
    }
}

/// Libraries already loaded, by canonical path: loaded once, never unloaded.
static LOADED: LazyLock<Mutex<HashMap<PathBuf, Arc<PluginLibrary>>>> =
    LazyLock::new(Default::default);

/// Reads a descriptor string.
///
/// # Safety
/// `s` must be a valid slice of the loaded library.
unsafe fn text(path: &Path, s: RStr, what: &str) -> Result<String> {
    // SAFETY: per the caller
    let bytes = unsafe { s.as_bytes() };
    String::from_utf8(bytes.to_vec())
        .map_err(|_| plugin_error(path, format!("its {what} is not UTF-8")))
}

impl PluginLibrary {
    /// Loads the library at `path`, refusing it if `sha256` is given and
    /// does not match, or if it is not a plugin of this host's ABI.
    pub fn load(path: &Path, sha256: Option<&str>) -> Result<Arc<PluginLibrary>> {
        if !path.is_file() {
            return Err(Error::Config {
                key: "plugin.module (TA_PERSISTENCE_MODULE)".into(),
                value: path.display().to_string(),
                reason: "no such file: give the path of the plugin's shared library".into(),
            });
        }
        let canonical = path
            .canonicalize()
            .map_err(|e| plugin_error(path, e.to_string()))?;
        if let Some(expected) = sha256 {
            let bytes = std::fs::read(&canonical)
                .map_err(|e| plugin_error(path, format!("cannot read: {e}")))?;
            let actual: String = Sha256::digest(&bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            if !actual.eq_ignore_ascii_case(expected) {
                return Err(plugin_error(
                    path,
                    format!("refusing to load: its SHA-256 is {actual}, TA_PERSISTENCE_MODULE_SHA256 pins {expected}"),
                ));
            }
        }
        let mut loaded = LOADED.lock();
        if let Some(lib) = loaded.get(&canonical) {
            return Ok(lib.clone());
        }
        // SAFETY: loading runs the library's initializers; that is what
        // loading a plugin means, and the hash pin exists to restrict it.
        let library = unsafe { libloading::Library::new(&canonical) }
            .map_err(|e| plugin_error(path, format!("not a loadable shared library: {e}")))?;
        // never unloaded: see the crate documentation
        let library: &'static libloading::Library = Box::leak(Box::new(library));
        // SAFETY: the symbol's type is the ABI's entry point type
        let entry = unsafe { library.get::<unsafe extern "C" fn() -> *const PluginDescriptor>(ENTRY_SYMBOL.as_bytes()) }
            .map_err(|_| {
                plugin_error(path, format!("does not export `{ENTRY_SYMBOL}`: not a plugin for this host (build it with persistence-plugin-sdk's export_plugin!)"))
            })?;
        // SAFETY: calling the entry point takes no arguments
        let descriptor = unsafe { entry() };
        if descriptor.is_null() {
            return Err(plugin_error(path, "its entry point returned no descriptor"));
        }
        // SAFETY: a non-null descriptor lives as long as the library (forever);
        // the version fields come first in every ABI version.
        let descriptor: &'static PluginDescriptor = unsafe { &*descriptor };
        if descriptor.abi_major != ABI_MAJOR {
            return Err(plugin_error(
                path,
                format!(
                    "it speaks plugin ABI {}.{}, this host speaks {ABI_MAJOR}.x: rebuild it against this host's persistence-plugin-sdk",
                    descriptor.abi_major, descriptor.abi_minor
                ),
            ));
        }
        if descriptor.size < std::mem::size_of::<PluginDescriptor>() {
            return Err(plugin_error(
                path,
                format!(
                    "its descriptor is {} bytes, ABI {ABI_MAJOR} needs {}",
                    descriptor.size,
                    std::mem::size_of::<PluginDescriptor>()
                ),
            ));
        }
        // SAFETY: the descriptor's strings and table belong to the library
        let (name, version) = unsafe {
            (
                text(path, descriptor.name, "name")?,
                text(path, descriptor.version, "version")?,
            )
        };
        let mut backends = Vec::with_capacity(descriptor.backend_count);
        for i in 0..descriptor.backend_count {
            // SAFETY: `backends` points to `backend_count` entries
            let info = unsafe { *descriptor.backends.add(i) };
            // SAFETY: as above
            let backend = unsafe { text(path, info.name, "backend name")? };
            backends.push((backend, capabilities_from_bits(info.capabilities)));
        }
        let lib = Arc::new(PluginLibrary {
            descriptor,
            path: canonical.clone(),
            name,
            version,
            backends,
        });
        loaded.insert(canonical, lib.clone());
        Ok(lib)
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The plugin's version.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The backends it offers and what each declares.
    pub fn backends(&self) -> &[(String, Capabilities)] {
        &self.backends
    }

    /// Where it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
