//! The workflow store (seed 001) on every engine: create -> run ->
//! complete -> analytics, retention keeping exactly the newest N, time
//! windows, TTL expiry of both kinds, restore after a restart, and the
//! seed's own result JSON.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use persistence_core::backend::{BackendExt, DocumentWrite};
use persistence_core::memory::MemoryBackend;
use persistence_core::store::{
    OrchestratorResult, WorkflowInfo, WorkflowStatus, WorkflowStore, RESULT_NAMESPACE,
};
use persistence_core::{ErrorKind, SharedBackend};
use redis_test_server::{RedisCluster, RedisServer};

/// A result as the seed's `OrchestratorResult.to_dict()` writes it.
fn result(task_id: &str, status: &str, cost: f64) -> OrchestratorResult {
    serde_json::from_value(serde_json::json!({
        "task_id": task_id,
        "title": format!("Report {task_id}"),
        "status": status,
        "agent_results": [{
            "agent_id": "a1", "agent_type": "researcher", "subtask_id": "s1",
            "content": "found it", "status": "completed", "execution_time": 1.25,
            "cost": cost / 2.0, "metadata": {"model": "grok"}, "error": null,
            "citations": ["https://example.org"]
        }],
        "synthesis_results": [{
            "synthesis_id": "syn1", "synthesis_level": "final", "content": "all of it",
            "source_agent_ids": ["a1"], "execution_time": 0.5, "cost": cost / 2.0,
            "metadata": {}
        }],
        "final_synthesis": "the answer",
        "execution_time": 2.5,
        "total_cost": cost,
        "metadata": {"documents": 1},
        "generated_documents": [{"format": "pdf"}],
        "artifacts": [],
        "error": null,
        "timestamp": "2026-12-01T10:00:00",
    }))
    .unwrap()
}

async fn store_behaves(backend: SharedBackend) {
    let store = WorkflowStore::new(backend.clone()).with_retention(5);
    let before = SystemTime::now();
    for (n, kind) in ["beltalowda", "swarm", "swarm"].iter().enumerate() {
        let info = WorkflowInfo::new(format!("wf-{n}"), *kind, "research the thing");
        store.create_workflow(&info).await.unwrap();
    }
    let again = store
        .create_workflow(&WorkflowInfo::new("wf-0", "swarm", "x"))
        .await;
    assert_eq!(again.unwrap_err().kind(), ErrorKind::AlreadyExists);
    let running = store
        .update_status("wf-1", WorkflowStatus::Running)
        .await
        .unwrap();
    assert!(running.started_at.is_some());
    assert_eq!(
        store
            .update_status("nope", WorkflowStatus::Running)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    let active: Vec<String> = store
        .active()
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.task_id)
        .collect();
    assert_eq!(active, ["wf-0", "wf-2", "wf-1"], "pending, then running");
    assert_eq!(store.by_type("swarm").await.unwrap().len(), 2);

    // complete: status flip and result together
    store
        .complete_workflow("wf-1", &result("wf-1", "completed", 0.25))
        .await
        .unwrap();
    store
        .complete_workflow("wf-2", &result("wf-2", "failed", 0.75))
        .await
        .unwrap();
    let done = store.get_workflow("wf-1").await.unwrap().unwrap();
    assert_eq!(done.status, WorkflowStatus::Completed);
    assert!(done.completed_at.is_some());
    let got = store.get_result("wf-1").await.unwrap().unwrap();
    assert_eq!(
        got,
        result("wf-1", "completed", 0.25),
        "the seed's JSON comes back whole"
    );
    assert_eq!(got.extra["timestamp"], "2026-12-01T10:00:00");
    assert_eq!(
        store
            .complete_workflow("ghost", &result("ghost", "completed", 1.0))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    assert!(store.get_result("ghost").await.unwrap().is_none());

    let a = store.analytics().await.unwrap();
    assert_eq!(a.active_workflows, 1);
    assert_eq!(a.completed_workflows, 1);
    assert_eq!(a.failed_workflows, 1);
    assert_eq!(a.by_type["swarm"], 2);
    assert_eq!(a.by_type["beltalowda"], 1);
    assert_eq!(a.recent_24h, 2);
    assert_eq!(a.recent_task_ids, ["wf-2", "wf-1"], "newest first");
    assert_eq!(a.costs.workflow_count, 2);
    assert!((a.costs.total_cost_usd - 1.0).abs() < 1e-9);
    assert!((a.costs.average_cost_usd - 0.5).abs() < 1e-9);
    assert_eq!(a.costs.most_expensive.unwrap().task_id, "wf-2");

    // retention keeps exactly the newest 5
    for n in 10..18 {
        let id = format!("wf-{n}");
        store
            .create_workflow(&WorkflowInfo::new(&id, "swarm", "more"))
            .await
            .unwrap();
        store
            .complete_workflow(&id, &result(&id, "completed", 0.01))
            .await
            .unwrap();
    }
    // trims run in the background: at most N + 2 * N/10 meanwhile
    assert!(backend.count(RESULT_NAMESPACE).await.unwrap() <= 7);
    store.apply_retention().await.unwrap();
    assert_eq!(backend.count(RESULT_NAMESPACE).await.unwrap(), 5);
    let recent: Vec<String> = store
        .recent(100)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.task_id)
        .collect();
    assert_eq!(recent, ["wf-17", "wf-16", "wf-15", "wf-14", "wf-13"]);
    assert!(store.get_result("wf-1").await.unwrap().is_none(), "trimmed");
    assert_eq!(store.recent(2).await.unwrap().len(), 2);

    // time windows
    let after = SystemTime::now() + Duration::from_millis(1);
    assert_eq!(
        store.completed_between(before, after).await.unwrap().len(),
        5
    );
    let old = before - Duration::from_secs(3600);
    assert!(store
        .completed_between(old, before)
        .await
        .unwrap()
        .is_empty());
    let (active, results) = store.restore().await.unwrap();
    assert_eq!((active, results), (1, 5));
}

async fn ttls_expire_both_kinds(backend: SharedBackend) {
    let store = WorkflowStore::new(backend).with_ttls(
        Some(Duration::from_millis(300)),
        Some(Duration::from_millis(600)),
    );
    let completed = store.analytics().await.unwrap().completed_workflows;
    store
        .create_workflow(&WorkflowInfo::new("t-1", "swarm", "brief"))
        .await
        .unwrap();
    store
        .complete_workflow("t-1", &result("t-1", "completed", 0.1))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        store.get_workflow("t-1").await.unwrap().is_none(),
        "state after 300 ms"
    );
    assert!(
        store.get_result("t-1").await.unwrap().is_some(),
        "the result lives longer"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        store.get_result("t-1").await.unwrap().is_none(),
        "result after 600 ms"
    );
    assert_eq!(
        store.analytics().await.unwrap().completed_workflows,
        completed,
        "an expired state is not counted"
    );
}

async fn corrupted_result_is_an_error_and_kept(backend: SharedBackend) {
    let store = WorkflowStore::new(backend.clone());
    backend
        .upsert(
            RESULT_NAMESPACE,
            "bad",
            DocumentWrite::new(&b"{not json"[..]),
        )
        .await
        .unwrap();
    let e = store.get_result("bad").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupted);
    assert!(backend
        .get(RESULT_NAMESPACE, "bad")
        .await
        .unwrap()
        .is_some());
}

async fn all(backend: SharedBackend) {
    store_behaves(backend.clone()).await;
    ttls_expire_both_kinds(backend.clone()).await;
    corrupted_result_is_an_error_and_kept(backend).await;
}

#[tokio::test]
async fn on_memory() {
    all(Arc::new(MemoryBackend::new())).await;
}

fn redb_at(path: &std::path::Path) -> SharedBackend {
    let options = persistence_redb::RedbOptions::new(path.join("db.redb"));
    Arc::new(persistence_redb::RedbBackend::open(&options).unwrap())
}

fn sled_at(path: &std::path::Path) -> SharedBackend {
    let options = persistence_sled::SledOptions::new(path.join("db"));
    Arc::new(persistence_sled::SledBackend::open(&options).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redb() {
    let dir = tempfile::tempdir().unwrap();
    all(redb_at(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sled() {
    let dir = tempfile::tempdir().unwrap();
    all(sled_at(dir.path())).await;
}

async fn redis(port: u16) -> SharedBackend {
    let options = persistence_redis::RedisOptions::new("127.0.0.1", port);
    Arc::new(
        persistence_redis::RedisBackend::connect(options)
            .await
            .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis() {
    let server = RedisServer::start();
    all(redis(server.port()).await).await;
}

/// A cluster's transactions stay within one hash slot, and a workflow's
/// state and result are in two: the result first, then the state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_cluster() {
    let cluster = RedisCluster::start(3);
    let mut options = persistence_redis::RedisOptions::new("unused", 0);
    options.cluster_nodes = cluster
        .urls()
        .iter()
        .map(|u| u.trim_start_matches("redis://").to_string())
        .collect();
    let backend: SharedBackend = Arc::new(
        persistence_redis::RedisBackend::connect(options)
            .await
            .unwrap(),
    );
    assert!(backend.capabilities().partitioned_transactions);
    all(backend).await;
}

/// The seed restores active workflows and the newest results after a
/// restart: here the engine is closed and opened again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_after_restart_on_embedded_engines_and_redis() {
    async fn write(store: &WorkflowStore) {
        for n in 0..4 {
            let id = format!("r-{n}");
            store
                .create_workflow(&WorkflowInfo::new(&id, "swarm", "persist me"))
                .await
                .unwrap();
            if n % 2 == 0 {
                store
                    .complete_workflow(&id, &result(&id, "completed", 0.5))
                    .await
                    .unwrap();
            }
        }
    }
    async fn check(store: &WorkflowStore) {
        assert_eq!(store.restore().await.unwrap(), (2, 2));
        let recent: Vec<String> = store
            .recent(10)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.task_id)
            .collect();
        assert_eq!(recent, ["r-2", "r-0"]);
        assert_eq!(store.analytics().await.unwrap().completed_workflows, 2);
    }
    let dir = tempfile::tempdir().unwrap();
    for open in [redb_at, sled_at] {
        let sub = tempfile::tempdir_in(dir.path()).unwrap();
        {
            let store = WorkflowStore::new(open(sub.path()));
            write(&store).await;
            store.backend().flush().await.unwrap();
        }
        // the first handle is dropped: the files are free to open again
        tokio::time::sleep(Duration::from_millis(200)).await;
        check(&WorkflowStore::new(open(sub.path()))).await;
    }
    let mut server = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    write(&WorkflowStore::new(redis(server.port()).await)).await;
    server.restart();
    check(&WorkflowStore::new(redis(server.port()).await)).await;
}

/// With a retention of 30 the store trims at the first completion and every
/// third after it, in the background: a reader never sees more than
/// 30 + 2 * 3 results (a due trim waits for one still in flight), the
/// trims are spaced out, and `apply_retention` brings it back to 30. On a
/// single-threaded runtime, where a background trim runs only when the
/// caller yields, and on a multi-threaded one.
#[test]
fn retention_trims_every_tenth_of_n() {
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    current.block_on(retention_is_bounded());
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    multi.block_on(retention_is_bounded());
}

async fn retention_is_bounded() {
    let backend: SharedBackend = Arc::new(MemoryBackend::new());
    let store = WorkflowStore::new(backend.clone()).with_retention(30);
    let mut most = 0;
    for n in 0..70 {
        let id = format!("w-{n}");
        store
            .create_workflow(&WorkflowInfo::new(&id, "swarm", "x"))
            .await
            .unwrap();
        store
            .complete_workflow(&id, &result(&id, "completed", 0.1))
            .await
            .unwrap();
        let stored = backend.count(RESULT_NAMESPACE).await.unwrap();
        most = most.max(stored);
        assert!(stored <= 36, "{stored} results after {n} completions");
    }
    assert!(most > 30, "trims are spaced out");
    store.apply_retention().await.unwrap();
    assert_eq!(backend.count(RESULT_NAMESPACE).await.unwrap(), 30);
    let recent = store.recent(100).await.unwrap();
    assert_eq!(recent[0].task_id, "w-69");
    // the newest 30 are kept: w-40..=w-69
    let kept: Vec<usize> = recent
        .iter()
        .map(|r| r.task_id["w-".len()..].parse().unwrap())
        .collect();
    assert_eq!(kept, (40..70).rev().collect::<Vec<_>>());
}
