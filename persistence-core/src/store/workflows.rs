//! The workflow store (seed 001): workflow state and orchestrator results,
//! newest first, by time window, by type, with retention and analytics.
//!
//! Two kinds of record, each with its own TTL (the seed's 24 hours and 7
//! days): [`WorkflowInfo`] in the namespace `workflow`, indexed by status
//! and by orchestrator type, and [`OrchestratorResult`] in
//! `workflow_result`, as the seed's `to_dict` JSON (unknown fields kept).
//! `docs/workflows.md` maps the seed's Redis keys to these calls.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::backend::{
    BackendExt, DocumentWrite, IndexTerm, Precondition, Remove, ScanOrder, ScanRequest,
    SharedBackend, TxOutcome, TxWrite, Version,
};
use crate::error::{Error, ErrorKind, Result};

/// Namespace of workflow state.
pub const WORKFLOW_NAMESPACE: &str = "workflow";
/// Namespace of orchestrator results.
pub const RESULT_NAMESPACE: &str = "workflow_result";
/// Index of workflow state by status (`workflows:active` / `:completed`).
pub const STATUS_INDEX: &str = "workflow_status";
/// Index of workflow state by orchestrator type (`workflows:type:{type}`).
pub const TYPE_INDEX: &str = "workflow_type";
/// Index every result carries one term of ([`RESULT_TERM`]), so that
/// retention counts results from index entries (`count_term`) instead of
/// reading them.
pub const RESULT_INDEX: &str = "workflow_results";
/// The one term of [`RESULT_INDEX`].
pub const RESULT_TERM: &str = "all";

/// A workflow's status, as the seed's `TaskStatus` values.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkflowStatus {
    /// Created, not started.
    Pending,
    /// Running.
    Running,
    /// Finished with a result.
    Completed,
    /// Finished with an error.
    Failed,
    /// A status this library does not know, kept as written.
    #[serde(untagged)]
    Other(String),
}

impl WorkflowStatus {
    /// Its name as stored (and as its index term).
    pub fn as_str(&self) -> &str {
        match self {
            WorkflowStatus::Pending => "pending",
            WorkflowStatus::Running => "running",
            WorkflowStatus::Completed => "completed",
            WorkflowStatus::Failed => "failed",
            WorkflowStatus::Other(s) => s,
        }
    }

    /// Pending or running.
    pub fn is_active(&self) -> bool {
        matches!(self, WorkflowStatus::Pending | WorkflowStatus::Running)
    }
}

/// A workflow's state: the seed's `workflow_info`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowInfo {
    /// The workflow's id: the key it is stored under.
    pub task_id: String,
    /// Which orchestrator runs it (`beltalowda`, `swarm`...).
    pub orchestrator_type: String,
    /// What it was asked to do.
    #[serde(default)]
    pub task: String,
    /// Where it is.
    pub status: WorkflowStatus,
    /// When it was created (ISO 8601, as the seed writes it).
    #[serde(default)]
    pub created_at: Option<String>,
    /// When it started running.
    #[serde(default)]
    pub started_at: Option<String>,
    /// When it finished.
    #[serde(default)]
    pub completed_at: Option<String>,
    /// The orchestrator's configuration.
    #[serde(default)]
    pub config: serde_json::Value,
    /// Why it failed.
    #[serde(default)]
    pub error: Option<String>,
    /// Every other field, kept as it came.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl WorkflowInfo {
    /// A pending workflow created now.
    pub fn new(
        task_id: impl Into<String>,
        orchestrator_type: impl Into<String>,
        task: &str,
    ) -> Self {
        WorkflowInfo {
            task_id: task_id.into(),
            orchestrator_type: orchestrator_type.into(),
            task: task.to_string(),
            status: WorkflowStatus::Pending,
            created_at: Some(iso_now()),
            started_at: None,
            completed_at: None,
            config: serde_json::Value::Object(Default::default()),
            error: None,
            extra: BTreeMap::new(),
        }
    }

    fn terms(&self) -> Vec<IndexTerm> {
        vec![
            IndexTerm::new(STATUS_INDEX, self.status.as_str()),
            IndexTerm::new(TYPE_INDEX, &self.orchestrator_type),
        ]
    }
}

/// One agent's result inside an [`OrchestratorResult`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentResult {
    /// The agent.
    pub agent_id: String,
    /// Its type.
    pub agent_type: String,
    /// The subtask it worked on.
    pub subtask_id: String,
    /// What it produced.
    pub content: String,
    /// How it ended.
    pub status: WorkflowStatus,
    /// Seconds it ran.
    pub execution_time: f64,
    /// What it cost (USD).
    pub cost: f64,
    /// Its metadata.
    #[serde(default)]
    pub metadata: serde_json::Value,
    /// Its error.
    #[serde(default)]
    pub error: Option<String>,
    /// Its citations.
    #[serde(default)]
    pub citations: Vec<serde_json::Value>,
    /// Every other field, kept as it came.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// One synthesis step inside an [`OrchestratorResult`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SynthesisResult {
    /// The synthesis.
    pub synthesis_id: String,
    /// Its level.
    pub synthesis_level: serde_json::Value,
    /// What it produced.
    pub content: String,
    /// The agents it drew on.
    #[serde(default)]
    pub source_agent_ids: Vec<String>,
    /// Seconds it ran.
    pub execution_time: f64,
    /// What it cost (USD).
    pub cost: f64,
    /// Its metadata.
    #[serde(default)]
    pub metadata: serde_json::Value,
    /// Every other field, kept as it came.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// A finished workflow's result: the seed's `OrchestratorResult.to_dict()`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrchestratorResult {
    /// The workflow's id.
    pub task_id: String,
    /// Its title.
    pub title: String,
    /// How it ended (completed or failed).
    pub status: WorkflowStatus,
    /// Each agent's result.
    #[serde(default)]
    pub agent_results: Vec<AgentResult>,
    /// Each synthesis step.
    #[serde(default)]
    pub synthesis_results: Vec<SynthesisResult>,
    /// The final synthesis.
    #[serde(default)]
    pub final_synthesis: Option<String>,
    /// Seconds it ran.
    pub execution_time: f64,
    /// What it cost in all (USD).
    pub total_cost: f64,
    /// Its metadata.
    #[serde(default)]
    pub metadata: serde_json::Value,
    /// Documents it generated.
    #[serde(default)]
    pub generated_documents: Vec<serde_json::Value>,
    /// Its artifacts.
    #[serde(default)]
    pub artifacts: Vec<serde_json::Value>,
    /// Its error.
    #[serde(default)]
    pub error: Option<String>,
    /// Every other field, kept as it came.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// The most expensive result of [`CostSummary`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MostExpensive {
    /// Its workflow.
    pub task_id: String,
    /// Its cost (USD).
    pub cost: f64,
    /// Its run time (seconds).
    pub execution_time: f64,
}

/// Seed 001's `/analytics/costs`, over the retained results.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CostSummary {
    /// Sum of `total_cost`.
    pub total_cost_usd: f64,
    /// Its mean.
    pub average_cost_usd: f64,
    /// Results counted.
    pub workflow_count: usize,
    /// The most expensive, if any.
    pub most_expensive: Option<MostExpensive>,
}

/// Seed 001's `/analytics/workflows` and costs in one answer.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct WorkflowAnalytics {
    /// Pending or running workflows.
    pub active_workflows: u64,
    /// Completed workflows whose state is still kept (24 h by default).
    pub completed_workflows: u64,
    /// Failed workflows whose state is still kept.
    pub failed_workflows: u64,
    /// Workflows per orchestrator type, for the types asked about.
    pub by_type: BTreeMap<String, u64>,
    /// Results written in the last 24 hours.
    pub recent_24h: usize,
    /// The newest 20 results' ids, newest first.
    pub recent_task_ids: Vec<String>,
    /// Costs over the retained results.
    pub costs: CostSummary,
}

/// The typed workflow store over any backend.
///
/// `complete_workflow` flips the state and writes the result in one
/// transaction where the backend has [`transactions`](crate::backend::Capabilities::transactions);
/// elsewhere (Redis Cluster, plugins without them) the result is written first and the
/// state second, so a crash in between leaves a result whose state still
/// says running, never a completed state without its result.
///
/// ```
/// use std::sync::Arc;
/// use persistence_core::memory::MemoryBackend;
/// use persistence_core::store::{OrchestratorResult, WorkflowInfo, WorkflowStatus, WorkflowStore};
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let store = WorkflowStore::new(Arc::new(MemoryBackend::new()));
/// store.create_workflow(&WorkflowInfo::new("wf-1", "swarm", "summarize")).await.unwrap();
/// let result: OrchestratorResult = serde_json::from_value(serde_json::json!({
///     "task_id": "wf-1", "title": "Summary", "status": "completed",
///     "execution_time": 1.5, "total_cost": 0.02,
/// })).unwrap();
/// store.complete_workflow("wf-1", &result).await.unwrap();
/// let info = store.get_workflow("wf-1").await.unwrap().unwrap();
/// assert_eq!(info.status, WorkflowStatus::Completed);
/// assert_eq!(store.recent(10).await.unwrap()[0].task_id, "wf-1");
/// assert_eq!(store.analytics().await.unwrap().costs.workflow_count, 1);
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct WorkflowStore {
    backend: SharedBackend,
    info_ttl: Option<Duration>,
    result_ttl: Option<Duration>,
    retention: usize,
    /// Trim every this many completions (a tenth of the retention).
    trim_every: usize,
    /// Completions since this store (or a clone) last trimmed.
    since_trim: Arc<AtomicUsize>,
    /// Held by the trim in flight (started in the background, or inline).
    trimming: Arc<tokio::sync::Mutex<()>>,
    types: Vec<String>,
}

/// Attempts of a read-modify-write before it gives up with `Conflict`.
const ATTEMPTS: usize = 8;

impl WorkflowStore {
    /// The store with the seed's settings: state kept 24 hours, results 7
    /// days, the newest 100 results retained, analytics by type for
    /// `beltalowda` and `swarm`.
    pub fn new(backend: SharedBackend) -> Self {
        WorkflowStore {
            backend,
            info_ttl: Some(Duration::from_secs(86_400)),
            result_ttl: Some(Duration::from_secs(7 * 86_400)),
            retention: 100,
            trim_every: 10,
            // the first completion trims (what an earlier process left)
            since_trim: Arc::new(AtomicUsize::new(usize::MAX / 2)),
            trimming: Arc::default(),
            types: vec!["beltalowda".into(), "swarm".into()],
        }
    }

    /// The same store with other TTLs (`None`: kept until removed). A TTL
    /// on a backend without TTLs fails its writes with `Unsupported`.
    pub fn with_ttls(self, info: Option<Duration>, result: Option<Duration>) -> Self {
        WorkflowStore {
            info_ttl: info,
            result_ttl: result,
            ..self
        }
    }

    /// The same store keeping the newest `n` results (at least 1),
    /// trimming every `n / 10` completions (every one below 20).
    pub fn with_retention(self, n: usize) -> Self {
        let retention = n.max(1);
        WorkflowStore {
            retention,
            trim_every: (retention / 10).max(1),
            ..self
        }
    }

    /// The same store counting these orchestrator types in analytics.
    pub fn with_types(self, types: impl IntoIterator<Item = impl Into<String>>) -> Self {
        WorkflowStore {
            types: types.into_iter().map(Into::into).collect(),
            ..self
        }
    }

    /// The backend underneath.
    pub fn backend(&self) -> &SharedBackend {
        &self.backend
    }

    fn info_write(&self, info: &WorkflowInfo) -> Result<DocumentWrite> {
        let mut write = DocumentWrite::new(encode(info)?).with_ttl(self.info_ttl);
        write.index = info.terms();
        Ok(write)
    }

    /// Stores a new workflow; `AlreadyExists` if its id is taken.
    pub async fn create_workflow(&self, info: &WorkflowInfo) -> Result<Version> {
        let write = self.info_write(info)?;
        self.backend
            .insert(WORKFLOW_NAMESPACE, &info.task_id, write)
            .await
    }

    /// A workflow's state, or `None`.
    pub async fn get_workflow(&self, task_id: &str) -> Result<Option<WorkflowInfo>> {
        Ok(self.load(task_id).await?.map(|(info, _)| info))
    }

    async fn load(&self, task_id: &str) -> Result<Option<(WorkflowInfo, Version)>> {
        match self.backend.get(WORKFLOW_NAMESPACE, task_id).await? {
            None => Ok(None),
            Some(doc) => Ok(Some((
                decode(WORKFLOW_NAMESPACE, task_id, &doc.value)?,
                doc.version,
            ))),
        }
    }

    /// Sets a workflow's status (and `started_at` when it starts running,
    /// `completed_at` when it ends), retrying on concurrent writes;
    /// `NotFound` if there is no such workflow.
    pub async fn update_status(
        &self,
        task_id: &str,
        status: WorkflowStatus,
    ) -> Result<WorkflowInfo> {
        self.modify(task_id, |info| {
            stamp_status(info, status.clone());
            Ok(())
        })
        .await
    }

    async fn modify(
        &self,
        task_id: &str,
        change: impl Fn(&mut WorkflowInfo) -> Result<()>,
    ) -> Result<WorkflowInfo> {
        let mut last = missing(task_id);
        for _ in 0..ATTEMPTS {
            let (mut info, version) = self.load(task_id).await?.ok_or_else(|| missing(task_id))?;
            change(&mut info)?;
            let write = self.info_write(&info)?;
            match self
                .backend
                .replace(WORKFLOW_NAMESPACE, task_id, write, Some(version))
                .await
            {
                Ok(_) => return Ok(info),
                Err(e) if e.kind() == ErrorKind::Conflict => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    /// Marks a workflow finished with `result.status` and stores its
    /// result, in one atomic step where the backend has transactions;
    /// then has the results trimmed to the retention (in the background,
    /// bounded: see [`apply_retention`](Self::apply_retention)).
    /// `NotFound` if there is no such workflow.
    pub async fn complete_workflow(
        &self,
        task_id: &str,
        result: &OrchestratorResult,
    ) -> Result<()> {
        let value = encode(result)?;
        let result_write = || {
            DocumentWrite::new(value.clone())
                .with_term(RESULT_INDEX, RESULT_TERM)
                .with_ttl(self.result_ttl)
        };
        if self.in_one_step() {
            self.complete_in_one_step(task_id, &result.status, result_write)
                .await?;
        } else {
            if self.load(task_id).await?.is_none() {
                return Err(missing(task_id));
            }
            self.backend
                .upsert(RESULT_NAMESPACE, task_id, result_write())
                .await?;
            self.update_status(task_id, result.status.clone()).await?;
        }
        if self.since_trim.fetch_add(1, Ordering::Relaxed) + 1 >= self.trim_every {
            self.since_trim.store(0, Ordering::Relaxed);
            self.start_trim().await?;
        }
        Ok(())
    }

    /// Starts a due trim: in the background when none is in flight (the
    /// completing caller does not wait for it), else inline after the one
    /// in flight, so a trim that has not run yet (a busy runtime) never
    /// lets the results grow past `retention + 2 * trim_every`.
    async fn start_trim(&self) -> Result<()> {
        if let (Ok(guard), Ok(runtime)) = (
            self.trimming.clone().try_lock_owned(),
            tokio::runtime::Handle::try_current(),
        ) {
            let store = self.clone();
            runtime.spawn(async move {
                let _held = guard;
                if let Err(e) = store.trim().await {
                    // the next trim tries again
                    tracing::warn!(error = %e, "trimming workflow results failed");
                }
            });
            return Ok(());
        }
        self.apply_retention().await
    }

    /// Trims the results to the retention now, after any trim in flight,
    /// and returns when it is done: for a caller that needs the bound
    /// exact at a point (a test, a shutdown). `complete_workflow` trims on
    /// its own.
    pub async fn apply_retention(&self) -> Result<()> {
        let _held = self.trimming.lock().await;
        self.trim().await
    }

    /// Whether a workflow's state and result can change in one
    /// transaction: the backend has transactions over any keys (a state and
    /// its result share a key in two namespaces, which on Redis Cluster are
    /// two hash slots).
    fn in_one_step(&self) -> bool {
        let caps = self.backend.capabilities();
        caps.transactions && !caps.partitioned_transactions
    }

    /// The status flip and the result write as one transaction, guarded
    /// by the state's version; read again on a concurrent change, up to
    /// [`ATTEMPTS`] times (then that `Conflict`).
    async fn complete_in_one_step(
        &self,
        task_id: &str,
        status: &WorkflowStatus,
        result_write: impl Fn() -> DocumentWrite,
    ) -> Result<()> {
        let mut last = missing(task_id);
        for _ in 0..ATTEMPTS {
            let (mut info, version) = self.load(task_id).await?.ok_or_else(|| missing(task_id))?;
            stamp_status(&mut info, status.clone());
            let writes = vec![
                TxWrite::put(
                    WORKFLOW_NAMESPACE,
                    task_id,
                    self.info_write(&info)?,
                    Precondition::Version(version),
                ),
                TxWrite::put(RESULT_NAMESPACE, task_id, result_write(), Precondition::Any),
            ];
            match self.backend.transact(writes).await {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Conflict => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    /// Removes the oldest results beyond the retention. Started by every
    /// `trim_every`-th completing call (in the background: see
    /// `start_trim`), so a reader sees at most `retention + 2 * trim_every`
    /// results, and more than the retention only until the trim is done.
    /// Counts index entries, not documents; reads only the results it
    /// removes, and removes them in one
    /// [`remove_many`](crate::backend::Backend::remove_many).
    async fn trim(&self) -> Result<()> {
        let stored = self
            .backend
            .count_term(RESULT_NAMESPACE, RESULT_INDEX, RESULT_TERM)
            .await? as usize;
        if stored <= self.retention {
            return Ok(());
        }
        let request = ScanRequest::first(ScanOrder::Created, stored - self.retention);
        let page = self.backend.scan(RESULT_NAMESPACE, request).await?;
        // one call for all of them (one round trip on Redis), each removal
        // guarded by the version read
        let removes = page
            .entries
            .into_iter()
            .map(|(key, doc)| Remove {
                key,
                precondition: Precondition::Version(doc.version),
            })
            .collect();
        for outcome in self.backend.remove_many(RESULT_NAMESPACE, removes).await {
            match outcome {
                // someone else trimmed or rewrote it first
                Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::Conflict) => {}
                other => {
                    other?;
                }
            }
        }
        Ok(())
    }

    /// Removes a workflow's state and result (one transaction where the
    /// backend has them); whether either was there.
    pub async fn remove_workflow(&self, task_id: &str) -> Result<bool> {
        if self.in_one_step() {
            let outcomes = self
                .backend
                .transact(vec![
                    TxWrite::remove(WORKFLOW_NAMESPACE, task_id, Precondition::Any),
                    TxWrite::remove(RESULT_NAMESPACE, task_id, Precondition::Any),
                ])
                .await?;
            return Ok(outcomes.contains(&TxOutcome::Removed(true)));
        }
        let state = self
            .backend
            .remove(WORKFLOW_NAMESPACE, task_id, Precondition::Any)
            .await?;
        let result = self
            .backend
            .remove(RESULT_NAMESPACE, task_id, Precondition::Any)
            .await?;
        Ok(state || result)
    }

    /// A workflow's result, or `None`.
    pub async fn get_result(&self, task_id: &str) -> Result<Option<OrchestratorResult>> {
        match self.backend.get(RESULT_NAMESPACE, task_id).await? {
            None => Ok(None),
            Some(doc) => Ok(Some(decode(RESULT_NAMESPACE, task_id, &doc.value)?)),
        }
    }

    async fn with_term(&self, index: &str, term: &str) -> Result<Vec<WorkflowInfo>> {
        let hits = self
            .backend
            .lookup_values(WORKFLOW_NAMESPACE, index, term, usize::MAX)
            .await?;
        let mut out = Vec::with_capacity(hits.len());
        for (key, value) in hits {
            let info: WorkflowInfo = decode(WORKFLOW_NAMESPACE, &key, &value)?;
            // a hint on backends without atomic indexes: check the document
            let still = match index {
                STATUS_INDEX => info.status.as_str() == term,
                _ => info.orchestrator_type == term,
            };
            if still {
                out.push(info);
            }
        }
        Ok(out)
    }

    /// Pending and running workflows, oldest first.
    pub async fn active(&self) -> Result<Vec<WorkflowInfo>> {
        let mut out = self.with_term(STATUS_INDEX, "pending").await?;
        out.extend(self.with_term(STATUS_INDEX, "running").await?);
        Ok(out)
    }

    /// Workflows run by orchestrator type `t`, oldest first.
    pub async fn by_type(&self, t: &str) -> Result<Vec<WorkflowInfo>> {
        self.with_term(TYPE_INDEX, t).await
    }

    /// The newest `n` results, newest first (seed: `ZREVRANGE results:by_time 0 n-1`).
    /// Needs [`time_order`](crate::backend::Capabilities::time_order).
    pub async fn recent(&self, n: usize) -> Result<Vec<OrchestratorResult>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        self.results(ScanRequest::first(ScanOrder::NewestFirst, n), Some(n))
            .await
    }

    /// Results written in `[from, to)`, oldest first (seed: `ZRANGEBYSCORE`).
    /// Needs [`time_order`](crate::backend::Capabilities::time_order).
    pub async fn completed_between(
        &self,
        from: SystemTime,
        to: SystemTime,
    ) -> Result<Vec<OrchestratorResult>> {
        let request = ScanRequest::first(ScanOrder::Created, 100).created_between(from, to);
        self.results(request, None).await
    }

    async fn results(
        &self,
        mut request: ScanRequest,
        most: Option<usize>,
    ) -> Result<Vec<OrchestratorResult>> {
        let mut out = Vec::new();
        loop {
            let page = self.backend.scan(RESULT_NAMESPACE, request.clone()).await?;
            for (key, doc) in page.entries {
                out.push(decode(RESULT_NAMESPACE, &key, &doc.value)?);
                if most.is_some_and(|m| out.len() >= m) {
                    return Ok(out);
                }
            }
            match page.cursor {
                Some(c) => request.cursor = Some(c),
                None => return Ok(out),
            }
        }
    }

    /// Seed 001's analytics: counts from the status and type indexes
    /// (index entries, not documents), the last 24 hours and the newest 20
    /// from creation-time ranges, costs over the retained results (at
    /// most the retention, 100 by default).
    pub async fn analytics(&self) -> Result<WorkflowAnalytics> {
        let b = &self.backend;
        let count = |term: &'static str| b.count_term(WORKFLOW_NAMESPACE, STATUS_INDEX, term);
        let active = count("pending").await? + count("running").await?;
        let mut by_type = BTreeMap::new();
        for t in &self.types {
            by_type.insert(
                t.clone(),
                b.count_term(WORKFLOW_NAMESPACE, TYPE_INDEX, t).await?,
            );
        }
        let now = SystemTime::now();
        let day = self
            .completed_between(
                now - Duration::from_secs(86_400),
                now + Duration::from_secs(1),
            )
            .await?;
        let retained = self
            .results(ScanRequest::first(ScanOrder::NewestFirst, 100), None)
            .await?;
        let mut costs = CostSummary {
            workflow_count: retained.len(),
            ..CostSummary::default()
        };
        for r in &retained {
            costs.total_cost_usd += r.total_cost;
            if costs
                .most_expensive
                .as_ref()
                .is_none_or(|m| r.total_cost > m.cost)
            {
                costs.most_expensive = Some(MostExpensive {
                    task_id: r.task_id.clone(),
                    cost: r.total_cost,
                    execution_time: r.execution_time,
                });
            }
        }
        if !retained.is_empty() {
            costs.average_cost_usd = costs.total_cost_usd / retained.len() as f64;
        }
        Ok(WorkflowAnalytics {
            active_workflows: active,
            completed_workflows: count("completed").await?,
            failed_workflows: count("failed").await?,
            by_type,
            recent_24h: day.len(),
            recent_task_ids: retained
                .iter()
                .take(20)
                .map(|r| r.task_id.clone())
                .collect(),
            costs,
        })
    }

    /// The seed's restore on restart: reads the active workflows and the
    /// newest `retention` results, which fills a
    /// [`CacheTier`](crate::layers::CacheTier) in front of the store.
    /// Returns how many of each.
    pub async fn restore(&self) -> Result<(usize, usize)> {
        let active = self.active().await?.len();
        let results = self.recent(self.retention).await?.len();
        Ok((active, results))
    }
}

fn stamp_status(info: &mut WorkflowInfo, status: WorkflowStatus) {
    match status {
        WorkflowStatus::Running if info.started_at.is_none() => info.started_at = Some(iso_now()),
        WorkflowStatus::Completed | WorkflowStatus::Failed => info.completed_at = Some(iso_now()),
        _ => {}
    }
    info.status = status;
}

fn missing(task_id: &str) -> Error {
    Error::NotFound {
        namespace: WORKFLOW_NAMESPACE.into(),
        key: task_id.into(),
    }
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| Error::InvalidInput(format!("does not encode: {e}")))
}

fn decode<T: for<'de> Deserialize<'de>>(namespace: &str, key: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Error::Corrupted {
        namespace: namespace.into(),
        key: key.into(),
        reason: e.to_string(),
        len: bytes.len(),
    })
}

/// Now as the seed writes times: `datetime.utcnow().isoformat()`.
fn iso_now() -> String {
    crate::model::Timestamp::now().to_string()
}
