//! Settings: an optional TOML file overlaid by environment variables.
//!
//! Precedence, lowest first: defaults, the TOML file (`TA_PERSISTENCE_CONFIG`,
//! else `config/default.toml` if present), `TA_PERSISTENCE__TABLE__KEY`
//! variables, then the seed's names (core's [`SEED_VARIABLES`], and the
//! [`SeedVariable`]s each backend or layer registers: `TA_REDIS_HOST`,
//! `TA_PERSISTENCE_MODULE`...). Core parses its own settings; every other
//! table belongs to the backend or layer of that name, which parses it with
//! [`Settings::table`]. Every bad value is an
//! [`Error::Config`](crate::Error::Config) naming the setting, where it came
//! from and the value.

mod load;
mod secret;
mod settings;

pub use load::{
    config_file, TableOwner, CONFIG_PATH_VAR, DEFAULT_CONFIG_PATH, ENV_PREFIX, SEED_VARIABLES,
};
pub use secret::Secret;
pub use settings::{
    FallbackPolicy, LayerList, QueueSettings, QueueTiming, SeedVariable, Settings, StreamsSettings,
    TaskStoreSettings,
};
