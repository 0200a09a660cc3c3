//! Writes to several keys applied all-or-nothing:
//! [`Backend::transact`](super::Backend::transact).

use std::collections::HashSet;

use super::{DocumentWrite, Precondition, Version};
use crate::error::{Error, Result};

/// Most writes one transaction may hold.
pub const MAX_TRANSACTION_WRITES: usize = 1024;

/// One write of a transaction: a put or a removal of one key, with its
/// precondition, in any namespace (Dapr's state-store `multi`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxWrite {
    /// Stores `write` at `(namespace, key)` if `precondition` holds.
    Put {
        /// The namespace.
        namespace: String,
        /// The key.
        key: String,
        /// The bytes, terms and TTL, as for [`put`](super::Backend::put).
        write: DocumentWrite,
        /// What must hold for the whole transaction to apply.
        precondition: Precondition,
    },
    /// Removes `(namespace, key)` if `precondition` holds.
    Remove {
        /// The namespace.
        namespace: String,
        /// The key.
        key: String,
        /// What must hold for the whole transaction to apply (not `Absent`).
        precondition: Precondition,
    },
}

impl TxWrite {
    /// A put of `write` at `key` under `precondition`.
    pub fn put(
        namespace: impl Into<String>,
        key: impl Into<String>,
        write: DocumentWrite,
        precondition: Precondition,
    ) -> Self {
        TxWrite::Put {
            namespace: namespace.into(),
            key: key.into(),
            write,
            precondition,
        }
    }

    /// A removal of `key` under `precondition`.
    pub fn remove(
        namespace: impl Into<String>,
        key: impl Into<String>,
        precondition: Precondition,
    ) -> Self {
        TxWrite::Remove {
            namespace: namespace.into(),
            key: key.into(),
            precondition,
        }
    }

    /// The `(namespace, key)` written.
    pub fn target(&self) -> (&str, &str) {
        match self {
            TxWrite::Put { namespace, key, .. } | TxWrite::Remove { namespace, key, .. } => {
                (namespace, key)
            }
        }
    }

    /// The precondition.
    pub fn precondition(&self) -> Precondition {
        match self {
            TxWrite::Put { precondition, .. } | TxWrite::Remove { precondition, .. } => {
                *precondition
            }
        }
    }
}

/// What one write of an applied transaction did, in the order given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxOutcome {
    /// A put stored this version.
    Put(Version),
    /// A removal removed a document (`false`: none was there, with `Any`).
    Removed(bool),
}

/// Checks a transaction before any engine runs it: at most
/// [`MAX_TRANSACTION_WRITES`] writes, each key written once, no removal
/// under `Absent` (`InvalidInput` otherwise). Engines call it first.
pub fn check_transaction(writes: &[TxWrite]) -> Result<()> {
    if writes.len() > MAX_TRANSACTION_WRITES {
        return Err(Error::InvalidInput(format!(
            "a transaction of {} writes (at most {MAX_TRANSACTION_WRITES})",
            writes.len()
        )));
    }
    let mut seen = HashSet::with_capacity(writes.len());
    for w in writes {
        let (namespace, key) = w.target();
        if !seen.insert((namespace, key)) {
            return Err(Error::InvalidInput(format!(
                "a transaction writes {namespace:?}/{key:?} twice"
            )));
        }
        if let TxWrite::Remove { precondition, .. } = w {
            precondition.check_removal(namespace, key)?;
        }
    }
    Ok(())
}

/// Whether running the transaction again after an ambiguous failure can
/// never apply a change twice (every precondition `Any` or `Version`, as
/// for single writes).
pub fn safe_to_retry(writes: &[TxWrite]) -> bool {
    writes.iter().all(|w| {
        matches!(
            w.precondition(),
            Precondition::Any | Precondition::Version(_)
        )
    })
}
