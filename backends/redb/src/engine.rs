//! The contract's operations on one redb table laid out by
//! `persistence-ordered-layout`: reads on any table (a read transaction's
//! snapshot, or the write transaction's own), writes inside the write
//! transaction the writer thread owns.

use std::ops::Bound;

use persistence_core::backend::{
    Document, DocumentWrite, IndexTerm, Precondition, ScanOrder, ScanPage, ScanRequest, Version,
};
use persistence_core::{Error, Result};
use persistence_ordered_layout::{self as layout, expires_ms, Record};
use redb::{ReadableDatabase, ReadableTable, Table, TableDefinition};

/// The one table every document and entry lives in.
pub const DATA: TableDefinition<&[u8], &[u8]> = TableDefinition::new("persistence");
/// Counters that must survive restarts (`next_id`).
pub const META: TableDefinition<&str, u64> = TableDefinition::new("persistence_meta");
/// Key of the next version / creation stamp in [`META`].
pub const NEXT_ID: &str = "next_id";

/// The typed error for a redb failure during `what`.
pub fn storage(what: &str, e: impl Into<redb::Error>) -> Error {
    match e.into() {
        redb::Error::Corrupted(reason) => Error::Corrupted {
            namespace: String::new(),
            key: String::new(),
            reason: format!("redb {what}: {reason}"),
            len: 0,
        },
        redb::Error::ValueTooLarge(len) => {
            Error::InvalidInput(format!("redb {what}: a value of {len} bytes is too large"))
        }
        e => Error::Unavailable {
            backend: "redb".into(),
            reason: format!("{what}: {e}"),
        },
    }
}

fn corrupted(ns: &str, key: &str, reason: String, len: usize) -> Error {
    Error::Corrupted {
        namespace: ns.into(),
        key: key.into(),
        reason: format!("redb record: {reason}"),
        len,
    }
}

type Data<'a> = &'a [u8];

/// Runs `read` on a fresh snapshot of `db`.
pub fn read<T>(
    db: &redb::Database,
    operation: &'static str,
    read: impl FnOnce(&Reader<'_, redb::ReadOnlyTable<Data<'static>, Data<'static>>>) -> Result<T>,
) -> Result<T> {
    let txn = db.begin_read().map_err(|e| storage(operation, e))?;
    let table = txn.open_table(DATA).map_err(|e| storage(operation, e))?;
    read(&Reader {
        table: &table,
        now: persistence_ordered_layout::now_ms(),
    })
}

/// Reads of the contract, on any view of the table.
pub struct Reader<'t, T> {
    pub table: &'t T,
    pub now: u64,
}

impl<T: ReadableTable<Data<'static>, Data<'static>>> Reader<'_, T> {
    /// The stored record's bytes at `dk`.
    fn raw(&self, what: &str, dk: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self
            .table
            .get(dk)
            .map_err(|e| storage(what, e))?
            .map(|g| g.value().to_vec()))
    }

    pub fn get(&self, ns: &str, key: &str) -> Result<Option<Document>> {
        let Some(bytes) = self.raw("get", &layout::doc_key(ns, key))? else {
            return Ok(None);
        };
        let rec = Record::decode(&bytes).map_err(|r| corrupted(ns, key, r, bytes.len()))?;
        Ok(layout::live(rec.expires, self.now).then(|| rec.document()))
    }

    /// The index terms of the document at `key`, with its version.
    pub fn terms(&self, ns: &str, key: &str) -> Result<Option<persistence_core::backend::Terms>> {
        let Some(bytes) = self.raw("index terms", &layout::doc_key(ns, key))? else {
            return Ok(None);
        };
        let rec = Record::decode(&bytes).map_err(|r| corrupted(ns, key, r, bytes.len()))?;
        Ok(layout::live(rec.expires, self.now).then_some((Version(rec.version), rec.terms)))
    }

    /// Every namespace with a stored document, in order.
    pub fn namespaces(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut start = layout::first_doc_key();
        loop {
            let mut range = self
                .table
                .range::<&[u8]>((Bound::Included(start.as_slice()), Bound::Unbounded))
                .map_err(|e| storage("namespaces", e))?;
            let Some(entry) = range.next() else {
                return Ok(out);
            };
            let (k, _) = entry.map_err(|e| storage("namespaces", e))?;
            let Some((ns, next)) = layout::doc_namespace(k.value()) else {
                return Ok(out);
            };
            out.push(ns);
            start = next;
        }
    }

    /// Entries from `start` while they carry `prefix`, each passed to `each`
    /// until it returns false.
    fn prefixed(
        &self,
        what: &str,
        prefix: &[u8],
        start: Bound<&[u8]>,
        mut each: impl FnMut(&[u8], &[u8]) -> Result<bool>,
    ) -> Result<()> {
        let range = self
            .table
            .range::<&[u8]>((start, Bound::Unbounded))
            .map_err(|e| storage(what, e))?;
        for entry in range {
            let (k, v) = entry.map_err(|e| storage(what, e))?;
            if !k.value().starts_with(prefix) || !each(k.value(), v.value())? {
                break;
            }
        }
        Ok(())
    }

    pub fn lookup(&self, ns: &str, index: &str, term: &str) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        self.live_hits("lookup", ns, index, term, |key| keys.push(key.to_string()))?;
        Ok(keys)
    }

    /// How many live entries the term has: [`lookup`](Self::lookup)'s
    /// walk, copying no key.
    pub fn count_term(&self, ns: &str, index: &str, term: &str) -> Result<u64> {
        let mut n = 0;
        self.live_hits("count_term", ns, index, term, |_| n += 1)?;
        Ok(n)
    }

    /// Calls `f` with the key of each live index entry of the term, in
    /// (created, key) order.
    fn live_hits(
        &self,
        op: &'static str,
        ns: &str,
        index: &str,
        term: &str,
        mut f: impl FnMut(&str),
    ) -> Result<()> {
        let prefix = layout::term_prefix(ns, index, term);
        self.prefixed(op, &prefix, Bound::Included(&prefix), |k, v| {
            let (expires, key) = layout::parse_pointer(v)
                .ok_or_else(|| corrupted(ns, term, "index entry is damaged".into(), k.len()))?;
            if layout::live(expires, self.now) {
                f(key);
            }
            Ok(true)
        })
    }

    pub fn scan(&self, ns: &str, request: ScanRequest) -> Result<ScanPage> {
        let limit = request.limit.max(1);
        let mut entries = Vec::new();
        let mut more = false;
        match request.order {
            ScanOrder::Key => {
                let prefix = layout::ns_prefix(layout::DOC, ns);
                let start = match &request.cursor {
                    Some(c) => Bound::Excluded(layout::doc_key(ns, c)),
                    None => Bound::Included(prefix.clone()),
                };
                self.prefixed("scan", &prefix, start.as_ref().map(|s| &s[..]), |k, v| {
                    let key = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
                    let rec = Record::decode(v).map_err(|r| corrupted(ns, &key, r, v.len()))?;
                    if !layout::live(rec.expires, self.now) {
                        return Ok(true);
                    }
                    if entries.len() == limit {
                        more = true;
                        return Ok(false);
                    }
                    entries.push((key, rec.document()));
                    Ok(true)
                })?;
            }
            ScanOrder::Created | ScanOrder::NewestFirst => {
                let span = request.stamp_span()?;
                if span.start >= span.end {
                    return Ok(ScanPage::default());
                }
                let (start, end) = (
                    layout::created_key(ns, span.start),
                    layout::created_key(ns, span.end),
                );
                let range = self
                    .table
                    .range::<&[u8]>(&start[..]..&end[..])
                    .map_err(|e| storage("scan", e))?;
                let range: Box<dyn Iterator<Item = _>> = match request.order {
                    ScanOrder::NewestFirst => Box::new(range.rev()),
                    _ => Box::new(range),
                };
                for entry in range {
                    let (_, v) = entry.map_err(|e| storage("scan", e))?;
                    let v = v.value();
                    let (expires, key) = layout::parse_pointer(v)
                        .ok_or_else(|| corrupted(ns, "created entry", "damaged".into(), v.len()))?;
                    if !layout::live(expires, self.now) {
                        continue;
                    }
                    let Some(doc) = self.get(ns, key)? else {
                        continue;
                    };
                    if entries.len() == limit {
                        more = true;
                        break;
                    }
                    entries.push((key.to_string(), doc));
                }
            }
        }
        Ok(ScanPage::after_last(entries, request.order, more))
    }

    /// Counts the namespace's creation entries: reads keys, not documents.
    pub fn count(&self, ns: &str) -> Result<u64> {
        let prefix = layout::ns_prefix(layout::CREATED, ns);
        let mut n = 0;
        self.prefixed("count", &prefix, Bound::Included(&prefix), |_, v| {
            if layout::parse_pointer(v).is_some_and(|(e, _)| layout::live(e, self.now)) {
                n += 1;
            }
            Ok(true)
        })?;
        Ok(n)
    }

    /// Whether any expiry entry exists.
    pub fn has_expiry(&self) -> Result<bool> {
        let mut any = false;
        self.prefixed(
            "open",
            &[layout::EXPIRY],
            Bound::Included(&[layout::EXPIRY]),
            |_, _| {
                any = true;
                Ok(false)
            },
        )?;
        Ok(any)
    }
}

/// Writes of the contract inside the writer's transaction. Every check
/// (precondition, damaged record) happens before the first change, so an
/// `Err` of [`Outcome`] leaves the transaction as it was.
pub struct Writer<'t, 'txn> {
    pub table: &'t mut Table<'txn, Data<'static>, Data<'static>>,
    pub now: u64,
}

/// A write's answer to its caller, or the typed error that refused it
/// (nothing changed); the outer `Result` is a storage failure that spoils
/// the whole transaction.
pub type Outcome<T> = Result<std::result::Result<T, Error>>;

impl Writer<'_, '_> {
    fn old(&self, ns: &str, key: &str, dk: &[u8]) -> Outcome<Option<Vec<u8>>> {
        let bytes = Reader {
            table: &*self.table,
            now: self.now,
        }
        .raw("read", dk)?;
        if let Some(b) = &bytes {
            if let Err(r) = Record::decode(b) {
                return Ok(Err(corrupted(ns, key, r, b.len())));
            }
        }
        Ok(Ok(bytes))
    }

    fn insert(&mut self, k: &[u8], v: &[u8]) -> Result<()> {
        self.table
            .insert(k, v)
            .map(drop)
            .map_err(|e| storage("write", e))
    }

    fn delete(&mut self, k: &[u8]) -> Result<()> {
        self.table
            .remove(k)
            .map(drop)
            .map_err(|e| storage("write", e))
    }

    /// Removes a record's index, creation and expiry entries.
    fn unlink(&mut self, ns: &str, rec: &Record<'_>) -> Result<()> {
        for t in &rec.terms {
            self.delete(&layout::index_key(ns, t, rec.created))?;
        }
        self.delete(&layout::created_key(ns, rec.created))?;
        if rec.expires != 0 {
            self.delete(&layout::expiry_key(rec.expires, ns, rec.created))?;
        }
        Ok(())
    }

    /// Adds a record's index, creation and expiry entries.
    fn link(&mut self, ns: &str, key: &str, rec: &Record<'_>) -> Result<()> {
        let pointer = layout::pointer(rec.expires, key);
        for t in &rec.terms {
            self.insert(&layout::index_key(ns, t, rec.created), &pointer)?;
        }
        self.insert(&layout::created_key(ns, rec.created), &pointer)?;
        if rec.expires != 0 {
            self.insert(
                &layout::expiry_key(rec.expires, ns, rec.created),
                key.as_bytes(),
            )?;
        }
        Ok(())
    }

    /// Puts with version `id`.
    pub fn put(
        &mut self,
        ns: &str,
        key: &str,
        write: &DocumentWrite,
        precondition: Precondition,
        id: u64,
    ) -> Outcome<Version> {
        let expires = expires_ms(self.now, write.ttl);
        let terms = IndexTerm::dedup(write.index.clone());
        let dk = layout::doc_key(ns, key);
        let old_bytes = match self.old(ns, key, &dk)? {
            Ok(b) => b,
            Err(e) => return Ok(Err(e)),
        };
        let old = old_bytes
            .as_deref()
            .map(|b| Record::decode(b).expect("checked by old()"));
        let live = old.as_ref().filter(|r| layout::live(r.expires, self.now));
        if let Err(e) = precondition.check(ns, key, live.map(|r| Version(r.version))) {
            return Ok(Err(e));
        }
        let rec = Record {
            version: id,
            created: live.map_or(id, |r| r.created),
            expires,
            terms,
            value: &write.value,
        };
        let same_entries = live.is_some_and(|r| r.terms == rec.terms && r.expires == rec.expires);
        if !same_entries {
            if let Some(old) = &old {
                self.unlink(ns, old)?;
            }
            self.link(ns, key, &rec)?;
        }
        self.insert(&dk, &rec.encode())?;
        Ok(Ok(Version(id)))
    }

    /// Whether `precondition` holds for `key` now (a transaction checks
    /// every write before it applies any).
    pub fn check(&self, ns: &str, key: &str, precondition: Precondition) -> Outcome<()> {
        let dk = layout::doc_key(ns, key);
        let old = match self.old(ns, key, &dk)? {
            Ok(b) => b,
            Err(e) => return Ok(Err(e)),
        };
        let live = old
            .as_deref()
            .map(|b| Record::decode(b).expect("checked by old()"))
            .filter(|r| layout::live(r.expires, self.now))
            .map(|r| Version(r.version));
        Ok(precondition.check(ns, key, live))
    }

    pub fn remove(&mut self, ns: &str, key: &str, precondition: Precondition) -> Outcome<bool> {
        if let Err(e) = precondition.check_removal(ns, key) {
            return Ok(Err(e));
        }
        let dk = layout::doc_key(ns, key);
        let Some(bytes) = (match self.old(ns, key, &dk)? {
            Ok(b) => b,
            Err(e) => return Ok(Err(e)),
        }) else {
            return Ok(precondition.check(ns, key, None).map(|()| false));
        };
        let old = Record::decode(&bytes).expect("checked by old()");
        let live = layout::live(old.expires, self.now);
        if let Err(e) = precondition.check(ns, key, live.then_some(Version(old.version))) {
            return Ok(Err(e));
        }
        self.unlink(ns, &old)?;
        self.delete(&dk)?;
        Ok(Ok(live))
    }

    /// Frees up to `max` documents expired by now; returns how many expiry
    /// entries it consumed. A damaged expiry entry is dropped (the record
    /// it points at stays, invisible once expired, for an operator).
    pub fn purge(&mut self, max: usize) -> Result<usize> {
        let upto = [&[layout::EXPIRY][..], &(self.now + 1).to_be_bytes()].concat();
        let due: Vec<(Vec<u8>, Vec<u8>)> = self
            .table
            .range::<&[u8]>(&[layout::EXPIRY][..]..&upto[..])
            .map_err(|e| storage("purge", e))?
            .take(max)
            .map(|e| {
                e.map(|(k, v)| (k.value().to_vec(), v.value().to_vec()))
                    .map_err(|e| storage("purge", e))
            })
            .collect::<Result<_>>()?;
        for (k, v) in &due {
            self.delete(k)?;
            let Some((expires, ns, created)) = layout::parse_expiry_key(k) else {
                tracing::warn!(len = k.len(), "dropped a damaged expiry entry");
                continue;
            };
            let key = String::from_utf8_lossy(v).into_owned();
            let dk = layout::doc_key(&ns, &key);
            let Ok(Some(bytes)) = self.old(&ns, &key, &dk)? else {
                continue; // gone, or damaged: stays for an operator
            };
            let rec = Record::decode(&bytes).expect("checked by old()");
            if rec.created == created && rec.expires == expires {
                self.unlink(&ns, &rec)?;
                self.delete(&dk)?;
            }
        }
        Ok(due.len())
    }
}
