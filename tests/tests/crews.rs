//! The crew registry (seed 000) on every engine, and the seed's two tiers
//! over a real Redis that is killed and restarted: reads served from
//! memory, saves kept and replayed, deletes from both tiers, health
//! degraded while it is down.

use std::sync::Arc;
use std::time::Duration;

use persistence_core::backend::HealthStatus;
use persistence_core::layers::{layer, CacheTier, RecoveryQueue, Timeout};
use persistence_core::memory::MemoryBackend;
use persistence_core::store::{CrewDefinition, CrewRegistry, ExecutionMode};
use persistence_core::{ErrorKind, SharedBackend};
use redis_test_server::RedisServer;

fn crew(name: &str, id: &str, mode: &str, agents: usize) -> CrewDefinition {
    let agents: Vec<serde_json::Value> = (0..agents)
        .map(|n| {
            serde_json::json!({
                "agent_id": format!("{name}-agent-{n}"), "agent_class": "BasicAgent",
                "name": format!("Agent {n}"), "config": {"model": "gpt-4", "temperature": 0.2},
                "tools": ["search"],
            })
        })
        .collect();
    serde_json::from_value(serde_json::json!({
        "name": name, "crew_id": id, "execution_mode": mode, "agents": agents,
        "description": format!("the {name}"), "shared_tools": [], "max_parallel_tasks": 4,
    }))
    .unwrap()
}

async fn registry_behaves(backend: SharedBackend) {
    let crews = CrewRegistry::new(backend);
    assert_eq!(crews.clear_all().await.unwrap(), 0);
    let research = crew("research_team", "id-r", "sequential", 3);
    crews.add_crew(&research).await.unwrap();
    crews
        .add_crew(&crew("writing_team", "id-w", "parallel", 2))
        .await
        .unwrap();
    crews
        .add_crew(&crew("analysis_crew", "id-a", "flow", 4))
        .await
        .unwrap();
    crews
        .add_crew(&crew("odd", "id-o", "loop", 0))
        .await
        .unwrap();

    // the seed's JSON comes back whole, unknown fields included
    let got = crews.get_crew("research_team").await.unwrap().unwrap();
    assert_eq!(got, research);
    assert_eq!(got.extra["max_parallel_tasks"], 4);
    assert_eq!(got.agents[0].extra["tools"], serde_json::json!(["search"]));
    assert_eq!(
        crews.get_crew("odd").await.unwrap().unwrap().execution_mode,
        ExecutionMode::Other("loop".into())
    );
    assert_eq!(
        crews.get_crew_by_id("id-w").await.unwrap().unwrap().name,
        "writing_team"
    );
    assert!(crews.get_crew("nobody").await.unwrap().is_none());
    assert!(crews.get_crew_by_id("nobody").await.unwrap().is_none());

    // create or replace: a new id for a name moves its id index
    let v1 = crews
        .metadata("writing_team")
        .await
        .unwrap()
        .unwrap()
        .version;
    crews
        .add_crew(&crew("writing_team", "id-w2", "parallel", 5))
        .await
        .unwrap();
    let meta = crews.metadata("writing_team").await.unwrap().unwrap();
    assert_ne!(meta.version, v1);
    assert_eq!((meta.crew_id.as_str(), meta.agent_count), ("id-w2", 5));
    assert!(
        crews.get_crew_by_id("id-w").await.unwrap().is_none(),
        "the old id is gone"
    );
    assert_eq!(
        crews.get_crew_by_id("id-w2").await.unwrap().unwrap().name,
        "writing_team"
    );

    assert_eq!(
        crews.list_crews().await.unwrap(),
        ["analysis_crew", "odd", "research_team", "writing_team"]
    );
    let stats = crews.crew_stats().await.unwrap();
    assert_eq!(stats.total_crews, 4);
    assert_eq!(stats.total_agents, 3 + 5 + 4);
    assert_eq!(stats.crews_by_mode["sequential"], 1);
    assert_eq!(stats.crews_by_mode["flow"], 1);
    assert_eq!(stats.crews_by_mode["loop"], 1);
    assert_eq!(stats.crews[0].name, "analysis_crew");

    assert!(crews.remove_crew("odd").await.unwrap());
    assert!(!crews.remove_crew("odd").await.unwrap());
    assert!(crews.get_crew_by_id("id-o").await.unwrap().is_none());
    let bad = crew("", "x", "flow", 0);
    assert_eq!(
        crews.add_crew(&bad).await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(crews.ping().await.status, HealthStatus::Ok);
    assert_eq!(crews.clear_all().await.unwrap(), 3);
    assert!(crews.list_crews().await.unwrap().is_empty());
}

#[tokio::test]
async fn on_memory() {
    registry_behaves(Arc::new(MemoryBackend::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redb() {
    let dir = tempfile::tempdir().unwrap();
    let options = persistence_redb::RedbOptions::new(dir.path().join("db.redb"));
    registry_behaves(Arc::new(
        persistence_redb::RedbBackend::open(&options).unwrap(),
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sled() {
    let dir = tempfile::tempdir().unwrap();
    let options = persistence_sled::SledOptions::new(dir.path().join("db"));
    registry_behaves(Arc::new(
        persistence_sled::SledBackend::open(&options).unwrap(),
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis() {
    let server = RedisServer::start();
    let options = persistence_redis::RedisOptions::new("127.0.0.1", server.port());
    registry_behaves(Arc::new(
        persistence_redis::RedisBackend::connect(options)
            .await
            .unwrap(),
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_two_tiers_ride_out_a_redis_outage() {
    let mut server = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let mut options = persistence_redis::RedisOptions::new("127.0.0.1", server.port());
    options.command_timeout = Duration::from_millis(300);
    options.connect_timeout = Duration::from_millis(300);
    let redis: SharedBackend = Arc::new(
        persistence_redis::RedisBackend::connect(options.clone())
            .await
            .unwrap(),
    );
    // before: crews saved by an earlier process
    let earlier = CrewRegistry::new(redis.clone());
    earlier
        .add_crew(&crew("research_team", "id-r", "sequential", 3))
        .await
        .unwrap();
    earlier
        .add_crew(&crew("writing_team", "id-w", "parallel", 2))
        .await
        .unwrap();

    // this process: memory in front of a recovery queue in front of Redis
    let queue = RecoveryQueue::new(
        layer(redis.clone(), Timeout::new(Duration::from_millis(500))),
        1_000,
        3,
        Duration::from_millis(50),
    );
    let tiers: SharedBackend = Arc::new(CacheTier::new(queue.clone() as SharedBackend, 1_000));
    let crews = CrewRegistry::new(tiers.clone());
    assert_eq!(
        crews.preload().await.unwrap(),
        2,
        "the seed's load at start"
    );

    server.kill();
    // reads are served from memory
    let got = crews.get_crew("research_team").await.unwrap().unwrap();
    assert_eq!(got.agents.len(), 3);
    // saves are kept and replayed later
    crews
        .add_crew(&crew("analysis_crew", "id-a", "flow", 4))
        .await
        .unwrap();
    assert_eq!(
        crews
            .get_crew("analysis_crew")
            .await
            .unwrap()
            .unwrap()
            .crew_id,
        "id-a"
    );
    // deletes leave memory at once and Redis once it is back
    assert!(crews.remove_crew("writing_team").await.unwrap());
    assert!(crews.get_crew("writing_team").await.unwrap().is_none());
    let health = crews.ping().await;
    assert_ne!(
        health.status,
        HealthStatus::Ok,
        "health says so while Redis is down: {health:?}"
    );

    server.restart();
    // the queue replays on its own: Redis ends with what this process did
    let direct = CrewRegistry::new(redis.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let names = direct.list_crews().await.ok();
        if names.as_deref() == Some(&["analysis_crew".to_string(), "research_team".to_string()][..])
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the saves made during the outage were not replayed: {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        direct.get_crew_by_id("id-a").await.unwrap().unwrap().name,
        "analysis_crew"
    );
    assert!(direct.get_crew("writing_team").await.unwrap().is_none());
    assert_eq!(crews.ping().await.status, HealthStatus::Ok);
}
