//! The conformance suite against a real redis-server started by the test
//! (one server for the whole file; every case uses namespaces of its own).

use std::sync::LazyLock;

use persistence_redis::{RedisBackend, RedisOptions};
use redis_test_server::RedisServer;

static SERVER: LazyLock<RedisServer> = LazyLock::new(RedisServer::start);

persistence_conformance::conformance_tests!(|| async {
    let options = RedisOptions::new("127.0.0.1", SERVER.port());
    std::sync::Arc::new(
        RedisBackend::connect(options)
            .await
            .expect("connect to the test server"),
    ) as persistence_core::SharedBackend
});

/// `count_term` answers from the index and metadata alone, and stays
/// exact where an index set outlived what its members carry: a document
/// that expired and came back with another term, a term whose set key
/// needs JSON escaping, a member whose document is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_term_is_exact_without_reading_documents() {
    use persistence_core::backend::{Backend, DocumentWrite, Precondition};
    use std::time::Duration;
    let backend = RedisBackend::connect(RedisOptions::new("127.0.0.1", SERVER.port()))
        .await
        .unwrap();
    let ns = "count-term-exact";
    let put = |key: &'static str, term: &'static str, ttl: Option<Duration>| {
        let mut write = DocumentWrite::new(b"{}".to_vec()).with_term("status", term);
        write.ttl = ttl;
        let backend = &backend;
        async move {
            backend
                .put(ns, key, write, Precondition::Any)
                .await
                .unwrap()
        }
    };
    let count = |term: &'static str| {
        let backend = &backend;
        async move { backend.count_term(ns, "status", term).await.unwrap() }
    };
    put("a", "active", Some(Duration::from_millis(400))).await;
    put("b", "active", None).await;
    put("q", "say \"hi\"\\", None).await;
    put("r", "say \"hi\"\\", None).await;
    assert_eq!(count("active").await, 2);
    assert_eq!(count("say \"hi\"\\").await, 2);
    tokio::time::sleep(Duration::from_millis(800)).await;
    // "a" expired with its metadata; it comes back under another term, and
    // the "active" set still lists it
    put("a", "done", None).await;
    put("r", "done", None).await;
    assert_eq!(count("active").await, 1);
    assert_eq!(count("done").await, 2);
    assert_eq!(count("say \"hi\"\\").await, 1);
    assert_eq!(
        backend.lookup(ns, "status", "active").await.unwrap(),
        vec!["b".to_string()]
    );
    backend.remove(ns, "b", Precondition::Any).await.unwrap();
    assert_eq!(count("active").await, 0);
}

/// Full reads of many documents go out in several transactions (a page
/// of thousands must not hold up the server in one): every document comes
/// back in order, across the batch boundaries, with its version, missing
/// ones as `None`, and a scan page of them all is whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_reads_come_back_whole_across_batches() {
    use persistence_core::backend::{
        Backend, DocumentWrite, Precondition, Put, ScanOrder, ScanRequest,
    };
    let backend = RedisBackend::connect(RedisOptions::new("127.0.0.1", SERVER.port()))
        .await
        .unwrap();
    let ns = "large-reads";
    let keys: Vec<String> = (0..300).map(|i| format!("k{i:03}")).collect();
    let puts = keys
        .iter()
        .filter(|k| !k.ends_with('7'))
        .map(|k| Put {
            key: k.clone(),
            write: DocumentWrite::new(k.as_bytes().to_vec()),
            precondition: Precondition::Absent,
        })
        .collect();
    let versions: Vec<_> = backend
        .put_many(ns, puts)
        .await
        .into_iter()
        .map(|v| v.unwrap())
        .collect();
    let docs = backend.get_many(ns, &keys).await;
    assert_eq!(docs.len(), keys.len());
    let mut written = versions.iter();
    for (key, doc) in keys.iter().zip(docs) {
        let doc = doc.unwrap();
        if key.ends_with('7') {
            assert!(doc.is_none(), "{key} was never written");
        } else {
            let doc = doc.unwrap_or_else(|| panic!("{key} missing"));
            assert_eq!(doc.value, key.as_bytes(), "{key}");
            assert_eq!(Some(&doc.version), written.next(), "{key}");
        }
    }
    let page = backend
        .scan(ns, ScanRequest::first(ScanOrder::Key, 1000))
        .await
        .unwrap();
    let scanned: Vec<&str> = page.entries.iter().map(|(k, _)| k.as_str()).collect();
    let expected: Vec<&str> = keys
        .iter()
        .filter(|k| !k.ends_with('7'))
        .map(|k| k.as_str())
        .collect();
    assert_eq!(scanned, expected);
    assert!(page.cursor.is_none());
}
