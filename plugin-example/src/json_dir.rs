//! A directory of document files.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use persistence_plugin_sdk::{
    async_trait, Backend, Bytes, Capabilities, Document, DocumentWrite, Error, Health, IndexTerm,
    Precondition, Result, ScanOrder, ScanPage, ScanRequest, Version,
};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<String> {
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect();
    String::from_utf8(bytes?).ok()
}

/// What the in-memory index keeps of a document.
#[derive(Debug, Clone)]
struct Meta {
    version: u64,
    created: u64,
    /// Unix ms, 0 = never.
    expires: u64,
    terms: Vec<IndexTerm>,
}

impl Meta {
    fn live(&self, now: u64) -> bool {
        self.expires == 0 || self.expires > now
    }

    fn header(&self) -> Vec<u8> {
        let terms: Vec<[&str; 2]> = self
            .terms
            .iter()
            .map(|t| [t.index.as_str(), t.term.as_str()])
            .collect();
        let mut h = serde_json::to_vec(&serde_json::json!({
            "v": self.version, "c": self.created, "e": self.expires, "t": terms
        }))
        .expect("header encodes");
        h.push(b'\n');
        h
    }

    fn parse(bytes: &[u8]) -> std::result::Result<(Meta, &[u8]), String> {
        let nl = bytes
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("no header line")?;
        let h: serde_json::Value =
            serde_json::from_slice(&bytes[..nl]).map_err(|e| e.to_string())?;
        let num = |k: &str| h[k].as_u64().ok_or(format!("header field {k} missing"));
        let terms = h["t"]
            .as_array()
            .ok_or("header field t missing")?
            .iter()
            .map(|p| match (p[0].as_str(), p[1].as_str()) {
                (Some(i), Some(t)) => Ok(IndexTerm::new(i, t)),
                _ => Err("bad index term".to_string()),
            })
            .collect::<std::result::Result<_, _>>()?;
        Ok((
            Meta {
                version: num("v")?,
                created: num("c")?,
                expires: num("e")?,
                terms,
            },
            &bytes[nl + 1..],
        ))
    }
}

#[derive(Debug, Default)]
struct Space {
    docs: BTreeMap<String, Meta>,
    by_created: BTreeMap<u64, String>,
    index: HashMap<(String, String), BTreeMap<u64, String>>,
}

impl Space {
    fn link(&mut self, key: &str, meta: Meta) {
        self.by_created.insert(meta.created, key.to_string());
        for t in &meta.terms {
            self.index
                .entry((t.index.clone(), t.term.clone()))
                .or_default()
                .insert(meta.created, key.to_string());
        }
        self.docs.insert(key.to_string(), meta);
    }

    fn unlink(&mut self, key: &str) -> Option<Meta> {
        let meta = self.docs.remove(key)?;
        self.by_created.remove(&meta.created);
        for t in &meta.terms {
            let k = (t.index.clone(), t.term.clone());
            if let Some(set) = self.index.get_mut(&k) {
                set.remove(&meta.created);
                if set.is_empty() {
                    self.index.remove(&k);
                }
            }
        }
        Some(meta)
    }
}

#[derive(Debug, Default)]
struct State {
    spaces: HashMap<String, Space>,
    clock: u64,
}

/// The `json-dir` backend.
#[derive(Debug)]
pub struct JsonDirBackend {
    root: PathBuf,
    state: Arc<Mutex<State>>,
    temporary: bool,
}

fn io(path: &Path, e: std::io::Error) -> Error {
    Error::Unavailable {
        backend: "json-dir".into(),
        reason: format!("{}: {e}", path.display()),
    }
}

fn check(ns: &str, key: &str, pre: Precondition, current: Option<&Meta>) -> Result<()> {
    pre.check(ns, key, current.map(|m| Version(m.version)))
}

impl JsonDirBackend {
    /// What it offers.
    pub const CAPABILITIES: Capabilities = Capabilities {
        ttl: true,
        scan: true,
        scan_by_creation: true,
        count: true,
        time_order: true,
        native_batch: false,
        transactions: false,
        partitioned_transactions: false,
        atomic_index: true,
        durable: true,
        // the plugin ABI (1.x) carries neither namespaces nor index terms
        export: false,
    };

    /// Opens (creating) the directory and rebuilds the indexes from its
    /// files. A file that cannot be read fails the open with `Corrupted`
    /// naming it; nothing is deleted.
    pub fn open(root: PathBuf, temporary: bool) -> Result<Self> {
        if root.is_file() {
            return Err(Error::Config {
                key: "plugin.options.path".into(),
                value: root.display().to_string(),
                reason: "is a file; give a directory".into(),
            });
        }
        fs::create_dir_all(&root).map_err(|e| io(&root, e))?;
        let mut state = State::default();
        for ns_dir in fs::read_dir(&root).map_err(|e| io(&root, e))? {
            let ns_dir = ns_dir.map_err(|e| io(&root, e))?.path();
            let Some(ns) = ns_dir.file_name().and_then(|n| n.to_str()).and_then(unhex) else {
                continue;
            };
            let space = state.spaces.entry(ns).or_default();
            for file in fs::read_dir(&ns_dir).map_err(|e| io(&ns_dir, e))? {
                let file = file.map_err(|e| io(&ns_dir, e))?.path();
                let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
                let Some(key) = name.strip_suffix(".doc").and_then(unhex) else {
                    continue;
                };
                let bytes = fs::read(&file).map_err(|e| io(&file, e))?;
                let (meta, _) = Meta::parse(&bytes).map_err(|reason| Error::Corrupted {
                    namespace: String::new(),
                    key: file.display().to_string(),
                    reason,
                    len: bytes.len(),
                })?;
                state.clock = state.clock.max(meta.version);
                space.link(&key, meta);
            }
        }
        Ok(JsonDirBackend {
            root,
            state: Arc::new(Mutex::new(state)),
            temporary,
        })
    }

    fn file(root: &Path, ns: &str, key: &str) -> PathBuf {
        root.join(hex(ns)).join(format!("{}.doc", hex(key)))
    }

    /// Runs blocking work on the plugin's blocking pool.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Path, &Mutex<State>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (root, state) = (self.root.clone(), self.state.clone());
        tokio::task::spawn_blocking(move || f(&root, &state))
            .await
            .map_err(|e| Error::Internal {
                backend: "json-dir".into(),
                message: e.to_string(),
            })?
    }
}

impl Drop for JsonDirBackend {
    fn drop(&mut self) {
        if self.temporary {
            let _ = fs::remove_dir_all(&self.root);
        }
    }
}

/// Writes `bytes` to `path` atomically and durably.
fn write_atomic(path: &Path, bytes: &[&[u8]]) -> std::io::Result<()> {
    let dir = path.parent().expect("document files live in a directory");
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".tmp-{}-{}", std::process::id(), now_us()));
    let mut f = fs::File::create(&tmp)?;
    for b in bytes {
        f.write_all(b)?;
    }
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    fs::File::open(dir)?.sync_all()
}

fn read_doc(path: &Path, ns: &str, key: &str) -> Result<Option<Document>> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(path, e)),
    };
    let (meta, value) = Meta::parse(&bytes).map_err(|reason| Error::Corrupted {
        namespace: ns.into(),
        key: key.into(),
        reason,
        len: bytes.len(),
    })?;
    if !meta.live(now_ms()) {
        return Ok(None);
    }
    Ok(Some(Document {
        value: Bytes::copy_from_slice(value),
        version: Version(meta.version),
        created: meta.created,
        expires_at: (meta.expires != 0).then(|| UNIX_EPOCH + Duration::from_millis(meta.expires)),
    }))
}

#[async_trait]
impl Backend for JsonDirBackend {
    fn name(&self) -> &str {
        "json-dir"
    }

    fn capabilities(&self) -> Capabilities {
        Self::CAPABILITIES
    }

    async fn get(&self, namespace: &str, key: &str) -> Result<Option<Document>> {
        let (ns, key) = (namespace.to_string(), key.to_string());
        self.blocking(move |root, _| read_doc(&Self::file(root, &ns, &key), &ns, &key))
            .await
    }

    async fn put(
        &self,
        namespace: &str,
        key: &str,
        write: DocumentWrite,
        precondition: Precondition,
    ) -> Result<Version> {
        let (ns, key) = (namespace.to_string(), key.to_string());
        self.blocking(move |root, state| {
            let mut state = state.lock().expect("json-dir state lock");
            let now = now_ms();
            let version = now_us().max(state.clock + 1);
            state.clock = version;
            let space = state.spaces.entry(ns.clone()).or_default();
            let live = space.docs.get(&key).filter(|m| m.live(now));
            check(&ns, &key, precondition, live)?;
            let terms = IndexTerm::dedup(write.index);
            let meta = Meta {
                version,
                created: live.map_or(version, |m| m.created),
                expires: write.ttl.map_or(0, |t| now + (t.as_millis() as u64).max(1)),
                terms,
            };
            let path = Self::file(root, &ns, &key);
            write_atomic(&path, &[&meta.header(), &write.value]).map_err(|e| io(&path, e))?;
            space.unlink(&key);
            space.link(&key, meta);
            Ok(Version(version))
        })
        .await
    }

    async fn remove(&self, namespace: &str, key: &str, precondition: Precondition) -> Result<bool> {
        precondition.check_removal(namespace, key)?;
        let (ns, key) = (namespace.to_string(), key.to_string());
        self.blocking(move |root, state| {
            let mut state = state.lock().expect("json-dir state lock");
            let now = now_ms();
            let space = state.spaces.entry(ns.clone()).or_default();
            let live = space.docs.get(&key).filter(|m| m.live(now)).cloned();
            check(&ns, &key, precondition, live.as_ref())?;
            let path = Self::file(root, &ns, &key);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&path, e)),
            }
            space.unlink(&key);
            Ok(live.is_some())
        })
        .await
    }

    async fn lookup(&self, namespace: &str, index: &str, term: &str) -> Result<Vec<String>> {
        let state = self.state.lock().expect("json-dir state lock");
        let now = now_ms();
        let Some(space) = state.spaces.get(namespace) else {
            return Ok(Vec::new());
        };
        let Some(keys) = space.index.get(&(index.to_string(), term.to_string())) else {
            return Ok(Vec::new());
        };
        Ok(keys
            .values()
            .filter(|k| space.docs.get(*k).is_some_and(|m| m.live(now)))
            .cloned()
            .collect())
    }

    async fn scan(&self, namespace: &str, request: ScanRequest) -> Result<ScanPage> {
        request.check(self.name(), &Self::CAPABILITIES)?;
        let limit = request.limit.max(1);
        let keys: Vec<String> = {
            let state = self.state.lock().expect("json-dir state lock");
            let now = now_ms();
            let Some(space) = state.spaces.get(namespace) else {
                return Ok(ScanPage::default());
            };
            let live = |k: &String| space.docs.get(k).is_some_and(|m| m.live(now));
            match request.order {
                ScanOrder::Key => {
                    let start = request
                        .cursor
                        .clone()
                        .map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
                    space
                        .docs
                        .range((start, std::ops::Bound::Unbounded))
                        .map(|(k, _)| k)
                        .filter(|k| live(k))
                        .take(limit + 1)
                        .cloned()
                        .collect()
                }
                _ => {
                    let span = request.stamp_span()?;
                    if span.start >= span.end {
                        return Ok(ScanPage::default());
                    }
                    let range = space.by_created.range(span).map(|(_, k)| k);
                    let range: Box<dyn Iterator<Item = &String>> = match request.order {
                        ScanOrder::NewestFirst => Box::new(range.rev()),
                        _ => Box::new(range),
                    };
                    range.filter(|k| live(k)).take(limit + 1).cloned().collect()
                }
            }
        };
        let more = keys.len() > limit;
        let mut entries = Vec::with_capacity(limit);
        for key in keys.into_iter().take(limit) {
            if let Some(doc) = self.get(namespace, &key).await? {
                entries.push((key, doc));
            }
        }
        Ok(ScanPage::after_last(entries, request.order, more))
    }

    async fn count(&self, namespace: &str) -> Result<u64> {
        let state = self.state.lock().expect("json-dir state lock");
        let now = now_ms();
        Ok(state.spaces.get(namespace).map_or(0, |s| {
            s.docs.values().filter(|m| m.live(now)).count() as u64
        }))
    }

    async fn health(&self) -> Health {
        let mut h = Health::ok(
            "json-dir",
            format!("documents as files under {}", self.root.display()),
        );
        h.details
            .insert("path".into(), self.root.display().to_string());
        h
    }
}
