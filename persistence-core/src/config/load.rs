//! Reading settings: an optional TOML file overlaid by `TA_*` variables.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use config::{ConfigError, File, FileFormat};
use serde::de::DeserializeOwned;

use super::settings::{describe, is_secret, Origins, SeedVariable, Settings, Tables};
use crate::error::{Error, Result};

/// Variable naming the TOML file to read.
pub const CONFIG_PATH_VAR: &str = "TA_PERSISTENCE_CONFIG";

/// File read when [`CONFIG_PATH_VAR`] is not set, if it exists.
pub const DEFAULT_CONFIG_PATH: &str = "config/default.toml";

/// Prefix of the generic variables: `TA_PERSISTENCE__REDIS__PREFIX=x` sets
/// `redis.prefix`; `__` separates levels.
pub const ENV_PREFIX: &str = "TA_PERSISTENCE__";

/// Core's own seed variables (single underscores) and the setting each
/// sets. Backends and layers name theirs when they register.
pub const SEED_VARIABLES: [(&str, &str); 8] = [
    ("TA_PERSISTENCE_BACKEND", "backend"),
    ("TA_PERSISTENCE_FALLBACK", "fallback"),
    ("TA_TASK_TTL", "task_store.ttl_seconds"),
    // seed 003's agent server
    ("STREAMING_BACKEND", "streams.engine"),
    ("WORKER_HEARTBEAT_INTERVAL", "queue.heartbeat_interval_secs"),
    ("WORKER_HEARTBEAT_TTL", "queue.heartbeat_ttl_secs"),
    ("SWEEPER_INTERVAL", "queue.sweeper_interval_secs"),
    ("TA_QUEUE_PENDING_TIMEOUT", "queue.pending_timeout_secs"),
];

/// Core's own top-level settings.
const CORE_KEYS: [&str; 6] = [
    "backend",
    "fallback",
    "layers",
    "task_store",
    "streams",
    "queue",
];

/// A table the loader accepts besides core's: its name and the seed
/// variables that set its keys.
#[derive(Debug, Clone, Copy)]
pub struct TableOwner<'a> {
    /// The table (`redis`), which is also the owner's name.
    pub table: &'a str,
    /// Its seed variables (`TA_REDIS_HOST` -> `host`).
    pub seeds: &'a [SeedVariable],
}

/// The file the environment names: `TA_PERSISTENCE_CONFIG` (the last one
/// given wins, so appended overrides beat the environment), else
/// `config/default.toml` if it exists.
pub fn config_file(env: &[(String, String)]) -> Option<PathBuf> {
    match env
        .iter()
        .rev()
        .find(|(k, v)| k == CONFIG_PATH_VAR && !v.is_empty())
    {
        Some((_, path)) => Some(PathBuf::from(path)),
        None => Some(PathBuf::from(DEFAULT_CONFIG_PATH)).filter(|p| p.is_file()),
    }
}

impl Settings {
    /// Reads settings from `file` (TOML, must exist if given) overlaid by
    /// the variables in `env`, accepting core's settings and the tables of
    /// `owners`. Variables outside these names are ignored; empty values
    /// count as unset. Each owner parses and checks its own table
    /// afterwards ([`Settings::table`]); the factory does this for its
    /// registered backends and layers.
    pub fn from_sources(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        owners: &[TableOwner<'_>],
    ) -> Result<Settings> {
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
        let env: BTreeMap<String, String> = env.into_iter().collect();
        for owner in owners {
            for seed in owner.seeds.iter().filter(|s| s.empty_is_error) {
                if env.get(seed.name).is_some_and(|v| v.trim().is_empty()) {
                    return Err(Error::Config {
                        key: format!("{}.{} ({})", owner.table, seed.key, seed.name),
                        value: env[seed.name].clone(),
                        reason: "set but empty: unset it, or give a value (empty would turn it off silently)".into(),
                    });
                }
            }
        }
        let env: BTreeMap<String, String> =
            env.into_iter().filter(|(_, v)| !v.is_empty()).collect();
        let generic = env.iter().filter_map(|(name, value)| {
            let path = name.strip_prefix(ENV_PREFIX)?;
            Some((path.to_lowercase().replace("__", "."), name, value))
        });
        let core_seeds = SEED_VARIABLES
            .iter()
            .map(|(name, key)| (*name, key.to_string()));
        let owner_seeds = owners.iter().flat_map(|o| {
            o.seeds
                .iter()
                .map(move |s| (s.name, format!("{}.{}", o.table, s.key)))
        });
        let seed = core_seeds
            .chain(owner_seeds)
            .filter_map(|(name, key)| Some((key, env.get_key_value(name)?)))
            .map(|(key, (name, value))| (key, name, value));
        for (key, name, value) in generic.collect::<Vec<_>>().into_iter().chain(seed) {
            builder = builder
                .set_override(key.as_str(), value.as_str())
                .map_err(|e| config_error(e, &origins, file))?;
            origins.insert(key, (name.clone(), value.clone()));
        }
        let tree = builder
            .build()
            .map_err(|e| config_error(e, &origins, file))?;
        let mut settings = Settings::with_tables(Tables {
            tree,
            origins,
            file: file.map(Path::to_path_buf),
        });
        settings.check_top_level(owners)?;
        let backend: Option<String> = settings.parse("backend")?;
        settings.fallback = settings.table("fallback")?;
        settings.task_store = settings.table("task_store")?;
        settings.streams = settings.table("streams")?;
        settings.queue = settings.table("queue")?;
        if let Err(Error::Config { key, value, reason }) =
            settings.queue.options().and(settings.queue.timing())
        {
            return Err(settings.invalid(&key, &value, &reason));
        }
        settings.layers = settings.table("layers")?;
        settings.backend = match backend {
            Some(backend) => backend,
            None => settings.implied_backend(owners, &env)?,
        };
        Ok(settings)
    }

    /// `key` parsed as `T`, or `None` when it is not set.
    fn parse<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        match self.tree().get::<T>(key) {
            Ok(v) => Ok(Some(v)),
            Err(ConfigError::NotFound(_)) => Ok(None),
            Err(e) => Err(self.error(e)),
        }
    }

    /// Every top-level key is core's or a registered owner's table.
    fn check_top_level(&self, owners: &[TableOwner<'_>]) -> Result<()> {
        let top = config::Source::collect(self.tree()).map_err(|e| self.error(e))?;
        let tables: BTreeSet<&str> = owners.iter().map(|o| o.table).collect();
        for key in top.keys() {
            if !CORE_KEYS.contains(&key.as_str()) && !tables.contains(key.as_str()) {
                return Err(self.invalid(
                    key,
                    "",
                    &format!(
                        "unknown setting: expected {}, or a table of a registered backend or layer ({})",
                        CORE_KEYS.join(", "),
                        tables.into_iter().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    /// With no `backend` given, a seed variable that selects one (the
    /// seed's `TA_PERSISTENCE_MODULE` alone meant "the custom backend")
    /// chooses it; else memory.
    fn implied_backend(
        &mut self,
        owners: &[TableOwner<'_>],
        env: &BTreeMap<String, String>,
    ) -> Result<String> {
        for owner in owners {
            for seed in owner.seeds.iter().filter(|s| s.selects_backend) {
                let key = format!("{}.{}", owner.table, seed.key);
                if env.contains_key(seed.name) || self.is_set(&key) {
                    let origin = format!("implied by {}", seed.name);
                    self.note_origin("backend", origin, owner.table);
                    return Ok(owner.table.to_string());
                }
            }
        }
        Ok("memory".into())
    }
}

/// The typed error for an error of the `config` crate, naming the setting,
/// where its value came from and the value (masked when secret).
pub(super) fn config_error(e: ConfigError, origins: &Origins, file: Option<&Path>) -> Error {
    let (key, error) = match e {
        ConfigError::At { error, key, .. } => (key, *error),
        other => (None, other),
    };
    let raw = |key: &str, fallback: String| {
        if is_secret(key) {
            "***".to_string()
        } else {
            origins.get(key).map_or(fallback, |(_, raw)| raw.clone())
        }
    };
    match error {
        ConfigError::Type {
            unexpected,
            expected,
            key: inner,
            ..
        } => {
            let key = inner.or(key).unwrap_or_default();
            let value = raw(&key, unexpected.to_string());
            // unsigned settings (ports, seconds, sizes) refuse a minus sign
            let reason = if value.trim_start().starts_with('-') && expected.contains("integer") {
                "expected a whole number of zero or more".to_string()
            } else {
                format!("expected {expected}")
            };
            Error::Config {
                key: describe(&key, origins, file),
                value,
                reason,
            }
        }
        ConfigError::FileParse { uri, cause } => Error::Config {
            key: CONFIG_PATH_VAR.into(),
            value: file
                .map(|f| f.display().to_string())
                .or(uri)
                .unwrap_or_default(),
            reason: format!("not valid TOML: {}", without_excerpt(&cause.to_string())),
        },
        other => match key {
            Some(key) => {
                // serde names an unknown key in its message only: make it the key
                let reason = other.to_string();
                let key = match reason
                    .strip_prefix("unknown field `")
                    .and_then(|r| r.split_once('`'))
                {
                    Some((field, _)) => format!("{key}.{field}"),
                    None => key,
                };
                Error::Config {
                    key: describe(&key, origins, file),
                    value: raw(&key, String::new()),
                    reason,
                }
            }
            None => Error::Config {
                key: "settings".into(),
                value: String::new(),
                reason: other.to_string(),
            },
        },
    }
}

/// A parse error's text without the excerpt of the file it quotes (the
/// line may hold a password): `TOML parse error at line 2, column 20;
/// invalid basic string, expected `"``.
fn without_excerpt(text: &str) -> String {
    let is_excerpt = |line: &str| {
        let t = line.trim_start();
        let digits = t.trim_start_matches(|c: char| c.is_ascii_digit());
        t.is_empty() || digits.trim_start().starts_with('|')
    };
    text.lines()
        .filter(|l| !is_excerpt(l))
        .collect::<Vec<_>>()
        .join("; ")
}
