//! Moving documents between backends: [`export`] to JSON lines
//! ([`Line`]), [`import`] them, [`migrate`] from one backend to another
//! (resumable from a checkpoint file, verified by a count and a checksum
//! per namespace), and [`digest`] for the verification.
//!
//! Everything streams: a page of documents at a time, so a store larger
//! than memory moves. Index terms and the TTL left travel with each
//! document; versions do not (the target numbers its own writes), and a
//! migration copies in creation order where the source can scan in it, so
//! "the oldest task with this request id" stays the same task.
//!
//! ```
//! use std::sync::Arc;
//! use persistence_core::memory::MemoryBackend;
//! use persistence_core::{BackendExt, SharedBackend};
//! use persistence_core::backend::DocumentWrite;
//! use persistence_transfer::{digest, migrate, MigrateOptions};
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let from: SharedBackend = Arc::new(MemoryBackend::new());
//! let to: SharedBackend = Arc::new(MemoryBackend::new());
//! from.insert("task", "t-1", DocumentWrite::new(&b"{\"a\":1}"[..])).await.unwrap();
//! let report = migrate(&from, &to, &MigrateOptions::default(), |_| {}).await.unwrap();
//! assert!(report.verified());
//! assert_eq!(digest(&*to, "task").await.unwrap(), digest(&*from, "task").await.unwrap());
//! # });
//! ```
#![warn(missing_docs, missing_debug_implementations)]

mod line;

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use persistence_core::backend::{
    export_page, Backend, DocumentWrite, ExportEntry, Precondition, ScanOrder, ScanRequest,
};
use persistence_core::{ErrorKind, SharedBackend};
use serde::{Deserialize, Serialize};

pub use line::Line;

/// Documents read or written per page.
pub const PAGE: usize = 500;

/// What went wrong moving documents.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// A backend call failed.
    #[error(transparent)]
    Backend(#[from] persistence_core::Error),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A checkpoint file that is not this migration's.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// The result of a transfer call.
pub type Result<T> = std::result::Result<T, TransferError>;

fn io(path: &str) -> impl FnOnce(std::io::Error) -> TransferError + '_ {
    move |source| TransferError::Io {
        path: path.to_string(),
        source,
    }
}

/// The namespaces to move: `wanted`, or every namespace the backend lists.
pub async fn namespaces(backend: &dyn Backend, wanted: &[String]) -> Result<Vec<String>> {
    if !wanted.is_empty() {
        return Ok(wanted.to_vec());
    }
    Ok(backend.namespaces().await?)
}

/// Every document of `namespace` in `order`, a page at a time, each page
/// passed to `each`; `cursor` resumes after a page `each` saw (its second
/// argument is the cursor after that page, `None` at the end).
async fn walk<F>(
    backend: &dyn Backend,
    namespace: &str,
    order: ScanOrder,
    cursor: Option<String>,
    each: F,
) -> Result<()>
where
    F: AsyncPageFn,
{
    walk_with(backend, namespace, order, cursor, true, each).await
}

/// [`walk`], with the index terms only if `terms` (else every entry's
/// `index` is empty: a plain scan, for backends that cannot export).
async fn walk_with<F>(
    backend: &dyn Backend,
    namespace: &str,
    order: ScanOrder,
    mut cursor: Option<String>,
    terms: bool,
    mut each: F,
) -> Result<()>
where
    F: AsyncPageFn,
{
    loop {
        let request = ScanRequest {
            cursor: cursor.clone(),
            ..ScanRequest::first(order, PAGE)
        };
        let page = if terms {
            export_page(backend, namespace, request).await?
        } else {
            let page = backend.scan(namespace, request).await?;
            persistence_core::backend::ExportPage {
                entries: page
                    .entries
                    .into_iter()
                    .map(|(key, document)| ExportEntry {
                        key,
                        document,
                        index: Vec::new(),
                    })
                    .collect(),
                cursor: page.cursor,
            }
        };
        cursor = page.cursor.clone();
        each.call(page.entries, cursor.clone()).await?;
        if cursor.is_none() {
            return Ok(());
        }
    }
}

/// A page handler (an async closure over `&mut` state, spelled out).
trait AsyncPageFn {
    async fn call(&mut self, entries: Vec<ExportEntry>, next: Option<String>) -> Result<()>;
}

/// What [`export`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ExportReport {
    /// Documents written, per namespace.
    pub documents: BTreeMap<String, u64>,
    /// Of those, documents whose bytes are not JSON (flagged `corrupted`).
    pub corrupted: u64,
}

struct ExportSink<'a, W: Write> {
    namespace: &'a str,
    out: &'a mut W,
    path: &'a str,
    report: &'a mut ExportReport,
    progress: &'a mut dyn FnMut(u64),
}

impl<W: Write> AsyncPageFn for ExportSink<'_, W> {
    async fn call(&mut self, entries: Vec<ExportEntry>, _: Option<String>) -> Result<()> {
        let now = SystemTime::now();
        for e in &entries {
            let Some(line) = Line::of(self.namespace, e, now) else {
                continue; // expired while exporting
            };
            self.report.corrupted += u64::from(line.corrupted);
            serde_json::to_writer(&mut *self.out, &line).map_err(|e| TransferError::Io {
                path: self.path.to_string(),
                source: e.into(),
            })?;
            self.out.write_all(b"\n").map_err(io(self.path))?;
            *self
                .report
                .documents
                .entry(self.namespace.to_string())
                .or_default() += 1;
        }
        let total = self.report.documents.values().sum();
        (self.progress)(total);
        Ok(())
    }
}

/// Writes every document of `wanted` (or of every namespace) to `out` as
/// JSON lines, in key order; `path` names `out` in errors, `progress`
/// hears the running total after each page.
pub async fn export<W: Write>(
    backend: &dyn Backend,
    wanted: &[String],
    out: &mut W,
    path: &str,
    mut progress: impl FnMut(u64),
) -> Result<ExportReport> {
    let mut report = ExportReport::default();
    for ns in namespaces(backend, wanted).await? {
        report.documents.entry(ns.clone()).or_default();
        let sink = ExportSink {
            namespace: &ns,
            out,
            path,
            report: &mut report,
            progress: &mut progress,
        };
        walk(backend, &ns, ScanOrder::Key, None, sink).await?;
    }
    out.flush().map_err(io(path))?;
    Ok(report)
}

/// How [`import`] treats a key that exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImportMode {
    /// Leave it, report a conflict.
    #[default]
    Create,
    /// Replace it.
    Upsert,
}

/// What [`import`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    /// Documents written, per namespace.
    pub imported: BTreeMap<String, u64>,
    /// Keys left alone because they exist (create mode): `namespace/key`.
    pub conflicts: Vec<String>,
    /// Lines whose TTL ran out before the import.
    pub expired: u64,
    /// Lines that could not be used: `line N: why` (at most 100 kept).
    pub errors: Vec<String>,
    /// Lines that could not be used, all of them.
    pub error_count: u64,
}

impl ImportReport {
    fn error(&mut self, line: u64, why: impl std::fmt::Display) {
        self.error_count += 1;
        if self.errors.len() < 100 {
            self.errors.push(format!("line {line}: {why}"));
        }
    }
}

/// Reads JSON lines written by [`export`] and writes each document with
/// its index terms and the TTL it had left when exported, counted from
/// now (the file does not say when it was made).
/// A bad line is reported with its number and skipped; a backend that
/// fails on a line stops the import (what came before is written).
pub async fn import(
    backend: &dyn Backend,
    input: impl BufRead,
    path: &str,
    mode: ImportMode,
    mut progress: impl FnMut(u64),
) -> Result<ImportReport> {
    let mut report = ImportReport::default();
    let precondition = match mode {
        ImportMode::Create => Precondition::Absent,
        ImportMode::Upsert => Precondition::Any,
    };
    let mut total = 0u64;
    for (n, text) in input.lines().enumerate() {
        let n = n as u64 + 1;
        let text = text.map_err(io(path))?;
        if text.trim().is_empty() {
            continue;
        }
        let line: Line = match serde_json::from_str(&text) {
            Ok(l) => l,
            Err(e) => {
                report.error(n, format!("not an export line: {e}"));
                continue;
            }
        };
        let value = match line.bytes() {
            Ok(v) => v,
            Err(e) => {
                report.error(n, e);
                continue;
            }
        };
        if line.ttl_ms == Some(0) {
            report.expired += 1;
            continue;
        }
        let write = DocumentWrite {
            value,
            index: line.index.clone(),
            ttl: line.ttl_ms.map(Duration::from_millis),
        };
        match backend
            .put(&line.namespace, &line.key, write, precondition)
            .await
        {
            Ok(_) => {
                *report.imported.entry(line.namespace.clone()).or_default() += 1;
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                report
                    .conflicts
                    .push(format!("{}/{}", line.namespace, line.key));
            }
            Err(e) if e.kind() == ErrorKind::InvalidInput || e.kind() == ErrorKind::Unsupported => {
                report.error(n, e);
            }
            Err(e) => return Err(e.into()),
        }
        total += 1;
        if total.is_multiple_of(PAGE as u64) {
            progress(total);
        }
    }
    progress(total);
    Ok(report)
}

/// A namespace's count and checksum: FNV-1a over every document's key,
/// bytes, sorted index terms and whether it has a TTL, in key order. Two
/// backends holding the same documents give the same digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Digest {
    /// Live documents.
    pub count: u64,
    /// The checksum, as 16 hex digits when printed.
    #[serde(serialize_with = "as_hex")]
    pub checksum: u64,
}

fn as_hex<S: serde::Serializer>(v: &u64, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{v:016x}"))
}

struct Fnv(u64);

impl Fnv {
    fn eat(&mut self, bytes: &[u8]) {
        for chunk in [&(bytes.len() as u64).to_le_bytes()[..], bytes] {
            for b in chunk {
                self.0 ^= u64::from(*b);
                self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
    }
}

struct DigestSink<'a>(&'a mut Digest, &'a mut Fnv);

impl AsyncPageFn for DigestSink<'_> {
    async fn call(&mut self, entries: Vec<ExportEntry>, _: Option<String>) -> Result<()> {
        for e in entries {
            self.0.count += 1;
            self.1.eat(e.key.as_bytes());
            self.1.eat(&e.document.value);
            let mut terms = e.index;
            terms.sort();
            terms.dedup();
            for t in terms {
                self.1.eat(t.index.as_bytes());
                self.1.eat(t.term.as_bytes());
            }
            self.1.eat(&[u8::from(e.document.expires_at.is_some())]);
        }
        Ok(())
    }
}

/// The [`Digest`] of `namespace` on `backend`, index terms included.
pub async fn digest(backend: &dyn Backend, namespace: &str) -> Result<Digest> {
    digest_with(backend, namespace, true).await
}

/// The [`Digest`] of `namespace`, with the index terms only if `terms`
/// (a backend without [`export`](persistence_core::backend::Capabilities::export)
/// cannot give them).
pub async fn digest_with(backend: &dyn Backend, namespace: &str, terms: bool) -> Result<Digest> {
    let mut d = Digest {
        count: 0,
        checksum: 0,
    };
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    let sink = DigestSink(&mut d, &mut h);
    walk_with(backend, namespace, ScanOrder::Key, None, terms, sink).await?;
    d.checksum = h.0;
    Ok(d)
}

/// How [`migrate`] runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrateOptions {
    /// The namespaces to copy (empty: every one the source lists).
    pub namespaces: Vec<String>,
    /// Read the source and count, write nothing.
    pub dry_run: bool,
    /// Where progress is kept, so an interrupted migration resumes after
    /// the last page it copied (none: start over each time; copying is
    /// idempotent, it only takes longer).
    pub checkpoint: Option<PathBuf>,
    /// What the checkpoint calls the source and the target (a settings
    /// file's path, say), so it is never applied to another migration;
    /// empty: the backends' names.
    pub labels: (String, String),
}

/// The checkpoint file: per namespace, the cursor after the last page
/// copied, or done.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Checkpoint {
    source: String,
    target: String,
    namespaces: BTreeMap<String, NamespaceProgress>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct NamespaceProgress {
    cursor: Option<String>,
    done: bool,
    copied: u64,
}

impl Checkpoint {
    fn load(path: &Path, source: &str, target: &str) -> Result<Checkpoint> {
        let shown = path.display().to_string();
        let fresh = Checkpoint {
            source: source.to_string(),
            target: target.to_string(),
            namespaces: BTreeMap::new(),
        };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(fresh),
            Err(e) => return Err(io(&shown)(e)),
        };
        let c: Checkpoint = serde_json::from_str(&text).map_err(|e| TransferError::Checkpoint {
            path: shown.clone(),
            reason: format!("not a migration checkpoint: {e}"),
        })?;
        if (c.source.as_str(), c.target.as_str()) != (source, target) {
            return Err(TransferError::Checkpoint {
                path: shown,
                reason: format!(
                    "it is the checkpoint of a migration from {} to {}, not from {source} to {target}; remove it to start over",
                    c.source, c.target
                ),
            });
        }
        Ok(c)
    }

    /// Written to a temporary file and renamed over the old one, so a
    /// crash leaves the old checkpoint or the new one, never half of one.
    fn save(&self, path: &Path) -> Result<()> {
        let shown = path.display().to_string();
        let tmp = path.with_extension("tmp");
        let text = serde_json::to_vec_pretty(self).expect("a checkpoint serializes");
        std::fs::write(&tmp, text).map_err(io(&shown))?;
        std::fs::rename(&tmp, path).map_err(io(&shown))
    }
}

/// What [`migrate`] did, per namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MigrateReport {
    /// Per namespace: documents copied in this run, and the digests of
    /// both sides after it (none on a dry run).
    pub namespaces: BTreeMap<String, NamespaceReport>,
    /// Whether this run wrote nothing.
    pub dry_run: bool,
    /// Whether the digests cover the index terms (false when the target
    /// cannot read them back: a plugin; then keys, bytes and TTLs are
    /// checked, the terms are not).
    pub terms_checked: bool,
}

/// One namespace of a [`MigrateReport`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NamespaceReport {
    /// Documents copied by this run (a resumed run counts only its own).
    pub copied: u64,
    /// Documents the source holds (a dry run's count).
    pub source: Option<Digest>,
    /// What the target holds after the copy.
    pub target: Option<Digest>,
}

impl MigrateReport {
    /// Whether every namespace's target digest equals its source's.
    pub fn verified(&self) -> bool {
        !self.dry_run
            && self
                .namespaces
                .values()
                .all(|n| n.source.is_some() && n.source == n.target)
    }
}

struct CopySink<'a> {
    target: &'a dyn Backend,
    namespace: &'a str,
    checkpoint: &'a mut Checkpoint,
    path: Option<&'a Path>,
    /// Copied by earlier runs.
    base: u64,
    copied: &'a mut u64,
    progress: &'a mut dyn FnMut(&str, u64),
}

impl AsyncPageFn for CopySink<'_> {
    async fn call(&mut self, entries: Vec<ExportEntry>, next: Option<String>) -> Result<()> {
        let now = SystemTime::now();
        for e in entries {
            let ttl = match e.document.expires_at {
                None => None,
                Some(at) => match at.duration_since(now) {
                    Ok(left) => Some(left.max(Duration::from_millis(1))),
                    Err(_) => continue, // expired while copying
                },
            };
            let write = DocumentWrite {
                value: e.document.value,
                index: e.index,
                ttl,
            };
            self.target
                .put(self.namespace, &e.key, write, Precondition::Any)
                .await?;
            *self.copied += 1;
        }
        // durable before the checkpoint says so
        self.target.flush().await?;
        let p = self
            .checkpoint
            .namespaces
            .entry(self.namespace.to_string())
            .or_default();
        p.copied = self.base + *self.copied;
        p.cursor = next.clone();
        p.done = next.is_none();
        if let Some(path) = self.path {
            self.checkpoint.save(path)?;
        }
        (self.progress)(self.namespace, *self.copied);
        Ok(())
    }
}

struct CountSink<'a>(&'a mut u64);

impl AsyncPageFn for CountSink<'_> {
    async fn call(&mut self, entries: Vec<ExportEntry>, _: Option<String>) -> Result<()> {
        *self.0 += entries.len() as u64;
        Ok(())
    }
}

/// Copies every document of the chosen namespaces from `source` to
/// `target` (upserts: a key the target has is replaced), in creation
/// order where the source can scan in it, with its index terms and the
/// TTL it has left; then digests both sides of each namespace. With a
/// checkpoint, a run resumes after the last page the previous one copied.
/// `progress` hears (namespace, copied so far) after each page.
pub async fn migrate(
    source: &SharedBackend,
    target: &SharedBackend,
    options: &MigrateOptions,
    mut progress: impl FnMut((&str, u64)),
) -> Result<MigrateReport> {
    let caps = source.capabilities();
    if !caps.export || !caps.scan {
        return Err(persistence_core::Error::Unsupported {
            backend: source.name().to_string(),
            capability: "reading every document with its index terms (export), which a migration's source needs".into(),
        }
        .into());
    }
    let order = if caps.scan_by_creation {
        ScanOrder::Created
    } else {
        ScanOrder::Key
    };
    let mut report = MigrateReport {
        dry_run: options.dry_run,
        ..MigrateReport::default()
    };
    let names = namespaces(&**source, &options.namespaces).await?;
    let terms = target.capabilities().export;
    report.terms_checked = terms && !options.dry_run;
    if options.dry_run {
        for ns in names {
            let mut count = 0;
            walk(&**source, &ns, order, None, CountSink(&mut count)).await?;
            report.namespaces.insert(
                ns,
                NamespaceReport {
                    copied: 0,
                    source: Some(Digest { count, checksum: 0 }),
                    target: None,
                },
            );
        }
        return Ok(report);
    }
    let label = |given: &str, backend: &SharedBackend| {
        if given.is_empty() {
            backend.name().to_string()
        } else {
            given.to_string()
        }
    };
    let (from, to) = (
        label(&options.labels.0, source),
        label(&options.labels.1, target),
    );
    let mut checkpoint = match &options.checkpoint {
        Some(path) => Checkpoint::load(path, &from, &to)?,
        None => Checkpoint {
            source: from,
            target: to,
            namespaces: BTreeMap::new(),
        },
    };
    let mut on_page = |ns: &str, n: u64| progress((ns, n));
    for ns in names {
        let resume = checkpoint.namespaces.get(&ns).cloned().unwrap_or_default();
        let mut copied = 0;
        if !resume.done {
            let sink = CopySink {
                target: &**target,
                namespace: &ns,
                checkpoint: &mut checkpoint,
                path: options.checkpoint.as_deref(),
                base: resume.copied,
                copied: &mut copied,
                progress: &mut on_page,
            };
            walk(&**source, &ns, order, resume.cursor.clone(), sink).await?;
        }
        target.flush().await?;
        report.namespaces.insert(
            ns.clone(),
            NamespaceReport {
                copied,
                source: Some(digest_with(&**source, &ns, terms).await?),
                target: Some(digest_with(&**target, &ns, terms).await?),
            },
        );
    }
    Ok(report)
}
