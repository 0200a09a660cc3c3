//! A typed collection of JSON records over any backend.

use std::fmt;
use std::marker::PhantomData;
use std::time::{Duration, SystemTime};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::backend::{Document, DocumentWrite, IndexTerm, Precondition, SharedBackend, Version};
use crate::error::{Error, Result};

/// A record type a [`Collection`] can store: JSON via serde, a key, and the
/// index terms it is found by.
pub trait Record: Serialize + DeserializeOwned + Send + Sync {
    /// The namespace records of this type live in by default.
    const NAMESPACE: &'static str;

    /// The record's key.
    fn key(&self) -> &str;

    /// Every index term of the record (duplicates are fine).
    fn index_terms(&self) -> Vec<IndexTerm>;
}

/// A record read from a collection, with the version to make a later write
/// conditional on ([`Collection::replace`] with `Some(version)`).
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    /// The decoded record: an independent copy, changing it changes nothing stored.
    pub record: T,
    /// The stored version it was read at.
    pub version: Version,
    /// When the stored document expires, if it has a TTL.
    pub expires_at: Option<SystemTime>,
}

/// Typed access to one namespace of a backend: encodes records to JSON,
/// writes their index terms with them, and decodes what it reads. A stored
/// document that does not decode is reported as `Corrupted` with its key and
/// left untouched.
pub struct Collection<T> {
    backend: SharedBackend,
    namespace: String,
    ttl: Option<Duration>,
    _record: PhantomData<fn() -> T>,
}

impl<T> Clone for Collection<T> {
    fn clone(&self) -> Self {
        Collection {
            backend: self.backend.clone(),
            namespace: self.namespace.clone(),
            ttl: self.ttl,
            _record: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Collection<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Collection")
            .field("backend", &self.backend.name())
            .field("namespace", &self.namespace)
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl<T: Record> Collection<T> {
    /// A collection in `T::NAMESPACE` without TTL.
    pub fn new(backend: SharedBackend) -> Self {
        Collection {
            backend,
            namespace: T::NAMESPACE.to_string(),
            ttl: None,
            _record: PhantomData,
        }
    }

    /// Uses `namespace` instead of the type's default.
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// Gives every record written from now on this time to live.
    pub fn with_ttl(mut self, ttl: Option<Duration>) -> Self {
        self.ttl = ttl;
        self
    }

    /// The namespace used.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The backend used.
    pub fn backend(&self) -> &SharedBackend {
        &self.backend
    }

    fn encode(&self, record: &T) -> Result<DocumentWrite> {
        let value = serde_json::to_vec(record).map_err(|e| {
            Error::InvalidInput(format!(
                "record {:?} cannot be encoded as JSON: {e}",
                record.key()
            ))
        })?;
        Ok(DocumentWrite {
            value: value.into(),
            index: record.index_terms(),
            ttl: self.ttl,
        })
    }

    /// Decodes a stored document, or reports it as `Corrupted`.
    pub fn decode(&self, key: &str, document: Document) -> Result<Versioned<T>> {
        Ok(Versioned {
            record: self.decode_value(key, &document.value)?,
            version: document.version,
            expires_at: document.expires_at,
        })
    }

    /// Stores a new record; `AlreadyExists` if its key is taken.
    pub async fn create(&self, record: &T) -> Result<Version> {
        let write = self.encode(record)?;
        self.backend
            .put(&self.namespace, record.key(), write, Precondition::Absent)
            .await
    }

    /// The record at `key`, or `None`.
    pub async fn get(&self, key: &str) -> Result<Option<Versioned<T>>> {
        match self.backend.get(&self.namespace, key).await? {
            Some(doc) => self.decode(key, doc).map(Some),
            None => Ok(None),
        }
    }

    /// The record at `key` without its version: one cheap read where the
    /// backend offers it.
    pub async fn get_record(&self, key: &str) -> Result<Option<T>> {
        match self.backend.get_value(&self.namespace, key).await? {
            Some(bytes) => self.decode_value(key, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// The record stored as `bytes` at `key`; `Corrupted` naming it if they
    /// do not decode.
    fn decode_value(&self, key: &str, bytes: &[u8]) -> Result<T> {
        serde_json::from_slice(bytes).map_err(|e| Error::Corrupted {
            namespace: self.namespace.clone(),
            key: key.to_string(),
            reason: e.to_string(),
            len: bytes.len(),
        })
    }

    /// Replaces an existing record, only at `expected` version if given.
    pub async fn replace(&self, record: &T, expected: Option<Version>) -> Result<Version> {
        let write = self.encode(record)?;
        let pre = expected.map_or(Precondition::Present, Precondition::Version);
        self.backend
            .put(&self.namespace, record.key(), write, pre)
            .await
    }

    /// Removes an existing record, only at `expected` version if given.
    pub async fn remove(&self, key: &str, expected: Option<Version>) -> Result<()> {
        let pre = expected.map_or(Precondition::Present, Precondition::Version);
        self.backend.remove(&self.namespace, key, pre).await?;
        Ok(())
    }

    /// The records carrying `term` in `index`, oldest first, each verified to
    /// still carry it (stale hints of non-atomic indexes are skipped) by
    /// `still_matches`. Stops after `limit` matches.
    pub async fn find(
        &self,
        index: &str,
        term: &str,
        limit: usize,
        still_matches: impl Fn(&T) -> bool,
    ) -> Result<Vec<T>> {
        // the first `limit` hits with their values in one call (one round
        // trip on Redis); only when some of them no longer match, and there
        // may be more, the hits are read one at a time
        let first = self
            .backend
            .lookup_values(&self.namespace, index, term, limit)
            .await?;
        let complete = first.len() < limit;
        let mut found = Vec::new();
        for (key, bytes) in &first {
            let record = self.decode_value(key, bytes)?;
            if still_matches(&record) {
                found.push(record);
            }
        }
        if found.len() >= limit || complete {
            return Ok(found);
        }
        found.clear();
        for key in self.backend.lookup(&self.namespace, index, term).await? {
            if found.len() >= limit {
                break;
            }
            if let Some(record) = self.get_record(&key).await? {
                if still_matches(&record) {
                    found.push(record);
                }
            }
        }
        Ok(found)
    }

    /// Number of records in the namespace.
    pub async fn count(&self) -> Result<u64> {
        self.backend.count(&self.namespace).await
    }
}
