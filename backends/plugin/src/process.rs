//! Process isolation (`plugin.isolation = "process"`): the plugin library
//! is loaded by a runner process of its own (`ta-persist-plugin-runner`),
//! and the host speaks the same request/response envelope to it over a Unix
//! socket. A plugin that aborts, segfaults, corrupts its memory or leaks
//! then takes down only its runner: the calls waiting on it fail with
//! `Unavailable`, and the next call after a backoff starts a new runner.
//!
//! The protocol is in `docs/plugin-abi.md` ("Process isolation"): frames of
//! a u32 length, a u64 call id and a u8 kind or status, then the body.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use persistence_core::backend::Capabilities;
use persistence_core::{Error, Result};
use persistence_plugin_sdk::abi::{capabilities_from_bits, capability_bits, STATUS_OK};
use persistence_plugin_sdk::codec::{decode_error, Reader, Request, Writer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::MAX_ANSWER;

/// Frame kind of the host's first frame: which library and backend to open.
pub(crate) const KIND_OPEN: u8 = 0;
/// Frame kind of every later host frame: one request envelope.
pub(crate) const KIND_CALL: u8 = 1;
/// Bytes after the length: the call id (u64) and the kind or status (u8).
const HEADER: usize = 9;
/// Largest frame body either side reads: an answer of [`MAX_ANSWER`] and
/// room for its framing. A longer claim ends the connection unread.
pub(crate) const MAX_BODY: usize = MAX_ANSWER + 64;

/// How long a new runner may take to load the library and answer the open.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// The first wait before restarting a runner that died; doubled for each
/// runner in a row that died without answering a call, up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between two restarts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// The file name of the runner binary the host looks for.
pub const RUNNER_BINARY: &str = "ta-persist-plugin-runner";

/// One frame: length, id, kind or status, body.
pub(crate) fn frame(id: u64, kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + HEADER + body.len());
    out.extend_from_slice(&((HEADER + body.len()) as u32).to_le_bytes());
    out.extend_from_slice(&id.to_le_bytes());
    out.push(kind);
    out.extend_from_slice(body);
    out
}

/// Reads one frame; `None` at a clean end of the stream. A length shorter
/// than the header or with a body over `max` is refused before anything is
/// allocated for it.
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
) -> std::io::Result<Option<(u64, u8, Vec<u8>)>> {
    let mut head = [0u8; 4 + HEADER];
    match r.read_exact(&mut head[..4]).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) as usize;
    if len < HEADER || len - HEADER > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("a frame claiming {len} bytes (a header of {HEADER}, a body of at most {max})"),
        ));
    }
    r.read_exact(&mut head[4..]).await?;
    let id = u64::from_le_bytes(head[4..12].try_into().expect("8 bytes"));
    let kind = head[12];
    let mut body = vec![0u8; len - HEADER];
    r.read_exact(&mut body).await?;
    Ok(Some((id, kind, body)))
}

/// Writes frames from `rx` in order, flushing whenever no more are queued.
/// A caller that gives up never leaves half a frame: only this task writes.
/// `queued` counts the bytes handed to `rx` and not yet written.
pub(crate) async fn write_frames<W: AsyncWrite + Unpin>(
    w: W,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
    queued: Arc<AtomicUsize>,
) -> std::io::Result<()> {
    let mut w = BufWriter::with_capacity(64 * 1024, w);
    while let Some(f) = rx.recv().await {
        w.write_all(&f).await?;
        queued.fetch_sub(f.len(), Ordering::Relaxed);
        while let Ok(f) = rx.try_recv() {
            w.write_all(&f).await?;
            queued.fetch_sub(f.len(), Ordering::Relaxed);
        }
        w.flush().await?;
    }
    w.shutdown().await
}

/// Most bytes of calls queued for a runner that is not reading them; past
/// it (with something queued already) calls fail fast with `Unavailable`
/// instead of growing the host's memory.
pub const MAX_QUEUED_BYTES: usize = 64 << 20;

/// What the host asks a new runner to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Open {
    pub module: String,
    pub sha256: Option<String>,
    pub class: Option<String>,
    pub config: Vec<u8>,
    pub call_timeout: Duration,
}

fn protocol_error(what: &str) -> Error {
    Error::Plugin {
        plugin: "runner".into(),
        message: format!("broke the runner protocol: {what}"),
    }
}

fn put_opt(w: &mut Writer, s: Option<&str>) {
    match s {
        Some(s) => w.u8(1).str(s),
        None => w.u8(0),
    };
}

fn get_opt(r: &mut Reader<'_>) -> Result<Option<String>> {
    match r.u8()? {
        0 => Ok(None),
        1 => Ok(Some(r.str()?)),
        _ => Err(protocol_error("an option flag other than 0 or 1")),
    }
}

fn done(r: &Reader<'_>) -> Result<()> {
    if r.at_end() {
        Ok(())
    } else {
        Err(protocol_error("bytes after the end"))
    }
}

impl Open {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(256 + self.config.len());
        w.str(&self.module);
        put_opt(&mut w, self.sha256.as_deref());
        put_opt(&mut w, self.class.as_deref());
        w.bytes(&self.config);
        w.u64(self.call_timeout.as_millis() as u64);
        w.finish()
    }

    pub(crate) fn decode(buf: &[u8]) -> Result<Open> {
        let mut r = Reader::new(buf, protocol_error);
        let open = Open {
            module: r.str()?,
            sha256: get_opt(&mut r)?,
            class: get_opt(&mut r)?,
            config: r.bytes()?.to_vec(),
            call_timeout: Duration::from_millis(r.u64()?),
        };
        done(&r)?;
        Ok(open)
    }
}

/// What a runner answers to the open: the plugin and the backend it started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hello {
    pub plugin: String,
    pub version: String,
    pub path: String,
    pub backend: String,
    pub capabilities: Capabilities,
}

impl Hello {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(256);
        w.str(&self.plugin)
            .str(&self.version)
            .str(&self.path)
            .str(&self.backend)
            .u64(capability_bits(self.capabilities));
        w.finish()
    }

    fn decode(buf: &[u8]) -> Result<Hello> {
        let mut r = Reader::new(buf, protocol_error);
        let hello = Hello {
            plugin: r.str()?,
            version: r.str()?,
            path: r.str()?,
            backend: r.str()?,
            capabilities: capabilities_from_bits(r.u64()?),
        };
        done(&r)?;
        Ok(hello)
    }
}

/// Everything needed to start (and restart) a runner for one backend.
#[derive(Debug, Clone)]
pub struct ProcessIsolation {
    /// The runner binary (`ta-persist-plugin-runner`).
    pub runner: PathBuf,
    /// The plugin library the runner loads.
    pub module: PathBuf,
    /// Its pinned SHA-256 (the runner checks it, and loads a sealed copy).
    pub sha256: Option<String>,
    /// The backend inside the plugin (optional when it offers one).
    pub class: Option<String>,
    /// The backend's options, as JSON bytes.
    pub config: Vec<u8>,
    /// Longest wait for one answer; the runner applies it to the plugin as
    /// well, so a call the plugin never answers is forgotten on both sides.
    pub call_timeout: Duration,
}

impl ProcessIsolation {
    /// Starts a runner, has it load the library and start the backend, and
    /// returns the backend that talks to it. Every error the library would
    /// give in-process (not a plugin, wrong ABI, failed pin, unknown class,
    /// failing start) comes back the same, typed; a runner that cannot
    /// start, or dies while loading, is a `Plugin` error naming the runner.
    pub async fn open(self) -> Result<crate::PluginBackend> {
        if !self.runner.is_file() {
            return Err(Error::Plugin {
                plugin: self.module.display().to_string(),
                message: format!(
                    "no plugin runner at {}: build it with `cargo build -p persistence-plugin`",
                    self.runner.display()
                ),
            });
        }
        let open = Open {
            module: self.module.display().to_string(),
            sha256: self.sha256.clone(),
            class: self.class.clone(),
            config: self.config.clone(),
            call_timeout: self.call_timeout,
        };
        let call_timeout = self.call_timeout;
        let (conn, hello) = start(self.runner.clone(), open.clone()).await?;
        let supervisor = Arc::new_cyclic(|me| Supervisor {
            me: me.clone(),
            runner: self.runner,
            open,
            plugin: hello.plugin.clone(),
            state: Mutex::new(State::Up(conn.clone())),
            failures: AtomicU32::new(0),
            restarts: AtomicU64::new(0),
            exits: AtomicU64::new(0),
            ignored: AtomicU64::new(0),
        });
        conn.watch(&supervisor);
        Ok(crate::PluginBackend::isolated(supervisor, hello).with_call_timeout(call_timeout))
    }
}

/// The host's own small runtime for the runner connections: their tasks
/// and child processes do not depend on whichever runtime the caller uses
/// (a test's, the CLI's, the Python binding's), nor end with it.
fn link_runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("ta-plugin-link")
            .enable_all()
            .build()
            .expect("the plugin link's runtime starts")
    })
}

/// One live runner: the frames to send, and the calls waiting for answers.
struct Conn {
    /// Taken when the backend is dropped: the runner then reads the end of
    /// its input and exits.
    tx: Mutex<Option<mpsc::UnboundedSender<Vec<u8>>>>,
    calls: Mutex<Calls>,
    next: AtomicU64,
    pid: u32,
    /// Whether it answered any call: a runner that did was healthy, and its
    /// death does not grow the restart backoff.
    answered: AtomicBool,
    /// Frames received from it: a call that timed out with none received
    /// since it was sent met a runner that is wedged, not just busy.
    received: AtomicU64,
    /// Bytes of calls queued for it and not yet written.
    queued: Arc<AtomicUsize>,
    /// Asks the task that owns the runner's process to stop it.
    stop: tokio::sync::Notify,
    supervisor: OnceLock<Weak<Supervisor>>,
}

#[derive(Default)]
struct Calls {
    waiting: HashMap<u64, oneshot::Sender<(u8, Vec<u8>)>>,
    /// Why the runner ended, once it has: no call is queued after that.
    ended: Option<String>,
}

impl Conn {
    fn watch(&self, supervisor: &Arc<Supervisor>) {
        let _ = self.supervisor.set(Arc::downgrade(supervisor));
    }

    /// Queues `request` and returns its id and where its answer arrives.
    fn send(&self, request: &[u8]) -> std::result::Result<(u64, Receiver), String> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut calls = self.calls.lock();
            if let Some(why) = &calls.ended {
                return Err(why.clone());
            }
            calls.waiting.insert(id, tx);
        }
        let frame = frame(id, KIND_CALL, request);
        let queued = self.queued.load(Ordering::Relaxed);
        if queued > 0 && queued + frame.len() > MAX_QUEUED_BYTES {
            self.calls.lock().waiting.remove(&id);
            return Err(format!(
                "its runner is not reading its calls ({} MiB queued for it)",
                queued >> 20
            ));
        }
        self.queued.fetch_add(frame.len(), Ordering::Relaxed);
        let sent = match &*self.tx.lock() {
            Some(tx) => tx.send(frame).is_ok(),
            None => false,
        };
        if !sent {
            self.calls.lock().waiting.remove(&id);
            return Err("its runner's connection is closed".into());
        }
        Ok((id, rx))
    }

    fn forget(&self, id: u64) {
        self.calls.lock().waiting.remove(&id);
    }

    /// Ends every waiting call: each receiver sees its sender dropped.
    fn end(&self, why: String) {
        let waiting = {
            let mut calls = self.calls.lock();
            calls.ended.get_or_insert(why);
            std::mem::take(&mut calls.waiting)
        };
        drop(waiting);
    }

    fn ended(&self) -> Option<String> {
        self.calls.lock().ended.clone()
    }
}

type Receiver = oneshot::Receiver<(u8, Vec<u8>)>;

/// Starts a runner and opens the backend in it.
async fn start(runner: PathBuf, open: Open) -> Result<(Arc<Conn>, Hello)> {
    link_runtime()
        .spawn(start_on_link(runner, open))
        .await
        .map_err(|e| Error::Plugin {
            plugin: "runner".into(),
            message: format!("starting the runner failed: {e}"),
        })?
}

async fn start_on_link(runner: PathBuf, open: Open) -> Result<(Arc<Conn>, Hello)> {
    let module = open.module.clone();
    let fail = |message: String| Error::Plugin {
        plugin: module.clone(),
        message,
    };
    let (host, theirs) = std::os::unix::net::UnixStream::pair()
        .map_err(|e| fail(format!("cannot make the runner's socket: {e}")))?;
    // the runner's stdout goes to ours stderr: a plugin's prints never mix
    // into output meant for scripts
    let stdout = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| fail(format!("cannot hand the runner an output: {e}")))?;
    let mut child = tokio::process::Command::new(&runner)
        .arg("--socket-on-stdin")
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            fail(format!(
                "cannot start the plugin runner {}: {e}",
                runner.display()
            ))
        })?;
    let pid = child.id().unwrap_or(0);
    host.set_nonblocking(true)
        .map_err(|e| fail(format!("cannot use the runner's socket: {e}")))?;
    let stream = tokio::net::UnixStream::from_std(host)
        .map_err(|e| fail(format!("cannot use the runner's socket: {e}")))?;
    let (mut read, write) = stream.into_split();
    let (tx, rx) = mpsc::unbounded_channel();
    let queued = Arc::new(AtomicUsize::new(0));
    let open_frame = frame(0, KIND_OPEN, &open.encode());
    queued.fetch_add(open_frame.len(), Ordering::Relaxed);
    link_runtime().spawn(write_frames(write, rx, queued.clone()));
    let _ = tx.send(open_frame);
    let first = tokio::time::timeout(OPEN_TIMEOUT, read_frame(&mut read, MAX_BODY)).await;
    let hello = match first {
        Ok(Ok(Some((0, status, body)))) if i32::from(status) == STATUS_OK => Hello::decode(&body)?,
        Ok(Ok(Some((0, _, body)))) => return Err(decode_error(&body)),
        Ok(Ok(Some((id, _, _)))) => {
            return Err(fail(format!(
                "its runner answered the open as call {id}: broke the runner protocol"
            )))
        }
        Ok(Ok(None)) | Ok(Err(_)) => {
            let status = exit_status(&mut child).await;
            return Err(fail(format!(
                "its runner ({}) {status} while loading the library",
                runner.display()
            )));
        }
        Err(_) => {
            return Err(Error::Timeout {
                operation: format!("plugin runner loading {module}"),
                after: OPEN_TIMEOUT,
            })
        }
    };
    let conn = Arc::new(Conn {
        tx: Mutex::new(Some(tx)),
        calls: Mutex::new(Calls::default()),
        next: AtomicU64::new(1),
        pid,
        answered: AtomicBool::new(false),
        received: AtomicU64::new(0),
        queued,
        stop: tokio::sync::Notify::new(),
        supervisor: OnceLock::new(),
    });
    link_runtime().spawn(read_answers(conn.clone(), read, child));
    Ok((conn, hello))
}

/// Delivers answers to the calls waiting for them until the runner ends;
/// then ends every waiting call and tells the supervisor why.
async fn read_answers(
    conn: Arc<Conn>,
    mut read: tokio::net::unix::OwnedReadHalf,
    mut child: tokio::process::Child,
) {
    let why = loop {
        let next = tokio::select! {
            next = read_frame(&mut read, MAX_BODY) => next,
            () = conn.stop.notified() => {
                let _ = child.start_kill();
                break format!(
                    "its runner (pid {}) was stopped: it sent nothing for a whole call timeout",
                    conn.pid
                );
            }
        };
        match next {
            Ok(Some((id, status, body))) => {
                conn.received.fetch_add(1, Ordering::Relaxed);
                let waiting = conn.calls.lock().waiting.remove(&id);
                match waiting {
                    Some(tx) => {
                        conn.answered.store(true, Ordering::Relaxed);
                        let _ = tx.send((status, body));
                    }
                    None => {
                        // a call that timed out meanwhile: nobody waits for it
                        if let Some(s) = conn.supervisor.get().and_then(Weak::upgrade) {
                            s.ignored.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
            Ok(None) => {
                break format!(
                    "its runner (pid {}) {}",
                    conn.pid,
                    exit_status(&mut child).await
                )
            }
            Err(e) => {
                let _ = child.start_kill();
                break format!(
                    "its runner (pid {}) was stopped: {e}; it broke the runner protocol",
                    conn.pid
                );
            }
        }
    };
    tracing::warn!(reason = %why, "a plugin runner ended");
    // the supervisor first: a call woken below and retried at once then
    // meets the backoff, not this dead connection
    if let Some(s) = conn.supervisor.get().and_then(Weak::upgrade) {
        s.ended(&conn, why.clone());
    }
    conn.end(why);
    let _ = child.wait().await;
}

/// How a runner ended, for messages: waits a moment for its exit status.
async fn exit_status(child: &mut tokio::process::Child) -> String {
    match tokio::time::timeout(Duration::from_secs(1), child.wait()).await {
        Ok(Ok(status)) => describe_exit(status),
        Ok(Err(e)) => format!("ended (its status is unknown: {e})"),
        Err(_) => {
            let _ = child.start_kill();
            "closed its socket and was stopped".into()
        }
    }
}

fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        return format!("exited with status {code}");
    }
    let Some(signal) = status.signal() else {
        return format!("ended ({status})");
    };
    let name = match signal {
        libc::SIGABRT => " (SIGABRT: the plugin aborted)",
        libc::SIGSEGV => " (SIGSEGV: the plugin touched invalid memory)",
        libc::SIGBUS => " (SIGBUS)",
        libc::SIGILL => " (SIGILL)",
        libc::SIGFPE => " (SIGFPE)",
        libc::SIGKILL => " (SIGKILL)",
        libc::SIGTERM => " (SIGTERM)",
        _ => "",
    };
    format!("was killed by signal {signal}{name}")
}

/// The runner of one backend: the live connection, or why there is none
/// and when the next start may be tried.
pub(crate) struct Supervisor {
    me: Weak<Supervisor>,
    runner: PathBuf,
    open: Open,
    plugin: String,
    state: Mutex<State>,
    /// Runners in a row that died without answering a call.
    failures: AtomicU32,
    restarts: AtomicU64,
    exits: AtomicU64,
    /// Answers that arrived for calls no longer waiting (timed out).
    ignored: AtomicU64,
}

enum State {
    Up(Arc<Conn>),
    Starting,
    Down { why: String, retry_at: Instant },
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("runner", &self.runner)
            .field("module", &self.open.module)
            .finish_non_exhaustive()
    }
}

fn backoff(failures: u32) -> Duration {
    FIRST_BACKOFF
        .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
        .min(MAX_BACKOFF)
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        if let State::Up(conn) = &*self.state.lock() {
            conn.tx.lock().take();
        }
    }
}

impl Supervisor {
    fn unavailable(&self, reason: String) -> Error {
        Error::Unavailable {
            backend: format!("plugin {}", self.plugin),
            reason,
        }
    }

    /// The runner `conn` ended: calls fail fast until the backoff passes.
    fn ended(&self, conn: &Arc<Conn>, why: String) {
        self.exits.fetch_add(1, Ordering::Relaxed);
        let failures = if conn.answered.load(Ordering::Relaxed) {
            self.failures.store(1, Ordering::Relaxed);
            1
        } else {
            self.failures.fetch_add(1, Ordering::Relaxed) + 1
        };
        let mut state = self.state.lock();
        if matches!(&*state, State::Up(c) if Arc::ptr_eq(c, conn)) {
            *state = State::Down {
                why,
                retry_at: Instant::now() + backoff(failures),
            };
        }
    }

    /// The live connection, starting a new runner when the last one died
    /// and its backoff has passed.
    async fn connection(&self) -> Result<Arc<Conn>> {
        {
            let mut state = self.state.lock();
            match &*state {
                State::Up(c) => match c.ended() {
                    None => return Ok(c.clone()),
                    // it ended before this supervisor watched it (at once
                    // after a start), so its reader could not say so
                    Some(why) => {
                        let c = c.clone();
                        drop(state);
                        self.ended(&c, why.clone());
                        return Err(self.unavailable(why));
                    }
                },
                State::Starting => {
                    return Err(self.unavailable("its runner died and a new one is starting".into()))
                }
                State::Down { why, retry_at } => {
                    let now = Instant::now();
                    if now < *retry_at {
                        return Err(self.unavailable(format!(
                            "{why}; the next start is in {} ms",
                            (*retry_at - now).as_millis()
                        )));
                    }
                }
            }
            *state = State::Starting;
        }
        // the start runs as a task of its own: a caller that gives up
        // (its deadline, a dropped future) cannot leave it half done
        let me = self.me.upgrade().expect("called through a live supervisor");
        link_runtime()
            .spawn(async move {
                let started = start_on_link(me.runner.clone(), me.open.clone()).await;
                me.restarted(started)
            })
            .await
            .map_err(|e| self.unavailable(format!("starting a new runner failed: {e}")))?
    }

    /// Records how a restart went: the new runner is the live one, or the
    /// next start waits a longer backoff.
    fn restarted(self: &Arc<Self>, started: Result<(Arc<Conn>, Hello)>) -> Result<Arc<Conn>> {
        let mut state = self.state.lock();
        match started {
            Ok((conn, _)) => {
                conn.watch(self);
                self.restarts.fetch_add(1, Ordering::Relaxed);
                tracing::info!(plugin = %self.plugin, pid = conn.pid, "a new plugin runner started");
                *state = State::Up(conn.clone());
                Ok(conn)
            }
            Err(e) => {
                let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
                let why = format!("restarting its runner failed: {e}");
                *state = State::Down {
                    why: why.clone(),
                    retry_at: Instant::now() + backoff(failures),
                };
                Err(self.unavailable(why))
            }
        }
    }

    /// Sends `request` to the runner and waits, until `deadline`, for its
    /// status and body.
    pub(crate) async fn call(
        &self,
        request: &Request,
        deadline: Instant,
        timed_out: impl FnOnce() -> Error,
    ) -> Result<(i32, Vec<u8>)> {
        let conn = self.connection().await?;
        let seen = conn.received.load(Ordering::Relaxed);
        let (id, rx) = conn
            .send(&request.encode())
            .map_err(|why| self.unavailable(why))?;
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok((status, body))) => {
                self.failures.store(0, Ordering::Relaxed);
                Ok((status as i32, body))
            }
            Ok(Err(_)) => Err(self.unavailable(
                conn.ended()
                    .unwrap_or_else(|| "its runner dropped the call".into()),
            )),
            Err(_) => {
                conn.forget(id);
                if conn.received.load(Ordering::Relaxed) == seen {
                    // nothing at all came back while this call waited: the
                    // runner is wedged (every thread stuck, or not reading);
                    // a new one is started after the backoff
                    conn.stop.notify_one();
                }
                Err(timed_out())
            }
        }
    }

    /// The current runner's process id, if one is up.
    pub(crate) fn pid(&self) -> Option<u32> {
        match &*self.state.lock() {
            State::Up(c) if c.ended().is_none() => Some(c.pid),
            _ => None,
        }
    }

    /// Runners started after the first one.
    pub(crate) fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// Runners that ended.
    pub(crate) fn exits(&self) -> u64 {
        self.exits.load(Ordering::Relaxed)
    }

    /// Answers that arrived for calls no longer waiting for them.
    pub(crate) fn ignored(&self) -> u64 {
        self.ignored.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_and_hello_round_trip() {
        let open = Open {
            module: "/lib/x.so".into(),
            sha256: Some("ab".repeat(32)),
            class: None,
            config: b"{\"a\":\"b\"}".to_vec(),
            call_timeout: Duration::from_millis(1500),
        };
        assert_eq!(Open::decode(&open.encode()).unwrap(), open);
        let hello = Hello {
            plugin: "p".into(),
            version: "1".into(),
            path: "/lib/x.so".into(),
            backend: "memory".into(),
            capabilities: Capabilities {
                scan: true,
                ..Default::default()
            },
        };
        assert_eq!(Hello::decode(&hello.encode()).unwrap(), hello);
        assert!(Open::decode(&open.encode()[..5]).is_err());
    }

    #[tokio::test]
    async fn frames_are_bounded_before_allocation() {
        let f = frame(7, KIND_CALL, b"hello");
        let mut r: &[u8] = &f;
        assert_eq!(
            read_frame(&mut r, 64).await.unwrap(),
            Some((7, KIND_CALL, b"hello".to_vec()))
        );
        let mut empty: &[u8] = &[];
        assert_eq!(read_frame(&mut empty, 64).await.unwrap(), None);
        let mut huge: &[u8] = &[0xff, 0xff, 0xff, 0xff, 0, 0];
        let e = read_frame(&mut huge, 64).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
        let mut short: &[u8] = &[3, 0, 0, 0, 0, 0, 0];
        assert!(read_frame(&mut short, 64).await.is_err());
        let mut cut: &[u8] = &f[..8];
        assert!(read_frame(&mut cut, 64).await.is_err());
    }

    #[test]
    fn backoff_doubles_to_its_cap() {
        assert_eq!(backoff(1), FIRST_BACKOFF);
        assert_eq!(backoff(2), FIRST_BACKOFF * 2);
        assert_eq!(backoff(40), MAX_BACKOFF);
    }
}
