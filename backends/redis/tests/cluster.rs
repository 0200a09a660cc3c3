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

/// A transaction within one slot keeps the sets of other slots right: both
/// namespaces' scans and the index see its puts, then its removal and term
/// change; and the server agrees the tagged keys share a slot while keys
/// of two tags do not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_within_one_slot_updates_the_index_and_order_sets() {
    use persistence_core::backend::{
        Backend, DocumentWrite, Precondition, ScanOrder, ScanRequest, TxOutcome, TxWrite,
    };
    let backend = RedisBackend::connect(options()).await.unwrap();
    let caps = backend.capabilities();
    assert!(
        caps.transactions && caps.partitioned_transactions,
        "{caps:?}"
    );
    let layout = backend.layout().clone();
    let mut con = raw().await;
    let (state, result) = (
        layout.doc("wf-state", "{w-1}"),
        layout.doc("wf-result", "{w-1}"),
    );
    assert_eq!(
        keyslot(&mut con, &state).await,
        keyslot(&mut con, &result).await
    );
    let other = layout.doc("wf-state", "{w-2}");
    assert_ne!(
        keyslot(&mut con, &state).await,
        keyslot(&mut con, &other).await
    );

    let put = |ns: &str, term: &str| {
        TxWrite::put(
            ns,
            "{w-1}",
            DocumentWrite::new(bytes::Bytes::from_static(b"{}")).with_term("status", term),
            Precondition::Absent,
        )
    };
    let done = backend
        .transact(vec![put("wf-state", "running"), put("wf-result", "kept")])
        .await
        .unwrap();
    assert!(
        matches!(done[..], [TxOutcome::Put(_), TxOutcome::Put(_)]),
        "{done:?}"
    );
    for ns in ["wf-state", "wf-result"] {
        let page = backend
            .scan(ns, ScanRequest::first(ScanOrder::Created, 10))
            .await
            .unwrap();
        let keys: Vec<&str> = page.entries.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["{w-1}"], "{ns}'s creation order");
    }
    assert_eq!(
        backend
            .lookup("wf-state", "status", "running")
            .await
            .unwrap(),
        ["{w-1}"]
    );

    let version = backend
        .get("wf-state", "{w-1}")
        .await
        .unwrap()
        .unwrap()
        .version;
    backend
        .transact(vec![
            TxWrite::put(
                "wf-state",
                "{w-1}",
                DocumentWrite::new(bytes::Bytes::from_static(b"{}")).with_term("status", "done"),
                Precondition::Version(version),
            ),
            TxWrite::remove("wf-result", "{w-1}", Precondition::Present),
        ])
        .await
        .unwrap();
    assert!(backend
        .lookup("wf-state", "status", "running")
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        backend.lookup("wf-state", "status", "done").await.unwrap(),
        ["{w-1}"]
    );
    let page = backend
        .scan("wf-result", ScanRequest::first(ScanOrder::Key, 10))
        .await
        .unwrap();
    assert!(page.entries.is_empty(), "the removal left the key order");

    let across = backend
        .transact(vec![
            put("wf-state", "x"),
            TxWrite::remove("wf-state", "{w-2}", Precondition::Any),
        ])
        .await;
    // {w-1} exists already, but the slot check comes first
    assert_eq!(
        across.unwrap_err().kind(),
        persistence_core::ErrorKind::Unsupported
    );
    for ns in ["wf-state", "wf-result"] {
        backend.clear_namespace(ns).await.unwrap();
    }
}

/// A sliding TTL on a cluster: a read renews the document, its metadata and
/// its index sets (which live in other slots, so the read's script cannot
/// touch them itself), and the task stays found by request id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sliding_ttl_renews_index_sets_in_other_slots() {
    use std::time::Duration;
    let ttl = Some(Duration::from_millis(1500));
    let mut o = options();
    o.prefix = "cluster_sliding".into();
    o.sliding_ttl = ttl;
    let store = TaskStore::new(Arc::new(RedisBackend::connect(o).await.unwrap()) as SharedBackend)
        .with_ttl(ttl);
    store
        .create(&sample_task("slide", &["slide-r1", "slide-r2"]))
        .await
        .unwrap();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(
            store.load("slide").await.unwrap().is_some(),
            "a read must renew the TTL"
        );
    }
    for rid in ["slide-r1", "slide-r2"] {
        assert!(
            store.load_by_request_id(rid).await.unwrap().is_some(),
            "the index set of {rid} is renewed too"
        );
    }
}
