//! Settings: an optional TOML file overlaid by environment variables.
//!
//! Precedence, lowest first: defaults, the TOML file (`TA_PERSISTENCE_CONFIG`,
//! else `config/default.toml` if present), `TA_PERSISTENCE__SECTION__KEY`
//! variables, then the seed's names (`TA_REDIS_HOST`, `TA_PERSISTENCE_MODULE`,
//! ... see [`SEED_VARIABLES`]). Every bad value is an
//! [`Error::Config`](crate::Error::Config) naming the setting, where it came
//! from and the value.

mod load;
mod secret;
mod settings;

pub use load::{CONFIG_PATH_VAR, DEFAULT_CONFIG_PATH, ENV_PREFIX, SEED_VARIABLES};
pub use secret::Secret;
pub use settings::{
    BreakerSettings, CacheSettings, FallbackPolicy, LayerList, PluginSettings, RecoverySettings,
    RedisSettings, RetrySettings, Settings, SledSettings, TaskStoreSettings, TimeoutSettings,
    KNOWN_BACKENDS, KNOWN_LAYERS,
};
