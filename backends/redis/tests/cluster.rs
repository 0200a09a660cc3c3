//! The conformance suite and the cluster-specific guarantees against a real
//! 3-master Redis Cluster started by the test.

use std::sync::{Arc, LazyLock};

use persistence_conformance::sample_task;
use persistence_core::{SharedBackend, TaskStore};
use persistence_redis::{RedisBackend, RedisOptions};
use redis_test_server::RedisCluster;

static CLUSTER: LazyLock<RedisCluster> = LazyLock::new(|| RedisCluster::start(3));

fn options() -> RedisOptions {
    let mut o = RedisOptions::new("unused", 0);
    o.cluster_nodes = CLUSTER
        .urls()
        .iter()
        .map(|u| u.trim_start_matches("redis://").to_string())
        .collect();
    o
}

mod conformance {
    persistence_conformance::conformance_tests!(|| async {
        std::sync::Arc::new(
            persistence_redis::RedisBackend::connect(super::options())
                .await
                .expect("connect to the cluster"),
        ) as persistence_core::SharedBackend
    });
}

async fn raw() -> redis::cluster_async::ClusterConnection {
    redis::cluster::ClusterClient::new(CLUSTER.urls())
        .unwrap()
        .get_async_connection()
        .await
        .unwrap()
}

async fn keyslot(con: &mut redis::cluster_async::ClusterConnection, key: &str) -> i64 {
    redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(key)
        .query_async(con)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_and_its_metadata_share_a_slot_and_its_index_is_verified() {
    let backend = RedisBackend::connect(options()).await.unwrap();
    let caps = persistence_core::Backend::capabilities(&backend);
    assert!(
        !caps.atomic_index,
        "a cluster must not claim an atomic index"
    );
    let layout = backend.layout().clone();
    let store = TaskStore::new(Arc::new(backend) as SharedBackend);
    let mut con = raw().await;
    for id in ["plain", "with{braces}", "}{"] {
        store.create(&sample_task(id, &["r"])).await.unwrap();
        let doc = keyslot(&mut con, &layout.doc("task", id)).await;
        let meta = keyslot(&mut con, &layout.meta("task", id)).await;
        assert_eq!(doc, meta, "{id}: document and metadata in different slots");
    }
    // the seed's layout is kept on a cluster too
    let json: Option<String> = redis::cmd("GET")
        .arg("task_persistence:task:plain")
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(json.is_some());
    // a stale entry (what a crash between the steps leaves) is never returned, and is cleaned
    let set = layout.index("task", "request_index", "r");
    let _: i64 = redis::cmd("SADD")
        .arg(&set)
        .arg("ghost")
        .query_async(&mut con)
        .await
        .unwrap();
    let mut moved = sample_task("plain", &["elsewhere"]);
    moved.task_id = "plain".into();
    store.update(&moved).await.unwrap();
    let _: i64 = redis::cmd("SADD")
        .arg(&set)
        .arg("plain")
        .query_async(&mut con)
        .await
        .unwrap();
    let found = store.load_by_request_id("r").await.unwrap().unwrap();
    assert_eq!(
        found.task_id, "with{braces}",
        "the oldest task still carrying r"
    );
    let members: Vec<String> = redis::cmd("SMEMBERS")
        .arg(&set)
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(
        !members.contains(&"ghost".to_string()) && !members.contains(&"plain".to_string()),
        "{members:?}"
    );
}
