//! Running every stream case from a tool (`ta-persist conformance --streams`):
//! each in its own task with a deadline, and every stream a case touched
//! deleted after it, whatever its outcome.

use std::collections::BTreeSet;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use persistence_core::backend::{Health, Stats};
use persistence_core::streams::{
    Cancellation, EventPage, EventStreams, Offset, Retention, SharedStreams, StartAt, Subscription,
};
use persistence_core::Result;

use crate::runner::panic_message;
use crate::{run_stream_case, CaseOutcome, CaseReport, STREAM_CASES};

/// Longest wait for one delete of the clean-up after a case.
const CLEAN_UP_LIMIT: Duration = Duration::from_secs(5);

/// An engine that remembers every stream and run name used through it.
struct Tracked {
    inner: SharedStreams,
    names: Arc<Mutex<BTreeSet<String>>>,
}

impl fmt::Debug for Tracked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl Tracked {
    fn note(&self, name: &str) {
        let mut names = self.names.lock();
        if !names.contains(name) {
            names.insert(name.to_string());
        }
    }
}

#[async_trait]
impl EventStreams for Tracked {
    fn name(&self) -> &str {
        self.inner.name()
    }
    async fn append(&self, stream: &str, data: Bytes) -> Result<Offset> {
        self.note(stream);
        self.inner.append(stream, data).await
    }
    async fn read(&self, stream: &str, after: Offset, limit: usize) -> Result<EventPage> {
        self.note(stream);
        self.inner.read(stream, after, limit).await
    }
    async fn subscribe(&self, stream: &str, from: StartAt) -> Result<Subscription> {
        self.note(stream);
        self.inner.subscribe(stream, from).await
    }
    async fn close(&self, stream: &str, reason: &str) -> Result<()> {
        self.note(stream);
        self.inner.close(stream, reason).await
    }
    async fn delete(&self, stream: &str) -> Result<bool> {
        self.note(stream);
        self.inner.delete(stream).await
    }
    async fn cancel(&self, run: &str) -> Result<()> {
        self.note(run);
        self.inner.cancel(run).await
    }
    async fn cancellation(&self, run: &str) -> Result<Cancellation> {
        self.note(run);
        self.inner.cancellation(run).await
    }
    async fn health(&self) -> Health {
        self.inner.health().await
    }
    fn stats(&self) -> Stats {
        self.inner.stats()
    }
}

/// Runs every stream case ([`STREAM_CASES`]) on engines from `factory`
/// (called with the retention each case needs), each in its own task with
/// `timeout`, and reports every outcome: a panicking case is a failure, a
/// case past its time is cancelled. After each case every stream and run
/// it used is deleted (each delete bounded), so a run against a shared
/// server leaves nothing behind. Needs a multi-threaded tokio runtime.
pub async fn run_all_streams<F, Fut>(factory: F, timeout: Duration) -> Vec<CaseReport>
where
    F: Fn(Retention) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = SharedStreams> + Send + 'static,
{
    let mut reports = Vec::with_capacity(STREAM_CASES.len());
    for &name in STREAM_CASES {
        let names = Arc::new(Mutex::new(BTreeSet::new()));
        let opened: Arc<Mutex<Vec<SharedStreams>>> = Arc::default();
        let tracked_factory = {
            let (factory, names, opened) = (factory.clone(), names.clone(), opened.clone());
            move |retention: Retention| {
                let (factory, names, opened) = (factory.clone(), names.clone(), opened.clone());
                async move {
                    let inner = factory(retention).await;
                    opened.lock().push(inner.clone());
                    Arc::new(Tracked { inner, names }) as SharedStreams
                }
            }
        };
        let started = Instant::now();
        let mut task = tokio::spawn(run_stream_case(name, tracked_factory));
        let outcome = match tokio::time::timeout(timeout, &mut task).await {
            Ok(Ok(())) => CaseOutcome::Passed,
            Ok(Err(e)) => CaseOutcome::Failed(panic_message(e)),
            Err(_) => {
                task.abort();
                CaseOutcome::Failed(format!("did not finish within {timeout:?}"))
            }
        };
        let engines: Vec<SharedStreams> = opened.lock().drain(..).collect();
        let used: Vec<String> = names.lock().iter().cloned().collect();
        if let Some(engine) = engines.first() {
            for stream in used {
                let _ = tokio::time::timeout(CLEAN_UP_LIMIT, engine.delete(&stream)).await;
            }
        }
        drop(engines);
        reports.push(CaseReport {
            name,
            outcome,
            elapsed: started.elapsed(),
        });
    }
    reports
}
