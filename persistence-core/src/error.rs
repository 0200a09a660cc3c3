//! The one error type every backend and layer returns.

use std::time::Duration;

use crate::version::Version;

/// What kind of failure an [`Error`] is: stable across backends and across the
/// plugin boundary, for matching and for deciding whether a retry can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The key does not exist (or has expired).
    NotFound,
    /// The key exists and the write required that it does not.
    AlreadyExists,
    /// The stored version is not the expected one.
    Conflict,
    /// The backend cannot be reached or refused to serve; a retry may help.
    Unavailable,
    /// The operation did not finish in time; a retry may help.
    Timeout,
    /// Stored bytes cannot be decoded; they are kept where they are.
    Corrupted,
    /// Configuration is wrong or names something this build does not have.
    Config,
    /// The backend does not offer the capability the call needs.
    Unsupported,
    /// A plugin library failed to load or misbehaved.
    Plugin,
    /// The request itself is invalid (for example an impossible precondition).
    InvalidInput,
    /// A bug or an unexpected state inside a backend.
    Internal,
    /// The event stream is closed: its run ended, nothing more is appended.
    Closed,
    /// Events a reader asked for were removed by retention before it got
    /// them; the error says which offset it missed.
    Missed,
    /// A run-queue call used a lease that is no longer the job's (it
    /// expired and the job went to another worker, or the job ended).
    LeaseLost,
}

/// A failure of a backend operation.
///
/// Every variant names what failed (namespace and key, setting, backend) and
/// carries the detail of the cause as text, so errors can be cloned, sent
/// across the plugin boundary, and still read well. Secrets never appear here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// See [`ErrorKind::NotFound`].
    #[error("{namespace}/{key:?} does not exist")]
    NotFound {
        /// Namespace of the key.
        namespace: String,
        /// The key.
        key: String,
    },
    /// See [`ErrorKind::AlreadyExists`].
    #[error("{namespace}/{key:?} already exists")]
    AlreadyExists {
        /// Namespace of the key.
        namespace: String,
        /// The key.
        key: String,
    },
    /// See [`ErrorKind::Conflict`].
    #[error("version conflict on {namespace}/{key:?}: expected {expected}, found {actual}")]
    Conflict {
        /// Namespace of the key.
        namespace: String,
        /// The key.
        key: String,
        /// The version the caller expected.
        expected: Version,
        /// The version that is stored.
        actual: Version,
    },
    /// See [`ErrorKind::Unavailable`].
    #[error("backend {backend} is unavailable: {reason}")]
    Unavailable {
        /// Backend name.
        backend: String,
        /// What went wrong, with the underlying error's text.
        reason: String,
    },
    /// See [`ErrorKind::Timeout`].
    #[error("{operation} timed out after {after:?}")]
    Timeout {
        /// The operation that ran out of time.
        operation: String,
        /// The deadline it had.
        after: Duration,
    },
    /// See [`ErrorKind::Corrupted`].
    #[error("corrupted document at {namespace}/{key:?} ({len} bytes, kept in place for inspection): {reason}")]
    Corrupted {
        /// Namespace of the key.
        namespace: String,
        /// The key whose bytes cannot be decoded.
        key: String,
        /// Why decoding failed.
        reason: String,
        /// Size of the stored bytes.
        len: usize,
    },
    /// See [`ErrorKind::Config`].
    #[error("invalid configuration {key} = {value:?}: {reason}")]
    Config {
        /// The setting, with where it came from (`redis.port (TA_REDIS_PORT)`).
        key: String,
        /// The value it had (never a secret: secrets are shown as `***`).
        value: String,
        /// What is wrong and what is expected.
        reason: String,
    },
    /// See [`ErrorKind::Unsupported`].
    #[error("backend {backend} does not support {capability}")]
    Unsupported {
        /// Backend name.
        backend: String,
        /// The missing capability.
        capability: String,
    },
    /// See [`ErrorKind::Plugin`].
    #[error("plugin {plugin}: {message}")]
    Plugin {
        /// Plugin library or name.
        plugin: String,
        /// What went wrong.
        message: String,
    },
    /// See [`ErrorKind::InvalidInput`].
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// See [`ErrorKind::Internal`].
    #[error("internal error in {backend}: {message}")]
    Internal {
        /// Backend name.
        backend: String,
        /// What went wrong.
        message: String,
    },
    /// See [`ErrorKind::Closed`].
    #[error("event stream {stream:?} is closed ({reason}): nothing more can be appended")]
    StreamClosed {
        /// The stream.
        stream: String,
        /// The reason it was closed with.
        reason: String,
    },
    /// See [`ErrorKind::Missed`].
    #[error("event stream {stream:?}: the events after {after} were removed by retention (the oldest kept is {oldest}); the reader missed them")]
    EventsMissed {
        /// The stream.
        stream: String,
        /// The offset the reader had reached.
        after: String,
        /// The oldest offset still kept.
        oldest: String,
    },
    /// See [`ErrorKind::LeaseLost`].
    #[error("lease {token} on job {job:?} is lost: {reason}")]
    LeaseLost {
        /// The job.
        job: String,
        /// The stale lease's fencing token.
        token: u64,
        /// What happened to it.
        reason: String,
    },
}

impl Error {
    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::AlreadyExists { .. } => ErrorKind::AlreadyExists,
            Error::Conflict { .. } => ErrorKind::Conflict,
            Error::Unavailable { .. } => ErrorKind::Unavailable,
            Error::Timeout { .. } => ErrorKind::Timeout,
            Error::Corrupted { .. } => ErrorKind::Corrupted,
            Error::Config { .. } => ErrorKind::Config,
            Error::Unsupported { .. } => ErrorKind::Unsupported,
            Error::Plugin { .. } => ErrorKind::Plugin,
            Error::InvalidInput(_) => ErrorKind::InvalidInput,
            Error::Internal { .. } => ErrorKind::Internal,
            Error::StreamClosed { .. } => ErrorKind::Closed,
            Error::EventsMissed { .. } => ErrorKind::Missed,
            Error::LeaseLost { .. } => ErrorKind::LeaseLost,
        }
    }

    /// Whether retrying the same call later can succeed (the failure is
    /// temporary: unavailable or timed out).
    pub fn is_retryable(&self) -> bool {
        matches!(self.kind(), ErrorKind::Unavailable | ErrorKind::Timeout)
    }

    pub(crate) fn not_found(namespace: &str, key: &str) -> Self {
        Error::NotFound {
            namespace: namespace.into(),
            key: key.into(),
        }
    }

    pub(crate) fn already_exists(namespace: &str, key: &str) -> Self {
        Error::AlreadyExists {
            namespace: namespace.into(),
            key: key.into(),
        }
    }
}

/// Result of a backend operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;
