//! The version of a stored document: named by the contract and by its
//! errors, so it sits below both.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The version (ETag) of a stored document.
///
/// Every successful write returns a new version, different from every version
/// the same key had before, even across delete and re-create, so a caller that
/// read version `v` can make its write conditional on nobody having written
/// since ([`Precondition::Version`](crate::backend::Precondition::Version)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Version(pub u64);

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0)
    }
}
