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

/// Longest name or version a descriptor may carry.
const MAX_TEXT: usize = 4096;

/// Most backends one plugin may offer.
const MAX_BACKENDS: usize = 256;

/// Reads a descriptor string, refusing a null pointer with a length, an
/// absurd length, or bytes that are not UTF-8.
///
/// # Safety
/// A non-null `s` of a sane length must be a valid slice of the library.
unsafe fn text(path: &Path, s: RStr, what: &str) -> Result<String> {
    if s.len > MAX_TEXT {
        return Err(plugin_error(
            path,
            format!("its {what} claims {} bytes (at most {MAX_TEXT})", s.len),
        ));
    }
    if s.ptr.is_null() && s.len > 0 {
        return Err(plugin_error(path, format!("its {what} is a null pointer")));
    }
    // SAFETY: per the caller, now that null and absurd lengths are refused
    let bytes = unsafe { s.as_bytes() };
    String::from_utf8(bytes.to_vec())
        .map_err(|_| plugin_error(path, format!("its {what} is not UTF-8")))
}

/// The file's bytes, read once, and their SHA-256 in hex.
fn read_and_hash(path: &Path) -> Result<(Vec<u8>, String)> {
    let bytes = std::fs::read(path).map_err(|e| plugin_error(path, format!("cannot read: {e}")))?;
    let hash = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((bytes, hash))
}

/// `bytes` in a sealed in-memory file (no write, grow or shrink, ever), and
/// the path that opens exactly them: what was hashed is what is loaded,
/// whatever happens to the file on disk meanwhile.
#[cfg(target_os = "linux")]
fn sealed_copy(path: &Path, bytes: &[u8]) -> Result<(std::fs::File, PathBuf)> {
    use std::io::Write;
    use std::os::fd::{AsRawFd, FromRawFd};
    let fail = |what: &str| {
        plugin_error(
            path,
            format!(
                "cannot make a sealed copy to load ({what}: {})",
                std::io::Error::last_os_error()
            ),
        )
    };
    // SAFETY: a static C string and valid flags; the fd is owned below
    let fd = unsafe {
        libc::memfd_create(
            c"ta-persistence-plugin".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        )
    };
    if fd < 0 {
        return Err(fail("memfd_create"));
    }
    // SAFETY: a fresh fd this function owns
    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
    file.write_all(bytes)
        .map_err(|e| plugin_error(path, format!("cannot copy: {e}")))?;
    let seals = libc::F_SEAL_WRITE | libc::F_SEAL_GROW | libc::F_SEAL_SHRINK | libc::F_SEAL_SEAL;
    // SAFETY: a valid fd and a valid command
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
        return Err(fail("sealing"));
    }
    let at = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
    Ok((file, at))
}

/// Elsewhere there is no sealed file: refuse a pin rather than pretend.
#[cfg(not(target_os = "linux"))]
fn sealed_copy(path: &Path, _bytes: &[u8]) -> Result<(std::fs::File, PathBuf)> {
    Err(plugin_error(
        path,
        "a SHA-256 pin needs a sealed in-memory copy to load, which this platform lacks",
    ))
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
        // A pinned library is loaded from a sealed copy of the bytes that
        // were hashed, and known by its hash; an unpinned one by its path.
        let (key, sealed) = match sha256 {
            Some(expected) => {
                let (bytes, actual) = read_and_hash(&canonical)?;
                if !actual.eq_ignore_ascii_case(expected) {
                    return Err(plugin_error(
                        path,
                        format!("refusing to load: its SHA-256 is {actual}, TA_PERSISTENCE_MODULE_SHA256 pins {expected}"),
                    ));
                }
                (PathBuf::from(format!("sha256:{actual}")), Some(bytes))
            }
            None => (canonical.clone(), None),
        };
        let mut loaded = LOADED.lock();
        if let Some(lib) = loaded.get(&key) {
            return Ok(lib.clone());
        }
        let library = match &sealed {
            Some(bytes) => {
                let (copy, at) = sealed_copy(path, bytes)?;
                // SAFETY: loading runs the library's initializers; these are
                // the bytes the pin allows
                let library = unsafe { libloading::Library::new(&at) };
                drop(copy); // the loader holds its own mapping
                library
            }
            // SAFETY: loading runs the library's initializers; that is what
            // loading a plugin means without a pin
            None => unsafe { libloading::Library::new(&canonical) },
        }
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
        if descriptor.backend_count > MAX_BACKENDS {
            return Err(plugin_error(
                path,
                format!(
                    "it claims {} backends (at most {MAX_BACKENDS})",
                    descriptor.backend_count
                ),
            ));
        }
        if descriptor.backends.is_null() && descriptor.backend_count > 0 {
            return Err(plugin_error(path, "its backend table is a null pointer"));
        }
        let mut backends = Vec::with_capacity(descriptor.backend_count);
        for i in 0..descriptor.backend_count {
            // SAFETY: `backends` points to `backend_count` entries
            let info = unsafe { *descriptor.backends.add(i) };
            // SAFETY: as above
            let backend = unsafe { text(path, info.name, "backend name")? };
            let mut caps = capabilities_from_bits(info.capabilities);
            // bits a plugin built before ABI 1.1 cannot mean
            caps.time_order &= descriptor.abi_minor >= 1;
            caps.transactions &= descriptor.abi_minor >= 2;
            backends.push((backend, caps));
        }
        let lib = Arc::new(PluginLibrary {
            descriptor,
            path: canonical.clone(),
            name,
            version,
            backends,
        });
        loaded.insert(key, lib.clone());
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
