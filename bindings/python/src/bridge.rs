//! Awaitables on the caller's asyncio loop for futures run on the module's
//! runtime, resolved many per wake-up of the loop.
//!
//! A call creates a future of the running loop and spawns its work on the
//! runtime. When the work is done, its outcome joins the loop's queue of
//! finished calls; only the first one into an empty queue wakes the loop,
//! which then drains the queue: on the loop's thread it turns every outcome
//! waiting into Python objects and sets it on its future. Under load one
//! wake-up serves many calls, the loop's thread does the conversions, and
//! the runtime's threads never wait for it.
//!
//! The wake-up is an `eventfd` the loop watches (`add_reader`, registered
//! at the loop's first call): a runtime thread writes 8 bytes to it and
//! never takes the GIL, so it neither waits for the loop's thread to let
//! the GIL go nor makes it stop to hand it over. A loop without
//! `add_reader` (Windows' proactor loop) is woken with
//! `call_soon_threadsafe`, which takes the GIL.
//!
//! A call whose future is cancelled (a `wait_for` timeout) still runs to
//! its end on the runtime; its outcome is dropped.
//!
//! At interpreter exit. Once CPython starts finalizing, a thread it does not
//! own that waits for the GIL is ended with `pthread_exit`, which aborts the
//! process when it unwinds through Rust frames. A runtime thread can be
//! waiting for the GIL without having asked for it anew: `call_soon_threadsafe`
//! lets the GIL go while it writes to the loop's wake-up socket, and the
//! loop's thread may finish the program meanwhile. So every runtime thread
//! enters Python through [`attach`], which counts it, and an `atexit`
//! callback ([`close`], registered at import) shuts that door and waits,
//! with the GIL released, until no runtime thread is inside. Outcomes that
//! finish after it are dropped: nothing can await them any more.

use std::cell::Cell;
use std::collections::HashMap;
use std::future::Future;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::{intern, BoundObject};

type Resolve = Box<dyn FnOnce(Python<'_>) -> PyResult<Py<PyAny>> + Send>;

/// A finished call: its loop future, and how to make its result.
struct Finished {
    future: Py<PyAny>,
    resolve: Resolve,
}

/// One event loop's finished calls.
struct LoopQueue {
    event_loop: Py<PyAny>,
    finished: Mutex<Vec<Finished>>,
    /// Whether a drain is asked for and has not started yet.
    scheduled: AtomicBool,
    /// The eventfd the loop watches, or `None` where the loop has no
    /// `add_reader` and is woken with `call_soon_threadsafe`.
    wake_fd: Option<OwnedFd>,
}

/// The queues of the loops that made calls, by the loop's address; a
/// closed loop's queue goes when a new loop makes its first call, or when a
/// call finishes after its loop closed.
static QUEUES: LazyLock<Mutex<HashMap<usize, Arc<LoopQueue>>>> = LazyLock::new(Default::default);

thread_local! {
    /// Whether this thread is one of the module runtime's.
    static RUNTIME_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// Set by [`close`]: runtime threads no longer enter Python.
static CLOSING: AtomicBool = AtomicBool::new(false);

/// How many runtime threads are inside [`attach`].
static INSIDE: AtomicUsize = AtomicUsize::new(0);

/// The longest [`close`] waits for runtime threads to leave Python.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Marks the calling thread as the runtime's (the runtime builder's
/// `on_thread_start`).
pub fn mark_runtime_thread() {
    RUNTIME_THREAD.with(|t| t.set(true));
}

/// Runs `f` attached to the interpreter. On a runtime thread, only while
/// the interpreter is not exiting: `None` once [`close`] has run.
pub fn attach<R>(f: impl for<'py> FnOnce(Python<'py>) -> R) -> Option<R> {
    if !RUNTIME_THREAD.with(Cell::get) {
        return Some(Python::attach(f));
    }
    struct Leave;
    impl Drop for Leave {
        fn drop(&mut self) {
            INSIDE.fetch_sub(1, Ordering::SeqCst);
        }
    }
    // counted before the check, so `close` either sees this thread or this
    // thread sees `close`
    INSIDE.fetch_add(1, Ordering::SeqCst);
    let _leave = Leave;
    if CLOSING.load(Ordering::SeqCst) {
        return None;
    }
    Python::try_attach(f)
}

/// The `atexit` callback: stops runtime threads entering Python and waits
/// (at most [`CLOSE_WAIT`], the GIL released) for those inside to leave.
#[pyfunction]
pub fn close(py: Python<'_>) {
    CLOSING.store(true, Ordering::SeqCst);
    py.detach(|| {
        let deadline = Instant::now() + CLOSE_WAIT;
        while INSIDE.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    });
}

fn queues() -> std::sync::MutexGuard<'static, HashMap<usize, Arc<LoopQueue>>> {
    QUEUES.lock().unwrap_or_else(|p| p.into_inner())
}

/// The queue of `event_loop`, made at its first call.
///
/// Python runs only while [`QUEUES`] is not locked: Python code can let
/// the GIL go to another thread, which could then wait for the lock with
/// the GIL held, and neither would go on.
fn queue_of(event_loop: &Bound<'_, PyAny>) -> Arc<LoopQueue> {
    let py = event_loop.py();
    let id = event_loop.as_ptr() as usize;
    if let Some(queue) = queues().get(&id) {
        return queue.clone();
    }
    // a new loop (each `asyncio.run` makes one): let closed ones go, so
    // the queues do not keep them alive
    let known: Vec<(usize, Arc<LoopQueue>)> =
        queues().iter().map(|(k, q)| (*k, q.clone())).collect();
    let closed: Vec<usize> = known
        .into_iter()
        .filter(|(_, q)| {
            let closed = q.event_loop.bind(py).call_method0(intern!(py, "is_closed"));
            closed.and_then(|c| c.is_truthy()).unwrap_or(true)
        })
        .map(|(k, _)| k)
        .collect();
    // the loop's reader keeps this queue (and its eventfd) alive for as
    // long as the loop watches it, whatever the map holds
    let queue = LoopQueue::watched(event_loop);
    let gone: Vec<_> = {
        let mut queues = queues();
        queues.insert(id, queue.clone());
        closed.iter().filter_map(|k| queues.remove(k)).collect()
    };
    // dropped unlocked: the last reference to a loop runs its finalizer
    drop(gone);
    queue
}

/// A new eventfd that never blocks, or `None` if the system refuses one.
fn eventfd() -> Option<OwnedFd> {
    // SAFETY: eventfd takes no pointers; a non-negative result is a new
    // descriptor that nothing else owns
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

impl LoopQueue {
    fn new(event_loop: &Bound<'_, PyAny>, wake_fd: Option<OwnedFd>) -> Arc<Self> {
        Arc::new(LoopQueue {
            event_loop: event_loop.clone().unbind(),
            finished: Mutex::new(Vec::new()),
            scheduled: AtomicBool::new(false),
            wake_fd,
        })
    }

    /// The queue of `event_loop`, which watches the queue's eventfd; or,
    /// where the loop cannot watch one, a queue woken with
    /// `call_soon_threadsafe`.
    fn watched(event_loop: &Bound<'_, PyAny>) -> Arc<Self> {
        if let Some(fd) = eventfd() {
            let raw = fd.as_raw_fd();
            let queue = Self::new(event_loop, Some(fd));
            let watching = event_loop.call_method1("add_reader", (raw, Drain(queue.clone())));
            if watching.is_ok() {
                return queue;
            }
            // dropping this queue closes its eventfd; the loop holds no
            // reference to it
        }
        Self::new(event_loop, None)
    }

    /// Adds a finished call; wakes the loop if no drain is pending.
    fn push(self: &Arc<Self>, done: Finished) {
        self.finished
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(done);
        if self.scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Some(fd) = &self.wake_fd {
            let one = 1u64.to_ne_bytes();
            loop {
                // SAFETY: writes 8 bytes from a live buffer to a descriptor
                // this queue owns
                let n = unsafe { libc::write(fd.as_raw_fd(), one.as_ptr().cast(), one.len()) };
                if n >= 0
                    || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted
                {
                    // the counter cannot overflow: one write per drain
                    return;
                }
            }
        }
        let asked = attach(|py| {
            self.event_loop
                .bind(py)
                .call_method1("call_soon_threadsafe", (Drain(self.clone()),))
                .is_ok()
        });
        if asked != Some(true) {
            // the loop is closed, or the interpreter exiting: nobody awaits
            // these any more
            self.scheduled.store(false, Ordering::Release);
            self.finished
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clear();
            let gone = queues().remove(&(self.event_loop.as_ptr() as usize));
            drop(gone);
        }
    }

    /// Resets the eventfd's counter, so the loop stops seeing it readable.
    fn consume_wake(&self) {
        if let Some(fd) = &self.wake_fd {
            let mut count = [0u8; 8];
            // SAFETY: reads at most 8 bytes into a live buffer from a
            // descriptor this queue owns; nothing to read is EAGAIN
            unsafe { libc::read(fd.as_raw_fd(), count.as_mut_ptr().cast(), count.len()) };
        }
    }
}

/// The loop's callback that sets every finished call's result.
#[pyclass(frozen)]
struct Drain(Arc<LoopQueue>);

#[pymethods]
impl Drain {
    fn __call__(&self, py: Python<'_>) -> PyResult<()> {
        // before the flag: a call finishing after this read wakes the loop
        // anew
        self.0.consume_wake();
        self.0.scheduled.store(false, Ordering::Release);
        let finished =
            std::mem::take(&mut *self.0.finished.lock().unwrap_or_else(|p| p.into_inner()));
        for Finished { future, resolve } in finished {
            // one future that cannot be set must not leave the others unset
            if let Err(e) = settle(future.bind(py), resolve) {
                e.write_unraisable(py, None);
            }
        }
        Ok(())
    }
}

/// Sets a finished call's result or exception on its future, unless the
/// future was cancelled meanwhile.
fn settle(future: &Bound<'_, PyAny>, resolve: Resolve) -> PyResult<()> {
    let py = future.py();
    if future.call_method0(intern!(py, "done"))?.is_truthy()? {
        return Ok(());
    }
    match resolve(py) {
        Ok(value) => future.call_method1(intern!(py, "set_result"), (value,))?,
        Err(e) => future.call_method1(intern!(py, "set_exception"), (e.into_value(py),))?,
    };
    Ok(())
}

/// An awaitable of the running loop for `fut`, run on `runtime`.
pub fn awaitable<'py, F, T, E>(
    py: Python<'py>,
    runtime: &tokio::runtime::Runtime,
    fut: F,
) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = Result<T, E>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
    E: Into<PyErr> + Send + 'static,
{
    static GET_RUNNING_LOOP: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let event_loop = GET_RUNNING_LOOP
        .import(py, "asyncio", "get_running_loop")?
        .call0()?;
    let future = event_loop.call_method0(intern!(py, "create_future"))?;
    let queue = queue_of(&event_loop);
    let target = future.clone().unbind();
    runtime.spawn(async move {
        let outcome = fut.await;
        let resolve: Resolve = Box::new(move |py| {
            // the error too becomes a Python object here, on the loop's thread
            let value = outcome.map_err(Into::into)?;
            value
                .into_pyobject(py)
                .map(|v| v.into_any().unbind())
                .map_err(Into::into)
        });
        queue.push(Finished {
            future: target,
            resolve,
        });
    });
    Ok(future)
}
