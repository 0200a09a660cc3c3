//! The Redis backend: shared state for many processes, in the Python
//! system's key layout so both can use one Redis.
//!
//! Every write is one Lua script (insert-if-absent, replace-if-present,
//! remove-if-present with their index changes and TTL), called with EVALSHA
//! and loaded on NOSCRIPT, so there is no check-then-set race and no gap
//! between a write and its `PEXPIRE`. Reads are plain commands (a `GET`, or
//! one `MULTI`/`EXEC` when the version and TTLs are wanted too), and the
//! script only where metadata needs repair. The connection is a tokio
//! [`ConnectionManager`](redis::aio::ConnectionManager): multiplexed, it
//! pipelines concurrent calls and reconnects by itself; concurrent plain
//! commands share writes to its socket (`coalesce`). Key layout:
//! [`layout`] and `docs/redis.md`.
#![warn(missing_docs, missing_debug_implementations)]

mod backend;
mod calls;
mod cluster;
mod coalesce;
mod conn;
pub mod layout;
mod options;
mod queue;
mod reads;
mod scripts;
mod settings;
mod slots;
mod stream_appends;
mod streams;

pub use backend::RedisBackend;
pub use layout::Layout;
pub use options::RedisOptions;
pub use queue::{RedisQueue, MAX_BLOCKED};
pub use settings::{RedisProvider, RedisSettings, SEED_VARIABLES};
pub use streams::{RedisStreams, MAX_WATCHERS};
