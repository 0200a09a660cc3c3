//! The values that cross the [`Backend`](super::Backend) contract.

use std::fmt;
use std::ops::Range;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub use crate::version::Version;

/// A stored document as [`Backend::get`](super::Backend::get) returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// The bytes exactly as written (JSON for the typed stores).
    pub value: Bytes,
    /// The current version.
    pub version: Version,
    /// Creation stamp: assigned at insert, kept by later writes. A document
    /// whose insert started after another's insert returned has a greater or
    /// equal stamp; ties are ordered by key. Index lookups and creation-order
    /// scans use `(created, key)` order.
    pub created: u64,
    /// When the document expires, if it has a TTL.
    pub expires_at: Option<SystemTime>,
}

/// One secondary index entry of a document: `index` names the index
/// (`request_index`), `term` the value looked up (a request id).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct IndexTerm {
    /// The index's name.
    pub index: String,
    /// The value the document is found by.
    pub term: String,
}

impl IndexTerm {
    /// An index entry for `term` in `index`.
    pub fn new(index: impl Into<String>, term: impl Into<String>) -> Self {
        IndexTerm {
            index: index.into(),
            term: term.into(),
        }
    }
}

/// What a write stores: the bytes, the complete set of index terms, and the TTL.
///
/// A write replaces everything: terms not listed are removed from the indexes
/// and a write without `ttl` makes the document persistent again.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DocumentWrite {
    /// The document's bytes.
    pub value: Bytes,
    /// Every index term of the document after this write (duplicates allowed).
    pub index: Vec<IndexTerm>,
    /// Time to live from the moment of the write; `None` keeps it forever.
    pub ttl: Option<Duration>,
}

impl DocumentWrite {
    /// A write of `value` with no index terms and no TTL.
    pub fn new(value: impl Into<Bytes>) -> Self {
        DocumentWrite {
            value: value.into(),
            ..Default::default()
        }
    }

    /// Adds an index term.
    pub fn with_term(mut self, index: impl Into<String>, term: impl Into<String>) -> Self {
        self.index.push(IndexTerm::new(index, term));
        self
    }

    /// Sets the TTL.
    pub fn with_ttl(mut self, ttl: Option<Duration>) -> Self {
        self.ttl = ttl;
        self
    }
}

/// The condition under which a write or removal takes effect. The check and the
/// change are one atomic step on every backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Precondition {
    /// No condition: upsert on put; on remove, a missing key is not an error.
    #[default]
    Any,
    /// The key must not exist (insert). Fails with `AlreadyExists`.
    Absent,
    /// The key must exist. Fails with `NotFound`.
    Present,
    /// The key must exist with exactly this version. Fails with `NotFound`
    /// when absent and `Conflict` when the version differs.
    Version(Version),
}

impl Precondition {
    /// Checks the precondition against the key's live document (`current`
    /// is its version, `None` when absent or expired), giving the error the
    /// contract demands when it does not hold. Every backend uses this, so
    /// they all answer alike.
    ///
    /// ```
    /// # use persistence_core::backend::{Precondition, Version};
    /// # use persistence_core::ErrorKind;
    /// assert!(Precondition::Absent.check("ns", "k", None).is_ok());
    /// let e = Precondition::Version(Version(1)).check("ns", "k", Some(Version(2))).unwrap_err();
    /// assert_eq!(e.kind(), ErrorKind::Conflict);
    /// ```
    pub fn check(self, namespace: &str, key: &str, current: Option<Version>) -> crate::Result<()> {
        use crate::Error;
        match (self, current) {
            (Precondition::Any, _)
            | (Precondition::Absent, None)
            | (Precondition::Present, Some(_)) => Ok(()),
            (Precondition::Absent, Some(_)) => Err(Error::already_exists(namespace, key)),
            (Precondition::Present | Precondition::Version(_), None) => {
                Err(Error::not_found(namespace, key))
            }
            (Precondition::Version(v), Some(actual)) if v == actual => Ok(()),
            (Precondition::Version(expected), Some(actual)) => Err(Error::Conflict {
                namespace: namespace.into(),
                key: key.into(),
                expected,
                actual,
            }),
        }
    }

    /// The `InvalidInput` error for a removal that can never apply
    /// ([`Precondition::Absent`]); `Ok` for every other precondition.
    pub fn check_removal(self, namespace: &str, key: &str) -> crate::Result<()> {
        if self == Precondition::Absent {
            return Err(crate::Error::InvalidInput(format!(
                "remove of {namespace}/{key:?} with precondition Absent can never apply"
            )));
        }
        Ok(())
    }
}

impl IndexTerm {
    /// The terms sorted and without duplicates: what a backend stores.
    pub fn dedup(mut terms: Vec<IndexTerm>) -> Vec<IndexTerm> {
        terms.sort_unstable();
        terms.dedup();
        terms
    }
}

/// One put of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Put {
    /// The key.
    pub key: String,
    /// What to store.
    pub write: DocumentWrite,
    /// When to store it.
    pub precondition: Precondition,
}

/// One removal of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remove {
    /// The key.
    pub key: String,
    /// When to remove it.
    pub precondition: Precondition,
}

/// The order of a [`scan`](super::Backend::scan).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ScanOrder {
    /// By key, bytewise ascending.
    #[default]
    Key,
    /// By creation stamp, oldest first (ties by key): what retention
    /// ("keep the newest N") and time-ordered listings need.
    Created,
    /// By creation stamp, newest first (ties by key, descending): "the
    /// newest N". Requires [`Capabilities::time_order`].
    NewestFirst,
}

impl ScanOrder {
    /// Whether this order follows creation stamps (both directions).
    pub fn by_creation(self) -> bool {
        !matches!(self, ScanOrder::Key)
    }
}

/// One page request of a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanRequest {
    /// Order of the entries.
    pub order: ScanOrder,
    /// Where to continue: the `cursor` of the previous page, `None` to start.
    pub cursor: Option<String>,
    /// Most entries to return (at least one is asked for even when 0).
    pub limit: usize,
    /// Only documents whose creation stamp `c` has `start <= c < end`
    /// (Unix microseconds, see [`Capabilities::time_order`]): everything
    /// created in a time window. Only with a creation order; requires
    /// [`Capabilities::time_order`].
    pub created: Option<Range<u64>>,
}

impl ScanRequest {
    /// The first page of `limit` entries in `order`.
    pub fn first(order: ScanOrder, limit: usize) -> Self {
        ScanRequest {
            order,
            cursor: None,
            limit,
            created: None,
        }
    }

    /// The same request, limited to documents created in `[from, to)`.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use persistence_core::backend::{ScanOrder, ScanRequest};
    /// let now = SystemTime::now();
    /// let last_day = ScanRequest::first(ScanOrder::NewestFirst, 100)
    ///     .created_between(now - Duration::from_secs(86_400), now);
    /// assert!(last_day.created.is_some());
    /// ```
    pub fn created_between(self, from: SystemTime, to: SystemTime) -> Self {
        ScanRequest {
            created: Some(stamp_of(from)..stamp_of(to)),
            ..self
        }
    }

    /// The creation stamps the page asked for may hold, for a creation
    /// order: the window narrowed by the cursor (the stamp of the previous
    /// page's last entry, for engines whose stamps are unique). Fails with
    /// `InvalidInput` on a cursor that is not a stamp.
    pub fn stamp_span(&self) -> crate::Result<Range<u64>> {
        let window = self.created.clone().unwrap_or(0..u64::MAX);
        let Some(cursor) = &self.cursor else {
            return Ok(window);
        };
        let after: u64 = cursor.parse().map_err(|_| {
            crate::Error::InvalidInput(format!("scan cursor {cursor:?} is not a creation cursor"))
        })?;
        Ok(match self.order {
            ScanOrder::NewestFirst => window.start..window.end.min(after),
            _ => window.start.max(after.saturating_add(1))..window.end,
        })
    }

    /// Checks the request against what a backend named `backend`
    /// declares, before it runs: `Unsupported` for an order or window
    /// `caps` lacks, `InvalidInput` for a window on a key-ordered scan.
    pub fn check(&self, backend: &str, caps: &Capabilities) -> crate::Result<()> {
        let missing = match self.order {
            ScanOrder::Key if self.created.is_some() => {
                return Err(crate::Error::InvalidInput(
                    "a creation window needs a creation-ordered scan".into(),
                ))
            }
            _ if !caps.scan => Some("scan"),
            ScanOrder::Created if !caps.scan_by_creation => Some("creation-ordered scan"),
            ScanOrder::NewestFirst if !caps.time_order => Some("newest-first scan"),
            _ if self.created.is_some() && !caps.time_order => Some("creation-window scan"),
            _ => None,
        };
        match missing {
            Some(capability) => Err(crate::Error::Unsupported {
                backend: backend.to_string(),
                capability: capability.to_string(),
            }),
            None => Ok(()),
        }
    }
}

/// A time as a creation stamp: Unix microseconds (0 before 1970).
pub fn stamp_of(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// A creation stamp as a time, on backends with [`Capabilities::time_order`].
pub fn time_of(stamp: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(stamp)
}

/// The next stamp after `last`: now in Unix microseconds, or `last + 1`
/// when the clock has not moved past it (so stamps stay unique and never
/// go back when the clock does). What the built-in engines draw their
/// versions and creation stamps from.
pub fn next_stamp(last: u64) -> u64 {
    stamp_of(SystemTime::now()).max(last.saturating_add(1))
}

/// A page of scan results.
///
/// Paging is weakly consistent: a document present for the whole scan is
/// returned exactly once; one written or removed during the scan may or may
/// not be. Removing keys between pages never makes the scan skip or repeat
/// the others.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScanPage {
    /// `(key, document)` in the requested order.
    pub entries: Vec<(String, Document)>,
    /// Opaque cursor for the next page; `None` when the scan is complete.
    pub cursor: Option<String>,
}

impl ScanPage {
    /// A page of `entries` read in `order`. When `more` documents follow,
    /// the cursor points after the last entry: its key, or its creation
    /// stamp (for backends whose stamps are unique).
    pub fn after_last(entries: Vec<(String, Document)>, order: ScanOrder, more: bool) -> Self {
        let cursor = if more {
            entries.last().map(|(key, doc)| match order {
                ScanOrder::Key => key.clone(),
                ScanOrder::Created | ScanOrder::NewestFirst => doc.created.to_string(),
            })
        } else {
            None
        };
        ScanPage { entries, cursor }
    }
}

/// What a backend offers beyond the required operations. A backend must
/// refuse (`Unsupported`) what it does not declare, never ignore it silently;
/// the conformance suite checks both directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Capabilities {
    /// Per-document TTL: expired documents are never returned.
    pub ttl: bool,
    /// Key-ordered [`scan`](super::Backend::scan) with a cursor.
    pub scan: bool,
    /// Creation-ordered scan ([`ScanOrder::Created`]).
    pub scan_by_creation: bool,
    /// [`count`](super::Backend::count) without a full scan.
    pub count: bool,
    /// Creation stamps are Unix microseconds at insert (unique and
    /// increasing within a namespace, so [`time_of`] reads them as insert
    /// times), and scans go newest-first ([`ScanOrder::NewestFirst`]) and
    /// take a creation window ([`ScanRequest::created`]).
    pub time_order: bool,
    /// Batches travel in one round trip instead of one call per key.
    pub native_batch: bool,
    /// [`transact`](super::Backend::transact): writes to several keys,
    /// in any namespaces, applied all-or-nothing.
    pub transactions: bool,
    /// With [`transactions`](Self::transactions): a transaction is
    /// accepted only when all its keys fall in one partition, and refused
    /// as `Unsupported` otherwise. On Redis Cluster a partition is a hash
    /// slot, and keys sharing a `{tag}` (`{w-1}state`, `{w-1}result`, in
    /// any namespaces) share one. False everywhere else: any keys go.
    #[serde(default)]
    pub partitioned_transactions: bool,
    /// Index terms change in the same atomic step as the document. When
    /// false, index lookups are hints and callers verify each hit (the typed
    /// stores always do).
    pub atomic_index: bool,
    /// Writes survive a restart of the process.
    pub durable: bool,
    /// [`namespaces`](super::Backend::namespaces) and
    /// [`index_terms`](super::Backend::index_terms): everything stored can
    /// be read back with its index terms (export, migrate).
    pub export: bool,
}

/// How a backend is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Serving as configured.
    Ok,
    /// Serving, but not as configured (for example on the memory fallback).
    Degraded,
    /// Not serving.
    Down,
}

impl fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HealthStatus::Ok => "ok",
            HealthStatus::Degraded => "degraded",
            HealthStatus::Down => "down",
        })
    }
}

/// A health report. Layers add their own `details`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// Overall status.
    pub status: HealthStatus,
    /// Name of the backend that reports.
    pub backend: String,
    /// One line for people.
    pub message: String,
    /// Round-trip time of the check, when the backend measured one.
    pub latency_ms: Option<f64>,
    /// Extra facts (server version, queue depth, breaker state...).
    pub details: std::collections::BTreeMap<String, String>,
}

impl Health {
    /// An `Ok` report with `message`.
    pub fn ok(backend: impl Into<String>, message: impl Into<String>) -> Self {
        Health {
            status: HealthStatus::Ok,
            backend: backend.into(),
            message: message.into(),
            latency_ms: None,
            details: Default::default(),
        }
    }
}
