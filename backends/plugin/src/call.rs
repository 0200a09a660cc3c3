//! A backend inside a plugin: every call goes through the envelope.

use std::collections::HashMap;
use std::ffi::c_void;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use persistence_core::backend::{
    check_transaction, Backend, Capabilities, Document, DocumentWrite, Health, HealthStatus,
    Precondition, ScanPage, ScanRequest, Stats, TxOutcome, TxWrite, Version,
};
use persistence_core::{Error, Result};
use persistence_plugin_sdk::abi::{RBuffer, RStr, STATUS_OK, STATUS_PENDING};
use persistence_plugin_sdk::codec::{decode_error, Request, Response};
use tokio::sync::oneshot;

use crate::library::PluginLibrary;
use crate::process::{Hello, Supervisor};

/// A backend created by a plugin. Calls never block the caller's thread
/// while the plugin waits: the plugin answers at once or calls back. A
/// plugin whose `call` itself held the caller's thread longer than
/// [`BLOCKING_CALL`] is marked, and from then on each of its calls runs on
/// the blocking pool under the call deadline, so it cannot stall the
/// runtime's workers again. With process isolation
/// ([`ProcessIsolation`](crate::ProcessIsolation)) the plugin lives in a
/// runner process instead, and the same calls cross a socket.
pub struct PluginBackend {
    plugin: String,
    version: String,
    path: String,
    backend: String,
    capabilities: Capabilities,
    call_timeout: Duration,
    link: Link,
}

/// Where the plugin's code runs.
enum Link {
    /// Loaded into this process.
    Loaded(Loaded),
    /// In a runner process of its own.
    Process(Arc<Supervisor>),
}

/// A plugin loaded into this process.
struct Loaded {
    library: Arc<PluginLibrary>,
    instance: Arc<Instance>,
    /// Set once a call held the caller's thread too long.
    blocks: AtomicBool,
}

/// How long a plugin's `call` may hold the caller's thread before the host
/// stops calling it there.
pub const BLOCKING_CALL: Duration = Duration::from_millis(10);

/// How long the host waits for a plugin's answer unless told otherwise.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A live instance, destroyed when the backend and every call still on a
/// thread are done with it.
struct Instance {
    ptr: *mut c_void,
    library: Arc<PluginLibrary>,
}
// SAFETY: the SDK's instances are an `Arc<dyn Backend>` behind a box: Send + Sync.
unsafe impl Send for Instance {}
// SAFETY: as above.
unsafe impl Sync for Instance {}

impl Instance {
    /// Hands `request` to the plugin's `call`, with the waiting call's `id`
    /// as the callback context.
    fn call(&self, request: &[u8], id: usize) -> Answer {
        let mut response = RBuffer::EMPTY;
        // SAFETY: the instance is live (`self`) and the request outlives the
        // call; `ctx` is an id, not memory.
        let status = unsafe {
            (self.library.descriptor.call)(
                self.ptr,
                RStr::new(request),
                answered,
                id as *mut c_void,
                &mut response,
            )
        };
        Answer(status, response)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        // SAFETY: the instance came from this library's `create`, destroyed once
        unsafe { (self.library.descriptor.destroy)(self.ptr) };
    }
}

/// An answer buffer moving from the thread that called the plugin.
struct Answer(i32, RBuffer);
// SAFETY: a buffer the plugin handed over; only its owner touches it.
unsafe impl Send for Answer {}

impl fmt::Debug for PluginBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginBackend")
            .field("plugin", &self.plugin)
            .field("backend", &self.backend)
            .field(
                "isolation",
                &match self.link {
                    Link::Loaded(_) => "none",
                    Link::Process(_) => "process",
                },
            )
            .finish_non_exhaustive()
    }
}

/// What the callback needs: where to send the answer, and how to free it
/// if nobody waits any more.
struct Waiting {
    tx: oneshot::Sender<(i32, RBuffer)>,
    free: unsafe extern "C" fn(RBuffer),
}

/// Calls waiting for their answer, by the id handed to the plugin as the
/// callback's `ctx`. The context is an id, never a pointer to host memory:
/// a plugin that answers twice, answers late, answers a call it already
/// answered inline, or forges a context finds no entry, and the host ignores
/// that answer (and counts it) instead of touching freed memory.
static WAITING: LazyLock<Mutex<HashMap<usize, Waiting>>> = LazyLock::new(Default::default);
/// Largest answer the host reads from a plugin (a scan page of large
/// documents fits many times over).
pub const MAX_ANSWER: usize = 1 << 30;

static NEXT_CALL: AtomicUsize = AtomicUsize::new(1);
static IGNORED_ANSWERS: AtomicU64 = AtomicU64::new(0);

/// Answers plugins delivered that no call was waiting for (a second answer,
/// an answer after an inline one, a forged context), since the process began.
pub fn ignored_answers() -> u64 {
    IGNORED_ANSWERS.load(Ordering::Relaxed)
}

unsafe extern "C" fn answered(ctx: *mut c_void, status: i32, response: RBuffer) {
    let waiting = WAITING.lock().remove(&(ctx as usize));
    let Some(waiting) = waiting else {
        IGNORED_ANSWERS.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            "a plugin answered a call that was not waiting (answered twice, late, or with a \
             forged context); the answer is ignored and its buffer leaked, since the host \
             cannot know which plugin's allocator it came from"
        );
        return;
    };
    if let Err((_, buffer)) = waiting.tx.send((status, response)) {
        // the caller went away: the plugin's buffer still goes back to it
        // SAFETY: freed once, by the side that allocated it
        unsafe { (waiting.free)(buffer) };
    }
}

impl PluginBackend {
    pub(crate) fn new(
        library: Arc<PluginLibrary>,
        instance: *mut c_void,
        backend: String,
        capabilities: Capabilities,
    ) -> Self {
        PluginBackend {
            plugin: library.name().into(),
            version: library.version().into(),
            path: library.path().display().to_string(),
            backend,
            capabilities,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            link: Link::Loaded(Loaded {
                instance: Arc::new(Instance {
                    ptr: instance,
                    library: library.clone(),
                }),
                library,
                blocks: AtomicBool::new(false),
            }),
        }
    }

    /// A backend whose plugin lives in the runner `supervisor` watches.
    pub(crate) fn isolated(supervisor: Arc<Supervisor>, hello: Hello) -> Self {
        PluginBackend {
            plugin: hello.plugin,
            version: hello.version,
            path: hello.path,
            backend: hello.backend,
            capabilities: hello.capabilities,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            link: Link::Process(supervisor),
        }
    }

    /// What the plugin declared for this backend, before the host's own
    /// limits (what a runner reports to its host).
    pub(crate) fn declared(&self) -> Capabilities {
        self.capabilities
    }

    /// Waits at most `limit` for each answer (default
    /// [`DEFAULT_CALL_TIMEOUT`]); past it the call fails with `Timeout` and
    /// a late answer is ignored, so a plugin that never answers costs a
    /// bounded wait, never a hang or a growing table.
    pub fn with_call_timeout(mut self, limit: Duration) -> Self {
        self.call_timeout = limit;
        self
    }

    /// Sends `request` to the plugin, wherever it runs, and decodes its
    /// answer; at most the call timeout.
    pub(crate) async fn call(&self, request: Request) -> Result<Response> {
        let deadline = tokio::time::Instant::now() + self.call_timeout;
        let loaded = match &self.link {
            Link::Loaded(loaded) => loaded,
            Link::Process(runner) => {
                let (status, body) = runner
                    .call(&request, deadline, || self.timed_out(&request))
                    .await?;
                return if status == STATUS_OK {
                    Response::decode(&request, &body)
                } else {
                    Err(decode_error(&body))
                };
            }
        };
        let bytes = request.encode();
        let descriptor = loaded.library.descriptor;
        let (tx, mut rx) = oneshot::channel();
        let id = NEXT_CALL.fetch_add(1, Ordering::Relaxed);
        let waiting = Waiting {
            tx,
            free: descriptor.free_buffer,
        };
        WAITING.lock().insert(id, waiting);
        let Answer(status, response) = if loaded.blocks.load(Ordering::Relaxed) {
            // the blocking thread holds the instance alive past this backend
            let instance = loaded.instance.clone();
            let on_thread = move || instance.call(&bytes, id);
            match tokio::time::timeout_at(deadline, tokio::task::spawn_blocking(on_thread)).await {
                Ok(Ok(answer)) => answer,
                Ok(Err(e)) => {
                    WAITING.lock().remove(&id);
                    return Err(Error::Plugin {
                        plugin: self.plugin.clone(),
                        message: format!("its call failed on its thread: {e}"),
                    });
                }
                Err(_) => {
                    // still inside the plugin: its answer, if any, is ignored
                    WAITING.lock().remove(&id);
                    return Err(self.timed_out(&request));
                }
            }
        } else {
            let started = std::time::Instant::now();
            let answer = loaded.instance.call(&bytes, id);
            let held = started.elapsed();
            if held > BLOCKING_CALL && !loaded.blocks.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    plugin = self.plugin,
                    held = ?held,
                    "a plugin call held the caller's thread; its calls now run on the blocking pool"
                );
            }
            answer
        };
        let (status, buffer) = if status == STATUS_PENDING {
            match tokio::time::timeout_at(deadline, rx).await {
                Ok(answer) => answer.map_err(|_| Error::Plugin {
                    plugin: self.plugin.clone(),
                    message: "the plugin dropped a call without answering".into(),
                })?,
                Err(_) => {
                    // from now on its answer, if any, is an ignored one
                    WAITING.lock().remove(&id);
                    return Err(self.timed_out(&request));
                }
            }
        } else {
            // answered at once: a callback for this call from now on is ignored
            if WAITING.lock().remove(&id).is_none() {
                // it also called back before returning: the inline answer
                // wins, the earlier one is the extra
                IGNORED_ANSWERS.fetch_add(1, Ordering::Relaxed);
                if let Ok((_, extra)) = rx.try_recv() {
                    // SAFETY: this plugin's buffer, freed once
                    unsafe { (descriptor.free_buffer)(extra) };
                }
            }
            (status, response)
        };
        if let Err(e) = self.check_buffer(&buffer) {
            // SAFETY: the plugin's buffer, given back once, never read
            unsafe { (descriptor.free_buffer)(buffer) };
            return Err(e);
        }
        // copy out, then give the buffer back to the plugin
        // SAFETY: a live plugin buffer of a checked shape, freed exactly once right after
        let decoded = unsafe {
            let body = buffer.as_bytes();
            let out = if status == STATUS_OK {
                Response::decode(&request, body)
            } else {
                Err(decode_error(body))
            };
            (descriptor.free_buffer)(buffer);
            out
        };
        decoded
    }

    /// Refuses an answer buffer whose shape cannot be right: a null
    /// pointer with a length, a length past its capacity, or past
    /// [`MAX_ANSWER`]. (A length that lies within those bounds cannot be
    /// detected from this side; the envelope's own framing then fails to
    /// decode.)
    fn check_buffer(&self, buffer: &RBuffer) -> Result<()> {
        let broken = if buffer.ptr.is_null() && buffer.len > 0 {
            Some(format!("a null buffer of {} bytes", buffer.len))
        } else if buffer.len > buffer.cap && !buffer.ptr.is_null() {
            Some(format!(
                "{} bytes in a buffer of {}",
                buffer.len, buffer.cap
            ))
        } else if buffer.len > MAX_ANSWER {
            Some(format!("{} bytes (at most {MAX_ANSWER})", buffer.len))
        } else {
            None
        };
        match broken {
            Some(what) => Err(Error::Plugin {
                plugin: self.plugin.clone(),
                message: format!("answered with {what}: broke the ABI's buffer rules"),
            }),
            None => Ok(()),
        }
    }

    fn timed_out(&self, request: &Request) -> Error {
        Error::Timeout {
            operation: format!("plugin {} {}", self.plugin, request.name()),
            after: self.call_timeout,
        }
    }

    fn unexpected(&self) -> Error {
        Error::Plugin {
            plugin: self.plugin.clone(),
            message: "answered with the wrong kind of response".into(),
        }
    }
}

#[async_trait]
impl Backend for PluginBackend {
    fn name(&self) -> &str {
        &self.backend
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            // ABI 1.0 has no batch request: batches cross one call per key,
            // whatever the plugin's backend declares
            native_batch: false,
            ..self.capabilities
        }
    }

    async fn get(&self, namespace: &str, key: &str) -> Result<Option<Document>> {
        match self
            .call(Request::Get {
                ns: namespace.into(),
                key: key.into(),
            })
            .await?
        {
            Response::Document(d) => Ok(d),
            _ => Err(self.unexpected()),
        }
    }

    async fn get_value(&self, namespace: &str, key: &str) -> Result<Option<Bytes>> {
        match self
            .call(Request::GetValue {
                ns: namespace.into(),
                key: key.into(),
            })
            .await?
        {
            Response::Value(v) => Ok(v),
            _ => Err(self.unexpected()),
        }
    }

    async fn put(
        &self,
        namespace: &str,
        key: &str,
        write: DocumentWrite,
        precondition: Precondition,
    ) -> Result<Version> {
        match self
            .call(Request::Put {
                ns: namespace.into(),
                key: key.into(),
                write,
                precondition,
            })
            .await?
        {
            Response::Version(v) => Ok(v),
            _ => Err(self.unexpected()),
        }
    }

    async fn remove(&self, namespace: &str, key: &str, precondition: Precondition) -> Result<bool> {
        match self
            .call(Request::Remove {
                ns: namespace.into(),
                key: key.into(),
                precondition,
            })
            .await?
        {
            Response::Removed(b) => Ok(b),
            _ => Err(self.unexpected()),
        }
    }

    async fn lookup(&self, namespace: &str, index: &str, term: &str) -> Result<Vec<String>> {
        match self
            .call(Request::Lookup {
                ns: namespace.into(),
                index: index.into(),
                term: term.into(),
            })
            .await?
        {
            Response::Keys(k) => Ok(k),
            _ => Err(self.unexpected()),
        }
    }

    async fn scan(&self, namespace: &str, request: ScanRequest) -> Result<ScanPage> {
        // what the plugin did not declare never crosses (a 1.0 plugin
        // would not know the request)
        request.check(self.name(), &self.capabilities())?;
        match self
            .call(Request::Scan {
                ns: namespace.into(),
                request,
            })
            .await?
        {
            Response::Page(p) => Ok(p),
            _ => Err(self.unexpected()),
        }
    }

    async fn transact(&self, writes: Vec<TxWrite>) -> Result<Vec<TxOutcome>> {
        // never sent to a plugin that did not declare it (one built for
        // 1.0 or 1.1 would not know the request)
        if !self.capabilities().transactions {
            return Err(self.unsupported("transactions"));
        }
        check_transaction(&writes)?;
        match self.call(Request::Transact { writes }).await? {
            // the codec checked the length and each outcome's kind
            Response::Outcomes(o) => Ok(o),
            _ => Err(self.unexpected()),
        }
    }

    async fn count(&self, namespace: &str) -> Result<u64> {
        match self
            .call(Request::Count {
                ns: namespace.into(),
            })
            .await?
        {
            Response::Count(n) => Ok(n),
            _ => Err(self.unexpected()),
        }
    }

    /// The host's own counters: answers no call was waiting for (ABI 1.0
    /// carries no stats from inside the plugin) and, with process
    /// isolation, the runners that ended and were started again.
    fn stats(&self) -> Stats {
        let mut stats = Stats::default();
        match &self.link {
            Link::Loaded(_) => stats.set("plugin_ignored_answers", ignored_answers()),
            Link::Process(runner) => {
                stats.set("plugin_ignored_answers", runner.ignored());
                stats.set("plugin_runner_exits", runner.exits());
                stats.set("plugin_runner_restarts", runner.restarts());
            }
        }
        stats
    }

    async fn health(&self) -> Health {
        let mut health = match self.call(Request::Health).await {
            Ok(Response::Health(h)) => h,
            answer => Health {
                status: HealthStatus::Down,
                backend: self.backend.clone(),
                message: match answer {
                    Err(e) => e.to_string(),
                    Ok(_) => self.unexpected().to_string(),
                },
                latency_ms: None,
                details: Default::default(),
            },
        };
        let details = &mut health.details;
        details.insert("plugin".into(), format!("{} {}", self.plugin, self.version));
        details.insert("plugin_path".into(), self.path.clone());
        if let Link::Process(runner) = &self.link {
            details.insert("isolation".into(), "process".into());
            if let Some(pid) = runner.pid() {
                details.insert("runner_pid".into(), pid.to_string());
            }
            details.insert("runner_restarts".into(), runner.restarts().to_string());
        }
        health
    }
}

/// Starting an instance: the library hands out backends of this module's type.
impl PluginLibrary {
    /// Starts backend `class` (optional when the plugin offers exactly one)
    /// with `config` (JSON bytes).
    pub fn create(self: &Arc<Self>, class: Option<&str>, config: &[u8]) -> Result<PluginBackend> {
        let offered = || {
            self.backends
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let (backend, caps) = match class {
            Some(c) => self
                .backends
                .iter()
                .find(|(n, _)| n == c)
                .cloned()
                .ok_or_else(|| Error::Config {
                    key: "plugin.class (TA_PERSISTENCE_CLASS)".into(),
                    value: c.to_string(),
                    reason: format!(
                        "plugin {} offers no such backend; it offers: {}",
                        self.name,
                        offered()
                    ),
                })?,
            None if self.backends.len() == 1 => self.backends[0].clone(),
            None => {
                return Err(Error::Config {
                    key: "plugin.class (TA_PERSISTENCE_CLASS)".into(),
                    value: String::new(),
                    reason: format!(
                        "plugin {} offers several backends, choose one of: {}",
                        self.name,
                        offered()
                    ),
                })
            }
        };
        let mut instance: *mut c_void = std::ptr::null_mut();
        let mut error = RBuffer::EMPTY;
        // SAFETY: valid slices and out-pointers for the duration of the call
        let status = unsafe {
            (self.descriptor.create)(
                RStr::new(backend.as_bytes()),
                RStr::new(config),
                &mut instance,
                &mut error,
            )
        };
        if status != STATUS_OK && !instance.is_null() {
            // an error with a live instance: the plugin's, destroyed once
            // SAFETY: the instance came from this library's `create`
            unsafe { (self.descriptor.destroy)(instance) };
            instance = std::ptr::null_mut();
        }
        if status != STATUS_OK || instance.is_null() {
            // SAFETY: the plugin filled `error`; it is freed by the plugin
            let cause = unsafe { decode_error(error.as_bytes()) };
            // SAFETY: as above, once
            unsafe { (self.descriptor.free_buffer)(error) };
            return Err(Error::Plugin {
                plugin: self.name.clone(),
                message: format!("backend {backend} failed to start: {cause}"),
            });
        }
        Ok(PluginBackend::new(self.clone(), instance, backend, caps))
    }
}
