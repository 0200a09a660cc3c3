//! The crew registry (seed 000): crew definitions by name and by id.
//!
//! A crew is stored under its name in the namespace `crew`, indexed by its
//! id, as the seed's JSON (fields this library does not know are kept as
//! they came). For the seed's two tiers (memory in front, Redis behind,
//! writes kept and replayed while Redis is down) open the registry over a
//! [`CacheTier`](crate::layers::CacheTier) around a
//! [`RecoveryQueue`](crate::layers::RecoveryQueue) and call
//! [`CrewRegistry::preload`] at start: `docs/crews.md`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::collection::{Collection, Record};
use crate::backend::{Health, IndexTerm, ScanOrder, ScanRequest, SharedBackend, Version};
use crate::error::{Error, Result};

/// The index crews are found by id in.
pub const CREW_ID_INDEX: &str = "crew_id";

/// How a crew's agents run.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutionMode {
    /// One after the other.
    Sequential,
    /// All at once.
    Parallel,
    /// As a flow graph.
    Flow,
    /// A mode this library does not know, kept as written.
    #[serde(untagged)]
    Other(String),
}

impl ExecutionMode {
    /// Its name as stored.
    pub fn as_str(&self) -> &str {
        match self {
            ExecutionMode::Sequential => "sequential",
            ExecutionMode::Parallel => "parallel",
            ExecutionMode::Flow => "flow",
            ExecutionMode::Other(s) => s,
        }
    }
}

/// One agent of a crew.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentDefinition {
    /// The agent's id within the crew.
    pub agent_id: String,
    /// The agent's class.
    pub agent_class: String,
    /// Its display name.
    #[serde(default)]
    pub name: Option<String>,
    /// Its configuration.
    #[serde(default)]
    pub config: serde_json::Value,
    /// Every other field, kept as it came.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// A crew definition, as the seed's `CrewDefinition` JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrewDefinition {
    /// Its name: the key it is stored under.
    pub name: String,
    /// Its id (the seed generates a UUID).
    pub crew_id: String,
    /// How its agents run.
    pub execution_mode: ExecutionMode,
    /// Its agents.
    #[serde(default)]
    pub agents: Vec<AgentDefinition>,
    /// Every other field (description, flow relations, timestamps...),
    /// kept as it came.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl Record for CrewDefinition {
    const NAMESPACE: &'static str = "crew";

    fn key(&self) -> &str {
        &self.name
    }

    fn index_terms(&self) -> Vec<IndexTerm> {
        vec![IndexTerm::new(CREW_ID_INDEX, &self.crew_id)]
    }
}

/// One line of [`CrewStats::crews`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrewSummary {
    /// The crew's name.
    pub name: String,
    /// Its id.
    pub crew_id: String,
    /// Its execution mode.
    pub mode: String,
    /// How many agents it has.
    pub agent_count: usize,
}

/// What [`CrewRegistry::crew_stats`] answers: the seed's `get_crew_stats`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CrewStats {
    /// Crews stored.
    pub total_crews: usize,
    /// Crews per execution mode.
    pub crews_by_mode: BTreeMap<String, usize>,
    /// Agents over every crew.
    pub total_agents: usize,
    /// One line per crew, by name.
    pub crews: Vec<CrewSummary>,
}

/// What [`CrewRegistry::metadata`] answers about a stored crew.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CrewMetadata {
    /// Its name.
    pub name: String,
    /// Its id.
    pub crew_id: String,
    /// The stored version (changes with every save).
    pub version: Version,
    /// Bytes stored.
    pub size: usize,
    /// How many agents it has.
    pub agent_count: usize,
}

/// Crew definitions over any backend.
///
/// ```
/// use std::sync::Arc;
/// use persistence_core::memory::MemoryBackend;
/// use persistence_core::store::{CrewDefinition, CrewRegistry};
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let crews = CrewRegistry::new(Arc::new(MemoryBackend::new()));
/// let crew: CrewDefinition = serde_json::from_value(serde_json::json!({
///     "name": "research_team", "crew_id": "c-1", "execution_mode": "sequential",
///     "agents": [{"agent_id": "a1", "agent_class": "BasicAgent", "config": {"model": "gpt-4"}}],
/// })).unwrap();
/// crews.add_crew(&crew).await.unwrap();
/// assert_eq!(crews.get_crew_by_id("c-1").await.unwrap().unwrap().name, "research_team");
/// assert_eq!(crews.crew_stats().await.unwrap().total_agents, 1);
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct CrewRegistry {
    crews: Collection<CrewDefinition>,
}

impl CrewRegistry {
    /// The registry in the namespace `crew` of `backend`.
    pub fn new(backend: SharedBackend) -> Self {
        CrewRegistry {
            crews: Collection::new(backend),
        }
    }

    /// The same registry in another namespace.
    pub fn with_namespace(self, namespace: impl Into<String>) -> Self {
        CrewRegistry {
            crews: self.crews.with_namespace(namespace),
        }
    }

    /// Saves `crew` under its name, replacing any crew of that name (its
    /// id index follows in the same write); returns the new version.
    pub async fn add_crew(&self, crew: &CrewDefinition) -> Result<Version> {
        if crew.name.is_empty() || crew.crew_id.is_empty() {
            return Err(Error::InvalidInput(
                "a crew needs a name and a crew_id".into(),
            ));
        }
        let write = crate::backend::DocumentWrite {
            value: serde_json::to_vec(crew)
                .map_err(|e| Error::InvalidInput(format!("crew {:?}: {e}", crew.name)))?
                .into(),
            index: crew.index_terms(),
            ttl: None,
        };
        self.crews
            .backend()
            .put(
                self.crews.namespace(),
                &crew.name,
                write,
                crate::backend::Precondition::Any,
            )
            .await
    }

    /// The crew named `name`.
    pub async fn get_crew(&self, name: &str) -> Result<Option<CrewDefinition>> {
        self.crews.get_record(name).await
    }

    /// The crew whose id is `crew_id`.
    pub async fn get_crew_by_id(&self, crew_id: &str) -> Result<Option<CrewDefinition>> {
        let found = self
            .crews
            .find(CREW_ID_INDEX, crew_id, 1, |c| c.crew_id == crew_id)
            .await?;
        Ok(found.into_iter().next())
    }

    /// Removes the crew named `name`; whether there was one.
    pub async fn remove_crew(&self, name: &str) -> Result<bool> {
        self.crews
            .backend()
            .remove(
                self.crews.namespace(),
                name,
                crate::backend::Precondition::Any,
            )
            .await
    }

    /// Every crew's name, sorted.
    pub async fn list_crews(&self) -> Result<Vec<String>> {
        Ok(self.all().await?.into_iter().map(|c| c.name).collect())
    }

    async fn all(&self) -> Result<Vec<CrewDefinition>> {
        let backend = self.crews.backend();
        let mut request = ScanRequest::first(ScanOrder::Key, 500);
        let mut out = Vec::new();
        loop {
            let page = backend
                .scan(self.crews.namespace(), request.clone())
                .await?;
            for (key, doc) in page.entries {
                out.push(self.crews.decode(&key, doc)?.record);
            }
            match page.cursor {
                Some(c) => request.cursor = Some(c),
                None => return Ok(out),
            }
        }
    }

    /// Counts by mode and agents, and a line per crew.
    pub async fn crew_stats(&self) -> Result<CrewStats> {
        let mut stats = CrewStats::default();
        for c in self.all().await? {
            stats.total_crews += 1;
            stats.total_agents += c.agents.len();
            *stats
                .crews_by_mode
                .entry(c.execution_mode.as_str().to_string())
                .or_default() += 1;
            stats.crews.push(CrewSummary {
                mode: c.execution_mode.as_str().to_string(),
                agent_count: c.agents.len(),
                name: c.name,
                crew_id: c.crew_id,
            });
        }
        Ok(stats)
    }

    /// What is stored of the crew named `name`.
    pub async fn metadata(&self, name: &str) -> Result<Option<CrewMetadata>> {
        let Some(doc) = self
            .crews
            .backend()
            .get(self.crews.namespace(), name)
            .await?
        else {
            return Ok(None);
        };
        let size = doc.value.len();
        let v = self.crews.decode(name, doc)?;
        Ok(Some(CrewMetadata {
            name: v.record.name.clone(),
            crew_id: v.record.crew_id.clone(),
            version: v.version,
            size,
            agent_count: v.record.agents.len(),
        }))
    }

    /// Removes every crew; how many.
    pub async fn clear_all(&self) -> Result<u64> {
        let mut n = 0;
        for name in self.list_crews().await? {
            n += u64::from(self.remove_crew(&name).await?);
        }
        Ok(n)
    }

    /// Reads every crew once, through whatever is in front of the durable
    /// store (a cache tier keeps them in memory): the seed's load at start.
    /// Returns how many.
    pub async fn preload(&self) -> Result<usize> {
        let names = self.list_crews().await?;
        for name in &names {
            self.get_crew(name).await?;
        }
        Ok(names.len())
    }

    /// How the store underneath is doing (the seed's `ping`).
    pub async fn ping(&self) -> Health {
        self.crews.backend().health().await
    }
}
