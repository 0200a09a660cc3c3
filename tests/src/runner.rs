//! Running cases: one at a time from a generated test, or all from a tool.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use persistence_core::backend::{Capabilities, Precondition, ScanOrder, ScanRequest};
use persistence_core::{SharedBackend, TaskStore};

/// A capability a case needs before it can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// Runs on every backend.
    None,
    /// Needs [`Capabilities::ttl`].
    Ttl,
    /// Needs [`Capabilities::scan`].
    Scan,
    /// Needs [`Capabilities::scan_by_creation`].
    ScanByCreation,
    /// Needs [`Capabilities::time_order`] (and scans).
    TimeOrder,
    /// Needs [`Capabilities::transactions`].
    Transactions,
    /// Needs [`Capabilities::count`] or [`Capabilities::scan`].
    Count,
    /// Needs [`Capabilities::export`] and [`Capabilities::scan`].
    Export,
}

impl Requirement {
    /// Whether a backend with `caps` meets it.
    pub fn met_by(self, caps: Capabilities) -> bool {
        match self {
            Requirement::None => true,
            Requirement::Ttl => caps.ttl,
            Requirement::Scan => caps.scan,
            Requirement::ScanByCreation => caps.scan && caps.scan_by_creation,
            Requirement::TimeOrder => caps.scan && caps.time_order,
            Requirement::Transactions => caps.transactions,
            Requirement::Count => caps.count || caps.scan,
            Requirement::Export => caps.export && caps.scan,
        }
    }
}

/// One conformance case.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    /// Its name, also the name of its generated test.
    pub name: &'static str,
    /// What the backend must declare for the case to apply.
    pub requires: Requirement,
    /// The case: panics on a broken guarantee.
    pub run: fn(Ctx) -> BoxFuture<'static, ()>,
}

macro_rules! define_cases {
    (() $($name:ident : $req:ident),* $(,)?) => {
        /// Every conformance case, in a stable order.
        pub static CASES: &[Case] = &[$(
            Case {
                name: stringify!($name),
                requires: Requirement::$req,
                run: |ctx| Box::pin(crate::cases::$name(ctx)),
            }
        ),*];
    };
}
crate::__with_case_names! { (define_cases) () }

/// What a case gets: a backend, a namespace no other case uses, and the
/// backend's declared capabilities.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The backend under test.
    pub backend: SharedBackend,
    /// The case's own namespace.
    pub ns: String,
    /// What the backend declares.
    pub caps: Capabilities,
    /// Every namespace the case used (its own, and those from
    /// [`Ctx::other_ns`]), for the clean-up after it.
    used: Arc<Mutex<Vec<String>>>,
    /// Set when the runner gave up on the case: stop at the next chance.
    cancelled: Arc<AtomicBool>,
}

impl Ctx {
    fn new(case: &str, backend: SharedBackend) -> Self {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let ns = format!(
            "conformance-{case}-{}-{}-{nanos}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        Ctx {
            caps: backend.capabilities(),
            backend,
            used: Arc::new(Mutex::new(vec![ns.clone()])),
            ns,
            cancelled: Arc::default(),
        }
    }

    /// A second namespace of this case (removed with the case's own).
    pub fn other_ns(&self, suffix: &str) -> String {
        let ns = format!("{}-{suffix}", self.ns);
        self.used
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(ns.clone());
        ns
    }

    /// Whether the runner gave up on this case (it timed out): a case that
    /// loops should stop.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// Removes every document of every namespace the case used, each call
    /// bounded by `limit`; returns how many it removed. Needs a backend that
    /// can scan; others keep what the case wrote.
    pub async fn clean_up(&self, limit: Duration) -> u64 {
        if !self.caps.scan {
            return 0;
        }
        let namespaces = self.used.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut removed = 0;
        for ns in namespaces {
            // bounded: a stuck backend costs `limit` per namespace at most
            let mut pages = 0;
            while pages < 1_000 {
                pages += 1;
                let request = ScanRequest::first(ScanOrder::Key, 500);
                let Ok(Ok(page)) =
                    tokio::time::timeout(limit, self.backend.scan(&ns, request)).await
                else {
                    break;
                };
                if page.entries.is_empty() {
                    break;
                }
                for (key, _) in page.entries {
                    let remove = self.backend.remove(&ns, &key, Precondition::Any);
                    if let Ok(Ok(true)) = tokio::time::timeout(limit, remove).await {
                        removed += 1;
                    }
                }
            }
        }
        removed
    }

    /// A task store in the case's namespace.
    pub fn store(&self) -> TaskStore {
        TaskStore::new(self.backend.clone()).with_namespace(self.ns.clone())
    }
}

fn find(name: &str) -> &'static Case {
    CASES
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no conformance case named {name}"))
}

/// Runs the case `name` on a backend from `factory`; panics if it fails.
/// A case whose capability the backend does not declare passes after saying so.
pub async fn run_case<F, Fut>(name: &str, factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = SharedBackend>,
{
    let case = find(name);
    let backend = factory().await;
    let caps = backend.capabilities();
    if !case.requires.met_by(caps) {
        eprintln!(
            "{name}: not applicable, {} does not declare {:?}",
            backend.name(),
            case.requires
        );
        return;
    }
    (case.run)(Ctx::new(name, backend)).await;
}

/// How a case ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaseOutcome {
    /// Every guarantee held.
    Passed,
    /// A guarantee broke: the assertion's message.
    Failed(String),
    /// The backend does not declare the capability the case needs.
    NotApplicable(Requirement),
}

/// One case's result from [`run_all`].
#[derive(Debug, Clone)]
pub struct CaseReport {
    /// The case's name.
    pub name: &'static str,
    /// How it ended.
    pub outcome: CaseOutcome,
    /// How long it ran.
    pub elapsed: Duration,
}

/// Longest wait for one call of the clean-up after a case.
const CLEAN_UP_LIMIT: Duration = Duration::from_secs(5);

/// Runs every case on fresh backends from `factory`, each in its own task
/// with `timeout`, and reports every outcome (a panicking case is a failure,
/// not a crash; a case past its time is cancelled). After each case,
/// whatever its outcome, the documents of every namespace it used are
/// removed, so a run against a shared server leaves nothing behind. Needs a
/// multi-threaded tokio runtime.
pub async fn run_all<F, Fut>(factory: F, timeout: Duration) -> Vec<CaseReport>
where
    F: Fn() -> Fut,
    Fut: Future<Output = SharedBackend>,
{
    let mut reports = Vec::with_capacity(CASES.len());
    for case in CASES {
        let backend = factory().await;
        let started = Instant::now();
        let outcome = if !case.requires.met_by(backend.capabilities()) {
            CaseOutcome::NotApplicable(case.requires)
        } else {
            let ctx = Ctx::new(case.name, backend);
            let mut task = tokio::spawn((case.run)(ctx.clone()));
            let outcome = match tokio::time::timeout(timeout, &mut task).await {
                Ok(Ok(())) => CaseOutcome::Passed,
                Ok(Err(e)) => CaseOutcome::Failed(panic_message(e)),
                Err(_) => {
                    // stop it: at its next await, or at the next check of
                    // the flag where it cannot be reached (block_in_place)
                    ctx.cancelled.store(true, Ordering::Relaxed);
                    task.abort();
                    CaseOutcome::Failed(format!("did not finish within {timeout:?}"))
                }
            };
            ctx.clean_up(CLEAN_UP_LIMIT).await;
            outcome
        };
        reports.push(CaseReport {
            name: case.name,
            outcome,
            elapsed: started.elapsed(),
        });
    }
    reports
}

pub(crate) fn panic_message(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panicked".into()),
        Err(e) => e.to_string(),
    }
}
