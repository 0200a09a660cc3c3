//! Reading settings: an optional TOML file overlaid by `TA_*` variables.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use config::{ConfigError, File, FileFormat};

use super::settings::{Settings, KNOWN_BACKENDS, KNOWN_LAYERS};
use crate::error::{Error, Result};

/// Variable naming the TOML file to read.
pub const CONFIG_PATH_VAR: &str = "TA_PERSISTENCE_CONFIG";

/// File read when [`CONFIG_PATH_VAR`] is not set, if it exists.
pub const DEFAULT_CONFIG_PATH: &str = "config/default.toml";

/// Prefix of the generic variables: `TA_PERSISTENCE__REDIS__PREFIX=x` sets
/// `redis.prefix`; `__` separates levels.
pub const ENV_PREFIX: &str = "TA_PERSISTENCE__";

/// The seed's variable names (single underscores) and the setting each sets.
/// They are applied after the generic `TA_PERSISTENCE__*` variables.
pub const SEED_VARIABLES: [(&str, &str); 14] = [
    ("TA_PERSISTENCE_BACKEND", "backend"),
    ("TA_PERSISTENCE_FALLBACK", "fallback"),
    ("TA_PERSISTENCE_MODULE", "plugin.module"),
    ("TA_PERSISTENCE_CLASS", "plugin.class"),
    ("TA_PERSISTENCE_MODULE_SHA256", "plugin.sha256"),
    ("TA_REDIS_URL", "redis.url"),
    ("TA_REDIS_HOST", "redis.host"),
    ("TA_REDIS_PORT", "redis.port"),
    ("TA_REDIS_DB", "redis.db"),
    ("TA_REDIS_TTL", "redis.ttl"),
    ("TA_REDIS_PWD", "redis.password"),
    ("TA_REDIS_SSL", "redis.ssl"),
    ("TA_SLED_PATH", "sled.path"),
    ("TA_TASK_TTL", "task_store.ttl_seconds"),
];

/// Settings whose values are secret and never shown in errors.
const SECRET_KEYS: [&str; 2] = ["redis.password", "redis.url"];

impl Settings {
    /// Reads the settings of this process: the file named by
    /// `TA_PERSISTENCE_CONFIG` (an error if it is missing), else
    /// `config/default.toml` if it exists, overlaid by the environment.
    pub fn load() -> Result<Settings> {
        Settings::load_from_env(std::env::vars())
    }

    /// [`Settings::load`] with `env` in place of the process environment
    /// (a tool adds its command-line overrides this way).
    pub fn load_from_env(env: impl IntoIterator<Item = (String, String)>) -> Result<Settings> {
        let env: Vec<(String, String)> = env.into_iter().collect();
        // the last occurrence wins, so appended overrides beat the environment
        let file = match env
            .iter()
            .rev()
            .find(|(k, v)| k == CONFIG_PATH_VAR && !v.is_empty())
        {
            Some((_, path)) => Some(PathBuf::from(path)),
            None => Some(PathBuf::from(DEFAULT_CONFIG_PATH)).filter(|p| p.is_file()),
        };
        Settings::from_sources(file.as_deref(), env)
    }

    /// Reads settings from `file` (TOML, must exist if given) overlaid by the
    /// variables in `env`. Variables outside this library's names are
    /// ignored; empty values count as unset.
    ///
    /// ```
    /// # use persistence_core::config::Settings;
    /// let env = [("TA_REDIS_PORT".to_string(), "abc".to_string())];
    /// let err = Settings::from_sources(None, env).unwrap_err();
    /// assert_eq!(
    ///     err.to_string(),
    ///     "invalid configuration redis.port (TA_REDIS_PORT) = \"abc\": expected an integer"
    /// );
    /// ```
    pub fn from_sources(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings> {
        // setting -> (variable that set it, its raw value)
        let mut origins = Origins::new();
        let mut builder = config::Config::builder();
        if let Some(path) = file {
            if !path.is_file() {
                return Err(Error::Config {
                    key: CONFIG_PATH_VAR.into(),
                    value: path.display().to_string(),
                    reason: "no such file".into(),
                });
            }
            builder = builder.add_source(File::from(path).format(FileFormat::Toml));
        }
        let env: BTreeMap<String, String> =
            env.into_iter().filter(|(_, v)| !v.is_empty()).collect();
        let generic = env.iter().filter_map(|(name, value)| {
            let path = name.strip_prefix(ENV_PREFIX)?;
            Some((path.to_lowercase().replace("__", "."), name, value))
        });
        let seed = SEED_VARIABLES
            .iter()
            .filter_map(|(name, key)| Some((key.to_string(), env.get_key_value(*name)?)))
            .map(|(key, (name, value))| (key, name, value));
        for (key, name, value) in generic.collect::<Vec<_>>().into_iter().chain(seed) {
            builder = builder
                .set_override(key.as_str(), value.as_str())
                .map_err(|e| config_error(e, &origins, file))?;
            origins.insert(key, (name.clone(), value.clone()));
        }
        let config = builder
            .build()
            .map_err(|e| config_error(e, &origins, file))?;
        let backend_given = config.get_string("backend").is_ok();
        let mut settings: Settings = config
            .try_deserialize()
            .map_err(|e| config_error(e, &origins, file))?;
        // The seed chose a custom backend by naming its module alone.
        if !backend_given && settings.plugin.module.is_some() {
            settings.backend = "plugin".into();
            origins.insert(
                "backend".into(),
                ("implied by TA_PERSISTENCE_MODULE".into(), "plugin".into()),
            );
        }
        settings.validate(&|key| describe(key, &origins, file))?;
        Ok(settings)
    }

    fn validate(&self, describe: &dyn Fn(&str) -> String) -> Result<()> {
        let bad = |key: &str, value: &str, reason: &str| Error::Config {
            key: describe(key),
            value: value.into(),
            reason: reason.into(),
        };
        if !KNOWN_BACKENDS.contains(&self.backend.as_str()) {
            return Err(bad(
                "backend",
                &self.backend,
                &format!(
                    "unknown backend: expected one of {}",
                    KNOWN_BACKENDS.join(", ")
                ),
            ));
        }
        if self.backend == "plugin" {
            let Some(module) = &self.plugin.module else {
                return Err(bad(
                    "plugin.module",
                    "",
                    "the plugin backend needs the path of the plugin library",
                ));
            };
            if !module.is_file() {
                return Err(bad(
                    "plugin.module",
                    &module.display().to_string(),
                    "no such file: give the path of the plugin's shared library",
                ));
            }
        }
        for name in &self.layers.0 {
            if !KNOWN_LAYERS.contains(&name.as_str()) {
                let reason = match name.as_str() {
                    "cache" => format!(
                        "the {name} layer is not available in this build yet; available: {}",
                        KNOWN_LAYERS.join(", ")
                    ),
                    _ => format!(
                        "unknown layer: expected some of {}",
                        KNOWN_LAYERS.join(", ")
                    ),
                };
                return Err(bad("layers", name, &reason));
            }
        }
        if let Some(hash) = &self.plugin.sha256 {
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad("plugin.sha256", hash, "expected 64 hexadecimal digits"));
            }
        }
        Ok(())
    }
}

/// Where each setting set by a variable came from: setting -> (variable, raw value).
type Origins = BTreeMap<String, (String, String)>;

/// `redis.port (TA_REDIS_PORT)`, `redis.port (in config/x.toml)` or `redis.port`.
fn describe(key: &str, origins: &Origins, file: Option<&Path>) -> String {
    match (origins.get(key), file) {
        (Some((origin, _)), _) => format!("{key} ({origin})"),
        (None, Some(file)) => format!("{key} (in {})", file.display()),
        (None, None) => key.to_string(),
    }
}

fn config_error(e: ConfigError, origins: &Origins, file: Option<&Path>) -> Error {
    let (key, error) = match e {
        ConfigError::At { error, key, .. } => (key, *error),
        other => (None, other),
    };
    match error {
        ConfigError::Type {
            unexpected,
            expected,
            key: inner,
            ..
        } => {
            let key = inner.or(key).unwrap_or_default();
            let value = if SECRET_KEYS.contains(&key.as_str()) {
                "***".to_string()
            } else if let Some((_, raw)) = origins.get(&key) {
                raw.clone()
            } else {
                unexpected.to_string()
            };
            Error::Config {
                key: describe(&key, origins, file),
                value,
                reason: format!("expected {expected}"),
            }
        }
        ConfigError::FileParse { uri, cause } => Error::Config {
            key: CONFIG_PATH_VAR.into(),
            value: uri.unwrap_or_default(),
            reason: format!("not valid TOML: {cause}"),
        },
        other => Error::Config {
            key: key
                .map(|k| describe(&k, origins, file))
                .unwrap_or_else(|| "settings".into()),
            value: String::new(),
            reason: other.to_string(),
        },
    }
}
