//! `ta_persistence._native`: the task store, the document API, health and
//! stats of this library, for Python.
//!
//! Every call has an async form (an awaitable on the caller's asyncio
//! loop, run on the module's own tokio runtime, so the loop never blocks)
//! and a `_sync` form for scripts (the GIL is released while it waits).
//! Tasks cross as JSON text (the seed's shape, checked against the model
//! here); the Python package around this module turns them into dicts or
//! models. Errors are the exception classes below, each with `kind`,
//! `operation` and `detail` attributes. `docs/python.md` has the rest.

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, UNIX_EPOCH};

mod bridge;

/// The allocator of this module's Rust code. Work made on the loop's thread
/// is freed on a runtime thread and results made there are freed on the
/// loop's thread; glibc's malloc then takes the other thread's arena lock,
/// and under many concurrent calls both threads wait for it (a quarter of
/// the loop thread's time in futex calls, measured with `perf`).
/// mimalloc frees across threads without a lock. Python's own objects are
/// not affected: the interpreter allocates them itself.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use bytes::Bytes;
use persistence_core::backend::{DocumentWrite, Precondition, ScanOrder, ScanRequest, Version};
use persistence_core::config::Settings;
use persistence_core::factory::Factory;
use persistence_core::model::AgentTask;
use persistence_core::{Error, ErrorKind, SharedBackend, TaskStoreError};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

create_exception!(
    _native,
    PersistenceError,
    PyException,
    "Any error of this library: `kind`, `operation` and `detail` say what."
);
create_exception!(
    _native,
    NotFoundError,
    PersistenceError,
    "The key or task does not exist."
);
create_exception!(
    _native,
    AlreadyExistsError,
    PersistenceError,
    "The key or task exists already."
);
create_exception!(
    _native,
    ConflictError,
    PersistenceError,
    "The version did not match."
);
create_exception!(
    _native,
    UnavailableError,
    PersistenceError,
    "The engine cannot be reached."
);
create_exception!(
    _native,
    PersistenceTimeoutError,
    PersistenceError,
    "The call did not finish within its deadline."
);
create_exception!(
    _native,
    CorruptedError,
    PersistenceError,
    "A stored record does not decode; it is kept."
);
create_exception!(
    _native,
    ConfigError,
    PersistenceError,
    "The configuration is wrong."
);
create_exception!(
    _native,
    PluginError,
    PersistenceError,
    "A plugin broke its contract."
);
create_exception!(
    _native,
    InvalidInputError,
    PersistenceError,
    "The input is not valid."
);
create_exception!(
    _native,
    UnsupportedError,
    PersistenceError,
    "The engine cannot do this."
);

/// The Python exception for an error of `kind`, carrying its detail.
fn exception(kind: ErrorKind, operation: Option<&str>, detail: String) -> PyErr {
    let err = match kind {
        ErrorKind::NotFound => NotFoundError::new_err(detail.clone()),
        ErrorKind::AlreadyExists => AlreadyExistsError::new_err(detail.clone()),
        ErrorKind::Conflict => ConflictError::new_err(detail.clone()),
        ErrorKind::Unavailable => UnavailableError::new_err(detail.clone()),
        ErrorKind::Timeout => PersistenceTimeoutError::new_err(detail.clone()),
        ErrorKind::Corrupted => CorruptedError::new_err(detail.clone()),
        ErrorKind::Config => ConfigError::new_err(detail.clone()),
        ErrorKind::Plugin => PluginError::new_err(detail.clone()),
        ErrorKind::InvalidInput => InvalidInputError::new_err(detail.clone()),
        ErrorKind::Unsupported => UnsupportedError::new_err(detail.clone()),
        _ => PersistenceError::new_err(detail.clone()),
    };
    // always on a thread that holds the GIL (results and errors of async
    // calls are converted on the loop's thread)
    Python::attach(|py| {
        let value = err.value(py);
        let _ = value.setattr("kind", format!("{kind:?}"));
        let _ = value.setattr("operation", operation);
        let _ = value.setattr("detail", detail);
    });
    err
}

/// A failed call, as plain data: it becomes its Python exception
/// ([`exception`]) where it is raised, so a runtime thread never takes the
/// GIL to make one.
struct Failure {
    kind: ErrorKind,
    operation: Option<String>,
    detail: String,
}

impl From<Failure> for PyErr {
    fn from(f: Failure) -> PyErr {
        exception(f.kind, f.operation.as_deref(), f.detail)
    }
}

fn core_err(e: Error) -> Failure {
    Failure {
        kind: e.kind(),
        operation: None,
        detail: e.to_string(),
    }
}

fn task_err(e: TaskStoreError) -> Failure {
    Failure {
        kind: e.kind(),
        operation: Some(e.operation().to_string()),
        detail: e.to_string(),
    }
}

/// An awaitable of the caller's asyncio loop for `fut`, run on the
/// module's runtime.
fn awaitable<'py, F, T>(py: Python<'py>, fut: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = Result<T, Failure>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    bridge::awaitable(py, runtime(), fut)
}

fn runtime() -> &'static tokio::runtime::Runtime {
    pyo3_async_runtimes::tokio::get_runtime()
}

/// Runs `fut` on the module's runtime with the GIL released.
fn block_on<T: Send>(
    py: Python<'_>,
    fut: impl Future<Output = Result<T, Failure>> + Send,
) -> PyResult<T> {
    Ok(py.detach(|| runtime().block_on(fut))?)
}

/// Every built-in engine, and the settings from the process environment
/// (plus `env`), as the `ta-persist` CLI reads them.
///
/// A seed-004 deployment sets `TA_PERSISTENCE_MODULE` to the Python
/// adapter's file and `TA_PERSISTENCE_CLASS` to its class: those name
/// Python code, not a plugin library, and are not this library's settings
/// here.
fn load_settings(
    factory: &Factory,
    config: Option<String>,
    env: Option<HashMap<String, String>>,
) -> Result<Settings, Error> {
    let mut vars: Vec<(String, String)> = std::env::vars().collect();
    if vars
        .iter()
        .any(|(k, v)| k == "TA_PERSISTENCE_MODULE" && v.ends_with(".py"))
    {
        vars.retain(|(k, _)| k != "TA_PERSISTENCE_MODULE" && k != "TA_PERSISTENCE_CLASS");
    }
    if let Some(path) = config {
        vars.push(("TA_PERSISTENCE_CONFIG".into(), path));
    }
    vars.extend(env.unwrap_or_default());
    factory.load_settings_from_env(vars)
}

/// What opening chose: the engine, and why it fell back if it did.
#[derive(Debug, Clone)]
struct Opening {
    backend: SharedBackend,
    requested: String,
    fallback: Option<String>,
}

/// The agent-task store: create, load, update, delete, load by request id.
///
/// `TaskStore.open(config=None, env=None)` opens it from this library's
/// settings (`config/*.toml` and the `TA_*` variables, as `ta-persist`
/// does, with `env` added), through the same factory, layers and fallback.
#[pyclass(module = "ta_persistence._native", frozen)]
struct TaskStore {
    store: persistence_core::TaskStore,
    opening: Opening,
}

#[pymethods]
impl TaskStore {
    #[staticmethod]
    #[pyo3(signature = (config=None, env=None))]
    fn open(
        py: Python<'_>,
        config: Option<String>,
        env: Option<HashMap<String, String>>,
    ) -> PyResult<TaskStore> {
        // the factory's own task store: its namespace, TTL, layers, fallback
        let factory = persistence_builtin::factory();
        let settings = load_settings(&factory, config, env).map_err(core_err)?;
        let (store, opened) = block_on(py, async {
            factory.open_task_store(&settings).await.map_err(core_err)
        })?;
        let opening = Opening {
            backend: opened.backend,
            requested: opened.requested,
            fallback: opened.fallback_cause.map(|e| e.to_string()),
        };
        Ok(TaskStore { store, opening })
    }

    /// The engine in use (`memory` after a fallback).
    #[getter]
    fn backend(&self) -> String {
        self.opening.backend.name().to_string()
    }

    /// The engine the settings asked for.
    #[getter]
    fn requested(&self) -> String {
        self.opening.requested.clone()
    }

    /// Why it runs on memory instead, or `None`.
    #[getter]
    fn fallback_cause(&self) -> Option<String> {
        self.opening.fallback.clone()
    }

    /// The document API on the same engine.
    fn documents(&self) -> Documents {
        Documents {
            backend: self.opening.backend.clone(),
        }
    }

    fn create<'py>(&self, py: Python<'py>, task: String) -> PyResult<Bound<'py, PyAny>> {
        let store = self.store.clone();
        // parsed on the runtime: the caller's loop only hands the text over
        awaitable(py, async move {
            let task = parse_task(&task)?;
            store.create(&task).await.map(drop).map_err(task_err)
        })
    }

    fn create_sync(&self, py: Python<'_>, task: String) -> PyResult<()> {
        let task = parse_task(&task)?;
        block_on(py, async {
            self.store.create(&task).await.map(drop).map_err(task_err)
        })
    }

    fn load<'py>(&self, py: Python<'py>, task_id: String) -> PyResult<Bound<'py, PyAny>> {
        let store = self.store.clone();
        awaitable(py, async move {
            store
                .load(&task_id)
                .await
                .map_err(task_err)
                .map(|t| t.map(TaskDict))
        })
    }

    fn load_sync(&self, py: Python<'_>, task_id: String) -> PyResult<Option<TaskDict>> {
        block_on(py, async {
            self.store
                .load(&task_id)
                .await
                .map_err(task_err)
                .map(|t| t.map(TaskDict))
        })
    }

    fn update<'py>(&self, py: Python<'py>, task: String) -> PyResult<Bound<'py, PyAny>> {
        let store = self.store.clone();
        // parsed on the runtime: the caller's loop only hands the text over
        awaitable(py, async move {
            let task = parse_task(&task)?;
            store.update(&task).await.map(drop).map_err(task_err)
        })
    }

    fn update_sync(&self, py: Python<'_>, task: String) -> PyResult<()> {
        let task = parse_task(&task)?;
        block_on(py, async {
            self.store.update(&task).await.map(drop).map_err(task_err)
        })
    }

    fn delete<'py>(&self, py: Python<'py>, task_id: String) -> PyResult<Bound<'py, PyAny>> {
        let store = self.store.clone();
        awaitable(
            py,
            async move { store.delete(&task_id).await.map_err(task_err) },
        )
    }

    fn delete_sync(&self, py: Python<'_>, task_id: String) -> PyResult<()> {
        block_on(py, async {
            self.store.delete(&task_id).await.map_err(task_err)
        })
    }

    fn load_by_request_id<'py>(
        &self,
        py: Python<'py>,
        request_id: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let store = self.store.clone();
        awaitable(py, async move {
            store
                .load_by_request_id(&request_id)
                .await
                .map_err(task_err)
                .map(|t| t.map(TaskDict))
        })
    }

    fn load_by_request_id_sync(
        &self,
        py: Python<'_>,
        request_id: String,
    ) -> PyResult<Option<TaskDict>> {
        block_on(py, async {
            self.store
                .load_by_request_id(&request_id)
                .await
                .map_err(task_err)
                .map(|t| t.map(TaskDict))
        })
    }

    /// Health as JSON text: status, backend, details.
    fn health<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let backend = self.opening.backend.clone();
        awaitable(py, async move { Ok(health_json(&backend).await) })
    }

    fn health_sync(&self, py: Python<'_>) -> PyResult<String> {
        block_on(py, async { Ok(health_json(&self.opening.backend).await) })
    }

    /// Counters of the engine and its layers, as JSON text.
    fn stats(&self) -> PyResult<String> {
        serde_json::to_string(&self.opening.backend.stats())
            .map_err(|e| exception(ErrorKind::Internal, None, e.to_string()))
    }
}

fn parse_task(json: &str) -> Result<AgentTask, Failure> {
    serde_json::from_str(json).map_err(|e| Failure {
        kind: ErrorKind::InvalidInput,
        operation: None,
        detail: format!("not an agent task: {e}"),
    })
}

/// A task as Python gets it: a dict of the seed's JSON shape, the same
/// `json.loads` makes of the task's JSON text. Built straight from the
/// task where it is converted (for an async call, on the loop's thread):
/// no JSON text is written in Rust nor parsed in Python.
struct TaskDict(AgentTask);

impl<'py> IntoPyObject<'py> for TaskDict {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        pythonize::pythonize(py, &self.0)
            .map_err(|e| exception(ErrorKind::Internal, None, e.to_string()))
    }
}

async fn health_json(backend: &SharedBackend) -> String {
    let health = backend.health().await;
    serde_json::json!({
        "status": format!("{:?}", health.status).to_lowercase(),
        "backend": health.backend,
        "message": health.message,
        "latency_ms": health.latency_ms,
        "details": health.details,
    })
    .to_string()
}

/// The generic document API: namespaced keys holding bytes, with versions,
/// preconditions, index terms and TTLs.
#[pyclass(module = "ta_persistence._native", frozen)]
struct Documents {
    backend: SharedBackend,
}

/// `any` (default), `absent`, `present`, or a version number.
fn precondition(pre: Option<&Bound<'_, PyAny>>) -> PyResult<Precondition> {
    let Some(pre) = pre.filter(|p| !p.is_none()) else {
        return Ok(Precondition::Any);
    };
    if let Ok(v) = pre.extract::<u64>() {
        return Ok(Precondition::Version(Version(v)));
    }
    match pre.extract::<String>().as_deref() {
        Ok("any") => Ok(Precondition::Any),
        Ok("absent") => Ok(Precondition::Absent),
        Ok("present") => Ok(Precondition::Present),
        _ => Err(exception(
            ErrorKind::InvalidInput,
            None,
            format!(
                "precondition {pre}: expected \"any\", \"absent\", \"present\" or a version (a whole number of zero or more)"
            ),
        )),
    }
}

/// A stored document as Python gets it: a dict of value (bytes), version,
/// created, expires_at (Unix seconds or None). For an async call it is made
/// on the loop's thread, which holds the GIL anyway.
struct DocumentDict(persistence_core::backend::Document);

impl<'py> IntoPyObject<'py> for DocumentDict {
    type Target = PyDict;
    type Output = Bound<'py, PyDict>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let doc = self.0;
        let d = PyDict::new(py);
        d.set_item(intern!(py, "value"), PyBytes::new(py, &doc.value))?;
        d.set_item(intern!(py, "version"), doc.version.0)?;
        d.set_item(intern!(py, "created"), doc.created)?;
        d.set_item(
            intern!(py, "expires_at"),
            doc.expires_at.map(|t| {
                t.duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs_f64()
            }),
        )?;
        Ok(d)
    }
}

/// A page of a scan as Python gets it: `([(key, document dict)], cursor)`.
type PageTuple = (Vec<(String, DocumentDict)>, Option<String>);

fn page_tuple(page: persistence_core::backend::ScanPage) -> PageTuple {
    let entries = page
        .entries
        .into_iter()
        .map(|(k, d)| (k, DocumentDict(d)))
        .collect();
    (entries, page.cursor)
}

/// The arguments of a put, checked before any await.
struct PutArgs {
    ns: String,
    key: String,
    write: DocumentWrite,
    pre: Precondition,
}

impl Documents {
    fn put_args(
        ns: String,
        key: String,
        value: &[u8],
        terms: Option<Vec<(String, String)>>,
        ttl: Option<f64>,
        pre: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PutArgs> {
        let mut write = DocumentWrite::new(Bytes::copy_from_slice(value));
        for (index, term) in terms.unwrap_or_default() {
            write = write.with_term(index, term);
        }
        if let Some(secs) = ttl {
            // negative, NaN, inf and past what a Duration holds (1e300 s)
            // are refused by try_from_secs_f64; zero is no TTL either
            let ttl = Duration::try_from_secs_f64(secs)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    exception(
                        ErrorKind::InvalidInput,
                        None,
                        format!("ttl {secs}: expected a positive number of seconds"),
                    )
                })?;
            write = write.with_ttl(Some(ttl));
        }
        Ok(PutArgs {
            ns,
            key,
            write,
            pre: precondition(pre)?,
        })
    }
}

#[pymethods]
impl Documents {
    fn get<'py>(&self, py: Python<'py>, ns: String, key: String) -> PyResult<Bound<'py, PyAny>> {
        let backend = self.backend.clone();
        awaitable(py, async move {
            let doc = backend.get(&ns, &key).await.map_err(core_err)?;
            Ok(doc.map(DocumentDict))
        })
    }

    fn get_sync(&self, py: Python<'_>, ns: String, key: String) -> PyResult<Option<DocumentDict>> {
        let doc = block_on(py, async {
            self.backend.get(&ns, &key).await.map_err(core_err)
        })?;
        Ok(doc.map(DocumentDict))
    }

    /// Writes `value` under `key`; returns the new version.
    // the arguments are Python's keyword arguments
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (ns, key, value, terms=None, ttl=None, precondition=None))]
    fn put<'py>(
        &self,
        py: Python<'py>,
        ns: String,
        key: String,
        value: &[u8],
        terms: Option<Vec<(String, String)>>,
        ttl: Option<f64>,
        precondition: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let a = Self::put_args(ns, key, value, terms, ttl, precondition)?;
        let backend = self.backend.clone();
        awaitable(py, async move {
            let v = backend.put(&a.ns, &a.key, a.write, a.pre).await;
            v.map(|v| v.0).map_err(core_err)
        })
    }

    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (ns, key, value, terms=None, ttl=None, precondition=None))]
    fn put_sync(
        &self,
        py: Python<'_>,
        ns: String,
        key: String,
        value: &[u8],
        terms: Option<Vec<(String, String)>>,
        ttl: Option<f64>,
        precondition: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<u64> {
        let a = Self::put_args(ns, key, value, terms, ttl, precondition)?;
        block_on(py, async {
            let v = self.backend.put(&a.ns, &a.key, a.write, a.pre).await;
            v.map(|v| v.0).map_err(core_err)
        })
    }

    /// Removes `key`; returns whether it existed.
    #[pyo3(signature = (ns, key, precondition=None))]
    fn remove<'py>(
        &self,
        py: Python<'py>,
        ns: String,
        key: String,
        precondition: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let pre = self::precondition(precondition)?;
        let backend = self.backend.clone();
        awaitable(py, async move {
            backend.remove(&ns, &key, pre).await.map_err(core_err)
        })
    }

    #[pyo3(signature = (ns, key, precondition=None))]
    fn remove_sync(
        &self,
        py: Python<'_>,
        ns: String,
        key: String,
        precondition: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let pre = self::precondition(precondition)?;
        block_on(py, async {
            self.backend.remove(&ns, &key, pre).await.map_err(core_err)
        })
    }

    /// The keys whose document carries `term` in `index`, oldest first.
    fn lookup<'py>(
        &self,
        py: Python<'py>,
        ns: String,
        index: String,
        term: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let backend = self.backend.clone();
        awaitable(py, async move {
            backend.lookup(&ns, &index, &term).await.map_err(core_err)
        })
    }

    fn lookup_sync(
        &self,
        py: Python<'_>,
        ns: String,
        index: String,
        term: String,
    ) -> PyResult<Vec<String>> {
        block_on(py, async {
            self.backend
                .lookup(&ns, &index, &term)
                .await
                .map_err(core_err)
        })
    }

    /// One page of `ns`: `(entries, cursor)`, entries as `(key, document
    /// dict)`; pass the cursor back for the next page (`None`: done).
    /// `order` is `"key"`, `"created"` (oldest first) or `"newest"` (newest first).
    #[pyo3(signature = (ns, limit=100, cursor=None, order="key"))]
    fn scan_sync(
        &self,
        py: Python<'_>,
        ns: String,
        limit: usize,
        cursor: Option<String>,
        order: &str,
    ) -> PyResult<PageTuple> {
        let request = scan_request(limit, cursor, order)?;
        let page = block_on(py, async {
            self.backend.scan(&ns, request).await.map_err(core_err)
        })?;
        Ok(page_tuple(page))
    }

    #[pyo3(signature = (ns, limit=100, cursor=None, order="key"))]
    fn scan<'py>(
        &self,
        py: Python<'py>,
        ns: String,
        limit: usize,
        cursor: Option<String>,
        order: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        let request = scan_request(limit, cursor, order)?;
        let backend = self.backend.clone();
        awaitable(py, async move {
            let page = backend.scan(&ns, request).await.map_err(core_err)?;
            Ok(page_tuple(page))
        })
    }
}

fn scan_request(limit: usize, cursor: Option<String>, order: &str) -> PyResult<ScanRequest> {
    let order = match order {
        "key" => ScanOrder::Key,
        "created" => ScanOrder::Created,
        "newest" => ScanOrder::NewestFirst,
        other => {
            return Err(exception(
                ErrorKind::InvalidInput,
                None,
                format!("order {other:?}: expected \"key\", \"created\" or \"newest\""),
            ))
        }
    };
    Ok(ScanRequest {
        cursor,
        ..ScanRequest::first(order, limit.max(1))
    })
}

/// The blocking pool's most threads (sled runs every call there, redb its
/// scans): enough for the engines, few enough that a burst of calls does
/// not crowd the caller's own threads off the processor.
const MAX_BLOCKING_THREADS: usize = 16;

/// The runtime's worker threads: one fewer than the processors, at least
/// one. The caller's loop keeps a processor busy on its own, so a worker
/// per processor only makes the runtime's tasks hop between threads (on
/// this 2-core machine one worker gave create, update and load higher
/// ratios in the binding's bench, load_by_request_id mostly higher, and
/// delete even ones: docs/python.md).
fn worker_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder
        .enable_all()
        .thread_name("ta-persistence")
        .worker_threads(worker_threads())
        .on_thread_start(bridge::mark_runtime_thread)
        .max_blocking_threads(MAX_BLOCKING_THREADS);
    pyo3_async_runtimes::tokio::init(builder);
    py.import("atexit")?
        .call_method1("register", (wrap_pyfunction!(bridge::close, m)?,))?;
    m.add_class::<TaskStore>()?;
    m.add_class::<Documents>()?;
    for (name, class) in [
        ("PersistenceError", py.get_type::<PersistenceError>()),
        ("NotFoundError", py.get_type::<NotFoundError>()),
        ("AlreadyExistsError", py.get_type::<AlreadyExistsError>()),
        ("ConflictError", py.get_type::<ConflictError>()),
        ("UnavailableError", py.get_type::<UnavailableError>()),
        (
            "PersistenceTimeoutError",
            py.get_type::<PersistenceTimeoutError>(),
        ),
        ("CorruptedError", py.get_type::<CorruptedError>()),
        ("ConfigError", py.get_type::<ConfigError>()),
        ("PluginError", py.get_type::<PluginError>()),
        ("InvalidInputError", py.get_type::<InvalidInputError>()),
        ("UnsupportedError", py.get_type::<UnsupportedError>()),
    ] {
        m.add(name, class)?;
    }
    Ok(())
}
